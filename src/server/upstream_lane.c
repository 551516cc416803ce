/* upstream_lane.c - lanes: the gateway's libcurl multi handles, each driven
 * by curl_multi_socket_action on one srv_loop event loop (loop.h), with its
 * sockets, timer, connection cache, reusable easy handles and parsed
 * request URLs; the same lane holds the own HTTP/1.1 client's connections
 * (upstream_h1.c: its deferred work runs in lane_run). The transfers a lane
 * runs (jobs and probes, their life cycle) are upstream_loop.c's; the
 * interface between them is in upstream_int.h.
 *
 * A request submitted from an HTTP thread's loop runs in that loop's lane
 * (created at its first request), so the request is forwarded, the answer
 * read and handed to the client's connection on the thread that received
 * it: no thread switch and no wake-up between the client and the upstream.
 * The pool's own loop and thread (the home lane) runs the health probes and
 * the requests submitted from any other thread (tests, tools).
 *
 * A pass of a lane's loop: the socket events libcurl asked for (each read
 * is handed to the clients at once, ups__jobs_flush), the HTTP side (which
 * writes to the clients and submits), then lane_run: queued jobs start,
 * libcurl's timer, timeouts and cancels, deliveries, and the release of the
 * attempts that finished during the pass (ups__easy_drop), off the
 * clients' path.
 */
#include "server/upstream_int.h"

#include "base/mem.h"
#include "server/loop.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

/* One socket of a lane's libcurl connections. It stays in the loop's epoll
 * set while its connection idles in libcurl's cache (`idle`: libcurl asked
 * to stop watching it), so a reused keep-alive connection costs no
 * epoll_ctl; an event on an idle socket (the upstream closed it) unwatches
 * it. libcurl closes its sockets through ups__lane_close_sock, which forgets
 * them, so a descriptor number reused by a new socket is never mistaken
 * for a registered one. */
struct lane_sock {
    struct srv_loop_io io;      /* first: the io callback casts back */
    struct ups_lane *lane;
    bool idle;                  /* libcurl is not using it now */
    bool dead;                  /* closed: freed in run */
    struct lane_sock *next;
};

static const char *const ep_paths[UPS_N_PATHS] = {
    "/v1/chat/completions", "/v1/completions", "/v1/embeddings",
};

static void on_sock_io(struct srv_loop_io *io, unsigned events);

int ups__path_index(enum srv_endpoint ep)
{
    return ep == SRV_EP_COMPLETION ? 1 : ep == SRV_EP_EMBEDDING ? 2 : 0;
}

/* The request URL of upstream `up` for path `k`, parsed once per lane
 * (CURLOPT_CURLU: libcurl copies the parsed parts instead of parsing the
 * URL string of every request); NULL when it cannot be made. */
CURLU *ups__lane_url(struct ups_lane *ln, size_t up, int k)
{
    if (!ln->urls)
        ln->urls = km_calloc(ln->pool->n, sizeof *ln->urls);
    if (!ln->urls)
        return NULL;
    if (!ln->urls[up][k]) {
        char url[UPS_URL_MAX + 64];
        snprintf(url, sizeof url, "%s%s", ln->pool->ups[up].spec.url,
                 ep_paths[k]);
        CURLU *u = curl_url();
        if (u && curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK) {
            curl_url_cleanup(u);
            u = NULL;
        }
        ln->urls[up][k] = u;
    }
    return ln->urls[up][k];
}

static void lane_urls_free(struct ups_lane *ln)
{
    for (size_t i = 0; ln->urls && i < ln->pool->n; i++)
        for (int k = 0; k < UPS_N_PATHS; k++)
            curl_url_cleanup(ln->urls[i][k]);
    km_free(ln->urls);
    ln->urls = NULL;
}

/* ---- easy handles ------------------------------------------------------ */

/* Spare easy handles (lane thread only): reset and reused, so an attempt
 * does not allocate and free libcurl's per-handle buffers each time. */
struct ups_easy *ups__easy_get(struct ups_lane *ln)
{
    if (ln->n_spare)
        return ln->spare[--ln->n_spare];
    struct ups_easy *ue = km_calloc(1, sizeof *ue);
    if (ue && !(ue->e = curl_easy_init())) {
        km_free(ue);
        ue = NULL;
    }
    return ue;
}

