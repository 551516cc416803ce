/* engine_int.h - private: the engine's model, sequence and scratch layout.
 *
 * Shared by model.c (loading), llama.c (forward pass), ops*.c (kernels),
 * sched.c (scheduler) and engine.c (public API). Not for use outside
 * src/engine/.
 *
 * Symbols: E = n_embd, V = n_vocab, H = n_head, Hkv = n_head_kv,
 * D = head_dim, F = n_ff, L = n_layer, C = n_ctx (context of a sequence),
 * B = n_batch (tokens per forward call).
 *
 * Memory: weight matrices point into the GGUF mapping (never copied); the
 * small 1-D tensors (norms, rope_freqs) are widened to owned f32 arrays at
 * load. struct eng_scratch is allocated once per model for B tokens; each
 * struct eng_seq owns its F16 KV cache: per layer l, kv_len[l] rows of Hkv*D
 * halves for K and for V. A full layer keeps C rows (row = position); a
 * sliding-window layer (hp.n_swa > 0, not global) keeps a ring of
 * min(C, n_swa + B - 1) rows, position p in row p % kv_len[l]: a batch of B
 * tokens then never overwrites a key that an earlier token of the same batch
 * still sees (eng__kv_len).
 */
#ifndef ENG_ENGINE_INT_H
#define ENG_ENGINE_INT_H

#include "base/err.h"
#include "engine/engine.h"
#include "engine/gguf.h"
#include "engine/threadpool.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A weight matrix W with ne = [k, n]: n rows of k elements (y = W x). */
struct eng_weight {
    uint32_t type;          /* enum ggml_type of the rows */
    int64_t k;              /* input size (ne[0]) */
    int64_t n;              /* output size (rows, ne[1]) */
    size_t row_bytes;
    const void *data;       /* in the mapping */
};

struct eng_hparams {
    int n_embd;             /* E */
    int n_layer;            /* L */
    int n_head;             /* H */
    int n_head_kv;          /* Hkv */
    int head_dim;           /* D */
    int n_ff;               /* F */
    int n_vocab;            /* V */
    int n_ctx_train;
    float eps;              /* RMSNorm epsilon */
    float rope_base;
    int n_swa;              /* sliding window: keys a local layer's query sees; 0 = none */
    int swa_every;          /* with n_swa: layer l is global iff (l + 1) % swa_every == 0 */
};

struct eng_layer {
    float *attn_norm;            /* [E] */
    struct eng_weight wq;        /* [E] -> [H*D] */
    struct eng_weight wk;        /* [E] -> [Hkv*D] */
    struct eng_weight wv;        /* [E] -> [Hkv*D] */
    struct eng_weight wo;        /* [H*D] -> [E] */
    float *ffn_norm;             /* [E] */
    struct eng_weight w_gate;    /* [E] -> [F] */
    struct eng_weight w_up;      /* [E] -> [F] */
    struct eng_weight w_down;    /* [F] -> [E] */
};

struct eng_weights {
    struct eng_weight token_embd;  /* V rows of E (row t = embedding of t) */
    struct eng_weight output;      /* [E] -> [V]; = token_embd when tied */
    bool tied;
    float *output_norm;            /* [E] */
    float *rope_inv_freq;          /* [D/2] base^(-2i/D) / rope_freqs[i] */
    struct eng_layer *layers;      /* [L] */
};

/* Activations for up to B tokens, reused by every forward call. */
struct eng_scratch {
    int n_batch;                   /* B */
    float *x;                      /* [B][E] residual stream */
    float *xb;                     /* [B][E] normed input of a block */
    float *q;                      /* [B][H*D] */
    float *k;                      /* [B][Hkv*D] */
    float *v;                      /* [B][Hkv*D] */
    float *att;                    /* [B][H*D] attention output */
    float *hb;                     /* [B][F] gate, then SwiGLU */
    float *hb2;                    /* [B][F] up */
    float *rope;                   /* [B][D] cos,sin pairs per position */
    float *scores;                 /* [nth][C] per-thread attention scores */
    float *logits;                 /* [V] of the last token */
    void *act;                     /* quantized activations, [B] rows */
    size_t act_cap;
};

