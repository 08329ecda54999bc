# mpi4py (Debian's python3-mpi4py, built for Open MPI): an allreduce of the ranks.
import os

from mpi4py import MPI

comm = MPI.COMM_WORLD
total = comm.allreduce(comm.Get_rank(), op=MPI.SUM)
# One write per line: the ranks share the host's stdout, and print() may split a line.
os.write(1, f"mpi4py {comm.Get_rank()}/{comm.Get_size()} sum={total}\n".encode())
