/* tfrecord: the TFRecord tool.
 *
 *   tfrecord from-idx --images FILE --labels FILE --out FILE [--compression none|gzip|zlib]
 *   tfrecord verify INPUT... [--compression C]
 *   tfrecord count  INPUT... [--compression C]
 *   tfrecord dump   INPUT... [--limit N] [--max-values N] [--json] [--compression C]
 *
 * INPUT is a file, a directory (every regular file in it) or a glob. Reading detects the
 * compression from the stream header unless --compression says otherwise.
 * Exit status: 0 ok, 1 bad data (the message names file, record and offset), 2 bad usage.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/stdout_close.h"
#include "io/example.h"
#include "io/mnist_records.h"
#include "io/path_list.h"
#include "io/tfrecord.h"

enum { EXIT_DATA = 1, EXIT_USAGE = 2 };

static const char *const usage_text =
    "usage: tfrecord <command> [options]\n"
    "\n"
    "commands:\n"
    "  from-idx  convert MNIST IDX files (gzip or raw) to a TFRecord file of tf.train.Example\n"
    "  verify    check every record's CRCs and that it parses as a tf.train.Example\n"
    "  count     count the records of each input (CRCs checked)\n"
    "  dump      print records as readable Examples\n"
    "\n"
    "Inputs are files, directories (all regular files in them, sorted) or glob patterns.\n"
    "Run 'tfrecord <command> --help' for a command's options.\n";

static const ArgSpec from_idx_specs[] = {
    {"images", NULL, ARG_VALUE, "FILE", "IDX image file, e.g. data/mnist/train-images-idx3-ubyte.gz"},
    {"labels", NULL, ARG_VALUE, "FILE", "IDX label file, e.g. data/mnist/train-labels-idx1-ubyte.gz"},
    {"out", "output", ARG_VALUE, "FILE", "TFRecord file to write (atomically)"},
    {"compression", NULL, ARG_VALUE, "C", "none (default), gzip or zlib"},
    {"help", "h", ARG_BOOL, NULL, "show this help"},
};
static const ArgSpec read_specs[] = {
    {"compression", NULL, ARG_VALUE, "C", "auto (default: from the stream header), none, gzip, zlib"},
    {"help", "h", ARG_BOOL, NULL, "show this help"},
};
static const ArgSpec dump_specs[] = {
    {"limit", NULL, ARG_VALUE, "N", "print at most N records in all (default: all)"},
    {"max-values", NULL, ARG_VALUE, "N", "values (bytes for bytes_list) shown per feature, 0 = all "
                                          "(default 16; --json always prints all)"},
    {"json", NULL, ARG_BOOL, NULL, "one JSON object per record (bytes as hex)"},
    {"compression", NULL, ARG_VALUE, "C", "auto (default: from the stream header), none, gzip, zlib"},
    {"help", "h", ARG_BOOL, NULL, "show this help"},
};
#define NSPECS(a) ((int)(sizeof(a) / sizeof((a)[0])))

typedef struct {
    const char *name, *synopsis;
    const ArgSpec *specs;
    int nspecs;
    int (*run)(ArgParse *ap);
} Command;

static void command_usage(FILE *out, const Command *c) {
    fprintf(out, "usage: tfrecord %s %s\n\noptions:\n", c->name, c->synopsis);
    args_print_help(out, c->specs, c->nspecs);
}

/* ---- shared helpers ------------------------------------------------------------------------ */

static int get_compression(ArgParse *ap, TfrCompression def, TfrCompression *c) {
    const char *s = args_get(ap, "compression", NULL);
    *c = def;
    if (s && tfr_compression_parse(s, c) != 0) {
        fprintf(stderr, "tfrecord: --compression: '%s' is not one of auto, none, gzip, zlib\n", s);
        return -1;
    }
    return 0;
}

/* Expands the positional inputs; reports and returns -1 when there are none or one is bad. */
static int expand_inputs(ArgParse *ap, PathList *files) {
    char err[1024];
    if (ap->npositionals == 0) {
        fprintf(stderr, "tfrecord: no input files given\n");
        return -1;
    }
    if (path_list_expand(files, ap->positionals, ap->npositionals, err, sizeof err) != 0) {
        fprintf(stderr, "tfrecord: %s\n", err);
        return -1;
    }
    return 0;
}

