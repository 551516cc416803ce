/* sched.h - private: the per-model generation scheduler (engine-internal;
 * the public entry points eng_generate/eng_cancel/eng_job_free are declared
 * in engine.h and implemented in sched.c).
 *
 * One worker thread per model owns n_slots sequence slots, each with its own
 * KV cache, sampler, stop-string matcher and streaming detokenizer, all
 * allocated here at start-up. Requests wait in a FIFO queue and take a free
 * slot in arrival order. The worker serves active slots round-robin, one step
 * each: a prefill chunk (the whole batch when alone, 64 tokens when others
 * are active) or one decode step. Cancellation is checked before every step.
 * Thread-safety: eng__sched_* calls are serialized by the caller (model
 * load/close); the public functions are thread-safe.
 */
#ifndef ENG_SCHED_H
#define ENG_SCHED_H

#include "base/err.h"
#include "engine/engine.h"

struct eng_sched;

int eng__sched_new(struct eng_model *m, int n_slots, struct eng_sched **out,
                   struct km_err *err);
/* Abort queued and running jobs (their on_done gets "abort"), stop the
 * worker, free the slots. Accepts NULL. */
void eng__sched_free(struct eng_sched *s);
int eng__sched_slots(const struct eng_sched *s);
void eng__sched_stats(struct eng_sched *s, struct eng_stats *out);

#endif
