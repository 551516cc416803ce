/* ops.c - scalar reference kernels and dispatch (see ops.h). */
#include "engine/ops.h"

#include "engine/cpu.h"
#include "engine/quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void eng_rmsnorm(float *y, const float *x, const float *w, int n, float eps)
{
    double ss = 0;
    for (int i = 0; i < n; i++)
        ss += (double)x[i] * x[i];
    float scale = (float)(1.0 / sqrt(ss / n + eps));
    for (int i = 0; i < n; i++)
        y[i] = x[i] * scale * w[i];
}

void eng_rope_angles(float *cs, int pos, const float *inv_freq, int D)
{
    for (int i = 0; i < D / 2; i++) {
        double theta = (double)pos * inv_freq[i];
        cs[2 * i] = (float)cos(theta);
        cs[2 * i + 1] = (float)sin(theta);
    }
}

void eng_rope_pairs(float *v, int n_heads, int D, const float *cs)
{
    for (int h = 0; h < n_heads; h++) {
        float *p = v + (size_t)h * D;
        for (int i = 0; i < D / 2; i++) {
            float c = cs[2 * i], s = cs[2 * i + 1];
            float a = p[2 * i], b = p[2 * i + 1];
            p[2 * i] = a * c - b * s;
            p[2 * i + 1] = a * s + b * c;
        }
    }
}

void eng_softmax(float *x, int n)
{
    float mx = -INFINITY;
    for (int i = 0; i < n; i++)
        mx = x[i] > mx ? x[i] : mx;
    float sum = 0;
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - mx);
        sum += x[i];
    }
    for (int i = 0; i < n; i++)
        x[i] /= sum;
}

void eng_swiglu_scalar(float *a, const float *b, int n)
{
    for (int i = 0; i < n; i++)
        a[i] = a[i] / (1.0f + expf(-a[i])) * b[i];
}

void eng_store_f16(uint16_t *dst, const float *src, int n)
{
    for (int i = 0; i < n; i++)
        dst[i] = quant_f32_to_f16(src[i]);
}

float eng_dot_f16_scalar(const float *q, const uint16_t *k, int n)
{
    float s = 0;
    for (int i = 0; i < n; i++)
        s += q[i] * quant_f16_to_f32(k[i]);
    return s;
}

void eng_axpy_f16_scalar(float *out, float a, const uint16_t *v, int n)
{
    for (int i = 0; i < n; i++)
        out[i] += a * quant_f16_to_f32(v[i]);
}

void eng_attend_scalar(float *out, const float *q, const uint16_t *k, const uint16_t *v,
                       size_t stride, int rows, int r0, int n, int D, float scale,
                       float *scores)
{
    for (int j = 0; j < n; j++)
        scores[j] = eng_dot_f16_scalar(q, k + (size_t)((r0 + j) % rows) * stride, D) * scale;
    eng_softmax(scores, n);
    memset(out, 0, (size_t)D * sizeof *out);
    for (int j = 0; j < n; j++)
        eng_axpy_f16_scalar(out, scores[j], v + (size_t)((r0 + j) % rows) * stride, D);
}

static const struct eng_attn_kernels scalar_kernels = {
    eng_dot_f16_scalar, eng_axpy_f16_scalar, eng_attend_scalar, eng_swiglu_scalar,
};
static const struct eng_attn_kernels avx2_kernels = {
    eng_dot_f16_avx2, eng_axpy_f16_avx2, eng_attend_avx2, eng_swiglu_avx2,
};
static const struct eng_attn_kernels *active = &scalar_kernels;

bool eng_ops_select(bool force_scalar)
{
    const char *env = getenv("KANOA_KERNELS");
    bool scalar = force_scalar || (env && strcmp(env, "scalar") == 0);
    bool have = cpu_has_avx2_fma_f16c(); /* clang 14 rejects "f16c" in the builtin */
    active = (!scalar && have) ? &avx2_kernels : &scalar_kernels;
    return active == &avx2_kernels;
}

const struct eng_attn_kernels *eng_ops(void)
{
    return active;
}

void eng_attend_ring(float *out, const float *q, const uint16_t *k,
                     const uint16_t *v, size_t stride, int rows, int r0, int n,
                     int D, float scale, float *scores)
{
    active->attend(out, q, k, v, stride, rows, r0, n, D, scale, scores);
}

void eng_swiglu(float *a, const float *b, int n)
{
    active->swiglu(a, b, n);
}

void eng_attend_head(float *out, const float *q, const uint16_t *k,
                     const uint16_t *v, size_t stride, int n, int D,
                     float scale, float *scores)
{
    active->attend(out, q, k, v, stride, n, 0, n, D, scale, scores);
}
