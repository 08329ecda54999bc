/*
 * lines.c - non-MPI program for the output tests: many lines, each written in
 * several pieces, so lines from different ranks would interleave mid-line unless
 * the launcher reassembles them.
 *
 * Usage: lines [COUNT] [--stderr] [--both] [--partial] [--width W]
 *
 * Prints COUNT (default 100) lines "rank R line I <payload>" where <payload> is W
 * (default 120) copies of the character 'a' + R % 26, each line written with three
 * write(2) calls and a sched_yield() between them. R comes from GANGWAY_RANK, else
 * PMI_RANK, else 0.
 *   --stderr    write to stderr instead of stdout
 *   --both      alternate: even I to stdout, odd I to stderr
 *   --partial   finish with "rank R partial" on stdout WITHOUT a trailing newline
 * Exit status 0.
 */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void put(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

int main(int argc, char **argv)
{
    int count = 100, width = 120, to_stderr = 0, both = 0, partial = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--stderr") == 0)
            to_stderr = 1;
        else if (strcmp(argv[i], "--both") == 0)
            both = 1;
        else if (strcmp(argv[i], "--partial") == 0)
            partial = 1;
        else if (strcmp(argv[i], "--width") == 0 && i + 1 < argc)
            width = atoi(argv[++i]);
        else if (argv[i][0] != '-')
            count = atoi(argv[i]);
        else {
            fprintf(stderr, "usage: %s [COUNT] [--stderr] [--both] [--partial] [--width W]\n", argv[0]);
            return 2;
        }
    }
    if (width < 0 || width > 60000)
        width = 120;

    const char *rank = getenv("GANGWAY_RANK");
    if (!rank)
        rank = getenv("PMI_RANK");
    if (!rank)
        rank = "0";
    char fill = (char)('a' + atoi(rank) % 26);

    char *payload = malloc((size_t)width + 2);
    if (!payload)
        return 1;
    memset(payload, fill, (size_t)width);
    payload[width] = '\n';

    for (int i = 0; i < count; i++) {
        int fd = both ? (i % 2 ? 2 : 1) : (to_stderr ? 2 : 1);
        char head[64];
        int n = snprintf(head, sizeof head, "rank %s line %d ", rank, i);
        put(fd, head, (size_t)n);
        sched_yield();
        put(fd, payload, (size_t)width / 2);
        sched_yield();
        put(fd, payload + width / 2, (size_t)(width - width / 2) + 1);
    }
    if (partial) {
        char tail[64];
        int n = snprintf(tail, sizeof tail, "rank %s partial", rank);
        put(1, tail, (size_t)n);
    }
    free(payload);
    return 0;
}
