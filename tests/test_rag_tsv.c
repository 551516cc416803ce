/* test_rag_tsv.c - rag__tsv_english (src/rag/tsv.c): stems, stopword
 * positions, the tsvectorsend bytes, and the texts the fast path refuses.
 * Every expected value was taken from PostgreSQL 15.20 (ts_lexize,
 * to_tsvector('english', ...)::text, tsvectorsend); tests/tsv/run.sh makes
 * the same comparison at scale against a live server. */
#include "base/buf.h"
#include "rag/rag_int.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

TestSuite(rag_tsv, .timeout = 30);

static unsigned be16(const char *p)
{
    return (unsigned)(unsigned char)p[0] << 8 | (unsigned char)p[1];
}

/* Render the binary tsvector as PostgreSQL's text form ('a':1,2 'b':3). */
static void render(const struct km_buf *b, char *out, size_t cap)
{
    const char *p = b->data + 4;
    unsigned n = be16(b->data) << 16 | be16(b->data + 2);
    size_t o = 0;
    out[0] = '\0';
    for (unsigned i = 0; i < n; i++) {
        size_t len = strlen(p);
        unsigned np;
        o += (size_t)snprintf(out + o, cap - o, "%s'%s':", i ? " " : "", p);
        p += len + 1;
        np = be16(p);
        p += 2;
        for (unsigned j = 0; j < np; j++, p += 2)
            o += (size_t)snprintf(out + o, cap - o, "%s%u", j ? "," : "", be16(p));
    }
    cr_assert_eq((size_t)(p - b->data), b->len, "trailing bytes");
}

/* to_tsvector text of `text`, or "REFUSED". */
static void tsv_text(const char *text, char *out, size_t cap)
{
    struct km_buf b;
    struct km_err err = {0};
    bool ok = true;
    km_buf_init(&b, 1 << 20);
    cr_assert_eq(rag__tsv_english(text, strlen(text), &b, &ok, &err), KM_OK);
    if (ok)
        render(&b, out, cap);
    else {
        cr_assert_eq(b.len, 0, "a refused text appends nothing");
        snprintf(out, cap, "REFUSED");
    }
    km_buf_free(&b);
}

static void expect(const char *text, const char *want)
{
    char got[4096];
    tsv_text(text, got, sizeof got);
    cr_expect_str_eq(got, want, "to_tsvector('english', '%s')", text);
}

Test(rag_tsv, snowball_stems)
{
    static const char *const pairs[][2] = {
        {"consign", "consign"},       {"consigned", "consign"},    {"consigning", "consign"},
        {"consignment", "consign"},   {"consistency", "consist"},  {"consolatory", "consolatori"},
        {"knackeries", "knackeri"},   {"knightly", "knight"},      {"knitting", "knit"},
        {"generously", "generous"},   {"communism", "communism"},  {"arsenal", "arsenal"},
        {"innings", "inning"},        {"succeeded", "succeed"},    {"cried", "cri"},
        {"ties", "tie"},              {"gas", "gas"},              {"gaps", "gap"},
        {"kiwis", "kiwi"},            {"hopping", "hop"},          {"hoping", "hope"},
        {"filing", "file"},           {"happy", "happi"},          {"say", "say"},
        {"syzygy", "syzygi"},         {"fluently", "fluentli"},    {"relational", "relat"},
        {"conditional", "condit"},    {"hopefulness", "hope"},     {"formality", "formal"},
        {"sensitivity", "sensit"},    {"triplicate", "triplic"},   {"generalization", "general"},
        {"operator", "oper"},         {"electricity", "electr"},   {"controllable", "control"},
        {"roll", "roll"},             {"yearly", "year"},          {"Youth", "youth"},
    };
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        char want[64];
        snprintf(want, sizeof want, "'%s':1", pairs[i][1]);
        expect(pairs[i][0], want);
    }
}

Test(rag_tsv, snowball_exceptions)
{
    expect("skies", "'sky':1");
    expect("dying", "'die':1");
    expect("early", "'earli':1");
    expect("gently", "'gentl':1");
    expect("news", "'news':1");
    expect("inning", "'inning':1");
    expect("proceed", "'proceed':1");
}

Test(rag_tsv, stopwords_keep_their_positions)
{
    expect("The Cats were running, and the cats ran: 42 cats!",
           "'42':9 'cat':2,7,10 'ran':8 'run':4");
    expect("the and of", "");
    expect("", "");
    expect("by", "");
}

Test(rag_tsv, punctuation_that_is_blank)
{
    expect("It's a 1,000 journey; don't STOP_now (really).",
           "'000':5 '1':4 'journey':6 'realli':11 'stop':9");
    expect("end. Next: (this) -- that + 'quoted' \"x\" _y_ #5 a=b [c] {d} e|f 50% $9 ^g ?h "
           "!i *j* `k` \\l >m",
           "'5':8 '50':15 '9':16 'b':10 'c':11 'd':12 'e':13 'end':1 'f':14 'g':17 'h':18 "
           "'j':20 'k':21 'l':22 'm':23 'next':2 'quot':5 'x':6 'y':7");
    expect("x ..", "'x':1");        /* inside a blank run: blank */
    expect("x... y", "'x':1 'y':2"); /* three dots: blank */
}

