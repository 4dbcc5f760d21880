/* wall_clock.h: seconds on the monotonic clock, for the trainer's phase times. */
#ifndef CLI_WALL_CLOCK_H
#define CLI_WALL_CLOCK_H

/* Seconds since an arbitrary fixed point (CLOCK_MONOTONIC): only differences mean anything. */
double wall_seconds(void);

#endif /* CLI_WALL_CLOCK_H */
