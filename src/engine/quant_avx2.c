/* quant_avx2.c - AVX2+FMA+F16C kernels (built with -mavx2 -mfma -mf16c and
 * only installed after cpu_has_avx2_fma_f16c()). Each kernel computes what
 * its scalar twin in quant_ref.c computes: integer parts exactly, float
 * accumulation in a different order; tests/test_quant.c checks every one.
 *
 * Dots: one weight row x one activation row, streaming the weights once
 * (decode is memory-bound). Matmuls of Q4_0/Q4_1/Q5_0/Q5_1 weights: for each
 * weight row and block, the weights are unpacked once into registers and
 * reused for up to MM_COLS activation columns (prefill is compute-bound).
 * Q8_0 and k-quant matmuls are in quant_avx2_tile.c.
 *
 * int8 products use maddubs (u8 x s8 -> s16 pairs) + madd (-> s32); the
 * unsigned operand stays <= 63 for k-quants and <= 127 for |q8|, so the s16
 * pair sums cannot saturate (facts §9.1).
 */
#include "engine/quant_int.h"
#include "engine/simd_avx2.h"

#include <immintrin.h>
#include <string.h>

#define MM_COLS 8
/* Q8_0 decode prefetch distance in bytes (~60 blocks): with two threads
 * sharing the memory bus, 1 KiB ahead left the stream short of requests */
#ifndef Q8_PREFETCH
#define Q8_PREFETCH 2048
#endif

static inline int hsum_i32(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

static inline __m256i ones16(void)
{
    return _mm256_set1_epi16(1);
}

/* 8 int32 sums of 4 products each: unsigned u (<=127) x signed s. */
static inline __m256i dot_us(__m256i u, __m256i s)
{
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), ones16());
}

/* Signed x signed via |x| and sign(y, x). */
static inline __m256i dot_ss(__m256i x, __m256i y)
{
    return dot_us(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
}

/* 16 bytes of nibbles -> 32 bytes: low nibbles (elements 0..15) then high
 * nibbles (16..31), matching the legacy block layout. */
static inline __m256i unpack_nib32(const uint8_t *qs)
{
    __m128i v = _mm_loadu_si128((const __m128i *)qs);
    __m256i b = _mm256_set_m128i(_mm_srli_epi16(v, 4), v);
    return _mm256_and_si256(b, _mm256_set1_epi8(0x0f));
}

/* 32 bits -> 32 bytes, 0xFF where the bit is set (bit j -> byte j). */
static inline __m256i bits_to_bytes(const uint8_t *qh)
{
    uint32_t x;
    memcpy(&x, qh, 4);
    const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202,
                                           0x0101010101010101, 0x0000000000000000);
    __m256i b = _mm256_shuffle_epi8(_mm256_set1_epi32((int)x), shuf);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    return _mm256_cmpeq_epi8(_mm256_and_si256(b, bit), bit);
}

/* ---- legacy 32-element blocks -------------------------------------------- */

/* Block i of a legacy row as 32 levels (signed for Q4_0/Q5_0/Q8_0, unsigned
 * for Q4_1/Q5_1), its scale d and min m (0 for the symmetric types). */
static inline __attribute__((always_inline)) __m256i
legacy_block(uint32_t t, const uint8_t *row, int64_t i, float *d, float *m)
{
    __m256i v;
    switch (t) {
    case GGML_TYPE_Q4_0: {
        const struct blk_q4_0 *b = (const struct blk_q4_0 *)row + i;
        *d = f16(b->d);
        *m = 0;
        return _mm256_sub_epi8(unpack_nib32(b->qs), _mm256_set1_epi8(8));
    }
    case GGML_TYPE_Q5_0: {
        const struct blk_q5_0 *b = (const struct blk_q5_0 *)row + i;
        *d = f16(b->d);
        *m = 0;
        v = _mm256_or_si256(unpack_nib32(b->qs),
                            _mm256_and_si256(bits_to_bytes(b->qh), _mm256_set1_epi8(0x10)));
        return _mm256_sub_epi8(v, _mm256_set1_epi8(16));
    }
    case GGML_TYPE_Q4_1: {
        const struct blk_q4_1 *b = (const struct blk_q4_1 *)row + i;
        *d = f16(b->d);
        *m = f16(b->m);
        return unpack_nib32(b->qs);
    }
    case GGML_TYPE_Q5_1: {
        const struct blk_q5_1 *b = (const struct blk_q5_1 *)row + i;
        *d = f16(b->d);
        *m = f16(b->m);
        return _mm256_or_si256(unpack_nib32(b->qs),
                               _mm256_and_si256(bits_to_bytes(b->qh), _mm256_set1_epi8(0x10)));
    }
    default: {
        const struct blk_q8_0 *b = (const struct blk_q8_0 *)row + i;
        *d = f16(b->d);
        *m = 0;
        return _mm256_loadu_si256((const __m256i *)b->qs);
    }
    }
}

