/* args.h: the command-line flag parser shared by our programs (trainer, tfrecord, predict).
 *
 * Conventions (those of the Python task.py scripts the trainer replaces, see user-expectations):
 *  - a flag is `--name value` or `--name=value`; `-x` works for one-letter aliases;
 *  - `-` and `_` are the same inside names: `--train-file` == `--train_file`;
 *  - ARG_BOOL flags take no separate value (`--verbose`), or an explicit `--verbose=false`;
 *  - ARG_LIST flags collect every following token up to the next flag (`--train-files a b c`,
 *    Python's nargs='+'), and repeated occurrences append;
 *  - ARG_VALUE flags given twice: the last one wins;
 *  - `--` ends the flags: every later token is positional;
 *  - with an `abbrev` list (the trainer), unambiguous prefixes of the listed names, as
 *    argparse's for the replaced script's own flags;
 *  - unknown flags are NOT errors here: they are collected in ap->unknown (with the next token as
 *    their value unless it starts with `--`), and the caller decides (the trainer warns, the
 *    tfrecord tool fails).
 *
 * Usage:
 *     static const ArgSpec specs[] = {
 *         {"steps", NULL, ARG_VALUE, "N", "training steps (default 12000)"},
 *         {"train-file", "train,train-files", ARG_LIST, "PATH...", "training TFRecords"},
 *         {"help", "h", ARG_BOOL, NULL, "show this help"},
 *     };
 *     ArgParse ap;
 *     if (args_parse(&ap, specs, 3, argc - 1, argv + 1, NULL, err, sizeof err) != 0) { ... }
 *     int steps;
 *     if (args_get_int(&ap, "steps", 12000, &steps, err, sizeof err) != 0) { ... }
 *     // err: "--steps: 'abc' is not an integer"
 *     args_free(&ap);
 *
 * Look-ups take any spelling of a spec's name or alias. Strings returned point into argv.
 */
#ifndef CLI_ARGS_H
#define CLI_ARGS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum { ARG_VALUE, ARG_BOOL, ARG_LIST } ArgKind;

typedef struct {
    const char *name;      /* canonical name without dashes, e.g. "train-file" */
    const char *aliases;   /* NULL or comma-separated other names, e.g. "train,train-files,h" */
    ArgKind kind;
    const char *metavar;   /* shown in help after the flag (NULL for ARG_BOOL) */
    const char *help;
} ArgSpec;

typedef struct {
    int present;           /* times the flag was given */
    const char *value;     /* ARG_VALUE: last value; ARG_BOOL: the text after '=' or NULL */
    const char **values;   /* ARG_LIST: every value in order */
    int nvalues;
} ArgValue;

typedef struct {
    const char *flag;      /* the token as written, e.g. "--model_dir=s3://b/m" */
    int flag_len;          /* length of its "--name" part: print with "%.*s", flag_len, flag */
    const char *value;     /* NULL when it had none */
} ArgUnknown;

typedef struct {
    const ArgSpec *specs;
    int nspecs;
    ArgValue *vals;        /* vals[i] belongs to specs[i] */
    const char **positionals;
    int npositionals;
    ArgUnknown *unknown;
    int nunknown;
} ArgParse;

/* Parses argv[0..argc) (pass argv + 1 to skip the program name). 0 ok; -1 with err set for a
 * malformed known flag (missing value, value given to a bool) or an ambiguous abbreviation. ap
 * must be freed with args_free either way.
 * abbrev: NULL, or the comma-separated spellings (each one of a spec's) whose prefixes name
 * their flag, as Python argparse abbreviates by default (`--batch 50` for `--batch-size`): the
 * flags of the script a program replaces (the trainer: task.py's), not the program's own
 * additions, so that a platform's extra flag is not captured by one of those. A prefix of
 * several flags' spellings is an error naming them, as argparse's. */
int args_parse(ArgParse *ap, const ArgSpec *specs, int nspecs, int argc, char **argv,
               const char *abbrev, char *err, size_t errlen);
void args_free(ArgParse *ap);

/* Spec index for any spelling of a name (dashes/underscores, aliases), or -1. */
int args_find(const ArgSpec *specs, int nspecs, const char *name);
const ArgValue *args_value(const ArgParse *ap, const char *name);   /* NULL for an unknown name */
int args_has(const ArgParse *ap, const char *name);
const char *args_get(const ArgParse *ap, const char *name, const char *def);

/* Typed look-ups: absent -> *out = def, 0. Bad text -> -1, err names the flag. */
int args_get_int(const ArgParse *ap, const char *name, int def, int *out, char *err, size_t errlen);
int args_get_int64(const ArgParse *ap, const char *name, int64_t def, int64_t *out, char *err,
                   size_t errlen);
int args_get_double(const ArgParse *ap, const char *name, double def, double *out, char *err,
                    size_t errlen);
/* Bool flags: absent -> def; `--x` -> 1; `--x=true|false|1|0|yes|no`. */
int args_get_bool(const ArgParse *ap, const char *name, int def, int *out, char *err, size_t errlen);
/* choices: NULL-terminated; matched case-insensitively; *out = index in choices. */
int args_get_enum(const ArgParse *ap, const char *name, const char *const *choices, int def,
                  int *out, char *err, size_t errlen);

/* The same value parsers on a bare string; flag is used only in the error text. */
int args_parse_int(const char *flag, const char *s, int *out, char *err, size_t errlen);
int args_parse_int64(const char *flag, const char *s, int64_t *out, char *err, size_t errlen);
int args_parse_double(const char *flag, const char *s, double *out, char *err, size_t errlen);
int args_parse_bool(const char *flag, const char *s, int *out, char *err, size_t errlen);
int args_parse_enum(const char *flag, const char *s, const char *const *choices, int *out, char *err,
                    size_t errlen);

/* "  --name, --alias METAVAR   help" lines, one per spec. */
void args_print_help(FILE *out, const ArgSpec *specs, int nspecs);

#endif
