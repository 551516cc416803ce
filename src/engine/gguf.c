/* gguf.c - GGUF reader: mmap, validate every field, index keys and tensors.
 *
 * The file is hostile until proven otherwise. Parsing walks a cursor over the
 * mapping; every read checks bounds first and every count is checked against
 * the bytes left before anything is allocated for it. Errors name the file,
 * the field and the byte offset where that field starts.
 */
#include "engine/gguf.h"

#include "base/mem.h"
#include "engine/quant.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct kv {
    char *key;             /* NUL-terminated copy */
    uint32_t type;
    uint32_t arr_type;     /* arrays only */
    uint64_t arr_n;        /* arrays only */
    const uint8_t *val;    /* value bytes in the mapping (after type / array header) */
    char *str;             /* scalar strings: NUL-terminated copy */
    uint64_t str_len;
    uint64_t *str_offs;    /* string arrays: offset of each element's length */
    const uint8_t *raw;    /* encoded value (after the type field) */
    uint64_t raw_len;
};

struct gguf_file {
    char *path;
    const uint8_t *base;
    uint64_t size;
    bool mapped;
    uint32_t version;
    uint32_t alignment;
    uint64_t data_off;
    int64_t n_kv;
    struct kv *kvs;
    int64_t n_tensors;
    struct gguf_tensor *tensors;
    /* open-addressing hash tables of indices+1 (0 = empty) */
    uint64_t kv_hcap, t_hcap;
    int64_t *kv_hash;
    int64_t *t_hash;
    uint64_t *t_off_at;    /* file offset of each tensor's offset field */
};

struct cur {
    const struct gguf_file *f;
    uint64_t pos;
    struct km_err *err;
};

static const uint32_t vtype_size[GGUF_TYPE_COUNT] = {
    [GGUF_TYPE_UINT8] = 1, [GGUF_TYPE_INT8] = 1, [GGUF_TYPE_UINT16] = 2,
    [GGUF_TYPE_INT16] = 2, [GGUF_TYPE_UINT32] = 4, [GGUF_TYPE_INT32] = 4,
    [GGUF_TYPE_FLOAT32] = 4, [GGUF_TYPE_BOOL] = 1, [GGUF_TYPE_STRING] = 0,
    [GGUF_TYPE_ARRAY] = 0, [GGUF_TYPE_UINT64] = 8, [GGUF_TYPE_INT64] = 8,
    [GGUF_TYPE_FLOAT64] = 8,
};

static const char *const vtype_names[GGUF_TYPE_COUNT] = {
    "UINT8", "INT8", "UINT16", "INT16", "UINT32", "INT32", "FLOAT32",
    "BOOL", "STRING", "ARRAY", "UINT64", "INT64", "FLOAT64",
};

const char *gguf_vtype_name(uint32_t t)
{
    return t < GGUF_TYPE_COUNT ? vtype_names[t] : "?";
}

/* ---- cursor ------------------------------------------------------------ */

static int bad(struct cur *c, uint64_t at, const char *field, const char *fmt,
               ...) __attribute__((format(printf, 4, 5)));

