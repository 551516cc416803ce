/* api.c - Hub JSON API: revision -> commit, recursive tree listing, and the
 * mapping of Hub error responses to errors a user can act on.
 *
 * Requests retry transient failures (transport errors, 408, 429, 5xx) up to
 * API_TRIES times with exponential backoff, honouring Retry-After. The tree
 * follows `Link: <...>; rel="next"` until the last page; bodies are bounded.
 */
#include "hub/hub_int.h"

#include "base/mem.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define API_TRIES 5
#define API_BODY_MAX (64u << 20)
#define TREE_PAGES_MAX 100000

double hub__now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void hub__backoff(int attempt, long retry_after)
{
    double s;
    if (retry_after >= 0) {
        s = (double)(retry_after > 300 ? 300 : retry_after);
    } else {
        const char *b = getenv("KANOA_HUB_BACKOFF_MS"); /* tests shorten it */
        double base = b ? atof(b) / 1000.0 : 1.0;
        s = base * (double)(1u << (attempt > 4 ? 4 : attempt));
    }
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

int hub__transient(const struct hub__resp *r)
{
    return r->status == 408 || r->status == 429 || r->status >= 500;
}

void hub__tree_free(struct hub__tree *t)
{
    for (size_t i = 0; i < t->n; i++) {
        km_free(t->files[i].path);
        km_free(t->files[i].etag);
    }
    km_free(t->files);
    memset(t, 0, sizeof *t);
}

static int gated_error(const struct hub_env *env, const char *repo,
                       const struct hub__resp *r, struct km_err *err)
{
    if (r->status == 401)
        return km_fail(err, KM_EAUTH,
                       "repository %s is gated: accept its licence on %s/%s "
                       "while logged in, then set HF_TOKEN to a token of that "
                       "account (this request was not authenticated)",
                       repo, env->endpoint, repo);
    return km_fail(err, KM_EAUTH,
                   "repository %s is gated and your token is not on its "
                   "authorized list: accept the licence on %s/%s with the "
                   "account whose token is in HF_TOKEN, and wait for approval "
                   "if the repository asks for it", repo, env->endpoint, repo);
}

int hub__http_error(const struct hub_env *env, const char *repo,
                    const char *rev, const char *path,
                    const struct hub__resp *r, struct km_err *err)
{
    const char *code = r->error_code;
    if (strcmp(code, "GatedRepo") == 0)
        return gated_error(env, repo, r, err);
    if (strcmp(code, "RevisionNotFound") == 0)
        return km_fail(err, KM_ENOTFOUND, "revision '%s' not found in "
                       "repository %s", rev, repo);
    if (strcmp(code, "EntryNotFound") == 0)
        return km_fail(err, KM_ENOTFOUND, "file '%s' not found in repository "
                       "%s at revision '%s'", path ? path : "?", repo, rev);
    if (strstr(r->error_message, "Invalid credentials"))
        return km_fail(err, KM_EAUTH, "the token in HF_TOKEN was rejected by "
                       "%s (invalid credentials): check or unset it",
                       env->endpoint);
    if (strstr(r->error_message, "disabled"))
        return km_fail(err, KM_EAUTH, "access to repository %s is disabled "
                       "on %s", repo, env->endpoint);
    if (strcmp(code, "RepoNotFound") == 0 || r->status == 401 ||
        (r->status == 404 && !path))
        return km_fail(err, KM_ENOTFOUND, "repository %s not found on %s "
                       "(if it is private, set HF_TOKEN to a token with "
                       "access)", repo, env->endpoint);
    if (r->status == 404)
        return km_fail(err, KM_ENOTFOUND, "file '%s' not found in repository "
                       "%s at revision '%s'", path, repo, rev);
    if (r->status == 403)
        return km_fail(err, KM_EAUTH, "%s refused access to %s%s%s (HTTP 403): "
                       "your token may lack read permission on this repository",
                       env->endpoint, repo, path ? "/" : "", path ? path : "");
    return km_fail(err, KM_EHTTP, "%s answered HTTP %ld for %s%s%s%s%s",
                   env->endpoint, r->status, repo, path ? "/" : "",
                   path ? path : "", r->error_message[0] ? ": " : "",
                   r->error_message);
}

/* GET url into body with retries; KM_OK only for a 2xx answer. */
/* GET an API URL into body, retrying transient failures; any answer but
 * 200 becomes the user-facing error for repo at rev. */
static int api_get(struct hub__http *h, const struct hub_env *env,
                   const char *url, const char *repo, const char *rev,
                   struct km_buf *body, struct hub__resp *resp,
                   struct km_err *err)
{
    struct hub__req req = {.method = "GET", .url = url, .token = env->token,
                           .range_from = -1, .body = body,
                           .timeout_s = env->timeout_s};
    int rc = KM_OK;
    for (int attempt = 0; attempt < API_TRIES; attempt++) {
        km_buf_reset(body);
        rc = hub__http_do(h, &req, resp, err);
        int retry = (rc == KM_ENET || rc == KM_ETIMEOUT) ||
                    (rc == KM_OK && hub__transient(resp));
        if (!retry)
            break;
        if (rc == KM_OK)
            km_fail(err, KM_EHTTP, "%s answered HTTP %ld", url, resp->status);
        if (attempt + 1 < API_TRIES)
            hub__backoff(attempt, resp->retry_after);
    }
    if (rc == KM_OK && resp->status != 200)
        rc = hub__http_error(env, repo, rev, NULL, resp, err);
    return rc;
}

int hub__api_commit(struct hub__http *h, const struct hub_env *env,
                    const char *repo, const char *rev, char *commit,
                    struct km_err *err)
{
    struct km_buf body;
    struct hub__resp resp = {0};
    json_t *root = NULL;
    char *erev = hub__url_encode(rev, 0);
    char url[8192];
    km_buf_init(&body, API_BODY_MAX);
    int rc = KM_ENOMEM;
    if (!erev) {
        km_fail(err, rc, "out of memory");
        goto out;
    }
    snprintf(url, sizeof url, "%s/api/models/%s/revision/%s", env->endpoint,
             repo, erev);
    rc = api_get(h, env, url, repo, rev, &body, &resp, err);
    if (rc)
        goto out;
    json_error_t je;
    root = json_loadb(body.data ? body.data : "", body.len, 0, &je);
    const char *sha = json_string_value(json_object_get(root, "sha"));
    if (!sha || !hub__is_hex(sha, 40)) {
        rc = km_fail(err, KM_EFORMAT, "%s: field 'sha' missing or not a "
                     "40-hex commit", url);
        goto out;
    }
    memcpy(commit, sha, 41);
    rc = KM_OK;
out:
    json_decref(root);
    km_free(erev);
    km_buf_free(&body);
    hub__resp_free(&resp);
    return rc;
}

int hub__tree_push(struct hub__tree *t, const char *path, const char *etag,
                    uint64_t size, int lfs)
{
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        struct hub__file *f = km_realloc(t->files, cap * sizeof *f);
        if (!f)
            return KM_ENOMEM;
        t->files = f;
        t->cap = cap;
    }
    struct hub__file *f = &t->files[t->n];
    f->path = km_strdup(path);
    f->etag = km_strdup(etag);
    f->size = size;
    f->lfs = lfs;
    if (!f->path || !f->etag) {
        km_free(f->path);
        km_free(f->etag);
        return KM_ENOMEM;
    }
    t->n++;
    return KM_OK;
}

