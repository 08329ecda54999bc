/*
 * signals.c - non-MPI program that reports the signals it receives.
 *
 * Usage: signals [--exit-on SIGNAME] [--ignore-term] [--timeout SECONDS]
 *
 * Installs handlers for SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGCONT
 * and SIGTSTP, then prints "rank R ready" (R from GANGWAY_RANK, else PMI_RANK,
 * else 0) and waits. For each signal received it prints "rank R got SIGNAME".
 * All lines go to stdout and are flushed at once (written with one write()).
 *
 *   --exit-on SIGNAME  exit after receiving this signal (default SIGTERM); the
 *                      exit prints "rank R exiting" and exits with status 0.
 *                      SIGNAME may be given with or without the SIG prefix.
 *   --ignore-term      set SIGTERM to SIG_IGN (no "got" line, no exit on it):
 *                      only SIGKILL ends the rank, to test the kill grace period.
 *   --timeout SECONDS  give up after this long: print "rank R timeout", exit 4
 *                      (default 60, so a broken test can never leave it running).
 *
 * SIGTSTP is caught (not the default stop) so "rank R got SIGTSTP" is visible;
 * SIGCONT is reported as well.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t pending[65];

static const struct {
    int sig;
    const char *name;
} sigs[] = {
    { SIGINT, "SIGINT" },   { SIGTERM, "SIGTERM" }, { SIGHUP, "SIGHUP" },
    { SIGQUIT, "SIGQUIT" }, { SIGUSR1, "SIGUSR1" }, { SIGUSR2, "SIGUSR2" },
    { SIGCONT, "SIGCONT" }, { SIGTSTP, "SIGTSTP" },
};
#define NSIGS ((int)(sizeof sigs / sizeof sigs[0]))

static void on_signal(int sig)
{
    if (sig > 0 && sig < 65)
        pending[sig] = 1;
}

static int parse_signal(const char *s)
{
    if (strncasecmp(s, "SIG", 3) == 0)
        s += 3;
    for (int i = 0; i < NSIGS; i++)
        if (strcasecmp(s, sigs[i].name + 3) == 0)
            return sigs[i].sig;
    return -1;
}

static void say(const char *rank, const char *what)
{
    char line[128];
    int n = snprintf(line, sizeof line, "rank %s %s\n", rank, what);
    fflush(stdout);
    if (write(STDOUT_FILENO, line, (size_t)n) < 0) {
        /* nothing useful to do */
    }
}

int main(int argc, char **argv)
{
    int exit_on = SIGTERM;
    int ignore_term = 0;
    double timeout = 60.0;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--exit-on") == 0 && i + 1 < argc) {
            exit_on = parse_signal(argv[++i]);
            if (exit_on < 0) {
                fprintf(stderr, "signals: unknown signal %s\n", argv[i]);
                return 2;
            }
        } else if (strcmp(argv[i], "--ignore-term") == 0) {
            ignore_term = 1;
        } else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) {
            timeout = atof(argv[++i]);
        } else {
            fprintf(stderr, "usage: %s [--exit-on SIGNAME] [--ignore-term] [--timeout S]\n", argv[0]);
            return 2;
        }
    }

    const char *rank = getenv("GANGWAY_RANK");
    if (!rank)
        rank = getenv("PMI_RANK");
    if (!rank)
        rank = "0";

    sigset_t all, old;
    sigemptyset(&all);
    for (int i = 0; i < NSIGS; i++)
        sigaddset(&all, sigs[i].sig);
    /* Block while installing so nothing is lost before "ready". */
    sigprocmask(SIG_BLOCK, &all, &old);
    for (int i = 0; i < NSIGS; i++) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = (sigs[i].sig == SIGTERM && ignore_term) ? SIG_IGN : on_signal;
        sigemptyset(&sa.sa_mask);
        sigaction(sigs[i].sig, &sa, NULL);
    }
    say(rank, "ready");

    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        /* Atomically unblock and wait, with a 100 ms tick for the timeout check. */
        sigset_t waitmask = old;
        struct timespec tick = { 0, 100 * 1000 * 1000 };
        sigprocmask(SIG_SETMASK, &waitmask, NULL);
        nanosleep(&tick, NULL);
        sigprocmask(SIG_BLOCK, &all, NULL);

        for (int i = 0; i < NSIGS; i++) {
            int s = sigs[i].sig;
            if (pending[s]) {
                pending[s] = 0;
                char what[64];
                snprintf(what, sizeof what, "got %s", sigs[i].name);
                say(rank, what);
                if (s == exit_on) {
                    say(rank, "exiting");
                    return 0;
                }
            }
        }

        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        double elapsed = (double)(now.tv_sec - start.tv_sec) + (double)(now.tv_nsec - start.tv_nsec) / 1e9;
        if (elapsed > timeout) {
            say(rank, "timeout");
            return 4;
        }
    }
}
