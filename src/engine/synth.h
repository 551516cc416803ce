/* synth.h - write GGUF models with random weights (`models synth`).
 *
 * A synthetic model has the metadata keys, tensor names, shapes, tensor
 * order, per-tensor type mix and alignment that llama.cpp's converter and
 * quantizer produce for that architecture and file type (facts §2.4, §3, §4),
 * with uniform random weights from a seeded RNG (so a seed always gives the
 * same file, whatever the thread count). Architectures: llama, gemma3, bert,
 * nomic-bert. The tokenizer is copied from another GGUF (vocab_from: every
 * `tokenizer.*` key) or synthesized (a byte-level vocabulary of n_vocab
 * tokens whose special tokens sit where the real family has them).
 *
 * Types: F32, F16, BF16, Q8_0, Q4_0, Q4_K_M, Q5_K_M, Q6_K. 1-D tensors stay
 * F32; the k-quant mixes follow llama.cpp (attn_v/ffn_down on
 * use_more_bits layers -> Q6_K, output/tied embeddings -> Q6_K or Q8_0,
 * fallbacks Q4_K->Q5_0, Q5_K->Q5_1, Q6_K->Q8_0 for rows not divisible by
 * 256, F16 when not divisible by 32). synth_tensor_type exposes that policy.
 *
 * Memory: weights are produced row chunk by row chunk while the file is
 * written (quantized with n_threads threads), so memory stays ~100 MB even
 * for 8B shapes. Nothing returned needs freeing except by the named _free.
 * Thread-safety: functions are reentrant.
 */
#ifndef ENG_SYNTH_H
#define ENG_SYNTH_H

#include "base/err.h"

#include <stdbool.h>
#include <stdint.h>

struct synth_params {
    char arch[16];          /* "llama", "gemma3", "bert", "nomic-bert" */
    char name[64];          /* general.name */
    char ftype[8];          /* F32 F16 BF16 Q8_0 Q4_0 Q4_K_M Q5_K_M Q6_K */
    int64_t n_embd, n_layer, n_head, n_head_kv, n_ff, n_ctx, n_vocab;
    int64_t head_dim;       /* 0 = n_embd / n_head */
    bool tied;              /* no output.weight (llama); gemma3 always tied */
    bool rope_llama3;       /* write rope_freqs.weight (Llama 3.1+ scaling) */
    float rope_factor;      /* llama3 scaling factor (8 for 3.1, 32 for 3.2) */
    float rope_base;        /* <arch>.rope.freq_base */
    float rope_scale_linear;/* gemma3 rope.scaling.factor (0 = none) */
    int64_t sliding_window; /* gemma3 */
    uint32_t pooling;       /* bert/nomic pooling_type */
    uint64_t seed;
    const char *vocab_from; /* GGUF whose tokenizer.* keys are copied, or NULL */
    int n_threads;          /* quantization threads (>= 1) */
};

struct synth_stats {
    int64_t n_tensors;
    uint64_t n_params;
    uint64_t file_bytes;
    int64_t n_vocab;        /* after vocab_from */
};

/* Progress callback: bytes of tensor data written so far of `total`. */
typedef void (*synth_progress_fn)(void *ctx, uint64_t done, uint64_t total);

/* Fill *p with the preset `shape` of `arch` ("tiny" for every arch;
 * llama: llama-3.2-1b, llama-3.1-8b; gemma3: gemma-3-1b, gemma-3-4b,
 * gemma-3-12b; bert: bge-small, minilm-l6; nomic-bert: nomic-embed) and
 * defaults (ftype F16, seed 1, 1 thread). KM_EINVAL for unknown names. */
int synth_preset(const char *arch, const char *shape, struct synth_params *p,
                 struct km_err *err);
/* Check a parameter set (dims positive and consistent, known arch/ftype). */
int synth_validate(const struct synth_params *p, struct km_err *err);
/* Write the model to `path` (atomically: path.tmp then rename). */
int synth_write(const struct synth_params *p, const char *path,
                synth_progress_fn progress, void *progress_ctx,
                struct synth_stats *stats, struct km_err *err);

/* LLAMA_FTYPE number for a type name (e.g. Q4_K_M -> 15), -1 if unknown. */
int synth_ftype_number(const char *ftype);
/* The ggml type llama.cpp's quantizer gives tensor `name` (ne0 = row length,
 * n_dims, layer index or -1, n_layer) in a file of `ftype` for `arch`;
 * `has_output` says whether the model has an output.weight. */
uint32_t synth_tensor_type(const char *arch, const char *ftype,
                           const char *name, int64_t ne0, uint32_t n_dims,
                           int64_t layer, int64_t n_layer, bool has_output);
/* llama3 rope scaling factors (facts §3.2) for k = 0..dim/2-1 into out. */
void synth_llama3_rope_factors(float base, float factor, float low_freq_factor,
                               float high_freq_factor, float orig_ctx,
                               int64_t dim, float *out);

#endif
