/* bench_engine.c - decode (tg) and prefill (pp) speed of the engine on one
 * GGUF file, and decode as a fraction of the memory-bandwidth roofline.
 *
 *   bench_engine MODEL THREADS [PP=512] [TG=128]
 *
 * The baseline is measured in the same run: the read bandwidth of THREADS
 * threads streaming a 1 GiB buffer (best of 3). Roofline decode tokens/s =
 * bandwidth / bytes of weight matrices read per token (the tied LM head
 * included, one token_embd row excluded) + the KV bytes read at the mean
 * decode position. pp: PP tokens in one sequence from position 0 (batches
 * of 512), best of 2. tg: TG single-token steps after a 16-token prompt,
 * best of 2. The machine is shared: numbers are noisy; the CPU time per
 * token per thread (process CPU seconds / tokens / THREADS, best run) shows
 * what the work costs when it gets the cores.
 */
#include "base/mem.h"
#include "engine/engine.h"

#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double clock_s(clockid_t id)
{
    struct timespec t;
    clock_gettime(id, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static double now(void)
{
    return clock_s(CLOCK_MONOTONIC);
}

/* CPU seconds of all threads of this process: on a shared machine,
 * cpu time / (tokens x threads) is what the work costs when it runs. */
static double cpu_now(void)
{
    return clock_s(CLOCK_PROCESS_CPUTIME_ID);
}

/* wall and CPU seconds of the best repetition */
struct timing {
    double wall, cpu;
};

struct reader {
    const uint8_t *p;
    size_t n;
    long long sink;
};

__attribute__((target("avx2"))) static void *read_part(void *arg)
{
    struct reader *r = arg;
    __m256i acc = _mm256_setzero_si256();
    for (size_t i = 0; i + 128 <= r->n; i += 128) {
        acc = _mm256_add_epi8(acc, _mm256_loadu_si256((const __m256i *)(r->p + i)));
        acc = _mm256_add_epi8(acc, _mm256_loadu_si256((const __m256i *)(r->p + i + 32)));
        acc = _mm256_add_epi8(acc, _mm256_loadu_si256((const __m256i *)(r->p + i + 64)));
        acc = _mm256_add_epi8(acc, _mm256_loadu_si256((const __m256i *)(r->p + i + 96)));
    }
    r->sink = _mm256_extract_epi64(acc, 0);
    return NULL;
}

/* GB/s of `threads` threads each reading its share of a 1 GiB buffer. */
static double read_bandwidth(int threads)
{
    size_t n = (size_t)1 << 30;
    uint8_t *buf = malloc(n);
    if (!buf)
        return 0;
    memset(buf, 1, n);
    double best = 0;
    for (int rep = 0; rep < 3; rep++) {
        pthread_t th[64];
        struct reader r[64];
        double t0 = now();
        for (int i = 0; i < threads; i++) {
            r[i] = (struct reader){buf + n / threads * i, n / threads, 0};
            pthread_create(&th[i], NULL, read_part, &r[i]);
        }
        for (int i = 0; i < threads; i++)
            pthread_join(th[i], NULL);
        double gbs = (double)n / (now() - t0) / 1e9;
        best = gbs > best ? gbs : best;
    }
    free(buf);
    return best;
}

/* Resident set size of this process in MB (VmRSS). */
static double rss_mb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double kb = 0;
    while (f && fgets(line, sizeof line, f)) {
        if (strncmp(line, "VmRSS:", 6) == 0)
            kb = atof(line + 6);
    }
    if (f)
        fclose(f);
    return kb / 1024;
}

static struct timing run_pp(struct eng_model *m, int n_vocab, int pp, float *logits)
{
    struct timing best = {1e30, 1e30};
    struct eng_seq *s;
    struct km_err err;
    if (eng_seq_new(m, 0, &s, &err) != KM_OK)
        return best;
    int32_t *ids = km_calloc((size_t)pp, sizeof *ids);
    for (int i = 0; i < pp; i++)
        ids[i] = (int32_t)((i * 7919 + 13) % n_vocab);
    for (int rep = 0; rep < 2; rep++) {
        eng_seq_clear(s);
        double t0 = now(), c0 = cpu_now();
        if (eng_eval(s, ids, (size_t)pp, logits, &err) != KM_OK) {
            fprintf(stderr, "bench: %s\n", km_err_text(&err));
            break;
        }
        double dt = now() - t0, dc = cpu_now() - c0;
        best.wall = dt < best.wall ? dt : best.wall;
        best.cpu = dc < best.cpu ? dc : best.cpu;
    }
    km_free(ids);
    eng_seq_free(s);
    return best;
}

static struct timing run_tg(struct eng_model *m, int n_vocab, int tg, float *logits)
{
    struct timing best = {1e30, 1e30};
    struct eng_seq *s;
    struct km_err err;
    if (eng_seq_new(m, 0, &s, &err) != KM_OK)
        return best;
    int32_t prompt[16];
    for (int i = 0; i < 16; i++)
        prompt[i] = (int32_t)((i * 104729 + 7) % n_vocab);
    for (int rep = 0; rep < 2; rep++) {
        eng_seq_clear(s);
        eng_eval(s, prompt, 16, logits, &err);
        int32_t tok = 1;
        double t0 = now(), c0 = cpu_now();
        for (int i = 0; i < tg; i++) {
            if (eng_eval(s, &tok, 1, logits, &err) != KM_OK)
                break;
            tok = (int32_t)((tok * 31 + i) % n_vocab);   /* no sampling cost */
        }
        double dt = now() - t0, dc = cpu_now() - c0;
        best.wall = dt < best.wall ? dt : best.wall;
        best.cpu = dc < best.cpu ? dc : best.cpu;
    }
    eng_seq_free(s);
    return best;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: bench_engine MODEL THREADS [PP] [TG]\n");
        return 2;
    }
    int threads = atoi(argv[2]);
    int pp = argc > 3 ? atoi(argv[3]) : 512, tg = argc > 4 ? atoi(argv[4]) : 128;
    double bw = read_bandwidth(threads);
    struct eng_load_params p;
    eng_load_params_default(&p);
    p.path = argv[1];
    p.n_threads = threads;
    p.n_ctx = pp + 32 > tg + 32 ? pp + 32 : tg + 32;
    p.n_slots = 1;
    p.n_batch = 0;       /* the serving default */
    struct eng_model *m;
    struct km_err err;
    if (eng_model_open(&p, &m, &err) != KM_OK) {
        fprintf(stderr, "bench: %s\n", km_err_text(&err));
        return 1;
    }
    struct eng_model_info info;
    eng_model_info(m, &info);
    float *logits = km_calloc((size_t)info.n_vocab, sizeof *logits);
    struct timing tp = run_pp(m, info.n_vocab, pp, logits);
    struct timing tt = run_tg(m, info.n_vocab, tg, logits);
    double pps = pp / tp.wall, tgs = tg / tt.wall;
    double kv = 2.0 * info.n_layer * (16 + tg / 2.0) * info.n_head_kv *
                (info.n_embd / info.n_head) * 2;
    double bytes = (double)info.weight_bytes + kv;
    double roof = bw * 1e9 / bytes;
    printf("%s threads=%d: pp%d %.1f tok/s, tg%d %.2f tok/s; read bandwidth %.1f GB/s, "
           "%.0f MB/token -> roofline %.2f tok/s, decode at %.0f%% of roofline; "
           "RSS %.0f MB (file %.0f MB + KV %.0f MB + %.0f MB); "
           "CPU per token per thread: pp %.2f ms, tg %.2f ms\n",
           info.name, threads, pp, pps, tg, tgs, bw, bytes / 1e6, roof, 100 * tgs / roof,
           rss_mb(), info.file_size / 1048576.0, info.kv_bytes / 1048576.0,
           rss_mb() - info.file_size / 1048576.0 - info.kv_bytes / 1048576.0,
           1e3 * tp.cpu / pp / threads, 1e3 * tt.cpu / tg / threads);
    km_free(logits);
    eng_model_close(m);
    return 0;
}
