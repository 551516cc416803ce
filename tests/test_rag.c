/* test_rag.c - rag/ pure units: binary COPY bytes, chunker, token estimate,
 * RRF math and fusion, the binary query vector, filter parsing, hits JSON,
 * the hash embedder. (The database paths are
 * covered by tests/rag/run.sh against a real cluster.) */
#include "base/mem.h"
#include "rag/rag.h"
#include "rag/rag_int.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

TestSuite(rag, .timeout = 30);

static void assert_bytes(const struct km_buf *b, const unsigned char *want, size_t n)
{
    cr_assert_eq(b->len, n, "length %zu, want %zu", b->len, n);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq((unsigned char)b->data[i], want[i], "byte %zu: 0x%02x, want 0x%02x",
                     i, (unsigned char)b->data[i], want[i]);
}

Test(rag, copy_header_and_trailer_bytes)
{
    static const unsigned char want[] = {
        'P', 'G', 'C', 'O', 'P', 'Y', '\n', 0xff, '\r', '\n', 0x00, /* signature */
        0, 0, 0, 0,                                                 /* flags */
        0, 0, 0, 0,                                                 /* extension */
        0xff, 0xff};                                                /* trailer */
    struct km_buf b;
    km_buf_init(&b, 1024);
    cr_assert_eq(rag_copy_header(&b), KM_OK);
    cr_assert_eq(b.len, 19);
    cr_assert_eq(rag_copy_trailer(&b), KM_OK);
    assert_bytes(&b, want, sizeof want);
    km_buf_free(&b);
}

Test(rag, copy_tuple_bytes)
{
    static const unsigned char want[] = {
        0x00, 0x06,                                     /* 6 fields */
        0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0x01, 0x02,        /* int8 258 */
        0, 0, 0, 4, 0xff, 0xff, 0xff, 0xfe,              /* int4 -2 */
        0, 0, 0, 2, 'a', 'b',                            /* text "ab" */
        0, 0, 0, 3, 0x01, '{', '}',                      /* jsonb {} */
        0, 0, 0, 12, 0x00, 0x02, 0x00, 0x00,             /* vector dim 2, unused 0 */
        0x3f, 0x80, 0x00, 0x00, 0xc0, 0x20, 0x00, 0x00,  /* 1.0, -2.5 */
        0xff, 0xff, 0xff, 0xff};                         /* NULL */
    struct km_buf b;
    km_buf_init(&b, 1024);
    const float v[2] = {1.0f, -2.5f};
    cr_assert_eq(rag_copy_tuple(&b, 6), KM_OK);
    cr_assert_eq(rag_copy_int8(&b, 258), KM_OK);
    cr_assert_eq(rag_copy_int4(&b, -2), KM_OK);
    cr_assert_eq(rag_copy_text(&b, "ab", 2), KM_OK);
    cr_assert_eq(rag_copy_jsonb(&b, "{}", 2), KM_OK);
    cr_assert_eq(rag_copy_vector(&b, v, 2), KM_OK);
    cr_assert_eq(rag_copy_null(&b), KM_OK);
    assert_bytes(&b, want, sizeof want);
    km_buf_free(&b);
}

Test(rag, copy_rejects_nonfinite_and_respects_max)
{
    struct km_buf b;
    km_buf_init(&b, 16);
    const float bad[2] = {1.0f, NAN};
    const float inf[1] = {INFINITY};
    cr_assert_eq(rag_copy_vector(&b, bad, 2), KM_EINVAL);
    cr_assert_eq(rag_copy_vector(&b, inf, 1), KM_EINVAL);
    cr_assert_eq(rag_copy_vector(&b, bad, 0), KM_EINVAL);
    cr_assert_eq(b.len, 0);
    const float big[4] = {1, 2, 3, 4}; /* 4+4+16 = 24 bytes > 16 */
    cr_assert_eq(rag_copy_vector(&b, big, 4), KM_ERANGE);
    cr_assert_eq(b.len, 0, "a failed append leaves the buffer as it was");
    km_buf_free(&b);
}

