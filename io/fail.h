/* fail.h: the error convention of the io/ readers and writers: a message into the caller's
 * err[errlen] buffer and -1 for the caller to return. */
#ifndef IO_FAIL_H
#define IO_FAIL_H

#include <stddef.h>

/* Formats the message into err (when err and errlen are set) and returns -1. */
int io_fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
