/* status.c - service checks for `kanoa-mlops status`: an HTTP GET through
 * libcurl (up = 2xx) or a PostgreSQL PQping through libpq (up = accepting
 * connections). See ops.h. Both libraries are used only for a probe here:
 * no connection or handle outlives ops_status_check(). */
#include "ops/ops.h"

#include <curl/curl.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define BODY_MAX (64u << 10)

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Keep at most BODY_MAX bytes of the body; drop the rest silently. */
static size_t sink(char *p, size_t size, size_t n, void *ud)
{
    struct km_buf *b = ud;
    if (b->len + size * n <= b->max)
        km_buf_append(b, p, size * n);
    return size * n;
}

static void check_http(struct ops_check *c, long timeout_ms)
{
    struct km_buf body;
    char errbuf[CURL_ERROR_SIZE] = "";
    km_buf_init(&body, BODY_MAX);
    CURL *h = curl_easy_init();
    if (!h) {
        snprintf(c->detail, sizeof c->detail, "curl_easy_init failed");
        goto out;
    }
    curl_easy_setopt(h, CURLOPT_URL, c->target);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    CURLcode r = curl_easy_perform(h);
    if (r != CURLE_OK) {
        snprintf(c->detail, sizeof c->detail, "%s",
                 errbuf[0] ? errbuf : curl_easy_strerror(r));
        goto out;
    }
    long code = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    c->http_status = (int)code;
    c->up = code >= 200 && code < 300;
    snprintf(c->detail, sizeof c->detail, "HTTP %ld%s%.80s", code,
             body.len ? ": " : "", km_buf_str(&body));
    /* one line only */
    c->detail[strcspn(c->detail, "\r\n")] = '\0';
out:
    if (h)
        curl_easy_cleanup(h);
    km_buf_free(&body);
}

static void check_pg(struct ops_check *c, long timeout_ms)
{
    char tmo[32];
    long secs = (timeout_ms + 999) / 1000;
    snprintf(tmo, sizeof tmo, "%ld", secs < 2 ? 2 : secs);
    const char *keys[] = {"dbname", "connect_timeout", NULL};
    const char *vals[] = {c->target, tmo, NULL};
    PGPing p = PQpingParams(keys, vals, 1);
    switch (p) {
    case PQPING_OK:
        c->up = true;
        snprintf(c->detail, sizeof c->detail, "accepting connections");
        break;
    case PQPING_REJECT:
        snprintf(c->detail, sizeof c->detail, "server is up but rejects "
                 "connections (starting up or shutting down)");
        break;
    case PQPING_NO_RESPONSE:
        snprintf(c->detail, sizeof c->detail, "no response");
        break;
    default:
        snprintf(c->detail, sizeof c->detail, "bad connection string");
        break;
    }
}

int ops_status_check(struct ops_check *c, long timeout_ms)
{
    double t0 = now_s();
    c->up = false;
    c->http_status = 0;
    c->detail[0] = '\0';
    if (c->kind == OPS_CHECK_PG)
        check_pg(c, timeout_ms);
    else
        check_http(c, timeout_ms);
    c->seconds = now_s() - t0;
    return c->up ? KM_OK : KM_ENET;
}

void ops_redact_url(const char *url, char *out, size_t cap)
{
    const char *scheme = strstr(url, "://");
    const char *start = scheme ? scheme + 3 : url;
    const char *at = strchr(start, '@');
    const char *slash = strchr(start, '/');
    if (!at || (slash && slash < at)) {
        snprintf(out, cap, "%s", url);
        return;
    }
    const char *colon = memchr(start, ':', (size_t)(at - start));
    if (!colon) {
        snprintf(out, cap, "%s", url);
        return;
    }
    snprintf(out, cap, "%.*s:***%s", (int)(colon - url), url, at);
}

int ops_status_table(const struct ops_check *c, size_t n, struct km_buf *out)
{
    int rc = km_buf_printf(out, "%-16s %-5s %9s  %-40s %s\n", "SERVICE",
                           "STATE", "TIME", "TARGET", "DETAIL");
    for (size_t i = 0; i < n && rc == KM_OK; i++) {
        char target[512];
        ops_redact_url(c[i].target, target, sizeof target);
        rc = km_buf_printf(out, "%-16s %-5s %7.0fms  %-40s %s\n", c[i].name,
                           c[i].up ? "up" : "DOWN", c[i].seconds * 1000.0,
                           target, c[i].detail);
    }
    return rc;
}
