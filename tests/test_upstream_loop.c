/* test_upstream_loop.c - the event loop under the gateway's lanes and the
 * HTTP threads (server/loop.h): watched descriptors, wake-ups from other
 * threads and from its own, calls run on the loop's thread, on_exit at
 * stop, and the reference count keeping a stopped loop wakeable. */
#include "server/loop.h"

#include "base/mem.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

struct probe {
    struct srv_loop *loop;
    struct srv_loop_src src;
    struct srv_loop_io io;
    atomic_int runs, reads, exits;
    atomic_bool on_loop;        /* run() saw srv_loop_current() == loop */
    int pipe[2];
};

static int probe_run(void *ud)
{
    struct probe *p = ud;
    atomic_fetch_add(&p->runs, 1);
    if (srv_loop_current() == p->loop)
        atomic_store(&p->on_loop, true);
    return -1;                  /* no timer: sleeps until woken */
}

static void probe_exit(void *ud)
{
    struct probe *p = ud;
    atomic_fetch_add(&p->exits, 1);
}

static void probe_io(struct srv_loop_io *io, unsigned events)
{
    struct probe *p = io->ud;
    char b[16];
    if ((events & EPOLLIN) && read(io->fd, b, sizeof b) > 0)
        atomic_fetch_add(&p->reads, 1);
}

static void probe_start(struct probe *p)
{
    struct km_err err = {0};
    memset(p, 0, sizeof *p);
    cr_assert_eq(srv_loop_new(&p->loop, &err), KM_OK, "%s", err.msg);
    cr_assert_eq(pipe(p->pipe), 0);
    p->src.ud = p;
    p->src.run = probe_run;
    p->src.on_exit = probe_exit;
    p->io.fd = p->pipe[0];
    p->io.fn = probe_io;
    p->io.ud = p;
    srv_loop_add(p->loop, &p->src);
    cr_assert_eq(srv_loop_io_set(p->loop, &p->io, EPOLLIN), KM_OK);
    cr_assert_eq(srv_loop_start(p->loop, "test-loop", &err), KM_OK, "%s", err.msg);
}

static void probe_stop(struct probe *p)
{
    srv_loop_stop(p->loop);
    srv_loop_unref(p->loop);
    close(p->pipe[0]);
    close(p->pipe[1]);
}

/* Wait (bounded: 5 s) until *v >= want. */
static bool wait_at_least(atomic_int *v, int want)
{
    struct timespec ts = {0, 1000000};
    for (int i = 0; i < 5000 && atomic_load(v) < want; i++)
        nanosleep(&ts, NULL);
    return atomic_load(v) >= want;
}

Test(loop, io_and_wake_from_another_thread)
{
    struct probe p;
    probe_start(&p);
    cr_assert(wait_at_least(&p.runs, 1), "the first pass runs the sources");
    cr_assert(atomic_load(&p.on_loop), "run() is called on the loop's thread");
    cr_assert_null(srv_loop_current(), "this thread runs no loop");
    cr_assert_eq(write(p.pipe[1], "x", 1), 1);
    cr_assert(wait_at_least(&p.reads, 1), "a readable fd calls its io callback");
    int before = atomic_load(&p.runs);
    srv_loop_wake(p.loop);
    cr_assert(wait_at_least(&p.runs, before + 1), "a wake runs a pass");
    probe_stop(&p);
    cr_assert_eq(atomic_load(&p.exits), 1, "on_exit once at stop");
}

static void call_here(void *ud)
{
    struct probe *p = ud;
    if (srv_loop_current() == p->loop)
        atomic_fetch_add(&p->reads, 100);
}

Test(loop, call_runs_on_the_loop_thread_or_inline_after_exit)
{
    struct probe p;
    probe_start(&p);
    srv_loop_call(p.loop, call_here, &p);
    cr_assert_eq(atomic_load(&p.reads), 100, "ran on the loop, and waited for");
    srv_loop_stop(p.loop);
    srv_loop_call(p.loop, call_here, &p);   /* stopped: runs inline, here */
    cr_assert_eq(atomic_load(&p.reads), 100);
    srv_loop_unref(p.loop);
    close(p.pipe[0]);
    close(p.pipe[1]);
}

Test(loop, reference_keeps_a_stopped_loop_wakeable)
{
    struct probe p;
    probe_start(&p);
    srv_loop_ref(p.loop);           /* e.g. a job not released yet */
    srv_loop_stop(p.loop);
    srv_loop_unref(p.loop);         /* the owner's reference */
    srv_loop_wake(p.loop);          /* still allocated: harmless */
    srv_loop_unref(p.loop);         /* the last one frees it (LeakSanitizer) */
    close(p.pipe[0]);
    close(p.pipe[1]);
    cr_assert_eq(atomic_load(&p.exits), 1);
}

Test(loop, never_started_loop_exits_its_sources_at_stop)
{
    struct km_err err = {0};
    struct probe p;
    memset(&p, 0, sizeof p);
    cr_assert_eq(srv_loop_new(&p.loop, &err), KM_OK);
    p.src.ud = &p;
    p.src.on_exit = probe_exit;
    srv_loop_add(p.loop, &p.src);
    srv_loop_stop(p.loop);
    srv_loop_stop(p.loop);          /* twice: a no-op */
    srv_loop_unref(p.loop);
    cr_assert_eq(atomic_load(&p.exits), 1);
}
