/* fuzz_vocab.c - tokenizers built from hostile vocabularies (tok_load in
 * src/engine/tok.c, then tok_encode/tok_decode/tok_stream), without
 * mutating a whole binary GGUF: the input describes the vocabulary and the
 * harness writes it with gguf_writer.
 *
 * Input: byte 0: model (bits 0-1: llama SPM, gpt2 BPE, bert WPM), pre
 * (bit 2: llama-bpe), add_bos/add_eos (bits 3-4), add_space_prefix (bit 5);
 * bytes 1-3: bos, eos and unknown ids (byte - 2, so -2..253); then lines:
 * "m A B" is a merge, any other line a token, whose type is taken from its
 * first byte (1 normal, 2 unknown, 3 control, 4 user-defined, 6 byte, ...).
 * The whole input is then encoded as text (with and without special
 * parsing) and the ids decoded and streamed. Property: load or a clean
 * error; then no sanitizer report, valid UTF-8 from the stream. */
#include "fuzz.h"

#include "base/buf.h"
#include "base/mem.h"
#include "engine/gguf.h"
#include "engine/tok.h"
#include "engine/unicode.h"

#include <stdlib.h>
#include <string.h>

#define FZ_VOCAB_MAX 512

struct fz_vocab {
    const char *tok[FZ_VOCAB_MAX];
    uint64_t tok_len[FZ_VOCAB_MAX];
    int32_t type[FZ_VOCAB_MAX];
    float score[FZ_VOCAB_MAX];
    const char *merge[FZ_VOCAB_MAX];
    uint64_t merge_len[FZ_VOCAB_MAX];
    uint64_t n_tok, n_merge;
};

static void fz_vocab_lines(struct fz_vocab *v, const char *p, size_t n)
{
    for (size_t a = 0; a < n;) {
        const char *nl = memchr(p + a, '\n', n - a);
        size_t end = nl ? (size_t)(nl - p) : n;
        const char *s = p + a;
        size_t len = end - a;
        if (len > 2 && s[0] == 'm' && s[1] == ' ' && v->n_merge < FZ_VOCAB_MAX) {
            v->merge[v->n_merge] = s + 2;
            v->merge_len[v->n_merge++] = len - 2;
        } else if (v->n_tok < FZ_VOCAB_MAX) {
            v->tok[v->n_tok] = s;
            v->tok_len[v->n_tok] = len;
            v->type[v->n_tok] = len ? 1 + (unsigned char)s[0] % 6 : 1;
            v->score[v->n_tok] = -(float)v->n_tok;
            v->n_tok++;
        }
        a = end + 1;
    }
}

/* The GGUF image of the vocabulary (km_free), or NULL when the writer
 * refuses it (e.g. duplicate tokens are fine, but no tokens at all). */
static void *fz_vocab_image(const uint8_t *data, const struct fz_vocab *v,
                            size_t *len)
{
    static const char *models[] = {"llama", "gpt2", "bert", "llama"};
    struct gguf_writer *w = NULL;
    struct km_err err;
    void *buf = NULL;
    int rc = gguf_writer_new(&w, &err);
    if (rc == KM_OK)
        rc = gguf_writer_add_str(w, "tokenizer.ggml.model", models[data[0] & 3], &err);
    if (rc == KM_OK && (data[0] & 4))
        rc = gguf_writer_add_str(w, "tokenizer.ggml.pre", "llama-bpe", &err);
    if (rc == KM_OK)
        rc = gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", v->tok, v->tok_len,
                                     v->n_tok, &err);
    if (rc == KM_OK)
        rc = gguf_writer_add_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32,
                                 v->type, v->n_tok, &err);
    if (rc == KM_OK)
        rc = gguf_writer_add_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32,
                                 v->score, v->n_tok, &err);
    if (rc == KM_OK && v->n_merge)
        rc = gguf_writer_add_arr_str(w, "tokenizer.ggml.merges", v->merge, v->merge_len,
                                     v->n_merge, &err);
    if (rc == KM_OK)
        rc = gguf_writer_add_i32(w, "tokenizer.ggml.bos_token_id", data[1] - 2, &err);
    if (rc == KM_OK)
        rc = gguf_writer_add_i32(w, "tokenizer.ggml.eos_token_id", data[2] - 2, &err);
    if (rc == KM_OK)
        rc = gguf_writer_add_i32(w, "tokenizer.ggml.unknown_token_id", data[3] - 2, &err);
    if (rc == KM_OK)
        rc = gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", data[0] & 8, &err);
    if (rc == KM_OK)
        rc = gguf_writer_add_bool(w, "tokenizer.ggml.add_eos_token", data[0] & 16, &err);
    if (rc == KM_OK)
        rc = gguf_writer_add_bool(w, "tokenizer.ggml.add_space_prefix", data[0] & 32, &err);
    if (rc == KM_OK)
        rc = gguf_writer_write_mem(w, &buf, len, &err);
    gguf_writer_free(w);
    return rc == KM_OK ? buf : NULL;
}

static void fz_vocab_utf8(const char *t, size_t len)
{
    for (size_t off = 0; off < len;) {
        int k = uni_valid_len((const unsigned char *)t + off, len - off);
        if (k <= 0)
            abort(); /* the stream emitted invalid or partial UTF-8 */
        off += (size_t)k;
    }
}

static void fz_vocab_use(const struct tok_vocab *v, const char *text, size_t n,
                         bool parse_special)
{
    int32_t *ids = NULL;
    size_t n_ids = 0;
    struct km_err err;
    struct km_buf b;
    struct tok_stream s;
    const char *t;
    size_t len;
    km_buf_init(&b, 1 << 20);
    if (tok_encode(v, text, n, true, parse_special, &ids, &n_ids, &err) == KM_OK)
        tok_decode(v, ids, n_ids, true, true, &b, &err);
    tok_stream_init(&s, v, parse_special);
    for (size_t i = 0; i < n_ids; i++)
        if (tok_stream_feed(&s, ids[i], &t, &len, &err) == KM_OK)
            fz_vocab_utf8(t, len);
    tok_stream_flush(&s, &t, &len);
    fz_vocab_utf8(t, len);
    tok_stream_free(&s);
    km_buf_free(&b);
    km_free(ids);
}

int fuzz_vocab(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    struct fz_vocab *fv = km_calloc(1, sizeof *fv);
    size_t len = 0;
    void *img = NULL;
    struct gguf_file *f = NULL;
    struct tok_vocab *v = NULL;
    struct km_err err;
    if (!fv)
        return 0;
    fz_vocab_lines(fv, (const char *)data + 4, size - 4);
    img = fz_vocab_image(data, fv, &len);
    if (img && gguf_open_mem(img, len, "vocab.gguf", &f, &err) == KM_OK &&
        tok_load(f, &v, &err) == KM_OK) {
        fz_vocab_use(v, (const char *)data + 4, size - 4, false);
        fz_vocab_use(v, (const char *)data + 4, size - 4, true);
    }
    tok_free(v);
    gguf_close(f);
    km_free(img);
    km_free(fv);
    return 0;
}

#ifndef FUZZ_REPLAY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_vocab(data, size);
}
#endif
