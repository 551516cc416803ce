/* backend_local.c - the "local" backend: the embedded engine behind the
 * server's backend interface (see backend_local.h). */
#include "server/backend_local.h"

#include "base/buf.h"
#include "base/log.h"
#include "base/mem.h"
#include "engine/engine.h"
#include "server/local_embed.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define MAX_CHOICES 16
#define TEXT_MAX ((size_t)64 << 20)

struct local_model {
    struct eng_model *m;
    char name[256];
    long long created;
    int n_ctx_hint;
    enum srv_task task;          /* from the file's architecture (local_embed.c) */
};

struct local {
    struct local_model *models;
    size_t n;
};

struct choice {
    struct srv_job *job;
    int index;
    struct eng_job *ej;
    bool echoed;
    struct km_buf tokbuf;                       /* texts of one token's logprobs */
    struct srv_top_logprob top[ENG_MAX_LOGPROBS];
};

struct srv_job {
    struct local_model *lm;
    const struct srv_sink *sink;
    int n;
    int remaining;
    long prompt_tokens;
    long completion_tokens;
    int err_code;
    char err_msg[KM_ERR_LEN];
    char *echo;                                 /* prompt text when echo */
    struct local_embed *emb;                    /* /v1/embeddings job (local_embed.c) */
    struct eng_logit_bias *bias;                /* the request's logit_bias */
    struct choice ch[MAX_CHOICES];
};

/* ---- models --------------------------------------------------------------- */

static struct local_model *find_model(struct local *l, const char *name)
{
    for (size_t i = 0; i < l->n; i++) {
        if (!name || strcmp(l->models[i].name, name) == 0)
            return &l->models[i];
    }
    return NULL;
}

static size_t lb_list_models(void *impl, struct srv_model_info *out, size_t cap)
{
    struct local *l = impl;
    for (size_t i = 0; i < l->n && i < cap; i++) {
        struct local_model *lm = &l->models[i];
        memset(&out[i], 0, sizeof out[i]);
        snprintf(out[i].id, sizeof out[i].id, "%s", lm->name);
        snprintf(out[i].owned_by, sizeof out[i].owned_by, "kanoa-mlops");
        out[i].created = lm->created;
        out[i].task = lm->task;
        out[i].max_model_len = lm->n_ctx_hint;
        if (eng_model_state(lm->m, NULL, NULL) == ENG_READY) {
            struct eng_model_info info;
            eng_model_info(lm->m, &info);
            out[i].max_model_len = info.n_ctx;
        }
    }
    return l->n;
}

static int lb_health(void *impl, double *progress)
{
    struct local *l = impl;
    double sum = 0;
    int loading = 0;
    for (size_t i = 0; i < l->n; i++) {
        double p = 1.0;
        if (eng_model_state(l->models[i].m, &p, NULL) != ENG_READY)
            loading++;
        sum += p;
    }
    if (progress)
        *progress = l->n ? sum / (double)l->n : 1.0;
    return loading ? 1 : 0;
}

static int ready_model(struct local *l, const char *name, struct local_model **out,
                       struct km_err *err)
{
    struct local_model *lm = find_model(l, name);
    if (!lm)
        return km_fail(err, KM_ENOTFOUND, "The model `%s` does not exist.", name ? name : "");
    double p = 0;
    struct km_err le;
    km_err_clear(&le);
    enum eng_state st = eng_model_state(lm->m, &p, &le);
    if (st == ENG_LOADING)
        return km_fail(err, KM_ESTATE, "model `%s` is still loading (%.0f%%)", lm->name, p * 100);
    if (st == ENG_FAILED)
        return km_fail(err, KM_ESTATE, "model `%s` failed to load: %s", lm->name,
                       km_err_text(&le));
    *out = lm;
    return KM_OK;
}

/* ---- prompts -------------------------------------------------------------- */

