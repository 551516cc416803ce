/* test_upstream_proxy.c - the upstream backend against real loopback
 * upstreams (tests/gateway/fault_upstream.py): pass-through bytes, retries,
 * timeouts, health ejection and recovery, balancing, cancel, backpressure,
 * metrics, and a leak check over thousands of requests with random cancels. */
#include "server/upstream.h"

#include "base/mem.h"
#include "helpers/gateway_fake.h"
#include "helpers/rec_sink.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Criterion's runner (not the code under test) sometimes leaks 48 bytes when
 * several workers run with -j2; keep LeakSanitizer on for everything else. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:libcriterion.so\n";
}

/* ---- fixtures ------------------------------------------------------------- */

static struct gw_fake fakes[3];
static size_t n_fakes;

static void start_fake(const char *name, const char *const *extra)
{
    const char *args[20] = {"--name", name};
    size_t n = 2;
    for (; extra && *extra; extra++)
        args[n++] = *extra;
    args[n] = NULL;
    cr_assert_eq(gw_fake_start(&fakes[n_fakes], args), 0, "cannot start %s", name);
    n_fakes++;
}

static void stop_fakes(void)
{
    for (size_t i = 0; i < n_fakes; i++)
        gw_fake_stop(&fakes[i]);
    n_fakes = 0;
}

static struct ups_pool *pool_over(size_t n, const char *opts,
                                  struct ups_options *o)
{
    struct ups_spec s[3];
    struct km_err err = {0};
    for (size_t i = 0; i < n; i++) {
        char text[256];
        snprintf(text, sizeof text, "u%zu=%s%s", i, fakes[i].url, opts ? opts : "");
        cr_assert_eq(ups_spec_parse(text, &s[i], &err), KM_OK, "%s", err.msg);
    }
    struct ups_options def;
    if (!o) {
        ups_options_default(&def);
        def.probe_interval_ms = 200;
        def.probe_timeout_ms = 2000;   /* ASan and a busy machine */
        o = &def;
    }
    struct ups_pool *p = NULL;
    cr_assert_eq(ups_pool_new(s, n, o, &p, &err), KM_OK, "%s", err.msg);
    return p;
}

static struct srv_request chat_req(const char *body, bool stream, const char *rid)
{
    struct srv_request r = {0};
    r.ep = SRV_EP_CHAT;
    r.model = "m1";
    r.request_id = rid;
    r.stream = stream;
    r.body = body;
    r.body_len = strlen(body);
    return r;
}

/* Submit and wait; returns the KM code of submit. */
static int run(struct ups_pool *p, const struct srv_request *req, struct rec *r,
               int ms)
{
    struct srv_sink s = rec_sink(r);
    struct srv_job *job = NULL;
    struct km_err err = {0};
    int rc = ups_job_submit(p, req, &s, req->session, &job, &err);
    if (rc != KM_OK) {
        snprintf(r->err_msg, sizeof r->err_msg, "%s", err.msg);
        return rc;
    }
    cr_assert(rec_wait(r, ms), "request %s did not finish in %d ms",
              req->request_id, ms);
    ups_job_release(p, job);
    return KM_OK;
}

static const char *BODY = "{\"model\":\"m1\",\"messages\":[{\"role\":\"user\","
                          "\"content\":\"hi\"}]}";

static void expect_ok_json(struct rec *r, const char *up, const char *rid)
{
    char want[1024];
    snprintf(want, sizeof want,
             "{\"id\":\"chatcmpl-%s\",\"object\":\"chat.completion\","
             "\"created\":1700000000,\"model\":\"m1\",\"upstream\":\"%s\","
             "\"request_id\":\"%s\",\"body_bytes\":%zu,\"choices\":[{\"index\":0,"
             "\"message\":{\"role\":\"assistant\",\"content\":\"hello from %s\"},"
             "\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":3,"
             "\"completion_tokens\":3,\"total_tokens\":6}}",
             rid, up, rid, strlen(BODY), up);
    cr_assert(r->done, "not done: %d %s", r->err_status, r->err_msg);
    cr_assert_eq(r->head_status, 200);
    cr_assert_eq(r->heads, 1);
    cr_assert_str_eq(r->ctype, "application/json");
    cr_assert_str_eq(km_buf_str(&r->body), want);
}

