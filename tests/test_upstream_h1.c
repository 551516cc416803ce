/* test_upstream_h1.c - the gateway's own HTTP/1.1 client (upstream_h1.c),
 * driven through the pool (ups_pool_new, ups_job_submit) against the
 * scripted raw upstream of tests/helpers/raw_upstream.h (exact answer
 * bytes, in pieces, closes and resets where the test says). Covers
 * response framing, keep-alive reuse and when not to reuse, the retry of
 * a stale kept-alive connection, the request's bytes, early answers,
 * connect timeouts, malformed and cut responses, backpressure, and
 * KANOA_UPSTREAM_CLIENT=curl (libcurl sends an Accept header, the own
 * client does not: that tells them apart).
 * The response parser alone is tested by tests/test_h1.c. */
#include "server/upstream.h"

#include "base/mem.h"
#include "helpers/raw_upstream.h"
#include "helpers/rec_sink.h"

#include <criterion/criterion.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Criterion's runner (not the code under test) sometimes leaks 48 bytes when
 * several workers run with -j2; keep LeakSanitizer on for everything else. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:libcriterion.so\n";
}

/* ---- fixtures --------------------------------------------------------------- */

static struct up U;
static struct ups_pool *P;
static char URL[128];   /* the upstream's URL as configured */
static int CONNECT_MS;  /* the pool's connect timeout if not 0 */
static int PROBE_MS;    /* its probe interval if not 0 (else 200 ms) */

static void teardown(void)
{
    ups_pool_free(P);   /* first: its connections close, the server's threads end */
    P = NULL;
    up_stop(&U);
}

/* Start the upstream and a pool over it at http://HOST:PORT`path`, with
 * `extra` spec options (may be ""); HOST "[::1]" listens on IPv6. */
static void setup_pool(const char *host, const char *path, const char *extra)
{
    up_start(&U, host[0] == '[' ? AF_INET6 : AF_INET);
    snprintf(URL, sizeof URL, "http://%s:%d%s", host, U.port, path);
    char text[256];
    snprintf(text, sizeof text, "u0=%s%s", URL, extra);
    struct ups_spec s;
    struct km_err err = {0};
    cr_assert_eq(ups_spec_parse(text, &s, &err), KM_OK, "%s", err.msg);
    struct ups_options o;
    ups_options_default(&o);
    o.probe_interval_ms = PROBE_MS ? PROBE_MS : 200;
    o.probe_timeout_ms = 2000;      /* ASan and a busy machine */
    if (CONNECT_MS)
        o.connect_timeout_ms = CONNECT_MS;
    cr_assert_eq(ups_pool_new(&s, 1, &o, &P, &err), KM_OK, "%s", err.msg);
    cr_assert_eq(ups_pool_healthy(P), 1, "the first probe round admits u0");
}

static const char *BODY = "{\"model\":\"m1\",\"messages\":[{\"role\":\"user\","
                          "\"content\":\"hi\"}]}";

/* A request in flight (the request must outlive its job). */
struct call {
    struct srv_request req;
    struct rec *r;
    struct srv_job *job;
};

/* Submit a request recorded by r (initialised here, freed by the caller). */
static void call_start(struct call *c, struct rec *r, enum srv_endpoint ep,
                       const char *body, size_t len, const char *rid,
                       int full_polls)
{
    rec_init(r, 4u << 20);
    r->full_polls = full_polls;
    c->r = r;
    c->req = (struct srv_request){.ep = ep, .model = "m1", .request_id = rid,
                                  .body = body, .body_len = len};
    struct srv_sink s = rec_sink(r);
    struct km_err err = {0};
    cr_assert_eq(ups_job_submit(P, &c->req, &s, NULL, &c->job, &err), KM_OK,
                 "%s", err.msg);
}

/* Wait (10 s at most) for c's end and release its job; one that does
 * not end is canceled first (its sink lives on the caller's stack). */
static void call_end(struct call *c)
{
    bool ended = rec_wait(c->r, 10000);
    if (!ended) {
        ups_job_cancel(P, c->job);
        rec_wait(c->r, 5000);
    }
    ups_job_release(P, c->job);
    cr_assert(ended, "request %s did not end in 10 s", c->req.request_id);
}

/* Proxy one request (r initialised here, freed by the caller). */
static void run_req(enum srv_endpoint ep, const char *body, size_t len,
                    const char *rid, struct rec *r, int full_polls)
{
    struct call c;
    call_start(&c, r, ep, body, len, rid, full_polls);
    call_end(&c);
}

static void run_chat(const char *rid, struct rec *r)
{
    run_req(SRV_EP_CHAT, BODY, strlen(BODY), rid, r, 0);
}

