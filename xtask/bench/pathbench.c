/* A syscall-heavy workload for slimd's overhead benchmark.
 *
 *   pathbench same N      N rounds of stat + open + close of one existing file
 *   pathbench distinct N  N stat calls of N different (missing) paths: one sensor event each
 *
 * Prints the elapsed nanoseconds on stdout. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s same|distinct N\n", argv[0]);
        return 2;
    }
    long n = atol(argv[2]);
    struct stat st;
    char path[64];
    long long start = now_ns();
    if (strcmp(argv[1], "same") == 0) {
        for (long i = 0; i < n; i++) {
            stat("/etc/os-release", &st);
            int fd = open("/etc/os-release", O_RDONLY);
            if (fd >= 0) close(fd);
        }
    } else {
        for (long i = 0; i < n; i++) {
            snprintf(path, sizeof path, "/nonexistent/%ld", i);
            stat(path, &st);
        }
    }
    printf("%lld\n", now_ns() - start);
    return 0;
}
