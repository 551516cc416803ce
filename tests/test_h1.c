/* test_h1.c - the HTTP/1.1 response reader (server/h1.c): framing by
 * Content-Length, chunked coding and the close of the connection, interim
 * 1xx heads, connection reuse, the callbacks, pausing, every error, and
 * that any split of the bytes (fed as a real caller does: unconsumed bytes
 * kept, new ones appended) reads exactly what one feed of all of them
 * reads. */
#include "server/h1.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What the callbacks saw: fields as "name=value\n" and the body. The
 * on_data call number pause_next (from 1; 0: none) refuses its bytes, and
 * then the one pause_gap calls later (0: no more). */
struct rec {
    char fields[80 * 1024];
    size_t flen;
    int heads;
    int status;
    char *body;
    size_t blen, bcap;
    int data_calls;
    int pause_next;
    int pause_gap;
    int pauses;
};

static void rec_init(struct rec *c, size_t bcap)
{
    memset(c, 0, sizeof *c);
    c->bcap = bcap;
    c->body = malloc(bcap + 1);
    cr_assert_not_null(c->body);
    c->body[0] = '\0';
}

static void rec_free(struct rec *c)
{
    free(c->body);
    c->body = NULL;
}

static void on_field(void *ud, const char *name, size_t nlen,
                     const char *value, size_t vlen)
{
    struct rec *c = ud;
    cr_assert_eq(c->heads, 0, "a field after the head (a trailer?)");
    int k = snprintf(c->fields + c->flen, sizeof c->fields - c->flen,
                     "%.*s=%.*s\n", (int)nlen, name, (int)vlen, value);
    cr_assert(k > 0 && (size_t)k < sizeof c->fields - c->flen);
    c->flen += (size_t)k;
}

static void on_head(void *ud, int status)
{
    struct rec *c = ud;
    c->heads++;
    c->status = status;
}

static bool on_data(void *ud, const char *p, size_t n)
{
    struct rec *c = ud;
    cr_assert_gt(n, 0, "on_data with no bytes");
    cr_assert_eq(c->heads, 1, "body bytes before the head ended");
    c->data_calls++;
    if (c->data_calls == c->pause_next) {
        c->pauses++;
        c->pause_next = c->pause_gap ? c->pause_next + c->pause_gap : 0;
        return false;
    }
    cr_assert_leq(n, c->bcap - c->blen, "more body bytes than were fed");
    memcpy(c->body + c->blen, p, n);
    c->blen += n;
    c->body[c->blen] = '\0';
    return true;
}

static const struct h1_cb cbs = { on_field, on_head, on_data };

/* One feed of the whole response. */
static long feed_all(struct h1_resp *r, struct rec *c, const char *s,
                     size_t len)
{
    h1_init(r);
    rec_init(c, len);
    return h1_feed(r, s, len, &cbs, c);
}

/* The response fed as a real caller reads it: the pieces end at cuts[0..],
 * then at len; after each piece the unconsumed bytes plus the new ones are
 * fed again until nothing more is taken. Returns the bytes consumed in
 * all, or -1 at the first error. */
static long feed_cuts(struct h1_resp *r, struct rec *c, const char *s,
                      size_t len, const size_t *cuts, size_t ncuts)
{
    char *buf = malloc(len + 1);
    size_t have = 0, fed = 0;
    long total = 0;
    cr_assert_not_null(buf);
    h1_init(r);
    for (size_t i = 0; i <= ncuts && total >= 0; i++) {
        size_t end = i < ncuts ? cuts[i] : len;
        memcpy(buf + have, s + fed, end - fed);
        have += end - fed;
        fed = end;
        long n = 1;
        for (int rounds = 0; n > 0 && have > 0; rounds++) {
            cr_assert_lt(rounds, 100000, "the reader does not settle");
            n = h1_feed(r, buf, have, &cbs, c);
            if (n < 0) {
                total = -1;
                break;
            }
            cr_assert_leq((size_t)n, have, "consumed more than fed");
            memmove(buf, buf + n, have - (size_t)n);
            have -= (size_t)n;
            total += n;
        }
    }
    free(buf);
    return total;
}

