/* bert_ops.h - private: the non-matmul kernels of the BERT-family encoders
 * (bert.c): residual/bias adds, LayerNorm, GELU, SiLU-gate and one
 * attention head over one sequence. Engine-internal.
 *
 * Each kernel has a scalar reference in bert_ops.c and an AVX2+FMA version
 * in bert_avx2.c; eng__bert_ops_select fills a table once per model (AVX2
 * when the quant kernels run AVX2). The two agree to float rounding (the
 * AVX2 exp/erf are polynomial approximations, max relative error ~2e-7 /
 * absolute 1.5e-7); tests/test_engine_bert.c compares them. A kernel's
 * result depends only on its arguments, so a given input gives the same
 * bits whatever else runs around it.
 *
 * Memory: nothing allocates; attention uses a caller scratch buffer of
 * eng__bert_attn_scratch(n_k_max, D) floats (one per thread).
 * Thread-safety: reentrant.
 */
#ifndef ENG_BERT_OPS_H
#define ENG_BERT_OPS_H

#include <stdbool.h>
#include <stddef.h>

#define BERT_ATT_ROWS 4      /* query rows per block of the AVX2 attention */
#define BERT_KEY_ALIGN 16    /* its transposed keys are padded to this */

/* One attention head of one sequence for a block of queries:
 * out[i] = softmax(scale * q[i] . k[j] over j < n_k) . v[j] for i < n_q. */
struct bert_attn {
    const float *q;           /* query row 0 of this head (D floats) */
    const float *k, *v;       /* key / value row 0 of the sequence, this head */
    size_t stride;            /* floats between consecutive rows of q, k, v */
    int n_q, n_k, D;
    float scale;
    float *out;               /* output row 0 (D floats) */
    size_t out_stride;        /* floats between output rows */
    float *scratch;           /* eng__bert_attn_scratch(>= n_k, D) floats */
};

struct bert_ops {
    /* y = (x + a) + b over n; b may be NULL; y may be x (no other overlap) */
    void (*add)(float *y, const float *x, const float *a, const float *b, int n);
    /* y = (x - mean) / sqrt(var + eps) * w + b over n (y may alias x) */
    void (*layernorm)(float *y, const float *x, const float *w, const float *b, int n,
                      float eps);
    /* x = GELU(x + bias) in place, exact erf form; bias may be NULL */
    void (*gelu)(float *x, const float *bias, int n);
    /* h = SiLU(g) * h */
    void (*silu_mul)(float *h, const float *g, int n);
    void (*attend)(const struct bert_attn *a);
};

/* Floats of attention scratch for up to n_k keys of head size D. */
size_t eng__bert_attn_scratch(int n_k, int D);

/* Fill ops with the AVX2 set when avx2 (and D suits it), else the reference. */
void eng__bert_ops_select(struct bert_ops *ops, bool avx2, int D);

void eng__bert_add_ref(float *y, const float *x, const float *a, const float *b, int n);
void eng__bert_layernorm_ref(float *y, const float *x, const float *w, const float *b,
                             int n, float eps);
void eng__bert_gelu_ref(float *x, const float *bias, int n);
void eng__bert_silu_mul_ref(float *h, const float *g, int n);
void eng__bert_attend_ref(const struct bert_attn *a);

void eng__bert_add_avx2(float *y, const float *x, const float *a, const float *b, int n);
void eng__bert_layernorm_avx2(float *y, const float *x, const float *w, const float *b,
                              int n, float eps);
void eng__bert_gelu_avx2(float *x, const float *bias, int n);
void eng__bert_silu_mul_avx2(float *h, const float *g, int n);
/* Needs D % 8 == 0. */
void eng__bert_attend_avx2(const struct bert_attn *a);

#endif
