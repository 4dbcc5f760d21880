/* tf_log.h: log lines in the format Python TensorFlow prints through the `logging` module
 * ("INFO:tensorflow:loss = 0.29, step = 101 (0.315 sec)"), on stderr, filtered by verbosity.
 *
 * Scripts and SageMaker metric regexes scrape these lines, so the text after the prefix follows
 * the Estimator's format strings (see docs/cli-trainer.md). Level names are Python's: DEBUG, INFO,
 * WARNING, ERROR, CRITICAL (TF's FATAL). A progress line ("\r..." overwritten in place) is shown
 * only when stderr is a terminal; every log line first erases it, so no line is ever mixed.
 */
#ifndef CLI_TF_LOG_H
#define CLI_TF_LOG_H

#include <stdio.h>

typedef enum {
    TF_LOG_DEBUG = 10, TF_LOG_INFO = 20, TF_LOG_WARN = 30, TF_LOG_ERROR = 40, TF_LOG_FATAL = 50
} TfLogLevel;

/* "DEBUG", "INFO", "WARN"/"WARNING", "ERROR", "FATAL"/"CRITICAL" (any case), or Python's numbers
 * "10".."50" (SageMaker's SM_LOG_LEVEL). 0 ok, -1 unknown. */
int tf_log_parse_level(const char *s, TfLogLevel *out);
const char *tf_log_level_name(TfLogLevel level);   /* Python's name: "INFO", "WARNING", ... */

/* Lines below `level` are dropped. Default INFO. */
void tf_log_set_level(TfLogLevel level);
int tf_log_enabled(TfLogLevel level);
/* Where lines go (default stderr). Tests point this at a file. */
void tf_log_set_stream(FILE *f);

void tf_log(TfLogLevel level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define tf_debug(...) tf_log(TF_LOG_DEBUG, __VA_ARGS__)
#define tf_info(...) tf_log(TF_LOG_INFO, __VA_ARGS__)
#define tf_warn(...) tf_log(TF_LOG_WARN, __VA_ARGS__)
#define tf_error(...) tf_log(TF_LOG_ERROR, __VA_ARGS__)

/* A transient status line, shown (overwritten in place) only on a terminal and at INFO. */
void tf_log_progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Erase the progress line, if any (call before printing anything else to the terminal). */
void tf_log_progress_clear(void);

/* The shortest decimal text that reads back as the same float32 / double (as numpy's repr of a
 * float32 and Python's repr of a float): 2.3025851, 0.9712, 1e-05. buf >= 32 bytes. */
const char *tf_fmt_float(char *buf, size_t len, float v);
const char *tf_fmt_double(char *buf, size_t len, double v);

#endif /* CLI_TF_LOG_H */
