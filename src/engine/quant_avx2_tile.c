/* quant_avx2_tile.c - batched int8 matmuls (prefill) on row-interleaved
 * tiles, AVX2. Built with -mavx2 -mfma -mf16c; installed by
 * quant__avx2_kernels for Q8_0, Q4_K, Q5_K and Q6_K weights with more than
 * one activation column (decode keeps the streaming dots of quant_avx2.c).
 *
 * Eight weight rows at a time are unpacked into an interleaved layout: one
 * 32-byte vector holds 4 consecutive levels of each of the 8 rows, so a
 * 4-byte activation broadcast times that vector (maddubs) leaves the 8 rows'
 * partial sums in their own lanes and no horizontal sums are needed. Each
 * unpacked vector is reused for NC activation columns kept in registers.
 * K-quant levels are small and unsigned (<= 15, 31, 63), so 8, 4 or 2
 * maddubs results (pair sums <= 2*15*127, 2*31*127, 2*63*127) are added in
 * int16 without saturating before the one madd with the scales; Q8_0 uses
 * |w| x sign(y, w) and one madd per maddubs.
 *
 * The integer sums equal the scalar reference's (quant_ref.c); only the
 * float summation order differs, as in quant_avx2.c. Each output depends
 * only on its own row and column, in block order: results do not depend on
 * how rows and columns are grouped or split between threads.
 *
 * Tiles and sums live on the stack (Q8_0 ~41 KiB: one k chunk of 8 rows and
 * the float sums of 64 rows x 68 columns; k-quants ~90 KiB: 64 rows x 260
 * columns of sums); nothing is allocated. K-quant weights are unpacked once
 * per 256 columns (mm_k), Q8_0 weights once per 64 (mm_q8_0).
 */
#include "engine/quant_int.h"
#include "engine/simd_avx2.h"

#include <immintrin.h>
#include <string.h>

#define NC 4                /* activation columns per micro-kernel call */
#define COL_CHUNK 64        /* columns whose float sums are kept per row group */
#define TILE_Q8_BLOCKS 64   /* Q8_0 blocks (32 values) per tile chunk */
#define TILE_K_BLOCKS 8     /* k-quant super-blocks (256 values) per tile chunk */
#define ROW_GROUPS 8        /* 8-row groups sharing one k chunk of the columns */
#define K_COLS 256          /* k-quants: columns sharing one unpacked tile */

/* 8 rows x 32 values of one Q8_0 block: q[v] = values 4v..4v+3 of rows 0..7. */
struct tile_q8 {
    int8_t q[8][32];
    float d[8];
};

/* 8 rows x one k-quant super-block. q[v]: levels 4v..4v+3 of rows 0..7;
 * sc[g]: scale of the 16 values g of row r in int16 lanes 2r and 2r+1;
 * bias[p]: lanes 2r, 2r+1 = offset weights of groups 2p, 2p+1 of row r
 * (Q4_K/Q5_K: the sub-block mins; Q6_K: 32 x scale); a row's result is
 * d*dy*sum(sc*q.y) - dmin*dy*sum(bias*bsums). */
struct tile_k {
    uint8_t q[64][32];
    int16_t sc[16][16];
    int16_t bias[8][16];
    float d[8], dmin[8];
};

/* Keeps v in a register as computed: stops GCC from reassociating a chain
 * of vector adds into a tree that needs every product at once (it then
 * spills them to the stack). Emits no instruction. */
static inline __attribute__((always_inline)) void keep(__m256i *v)
{
    __asm__("" : "+x"(*v));
}

static inline __m256i bcast32(const void *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

/* r[i] = 8 dwords of row i  ->  r[j] = dword j of rows 0..7. */
static inline void transpose8x32(__m256i r[8])
{
    __m256i t[8], u[8];
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 2; i++) {
        u[4 * i + 0] = _mm256_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
        u[4 * i + 1] = _mm256_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
        u[4 * i + 2] = _mm256_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
        u[4 * i + 3] = _mm256_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
    }
    for (int j = 0; j < 4; j++) {
        r[j] = _mm256_permute2x128_si256(u[j], u[4 + j], 0x20);
        r[j + 4] = _mm256_permute2x128_si256(u[j], u[4 + j], 0x31);
    }
}

