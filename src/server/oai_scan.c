/* oai_scan.c - the gateway's fast path in front of oai_parse.c: a request
 * for a model that a pass-through backend serves (kind "upstream") is
 * forwarded verbatim, and that backend's server validates its fields. The
 * gateway then only needs to know that the body is one JSON object, and
 * its `model` and `stream`: one pass over the bytes, no tree, no
 * allocation but the model string.
 *
 * Contract: srv__parse_request_for() fills out like srv__parse_request()
 * (srv__parsed_free() releases it). Whenever the scan is not sure (a model
 * served locally, no `model`, an escaped model string, `stream` not a
 * boolean, anything that is not plain valid JSON or that jansson would
 * refuse: \u0000, unpaired surrogates, long numbers), it falls back to
 * srv__parse_request(), so every error message stays the full parser's. */
#include "server/server_int.h"

#include <string.h>

#define SCAN_MAX_DEPTH 2048     /* jansson's nesting limit */

struct scan {
    const unsigned char *p, *end;
    int depth;
};

static void skip_ws(struct scan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' ||
                             *s->p == '\r'))
        s->p++;
}

static bool lit(struct scan *s, const char *word, size_t n)
{
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0)
        return false;
    s->p += n;
    return true;
}

static int hex_val(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* The code unit of a \uXXXX escape at p (6 bytes there), -1 if malformed. */
static long u_escape(const unsigned char *p)
{
    long v = 0;
    for (int i = 2; i < 6; i++) {
        int h = hex_val(p[i]);
        if (h < 0)
            return -1;
        v = v * 16 + h;
    }
    return p[0] == '\\' && p[1] == 'u' ? v : -1;
}

/* A \uXXXX escape (or a surrogate pair of two) at s->p, as jansson takes
 * it: no U+0000, no unpaired surrogate. */
static bool unicode_escape(struct scan *s)
{
    long v = s->end - s->p >= 6 ? u_escape(s->p) : -1;
    if (v <= 0 || (v >= 0xDC00 && v <= 0xDFFF))
        return false;
    s->p += 6;
    if (v < 0xD800 || v > 0xDBFF)
        return true;
    long lo = s->end - s->p >= 6 ? u_escape(s->p) : -1;
    if (lo < 0xDC00 || lo > 0xDFFF)
        return false;
    s->p += 6;
    return true;
}

/* One UTF-8 sequence starting with a byte >= 0x80 (RFC 3629: no overlong
 * forms, no surrogates, at most U+10FFFF). */
static bool utf8_seq(struct scan *s)
{
    unsigned c = *s->p;
    size_t n = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
    if (c < 0xC2 || c > 0xF4 || (size_t)(s->end - s->p) < n)
        return false;
    unsigned c1 = s->p[1];
    unsigned lo = 0x80, hi = 0xBF;
    if (c == 0xE0)
        lo = 0xA0;
    else if (c == 0xED)
        hi = 0x9F;
    else if (c == 0xF0)
        lo = 0x90;
    else if (c == 0xF4)
        hi = 0x8F;
    if (c1 < lo || c1 > hi)
        return false;
    for (size_t i = 2; i < n; i++)
        if ((s->p[i] & 0xC0) != 0x80)
            return false;
    s->p += n;
    return true;
}

/* A string at s->p ('"'); *raw: its bytes between the quotes, *escaped:
 * whether it holds a backslash escape. */
static bool string(struct scan *s, const unsigned char **raw, size_t *n,
                   bool *escaped)
{
    const unsigned char *start = ++s->p;
    *escaped = false;
    while (s->p < s->end) {
        unsigned char c = *s->p;
        if (c == '"') {
            *raw = start;
            *n = (size_t)(s->p - start);
            s->p++;
            return true;
        }
        if (c < 0x20)
            return false;
        if (c >= 0x80) {
            if (!utf8_seq(s))
                return false;
            continue;
        }
        if (c == '\\') {
            *escaped = true;
            if (s->end - s->p < 2)
                return false;
            c = s->p[1];
            if (c == 'u') {
                if (!unicode_escape(s))
                    return false;
                continue;
            }
            if (!strchr("\"\\/bfnrt", c) || c == '\0')
                return false;
            s->p += 2;
            continue;
        }
        s->p++;
    }
    return false;
}

static bool digits(struct scan *s)
{
    const unsigned char *b = s->p;
    while (s->p < s->end && *s->p >= '0' && *s->p <= '9')
        s->p++;
    return s->p > b;
}

/* A number. One of more than 15 characters, or with an exponent of more
 * than 2 digits, is left to the full parser, which knows jansson's limits
 * (64-bit integers, finite doubles). */
static bool number(struct scan *s)
{
    const unsigned char *b = s->p;
    if (*s->p == '-')
        s->p++;
    if (s->p < s->end && *s->p == '0')
        s->p++;
    else if (!digits(s))
        return false;
    if (s->p < s->end && *s->p == '.') {
        s->p++;
        if (!digits(s))
            return false;
    }
    if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
        s->p++;
        if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
            s->p++;
        const unsigned char *e = s->p;
        if (!digits(s) || s->p - e > 2)
            return false;
    }
    return s->p - b <= 15;
}

