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

static uint32_t pol(const char *arch, const char *ft, const char *name, int64_t ne0,
                    int64_t layer, int64_t n_layer, bool has_output)
{
    return synth_tensor_type(arch, ft, name, ne0, 2, layer, n_layer, has_output);
}

Test(synth, type_policy_llama_8b_and_1b)
{
    /* 32 layers: attn_v / ffn_down Q6_K on layers 0-3, 6, 9, ..., 24, 27-31 (facts §2.4) */
    static const int more[] = {0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31};
    int n_more = 0;
    for (int l = 0; l < 32; l++) {
        char name[64];
        bool want6 = false;
        for (int i = 0; i < 16; i++)
            want6 |= more[i] == l;
        snprintf(name, sizeof name, "blk.%d.attn_v.weight", l);
        uint32_t t = pol("llama", "Q4_K_M", name, 4096, l, 32, true);
        cr_assert_eq(t, want6 ? GGML_TYPE_Q6_K : GGML_TYPE_Q4_K, "layer %d", l);
        snprintf(name, sizeof name, "blk.%d.ffn_down.weight", l);
        cr_assert_eq(pol("llama", "Q4_K_M", name, 14336, l, 32, true),
                     want6 ? GGML_TYPE_Q6_K : GGML_TYPE_Q4_K);
        cr_assert_eq(pol("llama", "Q5_K_M", name, 14336, l, 32, true),
                     want6 ? GGML_TYPE_Q6_K : GGML_TYPE_Q5_K);
        n_more += want6;
        snprintf(name, sizeof name, "blk.%d.attn_q.weight", l);
        cr_assert_eq(pol("llama", "Q4_K_M", name, 4096, l, 32, true), GGML_TYPE_Q4_K);
    }
    cr_assert_eq(n_more, 16);
    cr_assert_eq(pol("llama", "Q4_K_M", "output.weight", 4096, -1, 32, true), GGML_TYPE_Q6_K);
    cr_assert_eq(pol("llama", "Q4_K_M", "token_embd.weight", 4096, -1, 32, true), GGML_TYPE_Q4_K);
    /* tied (3.2-1B): token_embd is the output head */
    cr_assert_eq(pol("llama", "Q4_K_M", "token_embd.weight", 2048, -1, 16, false), GGML_TYPE_Q6_K);
    cr_assert_eq(pol("llama", "Q8_0", "token_embd.weight", 2048, -1, 16, false), GGML_TYPE_Q8_0);
    cr_assert_eq(pol("llama", "Q8_0", "blk.0.attn_v.weight", 2048, 0, 16, false), GGML_TYPE_Q8_0);
    cr_assert_eq(pol("llama", "Q6_K", "blk.3.ffn_up.weight", 2048, 3, 16, false), GGML_TYPE_Q6_K);
    cr_assert_eq(pol("llama", "Q4_0", "blk.3.ffn_up.weight", 2048, 3, 16, false), GGML_TYPE_Q4_0);
    cr_assert_eq(pol("llama", "Q4_0", "token_embd.weight", 2048, -1, 16, false), GGML_TYPE_Q6_K);
    cr_assert_eq(pol("llama", "F16", "token_embd.weight", 2048, -1, 16, false), GGML_TYPE_F16);
    cr_assert_eq(pol("llama", "BF16", "blk.0.attn_q.weight", 2048, 0, 16, false), GGML_TYPE_BF16);
    cr_assert_eq(synth_tensor_type("llama", "Q4_K_M", "blk.0.attn_norm.weight", 2048, 1, 0, 16, false),
                 GGML_TYPE_F32);
    cr_assert_eq(synth_ftype_number("Q4_K_M"), 15);
    cr_assert_eq(synth_ftype_number("Q5_K_M"), 17);
    cr_assert_eq(synth_ftype_number("BF16"), 32);
    cr_assert_eq(synth_ftype_number("Q3_K"), -1);
}

