/* buf.c - growable byte buffer with a hard maximum (see buf.h). */
#include "base/buf.h"

#include "base/err.h"
#include "base/mem.h"

#include <stdio.h>
#include <string.h>

void km_buf_init(struct km_buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

void km_buf_free(struct km_buf *b)
{
    km_free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void km_buf_reset(struct km_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

int km_buf_reserve(struct km_buf *b, size_t n)
{
    if (n > b->max || b->len > b->max - n)
        return KM_ERANGE;
    size_t need = b->len + n + 1;
    if (need <= b->cap)
        return KM_OK;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap = cap > ((size_t)-1) / 2 ? need : cap * 2;
    if (cap > b->max + 1)
        cap = b->max + 1;
    char *p = km_realloc(b->data, cap);
    if (!p)
        return KM_ENOMEM;
    b->data = p;
    b->cap = cap;
    return KM_OK;
}

int km_buf_append(struct km_buf *b, const void *p, size_t n)
{
    int rc = km_buf_reserve(b, n);
    if (rc != KM_OK)
        return rc;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return KM_OK;
}

int km_buf_puts(struct km_buf *b, const char *s)
{
    return km_buf_append(b, s, strlen(s));
}

int km_buf_putc(struct km_buf *b, char c)
{
    return km_buf_append(b, &c, 1);
}

int km_buf_vprintf(struct km_buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return KM_EINVAL;
    int rc = km_buf_reserve(b, (size_t)n);
    if (rc != KM_OK)
        return rc;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return KM_OK;
}

int km_buf_printf(struct km_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = km_buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

const char *km_buf_str(const struct km_buf *b)
{
    return b->data ? b->data : "";
}

char *km_buf_take(struct km_buf *b, size_t *len)
{
    char *d = b->data;
    if (len)
        *len = b->len;
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    return d;
}
