/* tsv.c - to_tsvector('english', text) in the client (contract in
 * rag_int.h), for the texts whose every token the fast path reproduces
 * exactly; anything else is left to the server (*ok = false).
 *
 * Facts this follows (PostgreSQL 15, read from its sources and checked
 * against a real server by tests/tsv/run.sh):
 * - The default parser makes an `asciiword` of a run of ASCII letters, an
 *   `asciihword` of letter runs joined by single hyphens (then each part
 *   again as an `hword_asciipart`), a `uint` of a run of digits and a
 *   `numword` of a run mixing both. Everything else is blank, except where
 *   a character starts or extends another token type (host, file, e-mail,
 *   URL, numhword, signed, decimal or scientific number, version, tag, XML
 *   entity, ".."): alnum_token() and accept_blank() refuse every text where
 *   such a look-ahead could fire.
 * - english maps asciiword, asciihword and hword_asciipart to english_stem,
 *   uint and numword to simple. Every token of a mapped type takes the next
 *   position (a stopword keeps its position but yields no lexeme); blanks
 *   take none.
 * - english_stem lowercases, drops the words of english.stop (compiled in
 *   below) and stems the rest with the Snowball English (Porter2) algorithm;
 *   simple lowercases. (The database's LC_CTYPE must lowercase ASCII as
 *   ASCII: true of C and every locale but Turkish and Azeri.)
 * - A tsvector lists distinct lexemes ordered by bytes (a prefix first),
 *   each with its ascending positions (weight D = 0 bits); tsvectorsend
 *   writes int32 count, then per lexeme its bytes, a NUL, int16 count and
 *   the int16 positions, all big-endian.
 * Limits refused rather than imitated: a position reaching 16383 (where the
 * server clamps), more than 255 positions of one lexeme, texts over 1 MiB,
 * tokens longer than MAX_TOKEN bytes (the server skips words of 2048 bytes
 * and does not stem those over 1000).
 */
#include "rag/rag_int.h"

#include "base/mem.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TOKEN 255
#define MAX_POS 16382     /* the server clamps positions at 16383 */
#define MAX_NPOS 255      /* positions kept per lexeme */
#define STACK_TEXT 2048   /* texts up to this size use stack scratch */
#define MAX_TEXT (1 << 20) /* longer texts are left to the server */

/* ---- the english stopword list (tsearch_data/english.stop) ---- */

struct stopword {
    const char *s;
    size_t n;
};

#define SW(w) {w, sizeof(w) - 1}
static const struct stopword stopwords[] = {
    SW("a"), SW("about"), SW("above"), SW("after"), SW("again"), SW("against"), SW("all"),
    SW("am"), SW("an"), SW("and"), SW("any"), SW("are"), SW("as"), SW("at"), SW("be"),
    SW("because"), SW("been"), SW("before"), SW("being"), SW("below"), SW("between"),
    SW("both"), SW("but"), SW("by"), SW("can"), SW("did"), SW("do"), SW("does"),
    SW("doing"), SW("don"), SW("down"), SW("during"), SW("each"), SW("few"), SW("for"),
    SW("from"), SW("further"), SW("had"), SW("has"), SW("have"), SW("having"), SW("he"),
    SW("her"), SW("here"), SW("hers"), SW("herself"), SW("him"), SW("himself"), SW("his"),
    SW("how"), SW("i"), SW("if"), SW("in"), SW("into"), SW("is"), SW("it"), SW("its"),
    SW("itself"), SW("just"), SW("me"), SW("more"), SW("most"), SW("my"), SW("myself"),
    SW("no"), SW("nor"), SW("not"), SW("now"), SW("of"), SW("off"), SW("on"), SW("once"),
    SW("only"), SW("or"), SW("other"), SW("our"), SW("ours"), SW("ourselves"), SW("out"),
    SW("over"), SW("own"), SW("s"), SW("same"), SW("she"), SW("should"), SW("so"),
    SW("some"), SW("such"), SW("t"), SW("than"), SW("that"), SW("the"), SW("their"),
    SW("theirs"), SW("them"), SW("themselves"), SW("then"), SW("there"), SW("these"),
    SW("they"), SW("this"), SW("those"), SW("through"), SW("to"), SW("too"), SW("under"),
    SW("until"), SW("up"), SW("very"), SW("was"), SW("we"), SW("were"), SW("what"),
    SW("when"), SW("where"), SW("which"), SW("while"), SW("who"), SW("whom"), SW("why"),
    SW("will"), SW("with"), SW("you"), SW("your"), SW("yours"), SW("yourself"),
    SW("yourselves"),
};
#undef SW

