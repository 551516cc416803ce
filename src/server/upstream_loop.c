/* upstream_loop.c - the gateway's transfers: libcurl multi handles driven
 * by curl_multi_socket_action on srv_loop event loops (loop.h).
 *
 * Lanes: a lane is one multi handle (with its connection cache) on one
 * loop. A request submitted from an HTTP thread's loop runs in that loop's
 * lane (created at its first request), so the request is forwarded, the
 * answer read and handed to the client's connection on the thread that
 * received it: no thread switch and no wake-up between the client and the
 * upstream. The pool's own loop and thread (the home lane) runs the health
 * probes and the requests submitted from any other thread (tests, tools).
 *
 * Job life cycle (all on the lane's thread unless noted):
 *
 *   submit (any thread) -> queued -> attempt on replica R -> headers
 *      -> status < 500: head sent to the client, body streamed -> done
 *      -> status >= 500: body kept (bounded) -> retry on another replica
 *   connect error, first-byte timeout or a close before any byte reached the
 *   client -> retry on another replica (at most max_attempts, each replica
 *   once); once a byte reached the client a failure is terminal (502/504).
 *   cancel (any thread) sets a flag and wakes the lane's loop; the lane
 *   aborts the transfer and reports on_error(499).
 *
 * After calling a job's terminal callback the loop never touches the job
 * again: the server may release it from the callback or any thread.
 * Backpressure: when sink->raw_full says the client is behind, the write
 * callback pauses the transfer; the lane polls every 5 ms and resumes it.
 *
 * Delivery (latency): every sink call resumes the client's HTTP connection,
 * and each resume costs libmicrohttpd a round of work. So the head and body
 * bytes read from one socket event are held in the job (j->held, at most
 * HOLD_MAX) and delivered together right after it; a completed transfer
 * delivers them right before its terminal callback, which comes before the
 * libcurl clean-up. A stream's `data: [DONE]` is held until the body ends
 * (the upstream's last chunk follows at once), at most HOLD_DONE_MS, so the
 * client gets its last event and the end of the stream from one resume.
 * Easy handles are reset and reused.
 */
#include "server/upstream_int.h"

#include "base/log.h"
#include "base/mem.h"
#include "server/loop.h"

#include <sys/epoll.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <stdlib.h>
#include <time.h>

enum { TAG_JOB = 0x4a4f42, TAG_PROBE = 0x50524f };

#define HOLD_MAX (64u * 1024)   /* bytes held before delivering mid-pass */
#define HOLD_DONE_MS 2          /* longest wait for the body end after [DONE] */

struct lane_sock {              /* one socket libcurl asked us to watch */
    struct srv_loop_io io;      /* first: the io callback casts back */
    struct ups_lane *lane;
    bool dead;                  /* libcurl is done with it: freed in run */
    struct lane_sock *next;
};

struct ups_lane {
    struct srv_loop_src src;
    struct ups_pool *pool;
    struct srv_loop *loop;
    CURLM *multi;
    bool home;                  /* the pool's own loop: probes too */
    bool claimed;               /* ups_pool_free shuts it down (pool->qmu) */
    pthread_mutex_t qmu;
    struct srv_job *q_head, *q_tail;    /* submitted, not started */
    struct srv_job *active;
    double timer_at;            /* libcurl's timeout, < 0 none */
    struct lane_sock *socks;
    CURL *spare[UPS_SPARE_EASY];        /* reusable easy handles */
    int n_spare;
    struct ups_lane *next;      /* pool->lanes */
};

struct srv_job {
    int tag;                    /* TAG_JOB: CURLOPT_PRIVATE points here */
    struct ups_pool *pool;
    struct ups_lane *lane;      /* runs there (its thread only) */
    struct srv_loop *loop;      /* the lane's loop, referenced until release */
    const struct srv_request *req;
    struct srv_sink sink;
    const char *affinity;
    char path[32];
    CURL *easy;
    struct curl_slist *hdrs;
    int up;                     /* replica of the current attempt, -1 none */
    uint64_t tried;             /* replicas tried (bit per index) */
    int attempts;
    atomic_bool cancel;
    int status;                 /* final status of the current attempt */
    char ctype[128];
    bool head_seen;             /* response headers complete */
    bool head_sent;             /* on_raw_head called (committed) */
    bool head_due;              /* head read, not delivered yet */
    bool buffering;             /* 5xx: keep the body for the error */
    bool paused;
    bool aborted_timeout;       /* the loop stopped it: timeout kind below */
    enum ups_err_kind abort_kind;
    struct km_buf errbody;
    struct km_buf held;         /* body bytes read, not delivered yet */
    double t_done;              /* when [DONE] was read and held, 0 none */
    double t_submit, t_attempt, t_last_byte, t_last_event;
    unsigned long events;
    size_t bytes_sent;
    struct ups_sse_scan sse;
    char last_err[320];         /* why the last attempt failed */
    int last_http;              /* status to report when all attempts fail */
    struct srv_job *next;
};

enum probe_kind { PROBE_HEALTH, PROBE_MODELS, PROBE_METRICS };

