/* gguf.h - read and write GGUF model files (v2 and v3).
 *
 * Reading. gguf_open mmaps a file read-only and validates ALL of it before
 * returning: magic, version (2 or 3), key/value and tensor counts against the
 * file size, every string and array length, value type ids (no nested
 * arrays, bools 0/1), `general.alignment` (UINT32, power of two), tensor
 * n_dims (1..4), every dim >= 1 with no overflow in their product, tensor
 * type ids, ne[0] a multiple of the type's block size, unique key and tensor
 * names, tensor names < 64 bytes, every tensor offset aligned and every
 * tensor's bytes inside the data section. A failure returns KM_EFORMAT (or
 * KM_EIO / KM_ENOMEM) and one sentence in err naming the file, the field and
 * its byte offset, e.g.
 *   "m.gguf: field tensor[3].n_dims at byte 412: 5 exceeds 4"
 * After a successful open nothing read through this header can go out of
 * bounds.
 *
 * Ownership. A struct gguf_file owns its mapping and its index. Every pointer
 * returned by a getter (names, strings, tensor data) points into the file or
 * its index and stays valid until gguf_close. Strings inside the file are
 * NOT NUL-terminated; the getters that return `const char *` without a length
 * return NUL-terminated copies made at open time (keys, tensor names, scalar
 * string values); array string elements come as pointer + length.
 * Numeric array data (gguf_kv_arr_data) may be unaligned: read it with
 * memcpy or the typed element getters.
 *
 * Writing. A struct gguf_writer collects key/values and tensor descriptions
 * in order, then writes the whole file sequentially: header, KVs, tensor
 * infos, zero padding to the alignment (general.alignment if set, else 32),
 * then each tensor's bytes padded with zeros to the alignment, exactly as
 * llama.cpp's gguf writer lays files out. Tensor bytes come either from a
 * caller buffer (borrowed until the write) or from a fill callback called once
 * per tensor, in order, at write time (so a multi-GB model never sits in
 * memory). Values given to gguf_writer_add_* are copied.
 *
 * Thread-safety: an open gguf_file is immutable; any number of threads may
 * read it concurrently. A writer belongs to one thread.
 */
#ifndef ENG_GGUF_H
#define ENG_GGUF_H

#include "base/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GGUF_MAGIC 0x46554747u /* "GGUF" read as a little-endian u32 */
#define GGUF_VERSION 3
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DIMS 4
#define GGUF_MAX_NAME 64 /* tensor names are at most 63 bytes */

/* Metadata value types (the u32 in each KV record). */
enum gguf_vtype {
    GGUF_TYPE_UINT8 = 0,
    GGUF_TYPE_INT8 = 1,
    GGUF_TYPE_UINT16 = 2,
    GGUF_TYPE_INT16 = 3,
    GGUF_TYPE_UINT32 = 4,
    GGUF_TYPE_INT32 = 5,
    GGUF_TYPE_FLOAT32 = 6,
    GGUF_TYPE_BOOL = 7,
    GGUF_TYPE_STRING = 8,
    GGUF_TYPE_ARRAY = 9,
    GGUF_TYPE_UINT64 = 10,
    GGUF_TYPE_INT64 = 11,
    GGUF_TYPE_FLOAT64 = 12,
    GGUF_TYPE_COUNT
};

/* One tensor of an open file (all fields read-only). */
struct gguf_tensor {
    const char *name;      /* NUL-terminated */
    uint32_t type;         /* enum ggml_type (quant.h) */
    uint32_t n_dims;       /* 1..4 */
    uint64_t ne[GGUF_MAX_DIMS]; /* ne[0] contiguous; unused dims are 1 */
    uint64_t n_elements;   /* product of ne */
    uint64_t n_rows;       /* ne[1]*ne[2]*ne[3] */
    uint64_t row_size;     /* bytes of one row of ne[0] elements */
    uint64_t nbytes;       /* row_size * n_rows */
    uint64_t offset;       /* from the start of the data section */
    const void *data;      /* inside the mapping; 32-byte aligned start */
};

struct gguf_file; /* opaque */

/* ---- reading ---------------------------------------------------------- */

/* Map and validate `path`. On success *out owns the mapping. */
int gguf_open(const char *path, struct gguf_file **out, struct km_err *err);
/* Validate an in-memory image (borrowed: it must outlive the gguf_file).
 * `name` is used in error messages. Used by tests and the fuzzer. */
int gguf_open_mem(const void *data, size_t size, const char *name,
                  struct gguf_file **out, struct km_err *err);
/* Unmap and free; accepts NULL. */
void gguf_close(struct gguf_file *f);

