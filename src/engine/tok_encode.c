/* tok_encode.c - tok_encode: special-token partitioning, then the model's
 * tokenizer on each raw-text fragment (llama.cpp's tokenize +
 * tokenizer_st_partition).
 *
 * Partitioning is llama.cpp's "for each special token, longest first, split
 * every raw fragment at its leftmost non-overlapping occurrences". It is
 * computed here in one pass: every occurrence of every special text is found
 * (hash lookups of the distinct special lengths at positions whose first byte
 * can start one), then occurrences are claimed in (length desc, id asc,
 * position asc) order if all their bytes are still unclaimed - the same
 * result without scanning the text once per special token. */
#include "engine/tok_int.h"

#include "base/mem.h"

#include <stdlib.h>
#include <string.h>

struct occ {
    size_t pos;
    uint32_t len;
    int32_t id;
};

struct occs {
    struct occ *v;
    size_t n, cap;
};

static int occ_push(struct occs *o, size_t pos, uint32_t len, int32_t id,
                    struct km_err *err)
{
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 16;
        struct occ *nv = km_realloc(o->v, cap * sizeof(*nv));
        if (!nv)
            return km_fail(err, KM_ENOMEM, "tokenizer: out of memory for special-token matches");
        o->v = nv;
        o->cap = cap;
    }
    o->v[o->n++] = (struct occ){pos, len, id};
    return KM_OK;
}

static int cmp_occ(const void *a, const void *b)
{
    const struct occ *x = a, *y = b;
    if (x->len != y->len)
        return x->len > y->len ? -1 : 1;
    if (x->id != y->id)
        return x->id < y->id ? -1 : 1;
    return (x->pos > y->pos) - (x->pos < y->pos);
}

static int cmp_pos(const void *a, const void *b)
{
    const struct occ *x = a, *y = b;
    return (x->pos > y->pos) - (x->pos < y->pos);
}

static bool matchable(const struct tok_vocab *v, int32_t id, bool parse_special)
{
    uint32_t a = v->tok[id].attr;
    if (a & TOK_ATTR_USER_DEFINED)
        return true;
    return parse_special && (a & (TOK_ATTR_CONTROL | TOK_ATTR_UNKNOWN));
}

static int find_occurrences(const struct tok_vocab *v, const char *s,
                            size_t len, bool parse_special, struct occs *o,
                            struct km_err *err)
{
    for (size_t p = 0; p < len; p++) {
        if (!v->special_first[(unsigned char)s[p]])
            continue;
        for (size_t k = 0; k < v->n_special_lens; k++) {
            uint32_t l = v->special_lens[k];
            if (l > len - p)
                continue;
            int32_t id = tok__find(v, s + p, l);
            if (id == TOK_NULL || !matchable(v, id, parse_special))
                continue;
            int rc = occ_push(o, p, l, id, err);
            if (rc != KM_OK)
                return rc;
        }
    }
    return KM_OK;
}

/* Claim occurrences; on return o->v[0..o->n) holds the accepted ones sorted
 * by position. */
static int claim(struct occs *o, size_t len, struct km_err *err)
{
    if (o->n == 0)
        return KM_OK;
    unsigned char *used = km_calloc(len, 1);
    if (!used)
        return km_fail(err, KM_ENOMEM, "tokenizer: out of memory for %zu bytes of text", len);
    qsort(o->v, o->n, sizeof(*o->v), cmp_occ);
    size_t kept = 0;
    for (size_t i = 0; i < o->n; i++) {
        struct occ c = o->v[i];
        if (memchr(used + c.pos, 1, c.len))
            continue;
        memset(used + c.pos, 1, c.len);
        o->v[kept++] = c;
    }
    o->n = kept;
    km_free(used);
    qsort(o->v, o->n, sizeof(*o->v), cmp_pos);
    return KM_OK;
}

/* SentencePiece: a raw fragment gets a dummy ' ' prefix when the vocabulary
 * wants one and the fragment starts the text or follows a special token. */