/* Byte order with a prefix first: tsvector lexeme order, and the order of
 * the stopword table. */
static int lexcmp(const char *a, size_t na, const char *b, size_t nb)
{
    size_t n = na < nb ? na : nb;
    for (size_t i = 0; i < n; i++) /* short strings: no call to memcmp */
        if (a[i] != b[i])
            return (unsigned char)a[i] < (unsigned char)b[i] ? -1 : 1;
    return na < nb ? -1 : na > nb;
}

/* Bit n of stop_lengths[c - 'a']: some stopword starts with c and has n
 * letters (a quick no for most words). */
static const uint16_t stop_lengths[26] = {
    0x00ae, 0x00fc, 0x0008, 0x007c, 0x0010, 0x0098,
    0x0000, 0x00dc, 0x005e, 0x0010, 0x0000, 0x0000,
    0x0054, 0x000c, 0x023c, 0x0000, 0x0000, 0x0000,
    0x005e, 0x04fe, 0x0024, 0x0010, 0x003c, 0x0000,
    0x0538, 0x0000,
};

static bool is_stopword(const char *w, size_t n)
{
    size_t lo = 0, hi = sizeof stopwords / sizeof stopwords[0];
    if (n > 10 || w[0] < 'a' || w[0] > 'z' || !(stop_lengths[w[0] - 'a'] >> n & 1))
        return false; /* the longest is "yourselves" */
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = lexcmp(w, n, stopwords[mid].s, stopwords[mid].n);
        if (c == 0)
            return true;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return false;
}

/* ---- Snowball English (Porter2) stemmer ----
 * Works in place on lowercase ASCII letters; 'Y' marks a consonant y while
 * stemming. Each step finds the longest listed suffix, then checks its
 * condition; a failed condition ends the step (no shorter suffix is tried). */

struct word {
    char *s;
    size_t n;
    size_t p1, p2; /* start of regions R1 and R2 */
};

struct rule {
    const char *suf;
    const char *rep;
    size_t k, m; /* their lengths */
    char cond;   /* 0 none; see the steps */
};

#define RULE(suf, rep, cond) {suf, rep, sizeof(suf) - 1, sizeof(rep) - 1, cond}

static bool is_v(char c)
{
    return c == 'a' || c == 'e' || c == 'i' || c == 'o' || c == 'u' || c == 'y';
}

/* Compared from the last byte: most suffixes fail there. */
static bool ends_with(const struct word *w, const char *suf, size_t k)
{
    const char *e;
    if (w->n < k)
        return false;
    e = w->s + w->n - k;
    for (size_t i = k; i-- > 0;)
        if (e[i] != suf[i])
            return false;
    return true;
}

/* The longest rule whose suffix ends the word, or NULL. Tables are ordered
 * by decreasing suffix length. */
static const struct rule *longest(const struct word *w, const struct rule *r, size_t nr)
{
    char last = w->s[w->n - 1];
    for (size_t i = 0; i < nr; i++)
        if (r[i].suf[r[i].k - 1] == last && ends_with(w, r[i].suf, r[i].k))
            return &r[i];
    return NULL;
}

static void replace(struct word *w, size_t k, const char *rep, size_t m)
{
    memcpy(w->s + w->n - k, rep, m);
    w->n = w->n - k + m;
}

/* A short syllable ends at `end`: non-vowel, vowel, non-vowel other than
 * w, x, Y; or at the start of the word, vowel then non-vowel. */
static bool short_syllable(const char *s, size_t end)
{
    if (end >= 3 && !is_v(s[end - 1]) && s[end - 1] != 'w' && s[end - 1] != 'x' &&
        s[end - 1] != 'Y' && is_v(s[end - 2]) && !is_v(s[end - 3]))
        return true;
    return end == 2 && is_v(s[0]) && !is_v(s[1]);
}