static int parse_entry(json_t *e, size_t i, struct hub__tree *t,
                       struct km_err *err)
{
    const char *type = json_string_value(json_object_get(e, "type"));
    if (type && strcmp(type, "file") != 0)
        return KM_OK; /* directories */
    const char *path = json_string_value(json_object_get(e, "path"));
    const char *oid = json_string_value(json_object_get(e, "oid"));
    json_t *size = json_object_get(e, "size");
    json_t *lfs = json_object_get(e, "lfs");
    const char *loid = json_string_value(json_object_get(lfs, "oid"));
    if (!path || !json_is_integer(size) || json_integer_value(size) < 0)
        return km_fail(err, KM_EFORMAT, "tree entry %zu: 'path' or 'size' "
                       "missing", i);
    int rc = hub__path_safe(path, err);
    if (rc)
        return rc;
    const char *etag = loid ? loid : oid;
    if (!etag || !(loid ? hub__is_hex(etag, 64) : hub__is_hex(etag, 40)))
        return km_fail(err, KM_EFORMAT, "tree entry '%s': %s is not a valid "
                       "hash", path, loid ? "lfs.oid" : "oid");
    if (hub__tree_push(t, path, etag, (uint64_t)json_integer_value(size), loid != NULL))
        return km_fail(err, KM_ENOMEM, "out of memory");
    return KM_OK;
}

int hub__tree_parse(const char *json, size_t len, struct hub__tree *t,
                    struct km_err *err)
{
    json_error_t je;
    json_t *root = json_loadb(json, len, 0, &je);
    int rc = KM_OK;
    if (!json_is_array(root)) {
        rc = km_fail(err, KM_EFORMAT, "tree listing is not a JSON array "
                     "(line %d: %s)", je.line, je.text);
        goto out;
    }
    for (size_t i = 0; i < json_array_size(root) && rc == KM_OK; i++)
        rc = parse_entry(json_array_get(root, i), i, t, err);
out:
    json_decref(root);
    return rc;
}

static int same_host(const char *a, const char *b)
{
    char *ha = hub__url_host(a), *hb = hub__url_host(b);
    int same = ha && hb && strcmp(ha, hb) == 0;
    km_free(ha);
    km_free(hb);
    return same;
}

int hub__api_tree(struct hub__http *h, const struct hub_env *env,
                  const char *repo, const char *commit, struct hub__tree *t,
                  struct km_err *err)
{
    struct km_buf body;
    struct hub__resp resp = {0};
    char *url = km_malloc(8192);
    km_buf_init(&body, API_BODY_MAX);
    int rc = KM_ENOMEM;
    if (!url) {
        km_fail(err, rc, "out of memory");
        goto out;
    }
    snprintf(url, 8192, "%s/api/models/%s/tree/%s?recursive=true&expand=false",
             env->endpoint, repo, commit);
    for (int page = 0; page < TREE_PAGES_MAX; page++) {
        rc = api_get(h, env, url, repo, commit, &body, &resp, err);
        if (rc)
            goto out;
        rc = hub__tree_parse(body.data ? body.data : "", body.len, t, err);
        if (rc || !resp.link_next)
            goto out;
        if (!same_host(env->endpoint, resp.link_next)) {
            rc = km_fail(err, KM_EFORMAT, "tree page link %s leaves %s",
                         resp.link_next, env->endpoint);
            goto out;
        }
        snprintf(url, 8192, "%s", resp.link_next);
    }
    rc = km_fail(err, KM_EFORMAT, "tree listing of %s has too many pages", repo);
out:
    km_free(url);
    km_buf_free(&body);
    hub__resp_free(&resp);
    return rc;
}
