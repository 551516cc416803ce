/* upstream_loop.c - the gateway's jobs (a client's request proxied to a
 * replica), run by lanes (event loops with a libcurl multi handle and the
 * own client's connections, upstream_lane.c); the health probes the lanes
 * also run are upstream_probe.c's.
 *
 * Job life cycle (all on the lane's thread unless noted):
 *
 *   submit (any thread) -> queued (started at once on the lane's own
 *   thread) -> attempt on replica R -> headers
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
 * Attempts on http:// upstreams use the own HTTP/1.1 client
 * (upstream_h1.c, through ups__job_*), the others libcurl (easy handles on
 * the lane's multi handle); both end in transfer_done with a CURLcode.
 * Backpressure: when sink->raw_full says the client is behind, the write
 * callback pauses the transfer; the lane polls every 5 ms and resumes it.
 *
 * Delivery (latency): every sink call resumes the client's HTTP connection,
 * and each resume costs libmicrohttpd a round of work. So the head and body
 * bytes read from one socket event are held in the job (j->held, at most
 * HOLD_MAX) and delivered together right after it; a completed transfer
 * delivers them right before its terminal callback, and its easy handle is
 * released after the HTTP side has run (ups__easy_drop). Nothing waits for
 * more: holding a stream's `data: [DONE]` for the body's end (as earlier
 * versions did) saved a resume but put a sleep and a wake of this thread
 * on the last byte's path (+0.04 ms per stream, interleaved A/B); holding
 * a lone head for the body's first bytes did not help either. A libcurl
 * request's headers are nodes of its easy handle's own (no allocation),
 * its URL parsed once per lane.
 */
#include "server/upstream_int.h"

#include "base/log.h"
#include "base/mem.h"
#include "server/loop.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <stdlib.h>

#define HOLD_MAX (64u * 1024)   /* bytes held before delivering mid-pass */

struct srv_job {
    int tag;                    /* UPS_TAG_JOB: CURLOPT_PRIVATE points here */
    struct ups_pool *pool;
    struct ups_lane *lane;      /* runs there (its thread only) */
    struct srv_loop *loop;      /* the lane's loop, referenced until release */
    const struct srv_request *req;
    struct srv_sink sink;
    const char *affinity;
    int path;                   /* index in ep_paths */
    struct ups_easy *easy;      /* the attempt's libcurl transfer, or */
    struct ups_h1 *h1;          /* its own-client connection (upstream_h1.c) */
    bool use_h1;                /* the chosen replica takes the own client */
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
    bool conn_timeout;          /* own client: not connected in time */
    enum ups_err_kind abort_kind;
    struct km_buf errbody;
    struct km_buf held;         /* body bytes read, not delivered yet */
    double t_submit, t_attempt, t_last_byte, t_last_event;
    unsigned long events;
    size_t bytes_sent;
    struct ups_sse_scan sse;
    char last_err[320];         /* why the last attempt failed */
    int last_http;              /* status to report when all attempts fail */
    struct srv_job *next;
};

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
                      j->lane->now - j->t_attempt);
    pthread_mutex_unlock(&p->mu);
    if (j->status >= 500)
        j->buffering = true;
    else
        j->head_due = true;     /* delivered at the end of the pass */
}

void ups__job_ctype(struct srv_job *j, const char *v, size_t n)
{
    j->t_last_byte = j->lane->now;
    snprintf(j->ctype, sizeof j->ctype, "%.*s", (int)n, v);
}

void ups__job_head(struct srv_job *j, int status)
{
    j->t_last_byte = j->lane->now;
    j->status = status;
    header_done(j);
}

bool ups__job_stopped(const struct srv_job *j)
{
    return atomic_load(&j->cancel);
}

/* libcurl's header callback: every line of every head, with its CRLF. */
static size_t on_header(char *b, size_t size, size_t n, void *ud)
{
    struct srv_job *j = ud;
    size_t len = size * n;
    j->t_last_byte = j->lane->now;
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
        ups__job_ctype(j, b + i, e - i);
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
}