/* One request, finished within 5 s; r is initialised here, freed by the
 * caller. */
static void run_one(struct ups_pool *p, const char *body, bool stream,
                    const char *rid, struct rec *r)
{
    rec_init(r, 1 << 20);
    struct srv_request req = chat_req(body, stream, rid);
    cr_assert_eq(run(p, &req, r, 5000), KM_OK);
}

/* n JSON chats (request ids PREFIX-i), every one answered by fake `up`. */
static void expect_served_by(struct ups_pool *p, int n, const char *prefix,
                             const char *up)
{
    for (int i = 0; i < n; i++) {
        struct rec r;
        char rid[32];
        snprintf(rid, sizeof rid, "%s-%d", prefix, i);
        run_one(p, BODY, false, rid, &r);
        expect_ok_json(&r, up, rid);
        rec_free(&r);
    }
}

/* r failed with `status` and the message "upstream u0 (<its URL>) <what>". */
static void expect_u0_error(const struct rec *r, int status, const char *what)
{
    char want[512];
    snprintf(want, sizeof want, "upstream u0 (%s) %s", fakes[0].url, what);
    cr_assert_eq(r->err_status, status);
    cr_assert_str_eq(r->err_msg, want);
}

/* Options for tests that run probe rounds themselves (ups_pool_probe_now). */
static struct ups_options probes_on_demand(void)
{
    struct ups_options o;
    ups_options_default(&o);
    o.probe_timeout_ms = 2000;      /* ASan and a busy machine */
    o.probe_interval_ms = 60000;
    return o;
}

static bool metrics_have(struct ups_pool *p, const char *line)
{
    struct km_buf m;
    km_buf_init(&m, 1 << 20);
    cr_assert_eq(ups_pool_metrics(p, &m), KM_OK);
    bool yes = strstr(km_buf_str(&m), line) != NULL;
    if (!yes)
        cr_log_error("no '%s' in:\n%s", line, km_buf_str(&m));
    km_buf_free(&m);
    return yes;
}

/* POST /control to fake i (e.g. {"health":false}). */
static void fake_control(size_t i, const char *json)
{
    char url[128], out[256];
    snprintf(url, sizeof url, "%s/control", fakes[i].url);
    cr_assert_eq(gw_http("POST", url, json, out, sizeof out), 200);
}

TestSuite(upstream_proxy, .fini = stop_fakes, .timeout = 60);

Test(upstream_proxy, json_pass_through_and_models)
{
    start_fake("a", (const char *const[]){"--models", "m1,m2,e5", NULL});
    struct ups_pool *p = pool_over(1, ",embed=e5", NULL);
    struct srv_model_info m[4];
    cr_assert_eq(ups_pool_models(p, m, 4), 3);
    cr_assert_str_eq(m[0].id, "m1");
    cr_assert_str_eq(m[1].id, "m2");
    cr_assert_str_eq(m[2].id, "e5");
    cr_assert_eq(m[1].max_model_len, 4096);
    cr_assert_str_eq(m[1].owned_by, "vllm");
    cr_assert_eq(m[1].task, SRV_TASK_GENERATE);
    cr_assert_eq(m[2].task, SRV_TASK_EMBED, "embed= marks embedding models");
    cr_assert_eq(ups_pool_healthy(p), 1);
    struct rec r;
    run_one(p, BODY, false, "req-1", &r);
    expect_ok_json(&r, "a", "req-1");
    /* unknown model: 404-class error at submit, nothing called back */
    struct rec r2;
    rec_init(&r2, 1 << 20);
    struct srv_request req = chat_req(BODY, false, "req-1");
    req.model = "nope";
    cr_assert_eq(run(p, &req, &r2, 5000), KM_ENOTFOUND);
    cr_assert_str_eq(r2.err_msg, "The model `nope` does not exist.");
    ups_pool_free(p);
    rec_free(&r);
    rec_free(&r2);
}

