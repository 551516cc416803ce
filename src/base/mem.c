/* mem.c - counted heap wrappers (see mem.h). */
#include "base/mem.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static atomic_long live_count;
static atomic_long fail_countdown = -1;

static int should_fail(void)
{
    long v = atomic_load(&fail_countdown);
    while (v >= 0) {
        if (atomic_compare_exchange_weak(&fail_countdown, &v, v - 1))
            return v == 0;
    }
    return 0;
}

void *km_malloc(size_t n)
{
    if (should_fail())
        return NULL;
    void *p = malloc(n ? n : 1);
    if (p)
        atomic_fetch_add(&live_count, 1);
    return p;
}

void *km_calloc(size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size)
        return NULL;
    if (should_fail())
        return NULL;
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (p)
        atomic_fetch_add(&live_count, 1);
    return p;
}

void *km_mallocarray(size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size)
        return NULL;
    return km_malloc(n * size);
}

void *km_realloc(void *p, size_t n)
{
    if (!p)
        return km_malloc(n);
    if (should_fail())
        return NULL;
    return realloc(p, n ? n : 1);
}

static char *dup_len(const char *s, size_t len)
{
    char *d = km_malloc(len + 1);
    if (!d)
        return NULL;
    memcpy(d, s, len);
    d[len] = '\0';
    return d;
}

char *km_strndup(const char *s, size_t n)
{
    return dup_len(s, strnlen(s, n));
}

char *km_strdup(const char *s)
{
    return dup_len(s, strlen(s));
}

void km_free(void *p)
{
    if (!p)
        return;
    atomic_fetch_sub(&live_count, 1);
    free(p);
}

long km_mem_live(void)
{
    return atomic_load(&live_count);
}

void km_mem_fail_after(long n)
{
    atomic_store(&fail_countdown, n);
}