/* Every field of r and c must equal those of the one-shot run. */
static void same_as(const struct h1_resp *r, const struct rec *c, long n,
                    const struct h1_resp *r1, const struct rec *c1, long n1,
                    const char *how)
{
    cr_assert_eq(n, n1, "%s: consumed %ld, one feed %ld", how, n, n1);
    cr_assert_eq(r->state, r1->state, "%s: state %d vs %d", how, r->state,
                 r1->state);
    cr_assert_str_eq(r->err, r1->err, "%s", how);
    cr_assert_eq(r->close, r1->close, "%s", how);
    cr_assert_eq(c->heads, c1->heads, "%s", how);
    cr_assert_eq(c->status, c1->status, "%s", how);
    cr_assert_str_eq(c->fields, c1->fields, "%s", how);
    cr_assert_eq(c->blen, c1->blen, "%s: body %zu bytes vs %zu", how, c->blen,
                 c1->blen);
    cr_assert_eq(memcmp(c->body, c1->body, c->blen), 0, "%s: body differs", how);
}

/* Feed s at once, then in two pieces at every split point, then byte by
 * byte: the same result each time. */
static void check_splits(const char *s)
{
    size_t len = strlen(s);
    struct h1_resp r1, r;
    struct rec c1, c;
    long n1 = feed_all(&r1, &c1, s, len);
    for (size_t k = 0; k <= len; k++) {
        char how[64];
        snprintf(how, sizeof how, "split at %zu", k);
        rec_init(&c, len);
        long n = feed_cuts(&r, &c, s, len, &k, 1);
        same_as(&r, &c, n, &r1, &c1, n1, how);
        rec_free(&c);
    }
    size_t *cuts = malloc(len * sizeof *cuts);
    cr_assert(len == 0 || cuts);
    for (size_t k = 0; k < len; k++)
        cuts[k] = k + 1;
    rec_init(&c, len);
    long n = feed_cuts(&r, &c, s, len, cuts, len);
    same_as(&r, &c, n, &r1, &c1, n1, "byte by byte");
    rec_free(&c);
    free(cuts);
    rec_free(&c1);
}

/* ---- framing: one feed of a response, then what the reader says -------- */

static const char cl_resp[] =
    "HTTP/1.1 200 OK\r\n"
    "Content-Type:  application/json \r\n"
    "X-Empty:\r\n"
    "x-tab:\tv 1\t\r\n"
    "Content-Length: 11\r\n"
    "\r\n"
    "{\"a\":\"b c\"}";

static const char chunked_resp[] =
    "HTTP/1.1 200 OK\r\n"
    "Transfer-Encoding: chunked\r\n"
    "\r\n"
    "5;a=b\r\nhello\r\n"
    "1A ; name=\"v\"\r\nabcdefghijklmnopqrstuvwxyz\r\n"
    "0000a\nwith LF!!!\n"            /* bare LF line ends */
    "1d\r\n, then 29 lowercase-hex bytes\r\n"
    "0;last\r\n"
    "X-Trailer: t\r\n"
    "Other: u\n"
    "\r\n";

static const char close_resp[] =
    "HTTP/1.1 200 OK\r\n"
    "Content-Type: text/plain\r\n"
    "\r\n"
    "until the end\r\n\r\n0\r\n";

static const char interim_resp[] =
    "HTTP/1.1 100 Continue\r\n"
    "X-Interim: one\r\n"
    "\r\n"
    "HTTP/1.1 103 Early Hints\r\n"
    "Link: </style.css>; rel=preload\r\n"
    "Content-Length: 99\r\n"
    "Connection: close\r\n"
    "\r\n"
    "HTTP/1.1 201 Created\r\n"
    "Location: /x\r\n"
    "Content-Length: 2\r\n"
    "\r\n"
    "ok";

static const char http10_resp[] =
    "HTTP/1.0 200 OK\r\nContent-Length: 4\r\n\r\nbody";
static const char http10_ka_resp[] =
    "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 4\r\n\r\nbody";

static const char te_cl_resp[] =
    "HTTP/1.1 200 OK\r\n"
    "Content-Length: 3\r\n"
    "Transfer-Encoding: chunked\r\n"
    "\r\n"
    "6\r\nchunks\r\n0\r\n\r\n";

static const char te_other_resp[] =
    "HTTP/1.1 200 OK\r\n"
    "Transfer-Encoding: chunked, gzip\r\n"
    "\r\n"
    "3\r\nabc\r\n0\r\n\r\n";

/* Responses with no body; each case feeds two in a row: what follows is
 * the next response, not this one's body. */
#define NB_204_LEN "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n"
#define NB_304_TE "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n"
#define NB_204 "HTTP/1.1 204\r\n\r\n"
/* A response, then the start of the next one. */
#define NEXT_404 "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"

/* An expectation that may be left unchecked. */
enum want { ANY, NO, YES };

