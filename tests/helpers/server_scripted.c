/* server_scripted.c - the scripted test backend (see server_scripted.h). */
#include "server_scripted.h"

#include "base/mem.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct scripted {
    atomic_long submitted, canceled, released, active;
    _Atomic double loading;
};

struct srv_job {
    struct scripted *sc;
    const struct srv_request *req;
    const struct srv_sink *sink;
    pthread_t th;
    atomic_int cancel;
    char text[4096];  /* the directive source */
};

static size_t list_models(void *impl, struct srv_model_info *out, size_t cap)
{
    static const char *ids[] = {"scripted-chat", "scripted-embed"};
    for (size_t i = 0; i < 2 && i < cap; i++) {
        memset(&out[i], 0, sizeof out[i]);
        snprintf(out[i].id, sizeof out[i].id, "%s", ids[i]);
        snprintf(out[i].owned_by, sizeof out[i].owned_by, "kanoa-test");
        out[i].created = 1700000000;
        out[i].max_model_len = i == 0 ? 4096 : 512;
        out[i].task = i == 0 ? SRV_TASK_GENERATE : SRV_TASK_EMBED;
        out[i].vision = i == 0;
    }
    return 2;
}

static int health(void *impl, double *progress)
{
    struct scripted *sc = impl;
    double p = atomic_load(&sc->loading);
    *progress = p < 0 ? 1 : p;
    return p < 0 ? 0 : 1;
}

static long words(const char *s)
{
    long n = 0;
    bool in = false;
    for (; s && *s; s++) {
        bool sp = *s == ' ' || *s == '\n' || *s == '\t';
        if (!sp && !in)
            n++;
        in = !sp;
    }
    return n;
}

static long prompt_tokens(const struct srv_request *r)
{
    long n = 0;
    for (size_t i = 0; i < r->n_messages; i++)
        for (size_t j = 0; j < r->messages[i].n_parts; j++)
            n += r->messages[i].parts[j].kind == SRV_PART_TEXT
                     ? words(r->messages[i].parts[j].text) : 1;
    for (size_t i = 0; r->ep != SRV_EP_CHAT && i < r->n_inputs; i++)
        n += r->inputs[i].text ? words(r->inputs[i].text) : (long)r->inputs[i].n_ids;
    return n;
}

static long directive(const char *text, const char *name, long dflt)
{
    const char *p = strstr(text, name);
    return p ? strtol(p + strlen(name), NULL, 10) : dflt;
}

