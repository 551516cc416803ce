/* upstream.c - upstream specs, the balancer, parsers of upstream answers,
 * the pool's bookkeeping and its Prometheus metrics (see upstream.h). The
 * lanes driving libcurl are in upstream_lane.c, the transfers they run in
 * upstream_loop.c. */
#include "server/upstream_int.h"

#include "base/log.h"
#include "base/mem.h"
#include "server/server.h"

#include <ctype.h>
#include <stddef.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *const ups__err_kind_name[UPS_ERR_N] = {
    "connect", "timeout", "idle_timeout", "http_5xx", "dropped", "canceled",
    "probe",
};

/* Upstream round trip (to response headers). */
const double ups__lat_bounds[UPS_LAT_BUCKETS] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
    5, 10, 30, 60,
};
/* vLLM's buckets for the same quantities (vllm/v1/metrics/loggers.py). */
const double ups__ttft_bounds[UPS_TTFT_BUCKETS] = {
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5,
    5, 7.5, 10, 20, 40, 80, 160, 640, 2560,
};
const double ups__itl_bounds[UPS_ITL_BUCKETS] = {
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5, 5,
    7.5, 10, 20, 40, 80,
};

double ups__now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- specs ------------------------------------------------------------- */

void ups_options_default(struct ups_options *o)
{
    o->connect_timeout_ms = 2000;
    o->first_byte_timeout_ms = 120000;
    o->idle_timeout_ms = 60000;
    o->probe_interval_ms = 2000;
    o->probe_timeout_ms = 1000;
    o->models_refresh_ms = 10000;
    o->fall = 2;
    o->rise = 2;
    o->max_attempts = 3;
    o->error_body_max = 2048;
}

void ups_options_from_config(struct ups_options *o, const struct srv_config *c)
{
    ups_options_default(o);
    o->connect_timeout_ms = (int)c->upstream_connect_timeout_ms;
    o->first_byte_timeout_ms = (int)c->upstream_first_byte_timeout_ms;
    o->idle_timeout_ms = (int)c->upstream_idle_timeout_ms;
    o->probe_interval_ms = (int)c->upstream_probe_interval_ms;
    o->probe_timeout_ms = (int)c->upstream_probe_timeout_ms;
    o->models_refresh_ms = (int)c->upstream_models_refresh_ms;
    o->fall = (int)c->upstream_fall;
    o->rise = (int)c->upstream_rise;
    o->max_attempts = (int)c->upstream_max_attempts;
}

static bool valid_name(const char *s, size_t n)
{
    if (n == 0 || n >= UPS_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && !strchr("._-", s[i]))
            return false;
    return true;
}

static int parse_url(const char *s, size_t n, struct ups_spec *out,
                     struct km_err *err)
{
    while (n > 0 && s[n - 1] == '/')
        n--;
    bool http = n > 7 && strncmp(s, "http://", 7) == 0;
    bool https = n > 8 && strncmp(s, "https://", 8) == 0;
    if (!http && !https)
        return km_fail(err, KM_EINVAL, "upstream '%s': URL '%.*s' must start "
                       "with http:// or https://", out->name, (int)n, s);
    if (n >= UPS_URL_MAX)
        return km_fail(err, KM_EINVAL, "upstream '%s': URL longer than %d "
                       "bytes", out->name, UPS_URL_MAX - 1);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= ' ' || s[i] == 0x7f)
            return km_fail(err, KM_EINVAL, "upstream '%s': URL has a space "
                           "or control character at byte %zu", out->name, i);
    memcpy(out->url, s, n);
    out->url[n] = '\0';
    return KM_OK;
}

/* "a|b|c" into list[*n] (opt names the option in messages). */
static int parse_list(const char *s, size_t n, char (*list)[256], size_t *cnt,
                      const char *opt, const char *up, struct km_err *err)
{
    size_t i = 0;
    while (i <= n) {
        size_t j = i;
        while (j < n && s[j] != '|')
            j++;
        if (j == i || j - i >= 256)
            return km_fail(err, KM_EINVAL, "upstream '%s': %s= has an "
                           "empty or over-long model id", up, opt);
        if (*cnt == UPS_STATIC_MODELS)
            return km_fail(err, KM_EINVAL, "upstream '%s': more than %d "
                           "models in %s=", up, UPS_STATIC_MODELS, opt);
        memcpy(list[*cnt], s + i, j - i);
        list[*cnt][j - i] = '\0';
        (*cnt)++;
        i = j + 1;
    }
    return KM_OK;
}

