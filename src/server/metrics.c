/* metrics.c - Prometheus text exposition (format 0.0.4) with vLLM's metric
 * names, types, labels and bucket sets, plus the HTTP metrics of
 * prometheus_fastapi_instrumentator (http_requests_total{handler,method,
 * status} and http_request_duration_seconds{handler,method}).
 *
 * Every number comes from real request events: the request core calls the
 * srv__mm_* functions as a request is queued, submitted, streams its first
 * and later tokens, and finishes. Counters and gauges are atomics; each
 * histogram observation takes one short per-model mutex. */
#include "server/server_int.h"

#include "base/mem.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const double ttft_b[] = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08,
                                0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
                                20.0, 40.0, 80.0, 160.0, 640.0, 2560.0};
static const double itl_b[] = {0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3,
                               0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
                               40.0, 80.0};
static const double e2e_b[] = {0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0,
                               15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0,
                               240.0, 480.0, 960.0, 1920.0, 7680.0};
static const double http_b[] = {0.1, 0.5, 1.0};

#define NB(a) (int)(sizeof a / sizeof a[0])
#define MAX_B 24

struct hist {
    const double *b;
    int nb;
    unsigned long long cnt[MAX_B + 1]; /* per bucket; last = above all */
    double sum;
    unsigned long long n;
};

static const char *const reasons[] = {"stop", "length", "abort"};
#define N_REASONS 3

struct srv_mm {
    char name[256];
    struct srv_mm *next;
    atomic_long running, waiting;
    atomic_llong prompt_tokens, gen_tokens;
    atomic_llong success[N_REASONS];
    pthread_mutex_t mu;
    struct hist ttft, itl, e2e, queue;
};

#define N_METHODS 5
#define N_STATUS 500
static const char *const methods[N_METHODS] = {"GET", "POST", "OPTIONS",
                                               "HEAD", "OTHER"};

/* HTTP latency: lock-free (one per route and method, on every request). */
struct ahist {
    atomic_ullong cnt[4];       /* 0.1, 0.5, 1.0, +Inf */
    atomic_ullong sum_bits;     /* a double, updated by compare-and-swap */
};

struct srv_metrics {
    pthread_mutex_t mu; /* the model list */
    struct srv_mm *models;
    atomic_ullong http_count[SRV_MAX_ROUTES + 1][N_METHODS][N_STATUS];
    struct ahist http_lat[SRV_MAX_ROUTES + 1][N_METHODS];
};

static void hist_init(struct hist *h, const double *b, int nb)
{
    memset(h, 0, sizeof *h);
    h->b = b;
    h->nb = nb;
}

static void hist_observe(struct hist *h, double v)
{
    int i = 0;
    while (i < h->nb && v > h->b[i])
        i++;
    h->cnt[i]++;
    h->sum += v;
    h->n++;
}

struct srv_metrics *srv__metrics_new(void)
{
    struct srv_metrics *m = km_calloc(1, sizeof *m);
    if (!m)
        return NULL;
    pthread_mutex_init(&m->mu, NULL);
    return m;
}

void srv__metrics_free(struct srv_metrics *m)
{
    if (!m)
        return;
    struct srv_mm *mm = m->models;
    while (mm) {
        struct srv_mm *next = mm->next;
        pthread_mutex_destroy(&mm->mu);
        km_free(mm);
        mm = next;
    }
    pthread_mutex_destroy(&m->mu);
    km_free(m);
}

struct srv_mm *srv__metrics_model(struct srv_metrics *m, const char *model)
{
    pthread_mutex_lock(&m->mu);
    struct srv_mm *mm = m->models;
    while (mm && strcmp(mm->name, model) != 0)
        mm = mm->next;
    if (!mm) {
        mm = km_calloc(1, sizeof *mm);
        if (mm) {
            snprintf(mm->name, sizeof mm->name, "%s", model);
            pthread_mutex_init(&mm->mu, NULL);
            hist_init(&mm->ttft, ttft_b, NB(ttft_b));
            hist_init(&mm->itl, itl_b, NB(itl_b));
            hist_init(&mm->e2e, e2e_b, NB(e2e_b));
            hist_init(&mm->queue, e2e_b, NB(e2e_b));
            struct srv_mm **tail = &m->models;
            while (*tail)
                tail = &(*tail)->next;
            *tail = mm;
        }
    }
    pthread_mutex_unlock(&m->mu);
    return mm;
}

