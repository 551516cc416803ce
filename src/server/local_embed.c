/* local_embed.c - /v1/embeddings jobs of the local backend (see
 * local_embed.h). */
#include "server/local_embed.h"

#include "base/mem.h"
#include "engine/gguf.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

struct local_embed {
    struct eng_model *m;
    const struct srv_sink *sink;
    size_t n;                  /* inputs */
    int32_t **ids;             /* [n] owned token arrays */
    size_t *n_ids;             /* [n] */
    int n_embd;
    int dims;                  /* output dimension (<= n_embd) */
    long prompt_tokens;
    pthread_t thread;
    bool started;
};

enum srv_task local_embed_file_task(const char *path)
{
    struct gguf_file *g = NULL;
    struct km_err err;
    const char *arch = NULL;
    enum srv_task t = SRV_TASK_GENERATE;
    if (gguf_open(path, &g, &err) != KM_OK)
        return t;
    if (gguf_get_str(g, "general.architecture", &arch, NULL, &err) == KM_OK &&
        (strcmp(arch, "bert") == 0 || strcmp(arch, "nomic-bert") == 0))
        t = SRV_TASK_EMBED;
    gguf_close(g);
    return t;
}

void local_embed_free(struct local_embed *e)
{
    if (!e)
        return;
    if (e->started)
        pthread_join(e->thread, NULL);
    for (size_t i = 0; e->ids && i < e->n; i++)
        km_free(e->ids[i]);
    km_free(e->ids);
    km_free(e->n_ids);
    km_free(e);
}

/* Tokens of input i (text framed, or ids copied), truncated to k if k >= 0. */
static int input_ids(struct local_embed *e, const struct srv_input *in, long k,
                     int32_t **ids, size_t *n, struct km_err *err)
{
    if (in->text) {
        int rc = eng_tokenize(e->m, in->text, strlen(in->text), true, false, ids, n, err);
        if (rc != KM_OK)
            return rc;
        if (k >= 2 && *n > (size_t)k) {
            (*ids)[k - 1] = (*ids)[*n - 1];   /* keep the closing [SEP] */
            *n = (size_t)k;
        } else if (k >= 0 && *n > (size_t)k) {
            *n = (size_t)k;
        }
        return KM_OK;
    }
    size_t cnt = k >= 0 && in->n_ids > (size_t)k ? (size_t)k : in->n_ids;
    *ids = km_mallocarray(cnt ? cnt : 1, sizeof **ids);
    if (!*ids)
        return km_fail(err, KM_ENOMEM, "out of memory for %zu token ids", cnt);
    memcpy(*ids, in->ids, cnt * sizeof **ids);
    *n = cnt;
    return KM_OK;
}

static int check_request(struct local_embed *e, const char *name,
                         const struct eng_model_info *info,
                         const struct srv_request *req, struct km_err *err)
{
    if (info->task != ENG_TASK_EMBED)
        return km_fail(err, KM_EUNSUPPORTED, "model `%s` has task `generate` (a %s "
                       "text-generation model); /v1/embeddings needs a model with task "
                       "`embed`", name, info->arch);
    if (req->n_inputs == 0)
        return km_fail(err, KM_EINVAL, "input must not be empty");
    int d = req->dimensions > 0 ? req->dimensions : info->n_embd;
    bool matryoshka = strcmp(info->arch, "nomic-bert") == 0;
    if (d != info->n_embd && matryoshka && (d < 1 || d > info->n_embd))
        return km_fail(err, KM_EINVAL, "dimensions %d is outside 1..%d for model `%s`",
                       d, info->n_embd, name);
    if (d != info->n_embd && !matryoshka)
        return km_fail(err, KM_EINVAL, "model `%s` does not support matryoshka "
                       "representation: dimensions must be %d (got %d)", name,
                       info->n_embd, d);
    if (req->truncate_prompt_tokens > info->n_ctx)
        return km_fail(err, KM_EINVAL, "truncate_prompt_tokens %ld is more than model "
                       "`%s`'s maximum of %d tokens", req->truncate_prompt_tokens,
                       name, info->n_ctx);
    e->dims = d;
    e->n_embd = info->n_embd;
    return KM_OK;
}

