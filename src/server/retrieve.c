/* retrieve.c - POST /v1/retrieve (see retrieve.h): parse, embed the query
 * through the server's own backend for the collection's model, run
 * rag_query_run on a pooled connection, answer {"data": [hits]}.
 *
 * Round trips to the database: one per request. The collection row comes
 * from the pooled connection's cache (rag_collection_get_cached); the
 * query's pipeline re-checks it, and when the collection was recreated
 * with another model meanwhile (KM_ESTATE) the request starts over once
 * with the fresh row. A pooled connection found dead (the database
 * restarted) is replaced, and the idle ones with it. The hits are written
 * as JSON text straight into the reply's body (rag_hits_json_buf), and the
 * embeddings request's body with rag_json_str: no jansson objects on the
 * way (docs/rag.md, "Where /v1/retrieve's time went"). */
#include "server/retrieve.h"

#include "base/buf.h"
#include "base/mem.h"
#include "rag/rag.h"
#include "server/server_int.h"

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define POOL_MAX 16
#define EMBED_WAIT_S 120
#define RAW_MAX (64u << 20)

struct srv_retrieve {
    struct srv_server *srv;
    char *url;
    pthread_mutex_t mu;
    struct rag_db *idle[POOL_MAX];
    int n_idle;
};

/* ---- connection pool ---------------------------------------------------- */

static int pool_take(struct srv_retrieve *r, struct rag_db **db, struct km_err *err)
{
    pthread_mutex_lock(&r->mu);
    *db = r->n_idle > 0 ? r->idle[--r->n_idle] : NULL;
    pthread_mutex_unlock(&r->mu);
    return *db ? KM_OK : rag_open(r->url, db, err);
}

/* Close every idle connection (after one was found dead: a restarted
 * database killed them all). */
static void pool_drain(struct srv_retrieve *r)
{
    struct rag_db *idle[POOL_MAX];
    pthread_mutex_lock(&r->mu);
    int n = r->n_idle;
    memcpy(idle, r->idle, sizeof idle);
    r->n_idle = 0;
    pthread_mutex_unlock(&r->mu);
    for (int i = 0; i < n; i++)
        rag_close(idle[i]);
}

/* Return a connection; one that failed with KM_ENET is closed instead. */
static void pool_give(struct srv_retrieve *r, struct rag_db *db, int rc)
{
    if (!db)
        return;
    pthread_mutex_lock(&r->mu);
    bool keep = rc != KM_ENET && r->n_idle < POOL_MAX;
    if (keep)
        r->idle[r->n_idle++] = db;
    pthread_mutex_unlock(&r->mu);
    if (!keep)
        rag_close(db);
}

/* ---- embedding the query through a backend ------------------------------ */

struct emb_wait {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    int status;             /* HTTP status of a failure, 0 = ok */
    char msg[400];
    float *vec;
    int dim;
    int raw_status;
    struct km_buf raw;      /* a proxy's verbatim reply */
};

static void e_text(void *ud, int i, const char *t, size_t n, const struct srv_logprobs *lp) {}
static void e_finish(void *ud, int i, const char *why) {}

static void e_embedding(void *ud, int index, const float *vec, size_t dim)
{
    struct emb_wait *w = ud;
    if (index != 0 || w->vec || dim == 0 || dim > 16000)
        return;
    w->vec = km_mallocarray(dim, sizeof *vec);
    if (w->vec) {
        memcpy(w->vec, vec, dim * sizeof *vec);
        w->dim = (int)dim;
    }
}

static void e_raw_head(void *ud, int status, const char *ctype)
{
    ((struct emb_wait *)ud)->raw_status = status;
}

static void e_raw(void *ud, const char *b, size_t n)
{
    km_buf_append(&((struct emb_wait *)ud)->raw, b, n);
}

