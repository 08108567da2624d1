/* What the bench load generators (no vial inside) read of a server process:
 * its user + system CPU time so far, in clock ticks (sysconf(_SC_CLK_TCK)
 * a second), summed over all its threads, from /proc/PID/stat; -1 when the
 * process is gone. */
#ifndef BENCH_PROCSTAT_H
#define BENCH_PROCSTAT_H

#include <stdio.h>
#include <string.h>

static long procstat_cpu_ticks(long pid)
{
    char path[64], b[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(b, 1, sizeof b - 1, f);
    fclose(f);
    b[n] = 0;
    /* The command name may hold anything, so fields count from its ")":
     * state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime */
    char *p = strrchr(b, ')');
    unsigned long ut = 0, st = 0;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return -1;
    return (long)(ut + st);
}

#endif
