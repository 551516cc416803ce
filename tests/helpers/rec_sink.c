/* rec_sink.c - the recording sink shared by the upstream tests; see
 * rec_sink.h. */
#include "rec_sink.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

void rec_init(struct rec *r, size_t body_cap)
{
    memset(r, 0, sizeof *r);
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    km_buf_init(&r->body, body_cap);
}

void rec_free(struct rec *r)
{
    km_buf_free(&r->body);
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
}

static void on_raw_head(void *ud, int status, const char *ct)
{
    struct rec *r = ud;
    r->head_status = status;
    r->heads++;
    snprintf(r->ctype, sizeof r->ctype, "%s", ct);
}

static void on_raw(void *ud, const char *b, size_t n)
{
    struct rec *r = ud;
    km_buf_append(&r->body, b, n);
}

static void finish(struct rec *r)
{
    pthread_mutex_lock(&r->mu);
    r->finished = true;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

static void on_done(void *ud, const struct srv_usage *u)
{
    struct rec *r = ud;
    (void)u;
    r->done = true;
    finish(r);
}

static void on_error(void *ud, int status, const char *type, const char *msg)
{
    struct rec *r = ud;
    r->err_status = status;
    snprintf(r->err_type, sizeof r->err_type, "%s", type);
    snprintf(r->err_msg, sizeof r->err_msg, "%s", msg);
    finish(r);
}

static bool raw_full(void *ud)
{
    struct rec *r = ud;
    if (r->full_polls > 0) {
        r->full_polls--;
        return true;
    }
    return false;
}

struct srv_sink rec_sink(struct rec *r)
{
    struct srv_sink s = {
        .ud = r, .on_raw_head = on_raw_head, .on_raw = on_raw,
        .on_done = on_done, .on_error = on_error, .raw_full = raw_full,
    };
    return s;
}

/* The deadline is absolute on CLOCK_REALTIME, pthread_cond_timedwait's
 * default clock. */
bool rec_wait(struct rec *r, int ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    long long ns = ts.tv_nsec + (long long)ms * 1000000LL;
    ts.tv_sec += ns / 1000000000LL;
    ts.tv_nsec = ns % 1000000000LL;
    pthread_mutex_lock(&r->mu);
    int rc = 0;
    while (!r->finished && rc == 0)
        rc = pthread_cond_timedwait(&r->cv, &r->mu, &ts);
    bool f = r->finished;
    pthread_mutex_unlock(&r->mu);
    return f;
}