static void e_finish_wait(struct emb_wait *w, int status, const char *msg)
{
    pthread_mutex_lock(&w->mu);
    w->status = status;
    if (msg)
        snprintf(w->msg, sizeof w->msg, "%s", msg);
    w->done = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static void e_done(void *ud, const struct srv_usage *u)
{
    e_finish_wait(ud, 0, NULL);
}

static void e_error(void *ud, int status, const char *type, const char *message)
{
    e_finish_wait(ud, status ? status : 502, message);
}

/* The vector from a proxied OpenAI reply: data[0].embedding. */
static int parse_raw(struct emb_wait *w)
{
    json_t *root = json_loads(km_buf_str(&w->raw), 0, NULL);
    json_t *e = json_object_get(json_array_get(json_object_get(root, "data"), 0), "embedding");
    size_t n = json_array_size(e);
    int rc = (w->raw_status == 200 && n > 0 && n <= 16000) ? KM_OK : KM_EFORMAT;
    if (rc == KM_OK)
        w->vec = km_mallocarray(n, sizeof *w->vec);
    rc = rc == KM_OK && !w->vec ? KM_ENOMEM : rc;
    for (size_t i = 0; rc == KM_OK && i < n; i++)
        w->vec[i] = (float)json_number_value(json_array_get(e, i));
    w->dim = rc == KM_OK ? (int)n : 0;
    json_decref(root);
    return rc;
}

static void wait_done(struct emb_wait *w, struct srv_backend *be, struct srv_job *job)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += EMBED_WAIT_S;
    pthread_mutex_lock(&w->mu);
    int trc = 0;
    while (!w->done && trc == 0)
        trc = pthread_cond_timedwait(&w->cv, &w->mu, &until);
    bool late = !w->done;
    pthread_mutex_unlock(&w->mu);
    if (late)
        be->ops->cancel(be->impl, job); /* then the terminal callback comes */
    pthread_mutex_lock(&w->mu);
    while (!w->done)
        pthread_cond_wait(&w->cv, &w->mu);
    pthread_mutex_unlock(&w->mu);
}

static void fail(struct srv_route_resp *resp, int status, const char *param,
                 const char *fmt, const char *arg)
{
    resp->status = status;
    resp->json = NULL;
    snprintf(resp->message, sizeof resp->message, fmt, arg);
    snprintf(resp->param, sizeof resp->param, "%s", param ? param : "");
}

/* Submit {"model": M, "input": [q]} to the backend serving M and wait. */
static int embed_query(struct srv_retrieve *r, const char *model, const char *q,
                       const char *request_id, struct emb_wait *w,
                       struct srv_route_resp *resp)
{
    struct srv_model_info info;
    struct srv_backend *be = srv__find_model(r->srv, model, &info);
    if (!be) {
        fail(resp, 400, "collection", "the collection's embedding model '%s' is not "
             "served here (add it with --model or an upstream)", model);
        return KM_ENOTFOUND;
    }
    struct km_buf jb; /* {"model":M,"input":[Q]}, for a proxy */
    km_buf_init(&jb, RAW_MAX);
    bool utf8 = km_buf_puts(&jb, "{\"model\":") == KM_OK && rag_json_str(&jb, model) == KM_OK &&
                km_buf_puts(&jb, ",\"input\":[") == KM_OK && rag_json_str(&jb, q) == KM_OK &&
                km_buf_puts(&jb, "]}") == KM_OK;
    char *body = utf8 ? km_buf_take(&jb, NULL) : NULL;
    km_buf_free(&jb);
    struct srv_input in = {.text = q};
    struct srv_request req = {.ep = SRV_EP_EMBEDDING, .model = model, .request_id = request_id,
                              .n = 1, .inputs = &in, .n_inputs = 1,
                              .truncate_prompt_tokens = -1, .body = body,
                              .body_len = body ? strlen(body) : 0, .arrival = srv__now(),
                              .blocking = true /* we wait below: a local model runs here */};
    struct srv_sink sink = {.ud = w, .on_text = e_text, .on_finish = e_finish,
                            .on_embedding = e_embedding, .on_raw_head = e_raw_head,
                            .on_raw = e_raw, .on_done = e_done, .on_error = e_error};
    struct srv_job *job = NULL;
    struct km_err err;
    km_err_clear(&err);
    int rc = body ? be->ops->submit(be->impl, &req, &sink, &job, &err) : KM_ENOMEM;
    if (rc == KM_OK) {
        wait_done(w, be, job);
        be->ops->release(be->impl, job);
    }
    km_free(body); /* the backend is done with it */
    if (rc != KM_OK) {
        fail(resp, 502, NULL, "embedding the query failed: %s", km_err_text(&err));
        return rc;
    }
    if (w->status) {
        fail(resp, w->status >= 500 ? 502 : w->status, NULL, "embedding the query failed: %s", w->msg);
        return KM_EHTTP;
    }
    if (!w->vec && parse_raw(w) != KM_OK) {
        fail(resp, 502, NULL, "embedding the query failed: %s", "no vector in the backend's reply");
        return KM_EFORMAT;
    }
    return KM_OK;
}

