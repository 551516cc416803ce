/* bench.c - the load generator behind `kanoa-mlops bench` (see bench.h):
 * a libcurl multi loop keeping `concurrency` streamed chat completions in
 * flight, an incremental SSE reader timing content events, and percentiles.
 * Rendering (text, JSON, SVG) is in bench_render.c. */
#include "ops/bench.h"

#include "base/mem.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void bench_options_default(struct bench_options *o)
{
    memset(o, 0, sizeof *o);
    o->prompt_tokens = 128;
    o->max_tokens = 64;
    o->timeout = 300;
}

int bench_parse_levels(const char *s, struct bench_options *o, struct km_err *err)
{
    o->n_levels = 0;
    const char *p = s;
    while (*p) {
        char *end = NULL;
        long v = strtol(p, &end, 10);
        if (end == p || v < 1 || v > 4096 || (*end && *end != ','))
            return km_fail(err, KM_EINVAL, "--concurrency '%s': expected a "
                           "comma-separated list of numbers 1-4096", s);
        if (o->n_levels == BENCH_MAX_LEVELS)
            return km_fail(err, KM_EINVAL, "--concurrency '%s': at most %d "
                           "levels", s, BENCH_MAX_LEVELS);
        o->concurrency[o->n_levels++] = (int)v;
        p = *end ? end + 1 : end;
        if (*end && !*p)
            return km_fail(err, KM_EINVAL, "--concurrency '%s': trailing comma", s);
    }
    if (o->n_levels == 0)
        return km_fail(err, KM_EINVAL, "--concurrency is empty");
    return KM_OK;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_percentile(double *v, size_t n, double q)
{
    if (n == 0)
        return 0;
    qsort(v, n, sizeof *v, cmp_double);
    double pos = q * (double)(n - 1);
    size_t lo = (size_t)pos;
    if (lo + 1 >= n)
        return v[n - 1];
    double f = pos - (double)lo;
    return v[lo] + (v[lo + 1] - v[lo]) * f;
}

void bench_stats_of(double *v, size_t n, struct bench_stats *s)
{
    memset(s, 0, sizeof *s);
    s->n = n;
    if (n == 0)
        return;
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += v[i];
    s->mean = sum / (double)n;
    s->p50 = bench_percentile(v, n, 0.50);
    s->p90 = bench_percentile(v, n, 0.90);
    s->p99 = bench_percentile(v, n, 0.99);
}

void bench_result_free(struct bench_result *r)
{
    (void)r;    /* nothing on the heap today; kept for the contract */
}

/* ---- samples ------------------------------------------------------------ */

struct samples {
    double *v;
    size_t n, cap;
};

static int push(struct samples *s, double x)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 256;
        double *v = km_realloc(s->v, cap * sizeof *v);
        if (!v)
            return KM_ENOMEM;
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = x;
    return KM_OK;
}

/* ---- one request --------------------------------------------------------- */

struct xfer {
    struct level_run *run;
    CURL *easy;
    double t_start, t_first, t_last;
    long events, usage_tokens;
    bool failed;
    char error[256];
    struct km_buf line;         /* the SSE line being read */
};

struct level_run {
    const struct bench_options *o;
    const char *body;
    size_t body_len;
    struct curl_slist *hdrs;
    char url[600];
    struct samples ttft, itl, e2e;
    long ok, errors, tokens;
    char first_error[256];
    bool oom;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static bool has_text(json_t *choice)
{
    json_t *d = json_object_get(choice, "delta");
    const char *t = json_string_value(json_object_get(d ? d : choice,
                                                      d ? "content" : "text"));
    if (!t && d)
        t = json_string_value(json_object_get(d, "reasoning_content"));
    return t && *t;
}

static void on_event(struct xfer *x, const char *data, size_t n)
{
    json_t *j = json_loadb(data, n, 0, NULL);
    if (!j) {
        x->failed = true;
        snprintf(x->error, sizeof x->error, "unparsable stream event: %.80s", data);
        return;
    }
    json_t *e = json_object_get(j, "error");
    if (e) {
        x->failed = true;
        const char *m = json_string_value(json_object_get(e, "message"));
        snprintf(x->error, sizeof x->error, "error event: %s", m ? m : "?");
    }
    json_t *u = json_object_get(json_object_get(j, "usage"), "completion_tokens");
    if (json_is_integer(u))
        x->usage_tokens = (long)json_integer_value(u);
    json_t *c = json_array_get(json_object_get(j, "choices"), 0);
    if (c && has_text(c)) {
        double t = now_s();
        if (x->events == 0)
            x->t_first = t;
        else if (push(&x->run->itl, t - x->t_last) != KM_OK)
            x->run->oom = true;
        x->t_last = t;
        x->events++;
    }
    json_decref(j);
}

static void on_line(struct xfer *x)
{
    const char *l = km_buf_str(&x->line);
    size_t n = x->line.len;
    if (n && l[n - 1] == '\r')
        n--;
    if (n < 5 || strncmp(l, "data:", 5) != 0)
        return;
    l += 5;
    n -= 5;
    if (n && *l == ' ') {
        l++;
        n--;
    }
    if (n == 6 && strncmp(l, "[DONE]", 6) == 0)
        return;
    on_event(x, l, n);
}

static size_t on_body(char *b, size_t size, size_t nm, void *ud)
{
    struct xfer *x = ud;
    size_t len = size * nm;
    for (size_t i = 0; i < len; i++) {
        if (b[i] == '\n') {
            on_line(x);
            km_buf_reset(&x->line);
        } else if (km_buf_putc(&x->line, b[i]) != KM_OK) {
            x->failed = true;
            snprintf(x->error, sizeof x->error, "stream line over 1 MiB");
            return 0;
        }
    }
    return len;
}

static int start_xfer(struct level_run *r, CURLM *m, struct xfer *x)
{
    memset(x, 0, sizeof *x);
    x->run = r;
    km_buf_init(&x->line, 1u << 20);
    x->easy = curl_easy_init();
    if (!x->easy)
        return KM_ENOMEM;
    CURL *e = x->easy;
    curl_easy_setopt(e, CURLOPT_URL, r->url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->hdrs);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(e, CURLOPT_PRIVATE, x);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(r->o->timeout * 1000));
    x->t_start = now_s();
    curl_multi_add_handle(m, e);
    return KM_OK;
}