struct ups_probe {
    int tag;                    /* TAG_PROBE */
    struct ups_pool *pool;
    struct ups_lane *lane;
    size_t up;
    enum probe_kind kind;
    CURL *easy;
    struct km_buf body;
    struct ups_probe *next;
};

static const char *path_for(enum srv_endpoint ep)
{
    switch (ep) {
    case SRV_EP_CHAT: return "/v1/chat/completions";
    case SRV_EP_COMPLETION: return "/v1/completions";
    case SRV_EP_EMBEDDING: return "/v1/embeddings";
    }
    return "/v1/chat/completions";
}

/* ---- callbacks from libcurl (event thread) ------------------------------ */

static void commit_head(struct srv_job *j)
{
    if (j->head_sent)
        return;
    j->head_sent = true;
    if (j->sink.on_raw_head)
        j->sink.on_raw_head(j->sink.ud, j->status,
                            j->ctype[0] ? j->ctype : "application/json");
}

static void header_done(struct srv_job *j)
{
    if (j->status >= 100 && j->status < 200)
        return;             /* 100 Continue and friends: wait for the real one */
    j->head_seen = true;
    struct ups_pool *p = j->pool;
    pthread_mutex_lock(&p->mu);
    ups__hist_observe(&p->ups[j->up].latency, ups__lat_bounds, UPS_LAT_BUCKETS,
                      ups__now() - j->t_attempt);
    pthread_mutex_unlock(&p->mu);
    if (j->status >= 500)
        j->buffering = true;
    else
        j->head_due = true;     /* delivered at the end of the pass */
}

static size_t on_header(char *b, size_t size, size_t n, void *ud)
{
    struct srv_job *j = ud;
    size_t len = size * n;
    j->t_last_byte = ups__now();
    if (len >= 5 && strncmp(b, "HTTP/", 5) == 0) {
        const char *sp = memchr(b, ' ', len);
        j->status = sp ? atoi(sp + 1) : 0;
        j->ctype[0] = '\0';
    } else if (len > 13 && strncasecmp(b, "content-type:", 13) == 0) {
        size_t i = 13, e = len;
        while (i < e && (b[i] == ' ' || b[i] == '\t'))
            i++;
        while (e > i && (b[e - 1] == '\r' || b[e - 1] == '\n' || b[e - 1] == ' '))
            e--;
        snprintf(j->ctype, sizeof j->ctype, "%.*s", (int)(e - i), b + i);
    } else if (len <= 2 && (b[0] == '\r' || b[0] == '\n')) {
        header_done(j);
    }
    return atomic_load(&j->cancel) ? 0 : len;
}

/* Hand the head and the held bytes to the sink (one wake of the client). */
static void deliver(struct srv_job *j)
{
    if (j->head_due || j->held.len)
        commit_head(j);
    j->head_due = false;
    if (j->held.len && j->sink.on_raw)
        j->sink.on_raw(j->sink.ud, j->held.data, j->held.len);
    km_buf_reset(&j->held);
    j->t_done = 0;
}

static void observe_events(struct srv_job *j, unsigned long k)
{
    double now = ups__now();
    double ttft = -1, itl = -1;
    for (unsigned long i = 0; i < k; i++) {
        if (j->events == 0)
            ttft = now - j->t_submit;
        else if (i == 0)
            itl = now - j->t_last_event;
        j->events++;
        if (ttft >= 0 || itl >= 0)
            ups__observe_tokens(j->pool, (size_t)j->up, j->req->model, ttft, itl);
        ttft = itl = -1;
        if (i + 1 < k)
            itl = 0;    /* several events in one read: arrived together */
    }
    j->t_last_event = now;
}

static size_t on_body(char *b, size_t size, size_t n, void *ud)
{
    struct srv_job *j = ud;
    size_t len = size * n;
    if (atomic_load(&j->cancel))
        return 0;
    j->t_last_byte = ups__now();
    if (j->buffering) {
        size_t room = j->pool->opt.error_body_max - j->errbody.len;
        km_buf_append(&j->errbody, b, len < room ? len : room);
        return len;
    }
    if (j->sink.raw_full && j->sink.raw_full(j->sink.ud)) {
        j->paused = true;
        return CURL_WRITEFUNC_PAUSE;
    }
    if (j->req->stream) {
        unsigned long k = ups_sse_scan_feed(&j->sse, b, len);
        if (k)
            observe_events(j, k);
        if (j->sse.done && !j->t_done)
            j->t_done = j->t_last_byte;
    }
    j->bytes_sent += len;
    if (km_buf_append(&j->held, b, len) != KM_OK) {
        deliver(j);             /* cannot hold: pass these on directly */
        commit_head(j);
        if (j->sink.on_raw)
            j->sink.on_raw(j->sink.ud, b, len);
    } else if (j->held.len >= HOLD_MAX) {
        deliver(j);
    }
    return len;
}

/* ---- attempts ----------------------------------------------------------- */

