/* server.h - the OpenAI-compatible HTTP server behind `kanoa-mlops serve`.
 *
 * Purpose: serve /health, /version, /v1/models, /metrics, /tokenize,
 * /detokenize, /v1/chat/completions, /v1/completions and /v1/embeddings over
 * libmicrohttpd, routing each generation/embedding request by its `model` to
 * one registered backend (backend.h). Extra JSON routes (e.g. /v1/retrieve)
 * plug in through srv_server_add_route().
 *
 * Contract
 *  - struct srv_config is caller-owned: srv_config_init() fills defaults,
 *    srv_config_set() applies one "key=value" from a layer (file < env <
 *    flag; a lower layer never overrides a higher one), srv_config_free()
 *    releases every string it holds. The server copies what it needs from
 *    the config in srv_server_new(); the config may be freed afterwards.
 *  - srv_server_new() allocates; srv_server_start() binds and answers HTTP at
 *    once, even with no backend (models may be added later, from any thread,
 *    with srv_server_add_backend(); /health is 503 {"status":"loading"} while
 *    any backend's health() reports loading).
 *  - srv_server_add_backend() takes ownership of the backend: its destroy()
 *    is called by srv_server_free() after HTTP has stopped.
 *  - srv_server_drain() stops accepting connections, waits up to `timeout`
 *    seconds for in-flight requests, then cancels the rest. srv_server_free()
 *    stops the daemon (if still running) and frees everything; NULL is fine.
 *  - A route handler runs on an HTTP thread, synchronously; it must not block
 *    for long. It receives the parsed JSON body (borrowed) and returns the
 *    HTTP status and a new JSON reference in resp->json (the server
 *    decrefs it). On status >= 400 set resp->json to NULL and fill
 *    resp->message/param: the server renders the OpenAI error envelope.
 *
 * Thread-safety: srv_server_add_backend(), srv_server_models_changed() and
 * srv_server_port() are thread-safe; add_route, start, drain and free are
 * for the owning thread.
 */
#ifndef SRV_SERVER_H
#define SRV_SERVER_H

#include "base/err.h"
#include "base/log.h"
#include "server/backend.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* Which layer a setting came from (higher wins). */
enum srv_layer { SRV_LAYER_DEFAULT, SRV_LAYER_FILE, SRV_LAYER_ENV, SRV_LAYER_FLAG };

struct srv_strlist {
    char **v;
    size_t n;
};

struct srv_config {
    /* listening and HTTP */
    char *host;                 /* "127.0.0.1" */
    long port;                  /* 8000; 0 = any free port */
    long http_threads;          /* MHD thread pool, 0 = number of cores */
    long max_connections;       /* 4096 */
    long conn_timeout;          /* idle seconds per connection, 60 */
    unsigned long long max_body;/* 32 MiB */
    /* admission and time limits */
    long max_concurrent;        /* requests running in backends, 64 */
    long max_queue;             /* requests waiting for a slot, 256 */
    double request_timeout;     /* seconds, 600; 0 = none */
    double drain_timeout;       /* seconds, 30 */
    double keepalive;           /* SSE keep-alive comment period, 10 s */
    /* security */
    struct srv_strlist api_keys;
    char *api_key_file;
    bool protect_metrics;
    struct srv_strlist cors_origins; /* "*" allows any origin */
    /* logging */
    char *log_format;           /* "text" or "json" */
    char *log_level;            /* "info" */
    /* wired by the engine / gateway / rag code in cmd_serve.c */
    struct srv_strlist models;        /* --model SPEC (path or hf repo) */
    struct srv_strlist served_names;  /* --served-model-name, by position */
    struct srv_strlist upstreams;     /* NAME=URL[,models=a|b][,api-key-env=V] */
    char *database_url;
    long threads;               /* engine threads, 0 = auto */
    long ctx;                   /* context length, 0 = the model's */
    char *chat_template;        /* path or NULL */
    /* gateway tuning, milliseconds unless noted (struct ups_options) */
    long upstream_connect_timeout_ms;    /* 2000 */
    long upstream_first_byte_timeout_ms; /* 120000 */
    long upstream_idle_timeout_ms;       /* 60000 */
    long upstream_probe_interval_ms;     /* 2000 */
    long upstream_probe_timeout_ms;      /* 1000 */
    long upstream_models_refresh_ms;     /* 10000 */
    long upstream_fall;                  /* failed probes that eject, 2 */
    long upstream_rise;                  /* passed probes that recover, 2 */
    long upstream_max_attempts;          /* replicas tried per request, 3 */
    char *config_file;          /* the YAML file read, if any */
    /* private: which layer set each setting */
    unsigned char layer_[40];
};

void srv_config_init(struct srv_config *c);
void srv_config_free(struct srv_config *c);
/* Apply one setting by name (flag spelling without dashes, e.g. "max-body";
 * '_' is accepted for '-'). Lists append within a layer and replace lower
 * layers. Unknown names and bad values fail with KM_EINVAL naming both. */
int srv_config_set(struct srv_config *c, enum srv_layer layer, const char *key,
                   const char *value, struct km_err *err);
/* Apply every KANOA_<KEY> variable of the environment (lists: separated by
 * whitespace). */
int srv_config_load_env(struct srv_config *c, struct km_err *err);
/* Read a YAML mapping of settings (scalars or sequences of scalars). */
int srv_config_load_yaml(struct srv_config *c, const char *path,
                         struct km_err *err);
/* Read --api-key-file (one key per line, '#' comments) into api_keys. */
int srv_config_load_key_file(struct srv_config *c, struct km_err *err);
/* Print the effective settings as YAML (API keys redacted). */
void srv_config_print(const struct srv_config *c, FILE *out);
/* Names of all settings, NULL-terminated (for --help and tests). */
const char *const *srv_config_keys(void);

struct srv_server;

int srv_server_new(const struct srv_config *cfg, struct srv_server **out,
                   struct km_err *err);
int srv_server_start(struct srv_server *s, struct km_err *err);
int srv_server_add_backend(struct srv_server *s, struct srv_backend b,
                           struct km_err *err);
/* A backend's model list changed: rebuild the cached /v1/models. */
void srv_server_models_changed(struct srv_server *s);
/* The bound TCP port (useful with port 0). */
int srv_server_port(const struct srv_server *s);
/* Number of requests currently being handled. */
long srv_server_inflight(const struct srv_server *s);
int srv_server_drain(struct srv_server *s, double timeout);
void srv_server_free(struct srv_server *s);

struct srv_route_req {
    const json_t *body;         /* parsed JSON object (borrowed) */
    const char *request_id;
};

struct srv_route_resp {
    int status;                 /* HTTP status */
    json_t *json;               /* new reference, or NULL on error */
    char message[512];          /* error message when status >= 400 */
    char param[64];             /* error param, "" for null */
    /* The reply's body buffer, empty (the server's): a route may write its
     * JSON text there and set `raw` instead of building `json`. */
    struct km_buf *body;
    bool raw;
};

typedef void (*srv_route_fn)(void *ud, const struct srv_route_req *req,
                             struct srv_route_resp *resp);

/* Register `method path` (exact path, POST takes a JSON body; paths under
 * /v1 require the API key). Call before srv_server_start(). */
int srv_server_add_route(struct srv_server *s, const char *method,
                         const char *path, srv_route_fn fn, void *ud,
                         struct km_err *err);

#endif