static bool has_vowel(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (is_v(s[i]))
            return true;
    return false;
}

/* After the first vowel-then-non-vowel at or after `from` (n if none). */
static size_t region_after(const char *s, size_t n, size_t from)
{
    size_t i = from;
    while (i < n && !is_v(s[i]))
        i++;
    while (i < n && is_v(s[i]))
        i++;
    return i < n ? i + 1 : n;
}

/* Whole-word exceptions; returns true when `w` was handled. */
static bool exception1(struct word *w)
{
    static const struct rule ex[] = {
        RULE("skis", "ski", 0),     RULE("skies", "sky", 0),   RULE("dying", "die", 0),
        RULE("lying", "lie", 0),    RULE("tying", "tie", 0),   RULE("idly", "idl", 0),
        RULE("gently", "gentl", 0), RULE("ugly", "ugli", 0),   RULE("early", "earli", 0),
        RULE("only", "onli", 0),    RULE("singly", "singl", 0), RULE("sky", "sky", 0),
        RULE("news", "news", 0),    RULE("howe", "howe", 0),   RULE("atlas", "atlas", 0),
        RULE("cosmos", "cosmos", 0), RULE("bias", "bias", 0),  RULE("andes", "andes", 0),
    };
    if (w->n > 6)
        return false;
    for (size_t i = 0; i < sizeof ex / sizeof ex[0]; i++) {
        size_t k = ex[i].k;
        if (k == w->n && ex[i].suf[0] == w->s[0] && memcmp(w->s, ex[i].suf, k) == 0) {
            replace(w, k, ex[i].rep, ex[i].m);
            return true;
        }
    }
    return false;
}

static bool exception2(const struct word *w)
{
    static const char *const ex[] = {"inning", "outing",  "canning", "herring",
                                     "earring", "proceed", "exceed", "succeed"};
    if (w->n < 6 || w->n > 7)
        return false;
    for (size_t i = 0; i < sizeof ex / sizeof ex[0]; i++)
        if (ex[i][0] == w->s[0] && memcmp(w->s, ex[i], w->n) == 0 && ex[i][w->n] == '\0')
            return true;
    return false;
}

static void prelude(struct word *w)
{
    if (w->s[0] == 'y')
        w->s[0] = 'Y';
    for (size_t i = 1; i < w->n; i++)
        if (w->s[i] == 'y' && is_v(w->s[i - 1]))
            w->s[i] = 'Y';
}

static void mark_regions(struct word *w)
{
    /* R1 starts after these prefixes */
    char c = w->s[0];
    if (w->n >= 5 && ((c == 'g' && memcmp(w->s, "gener", 5) == 0) ||
                      (c == 'a' && memcmp(w->s, "arsen", 5) == 0)))
        w->p1 = 5;
    else if (w->n >= 6 && c == 'c' && memcmp(w->s, "commun", 6) == 0)
        w->p1 = 6;
    else
        w->p1 = region_after(w->s, w->n, 0);
    w->p2 = region_after(w->s, w->n, w->p1);
}

/* Step 1a: plural endings. cond 'i': ied/ies -> i after 2+ letters else
 * ie; 's': s goes when a vowel precedes the letter before it. */
static void step1a(struct word *w)
{
    static const struct rule r[] = {
        RULE("sses", "ss", 0), RULE("ied", "", 'i'), RULE("ies", "", 'i'),
        RULE("us", "us", 0),   RULE("ss", "ss", 0),  RULE("s", "", 's'),
    };
    const struct rule *m = longest(w, r, sizeof r / sizeof r[0]);
    if (m == NULL)
        return;
    if (m->cond == 'i')
        replace(w, 3, "ie", w->n - 3 >= 2 ? 1 : 2);
    else if (m->cond == 's') {
        if (w->n >= 2 && has_vowel(w->s, w->n - 2))
            w->n--;
    } else
        replace(w, m->k, m->rep, m->m);
}

static bool is_double(const struct word *w)
{
    static const char dbl[] = "bdfgmnprt";
    if (w->n < 2 || w->s[w->n - 1] != w->s[w->n - 2])
        return false;
    return memchr(dbl, w->s[w->n - 1], sizeof dbl - 1) != NULL;
}

