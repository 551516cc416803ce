/* http.c - the one libcurl adapter of src/hub/ (see hub_int.h).
 *
 * Redirects are never followed here: the caller reads Location and decides
 * whether the token may travel (same host) or not (CDN). Requests send
 * "Accept-Encoding: identity" so lengths are real file sizes, and a
 * User-Agent of kanoa-mlops/<version>. A transfer with no byte for
 * timeout_s seconds fails with KM_ETIMEOUT (stall), so callers can resume.
 * Response headers are parsed into a struct hub__resp; strings there are
 * fixed arrays except location/link_next (km_malloc'ed, hub__resp_free).
 */
#include "hub/hub_int.h"

#include "base/mem.h"
#include "base/version.h"

#include <ctype.h>
#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct hub__http {
    CURL *curl;
    char errbuf[CURL_ERROR_SIZE];
};

struct xfer {
    CURL *curl;
    const struct hub__req *req;
    struct hub__resp *resp;
    int sink_aborted;
    int body_full;
    int range_ignored;
};

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static void global_init(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

int hub__http_new(struct hub__http **out, struct km_err *err)
{
    pthread_once(&global_once, global_init);
    struct hub__http *h = km_calloc(1, sizeof *h);
    if (!h)
        return km_fail(err, KM_ENOMEM, "out of memory");
    h->curl = curl_easy_init();
    if (!h->curl) {
        km_free(h);
        return km_fail(err, KM_ENOMEM, "cannot create a libcurl handle");
    }
    *out = h;
    return KM_OK;
}

void hub__http_free(struct hub__http *h)
{
    if (!h)
        return;
    curl_easy_cleanup(h->curl);
    km_free(h);
}

void hub__resp_free(struct hub__resp *r)
{
    km_free(r->location);
    km_free(r->link_next);
    r->location = r->link_next = NULL;
}

static void resp_reset(struct hub__resp *r)
{
    hub__resp_free(r);
    memset(r, 0, sizeof *r);
    r->linked_size = -1;
    r->content_length = -1;
    r->retry_after = -1;
}

/* Copy a header value, trimmed, into dst. */
static void copy_val(char *dst, size_t cap, const char *v, size_t n)
{
    while (n > 0 && isspace((unsigned char)*v)) {
        v++;
        n--;
    }
    while (n > 0 && isspace((unsigned char)v[n - 1]))
        n--;
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, v, n);
    dst[n] = '\0';
}

/* Strip W/ and quotes: huggingface_hub _normalize_etag. */
static void normalize_etag(char *e)
{
    char *s = e;
    if (strncmp(s, "W/", 2) == 0)
        s += 2;
    size_t n = strlen(s);
    if (n >= 2 && s[0] == '"' && s[n - 1] == '"') {
        s++;
        n -= 2;
    }
    memmove(e, s, n);
    e[n] = '\0';
}

/* Link: <url>; rel="next", <url2>; rel="other" */
static char *parse_link_next(const char *v)
{
    const char *p = v;
    while ((p = strchr(p, '<')) != NULL) {
        const char *end = strchr(p, '>');
        if (!end)
            return NULL;
        const char *next = strchr(end, ',');
        const char *rel = strstr(end, "rel=\"next\"");
        if (rel && (!next || rel < next))
            return km_strndup(p + 1, (size_t)(end - p - 1));
        p = end;
    }
    return NULL;
}

/* RateLimit: "resolvers";r=0;t=12 -> wait t + 1 s when nothing remains
 * (huggingface_hub's rule; it wins over Retry-After). A negative t is
 * ignored and a huge one capped (hub__backoff waits at most 300 s). */
static void ratelimit_wait(struct hub__resp *r, const char *v)
{
    const char *rp = strstr(v, ";r=");
    const char *tp = strstr(v, ";t=");
    if (!rp || !tp || strtol(rp + 3, NULL, 10) != 0)
        return;
    long t = strtol(tp + 3, NULL, 10);
    if (t >= 0)
        r->retry_after = t < 3600 ? t + 1 : 3600;
}

void hub__resp_header(struct hub__resp *r, const char *b, size_t n)
{
    const char *colon = memchr(b, ':', n);
    if (!colon)
        return;
    size_t kl = (size_t)(colon - b);
    const char *v = colon + 1;
    size_t vl = n - kl - 1;
    char val[2048];
    copy_val(val, sizeof val, v, vl);
#define IS(name) (kl == strlen(name) && strncasecmp(b, name, kl) == 0)
    if (IS("x-error-code"))
        copy_val(r->error_code, sizeof r->error_code, val, strlen(val));
    else if (IS("x-error-message"))
        copy_val(r->error_message, sizeof r->error_message, val, strlen(val));
    else if (IS("x-repo-commit"))
        copy_val(r->repo_commit, sizeof r->repo_commit, val, strlen(val));
    else if (IS("x-linked-etag") || (IS("etag") && !r->etag[0])) {
        copy_val(r->etag, sizeof r->etag, val, strlen(val));
        normalize_etag(r->etag);
    } else if (IS("x-linked-size"))
        r->linked_size = strtoll(val, NULL, 10);
    else if (IS("content-length"))
        r->content_length = strtoll(val, NULL, 10);
    else if (IS("retry-after") && r->retry_after < 0)
        r->retry_after = strtol(val, NULL, 10);
    else if (IS("ratelimit"))
        ratelimit_wait(r, val);
    else if (IS("accept-ranges"))
        r->accept_ranges = strncasecmp(val, "bytes", 5) == 0;
    else if (IS("link")) {
        km_free(r->link_next);
        r->link_next = parse_link_next(val);
    }
#undef IS
}

