/* engine_synth.c - test helper: a small random Llama GGUF (engine_synth.h). */
#include "engine_synth.h"

#include "base/mem.h"
#include "engine/gguf.h"
#include "engine/quant.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct fill_ctx {
    uint64_t seed;
    float scale[512];
    int64_t k[512];
    uint32_t type[512];
    bool ones[512];
};

static float next_uniform(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    return (float)((x >> 11) * 0x1.0p-53) * 2.0f - 1.0f;
}

static int fill(void *ctx, int64_t index, void *dst, uint64_t nbytes, struct km_err *err)
{
    struct fill_ctx *c = ctx;
    int64_t k = c->k[index];
    size_t row = quant_row_size(c->type[index], k);
    uint64_t rows = nbytes / row;
    float *tmp = km_mallocarray((size_t)k, sizeof *tmp);
    if (!tmp)
        return km_fail(err, KM_ENOMEM, "out of memory in the synth helper");
    uint64_t s = c->seed * 0x9E3779B97F4A7C15ull + (uint64_t)index * 7919 + 1;
    for (uint64_t r = 0; r < rows; r++) {
        for (int64_t i = 0; i < k; i++)
            tmp[i] = c->ones[index] ? 1.0f + 0.2f * next_uniform(&s)
                                    : c->scale[index] * next_uniform(&s);
        quant_quantize_row(c->type[index], tmp, (char *)dst + r * row, k);
    }
    km_free(tmp);
    return KM_OK;
}

static int add(struct gguf_writer *w, struct fill_ctx *c, int *n, const char *name,
               uint32_t type, int64_t k, int64_t rows, float scale, bool ones,
               struct km_err *err)
{
    uint64_t ne[2] = {(uint64_t)k, (uint64_t)rows};
    c->k[*n] = k;
    c->type[*n] = type;
    c->scale[*n] = scale;
    c->ones[*n] = ones;
    (*n)++;
    return gguf_writer_add_tensor_fill(w, name, type, rows > 1 ? 2 : 1, ne, fill, c, err);
}

/* llama.cpp's use_more_bits(i, n) (facts §2.4). */
static bool more_bits(int i, int n)
{
    return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

static uint32_t pick(const struct engine_synth *p, bool bump)
{
    return p->mix && bump ? GGML_TYPE_Q6_K : p->type;
}

static int add_layers(struct gguf_writer *w, struct fill_ctx *c, int *n,
                      const struct engine_synth *p, struct km_err *err)
{
    int64_t E = p->n_embd, D = E / p->n_head, F = p->n_ff;
    int64_t kvd = D * p->n_head_kv;
    float se = 1.0f / sqrtf((float)E), sf = 1.0f / sqrtf((float)F);
    int rc = KM_OK;
    for (int l = 0; l < p->n_layer && rc == KM_OK; l++) {
        char nm[96];
#define T(sfx) (snprintf(nm, sizeof nm, "blk.%d." sfx, l), nm)
        rc = add(w, c, n, T("attn_norm.weight"), GGML_TYPE_F32, E, 1, 0, true, err);
        rc = rc ? rc : add(w, c, n, T("attn_q.weight"), p->type, E, E, 2 * se, false, err);
        rc = rc ? rc : add(w, c, n, T("attn_k.weight"), p->type, E, kvd, 2 * se, false, err);
        bool mb = more_bits(l, p->n_layer);
        rc = rc ? rc : add(w, c, n, T("attn_v.weight"), pick(p, mb), E, kvd, se, false, err);
        rc = rc ? rc : add(w, c, n, T("attn_output.weight"), p->type, E, E, se, false, err);
        rc = rc ? rc : add(w, c, n, T("ffn_norm.weight"), GGML_TYPE_F32, E, 1, 0, true, err);
        rc = rc ? rc : add(w, c, n, T("ffn_gate.weight"), p->type, E, F, se, false, err);
        rc = rc ? rc : add(w, c, n, T("ffn_up.weight"), p->type, E, F, se, false, err);
        rc = rc ? rc : add(w, c, n, T("ffn_down.weight"), pick(p, mb), F, E, sf, false, err);
#undef T
    }
    return rc;
}

static int add_meta(struct gguf_writer *w, const struct engine_synth *p,
                    struct gguf_file *voc, struct km_err *err)
{
    int rc = gguf_writer_add_str(w, "general.architecture", "llama", err);
    rc = rc ? rc : gguf_writer_add_str(w, "general.name", "engine-synth", err);
    rc = rc ? rc : gguf_writer_add_u32(w, "llama.context_length", (uint32_t)p->n_ctx, err);
    rc = rc ? rc : gguf_writer_add_u32(w, "llama.embedding_length", (uint32_t)p->n_embd, err);
    rc = rc ? rc : gguf_writer_add_u32(w, "llama.block_count", (uint32_t)p->n_layer, err);
    rc = rc ? rc : gguf_writer_add_u32(w, "llama.feed_forward_length", (uint32_t)p->n_ff, err);
    rc = rc ? rc : gguf_writer_add_u32(w, "llama.attention.head_count", (uint32_t)p->n_head, err);
    rc = rc ? rc : gguf_writer_add_u32(w, "llama.attention.head_count_kv", (uint32_t)p->n_head_kv, err);
    rc = rc ? rc : gguf_writer_add_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f, err);
    rc = rc ? rc : gguf_writer_add_f32(w, "llama.rope.freq_base", 500000.0f, err);
    for (int64_t i = 0; rc == KM_OK && i < gguf_n_kv(voc); i++) {
        if (strncmp(gguf_kv_key(voc, i), "tokenizer.", 10) == 0)
            rc = gguf_writer_copy_kv(w, voc, i, err);
    }
    return rc;
}

