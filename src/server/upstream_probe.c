/* upstream_probe.c - the gateway's active health probes: every
 * PROBE_INTERVAL_MS the home lane asks each upstream for /health, and every
 * MODELS_REFRESH_MS (or when asked, or while a listing failed) for
 * /v1/models and /metrics too, through libcurl on the lane's multi handle.
 * A round's answers decide the upstream's health (ups__mark: /health 2xx,
 * or no /health (404) while /v1/models answers 200), its model list (the
 * notify callback when it changed), its vllm:num_requests_waiting, and,
 * for a host name, the address the own HTTP/1.1 client connects to (the
 * one libcurl reached). Home lane thread only; pool->mu for the upstreams'
 * fields.
 */
#include "server/upstream_int.h"

#include "base/mem.h"

#include <stdio.h>
#include <string.h>

enum probe_kind { PROBE_HEALTH, PROBE_MODELS, PROBE_METRICS };

struct ups_probe {
    int tag;                    /* UPS_TAG_PROBE */
    struct ups_pool *pool;
    struct ups_lane *lane;
    size_t up;
    enum probe_kind kind;
    CURL *easy;
    struct km_buf body;
    struct ups_probe *next;
};

static size_t on_probe_body(char *b, size_t size, size_t n, void *ud)
{
    struct ups_probe *pr = ud;
    return km_buf_append(&pr->body, b, size * n) == KM_OK ? size * n : 0;
}

static void probe_setup(struct ups_probe *pr, const struct ups_up *u,
                        const struct ups_options *o)
{
    static const char *const paths[] = {"/health", "/v1/models", "/metrics"};
    char url[UPS_URL_MAX + 32];
    snprintf(url, sizeof url, "%s%s", u->spec.url, paths[pr->kind]);
    CURL *e = pr->easy;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)o->probe_timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)o->probe_timeout_ms);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_probe_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, pr);
    curl_easy_setopt(e, CURLOPT_PRIVATE, pr);
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, ups__lane_close_sock);
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, pr->lane);
    if (u->auth[0]) {
        /* u->auth is "Authorization: Bearer KEY" */
        curl_easy_setopt(e, CURLOPT_XOAUTH2_BEARER, u->auth + 22);
        curl_easy_setopt(e, CURLOPT_HTTPAUTH, (long)CURLAUTH_BEARER);
    }
}

static void probe_free(struct ups_pool *p, struct ups_probe *pr)
{
    struct ups_probe **pp = &p->probes;
    while (*pp && *pp != pr)
        pp = &(*pp)->next;
    if (*pp)
        *pp = pr->next;
    curl_multi_remove_handle(pr->lane->multi, pr->easy);
    curl_easy_cleanup(pr->easy);
    km_buf_free(&pr->body);
    km_free(pr);
    atomic_fetch_sub(&p->live, 1);
    p->probes_out--;
}