static int setup_easy(struct srv_job *j, const struct ups_up *u)
{
    char url[UPS_URL_MAX + 64], rid[300];
    snprintf(url, sizeof url, "%s%s", u->spec.url, j->path);
    snprintf(rid, sizeof rid, "X-Request-Id: %s", j->req->request_id);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    struct curl_slist *h2 = h ? curl_slist_append(h, "Expect:") : NULL;
    struct curl_slist *h3 = h2 ? curl_slist_append(h2, rid) : NULL;
    if (h3 && u->auth[0])
        h3 = curl_slist_append(h3, u->auth);
    j->hdrs = h3 ? h3 : h;
    if (!h3)
        return KM_ENOMEM;
    CURL *e = j->easy;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, j->hdrs);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, j->req->body);   /* not copied */
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)j->req->body_len);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)j->pool->opt.connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, j);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, j);
    curl_easy_setopt(e, CURLOPT_PRIVATE, j);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    return KM_OK;
}

/* Why no replica is left: "a ejected, b failed" over those serving it. */
static void explain_locked(const struct srv_job *j, char *why, size_t cap)
{
    struct ups_pool *p = j->pool;
    size_t len = 0;
    why[0] = '\0';
    for (size_t i = 0; i < p->n && len + 1 < cap; i++) {
        const struct ups_up *u = &p->ups[i];
        if (!ups__serves_locked(u, j->req->model))
            continue;
        int n = snprintf(why + len, cap - len, "%s%s %s", len ? ", " : "",
                         u->spec.name, (j->tried & (1ull << i)) ? "failed"
                         : "ejected");
        len += n > 0 ? (size_t)n : 0;
    }
    if (!why[0])
        snprintf(why, cap, "no upstream serves it");
}

/* Choose a replica not tried yet; -1 when none, with the reason in why. */
static int choose(struct srv_job *j, char *why, size_t cap)
{
    struct ups_pool *p = j->pool;
    struct ups_cand c[UPS_MAX_UPSTREAMS];
    pthread_mutex_lock(&p->mu);
    for (size_t i = 0; i < p->n; i++) {
        struct ups_up *u = &p->ups[i];
        c[i].name = u->spec.name;
        c[i].eligible = u->healthy && !(j->tried & (1ull << i)) &&
                        ups__serves_locked(u, j->req->model);
        c[i].in_flight = atomic_load(&u->in_flight);
        c[i].waiting = u->waiting;
    }
    int k = ups_balance_pick(c, p->n, j->affinity, p->rr++);
    if (k < 0)
        explain_locked(j, why, cap);
    pthread_mutex_unlock(&p->mu);
    return k;
}

/* Spare easy handles (lane thread only): reset and reused, so an attempt
 * does not allocate and free libcurl's per-handle buffers each time. */
static CURL *easy_get(struct ups_lane *ln)
{
    return ln->n_spare ? ln->spare[--ln->n_spare] : curl_easy_init();
}

static void easy_put(struct ups_lane *ln, CURL *e)
{
    if (!e)
        return;
    curl_multi_remove_handle(ln->multi, e);
    if (ln->n_spare < UPS_SPARE_EASY) {
        curl_easy_reset(e);
        ln->spare[ln->n_spare++] = e;
    } else {
        curl_easy_cleanup(e);
    }
}

/* What an attempt holds in libcurl, detached from its job so that it can
 * be released after the job's terminal callback (off the client's path). */
struct attempt {
    CURL *easy;
    struct curl_slist *hdrs;
};

static struct attempt take_attempt(struct srv_job *j)
{
    struct attempt a = {j->easy, j->hdrs};
    j->easy = NULL;
    j->hdrs = NULL;
    if (j->up >= 0)
        atomic_fetch_sub(&j->pool->ups[j->up].in_flight, 1);
    j->up = -1;
    return a;
}

static void drop_attempt(struct ups_lane *ln, struct attempt a)
{
    easy_put(ln, a.easy);
    curl_slist_free_all(a.hdrs);
}

static void end_attempt(struct srv_job *j)
{
    drop_attempt(j->lane, take_attempt(j));
}

/* Start the next attempt; false when no replica is left. */
static bool start_attempt(struct srv_job *j)
{
    char why[200];
    if (j->attempts >= j->pool->opt.max_attempts)
        return false;
    int k = choose(j, why, sizeof why);
    if (k < 0) {
        if (j->attempts == 0) {
            snprintf(j->last_err, sizeof j->last_err, "no healthy upstream "
                     "for model `%s` (%s)", j->req->model, why);
            j->last_http = 503;
        }
        return false;
    }
    j->easy = easy_get(j->lane);
    j->up = k;
    atomic_fetch_add(&j->pool->ups[k].in_flight, 1);
    if (!j->easy || setup_easy(j, &j->pool->ups[k]) != KM_OK) {
        snprintf(j->last_err, sizeof j->last_err, "out of memory starting the "
                 "upstream request");
        j->last_http = 500;
        end_attempt(j);
        return false;
    }
    j->tried |= 1ull << k;
    j->attempts++;
    j->status = 0;
    j->head_seen = j->buffering = j->paused = j->aborted_timeout = false;
    j->head_due = false;
    j->t_done = 0;
    km_buf_reset(&j->errbody);
    km_buf_reset(&j->held);
    j->t_attempt = j->t_last_byte = ups__now();
    if (curl_multi_add_handle(j->lane->multi, j->easy) != CURLM_OK) {
        snprintf(j->last_err, sizeof j->last_err, "cannot start the upstream "
                 "request (libcurl multi handle refused it)");
        j->last_http = 500;
        curl_easy_cleanup(j->easy);
        j->easy = NULL;
        end_attempt(j);
        return false;
    }
    return true;
}

