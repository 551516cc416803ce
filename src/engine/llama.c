/* llama.c - the Llama 3.x forward pass (facts §5.2).
 *
 * eng__llama_forward runs n tokens of one sequence through the model: every
 * step below is one parallel op on the model's thread pool (the pool's return
 * is the barrier). Matmuls split output rows across threads in 64-row units,
 * attention deals tokens to threads in turn ((token, head) ranges for a few
 * tokens), elementwise ops split tokens (decode's SwiGLU splits its row):
 * each output value is computed by exactly one thread with the same
 * arithmetic for any thread count, so results do not depend on --threads.
 */
#include "engine/engine_int.h"

#include "engine/ops.h"
#include "engine/quant.h"

#include <math.h>
#include <string.h>

#define ROW_UNIT 64   /* matmul row split granularity (see the top comment) */
#define MAX_MM 3
#define ACT_TILE 64   /* activations per prefill matmul tile */
#define SWIGLU_UNIT 256 /* decode SwiGLU split unit (a Q8_0 / Q8_K block multiple) */

/* Arguments of the parallel ops (one struct, filled per step). */
struct fwd {
    struct eng_model *m;
    struct eng_seq *s;
    const int32_t *tokens;
    int n;                            /* tokens in this call */
    int pos0;                         /* position of tokens[0] */
    int il;                           /* current layer */
    /* elementwise / quantize */
    float *src;                       /* [n][k] rows */
    const float *add;                 /* residual to add into src (or NULL) */
    const float *norm;                /* RMSNorm weight (or NULL) */
    float *normed;                    /* where the normed rows go */
    int k;
    uint32_t act_type;                /* weight type whose act format to use */
    size_t act_row;
    /* matmuls sharing one quantized input */
    const struct eng_weight *w[MAX_MM];
    float *out[MAX_MM];
    int n_mm;
    int act_first;                    /* first token row of act to use */
    int n_act;
};

static void split(int64_t total, int ith, int nth, int64_t unit, int64_t *lo, int64_t *hi)
{
    int64_t units = (total + unit - 1) / unit;
    *lo = units * ith / nth * unit;
    *hi = units * (ith + 1) / nth * unit;
    *lo = *lo < total ? *lo : total;
    *hi = *hi < total ? *hi : total;
}

/* x[i] = token_embd[tokens[i]] */
static void op_embed(void *arg, int ith, int nth)
{
    struct fwd *f = arg;
    const struct eng_weight *te = &f->m->w.token_embd;
    int64_t lo, hi;
    split(f->n, ith, nth, 1, &lo, &hi);
    for (int64_t i = lo; i < hi; i++) {
        const char *row = (const char *)te->data + (size_t)f->tokens[i] * te->row_bytes;
        quant_dequantize_row(te->type, row, f->m->scratch.x + i * te->k, te->k);
    }
}

/* Per token row: src += add; normed = RMSNorm(src) * norm; act = quant(normed). */
static void op_add_norm_quant(void *arg, int ith, int nth)
{
    struct fwd *f = arg;
    struct eng_scratch *sc = &f->m->scratch;
    int64_t lo, hi;
    split(f->n, ith, nth, 1, &lo, &hi);
    for (int64_t i = lo; i < hi; i++) {
        float *x = f->src + i * f->k;
        if (f->add) {
            for (int j = 0; j < f->k; j++)
                x[j] += f->add[i * f->k + j];
        }
        float *y = x;
        if (f->norm) {
            y = f->normed + i * f->k;
            eng_rmsnorm(y, x, f->norm, f->k, f->m->hp.eps);
        }
        if (f->act_row)
            quant_quantize_act(f->act_type, y, (char *)sc->act + i * f->act_row, f->k);
    }
}

/* Rows [lo, hi) of W times activations [0, n_act), tiled for prefill so a
 * block of weight rows (~128 KiB) and of activations (64) stay in L2 while
 * they are combined; decode (few activations) streams the rows once. Tiles
 * start at multiples of ROW_UNIT, so results do not depend on the split.
 * K-quant weights (Q8_K activations) go in one call: their kernel blocks
 * rows and columns itself and unpacks each weight block once per 256
 * columns, so smaller calls would only unpack them more often. */