void ups__easy_free(struct ups_easy *ue)
{
    if (!ue)
        return;
    curl_easy_cleanup(ue->e);
    km_free(ue);
}

/* Detach ue from the lane's multi handle and keep it for reuse. */
static void easy_put(struct ups_lane *ln, struct ups_easy *ue)
{
    if (!ue)
        return;
    curl_multi_remove_handle(ln->multi, ue->e);
    if (ln->n_spare < UPS_SPARE_EASY) {
        curl_easy_reset(ue->e);
        ln->spare[ln->n_spare++] = ue;
    } else {
        ups__easy_free(ue);
    }
}

/* The attempts finished while reading sockets (see ups_lane.deferring). */
static void release_spent(struct ups_lane *ln)
{
    while (ln->n_spent > 0)
        easy_put(ln, ln->spent[--ln->n_spent]);
}

/* A transfer libcurl reported done may wait in ln->spent until lane_run:
 * libcurl calls nothing of a finished transfer, and its header list lives
 * in the ups_easy, not in the job. A running one is detached now. */
void ups__easy_drop(struct ups_lane *ln, struct ups_easy *ue)
{
    if (ue && ln->deferring && ln->n_spent < UPS_SPENT_MAX)
        ln->spent[ln->n_spent++] = ue;
    else
        easy_put(ln, ue);
}

/* The transfers libcurl reports done end (or retry) in upstream_loop.c;
 * their easy handles wait in ln->spent until lane_run. */
static void read_done(struct ups_lane *ln)
{
    int left = 0;
    ln->deferring = true;
    for (CURLMsg *m = curl_multi_info_read(ln->multi, &left); m;
         m = curl_multi_info_read(ln->multi, &left)) {
        if (m->msg != CURLMSG_DONE)
            continue;
        char *priv = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv);
        if (priv)
            ups__transfer_done(ln, priv, m->data.result);
    }
    ln->deferring = false;
}

/* ---- sockets and timer ------------------------------------------------ */

static struct lane_sock *sock_find(struct ups_lane *ln, curl_socket_t fd)
{
    return fd >= 0 && (size_t)fd < ln->n_by_fd ? ln->by_fd[fd] : NULL;
}

/* A new entry for fd, in the list and the table; NULL out of memory. */
static struct lane_sock *sock_new(struct ups_lane *ln, curl_socket_t fd)
{
    if (fd < 0)
        return NULL;
    if ((size_t)fd >= ln->n_by_fd) {
        size_t n = ln->n_by_fd ? ln->n_by_fd : 64;
        while (n <= (size_t)fd)
            n *= 2;
        struct lane_sock **t = km_realloc(ln->by_fd, n * sizeof *t);
        if (!t)
            return NULL;
        memset(t + ln->n_by_fd, 0, (n - ln->n_by_fd) * sizeof *t);
        ln->by_fd = t;
        ln->n_by_fd = n;
    }
    struct lane_sock *ls = km_calloc(1, sizeof *ls);
    if (!ls)
        return NULL;
    ls->io.fd = fd;
    ls->io.fn = on_sock_io;
    ls->lane = ln;
    ls->next = ln->socks;
    ln->socks = ls;
    ln->by_fd[fd] = ls;
    return ls;
}

/* libcurl's socket callback. CURL_POLL_REMOVE leaves the socket in the
 * epoll set, idle, for its next transfer (see struct lane_sock); only an
 * output interest is dropped, since an idle socket is always writable. */
static int on_socket(CURL *e, curl_socket_t fd, int what, void *ud, void *sockp)
{
    struct ups_lane *ln = ud;
    struct lane_sock *ls = sockp;
    (void)e;
    if (what == CURL_POLL_REMOVE) {
        if (ls) {
            ls->idle = true;
            if (ls->io.events & EPOLLOUT)
                srv_loop_io_set(ln->loop, &ls->io, 0);
            curl_multi_assign(ln->multi, fd, NULL);
        }
        return 0;
    }
    if (!ls)
        ls = sock_find(ln, fd);
    if (!ls)
        ls = sock_new(ln, fd);
    if (!ls)
        return -1;
    ls->idle = false;
    curl_multi_assign(ln->multi, fd, ls);
    unsigned ev = ((what & CURL_POLL_IN) ? EPOLLIN : 0u) |
                  ((what & CURL_POLL_OUT) ? EPOLLOUT : 0u);
    return srv_loop_io_set(ln->loop, &ls->io, ev) == KM_OK ? 0 : -1;
}

