/* test_tok.c - tokenizers against the llama.cpp reference vectors in
 * shared/data/tokenizer (ids exact, case by case), round trips, streaming,
 * special tokens and hostile input. */
#include "base/buf.h"
#include "base/mem.h"
#include "engine/gguf.h"
#include "engine/tok.h"
#include "engine/tok_int.h"
#include "engine/unicode.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

TestSuite(tok, .timeout = 120);

#define SEP "\n__ggml_vocab_test__\n"

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = malloc((size_t)n + 1);
    cr_assert_eq(fread(p, 1, (size_t)n, f), (size_t)n);
    p[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return p;
}

static void data_path(char *out, size_t cap, const char *name)
{
    const char *sh = getenv("KM_SHARED");
    snprintf(out, cap, "%s/data/tokenizer/%s", sh ? sh : "../shared", name);
}

static struct tok_vocab *load(const char *name, struct gguf_file **gf)
{
    char path[1024];
    struct km_err err;
    struct tok_vocab *v = NULL;
    data_path(path, sizeof(path), name);
    int rc = gguf_open(path, gf, &err);
    cr_assert_eq(rc, KM_OK, "gguf_open %s: %s", path, err.msg);
    rc = tok_load(*gf, &v, &err);
    cr_assert_eq(rc, KM_OK, "tok_load %s: %s", path, err.msg);
    return v;
}

struct cases {
    char *inp, *out;
    char *texts[128];
    size_t lens[128];
    char *ids[128];
    size_t n;
};

static void read_cases(const char *name, struct cases *c)
{
    char path[1024], base[256];
    size_t len;
    memset(c, 0, sizeof(*c));
    snprintf(base, sizeof(base), "%s.inp", name);
    data_path(path, sizeof(path), base);
    c->inp = slurp(path, &len);
    snprintf(base, sizeof(base), "%s.out", name);
    data_path(path, sizeof(path), base);
    c->out = slurp(path, &len);
    char *p = c->inp;
    char *q = strstr(p, SEP);
    while (q) {
        cr_assert_lt(c->n, 128);
        *q = '\0';
        c->texts[c->n] = p;
        c->lens[c->n++] = (size_t)(q - p);
        p = q + strlen(SEP);
        q = strstr(p, SEP);
    }
    size_t k;
    p = c->out;
    for (k = 0; k < c->n; k++) {
        char *nl = strchr(p, '\n');
        cr_assert_not_null(nl, "%s: .out has fewer lines than cases", name);
        *nl = '\0';
        c->ids[k] = p;
        p = nl + 1;
    }
}

/* Encode every case and compare with the expected ids; returns cases done. */
static size_t check_vectors(const char *name, bool roundtrip)
{
    struct gguf_file *gf;
    struct tok_vocab *v = load(name, &gf);
    struct cases c;
    read_cases(name, &c);
    cr_assert_gt(c.n, 40, "%s: only %zu cases", name, c.n);
    for (size_t k = 0; k < c.n; k++) {
        int32_t *ids;
        size_t n;
        struct km_err err;
        int rc = tok_encode(v, c.texts[k], c.lens[k], false, false, &ids, &n, &err);
        cr_assert_eq(rc, KM_OK, "%s case %zu: %s", name, k, err.msg);
        struct km_buf got;
        km_buf_init(&got, 1 << 20);
        for (size_t i = 0; i < n; i++)
            km_buf_printf(&got, " %d", ids[i]);
        cr_expect_str_eq(km_buf_str(&got), c.ids[k], "%s case %zu (\"%s\"): got [%s] want [%s]",
                         name, k, c.texts[k], km_buf_str(&got), c.ids[k]);
        if (roundtrip) {
            km_buf_reset(&got);
            rc = tok_decode(v, ids, n, false, false, &got, &err);
            cr_assert_eq(rc, KM_OK, "%s case %zu decode: %s", name, k, err.msg);
            cr_expect_eq(got.len, c.lens[k], "%s case %zu: decode length %zu want %zu",
                         name, k, got.len, c.lens[k]);
            cr_expect(memcmp(km_buf_str(&got), c.texts[k], c.lens[k]) == 0,
                      "%s case %zu: decode gives \"%s\"", name, k, km_buf_str(&got));
        }
        km_buf_free(&got);
        km_free(ids);
    }
    size_t n = c.n;
    free(c.inp);
    free(c.out);
    tok_free(v);
    gguf_close(gf);
    return n;
}

Test(tok, vectors_gpt2_exact_and_roundtrip)
{
    cr_assert_eq(check_vectors("ggml-vocab-gpt-2.gguf", true), 46);
}

Test(tok, vectors_llama_spm_exact_and_roundtrip)
{
    cr_assert_eq(check_vectors("ggml-vocab-llama-spm.gguf", true), 46);
}

Test(tok, vectors_bert_bge_exact)
{
    cr_assert_eq(check_vectors("ggml-vocab-bert-bge.gguf", false), 46);
}

/* ---- special tokens, Gemma-style SPM, streaming ------------------------- */

/* Serialize w (freed here) and open the bytes as a GGUF file; *mem stays
 * the caller's to km_free after gguf_close. */
