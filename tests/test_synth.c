/* test_synth.c - engine/synth and `models synth|info`: the per-tensor type
 * mixes of llama.cpp's quantizer, metadata keys, determinism, --vocab-from,
 * llama3 rope factors and the CLI contract. */
#include "base/mem.h"
#include "engine/gguf.h"
#include "engine/quant.h"
#include "engine/synth.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

TestSuite(synth, .timeout = 120);

static struct km_err err;

static char *tmp_path(const char *tag)
{
    static char buf[4][256];
    static int k;
    char *p = buf[k++ % 4];
    snprintf(p, 256, "/tmp/km-synth-%d-%s.gguf", (int)getpid(), tag);
    return p;
}

static struct gguf_file *write_and_open(struct synth_params *p, const char *path)
{
    struct synth_stats st;
    cr_assert_eq(synth_write(p, path, NULL, NULL, &st, &err), KM_OK, "%s", err.msg);
    struct gguf_file *f = NULL;
    cr_assert_eq(gguf_open(path, &f, &err), KM_OK, "%s", err.msg);
    cr_assert_eq(st.n_tensors, gguf_n_tensors(f));
    cr_assert_eq(st.file_bytes, gguf_file_size(f));
    return f;
}

static uint32_t ttype(const struct gguf_file *f, const char *name)
{
    const struct gguf_tensor *t = gguf_find_tensor(f, name);
    cr_assert_not_null(t, "tensor %s missing", name);
    return t->type;
}

#define ASSERT_TYPE(f, name, want)                                                     \
    cr_assert_eq(ttype(f, name), want, "%s: %s, want %s", name,                        \
                 quant_type_name(ttype(f, name)), quant_type_name(want))

