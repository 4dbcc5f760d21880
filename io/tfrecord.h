/* tfrecord.h: TFRecord files (TF's record_writer.cc / record_reader.cc framing).
 *
 * Framing of each record, back to back, no file header:
 *     uint64 LE  length
 *     uint32 LE  mask(crc32c(the 8 length bytes))
 *     byte[length] data
 *     uint32 LE  mask(crc32c(data))
 * With compression the whole file is ONE zlib stream (ZLIB: RFC 1950) or gzip stream (GZIP:
 * RFC 1952) and the framing applies to the decompressed bytes.
 *
 * The reader streams: memory is one window buffer (1 MiB) that grows only to hold the largest
 * record actually present, so any file size reads in bounded memory and a corrupt length field
 * fails at end of input instead of allocating. Every error names the file, the record index
 * (0-based) and the byte offset of the record (in the decompressed stream for ZLIB/GZIP).
 */
#ifndef IO_TFRECORD_H
#define IO_TFRECORD_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    TFR_AUTO = -1,   /* reader: detect from the stream header */
    TFR_NONE = 0,
    TFR_GZIP = 1,
    TFR_ZLIB = 2,
} TfrCompression;

/* "none" (also ""), "gzip", "zlib", "auto" (case-insensitive) -> 0; anything else -1. */
int tfr_compression_parse(const char *s, TfrCompression *out);
const char *tfr_compression_name(TfrCompression c);

/* Records longer than this are rejected as corrupt (protobuf messages are < 2 GiB anyway). */
#define TFR_MAX_RECORD_LEN ((uint64_t)1 << 31)

/* Frames one record into out[0..12) (header) and returns the masked data CRC for the trailer;
 * exposed for tests and for writers that manage their own stream. */
uint32_t tfr_frame_header(uint8_t out[12], const void *data, size_t n);

/* ---- writer ------------------------------------------------------------------------------ */
typedef struct TfrWriter TfrWriter;

enum {
    TFR_WRITE_ATOMIC = 0,  /* write .<name>.tmp-*, rename to path on close (the default) */
    TFR_WRITE_DIRECT = 1,  /* create/truncate path and write in place (event files, which readers
                              follow while they grow); gs:// and s3://: the object is uploaded
                              whole at each flush and at close */
    TFR_WRITE_APPEND = 2,  /* append to path in place (uncompressed only) */
};

/* NULL on failure with err set. */
TfrWriter *tfr_writer_open(const char *path, TfrCompression c, int mode, char *err, size_t errlen);
/* 0 ok; -1 on failure (see tfr_writer_error; the writer stays failed). */
int tfr_writer_write(TfrWriter *w, const void *data, size_t n);
/* Pushes everything written so far to the file (a zlib sync flush when compressed), so that a
 * reader following the file sees complete records. 0 ok, -1 failure. */
int tfr_writer_flush(TfrWriter *w);
/* tfr_writer_flush + fsync. */
int tfr_writer_sync(TfrWriter *w);
const char *tfr_writer_error(const TfrWriter *w);
uint64_t tfr_writer_records(const TfrWriter *w);   /* records written so far */
/* Finishes the stream, fsyncs, and (ATOMIC) renames into place. Frees w. 0 ok, -1 with err set;
 * on failure an ATOMIC writer leaves nothing under path. */
int tfr_writer_close(TfrWriter *w, char *err, size_t errlen);
/* Drops everything (ATOMIC: the temporary file is removed). Frees w. */
void tfr_writer_abort(TfrWriter *w);

/* ---- reader ------------------------------------------------------------------------------ */
typedef struct TfrReader TfrReader;

/* c = TFR_AUTO detects: a valid first record header means uncompressed, else the gzip magic
 * (1f 8b) means GZIP, else a valid zlib header means ZLIB, else uncompressed (and the first
 * record will fail its CRC). NULL on failure with err set. */
TfrReader *tfr_reader_open(const char *path, TfrCompression c, char *err, size_t errlen);
/* 1: the next record is in *data, *len (valid until the next call); 0: clean end of file;
 * -1: error, message in tfr_reader_error(). Both CRCs are checked. */
int tfr_reader_next(TfrReader *r, const uint8_t **data, size_t *len);
const char *tfr_reader_error(const TfrReader *r);
TfrCompression tfr_reader_compression(const TfrReader *r);   /* what was detected/forced */
uint64_t tfr_reader_index(const TfrReader *r);    /* index of the last record returned */
uint64_t tfr_reader_offset(const TfrReader *r);   /* its byte offset (decompressed stream) */
const char *tfr_reader_path(const TfrReader *r);
void tfr_reader_close(TfrReader *r);

/* Counts records of one file, checking both CRCs. -1 with err set on the first problem. */
int64_t tfr_count_records(const char *path, TfrCompression c, char *err, size_t errlen);

#endif
