/* quant_int.h - internal to the quant module: block structs and the kernel
 * table shared by quant.c, quant_ref.c (scalar reference) and quant_avx2.c.
 * Not for use outside src/engine/quant*.c.
 */
#ifndef ENG_QUANT_INT_H
#define ENG_QUANT_INT_H

#include "engine/quant.h"

#include <stdint.h>

/* Block layouts, bit-exact with ggml (facts §2). All packed, little-endian. */
struct blk_q4_0 { uint16_t d; uint8_t qs[16]; };
struct blk_q4_1 { uint16_t d, m; uint8_t qs[16]; };
struct blk_q5_0 { uint16_t d; uint8_t qh[4]; uint8_t qs[16]; };
struct blk_q5_1 { uint16_t d, m; uint8_t qh[4]; uint8_t qs[16]; };
struct blk_q8_0 { uint16_t d; int8_t qs[32]; };
struct blk_q8_1 { uint16_t d, s; int8_t qs[32]; };
struct blk_q4_k { uint16_t d, dmin; uint8_t scales[12]; uint8_t qs[128]; };
struct blk_q5_k { uint16_t d, dmin; uint8_t scales[12]; uint8_t qh[32]; uint8_t qs[128]; };
struct blk_q6_k { uint8_t ql[128]; uint8_t qh[64]; int8_t scales[16]; uint16_t d; };
struct blk_q8_k { float d; int8_t qs[256]; int16_t bsums[16]; };

_Static_assert(sizeof(struct blk_q4_0) == 18, "q4_0");
_Static_assert(sizeof(struct blk_q4_1) == 20, "q4_1");
_Static_assert(sizeof(struct blk_q5_0) == 22, "q5_0");
_Static_assert(sizeof(struct blk_q5_1) == 24, "q5_1");
_Static_assert(sizeof(struct blk_q8_0) == 34, "q8_0");
_Static_assert(sizeof(struct blk_q8_1) == 36, "q8_1");
_Static_assert(sizeof(struct blk_q4_k) == 144, "q4_k");
_Static_assert(sizeof(struct blk_q5_k) == 176, "q5_k");
_Static_assert(sizeof(struct blk_q6_k) == 210, "q6_k");
_Static_assert(sizeof(struct blk_q8_k) == 292, "q8_k");

/* dot(weight row, activation row) over n elements */
typedef float (*quant_dot_fn)(int64_t n, const void *w, const void *a);
/* out[j*os + r] for r < nr, j < na (weights rows of rs bytes, act rows of as bytes) */
typedef void (*quant_mm_fn)(int64_t k, const void *w, size_t rs, int64_t nr,
                            const void *a, size_t as, int64_t na, float *out,
                            int64_t os);
/* out[r] = dot(row r, a) for r < nr: decode (one activation), several rows at once */
typedef void (*quant_mv_fn)(int64_t k, const void *w, size_t rs, int64_t nr, const void *a,
                            float *out);
typedef void (*quant_row_fn)(const void *src, float *dst, int64_t n);
typedef void (*quant_act_fn)(const float *x, void *dst, int64_t n);

struct quant_kernels {
    quant_dot_fn dot[GGML_TYPE_COUNT];
    quant_mm_fn mm[GGML_TYPE_COUNT];     /* NULL: fall back to dot per pair */
    quant_mv_fn mv[GGML_TYPE_COUNT];     /* n_act == 1; NULL: dot per row */
    quant_row_fn dequant[GGML_TYPE_COUNT];
    quant_act_fn act[GGML_TYPE_COUNT];   /* indexed by activation type */
};

/* Scalar reference kernels (quant_ref.c); every entry set for computable types. */
void quant__ref_kernels(struct quant_kernels *k);
/* AVX2 kernels (quant_avx2.c): overrides entries of k it implements. */
void quant__avx2_kernels(struct quant_kernels *k);
/* AVX2 kernels for F32/F16/BF16 weights (quant_avx2_float.c); called by
 * quant__avx2_kernels. */
void quant__avx2_float_kernels(struct quant_kernels *k);
/* Batched matmuls of Q8_0/Q4_K/Q5_K/Q6_K weights on row-interleaved int8
 * tiles (quant_avx2_tile.c); called by quant__avx2_kernels. */
void quant__avx2_tile_kernels(struct quant_kernels *k);

/* Scalar quantizers (quant_ref.c). */
void quant__quantize_ref(uint32_t t, const float *src, void *dst, int64_t n);

static inline float q_f16(uint16_t h)
{
    return quant_f16_to_f32(h);
}

/* Unpack the 6-bit scale/min pair j of a Q4_K/Q5_K block (facts §2.2). */
static inline void q_scale_min_k4(int j, const uint8_t *s, uint8_t *sc, uint8_t *m)
{
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (uint8_t)((s[j + 4] & 15) | ((s[j - 4] >> 6) << 4));
        *m = (uint8_t)((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
    }
}

#endif
