/* tensor_bundle.h: TensorFlow's tensor-bundle format (the V2 checkpoint), writer and reader.
 *
 * A bundle with prefix P is two files (tf-formats.md §6):
 *   P.index                  a LevelDB-style SSTable: key "" -> BundleHeaderProto, then one key per
 *                            tensor name (bytewise order) -> BundleEntryProto {dtype, shape, offset,
 *                            size, masked CRC32C of the tensor bytes}. No compression, data blocks of
 *                            <= 256 KiB with a restart every 16 keys, as TF writes it (byte-identical).
 *   P.data-00000-of-00001    the tensors' raw little-endian bytes, concatenated in key order.
 * This is what tf.train.Saver (V2), tf.train.load_checkpoint and the SavedModel loader read.
 */
#ifndef IO_TENSOR_BUNDLE_H
#define IO_TENSOR_BUNDLE_H

#include <stddef.h>
#include <stdint.h>

#include "io/pb_wire.h"
#include "io/tf_tensor.h"

/* One index entry (a BundleEntryProto plus its key). */
typedef struct {
    char *name;
    TfDataType dtype;
    int rank;
    int64_t shape[TF_MAX_RANK];
    int shard_id;
    uint64_t offset, size;          /* byte range in the data file */
    uint32_t masked_crc;            /* crc32c_mask(crc32c(the size bytes at offset)) */
} BundleEntry;

/* ---- writer ------------------------------------------------------------------------------ */

/* Writes the bundle P.index + P.data-00000-of-00001 for n tensors (any order, unique non-empty
 * names, fixed-size dtypes). Each file is written under a temporary name and renamed; the data
 * file first, so an existing P.index always has its data. 0 ok, -1 error (message in err). */
int bundle_write(const char *prefix, const TfTensor *tensors, int n, char *err, size_t errlen);

/* The index file's bytes for entries whose offsets, sizes and CRCs are already set (any order;
 * sorted here), appended to out. Exposed so tests can compare with TF's files byte for byte.
 * 0 ok, -1 error (duplicate or empty name, bad rank). */
int bundle_index_encode(const BundleEntry *entries, int n, PbBuf *out, char *err, size_t errlen);

/* "P.data-00000-of-00001" for shard 0 of 1 (TF's DataFilename). */
void bundle_data_filename(char *out, size_t cap, const char *prefix, int shard, int num_shards);

/* ---- reader ------------------------------------------------------------------------------ */
typedef struct BundleReader BundleReader;

/* Opens P.index: checks the footer, every block CRC, key order, the header's version, every
 * entry's dtype/shape/size. The data files are opened on the first bundle_read. NULL on error
 * with a message naming the file and what is wrong. */
BundleReader *bundle_open(const char *prefix, char *err, size_t errlen);
/* The same checks on index bytes already in memory (what names the source in messages).
 * Reads of tensor data then fail (no data file). */
BundleReader *bundle_parse_index(const void *data, size_t n, const char *what, char *err,
                                 size_t errlen);
void bundle_close(BundleReader *r);

int bundle_num_shards(const BundleReader *r);
/* Tensor entries in key order (the header is not one of them). */
int bundle_num_entries(const BundleReader *r);
const BundleEntry *bundle_entry_at(const BundleReader *r, int i);
/* NULL when the bundle has no tensor of that name. */
const BundleEntry *bundle_find(const BundleReader *r, const char *name);

/* Reads entry e's bytes into dst (cap >= e->size), checking the CRC. 0 ok, -1 error. */
int bundle_read(BundleReader *r, const BundleEntry *e, void *dst, size_t cap, char *err,
                size_t errlen);
/* Reads tensor `name` into dst, checking that it exists, has this dtype and exactly nbytes
 * bytes (restoring a variable of a known shape). 0 ok, -1 error naming the tensor. */
int bundle_read_tensor(BundleReader *r, const char *name, TfDataType dtype, void *dst,
                       size_t nbytes, char *err, size_t errlen);
/* Checks that every data file exists and is long enough for its entries (cheap: no CRCs), as a
 * test that the bundle is complete. 0 ok, -1 error. */
int bundle_check_data_files(const BundleReader *r, char *err, size_t errlen);

#endif
