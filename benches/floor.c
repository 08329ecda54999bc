/*
 * floor.c - the launch-time floor for benches/launch.sh: fork and exec N copies
 * of a program (default `true`) and wait for all of them. No PMI, no I/O
 * forwarding, nothing else.
 *
 * Usage: floor N [PROGRAM [ARGS...]]
 * Exit status: 0 if every child exited 0, else 1 (2 on bad usage).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s N [PROGRAM [ARGS...]]\n", argv[0]);
        return 2;
    }
    int n = atoi(argv[1]);
    if (n < 1) {
        fprintf(stderr, "floor: N must be >= 1\n");
        return 2;
    }
    char *dflt[] = { "true", NULL };
    char **cmd = argc > 2 ? &argv[2] : dflt;

    for (int i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid < 0) {
            perror("floor: fork");
            return 1;
        }
        if (pid == 0) {
            execvp(cmd[0], cmd);
            perror("floor: exec");
            _exit(127);
        }
    }

    int bad = 0, status;
    for (;;) {
        pid_t w = wait(&status);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            break; /* ECHILD: all reaped */
        }
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            bad = 1;
    }
    return bad;
}
