/*
 * names_across.c - MPI_Publish_name / MPI_Lookup_name / MPI_Unpublish_name between the first
 * and the last rank (with one rank per node: the first and the last node), for Open MPI over
 * PMIx.
 *
 * Rank 0 publishes "gangway-across-<size>"; after a barrier the last rank looks it up and
 * compares, then tries to unpublish it (must fail: only the publisher may); after another
 * barrier rank 0 publishes it again (must fail: duplicate) and unpublishes it; after a third
 * the last rank looks it up again (must fail: not found).
 *
 * Output: every step's result as "<rank>: <step> ok|failed ..." on stdout, and rank 0's
 * "names across ok (N ranks)" when every step went as expected (exit 0), or "names across
 * FAIL" (exit 1).
 */
#include <mpi.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    int rank, size, failed = 0;
    char service[64], port[MPI_MAX_PORT_NAME], found[MPI_MAX_PORT_NAME];

    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_set_errhandler(MPI_COMM_SELF, MPI_ERRORS_RETURN);
    int last = size - 1;
    snprintf(service, sizeof service, "gangway-across-%d", size);
    snprintf(port, sizeof port, "port-across-%d", size * 7);

    if (rank == 0) {
        int rc = MPI_Publish_name(service, MPI_INFO_NULL, port);
        printf("%d: publish %s\n", rank, rc == MPI_SUCCESS ? "ok" : "failed");
        failed |= rc != MPI_SUCCESS;
    }
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank == last) {
        memset(found, 0, sizeof found);
        int rc = MPI_Lookup_name(service, MPI_INFO_NULL, found);
        printf("%d: lookup %s %s\n", rank, rc == MPI_SUCCESS ? "ok" : "failed", found);
        failed |= rc != MPI_SUCCESS || strcmp(found, port) != 0;
        rc = MPI_Unpublish_name(service, MPI_INFO_NULL, port);
        printf("%d: unpublish by another rank %s\n", rank, rc == MPI_SUCCESS ? "accepted" : "refused");
        failed |= rc == MPI_SUCCESS;
    }
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank == 0) {
        int rc = MPI_Publish_name(service, MPI_INFO_NULL, port);
        printf("%d: duplicate publish %s\n", rank, rc == MPI_SUCCESS ? "accepted" : "refused");
        failed |= rc == MPI_SUCCESS;
        rc = MPI_Unpublish_name(service, MPI_INFO_NULL, port);
        printf("%d: unpublish %s\n", rank, rc == MPI_SUCCESS ? "ok" : "failed");
        failed |= rc != MPI_SUCCESS;
    }
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank == last) {
        int rc = MPI_Lookup_name(service, MPI_INFO_NULL, found);
        printf("%d: lookup after unpublish %s\n", rank, rc == MPI_SUCCESS ? "found" : "not found");
        failed |= rc == MPI_SUCCESS;
    }
    fflush(stdout);
    int any = 0;
    MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (rank == 0) {
        printf(any ? "names across FAIL\n" : "names across ok (%d ranks)\n", size);
    }
    MPI_Finalize();
    return any;
}
