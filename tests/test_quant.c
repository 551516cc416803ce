/* test_quant.c - engine/quant: f16/bf16 conversions, every quantizer's
 * round-trip error bound, the integer dot products against the dequantized
 * float math, and every AVX2 kernel against the scalar reference.
 *
 * Tolerances: SIMD and scalar kernels do the same integer arithmetic and
 * differ only in float summation order, so results must agree within
 * 1e-5 x (sum of |w_i * a_i| over the row) + 1e-6. */
#include "engine/cpu.h"
#include "engine/quant.h"

#include "base/mem.h"

#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

TestSuite(quant, .timeout = 120);

static uint64_t rng_state = 0x1234567887654321ull;

static float urand(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((rng_state >> 11) * 0x1.0p-53) * 2.0f - 1.0f;
}

static void fill_random(float *x, int64_t n, float scale)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = scale * urand() + (i % 97 == 0 ? 3 * scale * urand() : 0);
}

static const uint32_t weight_types[] = {
    GGML_TYPE_F32, GGML_TYPE_F16, GGML_TYPE_BF16, GGML_TYPE_Q4_0, GGML_TYPE_Q4_1,
    GGML_TYPE_Q5_0, GGML_TYPE_Q5_1, GGML_TYPE_Q8_0, GGML_TYPE_Q4_K, GGML_TYPE_Q5_K,
    GGML_TYPE_Q6_K,
};
#define N_TYPES (sizeof weight_types / sizeof weight_types[0])

Test(quant, type_table)
{
    cr_assert_eq(quant_row_size(GGML_TYPE_Q4_K, 4096), 4096 / 256 * 144);
    cr_assert_eq(quant_row_size(GGML_TYPE_Q6_K, 256), 210);
    cr_assert_eq(quant_row_size(GGML_TYPE_Q5_0, 64), 44);
    cr_assert_eq(quant_row_size(GGML_TYPE_Q8_K, 256), 292);
    cr_assert_eq(quant_block_size(GGML_TYPE_IQ4_XS), 256);
    cr_assert_eq(quant_type_size(GGML_TYPE_IQ4_XS), 136);
    cr_assert_eq(quant_type_size(4), 0);
    cr_assert_eq(quant_type_size(1000), 0);
    cr_assert_str_eq(quant_type_name(GGML_TYPE_BF16), "BF16");
    cr_assert_eq(quant_type_from_name("q6_k"), GGML_TYPE_Q6_K);
    cr_assert_eq(quant_type_from_name("Q4_K_M"), -1);
    cr_assert_eq(quant_vec_dot_type(GGML_TYPE_Q5_1), GGML_TYPE_Q8_1);
    cr_assert_eq(quant_vec_dot_type(GGML_TYPE_Q5_K), GGML_TYPE_Q8_K);
    cr_assert_eq(quant_vec_dot_type(GGML_TYPE_F16), GGML_TYPE_F32);
    cr_assert(quant_supported(GGML_TYPE_Q6_K));
    cr_assert(!quant_supported(GGML_TYPE_Q2_K));
}

Test(quant, f16_bf16_conversions)
{
    cr_assert_eq(quant_f32_to_f16(1.0f), 0x3c00);
    cr_assert_eq(quant_f32_to_f16(-2.0f), 0xc000);
    cr_assert_eq(quant_f32_to_f16(65504.0f), 0x7bff);
    cr_assert_eq(quant_f32_to_f16(65520.0f), 0x7c00);
    cr_assert_eq(quant_f32_to_f16(0x1p-24f), 0x0001);
    cr_assert_eq(quant_f32_to_f16(0x1p-25f), 0x0000);      /* tie -> even */
    cr_assert_eq(quant_f32_to_f16(0x1.8p-25f), 0x0001);
    cr_assert_eq(quant_f32_to_f16(1.0f + 0x1p-11f), 0x3c00); /* tie -> even */
    cr_assert_eq(quant_f32_to_f16(1.0f + 0x3p-11f), 0x3c02);
    cr_assert_eq(quant_f32_to_f16(INFINITY), 0x7c00);
    cr_assert((quant_f32_to_f16(NAN) & 0x7c00) == 0x7c00 && (quant_f32_to_f16(NAN) & 0x3ff));
    cr_assert_eq(quant_f16_to_f32(0x0001), 0x1p-24f);
    cr_assert_eq(quant_f16_to_f32(0xfbff), -65504.0f);
    /* Every finite half survives f16 -> f32 -> f16 exactly. */
    for (uint32_t h = 0; h < 65536; h++) {
        if ((h & 0x7c00) == 0x7c00)
            continue;
        cr_assert_eq(quant_f32_to_f16(quant_f16_to_f32((uint16_t)h)), h, "half 0x%04x", h);
    }
    cr_assert_eq(quant_f32_to_bf16(1.0f), 0x3f80);
    cr_assert_eq(quant_f32_to_bf16(1.00390625f), 0x3f80);  /* tie -> even */
    cr_assert_eq(quant_f32_to_bf16(1.01171875f), 0x3f82);  /* tie -> even (up) */
    cr_assert_eq(quant_bf16_to_f32(0xc040), -3.0f);
}