static int bad(struct cur *c, uint64_t at, const char *field, const char *fmt,
               ...)
{
    char detail[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    return km_fail(c->err, KM_EFORMAT, "%s: field %s at byte %llu: %s",
                   c->f->path, field, (unsigned long long)at, detail);
}

static uint64_t left(const struct cur *c)
{
    return c->f->size - c->pos;
}

static int rd(struct cur *c, void *dst, uint64_t n, const char *field)
{
    if (n > left(c))
        return bad(c, c->pos, field, "needs %llu bytes but the file ends at byte %llu",
                   (unsigned long long)n, (unsigned long long)c->f->size);
    memcpy(dst, c->f->base + c->pos, n);
    c->pos += n;
    return KM_OK;
}

static int rd_u32(struct cur *c, uint32_t *v, const char *field)
{
    return rd(c, v, 4, field);
}

static int rd_u64(struct cur *c, uint64_t *v, const char *field)
{
    return rd(c, v, 8, field);
}

/* A GGUF string: u64 length + bytes. Returns pointer + length in place. */
static int rd_str(struct cur *c, const char **p, uint64_t *len,
                  const char *field)
{
    uint64_t at = c->pos;
    int rc = rd_u64(c, len, field);
    if (rc)
        return rc;
    if (*len > left(c))
        return bad(c, at, field, "string length %llu exceeds the %llu bytes left in the file",
                   (unsigned long long)*len, (unsigned long long)left(c));
    *p = (const char *)c->f->base + c->pos;
    c->pos += *len;
    return KM_OK;
}

/* ---- hashing ----------------------------------------------------------- */

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

static uint64_t hash_cap(int64_t n)
{
    uint64_t cap = 16;
    while (cap < (uint64_t)n * 2)
        cap <<= 1;
    return cap;
}

/* Insert idx (name names(idx)) into table; returns the clashing index or -1. */
static int64_t hash_insert(int64_t *tab, uint64_t cap, const char *name,
                           int64_t idx, const char *(*name_of)(const struct gguf_file *, int64_t),
                           const struct gguf_file *f)
{
    uint64_t h = hash_str(name) & (cap - 1);
    while (tab[h]) {
        if (strcmp(name_of(f, tab[h] - 1), name) == 0)
            return tab[h] - 1;
        h = (h + 1) & (cap - 1);
    }
    tab[h] = idx + 1;
    return -1;
}

static int64_t hash_find(const int64_t *tab, uint64_t cap, const char *name,
                         const char *(*name_of)(const struct gguf_file *, int64_t),
                         const struct gguf_file *f)
{
    if (!tab)
        return -1;
    uint64_t h = hash_str(name) & (cap - 1);
    while (tab[h]) {
        if (strcmp(name_of(f, tab[h] - 1), name) == 0)
            return tab[h] - 1;
        h = (h + 1) & (cap - 1);
    }
    return -1;
}

static const char *kv_name(const struct gguf_file *f, int64_t i)
{
    return f->kvs[i].key;
}

static const char *t_name(const struct gguf_file *f, int64_t i)
{
    return f->tensors[i].name;
}

/* ---- header and KVs ---------------------------------------------------- */

static int parse_header(struct cur *c, struct gguf_file *f, uint64_t *n_t,
                        uint64_t *n_kv)
{
    uint32_t magic = 0;
    int rc = rd_u32(c, &magic, "magic");
    if (rc)
        return rc;
    if (magic != GGUF_MAGIC)
        return bad(c, 0, "magic", "0x%08x is not \"GGUF\" (0x%08x)", magic, GGUF_MAGIC);
    rc = rd_u32(c, &f->version, "version");
    if (rc)
        return rc;
    if (f->version == 1)
        return bad(c, 4, "version", "GGUF version 1 (32-bit counts) is not supported");
    if (f->version > 0xffff && (f->version & 0xffff) == 0)
        return bad(c, 4, "version", "0x%08x looks like a big-endian GGUF, which is not supported",
                   f->version);
    if (f->version != 2 && f->version != 3)
        return bad(c, 4, "version", "version %u is not supported (2 or 3)", f->version);
    rc = rd_u64(c, n_t, "tensor_count");
    if (!rc)
        rc = rd_u64(c, n_kv, "kv_count");
    if (rc)
        return rc;
    /* A KV takes at least 8+1 (key) + 4 (type) + 1 (value) bytes, a tensor
     * info at least 8+1 + 4 + 8 + 4 + 8. */
    if (*n_kv > left(c) / 14)
        return bad(c, 16, "kv_count", "%llu key/values cannot fit in the %llu bytes left",
                   (unsigned long long)*n_kv, (unsigned long long)left(c));
    if (*n_t > left(c) / 33)
        return bad(c, 8, "tensor_count", "%llu tensors cannot fit in the %llu bytes left",
                   (unsigned long long)*n_t, (unsigned long long)left(c));
    return KM_OK;
}

static int check_scalar(struct cur *c, uint32_t type, const char *field)
{
    uint64_t at = c->pos;
    uint32_t sz = vtype_size[type];
    if (sz > left(c))
        return bad(c, at, field, "%s value needs %u bytes but the file ends at byte %llu",
                   vtype_names[type], sz, (unsigned long long)c->f->size);
    if (type == GGUF_TYPE_BOOL && c->f->base[at] > 1)
        return bad(c, at, field, "bool value %u is not 0 or 1", c->f->base[at]);
    c->pos += sz;
    return KM_OK;
}

static int parse_array(struct cur *c, struct kv *kv, const char *field)
{
    uint64_t at = c->pos;
    int rc = rd_u32(c, &kv->arr_type, field);
    if (!rc)
        rc = rd_u64(c, &kv->arr_n, field);
    if (rc)
        return rc;
    if (kv->arr_type == GGUF_TYPE_ARRAY)
        return bad(c, at, field, "arrays of arrays are not supported");
    if (kv->arr_type >= GGUF_TYPE_COUNT)
        return bad(c, at, field, "array element type %u is not a GGUF type (0..12)", kv->arr_type);
    kv->val = c->f->base + c->pos;
    uint32_t esz = kv->arr_type == GGUF_TYPE_STRING ? 8 : vtype_size[kv->arr_type];
    if (kv->arr_n > left(c) / esz)
        return bad(c, at + 4, field, "array of %llu %s elements cannot fit in the %llu bytes left",
                   (unsigned long long)kv->arr_n, vtype_names[kv->arr_type],
                   (unsigned long long)left(c));
    if (kv->arr_type != GGUF_TYPE_STRING) {
        for (uint64_t j = 0; kv->arr_type == GGUF_TYPE_BOOL && j < kv->arr_n; j++) {
            if (kv->val[j] > 1)
                return bad(c, c->pos + j, field, "bool element %llu is %u, not 0 or 1",
                           (unsigned long long)j, kv->val[j]);
        }
        c->pos += kv->arr_n * esz;
        return KM_OK;
    }
    kv->str_offs = km_mallocarray(kv->arr_n ? kv->arr_n : 1, sizeof(uint64_t));
    if (!kv->str_offs)
        return km_fail(c->err, KM_ENOMEM, "%s: out of memory for %llu array strings",
                       c->f->path, (unsigned long long)kv->arr_n);
    for (uint64_t j = 0; j < kv->arr_n; j++) {
        const char *p;
        uint64_t len;
        kv->str_offs[j] = c->pos;
        rc = rd_str(c, &p, &len, field);
        if (rc)
            return rc;
    }
    return KM_OK;
}

static int parse_str_value(struct cur *c, struct kv *kv, const char *field);

static int parse_kv(struct cur *c, struct gguf_file *f, int64_t i)
{
    struct kv *kv = &f->kvs[i];
    char field[96];
    uint64_t at = c->pos;
    const char *p;
    uint64_t len;
    snprintf(field, sizeof field, "kv[%lld].key", (long long)i);
    int rc = rd_str(c, &p, &len, field);
    if (rc)
        return rc;
    if (len == 0)
        return bad(c, at, field, "empty key");
    if (memchr(p, 0, len))
        return bad(c, at, field, "key contains a NUL byte");
    kv->key = km_strndup(p, len);
    if (!kv->key)
        return km_fail(c->err, KM_ENOMEM, "%s: out of memory", f->path);
    snprintf(field, sizeof field, "kv[%lld] '%.48s' type", (long long)i, kv->key);
    at = c->pos;
    rc = rd_u32(c, &kv->type, field);
    if (rc)
        return rc;
    if (kv->type >= GGUF_TYPE_COUNT)
        return bad(c, at, field, "value type %u is not a GGUF type (0..12)", kv->type);
    snprintf(field, sizeof field, "kv[%lld] '%.48s' value", (long long)i, kv->key);
    kv->val = f->base + c->pos;
    kv->raw = kv->val;
    if (kv->type == GGUF_TYPE_ARRAY)
        rc = parse_array(c, kv, field);
    else if (kv->type != GGUF_TYPE_STRING)
        rc = check_scalar(c, kv->type, field);
    else
        rc = parse_str_value(c, kv, field);
    kv->raw_len = (uint64_t)(f->base + c->pos - kv->raw);
    return rc;
}

static int parse_str_value(struct cur *c, struct kv *kv, const char *field)
{
    const char *p;
    uint64_t len;
    int rc = rd_str(c, &p, &len, field);
    if (rc)
        return rc;
    /* All len bytes (a NUL inside the value included), so the copy and the
     * length gguf_kv_str reports agree. */
    kv->str = km_malloc(len + 1);
    kv->str_len = len;
    if (!kv->str)
        return km_fail(c->err, KM_ENOMEM, "%s: out of memory for key %s", c->f->path, kv->key);
    memcpy(kv->str, p, len);
    kv->str[len] = '\0';
    return KM_OK;
}

static int parse_kvs(struct cur *c, struct gguf_file *f, uint64_t n_kv)
{
    f->kvs = km_calloc(n_kv ? n_kv : 1, sizeof *f->kvs);
    f->kv_hcap = hash_cap((int64_t)n_kv);
    f->kv_hash = km_calloc(f->kv_hcap, sizeof(int64_t));
    if (!f->kvs || !f->kv_hash)
        return km_fail(c->err, KM_ENOMEM, "%s: out of memory for %llu keys", f->path,
                       (unsigned long long)n_kv);
    for (uint64_t i = 0; i < n_kv; i++) {
        uint64_t at = c->pos;
        f->n_kv = (int64_t)i + 1;
        int rc = parse_kv(c, f, (int64_t)i);
        if (rc)
            return rc;
        int64_t dup = hash_insert(f->kv_hash, f->kv_hcap, f->kvs[i].key, (int64_t)i, kv_name, f);
        if (dup >= 0)
            return bad(c, at, "kv key", "duplicate key '%.64s' (first at kv[%lld])",
                       f->kvs[i].key, (long long)dup);
    }
    return KM_OK;
}

static int set_alignment(struct cur *c, struct gguf_file *f)
{
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    int64_t i = gguf_find_key(f, "general.alignment");
    if (i < 0)
        return KM_OK;
    uint64_t at = (uint64_t)(f->kvs[i].val - f->base);
    if (f->kvs[i].type != GGUF_TYPE_UINT32)
        return bad(c, at, "general.alignment", "type %s is not UINT32",
                   gguf_vtype_name(f->kvs[i].type));
    uint32_t a;
    memcpy(&a, f->kvs[i].val, 4);
    if (a == 0 || (a & (a - 1)) || a > (1u << 30))
        return bad(c, at, "general.alignment", "%u is not a power of two", a);
    f->alignment = a;
    return KM_OK;
}

/* ---- tensor infos ------------------------------------------------------ */

static int parse_dims(struct cur *c, struct gguf_tensor *t, const char *tf)
{
    char field[128];
    uint64_t at = c->pos;
    snprintf(field, sizeof field, "%s.n_dims", tf);
    int rc = rd_u32(c, &t->n_dims, field);
    if (rc)
        return rc;
    if (t->n_dims == 0 || t->n_dims > GGUF_MAX_DIMS)
        return bad(c, at, field, "%u is not in 1..%d", t->n_dims, GGUF_MAX_DIMS);
    uint64_t prod = 1;
    for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++)
        t->ne[d] = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        snprintf(field, sizeof field, "%s.ne[%u]", tf, d);
        at = c->pos;
        rc = rd_u64(c, &t->ne[d], field);
        if (rc)
            return rc;
        if (t->ne[d] == 0 || t->ne[d] > (uint64_t)INT64_MAX)
            return bad(c, at, field, "dimension %llu is not in 1..2^63-1",
                       (unsigned long long)t->ne[d]);
        if (prod > (uint64_t)INT64_MAX / t->ne[d])
            return bad(c, at, field, "element count overflows 2^63 (dimension %llu)",
                       (unsigned long long)t->ne[d]);
        prod *= t->ne[d];
    }
    t->n_elements = prod;
    t->n_rows = prod / t->ne[0];
    return KM_OK;
}

