/* embedder.c - where ingest and query get their vectors: an OpenAI-compatible
 * endpoint (embed_client.c) or the local engine (engine.h: eng_tokenize and
 * eng_embed on the calling thread). See rag.h for the contract.
 *
 * The local path frames each text as the server's /v1/embeddings does
 * ([CLS] .. [SEP] from eng_tokenize with add_special), so a chunk embedded
 * here and the same text sent to `serve --model FILE` give the same vector.
 * A text over the model's context is cut to its first n_ctx-1 tokens plus
 * the closing [SEP] instead of failing the whole document.
 *
 * Ingest jobs share one embedder: HTTP and hash calls run in parallel (no
 * shared state), local calls one at a time under the embedder's mutex (the
 * engine has its own threads).
 */
#include "rag/rag.h"

#include "base/mem.h"
#include "engine/engine.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

struct rag_embedder {
    char *url;              /* HTTP */
    char *api_key;          /* HTTP; NULL = none */
    struct eng_model *m;    /* local */
    char name[256];         /* local, hash: the model name recorded */
    int n_ctx, n_embd;      /* local; n_embd also for hash */
    bool hash;              /* rag_embedder_hash */
    pthread_mutex_t mu;     /* local: one eng_embed at a time */
    long truncated;         /* local: inputs cut to n_ctx (under mu) */
};

static struct rag_embedder *embedder_new(void)
{
    struct rag_embedder *e = km_calloc(1, sizeof *e);
    if (e)
        pthread_mutex_init(&e->mu, NULL);
    return e;
}

int rag_embedder_http(const char *url, const char *api_key,
                      struct rag_embedder **out, struct km_err *err)
{
    *out = NULL;
    struct rag_embedder *e = embedder_new();
    if (e)
        e->url = km_strdup(url);
    if (e && api_key)
        e->api_key = km_strdup(api_key);
    if (!e || !e->url || (api_key && !e->api_key)) {
        rag_embedder_free(e);
        return km_fail(err, KM_ENOMEM, "out of memory for an embeddings client");
    }
    *out = e;
    return KM_OK;
}

static int check_embed_model(struct rag_embedder *e, const char *path, const char *name,
                             struct km_err *err)
{
    struct eng_model_info info;
    eng_model_info(e->m, &info);
    if (info.task != ENG_TASK_EMBED)
        return km_fail(err, KM_EUNSUPPORTED, "model file %s is a %s text-generation "
                       "model; embeddings need an embedding model (bert, nomic-bert)",
                       path, info.arch);
    if (info.n_embd < 1 || info.n_embd > RAG_MAX_DIM)
        return km_fail(err, KM_ERANGE, "model file %s makes vectors of %d dimensions; "
                       "a collection holds 1..%d", path, info.n_embd, RAG_MAX_DIM);
    if (name && (!name[0] || strlen(name) >= sizeof e->name))
        return km_fail(err, KM_EINVAL, "embedding model name must be 1..%zu bytes",
                       sizeof e->name - 1);
    snprintf(e->name, sizeof e->name, "%s", name ? name : info.name);
    e->n_ctx = info.n_ctx;
    e->n_embd = info.n_embd;
    return KM_OK;
}

int rag_embedder_local(const char *path, const char *name, int n_threads,
                       struct rag_embedder **out, struct km_err *err)
{
    *out = NULL;
    struct rag_embedder *e = embedder_new();
    if (!e)
        return km_fail(err, KM_ENOMEM, "out of memory for an embedding model");
    struct eng_load_params p;
    eng_load_params_default(&p);
    p.path = path;
    p.n_threads = n_threads;
    p.n_slots = 1; /* no generation here: one sequence's worth of buffers */
    int rc = eng_model_open(&p, &e->m, err);
    if (rc == KM_OK)
        rc = check_embed_model(e, path, name, err);
    if (rc != KM_OK) {
        rag_embedder_free(e);
        return rc;
    }
    *out = e;
    return KM_OK;
}

void rag_embedder_free(struct rag_embedder *e)
{
    if (!e)
        return;
    eng_model_close(e->m);
    pthread_mutex_destroy(&e->mu);
    km_free(e->url);
    km_free(e->api_key);
    km_free(e);
}

int rag_embedder_hash(int dim, struct rag_embedder **out, struct km_err *err)
{
    *out = NULL;
    if (dim < 1 || dim > RAG_MAX_DIM)
        return km_fail(err, KM_EINVAL, "hash embeddings need 1..%d dimensions (got %d)",
                       RAG_MAX_DIM, dim);
    struct rag_embedder *e = embedder_new();
    if (!e)
        return km_fail(err, KM_ENOMEM, "out of memory for an embedder");
    e->hash = true;
    e->n_embd = dim;
    snprintf(e->name, sizeof e->name, "hash-%d", dim);
    *out = e;
    return KM_OK;
}

