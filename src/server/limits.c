/* limits.c - admission control: at most max_running requests in backends and
 * max_waiting more in a FIFO; beyond that the caller answers 429 with
 * Retry-After. A queued call leaves the queue exactly once, by whoever takes
 * it out under the lock (srv__limits_release admits it, srv__limits_remove
 * drops it), and that party wakes it. */
#include "server/server_int.h"

void srv__limits_init(struct srv_limits *l, long max_running, long max_waiting)
{
    pthread_mutex_init(&l->mu, NULL);
    l->running = l->waiting = 0;
    l->max_running = max_running;
    l->max_waiting = max_waiting;
    l->head = l->tail = NULL;
}

void srv__limits_destroy(struct srv_limits *l)
{
    pthread_mutex_destroy(&l->mu);
}

enum srv_admit srv__limits_admit(struct srv_limits *l, struct srv_call *c)
{
    enum srv_admit r = SRV_ADMIT_FULL;
    pthread_mutex_lock(&l->mu);
    if (l->running < l->max_running && l->head == NULL) {
        l->running++;
        r = SRV_ADMIT_RUN;
    } else if (l->waiting < l->max_waiting) {
        c->qnext = NULL;
        if (l->tail)
            l->tail->qnext = c;
        else
            l->head = c;
        l->tail = c;
        l->waiting++;
        r = SRV_ADMIT_QUEUED;
    }
    pthread_mutex_unlock(&l->mu);
    return r;
}

struct srv_call *srv__limits_release(struct srv_limits *l)
{
    pthread_mutex_lock(&l->mu);
    struct srv_call *c = l->head;
    if (c) {
        l->head = c->qnext;
        if (!l->head)
            l->tail = NULL;
        c->qnext = NULL;
        l->waiting--;
    } else {
        l->running--;
    }
    pthread_mutex_unlock(&l->mu);
    return c; /* the slot passes to c */
}

bool srv__limits_remove(struct srv_limits *l, struct srv_call *c)
{
    bool found = false;
    pthread_mutex_lock(&l->mu);
    struct srv_call *prev = NULL;
    for (struct srv_call *p = l->head; p; prev = p, p = p->qnext) {
        if (p != c)
            continue;
        if (prev)
            prev->qnext = p->qnext;
        else
            l->head = p->qnext;
        if (l->tail == p)
            l->tail = prev;
        p->qnext = NULL;
        l->waiting--;
        found = true;
        break;
    }
    pthread_mutex_unlock(&l->mu);
    return found;
}

long srv__limits_retry_after(const struct srv_limits *l)
{
    (void)l;
    return 1;
}
