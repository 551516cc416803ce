/* gguf_write.c - GGUF writer (see gguf.h): collects KVs and tensor
 * descriptions, then writes header, KVs, tensor infos, padding and the data
 * section sequentially, laid out as llama.cpp's writer does. */
#include "engine/gguf.h"

#include "base/mem.h"
#include "engine/quant.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define FILL_CHUNK_BYTES (32u << 20) /* rows per fill call: about 32 MiB */

struct wkv {
    char *key;
    uint32_t type;
    uint8_t *val; /* encoded value bytes (after the type field) */
    size_t nval;
};

struct wtensor {
    char *name;
    uint32_t type, n_dims;
    uint64_t ne[GGUF_MAX_DIMS];
    uint64_t row_size, n_rows, nbytes, offset;
    const void *data;
    gguf_fill_fn fill;
    gguf_fill_rows_fn fill_rows;
    void *ctx;
};

struct gguf_writer {
    uint32_t version;
    struct wkv *kvs;
    int64_t n_kv, cap_kv;
    struct wtensor *ts;
    int64_t n_t, cap_t;
};

struct sink {
    FILE *fp;
    uint8_t *mem;
    size_t pos;
    const char *what;
};

int gguf_writer_new(struct gguf_writer **out, struct km_err *err)
{
    *out = km_calloc(1, sizeof **out);
    if (!*out)
        return km_fail(err, KM_ENOMEM, "out of memory for a GGUF writer");
    (*out)->version = GGUF_VERSION;
    return KM_OK;
}

void gguf_writer_free(struct gguf_writer *w)
{
    if (!w)
        return;
    for (int64_t i = 0; i < w->n_kv; i++) {
        km_free(w->kvs[i].key);
        km_free(w->kvs[i].val);
    }
    for (int64_t i = 0; i < w->n_t; i++)
        km_free(w->ts[i].name);
    km_free(w->kvs);
    km_free(w->ts);
    km_free(w);
}

void gguf_writer_set_version(struct gguf_writer *w, uint32_t version)
{
    w->version = version;
}

/* ---- key/values --------------------------------------------------------- */

static int grow(void **p, int64_t *cap, int64_t need, size_t elem)
{
    if (need <= *cap)
        return KM_OK;
    int64_t nc = *cap ? *cap * 2 : 16;
    void *np = km_realloc(*p, (size_t)nc * elem);
    if (!np)
        return KM_ENOMEM;
    *p = np;
    *cap = nc;
    return KM_OK;
}

/* Append KV `key` of `type` with encoded value bytes (copied). */
static int add_kv(struct gguf_writer *w, const char *key, uint32_t type,
                  const void *val, size_t nval, struct km_err *err)
{
    for (int64_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kvs[i].key, key) == 0)
            return km_fail(err, KM_EINVAL, "GGUF writer: duplicate key %s", key);
    }
    if (grow((void **)&w->kvs, &w->cap_kv, w->n_kv + 1, sizeof *w->kvs))
        return km_fail(err, KM_ENOMEM, "GGUF writer: out of memory adding key %s", key);
    struct wkv *kv = &w->kvs[w->n_kv];
    kv->key = km_strdup(key);
    kv->val = km_malloc(nval);
    if (!kv->key || !kv->val) {
        km_free(kv->key);
        km_free(kv->val);
        return km_fail(err, KM_ENOMEM, "GGUF writer: out of memory adding key %s", key);
    }
    memcpy(kv->val, val, nval);
    kv->nval = nval;
    kv->type = type;
    w->n_kv++;
    return KM_OK;
}

