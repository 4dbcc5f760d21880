/* background_task.h: a function run on a thread beside the job (the files of a checkpoint or an
 * export), or in the caller's thread when that is asked for or no thread can be had.
 *
 * The thread blocks every signal: SIGTERM and SIGINT go to the trainer's loop, which stops at the
 * next chunk and saves (a handler on this thread would interrupt nothing). */
#ifndef CLI_BACKGROUND_TASK_H
#define CLI_BACKGROUND_TASK_H

#include <pthread.h>

typedef struct {
    pthread_t thread;
    int running; /* a thread to join */
} BackgroundTask;

/* Runs fn(arg) on a thread when `background` is non-zero (and a thread can be made), else here
 * before returning. */
void background_task_start(BackgroundTask *t, void *(*fn)(void *), void *arg, int background);
/* Waits for the thread, if one is running; then fn has returned. */
void background_task_join(BackgroundTask *t);

#endif