static int parse_type(struct cur *c, struct gguf_tensor *t, const char *tf)
{
    char field[128];
    uint64_t at = c->pos;
    snprintf(field, sizeof field, "%s.type", tf);
    int rc = rd_u32(c, &t->type, field);
    if (rc)
        return rc;
    uint32_t bs = quant_block_size(t->type);
    uint32_t ts = quant_type_size(t->type);
    if (bs == 0 || ts == 0)
        return bad(c, at, field, "%u is not a known ggml type", t->type);
    if (t->ne[0] % bs)
        return bad(c, at, field, "%s needs ne[0] to be a multiple of %u, got %llu",
                   quant_type_name(t->type), bs, (unsigned long long)t->ne[0]);
    t->row_size = t->ne[0] / bs * ts;
    if (t->row_size && t->n_rows > (uint64_t)INT64_MAX / t->row_size)
        return bad(c, at, field, "byte size overflows 2^63 (%llu rows of %llu bytes)",
                   (unsigned long long)t->n_rows, (unsigned long long)t->row_size);
    t->nbytes = t->row_size * t->n_rows;
    return KM_OK;
}

static int parse_tensor(struct cur *c, struct gguf_file *f, int64_t i)
{
    struct gguf_tensor *t = &f->tensors[i];
    char tf[96];
    char field[128];
    uint64_t at = c->pos;
    const char *p;
    uint64_t len;
    snprintf(tf, sizeof tf, "tensor[%lld]", (long long)i);
    snprintf(field, sizeof field, "%s.name", tf);
    int rc = rd_str(c, &p, &len, field);
    if (rc)
        return rc;
    if (len == 0 || len >= GGUF_MAX_NAME)
        return bad(c, at, field, "name length %llu is not in 1..%d",
                   (unsigned long long)len, GGUF_MAX_NAME - 1);
    if (memchr(p, 0, len))
        return bad(c, at, field, "name contains a NUL byte");
    t->name = km_strndup(p, len);
    if (!t->name)
        return km_fail(c->err, KM_ENOMEM, "%s: out of memory", f->path);
    snprintf(tf, sizeof tf, "tensor[%lld] '%s'", (long long)i, t->name);
    rc = parse_dims(c, t, tf);
    if (!rc)
        rc = parse_type(c, t, tf);
    if (rc)
        return rc;
    snprintf(field, sizeof field, "%s.offset", tf);
    at = c->pos;
    f->t_off_at[i] = at;
    rc = rd_u64(c, &t->offset, field);
    if (rc)
        return rc;
    if (t->offset % f->alignment)
        return bad(c, at, field, "offset %llu is not a multiple of the alignment %u",
                   (unsigned long long)t->offset, f->alignment);
    return KM_OK;
}