int gguf_writer_add_u8(struct gguf_writer *w, const char *key, uint8_t v, struct km_err *err)
{ return add_kv(w, key, GGUF_TYPE_UINT8, &v, 1, err); }
int gguf_writer_add_i8(struct gguf_writer *w, const char *key, int8_t v, struct km_err *err)
{ return add_kv(w, key, GGUF_TYPE_INT8, &v, 1, err); }
int gguf_writer_add_u16(struct gguf_writer *w, const char *key, uint16_t v, struct km_err *err)
{ return add_kv(w, key, GGUF_TYPE_UINT16, &v, 2, err); }
int gguf_writer_add_i16(struct gguf_writer *w, const char *key, int16_t v, struct km_err *err)
{ return add_kv(w, key, GGUF_TYPE_INT16, &v, 2, err); }
int gguf_writer_add_u32(struct gguf_writer *w, const char *key, uint32_t v, struct km_err *err)
{ return add_kv(w, key, GGUF_TYPE_UINT32, &v, 4, err); }
int gguf_writer_add_i32(struct gguf_writer *w, const char *key, int32_t v, struct km_err *err)
{ return add_kv(w, key, GGUF_TYPE_INT32, &v, 4, err); }
int gguf_writer_add_u64(struct gguf_writer *w, const char *key, uint64_t v, struct km_err *err)
{ return add_kv(w, key, GGUF_TYPE_UINT64, &v, 8, err); }
int gguf_writer_add_i64(struct gguf_writer *w, const char *key, int64_t v, struct km_err *err)
{ return add_kv(w, key, GGUF_TYPE_INT64, &v, 8, err); }
int gguf_writer_add_f32(struct gguf_writer *w, const char *key, float v, struct km_err *err)
{ return add_kv(w, key, GGUF_TYPE_FLOAT32, &v, 4, err); }
int gguf_writer_add_f64(struct gguf_writer *w, const char *key, double v, struct km_err *err)
{ return add_kv(w, key, GGUF_TYPE_FLOAT64, &v, 8, err); }

int gguf_writer_add_bool(struct gguf_writer *w, const char *key, bool v, struct km_err *err)
{
    uint8_t b = v ? 1 : 0;
    return add_kv(w, key, GGUF_TYPE_BOOL, &b, 1, err);
}

int gguf_writer_add_str(struct gguf_writer *w, const char *key, const char *v,
                        struct km_err *err)
{
    uint64_t n = strlen(v);
    uint8_t *buf = km_malloc(8 + n);
    if (!buf)
        return km_fail(err, KM_ENOMEM, "GGUF writer: out of memory for key %s", key);
    memcpy(buf, &n, 8);
    memcpy(buf + 8, v, n);
    int rc = add_kv(w, key, GGUF_TYPE_STRING, buf, 8 + n, err);
    km_free(buf);
    return rc;
}

static uint32_t elem_size(enum gguf_vtype t)
{
    switch (t) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_INT8: case GGUF_TYPE_BOOL: return 1;
    case GGUF_TYPE_UINT16: case GGUF_TYPE_INT16: return 2;
    case GGUF_TYPE_UINT32: case GGUF_TYPE_INT32: case GGUF_TYPE_FLOAT32: return 4;
    case GGUF_TYPE_UINT64: case GGUF_TYPE_INT64: case GGUF_TYPE_FLOAT64: return 8;
    default: return 0;
    }
}

int gguf_writer_add_arr(struct gguf_writer *w, const char *key,
                        enum gguf_vtype elem_type, const void *data, uint64_t n,
                        struct km_err *err)
{
    uint32_t es = elem_size(elem_type);
    if (!es)
        return km_fail(err, KM_EINVAL, "GGUF writer: key %s: element type %s is not numeric",
                       key, gguf_vtype_name(elem_type));
    if (n > (SIZE_MAX - 12) / es)
        return km_fail(err, KM_ERANGE, "GGUF writer: key %s: array too large", key);
    size_t nb = 12 + (size_t)n * es;
    uint8_t *buf = km_malloc(nb);
    if (!buf)
        return km_fail(err, KM_ENOMEM, "GGUF writer: out of memory for key %s", key);
    uint32_t et = elem_type;
    memcpy(buf, &et, 4);
    memcpy(buf + 4, &n, 8);
    if (n)
        memcpy(buf + 12, data, (size_t)n * es);
    int rc = add_kv(w, key, GGUF_TYPE_ARRAY, buf, nb, err);
    km_free(buf);
    return rc;
}

int gguf_writer_add_arr_str(struct gguf_writer *w, const char *key,
                            const char *const *strs, const uint64_t *lens,
                            uint64_t n, struct km_err *err)
{
    size_t nb = 12;
    for (uint64_t j = 0; j < n; j++)
        nb += 8 + (lens ? lens[j] : strlen(strs[j]));
    uint8_t *buf = km_malloc(nb);
    if (!buf)
        return km_fail(err, KM_ENOMEM, "GGUF writer: out of memory for key %s", key);
    uint32_t et = GGUF_TYPE_STRING;
    memcpy(buf, &et, 4);
    memcpy(buf + 4, &n, 8);
    size_t pos = 12;
    for (uint64_t j = 0; j < n; j++) {
        uint64_t l = lens ? lens[j] : strlen(strs[j]);
        memcpy(buf + pos, &l, 8);
        memcpy(buf + pos + 8, strs[j], l);
        pos += 8 + l;
    }
    int rc = add_kv(w, key, GGUF_TYPE_ARRAY, buf, nb, err);
    km_free(buf);
    return rc;
}