Test(synth, type_policy_fallbacks_gemma_bert_nomic)
{
    /* Gemma 3 1B: E = 1152 = 4.5 x 256 */
    cr_assert_eq(pol("gemma3", "Q4_K_M", "blk.2.attn_q.weight", 1152, 2, 26, false), GGML_TYPE_Q5_0);
    cr_assert_eq(pol("gemma3", "Q4_K_M", "blk.0.attn_v.weight", 1152, 0, 26, false), GGML_TYPE_Q8_0);
    cr_assert_eq(pol("gemma3", "Q4_K_M", "blk.4.attn_v.weight", 1152, 4, 26, false), GGML_TYPE_Q5_0);
    cr_assert_eq(pol("gemma3", "Q4_K_M", "blk.2.attn_output.weight", 1024, 2, 26, false), GGML_TYPE_Q4_K);
    cr_assert_eq(pol("gemma3", "Q4_K_M", "blk.2.ffn_down.weight", 6912, 2, 26, false), GGML_TYPE_Q6_K);
    cr_assert_eq(pol("gemma3", "Q4_K_M", "token_embd.weight", 1152, -1, 26, false), GGML_TYPE_Q8_0);
    cr_assert_eq(pol("gemma3", "Q4_K_M", "token_embd.weight", 2560, -1, 34, false), GGML_TYPE_Q6_K);
    cr_assert_eq(pol("gemma3", "Q5_K_M", "blk.2.ffn_up.weight", 1152, 2, 26, false), GGML_TYPE_Q5_1);
    cr_assert_eq(pol("gemma3", "Q6_K", "blk.2.ffn_up.weight", 1152, 2, 26, false), GGML_TYPE_Q8_0);
    /* bge-small: E = 384 */
    cr_assert_eq(pol("bert", "Q4_K_M", "blk.0.attn_q.weight", 384, 0, 12, false), GGML_TYPE_Q5_0);
    cr_assert_eq(pol("bert", "Q4_K_M", "blk.4.ffn_down.weight", 1536, 4, 12, false), GGML_TYPE_Q4_K);
    cr_assert_eq(pol("bert", "Q4_K_M", "blk.0.ffn_down.weight", 1536, 0, 12, false), GGML_TYPE_Q6_K);
    cr_assert_eq(pol("bert", "Q4_K_M", "token_embd.weight", 384, -1, 12, false), GGML_TYPE_Q8_0);
    cr_assert_eq(pol("bert", "Q4_K_M", "position_embd.weight", 384, -1, 12, false), GGML_TYPE_F16);
    cr_assert_eq(pol("bert", "F32", "token_types.weight", 384, -1, 12, false), GGML_TYPE_F32);
    cr_assert_eq(synth_tensor_type("bert", "Q4_K_M", "blk.0.attn_q.bias", 384, 1, 0, 12, false),
                 GGML_TYPE_F32);
    /* nomic-embed: E = 768, fused qkv */
    cr_assert_eq(pol("nomic-bert", "Q4_K_M", "blk.0.attn_qkv.weight", 768, 0, 12, false), GGML_TYPE_Q5_K);
    cr_assert_eq(pol("nomic-bert", "Q5_K_M", "blk.0.attn_qkv.weight", 768, 0, 12, false), GGML_TYPE_Q6_K);
    cr_assert_eq(pol("nomic-bert", "Q4_K_M", "token_embd.weight", 768, -1, 12, false), GGML_TYPE_Q6_K);
    /* rows not divisible by 32 fall back to F16 */
    cr_assert_eq(pol("llama", "Q8_0", "blk.0.ffn_up.weight", 100, 0, 2, true), GGML_TYPE_F16);
}

