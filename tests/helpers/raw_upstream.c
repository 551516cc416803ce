/* raw_upstream.c - the scripted raw upstream of raw_upstream.h. */
#include "raw_upstream.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

const char UP_DEFAULT_ANSWER[] =
    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    "Content-Length: 11\r\n\r\n{\"ok\":true}";

static const char MODELS_ANSWER[] =
    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    "Content-Length: 22\r\n\r\n{\"data\":[{\"id\":\"m1\"}]}";

struct rbuf {
    char *p;
    size_t len, cap;
};

/* Bytes into b, at most cap; 0 at EOF, on stop or on an error. */
static size_t up_recv(struct up_conn *c, char *b, size_t cap)
{
    while (!atomic_load(&c->u->stop)) {
        struct pollfd pf = {c->fd, POLLIN, 0};
        int k = poll(&pf, 1, UP_POLL_MS);
        if (k == 0 || (k < 0 && errno == EINTR))
            continue;
        ssize_t n = recv(c->fd, b, cap, 0);
        if (n < 0 && errno == EINTR)
            continue;
        return n > 0 ? (size_t)n : 0;
    }
    return 0;
}

/* Read until b holds at least `want` bytes; false at EOF or stop. */
static bool rbuf_fill(struct up_conn *c, struct rbuf *b, size_t want)
{
    while (b->len < want) {
        if (b->cap - b->len < 65536) {
            size_t cap = b->cap * 2 > b->len + 65536 ? b->cap * 2 : b->len + 65536;
            char *p = cap <= UP_REQ_MAX + 65536 ? realloc(b->p, cap) : NULL;
            if (!p)
                return false;
            b->p = p;
            b->cap = cap;
        }
        size_t n = up_recv(c, b->p + b->len, b->cap - b->len);
        if (n == 0)
            return false;
        b->len += n;
    }
    return true;
}

static bool send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return false;
        p += k;
        n -= (size_t)k;
    }
    return true;
}

/* Write a's bytes in the pieces its cuts say; false when the client left. */
static bool act_send(int fd, const struct act *a)
{
    size_t len = a->len ? a->len : strlen(a->bytes), at = 0;
    for (; a->drip && at < len; at++) {
        if (!send_all(fd, a->bytes + at, 1))
            return false;
        usleep(2000);
    }
    for (int i = 0; i < UP_CUTS && a->cuts[i] > at && a->cuts[i] < len; i++) {
        if (!send_all(fd, a->bytes + at, a->cuts[i] - at))
            return false;
        at = a->cuts[i];
        usleep(UP_PIECE_MS * 1000);
    }
    return send_all(fd, a->bytes + at, len - at);
}

/* Content-Length of a request head (0 when absent). */
static size_t head_clen(const char *head, size_t n)
{
    const char *end = head + n;
    for (const char *l = head; l && l < end;
         l = memchr(l, '\n', (size_t)(end - l))) {
        if (*l == '\n')
            l++;
        if (strncasecmp(l, "Content-Length:", 15) == 0)
            return strtoul(l + 15, NULL, 10);
    }
    return 0;
}

static void record_head(struct seen *s, int conn, const char *head, size_t hlen)
{
    const char *eol = memmem(head, hlen, "\r\n", 2);
    size_t ll = (size_t)(eol - head);
    s->conn = conn;
    snprintf(s->line, sizeof s->line, "%.*s", (int)ll, head);
    snprintf(s->head, sizeof s->head, "%.*s", (int)(hlen - ll - 2), eol + 2);
}

static void record_body(struct seen *s, const char *body, size_t blen)
{
    s->body = malloc(blen + 1);
    if (s->body) {
        memcpy(s->body, body, blen);
        s->body[blen] = '\0';
    }
    s->body_len = blen;
}

/* A probe's answer: /health 200, /v1/models m1, anything else 404. */
static const char *probe_answer(const char *line)
{
    const char *sp = strchr(line, ' ');
    const char *end = sp ? strchr(sp + 1, ' ') : NULL;
    size_t n = end ? (size_t)(end - sp - 1) : 0;
    if (n >= 7 && strncmp(end - 7, "/health", 7) == 0)
        return "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    if (n >= 10 && strncmp(end - 10, "/v1/models", 10) == 0)
        return MODELS_ANSWER;
    return "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
}


/* Read a request head into b: its length and its Content-Length; false
 * when the connection ends first. */
static bool read_head(struct up_conn *c, struct rbuf *b, size_t *hlen,
                      size_t *blen)
{
    char *end = NULL;
    while (!end) {
        end = b->len ? memmem(b->p, b->len, "\r\n\r\n", 4) : NULL;
        if (!end && (b->len > 65536 || !rbuf_fill(c, b, b->len + 1)))
            return false;
    }
    *hlen = (size_t)(end - b->p) + 4;
    *blen = head_clen(b->p, *hlen);
    return *blen <= UP_REQ_MAX;
}

/* Answer a POST as scripted (not an early answer); false when the
 * connection ends. */