static int parse_option(const char *s, size_t n, struct ups_spec *out,
                        struct km_err *err)
{
    if (n > 7 && strncmp(s, "models=", 7) == 0)
        return parse_list(s + 7, n - 7, out->models, &out->n_models, "models",
                          out->name, err);
    if (n > 6 && strncmp(s, "embed=", 6) == 0)
        return parse_list(s + 6, n - 6, out->embed, &out->n_embed, "embed",
                          out->name, err);
    if (n > 12 && strncmp(s, "api-key-env=", 12) == 0) {
        if (n - 12 >= sizeof out->api_key_env)
            return km_fail(err, KM_EINVAL, "upstream '%s': api-key-env name "
                           "too long", out->name);
        memcpy(out->api_key_env, s + 12, n - 12);
        out->api_key_env[n - 12] = '\0';
        return KM_OK;
    }
    return km_fail(err, KM_EINVAL, "upstream '%s': unknown option '%.*s' "
                   "(expected models=a|b, embed=x|y or api-key-env=VAR)",
                   out->name, (int)n, s);
}

int ups_spec_parse(const char *text, struct ups_spec *out, struct km_err *err)
{
    memset(out, 0, sizeof *out);
    const char *eq = strchr(text, '=');
    if (!eq)
        return km_fail(err, KM_EINVAL, "upstream spec '%s': expected "
                       "NAME=URL[,models=a|b][,embed=x|y][,api-key-env=VAR]",
                       text);
    if (!valid_name(text, (size_t)(eq - text)))
        return km_fail(err, KM_EINVAL, "upstream spec '%s': name must be 1-%d "
                       "characters of [A-Za-z0-9._-]", text, UPS_NAME_MAX - 1);
    memcpy(out->name, text, (size_t)(eq - text));
    const char *p = eq + 1;
    const char *comma = strchr(p, ',');
    size_t ulen = comma ? (size_t)(comma - p) : strlen(p);
    int rc = parse_url(p, ulen, out, err);
    while (rc == KM_OK && comma) {
        p = comma + 1;
        comma = strchr(p, ',');
        size_t olen = comma ? (size_t)(comma - p) : strlen(p);
        rc = parse_option(p, olen, out, err);
    }
    return rc;
}

/* ---- balancer ---------------------------------------------------------- */

static uint64_t fnv1a(uint64_t h, const char *s)
{
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

static int pick_affinity(const struct ups_cand *c, size_t n, const char *key)
{
    int best = -1;
    uint64_t best_h = 0;
    uint64_t base = fnv1a(14695981039346656037ull, key);
    for (size_t i = 0; i < n; i++) {
        if (!c[i].eligible)
            continue;
        uint64_t h = mix64(fnv1a(base ^ 0x9e3779b97f4a7c15ull, c[i].name));
        if (best < 0 || h > best_h) {
            best = (int)i;
            best_h = h;
        }
    }
    return best;
}

int ups_balance_pick(const struct ups_cand *c, size_t n, const char *affinity,
                     unsigned rr)
{
    if (n == 0)
        return -1;
    if (affinity && *affinity)
        return pick_affinity(c, n, affinity);
    int best = -1;
    long best_load = 0;
    for (size_t k = 0; k < n; k++) {
        size_t i = (rr + k) % n;
        if (!c[i].eligible)
            continue;
        long load = c[i].in_flight + (c[i].waiting > 0 ? c[i].waiting : 0);
        if (best < 0 || load < best_load) {
            best = (int)i;
            best_load = load;
        }
    }
    return best;
}

/* ---- parsers ----------------------------------------------------------- */

static const char WAITING[] = "vllm:num_requests_waiting";

/* Value of one sample line "name{labels} value [ts]" after the name. */
static bool sample_value(const char *p, const char *end, double *v)
{
    if (p < end && *p == '{') {
        bool quoted = false;
        for (; p < end; p++) {
            if (*p == '"' && p[-1] != '\\')
                quoted = !quoted;
            else if (*p == '}' && !quoted)
                break;
        }
        if (p == end)
            return false;
        p++;
    }
    if (p >= end || (*p != ' ' && *p != '\t'))
        return false;
    char num[64];
    size_t n = (size_t)(end - p);
    if (n >= sizeof num)
        n = sizeof num - 1;
    memcpy(num, p, n);
    num[n] = '\0';
    char *e = NULL;
    *v = strtod(num, &e);
    return e != num;
}

int ups_parse_waiting(const char *text, size_t len, double *sum, bool *found)
{
    *sum = 0;
    *found = false;
    const char *p = text, *end = text + len;
    size_t wl = sizeof WAITING - 1;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        if ((size_t)(le - p) > wl && memcmp(p, WAITING, wl) == 0) {
            double v = 0;
            if (sample_value(p + wl, le, &v)) {
                *sum += v;
                *found = true;
            }
        }
        p = nl ? nl + 1 : end;
    }
    return KM_OK;
}

