/* tf_log.c: TensorFlow-format log lines (see tf_log.h). */
#include "cli/tf_log.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static TfLogLevel g_level = TF_LOG_INFO;
static FILE *g_stream;             /* NULL: stderr */
static int g_progress_shown;       /* a progress line is on the terminal now */

static FILE *log_stream(void) { return g_stream ? g_stream : stderr; }

int tf_log_parse_level(const char *s, TfLogLevel *out) {
    static const struct { const char *name; TfLogLevel level; } names[] = {
        {"DEBUG", TF_LOG_DEBUG}, {"INFO", TF_LOG_INFO},   {"WARN", TF_LOG_WARN},
        {"WARNING", TF_LOG_WARN}, {"ERROR", TF_LOG_ERROR}, {"FATAL", TF_LOG_FATAL},
        {"CRITICAL", TF_LOG_FATAL}, {"10", TF_LOG_DEBUG}, {"20", TF_LOG_INFO},
        {"30", TF_LOG_WARN}, {"40", TF_LOG_ERROR}, {"50", TF_LOG_FATAL},
    };
    if (!s) return -1;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcasecmp(s, names[i].name) == 0) {
            *out = names[i].level;
            return 0;
        }
    return -1;
}

const char *tf_log_level_name(TfLogLevel level) {
    switch (level) {
    case TF_LOG_DEBUG: return "DEBUG";
    case TF_LOG_INFO: return "INFO";
    case TF_LOG_WARN: return "WARNING";
    case TF_LOG_ERROR: return "ERROR";
    case TF_LOG_FATAL: return "CRITICAL";
    }
    return "INFO";
}

void tf_log_set_level(TfLogLevel level) { g_level = level; }
int tf_log_enabled(TfLogLevel level) { return level >= g_level; }
void tf_log_set_stream(FILE *f) { g_stream = f; }

void tf_log_progress_clear(void) {
    if (!g_progress_shown) return;
    fputs("\r\033[K", log_stream());
    fflush(log_stream());
    g_progress_shown = 0;
}

void tf_log(TfLogLevel level, const char *fmt, ...) {
    if (!tf_log_enabled(level)) return;
    FILE *f = log_stream();
    tf_log_progress_clear();
    fprintf(f, "%s:tensorflow:", tf_log_level_name(level));
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fputc('\n', f);
    fflush(f);
}

void tf_log_progress(const char *fmt, ...) {
    FILE *f = log_stream();
    if (!tf_log_enabled(TF_LOG_INFO) || !isatty(fileno(f))) return;
    fputs("\r\033[K", f);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fflush(f);
    g_progress_shown = 1;
}

/* Python's repr rules for a number known to need `prec` significant digits: positional for
 * decimal exponents -4..15 (with ".0" on integral values), else d.ddde+XX. */
static const char *format_repr(char *buf, size_t len, double v, int prec) {
    if (isnan(v)) return snprintf(buf, len, "nan"), buf;
    if (isinf(v)) return snprintf(buf, len, v < 0 ? "-inf" : "inf"), buf;
    if (v == 0) return snprintf(buf, len, signbit(v) ? "-0.0" : "0.0"), buf;
    char tmp[64];
    snprintf(tmp, sizeof tmp, "%.*e", prec - 1, v);
    int exp10 = atoi(strchr(tmp, 'e') + 1);
    if (exp10 < -4 || exp10 >= 16) {
        /* Python writes 1e-05, 2.5e+16: at least two exponent digits, as %e does. */
        snprintf(buf, len, "%.*g", prec, v);
        return buf;
    }
    int decimals = prec - 1 - exp10;
    if (decimals < 1) decimals = 0;
    snprintf(buf, len, "%.*f", decimals, v);
    if (!strchr(buf, '.')) strncat(buf, ".0", len - strlen(buf) - 1);
    return buf;
}

const char *tf_fmt_float(char *buf, size_t len, float v) {
    int prec = 1;
    char tmp[64];
    for (; prec < 9; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec - 1, (double)v);
        if (strtof(tmp, NULL) == v) break;
    }
    return format_repr(buf, len, (double)v, prec);
}

const char *tf_fmt_double(char *buf, size_t len, double v) {
    int prec = 1;
    char tmp[64];
    for (; prec < 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec - 1, v);
        if (strtod(tmp, NULL) == v) break;
    }
    return format_repr(buf, len, v, prec);
}
