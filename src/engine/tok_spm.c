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

struct sym {
    uint32_t off;
    uint32_t len;
    int32_t prev, next;
};

struct cand {
    float score;
    int32_t left, right;
    uint32_t size;
};

struct work {
    const char *text;
    struct sym *syms;
    struct cand *heap;
    size_t n_heap;
};

static bool better(const struct cand *a, const struct cand *b)
{
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static void heap_push(struct work *w, struct cand c)
{
    size_t i = w->n_heap++;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (!better(&c, &w->heap[up]))
            break;
        w->heap[i] = w->heap[up];
        i = up;
    }
    w->heap[i] = c;
}

static struct cand heap_pop(struct work *w)
{
    struct cand top = w->heap[0], last = w->heap[--w->n_heap];
    size_t i = 0, n = w->n_heap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && better(&w->heap[c + 1], &w->heap[c]))
            c++;
        if (!better(&w->heap[c], &last))
            break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (n > 0)
        w->heap[i] = last;
    return top;
}

static void try_pair(const struct tok_vocab *v, struct work *w, int32_t l,
                     int32_t r)
{
    if (l < 0 || r < 0)
        return;
    uint32_t size = w->syms[l].len + w->syms[r].len;
    int32_t id = tok__find(v, w->text + w->syms[l].off, size);
    if (id == TOK_NULL)
        return;
    heap_push(w, (struct cand){v->tok[id].score, l, r, size});
}

static int emit(const struct tok_vocab *v, const struct work *w,
                struct tok__ids *out, struct km_err *err)
{
    int rc = KM_OK;
    for (int32_t i = 0; i >= 0 && rc == KM_OK; i = w->syms[i].next) {
        const struct sym *s = &w->syms[i];
        int32_t id = tok__find(v, w->text + s->off, s->len);
        if (id != TOK_NULL) {
            rc = tok__push(out, id, err);
            continue;
        }
        for (uint32_t j = 0; j < s->len && rc == KM_OK; j++) {
            int32_t b = v->byte_tok[(unsigned char)w->text[s->off + j]];
            rc = tok__push(out, b != TOK_NULL ? b : v->unk, err);
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
        w->syms[n] = (struct sym){(uint32_t)off, (uint32_t)k, n - 1, n + 1};
        off += k;
    }
    w->syms[n - 1].next = -1;
    for (int32_t i = 1; i < n; i++)
        try_pair(v, w, i - 1, i);
    while (w->n_heap > 0) {
        struct cand c = heap_pop(w);
        struct sym *l = &w->syms[c.left], *r = &w->syms[c.right];
        if (l->len == 0 || r->len == 0 || l->len + r->len != c.size)
            continue; /* stale */
        l->len += r->len;
        r->len = 0;
        l->next = r->next;
        if (r->next >= 0)
            w->syms[r->next].prev = c.left;
        try_pair(v, w, l->prev, c.left);
        try_pair(v, w, c.left, l->next);
    }
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
    w.heap = km_mallocarray(n * 3, sizeof(*w.heap));
    if (!t || !w.syms || !w.heap)
        rc = km_fail(err, KM_ENOMEM, "tokenizer: out of memory for %zu bytes of text", len);
    else
        rc = run(v, &w, n, out, err);
    km_free(t);
    km_free(w.syms);
    km_free(w.heap);
    return rc;
}