static int parse_tensors(struct cur *c, struct gguf_file *f, uint64_t n_t)
{
    f->tensors = km_calloc(n_t ? n_t : 1, sizeof *f->tensors);
    f->t_hcap = hash_cap((int64_t)n_t);
    f->t_hash = km_calloc(f->t_hcap, sizeof(int64_t));
    f->t_off_at = km_calloc(n_t ? n_t : 1, sizeof(uint64_t));
    if (!f->tensors || !f->t_hash || !f->t_off_at)
        return km_fail(c->err, KM_ENOMEM, "%s: out of memory for %llu tensors", f->path,
                       (unsigned long long)n_t);
    for (uint64_t i = 0; i < n_t; i++) {
        uint64_t at = c->pos;
        f->n_tensors = (int64_t)i + 1;
        int rc = parse_tensor(c, f, (int64_t)i);
        if (rc)
            return rc;
        int64_t dup = hash_insert(f->t_hash, f->t_hcap, f->tensors[i].name, (int64_t)i, t_name, f);
        if (dup >= 0) {
            char field[96];
            snprintf(field, sizeof field, "tensor[%lld].name", (long long)i);
            return bad(c, at, field, "duplicate tensor name '%s' (first at tensor[%lld])",
                       f->tensors[i].name, (long long)dup);
        }
    }
    return KM_OK;
}