static void fail_reason(struct xfer *x, CURLcode rc, long code)
{
    if (rc != CURLE_OK && !x->failed)
        snprintf(x->error, sizeof x->error, "%s", curl_easy_strerror(rc));
    else if (code != 200 && !x->failed)
        snprintf(x->error, sizeof x->error, "HTTP %ld: %.200s", code,
                 km_buf_str(&x->line));
    else if (!x->failed && x->events == 0)
        snprintf(x->error, sizeof x->error, "the stream had no content");
}

static void end_xfer(struct level_run *r, CURLM *m, struct xfer *x, CURLcode rc)
{
    long code = 0;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
    double t = now_s();
    if (x->line.len && code == 200)
        on_line(x);     /* a last line without its newline */
    bool ok = rc == CURLE_OK && code == 200 && !x->failed && x->events > 0;
    if (ok) {
        r->ok++;
        r->tokens += x->usage_tokens > 0 ? x->usage_tokens : x->events;
        if (push(&r->ttft, x->t_first - x->t_start) || push(&r->e2e, t - x->t_start))
            r->oom = true;
    } else {
        fail_reason(x, rc, code);
        r->errors++;
        if (!r->first_error[0])
            snprintf(r->first_error, sizeof r->first_error, "%s", x->error);
    }
    curl_multi_remove_handle(m, x->easy);
    curl_easy_cleanup(x->easy);
    km_buf_free(&x->line);
    x->easy = NULL;
}

/* ---- one concurrency level ---------------------------------------------- */

static int drive(struct level_run *r, CURLM *m, struct xfer *xs, int conc,
                 long total)
{
    long started = 0, done = 0;
    int rc = KM_OK;
    for (int i = 0; i < conc && started < total && rc == KM_OK; i++) {
        rc = start_xfer(r, m, &xs[i]);
        started += rc == KM_OK;
    }
    while (done < started) {
        int running = 0;
        curl_multi_perform(m, &running);
        int left = 0;
        for (CURLMsg *msg = curl_multi_info_read(m, &left); msg;
             msg = curl_multi_info_read(m, &left)) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            struct xfer *x = NULL;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &x);
            end_xfer(r, m, x, msg->data.result);
            done++;
            if (r->o->progress)
                r->o->progress(r->o->ud, conc, done, total);
            if (started < total && rc == KM_OK) {
                rc = start_xfer(r, m, x);
                started += rc == KM_OK;
            }
        }
        if (done < started)
            curl_multi_poll(m, NULL, 0, 100, NULL);
    }
    return rc;
}

static void level_free(struct level_run *r)
{
    km_free(r->ttft.v);
    km_free(r->itl.v);
    km_free(r->e2e.v);
}

static int run_level(const struct bench_options *o, struct level_run *r, int conc,
                     struct bench_level *out, struct km_err *err)
{
    long total = o->requests > 0 ? o->requests : (conc * 4 > 16 ? conc * 4 : 16);
    struct xfer *xs = km_calloc((size_t)conc, sizeof *xs);
    CURLM *m = curl_multi_init();
    int rc = KM_OK;
    if (!xs || !m) {
        rc = km_fail(err, KM_ENOMEM, "bench: out of memory for %d transfers", conc);
        goto out;
    }
    curl_multi_setopt(m, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)conc);
    double t0 = now_s();
    rc = drive(r, m, xs, conc, total);
    if (rc != KM_OK || r->oom) {
        rc = km_fail(err, KM_ENOMEM, "bench: out of memory at concurrency %d", conc);
        goto out;
    }
    memset(out, 0, sizeof *out);
    out->concurrency = conc;
    out->requests = total;
    out->ok = r->ok;
    out->errors = r->errors;
    out->wall = now_s() - t0;
    out->output_tokens = r->tokens;
    out->tokens_per_s = out->wall > 0 ? (double)r->tokens / out->wall : 0;
    out->requests_per_s = out->wall > 0 ? (double)r->ok / out->wall : 0;
    bench_stats_of(r->ttft.v, r->ttft.n, &out->ttft);
    bench_stats_of(r->itl.v, r->itl.n, &out->itl);
    bench_stats_of(r->e2e.v, r->e2e.n, &out->e2e);
    snprintf(out->first_error, sizeof out->first_error, "%s", r->first_error);
