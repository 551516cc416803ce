/* server_int.h - internal to src/server/: shared between the HTTP adapter
 * (http.c), the request core (call.c, router.c), parsing and rendering
 * (oai_parse.c, oai_render.c), metrics, auth, CORS, admission and the access
 * log. Names here use the srv__ prefix; nothing outside src/server/ (and the
 * server's own tests) includes this file.
 *
 * Lock order (never take them the other way round):
 *   server->mu  ->  call->mu  ->  limits.mu
 * A call is "parked" (its MHD connection suspended) only under call->mu, and
 * resumed by whoever clears call->suspended, after dropping call->mu.
 */
#ifndef SRV_SERVER_INT_H
#define SRV_SERVER_INT_H

#include "base/buf.h"
#include "server/server.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#define SRV_MAX_BACKENDS 32
#define SRV_MAX_ROUTES 32
#define SRV_MAX_CHOICES 16
#define SRV_STREAM_MAX (8u << 20) /* bytes queued for one SSE client */

double srv__now(void);      /* monotonic seconds */
double srv__wall(void);     /* unix seconds */
/* 32 lowercase hex digits from a per-thread generator seeded by getrandom. */
void srv__random_hex(char out[33]);

/* ---------------- replies ---------------- */

struct srv_reply {
    int status;
    const char *ctype;      /* static string */
    struct km_buf body;
    long retry_after;       /* > 0: Retry-After header */
    const char *allow;      /* 405: Allow header */
    bool auth_challenge;    /* 401: WWW-Authenticate */
    bool preflight;         /* 204 answer to a CORS preflight */
};

