/*
 * segv.c - one rank dies of SIGSEGV after MPI_Init while the others wait.
 *
 * Usage: segv [RANK]      (default 0; taken modulo the world size)
 *
 * All ranks print "rank R of N initialized" and pass an MPI_Barrier. Rank RANK
 * prints "rank R dereferencing NULL" and writes through a null pointer (signal 11).
 * The others print "rank R waiting in barrier" and block in a second MPI_Barrier
 * until the launcher stops them. The launcher should report something like
 * "rank R (pid P) exited with signal 11 (SIGSEGV)" and exit non-zero.
 */
#include <mpi.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    int victim = argc > 1 ? atoi(argv[1]) : 0;

    MPI_Init(&argc, &argv);
    int rank = 0, size = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    victim %= size;

    printf("rank %d of %d initialized\n", rank, size);
    fflush(stdout);
    MPI_Barrier(MPI_COMM_WORLD);

    if (rank == victim) {
        printf("rank %d dereferencing NULL\n", rank);
        fflush(stdout);
        /* Make sure no handler installed by the MPI library turns this into an exit. */
        signal(SIGSEGV, SIG_DFL);
        volatile int *p = NULL;
        *p = 42;
        raise(SIGSEGV); /* not reached */
    }

    printf("rank %d waiting in barrier\n", rank);
    fflush(stdout);
    MPI_Barrier(MPI_COMM_WORLD);
    printf("rank %d UNEXPECTED barrier exit\n", rank);
    fflush(stdout);
    MPI_Finalize();
    return 0;
}
