/* bert_avx2.c - AVX2+FMA versions of the encoder kernels (see bert_ops.h;
 * the scalar references are in bert_ops.c). Selected by
 * eng__bert_ops_select when the quant kernels run AVX2. Reentrant, no
 * allocation.
 *
 * exp: x = n ln2 + r with |r| <= ln2/2 (ln2 split in a short high part and
 * a correction so n ln2 is exact), e^r by its Taylor series to r^7
 * (truncation < 1e-8 relative), times 2^n built in the exponent bits.
 * erf: Abramowitz & Stegun 7.1.26, erfc(z) = t P(t) e^(-z^2) with
 * t = 1 / (1 + p z), |error| <= 1.5e-7; GELU uses 1 + erf(x) = erfc(-x) =
 * 2 - erfc(x), so the negative side keeps its relative precision.
 */
#include "engine/bert_ops.h"
#include "engine/simd_avx2.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

/* ---- exp, erf ---------------------------------------------------------------- */

/* 0.5 x (1 + erf(x / sqrt 2)) */
static inline __m256 gelu_ps(__m256 x)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 z = _mm256_mul_ps(_mm256_andnot_ps(sign, x), _mm256_set1_ps((float)M_SQRT1_2));
    __m256 d = _mm256_fmadd_ps(z, _mm256_set1_ps(0.3275911f), _mm256_set1_ps(1.0f));
    __m256 t = _mm256_div_ps(_mm256_set1_ps(1.0f), d);   /* exact IEEE (rcp_ps differs by CPU) */
    __m256 p = _mm256_set1_ps(1.061405429f);
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-1.453152027f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.421413741f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-0.284496736f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.254829592f));
    __m256 e = simd_exp_ps(_mm256_mul_ps(_mm256_xor_ps(z, sign), z));   /* e^(-z^2) */
    __m256 erfc = _mm256_mul_ps(_mm256_mul_ps(p, t), e);
    __m256 pos = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GE_OQ);
    __m256 one_plus_erf = _mm256_blendv_ps(erfc, _mm256_sub_ps(_mm256_set1_ps(2.0f), erfc), pos);
    return _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), x), one_plus_erf);
}

/* ---- elementwise ------------------------------------------------------------ */

void eng__bert_add_avx2(float *y, const float *x, const float *a, const float *b, int n)
{
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_add_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(a + i));
        if (b)
            v = _mm256_add_ps(v, _mm256_loadu_ps(b + i));
        _mm256_storeu_ps(y + i, v);
    }
    for (; i < n; i++)
        y[i] = b ? (x[i] + a[i]) + b[i] : x[i] + a[i];
}

void eng__bert_gelu_avx2(float *x, const float *bias, int n)
{
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        if (bias)
            v = _mm256_add_ps(v, _mm256_loadu_ps(bias + i));
        _mm256_storeu_ps(x + i, gelu_ps(v));
    }
    if (i < n) {   /* tail through a padded vector, same arithmetic */
        float buf[8] = {0};
        for (int j = i; j < n; j++)
            buf[j - i] = x[j] + (bias ? bias[j] : 0.0f);
        _mm256_storeu_ps(buf, gelu_ps(_mm256_loadu_ps(buf)));
        memcpy(x + i, buf, (size_t)(n - i) * sizeof *x);
    }
}

void eng__bert_silu_mul_avx2(float *h, const float *g, int n)
{
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(h + i, simd_silu_mul_ps(_mm256_loadu_ps(g + i), _mm256_loadu_ps(h + i)));
    if (i < n) {
        float gb[8] = {0}, hb[8] = {0};
        memcpy(gb, g + i, (size_t)(n - i) * sizeof *gb);
        memcpy(hb, h + i, (size_t)(n - i) * sizeof *hb);
        _mm256_storeu_ps(hb, simd_silu_mul_ps(_mm256_loadu_ps(gb), _mm256_loadu_ps(hb)));
        memcpy(h + i, hb, (size_t)(n - i) * sizeof *hb);
    }
}

