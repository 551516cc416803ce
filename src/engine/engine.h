/* engine.h - the CPU engine's one public header: load a GGUF model, tokenize,
 * generate with callbacks, cancel, read stats.
 *
 * Loading. eng_model_open maps the file, validates it and builds the weight
 * table (weights stay in the mapping; activations, KV caches and sampler work
 * arrays are allocated here, never per token). With params.background the call
 * returns at once and the load runs on its own thread: eng_model_state reports
 * ENG_LOADING with a progress in [0,1], then ENG_READY or ENG_FAILED (with the
 * error). Architectures: llama (Llama 3.x incl. rope_freqs scaling), gemma3
 * (Gemma 3 text, gemma3.c), bert and nomic-bert (encoders, task
 * ENG_TASK_EMBED: eng_embed only, no scheduler; bert.c).
 *
 * Generation. eng_generate queues a request on the model's scheduler: one
 * worker thread per model that serves up to params.n_slots sequences, each in
 * its own KV cache slot, round-robin one step (a decode step or one prefill
 * chunk) at a time, so concurrent requests progress fairly. Requests beyond
 * the slots wait in arrival order. The worker calls the callbacks of a job
 * from its own thread, one at a time: on_token for every generated token
 * (text already cut at stop strings, whole UTF-8 characters), then exactly one
 * of on_done or on_error. A prompt + max_tokens over the context fails at
 * submit with KM_ERANGE naming the three numbers (nothing is truncated).
 * eng_cancel makes the job finish with "abort" before its next step.
 *
 * Ownership. The model owns everything it allocates; eng_model_close stops the
 * scheduler (aborting queued and running jobs) and frees it. A job is freed by
 * eng_job_free after its terminal callback returned. Strings passed in
 * eng_gen_params are copied at submit; the prompt ids too.
 *
 * Thread-safety. All functions may be called from any thread. Forward passes
 * are serialized per model (eng_eval and the scheduler share one lock).
 */
#ifndef ENG_ENGINE_H
#define ENG_ENGINE_H

#include "base/buf.h"
#include "base/err.h"
#include "engine/sample.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct eng_model;
struct eng_seq;
struct eng_job;

enum eng_state { ENG_LOADING = 0, ENG_READY = 1, ENG_FAILED = 2 };
enum eng_task { ENG_TASK_GENERATE = 0, ENG_TASK_EMBED = 1 };

struct eng_load_params {
    const char *path;          /* the .gguf file */
    const char *name;          /* served name; NULL = file stem */
    int n_threads;             /* 0 = physical cores */
    int n_ctx;                 /* per-sequence context; 0 = min(train, 4096) */
    int n_slots;               /* concurrent sequences; 0 = 4 */
    int n_batch;               /* prefill tokens per forward; 0 = 128 */
    const char *chat_template; /* NULL = the file's template / built-in */
    bool background;           /* load on a thread; poll eng_model_state */
};

struct eng_model_info {
    char name[256];
    char arch[32];
    enum eng_task task;
    int n_ctx;                 /* per-sequence context in use */
    int n_ctx_train;
    int n_vocab;
    int n_embd;
    int n_layer;
    int n_head;
    int n_head_kv;
    int n_ff;
    int n_threads;
    int n_slots;
    uint64_t file_size;
    uint64_t weight_bytes;     /* bytes of matrices read per decoded token */
    uint64_t kv_bytes;         /* all slots' KV caches */
};

struct eng_stats {
    int slots_busy;
    int queued;
    double kv_usage;           /* filled positions / all slots' positions */
    long long prompt_tokens;   /* totals since load */
    long long generated_tokens;
    long long requests_done;
};

/* Sampling and stopping for one request. */
struct eng_gen_params {
    struct eng_sample_params sample;
    long max_tokens;              /* -1 = up to the context */
    long min_tokens;              /* EOG/stop ids are banned before this */
    bool ignore_eos;              /* do not stop on end-of-generation ids */
    const char *const *stop;      /* stop strings (copied) */
    size_t n_stop;
    const int32_t *stop_token_ids;/* extra stopping ids (copied) */
    size_t n_stop_token_ids;
};

