/* wall_clock.c: see wall_clock.h. */
#include "cli/wall_clock.h"

#include <time.h>

double wall_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}