Test(upstream_proxy, sse_stream_is_verbatim_and_measured)
{
    start_fake("a", (const char *const[]){"--tokens", "5", NULL});
    struct ups_pool *p = pool_over(1, NULL, NULL);
    struct rec r;
    rec_init(&r, 1 << 20);
    r.full_polls = 3;   /* the client is slow at first: pause, then resume */
    struct srv_request req = chat_req("{\"model\":\"m1\",\"stream\":true}", true,
                                      "s-1");
    cr_assert_eq(run(p, &req, &r, 5000), KM_OK);
    cr_assert(r.done);
    cr_assert_str_eq(r.ctype, "text/event-stream");
    struct km_buf want;
    km_buf_init(&want, 1 << 16);
    for (int t = 0; t < 5; t++)
        km_buf_printf(&want, "data: {\"id\":\"chatcmpl-s-1\",\"object\":"
                      "\"chat.completion.chunk\",\"model\":\"m1\",\"upstream\":"
                      "\"a\",\"choices\":[{\"index\":0,\"delta\":{\"content\":"
                      "\"t%d \"},\"finish_reason\":null}]}\n\n", t);
    km_buf_puts(&want, "data: [DONE]\n\n");
    cr_assert_str_eq(km_buf_str(&r.body), km_buf_str(&want));
    km_buf_free(&want);
    static const char *const lines[] = {
        "kanoa_gateway:time_to_first_token_seconds_count"
        "{model_name=\"m1\",upstream=\"u0\"} 1\n",
        "kanoa_gateway:inter_token_latency_seconds_count"
        "{model_name=\"m1\",upstream=\"u0\"} 4\n",
        "kanoa_upstream_requests_total{upstream=\"u0\",model=\"m1\",code=\"200\"} 1\n",
        "kanoa_upstream_healthy{upstream=\"u0\"} 1\n",
        "kanoa_upstream_in_flight{upstream=\"u0\"} 0\n",
        "kanoa_upstream_waiting{upstream=\"u0\"} 0\n",
        "# TYPE kanoa_upstream_latency_seconds histogram\n",
        "kanoa_upstream_latency_seconds_count{upstream=\"u0\"} 1\n",
    };
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++)
        cr_assert(metrics_have(p, lines[i]));
    ups_pool_free(p);
    rec_free(&r);
}

Test(upstream_proxy, request_id_and_large_body_forwarded)
{
    start_fake("a", NULL);
    struct ups_pool *p = pool_over(1, NULL, NULL);
    /* a 6 MB body, like a chat message carrying a base64 plot */
    size_t n = 6u << 20;
    char *body = km_malloc(n + 128);
    int k = snprintf(body, 128, "{\"model\":\"m1\",\"messages\":[{\"role\":\"user\","
                     "\"content\":\"data:image/png;base64,");
    memset(body + k, 'A', n);
    strcpy(body + k + n, "\"}]}");
    struct rec r;
    rec_init(&r, 1 << 20);
    struct srv_request req = chat_req(body, false, "big-7");
    cr_assert_eq(run(p, &req, &r, 20000), KM_OK);
    cr_assert(r.done, "%d %s", r.err_status, r.err_msg);
    char want[64];
    snprintf(want, sizeof want, "\"body_bytes\":%zu,", strlen(body));
    cr_assert(strstr(km_buf_str(&r.body), want), "%s", km_buf_str(&r.body));
    cr_assert(strstr(km_buf_str(&r.body), "\"request_id\":\"big-7\""));
    km_free(body);
    ups_pool_free(p);
    rec_free(&r);
}