void srv__mm_waiting(struct srv_mm *mm, int delta)
{
    if (mm)
        atomic_fetch_add(&mm->waiting, delta);
}

void srv__mm_running(struct srv_mm *mm, int delta)
{
    if (mm)
        atomic_fetch_add(&mm->running, delta);
}

static void observe(struct srv_mm *mm, struct hist *h, double v)
{
    pthread_mutex_lock(&mm->mu);
    hist_observe(h, v);
    pthread_mutex_unlock(&mm->mu);
}

void srv__mm_queue_time(struct srv_mm *mm, double s)
{
    if (mm)
        observe(mm, &mm->queue, s);
}

void srv__mm_ttft(struct srv_mm *mm, double s)
{
    if (mm)
        observe(mm, &mm->ttft, s);
}

void srv__mm_itl(struct srv_mm *mm, double s)
{
    if (mm)
        observe(mm, &mm->itl, s);
}

void srv__mm_done(struct srv_mm *mm, const struct srv_usage *u,
                  const char *finish_reason, double e2e)
{
    if (!mm)
        return;
    if (u) {
        atomic_fetch_add(&mm->prompt_tokens, u->prompt_tokens);
        atomic_fetch_add(&mm->gen_tokens, u->completion_tokens);
    }
    int r = 0;
    while (r < N_REASONS && (!finish_reason || strcmp(reasons[r], finish_reason)))
        r++;
    atomic_fetch_add(&mm->success[r < N_REASONS ? r : 2], 1);
    observe(mm, &mm->e2e, e2e);
}

static int method_index(const char *method)
{
    for (int i = 0; i < N_METHODS - 1; i++)
        if (strcmp(methods[i], method) == 0)
            return i;
    return N_METHODS - 1;
}

void srv__metrics_http(struct srv_metrics *m, int route, const char *method,
                       int status, double seconds)
{
    if (route < 0 || route > SRV_MAX_ROUTES)
        route = SRV_MAX_ROUTES;
    if (status < 100 || status >= 100 + N_STATUS)
        status = 500;
    int k = method_index(method);
    atomic_fetch_add(&m->http_count[route][k][status - 100], 1);
    struct ahist *h = &m->http_lat[route][k];
    int i = 0;
    while (i < NB(http_b) && seconds > http_b[i])
        i++;
    atomic_fetch_add(&h->cnt[i], 1);
    unsigned long long old = atomic_load(&h->sum_bits), upd;
    do {
        double d;
        memcpy(&d, &old, sizeof d);
        d += seconds;
        memcpy(&upd, &d, sizeof upd);
    } while (!atomic_compare_exchange_weak(&h->sum_bits, &old, upd));
}

/* ---- exposition ---- */

/* Prometheus label value: escape backslash, quote and newline. */
static void label_escape(char *out, size_t cap, const char *s)
{
    size_t o = 0;
    for (; *s && o + 3 < cap; s++) {
        if (*s == '\\' || *s == '"') {
            out[o++] = '\\';
            out[o++] = *s;
        } else if (*s == '\n') {
            out[o++] = '\\';
            out[o++] = 'n';
        } else {
            out[o++] = *s;
        }
    }
    out[o] = '\0';
}

/* Floats as prometheus_client prints them: 1.0, 0.25, 2560.0. */
static void fmt_float(char *out, size_t cap, double v)
{
    if (v == floor(v) && fabs(v) < 1e15)
        snprintf(out, cap, "%.1f", v);
    else
        snprintf(out, cap, "%.17g", v);
    /* shorten 0.10000000000000001 style output */
    char shorter[40];
    snprintf(shorter, sizeof shorter, "%g", v);
    if (strtod(shorter, NULL) == v && strchr(shorter, '.'))
        snprintf(out, cap, "%s", shorter);
}