/* Max abs round-trip error allowed for a block whose largest |x| is amax:
 * the quantization half-step (or full step where levels clamp) plus the f16
 * rounding of the block scale; k-quants add the 6/8-bit rounding of
 * sub-block scales and mins (bounds measured at < 2/3 of these values). */
static float err_bound(uint32_t t, float amax, float x)
{
    switch (t) {
    case GGML_TYPE_F32: return 0.0f;
    case GGML_TYPE_F16: return fabsf(x) * 0x1p-11f + 0x1p-25f;
    case GGML_TYPE_BF16: return fabsf(x) * 0x1p-8f;
    case GGML_TYPE_Q8_0: return amax * (1.0f / 254 + 1.0f / 2048);
    case GGML_TYPE_Q4_0: return amax / 8 * 1.01f;
    case GGML_TYPE_Q5_0: return amax / 16 * 1.01f;
    case GGML_TYPE_Q4_1: return amax * (1.0f / 15 + 0.003f);
    case GGML_TYPE_Q5_1: return amax * (1.0f / 31 + 0.003f);
    case GGML_TYPE_Q4_K: return amax * 0.15f;
    case GGML_TYPE_Q5_K: return amax * 0.075f;
    case GGML_TYPE_Q6_K: return amax * 0.04f;
    default: return 0.0f;
    }
}

/* RMS error allowed relative to the RMS of uniform [-1,1] data. */
static float rms_bound(uint32_t t)
{
    switch (t) {
    case GGML_TYPE_F32: return 0.0f;
    case GGML_TYPE_F16: return 3e-4f;
    case GGML_TYPE_BF16: return 3e-3f;
    case GGML_TYPE_Q8_0: return 0.005f;
    case GGML_TYPE_Q4_0: case GGML_TYPE_Q4_1: return 0.08f;
    case GGML_TYPE_Q5_0: case GGML_TYPE_Q5_1: return 0.04f;
    case GGML_TYPE_Q4_K: return 0.08f;
    case GGML_TYPE_Q5_K: return 0.04f;
    case GGML_TYPE_Q6_K: return 0.02f;
    default: return 0.0f;
    }
}