static void step1b(struct word *w)
{
    static const struct rule r[] = {
        RULE("eedly", "ee", 'r'), RULE("ingly", "", 'v'), RULE("edly", "", 'v'),
        RULE("eed", "ee", 'r'),   RULE("ing", "", 'v'),   RULE("ed", "", 'v'),
    };
    const struct rule *m = longest(w, r, sizeof r / sizeof r[0]);
    size_t k;
    if (m == NULL)
        return;
    k = m->k;
    if (m->cond == 'r') {
        if (w->n - k >= w->p1)
            replace(w, k, "ee", 2);
        return;
    }
    if (!has_vowel(w->s, w->n - k))
        return;
    w->n -= k;
    if (ends_with(w, "at", 2) || ends_with(w, "bl", 2) || ends_with(w, "iz", 2))
        w->s[w->n++] = 'e';
    else if (is_double(w))
        w->n--;
    else if (w->p1 == w->n && short_syllable(w->s, w->n))
        w->s[w->n++] = 'e';
}

static void step1c(struct word *w)
{
    char c;
    if (w->n < 3)
        return;
    c = w->s[w->n - 1];
    if ((c == 'y' || c == 'Y') && !is_v(w->s[w->n - 2]))
        w->s[w->n - 1] = 'i';
}

static bool valid_li(char c)
{
    return c == 'c' || c == 'd' || c == 'e' || c == 'g' || c == 'h' || c == 'k' ||
           c == 'm' || c == 'n' || c == 'r' || c == 't';
}

/* Steps 2-4: in R1 (steps 2, 3) or R2 (step 4). cond 'l': ogi after l;
 * 'L': li after a valid li-ending; '2': also in R2; 'o': ion after s or t. */
static void apply_region(struct word *w, const struct rule *r, size_t nr, size_t p)
{
    const struct rule *m;
    size_t k, at;
    if (w->n < p + r[nr - 1].k) /* not even the shortest suffix is in the region */
        return;
    m = longest(w, r, nr);
    if (m == NULL)
        return;
    k = m->k;
    at = w->n - k;
    if (at < p)
        return;
    if (m->cond == 'l' && (at == 0 || w->s[at - 1] != 'l'))
        return;
    if (m->cond == 'L' && (at == 0 || !valid_li(w->s[at - 1])))
        return;
    if (m->cond == '2' && at < w->p2)
        return;
    if (m->cond == 'o' && (at == 0 || (w->s[at - 1] != 's' && w->s[at - 1] != 't')))
        return;
    replace(w, k, m->rep, m->m);
}

static void step2(struct word *w)
{
    static const struct rule r[] = {
        RULE("ational", "ate", 0), RULE("fulness", "ful", 0), RULE("iveness", "ive", 0),
        RULE("ization", "ize", 0), RULE("ousness", "ous", 0), RULE("tional", "tion", 0),
        RULE("biliti", "ble", 0),  RULE("lessli", "less", 0), RULE("entli", "ent", 0),
        RULE("ation", "ate", 0),   RULE("alism", "al", 0),    RULE("aliti", "al", 0),
        RULE("ousli", "ous", 0),   RULE("iviti", "ive", 0),   RULE("fulli", "ful", 0),
        RULE("enci", "ence", 0),   RULE("anci", "ance", 0),   RULE("abli", "able", 0),
        RULE("izer", "ize", 0),    RULE("ator", "ate", 0),    RULE("alli", "al", 0),
        RULE("bli", "ble", 0),     RULE("ogi", "og", 'l'),    RULE("li", "", 'L'),
    };
    apply_region(w, r, sizeof r / sizeof r[0], w->p1);
}

static void step3(struct word *w)
{
    static const struct rule r[] = {
        RULE("ational", "ate", 0), RULE("tional", "tion", 0), RULE("alize", "al", 0),
        RULE("icate", "ic", 0),    RULE("iciti", "ic", 0),    RULE("ative", "", '2'),
        RULE("ical", "ic", 0),     RULE("ness", "", 0),       RULE("ful", "", 0),
    };
    apply_region(w, r, sizeof r / sizeof r[0], w->p1);
}

