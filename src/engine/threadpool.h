/* threadpool.h - persistent worker threads for the engine's parallel ops.
 *
 * Contract: eng_pool_new starts n-1 workers; the calling thread is worker 0.
 *
 * eng_pool_run_chunks(p, fn, arg, n) calls fn(arg, chunk, ith) once for
 * every chunk 0..n-1 and returns when all calls have returned (the return is
 * the barrier after each op). Threads claim chunks one at a time from a
 * shared counter, so a thread that the OS delays simply claims fewer; ith
 * (0..nth-1) names the thread running the call, for per-thread scratch.
 * Which thread runs which chunk varies from run to run: a chunk's result
 * must depend only on the chunk (never on ith or on other chunks).
 *
 * eng_pool_run(p, fn, arg) is the fixed-partition form: it calls
 * fn(arg, ith, nth) once for every ith = 0..nth-1 (nth = pool size), each
 * share being one chunk; a share may run on any thread (possibly two shares
 * on the same thread, one after the other), so per-share scratch indexed by
 * ith stays exclusive. A given thread count always gives the same partition
 * (deterministic results).
 *
 * Waiting: between runs the workers spin for a short time (decode issues
 * hundreds of runs per token back to back), then sleep on a futex; the
 * driver likewise spins briefly for the last chunks, then sleeps. An idle
 * pool uses no CPU. Nothing is allocated per run.
 *
 * Ownership: the pool is freed with eng_pool_free (joins the workers).
 * Thread-safety: one pool is driven by one thread at a time (runs are not
 * reentrant: fn must not call eng_pool_run* on the same pool); different
 * pools are independent.
 */
#ifndef ENG_THREADPOOL_H
#define ENG_THREADPOOL_H

#include "base/err.h"

typedef void (*eng_pool_fn)(void *arg, int ith, int nth);
typedef void (*eng_pool_chunk_fn)(void *arg, int chunk, int ith);

struct eng_pool; /* opaque */

/* Start a pool of n_threads (>= 1) threads including the caller. */
int eng_pool_new(int n_threads, struct eng_pool **out, struct km_err *err);
/* Run fn for every share ith = 0..nth-1 and wait for all of them. */
void eng_pool_run(struct eng_pool *p, eng_pool_fn fn, void *arg);
/* Run fn for chunks 0..n_chunks-1 (claimed dynamically) and wait. */
void eng_pool_run_chunks(struct eng_pool *p, eng_pool_chunk_fn fn, void *arg, int n_chunks);
int eng_pool_size(const struct eng_pool *p);
/* Stop and join the workers; accepts NULL. */
void eng_pool_free(struct eng_pool *p);

/* Number of physical cores (distinct core ids in sysfs), at least 1. */
int eng_physical_cores(void);

#endif