/* ---- Q8_0 -------------------------------------------------------------- */

/* Blocks [b0, b0+n) of 8 rows (row pointers) into tiles. */
static void pack_q8(const uint8_t *const rows[8], int64_t b0, int64_t n, struct tile_q8 *t)
{
    for (int64_t i = 0; i < n; i++) {
        __m256i r[8];
        for (int j = 0; j < 8; j++) {
            const struct blk_q8_0 *b = (const struct blk_q8_0 *)rows[j] + b0 + i;
            r[j] = _mm256_loadu_si256((const __m256i *)b->qs);
            t[i].d[j] = f16(b->d);
        }
        transpose8x32(r);
        for (int v = 0; v < 8; v++)
            _mm256_storeu_si256((__m256i *)t[i].q[v], r[v]);
    }
}

/* acc[c][0..7] += tiles x activation columns y[c] (blocks b0.. of each). */
static void micro_q8(const struct tile_q8 *t, int64_t n, const uint8_t *const y[NC], int64_t b0,
                     float *const acc[NC])
{
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 fa[NC];
    #pragma GCC unroll 8
    for (int c = 0; c < NC; c++)
        fa[c] = _mm256_loadu_ps(acc[c]);
    for (int64_t i = 0; i < n; i++) {
        const struct blk_q8_0 *yb[NC];
        __m256i s[NC];
        #pragma GCC unroll 8
        for (int c = 0; c < NC; c++) {
            yb[c] = (const struct blk_q8_0 *)y[c] + b0 + i;
            s[c] = _mm256_setzero_si256();
        }
        #pragma GCC unroll 8
        for (int v = 0; v < 8; v++) {
            __m256i w = _mm256_loadu_si256((const __m256i *)t[i].q[v]);
            __m256i u = _mm256_sign_epi8(w, w);
            #pragma GCC unroll 8
            for (int c = 0; c < NC; c++) {
                __m256i p = _mm256_maddubs_epi16(u, _mm256_sign_epi8(bcast32(yb[c]->qs + 4 * v), w));
                s[c] = _mm256_add_epi32(s[c], _mm256_madd_epi16(p, ones));
                keep(&s[c]);
            }
        }
        __m256 dx = _mm256_loadu_ps(t[i].d);
        #pragma GCC unroll 8
        for (int c = 0; c < NC; c++)
            fa[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s[c]),
                                    _mm256_mul_ps(dx, _mm256_set1_ps(f16(yb[c]->d))), fa[c]);
    }
    #pragma GCC unroll 8
    for (int c = 0; c < NC; c++)
        _mm256_storeu_ps(acc[c], fa[c]);
}

/* ---- k-quants ---------------------------------------------------------- */

/* Levels of one super-block of one row: lv[c] = values 32c..32c+31. */
static void levels_q4k(const struct blk_q4_k *b, __m256i lv[8])
{
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    for (int c = 0; c < 4; c++) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(b->qs + 32 * c));
        lv[2 * c] = _mm256_and_si256(v, m4);
        lv[2 * c + 1] = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
    }
}

static void levels_q5k(const struct blk_q5_k *b, __m256i lv[8])
{
    const __m256i m4 = _mm256_set1_epi8(0x0f), b4 = _mm256_set1_epi8(0x10);
    __m256i qh = _mm256_loadu_si256((const __m256i *)b->qh);
    for (int c = 0; c < 4; c++) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(b->qs + 32 * c));
        /* bit 2c (low nibbles) and 2c+1 (high nibbles) of qh -> bit 4 */
        __m256i h0 = _mm256_srli_epi16(_mm256_slli_epi16(qh, 7 - 2 * c), 3);
        __m256i h1 = _mm256_srli_epi16(_mm256_slli_epi16(qh, 6 - 2 * c), 3);
        lv[2 * c] = _mm256_or_si256(_mm256_and_si256(v, m4), _mm256_and_si256(h0, b4));
        lv[2 * c + 1] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(v, 4), m4),
                                        _mm256_and_si256(h1, b4));
    }
}

