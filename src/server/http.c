/* http.c - the libmicrohttpd adapter: the only file that includes
 * microhttpd.h. It runs MHD with an internal epoll thread pool, copies the
 * request line and headers into a struct srv_call, feeds the body, and turns
 * the core's answers (srv_next) into MHD responses: a whole buffer, or an
 * SSE/pass-through stream read by a content-reader callback.
 *
 * Waiting never blocks an MHD thread: a call that has nothing to send yet
 * suspends its connection (srv__call_park, under the call's mutex) and the
 * core resumes it when a backend event arrives.
 *
 * Lifetimes: reply bodies are handed to MHD with km_free as their free
 * callback; a streaming response reads from the call, which lives until MHD
 * reports the request completed (srv__call_completed). */
#include "server/server_int.h"

#include "base/mem.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define STREAM_BLOCK 16384

static void suspend_conn(void *conn)
{
    MHD_suspend_connection(conn);
}

static void resume_conn(void *conn)
{
    MHD_resume_connection(conn);
}

static void copy_header(struct MHD_Connection *conn, const char *name,
                        char *out, size_t cap)
{
    const char *v = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, name);
    snprintf(out, cap, "%s", v ? v : "");
}

/* Authorization is compared whole: one too long for the buffer is dropped
 * (the request then has no credentials) rather than cut, since a cut value
 * could equal a key that the full value does not. */
static void copy_authorization(struct MHD_Connection *conn, char *out, size_t cap)
{
    const char *v = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                MHD_HTTP_HEADER_AUTHORIZATION);
    snprintf(out, cap, "%s", v && strlen(v) < cap ? v : "");
}

static void remote_addr(struct MHD_Connection *conn, char *out, size_t cap)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    snprintf(out, cap, "-");
    if (!ci || !ci->client_addr)
        return;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out,
                  (socklen_t)cap);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, out,
                  (socklen_t)cap);
}

static void fill_request(struct srv_call *c, struct MHD_Connection *conn,
                         const char *url, const char *method)
{
    c->conn = conn;
    snprintf(c->method, sizeof c->method, "%s", method);
    snprintf(c->path, sizeof c->path, "%s", url);
    copy_header(conn, "X-Request-Id", c->request_id, sizeof c->request_id);
    copy_header(conn, MHD_HTTP_HEADER_ORIGIN, c->origin, sizeof c->origin);
    copy_header(conn, MHD_HTTP_HEADER_CONTENT_TYPE, c->content_type,
                sizeof c->content_type);
    copy_authorization(conn, c->authorization, sizeof c->authorization);
    copy_header(conn, "Access-Control-Request-Method", c->acr_method,
                sizeof c->acr_method);
    copy_header(conn, "X-Session-Id", c->session, sizeof c->session);
    const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                 MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl)
        c->content_length = strtoll(cl, NULL, 10);
    remote_addr(conn, c->remote, sizeof c->remote);
    const union MHD_ConnectionInfo *fi =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    c->fd = fi ? fi->connect_fd : -1;
}

static void add_common_headers(struct srv_call *c, struct MHD_Response *resp)
{
    MHD_add_response_header(resp, "X-Request-Id", c->request_id);
    if (!c->cors_ok)
        return;
    MHD_add_response_header(resp, "Access-Control-Allow-Origin", c->origin);
    MHD_add_response_header(resp, "Vary", "Origin");
    MHD_add_response_header(resp, "Access-Control-Expose-Headers",
                            "X-Request-Id, Retry-After");
}

static void add_reply_headers(struct srv_call *c, const struct srv_reply *r,
                              struct MHD_Response *resp)
{
    add_common_headers(c, resp);
    if (r->ctype)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->ctype);
    if (r->retry_after > 0) {
        char v[24];
        snprintf(v, sizeof v, "%ld", r->retry_after);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, v);
    }
    if (r->allow) {
        char v[64];
        snprintf(v, sizeof v, "%s, OPTIONS", r->allow);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, v);
    }
    if (r->auth_challenge)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                                "Bearer");
    if (r->preflight) {
        const char *h = MHD_lookup_connection_value(
            c->conn, MHD_HEADER_KIND, "Access-Control-Request-Headers");
        MHD_add_response_header(resp, "Access-Control-Allow-Methods",
                                "GET, POST, OPTIONS");
        MHD_add_response_header(resp, "Access-Control-Allow-Headers",
                                h ? h : "Authorization, Content-Type, X-Request-Id");
        MHD_add_response_header(resp, "Access-Control-Max-Age", "600");
    }
}

static void free_body(void *p)
{
    km_free(p);
}