static inline bool legacy_signed(uint32_t t)
{
    return t == GGML_TYPE_Q4_0 || t == GGML_TYPE_Q5_0 || t == GGML_TYPE_Q8_0;
}

/* Activation block i: Q8_0 (d, qs) or Q8_1 (d, s, qs). */
static inline __attribute__((always_inline)) const int8_t *
act_block(uint32_t t, const uint8_t *act, int64_t i, float *d, float *s)
{
    if (legacy_signed(t)) {
        const struct blk_q8_0 *y = (const struct blk_q8_0 *)act + i;
        *d = f16(y->d);
        *s = 0;
        return y->qs;
    }
    const struct blk_q8_1 *y = (const struct blk_q8_1 *)act + i;
    *d = f16(y->d);
    *s = f16(y->s);
    return y->qs;
}

static inline __attribute__((always_inline)) __m256
legacy_step(uint32_t t, const void *w, const void *a, int64_t i, __m256 acc, float *summ)
{
    float dx, mx, dy, sy;
    __m256i v = legacy_block(t, w, i, &dx, &mx);
    const int8_t *q = act_block(t, a, i, &dy, &sy);
    __m256i y = _mm256_loadu_si256((const __m256i *)q);
    __m256i p = legacy_signed(t) ? dot_ss(v, y) : dot_us(v, y);
    *summ += mx * sy;
    return _mm256_fmadd_ps(_mm256_set1_ps(dx * dy), _mm256_cvtepi32_ps(p), acc);
}

/* Two independent accumulators so consecutive blocks do not wait on each
 * other's FMA. */
static inline __attribute__((always_inline)) float
dot_legacy(uint32_t t, int64_t n, const void *w, const void *a)
{
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    float summ = 0;
    int64_t nb = n / 32, i = 0;
    for (; i + 2 <= nb; i += 2) {
        acc0 = legacy_step(t, w, a, i, acc0, &summ);
        acc1 = legacy_step(t, w, a, i + 1, acc1, &summ);
    }
    if (i < nb)
        acc0 = legacy_step(t, w, a, i, acc0, &summ);
    return hsum_ps(_mm256_add_ps(acc0, acc1)) + summ;
}

static float dot_q4_0(int64_t n, const void *w, const void *a) { return dot_legacy(GGML_TYPE_Q4_0, n, w, a); }
static float dot_q4_1(int64_t n, const void *w, const void *a) { return dot_legacy(GGML_TYPE_Q4_1, n, w, a); }
static float dot_q5_0(int64_t n, const void *w, const void *a) { return dot_legacy(GGML_TYPE_Q5_0, n, w, a); }
static float dot_q5_1(int64_t n, const void *w, const void *a) { return dot_legacy(GGML_TYPE_Q5_1, n, w, a); }

/* One Q8_0 x Q8_0 block: acc += dx*dy * (x . y). */
static inline __attribute__((always_inline)) __m256
q8_0_block(const struct blk_q8_0 *x, const struct blk_q8_0 *y, __m256 acc)
{
    __m256i p = dot_ss(_mm256_loadu_si256((const __m256i *)x->qs),
                       _mm256_loadu_si256((const __m256i *)y->qs));
    return _mm256_fmadd_ps(_mm256_set1_ps(f16(x->d) * f16(y->d)), _mm256_cvtepi32_ps(p), acc);
}