Test(quant, quantizer_round_trip_error_bounds)
{
    enum { N = 4096 };
    float *x = km_malloc(N * sizeof *x), *y = km_malloc(N * sizeof *y);
    uint8_t *q = km_malloc(quant_row_size(GGML_TYPE_F32, N));
    for (size_t ti = 0; ti < N_TYPES; ti++) {
        uint32_t t = weight_types[ti];
        uint32_t bs = quant_block_size(t) > 1 ? quant_block_size(t) : 32;
        double se = 0, sx = 0;
        float worst = 0;
        for (int rep = 0; rep < 4; rep++) {
            for (int i = 0; i < N; i++)
                x[i] = urand() * (rep == 3 ? 1e-3f : 1.0f) + (rep == 2 && i % 64 == 0 ? 4.0f : 0);
            quant_quantize_row(t, x, q, N);
            quant_dequantize_row(t, q, y, N);
            for (int b = 0; b < N; b += (int)bs) {
                float amax = 0;
                for (uint32_t i = 0; i < bs; i++)
                    amax = fmaxf(amax, fabsf(x[b + i]));
                for (uint32_t i = 0; i < bs; i++) {
                    float e = fabsf(x[b + i] - y[b + i]);
                    /* plus |level| x half an f16 subnormal step of the scale */
                    float abs_f16 = (quant_block_size(t) == 256 ? 1024 : 128) * 0x1p-25f;
                    if (quant_block_size(t) == 1)
                        abs_f16 = 0x1p-25f;
                    cr_assert_leq(e, err_bound(t, amax, x[b + i]) + abs_f16,
                                  "%s rep %d elem %d: x %g y %g err %g bound %g", quant_type_name(t),
                                  rep, b + (int)i, x[b + i], y[b + i], e,
                                  err_bound(t, amax, x[b + i]));
                    if (amax > 0)
                        worst = fmaxf(worst, e / amax);
                    if (rep == 0) {
                        se += (double)e * e;
                        sx += (double)x[b + i] * x[b + i];
                    }
                }
            }
        }
        double rel = sqrt(se / sx);
        cr_log_info("%s: rms rel err %.5f, worst err/amax %.4f", quant_type_name(t), rel, worst);
        cr_assert_leq(rel, rms_bound(t), "%s rms rel err %g", quant_type_name(t), rel);
    }
    /* All-zero rows stay zero. */
    memset(x, 0, N * sizeof *x);
    for (size_t ti = 0; ti < N_TYPES; ti++) {
        quant_quantize_row(weight_types[ti], x, q, N);
        quant_dequantize_row(weight_types[ti], q, y, N);
        for (int i = 0; i < N; i++)
            cr_assert_eq(y[i], 0.0f, "%s", quant_type_name(weight_types[ti]));
    }
    km_free(x);
    km_free(y);
    km_free(q);
}

/* The integer dot product equals the float dot of the dequantized weights
 * with the dequantized activations (scalar reference, both sides). */
Test(quant, integer_dot_matches_dequantized_math)
{
    enum { N = 1024 };
    cr_assert(quant_kernels_force(QUANT_ISA_SCALAR));
    float x[N], a[N], wd[N], ad[N];
    uint8_t wq[N * 4], aq[N * 4 + 64];
    for (size_t ti = 0; ti < N_TYPES; ti++) {
        uint32_t t = weight_types[ti];
        fill_random(x, N, 0.5f);
        fill_random(a, N, 2.0f);
        quant_quantize_row(t, x, wq, N);
        quant_quantize_act(t, a, aq, N);
        quant_dequantize_row(t, wq, wd, N);
        uint32_t at = quant_vec_dot_type(t);
        if (at == GGML_TYPE_Q8_1) {
            /* Q8_1 rows dequantize like Q8_0 from d and qs (s is the sum). */
            for (int b = 0; b < N / 32; b++) {
                uint16_t d;
                memcpy(&d, aq + 36 * b, 2);
                for (int i = 0; i < 32; i++)
                    ad[32 * b + i] = quant_f16_to_f32(d) * (float)(int8_t)aq[36 * b + 4 + i];
            }
        } else {
            quant_dequantize_row(at, aq, ad, N);
        }
        double want = 0, mag = 0;
        for (int i = 0; i < N; i++) {
            want += (double)wd[i] * ad[i];
            mag += fabs((double)wd[i] * ad[i]);
        }
        float got = quant_vec_dot(t, N, wq, aq);
        /* Q8_1's s is an f16 of d*sum(q): allow its rounding. */
        double tol = 1e-5 * mag + (at == GGML_TYPE_Q8_1 ? 2e-3 * mag : 1e-6);
        cr_assert_leq(fabs(got - want), tol, "%s: got %.7g want %.7g", quant_type_name(t), got, want);
        /* and the activation quantization itself is close to the input */
        for (int i = 0; i < N; i++)
            cr_assert_leq(fabsf(ad[i] - a[i]), 8.0f / 127 * 0.51f + 1e-3f, "%s act %d", quant_type_name(t), i);
    }
    quant_kernels_init();
}

/* Every AVX2 kernel (dot, matmul, activation quantizer) against the scalar
 * reference on random data, for several row lengths. */