Test(synth, tiny_llama_q4_k_m_file)
{
    struct synth_params p;
    cr_assert_eq(synth_preset("llama", "tiny", &p, &err), KM_OK);
    snprintf(p.ftype, sizeof p.ftype, "Q4_K_M");
    char *path = tmp_path("q4km");
    struct gguf_file *f = write_and_open(&p, path);
    /* 2 layers: use_more_bits(1, 2) only -> layer 1's attn_v/ffn_down Q6_K */
    ASSERT_TYPE(f, "token_embd.weight", GGML_TYPE_Q4_K);
    ASSERT_TYPE(f, "output.weight", GGML_TYPE_Q6_K);
    ASSERT_TYPE(f, "blk.0.attn_v.weight", GGML_TYPE_Q4_K);
    ASSERT_TYPE(f, "blk.1.attn_v.weight", GGML_TYPE_Q6_K);
    ASSERT_TYPE(f, "blk.0.ffn_down.weight", GGML_TYPE_Q4_K);
    ASSERT_TYPE(f, "blk.1.ffn_down.weight", GGML_TYPE_Q6_K);
    ASSERT_TYPE(f, "blk.1.attn_q.weight", GGML_TYPE_Q4_K);
    ASSERT_TYPE(f, "blk.0.attn_norm.weight", GGML_TYPE_F32);
    ASSERT_TYPE(f, "output_norm.weight", GGML_TYPE_F32);
    ASSERT_TYPE(f, "rope_freqs.weight", GGML_TYPE_F32);
    cr_assert_eq(gguf_n_tensors(f), 1 + 1 + 2 * 9 + 2);
    /* llama.cpp order: rope_freqs, token_embd, per-layer HF order, output_norm, output */
    cr_assert_str_eq(gguf_tensor_at(f, 0)->name, "rope_freqs.weight");
    cr_assert_str_eq(gguf_tensor_at(f, 1)->name, "token_embd.weight");
    cr_assert_str_eq(gguf_tensor_at(f, 2)->name, "blk.0.attn_norm.weight");
    cr_assert_str_eq(gguf_tensor_at(f, 3)->name, "blk.0.ffn_down.weight");
    cr_assert_str_eq(gguf_tensor_at(f, 10)->name, "blk.0.attn_v.weight");
    cr_assert_str_eq(gguf_tensor_at(f, 21)->name, "output.weight");
    const struct gguf_tensor *q = gguf_find_tensor(f, "blk.0.attn_k.weight");
    cr_assert_eq(q->ne[0], 256);
    cr_assert_eq(q->ne[1], 128); /* 2 kv heads x 64 */
    const struct gguf_tensor *e = gguf_find_tensor(f, "token_embd.weight");
    cr_assert_eq(e->ne[1], 512);
    const char *s;
    uint32_t u;
    float fl;
    cr_assert_eq(gguf_get_str(f, "general.architecture", &s, NULL, &err), KM_OK);
    cr_assert_str_eq(s, "llama");
    cr_assert_eq(gguf_get_u32(f, "general.file_type", &u, &err), KM_OK);
    cr_assert_eq(u, 15);
    cr_assert_eq(gguf_get_u32(f, "general.quantization_version", &u, &err), KM_OK);
    cr_assert_eq(u, 2);
    cr_assert_eq(gguf_alignment(f), 32);
    cr_assert_eq(gguf_get_u32(f, "llama.block_count", &u, &err), KM_OK);
    cr_assert_eq(u, 2);
    cr_assert_eq(gguf_kv_type(f, gguf_find_key(f, "llama.block_count")), GGUF_TYPE_UINT32);
    cr_assert_eq(gguf_get_u32(f, "llama.attention.head_count_kv", &u, &err), KM_OK);
    cr_assert_eq(u, 2);
    cr_assert_eq(gguf_get_u32(f, "llama.rope.dimension_count", &u, &err), KM_OK);
    cr_assert_eq(u, 64);
    cr_assert_eq(gguf_get_u32(f, "llama.vocab_size", &u, &err), KM_OK);
    cr_assert_eq(u, 512);
    cr_assert_eq(gguf_get_f32(f, "llama.rope.freq_base", &fl, &err), KM_OK);
    cr_assert_eq(fl, 500000.0f);
    cr_assert_eq(gguf_get_f32(f, "llama.attention.layer_norm_rms_epsilon", &fl, &err), KM_OK);
    cr_assert_eq(fl, 1e-5f);
    /* synthetic byte-level vocab: Llama 3 special layout at n_vocab - 256 */
    cr_assert_eq(gguf_get_str(f, "tokenizer.ggml.model", &s, NULL, &err), KM_OK);
    cr_assert_str_eq(s, "gpt2");
    cr_assert_eq(gguf_get_u32(f, "tokenizer.ggml.bos_token_id", &u, &err), KM_OK);
    cr_assert_eq(u, 256);
    cr_assert_eq(gguf_get_u32(f, "tokenizer.ggml.eos_token_id", &u, &err), KM_OK);
    cr_assert_eq(u, 265);
    int64_t ti = gguf_find_key(f, "tokenizer.ggml.tokens");
    uint64_t len;
    const char *tok = gguf_kv_arr_str(f, ti, 265, &len);
    cr_assert(len == 10 && memcmp(tok, "<|eot_id|>", 10) == 0);
    tok = gguf_kv_arr_str(f, ti, 0, &len);
    cr_assert(len == 1 && tok[0] == '!');
    tok = gguf_kv_arr_str(f, ti, 188, &len); /* byte 0x00 -> U+0100 */
    cr_assert(len == 2 && memcmp(tok, "\xc4\x80", 2) == 0);
    /* Values: norms near 1, weights within 1/sqrt(row length), via dequantization. */
    float row[512];
    const struct gguf_tensor *n = gguf_find_tensor(f, "blk.0.ffn_norm.weight");
    quant_dequantize_row(n->type, n->data, row, 256);
    for (int i = 0; i < 256; i++)
        cr_assert(row[i] >= 0.9f && row[i] <= 1.1f, "norm %g", row[i]);
    const struct gguf_tensor *d = gguf_find_tensor(f, "blk.1.ffn_down.weight");
    quant_dequantize_row(d->type, d->data, row, 512);
    float amax = 0;
    for (int i = 0; i < 512; i++)
        amax = fmaxf(amax, fabsf(row[i]));
    cr_assert(amax > 0.5f / sqrtf(512) && amax < 1.1f / sqrtf(512), "amax %g", amax);
    gguf_close(f);
    unlink(path);
}

Test(synth, llama3_rope_factors)
{
    /* independent restatement of facts §3.2 for Llama 3.2 (factor 32, D 64) */
    float got[32];
    synth_llama3_rope_factors(500000.0f, 32.0f, 1.0f, 4.0f, 8192.0f, 64, got);
    for (int k = 0; k < 32; k++) {
        double freq = pow(500000.0, -2.0 * k / 64.0);
        double wl = 2 * M_PI / freq, want;
        if (wl < 8192.0 / 4)
            want = 1;
        else if (wl > 8192.0)
            want = 32;
        else {
            double sm = (8192.0 / wl - 1) / 3;
            want = 1 / ((1 - sm) / 32 + sm);
        }
        cr_assert_float_eq(got[k], want, 1e-4 * want, "k %d: %g vs %g", k, got[k], want);
    }
    cr_assert_eq(got[0], 1.0f);
    cr_assert_eq(got[31], 32.0f);
}