/* One kanoa.chunks row as ingest sends it: 9 fields, the tsv last. */
static void chunk_row(struct km_buf *b, const char *text, bool server_tsv, bool *client)
{
    static const float v[2] = {1.0f, -2.5f};
    const struct rag__chunk_row r = {.collection_id = 258, .document_id = 3,
                                     .chunk_id = "c:0001", .chunk_id_len = 6,
                                     .position = 1, .tokens = 2,
                                     .text = text, .text_len = strlen(text),
                                     .meta = "{}", .meta_len = 2, .vec = v, .dim = 2,
                                     .server_tsv = server_tsv};
    struct km_err e;
    cr_assert_eq(rag__copy_chunk(b, &r, client, &e), KM_OK);
}

static const unsigned char chunk_head[] = {
    0x00, 0x09,                                     /* 9 fields */
    0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0x01, 0x02,        /* collection_id 258 */
    0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 3,              /* document_id 3 */
    0, 0, 0, 6, 'c', ':', '0', '0', '0', '1',        /* chunk_id */
    0, 0, 0, 4, 0, 0, 0, 1,                          /* position 1 */
    0, 0, 0, 4, 0, 0, 0, 2,                          /* token_count 2 */
};

Test(rag, copy_chunk_tsv_from_the_client_or_null)
{
    /* "Cats" -> 'cat':1: count 1, "cat" NUL, 1 position, position 1 */
    static const unsigned char tsv[] = {0, 0, 0, 12, 0, 0, 0, 1, 'c', 'a', 't', 0, 0, 1, 0, 1};
    static const unsigned char tail[] = {
        0, 0, 0, 3, 0x01, '{', '}',                      /* metadata {} */
        0, 0, 0, 12, 0x00, 0x02, 0x00, 0x00,             /* vector dim 2 */
        0x3f, 0x80, 0x00, 0x00, 0xc0, 0x20, 0x00, 0x00};
    unsigned char want[256];
    size_t n = 0;
    memcpy(want, chunk_head, sizeof chunk_head);
    n += sizeof chunk_head;
    memcpy(want + n, (const unsigned char[]){0, 0, 0, 4, 'C', 'a', 't', 's'}, 8);
    n += 8;
    memcpy(want + n, tail, sizeof tail);
    n += sizeof tail;
    struct km_buf b;
    km_buf_init(&b, 4096);
    bool client = true;
    chunk_row(&b, "Cats", true, &client);   /* asked to leave it to the server */
    cr_assert_not(client);
    memcpy(want + n, (const unsigned char[]){0xff, 0xff, 0xff, 0xff}, 4);
    assert_bytes(&b, want, n + 4);
    km_buf_reset(&b);
    chunk_row(&b, "Cats", false, &client);  /* the client's tsvector */
    cr_assert(client, "tsv.c handles a plain ASCII word");
    memcpy(want + n, tsv, sizeof tsv);
    assert_bytes(&b, want, n + sizeof tsv);
    km_buf_free(&b);
}

Test(rag, copy_chunk_null_tsv_for_a_text_left_to_the_server)
{
    struct km_buf b;
    km_buf_init(&b, 4096);
    bool client = true;
    chunk_row(&b, "caf\xc3\xa9", false, &client); /* non-ASCII: the server's */
    cr_assert_not(client);
    cr_assert_eq(b.len, sizeof chunk_head + 4 + 5 + 7 + 16 + 4);
    cr_assert_eq(memcmp(b.data + b.len - 4, "\xff\xff\xff\xff", 4), 0, "tsv is NULL");
    cr_assert_eq(b.data[b.len], '\0');
    km_buf_free(&b);
}

