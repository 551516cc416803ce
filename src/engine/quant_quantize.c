/* quant_quantize.c - our weight quantizers (f32 -> every computable type).
 *
 * Legacy 32-blocks use the classic closed forms (Q4_0/Q5_0: scale from the
 * signed extreme so it maps to level -8/-16; Q4_1/Q5_1: min..max over 15/31
 * steps). K-quants search each sub-block's scale (and min) over a few
 * candidate level grids, keeping the least-squares optimum of the squared
 * error, then quantize the scales to 6 (Q4_K/Q5_K) or 8 (Q6_K) bits and
 * re-level the values against the quantized scales.
 */
#include "engine/quant_int.h"

#include <math.h>
#include <string.h>

/* Round to nearest, ties to even (as lrintf in the default mode), for
 * |f| < 2^22: adding 1.5*2^23 leaves the rounded integer in the mantissa. */
static inline int nint(float f)
{
    float t = f + 12582912.0f;
    int32_t i;
    memcpy(&i, &t, 4);
    return (i & 0x007fffff) - 0x00400000;
}

static inline int clampi(int v, int lo, int hi)
{
    return v < lo ? lo : (v > hi ? hi : v);
}

static void pack_nibbles32(const uint8_t *L, uint8_t *qs)
{
    for (int j = 0; j < 16; j++)
        qs[j] = (uint8_t)((L[j] & 15) | ((L[j + 16] & 15) << 4));
}

static void pack_qh32(const uint8_t *L, uint8_t *qh)
{
    uint32_t h = 0;
    for (int j = 0; j < 32; j++)
        h |= (uint32_t)((L[j] >> 4) & 1) << j;
    memcpy(qh, &h, 4);
}

/* The first of n values with the largest magnitude, sign kept (0 if all
 * are 0). */
