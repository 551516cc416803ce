/* h1.c - the HTTP/1.1 response reader of h1.h. */
#include "server/h1.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static long fail(struct h1_resp *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err, sizeof r->err, fmt, ap);
    va_end(ap);
    r->state = H1_ERROR;
    return -1;
}

void h1_init(struct h1_resp *r)
{
    memset(r, 0, sizeof *r);
    r->state = H1_STATUS;
}

/* The complete line at the start of buf: its length without CRLF (or a
 * bare LF) in *n; returns the bytes it takes with its end, 0 when it is not
 * complete yet, or (size_t)-1 when it is longer than H1_LINE_MAX. */
static size_t line_at(const char *buf, size_t len, size_t *n)
{
    size_t scan = len < H1_LINE_MAX + 2 ? len : H1_LINE_MAX + 2;
    const char *nl = memchr(buf, '\n', scan);
    if (!nl)
        return len > H1_LINE_MAX + 1 ? (size_t)-1 : 0;
    size_t k = (size_t)(nl - buf);
    *n = (k > 0 && buf[k - 1] == '\r') ? k - 1 : k;
    return *n > H1_LINE_MAX ? (size_t)-1 : k + 1;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* RFC 9110 tchar */
static bool is_tchar(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* "HTTP/1.x SSS[ reason]" */
static long status_line(struct h1_resp *r, const char *s, size_t n)
{
    if (n < 12 || memcmp(s, "HTTP/1.", 7) != 0 || !is_digit(s[7]) ||
        s[8] != ' ' || !is_digit(s[9]) || !is_digit(s[10]) ||
        !is_digit(s[11]) || (n > 12 && s[12] != ' '))
        return fail(r, "not an HTTP/1.x status line: \"%.*s\"",
                    (int)(n > 60 ? 60 : n), s);
    r->minor = s[7] - '0';
    r->status = (s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0');
    if (r->status < 100 || r->status > 599 || r->status == 101)
        return fail(r, "unexpected status %d", r->status);
    r->chunked = r->te = r->has_len = r->close = r->keep_alive = false;
    r->state = H1_FIELD;
    return 0;
}

/* Does the comma-separated list v contain token t (case-insensitive)?
 * *last: t is the list's last element. */
static bool list_has(const char *v, size_t n, const char *t, bool *last)
{
    size_t tl = strlen(t), i = 0;
    bool found = false;
    *last = false;
    while (i < n) {
        while (i < n && (is_blank(v[i]) || v[i] == ','))
            i++;
        size_t b = i;
        while (i < n && v[i] != ',')
            i++;
        size_t e = i;
        while (e > b && is_blank(v[e - 1]))
            e--;
        if (e == b)
            continue;
        *last = e - b == tl && strncasecmp(v + b, t, tl) == 0;
        found = found || *last;
    }
    return found;
}

static long content_length(struct h1_resp *r, const char *v, size_t n)
{
    unsigned long long x = 0;
    if (n == 0)
        return fail(r, "empty Content-Length");
    for (size_t i = 0; i < n; i++) {
        if (!is_digit(v[i]) || x > (1ull << 60))
            return fail(r, "bad Content-Length \"%.*s\"",
                        (int)(n > 40 ? 40 : n), v);
        x = x * 10 + (unsigned long long)(v[i] - '0');
    }
    if (r->has_len && x != r->left)
        return fail(r, "two different Content-Length values");
    r->has_len = true;
    r->left = x;
    return 0;
}

/* The fields that frame the body; every field goes to on_field. */
static long field_line(struct h1_resp *r, const char *s, size_t n,
                       const struct h1_cb *cb, void *ud)
{
    size_t c = 0;
    while (c < n && is_tchar(s[c]))
        c++;
    if (c == 0 || c >= n || s[c] != ':')
        return fail(r, "malformed header field \"%.*s\"",
                    (int)(n > 60 ? 60 : n), s);
    size_t b = c + 1, e = n;
    while (b < e && is_blank(s[b]))
        b++;
    while (e > b && is_blank(s[e - 1]))
        e--;
    const char *v = s + b;
    size_t vn = e - b;
    bool last = false;
    if (memchr(v, '\r', vn) || memchr(v, '\0', vn))
        return fail(r, "a CR or NUL in the value of header field \"%.*s\"",
                    (int)(c > 40 ? 40 : c), s);
    if (r->status < 200)
        return 0;       /* an interim head's fields frame nothing */
    if (c == 17 && strncasecmp(s, "transfer-encoding", 17) == 0) {
        bool has = list_has(v, vn, "chunked", &last);
        r->te = true;
        r->chunked = has && last;
        if (!r->chunked)
            r->close = true;    /* a coding we cannot frame: read to the end */
    } else if (c == 14 && strncasecmp(s, "content-length", 14) == 0) {
        if (content_length(r, v, vn) < 0)
            return -1;
    } else if (c == 10 && strncasecmp(s, "connection", 10) == 0) {
        if (list_has(v, vn, "close", &last))
            r->close = true;
        if (list_has(v, vn, "keep-alive", &last))
            r->keep_alive = true;
    }
    if (cb->on_field)
        cb->on_field(ud, s, c, v, vn);
    return 0;
}

/* The empty line that ends a head: choose how the body is framed. */
static void head_end(struct h1_resp *r, const struct h1_cb *cb, void *ud)
{
    r->head_bytes = 0;
    if (r->status < 200) {
        r->state = H1_STATUS;   /* 1xx: the real head follows */
        return;
    }
    if (r->minor == 0 && (!r->keep_alive || r->chunked))
        r->close = true;    /* 1.0 + Transfer-Encoding: RFC 9112 6.1 */
    if (cb->on_head)
        cb->on_head(ud, r->status);
    if (r->status == 204 || r->status == 304) {
        r->state = H1_DONE;
    } else if (r->chunked) {
        r->close = r->close || r->has_len;  /* both: RFC 9112 6.3 */
        r->state = H1_CHUNK_SIZE;
    } else if (r->has_len && !r->te) {    /* TE overrides: RFC 9112 6.3 */
        r->state = r->left ? H1_BODY_LEN : H1_DONE;
    } else {
        r->close = true;
        r->state = H1_BODY_CLOSE;
    }
}

/* "1a2b[ ][;ext...]" */
static long chunk_size(struct h1_resp *r, const char *s, size_t n)
{
    unsigned long long x = 0;
    size_t i = 0;
    for (; i < n; i++) {
        char c = s[i];
        int d = is_digit(c) ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 :
                (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
        if (d < 0)
            break;
        if (x >> 56)
            return fail(r, "chunk size too large");
        x = x * 16 + (unsigned long long)d;
    }
    size_t j = i;
    while (j < n && is_blank(s[j]))
        j++;
    if (i == 0 || (j < n && s[j] != ';'))
        return fail(r, "bad chunk size line \"%.*s\"", (int)(n > 40 ? 40 : n), s);
    r->left = x;
    r->head_bytes = 0;
    r->state = x ? H1_CHUNK_DATA : H1_TRAILER;
    return 0;
}

/* One complete line in a line state. */
static long one_line(struct h1_resp *r, const char *s, size_t n,
                     const struct h1_cb *cb, void *ud)
{
    switch (r->state) {
    case H1_STATUS:
        if (n == 0)
            return 0;   /* tolerate blank lines before a status line */
        return status_line(r, s, n);
    case H1_FIELD:
        if (n == 0) {
            head_end(r, cb, ud);
            return 0;
        }
        if (is_blank(s[0]))
            return fail(r, "obsolete line folding in a header field");
        return field_line(r, s, n, cb, ud);
    case H1_CHUNK_SIZE:
        return chunk_size(r, s, n);
    case H1_CHUNK_END:
        if (n != 0)
            return fail(r, "chunk data longer than its size");
        r->state = H1_CHUNK_SIZE;
        return 0;
    case H1_TRAILER:
        if (n == 0)
            r->state = H1_DONE;
        return 0;       /* trailer fields are read and dropped */
    default:
        return fail(r, "internal: line in state %d", (int)r->state);
    }
}

static bool line_state(enum h1_state s)
{
    return s == H1_STATUS || s == H1_FIELD || s == H1_CHUNK_SIZE ||
           s == H1_CHUNK_END || s == H1_TRAILER;
}

long h1_feed(struct h1_resp *r, const char *buf, size_t len,
             const struct h1_cb *cb, void *ud)
{
    size_t pos = 0;
    while (pos < len && r->state != H1_DONE) {
        if (r->state == H1_ERROR)
            return -1;
        if (line_state(r->state)) {
            size_t n = 0, take = line_at(buf + pos, len - pos, &n);
            if (take == (size_t)-1)
                return fail(r, "a line longer than %d bytes", H1_LINE_MAX);
            if (take == 0)
                break;
            r->head_bytes += take;
            if (r->head_bytes > H1_HEAD_MAX)
                return fail(r, "a head or trailer longer than %d bytes",
                            H1_HEAD_MAX);
            if (one_line(r, buf + pos, n, cb, ud) < 0)
                return -1;
            pos += take;
            continue;
        }
        size_t n = len - pos;
        if (r->state != H1_BODY_CLOSE && n > r->left)
            n = (size_t)r->left;
        if (cb->on_data && !cb->on_data(ud, buf + pos, n))
            break;      /* paused: these bytes are fed again later */
        pos += n;
        if (r->state == H1_BODY_CLOSE)
            continue;
        r->left -= n;
        if (r->left == 0)
            r->state = r->state == H1_CHUNK_DATA ? H1_CHUNK_END : H1_DONE;
    }
    return r->state == H1_ERROR ? -1 : (long)pos;
}

bool h1_eof(struct h1_resp *r)
{
    if (r->state == H1_BODY_CLOSE)
        r->state = H1_DONE;
    return r->state == H1_DONE;
}

bool h1_reusable(const struct h1_resp *r)
{
    return r->state == H1_DONE && !r->close;
}