static void step4(struct word *w)
{
    static const struct rule r[] = {
        RULE("ement", "", 0), RULE("ance", "", 0), RULE("ence", "", 0), RULE("able", "", 0),
        RULE("ible", "", 0),  RULE("ment", "", 0), RULE("ant", "", 0),  RULE("ent", "", 0),
        RULE("ism", "", 0),   RULE("ate", "", 0),  RULE("iti", "", 0),  RULE("ous", "", 0),
        RULE("ive", "", 0),   RULE("ize", "", 0),  RULE("ion", "", 'o'), RULE("al", "", 0),
        RULE("er", "", 0),    RULE("ic", "", 0),
    };
    apply_region(w, r, sizeof r / sizeof r[0], w->p2);
}

static void step5(struct word *w)
{
    size_t at = w->n - 1;
    char c = w->s[at];
    if (c == 'e') {
        if (at >= w->p2 || (at >= w->p1 && !short_syllable(w->s, at)))
            w->n--;
    } else if (c == 'l') {
        if (at >= w->p2 && at > 0 && w->s[at - 1] == 'l')
            w->n--;
    }
}

/* Stem the lowercase ASCII word s[0..n) in place; returns its new length
 * (never longer). */
static size_t stem_english(char *s, size_t n)
{
    struct word w = {.s = s, .n = n};
    if (n <= 2 || exception1(&w))
        return w.n;
    prelude(&w);
    mark_regions(&w);
    step1a(&w);
    if (!exception2(&w)) {
        step1b(&w);
        step1c(&w);
        step2(&w);
        step3(&w);
        step4(&w);
        step5(&w);
    }
    for (size_t i = 0; i < w.n; i++)
        if (s[i] == 'Y')
            s[i] = 'y';
    return w.n;
}

/* ---- the fast-path tokenizer ---- */

/* Character classes of the bytes: one load per byte while scanning. */
enum { C_LETTER = 1, C_DIGIT = 2 };
static const unsigned char char_class[256] = {
    ['a' ... 'z'] = C_LETTER, ['A' ... 'Z'] = C_LETTER, ['0' ... '9'] = C_DIGIT,
};

static bool is_letter(unsigned char c)
{
    return char_class[c] == C_LETTER;
}

static bool is_digit(unsigned char c)
{
    return char_class[c] == C_DIGIT;
}

static bool is_alnum(unsigned char c)
{
    return char_class[c] != 0;
}

static bool is_space(unsigned char c)
{
    return c == ' ' || (c >= '\t' && c <= '\r');
}

/* Whether t[i] starts the file token "..": exactly two dots where a token
 * may start (the text's start or right after a word or number; inside a
 * blank run the parser is past them), then the end, a space or a '/'. */
static bool dotdot_file(const char *t, size_t i, size_t len)
{
    if (i > 0 && !is_alnum((unsigned char)t[i - 1]))
        return false;
    return i + 2 == len || is_space((unsigned char)t[i + 2]) || t[i + 2] == '/';
}

/* Whether the blank character t[i] (not a letter or digit) is plain blank
 * in every context: no other token type can start at or run through it. */
static bool accept_blank(const char *t, size_t i, size_t len)
{
    unsigned char c = (unsigned char)t[i];
    unsigned char next = i + 1 < len ? (unsigned char)t[i + 1] : 0;
    if (c >= 0x7f || (c < 0x20 && c != '\t' && c != '\n' && c != '\r'))
        return false; /* non-ASCII (letters elsewhere), controls */
    switch (c) {
    case '<': /* tags, comments */
    case '&': /* XML entities */
    case '/': /* files, paths, URLs */
    case '~': /* ~/files */
    case '@': /* e-mail */
        return false;
    case '-': /* signed numbers; after a word: hyphenated words, hosts */
        if (is_letter(next))
            return i == 0 || !is_letter((unsigned char)t[i - 1]);
        return !is_digit(next);
    case '+': /* signed numbers */
        return !is_digit(next);
    case '.': /* hosts, files, decimals, versions, "..", "./" */
        if (is_alnum(next) || next == '_')
            return false;
        return next != '.' || !dotdot_file(t, i, len);
    default:
        return true;
    }
}