Test(upstream_proxy, failover_on_500_then_502_naming_upstream)
{
    start_fake("bad", (const char *const[]){"--mode", "500", NULL});
    start_fake("good", NULL);
    struct ups_pool *p = pool_over(2, NULL, NULL);
    expect_served_by(p, 6, "f", "good");
    ups_pool_free(p);
    stop_fakes();
    /* only the failing one: the client gets 502 naming it */
    start_fake("bad", (const char *const[]){"--mode", "500", NULL});
    p = pool_over(1, NULL, NULL);
    struct rec r;
    run_one(p, BODY, false, "f-x", &r);
    cr_assert_eq(r.heads, 0);
    cr_assert_str_eq(r.err_type, "bad_gateway");
    expect_u0_error(&r, 502, "answered HTTP 500: {\"error\":{\"message\":"
                    "\"injected 500 from bad\",\"type\":\"InternalServerError\","
                    "\"param\":null,\"code\":500}}");
    rec_free(&r);
    ups_pool_free(p);
}

Test(upstream_proxy, drop_mid_stream_is_terminal_502)
{
    start_fake("a", NULL);
    start_fake("b", NULL);
    struct ups_pool *p = pool_over(2, NULL, NULL);
    struct rec r;
    run_one(p, "{\"model\":\"m1\",\"stream\":true,\"messages\":"
            "[{\"content\":\"FAULT:drop\"}]}", true, "d-1", &r);
    cr_assert_eq(r.heads, 1);
    cr_assert_eq(r.head_status, 200);
    cr_assert_not(r.done);
    cr_assert_eq(r.err_status, 502);
    cr_assert(strstr(r.err_msg, "broke off the response"), "%s", r.err_msg);
    cr_assert(strncmp(r.err_msg, "upstream u", 10) == 0, "%s", r.err_msg);
    /* exactly the two chunks sent before the drop reached the client */
    const char *b = km_buf_str(&r.body);
    cr_assert(strstr(b, "\"t1 \""));
    cr_assert_null(strstr(b, "\"t2 \""));
    /* and the stream ends with an OpenAI error event, then [DONE] */
    char tail[700];
    snprintf(tail, sizeof tail, "\"finish_reason\":null}]}\n\ndata: {\"error\":"
             "{\"message\":\"%s\",\"type\":\"bad_gateway\",\"param\":null,"
             "\"code\":502}}\n\ndata: [DONE]\n\n", r.err_msg);
    size_t bl = strlen(b), tl = strlen(tail);
    cr_assert(bl > tl && strcmp(b + bl - tl, tail) == 0, "%s", b);
    rec_free(&r);
    ups_pool_free(p);
}

Test(upstream_proxy, close_before_answer_retries_elsewhere)
{
    start_fake("a", (const char *const[]){"--mode", "close", NULL});
    start_fake("b", (const char *const[]){"--mode", "close", NULL});
    struct ups_pool *p = pool_over(2, NULL, NULL);
    struct rec r;
    run_one(p, BODY, false, "c-1", &r);
    cr_assert_eq(r.err_status, 502);
    cr_assert(strstr(r.err_msg, "closed the connection before answering"),
              "%s", r.err_msg);
    rec_free(&r);
    /* both replicas were tried (libcurl itself may resend once on a
     * reused keep-alive connection that closes without an answer) */
    char out[512];
    for (int i = 0; i < 2; i++) {
        char url[128];
        snprintf(url, sizeof url, "%s/stats", fakes[i].url);
        cr_assert_eq(gw_http("GET", url, NULL, out, sizeof out), 200);
        cr_assert_null(strstr(out, "\"requests\":0,"), "%s", out);
    }
    ups_pool_free(p);
}