out:
    if (m)
        curl_multi_cleanup(m);
    km_free(xs);
    return rc;
}

/* ---- the request --------------------------------------------------------- */

static const char *const WORDS[] = {
    "the", "model", "reads", "a", "plot", "of", "residuals", "and", "explains",
    "why", "variance", "grows", "with", "time", "in", "this", "data", "set",
};

static char *make_body(const struct bench_options *o, size_t *len)
{
    struct km_buf p;
    km_buf_init(&p, 64u << 20);
    for (long i = 0; i < o->prompt_tokens; i++)
        km_buf_printf(&p, "%s%s", i ? " " : "", WORDS[i % 18]);
    json_t *j = json_pack("{s:s,s:[{s:s,s:s}],s:I,s:b,s:{s:b},s:f}",
                          "model", o->model, "messages", "role", "user",
                          "content", km_buf_str(&p), "max_tokens",
                          (json_int_t)o->max_tokens, "stream", 1,
                          "stream_options", "include_usage", 1,
                          "temperature", 0.0);
    km_buf_free(&p);
    /* vLLM and kanoa-mlops: every answer runs to max_tokens */
    if (j && !o->no_ignore_eos)
        json_object_set_new(j, "ignore_eos", json_true());
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    char *out = s ? km_strdup(s) : NULL;
    free(s);
    *len = out ? strlen(out) : 0;
    return out;
}

static int prepare(const struct bench_options *o, struct level_run *r,
                   struct km_err *err)
{
    size_t ul = strlen(o->url);
    while (ul && o->url[ul - 1] == '/')
        ul--;
    bool v1 = ul >= 3 && strncmp(o->url + ul - 3, "/v1", 3) == 0;
    snprintf(r->url, sizeof r->url, "%.*s%s/chat/completions", (int)ul, o->url,
             v1 ? "" : "/v1");
    r->hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    if (r->hdrs && o->api_key) {
        char auth[512];
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", o->api_key);
        struct curl_slist *h = curl_slist_append(r->hdrs, auth);
        if (!h)
            return km_fail(err, KM_ENOMEM, "bench: out of memory");
        r->hdrs = h;
    }
    r->body = make_body(o, &r->body_len);
    if (!r->hdrs || !r->body)
        return km_fail(err, KM_ENOMEM, "bench: out of memory for the request");
    return KM_OK;
}

static int check_options(const struct bench_options *o, struct km_err *err)
{
    if (!o->url || (strncmp(o->url, "http://", 7) && strncmp(o->url, "https://", 8)))
        return km_fail(err, KM_EINVAL, "--url '%s' must start with http:// or "
                       "https://", o->url ? o->url : "");
    if (strlen(o->url) > 500)
        return km_fail(err, KM_EINVAL, "--url is longer than 500 bytes");
    if (!o->model || !*o->model)
        return km_fail(err, KM_EINVAL, "--model is required");
    if (o->prompt_tokens < 1 || o->prompt_tokens > 1000000 || o->max_tokens < 1 ||
        o->timeout <= 0)
        return km_fail(err, KM_EINVAL, "--prompt-tokens must be 1-1000000, "
                       "--max-tokens at least 1 and the timeout positive");
    return KM_OK;
}

int bench_run(const struct bench_options *o, struct bench_result *out,
              struct km_err *err)
{
    memset(out, 0, sizeof *out);
    int rc = check_options(o, err);
    if (rc != KM_OK)
        return rc;
    static const int def[3] = {1, 4, 16};
    const int *levels = o->n_levels ? o->concurrency : def;
    size_t n = o->n_levels ? o->n_levels : 3;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    snprintf(out->url, sizeof out->url, "%s", o->url);
    snprintf(out->model, sizeof out->model, "%s", o->model);
    out->prompt_tokens = o->prompt_tokens;
    out->max_tokens = o->max_tokens;
    for (size_t i = 0; i < n && rc == KM_OK; i++) {
        struct level_run r = {.o = o};
        rc = prepare(o, &r, err);
        if (rc == KM_OK)
            rc = run_level(o, &r, levels[i], &out->levels[i], err);
        out->n_levels += rc == KM_OK;
        curl_slist_free_all(r.hdrs);
        km_free((void *)r.body);
        level_free(&r);
    }
    return rc;
}
