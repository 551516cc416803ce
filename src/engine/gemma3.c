/* gemma3.c - the Gemma 3 text forward pass (facts §3.3, §5.3; owned by
 * "arch").
 *
 * Loading: eng__load_weights maps the Llama-shaped tensors (attn_norm, q, k,
 * v, o, ffn_norm, gate, up, down, output_norm, tied output); eng__gemma3_load
 * then adds Gemma's extra vectors (attn_q_norm, attn_k_norm [D];
 * post_attention_norm, post_ffw_norm [E]) and the per-layer RoPE tables into
 * m->gemma. Norm weights already include Gemma's +1 (converter).
 *
 * Forward for n tokens of one sequence at positions pos0.. (uses the model's
 * eng_scratch and the sequence's F16 KV cache like llama.c; a local layer's
 * cache is a ring of s->kv_len[l] = min(C, W + B - 1) rows, position p in
 * row p % kv_len, see engine_int.h):
 *   x = token_embd[t] * sqrt(E)
 *   per layer l (global iff (l+1) % 6 == 0, else sliding-window local):
 *     h = RMSNorm(x) attn_norm;  q, k, v = Wq h, Wk h, Wv h
 *     q, k per head: RMSNorm_D(.) q_norm / k_norm, then RoPE NEOX
 *        (global: base rope.freq_base, scale 1/rope.scaling.factor;
 *         local: base 10000 (or rope.freq_base_swa), scale 1)
 *     att = softmax(scale q.k) v over keys j <= pos, and for local layers
 *        pos - j < sliding_window; scale 1/sqrt(D) (27B: 1/sqrt(E/H))
 *     x += RMSNorm(Wo att) post_attention_norm
 *     h = RMSNorm(x) ffn_norm;  f = Wdown(GELU_tanh(Wgate h) * Wup h)
 *     x += RMSNorm(f) post_ffw_norm
 *   logits = W_out (RMSNorm(x_last) output_norm)
 * Threads split rows / tokens / (token, head) pairs only, so results do not
 * depend on the thread count. Freed by eng__gemma3_free.
 */
#include "engine/engine_int.h"

#include "base/mem.h"
#include "engine/ops.h"
#include "engine/quant.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define ROW_UNIT 64
#define GLOBAL_EVERY 6

struct gemma_layer {
    float *q_norm, *k_norm;          /* [D] */
    float *post_attn_norm;           /* [E] */
    float *post_ffw_norm;            /* [E] */
    bool global;
};

struct eng_gemma {
    struct gemma_layer *layers;      /* [L] */
    float *inv_freq_global;          /* [D/2] freq_scale * base^(-2i/D) */
    float *inv_freq_local;           /* [D/2] */
    float attn_scale;
    float embd_scale;                /* sqrt(E) */
};

/* ---- loading ---------------------------------------------------------------- */

static int opt_f32(struct eng_model *m, const char *field, float *out, float dflt,
                   struct km_err *err)
{
    char key[128];
    snprintf(key, sizeof key, "gemma3.%s", field);
    int rc = gguf_get_f32(m->gguf, key, out, err);
    if (rc == KM_ENOTFOUND) {
        *out = dflt;
        return KM_OK;
    }
    return rc == KM_OK ? KM_OK : km_err_prefix(err, "%s", m->path);
}

static int rope_tables(struct eng_model *m, struct eng_gemma *g, struct km_err *err)
{
    int D = m->hp.head_dim;
    float factor, base_swa;
    int rc = opt_f32(m, "rope.scaling.factor", &factor, 1.0f, err);
    rc = rc ? rc : opt_f32(m, "rope.freq_base_swa", &base_swa, 10000.0f, err);
    if (rc != KM_OK)
        return rc;
    if (!(factor > 0))
        factor = 1.0f;
    g->inv_freq_global = km_mallocarray((size_t)D / 2, sizeof(float));
    g->inv_freq_local = km_mallocarray((size_t)D / 2, sizeof(float));
    if (!g->inv_freq_global || !g->inv_freq_local)
        return km_fail(err, KM_ENOMEM, "out of memory for the RoPE tables");
    for (int i = 0; i < D / 2; i++) {
        g->inv_freq_global[i] = (float)(pow((double)m->hp.rope_base, -2.0 * i / D) / factor);
        g->inv_freq_local[i] = (float)pow((double)base_swa, -2.0 * i / D);
    }
    return KM_OK;
}

