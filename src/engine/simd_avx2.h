/* simd_avx2.h - small AVX2/F16C helpers shared by the engine's *_avx2.c
 * kernel files (only those files are built with -mavx2 -mfma -mf16c; never
 * include this from anything else). All static inline, no state.
 */
#ifndef ENG_SIMD_AVX2_H
#define ENG_SIMD_AVX2_H

#include <immintrin.h>
#include <stdint.h>

static inline float f16(uint16_t h)
{
    return _cvtsh_ss(h);
}

/* Sum of the 8 lanes. */
static inline float hsum_ps(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

#endif