struct ok_case {
    const char *name;
    const char *in;
    size_t keep;            /* bytes of in left unconsumed */
    enum h1_state state;
    int status;             /* of the final head, 0: unchecked */
    enum want http10;       /* r.minor is 0 (YES) or 1 (NO) */
    enum want close, chunked, no_data;  /* no_data: on_data never called */
    const char *fields;     /* as the callbacks saw them, NULL: unchecked */
    const char *body;       /* NULL: unchecked */
    unsigned long long left;    /* 0: unchecked */
    enum want reusable;
    /* what h1_eof returns (ANY: not called); then the state is H1_DONE
     * when it returned true and unchanged otherwise, and h1_reusable does
     * not change */
    enum want eof;
    const char *then;       /* fed after all that: nothing is taken */
};

static const struct ok_case ok_cases[] = {
    { .name = "content_length_body_and_fields", .in = cl_resp,
      .state = H1_DONE, .status = 200, .http10 = NO,
      .fields = "Content-Type=application/json\nX-Empty=\n"
                "x-tab=v 1\nContent-Length=11\n",
      .body = "{\"a\":\"b c\"}", .reusable = YES,
      .eof = YES },         /* already complete */
    { .name = "content_length_zero",
      .in = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
      .state = H1_DONE, .no_data = YES, .reusable = YES },
    { .name = "content_length_duplicate_equal",
      .in = "HTTP/1.1 200 OK\r\ncontent-length: 3\r\nCONTENT-LENGTH: 3\r\n\r\nabc",
      .state = H1_DONE, .body = "abc", .reusable = YES },
    /* trailer fields are not reported as fields */
    { .name = "chunked_body", .in = chunked_resp,
      .state = H1_DONE, .chunked = YES, .close = NO,
      .fields = "Transfer-Encoding=chunked\n",
      .body = "helloabcdefghijklmnopqrstuvwxyzwith LF!!!"
              ", then 29 lowercase-hex bytes",
      .reusable = YES },
    { .name = "chunked_without_trailers",
      .in = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n"
            "2\r\nok\r\n0\r\n\r\n",
      .state = H1_DONE, .body = "ok", .reusable = YES },
    /* 2^60 - 1 is still a size: the reader waits for its data */
    { .name = "largest_chunk_size",
      .in = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
            "\r\nfffFFFFFFFFFFFF\r\nxyz",
      .state = H1_CHUNK_DATA, .left = (1ull << 60) - 1 - 3, .body = "xyz",
      .eof = NO },
    /* more bytes after the end are not taken */
    { .name = "close_delimited_body", .in = close_resp,
      .state = H1_BODY_CLOSE, .close = YES,
      .body = "until the end\r\n\r\n0\r\n", .reusable = NO, .eof = YES,
      .then = "x" },
    { .name = "no_body_for_204_with_length", .in = NB_204_LEN NB_204_LEN,
      .keep = sizeof NB_204_LEN - 1, .state = H1_DONE, .status = 204,
      .no_data = YES, .reusable = YES },
    { .name = "no_body_for_304_chunked", .in = NB_304_TE NB_304_TE,
      .keep = sizeof NB_304_TE - 1, .state = H1_DONE, .status = 304,
      .no_data = YES, .reusable = YES },
    { .name = "no_body_for_204_bare", .in = NB_204 NB_204,
      .keep = sizeof NB_204 - 1, .state = H1_DONE, .status = 204,
      .no_data = YES, .reusable = YES },
    /* the 103's Connection: close framed nothing */
    { .name = "interim_heads_are_skipped", .in = interim_resp,
      .state = H1_DONE, .status = 201,
      .fields = "Location=/x\nContent-Length=2\n", .body = "ok",
      .reusable = YES },
    { .name = "interim_head_alone_waits_for_the_final_one",
      .in = "HTTP/1.1 100 Continue\r\n\r\n",
      .state = H1_STATUS, .eof = NO, .reusable = NO },
    { .name = "http10_closes", .in = http10_resp,
      .state = H1_DONE, .http10 = YES, .close = YES, .body = "body",
      .reusable = NO },
    { .name = "http10_keep_alive", .in = http10_ka_resp,
      .state = H1_DONE, .close = NO, .reusable = YES },
    /* keep-alive without a length: the close still ends the body */
    { .name = "http10_keep_alive_without_length",
      .in = "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\nzz",
      .state = H1_BODY_CLOSE, .eof = YES, .reusable = NO, .body = "zz" },
    /* RFC 9112 6.1: an HTTP/1.0 message with a Transfer-Encoding may have
     * been forwarded without its coding handled; read it, then close. */
    { .name = "http10_with_transfer_encoding_closes",
      .in = "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n"
            "Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
      .state = H1_DONE, .body = "ok", .close = YES, .reusable = NO },
    { .name = "connection_close",
      .in = "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx",
      .state = H1_DONE, .close = YES, .reusable = NO, .body = "x" },
    { .name = "connection_close_in_a_list",
      .in = "HTTP/1.1 200 OK\r\nconnection: Upgrade, CLOSE\r\n"
            "Content-Length: 1\r\n\r\nx",
      .state = H1_DONE, .close = YES, .reusable = NO, .body = "x" },
    { .name = "connection_close_after_keep_alive",
      .in = "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nConnection: close\r\n"
            "Content-Length: 1\r\n\r\nx",
      .state = H1_DONE, .close = YES, .reusable = NO, .body = "x" },
    /* a token that only contains "close" is not close */
    { .name = "connection_closed_is_not_close",
      .in = "HTTP/1.1 200 OK\r\nConnection: closed, xclose\r\n"
            "Content-Length: 1\r\n\r\nx",
      .state = H1_DONE, .reusable = YES },
    { .name = "chunked_wins_over_content_length_and_closes", .in = te_cl_resp,
      .state = H1_DONE, .body = "chunks", .close = YES, .reusable = NO },
    { .name = "other_coding_last_reads_to_the_close", .in = te_other_resp,
      .state = H1_BODY_CLOSE, .chunked = NO, .close = YES,
      .body = "3\r\nabc\r\n0\r\n\r\n", .reusable = NO, .eof = YES },
    /* chunked in an earlier field, another coding after it: not chunked */
    { .name = "other_coding_in_a_later_field",
      .in = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
            "Transfer-Encoding: br\r\n\r\n1\r\nx",
      .state = H1_BODY_CLOSE, .body = "1\r\nx" },
    /* RFC 9112 6.3 (3): a Transfer-Encoding overrides a Content-Length,
     * and when chunked is not its last coding the body ends with the
     * connection. */
    { .name = "other_coding_overrides_content_length",
      .in = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 3\r\n"
            "\r\nabcdef",
      .state = H1_BODY_CLOSE, .body = "abcdef", .eof = YES, .reusable = NO },
    { .name = "blank_lines_before_the_status_line",
      .in = "\r\n\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n!",
      .state = H1_DONE, .body = "!" },
    /* bytes after the end are not consumed */
    { .name = "bytes_after_done_are_not_consumed",
      .in = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi" NEXT_404,
      .keep = sizeof NEXT_404 - 1, .state = H1_DONE, .status = 200,
      .body = "hi", .then = NEXT_404 },
    /* and after the last chunk's trailer */
    { .name = "bytes_after_the_trailer_are_not_consumed",
      .in = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            "1\r\na\r\n0\r\n\r\nHTTP/1.1",
      .keep = 8, .state = H1_DONE, .reusable = YES },
    /* the connection closing inside a framed body is not the end */
    { .name = "eof_in_a_length_body",
      .in = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
      .state = H1_BODY_LEN, .eof = NO, .reusable = NO },
    { .name = "eof_in_chunk_data",
      .in = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
      .state = H1_CHUNK_DATA, .eof = NO, .reusable = NO },
    { .name = "eof_before_a_chunk_end",
      .in = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde",
      .state = H1_CHUNK_END, .eof = NO, .reusable = NO },
    { .name = "eof_before_a_chunk_size",
      .in = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n",
      .state = H1_CHUNK_SIZE, .eof = NO, .reusable = NO },
    { .name = "eof_in_the_trailer",
      .in = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: x\r\n",
      .state = H1_TRAILER, .eof = NO, .reusable = NO },
    { .name = "eof_in_the_head",
      .in = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n",
      .state = H1_FIELD, .eof = NO, .reusable = NO },
    { .name = "eof_in_the_status_line", .in = "HTTP/1.1 200 O", .keep = 14,
      .state = H1_STATUS, .eof = NO, .reusable = NO },
    { .name = "eof_before_anything", .in = "",
      .state = H1_STATUS, .eof = NO, .reusable = NO },
};

