/* test_gguf.c - engine/gguf: writer -> reader round trips, the real vocab
 * files, and hostile files (each validation rule, exact error text with the
 * field name and byte offset). */
#include "base/mem.h"
#include "engine/gguf.h"
#include "engine/quant.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

TestSuite(gguf, .timeout = 60);

static struct km_err err;

/* A small valid file: 1 KV general.architecture="llama", tensor "t" F32
 * [32, 2]. Byte map: 0 magic, 4 version, 8 tensor_count, 16 kv_count,
 * 24 key len, 32 key, 52 type, 56 value len, 64 "llama", 69 tensor name len,
 * 77 name, 78 n_dims, 82 ne[0], 90 ne[1], 98 type, 102 offset, 128 data. */
static uint8_t *small_file(size_t *len)
{
    struct gguf_writer *w = NULL;
    float data[64];
    for (int i = 0; i < 64; i++)
        data[i] = (float)i;
    cr_assert_eq(gguf_writer_new(&w, &err), KM_OK);
    cr_assert_eq(gguf_writer_add_str(w, "general.architecture", "llama", &err), KM_OK);
    uint64_t ne[2] = {32, 2};
    cr_assert_eq(gguf_writer_add_tensor(w, "t", GGML_TYPE_F32, 2, ne, data, &err), KM_OK);
    void *buf = NULL;
    cr_assert_eq(gguf_writer_write_mem(w, &buf, len, &err), KM_OK, "%s", err.msg);
    gguf_writer_free(w);
    cr_assert_eq(*len, 384);
    return buf;
}

static void put32(uint8_t *b, size_t at, uint32_t v) { memcpy(b + at, &v, 4); }
static void put64(uint8_t *b, size_t at, uint64_t v) { memcpy(b + at, &v, 8); }

/* Open the image and expect failure with exactly `msg`. */
static void expect_bad(const uint8_t *b, size_t len, const char *msg)
{
    struct gguf_file *f = NULL;
    km_err_clear(&err);
    int rc = gguf_open_mem(b, len, "t.gguf", &f, &err);
    cr_assert_eq(rc, KM_EFORMAT, "expected KM_EFORMAT, got %d (%s)", rc, err.msg);
    cr_assert_null(f);
    cr_assert_str_eq(err.msg, msg);
}

Test(gguf, small_file_layout_and_values)
{
    size_t len;
    uint8_t *b = small_file(&len);
    struct gguf_file *f = NULL;
    long live = km_mem_live();
    cr_assert_eq(gguf_open_mem(b, len, "t.gguf", &f, &err), KM_OK, "%s", err.msg);
    cr_assert_eq(gguf_version(f), 3);
    cr_assert_eq(gguf_alignment(f), 32);
    cr_assert_eq(gguf_data_offset(f), 128);
    cr_assert_eq(gguf_n_kv(f), 1);
    cr_assert_eq(gguf_n_tensors(f), 1);
    const char *s = NULL;
    cr_assert_eq(gguf_get_str(f, "general.architecture", &s, NULL, &err), KM_OK);
    cr_assert_str_eq(s, "llama");
    const struct gguf_tensor *t = gguf_find_tensor(f, "t");
    cr_assert_not_null(t);
    cr_assert_eq(t->ne[0], 32);
    cr_assert_eq(t->ne[1], 2);
    cr_assert_eq(t->n_rows, 2);
    cr_assert_eq(t->nbytes, 256);
    cr_assert_eq((const uint8_t *)t->data - b, 128);
    cr_assert_eq(((const float *)t->data)[63], 63.0f);
    cr_assert_null(gguf_find_tensor(f, "missing"));
    cr_assert_eq(gguf_find_key(f, "missing"), -1);
    uint32_t u;
    cr_assert_eq(gguf_get_u32(f, "missing", &u, &err), KM_ENOTFOUND);
    cr_assert_str_eq(err.msg, "t.gguf: key missing not found");
    cr_assert_eq(gguf_get_u32(f, "general.architecture", &u, &err), KM_EFORMAT);
    cr_assert_str_eq(err.msg, "t.gguf: key general.architecture has type STRING, expected a non-negative integer");
    gguf_close(f);
    cr_assert_eq(km_mem_live(), live);
    km_free(b);
}