/* r ended well: status, Content-Type and exactly `body` (n bytes). */
static void expect_ok(const struct rec *r, int status, const char *ctype,
                      const char *body, size_t n)
{
    cr_assert(r->done, "failed: %d %s", r->err_status, r->err_msg);
    cr_assert_eq(r->heads, 1);
    cr_assert_eq(r->head_status, status);
    cr_assert_str_eq(r->ctype, ctype);
    cr_assert_eq(r->body.len, n, "body of %zu bytes, not %zu: %s", r->body.len,
                 n, km_buf_str(&r->body));
    cr_assert(n == 0 || memcmp(r->body.data, body, n) == 0, "body %s",
              km_buf_str(&r->body));
}

/* r failed with 502 and "upstream u0 (URL) <what>". */
static void expect_502(const struct rec *r, const char *what)
{
    char want[512];
    snprintf(want, sizeof want, "upstream u0 (%s) %s", URL, what);
    cr_assert_not(r->done);
    cr_assert_eq(r->err_status, 502, "%d %s", r->err_status, r->err_msg);
    cr_assert_str_eq(r->err_type, "bad_gateway");
    cr_assert_str_eq(r->err_msg, want);
}

/* A chat request rid that ends well with status, Content-Type and body. */
static void chat_ok(const char *rid, int status, const char *ctype,
                    const char *body, size_t n)
{
    struct rec r;
    run_chat(rid, &r);
    expect_ok(&r, status, ctype, body, n);
    rec_free(&r);
}

/* A chat request rid that fails with 502 and "upstream u0 (URL) <what>". */
static void chat_502(const char *rid, const char *what)
{
    struct rec r;
    run_chat(rid, &r);
    expect_502(&r, what);
    rec_free(&r);
}

/* A chat request rid that fails with 502 and "upstream u0 (URL) <what>"
 * after heads heads (0, or 1 with status 200) and exactly body. */
static void chat_broken(const char *rid, int heads, const char *body,
                        const char *what)
{
    struct rec r;
    run_chat(rid, &r);
    cr_assert_eq(r.heads, heads, "%s: %d heads", rid, r.heads);
    if (heads)
        cr_assert_eq(r.head_status, 200);
    cr_assert_str_eq(km_buf_str(&r.body), body);
    expect_502(&r, what);
    rec_free(&r);
}

/* A chat request that gets the default answer. */
static void expect_default(const char *rid)
{
    chat_ok(rid, 200, "application/json", "{\"ok\":true}", 11);
}

TestSuite(upstream_h1, .fini = teardown, .timeout = 60);

/* ---- 1. framing ------------------------------------------------------------ */

Test(upstream_h1, content_length_body_split_across_writes)
{
    setup_pool("127.0.0.1", "", "");
    static const char resp[] =
        "HTTP/1.1 201 Created\r\nContent-Type: application/x-h1; charset=utf-8\r\n"
        "Content-Length: 26\r\nX-Other: 1\r\n\r\nabcdefghijklmnopqrstuvwxyz";
    /* in the status line, between its CR and LF, in a field, in the body */
    up_script(&U, 0, (struct act){.bytes = resp, .cuts = {5, 21, 40, 100, 110}});
    chat_ok("cl-1", 201, "application/x-h1; charset=utf-8",
            "abcdefghijklmnopqrstuvwxyz", 26);
}

Test(upstream_h1, chunked_with_extensions_and_trailers)
{
    setup_pool("127.0.0.1", "", "");
    static const char resp[] =
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
        "d;name=value\r\ndata: first\n\n\r\n"
        "1\r\nd\r\n"
        "0000A ; a=\"q\"\r\nata: 2\n\nxy\r\n"
        "0\r\nX-Trailer: t\r\nX-More: u\r\n\r\n";
    /* cuts: inside "Transfer-Encoding", in a chunk-size line and its
     * extension, between its CR and LF, in chunk data, between data and
     * CRLF, in the last chunk's line and in the trailer */
    size_t at = strstr(resp, "Encoding") - resp;
    size_t body = strstr(resp, "\r\n\r\n") - resp + 4;
    up_script(&U, 0, (struct act){.bytes = resp,
        .cuts = {at, body + 1, body + 7, body + 13, body + 20, body + 27, body + 34,
         sizeof resp - 12}});
    chat_ok("ch-1", 200, "text/event-stream", "data: first\n\ndata: 2\n\nxy", 24);
    expect_default("ch-2");     /* the trailer was consumed: the next one fits */
}

Test(upstream_h1, close_delimited_http10_body)
{
    setup_pool("127.0.0.1", "", "");
    static const char resp[] = "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n"
                               "until the end\r\nof the connection";
    up_script(&U, 0, (struct act){.bytes = resp, .cuts = {30, 45, 60},
                                  .close_after = true});
    chat_ok("cd-1", 200, "text/plain", "until the end\r\nof the connection", 32);
}