const char *rag_embedder_model(const struct rag_embedder *e)
{
    return e && (e->m || e->hash) ? e->name : NULL;
}

long rag_embedder_truncated(const struct rag_embedder *e)
{
    if (!e || !e->m)
        return 0;
    pthread_mutex_lock((pthread_mutex_t *)&e->mu);
    long n = e->truncated;
    pthread_mutex_unlock((pthread_mutex_t *)&e->mu);
    return n;
}

/* A unit vector seeded by the text's FNV-1a hash (xorshift64, uniform in
 * [-1, 1) per element): equal texts, equal vectors; no meaning. */
static void hash_vector(const char *text, float *v, int dim)
{
    uint64_t h = 1469598103934665603ull;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++)
        h = (h ^ *p) * 1099511628211ull;
    h |= 1;
    double norm = 0;
    for (int j = 0; j < dim; j++) {
        h ^= h << 13;
        h ^= h >> 7;
        h ^= h << 17;
        v[j] = (float)((double)(h >> 11) / 4503599627370496.0 - 1.0);
        norm += (double)v[j] * v[j];
    }
    float inv = norm > 0 ? (float)(1.0 / sqrt(norm)) : 0.0f;
    for (int j = 0; j < dim; j++)
        v[j] *= inv;
}

static int run_hash(const struct rag_embedder *e, const char *const *texts, size_t n,
                    float **vecs, int *dim, struct km_err *err)
{
    float *out = km_calloc(n * (size_t)e->n_embd, sizeof *out);
    if (!out)
        return km_fail(err, KM_ENOMEM, "out of memory for %zu embeddings", n);
    for (size_t i = 0; i < n; i++)
        hash_vector(texts[i], out + i * (size_t)e->n_embd, e->n_embd);
    *vecs = out;
    *dim = e->n_embd;
    return KM_OK;
}

/* The framed token ids of one text, cut to the context. */
static int text_ids(struct rag_embedder *e, const char *text, int32_t **ids, size_t *n,
                    struct km_err *err)
{
    int rc = eng_tokenize(e->m, text, strlen(text), true, false, ids, n, err);
    if (rc != KM_OK || *n <= (size_t)e->n_ctx)
        return rc;
    if (e->n_ctx >= 2)
        (*ids)[e->n_ctx - 1] = (*ids)[*n - 1]; /* keep the closing [SEP] */
    *n = (size_t)e->n_ctx;
    e->truncated++;
    return KM_OK;
}

static int run_local(struct rag_embedder *e, const char *const *texts, size_t n,
                     float **vecs, int *dim, struct km_err *err)
{
    int32_t **ids = km_calloc(n, sizeof *ids);
    size_t *n_ids = km_calloc(n, sizeof *n_ids);
    float *out = km_calloc(n * (size_t)e->n_embd, sizeof *out);
    int rc = ids && n_ids && out ? KM_OK
             : km_fail(err, KM_ENOMEM, "out of memory for %zu embeddings", n);
    for (size_t i = 0; rc == KM_OK && i < n; i++)
        rc = text_ids(e, texts[i], &ids[i], &n_ids[i], err);
    if (rc == KM_OK)
        rc = eng_embed(e->m, (const int32_t *const *)ids, n_ids, n, out, err);
    for (size_t i = 0; ids && i < n; i++)
        km_free(ids[i]);
    km_free(ids);
    km_free(n_ids);
    if (rc != KM_OK) {
        km_free(out);
        return rc;
    }
    *vecs = out;
    *dim = e->n_embd;
    return KM_OK;
}

int rag_embedder_run(struct rag_embedder *e, const char *model,
                     const char *const *texts, size_t n, float **vecs, int *dim,
                     struct km_err *err)
{
    *vecs = NULL;
    *dim = 0;
    if (e->hash)
        return n == 0 ? KM_OK : run_hash(e, texts, n, vecs, dim, err);
    if (!e->m)
        return rag_embed(e->url, model, e->api_key, texts, n, vecs, dim, err);
    if (n == 0)
        return KM_OK;
    pthread_mutex_lock(&e->mu);
    int rc = run_local(e, texts, n, vecs, dim, err);
    pthread_mutex_unlock(&e->mu);
    return rc;
}
