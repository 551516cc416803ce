/* upstream_tok.c - /tokenize and /detokenize for upstream models: a short
 * blocking POST to one healthy replica's /tokenize or /detokenize (vLLM and
 * kanoa-mlops serve both have them), on the caller's thread (see upstream.h).
 * These are small, rare requests; they do not go through the event loop. */
#include "server/upstream_int.h"

#include "base/mem.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

struct target {
    char name[UPS_NAME_MAX];
    char url[UPS_URL_MAX + 32];
    char auth[700];
};

/* A healthy replica serving `model`, least loaded first. */
static int pick_target(struct ups_pool *p, const char *model, const char *path,
                       struct target *t, struct km_err *err)
{
    struct ups_cand c[UPS_MAX_UPSTREAMS];
    pthread_mutex_lock(&p->mu);
    for (size_t i = 0; i < p->n; i++) {
        struct ups_up *u = &p->ups[i];
        c[i].name = u->spec.name;
        c[i].eligible = u->healthy && ups__serves_locked(u, model);
        c[i].in_flight = atomic_load(&u->in_flight);
        c[i].waiting = u->waiting;
    }
    int k = ups_balance_pick(c, p->n, NULL, p->rr++);
    if (k >= 0) {
        snprintf(t->name, sizeof t->name, "%s", p->ups[k].spec.name);
        snprintf(t->url, sizeof t->url, "%s%s", p->ups[k].spec.url, path);
        snprintf(t->auth, sizeof t->auth, "%s", p->ups[k].auth);
    }
    pthread_mutex_unlock(&p->mu);
    if (k < 0)
        return km_fail(err, KM_ENET, "no healthy upstream for model `%s`", model);
    return KM_OK;
}

static size_t collect(char *b, size_t size, size_t n, void *ud)
{
    return km_buf_append(ud, b, size * n) == KM_OK ? size * n : 0;
}

/* POST body to t->url; the answer (at most 16 MiB) into out. */
static int post(struct ups_pool *p, const struct target *t, const char *body,
                struct km_buf *out, long *code, struct km_err *err)
{
    CURL *e = curl_easy_init();
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    struct curl_slist *h2 = h && t->auth[0] ? curl_slist_append(h, t->auth) : h;
    int rc = KM_OK;
    if (!e || !h2) {
        rc = km_fail(err, KM_ENOMEM, "upstream %s: out of memory", t->name);
        goto out;
    }
    curl_easy_setopt(e, CURLOPT_URL, t->url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h2);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)p->opt.connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 30000L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, out);
    CURLcode cc = curl_easy_perform(e);
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, code);
    if (cc != CURLE_OK)
        rc = km_fail(err, KM_ENET, "upstream %s (%s): %s", t->name, t->url,
                     curl_easy_strerror(cc));
out:
    curl_slist_free_all(h2 ? h2 : h);
    if (e)
        curl_easy_cleanup(e);
    return rc;
}

/* Status other than 200: the upstream's own message when it has one. */
static int answer_error(const struct target *t, long code, const struct km_buf *b,
                        struct km_err *err)
{
    json_t *j = json_loadb(km_buf_str(b), b->len, 0, NULL);
    json_t *e = json_object_get(j, "error");
    const char *m = json_string_value(json_object_get(e, "message"));
    int kind = code == 404 ? KM_EUNSUPPORTED : code < 500 ? KM_EINVAL : KM_ENET;
    km_fail(err, kind, "upstream %s (%s) answered HTTP %ld%s%s", t->name, t->url,
            code, m ? ": " : "", m ? m : "");
    json_decref(j);
    return kind;
}

/* Post and parse: *res is a new reference on success. */
static int call(struct ups_pool *p, const char *model, const char *path,
                json_t *req, json_t **res, struct km_err *err)
{
    struct target t;
    struct km_buf b;
    km_buf_init(&b, 16u << 20);
    char *body = NULL;
    long code = 0;
    int rc = pick_target(p, model, path, &t, err);
    if (rc == KM_OK) {
        body = json_dumps(req, JSON_COMPACT);
        rc = body ? post(p, &t, body, &b, &code, err)
                  : km_fail(err, KM_ENOMEM, "upstream: out of memory");
    }
    if (rc == KM_OK && code != 200)
        rc = answer_error(&t, code, &b, err);
    if (rc == KM_OK) {
        *res = json_loadb(km_buf_str(&b), b.len, 0, NULL);
        if (!*res)
            rc = km_fail(err, KM_EFORMAT, "upstream %s: %s answer is not JSON",
                         t.name, path);
    }
    free(body);
    km_buf_free(&b);
    return rc;
}

