/* server.c - server lifecycle: creation from a config, the backend registry
 * and its cached model table, the ticker thread (keep-alive comments,
 * request timeouts, client-disconnect checks, freeing orphaned calls), and
 * the drain on shutdown. */
#include "server/server_int.h"

#include "base/mem.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define MAX_MODELS 256
#define MODELS_TTL 1.0 /* seconds a model table may be reused */
#define TICK_NS 100000000L

double srv__now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

double srv__wall(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static _Thread_local uint64_t rng_state;

static uint64_t next_random(void)
{
    if (rng_state == 0) {
        if (getrandom(&rng_state, sizeof rng_state, 0) != sizeof rng_state)
            rng_state = (uint64_t)srv__wall() * 0x9E3779B97F4A7C15ull;
        rng_state |= 1;
    }
    rng_state ^= rng_state << 13; /* xorshift64 */
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state * 0x2545F4914F6CDD1Dull;
}

void srv__random_hex(char out[33])
{
    static const char hex[] = "0123456789abcdef";
    uint64_t a = next_random(), b = next_random();
    for (int i = 0; i < 16; i++) {
        out[i] = hex[(a >> (i * 4)) & 15];
        out[16 + i] = hex[(b >> (i * 4)) & 15];
    }
    out[32] = '\0';
}

/* ---------------- config copy ---------------- */

static int copy_config(struct srv_config *dst, const struct srv_config *src,
                       struct km_err *err)
{
    /* Shallow copy, then own copies of the strings the server uses. */
    memcpy(dst, src, sizeof *dst);
    dst->host = km_strdup(src->host ? src->host : "127.0.0.1");
    dst->api_key_file = NULL;
    dst->log_format = km_strdup(src->log_format ? src->log_format : "text");
    dst->log_level = km_strdup(src->log_level ? src->log_level : "info");
    dst->database_url = NULL;
    dst->chat_template = NULL;
    dst->config_file = NULL;
    struct srv_strlist *lists[] = {&dst->api_keys, &dst->cors_origins,
                                   &dst->models, &dst->served_names,
                                   &dst->upstreams};
    const struct srv_strlist *from[] = {&src->api_keys, &src->cors_origins,
                                        &src->models, &src->served_names,
                                        &src->upstreams};
    for (size_t k = 0; k < 5; k++) {
        lists[k]->v = NULL;
        lists[k]->n = 0;
        for (size_t i = 0; i < from[k]->n; i++) {
            char **v = km_realloc(lists[k]->v, (i + 1) * sizeof *v);
            if (!v)
                return km_fail(err, KM_ENOMEM, "server config: out of memory");
            lists[k]->v = v;
            v[i] = km_strdup(from[k]->v[i]);
            lists[k]->n = i + 1;
            if (!v[i])
                return km_fail(err, KM_ENOMEM, "server config: out of memory");
        }
    }
    if (!dst->host || !dst->log_format || !dst->log_level)
        return km_fail(err, KM_ENOMEM, "server config: out of memory");
    return KM_OK;
}

/* ---------------- model table ---------------- */

struct srv_model_table {
    struct srv_model_info info[MAX_MODELS];
    int be[MAX_MODELS];
    size_t n;
};


static struct srv_model_table *tables_of(struct srv_server *s)
{
    return s->mtab;
}

/* Under s->mu: rebuild the table and the /v1/models JSON when stale. */
static int refresh_models(struct srv_server *s)
{
    double now = srv__now();
    if (!atomic_load(&s->models_dirty) && s->models_json &&
        now - s->models_built < MODELS_TTL)
        return KM_OK;
    struct srv_model_table *t = tables_of(s);
    t->n = 0;
    int nb = atomic_load(&s->n_backends);
    for (int b = 0; b < nb && t->n < MAX_MODELS; b++) {
        struct srv_backend *be = &s->backends[b].be;
        size_t got = be->ops->list_models(be->impl, t->info + t->n,
                                          MAX_MODELS - t->n);
        if (got > MAX_MODELS - t->n)
            got = MAX_MODELS - t->n;
        for (size_t i = 0; i < got; i++)
            t->be[t->n + i] = b;
        t->n += got;
    }
    json_t *j = srv__render_models(t->info, t->n);
    char *s_json = j ? json_dumps(j, JSON_COMPACT) : NULL;
    if (j)
        json_decref(j);
    if (!s_json)
        return KM_ENOMEM;
    km_free(s->models_json);
    s->models_len = strlen(s_json);
    s->models_json = km_strndup(s_json, s->models_len);
    free(s_json);
    if (!s->models_json)
        return KM_ENOMEM;
    s->models_built = now;
    atomic_store(&s->models_dirty, 0);
    return KM_OK;
}

int srv__models_json(struct srv_server *s, struct km_buf *out)
{
    pthread_mutex_lock(&s->mu);
    int rc = refresh_models(s);
    if (!rc)
        rc = km_buf_append(out, s->models_json, s->models_len);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

struct srv_backend *srv__find_model(struct srv_server *s, const char *model,
                                    struct srv_model_info *info)
{
    struct srv_backend *found = NULL;
    pthread_mutex_lock(&s->mu);
    if (refresh_models(s) == KM_OK) {
        struct srv_model_table *t = tables_of(s);
        for (size_t i = 0; i < t->n && !found; i++) {
            if (strcmp(t->info[i].id, model) == 0) {
                *info = t->info[i];
                found = &s->backends[t->be[i]].be;
            }
        }
    }
    pthread_mutex_unlock(&s->mu);
    return found;
}

bool srv__default_model(struct srv_server *s, enum srv_task task, char *out,
                        size_t cap)
{
    int count = 0;
    pthread_mutex_lock(&s->mu);
    if (refresh_models(s) == KM_OK) {
        struct srv_model_table *t = tables_of(s);
        for (size_t i = 0; i < t->n; i++) {
            if (t->info[i].task != task)
                continue;
            if (count++ == 0)
                snprintf(out, cap, "%s", t->info[i].id);
        }
    }
    pthread_mutex_unlock(&s->mu);
    return count == 1;
}

bool srv__model_at(struct srv_server *s, int i, char *out, size_t cap)
{
    bool ok = false;
    pthread_mutex_lock(&s->mu);
    if (refresh_models(s) == KM_OK && i >= 0 && (size_t)i < tables_of(s)->n) {
        snprintf(out, cap, "%s", tables_of(s)->info[i].id);
        ok = true;
    }
    pthread_mutex_unlock(&s->mu);
    return ok;
}

int srv__health(struct srv_server *s, double *progress)
{
    int nb = atomic_load(&s->n_backends);
    int loading = 0;
    double p = 1;
    for (int b = 0; b < nb; b++) {
        struct srv_backend *be = &s->backends[b].be;
        double bp = 1;
        if (be->ops->health && be->ops->health(be->impl, &bp) != 0) {
            loading = 1;
            if (!(bp >= 0))
                bp = 0;
            p = fmin(p, fmin(bp, 1));
        }
    }
    *progress = loading ? p : 1;
    return loading;
}

/* ---------------- lifecycle ---------------- */

int srv_server_new(const struct srv_config *cfg, struct srv_server **out,
                   struct km_err *err)
{
    *out = NULL;
    struct srv_server *s = km_calloc(1, sizeof *s);
    if (!s)
        return km_fail(err, KM_ENOMEM, "server: out of memory");
    int rc = KM_ENOMEM;
    pthread_mutex_init(&s->mu, NULL);
    s->mtab = km_calloc(1, sizeof *s->mtab);
    s->metrics = srv__metrics_new();
    if (!s->mtab || !s->metrics) {
        km_fail(err, KM_ENOMEM, "server: out of memory");
        goto fail;
    }
    rc = copy_config(&s->cfg, cfg, err);
    if (!rc)
        rc = srv__auth_init(&s->auth, &s->cfg.api_keys, err);
    if (rc)
        goto fail;
    srv__limits_init(&s->limits, s->cfg.max_concurrent, s->cfg.max_queue);
    atomic_store(&s->models_dirty, 1);
    s->access_log = !strcmp(s->cfg.log_level, "debug") ||
                    !strcmp(s->cfg.log_level, "info");
    s->created = srv__wall();
    *out = s;
    return KM_OK;
fail:
    km_free(s->mtab);
    srv__metrics_free(s->metrics);
    srv__auth_free(&s->auth);
    srv_config_free(&s->cfg);
    pthread_mutex_destroy(&s->mu);
    km_free(s);
    return rc;
}

int srv_server_add_backend(struct srv_server *s, struct srv_backend b,
                           struct km_err *err)
{
    if (!b.ops || !b.ops->list_models || !b.ops->submit || !b.ops->cancel ||
        !b.ops->release)
        return km_fail(err, KM_EINVAL, "backend %s: list_models, submit, "
                       "cancel and release are required",
                       b.ops && b.ops->kind ? b.ops->kind : "?");
    pthread_mutex_lock(&s->mu);
    int n = atomic_load(&s->n_backends);
    if (n >= SRV_MAX_BACKENDS) {
        pthread_mutex_unlock(&s->mu);
        return km_fail(err, KM_ERANGE, "backend %s: at most %d backends",
                       b.ops->kind, SRV_MAX_BACKENDS);
    }
    s->backends[n].be = b;
    atomic_store(&s->n_backends, n + 1); /* published after the entry */
    atomic_store(&s->models_dirty, 1);
    pthread_mutex_unlock(&s->mu);
    return KM_OK;
}

void srv_server_models_changed(struct srv_server *s)
{
    atomic_store(&s->models_dirty, 1);
}

int srv_server_port(const struct srv_server *s)
{
    return s->port;
}

long srv_server_inflight(const struct srv_server *s)
{
    return atomic_load(&s->inflight);
}

/* One pass over the listed calls; orphans are freed outside the lock. */
static void tick_once(struct srv_server *s)
{
    struct srv_call *reap = NULL;
    double now = srv__now();
    pthread_mutex_lock(&s->mu);
    struct srv_call *c = s->calls;
    while (c) {
        struct srv_call *next = c->next;
        if (srv__call_tick(c, now)) {
            c->qnext = reap;
            reap = c;
        }
        c = next;
    }
    pthread_mutex_unlock(&s->mu);
    while (reap) {
        struct srv_call *next = reap->qnext;
        if (reap->job)
            reap->be->ops->release(reap->be->impl, reap->job);
        srv__call_free(reap);
        reap = next;
    }
}

static void *ticker_main(void *arg)
{
    struct srv_server *s = arg;
    struct timespec ts = {0, TICK_NS};
    while (!atomic_load(&s->stopping)) {
        nanosleep(&ts, NULL);
        tick_once(s);
    }
    return NULL;
}

int srv_server_start(struct srv_server *s, struct km_err *err)
{
    int rc = srv__http_start(s, err);
    if (rc)
        return rc;
    if (pthread_create(&s->ticker, NULL, ticker_main, s) != 0) {
        srv__http_stop(s);
        return km_fail(err, KM_ENOMEM, "server: cannot start the ticker thread");
    }
    s->ticker_started = true;
    return KM_OK;
}

/* Cancel every running job (drain deadline passed). */
static void cancel_all(struct srv_server *s)
{
    pthread_mutex_lock(&s->mu);
    for (struct srv_call *c = s->calls; c; c = c->next) {
        pthread_mutex_lock(&c->mu);
        bool cancel = c->job && !c->terminal && !c->canceled;
        if (cancel)
            c->canceled = true;
        struct srv_job *job = c->job;
        pthread_mutex_unlock(&c->mu);
        if (cancel)
            c->be->ops->cancel(c->be->impl, job);
        if (c->st == SRV_C_QUEUED && srv__limits_remove(&s->limits, c)) {
            pthread_mutex_lock(&c->mu);
            c->rejected = true;
            pthread_mutex_unlock(&c->mu);
            srv__call_wake(c);
        }
    }
    pthread_mutex_unlock(&s->mu);
}

static void wait_idle(struct srv_server *s, double deadline)
{
    struct timespec ts = {0, 20000000L};
    while (atomic_load(&s->inflight) > 0 && srv__now() < deadline)
        nanosleep(&ts, NULL);
}

int srv_server_drain(struct srv_server *s, double timeout)
{
    if (!s->daemon)
        return KM_OK;
    atomic_store(&s->draining, 1);
    srv__http_quiesce(s);
    wait_idle(s, srv__now() + timeout);
    int left = (int)atomic_load(&s->inflight);
    if (left > 0) {
        km_log(KM_LOG_WARN, "drain: %d request(s) still running after %g s; "
               "canceling", left, timeout);
        cancel_all(s);
        wait_idle(s, srv__now() + 5);
    }
    return left > 0 ? KM_ETIMEOUT : KM_OK;
}

void srv_server_free(struct srv_server *s)
{
    if (!s)
        return;
    if (s->daemon) {
        cancel_all(s);
        wait_idle(s, srv__now() + 5);
        srv__http_stop(s);
    }
    atomic_store(&s->stopping, 1);
    if (s->ticker_started)
        pthread_join(s->ticker, NULL);
    tick_once(s); /* free orphans whose jobs have ended */
    int nb = atomic_load(&s->n_backends);
    for (int b = 0; b < nb; b++)
        if (s->backends[b].be.ops->destroy)
            s->backends[b].be.ops->destroy(s->backends[b].be.impl);
    km_free(s->models_json);
    km_free(s->mtab);
    srv__metrics_free(s->metrics);
    srv__auth_free(&s->auth);
    srv__limits_destroy(&s->limits);
    srv_config_free(&s->cfg);
    pthread_mutex_destroy(&s->mu);
    km_free(s);
}