static bool value(struct scan *s);

/* What the scan reads at the top level. */
struct route {
    const unsigned char *model;
    size_t model_len;
    bool model_ok;              /* present, a string without escapes */
    bool stream;
    bool stream_ok;             /* absent or a boolean */
    bool escaped_key;           /* a key written with escapes: it may spell
                                   "model" or "stream" (jansson decodes it) */
};

/* An object or array at s->p; top (the body's object) records route. */
static bool container(struct scan *s, struct route *top)
{
    bool obj = *s->p == '{';
    unsigned char close = obj ? '}' : ']';
    if (++s->depth > SCAN_MAX_DEPTH)
        return false;
    s->p++;
    skip_ws(s);
    if (s->p < s->end && *s->p == close) {
        s->p++;
        s->depth--;
        return true;
    }
    for (;;) {
        const unsigned char *key = NULL;
        size_t klen = 0;
        bool esc = false;
        if (obj) {
            if (s->p >= s->end || *s->p != '"' || !string(s, &key, &klen, &esc))
                return false;
            skip_ws(s);
            if (s->p >= s->end || *s->p != ':')
                return false;
            s->p++;
            skip_ws(s);
        }
        const unsigned char *v = s->p;
        if (!value(s))
            return false;
        if (top && esc)
            top->escaped_key = true;
        if (top && !esc && klen == 5 && memcmp(key, "model", 5) == 0) {
            bool vesc = false;
            struct scan sv = {v, s->p, 0};
            top->model_ok = *v == '"' &&
                            string(&sv, &top->model, &top->model_len, &vesc) &&
                            !vesc;
        } else if (top && !esc && klen == 6 && memcmp(key, "stream", 6) == 0) {
            top->stream_ok = *v == 't' || *v == 'f';
            top->stream = *v == 't';
        }
        skip_ws(s);
        if (s->p < s->end && *s->p == ',') {
            s->p++;
            skip_ws(s);
            continue;
        }
        if (s->p < s->end && *s->p == close) {
            s->p++;
            s->depth--;
            return true;
        }
        return false;
    }
}

static bool value(struct scan *s)
{
    if (s->p >= s->end)
        return false;
    const unsigned char *raw;
    size_t n;
    bool esc;
    switch (*s->p) {
    case '{': case '[': return container(s, NULL);
    case '"': return string(s, &raw, &n, &esc);
    case 't': return lit(s, "true", 4);
    case 'f': return lit(s, "false", 5);
    case 'n': return lit(s, "null", 4);
    default:
        return (*s->p == '-' || (*s->p >= '0' && *s->p <= '9')) && number(s);
    }
}

/* The body is one valid JSON object; r: its model and stream. */
static bool scan_body(const char *body, size_t len, struct route *r)
{
    struct scan s = {(const unsigned char *)body,
                     (const unsigned char *)body + len, 0};
    memset(r, 0, sizeof *r);
    r->stream_ok = true;
    skip_ws(&s);
    if (s.p >= s.end || *s.p != '{' || !container(&s, r))
        return false;
    skip_ws(&s);
    return s.p == s.end && r->model_ok && r->stream_ok && !r->escaped_key &&
           r->model_len > 0 &&
           r->model_len < 256 && !memchr(r->model, '\0', r->model_len);
}

/* Whether model is served by a pass-through backend. */
static bool proxied(struct srv_server *s, const char *model)
{
    struct srv_model_info info;
    struct srv_backend *be = srv__find_model(s, model, &info);
    return be && be->ops->kind && strcmp(be->ops->kind, "upstream") == 0;
}

int srv__parse_request_for(struct srv_server *s, enum srv_endpoint ep,
                           const char *body, size_t len,
                           struct srv_parsed *out, struct srv_perr *e)
{
    struct route r;
    if (!scan_body(body, len, &r))
        return srv__parse_request(ep, body, len, out, e);
    memset(out, 0, sizeof *out);
    out->root = json_stringn((const char *)r.model, r.model_len);
    const char *model = json_string_value(out->root);
    if (!model || !proxied(s, model)) {
        srv__parsed_free(out);
        return srv__parse_request(ep, body, len, out, e);
    }
    struct srv_request *q = &out->req;
    q->ep = ep;
    q->model = model;
    q->stream = r.stream;
    q->n = 1;
    q->add_generation_prompt = true;
    q->truncate_prompt_tokens = -1;
    q->body = body;
    q->body_len = len;
    out->model_given = true;
    return KM_OK;
}

#ifdef KM_UNITTEST
bool srv__scan_body(const char *body, size_t len, const char **model,
                    size_t *model_len, bool *stream)
{
    struct route r;
    bool ok = scan_body(body, len, &r);
    *model = ok ? (const char *)r.model : NULL;
    *model_len = ok ? r.model_len : 0;
    *stream = ok && r.stream;
    return ok;
}
#endif
