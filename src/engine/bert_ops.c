/* bert_ops.c - scalar references of the encoder kernels and their selection
 * (see bert_ops.h). The AVX2 versions are in bert_avx2.c. */
#include "engine/bert_ops.h"

#include <math.h>
#include <string.h>

size_t eng__bert_attn_scratch(int n_k, int D)
{
    size_t ldk = ((size_t)n_k + BERT_KEY_ALIGN - 1) / BERT_KEY_ALIGN * BERT_KEY_ALIGN;
    return ((size_t)D + BERT_ATT_ROWS) * ldk;
}

void eng__bert_ops_select(struct bert_ops *ops, bool avx2, int D)
{
    *ops = (struct bert_ops){
        .add = avx2 ? eng__bert_add_avx2 : eng__bert_add_ref,
        .layernorm = avx2 ? eng__bert_layernorm_avx2 : eng__bert_layernorm_ref,
        .gelu = avx2 ? eng__bert_gelu_avx2 : eng__bert_gelu_ref,
        .silu_mul = avx2 ? eng__bert_silu_mul_avx2 : eng__bert_silu_mul_ref,
        .attend = avx2 && D % 8 == 0 ? eng__bert_attend_avx2 : eng__bert_attend_ref,
    };
}

void eng__bert_add_ref(float *y, const float *x, const float *a, const float *b, int n)
{
    for (int i = 0; i < n; i++)
        y[i] = b ? (x[i] + a[i]) + b[i] : x[i] + a[i];
}

/* Sums in double. */
void eng__bert_layernorm_ref(float *y, const float *x, const float *w, const float *b,
                             int n, float eps)
{
    double s = 0, s2 = 0;
    for (int i = 0; i < n; i++)
        s += x[i];
    double mean = s / n;
    for (int i = 0; i < n; i++)
        s2 += ((double)x[i] - mean) * ((double)x[i] - mean);
    float inv = (float)(1.0 / sqrt(s2 / n + (double)eps));
    for (int i = 0; i < n; i++)
        y[i] = ((x[i] - (float)mean) * inv) * w[i] + b[i];
}

void eng__bert_gelu_ref(float *x, const float *bias, int n)
{
    for (int i = 0; i < n; i++) {
        float v = x[i] + (bias ? bias[i] : 0.0f);
        x[i] = 0.5f * v * (1.0f + erff(v * (float)M_SQRT1_2));
    }
}

void eng__bert_silu_mul_ref(float *h, const float *g, int n)
{
    for (int i = 0; i < n; i++)
        h[i] = g[i] / (1.0f + expf(-g[i])) * h[i];
}

/* Per query: scores, max, exp, then out = sum_j (p_j / sum) v_j. */
void eng__bert_attend_ref(const struct bert_attn *a)
{
    float *sc = a->scratch;
    for (int i = 0; i < a->n_q; i++) {
        const float *q = a->q + (size_t)i * a->stride;
        float mx = -INFINITY;
        for (int j = 0; j < a->n_k; j++) {
            const float *k = a->k + (size_t)j * a->stride;
            float d = 0;
            for (int t = 0; t < a->D; t++)
                d += q[t] * k[t];
            sc[j] = d * a->scale;
            mx = sc[j] > mx ? sc[j] : mx;
        }
        float sum = 0;
        for (int j = 0; j < a->n_k; j++) {
            sc[j] = expf(sc[j] - mx);
            sum += sc[j];
        }
        float *o = a->out + (size_t)i * a->out_stride;
        memset(o, 0, (size_t)a->D * sizeof *o);
        for (int j = 0; j < a->n_k; j++) {
            const float *v = a->v + (size_t)j * a->stride;
            float p = sc[j] / sum;
            for (int t = 0; t < a->D; t++)
                o[t] += p * v[t];
        }
    }
}
