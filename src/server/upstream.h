/* upstream.h - the gateway: upstream OpenAI-compatible servers (vLLM,
 * another kanoa-mlops, Ollama ...) as replicas, their health, the balancer,
 * the proxy event loop and the gateway's own Prometheus metrics.
 *
 * Pieces
 *  - ups_spec: one upstream from `--upstream NAME=URL[,models=a|b]
 *    [,embed=x|y][,api-key-env=VAR]` (or the YAML config). Several specs may serve the
 *    same model: they are replicas and requests are balanced among them.
 *  - ups_pool: the set of upstreams with their discovered models (from each
 *    upstream's /v1/models, refreshed periodically), health (active probes of
 *    /health and /v1/models, ejection after `fall` consecutive failures,
 *    recovery after `rise` successes), load (requests in flight through us
 *    plus the upstream's `vllm:num_requests_waiting` from its /metrics when
 *    exposed) and metrics. Transfers run in lanes (libcurl multi handles on
 *    srv_loop event loops, loop.h): a request submitted from an HTTP
 *    thread's loop is proxied on that thread; the pool's own thread runs
 *    the probes and requests from any other thread. Nothing blocks per
 *    request.
 *  - The proxy itself is reached through the srv_backend interface
 *    (backend_upstream.c, srv_backend_upstream_new in backend.h terms): it
 *    streams request and response bodies without buffering, retries on
 *    another healthy replica only before the first response byte reached the
 *    client, and maps failures to 502/503/504 naming the upstream.
 *
 * Ownership: ups_pool_new copies the specs and options; ups_pool_free stops
 * the pool's thread, aborts transfers still running (their jobs get
 * on_error 503; so does a lane whose HTTP loop stops first) and frees
 * everything. A job keeps its loop allocated until ups_job_release. Strings returned inside structs are
 * fixed arrays owned by the struct.
 *
 * Thread-safety: ups_spec_parse and the ups_parse_* / ups_balance_pick helpers
 * are pure and reentrant. Every ups_pool_* function is safe from any thread.
 */
#ifndef SRV_UPSTREAM_H
#define SRV_UPSTREAM_H

#include "base/buf.h"
#include "base/err.h"
#include "server/backend.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define UPS_NAME_MAX 64
#define UPS_URL_MAX 512
#define UPS_STATIC_MODELS 16
#define UPS_MAX_UPSTREAMS 64   /* replicas tried per request fit in a mask */

struct ups_spec {
    char name[UPS_NAME_MAX];          /* [A-Za-z0-9._-]+ */
    char url[UPS_URL_MAX];            /* http(s)://host[:port][/prefix], no trailing '/' */
    char models[UPS_STATIC_MODELS][256]; /* models=a|b: served ids, no discovery filter */
    size_t n_models;                  /* 0 = learn them from /v1/models */
    char embed[UPS_STATIC_MODELS][256]; /* embed=x|y: embedding models (also served) */
    size_t n_embed;
    char api_key_env[128];            /* env var holding the bearer key, "" = none */
};

/* Parse one `NAME=URL[,models=a|b][,embed=x|y][,api-key-env=VAR]` spec.
 * /v1/models does not say which models embed, hence embed=. */
int ups_spec_parse(const char *text, struct ups_spec *out, struct km_err *err);

struct ups_options {
    int connect_timeout_ms;     /* TCP/TLS connect, 2000 */
    int first_byte_timeout_ms;  /* request sent -> first response byte, 120000 */
    int idle_timeout_ms;        /* gap between response bytes, 60000 */
    int probe_interval_ms;      /* active health probe period, 2000 */
    int probe_timeout_ms;       /* one probe, 1000 */
    int models_refresh_ms;      /* /v1/models and /metrics refresh, 10000 */
    int fall;                   /* consecutive failures that eject, 2 */
    int rise;                   /* consecutive successes that recover, 2 */
    int max_attempts;           /* replicas tried per request, 3 */
    size_t error_body_max;      /* bytes of an upstream 5xx body kept, 2048 */
};

void ups_options_default(struct ups_options *o);
struct srv_config;
/* Options from the serve settings upstream-* (flag > KANOA_UPSTREAM_* >
 * YAML > default, checked by srv_config_set); the rest default. */
void ups_options_from_config(struct ups_options *o, const struct srv_config *c);

/* ---- balancing (pure) ---------------------------------------------------- */

struct ups_cand {
    const char *name;
    bool eligible;      /* healthy, serves the model, not tried yet */
    long in_flight;     /* requests through this gateway now */
    long waiting;       /* upstream's vllm:num_requests_waiting, -1 unknown */
};

/* Pick a candidate: with `affinity` (a session key, may be NULL) the
 * eligible candidate with the highest rendezvous hash of (affinity, name), so
 * one session sticks to one replica while it stays healthy; otherwise the
 * least loaded (in_flight + waiting), ties broken by `rr` rotation.
 * Returns the index, or -1 when none is eligible. */
int ups_balance_pick(const struct ups_cand *c, size_t n, const char *affinity,
                     unsigned rr);

/* ---- parsers for upstream responses (pure) ------------------------------ */

