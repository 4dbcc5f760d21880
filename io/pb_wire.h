/* pb_wire.h: the protobuf wire format, hand-written (no protobuf library by design).
 *
 * Encoder: a growable byte buffer with field writers; nested messages are written into their own
 * PbBuf and appended with pb_put_message (exact length prefix, no guessing).
 * Decoder: a bounds-checked cursor over a byte range that never reads past its end; every
 * malformed input (truncated varint, varint over 10 bytes, length past the end, bad wire type)
 * makes pb_next/pb_read_* return -1 and sets r->error to a message.
 */
#ifndef IO_PB_WIRE_H
#define IO_PB_WIRE_H

#include <stddef.h>
#include <stdint.h>

enum { PB_VARINT = 0, PB_FIXED64 = 1, PB_LEN = 2, PB_FIXED32 = 5 };

/* ---- encoder ---------------------------------------------------------------------------- */
typedef struct {
    uint8_t *data;
    size_t len, cap;
    int oom;               /* set when an allocation failed; every later write is a no-op */
} PbBuf;

void pb_buf_init(PbBuf *b);
void pb_buf_free(PbBuf *b);
void pb_buf_reset(PbBuf *b);                  /* len = 0, keeps the memory */
void pb_put_raw(PbBuf *b, const void *p, size_t n);
void pb_put_varint_raw(PbBuf *b, uint64_t v);
size_t pb_varint_size(uint64_t v);

void pb_put_tag(PbBuf *b, uint32_t field, int wire_type);
void pb_put_uint64(PbBuf *b, uint32_t field, uint64_t v);   /* varint: uint32/64, bool, enum */
void pb_put_int64(PbBuf *b, uint32_t field, int64_t v);     /* varint: int32/int64 (10 bytes if <0) */
void pb_put_sint64(PbBuf *b, uint32_t field, int64_t v);    /* zigzag */
void pb_put_fixed32(PbBuf *b, uint32_t field, uint32_t v);
void pb_put_fixed64(PbBuf *b, uint32_t field, uint64_t v);
void pb_put_float(PbBuf *b, uint32_t field, float v);
void pb_put_double(PbBuf *b, uint32_t field, double v);
void pb_put_bytes(PbBuf *b, uint32_t field, const void *p, size_t n);
void pb_put_string(PbBuf *b, uint32_t field, const char *s);
void pb_put_message(PbBuf *b, uint32_t field, const PbBuf *msg);
/* Packed repeated fields (one length-delimited field). */
void pb_put_packed_float(PbBuf *b, uint32_t field, const float *v, size_t n);
void pb_put_packed_int64(PbBuf *b, uint32_t field, const int64_t *v, size_t n);

/* ---- decoder ---------------------------------------------------------------------------- */
typedef struct {
    const uint8_t *p, *end;
    const char *error;     /* NULL until something is malformed */
} PbReader;

typedef struct {
    uint32_t field;
    int wire_type;
    uint64_t varint;       /* PB_VARINT */
    uint64_t fixed;        /* PB_FIXED32 / PB_FIXED64 raw bits */
    const uint8_t *data;   /* PB_LEN payload */
    size_t len;
} PbField;

void pb_reader_init(PbReader *r, const void *data, size_t n);
/* 1: *f holds the next field; 0: clean end of the message; -1: malformed (r->error says why). */
int pb_next(PbReader *r, PbField *f);
/* Decode a raw varint at the cursor (for packed payloads). 0 ok, -1 malformed. */
int pb_read_varint(PbReader *r, uint64_t *v);
int pb_read_fixed32(PbReader *r, uint32_t *v);
int pb_read_fixed64(PbReader *r, uint64_t *v);

static inline float pb_bits_to_float(uint64_t bits) {
    union { uint32_t u; float f; } x; x.u = (uint32_t)bits; return x.f;
}
static inline double pb_bits_to_double(uint64_t bits) {
    union { uint64_t u; double d; } x; x.u = bits; return x.d;
}

#endif