/* ---- from-idx ------------------------------------------------------------------------------ */

static int run_from_idx(ArgParse *ap) {
    const char *images = args_get(ap, "images", NULL), *labels = args_get(ap, "labels", NULL),
               *out = args_get(ap, "out", NULL);
    if (!images || !labels || !out || ap->npositionals) {
        fprintf(stderr, "tfrecord from-idx: %s\n",
                ap->npositionals ? "unexpected argument (use --images/--labels/--out)"
                                 : "--images, --labels and --out are required");
        return EXIT_USAGE;
    }
    TfrCompression c;
    if (get_compression(ap, TFR_NONE, &c)) return EXIT_USAGE;
    if (c == TFR_AUTO) {
        fprintf(stderr, "tfrecord from-idx: --compression must be none, gzip or zlib\n");
        return EXIT_USAGE;
    }
    char err[1024];
    int64_t count = 0;
    if (mnist_idx_to_tfrecord(images, labels, out, c, &count, err, sizeof err) != 0) {
        fprintf(stderr, "tfrecord from-idx: %s\n", err);
        return EXIT_DATA;
    }
    printf("wrote %" PRId64 " records to %s (compression %s)\n", count, out, tfr_compression_name(c));
    return 0;
}

/* ---- verify / count -------------------------------------------------------------------------- */

/* Reads every record of every input; verify also parses each as an Example. */
static int scan(ArgParse *ap, int parse_examples) {
    TfrCompression c;
    PathList files = {0};
    if (get_compression(ap, TFR_AUTO, &c) || expand_inputs(ap, &files)) {
        path_list_free(&files);
        return EXIT_USAGE;
    }
    int status = 0;
    int64_t total = 0;
    ExampleView view;
    example_view_init(&view);
    for (int i = 0; i < files.n && status == 0; i++) {
        char err[1024];
        TfrReader *r = tfr_reader_open(files.paths[i], c, err, sizeof err);
        if (!r) {
            fprintf(stderr, "tfrecord: %s\n", err);
            status = EXIT_DATA;
            break;
        }
        const uint8_t *d;
        size_t n;
        int rc;
        int64_t count = 0;
        while ((rc = tfr_reader_next(r, &d, &n)) == 1) {
            if (parse_examples && example_parse(&view, d, n, err, sizeof err) != 0) {
                fprintf(stderr, "tfrecord: %s: record %" PRIu64 " at offset %" PRIu64 ": %s\n",
                        files.paths[i], tfr_reader_index(r), tfr_reader_offset(r), err);
                rc = -2;
                break;
            }
            count++;
        }
        if (rc == -1) fprintf(stderr, "tfrecord: %s\n", tfr_reader_error(r));
        if (rc < 0) {
            status = EXIT_DATA;
        } else if (parse_examples) {
            printf("%s: %" PRId64 " records OK (compression %s)\n", files.paths[i], count,
                   tfr_compression_name(tfr_reader_compression(r)));
        } else {
            printf("%" PRId64 "\t%s\n", count, files.paths[i]);
        }
        total += count;
        tfr_reader_close(r);
    }
    if (status == 0 && files.n > 1) {
        if (parse_examples) printf("total: %" PRId64 " records OK in %d files\n", total, files.n);
        else printf("%" PRId64 "\ttotal\n", total);
    }
    example_view_free(&view);
    path_list_free(&files);
    return status;
}

static int run_verify(ArgParse *ap) { return scan(ap, 1); }
static int run_count(ArgParse *ap) { return scan(ap, 0); }

/* ---- dump ------------------------------------------------------------------------------------ */

static void print_float(float f) {
    if (isnan(f)) printf("\"nan\"");
    else if (isinf(f)) printf(f > 0 ? "\"inf\"" : "\"-inf\"");
    else if (f == 0.0f && signbit(f)) printf("-0.0");   /* JSON readers turn "-0" into integer 0 */
    else printf("%.9g", (double)f);
}

static void print_bytes_text(const uint8_t *p, size_t n, size_t max) {
    int printable = 1;
    for (size_t i = 0; i < n; i++)
        if (p[i] < 0x20 || p[i] > 0x7e) printable = 0;
    size_t shown = max && n > max ? max : n;
    if (printable) {
        putchar('"');
        for (size_t i = 0; i < shown; i++) {
            if (p[i] == '"' || p[i] == '\\') putchar('\\');
            putchar(p[i]);
        }
        putchar('"');
    } else {
        printf("0x");
        for (size_t i = 0; i < shown; i++) printf("%02x", p[i]);
    }
    if (shown < n) printf("... (%zu bytes)", n);
}