Test(rag, copy_chunk_errors)
{
    struct km_buf b;
    struct km_err e;
    bool client;
    const float nan2[2] = {0.5f, NAN};
    const struct rag__chunk_row r = {.chunk_id = "c", .chunk_id_len = 1, .text = "word",
                                     .text_len = 4, .meta = "{}", .meta_len = 2,
                                     .vec = nan2, .dim = 2};
    km_buf_init(&b, 4096);
    cr_assert_eq(rag__copy_chunk(&b, &r, &client, &e), KM_EINVAL);
    km_buf_free(&b);
    const float ok2[2] = {0.5f, 0.5f};
    struct rag__chunk_row r2 = r;
    r2.vec = ok2;
    km_buf_init(&b, 85); /* room for 82 bytes up to the tsv's length, not its 13 */
    cr_assert_eq(rag__copy_chunk(&b, &r2, &client, &e), KM_ERANGE);
    cr_assert_not(client);
    km_buf_free(&b);
}

Test(rag, token_estimate_and_kinds)
{
    cr_assert_eq(rag_token_estimate("", 0), 0);
    cr_assert_eq(rag_token_estimate("a", 1), 1);
    cr_assert_eq(rag_token_estimate("abcd", 4), 1);
    cr_assert_eq(rag_token_estimate("abcde", 5), 2);
    bool pdf;
    cr_assert_eq(rag_doc_kind_for("/x/README.md", &pdf), RAG_DOC_MARKDOWN);
    cr_assert_eq(rag_doc_kind_for("a.RST", &pdf), RAG_DOC_RST);
    cr_assert_eq(rag_doc_kind_for("t.csv", &pdf), RAG_DOC_TEXT);
    cr_assert_eq(rag_doc_kind_for("main.c", &pdf), RAG_DOC_CODE);
    cr_assert_eq(rag_doc_kind_for("paper.pdf", &pdf), RAG_DOC_TEXT);
    cr_assert(pdf);
    cr_assert_eq(rag_doc_kind_for("image.png", &pdf), -1);
    cr_assert_eq(rag_doc_kind_for("dir.md/noext", &pdf), -1);
}

static const char md_doc[] =
    "# Intro\n\nAlpha beta gamma.\n\n```c\nint main(void)\n{\n\n    return 0;\n}\n```\n\n"
    "## Next\n\nOne two three four five six seven eight nine ten eleven twelve thirteen "
    "fourteen fifteen sixteen seventeen eighteen nineteen twenty.\n";

static void assert_chunk(const struct rag_chunk *c, const char *want)
{
    cr_assert_eq(c->len, strlen(want), "chunk '%.*s' != '%s'", (int)c->len, md_doc + c->off, want);
    cr_assert(memcmp(md_doc + c->off, want, c->len) == 0, "chunk '%.*s' != '%s'",
              (int)c->len, md_doc + c->off, want);
    cr_assert_eq(c->tokens, (int)((c->len + 3) / 4));
}

Test(rag, chunker_markdown_structure_and_overlap)
{
    /* 16 tokens = 64 bytes per chunk, 4 tokens = 16 bytes of overlap. */
    struct rag_chunk *c = NULL;
    size_t n = 0;
    struct km_err e;
    cr_assert_eq(rag_chunk_text(md_doc, strlen(md_doc), RAG_DOC_MARKDOWN, 16, 4, &c, &n, &e), KM_OK);
    cr_assert_eq(n, 6);
    assert_chunk(&c[0], "# Intro\n\nAlpha beta gamma.");
    /* the code block does not fit: the chunk closes, the next one starts with
     * its tail as overlap and keeps the fenced block whole (blank line too) */
    assert_chunk(&c[1], "beta gamma.\n\n```c\nint main(void)\n{\n\n    return 0;\n}\n```");
    /* a heading closes the chunk and starts fresh without overlap */
    assert_chunk(&c[2], "## Next");
    /* an over-long paragraph is cut at blanks, with overlap between pieces */
    assert_chunk(&c[3], "One two three four five six seven eight nine ten eleven twelve");
    assert_chunk(&c[4], "eleven twelve thirteen fourteen fifteen sixteen seventeen");
    assert_chunk(&c[5], "seventeen eighteen nineteen twenty.");
    km_free(c);
}