Test(gguf, round_trip_every_kv_type_and_tensors)
{
    struct gguf_writer *w = NULL;
    cr_assert_eq(gguf_writer_new(&w, &err), KM_OK);
    gguf_writer_add_u8(w, "k.u8", 200, &err);
    gguf_writer_add_i8(w, "k.i8", -100, &err);
    gguf_writer_add_u16(w, "k.u16", 60000, &err);
    gguf_writer_add_i16(w, "k.i16", -30000, &err);
    gguf_writer_add_u32(w, "k.u32", 4000000000u, &err);
    gguf_writer_add_i32(w, "k.i32", -2000000000, &err);
    gguf_writer_add_u64(w, "k.u64", 1ull << 40, &err);
    gguf_writer_add_i64(w, "k.i64", -(1ll << 40), &err);
    gguf_writer_add_f32(w, "k.f32", 1.5f, &err);
    gguf_writer_add_f64(w, "k.f64", -2.25, &err);
    gguf_writer_add_bool(w, "k.bool", true, &err);
    gguf_writer_add_str(w, "k.str", "héllo", &err);
    int32_t ints[3] = {-1, 0, 7};
    float fl[2] = {0.5f, -4.0f};
    const char *strs[3] = {"a", "", "ccc"};
    cr_assert_eq(gguf_writer_add_arr(w, "k.ai32", GGUF_TYPE_INT32, ints, 3, &err), KM_OK);
    cr_assert_eq(gguf_writer_add_arr(w, "k.af32", GGUF_TYPE_FLOAT32, fl, 2, &err), KM_OK);
    cr_assert_eq(gguf_writer_add_arr_str(w, "k.astr", strs, NULL, 3, &err), KM_OK);
    cr_assert_eq(gguf_writer_add_u32(w, "k.u8", 1, &err), KM_EINVAL);
    cr_assert_str_eq(err.msg, "GGUF writer: duplicate key k.u8");
    float src[64];
    for (int i = 0; i < 64; i++)
        src[i] = (float)i / 8.0f - 3.0f;
    uint8_t q8[2 * 34];
    quant_quantize_row(GGML_TYPE_Q8_0, src, q8, 64);
    uint64_t ne1[1] = {64}, ne2[2] = {32, 2}, ne3[3] = {32, 1, 1};
    cr_assert_eq(gguf_writer_add_tensor(w, "a", GGML_TYPE_F32, 1, ne1, src, &err), KM_OK);
    cr_assert_eq(gguf_writer_add_tensor(w, "b", GGML_TYPE_Q8_0, 2, ne2, q8, &err), KM_OK);
    cr_assert_eq(gguf_writer_add_tensor(w, "c", GGML_TYPE_F32, 3, ne3, src, &err), KM_OK);
    void *buf;
    size_t len;
    cr_assert_eq(gguf_writer_write_mem(w, &buf, &len, &err), KM_OK, "%s", err.msg);
    gguf_writer_free(w);

    struct gguf_file *f;
    cr_assert_eq(gguf_open_mem(buf, len, "rt.gguf", &f, &err), KM_OK, "%s", err.msg);
    cr_assert_eq(gguf_n_kv(f), 15);
    int64_t i;
    uint64_t uv;
    int64_t iv;
    double dv;
    cr_assert(gguf_kv_uint(f, gguf_find_key(f, "k.u8"), &uv) && uv == 200);
    cr_assert(gguf_kv_int(f, gguf_find_key(f, "k.i8"), &iv) && iv == -100);
    cr_assert(gguf_kv_uint(f, gguf_find_key(f, "k.u16"), &uv) && uv == 60000);
    cr_assert(gguf_kv_int(f, gguf_find_key(f, "k.i16"), &iv) && iv == -30000);
    uint32_t u32;
    cr_assert_eq(gguf_get_u32(f, "k.u32", &u32, &err), KM_OK);
    cr_assert_eq(u32, 4000000000u);
    int32_t i32;
    cr_assert_eq(gguf_get_i32(f, "k.i32", &i32, &err), KM_OK);
    cr_assert_eq(i32, -2000000000);
    cr_assert_eq(gguf_get_u32(f, "k.u64", &u32, &err), KM_EFORMAT);
    cr_assert_str_eq(err.msg, "rt.gguf: key k.u64 value 1099511627776 exceeds 4294967295");
    cr_assert_eq(gguf_get_u32(f, "k.i8", &u32, &err), KM_EFORMAT);
    uint64_t u64;
    cr_assert_eq(gguf_get_u64(f, "k.u64", &u64, &err), KM_OK);
    cr_assert_eq(u64, 1ull << 40);
    cr_assert(gguf_kv_int(f, gguf_find_key(f, "k.i64"), &iv) && iv == -(1ll << 40));
    float f32;
    cr_assert_eq(gguf_get_f32(f, "k.f32", &f32, &err), KM_OK);
    cr_assert_eq(f32, 1.5f);
    cr_assert(gguf_kv_float(f, gguf_find_key(f, "k.f64"), &dv) && dv == -2.25);
    bool bv;
    cr_assert_eq(gguf_get_bool(f, "k.bool", &bv, &err), KM_OK);
    cr_assert(bv);
    const char *s;
    uint64_t sl;
    cr_assert_eq(gguf_get_str(f, "k.str", &s, &sl, &err), KM_OK);
    cr_assert_str_eq(s, "héllo");
    cr_assert_eq(sl, 6);
    i = gguf_find_key(f, "k.ai32");
    cr_assert_eq(gguf_kv_type(f, i), GGUF_TYPE_ARRAY);
    cr_assert_eq(gguf_kv_arr_type(f, i), GGUF_TYPE_INT32);
    cr_assert_eq(gguf_kv_arr_len(f, i), 3);
    cr_assert(gguf_kv_arr_int(f, i, 0, &iv) && iv == -1);
    cr_assert(gguf_kv_arr_int(f, i, 2, &iv) && iv == 7);
    cr_assert(!gguf_kv_arr_int(f, i, 3, &iv));
    i = gguf_find_key(f, "k.af32");
    cr_assert(gguf_kv_arr_float(f, i, 1, &dv) && dv == -4.0);
    i = gguf_find_key(f, "k.astr");
    cr_assert_null(gguf_kv_arr_data(f, i));
    const char *e = gguf_kv_arr_str(f, i, 2, &sl);
    cr_assert_eq(sl, 3);
    cr_assert(memcmp(e, "ccc", 3) == 0);
    gguf_kv_arr_str(f, i, 1, &sl);
    cr_assert_eq(sl, 0);
    cr_assert_null(gguf_kv_arr_str(f, i, 3, &sl));

    cr_assert_eq(gguf_n_tensors(f), 3);
    const struct gguf_tensor *ta = gguf_tensor_at(f, 0), *tb = gguf_tensor_at(f, 1),
                             *tc = gguf_tensor_at(f, 2);
    cr_assert_str_eq(tb->name, "b");
    cr_assert_eq(ta->offset, 0);
    cr_assert_eq(tb->offset, 256);
    cr_assert_eq(tb->nbytes, 68);
    cr_assert_eq(tc->offset, 256 + 96);
    cr_assert_eq(tc->n_dims, 3);
    cr_assert(memcmp(tb->data, q8, 68) == 0);
    cr_assert(memcmp(ta->data, src, 256) == 0);
    cr_assert_eq(gguf_data_offset(f) % 32, 0);
    cr_assert_eq(((uintptr_t)tc->data - (uintptr_t)buf) % 32, 0);
    /* The file ends with the last tensor padded to the alignment. */
    cr_assert_eq(len, gguf_data_offset(f) + 256 + 96 + 128);

    /* Copying every KV into a new writer reproduces the same bytes. */
    struct gguf_writer *w2;
    gguf_writer_new(&w2, &err);
    for (int64_t k = 0; k < gguf_n_kv(f); k++)
        cr_assert_eq(gguf_writer_copy_kv(w2, f, k, &err), KM_OK, "%s", err.msg);
    for (int64_t k = 0; k < gguf_n_tensors(f); k++) {
        const struct gguf_tensor *t = gguf_tensor_at(f, k);
        gguf_writer_add_tensor(w2, t->name, t->type, t->n_dims, t->ne, t->data, &err);
    }
    void *buf2;
    size_t len2;
    cr_assert_eq(gguf_writer_write_mem(w2, &buf2, &len2, &err), KM_OK);
    cr_assert_eq(len2, len);
    cr_assert(memcmp(buf, buf2, len) == 0);
    gguf_writer_free(w2);
    km_free(buf2);
    gguf_close(f);
    km_free(buf);
}