int gguf_writer_copy_kv(struct gguf_writer *w, const struct gguf_file *f,
                        int64_t i, struct km_err *err)
{
    uint64_t len = 0;
    const void *raw = gguf_kv_raw(f, i, &len);
    if (!raw)
        return km_fail(err, KM_EINVAL, "GGUF writer: no KV %lld in %s", (long long)i, gguf_path(f));
    return add_kv(w, gguf_kv_key(f, i), gguf_kv_type(f, i), raw, (size_t)len, err);
}

/* ---- tensors ------------------------------------------------------------- */

static int add_tensor(struct gguf_writer *w, const char *name, uint32_t type,
                      uint32_t n_dims, const uint64_t *ne, struct km_err *err)
{
    if (!name[0] || strlen(name) >= GGUF_MAX_NAME)
        return km_fail(err, KM_EINVAL, "GGUF writer: tensor name '%s' is not 1..63 bytes", name);
    if (n_dims == 0 || n_dims > GGUF_MAX_DIMS)
        return km_fail(err, KM_EINVAL, "GGUF writer: tensor %s: n_dims %u not in 1..4", name, n_dims);
    uint32_t bs = quant_block_size(type);
    if (!bs || ne[0] % bs)
        return km_fail(err, KM_EINVAL, "GGUF writer: tensor %s: type %u needs ne[0] %% %u == 0, got %llu",
                       name, type, bs, (unsigned long long)ne[0]);
    for (int64_t i = 0; i < w->n_t; i++) {
        if (strcmp(w->ts[i].name, name) == 0)
            return km_fail(err, KM_EINVAL, "GGUF writer: duplicate tensor %s", name);
    }
    if (grow((void **)&w->ts, &w->cap_t, w->n_t + 1, sizeof *w->ts))
        return km_fail(err, KM_ENOMEM, "GGUF writer: out of memory adding tensor %s", name);
    struct wtensor *t = &w->ts[w->n_t];
    memset(t, 0, sizeof *t);
    t->name = km_strdup(name);
    if (!t->name)
        return km_fail(err, KM_ENOMEM, "GGUF writer: out of memory adding tensor %s", name);
    t->type = type;
    t->n_dims = n_dims;
    t->n_rows = 1;
    for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) {
        t->ne[d] = d < n_dims ? ne[d] : 1;
        if (d > 0)
            t->n_rows *= t->ne[d];
    }
    t->row_size = quant_row_size(type, (int64_t)t->ne[0]);
    t->nbytes = t->row_size * t->n_rows;
    w->n_t++;
    return KM_OK;
}

int gguf_writer_add_tensor(struct gguf_writer *w, const char *name,
                           uint32_t type, uint32_t n_dims, const uint64_t *ne,
                           const void *data, struct km_err *err)
{
    int rc = add_tensor(w, name, type, n_dims, ne, err);
    if (!rc)
        w->ts[w->n_t - 1].data = data;
    return rc;
}

int gguf_writer_add_tensor_fill(struct gguf_writer *w, const char *name,
                                uint32_t type, uint32_t n_dims,
                                const uint64_t *ne, gguf_fill_fn fill,
                                void *ctx, struct km_err *err)
{
    int rc = add_tensor(w, name, type, n_dims, ne, err);
    if (!rc) {
        w->ts[w->n_t - 1].fill = fill;
        w->ts[w->n_t - 1].ctx = ctx;
    }
    return rc;
}

int gguf_writer_add_tensor_rows(struct gguf_writer *w, const char *name,
                                uint32_t type, uint32_t n_dims,
                                const uint64_t *ne, gguf_fill_rows_fn fill,
                                void *ctx, struct km_err *err)
{
    int rc = add_tensor(w, name, type, n_dims, ne, err);
    if (!rc) {
        w->ts[w->n_t - 1].fill_rows = fill;
        w->ts[w->n_t - 1].ctx = ctx;
    }
    return rc;
}

uint64_t gguf_writer_tensor_nbytes(const struct gguf_writer *w, int64_t i)
{
    return (i >= 0 && i < w->n_t) ? w->ts[i].nbytes : 0;
}