Test(quant, avx2_kernels_match_scalar)
{
    if (!cpu_has_avx2_fma_f16c()) {
        cr_skip_test("CPU without AVX2/FMA/F16C");
        return;
    }
    enum { K = 1536, ROWS = 5, COLS = 11 };
    float *w = km_malloc(ROWS * K * sizeof *w), *a = km_malloc(COLS * K * sizeof *a);
    uint8_t *wq = km_malloc(ROWS * K * 4), *aq_s = km_malloc(COLS * K * 4 + 4096),
            *aq_v = km_malloc(COLS * K * 4 + 4096);
    float ref[COLS * ROWS], got[COLS * ROWS];
    const int64_t lens[] = {256, 512, K};
    for (size_t ti = 0; ti < N_TYPES; ti++) {
        uint32_t t = weight_types[ti];
        for (size_t li = 0; li < 3; li++) {
            int64_t k = lens[li];
            size_t rs = quant_row_size(t, k), as = quant_act_row_size(t, k);
            fill_random(w, ROWS * k, 0.3f);
            fill_random(a, COLS * k, 3.0f);
            for (int r = 0; r < ROWS; r++)
                quant_quantize_row(t, w + r * k, wq + r * rs, k);
            cr_assert(quant_kernels_force(QUANT_ISA_SCALAR));
            for (int j = 0; j < COLS; j++)
                quant_quantize_act(t, a + j * k, aq_s + j * as, k);
            for (int j = 0; j < COLS; j++)
                for (int r = 0; r < ROWS; r++)
                    ref[j * ROWS + r] = quant_vec_dot(t, k, wq + r * rs, aq_s + j * as);
            cr_assert(quant_kernels_force(QUANT_ISA_AVX2));
            for (int j = 0; j < COLS; j++)
                quant_quantize_act(t, a + j * k, aq_v + j * as, k);
            cr_assert(memcmp(aq_s, aq_v, COLS * as) == 0, "%s: activation quantization differs",
                      quant_type_name(t));
            quant_matmul(t, wq, ROWS, k, aq_s, COLS, got, ROWS);
            for (int j = 0; j < COLS; j++) {
                for (int r = 0; r < ROWS; r++) {
                    float d = quant_vec_dot(t, k, wq + r * rs, aq_s + j * as);
                    float m = got[j * ROWS + r], want = ref[j * ROWS + r];
                    double mag = 0;
                    for (int64_t i = 0; i < k; i++)
                        mag += fabs((double)w[r * k + i] * a[j * k + i]);
                    double tol = 1e-5 * mag + 1e-6;
                    cr_assert_leq(fabs(d - want), tol, "%s k=%lld dot r%d c%d: avx2 %.8g scalar %.8g",
                                  quant_type_name(t), (long long)k, r, j, d, want);
                    cr_assert_leq(fabs(m - want), tol, "%s k=%lld matmul r%d c%d: avx2 %.8g scalar %.8g",
                                  quant_type_name(t), (long long)k, r, j, m, want);
                }
            }
        }
    }
    /* the scalar matmul (dot per pair) writes the same layout */
    cr_assert(quant_kernels_force(QUANT_ISA_SCALAR));
    quant_matmul(GGML_TYPE_Q8_0, wq, 1, 256, aq_s, 1, got, 1);
    cr_assert_eq(got[0], quant_vec_dot(GGML_TYPE_Q8_0, 256, wq, aq_s));
    quant_kernels_force(QUANT_ISA_AVX2);
    km_free(w);
    km_free(a);
    km_free(wq);
    km_free(aq_s);
    km_free(aq_v);
}

/* The batched int8 kernels work on groups of 8 rows, NC columns, 64-column
 * chunks and chunks of k: 19 rows (a partial group), 70 columns (a partial
 * chunk and group) and k = 2560 (a partial k chunk) against the scalar dots. */