static void model_from_json(json_t *o, struct srv_model_info *m)
{
    memset(m, 0, sizeof *m);
    snprintf(m->id, sizeof m->id, "%s", json_string_value(json_object_get(o, "id")));
    const char *ob = json_string_value(json_object_get(o, "owned_by"));
    snprintf(m->owned_by, sizeof m->owned_by, "%s", ob ? ob : "upstream");
    json_t *c = json_object_get(o, "created");
    m->created = json_is_integer(c) ? (long long)json_integer_value(c) : 0;
    json_t *ml = json_object_get(o, "max_model_len");
    m->max_model_len = json_is_integer(ml) ? (int)json_integer_value(ml) : 0;
    m->task = SRV_TASK_GENERATE;
}

int ups_parse_models(const char *body, size_t len, struct srv_model_info *out,
                     size_t cap, struct km_err *err)
{
    json_error_t je;
    json_t *root = json_loadb(body, len, 0, &je);
    json_t *data = root ? json_object_get(root, "data") : NULL;
    int count = -1;
    if (!json_is_array(data)) {
        km_fail(err, KM_EFORMAT, "/v1/models body is not an object with a "
                "\"data\" array (%s)", root ? "no data array" : je.text);
        goto out;
    }
    count = 0;
    for (size_t i = 0; i < json_array_size(data) && (size_t)count < cap; i++) {
        json_t *o = json_array_get(data, i);
        const char *id = json_string_value(json_object_get(o, "id"));
        if (!id || !*id || strlen(id) >= sizeof out->id)
            continue;
        model_from_json(o, &out[count++]);
    }
out:
    json_decref(root);
    return count;
}

void ups_sse_scan_init(struct ups_sse_scan *s)
{
    memset(s, 0, sizeof *s);
}

static const char DATA_PFX[] = "data:";
static const char DONE_TXT[] = "[DONE]";

static void sse_end_line(struct ups_sse_scan *s, bool blank, unsigned long *n)
{
    if (blank) {
        if (s->in_data && !s->done_line) {
            s->events++;
            (*n)++;
        }
        s->in_data = false;
        s->done_line = false;
    } else if (s->state == 2 && s->pos == 6) {
        s->done_line = true;
    }
    s->state = 0;
    s->pos = 0;
}

static void sse_char(struct ups_sse_scan *s, char c)
{
    if (s->state == 0 || s->state == 1) {
        if (c == DATA_PFX[s->pos]) {
            s->state = 1;
            if (++s->pos == 5) {
                s->in_data = true;
                s->state = 2;
                s->pos = -1;    /* -1: an optional space may follow */
            }
            return;
        }
        s->state = 3;
        return;
    }
    if (s->state == 2) {
        if (s->pos == -1) {
            s->pos = 0;
            if (c == ' ')
                return;
        }
        if (s->pos < 6 && c == DONE_TXT[s->pos])
            s->pos++;
        else
            s->state = 3;
    }
}