/* The head ended (on_head came) once the reader is past its fields. */
static int heads_at(enum h1_state s)
{
    return s == H1_STATUS || s == H1_FIELD ? 0 : 1;
}

static void check_want(const char *name, const char *what, bool got,
                       enum want w)
{
    if (w != ANY)
        cr_assert_eq(got, w == YES, "%s: %s is %d", name, what, got);
}

/* h1_eof, then bytes after the end: the state and what was seen hold. */
static void check_end(const struct ok_case *k, struct h1_resp *r,
                      struct rec *c)
{
    if (k->eof != ANY) {
        enum h1_state before = r->state;
        bool reuse = h1_reusable(r);
        bool e = h1_eof(r);
        check_want(k->name, "h1_eof", e, k->eof);
        cr_assert_eq(r->state, e ? H1_DONE : before,
                     "%s: state %d after h1_eof", k->name, r->state);
        cr_assert_eq(h1_reusable(r), reuse, "%s: h1_eof changed h1_reusable",
                     k->name);
    }
    if (k->then) {
        int status = c->status;
        size_t blen = c->blen;
        cr_assert_eq(h1_feed(r, k->then, strlen(k->then), &cbs, c), 0,
                     "%s: bytes taken after the end", k->name);
        cr_assert_eq(c->heads, heads_at(k->state), "%s", k->name);
        cr_assert_eq(c->status, status, "%s", k->name);
        cr_assert_eq(c->blen, blen, "%s", k->name);
        if (k->body)
            cr_assert_str_eq(c->body, k->body, "%s", k->name);
    }
}