static int fill_rows(void *ctx, int64_t index, uint64_t row0, uint64_t n_rows,
                     void *dst, struct km_err *e)
{
    int *calls = ctx;
    (*calls)++;
    float *o = dst;
    for (uint64_t r = 0; r < n_rows; r++)
        for (int c = 0; c < 8; c++)
            o[r * 8 + c] = (float)((row0 + r) * 100 + (uint64_t)c + (uint64_t)index);
    return KM_OK;
}

static int fill_whole(void *ctx, int64_t index, void *dst, uint64_t nbytes,
                      struct km_err *e)
{
    int *calls = ctx;
    (*calls)++;
    memset(dst, 0x3f, nbytes);
    return KM_OK;
}

static int fill_fail(void *ctx, int64_t index, uint64_t row0, uint64_t n_rows,
                     void *dst, struct km_err *e)
{
    return km_fail(e, KM_EIO, "fill failed on purpose");
}

Test(gguf, file_write_alignment_version2_and_fill)
{
    char path[] = "/tmp/km-gguf-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    struct gguf_writer *w;
    int calls = 0;
    gguf_writer_new(&w, &err);
    gguf_writer_set_version(w, 2);
    gguf_writer_add_u32(w, "general.alignment", 64, &err);
    uint64_t ne[2] = {8, 3};
    uint64_t ne1[1] = {8};
    gguf_writer_add_tensor_rows(w, "x", GGML_TYPE_F32, 1, ne1, fill_rows, &calls, &err);
    gguf_writer_add_tensor_rows(w, "y", GGML_TYPE_F32, 2, ne, fill_rows, &calls, &err);
    gguf_writer_add_tensor_fill(w, "z", GGML_TYPE_F32, 1, ne1, fill_whole, &calls, &err);
    cr_assert_eq(gguf_writer_write_file(w, path, &err), KM_OK, "%s", err.msg);
    gguf_writer_free(w);
    cr_assert_eq(calls, 3);
    struct gguf_file *f;
    cr_assert_eq(gguf_open(path, &f, &err), KM_OK, "%s", err.msg);
    cr_assert_eq(gguf_version(f), 2);
    cr_assert_eq(gguf_alignment(f), 64);
    cr_assert_eq(gguf_data_offset(f) % 64, 0);
    const struct gguf_tensor *y = gguf_find_tensor(f, "y");
    cr_assert_eq(y->offset, 64);
    cr_assert_eq(((const float *)y->data)[2 * 8 + 3], 204.0f);
    cr_assert_eq(gguf_file_size(f), gguf_data_offset(f) + 64 + 128 + 64);
    const struct gguf_tensor *z = gguf_find_tensor(f, "z");
    cr_assert_eq(z->offset, 192);
    cr_assert_eq(((const uint8_t *)z->data)[31], 0x3f);
    gguf_close(f);

    /* A failing fill leaves no file behind and keeps the old one intact. */
    gguf_writer_new(&w, &err);
    gguf_writer_add_tensor_rows(w, "x", GGML_TYPE_F32, 1, ne1, fill_fail, NULL, &err);
    cr_assert_eq(gguf_writer_write_file(w, path, &err), KM_EIO);
    cr_assert_str_eq(err.msg, "fill failed on purpose");
    gguf_writer_free(w);
    char tmp[64];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    cr_assert_neq(access(tmp, F_OK), 0);
    cr_assert_eq(gguf_open(path, &f, &err), KM_OK);
    gguf_close(f);
    unlink(path);

    cr_assert_eq(gguf_open("/nonexistent/x.gguf", &f, &err), KM_ENOTFOUND);
    cr_assert_str_eq(err.msg, "/nonexistent/x.gguf: No such file or directory");
}

