/* tok.c - vocabulary loading from GGUF metadata, lookups, properties.
 *
 * The vocabulary keeps every token text in one pool with an open-addressing
 * hash map (text -> id); BPE merges get a second map ("left right" -> rank)
 * hashed without building the joined string. Defaults for missing keys follow
 * llama.cpp (see docs/engine-tokenizers.md). */
#include "engine/tok_int.h"

#include "base/mem.h"
#include "base/log.h"
#include "engine/gguf.h"
#include "engine/unicode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FNV_OFF 0xcbf29ce484222325ull
#define FNV_PRIME 0x100000001b3ull

static uint64_t fnv(uint64_t h, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= FNV_PRIME;
    }
    return h;
}

static uint64_t table_size(size_t n)
{
    uint64_t sz = 16;
    while (sz < (uint64_t)n * 2)
        sz <<= 1;
    return sz;
}

int tok__push(struct tok__ids *ids, int32_t id, struct km_err *err)
{
    if (ids->n == ids->cap) {
        size_t cap = ids->cap ? ids->cap * 2 : 64;
        int32_t *nv = km_realloc(ids->v, cap * sizeof(*nv));
        if (!nv)
            return km_fail(err, KM_ENOMEM, "tokenizer: out of memory for %zu token ids", cap);
        ids->v = nv;
        ids->cap = cap;
    }
    ids->v[ids->n++] = id;
    return KM_OK;
}

int32_t tok__find(const struct tok_vocab *v, const char *s, size_t len)
{
    uint64_t i = fnv(FNV_OFF, s, len) & v->mask;
    for (;;) {
        int32_t id = v->slots[i];
        if (id == TOK_NULL)
            return TOK_NULL;
        const struct tok__entry *e = &v->tok[id];
        if (e->len == len && memcmp(v->pool + e->off, s, len) == 0)
            return id;
        i = (i + 1) & v->mask;
    }
}

int32_t tok__rank(const struct tok_vocab *v, const char *l, size_t ll,
                  const char *r, size_t rl)
{
    if (!v->mslots)
        return -1;
    uint64_t h = fnv(fnv(fnv(FNV_OFF, l, ll), " ", 1), r, rl);
    for (uint64_t i = h & v->mmask;; i = (i + 1) & v->mmask) {
        int32_t rank = v->mslots[i];
        if (rank < 0)
            return -1;
        const struct tok__merge *m = &v->merges[rank];
        const char *t = v->mpool + m->off;
        if (m->llen == ll && m->rlen == rl && memcmp(t, l, ll) == 0 &&
            memcmp(t + ll + 1, r, rl) == 0)
            return rank;
    }
}

void tok_free(struct tok_vocab *v)
{
    if (!v)
        return;
    km_free(v->tok);
    km_free(v->pool);
    km_free(v->slots);
    km_free(v->mpool);
    km_free(v->merges);
    km_free(v->mslots);
    km_free(v->special);
    km_free(v->special_lens);
    km_free(v->eog);
    km_free(v->chat_template);
    km_free(v);
}

/* ---- loading ------------------------------------------------------------ */

static int64_t arr_key(const struct gguf_file *f, const char *key,
                       enum gguf_vtype want, int64_t n, struct km_err *err)
{
    int64_t i = gguf_find_key(f, key);
    if (i < 0)
        return -1;
    enum gguf_vtype t = gguf_kv_arr_type(f, i);
    bool num = want != GGUF_TYPE_STRING;
    if (gguf_kv_type(f, i) != GGUF_TYPE_ARRAY ||
        (num ? t == GGUF_TYPE_STRING : t != GGUF_TYPE_STRING)) {
        km_fail(err, KM_EFORMAT, "tokenizer: key %s is not an array of %s", key,
                num ? "numbers" : "strings");
        return -2;
    }
    if (n >= 0 && (int64_t)gguf_kv_arr_len(f, i) != n) {
        km_fail(err, KM_EFORMAT, "tokenizer: key %s has %llu entries but tokenizer.ggml.tokens has %lld",
                key, (unsigned long long)gguf_kv_arr_len(f, i), (long long)n);
        return -2;
    }
    return i;
}