static void check_ok(const struct ok_case *k)
{
    struct h1_resp r;
    struct rec c;
    size_t len = strlen(k->in);
    long n = feed_all(&r, &c, k->in, len);
    cr_assert_eq(n, (long)(len - k->keep), "%s: consumed %ld of %zu (%s)",
                 k->name, n, len, r.err);
    cr_assert_eq(r.state, k->state, "%s: state %d", k->name, r.state);
    cr_assert_eq(c.heads, heads_at(k->state), "%s: %d heads", k->name, c.heads);
    if (k->status) {
        cr_assert_eq(c.status, k->status, "%s", k->name);
        cr_assert_eq(r.status, k->status, "%s", k->name);
    }
    if (k->http10 != ANY)
        cr_assert_eq(r.minor, k->http10 == YES ? 0 : 1, "%s", k->name);
    check_want(k->name, "close", r.close, k->close);
    check_want(k->name, "chunked", r.chunked, k->chunked);
    check_want(k->name, "no on_data", c.data_calls == 0, k->no_data);
    if (k->fields)
        cr_assert_str_eq(c.fields, k->fields, "%s", k->name);
    if (k->body)
        cr_assert_str_eq(c.body, k->body, "%s", k->name);
    if (k->left)
        cr_assert_eq(r.left, k->left, "%s: left %llu", k->name, r.left);
    check_want(k->name, "h1_reusable", h1_reusable(&r), k->reusable);
    check_end(k, &r, &c);
    rec_free(&c);
}

Test(h1, responses)
{
    for (size_t i = 0; i < sizeof ok_cases / sizeof ok_cases[0]; i++)
        check_ok(&ok_cases[i]);
}

Test(h1, null_callbacks)
{
    static const struct h1_cb none = { NULL, NULL, NULL };
    struct h1_resp r;
    h1_init(&r);
    size_t len = strlen(chunked_resp);
    cr_assert_eq(h1_feed(&r, chunked_resp, len, &none, NULL), (long)len);
    cr_assert_eq(r.state, H1_DONE);
    cr_assert(h1_reusable(&r));
}

/* ---- every split ------------------------------------------------------ */

Test(h1, every_split_reads_the_same, .timeout = 60)
{
    static const char *const all[] = {
        cl_resp, chunked_resp, close_resp, interim_resp, http10_resp,
        http10_ka_resp, te_cl_resp, te_other_resp,
        "HTTP/1.1 204 No Content\r\nX-A: b\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
        "HTTP/1.1 200 OK\nContent-Length: 2\n\nhi and more",
    };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        check_splits(all[i]);
}

