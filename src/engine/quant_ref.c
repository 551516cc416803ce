/* quant_ref.c - scalar reference kernels and our quantizers.
 *
 * Every computable type has: dequantize a row, dot a row with its activation
 * type, and quantize a row. These are the ground truth the AVX2 kernels are
 * tested against; they favour clarity (unpack a block to integer levels, then
 * do the arithmetic of facts §2.3) over speed.
 */
#include "engine/quant_int.h"

#include <math.h>
#include <string.h>

/* Round to nearest, ties to even, for |f| < 2^22 (see quant_quantize.c). */
static inline int nearest_int(float f)
{
    float t = f + 12582912.0f;
    int32_t i;
    memcpy(&i, &t, 4);
    return (i & 0x007fffff) - 0x00400000;
}

/* ---- block unpacking to integer levels --------------------------------- */

/* Q4_0/Q4_1: 32 levels 0..15; Q5_0/Q5_1: 0..31 (facts §2.1). */
static void unpack_q4(const uint8_t *qs, uint8_t *L)
{
    for (int j = 0; j < 16; j++) {
        L[j] = qs[j] & 15;
        L[j + 16] = qs[j] >> 4;
    }
}

static void unpack_q5(const uint8_t *qs, const uint8_t *qh, uint8_t *L)
{
    uint32_t h;
    memcpy(&h, qh, 4);
    unpack_q4(qs, L);
    for (int j = 0; j < 32; j++)
        L[j] |= (uint8_t)(((h >> j) & 1) << 4);
}

/* Q4_K / Q5_K: 256 levels (0..15 / 0..31) plus 8 scales and mins. */
static void unpack_q4k_levels(const uint8_t *qs, uint8_t *L)
{
    for (int c = 0; c < 4; c++) {
        for (int l = 0; l < 32; l++) {
            L[64 * c + l] = qs[32 * c + l] & 15;
            L[64 * c + 32 + l] = qs[32 * c + l] >> 4;
        }
    }
}

static void unpack_q5k_levels(const uint8_t *qs, const uint8_t *qh, uint8_t *L)
{
    unpack_q4k_levels(qs, L);
    for (int c = 0; c < 4; c++) {
        for (int l = 0; l < 32; l++) {
            L[64 * c + l] |= (uint8_t)(((qh[l] >> (2 * c)) & 1) << 4);
            L[64 * c + 32 + l] |= (uint8_t)(((qh[l] >> (2 * c + 1)) & 1) << 4);
        }
    }
}

