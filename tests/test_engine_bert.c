/* test_engine_bert.c - BERT-family encoders (bert, nomic-bert) and eng_embed:
 * loading and task, exact tokenization framing, L2 norm, pooling, batch
 * independence (bit-exact, also for passes long enough to be cut into
 * several matmul column blocks and attention query blocks, and for a
 * one-token input), thread-count independence, input errors, and the AVX2
 * encoder kernels against their scalar references.
 * Models are small random GGUFs written with synth_write (the bge tokenizer
 * from $KM_SHARED/data/tokenizer). Agreement with the NumPy reference is
 * checked by tests/ref (ref_bert.py). */
#include "base/mem.h"
#include "engine/bert_ops.h"
#include "engine/engine.h"
#include "engine/quant.h"
#include "engine/synth.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

TestSuite(engine_bert, .timeout = 240);

static char vocab[512];

static const char *bge_vocab(void)
{
    const char *sh = getenv("KM_SHARED");
    snprintf(vocab, sizeof vocab, "%s/data/tokenizer/ggml-vocab-bert-bge.gguf",
             sh ? sh : "../shared");
    return vocab;
}

static void write_model(const char *arch, const char *path, const char *ftype)
{
    struct synth_params p;
    struct km_err err;
    cr_assert_eq(synth_preset(arch, "tiny", &p, &err), KM_OK, "%s", km_err_text(&err));
    p.vocab_from = bge_vocab();
    p.seed = 11;
    snprintf(p.ftype, sizeof p.ftype, "%s", ftype);
    int rc = synth_write(&p, path, NULL, NULL, NULL, &err);
    cr_assert_eq(rc, KM_OK, "synth: %s", km_err_text(&err));
}

static struct eng_model *open_model(const char *arch, const char *ftype, int threads,
                                    int n_batch, char *path, size_t cap)
{
    snprintf(path, cap, "/tmp/km-bert-test-%d-%s-%s.gguf", (int)getpid(), arch, ftype);
    write_model(arch, path, ftype);
    struct eng_load_params p;
    eng_load_params_default(&p);
    p.path = path;
    p.n_threads = threads;
    p.n_batch = n_batch;
    struct eng_model *m = NULL;
    struct km_err err;
    int rc = eng_model_open(&p, &m, &err);
    cr_assert_eq(rc, KM_OK, "open: %s", km_err_text(&err));
    return m;
}

static void tokens(struct eng_model *m, const char *text, int32_t **ids, size_t *n)
{
    struct km_err err;
    int rc = eng_tokenize(m, text, strlen(text), true, false, ids, n, &err);
    cr_assert_eq(rc, KM_OK, "%s", km_err_text(&err));
}

static const char *texts[] = {
    "hello world", "The quick brown fox jumps over the lazy dog.",
    "Führer", "a", "embeddings are vectors of floats",
};
#define N_TEXTS (sizeof texts / sizeof *texts)

struct batch {
    int32_t *ids[N_TEXTS];
    size_t n[N_TEXTS];
};

static void batch_init(struct eng_model *m, struct batch *b)
{
    for (size_t i = 0; i < N_TEXTS; i++)
        tokens(m, texts[i], &b->ids[i], &b->n[i]);
}

static void batch_free(struct batch *b)
{
    for (size_t i = 0; i < N_TEXTS; i++)
        km_free(b->ids[i]);
}

static float *embed_all(struct eng_model *m, struct batch *b, size_t first, size_t n)
{
    struct eng_model_info info;
    eng_model_info(m, &info);
    float *out = km_calloc(n * (size_t)info.n_embd, sizeof *out);
    struct km_err err;
    int rc = eng_embed(m, (const int32_t *const *)b->ids + first, b->n + first, n, out, &err);
    cr_assert_eq(rc, KM_OK, "embed: %s", km_err_text(&err));
    return out;
}

Test(engine_bert, load_info_and_framing)
{
    char path[256];
    struct eng_model *m = open_model("bert", "F16", 2, 0, path, sizeof path);
    struct eng_model_info info;
    eng_model_info(m, &info);
    cr_assert_str_eq(info.arch, "bert");
    cr_assert_eq(info.task, ENG_TASK_EMBED);
    cr_assert_eq(info.n_embd, 128);
    cr_assert_eq(info.n_ctx, 128);
    int32_t *ids;
    size_t n;
    tokens(m, "hello world", &ids, &n);
    cr_assert_eq(n, 4);
    cr_assert_eq(ids[0], 101);
    cr_assert_eq(ids[1], 7592);
    cr_assert_eq(ids[2], 2088);
    cr_assert_eq(ids[3], 102);
    km_free(ids);
    struct eng_seq *s = NULL;
    struct km_err err;
    cr_assert_eq(eng_seq_new(m, 0, &s, &err), KM_EUNSUPPORTED);
    eng_model_close(m);
    unlink(path);
}

