/* tok_bpe.c - byte-level BPE (tokenizer.ggml.model = gpt2).
 *
 * Per raw fragment: decode UTF-8 to code points (invalid bytes -> U+FFFD, as
 * llama.cpp), split into words with the pre-tokenizer, map each word's bytes
 * through the GPT-2 byte alphabet, then merge. Merging keeps the word's
 * symbols in a linked list and candidate pairs in a binary min-heap ordered
 * by (merge rank, left position); a popped pair is stale when either side
 * changed length since it was pushed. Symbols that are not vocabulary tokens
 * at the end fall back to one token per byte. With ignore_merges (Llama 3) a
 * word that is itself a token is emitted directly. */
#include "engine/tok_int.h"

#include "base/mem.h"
#include "engine/unicode.h"

#include <string.h>

uint32_t tok__byte_to_cp(unsigned char b)
{
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE)
        return b;
    if (b <= 0x20)
        return 256u + b;
    if (b <= 0xA0)
        return 256u + 0x21 + (b - 0x7F);
    return 256u + 67; /* 0xAD */
}

int tok__cp_to_byte(uint32_t cp)
{
    if (cp < 256)
        return tok__byte_to_cp((unsigned char)cp) == cp ? (int)cp : -1;
    if (cp >= 256 + 68)
        return -1;
    uint32_t k = cp - 256;
    if (k <= 0x20)
        return (int)k;
    if (k < 67)
        return (int)(0x7F + (k - 0x21));
    return 0xAD;
}

struct work {
    char *enc;          /* the word in the byte alphabet */
    size_t enc_len;
    struct tok__sym *syms;
    struct tok__heap heap;
    size_t cap;         /* bytes of the longest word the arrays fit */
};

static void try_pair(const struct tok_vocab *v, void *work, int32_t l, int32_t r)
{
    struct work *w = work;
    if (l < 0 || r < 0)
        return;
    const struct tok__sym *a = &w->syms[l], *b = &w->syms[r];
    int32_t rank = tok__rank(v, w->enc + a->off, a->len, w->enc + b->off, b->len);
    if (rank >= 0)
        tok__heap_push(&w->heap, (struct tok__cand){rank, l, r, a->len, b->len});
}

static int emit_symbols(const struct tok_vocab *v, struct work *w,
                        struct tok__ids *out, struct km_err *err)
{
    int rc = KM_OK;
    for (int32_t i = 0; i >= 0 && rc == KM_OK; i = w->syms[i].next) {
        const struct tok__sym *s = &w->syms[i];
        int32_t id = tok__find(v, w->enc + s->off, s->len);
        if (id != TOK_NULL) {
            rc = tok__push(out, id, err);
            continue;
        }
        for (uint32_t j = 0; j < s->len && rc == KM_OK;) { /* one char each */
            size_t n;
            uni_decode(w->enc + s->off + j, s->len - j, &n);
            int32_t t = tok__find(v, w->enc + s->off + j, n);
            if (t != TOK_NULL)
                rc = tok__push(out, t, err);
            j += (uint32_t)n;
        }
    }
    return rc;
}

static int merge_word(const struct tok_vocab *v, struct work *w,
                      struct tok__ids *out, struct km_err *err)
{
    int32_t n = 0;
    for (size_t off = 0; off < w->enc_len; n++) {
        size_t len;
        uni_decode(w->enc + off, w->enc_len - off, &len);
        w->syms[n] = (struct tok__sym){(uint32_t)off, (uint32_t)len, n - 1, n + 1};
        off += len;
    }
    w->syms[n - 1].next = -1;
    w->heap.n = 0;
    tok__merge(v, w->syms, n, &w->heap, try_pair, w);
    return emit_symbols(v, w, out, err);
}

/* Encode code points cps[0..n) into the byte alphabet in w->enc. */
static void encode_word(struct work *w, const uint32_t *cps, size_t n)
{
    w->enc_len = 0;
    for (size_t i = 0; i < n; i++) {
        char u8[4];
        size_t m = uni_encode(cps[i], u8);
        for (size_t j = 0; j < m; j++)
            w->enc_len += uni_encode(tok__byte_to_cp((unsigned char)u8[j]),
                                     w->enc + w->enc_len);
    }
}

static int work_fit(struct work *w, size_t n_cps, struct km_err *err)
{
    size_t bytes = n_cps * 4; /* UTF-8 bytes of the word, at most */
    if (bytes <= w->cap)
        return KM_OK;
    km_free(w->enc);
    km_free(w->syms);
    km_free(w->heap.v);
    w->cap = 0;
    w->enc = km_malloc(bytes * 2);
    w->syms = km_mallocarray(bytes, sizeof(*w->syms));
    w->heap.v = km_mallocarray(bytes * 3, sizeof(*w->heap.v));
    if (!w->enc || !w->syms || !w->heap.v)
        return km_fail(err, KM_ENOMEM, "tokenizer: out of memory for a %zu-byte word", bytes);
    w->cap = bytes;
    return KM_OK;
}

static int bpe_words(const struct tok_vocab *v, const uint32_t *cps,
                     const size_t *ends, size_t n_words, struct tok__ids *out,
                     struct km_err *err)
{
    struct work w = {0};
    int rc = KM_OK;
    size_t start = 0;
    for (size_t k = 0; k < n_words && rc == KM_OK; k++) {
        size_t n = ends[k] - start;
        rc = work_fit(&w, n, err);
        if (rc != KM_OK)
            break;
        encode_word(&w, cps + start, n);
        start = ends[k];
        int32_t id = v->ignore_merges ? tok__find(v, w.enc, w.enc_len) : TOK_NULL;
        if (id != TOK_NULL)
            rc = tok__push(out, id, err);
        else
            rc = merge_word(v, &w, out, err);
    }
    km_free(w.enc);
    km_free(w.syms);
    km_free(w.heap.v);
    return rc;
}

static size_t split(const struct tok_vocab *v, const uint32_t *cps, size_t n,
                    size_t *ends, size_t *tmp)
{
    if (v->pre == TOK_PRE_LLAMA3)
        return tok__split_llama3(cps, n, ends);
    if (v->pre == TOK_PRE_DEFAULT)
        return tok__split_default(cps, n, ends, tmp);
    return tok__split_gpt2(cps, n, ends);
}

int tok__bpe(const struct tok_vocab *v, const char *s, size_t len,
             struct tok__ids *out, struct km_err *err)
{
    uint32_t *cps = km_mallocarray(len, sizeof(*cps));
    size_t *ends = km_mallocarray(len, sizeof(*ends));
    size_t *tmp = v->pre == TOK_PRE_DEFAULT ? km_mallocarray(len, sizeof(*tmp)) : NULL;
    int rc = KM_OK;
    if (!cps || !ends || (v->pre == TOK_PRE_DEFAULT && !tmp)) {
        rc = km_fail(err, KM_ENOMEM, "tokenizer: out of memory for %zu bytes of text", len);
        goto out;
    }
    size_t n = 0;
    for (size_t off = 0; off < len; n++) {
        size_t k;
        uint32_t c = uni_decode(s + off, len - off, &k);
        cps[n] = c == UNI_BAD ? UNI_REPLACEMENT : c;
        off += k;
    }
    size_t n_words = split(v, cps, n, ends, tmp);
    rc = bpe_words(v, cps, ends, n_words, out, err);
out:
    km_free(cps);
    km_free(ends);
    km_free(tmp);
    return rc;
}