/* Decode path for Q8_0 (memory-bound): four blocks per iteration into two
 * accumulators, the weights prefetched Q8_PREFETCH bytes ahead so that more
 * lines are in flight than the hardware prefetcher alone keeps (it also
 * stops at 4 KiB page ends; the prefetches cross them), and no min term. */
static float dot_q8_0(int64_t n, const void *w, const void *a)
{
    const struct blk_q8_0 *x = w, *y = a;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t nb = n / 32, i = 0;
    for (; i + 4 <= nb; i += 4) {
        const char *ahead = (const char *)(x + i) + Q8_PREFETCH;
        _mm_prefetch(ahead, _MM_HINT_T0);
        _mm_prefetch(ahead + 64, _MM_HINT_T0);
        _mm_prefetch(ahead + 128, _MM_HINT_T0);
        acc0 = q8_0_block(x + i, y + i, acc0);
        acc1 = q8_0_block(x + i + 1, y + i + 1, acc1);
        acc0 = q8_0_block(x + i + 2, y + i + 2, acc0);
        acc1 = q8_0_block(x + i + 3, y + i + 3, acc1);
    }
    for (; i < nb; i++)
        acc0 = q8_0_block(x + i, y + i, acc0);
    return hsum_ps(_mm256_add_ps(acc0, acc1));
}

/* Eight int32 vectors -> one vector whose lane j is the sum of v[j]. */
static inline __m256i hsum8_i32(const __m256i *v)
{
    __m256i t0 = _mm256_hadd_epi32(v[0], v[1]), t1 = _mm256_hadd_epi32(v[2], v[3]);
    __m256i t2 = _mm256_hadd_epi32(v[4], v[5]), t3 = _mm256_hadd_epi32(v[6], v[7]);
    __m256i u0 = _mm256_hadd_epi32(t0, t1), u1 = _mm256_hadd_epi32(t2, t3);
    return _mm256_add_epi32(_mm256_permute2x128_si256(u0, u1, 0x20),
                            _mm256_permute2x128_si256(u0, u1, 0x31));
}

/* Column scales of one group of MM_COLS activation rows, per block, as
 * floats (lane j = column j; unused columns 0). */
#define MM_MAX_BLOCKS 512

static void legacy_col_scales(uint32_t t, const uint8_t *ap, size_t as, int nc, int64_t nb,
                              float (*dy)[MM_COLS], float (*sy)[MM_COLS])
{
    for (int64_t i = 0; i < nb; i++) {
        for (int j = 0; j < MM_COLS; j++) {
            float d = 0, s = 0;
            if (j < nc)
                act_block(t, ap + (size_t)j * as, i, &d, &s);
            dy[i][j] = d;
            sy[i][j] = s;
        }
    }
}

/* Legacy weights x MM_COLS activation columns: each weight block is unpacked
 * once per row, multiplied with every column, and the per-column integer
 * sums are reduced into the lanes of one vector, so the float scaling costs
 * one convert + two FMAs per block for all columns together. */
static inline __attribute__((always_inline)) void
mm_legacy_group(uint32_t t, int64_t k, const uint8_t *w, size_t rs, int64_t nr,
                const uint8_t *ap, size_t as, int nc, float *out, int64_t os)
{
    float dy[MM_MAX_BLOCKS][MM_COLS], sy[MM_MAX_BLOCKS][MM_COLS];
    int64_t nb = k / 32;
    legacy_col_scales(t, ap, as, nc, nb, dy, sy);
    for (int64_t r = 0; r < nr; r++) {
        const uint8_t *x = w + (size_t)r * rs;
        __m256 acc = _mm256_setzero_ps();
        for (int64_t i = 0; i < nb; i++) {
            float dx, mx;
            __m256i v = legacy_block(t, x, i, &dx, &mx);
            __m256i u = legacy_signed(t) ? _mm256_sign_epi8(v, v) : v;
            __m256i p[MM_COLS];
            /* columns past nc re-read column 0: their lanes are scaled by
             * dy = sy = 0 (legacy_col_scales), with no branch per column */
            #pragma GCC unroll 8
            for (int j = 0; j < MM_COLS; j++) {
                size_t off = (size_t)(j < nc ? j : 0) * as;
                const struct blk_q8_0 *y0 = (const struct blk_q8_0 *)(ap + off);
                const struct blk_q8_1 *y1 = (const struct blk_q8_1 *)(ap + off);
                const int8_t *q = legacy_signed(t) ? y0[i].qs : y1[i].qs;
                __m256i y = _mm256_loadu_si256((const __m256i *)q);
                if (legacy_signed(t))
                    y = _mm256_sign_epi8(y, v);
                p[j] = dot_us(u, y);
            }
            __m256 sum = _mm256_cvtepi32_ps(hsum8_i32(p));
            acc = _mm256_fmadd_ps(sum, _mm256_mul_ps(_mm256_set1_ps(dx), _mm256_loadu_ps(dy[i])), acc);
            if (!legacy_signed(t))
                acc = _mm256_fmadd_ps(_mm256_set1_ps(mx), _mm256_loadu_ps(sy[i]), acc);
        }
        float lanes[MM_COLS];
        _mm256_storeu_ps(lanes, acc);
        for (int j = 0; j < nc; j++)
            out[j * os + r] = lanes[j];
    }
}

