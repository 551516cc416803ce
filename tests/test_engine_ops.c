/* test_engine_ops.c - engine threadpool and kernels: scalar vs AVX2, exact
 * small cases, and the pool's fork/join contract. */
#include "engine/ops.h"
#include "engine/quant.h"
#include "engine/threadpool.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <string.h>

TestSuite(engine_ops, .timeout = 60);

Test(engine_ops, rmsnorm_exact)
{
    float x[4] = {1, -1, 1, -1}, w[4] = {1, 2, 3, 4}, y[4];
    eng_rmsnorm(y, x, w, 4, 0.0f);
    float want[4] = {1, -2, 3, -4};
    for (int i = 0; i < 4; i++)
        cr_assert_float_eq(y[i], want[i], 1e-6);
}

Test(engine_ops, rope_rotates_adjacent_pairs)
{
    /* inv_freq[0] = pi/2 and [1] = 0: pos 1 turns (a, b) into (-b, a) */
    float inv[2] = {(float)(M_PI / 2), 0.0f}, cs[4];
    eng_rope_angles(cs, 1, inv, 4);
    float v[4] = {1, 2, 3, 4};
    eng_rope_pairs(v, 1, 4, cs);
    cr_assert_float_eq(v[0], -2, 1e-6);
    cr_assert_float_eq(v[1], 1, 1e-6);
    cr_assert_float_eq(v[2], 3, 1e-6);
    cr_assert_float_eq(v[3], 4, 1e-6);
}

Test(engine_ops, softmax_and_swiglu)
{
    float x[3] = {0, logf(2), logf(5)};
    eng_softmax(x, 3);
    cr_assert_float_eq(x[0], 0.125f, 1e-6);
    cr_assert_float_eq(x[2], 0.625f, 1e-6);
    float a[2] = {0, 2}, b[2] = {3, 0.5f};
    eng_swiglu(a, b, 2);
    cr_assert_float_eq(a[0], 0, 1e-7);
    cr_assert_float_eq(a[1], 2 / (1 + expf(-2)) * 0.5f, 1e-6);
}

Test(engine_ops, avx2_attention_kernels_match_scalar)
{
    if (!eng_ops_select(false))
        cr_skip_test("no AVX2 on this CPU");
    float q[77], out1[77], out2[77];
    uint16_t k[77];
    for (int i = 0; i < 77; i++) {
        q[i] = sinf((float)i);
        k[i] = quant_f32_to_f16(cosf((float)i * 0.3f));
        out1[i] = out2[i] = (float)i * 0.01f;
    }
    float a = eng_dot_f16_scalar(q, k, 77), b = eng_dot_f16_avx2(q, k, 77);
    cr_assert_float_eq(a, b, 1e-4);
    eng_axpy_f16_scalar(out1, 0.7f, k, 77);
    eng_axpy_f16_avx2(out2, 0.7f, k, 77);
    for (int i = 0; i < 77; i++)
        cr_assert_float_eq(out1[i], out2[i], 1e-6);
}

/* SwiGLU, AVX2 vs scalar, every tail length and inputs past exp's clamp;
 * elementwise: a row done in two pieces gives the same bits. */
Test(engine_ops, avx2_swiglu_matches_scalar_and_split)
{
    if (!eng_ops_select(false))
        cr_skip_test("no AVX2 on this CPU");
    enum { N = 77 };
    float a0[N], b[N], ref[N], v[N], w[N];
    for (int i = 0; i < N; i++) {
        a0[i] = (i % 11 == 3) ? (i % 2 ? 95.0f : -95.0f) : sinf((float)i * 0.9f) * 12;
        b[i] = cosf((float)i * 0.4f) * 3;
    }
    for (int n = 0; n <= N; n++) {
        memcpy(ref, a0, sizeof ref);
        memcpy(v, a0, sizeof v);
        eng_swiglu_scalar(ref, b, n);
        eng_swiglu_avx2(v, b, n);
        for (int i = 0; i < n; i++)
            cr_assert(fabsf(ref[i] - v[i]) <= 1e-6f + 1e-5f * fabsf(ref[i]),
                      "n=%d i=%d: scalar %g avx2 %g", n, i, ref[i], v[i]);
    }
    memcpy(w, a0, sizeof w);
    eng_swiglu(w, b, 13);
    eng_swiglu(w + 13, b + 13, N - 13);
    cr_assert(memcmp(w, v, sizeof w) == 0);
}

/* Whole-head attention, AVX2 vs scalar: flat and wrapped rings, head dims
 * that are and are not multiples of 64 (and one not of 8), score spreads
 * wide enough that some weights underflow. */
