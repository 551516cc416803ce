/* test_server.c - the HTTP server end to end: a server started in-process
 * on a free loopback port with the scripted backend (tests/helpers), driven
 * by libcurl. Every assertion is on exact statuses, headers and bodies. */
#include "base/buf.h"
#include "base/mem.h"
#include "server/server.h"
#include "helpers/server_scripted.h"

#include <criterion/criterion.h>
#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

TestSuite(server, .timeout = 60);

struct resp {
    long status;
    struct km_buf body;
    struct km_buf head;
};

static struct srv_server *srv;
static struct srv_backend be;
static char base[64];

static size_t on_body(char *p, size_t sz, size_t n, void *ud)
{
    km_buf_append(ud, p, sz * n);
    return sz * n;
}

/* A server on a free loopback port (keepalive 0.3 s) with no backend yet;
 * settings are name/value pairs ending in NULL. */
static void create(const char *const *settings)
{
    struct srv_config cfg;
    struct km_err err;
    srv_config_init(&cfg);
    cr_assert_eq(srv_config_set(&cfg, SRV_LAYER_FLAG, "port", "0", &err), 0);
    cr_assert_eq(srv_config_set(&cfg, SRV_LAYER_FLAG, "keepalive", "0.3", &err), 0);
    for (size_t i = 0; settings && settings[i]; i += 2)
        cr_assert_eq(srv_config_set(&cfg, SRV_LAYER_FLAG, settings[i],
                                    settings[i + 1], &err), 0, "%s", err.msg);
    cr_assert_eq(srv_server_new(&cfg, &srv, &err), 0, "%s", err.msg);
    srv_config_free(&cfg);
}

static void serve(void)
{
    struct km_err err;
    cr_assert_eq(srv_server_start(srv, &err), 0, "%s", err.msg);
    snprintf(base, sizeof base, "http://127.0.0.1:%d", srv_server_port(srv));
}

/* create + the scripted backend + serve */
static void start(const char *const *settings)
{
    struct km_err err;
    create(settings);
    be = scripted_backend_new();
    cr_assert_eq(srv_server_add_backend(srv, be, &err), 0);
    serve();
}

static void stop(void)
{
    srv_server_free(srv);
    srv = NULL;
}

/* One request; headers is a NULL-terminated list of "Name: value". */
static struct resp req(const char *method, const char *path, const char *body,
                       const char *const *headers)
{
    struct resp r = {0};
    km_buf_init(&r.body, 64 << 20);
    km_buf_init(&r.head, 1 << 20);
    char url[256];
    snprintf(url, sizeof url, "%s%s", base, path);
    CURL *h = curl_easy_init();
    struct curl_slist *hl = NULL;
    bool own_ct = false;
    for (size_t i = 0; headers && headers[i]; i++) {
        hl = curl_slist_append(hl, headers[i]);
        own_ct |= strncasecmp(headers[i], "Content-Type:", 13) == 0;
    }
    if (body && !own_ct)
        hl = curl_slist_append(hl, "Content-Type: application/json");
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    if (body)
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &r.body);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &r.head);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 20L);
    CURLcode rc = curl_easy_perform(h);
    cr_assert_eq(rc, CURLE_OK, "%s %s: %s", method, path, curl_easy_strerror(rc));
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r.status);
    curl_slist_free_all(hl);
    curl_easy_cleanup(h);
    return r;
}

static void resp_free(struct resp *r)
{
    km_buf_free(&r->body);
    km_buf_free(&r->head);
}

static json_t *body_json(const struct resp *r)
{
    json_error_t e;
    json_t *j = json_loadb(r->body.data, r->body.len, 0, &e);
    cr_assert_not_null(j, "not JSON (%s): %s", e.text, km_buf_str(&r->body));
    return j;
}

/* status + the error envelope's param and message */
static void expect_error(const char *method, const char *path, const char *body,
                         long status, const char *param, const char *msg_part)
{
    struct resp r = req(method, path, body, NULL);
    cr_assert_eq(r.status, status, "%s %s -> %ld: %s", method, path, r.status,
                 km_buf_str(&r.body));
    json_t *j = body_json(&r);
    json_t *e = json_object_get(j, "error");
    cr_assert(json_is_object(e), "%s", km_buf_str(&r.body));
    cr_assert_eq(json_integer_value(json_object_get(e, "code")), status);
    cr_assert(json_is_string(json_object_get(e, "type")));
    json_t *p = json_object_get(e, "param");
    if (param)
        cr_assert_str_eq(json_string_value(p), param, "%s", km_buf_str(&r.body));
    else
        cr_assert(json_is_null(p), "%s", km_buf_str(&r.body));
    if (msg_part)
        cr_assert(strstr(json_string_value(json_object_get(e, "message")), msg_part),
                  "%s", km_buf_str(&r.body));
    json_decref(j);
    resp_free(&r);
}

static const char *header(const struct resp *r, const char *name, char *out,
                          size_t cap)
{
    const char *h = km_buf_str(&r->head);
    size_t n = strlen(name);
    for (const char *p = h; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        if (strncasecmp(p, name, n) == 0 && p[n] == ':') {
            const char *v = p + n + 1;
            while (*v == ' ')
                v++;
            size_t len = strcspn(v, "\r\n");
            snprintf(out, cap, "%.*s", (int)len, v);
            return out;
        }
    }
    return NULL;
}