static inline __attribute__((always_inline)) void
mm_legacy(uint32_t t, int64_t k, const void *w, size_t rs, int64_t nr,
          const void *a, size_t as, int64_t na, float *out, int64_t os)
{
    if (k / 32 > MM_MAX_BLOCKS) {
        for (int64_t j = 0; j < na; j++)
            for (int64_t r = 0; r < nr; r++)
                out[j * os + r] = dot_legacy(t, k, (const uint8_t *)w + (size_t)r * rs,
                                             (const uint8_t *)a + (size_t)j * as);
        return;
    }
    for (int64_t j0 = 0; j0 < na; j0 += MM_COLS) {
        int nc = na - j0 < MM_COLS ? (int)(na - j0) : MM_COLS;
        mm_legacy_group(t, k, w, rs, nr, (const uint8_t *)a + (size_t)j0 * as, as, nc,
                        out + j0 * os, os);
    }
}

#define MM_LEGACY(name, T)                                                        \
    static void name(int64_t k, const void *w, size_t rs, int64_t nr,             \
                     const void *a, size_t as, int64_t na, float *out, int64_t os) \
    {                                                                             \
        mm_legacy(T, k, w, rs, nr, a, as, na, out, os);                           \
    }
MM_LEGACY(mm_q4_0, GGML_TYPE_Q4_0)
MM_LEGACY(mm_q4_1, GGML_TYPE_Q4_1)
MM_LEGACY(mm_q5_0, GGML_TYPE_Q5_0)
MM_LEGACY(mm_q5_1, GGML_TYPE_Q5_1)
#undef MM_LEGACY

/* ---- k-quants (256-element super-blocks) x Q8_K -------------------------- */

/* The 12 packed scale bytes of a Q4_K/Q5_K block as 8 scales then 8 mins
 * (bytes), unpacked with 32-bit operations (facts §2.2 layout). */
static inline __m128i scales_mins_k4(const uint8_t *s12)
{
    uint32_t u0, u1, u2;
    memcpy(&u0, s12, 4);
    memcpy(&u1, s12 + 4, 4);
    memcpy(&u2, s12 + 8, 4);
    const uint32_t m6 = 0x3f3f3f3f, m4 = 0x0f0f0f0f, m2 = 0x03030303;
    uint32_t m47 = ((u2 >> 4) & m4) | (((u1 >> 6) & m2) << 4);  /* m4..7 */
    uint32_t s47 = (u2 & m4) | (((u0 >> 6) & m2) << 4);         /* sc4..7 */
    /* built in registers: four scalar stores + a 16-byte load would miss
     * store-to-load forwarding on every block */
    return _mm_set_epi32((int)m47, (int)(u1 & m6), (int)s47, (int)(u0 & m6));
}

/* Lane pattern that broadcasts int16 element j of a 128-bit vector. */
static inline __m256i bcast16(int j)
{
    return _mm256_set1_epi16((short)(((2 * j + 1) << 8) | (2 * j)));
}

/* One Q4_K super-block x Q8_K block: acc += d*dy*sum(scale*q.y),
 * accm += dmin*dy*sum(min*bsum). Two 32-element sub-blocks per 32-byte load. */
