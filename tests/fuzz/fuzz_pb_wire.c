/* fuzz_pb_wire: the protobuf wire decoder (io/pb_wire.c) on arbitrary bytes.
 *
 * Every length-delimited field is tried again as a nested message (depth <= 8) and as packed
 * varints / fixed32 / fixed64, which is how the io/ parsers use it. A message that decodes
 * completely is re-encoded with the encoder and must decode to the same fields (round trip).
 */
#include "fuzz_util.h"

#include "io/pb_wire.h"

static void walk(const uint8_t *p, size_t n, int depth) {
    PbReader r;
    PbField f;
    int rc;
    pb_reader_init(&r, p, n);
    while ((rc = pb_next(&r, &f)) == 1) {
        if (r.p < p || r.p > p + n) abort();               /* the cursor stays in range */
        if (f.wire_type != PB_LEN) continue;
        if (f.data < p || f.len > (size_t)(p + n - f.data)) abort();
        if (depth < 8) walk(f.data, f.len, depth + 1);
        PbReader pr;
        uint64_t v;
        uint32_t v32;
        pb_reader_init(&pr, f.data, f.len);
        while (pr.p < pr.end && pb_read_varint(&pr, &v) == 0) {}
        pb_reader_init(&pr, f.data, f.len);
        while (pr.p < pr.end && pb_read_fixed32(&pr, &v32) == 0) {}
        pb_reader_init(&pr, f.data, f.len);
        while (pr.p < pr.end && pb_read_fixed64(&pr, &v) == 0) {}
    }
    if (rc < 0 && (r.error == NULL || r.error[0] == 0)) abort();   /* failures say why */
}

static void round_trip(const uint8_t *p, size_t n) {
    PbReader r;
    PbField f;
    int rc;
    PbBuf out;
    pb_buf_init(&out);
    pb_reader_init(&r, p, n);
    size_t count = 0;
    while ((rc = pb_next(&r, &f)) == 1) {
        count++;
        switch (f.wire_type) {
        case PB_VARINT: pb_put_uint64(&out, f.field, f.varint); break;
        case PB_FIXED64: pb_put_fixed64(&out, f.field, f.fixed); break;
        case PB_FIXED32: pb_put_fixed32(&out, f.field, (uint32_t)f.fixed); break;
        case PB_LEN: pb_put_bytes(&out, f.field, f.data, f.len); break;
        default: abort();
        }
    }
    if (rc == 0 && !out.oom) {
        PbReader a, b;
        PbField fa, fb;
        pb_reader_init(&a, p, n);
        pb_reader_init(&b, out.data, out.len);
        for (size_t i = 0; i < count; i++) {
            if (pb_next(&a, &fa) != 1 || pb_next(&b, &fb) != 1) abort();
            if (fa.field != fb.field || fa.wire_type != fb.wire_type || fa.varint != fb.varint ||
                fa.fixed != fb.fixed || fa.len != fb.len ||
                (fa.len && memcmp(fa.data, fb.data, fa.len) != 0))
                abort();
        }
        if (pb_next(&b, &fb) != 0) abort();
    }
    pb_buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    walk(data, size, 0);
    round_trip(data, size);
    return 0;
}
