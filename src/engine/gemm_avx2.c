/* gemm_avx2.c - packed, cache-blocked GEMM for F32/F16/BF16 weights x f32
 * activations (see gemm_avx2.h for the contract and the blocking scheme).
 */
#include "engine/gemm_avx2.h"

#include "engine/quant.h"
#include "engine/simd_avx2.h"

#include <immintrin.h>
#include <stdbool.h>
#include <string.h>

#define MR 16 /* weight rows per register tile (2 ymm) */
#define NR 6  /* activations per register tile (broadcast) */

/* ---- packing: 16 weight rows x kc -> f32, k-major (wp[kk*16 + row]) ----- */

static inline __attribute__((always_inline)) __m256 load8(uint32_t t, const uint8_t *p)
{
    if (t == GGML_TYPE_F16)
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
    if (t == GGML_TYPE_BF16) {
        __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
        return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
    }
    return _mm256_loadu_ps((const float *)p);
}

static inline float load1(uint32_t t, const uint8_t *p)
{
    uint16_t h;
    float f;
    if (t == GGML_TYPE_F32) {
        memcpy(&f, p, 4);
        return f;
    }
    memcpy(&h, p, 2);
    return t == GGML_TYPE_F16 ? f16(h) : quant_bf16_to_f32(h);
}

