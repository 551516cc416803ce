/* bench_rag.c - knowledge-base load and query benchmark (one process).
 *
 * usage: bench_rag URL [N] [DIM] [QUERIES]   (defaults 100000 384 100)
 *
 * Vectors have a low intrinsic dimension like real embeddings: a 24-d
 * Gaussian latent times a fixed random 24 x DIM projection, plus 5% noise,
 * normalized. Measured in the same run, so the ratios are what matter:
 *  1. baseline: text COPY of (id, text, vector) into a plain table;
 *  2. binary COPY (rag_copy_*) of the same rows into the same kind of table;
 *  3. the rag ingest path without embeddings: binary COPY into kanoa.chunks
 *     (tsvector generated, GIN indexes), one transaction per 100-chunk
 *     document, then the collection's HNSW index build;
 *  4. queries: recall@10 of HNSW (ef_search 40 and 100) against exact
 *     search, p50/p99 latency of rag_query_run and of the bare SQL.
 */
#include "base/mem.h"
#include "rag/rag.h"
#include "rag/rag_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LATENT 24
#define DOC_CHUNKS 100

static unsigned long long rng_state = 88172645463325252ull;

static double urand(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / 9007199254740992.0;
}

static double gauss(void)
{
    double u = urand() + 1e-12, v = urand();
    return sqrt(-2 * log(u)) * cos(2 * M_PI * v);
}

static float *proj; /* LATENT x dim */

static void make_vec(float *out, int dim)
{
    double z[LATENT], n = 0;
    for (int i = 0; i < LATENT; i++)
        z[i] = gauss();
    for (int j = 0; j < dim; j++) {
        double s = 0.05 * gauss();
        for (int i = 0; i < LATENT; i++)
            s += z[i] * proj[i * dim + j];
        out[j] = (float)s;
        n += s * s;
    }
    for (int j = 0; j < dim; j++)
        out[j] = (float)(out[j] / sqrt(n));
}

static const char *const words[] = {"vector", "index", "query", "model", "token", "chunk",
                                    "postgres", "kanoa", "recall", "latency", "cosine", "plot"};

static void make_text(char *out, size_t cap, long i)
{
    int n = snprintf(out, cap, "chunk %ld:", i);
    for (int w = 0; w < 24 && n < (int)cap - 16; w++)
        n += snprintf(out + n, cap - (size_t)n, " %s", words[(size_t)(urand() * 12) % 12]);
}

static void die(const struct km_err *e)
{
    fprintf(stderr, "bench_rag: %s\n", km_err_text(e));
    exit(1);
}

static void load_plain(struct rag_db *db, long n, int dim, bool binary, double *secs)
{
    struct km_err e;
    struct km_buf b;
    char sql[256], text[512];
    float *v = km_malloc(sizeof(float) * (size_t)dim);
    snprintf(sql, sizeof sql, "DROP TABLE IF EXISTS bench_plain; CREATE TABLE bench_plain"
             " (id bigint, text text, embedding vector(%d))", dim);
    if (rag_exec(db, sql, &e) != KM_OK)
        die(&e);
    km_buf_init(&b, 64u << 20);
    rng_state = 12345;
    double t0 = rag__now();
    if (rag__copy_begin(db, binary ? "COPY bench_plain FROM STDIN WITH (FORMAT binary)"
                                   : "COPY bench_plain FROM STDIN", &e) != KM_OK)
        die(&e);
    if (binary)
        rag_copy_header(&b);
    for (long i = 0; i < n; i++) {
        make_vec(v, dim);
        make_text(text, sizeof text, i);
        if (binary) {
            rag_copy_tuple(&b, 3);
            rag_copy_int8(&b, i);
            rag_copy_text(&b, text, strlen(text));
            rag_copy_vector(&b, v, (size_t)dim);
        } else {
            km_buf_printf(&b, "%ld\t%s\t[", i, text);
            for (int j = 0; j < dim; j++)
                km_buf_printf(&b, j ? ",%.9g" : "%.9g", (double)v[j]);
            km_buf_puts(&b, "]\n");
        }
        if (b.len > (1u << 20) || i == n - 1) {
            if (binary && i == n - 1)
                rag_copy_trailer(&b);
            if (rag__copy_put(db, b.data, b.len, &e) != KM_OK)
                die(&e);
            km_buf_reset(&b);
        }
    }
    if (rag__copy_end(db, &e) != KM_OK)
        die(&e);
    *secs = rag__now() - t0;
    km_buf_free(&b);
    km_free(v);
}
