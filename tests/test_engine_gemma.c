/* test_engine_gemma.c - Gemma 3 text in the engine: loading, the default
 * chat template (system folded into the first user turn), one-shot vs
 * token-by-token evaluation, the sliding window (a token older than the
 * window cannot reach a model without global layers; one global layer makes
 * it count), and generation through the scheduler. Models are tiny random
 * gemma3 GGUFs (synth_write, SentencePiece vocab from $KM_SHARED). Local
 * layers keep a ring of n_swa + n_batch - 1 KV rows; the tests below wrap it
 * and check the KV memory figure. Agreement with the NumPy reference is
 * checked by tests/ref (ref_gemma3.py). */
#include "base/mem.h"
#include "engine/engine.h"
#include "engine/gguf.h"
#include "engine/synth.h"
#include "engine/tok.h"
#include "helpers/engine_eval.h"

#include <criterion/criterion.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

TestSuite(engine_gemma, .timeout = 240);

/* tiny gemma3 (256, 2 heads / 1 KV of 128) with n_layer layers, window w */
static struct eng_model *open_model(int n_layer, int window, char *path, size_t cap)
{
    struct synth_params p;
    struct km_err err;
    cr_assert_eq(synth_preset("gemma3", "tiny", &p, &err), KM_OK, "%s", km_err_text(&err));
    p.vocab_from = engine_shared_file("ggml-vocab-llama-spm.gguf");
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

/* Whether two prompts of n tokens give bit-identical last logits. */
static bool same_logits(struct eng_model *m, const int32_t *p1, const int32_t *p2, size_t n)
{
    struct eng_model_info info;
    eng_model_info(m, &info);
    float *a = engine_last_logits(m, p1, n, n), *b = engine_last_logits(m, p2, n, n);
    bool same = memcmp(a, b, (size_t)info.n_vocab * sizeof *a) == 0;
    km_free(a);
    km_free(b);
    return same;
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

/* Window 16, batch 32: local layers keep a ring of 16 + 32 - 1 = 47 rows, so
 * 100 tokens wrap it twice. Batches of any size give the same bits (keys are
 * visited in position order whatever their ring row); one token at a time
 * takes the single-column matmul path, equal to ~1e-3 of the logit range. */
Test(engine_gemma, one_shot_equals_token_by_token)
{
    char path[256];
    struct eng_model *m = open_model(6, 16, path, sizeof path);
    int32_t *ids = prompt(100, 5);
    float *a = engine_last_logits(m, ids, 100, 100), *b = engine_last_logits(m, ids, 100, 7);
    float *c = engine_last_logits(m, ids, 100, 1);
    struct eng_model_info info;
    eng_model_info(m, &info);
    cr_assert_eq(memcmp(a, b, (size_t)info.n_vocab * sizeof *a), 0);
    float lo = a[0], hi = a[0];
    for (int i = 0; i < info.n_vocab; i++) {
        lo = fminf(lo, a[i]);
        hi = fmaxf(hi, a[i]);
    }
    for (int i = 0; i < info.n_vocab; i++)
        cr_assert(fabsf(a[i] - c[i]) <= 1e-3f * (hi - lo), "logit %d: %f vs %f (range %f)",
                  i, a[i], c[i], hi - lo);
    km_free(a);
    km_free(b);
    km_free(c);
    km_free(ids);
    eng_model_close(m);
    unlink(path);
}

/* KV memory: 5 local layers x 47 rows + 1 global layer x 256 (n_ctx), K and
 * V, 1 KV head of 128 f16, per slot. */
Test(engine_gemma, local_layers_keep_a_window_ring)
{
    char path[256];
    struct eng_model *m = open_model(6, 16, path, sizeof path);
    struct eng_model_info info;
    eng_model_info(m, &info);
    cr_assert_eq(info.n_ctx, 256);
    cr_assert_eq(info.kv_bytes, (uint64_t)info.n_slots * 2 * (5 * 47 + 256) * 128 * 2);
    eng_model_close(m);
    unlink(path);
}

/* 5 local layers with window 8 see at most 5*7 = 35 positions back (their
 * rings of 8 + 32 - 1 rows wrap within 60 tokens). */
Test(engine_gemma, sliding_window_masks_old_tokens)
{
    char path[256];
    struct eng_model *m = open_model(5, 8, path, sizeof path);
    int32_t *p1 = prompt(60, 5), *p2 = prompt(60, 9000);
    cr_assert(same_logits(m, p1, p2, 60));
    /* near enough, the first token does change the last logits */
    cr_assert_not(same_logits(m, p1, p2, 20));
    eng_model_close(m);
    unlink(path);
    /* layer 5 of 6 is global: it sees position 0 */
    m = open_model(6, 8, path, sizeof path);
    cr_assert_not(same_logits(m, p1, p2, 60));
    km_free(p1);
    km_free(p2);
    eng_model_close(m);
    unlink(path);
}

/* The synthetic Gemma vocabulary (no --vocab-from, as tests/gemma uses):
 * <end_of_turn> (106) and <eos> (1) both end generation. */
Test(engine_gemma, end_of_turn_ends_generation)
{
    struct synth_params p;
    struct km_err err;
    cr_assert_eq(synth_preset("gemma3", "tiny", &p, &err), KM_OK, "%s", km_err_text(&err));
    p.n_layer = 1;
    char path[256];
    snprintf(path, sizeof path, "/tmp/km-gemma-test-%d-vocab.gguf", (int)getpid());
    cr_assert_eq(synth_write(&p, path, NULL, NULL, NULL, &err), KM_OK, "%s", km_err_text(&err));
    struct gguf_file *f = NULL;
    struct tok_vocab *v = NULL;
    cr_assert_eq(gguf_open(path, &f, &err), KM_OK, "%s", km_err_text(&err));
    cr_assert_eq(tok_load(f, &v, &err), KM_OK, "%s", km_err_text(&err));
    size_t n = 0;
    const int32_t *eog = tok_eog_ids(v, &n);
    cr_assert_eq(n, 2);
    cr_assert_eq(eog[0], 1);
    cr_assert_eq(eog[1], 106);
    size_t len = 0;
    const char *t = tok_text(v, 106, &len);
    cr_assert(len == 13 && memcmp(t, "<end_of_turn>", 13) == 0);
    tok_free(v);
    gguf_close(f);
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