const char *srv__error_type(int status);
/* Fill `r` with the OpenAI error envelope (param NULL or "" = null). */
void srv__reply_error(struct srv_reply *r, int status, const char *param,
                      const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void srv__reply_json(struct srv_reply *r, int status, json_t *j); /* steals j */

/* ---------------- parsing (oai_parse.c) ---------------- */

struct srv_perr {
    int status;
    char param[96];
    char msg[512];
};

struct srv_parsed {
    struct srv_request req;
    json_t *root;               /* owns every string req points to */
    struct srv_message *msgs;
    struct srv_part *parts;
    struct srv_input *inputs;
    int32_t *ids;
    const char **stop;
    int32_t *stop_ids;
    struct srv_logit_bias *bias;
    bool chat_logprobs;         /* chat: logprobs=true */
    bool emb_base64;            /* embeddings: encoding_format=base64 */
    bool model_given;
};

/* Parse a JSON object body (jansson); 400 on bad JSON or a non-object. */
int srv__parse_object(const char *body, size_t len, json_t **root,
                      struct srv_perr *e);
/* Parse and validate one OpenAI request; on failure e says status/param. */
int srv__parse_request(enum srv_endpoint ep, const char *body, size_t len,
                       struct srv_parsed *out, struct srv_perr *e);
void srv__parsed_free(struct srv_parsed *p);
/* srv__parse_request, but a body for a model of a pass-through backend
 * ("upstream": it validates the fields) is only scanned for being one JSON
 * object, its model and stream (oai_scan.c). */
int srv__parse_request_for(struct srv_server *s, enum srv_endpoint ep,
                           const char *body, size_t len,
                           struct srv_parsed *out, struct srv_perr *e);
#ifdef KM_UNITTEST
/* oai_scan.c's scan: true when body is one valid JSON object with a plain
 * string `model` (*model, *model_len point into body) and `stream` absent
 * or a boolean (*stream). */
bool srv__scan_body(const char *body, size_t len, const char **model,
                    size_t *model_len, bool *stream);
#endif
/* /tokenize: model?, prompt | messages (+add_generation_prompt),
 * add_special_tokens -> req.inputs[0].text or req.messages. */
int srv__parse_tokenize(const char *body, size_t len, struct srv_parsed *out,
                        bool *add_special, struct srv_perr *e);
/* /detokenize: model?, tokens -> req.inputs[0].ids. */
int srv__parse_detokenize(const char *body, size_t len,
                          struct srv_parsed *out, struct srv_perr *e);

/* ---------------- metrics (metrics.c) ---------------- */

struct srv_metrics;
struct srv_mm; /* per-model metric set */

struct srv_metrics *srv__metrics_new(void);
void srv__metrics_free(struct srv_metrics *m);
/* Find or create the set for `model` (never freed before the registry). */
struct srv_mm *srv__metrics_model(struct srv_metrics *m, const char *model);
void srv__mm_waiting(struct srv_mm *mm, int delta);
void srv__mm_running(struct srv_mm *mm, int delta);
void srv__mm_queue_time(struct srv_mm *mm, double s);
void srv__mm_ttft(struct srv_mm *mm, double s);
void srv__mm_itl(struct srv_mm *mm, double s);
void srv__mm_done(struct srv_mm *mm, const struct srv_usage *u,
                  const char *finish_reason, double e2e);
/* Route label index (SRV_MAX_ROUTES = "other"). */
void srv__metrics_http(struct srv_metrics *m, int route, const char *method,
                       int status, double seconds);
struct srv_server;
int srv__metrics_render(struct srv_metrics *m, struct srv_server *s,
                        struct km_buf *out);

/* ---------------- auth, CORS, admission, access log ---------------- */

/* Longest API key: "Bearer <key>" must fit srv_call.authorization. */
#define SRV_MAX_API_KEY 503

struct srv_auth {
    unsigned char (*digests)[32];
    size_t n;
};
int srv__auth_init(struct srv_auth *a, const struct srv_strlist *keys,
                   struct km_err *err);
void srv__auth_free(struct srv_auth *a);
bool srv__auth_enabled(const struct srv_auth *a);
/* Check an Authorization header value; constant time per key. */
bool srv__auth_check(const struct srv_auth *a, const char *authorization);

/* Origin allowed? ("*" in the list allows every origin.) */
bool srv__cors_allowed(const struct srv_strlist *origins, const char *origin);

struct srv_call;
struct srv_limits {
    pthread_mutex_t mu;
    long running, waiting, max_running, max_waiting;
    struct srv_call *head, *tail;
};
enum srv_admit { SRV_ADMIT_RUN, SRV_ADMIT_QUEUED, SRV_ADMIT_FULL };
void srv__limits_init(struct srv_limits *l, long max_running, long max_waiting);
void srv__limits_destroy(struct srv_limits *l);
enum srv_admit srv__limits_admit(struct srv_limits *l, struct srv_call *c);
/* A running slot is free: returns the queued call now admitted, or NULL. */
struct srv_call *srv__limits_release(struct srv_limits *l);
/* Take a queued call out of the queue; false if it was not queued. */
bool srv__limits_remove(struct srv_limits *l, struct srv_call *c);
/* Seconds a rejected client should wait (Retry-After). */
long srv__limits_retry_after(const struct srv_limits *l);

void srv__access_log(const char *remote, const char *method, const char *path,
                     int status, size_t bytes, double seconds,
                     const char *request_id, const char *model);

/* ---------------- the server ---------------- */

struct srv_route {
    char method[8];
    char path[96];
    srv_route_fn fn;
    void *ud;
};

struct srv_model_table;

struct srv_be_entry {
    struct srv_backend be;
};

/* Hooks the MHD adapter gives the core (so only http.c sees MHD). */
struct srv_http_ops {
    void (*suspend)(void *conn);
    void (*resume)(void *conn);
};

struct srv_server {
    struct srv_config cfg;      /* deep copy */
    struct srv_auth auth;
    struct srv_limits limits;
    struct srv_metrics *metrics;
    struct srv_http_ops http;
    void *daemon;               /* struct MHD_Daemon * */
    int port;
    pthread_mutex_t mu;         /* backends, calls list, models cache */
    struct srv_be_entry backends[SRV_MAX_BACKENDS];
    atomic_int n_backends;
    struct srv_route routes[SRV_MAX_ROUTES];
    int n_routes;
    struct srv_call *calls;     /* parked or in-flight async calls */
    atomic_long inflight;
    /* /v1/models cache and the model -> backend table */
    struct srv_model_table *mtab;
    char *models_json;
    size_t models_len;
    double models_built;
    atomic_int models_dirty;
    /* ticker thread: keep-alive, timeouts, disconnects, reaping */
    pthread_t ticker;
    bool ticker_started;
    atomic_int stopping;
    atomic_int draining;
    bool access_log;            /* log-level debug or info */
    double created;
};

/* Models: append the cached /v1/models JSON to `out`. */
int srv__models_json(struct srv_server *s, struct km_buf *out);
/* Backend serving `model` (NULL if none); info filled when found. */
struct srv_backend *srv__find_model(struct srv_server *s, const char *model,
                                    struct srv_model_info *info);
/* Only model when exactly one exists for task, else "" */
bool srv__default_model(struct srv_server *s, enum srv_task task,
                        char *out, size_t cap);
/* Id of the i-th served model; false past the end. */
bool srv__model_at(struct srv_server *s, int i, char *out, size_t cap);
/* Overall readiness: 0 ready, else loading with *progress. */
int srv__health(struct srv_server *s, double *progress);

/* ---------------- one HTTP request (call.c, router.c) ---------------- */

enum srv_next { SRV_NEXT_BODY, SRV_NEXT_REPLY, SRV_NEXT_WAIT, SRV_NEXT_STREAM };

struct srv_choice {
    struct km_buf text;         /* non-stream: all; stream: held-back piece */
    json_t *lp;                 /* logprobs entries (array) or NULL */
    char finish[16];
    bool role_sent;
    bool pending;               /* stream: a held-back piece exists */
    size_t n_chars;             /* characters delivered so far (text_offset) */
};

enum srv_cstate {
    SRV_C_NEW, SRV_C_QUEUED, SRV_C_RUNNING, SRV_C_DONE
};

struct srv_call {
    struct srv_server *srv;
    /* request line and headers (set by http.c before srv__call_begin) */
    char method[8];
    char path[128];
    char remote[64];
    char request_id[72];
    char origin[256];
    char content_type[128];
    char authorization[512];
    char acr_method[32];        /* Access-Control-Request-Method */
    char session[128];          /* X-Session-Id (upstream affinity) */
    long long content_length;   /* -1 if absent */
    int route;                  /* index or -1 */
    int fd;                     /* client socket, for disconnect checks */
    void *conn;                 /* struct MHD_Connection * */
    double t_arrival;
    struct km_buf body;
    bool body_too_big;
    bool cors_ok;               /* add CORS headers to the reply */
    /* generation */
    struct srv_parsed parsed;
    bool parsed_ok;
    struct srv_backend *be;
    struct srv_mm *mm;
    struct srv_job *job;
    struct srv_sink sink;
    char model[256];
    char id[48];                /* chatcmpl-..., cmpl-..., embd-... */
    long long created;
    /* shared with backend threads, under mu */
    pthread_mutex_t mu;
    pthread_cond_t space;       /* stream queue has room */
    enum srv_cstate st;
    bool suspended, wake_pending, gone, terminal, released, timed_out;
    bool client_gone, canceled, sse, sse_ended, raw;
    bool dispatched, admitted, rejected, ka_due, raw_head, deferred;
    bool cancel_pending;        /* completed() is canceling outside locks */
    int raw_status;
    char raw_ctype[128];
    struct km_buf out;          /* SSE bytes or raw bytes not yet sent */
    size_t out_off;
    struct srv_choice choice[SRV_MAX_CHOICES];
    float *emb;                 /* embeddings, n_inputs * emb_dim */
    size_t emb_dim;
    size_t emb_got;
    struct srv_usage usage;
    int err_status;
    char err_type[48];
    char err_msg[512];
    double t_first, t_last, t_last_write;
    const char *finish_reason;  /* for metrics */
    /* bookkeeping */
    struct srv_call *next, *prev;  /* server->calls */
    struct srv_call *qnext;        /* limits queue */
    bool listed;
    int status;                 /* final status for the log and metrics */
    size_t bytes_out;
    struct srv_reply reply;
};

struct srv_call *srv__call_new(struct srv_server *s);
/* Headers are set: route, auth, CORS, early limits. */
enum srv_next srv__call_begin(struct srv_call *c, struct srv_reply *r);
/* Body bytes; returns KM_ERANGE once over --max-body. */
int srv__call_body(struct srv_call *c, const char *data, size_t n);
/* Body complete: dispatch. */
enum srv_next srv__call_dispatch(struct srv_call *c, struct srv_reply *r);
/* After a wake-up: what now. */
enum srv_next srv__call_step(struct srv_call *c, struct srv_reply *r);
/* Park the call until the next wake; false if a wake is already pending. */
bool srv__call_park(struct srv_call *c);
/* Stream bytes: >0 copied, 0 nothing yet, -1 end of stream. */
long srv__call_read(struct srv_call *c, char *buf, size_t max);
/* The HTTP exchange is over (MHD completed callback). ok: fully sent. */
void srv__call_completed(struct srv_call *c, bool ok);
/* Wake a parked call (any thread, without holding c->mu). */
void srv__call_wake(struct srv_call *c);
/* Ticker: periodic checks of one listed call under server->mu. */
bool srv__call_tick(struct srv_call *c, double now);
void srv__call_free(struct srv_call *c);

/* Router (router.c): synchronous endpoints. */
int srv__route_find(struct srv_server *s, const char *path);
const char *srv__route_path(struct srv_server *s, int route);
const char *srv__route_method(struct srv_server *s, int route);
bool srv__route_is_builtin_async(int route);
void srv__route_sync(struct srv_call *c, struct srv_reply *r);

/* Built-in route indices. */
enum {
    SRV_R_HEALTH, SRV_R_VERSION, SRV_R_MODELS, SRV_R_METRICS, SRV_R_TOKENIZE,
    SRV_R_DETOKENIZE, SRV_R_CHAT, SRV_R_COMPLETIONS, SRV_R_EMBEDDINGS,
    SRV_R_BUILTIN
};

/* HTTP adapter (http.c). */
int srv__http_start(struct srv_server *s, struct km_err *err);
void srv__http_quiesce(struct srv_server *s);
void srv__http_stop(struct srv_server *s);

/* Rendering helpers (oai_render.c). */
json_t *srv__render_usage(const struct srv_usage *u);
json_t *srv__render_models(const struct srv_model_info *m, size_t n);
json_t *srv__render_final(struct srv_call *c);
/* Append one SSE event `data: <json>\n\n` (steals j). */
int srv__sse_event(struct km_buf *out, json_t *j);
json_t *srv__chunk(struct srv_call *c, int index, const char *text,
                   size_t len, bool role, json_t *lp, const char *finish);
json_t *srv__usage_chunk(struct srv_call *c);
json_t *srv__logprob_entry(const struct srv_logprobs *lp);

#endif