/* Terminal callbacks: the job must not be touched after these. The
 * attempt's libcurl handles are released after the callback, so the client
 * is woken without waiting for that clean-up. */
static struct attempt job_finish(struct srv_job *j, struct srv_sink *s)
{
    struct attempt a = take_attempt(j);
    km_buf_free(&j->errbody);
    km_buf_free(&j->held);
    *s = j->sink;
    atomic_fetch_sub(&j->pool->live, 1);
    return a;
}

static void job_error(struct srv_job *j, int http, const char *type,
                      const char *msg)
{
    struct ups_lane *ln = j->lane;
    struct srv_sink s;
    struct attempt a = job_finish(j, &s);
    s.on_error(s.ud, http, type, msg);
    drop_attempt(ln, a);
}

static void job_done(struct srv_job *j)
{
    struct ups_lane *ln = j->lane;
    struct srv_sink s;
    struct attempt a = job_finish(j, &s);
    struct srv_usage usage = {0, 0};
    s.on_done(s.ud, &usage);
    drop_attempt(ln, a);
}

static const char *err_type(int http)
{
    switch (http) {
    case 499: return "canceled";
    case 503: return "service_unavailable";
    case 504: return "timeout";
    case 500: return "server_error";
    default: return "bad_gateway";
    }
}

/* A stream that already reached the client ends with an OpenAI error event
 * (as vLLM does), so SDKs raise instead of seeing a silent truncation. */
static void sse_error_event(struct srv_job *j, int http, const char *msg)
{
    if (!j->head_sent || !j->sink.on_raw ||
        strncasecmp(j->ctype, "text/event-stream", 17) != 0)
        return;
    char ev[800];
    struct km_buf esc;
    km_buf_init(&esc, 600);
    for (const char *c = msg; *c; c++) {
        if (*c == '"' || *c == '\\')
            km_buf_putc(&esc, '\\');
        if ((unsigned char)*c >= 0x20)
            km_buf_putc(&esc, *c);
    }
    bool mid = j->sse.state != 0 || j->sse.in_data;
    int n = snprintf(ev, sizeof ev, "%sdata: {\"error\":{\"message\":\"%s\","
                     "\"type\":\"%s\",\"param\":null,\"code\":%d}}\n\n"
                     "data: [DONE]\n\n", mid ? "\n\n" : "", km_buf_str(&esc),
                     err_type(http), http);
    km_buf_free(&esc);
    if (n > 0 && (size_t)n < sizeof ev)
        j->sink.on_raw(j->sink.ud, ev, (size_t)n);
}

/* Retry on another replica when nothing reached the client yet; returns
 * true when the job goes on, false after its terminal callback. */
static bool fail_or_retry(struct srv_job *j)
{
    end_attempt(j);
    if (!j->head_sent && !atomic_load(&j->cancel) && start_attempt(j))
        return true;
    if (atomic_load(&j->cancel)) {
        if (j->head_sent)
            job_done(j);    /* a cut stream: "abort" in the server's books */
        else
            job_error(j, 499, "canceled", "request canceled by the client");
        return false;
    }
    int http = j->last_http ? j->last_http : 502;
    char msg[400];
    snprintf(msg, sizeof msg, "%s", j->last_err);
    sse_error_event(j, http, msg);
    job_error(j, http, err_type(http), msg);
    return false;
}

/* ---- completion of one transfer ---------------------------------------- */

static void classify(struct srv_job *j, CURLcode rc, enum ups_err_kind *kind)
{
    const char *name = j->pool->ups[j->up].spec.name;
    const char *url = j->pool->ups[j->up].spec.url;
    if (j->aborted_timeout) {
        *kind = j->abort_kind;
        bool idle = *kind == UPS_ERR_IDLE;
        snprintf(j->last_err, sizeof j->last_err, "upstream %s (%s) %s within "
                 "%d ms", name, url, idle ? "sent nothing more" : "sent no "
                 "response", idle ? j->pool->opt.idle_timeout_ms :
                 j->pool->opt.first_byte_timeout_ms);
        j->last_http = 504;
        return;
    }
    bool conn = rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST ||
                (rc == CURLE_OPERATION_TIMEDOUT && !j->head_seen);
    *kind = conn ? UPS_ERR_CONNECT : UPS_ERR_DROPPED;
    snprintf(j->last_err, sizeof j->last_err, "upstream %s (%s) %s: %s", name,
             url, conn ? "could not be reached" : j->bytes_sent ?
             "broke off the response" : "closed the connection before "
             "answering", curl_easy_strerror(rc));
    j->last_http = (rc == CURLE_OPERATION_TIMEDOUT) ? 504 : 502;
}

