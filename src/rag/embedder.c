/* embedder.c - where ingest and query get their vectors: an OpenAI-compatible
 * endpoint (embed_client.c) or the local engine (engine.h: eng_tokenize and
 * eng_embed on the calling thread). See rag.h for the contract.
 *
 * The local path frames each text as the server's /v1/embeddings does
 * ([CLS] .. [SEP] from eng_tokenize with add_special), so a chunk embedded
 * here and the same text sent to `serve --model FILE` give the same vector.
 * A text over the model's context is cut to its first n_ctx-1 tokens plus
 * the closing [SEP] instead of failing the whole document.
 */
#include "rag/rag.h"

#include "base/mem.h"
#include "engine/engine.h"

#include <stdio.h>
#include <string.h>

struct rag_embedder {
    char *url;              /* HTTP */
    char *api_key;          /* HTTP; NULL = none */
    struct eng_model *m;    /* local */
    char name[256];         /* local: the model name recorded */
    int n_ctx, n_embd;      /* local */
    long truncated;         /* local: inputs cut to n_ctx */
};

int rag_embedder_http(const char *url, const char *api_key,
                      struct rag_embedder **out, struct km_err *err)
{
    *out = NULL;
    struct rag_embedder *e = km_calloc(1, sizeof *e);
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
    struct rag_embedder *e = km_calloc(1, sizeof *e);
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
    km_free(e->url);
    km_free(e->api_key);
    km_free(e);
}

const char *rag_embedder_model(const struct rag_embedder *e)
{
    return e && e->m ? e->name : NULL;
}

long rag_embedder_truncated(const struct rag_embedder *e)
{
    return e ? e->truncated : 0;
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
    if (!e->m)
        return rag_embed(e->url, model, e->api_key, texts, n, vecs, dim, err);
    if (n == 0)
        return KM_OK;
    return run_local(e, texts, n, vecs, dim, err);
}
