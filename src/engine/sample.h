/* sample.h - turn one step's logits into the next token, as llama.cpp does.
 *
 * Chain (llama.cpp order; temperature after truncation, so top-p and min-p
 * see untempered probabilities):
 *   banned ids -> -inf (min_tokens) -> penalties -> top-k -> top-p -> min-p
 *   -> temperature -> weighted draw (xorshift64* seeded per request).
 * temperature <= 0 is greedy (argmax, lowest id on ties). top_k <= 0 is off
 * (vLLM's 0 and -1). Penalties follow vLLM's scopes: repetition over prompt
 * and output tokens (logit > 0 divided, else multiplied), frequency and
 * presence over output tokens only (logit -= count*freq + (count>0)*pres).
 * Log-probabilities are taken from the model's raw distribution (log-softmax
 * of the logits before penalties and filters), as vLLM reports them.
 *
 * Ownership: struct eng_sampler is caller-owned; eng_sampler_init allocates
 * its n_vocab-sized work arrays once (per sequence slot), eng_sampler_reset
 * starts a new request without allocating, eng_sampler_free releases them.
 * Thread-safety: one sampler per sequence, used by one thread at a time.
 */
#ifndef ENG_SAMPLE_H
#define ENG_SAMPLE_H

#include "base/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ENG_MAX_LOGPROBS 20

struct eng_logit_bias;

struct eng_sample_params {
    float temperature;         /* <= 0: greedy */
    int top_k;                 /* <= 0: off */
    float top_p;               /* >= 1: off */
    float min_p;               /* <= 0: off */
    float repetition_penalty;  /* 1: off */
    float frequency_penalty;   /* 0: off */
    float presence_penalty;    /* 0: off */
    uint64_t seed;
    int n_logprobs;            /* -1: off; 0..ENG_MAX_LOGPROBS alternatives */
    /* logit_bias: added to the logits of these ids before the penalties and
     * filters (logprobs stay those of the raw distribution). The caller
     * owns the array and keeps it alive while the sampler uses it; ids
     * outside the vocabulary are ignored. */
    const struct eng_logit_bias *bias;
    size_t n_bias;
};

struct eng_logit_bias {
    int32_t id;
    float bias;
};

/* One token and its log-probability under the raw model distribution. */
struct eng_token_prob {
    int32_t id;
    float logprob;
};

struct eng_cand {
    int32_t id;
    float logit;
};

struct eng_sampler {
    struct eng_sample_params p;
    int n_vocab;
    uint64_t rng;
    struct eng_cand *cand;     /* [n_vocab] */
    uint32_t *out_count;       /* [n_vocab] times generated so far */
    uint8_t *in_prompt;        /* [n_vocab] 1 if the id occurs in the prompt */
};

/* The result of one step. */
struct eng_sample_out {
    int32_t id;
    float logprob;                                 /* of id, raw distribution */
    struct eng_token_prob top[ENG_MAX_LOGPROBS];   /* best first */
    int n_top;                                     /* min(n_logprobs, vocab) */
};

void eng_sample_defaults(struct eng_sample_params *p);
int eng_sampler_init(struct eng_sampler *s, int n_vocab, struct km_err *err);
/* New request: parameters, fresh RNG from p->seed, empty counts, prompt ids. */
void eng_sampler_reset(struct eng_sampler *s, const struct eng_sample_params *p,
                       const int32_t *prompt, size_t n_prompt);
/* Record a generated token (for the penalties). */
void eng_sampler_accept(struct eng_sampler *s, int32_t id);
/* Pick the next token from logits[n_vocab] (not modified). banned ids (may be
 * NULL) can never be drawn unless everything is banned. */
void eng_sampler_sample(struct eng_sampler *s, const float *logits,
                        const int32_t *banned, size_t n_banned,
                        struct eng_sample_out *out);
void eng_sampler_free(struct eng_sampler *s);

/* Fill out->top and out->logprob from raw logits (exposed for tests). */
void eng_logprobs(const float *logits, int n_vocab, int32_t id, int n_top,
                  struct eng_sample_out *out);

#endif