/* sum of x[i] - c (square = false) or of (x[i] - c)^2 (square = true) */
static inline __attribute__((always_inline)) float
sum_dev(const float *x, int n, float c, bool square)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), vc = _mm256_set1_ps(c);
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(x + i), vc);
        __m256 d1 = _mm256_sub_ps(_mm256_loadu_ps(x + i + 8), vc);
        s0 = square ? _mm256_fmadd_ps(d0, d0, s0) : _mm256_add_ps(s0, d0);
        s1 = square ? _mm256_fmadd_ps(d1, d1, s1) : _mm256_add_ps(s1, d1);
    }
    for (; i + 8 <= n; i += 8) {
        __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(x + i), vc);
        s0 = square ? _mm256_fmadd_ps(d0, d0, s0) : _mm256_add_ps(s0, d0);
    }
    float s = hsum_ps(_mm256_add_ps(s0, s1));
    for (; i < n; i++)
        s += square ? (x[i] - c) * (x[i] - c) : x[i] - c;
    return s;
}

void eng__bert_layernorm_avx2(float *y, const float *x, const float *w, const float *b,
                              int n, float eps)
{
    float mean = sum_dev(x, n, 0.0f, false) / (float)n;
    float ss = sum_dev(x, n, mean, true);
    float inv = 1.0f / sqrtf(ss / (float)n + eps);
    __m256 vm = _mm256_set1_ps(mean), vi = _mm256_set1_ps(inv);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 t = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm), vi);
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(t, _mm256_loadu_ps(w + i), _mm256_loadu_ps(b + i)));
    }
    for (; i < n; i++)
        y[i] = ((x[i] - mean) * inv) * w[i] + b[i];
}

/* ---- attention -------------------------------------------------------------- */

/* 8x8 transpose: rows r[0..8) become columns. */
static inline void transpose8(__m256 r[8])
{
    __m256 t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        u[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int i = 0; i < 4; i++) {
        r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
        r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
    }
}

/* kt[d][j] = k[j][d] for j < n_k; zero for n_k <= j < ldk (D % 8 == 0). */
static void transpose_keys(const struct bert_attn *a, float *kt, size_t ldk)
{
    int j = 0;
    for (; j + 8 <= a->n_k; j += 8) {
        for (int d = 0; d < a->D; d += 8) {
            __m256 r[8];
            for (int i = 0; i < 8; i++)
                r[i] = _mm256_loadu_ps(a->k + (size_t)(j + i) * a->stride + d);
            transpose8(r);
            for (int i = 0; i < 8; i++)
                _mm256_storeu_ps(kt + (size_t)(d + i) * ldk + j, r[i]);
        }
    }
    for (; j < a->n_k; j++) {
        const float *k = a->k + (size_t)j * a->stride;
        for (int d = 0; d < a->D; d++)
            kt[(size_t)d * ldk + (size_t)j] = k[d];
    }
    for (int d = 0; d < a->D; d++)
        memset(kt + (size_t)d * ldk + a->n_k, 0, (ldk - (size_t)a->n_k) * sizeof *kt);
}

/* s[r][j] = scale * q[r] . k[j] for 4 query rows, all ldk (padded) keys;
 * 8 accumulators: 4 rows x 16 keys. */
