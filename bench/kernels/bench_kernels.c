/* bench_kernels.c - throughput of the quant kernels, as ratios against
 * baselines measured in the same run:
 *   - decode (matrix x vector): GB/s of weights streamed by quant_vec_dot
 *     over a 256 MiB matrix, vs. a plain AVX2 read of the same bytes and
 *     vs. memcpy;
 *   - prefill (matrix x 64 vectors): GFLOP/s of quant_matmul (AVX2) and its
 *     speedup over the scalar reference.
 * Single-threaded; times are this thread's CPU time (CLOCK_THREAD_CPUTIME_ID)
 * so other processes on a shared machine distort them less; best of 3 runs.
 * With a model file, also one pass of every 2-D weight of the model (tied
 * token_embd counted once, as the LM head) as decode (1 activation) and
 * prefill (64 activations): the kernel-only upper bound of tokens/s.
 * Usage: bench_kernels [MiB [MODEL.gguf]]  */
#include "base/mem.h"
#include "engine/cpu.h"
#include "engine/gguf.h"
#include "engine/quant.h"

#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

__attribute__((target("avx2"))) static double read_sum(const uint8_t *p, size_t n)
{
    __m256i acc = _mm256_setzero_si256();
    for (size_t i = 0; i + 32 <= n; i += 32)
        acc = _mm256_add_epi8(acc, _mm256_loadu_si256((const __m256i *)(p + i)));
    uint8_t t[32];
    _mm256_storeu_si256((__m256i *)t, acc);
    return t[0] + t[31];
}

static float urand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return (float)((*s >> 11) * 0x1.0p-53) * 2.0f - 1.0f;
}

static const uint32_t types[] = {GGML_TYPE_F32, GGML_TYPE_F16, GGML_TYPE_BF16, GGML_TYPE_Q8_0,
                                 GGML_TYPE_Q4_0, GGML_TYPE_Q4_1, GGML_TYPE_Q5_0, GGML_TYPE_Q5_1,
                                 GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K};

/* Best-of-3 seconds for one full matrix x vector. */
static double time_matvec(uint32_t t, const uint8_t *w, int64_t rows, int64_t k,
                          const void *act, float *out)
{
    size_t rs = quant_row_size(t, k);
    double best = 1e9;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = now();
        for (int64_t r = 0; r < rows; r++)
            out[r] = quant_vec_dot(t, k, w + (size_t)r * rs, act);
        double dt = now() - t0;
        best = dt < best ? dt : best;
    }
    return best;
}

static double time_matmul(uint32_t t, const uint8_t *w, int64_t rows, int64_t k,
                          const void *act, int64_t na, float *out)
{
    double best = 1e9;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = now();
        quant_matmul(t, w, rows, k, act, na, out, rows);
        double dt = now() - t0;
        best = dt < best ? dt : best;
    }
    return best;
}

/* Seconds for one pass over the model's matmul weights with n_act
 * activations: the LM head (output.weight, else the tied token_embd) gets
 * one activation (only the last position's logits are needed), an untied
 * token_embd none (it is a row lookup). */
static double model_pass(const struct gguf_file *f, int64_t n_act, const uint8_t *act, float *out)
{
    const struct gguf_tensor *head = gguf_find_tensor(f, "output.weight");
    const struct gguf_tensor *embd = gguf_find_tensor(f, "token_embd.weight");
    if (!head)
        head = embd;
    double t0 = now();
    for (int64_t i = 0; i < gguf_n_tensors(f); i++) {
        const struct gguf_tensor *t = gguf_tensor_at(f, i);
        if (t->n_dims < 2 || !quant_supported(t->type) || (t == embd && t != head))
            continue;
        quant_matmul(t->type, t->data, (int64_t)t->n_rows, (int64_t)t->ne[0], act,
                     t == head ? 1 : n_act, out, (int64_t)t->n_rows);
    }
    return now() - t0;
}