Test(rag, chunker_big_budget_sections_and_rst)
{
    struct rag_chunk *c = NULL;
    size_t n = 0;
    struct km_err e;
    cr_assert_eq(rag_chunk_text(md_doc, strlen(md_doc), RAG_DOC_MARKDOWN, 512, 64, &c, &n, &e), KM_OK);
    cr_assert_eq(n, 2, "one chunk per section when they fit");
    cr_assert(strncmp(md_doc + c[1].off, "## Next", 7) == 0);
    km_free(c);
    static const char rst[] = "Title\n=====\n\nBody one.\n\nSecond\n------\n\nBody two.\n";
    cr_assert_eq(rag_chunk_text(rst, strlen(rst), RAG_DOC_RST, 512, 0, &c, &n, &e), KM_OK);
    cr_assert_eq(n, 2);
    cr_assert_eq(c[0].len, strlen("Title\n=====\n\nBody one."));
    cr_assert_eq(c[1].off, strlen("Title\n=====\n\nBody one.\n\n"));
    km_free(c);
    cr_assert_eq(rag_chunk_text("  \n\n \n", 6, RAG_DOC_TEXT, 512, 0, &c, &n, &e), KM_OK);
    cr_assert_eq(n, 0);
    cr_assert_eq(rag_chunk_text("x", 1, RAG_DOC_TEXT, 16, 9, &c, &n, &e), KM_EINVAL);
}

Test(rag, chunker_cuts_long_words_at_utf8_boundaries)
{
    char text[601];
    for (int i = 0; i < 300; i++)
        memcpy(text + 2 * i, "\xc3\xa9", 2); /* é, no blanks at all */
    text[600] = '\0';
    struct rag_chunk *c = NULL;
    size_t n = 0;
    struct km_err e;
    long live = km_mem_live();
    cr_assert_eq(rag_chunk_text(text, 600, RAG_DOC_TEXT, 8, 0, &c, &n, &e), KM_OK);
    size_t covered = 0;
    for (size_t i = 0; i < n; i++) {
        cr_assert_leq(c[i].len, 32);
        cr_assert_eq(c[i].off % 2, 0, "chunk %zu starts inside a character", i);
        cr_assert_eq(c[i].len % 2, 0, "chunk %zu ends inside a character", i);
        cr_assert_eq(c[i].off, covered, "no gap, no overlap");
        covered += c[i].len;
    }
    cr_assert_eq(covered, 600);
    km_free(c);
    cr_assert_eq(km_mem_live(), live);
}

Test(rag, rrf_math)
{
    cr_assert_float_eq(rag_rrf(60, 1, 0), 1.0 / 61, 1e-15);
    cr_assert_float_eq(rag_rrf(60, 0, 1), 1.0 / 61, 1e-15);
    cr_assert_float_eq(rag_rrf(60, 1, 1), 2.0 / 61, 1e-15);
    cr_assert_float_eq(rag_rrf(60, 3, 5), 1.0 / 63 + 1.0 / 65, 1e-15);
    cr_assert_eq(rag_rrf(60, 0, 0), 0.0);
}

static struct rag_hit mkhit(long long row, double dist)
{
    char id[16];
    snprintf(id, sizeof id, "r%lld", row);
    return (struct rag_hit){.row = row, .text = km_strdup(id), .score = 1 - dist,
                            .distance = dist, .source_uri = km_strdup("file:///x"),
                            .chunk_id = km_strdup(id), .metadata = km_strdup("{}")};
}

Test(rag, rrf_fusion_orders_and_dedups)
{
    long live = km_mem_live();
    struct rag_hits v = {km_calloc(3, sizeof(struct rag_hit)), 3};
    struct rag_hits t = {km_calloc(2, sizeof(struct rag_hit)), 2};
    v.v[0] = mkhit(10, 0.1);
    v.v[1] = mkhit(20, 0.5);
    v.v[2] = mkhit(30, 0.6);
    t.v[0] = mkhit(30, 0.6);
    t.v[1] = mkhit(40, 0.3);
    struct rag_hits out;
    cr_assert_eq(rag__fuse(&v, &t, 3, &out), KM_OK);
    /* 30: 1/63 + 1/61; 10: 1/61; 20 and 40: 1/62 each, 40 nearer */
    cr_assert_eq(out.n, 3);
    cr_assert_eq(out.v[0].row, 30);
    cr_assert_float_eq(out.v[0].rank_score, 1.0 / 63 + 1.0 / 61, 1e-12);
    cr_assert_eq(out.v[1].row, 10);
    cr_assert_eq(out.v[2].row, 40);
    cr_assert_float_eq(out.v[2].rank_score, 1.0 / 62, 1e-12);
    cr_assert_float_eq(out.v[2].score, 0.7, 1e-12, "score stays the cosine similarity");
    rag_hits_free(&out);
    rag_hits_free(&v);
    rag_hits_free(&t);
    cr_assert_eq(km_mem_live(), live, "fusion frees what it drops");
}

