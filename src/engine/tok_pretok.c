/* tok_pretok.c - the regex-free pre-tokenizers of byte-level BPE, written
 * after llama.cpp's hand-made matchers (unicode_regex_split_custom_llama3 /
 * _gpt2). Both walk the code points once; at each position the first rule
 * that applies emits one word.
 *
 * llama3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
 *         ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 * gpt-2:  's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|
 *         \s+(?!\S)|\s+
 */
#include "engine/tok_int.h"
#include "engine/unicode.h"

#define OUT_OF_RANGE 0xFFFFFFFFu

struct split {
    const uint32_t *cps;
    size_t n;
    size_t *ends;
    size_t n_words;
    size_t prev;   /* end of the last word */
};

static uint32_t cpt(const struct split *s, size_t i)
{
    return i < s->n ? s->cps[i] : OUT_OF_RANGE;
}

static uint32_t flags(const struct split *s, size_t i)
{
    return i < s->n ? uni_flags(s->cps[i]) : 0;
}

/* End a word at `end` (an empty one adds nothing); returns end, where the
 * next word starts. */
static size_t add(struct split *s, size_t end)
{
    if (end != s->prev)
        s->ends[s->n_words++] = end;
    s->prev = end;
    return end;
}

static bool is_crlf(uint32_t c)
{
    return c == '\r' || c == '\n';
}

/* 's 't 'm 'd (2 code points) or 're 've 'll (3); 0 when none. */
static size_t contraction(const struct split *s, size_t pos, bool fold)
{
    if (cpt(s, pos) != '\'' || pos + 1 >= s->n)
        return 0;
    uint32_t a = cpt(s, pos + 1), b = cpt(s, pos + 2);
    if (fold) {
        a = uni_tolower(a);
        b = pos + 2 < s->n ? uni_tolower(b) : b;
    }
    if (a == 's' || a == 't' || a == 'm' || a == 'd')
        return 2;
    if (pos + 2 < s->n && ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') ||
                           (a == 'l' && b == 'l')))
        return 3;
    return 0;
}

static bool is_other(uint32_t f) /* [^\s\p{L}\p{N}], not past the end */
{
    return !(f & (UNI_WHITESPACE | UNI_LETTER | UNI_NUMBER)) && f != 0;
}

/* Whitespace rules shared by both: \s*[\r\n]+ (llama3 only), \s+(?!\S), \s+,
 * else a single code point. Returns the new position. */
static size_t whitespace(struct split *s, size_t pos, bool crlf_rule)
{
    size_t nws = 0, last_crlf = 0;
    while (flags(s, pos + nws) & UNI_WHITESPACE) {
        if (is_crlf(cpt(s, pos + nws)))
            last_crlf = pos + nws + 1;
        nws++;
    }
    if (crlf_rule && last_crlf > 0)
        return add(s, last_crlf);
    if (nws > 1 && cpt(s, pos + nws) != OUT_OF_RANGE)
        return add(s, pos + nws - 1);
    if (nws > 0)
        return add(s, pos + nws);
    return add(s, pos + 1);
}

static size_t llama3_step(struct split *s, size_t pos)
{
    uint32_t c = cpt(s, pos), f = flags(s, pos);
    size_t k = contraction(s, pos, true);
    if (k > 0)
        return add(s, pos + k);
    if (!is_crlf(c) && !(f & UNI_NUMBER) &&
        ((f & UNI_LETTER) || (flags(s, pos + 1) & UNI_LETTER))) {
        pos++;
        while (flags(s, pos) & UNI_LETTER)
            pos++;
        return add(s, pos);
    }
    if (f & UNI_NUMBER) {
        size_t ini = pos;
        while (flags(s, pos) & UNI_NUMBER) {
            if (++pos - ini >= 3) {
                add(s, pos);
                ini = pos;
            }
        }
        return add(s, pos);
    }
    uint32_t f2 = c == ' ' ? flags(s, pos + 1) : f;
    if (is_other(f2) && f != 0) {
        pos += c == ' ';
        while (is_other(flags(s, pos)))
            pos++;
        while (is_crlf(cpt(s, pos)))
            pos++;
        return add(s, pos);
    }
    return whitespace(s, pos, true);
}

static size_t gpt2_run(struct split *s, size_t pos, uint32_t c, uint32_t want)
{
    pos += c == ' ';
    while (flags(s, pos) & want)
        pos++;
    return add(s, pos);
}