static void http_error(struct srv_job *j)
{
    const struct ups_up *u = &j->pool->ups[j->up];
    size_t n = j->errbody.len;
    const char *b = km_buf_str(&j->errbody);
    while (n > 0 && (b[n - 1] == '\n' || b[n - 1] == '\r'))
        n--;
    snprintf(j->last_err, sizeof j->last_err, "upstream %s (%s) answered "
             "HTTP %d: %.*s", u->spec.name, u->spec.url, j->status,
             (int)(n > 200 ? 200 : n), b);
    j->last_http = j->status == 503 ? 503 : 502;
}

/* Returns true when the job was retried (still active). */
static bool transfer_done(struct srv_job *j, CURLcode rc)
{
    struct ups_pool *p = j->pool;
    size_t up = (size_t)j->up;
    deliver(j);         /* what was read reached the client, as if at once */
    ups__count_request(p, up, j->req->model, j->head_seen ? j->status : 0);
    if (atomic_load(&j->cancel)) {
        ups__count_error(p, up, UPS_ERR_CANCELED);
        return fail_or_retry(j);
    }
    if (rc == CURLE_OK && !j->buffering) {
        ups__mark(p, up, true);
        job_done(j);
        return false;
    }
    enum ups_err_kind kind = UPS_ERR_HTTP5XX;
    if (rc == CURLE_OK)
        http_error(j);
    else
        classify(j, rc, &kind);
    ups__count_error(p, up, kind);
    /* Passive ejection counts what says "this replica is broken": refused
     * connections and 5xx answers. Timeouts and resets may be the request's
     * own doing (a long prompt, a load spike) and are left to the probes. */
    if (kind == UPS_ERR_CONNECT || kind == UPS_ERR_HTTP5XX)
        ups__mark(p, up, false);
    long oserr = 0;
    curl_easy_getinfo(j->easy, CURLINFO_OS_ERRNO, &oserr);
    km_log(KM_LOG_WARN, "request %s: %s%s%s", j->req->request_id, j->last_err,
           oserr ? " - " : "", oserr ? strerror((int)oserr) : "");
    return fail_or_retry(j);
}

/* ---- probes ------------------------------------------------------------- */

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
    pr->tag = TAG_PROBE;
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

static void probe_done(struct ups_pool *p, struct ups_probe *pr)
{
    long code = 0;
    curl_easy_getinfo(pr->easy, CURLINFO_RESPONSE_CODE, &code);
    size_t up = pr->up;
    struct ups_up *u = &p->ups[up];
    bool changed = false;
    pthread_mutex_lock(&p->mu);
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

static void maybe_probe(struct ups_pool *p, double now)
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

/* ---- a lane ------------------------------------------------------------ */

static void push_active(struct ups_lane *ln, struct srv_job *j)
{
    j->next = ln->active;
    ln->active = j;
}

static void unlink_job(struct ups_lane *ln, struct srv_job *j)
{
    struct srv_job **pp = &ln->active;
    while (*pp && *pp != j)
        pp = &(*pp)->next;
    if (*pp)
        *pp = j->next;
    j->next = NULL;
}

/* The submitted jobs, in order; the queue is left empty. */
static struct srv_job *steal_queue(struct ups_lane *ln)
{
    pthread_mutex_lock(&ln->qmu);
    struct srv_job *q = ln->q_head;
    ln->q_head = ln->q_tail = NULL;
    pthread_mutex_unlock(&ln->qmu);
    return q;
}

static void take_queue(struct ups_lane *ln)
{
    struct srv_job *q = steal_queue(ln);
    while (q) {
        struct srv_job *next = q->next;
        q->next = NULL;
        if (atomic_load(&q->cancel))
            job_error(q, 499, "canceled", "request canceled by the client");
        else if (start_attempt(q) || fail_or_retry(q))
            push_active(ln, q);
        q = next;
    }
}

static void finish_transfer(struct ups_lane *ln, struct srv_job *j, CURLcode rc)
{
    unlink_job(ln, j);
    if (transfer_done(j, rc))
        push_active(ln, j);     /* retried on another replica */
}

static void check_job(struct ups_pool *p, struct srv_job *j, double now)
{
    const struct ups_options *o = &p->opt;
    if (j->paused && !(j->sink.raw_full && j->sink.raw_full(j->sink.ud))) {
        j->paused = false;
        j->t_last_byte = now;
        curl_easy_pause(j->easy, CURLPAUSE_CONT);
    }
    if (j->paused)
        return;
    if (!j->head_seen && now - j->t_attempt > o->first_byte_timeout_ms / 1000.0) {
        j->aborted_timeout = true;
        j->abort_kind = UPS_ERR_TIMEOUT;
    } else if (j->head_seen && now - j->t_last_byte > o->idle_timeout_ms / 1000.0) {
        j->aborted_timeout = true;
        j->abort_kind = UPS_ERR_IDLE;
    }
}

/* Timeouts, cancels and paused transfers; returns the wait in ms. */
static int sweep(struct ups_lane *ln, double now)
{
    int wait = 1000;
    struct srv_job *j = ln->active, *next;
    for (; j; j = next) {
        next = j->next;
        if (!atomic_load(&j->cancel))
            check_job(ln->pool, j, now);
        if (j->aborted_timeout || atomic_load(&j->cancel)) {
            finish_transfer(ln, j, CURLE_OPERATION_TIMEDOUT);
            continue;
        }
        if (j->paused)
            wait = 5;
        else if (wait > 50)
            wait = 50;
        if (j->t_done && wait > HOLD_DONE_MS)
            wait = HOLD_DONE_MS;
    }
    return wait;
}

/* Deliver what each job read (a held [DONE] waits for its body's end up to
 * HOLD_DONE_MS). */
static void flush_held(struct ups_lane *ln)
{
    double now = ups__now();
    for (struct srv_job *j = ln->active; j; j = j->next) {
        bool await_end = j->t_done && now - j->t_done < HOLD_DONE_MS / 1000.0;
        if ((j->head_due || j->held.len) && !await_end)
            deliver(j);
    }
}

static void read_done(struct ups_lane *ln)
{
    int left = 0;
    for (CURLMsg *m = curl_multi_info_read(ln->multi, &left); m;
         m = curl_multi_info_read(ln->multi, &left)) {
        if (m->msg != CURLMSG_DONE)
            continue;
        char *priv = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv);
        CURLcode rc = m->data.result;
        if (priv && *(int *)(void *)priv == TAG_JOB)
            finish_transfer(ln, (struct srv_job *)(void *)priv, rc);
        else if (priv)
            probe_done(ln->pool, (struct ups_probe *)(void *)priv);
    }
}

