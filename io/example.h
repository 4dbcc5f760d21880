/* example.h: tf.train.Example (example.proto / feature.proto), parse and build.
 *
 *   Example  { 1: Features features }
 *   Features { 1: map<string, Feature> feature }      (map entry: {1: key, 2: value})
 *   Feature  { oneof kind: 1 BytesList, 2 FloatList, 3 Int64List }
 *   BytesList { 1: repeated bytes }  FloatList { 1: repeated float [packed] }
 *   Int64List { 1: repeated int64 [packed] }
 *
 * The parser is zero-copy: an ExampleView points into the serialized bytes (which must outlive
 * it). It accepts what protobuf allows: packed and unpacked lists (and several packed chunks,
 * concatenated), map entries in any order, duplicate keys (the last wins), unknown fields
 * (skipped), several `features` fields (merged). Everything is validated by example_parse, so
 * value accessors on a parsed view cannot fail.
 *
 * The builder writes packed lists and features in the order they are added (add them sorted by
 * name for canonical bytes).
 */
#ifndef IO_EXAMPLE_H
#define IO_EXAMPLE_H

#include <stddef.h>
#include <stdint.h>

#include "io/pb_wire.h"

typedef enum {
    EX_KIND_NONE = 0,    /* a Feature with no list set */
    EX_KIND_BYTES = 1,
    EX_KIND_FLOAT = 2,
    EX_KIND_INT64 = 3,
} ExKind;

const char *ex_kind_name(ExKind k);   /* "bytes_list", "float_list", "int64_list", "no list" */

typedef struct {
    const uint8_t *name;
    size_t name_len;
    ExKind kind;
    const uint8_t *list;   /* the encoded BytesList / FloatList / Int64List message */
    size_t list_len;
    size_t count;          /* number of values in the list */
} ExFeature;

typedef struct {
    ExFeature *features;   /* in wire order (duplicates kept; look-ups take the last) */
    size_t n, cap;
} ExampleView;

void example_view_init(ExampleView *v);
void example_view_free(ExampleView *v);
/* Parses data[0..n) into v (its previous content is dropped, its memory reused). 0 ok; -1 with
 * err saying what is malformed. */
int example_parse(ExampleView *v, const void *data, size_t n, char *err, size_t errlen);
/* The feature called name (the last one if repeated), or NULL. */
const ExFeature *example_find(const ExampleView *v, const char *name);

/* Values of a parsed feature; out must hold f->count values. */
void ex_feature_int64s(const ExFeature *f, int64_t *out);
void ex_feature_floats(const ExFeature *f, float *out);
/* Bytes values one by one: zero it to start; 1 with *p and *n set, 0 after the last. */
typedef struct {
    PbReader r;
    int started;
} ExBytesIter;
int ex_feature_bytes_next(const ExFeature *f, ExBytesIter *it, const uint8_t **p, size_t *n);

/* Typed look-ups for a feature that must hold exactly `count` values: 0 ok; -1 with err like
 *   "feature 'label' is missing"
 *   "feature 'label' is a bytes_list, expected an int64_list"
 *   "feature 'label' has 2 values, expected 1". */
int example_get_int64s(const ExampleView *v, const char *name, int64_t *out, size_t count, char *err,
                       size_t errlen);
int example_get_floats(const ExampleView *v, const char *name, float *out, size_t count, char *err,
                       size_t errlen);
/* Exactly one bytes value; *p points into the serialized Example. */
int example_get_bytes(const ExampleView *v, const char *name, const uint8_t **p, size_t *n, char *err,
                      size_t errlen);

/* ---- builder ----------------------------------------------------------------------------- */
typedef struct {
    PbBuf features;        /* the Features message being built */
    PbBuf entry, feature, list;
} ExampleBuilder;

void example_builder_init(ExampleBuilder *b);
void example_builder_free(ExampleBuilder *b);
void example_builder_reset(ExampleBuilder *b);   /* start a new Example, keep the memory */
void example_add_int64s(ExampleBuilder *b, const char *name, const int64_t *v, size_t n);
void example_add_floats(ExampleBuilder *b, const char *name, const float *v, size_t n);
void example_add_bytes(ExampleBuilder *b, const char *name, const void *const *vals,
                       const size_t *lens, size_t n);
void example_add_bytes1(ExampleBuilder *b, const char *name, const void *p, size_t len);
/* Appends the serialized Example to out. 0 ok, -1 out of memory. */
int example_serialize(const ExampleBuilder *b, PbBuf *out);

#endif
