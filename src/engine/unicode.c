/* unicode.c - UTF-8 coding and table lookups for the tokenizers. */
#include "engine/unicode.h"
#include "engine/unicode_int.h"

#include <stdbool.h>

size_t uni_lead_len(unsigned char c)
{
    static const unsigned char len[16] = {1, 1, 1, 1, 1, 1, 1, 1,
                                          1, 1, 1, 1, 2, 2, 3, 4};
    return len[c >> 4];
}

static bool is_cont(unsigned char c)
{
    return (c & 0xC0) == 0x80;
}

uint32_t uni_decode(const char *s, size_t len, size_t *n)
{
    const unsigned char *u = (const unsigned char *)s;
    *n = 1;
    if (u[0] < 0x80)
        return u[0];
    size_t need = uni_lead_len(u[0]);
    if (!(u[0] & 0x40) || need > len || (u[0] & 0xF8) == 0xF8)
        return UNI_BAD;
    for (size_t i = 1; i < need; i++) {
        if (!is_cont(u[i]))
            return UNI_BAD;
    }
    uint32_t cp;
    if (need == 2)
        cp = (uint32_t)(u[0] & 0x1F) << 6 | (u[1] & 0x3F);
    else if (need == 3)
        cp = (uint32_t)(u[0] & 0x0F) << 12 | (uint32_t)(u[1] & 0x3F) << 6 |
             (u[2] & 0x3F);
    else
        cp = (uint32_t)(u[0] & 0x07) << 18 | (uint32_t)(u[1] & 0x3F) << 12 |
             (uint32_t)(u[2] & 0x3F) << 6 | (u[3] & 0x3F);
    *n = need;
    return cp;
}

size_t uni_encode(uint32_t cp, char *out)
{
    unsigned char *o = (unsigned char *)out;
    if (cp > 0x10FFFF)
        cp = UNI_REPLACEMENT;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Allowed range of the second byte for a lead byte (RFC 3629 table). */
static bool second_ok(unsigned char lead, unsigned char b)
{
    if (lead == 0xE0)
        return b >= 0xA0 && b <= 0xBF;
    if (lead == 0xED)
        return b >= 0x80 && b <= 0x9F;
    if (lead == 0xF0)
        return b >= 0x90 && b <= 0xBF;
    if (lead == 0xF4)
        return b >= 0x80 && b <= 0x8F;
    return is_cont(b);
}

int uni_valid_len(const unsigned char *s, size_t len)
{
    unsigned char c = s[0];
    size_t need;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        need = 2;
    else if (c >= 0xE0 && c <= 0xEF)
        need = 3;
    else if (c >= 0xF0 && c <= 0xF4)
        need = 4;
    else
        return -1;
    for (size_t i = 1; i < need; i++) {
        if (i >= len)
            return 0;
        bool ok = i == 1 ? second_ok(c, s[i]) : is_cont(s[i]);
        if (!ok)
            return -1;
    }
    return (int)need;
}

static uint32_t ascii_flags(uint32_t cp)
{
    if (cp >= 'a' && cp <= 'z')
        return UNI_LETTER;
    if (cp >= 'A' && cp <= 'Z')
        return UNI_LETTER;
    if (cp >= '0' && cp <= '9')
        return UNI_NUMBER;
    if (cp == ' ')
        return UNI_SEPARATOR | UNI_WHITESPACE;
    if (cp >= 0x09 && cp <= 0x0D)
        return UNI_CONTROL | UNI_WHITESPACE;
    if (cp < 0x20 || cp == 0x7F)
        return UNI_CONTROL;
    if (cp == '$' || cp == '+' || cp == '<' || cp == '=' || cp == '>' ||
        cp == '^' || cp == '`' || cp == '|' || cp == '~')
        return UNI_SYMBOL;
    return UNI_PUNCT;
}

uint32_t uni_flags(uint32_t cp)
{
    if (cp < 0x80)
        return ascii_flags(cp);
    if (cp > 0x10FFFF)
        return 0;
    size_t lo = 0, hi = uni__n_ranges; /* last range with start <= cp */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (uni__ranges[mid].start <= cp)
            lo = mid;
        else
            hi = mid;
    }
    return uni__ranges[lo].flags;
}

static uint32_t pair_lookup(const struct uni__pair *t, size_t n, uint32_t cp)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (t[mid].from == cp)
            return t[mid].to;
        if (t[mid].from < cp)
            lo = mid + 1;
        else
            hi = mid;
    }
    return cp;
}

uint32_t uni_tolower(uint32_t cp)
{
    if (cp < 0x80)
        return (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp;
    return pair_lookup(uni__lower, uni__n_lower, cp);
}

uint32_t uni_nfd_first(uint32_t cp)
{
    if (cp < 0xC0)
        return cp;
    if (cp >= 0xAC00 && cp <= 0xD7A3) /* Hangul syllable -> leading jamo */
        return 0x1100 + (cp - 0xAC00) / 588;
    return pair_lookup(uni__nfd, uni__n_nfd, cp);
}

int uni_is_cjk(uint32_t cp)
{
    return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) ||
           (cp >= 0x20000 && cp <= 0x2A6DF) ||
           (cp >= 0x2A700 && cp <= 0x2B73F) ||
           (cp >= 0x2B740 && cp <= 0x2B81F) ||
           (cp >= 0x2B820 && cp <= 0x2CEAF) ||
           (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}
