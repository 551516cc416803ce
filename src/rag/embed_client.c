/* embed_client.c - libcurl client for any OpenAI-compatible /v1/embeddings
 * (kanoa-mlops serve, vLLM, TEI, llama.cpp, Ollama).
 *
 * One blocking POST per batch: {"model": M, "input": [texts]}. The reply's
 * data[i].index places each vector; all vectors must have one dimension and
 * finite values. The reply body is capped (EMBED_MAX_REPLY). Reentrant:
 * ingest jobs post from several threads (libcurl's global state is set up
 * once, first).
 */
#include "rag/rag.h"

#include "base/mem.h"

#include <curl/curl.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#define EMBED_MAX_REPLY (256u << 20)
#define EMBED_TIMEOUT_S 300L

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    struct km_buf *b = ud;
    return km_buf_append(b, p, size * n) == KM_OK ? size * n : 0;
}

static int make_url(const char *base, char *out, size_t cap, struct km_err *err)
{
    size_t n = strlen(base);
    while (n > 0 && base[n - 1] == '/')
        n--;
    const char *suffix = "/embeddings";
    if (n >= 11 && memcmp(base + n - 11, suffix, 11) == 0)
        suffix = "";
    if ((size_t)snprintf(out, cap, "%.*s%s", (int)n, base, suffix) >= cap)
        return km_fail(err, KM_EINVAL, "embeddings URL too long (%zu bytes)", n);
    return KM_OK;
}

static char *request_body(const char *model, const char *const *texts, size_t n)
{
    json_t *in = json_array();
    for (size_t i = 0; i < n && in; i++)
        if (json_array_append_new(in, json_string(texts[i])) != 0) {
            json_decref(in);
            in = NULL;
        }
    if (!in)
        return NULL;
    json_t *o = json_pack("{s:s, s:o}", "model", model, "input", in);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return s; /* jansson's allocator: free() */
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_setup(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

static int post(const char *url, const char *api_key, const char *body,
                struct km_buf *reply, long *status, struct km_err *err)
{
    pthread_once(&curl_once, curl_setup);
    CURL *c = curl_easy_init();
    if (!c)
        return km_fail(err, KM_ENOMEM, "cannot create a curl handle");
    char auth[1024];
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    if (api_key && api_key[0]) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", api_key);
        h = curl_slist_append(h, auth);
    }
    char cerr[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, reply);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, EMBED_TIMEOUT_S);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    CURLcode cc = curl_easy_perform(c);
    int rc = KM_OK;
    if (cc != CURLE_OK)
        rc = km_fail(err, cc == CURLE_OPERATION_TIMEDOUT ? KM_ETIMEOUT : KM_ENET,
                     "embeddings request to %s failed: %s", url,
                     cerr[0] ? cerr : curl_easy_strerror(cc));
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return rc;
}

/* Copy data[i].embedding into vecs[index*dim ...]; *dim is set by the
 * first vector. */
static int parse_item(json_t *item, size_t n, float **vecs, int *dim,
                      const char *url, struct km_err *err)
{
    json_t *emb = json_object_get(item, "embedding");
    json_t *idx = json_object_get(item, "index");
    size_t d = json_array_size(emb);
    if (!json_is_array(emb) || d == 0 || !json_is_integer(idx) ||
        json_integer_value(idx) < 0 || (size_t)json_integer_value(idx) >= n)
        return km_fail(err, KM_EFORMAT, "embeddings reply from %s: data item "
                       "without a valid index and embedding array", url);
    if (*dim == 0) {
        if (d > 16000)
            return km_fail(err, KM_EFORMAT, "embeddings reply from %s: dimension %zu", url, d);
        *dim = (int)d;
        *vecs = km_calloc(n * d, sizeof **vecs);
        if (!*vecs)
            return km_fail(err, KM_ENOMEM, "out of memory for %zu embeddings", n);
    }
    if (d != (size_t)*dim)
        return km_fail(err, KM_EFORMAT, "embeddings reply from %s: vectors of "
                       "dimension %zu and %d in one reply", url, d, *dim);
    float *dst = *vecs + (size_t)json_integer_value(idx) * d;
    for (size_t j = 0; j < d; j++) {
        double x = json_number_value(json_array_get(emb, j));
        if (!json_is_number(json_array_get(emb, j)) || !isfinite(x))
            return km_fail(err, KM_EFORMAT, "embeddings reply from %s: element %zu "
                           "is not a finite number", url, j);
        dst[j] = (float)x;
    }
    return KM_OK;
}

static int parse_reply(const char *body, size_t n, float **vecs, int *dim,
                       const char *url, struct km_err *err)
{
    json_error_t je;
    json_t *root = json_loads(body, 0, &je);
    json_t *data = json_object_get(root, "data");
    int rc = KM_OK;
    if (!json_is_array(data) || json_array_size(data) != n)
        rc = km_fail(err, KM_EFORMAT, "embeddings reply from %s: expected a data "
                     "array of %zu items", url, n);
    for (size_t i = 0; rc == KM_OK && i < n; i++)
        rc = parse_item(json_array_get(data, i), n, vecs, dim, url, err);
    json_decref(root);
    if (rc != KM_OK) {
        km_free(*vecs);
        *vecs = NULL;
        *dim = 0;
    }
    return rc;
}

/* The upstream's error message, if the body is an OpenAI error envelope. */
static void upstream_error(const char *body, char *out, size_t cap)
{
    json_t *root = json_loads(body, 0, NULL);
    const char *m = json_string_value(json_object_get(json_object_get(root, "error"), "message"));
    snprintf(out, cap, "%.300s", m ? m : body);
    json_decref(root);
}

int rag_embed(const char *url, const char *model, const char *api_key,
              const char *const *texts, size_t n, float **vecs, int *dim,
              struct km_err *err)
{
    *vecs = NULL;
    *dim = 0;
    if (n == 0)
        return KM_OK;
    char full[2048];
    int rc = make_url(url, full, sizeof full, err);
    if (rc != KM_OK)
        return rc;
    char *body = request_body(model, texts, n);
    if (!body)
        return km_fail(err, KM_ENOMEM, "out of memory building an embeddings request");
    struct km_buf reply;
    km_buf_init(&reply, EMBED_MAX_REPLY);
    long status = 0;
    rc = post(full, api_key, body, &reply, &status, err);
    free(body);
    if (rc == KM_OK && status != 200) {
        char msg[320];
        upstream_error(km_buf_str(&reply), msg, sizeof msg);
        rc = km_fail(err, KM_EHTTP, "embeddings request to %s: HTTP %ld: %s",
                     full, status, msg);
    }
    if (rc == KM_OK)
        rc = parse_reply(km_buf_str(&reply), n, vecs, dim, full, err);
    km_buf_free(&reply);
    return rc;
}
