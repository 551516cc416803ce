/* fuzz_tok.c - the tokenizers (src/engine/tok*.c) with the reference
 * vocabularies of ../shared/data/tokenizer ($KM_SHARED overrides ../shared):
 * GPT-2 BPE, Llama SentencePiece and BERT WordPiece.
 *
 * Input: byte 0 picks the vocabulary (bits 0-1) and the flags add_special
 * (bit 2) and parse_special (bit 3); the rest is the text. Property: any
 * bytes encode (or fail cleanly), the ids decode, and the streaming
 * detokenizer emits only valid UTF-8; the same bytes read as token ids,
 * some out of range, decode or fail cleanly. */
#include "fuzz.h"

#include "base/buf.h"
#include "base/mem.h"
#include "engine/gguf.h"
#include "engine/tok.h"
#include "engine/unicode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct tok_vocab *fz_tok_vocabs[3];

/* Harness set-up: a missing fixture is a broken test environment. */
static void fz_tok_load(void)
{
    static const char *names[] = {"ggml-vocab-gpt-2.gguf", "ggml-vocab-llama-spm.gguf",
                                  "ggml-vocab-bert-bge.gguf"};
    const char *sh = getenv("KM_SHARED");
    for (int i = 0; i < 3; i++) {
        char path[1024];
        struct gguf_file *f = NULL;
        struct km_err err;
        snprintf(path, sizeof(path), "%s/data/tokenizer/%s", sh ? sh : "../shared", names[i]);
        if (gguf_open(path, &f, &err) != KM_OK ||
            tok_load(f, &fz_tok_vocabs[i], &err) != KM_OK) {
            fprintf(stderr, "fuzz_tok: %s\n", err.msg);
            abort();
        }
        gguf_close(f);
    }
}

static void fz_tok_check_utf8(const char *t, size_t len)
{
    for (size_t off = 0; off < len;) {
        int k = uni_valid_len((const unsigned char *)t + off, len - off);
        if (k <= 0)
            abort(); /* the stream emitted invalid or partial UTF-8 */
        off += (size_t)k;
    }
}

static void fz_tok_ids(const struct tok_vocab *v, const int32_t *ids, size_t n)
{
    struct km_buf b;
    struct km_err err;
    struct tok_stream s;
    km_buf_init(&b, 1 << 22);
    if (tok_decode(v, ids, n, true, true, &b, &err) == KM_OK &&
        tok_utf8_lossy(&b, &err) == KM_OK)
        fz_tok_check_utf8(b.data, b.len);
    km_buf_free(&b);
    tok_stream_init(&s, v, true);
    for (size_t i = 0; i < n; i++) {
        const char *t;
        size_t len;
        if (tok_stream_feed(&s, ids[i], &t, &len, &err) == KM_OK)
            fz_tok_check_utf8(t, len);
    }
    const char *t;
    size_t len;
    tok_stream_flush(&s, &t, &len);
    fz_tok_check_utf8(t, len);
    tok_stream_free(&s);
}

static bool fz_tok_valid_utf8(const char *t, size_t len)
{
    for (size_t off = 0; off < len;) {
        int k = uni_valid_len((const unsigned char *)t + off, len - off);
        if (k <= 0)
            return false;
        off += (size_t)k;
    }
    return true;
}

/* tok.h: tok_decode(tok_encode(x)) == x for valid UTF-8 x under BPE and SPM
 * without special tokens (SPM reads U+2581 as a space, so text holding it is
 * left out; with a BOS, llama.cpp keeps the space prefix on decode). */
static void fz_tok_round_trip(const struct tok_vocab *v, const char *text, size_t n,
                              bool add_special, const int32_t *ids, size_t n_ids)
{
    struct km_buf b;
    struct km_err err;
    if (tok_model(v) == TOK_MODEL_WPM || !fz_tok_valid_utf8(text, n) ||
        (tok_model(v) == TOK_MODEL_SPM && memmem(text, n, "\xe2\x96\x81", 3)))
        return;
    km_buf_init(&b, 1 << 22);
    if (tok_decode(v, ids, n_ids, add_special, false, &b, &err) != KM_OK)
        abort();
    if (b.len != n || (n && memcmp(b.data, text, n) != 0))
        abort(); /* the text did not survive encode + decode */
    km_buf_free(&b);
}

int fuzz_tok(const uint8_t *data, size_t size)
{
    if (!fz_tok_vocabs[0])
        fz_tok_load();
    if (size < 1)
        return 0;
    const struct tok_vocab *v = fz_tok_vocabs[(data[0] & 3) % 3];
    bool add_special = data[0] & 4, parse_special = data[0] & 8;
    const char *text = (const char *)data + 1;
    int32_t *ids = NULL;
    size_t n = 0;
    struct km_err err;
    if (tok_encode(v, text, size - 1, add_special, parse_special, &ids, &n, &err) == KM_OK) {
        fz_tok_ids(v, ids, n);
        if (!parse_special && !add_special)
            fz_tok_round_trip(v, text, size - 1, false, ids, n);
    }
    km_free(ids);
    size_t m = (size - 1) / 4;
    int32_t *raw = km_mallocarray(m ? m : 1, sizeof(*raw));
    if (raw) {
        for (size_t i = 0; i < m; i++) {
            uint32_t u;
            memcpy(&u, text + 4 * i, 4);
            raw[i] = (int32_t)(u % 70000u) - 100; /* mostly in range, some not */
        }
        fz_tok_ids(v, raw, m);
        km_free(raw);
    }
    return 0;
}

#ifndef FUZZ_REPLAY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_tok(data, size);
}
#endif