/* One sequence: its KV cache and how much of it is filled. */
struct eng_seq {
    struct eng_model *model;
    int n_ctx;                     /* C */
    int n_past;                    /* positions filled */
    int *kv_len;                   /* [L] rows layer l keeps (C, or a window ring) */
    size_t *kv_off;                /* [L] first half of layer l in k_cache / v_cache */
    uint16_t *k_cache;             /* per layer [kv_len[l]][Hkv*D] f16, after RoPE */
    uint16_t *v_cache;             /* per layer [kv_len[l]][Hkv*D] f16 */
};

struct eng_sched;
struct tok_vocab;

struct eng_model {
    struct eng_load_params params;
    char *path;
    char *name;
    struct gguf_file *gguf;
    char arch[32];
    struct eng_hparams hp;
    struct eng_weights w;
    struct tok_vocab *vocab;
    int n_ctx;                     /* per-sequence context */
    int n_threads;
    struct eng_pool *pool;
    struct eng_scratch scratch;
    pthread_mutex_t compute_mu;    /* one forward pass at a time */
    /* loading */
    pthread_t loader;
    bool loader_started;
    int state;                     /* enum eng_state, under state_mu */
    double progress;
    struct km_err load_err;
    pthread_mutex_t state_mu;
    struct eng_sched *sched;
    char *chat_override;           /* --chat-template, or NULL */
    struct eng_bert *bert;         /* bert.c: encoder weights + scratch (bert, nomic-bert), else NULL */
    struct eng_gemma *gemma;       /* gemma3.c: Gemma 3 extra norms + RoPE tables, else NULL */
};

/* model.c */
int eng__load_weights(struct eng_model *m, struct km_err *err);
/* Widen the 1-D tensor `name` of n elements into a new f32 array (*out,
 * km_free by the caller). */
int eng__map_vector(struct eng_model *m, const char *name, int64_t n, float **out,
                    struct km_err *err);
/* A forward call's arguments: 1 <= n <= n_batch, room in the context, every
 * token id in the vocabulary. */
int eng__check_batch(const struct eng_model *m, const struct eng_seq *s,
                     const int32_t *tokens, int n, struct km_err *err);
void eng__free_weights(struct eng_model *m);
int eng__scratch_init(struct eng_model *m, struct km_err *err);
void eng__scratch_free(struct eng_scratch *s);
int eng__seq_new(struct eng_model *m, int n_ctx, struct eng_seq **out,
                 struct km_err *err);
void eng__seq_free(struct eng_seq *s);
/* Rows of KV cache layer il keeps for a context of n_ctx filled in batches
 * of up to n_batch: n_ctx, or min(n_ctx, n_swa + n_batch - 1) for a
 * sliding-window layer. */
int eng__kv_len(const struct eng_hparams *hp, int il, int n_ctx, int n_batch);

/* llama.c: run tokens[0..n) at positions s->n_past.. (n <= B); writes the
 * last token's logits to m->scratch.logits when want_logits. */
int eng__llama_forward(struct eng_model *m, struct eng_seq *s,
                       const int32_t *tokens, int n, bool want_logits,
                       struct km_err *err);

/* bert.c (owned by "arch"): BERT-family encoders. eng__bert_load fills m->hp
 * and m->bert (instead of eng__load_weights); eng__bert_scratch_init after
 * pick_sizes/pool; eng__bert_free in close (accepts m->bert == NULL). */
struct eng_bert;
bool eng__is_bert_arch(const char *arch);
int eng__bert_load(struct eng_model *m, struct km_err *err);
int eng__bert_scratch_init(struct eng_model *m, struct km_err *err);
void eng__bert_free(struct eng_model *m);
int eng__bert_forward(struct eng_model *m, const int32_t *tokens, const int *seq_start,
                      const int *seq_len, int n, struct km_err *err);

/* gemma3.c (owned by "arch"): Gemma 3 text. eng__gemma3_load runs after
 * eng__load_weights; eng__llama_forward hands gemma3 models to
 * eng__gemma3_forward (same contract); eng__gemma3_free accepts NULL.
 * eng__gemma3_swa sets hp->n_swa / swa_every from the file's metadata (also
 * used for memory estimates without loading). */
struct eng_gemma;
int eng__gemma3_swa(const struct gguf_file *f, struct eng_hparams *hp, struct km_err *err);
int eng__gemma3_load(struct eng_model *m, struct km_err *err);
void eng__gemma3_free(struct eng_model *m);
int eng__gemma3_forward(struct eng_model *m, struct eng_seq *s, const int32_t *tokens,
                        int n, bool want_logits, struct km_err *err);

#endif