static int map_layer(struct eng_model *m, struct eng_gemma *g, int il, struct km_err *err)
{
    struct gemma_layer *ly = &g->layers[il];
    int64_t E = m->hp.n_embd, D = m->hp.head_dim;
    char nm[GGUF_MAX_NAME + 16];
#define NM(suffix) (snprintf(nm, sizeof nm, "blk.%d." suffix, il), nm)
    int rc = eng__map_vector(m, NM("attn_q_norm.weight"), D, &ly->q_norm, err);
    rc = rc ? rc : eng__map_vector(m, NM("attn_k_norm.weight"), D, &ly->k_norm, err);
    rc = rc ? rc : eng__map_vector(m, NM("post_attention_norm.weight"), E, &ly->post_attn_norm, err);
    rc = rc ? rc : eng__map_vector(m, NM("post_ffw_norm.weight"), E, &ly->post_ffw_norm, err);
#undef NM
    ly->global = (il + 1) % GLOBAL_EVERY == 0;
    return rc;
}

int eng__gemma3_swa(const struct gguf_file *f, struct eng_hparams *hp, struct km_err *err)
{
    uint32_t win = 0;
    int rc = gguf_get_u32(f, "gemma3.attention.sliding_window", &win, err);
    if (rc != KM_OK) {
        km_err_prefix(err, "%s", gguf_path(f));
        return rc;
    }
    if (win < 1 || win > (1u << 30))
        return km_fail(err, KM_EFORMAT, "%s: gemma3.attention.sliding_window is %u, "
                       "expected 1..%u", gguf_path(f), win, 1u << 30);
    hp->n_swa = (int)win;
    hp->swa_every = GLOBAL_EVERY;
    return KM_OK;
}

int eng__gemma3_load(struct eng_model *m, struct km_err *err)
{
    struct eng_gemma *g = km_calloc(1, sizeof *g);
    if (!g)
        return km_fail(err, KM_ENOMEM, "out of memory for a Gemma 3 model");
    m->gemma = g;
    int rc = eng__gemma3_swa(m->gguf, &m->hp, err);
    if (rc != KM_OK)
        return rc;
    const struct eng_hparams *hp = &m->hp;
    g->attn_scale = hp->n_layer == 62 ? 1.0f / sqrtf((float)hp->n_embd / (float)hp->n_head)
                                      : 1.0f / sqrtf((float)hp->head_dim);
    g->embd_scale = sqrtf((float)hp->n_embd);
    rc = rope_tables(m, g, err);
    if (rc != KM_OK)
        return rc;
    g->layers = km_calloc((size_t)hp->n_layer, sizeof *g->layers);
    if (!g->layers)
        return km_fail(err, KM_ENOMEM, "out of memory for %d layers", hp->n_layer);
    for (int il = 0; il < hp->n_layer && rc == KM_OK; il++)
        rc = map_layer(m, g, il, err);
    return rc;
}

void eng__gemma3_free(struct eng_model *m)
{
    struct eng_gemma *g = m->gemma;
    if (!g)
        return;
    for (int il = 0; g->layers && il < m->hp.n_layer; il++) {
        km_free(g->layers[il].q_norm);
        km_free(g->layers[il].k_norm);
        km_free(g->layers[il].post_attn_norm);
        km_free(g->layers[il].post_ffw_norm);
    }
    km_free(g->layers);
    km_free(g->inv_freq_global);
    km_free(g->inv_freq_local);
    km_free(g);
    m->gemma = NULL;
}