/* An easy handle that POSTs body (JSON, header list hl) to the chat
 * endpoint, writing the response into sink when it is not NULL. */
static CURL *chat_handle(const char *body, struct curl_slist *hl, struct km_buf *sink)
{
    char url[128];
    CURL *h = curl_easy_init();
    snprintf(url, sizeof url, "%s/v1/chat/completions", base);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    if (sink) {
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, sink);
    }
    return h;
}

/* Drive m until the scripted backend has a job in flight (2 s at most);
 * returns how many are active. */
static long run_until_active(CURLM *m, int *running)
{
    struct scripted_stats st = {0};
    for (int i = 0; i < 200 && st.active == 0; i++) {
        curl_multi_perform(m, running);
        curl_multi_poll(m, NULL, 0, 10, NULL);
        scripted_get_stats(&be, &st);
    }
    return st.active;
}

#define CHAT(extra) "{\"model\":\"scripted-chat\",\"messages\":[{\"role\":" \
                    "\"user\",\"content\":\"hi there\"}]" extra "}"

Test(server, health_version_and_models)
{
    start(NULL);
    struct resp r = req("GET", "/health", NULL, NULL);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(km_buf_str(&r.body), "{\"status\":\"ok\"}");
    resp_free(&r);
    scripted_set_loading(&be, 0.5);
    r = req("GET", "/health", NULL, NULL);
    cr_assert_eq(r.status, 503);
    cr_assert_str_eq(km_buf_str(&r.body), "{\"status\":\"loading\",\"progress\":0.5}");
    resp_free(&r);
    scripted_set_loading(&be, -1);
    r = req("GET", "/version", NULL, NULL);
    cr_assert_str_eq(km_buf_str(&r.body), "{\"version\":\"0.1.0\"}");
    resp_free(&r);
    r = req("GET", "/v1/models", NULL, NULL);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(km_buf_str(&r.body),
        "{\"object\":\"list\",\"data\":[{\"id\":\"scripted-chat\",\"object\":"
        "\"model\",\"created\":1700000000,\"owned_by\":\"kanoa-test\",\"root\":"
        "\"scripted-chat\",\"parent\":null,\"max_model_len\":4096,\"permission\":"
        "[],\"task\":\"generate\"},{\"id\":\"scripted-embed\",\"object\":\"model\","
        "\"created\":1700000000,\"owned_by\":\"kanoa-test\",\"root\":"
        "\"scripted-embed\",\"parent\":null,\"max_model_len\":512,\"permission\":"
        "[],\"task\":\"embed\"}]}");
    resp_free(&r);
    stop();
}

Test(server, chat_completion_whole)
{
    start(NULL);
    struct resp r = req("POST", "/v1/chat/completions", CHAT(""), NULL);
    cr_assert_eq(r.status, 200, "%s", km_buf_str(&r.body));
    json_t *j = body_json(&r);
    cr_assert_str_eq(json_string_value(json_object_get(j, "object")), "chat.completion");
    cr_assert_eq(strncmp(json_string_value(json_object_get(j, "id")), "chatcmpl-", 9), 0);
    cr_assert_str_eq(json_string_value(json_object_get(j, "model")), "scripted-chat");
    json_t *c0 = json_array_get(json_object_get(j, "choices"), 0);
    json_t *msg = json_object_get(c0, "message");
    cr_assert_str_eq(json_string_value(json_object_get(msg, "role")), "assistant");
    cr_assert_str_eq(json_string_value(json_object_get(msg, "content")), "Hello, world!");
    cr_assert_str_eq(json_string_value(json_object_get(c0, "finish_reason")), "stop");
    json_t *u = json_object_get(j, "usage");
    cr_assert_eq(json_integer_value(json_object_get(u, "prompt_tokens")), 2);
    cr_assert_eq(json_integer_value(json_object_get(u, "completion_tokens")), 4);
    cr_assert_eq(json_integer_value(json_object_get(u, "total_tokens")), 6);
    json_decref(j);
    resp_free(&r);
    /* max_completion_tokens wins over max_tokens; cut = "length" */
    r = req("POST", "/v1/chat/completions",
            CHAT(",\"max_tokens\":3,\"max_completion_tokens\":2"), NULL);
    j = body_json(&r);
    c0 = json_array_get(json_object_get(j, "choices"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(c0, "message"),
                                                       "content")), "Hello,");
    cr_assert_str_eq(json_string_value(json_object_get(c0, "finish_reason")), "length");
    json_decref(j);
    resp_free(&r);
    stop();
}

