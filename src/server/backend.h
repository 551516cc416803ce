/* backend.h - the one interface between the HTTP layer and what runs models.
 *
 * Two implementations plug in here: "local" (the embedded engine, engine/)
 * and "upstream" (HTTP to vLLM, Ollama or any OpenAI-compatible server).
 * The server parses and validates the OpenAI JSON into a struct srv_request,
 * routes by model name to one backend, and turns the events the backend
 * emits through a struct srv_sink back into JSON or SSE. Backends see no
 * JSON from the client except the raw body, which a proxy may forward as is.
 *
 * Contract
 *  - submit() either fails (returns a KM_E* code, fills err, and then calls
 *    no callback at all) or succeeds and later calls exactly one terminal
 *    callback: on_done or on_error. Before that it may call the streaming
 *    callbacks any number of times, from any thread, never concurrently for
 *    one job.
 *  - The request (and every string and array it points to) and the sink must
 *    stay valid until the terminal callback has returned. The backend copies
 *    nothing it does not need after that.
 *  - cancel() may be called at any time from any thread before release(); the
 *    backend then stops work within one decode step (local) or aborts the
 *    upstream transfer, and reports on_done with finish_reason "abort" or
 *    on_error(499, ...). Canceling a finished job is a no-op.
 *  - A failing submit() maps to HTTP by code: KM_EINVAL, KM_ERANGE and
 *    KM_EUNSUPPORTED -> 400 (e.g. prompt + max_tokens over the context, an
 *    image for a text-only model), KM_ENOTFOUND -> 404, KM_EBUSY -> 429,
 *    KM_ENET/KM_ETIMEOUT -> 502/504, anything else -> 500; err->msg becomes
 *    the error message.
 *  - release() frees the job; call it once, after the terminal callback.
 *  - Text given to on_text is whole UTF-8 characters, already cut at stop
 *    strings (a stop string never reaches the sink).
 *  - A proxying backend may instead deliver the upstream's response verbatim
 *    through on_raw_head/on_raw (status, content type, body bytes); the server
 *    then passes the bytes to the client unchanged.
 *
 * Thread-safety: list_models, tokenize and detokenize are safe to call from
 * any thread concurrently with submit/cancel.
 */
#ifndef SRV_BACKEND_H
#define SRV_BACKEND_H

#include "base/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum srv_task { SRV_TASK_GENERATE, SRV_TASK_EMBED };

enum srv_endpoint {
    SRV_EP_CHAT,        /* /v1/chat/completions */
    SRV_EP_COMPLETION,  /* /v1/completions */
    SRV_EP_EMBEDDING,   /* /v1/embeddings */
};

struct srv_model_info {
    char id[256];
    char owned_by[64];
    long long created;      /* unix seconds */
    int max_model_len;      /* context length in tokens, 0 if unknown */
    enum srv_task task;
    bool vision;            /* accepts image content parts */
};

/* One content part of a chat message, in order. */
struct srv_part {
    enum { SRV_PART_TEXT, SRV_PART_IMAGE } kind;
    const char *text;       /* SRV_PART_TEXT: UTF-8, NUL-terminated */
    const char *image_url;  /* SRV_PART_IMAGE: the URL as given (data: URL) */
};

struct srv_message {
    const char *role;       /* "system", "user", "assistant", "tool", ... */
    struct srv_part *parts; /* a plain string content is one text part */
    size_t n_parts;
};

/* One logit_bias entry: token id -> value added to its logit. */
struct srv_logit_bias {
    int32_t id;
    float bias;
};

/* Sampling and stopping; values as given or vLLM's defaults when absent. */
struct srv_sampling {
    double temperature;         /* 1.0; 0 = greedy */
    double top_p;               /* 1.0 */
    int top_k;                  /* 0 or -1 = off */
    double min_p;               /* 0.0 */
    double repetition_penalty;  /* 1.0 */
    double frequency_penalty;   /* 0.0 */
    double presence_penalty;    /* 0.0 */
    bool has_seed;
    uint64_t seed;
    long max_tokens;            /* -1 = up to the context length */
    long min_tokens;            /* 0 */
    bool ignore_eos;
    const char *const *stop;    /* stop strings */
    size_t n_stop;
    const int32_t *stop_token_ids;
    size_t n_stop_token_ids;
    int logprobs;               /* -1 = off; else number of top alternatives */
    bool echo;                  /* completions: prepend the prompt */
    const struct srv_logit_bias *logit_bias; /* sorted by id, ids distinct */
    size_t n_logit_bias;
};

/* One input of /v1/embeddings or one prompt of /v1/completions: text or ids. */
struct srv_input {
    const char *text;           /* NULL when ids are given */
    const int32_t *ids;
    size_t n_ids;
};

