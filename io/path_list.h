/* path_list.h: turn the data arguments of a program into a list of files.
 *
 * Each input is, in this order of checks:
 *  - an existing directory (a SageMaker channel such as /opt/ml/input/data/train): every regular
 *    file directly in it whose name does not start with '.' or '_' (Hadoop's hidden names:
 *    _SUCCESS, .crc files), sorted by name (byte order); subdirectories are not searched;
 *  - an existing file: itself;
 *  - a glob(3) pattern (contains * ? or [): its matches that are regular files, sorted;
 *  - otherwise an error naming the input.
 * A directory or pattern that yields no file is an error too. gs:// and s3:// inputs follow the
 * same rules over io/fs.h (a prefix is a directory; '*', '?', [..] do not match '/'); other URLs
 * are an error.
 */
#ifndef IO_PATH_LIST_H
#define IO_PATH_LIST_H

#include <stddef.h>

typedef struct {
    char **paths;
    int n;
} PathList;

/* Appends the expansion of inputs[0..ninputs) to out (which must be zeroed or from a previous
 * call). 0 ok; -1 with err set (out keeps what was added before the failing input). */
int path_list_expand(PathList *out, const char *const *inputs, int ninputs, char *err, size_t errlen);
void path_list_free(PathList *pl);

#endif