Test(upstream_h1, interim_100_continue_is_skipped)
{
    setup_pool("127.0.0.1", "", "");
    static const char resp[] =
        "HTTP/1.1 100 Continue\r\nX-Interim: 1\r\n\r\n"
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        "Content-Length: 8\r\n\r\n{\"a\":42}";
    up_script(&U, 0, (struct act){.bytes = resp, .cuts = {23, 39, 50}});
    chat_ok("ic-1", 200, "application/json", "{\"a\":42}", 8);
}

Test(upstream_h1, empty_bodies_keep_the_connection)
{
    setup_pool("127.0.0.1", "", "");
    up_script(&U, 0, (struct act){.bytes = "HTTP/1.1 204 No Content\r\n"
              "X-A: 1\r\n\r\n"});
    up_script(&U, 1, (struct act){.bytes = "HTTP/1.1 200 OK\r\nContent-Type: "
              "text/plain\r\nContent-Length: 0\r\n\r\n"});
    chat_ok("e-1", 204, "application/json", "", 0);  /* no type: the default */
    chat_ok("e-2", 200, "text/plain", "", 0);
    expect_default("e-3");
    cr_assert_eq(up_post(&U, 1)->conn, up_post(&U, 0)->conn);
    cr_assert_eq(up_post(&U, 2)->conn, up_post(&U, 0)->conn);
}

/* A head of 40 KB (more than the client's 16 KB read buffer, each field
 * under the 8 KB line limit) split across writes. */
