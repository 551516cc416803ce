/* tok_spm.c - SentencePiece BPE (tokenizer.ggml.model = llama).
 *
 * ' ' becomes U+2581, the text is split into UTF-8 characters (lead-byte
 * length, clamped at the end, as llama.cpp does), every adjacent pair that
 * forms a vocabulary token becomes a candidate scored by that token's score,
 * and the best candidate (highest score, then leftmost) is merged until none
 * is left. Symbols that are not tokens are emitted as <0xXX> byte tokens
 * (the unknown token when the vocabulary lacks them). */
#include "engine/tok_int.h"

#include "base/mem.h"
#include "engine/unicode.h"

#include <string.h>

struct work {
    const char *text;
    struct tok__sym *syms;
    struct tok__heap heap;
};

static void try_pair(const struct tok_vocab *v, void *work, int32_t l, int32_t r)
{
    struct work *w = work;
    if (l < 0 || r < 0)
        return;
    uint32_t llen = w->syms[l].len, rlen = w->syms[r].len;
    int32_t id = tok__find(v, w->text + w->syms[l].off, llen + rlen);
    if (id == TOK_NULL)
        return;
    /* highest score first: the heap takes the smallest key */
    tok__heap_push(&w->heap, (struct tok__cand){-(double)v->tok[id].score, l,
                                                r, llen, rlen});
}

static int emit(const struct tok_vocab *v, const struct work *w,
                struct tok__ids *out, struct km_err *err)
{
    int rc = KM_OK;
    for (int32_t i = 0; i >= 0 && rc == KM_OK; i = w->syms[i].next) {
        const struct tok__sym *s = &w->syms[i];
        int32_t id = tok__find(v, w->text + s->off, s->len);
        if (id != TOK_NULL) {
            rc = tok__push(out, id, err);
            continue;
        }
        for (uint32_t j = 0; j < s->len && rc == KM_OK; j++) {
            unsigned char byte = (unsigned char)w->text[s->off + j];
            int32_t b = v->byte_tok[byte] != TOK_NULL ? v->byte_tok[byte] : v->unk;
            if (b == TOK_NULL) /* never hand the engine an id of -1 */
                return km_fail(err, KM_EFORMAT, "tokenizer: byte 0x%02X has no <0x%02X> token "
                               "and the vocabulary has no unknown token", byte, byte);
            rc = tok__push(out, b, err);
        }
    }
    return rc;
}

static int run(const struct tok_vocab *v, struct work *w, size_t len,
               struct tok__ids *out, struct km_err *err)
{
    int32_t n = 0;
    for (size_t off = 0; off < len; n++) {
        size_t k = uni_lead_len((unsigned char)w->text[off]);
        if (k > len - off)
            k = len - off;
        w->syms[n] = (struct tok__sym){(uint32_t)off, (uint32_t)k, n - 1, n + 1};
        off += k;
    }
    w->syms[n - 1].next = -1;
    tok__merge(v, w->syms, n, &w->heap, try_pair, w);
    return emit(v, w, out, err);
}

/* Copy s with every ' ' replaced by U+2581 (E2 96 81). */
static char *escape_spaces(const char *s, size_t len, size_t *out_len)
{
    size_t spaces = 0;
    for (size_t i = 0; i < len; i++)
        spaces += s[i] == ' ';
    char *t = km_malloc(len + 2 * spaces + 1);
    if (!t)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == ' ') {
            memcpy(t + o, "\xe2\x96\x81", 3);
            o += 3;
        } else {
            t[o++] = s[i];
        }
    }
    t[o] = '\0';
    *out_len = o;
    return t;
}

int tok__spm(const struct tok_vocab *v, const char *s, size_t len,
             struct tok__ids *out, struct km_err *err)
{
    struct work w = {0};
    size_t n = 0;
    int rc = KM_OK;
    if (len == 0)
        return KM_OK;
    char *t = escape_spaces(s, len, &n);
    w.text = t;
    w.syms = km_mallocarray(n, sizeof(*w.syms));
    w.heap.v = km_mallocarray(n * 3, sizeof(*w.heap.v));
    if (!t || !w.syms || !w.heap.v)
        rc = km_fail(err, KM_ENOMEM, "tokenizer: out of memory for %zu bytes of text", len);
    else
        rc = run(v, &w, n, out, err);
    km_free(t);
    km_free(w.syms);
    km_free(w.heap.v);
    return rc;
}
