/* tok_decode.c - ids back to text: pieces, whole sequences, and the
 * streaming detokenizer that only ever emits complete UTF-8 characters. */
#include "engine/tok_int.h"

#include "engine/unicode.h"

#include <stdint.h>
#include <string.h>

#define PHANTOM "\xe2\x96\x81"

static int append(struct km_buf *out, const void *p, size_t n,
                  struct km_err *err)
{
    int rc = km_buf_append(out, p, n);
    if (rc != KM_OK)
        return km_fail(err, rc, "tokenizer: decoded text does not fit in its buffer (%zu bytes max)", out->max);
    return KM_OK;
}

/* BPE: map each code point of the byte alphabet back to its byte. */
static int piece_bpe(const char *t, size_t len, struct km_buf *out,
                     struct km_err *err)
{
    char tmp[256];
    size_t n = 0;
    int rc = KM_OK;
    for (size_t off = 0; off < len && rc == KM_OK;) {
        size_t k;
        uint32_t cp = uni_decode(t + off, len - off, &k);
        int b = cp == UNI_BAD ? -1 : tok__cp_to_byte(cp);
        if (b >= 0) {
            tmp[n++] = (char)b;
        } else { /* not in the alphabet: keep the text as is */
            memcpy(tmp + n, t + off, k);
            n += k;
        }
        off += k;
        if (n > sizeof(tmp) - 4) {
            rc = append(out, tmp, n, err);
            n = 0;
        }
    }
    return rc == KM_OK ? append(out, tmp, n, err) : rc;
}

/* SPM/WPM normal tokens: U+2581 -> ' ', optionally dropping one leading
 * space. */
static int piece_spm(const char *t, size_t len, bool lstrip, struct km_buf *out,
                     struct km_err *err)
{
    int rc = KM_OK;
    size_t start = 0;
    for (size_t i = 0; i < len && rc == KM_OK;) {
        if (len - i >= 3 && memcmp(t + i, PHANTOM, 3) == 0) {
            rc = append(out, t + start, i - start, err);
            if (rc == KM_OK && !(lstrip && i == 0))
                rc = append(out, " ", 1, err);
            i += 3;
            start = i;
        } else if (i == 0 && lstrip && t[0] == ' ') {
            i = start = 1;
        } else {
            i++;
        }
    }
    return rc == KM_OK ? append(out, t + start, len - start, err) : rc;
}

static int byte_value(const char *t, size_t len)
{
    unsigned v = 0;
    if (len != 6 || memcmp(t, "<0x", 3) != 0 || t[5] != '>')
        return -1;
    for (int i = 3; i < 5; i++) {
        char c = t[i];
        unsigned d = c >= '0' && c <= '9' ? (unsigned)(c - '0')
                   : c >= 'A' && c <= 'F' ? (unsigned)(c - 'A' + 10)
                   : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10) : 16u;
        if (d > 15)
            return -1;
        v = v * 16 + d;
    }
    return (int)v;
}

static int piece(const struct tok_vocab *v, int32_t id, bool special,
                 bool lstrip, struct km_buf *out, struct km_err *err)
{
    if (id < 0 || id >= v->n)
        return km_fail(err, KM_ERANGE, "tokenizer: token id %d is out of range (vocabulary has %d)", id, v->n);
    const struct tok__entry *e = &v->tok[id];
    const char *t = v->pool + e->off;
    if (e->attr & (TOK_ATTR_CONTROL | TOK_ATTR_UNKNOWN))
        return special ? append(out, t, e->len, err) : KM_OK;
    if (e->attr & TOK_ATTR_USER_DEFINED)
        return append(out, t, e->len, err);
    if (v->model == TOK_MODEL_BPE)
        return (e->attr & TOK_ATTR_NORMAL) ? piece_bpe(t, e->len, out, err) : KM_OK;
    if (e->attr & TOK_ATTR_BYTE) {
        int b = byte_value(t, e->len);
        char c = (char)b;
        return b >= 0 ? append(out, &c, 1, err) : KM_OK;
    }
    if (e->attr & TOK_ATTR_NORMAL)
        return piece_spm(t, e->len, lstrip, out, err);
    return KM_OK;
}

int tok_piece(const struct tok_vocab *v, int32_t id, bool special,
              struct km_buf *out, struct km_err *err)
{
    return piece(v, id, special, false, out, err);
}

