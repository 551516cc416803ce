/* fuzz_chunk.c - the RAG chunker (src/rag/chunk.c) for every document kind.
 *
 * Input: byte 0 picks the kind (text, Markdown, reST, code: bits 0-1),
 * byte 1 the budget (8..71 tokens), byte 2 the overlap (0..half of it);
 * the rest is the document, not NUL-terminated. Property (rag.h): every
 * chunk is a non-empty slice of the text with no blank at either end, at
 * most the budget long, with tokens = rag_token_estimate; chunks start in
 * order; every non-blank byte lies in some chunk (nothing is dropped). */
#include "fuzz.h"

#include "base/mem.h"
#include "rag/rag.h"

#include <ctype.h>
#include <stdlib.h>

static void fz_chunk_check(const char *t, size_t len, int max_tokens,
                           const struct rag_chunk *c, size_t n)
{
    size_t covered = 0; /* every byte before this is in a chunk or blank */
    for (size_t i = 0; i < n; i++) {
        if (c[i].len == 0 || c[i].off > len || c[i].len > len - c[i].off)
            abort(); /* empty or outside the text */
        if (c[i].len > (size_t)max_tokens * 4 ||
            c[i].tokens != rag_token_estimate(t + c[i].off, c[i].len))
            abort(); /* over the budget or a wrong estimate */
        if (isspace((unsigned char)t[c[i].off]) ||
            isspace((unsigned char)t[c[i].off + c[i].len - 1]))
            abort(); /* not trimmed */
        if (i > 0 && c[i].off <= c[i - 1].off)
            abort(); /* out of order */
        for (; covered < c[i].off; covered++)
            if (!isspace((unsigned char)t[covered]))
                abort(); /* a non-blank byte no chunk holds */
        if (c[i].off + c[i].len > covered)
            covered = c[i].off + c[i].len;
    }
    for (; covered < len; covered++)
        if (!isspace((unsigned char)t[covered]))
            abort();
}

int fuzz_chunk(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    enum rag_doc_kind kind = (enum rag_doc_kind)(data[0] & 3);
    int max_tokens = 8 + (data[1] & 63);
    int overlap = data[2] % (max_tokens / 2 + 1);
    const char *text = (const char *)data + 3;
    size_t len = size - 3;
    struct rag_chunk *c = NULL;
    size_t n = 0;
    struct km_err err;
    if (rag_chunk_text(text, len, kind, max_tokens, overlap, &c, &n, &err) != KM_OK)
        abort(); /* only out of memory may fail, and the input is small */
    fz_chunk_check(text, len, max_tokens, c, n);
    km_free(c);
    return 0;
}

#ifndef FUZZ_REPLAY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_chunk(data, size);
}
#endif
