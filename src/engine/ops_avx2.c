/* ops_avx2.c - AVX2+FMA+F16C attention kernels (see ops.h); compiled with
 * -mavx2 -mfma -mf16c and only called after eng_ops_select's cpuid check. */
#include "engine/ops.h"

#include "engine/quant.h"
#include "engine/simd_avx2.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

float eng_dot_f16_avx2(const float *q, const uint16_t *k, int n)
{
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 k0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(k + i)));
        __m256 k1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(k + i + 8)));
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), k0, acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 8), k1, acc1);
    }
    for (; i + 8 <= n; i += 8) {
        __m256 k0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(k + i)));
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), k0, acc0);
    }
    __m256 acc = _mm256_add_ps(acc0, acc1);
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    s = _mm_hadd_ps(s, s);
    s = _mm_hadd_ps(s, s);
    float r = _mm_cvtss_f32(s);
    for (; i < n; i++)
        r += q[i] * quant_f16_to_f32(k[i]);
    return r;
}

void eng_axpy_f16_avx2(float *out, float a, const uint16_t *v, int n)
{
    __m256 va = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(v + i)));
        _mm256_storeu_ps(out + i, _mm256_fmadd_ps(va, x, _mm256_loadu_ps(out + i)));
    }
    for (; i < n; i++)
        out[i] += a * quant_f16_to_f32(v[i]);
}

void eng_swiglu_avx2(float *a, const float *b, int n)
{
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(a + i, simd_silu_mul_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i)));
    if (i == n)
        return;
    float ta[8] = {0}, tb[8] = {0};
    memcpy(ta, a + i, (size_t)(n - i) * sizeof *a);
    memcpy(tb, b + i, (size_t)(n - i) * sizeof *b);
    _mm256_storeu_ps(ta, simd_silu_mul_ps(_mm256_loadu_ps(ta), _mm256_loadu_ps(tb)));
    memcpy(a + i, ta, (size_t)(n - i) * sizeof *a);
}

/* ---- whole-head attention ------------------------------------------------ */

/* scores[j] = exp(scores[j] - mx); returns their sum. */
static float exp_sum(float *scores, int n, float mx)
{
    __m256 vmx = _mm256_set1_ps(mx), acc = _mm256_setzero_ps();
    int j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256 e = simd_exp_ps(_mm256_sub_ps(_mm256_loadu_ps(scores + j), vmx));
        _mm256_storeu_ps(scores + j, e);
        acc = _mm256_add_ps(acc, e);
    }
    float tail[8] = {0};
    for (int t = 0; j + t < n; t++)
        tail[t] = scores[j + t] - mx;
    __m256 e = simd_exp_ps(_mm256_loadu_ps(tail));
    _mm256_storeu_ps(tail, e);
    float sum = 0;
    for (int t = 0; j + t < n; t++) {
        scores[j + t] = tail[t];
        sum += tail[t];
    }
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    s = _mm_hadd_ps(s, s);
    s = _mm_hadd_ps(s, s);
    return _mm_cvtss_f32(s) + sum;
}

/* acc[0..7] += sum_j p[j] v_j[d0 .. d0+64) over n rows from v. */
static inline void pv64(__m256 *acc, const float *p, const uint16_t *v, size_t stride,
                        int n, int d0)
{
    __m256 a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    __m256 a4 = acc[4], a5 = acc[5], a6 = acc[6], a7 = acc[7];
    for (int j = 0; j < n; j++) {
        const __m128i *r = (const __m128i *)(v + (size_t)j * stride + d0);
        __m256 w = _mm256_set1_ps(p[j]);
        a0 = _mm256_fmadd_ps(w, _mm256_cvtph_ps(_mm_loadu_si128(r + 0)), a0);
        a1 = _mm256_fmadd_ps(w, _mm256_cvtph_ps(_mm_loadu_si128(r + 1)), a1);
        a2 = _mm256_fmadd_ps(w, _mm256_cvtph_ps(_mm_loadu_si128(r + 2)), a2);
        a3 = _mm256_fmadd_ps(w, _mm256_cvtph_ps(_mm_loadu_si128(r + 3)), a3);
        a4 = _mm256_fmadd_ps(w, _mm256_cvtph_ps(_mm_loadu_si128(r + 4)), a4);
        a5 = _mm256_fmadd_ps(w, _mm256_cvtph_ps(_mm_loadu_si128(r + 5)), a5);
        a6 = _mm256_fmadd_ps(w, _mm256_cvtph_ps(_mm_loadu_si128(r + 6)), a6);
        a7 = _mm256_fmadd_ps(w, _mm256_cvtph_ps(_mm_loadu_si128(r + 7)), a7);
    }
    acc[0] = a0; acc[1] = a1; acc[2] = a2; acc[3] = a3;
    acc[4] = a4; acc[5] = a5; acc[6] = a6; acc[7] = a7;
}

