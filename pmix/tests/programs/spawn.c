/* MPI_Comm_spawn, which gangway refuses: with errors returned, the rank reports the failure
 * and finalizes normally. */
#include <mpi.h>
#include <stdio.h>

int main(int argc, char **argv) {
    MPI_Comm child;
    int errcode, rc;
    MPI_Init(&argc, &argv);
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_set_errhandler(MPI_COMM_SELF, MPI_ERRORS_RETURN);
    rc = MPI_Comm_spawn("/bin/true", MPI_ARGV_NULL, 1, MPI_INFO_NULL, 0, MPI_COMM_SELF, &child,
                        &errcode);
    printf("spawn %s\n", rc == MPI_SUCCESS ? "succeeded" : "failed");
    fflush(stdout);
    MPI_Finalize();
    return 0;
}
