/* test_engine_gemma.c - Gemma 3 text in the engine: loading, the default
 * chat template (system folded into the first user turn), one-shot vs
 * token-by-token evaluation, the sliding window (a token older than the
 * window cannot reach a model without global layers; one global layer makes
 * it count), and generation through the scheduler. Models are tiny random
 * gemma3 GGUFs (synth_write, SentencePiece vocab from $KM_SHARED). Agreement
 * with the NumPy reference is checked by tests/ref (ref_gemma3.py). */
#include "base/mem.h"
#include "engine/engine.h"
#include "engine/synth.h"

#include <criterion/criterion.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

TestSuite(engine_gemma, .timeout = 240);

static char vocab[512];

static const char *spm_vocab(void)
{
    const char *sh = getenv("KM_SHARED");
    snprintf(vocab, sizeof vocab, "%s/data/tokenizer/ggml-vocab-llama-spm.gguf",
             sh ? sh : "../shared");
    return vocab;
}

/* tiny gemma3 (256, 2 heads / 1 KV of 128) with n_layer layers, window w */
static struct eng_model *open_model(int n_layer, int window, char *path, size_t cap)
{
    struct synth_params p;
    struct km_err err;
    cr_assert_eq(synth_preset("gemma3", "tiny", &p, &err), KM_OK, "%s", km_err_text(&err));
    p.vocab_from = spm_vocab();
    p.n_layer = n_layer;
    p.sliding_window = window;
    p.n_ctx = 256;
    p.seed = 21;
    snprintf(path, cap, "/tmp/km-gemma-test-%d-%d-%d.gguf", (int)getpid(), n_layer, window);
    cr_assert_eq(synth_write(&p, path, NULL, NULL, NULL, &err), KM_OK, "%s", km_err_text(&err));
    struct eng_load_params lp;
    eng_load_params_default(&lp);
    lp.path = path;
    lp.n_threads = 2;
    lp.n_batch = 32;
    struct eng_model *m = NULL;
    cr_assert_eq(eng_model_open(&lp, &m, &err), KM_OK, "open: %s", km_err_text(&err));
    return m;
}

static float *logits(struct eng_model *m, const int32_t *ids, size_t n, bool one_by_one)
{
    struct eng_model_info info;
    eng_model_info(m, &info);
    float *l = km_calloc((size_t)info.n_vocab, sizeof *l);
    struct eng_seq *s;
    struct km_err err;
    cr_assert_eq(eng_seq_new(m, 0, &s, &err), KM_OK, "%s", km_err_text(&err));
    for (size_t i = 0; one_by_one && i < n; i++)
        cr_assert_eq(eng_eval(s, ids + i, 1, i + 1 == n ? l : NULL, &err), KM_OK);
    if (!one_by_one)
        cr_assert_eq(eng_eval(s, ids, n, l, &err), KM_OK, "%s", km_err_text(&err));
    eng_seq_free(s);
    return l;
}

static int32_t *prompt(size_t n, int32_t first)
{
    int32_t *ids = km_calloc(n, sizeof *ids);
    for (size_t i = 0; i < n; i++)
        ids[i] = i == 0 ? first : (int32_t)(300 + (i * 37) % 20000);
    return ids;
}

Test(engine_gemma, info_and_chat_template)
{
    char path[256];
    struct eng_model *m = open_model(6, 64, path, sizeof path);
    struct eng_model_info info;
    eng_model_info(m, &info);
    cr_assert_str_eq(info.arch, "gemma3");
    cr_assert_eq(info.task, ENG_TASK_GENERATE);
    cr_assert_eq(info.n_embd, 256);
    cr_assert_eq(info.n_head_kv, 1);
    const char *roles[] = {"system", "user", "assistant", "user"};
    const char *contents[] = {"Be brief.", " Hi there ", "Hello!", "Bye"};
    char *text = NULL;
    struct km_err err;
    cr_assert_eq(eng_chat_prompt(m, roles, contents, 4, true, &text, &err), KM_OK,
                 "%s", km_err_text(&err));
    cr_assert_str_eq(text, "<bos><start_of_turn>user\nBe brief.\n\nHi there<end_of_turn>\n"
                     "<start_of_turn>model\nHello!<end_of_turn>\n"
                     "<start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n");
    km_free(text);
    eng_model_close(m);
    unlink(path);
}

