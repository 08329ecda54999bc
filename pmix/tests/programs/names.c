/* MPI_Publish_name / MPI_Lookup_name / MPI_Unpublish_name between two ranks: rank 0 publishes,
 * rank 1 looks the name up after a barrier, then rank 0 unpublishes. */
#include <mpi.h>
#include <stdio.h>

int main(int argc, char **argv) {
    int rank, rc;
    char port[MPI_MAX_PORT_NAME] = "";
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    if (rank == 0) {
        rc = MPI_Publish_name("gangway-svc", MPI_INFO_NULL, "port-A");
        printf("publish %s\n", rc == MPI_SUCCESS ? "ok" : "failed");
    }
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank == 1) {
        rc = MPI_Lookup_name("gangway-svc", MPI_INFO_NULL, port);
        printf("lookup %s %s\n", rc == MPI_SUCCESS ? "ok" : "failed", port);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank == 0) {
        rc = MPI_Unpublish_name("gangway-svc", MPI_INFO_NULL, "port-A");
        printf("unpublish %s\n", rc == MPI_SUCCESS ? "ok" : "failed");
    }
    fflush(stdout);
    MPI_Finalize();
    return 0;
}
