/* upstream_int.h - private to src/server/upstream*.c and backend_upstream.c:
 * the pool's state, shared between the pool bookkeeping (upstream.c), the
 * lanes that drive libcurl on event loops (upstream_lane.c) and the
 * transfers they run (upstream_loop.c).
 *
 * Locking: pool->mu guards every field of struct ups_up except in_flight
 * (atomic) and the metric tables, which are also under pool->mu. pool->qmu
 * guards the list of lanes; each lane's queue of submitted jobs has its own
 * mutex. A lane's active jobs, sockets and libcurl handles are touched only
 * by its loop's thread; probes only by the home lane's.
 */
#ifndef SRV_UPSTREAM_INT_H
#define SRV_UPSTREAM_INT_H

#include "server/loop.h"
#include "server/upstream.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>

enum ups_err_kind {
    UPS_ERR_CONNECT,        /* could not connect / connect timeout */
    UPS_ERR_TIMEOUT,        /* no first byte within first_byte_timeout */
    UPS_ERR_IDLE,           /* no byte within idle_timeout mid-response */
    UPS_ERR_HTTP5XX,        /* upstream answered 5xx */
    UPS_ERR_DROPPED,        /* connection closed or broken mid-response */
    UPS_ERR_CANCELED,       /* the client went away */
    UPS_ERR_PROBE,          /* an active health probe failed */
    UPS_ERR_N
};

extern const char *const ups__err_kind_name[UPS_ERR_N];

#define UPS_SPARE_EASY 32       /* easy handles kept for reuse, per lane */
#define UPS_LAT_BUCKETS 16
#define UPS_TTFT_BUCKETS 22
#define UPS_ITL_BUCKETS 19

struct ups_hist {
    unsigned long long b[24];   /* per bucket (not cumulative) */
    unsigned long long count;
    double sum;
};

struct ups_reqstat {            /* kanoa_upstream_requests_total */
    char model[256];
    int code;                   /* HTTP status, 0 = no response */
    unsigned long long n;
};

struct ups_tokstat {            /* kanoa_gateway:* per model */
    char model[256];
    struct ups_hist ttft, itl;
};

/* Where the gateway's own HTTP/1.1 client (upstream_h1.c) sends an
 * http:// upstream's requests: the URL's parts, and the address (the
 * numeric host's, else the one the last probe connected to; addr_len 0
 * while unknown, and then libcurl carries the request). */
struct ups_h1_target {
    bool usable;                /* http://, no user info, query, fragment */
    bool numeric;               /* the host is an address literal */
    char host_hdr[300];         /* Host: value, as in the URL */
    char prefix[UPS_URL_MAX];   /* path before /v1/..., "" for none */
    struct sockaddr_storage addr;
    socklen_t addr_len;
};

struct ups_up {
    struct ups_spec spec;
    struct ups_h1_target h1;    /* under mu (addr learned by probes) */
    char auth[700];             /* "Authorization: Bearer ..." or "" */
    bool healthy;
    bool probed;                /* was healthy once: recovery needs `rise` */
    int fails, oks;             /* consecutive, for fall/rise */
    long waiting;               /* -1 = unknown */
    struct srv_model_info *models;  /* discovered, km_malloc'd */
    size_t n_models;
    bool models_ok;             /* last /v1/models answered 200 */
    atomic_long in_flight;
    unsigned long long errors[UPS_ERR_N];
    unsigned long long requests;
    struct ups_hist latency;
    struct ups_reqstat *req;
    size_t n_req, cap_req;
    struct ups_tokstat *tok;
    size_t n_tok, cap_tok;
    int health_code;            /* last /health status of this round */
    int round_pending;          /* probes outstanding in this round */
};

struct ups_probe;
struct ups_lane;    /* upstream_lane.c: one libcurl multi handle on one srv_loop */
struct srv_loop;

