/* fuzz_tfrecord: TFRecord framing (io/tfrecord.c reader) on arbitrary files.
 *
 * The first input byte picks how the rest is read: as a file, auto-detected (0) or forced none /
 * gzip / zlib (1-3); or compressed here as a gzip stream read auto-detected (4) or a zlib stream
 * read as zlib (5), so the framing checks get the same mutations behind each decompressor and not
 * only zlib's own error paths. (One read per input: the reader's 1 MiB window makes each open
 * costly under ASan.) When the first byte has bit 3 set, both CRCs of every record are first
 * recomputed (fix_crcs), so that mutated lengths and payloads get past the checksums.
 * Every read ends in a clean end of file or an error naming the file and a record; records
 * returned lie inside the decompressed input.
 */
#include "fuzz_util.h"

#include <zlib.h>

#include "io/crc32c.h"
#include "io/tfrecord.h"

static void read_all(const char *path, TfrCompression c, size_t plain_size) {
    char err[512];
    TfrReader *r = tfr_reader_open(path, c, err, sizeof err);
    if (!r) {
        fuzz_check_error(err, sizeof err);
        if (!strstr(err, path)) abort();
        return;
    }
    const uint8_t *d;
    size_t n, total = 0;
    int rc;
    while ((rc = tfr_reader_next(r, &d, &n)) == 1) {
        total += n + 16;
        if (n) (void)d[0], (void)d[n - 1];           /* ASan: the record is readable */
    }
    if (rc < 0) {
        const char *e = tfr_reader_error(r);
        if (!e || !strstr(e, path) || !strstr(e, "record ")) abort();
    }
    /* uncompressed: records cannot hold more bytes than the file */
    if (tfr_reader_compression(r) == TFR_NONE && total > plain_size) abort();
    tfr_reader_close(r);
}

/* data compressed as one zlib or gzip stream (wbits 9 / 9 + 16: small buffers) into *out. */
static size_t compress_to(const uint8_t *data, size_t size, int wbits, uint8_t **out) {
    z_stream z;
    memset(&z, 0, sizeof z);
    if (deflateInit2(&z, 1, Z_DEFLATED, wbits, 1, Z_DEFAULT_STRATEGY) != Z_OK) abort();
    size_t cap = deflateBound(&z, (uLong)size) + 32;
    *out = malloc(cap);
    if (!*out) abort();
    z.next_in = (Bytef *)data;
    z.avail_in = (uInt)size;
    z.next_out = *out;
    z.avail_out = (uInt)cap;
    if (deflate(&z, Z_FINISH) != Z_STREAM_END) abort();
    size_t n = cap - z.avail_out;
    deflateEnd(&z);
    return n;
}

/* Walks the records of p[0..n) as framed (lengths as found) and rewrites both masked CRCs. */
static void fix_crcs(uint8_t *p, size_t n) {
    size_t at = 0;
    while (n - at >= 12) {
        uint64_t len = 0;
        for (int i = 7; i >= 0; i--) len = len << 8 | p[at + i];
        uint32_t c = crc32c_mask(crc32c(p + at, 8));
        for (int i = 0; i < 4; i++) p[at + 8 + i] = (uint8_t)(c >> (8 * i));
        if (len > n - at - 12 || 4 > n - at - 12 - len) return;
        c = crc32c_mask(crc32c(p + at + 12, (size_t)len));
        for (int i = 0; i < 4; i++) p[at + 12 + len + i] = (uint8_t)(c >> (8 * i));
        at += 12 + len + 4;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int mode = (data[0] & 7) % 6, fix = data[0] & 8;
    data++, size--;
    uint8_t *fixed = NULL;
    if (fix) {
        if (!(fixed = malloc(size ? size : 1))) abort();
        memcpy(fixed, data, size);
        fix_crcs(fixed, size);
        data = fixed;
    }
    static const TfrCompression forced[4] = {TFR_AUTO, TFR_NONE, TFR_GZIP, TFR_ZLIB};
    if (mode < 4) {
        read_all(fuzz_file(0, data, size), forced[mode], size);
    } else {
        uint8_t *z;
        size_t n = compress_to(data, size, mode == 4 ? 9 + 16 : 9, &z);
        const char *path = fuzz_file(0, z, n);
        free(z);
        read_all(path, mode == 4 ? TFR_AUTO : TFR_ZLIB, size);
    }
    free(fixed);
    return 0;
}