/* ---- hostile files: one test per validation rule ---------------------- */

Test(gguf, hostile_header)
{
    size_t len;
    uint8_t *b = small_file(&len);
    expect_bad(b, 3, "t.gguf: field magic at byte 0: needs 4 bytes but the file ends at byte 3");
    put32(b, 0, 0x46554746);
    expect_bad(b, len, "t.gguf: field magic at byte 0: 0x46554746 is not \"GGUF\" (0x46554747)");
    put32(b, 0, GGUF_MAGIC);
    put32(b, 4, 1);
    expect_bad(b, len, "t.gguf: field version at byte 4: GGUF version 1 (32-bit counts) is not supported");
    put32(b, 4, 4);
    expect_bad(b, len, "t.gguf: field version at byte 4: version 4 is not supported (2 or 3)");
    put32(b, 4, 0x03000000);
    expect_bad(b, len, "t.gguf: field version at byte 4: 0x03000000 looks like a big-endian GGUF, which is not supported");
    put32(b, 4, 3);
    expect_bad(b, 20, "t.gguf: field kv_count at byte 16: needs 8 bytes but the file ends at byte 20");
    put64(b, 16, 1ull << 60);
    expect_bad(b, len, "t.gguf: field kv_count at byte 16: 1152921504606846976 key/values cannot fit in the 360 bytes left");
    put64(b, 16, 1);
    put64(b, 8, 11);
    expect_bad(b, len, "t.gguf: field tensor_count at byte 8: 11 tensors cannot fit in the 360 bytes left");
    km_free(b);
}