/* Q6_K: 256 signed levels q-32 in -32..31. */
static void unpack_q6k(const struct blk_q6_k *b, int8_t *L)
{
    for (int h = 0; h < 2; h++) {
        const uint8_t *ql = b->ql + 64 * h;
        const uint8_t *qh = b->qh + 32 * h;
        int8_t *o = L + 128 * h;
        for (int l = 0; l < 32; l++) {
            o[l] = (int8_t)(((ql[l] & 15) | (((qh[l] >> 0) & 3) << 4)) - 32);
            o[l + 32] = (int8_t)(((ql[l + 32] & 15) | (((qh[l] >> 2) & 3) << 4)) - 32);
            o[l + 64] = (int8_t)(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
            o[l + 96] = (int8_t)(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
        }
    }
}

/* ---- dequantization ---------------------------------------------------- */

static void deq_f32(const void *src, float *dst, int64_t n)
{
    memcpy(dst, src, (size_t)n * 4);
}

/* F16 and BF16 differ only in how one 16-bit value widens to f32. */
typedef float (*half_to_f32_fn)(uint16_t h);

static float half_at(const void *src, int64_t i, half_to_f32_fn widen)
{
    uint16_t h;
    memcpy(&h, (const uint8_t *)src + 2 * i, 2);
    return widen(h);
}

static void deq_half(const void *src, float *dst, int64_t n, half_to_f32_fn widen)
{
    for (int64_t i = 0; i < n; i++)
        dst[i] = half_at(src, i, widen);
}

static void deq_f16(const void *src, float *dst, int64_t n)
{
    deq_half(src, dst, n, quant_f16_to_f32);
}

static void deq_bf16(const void *src, float *dst, int64_t n)
{
    deq_half(src, dst, n, quant_bf16_to_f32);
}

/* Legacy 32-blocks: d*(L-off) for Q4_0/Q5_0, d*L+m for Q4_1/Q5_1. */
static void deq_sym32(const uint8_t *L, float d, int off, float *dst)
{
    for (int j = 0; j < 32; j++)
        dst[j] = d * (float)(L[j] - off);
}

static void deq_asym32(const uint8_t *L, float d, float m, float *dst)
{
    for (int j = 0; j < 32; j++)
        dst[j] = d * (float)L[j] + m;
}

static void deq_q4_0(const void *src, float *dst, int64_t n)
{
    const struct blk_q4_0 *b = src;
    uint8_t L[32];
    for (int64_t i = 0; i < n / 32; i++) {
        unpack_q4(b[i].qs, L);
        deq_sym32(L, q_f16(b[i].d), 8, dst + 32 * i);
    }
}

static void deq_q4_1(const void *src, float *dst, int64_t n)
{
    const struct blk_q4_1 *b = src;
    uint8_t L[32];
    for (int64_t i = 0; i < n / 32; i++) {
        unpack_q4(b[i].qs, L);
        deq_asym32(L, q_f16(b[i].d), q_f16(b[i].m), dst + 32 * i);
    }
}

static void deq_q5_0(const void *src, float *dst, int64_t n)
{
    const struct blk_q5_0 *b = src;
    uint8_t L[32];
    for (int64_t i = 0; i < n / 32; i++) {
        unpack_q5(b[i].qs, b[i].qh, L);
        deq_sym32(L, q_f16(b[i].d), 16, dst + 32 * i);
    }
}

static void deq_q5_1(const void *src, float *dst, int64_t n)
{
    const struct blk_q5_1 *b = src;
    uint8_t L[32];
    for (int64_t i = 0; i < n / 32; i++) {
        unpack_q5(b[i].qs, b[i].qh, L);
        deq_asym32(L, q_f16(b[i].d), q_f16(b[i].m), dst + 32 * i);
    }
}

static void deq_q8_0(const void *src, float *dst, int64_t n)
{
    const struct blk_q8_0 *b = src;
    for (int64_t i = 0; i < n / 32; i++) {
        float d = q_f16(b[i].d);
        for (int j = 0; j < 32; j++)
            dst[32 * i + j] = d * (float)b[i].qs[j];
    }
}

static void deq_q8_k(const void *src, float *dst, int64_t n)
{
    const struct blk_q8_k *b = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        for (int j = 0; j < QK_K; j++)
            dst[QK_K * i + j] = b[i].d * (float)b[i].qs[j];
    }
}

/* Shared by Q4_K and Q5_K: levels L (unsigned), 6-bit scales/mins. */
static void deq_kq_block(const uint8_t *L, const uint8_t *scales, float d,
                         float dmin, float *dst)
{
    for (int j = 0; j < 8; j++) {
        uint8_t sc, m;
        q_scale_min_k4(j, scales, &sc, &m);
        for (int l = 0; l < 32; l++)
            dst[32 * j + l] = d * sc * (float)L[32 * j + l] - dmin * m;
    }
}

static void deq_q4_k(const void *src, float *dst, int64_t n)
{
    const struct blk_q4_k *b = src;
    uint8_t L[QK_K];
    for (int64_t i = 0; i < n / QK_K; i++) {
        unpack_q4k_levels(b[i].qs, L);
        deq_kq_block(L, b[i].scales, q_f16(b[i].d), q_f16(b[i].dmin), dst + QK_K * i);
    }
}

static void deq_q5_k(const void *src, float *dst, int64_t n)
{
    const struct blk_q5_k *b = src;
    uint8_t L[QK_K];
    for (int64_t i = 0; i < n / QK_K; i++) {
        unpack_q5k_levels(b[i].qs, b[i].qh, L);
        deq_kq_block(L, b[i].scales, q_f16(b[i].d), q_f16(b[i].dmin), dst + QK_K * i);
    }
}

static void deq_q6_k(const void *src, float *dst, int64_t n)
{
    const struct blk_q6_k *b = src;
    int8_t L[QK_K];
    for (int64_t i = 0; i < n / QK_K; i++) {
        float d = q_f16(b[i].d);
        unpack_q6k(&b[i], L);
        for (int e = 0; e < QK_K; e++)
            dst[QK_K * i + e] = d * (float)b[i].scales[e / 16] * (float)L[e];
    }
}

/* ---- activation quantizers (facts §2.2, §2.3) --------------------------- */

static void act_f32(const float *x, void *dst, int64_t n)
{
    memcpy(dst, x, (size_t)n * 4);
}

/* 32 values to int8 with scale amax/127; returns the scale. */
static float act_q8_32(const float *x, int8_t *qs)
{
    float amax = 0.0f;
    for (int j = 0; j < 32; j++)
        amax = fmaxf(amax, fabsf(x[j]));
    float d = amax / 127.0f;
    float id = d ? 1.0f / d : 0.0f;
    for (int j = 0; j < 32; j++)
        qs[j] = (int8_t)nearest_int(x[j] * id);
    return d;
}

static void act_q8_0(const float *x, void *dst, int64_t n)
{
    struct blk_q8_0 *y = dst;
    for (int64_t i = 0; i < n / 32; i++)
        y[i].d = quant_f32_to_f16(act_q8_32(x + 32 * i, y[i].qs));
}

static void act_q8_1(const float *x, void *dst, int64_t n)
{
    struct blk_q8_1 *y = dst;
    for (int64_t i = 0; i < n / 32; i++) {
        float d = act_q8_32(x + 32 * i, y[i].qs);
        int sum = 0;
        for (int j = 0; j < 32; j++)
            sum += y[i].qs[j];
        y[i].d = quant_f32_to_f16(d);
        y[i].s = quant_f32_to_f16(d * (float)sum);
    }
}

static void act_q8_k(const float *x, void *dst, int64_t n)
{
    struct blk_q8_k *y = dst;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float *xb = x + QK_K * i;
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < QK_K; j++) {
            if (fabsf(xb[j]) > amax) {
                amax = fabsf(xb[j]);
                max = xb[j];
            }
        }
        memset(&y[i], 0, sizeof y[i]);
        if (amax == 0.0f)
            continue;
        float iscale = -127.0f / max;
        for (int j = 0; j < QK_K; j++) {
            int v = nearest_int(iscale * xb[j]);
            y[i].qs[j] = (int8_t)(v > 127 ? 127 : v);
        }
        for (int k = 0; k < 16; k++) {
            int s = 0;
            for (int j = 0; j < 16; j++)
                s += y[i].qs[16 * k + j];
            y[i].bsums[k] = (int16_t)s;
        }
        y[i].d = 1.0f / iscale;
    }
}

