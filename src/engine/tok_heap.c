/* tok_heap.c - the binary min-heap of merge candidates and the merge loop
 * shared by BPE (tok_bpe.c) and SentencePiece (tok_spm.c) (see tok_int.h). */
#include "engine/tok_int.h"

/* Smaller key first, then the leftmost pair (both tokenizers' tie rule). */
static bool cand_before(const struct tok__cand *a, const struct tok__cand *b)
{
    return a->key < b->key || (a->key == b->key && a->left < b->left);
}

void tok__heap_push(struct tok__heap *h, struct tok__cand c)
{
    size_t i = h->n++;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (!cand_before(&c, &h->v[up]))
            break;
        h->v[i] = h->v[up];
        i = up;
    }
    h->v[i] = c;
}

struct tok__cand tok__heap_pop(struct tok__heap *h)
{
    struct tok__cand top = h->v[0], last = h->v[--h->n];
    size_t i = 0, n = h->n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && cand_before(&h->v[c + 1], &h->v[c]))
            c++;
        if (!cand_before(&h->v[c], &last))
            break;
        h->v[i] = h->v[c];
        i = c;
    }
    if (n > 0)
        h->v[i] = last;
    return top;
}

void tok__merge(const struct tok_vocab *v, struct tok__sym *syms, int32_t n,
                struct tok__heap *heap, tok__pair_fn try_pair, void *work)
{
    for (int32_t i = 1; i < n; i++)
        try_pair(v, work, i - 1, i);
    while (heap->n > 0) {
        struct tok__cand c = tok__heap_pop(heap);
        struct tok__sym *l = &syms[c.left], *r = &syms[c.right];
        if (l->len != c.llen || r->len != c.rlen || l->next != c.right)
            continue; /* stale */
        l->len += r->len;
        r->len = 0;
        l->next = r->next;
        if (r->next >= 0)
            syms[r->next].prev = c.left;
        try_pair(v, work, l->prev, c.left);
        try_pair(v, work, c.left, l->next);
    }
}