static float signed_extreme(int n, const float *x)
{
    float amax = 0, max = 0;
    for (int j = 0; j < n; j++) {
        if (fabsf(x[j]) > amax) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    return max;
}

/* Symmetric levels: scale from the signed extreme mapped to -nmax. */
static float sym_levels(const float *x, int nmax, uint8_t *L)
{
    float max = signed_extreme(32, x);
    float d = max / -(float)nmax;
    float id = d ? 1.0f / d : 0.0f;
    for (int j = 0; j < 32; j++)
        L[j] = (uint8_t)clampi(nint(x[j] * id) + nmax, 0, 2 * nmax - 1);
    return d;
}

/* Asymmetric levels 0..nmax: x ~ d*L + m. */
static void asym_levels(const float *x, int nmax, uint8_t *L, float *d, float *m)
{
    float min = x[0], max = x[0];
    for (int j = 1; j < 32; j++) {
        min = fminf(min, x[j]);
        max = fmaxf(max, x[j]);
    }
    *d = (max - min) / (float)nmax;
    *m = min;
    float id = *d ? 1.0f / *d : 0.0f;
    for (int j = 0; j < 32; j++)
        L[j] = (uint8_t)clampi(nint((x[j] - min) * id), 0, nmax);
}

static void q_q4_0(const float *x, void *dst, int64_t n)
{
    struct blk_q4_0 *y = dst;
    uint8_t L[32];
    for (int64_t i = 0; i < n / 32; i++) {
        y[i].d = quant_f32_to_f16(sym_levels(x + 32 * i, 8, L));
        pack_nibbles32(L, y[i].qs);
    }
}

static void q_q5_0(const float *x, void *dst, int64_t n)
{
    struct blk_q5_0 *y = dst;
    uint8_t L[32];
    for (int64_t i = 0; i < n / 32; i++) {
        y[i].d = quant_f32_to_f16(sym_levels(x + 32 * i, 16, L));
        pack_nibbles32(L, y[i].qs);
        pack_qh32(L, y[i].qh);
    }
}

static void q_q4_1(const float *x, void *dst, int64_t n)
{
    struct blk_q4_1 *y = dst;
    uint8_t L[32];
    for (int64_t i = 0; i < n / 32; i++) {
        float d, m;
        asym_levels(x + 32 * i, 15, L, &d, &m);
        y[i].d = quant_f32_to_f16(d);
        y[i].m = quant_f32_to_f16(m);
        pack_nibbles32(L, y[i].qs);
    }
}

static void q_q5_1(const float *x, void *dst, int64_t n)
{
    struct blk_q5_1 *y = dst;
    uint8_t L[32];
    for (int64_t i = 0; i < n / 32; i++) {
        float d, m;
        asym_levels(x + 32 * i, 31, L, &d, &m);
        y[i].d = quant_f32_to_f16(d);
        y[i].m = quant_f32_to_f16(m);
        pack_nibbles32(L, y[i].qs);
        pack_qh32(L, y[i].qh);
    }
}

static void q_q8_0(const float *x, void *dst, int64_t n)
{
    struct blk_q8_0 *y = dst;
    for (int64_t i = 0; i < n / 32; i++) {
        float amax = 0;
        for (int j = 0; j < 32; j++)
            amax = fmaxf(amax, fabsf(x[32 * i + j]));
        float d = amax / 127.0f;
        float id = d ? 1.0f / d : 0.0f;
        y[i].d = quant_f32_to_f16(d);
        for (int j = 0; j < 32; j++)
            y[i].qs[j] = (int8_t)clampi(nint(x[32 * i + j] * id), -127, 127);
    }
}

/* ---- k-quant scale search ----------------------------------------------- */

/* Best (scale, min >= 0) for x ~ scale*L - min with L in 0..nmax over n
 * values: try level grids around nmax/(max-min) and keep the least-squares
 * fit with the smallest squared error. */
static float fit_scale_min(int n, const float *x, int nmax, float *the_min)
{
    float min = x[0], max = x[0];
    for (int i = 1; i < n; i++) {
        min = fminf(min, x[i]);
        max = fmaxf(max, x[i]);
    }
    if (min > 0)
        min = 0;
    *the_min = -min;
    if (max <= min)
        return 0.0f;
    float best_scale = (max - min) / nmax, best_min = min, best_err = INFINITY;
    float sx = 0, sx2 = 0;
    for (int i = 0; i < n; i++) {
        sx += x[i];
        sx2 += x[i] * x[i];
    }
    for (int is = -4; is <= 4; is++) {
        float iscale = ((float)nmax + 0.25f * is) / (max - min);
        float sl = 0, sl2 = 0, sxl = 0;
        for (int i = 0; i < n; i++) {
            float l = (float)clampi(nint(iscale * (x[i] - min)), 0, nmax);
            sl += l;
            sl2 += l * l;
            sxl += x[i] * l;
        }
        float D = n * sl2 - sl * sl;
        if (D <= 0)
            continue;
        float sc = (n * sxl - sx * sl) / D;
        float mn = (sl2 * sx - sl * sxl) / D;
        if (mn > 0) {
            mn = 0;
            sc = sl2 > 0 ? sxl / sl2 : 0;
        }
        /* sum of (sc*L + mn - x)^2 from the sums already at hand */
        float err = sc * sc * sl2 + 2 * sc * mn * sl + n * mn * mn - 2 * sc * sxl -
                    2 * mn * sx + sx2;
        if (err < best_err) {
            best_err = err;
            best_scale = sc;
            best_min = mn;
        }
    }
    *the_min = -best_min;
    return best_scale;
}

/* Symmetric levels -nmax..nmax-1: best scale over a few level grids. */
static float fit_scale_sym(int n, const float *x, int nmax)
{
    float max = signed_extreme(n, x);
    if (max == 0)
        return 0.0f;
    float best = max / -(float)nmax, best_gain = -1;
    for (int is = -4; is <= 4; is++) {
        float iscale = -((float)nmax + 0.25f * is) / max;
        float sxl = 0, sl2 = 0;
        for (int i = 0; i < n; i++) {
            float l = (float)clampi(nint(iscale * x[i]), -nmax, nmax - 1);
            sxl += x[i] * l;
            sl2 += l * l;
        }
        /* with the optimal sc = sxl/sl2 the error is sum(x^2) - sxl^2/sl2 */
        if (sl2 <= 0)
            continue;
        float gain = sxl * sxl / sl2;
        if (gain > best_gain) {
            best_gain = gain;
            best = sxl / sl2;
        }
    }
    return best;
}

static void pack_scales_k4(const uint8_t *ls, const uint8_t *lm, uint8_t *s)
{
    memset(s, 0, 12);
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            s[j] |= ls[j];
            s[j + 4] |= lm[j];
        } else {
            s[j + 4] = (uint8_t)((ls[j] & 15) | ((lm[j] & 15) << 4));
            s[j - 4] |= (uint8_t)((ls[j] >> 4) << 6);
            s[j] |= (uint8_t)((lm[j] >> 4) << 6);
        }
    }
}

