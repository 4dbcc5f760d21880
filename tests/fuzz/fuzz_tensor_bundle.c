/* fuzz_tensor_bundle: the tensor-bundle index reader (io/tensor_bundle.c: bundle_parse_index, the
 * SSTable of a V2 checkpoint's .index file) on arbitrary bytes.
 *
 * A parsed index must be consistent: entries in key order, each found by its name, shapes whose
 * element count matches the byte size for fixed-size dtypes (bundle_open promises the checks).
 */
#include "fuzz_util.h"

#include "io/tensor_bundle.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[512];
    BundleReader *r = bundle_parse_index(data, size, "fuzz.index", err, sizeof err);
    if (!r) {
        fuzz_check_error(err, sizeof err);
        return 0;
    }
    int n = bundle_num_entries(r);
    if (n < 0 || bundle_num_shards(r) < 1) abort();
    for (int i = 0; i < n; i++) {
        const BundleEntry *e = bundle_entry_at(r, i);
        if (!e || !e->name || e->rank < 0 || e->rank > TF_MAX_RANK) abort();
        if (i > 0 && strcmp(bundle_entry_at(r, i - 1)->name, e->name) >= 0) abort();
        if (bundle_find(r, e->name) != e) abort();
        uint8_t buf[16];
        /* no data file: reading must fail cleanly */
        if (bundle_read(r, e, buf, sizeof buf, err, sizeof err) == 0 && e->size > 0) abort();
    }
    bundle_close(r);
    return 0;
}