static void nap(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void emit_token(struct srv_job *j, int choice, int i, const char *piece)
{
    struct srv_top_logprob top[2] = {
        {.token = "alt", .token_len = 3, .id = 7, .logprob = -2.0f},
        {.token = "alt2", .token_len = 4, .id = 8, .logprob = -3.0f},
    };
    struct srv_logprobs lp = {.token = piece, .token_len = strlen(piece),
                              .id = i, .logprob = -0.5f * (float)(i + 1),
                              .top = top};
    int want = j->req->sampling.logprobs;
    lp.n_top = want > 2 ? 2 : (want < 0 ? 0 : (size_t)want);
    j->sink->on_text(j->sink->ud, choice, piece, strlen(piece),
                     want >= 0 ? &lp : NULL);
}

static void run_generate(struct srv_job *j)
{
    static const char *hello[] = {"Hello", ",", " world", "!"};
    const struct srv_request *r = j->req;
    long n_tok = directive(j->text, "[tokens:", 4), delay = directive(j->text, "[delay:", 0);
    long err = directive(j->text, "[error:", 0);
    bool hang = strstr(j->text, "[hang]") != NULL;
    long emitted = 0;
    for (int c = 0; c < r->n; c++) {
        long i = 0;
        for (; !hang && i < n_tok && !atomic_load(&j->cancel); i++) {
            if (r->sampling.max_tokens > 0 && i >= r->sampling.max_tokens)
                break;
            if (delay)
                nap(delay);
            char piece[32];
            if (strstr(j->text, "[tokens:"))
                snprintf(piece, sizeof piece, "t%ld ", i);
            else
                snprintf(piece, sizeof piece, "%s", hello[i % 4]);
            emit_token(j, c, (int)i, piece);
            emitted++;
            if (err) {
                j->sink->on_error(j->sink->ud, (int)err, NULL, "scripted failure");
                return;
            }
        }
        while (hang && !atomic_load(&j->cancel))
            nap(5);
        const char *fin = atomic_load(&j->cancel) ? "abort"
                          : i < n_tok ? "length" : "stop";
        j->sink->on_finish(j->sink->ud, c, fin);
    }
    struct srv_usage u = {prompt_tokens(r), emitted};
    j->sink->on_done(j->sink->ud, &u);
}

static void run_embed(struct srv_job *j)
{
    const struct srv_request *r = j->req;
    size_t dim = r->dimensions > 0 ? (size_t)r->dimensions : 4;
    float *v = km_calloc(dim, sizeof *v);
    if (!v) {
        j->sink->on_error(j->sink->ud, 500, NULL, "out of memory");
        return;
    }
    for (size_t i = 0; i < r->n_inputs; i++) {
        size_t base = r->inputs[i].text ? strlen(r->inputs[i].text) : r->inputs[i].n_ids;
        for (size_t k = 0; k < dim; k++)
            v[k] = (float)(base + k) / 10.0f;
        j->sink->on_embedding(j->sink->ud, (int)i, v, dim);
    }
    km_free(v);
    struct srv_usage u = {prompt_tokens(r), 0};
    j->sink->on_done(j->sink->ud, &u);
}

static void *worker(void *arg)
{
    struct srv_job *j = arg;
    if (j->req->ep == SRV_EP_EMBEDDING)
        run_embed(j);
    else
        run_generate(j);
    return NULL;
}

static void source_text(const struct srv_request *r, char *out, size_t cap)
{
    out[0] = '\0';
    if (r->ep == SRV_EP_CHAT && r->n_messages) {
        const struct srv_message *m = &r->messages[r->n_messages - 1];
        for (size_t i = 0; i < m->n_parts; i++)
            if (m->parts[i].kind == SRV_PART_TEXT)
                strncat(out, m->parts[i].text, cap - strlen(out) - 1);
    } else if (r->n_inputs && r->inputs[0].text) {
        snprintf(out, cap, "%s", r->inputs[0].text);
    }
}

static int submit(void *impl, const struct srv_request *req,
                  const struct srv_sink *sink, struct srv_job **out,
                  struct km_err *err)
{
    struct scripted *sc = impl;
    struct srv_job *j = km_calloc(1, sizeof *j);
    if (!j)
        return km_fail(err, KM_ENOMEM, "scripted: out of memory");
    j->sc = sc;
    j->req = req;
    j->sink = sink;
    source_text(req, j->text, sizeof j->text);
    if (strstr(j->text, "[reject]")) {
        km_free(j);
        return km_fail(err, KM_EINVAL, "scripted rejection");
    }
    atomic_fetch_add(&sc->submitted, 1);
    atomic_fetch_add(&sc->active, 1);
    if (pthread_create(&j->th, NULL, worker, j) != 0) {
        atomic_fetch_sub(&sc->active, 1);
        km_free(j);
        return km_fail(err, KM_ENOMEM, "scripted: no thread");
    }
    *out = j;
    return KM_OK;
}

static void cancel(void *impl, struct srv_job *j)
{
    struct scripted *sc = impl;
    if (!atomic_exchange(&j->cancel, 1))
        atomic_fetch_add(&sc->canceled, 1);
}

static void release(void *impl, struct srv_job *j)
{
    struct scripted *sc = impl;
    pthread_join(j->th, NULL);
    atomic_fetch_add(&sc->released, 1);
    atomic_fetch_sub(&sc->active, 1);
    km_free(j);
}

static int tokenize(void *impl, const char *model, const char *text,
                    const struct srv_message *messages, size_t n_messages,
                    bool add_special, bool add_generation_prompt,
                    int32_t **ids, size_t *n_ids, struct km_err *err)
{
    char buf[4096] = "";
    for (size_t i = 0; messages && i < n_messages; i++)
        for (size_t k = 0; k < messages[i].n_parts; k++)
            if (messages[i].parts[k].kind == SRV_PART_TEXT)
                strncat(buf, messages[i].parts[k].text, sizeof buf - strlen(buf) - 1);
    const char *s = messages ? buf : text;
    size_t n = strlen(s);
    *ids = km_calloc(n ? n : 1, sizeof **ids);
    if (!*ids)
        return km_fail(err, KM_ENOMEM, "scripted: out of memory");
    for (size_t i = 0; i < n; i++)
        (*ids)[i] = (unsigned char)s[i];
    *n_ids = n;
    return KM_OK;
}

static int detokenize(void *impl, const char *model, const int32_t *ids,
                      size_t n_ids, char **text, struct km_err *err)
{
    *text = km_malloc(n_ids + 1);
    if (!*text)
        return km_fail(err, KM_ENOMEM, "scripted: out of memory");
    for (size_t i = 0; i < n_ids; i++) {
        if (ids[i] < 1 || ids[i] > 255) {
            km_free(*text);
            *text = NULL;
            return km_fail(err, KM_EINVAL, "token id %d is not a byte", ids[i]);
        }
        (*text)[i] = (char)ids[i];
    }
    (*text)[n_ids] = '\0';
    return KM_OK;
}

static double kv_usage(void *impl, const char *model)
{
    return 0.25;
}

static void destroy(void *impl)
{
    km_free(impl);
}

static const struct srv_backend_ops ops = {
    .kind = "scripted", .list_models = list_models, .health = health,
    .submit = submit, .cancel = cancel, .release = release,
    .tokenize = tokenize, .detokenize = detokenize,
    .kv_cache_usage = kv_usage, .destroy = destroy,
};

struct srv_backend scripted_backend_new(void)
{
    struct scripted *sc = km_calloc(1, sizeof *sc);
    if (sc)
        atomic_store(&sc->loading, -1.0);
    return (struct srv_backend){.ops = &ops, .impl = sc};
}

void scripted_set_loading(struct srv_backend *b, double progress)
{
    atomic_store(&((struct scripted *)b->impl)->loading, progress);
}

void scripted_get_stats(struct srv_backend *b, struct scripted_stats *out)
{
    struct scripted *sc = b->impl;
    out->submitted = atomic_load(&sc->submitted);
    out->canceled = atomic_load(&sc->canceled);
    out->released = atomic_load(&sc->released);
    out->active = atomic_load(&sc->active);
}