Test(h1, every_split_finds_the_same_error)
{
    static const char *const bad[] = {
        "HTTP/1.1 200 OK\r\nA: b\r\n c\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        check_splits(bad[i]);
}

/* ---- pause ------------------------------------------------------------ */

/* Feed as a caller that resumes after each pause with the same bytes and
 * otherwise gives step more bytes of input (step 0: all at once); on_data
 * refuses its first call and every gap-th after it (gap >= 2). The result
 * must be that of one feed without pauses. */
static void check_pause(const char *s, int gap, size_t step)
{
    size_t len = strlen(s);
    struct h1_resp r1, r;
    struct rec c1, c;
    long n1 = feed_all(&r1, &c1, s, len);
    h1_init(&r);
    rec_init(&c, len);
    c.pause_next = 1;
    c.pause_gap = gap;
    size_t pos = 0, avail = step ? step : len;
    for (int rounds = 0; rounds < 100000; rounds++) {
        int before = c.pauses;
        long n = h1_feed(&r, s + pos, (avail < len ? avail : len) - pos, &cbs, &c);
        cr_assert_geq(n, 0, "%s", r.err);
        pos += (size_t)n;
        if (c.pauses != before)
            continue;           /* resume with the refused bytes */
        if (avail >= len)
            break;
        avail += step;
    }
    cr_assert_gt(c.pauses, 0);
    same_as(&r, &c, (long)pos, &r1, &c1, n1, "paused");
    rec_free(&c);
    rec_free(&c1);
}

Test(h1, pause_stops_before_the_refused_bytes)
{
    struct h1_resp r;
    struct rec c;
    h1_init(&r);
    rec_init(&c, 64);
    c.pause_next = 1;           /* refuse the first call only */
    size_t head = strlen(cl_resp) - 11;
    long n = h1_feed(&r, cl_resp, strlen(cl_resp), &cbs, &c);
    cr_assert_eq(n, (long)head);    /* the whole head, none of the body */
    cr_assert_eq(r.state, H1_BODY_LEN);
    cr_assert_eq(r.left, 11);
    cr_assert_eq(c.heads, 1);
    cr_assert_eq(c.blen, 0);
    n = h1_feed(&r, cl_resp + head, 11, &cbs, &c);
    cr_assert_eq(n, 11);
    cr_assert_eq(r.state, H1_DONE);
    cr_assert_eq(c.heads, 1);       /* the head is not reported twice */
    cr_assert_str_eq(c.body, "{\"a\":\"b c\"}");
    rec_free(&c);

    /* chunked: the second chunk is refused, the first one stays taken */
    h1_init(&r);
    rec_init(&c, 256);
    c.pause_next = 2;
    const char *s = chunked_resp;
    n = h1_feed(&r, s, strlen(s), &cbs, &c);
    const char *second = strstr(s, "abcdefghij");
    cr_assert_eq(n, second - s);
    cr_assert_eq(r.state, H1_CHUNK_DATA);
    cr_assert_str_eq(c.body, "hello");
    rec_free(&c);
}

Test(h1, pause_and_resume_keeps_the_body_whole)
{
    static const char *const all[] = { cl_resp, chunked_resp, close_resp,
                                       te_cl_resp, http10_ka_resp };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        check_pause(all[i], 2, 0);
        check_pause(all[i], 2, 1);
        check_pause(all[i], 3, 1);
        check_pause(all[i], 3, 7);
    }
}

/* ---- errors ----------------------------------------------------------- */

struct bad_case {
    const char *in;
    const char *err;
};

static const struct bad_case bad_cases[] = {
    { "HTTP/2 200 OK\r\n\r\n", "not an HTTP/1.x status line: \"HTTP/2 200 OK\"" },
    { "SSH-2.0-OpenSSH_9.6\r\n", "not an HTTP/1.x status line: \"SSH-2.0-OpenSSH_9.6\"" },
    { "HTTP/1.1 200OK\r\n\r\n", "not an HTTP/1.x status line: \"HTTP/1.1 200OK\"" },
    { "HTTP/1.1  200 OK\r\n\r\n", "not an HTTP/1.x status line: \"HTTP/1.1  200 OK\"" },
    { "HTTP/1.1 20x OK\r\n\r\n", "not an HTTP/1.x status line: \"HTTP/1.1 20x OK\"" },
    { "HTTP/1.1 101 Switching Protocols\r\n\r\n", "unexpected status 101" },
    { "HTTP/1.1 600 Nope\r\n\r\n", "unexpected status 600" },
    { "HTTP/1.1 099 Low\r\n\r\n", "unexpected status 99" },
    { "HTTP/1.1 200 OK\r\nNoColon\r\n\r\n", "malformed header field \"NoColon\"" },
    { "HTTP/1.1 200 OK\r\n: v\r\n\r\n", "malformed header field \": v\"" },
    { "HTTP/1.1 200 OK\r\nContent-Length : 1\r\n\r\n",
      "malformed header field \"Content-Length : 1\"" },
    { "HTTP/1.1 100 Continue\r\nBad Name: x\r\n\r\n",
      "malformed header field \"Bad Name: x\"" },
    { "HTTP/1.1 200 OK\r\nX-A: b\r\n c\r\n\r\n",
      "obsolete line folding in a header field" },
    { "HTTP/1.1 200 OK\r\n\tX-A: b\r\n\r\n",
      "obsolete line folding in a header field" },
    { "HTTP/1.1 200 OK\r\nContent-Length: 5x\r\n\r\n", "bad Content-Length \"5x\"" },
    { "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "bad Content-Length \"-1\"" },
    { "HTTP/1.1 200 OK\r\nContent-Length: 1, 1\r\n\r\n", "bad Content-Length \"1, 1\"" },
    { "HTTP/1.1 200 OK\r\nContent-Length: 123456789012345678901\r\n\r\n",
      "bad Content-Length \"123456789012345678901\"" },
    { "HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n", "empty Content-Length" },
    { "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
      "two different Content-Length values" },
    { "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
      "bad chunk size line \"zz\"" },
    { "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5x\r\n",
      "bad chunk size line \"5x\"" },
    { "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n 5\r\n",
      "bad chunk size line \" 5\"" },
    { "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n",
      "bad chunk size line \"\"" },
    { "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1000000000000000\r\n",
      "chunk size too large" },
    { "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFFFF\r\n",
      "chunk size too large" },
    { "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n0\r\n\r\n",
      "chunk data longer than its size" },
    { "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc0\r\n\r\n",
      "chunk data longer than its size" },
};

