/* cpu.h - what the CPU can do: SIMD features (cpuid) and core counts.
 *
 * Contract: pure queries, no allocation, safe from any thread.
 * cpu_has_avx2_fma_f16c() is true only when the CPU and OS support AVX2, FMA
 * and F16C (the set quant_avx2.c is compiled for). cpu_physical_cores()
 * counts distinct (package, core) ids in sysfs, falling back to the online
 * CPU count; at least 1.
 */
#ifndef ENG_CPU_H
#define ENG_CPU_H

#include <stdbool.h>

bool cpu_has_avx2_fma_f16c(void);
int cpu_physical_cores(void);
int cpu_logical_cores(void);
/* "avx2 fma f16c" style summary of the features this build uses. */
const char *cpu_features(void);

#endif