/* Join each message's text parts with "\n"; images are refused. */
static int message_texts(const struct local_model *lm, const struct srv_message *msgs,
                         size_t n, char **texts, struct km_err *err)
{
    for (size_t i = 0; i < n; i++) {
        struct km_buf b;
        km_buf_init(&b, TEXT_MAX);
        int rc = km_buf_reserve(&b, 1);
        for (size_t k = 0; rc == KM_OK && k < msgs[i].n_parts; k++) {
            const struct srv_part *pt = &msgs[i].parts[k];
            if (pt->kind == SRV_PART_IMAGE) {
                km_buf_free(&b);
                return km_fail(err, KM_EUNSUPPORTED, "model `%s` is a text-only model "
                               "and does not accept image content (messages[%zu]."
                               "content[%zu] is an image)", lm->name, i, k);
            }
            if (k > 0)
                rc = km_buf_putc(&b, '\n');
            rc = rc ? rc : km_buf_puts(&b, pt->text ? pt->text : "");
        }
        if (rc != KM_OK) {
            km_buf_free(&b);
            return km_fail(err, rc, "messages[%zu]: content too large", i);
        }
        texts[i] = km_buf_take(&b, NULL);
    }
    return KM_OK;
}

static int chat_ids(struct local_model *lm, const struct srv_message *msgs, size_t n,
                    bool add_gen, int32_t **ids, size_t *n_ids, struct km_err *err)
{
    char **texts = km_calloc(n ? n : 1, sizeof *texts);
    const char **roles = km_calloc(n ? n : 1, sizeof *roles);
    char *prompt = NULL;
    int rc = texts && roles ? KM_OK : km_fail(err, KM_ENOMEM, "out of memory");
    rc = rc ? rc : message_texts(lm, msgs, n, texts, err);
    for (size_t i = 0; rc == KM_OK && i < n; i++)
        roles[i] = msgs[i].role ? msgs[i].role : "user";
    rc = rc ? rc : eng_chat_prompt(lm->m, roles, (const char *const *)texts, n, add_gen,
                                   &prompt, err);
    rc = rc ? rc : eng_tokenize(lm->m, prompt, strlen(prompt), false, true, ids, n_ids, err);
    for (size_t i = 0; texts && i < n; i++)
        km_free(texts[i]);
    km_free(texts);
    km_free(roles);
    km_free(prompt);
    return rc;
}

static int prompt_ids(struct local_model *lm, const struct srv_request *req,
                      int32_t **ids, size_t *n_ids, struct km_err *err)
{
    if (req->ep == SRV_EP_CHAT)
        return chat_ids(lm, req->messages, req->n_messages, req->add_generation_prompt,
                        ids, n_ids, err);
    if (req->n_inputs != 1)
        return km_fail(err, KM_EUNSUPPORTED, "model `%s` takes one prompt per request "
                       "(got %zu)", lm->name, req->n_inputs);
    const struct srv_input *in = &req->inputs[0];
    if (in->text)
        return eng_tokenize(lm->m, in->text, strlen(in->text), true, true, ids, n_ids, err);
    *ids = km_mallocarray(in->n_ids ? in->n_ids : 1, sizeof **ids);
    if (!*ids)
        return km_fail(err, KM_ENOMEM, "out of memory for %zu prompt ids", in->n_ids);
    memcpy(*ids, in->ids, in->n_ids * sizeof **ids);
    *n_ids = in->n_ids;
    return KM_OK;
}

/* ---- engine callbacks -------------------------------------------------------- */

static void send_echo(struct choice *c)
{
    struct srv_job *j = c->job;
    if (c->echoed || !j->echo)
        return;
    c->echoed = true;
    j->sink->on_text(j->sink->ud, c->index, j->echo, strlen(j->echo), NULL);
}

/* Build the OpenAI logprobs view of one token (texts in c->tokbuf). */
static void fill_logprobs(struct choice *c, int32_t id, const char *piece, size_t plen,
                          const struct eng_sample_out *o, struct srv_logprobs *lp)
{
    struct local_model *lm = c->job->lm;
    size_t off[ENG_MAX_LOGPROBS + 1];
    km_buf_reset(&c->tokbuf);
    for (int i = 0; i < o->n_top; i++) {
        off[i] = c->tokbuf.len;
        if (eng_token_bytes(lm->m, o->top[i].id, &c->tokbuf, NULL) != KM_OK)
            c->tokbuf.len = off[i];
    }
    off[o->n_top] = c->tokbuf.len;
    const char *base = km_buf_str(&c->tokbuf);
    for (int i = 0; i < o->n_top; i++) {
        c->top[i] = (struct srv_top_logprob){
            .token = base + off[i], .token_len = off[i + 1] - off[i],
            .id = o->top[i].id, .logprob = o->top[i].logprob,
        };
    }
    *lp = (struct srv_logprobs){
        .token = piece, .token_len = plen, .id = id, .logprob = o->logprob,
        .top = c->top, .n_top = (size_t)o->n_top,
    };
}

