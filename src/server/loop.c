/* loop.c - the single-threaded epoll loop of loop.h. */
#include "server/loop.h"

#include "base/mem.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define MAX_EVENTS 64
#define MAX_WAIT_MS 1000

struct task {
    void (*fn)(void *ud);
    void *ud;
    bool done;
    struct task *next;
};

struct srv_loop {
    int epfd;
    struct srv_loop_io wake_io;     /* eventfd */
    atomic_bool wake_pending;
    atomic_bool stop;
    atomic_int refs;
    pthread_t thread;
    bool started, joined;
    bool again;                     /* woken by its own thread: pass now */
    char name[16];
    struct srv_loop_src *srcs;
    pthread_mutex_t mu;             /* tasks, exited */
    pthread_cond_t cv;
    struct task *tasks;
    bool exited;
};

static __thread struct srv_loop *current;
static __thread bool returning;

struct srv_loop *srv_loop_current(void)
{
    return current;
}

void srv_loop_set_returning(bool on)
{
    returning = on;
}

struct srv_loop *srv_loop_returning(void)
{
    return returning ? current : NULL;
}

static void on_wake(struct srv_loop_io *io, unsigned events)
{
    struct srv_loop *l = io->ud;
    uint64_t v;
    (void)events;
    atomic_store(&l->wake_pending, false);
    while (read(io->fd, &v, sizeof v) < 0 && errno == EINTR)
        ;
}

int srv_loop_new(struct srv_loop **out, struct km_err *err)
{
    *out = NULL;
    struct srv_loop *l = km_calloc(1, sizeof *l);
    if (!l)
        return km_fail(err, KM_ENOMEM, "event loop: out of memory");
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    l->wake_io.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (l->epfd < 0 || l->wake_io.fd < 0) {
        int e = errno;
        if (l->epfd >= 0)
            close(l->epfd);
        if (l->wake_io.fd >= 0)
            close(l->wake_io.fd);
        km_free(l);
        return km_fail(err, KM_EIO, "event loop: %s", strerror(e));
    }
    l->wake_io.fn = on_wake;
    l->wake_io.ud = l;
    atomic_init(&l->refs, 1);
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv, NULL);
    srv_loop_io_set(l, &l->wake_io, EPOLLIN);
    *out = l;
    return KM_OK;
}

void srv_loop_ref(struct srv_loop *l)
{
    atomic_fetch_add(&l->refs, 1);
}

void srv_loop_unref(struct srv_loop *l)
{
    if (!l || atomic_fetch_sub(&l->refs, 1) != 1)
        return;
    close(l->wake_io.fd);
    close(l->epfd);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv);
    km_free(l);
}

void srv_loop_wake(struct srv_loop *l)
{
    if (current == l) {         /* own thread: no syscall, just no sleep */
        l->again = true;
        return;
    }
    if (atomic_exchange(&l->wake_pending, true))
        return;
    uint64_t one = 1;
    while (write(l->wake_io.fd, &one, sizeof one) < 0 && errno == EINTR)
        ;
}

void srv_loop_add(struct srv_loop *l, struct srv_loop_src *src)
{
    struct srv_loop_src **pp = &l->srcs;
    while (*pp)
        pp = &(*pp)->next;
    src->next = NULL;
    *pp = src;
}

void srv_loop_remove(struct srv_loop *l, struct srv_loop_src *src)
{
    struct srv_loop_src **pp = &l->srcs;
    while (*pp && *pp != src)
        pp = &(*pp)->next;
    if (*pp)
        *pp = src->next;
    src->next = NULL;
}

int srv_loop_io_set(struct srv_loop *l, struct srv_loop_io *io, unsigned events)
{
    struct epoll_event ev = {.events = events, .data.ptr = io};
    int op = !events ? EPOLL_CTL_DEL : io->events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (!events && !io->events)
        return KM_OK;
    if (events && events == io->events)
        return KM_OK;
    int rc = epoll_ctl(l->epfd, op, io->fd, &ev);
    io->events = events;
    return rc == 0 || (op == EPOLL_CTL_DEL && errno == EBADF) ? KM_OK : KM_EIO;
}