/* libcurl closes a socket of this lane (CURLOPT_CLOSESOCKETFUNCTION): stop
 * watching it while the descriptor is still open, forget it, close it. */
int ups__lane_close_sock(void *ud, curl_socket_t fd)
{
    struct ups_lane *ln = ud;
    struct lane_sock *ls = sock_find(ln, fd);
    if (ls) {
        srv_loop_io_set(ln->loop, &ls->io, 0);
        ls->dead = true;
        ln->by_fd[fd] = NULL;
    }
    return close(fd);
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
    if (ls->idle) {     /* a cached connection closed (or talked): unwatch */
        srv_loop_io_set(ln->loop, &ls->io, 0);
        return;
    }
    int mask = ((events & EPOLLIN) ? CURL_CSELECT_IN : 0) |
               ((events & EPOLLOUT) ? CURL_CSELECT_OUT : 0) |
               ((events & (EPOLLERR | EPOLLHUP)) ? CURL_CSELECT_ERR : 0);
    int running = 0;
    ln->now = ups__now();
    curl_multi_socket_action(ln->multi, io->fd, mask, &running);
    read_done(ln);
    ups__jobs_flush(ln);
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
    ln->now = now;
    int running = 0;
    curl_multi_socket_action(ln->multi, CURL_SOCKET_TIMEOUT, 0, &running);
}

static int ms_until(double now, double t)
{
    double ms = (t - now) * 1000.0;
    return ms <= 0 ? 0 : ms > 1000 ? 1000 : (int)ms + 1;
}

/* Once per pass of the loop, after the HTTP side (which submits): start
 * queued jobs, run libcurl's timer, ups__jobs_sweep timeouts and cancels, deliver. */
static int lane_run(void *ud)
{
    struct ups_lane *ln = ud;
    struct ups_pool *p = ln->pool;
    release_spent(ln);
    ln->now = ups__now();
    ups__jobs_start(ln);
    if (ln->home)
        ups__probes_tick(p, ln->now);
    run_timer(ln, ups__now());
    read_done(ln);
    double now = ln->now = ups__now();
    int wait = ups__jobs_sweep(ln, now);
    run_timer(ln, now);         /* a resumed or retried transfer */
    read_done(ln);
    ups__h1_run(ln);            /* the own client's deferred work */
    ups__jobs_flush(ln);
    release_spent(ln);
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
    ups__jobs_shutdown(ln);
    ups__h1_lane_free(ln);
    if (ln->home)
        ups__probes_end(ln->pool);
    release_spent(ln);
    while (ln->n_spare > 0)
        ups__easy_free(ln->spare[--ln->n_spare]);
    /* the cached connections close in curl_multi_cleanup: unwatch them
     * first (their fds are still open), without more socket callbacks */
    for (struct lane_sock *ls = ln->socks; ls; ls = ls->next) {
        srv_loop_io_set(ln->loop, &ls->io, 0);
        ls->dead = true;
    }
    curl_multi_setopt(ln->multi, CURLMOPT_SOCKETFUNCTION, NULL);
    curl_multi_cleanup(ln->multi);
    free_dead_socks(ln);
    km_free(ln->by_fd);
    lane_urls_free(ln);
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
struct ups_lane *ups__lane_for(struct ups_pool *p)
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

/* ---- the pool's lanes --------------------------------------------------- */

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

/* Whether the environment names a proxy for libcurl (read once: without
 * one, requests tell libcurl so and it skips its getenv calls). */
static bool proxy_in_env(void)
{
    static const char *const vars[] = {"http_proxy", "https_proxy",
        "HTTPS_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        if (getenv(vars[i]))
            return true;
    return false;
}

int ups__loop_start(struct ups_pool *p, struct km_err *err)
{
    pthread_once(&curl_once, curl_init_once);
    p->proxy_env = proxy_in_env();
    const char *client = getenv("KANOA_UPSTREAM_CLIENT");
    p->h1_off = p->proxy_env || (client && strcmp(client, "curl") == 0);
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