static void observe_events(struct srv_job *j, unsigned long k)
{
    double now = j->lane->now;
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

enum ups_body ups__job_body(struct srv_job *j, const char *b, size_t len)
{
    if (atomic_load(&j->cancel))
        return UPS_BODY_STOP;
    j->t_last_byte = j->lane->now;
    if (j->buffering) {
        size_t room = j->pool->opt.error_body_max - j->errbody.len;
        km_buf_append(&j->errbody, b, len < room ? len : room);
        return UPS_BODY_TAKEN;
    }
    if (j->sink.raw_full && j->sink.raw_full(j->sink.ud)) {
        j->paused = true;
        return UPS_BODY_PAUSE;
    }
    if (j->req->stream) {
        unsigned long k = ups_sse_scan_feed(&j->sse, b, len);
        if (k)
            observe_events(j, k);
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
    return UPS_BODY_TAKEN;
}

/* libcurl's write callback */
static size_t on_body(char *b, size_t size, size_t n, void *ud)
{
    size_t len = size * n;
    switch (ups__job_body(ud, b, len)) {
    case UPS_BODY_TAKEN: return len;
    case UPS_BODY_PAUSE: return CURL_WRITEFUNC_PAUSE;
    default: return 0;
    }
}

static char hdr_ctype[] = "Content-Type: application/json";

static char hdr_expect[] = "Expect:";

/* The request's header list in ue's own nodes (libcurl only reads it; the
 * strings live in ue, in static storage or in the pool's upstream). */
static struct curl_slist *request_headers(struct ups_easy *ue,
                                          const struct srv_job *j,
                                          const struct ups_up *u)
{
    snprintf(ue->rid, sizeof ue->rid, "X-Request-Id: %s", j->req->request_id);
    ue->hdr[0].data = hdr_ctype;
    ue->hdr[1].data = hdr_expect;
    ue->hdr[2].data = ue->rid;
    ue->hdr[3].data = (char *)u->auth;
    ue->hdr[0].next = &ue->hdr[1];
    ue->hdr[1].next = &ue->hdr[2];
    ue->hdr[2].next = u->auth[0] ? &ue->hdr[3] : NULL;
    ue->hdr[3].next = NULL;
    return &ue->hdr[0];
}

static int setup_easy(struct srv_job *j, size_t up)
{
    const struct ups_up *u = &j->pool->ups[up];
    CURL *e = j->easy->e;
    CURLU *cu = ups__lane_url(j->lane, up, j->path);
    if (!cu)
        return KM_ENOMEM;
    curl_easy_setopt(e, CURLOPT_CURLU, cu);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, request_headers(j->easy, j, u));
    if (!j->pool->proxy_env) {  /* no proxy variables: skip libcurl's getenv */
        curl_easy_setopt(e, CURLOPT_PROXY, "");
        curl_easy_setopt(e, CURLOPT_NOPROXY, "");
    }
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, ups__lane_close_sock);
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, j->lane);
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
    else
        j->use_h1 = !p->h1_off && p->ups[k].h1.usable && p->ups[k].h1.addr_len;
    pthread_mutex_unlock(&p->mu);
    return k;
}

/* What an attempt holds (a libcurl transfer or an own-client connection),
 * detached from its job so that it can be released after the job's
 * terminal callback (off the client's path). */
struct attempt {
    struct ups_easy *easy;
    struct ups_h1 *h1;
};

static struct attempt take_attempt(struct srv_job *j)
{
    struct attempt a = {j->easy, j->h1};
    j->easy = NULL;
    j->h1 = NULL;
    if (j->up >= 0)
        atomic_fetch_sub(&j->pool->ups[j->up].in_flight, 1);
    j->up = -1;
    return a;
}

static void drop_attempt(struct ups_lane *ln, struct attempt a)
{
    ups__easy_drop(ln, a.easy);
    ups__h1_release(ln, a.h1);
}

static void end_attempt(struct srv_job *j)
{
    drop_attempt(j->lane, take_attempt(j));
}