Test(upstream_h1, large_response_head)
{
    setup_pool("127.0.0.1", "", "");
    struct km_buf h;
    km_buf_init(&h, 1u << 20);
    km_buf_puts(&h, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n");
    for (int i = 0; i < 40; i++) {
        km_buf_printf(&h, "X-Field-%02d: ", i);
        for (int k = 0; k < 1000; k++)
            km_buf_putc(&h, (char)('a' + (i + k) % 26));
        km_buf_puts(&h, "\r\n");
    }
    cr_assert_eq(km_buf_puts(&h, "Content-Length: 11\r\n\r\n{\"ok\":true}"), KM_OK);
    up_script(&U, 0, (struct act){.bytes = h.data, .len = h.len,
                                  .cuts = {1000, 16383, 16384, 30000}});
    expect_default("lh-1");
    expect_default("lh-2");
    cr_assert_eq(up_post(&U, 1)->conn, up_post(&U, 0)->conn);
    km_buf_free(&h);
}

Test(upstream_h1, bytes_after_the_response_are_not_kept)
{
    setup_pool("127.0.0.1", "", "");
    up_script(&U, 0, (struct act){.bytes = "HTTP/1.1 200 OK\r\nContent-Type: "
              "application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}"
              "HTTP/1.1 200 OK\r\n"});
    expect_default("ex-1");
    expect_default("ex-2");
    cr_assert_neq(up_post(&U, 1)->conn, up_post(&U, 0)->conn,
                  "a connection with unread bytes must not be reused");
}

/* Every byte its own write: an interim head, fields, chunk sizes with
 * extensions, data and a trailer, each read in as many pieces. */
Test(upstream_h1, answer_dripped_byte_by_byte)
{
    setup_pool("127.0.0.1", "", "");
    static const char resp[] =
        "HTTP/1.1 100 Continue\r\n\r\n"
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
        "d;x=1\r\ndata: first\n\n\r\n"
        "2\r\nok\r\n0\r\nX-T: 1\r\n\r\n";
    up_script(&U, 0, (struct act){.bytes = resp, .drip = true});
    chat_ok("dr-1", 200, "text/event-stream", "data: first\n\nok", 15);
    expect_default("dr-2");
    cr_assert_eq(up_post(&U, 1)->conn, up_post(&U, 0)->conn);
}

/* ---- 2. keep-alive ---------------------------------------------------------- */

Test(upstream_h1, keep_alive_reuses_one_connection)
{
    setup_pool("127.0.0.1", "", "");
    up_script(&U, 2, (struct act){.bytes = "HTTP/1.0 200 OK\r\nConnection: "
              "keep-alive\r\nContent-Type: application/json\r\n"
              "Content-Length: 11\r\n\r\n{\"ok\":true}"});
    expect_default("ka-1");
    expect_default("ka-2");
    expect_default("ka-3");     /* HTTP/1.0 with Connection: keep-alive */
    expect_default("ka-4");
    cr_assert_eq(up_posts(&U), 4);
    for (int i = 1; i < 4; i++)
        cr_assert_eq(up_post(&U, i)->conn, up_post(&U, 0)->conn, "request %d", i);
}

Test(upstream_h1, connection_close_and_close_delimited_are_not_reused)
{
    setup_pool("127.0.0.1", "", "");
    /* "Connection: close", though the upstream keeps the socket open */
    static const char closing[] = "HTTP/1.1 200 OK\r\nConnection: close\r\n"
                                  "Content-Type: application/json\r\n"
                                  "Content-Length: 11\r\n\r\n{\"ok\":true}";
    static const char http10[] = "HTTP/1.0 200 OK\r\nContent-Type: "
                                 "application/json\r\n\r\n{\"ok\":true}";
    static const char chunked[] = "HTTP/1.1 200 OK\r\nContent-Type: "
                                  "application/json\r\n"
                                  "Transfer-Encoding: chunked\r\n\r\n"
                                  "b\r\n{\"ok\":true}\r\n0\r\n\r\n";
    up_script(&U, 0, (struct act){.bytes = closing});
    up_script(&U, 1, (struct act){.bytes = http10, .close_after = true});
    up_script(&U, 2, (struct act){.bytes = chunked});
    for (int i = 0; i < 4; i++) {
        char rid[16];
        snprintf(rid, sizeof rid, "cc-%d", i);
        expect_default(rid);
    }
    cr_assert_neq(up_post(&U, 1)->conn, up_post(&U, 0)->conn,
                  "a Connection: close answer must not be reused");
    cr_assert_neq(up_post(&U, 2)->conn, up_post(&U, 1)->conn,
                  "a close-delimited answer must not be reused");
    cr_assert_eq(up_post(&U, 3)->conn, up_post(&U, 2)->conn,
                 "a complete chunked answer keeps the connection");
}

/* The upstream closes a kept-alive connection after its answer (no
 * Connection: close): seen at once or while idle, the next request gets a
 * new connection and is sent once. */
Test(upstream_h1, upstream_closing_an_idle_connection)
{
    setup_pool("127.0.0.1", "", "");
    up_script(&U, 0, (struct act){.close_after = true});
    up_script(&U, 2, (struct act){.close_after = true});
    expect_default("ic-1");
    expect_default("ic-2");     /* right away */
    expect_default("ic-3");
    usleep(200000);             /* the close is seen while idle */
    expect_default("ic-4");
    cr_assert_eq(up_posts(&U), 4);
    cr_assert_neq(up_post(&U, 1)->conn, up_post(&U, 0)->conn);
    cr_assert_neq(up_post(&U, 3)->conn, up_post(&U, 2)->conn);
}

/* Bytes on an idle connection (here a 408, as some servers send before
 * closing one) mean it is not reusable: the next request must not read
 * them as its answer. */
Test(upstream_h1, unsolicited_bytes_on_an_idle_connection)
{
    setup_pool("127.0.0.1", "", "");
    up_script(&U, 0, (struct act){.bytes = UP_DEFAULT_ANSWER,
              .late = "HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n"});
    expect_default("ub-1");
    for (int i = 0; i < 500 && atomic_load(&U.lates) == 0; i++)
        usleep(10000);
    cr_assert_eq(atomic_load(&U.lates), 1);
    usleep(200000);     /* the lane sees them */
    expect_default("ub-2");
    cr_assert_eq(up_posts(&U), 2);
    cr_assert_neq(up_post(&U, 1)->conn, up_post(&U, 0)->conn);
}

/* Four requests at once get four connections; four more at once reuse
 * exactly those. (The upstream answers none of a round before it has all
 * four, so they overlap however slow the machine.) */
Test(upstream_h1, concurrent_requests_then_reuse)
{
    setup_pool("127.0.0.1", "", "");
    struct call c[8];
    struct rec r[8];
    char rid[8][16];
    for (int round = 0; round < 2; round++) {
        atomic_store(&U.gate, round * 4 + 4);
        for (int i = round * 4; i < round * 4 + 4; i++) {
            snprintf(rid[i], sizeof rid[i], "cr-%d", i);
            call_start(&c[i], &r[i], SRV_EP_CHAT, BODY, strlen(BODY), rid[i], 0);
        }
        for (int i = round * 4; i < round * 4 + 4; i++) {
            call_end(&c[i]);
            expect_ok(&r[i], 200, "application/json", "{\"ok\":true}", 11);
            rec_free(&r[i]);
        }
    }
    unsigned first = 0, second = 0;
    for (int i = 0; i < 4; i++) {
        first |= 1u << up_post(&U, i)->conn;
        second |= 1u << up_post(&U, i + 4)->conn;
    }
    cr_assert_eq(__builtin_popcount(first), 4, "connections %#x", first);
    cr_assert_eq(second, first, "second round on %#x, first on %#x", second, first);
}

/* ---- 3. a kept-alive connection the upstream closed ------------------------- */

Test(upstream_h1, stale_connection_is_retried_on_a_new_one)
{
    setup_pool("127.0.0.1", "", "");
    up_script(&U, 1, (struct act){.kind = ACT_CLOSE});
    expect_default("st-1");
    expect_default("st-2");
    cr_assert_eq(up_posts(&U), 3, "request st-2 seen twice");
    char a[64], b[64];
    cr_assert_str_eq(up_header(up_post(&U, 1), "X-Request-Id", a, sizeof a), "st-2");
    cr_assert_str_eq(up_header(up_post(&U, 2), "X-Request-Id", b, sizeof b), "st-2");
    cr_assert_eq(up_post(&U, 1)->conn, up_post(&U, 0)->conn,
                 "st-2 went on the kept one");
    cr_assert_neq(up_post(&U, 2)->conn, up_post(&U, 1)->conn,
                  "its retry on a new one");
    cr_assert_eq(up_post(&U, 2)->body_len, strlen(BODY));
}

Test(upstream_h1, fresh_connection_closing_too_fails_once)
{
    setup_pool("127.0.0.1", "", "");
    up_script(&U, 1, (struct act){.kind = ACT_CLOSE});
    up_script(&U, 2, (struct act){.kind = ACT_CLOSE});
    up_script(&U, 3, (struct act){.kind = ACT_CLOSE});
    expect_default("fc-1");
    chat_502("fc-2", "closed the connection before answering: Server returned "
             "nothing (no headers, no data)");
    usleep(300000);     /* time for a wrong third try to show */
    cr_assert_eq(up_posts(&U), 3, "fc-2 tried twice, not %d times",
                 up_posts(&U) - 1);
    cr_assert_neq(up_post(&U, 2)->conn, up_post(&U, 1)->conn);
    /* a fresh connection closing is not retried at all */
    chat_502("fc-3", "closed the connection before answering: Server returned "
             "nothing (no headers, no data)");
    usleep(300000);
    cr_assert_eq(up_posts(&U), 4);
    expect_default("fc-4");
}

Test(upstream_h1, stale_connection_reset_is_retried)
{
    setup_pool("127.0.0.1", "", "");
    up_script(&U, 1, (struct act){.kind = ACT_RESET});
    expect_default("rs-1");
    expect_default("rs-2");
    cr_assert_eq(up_posts(&U), 3, "request rs-2 seen twice");
    cr_assert_eq(up_post(&U, 1)->conn, up_post(&U, 0)->conn);
    cr_assert_neq(up_post(&U, 2)->conn, up_post(&U, 1)->conn);
}

/* The upstream goes away between two requests (its kept connection
 * closed, nothing listening): 502 naming it, no hang. */
Test(upstream_h1, upstream_gone_between_requests)
{
    PROBE_MS = 60000;   /* failed probes must not eject it first */
    setup_pool("127.0.0.1", "", "");
    expect_default("ug-1");
    up_stop(&U);
    struct rec r;
    run_chat("ug-2", &r);
    char want[256];
    snprintf(want, sizeof want, "upstream u0 (%s) could not be reached: "
             "Couldn't connect to server", URL);
    cr_assert_eq(r.err_status, 502, "%d %s", r.err_status, r.err_msg);
    cr_assert_str_eq(r.err_msg, want);
    rec_free(&r);
}

/* ---- 4. the request the upstream sees --------------------------------------- */

static void expect_request(const struct seen *s, const char *line,
                           const char *host, const char *rid, const char *auth,
                           const char *body, size_t n)
{
    char v[256], want[64];
    cr_assert_str_eq(s->line, line);
    cr_assert_str_eq(up_header(s, "Host", v, sizeof v), host);
    cr_assert_str_eq(up_header(s, "X-Request-Id", v, sizeof v), rid);
    cr_assert_str_eq(up_header(s, "Content-Type", v, sizeof v), "application/json");
    if (auth)
        cr_assert_str_eq(up_header(s, "Authorization", v, sizeof v), auth);
    else
        cr_assert_null(up_header(s, "Authorization", v, sizeof v));
    snprintf(want, sizeof want, "%zu", n);
    cr_assert_str_eq(up_header(s, "Content-Length", v, sizeof v), want);
    cr_assert_null(up_header(s, "Accept", v, sizeof v),
                   "an Accept header: libcurl sent this, not the own client");
    cr_assert_null(up_header(s, "Transfer-Encoding", v, sizeof v));
    cr_assert_eq(s->body_len, n);
    cr_assert(s->body && memcmp(s->body, body, n) == 0, "the body differs");
}

Test(upstream_h1, request_line_headers_and_body)
{
    setenv("H1INT_KEY", "sk-h1int-1", 1);
    setup_pool("127.0.0.1", "/prefix", ",api-key-env=H1INT_KEY");
    char host[64], line[128];
    snprintf(host, sizeof host, "127.0.0.1:%d", U.port);
    expect_default("rid-42");
    expect_request(up_post(&U, 0), "POST /prefix/v1/chat/completions HTTP/1.1",
                   host, "rid-42", "Bearer sk-h1int-1", BODY, strlen(BODY));
    /* the other two paths */
    static const char cbody[] = "{\"model\":\"m1\",\"prompt\":\"x\"}";
    struct rec r;
    run_req(SRV_EP_COMPLETION, cbody, strlen(cbody), "rid-43", &r, 0);
    expect_ok(&r, 200, "application/json", "{\"ok\":true}", 11);
    rec_free(&r);
    expect_request(up_post(&U, 1), "POST /prefix/v1/completions HTTP/1.1",
                   host, "rid-43", "Bearer sk-h1int-1", cbody, strlen(cbody));
    static const char ebody[] = "{\"model\":\"m1\",\"input\":\"x\"}";
    run_req(SRV_EP_EMBEDDING, ebody, strlen(ebody), "rid-44", &r, 0);
    expect_ok(&r, 200, "application/json", "{\"ok\":true}", 11);
    rec_free(&r);
    snprintf(line, sizeof line, "POST /prefix/v1/embeddings HTTP/1.1");
    expect_request(up_post(&U, 2), line, host, "rid-44", "Bearer sk-h1int-1",
                   ebody, strlen(ebody));
    unsetenv("H1INT_KEY");
}

Test(upstream_h1, three_megabyte_body_byte_exact)
{
    setup_pool("127.0.0.1", "", "");
    size_t n = 3u << 20;
    char *body = km_malloc(n);
    cr_assert_not_null(body);
    for (size_t i = 0; i < n; i++)
        body[i] = (char)('A' + (i * 7 + i / 4099) % 26);
    struct rec r;
    run_req(SRV_EP_CHAT, body, n, "big-1", &r, 0);
    expect_ok(&r, 200, "application/json", "{\"ok\":true}", 11);
    rec_free(&r);
    char host[64];
    snprintf(host, sizeof host, "127.0.0.1:%d", U.port);
    expect_request(up_post(&U, 0), "POST /v1/chat/completions HTTP/1.1", host,
                   "big-1", NULL, body, n);
    km_free(body);
    expect_default("big-2");
    cr_assert_eq(up_post(&U, 1)->conn, up_post(&U, 0)->conn);
}

Test(upstream_h1, host_name_url_goes_through_own_client)
{
    setup_pool("localhost", "", "");
    expect_default("name-1");
    char host[64];
    snprintf(host, sizeof host, "localhost:%d", U.port);
    expect_request(up_post(&U, 0), "POST /v1/chat/completions HTTP/1.1", host,
                   "name-1", NULL, BODY, strlen(BODY));
}

Test(upstream_h1, ipv6_literal_url)
{
    setup_pool("[::1]", "/p", "");
    expect_default("v6-1");
    expect_default("v6-2");
    char host[64];
    snprintf(host, sizeof host, "[::1]:%d", U.port);
    expect_request(up_post(&U, 0), "POST /p/v1/chat/completions HTTP/1.1", host,
                   "v6-1", NULL, BODY, strlen(BODY));
    cr_assert_eq(up_post(&U, 1)->conn, up_post(&U, 0)->conn);
}

/* The upstream answers as soon as it has the head of a 12 MB request and
 * reads nothing more until the job ended: more than the socket buffers
 * hold, so the request is not fully sent when the answer is complete. The
 * answer is the job's; the connection is closed, not reused. */
Test(upstream_h1, early_answer_during_a_large_body)
{
    setup_pool("127.0.0.1", "", "");
    size_t n = 12u << 20;
    char *body = km_malloc(n);
    cr_assert_not_null(body);
    memset(body, 'z', n);
    up_script(&U, 0, (struct act){.bytes = "HTTP/1.1 200 OK\r\nContent-Type: "
              "application/json\r\nContent-Length: 8\r\n\r\n{\"e\":1}\n",
              .early = true});
    struct rec r;
    run_req(SRV_EP_CHAT, body, n, "ea-1", &r, 0);
    atomic_store(&U.go, true);
    expect_ok(&r, 200, "application/json", "{\"e\":1}\n", 8);
    rec_free(&r);
    km_free(body);
    expect_default("ea-2");
    cr_assert_eq(up_posts(&U), 2);
    cr_assert_neq(up_post(&U, 1)->conn, up_post(&U, 0)->conn);
    cr_assert_null(up_post(&U, 0)->body, "the upstream got the whole body");
}

/* The upstream refuses a 12 MB body after its head (413) and closes with
 * the rest unread, which resets the connection: the client still gets the
 * 413 (the gateway stops sending and reads what the upstream said). */
Test(upstream_h1, early_refusal_then_reset)
{
    setup_pool("127.0.0.1", "", "");
    size_t n = 12u << 20;
    char *body = km_malloc(n);
    cr_assert_not_null(body);
    memset(body, 'z', n);
    static const char resp[] = "HTTP/1.1 413 Payload Too Large\r\n"
        "Content-Type: application/json\r\nConnection: close\r\n"
        "Content-Length: 16\r\n\r\n{\"error\":\"big\"}\n";
    up_script(&U, 0, (struct act){.bytes = resp, .early = true,
                                  .close_after = true});
    struct rec r;
    run_req(SRV_EP_CHAT, body, n, "er-1", &r, 0);
    expect_ok(&r, 413, "application/json", "{\"error\":\"big\"}\n", 16);
    rec_free(&r);
    km_free(body);
    expect_default("er-2");
}

/* A connect that never completes (the upstream's accept queue is full, so
 * the kernel drops our SYN): 504 after connect_timeout_ms, worded as
 * libcurl's; then the upstream accepts again and the next request works. */
Test(upstream_h1, connect_timeout)
{
    CONNECT_MS = 300;
    setup_pool("127.0.0.1", "", "");
    atomic_store(&U.plugged, true);
    usleep(4 * UP_POLL_MS * 1000);          /* out of its last poll */
    cr_assert_eq(listen(U.lfd, 0), 0);      /* room for one waiting connection */
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)U.port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fill[3];
    for (int i = 0; i < 3; i++) {
        fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        cr_assert_geq(fill[i], 0);
        connect(fill[i], (struct sockaddr *)&sa, sizeof sa);
    }
    usleep(50000);
    struct rec r;
    run_chat("ct-1", &r);
    char want[256];
    snprintf(want, sizeof want, "upstream u0 (%s) could not be reached: Timeout "
             "was reached", URL);
    cr_assert_eq(r.err_status, 504, "%d %s", r.err_status, r.err_msg);
    cr_assert_str_eq(r.err_msg, want);
    rec_free(&r);
    cr_assert_eq(up_posts(&U), 0);
    for (int i = 0; i < 3; i++)
        close(fill[i]);
    cr_assert_eq(listen(U.lfd, 64), 0);
    atomic_store(&U.plugged, false);
    expect_default("ct-2");
}