int engine_synth_write(const struct engine_synth *p, const char *out_path,
                       struct km_err *err)
{
    struct gguf_file *voc = NULL;
    struct gguf_writer *w = NULL;
    struct fill_ctx *c = km_calloc(1, sizeof *c);
    int n = 0;
    int rc = c ? gguf_open(p->vocab_path, &voc, err) : KM_ENOMEM;
    rc = rc ? rc : gguf_writer_new(&w, err);
    rc = rc ? rc : add_meta(w, p, voc, err);
    if (rc != KM_OK)
        goto out;
    c->seed = p->seed;
    int64_t tokid = gguf_find_key(voc, "tokenizer.ggml.tokens");
    int64_t V = tokid >= 0 ? (int64_t)gguf_kv_arr_len(voc, tokid) : 0;
    int64_t E = p->n_embd, D = E / p->n_head;
    /* small embeddings: the layers, not the input token, dominate the logits */
    rc = add(w, c, &n, "token_embd.weight", pick(p, p->tied), E, V, 0.05f, false, err);
    rc = rc ? rc : add(w, c, &n, "output_norm.weight", GGML_TYPE_F32, E, 1, 0, true, err);
    if (rc == KM_OK && !p->tied)
        rc = add(w, c, &n, "output.weight", pick(p, true), E, V, 1.0f / sqrtf((float)E), false, err);
    if (rc == KM_OK && p->with_rope_freqs)
        rc = add(w, c, &n, "rope_freqs.weight", GGML_TYPE_F32, D / 2, 1, 0, true, err);
    rc = rc ? rc : add_layers(w, c, &n, p, err);
    rc = rc ? rc : gguf_writer_write_file(w, out_path, err);
out:
    gguf_writer_free(w);
    gguf_close(voc);
    km_free(c);
    return rc;
}

const char *engine_synth_vocab(void)
{
    static char path[4096];
    const char *sh = getenv("KM_SHARED");
    snprintf(path, sizeof path, "%s/data/tokenizer/ggml-vocab-gpt-2.gguf", sh ? sh : "../shared");
    return path;
}