/* ---- dot products -------------------------------------------------------- */

static float dot_f32(int64_t n, const void *w, const void *a)
{
    const float *x = w, *y = a;
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += (double)x[i] * y[i];
    return (float)s;
}

static float dot_half(int64_t n, const void *w, const float *y, half_to_f32_fn widen)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += (double)half_at(w, i, widen) * y[i];
    return (float)s;
}

static float dot_f16(int64_t n, const void *w, const void *a)
{
    return dot_half(n, w, a, quant_f16_to_f32);
}

static float dot_bf16(int64_t n, const void *w, const void *a)
{
    return dot_half(n, w, a, quant_bf16_to_f32);
}

static int isum32(const uint8_t *L, int off, const int8_t *q)
{
    int s = 0;
    for (int j = 0; j < 32; j++)
        s += (L[j] - off) * q[j];
    return s;
}

static float dot_q4_0(int64_t n, const void *w, const void *a)
{
    const struct blk_q4_0 *x = w;
    const struct blk_q8_0 *y = a;
    uint8_t L[32];
    float s = 0;
    for (int64_t i = 0; i < n / 32; i++) {
        unpack_q4(x[i].qs, L);
        s += q_f16(x[i].d) * q_f16(y[i].d) * (float)isum32(L, 8, y[i].qs);
    }
    return s;
}

static float dot_q5_0(int64_t n, const void *w, const void *a)
{
    const struct blk_q5_0 *x = w;
    const struct blk_q8_0 *y = a;
    uint8_t L[32];
    float s = 0;
    for (int64_t i = 0; i < n / 32; i++) {
        unpack_q5(x[i].qs, x[i].qh, L);
        s += q_f16(x[i].d) * q_f16(y[i].d) * (float)isum32(L, 16, y[i].qs);
    }
    return s;
}

static float dot_q4_1(int64_t n, const void *w, const void *a)
{
    const struct blk_q4_1 *x = w;
    const struct blk_q8_1 *y = a;
    uint8_t L[32];
    float s = 0;
    for (int64_t i = 0; i < n / 32; i++) {
        unpack_q4(x[i].qs, L);
        s += q_f16(x[i].d) * q_f16(y[i].d) * (float)isum32(L, 0, y[i].qs) +
             q_f16(x[i].m) * q_f16(y[i].s);
    }
    return s;
}

static float dot_q5_1(int64_t n, const void *w, const void *a)
{
    const struct blk_q5_1 *x = w;
    const struct blk_q8_1 *y = a;
    uint8_t L[32];
    float s = 0;
    for (int64_t i = 0; i < n / 32; i++) {
        unpack_q5(x[i].qs, x[i].qh, L);
        s += q_f16(x[i].d) * q_f16(y[i].d) * (float)isum32(L, 0, y[i].qs) +
             q_f16(x[i].m) * q_f16(y[i].s);
    }
    return s;
}

