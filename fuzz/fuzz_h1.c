/* fuzz_h1.c - the HTTP/1.1 response reader of the upstream client
 * (src/server/h1.c).
 *
 * Input: byte 0 bits 0-2 give k, the number of piece-size bytes after it
 * (0: the response arrives in one piece); bit 3 makes on_data refuse every
 * other call (the caller then feeds the same bytes again); bit 4 reports
 * the close of the connection after the last byte (h1_eof). Bytes 1..k are
 * piece sizes (1 + b), used in turn; the rest is the response.
 *
 * The response is read twice: in one feed, and as a real caller reads it
 * (a buffer of unconsumed bytes, each piece appended, fed again until the
 * reader takes nothing more). Properties (h1.h): h1_feed never consumes
 * more than it was given; it returns -1 exactly when the state is
 * H1_ERROR, with a message, and then for every later feed; on_field only
 * before on_head, with a name and a trimmed value inside the fed buffer;
 * on_head once with a final status; on_data only after it, with bytes
 * inside the fed buffer; after H1_DONE nothing is consumed; h1_reusable
 * only when done and not closing; h1_eof ends a close-delimited body; and
 * both reads end the same: state, status, framing, error text, bytes
 * consumed, fields and body bytes. */
#include "fuzz.h"

#include "base/mem.h"
#include "server/h1.h"

#include <stdlib.h>
#include <string.h>

struct fz_h1_rec {
    const char *lo, *hi;        /* the buffer being fed */
    int heads;
    int status;
    unsigned long long fields;  /* FNV-1a of every name and value */
    unsigned long long body;    /* FNV-1a of the body bytes */
    size_t body_len;
    bool pause;                 /* refuse every other on_data call */
    unsigned calls;
    unsigned pauses;
};

static unsigned long long fz_h1_hash(unsigned long long h, const char *p,
                                     size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 0x100000001b3ull;
    return h;
}

static bool fz_h1_blank(char c)
{
    return c == ' ' || c == '\t';
}

static void fz_h1_field(void *ud, const char *name, size_t nlen,
                        const char *value, size_t vlen)
{
    struct fz_h1_rec *c = ud;
    if (c->heads != 0 || nlen == 0)
        abort(); /* a field after the head, or without a name */
    if (name < c->lo || name + nlen > c->hi || value < c->lo ||
        value + vlen > c->hi)
        abort(); /* outside the fed bytes */
    if (vlen && (fz_h1_blank(value[0]) || fz_h1_blank(value[vlen - 1])))
        abort(); /* value not trimmed */
    c->fields = fz_h1_hash(c->fields, name, nlen);
    c->fields = fz_h1_hash(c->fields, ":", 1);
    c->fields = fz_h1_hash(c->fields, value, vlen);
    c->fields = fz_h1_hash(c->fields, "\n", 1);
}

static void fz_h1_head(void *ud, int status)
{
    struct fz_h1_rec *c = ud;
    if (c->heads != 0 || status < 200 || status > 599)
        abort(); /* a second head, or an interim status reported */
    c->heads = 1;
    c->status = status;
}

static bool fz_h1_data(void *ud, const char *p, size_t n)
{
    struct fz_h1_rec *c = ud;
    if (c->heads != 1 || n == 0 || p < c->lo || p + n > c->hi)
        abort(); /* body before the head, empty, or outside the buffer */
    c->calls++;
    if (c->pause && c->calls % 2 == 1) {
        c->pauses++;
        return false;
    }
    c->body = fz_h1_hash(c->body, p, n);
    c->body_len += n;
    return true;
}

static const struct h1_cb fz_h1_cbs = { fz_h1_field, fz_h1_head, fz_h1_data };

