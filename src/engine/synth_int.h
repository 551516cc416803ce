/* synth_int.h - internal to synth*.c: the tensor plan and the metadata
 * writer shared by synth.c (shapes, types, weights) and synth_meta.c
 * (arch keys, tokenizer). */
#ifndef ENG_SYNTH_INT_H
#define ENG_SYNTH_INT_H

#include "engine/gguf.h"
#include "engine/synth.h"

/* What values a tensor gets. */
enum synth_kind { SK_WEIGHT, SK_NORM, SK_BIAS, SK_EMBD, SK_ROPE };

struct synth_tensor {
    char name[GGUF_MAX_NAME];
    uint32_t n_dims;
    uint64_t ne[2];
    uint32_t type;
    enum synth_kind kind;
    float scale;
};

/* All metadata keys (general.*, <arch>.*, tokenizer.*) in llama.cpp order;
 * *n_vocab receives the vocabulary size actually written. */
int synth__write_meta(struct gguf_writer *w, const struct synth_params *p,
                      int64_t *n_vocab, struct km_err *err);
/* Number of tokens in vocab_from (for shaping token_embd before writing). */
int synth__vocab_size(const char *path, int64_t *n, struct km_err *err);

#endif