/* ---- forward ---------------------------------------------------------------- */

struct gfwd {
    struct eng_model *m;
    struct eng_seq *s;
    const int32_t *tokens;
    int n;
    int pos0;
    int il;
    /* norm + quantize step: dst = RMSNorm(src) * w (w NULL: dst = src) */
    float *src, *dst, *addto;        /* addto += dst afterwards (or NULL) */
    const float *w;
    int k;
    const struct eng_weight *qw;     /* quantize dst for this weight (or NULL) */
    /* matmul */
    const struct eng_weight *mw;
    float *out;
};

static void split(int64_t total, int ith, int nth, int64_t unit, int64_t *lo, int64_t *hi)
{
    int64_t units = (total + unit - 1) / unit;
    *lo = units * ith / nth * unit;
    *hi = units * (ith + 1) / nth * unit;
    *lo = *lo < total ? *lo : total;
    *hi = *hi < total ? *hi : total;
}

/* x[i] = token_embd[tokens[i]] * sqrt(E) */
static void op_embed(void *arg, int ith, int nth)
{
    struct gfwd *f = arg;
    const struct eng_weight *te = &f->m->w.token_embd;
    float sc = f->m->gemma->embd_scale;
    int64_t lo, hi;
    split(f->n, ith, nth, 1, &lo, &hi);
    for (int64_t i = lo; i < hi; i++) {
        float *x = f->m->scratch.x + i * te->k;
        quant_dequantize_row(te->type, (const char *)te->data + (size_t)f->tokens[i] * te->row_bytes,
                             x, te->k);
        for (int64_t j = 0; j < te->k; j++)
            x[j] *= sc;
    }
}

/* Per token: dst = RMSNorm(src) * w; addto += dst; quantize dst for qw. */
static void op_norm(void *arg, int ith, int nth)
{
    struct gfwd *f = arg;
    size_t ar = f->qw ? quant_act_row_size(f->qw->type, f->k) : 0;
    int64_t lo, hi;
    split(f->n, ith, nth, 1, &lo, &hi);
    for (int64_t i = lo; i < hi; i++) {
        float *src = f->src + i * f->k, *dst = f->dst + i * f->k;
        if (f->w)
            eng_rmsnorm(dst, src, f->w, f->k, f->m->hp.eps);
        else if (dst != src)
            memcpy(dst, src, (size_t)f->k * sizeof *dst);
        for (int j = 0; f->addto && j < f->k; j++)
            f->addto[i * f->k + j] += dst[j];
        if (f->qw)
            quant_quantize_act(f->qw->type, dst, (char *)f->m->scratch.act + i * ar, f->k);
    }
}

static void op_matmul(void *arg, int ith, int nth)
{
    struct gfwd *f = arg;
    const struct eng_weight *w = f->mw;
    int64_t lo, hi;
    split(w->n, ith, nth, ROW_UNIT, &lo, &hi);
    if (hi > lo)
        quant_matmul(w->type, (const char *)w->data + (size_t)lo * w->row_bytes, hi - lo,
                     w->k, f->m->scratch.act, f->n, f->out + lo, w->n);
}

static void norm(struct gfwd *f, float *src, float *dst, const float *w, float *addto,
                 int k, const struct eng_weight *qw)
{
    f->src = src, f->dst = dst, f->w = w, f->addto = addto, f->k = k, f->qw = qw;
    eng_pool_run(f->m->pool, op_norm, f);
}

/* out = W . rows (quantizing `rows` for W first when qw differs). */
static void mm(struct gfwd *f, float *rows, int k, const struct eng_weight *w, float *out)
{
    if (rows)
        norm(f, rows, rows, NULL, NULL, k, w);
    f->mw = w, f->out = out;
    eng_pool_run(f->m->pool, op_matmul, f);
}