static inline __attribute__((always_inline)) void
q4k_block(const struct blk_q4_k *x, const struct blk_q8_k *y, __m256 *acc, __m256 *accm)
{
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    __m128i sm = scales_mins_k4(x->scales);
    /* 8 scales as int16 in both halves; mins duplicated per bsum pair */
    __m256i sc = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(sm));
    __m256i coef = _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(sm, sm));
    __m256i sum0 = _mm256_setzero_si256(), sum1 = _mm256_setzero_si256();
    for (int c = 0; c < 4; c++) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(x->qs + 32 * c));
        __m256i y0 = _mm256_loadu_si256((const __m256i *)(y->qs + 64 * c));
        __m256i y1 = _mm256_loadu_si256((const __m256i *)(y->qs + 64 * c + 32));
        __m256i p0 = _mm256_maddubs_epi16(_mm256_and_si256(v, m4), y0);
        __m256i p1 = _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(v, 4), m4), y1);
        sum0 = _mm256_add_epi32(sum0, _mm256_madd_epi16(p0, _mm256_shuffle_epi8(sc, bcast16(2 * c))));
        sum1 = _mm256_add_epi32(sum1, _mm256_madd_epi16(p1, _mm256_shuffle_epi8(sc, bcast16(2 * c + 1))));
    }
    __m256i corr = _mm256_madd_epi16(coef, _mm256_loadu_si256((const __m256i *)y->bsums));
    *acc = _mm256_fmadd_ps(_mm256_set1_ps(f16(x->d) * y->d),
                           _mm256_cvtepi32_ps(_mm256_add_epi32(sum0, sum1)), *acc);
    *accm = _mm256_fmadd_ps(_mm256_set1_ps(f16(x->dmin) * y->d), _mm256_cvtepi32_ps(corr), *accm);
}

/* One Q5_K super-block: as Q4_K plus the fifth bit from qh (bit 2c for the
 * low nibbles of chunk c, bit 2c+1 for the high ones). */
static inline __attribute__((always_inline)) void
q5k_block(const struct blk_q5_k *x, const struct blk_q8_k *y, __m256 *acc, __m256 *accm)
{
    const __m256i m4 = _mm256_set1_epi8(0x0f), b4 = _mm256_set1_epi8(0x10);
    __m128i sm = scales_mins_k4(x->scales);
    __m256i sc = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(sm));
    __m256i coef = _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(sm, sm));
    __m256i qh = _mm256_loadu_si256((const __m256i *)x->qh);
    __m256i sum0 = _mm256_setzero_si256(), sum1 = _mm256_setzero_si256();
    for (int c = 0; c < 4; c++) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(x->qs + 32 * c));
        /* bit 2c of qh moved to bit 4 (shift left 4-2c, or right 2c-4) */
        __m256i h0 = c < 2 ? _mm256_slli_epi16(qh, 4 - 2 * c) : _mm256_srli_epi16(qh, 2 * c - 4);
        __m256i h1 = c < 2 ? _mm256_slli_epi16(qh, 3 - 2 * c) : _mm256_srli_epi16(qh, 2 * c - 3);
        __m256i q0 = _mm256_or_si256(_mm256_and_si256(v, m4), _mm256_and_si256(h0, b4));
        __m256i q1 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(v, 4), m4), _mm256_and_si256(h1, b4));
        __m256i y0 = _mm256_loadu_si256((const __m256i *)(y->qs + 64 * c));
        __m256i y1 = _mm256_loadu_si256((const __m256i *)(y->qs + 64 * c + 32));
        sum0 = _mm256_add_epi32(sum0, _mm256_madd_epi16(_mm256_maddubs_epi16(q0, y0),
                                                         _mm256_shuffle_epi8(sc, bcast16(2 * c))));
        sum1 = _mm256_add_epi32(sum1, _mm256_madd_epi16(_mm256_maddubs_epi16(q1, y1),
                                                         _mm256_shuffle_epi8(sc, bcast16(2 * c + 1))));
    }
    __m256i corr = _mm256_madd_epi16(coef, _mm256_loadu_si256((const __m256i *)y->bsums));
    *acc = _mm256_fmadd_ps(_mm256_set1_ps(f16(x->d) * y->d),
                           _mm256_cvtepi32_ps(_mm256_add_epi32(sum0, sum1)), *acc);
    *accm = _mm256_fmadd_ps(_mm256_set1_ps(f16(x->dmin) * y->d), _mm256_cvtepi32_ps(corr), *accm);
}