Test(quant, avx2_tile_matmul_matches_scalar)
{
    if (!cpu_has_avx2_fma_f16c()) {
        cr_skip_test("CPU without AVX2/FMA/F16C");
        return;
    }
    enum { K = 2560, ROWS = 19, COLS = 70 };
    static const uint32_t types[] = {GGML_TYPE_Q8_0, GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K};
    float *w = km_malloc(ROWS * K * sizeof *w), *a = km_malloc(COLS * K * sizeof *a);
    float *got = km_malloc(COLS * ROWS * sizeof *got), *mag = km_malloc(COLS * ROWS * sizeof *mag);
    uint8_t *wq = km_malloc(ROWS * K * 2), *aq = km_malloc(COLS * K * 2);
    fill_random(w, ROWS * K, 0.3f);
    fill_random(a, COLS * K, 3.0f);
    for (int j = 0; j < COLS; j++)
        for (int r = 0; r < ROWS; r++) {
            double m = 0;
            for (int64_t i = 0; i < K; i++)
                m += fabs((double)w[r * K + i] * a[j * K + i]);
            mag[j * ROWS + r] = (float)m;
        }
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        uint32_t t = types[ti];
        size_t rs = quant_row_size(t, K), as = quant_act_row_size(t, K);
        for (int r = 0; r < ROWS; r++)
            quant_quantize_row(t, w + r * K, wq + r * rs, K);
        for (int j = 0; j < COLS; j++)
            quant_quantize_act(t, a + j * K, aq + j * as, K);
        cr_assert(quant_kernels_force(QUANT_ISA_AVX2));
        /* output stride > ROWS: the kernel must not write past its rows */
        memset(got, 0, COLS * ROWS * sizeof *got);
        quant_matmul(t, wq, ROWS - 1, K, aq, COLS, got, ROWS);
        quant_matmul(t, wq + (ROWS - 1) * rs, 1, K, aq, COLS, got + ROWS - 1, ROWS);
        cr_assert(quant_kernels_force(QUANT_ISA_SCALAR));
        for (int j = 0; j < COLS; j++) {
            for (int r = 0; r < ROWS; r++) {
                float want = quant_vec_dot(t, K, wq + r * rs, aq + j * as);
                double tol = 1e-5 * mag[j * ROWS + r] + 1e-6;
                cr_assert_leq(fabs(got[j * ROWS + r] - want), tol, "%s r%d c%d: avx2 %.8g scalar %.8g",
                              quant_type_name(t), r, j, got[j * ROWS + r], want);
            }
        }
    }
    quant_kernels_force(QUANT_ISA_AVX2);
    km_free(w);
    km_free(a);
    km_free(got);
    km_free(mag);
    km_free(wq);
    km_free(aq);
}

/* K-quant prefill kernel across its blocking: two 64-row blocks (the
 * second partial, with a partial 8-row group), two 256-column chunks (the
 * second partial, with a partial column quad), a partial k chunk. Every
 * output matches the scalar dot, and equals bit for bit the same output
 * computed in a call that splits rows and columns differently. */
Test(quant, avx2_kquant_matmul_blocking)
{
    if (!cpu_has_avx2_fma_f16c()) {
        cr_skip_test("CPU without AVX2/FMA/F16C");
        return;
    }
    enum { K = 2560, ROWS = 75, COLS = 262 };
    static const uint32_t types[] = {GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K};
    float *w = km_malloc(ROWS * K * sizeof *w), *a = km_malloc(COLS * K * sizeof *a);
    float *got = km_malloc(COLS * ROWS * sizeof *got), *part = km_malloc(COLS * ROWS * sizeof *part);
    uint8_t *wq = km_malloc(ROWS * K), *aq = km_malloc(COLS * K * 2);
    fill_random(w, ROWS * K, 0.3f);
    fill_random(a, COLS * K, 3.0f);
    cr_assert(quant_kernels_force(QUANT_ISA_AVX2));
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        uint32_t t = types[ti];
        size_t rs = quant_row_size(t, K), as = quant_act_row_size(t, K);
        for (int r = 0; r < ROWS; r++)
            quant_quantize_row(t, w + r * K, wq + r * rs, K);
        for (int j = 0; j < COLS; j++)
            quant_quantize_act(t, a + j * K, aq + j * as, K);
        quant_matmul(t, wq, ROWS, K, aq, COLS, got, ROWS);
        /* rows 0..8 and 9.., columns 0..100 and 101.. in separate calls */
        quant_matmul(t, wq, 9, K, aq, 101, part, ROWS);
        quant_matmul(t, wq + 9 * rs, ROWS - 9, K, aq, 101, part + 9, ROWS);
        quant_matmul(t, wq, 9, K, aq + 101 * as, COLS - 101, part + 101 * ROWS, ROWS);
        quant_matmul(t, wq + 9 * rs, ROWS - 9, K, aq + 101 * as, COLS - 101, part + 101 * ROWS + 9,
                     ROWS);
        cr_assert(memcmp(got, part, COLS * ROWS * sizeof *got) == 0, "%s: depends on the split",
                  quant_type_name(t));
        for (int j = 0; j < COLS; j += 3) {
            for (int r = 0; r < ROWS; r++) {
                float want = quant_vec_dot(t, K, wq + r * rs, aq + j * as);
                cr_assert_leq(fabs(got[j * ROWS + r] - want), 1e-4 * fabs(want) + 1e-2,
                              "%s r%d c%d: avx2 %.8g dot %.8g", quant_type_name(t), r, j,
                              got[j * ROWS + r], want);
            }
        }
    }
    km_free(w);
    km_free(a);
    km_free(got);
    km_free(part);
    km_free(wq);
    km_free(aq);
}