/* libcurl's socket callback: watch what it asks on the lane's loop. */
static void on_sock_io(struct srv_loop_io *io, unsigned events);

static int on_socket(CURL *e, curl_socket_t fd, int what, void *ud, void *sockp)
{
    struct ups_lane *ln = ud;
    struct lane_sock *ls = sockp;
    (void)e;
    if (what == CURL_POLL_REMOVE) {
        if (ls) {
            srv_loop_io_set(ln->loop, &ls->io, 0);
            ls->dead = true;
            curl_multi_assign(ln->multi, fd, NULL);
        }
        return 0;
    }
    if (!ls) {
        ls = km_calloc(1, sizeof *ls);
        if (!ls)
            return -1;
        ls->io.fd = fd;
        ls->io.fn = on_sock_io;
        ls->lane = ln;
        ls->next = ln->socks;
        ln->socks = ls;
        curl_multi_assign(ln->multi, fd, ls);
    }
    unsigned ev = ((what & CURL_POLL_IN) ? EPOLLIN : 0u) |
                  ((what & CURL_POLL_OUT) ? EPOLLOUT : 0u);
    return srv_loop_io_set(ln->loop, &ls->io, ev) == KM_OK ? 0 : -1;
}

static int on_timer(CURLM *m, long ms, void *ud)
{
    struct ups_lane *ln = ud;
    (void)m;
    ln->timer_at = ms < 0 ? -1 : ups__now() + (double)ms / 1000.0;
    return 0;
}

/* A watched socket is ready: let libcurl read or write it, then hand what
 * was read to the clients right away (the HTTP side runs next, in the same
 * pass of the same thread). */
static void on_sock_io(struct srv_loop_io *io, unsigned events)
{
    struct lane_sock *ls = (struct lane_sock *)io;
    struct ups_lane *ln = ls->lane;
    int mask = ((events & EPOLLIN) ? CURL_CSELECT_IN : 0) |
               ((events & EPOLLOUT) ? CURL_CSELECT_OUT : 0) |
               ((events & (EPOLLERR | EPOLLHUP)) ? CURL_CSELECT_ERR : 0);
    int running = 0;
    curl_multi_socket_action(ln->multi, io->fd, mask, &running);
    read_done(ln);
    flush_held(ln);
}

static void free_dead_socks(struct ups_lane *ln)
{
    struct lane_sock **pp = &ln->socks;
    while (*pp) {
        struct lane_sock *ls = *pp;
        if (ls->dead) {
            *pp = ls->next;
            km_free(ls);
        } else {
            pp = &ls->next;
        }
    }
}

/* libcurl's timer, when due. */
static void run_timer(struct ups_lane *ln, double now)
{
    if (ln->timer_at < 0 || now < ln->timer_at)
        return;
    ln->timer_at = -1;
    int running = 0;
    curl_multi_socket_action(ln->multi, CURL_SOCKET_TIMEOUT, 0, &running);
}

static int ms_until(double now, double t)
{
    double ms = (t - now) * 1000.0;
    return ms <= 0 ? 0 : ms > 1000 ? 1000 : (int)ms + 1;
}

/* Once per pass of the loop, after the HTTP side (which submits): start
 * queued jobs, run libcurl's timer, sweep timeouts and cancels, deliver. */
