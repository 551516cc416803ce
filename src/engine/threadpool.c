/* threadpool.c - fork/join worker pool (see threadpool.h).
 *
 * State machine. A run is generation g. The driver fills job slot g & 1
 * (function, argument, chunk count, done = 0), stores ticket = g << 32 | 0,
 * then bumps `gen` (the futex word the workers wait on) and wakes sleepers.
 * Every thread, the driver included, claims chunk c by moving the ticket
 * from (g, c) to (g, c + 1) with a compare-and-swap, runs it, and counts it
 * in the slot's `done`; the driver returns once done == n.
 *
 * Why the claim is safe for a late worker. The worker reads the ticket, then
 * the job of its slot, then tries the CAS. The CAS succeeds only if the
 * ticket still says (g, c) with c < n: chunk c of run g is unclaimed, so run
 * g has not finished, so the driver has not started g + 1, let alone g + 2
 * (the next writer of this slot): the job it read is run g's. A failed CAS
 * means the ticket moved on, and the worker reads again. Slot `done`
 * counters are only touched by threads holding a chunk of that run.
 *
 * Sleeping. Workers spin on `gen` for SPIN_NS (yielding now and then: on a
 * busy machine the thread we wait for may need our core), then register in
 * `sleepers` and futex-wait; the driver wakes them only when sleepers > 0
 * (both sides use sequentially consistent accesses, so either the driver
 * sees the sleeper or the sleeper sees the new generation). The driver's
 * wait for `done` works the same way with `driver_sleeps`.
 */
#include "engine/threadpool.h"

#include "base/mem.h"

#include <immintrin.h>
#include <linux/futex.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define SPIN_NS 200000        /* a worker spins this long for the next run */
#define DRIVER_SPIN_NS 100000 /* the driver spins this long for the last chunks */
#define CLOCK_EVERY 32        /* pause rounds between clock reads */
#define YIELD_EVERY 1024      /* pause rounds between sched_yield calls */

struct worker {
    struct eng_pool *pool;
    pthread_t thread;
    int ith;
};

/* One run's description; two slots alternate between generations. */
struct job {
    _Atomic(eng_pool_fn) share_fn;        /* eng_pool_run form, or NULL */
    _Atomic(eng_pool_chunk_fn) chunk_fn;  /* eng_pool_run_chunks form */
    _Atomic(void *) arg;
    atomic_int n;                         /* chunks */
    atomic_uint done;                     /* chunks finished (futex word) */
};

struct eng_pool {
    int n;
    struct worker *workers;   /* n-1 entries */
    int started;
    unsigned last_gen;        /* driver's copy of gen */
    struct job job[2];
    _Atomic uint64_t ticket;  /* gen << 32 | next chunk */
    atomic_uint gen;          /* futex word the workers wait on */
    atomic_int sleepers;
    atomic_int driver_sleeps;
    atomic_bool stop;
};

static void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    _mm_pause();
#endif
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void futex_wait(atomic_uint *word, unsigned expect)
{
    syscall(SYS_futex, (unsigned *)word, FUTEX_WAIT_PRIVATE, expect, NULL, NULL, 0);
}