static void scores_block(const float *const *q, const float *kt, size_t ldk, int D,
                         float scale, float *s)
{
    __m256 vs = _mm256_set1_ps(scale);
    for (size_t j = 0; j < ldk; j += 16) {
        __m256 a00 = _mm256_setzero_ps(), a01 = a00, a10 = a00, a11 = a00;
        __m256 a20 = a00, a21 = a00, a30 = a00, a31 = a00;
        const float *k = kt + j;
        for (int d = 0; d < D; d++, k += ldk) {
            __m256 k0 = _mm256_loadu_ps(k), k1 = _mm256_loadu_ps(k + 8);
            __m256 q0 = _mm256_broadcast_ss(q[0] + d), q1 = _mm256_broadcast_ss(q[1] + d);
            a00 = _mm256_fmadd_ps(q0, k0, a00);
            a01 = _mm256_fmadd_ps(q0, k1, a01);
            a10 = _mm256_fmadd_ps(q1, k0, a10);
            a11 = _mm256_fmadd_ps(q1, k1, a11);
            __m256 q2 = _mm256_broadcast_ss(q[2] + d), q3 = _mm256_broadcast_ss(q[3] + d);
            a20 = _mm256_fmadd_ps(q2, k0, a20);
            a21 = _mm256_fmadd_ps(q2, k1, a21);
            a30 = _mm256_fmadd_ps(q3, k0, a30);
            a31 = _mm256_fmadd_ps(q3, k1, a31);
        }
        float *o = s + j;
        _mm256_storeu_ps(o, _mm256_mul_ps(a00, vs));
        _mm256_storeu_ps(o + 8, _mm256_mul_ps(a01, vs));
        _mm256_storeu_ps(o + ldk, _mm256_mul_ps(a10, vs));
        _mm256_storeu_ps(o + ldk + 8, _mm256_mul_ps(a11, vs));
        _mm256_storeu_ps(o + 2 * ldk, _mm256_mul_ps(a20, vs));
        _mm256_storeu_ps(o + 2 * ldk + 8, _mm256_mul_ps(a21, vs));
        _mm256_storeu_ps(o + 3 * ldk, _mm256_mul_ps(a30, vs));
        _mm256_storeu_ps(o + 3 * ldk + 8, _mm256_mul_ps(a31, vs));
    }
}