static int load_tokens(struct tok_vocab *v, const struct gguf_file *f,
                       struct km_err *err)
{
    int64_t k = arr_key(f, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, -1, err);
    if (k == -1)
        return km_fail(err, KM_EFORMAT, "tokenizer: key tokenizer.ggml.tokens is missing");
    if (k < 0)
        return KM_EFORMAT;
    uint64_t n = gguf_kv_arr_len(f, k), total = 0, len;
    if (n == 0 || n > INT32_MAX)
        return km_fail(err, KM_EFORMAT, "tokenizer: tokenizer.ggml.tokens has %llu entries", (unsigned long long)n);
    for (uint64_t j = 0; j < n; j++) {
        gguf_kv_arr_str(f, k, j, &len);
        if (len > TOK_MAX_TOKEN_LEN)
            return km_fail(err, KM_EFORMAT, "tokenizer: token %llu is %llu bytes long (limit %d)",
                           (unsigned long long)j, (unsigned long long)len, TOK_MAX_TOKEN_LEN);
        total += len + 1;
    }
    if (total > UINT32_MAX)
        return km_fail(err, KM_EFORMAT, "tokenizer: token texts total %llu bytes", (unsigned long long)total);
    v->n = (int32_t)n;
    v->tok = km_calloc(n, sizeof(*v->tok));
    v->pool = km_malloc(total);
    if (!v->tok || !v->pool)
        return km_fail(err, KM_ENOMEM, "tokenizer: out of memory for %llu tokens", (unsigned long long)n);
    uint32_t off = 0;
    for (uint64_t j = 0; j < n; j++) {
        const char *s = gguf_kv_arr_str(f, k, j, &len);
        memcpy(v->pool + off, s, len);
        v->pool[off + len] = '\0';
        v->tok[j] = (struct tok__entry){.off = off, .len = (uint32_t)len,
                                        .attr = TOK_ATTR_NORMAL};
        if (len > v->max_token_len)
            v->max_token_len = len;
        off += (uint32_t)len + 1;
    }
    return KM_OK;
}

static uint32_t attr_of_type(int64_t t)
{
    switch (t) {
    case 2: return TOK_ATTR_UNKNOWN;
    case 3: return TOK_ATTR_CONTROL;
    case 4: return TOK_ATTR_USER_DEFINED;
    case 5: return TOK_ATTR_UNUSED;
    case 6: return TOK_ATTR_BYTE;
    default: return TOK_ATTR_NORMAL;
    }
}

static int load_scores_types(struct tok_vocab *v, const struct gguf_file *f,
                             struct km_err *err)
{
    int64_t ks = arr_key(f, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, v->n, err);
    int64_t kt = arr_key(f, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, v->n, err);
    if (ks < -1 || kt < -1)
        return KM_EFORMAT;
    for (int32_t j = 0; j < v->n; j++) {
        double d;
        int64_t t;
        if (ks >= 0 && gguf_kv_arr_float(f, ks, (uint64_t)j, &d))
            v->tok[j].score = (float)d;
        if (kt >= 0 && gguf_kv_arr_int(f, kt, (uint64_t)j, &t))
            v->tok[j].attr = attr_of_type(t);
    }
    return KM_OK;
}

