/* engine_synth.h - test helper: write a small random Llama GGUF.
 *
 * The model has the tokenizer of `vocab_path` (all tokenizer.* keys copied),
 * token_embd with that many rows, `n_layer` layers of width n_embd, and every
 * 2-D matrix stored as `type` (1-D tensors F32). Weights come from a fixed
 * xorshift stream seeded by `seed`, scaled so activations stay O(1).
 * with_rope_freqs adds a llama3-style rope_freqs.weight; tied omits
 * output.weight. Returns KM_OK or an error (err filled).
 */
#ifndef ENGINE_SYNTH_H
#define ENGINE_SYNTH_H

#include "base/err.h"

#include <stdbool.h>
#include <stdint.h>

struct engine_synth {
    const char *vocab_path;
    int n_embd, n_layer, n_head, n_head_kv, n_ff, n_ctx;
    uint32_t type;
    const char *mix;      /* NULL, "Q4_K_M" or "Q5_K_M": llama.cpp's per-tensor
                             mix (attn_v/ffn_down Q6_K on use_more_bits layers,
                             output Q6_K) over `type` Q4_K / Q5_K */
    bool tied;
    bool with_rope_freqs;
    uint64_t seed;
};

int engine_synth_write(const struct engine_synth *p, const char *out_path,
                       struct km_err *err);
/* Path of the shared gpt-2 vocab (KM_SHARED or ../shared) in a static buffer. */
const char *engine_synth_vocab(void);

#endif