static int lane_run(void *ud)
{
    struct ups_lane *ln = ud;
    struct ups_pool *p = ln->pool;
    take_queue(ln);
    if (ln->home)
        maybe_probe(p, ups__now());
    run_timer(ln, ups__now());
    read_done(ln);
    double now = ups__now();
    int wait = sweep(ln, now);
    run_timer(ln, now);         /* a resumed or retried transfer */
    read_done(ln);
    flush_held(ln);
    free_dead_socks(ln);
    if (ln->home && p->probes_out == 0) {
        int w = ms_until(now, p->next_probe);
        wait = w < wait ? w : wait;
    }
    if (ln->timer_at >= 0) {
        int w = ms_until(ups__now(), ln->timer_at);
        wait = w < wait ? w : wait;
    }
    return wait;
}

/* On the lane's thread: end every job (503), the probes, libcurl; free. */
static void lane_shutdown(struct ups_lane *ln)
{
    struct ups_pool *p = ln->pool;
    while (ln->active) {
        struct srv_job *j = ln->active;
        ln->active = j->next;
        j->next = NULL;
        job_error(j, 503, "service_unavailable", "the gateway is shutting down");
    }
    struct srv_job *q = steal_queue(ln);
    while (q) {
        struct srv_job *next = q->next;
        job_error(q, 503, "service_unavailable", "the gateway is shutting down");
        q = next;
    }
    if (ln->home) {
        while (p->probes)
            probe_free(p, p->probes);
        pthread_mutex_lock(&p->mu);
        p->rounds_done++;
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    while (ln->n_spare > 0)
        curl_easy_cleanup(ln->spare[--ln->n_spare]);
    /* the cached connections close in curl_multi_cleanup: unwatch them
     * first (their fds are still open), without more socket callbacks */
    for (struct lane_sock *ls = ln->socks; ls; ls = ls->next) {
        srv_loop_io_set(ln->loop, &ls->io, 0);
        ls->dead = true;
    }
    curl_multi_setopt(ln->multi, CURLMOPT_SOCKETFUNCTION, NULL);
    curl_multi_cleanup(ln->multi);
    free_dead_socks(ln);
    srv_loop_remove(ln->loop, &ln->src);
    pthread_mutex_destroy(&ln->qmu);
    km_free(ln);
}

static void lane_shutdown_cb(void *ud)
{
    lane_shutdown(ud);
}

/* The lane's loop is stopping (HTTP threads end before the pool). */
static void lane_on_exit(void *ud)
{
    struct ups_lane *ln = ud;
    struct ups_pool *p = ln->pool;
    bool mine = true;
    if (!ln->home) {
        pthread_mutex_lock(&p->qmu);
        mine = !ln->claimed;
        struct ups_lane **pp = &p->lanes;
        while (mine && *pp && *pp != ln)
            pp = &(*pp)->next;
        if (mine && *pp)
            *pp = ln->next;
        pthread_mutex_unlock(&p->qmu);
    }
    if (mine)
        lane_shutdown(ln);      /* else ups_pool_free's call does it */
}

/* A lane on loop `l` (on l's thread, or before l starts). */
static struct ups_lane *lane_new(struct ups_pool *p, struct srv_loop *l, bool home)
{
    struct ups_lane *ln = km_calloc(1, sizeof *ln);
    if (!ln)
        return NULL;
    ln->multi = curl_multi_init();
    if (!ln->multi) {
        km_free(ln);
        return NULL;
    }
    ln->pool = p;
    ln->loop = l;
    ln->home = home;
    ln->timer_at = -1;
    pthread_mutex_init(&ln->qmu, NULL);
    curl_multi_setopt(ln->multi, CURLMOPT_MAXCONNECTS, 512L);
    curl_multi_setopt(ln->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(ln->multi, CURLMOPT_SOCKETDATA, ln);
    curl_multi_setopt(ln->multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(ln->multi, CURLMOPT_TIMERDATA, ln);
    ln->src.ud = ln;
    ln->src.run = lane_run;
    ln->src.on_exit = lane_on_exit;
    srv_loop_add(l, &ln->src);
    return ln;
}

/* The lane for a job submitted by the calling thread: its loop's (made at
 * the first request) when the caller promised to return to that loop
 * without blocking (srv_loop_returning: the HTTP thread dispatching an
 * OpenAI route), else the home lane (on its own thread: a caller that
 * blocks for the result, e.g. /v1/retrieve's query embedding, or any other
 * thread). */
static struct ups_lane *lane_for(struct ups_pool *p)
{
    struct srv_loop *l = srv_loop_returning();
    if (!l || l == p->loop)
        return p->home;
    pthread_mutex_lock(&p->qmu);
    struct ups_lane *ln = p->lanes;
    while (ln && ln->loop != l)
        ln = ln->next;
    pthread_mutex_unlock(&p->qmu);
    if (ln)
        return ln;
    ln = lane_new(p, l, false);
    if (!ln)
        return p->home;
    pthread_mutex_lock(&p->qmu);
    ln->next = p->lanes;
    p->lanes = ln;
    pthread_mutex_unlock(&p->qmu);
    return ln;
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void wait_round(struct ups_pool *p, unsigned long before, int ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    long long ns = ts.tv_nsec + (long long)ms * 1000000LL;
    ts.tv_sec += ns / 1000000000LL;
    ts.tv_nsec = ns % 1000000000LL;
    pthread_mutex_lock(&p->mu);
    int rc = 0;
    while (p->rounds_done == before && rc == 0)
        rc = pthread_cond_timedwait(&p->cv, &p->mu, &ts);
    pthread_mutex_unlock(&p->mu);
}

int ups_pool_probe_now(struct ups_pool *p)
{
    pthread_mutex_lock(&p->mu);
    unsigned long before = p->rounds_done;
    pthread_mutex_unlock(&p->mu);
    atomic_store(&p->probe_asked, true);
    srv_loop_wake(p->loop);
    wait_round(p, before, 2 * p->opt.probe_timeout_ms + 500);
    return KM_OK;
}

int ups__loop_start(struct ups_pool *p, struct km_err *err)
{
    pthread_once(&curl_once, curl_init_once);
    int rc = srv_loop_new(&p->loop, err);
    if (rc != KM_OK)
        return rc;
    p->home = lane_new(p, p->loop, true);
    if (!p->home)
        return km_fail(err, KM_ENOMEM, "upstream pool: curl_multi_init failed");
    atomic_store(&p->probe_asked, true);
    rc = srv_loop_start(p->loop, "kanoa-upstream", err);
    if (rc != KM_OK)
        return rc;
    wait_round(p, 0, p->opt.probe_timeout_ms + 500);
    return KM_OK;
}

void ups__loop_stop(struct ups_pool *p)
{
    for (;;) {      /* lanes on loops still running (normally none left) */
        pthread_mutex_lock(&p->qmu);
        struct ups_lane *ln = p->lanes;
        if (ln) {
            p->lanes = ln->next;
            ln->claimed = true;
        }
        pthread_mutex_unlock(&p->qmu);
        if (!ln)
            break;
        srv_loop_call(ln->loop, lane_shutdown_cb, ln);
    }
    if (p->loop) {
        srv_loop_stop(p->loop);     /* the home lane ends in its on_exit */
        srv_loop_unref(p->loop);
    }
    p->loop = NULL;
    p->home = NULL;
}

/* ---- jobs (any thread) -------------------------------------------------- */

static bool known_model(struct ups_pool *p, const char *model)
{
    bool yes = false;
    pthread_mutex_lock(&p->mu);
    for (size_t i = 0; i < p->n && !yes; i++)
        yes = ups__serves_locked(&p->ups[i], model);
    pthread_mutex_unlock(&p->mu);
    return yes;
}

int ups_job_submit(struct ups_pool *p, const struct srv_request *req,
                   const struct srv_sink *sink, const char *affinity,
                   struct srv_job **job, struct km_err *err)
{
    *job = NULL;
    if (!req->model || !req->body || !req->request_id || !sink->on_done ||
        !sink->on_error)
        return km_fail(err, KM_EINVAL, "upstream: request without model, body "
                       "or request id, or sink without terminal callbacks");
    if (!known_model(p, req->model))
        return km_fail(err, KM_ENOTFOUND, "The model `%s` does not exist.",
                       req->model);
    struct srv_job *j = km_calloc(1, sizeof *j);
    if (!j)
        return km_fail(err, KM_ENOMEM, "upstream: out of memory for a job");
    struct ups_lane *ln = lane_for(p);
    j->tag = TAG_JOB;
    j->pool = p;
    j->lane = ln;
    j->loop = ln->loop;
    srv_loop_ref(j->loop);
    j->req = req;
    j->sink = *sink;
    j->affinity = affinity;
    j->up = -1;
    snprintf(j->path, sizeof j->path, "%s", path_for(req->ep));
    km_buf_init(&j->errbody, p->opt.error_body_max);
    km_buf_init(&j->held, 2 * HOLD_MAX);
    ups_sse_scan_init(&j->sse);
    j->t_submit = ups__now();
    atomic_init(&j->cancel, false);
    *job = j;
    atomic_fetch_add(&p->live, 1);
    pthread_mutex_lock(&ln->qmu);
    if (ln->q_tail)
        ln->q_tail->next = j;
    else
        ln->q_head = j;
    ln->q_tail = j;
    pthread_mutex_unlock(&ln->qmu);
    /* From the lane's own (returning) thread the lane runs later in this
     * very pass; anything else wakes the lane's loop. */
    if (srv_loop_returning() != ln->loop)
        srv_loop_wake(ln->loop);
    return KM_OK;
}

/* The job's loop stays allocated until release, so waking it is safe even
 * after the loop has stopped. */
void ups_job_cancel(struct ups_pool *p, struct srv_job *job)
{
    (void)p;
    if (!job)
        return;
    atomic_store(&job->cancel, true);
    srv_loop_wake(job->loop);
}

void ups_job_release(struct ups_pool *p, struct srv_job *job)
{
    (void)p;
    if (!job)
        return;
    srv_loop_unref(job->loop);
    km_free(job);
}