/* Decode path for Q4_K and Q5_K (t, a constant after inlining): two
 * super-blocks per iteration into independent accumulators, weights
 * prefetched a few blocks ahead. */
static inline __attribute__((always_inline)) void
kq45_block(uint32_t t, const uint8_t *x, const struct blk_q8_k *y, __m256 *acc, __m256 *accm)
{
    if (t == GGML_TYPE_Q4_K)
        q4k_block((const struct blk_q4_k *)x, y, acc, accm);
    else
        q5k_block((const struct blk_q5_k *)x, y, acc, accm);
}

static inline __attribute__((always_inline)) float
dot_kq45(uint32_t t, int64_t n, const void *w, const void *a)
{
    const uint8_t *x = w;
    const struct blk_q8_k *y = a;
    size_t bs = t == GGML_TYPE_Q4_K ? sizeof(struct blk_q4_k) : sizeof(struct blk_q5_k);
    __m256 acc0 = _mm256_setzero_ps(), accm0 = _mm256_setzero_ps();
    __m256 acc1 = _mm256_setzero_ps(), accm1 = _mm256_setzero_ps();
    int64_t nb = n / QK_K, i = 0;
    for (; i + 2 <= nb; i += 2) {
        const char *ahead = (const char *)(x + (size_t)(i + 6) * bs);
        _mm_prefetch(ahead, _MM_HINT_T0);
        _mm_prefetch(ahead + 128, _MM_HINT_T0);
        _mm_prefetch(ahead + bs, _MM_HINT_T0);
        _mm_prefetch(ahead + bs + 128, _MM_HINT_T0);
        kq45_block(t, x + (size_t)i * bs, y + i, &acc0, &accm0);
        kq45_block(t, x + (size_t)(i + 1) * bs, y + i + 1, &acc1, &accm1);
    }
    if (i < nb)
        kq45_block(t, x + (size_t)i * bs, y + i, &acc0, &accm0);
    return hsum_ps(_mm256_sub_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(accm0, accm1)));
}

static float dot_q4_k(int64_t n, const void *w, const void *a)
{
    return dot_kq45(GGML_TYPE_Q4_K, n, w, a);
}

static float dot_q5_k(int64_t n, const void *w, const void *a)
{
    return dot_kq45(GGML_TYPE_Q5_K, n, w, a);
}

/* Shuffle that puts int16 scale 2k in the low 128-bit lane and 2k+1 in the
 * high one (each lane holds the same 8 scales). */
static inline __m256i q6_scale_shuffle(int k)
{
    __m128i lo = _mm_set1_epi16((short)(((4 * k + 1) << 8) | (4 * k)));
    __m128i hi = _mm_set1_epi16((short)(((4 * k + 3) << 8) | (4 * k + 2)));
    return _mm256_set_m128i(hi, lo);
}

/* One Q6_K super-block x Q8_K block: 6-bit levels assembled in registers
 * per 32 values; the -32 offset comes back through 32 * sum(scale * bsum). */