static int bench_model(const char *path)
{
    struct gguf_file *f = NULL;
    struct km_err err;
    if (gguf_open(path, &f, &err) != KM_OK) {
        fprintf(stderr, "bench_kernels: %s\n", err.msg);
        return 1;
    }
    enum { NA = 64 };
    size_t kmax = 0, rmax = 0, wbytes = 0;
    for (int64_t i = 0; i < gguf_n_tensors(f); i++) {
        const struct gguf_tensor *t = gguf_tensor_at(f, i);
        if (t->n_dims < 2)
            continue;
        kmax = t->ne[0] > kmax ? t->ne[0] : kmax;
        rmax = t->n_rows > rmax ? t->n_rows : rmax;
        wbytes += t->nbytes;
    }
    /* activations sized for the largest row and any type; zeros are fine,
     * but written: untouched calloc pages all map the one zero page, and on
     * AMD Zen those virtual aliases thrash the L1 (prefill ran at half speed) */
    uint8_t *act = km_calloc(NA, kmax * 4 + 4096);
    memset(act, 0, NA * (kmax * 4 + 4096));
    float *out = km_malloc(rmax * NA * sizeof *out);
    double td = 1e9, tp = 1e9;
    for (int rep = 0; rep < 2; rep++) {
        double d = model_pass(f, 1, act, out), p = model_pass(f, NA, act, out);
        td = d < td ? d : td;
        tp = p < tp ? p : tp;
    }
    printf("model %s: %.1f MiB of 2-D weights, 1 thread: decode %.2f tok/s (%.2f GB/s), "
           "prefill(64) %.1f tok/s\n", path, (double)wbytes / 1048576.0, 1.0 / td,
           (double)wbytes / td / 1e9, NA / tp);
    km_free(act);
    km_free(out);
    gguf_close(f);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 2)
        return bench_model(argv[2]);
    size_t mib = argc > 1 ? (size_t)atoi(argv[1]) : 256;
    size_t bytes = mib << 20;
    const int64_t K = 4096, NA = 64, MM_ROWS = 256;
    uint8_t *buf = km_malloc(bytes), *dst = km_malloc(bytes);
    float *x = km_malloc((size_t)K * NA * sizeof *x), *out = km_malloc(bytes / 8);
    uint8_t *act = km_malloc((size_t)NA * K * 4 + 4096);
    if (!buf || !dst || !x || !out || !act)
        return 1;
    uint64_t s = 42;
    for (int64_t i = 0; i < K * NA; i++)
        x[i] = urand(&s);
    memset(dst, 1, bytes);
    for (size_t i = 0; i < bytes; i++)
        buf[i] = (uint8_t)(i * 2654435761u >> 13);
    double best_rd = 1e9, best_cp = 1e9, sink = 0;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = now();
        sink += read_sum(buf, bytes);
        double t1 = now();
        memcpy(dst, buf, bytes);
        double t2 = now();
        best_rd = t1 - t0 < best_rd ? t1 - t0 : best_rd;
        best_cp = t2 - t1 < best_cp ? t2 - t1 : best_cp;
    }
    double bw = (double)bytes / best_rd / 1e9;
    printf("kernels: %s, %zu MiB matrices, K=%lld, 1 thread, thread CPU time\n",
           quant_isa_name(quant_kernels_init()), mib, (long long)K);
    printf("baseline read %.2f GB/s, memcpy %.2f GB/s (read+write %.2f GB/s)%s\n", bw,
           (double)bytes / best_cp / 1e9, 2.0 * (double)bytes / best_cp / 1e9, sink < 0 ? "!" : "");
    printf("%-6s %10s %8s %12s %12s %8s\n", "type", "dot GB/s", "vs read", "mm GFLOP/s",
           "scalar mm", "speedup");
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        uint32_t t = types[ti];
        size_t rs = quant_row_size(t, K);
        int64_t rows = (int64_t)(bytes / rs);
        /* fill the matrix with valid blocks: quantize one random row set, repeat */
        for (int64_t r = 0; r < 64 && r < rows; r++)
            quant_quantize_row(t, x + (r % NA) * K, buf + (size_t)r * rs, K);
        for (int64_t r = 64; r < rows; r++)
            memcpy(buf + (size_t)r * rs, buf + (size_t)(r % 64) * rs, rs);
        size_t as = quant_act_row_size(t, K);
        for (int64_t j = 0; j < NA; j++)
            quant_quantize_act(t, x + j * K, act + (size_t)j * as, K);
        quant_kernels_force(QUANT_ISA_AVX2);
        double tv = time_matvec(t, buf, rows, K, act, out);
        double tm = time_matmul(t, buf, MM_ROWS, K, act, NA, out);
        quant_kernels_force(QUANT_ISA_SCALAR);
        double ts = time_matmul(t, buf, MM_ROWS / 4, K, act, NA, out) * 4;
        quant_kernels_init();
        quant_kernels_force(cpu_has_avx2_fma_f16c() ? QUANT_ISA_AVX2 : QUANT_ISA_SCALAR);
        double gbs = (double)rows * (double)rs / tv / 1e9;
        double flops = 2.0 * (double)MM_ROWS * (double)K * (double)NA;
        printf("%-6s %10.2f %7.0f%% %12.1f %12.1f %7.1fx\n", quant_type_name(t), gbs, 100 * gbs / bw,
               flops / tm / 1e9, flops / ts / 1e9, ts / tm);
    }
    km_free(buf);
    km_free(dst);
    km_free(x);
    km_free(out);
    km_free(act);
    return 0;
}