Test(synth, deterministic_for_seed_and_threads)
{
    struct synth_params p;
    cr_assert_eq(synth_preset("llama", "tiny", &p, &err), KM_OK);
    snprintf(p.ftype, sizeof p.ftype, "Q6_K");
    char *a = tmp_path("a"), *b = tmp_path("b"), *c = tmp_path("c");
    struct gguf_file *fa = write_and_open(&p, a);
    p.n_threads = 3;
    struct gguf_file *fb = write_and_open(&p, b);
    p.seed = 2;
    struct gguf_file *fc = write_and_open(&p, c);
    cr_assert_eq(gguf_file_size(fa), gguf_file_size(fb));
    cr_assert(memcmp(gguf_base(fa), gguf_base(fb), gguf_file_size(fa)) == 0);
    const struct gguf_tensor *ta = gguf_find_tensor(fa, "blk.0.attn_q.weight");
    const struct gguf_tensor *tc = gguf_find_tensor(fc, "blk.0.attn_q.weight");
    cr_assert(memcmp(ta->data, tc->data, ta->nbytes) != 0);
    /* the rope factors tensor holds the llama3 factors */
    float want[32];
    synth_llama3_rope_factors(500000.0f, 32.0f, 1.0f, 4.0f, 8192.0f, 64, want);
    cr_assert(memcmp(gguf_find_tensor(fa, "rope_freqs.weight")->data, want, sizeof want) == 0);
    gguf_close(fa);
    gguf_close(fb);
    gguf_close(fc);
    unlink(a);
    unlink(b);
    unlink(c);
}

static const char *shared(const char *rel, char *buf, size_t n)
{
    const char *sh = getenv("KM_SHARED");
    snprintf(buf, n, "%s/%s", sh ? sh : "../shared", rel);
    return buf;
}

Test(synth, vocab_from_copies_tokenizer)
{
    struct synth_params p;
    char src[512];
    cr_assert_eq(synth_preset("llama", "tiny", &p, &err), KM_OK);
    p.vocab_from = shared("data/tokenizer/ggml-vocab-gpt-2.gguf", src, sizeof src);
    char *path = tmp_path("voc");
    struct gguf_file *f = write_and_open(&p, path);
    struct gguf_file *v = NULL;
    cr_assert_eq(gguf_open(src, &v, &err), KM_OK);
    int64_t copied = 0;
    for (int64_t i = 0; i < gguf_n_kv(v); i++) {
        const char *k = gguf_kv_key(v, i);
        if (strncmp(k, "tokenizer.", 10))
            continue;
        int64_t j = gguf_find_key(f, k);
        cr_assert_geq(j, 0, "%s not copied", k);
        uint64_t la, lb;
        const void *ra = gguf_kv_raw(v, i, &la), *rb = gguf_kv_raw(f, j, &lb);
        cr_assert(la == lb && memcmp(ra, rb, la) == 0, "%s differs", k);
        copied++;
    }
    cr_assert_eq(copied, 7);
    cr_assert_eq(gguf_find_tensor(f, "token_embd.weight")->ne[1], 50257);
    cr_assert_eq(gguf_find_tensor(f, "output.weight")->ne[1], 50257);
    uint32_t u;
    cr_assert_eq(gguf_get_u32(f, "llama.vocab_size", &u, &err), KM_OK);
    cr_assert_eq(u, 50257);
    gguf_close(v);
    gguf_close(f);
    unlink(path);

    p.vocab_from = "/nonexistent.gguf";
    cr_assert_eq(synth_write(&p, path, NULL, NULL, NULL, &err), KM_ENOTFOUND);
    cr_assert_str_eq(err.msg, "/nonexistent.gguf: No such file or directory");
    cr_assert_neq(access(path, F_OK), 0);
}

