/* stop.c - stop-string matching with hold-back (see stop.h). */
#include "engine/stop.h"

#include "base/mem.h"

#include <string.h>

#define STOP_HOLD_MAX (1u << 20)

int eng_stop_init(struct eng_stop *s, const char *const *stops, size_t n,
                  struct km_err *err)
{
    memset(s, 0, sizeof *s);
    km_buf_init(&s->pending, STOP_HOLD_MAX);
    if (n == 0)
        return KM_OK;
    s->strs = km_calloc(n, sizeof *s->strs);
    s->lens = km_calloc(n, sizeof *s->lens);
    if (!s->strs || !s->lens)
        goto oom;
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(stops[i]);
        if (len == 0)
            continue;
        s->strs[s->n] = km_strdup(stops[i]);
        if (!s->strs[s->n])
            goto oom;
        s->lens[s->n] = len;
        s->max_len = len > s->max_len ? len : s->max_len;
        s->n++;
    }
    return KM_OK;
oom:
    eng_stop_free(s);
    return km_fail(err, KM_ENOMEM, "out of memory copying %zu stop strings", n);
}

void eng_stop_free(struct eng_stop *s)
{
    for (size_t i = 0; s->strs && i < s->n; i++)
        km_free(s->strs[i]);
    km_free(s->strs);
    km_free(s->lens);
    km_buf_free(&s->pending);
    memset(s, 0, sizeof *s);
}

/* Earliest position of any stop string in p[0..len), or len when none. */
static size_t first_match(const struct eng_stop *s, const char *p, size_t len)
{
    size_t best = len;
    for (size_t i = 0; i < s->n; i++) {
        const char *hit = memmem(p, len, s->strs[i], s->lens[i]);
        if (hit && (size_t)(hit - p) < best)
            best = (size_t)(hit - p);
    }
    return best;
}

/* Length of the longest suffix of p[0..len) that is a proper prefix of a
 * stop string. */
static size_t held_suffix(const struct eng_stop *s, const char *p, size_t len)
{
    size_t most = s->max_len > 0 ? s->max_len - 1 : 0;
    most = most < len ? most : len;
    for (size_t k = most; k > 0; k--) {
        for (size_t i = 0; i < s->n; i++) {
            if (s->lens[i] > k && memcmp(p + len - k, s->strs[i], k) == 0)
                return k;
        }
    }
    return 0;
}

/* Drop the bytes handed out by the previous call. */
static void compact(struct eng_stop *s)
{
    struct km_buf *b = &s->pending;
    if (s->released == 0)
        return;
    memmove(b->data, b->data + s->released, b->len - s->released);
    b->len -= s->released;
    b->data[b->len] = '\0';
    s->released = 0;
}

int eng_stop_feed(struct eng_stop *s, const char *text, size_t len,
                  const char **out, size_t *out_len, bool *matched)
{
    *out = "";
    *out_len = 0;
    *matched = s->stopped;
    if (s->stopped)
        return KM_OK;
    compact(s);
    int rc = km_buf_append(&s->pending, text, len);
    if (rc != KM_OK)
        return rc;
    const char *p = km_buf_str(&s->pending);
    size_t plen = s->pending.len;
    size_t hit = first_match(s, p, plen);
    if (hit < plen) {
        s->stopped = true;
        *matched = true;
        *out = p;
        *out_len = hit;
        s->released = plen;
        return KM_OK;
    }
    size_t keep = held_suffix(s, p, plen);
    *out = p;
    *out_len = plen - keep;
    s->released = plen - keep;
    return KM_OK;
}

void eng_stop_flush(struct eng_stop *s, const char **out, size_t *out_len)
{
    *out = "";
    *out_len = 0;
    if (s->stopped)
        return;
    compact(s);
    *out = km_buf_str(&s->pending);
    *out_len = s->pending.len;
    s->released = s->pending.len;
}
