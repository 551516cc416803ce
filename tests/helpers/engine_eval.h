/* engine_eval.h - test helpers around a loaded engine model (Criterion
 * tests only: failures are cr_assert failures).
 *
 * engine_shared_file("ggml-vocab-llama-spm.gguf") is the path of a file in
 * $KM_SHARED/data/tokenizer (default ../shared), in a static buffer valid
 * until the next call.
 * engine_last_logits evaluates ids[0..n) in a new sequence, `chunk` tokens
 * per eng_eval call (chunk 1: token by token), and returns the last
 * position's n_vocab logits (km_free by the caller).
 */
#ifndef ENGINE_EVAL_H
#define ENGINE_EVAL_H

#include "engine/engine.h"

#include <stddef.h>
#include <stdint.h>

const char *engine_shared_file(const char *name);
float *engine_last_logits(struct eng_model *m, const int32_t *ids, size_t n, size_t chunk);

#endif