/* 0 ok; -1 when the values do not fit in memory (nothing printed then). */
static int dump_feature(const ExFeature *f, size_t max, int json) {
    size_t shown = max && f->count > max && !json ? max : f->count;
    void *values = NULL;   /* a huge packed list (up to 8 bytes per byte of record) may not fit */
    if ((f->kind == EX_KIND_INT64 || f->kind == EX_KIND_FLOAT) &&
        !(values = malloc((f->count + 1) * sizeof(int64_t))))
        return -1;
    if (json) printf("\"%s\":[", f->kind == EX_KIND_NONE ? "none" : ex_kind_name(f->kind));
    else printf("    %.*s: %s(%zu) [", (int)f->name_len, (const char *)f->name, ex_kind_name(f->kind), f->count);
    if (f->kind == EX_KIND_INT64) {
        int64_t *v = values;
        ex_feature_int64s(f, v);
        for (size_t i = 0; i < shown; i++) printf("%s%" PRId64, i ? ", " : "", v[i]);
    } else if (f->kind == EX_KIND_FLOAT) {
        float *v = values;
        ex_feature_floats(f, v);
        for (size_t i = 0; i < shown; i++) {
            printf("%s", i ? ", " : "");
            print_float(v[i]);
        }
    } else if (f->kind == EX_KIND_BYTES) {
        ExBytesIter it = {0};
        const uint8_t *p;
        size_t n;
        for (size_t i = 0; i < shown && ex_feature_bytes_next(f, &it, &p, &n); i++) {
            printf("%s", i ? ", " : "");
            if (json) {
                putchar('"');
                for (size_t k = 0; k < n; k++) printf("%02x", p[k]);
                putchar('"');
            } else {
                print_bytes_text(p, n, max);
            }
        }
    }
    free(values);
    if (shown < f->count) printf(", ...");
    printf(json ? "]" : "]\n");
    return 0;
}

/* Prints a JSON string of raw name bytes (escaping quotes, backslashes and control bytes). */
static void print_json_name(const uint8_t *p, size_t n) {
    putchar('"');
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '"' || p[i] == '\\') printf("\\%c", p[i]);
        else if (p[i] < 0x20) printf("\\u%04x", p[i]);
        else putchar(p[i]);
    }
    putchar('"');
}