static void probe_start(struct ups_pool *p, size_t up, enum probe_kind kind)
{
    struct ups_probe *pr = km_calloc(1, sizeof *pr);
    if (!pr)
        return;
    pr->tag = UPS_TAG_PROBE;
    pr->pool = p;
    pr->lane = p->home;
    pr->up = up;
    pr->kind = kind;
    km_buf_init(&pr->body, kind == PROBE_METRICS ? (8u << 20) : (1u << 20));
    pr->easy = curl_easy_init();
    if (!pr->easy) {
        km_free(pr);
        return;
    }
    probe_setup(pr, &p->ups[up], &p->opt);
    atomic_fetch_add(&p->live, 1);
    p->probes_out++;
    pr->next = p->probes;
    p->probes = pr;
    if (curl_multi_add_handle(p->home->multi, pr->easy) != CURLM_OK) {
        probe_free(p, pr);      /* this round goes without it */
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->ups[up].round_pending++;
    pthread_mutex_unlock(&p->mu);
}

static bool same_models(const struct ups_up *u, const struct srv_model_info *m,
                        size_t n)
{
    if (n != u->n_models)
        return false;
    for (size_t i = 0; i < n; i++)
        if (strcmp(m[i].id, u->models[i].id) != 0)
            return false;
    return true;
}

/* Called with p->mu held; returns true when the model set changed. */
static bool probe_models(struct ups_up *u, struct ups_probe *pr, long code)
{
    struct srv_model_info tmp[64];
    struct km_err err = {0};
    int n = -1;
    if (code == 200)
        n = ups_parse_models(km_buf_str(&pr->body), pr->body.len, tmp, 64, &err);
    u->models_ok = n >= 0;
    if (n < 0)
        return false;
    bool changed = !same_models(u, tmp, (size_t)n);
    struct srv_model_info *m = km_mallocarray(n ? (size_t)n : 1, sizeof *m);
    if (!m)
        return false;
    memcpy(m, tmp, (size_t)n * sizeof *m);
    km_free(u->models);
    u->models = m;
    u->n_models = (size_t)n;
    return changed;
}

/* Called with p->mu held: record one probe's answer; returns true when it
 * was the last of its upstream's round. *changed: the model set changed. */
static bool probe_result(struct ups_pool *p, struct ups_probe *pr, long code,
                         bool *changed)
{
    struct ups_up *u = &p->ups[pr->up];
    if (pr->kind == PROBE_HEALTH) {
        u->health_code = (int)code;
    } else if (pr->kind == PROBE_MODELS) {
        *changed = probe_models(u, pr, code);
    } else {
        double sum = 0;
        bool found = false;
        if (code == 200)
            ups_parse_waiting(km_buf_str(&pr->body), pr->body.len, &sum, &found);
        u->waiting = found ? (long)sum : -1;
    }
    return --u->round_pending == 0;
}

/* A probe transfer libcurl reported done (priv: the struct ups_probe). */
void ups__probe_done(struct ups_pool *p, void *priv)
{
    struct ups_probe *pr = priv;
    long code = 0, port = 0;
    char *ip = NULL;
    curl_easy_getinfo(pr->easy, CURLINFO_RESPONSE_CODE, &code);
    if (code > 0) {
        curl_easy_getinfo(pr->easy, CURLINFO_PRIMARY_IP, &ip);
        curl_easy_getinfo(pr->easy, CURLINFO_PRIMARY_PORT, &port);
    }
    size_t up = pr->up;
    struct ups_up *u = &p->ups[up];
    bool changed = false;
    pthread_mutex_lock(&p->mu);
    if (code > 0)
        ups__h1_target_learn(&u->h1, ip, port);
    bool round_end = probe_result(p, pr, code, &changed);
    /* the round's verdict: /health 2xx, or no /health (404) while
     * /v1/models answers 200 */
    bool ok = (u->health_code >= 200 && u->health_code < 300) ||
              (u->health_code == 404 && u->models_ok);
    void (*notify)(void *) = p->notify;
    void *nud = p->notify_ud;
    pthread_mutex_unlock(&p->mu);
    probe_free(p, pr);
    if (changed && notify)
        notify(nud);
    if (round_end) {
        if (!ok)
            ups__count_error(p, up, UPS_ERR_PROBE);
        ups__mark(p, up, ok);
    }
    if (p->probes_out == 0) {
        pthread_mutex_lock(&p->mu);
        p->rounds_done++;
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
}

void ups__probes_tick(struct ups_pool *p, double now)
{
    if (p->probes_out > 0)
        return;
    bool asked = atomic_exchange(&p->probe_asked, false);
    if (!asked && now < p->next_probe)
        return;
    bool refresh = asked || now >= p->next_refresh;
    pthread_mutex_lock(&p->mu);
    for (size_t i = 0; i < p->n; i++)
        refresh = refresh || !p->ups[i].models_ok;  /* retry a failed listing */
    pthread_mutex_unlock(&p->mu);
    p->next_probe = now + p->opt.probe_interval_ms / 1000.0;
    if (refresh)
        p->next_refresh = now + p->opt.models_refresh_ms / 1000.0;
    for (size_t i = 0; i < p->n; i++) {
        probe_start(p, i, PROBE_HEALTH);
        if (refresh) {
            probe_start(p, i, PROBE_MODELS);
            probe_start(p, i, PROBE_METRICS);
        }
    }
}

/* The home lane is shutting down: free the probes, end the round. */
void ups__probes_end(struct ups_pool *p)
{
    while (p->probes)
        probe_free(p, p->probes);
    pthread_mutex_lock(&p->mu);
    p->rounds_done++;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

