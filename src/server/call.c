/* call.c - one HTTP request from headers to the last byte: routing checks,
 * admission, submission to a backend, the sink the backend calls from its own
 * threads, and the SSE byte queue the HTTP adapter reads.
 *
 * States (struct srv_call.st):
 *   NEW -> RUNNING (admitted, submitted) -> DONE
 *   NEW -> QUEUED (waiting for a slot) -> RUNNING | rejected (timeout/gone)
 * A backend event sets fields under call->mu and wakes the call; the HTTP
 * adapter then calls srv__call_step() (before a response is queued) or
 * srv__call_read() (while streaming). A stream keeps the newest text piece of
 * each choice back until the next one arrives, so finish_reason rides on the
 * last content chunk, as vLLM sends it.
 *
 * Lifetime: the call is freed by srv__call_completed() when the backend has
 * already finished, else by the ticker once the terminal callback has come
 * (after the cancel that srv__call_completed() issued). The sink callbacks
 * never touch the call after dropping call->mu in their terminal callback. */
#include "server/server_int.h"

#include "base/mem.h"
#include "base/version.h"

#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

static void sink_wake_after(struct srv_server *s, void *conn)
{
    if (conn)
        s->http.resume(conn);
}

/* Under c->mu: mark a wake; returns the connection to resume, or NULL. */
static void *wake_locked(struct srv_call *c)
{
    c->wake_pending = true;
    if (!c->suspended || c->gone)
        return NULL;
    c->suspended = false;
    return c->conn;
}

void srv__call_wake(struct srv_call *c)
{
    pthread_mutex_lock(&c->mu);
    void *conn = wake_locked(c);
    pthread_mutex_unlock(&c->mu);
    sink_wake_after(c->srv, conn);
}

bool srv__call_park(struct srv_call *c)
{
    pthread_mutex_lock(&c->mu);
    if (c->wake_pending) {
        c->wake_pending = false;
        pthread_mutex_unlock(&c->mu);
        return false;
    }
    c->suspended = true;
    c->srv->http.suspend(c->conn);
    pthread_mutex_unlock(&c->mu);
    return true;
}

/* ---------------- creation ---------------- */

struct srv_call *srv__call_new(struct srv_server *s)
{
    struct srv_call *c = km_calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->srv = s;
    c->route = -1;
    c->fd = -1;
    c->content_length = -1;
    c->t_arrival = srv__now();
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->space, NULL);
    km_buf_init(&c->body, (size_t)s->cfg.max_body);
    km_buf_init(&c->out, SRV_STREAM_MAX);
    km_buf_init(&c->reply.body, 1u << 30);
    for (int i = 0; i < SRV_MAX_CHOICES; i++)
        km_buf_init(&c->choice[i].text, 256u << 20);
    atomic_fetch_add(&s->inflight, 1);
    return c;
}

void srv__call_free(struct srv_call *c)
{
    if (!c)
        return;
    struct srv_server *s = c->srv;
    km_buf_free(&c->body);
    km_buf_free(&c->out);
    km_buf_free(&c->reply.body);
    for (int i = 0; i < SRV_MAX_CHOICES; i++) {
        km_buf_free(&c->choice[i].text);
        if (c->choice[i].lp)
            json_decref(c->choice[i].lp);
    }
    km_free(c->emb);
    srv__parsed_free(&c->parsed);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->space);
    km_free(c);
    atomic_fetch_sub(&s->inflight, 1);
}

