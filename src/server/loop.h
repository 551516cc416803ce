/* loop.h - a small single-threaded epoll event loop. The HTTP adapter runs
 * one per HTTP thread (libmicrohttpd in external-epoll mode, http.c), and
 * the gateway runs the libcurl transfers of a request on the loop of the
 * thread that received it (upstream_lane.c), so a proxied request is read,
 * forwarded, answered and written back without changing threads.
 *
 * A pass of a loop waits (epoll) for its watched descriptors, calls the
 * callback of each ready one, then calls run() of every source in the order
 * they were added; run() returns how many ms it may sleep (-1: no timer),
 * and the next wait is the smallest of those (at most 1 s).
 *
 * Ownership: struct srv_loop_src and struct srv_loop_io are the caller's
 * (usually embedded in its own struct) and must stay valid while added /
 * watched. A loop is reference counted: srv_loop_new gives one reference,
 * srv_loop_ref/unref add and drop more (e.g. a request that may still wake
 * the loop after it stopped); the last unref frees it, stopped or never
 * started.
 *
 * Thread-safety: srv_loop_wake, srv_loop_ref, srv_loop_unref,
 * srv_loop_current and srv_loop_call are safe from any thread.
 * srv_loop_add, srv_loop_remove and srv_loop_io_set only on the loop's own
 * thread (or before srv_loop_start). srv_loop_stop from any other thread:
 * the loop finishes its pass, runs pending calls, calls each source's
 * on_exit on its own thread, and the thread is joined.
 */
#ifndef SRV_LOOP_H
#define SRV_LOOP_H

#include "base/err.h"

#include <stdbool.h>

struct srv_loop;

struct srv_loop_io {
    int fd;
    void (*fn)(struct srv_loop_io *io, unsigned events); /* EPOLLIN|... */
    void *ud;
    unsigned events;        /* in the set now (0: not watched); loop's */
};

struct srv_loop_src {
    void *ud;
    int (*run)(void *ud);           /* each pass; ms until due again, -1 */
    void (*on_exit)(void *ud);      /* the loop is stopping (may be NULL) */
    struct srv_loop_src *next;      /* the loop's */
};

int srv_loop_new(struct srv_loop **out, struct km_err *err);
int srv_loop_start(struct srv_loop *l, const char *name, struct km_err *err);
void srv_loop_stop(struct srv_loop *l);
void srv_loop_ref(struct srv_loop *l);
void srv_loop_unref(struct srv_loop *l);

/* The loop whose thread is calling, or NULL. */
struct srv_loop *srv_loop_current(void);

/* A promise of the calling thread (thread-local, off by default): until
 * turned off, whoever it calls returns to the loop without blocking, so
 * work it starts may run on this loop. The HTTP adapter gives it around
 * the asynchronous routes only; a caller that waits for the work (e.g. a
 * synchronous route submitting a job and blocking on its result) must not,
 * or it would wait for its own blocked thread. */
void srv_loop_set_returning(bool on);
/* The current loop while that promise holds, else NULL. */
struct srv_loop *srv_loop_returning(void);

/* Make the loop run a pass soon (any thread; cheap when already pending;
 * from the loop's own thread: the next pass does not sleep). */
void srv_loop_wake(struct srv_loop *l);

void srv_loop_add(struct srv_loop *l, struct srv_loop_src *src);
void srv_loop_remove(struct srv_loop *l, struct srv_loop_src *src);

/* Watch io->fd for `events` (EPOLLIN, EPOLLOUT; 0 stops watching). An io
 * stopped during a pass may still get a callback from that pass's batch
 * unless its owner ignores it, so free an io only after the pass (in run). */
int srv_loop_io_set(struct srv_loop *l, struct srv_loop_io *io, unsigned events);

/* Run fn(ud) on the loop's thread and wait for it; runs it in the caller
 * when the loop's thread has already exited (or never started). */
void srv_loop_call(struct srv_loop *l, void (*fn)(void *ud), void *ud);

#endif
