/* sample.c - the sampler chain (see sample.h). */
#include "engine/sample.h"

#include "base/mem.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PRESELECT 1024   /* top-p: candidates sorted before falling back to all */

void eng_sample_defaults(struct eng_sample_params *p)
{
    memset(p, 0, sizeof *p);
    p->temperature = 1.0f;
    p->top_k = 0;
    p->top_p = 1.0f;
    p->min_p = 0.0f;
    p->repetition_penalty = 1.0f;
    p->n_logprobs = -1;
}

int eng_sampler_init(struct eng_sampler *s, int n_vocab, struct km_err *err)
{
    memset(s, 0, sizeof *s);
    if (n_vocab < 1)
        return km_fail(err, KM_EINVAL, "sampler vocabulary size %d is not positive", n_vocab);
    s->n_vocab = n_vocab;
    s->cand = km_calloc((size_t)n_vocab, sizeof *s->cand);
    s->out_count = km_calloc((size_t)n_vocab, sizeof *s->out_count);
    s->in_prompt = km_calloc((size_t)n_vocab, 1);
    if (!s->cand || !s->out_count || !s->in_prompt) {
        eng_sampler_free(s);
        return km_fail(err, KM_ENOMEM, "out of memory for a sampler over %d tokens", n_vocab);
    }
    eng_sample_defaults(&s->p);
    return KM_OK;
}

void eng_sampler_free(struct eng_sampler *s)
{
    km_free(s->cand);
    km_free(s->out_count);
    km_free(s->in_prompt);
    memset(s, 0, sizeof *s);
}

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* xorshift64*: uniform double in [0, 1). */
static double rng_uniform(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return (double)((x * 0x2545F4914F6CDD1Dull) >> 11) * 0x1.0p-53;
}

void eng_sampler_reset(struct eng_sampler *s, const struct eng_sample_params *p,
                       const int32_t *prompt, size_t n_prompt)
{
    s->p = *p;
    s->rng = splitmix64(p->seed);
    if (s->rng == 0)
        s->rng = 0x853C49E6748FEA9Bull;
    memset(s->out_count, 0, (size_t)s->n_vocab * sizeof *s->out_count);
    memset(s->in_prompt, 0, (size_t)s->n_vocab);
    for (size_t i = 0; i < n_prompt; i++) {
        if (prompt[i] >= 0 && prompt[i] < s->n_vocab)
            s->in_prompt[prompt[i]] = 1;
    }
}

void eng_sampler_accept(struct eng_sampler *s, int32_t id)
{
    if (id >= 0 && id < s->n_vocab)
        s->out_count[id]++;
}

/* Descending by logit, ascending id on ties: a total order, so results do not
 * depend on the sort algorithm. */
static int cand_cmp(const void *a, const void *b)
{
    const struct eng_cand *x = a, *y = b;
    if (x->logit > y->logit)
        return -1;
    if (x->logit < y->logit)
        return 1;
    return (x->id > y->id) - (x->id < y->id);
}

static bool cand_before(const struct eng_cand *x, const struct eng_cand *y)
{
    return cand_cmp(x, y) < 0;
}

static void cand_swap(struct eng_cand *a, struct eng_cand *b)
{
    struct eng_cand t = *a;
    *a = *b;
    *b = t;
}

/* Move the m best candidates to the front (any order): quickselect with a
 * Lomuto partition; the order is total, so it always terminates. */
static void select_top(struct eng_cand *c, size_t n, size_t m)
{
    if (m == 0 || m >= n)
        return;
    size_t lo = 0, hi = n - 1, t = m - 1;
    while (lo < hi) {
        cand_swap(&c[lo + (hi - lo) / 2], &c[hi]);
        size_t store = lo;
        for (size_t i = lo; i < hi; i++) {
            if (cand_before(&c[i], &c[hi]))
                cand_swap(&c[i], &c[store++]);
        }
        cand_swap(&c[store], &c[hi]);
        if (store == t)
            return;
        if (store < t)
            lo = store + 1;
        else
            hi = store - 1;
    }
}

/* Keep the k best candidates, sorted. */
static size_t keep_sorted_top(struct eng_cand *c, size_t n, size_t k)
{
    if (k < n)
        select_top(c, n, k);
    else
        k = n;
    qsort(c, k, sizeof *c, cand_cmp);
    return k;
}

/* Before any filter the candidates are the whole vocabulary in id order
 * (minus banned ids, which stay out): bias by binary search on the id. */
static void apply_bias(const struct eng_sample_params *p, struct eng_cand *c, size_t n)
{
    for (size_t b = 0; b < p->n_bias; b++) {
        size_t lo = 0, hi = n;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (c[mid].id < p->bias[b].id)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo < n && c[lo].id == p->bias[b].id)
            c[lo].logit += p->bias[b].bias;
    }
}

static void apply_penalties(struct eng_sampler *s, struct eng_cand *c, size_t n)
{
    const struct eng_sample_params *p = &s->p;
    bool rep = p->repetition_penalty != 1.0f && p->repetition_penalty > 0;
    bool fp = p->frequency_penalty != 0 || p->presence_penalty != 0;
    if (!rep && !fp)
        return;
    for (size_t i = 0; i < n; i++) {
        int32_t id = c[i].id;
        uint32_t cnt = s->out_count[id];
        if (rep && (cnt > 0 || s->in_prompt[id])) {
            if (c[i].logit > 0)
                c[i].logit /= p->repetition_penalty;
            else
                c[i].logit *= p->repetition_penalty;
        }
        if (fp && cnt > 0)
            c[i].logit -= (float)cnt * p->frequency_penalty + p->presence_penalty;
    }
}