int tok_decode(const struct tok_vocab *v, const int32_t *ids, size_t n,
               bool remove_special, bool special, struct km_buf *out,
               struct km_err *err)
{
    size_t len0 = out->len;
    bool lstrip = v->add_space_prefix && v->model != TOK_MODEL_BPE;
    if (remove_special && v->add_bos && n > 0 && ids[0] == v->bos) {
        lstrip = false;
        ids++;
        n--;
    }
    if (remove_special && v->add_eos && n > 0 && ids[n - 1] == v->eos)
        n--;
    for (size_t i = 0; i < n; i++) {
        int rc = piece(v, ids[i], special, lstrip, out, err);
        if (rc != KM_OK) {
            out->len = len0;
            if (out->data)
                out->data[len0] = '\0';
            return rc == KM_ERANGE && ids[i] >= 0 && ids[i] < v->n
                ? rc : km_err_prefix(err, "ids[%zu]", i);
        }
        lstrip = false;
    }
    return KM_OK;
}

/* ---- streaming ---------------------------------------------------------- */

void tok_stream_init(struct tok_stream *s, const struct tok_vocab *v,
                     bool special)
{
    memset(s, 0, sizeof(*s));
    s->v = v;
    s->special = special;
    km_buf_init(&s->out, (size_t)1 << 20);
    km_buf_init(&s->raw, (size_t)1 << 20);
}

void tok_stream_free(struct tok_stream *s)
{
    km_buf_free(&s->out);
    km_buf_free(&s->raw);
    s->n_held = 0;
}

/* Append the complete characters of raw[0..n) to out, each invalid byte as
 * U+FFFD; *tail gets the length of an incomplete character ending raw (not
 * appended). */
static int lossy(const unsigned char *raw, size_t n, struct km_buf *out,
                 size_t *tail, struct km_err *err)
{
    size_t i = 0;
    int rc = KM_OK;
    *tail = 0;
    while (i < n && rc == KM_OK) {
        int k = uni_valid_len(raw + i, n - i);
        if (k > 0) {
            rc = append(out, raw + i, (size_t)k, err);
            i += (size_t)k;
        } else if (k == 0) {
            *tail = n - i;
            i = n;
        } else {
            rc = append(out, "\xef\xbf\xbd", 3, err);
            i++;
        }
    }
    return rc;
}

/* Move the complete characters of raw[0..n) to out; keep an incomplete tail
 * in s->held; replace invalid bytes with U+FFFD. */
static int settle(struct tok_stream *s, const unsigned char *raw, size_t n,
                  struct km_err *err)
{
    size_t tail;
    int rc = lossy(raw, n, &s->out, &tail, err);
    memcpy(s->held, raw + n - tail, tail);
    s->n_held = rc == KM_OK ? tail : 0;
    return rc;
}

int tok_utf8_lossy(struct km_buf *b, struct km_err *err)
{
    const unsigned char *p = (const unsigned char *)b->data;
    size_t i = 0;
    int k = 1;
    while (i < b->len && (k = uni_valid_len(p + i, b->len - i)) > 0)
        i += (size_t)k;
    if (i == b->len)
        return KM_OK; /* already valid: nothing to copy */
    struct km_buf out;
    km_buf_init(&out, b->max <= SIZE_MAX / 3 ? 3 * b->max : b->max);
    size_t tail;
    int rc = lossy(p, b->len, &out, &tail, err);
    if (rc == KM_OK && tail > 0)
        rc = append(&out, "\xef\xbf\xbd", 3, err);
    if (rc == KM_OK) {
        km_buf_free(b);
        *b = out;
    } else {
        km_buf_free(&out);
    }
    return rc;
}

int tok_stream_feed(struct tok_stream *s, int32_t id, const char **text,
                    size_t *len, struct km_err *err)
{
    int rc;
    *text = "";
    *len = 0;
    km_buf_reset(&s->out);
    km_buf_reset(&s->raw);
    rc = km_buf_append(&s->raw, s->held, s->n_held);
    if (rc != KM_OK)
        return km_fail(err, rc, "tokenizer: out of memory in the stream");
    rc = piece(s->v, id, s->special, false, &s->raw, err);
    if (rc == KM_OK)
        rc = settle(s, (const unsigned char *)s->raw.data, s->raw.len, err);
    if (rc != KM_OK)
        return rc;
    *text = km_buf_str(&s->out);
    *len = s->out.len;
    return KM_OK;
}

void tok_stream_flush(struct tok_stream *s, const char **text, size_t *len)
{
    *text = s->n_held > 0 ? "\xef\xbf\xbd" : "";
    *len = s->n_held > 0 ? 3 : 0;
    s->n_held = 0;
}
