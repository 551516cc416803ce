/* cpu.c - CPU feature and core-count detection (see cpu.h). */
#include "engine/cpu.h"

#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

/* XCR0 bits 1 and 2: the OS saves SSE and AVX (YMM) state. */
static bool os_saves_ymm(void)
{
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (lo & 6) == 6;
}

bool cpu_has_avx2_fma_f16c(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return false;
    bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28),
         f16c = c & (1u << 29);
    if (!(fma && osxsave && avx && f16c) || !os_saves_ymm())
        return false;
    if (__get_cpuid_max(0, NULL) < 7)
        return false;
    __cpuid_count(7, 0, a, b, c, d);
    return (b & (1u << 5)) != 0; /* AVX2 */
}
#else
bool cpu_has_avx2_fma_f16c(void)
{
    return false;
}
#endif

int cpu_logical_cores(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* Read one integer from a sysfs file; -1 when absent. */
static long read_long(const char *path)
{
    FILE *fp = fopen(path, "r");
    long v = -1;
    if (!fp)
        return -1;
    if (fscanf(fp, "%ld", &v) != 1)
        v = -1;
    fclose(fp);
    return v;
}

int cpu_physical_cores(void)
{
    enum { MAX_CPUS = 1024 };
    long seen[MAX_CPUS];
    int n_seen = 0;
    int n = cpu_logical_cores();
    for (int c = 0; c < n && c < MAX_CPUS; c++) {
        char p[128];
        snprintf(p, sizeof p, "/sys/devices/system/cpu/cpu%d/topology/core_id", c);
        long core = read_long(p);
        snprintf(p, sizeof p, "/sys/devices/system/cpu/cpu%d/topology/physical_package_id", c);
        long pkg = read_long(p);
        if (core < 0)
            return n;
        long key = pkg * 65536 + core;
        int dup = 0;
        for (int i = 0; i < n_seen; i++)
            dup |= seen[i] == key;
        if (!dup && n_seen < MAX_CPUS)
            seen[n_seen++] = key;
    }
    return n_seen > 0 ? n_seen : 1;
}

const char *cpu_features(void)
{
    return cpu_has_avx2_fma_f16c() ? "avx2 fma f16c" : "scalar";
}