/* ---- request parsing ---------------------------------------------------- */

struct rq {
    const char *collection, *query;
    int k;
    enum rag_mode mode;
    struct rag_filter filter;
};

static int parse_filter(const json_t *f, struct rq *q, struct srv_route_resp *resp)
{
    const char *key;
    json_t *v;
    struct km_err err;
    if (f && !json_is_object(f)) {
        fail(resp, 400, "filter", "%s", "filter must be an object of key: value");
        return KM_EINVAL;
    }
    json_object_foreach((json_t *)f, key, v) {
        char num[64];
        const char *s = json_string_value(v);
        if (json_is_integer(v))
            snprintf(num, sizeof num, "%lld", (long long)json_integer_value(v));
        else if (json_is_real(v))
            snprintf(num, sizeof num, "%.17g", json_real_value(v));
        else if (json_is_boolean(v))
            snprintf(num, sizeof num, "%s", json_is_true(v) ? "true" : "false");
        if (!s && !json_is_number(v) && !json_is_boolean(v)) {
            fail(resp, 400, "filter", "filter value of '%s' must be a string, number or boolean", key);
            return KM_EINVAL;
        }
        if (rag_filter_set(&q->filter, key, s ? s : num, &err) != KM_OK) {
            fail(resp, 400, "filter", "%s", km_err_text(&err));
            return KM_EINVAL;
        }
    }
    return KM_OK;
}

static int parse(const json_t *b, struct rq *q, struct srv_route_resp *resp)
{
    json_t *k = json_object_get(b, "k"), *mode = json_object_get(b, "mode");
    q->collection = json_string_value(json_object_get(b, "collection"));
    q->query = json_string_value(json_object_get(b, "query"));
    q->k = 5;
    q->mode = RAG_MODE_VECTOR;
    if (!q->collection || !q->collection[0]) {
        fail(resp, 400, "collection", "%s", "collection must be a non-empty string");
        return KM_EINVAL;
    }
    if (!q->query) {
        fail(resp, 400, "query", "%s", "query must be a string");
        return KM_EINVAL;
    }
    if (k && (!json_is_integer(k) || json_integer_value(k) < 1 || json_integer_value(k) > 1000)) {
        fail(resp, 400, "k", "%s", "k must be an integer in 1..1000");
        return KM_EINVAL;
    }
    q->k = k ? (int)json_integer_value(k) : 5;
    if (mode && (!json_is_string(mode) ||
                 rag_parse_mode(json_string_value(mode), &q->mode) != KM_OK)) {
        fail(resp, 400, "mode", "%s", "mode must be \"vector\", \"text\" or \"hybrid\"");
        return KM_EINVAL;
    }
    return parse_filter(json_object_get(b, "filter"), q, resp);
}

/* ---- the handler -------------------------------------------------------- */

static int db_status(int rc)
{
    return rc == KM_ENOTFOUND ? 404 : rc == KM_EINVAL ? 400 : rc == KM_ENET ? 503 : 500;
}

/* The collection row, from the connection's cache when it has it
 * (*cached); a dead pooled connection (the database restarted) is
 * replaced once. */
static int open_collection(struct srv_retrieve *r, const char *name, struct rag_db **db,
                           struct rag_collection *c, bool *cached, struct km_err *err)
{
    int rc = *db ? KM_OK : pool_take(r, db, err);
    if (rc == KM_OK)
        rc = rag_collection_get_cached(*db, name, c, cached, err);
    if (rc == KM_ENET && *db) {
        rag_close(*db);
        *db = NULL;
        pool_drain(r);
        rc = pool_take(r, db, err);
        if (rc == KM_OK)
            rc = rag_collection_get_cached(*db, name, c, cached, err);
    }
    return rc;
}

/* The query on *db; on a dead connection, once more on a new one. */
static int run_query(struct srv_retrieve *r, struct rag_db **db, const struct rag_query *rq,
                     struct rag_hits *hits, struct km_err *err)
{
    int rc = rag_query_run(*db, rq, hits, err);
    if (rc != KM_ENET)
        return rc;
    rag_close(*db);
    *db = NULL;
    pool_drain(r);
    km_err_clear(err);
    rc = pool_take(r, db, err);
    return rc == KM_OK ? rag_query_run(*db, rq, hits, err) : rc;
}

static void emb_reset(struct emb_wait *w)
{
    km_free(w->vec);
    w->vec = NULL;
    w->dim = 0;
    w->done = false;
    w->status = 0;
    w->raw_status = 0;
    w->msg[0] = '\0';
    km_buf_reset(&w->raw);
}

