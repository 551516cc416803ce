/* buf.h - growable byte buffer with a hard maximum (curl's dynbuf idea).
 *
 * Contract: a struct km_buf is caller-owned; km_buf_init sets its maximum
 * size. Appends past the maximum fail with KM_ERANGE and leave the buffer as
 * it was; allocation failure gives KM_ENOMEM. The data is always
 * NUL-terminated (the NUL is not counted in len) so it can be used as a C
 * string. km_buf_free releases the memory and may be called on a zeroed or
 * already freed buffer. km_buf_take hands the data to the caller (free with
 * km_free) and resets the buffer.
 *
 * Thread-safety: none; one buffer, one thread.
 */
#ifndef KM_BUF_H
#define KM_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct km_buf {
    char *data;   /* NULL until the first append */
    size_t len;   /* bytes used, excluding the terminating NUL */
    size_t cap;   /* bytes allocated */
    size_t max;   /* hard limit on len */
};

void km_buf_init(struct km_buf *b, size_t max);
void km_buf_free(struct km_buf *b);
void km_buf_reset(struct km_buf *b);          /* len = 0, keeps memory */
int km_buf_append(struct km_buf *b, const void *p, size_t n);
int km_buf_puts(struct km_buf *b, const char *s);
int km_buf_putc(struct km_buf *b, char c);
int km_buf_printf(struct km_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int km_buf_vprintf(struct km_buf *b, const char *fmt, va_list ap);
/* Ensure room for `n` more bytes without changing len. */
int km_buf_reserve(struct km_buf *b, size_t n);
/* Data as a C string ("" when empty); valid until the next change. */
const char *km_buf_str(const struct km_buf *b);
char *km_buf_take(struct km_buf *b, size_t *len);

#endif