Test(synth, other_architectures_tiny)
{
    static const char *const archs[] = {"gemma3", "bert", "nomic-bert"};
    static const int n_tensors[] = {1 + 6 * 13 + 1, 5 + 2 * 16, 4 + 2 * 9};
    for (int a = 0; a < 3; a++) {
        struct synth_params p;
        cr_assert_eq(synth_preset(archs[a], "tiny", &p, &err), KM_OK);
        snprintf(p.ftype, sizeof p.ftype, "Q4_K_M");
        char *path = tmp_path(archs[a]);
        struct gguf_file *f = write_and_open(&p, path);
        cr_assert_eq(gguf_n_tensors(f), n_tensors[a], "%s", archs[a]);
        const char *s;
        cr_assert_eq(gguf_get_str(f, "general.architecture", &s, NULL, &err), KM_OK);
        cr_assert_str_eq(s, archs[a]);
        cr_assert_null(gguf_find_tensor(f, "output.weight"));
        if (a == 0) {
            uint32_t u;
            cr_assert_eq(gguf_get_u32(f, "gemma3.attention.key_length", &u, &err), KM_OK);
            cr_assert_eq(u, 128);
            cr_assert_eq(gguf_find_tensor(f, "blk.0.attn_q.weight")->ne[1], 256);
            cr_assert_eq(gguf_find_tensor(f, "blk.0.attn_q_norm.weight")->ne[0], 128);
            ASSERT_TYPE(f, "token_embd.weight", GGML_TYPE_Q6_K);
            ASSERT_TYPE(f, "blk.0.post_ffw_norm.weight", GGML_TYPE_F32);
        } else if (a == 1) {
            bool causal = true;
            cr_assert_eq(gguf_get_bool(f, "bert.attention.causal", &causal, &err), KM_OK);
            cr_assert(!causal);
            /* E = 128: every E-row matrix falls back from Q4_K to Q5_0 */
            ASSERT_TYPE(f, "blk.0.attn_q.weight", GGML_TYPE_Q5_0);
            ASSERT_TYPE(f, "blk.1.ffn_down.weight", GGML_TYPE_Q6_K);
            ASSERT_TYPE(f, "token_embd.weight", GGML_TYPE_Q8_0);
            ASSERT_TYPE(f, "position_embd.weight", GGML_TYPE_F16);
            ASSERT_TYPE(f, "blk.0.attn_q.bias", GGML_TYPE_F32);
            cr_assert_eq(gguf_get_str(f, "tokenizer.ggml.model", &s, NULL, &err), KM_OK);
            cr_assert_str_eq(s, "bert");
        } else {
            ASSERT_TYPE(f, "blk.0.attn_qkv.weight", GGML_TYPE_Q5_K);
            cr_assert_eq(gguf_find_tensor(f, "blk.0.attn_qkv.weight")->ne[1], 768);
            float base;
            cr_assert_eq(gguf_get_f32(f, "nomic-bert.rope.freq_base", &base, &err), KM_OK);
            cr_assert_eq(base, 1000.0f);
        }
        gguf_close(f);
        unlink(path);
    }
}

Test(synth, presets_and_validation)
{
    struct synth_params p;
    cr_assert_eq(synth_preset("llama", "llama-3.2-1b", &p, &err), KM_OK);
    cr_assert_eq(p.n_embd, 2048);
    cr_assert(p.tied);
    cr_assert_eq(synth_preset("gemma3", "gemma-3-4b", &p, &err), KM_OK);
    cr_assert_eq(p.head_dim, 256);
    cr_assert_eq(synth_preset("bert", "minilm-l6", &p, &err), KM_OK);
    cr_assert_eq(p.n_layer, 6);
    cr_assert_eq(synth_preset("llama", "gemma-3-1b", &p, &err), KM_EINVAL);
    cr_assert_str_eq(err.msg, "unknown shape 'gemma-3-1b' for architecture 'llama'");
    cr_assert_eq(synth_preset("llama", "tiny", &p, &err), KM_OK);
    p.n_head = 3;
    cr_assert_eq(synth_validate(&p, &err), KM_EINVAL);
    cr_assert_str_eq(err.msg, "dim 256 is not a multiple of heads 3");
    p.n_head = 4;
    snprintf(p.ftype, sizeof p.ftype, "Q3_K");
    cr_assert_eq(synth_validate(&p, &err), KM_EINVAL);
    cr_assert_str_eq(err.msg, "unknown type 'Q3_K' (F32 F16 BF16 Q8_0 Q4_0 Q4_K_M Q5_K_M Q6_K)");
}