const char *gguf_path(const struct gguf_file *f);
uint32_t gguf_version(const struct gguf_file *f);
uint64_t gguf_file_size(const struct gguf_file *f);
uint32_t gguf_alignment(const struct gguf_file *f);
uint64_t gguf_data_offset(const struct gguf_file *f); /* data section start */
const void *gguf_base(const struct gguf_file *f);     /* byte 0 of the file */

/* Metadata, by index 0..gguf_n_kv-1 (file order). */
int64_t gguf_n_kv(const struct gguf_file *f);
/* Index of `key`, or -1 if absent. */
int64_t gguf_find_key(const struct gguf_file *f, const char *key);
const char *gguf_kv_key(const struct gguf_file *f, int64_t i);
enum gguf_vtype gguf_kv_type(const struct gguf_file *f, int64_t i);
/* Scalar value of KV i widened: integers and bools to int64/uint64 (u64
 * values above INT64_MAX clamp in the i64 form), floats to double. Returns
 * false if the KV is not of a matching kind (e.g. string, array). */
bool gguf_kv_int(const struct gguf_file *f, int64_t i, int64_t *out);
bool gguf_kv_uint(const struct gguf_file *f, int64_t i, uint64_t *out);
bool gguf_kv_float(const struct gguf_file *f, int64_t i, double *out);
/* Scalar string value (NUL-terminated copy; *len may be NULL). NULL if KV i
 * is not a string. */
const char *gguf_kv_str(const struct gguf_file *f, int64_t i, uint64_t *len);
/* Arrays: element type and count (0/0 if KV i is not an array). */
enum gguf_vtype gguf_kv_arr_type(const struct gguf_file *f, int64_t i);
uint64_t gguf_kv_arr_len(const struct gguf_file *f, int64_t i);
/* Raw element bytes of a numeric array (possibly unaligned), NULL for string
 * arrays and non-arrays. */
const void *gguf_kv_arr_data(const struct gguf_file *f, int64_t i);
/* Element j of a string array: pointer into the file (NOT NUL-terminated)
 * and its length; NULL if not a string array or j out of range. */
const char *gguf_kv_arr_str(const struct gguf_file *f, int64_t i, uint64_t j,
                            uint64_t *len);
/* Element j of a numeric array widened (false if not numeric / j >= len). */
bool gguf_kv_arr_int(const struct gguf_file *f, int64_t i, uint64_t j,
                     int64_t *out);
bool gguf_kv_arr_float(const struct gguf_file *f, int64_t i, uint64_t j,
                       double *out);

/* The encoded value bytes of KV i exactly as stored after its type field
 * (for strings: u64 length + bytes; arrays: element type, count, elements)
 * and their length; NULL if i is out of range. */
const void *gguf_kv_raw(const struct gguf_file *f, int64_t i, uint64_t *len);

/* Typed getters by key. KM_ENOTFOUND if the key is absent, KM_EFORMAT if it
 * has an incompatible type or the value does not fit; err names the key.
 * Integer getters accept any integer type (and bool) whose value fits, as
 * llama.cpp's converters write u32 where the spec suggests u64. Float
 * getters accept FLOAT32/FLOAT64. */
int gguf_get_u32(const struct gguf_file *f, const char *key, uint32_t *out,
                 struct km_err *err);
int gguf_get_i32(const struct gguf_file *f, const char *key, int32_t *out,
                 struct km_err *err);
int gguf_get_u64(const struct gguf_file *f, const char *key, uint64_t *out,
                 struct km_err *err);
int gguf_get_f32(const struct gguf_file *f, const char *key, float *out,
                 struct km_err *err);
int gguf_get_bool(const struct gguf_file *f, const char *key, bool *out,
                  struct km_err *err);
/* NUL-terminated copy valid until gguf_close; *len may be NULL. */
int gguf_get_str(const struct gguf_file *f, const char *key, const char **out,
                 uint64_t *len, struct km_err *err);

/* Tensors, by index 0..gguf_n_tensors-1 (file order) or by name. */
int64_t gguf_n_tensors(const struct gguf_file *f);
const struct gguf_tensor *gguf_tensor_at(const struct gguf_file *f, int64_t i);
/* NULL if absent. */
const struct gguf_tensor *gguf_find_tensor(const struct gguf_file *f,
                                           const char *name);

/* Name of a metadata type ("UINT32"), "?" when unknown. */
const char *gguf_vtype_name(uint32_t t);

/* ---- writing ---------------------------------------------------------- */

struct gguf_writer; /* opaque */

/* Fill `dst` (nbytes = the tensor's byte size) with tensor `index`'s data;
 * return KM_OK or an error code (err filled) to abort the write. */
typedef int (*gguf_fill_fn)(void *ctx, int64_t index, void *dst,
                            uint64_t nbytes, struct km_err *err);
