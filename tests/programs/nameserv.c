/*
 * nameserv.c - MPI name service (MPI_Publish_name / MPI_Lookup_name / MPI_Unpublish_name),
 * which MPICH serves through PMI (publish_name / lookup_name / unpublish_name).
 *
 * Needs at least 2 ranks. Rank 0 publishes service "gangway-test-<size>" with a made-up port
 * string (no MPI_Open_port: Debian's ch4:ucx build cannot open ports, but publishing any
 * string works), everyone passes a barrier, every other rank looks it up and compares,
 * rank 0 publishes the same name again (must fail: duplicate), unpublishes it, and after
 * another barrier rank 1 looks it up again (must fail: not found).
 *
 * Output on success, rank 0: "nameserv ok (N ranks)". Any failure: "nameserv FAIL ..." on
 * stderr and exit 1.
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
    snprintf(service, sizeof service, "gangway-test-%d", size);
    snprintf(port, sizeof port, "made-up-port-%d", size * 7);

    if (rank == 0 && MPI_Publish_name(service, MPI_INFO_NULL, port) != MPI_SUCCESS) {
        fprintf(stderr, "nameserv FAIL publish\n");
        failed = 1;
    }
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank != 0) {
        memset(found, 0, sizeof found);
        if (MPI_Lookup_name(service, MPI_INFO_NULL, found) != MPI_SUCCESS || strcmp(found, port) != 0) {
            fprintf(stderr, "nameserv FAIL rank %d lookup got '%s'\n", rank, found);
            failed = 1;
        }
    }
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank == 0) {
        if (MPI_Publish_name(service, MPI_INFO_NULL, port) == MPI_SUCCESS) {
            fprintf(stderr, "nameserv FAIL duplicate publish accepted\n");
            failed = 1;
        }
        if (MPI_Unpublish_name(service, MPI_INFO_NULL, port) != MPI_SUCCESS) {
            fprintf(stderr, "nameserv FAIL unpublish\n");
            failed = 1;
        }
    }
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank == 1 && MPI_Lookup_name(service, MPI_INFO_NULL, found) == MPI_SUCCESS) {
        fprintf(stderr, "nameserv FAIL lookup after unpublish found '%s'\n", found);
        failed = 1;
    }
    int any = 0;
    MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (rank == 0 && !any) {
        printf("nameserv ok (%d ranks)\n", size);
    }
    MPI_Finalize();
    return any;
}