/* The exact SSE byte stream minus ids/created, which are checked apart. */
Test(server, chat_stream_with_usage)
{
    start(NULL);
    struct resp r = req("POST", "/v1/chat/completions",
                        CHAT(",\"stream\":true,\"stream_options\":{\"include_usage\":true}"),
                        NULL);
    cr_assert_eq(r.status, 200);
    char ct[64];
    cr_assert_str_eq(header(&r, "Content-Type", ct, sizeof ct), "text/event-stream");
    const char *b = km_buf_str(&r.body);
    const char *expect[] = {
        "{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}",
        "{\"index\":0,\"delta\":{\"content\":\"Hello\"},\"logprobs\":null,\"finish_reason\":null}",
        "{\"index\":0,\"delta\":{\"content\":\",\"},\"logprobs\":null,\"finish_reason\":null}",
        "{\"index\":0,\"delta\":{\"content\":\" world\"},\"logprobs\":null,\"finish_reason\":null}",
        "{\"index\":0,\"delta\":{\"content\":\"!\"},\"logprobs\":null,\"finish_reason\":\"stop\"}",
    };
    const char *p = b;
    for (size_t i = 0; i < 5; i++) {
        cr_assert_eq(strncmp(p, "data: {\"id\":\"chatcmpl-", 22), 0, "event %zu: %s", i, p);
        const char *q = strstr(p, "\"choices\":[");
        cr_assert_not_null(q);
        cr_assert_eq(strncmp(q + 11, expect[i], strlen(expect[i])), 0,
                     "event %zu: %s", i, q);
        cr_assert_not_null(strstr(p, "\"object\":\"chat.completion.chunk\""));
        p = strstr(p, "\n\n") + 2;
    }
    cr_assert_not_null(strstr(p, "\"choices\":[],\"usage\":{\"prompt_tokens\":2,"
                                 "\"total_tokens\":6,\"completion_tokens\":4}}\n\n"), "%s", p);
    p = strstr(p, "\n\n") + 2;
    cr_assert_str_eq(p, "data: [DONE]\n\n");
    resp_free(&r);
    /* without include_usage: no usage chunk */
    r = req("POST", "/v1/chat/completions", CHAT(",\"stream\":true"), NULL);
    cr_assert_null(strstr(km_buf_str(&r.body), "\"usage\""));
    cr_assert_not_null(strstr(km_buf_str(&r.body), "data: [DONE]\n\n"));
    resp_free(&r);
    stop();
}

Test(server, completions_embeddings_tokenize)
{
    start(NULL);
    struct resp r = req("POST", "/v1/completions",
                        "{\"model\":\"scripted-chat\",\"prompt\":\"a b c\",\"max_tokens\":2}", NULL);
    json_t *j = body_json(&r);
    json_t *c0 = json_array_get(json_object_get(j, "choices"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(j, "object")), "text_completion");
    cr_assert_str_eq(json_string_value(json_object_get(c0, "text")), "Hello,");
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(j, "usage"),
                                                    "prompt_tokens")), 3);
    json_decref(j);
    resp_free(&r);
    r = req("POST", "/v1/embeddings",
            "{\"model\":\"scripted-embed\",\"input\":[\"abc\",\"de\"]}", NULL);
    cr_assert_eq(r.status, 200, "%s", km_buf_str(&r.body));
    j = body_json(&r);
    json_t *d1 = json_array_get(json_object_get(j, "data"), 1);
    cr_assert_eq(json_integer_value(json_object_get(d1, "index")), 1);
    cr_assert_float_eq(json_real_value(json_array_get(json_object_get(d1, "embedding"), 3)),
                       0.5, 1e-6);
    json_decref(j);
    resp_free(&r);
    /* base64 of float32 LE {0.3,0.4}: 9a 99 99 3e cd cc cc 3e */
    r = req("POST", "/v1/embeddings", "{\"model\":\"scripted-embed\",\"input\":\"abc\","
            "\"dimensions\":2,\"encoding_format\":\"base64\"}", NULL);
    j = body_json(&r);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(
                         json_object_get(j, "data"), 0), "embedding")), "mpmZPs3MzD4=");
    json_decref(j);
    resp_free(&r);
    r = req("POST", "/tokenize", "{\"model\":\"scripted-chat\",\"prompt\":\"AB\"}", NULL);
    cr_assert_str_eq(km_buf_str(&r.body), "{\"count\":2,\"max_model_len\":4096,"
                     "\"tokens\":[65,66],\"token_strs\":null}");
    resp_free(&r);
    r = req("POST", "/tokenize", "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}]}",
            NULL);
    cr_assert_eq(r.status, 200); /* the only generate model is the default */
    cr_assert_not_null(strstr(km_buf_str(&r.body), "\"tokens\":[72,105]"));
    resp_free(&r);
    r = req("POST", "/tokenize", "{\"model\":\"scripted-chat\",\"messages\":[{\"role\":"
            "\"user\",\"content\":\"Hi\"}]}", NULL);
    cr_assert_str_eq(km_buf_str(&r.body), "{\"count\":2,\"max_model_len\":4096,"
                     "\"tokens\":[72,105],\"token_strs\":null}");
    resp_free(&r);
    r = req("POST", "/detokenize", "{\"model\":\"scripted-chat\",\"tokens\":[72,105]}", NULL);
    cr_assert_str_eq(km_buf_str(&r.body), "{\"prompt\":\"Hi\"}");
    resp_free(&r);
    stop();
}