/* Data section: starts at the aligned end of the tensor infos; every tensor
 * must lie inside it. */
static int check_data(struct cur *c, struct gguf_file *f)
{
    uint64_t a = f->alignment;
    uint64_t end_info = c->pos;
    f->data_off = end_info + (a - end_info % a) % a;
    if (f->n_tensors == 0) {
        if (f->data_off > f->size)
            f->data_off = f->size;
        return KM_OK;
    }
    if (f->data_off > f->size)
        return bad(c, end_info, "data section", "aligned start %llu is past the end of the file (%llu bytes)",
                   (unsigned long long)f->data_off, (unsigned long long)f->size);
    uint64_t data_len = f->size - f->data_off;
    for (int64_t i = 0; i < f->n_tensors; i++) {
        struct gguf_tensor *t = &f->tensors[i];
        if (t->offset > data_len || t->nbytes > data_len - t->offset) {
            char field[96];
            snprintf(field, sizeof field, "tensor[%lld] '%s'.offset", (long long)i, t->name);
            return bad(c, f->t_off_at[i], field, "offset %llu + size %llu exceeds the data section of %llu bytes",
                       (unsigned long long)t->offset, (unsigned long long)t->nbytes,
                       (unsigned long long)data_len);
        }
        t->data = f->base + f->data_off + t->offset;
    }
    return KM_OK;
}

/* ---- open / close ------------------------------------------------------ */

static int parse_all(struct gguf_file *f, struct km_err *err)
{
    struct cur c = {.f = f, .pos = 0, .err = err};
    uint64_t n_t = 0, n_kv = 0;
    int rc = parse_header(&c, f, &n_t, &n_kv);
    if (!rc)
        rc = parse_kvs(&c, f, n_kv);
    if (!rc)
        rc = set_alignment(&c, f);
    if (!rc)
        rc = parse_tensors(&c, f, n_t);
    if (!rc)
        rc = check_data(&c, f);
    return rc;
}

static int new_file(const char *name, struct gguf_file **out, struct km_err *err)
{
    struct gguf_file *f = km_calloc(1, sizeof *f);
    if (f)
        f->path = km_strdup(name ? name : "(memory)");
    if (!f || !f->path) {
        km_free(f);
        return km_fail(err, KM_ENOMEM, "out of memory opening %s", name ? name : "GGUF");
    }
    *out = f;
    return KM_OK;
}

/* Hand f to *out when rc is KM_OK; close it otherwise. Returns rc. */
static int finish_open(struct gguf_file *f, int rc, struct gguf_file **out)
{
    if (rc) {
        gguf_close(f);
        return rc;
    }
    *out = f;
    return KM_OK;
}

