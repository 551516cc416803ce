/* tok_wpm.c - WordPiece (tokenizer.ggml.model = bert), as llama.cpp does it
 * over the GGUF "phantom space" vocabulary (word-initial pieces carry a U+2581
 * prefix, continuation pieces have no "##").
 *
 * Pre-processing per code point: replace by the first code point of its NFD
 * decomposition (strips accents: u-umlaut -> u); whitespace ends a word; NUL,
 * U+FFFD (also every invalid UTF-8 byte) and control characters are dropped;
 * the rest is lower-cased; punctuation, ASCII symbols and CJK ideographs are
 * words of their own. Each word, prefixed with U+2581, is then cut greedily
 * into the longest vocabulary pieces from the left; a word with a position
 * no piece matches becomes the unknown token. */
#include "engine/tok_int.h"

#include "base/buf.h"
#include "engine/unicode.h"

#define PHANTOM "\xe2\x96\x81"

static int word_tokens(const struct tok_vocab *v, const char *w, size_t n,
                       struct tok__ids *out, struct km_err *err)
{
    size_t before = out->n;
    int rc = KM_OK;
    for (size_t i = 0; i < n && rc == KM_OK; i++) {
        size_t j = n < i + v->max_token_len + 1 ? n : i + v->max_token_len + 1;
        int32_t id = TOK_NULL;
        for (; j > i; j--) {
            id = tok__find(v, w + i, j - i);
            if (id != TOK_NULL)
                break;
        }
        if (id == TOK_NULL) {
            out->n = before; /* discard the whole word */
            break;
        }
        rc = tok__push(out, id, err);
        i = j - 1;
    }
    if (rc == KM_OK && out->n == before)
        rc = tok__push(out, v->unk, err);
    return rc;
}

/* Tokenize the pending word in b (PHANTOM + word) and reset it. */
static int flush_word(const struct tok_vocab *v, struct km_buf *b,
                      struct tok__ids *out, struct km_err *err)
{
    int rc = KM_OK;
    if (b->len > 3)
        rc = word_tokens(v, b->data, b->len, out, err);
    b->len = 3;
    return rc;
}

static int one_cp(const struct tok_vocab *v, uint32_t cp, struct km_buf *b,
                  struct tok__ids *out, struct km_err *err)
{
    cp = uni_nfd_first(cp);
    uint32_t f = uni_flags(cp);
    if (f & UNI_WHITESPACE)
        return flush_word(v, b, out, err);
    if (cp == 0 || cp == UNI_REPLACEMENT || (f & UNI_CONTROL))
        return KM_OK;
    char u8[4];
    size_t n = uni_encode(uni_tolower(cp), u8);
    bool alone = (f & UNI_PUNCT) || (cp < 0x7F && (f & UNI_SYMBOL)) || uni_is_cjk(cp);
    int rc = alone ? flush_word(v, b, out, err) : KM_OK;
    if (rc == KM_OK)
        rc = km_buf_append(b, u8, n);
    if (rc != KM_OK)
        return km_fail(err, rc, "tokenizer: a word exceeds %zu bytes", TOK_MAX_TEXT);
    return alone ? flush_word(v, b, out, err) : KM_OK;
}

int tok__wpm(const struct tok_vocab *v, const char *s, size_t len,
             struct tok__ids *out, struct km_err *err)
{
    struct km_buf b;
    int rc;
    if (v->unk == TOK_NULL)
        return km_fail(err, KM_EFORMAT, "tokenizer: WordPiece vocabulary has no unknown token");
    km_buf_init(&b, TOK_MAX_TEXT);
    rc = km_buf_append(&b, PHANTOM, 3);
    for (size_t off = 0; off < len && rc == KM_OK;) {
        size_t k;
        uint32_t c = uni_decode(s + off, len - off, &k);
        off += k;
        rc = one_cp(v, c == UNI_BAD ? UNI_REPLACEMENT : c, &b, out, err);
    }
    if (rc == KM_OK)
        rc = flush_word(v, &b, out, err);
    else if (rc == KM_ENOMEM)
        km_fail(err, rc, "tokenizer: out of memory for a word");
    km_buf_free(&b);
    return rc;
}
