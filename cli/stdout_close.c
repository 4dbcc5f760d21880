/* stdout_close.c: see stdout_close.h. */
#include "cli/stdout_close.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int stdout_close(const char *prog) {
    errno = 0;
    int flushed = fflush(stdout) == 0;
    int saved = errno;
    if (flushed && !ferror(stdout)) return 0;
    /* an earlier write's failure leaves only the stream's error flag, not its errno */
    fprintf(stderr, "%s: writing to standard output: %s\n", prog,
            !flushed && saved ? strerror(saved) : "write error");
    return -1;
}