/* ---- the CLI (the sanitized binary from tests/run.sh: $KM_BIN) ---------- */

struct run {
    int status;
    char out[8192], err[4096];
};

static void slurp(const char *path, char *buf, size_t n)
{
    FILE *fp = fopen(path, "r");
    size_t k = fp ? fread(buf, 1, n - 1, fp) : 0;
    buf[k] = 0;
    if (fp)
        fclose(fp);
    unlink(path);
}

static void run(struct run *r, const char *args)
{
    const char *bin = getenv("KM_BIN");
    if (!bin)
        cr_skip_test("KM_BIN not set (run through tests/run.sh)");
    char cmd[2048], o[64], e[64];
    snprintf(o, sizeof o, "/tmp/km-synth-%d.out", (int)getpid());
    snprintf(e, sizeof e, "/tmp/km-synth-%d.err", (int)getpid());
    snprintf(cmd, sizeof cmd, "%s models %s >%s 2>%s", bin, args, o, e);
    int st = system(cmd);
    r->status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    slurp(o, r->out, sizeof r->out);
    slurp(e, r->err, sizeof r->err);
}

Test(synth, cli_usage_and_errors)
{
    struct run r;
    run(&r, "synth --help");
    cr_assert_eq(r.status, 0);
    cr_assert(strncmp(r.out, "usage: kanoa-mlops models synth", 31) == 0, "%s", r.out);
    run(&r, "synth --bogus -o /tmp/x.gguf");
    cr_assert_eq(r.status, 2);
    cr_assert(strstr(r.err, "usage: kanoa-mlops models synth") != NULL, "%s", r.err);
    run(&r, "synth");
    cr_assert_eq(r.status, 2);
    cr_assert(strncmp(r.err, "kanoa-mlops models synth: -o FILE is required\n", 46) == 0, "%s", r.err);
    run(&r, "synth --type Q3_K -o /tmp/km-never.gguf");
    cr_assert_eq(r.status, 1);
    cr_assert_str_eq(r.err, "kanoa-mlops models synth: unknown type 'Q3_K' (F32 F16 BF16 Q8_0 Q4_0 Q4_K_M Q5_K_M Q6_K)\n");
    run(&r, "synth --layers x -o /tmp/km-never.gguf");
    cr_assert_eq(r.status, 2);
    cr_assert(strncmp(r.err, "kanoa-mlops models synth: --layers: 'x' is not a number in 1..16777216\n", 70) == 0, "%s", r.err);
    run(&r, "synth --arch bert --rope-scaling llama3 -o /tmp/km-never.gguf");
    cr_assert_eq(r.status, 1);
    cr_assert_str_eq(r.err, "kanoa-mlops models synth: --rope-scaling llama3 is for --arch llama only\n");
    run(&r, "info --help");
    cr_assert_eq(r.status, 0);
    cr_assert(strncmp(r.out, "usage: kanoa-mlops models info", 30) == 0);
    run(&r, "info");
    cr_assert_eq(r.status, 2);
    run(&r, "info /nonexistent.gguf");
    cr_assert_eq(r.status, 1);
    cr_assert_str_eq(r.err, "kanoa-mlops models info: /nonexistent.gguf: No such file or directory\n");
    cr_assert_eq(access("/tmp/km-never.gguf", F_OK), -1);
}