struct eng_callbacks {
    void *ud;
    /* A generated token: text released by this token (may be empty while a
     * possible stop string or a partial UTF-8 character is held back, and may
     * carry text of earlier tokens), its id, and its log-probabilities when
     * requested (else NULL). The token's own piece (raw bytes) is `piece`. */
    void (*on_token)(void *ud, const char *text, size_t len, int32_t id,
                     const char *piece, size_t piece_len,
                     const struct eng_sample_out *lp);
    /* Terminal: "stop", "length" or "abort", with token counts. */
    void (*on_done)(void *ud, const char *finish_reason, long prompt_tokens,
                    long completion_tokens);
    /* Terminal: failure (KM_E* code and message). */
    void (*on_error)(void *ud, int code, const char *msg);
};

void eng_load_params_default(struct eng_load_params *p);
int eng_model_open(const struct eng_load_params *p, struct eng_model **out,
                   struct km_err *err);
/* Block until a background load ends; returns its result. */
int eng_model_wait(struct eng_model *m, struct km_err *err);
enum eng_state eng_model_state(struct eng_model *m, double *progress,
                               struct km_err *err);
void eng_model_close(struct eng_model *m);   /* accepts NULL */
/* Valid once ready. */
void eng_model_info(const struct eng_model *m, struct eng_model_info *out);
/* KV cache rows one sequence keeps, summed over the n_layer layers of the
 * model file f, at a context of n_ctx with the default batch: n_layer *
 * n_ctx, fewer when sliding-window layers (gemma3) keep a window ring.
 * Bytes = 2 (K, V) * rows * n_head_kv * head_dim * 2 (f16). */
struct gguf_file;
uint64_t eng_kv_rows(const struct gguf_file *f, int n_layer, int n_ctx);
void eng_model_stats(struct eng_model *m, struct eng_stats *out);

/* Tokenizer (model must be ready). *ids is freed by the caller (km_free). */
int eng_tokenize(struct eng_model *m, const char *text, size_t len,
                 bool add_special, bool parse_special, int32_t **ids,
                 size_t *n_ids, struct km_err *err);
/* ids -> text (special tokens rendered; bytes that do not form UTF-8, e.g. a
 * lone byte token, become U+FFFD); *text freed by the caller. */
int eng_detokenize(struct eng_model *m, const int32_t *ids, size_t n,
                   char **text, size_t *len, struct km_err *err);
/* Append the bytes of token `id` (special tokens as their text) to out. */
int eng_token_bytes(struct eng_model *m, int32_t id, struct km_buf *out,
                    struct km_err *err);
/* Chat messages -> prompt text with the model's template; roles[i] and
 * contents[i] are NUL-terminated. *text freed by the caller. */
int eng_chat_prompt(struct eng_model *m, const char *const *roles,
                    const char *const *contents, size_t n,
                    bool add_generation_prompt, char **text,
                    struct km_err *err);
bool eng_token_is_eog(struct eng_model *m, int32_t id);

/* Queue a generation; on success exactly one terminal callback follows. */
int eng_generate(struct eng_model *m, const int32_t *prompt, size_t n_prompt,
                 const struct eng_gen_params *gp, const struct eng_callbacks *cb,
                 struct eng_job **out, struct km_err *err);
void eng_cancel(struct eng_job *job);
void eng_job_free(struct eng_job *job);      /* after the terminal callback */

/* Direct evaluation, for tests, the reference check and benchmarks. A
 * sequence owns a KV cache of n_ctx positions (0 = the model's). */
int eng_seq_new(struct eng_model *m, int n_ctx, struct eng_seq **out,
                struct km_err *err);
void eng_seq_free(struct eng_seq *s);
void eng_seq_clear(struct eng_seq *s);
int eng_seq_pos(const struct eng_seq *s);
/* Append tokens (any count; split into batches) and, when logits is not
 * NULL, copy the last token's n_vocab logits there. */
int eng_eval(struct eng_seq *s, const int32_t *tokens, size_t n,
             float *logits, struct km_err *err);

/* Embedding models (task ENG_TASK_EMBED: arch bert, nomic-bert; see bert.c).
 * ids[i] holds n_ids[i] token ids of input i, already framed ([CLS] .. [SEP]
 * from eng_tokenize with add_special). Writes n vectors of info.n_embd floats
 * to out (input i at out + i * n_embd), pooled as the file says (CLS or mean)
 * and L2-normalized. Inputs are packed into forward passes of whole inputs;
 * a vector is bit-identical whatever else shares its pass or came before.
 * An empty input is KM_EINVAL, one over the context KM_ERANGE, a generation
 * model KM_EUNSUPPORTED. Runs on the calling thread (forward passes are
 * serialized per model). */
int eng_embed(struct eng_model *m, const int32_t *const *ids, const size_t *n_ids,
              size_t n, float *out, struct km_err *err);

#endif