static int build_map(struct tok_vocab *v, struct km_err *err)
{
    uint64_t sz = table_size((size_t)v->n);
    v->slots = km_mallocarray(sz, sizeof(*v->slots));
    if (!v->slots)
        return km_fail(err, KM_ENOMEM, "tokenizer: out of memory for the vocabulary map");
    memset(v->slots, 0xff, sz * sizeof(*v->slots));
    v->mask = sz - 1;
    for (int32_t id = 0; id < v->n; id++) {
        const struct tok__entry *e = &v->tok[id];
        uint64_t i = fnv(FNV_OFF, v->pool + e->off, e->len) & v->mask;
        for (;; i = (i + 1) & v->mask) {
            int32_t o = v->slots[i];
            if (o == TOK_NULL)
                break;
            if (v->tok[o].len == e->len &&
                memcmp(v->pool + v->tok[o].off, v->pool + e->off, e->len) == 0)
                break; /* duplicate text: the later id wins, as in llama.cpp */
        }
        v->slots[i] = id;
    }
    return KM_OK;
}

static int load_merges(struct tok_vocab *v, const struct gguf_file *f,
                       struct km_err *err)
{
    int64_t k = arr_key(f, "tokenizer.ggml.merges", GGUF_TYPE_STRING, -1, err);
    if (k == -1)
        return km_fail(err, KM_EFORMAT, "tokenizer: key tokenizer.ggml.merges is missing (required for model gpt2)");
    if (k < 0)
        return KM_EFORMAT;
    uint64_t n = gguf_kv_arr_len(f, k), total = 0, len;
    if (n > INT32_MAX / 2)
        return km_fail(err, KM_EFORMAT, "tokenizer: %llu merges", (unsigned long long)n);
    for (uint64_t j = 0; j < n; j++) {
        gguf_kv_arr_str(f, k, j, &len);
        total += len + 1;
    }
    if (total > UINT32_MAX)
        return km_fail(err, KM_EFORMAT, "tokenizer: merges total %llu bytes", (unsigned long long)total);
    uint64_t sz = table_size(n);
    v->mpool = km_malloc(total ? total : 1);
    v->merges = km_calloc(n ? n : 1, sizeof(*v->merges));
    v->mslots = km_mallocarray(sz, sizeof(*v->mslots));
    if (!v->mpool || !v->merges || !v->mslots)
        return km_fail(err, KM_ENOMEM, "tokenizer: out of memory for %llu merges", (unsigned long long)n);
    memset(v->mslots, 0xff, sz * sizeof(*v->mslots));
    v->mmask = sz - 1;
    uint32_t off = 0;
    for (uint64_t j = 0; j < n; j++) {
        const char *s = gguf_kv_arr_str(f, k, j, &len);
        const char *sp = len > 1 ? memchr(s + 1, ' ', len - 1) : NULL;
        if (!sp)
            return km_fail(err, KM_EFORMAT, "tokenizer: merge %llu (\"%.*s\") has no space separating two tokens",
                           (unsigned long long)j, (int)(len > 64 ? 64 : len), s);
        memcpy(v->mpool + off, s, len);
        v->mpool[off + len] = '\0';
        uint32_t ll = (uint32_t)(sp - s);
        v->merges[j] = (struct tok__merge){off, ll, (uint32_t)len - ll - 1};
        if (tok__rank(v, s, ll, sp + 1, len - ll - 1) < 0) { /* first rank wins */
            uint64_t i = fnv(FNV_OFF, s, len) & v->mmask;
            while (v->mslots[i] >= 0)
                i = (i + 1) & v->mmask;
            v->mslots[i] = (int32_t)j;
        }
        off += (uint32_t)len + 1;
    }
    v->n_merges = (int32_t)n;
    return KM_OK;
}

