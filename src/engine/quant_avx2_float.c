/* quant_avx2_float.c - AVX2+FMA+F16C kernels for float weight types (F32,
 * F16, BF16) against f32 activations: the decode dots and the prefill
 * matmuls. Installed by quant__avx2_kernels (quant_avx2.c) only after
 * cpu_has_avx2_fma_f16c(); each kernel computes what its scalar twin in
 * quant_ref.c computes, in a different accumulation order
 * (tests/test_quant.c checks every one).
 */
#include "engine/quant_int.h"
#include "engine/simd_avx2.h"

#include <immintrin.h>
#include <string.h>

/* ---- float rows ---------------------------------------------------------- */

static float dot_f32(int64_t n, const void *w, const void *a)
{
    const float *x = w, *y = a;
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8), s1);
    }
    float s = hsum_ps(_mm256_add_ps(s0, s1));
    for (; i < n; i++)
        s += x[i] * y[i];
    return s;
}

static inline __m256 load_f16x8(const uint8_t *p)
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

static inline __m256 load_bf16x8(const uint8_t *p)
{
    __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

static float dot_f16(int64_t n, const void *w, const void *a)
{
    const uint8_t *x = w;
    const float *y = a;
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    __m256 s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(load_f16x8(x + 2 * i), _mm256_loadu_ps(y + i), s0);
        s1 = _mm256_fmadd_ps(load_f16x8(x + 2 * i + 16), _mm256_loadu_ps(y + i + 8), s1);
        s2 = _mm256_fmadd_ps(load_f16x8(x + 2 * i + 32), _mm256_loadu_ps(y + i + 16), s2);
        s3 = _mm256_fmadd_ps(load_f16x8(x + 2 * i + 48), _mm256_loadu_ps(y + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8)
        s0 = _mm256_fmadd_ps(load_f16x8(x + 2 * i), _mm256_loadu_ps(y + i), s0);
    float s = hsum_ps(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; i++) {
        uint16_t h;
        memcpy(&h, x + 2 * i, 2);
        s += f16(h) * y[i];
    }
    return s;
}

static float dot_bf16(int64_t n, const void *w, const void *a)
{
    const uint8_t *x = w;
    const float *y = a;
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(load_bf16x8(x + 2 * i), _mm256_loadu_ps(y + i), s0);
        s1 = _mm256_fmadd_ps(load_bf16x8(x + 2 * i + 16), _mm256_loadu_ps(y + i + 8), s1);
    }
    float s = hsum_ps(_mm256_add_ps(s0, s1));
    for (; i < n; i++) {
        uint16_t h;
        memcpy(&h, x + 2 * i, 2);
        s += quant_bf16_to_f32(h) * y[i];
    }
    return s;
}

static inline __attribute__((always_inline)) __m256 load_w8(uint32_t t, const uint8_t *x, int64_t i)
{
    if (t == GGML_TYPE_F16)
        return load_f16x8(x + 2 * i);
    if (t == GGML_TYPE_BF16)
        return load_bf16x8(x + 2 * i);
    return _mm256_loadu_ps((const float *)x + i);
}

static inline float load_w1(uint32_t t, const uint8_t *x, int64_t e)
{
    uint16_t h;
    if (t == GGML_TYPE_F32)
        return ((const float *)x)[e];
    memcpy(&h, x + 2 * e, 2);
    return t == GGML_TYPE_F16 ? f16(h) : quant_bf16_to_f32(h);
}

/* F16 / BF16 / F32 weights x f32 activations, register-tiled: 2 rows x 6
 * columns of accumulators, so each converted weight vector feeds 6 FMAs and
 * each activation load feeds 2 (a partial tile re-reads row/column 0 and
 * does not store it). */
#define FT_ROWS 2
#define FT_COLS 6

static inline __attribute__((always_inline)) void
float_tile(uint32_t t, int64_t k, const uint8_t *const *xr, const float *const *yp,
           int nrt, int nct, float *out, int64_t os, int64_t r0, int64_t j0)
{
    __m256 acc[FT_ROWS][FT_COLS];
    #pragma GCC unroll 8
    for (int a = 0; a < FT_ROWS; a++)
        for (int j = 0; j < FT_COLS; j++)
            acc[a][j] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= k; i += 8) {
        __m256 w0 = load_w8(t, xr[0], i), w1 = load_w8(t, xr[1], i);
        #pragma GCC unroll 8
        for (int j = 0; j < FT_COLS; j++) {
            __m256 y = _mm256_loadu_ps(yp[j] + i);
            acc[0][j] = _mm256_fmadd_ps(w0, y, acc[0][j]);
            acc[1][j] = _mm256_fmadd_ps(w1, y, acc[1][j]);
        }
    }
    for (int a = 0; a < nrt; a++) {
        for (int j = 0; j < nct; j++) {
            float s = hsum_ps(acc[a][j]);
            for (int64_t e = i; e < k; e++)
                s += load_w1(t, xr[a], e) * yp[j][e];
            out[(j0 + j) * os + r0 + a] = s;
        }
    }
}

static inline __attribute__((always_inline)) void
mm_float_rows(uint32_t t, int64_t k, const void *w, size_t rs, int64_t nr,
              const void *a, size_t as, int64_t na, float *out, int64_t os)
{
    for (int64_t j0 = 0; j0 < na; j0 += FT_COLS) {
        int nct = na - j0 < FT_COLS ? (int)(na - j0) : FT_COLS;
        const float *yp[FT_COLS];
        for (int j = 0; j < FT_COLS; j++)
            yp[j] = (const float *)((const uint8_t *)a + (size_t)(j0 + (j < nct ? j : 0)) * as);
        for (int64_t r0 = 0; r0 < nr; r0 += FT_ROWS) {
            int nrt = nr - r0 < FT_ROWS ? (int)(nr - r0) : FT_ROWS;
            const uint8_t *xr[FT_ROWS];
            for (int q = 0; q < FT_ROWS; q++)
                xr[q] = (const uint8_t *)w + (size_t)(r0 + (q < nrt ? q : 0)) * rs;
            float_tile(t, k, xr, yp, nrt, nct, out, os, r0, j0);
        }
    }
}

static void mm_f16(int64_t k, const void *w, size_t rs, int64_t nr, const void *a,
                   size_t as, int64_t na, float *out, int64_t os)
{
    mm_float_rows(GGML_TYPE_F16, k, w, rs, nr, a, as, na, out, os);
}

static void mm_bf16(int64_t k, const void *w, size_t rs, int64_t nr, const void *a,
                    size_t as, int64_t na, float *out, int64_t os)
{
    mm_float_rows(GGML_TYPE_BF16, k, w, rs, nr, a, as, na, out, os);
}

static void mm_f32(int64_t k, const void *w, size_t rs, int64_t nr, const void *a,
                   size_t as, int64_t na, float *out, int64_t os)
{
    mm_float_rows(GGML_TYPE_F32, k, w, rs, nr, a, as, na, out, os);
}

void quant__avx2_float_kernels(struct quant_kernels *k)
{
    k->dot[GGML_TYPE_F32] = dot_f32;
    k->dot[GGML_TYPE_F16] = dot_f16;
    k->dot[GGML_TYPE_BF16] = dot_bf16;
    k->mm[GGML_TYPE_F32] = mm_f32;
    k->mm[GGML_TYPE_F16] = mm_f16;
    k->mm[GGML_TYPE_BF16] = mm_bf16;
}
