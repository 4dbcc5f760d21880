/* background_task.h: a function run on a thread beside the job (the data's decoding, the files
 * of a checkpoint or an export), or in the caller's thread when that is asked for or no thread
 * can be had; its outcome (rc, err) is collected once by background_task_wait.
 *
 * The thread blocks every signal: SIGTERM and SIGINT go to the trainer's loop, which stops at the
 * next chunk and saves (a handler on this thread would interrupt nothing). */
#ifndef CLI_BACKGROUND_TASK_H
#define CLI_BACKGROUND_TASK_H

#include <pthread.h>
#include <stddef.h>

typedef struct {
    pthread_t thread;
    int running;     /* a thread to join */
    int pending;     /* started and not yet waited for */
    /* the function's outcome, set by it: 0 ok, else -1 with the message in err */
    int rc;
    char err[4096];
} BackgroundTask;

/* Runs fn(arg) on a thread when `background` is non-zero (and a thread can be made), else here
 * before returning; rc and err start as 0 and "". The caller must not start a task that is
 * pending. */
void background_task_start(BackgroundTask *t, void *(*fn)(void *), void *arg, int background);
/* Waits for the task, if one was started: 1 when it has completed ok, 0 when none was pending,
 * -1 when it failed (its message copied to err). */
int background_task_wait(BackgroundTask *t, char *err, size_t errlen);

#endif