static void levels_q6k(const struct blk_q6_k *b, __m256i lv[8])
{
    const __m256i m4 = _mm256_set1_epi8(0x0f), m30 = _mm256_set1_epi8(0x30);
    for (int h = 0; h < 2; h++) {
        __m256i l0 = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * h));
        __m256i l1 = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * h + 32));
        __m256i qh = _mm256_loadu_si256((const __m256i *)(b->qh + 32 * h));
        lv[4 * h + 0] = _mm256_or_si256(_mm256_and_si256(l0, m4),
                                        _mm256_and_si256(_mm256_slli_epi16(qh, 4), m30));
        lv[4 * h + 1] = _mm256_or_si256(_mm256_and_si256(l1, m4),
                                        _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30));
        lv[4 * h + 2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                                        _mm256_and_si256(qh, m30));
        lv[4 * h + 3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                        _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30));
    }
}

/* Levels, 16 group scales, 16 offset weights, d and dmin of super-block i
 * of one row. */
static void unpack_row_k(uint32_t t, const uint8_t *row, int64_t i, __m256i lv[8],
                         int16_t sc[16], int16_t bias[16], float *d, float *dmin)
{
    if (t == GGML_TYPE_Q6_K) {
        const struct blk_q6_k *b = (const struct blk_q6_k *)row + i;
        levels_q6k(b, lv);
        for (int g = 0; g < 16; g++) {
            sc[g] = b->scales[g];
            bias[g] = (int16_t)(32 * b->scales[g]);
        }
        *d = *dmin = f16(b->d);
        return;
    }
    const uint8_t *s12;
    if (t == GGML_TYPE_Q4_K) {
        const struct blk_q4_k *b = (const struct blk_q4_k *)row + i;
        levels_q4k(b, lv);
        s12 = b->scales, *d = f16(b->d), *dmin = f16(b->dmin);
    } else {
        const struct blk_q5_k *b = (const struct blk_q5_k *)row + i;
        levels_q5k(b, lv);
        s12 = b->scales, *d = f16(b->d), *dmin = f16(b->dmin);
    }
    for (int j = 0; j < 8; j++) {
        uint8_t s, m;
        q_scale_min_k4(j, s12, &s, &m);
        sc[2 * j] = sc[2 * j + 1] = s;
        bias[2 * j] = bias[2 * j + 1] = m;
    }
}

/* Super-blocks [b0, b0+n) of 8 rows into tiles. */
static void pack_k(uint32_t type, const uint8_t *const rows[8], int64_t b0, int64_t n,
                   struct tile_k *t)
{
    for (int64_t i = 0; i < n; i++) {
        __m256i lv[8][8];
        int16_t sc[8][16], bias[8][16];
        for (int r = 0; r < 8; r++)
            unpack_row_k(type, rows[r], b0 + i, lv[r], sc[r], bias[r], &t[i].d[r], &t[i].dmin[r]);
        for (int c = 0; c < 8; c++) {
            __m256i x[8];
            for (int r = 0; r < 8; r++)
                x[r] = lv[r][c];
            transpose8x32(x);
            for (int v = 0; v < 8; v++)
                _mm256_storeu_si256((__m256i *)t[i].q[8 * c + v], x[v]);
        }
        for (int r = 0; r < 8; r++) {
            for (int g = 0; g < 16; g++)
                t[i].sc[g][2 * r] = t[i].sc[g][2 * r + 1] = sc[r][g];
            for (int p = 0; p < 8; p++) {
                t[i].bias[p][2 * r] = bias[r][2 * p];
                t[i].bias[p][2 * r + 1] = bias[r][2 * p + 1];
            }
        }
    }
}

/* acc[c][0..7] += tiles x Q8_K columns y[c] (super-blocks b0..). qps:
 * maddubs results summed in int16 per madd (8: Q4_K, 4: Q5_K, 2: Q6_K);
 * sub: subtract the offset in integers (Q6_K, where dmin == d). */