Test(gguf, hostile_kv_strings_and_types)
{
    size_t len;
    uint8_t *b = small_file(&len);
    put64(b, 24, 0);
    expect_bad(b, len, "t.gguf: field kv[0].key at byte 24: empty key");
    put64(b, 24, 1000);
    expect_bad(b, len, "t.gguf: field kv[0].key at byte 24: string length 1000 exceeds the 352 bytes left in the file");
    put64(b, 24, UINT64_MAX);
    expect_bad(b, len, "t.gguf: field kv[0].key at byte 24: string length 18446744073709551615 exceeds the 352 bytes left in the file");
    put64(b, 24, 20);
    b[40] = 0;
    expect_bad(b, len, "t.gguf: field kv[0].key at byte 24: key contains a NUL byte");
    b[40] = 'a';
    put32(b, 52, 13);
    expect_bad(b, len, "t.gguf: field kv[0] 'general.architecture' type at byte 52: value type 13 is not a GGUF type (0..12)");
    put32(b, 52, GGUF_TYPE_STRING);
    put64(b, 56, 400);
    expect_bad(b, len, "t.gguf: field kv[0] 'general.architecture' value at byte 56: string length 400 exceeds the 320 bytes left in the file");
    put64(b, 56, 5);
    /* As a bool, byte 56 (=5) is neither 0 nor 1. */
    put32(b, 52, GGUF_TYPE_BOOL);
    expect_bad(b, len, "t.gguf: field kv[0] 'general.architecture' value at byte 56: bool value 5 is not 0 or 1");
    /* As an array: element type 5 (INT32), count = bytes 60..67. */
    put32(b, 52, GGUF_TYPE_ARRAY);
    put32(b, 56, GGUF_TYPE_ARRAY);
    expect_bad(b, len, "t.gguf: field kv[0] 'general.architecture' value at byte 56: arrays of arrays are not supported");
    put32(b, 56, 77);
    expect_bad(b, len, "t.gguf: field kv[0] 'general.architecture' value at byte 56: array element type 77 is not a GGUF type (0..12)");
    put32(b, 56, GGUF_TYPE_INT32);
    put64(b, 60, 1ull << 62);
    expect_bad(b, len, "t.gguf: field kv[0] 'general.architecture' value at byte 60: array of 4611686018427387904 INT32 elements cannot fit in the 316 bytes left");
    put32(b, 56, GGUF_TYPE_STRING);
    put64(b, 60, 40);
    expect_bad(b, len, "t.gguf: field kv[0] 'general.architecture' value at byte 60: array of 40 STRING elements cannot fit in the 316 bytes left");
    km_free(b);
}

static uint8_t *file_with(void (*add)(struct gguf_writer *), size_t *len)
{
    struct gguf_writer *w;
    gguf_writer_new(&w, &err);
    add(w);
    void *buf;
    cr_assert_eq(gguf_writer_write_mem(w, &buf, len, &err), KM_OK, "%s", err.msg);
    gguf_writer_free(w);
    return buf;
}

static void add_bool_arr(struct gguf_writer *w)
{
    uint8_t v[3] = {1, 0, 1};
    gguf_writer_add_arr(w, "flags", GGUF_TYPE_BOOL, v, 3, &err);
    gguf_writer_add_str(w, "flags2", "x", &err);
}

static void add_align(struct gguf_writer *w)
{
    gguf_writer_add_u32(w, "general.alignment", 32, &err);
}

static void add_two(struct gguf_writer *w)
{
    gguf_writer_add_u32(w, "a.b", 1, &err);
    gguf_writer_add_u32(w, "a.c", 2, &err);
}