/* Pending calls (loop thread). */
static void run_tasks(struct srv_loop *l)
{
    pthread_mutex_lock(&l->mu);
    while (l->tasks) {
        struct task *t = l->tasks;
        l->tasks = t->next;
        pthread_mutex_unlock(&l->mu);
        t->fn(t->ud);
        pthread_mutex_lock(&l->mu);
        t->done = true;
        pthread_cond_broadcast(&l->cv);
    }
    pthread_mutex_unlock(&l->mu);
}

void srv_loop_call(struct srv_loop *l, void (*fn)(void *ud), void *ud)
{
    struct task t = {fn, ud, false, NULL};
    pthread_mutex_lock(&l->mu);
    bool inline_run = l->exited || !l->started || current == l;
    if (!inline_run) {
        t.next = l->tasks;
        l->tasks = &t;
    }
    pthread_mutex_unlock(&l->mu);
    if (inline_run) {
        fn(ud);
        return;
    }
    srv_loop_wake(l);
    pthread_mutex_lock(&l->mu);
    while (!t.done)
        pthread_cond_wait(&l->cv, &l->mu);
    pthread_mutex_unlock(&l->mu);
}

static int run_sources(struct srv_loop *l)
{
    int wait = MAX_WAIT_MS;
    struct srv_loop_src *s = l->srcs, *next;
    l->again = false;
    for (; s; s = next) {
        int w = s->run ? s->run(s->ud) : -1;
        next = s->next;         /* sources run() added come after it */
        if (w >= 0 && w < wait)
            wait = w;
    }
    return l->again ? 0 : wait;
}

static void one_pass(struct srv_loop *l, int wait)
{
    struct epoll_event ev[MAX_EVENTS];
    int n = epoll_wait(l->epfd, ev, MAX_EVENTS, wait);
    for (int i = 0; i < n; i++) {
        struct srv_loop_io *io = ev[i].data.ptr;
        if (io->events)         /* stopped earlier in this batch: skip */
            io->fn(io, ev[i].events);
    }
}

/* Pending calls, each source's on_exit, then calls made meanwhile. */
static void loop_exit(struct srv_loop *l)
{
    run_tasks(l);
    for (struct srv_loop_src *s = l->srcs, *next; s; s = next) {
        next = s->next;
        if (s->on_exit)
            s->on_exit(s->ud);
    }
    pthread_mutex_lock(&l->mu);
    l->exited = true;
    pthread_mutex_unlock(&l->mu);
    run_tasks(l);
}

static void *loop_main(void *arg)
{
    struct srv_loop *l = arg;
    current = l;
    int wait = 0;
    while (!atomic_load(&l->stop)) {
        one_pass(l, wait);
        run_tasks(l);
        wait = run_sources(l);
    }
    loop_exit(l);
    current = NULL;
    return NULL;
}

int srv_loop_start(struct srv_loop *l, const char *name, struct km_err *err)
{
    snprintf(l->name, sizeof l->name, "%s", name ? name : "loop");
    pthread_mutex_lock(&l->mu);
    l->started = true;
    pthread_mutex_unlock(&l->mu);
    if (pthread_create(&l->thread, NULL, loop_main, l) != 0) {
        pthread_mutex_lock(&l->mu);
        l->started = false;
        pthread_mutex_unlock(&l->mu);
        return km_fail(err, KM_ENOMEM, "cannot start the %s thread", l->name);
    }
    pthread_setname_np(l->thread, l->name);
    return KM_OK;
}

void srv_loop_stop(struct srv_loop *l)
{
    if (!l || l->joined)
        return;
    if (l->started) {
        atomic_store(&l->stop, true);
        srv_loop_wake(l);
        pthread_join(l->thread, NULL);
    } else {
        current = l;            /* never started: exit the sources here */
        loop_exit(l);
        current = NULL;
    }
    l->joined = true;
}