/* NEOX rotation of pairs (i, i + D/2) of each head by pos * inv_freq[i]. */
static void rope_neox(float *v, int n_heads, int D, int pos, const float *inv_freq)
{
    for (int i = 0; i < D / 2; i++) {
        double th = (double)pos * inv_freq[i];
        float c = (float)cos(th), s = (float)sin(th);
        for (int h = 0; h < n_heads; h++) {
            float *a = v + h * D + i, *b = v + h * D + i + D / 2;
            float x0 = *a, x1 = *b;
            *a = x0 * c - x1 * s;
            *b = x0 * s + x1 * c;
        }
    }
}

/* q, k: per-head RMSNorm, RoPE; k, v into the F16 cache row of their
 * position (row pos % kv_len: a ring on sliding-window layers). */
static void op_qk(void *arg, int ith, int nth)
{
    struct gfwd *f = arg;
    const struct eng_hparams *hp = &f->m->hp;
    struct eng_scratch *sc = &f->m->scratch;
    const struct gemma_layer *ly = &f->m->gemma->layers[f->il];
    const float *inv = ly->global ? f->m->gemma->inv_freq_global : f->m->gemma->inv_freq_local;
    int D = hp->head_dim, qd = hp->n_head * D, kvd = hp->n_head_kv * D;
    int rows = f->s->kv_len[f->il];
    int64_t lo, hi;
    split(f->n, ith, nth, 1, &lo, &hi);
    for (int64_t i = lo; i < hi; i++) {
        float *q = sc->q + i * qd, *k = sc->k + i * kvd;
        for (int h = 0; h < hp->n_head; h++)
            eng_rmsnorm(q + h * D, q + h * D, ly->q_norm, D, hp->eps);
        for (int h = 0; h < hp->n_head_kv; h++)
            eng_rmsnorm(k + h * D, k + h * D, ly->k_norm, D, hp->eps);
        rope_neox(q, hp->n_head, D, f->pos0 + (int)i, inv);
        rope_neox(k, hp->n_head_kv, D, f->pos0 + (int)i, inv);
        size_t at = f->s->kv_off[f->il] + (size_t)((f->pos0 + i) % rows) * kvd;
        eng_store_f16(f->s->k_cache + at, k, kvd);
        eng_store_f16(f->s->v_cache + at, sc->v + i * kvd, kvd);
    }
}

/* Causal (and for local layers sliding-window) GQA attention per (token,
 * head): keys first..pos, first = pos - n_swa + 1 on local layers. */
static void op_attention(void *arg, int ith, int nth)
{
    struct gfwd *f = arg;
    const struct eng_hparams *hp = &f->m->hp;
    const struct eng_gemma *g = f->m->gemma;
    struct eng_scratch *sc = &f->m->scratch;
    int D = hp->head_dim, H = hp->n_head, qd = H * D, kvd = hp->n_head_kv * D;
    int group = H / hp->n_head_kv, rows = f->s->kv_len[f->il];
    bool global = g->layers[f->il].global;
    float *scores = sc->scores + (size_t)ith * f->m->n_ctx;
    int64_t lo, hi;
    split((int64_t)f->n * H, ith, nth, 1, &lo, &hi);
    for (int64_t p = lo; p < hi; p++) {
        int i = (int)(p / H), h = (int)(p % H);
        int pos = f->pos0 + i;
        int first = global || pos < hp->n_swa ? 0 : pos - hp->n_swa + 1;
        size_t kv = f->s->kv_off[f->il] + (size_t)(h / group) * D;
        eng_attend_ring(sc->att + (size_t)i * qd + (size_t)h * D, sc->q + (size_t)i * qd + (size_t)h * D,
                    f->s->k_cache + kv, f->s->v_cache + kv, kvd, rows, first % rows,
                    pos - first + 1, D, g->attn_scale, scores);
    }
}