/* One h1_feed with the promises on its result. */
static long fz_h1_feed(struct h1_resp *r, const char *buf, size_t len,
                       struct fz_h1_rec *c)
{
    bool was_done = r->state == H1_DONE;
    c->lo = buf;
    c->hi = buf + len;
    long n = h1_feed(r, buf, len, &fz_h1_cbs, c);
    if (n < -1 || (n >= 0 && (size_t)n > len))
        abort(); /* consumed more than it was given */
    if ((n == -1) != (r->state == H1_ERROR) ||
        (n == -1 && (r->err[0] == '\0' || !memchr(r->err, '\0', sizeof r->err))))
        abort(); /* -1 without the error state and its message, or the reverse */
    if (was_done && n != 0)
        abort(); /* consumed bytes after the end */
    if (h1_reusable(r) && (r->state != H1_DONE || r->close))
        abort();
    return n;
}

/* The response as a real caller reads it, in pieces of the sizes given
 * (k == 0: one piece); the bytes consumed in all, or -1. */
static long fz_h1_pieces(struct h1_resp *r, struct fz_h1_rec *c,
                         const uint8_t *sizes, size_t k,
                         const char *s, size_t len)
{
    char *buf = km_malloc(len ? len : 1);
    size_t have = 0, fed = 0;
    long total = 0;
    if (!buf)
        abort();
    for (size_t i = 0; fed < len && total >= 0; i++) {
        size_t piece = k ? 1 + (size_t)sizes[i % k] : len;
        if (piece > len - fed)
            piece = len - fed;
        memcpy(buf + have, s + fed, piece);
        have += piece;
        fed += piece;
        for (size_t rounds = 0; have > 0; rounds++) {
            unsigned before = c->pauses;
            long n = fz_h1_feed(r, buf, have, c);
            if (n < 0) {
                total = -1;
                break;
            }
            memmove(buf, buf + n, have - (size_t)n);
            have -= (size_t)n;
            total += n;
            if (c->pauses == before)
                break;  /* took all it could: wait for more bytes */
            if (rounds > 2 * len + 2)
                abort(); /* resuming after pauses never ends */
        }
    }
    km_free(buf);
    return total;
}

static void fz_h1_same(const struct h1_resp *a, const struct fz_h1_rec *ca,
                       long na, const struct h1_resp *b,
                       const struct fz_h1_rec *cb, long nb)
{
    if (na != nb || a->state != b->state || a->status != b->status ||
        a->chunked != b->chunked || a->close != b->close ||
        strcmp(a->err, b->err) != 0)
        abort(); /* the split changed where or how the reading ended */
    if (ca->heads != cb->heads || ca->status != cb->status ||
        ca->fields != cb->fields || ca->body_len != cb->body_len ||
        ca->body != cb->body)
        abort(); /* the split changed what the callbacks saw */
}

int fuzz_h1(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t k = data[0] & 7;
    bool pause = data[0] & 8, eof = data[0] & 16;
    if (size < 1 + k)
        return 0;
    const uint8_t *sizes = data + 1;
    const char *s = (const char *)data + 1 + k;
    size_t len = size - 1 - k;

    struct h1_resp whole, cut;
    struct fz_h1_rec cw = { 0 }, cc = { .pause = pause };
    h1_init(&whole);
    long nw = fz_h1_feed(&whole, s, len, &cw);
    h1_init(&cut);
    long nc = fz_h1_pieces(&cut, &cc, sizes, k, s, len);
    fz_h1_same(&whole, &cw, nw, &cut, &cc, nc);
    if (eof) {
        bool ended = whole.state == H1_BODY_CLOSE;
        bool a = h1_eof(&whole), b = h1_eof(&cut);
        if (a != b || a != (whole.state == H1_DONE) || (ended && !a))
            abort(); /* the close did not end a close-delimited body */
        if (ended && h1_reusable(&whole))
            abort(); /* a body ended by the close, yet reusable */
    }
    /* after the end nothing more is taken; after an error nothing at all */
    if (whole.state == H1_DONE || whole.state == H1_ERROR) {
        bool done = whole.state == H1_DONE;
        long more = fz_h1_feed(&whole, "HTTP/1.1 200 OK\r\n", 17, &cw);
        if (more != (done ? 0 : -1))
            abort();
    }
    return 0;
}

#ifndef FUZZ_REPLAY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_h1(data, size);
}
#endif
