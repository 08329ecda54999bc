/*
 * mpi_no_finalize.c - one rank leaves without MPI_Finalize while the others wait.
 *
 * Usage: mpi_no_finalize [RANK [CODE]]     (defaults: RANK 1, CODE 3; RANK is taken
 *                                           modulo the world size)
 *
 * All ranks: MPI_Init, print "rank R of N initialized", MPI_Barrier.
 * Rank RANK then prints "rank R exiting with CODE without MPI_Finalize" and calls
 * exit(CODE) - its PMI socket closes without a finalize. Every other rank prints
 * "rank R waiting in barrier" and enters a second MPI_Barrier, which can never
 * complete: the launcher has to fail the job (exit status != 0) instead of hanging.
 * If that barrier ever returns, the rank prints "rank R UNEXPECTED barrier exit".
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    int victim = argc > 1 ? atoi(argv[1]) : 1;
    int code = argc > 2 ? atoi(argv[2]) : 3;

    MPI_Init(&argc, &argv);
    int rank = 0, size = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    victim %= size;

    printf("rank %d of %d initialized\n", rank, size);
    fflush(stdout);
    MPI_Barrier(MPI_COMM_WORLD);

    if (rank == victim) {
        printf("rank %d exiting with %d without MPI_Finalize\n", rank, code);
        fflush(stdout);
        exit(code);
    }

    printf("rank %d waiting in barrier\n", rank);
    fflush(stdout);
    MPI_Barrier(MPI_COMM_WORLD);
    printf("rank %d UNEXPECTED barrier exit\n", rank);
    fflush(stdout);
    MPI_Finalize();
    return 0;
}