Test(server, validation_errors_name_the_field)
{
    start(NULL);
    expect_error("POST", "/v1/chat/completions", CHAT(",\"temperature\":-1"), 400,
                 "temperature", "temperature");
    expect_error("POST", "/v1/chat/completions", CHAT(",\"top_p\":\"x\""), 400,
                 "top_p", "must be a number");
    expect_error("POST", "/v1/chat/completions", CHAT(",\"max_tokens\":0"), 400,
                 "max_tokens", NULL);
    expect_error("POST", "/v1/chat/completions", CHAT(",\"n\":1.5"), 400, "n",
                 "integer");
    expect_error("POST", "/v1/chat/completions", CHAT(",\"stream_options\":{}"), 400,
                 "stream_options", "stream");
    expect_error("POST", "/v1/chat/completions", CHAT(",\"top_logprobs\":2"), 400,
                 "top_logprobs", NULL);
    expect_error("POST", "/v1/chat/completions", CHAT(",\"stop_token_ids\":[1,-2]"),
                 400, "stop_token_ids", NULL);
    expect_error("POST", "/v1/chat/completions",
                 "{\"model\":\"scripted-chat\",\"messages\":[{\"role\":\"user\","
                 "\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":"
                 "\"https://x/y.png\"}}]}]}", 400,
                 "messages[0].content[0].image_url.url", "data: URL");
    expect_error("POST", "/v1/chat/completions",
                 "{\"model\":\"scripted-chat\",\"messages\":[{\"role\":\"user\","
                 "\"content\":[{\"type\":\"audio\"}]}]}", 400,
                 "messages[0].content[0].type", NULL);
    expect_error("POST", "/v1/chat/completions", "{\"model\":\"scripted-chat\"}",
                 400, "messages", "required");
    expect_error("POST", "/v1/chat/completions", "{\"model\":", 400, NULL,
                 "invalid JSON");
    expect_error("POST", "/v1/completions",
                 "{\"model\":\"scripted-chat\",\"prompt\":\"x\",\"suffix\":\"y\"}",
                 400, "suffix", NULL);
    expect_error("POST", "/v1/embeddings",
                 "{\"model\":\"scripted-embed\",\"input\":\"x\",\"encoding_format\":\"hex\"}",
                 400, "encoding_format", NULL);
    expect_error("POST", "/v1/chat/completions",
                 "{\"model\":\"nope\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
                 404, "model", "The model `nope` does not exist.");
    expect_error("POST", "/v1/embeddings", "{\"model\":\"scripted-chat\",\"input\":\"x\"}",
                 400, "model", NULL);
    stop();
}

Test(server, valid_multimodal_and_vllm_extras)
{
    start(NULL);
    struct resp r = req("POST", "/v1/chat/completions",
        "{\"model\":\"scripted-chat\",\"messages\":[{\"role\":\"system\",\"content\":"
        "\"be brief\"},{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":"
        "\"what is this\"},{\"type\":\"image_url\",\"image_url\":{\"url\":"
        "\"data:image/png;base64,iVBORw0KGgo=\"}}]}],\"top_k\":40,\"min_p\":0.05,"
        "\"repetition_penalty\":1.1,\"stop_token_ids\":[2],\"ignore_eos\":false,"
        "\"min_tokens\":1,\"seed\":-7,\"stop\":\"###\",\"unknown_field\":{\"a\":1},"
        "\"logprobs\":true,\"top_logprobs\":1}", NULL);
    cr_assert_eq(r.status, 200, "%s", km_buf_str(&r.body));
    json_t *j = body_json(&r);
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(j, "usage"),
                                                    "prompt_tokens")), 6);
    json_t *lp = json_object_get(json_object_get(json_array_get(
        json_object_get(j, "choices"), 0), "logprobs"), "content");
    cr_assert_eq(json_array_size(lp), 4);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(lp, 0), "token")),
                     "Hello");
    cr_assert_eq(json_array_size(json_object_get(json_array_get(lp, 0), "top_logprobs")), 1);
    json_decref(j);
    resp_free(&r);
    stop();
}

Test(server, http_level_errors)
{
    start((const char *const[]){"max-body", "4K", NULL});
    expect_error("GET", "/nope", NULL, 404, NULL, "Not Found");
    expect_error("GET", "/v1/chat/completions", NULL, 405, NULL, NULL);
    struct resp r = req("DELETE", "/v1/models", NULL, NULL);
    char v[128];
    cr_assert_eq(r.status, 405);
    cr_assert_str_eq(header(&r, "Allow", v, sizeof v), "GET, OPTIONS");
    resp_free(&r);
    r = req("POST", "/v1/chat/completions", CHAT(""),
            (const char *const[]){"Content-Type: text/plain", NULL});
    cr_assert_eq(r.status, 415);
    resp_free(&r);
    char *big = km_malloc(8192);
    memset(big, ' ', 8191);
    big[0] = '{';
    big[8190] = '}';
    big[8191] = '\0';
    r = req("POST", "/v1/chat/completions", big, NULL);
    cr_assert_eq(r.status, 413);
    cr_assert_not_null(strstr(km_buf_str(&r.body), "exceeds the limit of 4096 bytes"));
    resp_free(&r);
    km_free(big);
    stop();
}

