/* ops.h - private: the engine's non-matmul kernels (engine-internal).
 *
 * Each op has a scalar reference in ops.c; ops_avx2.c provides AVX2+FMA+F16C
 * versions of the hot attention kernels (dot with and accumulation of F16
 * KV rows) and of SwiGLU. eng_ops_select() picks them once from cpuid (KANOA_KERNELS=scalar
 * forces the reference); tests compare both (tests/test_engine_ops.c).
 * All functions work on caller buffers and allocate nothing.
 * Thread-safety: reentrant; call eng_ops_select before starting threads.
 */
#ifndef ENG_OPS_H
#define ENG_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* y = x / sqrt(mean(x^2) + eps) * w   (y may alias x) */
void eng_rmsnorm(float *y, const float *x, const float *w, int n, float eps);
/* In place: rotate adjacent pairs (2i, 2i+1) of each of n_heads heads of
 * D elements by the angles whose cos,sin are cs[2i], cs[2i+1]. */
void eng_rope_pairs(float *v, int n_heads, int D, const float *cs);
/* cs[2i], cs[2i+1] = cos, sin of pos * inv_freq[i], i < D/2 (double math). */
void eng_rope_angles(float *cs, int pos, const float *inv_freq, int D);
/* In place softmax of x[0..n). */
void eng_softmax(float *x, int n);
/* a[i] = silu(a[i]) * b[i] (the selected kernel; elementwise, so results do
 * not depend on how a row is split) */
void eng_swiglu(float *a, const float *b, int n);
/* f32 -> f16 row (KV cache store). */
void eng_store_f16(uint16_t *dst, const float *src, int n);

/* The kernels behind the dispatch (F16 attention, SwiGLU). */
struct eng_attn_kernels {
    float (*dot_f16)(const float *q, const uint16_t *k, int n);
    /* out[i] += a * v[i] */
    void (*axpy_f16)(float *out, float a, const uint16_t *v, int n);
    /* eng_attend_ring (below) */
    void (*attend)(float *out, const float *q, const uint16_t *k, const uint16_t *v,
                   size_t stride, int rows, int r0, int n, int D, float scale,
                   float *scores);
    /* eng_swiglu */
    void (*swiglu)(float *a, const float *b, int n);
};

float eng_dot_f16_scalar(const float *q, const uint16_t *k, int n);
void eng_axpy_f16_scalar(float *out, float a, const uint16_t *v, int n);
void eng_attend_scalar(float *out, const float *q, const uint16_t *k, const uint16_t *v,
                       size_t stride, int rows, int r0, int n, int D, float scale,
                       float *scores);
void eng_swiglu_scalar(float *a, const float *b, int n);
float eng_dot_f16_avx2(const float *q, const uint16_t *k, int n);
void eng_axpy_f16_avx2(float *out, float a, const uint16_t *v, int n);
/* AVX2: scores 8 keys at a time (one 8-lane result per 8 keys, no per-key
 * horizontal sum), softmax vectorized (exp by simd_exp_ps, a degree-7
 * polynomial), the weighted sum of values kept in registers 64 dims at a
 * time; agrees with the scalar one to float rounding. */
void eng_attend_avx2(float *out, const float *q, const uint16_t *k, const uint16_t *v,
                     size_t stride, int rows, int r0, int n, int D, float scale,
                     float *scores);
/* AVX2 SwiGLU: e^-x by simd_exp_ps, every element in 8-lane arithmetic
 * (the tail padded), so its result does not depend on its position. */
void eng_swiglu_avx2(float *a, const float *b, int n);

/* Select kernels (idempotent); force_scalar picks the reference. Returns
 * true when the AVX2 set is active. */
bool eng_ops_select(bool force_scalar);
const struct eng_attn_kernels *eng_ops(void);

/* One query head over n keys of the cache: out[D] = softmax(scale q.k) v.
 * k and v point at position 0 of this KV head; rows are `stride` halves
 * apart; scores has room for n floats. */
void eng_attend_head(float *out, const float *q, const uint16_t *k,
                     const uint16_t *v, size_t stride, int n, int D,
                     float scale, float *scores);
/* The same over a ring of `rows` rows (n <= rows): key j (in position
 * order) is row (r0 + j) % rows. eng_attend_head is the ring with rows = n,
 * r0 = 0. */
void eng_attend_ring(float *out, const float *q, const uint16_t *k,
                     const uint16_t *v, size_t stride, int rows, int r0, int n,
                     int D, float scale, float *scores);

#endif