int gguf_open_mem(const void *data, size_t size, const char *name,
                  struct gguf_file **out, struct km_err *err)
{
    struct gguf_file *f = NULL;
    *out = NULL;
    int rc = new_file(name, &f, err);
    if (rc)
        return rc;
    f->base = data;
    f->size = size;
    return finish_open(f, parse_all(f, err), out);
}

int gguf_open(const char *path, struct gguf_file **out, struct km_err *err)
{
    struct gguf_file *f = NULL;
    struct stat st;
    *out = NULL;
    int rc = new_file(path, &f, err);
    if (rc)
        return rc;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = km_fail(err, errno == ENOENT ? KM_ENOTFOUND : KM_EIO, "%s: %s", path, strerror(errno));
        goto out;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        rc = km_fail(err, KM_EIO, "%s: not a regular file", path);
        goto out;
    }
    f->size = (uint64_t)st.st_size;
    if (f->size == 0) {
        rc = km_fail(err, KM_EFORMAT, "%s: field magic at byte 0: the file is empty", path);
        goto out;
    }
    void *m = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) {
        rc = km_fail(err, KM_EIO, "%s: mmap of %llu bytes failed: %s", path,
                     (unsigned long long)f->size, strerror(errno));
        goto out;
    }
    f->base = m;
    f->mapped = true;
    rc = parse_all(f, err);
out:
    if (fd >= 0)
        close(fd);
    return finish_open(f, rc, out);
}

void gguf_close(struct gguf_file *f)
{
    if (!f)
        return;
    for (int64_t i = 0; i < f->n_kv; i++) {
        km_free(f->kvs[i].key);
        km_free(f->kvs[i].str);
        km_free(f->kvs[i].str_offs);
    }
    for (int64_t i = 0; i < f->n_tensors; i++)
        km_free((char *)f->tensors[i].name);
    km_free(f->kvs);
    km_free(f->tensors);
    km_free(f->kv_hash);
    km_free(f->t_hash);
    km_free(f->t_off_at);
    if (f->mapped)
        munmap((void *)f->base, f->size);
    km_free(f->path);
    km_free(f);
}

/* ---- accessors --------------------------------------------------------- */

const char *gguf_path(const struct gguf_file *f) { return f->path; }
uint32_t gguf_version(const struct gguf_file *f) { return f->version; }
uint64_t gguf_file_size(const struct gguf_file *f) { return f->size; }
uint32_t gguf_alignment(const struct gguf_file *f) { return f->alignment; }
uint64_t gguf_data_offset(const struct gguf_file *f) { return f->data_off; }
const void *gguf_base(const struct gguf_file *f) { return f->base; }
int64_t gguf_n_kv(const struct gguf_file *f) { return f->n_kv; }
int64_t gguf_n_tensors(const struct gguf_file *f) { return f->n_tensors; }

int64_t gguf_find_key(const struct gguf_file *f, const char *key)
{
    return hash_find(f->kv_hash, f->kv_hcap, key, kv_name, f);
}

const char *gguf_kv_key(const struct gguf_file *f, int64_t i)
{
    return (i >= 0 && i < f->n_kv) ? f->kvs[i].key : NULL;
}

enum gguf_vtype gguf_kv_type(const struct gguf_file *f, int64_t i)
{
    return (i >= 0 && i < f->n_kv) ? (enum gguf_vtype)f->kvs[i].type : GGUF_TYPE_COUNT;
}

/* One numeric value widened three ways (fv also set for integers). */
struct num {
    int64_t iv;
    uint64_t uv;
    double fv;
    bool is_int;
};

/* Read one numeric element of type `t` at p. */
static bool read_num(uint32_t t, const uint8_t *p, struct num *n)
{
    union { uint8_t u8; int8_t i8; uint16_t u16; int16_t i16; uint32_t u32;
            int32_t i32; uint64_t u64; int64_t i64; float f32; double f64; } v;
    if (t >= GGUF_TYPE_COUNT || vtype_size[t] == 0)
        return false;
    memcpy(&v, p, vtype_size[t]);
    n->is_int = true;
    switch (t) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_BOOL: n->uv = v.u8; n->iv = v.u8; break;
    case GGUF_TYPE_INT8: n->iv = v.i8; n->uv = (uint64_t)v.i8; break;
    case GGUF_TYPE_UINT16: n->uv = v.u16; n->iv = v.u16; break;
    case GGUF_TYPE_INT16: n->iv = v.i16; n->uv = (uint64_t)v.i16; break;
    case GGUF_TYPE_UINT32: n->uv = v.u32; n->iv = v.u32; break;
    case GGUF_TYPE_INT32: n->iv = v.i32; n->uv = (uint64_t)v.i32; break;
    case GGUF_TYPE_UINT64: n->uv = v.u64; n->iv = v.u64 > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)v.u64; break;
    case GGUF_TYPE_INT64: n->iv = v.i64; n->uv = (uint64_t)v.i64; break;
    case GGUF_TYPE_FLOAT32: n->fv = v.f32; n->is_int = false; return true;
    case GGUF_TYPE_FLOAT64: n->fv = v.f64; n->is_int = false; return true;
    default: return false;
    }
    n->fv = (double)n->iv;
    return true;
}

