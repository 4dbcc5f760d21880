/* background_task.c: see background_task.h. */
#include "cli/background_task.h"

#include <signal.h>
#include <stdio.h>

void background_task_start(BackgroundTask *t, void *(*fn)(void *), void *arg, int background) {
    t->running = 0;
    t->pending = 1;
    t->rc = 0;
    t->err[0] = 0;
    if (background) {
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        int rc = pthread_create(&t->thread, NULL, fn, arg);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (rc == 0) {
            t->running = 1;
            return;
        }
        /* no thread to be had: run it here */
    }
    fn(arg);
}

int background_task_wait(BackgroundTask *t, char *err, size_t errlen) {
    if (!t->pending) return 0;
    if (t->running) {
        pthread_join(t->thread, NULL);
        t->running = 0;
    }
    t->pending = 0;
    if (t->rc != 0) {
        snprintf(err, errlen, "%s", t->err);
        return -1;
    }
    return 1;
}