Test(upstream_proxy, slow_first_byte_times_out_then_fails_over)
{
    start_fake("slow", (const char *const[]){"--mode", "slow", "--slow", "3", NULL});
    start_fake("fast", NULL);
    struct ups_options o = probes_on_demand();
    o.first_byte_timeout_ms = 400;
    o.probe_interval_ms = 5000;
    struct ups_pool *p = pool_over(2, NULL, &o);
    expect_served_by(p, 2, "t", "fast");
    ups_pool_free(p);
    stop_fakes();
    start_fake("slow", (const char *const[]){"--mode", "slow", "--slow", "3", NULL});
    p = pool_over(1, NULL, &o);
    struct rec r;
    run_one(p, BODY, false, "t-x", &r);
    expect_u0_error(&r, 504, "sent no response within 400 ms");
    rec_free(&r);
    ups_pool_free(p);
}

Test(upstream_proxy, hang_mid_stream_hits_idle_timeout)
{
    start_fake("a", NULL);
    struct ups_options o = probes_on_demand();
    o.probe_interval_ms = 2000;
    o.idle_timeout_ms = 300;
    struct ups_pool *p = pool_over(1, NULL, &o);
    struct rec r;
    run_one(p, "{\"model\":\"m1\",\"stream\":true,\"messages\":"
            "[{\"content\":\"FAULT:hang\"}]}", true, "h-1", &r);
    cr_assert_eq(r.heads, 1);
    expect_u0_error(&r, 504, "sent nothing more within 300 ms");
    rec_free(&r);
    ups_pool_free(p);
}

Test(upstream_proxy, cancel_aborts_and_frees)
{
    start_fake("a", NULL);
    struct ups_pool *p = pool_over(1, NULL, NULL);
    struct rec r;
    rec_init(&r, 1 << 20);
    struct srv_request req = chat_req("{\"model\":\"m1\",\"messages\":"
                                      "[{\"content\":\"FAULT:silent\"}]}", false, "x-1");
    struct srv_sink s = rec_sink(&r);
    struct srv_job *job = NULL;
    struct km_err err = {0};
    cr_assert_eq(ups_job_submit(p, &req, &s, NULL, &job, &err), KM_OK);
    /* wait (bounded: 5 s) for the transfer to start; a loaded machine may
     * take longer than any fixed sleep */
    for (int i = 0; i < 500 && ups_pool_live_transfers(p) != 1; i++)
        usleep(10000);
    cr_assert_eq(ups_pool_live_transfers(p), 1);
    usleep(100000); /* the upstream now holds the request open */
    ups_job_cancel(p, job);
    cr_assert(rec_wait(&r, 2000));
    cr_assert_eq(r.err_status, 499);
    cr_assert_str_eq(r.err_msg, "request canceled by the client");
    ups_job_cancel(p, job);     /* a no-op after the end */
    ups_job_release(p, job);
    cr_assert_eq(ups_pool_live_transfers(p), 0);
    cr_assert(metrics_have(p, "kanoa_upstream_errors_total{upstream=\"u0\","
                           "kind=\"canceled\"} 1\n"));
    rec_free(&r);
    ups_pool_free(p);
}

Test(upstream_proxy, flapping_health_ejects_and_recovers)
{
    start_fake("a", NULL);
    struct ups_options o = probes_on_demand();
    struct ups_pool *p = pool_over(1, NULL, &o);
    cr_assert_eq(ups_pool_healthy(p), 1);
    fake_control(0, "{\"health\":false}");
    ups_pool_probe_now(p);
    cr_assert_eq(ups_pool_healthy(p), 1, "one failure (fall=2) keeps it");
    ups_pool_probe_now(p);
    cr_assert_eq(ups_pool_healthy(p), 0, "two failures eject it");
    /* ejected: requests get 503 naming the reason */
    struct rec r;
    run_one(p, BODY, false, "e-1", &r);
    cr_assert_eq(r.err_status, 503);
    cr_assert_str_eq(r.err_msg, "no healthy upstream for model `m1` (u0 ejected)");
    rec_free(&r);
    fake_control(0, "{\"health\":true}");
    ups_pool_probe_now(p);
    cr_assert_eq(ups_pool_healthy(p), 0, "one success (rise=2) is not enough");
    ups_pool_probe_now(p);
    cr_assert_eq(ups_pool_healthy(p), 1);
    /* flapping: fail, ok, fail, ok never reaches fall=2 */
    for (int i = 0; i < 4; i++) {
        fake_control(0, i % 2 ? "{\"health\":true}" : "{\"health\":false}");
        ups_pool_probe_now(p);
        cr_assert_eq(ups_pool_healthy(p), 1);
    }
    ups_pool_free(p);
}