Test(quant, kernel_selection)
{
    enum quant_isa isa = quant_kernels_init();
    cr_assert_eq(isa, cpu_has_avx2_fma_f16c() ? QUANT_ISA_AVX2 : QUANT_ISA_SCALAR);
    cr_assert_str_eq(quant_isa_name(QUANT_ISA_SCALAR), "scalar");
    cr_assert(quant_kernels_force(QUANT_ISA_SCALAR));
    cr_assert_eq(quant_kernels_active(), QUANT_ISA_SCALAR);
    cr_assert_geq(cpu_physical_cores(), 1);
    cr_assert_leq(cpu_physical_cores(), cpu_logical_cores());
}

/* KANOA_KERNELS=scalar wins over cpuid (each Criterion test is a fresh
 * process, so the first init below sees the variable). */
Test(quant, env_forces_scalar)
{
    setenv("KANOA_KERNELS", "scalar", 1);
    cr_assert_eq(quant_kernels_init(), QUANT_ISA_SCALAR);
    cr_assert_eq(quant_kernels_active(), QUANT_ISA_SCALAR);
}

/* The AVX2 Q8_K activation quantizer on the cases where the reference's
 * choices matter: the first of two opposite-signed maxima sets the sign, an
 * all-zero block is all zeros, a constant block and a single spike, and
 * rounding ties (x * iscale = k + 0.5 rounds to even). Bit-exact. */
Test(quant, avx2_q8_k_activation_edge_cases)
{
    if (!cpu_has_avx2_fma_f16c()) {
        cr_skip_test("CPU without AVX2/FMA/F16C");
        return;
    }
    enum { NB = 6, N = NB * 256 };
    float *x = km_calloc(N, sizeof *x);
    size_t as = quant_act_row_size(GGML_TYPE_Q4_K, N);
    uint8_t *s = km_malloc(as), *v = km_malloc(as);
    fill_random(x, 256, 0.3f);                   /* |x| <= 1.2 */
    x[10] = -2.0f;                               /* block 0: -2 first, +2 later */
    x[200] = 2.0f;
    /* block 1 stays zero */
    for (int i = 512; i < 768; i++)              /* block 2: constant */
        x[i] = 0.25f;
    x[768 + 255] = 5.0f;                         /* block 3: one spike at the end */
    for (int i = 1024; i < 1280; i++)            /* block 4: ties at +-0.5 steps */
        x[i] = (float)((i % 9) - 4) * 0.5f;
    x[1024] = -127.0f;
    fill_random(x + 1280, 256, 1e-3f);           /* block 5: tiny values */
    cr_assert(quant_kernels_force(QUANT_ISA_SCALAR));
    quant_quantize_act(GGML_TYPE_Q4_K, x, s, N);
    cr_assert(quant_kernels_force(QUANT_ISA_AVX2));
    quant_quantize_act(GGML_TYPE_Q4_K, x, v, N);
    for (int b = 0; b < NB; b++)
        cr_assert(memcmp(s + b * 292, v + b * 292, 292) == 0, "Q8_K block %d differs", b);
    float d0;
    memcpy(&d0, s, 4);
    /* max = -2 -> iscale = -127 / -2 = 63.5, d = 1 / 63.5 (with +2: negative) */
    cr_assert_eq(d0, 1.0f / 63.5f, "block 0 scale follows the first maximum (-2): %g", d0);
    cr_assert_eq((int8_t)v[4 + 10], -127);
    cr_assert_eq((int8_t)v[4 + 200], 127);
    for (int i = 292; i < 584; i++)
        cr_assert_eq(s[i], 0, "zero block byte %d", i - 292);
    km_free(x);
    km_free(s);
    km_free(v);
}

/* ---- float-weight GEMM (gemm_avx2.c, owner "fgemm") --------------------- */

/* Largest |got - scalar dot| allowed: the summation-order tolerance. */
static double float_tol(const float *w, const float *a, int64_t k)
{
    double m = 0;
    for (int64_t i = 0; i < k; i++)
        m += fabs((double)w[i] * a[i]);
    return 1e-5 * m + 1e-6;
}