static int spm_fragment(const struct tok_vocab *v, const char *s, size_t len,
                        bool prev_special, struct tok__ids *out,
                        struct km_err *err)
{
    if (!(v->add_space_prefix && prev_special))
        return tok__spm(v, s, len, out, err);
    char *t = km_malloc(len + 1);
    if (!t)
        return km_fail(err, KM_ENOMEM, "tokenizer: out of memory for %zu bytes of text", len);
    t[0] = ' ';
    memcpy(t + 1, s, len);
    int rc = tok__spm(v, t, len + 1, out, err);
    km_free(t);
    return rc;
}

static int raw_fragment(const struct tok_vocab *v, const char *s, size_t len,
                        bool prev_special, struct tok__ids *out,
                        struct km_err *err)
{
    switch (v->model) {
    case TOK_MODEL_SPM:
        return spm_fragment(v, s, len, prev_special, out, err);
    case TOK_MODEL_BPE:
        return tok__bpe(v, s, len, out, err);
    case TOK_MODEL_WPM:
        return tok__wpm(v, s, len, out, err);
    }
    return km_fail(err, KM_ESTATE, "tokenizer: unknown model %d", (int)v->model);
}

static int encode_fragments(const struct tok_vocab *v, const char *s,
                            size_t len, const struct occs *o,
                            struct tok__ids *out, struct km_err *err)
{
    size_t at = 0;
    bool prev_special = true;
    int rc = KM_OK;
    for (size_t i = 0; i <= o->n && rc == KM_OK; i++) {
        size_t end = i < o->n ? o->v[i].pos : len;
        if (end > at) {
            rc = raw_fragment(v, s + at, end - at, prev_special, out, err);
            prev_special = false;
        }
        if (rc == KM_OK && i < o->n) {
            rc = tok__push(out, o->v[i].id, err);
            prev_special = true;
            at = o->v[i].pos + o->v[i].len;
        }
    }
    return rc;
}

static int add_first(const struct tok_vocab *v, bool add_special,
                     struct tok__ids *out, struct km_err *err)
{
    bool want = v->model == TOK_MODEL_WPM || v->add_bos;
    if (!add_special || !want)
        return KM_OK;
    if (v->bos == TOK_NULL)
        return km_fail(err, KM_EFORMAT, "tokenizer: the vocabulary asks for a BOS token but has no bos_token_id");
    return tok__push(out, v->bos, err);
}

static int add_last(const struct tok_vocab *v, bool add_special,
                    struct tok__ids *out, struct km_err *err)
{
    int32_t id = v->model == TOK_MODEL_WPM ? v->sep : v->eos;
    bool want = v->model == TOK_MODEL_WPM || v->add_eos;
    if (!add_special || !want)
        return KM_OK;
    if (id == TOK_NULL)
        return km_fail(err, KM_EFORMAT, "tokenizer: the vocabulary asks for an EOS/SEP token but has none");
    return tok__push(out, id, err);
}

int tok_encode(const struct tok_vocab *v, const char *text, size_t len,
               bool add_special, bool parse_special, int32_t **ids, size_t *n,
               struct km_err *err)
{
    struct tok__ids out = {0};
    struct occs o = {0};
    int rc;
    *ids = NULL;
    *n = 0;
    if (len > TOK_MAX_TEXT)
        return km_fail(err, KM_ERANGE, "tokenizer: text of %zu bytes exceeds the limit of %zu", len, TOK_MAX_TEXT);
    if (len > 0 && !text)
        return km_fail(err, KM_EINVAL, "tokenizer: NULL text with length %zu", len);
    rc = add_first(v, add_special, &out, err);
    if (rc == KM_OK && len > 0)
        rc = find_occurrences(v, text, len, parse_special, &o, err);
    if (rc == KM_OK)
        rc = claim(&o, len, err);
    if (rc == KM_OK && len > 0)
        rc = encode_fragments(v, text, len, &o, &out, err);
    if (rc == KM_OK)
        rc = add_last(v, add_special, &out, err);
    km_free(o.v);
    if (rc != KM_OK) {
        km_free(out.v);
        return rc;
    }
    *ids = out.v;
    *n = out.n;
    return KM_OK;
}