Test(rag, query_vector_binary_bytes)
{
    /* pgvector's vector_recv form, as the query sends it: uint16 dim,
     * uint16 0, big-endian IEEE float4 (1.0 = 3f800000, -2.5 = c0200000,
     * 0.15625 = 3e200000) */
    static const unsigned char want[] = {0x00, 0x03, 0x00, 0x00, 0x3f, 0x80, 0x00, 0x00,
                                         0xc0, 0x20, 0x00, 0x00, 0x3e, 0x20, 0x00, 0x00};
    const float v[3] = {1.0f, -2.5f, 0.15625f};
    char *b = rag__vector_binary(v, 3);
    cr_assert_not_null(b);
    for (size_t i = 0; i < sizeof want; i++)
        cr_assert_eq((unsigned char)b[i], want[i], "byte %zu: 0x%02x, want 0x%02x", i,
                     (unsigned char)b[i], want[i]);
    km_free(b);
}

Test(rag, filter_parsing)
{
    struct rag_filter f;
    struct km_err e;
    rag_filter_init(&f);
    cr_assert_eq(rag_filter_add(&f, "lang=en", &e), KM_OK);
    cr_assert_eq(rag_filter_add(&f, "expr=a=b", &e), KM_OK);
    cr_assert_eq(rag_filter_add(&f, "empty=", &e), KM_OK);
    cr_assert_eq(rag_filter_add(&f, "k'); DROP TABLE x;--=\"v\"", &e), KM_OK);
    cr_assert_eq(rag_filter_add(&f, "lang=en", &e), KM_OK, "same pair twice is fine");
    cr_assert_str_eq(f.json, "{\"empty\":\"\",\"expr\":\"a=b\",\"k'); DROP TABLE x;--\":"
                             "\"\\\"v\\\"\",\"lang\":\"en\"}");
    cr_assert_eq(f.n, 4);
    cr_assert_eq(rag_filter_add(&f, "lang=fr", &e), KM_EINVAL);
    cr_assert_str_eq(e.msg, "filter key 'lang' given twice with different values");
    cr_assert_eq(rag_filter_add(&f, "=v", &e), KM_EINVAL);
    cr_assert_eq(rag_filter_add(&f, "novalue", &e), KM_EINVAL);
    cr_assert_str_eq(e.msg, "filter 'novalue': expected key=value");
    rag_filter_free(&f);
    enum rag_mode m;
    cr_assert_eq(rag_parse_mode("hybrid", &m), KM_OK);
    cr_assert_eq(m, RAG_MODE_HYBRID);
    cr_assert_eq(rag_parse_mode("Hybrid", &m), KM_EINVAL);
    cr_assert_str_eq(rag_mode_name(RAG_MODE_TEXT), "text");
}