static void matmul_rows(const struct eng_weight *w, int64_t lo, int64_t hi,
                        const char *act, size_t act_row, int n_act, float *out)
{
    int64_t row_tile = hi - lo;                 /* decode: one pass over the rows */
    if (quant_vec_dot_type(w->type) == GGML_TYPE_Q8_K) {
        quant_matmul(w->type, (const char *)w->data + (size_t)lo * w->row_bytes, hi - lo, w->k,
                     act, n_act, out + lo, w->n);
        return;
    }
    if (n_act > 8) {
        row_tile = (int64_t)(((size_t)128 << 10) / w->row_bytes) / ROW_UNIT * ROW_UNIT;
        row_tile = row_tile < ROW_UNIT ? ROW_UNIT : row_tile;
    }
    for (int a0 = 0; a0 < n_act; a0 += ACT_TILE) {
        int na = n_act - a0 < ACT_TILE ? n_act - a0 : ACT_TILE;
        for (int64_t r0 = lo; r0 < hi; r0 += row_tile) {
            int64_t nr = hi - r0 < row_tile ? hi - r0 : row_tile;
            quant_matmul(w->type, (const char *)w->data + (size_t)r0 * w->row_bytes, nr, w->k,
                         act + (size_t)a0 * act_row, na, out + (size_t)a0 * w->n + r0, w->n);
        }
    }
}

/* out[j][r] = W[r] . act[j] for this thread's rows of every matmul. */
static void op_matmul(void *arg, int ith, int nth)
{
    struct fwd *f = arg;
    const char *act = (const char *)f->m->scratch.act + (size_t)f->act_first * f->act_row;
    for (int i = 0; i < f->n_mm; i++) {
        int64_t lo, hi;
        split(f->w[i]->n, ith, nth, ROW_UNIT, &lo, &hi);
        if (hi > lo)
            matmul_rows(f->w[i], lo, hi, act, f->act_row, f->n_act, f->out[i]);
    }
}

/* RoPE on q and k of each token, then k and v into the F16 cache. */
static void op_rope_store(void *arg, int ith, int nth)
{
    struct fwd *f = arg;
    const struct eng_hparams *hp = &f->m->hp;
    struct eng_scratch *sc = &f->m->scratch;
    int D = hp->head_dim, qd = hp->n_head * D, kvd = hp->n_head_kv * D;
    size_t layer = (size_t)f->il * (size_t)f->s->n_ctx * kvd;
    int64_t lo, hi;
    split(f->n, ith, nth, 1, &lo, &hi);
    for (int64_t i = lo; i < hi; i++) {
        const float *cs = sc->rope + i * D;
        if (f->il == 0)   /* same token split in every layer */
            eng_rope_angles(sc->rope + i * D, f->pos0 + (int)i, f->m->w.rope_inv_freq, D);
        eng_rope_pairs(sc->q + i * qd, hp->n_head, D, cs);
        eng_rope_pairs(sc->k + i * kvd, hp->n_head_kv, D, cs);
        size_t at = layer + (size_t)(f->pos0 + i) * kvd;
        eng_store_f16(f->s->k_cache + at, sc->k + i * kvd, kvd);
        eng_store_f16(f->s->v_cache + at, sc->v + i * kvd, kvd);
    }
}

/* Causal GQA attention of token i, head h over the cache. */
static void attend_pair(const struct fwd *f, int i, int h, float *scores)
{
    const struct eng_hparams *hp = &f->m->hp;
    struct eng_scratch *sc = &f->m->scratch;
    int D = hp->head_dim, qd = hp->n_head * D, kvd = hp->n_head_kv * D;
    size_t kv = (size_t)f->il * (size_t)f->s->n_ctx * kvd + (size_t)(h / (hp->n_head / hp->n_head_kv)) * D;
    eng_attend_head(sc->att + (size_t)i * qd + (size_t)h * D, sc->q + (size_t)i * qd + (size_t)h * D,
                    f->s->k_cache + kv, f->s->v_cache + kv, kvd, f->pos0 + i + 1, D,
                    1.0f / sqrtf((float)D), scores);
}

/* Attention for each (token, head) pair. A token's cost grows with its
 * position, so with several tokens per share the shares take the tokens in
 * turn (token i, all heads, to share i % nth): each gets long and short
 * rows alike. With few tokens the pairs are split in ranges. */
