/* args.c: shared command-line flag parser (see args.h). */
#include "cli/args.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Compares name[0..n) to want, treating '-' and '_' as equal. */
static int name_eq(const char *name, size_t n, const char *want, size_t wn) {
    if (n != wn) return 0;
    for (size_t i = 0; i < n; i++) {
        char a = name[i] == '_' ? '-' : name[i];
        char b = want[i] == '_' ? '-' : want[i];
        if (a != b) return 0;
    }
    return 1;
}

static int find_n(const ArgSpec *specs, int nspecs, const char *name, size_t n) {
    for (int i = 0; i < nspecs; i++) {
        if (name_eq(name, n, specs[i].name, strlen(specs[i].name))) return i;
        for (const char *a = specs[i].aliases; a && *a;) {
            const char *comma = strchr(a, ',');
            size_t an = comma ? (size_t)(comma - a) : strlen(a);
            if (name_eq(name, n, a, an)) return i;
            a = comma ? comma + 1 : a + an;
        }
    }
    return -1;
}

int args_find(const ArgSpec *specs, int nspecs, const char *name) {
    while (*name == '-') name++;
    return find_n(specs, nspecs, name, strlen(name));
}

/* Python argparse's abbreviations: a `--` flag that is no spelling of any spec but starts
 * spellings in `abbrev` of exactly one spec is that spec; one that starts several specs' is an
 * error naming them ("ambiguous option: --t could match --train, --test"), as argparse's, even
 * under parse_known_args. Spellings of one spec count once. Returns the spec, -1 for none, -2
 * (err set) when ambiguous. */
static int find_prefix(const ArgSpec *specs, int nspecs, const char *abbrev, const char *name,
                       size_t n, char *err, size_t errlen) {
    int found = -1, count = 0, len = 0;
    for (int pass = 0; pass < 2; pass++) {   /* count the specs; then, if several, name them */
        int listed = 0;
        for (int i = 0; i < nspecs; i++) {
            const char *spelling = NULL, *a = abbrev;
            size_t sl = 0;
            while (a && *a) {   /* the first listed spelling of spec i that name starts */
                const char *comma = strchr(a, ',');
                size_t an = comma ? (size_t)(comma - a) : strlen(a);
                if (an >= n && name_eq(name, n, a, n) && find_n(specs, nspecs, a, an) == i) {
                    spelling = a;
                    sl = an;
                    break;
                }
                a = comma ? comma + 1 : a + an;
            }
            if (!spelling) continue;
            if (pass == 0 && count++ == 0) found = i;
            if (pass == 1 && len >= 0 && (size_t)len < errlen)
                len += snprintf(err + len, errlen - (size_t)len, "%s --%.*s", listed++ ? "," : "",
                                (int)sl, spelling);
        }
        if (count <= 1) return found;
        if (pass == 0)
            len = snprintf(err, errlen, "ambiguous option: --%.*s could match", (int)n, name);
    }
    return -2;
}

static int push(void *arr_ptr, int *n, size_t elem, const void *item) {
    void **arr = arr_ptr;
    /* Grow by doubling at powers of two (n is the count before the push). */
    if ((*n & (*n - 1)) == 0) {
        size_t cap = *n ? (size_t)*n * 2 : 4;
        void *p = realloc(*arr, cap * elem);
        if (!p) return -1;
        *arr = p;
    }
    memcpy((char *)*arr + (size_t)*n * elem, item, elem);
    (*n)++;
    return 0;
}

/* A token that starts a flag: "--x..." or "-x" (a letter). A bare "-" or "-5" is a value. */
static int is_flag(const char *t) {
    if (t[0] != '-') return 0;
    if (t[1] == '-') return t[2] != '\0';
    return isalpha((unsigned char)t[1]) != 0;
}