static float dot_q8_0(int64_t n, const void *w, const void *a)
{
    const struct blk_q8_0 *x = w;
    const struct blk_q8_0 *y = a;
    float s = 0;
    for (int64_t i = 0; i < n / 32; i++) {
        int is = 0;
        for (int j = 0; j < 32; j++)
            is += x[i].qs[j] * y[i].qs[j];
        s += q_f16(x[i].d) * q_f16(y[i].d) * (float)is;
    }
    return s;
}

/* Shared by Q4_K and Q5_K: levels L (unsigned), 6-bit scales/mins. */
static float dot_kq_block(const uint8_t *L, const uint8_t *scales, float d,
                          float dmin, const struct blk_q8_k *y)
{
    int sumi = 0, summ = 0;
    for (int j = 0; j < 8; j++) {
        uint8_t sc, m;
        q_scale_min_k4(j, scales, &sc, &m);
        sumi += sc * isum32(L + 32 * j, 0, y->qs + 32 * j);
        summ += m * (y->bsums[2 * j] + y->bsums[2 * j + 1]);
    }
    return d * y->d * (float)sumi - dmin * y->d * (float)summ;
}

static float dot_q4_k(int64_t n, const void *w, const void *a)
{
    const struct blk_q4_k *x = w;
    const struct blk_q8_k *y = a;
    uint8_t L[QK_K];
    float s = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        unpack_q4k_levels(x[i].qs, L);
        s += dot_kq_block(L, x[i].scales, q_f16(x[i].d), q_f16(x[i].dmin), &y[i]);
    }
    return s;
}

static float dot_q5_k(int64_t n, const void *w, const void *a)
{
    const struct blk_q5_k *x = w;
    const struct blk_q8_k *y = a;
    uint8_t L[QK_K];
    float s = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        unpack_q5k_levels(x[i].qs, x[i].qh, L);
        s += dot_kq_block(L, x[i].scales, q_f16(x[i].d), q_f16(x[i].dmin), &y[i]);
    }
    return s;
}

static float dot_q6_k(int64_t n, const void *w, const void *a)
{
    const struct blk_q6_k *x = w;
    const struct blk_q8_k *y = a;
    int8_t L[QK_K];
    float s = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        unpack_q6k(&x[i], L);
        int sumi = 0;
        for (int k = 0; k < 16; k++) {
            int is = 0;
            for (int j = 0; j < 16; j++)
                is += L[16 * k + j] * y[i].qs[16 * k + j];
            sumi += x[i].scales[k] * is;
        }
        s += q_f16(x[i].d) * y[i].d * (float)sumi;
    }
    return s;
}

void quant__ref_kernels(struct quant_kernels *k)
{
    k->dequant[GGML_TYPE_F32] = deq_f32;
    k->dequant[GGML_TYPE_F16] = deq_f16;
    k->dequant[GGML_TYPE_BF16] = deq_bf16;
    k->dequant[GGML_TYPE_Q4_0] = deq_q4_0;
    k->dequant[GGML_TYPE_Q4_1] = deq_q4_1;
    k->dequant[GGML_TYPE_Q5_0] = deq_q5_0;
    k->dequant[GGML_TYPE_Q5_1] = deq_q5_1;
    k->dequant[GGML_TYPE_Q8_0] = deq_q8_0;
    k->dequant[GGML_TYPE_Q8_K] = deq_q8_k;
    k->dequant[GGML_TYPE_Q4_K] = deq_q4_k;
    k->dequant[GGML_TYPE_Q5_K] = deq_q5_k;
    k->dequant[GGML_TYPE_Q6_K] = deq_q6_k;
    k->act[GGML_TYPE_F32] = act_f32;
    k->act[GGML_TYPE_Q8_0] = act_q8_0;
    k->act[GGML_TYPE_Q8_1] = act_q8_1;
    k->act[GGML_TYPE_Q8_K] = act_q8_k;
    k->dot[GGML_TYPE_F32] = dot_f32;
    k->dot[GGML_TYPE_F16] = dot_f16;
    k->dot[GGML_TYPE_BF16] = dot_bf16;
    k->dot[GGML_TYPE_Q4_0] = dot_q4_0;
    k->dot[GGML_TYPE_Q4_1] = dot_q4_1;
    k->dot[GGML_TYPE_Q5_0] = dot_q5_0;
    k->dot[GGML_TYPE_Q5_1] = dot_q5_1;
    k->dot[GGML_TYPE_Q8_0] = dot_q8_0;
    k->dot[GGML_TYPE_Q4_K] = dot_q4_k;
    k->dot[GGML_TYPE_Q5_K] = dot_q5_k;
    k->dot[GGML_TYPE_Q6_K] = dot_q6_k;
}