Test(server, api_keys_request_ids_and_cors)
{
    start((const char *const[]){"api-key", "k1", "api-key", "k2", "cors-origin",
                                "http://app.test", NULL});
    struct resp r = req("GET", "/v1/models", NULL, NULL);
    char v[128];
    cr_assert_eq(r.status, 401);
    cr_assert_str_eq(header(&r, "WWW-Authenticate", v, sizeof v), "Bearer");
    cr_assert_not_null(strstr(km_buf_str(&r.body), "\"code\":401"));
    resp_free(&r);
    r = req("GET", "/v1/models", NULL,
            (const char *const[]){"Authorization: Bearer k2", "X-Request-Id: abc-123", NULL});
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(header(&r, "X-Request-Id", v, sizeof v), "abc-123");
    resp_free(&r);
    r = req("GET", "/v1/models", NULL, (const char *const[]){"Authorization: Bearer k3", NULL});
    cr_assert_eq(r.status, 401);
    cr_assert_eq(strlen(header(&r, "X-Request-Id", v, sizeof v)), 32);
    resp_free(&r);
    r = req("GET", "/health", NULL, NULL); /* public */
    cr_assert_eq(r.status, 200);
    resp_free(&r);
    r = req("GET", "/metrics", NULL, NULL); /* public without --protect-metrics */
    cr_assert_eq(r.status, 200);
    resp_free(&r);
    r = req("OPTIONS", "/v1/chat/completions", NULL,
            (const char *const[]){"Origin: http://app.test",
                                  "Access-Control-Request-Method: POST",
                                  "Access-Control-Request-Headers: authorization,content-type",
                                  NULL});
    cr_assert_eq(r.status, 204);
    cr_assert_str_eq(header(&r, "Access-Control-Allow-Origin", v, sizeof v), "http://app.test");
    cr_assert_str_eq(header(&r, "Access-Control-Allow-Headers", v, sizeof v),
                     "authorization,content-type");
    resp_free(&r);
    r = req("OPTIONS", "/v1/chat/completions", NULL,
            (const char *const[]){"Origin: http://evil.test",
                                  "Access-Control-Request-Method: POST", NULL});
    cr_assert_eq(r.status, 400);
    cr_assert_null(header(&r, "Access-Control-Allow-Origin", v, sizeof v));
    resp_free(&r);
    stop();
}

Test(server, protect_metrics)
{
    start((const char *const[]){"api-key", "k1", "protect-metrics", "true", NULL});
    struct resp r = req("GET", "/metrics", NULL, NULL);
    cr_assert_eq(r.status, 401);
    resp_free(&r);
    r = req("GET", "/metrics", NULL, (const char *const[]){"Authorization: Bearer k1", NULL});
    cr_assert_eq(r.status, 200);
    resp_free(&r);
    r = req("GET", "/health", NULL, NULL);
    cr_assert_eq(r.status, 401);
    cr_assert_not_null(strstr(km_buf_str(&r.body), "\"error\""), "401 uses the envelope: %s", km_buf_str(&r.body));
    resp_free(&r);
    r = req("GET", "/health", NULL, (const char *const[]){"Authorization: Bearer k1", NULL});
    cr_assert_eq(r.status, 200);
    resp_free(&r);
    stop();
}

static long long metric(const char *text, const char *line_prefix)
{
    const char *p = strstr(text, line_prefix);
    cr_assert_not_null(p, "no metric %s", line_prefix);
    return atoll(p + strlen(line_prefix));
}

Test(server, metrics_from_real_events)
{
    start(NULL);
    for (int i = 0; i < 2; i++) {
        struct resp r = req("POST", "/v1/chat/completions", CHAT(""), NULL);
        resp_free(&r);
    }
    struct resp r = req("POST", "/v1/chat/completions", CHAT(",\"max_tokens\":1"), NULL);
    resp_free(&r);
    r = req("GET", "/metrics", NULL, NULL);
    char ct[80];
    cr_assert_str_eq(header(&r, "Content-Type", ct, sizeof ct),
                     "text/plain; version=0.0.4; charset=utf-8");
    const char *t = km_buf_str(&r.body);
    /* name, labels after the engine/model ones, value */
    static const struct { const char *name, *labels; long long want; } vllm[] = {
        {"prompt_tokens_total", "", 6},
        {"generation_tokens_total", "", 9},
        {"request_success_total", ",finished_reason=\"stop\"", 2},
        {"request_success_total", ",finished_reason=\"length\"", 1},
        {"time_to_first_token_seconds_count", "", 3},
        {"inter_token_latency_seconds_count", "", 6},
        {"e2e_request_latency_seconds_bucket", ",le=\"+Inf\"", 3},
        {"num_requests_running", "", 0},
    };
    for (size_t i = 0; i < sizeof vllm / sizeof vllm[0]; i++) {
        char k[256];
        snprintf(k, sizeof k, "vllm:%s{engine=\"0\",model_name=\"scripted-chat\"%s} ",
                 vllm[i].name, vllm[i].labels);
        cr_assert_eq(metric(t, k), vllm[i].want, "%s", k);
    }
    cr_assert_not_null(strstr(t, "vllm:kv_cache_usage_perc{engine=\"0\",model_name=\"scripted-chat\"} 0.25\n"));
    cr_assert_not_null(strstr(t, "# TYPE vllm:time_to_first_token_seconds histogram\n"));
    cr_assert_not_null(strstr(t, "vllm:time_to_first_token_seconds_bucket{engine=\"0\","
                                 "model_name=\"scripted-chat\",le=\"2560.0\"} 3\n"));
    cr_assert_eq(metric(t, "http_requests_total{handler=\"/v1/chat/completions\","
                           "method=\"POST\",status=\"200\"} "), 3);
    cr_assert_not_null(strstr(t, "http_request_duration_seconds_bucket{handler="
                                 "\"/v1/chat/completions\",method=\"POST\",le=\"0.1\"}"));
    resp_free(&r);
    stop();
}