/* Fill `dst` with rows row0 .. row0+n_rows-1 of tensor `index` (n_rows x
 * row size bytes). The writer calls it in order with chunks of rows (about
 * 32 MiB), so memory stays bounded for multi-GB tensors. */
typedef int (*gguf_fill_rows_fn)(void *ctx, int64_t index, uint64_t row0,
                                 uint64_t n_rows, void *dst, struct km_err *err);

int gguf_writer_new(struct gguf_writer **out, struct km_err *err);
void gguf_writer_free(struct gguf_writer *w); /* accepts NULL */
/* Header version to write (2 or 3, default 3); for tests. */
void gguf_writer_set_version(struct gguf_writer *w, uint32_t version);

/* Add a KV (appended in call order; a duplicate key fails with KM_EINVAL).
 * general.alignment added with gguf_writer_add_u32 sets the alignment. */
int gguf_writer_add_u8(struct gguf_writer *w, const char *key, uint8_t v, struct km_err *err);
int gguf_writer_add_i8(struct gguf_writer *w, const char *key, int8_t v, struct km_err *err);
int gguf_writer_add_u16(struct gguf_writer *w, const char *key, uint16_t v, struct km_err *err);
int gguf_writer_add_i16(struct gguf_writer *w, const char *key, int16_t v, struct km_err *err);
int gguf_writer_add_u32(struct gguf_writer *w, const char *key, uint32_t v, struct km_err *err);
int gguf_writer_add_i32(struct gguf_writer *w, const char *key, int32_t v, struct km_err *err);
int gguf_writer_add_u64(struct gguf_writer *w, const char *key, uint64_t v, struct km_err *err);
int gguf_writer_add_i64(struct gguf_writer *w, const char *key, int64_t v, struct km_err *err);
int gguf_writer_add_f32(struct gguf_writer *w, const char *key, float v, struct km_err *err);
int gguf_writer_add_f64(struct gguf_writer *w, const char *key, double v, struct km_err *err);
int gguf_writer_add_bool(struct gguf_writer *w, const char *key, bool v, struct km_err *err);
int gguf_writer_add_str(struct gguf_writer *w, const char *key, const char *v, struct km_err *err);
/* Numeric array: `n` elements of `elem_type` (not STRING/ARRAY) packed at
 * `data` (copied). */
int gguf_writer_add_arr(struct gguf_writer *w, const char *key,
                        enum gguf_vtype elem_type, const void *data, uint64_t n,
                        struct km_err *err);
/* String array: n strings; lens may be NULL (then strlen of each). */
int gguf_writer_add_arr_str(struct gguf_writer *w, const char *key,
                            const char *const *strs, const uint64_t *lens,
                            uint64_t n, struct km_err *err);
/* Copy KV i of an open file as-is (value bytes re-encoded identically). */
int gguf_writer_copy_kv(struct gguf_writer *w, const struct gguf_file *f,
                        int64_t i, struct km_err *err);

/* Add a tensor (n_dims 1..4, ne[0] first). Exactly one of `data` (borrowed
 * until the write; quant row size x rows bytes), `fill`+`ctx` (one call with
 * the whole tensor's buffer) or a rows callback supplies the bytes. Returns the tensor's index through *index when not NULL. */
int gguf_writer_add_tensor(struct gguf_writer *w, const char *name,
                           uint32_t type, uint32_t n_dims, const uint64_t *ne,
                           const void *data, struct km_err *err);
int gguf_writer_add_tensor_fill(struct gguf_writer *w, const char *name,
                                uint32_t type, uint32_t n_dims,
                                const uint64_t *ne, gguf_fill_fn fill,
                                void *ctx, struct km_err *err);
/* Like gguf_writer_add_tensor_fill, with the bytes produced in row chunks. */
int gguf_writer_add_tensor_rows(struct gguf_writer *w, const char *name,
                                uint32_t type, uint32_t n_dims,
                                const uint64_t *ne, gguf_fill_rows_fn fill,
                                void *ctx, struct km_err *err);
/* Byte size the tensor of index i will take (unpadded). */
uint64_t gguf_writer_tensor_nbytes(const struct gguf_writer *w, int64_t i);

/* Write everything to `path` (created/truncated; written to path.tmp and
 * renamed, so a failed write leaves no partial file). */
int gguf_writer_write_file(struct gguf_writer *w, const char *path,
                           struct km_err *err);
/* Write everything into a new km_malloc'd buffer (*out, *len); the caller
 * frees it with km_free. For tests that then corrupt bytes. */
int gguf_writer_write_mem(struct gguf_writer *w, void **out, size_t *len,
                          struct km_err *err);

#endif