static void op_attention(void *arg, int ith, int nth)
{
    struct fwd *f = arg;
    int H = f->m->hp.n_head;
    float *scores = f->m->scratch.scores + (size_t)ith * f->m->n_ctx;
    if (f->n >= 4 * nth) {
        for (int i = ith; i < f->n; i += nth)
            for (int h = 0; h < H; h++)
                attend_pair(f, i, h, scores);
        return;
    }
    int64_t lo, hi;
    split((int64_t)f->n * H, ith, nth, 1, &lo, &hi);
    for (int64_t p = lo; p < hi; p++)
        attend_pair(f, (int)(p / H), (int)(p % H), scores);
}

/* hb = SiLU(hb) * hb2, then act = quant(hb), for elements [lo, hi) of
 * token row i (lo, hi: multiples of SWIGLU_UNIT or F). */
static void swiglu_quant_row(struct fwd *f, int64_t i, int64_t lo, int64_t hi)
{
    struct eng_scratch *sc = &f->m->scratch;
    int64_t F = f->m->hp.n_ff;
    eng_swiglu(sc->hb + i * F + lo, sc->hb2 + i * F + lo, (int)(hi - lo));
    quant_quantize_act(f->act_type, sc->hb + i * F + lo,
                       (char *)sc->act + i * f->act_row + quant_act_row_size(f->act_type, lo), hi - lo);
}

/* Split by tokens; a single token (decode) is split along the row in
 * SWIGLU_UNIT pieces (whole activation blocks, elementwise arithmetic: the
 * same results as one piece) so that no thread waits for the other's SiLUs. */
static void op_swiglu_quant(void *arg, int ith, int nth)
{
    struct fwd *f = arg;
    int F = f->m->hp.n_ff;
    int64_t lo, hi;
    if (f->n == 1 && F % SWIGLU_UNIT == 0) {
        split(F, ith, nth, SWIGLU_UNIT, &lo, &hi);
        if (hi > lo)
            swiglu_quant_row(f, 0, lo, hi);
        return;
    }
    split(f->n, ith, nth, 1, &lo, &hi);
    for (int64_t i = lo; i < hi; i++)
        swiglu_quant_row(f, i, 0, F);
}

/* Quantize rows (src, k) for weight w (add/norm as set in f) in parallel. */
static void prepare(struct fwd *f, float *src, const float *add, const float *norm,
                    float *normed, int k, const struct eng_weight *w)
{
    f->src = src;
    f->add = add;
    f->norm = norm;
    f->normed = normed;
    f->k = k;
    f->act_type = w ? w->type : 0;
    f->act_row = w ? quant_act_row_size(w->type, k) : 0;
    eng_pool_run(f->m->pool, op_add_norm_quant, f);
}

/* Run up to three matmuls over the quantized rows [first, first+n_act). */
static void matmul(struct fwd *f, int first, int n_act, int n_mm,
                   const struct eng_weight *w0, float *o0,
                   const struct eng_weight *w1, float *o1,
                   const struct eng_weight *w2, float *o2)
{
    f->w[0] = w0, f->out[0] = o0;
    f->w[1] = w1, f->out[1] = o1;
    f->w[2] = w2, f->out[2] = o2;
    f->n_mm = n_mm;
    f->act_first = first;
    f->n_act = n_act;
    f->act_row = quant_act_row_size(w0->type, w0->k);
    eng_pool_run(f->m->pool, op_matmul, f);
}

static bool same_act(const struct eng_weight *a, const struct eng_weight *b)
{
    return quant_vec_dot_type(a->type) == quant_vec_dot_type(b->type);
}

/* q, k, v = Wq xb, Wk xb, Wv xb (requantizing when their formats differ). */
static void qkv(struct fwd *f, const struct eng_layer *ly)
{
    struct eng_scratch *sc = &f->m->scratch;
    int E = f->m->hp.n_embd;
    if (same_act(&ly->wq, &ly->wk) && same_act(&ly->wq, &ly->wv)) {
        matmul(f, 0, f->n, 3, &ly->wq, sc->q, &ly->wk, sc->k, &ly->wv, sc->v);
        return;
    }
    matmul(f, 0, f->n, 1, &ly->wq, sc->q, NULL, NULL, NULL, NULL);
    prepare(f, sc->xb, NULL, NULL, NULL, E, &ly->wk);
    matmul(f, 0, f->n, 1, &ly->wk, sc->k, NULL, NULL, NULL, NULL);
    prepare(f, sc->xb, NULL, NULL, NULL, E, &ly->wv);
    matmul(f, 0, f->n, 1, &ly->wv, sc->v, NULL, NULL, NULL, NULL);
}

