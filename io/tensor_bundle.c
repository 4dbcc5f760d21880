/* tensor_bundle.c: TF's tensor bundle (V2 checkpoint) = an SSTable index + a raw data file.
 * The SSTable code follows tf-formats.md §6 (LevelDB's table format as TF's lib/io writes it). */
#include "io/tensor_bundle.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/atomic_file.h"
#include "io/fail.h"
#include "io/fs.h"
#include "io/crc32c.h"

/* TF's table options for bundles. */
enum {
    BLOCK_SIZE = 262144,
    DATA_RESTART_INTERVAL = 16,
    BLOCK_TRAILER_SIZE = 5,         /* type byte + masked crc32c */
    FOOTER_SIZE = 48,               /* two BlockHandles padded to 40 bytes + 8 magic bytes */
};
static const uint8_t TABLE_MAGIC[8] = {0x57, 0xfb, 0x80, 0x8b, 0x24, 0x75, 0x47, 0xdb};

/* BundleHeaderProto / BundleEntryProto / VersionDef / TensorShapeProto field numbers. */
enum { HDR_NUM_SHARDS = 1, HDR_ENDIANNESS = 2, HDR_VERSION = 3 };
enum { VER_PRODUCER = 1, VER_MIN_CONSUMER = 2, VER_BAD_CONSUMERS = 3 };
enum { ENT_DTYPE = 1, ENT_SHAPE = 2, ENT_SHARD_ID = 3, ENT_OFFSET = 4, ENT_SIZE = 5, ENT_CRC = 6,
       ENT_SLICES = 7 };
enum { SHAPE_DIM = 2, SHAPE_UNKNOWN_RANK = 3, DIM_SIZE = 1 };
/* The bundle format version this code reads and writes (kTensorBundleVersion). */
enum { BUNDLE_VERSION = 1 };

void bundle_data_filename(char *out, size_t cap, const char *prefix, int shard, int num_shards) {
    snprintf(out, cap, "%s.data-%05d-of-%05d", prefix, shard, num_shards);
}

/* ---- SSTable writer ------------------------------------------------------------------------ */

/* Copies key[0..klen) into *buf (grown to *cap bytes as needed) and sets *len. 0 ok, -1 out of
 * memory. */
static int copy_key(char **buf, size_t *len, size_t *cap, const char *key, size_t klen) {
    if (klen + 1 > *cap) {
        char *p = realloc(*buf, klen + 1);
        if (!p) return -1;
        *buf = p;
        *cap = klen + 1;
    }
    memcpy(*buf, key, klen);
    *len = klen;
    return 0;
}

/* A block being built: entries with prefix-compressed keys, then the restart array. */
typedef struct {
    PbBuf buf;
    uint32_t *restarts;
    size_t nrestarts, cap;
    int counter, interval;
    char *last_key;
    size_t last_len, last_cap;
    int empty;
} BlockBuilder;

static void block_reset(BlockBuilder *b) {
    pb_buf_reset(&b->buf);
    b->nrestarts = 1;
    b->restarts[0] = 0;
    b->counter = 0;
    b->last_len = 0;
    b->empty = 1;
}

static int block_init(BlockBuilder *b, int interval) {
    memset(b, 0, sizeof *b);
    pb_buf_init(&b->buf);
    b->interval = interval;
    b->cap = 16;
    b->restarts = malloc(b->cap * sizeof *b->restarts);
    if (!b->restarts) return -1;
    block_reset(b);
    return 0;
}

static void block_free(BlockBuilder *b) {
    pb_buf_free(&b->buf);
    free(b->restarts);
    free(b->last_key);
}

static int block_add(BlockBuilder *b, const char *key, size_t klen, const void *val, size_t vlen) {
    size_t shared = 0;
    if (b->counter < b->interval) {
        size_t m = klen < b->last_len ? klen : b->last_len;
        while (shared < m && key[shared] == b->last_key[shared]) shared++;
    } else {
        if (b->nrestarts == b->cap) {
            uint32_t *p = realloc(b->restarts, 2 * b->cap * sizeof *p);
            if (!p) return -1;
            b->restarts = p;
            b->cap *= 2;
        }
        b->restarts[b->nrestarts++] = (uint32_t)b->buf.len;
        b->counter = 0;
    }
    pb_put_varint_raw(&b->buf, shared);
    pb_put_varint_raw(&b->buf, klen - shared);
    pb_put_varint_raw(&b->buf, vlen);
    pb_put_raw(&b->buf, key + shared, klen - shared);
    pb_put_raw(&b->buf, val, vlen);
    if (copy_key(&b->last_key, &b->last_len, &b->last_cap, key, klen)) return -1;
    b->counter++;
    b->empty = 0;
    return b->buf.oom ? -1 : 0;
}

static size_t block_size_estimate(const BlockBuilder *b) {
    return b->buf.len + b->nrestarts * 4 + 4;
}

static void put_u32le(PbBuf *out, uint32_t v) {
    uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    pb_put_raw(out, x, 4);
}