static void head(struct km_buf *o, const char *name, const char *type,
                 const char *help)
{
    km_buf_printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void hist_render(struct km_buf *o, const char *name, const char *labels,
                        const struct hist *h)
{
    unsigned long long cum = 0;
    char le[40], sum[40];
    for (int i = 0; i <= h->nb; i++) {
        cum += h->cnt[i];
        if (i < h->nb)
            fmt_float(le, sizeof le, h->b[i]);
        else
            snprintf(le, sizeof le, "+Inf");
        km_buf_printf(o, "%s_bucket{%s,le=\"%s\"} %llu\n", name, labels, le, cum);
    }
    fmt_float(sum, sizeof sum, h->sum);
    km_buf_printf(o, "%s_count{%s} %llu\n%s_sum{%s} %s\n", name, labels, h->n,
                  name, labels, sum);
}

static void labels_for(const struct srv_mm *mm, char *out, size_t cap)
{
    char esc[600];
    label_escape(esc, sizeof esc, mm->name);
    snprintf(out, cap, "engine=\"0\",model_name=\"%s\"", esc);
}

static double kv_usage(struct srv_server *s, const char *model)
{
    struct srv_model_info info;
    struct srv_backend *be = srv__find_model(s, model, &info);
    if (!be || !be->ops->kv_cache_usage)
        return 0;
    double v = be->ops->kv_cache_usage(be->impl, model);
    return isfinite(v) ? v : 0;
}

enum mm_field { MM_RUNNING, MM_WAITING, MM_PROMPT_TOKENS, MM_GEN_TOKENS };

static long long mm_value(struct srv_mm *mm, enum mm_field f)
{
    switch (f) {
    case MM_RUNNING: return atomic_load(&mm->running);
    case MM_WAITING: return atomic_load(&mm->waiting);
    case MM_PROMPT_TOKENS: return atomic_load(&mm->prompt_tokens);
    default: return atomic_load(&mm->gen_tokens);
    }
}

struct family;
typedef void (*mm_line_fn)(struct km_buf *o, struct srv_mm *mm,
                           const char *labels, const struct family *f,
                           struct srv_server *s);

/* A per-model family: whole-number samples of field `f`, or line(). */
struct family {
    const char *name, *type, *help;
    enum mm_field f;
    mm_line_fn line;
    size_t off;                 /* hist_line: the struct hist in srv_mm */
};

/* One family: HELP and TYPE, then one sample line per model. */
static void each_model(struct km_buf *o, struct srv_metrics *m,
                       const struct family *f, struct srv_server *s)
{
    char lb[700];
    head(o, f->name, f->type, f->help);
    for (struct srv_mm *mm = m->models; mm; mm = mm->next) {
        labels_for(mm, lb, sizeof lb);
        if (f->line)
            f->line(o, mm, lb, f, s);
        else
            km_buf_printf(o, "%s{%s} %lld.0\n", f->name, lb, mm_value(mm, f->f));
    }
}

static void kv_line(struct km_buf *o, struct srv_mm *mm, const char *lb,
                    const struct family *f, struct srv_server *s)
{
    char v[40];
    fmt_float(v, sizeof v, kv_usage(s, mm->name));
    km_buf_printf(o, "%s{%s} %s\n", f->name, lb, v);
}

static void success_line(struct km_buf *o, struct srv_mm *mm, const char *lb,
                         const struct family *f, struct srv_server *s)
{
    (void)s;
    for (int r = 0; r < N_REASONS; r++)
        km_buf_printf(o, "%s{%s,finished_reason=\"%s\"} %lld.0\n", f->name, lb,
                      reasons[r], atomic_load(&mm->success[r]));
}

static void hist_line(struct km_buf *o, struct srv_mm *mm, const char *lb,
                      const struct family *f, struct srv_server *s)
{
    (void)s;
    pthread_mutex_lock(&mm->mu);
    struct hist h = *(struct hist *)((char *)mm + f->off);
    pthread_mutex_unlock(&mm->mu);
    hist_render(o, f->name, lb, &h);
}

#define HIST(name, help, field) \
    {name, "histogram", help, MM_RUNNING, hist_line, offsetof(struct srv_mm, field)}

static const struct family families[] = {
    {"vllm:num_requests_running", "gauge",
     "Number of requests in model execution batches.", MM_RUNNING, NULL, 0},
    {"vllm:num_requests_waiting", "gauge",
     "Number of requests waiting to be processed.", MM_WAITING, NULL, 0},
    {"vllm:kv_cache_usage_perc", "gauge",
     "KV-cache usage. 1 means 100 percent usage.", MM_RUNNING, kv_line, 0},
    {"vllm:prompt_tokens_total", "counter",
     "Number of prefill tokens processed.", MM_PROMPT_TOKENS, NULL, 0},
    {"vllm:generation_tokens_total", "counter",
     "Number of generation tokens processed.", MM_GEN_TOKENS, NULL, 0},
    {"vllm:request_success_total", "counter",
     "Count of successfully processed requests.", MM_RUNNING, success_line, 0},
    HIST("vllm:time_to_first_token_seconds",
         "Histogram of time to first token in seconds.", ttft),
    HIST("vllm:inter_token_latency_seconds",
         "Histogram of inter-token latency in seconds.", itl),
    HIST("vllm:e2e_request_latency_seconds",
         "Histogram of e2e request latency in seconds.", e2e),
    HIST("vllm:request_queue_time_seconds",
         "Histogram of time spent in WAITING phase for request.", queue),
};

static void render_http(struct km_buf *o, struct srv_metrics *m,
                        struct srv_server *s)
{
    char lb[300], esc[200];
    head(o, "http_requests_total", "counter", "Total number of requests by "
         "method, status and handler.");
    for (int r = 0; r <= SRV_MAX_ROUTES; r++) {
        const char *path = srv__route_path(s, r);
        if (!path)
            continue;
        label_escape(esc, sizeof esc, path);
        for (int k = 0; k < N_METHODS; k++)
            for (int st = 0; st < N_STATUS; st++) {
                unsigned long long n = atomic_load(&m->http_count[r][k][st]);
                if (n)
                    km_buf_printf(o, "http_requests_total{handler=\"%s\","
                                  "method=\"%s\",status=\"%d\"} %llu.0\n",
                                  esc, methods[k], st + 100, n);
            }
    }
    head(o, "http_request_duration_seconds", "histogram",
         "Latency with only few buckets by handler.");
    for (int r = 0; r <= SRV_MAX_ROUTES; r++) {
        const char *path = srv__route_path(s, r);
        if (!path)
            continue;
        label_escape(esc, sizeof esc, path);
        for (int k = 0; k < N_METHODS; k++) {
            struct hist h;
            hist_init(&h, http_b, NB(http_b));
            for (int i = 0; i <= NB(http_b); i++) {
                h.cnt[i] = atomic_load(&m->http_lat[r][k].cnt[i]);
                h.n += h.cnt[i];
            }
            unsigned long long bits = atomic_load(&m->http_lat[r][k].sum_bits);
            memcpy(&h.sum, &bits, sizeof h.sum);
            if (h.n == 0)
                continue;
            snprintf(lb, sizeof lb, "handler=\"%s\",method=\"%s\"", esc,
                     methods[k]);
            hist_render(o, "http_request_duration_seconds", lb, &h);
        }
    }
}

int srv__metrics_render(struct srv_metrics *m, struct srv_server *s,
                        struct km_buf *out)
{
    pthread_mutex_lock(&m->mu);
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++)
        each_model(out, m, &families[i], s);
    pthread_mutex_unlock(&m->mu);
    render_http(out, m, s);
    int nb = atomic_load(&s->n_backends);
    for (int b = 0; b < nb; b++) {
        struct srv_backend *be = &s->backends[b].be;
        if (be->ops->metrics)
            be->ops->metrics(be->impl, out);
    }
    return KM_OK;
}