Test(synth, cli_synth_then_info)
{
    struct run r;
    char *path = tmp_path("cli");
    char args[512];
    snprintf(args, sizeof args, "synth --shape tiny --type Q4_K_M --untied --threads 2 -q -o %s", path);
    run(&r, args);
    cr_assert_eq(r.status, 0, "%s", r.err);
    char want[512];
    snprintf(want, sizeof want,
             "wrote %s: llama Q4_K_M, 1443104 parameters, 22 tensors, 512-token vocab, ", path);
    cr_assert(strncmp(r.out, want, strlen(want)) == 0, "%s", r.out);
    cr_assert_str_eq(r.err, "");
    snprintf(args, sizeof args, "info --ctx 1024 %s", path);
    run(&r, args);
    cr_assert_eq(r.status, 0, "%s", r.err);
    const char *body = strchr(r.out, '\n');
    cr_assert_not_null(body);
    cr_assert_str_eq(body + 1,
        "name:            synth-tiny\n"
        "architecture:    llama\n"
        "shape:           2 layers, embedding 256, 4 heads (2 kv, head dim 64)\n"
        "context length:  2048\n"
        "file type:       Q4_K_M (15)\n"
        "tensor types:    F32 6 (0.0 MiB), Q4_K 13 (0.6 MiB), Q6_K 3 (0.2 MiB)\n"
        "parameters:      1443104 (0.00 B), 22 tensors\n"
        "vocabulary:      512 tokens (gpt2)\n"
        "chat template:   llama3\n"
        "memory at ctx 1024: weights 0.9 MiB + KV cache 1.0 MiB (f16) = 1.9 MiB\n");
    /* a corrupted copy is rejected with the field and byte offset */
    FILE *fp = fopen(path, "r+b");
    cr_assert_not_null(fp);
    uint32_t bad = 7;
    fseek(fp, 4, SEEK_SET);
    fwrite(&bad, 4, 1, fp);
    fclose(fp);
    snprintf(args, sizeof args, "info %s", path);
    run(&r, args);
    cr_assert_eq(r.status, 1);
    snprintf(want, sizeof want,
             "kanoa-mlops models info: %s: field version at byte 4: version 7 is not supported (2 or 3)\n", path);
    cr_assert_str_eq(r.err, want);
    unlink(path);
}

Test(synth, cli_explicit_shape_flags)
{
    struct run r;
    char *path = tmp_path("flags");
    char args[512];
    snprintf(args, sizeof args,
             "synth --dim 512 --layers 1 --heads 8 --kv-heads 2 --ffn 1024 --ctx 256 --vocab 600 "
             "--type Q8_0 --tied --rope-scaling none --seed 7 --name custom -q -o %s", path);
    run(&r, args);
    cr_assert_eq(r.status, 0, "%s", r.err);
    struct gguf_file *f = NULL;
    cr_assert_eq(gguf_open(path, &f, &err), KM_OK, "%s", err.msg);
    const char *s;
    uint32_t u;
    cr_assert_eq(gguf_get_str(f, "general.name", &s, NULL, &err), KM_OK);
    cr_assert_str_eq(s, "custom");
    cr_assert_eq(gguf_get_u32(f, "llama.context_length", &u, &err), KM_OK);
    cr_assert_eq(u, 256);
    cr_assert_eq(gguf_get_u32(f, "general.file_type", &u, &err), KM_OK);
    cr_assert_eq(u, 7);
    cr_assert_null(gguf_find_tensor(f, "output.weight"));
    cr_assert_null(gguf_find_tensor(f, "rope_freqs.weight"));
    cr_assert_eq(gguf_n_tensors(f), 1 + 9 + 1);
    const struct gguf_tensor *k = gguf_find_tensor(f, "blk.0.attn_k.weight");
    cr_assert_eq(k->ne[0], 512);
    cr_assert_eq(k->ne[1], 128); /* 2 kv heads x 64 */
    cr_assert_eq(k->type, GGML_TYPE_Q8_0);
    cr_assert_eq(gguf_find_tensor(f, "token_embd.weight")->type, GGML_TYPE_Q8_0);
    cr_assert_eq(gguf_find_tensor(f, "token_embd.weight")->ne[1], 600);
    cr_assert_eq(gguf_find_tensor(f, "blk.0.ffn_down.weight")->ne[0], 1024);
    gguf_close(f);
    unlink(path);
}