static inline __attribute__((always_inline)) void
micro_k(const struct tile_k *t, int64_t n, const uint8_t *const y[NC], int64_t b0,
        float *const acc[NC], int qps, bool sub)
{
    __m256 fa[NC];
    #pragma GCC unroll 8
    for (int c = 0; c < NC; c++)
        fa[c] = _mm256_loadu_ps(acc[c]);
    for (int64_t i = 0; i < n; i++) {
        const struct blk_q8_k *yb[NC];
        __m256i s[NC];
        #pragma GCC unroll 8
        for (int c = 0; c < NC; c++) {
            yb[c] = (const struct blk_q8_k *)y[c] + b0 + i;
            s[c] = _mm256_setzero_si256();
        }
        #pragma GCC unroll 1
        for (int v0 = 0; v0 < 64; v0 += qps) {
            __m256i h[NC];
            #pragma GCC unroll 8
            for (int c = 0; c < NC; c++)
                h[c] = _mm256_setzero_si256();
            #pragma GCC unroll 8
            for (int v = v0; v < v0 + qps; v++) {
                __m256i w = _mm256_loadu_si256((const __m256i *)t[i].q[v]);
                #pragma GCC unroll 8
                for (int c = 0; c < NC; c++) {
                    h[c] = _mm256_add_epi16(h[c], _mm256_maddubs_epi16(w, bcast32(yb[c]->qs + 4 * v)));
                    keep(&h[c]);
                }
            }
            __m256i sc = _mm256_loadu_si256((const __m256i *)t[i].sc[v0 / 4]);
            #pragma GCC unroll 8
            for (int c = 0; c < NC; c++)
                s[c] = _mm256_add_epi32(s[c], _mm256_madd_epi16(h[c], sc));
        }
        __m256 d = _mm256_loadu_ps(t[i].d), dm = _mm256_loadu_ps(t[i].dmin);
        #pragma GCC unroll 8
        for (int c = 0; c < NC; c++) {
            __m256i corr = _mm256_setzero_si256();
            #pragma GCC unroll 8
            for (int p = 0; p < 8; p++)
                corr = _mm256_add_epi32(corr, _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)t[i].bias[p]),
                                                                 bcast32(yb[c]->bsums + 2 * p)));
            __m256 dy = _mm256_set1_ps(yb[c]->d);
            if (sub) {
                fa[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(s[c], corr)),
                                        _mm256_mul_ps(d, dy), fa[c]);
            } else {
                fa[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s[c]), _mm256_mul_ps(d, dy), fa[c]);
                fa[c] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(corr), _mm256_mul_ps(dm, dy), fa[c]);
            }
        }
    }
    #pragma GCC unroll 8
    for (int c = 0; c < NC; c++)
        _mm256_storeu_ps(acc[c], fa[c]);
}

static void micro_q4k(const struct tile_k *t, int64_t n, const uint8_t *const y[NC], int64_t b0,
                      float *const acc[NC])
{
    micro_k(t, n, y, b0, acc, 8, false);
}

static void micro_q5k(const struct tile_k *t, int64_t n, const uint8_t *const y[NC], int64_t b0,
                      float *const acc[NC])
{
    micro_k(t, n, y, b0, acc, 4, false);
}

static void micro_q6k(const struct tile_k *t, int64_t n, const uint8_t *const y[NC], int64_t b0,
                      float *const acc[NC])
{
    micro_k(t, n, y, b0, acc, 2, true);
}

/* ---- driver ------------------------------------------------------------ */

struct job {
    uint32_t t;
    int64_t nb;             /* blocks per row */
    const uint8_t *w;       /* weight rows of rs bytes, nr of them */
    size_t rs;
    int64_t nr;
    const uint8_t *a;       /* activation rows of as bytes */
    size_t as;
};

