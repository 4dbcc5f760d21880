/* threads.c: how many threads the CPU kernels use.
 * With OpenMP this sets the team size of every parallel region in kernels/; without it the
 * kernels run single-threaded and the setting is only remembered. */
#ifdef __linux__
#define _GNU_SOURCE /* sched_getaffinity: which CPUs' lines of /proc/stat are ours */
#include <sched.h>
#endif
#include "kernels/kernels.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifdef _OPENMP
#include <omp.h>
#endif

static int g_threads = 0; /* n > 0: exactly n; 0: automatic */

/* cores - round(others), in [1, cores]. */
int kernels_auto_threads(int cores, double others) {
    int t = cores - (others > 0 ? (int)(others + 0.5) : 0);
    return t < 1 ? 1 : t > cores ? cores : t;
}

/* The 1-minute load average counts this process's own running threads too, about the count in
 * use. */
double kernels_others_from_load(double load, int in_use) { return load - in_use; }

/* Over the interval between two samples, the CPUs' busy time not spent by this process, in
 * cores. */
double kernels_others_busy(CpuSample a, CpuSample b) {
    const double wall = b.wall_s - a.wall_s;
    if (!(wall > 0)) return 0;
    return ((b.busy_s - a.busy_s) - (b.own_s - a.own_s)) / wall;
}

/* "cpuN user nice system idle iowait irq softirq steal ...": busy = user + nice + system + irq +
 * softirq (guest time is inside user and nice; idle, iowait and steal are not this machine's
 * work). The machine's total line ("cpu  ...") is not one CPU's. */
int kernels_stat_cpu_line(const char *line, int *cpu, double *busy_ticks) {
    if (strncmp(line, "cpu", 3) != 0 || line[3] < '0' || line[3] > '9') return 0;
    char *end;
    const long n = strtol(line + 3, &end, 10);
    double v[7];
    for (int i = 0; i < 7; i++) {
        const char *p = end;
        v[i] = (double)strtoull(p, &end, 10);
        if (end == p) return 0; /* fewer than 7 fields */
    }
    *cpu = (int)n;
    *busy_ticks = v[0] + v[1] + v[2] + v[5] + v[6];
    return 1;
}

#ifdef _OPENMP
static double monotonic_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Now: the busy seconds of the CPUs this process may run on, and this process's CPU seconds (all
 * its threads). 0 where /proc/stat cannot be read. */
static int cpu_sample(CpuSample *s) {
#ifdef __linux__
    cpu_set_t ours;
    const int masked = sched_getaffinity(0, sizeof ours, &ours) == 0;
    const long hz = sysconf(_SC_CLK_TCK);
    FILE *f = fopen("/proc/stat", "r");
    if (!f || hz <= 0) {
        if (f) fclose(f);
        return 0;
    }
    char line[512]; /* a CPU's line is ~100 bytes; the long lines (intr) come after them */
    double busy = 0;
    int found = 0, cpu;
    while (fgets(line, sizeof line, f) && strncmp(line, "cpu", 3) == 0) {
        double ticks;
        if (kernels_stat_cpu_line(line, &cpu, &ticks) &&
            (!masked || (cpu < CPU_SETSIZE && CPU_ISSET(cpu, &ours)))) {
            busy += ticks;
            found++;
        }
    }
    fclose(f);
    struct timespec own;
    if (found == 0 || clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &own) != 0) return 0;
    s->busy_s = busy / (double)hz;
    s->own_s = (double)own.tv_sec + 1e-9 * (double)own.tv_nsec;
    s->wall_s = monotonic_s();
    return 1;
#else
    (void)s;
    return 0;
#endif
}

/* Automatic: all cores less those other processes keep busy, re-read at most once a second.
 * A region waits for its slowest thread, so on a busy machine a thread that must share a core
 * costs a scheduler time slice per region (measured: 2 threads 2x slower than 1 at load 8).
 * Others' share is measured over the last interval, from /proc/stat's busy time of this
 * process's CPUs less this process's CPU time; the first read, with no interval yet, takes
 * the 1-minute load average less the count in use. (The load average alone, used in sessions
 * 12-17, lags by ~30 s: a job started right after another trained its first ~30 s on one of
 * the 2 cores. OpenMP's dynamic adjustment, used before session 12, takes cores minus the
 * whole 15-minute load, the job's own threads included.) The count in use is what
 * kernels_get_threads returns and what the regions without a num_threads clause get
 * (omp_set_num_threads). */
static int g_auto = 0;              /* the count in use; 0: not read yet */
static double g_auto_read = -1e300; /* when (CLOCK_MONOTONIC seconds) */
static CpuSample g_sample;          /* /proc/stat at the last read */
static int g_have_sample = 0;

static int auto_threads(void) {
    const double now = monotonic_s();
    if (g_auto == 0 || now - g_auto_read >= 1.0) {
        g_auto_read = now;
        const int cores = omp_get_num_procs();
        CpuSample s = {0};
        const int sampled = cpu_sample(&s);
        double others = 0, load[1];
        if (sampled && g_have_sample)
            others = kernels_others_busy(g_sample, s);
        else if (getloadavg(load, 1) == 1)
            others = kernels_others_from_load(load[0], g_auto);
        g_sample = s;
        g_have_sample = sampled;
        const int t = kernels_auto_threads(cores, others);
        if (t != g_auto) omp_set_num_threads(t);
        g_auto = t;
    }
    return g_auto;
}
#endif

void kernels_set_threads(int n) {
#ifdef _OPENMP
    omp_set_dynamic(0);
    if (n > 0) omp_set_num_threads(n);
    g_auto = 0; /* automatic: read at the next kernels_get_threads */
    g_have_sample = 0;
#endif
    g_threads = n > 0 ? n : 0;
}

int kernels_get_threads(void) {
#ifdef _OPENMP
    return g_threads > 0 ? g_threads : auto_threads();
#else
    return g_threads > 0 ? g_threads : 1;
#endif
}
