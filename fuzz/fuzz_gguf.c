/* fuzz_gguf.c - the GGUF reader (src/engine/gguf.c) and what is built from
 * a file's metadata before any weight is touched: the tokenizer (tok_load)
 * and the chat template family (chat_select).
 *
 * Property: any byte string either fails gguf_open_mem with an error, or
 * opens and then every getter stays in bounds (each string, array element
 * and tensor byte is touched). A vocabulary built from hostile metadata
 * must load or fail cleanly, then encode, decode and render a chat prompt
 * without a sanitizer report. Seeds: tiny files from `models synth`. */
#include "fuzz.h"

#include "base/buf.h"
#include "base/mem.h"
#include "engine/chat.h"
#include "engine/gguf.h"
#include "engine/tok.h"

#include <string.h>

static void fz_gguf_touch(const void *p, uint64_t len)
{
    if (p && len)
        (void)*(volatile const char *)((const char *)p + len - 1);
}

static void fz_gguf_walk(const struct gguf_file *f)
{
    for (int64_t i = 0; i < gguf_n_kv(f); i++) {
        uint64_t len = 0, n = gguf_kv_arr_len(f, i);
        int64_t iv;
        uint64_t uv;
        double dv;
        (void)strlen(gguf_kv_key(f, i));
        gguf_kv_int(f, i, &iv);
        gguf_kv_uint(f, i, &uv);
        gguf_kv_float(f, i, &dv);
        const char *s = gguf_kv_str(f, i, &len);
        fz_gguf_touch(s, len + (s != NULL)); /* the copy is NUL-terminated */
        fz_gguf_touch(gguf_kv_raw(f, i, &len), len);
        for (uint64_t j = 0; j < n && j < 64; j++) {
            fz_gguf_touch(gguf_kv_arr_str(f, i, j, &len), len);
            gguf_kv_arr_int(f, i, j, &iv);
            gguf_kv_arr_float(f, i, j, &dv);
        }
    }
    for (int64_t i = 0; i < gguf_n_tensors(f); i++) {
        const struct gguf_tensor *t = gguf_tensor_at(f, i);
        fz_gguf_touch(t->data, t->nbytes);
    }
}

/* A prompt through the vocabulary and the chat template it names. */
static void fz_gguf_vocab(const struct tok_vocab *v)
{
    static const char text[] = "Hello world! <|eot_id|><s> 12 caf\xc3\xa9 \xe2\x96\x81x";
    struct km_err err;
    struct km_buf b;
    int32_t *ids = NULL;
    size_t n = 0;
    km_buf_init(&b, 1 << 20);
    if (tok_encode(v, text, sizeof text - 1, true, true, &ids, &n, &err) == KM_OK)
        tok_decode(v, ids, n, true, true, &b, &err);
    int32_t probe[] = {0, 1, 2, tok_n_vocab(v) - 1, tok_n_vocab(v), -1};
    tok_decode(v, probe, sizeof probe / sizeof probe[0], false, true, &b, &err);
    km_free(ids);

    enum chat_family fam;
    if (chat_select(NULL, tok_chat_template(v), &fam, &err) == KM_OK) {
        struct chat_msg msgs[] = {{"system", "s"}, {"user", "u"}};
        struct chat_opts opts = {.add_generation_prompt = true, .with_bos = true};
        int32_t stop[8];
        size_t n_stop;
        km_buf_reset(&b);
        chat_render(fam, msgs, 2, &opts, &b, &err);
        chat_stop_ids(fam, v, stop, 8, &n_stop);
    }
    km_buf_free(&b);
}

int fuzz_gguf(const uint8_t *data, size_t size)
{
    struct gguf_file *f = NULL;
    struct tok_vocab *v = NULL;
    struct km_err err;
    if (gguf_open_mem(data, size, "fuzz.gguf", &f, &err) != KM_OK)
        return 0;
    fz_gguf_walk(f);
    if (tok_load(f, &v, &err) == KM_OK) {
        fz_gguf_vocab(v);
        tok_free(v);
    }
    gguf_close(f);
    return 0;
}

#ifndef FUZZ_REPLAY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_gguf(data, size);
}
#endif