static size_t gpt2_step(struct split *s, size_t pos)
{
    uint32_t c = cpt(s, pos), f = flags(s, pos);
    size_t k = contraction(s, pos, false);
    if (k > 0)
        return add(s, pos + k);
    uint32_t f2 = c == ' ' ? flags(s, pos + 1) : f;
    if (f2 & UNI_LETTER)
        return gpt2_run(s, pos, c, UNI_LETTER);
    if (f2 & UNI_NUMBER)
        return gpt2_run(s, pos, c, UNI_NUMBER);
    if (is_other(f2)) {
        pos += c == ' ';
        while (is_other(flags(s, pos)))
            pos++;
        return add(s, pos);
    }
    return whitespace(s, pos, false);
}

size_t tok__split_llama3(const uint32_t *cps, size_t n, size_t *ends)
{
    struct split s = {cps, n, ends, 0, 0};
    for (size_t pos = 0; pos < n;)
        pos = llama3_step(&s, pos);
    return s.n_words;
}

size_t tok__split_gpt2(const uint32_t *cps, size_t n, size_t *ends)
{
    struct split s = {cps, n, ends, 0, 0};
    for (size_t pos = 0; pos < n;)
        pos = gpt2_step(&s, pos);
    return s.n_words;
}

/* ---- llama.cpp's default BPE pre-tokenizer ------------------------------ */
/* Four regexes applied in turn, each splitting every fragment the previous
 * one produced into its matches and the text between them:
 *   [\p{P}\$\+<=>\^~\|]+   then the GPT-2 rules   then \p{N}+   then [0-9]{3} */

typedef size_t (*split_fn)(const uint32_t *cps, size_t n, size_t *ends);

static bool is_p1(uint32_t c)
{
    return (uni_flags(c) & UNI_PUNCT) || c == '$' || c == '+' || c == '<' ||
           c == '=' || c == '>' || c == '^' || c == '~' || c == '|';
}

static bool is_num(uint32_t c)
{
    return (uni_flags(c) & UNI_NUMBER) != 0;
}

/* Maximal runs of code points that do / do not satisfy pred. */
static size_t split_runs(const uint32_t *cps, size_t n, size_t *ends,
                         bool (*pred)(uint32_t))
{
    size_t k = 0;
    for (size_t i = 1; i <= n; i++) {
        if (i == n || pred(cps[i]) != pred(cps[i - 1]))
            ends[k++] = i;
    }
    return k;
}

static size_t split_punct(const uint32_t *cps, size_t n, size_t *ends)
{
    return split_runs(cps, n, ends, is_p1);
}

static size_t split_numbers(const uint32_t *cps, size_t n, size_t *ends)
{
    return split_runs(cps, n, ends, is_num);
}

static bool ascii_digit(uint32_t c)
{
    return c >= '0' && c <= '9';
}

/* Leftmost non-overlapping matches of three ASCII digits. */
static size_t split_three_digits(const uint32_t *cps, size_t n, size_t *ends)
{
    size_t k = 0, prev = 0;
    for (size_t i = 0; i + 3 <= n;) {
        if (!(ascii_digit(cps[i]) && ascii_digit(cps[i + 1]) && ascii_digit(cps[i + 2]))) {
            i++;
            continue;
        }
        if (i > prev)
            ends[k++] = i;
        ends[k++] = i + 3;
        i += 3;
        prev = i;
    }
    if (n > prev)
        ends[k++] = n;
    return k;
}

/* Split every word of in[0..n_in) with fn; returns the new word count. */
static size_t refine(const uint32_t *cps, const size_t *in, size_t n_in,
                     size_t *out, split_fn fn)
{
    size_t n_out = 0, start = 0;
    for (size_t w = 0; w < n_in; w++) {
        size_t k = fn(cps + start, in[w] - start, out + n_out);
        for (size_t j = 0; j < k; j++)
            out[n_out + j] += start;
        n_out += k;
        start = in[w];
    }
    return n_out;
}

size_t tok__split_default(const uint32_t *cps, size_t n, size_t *ends,
                          size_t *tmp)
{
    size_t k = split_punct(cps, n, tmp);
    k = refine(cps, tmp, k, ends, tok__split_gpt2);
    k = refine(cps, ends, k, tmp, split_numbers);
    return refine(cps, tmp, k, ends, split_three_digits);
}