static enum MHD_Result send_reply(struct srv_call *c, struct MHD_Connection *conn)
{
    struct srv_reply *r = &c->reply;
    size_t len = 0;
    char *data = km_buf_take(&r->body, &len);
    struct MHD_Response *resp;
    if (data)
        resp = MHD_create_response_from_buffer_with_free_callback_cls(
            len, data, free_body, data);
    else
        resp = MHD_create_response_from_buffer(0, (void *)"",
                                               MHD_RESPMEM_PERSISTENT);
    if (!resp) {
        km_free(data);
        return MHD_NO;
    }
    add_reply_headers(c, r, resp);
    c->status = r->status;
    c->bytes_out = len;
    enum MHD_Result ret = MHD_queue_response(conn, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static ssize_t read_stream(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct srv_call *c = cls;
    (void)pos;
    for (;;) {
        long n = srv__call_read(c, buf, max);
        if (n > 0)
            return n;
        if (n < 0)
            return MHD_CONTENT_READER_END_OF_STREAM;
        if (srv__call_park(c))
            return 0; /* suspended; resumed when data arrives */
    }
}

static enum MHD_Result send_stream(struct srv_call *c, struct MHD_Connection *conn)
{
    struct MHD_Response *resp = MHD_create_response_from_callback(
        MHD_SIZE_UNKNOWN, STREAM_BLOCK, read_stream, c, NULL);
    if (!resp)
        return MHD_NO;
    add_common_headers(c, resp);
    int status = 200;
    if (c->raw) {
        status = c->raw_status;
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, c->raw_ctype);
    } else {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                                "text/event-stream");
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    }
    c->status = status;
    enum MHD_Result ret = MHD_queue_response(conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result act(struct srv_call *c, struct MHD_Connection *conn,
                           enum srv_next nx)
{
    for (;;) {
        switch (nx) {
        case SRV_NEXT_REPLY: return send_reply(c, conn);
        case SRV_NEXT_STREAM: return send_stream(c, conn);
        case SRV_NEXT_BODY: return MHD_YES;
        case SRV_NEXT_WAIT:
            if (srv__call_park(c))
                return MHD_YES;
            nx = srv__call_step(c, &c->reply);
            break;
        }
    }
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn,
                                  const char *url, const char *method,
                                  const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls)
{
    struct srv_server *s = cls;
    struct srv_call *c = *con_cls;
    (void)version;
    if (!c) {
        c = srv__call_new(s);
        if (!c)
            return MHD_NO;
        *con_cls = c;
        fill_request(c, conn, url, method);
        enum srv_next nx = srv__call_begin(c, &c->reply);
        /* A reply queued before MHD has seen the (empty) body closes the
         * connection; answer body-less requests on the next call instead. */
        if (nx == SRV_NEXT_REPLY && c->content_length <= 0 &&
            !MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                         MHD_HTTP_HEADER_TRANSFER_ENCODING)) {
            c->deferred = true;
            return MHD_YES;
        }
        return act(c, conn, nx);
    }
    if (*upload_size) {
        int rc = srv__call_body(c, upload, *upload_size);
        *upload_size = 0;
        if (rc == KM_ERANGE && c->status == 0) {
            srv__reply_error(&c->reply, 413, NULL, "request body exceeds the "
                             "limit of %llu bytes", s->cfg.max_body);
            if (send_reply(c, conn) != MHD_YES)
                return MHD_NO; /* close: we will not read the rest */
        }
        return MHD_YES;
    }
    if (c->status)
        return MHD_YES; /* already answered (413 while uploading) */
    if (c->deferred) {
        c->deferred = false;
        return act(c, conn, SRV_NEXT_REPLY);
    }
    if (!c->dispatched)
        return act(c, conn, srv__call_dispatch(c, &c->reply));
    return act(c, conn, srv__call_step(c, &c->reply));
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct srv_call *c = *con_cls;
    (void)cls;
    (void)conn;
    if (!c)
        return;
    *con_cls = NULL;
    srv__call_completed(c, toe == MHD_REQUEST_TERMINATED_COMPLETED_OK);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    (void)cls;
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    km_log(KM_LOG_DEBUG, "http: %s", msg);
}

static int resolve(const char *host, int port, struct sockaddr_storage *ss,
                   bool *v6, struct km_err *err)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    int rc = getaddrinfo(host, ps, &hints, &res);
    if (rc || !res)
        return km_fail(err, KM_EINVAL, "host %s: %s", host, gai_strerror(rc));
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *v6 = res->ai_family == AF_INET6;
    freeaddrinfo(res);
    return KM_OK;
}

static unsigned pool_size(const struct srv_config *cfg)
{
    if (cfg->http_threads > 0)
        return (unsigned)cfg->http_threads;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (unsigned)n : 1;
}

int srv__http_start(struct srv_server *s, struct km_err *err)
{
    struct sockaddr_storage ss;
    bool v6 = false;
    int rc = resolve(s->cfg.host, (int)s->cfg.port, &ss, &v6, err);
    if (rc)
        return rc;
    s->http.suspend = suspend_conn;
    s->http.resume = resume_conn;
    unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG | (v6 ? MHD_USE_IPv6 : 0);
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, s,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
        MHD_OPTION_THREAD_POOL_SIZE, pool_size(&s->cfg),
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)s->cfg.max_connections,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)s->cfg.conn_timeout,
        /* libmicrohttpd 0.9.75 zeroes the whole pool before every request
         * on a keep-alive connection: 128K made that memset a third of the
         * CPU time of GET /v1/models; 32K (its default) still takes about
         * 32K of request line and headers (431 beyond). */
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(32 * 1024),
        MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024u,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
        MHD_OPTION_EXTERNAL_LOGGER, mhd_log, s,
        MHD_OPTION_END);
    if (!d)
        return km_fail(err, KM_EIO, "cannot listen on %s:%ld (address in use, "
                       "or not permitted)", s->cfg.host, s->cfg.port);
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : (int)s->cfg.port;
    s->daemon = d;
    return KM_OK;
}

void srv__http_quiesce(struct srv_server *s)
{
    if (!s->daemon)
        return;
    MHD_socket fd = MHD_quiesce_daemon(s->daemon);
    if (fd != MHD_INVALID_SOCKET)
        close(fd);
}

void srv__http_stop(struct srv_server *s)
{
    if (!s->daemon)
        return;
    MHD_stop_daemon(s->daemon);
    s->daemon = NULL;
}
