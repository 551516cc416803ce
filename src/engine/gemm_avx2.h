/* gemm_avx2.h - packed, cache-blocked float GEMM for float weight types (F32,
 * F16, BF16) against f32 activations; the prefill / batch-embedding matmul
 * behind quant_matmul for those types. AVX2+FMA+F16C: call only after
 * cpu_has_avx2_fma_f16c() (quant__avx2_float_kernels installs it).
 *
 * out[j*os + r] = sum_i W[r][i] * A[j][i] for r < nr, j < na: W is nr rows of
 * k elements of type wt (row stride rs bytes), A is na rows of k floats (row
 * stride as bytes). Each output is one f32 accumulation over i in order,
 * restarted every GEMM_KC elements and added to the previous partial sum, so
 * a result does not depend on nr, na, or where the caller split the rows.
 *
 * Scheme (BLIS-like): for blocks of GEMM_NC activations and of GEMM_MC
 * weight rows, k in blocks of GEMM_KC (that activation block stays in L2):
 * 16 weight rows x GEMM_KC are converted to f32 and transposed into a stack
 * panel (16 KiB, stays in L1), then a 16x6 register tile (12 ymm
 * accumulators, weights as vectors, activations broadcast) runs over the
 * activation block. While a panel runs, its tiles prefetch the rows of the
 * next panel into L2. About 85% of the FMA peak with the panel in cache,
 * ~65% with the weights streamed from DRAM (docs/engine.md).
 *
 * Memory: nothing is allocated; the panel lives on the caller's stack
 * (GEMM_KC * 16 floats). Thread-safety: reentrant.
 */
#ifndef ENG_GEMM_AVX2_H
#define ENG_GEMM_AVX2_H

#include <stddef.h>
#include <stdint.h>

#define GEMM_KC 256 /* k block: 16 x GEMM_KC f32 weight panel in L1 */
#define GEMM_NC 120 /* activation block: GEMM_NC x GEMM_KC f32 in L2 */
#define GEMM_MC 64  /* weight rows streamed together through the k blocks */

void gemm__avx2_float(uint32_t wt, int64_t k, const void *w, size_t rs, int64_t nr,
                      const float *a, size_t as, int64_t na, float *out, int64_t os);

#endif