/* One (type, nr, k, na) case: quant_matmul (AVX2) into an output with
 * stride nr + 3 whose gaps hold a sentinel, against the scalar dots. */
static void check_float_gemm(uint32_t t, int nr, int64_t k, int na)
{
    size_t rs = quant_row_size(t, k), as = quant_act_row_size(t, k);
    int64_t os = nr + 3;
    float *w = km_malloc((size_t)nr * k * sizeof *w), *a = km_malloc((size_t)na * k * sizeof *a);
    uint8_t *wq = km_malloc((size_t)nr * rs), *aq = km_malloc((size_t)na * as);
    float *got = km_malloc((size_t)na * os * sizeof *got);
    fill_random(w, (int64_t)nr * k, 0.3f);
    fill_random(a, (int64_t)na * k, 3.0f);
    for (int r = 0; r < nr; r++)
        quant_quantize_row(t, w + r * k, wq + r * rs, k);
    for (int j = 0; j < na; j++)
        quant_quantize_act(t, a + j * k, aq + j * as, k);
    for (int64_t i = 0; i < na * os; i++)
        got[i] = -12345.0f;
    cr_assert(quant_kernels_force(QUANT_ISA_AVX2));
    quant_matmul(t, wq, nr, k, aq, na, got, os);
    cr_assert(quant_kernels_force(QUANT_ISA_SCALAR));
    for (int j = 0; j < na; j++) {
        for (int r = 0; r < os; r++) {
            float g = got[j * os + r];
            if (r >= nr) {
                cr_assert_eq(g, -12345.0f, "%s nr=%d k=%lld na=%d: wrote row %d of col %d",
                             quant_type_name(t), nr, (long long)k, na, r, j);
                continue;
            }
            float want = quant_vec_dot(t, k, wq + r * rs, aq + j * as);
            cr_assert_leq(fabs(g - want), float_tol(w + r * k, a + j * k, k),
                          "%s nr=%d k=%lld na=%d r%d c%d: avx2 %.8g scalar %.8g",
                          quant_type_name(t), nr, (long long)k, na, r, j, g, want);
        }
    }
    quant_kernels_force(QUANT_ISA_AVX2);
    km_free(w);
    km_free(a);
    km_free(wq);
    km_free(aq);
    km_free(got);
}

/* The GEMM tiles 16 rows x 6 activations, blocks rows by 64, k by 256 and
 * activations by 120: partial row panels (1, 15, 17, 33 rows), a partial row
 * block (70), every activation remainder (2..7, 13), a partial activation
 * block (121), k not a multiple of 8 (1, 7, 255, 257) and several k blocks
 * with a partial last one (520). */
Test(quant, avx2_float_gemm_shapes)
{
    if (!cpu_has_avx2_fma_f16c()) {
        cr_skip_test("CPU without AVX2/FMA/F16C");
        return;
    }
    static const uint32_t types[] = {GGML_TYPE_F32, GGML_TYPE_F16, GGML_TYPE_BF16};
    static const int rows[] = {1, 15, 16, 17, 33};
    static const int64_t ks[] = {1, 7, 8, 255, 256, 257, 520};
    for (size_t ti = 0; ti < 3; ti++) {
        for (size_t ri = 0; ri < sizeof rows / sizeof rows[0]; ri++)
            for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++)
                check_float_gemm(types[ti], rows[ri], ks[ki], 2 + (int)((ri + ki) % 6));
        check_float_gemm(types[ti], 17, 300, 13);
        check_float_gemm(types[ti], 33, 40, 121);
        check_float_gemm(types[ti], 70, 24, 9);
    }
}

/* Each output of the float GEMM is the same float whatever else is in the
 * call: rows split anywhere and activations grouped any way (n_act >= 2)
 * give bit-identical results (the encoders' batch independence). */
