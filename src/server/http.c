/* http.c - the libmicrohttpd adapter: the only file that includes
 * microhttpd.h. It copies the request line and headers into a struct
 * srv_call, feeds the body, and turns the core's answers (srv_next) into MHD
 * responses: a whole buffer, or an SSE/pass-through stream read by a
 * content-reader callback.
 *
 * Threads: --http-threads event loops (loop.h), each running its own MHD
 * daemon in external-epoll mode on one shared listening socket. Work that a
 * request starts on its loop (the gateway's upstream transfers) runs in the
 * same thread, so its events reach the connection without a thread switch;
 * other backends resume connections from their own threads as before.
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
#include "server/loop.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define STREAM_BLOCK 16384

static void suspend_conn(void *conn)
{
    MHD_suspend_connection(conn);
}

/* One HTTP thread: an event loop running an MHD daemon. */
struct http_worker {
    struct srv_loop *loop;
    struct MHD_Daemon *d;
    struct srv_loop_src src;
    struct srv_loop_io io;      /* the daemon's epoll fd */
    atomic_bool due;            /* MHD_run needed: events or a resume */
    double t_due;               /* ... or its next connection timeout */
};

/* The daemons run in external-epoll mode, which has no wake-up of its own:
 * the connection's loop (its socket context, see on_connection) is woken to
 * let MHD see the resume. */
static void resume_conn(void *conn)
{
    MHD_resume_connection(conn);
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    struct http_worker *w = ci ? ci->socket_context : NULL;
    if (!w)
        return;
    atomic_store(&w->due, true);
    srv_loop_wake(w->loop);
}

/* v (NULL: "") into out, cut to cap - 1 bytes, like snprintf "%s". */
static void copy_str(char *out, size_t cap, const char *v)
{
    size_t n = v ? strnlen(v, cap - 1) : 0;
    memcpy(out, v ? v : "", n);
    out[n] = '\0';
}

static void copy_header(struct MHD_Connection *conn, const char *name,
                        char *out, size_t cap)
{
    copy_str(out, cap, MHD_lookup_connection_value(conn, MHD_HEADER_KIND, name));
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
    copy_str(c->method, sizeof c->method, method);
    copy_str(c->path, sizeof c->path, url);
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

static enum MHD_Result handle_request(void *cls, struct MHD_Connection *conn,
                                      const char *url, const char *method,
                                      const char *upload, size_t *upload_size,
                                      void **con_cls)
{
    struct srv_server *s = cls;
    struct srv_call *c = *con_cls;
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

/* The OpenAI routes submit their job and return (the answer comes by
 * resume), so their backend work may run on this thread's loop
 * (srv_loop_set_returning); the synchronous routes may block on a job
 * (/v1/retrieve) and get no such promise. */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn,
                                  const char *url, const char *method,
                                  const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls)
{
    const struct srv_call *c = *con_cls;
    (void)version;
    srv_loop_set_returning(c && c->route >= 0 &&
                           srv__route_is_builtin_async(c->route));
    enum MHD_Result r = handle_request(cls, conn, url, method, upload,
                                       upload_size, con_cls);
    srv_loop_set_returning(false);
    return r;
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
                   socklen_t *len, struct km_err *err)
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
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return KM_OK;
}

/* The listening socket all the loops' daemons accept from; -1 on failure. */
static int listen_on(const struct sockaddr_storage *ss, socklen_t len)
{
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (ss->ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd, (const struct sockaddr *)ss, len) != 0 || listen(fd, 1024) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int bound_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return -1;
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static unsigned pool_size(const struct srv_config *cfg)
{
    if (cfg->http_threads > 0)
        return (unsigned)cfg->http_threads;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (unsigned)n : 1;
}

struct http_rt {                /* srv_server.daemon */
    unsigned n;
    struct http_worker *w;
};

/* A new connection remembers its worker (for resume_conn). */
static void on_connection(void *cls, struct MHD_Connection *conn,
                          void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    (void)conn;
    if (code == MHD_CONNECTION_NOTIFY_STARTED)
        *socket_context = cls;
}

static void on_mhd_ready(struct srv_loop_io *io, unsigned events)
{
    struct http_worker *w = io->ud;
    (void)events;
    atomic_store(&w->due, true);    /* MHD_run follows in this pass */
}

/* In a pass with something for MHD (socket events, resumed connections,
 * a connection timeout due), let it run; sleep no longer than its next
 * connection timeout. Passes for upstream sockets alone skip it. */
static int mhd_pass(void *ud)
{
    struct http_worker *w = ud;
    double now = srv__now();
    if (!atomic_exchange(&w->due, false) && (w->t_due < 0 || now < w->t_due)) {
        double ms = w->t_due < 0 ? -1 : (w->t_due - now) * 1000.0 + 1;
        return ms < 0 ? -1 : ms > 1000 ? 1000 : (int)ms;
    }
    /* a connection that MHD keeps ready (timeout 0) takes a few steps,
     * e.g. from a sent reply to reading the next request: run them here
     * rather than one outer pass each */
    MHD_UNSIGNED_LONG_LONG ms = 0;
    bool has = false;
    for (int i = 0; i < 4 && (i == 0 || (has && ms == 0)); i++) {
        MHD_run(w->d);
        has = MHD_get_timeout(w->d, &ms) == MHD_YES;
    }
    w->t_due = -1;
    if (!has)
        return -1;
    w->t_due = srv__now() + (double)ms / 1000.0;
    return ms > 1000 ? 1000 : (int)ms;
}

static struct MHD_Daemon *start_daemon(struct srv_server *s, int fd,
                                       unsigned limit, struct http_worker *w)
{
    unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    return MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, s,
        MHD_OPTION_LISTEN_SOCKET, fd,
        MHD_OPTION_CONNECTION_LIMIT, limit,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)s->cfg.conn_timeout,
        /* libmicrohttpd 0.9.75 zeroes the whole pool before every request
         * on a keep-alive connection: 128K made that memset a third of the
         * CPU time of GET /v1/models; 32K (its default) still takes about
         * 32K of request line and headers (431 beyond). */
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(32 * 1024),
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, w,
        MHD_OPTION_EXTERNAL_LOGGER, mhd_log, s,
        MHD_OPTION_END);
}

