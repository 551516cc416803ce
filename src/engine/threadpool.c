/* threadpool.c - fork/join worker pool (see threadpool.h).
 *
 * State machine: the driver bumps `gen` after publishing fn/arg; each worker
 * waits for gen to change (spinning, then sleeping on `cv`), runs its share,
 * and decrements `pending`; the driver runs share 0 and spins until pending
 * reaches 0. `stop` ends the workers at the next generation.
 */
#include "engine/threadpool.h"

#include "base/mem.h"

#include <immintrin.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define SPIN_ROUNDS 200000
#define YIELD_EVERY 1024   /* spinning threads yield now and then: on a busy
                              machine the thread we wait for may need our core */

struct worker {
    struct eng_pool *pool;
    pthread_t thread;
    int ith;
};

struct eng_pool {
    int n;
    struct worker *workers;   /* n-1 entries */
    int started;
    eng_pool_fn fn;
    void *arg;
    atomic_uint gen;
    atomic_int pending;
    atomic_int sleeping;
    atomic_bool stop;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

static void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    _mm_pause();
#endif
}

static unsigned wait_generation(struct eng_pool *p, unsigned seen)
{
    for (int i = 0; i < SPIN_ROUNDS; i++) {
        unsigned g = atomic_load_explicit(&p->gen, memory_order_acquire);
        if (g != seen)
            return g;
        cpu_relax();
        if (i % YIELD_EVERY == YIELD_EVERY - 1)
            sched_yield();
    }
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add(&p->sleeping, 1);
    while (atomic_load(&p->gen) == seen)
        pthread_cond_wait(&p->cv, &p->mu);
    atomic_fetch_sub(&p->sleeping, 1);
    pthread_mutex_unlock(&p->mu);
    return atomic_load(&p->gen);
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
        p->fn(p->arg, w->ith, p->n);
        atomic_fetch_sub_explicit(&p->pending, 1, memory_order_acq_rel);
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
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
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

static void publish(struct eng_pool *p)
{
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_acq_rel);
    if (atomic_load(&p->sleeping) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
}

void eng_pool_run(struct eng_pool *p, eng_pool_fn fn, void *arg)
{
    if (p->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    atomic_store(&p->pending, p->n - 1);
    publish(p);
    fn(arg, 0, p->n);
    for (unsigned i = 1; atomic_load_explicit(&p->pending, memory_order_acquire) > 0; i++) {
        cpu_relax();
        if (i % YIELD_EVERY == 0)
            sched_yield();
    }
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
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add(&p->gen, 1);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->started; i++)
        pthread_join(p->workers[i].thread, NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
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