/* Transpose of 8 rows of 8 floats (v[q] becomes column q). */
static inline __attribute__((always_inline)) void transpose8(__m256 v[8])
{
    __m256 t0 = _mm256_unpacklo_ps(v[0], v[1]), t1 = _mm256_unpackhi_ps(v[0], v[1]);
    __m256 t2 = _mm256_unpacklo_ps(v[2], v[3]), t3 = _mm256_unpackhi_ps(v[2], v[3]);
    __m256 t4 = _mm256_unpacklo_ps(v[4], v[5]), t5 = _mm256_unpackhi_ps(v[4], v[5]);
    __m256 t6 = _mm256_unpacklo_ps(v[6], v[7]), t7 = _mm256_unpackhi_ps(v[6], v[7]);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xee);
    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xee);
    __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xee);
    __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xee);
    v[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
    v[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
    v[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
    v[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
    v[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
    v[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    v[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
    v[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

/* Stands in for the rows past the last one of a partial panel. */
static const uint8_t zero_row[GEMM_KC * sizeof(float)];

/* Rows row[0..7] x elements [0, kc) of each (pointers already at the
 * block's first element) into wp[kk*16 + q]. */
static inline __attribute__((always_inline)) void
pack8(uint32_t t, size_t es, const uint8_t *const row[8], int64_t kc, float *wp)
{
    int64_t kk = 0;
    for (; kk + 8 <= kc; kk += 8) {
        __m256 v[8];
        #pragma GCC unroll 8
        for (int q = 0; q < 8; q++)
            v[q] = load8(t, row[q] + (size_t)kk * es);
        transpose8(v);
        #pragma GCC unroll 8
        for (int q = 0; q < 8; q++)
            _mm256_store_ps(wp + (kk + q) * MR, v[q]);
    }
    for (; kk < kc; kk++)
        for (int q = 0; q < 8; q++)
            wp[kk * MR + q] = load1(t, row[q] + (size_t)kk * es);
}

/* Rows [0, nrow) of w (nrow <= 16; the rest packed as zeros), elements
 * [p0, p0 + kc), into the panel wp (32-byte aligned, 16 * kc floats). */
static inline __attribute__((always_inline)) void
pack_panel(uint32_t t, const uint8_t *w, size_t rs, int nrow, int64_t p0, int64_t kc, float *wp)
{
    size_t es = t == GGML_TYPE_F32 ? 4 : 2;
    for (int g = 0; g < MR / 8; g++) {
        const uint8_t *row[8];
        for (int q = 0; q < 8; q++)
            row[q] = g * 8 + q < nrow ? w + (size_t)(g * 8 + q) * rs + (size_t)p0 * es : zero_row;
        pack8(t, es, row, kc, wp + g * 8);
    }
}

/* The weights of the panel packed next: nrow rows of `bytes` bytes at p
 * (row stride rs). While a panel runs, each of its 6-activation tiles asks
 * for two of these rows (into L2), so the next pack does not wait for DRAM
 * (a row's 512-byte piece per k block is too short for the hardware
 * prefetcher; +1-17% on the llama F16 prefill GEMM, docs/engine.md). */
struct next_panel {
    const uint8_t *p;
    size_t rs, bytes;
    int nrow;
};

/* The panel packed after rows [r0, r0+16) x the k block at p0 of a row
 * block of nr rows: the next 16 rows, else the block's first rows at the
 * next k block, else none (nrow 0). */
static inline struct next_panel next_panel(uint32_t t, const uint8_t *w, size_t rs, int64_t nr,
                                           int64_t k, int64_t r0, int64_t p0)
{
    size_t es = t == GGML_TYPE_F32 ? 4 : 2;
    int64_t kc = k - p0 < GEMM_KC ? k - p0 : GEMM_KC;
    if (r0 + MR < nr) {
        int n = nr - r0 - MR < MR ? (int)(nr - r0 - MR) : MR;
        return (struct next_panel){w + (size_t)(r0 + MR) * rs + (size_t)p0 * es, rs, (size_t)kc * es, n};
    }
    if (p0 + GEMM_KC < k) {
        int64_t kn = k - p0 - GEMM_KC < GEMM_KC ? k - p0 - GEMM_KC : GEMM_KC;
        return (struct next_panel){w + (size_t)(p0 + GEMM_KC) * es, rs, (size_t)kn * es,
                                   nr < MR ? (int)nr : MR};
    }
    return (struct next_panel){w, rs, 0, 0};
}

/* Prefetch rows q and q+1 of the next panel. */
static inline void prefetch_rows(const struct next_panel *np, int q)
{
    for (int r = q; r < q + 2 && r < np->nrow; r++)
        for (size_t b = 0; b < np->bytes; b += 64)
            _mm_prefetch((const char *)np->p + (size_t)r * np->rs + b, _MM_HINT_T1);
}

/* ---- register tile: 16 rows x n activations ----------------------------- */

/* out[0..nrow) = (or +=) the 16 lanes of c0, c1. */
static inline __attribute__((always_inline)) void
store_col(float *o, __m256 c0, __m256 c1, int nrow, bool add)
{
    if (nrow == MR) {
        if (add) {
            c0 = _mm256_add_ps(c0, _mm256_loadu_ps(o));
            c1 = _mm256_add_ps(c1, _mm256_loadu_ps(o + 8));
        }
        _mm256_storeu_ps(o, c0);
        _mm256_storeu_ps(o + 8, c1);
        return;
    }
    float tmp[MR];
    _mm256_storeu_ps(tmp, c0);
    _mm256_storeu_ps(tmp + 8, c1);
    for (int r = 0; r < nrow; r++)
        o[r] = add ? o[r] + tmp[r] : tmp[r];
}

/* acc[row 16][act j] over kc elements of the panel, then written to
 * out[j*os + row] (added to it when add). n is a constant after inlining. */
static inline __attribute__((always_inline)) void
tile(int n, int64_t kc, const float *wp, const float *a, size_t as, float *out, int64_t os,
     int nrow, bool add)
{
    __m256 c0[NR], c1[NR];
    const float *y[NR];
    for (int j = 0; j < NR; j++) {
        c0[j] = c1[j] = _mm256_setzero_ps();
        y[j] = (const float *)((const uint8_t *)a + (size_t)(j < n ? j : 0) * as);
    }
    #pragma GCC unroll 4
    for (int64_t kk = 0; kk < kc; kk++) {
        __m256 w0 = _mm256_load_ps(wp + kk * MR), w1 = _mm256_load_ps(wp + kk * MR + 8);
        #pragma GCC unroll 6
        for (int j = 0; j < n; j++) {
            __m256 b = _mm256_broadcast_ss(y[j] + kk);
            c0[j] = _mm256_fmadd_ps(w0, b, c0[j]);
            c1[j] = _mm256_fmadd_ps(w1, b, c1[j]);
        }
    }
    #pragma GCC unroll 6
    for (int j = 0; j < n; j++)
        store_col(out + j * os, c0[j], c1[j], nrow, add);
}

/* One packed panel against activations [0, nb) (their elements from the
 * panel's first k): groups of 6, then the 1..5 left. */
static void panel_x_acts(const float *wp, int64_t kc, const float *a, size_t as, int64_t nb,
                         float *out, int64_t os, int nrow, bool add, const struct next_panel *np)
{
    int64_t j = 0;
    for (int q = 0; j + NR <= nb; j += NR, q += 2) {
        if (q < np->nrow)
            prefetch_rows(np, q);
        tile(NR, kc, wp, (const float *)((const uint8_t *)a + (size_t)j * as), as,
             out + j * os, os, nrow, add);
    }
    const float *aj = (const float *)((const uint8_t *)a + (size_t)j * as);
    switch (nb - j) {
    case 5: tile(5, kc, wp, aj, as, out + j * os, os, nrow, add); break;
    case 4: tile(4, kc, wp, aj, as, out + j * os, os, nrow, add); break;
    case 3: tile(3, kc, wp, aj, as, out + j * os, os, nrow, add); break;
    case 2: tile(2, kc, wp, aj, as, out + j * os, os, nrow, add); break;
    case 1: tile(1, kc, wp, aj, as, out + j * os, os, nrow, add); break;
    default: break;
    }
}

/* Rows [0, nr) (nr <= GEMM_MC) x activations [0, nb) (nb <= GEMM_NC): k in
 * blocks of GEMM_KC; each block's 16-row panels packed and run in turn. */
static inline __attribute__((always_inline)) void
row_block(uint32_t t, int64_t k, const uint8_t *w, size_t rs, int64_t nr, const uint8_t *a,
          size_t as, int64_t nb, float *out, int64_t os)
{
    float wp[MR * GEMM_KC] __attribute__((aligned(32)));
    for (int64_t p0 = 0; p0 < k; p0 += GEMM_KC) {
        int64_t kc = k - p0 < GEMM_KC ? k - p0 : GEMM_KC;
        for (int64_t r0 = 0; r0 < nr; r0 += MR) {
            int nrow = nr - r0 < MR ? (int)(nr - r0) : MR;
            struct next_panel np = next_panel(t, w, rs, nr, k, r0, p0);
            pack_panel(t, w + (size_t)r0 * rs, rs, nrow, p0, kc, wp);
            panel_x_acts(wp, kc, (const float *)a + p0, as, nb, out + r0, os, nrow, p0 > 0, &np);
        }
    }
}

static inline __attribute__((always_inline)) void
gemm_type(uint32_t t, int64_t k, const uint8_t *w, size_t rs, int64_t nr, const float *a,
          size_t as, int64_t na, float *out, int64_t os)
{
    for (int64_t j0 = 0; j0 < na; j0 += GEMM_NC) {
        int64_t nb = na - j0 < GEMM_NC ? na - j0 : GEMM_NC;
        for (int64_t r0 = 0; r0 < nr; r0 += GEMM_MC)
            row_block(t, k, w + (size_t)r0 * rs, rs, nr - r0 < GEMM_MC ? nr - r0 : GEMM_MC,
                      (const uint8_t *)a + (size_t)j0 * as, as, nb, out + j0 * os + r0, os);
    }
}

void gemm__avx2_float(uint32_t wt, int64_t k, const void *w, size_t rs, int64_t nr,
                      const float *a, size_t as, int64_t na, float *out, int64_t os)
{
    if (wt == GGML_TYPE_F16)
        gemm_type(GGML_TYPE_F16, k, w, rs, nr, a, as, na, out, os);
    else if (wt == GGML_TYPE_BF16)
        gemm_type(GGML_TYPE_BF16, k, w, rs, nr, a, as, na, out, os);
    else
        gemm_type(GGML_TYPE_F32, k, w, rs, nr, a, as, na, out, os);
}
