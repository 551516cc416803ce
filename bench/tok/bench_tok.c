/* bench_tok.c - tokenizer throughput on ~100 KB of mixed-language text.
 *
 * For each reference vocabulary in shared/data/tokenizer, the .inp test
 * strings are concatenated until the text reaches 100 KB, then tok_encode
 * runs several times and the best time is kept. The baseline, measured in the
 * same run on the same text, is a plain UTF-8 decoding pass (uni_decode over
 * every code point), so the printed ratio says how many "decode passes" a
 * tokenization costs. Usage: bench_tok [SHARED_DIR] */
#include "base/mem.h"
#include "engine/gguf.h"
#include "engine/tok.h"
#include "engine/unicode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TARGET (100 * 1024)
#define REPS 5

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static char *make_text(const char *inp_path, size_t *len)
{
    FILE *f = fopen(inp_path, "rb");
    if (!f)
        return NULL;
    char src[1 << 16];
    size_t n = fread(src, 1, sizeof(src), f);
    fclose(f);
    char *t = malloc(TARGET + sizeof(src));
    size_t o = 0;
    while (o < TARGET && n > 0) {
        memcpy(t + o, src, n);
        o += n;
    }
    *len = o;
    return t;
}

static double best_decode_pass(const char *t, size_t len, unsigned long *sink)
{
    double best = 1e9;
    for (int r = 0; r < REPS; r++) {
        double t0 = now();
        for (size_t off = 0; off < len;) {
            size_t k;
            *sink += uni_decode(t + off, len - off, &k);
            off += k;
        }
        double dt = now() - t0;
        best = dt < best ? dt : best;
    }
    return best;
}

static int bench_one(const char *shared, const char *name)
{
    char path[1024];
    struct km_err err;
    struct gguf_file *gf;
    struct tok_vocab *v;
    size_t len, n = 0;
    unsigned long sink = 0;
    snprintf(path, sizeof(path), "%s/data/tokenizer/%s.inp", shared, name);
    char *text = make_text(path, &len);
    snprintf(path, sizeof(path), "%s/data/tokenizer/%s", shared, name);
    if (!text || gguf_open(path, &gf, &err) != KM_OK || tok_load(gf, &v, &err) != KM_OK) {
        fprintf(stderr, "bench_tok: %s: cannot load\n", name);
        return 1;
    }
    double best = 1e9;
    for (int r = 0; r < REPS; r++) {
        int32_t *ids;
        double t0 = now();
        if (tok_encode(v, text, len, false, false, &ids, &n, &err) != KM_OK) {
            fprintf(stderr, "bench_tok: %s\n", err.msg);
            return 1;
        }
        double dt = now() - t0;
        best = dt < best ? dt : best;
        km_free(ids);
    }
    double base = best_decode_pass(text, len, &sink);
    printf("%-28s %7zu bytes -> %6zu tokens  %8.2f ms  %7.2f MB/s  %9.0f tok/s  "
           "ratio vs utf8-decode baseline: %6.1fx%s\n",
           name, len, n, best * 1e3, (double)len / best / 1e6, (double)n / best, best / base,
           sink == 42 ? " " : "");
    tok_free(v);
    gguf_close(gf);
    free(text);
    return 0;
}

int main(int argc, char **argv)
{
    const char *shared = argc > 1 ? argv[1] : "../shared";
    int rc = 0;
    rc |= bench_one(shared, "ggml-vocab-gpt-2.gguf");
    rc |= bench_one(shared, "ggml-vocab-llama-spm.gguf");
    rc |= bench_one(shared, "ggml-vocab-bert-bge.gguf");
    return rc;
}