static void fix_request_id(struct srv_call *c)
{
    size_t n = strlen(c->request_id);
    bool ok = n > 0 && n <= 64;
    for (size_t i = 0; ok && i < n; i++) {
        char ch = c->request_id[i];
        ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
             (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || ch == '.' ||
             ch == ':';
    }
    if (!ok) {
        char hex[33];
        srv__random_hex(hex);
        snprintf(c->request_id, sizeof c->request_id, "%s", hex);
    }
}

/* /health and /metrics are public (probes, scrapers) unless
 * --protect-metrics; everything else needs a key when keys are set. */
static bool needs_auth(struct srv_server *s, int route)
{
    if (route == SRV_R_HEALTH || route == SRV_R_METRICS)
        return s->cfg.protect_metrics;
    return true;
}

static bool json_content_type(const char *ct)
{
    if (!ct[0])
        return true; /* absent: treated as JSON */
    return strncasecmp(ct, "application/json", 16) == 0 &&
           (ct[16] == '\0' || ct[16] == ';' || ct[16] == ' ');
}

static enum srv_next options_reply(struct srv_call *c, struct srv_reply *r)
{
    struct srv_server *s = c->srv;
    if (c->origin[0] && c->acr_method[0]) {
        if (!srv__cors_allowed(&s->cfg.cors_origins, c->origin)) {
            c->cors_ok = false;
            srv__reply_error(r, 400, NULL, "Disallowed CORS origin");
            return SRV_NEXT_REPLY;
        }
        r->preflight = true;
    }
    r->status = 204;
    r->allow = srv__route_method(s, c->route);
    return SRV_NEXT_REPLY;
}

enum srv_next srv__call_begin(struct srv_call *c, struct srv_reply *r)
{
    struct srv_server *s = c->srv;
    fix_request_id(c);
    c->cors_ok = srv__cors_allowed(&s->cfg.cors_origins, c->origin);
    c->route = srv__route_find(s, c->path);
    if (c->route < 0) {
        srv__reply_error(r, 404, NULL, "Not Found: no route for %s %s",
                         c->method, c->path);
        return SRV_NEXT_REPLY;
    }
    if (strcmp(c->method, "OPTIONS") == 0)
        return options_reply(c, r);
    const char *want = srv__route_method(s, c->route);
    bool head_ok = !strcmp(c->method, "HEAD") && !strcmp(want, "GET");
    if (strcmp(c->method, want) != 0 && !head_ok) {
        r->allow = want;
        srv__reply_error(r, 405, NULL, "Method Not Allowed: %s %s (use %s)",
                         c->method, c->path, want);
        return SRV_NEXT_REPLY;
    }
    if (needs_auth(s, c->route) && !srv__auth_check(&s->auth, c->authorization)) {
        r->auth_challenge = true;
        srv__reply_error(r, 401, NULL, "Unauthorized: a valid API key is "
                         "required (Authorization: Bearer <key>)");
        return SRV_NEXT_REPLY;
    }
    if (strcmp(want, "POST") != 0)
        return srv__call_dispatch(c, r);
    if (!json_content_type(c->content_type)) {
        srv__reply_error(r, 415, NULL, "Unsupported Media Type: Content-Type "
                         "must be application/json (got %s)", c->content_type);
        return SRV_NEXT_REPLY;
    }
    if (c->content_length > (long long)s->cfg.max_body) {
        srv__reply_error(r, 413, NULL, "request body of %lld bytes exceeds "
                         "the limit of %llu bytes", c->content_length,
                         s->cfg.max_body);
        return SRV_NEXT_REPLY;
    }
    return SRV_NEXT_BODY;
}

int srv__call_body(struct srv_call *c, const char *data, size_t n)
{
    if (c->body_too_big)
        return KM_ERANGE;
    if (km_buf_append(&c->body, data, n)) {
        c->body_too_big = true;
        km_buf_free(&c->body);
        return KM_ERANGE;
    }
    return KM_OK;
}

/* ---------------- the sink (backend threads) ---------------- */

/* Append to the SSE queue under c->mu, waiting (bounded) for the client to
 * drain it when full; drops the bytes if the client is gone. */
static void emit_locked(struct srv_call *c, const char *p, size_t n)
{
    while (c->out.len - c->out_off + n > c->out.max && !c->gone &&
           !c->client_gone) {
        if (c->out_off) {
            memmove(c->out.data, c->out.data + c->out_off, c->out.len - c->out_off);
            c->out.len -= c->out_off;
            c->out.data[c->out.len] = '\0';
            c->out_off = 0;
            continue;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        void *conn = wake_locked(c);
        if (conn) {
            pthread_mutex_unlock(&c->mu);
            sink_wake_after(c->srv, conn);
            pthread_mutex_lock(&c->mu);
        }
        pthread_cond_timedwait(&c->space, &c->mu, &ts);
    }
    if (c->gone || c->client_gone)
        return;
    km_buf_append(&c->out, p, n);
}

static void emit_json_locked(struct srv_call *c, json_t *j)
{
    struct km_buf tmp;
    km_buf_init(&tmp, SRV_STREAM_MAX);
    if (srv__sse_event(&tmp, j) == KM_OK)
        emit_locked(c, tmp.data, tmp.len);
    km_buf_free(&tmp);
}

static void flush_pending_locked(struct srv_call *c, int i, const char *finish)
{
    struct srv_choice *ch = &c->choice[i];
    if (!ch->pending && !finish)
        return;
    bool chat = c->parsed.req.ep == SRV_EP_CHAT;
    if (chat && !ch->role_sent) {
        emit_json_locked(c, srv__chunk(c, i, "", 0, true, NULL, NULL));
        ch->role_sent = true;
    }
    emit_json_locked(c, srv__chunk(c, i, ch->text.data, ch->text.len, false,
                                   ch->lp, finish));
    km_buf_reset(&ch->text);
    if (ch->lp)
        json_decref(ch->lp);
    ch->lp = NULL;
    ch->pending = false;
}

/* Characters (not bytes) in a piece of UTF-8: OpenAI's text_offset unit. */
static size_t utf8_chars(const char *s, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += ((unsigned char)s[i] & 0xC0) != 0x80;
    return k;
}

/* Under c->mu: one logprobs entry; completions also record where the token
 * starts in the choice's text (echoed prompt included). */
static void append_logprob_locked(struct srv_call *c, struct srv_choice *ch,
                                  const struct srv_logprobs *lp)
{
    json_t *e = srv__logprob_entry(lp);
    if (e && c->parsed.req.ep == SRV_EP_COMPLETION)
        json_object_set_new(e, "text_offset", json_integer((json_int_t)ch->n_chars));
    json_array_append_new(ch->lp, e);
}

static void on_text(void *ud, int index, const char *text, size_t len,
                    const struct srv_logprobs *lp)
{
    struct srv_call *c = ud;
    double now = srv__now();
    pthread_mutex_lock(&c->mu);
    if (c->t_first == 0)
        srv__mm_ttft(c->mm, now - c->t_arrival);
    else
        srv__mm_itl(c->mm, now - c->t_last);
    if (c->t_first == 0)
        c->t_first = now;
    c->t_last = now;
    void *conn = NULL;
    if (index >= 0 && index < c->parsed.req.n) {
        struct srv_choice *ch = &c->choice[index];
        if (c->parsed.req.stream && c->parsed.req.ep == SRV_EP_CHAT &&
            !ch->role_sent) {
            /* the role chunk goes out at once; only text is held back */
            emit_json_locked(c, srv__chunk(c, index, "", 0, true, NULL, NULL));
            ch->role_sent = true;
        }
        if (c->parsed.req.stream) {
            flush_pending_locked(c, index, NULL);
            ch->pending = true;
        }
        km_buf_append(&ch->text, text, len);
        if (lp && !ch->lp)
            ch->lp = json_array();
        if (lp && ch->lp)
            append_logprob_locked(c, ch, lp);
        ch->n_chars += utf8_chars(text, len);
        if (c->parsed.req.stream)
            conn = wake_locked(c);
    }
    pthread_mutex_unlock(&c->mu);
    sink_wake_after(c->srv, conn);
}

static void on_finish(void *ud, int index, const char *finish_reason)
{
    struct srv_call *c = ud;
    pthread_mutex_lock(&c->mu);
    void *conn = NULL;
    if (index >= 0 && index < c->parsed.req.n) {
        struct srv_choice *ch = &c->choice[index];
        snprintf(ch->finish, sizeof ch->finish, "%s",
                 finish_reason ? finish_reason : "stop");
        if (c->parsed.req.stream) {
            flush_pending_locked(c, index, ch->finish);
            conn = wake_locked(c);
        }
    }
    pthread_mutex_unlock(&c->mu);
    sink_wake_after(c->srv, conn);
}

static void on_embedding(void *ud, int index, const float *vec, size_t dim)
{
    struct srv_call *c = ud;
    pthread_mutex_lock(&c->mu);
    size_t n = c->parsed.req.n_inputs;
    if (!c->emb && dim > 0 && dim < (1u << 24)) {
        c->emb = km_calloc(n * dim, sizeof *c->emb);
        c->emb_dim = c->emb ? dim : 0;
    }
    if (c->emb && dim == c->emb_dim && index >= 0 && (size_t)index < n) {
        memcpy(c->emb + (size_t)index * dim, vec, dim * sizeof *vec);
        c->emb_got++;
    }
    pthread_mutex_unlock(&c->mu);
}

static void on_raw_head(void *ud, int http_status, const char *content_type)
{
    struct srv_call *c = ud;
    pthread_mutex_lock(&c->mu);
    c->raw = true;
    c->raw_head = true;
    c->raw_status = http_status;
    snprintf(c->raw_ctype, sizeof c->raw_ctype, "%s",
             content_type ? content_type : "application/json");
    void *conn = wake_locked(c);
    pthread_mutex_unlock(&c->mu);
    sink_wake_after(c->srv, conn);
}

static void on_raw(void *ud, const char *bytes, size_t n)
{
    struct srv_call *c = ud;
    pthread_mutex_lock(&c->mu);
    emit_locked(c, bytes, n);
    void *conn = wake_locked(c);
    pthread_mutex_unlock(&c->mu);
    sink_wake_after(c->srv, conn);
}

/* Flow control for proxies: more than half the queue unsent. */
static bool raw_full(void *ud)
{
    struct srv_call *c = ud;
    pthread_mutex_lock(&c->mu);
    bool full = c->out.len - c->out_off > SRV_STREAM_MAX / 2;
    pthread_mutex_unlock(&c->mu);
    return full;
}

/* Terminal bookkeeping shared by on_done and on_error, under c->mu.
 * Returns the connection to resume. */
static void *terminal_locked(struct srv_call *c)
{
    c->terminal = true;
    c->st = SRV_C_DONE;
    srv__mm_running(c->mm, -1);
    pthread_cond_broadcast(&c->space);
    return wake_locked(c);
}

static void pass_slot(struct srv_server *s)
{
    struct srv_call *next = srv__limits_release(&s->limits);
    if (!next)
        return;
    pthread_mutex_lock(&next->mu);
    next->admitted = true;
    void *conn = wake_locked(next);
    pthread_mutex_unlock(&next->mu);
    sink_wake_after(s, conn);
}

static void on_done(void *ud, const struct srv_usage *usage)
{
    struct srv_call *c = ud;
    struct srv_server *s = c->srv;
    double now = srv__now();
    pthread_mutex_lock(&c->mu);
    if (usage)
        c->usage = *usage;
    const char *fin = c->choice[0].finish[0] ? c->choice[0].finish : "stop";
    if (c->canceled || c->client_gone)
        fin = "abort";
    srv__mm_done(c->mm, &c->usage, fin, now - c->t_arrival);
    if (c->parsed.req.stream && !c->raw) {
        for (int i = 0; i < c->parsed.req.n; i++)
            flush_pending_locked(c, i, NULL);
        if (c->parsed.req.include_usage)
            emit_json_locked(c, srv__usage_chunk(c));
        emit_locked(c, "data: [DONE]\n\n", 14);
    }
    void *conn = terminal_locked(c);
    pthread_mutex_unlock(&c->mu);
    /* c may be freed from here on */
    sink_wake_after(s, conn);
    pass_slot(s);
}

static void on_error(void *ud, int http_status, const char *type,
                     const char *message)
{
    struct srv_call *c = ud;
    struct srv_server *s = c->srv;
    pthread_mutex_lock(&c->mu);
    c->err_status = http_status >= 400 && http_status < 600 ? http_status : 500;
    snprintf(c->err_type, sizeof c->err_type, "%s",
             type ? type : srv__error_type(c->err_status));
    snprintf(c->err_msg, sizeof c->err_msg, "%s", message ? message : "error");
    /* Once stream bytes exist the answer is a 200 stream: say it there. */
    if (!c->raw && (c->sse || (c->parsed.req.stream && c->out.len > c->out_off))) {
        json_t *e = json_pack("{s:{s:s,s:s,s:n,s:i}}", "error", "message",
                              c->err_msg, "type", c->err_type, "param", "code",
                              c->err_status);
        emit_json_locked(c, e);
        emit_locked(c, "data: [DONE]\n\n", 14);
    }
    void *conn = terminal_locked(c);
    pthread_mutex_unlock(&c->mu);
    sink_wake_after(s, conn);
    pass_slot(s);
}

static const struct srv_sink sink_template = {
    .on_text = on_text, .on_finish = on_finish, .on_embedding = on_embedding,
    .on_raw_head = on_raw_head, .on_raw = on_raw, .on_done = on_done,
    .on_error = on_error, .raw_full = raw_full,
};

/* ---------------- dispatch ---------------- */

static int status_for_code(int code)
{
    switch (code) {
    case KM_EINVAL: case KM_ERANGE: case KM_EUNSUPPORTED: case KM_EFORMAT:
        return 400;
    case KM_ENOTFOUND: return 404;
    case KM_EBUSY: return 429;
    case KM_ENET: return 502;
    case KM_ETIMEOUT: return 504;
    case KM_ESTATE: return 503;
    default: return 500;
    }
}

static void list_call(struct srv_call *c)
{
    struct srv_server *s = c->srv;
    pthread_mutex_lock(&s->mu);
    if (!c->listed) {
        c->next = s->calls;
        c->prev = NULL;
        if (s->calls)
            s->calls->prev = c;
        s->calls = c;
        c->listed = true;
    }
    pthread_mutex_unlock(&s->mu);
}

static enum srv_next do_submit(struct srv_call *c, struct srv_reply *r)
{
    struct srv_server *s = c->srv;
    struct km_err err;
    km_err_clear(&err);
    c->st = SRV_C_RUNNING;
    srv__mm_queue_time(c->mm, srv__now() - c->t_arrival);
    srv__mm_running(c->mm, 1);
    list_call(c);
    c->sink = sink_template;
    c->sink.ud = c;
    struct srv_job *job = NULL;
    int rc = c->be->ops->submit(c->be->impl, &c->parsed.req, &c->sink, &job, &err);
    if (rc) {
        srv__mm_running(c->mm, -1);
        pthread_mutex_lock(&c->mu);
        c->st = SRV_C_DONE;
        pthread_mutex_unlock(&c->mu);
        pass_slot(s);
        int st = status_for_code(rc);
        srv__reply_error(r, st, st == 404 ? "model" : NULL, "%s",
                         km_err_text(&err));
        return SRV_NEXT_REPLY;
    }
    pthread_mutex_lock(&c->mu);
    c->job = job;
    pthread_mutex_unlock(&c->mu);
    return SRV_NEXT_WAIT;
}

static int pick_model(struct srv_call *c, struct srv_reply *r,
                      struct srv_model_info *info)
{
    struct srv_server *s = c->srv;
    enum srv_task task = c->parsed.req.ep == SRV_EP_EMBEDDING ? SRV_TASK_EMBED
                                                             : SRV_TASK_GENERATE;
    if (!c->parsed.req.model) {
        if (!srv__default_model(s, task, c->model, sizeof c->model)) {
            srv__reply_error(r, 400, "model", "model is required (more than "
                             "one model, or none, is being served)");
            return -1;
        }
    } else {
        snprintf(c->model, sizeof c->model, "%s", c->parsed.req.model);
    }
    c->parsed.req.model = c->model;
    c->be = srv__find_model(s, c->model, info);
    if (!c->be) {
        srv__reply_error(r, 404, "model", "The model `%s` does not exist.",
                         c->model);
        return -1;
    }
    if (info->task != task) {
        srv__reply_error(r, 400, "model",
                         "The model `%s` does not support %s: its task is "
                         "`%s`", c->model, c->path,
                         info->task == SRV_TASK_EMBED ? "embed" : "generate");
        return -1;
    }
    return 0;
}

static enum srv_next start_generation(struct srv_call *c, struct srv_reply *r)
{
    struct srv_server *s = c->srv;
    enum srv_endpoint ep = c->route == SRV_R_CHAT ? SRV_EP_CHAT
                           : c->route == SRV_R_COMPLETIONS ? SRV_EP_COMPLETION
                                                           : SRV_EP_EMBEDDING;
    struct srv_perr pe = {0};
    if (srv__parse_request_for(s, ep, c->body.data ? c->body.data : "",
                               c->body.len, &c->parsed, &pe)) {
        srv__reply_error(r, pe.status, pe.param, "%s", pe.msg);
        return SRV_NEXT_REPLY;
    }
    c->parsed_ok = true;
    struct srv_model_info info;
    if (pick_model(c, r, &info))
        return SRV_NEXT_REPLY;
    char hex[33];
    srv__random_hex(hex);
    snprintf(c->id, sizeof c->id, "%s-%s",
             ep == SRV_EP_CHAT ? "chatcmpl" : ep == SRV_EP_COMPLETION ? "cmpl"
                                                                       : "embd",
             hex);
    c->created = (long long)srv__wall();
    c->parsed.req.request_id = c->request_id;
    c->parsed.req.arrival = c->t_arrival;
    c->parsed.req.session = c->session[0] ? c->session : NULL;
    c->mm = srv__metrics_model(s->metrics, c->model);
    enum srv_admit a = srv__limits_admit(&s->limits, c);
    if (a == SRV_ADMIT_FULL) {
        r->retry_after = srv__limits_retry_after(&s->limits);
        srv__reply_error(r, 429, NULL, "too many requests: %ld running and %ld "
                         "queued; retry later", s->limits.max_running,
                         s->limits.max_waiting);
        return SRV_NEXT_REPLY;
    }
    if (a == SRV_ADMIT_RUN)
        return do_submit(c, r);
    c->st = SRV_C_QUEUED;
    srv__mm_waiting(c->mm, 1);
    list_call(c);
    return SRV_NEXT_WAIT;
}

enum srv_next srv__call_dispatch(struct srv_call *c, struct srv_reply *r)
{
    c->dispatched = true;
    if (c->body_too_big) {
        srv__reply_error(r, 413, NULL, "request body exceeds the limit of %llu "
                         "bytes", c->srv->cfg.max_body);
        return SRV_NEXT_REPLY;
    }
    if (atomic_load(&c->srv->draining)) {
        srv__reply_error(r, 503, NULL, "the server is shutting down");
        return SRV_NEXT_REPLY;
    }
    if (srv__route_is_builtin_async(c->route))
        return start_generation(c, r);
    srv__route_sync(c, r);
    return SRV_NEXT_REPLY;
}

/* ---------------- after a wake ---------------- */

static enum srv_next step_queued(struct srv_call *c, struct srv_reply *r)
{
    bool admitted = c->admitted, rejected = c->rejected, timed = c->timed_out;
    pthread_mutex_unlock(&c->mu);
    if (admitted) {
        srv__mm_waiting(c->mm, -1);
        return do_submit(c, r);
    }
    if (!rejected)
        return SRV_NEXT_WAIT;
    srv__mm_waiting(c->mm, -1);
    if (timed)
        srv__reply_error(r, 504, NULL, "request timed out after %g s waiting "
                         "for a free slot", c->srv->cfg.request_timeout);
    else
        srv__reply_error(r, 503, NULL, "the request was dropped while queued");
    return SRV_NEXT_REPLY;
}

static enum srv_next step_finished(struct srv_call *c, struct srv_reply *r)
{
    if (c->raw) {
        r->status = c->raw_status;
        r->ctype = c->raw_ctype;
        km_buf_reset(&r->body);
        km_buf_append(&r->body, c->out.data + c->out_off, c->out.len - c->out_off);
        c->out_off = c->out.len;
    } else if (c->timed_out) {
        srv__reply_error(r, 504, NULL, "request timed out after %g s",
                         c->srv->cfg.request_timeout);
    } else if (c->err_status) {
        srv__reply_error(r, c->err_status, NULL, "%s", c->err_msg);
    } else {
        srv__reply_json(r, 200, srv__render_final(c));
    }
    pthread_mutex_unlock(&c->mu);
    return SRV_NEXT_REPLY;
}

enum srv_next srv__call_step(struct srv_call *c, struct srv_reply *r)
{
    pthread_mutex_lock(&c->mu);
    c->wake_pending = false;
    if (c->st == SRV_C_QUEUED)
        return step_queued(c, r);
    bool stream = c->parsed.req.stream || (c->raw && !c->terminal);
    if (c->terminal && (!stream || c->raw || (c->err_status && !c->sse &&
                                              c->out.len == c->out_off)))
        return step_finished(c, r);
    if (stream && (c->out.len > c->out_off || c->terminal || c->ka_due ||
                   c->raw_head)) {
        c->sse = !c->raw;
        c->t_last_write = srv__now();
        pthread_mutex_unlock(&c->mu);
        return SRV_NEXT_STREAM;
    }
    pthread_mutex_unlock(&c->mu);
    return SRV_NEXT_WAIT;
}

long srv__call_read(struct srv_call *c, char *buf, size_t max)
{
    long n = 0;
    pthread_mutex_lock(&c->mu);
    size_t avail = c->out.len - c->out_off;
    if (avail) {
        n = (long)(avail < max ? avail : max);
        memcpy(buf, c->out.data + c->out_off, (size_t)n);
        c->out_off += (size_t)n;
        if (c->out_off == c->out.len) {
            km_buf_reset(&c->out);
            c->out_off = 0;
        }
        c->t_last_write = srv__now();
        c->bytes_out += (size_t)n;
        pthread_cond_broadcast(&c->space);
    } else if (c->terminal) {
        n = -1;
    }
    pthread_mutex_unlock(&c->mu);
    return n;
}

/* ---------------- end of the exchange ---------------- */

static void unlink_call(struct srv_server *s, struct srv_call *c)
{
    if (!c->listed)
        return;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->calls = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->listed = false;
}

void srv__call_completed(struct srv_call *c, bool ok)
{
    struct srv_server *s = c->srv;
    double dur = srv__now() - c->t_arrival;
    if (!ok && c->status == 0)
        c->status = 499;
    srv__metrics_http(s->metrics, c->route, c->method, c->status, dur);
    if (s->access_log)
        srv__access_log(c->remote, c->method, c->path, c->status,
                        c->bytes_out, dur, c->request_id, c->model);
    pthread_mutex_lock(&s->mu);
    pthread_mutex_lock(&c->mu);
    c->gone = true;
    /* A call MHD completes while still waiting for admission must leave the
     * queue now: srv__limits_release would otherwise hand out freed memory. */
    if (c->st == SRV_C_QUEUED)
        srv__limits_remove(&s->limits, c);
    bool running = c->job && !c->terminal;
    if (running)
        c->client_gone = c->cancel_pending = true; /* the ticker waits */
    struct srv_backend *be = c->be;
    struct srv_job *job = c->job;
    pthread_cond_broadcast(&c->space);
    pthread_mutex_unlock(&c->mu);
    if (!running)
        unlink_call(s, c);
    pthread_mutex_unlock(&s->mu);
    if (running) {
        be->ops->cancel(be->impl, job); /* the ticker frees the call later */
        pthread_mutex_lock(&c->mu);
        c->cancel_pending = false;
        pthread_mutex_unlock(&c->mu);
        return;
    }
    if (c->job)
        c->be->ops->release(c->be->impl, c->job);
    srv__call_free(c);
}

static bool peer_closed(int fd)
{
    if (fd < 0)
        return false;
    struct pollfd p = {.fd = fd, .events = POLLIN | POLLRDHUP};
    if (poll(&p, 1, 0) <= 0)
        return false;
    if (p.revents & (POLLRDHUP | POLLHUP | POLLERR))
        return true;
    char ch;
    return (p.revents & POLLIN) && recv(fd, &ch, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

/* Under server->mu. Returns true when the call is finished and unlinked:
 * the ticker then releases its job and frees it. */
bool srv__call_tick(struct srv_call *c, double now)
{
    struct srv_server *s = c->srv;
    bool cancel = false, drop_queued = false;
    void *conn = NULL;
    pthread_mutex_lock(&c->mu);
    if (c->gone) {
        bool done = c->terminal && !c->cancel_pending;
        pthread_mutex_unlock(&c->mu);
        if (done)
            unlink_call(s, c);
        return done;
    }
    bool live = c->st == SRV_C_RUNNING || c->st == SRV_C_QUEUED;
    if (live && c->suspended && !c->client_gone && peer_closed(c->fd)) {
        c->client_gone = true;
        cancel = c->job && !c->terminal;
        drop_queued = c->st == SRV_C_QUEUED;
    }
    double limit = s->cfg.request_timeout;
    if (live && limit > 0 && now - c->t_arrival > limit && !c->timed_out) {
        c->timed_out = true;
        cancel = c->job && !c->terminal;
        drop_queued = c->st == SRV_C_QUEUED;
    }
    if (c->st == SRV_C_RUNNING && c->parsed.req.stream && !c->terminal) {
        if (!c->sse && !c->ka_due && now - c->t_arrival >= s->cfg.keepalive) {
            c->ka_due = true;
            conn = wake_locked(c);
        } else if (c->sse && c->suspended &&
                   now - c->t_last_write >= s->cfg.keepalive) {
            km_buf_puts(&c->out, ": keep-alive\n\n");
            conn = wake_locked(c);
        }
    }
    if (cancel)
        c->canceled = true;
    struct srv_job *job = c->job;
    pthread_mutex_unlock(&c->mu);
    sink_wake_after(s, conn);
    if (cancel)
        c->be->ops->cancel(c->be->impl, job);
    if (drop_queued && srv__limits_remove(&s->limits, c)) {
        pthread_mutex_lock(&c->mu);
        c->rejected = true;
        conn = wake_locked(c);
        pthread_mutex_unlock(&c->mu);
        sink_wake_after(s, conn);
    }
    return false;
}