/* ---- layout and output ------------------------------------------------- */

static uint32_t writer_alignment(const struct gguf_writer *w)
{
    for (int64_t i = 0; i < w->n_kv; i++) {
        if (w->kvs[i].type == GGUF_TYPE_UINT32 && strcmp(w->kvs[i].key, "general.alignment") == 0) {
            uint32_t a;
            memcpy(&a, w->kvs[i].val, 4);
            if (a && !(a & (a - 1)))
                return a;
        }
    }
    return GGUF_DEFAULT_ALIGNMENT;
}

static uint64_t align_up(uint64_t x, uint64_t a)
{
    return x + (a - x % a) % a;
}

/* Assign offsets; returns the total file size and the data start. */
static uint64_t layout(struct gguf_writer *w, uint64_t *data_start)
{
    uint64_t a = writer_alignment(w);
    uint64_t pos = 24;
    for (int64_t i = 0; i < w->n_kv; i++)
        pos += 8 + strlen(w->kvs[i].key) + 4 + w->kvs[i].nval;
    uint64_t off = 0;
    for (int64_t i = 0; i < w->n_t; i++) {
        pos += 8 + strlen(w->ts[i].name) + 4 + 8ull * w->ts[i].n_dims + 4 + 8;
        w->ts[i].offset = off;
        off = align_up(off + w->ts[i].nbytes, a);
    }
    *data_start = align_up(pos, a);
    return *data_start + off;
}

static int put(struct sink *s, const void *p, size_t n, struct km_err *err)
{
    if (s->mem) {
        memcpy(s->mem + s->pos, p, n);
    } else if (n && fwrite(p, 1, n, s->fp) != n) {
        return km_fail(err, errno == ENOSPC ? KM_ENOSPACE : KM_EIO, "%s: write failed at byte %zu: %s",
                       s->what, s->pos, strerror(errno));
    }
    s->pos += n;
    return KM_OK;
}

static int put_zeros(struct sink *s, uint64_t n, struct km_err *err)
{
    static const uint8_t zeros[256];
    int rc = KM_OK;
    while (n && !rc) {
        size_t k = n > sizeof zeros ? sizeof zeros : (size_t)n;
        rc = put(s, zeros, k, err);
        n -= k;
    }
    return rc;
}

static int put_str(struct sink *s, const char *str, struct km_err *err)
{
    uint64_t n = strlen(str);
    int rc = put(s, &n, 8, err);
    return rc ? rc : put(s, str, (size_t)n, err);
}

static int put_header(struct gguf_writer *w, struct sink *s, struct km_err *err)
{
    uint32_t magic = GGUF_MAGIC, ver = w->version;
    uint64_t nt = (uint64_t)w->n_t, nkv = (uint64_t)w->n_kv;
    int rc = put(s, &magic, 4, err);
    if (!rc) rc = put(s, &ver, 4, err);
    if (!rc) rc = put(s, &nt, 8, err);
    if (!rc) rc = put(s, &nkv, 8, err);
    for (int64_t i = 0; i < w->n_kv && !rc; i++) {
        rc = put_str(s, w->kvs[i].key, err);
        if (!rc) rc = put(s, &w->kvs[i].type, 4, err);
        if (!rc) rc = put(s, w->kvs[i].val, w->kvs[i].nval, err);
    }
    for (int64_t i = 0; i < w->n_t && !rc; i++) {
        const struct wtensor *t = &w->ts[i];
        rc = put_str(s, t->name, err);
        if (!rc) rc = put(s, &t->n_dims, 4, err);
        if (!rc) rc = put(s, t->ne, 8ull * t->n_dims, err);
        if (!rc) rc = put(s, &t->type, 4, err);
        if (!rc) rc = put(s, &t->offset, 8, err);
    }
    return rc;
}

/* A whole-tensor fill callback: one buffer of the tensor's size. */
static int put_whole(const struct wtensor *t, int64_t i, struct sink *s,
                     struct km_err *err)
{
    if (s->mem) {
        int rc = t->fill(t->ctx, i, s->mem + s->pos, t->nbytes, err);
        if (!rc)
            s->pos += (size_t)t->nbytes;
        return rc;
    }
    uint8_t *buf = km_malloc((size_t)t->nbytes);
    if (!buf)
        return km_fail(err, KM_ENOMEM, "%s: out of memory for tensor %s (%llu bytes)", s->what,
                       t->name, (unsigned long long)t->nbytes);
    int rc = t->fill(t->ctx, i, buf, t->nbytes, err);
    if (!rc)
        rc = put(s, buf, (size_t)t->nbytes, err);
    km_free(buf);
    return rc;
}