struct ups_pool {
    struct ups_options opt;
    struct ups_up *ups;
    size_t n;
    pthread_mutex_t mu;
    /* Transfers run in lanes: one per event loop that submitted requests
     * (the HTTP threads' loops, so a proxied request stays on the thread
     * that received it), plus the pool's own loop and thread, `home`, for
     * the probes and for requests submitted from any other thread. */
    struct srv_loop *loop;              /* the pool's own */
    struct ups_lane *home;
    pthread_mutex_t qmu;                /* the list of other lanes */
    struct ups_lane *lanes;
    atomic_long live;                   /* jobs + probe transfers alive */
    bool proxy_env;                     /* a libcurl proxy variable is set */
    bool h1_off;                        /* every request through libcurl */
    unsigned rr;                        /* under mu */
    /* probe rounds (home lane) */
    pthread_cond_t cv;
    unsigned long rounds_done;
    atomic_bool probe_asked;
    double next_probe, next_refresh;
    int probes_out;
    struct ups_probe *probes;
    void (*notify)(void *ud);           /* models changed */
    void *notify_ud;
};

double ups__now(void);
bool ups__serves_locked(const struct ups_up *u, const char *model);
void ups__hist_observe(struct ups_hist *h, const double *bounds, size_t nb,
                       double v);
extern const double ups__lat_bounds[UPS_LAT_BUCKETS];
extern const double ups__ttft_bounds[UPS_TTFT_BUCKETS];
extern const double ups__itl_bounds[UPS_ITL_BUCKETS];
/* Metric updates; take pool->mu themselves. */
void ups__count_request(struct ups_pool *p, size_t up, const char *model,
                        int code);
void ups__count_error(struct ups_pool *p, size_t up, enum ups_err_kind k);
void ups__observe_tokens(struct ups_pool *p, size_t up, const char *model,
                         double ttft, double itl);
/* Passive/active health accounting; take pool->mu themselves. */
void ups__mark(struct ups_pool *p, size_t up, bool ok);

int ups__loop_start(struct ups_pool *p, struct km_err *err);
void ups__loop_stop(struct ups_pool *p);

/* ---- lanes (upstream_lane.c) and the transfers they run (upstream_loop.c)
 * A lane is one libcurl multi handle on one srv_loop. Its fields are
 * touched only on that loop's thread, but for the submission queue
 * (q_head/q_tail, under qmu) and `claimed` (under pool->qmu). */

#define UPS_N_PATHS 3           /* chat, completions, embeddings */
#define UPS_SPENT_MAX 64        /* finished attempts released after the pass */

struct lane_sock;               /* upstream_lane.c */
struct srv_job;
struct ups_h1;                  /* upstream_h1.c: one connection */

/* An easy handle and the header list its request points to (nodes of our
 * own: no allocation per request). */
struct ups_easy {
    CURL *e;
    struct curl_slist hdr[4];
    char rid[300];              /* "X-Request-Id: ..." */
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
    double now;                 /* time of the socket event or pass now run */
    struct lane_sock *socks;
    struct lane_sock **by_fd;   /* live sockets by descriptor */
    size_t n_by_fd;
    CURLU *(*urls)[UPS_N_PATHS];    /* parsed request URLs, per upstream */
    struct ups_easy *spare[UPS_SPARE_EASY];     /* reusable easy handles */
    int n_spare;
    /* Attempts finished while reading a socket are released (easy handle
     * detached and reset) in lane_run, after the HTTP side has written to
     * the client in the same pass: off the client's path. */
    bool deferring;
    struct ups_easy *spent[UPS_SPENT_MAX];
    int n_spent;
    /* the own HTTP/1.1 client's connections (upstream_h1.c) */
    struct ups_h1 *h1_all;      /* working and idle */
    struct ups_h1 *h1_dead;     /* closed, freed in ups__h1_run */
    struct ups_h1 **h1_idle;    /* per upstream, most recent first */
    int *h1_n_idle;
    bool h1_kick;               /* a connection has deferred work */
    struct ups_lane *next;      /* pool->lanes */
};

/* upstream_lane.c, on the lane's thread. ups__lane_url: upstream up's
 * request URL for path k (ups__path_index), parsed once per lane (owned
 * by the lane; NULL out of memory). ups__easy_get: a reset easy handle
 * (NULL out of memory); ups__easy_drop takes it back (NULL is fine),
 * detaching it from the multi handle now, or after the HTTP side has run
 * when libcurl reported its transfer done during this pass; ups__easy_free
 * frees one that was never added. ups__lane_close_sock is every easy
 * handle's CURLOPT_CLOSESOCKETFUNCTION (data: the lane). ups__lane_for:
 * the lane for a job submitted by the calling thread (any thread). */