static void check_unit_norm(const float *v, int n)
{
    double s = 0;
    for (int i = 0; i < n; i++) {
        cr_assert(isfinite(v[i]));
        s += (double)v[i] * v[i];
    }
    cr_assert(fabs(sqrt(s) - 1.0) < 1e-5, "norm %f", sqrt(s));
}

static void check_batch_independence(const char *arch, const char *ftype)
{
    char path[256];
    struct eng_model *m = open_model(arch, ftype, 2, 16, path, sizeof path);
    struct eng_model_info info;
    eng_model_info(m, &info);
    size_t E = (size_t)info.n_embd;
    struct batch b;
    batch_init(m, &b);
    float *all = embed_all(m, &b, 0, N_TEXTS);
    for (size_t i = 0; i < N_TEXTS; i++) {
        check_unit_norm(all + i * E, (int)E);
        float *one = embed_all(m, &b, i, 1);
        cr_assert_eq(memcmp(one, all + i * E, E * sizeof *one), 0,
                     "%s %s: input %zu differs alone vs in a batch", arch, ftype, i);
        km_free(one);
    }
    /* distinct inputs give distinct vectors */
    cr_assert_neq(memcmp(all, all + E, E * sizeof *all), 0);
    float *again = embed_all(m, &b, 0, N_TEXTS);
    cr_assert_eq(memcmp(again, all, N_TEXTS * E * sizeof *all), 0);
    km_free(again);
    km_free(all);
    batch_free(&b);
    eng_model_close(m);
    unlink(path);
}

Test(engine_bert, batch_independent_bert_f16) { check_batch_independence("bert", "F16"); }
Test(engine_bert, batch_independent_bert_q8) { check_batch_independence("bert", "Q8_0"); }
Test(engine_bert, batch_independent_nomic_f16) { check_batch_independence("nomic-bert", "F16"); }
Test(engine_bert, batch_independent_nomic_q4k) { check_batch_independence("nomic-bert", "Q4_K_M"); }

Test(engine_bert, threads_do_not_change_vectors)
{
    char p1[256], p2[256];
    struct eng_model *m1 = open_model("bert", "F32", 1, 0, p1, sizeof p1);
    struct batch b;
    batch_init(m1, &b);
    float *v1 = embed_all(m1, &b, 0, N_TEXTS);
    eng_model_close(m1);
    struct eng_model *m2 = open_model("bert", "F32", 3, 0, p2, sizeof p2);
    float *v2 = embed_all(m2, &b, 0, N_TEXTS);
    cr_assert_eq(memcmp(v1, v2, N_TEXTS * 128 * sizeof *v1), 0);
    km_free(v1);
    km_free(v2);
    batch_free(&b);
    eng_model_close(m2);
    unlink(p1);
}

/* CLS pooling with bidirectional attention: a later token changes [CLS]'s vector. */
Test(engine_bert, attention_is_bidirectional)
{
    char path[256];
    struct eng_model *m = open_model("bert", "F16", 2, 0, path, sizeof path);
    const int32_t a[] = {101, 7592, 2088, 102}, c[] = {101, 7592, 7592, 102};
    const int32_t *ids[] = {a, c};
    size_t n[] = {4, 4};
    float out[2 * 128];
    struct km_err err;
    cr_assert_eq(eng_embed(m, ids, n, 2, out, &err), KM_OK, "%s", km_err_text(&err));
    cr_assert_neq(memcmp(out, out + 128, 128 * sizeof *out), 0);
    eng_model_close(m);
    unlink(path);
}