static struct gguf_file *open_written(struct gguf_writer *w, const char *name, void **mem)
{
    struct km_err err;
    size_t len;
    struct gguf_file *gf;
    cr_assert_eq(gguf_writer_write_mem(w, mem, &len, &err), KM_OK, "%s", err.msg);
    gguf_writer_free(w);
    cr_assert_eq(gguf_open_mem(*mem, len, name, &gf, &err), KM_OK, "%s", err.msg);
    return gf;
}

/* As open_written, then load the tokenizer, which must succeed. */
static struct tok_vocab *load_written(struct gguf_writer *w, const char *name,
                                      struct gguf_file **gf, void **mem)
{
    struct km_err err;
    struct tok_vocab *v;
    *gf = open_written(w, name, mem);
    cr_assert_eq(tok_load(*gf, &v, &err), KM_OK, "%s", err.msg);
    return v;
}

/* A tiny Gemma-like SentencePiece vocabulary: no dummy space prefix, BOS
 * added, control tokens for turns, <0xXX> byte fallback. */
static struct tok_vocab *gemma_like(struct gguf_file **gf, void **mem)
{
    const char *base[] = {"<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>",
                          "<end_of_turn>", "\xe2\x96\x81", "u", "s", "e", "r", "us",
                          "er", "user", "\n", "h", "i", "hi", "\xe2\x96\x81hi"};
    const int32_t base_type[] = {3, 3, 3, 2, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    const float base_score[] = {0, 0, 0, 0, 0, 0, -9, -9, -9, -9, -9, -1, -2, -3, -9, -9, -9, -4, -5};
    enum { NB = 19, N = NB + 256 };
    static char bytes[256][8];
    const char *toks[N];
    int32_t types[N];
    float scores[N];
    for (int i = 0; i < NB; i++) {
        toks[i] = base[i];
        types[i] = base_type[i];
        scores[i] = base_score[i];
    }
    for (int b = 0; b < 256; b++) {
        snprintf(bytes[b], sizeof(bytes[b]), "<0x%02X>", b);
        toks[NB + b] = bytes[b];
        types[NB + b] = 6;
        scores[NB + b] = 0;
    }
    struct gguf_writer *w;
    struct km_err err;
    cr_assert_eq(gguf_writer_new(&w, &err), KM_OK);
    cr_assert_eq(gguf_writer_add_str(w, "general.architecture", "gemma3", &err), KM_OK);
    cr_assert_eq(gguf_writer_add_str(w, "tokenizer.ggml.model", "llama", &err), KM_OK);
    cr_assert_eq(gguf_writer_add_str(w, "tokenizer.ggml.pre", "default", &err), KM_OK);
    cr_assert_eq(gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", toks, NULL, N, &err), KM_OK);
    cr_assert_eq(gguf_writer_add_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, scores, N, &err), KM_OK);
    cr_assert_eq(gguf_writer_add_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types, N, &err), KM_OK);
    cr_assert_eq(gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", 2, &err), KM_OK);
    cr_assert_eq(gguf_writer_add_u32(w, "tokenizer.ggml.eos_token_id", 1, &err), KM_OK);
    cr_assert_eq(gguf_writer_add_u32(w, "tokenizer.ggml.unknown_token_id", 3, &err), KM_OK);
    cr_assert_eq(gguf_writer_add_u32(w, "tokenizer.ggml.padding_token_id", 0, &err), KM_OK);
    cr_assert_eq(gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", true, &err), KM_OK);
    cr_assert_eq(gguf_writer_add_bool(w, "tokenizer.ggml.add_space_prefix", false, &err), KM_OK);
    cr_assert_eq(gguf_writer_add_str(w, "tokenizer.chat_template",
                                     "{{ bos_token }}{{ '<start_of_turn>' + role }}", &err), KM_OK);
    return load_written(w, "gemma-like", gf, mem);
}

static void expect_ids(const struct tok_vocab *v, const char *text, size_t len,
                       bool add_special, bool parse_special, const int32_t *want,
                       size_t n_want)
{
    int32_t *ids;
    size_t n;
    struct km_err err;
    cr_assert_eq(tok_encode(v, text, len, add_special, parse_special, &ids, &n, &err), KM_OK,
                 "%s", err.msg);
    cr_assert_eq(n, n_want, "\"%s\": %zu ids, want %zu", text, n, n_want);
    for (size_t i = 0; i < n; i++)
        cr_expect_eq(ids[i], want[i], "\"%s\" id %zu: %d want %d", text, i, ids[i], want[i]);
    km_free(ids);
}

Test(tok, gemma_spm_special_tokens_and_eog)
{
    struct gguf_file *gf;
    void *mem;
    struct tok_vocab *v = gemma_like(&gf, &mem);
    const char *p = "<start_of_turn>user\nhi<end_of_turn>\n";
    const int32_t want[] = {2, 4, 13, 14, 17, 5, 14};
    expect_ids(v, p, strlen(p), true, true, want, 7);
    /* without parse_special the markers are plain text: bytes, no id 4/5 */
    int32_t *ids;
    size_t n;
    struct km_err err;
    cr_assert_eq(tok_encode(v, p, strlen(p), false, false, &ids, &n, &err), KM_OK);
    for (size_t i = 0; i < n; i++)
        cr_expect(ids[i] != 4 && ids[i] != 5, "control token %d matched as text", ids[i]);
    struct km_buf b;
    km_buf_init(&b, 1 << 12);
    cr_assert_eq(tok_decode(v, ids, n, false, false, &b, &err), KM_OK);
    cr_expect_str_eq(km_buf_str(&b), p);
    km_free(ids);
    /* no dummy prefix (add_space_prefix = false); ' ' -> U+2581 */
    const int32_t want_sp[] = {18};
    expect_ids(v, " hi", 3, false, false, want_sp, 1);
    /* emoji: byte fallback <0xF0><0x9F><0x98><0x80> */
    const int32_t want_emoji[] = {19 + 0xF0, 19 + 0x9F, 19 + 0x98, 19 + 0x80};
    expect_ids(v, "\xf0\x9f\x98\x80", 4, false, false, want_emoji, 4);
    cr_expect(tok_is_eog(v, 5), "<end_of_turn> must stop generation");
    cr_expect(tok_is_eog(v, 1), "<eos> must stop generation");
    cr_expect(!tok_is_eog(v, 2) && !tok_is_eog(v, 13) && !tok_is_eog(v, -1) && !tok_is_eog(v, 99999));
    cr_expect_eq(tok_eot(v), 5);
    cr_expect_eq(tok_bos(v), 2);
    cr_expect_eq(tok_eos(v), 1);
    cr_expect_eq(tok_pad(v), 0);
    cr_expect_eq(tok_unk(v), 3);
    cr_expect_eq(tok_n_vocab(v), 19 + 256);
    cr_expect_eq(tok_model(v), TOK_MODEL_SPM);
    cr_expect(tok_add_bos(v) && !tok_add_eos(v) && !tok_add_space_prefix(v));
    cr_expect_eq(tok_attr(v, 4), TOK_ATTR_CONTROL);
    cr_expect_eq(tok_attr(v, 5), TOK_ATTR_CONTROL | TOK_ATTR_EOG);
    cr_expect_eq(tok_attr(v, 19), TOK_ATTR_BYTE);
    cr_expect_str_eq(tok_chat_template(v), "{{ bos_token }}{{ '<start_of_turn>' + role }}");
    /* special text is rendered only when asked */
    const int32_t turn[] = {2, 4, 13, 14, 17, 5};
    km_buf_reset(&b);
    cr_assert_eq(tok_decode(v, turn, 6, false, true, &b, &err), KM_OK);
    cr_expect_str_eq(km_buf_str(&b), "<bos><start_of_turn>user\nhi<end_of_turn>");
    km_buf_reset(&b);
    cr_assert_eq(tok_decode(v, turn, 6, false, false, &b, &err), KM_OK);
    cr_expect_str_eq(km_buf_str(&b), "user\nhi");
    km_buf_free(&b);
    tok_free(v);
    gguf_close(gf);
    km_free(mem);
}

/* Feed ids one at a time; every chunk must be valid UTF-8 on its own. */
static void stream_all(struct tok_stream *s, const int32_t *ids, size_t n,
                       struct km_buf *all, const char **chunks, size_t *lens)
{
    struct km_err err;
    for (size_t i = 0; i < n; i++) {
        const char *t;
        size_t len;
        cr_assert_eq(tok_stream_feed(s, ids[i], &t, &len, &err), KM_OK, "%s", err.msg);
        chunks[i] = t;
        lens[i] = len;
        for (size_t off = 0; off < len;) {
            cr_assert_neq(((unsigned char)t[off] & 0xC0), 0x80, "chunk %zu starts mid-character", i);
            size_t need = (unsigned char)t[off] < 0x80 ? 1 : (unsigned char)t[off] < 0xE0 ? 2
                        : (unsigned char)t[off] < 0xF0 ? 3 : 4;
            cr_assert_leq(off + need, len, "chunk %zu ends inside a character", i);
            off += need;
        }
        km_buf_append(all, t, len);
    }
}

Test(tok, stream_never_splits_utf8)
{
    struct gguf_file *gf;
    void *mem;
    struct tok_vocab *v = gemma_like(&gf, &mem);
    const char *text = "hi\xf0\x9f\x98\x80\xe4\xb8\xad hi";  /* hi😀中 hi */
    int32_t *ids;
    size_t n;
    struct km_err err;
    cr_assert_eq(tok_encode(v, text, strlen(text), false, false, &ids, &n, &err), KM_OK);
    cr_assert_eq(n, 1 + 4 + 3 + 1);
    struct tok_stream s;
    struct km_buf all;
    const char *chunks[16];
    size_t lens[16];
    km_buf_init(&all, 1 << 12);
    tok_stream_init(&s, v, false);
    stream_all(&s, ids, n, &all, chunks, lens);
    size_t want_lens[] = {2, 0, 0, 0, 4, 0, 0, 3, 3};
    for (size_t i = 0; i < n; i++)
        cr_expect_eq(lens[i], want_lens[i], "chunk %zu has %zu bytes, want %zu", i, lens[i], want_lens[i]);
    const char *t;
    size_t len;
    tok_stream_flush(&s, &t, &len);
    cr_expect_eq(len, 0);
    cr_expect_str_eq(km_buf_str(&all), text);
    /* a broken sequence: lead byte E4 then 'h' -> U+FFFD then "h"; a stray
     * continuation byte -> U+FFFD; a held tail at the end -> U+FFFD */
    const int32_t bad[] = {19 + 0xE4, 15, 19 + 0x80, 19 + 0xF0, 19 + 0x9F};
    km_buf_reset(&all);
    stream_all(&s, bad, 5, &all, chunks, lens);
    tok_stream_flush(&s, &t, &len);
    km_buf_append(&all, t, len);
    cr_expect_str_eq(km_buf_str(&all), "\xef\xbf\xbdh\xef\xbf\xbd\xef\xbf\xbd");
    cr_expect_eq(tok_stream_feed(&s, 100000, &t, &len, &err), KM_ERANGE);
    cr_expect_str_eq(err.msg, "tokenizer: token id 100000 is out of range (vocabulary has 275)");
    tok_stream_free(&s);
    km_buf_free(&all);
    km_free(ids);
    tok_free(v);
    gguf_close(gf);
    km_free(mem);
}

/* tok_utf8_lossy (whole-sequence /detokenize) gives what the stream gives */
Test(tok, utf8_lossy_matches_stream)
{
    struct gguf_file *gf;
    void *mem;
    struct tok_vocab *v = gemma_like(&gf, &mem);
    const int32_t bad[] = {19 + 0xE4, 15, 19 + 0x80, 19 + 0xF0, 19 + 0x9F};
    struct km_buf b;
    struct km_err err;
    km_buf_init(&b, 64);
    cr_assert_eq(tok_decode(v, bad, 5, false, false, &b, &err), KM_OK);
    cr_assert_eq(b.len, 5);
    cr_assert_eq(tok_utf8_lossy(&b, &err), KM_OK);
    cr_expect_str_eq(km_buf_str(&b), "\xef\xbf\xbdh\xef\xbf\xbd\xef\xbf\xbd");
    /* three lead bytes: two broken characters and an incomplete tail */
    km_buf_reset(&b);
    cr_assert_eq(km_buf_append(&b, "\xe2\xe2\xe2", 3), KM_OK);
    cr_assert_eq(tok_utf8_lossy(&b, &err), KM_OK);
    cr_expect_str_eq(km_buf_str(&b), "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
    /* valid text and the empty buffer are left as they are */
    km_buf_reset(&b);
    cr_assert_eq(km_buf_append(&b, "hi\xe4\xb8\xad", 5), KM_OK);
    char *before = b.data;
    cr_assert_eq(tok_utf8_lossy(&b, &err), KM_OK);
    cr_expect_eq(b.data, before);
    cr_expect_str_eq(km_buf_str(&b), "hi\xe4\xb8\xad");
    km_buf_free(&b);
    km_buf_init(&b, 0);
    cr_expect_eq(tok_utf8_lossy(&b, &err), KM_OK);
    cr_expect_eq(b.len, 0);
    tok_free(v);
    gguf_close(gf);
    km_free(mem);
}

Test(tok, gpt2_special_and_bos)
{
    struct gguf_file *gf;
    struct tok_vocab *v = load("ggml-vocab-gpt-2.gguf", &gf);
    const int32_t want[] = {64, 50256, 65};
    expect_ids(v, "a<|endoftext|>b", 15, false, true, want, 3);
    int32_t *ids;
    size_t n;
    struct km_err err;
    cr_assert_eq(tok_encode(v, "a<|endoftext|>b", 15, false, false, &ids, &n, &err), KM_OK);
    cr_expect_gt(n, 3);
    for (size_t i = 0; i < n; i++)
        cr_expect_neq(ids[i], 50256);
    km_free(ids);
    cr_expect(tok_is_eog(v, 50256));
    cr_expect_eq(tok_pre(v), TOK_PRE_GPT2);
    cr_expect_eq(tok_find(v, "<|endoftext|>", 13), 50256);
    cr_expect_eq(tok_find(v, "no-such-token-xyz", 17), TOK_NULL);
    tok_free(v);
    gguf_close(gf);
}

Test(tok, spm_special_bos_and_prefix)
{
    struct gguf_file *gf;
    struct tok_vocab *v = load("ggml-vocab-llama-spm.gguf", &gf);
    /* <s> and </s> are control tokens; the fragment after <s> gets the
     * dummy space prefix, as llama.cpp does */
    const int32_t want[] = {1, 15043, 2};
    expect_ids(v, "<s>Hello</s>", 12, false, true, want, 3);
    const int32_t want_bos[] = {1, 15043, 3186};
    expect_ids(v, "Hello world", 11, true, false, want_bos, 3);
    struct km_buf b;
    struct km_err err;
    km_buf_init(&b, 1 << 12);
    cr_assert_eq(tok_decode(v, want_bos, 3, true, false, &b, &err), KM_OK);
    cr_expect_str_eq(km_buf_str(&b), " Hello world");
    km_buf_reset(&b);
    cr_assert_eq(tok_decode(v, want_bos + 1, 2, false, false, &b, &err), KM_OK);
    cr_expect_str_eq(km_buf_str(&b), "Hello world");
    km_buf_free(&b);
    tok_free(v);
    gguf_close(gf);
}

/* ---- pre-tokenizers ----------------------------------------------------- */

/* Split UTF-8 text with a pre-tokenizer; returns the words joined by '|'. */
static void split_words(const char *text, int mode, char *out, size_t cap)
{
    uint32_t cps[256];
    size_t ends[256], tmp[256], n = 0, len = strlen(text);
    for (size_t off = 0; off < len; n++) {
        size_t k;
        cps[n] = uni_decode(text + off, len - off, &k);
        off += k;
    }
    size_t nw = mode == TOK_PRE_LLAMA3 ? tok__split_llama3(cps, n, ends)
              : mode == TOK_PRE_GPT2 ? tok__split_gpt2(cps, n, ends)
              : tok__split_default(cps, n, ends, tmp);
    size_t o = 0, start = 0;
    for (size_t w = 0; w < nw; w++) {
        if (w > 0)
            out[o++] = '|';
        for (size_t i = start; i < ends[w]; i++)
            o += uni_encode(cps[i], out + o);
        start = ends[w];
    }
    cr_assert_lt(o, cap);
    out[o] = '\0';
}

struct split_case {
    const char *in, *want;
};

static void expect_splits(int mode, const char *name, const struct split_case *cases, size_t n)
{
    char got[512];
    for (size_t i = 0; i < n; i++) {
        split_words(cases[i].in, mode, got, sizeof(got));
        cr_expect_str_eq(got, cases[i].want, "%s case %zu", name, i);
    }
}

Test(tok, pretokenizer_llama3_rules)
{
    static const struct split_case cases[] = {
        {"Hello world", "Hello| world"},
        {"ied 4 \xc2\xbd months", "ied| |4| |\xc2\xbd| months"},
        {"I'M here, you'll see", "I|'M| here|,| you|'ll| see"},
        {"12345 678", "123|45| |678"},
        {"a  b", "a| | b"},
        {"x\n\n y", "x|\n\n| y"},
        {"!!\n\nok", "!!\n\n|ok"},
        {"end   ", "end|   "},
        {"\t\n", "\t\n"},
        {"(hi)", "(hi|)"},
    };
    expect_splits(TOK_PRE_LLAMA3, "llama3", cases, sizeof(cases) / sizeof(cases[0]));
}

Test(tok, pretokenizer_gpt2_rules)
{
    static const struct split_case cases[] = {
        {"Hello world", "Hello| world"},
        {"I'M here, you'll see", "I|'|M| here|,| you|'ll| see"},
        {"12345 678", "12345| 678"},
        {"a  b", "a| | b"},
        {"x\n\n y", "x|\n\n| y"},
        {"!!\n\nok", "!!|\n|\n|ok"},
        {"end   ", "end|   "},
        {"(hi)", "(|hi|)"},
    };
    expect_splits(TOK_PRE_GPT2, "gpt-2", cases, sizeof(cases) / sizeof(cases[0]));
}

Test(tok, pretokenizer_default_rules)
{
    static const struct split_case cases[] = {
        {"Hello, world!!", "Hello|,| world|!!"},
        {"a $12345.6", "a| |$|123|45|.|6"},
        {"x1\xc2\xbd" "234y", "x|1\xc2\xbd|234|y"},
        {"it's <ok>", "it|'|s| |<|ok|>"},
        {"a  b\n\n c", "a| | b|\n\n| c"},
    };
    expect_splits(TOK_PRE_DEFAULT, "default", cases, sizeof(cases) / sizeof(cases[0]));
}

/* ---- hostile input ------------------------------------------------------ */

/* Random valid UTF-8 (ASCII, spaces, Latin, Cyrillic, CJK, emoji, Khmer)
 * must decode back to itself exactly. */
static void random_roundtrip(const struct tok_vocab *v, const char *name, unsigned *x)
{
    static const uint32_t pool[] = {' ', ' ', 'a', 'Z', '7', '\n', '\t', '\'', '.',
                                    0xE9, 0x416, 0x4E2D, 0x1F600, 0x1780, 0x3000};
    char text[4096];
    size_t tl = 0, n;
    int32_t *ids;
    struct km_err err;
    struct km_buf b;
    while (tl < sizeof(text) - 4) {
        *x = *x * 1103515245u + 12345u;
        tl += uni_encode(pool[(*x >> 16) % 15], text + tl);
    }
    cr_assert_eq(tok_encode(v, text, tl, false, false, &ids, &n, &err), KM_OK);
    km_buf_init(&b, 1 << 16);
    cr_assert_eq(tok_decode(v, ids, n, false, false, &b, &err), KM_OK);
    cr_expect(b.len == tl && memcmp(b.data, text, tl) == 0, "%s: random text round trip", name);
    km_buf_free(&b);
    km_free(ids);
}

Test(tok, hostile_input_never_crashes)
{
    static const char *names[] = {"ggml-vocab-gpt-2.gguf", "ggml-vocab-llama-spm.gguf",
                                  "ggml-vocab-bert-bge.gguf"};
    size_t big = 256 * 1024;
    char *junk = malloc(big);
    unsigned x = 12345;
    for (size_t i = 0; i < big; i++) {
        x = x * 1103515245u + 12345u;
        junk[i] = (char)(x >> 16);
    }
    for (size_t k = 0; k < 3; k++) {
        struct gguf_file *gf;
        struct tok_vocab *v = load(names[k], &gf);
        int32_t *ids;
        size_t n;
        struct km_err err;
        long live = km_mem_live();
        cr_assert_eq(tok_encode(v, junk, big, true, true, &ids, &n, &err), KM_OK, "%s: %s", names[k], err.msg);
        cr_expect_gt(n, 0);
        struct km_buf b;
        km_buf_init(&b, 8u << 20);
        cr_assert_eq(tok_decode(v, ids, n, false, true, &b, &err), KM_OK, "%s", err.msg);
        km_free(ids);
        if (k < 2) /* BPE and SPM */
            random_roundtrip(v, names[k], &x);
        km_buf_free(&b);
        /* empty text */
        cr_assert_eq(tok_encode(v, "", 0, false, true, &ids, &n, &err), KM_OK);
        cr_expect_eq(n, 0);
        cr_expect_null(ids);
        /* too long: refused before reading */
        cr_expect_eq(tok_encode(v, "x", TOK_MAX_TEXT + 1, false, false, &ids, &n, &err), KM_ERANGE);
        /* ids out of range */
        const int32_t bad[] = {5, -1};
        km_buf_init(&b, 1 << 10);
        cr_expect_eq(tok_decode(v, bad, 2, false, false, &b, &err), KM_ERANGE);
        cr_expect(strstr(err.msg, "ids[1]: tokenizer: token id -1 is out of range") == err.msg, "%s", err.msg);
        cr_expect_eq(b.len, 0, "decode must not leave partial text");
        cr_expect_eq(tok_piece(v, tok_n_vocab(v), false, &b, &err), KM_ERANGE);
        cr_expect_null(tok_text(v, -5, NULL));
        cr_expect_eq(tok_attr(v, tok_n_vocab(v)), 0);
        km_buf_free(&b);
        cr_expect_eq(km_mem_live(), live, "%s leaks", names[k]);
        tok_free(v);
        gguf_close(gf);
    }
    free(junk);
}

Test(tok, invalid_utf8_defined_replacement)
{
    struct gguf_file *gf;
    struct tok_vocab *v = load("ggml-vocab-gpt-2.gguf", &gf);
    int32_t *ids;
    size_t n;
    struct km_err err;
    const char *t = "a\xff" "b\xc3";
    cr_assert_eq(tok_encode(v, t, 4, false, false, &ids, &n, &err), KM_OK);
    struct km_buf b;
    km_buf_init(&b, 1 << 10);
    cr_assert_eq(tok_decode(v, ids, n, false, false, &b, &err), KM_OK);
    cr_expect_str_eq(km_buf_str(&b), "a\xef\xbf\xbd" "b\xef\xbf\xbd");
    km_buf_free(&b);
    km_free(ids);
    tok_free(v);
    gguf_close(gf);
    /* WordPiece drops invalid bytes like U+FFFD: "a\xff b" == "a b" */
    v = load("ggml-vocab-bert-bge.gguf", &gf);
    int32_t *ids2;
    size_t n2;
    cr_assert_eq(tok_encode(v, "a\xff b", 4, false, false, &ids, &n, &err), KM_OK);
    cr_assert_eq(tok_encode(v, "a b", 3, false, false, &ids2, &n2, &err), KM_OK);
    cr_assert_eq(n, n2);
    cr_expect(memcmp(ids, ids2, n * sizeof(*ids)) == 0);
    km_free(ids);
    km_free(ids2);
    /* [CLS] ... [SEP] with add_special */
    const int32_t want[] = {101, 7592, 2088, 102};
    expect_ids(v, "Hello World", 11, true, false, want, 4);
    tok_free(v);
    gguf_close(gf);
}

/* Loading the tokenizer of w (freed here) fails with rc and message msg. */
static void expect_load_error(struct gguf_writer *w, const char *name, int rc, const char *msg)
{
    void *mem;
    struct km_err err;
    struct tok_vocab *v;
    struct gguf_file *gf = open_written(w, name, &mem);
    cr_expect_eq(tok_load(gf, &v, &err), rc);
    cr_expect_str_eq(err.msg, msg);
    gguf_close(gf);
    km_free(mem);
}

Test(tok, load_errors_name_the_key)
{
    struct gguf_writer *w;
    struct km_err err;
    const char *toks[] = {"a", "b", "ab"};
    const char *merges[] = {"ab"};
    cr_assert_eq(gguf_writer_new(&w, &err), KM_OK);
    gguf_writer_add_str(w, "tokenizer.ggml.model", "t5", &err);
    gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", toks, NULL, 3, &err);
    expect_load_error(w, "t5", KM_EUNSUPPORTED,
                      "tokenizer: tokenizer.ggml.model \"t5\" is not supported (llama, gpt2, bert are)");

    cr_assert_eq(gguf_writer_new(&w, &err), KM_OK);
    gguf_writer_add_str(w, "tokenizer.ggml.model", "gpt2", &err);
    gguf_writer_add_str(w, "tokenizer.ggml.pre", "llama-bpe", &err);
    gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", toks, NULL, 3, &err);
    gguf_writer_add_arr_str(w, "tokenizer.ggml.merges", merges, NULL, 1, &err);
    expect_load_error(w, "bpe", KM_EFORMAT,
                      "tokenizer: merge 0 (\"ab\") has no space separating two tokens");

    int32_t types[2] = {1, 1};
    cr_assert_eq(gguf_writer_new(&w, &err), KM_OK);
    gguf_writer_add_str(w, "tokenizer.ggml.model", "llama", &err);
    gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", toks, NULL, 3, &err);
    gguf_writer_add_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types, 2, &err);
    expect_load_error(w, "spm", KM_EFORMAT,
                      "tokenizer: key tokenizer.ggml.token_type has 2 entries but tokenizer.ggml.tokens has 3");
}

/* Llama 3 style BPE end to end on a tiny vocabulary: ignore_merges emits a
 * whole-word token even when the merges could not build it. */
Test(tok, llama3_bpe_ignore_merges)
{
    /* byte alphabet entries needed: 'a' 'b' 'c' and U+0120 (space) */
    const char *toks[] = {"a", "b", "c", "\xc4\xa0", "ab", "abc", "\xc4\xa0" "c", "<|eot_id|>"};
    const char *merges[] = {"a b", "\xc4\xa0 c"};
    int32_t types[] = {1, 1, 1, 1, 1, 1, 1, 3};
    struct gguf_writer *w;
    struct km_err err;
    void *mem;
    struct gguf_file *gf;
    cr_assert_eq(gguf_writer_new(&w, &err), KM_OK);
    gguf_writer_add_str(w, "tokenizer.ggml.model", "gpt2", &err);
    gguf_writer_add_str(w, "tokenizer.ggml.pre", "llama-bpe", &err);
    gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", toks, NULL, 8, &err);
    gguf_writer_add_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types, 8, &err);
    gguf_writer_add_arr_str(w, "tokenizer.ggml.merges", merges, NULL, 2, &err);
    gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", 0, &err);
    struct tok_vocab *v = load_written(w, "l3", &gf, &mem);
    cr_expect_eq(tok_pre(v), TOK_PRE_LLAMA3);
    cr_expect(tok_add_bos(v), "llama-bpe adds BOS by default");
    /* "abc" is a token although no merge builds it from "ab"+"c" */
    const int32_t want[] = {0, 5, 6, 7, 4};
    expect_ids(v, "abc c<|eot_id|>ab", 17, true, true, want, 5);
    cr_expect(tok_is_eog(v, 7));
    cr_expect_eq(tok_eot(v), 7);
    tok_free(v);
    gguf_close(gf);
    km_free(mem);
}

/* ---- unicode tables ----------------------------------------------------- */

Test(tok, unicode_classes_and_maps)
{
    cr_expect_eq(uni_flags('a'), UNI_LETTER);
    cr_expect_eq(uni_flags(' '), UNI_SEPARATOR | UNI_WHITESPACE);
    cr_expect_eq(uni_flags('$'), UNI_SYMBOL);
    cr_expect_eq(uni_flags('!'), UNI_PUNCT);
    cr_expect_eq(uni_flags(0xBD), UNI_NUMBER);                     /* ½ */
    cr_expect_eq(uni_flags(0x4E2D), UNI_LETTER);                   /* 中 */
    cr_expect_eq(uni_flags(0x3000), UNI_SEPARATOR | UNI_WHITESPACE);
    cr_expect_eq(uni_flags(0x85), UNI_CONTROL | UNI_WHITESPACE);
    cr_expect_eq(uni_flags(0x301), UNI_MARK);
    cr_expect_eq(uni_flags(0x1F600), UNI_SYMBOL);                  /* 😀 */
    cr_expect_eq(uni_flags(0x0378), UNI_UNDEFINED);
    cr_expect_eq(uni_flags(0x110000), 0);
    cr_expect_eq(uni_tolower('Q'), 'q');
    cr_expect_eq(uni_tolower(0xC4), 0xE4);                          /* Ä -> ä */
    cr_expect_eq(uni_tolower(0x416), 0x436);                        /* Ж -> ж */
    cr_expect_eq(uni_nfd_first(0xFC), 'u');                         /* ü */
    cr_expect_eq(uni_nfd_first(0x1E09), 'c');                       /* ḉ, two levels */
    cr_expect_eq(uni_nfd_first(0xD55C), 0x1112);                    /* 한 -> ᄒ */
    cr_expect_eq(uni_nfd_first('x'), 'x');
    size_t n;
    cr_expect_eq(uni_decode("\xe2\x96\x81", 3, &n), 0x2581);
    cr_expect_eq(n, 3);
    cr_expect_eq(uni_decode("\xe2\x96", 2, &n), UNI_BAD);
    cr_expect_eq(n, 1);
    cr_expect_eq(uni_decode("\x80", 1, &n), UNI_BAD);
    cr_expect_eq(uni_valid_len((const unsigned char *)"\xed\xa0\x80", 3), -1); /* surrogate */
    cr_expect_eq(uni_valid_len((const unsigned char *)"\xc0\x80", 2), -1);     /* overlong */
    cr_expect_eq(uni_valid_len((const unsigned char *)"\xf0\x9f", 2), 0);      /* incomplete */
    char u8[4];
    cr_expect_eq(uni_encode(0x1F600, u8), 4);
    cr_expect(memcmp(u8, "\xf0\x9f\x98\x80", 4) == 0);
    cr_expect_eq(uni_encode(0x110000, u8), 3);                      /* -> U+FFFD */
    for (int b = 0; b < 256; b++)                                   /* GPT-2 byte map */
        cr_expect_eq(tok__cp_to_byte(tok__byte_to_cp((unsigned char)b)), b);
    cr_expect_eq(tok__byte_to_cp(' '), 0x120);
    cr_expect_eq(tok__byte_to_cp('\n'), 0x10A);
    cr_expect_eq(tok__byte_to_cp(0xAD), 0x143);
}

/* Every allocation of load, encode and decode may fail: the result is then
 * KM_ENOMEM with nothing leaked, never a crash. */
Test(tok, out_of_memory_is_an_error)
{
    char path[1024];
    struct gguf_file *gf;
    struct km_err err;
    data_path(path, sizeof(path), "ggml-vocab-gpt-2.gguf");
    cr_assert_eq(gguf_open(path, &gf, &err), KM_OK);
    long live = km_mem_live();
    int ok = 0;
    for (long i = 0; i < 40 && !ok; i++) {
        struct tok_vocab *v = NULL;
        km_mem_fail_after(i);
        int rc = tok_load(gf, &v, &err);
        km_mem_fail_after(-1);
        cr_assert(rc == KM_OK || rc == KM_ENOMEM, "alloc %ld: rc %d %s", i, rc, err.msg);
        ok = rc == KM_OK;
        if (!ok)
            cr_expect_eq(km_mem_live(), live, "alloc %ld: tok_load leaks", i);
        if (!ok)
            continue;
        const char *text = "Hello, world! \xf0\x9f\x98\x80 <|endoftext|>";
        for (long j = 0; j < 40; j++) {
            int32_t *ids = NULL;
            size_t n;
            long before = km_mem_live();
            km_mem_fail_after(j);
            rc = tok_encode(v, text, strlen(text), true, true, &ids, &n, &err);
            km_mem_fail_after(-1);
            cr_assert(rc == KM_OK || rc == KM_ENOMEM, "encode alloc %ld: rc %d", j, rc);
            if (rc == KM_OK) {
                km_free(ids);
                break;
            }
            cr_expect_eq(km_mem_live(), before, "encode alloc %ld leaks", j);
        }
        tok_free(v);
    }
    cr_expect(ok, "tok_load never succeeded");
    cr_expect_eq(km_mem_live(), live);
    gguf_close(gf);
}

/* An unknown BPE pre-tokenizer falls back to llama.cpp's default set (with
 * a warning on stderr), a missing one is the default set too. */
Test(tok, unknown_pre_falls_back_to_default)
{
    const char *toks[] = {"a", "b", "ab"};
    const char *merges[] = {"a b"};
    const char *pres[] = {"qwen2", NULL};
    for (int k = 0; k < 2; k++) {
        struct gguf_writer *w;
        struct km_err err;
        void *mem;
        struct gguf_file *gf;
        cr_assert_eq(gguf_writer_new(&w, &err), KM_OK);
        gguf_writer_add_str(w, "tokenizer.ggml.model", "gpt2", &err);
        if (pres[k])
            gguf_writer_add_str(w, "tokenizer.ggml.pre", pres[k], &err);
        gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", toks, NULL, 3, &err);
        gguf_writer_add_arr_str(w, "tokenizer.ggml.merges", merges, NULL, 1, &err);
        struct tok_vocab *v = load_written(w, "pre", &gf, &mem);
        cr_expect_eq(tok_pre(v), TOK_PRE_DEFAULT);
        cr_expect(!tok_add_bos(v));
        const int32_t want[] = {2, 0};
        expect_ids(v, "aba", 3, true, false, want, 2);
        tok_free(v);
        gguf_close(gf);
        km_free(mem);
    }
}

/* SentencePiece byte fallback with neither a <0xXX> token nor a valid
 * unknown token (unknown_token_id out of range) is an error naming the byte,
 * never a token id of -1 handed to the engine. */
Test(tok, spm_byte_fallback_without_unknown_token_fails)
{
    const char *toks[] = {"a", "b", "ab", "\xe2\x96\x81"};
    struct gguf_writer *w;
    struct km_err err;
    void *mem;
    struct gguf_file *gf;
    int32_t *ids = NULL;
    size_t n = 0;
    cr_assert_eq(gguf_writer_new(&w, &err), KM_OK);
    gguf_writer_add_str(w, "tokenizer.ggml.model", "llama", &err);
    gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", toks, NULL, 4, &err);
    gguf_writer_add_u32(w, "tokenizer.ggml.unknown_token_id", 99, &err);
    gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", false, &err);
    struct tok_vocab *v = load_written(w, "spm-no-unk", &gf, &mem);
    cr_assert_eq(tok_encode(v, "ab", 2, false, false, &ids, &n, &err), KM_OK, "%s", err.msg);
    cr_expect_eq(n, 2); /* "▁" "ab" */
    cr_expect_eq(ids[0], 3);
    cr_expect_eq(ids[1], 2);
    km_free(ids);
    ids = NULL;
    cr_expect_eq(tok_encode(v, "az", 2, false, false, &ids, &n, &err), KM_EFORMAT);
    cr_expect_str_eq(err.msg, "tokenizer: byte 0x7A has no <0x7A> token and the "
                     "vocabulary has no unknown token");
    cr_expect_null(ids);
    tok_free(v);
    gguf_close(gf);
    km_free(mem);
}