static inline __attribute__((always_inline)) __m256
q6k_block(const struct blk_q6_k *x, const struct blk_q8_k *y, __m256 acc)
{
    const __m256i m4 = _mm256_set1_epi8(0x0f), m30 = _mm256_set1_epi8(0x30);
    __m256i sum0 = _mm256_setzero_si256(), sum1 = _mm256_setzero_si256();
    __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x->scales));
    for (int h = 0; h < 2; h++) {
        /* the 8 scales of this half, as int16, in both 128-bit lanes */
        __m256i sch = h ? _mm256_permute2x128_si256(sc16, sc16, 0x11)
                        : _mm256_permute2x128_si256(sc16, sc16, 0x00);
        const int8_t *yq = y->qs + 128 * h;
        __m256i l0 = _mm256_loadu_si256((const __m256i *)(x->ql + 64 * h));
        __m256i l1 = _mm256_loadu_si256((const __m256i *)(x->ql + 64 * h + 32));
        __m256i qh = _mm256_loadu_si256((const __m256i *)(x->qh + 32 * h));
        __m256i q[4];
        q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m30));
        q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30));
        q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(qh, m30));
        q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                               _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30));
        for (int k = 0; k < 4; k += 2) {
            __m256i p0 = _mm256_maddubs_epi16(q[k], _mm256_loadu_si256((const __m256i *)(yq + 32 * k)));
            __m256i p1 = _mm256_maddubs_epi16(q[k + 1], _mm256_loadu_si256((const __m256i *)(yq + 32 * k + 32)));
            sum0 = _mm256_add_epi32(sum0, _mm256_madd_epi16(p0, _mm256_shuffle_epi8(sch, q6_scale_shuffle(k))));
            sum1 = _mm256_add_epi32(sum1, _mm256_madd_epi16(p1, _mm256_shuffle_epi8(sch, q6_scale_shuffle(k + 1))));
        }
    }
    __m256i corr = _mm256_madd_epi16(_mm256_slli_epi16(sc16, 5), _mm256_loadu_si256((const __m256i *)y->bsums));
    __m256i sumi = _mm256_sub_epi32(_mm256_add_epi32(sum0, sum1), corr);
    return _mm256_fmadd_ps(_mm256_set1_ps(f16(x->d) * y->d), _mm256_cvtepi32_ps(sumi), acc);
}

/* Decode path for Q6_K: two super-blocks per iteration into independent
 * accumulators, weights prefetched a few blocks ahead. */
static float dot_q6_k(int64_t n, const void *w, const void *a)
{
    const struct blk_q6_k *x = w;
    const struct blk_q8_k *y = a;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t nb = n / QK_K, i = 0;
    for (; i + 2 <= nb; i += 2) {
        _mm_prefetch((const char *)(x + i + 6), _MM_HINT_T0);
        _mm_prefetch((const char *)(x + i + 6) + 128, _MM_HINT_T0);
        _mm_prefetch((const char *)(x + i + 7), _MM_HINT_T0);
        _mm_prefetch((const char *)(x + i + 7) + 128, _MM_HINT_T0);
        acc0 = q6k_block(x + i, y + i, acc0);
        acc1 = q6k_block(x + i + 1, y + i + 1, acc1);
    }
    if (i < nb)
        acc0 = q6k_block(x + i, y + i, acc0);
    return hsum_ps(_mm256_add_ps(acc0, acc1));
}

/* ---- activation quantization ----------------------------------------- */

static void act_q8_0(const float *x, void *dst, int64_t n)
{
    struct blk_q8_0 *y = dst;
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int64_t i = 0; i < n / 32; i++) {
        const float *xb = x + 32 * i;
        __m256 v[4], mx = _mm256_setzero_ps();
        for (int j = 0; j < 4; j++) {
            v[j] = _mm256_loadu_ps(xb + 8 * j);
            mx = _mm256_max_ps(mx, _mm256_andnot_ps(sign, v[j]));
        }
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        float amax = _mm_cvtss_f32(m4);
        float d = amax / 127.0f;
        float id = d ? 1.0f / d : 0.0f;
        y[i].d = quant_f32_to_f16(d);
        __m256 idv = _mm256_set1_ps(id);
        __m256i q[4];
        for (int j = 0; j < 4; j++)
            q[j] = _mm256_cvtps_epi32(_mm256_mul_ps(v[j], idv));
        __m256i p01 = _mm256_packs_epi32(q[0], q[1]);
        __m256i p23 = _mm256_packs_epi32(q[2], q[3]);
        __m256i p = _mm256_packs_epi16(p01, p23);
        /* undo the in-lane interleave of the packs */
        p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)y[i].qs, p);
    }
}

/* Sign-carrying maximum of a Q8_K block, as the reference finds it: the
 * first element (lowest index) whose |x| equals the block's amax. */
static float q8k_signed_max(const float *xb, __m256 amaxv, float amax)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int j = 0; j < QK_K; j += 8) {
        __m256 eq = _mm256_cmp_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(xb + j)), amaxv, _CMP_EQ_OQ);
        int m = _mm256_movemask_ps(eq);
        if (m)
            return xb[j + __builtin_ctz((unsigned)m)];
    }
    return amax;
}