/* ---- 5. malformed and cut responses ----------------------------------------- */

/* A response that goes wrong: what reached the sink before the 502, and
 * whether the next request needs a new connection. */
struct broken {
    const char *rid;
    struct act act;
    int heads;              /* 0, or 1 with status 200 */
    const char *body;
    const char *what;       /* the 502's message after "upstream u0 (URL) " */
    bool new_conn;
};

static const struct broken broken_cases[] = {
    { .rid = "ms", .act = {.bytes = "HTTP/1.1 2x0 OK\r\nContent-Length: 2\r\n\r\n{}"},
      .heads = 0, .body = "",
      .what = "sent a malformed response: not an HTTP/1.x status line: "
              "\"HTTP/1.1 2x0 OK\"" },
    /* the head went out before the body broke */
    { .rid = "bc", .act = {.bytes = "HTTP/1.1 200 OK\r\n"
          "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
          "zz\r\nhello\r\n0\r\n\r\n"},
      .heads = 1, .body = "",
      .what = "sent a malformed response: bad chunk size line \"zz\"" },
    { .rid = "cut", .act = {.bytes = "HTTP/1.1 200 OK\r\n"
          "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
          "0123456789", .close_after = true},
      .heads = 1, .body = "0123456789",
      .what = "broke off the response: Transferred a partial file",
      .new_conn = true },
};