Test(h1, errors)
{
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        const struct bad_case *b = &bad_cases[i];
        struct h1_resp r;
        struct rec c;
        long n = feed_all(&r, &c, b->in, strlen(b->in));
        cr_assert_eq(n, -1, "%s: got %ld", b->in, n);
        cr_assert_eq(r.state, H1_ERROR, "%s", b->in);
        cr_assert_str_eq(r.err, b->err, "input %s", b->in);
        /* an error is final */
        cr_assert_eq(h1_feed(&r, "HTTP/1.1 200 OK\r\n\r\n", 19, &cbs, &c), -1);
        cr_assert_eq(h1_feed(&r, "", 0, &cbs, &c), -1);
        cr_assert_not(h1_eof(&r));
        cr_assert_not(h1_reusable(&r));
        cr_assert_eq(c.heads, i >= 20 ? 1 : 0, "%s", b->in);
        rec_free(&c);
    }
}

/* A buffer of n copies of fill after prefix, then suffix. */
static char *repeat(const char *prefix, char fill, size_t n, const char *suffix)
{
    size_t p = strlen(prefix), s = strlen(suffix);
    char *b = malloc(p + n + s + 1);
    cr_assert_not_null(b);
    memcpy(b, prefix, p);
    memset(b + p, fill, n);
    memcpy(b + p + n, suffix, s + 1);
    return b;
}

Test(h1, line_length_limit)
{
    static const char pre[] = "HTTP/1.1 200 OK\r\nX-Long: ";
    size_t room = H1_LINE_MAX - strlen("X-Long: ") - 1;    /* + CRLF = max + 1 */
    char *ok = repeat(pre, 'a', room, "\r\nContent-Length: 0\r\n\r\n");
    struct h1_resp r;
    struct rec c;
    cr_assert_eq(feed_all(&r, &c, ok, strlen(ok)), (long)strlen(ok), "%s", r.err);
    cr_assert_eq(r.state, H1_DONE);
    cr_assert_eq(c.flen, strlen("X-Long=\n") + room + strlen("Content-Length=0\n"));
    rec_free(&c);
    free(ok);
    /* too long, with or without its end in the buffer */
    char *bad = repeat(pre, 'a', H1_LINE_MAX, "\r\n\r\n");
    cr_assert_eq(feed_all(&r, &c, bad, strlen(bad)), -1);
    cr_assert_str_eq(r.err, "a line longer than 8192 bytes");
    rec_free(&c);
    cr_assert_eq(feed_all(&r, &c, bad, strlen(bad) - 4), -1);
    cr_assert_str_eq(r.err, "a line longer than 8192 bytes");
    rec_free(&c);
    /* an unfinished line up to the limit only waits */
    cr_assert_eq(feed_all(&r, &c, bad, H1_LINE_MAX), (long)strlen("HTTP/1.1 200 OK\r\n"));
    cr_assert_eq(r.state, H1_FIELD);
    rec_free(&c);
    free(bad);
    /* a chunk-size line too */
    char *chunk = repeat("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;",
                         'e', H1_LINE_MAX + 10, "\r\nx\r\n0\r\n\r\n");
    cr_assert_eq(feed_all(&r, &c, chunk, strlen(chunk)), -1);
    cr_assert_str_eq(r.err, "a line longer than 8192 bytes");
    rec_free(&c);
    free(chunk);
}

/* RFC 9110 5.5: a CR or NUL inside a field value must be rejected or
 * replaced by SP before it is used (the gateway passes Content-Type on). */
static void no_cr_nul(void *ud, const char *name, size_t nlen,
                      const char *value, size_t vlen)
{
    (void)ud;
    (void)name;
    (void)nlen;
    cr_assert_null(memchr(value, '\r', vlen), "CR in the value \"%.*s\"",
                   (int)vlen, value);
    cr_assert_null(memchr(value, '\0', vlen), "NUL in a value");
}

