/* pb_wire.c: protobuf wire-format encoder and bounds-checked decoder (see pb_wire.h). */
#include "io/pb_wire.h"

#include <stdlib.h>
#include <string.h>

/* ---- encoder ---------------------------------------------------------------------------- */

void pb_buf_init(PbBuf *b) { memset(b, 0, sizeof *b); }

void pb_buf_free(PbBuf *b) {
    free(b->data);
    pb_buf_init(b);
}

void pb_buf_reset(PbBuf *b) {
    b->len = 0;
    b->oom = 0;
}

/* Room for n more bytes; on failure sets oom and returns 0. */
static int reserve(PbBuf *b, size_t n) {
    if (b->oom) return 0;
    if (n <= b->cap - b->len) return 1;
    if (n > SIZE_MAX / 2 - b->len) {
        b->oom = 1;
        return 0;
    }
    size_t cap = b->cap ? b->cap : 64;
    while (cap - b->len < n) cap *= 2;
    uint8_t *d = realloc(b->data, cap);
    if (!d) {
        b->oom = 1;
        return 0;
    }
    b->data = d;
    b->cap = cap;
    return 1;
}

void pb_put_raw(PbBuf *b, const void *p, size_t n) {
    if (n == 0 || !reserve(b, n)) return;
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

size_t pb_varint_size(uint64_t v) {
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

void pb_put_varint_raw(PbBuf *b, uint64_t v) {
    if (!reserve(b, 10)) return;
    uint8_t *o = b->data + b->len;
    while (v >= 0x80) {
        *o++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *o++ = (uint8_t)v;
    b->len = (size_t)(o - b->data);
}

static void put_le(PbBuf *b, uint64_t v, int nbytes) {
    uint8_t tmp[8];
    for (int i = 0; i < nbytes; i++) tmp[i] = (uint8_t)(v >> (8 * i));
    pb_put_raw(b, tmp, (size_t)nbytes);
}

void pb_put_tag(PbBuf *b, uint32_t field, int wire_type) {
    pb_put_varint_raw(b, ((uint64_t)field << 3) | (uint64_t)wire_type);
}

void pb_put_uint64(PbBuf *b, uint32_t field, uint64_t v) {
    pb_put_tag(b, field, PB_VARINT);
    pb_put_varint_raw(b, v);
}

void pb_put_int64(PbBuf *b, uint32_t field, int64_t v) { pb_put_uint64(b, field, (uint64_t)v); }

void pb_put_sint64(PbBuf *b, uint32_t field, int64_t v) {
    uint64_t u = (uint64_t)v;
    pb_put_uint64(b, field, (u << 1) ^ (0 - (u >> 63)));
}

void pb_put_fixed32(PbBuf *b, uint32_t field, uint32_t v) {
    pb_put_tag(b, field, PB_FIXED32);
    put_le(b, v, 4);
}

void pb_put_fixed64(PbBuf *b, uint32_t field, uint64_t v) {
    pb_put_tag(b, field, PB_FIXED64);
    put_le(b, v, 8);
}

void pb_put_float(PbBuf *b, uint32_t field, float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    pb_put_fixed32(b, field, u);
}

void pb_put_double(PbBuf *b, uint32_t field, double v) {
    uint64_t u;
    memcpy(&u, &v, 8);
    pb_put_fixed64(b, field, u);
}

void pb_put_bytes(PbBuf *b, uint32_t field, const void *p, size_t n) {
    pb_put_tag(b, field, PB_LEN);
    pb_put_varint_raw(b, n);
    pb_put_raw(b, p, n);
}

void pb_put_string(PbBuf *b, uint32_t field, const char *s) { pb_put_bytes(b, field, s, strlen(s)); }

void pb_put_message(PbBuf *b, uint32_t field, const PbBuf *msg) {
    if (msg->oom) {
        b->oom = 1;
        return;
    }
    pb_put_bytes(b, field, msg->data, msg->len);
}

void pb_put_packed_float(PbBuf *b, uint32_t field, const float *v, size_t n) {
    if (n > SIZE_MAX / 4) {
        b->oom = 1;
        return;
    }
    pb_put_tag(b, field, PB_LEN);
    pb_put_varint_raw(b, 4 * n);
    if (!reserve(b, 4 * n)) return;
    uint8_t *o = b->data + b->len;
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        o[4 * i] = (uint8_t)u;
        o[4 * i + 1] = (uint8_t)(u >> 8);
        o[4 * i + 2] = (uint8_t)(u >> 16);
        o[4 * i + 3] = (uint8_t)(u >> 24);
    }
    b->len += 4 * n;
}

void pb_put_packed_int64(PbBuf *b, uint32_t field, const int64_t *v, size_t n) {
    size_t payload = 0;
    for (size_t i = 0; i < n; i++) payload += pb_varint_size((uint64_t)v[i]);
    pb_put_tag(b, field, PB_LEN);
    pb_put_varint_raw(b, payload);
    for (size_t i = 0; i < n; i++) pb_put_varint_raw(b, (uint64_t)v[i]);
}

/* ---- decoder ---------------------------------------------------------------------------- */

void pb_reader_init(PbReader *r, const void *data, size_t n) {
    r->p = data;
    r->end = n ? r->p + n : r->p;   /* (NULL, 0), e.g. an empty PbBuf: NULL + 0 is undefined */
    r->error = NULL;
}

static int fail(PbReader *r, const char *msg) {
    r->error = msg;
    return -1;
}

/* The general varint decoder (pb_read_varint handles the one-byte case inline). */
static int read_varint_slow(PbReader *r, uint64_t *v) {
    const uint8_t *p = r->p;
    uint64_t x = 0;
    for (int i = 0; i < 10; i++) {
        if (p == r->end) return fail(r, "truncated varint");
        uint8_t byte = *p++;
        if (i == 9 && byte > 1) return fail(r, "varint overflows 64 bits");
        x |= (uint64_t)(byte & 0x7f) << (7 * i);
        if (!(byte & 0x80)) {
            r->p = p;
            *v = x;
            return 0;
        }
    }
    return fail(r, "varint longer than 10 bytes");
}

static inline int read_varint(PbReader *r, uint64_t *v) {
    if (r->p < r->end && *r->p < 0x80) {   /* tags, small lengths and values: one byte */
        *v = *r->p++;
        return 0;
    }
    return read_varint_slow(r, v);
}

int pb_read_varint(PbReader *r, uint64_t *v) { return read_varint(r, v); }

int pb_read_fixed32(PbReader *r, uint32_t *v) {
    if (r->end - r->p < 4) return fail(r, "truncated fixed32");
    const uint8_t *p = r->p;
    *v = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    r->p += 4;
    return 0;
}

int pb_read_fixed64(PbReader *r, uint64_t *v) {
    if (r->end - r->p < 8) return fail(r, "truncated fixed64");
    uint64_t x = 0;
    for (int i = 7; i >= 0; i--) x = (x << 8) | r->p[i];
    *v = x;
    r->p += 8;
    return 0;
}

int pb_next(PbReader *r, PbField *f) {
    if (r->error) return -1;
    if (r->p == r->end) return 0;
    uint64_t tag;
    if (read_varint(r, &tag) < 0) return -1;
    if (tag > 0xFFFFFFFFu) return fail(r, "tag exceeds 32 bits");
    memset(f, 0, sizeof *f);
    f->field = (uint32_t)(tag >> 3);
    f->wire_type = (int)(tag & 7);
    if (f->field == 0) return fail(r, "field number 0");
    switch (f->wire_type) {
    case PB_VARINT:
        return read_varint(r, &f->varint) < 0 ? -1 : 1;
    case PB_FIXED64:
        return pb_read_fixed64(r, &f->fixed) < 0 ? -1 : 1;
    case PB_FIXED32: {
        uint32_t v;
        if (pb_read_fixed32(r, &v) < 0) return -1;
        f->fixed = v;
        return 1;
    }
    case PB_LEN: {
        uint64_t len;
        if (read_varint(r, &len) < 0) return -1;
        if (len > (uint64_t)(r->end - r->p)) return fail(r, "length-delimited field runs past the end");
        f->data = r->p;
        f->len = (size_t)len;
        r->p += len;
        return 1;
    }
    default:
        return fail(r, "unsupported wire type (groups or invalid)");
    }
}