/* Each case on a fresh upstream and pool: the broken answer is a 502, the
 * next request gets the default one. */
Test(upstream_h1, malformed_and_cut_responses_are_502)
{
    for (size_t i = 0; i < sizeof broken_cases / sizeof broken_cases[0]; i++) {
        const struct broken *b = &broken_cases[i];
        char rid[32];
        setup_pool("127.0.0.1", "", "");
        up_script(&U, 0, b->act);
        snprintf(rid, sizeof rid, "%s-1", b->rid);
        chat_broken(rid, b->heads, b->body, b->what);
        snprintf(rid, sizeof rid, "%s-2", b->rid);
        expect_default(rid);
        if (b->new_conn)
            cr_assert_neq(up_post(&U, 1)->conn, up_post(&U, 0)->conn, "%s", rid);
        teardown();
    }
}

Test(upstream_h1, overlong_line_and_head_are_502)
{
    setup_pool("127.0.0.1", "", "");
    struct km_buf a, b;
    km_buf_init(&a, 1u << 20);
    km_buf_init(&b, 1u << 20);
    km_buf_puts(&a, "HTTP/1.1 200 OK\r\nX-Long: ");
    for (int i = 0; i < 9000; i++)
        km_buf_putc(&a, 'x');
    km_buf_puts(&a, "\r\nContent-Length: 2\r\n\r\n{}");
    km_buf_puts(&b, "HTTP/1.1 200 OK\r\n");
    for (int i = 0; i < 80; i++)
        km_buf_printf(&b, "X-F%02d: %01000d\r\n", i, 0);
    cr_assert_eq(km_buf_puts(&b, "Content-Length: 2\r\n\r\n{}"), KM_OK);
    up_script(&U, 0, (struct act){.bytes = a.data, .len = a.len,
                                  .cuts = {4000}});
    up_script(&U, 1, (struct act){.bytes = b.data, .len = b.len,
                                  .cuts = {30000}});
    chat_502("ol-1", "sent a malformed response: a line longer than 8192 bytes");
    chat_502("ol-2", "sent a malformed response: a head or trailer longer than "
             "65536 bytes");
    expect_default("ol-3");
    km_buf_free(&a);
    km_buf_free(&b);
}