static void on_token(void *ud, const char *text, size_t len, int32_t id,
                     const char *piece, size_t piece_len, const struct eng_sample_out *o)
{
    struct choice *c = ud;
    struct srv_job *j = c->job;
    send_echo(c);
    if (!o || id < 0) {
        if (len > 0 || id >= 0)
            j->sink->on_text(j->sink->ud, c->index, text, len, NULL);
        return;
    }
    struct srv_logprobs lp;
    fill_logprobs(c, id, piece, piece_len, o, &lp);
    j->sink->on_text(j->sink->ud, c->index, text, len, &lp);
}

static void choice_ended(struct srv_job *j)
{
    if (--j->remaining > 0)
        return;
    if (j->err_code) {
        j->sink->on_error(j->sink->ud, j->err_code == KM_ENOMEM ? 503 : 500,
                          "server_error", j->err_msg);
        return;
    }
    struct srv_usage u = {j->prompt_tokens, j->completion_tokens};
    j->sink->on_done(j->sink->ud, &u);
}

static void on_done(void *ud, const char *reason, long prompt_tokens, long completion_tokens)
{
    struct choice *c = ud;
    struct srv_job *j = c->job;
    send_echo(c);
    j->prompt_tokens = prompt_tokens;
    j->completion_tokens += completion_tokens;
    j->sink->on_finish(j->sink->ud, c->index, reason);
    choice_ended(j);
}

static void on_error(void *ud, int code, const char *msg)
{
    struct choice *c = ud;
    struct srv_job *j = c->job;
    if (!j->err_code) {
        j->err_code = code;
        snprintf(j->err_msg, sizeof j->err_msg, "%s", msg);
    }
    choice_ended(j);
}

/* ---- submit / cancel / release -------------------------------------------------- */

