/* quant_avx2_float.c - AVX2+FMA+F16C kernels for float weight types (F32,
 * F16, BF16) against f32 activations: the decode dots and matrix x vector,
 * and the prefill matmuls (the packed GEMM in gemm_avx2.c). Installed by
 * quant__avx2_kernels (quant_avx2.c) only after cpu_has_avx2_fma_f16c();
 * each kernel computes what its scalar twin in quant_ref.c computes, in a
 * different accumulation order (tests/test_quant.c checks every one).
 */
#include "engine/gemm_avx2.h"
#include "engine/quant_int.h"
#include "engine/simd_avx2.h"

#include <immintrin.h>
#include <string.h>

/* Rows streamed together by the decode matrix x vector (12 accumulators;
 * measured 6 > 4 > 2 > row by row; software prefetch did not help). */
#define MV_ROWS 6

/* ---- decode: rows of float weights x one f32 activation row --------------- */

static inline __attribute__((always_inline)) __m256 load_w8(uint32_t t, const uint8_t *x, int64_t i)
{
    if (t == GGML_TYPE_F16)
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + 2 * i)));
    if (t == GGML_TYPE_BF16) {
        __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(x + 2 * i)));
        return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
    }
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

/* o[q] = dot(row q, y) for the nrows (constant after inlining) rows at x,
 * x + rs, ... Every row is summed the same way whatever nrows is: lanes of
 * elements [i, i+8) and [i+8, i+16) into two accumulators per 16-element
 * step, an 8-element tail into the first, hsum of both, then the last n % 8
 * elements in order. Several rows share each activation load and keep
 * several memory streams in flight. */
static inline __attribute__((always_inline)) void
rows_dot(uint32_t t, int nrows, int64_t n, const uint8_t *x, size_t rs, const float *y, float *o)
{
    __m256 a0[MV_ROWS], a1[MV_ROWS];
    for (int q = 0; q < nrows; q++)
        a0[q] = a1[q] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 y0 = _mm256_loadu_ps(y + i), y1 = _mm256_loadu_ps(y + i + 8);
        #pragma GCC unroll 8
        for (int q = 0; q < nrows; q++) {
            const uint8_t *xq = x + (size_t)q * rs;
            a0[q] = _mm256_fmadd_ps(load_w8(t, xq, i), y0, a0[q]);
            a1[q] = _mm256_fmadd_ps(load_w8(t, xq, i + 8), y1, a1[q]);
        }
    }
    for (; i + 8 <= n; i += 8) {
        __m256 y0 = _mm256_loadu_ps(y + i);
        for (int q = 0; q < nrows; q++)
            a0[q] = _mm256_fmadd_ps(load_w8(t, x + (size_t)q * rs, i), y0, a0[q]);
    }
    for (int q = 0; q < nrows; q++) {
        float s = hsum_ps(_mm256_add_ps(a0[q], a1[q]));
        for (int64_t e = i; e < n; e++)
            s += load_w1(t, x + (size_t)q * rs, e) * y[e];
        o[q] = s;
    }
}

static inline __attribute__((always_inline)) void
mv_float(uint32_t t, int64_t k, const void *w, size_t rs, int64_t nr, const void *a, float *out)
{
    const uint8_t *x = w;
    int64_t r = 0;
    for (; r + MV_ROWS <= nr; r += MV_ROWS)
        rows_dot(t, MV_ROWS, k, x + (size_t)r * rs, rs, a, out + r);
    for (; r < nr; r++)
        rows_dot(t, 1, k, x + (size_t)r * rs, rs, a, out + r);
}

static float dot_f32(int64_t n, const void *w, const void *a)
{
    float s;
    rows_dot(GGML_TYPE_F32, 1, n, w, 0, a, &s);
    return s;
}

static float dot_f16(int64_t n, const void *w, const void *a)
{
    float s;
    rows_dot(GGML_TYPE_F16, 1, n, w, 0, a, &s);
    return s;
}

static float dot_bf16(int64_t n, const void *w, const void *a)
{
    float s;
    rows_dot(GGML_TYPE_BF16, 1, n, w, 0, a, &s);
    return s;
}

/* out[r] = dot(row r, a) for r < nr: equal, bit for bit, to dot_* per row. */
static void mv_f32(int64_t k, const void *w, size_t rs, int64_t nr, const void *a, float *out)
{
    mv_float(GGML_TYPE_F32, k, w, rs, nr, a, out);
}

static void mv_f16(int64_t k, const void *w, size_t rs, int64_t nr, const void *a, float *out)
{
    mv_float(GGML_TYPE_F16, k, w, rs, nr, a, out);
}

static void mv_bf16(int64_t k, const void *w, size_t rs, int64_t nr, const void *a, float *out)
{
    mv_float(GGML_TYPE_BF16, k, w, rs, nr, a, out);
}

/* ---- prefill / batch: the packed GEMM ------------------------------------- */

/* quant_matmul sends every n_act >= 2 here, so a result never depends on
 * how many activations share the call. */
static void mm_f16(int64_t k, const void *w, size_t rs, int64_t nr, const void *a,
                   size_t as, int64_t na, float *out, int64_t os)
{
    gemm__avx2_float(GGML_TYPE_F16, k, w, rs, nr, a, as, na, out, os);
}

static void mm_bf16(int64_t k, const void *w, size_t rs, int64_t nr, const void *a,
                    size_t as, int64_t na, float *out, int64_t os)
{
    gemm__avx2_float(GGML_TYPE_BF16, k, w, rs, nr, a, as, na, out, os);
}

static void mm_f32(int64_t k, const void *w, size_t rs, int64_t nr, const void *a,
                   size_t as, int64_t na, float *out, int64_t os)
{
    gemm__avx2_float(GGML_TYPE_F32, k, w, rs, nr, a, as, na, out, os);
}

void quant__avx2_float_kernels(struct quant_kernels *k)
{
    k->dot[GGML_TYPE_F32] = dot_f32;
    k->dot[GGML_TYPE_F16] = dot_f16;
    k->dot[GGML_TYPE_BF16] = dot_bf16;
    k->mv[GGML_TYPE_F32] = mv_f32;
    k->mv[GGML_TYPE_F16] = mv_f16;
    k->mv[GGML_TYPE_BF16] = mv_bf16;
    k->mm[GGML_TYPE_F32] = mm_f32;
    k->mm[GGML_TYPE_F16] = mm_f16;
    k->mm[GGML_TYPE_BF16] = mm_bf16;
}