Test(upstream_proxy, dead_replica_connect_error_fails_over)
{
    start_fake("a", NULL);
    start_fake("b", NULL);
    struct ups_options o = probes_on_demand();
    struct ups_pool *p = pool_over(2, NULL, &o);
    cr_assert_eq(ups_pool_healthy(p), 2);
    gw_fake_stop(&fakes[0]);
    expect_served_by(p, 4, "k", "b");
    struct ups_status st;
    ups_pool_status(p, 0, &st);
    cr_assert_not(st.healthy, "two connect failures eject u0");
    cr_assert(metrics_have(p, "kanoa_upstream_errors_total{upstream=\"u0\","
                           "kind=\"connect\"} 2\n"));
    ups_pool_free(p);
}

Test(upstream_proxy, waiting_metric_steers_load)
{
    start_fake("busy", (const char *const[]){"--waiting", "50", NULL});
    start_fake("idle", NULL);
    struct ups_pool *p = pool_over(2, NULL, NULL);
    struct ups_status st;
    ups_pool_status(p, 0, &st);
    cr_assert_eq(st.waiting, 50);
    expect_served_by(p, 8, "w", "idle");
    ups_pool_free(p);
}

Test(upstream_proxy, session_affinity_sticks)
{
    start_fake("a", NULL);
    start_fake("b", NULL);
    start_fake("c", NULL);
    struct ups_pool *p = pool_over(3, NULL, NULL);
    for (int s = 0; s < 3; s++) {
        char sess[16], first[8] = "";
        snprintf(sess, sizeof sess, "user-%d", s);
        for (int i = 0; i < 5; i++) {
            struct rec r;
            rec_init(&r, 1 << 20);
            struct srv_request req = chat_req(BODY, false, "aff");
            req.session = sess;
            cr_assert_eq(run(p, &req, &r, 5000), KM_OK);
            const char *u = strstr(km_buf_str(&r.body), "\"upstream\":\"");
            cr_assert_not_null(u);
            if (i == 0)
                snprintf(first, sizeof first, "%c", u[12]);
            else
                cr_assert_eq(u[12], first[0], "session %s moved", sess);
            rec_free(&r);
        }
    }
    ups_pool_free(p);
}

/* ---- many requests with random cancels: no leak, nothing hangs ---------- */

