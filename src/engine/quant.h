/* quant.h - tensor types: block layouts, (de)quantization, dot products.
 *
 * Types. enum ggml_type uses the GGUF/ggml type ids. quant_type_size and
 * quant_block_size know every id GGUF files use (so the reader can validate
 * any file); the arithmetic below is implemented for the "computable" types:
 * F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K (weights)
 * and Q8_0, Q8_1, Q8_K (activations). quant_supported(t) says which.
 *
 * Rows. Every function works on whole rows of n elements where n is a
 * multiple of the type's block size (callers check at load time; row data
 * may be unaligned). Layouts are bit-exact with ggml's (facts §2).
 *
 * Dot products. A weight row of type t is multiplied with an activation row
 * quantized to quant_vec_dot_type(t):
 *   Q4_0, Q5_0, Q8_0 -> Q8_0;  Q4_1, Q5_1 -> Q8_1;  Q4_K, Q5_K, Q6_K -> Q8_K;
 *   F32, F16, BF16 -> F32 (plain floats; F16/BF16 are widened on the fly).
 * quant_quantize_act turns f32 activations into that type. quant_vec_dot
 * returns the dot product of one weight row with one activation row.
 * quant_matmul computes a block of outputs: rows r of W x activation vectors
 * a, out[a*out_stride + r], reading each weight block once for several
 * activations (prefill). It is single-threaded: callers split rows across
 * threads (pass W advanced by row0 * quant_row_size(t, k) and out + row0).
 *
 * Kernels. quant_kernels_init() picks AVX2+FMA+F16C kernels when the CPU has
 * them (cpuid) unless the environment sets KANOA_KERNELS=scalar; it runs
 * automatically on first use and is idempotent. quant_kernels_force lets
 * tests select the scalar reference or the SIMD set explicitly. Every SIMD
 * kernel is tested against the scalar one (tests/test_quant.c). Results of
 * SIMD and scalar kernels agree to float rounding (integer parts are exact;
 * accumulation order differs).
 *
 * Memory: nothing here allocates except quant_matmul's internal use of the
 * stack; all buffers are the caller's.
 * Thread-safety: all functions are reentrant; call quant_kernels_init (or
 * _force) before starting threads.
 */
#ifndef ENG_QUANT_H
#define ENG_QUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum ggml_type {
    GGML_TYPE_F32 = 0,
    GGML_TYPE_F16 = 1,
    GGML_TYPE_Q4_0 = 2,
    GGML_TYPE_Q4_1 = 3,
    GGML_TYPE_Q5_0 = 6,
    GGML_TYPE_Q5_1 = 7,
    GGML_TYPE_Q8_0 = 8,
    GGML_TYPE_Q8_1 = 9,
    GGML_TYPE_Q2_K = 10,
    GGML_TYPE_Q3_K = 11,
    GGML_TYPE_Q4_K = 12,
    GGML_TYPE_Q5_K = 13,
    GGML_TYPE_Q6_K = 14,
    GGML_TYPE_Q8_K = 15,
    GGML_TYPE_IQ2_XXS = 16,
    GGML_TYPE_IQ2_XS = 17,
    GGML_TYPE_IQ3_XXS = 18,
    GGML_TYPE_IQ1_S = 19,
    GGML_TYPE_IQ4_NL = 20,
    GGML_TYPE_IQ3_S = 21,
    GGML_TYPE_IQ2_S = 22,
    GGML_TYPE_IQ4_XS = 23,
    GGML_TYPE_I8 = 24,
    GGML_TYPE_I16 = 25,
    GGML_TYPE_I32 = 26,
    GGML_TYPE_I64 = 27,
    GGML_TYPE_F64 = 28,
    GGML_TYPE_IQ1_M = 29,
    GGML_TYPE_BF16 = 30,
    GGML_TYPE_TQ1_0 = 34,
    GGML_TYPE_TQ2_0 = 35,
    GGML_TYPE_MXFP4 = 39,
    GGML_TYPE_COUNT = 40
};

#define QK4_0 32
#define QK8_0 32
#define QK_K 256

/* Block sizes as stored (bytes), for callers that lay out buffers. */
#define QUANT_Q8_0_BYTES 34
#define QUANT_Q8_1_BYTES 36
#define QUANT_Q8_K_BYTES 292

/* "Q4_K", "F16", ... ; NULL for unknown ids. */
const char *quant_type_name(uint32_t t);
/* Parse a type name (case-insensitive); returns -1 when unknown. */
int quant_type_from_name(const char *name);
/* Elements per block (1 for float types); 0 for unknown ids. */
uint32_t quant_block_size(uint32_t t);
/* Bytes per block; 0 for unknown ids. */
uint32_t quant_type_size(uint32_t t);
/* Bytes of a row of n elements (n a multiple of the block size). */
size_t quant_row_size(uint32_t t, int64_t n);
/* True for types this engine can dequantize and dot (weights). */
bool quant_supported(uint32_t t);
/* True for types quant_quantize_row can produce. */
bool quant_can_quantize(uint32_t t);

/* f16 / bf16 scalar conversions (round to nearest even). */
float quant_f16_to_f32(uint16_t h);
uint16_t quant_f32_to_f16(float f);
float quant_bf16_to_f32(uint16_t h);
uint16_t quant_f32_to_bf16(float f);

/* Dequantize one row of n elements of type t into dst. */
void quant_dequantize_row(uint32_t t, const void *src, float *dst, int64_t n);
/* Quantize n floats into type t (weights: F32, F16, BF16, Q4_0, Q4_1, Q5_0,
 * Q5_1, Q8_0, Q4_K, Q5_K, Q6_K; activations: Q8_1, Q8_K). Our own
 * quantizers; k-quants search per-sub-block scales/mins to minimise squared
 * error. */
void quant_quantize_row(uint32_t t, const float *src, void *dst, int64_t n);

/* Activation type each weight type is dotted with (see top comment). */
uint32_t quant_vec_dot_type(uint32_t t);
/* Bytes of a quantized activation row of n elements for weight type t. */
size_t quant_act_row_size(uint32_t weight_type, int64_t n);
/* Quantize n f32 activations for dotting with weight type t (for float
 * weight types this copies the floats). */
void quant_quantize_act(uint32_t weight_type, const float *x, void *dst,
                        int64_t n);
/* Dot product of weight row `w` (type t, n elements) with activation row
 * `a` produced by quant_quantize_act(t, ...). */
float quant_vec_dot(uint32_t t, int64_t n, const void *w, const void *a);
/* out[j*out_stride + r] = dot(row r of W, activation j) for r < n_rows,
 * j < n_act. W: n_rows rows of k elements of type t, consecutive; act: n_act
 * rows of quant_act_row_size(t, k) bytes, consecutive. */
void quant_matmul(uint32_t t, const void *W, int64_t n_rows, int64_t k,
                  const void *act, int64_t n_act, float *out,
                  int64_t out_stride);

/* ---- kernel selection ------------------------------------------------- */
enum quant_isa { QUANT_ISA_SCALAR = 0, QUANT_ISA_AVX2 = 1 };
/* Choose kernels from cpuid and KANOA_KERNELS; returns the choice. */
enum quant_isa quant_kernels_init(void);
/* Select a kernel set; returns false (and changes nothing) if the CPU
 * cannot run it. */
bool quant_kernels_force(enum quant_isa isa);
enum quant_isa quant_kernels_active(void);
const char *quant_isa_name(enum quant_isa isa);

#endif