unsigned long ups_sse_scan_feed(struct ups_sse_scan *s, const char *p, size_t n)
{
    unsigned long done = 0;
    for (size_t i = 0; i < n; i++) {
        if (s->state == 3) {    /* the rest of this line does not matter */
            const char *nl = memchr(p + i, '\n', n - i);
            if (!nl)
                break;
            i = (size_t)(nl - p);
        }
        char c = p[i];
        if (c == '\r')
            continue;
        if (c == '\n') {
            bool blank = s->state == 0 && s->pos == 0;
            sse_end_line(s, blank, &done);
            continue;
        }
        sse_char(s, c);
    }
    return done;
}

/* ---- pool bookkeeping -------------------------------------------------- */

static bool in_list(const char (*list)[256], size_t n, const char *id)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i], id) == 0)
            return true;
    return false;
}

/* Served: models= (or, without it, the discovered list) plus embed=. */
bool ups__serves_locked(const struct ups_up *u, const char *model)
{
    if (!model)
        return false;
    if (in_list(u->spec.embed, u->spec.n_embed, model))
        return true;
    if (u->spec.n_models > 0) {
        for (size_t i = 0; i < u->spec.n_models; i++)
            if (strcmp(u->spec.models[i], model) == 0)
                return true;
        return false;
    }
    for (size_t i = 0; i < u->n_models; i++)
        if (strcmp(u->models[i].id, model) == 0)
            return true;
    return false;
}

void ups__hist_observe(struct ups_hist *h, const double *bounds, size_t nb,
                       double v)
{
    size_t i = 0;
    while (i < nb && v > bounds[i])
        i++;
    h->b[i]++;          /* i == nb: only +Inf */
    h->count++;
    h->sum += v;
}

static int validate_options(const struct ups_options *o, struct km_err *err)
{
    if (o->connect_timeout_ms <= 0 || o->first_byte_timeout_ms <= 0 ||
        o->idle_timeout_ms <= 0 || o->probe_interval_ms <= 0 ||
        o->probe_timeout_ms <= 0 || o->models_refresh_ms <= 0)
        return km_fail(err, KM_EINVAL, "upstream options: every timeout and "
                       "interval must be positive");
    if (o->fall < 1 || o->rise < 1 || o->max_attempts < 1)
        return km_fail(err, KM_EINVAL, "upstream options: fall, rise and "
                       "max_attempts must be at least 1");
    return KM_OK;
}

static int init_up(struct ups_up *u, const struct ups_spec *s,
                   struct km_err *err)
{
    u->spec = *s;
    u->waiting = -1;
    ups__h1_target_init(&u->h1, s->url);
    atomic_init(&u->in_flight, 0);
    if (!s->api_key_env[0])
        return KM_OK;
    const char *key = getenv(s->api_key_env);
    if (!key || !*key)
        return km_fail(err, KM_EINVAL, "upstream '%s': environment variable "
                       "%s (api-key-env) is not set", s->name, s->api_key_env);
    int n = snprintf(u->auth, sizeof u->auth, "Authorization: Bearer %s", key);
    if (n < 0 || (size_t)n >= sizeof u->auth || strpbrk(key, "\r\n"))
        return km_fail(err, KM_EINVAL, "upstream '%s': the key in %s is too "
                       "long or has a line break", s->name, s->api_key_env);
    return KM_OK;
}

static int check_specs(const struct ups_spec *specs, size_t n,
                       struct km_err *err)
{
    if (n == 0 || n > UPS_MAX_UPSTREAMS)
        return km_fail(err, KM_EINVAL, "upstreams: %zu given, expected 1 to "
                       "%d", n, UPS_MAX_UPSTREAMS);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < i; j++)
            if (strcmp(specs[i].name, specs[j].name) == 0)
                return km_fail(err, KM_EINVAL, "upstream name '%s' is given "
                               "twice", specs[i].name);
    return KM_OK;
}

static void free_ups(struct ups_pool *p)
{
    for (size_t i = 0; p->ups && i < p->n; i++) {
        km_free(p->ups[i].models);
        km_free(p->ups[i].req);
        km_free(p->ups[i].tok);
    }
    km_free(p->ups);
}

