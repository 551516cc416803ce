/* quant_avx2_float.c - AVX2+FMA+F16C kernels for float weight types (F32,
 * F16, BF16) against f32 activations: the decode dots and the prefill
 * matmuls. Installed by quant__avx2_kernels (quant_avx2.c) only after
 * cpu_has_avx2_fma_f16c(); each kernel computes what its scalar twin in
 * quant_ref.c computes, in a different accumulation order
 * (tests/test_quant.c checks every one).
 */
#include "engine/gemm_avx2.h"
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

/* Prefill / batch matmuls: the packed, cache-blocked GEMM (gemm_avx2.c).
 * quant_matmul sends every n_act >= 2 here, so a result never depends on
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
    k->mm[GGML_TYPE_F32] = mm_f32;
    k->mm[GGML_TYPE_F16] = mm_f16;
    k->mm[GGML_TYPE_BF16] = mm_bf16;
}