Test(engine_gemma, one_shot_equals_token_by_token)
{
    char path[256];
    struct eng_model *m = open_model(6, 16, path, sizeof path);
    int32_t *ids = prompt(40, 5);      /* longer than the window and the batch */
    float *a = logits(m, ids, 40, false), *b = logits(m, ids, 40, true);
    struct eng_model_info info;
    eng_model_info(m, &info);
    for (int i = 0; i < info.n_vocab; i++)
        cr_assert(fabsf(a[i] - b[i]) < 1e-4f, "logit %d: %f vs %f", i, a[i], b[i]);
    km_free(a);
    km_free(b);
    km_free(ids);
    eng_model_close(m);
    unlink(path);
}

/* 5 local layers with window 8 see at most 5*7 = 35 positions back. */
Test(engine_gemma, sliding_window_masks_old_tokens)
{
    char path[256];
    struct eng_model *m = open_model(5, 8, path, sizeof path);
    int32_t *p1 = prompt(60, 5), *p2 = prompt(60, 9000);
    float *a = logits(m, p1, 60, false), *b = logits(m, p2, 60, false);
    struct eng_model_info info;
    eng_model_info(m, &info);
    cr_assert_eq(memcmp(a, b, (size_t)info.n_vocab * sizeof *a), 0);
    km_free(a);
    km_free(b);
    /* near enough, the first token does change the last logits */
    a = logits(m, p1, 20, false);
    b = logits(m, p2, 20, false);
    cr_assert_neq(memcmp(a, b, (size_t)info.n_vocab * sizeof *a), 0);
    km_free(a);
    km_free(b);
    eng_model_close(m);
    unlink(path);
    /* layer 5 of 6 is global: it sees position 0 */
    m = open_model(6, 8, path, sizeof path);
    a = logits(m, p1, 60, false);
    b = logits(m, p2, 60, false);
    cr_assert_neq(memcmp(a, b, (size_t)info.n_vocab * sizeof *a), 0);
    km_free(a);
    km_free(b);
    km_free(p1);
    km_free(p2);
    eng_model_close(m);
    unlink(path);
}

struct gen {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    long completion;
    char finish[16];
};

static void on_token(void *ud, const char *text, size_t len, int32_t id, const char *piece,
                     size_t piece_len, const struct eng_sample_out *lp)
{
}

static void on_done(void *ud, const char *fr, long pt, long ct)
{
    struct gen *g = ud;
    pthread_mutex_lock(&g->mu);
    snprintf(g->finish, sizeof g->finish, "%s", fr);
    g->completion = ct;
    g->done = true;
    pthread_cond_signal(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

static void on_error(void *ud, int code, const char *msg)
{
    on_done(ud, "error", 0, 0);
}

Test(engine_gemma, generates_through_the_scheduler)
{
    char path[256];
    struct eng_model *m = open_model(6, 16, path, sizeof path);
    int32_t *ids = prompt(20, 5);
    struct gen g = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    struct eng_gen_params gp = {.max_tokens = 12, .ignore_eos = true};
    gp.sample.temperature = 0;
    gp.sample.top_p = 1;
    gp.sample.repetition_penalty = 1;
    gp.sample.n_logprobs = -1;
    struct eng_callbacks cb = {&g, on_token, on_done, on_error};
    struct eng_job *job = NULL;
    struct km_err err;
    cr_assert_eq(eng_generate(m, ids, 20, &gp, &cb, &job, &err), KM_OK, "%s", km_err_text(&err));
    pthread_mutex_lock(&g.mu);
    while (!g.done)
        pthread_cond_wait(&g.cv, &g.mu);
    pthread_mutex_unlock(&g.mu);
    cr_assert_str_eq(g.finish, "length");
    cr_assert_eq(g.completion, 12);
    eng_job_free(job);
    km_free(ids);
    eng_model_close(m);
    unlink(path);
}