int ups__path_index(enum srv_endpoint ep);
CURLU *ups__lane_url(struct ups_lane *ln, size_t up, int k);
struct ups_easy *ups__easy_get(struct ups_lane *ln);
void ups__easy_drop(struct ups_lane *ln, struct ups_easy *ue);
void ups__easy_free(struct ups_easy *ue);
int ups__lane_close_sock(void *ud, curl_socket_t fd);
struct ups_lane *ups__lane_for(struct ups_pool *p);

/* upstream_loop.c, called by a lane on its thread: start the queued jobs;
 * check timeouts, cancels and paused transfers (returns the ms until the
 * next check); deliver what the jobs read; a transfer libcurl reported
 * done (priv: its CURLOPT_PRIVATE, a job's or a probe's); end every job at
 * shutdown (503). */
void ups__jobs_start(struct ups_lane *ln);
int ups__jobs_sweep(struct ups_lane *ln, double now);
void ups__jobs_flush(struct ups_lane *ln);
void ups__transfer_done(struct ups_lane *ln, void *priv, CURLcode rc);
void ups__jobs_shutdown(struct ups_lane *ln);

/* The first int of a transfer's CURLOPT_PRIVATE says what it is. */
enum { UPS_TAG_JOB = 0x4a4f42, UPS_TAG_PROBE = 0x50524f };

/* upstream_probe.c, on the home lane's thread: start a probe round when
 * due; a probe transfer libcurl reported done (priv: its
 * CURLOPT_PRIVATE); at shutdown free the probes and end the round. */
void ups__probes_tick(struct ups_pool *p, double now);
void ups__probe_done(struct ups_pool *p, void *priv);
void ups__probes_end(struct ups_pool *p);

/* upstream_loop.c: a job's attempt as the own HTTP/1.1 client sees it
 * (lane thread). ups__job_ctype: the final head's Content-Type;
 * ups__job_head: that head ended with `status`; ups__job_body: body bytes
 * (UPS_BODY_PAUSE: not taken, the client is behind, wait for
 * ups__h1_resume; UPS_BODY_STOP: not taken, the job is canceled);
 * ups__job_stopped: canceled; ups__job_end: the attempt ended with rc (the
 * job releases the connection, and may start another attempt, from it). */
enum ups_body { UPS_BODY_TAKEN, UPS_BODY_PAUSE, UPS_BODY_STOP };
void ups__job_ctype(struct srv_job *j, const char *v, size_t n);
void ups__job_head(struct srv_job *j, int status);
enum ups_body ups__job_body(struct srv_job *j, const char *b, size_t n);
bool ups__job_stopped(const struct srv_job *j);
void ups__job_end(struct ups_lane *ln, struct srv_job *j, CURLcode rc);

/* upstream_h1.c. ups__h1_target_init: t from an upstream URL; false when
 * the own client cannot carry it (then libcurl does). ups__h1_target_learn:
 * the address a probe reached (pool->mu held). ups__h1_start: send job j's
 * request to upstream up on an idle or new connection of the lane (*out;
 * KM_ENOMEM, KM_ERANGE); its outcome comes through ups__job_*, never from
 * inside this call. ups__h1_release: the job is done with the connection
 * (kept idle when reusable). ups__h1_connect_late: its current connect
 * (the first, or the one after a stale connection) began over limit_s
 * ago; ups__h1_oserr: errno of a failure; ups__h1_error: what was
 * malformed in the response (NULL if nothing); ups__h1_resume: the client
 * caught up. ups__h1_run: deferred work and freeing, once per lane
 * pass; ups__h1_lane_free at lane shutdown, after the jobs ended. */
bool ups__h1_target_init(struct ups_h1_target *t, const char *url);
void ups__h1_target_learn(struct ups_h1_target *t, const char *ip, long port);
int ups__h1_start(struct ups_lane *ln, struct srv_job *j, size_t up, int path,
                  const char *rid, const char *body, size_t body_len,
                  struct ups_h1 **out);
void ups__h1_release(struct ups_lane *ln, struct ups_h1 *c);
bool ups__h1_connect_late(const struct ups_h1 *c, double now, double limit_s);
int ups__h1_oserr(const struct ups_h1 *c);
const char *ups__h1_error(const struct ups_h1 *c);
void ups__h1_resume(struct ups_h1 *c);
void ups__h1_run(struct ups_lane *ln);
void ups__h1_lane_free(struct ups_lane *ln);

#endif