/* One Q4_K/Q5_K super-block: levels 0..nmax into L, header fields out. */
static void kquant_block(const float *x, int nmax, uint8_t *L, uint16_t *d16,
                         uint16_t *dmin16, uint8_t *scales)
{
    float sc[8], mn[8], max_sc = 0, max_mn = 0;
    uint8_t ls[8], lm[8];
    for (int j = 0; j < 8; j++) {
        sc[j] = fit_scale_min(32, x + 32 * j, nmax, &mn[j]);
        max_sc = fmaxf(max_sc, sc[j]);
        max_mn = fmaxf(max_mn, mn[j]);
    }
    float isc = max_sc > 0 ? 63.0f / max_sc : 0.0f;
    float imn = max_mn > 0 ? 63.0f / max_mn : 0.0f;
    for (int j = 0; j < 8; j++) {
        ls[j] = (uint8_t)clampi(nint(isc * sc[j]), 0, 63);
        lm[j] = (uint8_t)clampi(nint(imn * mn[j]), 0, 63);
    }
    pack_scales_k4(ls, lm, scales);
    *d16 = quant_f32_to_f16(max_sc / 63.0f);
    *dmin16 = quant_f32_to_f16(max_mn / 63.0f);
    float d = quant_f16_to_f32(*d16), dm = quant_f16_to_f32(*dmin16);
    for (int j = 0; j < 8; j++) {
        float s = d * ls[j], m = dm * lm[j];
        for (int l = 0; l < 32; l++)
            L[32 * j + l] = s ? (uint8_t)clampi(nint((x[32 * j + l] + m) / s), 0, nmax) : 0;
    }
}

static void pack_q4k_levels(const uint8_t *L, uint8_t *qs)
{
    for (int c = 0; c < 4; c++) {
        for (int l = 0; l < 32; l++)
            qs[32 * c + l] = (uint8_t)((L[64 * c + l] & 15) | ((L[64 * c + 32 + l] & 15) << 4));
    }
}

static void q_q4_k(const float *x, void *dst, int64_t n)
{
    struct blk_q4_k *y = dst;
    uint8_t L[QK_K];
    for (int64_t i = 0; i < n / QK_K; i++) {
        kquant_block(x + QK_K * i, 15, L, &y[i].d, &y[i].dmin, y[i].scales);
        pack_q4k_levels(L, y[i].qs);
    }
}

static void q_q5_k(const float *x, void *dst, int64_t n)
{
    struct blk_q5_k *y = dst;
    uint8_t L[QK_K];
    for (int64_t i = 0; i < n / QK_K; i++) {
        kquant_block(x + QK_K * i, 31, L, &y[i].d, &y[i].dmin, y[i].scales);
        pack_q4k_levels(L, y[i].qs);
        memset(y[i].qh, 0, 32);
        for (int c = 0; c < 4; c++) {
            for (int l = 0; l < 32; l++) {
                y[i].qh[l] |= (uint8_t)(((L[64 * c + l] >> 4) & 1) << (2 * c));
                y[i].qh[l] |= (uint8_t)(((L[64 * c + 32 + l] >> 4) & 1) << (2 * c + 1));
            }
        }
    }
}

