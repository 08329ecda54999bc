/*
 * hello.c - minimal MPI example for gangway.
 *
 * Output (one line each, stdout, flushed):
 *   every rank:  hello from rank R of N on HOST
 *   rank 0:      allreduce sum = S (expected E)      S = sum of (rank+1) = N*(N+1)/2
 *   rank 0:      barrier passed
 *   rank 0:      allreduce ok                         (or "allreduce MISMATCH" on stderr, exit 1)
 *
 * Options:
 *   --abort CODE       rank 0 (or the rank given by --abort-rank) calls
 *                      MPI_Abort(MPI_COMM_WORLD, CODE) after the barrier;
 *                      the other ranks then wait in a second barrier.
 *   --abort-rank R     which rank aborts (default 0).
 *
 * Exit status: 0 on success, 1 if the allreduce result is wrong, 2 on bad usage.
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(const char *prog)
{
    fprintf(stderr, "usage: %s [--abort CODE] [--abort-rank R]\n", prog);
}

int main(int argc, char **argv)
{
    int abort_code = -1;
    int abort_rank = 0;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--abort") == 0 && i + 1 < argc) {
            abort_code = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--abort-rank") == 0 && i + 1 < argc) {
            abort_rank = atoi(argv[++i]);
        } else {
            usage(argv[0]);
            return 2;
        }
    }

    MPI_Init(&argc, &argv);

    int rank = 0, size = 0, namelen = 0;
    char host[MPI_MAX_PROCESSOR_NAME];
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Get_processor_name(host, &namelen);

    printf("hello from rank %d of %d on %s\n", rank, size, host);
    fflush(stdout);

    long mine = rank + 1, sum = 0;
    MPI_Allreduce(&mine, &sum, 1, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
    long expected = (long)size * (size + 1) / 2;

    MPI_Barrier(MPI_COMM_WORLD);

    if (abort_code >= 0) {
        if (rank == abort_rank) {
            printf("rank %d calling MPI_Abort with code %d\n", rank, abort_code);
            fflush(stdout);
            MPI_Abort(MPI_COMM_WORLD, abort_code);
        }
        /* Everybody else blocks here until the launcher kills the job. */
        MPI_Barrier(MPI_COMM_WORLD);
    }

    int ok = (sum == expected);
    if (rank == 0) {
        printf("allreduce sum = %ld (expected %ld)\n", sum, expected);
        printf("barrier passed\n");
        if (ok)
            printf("allreduce ok\n");
        else
            fprintf(stderr, "allreduce MISMATCH: got %ld, expected %ld\n", sum, expected);
        fflush(stdout);
    }

    MPI_Finalize();
    return ok ? 0 : 1;
}