static void futex_wake(atomic_uint *word, int n)
{
    syscall(SYS_futex, (unsigned *)word, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

/* Spin until (*word == v) == equal or `budget_ns` pass; true if it did. */
static bool spin_until(atomic_uint *word, unsigned v, bool equal, int64_t budget_ns)
{
    int64_t t0 = 0;
    for (unsigned i = 1;; i++) {
        if ((atomic_load_explicit(word, memory_order_acquire) == v) == equal)
            return true;
        cpu_relax();
        if (i % YIELD_EVERY == 0)
            sched_yield();
        if (i % CLOCK_EVERY == 0) {
            int64_t t = now_ns();
            if (t0 == 0)
                t0 = t;
            else if (t - t0 > budget_ns)
                return false;
        }
    }
}

static unsigned wait_generation(struct eng_pool *p, unsigned seen)
{
    if (!spin_until(&p->gen, seen, false, SPIN_NS)) {
        atomic_fetch_add(&p->sleepers, 1);
        while (atomic_load(&p->gen) == seen)
            futex_wait(&p->gen, seen);
        atomic_fetch_sub(&p->sleepers, 1);
    }
    return atomic_load(&p->gen);
}

/* Claim and run chunks of the current run until none is left. */
static void work(struct eng_pool *p, int ith)
{
    for (;;) {
        uint64_t t = atomic_load_explicit(&p->ticket, memory_order_acquire);
        unsigned g = (unsigned)(t >> 32);
        int c = (int)(uint32_t)t;
        struct job *j = &p->job[g & 1];
        int n = atomic_load_explicit(&j->n, memory_order_relaxed);
        eng_pool_fn share = atomic_load_explicit(&j->share_fn, memory_order_relaxed);
        eng_pool_chunk_fn chunk = atomic_load_explicit(&j->chunk_fn, memory_order_relaxed);
        void *arg = atomic_load_explicit(&j->arg, memory_order_relaxed);
        if (c >= n)
            return;
        atomic_thread_fence(memory_order_acquire);
        if (!atomic_compare_exchange_weak(&p->ticket, &t, t + 1))
            continue;
        if (share)
            share(arg, c, p->n);
        else
            chunk(arg, c, ith);
        if ((int)atomic_fetch_add(&j->done, 1) + 1 == n && atomic_load(&p->driver_sleeps))
            futex_wake(&j->done, 1);
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct eng_pool *p = w->pool;
    unsigned seen = 0;
    for (;;) {
        seen = wait_generation(p, seen);
        if (atomic_load(&p->stop))
            break;
        work(p, w->ith);
    }
    return NULL;
}

int eng_pool_new(int n_threads, struct eng_pool **out, struct km_err *err)
{
    *out = NULL;
    if (n_threads < 1 || n_threads > 256)
        return km_fail(err, KM_EINVAL, "thread count %d is outside 1..256", n_threads);
    struct eng_pool *p = km_calloc(1, sizeof *p);
    if (!p)
        return km_fail(err, KM_ENOMEM, "out of memory for a thread pool");
    p->n = n_threads;
    p->workers = km_calloc((size_t)n_threads, sizeof *p->workers);
    if (!p->workers) {
        eng_pool_free(p);
        return km_fail(err, KM_ENOMEM, "out of memory for %d workers", n_threads);
    }
    for (int i = 1; i < n_threads; i++) {
        struct worker *w = &p->workers[i - 1];
        w->pool = p;
        w->ith = i;
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            eng_pool_free(p);
            return km_fail(err, KM_ENOMEM, "cannot start worker thread %d of %d", i, n_threads);
        }
        p->started++;
    }
    *out = p;
    return KM_OK;
}

/* Wait until all n chunks of job j are done. */
static void wait_done(struct eng_pool *p, struct job *j, unsigned n)
{
    if (spin_until(&j->done, n, true, DRIVER_SPIN_NS))
        return;
    atomic_store(&p->driver_sleeps, 1);
    for (unsigned d = atomic_load(&j->done); d != n; d = atomic_load(&j->done))
        futex_wait(&j->done, d);
    atomic_store(&p->driver_sleeps, 0);
}

static void run(struct eng_pool *p, eng_pool_fn share, eng_pool_chunk_fn chunk, void *arg,
                 int n)
{
    unsigned g = ++p->last_gen;
    struct job *j = &p->job[g & 1];
    atomic_store_explicit(&j->share_fn, share, memory_order_relaxed);
    atomic_store_explicit(&j->chunk_fn, chunk, memory_order_relaxed);
    atomic_store_explicit(&j->arg, arg, memory_order_relaxed);
    atomic_store_explicit(&j->n, n, memory_order_relaxed);
    atomic_store_explicit(&j->done, 0, memory_order_relaxed);
    atomic_store_explicit(&p->ticket, (uint64_t)g << 32, memory_order_release);
    atomic_store(&p->gen, g);
    if (atomic_load(&p->sleepers) > 0)
        futex_wake(&p->gen, INT_MAX);
    work(p, 0);
    wait_done(p, j, (unsigned)n);
}

void eng_pool_run(struct eng_pool *p, eng_pool_fn fn, void *arg)
{
    if (p->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    run(p, fn, NULL, arg, p->n);
}

void eng_pool_run_chunks(struct eng_pool *p, eng_pool_chunk_fn fn, void *arg, int n_chunks)
{
    if (p->n == 1 || n_chunks <= 1) {
        for (int c = 0; c < n_chunks; c++)
            fn(arg, c, 0);
        return;
    }
    run(p, NULL, fn, arg, n_chunks);
}

int eng_pool_size(const struct eng_pool *p)
{
    return p->n;
}

void eng_pool_free(struct eng_pool *p)
{
    if (!p)
        return;
    atomic_store(&p->stop, true);
    atomic_fetch_add(&p->gen, 1);
    futex_wake(&p->gen, INT_MAX);
    for (int i = 0; i < p->started; i++)
        pthread_join(p->workers[i].thread, NULL);
    km_free(p->workers);
    km_free(p);
}

int eng_physical_cores(void)
{
    char seen[1024];
    int n = 0;
    memset(seen, 0, sizeof seen);
    for (int cpu = 0; cpu < 1024; cpu++) {
        char path[128];
        snprintf(path, sizeof path,
                 "/sys/devices/system/cpu/cpu%d/topology/core_id", cpu);
        FILE *f = fopen(path, "r");
        if (!f)
            break;
        int id = -1;
        int pkg = 0;
        if (fscanf(f, "%d", &id) != 1)
            id = -1;
        fclose(f);
        snprintf(path, sizeof path,
                 "/sys/devices/system/cpu/cpu%d/topology/physical_package_id", cpu);
        f = fopen(path, "r");
        if (f) {
            if (fscanf(f, "%d", &pkg) != 1)
                pkg = 0;
            fclose(f);
        }
        int key = (pkg * 256 + id) & 1023;
        if (id >= 0 && !seen[key]) {
            seen[key] = 1;
            n++;
        }
    }
    if (n < 1) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n = c > 0 ? (int)c : 1;
    }
    return n;
}
