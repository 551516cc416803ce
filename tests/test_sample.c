/* test_sample.c - engine/sample: the sampler chain and log-probabilities. */
#include "base/mem.h"
#include "engine/sample.h"

#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

TestSuite(sample, .timeout = 60);

static struct eng_sampler smp;

static void setup(int n_vocab)
{
    struct km_err err;
    cr_assert_eq(eng_sampler_init(&smp, n_vocab, &err), KM_OK);
}

static int32_t draw(const float *logits, struct eng_sample_params *p)
{
    struct eng_sample_out o;
    eng_sampler_sample(&smp, logits, NULL, 0, &o);
    return o.id;
}

Test(sample, greedy_is_argmax_with_lowest_id_on_ties)
{
    setup(5);
    float l[5] = {0.5f, 2.0f, -1.0f, 2.0f, 1.0f};
    struct eng_sample_params p;
    eng_sample_defaults(&p);
    p.temperature = 0;
    eng_sampler_reset(&smp, &p, NULL, 0);
    cr_assert_eq(draw(l, &p), 1);
    struct eng_sample_out o;
    int32_t banned[] = {1};
    eng_sampler_sample(&smp, l, banned, 1, &o);
    cr_assert_eq(o.id, 3);
    eng_sampler_free(&smp);
}

Test(sample, logit_bias_moves_the_choice_but_not_the_logprobs)
{
    setup(5);
    float l[5] = {0.5f, 2.0f, -1.0f, 2.0f, 1.0f};
    struct eng_logit_bias bias[] = {{1, -3.0f}, {2, 2.5f}, {7, 50.0f}}; /* 7: not in vocab */
    struct eng_sample_params p;
    eng_sample_defaults(&p);
    p.temperature = 0;
    p.n_logprobs = 1;
    p.bias = bias;
    p.n_bias = 3;
    eng_sampler_reset(&smp, &p, NULL, 0);
    struct eng_sample_out o;
    eng_sampler_sample(&smp, l, NULL, 0, &o);
    cr_assert_eq(o.id, 3);              /* 1 fell to -1.0; 2 rose to 1.5; 3 stays 2.0 */
    bias[1].bias = 3.5f;                /* 2 -> 2.5: now the best */
    eng_sampler_sample(&smp, l, NULL, 0, &o);
    cr_assert_eq(o.id, 2);
    /* logprob of the chosen token from the raw logits */
    double z = 0;
    for (int i = 0; i < 5; i++)
        z += exp(l[i]);
    cr_assert_float_eq(o.logprob, (float)(l[2] - log(z)), 1e-5);
    eng_sampler_free(&smp);
}

Test(sample, logprobs_come_from_the_raw_distribution)
{
    setup(4);
    /* probabilities 0.1, 0.2, 0.3, 0.4 */
    float l[4] = {logf(0.1f), logf(0.2f), logf(0.3f), logf(0.4f)};
    struct eng_sample_params p;
    eng_sample_defaults(&p);
    p.temperature = 0;
    p.n_logprobs = 3;
    p.repetition_penalty = 3.0f;      /* changes the choice, not the logprobs */
    int32_t prompt[] = {3};
    eng_sampler_reset(&smp, &p, prompt, 1);
    struct eng_sample_out o;
    eng_sampler_sample(&smp, l, NULL, 0, &o);
    cr_assert_eq(o.id, 2, "penalized 3 (0.4/3 logit) loses to 2");
    cr_assert_float_eq(o.logprob, logf(0.3f), 1e-6);
    cr_assert_eq(o.n_top, 3);
    cr_assert_eq(o.top[0].id, 3);
    cr_assert_eq(o.top[1].id, 2);
    cr_assert_eq(o.top[2].id, 1);
    cr_assert_float_eq(o.top[0].logprob, logf(0.4f), 1e-6);
    cr_assert_float_eq(o.top[2].logprob, logf(0.2f), 1e-6);
    eng_sampler_free(&smp);
}

Test(sample, logprobs_zero_gives_only_the_chosen_token)
{
    setup(3);
    float l[3] = {0, 0, 0};
    struct eng_sample_params p;
    eng_sample_defaults(&p);
    p.temperature = 0;
    p.n_logprobs = 0;
    eng_sampler_reset(&smp, &p, NULL, 0);
    struct eng_sample_out o;
    eng_sampler_sample(&smp, l, NULL, 0, &o);
    cr_assert_eq(o.id, 0);
    cr_assert_eq(o.n_top, 0);
    cr_assert_float_eq(o.logprob, -logf(3.0f), 1e-6);
    eng_sampler_free(&smp);
}

/* Count draws of each id over `n` requests with seeds 1..n. */
static void histogram(const float *l, int nv, struct eng_sample_params *p, int n, int *count)
{
    memset(count, 0, (size_t)nv * sizeof *count);
    for (int s = 1; s <= n; s++) {
        p->seed = (uint64_t)s;
        eng_sampler_reset(&smp, p, NULL, 0);
        count[draw(l, p)]++;
    }
}