/* The attempt on the own HTTP/1.1 client; false when it cannot start. */
static bool start_h1(struct srv_job *j, size_t k)
{
    int rc = ups__h1_start(j->lane, j, k, j->path, j->req->request_id,
                           j->req->body, j->req->body_len, &j->h1);
    if (rc == KM_OK)
        return true;
    snprintf(j->last_err, sizeof j->last_err, "%s starting the upstream "
             "request", rc == KM_ENOMEM ? "out of memory" : "request id or "
             "upstream URL too long");
    j->last_http = 500;
    end_attempt(j);
    return false;
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
    j->up = k;
    atomic_fetch_add(&j->pool->ups[k].in_flight, 1);
    j->tried |= 1ull << k;
    j->attempts++;
    j->status = 0;
    j->ctype[0] = '\0';
    j->head_seen = j->buffering = j->paused = j->aborted_timeout = false;
    j->head_due = j->conn_timeout = false;
    km_buf_reset(&j->errbody);
    km_buf_reset(&j->held);
    j->t_attempt = j->t_last_byte = j->lane->now = ups__now();
    if (j->use_h1)
        return start_h1(j, (size_t)k);
    j->easy = ups__easy_get(j->lane);
    if (!j->easy || setup_easy(j, (size_t)k) != KM_OK) {
        snprintf(j->last_err, sizeof j->last_err, "out of memory starting the "
                 "upstream request");
        j->last_http = 500;
        end_attempt(j);
        return false;
    }
    if (curl_multi_add_handle(j->lane->multi, j->easy->e) != CURLM_OK) {
        snprintf(j->last_err, sizeof j->last_err, "cannot start the upstream "
                 "request (libcurl multi handle refused it)");
        j->last_http = 500;
        ups__easy_free(j->easy);
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
    const char *bad = rc == CURLE_WEIRD_SERVER_REPLY ? ups__h1_error(j->h1) : NULL;
    *kind = conn ? UPS_ERR_CONNECT : UPS_ERR_DROPPED;
    snprintf(j->last_err, sizeof j->last_err, "upstream %s (%s) %s: %s", name,
             url, conn ? "could not be reached" : bad ? "sent a malformed "
             "response" : j->bytes_sent ? "broke off the response" :
             "closed the connection before answering",
             bad ? bad : curl_easy_strerror(rc));
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
    long oserr = j->h1 ? ups__h1_oserr(j->h1) : 0;
    if (j->easy)
        curl_easy_getinfo(j->easy->e, CURLINFO_OS_ERRNO, &oserr);
    km_log(KM_LOG_WARN, "request %s: %s%s%s", j->req->request_id, j->last_err,
           oserr ? " - " : "", oserr ? strerror((int)oserr) : "");
    return fail_or_retry(j);
}

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

void ups__jobs_start(struct ups_lane *ln)
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
        if (j->easy)
            curl_easy_pause(j->easy->e, CURLPAUSE_CONT);
        ups__h1_resume(j->h1);
    }
    if (j->paused)
        return;
    if (ups__h1_connect_late(j->h1, now, o->connect_timeout_ms / 1000.0)) {
        j->conn_timeout = true;     /* reported as libcurl's would be */
        return;
    }
    if (!j->head_seen && now - j->t_attempt > o->first_byte_timeout_ms / 1000.0) {
        j->aborted_timeout = true;
        j->abort_kind = UPS_ERR_TIMEOUT;
    } else if (j->head_seen && now - j->t_last_byte > o->idle_timeout_ms / 1000.0) {
        j->aborted_timeout = true;
        j->abort_kind = UPS_ERR_IDLE;
    }
}

/* Timeouts, cancels and paused transfers; returns the wait in ms. */
int ups__jobs_sweep(struct ups_lane *ln, double now)
{
    int wait = 1000;
    struct srv_job *j = ln->active, *next;
    for (; j; j = next) {
        next = j->next;
        if (!atomic_load(&j->cancel))
            check_job(ln->pool, j, now);
        if (j->aborted_timeout || j->conn_timeout || atomic_load(&j->cancel)) {
            finish_transfer(ln, j, CURLE_OPERATION_TIMEDOUT);
            continue;
        }
        if (j->paused)
            wait = 5;
        else if (wait > 50)
            wait = 50;
    }
    return wait;
}

/* Deliver what each job read in this pass. */
void ups__jobs_flush(struct ups_lane *ln)
{
    for (struct srv_job *j = ln->active; j; j = j->next)
        if (j->head_due || j->held.len)
            deliver(j);
}

void ups__job_end(struct ups_lane *ln, struct srv_job *j, CURLcode rc)
{
    finish_transfer(ln, j, rc);
}

/* A transfer libcurl reported done: a job's attempt or a probe. */
void ups__transfer_done(struct ups_lane *ln, void *priv, CURLcode rc)
{
    if (*(int *)priv == UPS_TAG_JOB)
        finish_transfer(ln, priv, rc);
    else
        ups__probe_done(ln->pool, priv);
}

/* The lane is shutting down: every job it has ends with a 503. */
void ups__jobs_shutdown(struct ups_lane *ln)
{
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
}

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
    struct ups_lane *ln = ups__lane_for(p);
    j->tag = UPS_TAG_JOB;
    j->pool = p;
    j->lane = ln;
    j->loop = ln->loop;
    srv_loop_ref(j->loop);
    j->req = req;
    j->sink = *sink;
    j->affinity = affinity;
    j->up = -1;
    j->path = ups__path_index(req->ep);
    km_buf_init(&j->errbody, p->opt.error_body_max);
    km_buf_init(&j->held, 2 * HOLD_MAX);
    ups_sse_scan_init(&j->sse);
    j->t_submit = ups__now();
    atomic_init(&j->cancel, false);
    *job = j;
    atomic_fetch_add(&p->live, 1);
    /* On the lane's own (returning) thread the request goes out now, before
     * the HTTP side finishes its round; its results come from the loop. */
    if (srv_loop_returning() == ln->loop && start_attempt(j)) {
        push_active(ln, j);
        return KM_OK;
    }
    pthread_mutex_lock(&ln->qmu);
    if (ln->q_tail)
        ln->q_tail->next = j;
    else
        ln->q_head = j;
    ln->q_tail = j;
    pthread_mutex_unlock(&ln->qmu);
    /* From the lane's own thread (a replica refused to start: retried or
     * failed there) the lane runs later in this very pass; anything else
     * wakes the lane's loop. */
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
