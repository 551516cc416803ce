/* test_engine.c - engine: loading, the forward pass invariants, generation
 * through the scheduler (greedy, stop strings, stop ids, min_tokens,
 * logprobs, context overflow, cancellation, concurrent requests). Models are
 * small random Llama GGUFs written by tests/helpers/engine_synth.c. */
#include "base/mem.h"
#include "engine/engine.h"
#include "engine/quant.h"
#include "helpers/engine_synth.h"

#include <criterion/criterion.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

TestSuite(engine, .timeout = 240);

static char model_path[256];

static void write_model(uint32_t type, bool tied)
{
    struct engine_synth p = {
        .vocab_path = engine_synth_vocab(), .n_embd = 64, .n_layer = 2,
        .n_head = 4, .n_head_kv = 2, .n_ff = 128, .n_ctx = 256, .type = type,
        .tied = tied, .with_rope_freqs = true, .seed = 7,
    };
    snprintf(model_path, sizeof model_path, "/tmp/km-engine-test-%d-%u.gguf",
             (int)getpid(), type);
    struct km_err err;
    int rc = engine_synth_write(&p, model_path, &err);
    cr_assert_eq(rc, KM_OK, "synth: %s", km_err_text(&err));
}

static struct eng_model *open_model(int threads, int slots)
{
    struct eng_load_params p;
    eng_load_params_default(&p);
    p.path = model_path;
    p.n_threads = threads;
    p.n_slots = slots;
    p.n_batch = 16;
    struct eng_model *m = NULL;
    struct km_err err;
    int rc = eng_model_open(&p, &m, &err);
    cr_assert_eq(rc, KM_OK, "open: %s", km_err_text(&err));
    return m;
}

static const int32_t prompt[] = {464, 2068, 7586, 21831, 18045, 625, 262, 16931,
                                 3290, 13, 383, 2068, 7586, 21831, 18045, 625,
                                 262, 16931, 3290, 13};
#define N_PROMPT (sizeof prompt / sizeof *prompt)

static float *logits_for(struct eng_model *m, const int32_t *ids, size_t n, bool one_by_one)
{
    struct eng_model_info info;
    eng_model_info(m, &info);
    float *l = km_calloc((size_t)info.n_vocab, sizeof *l);
    struct eng_seq *s;
    struct km_err err;
    cr_assert_eq(eng_seq_new(m, 0, &s, &err), KM_OK);
    if (one_by_one) {
        for (size_t i = 0; i < n; i++)
            cr_assert_eq(eng_eval(s, ids + i, 1, i + 1 == n ? l : NULL, &err), KM_OK);
    } else {
        cr_assert_eq(eng_eval(s, ids, n, l, &err), KM_OK, "%s", km_err_text(&err));
    }
    cr_assert_eq(eng_seq_pos(s), (int)n);
    eng_seq_free(s);
    return l;
}

Test(engine, info_describes_the_file)
{
    write_model(GGML_TYPE_F32, true);
    struct eng_model *m = open_model(2, 1);
    struct eng_model_info info;
    eng_model_info(m, &info);
    char stem[256];
    snprintf(stem, sizeof stem, "km-engine-test-%d-%u", (int)getpid(), GGML_TYPE_F32);
    cr_assert_str_eq(info.name, stem);
    cr_assert_str_eq(info.arch, "llama");
    cr_assert_eq(info.n_vocab, 50257);
    cr_assert_eq(info.n_embd, 64);
    cr_assert_eq(info.n_layer, 2);
    cr_assert_eq(info.n_head_kv, 2);
    cr_assert_eq(info.n_ctx, 256);
    cr_assert_eq(info.n_threads, 2);
    /* tied: the LM head is token_embd, read in full per token */
    cr_assert_eq(info.weight_bytes, (uint64_t)4 * (50257 * 64 + 2 * (64 * 64 * 2 + 64 * 32 * 2 + 3 * 64 * 128)));
    eng_model_close(m);
    unlink(model_path);
}