Test(engine_bert, input_errors)
{
    char path[256];
    struct eng_model *m = open_model("bert", "F16", 2, 0, path, sizeof path);
    int32_t *big = km_calloc(129, sizeof *big);
    for (int i = 0; i < 129; i++)
        big[i] = 1000 + i;
    const int32_t *ids[] = {big};
    size_t n[] = {129};
    float out[128];
    struct km_err err;
    cr_assert_eq(eng_embed(m, ids, n, 1, out, &err), KM_ERANGE);
    cr_assert_str_eq(km_err_text(&err), "input 0 has 129 tokens, more than this "
                     "model's maximum of 128");
    n[0] = 128;
    cr_assert_eq(eng_embed(m, ids, n, 1, out, &err), KM_OK, "%s", km_err_text(&err));
    n[0] = 0;
    cr_assert_eq(eng_embed(m, ids, n, 1, out, &err), KM_EINVAL);
    big[0] = 40000;
    n[0] = 3;
    cr_assert_eq(eng_embed(m, ids, n, 1, out, &err), KM_EINVAL);
    cr_assert_str_eq(km_err_text(&err), "token id 40000 is outside the vocabulary (0..30521)");
    km_free(big);
    eng_model_close(m);
    unlink(path);
}

/* Inputs of 90, 30, 1, 5, 128 and 70 ids: passes of 90+30+1+5 = 126 and
 * 128 tokens are cut into several column blocks and query blocks; every
 * vector must equal the input's vector embedded alone (1 thread), with 1, 2
 * and 3 threads. */
static void check_long_passes(const char *arch, const char *ftype)
{
    static const size_t lens[] = {90, 30, 1, 5, 128, 70};
    enum { N = sizeof lens / sizeof *lens };
    int32_t *ids[N];
    size_t n[N];
    for (size_t s = 0; s < N; s++) {
        ids[s] = km_calloc(lens[s], sizeof **ids);
        n[s] = lens[s];
        for (size_t i = 0; i < lens[s]; i++)
            ids[s][i] = (int32_t)(1000 + (s * 7919 + i * 104729) % 20000);
    }
    char path[256];
    float *alone = NULL;
    struct km_err err;
    for (int threads = 1; threads <= 3; threads++) {
        struct eng_model *m = open_model(arch, ftype, threads, 0, path, sizeof path);
        struct eng_model_info info;
        eng_model_info(m, &info);
        size_t E = (size_t)info.n_embd;
        if (!alone) {
            alone = km_calloc(N * E, sizeof *alone);
            for (size_t s = 0; s < N; s++)
                cr_assert_eq(eng_embed(m, (const int32_t *const *)ids + s, n + s, 1,
                                       alone + s * E, &err), KM_OK, "%s", km_err_text(&err));
        }
        float *all = km_calloc(N * E, sizeof *all);
        cr_assert_eq(eng_embed(m, (const int32_t *const *)ids, n, N, all, &err), KM_OK,
                     "%s", km_err_text(&err));
        for (size_t s = 0; s < N; s++) {
            check_unit_norm(all + s * E, (int)E);
            cr_assert_eq(memcmp(all + s * E, alone + s * E, E * sizeof *all), 0,
                         "%s %s, %d threads: input %zu (%zu ids) differs in a batch",
                         arch, ftype, threads, s, lens[s]);
        }
        km_free(all);
        eng_model_close(m);
        unlink(path);
    }
    km_free(alone);
    for (size_t s = 0; s < N; s++)
        km_free(ids[s]);
}

Test(engine_bert, long_passes_bert_f16) { check_long_passes("bert", "F16"); }
Test(engine_bert, long_passes_bert_q8) { check_long_passes("bert", "Q8_0"); }
Test(engine_bert, long_passes_nomic_q4k) { check_long_passes("nomic-bert", "Q4_K_M"); }

/* A pass may not exceed the model's position table. */
Test(engine_bert, context_longer_than_positions)
{
    char path[256];
    snprintf(path, sizeof path, "/tmp/km-bert-test-%d-ctx.gguf", (int)getpid());
    write_model("bert", path, "F16");
    struct eng_load_params p;
    eng_load_params_default(&p);
    p.path = path;
    p.n_threads = 1;
    p.n_ctx = 256;
    struct eng_model *m = NULL;
    struct km_err err;
    cr_assert_eq(eng_model_open(&p, &m, &err), KM_EINVAL);
    cr_assert(strstr(km_err_text(&err), "context 256 is longer than the model's 128 positions"),
              "%s", km_err_text(&err));
    unlink(path);
}

/* ---- AVX2 kernels against the scalar references ---------------------------- */

static float frand(unsigned *s)
{
    *s = *s * 1103515245u + 12345u;
    return (float)((*s >> 8) & 0xffff) / 32768.0f - 1.0f;
}

static bool have_avx2(void)
{
    return quant_kernels_force(QUANT_ISA_AVX2);
}

