/* stdout_close.h: the last step of a program whose result is its standard output (tfrecord's
 * count, verify and dump; predict): buffered output that cannot be written (a full disk, a
 * closed pipe's EIO, /dev/full) is an error with a message, not a silent exit 0. */
#ifndef CLI_STDOUT_CLOSE_H
#define CLI_STDOUT_CLOSE_H

/* Flushes stdout. 0 when everything written so far reached it; else -1, after printing
 * "<prog>: writing to standard output: <reason>" on stderr. */
int stdout_close(const char *prog);

#endif