int ups_pool_new(const struct ups_spec *specs, size_t n_specs,
                 const struct ups_options *opts, struct ups_pool **out,
                 struct km_err *err)
{
    *out = NULL;
    int rc = check_specs(specs, n_specs, err);
    if (rc == KM_OK)
        rc = validate_options(opts, err);
    if (rc != KM_OK)
        return rc;
    struct ups_pool *p = km_calloc(1, sizeof *p);
    if (!p)
        return km_fail(err, KM_ENOMEM, "upstream pool: out of memory");
    p->opt = *opts;
    p->n = n_specs;
    pthread_mutex_init(&p->mu, NULL);
    pthread_mutex_init(&p->qmu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->ups = km_calloc(n_specs, sizeof *p->ups);
    if (!p->ups) {
        rc = km_fail(err, KM_ENOMEM, "upstream pool: out of memory");
        goto out;
    }
    for (size_t i = 0; i < n_specs && rc == KM_OK; i++)
        rc = init_up(&p->ups[i], &specs[i], err);
    if (rc == KM_OK)
        rc = ups__loop_start(p, err);
out:
    if (rc != KM_OK) {
        ups_pool_free(p);
        return rc;
    }
    *out = p;
    return KM_OK;
}

void ups_pool_free(struct ups_pool *p)
{
    if (!p)
        return;
    ups__loop_stop(p);
    free_ups(p);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->qmu);
    pthread_mutex_destroy(&p->mu);
    km_free(p);
}

void ups_pool_set_notify(struct ups_pool *p, void (*fn)(void *ud), void *ud)
{
    pthread_mutex_lock(&p->mu);
    p->notify = fn;
    p->notify_ud = ud;
    pthread_mutex_unlock(&p->mu);
}

size_t ups_pool_count(const struct ups_pool *p)
{
    return p->n;
}

long ups_pool_live_transfers(struct ups_pool *p)
{
    return atomic_load(&p->live);
}

int ups_pool_status(struct ups_pool *p, size_t i, struct ups_status *out)
{
    if (i >= p->n)
        return KM_ERANGE;
    struct ups_up *u = &p->ups[i];
    pthread_mutex_lock(&p->mu);
    snprintf(out->name, sizeof out->name, "%s", u->spec.name);
    snprintf(out->url, sizeof out->url, "%s", u->spec.url);
    out->healthy = u->healthy;
    out->in_flight = atomic_load(&u->in_flight);
    out->waiting = u->waiting;
    out->n_models = u->spec.n_models ? u->spec.n_models : u->n_models;
    out->requests = u->requests;
    out->errors = 0;
    for (int k = 0; k < UPS_ERR_N; k++)
        out->errors += u->errors[k];
    pthread_mutex_unlock(&p->mu);
    return KM_OK;
}

static size_t add_model(struct srv_model_info *out, size_t cap, size_t n,
                        const struct srv_model_info *m)
{
    for (size_t i = 0; i < n && i < cap; i++)
        if (strcmp(out[i].id, m->id) == 0)
            return n;
    if (n < cap)
        out[n] = *m;
    return n + 1;
}

/* The card of a configured id: the discovered one when the upstream lists
 * it, else a minimal one; its task from embed=. */
static struct srv_model_info card_of(const struct ups_up *u, const char *id)
{
    struct srv_model_info m = {0};
    snprintf(m.id, sizeof m.id, "%s", id);
    snprintf(m.owned_by, sizeof m.owned_by, "%s", u->spec.name);
    for (size_t d = 0; d < u->n_models; d++)
        if (strcmp(u->models[d].id, id) == 0)
            m = u->models[d];
    m.task = in_list(u->spec.embed, u->spec.n_embed, id) ? SRV_TASK_EMBED
                                                         : SRV_TASK_GENERATE;
    return m;
}