static bool answer_post(struct up_conn *c, struct act a)
{
    struct up *u = c->u;
    if (a.kind == ACT_RESET) {
        struct linger lg = {1, 0};
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    if (a.kind == ACT_CLOSE || a.kind == ACT_RESET)
        return false;
    if (!a.bytes)
        a.bytes = UP_DEFAULT_ANSWER;
    bool ok = act_send(c->fd, &a) && !a.close_after;
    if (ok && a.late) {
        usleep(UP_PIECE_MS * 1000);
        ok = send_all(c->fd, a.late, strlen(a.late));
        atomic_fetch_add(&u->lates, 1);
    }
    return ok;
}

/* One request from b (head and body), recorded and answered; false when
 * the connection ends. */
static bool serve_one(struct up_conn *c, struct rbuf *b)
{
    struct up *u = c->u;
    size_t hlen, blen;
    if (!read_head(c, b, &hlen, &blen))
        return false;
    struct act a = {.kind = ACT_SEND};
    struct seen *seen = NULL;
    bool post = strncmp(b->p, "POST ", 5) == 0;
    if (post) {     /* recorded from its head: an early answer comes first */
        pthread_mutex_lock(&u->mu);
        int k = u->n_posts++;
        if (k < UP_POSTS) {
            a = u->acts[k];
            seen = &u->posts[k];
            record_head(seen, c->index, b->p, hlen - 2);
        }
        pthread_mutex_unlock(&u->mu);
    }
    if (a.early && (!act_send(c->fd, &a) || a.close_after))
        return false;   /* closed with the request unread: a reset */
    for (int i = 0; a.early && i < 1000 && !atomic_load(&u->go); i++)
        usleep(10000);
    if (!rbuf_fill(c, b, hlen + blen))
        return false;
    if (seen) {
        pthread_mutex_lock(&u->mu);
        record_body(seen, b->p + hlen, blen);
        pthread_mutex_unlock(&u->mu);
    }
    for (int i = 0; post && i < 1000 && up_posts(u) < atomic_load(&u->gate); i++)
        usleep(10000);  /* held until the other requests of its round came */
    bool ok;
    if (a.early)
        ok = true;
    else if (post)
        ok = answer_post(c, a);
    else
        ok = send_all(c->fd, probe_answer(b->p), strlen(probe_answer(b->p)));
    memmove(b->p, b->p + hlen + blen, b->len - hlen - blen);
    b->len -= hlen + blen;
    return ok;
}

static void *conn_main(void *arg)
{
    struct up_conn *c = arg;
    struct rbuf b = {0};
    while (serve_one(c, &b))
        ;
    free(b.p);
    close(c->fd);
    return NULL;
}

static void *accept_main(void *arg)
{
    struct up *u = arg;
    while (!atomic_load(&u->stop)) {
        struct pollfd pf = {u->lfd, POLLIN, 0};
        if (atomic_load(&u->plugged)) {
            usleep(10000);
            continue;
        }
        if (poll(&pf, 1, UP_POLL_MS) <= 0)
            continue;
        int fd = accept4(u->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        int one = 1;
        struct timeval tv = {10, 0};    /* a write never blocks for longer */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        pthread_mutex_lock(&u->mu);
        int i = u->n_conns < UP_CONNS ? u->n_conns++ : -1;
        pthread_mutex_unlock(&u->mu);
        if (i < 0) {
            close(fd);
            continue;
        }
        struct up_conn *c = &u->conns[i];
        c->u = u;
        c->fd = fd;
        c->index = i;
        c->started = pthread_create(&c->th, NULL, conn_main, c) == 0;
        if (!c->started)
            close(fd);
    }
    return NULL;
}

void up_start(struct up *u, int family)
{
    memset(u, 0, sizeof *u);
    pthread_mutex_init(&u->mu, NULL);
    u->lfd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(u->lfd, 0);
    struct sockaddr_storage ss = {0};
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    socklen_t sl = family == AF_INET6 ? sizeof *s6 : sizeof *s4;
    ss.ss_family = (sa_family_t)family;
    if (family == AF_INET6)
        s6->sin6_addr = in6addr_loopback;
    else
        s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(bind(u->lfd, (struct sockaddr *)&ss, sl), 0);
    cr_assert_eq(listen(u->lfd, 64), 0);
    cr_assert_eq(getsockname(u->lfd, (struct sockaddr *)&ss, &sl), 0);
    u->port = ntohs(family == AF_INET6 ? s6->sin6_port : s4->sin_port);
    cr_assert_eq(pthread_create(&u->th, NULL, accept_main, u), 0);
    u->running = true;
}

void up_stop(struct up *u)
{
    if (!u->running)
        return;
    atomic_store(&u->stop, true);
    pthread_join(u->th, NULL);
    for (int i = 0; i < u->n_conns; i++)
        if (u->conns[i].started)
            pthread_join(u->conns[i].th, NULL);
    close(u->lfd);
    for (int i = 0; i < UP_POSTS; i++)
        free(u->posts[i].body);
    pthread_mutex_destroy(&u->mu);
    u->running = false;
}

void up_script(struct up *u, int k, struct act a)
{
    pthread_mutex_lock(&u->mu);
    u->acts[k] = a;
    pthread_mutex_unlock(&u->mu);
}

int up_posts(struct up *u)
{
    pthread_mutex_lock(&u->mu);
    int n = u->n_posts;
    pthread_mutex_unlock(&u->mu);
    return n;
}

const struct seen *up_post(struct up *u, int k)
{
    cr_assert_lt(k, up_posts(u), "the upstream saw %d POSTs, not %d",
                 up_posts(u), k + 1);
    return &u->posts[k];
}

const char *up_header(const struct seen *s, const char *name, char *out,
                      size_t cap)
{
    size_t n = strlen(name);
    for (const char *l = s->head; *l; ) {
        const char *eol = strstr(l, "\r\n");
        size_t ll = eol ? (size_t)(eol - l) : strlen(l);
        if (ll > n && l[n] == ':' && strncasecmp(l, name, n) == 0) {
            const char *v = l + n + 1;
            while (*v == ' ')
                v++;
            snprintf(out, cap, "%.*s", (int)(ll - (size_t)(v - l)), v);
            return out;
        }
        l += ll + (eol ? 2 : 0);
    }
    return NULL;
}