Test(rag_tsv, hyphenated_words_and_their_parts)
{
    expect("The well-known state-of-the-art e-mail, self- and -ish Running-Shoes",
           "'art':9 'e':11 'e-mail':10 'ish':15 'known':4 'mail':12 'run':17 "
           "'running-sho':16 'self':13 'shoe':18 'state':6 'state-of-the-art':5 'well':3 "
           "'well-known':2");
}

Test(rag_tsv, numwords_and_numbers)
{
    expect("Q4 x86_64 2nd 5-way V100 abc12-",
           "'2nd':4 '5':5 '64':3 'abc12':8 'q4':1 'v100':7 'way':6 'x86':2");
    expect("x86-64", "REFUSED"); /* signed number after a numword */
    expect("1e5x", "REFUSED");   /* scientific notation */
    expect("ab1-cd", "REFUSED"); /* numhword */
}

Test(rag_tsv, binary_bytes)
{
    /* tsvectorsend(to_tsvector('english', 'The cats, 2 cats')) */
    static const unsigned char want[] = {0, 0, 0, 2, '2', 0, 0, 1, 0, 3,
                                         'c', 'a', 't', 0, 0, 2, 0, 2, 0, 4};
    struct km_buf b;
    struct km_err err = {0};
    bool ok = false;
    km_buf_init(&b, 1024);
    km_buf_puts(&b, "x"); /* appends after what is there */
    cr_assert_eq(rag__tsv_english("The cats, 2 cats", 16, &b, &ok, &err), KM_OK);
    cr_assert(ok);
    cr_assert_eq(b.len, 1 + sizeof want);
    cr_assert_eq(memcmp(b.data + 1, want, sizeof want), 0);
    km_buf_free(&b);
}

Test(rag_tsv, refuses_what_it_does_not_reproduce)
{
    static const char *const texts[] = {
        "a-5",               /* numhword */
        "a -5 b",            /* signed integer */
        "+3",                /* signed integer */
        "example.com",       /* host */
        "v1.2",              /* numword then a file */
        "1.5",               /* decimal */
        "2e",                /* a digit then e: perhaps scientific */
        "a/b",               /* file path */
        "me@example",        /* e-mail */
        "<b>bold</b>",       /* tags */
        "fish &amp; chips",  /* entity */
        "~/x",               /* file */
        "x..",               /* ".." is a file token after a word */
        "wait.. what",       /* the same before a space */
        "a._b",              /* file */
        "caf\xc3\xa9",       /* non-ASCII */
        "a\x01" "b",         /* control byte */
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
        expect(texts[i], "REFUSED");
}

Test(rag_tsv, long_texts_use_the_heap)
{
    /* distinct numbers past the stack scratch (2048 bytes) */
    static char text[8192], got[1 << 16];
    size_t n = 0;
    unsigned i;
    for (i = 1; n < 3000; i++)
        n += (size_t)snprintf(text + n, sizeof text - n, "%u ", i);
    tsv_text(text, got, sizeof got);
    cr_assert_eq(strncmp(got, "'1':1 '10':10 '100':100 '101':101 ", 34), 0, "%.40s", got);
    cr_assert(strstr(got, " '99':99") != NULL);
}

Test(rag_tsv, positions_per_lexeme_limit)
{
    /* 255 positions of one lexeme are kept; more are left to the server */
    static char text[2048], got[4096];
    for (size_t i = 0; i < 255; i++)
        memcpy(text + 5 * i, "cats ", 5);
    tsv_text(text, got, sizeof got);
    cr_assert_eq(strlen(got), 917);
    cr_assert_eq(strcmp(got + strlen(got) - 12, "252,253,254,255" + 3), 0, "%s", got);
    memcpy(text + 5 * 255, "cats", 4);
    expect(text, "REFUSED");
}

Test(rag_tsv, limits)
{
    static char big[(1 << 20) + 2], got[1024];
    memset(big, ' ', (1 << 20) + 1);
    expect(big, "REFUSED"); /* over 1 MiB */
    big[1 << 20] = '\0';
    expect(big, "");        /* 1 MiB of blanks */
    memset(big, 'b', 256);
    expect(big, "REFUSED"); /* a 256-byte token */
    big[255] = ' ';
    tsv_text(big, got, sizeof got);
    cr_assert_eq(strncmp(got, "'bbbb", 5), 0, "a 255-byte token: %.20s", got);
    cr_assert_eq(strlen(got), 259); /* 'b...b':1, unstemmed as on the server */
}

Test(rag_tsv, buffer_limit_is_an_error)
{
    struct km_buf b;
    struct km_err err = {0};
    bool ok = true;
    km_buf_init(&b, 8);
    cr_assert_eq(rag__tsv_english("cats and dogs", 13, &b, &ok, &err), KM_ERANGE);
    cr_assert(!ok);
    cr_assert_eq(b.len, 0);
    cr_assert(strstr(err.msg, "tsvector") != NULL, "%s", err.msg);
    km_buf_free(&b);
}