static int load_model(struct tok_vocab *v, const struct gguf_file *f,
                      struct km_err *err)
{
    const char *model = NULL, *pre = NULL;
    struct km_err e2;
    if (gguf_get_str(f, "tokenizer.ggml.model", &model, NULL, err) != KM_OK)
        return km_fail(err, KM_EFORMAT, "tokenizer: key tokenizer.ggml.model is missing or not a string");
    if (strcmp(model, "llama") == 0)
        v->model = TOK_MODEL_SPM;
    else if (strcmp(model, "gpt2") == 0)
        v->model = TOK_MODEL_BPE;
    else if (strcmp(model, "bert") == 0)
        v->model = TOK_MODEL_WPM;
    else
        return km_fail(err, KM_EUNSUPPORTED, "tokenizer: tokenizer.ggml.model \"%s\" is not supported (llama, gpt2, bert are)", model);
    if (v->model != TOK_MODEL_BPE)
        return KM_OK;
    v->pre = TOK_PRE_DEFAULT;
    if (gguf_get_str(f, "tokenizer.ggml.pre", &pre, NULL, &e2) != KM_OK)
        return KM_OK;
    if (!strcmp(pre, "llama-bpe") || !strcmp(pre, "llama3") || !strcmp(pre, "llama-v3"))
        v->pre = TOK_PRE_LLAMA3;
    else if (strcmp(pre, "gpt-2") == 0)
        v->pre = TOK_PRE_GPT2;
    else if (strcmp(pre, "default") != 0) /* as llama.cpp: warn, use default */
        km_log(KM_LOG_WARN, "tokenizer: pre-tokenizer tokenizer.ggml.pre \"%s\" is not "
               "known (llama-bpe, llama3, llama-v3, gpt-2, default are); using \"default\", "
               "token ids may differ from the model's own tokenizer", pre);
    v->ignore_merges = v->pre == TOK_PRE_LLAMA3;
    return KM_OK;
}

static int32_t get_id(const struct tok_vocab *v, const struct gguf_file *f,
                      const char *key, int32_t def)
{
    uint32_t u;
    struct km_err e;
    if (gguf_get_u32(f, key, &u, &e) != KM_OK)
        return def < v->n ? def : TOK_NULL;
    return u < (uint32_t)v->n ? (int32_t)u : TOK_NULL;
}

static bool get_flag(const struct gguf_file *f, const char *key, bool def)
{
    bool b;
    struct km_err e;
    return gguf_get_bool(f, key, &b, &e) == KM_OK ? b : def;
}

static int32_t first_present(const struct tok_vocab *v, const char *const *texts)
{
    for (size_t i = 0; texts[i]; i++) {
        int32_t id = tok__find(v, texts[i], strlen(texts[i]));
        if (id != TOK_NULL)
            return id;
    }
    return TOK_NULL;
}

static void load_specials(struct tok_vocab *v, const struct gguf_file *f)
{
    static const char *const eot_texts[] = {"<|eot_id|>", "<|im_end|>", "<|end|>",
        "<end_of_turn>", "<|endoftext|>", "<EOT>", NULL};
    static const char *const eom_texts[] = {"<|eom_id|>", NULL};
    bool spm = v->model == TOK_MODEL_SPM, wpm = v->model == TOK_MODEL_WPM;
    v->bos = get_id(v, f, "tokenizer.ggml.bos_token_id", spm ? 1 : TOK_NULL);
    v->eos = get_id(v, f, "tokenizer.ggml.eos_token_id", spm ? 2 : TOK_NULL);
    v->unk = get_id(v, f, "tokenizer.ggml.unknown_token_id", spm ? 0 : wpm ? 100 : TOK_NULL);
    v->pad = get_id(v, f, "tokenizer.ggml.padding_token_id", wpm ? 0 : TOK_NULL);
    v->sep = get_id(v, f, "tokenizer.ggml.seperator_token_id", wpm ? 102 : TOK_NULL);
    if (wpm)
        v->bos = get_id(v, f, "tokenizer.ggml.cls_token_id", v->bos != TOK_NULL ? v->bos : 101);
    v->eot = get_id(v, f, "tokenizer.ggml.eot_token_id", TOK_NULL);
    if (v->eot == TOK_NULL)
        v->eot = first_present(v, eot_texts);
    v->eom = get_id(v, f, "tokenizer.ggml.eom_token_id", TOK_NULL);
    if (v->eom == TOK_NULL)
        v->eom = first_present(v, eom_texts);
    v->add_bos = get_flag(f, "tokenizer.ggml.add_bos_token",
                          spm || wpm || v->pre == TOK_PRE_LLAMA3);
    v->add_eos = get_flag(f, "tokenizer.ggml.add_eos_token", false);
    v->add_space_prefix = get_flag(f, "tokenizer.ggml.add_space_prefix", spm);
}

