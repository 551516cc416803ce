/* mem.h - the one heap in kanoa-mlops.
 *
 * Contract: all heap memory goes through km_malloc/km_calloc/km_realloc/
 * km_strdup/km_strndup and is released with km_free, which accepts NULL.
 * Failure returns NULL (never aborts): callers turn it into KM_ENOMEM.
 * km_calloc and km_mallocarray check n*size for overflow.
 *
 * Accounting: the number of live allocations is counted atomically so tests
 * can assert that a module frees what it takes (km_mem_live()). Tests may also
 * make the Nth allocation from now fail (km_mem_fail_after) to exercise error
 * paths. Memory handed to foreign libraries that free it themselves must come
 * from their own allocator, not from here.
 *
 * Thread-safety: all functions are thread-safe.
 */
#ifndef KM_MEM_H
#define KM_MEM_H

#include <stddef.h>

void *km_malloc(size_t n);
void *km_calloc(size_t n, size_t size);
void *km_mallocarray(size_t n, size_t size);
void *km_realloc(void *p, size_t n);
char *km_strdup(const char *s);
char *km_strndup(const char *s, size_t n);
void km_free(void *p);

/* Live allocation count (allocations minus frees since start). */
long km_mem_live(void);
/* Make the allocation `n` calls from now fail (0 = next); -1 disables. */
void km_mem_fail_after(long n);

#endif