/* ---- 6. backpressure -------------------------------------------------------- */

Test(upstream_h1, paused_client_gets_the_whole_chunked_megabyte_in_order)
{
    setup_pool("127.0.0.1", "", "");
    size_t n = 1u << 20;
    char *want = km_malloc(n);
    struct km_buf resp;
    km_buf_init(&resp, 2u << 20);
    cr_assert_not_null(want);
    for (size_t i = 0; i < n; i++)
        want[i] = (char)('a' + (i + i / 26 + i / 5000) % 26);
    km_buf_puts(&resp, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                "Transfer-Encoding: chunked\r\n\r\n");
    static const size_t sizes[] = {1, 7, 4093, 65536, 100000, 16385, 3};
    for (size_t at = 0, k = 0; at < n; k++) {
        size_t c = sizes[k % 7] < n - at ? sizes[k % 7] : n - at;
        km_buf_printf(&resp, "%zx\r\n", c);
        km_buf_append(&resp, want + at, c);
        km_buf_puts(&resp, "\r\n");
        at += c;
    }
    cr_assert_eq(km_buf_puts(&resp, "0\r\n\r\n"), KM_OK);
    up_script(&U, 0, (struct act){.bytes = resp.data, .len = resp.len,
                                  .cuts = {100, 70000, 300000}});
    struct rec r;
    run_req(SRV_EP_CHAT, BODY, strlen(BODY), "bp-1", &r, 200);
    cr_assert_eq(r.full_polls, 0, "the sink was asked while full");
    expect_ok(&r, 200, "text/event-stream", want, n);
    rec_free(&r);
    expect_default("bp-2");
    cr_assert_eq(up_post(&U, 1)->conn, up_post(&U, 0)->conn);
    km_buf_free(&resp);
    km_free(want);
}