/* top-p over sorted-or-not candidates; returns the new count (sorted). */
static size_t apply_top_p(struct eng_cand *c, size_t n, bool sorted, float top_p)
{
    float mx = -INFINITY;
    for (size_t i = 0; i < n; i++)
        mx = c[i].logit > mx ? c[i].logit : mx;
    double z = 0;
    for (size_t i = 0; i < n; i++)
        z += exp((double)c[i].logit - mx);
    size_t m = sorted ? n : (n < PRESELECT ? n : PRESELECT);
    for (;;) {
        if (!sorted)
            keep_sorted_top(c, n, m);
        double cum = 0;
        for (size_t i = 0; i < m; i++) {
            cum += exp((double)c[i].logit - mx) / z;
            if (cum >= top_p)
                return i + 1;
        }
        if (m == n)
            return n;
        m = n;
    }
}

static size_t apply_min_p(struct eng_cand *c, size_t n, float min_p)
{
    float mx = -INFINITY;
    for (size_t i = 0; i < n; i++)
        mx = c[i].logit > mx ? c[i].logit : mx;
    float floor_logit = mx + logf(min_p);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (c[i].logit >= floor_logit)
            c[k++] = c[i];
    }
    return k > 0 ? k : 1;
}

static int32_t draw(struct eng_sampler *s, const struct eng_cand *c, size_t n, float temp)
{
    float mx = -INFINITY;
    for (size_t i = 0; i < n; i++)
        mx = c[i].logit > mx ? c[i].logit : mx;
    double z = 0;
    for (size_t i = 0; i < n; i++)
        z += exp(((double)c[i].logit - mx) / temp);
    double target = rng_uniform(&s->rng) * z;
    double run = 0;
    for (size_t i = 0; i < n; i++) {
        run += exp(((double)c[i].logit - mx) / temp);
        if (run > target)
            return c[i].id;
    }
    return c[n - 1].id;
}

static int32_t argmax(const struct eng_cand *c, size_t n)
{
    size_t best = 0;
    for (size_t i = 1; i < n; i++) {
        if (cand_before(&c[i], &c[best]))
            best = i;
    }
    return c[best].id;
}

/* Copy logits into candidates, dropping banned ids (unless all are). */
static size_t fill_candidates(struct eng_sampler *s, const float *logits,
                              const int32_t *banned, size_t n_banned)
{
    size_t n = (size_t)s->n_vocab;
    for (size_t i = 0; i < n; i++) {
        s->cand[i].id = (int32_t)i;
        s->cand[i].logit = isnan(logits[i]) ? -INFINITY : logits[i];
    }
    for (size_t b = 0; b < n_banned; b++) {
        if (banned[b] >= 0 && banned[b] < s->n_vocab)
            s->cand[banned[b]].logit = -INFINITY;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (s->cand[i].logit > -INFINITY)
            s->cand[k++] = s->cand[i];
    }
    if (k == 0) {
        for (size_t i = 0; i < n; i++)
            s->cand[i] = (struct eng_cand){(int32_t)i, 0.0f};
        k = n;
    }
    return k;
}

void eng_sampler_sample(struct eng_sampler *s, const float *logits,
                        const int32_t *banned, size_t n_banned,
                        struct eng_sample_out *out)
{
    const struct eng_sample_params *p = &s->p;
    size_t n = fill_candidates(s, logits, banned, n_banned);
    apply_bias(p, s->cand, n);
    apply_penalties(s, s->cand, n);
    int32_t id;
    if (p->temperature <= 0) {
        id = argmax(s->cand, n);
    } else {
        bool sorted = false;
        if (p->top_k > 0 && (size_t)p->top_k < n) {
            n = keep_sorted_top(s->cand, n, (size_t)p->top_k);
            sorted = true;
        }
        if (p->top_p < 1.0f && p->top_p > 0)
            n = apply_top_p(s->cand, n, sorted, p->top_p);
        if (p->min_p > 0 && p->min_p <= 1.0f)
            n = apply_min_p(s->cand, n, p->min_p);
        id = draw(s, s->cand, n, p->temperature);
    }
    eng_logprobs(logits, s->n_vocab, id, p->n_logprobs, out);
}

/* Insert (id, logit) into best[] (sorted desc, length *len, capacity cap). */
static void top_insert(struct eng_cand *best, int *len, int cap, int32_t id, float logit)
{
    struct eng_cand c = {id, logit};
    if (*len == cap && !cand_before(&c, &best[cap - 1]))
        return;
    int i = *len < cap ? (*len)++ : cap - 1;
    while (i > 0 && cand_before(&c, &best[i - 1])) {
        best[i] = best[i - 1];
        i--;
    }
    best[i] = c;
}

void eng_logprobs(const float *logits, int n_vocab, int32_t id, int n_top,
                  struct eng_sample_out *out)
{
    out->id = id;
    out->n_top = 0;
    out->logprob = 0;
    if (n_top < 0)
        return;
    float mx = -INFINITY;
    for (int i = 0; i < n_vocab; i++)
        mx = logits[i] > mx ? logits[i] : mx;
    double z = 0;
    for (int i = 0; i < n_vocab; i++)
        z += exp((double)logits[i] - mx);
    double lse = mx + log(z);
    out->logprob = (float)((double)logits[id] - lse);
    int cap = n_top < ENG_MAX_LOGPROBS ? n_top : ENG_MAX_LOGPROBS;
    cap = cap < n_vocab ? cap : n_vocab;
    struct eng_cand best[ENG_MAX_LOGPROBS];
    int len = 0;
    for (int i = 0; cap > 0 && i < n_vocab; i++)
        top_insert(best, &len, cap, i, logits[i]);
    for (int i = 0; i < len; i++) {
        out->top[i].id = best[i].id;
        out->top[i].logprob = (float)((double)best[i].logit - lse);
    }
    out->n_top = len;
}