static size_t up_models(const struct ups_up *u, struct srv_model_info *out,
                        size_t cap, size_t n)
{
    struct srv_model_info m;
    for (size_t k = 0; k < u->spec.n_models; k++) {
        m = card_of(u, u->spec.models[k]);
        n = add_model(out, cap, n, &m);
    }
    for (size_t k = 0; u->spec.n_models == 0 && k < u->n_models; k++) {
        m = card_of(u, u->models[k].id);
        n = add_model(out, cap, n, &m);
    }
    for (size_t k = 0; k < u->spec.n_embed; k++) {
        m = card_of(u, u->spec.embed[k]);
        n = add_model(out, cap, n, &m);
    }
    return n;
}

size_t ups_pool_models(struct ups_pool *p, struct srv_model_info *out, size_t cap)
{
    size_t n = 0;
    pthread_mutex_lock(&p->mu);
    for (size_t i = 0; i < p->n; i++)
        n = up_models(&p->ups[i], out, cap, n);
    pthread_mutex_unlock(&p->mu);
    return n;
}

bool ups_pool_serves(struct ups_pool *p, const char *model)
{
    bool yes = false;
    pthread_mutex_lock(&p->mu);
    for (size_t i = 0; i < p->n && !yes; i++)
        yes = p->ups[i].healthy && ups__serves_locked(&p->ups[i], model);
    pthread_mutex_unlock(&p->mu);
    return yes;
}

size_t ups_pool_healthy(struct ups_pool *p)
{
    size_t n = 0;
    pthread_mutex_lock(&p->mu);
    for (size_t i = 0; i < p->n; i++)
        n += p->ups[i].healthy;
    pthread_mutex_unlock(&p->mu);
    return n;
}

void ups__mark(struct ups_pool *p, size_t up, bool ok)
{
    struct ups_up *u = &p->ups[up];
    pthread_mutex_lock(&p->mu);
    if (ok) {
        u->fails = 0;
        u->oks++;
        /* the first pass ever (a slow start, e.g. vLLM loading) admits at
         * once; after an ejection it takes `rise` passes in a row */
        if (!u->healthy && (!u->probed || u->oks >= p->opt.rise)) {
            u->healthy = true;
            u->probed = true;
            km_log(KM_LOG_INFO, "upstream %s (%s) is healthy", u->spec.name,
                   u->spec.url);
        }
    } else {
        u->oks = 0;
        u->fails++;
        if (u->healthy && u->fails >= p->opt.fall) {
            u->healthy = false;
            u->probed = true;
            km_log(KM_LOG_WARN, "upstream %s (%s) ejected after %d failures",
                   u->spec.name, u->spec.url, u->fails);
        }
    }
    pthread_mutex_unlock(&p->mu);
}

/* ---- metrics tables ---------------------------------------------------- */

/* Room for element n of a km_realloc'd array of `size`-byte elements
 * (capacity doubles from `first`); false when out of memory. */
static bool room_for(void **v, size_t n, size_t *cap, size_t size, size_t first)
{
    if (n < *cap)
        return true;
    size_t c = *cap ? *cap * 2 : first;
    void *nv = km_realloc(*v, c * size);
    if (!nv)
        return false;
    *v = nv;
    *cap = c;
    return true;
}

void ups__count_request(struct ups_pool *p, size_t up, const char *model,
                        int code)
{
    struct ups_up *u = &p->ups[up];
    pthread_mutex_lock(&p->mu);
    u->requests++;
    size_t i = 0;
    while (i < u->n_req && (u->req[i].code != code ||
                            strcmp(u->req[i].model, model ? model : "") != 0))
        i++;
    if (i == u->n_req && u->n_req < 1024) {
        if (!room_for((void **)&u->req, u->n_req, &u->cap_req, sizeof *u->req, 8))
            goto out;
        memset(&u->req[i], 0, sizeof u->req[i]);
        snprintf(u->req[i].model, sizeof u->req[i].model, "%s", model ? model : "");
        u->req[i].code = code;
        u->n_req++;
    }
    if (i < u->n_req)
        u->req[i].n++;
out:
    pthread_mutex_unlock(&p->mu);
}

void ups__count_error(struct ups_pool *p, size_t up, enum ups_err_kind k)
{
    pthread_mutex_lock(&p->mu);
    p->ups[up].errors[k]++;
    pthread_mutex_unlock(&p->mu);
}