Test(sample, top_k_top_p_min_p_truncate)
{
    setup(4);
    float l[4] = {logf(0.5f), logf(0.3f), logf(0.15f), logf(0.05f)};
    struct eng_sample_params p;
    eng_sample_defaults(&p);
    int c[4];
    p.top_k = 2;
    histogram(l, 4, &p, 400, c);
    cr_assert(c[0] > 0 && c[1] > 0 && c[2] == 0 && c[3] == 0);
    p.top_k = -1;
    histogram(l, 4, &p, 400, c);
    cr_assert(c[0] > 0 && c[1] > 0 && c[2] > 0, "top_k -1 is off");
    p.top_k = 0;
    p.top_p = 0.5f;                 /* 0.5 reached by the first alone */
    histogram(l, 4, &p, 200, c);
    cr_assert_eq(c[0], 200);
    p.top_p = 0.9f;                 /* 0.5 + 0.3 + 0.15 */
    histogram(l, 4, &p, 800, c);
    cr_assert(c[2] > 0 && c[3] == 0);
    p.top_p = 1.0f;
    p.min_p = 0.5f;                 /* keep p >= 0.25 */
    histogram(l, 4, &p, 400, c);
    cr_assert(c[0] > 0 && c[1] > 0 && c[2] == 0 && c[3] == 0);
    eng_sampler_free(&smp);
}

Test(sample, top_p_over_a_large_vocabulary)
{
    int nv = 5000;
    setup(nv);
    float *l = km_calloc((size_t)nv, sizeof *l);
    for (int i = 0; i < nv; i++)
        l[i] = -(float)((i * 7919) % nv) * 0.01f;   /* a permutation of ranks */
    struct eng_sample_params p;
    eng_sample_defaults(&p);
    p.top_p = 0.05f;
    /* the kept set is the few best logits: rank r has logit -0.01 r */
    for (int s = 1; s <= 100; s++) {
        p.seed = (uint64_t)s;
        eng_sampler_reset(&smp, &p, NULL, 0);
        int32_t id = draw(l, &p);
        int rank = (id * 7919) % nv;
        cr_assert(rank < 300, "rank %d drawn outside the top-p set", rank);
    }
    km_free(l);
    eng_sampler_free(&smp);
}

Test(sample, temperature_shapes_the_distribution)
{
    setup(2);
    float l[2] = {logf(0.25f), logf(0.75f)};
    struct eng_sample_params p;
    eng_sample_defaults(&p);
    int c[2];
    histogram(l, 2, &p, 4000, c);
    cr_assert(c[1] > 2800 && c[1] < 3200, "p(1)=0.75 drew %d of 4000", c[1]);
    p.temperature = 0.25f;          /* p(1) = 3^4 / (1 + 3^4) = 0.988 */
    histogram(l, 2, &p, 4000, c);
    cr_assert(c[1] > 3880, "T=0.25 drew id 1 %d times", c[1]);
    eng_sampler_free(&smp);
}

Test(sample, same_seed_same_stream)
{
    setup(50);
    float l[50];
    for (int i = 0; i < 50; i++)
        l[i] = (float)((i * 37) % 11) * 0.1f;
    struct eng_sample_params p;
    eng_sample_defaults(&p);
    p.seed = 1234;
    int32_t a[64], b[64];
    eng_sampler_reset(&smp, &p, NULL, 0);
    for (int i = 0; i < 64; i++)
        a[i] = draw(l, &p);
    eng_sampler_reset(&smp, &p, NULL, 0);
    for (int i = 0; i < 64; i++)
        b[i] = draw(l, &p);
    cr_assert_arr_eq(a, b, sizeof a);
    p.seed = 1235;
    eng_sampler_reset(&smp, &p, NULL, 0);
    int same = 0;
    for (int i = 0; i < 64; i++)
        same += draw(l, &p) == a[i];
    cr_assert(same < 64, "another seed gives another stream");
    eng_sampler_free(&smp);
}

Test(sample, penalties_follow_vllm_scopes)
{
    setup(2);
    struct eng_sample_params p;
    eng_sample_defaults(&p);
    p.temperature = 0;
    /* repetition: positive logits divided, negative multiplied */
    p.repetition_penalty = 1.5f;
    int32_t prompt[] = {0};
    float pos[2] = {2.0f, 1.9f};    /* 2.0 / 1.5 = 1.33 < 1.9 */
    eng_sampler_reset(&smp, &p, prompt, 1);
    cr_assert_eq(draw(pos, &p), 1);
    float neg[2] = {-1.0f, -1.2f};  /* -1.0 * 1.5 = -1.5 < -1.2 */
    cr_assert_eq(draw(neg, &p), 1);
    /* frequency and presence count generated tokens only */
    p.repetition_penalty = 1.0f;
    p.frequency_penalty = 0.3f;
    float l[2] = {2.0f, 1.5f};
    eng_sampler_reset(&smp, &p, prompt, 1);
    cr_assert_eq(draw(l, &p), 0, "prompt tokens are not frequency-penalized");
    eng_sampler_accept(&smp, 0);
    cr_assert_eq(draw(l, &p), 0, "2.0 - 0.3 = 1.7 > 1.5");
    eng_sampler_accept(&smp, 0);
    cr_assert_eq(draw(l, &p), 1, "2.0 - 0.6 = 1.4 < 1.5");
    p.frequency_penalty = 0;
    p.presence_penalty = 0.6f;
    eng_sampler_reset(&smp, &p, NULL, 0);
    eng_sampler_accept(&smp, 0);
    cr_assert_eq(draw(l, &p), 1, "2.0 - 0.6 = 1.4 < 1.5");
    eng_sampler_free(&smp);
}

Test(sample, banned_everything_still_returns_a_token)
{
    setup(2);
    float l[2] = {1.0f, 0.0f};
    struct eng_sample_params p;
    eng_sample_defaults(&p);
    p.temperature = 0;
    eng_sampler_reset(&smp, &p, NULL, 0);
    int32_t banned[] = {0, 1};
    struct eng_sample_out o;
    eng_sampler_sample(&smp, l, banned, 2, &o);
    cr_assert(o.id == 0 || o.id == 1);
    eng_sampler_free(&smp);
}
