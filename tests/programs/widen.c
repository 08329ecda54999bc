/*
 * widen.c - widens its own CPU affinity to every CPU, then reports where it may and does
 * run, for the containment test "a rank cannot leave its CPU grant".
 *
 * Usage: widen [SPIN_MS]
 *
 * Calls sched_setaffinity with all CPUs the kernel knows (CPU_SETSIZE), then prints
 *   allowed LIST      the CPUs sched_getaffinity returns afterwards (comma list)
 *   ran LIST          the CPUs sched_getcpu reported while spinning SPIN_MS (default 300)
 * and exits 0 (1 if sched_setaffinity failed).
 */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void print_set(const char *label, cpu_set_t *set) {
    printf("%s", label);
    int first = 1;
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, set)) {
            printf("%s%d", first ? " " : ",", c);
            first = 0;
        }
    printf("\n");
}

int main(int argc, char **argv) {
    double spin = argc > 1 ? atof(argv[1]) : 300;
    cpu_set_t all, got, ran;
    CPU_ZERO(&all);
    for (int c = 0; c < CPU_SETSIZE; c++)
        CPU_SET(c, &all);
    if (sched_setaffinity(0, sizeof all, &all) != 0) {
        perror("sched_setaffinity");
        return 1;
    }
    CPU_ZERO(&got);
    sched_getaffinity(0, sizeof got, &got);
    print_set("allowed", &got);
    CPU_ZERO(&ran);
    double end = now_ms() + spin;
    while (now_ms() < end) {
        int cpu = sched_getcpu();
        if (cpu >= 0)
            CPU_SET(cpu, &ran);
    }
    print_set("ran", &ran);
    fflush(stdout);
    return 0;
}
