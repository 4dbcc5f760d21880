/* fuzz_tensor_bundle: the tensor-bundle index reader (io/tensor_bundle.c: bundle_parse_index, the
 * SSTable of a V2 checkpoint's .index file) on arbitrary bytes.
 *
 * Every block of the table carries a CRC32C, so almost every mutation dies at the first checksum.
 * Each input is therefore parsed twice: as it is, and with the CRCs of the blocks that its footer
 * and index block point to recomputed (fix_block_crcs), which lets the mutations reach the
 * entries (keys, BundleEntryProto, shapes, sizes) behind the checksums.
 *
 * A parsed index must be consistent: entries in key order, each found by its name, shapes whose
 * element count matches the byte size for fixed-size dtypes (bundle_open promises the checks).
 */
#include "fuzz_util.h"

#include "io/crc32c.h"
#include "io/tensor_bundle.h"

enum { FOOTER = 48, TRAILER = 5 };

/* Rewrites the masked CRC32C in the trailer of the block at (offset, size), when it lies inside. */
static void fix_crc(uint8_t *p, size_t n, uint64_t offset, uint64_t size) {
    if (n < FOOTER || offset > n - FOOTER || size > n - FOOTER - offset ||
        TRAILER > n - FOOTER - offset - size)
        return;
    uint8_t *b = p + offset;
    uint32_t c = crc32c_mask(crc32c_extend(crc32c(b, size), b + size, 1));
    for (int i = 0; i < 4; i++) b[size + 1 + i] = (uint8_t)(c >> (8 * i));
}

static int handle(PbReader *r, uint64_t *off, uint64_t *size) {
    return pb_read_varint(r, off) == 0 && pb_read_varint(r, size) == 0;
}

static void fix_block_crcs(uint8_t *p, size_t n) {
    if (n < FOOTER) return;
    PbReader f;
    uint64_t moff, msize, ioff, isize;
    pb_reader_init(&f, p + n - FOOTER, 40);
    if (!handle(&f, &moff, &msize) || !handle(&f, &ioff, &isize)) return;
    fix_crc(p, n, moff, msize);
    fix_crc(p, n, ioff, isize);
    if (ioff > n || isize > n - ioff || isize < 4) return;
    /* index block entries: varint shared, unshared, value length; key suffix; value = a handle */
    const uint8_t *b = p + ioff;
    uint32_t nrestarts = (uint32_t)b[isize - 4] | (uint32_t)b[isize - 3] << 8 |
                         (uint32_t)b[isize - 2] << 16 | (uint32_t)b[isize - 1] << 24;
    if ((uint64_t)nrestarts * 4 + 4 > isize) return;
    PbReader r;
    pb_reader_init(&r, b, isize - 4 - (size_t)nrestarts * 4);
    for (int k = 0; k < 4096 && r.p < r.end; k++) {
        uint64_t shared, unshared, vlen, doff, dsize;
        if (pb_read_varint(&r, &shared) || pb_read_varint(&r, &unshared) ||
            pb_read_varint(&r, &vlen) || unshared > (uint64_t)(r.end - r.p) ||
            vlen > (uint64_t)(r.end - r.p) - unshared)
            return;
        r.p += unshared;
        PbReader v;
        pb_reader_init(&v, r.p, (size_t)vlen);
        if (handle(&v, &doff, &dsize)) fix_crc(p, n, doff, dsize);
        r.p += vlen;
    }
}

static void parse(const uint8_t *data, size_t size) {
    char err[512];
    BundleReader *r = bundle_parse_index(data, size, "fuzz.index", err, sizeof err);
    if (!r) {
        fuzz_check_error(err, sizeof err);
        return;
    }
    int n = bundle_num_entries(r);
    if (n < 0 || bundle_num_shards(r) < 1) abort();
    for (int i = 0; i < n; i++) {
        const BundleEntry *e = bundle_entry_at(r, i);
        if (!e || !e->name || e->rank < 0 || e->rank > TF_MAX_RANK) abort();
        if (i > 0 && strcmp(bundle_entry_at(r, i - 1)->name, e->name) >= 0) abort();
        if (bundle_find(r, e->name) != e) abort();
        size_t es = tf_dtype_size(e->dtype);
        if (es && (uint64_t)tf_shape_elements(e->rank, e->shape) * es != e->size) abort();
        uint8_t buf[16];
        /* no data file: reading must fail cleanly */
        if (bundle_read(r, e, buf, sizeof buf, err, sizeof err) == 0 && e->size > 0) abort();
    }
    bundle_close(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    parse(data, size);
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy) abort();
    memcpy(copy, data, size);
    fix_block_crcs(copy, size);
    parse(copy, size);
    free(copy);
    return 0;
}