/* The 8 weight rows from r0; rows past the last repeat it. */
static inline void group_rows(const struct job *jb, int64_t r0, const uint8_t *rows[8])
{
    for (int r = 0; r < 8; r++)
        rows[r] = jb->w + (size_t)(r0 + r < jb->nr ? r0 + r : jb->nr - 1) * jb->rs;
}

/* Activations and sums of columns c0 + j .. + NC - 1; columns past ncol
 * re-read the last one into the spare sums acc[spare + c]. */
static inline void group_cols(const struct job *jb, int64_t c0, int j, int ncol,
                              float (*acc)[8], int spare, const uint8_t *y[NC],
                              float *ac[NC])
{
    #pragma GCC unroll 8
    for (int c = 0; c < NC; c++) {
        int col = j + c < ncol ? j + c : ncol - 1;
        y[c] = jb->a + (size_t)(c0 + col) * jb->as;
        ac[c] = acc[j + c < ncol ? j + c : spare + c];
    }
}

/* acc[j] += Q8_0 blocks [b0, b0+n) of the 8 rows from r0 (missing rows
 * repeat the last one; their sums are not used) x columns c0 + j, j < ncol. */
static void group_q8(const struct job *jb, int64_t r0, int64_t b0, int64_t n, int64_t c0,
                     int ncol, float (*acc)[8], struct tile_q8 *t)
{
    const uint8_t *rows[8];
    group_rows(jb, r0, rows);
    pack_q8(rows, b0, n, t);
    for (int j = 0; j < ncol; j += NC) {
        const uint8_t *y[NC];
        float *ac[NC];
        group_cols(jb, c0, j, ncol, acc, COL_CHUNK, y, ac);
        micro_q8(t, n, y, b0, ac);
    }
}

/* Q8_0: columns in chunks of COL_CHUNK, rows in blocks of ROW_GROUPS 8-row
 * groups, k in chunks: a k chunk of the columns (~150 KiB) stays in L2 while
 * every group of the row block uses it; one group's tile (< 24 KiB) stays in
 * L1 while every column uses it. */
static void mm_q8_0(int64_t k, const void *w, size_t rs, int64_t nr, const void *a,
                    size_t as, int64_t na, float *out, int64_t os)
{
    _Alignas(32) struct tile_q8 tile[TILE_Q8_BLOCKS];
    float acc[ROW_GROUPS][COL_CHUNK + NC][8];
    struct job jb = {GGML_TYPE_Q8_0, k / 32, w, rs, nr, a, as};
    for (int64_t c0 = 0; c0 < na; c0 += COL_CHUNK) {
        int ncol = na - c0 < COL_CHUNK ? (int)(na - c0) : COL_CHUNK;
        for (int64_t rb = 0; rb < nr; rb += 8 * ROW_GROUPS) {
            int64_t nrb = nr - rb < 8 * ROW_GROUPS ? nr - rb : 8 * ROW_GROUPS;
            memset(acc, 0, sizeof acc);
            for (int64_t b0 = 0; b0 < jb.nb; b0 += TILE_Q8_BLOCKS) {
                int64_t n = jb.nb - b0 < TILE_Q8_BLOCKS ? jb.nb - b0 : TILE_Q8_BLOCKS;
                for (int64_t g = 0; 8 * g < nrb; g++)
                    group_q8(&jb, rb + 8 * g, b0, n, c0, ncol, acc[g], tile);
            }
            for (int j = 0; j < ncol; j++)
                for (int64_t r = 0; r < nrb; r++)
                    out[(c0 + j) * os + rb + r] = acc[r / 8][j][r % 8];
        }
    }
}

/* acc[j] += super-blocks [b0, b0+n) of the 8 k-quant rows from r0 (missing
 * rows repeat the last one; their sums are not used) x columns c0 + j,
 * j < ncol: the rows are unpacked into t once for all ncol columns. */