static void assert_close(const float *a, const float *b, int n, float tol, const char *what)
{
    for (int i = 0; i < n; i++) {
        float d = fabsf(a[i] - b[i]);
        cr_assert(d <= tol * (1.0f + fabsf(b[i])), "%s[%d]: %.9g vs %.9g", what, i, a[i], b[i]);
    }
}

Test(engine_bert, avx2_elementwise_match_reference)
{
    if (!have_avx2())
        return;
    unsigned seed = 7;
    static const int sizes[] = {1, 7, 8, 21, 384};
    for (size_t t = 0; t < sizeof sizes / sizeof *sizes; t++) {
        int n = sizes[t];
        float x[384], w[384], b[384], y0[384], y1[384];
        for (int i = 0; i < n; i++) {
            x[i] = 6.0f * frand(&seed);
            w[i] = frand(&seed);
            b[i] = frand(&seed);
        }
        eng__bert_add_ref(y0, x, w, b, n);
        eng__bert_add_avx2(y1, x, w, b, n);
        cr_assert_eq(memcmp(y0, y1, (size_t)n * sizeof *y0), 0, "add %d", n);
        memcpy(y1, x, sizeof x);
        eng__bert_add_avx2(y1, y1, w, NULL, n);   /* in place, no second addend */
        for (int i = 0; i < n; i++)
            cr_assert_eq(y1[i], x[i] + w[i]);
        eng__bert_layernorm_ref(y0, x, w, b, n, 1e-12f);
        eng__bert_layernorm_avx2(y1, x, w, b, n, 1e-12f);
        assert_close(y1, y0, n, 2e-5f, "layernorm");
        memcpy(y0, x, sizeof x);
        memcpy(y1, x, sizeof x);
        eng__bert_gelu_ref(y0, b, n);
        eng__bert_gelu_avx2(y1, b, n);
        assert_close(y1, y0, n, 1e-6f, "gelu");
        memcpy(y0, x, sizeof x);
        memcpy(y1, x, sizeof x);
        eng__bert_silu_mul_ref(y0, w, n);
        eng__bert_silu_mul_avx2(y1, w, n);
        assert_close(y1, y0, n, 1e-6f, "silu_mul");
    }
    /* far tails: exp underflow and overflow clamp, GELU's negative side */
    float big[8] = {-100, -30, -9, -3.5f, 3.5f, 9, 30, 100}, g0[8], g1[8];
    memcpy(g0, big, sizeof big);
    memcpy(g1, big, sizeof big);
    eng__bert_gelu_ref(g0, NULL, 8);
    eng__bert_gelu_avx2(g1, NULL, 8);
    for (int i = 0; i < 8; i++)
        cr_assert(fabsf(g1[i] - g0[i]) <= 1e-6f * (1.0f + fabsf(g0[i])), "gelu(%g)", big[i]);
    quant_kernels_init();
}

static void attend_case(int n_q, int n_k, int D, unsigned seed)
{
    int rows = n_k > n_q ? n_k : n_q, stride = 3 * D + 5;
    float *qkv = km_calloc((size_t)rows * stride, sizeof(float));
    float *o0 = km_calloc((size_t)n_q * D, sizeof(float));
    float *o1 = km_calloc((size_t)n_q * D, sizeof(float));
    float *scr = km_calloc(eng__bert_attn_scratch(n_k, D), sizeof(float));
    for (int i = 0; i < rows * stride; i++)
        qkv[i] = 2.0f * frand(&seed);
    struct bert_attn a = {.q = qkv, .k = qkv + D, .v = qkv + 2 * D, .stride = (size_t)stride,
                          .n_q = n_q, .n_k = n_k, .D = D, .scale = 1.0f / sqrtf((float)D),
                          .out = o0, .out_stride = (size_t)D, .scratch = scr};
    eng__bert_attend_ref(&a);
    a.out = o1;
    eng__bert_attend_avx2(&a);
    char what[64];
    snprintf(what, sizeof what, "attend q%d k%d D%d", n_q, n_k, D);
    assert_close(o1, o0, n_q * D, 1e-5f, what);
    km_free(qkv);
    km_free(o0);
    km_free(o1);
    km_free(scr);
}

Test(engine_bert, avx2_attention_matches_reference)
{
    if (!have_avx2())
        return;
    static const int cases[][3] = {
        {1, 1, 32}, {3, 5, 32}, {4, 17, 32}, {7, 128, 32}, {64, 128, 32},
        {5, 33, 64}, {2, 16, 24}, {9, 100, 8},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        attend_case(cases[i][0], cases[i][1], cases[i][2], 100 + (unsigned)i);
    quant_kernels_init();
}