static void load_byte_tokens(struct tok_vocab *v)
{
    for (int b = 0; b < 256; b++) {
        char buf[8];
        size_t n;
        int32_t id = TOK_NULL;
        if (v->model == TOK_MODEL_SPM) {
            snprintf(buf, sizeof(buf), "<0x%02X>", b);
            id = tok__find(v, buf, 6);
            if (id == TOK_NULL) {
                buf[0] = (char)b;
                id = tok__find(v, buf, 1);
            }
        } else if (v->model == TOK_MODEL_BPE) {
            n = uni_encode(tok__byte_to_cp((unsigned char)b), buf);
            id = tok__find(v, buf, n);
        }
        v->byte_tok[b] = id;
    }
}

static int cmp_special(const void *a, const void *b, void *ctx)
{
    const struct tok_vocab *v = ctx;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    if (v->tok[x].len != v->tok[y].len)
        return v->tok[x].len > v->tok[y].len ? -1 : 1;
    return (x > y) - (x < y);
}

static int build_specials(struct tok_vocab *v, struct km_err *err)
{
    const uint32_t want = TOK_ATTR_CONTROL | TOK_ATTR_USER_DEFINED | TOK_ATTR_UNKNOWN;
    size_t n = 0;
    for (int32_t id = 0; id < v->n; id++)
        n += (v->tok[id].attr & want) && v->tok[id].len > 0;
    v->special = km_calloc(n ? n : 1, sizeof(*v->special));
    v->special_lens = km_calloc(n ? n : 1, sizeof(*v->special_lens));
    if (!v->special || !v->special_lens)
        return km_fail(err, KM_ENOMEM, "tokenizer: out of memory for %zu special tokens", n);
    for (int32_t id = 0; id < v->n; id++) {
        if ((v->tok[id].attr & want) && v->tok[id].len > 0) {
            v->special[v->n_special++] = id;
            v->special_first[(unsigned char)v->pool[v->tok[id].off]] = true;
        }
    }
    qsort_r(v->special, n, sizeof(*v->special), cmp_special, v);
    for (size_t i = 0; i < n; i++) {
        uint32_t len = v->tok[v->special[i]].len;
        if (v->n_special_lens == 0 || v->special_lens[v->n_special_lens - 1] != len)
            v->special_lens[v->n_special_lens++] = len;
    }
    return KM_OK;
}

static int build_eog(struct tok_vocab *v, struct km_err *err)
{
    static const char *const texts[] = {"<|eot_id|>", "<|eom_id|>", "<|end_of_text|>",
        "<end_of_turn>", "<|endoftext|>", "<|im_end|>", "<|end|>", "</s>", "<eos>",
        "<EOT>", NULL};
    int32_t fixed[3] = {v->eos, v->eot, v->eom};
    for (size_t i = 0; i < 3; i++) {
        if (fixed[i] != TOK_NULL)
            v->tok[fixed[i]].attr |= TOK_ATTR_EOG;
    }
    for (size_t i = 0; texts[i]; i++) {
        int32_t id = tok__find(v, texts[i], strlen(texts[i]));
        if (id == TOK_NULL)
            continue;
        v->tok[id].attr |= TOK_ATTR_EOG;
        if (!(v->tok[id].attr & (TOK_ATTR_CONTROL | TOK_ATTR_USER_DEFINED)))
            v->tok[id].attr = TOK_ATTR_CONTROL | TOK_ATTR_EOG; /* as llama.cpp */
    }
    size_t n = 0;
    for (int32_t id = 0; id < v->n; id++)
        n += (v->tok[id].attr & TOK_ATTR_EOG) != 0;
    v->eog = km_calloc(n ? n : 1, sizeof(*v->eog));
    if (!v->eog)
        return km_fail(err, KM_ENOMEM, "tokenizer: out of memory");
    for (int32_t id = 0; id < v->n; id++) {
        if (v->tok[id].attr & TOK_ATTR_EOG)
            v->eog[v->n_eog++] = id;
    }
    return KM_OK;
}