static struct ups_tokstat *tokstat_locked(struct ups_up *u, const char *model)
{
    for (size_t i = 0; i < u->n_tok; i++)
        if (strcmp(u->tok[i].model, model) == 0)
            return &u->tok[i];
    if (u->n_tok >= 256 ||
        !room_for((void **)&u->tok, u->n_tok, &u->cap_tok, sizeof *u->tok, 4))
        return NULL;
    struct ups_tokstat *t = &u->tok[u->n_tok++];
    memset(t, 0, sizeof *t);
    snprintf(t->model, sizeof t->model, "%s", model);
    return t;
}

void ups__observe_tokens(struct ups_pool *p, size_t up, const char *model,
                         double ttft, double itl)
{
    pthread_mutex_lock(&p->mu);
    struct ups_tokstat *t = tokstat_locked(&p->ups[up], model ? model : "");
    if (t && ttft >= 0)
        ups__hist_observe(&t->ttft, ups__ttft_bounds, UPS_TTFT_BUCKETS, ttft);
    if (t && itl >= 0)
        ups__hist_observe(&t->itl, ups__itl_bounds, UPS_ITL_BUCKETS, itl);
    pthread_mutex_unlock(&p->mu);
}

/* ---- metrics rendering ------------------------------------------------- */

/* Label values: escape \ " and newline as Prometheus requires. */
static void put_label(struct km_buf *b, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\' || *s == '"')
            km_buf_putc(b, '\\');
        if (*s == '\n') {
            km_buf_puts(b, "\\n");
            continue;
        }
        km_buf_putc(b, *s);
    }
}

static void put_hist(struct km_buf *b, const char *name, const char *labels,
                     const struct ups_hist *h, const double *bounds, size_t nb)
{
    unsigned long long cum = 0;
    for (size_t i = 0; i < nb; i++) {
        cum += h->b[i];
        km_buf_printf(b, "%s_bucket{%s,le=\"%g\"} %llu\n", name, labels,
                      bounds[i], cum);
    }
    km_buf_printf(b, "%s_bucket{%s,le=\"+Inf\"} %llu\n", name, labels, h->count);
    km_buf_printf(b, "%s_sum{%s} %.9g\n%s_count{%s} %llu\n", name, labels,
                  h->sum, name, labels, h->count);
}

static void put_labels(char *dst, size_t cap, const char *k1, const char *v1,
                       const char *k2, const char *v2)
{
    struct km_buf t;
    km_buf_init(&t, cap - 1);
    km_buf_printf(&t, "%s=\"", k1);
    put_label(&t, v1);
    km_buf_puts(&t, "\"");
    if (k2) {
        km_buf_printf(&t, ",%s=\"", k2);
        put_label(&t, v2);
        km_buf_puts(&t, "\"");
    }
    snprintf(dst, cap, "%s", km_buf_str(&t));
    km_buf_free(&t);
}

static void render_gauges(struct ups_pool *p, struct km_buf *b)
{
    km_buf_puts(b, "# HELP kanoa_upstream_healthy 1 when the upstream passes "
                "its health probes.\n# TYPE kanoa_upstream_healthy gauge\n");
    for (size_t i = 0; i < p->n; i++) {
        km_buf_puts(b, "kanoa_upstream_healthy{upstream=\"");
        put_label(b, p->ups[i].spec.name);
        km_buf_printf(b, "\"} %d\n", p->ups[i].healthy ? 1 : 0);
    }
    km_buf_puts(b, "# HELP kanoa_upstream_in_flight Requests proxied to the "
                "upstream now.\n# TYPE kanoa_upstream_in_flight gauge\n");
    for (size_t i = 0; i < p->n; i++) {
        km_buf_puts(b, "kanoa_upstream_in_flight{upstream=\"");
        put_label(b, p->ups[i].spec.name);
        km_buf_printf(b, "\"} %ld\n", atomic_load(&p->ups[i].in_flight));
    }
    km_buf_puts(b, "# HELP kanoa_upstream_waiting The upstream's own "
                "vllm:num_requests_waiting at the last scrape (-1 unknown).\n"
                "# TYPE kanoa_upstream_waiting gauge\n");
    for (size_t i = 0; i < p->n; i++) {
        km_buf_puts(b, "kanoa_upstream_waiting{upstream=\"");
        put_label(b, p->ups[i].spec.name);
        km_buf_printf(b, "\"} %ld\n", p->ups[i].waiting);
    }
}