/* One tensor's bytes: straight from the caller's buffer or via fill in
 * chunks of rows through `buf` (bufsize bytes). */
static int put_tensor(struct gguf_writer *w, int64_t i, struct sink *s,
                      uint8_t *buf, uint64_t buf_bytes, struct km_err *err)
{
    const struct wtensor *t = &w->ts[i];
    if (t->data)
        return put(s, t->data, (size_t)t->nbytes, err);
    if (t->fill)
        return put_whole(t, i, s, err);
    if (!t->fill_rows)
        return put_zeros(s, t->nbytes, err);
    uint64_t rows_per = t->row_size ? buf_bytes / t->row_size : 1;
    if (rows_per == 0)
        rows_per = 1;
    for (uint64_t r = 0; r < t->n_rows; r += rows_per) {
        uint64_t nr = t->n_rows - r < rows_per ? t->n_rows - r : rows_per;
        uint8_t *dst = s->mem ? s->mem + s->pos : buf;
        int rc = t->fill_rows(t->ctx, i, r, nr, dst, err);
        if (rc)
            return rc;
        if (s->mem)
            s->pos += nr * t->row_size;
        else
            rc = put(s, buf, (size_t)(nr * t->row_size), err);
        if (rc)
            return rc;
    }
    return KM_OK;
}

static int put_all(struct gguf_writer *w, struct sink *s, uint64_t data_start,
                   struct km_err *err)
{
    uint64_t a = writer_alignment(w);
    uint64_t buf_bytes = FILL_CHUNK_BYTES;
    for (int64_t i = 0; i < w->n_t; i++) {
        if (w->ts[i].row_size > buf_bytes)
            buf_bytes = w->ts[i].row_size;
    }
    uint8_t *buf = NULL;
    if (!s->mem) {
        buf = km_malloc((size_t)buf_bytes);
        if (!buf)
            return km_fail(err, KM_ENOMEM, "%s: out of memory for a write buffer", s->what);
    }
    int rc = put_header(w, s, err);
    if (!rc)
        rc = put_zeros(s, data_start - s->pos, err);
    for (int64_t i = 0; i < w->n_t && !rc; i++) {
        rc = put_tensor(w, i, s, buf, buf_bytes, err);
        if (!rc)
            rc = put_zeros(s, align_up(w->ts[i].nbytes, a) - w->ts[i].nbytes, err);
    }
    km_free(buf);
    return rc;
}

int gguf_writer_write_mem(struct gguf_writer *w, void **out, size_t *len,
                          struct km_err *err)
{
    uint64_t data_start;
    uint64_t total = layout(w, &data_start);
    struct sink s = {.what = "GGUF writer"};
    *out = NULL;
    *len = 0;
    s.mem = km_malloc((size_t)total);
    if (!s.mem)
        return km_fail(err, KM_ENOMEM, "GGUF writer: out of memory for %llu bytes",
                       (unsigned long long)total);
    int rc = put_all(w, &s, data_start, err);
    if (rc) {
        km_free(s.mem);
        return rc;
    }
    *out = s.mem;
    *len = (size_t)total;
    return KM_OK;
}

int gguf_writer_write_file(struct gguf_writer *w, const char *path,
                           struct km_err *err)
{
    uint64_t data_start;
    layout(w, &data_start);
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp)
        return km_fail(err, KM_EINVAL, "%s: path too long", path);
    struct sink s = {.what = path};
    s.fp = fopen(tmp, "wb");
    if (!s.fp)
        return km_fail(err, KM_EIO, "%s: cannot create: %s", tmp, strerror(errno));
    setvbuf(s.fp, NULL, _IOFBF, 1 << 20);
    int rc = put_all(w, &s, data_start, err);
    if (fclose(s.fp) != 0 && !rc)
        rc = km_fail(err, KM_EIO, "%s: close failed: %s", tmp, strerror(errno));
    if (!rc && rename(tmp, path) != 0)
        rc = km_fail(err, KM_EIO, "%s: rename to %s failed: %s", tmp, path, strerror(errno));
    if (rc)
        unlink(tmp);
    return rc;
}
