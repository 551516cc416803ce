/* fuzz_tok.c - libFuzzer harness for the tokenizers: any bytes, encoded by
 * each reference vocabulary (BPE, SPM, WordPiece) with any flags, must encode
 * without a crash, decode back, and stream as valid UTF-8; the same bytes read
 * as token ids (possibly out of range) must decode or fail cleanly.
 * Vocabularies come from $KM_SHARED/data/tokenizer (default ../shared). */
#include "base/buf.h"
#include "base/mem.h"
#include "engine/gguf.h"
#include "engine/tok.h"
#include "engine/unicode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct tok_vocab *vocabs[3];

static void load_all(void)
{
    static const char *names[] = {"ggml-vocab-gpt-2.gguf", "ggml-vocab-llama-spm.gguf",
                                  "ggml-vocab-bert-bge.gguf"};
    const char *sh = getenv("KM_SHARED");
    for (int i = 0; i < 3; i++) {
        char path[1024];
        struct gguf_file *f;
        struct km_err err;
        snprintf(path, sizeof(path), "%s/data/tokenizer/%s", sh ? sh : "../shared", names[i]);
        if (gguf_open(path, &f, &err) != KM_OK || tok_load(f, &vocabs[i], &err) != KM_OK) {
            fprintf(stderr, "fuzz_tok: %s\n", err.msg);
            abort(); /* harness setup only */
        }
        gguf_close(f);
    }
}

static void check_valid_utf8(const char *t, size_t len)
{
    for (size_t off = 0; off < len;) {
        int k = uni_valid_len((const unsigned char *)t + off, len - off);
        if (k <= 0)
            abort(); /* the stream emitted invalid or partial UTF-8 */
        off += (size_t)k;
    }
}

static void run_ids(const struct tok_vocab *v, const int32_t *ids, size_t n)
{
    struct km_buf b;
    struct km_err err;
    struct tok_stream s;
    km_buf_init(&b, 1 << 22);
    tok_decode(v, ids, n, true, true, &b, &err);
    km_buf_free(&b);
    tok_stream_init(&s, v, true);
    for (size_t i = 0; i < n; i++) {
        const char *t;
        size_t len;
        if (tok_stream_feed(&s, ids[i], &t, &len, &err) == KM_OK)
            check_valid_utf8(t, len);
    }
    const char *t;
    size_t len;
    tok_stream_flush(&s, &t, &len);
    check_valid_utf8(t, len);
    tok_stream_free(&s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!vocabs[0])
        load_all();
    if (size < 1)
        return 0;
    const struct tok_vocab *v = vocabs[data[0] % 3];
    bool add_special = data[0] & 4, parse_special = data[0] & 8;
    const char *text = (const char *)data + 1;
    int32_t *ids = NULL;
    size_t n = 0;
    struct km_err err;
    if (tok_encode(v, text, size - 1, add_special, parse_special, &ids, &n, &err) == KM_OK)
        run_ids(v, ids, n);
    km_free(ids);
    size_t m = (size - 1) / 4;
    int32_t *raw = km_mallocarray(m ? m : 1, sizeof(*raw));
    if (raw) {
        for (size_t i = 0; i < m; i++) {
            uint32_t u;
            memcpy(&u, text + 4 * i, 4);
            raw[i] = (int32_t)(u % 70000u) - 100; /* mostly in range, some not */
        }
        run_ids(v, raw, m);
        km_free(raw);
    }
    return 0;
}
