/*
 * spawn_children.c - non-MPI rank that leaves descendants behind, for the
 * "no process outlives gangway run" tests.
 *
 * Usage: spawn_children PIDFILE [--ignore-term] [--exit] [--lifetime SECONDS]
 *
 * The rank forks three descendants, then writes PIDFILE and sleeps:
 *   pgroup-child  a plain child, stays in the rank's process group
 *   setsid-child  a child that calls setsid(): new session and process group, so a
 *                 kill of the rank's process group does not reach it
 *   orphan        a grandchild whose parent (an intermediate child) exits at once,
 *                 so it is reparented (to init or to a subreaper) and also setsid()s
 *
 * PIDFILE: every "%r" in it is replaced by the rank (GANGWAY_RANK, else PMI_RANK,
 * else 0). It is written to PIDFILE.tmp and renamed, so once it exists it is
 * complete. Contents, one "label pid" pair per line:
 *   rank <pid>
 *   pgroup-child <pid>
 *   setsid-child <pid>
 *   orphan <pid>
 * Then the rank prints "rank R children started" on stdout.
 *
 *   --ignore-term       all descendants ignore SIGTERM (only SIGKILL ends them)
 *   --exit              the rank itself exits 0 right after writing PIDFILE,
 *                       leaving its descendants running
 *   --lifetime SECONDS  safety net: every process exits by itself after this long
 *                       (default 120), so a failing test does not leak forever
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static unsigned lifetime = 120;
static int ignore_term = 0;

static void linger(const char *name)
{
    prctl(PR_SET_NAME, name, 0, 0, 0);
    if (ignore_term)
        signal(SIGTERM, SIG_IGN);
    /* Deliberately keep the inherited stdout/stderr open, as real daemons often do:
     * a launcher that waits for EOF on the output pipes before reaping would hang. */
    unsigned left = lifetime;
    while (left > 0)
        left = sleep(left);
    _exit(0);
}

static void die(const char *what)
{
    perror(what);
    exit(1);
}

int main(int argc, char **argv)
{
    const char *pidfile = NULL;
    int rank_exits = 0;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--ignore-term") == 0)
            ignore_term = 1;
        else if (strcmp(argv[i], "--exit") == 0)
            rank_exits = 1;
        else if (strcmp(argv[i], "--lifetime") == 0 && i + 1 < argc)
            lifetime = (unsigned)atoi(argv[++i]);
        else if (!pidfile && argv[i][0] != '-')
            pidfile = argv[i];
        else {
            fprintf(stderr, "usage: %s PIDFILE [--ignore-term] [--exit] [--lifetime S]\n", argv[0]);
            return 2;
        }
    }
    if (!pidfile) {
        fprintf(stderr, "usage: %s PIDFILE [--ignore-term] [--exit] [--lifetime S]\n", argv[0]);
        return 2;
    }

    const char *rank = getenv("GANGWAY_RANK");
    if (!rank)
        rank = getenv("PMI_RANK");
    if (!rank)
        rank = "0";

    /* Expand %r. */
    char path[4096];
    size_t o = 0;
    for (const char *p = pidfile; *p && o + 32 < sizeof path; p++) {
        if (p[0] == '%' && p[1] == 'r') {
            o += (size_t)snprintf(path + o, sizeof path - o, "%s", rank);
            p++;
        } else {
            path[o++] = *p;
        }
    }
    path[o] = '\0';

    fflush(stdout);

    pid_t pg_child = fork();
    if (pg_child < 0)
        die("fork");
    if (pg_child == 0)
        linger("gw-pgroup-kid");

    int fds[2];
    if (pipe(fds) < 0)
        die("pipe");

    pid_t sid_child = fork();
    if (sid_child < 0)
        die("fork");
    if (sid_child == 0) {
        close(fds[0]);
        close(fds[1]);
        if (setsid() < 0)
            die("setsid");
        linger("gw-setsid-kid");
    }

    /* Double fork: the middle process reports the grandchild's pid and exits. */
    pid_t middle = fork();
    if (middle < 0)
        die("fork");
    if (middle == 0) {
        close(fds[0]);
        pid_t g = fork();
        if (g < 0)
            _exit(1);
        if (g == 0) {
            close(fds[1]);
            setsid();
            linger("gw-orphan");
        }
        if (write(fds[1], &g, sizeof g) != (ssize_t)sizeof g)
            _exit(1);
        _exit(0);
    }
    close(fds[1]);
    pid_t orphan = -1;
    ssize_t n;
    do {
        n = read(fds[0], &orphan, sizeof orphan);
    } while (n < 0 && errno == EINTR);
    close(fds[0]);
    waitpid(middle, NULL, 0);
    if (n != (ssize_t)sizeof orphan)
        die("reading grandchild pid");

    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        die(tmp);
    fprintf(f, "rank %d\npgroup-child %d\nsetsid-child %d\norphan %d\n", (int)getpid(),
            (int)pg_child, (int)sid_child, (int)orphan);
    if (fclose(f) != 0)
        die(tmp);
    if (rename(tmp, path) != 0)
        die(path);

    printf("rank %s children started\n", rank);
    fflush(stdout);

    if (rank_exits)
        return 0;
    linger("gw-spawner");
    return 0;
}