/* Sum of every `vllm:num_requests_waiting` sample in a Prometheus text
 * exposition; *found is false (and *sum 0) when the metric is absent. */
int ups_parse_waiting(const char *text, size_t len, double *sum, bool *found);

/* Model ids from an OpenAI /v1/models body into out[cap]; returns the count
 * stored, or -1 with err filled when the body is not such a list. */
int ups_parse_models(const char *body, size_t len, struct srv_model_info *out,
                     size_t cap, struct km_err *err);

/* Incremental counter of SSE `data:` events other than `data: [DONE]`.
 * Feed bytes as they come; `events` grows by one per completed event. */
struct ups_sse_scan {
    int state;          /* 0 line start, 1 in "data:", 2 in "[DONE]", 3 rest */
    int pos;            /* characters matched in state 1 or 2 */
    bool in_data;       /* current event has a data line */
    bool done_line;     /* that data line is [DONE] */
    unsigned long events;
};
void ups_sse_scan_init(struct ups_sse_scan *s);
/* Returns how many events completed within these bytes. */
unsigned long ups_sse_scan_feed(struct ups_sse_scan *s, const char *p, size_t n);

/* ---- the pool ------------------------------------------------------------ */

struct ups_pool; /* opaque */

/* Copy specs and options, resolve API keys from the environment, start the
 * event thread and wait (at most one probe timeout) for the first probe
 * round so models are known. Fails on a bad option, an unset api-key-env, or
 * a duplicate upstream name; unreachable upstreams are not an error (they
 * start ejected and recover when their probes pass). */
int ups_pool_new(const struct ups_spec *specs, size_t n_specs,
                 const struct ups_options *opts, struct ups_pool **out,
                 struct km_err *err);
void ups_pool_free(struct ups_pool *p);

size_t ups_pool_count(const struct ups_pool *p);

struct ups_status {
    char name[UPS_NAME_MAX];
    char url[UPS_URL_MAX];
    bool healthy;
    long in_flight;
    long waiting;       /* -1 when the upstream exposes no vllm metric */
    size_t n_models;
    unsigned long long requests;
    unsigned long long errors;
};
/* Snapshot of upstream `i` (0 <= i < count). */
int ups_pool_status(struct ups_pool *p, size_t i, struct ups_status *out);

/* Union of models over upstreams (dedup by id; healthy or not), up to cap;
 * returns how many exist. */
size_t ups_pool_models(struct ups_pool *p, struct srv_model_info *out, size_t cap);
/* True when some healthy upstream serves `model`. */
bool ups_pool_serves(struct ups_pool *p, const char *model);
/* Number of healthy upstreams. */
size_t ups_pool_healthy(struct ups_pool *p);

/* Append the gateway metrics (Prometheus text, HELP/TYPE lines included) to
 * out. Names: kanoa_upstream_* per upstream and kanoa_gateway:* for TTFT and
 * inter-token latency measured here (see docs/gateway.md). */
int ups_pool_metrics(struct ups_pool *p, struct km_buf *out);

/* Call fn(ud) from the event thread whenever the set of discovered models
 * changes (e.g. to rebuild a cached /v1/models). Set it once, right after
 * ups_pool_new, before requests arrive. */
void ups_pool_set_notify(struct ups_pool *p, void (*fn)(void *ud), void *ud);

/* Run one probe round now and wait for it (tests; at most probe timeout). */
int ups_pool_probe_now(struct ups_pool *p);

/* ---- proxied requests (used by backend_upstream.c) --------------------- */

/* Start proxying `req` (its body forwarded verbatim) to a replica serving
 * req->model. `affinity` (may be NULL) pins a session to one replica. Same
 * contract as srv_backend_ops.submit; the job belongs to the pool until
 * ups_job_release. */
int ups_job_submit(struct ups_pool *p, const struct srv_request *req,
                   const struct srv_sink *sink, const char *affinity,
                   struct srv_job **job, struct km_err *err);
void ups_job_cancel(struct ups_pool *p, struct srv_job *job);
void ups_job_release(struct ups_pool *p, struct srv_job *job);

/* /tokenize and /detokenize of an upstream model: one blocking POST (30 s
 * at most) to a healthy replica serving it. Same contract as the backend
 * ops of those names (the caller frees *ids / *text with km_free). An
 * upstream without the endpoint gives KM_EUNSUPPORTED. */
int ups_tokenize(struct ups_pool *p, const char *model, const char *text,
                 const struct srv_message *msgs, size_t n_msgs, bool add_special,
                 bool add_gen, int32_t **ids, size_t *n_ids, struct km_err *err);
int ups_detokenize(struct ups_pool *p, const char *model, const int32_t *ids,
                   size_t n_ids, char **text, struct km_err *err);

/* Jobs and probe transfers alive now (leak checks in tests). */
long ups_pool_live_transfers(struct ups_pool *p);

/* The backend over a pool: takes ownership of `pool` (freed by destroy). */
int srv_backend_upstream_new(struct ups_pool *pool, struct srv_backend *out,
                             struct km_err *err);

#endif