static void group_k(const struct job *jb, int64_t r0, int64_t b0, int64_t n, int64_t c0,
                    int ncol, float (*acc)[8], struct tile_k *t)
{
    const uint8_t *rows[8];
    group_rows(jb, r0, rows);
    pack_k(jb->t, rows, b0, n, t);
    for (int j = 0; j < ncol; j += NC) {
        const uint8_t *y[NC];
        float *ac[NC];
        group_cols(jb, c0, j, ncol, acc, K_COLS, y, ac);
        if (jb->t == GGML_TYPE_Q4_K)
            micro_q4k(t, n, y, b0, ac);
        else if (jb->t == GGML_TYPE_Q5_K)
            micro_q5k(t, n, y, b0, ac);
        else
            micro_q6k(t, n, y, b0, ac);
    }
}

/* k-quants: columns in chunks of K_COLS, rows in blocks of ROW_GROUPS
 * 8-row groups, k in chunks of TILE_K_BLOCKS super-blocks. A group's tile
 * (< 24 KiB) is unpacked once per column chunk (twice for 512 columns) and
 * stays in L1 while every column of the chunk uses it; the chunk's
 * activations for those super-blocks are re-read by each group of the row
 * block. Callers pass all their columns at once: every extra chunk unpacks
 * the weights again. */
static void mm_k(uint32_t t, int64_t k, const void *w, size_t rs, int64_t nr,
                 const void *a, size_t as, int64_t na, float *out, int64_t os)
{
    _Alignas(32) struct tile_k tile[TILE_K_BLOCKS];
    float acc[ROW_GROUPS][K_COLS + NC][8];
    struct job jb = {t, k / QK_K, w, rs, nr, a, as};
    for (int64_t c0 = 0; c0 < na; c0 += K_COLS) {
        int ncol = na - c0 < K_COLS ? (int)(na - c0) : K_COLS;
        for (int64_t rb = 0; rb < nr; rb += 8 * ROW_GROUPS) {
            int64_t nrb = nr - rb < 8 * ROW_GROUPS ? nr - rb : 8 * ROW_GROUPS;
            int64_t ng = (nrb + 7) / 8;
            for (int64_t g = 0; g < ng; g++)
                memset(acc[g], 0, sizeof acc[g]);
            for (int64_t b0 = 0; b0 < jb.nb; b0 += TILE_K_BLOCKS) {
                int64_t n = jb.nb - b0 < TILE_K_BLOCKS ? jb.nb - b0 : TILE_K_BLOCKS;
                for (int64_t g = 0; g < ng; g++)
                    group_k(&jb, rb + 8 * g, b0, n, c0, ncol, acc[g], tile);
            }
            for (int j = 0; j < ncol; j++) {
                float *o = out + (c0 + j) * os + rb;
                for (int64_t g = 0; g < ng; g++) {
                    if (nrb - 8 * g >= 8)
                        _mm256_storeu_ps(o + 8 * g, _mm256_loadu_ps(acc[g][j]));
                    else
                        memcpy(o + 8 * g, acc[g][j], (size_t)(nrb - 8 * g) * sizeof(float));
                }
            }
        }
    }
}

static void mm_q4_k(int64_t k, const void *w, size_t rs, int64_t nr, const void *a,
                    size_t as, int64_t na, float *out, int64_t os)
{
    mm_k(GGML_TYPE_Q4_K, k, w, rs, nr, a, as, na, out, os);
}

static void mm_q5_k(int64_t k, const void *w, size_t rs, int64_t nr, const void *a,
                    size_t as, int64_t na, float *out, int64_t os)
{
    mm_k(GGML_TYPE_Q5_K, k, w, rs, nr, a, as, na, out, os);
}

static void mm_q6_k(int64_t k, const void *w, size_t rs, int64_t nr, const void *a,
                    size_t as, int64_t na, float *out, int64_t os)
{
    mm_k(GGML_TYPE_Q6_K, k, w, rs, nr, a, as, na, out, os);
}

void quant__avx2_tile_kernels(struct quant_kernels *k)
{
    k->mm[GGML_TYPE_Q8_0] = mm_q8_0;
    k->mm[GGML_TYPE_Q4_K] = mm_q4_k;
    k->mm[GGML_TYPE_Q5_K] = mm_q5_k;
    k->mm[GGML_TYPE_Q6_K] = mm_q6_k;
}