/* Look up, embed, query: KM_ESTATE when the collection changed model
 * between the lookup and the query, or when a cached row's model is not
 * served / refused by its backend (the row may be stale): the caller
 * starts over with a fresh row. */
static int attempt(struct srv_retrieve *r, const struct rq *q, const char *request_id,
                   struct rag_db **db, struct emb_wait *w, struct rag_hits *hits,
                   struct srv_route_resp *resp)
{
    struct rag_collection c;
    struct km_err err;
    bool cached = false;
    km_err_clear(&err);
    int rc = open_collection(r, q->collection, db, &c, &cached, &err);
    if (rc != KM_OK) {
        fail(resp, db_status(rc), rc == KM_ENOTFOUND ? "collection" : NULL, "%s", km_err_text(&err));
        return rc;
    }
    if (q->mode != RAG_MODE_TEXT) {
        rc = embed_query(r, c.embed_model, q->query, request_id, w, resp);
        if (cached && (rc == KM_ENOTFOUND || (rc == KM_EHTTP && resp->status < 500)))
            return KM_ESTATE;
        if (rc != KM_OK)
            return rc;
    }
    struct rag_query rq = {.collection = q->collection, .text = q->query, .vec = w->vec,
                           .dim = w->dim, .k = q->k, .mode = q->mode, .filter = &q->filter,
                           .embed_model = c.embed_model};
    rc = run_query(r, db, &rq, hits, &err);
    if (rc != KM_OK && rc != KM_ESTATE)
        fail(resp, db_status(rc), rc == KM_ENOTFOUND ? "collection" : NULL, "%s",
             km_err_text(&err));
    return rc;
}

static void answer(struct srv_retrieve *r, const struct rq *q, const char *request_id,
                   struct srv_route_resp *resp)
{
    struct rag_db *db = NULL;
    struct emb_wait w = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    struct rag_hits hits = {0};
    struct km_err err;
    km_err_clear(&err);
    km_buf_init(&w.raw, RAW_MAX);
    int rc = attempt(r, q, request_id, &db, &w, &hits, resp);
    if (rc == KM_ESTATE) { /* maybe recreated with another model: once more */
        emb_reset(&w);
        if (db)
            rag_collection_forget(db);
        rc = attempt(r, q, request_id, &db, &w, &hits, resp);
    }
    if (rc == KM_ESTATE)
        fail(resp, 503, NULL, "%s", "the collection changed while the query ran; retry");
    if (rc == KM_OK && rag_hits_json_buf(&hits, resp->body, &err) == KM_OK) {
        resp->status = 200;
        resp->raw = true; /* the hits straight into the reply's body */
    } else if (rc == KM_OK) {
        fail(resp, 500, NULL, "%s", km_err_text(&err));
    }
    pool_give(r, db, rc);
    rag_hits_free(&hits);
    km_free(w.vec);
    km_buf_free(&w.raw);
    pthread_cond_destroy(&w.cv);
    pthread_mutex_destroy(&w.mu);
}

static void handle(void *ud, const struct srv_route_req *req, struct srv_route_resp *resp)
{
    struct rq q = {0};
    rag_filter_init(&q.filter);
    if (parse(req->body, &q, resp) == KM_OK)
        answer(ud, &q, req->request_id, resp);
    rag_filter_free(&q.filter);
}

int srv_retrieve_new(struct srv_server *s, const char *database_url,
                     struct srv_retrieve **out, struct km_err *err)
{
    *out = NULL;
    struct srv_retrieve *r = km_calloc(1, sizeof *r);
    if (r)
        r->url = km_strdup(database_url);
    if (!r || !r->url) {
        km_free(r);
        return km_fail(err, KM_ENOMEM, "out of memory for /v1/retrieve");
    }
    r->srv = s;
    pthread_mutex_init(&r->mu, NULL);
    int rc = srv_server_add_route(s, "POST", "/v1/retrieve", handle, r, err);
    if (rc != KM_OK) {
        srv_retrieve_free(r);
        return rc;
    }
    *out = r;
    return KM_OK;
}

void srv_retrieve_free(struct srv_retrieve *r)
{
    if (!r)
        return;
    for (int i = 0; i < r->n_idle; i++)
        rag_close(r->idle[i]);
    pthread_mutex_destroy(&r->mu);
    km_free(r->url);
    km_free(r);
}
