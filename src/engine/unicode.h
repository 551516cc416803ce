/* unicode.h - the Unicode facts the tokenizers need: UTF-8 decoding and
 * encoding, code point classes (letter, number, whitespace, punctuation...),
 * simple lower-casing and accent stripping (first code point of the NFD
 * decomposition, as llama.cpp's WordPiece does).
 *
 * Contract. Tables are generated from UnicodeData.txt by
 * scripts/gen-unicode-tables.py into unicode_data.c. uni_decode never reads
 * past `len` and never fails: an invalid or truncated sequence yields
 * UNI_BAD with length 1 (llama.cpp's rule: a lead byte followed by the right
 * number of continuation bytes is accepted, nothing else is). uni_valid_len
 * is the strict RFC 3629 check used for output. Nothing is allocated.
 *
 * Thread-safety: all functions are pure.
 */
#ifndef ENG_UNICODE_H
#define ENG_UNICODE_H

#include <stddef.h>
#include <stdint.h>

#define UNI_BAD 0xFFFFFFFFu /* uni_decode: not a valid sequence */
#define UNI_REPLACEMENT 0xFFFDu

enum uni_flag {
    UNI_UNDEFINED = 1u << 0,
    UNI_NUMBER = 1u << 1,      /* \p{N} */
    UNI_LETTER = 1u << 2,      /* \p{L} */
    UNI_SEPARATOR = 1u << 3,   /* \p{Z} */
    UNI_MARK = 1u << 4,        /* \p{M} */
    UNI_PUNCT = 1u << 5,       /* \p{P} */
    UNI_SYMBOL = 1u << 6,      /* \p{S} */
    UNI_CONTROL = 1u << 7,     /* \p{C} */
    UNI_WHITESPACE = 1u << 8,  /* \s (White_Space property) */
};

/* Decode one code point at s[0..len) (len >= 1); *n gets the bytes used
 * (1..4). Returns the code point or UNI_BAD (then *n = 1). */
uint32_t uni_decode(const char *s, size_t len, size_t *n);
/* Encode cp (<= 0x10FFFF, else U+FFFD) into out[0..4); returns 1..4. */
size_t uni_encode(uint32_t cp, char *out);
/* Length of the strictly valid UTF-8 character at s[0..len): 1..4; 0 when
 * the bytes are a valid but incomplete prefix (more are needed); -1 when
 * s[0] cannot start a valid character here. */
int uni_valid_len(const unsigned char *s, size_t len);
/* Expected length from a lead byte per llama.cpp (0xxx=1, 10xx=1, 110x=2,
 * 1110=3, 1111=4). */
size_t uni_lead_len(unsigned char c);

/* enum uni_flag bits of cp; 0 for cp > 0x10FFFF (and for UNI_BAD). */
uint32_t uni_flags(uint32_t cp);
uint32_t uni_tolower(uint32_t cp);
/* First code point of cp's canonical decomposition (cp when none). */
uint32_t uni_nfd_first(uint32_t cp);
/* CJK ideograph blocks (BERT splits them into single-character words). */
int uni_is_cjk(uint32_t cp);

#endif