static int prepare(struct local_embed *e, const char *name, const struct srv_request *req,
                   int n_ctx, struct km_err *err)
{
    e->n = req->n_inputs;
    e->ids = km_calloc(e->n, sizeof *e->ids);
    e->n_ids = km_calloc(e->n, sizeof *e->n_ids);
    if (!e->ids || !e->n_ids)
        return km_fail(err, KM_ENOMEM, "out of memory for %zu inputs", e->n);
    for (size_t i = 0; i < e->n; i++) {
        int rc = input_ids(e, &req->inputs[i], req->truncate_prompt_tokens, &e->ids[i],
                           &e->n_ids[i], err);
        if (rc != KM_OK)
            return rc;
        if (e->n_ids[i] == 0)
            return km_fail(err, KM_EINVAL, "input %zu is empty (0 tokens)", i);
        if (e->n_ids[i] > (size_t)n_ctx)
            return km_fail(err, KM_ERANGE, "input %zu has %zu tokens, more than model "
                           "`%s`'s maximum of %d tokens; shorten it or pass "
                           "truncate_prompt_tokens", i, e->n_ids[i], name, n_ctx);
        e->prompt_tokens += (long)e->n_ids[i];
    }
    return KM_OK;
}

/* Cut v[0..n_embd) to d values and L2-normalize them again. */
static void cut(float *v, int d)
{
    double s = 0;
    for (int i = 0; i < d; i++)
        s += (double)v[i] * v[i];
    float inv = s > 0 ? (float)(1.0 / sqrt(s)) : 0.0f;
    for (int i = 0; i < d; i++)
        v[i] *= inv;
}

static void *embed_main(void *arg)
{
    struct local_embed *e = arg;
    const struct srv_sink *s = e->sink;
    struct km_err err;
    km_err_clear(&err);
    float *out = km_calloc(e->n * (size_t)e->n_embd, sizeof *out);
    int rc = out ? eng_embed(e->m, (const int32_t *const *)e->ids, e->n_ids, e->n, out, &err)
                 : km_fail(&err, KM_ENOMEM, "out of memory for %zu embeddings", e->n);
    for (size_t i = 0; rc == KM_OK && i < e->n; i++) {
        float *v = out + i * (size_t)e->n_embd;
        if (e->dims < e->n_embd)
            cut(v, e->dims);
        if (s->on_embedding)
            s->on_embedding(s->ud, (int)i, v, (size_t)e->dims);
    }
    km_free(out);
    if (rc == KM_OK) {
        struct srv_usage u = {.prompt_tokens = e->prompt_tokens, .completion_tokens = 0};
        s->on_done(s->ud, &u);
    } else {
        s->on_error(s->ud, 500, "InternalServerError", km_err_text(&err));
    }
    return NULL;
}

int local_embed_start(struct eng_model *m, const char *name,
                      const struct srv_request *req, const struct srv_sink *sink,
                      struct local_embed **out, struct km_err *err)
{
    *out = NULL;
    struct eng_model_info info;
    eng_model_info(m, &info);
    struct local_embed *e = km_calloc(1, sizeof *e);
    if (!e)
        return km_fail(err, KM_ENOMEM, "out of memory for an embeddings request");
    e->m = m;
    e->sink = sink;
    int rc = check_request(e, name, &info, req, err);
    rc = rc ? rc : prepare(e, name, req, info.n_ctx, err);
    if (rc == KM_OK && req->blocking) { /* the caller waits anyway: no thread */
        *out = e;
        embed_main(e);
        return KM_OK;
    }
    e->started = rc == KM_OK;   /* before the thread can finish and be released */
    if (rc == KM_OK && pthread_create(&e->thread, NULL, embed_main, e) != 0) {
        e->started = false;
        rc = km_fail(err, KM_ENOMEM, "cannot start an embeddings thread");
    }
    if (rc != KM_OK) {
        local_embed_free(e);
        return rc;
    }
    *out = e;
    return KM_OK;
}