static void wait_stats(long canceled, long active)
{
    struct scripted_stats st;
    for (int i = 0; i < 400; i++) {
        scripted_get_stats(&be, &st);
        if (st.canceled == canceled && st.active == active)
            return;
        usleep(10000);
    }
    cr_assert_fail("scripted stats: canceled %ld active %ld, want %ld %ld",
                   st.canceled, st.active, canceled, active);
}

Test(server, disconnect_cancels_the_backend_job)
{
    start(NULL);
    /* curl gives up after 500 ms; the server must see the close and cancel */
    struct curl_slist *hl = curl_slist_append(NULL, "Content-Type: application/json");
    CURL *h = chat_handle("{\"model\":\"scripted-chat\",\"messages\":[{\"role\":\"user\","
                          "\"content\":\"[hang]\"}]}", hl, NULL);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 500L);
    cr_assert_eq(curl_easy_perform(h), CURLE_OPERATION_TIMEDOUT);
    curl_slist_free_all(hl);
    curl_easy_cleanup(h);
    wait_stats(1, 0);
    stop();
}

Test(server, overload_gives_429_with_retry_after)
{
    start((const char *const[]){"max-concurrent", "1", "max-queue", "0", NULL});
    CURLM *m = curl_multi_init();
    struct curl_slist *hl = curl_slist_append(NULL, "Content-Type: application/json");
    struct km_buf sink;
    km_buf_init(&sink, 1 << 20);
    CURL *h = chat_handle("{\"model\":\"scripted-chat\",\"messages\":[{\"role\":\"user\","
                          "\"content\":\"[delay:2000]\"}],\"max_tokens\":1}", hl, &sink);
    curl_multi_add_handle(m, h);
    int running = 1;
    cr_assert_eq(run_until_active(m, &running), 1);
    struct resp r = req("POST", "/v1/chat/completions", CHAT(""), NULL);
    char v[32];
    cr_assert_eq(r.status, 429, "%s", km_buf_str(&r.body));
    cr_assert_str_eq(header(&r, "Retry-After", v, sizeof v), "1");
    resp_free(&r);
    while (running) {
        curl_multi_perform(m, &running);
        curl_multi_poll(m, NULL, 0, 50, NULL);
    }
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    cr_assert_eq(status, 200);
    cr_assert_not_null(strstr(km_buf_str(&sink), "\"finish_reason\":\"length\""));
    km_buf_free(&sink);
    curl_multi_remove_handle(m, h);
    curl_easy_cleanup(h);
    curl_multi_cleanup(m);
    curl_slist_free_all(hl);
    stop();
}

Test(server, queued_request_runs_when_a_slot_frees)
{
    start((const char *const[]){"max-concurrent", "1", "max-queue", "4", NULL});
    CURLM *m = curl_multi_init();
    CURL *h[3];
    struct km_buf out[3];
    struct curl_slist *hl = curl_slist_append(NULL, "Content-Type: application/json");
    for (int i = 0; i < 3; i++) {
        km_buf_init(&out[i], 1 << 20);
        h[i] = chat_handle("{\"model\":\"scripted-chat\",\"messages\":[{\"role\":"
                           "\"user\",\"content\":\"[delay:50]\"}]}", hl, &out[i]);
        curl_multi_add_handle(m, h[i]);
    }
    int running = 3;
    for (int i = 0; i < 1000 && running; i++) {
        curl_multi_perform(m, &running);
        curl_multi_poll(m, NULL, 0, 20, NULL);
    }
    for (int i = 0; i < 3; i++) {
        long status = 0;
        curl_easy_getinfo(h[i], CURLINFO_RESPONSE_CODE, &status);
        cr_assert_eq(status, 200);
        cr_assert_not_null(strstr(km_buf_str(&out[i]), "\"content\":\"Hello, world!\""));
        curl_multi_remove_handle(m, h[i]);
        curl_easy_cleanup(h[i]);
        km_buf_free(&out[i]);
    }
    curl_multi_cleanup(m);
    curl_slist_free_all(hl);
    struct scripted_stats st;
    scripted_get_stats(&be, &st);
    cr_assert_eq(st.submitted, 3);
    stop();
}

Test(server, keepalive_comments_while_waiting)
{
    start(NULL); /* keepalive 0.3 s */
    struct resp r = req("POST", "/v1/chat/completions",
                        "{\"model\":\"scripted-chat\",\"stream\":true,\"max_tokens\":2,"
                        "\"messages\":[{\"role\":\"user\",\"content\":\"[delay:900]\"}]}",
                        NULL);
    cr_assert_eq(r.status, 200);
    const char *b = km_buf_str(&r.body);
    cr_assert_eq(strncmp(b, ": keep-alive\n\n", 14), 0, "%s", b);
    cr_assert_not_null(strstr(b, "data: [DONE]\n\n"));
    resp_free(&r);
    stop();
}