/* hb = GELU_tanh(hb) * hb2, quantized for W_down. */
static void op_geglu(void *arg, int ith, int nth)
{
    struct gfwd *f = arg;
    struct eng_scratch *sc = &f->m->scratch;
    const struct eng_weight *wd = &f->m->w.layers[f->il].w_down;
    int F = f->m->hp.n_ff;
    size_t ar = quant_act_row_size(wd->type, F);
    int64_t lo, hi;
    split(f->n, ith, nth, 1, &lo, &hi);
    for (int64_t i = lo; i < hi; i++) {
        float *a = sc->hb + i * F;
        const float *b = sc->hb2 + i * F;
        for (int j = 0; j < F; j++) {
            float x = a[j];
            float gl = 0.5f * x * (1.0f + tanhf(0.7978845608028654f * x * (1.0f + 0.044715f * x * x)));
            a[j] = gl * b[j];
        }
        quant_quantize_act(wd->type, a, (char *)sc->act + i * ar, F);
    }
}

static void layer(struct gfwd *f)
{
    struct eng_model *m = f->m;
    struct eng_scratch *sc = &m->scratch;
    const struct eng_layer *ly = &m->w.layers[f->il];
    const struct gemma_layer *gl = &m->gemma->layers[f->il];
    int E = m->hp.n_embd, qd = m->hp.n_head * m->hp.head_dim;
    /* xb = RMSNorm(x) attn_norm; q, k, v = W xb */
    norm(f, sc->x, sc->xb, ly->attn_norm, NULL, E, &ly->wq);
    mm(f, NULL, E, &ly->wq, sc->q);
    mm(f, sc->xb, E, &ly->wk, sc->k);
    mm(f, sc->xb, E, &ly->wv, sc->v);
    /* q, k normed per head and rotated; k, v cached */
    eng_pool_run(m->pool, op_qk, f);
    eng_pool_run(m->pool, op_attention, f);
    /* x += RMSNorm(Wo att) post_attention_norm */
    mm(f, sc->att, qd, &ly->wo, sc->xb);
    norm(f, sc->xb, sc->xb, gl->post_attn_norm, sc->x, E, NULL);
    /* h = RMSNorm(x) ffn_norm; hb = W_gate h, hb2 = W_up h */
    norm(f, sc->x, sc->xb, ly->ffn_norm, NULL, E, &ly->w_gate);
    mm(f, NULL, E, &ly->w_gate, sc->hb);
    mm(f, sc->xb, E, &ly->w_up, sc->hb2);
    /* x += RMSNorm(W_down(GELU(hb) * hb2)) post_ffw_norm */
    eng_pool_run(m->pool, op_geglu, f);
    mm(f, NULL, m->hp.n_ff, &ly->w_down, sc->xb);
    norm(f, sc->xb, sc->xb, gl->post_ffw_norm, sc->x, E, NULL);
}

int eng__gemma3_forward(struct eng_model *m, struct eng_seq *s, const int32_t *tokens,
                        int n, bool want_logits, struct km_err *err)
{
    struct eng_scratch *sc = &m->scratch;
    int rc = eng__check_batch(m, s, tokens, n, err);
    if (rc != KM_OK)
        return rc;
    struct gfwd f = {.m = m, .s = s, .tokens = tokens, .n = n, .pos0 = s->n_past};
    eng_pool_run(m->pool, op_embed, &f);
    for (f.il = 0; f.il < m->hp.n_layer; f.il++)
        layer(&f);
    s->n_past += n;
    if (!want_logits)
        return KM_OK;
    /* logits = W_out RMSNorm(x[last]) output_norm */
    struct gfwd g = f;
    g.n = 1;
    int E = m->hp.n_embd;
    norm(&g, sc->x + (size_t)(n - 1) * E, sc->xb, m->w.output_norm, NULL, E, &m->w.output);
    g.mw = &m->w.output, g.out = sc->logits;
    eng_pool_run(m->pool, op_matmul, &g);
    return KM_OK;
}