Test(gguf, hostile_arrays_alignment_duplicates)
{
    size_t len;
    /* flags: key at 24 (8+5), type 37, arr type 41, count 45, elems 53.. */
    uint8_t *b = file_with(add_bool_arr, &len);
    b[54] = 2;
    expect_bad(b, len, "t.gguf: field kv[0] 'flags' value at byte 54: bool element 1 is 2, not 0 or 1");
    km_free(b);

    /* general.alignment: key 24 (8+17), type 49, value 53. */
    b = file_with(add_align, &len);
    put32(b, 53, 48);
    expect_bad(b, len, "t.gguf: field general.alignment at byte 53: 48 is not a power of two");
    put32(b, 53, 0);
    expect_bad(b, len, "t.gguf: field general.alignment at byte 53: 0 is not a power of two");
    put32(b, 49, GGUF_TYPE_INT32);
    put32(b, 53, 32);
    expect_bad(b, len, "t.gguf: field general.alignment at byte 53: type INT32 is not UINT32");
    km_free(b);

    /* Second key "a.c" at byte 24+8+3+4+4 = 43: rename it to "a.b". */
    b = file_with(add_two, &len);
    b[53] = 'b';
    expect_bad(b, len, "t.gguf: field kv key at byte 43: duplicate key 'a.b' (first at kv[0])");
    km_free(b);
}

Test(gguf, hostile_tensor_infos)
{
    size_t len;
    uint8_t *b = small_file(&len);
    put64(b, 69, 0);
    expect_bad(b, len, "t.gguf: field tensor[0].name at byte 69: name length 0 is not in 1..63");
    put64(b, 69, 64);
    expect_bad(b, len, "t.gguf: field tensor[0].name at byte 69: name length 64 is not in 1..63");
    put64(b, 69, 1);
    b[77] = 0;
    expect_bad(b, len, "t.gguf: field tensor[0].name at byte 69: name contains a NUL byte");
    b[77] = 't';
    put32(b, 78, 5);
    expect_bad(b, len, "t.gguf: field tensor[0] 't'.n_dims at byte 78: 5 is not in 1..4");
    put32(b, 78, 0);
    expect_bad(b, len, "t.gguf: field tensor[0] 't'.n_dims at byte 78: 0 is not in 1..4");
    put32(b, 78, 2);
    put64(b, 82, 0);
    expect_bad(b, len, "t.gguf: field tensor[0] 't'.ne[0] at byte 82: dimension 0 is not in 1..2^63-1");
    put64(b, 82, 1ull << 63);
    expect_bad(b, len, "t.gguf: field tensor[0] 't'.ne[0] at byte 82: dimension 9223372036854775808 is not in 1..2^63-1");
    put64(b, 82, 1ull << 40);
    put64(b, 90, 1ull << 40);
    expect_bad(b, len, "t.gguf: field tensor[0] 't'.ne[1] at byte 90: element count overflows 2^63 (dimension 1099511627776)");
    put64(b, 82, 1ull << 31);
    put64(b, 90, 1ull << 31);
    expect_bad(b, len, "t.gguf: field tensor[0] 't'.type at byte 98: byte size overflows 2^63 (2147483648 rows of 8589934592 bytes)");
    put64(b, 82, 32);
    put64(b, 90, 2);
    put32(b, 98, 99);
    expect_bad(b, len, "t.gguf: field tensor[0] 't'.type at byte 98: 99 is not a known ggml type");
    put32(b, 98, 4);
    expect_bad(b, len, "t.gguf: field tensor[0] 't'.type at byte 98: 4 is not a known ggml type");
    put32(b, 98, GGML_TYPE_Q8_0);
    put64(b, 82, 48);
    expect_bad(b, len, "t.gguf: field tensor[0] 't'.type at byte 98: Q8_0 needs ne[0] to be a multiple of 32, got 48");
    put64(b, 82, 32);
    put32(b, 98, GGML_TYPE_F32);
    put64(b, 102, 16);
    expect_bad(b, len, "t.gguf: field tensor[0] 't'.offset at byte 102: offset 16 is not a multiple of the alignment 32");
    put64(b, 102, 32);
    expect_bad(b, len, "t.gguf: field tensor[0] 't'.offset at byte 102: offset 32 + size 256 exceeds the data section of 256 bytes");
    put64(b, 102, 0xffffffffffffffe0ull);
    expect_bad(b, len, "t.gguf: field tensor[0] 't'.offset at byte 102: offset 18446744073709551584 + size 256 exceeds the data section of 256 bytes");
    put64(b, 102, 0);
    expect_bad(b, 300, "t.gguf: field tensor[0] 't'.offset at byte 102: offset 0 + size 256 exceeds the data section of 172 bytes");
    expect_bad(b, 120, "t.gguf: field data section at byte 110: aligned start 128 is past the end of the file (120 bytes)");
    expect_bad(b, 105, "t.gguf: field tensor[0] 't'.offset at byte 102: needs 8 bytes but the file ends at byte 105");
    struct gguf_file *f;
    cr_assert_eq(gguf_open_mem(b, len, "t.gguf", &f, &err), KM_OK, "%s", err.msg);
    gguf_close(f);
    km_free(b);
}