static void render_counters(struct ups_pool *p, struct km_buf *b)
{
    km_buf_puts(b, "# HELP kanoa_upstream_requests_total Proxied attempts by "
                "upstream, model and upstream HTTP status (0: no response).\n"
                "# TYPE kanoa_upstream_requests_total counter\n");
    for (size_t i = 0; i < p->n; i++) {
        struct ups_up *u = &p->ups[i];
        for (size_t k = 0; k < u->n_req; k++) {
            km_buf_puts(b, "kanoa_upstream_requests_total{upstream=\"");
            put_label(b, u->spec.name);
            km_buf_puts(b, "\",model=\"");
            put_label(b, u->req[k].model);
            km_buf_printf(b, "\",code=\"%d\"} %llu\n", u->req[k].code,
                          u->req[k].n);
        }
    }
    km_buf_puts(b, "# HELP kanoa_upstream_errors_total Upstream failures by "
                "kind.\n# TYPE kanoa_upstream_errors_total counter\n");
    for (size_t i = 0; i < p->n; i++) {
        for (int k = 0; k < UPS_ERR_N; k++) {
            km_buf_puts(b, "kanoa_upstream_errors_total{upstream=\"");
            put_label(b, p->ups[i].spec.name);
            km_buf_printf(b, "\",kind=\"%s\"} %llu\n", ups__err_kind_name[k],
                          p->ups[i].errors[k]);
        }
    }
}

static void render_hists(struct ups_pool *p, struct km_buf *b)
{
    char lab[700];
    km_buf_puts(b, "# HELP kanoa_upstream_latency_seconds Time from sending a "
                "request to the upstream's response headers.\n"
                "# TYPE kanoa_upstream_latency_seconds histogram\n");
    for (size_t i = 0; i < p->n; i++) {
        put_labels(lab, sizeof lab, "upstream", p->ups[i].spec.name, NULL, NULL);
        put_hist(b, "kanoa_upstream_latency_seconds", lab, &p->ups[i].latency,
                 ups__lat_bounds, UPS_LAT_BUCKETS);
    }
    static const char *const names[2] = {
        "kanoa_gateway:time_to_first_token_seconds",
        "kanoa_gateway:inter_token_latency_seconds",
    };
    for (int w = 0; w < 2; w++) {
        km_buf_printf(b, "# HELP %s %s measured at the gateway on streamed "
                      "responses (vLLM's name under the kanoa_gateway: "
                      "prefix).\n# TYPE %s histogram\n", names[w],
                      w ? "Inter-token latency" : "Time to first token",
                      names[w]);
        for (size_t i = 0; i < p->n; i++) {
            for (size_t k = 0; k < p->ups[i].n_tok; k++) {
                struct ups_tokstat *t = &p->ups[i].tok[k];
                put_labels(lab, sizeof lab, "model_name", t->model, "upstream",
                           p->ups[i].spec.name);
                if (w == 0)
                    put_hist(b, names[0], lab, &t->ttft, ups__ttft_bounds,
                             UPS_TTFT_BUCKETS);
                else
                    put_hist(b, names[1], lab, &t->itl, ups__itl_bounds,
                             UPS_ITL_BUCKETS);
            }
        }
    }
}

int ups_pool_metrics(struct ups_pool *p, struct km_buf *out)
{
    size_t before = out->len;
    pthread_mutex_lock(&p->mu);
    render_gauges(p, out);
    render_counters(p, out);
    render_hists(p, out);
    pthread_mutex_unlock(&p->mu);
    /* km_buf appends fail as a whole; a short render means the cap was hit. */
    if (out->len == before)
        return KM_ERANGE;
    return KM_OK;
}
