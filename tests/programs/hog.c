/*
 * hog.c - allocates and touches memory, for the containment tests (memory limits, peak
 * memory accounting).
 *
 * Usage: hog MIB [HOLD_SECONDS]
 *
 * Allocates MIB mebibytes, writes to every page (so they are really charged), prints
 * "touched MIB MiB" on stdout, then stays alive HOLD_SECONDS (default 0) and exits 0.
 * Under a memory limit below MIB it is killed by the kernel's OOM killer before it prints.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: hog MIB [HOLD_SECONDS]\n");
        return 2;
    }
    size_t mib = strtoul(argv[1], NULL, 10);
    unsigned hold = argc > 2 ? (unsigned)strtoul(argv[2], NULL, 10) : 0;
    size_t bytes = mib << 20;
    char *p = malloc(bytes);
    if (!p) {
        perror("malloc");
        return 1;
    }
    long page = sysconf(_SC_PAGESIZE);
    for (size_t i = 0; i < bytes; i += (size_t)page)
        p[i] = (char)i | 1;
    printf("touched %zu MiB\n", mib);
    fflush(stdout);
    if (hold)
        sleep(hold);
    return p[bytes / 2] ? 0 : 3;
}