/* The numeric value of kv i; false when i is out of range or not a number. */
static bool kv_num(const struct gguf_file *f, int64_t i, struct num *n)
{
    return i >= 0 && i < f->n_kv && read_num(f->kvs[i].type, f->kvs[i].val, n);
}

static bool is_signed_type(uint32_t t)
{
    return t == GGUF_TYPE_INT8 || t == GGUF_TYPE_INT16 || t == GGUF_TYPE_INT32 ||
           t == GGUF_TYPE_INT64;
}

bool gguf_kv_int(const struct gguf_file *f, int64_t i, int64_t *out)
{
    struct num n;
    if (!kv_num(f, i, &n) || !n.is_int)
        return false;
    *out = n.iv;
    return true;
}

bool gguf_kv_uint(const struct gguf_file *f, int64_t i, uint64_t *out)
{
    struct num n;
    if (!kv_num(f, i, &n) || !n.is_int)
        return false;
    if (is_signed_type(f->kvs[i].type) && n.iv < 0)
        return false;
    *out = n.uv;
    return true;
}

bool gguf_kv_float(const struct gguf_file *f, int64_t i, double *out)
{
    struct num n;
    if (!kv_num(f, i, &n) || n.is_int)
        return false;
    *out = n.fv;
    return true;
}

const char *gguf_kv_str(const struct gguf_file *f, int64_t i, uint64_t *len)
{
    if (i < 0 || i >= f->n_kv || f->kvs[i].type != GGUF_TYPE_STRING)
        return NULL;
    if (len)
        *len = f->kvs[i].str_len;
    return f->kvs[i].str;
}

const void *gguf_kv_raw(const struct gguf_file *f, int64_t i, uint64_t *len)
{
    if (i < 0 || i >= f->n_kv)
        return NULL;
    if (len)
        *len = f->kvs[i].raw_len;
    return f->kvs[i].raw;
}

static const struct kv *arr_kv(const struct gguf_file *f, int64_t i)
{
    if (i < 0 || i >= f->n_kv || f->kvs[i].type != GGUF_TYPE_ARRAY)
        return NULL;
    return &f->kvs[i];
}

enum gguf_vtype gguf_kv_arr_type(const struct gguf_file *f, int64_t i)
{
    const struct kv *kv = arr_kv(f, i);
    return kv ? (enum gguf_vtype)kv->arr_type : GGUF_TYPE_COUNT;
}

uint64_t gguf_kv_arr_len(const struct gguf_file *f, int64_t i)
{
    const struct kv *kv = arr_kv(f, i);
    return kv ? kv->arr_n : 0;
}

const void *gguf_kv_arr_data(const struct gguf_file *f, int64_t i)
{
    const struct kv *kv = arr_kv(f, i);
    return (kv && kv->arr_type != GGUF_TYPE_STRING) ? kv->val : NULL;
}

const char *gguf_kv_arr_str(const struct gguf_file *f, int64_t i, uint64_t j,
                            uint64_t *len)
{
    const struct kv *kv = arr_kv(f, i);
    if (!kv || kv->arr_type != GGUF_TYPE_STRING || j >= kv->arr_n)
        return NULL;
    uint64_t n;
    memcpy(&n, f->base + kv->str_offs[j], 8);
    if (len)
        *len = n;
    return (const char *)f->base + kv->str_offs[j] + 8;
}

/* Element j of numeric array kv i; false when out of range or not numeric. */
static bool arr_num(const struct gguf_file *f, int64_t i, uint64_t j, struct num *n)
{
    const struct kv *kv = arr_kv(f, i);
    if (!kv || kv->arr_type == GGUF_TYPE_STRING || j >= kv->arr_n)
        return false;
    return read_num(kv->arr_type, kv->val + j * vtype_size[kv->arr_type], n);
}