/* Loop and daemon of worker w over its own copy of the listening socket
 * (the daemon closes it). */
static int worker_start(struct srv_server *s, struct http_worker *w, int fd,
                        unsigned limit, struct km_err *err)
{
    int rc = srv_loop_new(&w->loop, err);
    if (rc != KM_OK) {
        close(fd);
        return rc;
    }
    w->t_due = -1;
    atomic_store(&w->due, true);
    w->d = start_daemon(s, fd, limit, w);
    const union MHD_DaemonInfo *di = w->d ?
        MHD_get_daemon_info(w->d, MHD_DAEMON_INFO_EPOLL_FD) : NULL;
    if (!di) {
        if (!w->d)
            close(fd);
        return km_fail(err, KM_EIO, "cannot start the HTTP daemon");
    }
    w->io.fd = di->epoll_fd;
    w->io.fn = on_mhd_ready;
    w->io.ud = w;
    w->src.ud = w;
    w->src.run = mhd_pass;
    srv_loop_io_set(w->loop, &w->io, EPOLLIN);
    srv_loop_add(w->loop, &w->src);
    return srv_loop_start(w->loop, "kanoa-http", err);
}

static void http_free(struct http_rt *rt)
{
    for (unsigned i = 0; i < rt->n; i++)
        srv_loop_stop(rt->w[i].loop);   /* upstream lanes end here */
    for (unsigned i = 0; i < rt->n; i++) {
        if (rt->w[i].d)
            MHD_stop_daemon(rt->w[i].d);
        srv_loop_unref(rt->w[i].loop);
    }
    km_free(rt->w);
    km_free(rt);
}

int srv__http_start(struct srv_server *s, struct km_err *err)
{
    struct sockaddr_storage ss;
    socklen_t len = 0;
    int rc = resolve(s->cfg.host, (int)s->cfg.port, &ss, &len, err);
    if (rc)
        return rc;
    s->http.suspend = suspend_conn;
    s->http.resume = resume_conn;
    int fd = listen_on(&ss, len);
    if (fd < 0)
        return km_fail(err, KM_EIO, "cannot listen on %s:%ld (address in use, "
                       "or not permitted)", s->cfg.host, s->cfg.port);
    unsigned n = pool_size(&s->cfg);
    unsigned limit = (unsigned)s->cfg.max_connections / n;
    struct http_rt *rt = km_calloc(1, sizeof *rt);
    rt->w = rt ? km_calloc(n, sizeof *rt->w) : NULL;
    if (!rt || !rt->w) {
        km_free(rt);
        close(fd);
        return km_fail(err, KM_ENOMEM, "HTTP: out of memory");
    }
    s->port = bound_port(fd);
    for (unsigned i = 0; i < n && rc == KM_OK; i++) {
        int wfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
        rt->n = i + 1;
        rc = wfd < 0 ? km_fail(err, KM_EIO, "HTTP: dup: %s", strerror(errno))
                     : worker_start(s, &rt->w[i], wfd, limit ? limit : 1, err);
    }
    close(fd);                  /* each daemon has its own copy */
    if (rc != KM_OK) {
        http_free(rt);
        return rc;
    }
    s->daemon = rt;
    return KM_OK;
}

/* On the worker's thread (no race with its MHD_run): stop accepting. */
static void quiesce_one(void *ud)
{
    struct http_worker *w = ud;
    MHD_socket fd = MHD_quiesce_daemon(w->d);
    if (fd != MHD_INVALID_SOCKET)
        close(fd);
}

void srv__http_quiesce(struct srv_server *s)
{
    struct http_rt *rt = s->daemon;
    if (!rt)
        return;
    for (unsigned i = 0; i < rt->n; i++)
        srv_loop_call(rt->w[i].loop, quiesce_one, &rt->w[i]);
}

void srv__http_stop(struct srv_server *s)
{
    if (!s->daemon)
        return;
    http_free(s->daemon);
    s->daemon = NULL;
}