Test(engine_ops, avx2_attend_matches_scalar_flat_and_ring)
{
    if (!eng_ops_select(false))
        cr_skip_test("no AVX2 on this CPU");
    enum { ROWS = 300, DMAX = 256 };
    static const int dims[] = {16, 20, 64, 80, 128, 256};
    static const int lens[][2] = {{1, 0}, {5, 0}, {8, 0}, {37, 0}, {300, 0}, {37, 290}, {300, 123}};
    uint16_t *k = malloc(sizeof *k * ROWS * DMAX), *v = malloc(sizeof *v * ROWS * DMAX);
    float q[DMAX], a[DMAX], b[DMAX], sa[ROWS], sb[ROWS];
    uint32_t x = 12345;
    for (int i = 0; i < ROWS * DMAX; i++) {
        x = x * 1664525u + 1013904223u;
        k[i] = quant_f32_to_f16((float)(x >> 8) / (float)(1 << 24) * 8 - 4);
        v[i] = quant_f32_to_f16((float)(x & 0xffff) / 65536.0f - 0.5f);
    }
    for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++) {
        int D = dims[di];
        for (int i = 0; i < D; i++)
            q[i] = sinf((float)i * 0.7f) * 2;
        for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
            int n = lens[li][0], r0 = lens[li][1];
            eng_attend_scalar(a, q, k, v, DMAX, ROWS, r0, n, D, 0.5f, sa);
            eng_attend_avx2(b, q, k, v, DMAX, ROWS, r0, n, D, 0.5f, sb);
            for (int i = 0; i < D; i++)
                cr_assert(fabsf(a[i] - b[i]) <= 1e-5f + 1e-4f * fabsf(a[i]),
                          "D=%d n=%d r0=%d dim %d: scalar %g avx2 %g", D, n, r0, i, a[i], b[i]);
        }
    }
    free(k);
    free(v);
}

Test(engine_ops, attend_head_is_softmax_weighted_values)
{
    eng_ops_select(true);
    /* two keys; q.k = 0 and ln(3) -> weights 1/4, 3/4 */
    float q[2] = {1, 0}, out[2], scores[2];
    uint16_t k[4], v[4];
    float kf[4] = {0, 0, logf(3), 0}, vf[4] = {4, 8, 0, 4};
    for (int i = 0; i < 4; i++) {
        k[i] = quant_f32_to_f16(kf[i]);
        v[i] = quant_f32_to_f16(vf[i]);
    }
    eng_attend_head(out, q, k, v, 2, 2, 2, 1.0f, scores);
    cr_assert_float_eq(out[0], 1.0f, 1e-3);
    cr_assert_float_eq(out[1], 5.0f, 1e-3);
    eng_ops_select(false);
}

struct pool_probe {
    atomic_int calls[8];
    atomic_int total;
};

static void probe(void *arg, int ith, int nth)
{
    struct pool_probe *p = arg;
    cr_assert_eq(nth, 3);
    atomic_fetch_add(&p->calls[ith], 1);
    atomic_fetch_add(&p->total, ith + 1);
}

Test(engine_ops, pool_runs_every_thread_once_per_run)
{
    struct eng_pool *pool;
    struct km_err err;
    cr_assert_eq(eng_pool_new(3, &pool, &err), KM_OK);
    cr_assert_eq(eng_pool_size(pool), 3);
    struct pool_probe p;
    memset(&p, 0, sizeof p);
    for (int r = 0; r < 1000; r++)
        eng_pool_run(pool, probe, &p);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(atomic_load(&p.calls[i]), 1000);
    cr_assert_eq(atomic_load(&p.total), 6000);
    eng_pool_free(pool);
    cr_assert_eq(eng_pool_new(0, &pool, &err), KM_EINVAL);
    cr_assert(eng_physical_cores() >= 1);
}

/* eng_pool_run_chunks: every chunk exactly once per run, ith in range and
 * never used by two calls at the same time (per-thread scratch is safe). */
struct chunk_probe {
    atomic_int hits[1000];
    atomic_int busy[3];
    atomic_int bad;
};

static void chunk_probe_fn(void *arg, int chunk, int ith)
{
    struct chunk_probe *p = arg;
    if (ith < 0 || ith >= 3 || atomic_exchange(&p->busy[ith], 1) != 0) {
        atomic_fetch_add(&p->bad, 1);
        return;
    }
    atomic_fetch_add(&p->hits[chunk], 1);
    atomic_store(&p->busy[ith], 0);
}

Test(engine_ops, pool_runs_every_chunk_once_per_run)
{
    static const int counts[] = {0, 1, 2, 3, 7, 1000};
    for (int threads = 1; threads <= 3; threads += 2) {
        struct eng_pool *pool;
        struct km_err err;
        cr_assert_eq(eng_pool_new(threads, &pool, &err), KM_OK);
        for (size_t c = 0; c < sizeof counts / sizeof *counts; c++) {
            static struct chunk_probe p;
            memset(&p, 0, sizeof p);
            for (int r = 0; r < 50; r++)
                eng_pool_run_chunks(pool, chunk_probe_fn, &p, counts[c]);
            cr_assert_eq(atomic_load(&p.bad), 0);
            for (int i = 0; i < 1000; i++)
                cr_assert_eq(atomic_load(&p.hits[i]), i < counts[c] ? 50 : 0,
                             "%d threads, %d chunks: chunk %d", threads, counts[c], i);
        }
        eng_pool_free(pool);
    }
}
