/* sched.c - one worker per model serving sequences round-robin (see sched.h).
 *
 * Job life cycle: eng_generate validates and copies the request into a job
 * and appends it to the queue -> the worker moves it into a free slot (FIFO)
 * -> prefill chunks, then one decode step per turn -> a terminal callback
 * (on_done "stop"/"length"/"abort" or on_error), after which the worker never
 * touches the job again -> the caller frees it with eng_job_free.
 * Slot and queue fields are guarded by `mu`; a job's generation state is only
 * touched by the worker; `cancel` is atomic.
 */
#include "engine/sched.h"

#include "base/log.h"
#include "base/mem.h"
#include "engine/engine_int.h"
#include "engine/stop.h"
#include "engine/tok.h"

#include <stdatomic.h>
#include <string.h>

#define FAIR_CHUNK 64          /* prefill tokens per turn when others wait */
#define TEXT_MAX (1u << 20)

struct eng_job {
    struct eng_model *m;
    int32_t *prompt;
    size_t n_prompt;
    size_t n_fed;              /* prompt tokens already evaluated */
    struct eng_gen_params gp;  /* stop/stop_token_ids cleared: copies below */
    struct eng_stop stop;
    int32_t *banned;           /* EOG ids + stop ids (min_tokens) */
    size_t n_banned;
    size_t n_stop_ids;         /* the last n_stop_ids of banned */
    long max_gen;
    long n_gen;
    int32_t last;
    struct eng_callbacks cb;
    atomic_bool cancel;
    struct eng_job *next;      /* queue link */
};

struct slot {
    struct eng_seq *seq;
    struct eng_sampler smp;
    struct tok_stream det;
    struct km_buf text;        /* text released by one token */
    struct km_buf piece;       /* raw bytes of one token */
    struct eng_job *job;       /* NULL when free */
};

struct eng_sched {
    struct eng_model *m;
    pthread_t thread;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct eng_job *head, *tail;
    int queued;
    struct slot *slots;
    int n_slots;
    int busy;
    int rr;                    /* last slot served */
    bool stopping;
    long long prompt_tokens, generated_tokens, requests_done;
};

/* ---- job creation ----------------------------------------------------- */

static int copy_ids(struct eng_job *j, const int32_t *prompt, size_t n_prompt,
                    const struct eng_gen_params *gp)
{
    size_t n_eog = 0;
    const int32_t *eog = tok_eog_ids(j->m->vocab, &n_eog);
    j->prompt = km_mallocarray(n_prompt, sizeof *prompt);
    j->banned = km_mallocarray(n_eog + gp->n_stop_token_ids + 1, sizeof *j->banned);
    if (!j->prompt || !j->banned)
        return KM_ENOMEM;
    memcpy(j->prompt, prompt, n_prompt * sizeof *prompt);
    j->n_prompt = n_prompt;
    memcpy(j->banned, eog, n_eog * sizeof *eog);
    for (size_t i = 0; i < gp->n_stop_token_ids; i++)
        j->banned[n_eog + i] = gp->stop_token_ids[i];
    j->n_banned = n_eog + gp->n_stop_token_ids;
    j->n_stop_ids = gp->n_stop_token_ids;
    return KM_OK;
}

static int check_request(struct eng_model *m, const int32_t *prompt, size_t n_prompt,
                         const struct eng_gen_params *gp, long *max_gen,
                         struct km_err *err)
{
    if (n_prompt == 0)
        return km_fail(err, KM_EINVAL, "the prompt is empty (0 tokens)");
    for (size_t i = 0; i < n_prompt; i++) {
        if (prompt[i] < 0 || prompt[i] >= m->hp.n_vocab)
            return km_fail(err, KM_EINVAL, "prompt token %zu has id %d, outside the "
                           "vocabulary of %d tokens", i, prompt[i], m->hp.n_vocab);
    }
    long ctx = m->n_ctx;
    long want = gp->max_tokens < 0 ? 1 : gp->max_tokens;
    if (gp->max_tokens == 0)
        return km_fail(err, KM_EINVAL, "max_tokens must be at least 1");
    if ((long)n_prompt + want > ctx)
        return km_fail(err, KM_ERANGE, "This model's maximum context length is %ld "
                       "tokens. However, you requested %ld tokens (%zu in the prompt, "
                       "%ld in the completion). Please reduce the length of the prompt "
                       "or completion.", ctx, (long)n_prompt + want, n_prompt, want);
    *max_gen = gp->max_tokens < 0 ? ctx - (long)n_prompt : gp->max_tokens;
    if (gp->sample.n_logprobs > ENG_MAX_LOGPROBS)
        return km_fail(err, KM_EINVAL, "logprobs %d is more than the %d supported",
                       gp->sample.n_logprobs, ENG_MAX_LOGPROBS);
    return KM_OK;
}