int args_parse(ArgParse *ap, const ArgSpec *specs, int nspecs, int argc, char **argv,
               const char *abbrev, char *err, size_t errlen) {
    memset(ap, 0, sizeof *ap);
    ap->specs = specs;
    ap->nspecs = nspecs;
    ap->vals = calloc((size_t)(nspecs > 0 ? nspecs : 1), sizeof *ap->vals);
    if (!ap->vals) goto oom;
    int flags_done = 0;
    for (int i = 0; i < argc; i++) {
        const char *t = argv[i];
        if (!flags_done && strcmp(t, "--") == 0) {
            flags_done = 1;
            continue;
        }
        if (flags_done || !is_flag(t)) {
            if (push(&ap->positionals, &ap->npositionals, sizeof(char *), &t)) goto oom;
            continue;
        }
        const char *name = t + (t[1] == '-' ? 2 : 1);
        const char *eq = strchr(name, '=');
        size_t n = eq ? (size_t)(eq - name) : strlen(name);
        int k = find_n(specs, nspecs, name, n);
        if (k < 0 && abbrev && t[1] == '-' && n > 0) {
            k = find_prefix(specs, nspecs, abbrev, name, n, err, errlen);
            if (k == -2) return -1;
        }
        if (k < 0) {
            ArgUnknown u = {t, (int)(name - t + n), eq ? eq + 1 : NULL};
            if (!eq && i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0) u.value = argv[++i];
            if (push(&ap->unknown, &ap->nunknown, sizeof u, &u)) goto oom;
            continue;
        }
        const ArgSpec *s = &specs[k];
        ArgValue *v = &ap->vals[k];
        v->present++;
        if (s->kind == ARG_BOOL) {
            v->value = eq ? eq + 1 : NULL;
            continue;
        }
        if (eq) {
            v->value = eq + 1;
        } else if (i + 1 < argc && !(s->kind == ARG_LIST ? is_flag(argv[i + 1])
                                                          : strncmp(argv[i + 1], "--", 2) == 0 &&
                                                                argv[i + 1][2] != '\0')) {
            v->value = argv[++i];
        } else {
            snprintf(err, errlen, "--%s: missing value", s->name);
            return -1;
        }
        if (s->kind == ARG_LIST) {
            if (push(&v->values, &v->nvalues, sizeof(char *), &v->value)) goto oom;
            /* nargs='+': further tokens up to the next flag */
            while (!eq && i + 1 < argc && !is_flag(argv[i + 1])) {
                const char *more = argv[++i];
                if (push(&v->values, &v->nvalues, sizeof(char *), &more)) goto oom;
            }
        }
    }
    return 0;
oom:
    snprintf(err, errlen, "out of memory parsing arguments");
    return -1;
}

void args_free(ArgParse *ap) {
    if (ap->vals)
        for (int i = 0; i < ap->nspecs; i++) free(ap->vals[i].values);
    free(ap->vals);
    free(ap->positionals);
    free(ap->unknown);
    memset(ap, 0, sizeof *ap);
}

const ArgValue *args_value(const ArgParse *ap, const char *name) {
    int k = args_find(ap->specs, ap->nspecs, name);
    return k < 0 ? NULL : &ap->vals[k];
}

int args_has(const ArgParse *ap, const char *name) {
    const ArgValue *v = args_value(ap, name);
    return v && v->present;
}

const char *args_get(const ArgParse *ap, const char *name, const char *def) {
    const ArgValue *v = args_value(ap, name);
    return v && v->present && v->value ? v->value : def;
}

/* ---- value parsers ---------------------------------------------------------------------- */

int args_parse_int64(const char *flag, const char *s, int64_t *out, char *err, size_t errlen) {
    char *end;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (end == s || *end != '\0' || isspace((unsigned char)*s)) {
        snprintf(err, errlen, "%s: '%s' is not an integer", flag, s);
        return -1;
    }
    if (errno == ERANGE) {
        snprintf(err, errlen, "%s: '%s' is out of range", flag, s);
        return -1;
    }
    *out = x;
    return 0;
}

int args_parse_int(const char *flag, const char *s, int *out, char *err, size_t errlen) {
    int64_t x;
    if (args_parse_int64(flag, s, &x, err, errlen)) return -1;
    if (x < -2147483647 - 1 || x > 2147483647) {
        snprintf(err, errlen, "%s: '%s' is out of range", flag, s);
        return -1;
    }
    *out = (int)x;
    return 0;
}

int args_parse_double(const char *flag, const char *s, double *out, char *err, size_t errlen) {
    char *end;
    errno = 0;
    double x = strtod(s, &end);
    if (end == s || *end != '\0' || isspace((unsigned char)*s)) {
        snprintf(err, errlen, "%s: '%s' is not a number", flag, s);
        return -1;
    }
    if (errno == ERANGE && fabs(x) > 1.0) {
        snprintf(err, errlen, "%s: '%s' is out of range", flag, s);
        return -1;
    }
    if (!isfinite(x)) {
        snprintf(err, errlen, "%s: '%s' is not a finite number", flag, s);
        return -1;
    }
    *out = x;
    return 0;
}