Test(server, backend_error_mid_stream_and_before)
{
    start(NULL);
    struct resp r = req("POST", "/v1/chat/completions",
                        "{\"model\":\"scripted-chat\",\"messages\":[{\"role\":\"user\","
                        "\"content\":\"[error:503]\"}]}", NULL);
    cr_assert_eq(r.status, 503);
    cr_assert_not_null(strstr(km_buf_str(&r.body), "\"message\":\"scripted failure\""));
    resp_free(&r);
    r = req("POST", "/v1/chat/completions",
            "{\"model\":\"scripted-chat\",\"messages\":[{\"role\":\"user\","
            "\"content\":\"[reject]\"}]}", NULL);
    cr_assert_eq(r.status, 400);
    cr_assert_not_null(strstr(km_buf_str(&r.body), "scripted rejection"));
    resp_free(&r);
    r = req("POST", "/v1/chat/completions",
            "{\"model\":\"scripted-chat\",\"stream\":true,\"messages\":[{\"role\":\"user\","
            "\"content\":\"[tokens:3][error:500]\"}]}", NULL);
    cr_assert_eq(r.status, 200); /* committed: the error travels in the stream */
    cr_assert_not_null(strstr(km_buf_str(&r.body), "data: {\"error\":{\"message\":"
                                                   "\"scripted failure\""));
    cr_assert_not_null(strstr(km_buf_str(&r.body), "data: [DONE]\n\n"));
    resp_free(&r);
    stop();
}

static void retrieve(void *ud, const struct srv_route_req *rq, struct srv_route_resp *rs)
{
    const char *q = json_string_value(json_object_get(rq->body, "query"));
    if (!q) {
        rs->status = 400;
        snprintf(rs->message, sizeof rs->message, "query must be a string");
        snprintf(rs->param, sizeof rs->param, "query");
        return;
    }
    rs->json = json_pack("{s:s,s:i}", "echo", q, "n", *(int *)ud);
}

Test(server, added_json_route)
{
    struct km_err err;
    static int seven = 7;
    create((const char *const[]){"api-key", "k", NULL});
    cr_assert_eq(srv_server_add_route(srv, "POST", "/v1/retrieve", retrieve, &seven, &err), 0);
    cr_assert_eq(srv_server_add_route(srv, "POST", "/v1/retrieve", retrieve, &seven, &err),
                 KM_EINVAL);
    serve();
    const char *const auth[] = {"Authorization: Bearer k", NULL};
    struct resp r = req("POST", "/v1/retrieve", "{\"query\":\"q1\"}", auth);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(km_buf_str(&r.body), "{\"echo\":\"q1\",\"n\":7}");
    resp_free(&r);
    r = req("POST", "/v1/retrieve", "{\"query\":1}", auth);
    cr_assert_eq(r.status, 400);
    cr_assert_str_eq(km_buf_str(&r.body), "{\"error\":{\"message\":\"query must be a "
                     "string\",\"type\":\"BadRequestError\",\"param\":\"query\",\"code\":400}}");
    resp_free(&r);
    r = req("POST", "/v1/retrieve", "{\"query\":\"q1\"}", NULL);
    cr_assert_eq(r.status, 401);
    resp_free(&r);
    stop();
}

struct client_ctx {
    CURLM *m;
    int *running;
};

static void *client(void *arg)
{
    struct client_ctx *c = arg;
    while (*c->running) {
        curl_multi_perform(c->m, c->running);
        curl_multi_poll(c->m, NULL, 0, 20, NULL);
    }
    return NULL;
}

Test(server, drain_waits_for_in_flight)
{
    start(NULL);
    CURLM *m = curl_multi_init();
    struct km_buf out;
    km_buf_init(&out, 1 << 20);
    struct curl_slist *hl = curl_slist_append(NULL, "Content-Type: application/json");
    CURL *h = chat_handle("{\"model\":\"scripted-chat\",\"messages\":[{\"role\":\"user\","
                          "\"content\":\"[delay:100]\"}]}", hl, &out);
    curl_multi_add_handle(m, h);
    int running = 1;
    run_until_active(m, &running);
    /* the client keeps reading on its own thread while we drain */
    pthread_t th;
    struct client_ctx cx = {m, &running};
    pthread_create(&th, NULL, client, &cx);
    cr_assert_eq(srv_server_drain(srv, 10), KM_OK);
    pthread_join(th, NULL);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    cr_assert_eq(status, 200);
    cr_assert_not_null(strstr(km_buf_str(&out), "Hello, world!"));
    curl_multi_remove_handle(m, h);
    curl_easy_cleanup(h);
    curl_multi_cleanup(m);
    curl_slist_free_all(hl);
    km_buf_free(&out);
    stop();
}