static int load_template(struct tok_vocab *v, const struct gguf_file *f,
                         struct km_err *err)
{
    const char *t = NULL;
    struct km_err e2;
    if (gguf_get_str(f, "tokenizer.chat_template", &t, NULL, &e2) != KM_OK)
        return KM_OK;
    v->chat_template = km_strdup(t);
    if (!v->chat_template)
        return km_fail(err, KM_ENOMEM, "tokenizer: out of memory for the chat template");
    return KM_OK;
}

int tok_load(const struct gguf_file *f, struct tok_vocab **out,
             struct km_err *err)
{
    int rc;
    struct tok_vocab *v = km_calloc(1, sizeof(*v));
    *out = NULL;
    if (!v)
        return km_fail(err, KM_ENOMEM, "tokenizer: out of memory");
    rc = load_model(v, f, err);
    if (rc == KM_OK)
        rc = load_tokens(v, f, err);
    if (rc == KM_OK)
        rc = load_scores_types(v, f, err);
    if (rc == KM_OK)
        rc = build_map(v, err);
    if (rc == KM_OK && v->model == TOK_MODEL_BPE)
        rc = load_merges(v, f, err);
    if (rc != KM_OK)
        goto out;
    load_specials(v, f);
    load_byte_tokens(v);
    rc = build_eog(v, err);
    if (rc == KM_OK)
        rc = build_specials(v, err);
    if (rc == KM_OK)
        rc = load_template(v, f, err);
out:
    if (rc != KM_OK) {
        tok_free(v);
        return rc;
    }
    *out = v;
    return KM_OK;
}

/* ---- properties --------------------------------------------------------- */

enum tok_model tok_model(const struct tok_vocab *v) { return v->model; }
enum tok_pre tok_pre(const struct tok_vocab *v) { return v->pre; }
int32_t tok_n_vocab(const struct tok_vocab *v) { return v->n; }
int32_t tok_bos(const struct tok_vocab *v) { return v->bos; }
int32_t tok_eos(const struct tok_vocab *v) { return v->eos; }
int32_t tok_eot(const struct tok_vocab *v) { return v->eot; }
int32_t tok_unk(const struct tok_vocab *v) { return v->unk; }
int32_t tok_pad(const struct tok_vocab *v) { return v->pad; }
int32_t tok_sep(const struct tok_vocab *v) { return v->sep; }
bool tok_add_bos(const struct tok_vocab *v) { return v->add_bos; }
bool tok_add_eos(const struct tok_vocab *v) { return v->add_eos; }
bool tok_add_space_prefix(const struct tok_vocab *v) { return v->add_space_prefix; }
const char *tok_chat_template(const struct tok_vocab *v) { return v->chat_template; }

uint32_t tok_attr(const struct tok_vocab *v, int32_t id)
{
    return id >= 0 && id < v->n ? v->tok[id].attr : 0;
}

bool tok_is_eog(const struct tok_vocab *v, int32_t id)
{
    return (tok_attr(v, id) & TOK_ATTR_EOG) != 0;
}

const int32_t *tok_eog_ids(const struct tok_vocab *v, size_t *n)
{
    *n = v->n_eog;
    return v->eog;
}

const char *tok_text(const struct tok_vocab *v, int32_t id, size_t *len)
{
    if (id < 0 || id >= v->n)
        return NULL;
    if (len)
        *len = v->tok[id].len;
    return v->pool + v->tok[id].off;
}

int32_t tok_find(const struct tok_vocab *v, const char *text, size_t len)
{
    return tok__find(v, text, len);
}