Test(upstream_h1, paused_client_gets_a_close_delimited_megabyte)
{
    setup_pool("127.0.0.1", "", "");
    size_t n = 1u << 20;
    struct km_buf resp;
    km_buf_init(&resp, 2u << 20);
    km_buf_puts(&resp, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n");
    size_t head = resp.len;
    for (size_t i = 0; i < n; i++)
        km_buf_putc(&resp, (char)('A' + (i * 3 + i / 777) % 26));
    cr_assert_eq(resp.len, head + n);
    up_script(&U, 0, (struct act){.bytes = resp.data, .len = resp.len,
                                  .cuts = {20, 5000, 200000}, .close_after = true});
    struct rec r;
    run_req(SRV_EP_CHAT, BODY, strlen(BODY), "bq-1", &r, 200);
    cr_assert_eq(r.full_polls, 0);
    expect_ok(&r, 200, "text/plain", resp.data + head, n);
    rec_free(&r);
    km_buf_free(&resp);
    expect_default("bq-2");
}

/* ---- 7. KANOA_UPSTREAM_CLIENT=curl: libcurl carries the same request -------- */

Test(upstream_h1, curl_client_when_asked)
{
    setenv("KANOA_UPSTREAM_CLIENT", "curl", 1);
    setup_pool("127.0.0.1", "", "");
    unsetenv("KANOA_UPSTREAM_CLIENT");
    static const char resp[] =
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
        "d;name=value\r\ndata: first\n\n\r\n0\r\nX-Trailer: t\r\n\r\n";
    up_script(&U, 0, (struct act){.bytes = resp, .cuts = {60, 90}});
    chat_ok("curl-1", 200, "text/event-stream", "data: first\n\n", 13);
    char v[64], host[64];
    const struct seen *s = up_post(&U, 0);
    snprintf(host, sizeof host, "127.0.0.1:%d", U.port);
    cr_assert_str_eq(s->line, "POST /v1/chat/completions HTTP/1.1");
    cr_assert_str_eq(up_header(s, "Host", v, sizeof v), host);
    cr_assert_str_eq(up_header(s, "X-Request-Id", v, sizeof v), "curl-1");
    cr_assert_str_eq(up_header(s, "Accept", v, sizeof v), "*/*", "libcurl's header");
    cr_assert_eq(s->body_len, strlen(BODY));
    cr_assert_str_eq(s->body, BODY);
    expect_default("curl-2");
}
