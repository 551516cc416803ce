/* threadpool.h - persistent worker threads for the engine's parallel ops.
 *
 * Contract: eng_pool_new starts n-1 workers; the calling thread is worker 0.
 * eng_pool_run(p, fn, arg) calls fn(arg, ith, nth) once on every worker
 * (ith = 0..nth-1) and returns when all calls have returned: the return is
 * the barrier after each op. Work is split by ith/nth inside fn, so a given
 * thread count always gives the same partition (deterministic results).
 * Workers spin briefly between ops (decode runs hundreds of ops per token)
 * and then sleep on a condition variable. Nothing is allocated per run.
 *
 * Ownership: the pool is freed with eng_pool_free (joins the workers).
 * Thread-safety: one pool is driven by one thread at a time (eng_pool_run is
 * not reentrant); different pools are independent.
 */
#ifndef ENG_THREADPOOL_H
#define ENG_THREADPOOL_H

#include "base/err.h"

typedef void (*eng_pool_fn)(void *arg, int ith, int nth);

struct eng_pool; /* opaque */

/* Start a pool of n_threads (>= 1) threads including the caller. */
int eng_pool_new(int n_threads, struct eng_pool **out, struct km_err *err);
/* Run fn on every thread and wait for all of them. */
void eng_pool_run(struct eng_pool *p, eng_pool_fn fn, void *arg);
int eng_pool_size(const struct eng_pool *p);
/* Stop and join the workers; accepts NULL. */
void eng_pool_free(struct eng_pool *p);

/* Number of physical cores (distinct core ids in sysfs), at least 1. */
int eng_physical_cores(void);

#endif
