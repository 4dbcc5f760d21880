/* background_task.c: see background_task.h. */
#include "cli/background_task.h"

#include <signal.h>

void background_task_start(BackgroundTask *t, void *(*fn)(void *), void *arg, int background) {
    t->running = 0;
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

void background_task_join(BackgroundTask *t) {
    if (!t->running) return;
    pthread_join(t->thread, NULL);
    t->running = 0;
}