/* s[j] = exp(s[j] - max) for j < n_k, 0 after; returns 1 / sum. */
static float softmax_row(float *s, int n_k, size_t ldk)
{
    __m256 vm = _mm256_set1_ps(-INFINITY);
    int j = 0;
    for (; j + 8 <= n_k; j += 8)
        vm = _mm256_max_ps(vm, _mm256_loadu_ps(s + j));
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(vm), _mm256_extractf128_ps(vm, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    float mx = _mm_cvtss_f32(m4);
    for (; j < n_k; j++)
        mx = s[j] > mx ? s[j] : mx;
    vm = _mm256_set1_ps(mx);
    for (size_t i = 0; i < ldk; i += 8)
        _mm256_storeu_ps(s + i, simd_exp_ps(_mm256_sub_ps(_mm256_loadu_ps(s + i), vm)));
    memset(s + n_k, 0, (ldk - (size_t)n_k) * sizeof *s);
    __m256 acc = _mm256_setzero_ps();
    for (size_t i = 0; i < ldk; i += 8)
        acc = _mm256_add_ps(acc, _mm256_loadu_ps(s + i));
    return 1.0f / hsum_ps(acc);
}

static inline void store_scaled(float *o, __m256 acc, float inv)
{
    _mm256_storeu_ps(o, _mm256_mul_ps(acc, _mm256_set1_ps(inv)));
}

/* out[r][d0 .. d0 + 16) = inv[r] * sum_j p[r][j] v[j][d0 ..] for r < nr. */
static void values16(const struct bert_attn *a, const float *p, size_t ldk, const float *inv,
                     int nr, float *out, int d0)
{
    __m256 a00 = _mm256_setzero_ps(), a01 = a00, a10 = a00, a11 = a00;
    __m256 a20 = a00, a21 = a00, a30 = a00, a31 = a00;
    const float *v = a->v + d0;
    for (int j = 0; j < a->n_k; j++, v += a->stride) {
        __m256 v0 = _mm256_loadu_ps(v), v1 = _mm256_loadu_ps(v + 8);
        __m256 p0 = _mm256_broadcast_ss(p + j), p1 = _mm256_broadcast_ss(p + ldk + j);
        a00 = _mm256_fmadd_ps(p0, v0, a00);
        a01 = _mm256_fmadd_ps(p0, v1, a01);
        a10 = _mm256_fmadd_ps(p1, v0, a10);
        a11 = _mm256_fmadd_ps(p1, v1, a11);
        __m256 p2 = _mm256_broadcast_ss(p + 2 * ldk + j);
        __m256 p3 = _mm256_broadcast_ss(p + 3 * ldk + j);
        a20 = _mm256_fmadd_ps(p2, v0, a20);
        a21 = _mm256_fmadd_ps(p2, v1, a21);
        a30 = _mm256_fmadd_ps(p3, v0, a30);
        a31 = _mm256_fmadd_ps(p3, v1, a31);
    }
    __m256 acc[BERT_ATT_ROWS][2] = {{a00, a01}, {a10, a11}, {a20, a21}, {a30, a31}};
    for (int r = 0; r < nr; r++) {
        float *o = out + (size_t)r * a->out_stride + d0;
        store_scaled(o, acc[r][0], inv[r]);
        store_scaled(o + 8, acc[r][1], inv[r]);
    }
}

/* The same for 8 columns (the last ones when D % 16 == 8). */
static void values8(const struct bert_attn *a, const float *p, size_t ldk, const float *inv,
                    int nr, float *out, int d0)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    const float *v = a->v + d0;
    for (int j = 0; j < a->n_k; j++, v += a->stride) {
        __m256 v0 = _mm256_loadu_ps(v);
        a0 = _mm256_fmadd_ps(_mm256_broadcast_ss(p + j), v0, a0);
        a1 = _mm256_fmadd_ps(_mm256_broadcast_ss(p + ldk + j), v0, a1);
        a2 = _mm256_fmadd_ps(_mm256_broadcast_ss(p + 2 * ldk + j), v0, a2);
        a3 = _mm256_fmadd_ps(_mm256_broadcast_ss(p + 3 * ldk + j), v0, a3);
    }
    __m256 acc[BERT_ATT_ROWS] = {a0, a1, a2, a3};
    for (int r = 0; r < nr; r++)
        store_scaled(out + (size_t)r * a->out_stride + d0, acc[r], inv[r]);
}

/* Blocks of 4 queries: scores against the transposed keys, softmax, then
 * the weighted values 16 (or 8) columns at a time. A short last block
 * recomputes row 0 in the missing rows and does not store them. */
void eng__bert_attend_avx2(const struct bert_attn *a)
{
    size_t ldk = ((size_t)a->n_k + BERT_KEY_ALIGN - 1) / BERT_KEY_ALIGN * BERT_KEY_ALIGN;
    float *kt = a->scratch;
    float *s = kt + (size_t)a->D * ldk;
    transpose_keys(a, kt, ldk);
    for (int i0 = 0; i0 < a->n_q; i0 += BERT_ATT_ROWS) {
        int nr = a->n_q - i0 < BERT_ATT_ROWS ? a->n_q - i0 : BERT_ATT_ROWS;
        const float *q[BERT_ATT_ROWS];
        float inv[BERT_ATT_ROWS];
        for (int r = 0; r < BERT_ATT_ROWS; r++)
            q[r] = a->q + (size_t)(i0 + (r < nr ? r : 0)) * a->stride;
        scores_block(q, kt, ldk, a->D, a->scale, s);
        for (int r = 0; r < BERT_ATT_ROWS; r++)
            inv[r] = softmax_row(s + (size_t)r * ldk, a->n_k, ldk);
        float *out = a->out + (size_t)i0 * a->out_stride;
        int d0 = 0;
        for (; d0 + 16 <= a->D; d0 += 16)
            values16(a, s, ldk, inv, nr, out, d0);
        if (d0 < a->D)
            values8(a, s, ldk, inv, nr, out, d0);
    }
}