static void enqueue(struct eng_sched *s, struct eng_job *j)
{
    pthread_mutex_lock(&s->mu);
    if (s->tail)
        s->tail->next = j;
    else
        s->head = j;
    s->tail = j;
    s->queued++;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

int eng_generate(struct eng_model *m, const int32_t *prompt, size_t n_prompt,
                 const struct eng_gen_params *gp, const struct eng_callbacks *cb,
                 struct eng_job **out, struct km_err *err)
{
    *out = NULL;
    if (eng_model_state(m, NULL, NULL) != ENG_READY || !m->sched)
        return km_fail(err, KM_ESTATE, "model %s is still loading", m->name);
    long max_gen = 0;
    int rc = check_request(m, prompt, n_prompt, gp, &max_gen, err);
    if (rc != KM_OK)
        return rc;
    struct eng_job *j = km_calloc(1, sizeof *j);
    if (!j)
        return km_fail(err, KM_ENOMEM, "out of memory for a generation request");
    j->m = m;
    j->gp = *gp;
    j->gp.stop = NULL;
    j->gp.stop_token_ids = NULL;
    j->cb = *cb;
    j->max_gen = max_gen;
    atomic_init(&j->cancel, false);
    rc = eng_stop_init(&j->stop, gp->stop, gp->n_stop, err);
    if (rc == KM_OK && copy_ids(j, prompt, n_prompt, gp) != KM_OK)
        rc = km_fail(err, KM_ENOMEM, "out of memory copying a %zu-token prompt", n_prompt);
    if (rc != KM_OK) {
        eng_job_free(j);
        return rc;
    }
    enqueue(m->sched, j);
    *out = j;
    return KM_OK;
}

void eng_cancel(struct eng_job *job)
{
    if (!job)
        return;
    atomic_store(&job->cancel, true);
    struct eng_sched *s = job->m->sched;
    pthread_mutex_lock(&s->mu);
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

void eng_job_free(struct eng_job *job)
{
    if (!job)
        return;
    eng_stop_free(&job->stop);
    km_free(job->prompt);
    km_free(job->banned);
    km_free(job);
}

/* ---- finishing -------------------------------------------------------- */

/* Free the slot (or take a queued job) and report; never touches j after. */
static void finish(struct eng_sched *s, struct slot *sl, struct eng_job *j,
                   const char *reason, int code, const char *msg)
{
    long np = (long)j->n_prompt, ng = j->n_gen;
    struct eng_callbacks cb = j->cb;
    pthread_mutex_lock(&s->mu);
    if (sl) {
        sl->job = NULL;
        s->busy--;
    }
    s->requests_done++;
    pthread_mutex_unlock(&s->mu);
    if (reason)
        cb.on_done(cb.ud, reason, np, ng);
    else
        cb.on_error(cb.ud, code, msg);
}

/* ---- one step ----------------------------------------------------------- */

static bool is_stop_id(const struct eng_job *j, int32_t id)
{
    for (size_t i = j->n_banned - j->n_stop_ids; i < j->n_banned; i++) {
        if (j->banned[i] == id)
            return true;
    }
    return false;
}

/* Append detokenized text of `id` through the stop matcher to sl->text. */
static int release_text(struct slot *sl, struct eng_job *j, int32_t id, bool last,
                        bool *matched, struct km_err *err)
{
    const char *t = "", *r;
    size_t tl = 0, rl;
    int rc = id >= 0 ? tok_stream_feed(&sl->det, id, &t, &tl, err) : KM_OK;
    rc = rc ? rc : eng_stop_feed(&j->stop, t, tl, &r, &rl, matched);
    rc = rc ? rc : km_buf_append(&sl->text, r, rl);
    if (rc != KM_OK || *matched || !last)
        return rc;
    tok_stream_flush(&sl->det, &t, &tl);
    rc = eng_stop_feed(&j->stop, t, tl, &r, &rl, matched);
    rc = rc ? rc : km_buf_append(&sl->text, r, rl);
    if (rc != KM_OK || *matched)
        return rc;
    eng_stop_flush(&j->stop, &r, &rl);
    return km_buf_append(&sl->text, r, rl);
}

/* Account for a sampled token, emit its text, decide whether to finish. */
static void take_token(struct eng_sched *s, struct slot *sl, struct eng_sample_out *o)
{
    struct eng_job *j = sl->job;
    struct eng_model *m = s->m;
    struct km_err err;
    km_err_clear(&err);
    j->n_gen++;
    j->last = o->id;
    eng_sampler_accept(&sl->smp, o->id);
    bool ends = (!j->gp.ignore_eos && tok_is_eog(m->vocab, o->id)) || is_stop_id(j, o->id);
    bool last = ends || j->n_gen >= j->max_gen;
    bool matched = false;
    km_buf_reset(&sl->text);
    km_buf_reset(&sl->piece);
    int rc = release_text(sl, j, ends ? -1 : o->id, last, &matched, &err);
    if (rc == KM_OK && !ends)
        rc = tok_piece(m->vocab, o->id, true, &sl->piece, &err);
    if (rc != KM_OK) {
        finish(s, sl, j, NULL, rc, km_err_text(&err));
        return;
    }
    const struct eng_sample_out *lp = j->gp.sample.n_logprobs >= 0 ? o : NULL;
    if (!ends)
        j->cb.on_token(j->cb.ud, km_buf_str(&sl->text), sl->text.len, o->id,
                       km_buf_str(&sl->piece), sl->piece.len, lp);
    else if (sl->text.len > 0)
        j->cb.on_token(j->cb.ud, km_buf_str(&sl->text), sl->text.len, -1, "", 0, NULL);
    if (ends || matched)
        finish(s, sl, j, "stop", 0, NULL);
    else if (last)
        finish(s, sl, j, "length", 0, NULL);
}

/* One turn for the job in `sl`: a prefill chunk or a decode step. */
static void step(struct eng_sched *s, struct slot *sl)
{
    struct eng_job *j = sl->job;
    struct eng_model *m = s->m;
    struct km_err err;
    km_err_clear(&err);
    if (atomic_load(&j->cancel)) {
        finish(s, sl, j, "abort", 0, NULL);
        return;
    }
    pthread_mutex_lock(&m->compute_mu);
    int rc;
    bool sample = true;
    if (j->n_fed < j->n_prompt) {
        size_t left = j->n_prompt - j->n_fed;
        size_t chunk = (size_t)m->scratch.n_batch;
        if (s->busy > 1 && chunk > FAIR_CHUNK)
            chunk = FAIR_CHUNK;
        chunk = left < chunk ? left : chunk;
        sample = chunk == left;
        rc = eng__llama_forward(m, sl->seq, j->prompt + j->n_fed, (int)chunk, sample, &err);
        j->n_fed += chunk;
    } else {
        rc = eng__llama_forward(m, sl->seq, &j->last, 1, true, &err);
    }
    struct eng_sample_out o;
    if (rc == KM_OK && sample) {
        bool early = j->n_gen < j->gp.min_tokens;
        eng_sampler_sample(&sl->smp, m->scratch.logits, early ? j->banned : NULL,
                           early ? j->n_banned : 0, &o);
    }
    pthread_mutex_unlock(&m->compute_mu);
    if (rc != KM_OK)
        finish(s, sl, j, NULL, rc, km_err_text(&err));
    else if (sample)
        take_token(s, sl, &o);
}

/* ---- the worker --------------------------------------------------------- */

/* Called with mu held: start queued jobs in free slots (FIFO). */
static void admit(struct eng_sched *s)
{
    for (int i = 0; i < s->n_slots && s->head; i++) {
        struct slot *sl = &s->slots[i];
        if (sl->job)
            continue;
        struct eng_job *j = s->head;
        s->head = j->next;
        if (!s->head)
            s->tail = NULL;
        s->queued--;
        sl->job = j;
        s->busy++;
        s->prompt_tokens += (long long)j->n_prompt;
        sl->seq->n_past = 0;
        eng_sampler_reset(&sl->smp, &j->gp.sample, j->prompt, j->n_prompt);
        tok_stream_free(&sl->det);
        tok_stream_init(&sl->det, s->m->vocab, false);
    }
}

/* Called with mu held: the next busy slot after the last one served. */
static struct slot *next_slot(struct eng_sched *s)
{
    for (int k = 1; k <= s->n_slots; k++) {
        int i = (s->rr + k) % s->n_slots;
        if (s->slots[i].job) {
            s->rr = i;
            return &s->slots[i];
        }
    }
    return NULL;
}

/* Called with mu held; unlocks around the callbacks. */
static void abort_canceled_queued(struct eng_sched *s, bool all)
{
    struct eng_job **pp = &s->head, *prev = NULL;
    while (*pp) {
        struct eng_job *j = *pp;
        if (!all && !atomic_load(&j->cancel)) {
            prev = j;
            pp = &j->next;
            continue;
        }
        *pp = j->next;
        if (s->tail == j)
            s->tail = prev;
        s->queued--;
        pthread_mutex_unlock(&s->mu);
        finish(s, NULL, j, "abort", 0, NULL);
        pthread_mutex_lock(&s->mu);
        pp = prev ? &prev->next : &s->head;
    }
}

static void *worker_main(void *arg)
{
    struct eng_sched *s = arg;
    pthread_mutex_lock(&s->mu);
    while (!s->stopping) {
        abort_canceled_queued(s, false);
        admit(s);
        struct slot *sl = next_slot(s);
        if (!sl) {
            pthread_cond_wait(&s->cv, &s->mu);
            continue;
        }
        pthread_mutex_unlock(&s->mu);
        step(s, sl);
        pthread_mutex_lock(&s->mu);
    }
    abort_canceled_queued(s, true);
    for (int i = 0; i < s->n_slots; i++) {
        struct eng_job *j = s->slots[i].job;
        if (!j)
            continue;
        pthread_mutex_unlock(&s->mu);
        finish(s, &s->slots[i], j, "abort", 0, NULL);
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* ---- set-up ------------------------------------------------------------- */

static int slot_init(struct eng_sched *s, struct slot *sl, struct km_err *err)
{
    km_buf_init(&sl->text, TEXT_MAX);
    km_buf_init(&sl->piece, TEXT_MAX);
    tok_stream_init(&sl->det, s->m->vocab, false);
    int rc = eng__seq_new(s->m, s->m->n_ctx, &sl->seq, err);
    return rc ? rc : eng_sampler_init(&sl->smp, s->m->hp.n_vocab, err);
}

int eng__sched_new(struct eng_model *m, int n_slots, struct eng_sched **out,
                   struct km_err *err)
{
    *out = NULL;
    if (n_slots < 1 || n_slots > 256)
        return km_fail(err, KM_EINVAL, "slot count %d is outside 1..256", n_slots);
    struct eng_sched *s = km_calloc(1, sizeof *s);
    if (!s)
        return km_fail(err, KM_ENOMEM, "out of memory for a scheduler");
    s->m = m;
    s->rr = -1;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->slots = km_calloc((size_t)n_slots, sizeof *s->slots);
    int rc = s->slots ? KM_OK : km_fail(err, KM_ENOMEM, "out of memory for %d slots", n_slots);
    for (int i = 0; rc == KM_OK && i < n_slots; i++) {
        rc = slot_init(s, &s->slots[i], err);
        s->n_slots = i + 1;
    }
    if (rc == KM_OK && pthread_create(&s->thread, NULL, worker_main, s) != 0)
        rc = km_fail(err, KM_ENOMEM, "cannot start the scheduler thread");
    if (rc != KM_OK) {
        eng__sched_free(s);
        return rc;
    }
    s->started = true;
    *out = s;
    return KM_OK;
}

void eng__sched_free(struct eng_sched *s)
{
    if (!s)
        return;
    if (s->started) {
        pthread_mutex_lock(&s->mu);
        s->stopping = true;
        pthread_cond_signal(&s->cv);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->thread, NULL);
    }
    for (int i = 0; i < s->n_slots; i++) {
        struct slot *sl = &s->slots[i];
        eng__seq_free(sl->seq);
        eng_sampler_free(&sl->smp);
        tok_stream_free(&sl->det);
        km_buf_free(&sl->text);
        km_buf_free(&sl->piece);
    }
    km_free(s->slots);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    km_free(s);
}

int eng__sched_slots(const struct eng_sched *s)
{
    return s ? s->n_slots : 0;
}

void eng__sched_stats(struct eng_sched *s, struct eng_stats *out)
{
    pthread_mutex_lock(&s->mu);
    out->slots_busy = s->busy;
    out->queued = s->queued;
    long long used = 0;
    for (int i = 0; i < s->n_slots; i++)
        used += s->slots[i].job ? s->slots[i].seq->n_past : 0;
    out->kv_usage = (double)used / ((double)s->n_slots * s->m->n_ctx);
    out->prompt_tokens = s->prompt_tokens;
    out->generated_tokens = s->generated_tokens;
    out->requests_done = s->requests_done;
    pthread_mutex_unlock(&s->mu);
}