static void add_two_tensors(struct gguf_writer *w)
{
    static float z[32];
    uint64_t ne[1] = {32};
    gguf_writer_add_tensor(w, "t1", GGML_TYPE_F32, 1, ne, z, &err);
    gguf_writer_add_tensor(w, "t2", GGML_TYPE_F32, 1, ne, z, &err);
}

Test(gguf, hostile_duplicate_tensor)
{
    size_t len;
    /* tensor[0] at 24: 8+2 name, 4 n_dims, 8 ne, 4 type, 8 offset = 34 bytes;
     * tensor[1] name at 58, its last byte at 67. */
    uint8_t *b = file_with(add_two_tensors, &len);
    b[67] = '1';
    expect_bad(b, len, "t.gguf: field tensor[1].name at byte 58: duplicate tensor name 't1' (first at tensor[0])");
    km_free(b);
}

/* Random byte mutations of a valid file never crash, leak or read out of
 * bounds (ASan); they either open or fail with a sentence. */
Test(gguf, mutations_fail_cleanly)
{
    size_t len;
    uint8_t *orig = file_with(add_bool_arr, &len);
    km_free(orig);
    orig = small_file(&len);
    uint8_t *b = km_malloc(len);
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    long live = km_mem_live();
    int opened = 0, failed = 0;
    for (int it = 0; it < 3000; it++) {
        memcpy(b, orig, len);
        for (int k = 0; k < 1 + it % 4; k++) {
            rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
            b[rng % 128] = (uint8_t)(rng >> 32);
        }
        struct gguf_file *f = NULL;
        km_err_clear(&err);
        int rc = gguf_open_mem(b, len - (it % 7 == 0 ? rng % 64 : 0), "m.gguf", &f, &err);
        if (rc == KM_OK) {
            opened++;
            for (int64_t i = 0; i < gguf_n_tensors(f); i++) {
                const struct gguf_tensor *t = gguf_tensor_at(f, i);
                volatile uint8_t last = ((const uint8_t *)t->data)[t->nbytes ? t->nbytes - 1 : 0];
                (void)last;
            }
            gguf_close(f);
        } else {
            failed++;
            cr_assert(strncmp(err.msg, "m.gguf: ", 8) == 0, "%s", err.msg);
        }
    }
    cr_assert_gt(failed, 100);
    cr_assert_eq(km_mem_live(), live);
    km_free(b);
    km_free(orig);
}

/* ---- the real vocab-only files ----------------------------------------- */

static struct gguf_file *open_shared(const char *name)
{
    const char *sh = getenv("KM_SHARED");
    char path[1024];
    snprintf(path, sizeof path, "%s/data/tokenizer/%s", sh ? sh : "../shared", name);
    struct gguf_file *f = NULL;
    cr_assert_eq(gguf_open(path, &f, &err), KM_OK, "%s", err.msg);
    return f;
}

static void assert_key_str(struct gguf_file *f, const char *key, const char *want)
{
    const char *s = NULL;
    cr_assert_eq(gguf_get_str(f, key, &s, NULL, &err), KM_OK, "%s", err.msg);
    cr_assert_str_eq(s, want, "%s", key);
}

static void assert_arr_str(struct gguf_file *f, const char *key, uint64_t j,
                           const char *want)
{
    int64_t i = gguf_find_key(f, key);
    uint64_t len = 0;
    const char *s = gguf_kv_arr_str(f, i, j, &len);
    cr_assert_not_null(s, "%s[%llu]", key, (unsigned long long)j);
    cr_assert_eq(len, strlen(want), "%s[%llu]: len %llu, want %s", key, (unsigned long long)j, (unsigned long long)len, want);
    cr_assert(memcmp(s, want, len) == 0, "%s[%llu] = %.*s", key, (unsigned long long)j, (int)len, s);
}

