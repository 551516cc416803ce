/* upstream_h1.c - the gateway's own HTTP/1.1 client, for plain http://
 * upstreams (https:// ones, proxies from the environment and
 * KANOA_UPSTREAM_CLIENT=curl go through libcurl, upstream_loop.c).
 *
 * Why: a proxied request is a small POST on a kept-alive loopback or LAN
 * connection, answered by a stream. libcurl spends most of the gateway's
 * CPU per request on generic work (set-up of a transfer, connection-cache
 * lookup, a liveness poll before every reuse and a poll before every
 * read). Here a request is one sendmsg of its head and the client's body
 * (not copied), and each readable event is one recv fed to the h1.c reader,
 * whose body bytes go to the job in place.
 *
 * Connections belong to a lane (its loop's thread only). Each is either
 * working for one job (connect, send, receive) or idle in the lane's pool
 * for its upstream, still watched for input: an idle connection that
 * becomes readable was closed by the upstream (or talks out of turn) and is
 * closed. A reused connection that ends before any response byte (the
 * upstream closed it as we sent) is retried once on a fresh connection,
 * invisibly to the job. A connection that ends is unwatched and closed at
 * once; its memory is freed in ups__h1_run, after the pass's events.
 *
 * The job side (upstream_loop.c) is reached through ups__job_* and gives
 * results in libcurl's CURLcode terms, so retries, errors and metrics are
 * one code for both clients.
 */
#include "server/upstream_int.h"

#include "base/log.h"
#include "base/mem.h"
#include "server/h1.h"
#include "server/loop.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define H1_RBUF (16 * 1024)     /* > H1_LINE_MAX: a line always fits */
#define H1_HEAD_CAP 2048        /* request head: path, host, id, key fit */
#define H1_IDLE_MAX 64          /* idle connections per upstream per lane */
#define H1_KICK_ROUNDS 64       /* bound on deferred work per lane pass */

enum conn_state { C_CONNECT, C_SEND, C_RECV, C_IDLE, C_DEAD };

struct ups_h1 {
    struct srv_loop_io io;      /* first: the io callback casts back */
    struct ups_lane *lane;
    size_t up;
    struct srv_job *job;        /* NULL while idle */
    enum conn_state st;
    bool reused;                /* carried a whole exchange before */
    bool got;                   /* a response byte in this exchange */
    bool paused;                /* the job's client is behind */
    bool kick;                  /* ups__h1_run has work for it */
    bool starting;              /* inside ups__h1_start: defer results */
    CURLcode fail_rc;           /* deferred failure (kick), CURLE_OK none */
    double t_connect;           /* when the current connect began */
    int oserr;
    struct h1_resp resp;
    char head[H1_HEAD_CAP];
    size_t head_len;
    const char *body;           /* the job's request body, not copied */
    size_t body_len;
    size_t sent;                /* of head + body */
    char rbuf[H1_RBUF];
    size_t rlen;                /* unconsumed response bytes in rbuf */
    struct ups_h1 *prev, *next; /* the lane's connections (or dead list) */
    struct ups_h1 *idle_next;   /* the upstream's idle list */
};

/* ---- the target of an upstream's URL ---------------------------------- */

/* "http://host[:port][/prefix]" with no user info, query or fragment;
 * false for anything else (libcurl's then). */
bool ups__h1_target_init(struct ups_h1_target *t, const char *url)
{
    memset(t, 0, sizeof *t);
    if (strncmp(url, "http://", 7) != 0)
        return false;
    const char *a = url + 7, *slash = strchr(a, '/');
    size_t alen = slash ? (size_t)(slash - a) : strlen(a);
    const char *path = slash ? slash : "";
    if (alen == 0 || alen >= sizeof t->host_hdr || memchr(a, '@', alen) ||
        strpbrk(path, "?#") || strlen(path) >= sizeof t->prefix)
        return false;
    memcpy(t->host_hdr, a, alen);
    snprintf(t->prefix, sizeof t->prefix, "%s", path);
    const char *h = a, *port = NULL;
    size_t hlen = alen;
    if (*a == '[') {
        const char *rb = memchr(a, ']', alen);
        if (!rb)
            return false;
        h = a + 1;
        hlen = (size_t)(rb - h);
        port = rb + 1 < a + alen && rb[1] == ':' ? rb + 2 : NULL;
    } else {
        const char *colon = memchr(a, ':', alen);
        if (colon) {
            hlen = (size_t)(colon - a);
            port = colon + 1;
        }
    }
    long pn = 80;
    if (port) {
        char *end = NULL;
        pn = strtol(port, &end, 10);
        if (end != a + alen || pn <= 0 || pn > 65535)
            return false;
    }
    char node[256];
    if (hlen == 0 || hlen >= sizeof node)
        return false;
    memcpy(node, h, hlen);
    node[hlen] = '\0';
    t->usable = true;
    /* a numeric host is its address; a name gets one from the probes */
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char ps[8];
    snprintf(ps, sizeof ps, "%ld", pn);
    if (getaddrinfo(node, ps, &hints, &res) == 0 && res &&
        res->ai_addrlen <= sizeof t->addr) {
        memcpy(&t->addr, res->ai_addr, res->ai_addrlen);
        t->addr_len = res->ai_addrlen;
        t->numeric = true;
    }
    freeaddrinfo(res);
    return true;
}