static uint64_t fresh_seed(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    static _Atomic uint64_t counter;
    return (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^ (counter++ * 0x9E3779B97F4A7C15ull);
}

static void gen_params(const struct srv_sampling *s, struct eng_gen_params *g)
{
    memset(g, 0, sizeof *g);
    eng_sample_defaults(&g->sample);
    g->sample.temperature = (float)s->temperature;
    g->sample.top_p = (float)s->top_p;
    g->sample.top_k = s->top_k;
    g->sample.min_p = (float)s->min_p;
    g->sample.repetition_penalty = (float)s->repetition_penalty;
    g->sample.frequency_penalty = (float)s->frequency_penalty;
    g->sample.presence_penalty = (float)s->presence_penalty;
    g->sample.seed = s->has_seed ? s->seed : fresh_seed();
    g->sample.n_logprobs = s->logprobs;
    g->max_tokens = s->max_tokens;
    g->min_tokens = s->min_tokens;
    g->ignore_eos = s->ignore_eos;
    g->stop = s->stop;
    g->n_stop = s->n_stop;
    g->stop_token_ids = s->stop_token_ids;
    g->n_stop_token_ids = s->n_stop_token_ids;
}

static void job_free(struct srv_job *j)
{
    for (int i = 0; i < MAX_CHOICES; i++) {
        eng_job_free(j->ch[i].ej);
        km_buf_free(&j->ch[i].tokbuf);
    }
    km_free(j->echo);
    local_embed_free(j->emb);
    km_free(j->bias);
    km_free(j);
}

/* Start one engine generation per choice. Validation is the same for all,
 * so only the first can fail with a request error; if a later one fails
 * (out of memory) the started ones are canceled and the job ends with
 * on_error once they have reported. */
/* The job's copy of logit_bias in the engine's form; ids must be in the
 * vocabulary (as vLLM checks). */
static int copy_bias(struct srv_job *j, const struct srv_sampling *s,
                     struct eng_gen_params *g, struct km_err *err)
{
    if (s->n_logit_bias == 0)
        return KM_OK;
    struct eng_model_info info;
    eng_model_info(j->lm->m, &info);
    j->bias = km_calloc(s->n_logit_bias, sizeof *j->bias);
    if (!j->bias)
        return km_fail(err, KM_ENOMEM, "out of memory for logit_bias");
    for (size_t i = 0; i < s->n_logit_bias; i++) {
        if (s->logit_bias[i].id >= info.n_vocab)
            return km_fail(err, KM_EINVAL, "logit_bias token id %d is outside "
                           "the vocabulary of `%s` (0..%d)", (int)s->logit_bias[i].id,
                           j->lm->name, info.n_vocab - 1);
        j->bias[i] = (struct eng_logit_bias){s->logit_bias[i].id, s->logit_bias[i].bias};
    }
    g->sample.bias = j->bias;
    g->sample.n_bias = s->n_logit_bias;
    return KM_OK;
}

static int start_choices(struct srv_job *j, const int32_t *ids, size_t n_ids,
                         const struct srv_request *req, struct km_err *err)
{
    struct eng_gen_params g;
    gen_params(&req->sampling, &g);
    int brc = copy_bias(j, &req->sampling, &g, err);
    if (brc != KM_OK)
        return brc;
    uint64_t seed = g.sample.seed;
    j->remaining = j->n;
    for (int i = 0; i < j->n; i++) {
        struct choice *c = &j->ch[i];
        c->job = j;
        c->index = i;
        g.sample.seed = seed + (uint64_t)i;
        struct eng_callbacks cb = {c, on_token, on_done, on_error};
        struct km_err e2;
        int rc = eng_generate(j->lm->m, ids, n_ids, &g, &cb, &c->ej, i ? &e2 : err);
        if (rc != KM_OK && i == 0)
            return rc;
        if (rc != KM_OK) {
            j->n = j->remaining = i;
            j->err_code = rc;
            snprintf(j->err_msg, sizeof j->err_msg, "%s", km_err_text(&e2));
            for (int k = 0; k < i; k++)
                eng_cancel(j->ch[k].ej);
            return KM_OK;
        }
    }
    return KM_OK;
}

/* /v1/embeddings (or a generation request to an embedding model). */
static int embed_submit(struct local_model *lm, const struct srv_request *req,
                        const struct srv_sink *sink, struct srv_job **job,
                        struct km_err *err)
{
    if (req->ep != SRV_EP_EMBEDDING)
        return km_fail(err, KM_EUNSUPPORTED, "model `%s` has task `embed`; use "
                       "/v1/embeddings", lm->name);
    struct srv_job *j = km_calloc(1, sizeof *j);
    if (!j)
        return km_fail(err, KM_ENOMEM, "out of memory for a request");
    j->lm = lm;
    j->sink = sink;
    int rc = local_embed_start(lm->m, lm->name, req, sink, &j->emb, err);
    if (rc != KM_OK) {
        km_free(j);
        return rc;
    }
    *job = j;
    return KM_OK;
}

static int lb_submit(void *impl, const struct srv_request *req,
                     const struct srv_sink *sink, struct srv_job **job,
                     struct km_err *err)
{
    *job = NULL;
    struct local_model *lm;
    int rc = ready_model(impl, req->model, &lm, err);
    if (rc != KM_OK)
        return rc;
    if (req->ep == SRV_EP_EMBEDDING || lm->task == SRV_TASK_EMBED)
        return embed_submit(lm, req, sink, job, err);
    int n = req->n > 0 ? req->n : 1;
    if (n > MAX_CHOICES)
        return km_fail(err, KM_EINVAL, "n = %d is more than the %d choices supported",
                       n, MAX_CHOICES);
    int32_t *ids = NULL;
    size_t n_ids = 0;
    rc = prompt_ids(lm, req, &ids, &n_ids, err);
    struct srv_job *j = rc ? NULL : km_calloc(1, sizeof *j);
    if (rc == KM_OK && !j)
        rc = km_fail(err, KM_ENOMEM, "out of memory for a request");
    if (rc == KM_OK) {
        j->lm = lm;
        j->sink = sink;
        j->n = n;
        for (int i = 0; i < MAX_CHOICES; i++)
            km_buf_init(&j->ch[i].tokbuf, 1 << 20);
        if (req->sampling.echo && req->ep == SRV_EP_COMPLETION)
            rc = eng_detokenize(lm->m, ids, n_ids, &j->echo, NULL, err);
    }
    rc = rc ? rc : start_choices(j, ids, n_ids, req, err);
    km_free(ids);
    if (rc != KM_OK) {
        if (j)
            job_free(j);
        return rc;
    }
    *job = j;
    return KM_OK;
}

static void lb_cancel(void *impl, struct srv_job *job)
{
    for (int i = 0; job && i < job->n; i++)
        eng_cancel(job->ch[i].ej);
}

static void lb_release(void *impl, struct srv_job *job)
{
    if (job)
        job_free(job);
}

static int lb_tokenize(void *impl, const char *model, const char *text,
                       const struct srv_message *messages, size_t n_messages,
                       bool add_special, bool add_generation_prompt,
                       int32_t **ids, size_t *n_ids, struct km_err *err)
{
    struct local_model *lm;
    int rc = ready_model(impl, model, &lm, err);
    if (rc != KM_OK)
        return rc;
    if (messages)
        return chat_ids(lm, messages, n_messages, add_generation_prompt, ids, n_ids, err);
    return eng_tokenize(lm->m, text ? text : "", text ? strlen(text) : 0, add_special,
                        true, ids, n_ids, err);
}

static int lb_detokenize(void *impl, const char *model, const int32_t *ids,
                         size_t n_ids, char **text, struct km_err *err)
{
    struct local_model *lm;
    int rc = ready_model(impl, model, &lm, err);
    return rc ? rc : eng_detokenize(lm->m, ids, n_ids, text, NULL, err);
}

static double lb_kv_cache_usage(void *impl, const char *model)
{
    struct local_model *lm = find_model(impl, model);
    if (!lm || eng_model_state(lm->m, NULL, NULL) != ENG_READY)
        return 0;
    struct eng_stats st;
    eng_model_stats(lm->m, &st);
    return st.kv_usage;
}

static void lb_destroy(void *impl)
{
    struct local *l = impl;
    for (size_t i = 0; l && i < l->n; i++)
        eng_model_close(l->models[i].m);
    if (l)
        km_free(l->models);
    km_free(l);
}

static const struct srv_backend_ops local_ops = {
    .kind = "local",
    .list_models = lb_list_models,
    .health = lb_health,
    .submit = lb_submit,
    .cancel = lb_cancel,
    .release = lb_release,
    .tokenize = lb_tokenize,
    .detokenize = lb_detokenize,
    .kv_cache_usage = lb_kv_cache_usage,
    .destroy = lb_destroy,
    .metrics = NULL,
};

/* ---- construction ----------------------------------------------------------- */

static int open_one(const struct srv_config *cfg, size_t i, struct local_model *lm,
                    struct km_err *err)
{
    const char *path = cfg->models.v[i];
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return km_fail(err, KM_ENOTFOUND, "--model %s: no such GGUF file (download one "
                       "with `kanoa-mlops pull REPO --include '*.gguf'` and pass its "
                       "path)", path);
    struct eng_load_params p;
    eng_load_params_default(&p);
    p.path = path;
    p.name = i < cfg->served_names.n ? cfg->served_names.v[i] : NULL;
    p.n_threads = (int)cfg->threads;
    p.n_ctx = (int)cfg->ctx;
    p.chat_template = cfg->chat_template;
    p.background = true;
    int rc = eng_model_open(&p, &lm->m, err);
    if (rc != KM_OK)
        return rc;
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t bl = strlen(base);
    if (p.name)
        snprintf(lm->name, sizeof lm->name, "%s", p.name);
    else
        snprintf(lm->name, sizeof lm->name, "%.*s",
                 (int)(bl > 5 && strcmp(base + bl - 5, ".gguf") == 0 ? bl - 5 : bl), base);
    lm->created = (long long)time(NULL);
    lm->n_ctx_hint = (int)cfg->ctx;
    lm->task = local_embed_file_task(path);
    return KM_OK;
}

int srv_backend_local_new(const struct srv_config *cfg, struct srv_backend *out,
                          struct km_err *err)
{
    memset(out, 0, sizeof *out);
    if (cfg->models.n == 0)
        return km_fail(err, KM_EINVAL, "local backend: no --model given");
    struct local *l = km_calloc(1, sizeof *l);
    if (l)
        l->models = km_calloc(cfg->models.n, sizeof *l->models);
    if (!l || !l->models) {
        lb_destroy(l);
        return km_fail(err, KM_ENOMEM, "local backend: out of memory");
    }
    for (size_t i = 0; i < cfg->models.n; i++) {
        int rc = open_one(cfg, i, &l->models[l->n], err);
        if (rc != KM_OK) {
            lb_destroy(l);
            return rc;
        }
        l->n++;
        km_log(KM_LOG_INFO, "serve: loading %s as `%s`", cfg->models.v[i],
               l->models[l->n - 1].name);
    }
    out->ops = &local_ops;
    out->impl = l;
    return KM_OK;
}