static void pack_q6k(const uint8_t *L, struct blk_q6_k *y)
{
    for (int h = 0; h < 2; h++) {
        const uint8_t *q = L + 128 * h;
        for (int l = 0; l < 32; l++) {
            y->ql[64 * h + l] = (uint8_t)((q[l] & 15) | ((q[l + 64] & 15) << 4));
            y->ql[64 * h + l + 32] = (uint8_t)((q[l + 32] & 15) | ((q[l + 96] & 15) << 4));
            y->qh[32 * h + l] = (uint8_t)((q[l] >> 4) | ((q[l + 32] >> 4) << 2) |
                                          ((q[l + 64] >> 4) << 4) | ((q[l + 96] >> 4) << 6));
        }
    }
}

static void q_q6_k(const float *x, void *dst, int64_t n)
{
    struct blk_q6_k *y = dst;
    uint8_t L[QK_K];
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float *xb = x + QK_K * i;
        float sc[16];
        for (int k = 0; k < 16; k++)
            sc[k] = fit_scale_sym(16, xb + 16 * k, 32);
        float max = signed_extreme(16, sc);
        float iscale = max ? -128.0f / max : 0.0f;
        y[i].d = quant_f32_to_f16(iscale ? 1.0f / iscale : 0.0f);
        float d = quant_f16_to_f32(y[i].d);
        for (int k = 0; k < 16; k++) {
            y[i].scales[k] = (int8_t)clampi(nint(iscale * sc[k]), -128, 127);
            float s = d * y[i].scales[k];
            for (int j = 0; j < 16; j++)
                L[16 * k + j] = (uint8_t)(s ? clampi(nint(xb[16 * k + j] / s), -32, 31) + 32 : 32);
        }
        pack_q6k(L, &y[i]);
    }
}

/* F16 and BF16: each value narrowed on its own. */
static void q_to_half(const float *x, void *dst, int64_t n, uint16_t (*narrow)(float f))
{
    uint8_t *d = dst;
    for (int64_t i = 0; i < n; i++) {
        uint16_t h = narrow(x[i]);
        memcpy(d + 2 * i, &h, 2);
    }
}

void quant__quantize_ref(uint32_t t, const float *src, void *dst, int64_t n)
{
    struct quant_kernels k;
    switch (t) {
    case GGML_TYPE_F32: memcpy(dst, src, (size_t)n * 4); break;
    case GGML_TYPE_F16: q_to_half(src, dst, n, quant_f32_to_f16); break;
    case GGML_TYPE_BF16: q_to_half(src, dst, n, quant_f32_to_bf16); break;
    case GGML_TYPE_Q4_0: q_q4_0(src, dst, n); break;
    case GGML_TYPE_Q4_1: q_q4_1(src, dst, n); break;
    case GGML_TYPE_Q5_0: q_q5_0(src, dst, n); break;
    case GGML_TYPE_Q5_1: q_q5_1(src, dst, n); break;
    case GGML_TYPE_Q8_0: q_q8_0(src, dst, n); break;
    case GGML_TYPE_Q4_K: q_q4_k(src, dst, n); break;
    case GGML_TYPE_Q5_K: q_q5_k(src, dst, n); break;
    case GGML_TYPE_Q6_K: q_q6_k(src, dst, n); break;
    case GGML_TYPE_Q8_1: case GGML_TYPE_Q8_K:
        memset(&k, 0, sizeof k);
        quant__ref_kernels(&k);
        k.act[t](src, dst, n);
        break;
    default: break;
    }
}