/* The address a probe connected to (libcurl resolved the name), for a
 * target named by host name. Called with pool->mu held. */
void ups__h1_target_learn(struct ups_h1_target *t, const char *ip, long port)
{
    if (!t->usable || t->numeric || !ip || !*ip || port <= 0 || port > 65535)
        return;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&t->addr;
    struct sockaddr_in *s4 = (struct sockaddr_in *)&t->addr;
    memset(&t->addr, 0, sizeof t->addr);
    t->addr_len = 0;
    if (inet_pton(AF_INET, ip, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        t->addr_len = sizeof *s4;
    } else if (inet_pton(AF_INET6, ip, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        t->addr_len = sizeof *s6;
    }
}

/* ---- connections -------------------------------------------------------- */

static void on_io(struct srv_loop_io *io, unsigned events);

static void list_unlink(struct ups_h1 **head, struct ups_h1 *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else if (*head == c)
        *head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

static void list_push(struct ups_h1 **head, struct ups_h1 *c)
{
    c->prev = NULL;
    c->next = *head;
    if (*head)
        (*head)->prev = c;
    *head = c;
}

static void idle_remove(struct ups_lane *ln, struct ups_h1 *c)
{
    struct ups_h1 **pp = &ln->h1_idle[c->up];
    while (*pp && *pp != c)
        pp = &(*pp)->idle_next;
    if (*pp) {
        *pp = c->idle_next;
        ln->h1_n_idle[c->up]--;
    }
    c->idle_next = NULL;
}

/* Unwatch and close; the memory waits on the dead list for ups__h1_run. */
static void conn_close(struct ups_h1 *c)
{
    struct ups_lane *ln = c->lane;
    if (c->st == C_DEAD)
        return;
    if (c->st == C_IDLE)
        idle_remove(ln, c);
    srv_loop_io_set(ln->loop, &c->io, 0);
    if (c->io.fd >= 0)
        close(c->io.fd);
    c->io.fd = -1;
    c->st = C_DEAD;
    c->job = NULL;
    list_unlink(&ln->h1_all, c);
    list_push(&ln->h1_dead, c);
}

static int watch(struct ups_h1 *c, unsigned ev)
{
    return srv_loop_io_set(c->lane->loop, &c->io, ev);
}

static void end_with(struct ups_h1 *c, CURLcode rc, int oserr);

/* Watch for ev; false (the exchange ended) when the loop refused it. */
static bool watched(struct ups_h1 *c, unsigned ev)
{
    if (watch(c, ev) == KM_OK)
        return true;
    end_with(c, CURLE_RECV_ERROR, errno);
    return false;
}

/* A non-blocking socket connecting to upstream up; -1 with errno. */
static int open_socket(struct ups_lane *ln, size_t up)
{
    struct ups_pool *p = ln->pool;
    struct sockaddr_storage ss;
    socklen_t len;
    pthread_mutex_lock(&p->mu);
    ss = p->ups[up].h1.addr;
    len = p->ups[up].h1.addr_len;
    pthread_mutex_unlock(&p->mu);
    if (len == 0) {
        errno = EADDRNOTAVAIL;
        return -1;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&ss, len) != 0 && errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static void kick_fail(struct ups_h1 *c, CURLcode rc, int oserr);

/* The job's result; the job may start another attempt (on this lane)
 * from here, or finish. */
static void end_with(struct ups_h1 *c, CURLcode rc, int oserr)
{
    struct srv_job *j = c->job;
    c->oserr = oserr;
    if (c->starting)
        kick_fail(c, rc, oserr);    /* the job is still being set up */
    else if (j)
        ups__job_end(c->lane, j, rc);
}

/* Report a failure later, from ups__h1_run (the job is not running yet). */
static void kick_fail(struct ups_h1 *c, CURLcode rc, int oserr)
{
    c->fail_rc = rc;
    c->oserr = oserr;
    c->kick = true;
    c->lane->h1_kick = true;
}

/* Open a fresh connection for c's exchange (first try or a stale retry). */
static void conn_connect(struct ups_h1 *c)
{
    int fd = open_socket(c->lane, c->up);
    c->io.fd = fd;
    c->st = C_CONNECT;
    c->t_connect = ups__now();
    if (fd < 0) {
        kick_fail(c, CURLE_COULDNT_CONNECT, errno);
        return;
    }
    if (watch(c, EPOLLOUT) != KM_OK)
        kick_fail(c, CURLE_COULDNT_CONNECT, errno);
}

static bool stale_retry(struct ups_h1 *c)
{
    if (!c->reused || c->got)
        return false;
    km_log(KM_LOG_DEBUG, "upstream %s: kept-alive connection closed before "
           "the answer; retrying on a new one",
           c->lane->pool->ups[c->up].spec.name);
    srv_loop_io_set(c->lane->loop, &c->io, 0);
    if (c->io.fd >= 0)
        close(c->io.fd);
    c->reused = false;
    c->sent = 0;
    c->rlen = 0;
    h1_init(&c->resp);
    conn_connect(c);
    return true;
}

/* Write what is left of the request; false when the exchange ended (a
 * refused send goes on as reading: see below). */
static bool conn_send(struct ups_h1 *c)
{
    size_t total = c->head_len + c->body_len;
    while (c->sent < total) {
        struct iovec iov[2];
        int n = 0;
        if (c->sent < c->head_len)
            iov[n++] = (struct iovec){c->head + c->sent, c->head_len - c->sent};
        size_t boff = c->sent > c->head_len ? c->sent - c->head_len : 0;
        if (c->body_len > boff)
            iov[n++] = (struct iovec){(char *)c->body + boff, c->body_len - boff};
        struct msghdr m = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        ssize_t k = sendmsg(c->io.fd, &m, MSG_NOSIGNAL);
        if (k > 0) {
            c->sent += (size_t)k;
            continue;
        }
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            c->st = C_SEND;
            return watched(c, EPOLLIN | EPOLLOUT);
        }
        /* The upstream stopped reading (it may have answered already, e.g.
         * 413 to a large body, then closed): stop sending and read what it
         * said; the socket's error state reports at once. Reading finds the
         * answer, or the end that counts as a stale connection or a close
         * before the answer. */
        c->st = C_RECV;
        return watched(c, EPOLLIN);
    }
    c->st = C_RECV;
    return watched(c, EPOLLIN);
}

/* ---- reading the response ------------------------------------------------ */

static void on_field(void *ud, const char *name, size_t nlen, const char *v,
                     size_t vlen)
{
    struct ups_h1 *c = ud;
    if (nlen == 12 && strncasecmp(name, "content-type", 12) == 0)
        ups__job_ctype(c->job, v, vlen);
}

static void on_head(void *ud, int status)
{
    struct ups_h1 *c = ud;
    ups__job_head(c->job, status);
}

static bool on_data(void *ud, const char *p, size_t n)
{
    struct ups_h1 *c = ud;
    enum ups_body r = ups__job_body(c->job, p, n);
    if (r == UPS_BODY_PAUSE) {
        c->paused = true;
        watch(c, 0);
    }
    return r == UPS_BODY_TAKEN;
}

static const struct h1_cb reader = {on_field, on_head, on_data};

/* Feed the buffered bytes; false when the exchange ended (c may be idle,
 * dead or working for another attempt now) or reading must stop. */
static bool conn_feed(struct ups_h1 *c)
{
    long k = h1_feed(&c->resp, c->rbuf, c->rlen, &reader, c);
    if (k < 0) {        /* the job's warning says what (ups__h1_error) */
        end_with(c, CURLE_WEIRD_SERVER_REPLY, 0);
        return false;
    }
    memmove(c->rbuf, c->rbuf + k, c->rlen - (size_t)k);
    c->rlen -= (size_t)k;
    if (c->resp.state == H1_DONE) {
        end_with(c, CURLE_OK, 0);
        return false;
    }
    return !c->paused && !ups__job_stopped(c->job);
}

static void conn_eof(struct ups_h1 *c)
{
    if (h1_eof(&c->resp)) {
        end_with(c, CURLE_OK, 0);
    } else if (!stale_retry(c)) {
        bool head = c->resp.state == H1_STATUS || c->resp.state == H1_FIELD;
        end_with(c, head ? CURLE_GOT_NOTHING : CURLE_PARTIAL_FILE, 0);
    }
}

static void conn_read(struct ups_h1 *c)
{
    while (!c->paused) {
        size_t room = sizeof c->rbuf - c->rlen;
        if (room == 0)
            return;     /* a stopped job's bytes: the sweep ends it */
        ssize_t n = recv(c->io.fd, c->rbuf + c->rlen, room, 0);
        if (n > 0) {
            c->got = true;
            c->rlen += (size_t)n;
            if (!conn_feed(c) || (size_t)n < room)
                return;
            continue;
        }
        if (n == 0) {
            conn_eof(c);
            return;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return;
        int e = errno;
        if (!stale_retry(c))
            end_with(c, CURLE_RECV_ERROR, e);
        return;
    }
}

/* The connect ended: send, or report why not. An event left from the
 * socket a stale retry replaced may come first: without an error and a
 * peer, the connect is still under way. */
static void conn_connected(struct ups_h1 *c)
{
    int e = 0;
    socklen_t el = sizeof e;
    if (getsockopt(c->io.fd, SOL_SOCKET, SO_ERROR, &e, &el) != 0)
        e = errno;
    if (e) {
        end_with(c, CURLE_COULDNT_CONNECT, e);
        return;
    }
    struct sockaddr_storage peer;
    socklen_t pl = sizeof peer;
    if (getpeername(c->io.fd, (struct sockaddr *)&peer, &pl) != 0)
        return;     /* ENOTCONN: not yet */
    conn_send(c);
}

static void on_io(struct srv_loop_io *io, unsigned events)
{
    struct ups_h1 *c = (struct ups_h1 *)io;
    struct ups_lane *ln = c->lane;
    ln->now = ups__now();
    switch (c->st) {
    case C_IDLE:        /* closed by the upstream, or talking out of turn */
        conn_close(c);
        return;
    case C_CONNECT:
        conn_connected(c);
        break;
    case C_SEND:    /* the upstream may answer before reading everything */
        if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
            conn_read(c);
        if (c->st == C_SEND && (events & EPOLLOUT))
            conn_send(c);
        break;
    case C_RECV:
        conn_read(c);
        break;
    case C_DEAD:
        return;
    }
    ups__jobs_flush(ln);    /* what was read reaches the client this pass */
}

/* ---- the job side ------------------------------------------------------ */

static const char *const paths[UPS_N_PATHS] = {
    "/v1/chat/completions", "/v1/completions", "/v1/embeddings",
};

static bool build_head(struct ups_h1 *c, const struct ups_up *u, int path,
                       const char *rid, size_t body_len)
{
    int n = snprintf(c->head, sizeof c->head,
                     "POST %s%s HTTP/1.1\r\nHost: %s\r\n"
                     "Content-Type: application/json\r\n"
                     "X-Request-Id: %s\r\n%s%s"
                     "Content-Length: %zu\r\n\r\n",
                     u->h1.prefix, paths[path], u->h1.host_hdr, rid, u->auth,
                     u->auth[0] ? "\r\n" : "", body_len);
    c->head_len = n > 0 ? (size_t)n : 0;
    return n > 0 && (size_t)n < sizeof c->head;
}

static struct ups_h1 *conn_take_idle(struct ups_lane *ln, size_t up)
{
    struct ups_h1 *c = ln->h1_idle[up];
    if (!c)
        return NULL;
    ln->h1_idle[up] = c->idle_next;
    ln->h1_n_idle[up]--;
    c->idle_next = NULL;
    return c;
}

static struct ups_h1 *conn_new(struct ups_lane *ln, size_t up)
{
    struct ups_h1 *c = km_calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->io.fd = -1;
    c->io.fn = on_io;
    c->lane = ln;
    c->up = up;
    list_push(&ln->h1_all, c);
    return c;
}

static bool lane_tables(struct ups_lane *ln)
{
    if (!ln->h1_idle) {
        ln->h1_idle = km_calloc(ln->pool->n, sizeof *ln->h1_idle);
        ln->h1_n_idle = km_calloc(ln->pool->n, sizeof *ln->h1_n_idle);
    }
    return ln->h1_idle && ln->h1_n_idle;
}

int ups__h1_start(struct ups_lane *ln, struct srv_job *j, size_t up, int path,
                  const char *rid, const char *body, size_t body_len,
                  struct ups_h1 **out)
{
    *out = NULL;
    if (!lane_tables(ln))
        return KM_ENOMEM;
    struct ups_h1 *c = conn_take_idle(ln, up);
    bool fresh = !c;
    if (fresh && !(c = conn_new(ln, up)))
        return KM_ENOMEM;
    const struct ups_up *u = &ln->pool->ups[up];
    if (!build_head(c, u, path, rid, body_len)) {
        conn_close(c);
        return KM_ERANGE;
    }
    c->job = j;
    c->body = body;
    c->body_len = body_len;
    c->sent = 0;
    c->rlen = 0;
    c->got = c->paused = c->kick = false;
    c->fail_rc = CURLE_OK;
    c->oserr = 0;
    h1_init(&c->resp);
    *out = c;
    c->starting = true;     /* failures now are reported by ups__h1_run */
    if (fresh)
        conn_connect(c);
    else
        conn_send(c);
    c->starting = false;
    return KM_OK;
}

/* The job is done with c: keep it for the next request if the exchange
 * ended cleanly, else close it. */
void ups__h1_release(struct ups_lane *ln, struct ups_h1 *c)
{
    if (!c)
        return;
    c->job = NULL;
    c->kick = false;
    bool keep = h1_reusable(&c->resp) && c->rlen == 0 && !c->paused &&
                c->sent == c->head_len + c->body_len && c->st != C_DEAD &&
                ln->h1_idle && ln->h1_n_idle[c->up] < H1_IDLE_MAX;
    if (!keep) {
        conn_close(c);
        return;
    }
    c->st = C_IDLE;
    c->reused = true;
    c->body = NULL;
    c->idle_next = ln->h1_idle[c->up];
    ln->h1_idle[c->up] = c;
    ln->h1_n_idle[c->up]++;
    if (c->io.events != EPOLLIN)
        watch(c, EPOLLIN);
}

bool ups__h1_connect_late(const struct ups_h1 *c, double now, double limit_s)
{
    return c && c->st == C_CONNECT && now - c->t_connect > limit_s;
}

int ups__h1_oserr(const struct ups_h1 *c)
{
    return c ? c->oserr : 0;
}

const char *ups__h1_error(const struct ups_h1 *c)
{
    return c && c->resp.state == H1_ERROR ? c->resp.err : NULL;
}

void ups__h1_resume(struct ups_h1 *c)
{
    if (!c || !c->paused)
        return;
    c->paused = false;
    c->kick = true;
    c->lane->h1_kick = true;
    if (c->st == C_RECV || c->st == C_SEND)
        watch(c, c->st == C_SEND ? EPOLLIN | EPOLLOUT : EPOLLIN);
}

/* One connection's deferred work: a failure found while starting, or the
 * bytes held while its job was paused. */
static void run_kick(struct ups_h1 *c)
{
    c->kick = false;
    if (c->fail_rc != CURLE_OK) {
        CURLcode rc = c->fail_rc;
        c->fail_rc = CURLE_OK;
        end_with(c, rc, c->oserr);
    } else if (c->job && c->rlen) {
        conn_feed(c);   /* more input comes by the watched socket */
    }
}

static void free_dead(struct ups_lane *ln)
{
    while (ln->h1_dead) {
        struct ups_h1 *c = ln->h1_dead;
        list_unlink(&ln->h1_dead, c);
        km_free(c);
    }
}

void ups__h1_run(struct ups_lane *ln)
{
    for (int round = 0; ln->h1_kick && round < H1_KICK_ROUNDS; round++) {
        ln->h1_kick = false;
        for (struct ups_h1 *c = ln->h1_all, *next; c; c = next) {
            next = c->next;
            if (c->kick)
                run_kick(c);
            if (next && next->st == C_DEAD) {   /* closed meanwhile: again */
                ln->h1_kick = true;
                break;
            }
        }
    }
    if (ln->h1_kick)
        srv_loop_wake(ln->loop);
    free_dead(ln);
}

/* Lane shutdown (jobs already ended): close and free every connection. */
void ups__h1_lane_free(struct ups_lane *ln)
{
    while (ln->h1_all)
        conn_close(ln->h1_all);
    free_dead(ln);
    km_free(ln->h1_idle);
    km_free(ln->h1_n_idle);
    ln->h1_idle = NULL;
    ln->h1_n_idle = NULL;
}
