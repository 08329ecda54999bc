# mpi4py (Debian's python3-mpi4py, built for Open MPI): an allreduce of the ranks.
from mpi4py import MPI

comm = MPI.COMM_WORLD
total = comm.allreduce(comm.Get_rank(), op=MPI.SUM)
print(f"mpi4py {comm.Get_rank()}/{comm.Get_size()} sum={total}", flush=True)
