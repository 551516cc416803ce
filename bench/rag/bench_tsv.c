/* bench_tsv.c - CPU time of rag__tsv_english (src/rag/tsv.c) per chunk.
 *
 *   cc -std=gnu17 -O2 -Isrc -D_GNU_SOURCE -o build/bench_tsv \
 *      bench/rag/bench_tsv.c build/libkanoa.a $(pkg-config --libs ...) -lm
 *   build/bench_tsv [CHARS] [ITERATIONS]      (150 200000)
 *
 * Builds 64 deterministic English-like chunks of about CHARS bytes (common
 * words, capitals, numbers, commas and full stops, some hyphenated words),
 * then runs the whole set ITERATIONS / 64 times, five times over, and
 * prints the best thread CPU time per chunk and per byte, the lexemes per
 * chunk and how many chunks the fast path accepted. Not a test: timing only.
 */
#include "base/buf.h"
#include "rag/rag_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NTEXTS 64

static const char *const words[] = {
    "the",       "search",    "index",     "stores",   "vectors",   "and",      "documents",
    "of",        "running",   "queries",   "against",  "a",         "database", "with",
    "embedding", "models",    "computed",  "locally",  "server",    "returns",  "ranked",
    "results",   "quickly",   "when",      "users",    "ask",       "questions", "about",
    "their",     "knowledge", "base",      "chunks",   "are",       "split",    "by",
    "headings",  "paragraphs", "sentences", "into",    "pieces",    "that",     "fit",
    "context",   "windows",   "generation", "happens", "after",     "retrieval", "relevant",
    "passages",  "connected", "information", "hybrid", "ranking",   "combines", "lexical",
    "semantic",  "signals",   "well-known", "state-of-the-art", "ingestion", "throughput",
};

static unsigned long long rng_state = 88172645463325252ULL;

static unsigned next_rand(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (unsigned)(rng_state >> 32);
}

static void make_text(struct km_buf *b, size_t chars)
{
    bool cap = true;
    while (b->len < chars) {
        unsigned r = next_rand() % 100;
        char w[64];
        if (r < 5)
            snprintf(w, sizeof w, "%u", next_rand() % 10000);
        else
            snprintf(w, sizeof w, "%s", words[next_rand() % (sizeof words / sizeof words[0])]);
        if (cap && w[0] >= 'a' && w[0] <= 'z')
            w[0] = (char)(w[0] - 32);
        km_buf_puts(b, w);
        r = next_rand() % 100;
        cap = r < 8;
        km_buf_puts(b, r < 8 ? ". " : r < 15 ? ", " : " ");
    }
}

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    size_t chars = argc > 1 ? (size_t)atol(argv[1]) : 150;
    long iters = argc > 2 ? atol(argv[2]) : 200000;
    struct km_buf texts[NTEXTS], out;
    struct km_err err = {0};
    long rounds = iters / NTEXTS > 0 ? iters / NTEXTS : 1;
    double best = 1e30;
    size_t bytes = 0, accepted = 0, lexemes = 0;
    km_buf_init(&out, 1 << 24);
    for (int i = 0; i < NTEXTS; i++) {
        bool ok = false;
        km_buf_init(&texts[i], 1 << 20);
        make_text(&texts[i], chars);
        bytes += texts[i].len;
        km_buf_reset(&out);
        rag__tsv_english(texts[i].data, texts[i].len, &out, &ok, &err);
        accepted += ok;
        if (ok)
            lexemes += (size_t)((unsigned char)out.data[2] << 8 | (unsigned char)out.data[3]);
    }
    printf("example: %.*s\n", (int)texts[0].len, texts[0].data);
    for (int run = 0; run < 5; run++) {
        double t0 = cpu_now(), dt;
        for (long r = 0; r < rounds; r++) {
            for (int i = 0; i < NTEXTS; i++) {
                bool ok;
                km_buf_reset(&out);
                rag__tsv_english(texts[i].data, texts[i].len, &out, &ok, &err);
            }
        }
        dt = cpu_now() - t0;
        if (dt < best)
            best = dt;
    }
    printf("tsv: %zu-byte chunks (mean %.0f), %zu/%d accepted, %.1f lexemes each: "
           "%.3f us CPU per chunk, %.2f ns per byte (best of 5, %ld chunks a run)\n",
           chars, (double)bytes / NTEXTS, accepted, NTEXTS, (double)lexemes / NTEXTS,
           best * 1e6 / ((double)rounds * NTEXTS), best * 1e9 / ((double)rounds * (double)bytes),
           rounds * NTEXTS);
    for (int i = 0; i < NTEXTS; i++)
        km_buf_free(&texts[i]);
    km_buf_free(&out);
    return 0;
}