/* hb, hb2 = W_gate xb, W_up xb. */
static void gate_up(struct fwd *f, const struct eng_layer *ly)
{
    struct eng_scratch *sc = &f->m->scratch;
    if (same_act(&ly->w_gate, &ly->w_up)) {
        matmul(f, 0, f->n, 2, &ly->w_gate, sc->hb, &ly->w_up, sc->hb2, NULL, NULL);
        return;
    }
    matmul(f, 0, f->n, 1, &ly->w_gate, sc->hb, NULL, NULL, NULL, NULL);
    prepare(f, sc->xb, NULL, NULL, NULL, f->m->hp.n_embd, &ly->w_up);
    matmul(f, 0, f->n, 1, &ly->w_up, sc->hb2, NULL, NULL, NULL, NULL);
}

/* One transformer block; on entry the residual x still lacks `pending`
 * (the previous block's FFN output, or NULL for layer 0). */
static void block(struct fwd *f, const float *pending)
{
    struct eng_model *m = f->m;
    struct eng_scratch *sc = &m->scratch;
    const struct eng_layer *ly = &m->w.layers[f->il];
    int E = m->hp.n_embd, qd = m->hp.n_head * m->hp.head_dim;
    /* x += pending; xb = RMSNorm(x) * attn_norm; quantized for Wq */
    prepare(f, sc->x, pending, ly->attn_norm, sc->xb, E, &ly->wq);
    /* q = Wq xb, k = Wk xb, v = Wv xb */
    qkv(f, ly);
    /* RoPE(q), RoPE(k); k, v -> cache[pos] */
    eng_pool_run(m->pool, op_rope_store, f);
    /* att = softmax(q k^T / sqrt(D), causal) v, per head (GQA) */
    eng_pool_run(m->pool, op_attention, f);
    /* quantize att for Wo */
    prepare(f, sc->att, NULL, NULL, NULL, qd, &ly->wo);
    /* xb = Wo att */
    matmul(f, 0, f->n, 1, &ly->wo, sc->xb, NULL, NULL, NULL, NULL);
    /* x += xb; xb' = RMSNorm(x) * ffn_norm; quantized for W_gate */
    prepare(f, sc->x, sc->xb, ly->ffn_norm, sc->att, E, &ly->w_gate);
    float *normed = sc->att;
    /* hb = W_gate xb', hb2 = W_up xb' */
    if (!same_act(&ly->w_gate, &ly->w_up))
        memcpy(sc->xb, normed, (size_t)f->n * E * sizeof(float));
    gate_up(f, ly);
    /* hb = SiLU(hb) * hb2, quantized for W_down */
    f->act_type = ly->w_down.type;
    f->act_row = quant_act_row_size(ly->w_down.type, m->hp.n_ff);
    eng_pool_run(m->pool, op_swiglu_quant, f);
    /* xb = W_down hb  (added to x by the next step) */
    matmul(f, 0, f->n, 1, &ly->w_down, sc->xb, NULL, NULL, NULL, NULL);
}

int eng__llama_forward(struct eng_model *m, struct eng_seq *s,
                       const int32_t *tokens, int n, bool want_logits,
                       struct km_err *err)
{
    if (m->gemma)   /* Gemma 3: gemma3.c */
        return eng__gemma3_forward(m, s, tokens, n, want_logits, err);
    struct eng_scratch *sc = &m->scratch;
    int rc = eng__check_batch(m, s, tokens, n, err);
    if (rc != KM_OK)
        return rc;
    struct fwd f = {.m = m, .s = s, .tokens = tokens, .n = n, .pos0 = s->n_past};
    int E = m->hp.n_embd;
    /* x = token_embd[tokens] */
    eng_pool_run(m->pool, op_embed, &f);
    for (f.il = 0; f.il < m->hp.n_layer; f.il++)
        block(&f, f.il == 0 ? NULL : sc->xb);   /* x += block(x) */
    /* x += last FFN output (all rows: the residual stream is complete) */
    prepare(&f, sc->x, sc->xb, NULL, NULL, E, NULL);
    s->n_past += n;
    if (!want_logits)
        return KM_OK;
    /* logits = W_out RMSNorm(x[last]) * output_norm */
    struct fwd g = f;
    g.n = 1;
    prepare(&g, sc->x + (size_t)(n - 1) * E, NULL, m->w.output_norm, sc->xb, E, &m->w.output);
    matmul(&g, 0, 1, 1, &m->w.output, sc->logits, NULL, NULL, NULL, NULL);
    return KM_OK;
}