static size_t on_header(char *b, size_t sz, size_t nm, void *ud)
{
    struct xfer *x = ud;
    hub__resp_header(x->resp, b, sz * nm);
    return sz * nm;
}

static size_t on_body(char *p, size_t sz, size_t nm, void *ud)
{
    struct xfer *x = ud;
    size_t n = sz * nm;
    long status = 0;
    curl_easy_getinfo(x->curl, CURLINFO_RESPONSE_CODE, &status);
    if (x->req->sink && (status < 200 || status > 299))
        return n; /* error or redirect body: not file content */
    if (x->req->sink && status == 200 && x->req->range_from > 0) {
        x->range_ignored = 1; /* full body at a ranged offset: refuse */
        return 0;
    }
    if (x->req->sink) {
        size_t w = x->req->sink(p, n, x->req->sink_ud);
        if (w != n)
            x->sink_aborted = 1;
        return w;
    }
    if (x->req->body && km_buf_append(x->req->body, p, n) != KM_OK) {
        x->body_full = 1;
        return 0;
    }
    return n;
}

static struct curl_slist *build_headers(const struct hub__req *req)
{
    struct curl_slist *h = NULL, *t;
    char line[4200];
    h = curl_slist_append(NULL, "Accept-Encoding: identity");
    if (h && req->token) {
        snprintf(line, sizeof line, "Authorization: Bearer %s", req->token);
        t = curl_slist_append(h, line);
        if (!t) {
            curl_slist_free_all(h);
            return NULL;
        }
        h = t;
    }
    return h;
}

static void setup(struct hub__http *h, const struct hub__req *req,
                  struct xfer *x, struct curl_slist *hdrs, char *range)
{
    CURL *c = h->curl;
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, req->url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "kanoa-mlops/" KM_VERSION);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, h->errbuf);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(c, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, req->timeout_s > 0 ? req->timeout_s : 10L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, req->timeout_s > 0 ? req->timeout_s : 10L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_BUFFERSIZE, 512L * 1024); /* fewer recv calls */
    if (strcmp(req->method, "HEAD") == 0)
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    if (req->range_from >= 0) {
        snprintf(range, 64, "%lld-%lld", (long long)req->range_from,
                 (long long)req->range_to);
        curl_easy_setopt(c, CURLOPT_RANGE, range);
    }
}

static int map_curl(struct hub__http *h, CURLcode cc, const struct hub__req *req,
                    const struct xfer *x, struct km_err *err)
{
    const char *why = h->errbuf[0] ? h->errbuf : curl_easy_strerror(cc);
    if (x->range_ignored)
        return km_fail(err, KM_EHTTP, "%s: server answered 200 to a Range "
                       "request (ranges unsupported)", req->url);
    if (x->sink_aborted)
        return km_fail(err, KM_ECANCELED, "transfer of %s stopped", req->url);
    if (x->body_full)
        return km_fail(err, KM_ERANGE, "response from %s exceeds %zu bytes",
                       req->url, req->body->max);
    if (cc == CURLE_OPERATION_TIMEDOUT)
        return km_fail(err, KM_ETIMEOUT, "%s: no data for %ld s (%s)", req->url,
                       req->timeout_s, why);
    return km_fail(err, KM_ENET, "%s: %s", req->url, why);
}

int hub__http_do(struct hub__http *h, const struct hub__req *req,
                 struct hub__resp *resp, struct km_err *err)
{
    struct xfer x = {.curl = h->curl, .req = req, .resp = resp};
    char range[64];
    resp_reset(resp);
    struct curl_slist *hdrs = build_headers(req);
    if (!hdrs)
        return km_fail(err, KM_ENOMEM, "out of memory");
    h->errbuf[0] = '\0';
    setup(h, req, &x, hdrs, range);
    CURLcode cc = curl_easy_perform(h->curl);
    curl_easy_getinfo(h->curl, CURLINFO_RESPONSE_CODE, &resp->status);
    int rc = KM_OK;
    if (cc != CURLE_OK) {
        rc = map_curl(h, cc, req, &x, err);
    } else if (resp->status >= 300 && resp->status < 400) {
        char *loc = NULL;
        curl_easy_getinfo(h->curl, CURLINFO_REDIRECT_URL, &loc);
        resp->location = loc ? km_strdup(loc) : NULL;
    }
    curl_slist_free_all(hdrs);
    return rc;
}

char *hub__url_host(const char *url)
{
    CURLU *u = curl_url();
    char *host = NULL, *port = NULL, *out = NULL;
    if (!u || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK)
        goto done;
    if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK)
        goto done;
    curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT);
    size_t n = strlen(host) + (port ? strlen(port) : 0) + 2;
    out = km_malloc(n);
    if (out)
        snprintf(out, n, "%s:%s", host, port ? port : "");
done:
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
    return out;
}

char *hub__url_encode(const char *s, int keep_slash)
{
    size_t n = strlen(s);
    char *o = km_malloc(3 * n + 1);
    if (!o)
        return NULL;
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' ||
            (keep_slash && c == '/')) {
            o[w++] = (char)c;
        } else {
            w += (size_t)sprintf(o + w, "%%%02X", c);
        }
    }
    o[w] = '\0';
    return o;
}