int args_parse_bool(const char *flag, const char *s, int *out, char *err, size_t errlen) {
    static const char *const truthy[] = {"true", "1", "yes", "on", NULL};
    static const char *const falsy[] = {"false", "0", "no", "off", NULL};
    for (int i = 0; truthy[i]; i++) {
        if (strcasecmp(s, truthy[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(s, falsy[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    snprintf(err, errlen, "%s: '%s' is not a boolean (true/false)", flag, s);
    return -1;
}

int args_parse_enum(const char *flag, const char *s, const char *const *choices, int *out, char *err,
                    size_t errlen) {
    for (int i = 0; choices[i]; i++) {
        if (strcasecmp(s, choices[i]) == 0) {
            *out = i;
            return 0;
        }
    }
    int n = snprintf(err, errlen, "%s: '%s' is not one of", flag, s);
    for (int i = 0; choices[i] && n >= 0 && (size_t)n < errlen; i++)
        n += snprintf(err + n, errlen - (size_t)n, "%s%s", i ? ", " : " ", choices[i]);
    return -1;
}

/* The flag's canonical spelling for error messages, and its value if given. */
static const char *typed_value(const ArgParse *ap, const char *name, char *flag, size_t flaglen) {
    int k = args_find(ap->specs, ap->nspecs, name);
    snprintf(flag, flaglen, "--%s", k >= 0 ? ap->specs[k].name : name);
    return k >= 0 && ap->vals[k].present ? ap->vals[k].value : NULL;
}

int args_get_int(const ArgParse *ap, const char *name, int def, int *out, char *err, size_t errlen) {
    char flag[128];
    const char *s = typed_value(ap, name, flag, sizeof flag);
    if (!s) {
        *out = def;
        return 0;
    }
    return args_parse_int(flag, s, out, err, errlen);
}

int args_get_int64(const ArgParse *ap, const char *name, int64_t def, int64_t *out, char *err,
                   size_t errlen) {
    char flag[128];
    const char *s = typed_value(ap, name, flag, sizeof flag);
    if (!s) {
        *out = def;
        return 0;
    }
    return args_parse_int64(flag, s, out, err, errlen);
}

int args_get_double(const ArgParse *ap, const char *name, double def, double *out, char *err,
                    size_t errlen) {
    char flag[128];
    const char *s = typed_value(ap, name, flag, sizeof flag);
    if (!s) {
        *out = def;
        return 0;
    }
    return args_parse_double(flag, s, out, err, errlen);
}

int args_get_bool(const ArgParse *ap, const char *name, int def, int *out, char *err, size_t errlen) {
    char flag[128];
    const char *s = typed_value(ap, name, flag, sizeof flag);
    if (!s) {
        *out = args_has(ap, name) ? 1 : def;
        return 0;
    }
    return args_parse_bool(flag, s, out, err, errlen);
}

int args_get_enum(const ArgParse *ap, const char *name, const char *const *choices, int def,
                  int *out, char *err, size_t errlen) {
    char flag[128];
    const char *s = typed_value(ap, name, flag, sizeof flag);
    if (!s) {
        *out = def;
        return 0;
    }
    return args_parse_enum(flag, s, choices, out, err, errlen);
}

void args_print_help(FILE *out, const ArgSpec *specs, int nspecs) {
    for (int i = 0; i < nspecs; i++) {
        const ArgSpec *s = &specs[i];
        char left[160];
        int n = snprintf(left, sizeof left, "  %s%s", strlen(s->name) == 1 ? "-" : "--", s->name);
        for (const char *a = s->aliases; a && *a && n >= 0 && (size_t)n < sizeof left;) {
            const char *comma = strchr(a, ',');
            int an = comma ? (int)(comma - a) : (int)strlen(a);
            n += snprintf(left + n, sizeof left - (size_t)n, ", %s%.*s", an == 1 ? "-" : "--", an, a);
            a = comma ? comma + 1 : a + an;
        }
        if (s->metavar && n >= 0 && (size_t)n < sizeof left)
            snprintf(left + n, sizeof left - (size_t)n, " %s", s->metavar);
        fprintf(out, "%-34s %s\n", left, s->help ? s->help : "");
    }
}