Test(server, request_timeout_cancels_with_504)
{
    start((const char *const[]){"request-timeout", "0.4", NULL});
    struct resp r = req("POST", "/v1/chat/completions",
                        "{\"model\":\"scripted-chat\",\"messages\":[{\"role\":\"user\","
                        "\"content\":\"[hang]\"}]}", NULL);
    cr_assert_eq(r.status, 504, "%s", km_buf_str(&r.body));
    cr_assert_not_null(strstr(km_buf_str(&r.body), "request timed out after 0.4 s"));
    resp_free(&r);
    wait_stats(1, 0);
    stop();
}

Test(server, backend_added_while_serving)
{
    struct km_err err;
    create(NULL);
    serve();
    struct resp r = req("GET", "/v1/models", NULL, NULL);
    cr_assert_str_eq(km_buf_str(&r.body), "{\"object\":\"list\",\"data\":[]}");
    resp_free(&r);
    be = scripted_backend_new();
    scripted_set_loading(&be, 0.25);
    cr_assert_eq(srv_server_add_backend(srv, be, &err), 0);
    r = req("GET", "/health", NULL, NULL);
    cr_assert_eq(r.status, 503);
    cr_assert_str_eq(km_buf_str(&r.body), "{\"status\":\"loading\",\"progress\":0.25}");
    resp_free(&r);
    r = req("GET", "/v1/models", NULL, NULL);
    cr_assert_not_null(strstr(km_buf_str(&r.body), "\"id\":\"scripted-embed\""));
    resp_free(&r);
    stop();
}

Test(server, n_choices_and_completion_logprobs)
{
    start(NULL);
    struct resp r = req("POST", "/v1/chat/completions", CHAT(",\"n\":2,\"max_tokens\":1"), NULL);
    json_t *j = body_json(&r);
    json_t *ch = json_object_get(j, "choices");
    cr_assert_eq(json_array_size(ch), 2);
    cr_assert_eq(json_integer_value(json_object_get(json_array_get(ch, 1), "index")), 1);
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(
                         json_array_get(ch, 1), "message"), "content")), "Hello");
    json_decref(j);
    resp_free(&r);
    r = req("POST", "/v1/completions", "{\"model\":\"scripted-chat\",\"prompt\":\"x\","
            "\"max_tokens\":2,\"logprobs\":2}", NULL);
    j = body_json(&r);
    json_t *lp = json_object_get(json_array_get(json_object_get(j, "choices"), 0), "logprobs");
    char *s = json_dumps(lp, JSON_COMPACT);
    cr_assert_str_eq(s, "{\"tokens\":[\"Hello\",\",\"],\"token_logprobs\":[-0.5,-1.0],"
                        "\"top_logprobs\":[{\"alt\":-2.0,\"alt2\":-3.0},{\"alt\":-2.0,\"alt2\":-3.0}],"
                        "\"text_offset\":[0,5]}");
    free(s);
    json_decref(j);
    resp_free(&r);
    /* a stream with two choices: each ends with its own finish_reason */
    r = req("POST", "/v1/chat/completions", CHAT(",\"n\":2,\"stream\":true,\"max_tokens\":2"), NULL);
    const char *b = km_buf_str(&r.body);
    cr_assert_not_null(strstr(b, "{\"index\":0,\"delta\":{\"content\":\",\"},\"logprobs\":null,\"finish_reason\":\"length\"}"), "%s", b);
    cr_assert_not_null(strstr(b, "{\"index\":1,\"delta\":{\"content\":\",\"},\"logprobs\":null,\"finish_reason\":\"length\"}"), "%s", b);
    resp_free(&r);
    stop();
}

/* The Authorization header is compared whole. Keys longer than
 * SRV_MAX_API_KEY (503 bytes) are refused at start-up: the header buffer used
 * to cut a long header, so a key of 504 bytes accepted "Bearer <key>JUNK".
 * An over-long header is dropped (401), never cut to a prefix. */
Test(server, long_api_keys_are_compared_whole)
{
    char key[600], hdr[700], v[128];
    struct srv_config cfg;
    struct srv_server *s = NULL;
    struct km_err err;
    memset(key, 'k', 504);
    key[504] = '\0';
    srv_config_init(&cfg);
    cr_assert_eq(srv_config_set(&cfg, SRV_LAYER_FLAG, "api-key", key, &err), 0);
    cr_assert_eq(srv_server_new(&cfg, &s, &err), KM_EINVAL);
    cr_assert_str_eq(err.msg, "api key 1 is 504 bytes long (1 to 503 are accepted)");
    cr_assert_null(s);
    srv_config_free(&cfg);

    key[503] = '\0';
    start((const char *const[]){"api-key", key, NULL});
    snprintf(hdr, sizeof hdr, "Authorization: Bearer %s", key);
    struct resp r = req("GET", "/v1/models", NULL, (const char *const[]){hdr, NULL});
    cr_assert_eq(r.status, 200);
    resp_free(&r);
    /* two spaces + key fills the buffer exactly; the junk after it used to be
     * cut off, leaving a valid "Bearer  <key>" */
    snprintf(hdr, sizeof hdr, "Authorization: Bearer  %sJUNK", key);
    r = req("GET", "/v1/models", NULL, (const char *const[]){hdr, NULL});
    cr_assert_eq(r.status, 401);
    cr_assert_str_eq(header(&r, "WWW-Authenticate", v, sizeof v), "Bearer");
    resp_free(&r);
    stop();
}