/* 8 int32 vectors holding 4 partial sums per 128-bit lane (low lane: group
 * 2v, high lane: group 2v+1 of vector v) -> the 8 group sums in order. */
static inline __m256i q8k_group_sums(const __m256i *s)
{
    __m256i t = _mm256_hadd_epi32(_mm256_hadd_epi32(s[0], s[1]), _mm256_hadd_epi32(s[2], s[3]));
    return _mm256_permutevar8x32_epi32(t, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* Q8_K activations (the k-quant partner), bit-exact with act_q8_k in
 * quant_ref.c: cvtps rounds to nearest even like nearest_int, and the
 * saturating packs clamp at 127 like the reference. */
static void act_q8_k(const float *x, void *dst, int64_t n)
{
    struct blk_q8_k *y = dst;
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256i ones8 = _mm256_set1_epi8(1), perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float *xb = x + QK_K * i;
        __m256 mx = _mm256_setzero_ps();
        for (int j = 0; j < QK_K; j += 8)
            mx = _mm256_max_ps(mx, _mm256_andnot_ps(sign, _mm256_loadu_ps(xb + j)));
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        float amax = _mm_cvtss_f32(m4);
        memset(&y[i], 0, sizeof y[i]);
        if (amax == 0.0f)
            continue;
        float iscale = -127.0f / q8k_signed_max(xb, _mm256_set1_ps(amax), amax);
        __m256 isv = _mm256_set1_ps(iscale);
        __m256i s[8];
        for (int c = 0; c < 8; c++) {
            const float *xc = xb + 32 * c;
            __m256i q0 = _mm256_cvtps_epi32(_mm256_mul_ps(isv, _mm256_loadu_ps(xc)));
            __m256i q1 = _mm256_cvtps_epi32(_mm256_mul_ps(isv, _mm256_loadu_ps(xc + 8)));
            __m256i q2 = _mm256_cvtps_epi32(_mm256_mul_ps(isv, _mm256_loadu_ps(xc + 16)));
            __m256i q3 = _mm256_cvtps_epi32(_mm256_mul_ps(isv, _mm256_loadu_ps(xc + 24)));
            __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q0, q1), _mm256_packs_epi32(q2, q3));
            p = _mm256_permutevar8x32_epi32(p, perm);
            _mm256_storeu_si256((__m256i *)(y[i].qs + 32 * c), p);
            /* |level| <= 127 so maddubs(1, q) pair sums are exact */
            s[c] = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, p), ones16());
        }
        __m256i g = _mm256_packs_epi32(q8k_group_sums(s), q8k_group_sums(s + 4));
        g = _mm256_permute4x64_epi64(g, 0xd8);
        _mm256_storeu_si256((__m256i *)y[i].bsums, g);
        y[i].d = 1.0f / iscale;
    }
}

void quant__avx2_kernels(struct quant_kernels *k)
{
    quant__avx2_float_kernels(k);
    k->dot[GGML_TYPE_Q4_0] = dot_q4_0;
    k->dot[GGML_TYPE_Q4_1] = dot_q4_1;
    k->dot[GGML_TYPE_Q5_0] = dot_q5_0;
    k->dot[GGML_TYPE_Q5_1] = dot_q5_1;
    k->dot[GGML_TYPE_Q8_0] = dot_q8_0;
    k->dot[GGML_TYPE_Q4_K] = dot_q4_k;
    k->dot[GGML_TYPE_Q5_K] = dot_q5_k;
    k->dot[GGML_TYPE_Q6_K] = dot_q6_k;
    k->mm[GGML_TYPE_Q4_0] = mm_q4_0;
    k->mm[GGML_TYPE_Q4_1] = mm_q4_1;
    k->mm[GGML_TYPE_Q5_0] = mm_q5_0;
    k->mm[GGML_TYPE_Q5_1] = mm_q5_1;
    k->act[GGML_TYPE_Q8_0] = act_q8_0;
    k->act[GGML_TYPE_Q8_K] = act_q8_k;
    quant__avx2_tile_kernels(k);
}
