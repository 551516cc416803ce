/* bench_embed.c - embeddings/s of an encoder GGUF (owned by "arch").
 *
 *   bench_embed MODEL THREADS TOKENS BATCH SECONDS
 * Embeds BATCH inputs of TOKENS ids each ([CLS] .. [SEP], random middle ids)
 * per eng_embed call, repeatedly for about SECONDS, after one warm-up call;
 * prints embeddings/s (wall clock) and embeddings per CPU-second (the
 * process's CPU time, which includes the pool's spin-waits): on a shared
 * machine the second is the fairer figure. Timing only; no checks.
 */
#include "base/mem.h"
#include "engine/engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double clk(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: bench_embed MODEL THREADS TOKENS BATCH SECONDS\n");
        return 2;
    }
    int T = atoi(argv[3]), B = atoi(argv[4]);
    double secs = atof(argv[5]);
    struct eng_load_params p;
    eng_load_params_default(&p);
    p.path = argv[1];
    p.n_threads = atoi(argv[2]);
    p.n_batch = T * B > 512 ? T * B : 512;
    struct eng_model *m = NULL;
    struct km_err err;
    if (eng_model_open(&p, &m, &err) != KM_OK) {
        fprintf(stderr, "bench_embed: %s\n", km_err_text(&err));
        return 1;
    }
    struct eng_model_info info;
    eng_model_info(m, &info);
    int32_t **ids = km_calloc((size_t)B, sizeof *ids);
    size_t *n = km_calloc((size_t)B, sizeof *n);
    float *out = km_calloc((size_t)B * (size_t)info.n_embd, sizeof *out);
    srand(1);
    for (int b = 0; b < B; b++) {
        ids[b] = km_calloc((size_t)T, sizeof **ids);
        n[b] = (size_t)T;
        for (int i = 0; i < T; i++)
            ids[b][i] = i == 0 ? 101 : i == T - 1 ? 102 : 1000 + rand() % 20000;
    }
    int rc = eng_embed(m, (const int32_t *const *)ids, n, (size_t)B, out, &err);
    double t0 = clk(CLOCK_MONOTONIC), t = t0, c0 = clk(CLOCK_PROCESS_CPUTIME_ID);
    long done = 0;
    while (rc == KM_OK && t - t0 < secs) {
        rc = eng_embed(m, (const int32_t *const *)ids, n, (size_t)B, out, &err);
        done += B;
        t = clk(CLOCK_MONOTONIC);
    }
    if (rc != KM_OK)
        fprintf(stderr, "bench_embed: %s\n", km_err_text(&err));
    else
        printf("batch %d: %.2f embeddings/s (%.0f tokens/s); %.2f per CPU-second "
               "(%.2f CPUs busy of %d threads)\n", B, done / (t - t0),
               done * (double)T / (t - t0), done / (clk(CLOCK_PROCESS_CPUTIME_ID) - c0),
               (clk(CLOCK_PROCESS_CPUTIME_ID) - c0) / (t - t0), p.n_threads);
    for (int b = 0; b < B; b++)
        km_free(ids[b]);
    km_free(ids);
    km_free(n);
    km_free(out);
    eng_model_close(m);
    return rc == KM_OK ? 0 : 1;
}