Test(rag, hits_json_has_the_retriever_keys)
{
    struct rag_hits h = {km_calloc(1, sizeof(struct rag_hit)), 1};
    h.v[0] = (struct rag_hit){.row = 1, .text = km_strdup("a \"quoted\"\ntext"), .score = 0.5,
                              .source_uri = km_strdup("file:///kb/a.md"),
                              .chunk_id = km_strdup("0123456789ab:0007"),
                              .metadata = km_strdup("{\"ext\":\"md\"}")};
    char *s = NULL;
    struct km_err e;
    cr_assert_eq(rag_hits_json(&h, &s, &e), KM_OK);
    cr_assert_str_eq(s, "{\"data\":[{\"text\":\"a \\\"quoted\\\"\\ntext\",\"score\":0.5,"
                        "\"source_uri\":\"file:///kb/a.md\",\"chunk_id\":\"0123456789ab:0007\","
                        "\"metadata\":{\"ext\":\"md\"}}]}");
    km_free(s);
    rag_hits_free(&h);
    struct rag_hits empty = {0};
    cr_assert_eq(rag_hits_json(&empty, &s, &e), KM_OK);
    cr_assert_str_eq(s, "{\"data\":[]}");
    km_free(s);
}

/* What the hits JSON was before it was written directly: jansson objects
 * dumped compactly, the metadata parsed from its text. */
static char *hits_json_by_jansson(const struct rag_hits *h)
{
    json_t *data = json_array();
    for (size_t i = 0; i < h->n; i++) {
        const struct rag_hit *x = &h->v[i];
        json_t *meta = json_loads(x->metadata, 0, NULL);
        json_array_append_new(data, json_pack("{s:s, s:f, s:s, s:s, s:o}", "text", x->text,
                                              "score", x->score, "source_uri", x->source_uri,
                                              "chunk_id", x->chunk_id, "metadata",
                                              meta ? meta : json_object()));
    }
    json_t *root = json_pack("{s:o}", "data", data);
    char *s = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return s;
}

Test(rag, hits_json_is_what_jansson_wrote)
{
    static const char *const texts[] = {
        "plain", "", "ctl \x01\x02\x07\b\t\n\x0b\f\r\x0e\x1f end", "q \" b \\ s / del \x7f",
        "utf-8: \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xe2\x80\xa8 \xef\xbf\xbf"};
    static const double scores[] = {0.0, 1.0, 0.5, 0.1, 1e-5, 0.17619330741127182, 1e-20,
                                    0.999999999999, 2.5e-300};
    /* metadata as PostgreSQL's jsonb output writes it */
    static const char *const metas[] = {
        "{}", "{\"ext\": \"md\"}", "{\"a\": \"x\\u001fy\\u001a\", \"b\": [\"1\", \"2\"], "
        "\"c\": {\"d\": null, \"e\": true}, \"q\": \"\\\" \\\\ \\n\"}",
        "{\"k\": \"\xc3\xa9 \xe2\x82\xac\", \"n\": 42}", "", "not json"};
    size_t n = 9;
    struct rag_hits h = {km_calloc(n, sizeof(struct rag_hit)), n};
    for (size_t i = 0; i < n; i++)
        h.v[i] = (struct rag_hit){.row = (long long)i, .text = km_strdup(texts[i % 5]),
                                  .score = scores[i], .source_uri = km_strdup(texts[(i + 1) % 5]),
                                  .chunk_id = km_strdup(texts[(i + 2) % 5]),
                                  .metadata = km_strdup(metas[i % 6])};
    char *s = NULL, *want = hits_json_by_jansson(&h);
    struct km_err e;
    cr_assert_eq(rag_hits_json(&h, &s, &e), KM_OK);
    cr_assert_str_eq(s, want);
    km_free(s);
    free(want);
    /* invalid UTF-8 and a non-finite score are errors naming the hit */
    km_free(h.v[3].chunk_id);
    h.v[3].chunk_id = km_strdup("bad \xc3\x28 utf-8");
    cr_assert_eq(rag_hits_json(&h, &s, &e), KM_EFORMAT);
    cr_assert_str_eq(e.msg, "hit 4: a field is not valid UTF-8");
    cr_assert_null(s);
    h.v[3].chunk_id[4] = 'x';
    h.v[1].score = NAN;
    cr_assert_eq(rag_hits_json(&h, &s, &e), KM_EFORMAT);
    cr_assert_str_eq(e.msg, "hit 2 has no score (nan)");
    rag_hits_free(&h);
}