static uint32_t get_u32le(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

typedef struct { uint64_t offset, size; } BlockHandle;

/* Appends the finished block and its trailer (type 0 = uncompressed, masked CRC over contents and
 * type byte) to out; resets the block. */
static void write_block(PbBuf *out, BlockBuilder *b, BlockHandle *h) {
    for (size_t i = 0; i < b->nrestarts; i++) put_u32le(&b->buf, b->restarts[i]);
    put_u32le(&b->buf, (uint32_t)b->nrestarts);
    h->offset = out->len;
    h->size = b->buf.len;
    pb_put_raw(out, b->buf.data, b->buf.len);
    const uint8_t type = 0;
    uint32_t crc = crc32c_extend(crc32c(b->buf.data, b->buf.len), &type, 1);
    pb_put_raw(out, &type, 1);
    put_u32le(out, crc32c_mask(crc));
    block_reset(b);
}

static void encode_handle(PbBuf *out, const BlockHandle *h) {
    pb_put_varint_raw(out, h->offset);
    pb_put_varint_raw(out, h->size);
}

/* TF's FindShortestSeparator: shortens key (in place, length *len) to a string in
 * [key, limit) when one byte can be incremented. */
static void shortest_separator(char *key, size_t *len, const char *limit, size_t limit_len) {
    size_t m = *len < limit_len ? *len : limit_len, i = 0;
    while (i < m && key[i] == limit[i]) i++;
    if (i >= m) return;                          /* one is a prefix of the other */
    uint8_t d = (uint8_t)key[i];
    if (d < 0xff && d + 1 < (uint8_t)limit[i]) {
        key[i] = (char)(d + 1);
        *len = i + 1;
    }
}

/* TF's FindShortSuccessor: increment the first byte that is not 0xff and cut after it. */
static void short_successor(char *key, size_t *len) {
    for (size_t i = 0; i < *len; i++) {
        if ((uint8_t)key[i] != 0xff) {
            key[i] = (char)((uint8_t)key[i] + 1);
            *len = i + 1;
            return;
        }
    }
}

/* An SSTable writer over an in-memory file (indexes are small). */
typedef struct {
    PbBuf *out;
    BlockBuilder data, index;
    int pending_index;
    BlockHandle pending;
    char *last_key;
    size_t last_len, last_cap;
    long n;
} TableBuilder;

static int table_init(TableBuilder *t, PbBuf *out) {
    memset(t, 0, sizeof *t);
    t->out = out;
    if (block_init(&t->data, DATA_RESTART_INTERVAL) || block_init(&t->index, 1)) return -1;
    return 0;
}

static void table_free(TableBuilder *t) {
    block_free(&t->data);
    block_free(&t->index);
    free(t->last_key);
}

static void table_flush(TableBuilder *t) {
    if (t->data.empty) return;
    write_block(t->out, &t->data, &t->pending);
    t->pending_index = 1;
}

static int table_add_pending_index(TableBuilder *t) {
    PbBuf h;
    pb_buf_init(&h);
    encode_handle(&h, &t->pending);
    int rc = block_add(&t->index, t->last_key, t->last_len, h.data, h.len);
    pb_buf_free(&h);
    t->pending_index = 0;
    return rc;
}

/* Keys must come in strictly increasing bytewise order (the caller sorted them). */
static int table_add(TableBuilder *t, const char *key, size_t klen, const void *val, size_t vlen) {
    if (t->n > 0 && klen + vlen >= 2 * (size_t)BLOCK_SIZE) table_flush(t);  /* overly large entry */
    if (t->pending_index) {
        shortest_separator(t->last_key, &t->last_len, key, klen);
        if (table_add_pending_index(t)) return -1;
    }
    if (copy_key(&t->last_key, &t->last_len, &t->last_cap, key, klen)) return -1;
    t->n++;
    if (block_add(&t->data, key, klen, val, vlen)) return -1;
    if (block_size_estimate(&t->data) >= BLOCK_SIZE) table_flush(t);
    return 0;
}

static int table_finish(TableBuilder *t) {
    BlockHandle meta, index;
    table_flush(t);
    BlockBuilder empty;
    if (block_init(&empty, DATA_RESTART_INTERVAL)) return -1;
    write_block(t->out, &empty, &meta);                 /* no meta blocks: an empty metaindex */
    block_free(&empty);
    if (t->pending_index) {
        short_successor(t->last_key, &t->last_len);
        if (table_add_pending_index(t)) return -1;
    }
    write_block(t->out, &t->index, &index);
    size_t start = t->out->len;
    encode_handle(t->out, &meta);
    encode_handle(t->out, &index);
    static const uint8_t zeros[40] = {0};
    pb_put_raw(t->out, zeros, 40 - (t->out->len - start));
    pb_put_raw(t->out, TABLE_MAGIC, 8);
    return t->out->oom ? -1 : 0;
}

/* ---- protos -------------------------------------------------------------------------------- */

static void encode_header(PbBuf *out, int num_shards) {
    PbBuf ver;
    pb_buf_init(&ver);
    pb_put_int64(&ver, VER_PRODUCER, BUNDLE_VERSION);
    pb_put_int64(out, HDR_NUM_SHARDS, num_shards);
    /* endianness LITTLE = 0: omitted as proto3 does */
    pb_put_message(out, HDR_VERSION, &ver);
    pb_buf_free(&ver);
}

/* Fields equal to their proto3 default are omitted, as TF's serializer does; the shape is always
 * written (an empty message for a scalar). */
static void encode_entry(PbBuf *out, const BundleEntry *e) {
    PbBuf shape, dim;
    pb_buf_init(&shape);
    pb_buf_init(&dim);
    for (int i = 0; i < e->rank; i++) {
        pb_buf_reset(&dim);
        if (e->shape[i] != 0) pb_put_int64(&dim, DIM_SIZE, e->shape[i]);
        pb_put_message(&shape, SHAPE_DIM, &dim);
    }
    if (e->dtype != 0) pb_put_uint64(out, ENT_DTYPE, (uint64_t)e->dtype);
    pb_put_message(out, ENT_SHAPE, &shape);
    if (e->shard_id != 0) pb_put_int64(out, ENT_SHARD_ID, e->shard_id);
    if (e->offset != 0) pb_put_int64(out, ENT_OFFSET, (int64_t)e->offset);
    if (e->size != 0) pb_put_int64(out, ENT_SIZE, (int64_t)e->size);
    if (e->masked_crc != 0) pb_put_fixed32(out, ENT_CRC, e->masked_crc);
    pb_buf_free(&shape);
    pb_buf_free(&dim);
}

static int cmp_entry_ptr(const void *a, const void *b) {
    const BundleEntry *x = *(const BundleEntry *const *)a, *y = *(const BundleEntry *const *)b;
    return strcmp(x->name, y->name);          /* strcmp compares as unsigned char: bytewise */
}

int bundle_index_encode(const BundleEntry *entries, int n, PbBuf *out, char *err, size_t errlen) {
    if (n < 0) return io_fail(err, errlen, "bundle: negative entry count");
    const BundleEntry **order = malloc((size_t)(n ? n : 1) * sizeof *order);
    if (!order) return io_fail(err, errlen, "bundle: out of memory");
    int num_shards = 1;
    for (int i = 0; i < n; i++) {
        order[i] = &entries[i];
        if (!entries[i].name || !entries[i].name[0]) {
            free(order);
            return io_fail(err, errlen, "bundle: tensor %d has an empty name", i);
        }
        if (entries[i].rank < 0 || entries[i].rank > TF_MAX_RANK) {
            free(order);
            return io_fail(err, errlen, "bundle: tensor '%s' has rank %d (0..%d)", entries[i].name,
                           entries[i].rank, TF_MAX_RANK);
        }
        if (entries[i].shard_id + 1 > num_shards) num_shards = entries[i].shard_id + 1;
    }
    qsort(order, (size_t)n, sizeof *order, cmp_entry_ptr);
    for (int i = 1; i < n; i++) {
        if (strcmp(order[i - 1]->name, order[i]->name) == 0) {
            const char *dup = order[i]->name;
            free(order);
            return io_fail(err, errlen, "bundle: tensor name '%s' appears twice", dup);
        }
    }
    TableBuilder t;
    PbBuf val;
    pb_buf_init(&val);
    int rc = table_init(&t, out);
    if (rc == 0) {
        encode_header(&val, num_shards);
        rc = table_add(&t, "", 0, val.data, val.len);
    }
    for (int i = 0; rc == 0 && i < n; i++) {
        pb_buf_reset(&val);
        encode_entry(&val, order[i]);
        rc = table_add(&t, order[i]->name, strlen(order[i]->name), val.data, val.len);
    }
    if (rc == 0) rc = table_finish(&t);
    if (rc == 0 && val.oom) rc = -1;
    table_free(&t);
    pb_buf_free(&val);
    free(order);
    return rc ? io_fail(err, errlen, "bundle: out of memory encoding the index") : 0;
}

/* ---- writer: data file, then index ---------------------------------------------------------- */

static int cmp_tensor_ptr(const void *a, const void *b) {
    const TfTensor *x = *(const TfTensor *const *)a, *y = *(const TfTensor *const *)b;
    return strcmp(x->name, y->name);
}

int bundle_write(const char *prefix, const TfTensor *tensors, int n, char *err, size_t errlen) {
    if (n < 0) return io_fail(err, errlen, "bundle %s: negative tensor count", prefix);
    for (int i = 0; i < n; i++) {
        const TfTensor *t = &tensors[i];
        if (!t->name || !t->name[0])
            return io_fail(err, errlen, "bundle %s: tensor %d has an empty name", prefix, i);
        size_t es = tf_dtype_size(t->dtype);
        if (es == 0)
            return io_fail(err, errlen, "bundle %s: tensor '%s' has dtype %d (%s), not a fixed-size "
                           "type", prefix, t->name, (int)t->dtype, tf_dtype_name(t->dtype));
        if (t->rank < 0 || t->rank > TF_MAX_RANK)
            return io_fail(err, errlen, "bundle %s: tensor '%s' has rank %d", prefix, t->name, t->rank);
        for (int d = 0; d < t->rank; d++)
            if (t->shape[d] < 0)
                return io_fail(err, errlen, "bundle %s: tensor '%s' has dimension %d = %lld", prefix,
                               t->name, d, (long long)t->shape[d]);
        int64_t elems = tf_shape_elements(t->rank, t->shape);
        if ((uint64_t)elems * es != t->nbytes)
            return io_fail(err, errlen, "bundle %s: tensor '%s' has %zu bytes, its shape needs %llu",
                           prefix, t->name, t->nbytes, (unsigned long long)((uint64_t)elems * es));
        if (t->nbytes && !t->data)
            return io_fail(err, errlen, "bundle %s: tensor '%s' has no data", prefix, t->name);
    }
    const TfTensor **order = malloc((size_t)(n ? n : 1) * sizeof *order);
    BundleEntry *entries = calloc((size_t)(n ? n : 1), sizeof *entries);
    if (!order || !entries) {
        free(order);
        free(entries);
        return io_fail(err, errlen, "bundle %s: out of memory", prefix);
    }
    for (int i = 0; i < n; i++) order[i] = &tensors[i];
    qsort(order, (size_t)n, sizeof *order, cmp_tensor_ptr);

    /* Data file: tensors in key order, contiguous (data_alignment 1). */
    char path[4096];
    bundle_data_filename(path, sizeof path, prefix, 0, 1);
    int rc = 0;
    AtomicFile *f = atomic_file_open(path, err, errlen);
    if (!f) rc = -1;
    uint64_t offset = 0;
    for (int i = 0; rc == 0 && i < n; i++) {
        const TfTensor *t = order[i];
        BundleEntry *e = &entries[i];
        e->name = (char *)t->name;
        e->dtype = t->dtype;
        e->rank = t->rank;
        memcpy(e->shape, t->shape, sizeof e->shape);
        e->offset = offset;
        e->size = t->nbytes;
        e->masked_crc = crc32c_mask(crc32c(t->data, t->nbytes));
        offset += t->nbytes;
        if (t->nbytes && fwrite(t->data, 1, t->nbytes, atomic_file_stream(f)) != t->nbytes)
            rc = io_fail(err, errlen, "%s: write failed: %s", atomic_file_temp_path(f),
                         strerror(errno));
    }
    if (f) {
        if (rc == 0) rc = atomic_file_commit(f, err, errlen);
        else atomic_file_abort(f);
    }
    /* Index, renamed into place after the data. */
    if (rc == 0) {
        PbBuf idx;
        pb_buf_init(&idx);
        rc = bundle_index_encode(entries, n, &idx, err, errlen);
        if (rc == 0) {
            snprintf(path, sizeof path, "%s.index", prefix);
            rc = atomic_file_write_all(path, idx.data, idx.len, err, errlen);
        }
        pb_buf_free(&idx);
    }
    free(order);
    free(entries);
    return rc;
}

/* ---- reader ---------------------------------------------------------------------------------- */

struct BundleReader {
    char *prefix;                   /* NULL when parsed from memory */
    char *what;                     /* names the index in messages */
    int num_shards;
    BundleEntry *entries;
    int n, cap;
    FILE **shards;                  /* opened on demand */
};

static void reader_free_entries(BundleReader *r) {
    for (int i = 0; i < r->n; i++) free(r->entries[i].name);
    free(r->entries);
}

void bundle_close(BundleReader *r) {
    if (!r) return;
    reader_free_entries(r);
    if (r->shards) {
        for (int i = 0; i < r->num_shards; i++)
            if (r->shards[i]) fclose(r->shards[i]);
        free(r->shards);
    }
    free(r->prefix);
    free(r->what);
    free(r);
}

int bundle_num_shards(const BundleReader *r) { return r->num_shards; }
int bundle_num_entries(const BundleReader *r) { return r->n; }
const BundleEntry *bundle_entry_at(const BundleReader *r, int i) {
    return i >= 0 && i < r->n ? &r->entries[i] : NULL;
}

const BundleEntry *bundle_find(const BundleReader *r, const char *name) {
    int lo = 0, hi = r->n - 1;                      /* entries are in key order */
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(r->entries[mid].name, name);
        if (c == 0) return &r->entries[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return NULL;
}

static int parse_version(const PbField *fv, const char *what, char *err, size_t errlen) {
    PbReader v;
    PbField g;
    pb_reader_init(&v, fv->data, fv->len);
    int64_t producer = 0, min_consumer = 0;
    int k;
    while ((k = pb_next(&v, &g)) == 1) {
        if (g.field == VER_PRODUCER && g.wire_type == PB_VARINT) producer = (int64_t)g.varint;
        else if (g.field == VER_MIN_CONSUMER && g.wire_type == PB_VARINT)
            min_consumer = (int64_t)g.varint;
        else if (g.field == VER_BAD_CONSUMERS) {
            /* packed or not: any entry equal to our version rejects the file */
            if (g.wire_type == PB_VARINT && (int64_t)g.varint == BUNDLE_VERSION)
                return io_fail(err, errlen, "%s: bundle version %d is listed as a bad consumer", what,
                               BUNDLE_VERSION);
            if (g.wire_type == PB_LEN) {
                PbReader p;
                pb_reader_init(&p, g.data, g.len);
                uint64_t x;
                while (p.p < p.end) {
                    if (pb_read_varint(&p, &x)) return io_fail(err, errlen, "%s: bad header version", what);
                    if ((int64_t)x == BUNDLE_VERSION)
                        return io_fail(err, errlen, "%s: bundle version %d is listed as a bad "
                                       "consumer", what, BUNDLE_VERSION);
                }
            }
        }
    }
    if (k < 0) return io_fail(err, errlen, "%s: header version: %s", what, v.error);
    if (producer < 0)
        return io_fail(err, errlen, "%s: bundle producer version %lld is too old", what,
                       (long long)producer);
    if (min_consumer > BUNDLE_VERSION)
        return io_fail(err, errlen, "%s: bundle needs a reader of version %lld, this one is %d", what,
                       (long long)min_consumer, BUNDLE_VERSION);
    return 0;
}

static int parse_header(BundleReader *r, const uint8_t *p, size_t n, char *err, size_t errlen) {
    PbReader rd;
    PbField f;
    pb_reader_init(&rd, p, n);
    int k, have_version = 0;
    r->num_shards = 0;
    while ((k = pb_next(&rd, &f)) == 1) {
        if (f.field == HDR_NUM_SHARDS && f.wire_type == PB_VARINT) {
            r->num_shards = (int)(int32_t)f.varint;
        } else if (f.field == HDR_ENDIANNESS && f.wire_type == PB_VARINT) {
            if (f.varint != 0)
                return io_fail(err, errlen, "%s: big-endian bundle, only little-endian is supported",
                               r->what);
        } else if (f.field == HDR_VERSION && f.wire_type == PB_LEN) {
            if (parse_version(&f, r->what, err, errlen)) return -1;
            have_version = 1;
        }
    }
    if (k < 0) return io_fail(err, errlen, "%s: malformed bundle header: %s", r->what, rd.error);
    (void)have_version;   /* an absent VersionDef is producer 0, min_consumer 0: accepted */
    if (r->num_shards < 1 || r->num_shards > 100000)
        return io_fail(err, errlen, "%s: bundle header has %d shards", r->what, r->num_shards);
    return 0;
}

static int parse_shape(const PbField *fs, BundleEntry *e, const char *what, char *err,
                       size_t errlen) {
    PbReader s;
    PbField d;
    int k;
    pb_reader_init(&s, fs->data, fs->len);
    e->rank = 0;
    while ((k = pb_next(&s, &d)) == 1) {
        if (d.field == SHAPE_UNKNOWN_RANK && d.wire_type == PB_VARINT && d.varint)
            return io_fail(err, errlen, "%s: tensor '%s' has an unknown rank", what, e->name);
        if (d.field != SHAPE_DIM || d.wire_type != PB_LEN) continue;
        if (e->rank == TF_MAX_RANK)
            return io_fail(err, errlen, "%s: tensor '%s' has more than %d dimensions", what, e->name,
                           TF_MAX_RANK);
        PbReader dr;
        PbField x;
        int64_t size = 0;
        pb_reader_init(&dr, d.data, d.len);
        while ((k = pb_next(&dr, &x)) == 1)
            if (x.field == DIM_SIZE && x.wire_type == PB_VARINT) size = (int64_t)x.varint;
        if (k < 0) return io_fail(err, errlen, "%s: tensor '%s': bad shape: %s", what, e->name, dr.error);
        if (size < 0)
            return io_fail(err, errlen, "%s: tensor '%s' has dimension %d = %lld", what, e->name, e->rank,
                           (long long)size);
        e->shape[e->rank++] = size;
    }
    if (k < 0) return io_fail(err, errlen, "%s: tensor '%s': bad shape: %s", what, e->name, s.error);
    return 0;
}

static int parse_entry(BundleReader *r, BundleEntry *e, const uint8_t *p, size_t n, char *err,
                       size_t errlen) {
    PbReader rd;
    PbField f;
    int k;
    pb_reader_init(&rd, p, n);
    while ((k = pb_next(&rd, &f)) == 1) {
        switch (f.field) {
        case ENT_DTYPE: if (f.wire_type == PB_VARINT) e->dtype = (TfDataType)f.varint; break;
        case ENT_SHAPE:
            if (f.wire_type == PB_LEN && parse_shape(&f, e, r->what, err, errlen)) return -1;
            break;
        case ENT_SHARD_ID: if (f.wire_type == PB_VARINT) e->shard_id = (int)(int32_t)f.varint; break;
        case ENT_OFFSET: if (f.wire_type == PB_VARINT) e->offset = f.varint; break;
        case ENT_SIZE: if (f.wire_type == PB_VARINT) e->size = f.varint; break;
        case ENT_CRC: if (f.wire_type == PB_FIXED32) e->masked_crc = (uint32_t)f.fixed; break;
        case ENT_SLICES:
            return io_fail(err, errlen, "%s: tensor '%s' is partitioned (slices), not supported",
                           r->what, e->name);
        default: break;
        }
    }
    if (k < 0) return io_fail(err, errlen, "%s: tensor '%s': malformed entry: %s", r->what, e->name,
                              rd.error);
    if (e->shard_id < 0 || e->shard_id >= r->num_shards)
        return io_fail(err, errlen, "%s: tensor '%s' is in shard %d of %d", r->what, e->name,
                       e->shard_id, r->num_shards);
    if ((int64_t)e->offset < 0 || (int64_t)e->size < 0 || e->offset + e->size < e->offset)
        return io_fail(err, errlen, "%s: tensor '%s' has a bad byte range", r->what, e->name);
    size_t es = tf_dtype_size(e->dtype);
    if (es) {
        uint64_t need = (uint64_t)tf_shape_elements(e->rank, e->shape) * es;
        if (need != e->size)
            return io_fail(err, errlen, "%s: tensor '%s' (%s) has %llu bytes, its shape needs %llu",
                           r->what, e->name, tf_dtype_name(e->dtype), (unsigned long long)e->size,
                           (unsigned long long)need);
    } else if (e->dtype != TF_DT_STRING) {
        return io_fail(err, errlen, "%s: tensor '%s' has unsupported dtype %d", r->what, e->name,
                       (int)e->dtype);
    }
    return 0;
}

/* Takes one key/value pair of the table: the header first, then tensors in increasing order. */
static int reader_add(BundleReader *r, const char *key, size_t klen, const uint8_t *val,
                      size_t vlen, long index, char *err, size_t errlen) {
    if (index == 0) {
        if (klen != 0) return io_fail(err, errlen, "%s: the first key is not the bundle header", r->what);
        return parse_header(r, val, vlen, err, errlen);
    }
    if (klen == 0 || memchr(key, 0, klen))
        return io_fail(err, errlen, "%s: entry %ld has an empty or binary key", r->what, index);
    if (r->n == r->cap) {
        int cap = r->cap ? 2 * r->cap : 16;
        BundleEntry *p = realloc(r->entries, (size_t)cap * sizeof *p);
        if (!p) return io_fail(err, errlen, "%s: out of memory", r->what);
        r->entries = p;
        r->cap = cap;
    }
    BundleEntry *e = &r->entries[r->n];
    memset(e, 0, sizeof *e);
    e->name = malloc(klen + 1);
    if (!e->name) return io_fail(err, errlen, "%s: out of memory", r->what);
    memcpy(e->name, key, klen);
    e->name[klen] = 0;
    r->n++;
    return parse_entry(r, e, val, vlen, err, errlen);
}

typedef struct {
    const uint8_t *file;
    size_t size;
} IndexFile;

/* Returns the contents of the block at h after checking its trailer. */
static int read_block(BundleReader *r, const IndexFile *f, BlockHandle h, const char *kind,
                      const uint8_t **out, size_t *outlen, char *err, size_t errlen) {
    size_t limit = f->size - FOOTER_SIZE;
    if (h.offset > limit || h.size > limit - h.offset || BLOCK_TRAILER_SIZE > limit - h.offset - h.size)
        return io_fail(err, errlen, "%s: %s block at offset %llu size %llu runs past the end", r->what,
                       kind, (unsigned long long)h.offset, (unsigned long long)h.size);
    const uint8_t *b = f->file + h.offset;
    uint8_t type = b[h.size];
    uint32_t want = crc32c_unmask(get_u32le(b + h.size + 1));
    uint32_t got = crc32c_extend(crc32c(b, h.size), &type, 1);
    if (want != got)
        return io_fail(err, errlen, "%s: %s block at offset %llu: checksum mismatch (corrupt index)",
                       r->what, kind, (unsigned long long)h.offset);
    if (type != 0)
        return io_fail(err, errlen, "%s: %s block at offset %llu is compressed (type %u), not "
                       "supported", r->what, kind, (unsigned long long)h.offset, type);
    *out = b;
    *outlen = h.size;
    return 0;
}

typedef int (*EntryFn)(void *ctx, const char *key, size_t klen, const uint8_t *val, size_t vlen);

/* Walks a block's entries, rebuilding prefix-compressed keys; checks bounds and order. */
static int walk_block(BundleReader *r, const uint8_t *b, size_t n, const char *kind,
                      uint64_t block_offset, EntryFn fn, void *ctx, char *err, size_t errlen) {
    if (n < 4) return io_fail(err, errlen, "%s: %s block at %llu is too short", r->what, kind,
                              (unsigned long long)block_offset);
    uint32_t nrestarts = get_u32le(b + n - 4);
    if (nrestarts == 0 || (uint64_t)nrestarts * 4 + 4 > n)
        return io_fail(err, errlen, "%s: %s block at %llu has a bad restart count %u", r->what, kind,
                       (unsigned long long)block_offset, nrestarts);
    size_t data_end = n - 4 - (size_t)nrestarts * 4;
    for (uint32_t i = 0; i < nrestarts; i++)
        if (get_u32le(b + data_end + 4 * i) > data_end)
            return io_fail(err, errlen, "%s: %s block at %llu: restart %u points past the entries",
                           r->what, kind, (unsigned long long)block_offset, i);
    char *key = NULL;
    size_t klen = 0, kcap = 0;
    PbReader rd;
    pb_reader_init(&rd, b, data_end);
    int rc = 0, first = 1;
    while (rc == 0 && rd.p < rd.end) {
        size_t at = (size_t)(rd.p - b);
        uint64_t shared, unshared, vlen;
        if (pb_read_varint(&rd, &shared) || pb_read_varint(&rd, &unshared) ||
            pb_read_varint(&rd, &vlen) || shared > klen || unshared > (size_t)(rd.end - rd.p) ||
            vlen > (size_t)(rd.end - rd.p) - unshared || (first && shared != 0)) {
            rc = io_fail(err, errlen, "%s: %s block at %llu: malformed entry at byte %zu", r->what,
                         kind, (unsigned long long)block_offset, at);
            break;
        }
        size_t nk = (size_t)(shared + unshared);
        if (nk + 1 > kcap) {
            char *p = realloc(key, nk + 1);
            if (!p) { rc = io_fail(err, errlen, "%s: out of memory", r->what); break; }
            key = p;
            kcap = nk + 1;
        }
        const char *suffix = (const char *)rd.p;
        memcpy(key + shared, suffix, (size_t)unshared);
        klen = nk;
        key[klen] = 0;
        rd.p += unshared;
        rc = fn(ctx, key, klen, rd.p, (size_t)vlen);
        rd.p += vlen;
        first = 0;
    }
    free(key);
    return rc;
}

typedef struct {
    BundleReader *r;
    const IndexFile *f;
    char *err;
    size_t errlen;
    long count;
    char *last_key;                 /* last key added to the bundle, for cross-block order */
    size_t last_len;
    char *index_key;                /* copy of the index entry of the block being read */
    size_t index_len;
} WalkCtx;

static int on_data_entry(void *vctx, const char *key, size_t klen, const uint8_t *val,
                         size_t vlen) {
    WalkCtx *c = vctx;
    if (c->count > 0) {
        size_t m = klen < c->last_len ? klen : c->last_len;
        int cmp = memcmp(key, c->last_key, m);
        if (cmp < 0 || (cmp == 0 && klen <= c->last_len))
            return io_fail(c->err, c->errlen, "%s: keys out of order at entry %ld", c->r->what, c->count);
    }
    {   /* every key of a block must be <= its index key */
        size_t m = klen < c->index_len ? klen : c->index_len;
        int cmp = memcmp(key, c->index_key, m);
        if (cmp > 0 || (cmp == 0 && klen > c->index_len))
            return io_fail(c->err, c->errlen, "%s: entry %ld lies beyond its index key", c->r->what,
                           c->count);
    }
    char *p = realloc(c->last_key, klen + 1);
    if (!p) return io_fail(c->err, c->errlen, "%s: out of memory", c->r->what);
    c->last_key = p;
    memcpy(p, key, klen);
    c->last_len = klen;
    return reader_add(c->r, key, klen, val, vlen, c->count++, c->err, c->errlen);
}

static int decode_handle(const uint8_t *p, size_t n, BlockHandle *h, const uint8_t **end) {
    PbReader rd;
    pb_reader_init(&rd, p, n);
    if (pb_read_varint(&rd, &h->offset) || pb_read_varint(&rd, &h->size)) return -1;
    if (end) *end = rd.p;
    return 0;
}

static int on_index_entry(void *vctx, const char *key, size_t klen, const uint8_t *val,
                          size_t vlen) {
    WalkCtx *c = vctx;
    BlockHandle h;
    const uint8_t *end;
    if (decode_handle(val, vlen, &h, &end) || end != val + vlen)
        return io_fail(c->err, c->errlen, "%s: malformed block handle in the index", c->r->what);
    const uint8_t *b;
    size_t n;
    if (read_block(c->r, c->f, h, "data", &b, &n, c->err, c->errlen)) return -1;
    if (c->index_key) {     /* index keys increase too */
        size_t m = klen < c->index_len ? klen : c->index_len;
        int cmp = memcmp(key, c->index_key, m);
        if (cmp < 0 || (cmp == 0 && klen <= c->index_len))
            return io_fail(c->err, c->errlen, "%s: index keys out of order", c->r->what);
    }
    char *copy = realloc(c->index_key, klen + 1);
    if (!copy) return io_fail(c->err, c->errlen, "%s: out of memory", c->r->what);
    memcpy(copy, key, klen);
    c->index_key = copy;
    c->index_len = klen;
    return walk_block(c->r, b, n, "data", h.offset, on_data_entry, c, c->err, c->errlen);
}

static BundleReader *parse_index(BundleReader *r, const uint8_t *data, size_t n, char *err,
                                 size_t errlen) {
    IndexFile f = {data, n};
    if (n < FOOTER_SIZE)
        goto bad_footer;
    if (memcmp(data + n - 8, TABLE_MAGIC, 8) != 0) {
        io_fail(err, errlen, "%s: not a tensor-bundle index (bad table magic)", r->what);
        goto fail;
    }
    BlockHandle meta, index;
    const uint8_t *p = data + n - FOOTER_SIZE, *mid;
    if (decode_handle(p, 40, &meta, &mid) || decode_handle(mid, (size_t)(p + 40 - mid), &index, NULL))
        goto bad_footer;
    const uint8_t *b;
    size_t bn;
    if (read_block(r, &f, meta, "metaindex", &b, &bn, err, errlen)) goto fail;
    if (read_block(r, &f, index, "index", &b, &bn, err, errlen)) goto fail;
    WalkCtx c = {r, &f, err, errlen, 0, NULL, 0, NULL, 0};
    int rc = walk_block(r, b, bn, "index", index.offset, on_index_entry, &c, err, errlen);
    free(c.last_key);
    free(c.index_key);
    if (rc) goto fail;
    if (c.count == 0) {
        io_fail(err, errlen, "%s: the index has no bundle header", r->what);
        goto fail;
    }
    return r;
bad_footer:
    io_fail(err, errlen, "%s: truncated or malformed table footer (%zu bytes)", r->what, n);
fail:
    bundle_close(r);
    return NULL;
}

static BundleReader *reader_new(const char *prefix, const char *what) {
    BundleReader *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->prefix = prefix ? strdup(prefix) : NULL;
    r->what = strdup(what);
    if ((prefix && !r->prefix) || !r->what) {
        bundle_close(r);
        return NULL;
    }
    return r;
}

BundleReader *bundle_parse_index(const void *data, size_t n, const char *what, char *err,
                                 size_t errlen) {
    BundleReader *r = reader_new(NULL, what);
    if (!r) {
        io_fail(err, errlen, "%s: out of memory", what);
        return NULL;
    }
    return parse_index(r, data, n, err, errlen);
}

/* Index files are small (about 40 bytes per tensor); refuse absurd sizes. */
#define MAX_INDEX_BYTES ((size_t)1 << 30)

BundleReader *bundle_open(const char *prefix, char *err, size_t errlen) {
    char path[4096];
    snprintf(path, sizeof path, "%s.index", prefix);
    char why[1024];
    FILE *fp = fs_fopen_read(path, why, sizeof why);
    if (!fp) {
        io_fail(err, errlen, "%s: %s", path, why);
        return NULL;
    }
    struct stat st;
    if (fstat(fileno(fp), &st) != 0 || st.st_size < 0 || (size_t)st.st_size > MAX_INDEX_BYTES) {
        fclose(fp);
        io_fail(err, errlen, "%s: cannot size the file or it is over 1 GiB", path);
        return NULL;
    }
    size_t n = (size_t)st.st_size;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf || fread(buf, 1, n, fp) != n) {
        fclose(fp);
        free(buf);
        io_fail(err, errlen, "%s: read failed", path);
        return NULL;
    }
    fclose(fp);
    BundleReader *r = reader_new(prefix, path);
    if (!r) {
        free(buf);
        io_fail(err, errlen, "%s: out of memory", path);
        return NULL;
    }
    r = parse_index(r, buf, n, err, errlen);
    free(buf);
    return r;
}

static FILE *shard_file(BundleReader *r, int shard, char *path, size_t cap, char *err,
                        size_t errlen) {
    if (!r->prefix) {
        io_fail(err, errlen, "%s: parsed from memory, no data file to read", r->what);
        return NULL;
    }
    bundle_data_filename(path, cap, r->prefix, shard, r->num_shards);
    if (!r->shards) {
        r->shards = calloc((size_t)r->num_shards, sizeof *r->shards);
        if (!r->shards) {
            io_fail(err, errlen, "%s: out of memory", path);
            return NULL;
        }
    }
    if (!r->shards[shard]) {
        char why[1024];
        r->shards[shard] = fs_fopen_read(path, why, sizeof why);
        if (!r->shards[shard]) io_fail(err, errlen, "%s: %s", path, why);
    }
    return r->shards[shard];
}

int bundle_read(BundleReader *r, const BundleEntry *e, void *dst, size_t cap, char *err,
                size_t errlen) {
    char path[4096];
    FILE *fp = shard_file(r, e->shard_id, path, sizeof path, err, errlen);
    if (!fp) return -1;
    if (e->dtype == TF_DT_STRING)     /* its CRC covers a length table: not implemented */
        return io_fail(err, errlen, "%s: tensor '%s' is a string tensor, not supported", path,
                       e->name);
    if (cap < e->size)
        return io_fail(err, errlen, "%s: tensor '%s' has %llu bytes, the buffer %zu", path, e->name,
                       (unsigned long long)e->size, cap);
    if (fseeko(fp, (off_t)e->offset, SEEK_SET) != 0 ||
        fread(dst, 1, (size_t)e->size, fp) != (size_t)e->size)
        return io_fail(err, errlen, "%s: tensor '%s': short read of %llu bytes at offset %llu "
                       "(truncated data file)", path, e->name, (unsigned long long)e->size,
                       (unsigned long long)e->offset);
    uint32_t got = crc32c(dst, (size_t)e->size);
    if (got != crc32c_unmask(e->masked_crc))
        return io_fail(err, errlen, "%s: tensor '%s' at offset %llu: checksum mismatch (corrupt data)",
                       path, e->name, (unsigned long long)e->offset);
    return 0;
}

int bundle_read_tensor(BundleReader *r, const char *name, TfDataType dtype, void *dst,
                       size_t nbytes, char *err, size_t errlen) {
    const BundleEntry *e = bundle_find(r, name);
    const char *src = r->prefix ? r->prefix : r->what;
    if (!e) return io_fail(err, errlen, "%s: no tensor '%s'", src, name);
    if (e->dtype != dtype)
        return io_fail(err, errlen, "%s: tensor '%s' is %s, expected %s", src, name,
                       tf_dtype_name(e->dtype), tf_dtype_name(dtype));
    if (e->size != nbytes)
        return io_fail(err, errlen, "%s: tensor '%s' has %llu bytes, expected %zu", src, name,
                       (unsigned long long)e->size, nbytes);
    return bundle_read(r, e, dst, nbytes, err, errlen);
}

int bundle_check_data_files(const BundleReader *r, char *err, size_t errlen) {
    if (!r->prefix) return io_fail(err, errlen, "%s: parsed from memory, no data files", r->what);
    for (int s = 0; s < r->num_shards; s++) {
        uint64_t need = 0;
        for (int i = 0; i < r->n; i++)
            if (r->entries[i].shard_id == s && r->entries[i].offset + r->entries[i].size > need)
                need = r->entries[i].offset + r->entries[i].size;
        char path[4096];
        bundle_data_filename(path, sizeof path, r->prefix, s, r->num_shards);
        struct stat st;
        char why[1024];
        if (fs_stat(path, &st, why, sizeof why) != 0) return io_fail(err, errlen, "%s", why);
        if ((uint64_t)st.st_size < need)
            return io_fail(err, errlen, "%s: %lld bytes, the index needs %llu (truncated)", path,
                           (long long)st.st_size, (unsigned long long)need);
    }
    return 0;
}