struct slot {
    double cancel_at;   /* 0 = never */
    struct rec r;
    struct srv_request req;
    struct srv_job *job;
    char rid[24];
    bool busy;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void stress(struct ups_pool *p, int total, int conc)
{
    struct slot *sl = calloc((size_t)conc, sizeof *sl);
    unsigned seed = 12345;
    int started = 0, finished = 0, canceled = 0, ok = 0, gw_errors = 0;
    double deadline = (double)time(NULL) + 120;
    while (finished < total && time(NULL) < deadline) {
        for (int i = 0; i < conc; i++) {
            struct slot *s = &sl[i];
            if (s->busy) {
                if (s->cancel_at > 0 && now_s() >= s->cancel_at) {
                    ups_job_cancel(p, s->job);
                    s->cancel_at = 0;
                }
                pthread_mutex_lock(&s->r.mu);
                bool f = s->r.finished;
                pthread_mutex_unlock(&s->r.mu);
                if (!f)
                    continue;
                ok += s->r.done;
                canceled += s->r.err_status == 499;
                /* anything else must be a clear gateway error (a loaded
                 * loopback fake may reset a connection now and then) */
                bool clear = s->r.err_status >= 502 && s->r.err_status <= 504 &&
                             (strncmp(s->r.err_msg, "upstream u", 10) == 0 ||
                              strncmp(s->r.err_msg, "no healthy upstream", 19) == 0);
                gw_errors += !s->r.done && s->r.err_status != 499;
                cr_assert(s->r.done || s->r.err_status == 499 || clear,
                          "request %s: %d %s", s->rid, s->r.err_status, s->r.err_msg);
                ups_job_release(p, s->job);
                rec_free(&s->r);
                s->busy = false;
                finished++;
            }
            if (started == total)
                continue;
            rec_init(&s->r, 1 << 20);
            snprintf(s->rid, sizeof s->rid, "st-%d", started);
            bool stream = started % 2;
            s->req = chat_req(stream ? "{\"model\":\"m1\",\"stream\":true}" : BODY,
                              stream, s->rid);
            struct srv_sink sk = rec_sink(&s->r);
            struct km_err err = {0};
            cr_assert_eq(ups_job_submit(p, &s->req, &sk, NULL, &s->job, &err), KM_OK);
            s->busy = true;
            /* one request in ten is abandoned by its client 0-4 ms in */
            s->cancel_at = rand_r(&seed) % 10 == 0 ?
                           now_s() + (rand_r(&seed) % 4000) * 1e-6 : 0;
            started++;
        }
        usleep(200);
    }
    cr_assert_eq(finished, total, "only %d of %d finished", finished, total);
    cr_assert(canceled > total / 40 && ok > total / 2 && gw_errors < total / 100,
              "ok %d canceled %d gateway errors %d", ok, canceled, gw_errors);
    free(sl);
}

Test(upstream_proxy, ten_thousand_requests_random_cancels_no_leak, .timeout = 240)
{
    start_fake("a", NULL);
    start_fake("b", NULL);
    long live0 = km_mem_live();
    struct ups_pool *p = pool_over(2, NULL, NULL);
    stress(p, 10000, 32);
    /* a health probe (every 200 ms here) may be in flight: bounded wait */
    for (int k = 0; k < 250 && ups_pool_live_transfers(p) != 0; k++)
        usleep(20000);
    cr_assert_eq(ups_pool_live_transfers(p), 0);
    struct ups_status st;
    for (int i = 0; i < 2; i++) {
        ups_pool_status(p, (size_t)i, &st);
        cr_assert_eq(st.in_flight, 0);
    }
    ups_pool_free(p);
    cr_assert_eq(km_mem_live(), live0, "km heap: %ld live after, %ld before",
                 km_mem_live(), live0);
    /* upstream connections closed once the pool is gone */
    char url[128], out[512];
    for (int i = 0; i < 2; i++) {
        snprintf(url, sizeof url, "%s/stats", fakes[i].url);
        for (int k = 0; k < 250; k++) { /* bounded: 5 s */
            gw_http("GET", url, NULL, out, sizeof out);
            if (strstr(out, "\"open\":1,"))
                break;
            usleep(20000);
        }
        cr_assert(strstr(out, "\"open\":1,"), "upstream %d: %s", i, out);
    }
}

Test(upstream_proxy, slow_start_joins_at_first_pass)
{
    start_fake("a", NULL);
    fake_control(0, "{\"health\":false}");
    struct ups_options o = probes_on_demand();
    struct ups_pool *p = pool_over(1, NULL, &o);
    cr_assert_eq(ups_pool_healthy(p), 0, "still loading: not in rotation");
    ups_pool_probe_now(p);
    cr_assert_eq(ups_pool_healthy(p), 0);
    fake_control(0, "{\"health\":true}");
    ups_pool_probe_now(p);
    cr_assert_eq(ups_pool_healthy(p), 1, "the first pass ever admits at once");
    ups_pool_free(p);
}