struct srv_request {
    enum srv_endpoint ep;
    const char *model;
    const char *request_id;     /* X-Request-Id, never NULL */
    bool stream;
    bool include_usage;
    int n;                      /* choices, 1 */
    /* SRV_EP_CHAT */
    const struct srv_message *messages;
    size_t n_messages;
    bool add_generation_prompt; /* true */
    /* SRV_EP_COMPLETION (prompt) and SRV_EP_EMBEDDING (inputs) */
    const struct srv_input *inputs;
    size_t n_inputs;
    /* SRV_EP_EMBEDDING */
    int dimensions;             /* 0 = the model's own */
    long truncate_prompt_tokens;/* -1 = no truncation (over-long input is an error) */
    struct srv_sampling sampling;
    /* the client's original body, for proxies */
    const char *body;
    size_t body_len;
    double arrival;             /* monotonic seconds when the request arrived */
    /* Added for the gateway (optional, NULL when absent): value of the
     * session-affinity header, so one session sticks to one replica. */
    const char *session;
    /* The caller blocks on this thread until the terminal callback (a
     * synchronous route: /v1/retrieve), so a backend may run the job inside
     * submit() and call the sink before submit returns (local embeddings
     * do: no thread hop). false: callbacks only after submit returned. */
    bool blocking;
};

struct srv_top_logprob {
    const char *token;          /* UTF-8 text of the token (may be partial bytes) */
    size_t token_len;
    int32_t id;
    float logprob;
};

/* Log-probabilities of one emitted token and its top alternatives. */
struct srv_logprobs {
    const char *token;
    size_t token_len;
    int32_t id;
    float logprob;
    const struct srv_top_logprob *top;
    size_t n_top;
};

struct srv_usage {
    long prompt_tokens;
    long completion_tokens;
};

struct srv_sink {
    void *ud;
    /* Generated text for choice `index`; lp is NULL unless logprobs were
     * requested (then one call per token). */
    void (*on_text)(void *ud, int index, const char *text, size_t len,
                    const struct srv_logprobs *lp);
    /* Choice `index` is complete: "stop", "length" or "abort". */
    void (*on_finish)(void *ud, int index, const char *finish_reason);
    /* One embedding, for input `index`; the vector is valid during the call. */
    void (*on_embedding)(void *ud, int index, const float *vec, size_t dim);
    /* Proxy pass-through: status and content type, then body bytes. */
    void (*on_raw_head)(void *ud, int http_status, const char *content_type);
    void (*on_raw)(void *ud, const char *bytes, size_t n);
    /* Terminal: success, with token counts. */
    void (*on_done)(void *ud, const struct srv_usage *usage);
    /* Terminal: failure with an HTTP status and an OpenAI error type. */
    void (*on_error)(void *ud, int http_status, const char *type,
                     const char *message);
    /* Optional flow control for on_raw (NULL = never full): true while the
     * server holds more unsent raw bytes than it wants; the proxy then pauses
     * the upstream transfer and polls again a few ms later. Called from the
     * backend's thread, never concurrently with the other callbacks. */
    bool (*raw_full)(void *ud);
};

struct srv_job; /* opaque, owned by the backend */
struct km_buf;

struct srv_backend_ops {
    const char *kind; /* "local", "upstream", ... */
    /* Fill up to `cap` models; returns how many exist (may exceed cap). */
    size_t (*list_models)(void *impl, struct srv_model_info *out, size_t cap);
    /* 0 = ready; otherwise not ready, with a progress in [0,1]. */
    int (*health)(void *impl, double *progress);
    int (*submit)(void *impl, const struct srv_request *req,
                  const struct srv_sink *sink, struct srv_job **job,
                  struct km_err *err);
    void (*cancel)(void *impl, struct srv_job *job);
    void (*release)(void *impl, struct srv_job *job);
    /* Optional (NULL when unsupported): text or chat -> ids. The caller frees
     * *ids with km_free. messages may be NULL (then text is used). */
    int (*tokenize)(void *impl, const char *model, const char *text,
                    const struct srv_message *messages, size_t n_messages,
                    bool add_special, bool add_generation_prompt,
                    int32_t **ids, size_t *n_ids, struct km_err *err);
    /* Optional: ids -> text; the caller frees *text with km_free. */
    int (*detokenize)(void *impl, const char *model, const int32_t *ids,
                      size_t n_ids, char **text, struct km_err *err);
    /* Optional: per-model gauges for /metrics (KV cache use in [0,1]). */
    double (*kv_cache_usage)(void *impl, const char *model);
    void (*destroy)(void *impl);
    /* Optional: append the backend's own Prometheus text (HELP/TYPE lines
     * included) to `out` (a struct km_buf *) when /metrics is rendered. */
    int (*metrics)(void *impl, struct km_buf *out);
};

struct srv_backend {
    const struct srv_backend_ops *ops;
    void *impl;
};

#endif
