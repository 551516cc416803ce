/* retrieve.c - POST /v1/retrieve (see retrieve.h): parse, embed the query
 * through the server's own backend for the collection's model, run
 * rag_query_run on a pooled connection, answer {"data": [hits]}. */
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