Test(h1, field_values_never_hold_cr_or_nul)
{
    static const char *const s[] = {
        "HTTP/1.1 200 OK\r\nContent-Type: text/html\rX-Injected: 1\r\n"
        "Content-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Type: a\0b\r\nContent-Length: 0\r\n\r\n",
    };
    static const size_t len[] = { 77, 64, 57 };
    const struct h1_cb cb = { no_cr_nul, NULL, NULL };
    for (size_t i = 0; i < sizeof s / sizeof s[0]; i++) {
        struct h1_resp r;
        h1_init(&r);
        long n = h1_feed(&r, s[i], len[i], &cb, NULL);
        cr_assert(n == -1 || n == (long)len[i], "case %zu: %ld", i, n);
    }
}

/* A line of exactly H1_LINE_MAX bytes is not longer than the limit,
 * whichever way it ends. */
Test(h1, line_of_exactly_the_limit)
{
    static const char pre[] = "HTTP/1.1 200 OK\r\nX-Long: ";
    size_t room = H1_LINE_MAX - strlen("X-Long: ");
    char *lf = repeat(pre, 'a', room, "\nContent-Length: 0\r\n\r\n");
    char *crlf = repeat(pre, 'a', room, "\r\nContent-Length: 0\r\n\r\n");
    size_t nlf = strlen(lf), ncrlf = strlen(crlf);
    struct h1_resp r1, r2;
    struct rec c;
    long k1 = feed_all(&r1, &c, lf, nlf);
    rec_free(&c);
    long k2 = feed_all(&r2, &c, crlf, ncrlf);
    rec_free(&c);
    free(lf);
    free(crlf);
    cr_assert_eq(k1, (long)nlf, "%s", r1.err);
    cr_assert_eq(k2, (long)ncrlf, "LF: taken, CRLF: %s", r2.err);
}

/* prefix, then n fields "X-Fnnnn: vvv...\r\n" of line bytes each, then
 * tail. */
static char *big_head(const char *prefix, size_t fields, size_t line,
                      const char *tail)
{
    size_t pl = strlen(prefix), tl = strlen(tail);
    char *b = malloc(pl + fields * line + tl + 1);
    cr_assert_not_null(b);
    memcpy(b, prefix, pl);
    size_t n = pl;
    for (size_t i = 0; i < fields; i++) {
        int k = sprintf(b + n, "X-F%04zu: ", i);
        memset(b + n + (size_t)k, 'v', line - (size_t)k - 2);
        memcpy(b + n + line - 2, "\r\n", 2);
        n += line;
    }
    memcpy(b + n, tail, tl + 1);
    return b;
}

Test(h1, head_length_limit)
{
    static const char status[] = "HTTP/1.1 200 OK\r\n";
    struct h1_resp r;
    struct rec c;
    /* 17 + 15 * 4000 + 19 + 2 bytes: fits */
    char *ok = big_head(status, 15, 4000, "Content-Length: 0\r\n\r\n");
    cr_assert_eq(feed_all(&r, &c, ok, strlen(ok)), (long)strlen(ok), "%s", r.err);
    cr_assert_eq(r.state, H1_DONE);
    rec_free(&c);
    free(ok);
    char *bad = big_head(status, 17, 4000, "Content-Length: 0\r\n\r\n");
    cr_assert_eq(feed_all(&r, &c, bad, strlen(bad)), -1);
    cr_assert_str_eq(r.err, "a head or trailer longer than 65536 bytes");
    cr_assert_eq(c.heads, 0);
    rec_free(&c);
    free(bad);
    /* trailers count against the same limit; a long chunked body does not */
    char *t = big_head("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n",
                       17, 4000, "\r\n");
    cr_assert_eq(feed_all(&r, &c, t, strlen(t)), -1);
    cr_assert_str_eq(r.err, "a head or trailer longer than 65536 bytes");
    cr_assert_eq(c.heads, 1);
    rec_free(&c);
    free(t);
    size_t k = 40000;
    char *body = malloc(k * 6 + 128);
    cr_assert_not_null(body);
    size_t n = (size_t)sprintf(body, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (size_t i = 0; i < k; i++)
        n += (size_t)sprintf(body + n, "1\r\n%c\r\n", 'a' + (int)(i % 26));
    n += (size_t)sprintf(body + n, "0\r\n\r\n");
    cr_assert_eq(feed_all(&r, &c, body, n), (long)n, "%s", r.err);
    cr_assert_eq(r.state, H1_DONE);
    cr_assert_eq(c.blen, k);
    cr_assert_eq(c.body[k - 1], 'a' + (int)((k - 1) % 26));
    rec_free(&c);
    free(body);
}