static json_t *message_json(const struct srv_message *m)
{
    if (m->n_parts == 1 && m->parts[0].kind == SRV_PART_TEXT)
        return json_pack("{s:s,s:s}", "role", m->role, "content", m->parts[0].text);
    json_t *parts = json_array();
    for (size_t i = 0; parts && i < m->n_parts; i++) {
        const struct srv_part *pt = &m->parts[i];
        json_array_append_new(parts, pt->kind == SRV_PART_TEXT
            ? json_pack("{s:s,s:s}", "type", "text", "text", pt->text)
            : json_pack("{s:s,s:{s:s}}", "type", "image_url", "image_url",
                        "url", pt->image_url));
    }
    return json_pack("{s:s,s:o}", "role", m->role, "content", parts);
}

static json_t *tokenize_request(const char *model, const char *text,
                                const struct srv_message *msgs, size_t n,
                                bool add_special, bool add_gen)
{
    if (!msgs)
        return json_pack("{s:s,s:s,s:b}", "model", model, "prompt",
                         text ? text : "", "add_special_tokens", add_special);
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < n; i++)
        json_array_append_new(arr, message_json(&msgs[i]));
    return json_pack("{s:s,s:o,s:b,s:b}", "model", model, "messages", arr,
                     "add_special_tokens", add_special,
                     "add_generation_prompt", add_gen);
}

int ups_tokenize(struct ups_pool *p, const char *model, const char *text,
                 const struct srv_message *msgs, size_t n_msgs, bool add_special,
                 bool add_gen, int32_t **ids, size_t *n_ids, struct km_err *err)
{
    *ids = NULL;
    *n_ids = 0;
    json_t *req = tokenize_request(model, text, msgs, n_msgs, add_special, add_gen);
    json_t *res = NULL;
    int rc = req ? call(p, model, "/tokenize", req, &res, err)
                 : km_fail(err, KM_ENOMEM, "upstream: out of memory");
    json_t *toks = json_object_get(res, "tokens");
    if (rc == KM_OK && !json_is_array(toks))
        rc = km_fail(err, KM_EFORMAT, "upstream /tokenize answer has no "
                     "\"tokens\" array");
    size_t n = json_array_size(toks);
    if (rc == KM_OK) {
        *ids = km_mallocarray(n ? n : 1, sizeof **ids);
        if (!*ids)
            rc = km_fail(err, KM_ENOMEM, "upstream: out of memory for %zu ids", n);
    }
    for (size_t i = 0; rc == KM_OK && i < n; i++)
        (*ids)[i] = (int32_t)json_integer_value(json_array_get(toks, i));
    if (rc == KM_OK)
        *n_ids = n;
    json_decref(req);
    json_decref(res);
    return rc;
}

int ups_detokenize(struct ups_pool *p, const char *model, const int32_t *ids,
                   size_t n_ids, char **text, struct km_err *err)
{
    *text = NULL;
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < n_ids; i++)
        json_array_append_new(arr, json_integer(ids[i]));
    json_t *req = json_pack("{s:s,s:o}", "model", model, "tokens", arr);
    json_t *res = NULL;
    int rc = req ? call(p, model, "/detokenize", req, &res, err)
                 : km_fail(err, KM_ENOMEM, "upstream: out of memory");
    const char *s = json_string_value(json_object_get(res, "prompt"));
    if (rc == KM_OK && !s)
        rc = km_fail(err, KM_EFORMAT, "upstream /detokenize answer has no "
                     "\"prompt\" string");
    if (rc == KM_OK) {
        *text = km_strdup(s);
        if (!*text)
            rc = km_fail(err, KM_ENOMEM, "upstream: out of memory");
    }
    json_decref(req);
    json_decref(res);
    return rc;
}