Test(engine, logits_identical_across_thread_counts)
{
    write_model(GGML_TYPE_Q8_0, false);
    float *ref = NULL;
    for (int t = 1; t <= 3; t++) {
        struct eng_model *m = open_model(t, 1);
        float *l = logits_for(m, prompt, N_PROMPT, false);
        if (!ref)
            ref = l;
        else {
            cr_assert_eq(memcmp(ref, l, 50257 * sizeof *l), 0, "threads=%d differ", t);
            km_free(l);
        }
        eng_model_close(m);
    }
    km_free(ref);
    unlink(model_path);
}

Test(engine, batched_prefill_matches_token_by_token)
{
    write_model(GGML_TYPE_F32, true);
    struct eng_model *m = open_model(2, 1);
    float *a = logits_for(m, prompt, N_PROMPT, false);
    float *b = logits_for(m, prompt, N_PROMPT, true);
    float mx = 0, lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < 50257; i++) {
        mx = fmaxf(mx, fabsf(a[i] - b[i]));
        lo = fminf(lo, a[i]);
        hi = fmaxf(hi, a[i]);
    }
    cr_assert(mx <= 1e-4f * (hi - lo), "max diff %g over range %g", mx, hi - lo);
    km_free(a);
    km_free(b);
    eng_model_close(m);
    unlink(model_path);
}

Test(engine, rejects_bad_tokens_and_overflow)
{
    write_model(GGML_TYPE_F32, true);
    struct eng_model *m = open_model(1, 1);
    struct eng_seq *s;
    struct km_err err;
    cr_assert_eq(eng_seq_new(m, 8, &s, &err), KM_OK);
    int32_t bad = 50257;
    cr_assert_eq(eng_eval(s, &bad, 1, NULL, &err), KM_EINVAL);
    cr_assert_str_eq(err.msg, "token id 50257 is outside the vocabulary (0..50256)");
    cr_assert_eq(eng_eval(s, prompt, 9, NULL, &err), KM_ERANGE);
    cr_assert_str_eq(err.msg, "0 positions + 9 tokens exceed the context of 8");
    eng_seq_free(s);
    eng_model_close(m);
    unlink(model_path);
}

Test(engine, unsupported_arch_and_missing_file)
{
    struct eng_load_params p;
    eng_load_params_default(&p);
    p.path = "/nonexistent/model.gguf";
    struct eng_model *m;
    struct km_err err;
    cr_assert_neq(eng_model_open(&p, &m, &err), KM_OK);
    cr_assert_null(m);
    p.path = engine_synth_vocab();      /* a vocab-only GGUF: arch gpt2 */
    cr_assert_eq(eng_model_open(&p, &m, &err), KM_EUNSUPPORTED);
    cr_assert(strstr(err.msg, "general.architecture is \"gpt2\""), "%s", err.msg);
}

/* ---- generation ---------------------------------------------------------- */

struct collect {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char text[8192];
    size_t len;
    int32_t ids[512];
    float lps[512];
    int n_top[512];
    int n;
    char reason[16];
    long prompt_tokens, completion_tokens;
    int err_code;
    bool done;
    bool cancel_first;               /* cancel at the first token ... */
    struct eng_job *job;             /* ... once the test has set this */
};

static void on_token(void *ud, const char *text, size_t len, int32_t id,
                     const char *piece, size_t piece_len, const struct eng_sample_out *lp)
{
    struct collect *c = ud;
    cr_assert(c->len + len < sizeof c->text);
    memcpy(c->text + c->len, text, len);
    c->len += len;
    c->text[c->len] = '\0';
    if (id >= 0 && c->n < 512) {
        c->ids[c->n] = id;
        c->lps[c->n] = lp ? lp->logprob : NAN;
        c->n_top[c->n] = lp ? lp->n_top : -1;
        c->n++;
    }
    pthread_mutex_lock(&c->mu);
    while (c->cancel_first && !c->job)
        pthread_cond_wait(&c->cv, &c->mu);   /* the worker waits: no race */
    if (c->cancel_first)
        eng_cancel(c->job);
    pthread_mutex_unlock(&c->mu);
}