bool gguf_kv_arr_int(const struct gguf_file *f, int64_t i, uint64_t j,
                     int64_t *out)
{
    struct num n;
    if (!arr_num(f, i, j, &n) || !n.is_int)
        return false;
    *out = n.iv;
    return true;
}

bool gguf_kv_arr_float(const struct gguf_file *f, int64_t i, uint64_t j,
                       double *out)
{
    struct num n;
    if (!arr_num(f, i, j, &n))
        return false;
    *out = n.fv;
    return true;
}

/* ---- typed getters by key --------------------------------------------- */

static int lookup(const struct gguf_file *f, const char *key, int64_t *i,
                  struct km_err *err)
{
    *i = gguf_find_key(f, key);
    if (*i < 0)
        return km_fail(err, KM_ENOTFOUND, "%s: key %s not found", f->path, key);
    return KM_OK;
}

static int wrong_type(const struct gguf_file *f, const char *key, int64_t i,
                      const char *expected, struct km_err *err)
{
    return km_fail(err, KM_EFORMAT, "%s: key %s has type %s, expected %s", f->path, key,
                   gguf_vtype_name(f->kvs[i].type), expected);
}

static int get_uint(const struct gguf_file *f, const char *key, uint64_t max,
                    uint64_t *out, struct km_err *err)
{
    int64_t i;
    int rc = lookup(f, key, &i, err);
    if (rc)
        return rc;
    uint64_t v;
    if (!gguf_kv_uint(f, i, &v))
        return wrong_type(f, key, i, "a non-negative integer", err);
    if (v > max)
        return km_fail(err, KM_EFORMAT, "%s: key %s value %llu exceeds %llu", f->path, key,
                       (unsigned long long)v, (unsigned long long)max);
    *out = v;
    return KM_OK;
}

int gguf_get_u32(const struct gguf_file *f, const char *key, uint32_t *out,
                 struct km_err *err)
{
    uint64_t v = 0;
    int rc = get_uint(f, key, UINT32_MAX, &v, err);
    if (!rc)
        *out = (uint32_t)v;
    return rc;
}

int gguf_get_u64(const struct gguf_file *f, const char *key, uint64_t *out,
                 struct km_err *err)
{
    return get_uint(f, key, UINT64_MAX, out, err);
}

int gguf_get_i32(const struct gguf_file *f, const char *key, int32_t *out,
                 struct km_err *err)
{
    int64_t i, v;
    int rc = lookup(f, key, &i, err);
    if (rc)
        return rc;
    if (!gguf_kv_int(f, i, &v))
        return wrong_type(f, key, i, "an integer", err);
    if (v < INT32_MIN || v > INT32_MAX)
        return km_fail(err, KM_EFORMAT, "%s: key %s value %lld does not fit in int32",
                       f->path, key, (long long)v);
    *out = (int32_t)v;
    return KM_OK;
}

int gguf_get_f32(const struct gguf_file *f, const char *key, float *out,
                 struct km_err *err)
{
    int64_t i;
    double v;
    int rc = lookup(f, key, &i, err);
    if (rc)
        return rc;
    if (!gguf_kv_float(f, i, &v))
        return wrong_type(f, key, i, "FLOAT32", err);
    *out = (float)v;
    return KM_OK;
}

int gguf_get_bool(const struct gguf_file *f, const char *key, bool *out,
                  struct km_err *err)
{
    int64_t i;
    int rc = lookup(f, key, &i, err);
    if (rc)
        return rc;
    if (f->kvs[i].type != GGUF_TYPE_BOOL)
        return wrong_type(f, key, i, "BOOL", err);
    *out = f->kvs[i].val[0] != 0;
    return KM_OK;
}

int gguf_get_str(const struct gguf_file *f, const char *key, const char **out,
                 uint64_t *len, struct km_err *err)
{
    int64_t i;
    int rc = lookup(f, key, &i, err);
    if (rc)
        return rc;
    if (f->kvs[i].type != GGUF_TYPE_STRING)
        return wrong_type(f, key, i, "STRING", err);
    *out = f->kvs[i].str;
    if (len)
        *len = f->kvs[i].str_len;
    return KM_OK;
}

const struct gguf_tensor *gguf_tensor_at(const struct gguf_file *f, int64_t i)
{
    return (i >= 0 && i < f->n_tensors) ? &f->tensors[i] : NULL;
}

const struct gguf_tensor *gguf_find_tensor(const struct gguf_file *f,
                                           const char *name)
{
    int64_t i = hash_find(f->t_hash, f->t_hcap, name, t_name, f);
    return i >= 0 ? &f->tensors[i] : NULL;
}