struct lex {
    uint32_t off;  /* in the lexeme scratch */
    uint16_t len;
    uint16_t pos;
};

/* Bounds: a lexeme is never longer than its token, and a hyphenated word
 * adds its parts: at most 2 * len lexeme bytes and len + 1 lexemes. */
struct tsv_scratch {
    char *chars;      /* lexeme bytes */
    struct lex *lex;  /* in text order */
    size_t nlex, nchars;
    unsigned pos;
};

/* Add token t[a..b) at the next position: lowercased, then through
 * english_stem when `word` (stopwords, Snowball), else as is (simple). */
static bool add_token(struct tsv_scratch *sc, const char *t, size_t a, size_t b, bool word)
{
    size_t n = b - a;
    char *dst = sc->chars + sc->nchars;
    if (n > MAX_TOKEN || sc->pos >= MAX_POS)
        return false;
    sc->pos++;
    for (size_t i = 0; i < n; i++)
        dst[i] = (char)(t[a + i] | 0x20); /* lowercase; digits and '-' keep */
    if (word) {
        if (is_stopword(dst, n))
            return true;
        n = stem_english(dst, n);
    }
    sc->lex[sc->nlex++] = (struct lex){(uint32_t)sc->nchars, (uint16_t)n, (uint16_t)sc->pos};
    sc->nchars += n;
    return true;
}

static size_t skip_letters(const char *t, size_t j, size_t len)
{
    while (j < len && is_letter((unsigned char)t[j]))
        j++;
    return j;
}

/* A hyphenated word t[a..b) (letters, then '-' and letters, once or more):
 * the parser gives the whole word (asciihword), then each part
 * (hword_asciipart), every one at its own position, all english_stem. */
static bool add_hyphenated(struct tsv_scratch *sc, const char *t, size_t a, size_t b)
{
    if (!add_token(sc, t, a, b, true))
        return false;
    while (a < b) {
        size_t e = skip_letters(t, a, b);
        if (!add_token(sc, t, a, e, true))
            return false;
        a = e + 1;
    }
    return true;
}

/* The token of letters and digits at *at; moves *at past it. Letters only:
 * a word, or a hyphenated word when '-' and letters follow. Digits only: an
 * unsigned integer. Both: a numword (simple, lowercased), unless a digit
 * is followed by e or E (the parser may read a number in scientific
 * notation there) or the word goes on with a hyphen (numhword: the '-'
 * rule of accept_blank refuses it). */
static bool alnum_token(struct tsv_scratch *sc, const char *t, size_t *at, size_t len)
{
    size_t i = *at, j = i;
    bool letters = false, digits = false;
    for (; j < len && is_alnum((unsigned char)t[j]); j++) {
        if (is_digit((unsigned char)t[j])) {
            digits = true;
            if (j + 1 < len && (t[j + 1] | 0x20) == 'e')
                return false;
        } else {
            letters = true;
        }
    }
    *at = j;
    /* a numword going on with a hyphen and a letter or digit: numhword */
    if (letters && digits && j + 1 < len && t[j] == '-' && is_alnum((unsigned char)t[j + 1]))
        return false;
    if (digits)
        return add_token(sc, t, i, j, false);
    if (j + 1 < len && t[j] == '-' && is_letter((unsigned char)t[j + 1])) {
        while (j + 1 < len && t[j] == '-' && is_letter((unsigned char)t[j + 1]))
            j = skip_letters(t, j + 1, len);
        *at = j;
        /* a hyphenated word going on with digits: numhword */
        if (j < len && is_digit((unsigned char)t[j]))
            return false;
        return add_hyphenated(sc, t, i, j);
    }
    return letters && add_token(sc, t, i, j, true);
}

/* Split the text into positioned lexemes; false when any part of it is not
 * handled. */
static bool tokenize(struct tsv_scratch *sc, const char *t, size_t len)
{
    size_t i = 0;
    while (i < len) {
        size_t j = i + 1;
        bool ok;
        if (is_alnum((unsigned char)t[i])) {
            j = i;
            ok = alnum_token(sc, t, &j, len);
        } else {
            ok = accept_blank(t, i, len);
        }
        if (!ok)
            return false;
        i = j;
    }
    return true;
}