static void on_done(void *ud, const char *reason, long pt, long ct)
{
    struct collect *c = ud;
    pthread_mutex_lock(&c->mu);
    snprintf(c->reason, sizeof c->reason, "%s", reason);
    c->prompt_tokens = pt;
    c->completion_tokens = ct;
    c->done = true;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static void on_error(void *ud, int code, const char *msg)
{
    struct collect *c = ud;
    pthread_mutex_lock(&c->mu);
    c->err_code = code;
    c->done = true;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static void collect_init(struct collect *c)
{
    memset(c, 0, sizeof *c);
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
}

static void wait_done(struct collect *c)
{
    pthread_mutex_lock(&c->mu);
    while (!c->done)
        pthread_cond_wait(&c->cv, &c->mu);
    pthread_mutex_unlock(&c->mu);
}

static struct eng_gen_params greedy(long max_tokens)
{
    struct eng_gen_params g;
    memset(&g, 0, sizeof g);
    eng_sample_defaults(&g.sample);
    g.sample.temperature = 0;
    g.max_tokens = max_tokens;
    return g;
}

static struct eng_job *run(struct eng_model *m, const struct eng_gen_params *g,
                           struct collect *c, bool wait)
{
    collect_init(c);
    struct eng_callbacks cb = {c, on_token, on_done, on_error};
    struct eng_job *j;
    struct km_err err;
    int rc = eng_generate(m, prompt, N_PROMPT, g, &cb, &j, &err);
    cr_assert_eq(rc, KM_OK, "%s", km_err_text(&err));
    if (wait)
        wait_done(c);
    return j;
}

Test(engine, greedy_generation_is_the_argmax_chain_for_any_thread_count)
{
    write_model(GGML_TYPE_Q8_0, true);
    struct collect a, b;
    struct eng_gen_params g = greedy(12);
    struct eng_model *m1 = open_model(1, 1);
    eng_job_free(run(m1, &g, &a, true));
    struct eng_model *m2 = open_model(2, 2);
    eng_job_free(run(m2, &g, &b, true));
    cr_assert_str_eq(a.reason, "length");
    cr_assert_eq(a.completion_tokens, 12);
    cr_assert_eq(a.prompt_tokens, (long)N_PROMPT);
    cr_assert_eq(a.n, 12);
    cr_assert_arr_eq(a.ids, b.ids, sizeof(int32_t) * 12);
    cr_assert_str_eq(a.text, b.text);
    /* the first token is the argmax of the prompt's logits */
    float *l = logits_for(m1, prompt, N_PROMPT, false);
    int best = 0;
    for (int i = 1; i < 50257; i++)
        best = l[i] > l[best] ? i : best;
    cr_assert_eq(a.ids[0], best);
    /* and the text is the detokenized ids */
    char *text;
    size_t len;
    struct km_err err;
    cr_assert_eq(eng_detokenize(m1, a.ids, 12, &text, &len, &err), KM_OK);
    cr_assert_str_eq(a.text, text);
    km_free(text);
    km_free(l);
    eng_model_close(m1);
    eng_model_close(m2);
    unlink(model_path);
}

Test(engine, stop_strings_ids_min_tokens_and_logprobs)
{
    write_model(GGML_TYPE_F32, true);
    struct eng_model *m = open_model(2, 1);
    struct collect base, c;
    struct eng_gen_params g = greedy(10);
    eng_job_free(run(m, &g, &base, true));
    cr_assert(base.len >= 4);
    /* a stop string made of the middle of the greedy text */
    char stop[3] = {base.text[base.len / 2], base.text[base.len / 2 + 1], 0};
    const char *stops[] = {stop};
    g.stop = stops;
    g.n_stop = 1;
    eng_job_free(run(m, &g, &c, true));
    cr_assert_str_eq(c.reason, "stop");
    const char *hit = strstr(base.text, stop);
    cr_assert_eq(c.len, (size_t)(hit - base.text), "text before the stop string only");
    cr_assert_eq(memcmp(c.text, base.text, c.len), 0);
    cr_assert_null(strstr(c.text, stop));
    /* a stop token id ends the generation without its text */
    g = greedy(10);
    int32_t sid = base.ids[3];
    g.stop_token_ids = &sid;
    g.n_stop_token_ids = 1;
    eng_job_free(run(m, &g, &c, true));
    int first = 0;
    while (base.ids[first] != sid)
        first++;
    cr_assert_str_eq(c.reason, "stop");
    cr_assert_eq(c.completion_tokens, first + 1);
    cr_assert_eq(c.n, first);
    /* min_tokens bans it until then */
    g.min_tokens = 8;
    eng_job_free(run(m, &g, &c, true));
    for (int i = 0; i < 7 && i < c.n; i++)
        cr_assert_neq(c.ids[i], sid);
    cr_assert(c.completion_tokens >= 8);
    /* logprobs: the chosen token's raw log-softmax, n alternatives */
    g = greedy(3);
    g.sample.n_logprobs = 5;
    eng_job_free(run(m, &g, &c, true));
    float *l = logits_for(m, prompt, N_PROMPT, false);
    double mx = -INFINITY, z = 0;
    for (int i = 0; i < 50257; i++)
        mx = fmax(mx, l[i]);
    for (int i = 0; i < 50257; i++)
        z += exp(l[i] - mx);
    cr_assert_float_eq(c.lps[0], l[c.ids[0]] - mx - log(z), 1e-4);
    cr_assert_eq(c.n_top[0], 5);
    km_free(l);
    eng_model_close(m);
    unlink(model_path);
}

Test(engine, context_overflow_names_the_three_numbers)
{
    write_model(GGML_TYPE_F32, true);
    struct eng_model *m = open_model(1, 1);
    struct eng_gen_params g = greedy(250);
    struct eng_callbacks cb = {NULL, on_token, on_done, on_error};
    struct eng_job *j;
    struct km_err err;
    cr_assert_eq(eng_generate(m, prompt, N_PROMPT, &g, &cb, &j, &err), KM_ERANGE);
    cr_assert_str_eq(err.msg, "This model's maximum context length is 256 tokens. "
                     "However, you requested 270 tokens (20 in the prompt, 250 in "
                     "the completion). Please reduce the length of the prompt or "
                     "completion.");
    cr_assert_null(j);
    eng_model_close(m);
    unlink(model_path);
}

Test(engine, cancel_stops_within_a_step_and_queue_is_fair)
{
    write_model(GGML_TYPE_F32, true);
    struct eng_model *m = open_model(2, 2);
    struct collect c;
    struct eng_gen_params g = greedy(200);
    collect_init(&c);
    c.cancel_first = true;
    struct eng_callbacks cb = {&c, on_token, on_done, on_error};
    struct eng_job *j;
    struct km_err err;
    cr_assert_eq(eng_generate(m, prompt, N_PROMPT, &g, &cb, &j, &err), KM_OK);
    pthread_mutex_lock(&c.mu);
    c.job = j;
    pthread_cond_broadcast(&c.cv);
    pthread_mutex_unlock(&c.mu);
    wait_done(&c);
    cr_assert_str_eq(c.reason, "abort");
    cr_assert_eq(c.completion_tokens, 1, "canceled before the second step, got %ld tokens",
                 c.completion_tokens);
    eng_job_free(j);
    /* three concurrent requests over two slots all complete */
    struct collect r[3];
    struct eng_job *jobs[3];
    g = greedy(6);
    for (int i = 0; i < 3; i++)
        jobs[i] = run(m, &g, &r[i], false);
    for (int i = 0; i < 3; i++) {
        wait_done(&r[i]);
        cr_assert_str_eq(r[i].reason, "length");
        cr_assert_eq(r[i].n, 6);
        cr_assert_arr_eq(r[i].ids, r[0].ids, 6 * sizeof(int32_t));
        eng_job_free(jobs[i]);
    }
    struct eng_stats st;
    eng_model_stats(m, &st);
    cr_assert_eq(st.requests_done, 4);
    cr_assert_eq(st.slots_busy, 0);
    eng_model_close(m);
    unlink(model_path);
}
