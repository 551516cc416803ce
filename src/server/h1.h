/* h1.h - the response side of HTTP/1.1 (RFC 9112) for the gateway's own
 * upstream client (upstream_h1.c): status line, header fields, and a body
 * framed by Transfer-Encoding: chunked, Content-Length, or the end of the
 * connection; interim 1xx heads are skipped. Pure: no I/O, no allocation.
 *
 * The caller reads from its socket into a buffer and feeds what it has;
 * h1_feed consumes what it can and returns how many bytes it used. A line
 * (status, field, chunk size, trailer) that is not complete yet is left
 * unconsumed: keep it at the start of the buffer and feed it again with
 * the bytes that follow. A line longer than H1_LINE_MAX, or a head longer
 * than H1_HEAD_MAX, is an error.
 *
 * Callbacks (each may be NULL), called while feeding:
 *   on_field(ud, name, nlen, value, vlen): one header field of the final
 *       head (value without surrounding blanks; not NUL-terminated);
 *   on_head(ud, status): that head ended; the body follows;
 *   on_data(ud, p, n): body bytes, framing removed (p points into the
 *       fed buffer). Returning false pauses: those bytes are not consumed
 *       and h1_feed returns; feed them again to go on.
 * h1_feed returns -1 for a response that is not HTTP/1.x or breaks the
 * framing rules; r->err says what. After H1_DONE it consumes nothing.
 * h1_eof tells the reader that the peer closed the connection: true when
 * that ends the response (a body delimited by the close).
 */
#ifndef SRV_H1_H
#define SRV_H1_H

#include <stdbool.h>
#include <stddef.h>

#define H1_LINE_MAX 8192
#define H1_HEAD_MAX (64 * 1024)

enum h1_state {
    H1_STATUS,          /* waiting for the status line */
    H1_FIELD,           /* header fields */
    H1_BODY_LEN,        /* Content-Length bytes */
    H1_BODY_CLOSE,      /* everything until the connection closes */
    H1_CHUNK_SIZE,      /* chunk-size [; ext] line */
    H1_CHUNK_DATA,
    H1_CHUNK_END,       /* the CRLF after a chunk's data */
    H1_TRAILER,         /* trailer fields after the last chunk */
    H1_DONE,
    H1_ERROR
};

struct h1_resp {
    enum h1_state state;
    int status;
    int minor;                  /* HTTP/1.minor */
    bool chunked;
    bool te;                    /* a Transfer-Encoding field came */
    bool has_len;
    bool close;                 /* the connection cannot be reused */
    bool keep_alive;            /* Connection: keep-alive (for HTTP/1.0) */
    unsigned long long left;    /* bytes left in the body or chunk */
    size_t head_bytes;          /* of the head being read */
    char err[120];
};

struct h1_cb {
    void (*on_field)(void *ud, const char *name, size_t nlen,
                     const char *value, size_t vlen);
    void (*on_head)(void *ud, int status);
    bool (*on_data)(void *ud, const char *p, size_t n);
};

void h1_init(struct h1_resp *r);
long h1_feed(struct h1_resp *r, const char *buf, size_t len,
             const struct h1_cb *cb, void *ud);
bool h1_eof(struct h1_resp *r);

/* The response is complete and the connection may carry another. */
bool h1_reusable(const struct h1_resp *r);

#endif