Test(quant, avx2_float_gemm_split_invariant)
{
    if (!cpu_has_avx2_fma_f16c()) {
        cr_skip_test("CPU without AVX2/FMA/F16C");
        return;
    }
    enum { NR = 70, K = 700, NA = 130 };
    static const uint32_t types[] = {GGML_TYPE_F32, GGML_TYPE_F16, GGML_TYPE_BF16};
    float *w = km_malloc(NR * K * sizeof *w), *a = km_malloc(NA * K * sizeof *a);
    uint8_t *wq = km_malloc(NR * K * 4);
    float *all = km_malloc(NA * NR * sizeof *all), *part = km_malloc(NA * NR * sizeof *part);
    fill_random(w, NR * K, 0.3f);
    fill_random(a, NA * K, 3.0f);
    cr_assert(quant_kernels_force(QUANT_ISA_AVX2));
    for (size_t ti = 0; ti < 3; ti++) {
        uint32_t t = types[ti];
        size_t rs = quant_row_size(t, K), as = quant_act_row_size(t, K);
        for (int r = 0; r < NR; r++)
            quant_quantize_row(t, w + r * K, wq + r * rs, K);
        const uint8_t *aq = (const uint8_t *)a; /* float weights take f32 activations */
        quant_matmul(t, wq, NR, K, aq, NA, all, NR);
        /* rows 0..4 and 5..69, activations in groups of 2, 4, 7, 11, ... */
        int j = 0, g = 2;
        while (j < NA) {
            int n = NA - j < g ? NA - j : g;
            n = n < 2 ? 2 : n;
            j = j + n > NA ? NA - n : j;
            quant_matmul(t, wq, 5, K, aq + j * as, n, part + j * NR, NR);
            quant_matmul(t, wq + 5 * rs, NR - 5, K, aq + j * as, n, part + j * NR + 5, NR);
            j += n;
            g = g * 3 / 2 + 1;
        }
        cr_assert(memcmp(all, part, NA * NR * sizeof *all) == 0, "%s: split changes results",
                  quant_type_name(t));
    }
    km_free(w);
    km_free(a);
    km_free(wq);
    km_free(all);
    km_free(part);
}

/* Decode (n_act = 1) streams 6 float rows at once: for 1..13 rows (partial
 * groups) and k with 16-, 8- and 1-element tails, every output equals the
 * AVX2 dot of its row bit for bit and the scalar dot within tolerance. */
Test(quant, avx2_float_matvec_rows)
{
    if (!cpu_has_avx2_fma_f16c()) {
        cr_skip_test("CPU without AVX2/FMA/F16C");
        return;
    }
    enum { NR = 13, KMAX = 1000 };
    static const uint32_t types[] = {GGML_TYPE_F32, GGML_TYPE_F16, GGML_TYPE_BF16};
    static const int64_t ks[] = {1, 8, 15, 16, 24, 999, KMAX};
    float *w = km_malloc(NR * KMAX * sizeof *w), *a = km_malloc(KMAX * sizeof *a);
    uint8_t *wq = km_malloc(NR * KMAX * 4);
    float got[NR + 1];
    fill_random(w, NR * KMAX, 0.3f);
    fill_random(a, KMAX, 3.0f);
    for (size_t ti = 0; ti < 3; ti++) {
        uint32_t t = types[ti];
        for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++) {
            int64_t k = ks[ki];
            size_t rs = quant_row_size(t, k);
            for (int r = 0; r < NR; r++)
                quant_quantize_row(t, w + r * k, wq + r * rs, k);
            for (int nr = 1; nr <= NR; nr++) {
                cr_assert(quant_kernels_force(QUANT_ISA_AVX2));
                got[nr] = -1.0f;
                quant_matmul(t, wq, nr, k, a, 1, got, nr);
                cr_assert_eq(got[nr], -1.0f, "%s: wrote past %d rows", quant_type_name(t), nr);
                for (int r = 0; r < nr; r++) {
                    float d = quant_vec_dot(t, k, wq + r * rs, a);
                    cr_assert_eq(got[r], d, "%s k=%lld nr=%d r%d: %.9g vs dot %.9g",
                                 quant_type_name(t), (long long)k, nr, r, got[r], d);
                }
                cr_assert(quant_kernels_force(QUANT_ISA_SCALAR));
                for (int r = 0; r < nr; r++) {
                    float want = quant_vec_dot(t, k, wq + r * rs, a);
                    cr_assert_leq(fabs(got[r] - want), float_tol(w + r * k, a, k),
                                  "%s k=%lld r%d: avx2 %.8g scalar %.8g", quant_type_name(t),
                                  (long long)k, r, got[r], want);
                }
            }
        }
    }
    quant_kernels_force(QUANT_ISA_AVX2);
    km_free(w);
    km_free(a);
    km_free(wq);
}