Test(rag, json_str_escapes_as_jansson)
{
    static const char *const bad[] = {"\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe2\x82",
                                      "\x80", "\xf8\x88\x80\x80\x80"};
    struct km_buf b;
    km_buf_init(&b, 1024);
    cr_assert_eq(rag_json_str(&b, "a\"b\\c\x01/\xe2\x82\xac"), KM_OK);
    cr_assert_str_eq(km_buf_str(&b), "\"a\\\"b\\\\c\\u0001/\xe2\x82\xac\"");
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        km_buf_reset(&b);
        cr_assert_eq(rag_json_str(&b, bad[i]), KM_EINVAL, "bad[%zu]", i);
    }
    km_buf_free(&b);
}

Test(rag, hash_embedder_is_deterministic_unit_and_shared)
{
    struct rag_embedder *e = NULL;
    struct km_err err;
    const char *texts[3] = {"alpha beta", "gamma", "alpha beta"};
    float *v = NULL;
    int dim = 0;
    cr_assert_eq(rag_embedder_hash(0, &e, &err), KM_EINVAL);
    cr_assert_str_eq(km_err_text(&err), "hash embeddings need 1..2000 dimensions (got 0)");
    cr_assert_eq(rag_embedder_hash(16, &e, &err), KM_OK);
    cr_assert_str_eq(rag_embedder_model(e), "hash-16");
    cr_assert_eq(rag_embedder_truncated(e), 0);
    cr_assert_eq(rag_embedder_run(e, NULL, texts, 3, &v, &dim, &err), KM_OK);
    cr_assert_eq(dim, 16);
    double n0 = 0, n1 = 0, dot = 0;
    for (int j = 0; j < 16; j++) {
        n0 += (double)v[j] * v[j];
        n1 += (double)v[16 + j] * v[16 + j];
        dot += (double)v[j] * v[16 + j];
        cr_assert_eq(v[j], v[32 + j], "equal texts, equal vectors (element %d)", j);
    }
    cr_assert(fabs(n0 - 1) < 1e-6 && fabs(n1 - 1) < 1e-6, "unit length: %g %g", n0, n1);
    cr_assert(fabs(dot) < 0.99, "different texts, different vectors");
    km_free(v);
    rag_embedder_free(e);
}

/* Found by fuzz/fuzz_chunk.c (fuzz/corpus/chunk/formfeed-page.txt). */
Test(rag, chunker_keeps_the_line_after_a_page_break)
{
    static const char text[] = "Page one has some text.\n\fPage two line\nmore";
    struct rag_chunk *c = NULL;
    size_t n = 0;
    struct km_err e;
    cr_assert_eq(rag_chunk_text(text, sizeof text - 1, RAG_DOC_TEXT, 8, 0, &c, &n, &e), KM_OK);
    cr_assert_eq(n, 2);
    cr_assert_eq(c[0].off, 0);
    cr_assert_eq(c[0].len, 23);
    cr_assert_eq(c[1].off, 25, "the page starts after the form feed");
    cr_assert_eq(c[1].len, 18, "'Page two line\\nmore' is kept whole");
    km_free(c);
}

/* Found by fuzz/fuzz_chunk.c (fuzz/corpus/chunk/overlap-repeats-chunk.c):
 * a chunk one byte longer than the overlap (before trimming) was repeated
 * whole at the start of the next one. */
Test(rag, chunker_overlap_never_repeats_a_whole_chunk)
{
    static const char text[] = "int\n}\n\n\nstatic i f(int x)\n{\n (  |eturn x? * 2;\n}"
                               "\n\n\nstatic int g;\n";
    static const size_t want[][2] = {{0, 5}, {8, 19}, {15, 31}, {32, 16}, {51, 13}};
    struct rag_chunk *c = NULL;
    size_t n = 0;
    struct km_err e;
    cr_assert_eq(rag_chunk_text(text, sizeof text - 1, RAG_DOC_CODE, 8, 4, &c, &n, &e), KM_OK);
    cr_assert_eq(n, 5);
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(c[i].off, want[i][0], "chunk %zu", i);
        cr_assert_eq(c[i].len, want[i][1], "chunk %zu", i);
    }
    km_free(c);
}