Test(gguf, real_vocab_bert_bge)
{
    struct gguf_file *f = open_shared("ggml-vocab-bert-bge.gguf");
    cr_assert_eq(gguf_version(f), 3);
    cr_assert_eq(gguf_n_tensors(f), 0);
    cr_assert_eq(gguf_n_kv(f), 20);
    assert_key_str(f, "general.architecture", "bert");
    assert_key_str(f, "tokenizer.ggml.model", "bert");
    uint32_t u;
    cr_assert_eq(gguf_get_u32(f, "bert.block_count", &u, &err), KM_OK);
    cr_assert_eq(u, 12);
    cr_assert_eq(gguf_kv_type(f, gguf_find_key(f, "bert.block_count")), GGUF_TYPE_UINT32);
    cr_assert_eq(gguf_get_u32(f, "bert.embedding_length", &u, &err), KM_OK);
    cr_assert_eq(u, 384);
    float eps;
    cr_assert_eq(gguf_get_f32(f, "bert.attention.layer_norm_epsilon", &eps, &err), KM_OK);
    cr_assert_float_eq(eps, 1e-12f, 1e-18);
    bool causal = true;
    cr_assert_eq(gguf_get_bool(f, "bert.attention.causal", &causal, &err), KM_OK);
    cr_assert(!causal);
    int64_t i = gguf_find_key(f, "tokenizer.ggml.tokens");
    cr_assert_eq(gguf_kv_arr_len(f, i), 30522);
    assert_arr_str(f, "tokenizer.ggml.tokens", 7592, "\xe2\x96\x81hello");
    assert_arr_str(f, "tokenizer.ggml.tokens", 17875, "hrer");
    assert_arr_str(f, "tokenizer.ggml.tokens", 101, "[CLS]");
    gguf_close(f);
}

Test(gguf, real_vocab_gpt2_and_llama_spm)
{
    struct gguf_file *f = open_shared("ggml-vocab-gpt-2.gguf");
    assert_key_str(f, "tokenizer.ggml.model", "gpt2");
    int64_t i = gguf_find_key(f, "tokenizer.ggml.merges");
    cr_assert_eq(gguf_kv_arr_type(f, i), GGUF_TYPE_STRING);
    cr_assert_eq(gguf_kv_arr_len(f, i), 50000);
    assert_arr_str(f, "tokenizer.ggml.merges", 0, "\xc4\xa0 t");
    assert_arr_str(f, "tokenizer.ggml.tokens", 0, "!");
    gguf_close(f);

    f = open_shared("ggml-vocab-llama-spm.gguf");
    assert_key_str(f, "tokenizer.ggml.model", "llama");
    i = gguf_find_key(f, "tokenizer.ggml.scores");
    cr_assert_eq(gguf_kv_arr_type(f, i), GGUF_TYPE_FLOAT32);
    cr_assert_eq(gguf_kv_arr_len(f, i), 32000);
    i = gguf_find_key(f, "tokenizer.ggml.token_type");
    cr_assert_eq(gguf_kv_arr_type(f, i), GGUF_TYPE_INT32);
    int64_t tt;
    cr_assert(gguf_kv_arr_int(f, i, 3, &tt));
    cr_assert_eq(tt, 6); /* <0x00> is a BYTE token */
    assert_arr_str(f, "tokenizer.ggml.tokens", 3, "<0x00>");
    assert_arr_str(f, "tokenizer.ggml.tokens", 15043, "\xe2\x96\x81Hello");
    gguf_close(f);
}


/* Found by fuzz/fuzz_gguf.c (fuzz/corpus/gguf/string-value-with-nul.gguf):
 * the copy of a string value stopped at a NUL inside it while gguf_kv_str
 * reported the whole length. */
Test(gguf, string_value_with_nul_keeps_its_length)
{
    size_t len;
    uint8_t *b = small_file(&len);
    b[66] = '\0'; /* "llama" -> "ll\0ma" */
    struct gguf_file *f = NULL;
    cr_assert_eq(gguf_open_mem(b, len, "t.gguf", &f, &err), KM_OK, "%s", err.msg);
    uint64_t n = 0;
    const char *s = gguf_kv_str(f, 0, &n);
    cr_assert_eq(n, 5);
    cr_assert(memcmp(s, "ll\0ma", 6) == 0, "all 5 bytes and a NUL");
    gguf_close(f);
    km_free(b);
}