static int lex_order(const void *pa, const void *pb, void *arg)
{
    const struct lex *a = pa, *b = pb;
    const char *chars = arg;
    int c = lexcmp(chars + a->off, a->len, chars + b->off, b->len);
    if (c != 0)
        return c;
    return (a->pos > b->pos) - (a->pos < b->pos);
}

/* Insertion sort for the usual few dozen lexemes (already in position
 * order, so equal lexemes stay in it), qsort beyond. */
static void sort_lexemes(struct tsv_scratch *sc)
{
    if (sc->nlex > 64) {
        qsort_r(sc->lex, sc->nlex, sizeof sc->lex[0], lex_order, sc->chars);
        return;
    }
    for (size_t i = 1; i < sc->nlex; i++) {
        struct lex x = sc->lex[i];
        size_t j = i;
        while (j > 0 && lex_order(&sc->lex[j - 1], &x, sc->chars) > 0) {
            sc->lex[j] = sc->lex[j - 1];
            j--;
        }
        sc->lex[j] = x;
    }
}

static char *put16(char *p, unsigned v)
{
    p[0] = (char)(v >> 8);
    p[1] = (char)v;
    return p + 2;
}

static bool same_lex(const struct tsv_scratch *sc, size_t i, size_t j)
{
    const struct lex *a = &sc->lex[i], *b = &sc->lex[j];
    return lexcmp(sc->chars + a->off, a->len, sc->chars + b->off, b->len) == 0;
}

/* Sorted lexemes -> tsvectorsend bytes appended to out; *ok false when a
 * lexeme has more positions than the server keeps. */
static int encode(struct tsv_scratch *sc, struct km_buf *out, bool *ok, struct km_err *err)
{
    size_t total = 4, count = 0;
    char *p;
    int rc;
    sort_lexemes(sc);
    for (size_t i = 0, j; i < sc->nlex; i = j) {
        for (j = i + 1; j < sc->nlex && same_lex(sc, i, j); j++)
            ;
        if (j - i > MAX_NPOS)
            return KM_OK;
        total += sc->lex[i].len + 1 + 2 + 2 * (j - i);
        count++;
    }
    rc = km_buf_reserve(out, total);
    if (rc != KM_OK)
        return km_fail(err, rc, "tsvector of %zu lexemes: %s", count, km_strerror(rc));
    p = out->data + out->len;
    p = put16(put16(p, (unsigned)(count >> 16)), (unsigned)count);
    for (size_t i = 0, j; i < sc->nlex; i = j) {
        for (j = i + 1; j < sc->nlex && same_lex(sc, i, j); j++)
            ;
        memcpy(p, sc->chars + sc->lex[i].off, sc->lex[i].len);
        p += sc->lex[i].len;
        *p++ = '\0';
        p = put16(p, (unsigned)(j - i));
        for (size_t k = i; k < j; k++)
            p = put16(p, sc->lex[k].pos);
    }
    out->len += total;
    out->data[out->len] = '\0';
    *ok = true;
    return KM_OK;
}

int rag__tsv_english(const char *text, size_t len, struct km_buf *out,
                     bool *ok, struct km_err *err)
{
    char chars_stack[2 * STACK_TEXT];
    struct lex lex_stack[STACK_TEXT + 1];
    struct tsv_scratch sc = {.chars = chars_stack, .lex = lex_stack};
    int rc = KM_OK;
    *ok = false;
    if (len > MAX_TEXT)
        return KM_OK;
    if (len > STACK_TEXT) {
        /* one lexeme per position at most */
        sc.chars = km_mallocarray(len, 2);
        sc.lex = km_mallocarray(len < MAX_POS ? len + 1 : MAX_POS + 1, sizeof *sc.lex);
        if (sc.chars == NULL || sc.lex == NULL) {
            rc = km_fail(err, KM_ENOMEM, "tsvector scratch for a %zu-byte text", len);
            goto out;
        }
    }
    if (tokenize(&sc, text, len))
        rc = encode(&sc, out, ok, err);
out:
    if (sc.chars != chars_stack)
        km_free(sc.chars);
    if (sc.lex != lex_stack)
        km_free(sc.lex);
    return rc;
}