static int run_dump(ArgParse *ap) {
    TfrCompression c;
    int64_t limit;
    int max_values, json;
    char err[1024];
    if (args_get_int64(ap, "limit", -1, &limit, err, sizeof err) ||
        args_get_int(ap, "max-values", 16, &max_values, err, sizeof err) ||
        args_get_bool(ap, "json", 0, &json, err, sizeof err)) {
        fprintf(stderr, "tfrecord dump: %s\n", err);
        return EXIT_USAGE;
    }
    if (max_values < 0) {
        fprintf(stderr, "tfrecord dump: --max-values: must be >= 0\n");
        return EXIT_USAGE;
    }
    PathList files = {0};
    if (get_compression(ap, TFR_AUTO, &c) || expand_inputs(ap, &files)) {
        path_list_free(&files);
        return EXIT_USAGE;
    }
    int status = 0;
    int64_t printed = 0;
    ExampleView view;
    example_view_init(&view);
    for (int i = 0; i < files.n && status == 0 && (limit < 0 || printed < limit); i++) {
        TfrReader *r = tfr_reader_open(files.paths[i], c, err, sizeof err);
        if (!r) {
            fprintf(stderr, "tfrecord: %s\n", err);
            status = EXIT_DATA;
            break;
        }
        const uint8_t *d;
        size_t n;
        int rc = 0;
        while ((limit < 0 || printed < limit) && (rc = tfr_reader_next(r, &d, &n)) == 1) {
            if (example_parse(&view, d, n, err, sizeof err) != 0) {
                fprintf(stderr, "tfrecord: %s: record %" PRIu64 " at offset %" PRIu64 ": %s\n",
                        files.paths[i], tfr_reader_index(r), tfr_reader_offset(r), err);
                status = EXIT_DATA;
                break;
            }
            if (json) {
                printf("{\"file\":");
                print_json_name((const uint8_t *)files.paths[i], strlen(files.paths[i]));
                printf(",\"index\":%" PRIu64 ",\"offset\":%" PRIu64 ",\"features\":{",
                       tfr_reader_index(r), tfr_reader_offset(r));
            } else {
                printf("%s record %" PRIu64 " (offset %" PRIu64 ", %zu bytes)\n  features {\n",
                       files.paths[i], tfr_reader_index(r), tfr_reader_offset(r), n);
            }
            /* Features in wire order; a repeated key shows its last value only (as TF sees it). */
            int first = 1;
            for (size_t k = 0; k < view.n; k++) {
                const ExFeature *f = &view.features[k];
                int shadowed = 0;
                for (size_t j = k + 1; j < view.n; j++)
                    if (view.features[j].name_len == f->name_len &&
                        !memcmp(view.features[j].name, f->name, f->name_len))
                        shadowed = 1;
                if (shadowed) continue;
                if (json) {
                    printf(first ? "" : ",");
                    print_json_name(f->name, f->name_len);
                    printf(":{");
                }
                if (dump_feature(f, (size_t)max_values, json) != 0) {
                    fflush(stdout);
                    fprintf(stderr, "tfrecord: %s: record %" PRIu64 " at offset %" PRIu64
                            ": feature '%.*s': out of memory for its %zu values\n",
                            files.paths[i], tfr_reader_index(r), tfr_reader_offset(r),
                            (int)f->name_len, (const char *)f->name, f->count);
                    status = EXIT_DATA;
                    break;
                }
                if (json) printf("}");
                first = 0;
            }
            if (status) break;
            printf(json ? "}}\n" : "  }\n");
            printed++;
        }
        if (status == 0 && rc < 0) {
            fprintf(stderr, "tfrecord: %s\n", tfr_reader_error(r));
            status = EXIT_DATA;
        }
        tfr_reader_close(r);
    }
    example_view_free(&view);
    path_list_free(&files);
    return status;
}

/* ---- main ------------------------------------------------------------------------------------ */

static const Command commands[] = {
    {"from-idx", "--images FILE --labels FILE --out FILE [--compression none|gzip|zlib]",
     from_idx_specs, NSPECS(from_idx_specs), run_from_idx},
    {"verify", "INPUT... [--compression C]", read_specs, NSPECS(read_specs), run_verify},
    {"count", "INPUT... [--compression C]", read_specs, NSPECS(read_specs), run_count},
    {"dump", "INPUT... [--limit N] [--max-values N] [--json] [--compression C]", dump_specs,
     NSPECS(dump_specs), run_dump},
};

int main(int argc, char **argv) {
    if (argc < 2) {
        fputs(usage_text, stderr);
        return EXIT_USAGE;
    }
    const char *name = argv[1];
    if (!strcmp(name, "--help") || !strcmp(name, "-h") || !strcmp(name, "help")) {
        fputs(usage_text, stdout);
        return 0;
    }
    const Command *cmd = NULL;
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(name, commands[i].name)) cmd = &commands[i];
    if (!cmd) {
        fprintf(stderr, "tfrecord: unknown command '%s'\n\n%s", name, usage_text);
        return EXIT_USAGE;
    }
    ArgParse ap;
    char err[512];
    int status;
    if (args_parse(&ap, cmd->specs, cmd->nspecs, argc - 2, argv + 2, NULL, err, sizeof err) != 0) {
        fprintf(stderr, "tfrecord %s: %s\n\n", cmd->name, err);
        command_usage(stderr, cmd);
        status = EXIT_USAGE;
    } else if (ap.nunknown > 0) {
        fprintf(stderr, "tfrecord %s: unknown option '%.*s'\n\n", cmd->name, ap.unknown[0].flag_len,
                ap.unknown[0].flag);
        command_usage(stderr, cmd);
        status = EXIT_USAGE;
    } else if (args_has(&ap, "help")) {
        command_usage(stdout, cmd);
        status = 0;
    } else {
        status = cmd->run(&ap);
    }
    args_free(&ap);
    if (stdout_close("tfrecord") != 0 && status == 0) status = EXIT_DATA;
    return status;
}