/* Lane i = the sum of the 8 lanes of a[i]. */
static inline __m256 hsum8x8(const __m256 a[8])
{
    __m256 u0 = _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3]));
    __m256 u1 = _mm256_hadd_ps(_mm256_hadd_ps(a[4], a[5]), _mm256_hadd_ps(a[6], a[7]));
    return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

/* scores[j] = scale * q . (row j from k), j < n: 8 rows at a time into one
 * vector of 8 sums when D is a multiple of 8, else one dot per row. */
static void scores_run(float *scores, const float *q, const uint16_t *k, size_t stride,
                       int n, int D, float scale)
{
    __m256 vs = _mm256_set1_ps(scale);
    int j = 0;
    for (; D % 8 == 0 && j + 8 <= n; j += 8) {
        const uint16_t *r = k + (size_t)j * stride;
        __m256 acc[8];
        #pragma GCC unroll 8
        for (int c = 0; c < 8; c++)
            acc[c] = _mm256_setzero_ps();
        for (int d = 0; d < D; d += 8) {
            __m256 qv = _mm256_loadu_ps(q + d);
            #pragma GCC unroll 8
            for (int c = 0; c < 8; c++)
                acc[c] = _mm256_fmadd_ps(qv, _mm256_cvtph_ps(_mm_loadu_si128(
                                                 (const __m128i *)(r + (size_t)c * stride + d))),
                                         acc[c]);
        }
        _mm256_storeu_ps(scores + j, _mm256_mul_ps(hsum8x8(acc), vs));
    }
    for (; j < n; j++)
        scores[j] = eng_dot_f16_avx2(q, k + (size_t)j * stride, D) * scale;
}

void eng_attend_avx2(float *out, const float *q, const uint16_t *k, const uint16_t *v,
                     size_t stride, int rows, int r0, int n, int D, float scale,
                     float *scores)
{
    /* the ring as two flat runs: rows r0.. (n1 keys), then rows 0.. */
    int n1 = rows - r0 < n ? rows - r0 : n;
    scores_run(scores, q, k + (size_t)r0 * stride, stride, n1, D, scale);
    scores_run(scores + n1, q, k, stride, n - n1, D, scale);
    float mx = -INFINITY;
    for (int j = 0; j < n; j++)
        mx = scores[j] > mx ? scores[j] : mx;
    float inv = 1.0f / exp_sum(scores, n, mx);
    int d0 = 0;
    for (; d0 + 64 <= D; d0 += 64) {
        __m256 acc[8];
        for (int c = 0; c < 8; c++)
            acc[c] = _mm256_setzero_ps();
        pv64(acc, scores, v + (size_t)r0 * stride, stride, n1, d0);
        pv64(acc, scores + n1, v, stride, n - n1, d0);
        for (int c = 0; c < 8; c++)
            _mm256_storeu_ps(out + d0 + 8 * c, _mm256_mul_ps(acc[c], _mm256_set1_ps(inv)));
    }
    if (d0 < D) {   /* head dims that are not a multiple of 64 */
        int rest = D - d0;
        memset(out + d0, 0, (size_t)rest * sizeof *out);
        for (int j = 0; j < n; j++) {
            int row = j < n1 ? r0 + j : j - n1;
            eng_axpy_f16_avx2(out + d0, scores[j] * inv, v + (size_t)row * stride + d0, rest);
        }
    }
}
