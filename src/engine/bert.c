/* bert.c - BERT-family encoders (`bert`: bge-small, all-MiniLM; `nomic-bert`:
 * nomic-embed-text) and eng_embed (facts §3.4, §3.5, §4, §5.4, §5.5).
 *
 * Loading (eng__bert_load) reads the hyperparameters into m->hp, maps the
 * weight matrices (they stay in the GGUF mapping) and widens biases and
 * LayerNorm vectors to owned f32 arrays in m->bert. eng__bert_scratch_init
 * allocates activations for B tokens once (B = m->scratch.n_batch, at least
 * the context); nothing is allocated per call.
 *
 * Forward (one pass over a packed batch of whole sequences, n <= B tokens):
 *   x   = LN(token_embd[t] + token_types[0] (+ position_embd[p]))     [n][E]
 *   per layer:
 *     q,k,v = Wq x + bq, Wk x + bk, Wv x + bv   (nomic: Wqkv x, RoPE NEOX)
 *     att   = softmax(q k^T / sqrt(D)) v, keys of the same sequence only
 *     x1    = LN(x + Wo att + bo)                       (attn_output_norm)
 *     f     = Wdown GELU(Wup x1 + bup) + bdown   (nomic: Wdown(SiLU(Wg x1) * Wup x1))
 *     x     = LN(x1 + f)                                (layer_output_norm)
 *   pool per sequence (CLS = row 0, MEAN = average of its rows), L2-normalize.
 * Every value depends only on its own sequence's rows: matmuls compute each
 * (row, token) dot product independently and every other op is per token or
 * per sequence, so an input's vector is the same whatever shares its pass.
 *
 * Threads: every step is one eng_pool_run; work is split by (thread, count)
 * only. Calls are serialized by m->compute_mu (eng_embed takes it).
 * Ownership: m->bert is freed by eng__bert_free (eng_model_close).
 */
#include "engine/engine_int.h"

#include "base/mem.h"
#include "engine/quant.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define ROW_UNIT 64      /* matmul row split granularity */
#define POOL_MEAN 1
#define POOL_CLS 2

struct bert_layer {
    struct eng_weight wq, wk, wv;    /* bert: [E] -> [E] each */
    struct eng_weight wqkv;          /* nomic: [E] -> [3E] (Q, K, V rows) */
    struct eng_weight wo;            /* [E] -> [E] */
    struct eng_weight w_up;          /* [E] -> [F] */
    struct eng_weight w_gate;        /* nomic: [E] -> [F] */
    struct eng_weight w_down;        /* [F] -> [E] */
    float *bq, *bk, *bv, *bo;        /* bert: [E] each; nomic: NULL */
    float *b_up, *b_down;            /* bert: [F], [E]; nomic: NULL */
    float *ln1_w, *ln1_b;            /* attn_output_norm [E] */
    float *ln2_w, *ln2_b;            /* layer_output_norm [E] */
};

struct eng_bert {
    bool nomic;
    int pooling;                     /* POOL_MEAN or POOL_CLS */
    float *type0;                    /* token_types row 0 [E] */
    struct eng_weight pos;           /* bert: position_embd, n_ctx_train rows of E */
    float *emb_ln_w, *emb_ln_b;      /* token_embd_norm [E] */
    float *rope_inv_freq;            /* nomic: [D/2] base^(-2i/D) */
    struct bert_layer *layers;       /* [L] */
    /* attention kernels, chosen at load (AVX2 when the quant kernels are) */
    float (*dot)(const float *a, const float *b, int n);
    void (*axpy)(float *out, float s, const float *v, int n);
    /* scratch for B tokens */
    int B;
    float *x;                        /* [B][E] residual */
    float *x1;                       /* [B][E] after the attention LN */
    float *qkv;                      /* [B][3E] q | k | v per token */
    float *att;                      /* [B][E] attention output */
    float *tmp;                      /* [B][E] Wo att, then the FFN output */
    float *hb, *hb2;                 /* [B][F] */
    float *scores;                   /* [nth][B] per-thread attention scores */
    void *act;                       /* quantized activation rows */
    size_t act_cap;
};

/* Attention kernels: scalar here, AVX2+FMA in bert_avx2.c. */
float eng__bert_dot_avx2(const float *a, const float *b, int n);
void eng__bert_axpy_avx2(float *out, float s, const float *v, int n);

static float dot_scalar(const float *a, const float *b, int n);
static void axpy_scalar(float *out, float s, const float *v, int n);

/* ---- loading ---------------------------------------------------------------- */

static int hp_u32(struct eng_model *m, const char *field, uint32_t *out, bool required,
                  uint32_t dflt, struct km_err *err)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", m->arch, field);
    int rc = gguf_get_u32(m->gguf, key, out, err);
    if (rc == KM_ENOTFOUND && !required) {
        *out = dflt;
        return KM_OK;
    }
    return rc == KM_OK ? KM_OK : km_err_prefix(err, "%s", m->path);
}

static int hp_f32(struct eng_model *m, const char *field, float *out, float dflt,
                  struct km_err *err)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", m->arch, field);
    int rc = gguf_get_f32(m->gguf, key, out, err);
    if (rc == KM_ENOTFOUND) {
        *out = dflt;
        return KM_OK;
    }
    return rc == KM_OK ? KM_OK : km_err_prefix(err, "%s", m->path);
}

static int read_hparams(struct eng_model *m, struct eng_bert *b, struct km_err *err)
{
    uint32_t e, l, h, ff, ctx, pool;
    float eps, base;
    int rc = hp_u32(m, "embedding_length", &e, true, 0, err);
    rc = rc ? rc : hp_u32(m, "block_count", &l, true, 0, err);
    rc = rc ? rc : hp_u32(m, "attention.head_count", &h, true, 0, err);
    rc = rc ? rc : hp_u32(m, "feed_forward_length", &ff, true, 0, err);
    rc = rc ? rc : hp_u32(m, "context_length", &ctx, false, 512, err);
    rc = rc ? rc : hp_u32(m, "pooling_type", &pool, false, b->nomic ? POOL_MEAN : POOL_CLS, err);
    rc = rc ? rc : hp_f32(m, "attention.layer_norm_epsilon", &eps, 1e-12f, err);
    rc = rc ? rc : hp_f32(m, "rope.freq_base", &base, 1000.0f, err);
    if (rc != KM_OK)
        return rc;
    if (e == 0 || l == 0 || h == 0 || ff == 0 || e > 65536 || l > 1024 ||
        ff > 1u << 20 || e % h != 0 || (e / h) % 2 != 0 || ctx < 2 || ctx > 1u << 16)
        return km_fail(err, KM_EFORMAT, "%s: inconsistent hyperparameters: "
                       "embedding_length %u, block_count %u, head_count %u, "
                       "feed_forward_length %u, context_length %u", m->path, e, l, h, ff, ctx);
    if (pool != POOL_MEAN && pool != POOL_CLS)
        return km_fail(err, KM_EUNSUPPORTED, "%s: %s.pooling_type %u is not supported "
                       "(1 = mean, 2 = cls)", m->path, m->arch, pool);
    b->pooling = (int)pool;
    m->hp = (struct eng_hparams){
        .n_embd = (int)e, .n_layer = (int)l, .n_head = (int)h, .n_head_kv = (int)h,
        .head_dim = (int)(e / h), .n_ff = (int)ff, .n_ctx_train = (int)ctx,
        .eps = eps, .rope_base = base,
    };
    return KM_OK;
}

static int matrix(struct eng_model *m, const char *name, int64_t k, int64_t n,
                  struct eng_weight *w, struct km_err *err)
{
    const struct gguf_tensor *t = gguf_find_tensor(m->gguf, name);
    if (!t)
        return km_fail(err, KM_EFORMAT, "%s: tensor %s is missing", m->path, name);
    if (t->n_dims != 2 || (int64_t)t->ne[0] != k || (n >= 0 && (int64_t)t->ne[1] != n))
        return km_fail(err, KM_EFORMAT, "%s: tensor %s has shape [%llu, %llu], expected "
                       "[%lld, %lld]", m->path, name, (unsigned long long)t->ne[0],
                       (unsigned long long)t->ne[1], (long long)k, (long long)n);
    if (!quant_supported(t->type))
        return km_fail(err, KM_EUNSUPPORTED, "%s: tensor %s has type %u, which this "
                       "engine cannot compute", m->path, name, t->type);
    *w = (struct eng_weight){.type = t->type, .k = k, .n = (int64_t)t->ne[1],
                             .row_bytes = (size_t)t->row_size, .data = t->data};
    return KM_OK;
}

static int vector(struct eng_model *m, const char *name, int64_t n, float **out,
                  struct km_err *err)
{
    const struct gguf_tensor *t = gguf_find_tensor(m->gguf, name);
    if (!t)
        return km_fail(err, KM_EFORMAT, "%s: tensor %s is missing", m->path, name);
    if (t->ne[0] != (uint64_t)n || !quant_supported(t->type))
        return km_fail(err, KM_EFORMAT, "%s: tensor %s has %llu columns of type %u, "
                       "expected %lld of a computable type", m->path, name,
                       (unsigned long long)t->ne[0], t->type, (long long)n);
    *out = km_mallocarray((size_t)n, sizeof **out);
    if (!*out)
        return km_fail(err, KM_ENOMEM, "out of memory for tensor %s", name);
    quant_dequantize_row(t->type, t->data, *out, n);   /* first row only */
    return KM_OK;
}

static int map_layer(struct eng_model *m, struct eng_bert *b, int il, struct km_err *err)
{
    struct bert_layer *ly = &b->layers[il];
    int64_t E = m->hp.n_embd, F = m->hp.n_ff;
    char nm[GGUF_MAX_NAME + 16];
#define NM(suffix) (snprintf(nm, sizeof nm, "blk.%d." suffix, il), nm)
    int rc;
    if (b->nomic) {
        rc = matrix(m, NM("attn_qkv.weight"), E, 3 * E, &ly->wqkv, err);
        rc = rc ? rc : matrix(m, NM("ffn_gate.weight"), E, F, &ly->w_gate, err);
    } else {
        rc = matrix(m, NM("attn_q.weight"), E, E, &ly->wq, err);
        rc = rc ? rc : matrix(m, NM("attn_k.weight"), E, E, &ly->wk, err);
        rc = rc ? rc : matrix(m, NM("attn_v.weight"), E, E, &ly->wv, err);
        rc = rc ? rc : vector(m, NM("attn_q.bias"), E, &ly->bq, err);
        rc = rc ? rc : vector(m, NM("attn_k.bias"), E, &ly->bk, err);
        rc = rc ? rc : vector(m, NM("attn_v.bias"), E, &ly->bv, err);
        rc = rc ? rc : vector(m, NM("attn_output.bias"), E, &ly->bo, err);
        rc = rc ? rc : vector(m, NM("ffn_up.bias"), F, &ly->b_up, err);
        rc = rc ? rc : vector(m, NM("ffn_down.bias"), E, &ly->b_down, err);
    }
    rc = rc ? rc : matrix(m, NM("attn_output.weight"), E, E, &ly->wo, err);
    rc = rc ? rc : matrix(m, NM("ffn_up.weight"), E, F, &ly->w_up, err);
    rc = rc ? rc : matrix(m, NM("ffn_down.weight"), F, E, &ly->w_down, err);
    rc = rc ? rc : vector(m, NM("attn_output_norm.weight"), E, &ly->ln1_w, err);
    rc = rc ? rc : vector(m, NM("attn_output_norm.bias"), E, &ly->ln1_b, err);
    rc = rc ? rc : vector(m, NM("layer_output_norm.weight"), E, &ly->ln2_w, err);
    rc = rc ? rc : vector(m, NM("layer_output_norm.bias"), E, &ly->ln2_b, err);
#undef NM
    return rc;
}

static int map_globals(struct eng_model *m, struct eng_bert *b, struct km_err *err)
{
    struct eng_hparams *hp = &m->hp;
    const struct gguf_tensor *te = gguf_find_tensor(m->gguf, "token_embd.weight");
    if (!te || te->n_dims != 2 || te->ne[1] < 1 || te->ne[1] > (1u << 24))
        return km_fail(err, KM_EFORMAT, "%s: tensor token_embd.weight is missing or "
                       "not a [%d, n_vocab] matrix", m->path, hp->n_embd);
    hp->n_vocab = (int)te->ne[1];
    int rc = matrix(m, "token_embd.weight", hp->n_embd, hp->n_vocab, &m->w.token_embd, err);
    rc = rc ? rc : vector(m, "token_types.weight", hp->n_embd, &b->type0, err);
    rc = rc ? rc : vector(m, "token_embd_norm.weight", hp->n_embd, &b->emb_ln_w, err);
    rc = rc ? rc : vector(m, "token_embd_norm.bias", hp->n_embd, &b->emb_ln_b, err);
    if (rc == KM_OK && !b->nomic)
        rc = matrix(m, "position_embd.weight", hp->n_embd, -1, &b->pos, err);
    if (rc == KM_OK && !b->nomic && b->pos.n < hp->n_ctx_train)
        rc = km_fail(err, KM_EFORMAT, "%s: position_embd.weight has %lld rows, fewer "
                     "than context_length %d", m->path, (long long)b->pos.n, hp->n_ctx_train);
    return rc;
}

static int build_rope(struct eng_model *m, struct eng_bert *b, struct km_err *err)
{
    int D = m->hp.head_dim;
    b->rope_inv_freq = km_mallocarray((size_t)D / 2, sizeof(float));
    if (!b->rope_inv_freq)
        return km_fail(err, KM_ENOMEM, "out of memory for the RoPE table");
    for (int i = 0; i < D / 2; i++)
        b->rope_inv_freq[i] = (float)pow((double)m->hp.rope_base, -2.0 * i / D);
    return KM_OK;
}

bool eng__is_bert_arch(const char *arch)
{
    return strcmp(arch, "bert") == 0 || strcmp(arch, "nomic-bert") == 0;
}

int eng__bert_load(struct eng_model *m, struct km_err *err)
{
    struct eng_bert *b = km_calloc(1, sizeof *b);
    if (!b)
        return km_fail(err, KM_ENOMEM, "out of memory for a BERT model");
    m->bert = b;
    b->nomic = strcmp(m->arch, "nomic-bert") == 0;
    bool avx2 = quant_kernels_active() == QUANT_ISA_AVX2;
    b->dot = avx2 ? eng__bert_dot_avx2 : dot_scalar;
    b->axpy = avx2 ? eng__bert_axpy_avx2 : axpy_scalar;
    int rc = read_hparams(m, b, err);
    rc = rc ? rc : map_globals(m, b, err);
    if (rc == KM_OK && b->nomic)
        rc = build_rope(m, b, err);
    if (rc != KM_OK)
        return rc;
    b->layers = km_calloc((size_t)m->hp.n_layer, sizeof *b->layers);
    if (!b->layers)
        return km_fail(err, KM_ENOMEM, "out of memory for %d layers", m->hp.n_layer);
    for (int il = 0; il < m->hp.n_layer && rc == KM_OK; il++)
        rc = map_layer(m, b, il, err);
    return rc;
}

static size_t max_act_row(const struct eng_model *m)
{
    const struct eng_bert *b = m->bert;
    int64_t k = m->hp.n_ff > m->hp.n_embd ? m->hp.n_ff : m->hp.n_embd;
    size_t best = 0;
    for (int il = 0; il < m->hp.n_layer; il++) {
        const struct bert_layer *l = &b->layers[il];
        const struct eng_weight *ws[] = {&l->wq, &l->wqkv, &l->wo, &l->w_up, &l->w_down};
        for (size_t i = 0; i < sizeof ws / sizeof *ws; i++) {
            if (!ws[i]->data)
                continue;
            size_t r = quant_act_row_size(ws[i]->type, k);
            best = r > best ? r : best;
        }
    }
    return best;
}

int eng__bert_scratch_init(struct eng_model *m, struct km_err *err)
{
    struct eng_bert *b = m->bert;
    int B = m->scratch.n_batch > m->n_ctx ? m->scratch.n_batch : m->n_ctx;
    size_t E = (size_t)m->hp.n_embd, F = (size_t)m->hp.n_ff;
    b->B = B;
    b->x = km_calloc((size_t)B * E, sizeof(float));
    b->x1 = km_calloc((size_t)B * E, sizeof(float));
    b->qkv = km_calloc((size_t)B * 3 * E, sizeof(float));
    b->att = km_calloc((size_t)B * E, sizeof(float));
    b->tmp = km_calloc((size_t)B * E, sizeof(float));
    b->hb = km_calloc((size_t)B * F, sizeof(float));
    b->hb2 = km_calloc((size_t)B * F, sizeof(float));
    b->scores = km_calloc((size_t)m->n_threads * (size_t)B, sizeof(float));
    b->act_cap = (size_t)B * max_act_row(m);
    b->act = km_malloc(b->act_cap ? b->act_cap : 1);
    if (!b->x || !b->x1 || !b->qkv || !b->att || !b->tmp || !b->hb || !b->hb2 ||
        !b->scores || !b->act)
        return km_fail(err, KM_ENOMEM, "out of memory for activations of %d tokens", B);
    return KM_OK;
}

void eng__bert_free(struct eng_model *m)
{
    struct eng_bert *b = m->bert;
    if (!b)
        return;
    for (int il = 0; b->layers && il < m->hp.n_layer; il++) {
        struct bert_layer *l = &b->layers[il];
        float *v[] = {l->bq, l->bk, l->bv, l->bo, l->b_up, l->b_down,
                      l->ln1_w, l->ln1_b, l->ln2_w, l->ln2_b};
        for (size_t i = 0; i < sizeof v / sizeof *v; i++)
            km_free(v[i]);
    }
    void *bufs[] = {b->layers, b->type0, b->emb_ln_w, b->emb_ln_b, b->rope_inv_freq,
                    b->x, b->x1, b->qkv, b->att, b->tmp, b->hb, b->hb2, b->scores, b->act};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
        km_free(bufs[i]);
    km_free(b);
    m->bert = NULL;
}

/* ---- forward ---------------------------------------------------------------- */

/* Arguments of the parallel steps. */
struct bfwd {
    struct eng_model *m;
    struct eng_bert *b;
    const int32_t *tokens;           /* [n] */
    const int *seq_start;            /* [n]: index of the first token of its sequence */
    const int *seq_len;              /* [n]: length of its sequence */
    int n;
    int il;
    /* quantize / add-LN step */
    float *src;                      /* [n][k] */
    const float *add;                /* added into src first (or NULL) */
    const float *bias;               /* added into src first (or NULL) */
    const float *ln_w, *ln_b;        /* LayerNorm (or NULL) */
    int k;
    const struct eng_weight *qw;     /* quantize for this weight (or NULL) */
    /* matmul */
    const struct eng_weight *w;
    float *out;
    int out_stride;
};

static void split(int64_t total, int ith, int nth, int64_t unit, int64_t *lo, int64_t *hi)
{
    int64_t units = (total + unit - 1) / unit;
    *lo = units * ith / nth * unit;
    *hi = units * (ith + 1) / nth * unit;
    *lo = *lo < total ? *lo : total;
    *hi = *hi < total ? *hi : total;
}

/* y = (x - mean) / sqrt(var + eps) * w + b  (sums in double; y may alias x) */
static void layernorm(float *y, const float *x, const float *w, const float *b, int n,
                      float eps)
{
    double s = 0, s2 = 0;
    for (int i = 0; i < n; i++)
        s += x[i];
    double mean = s / n;
    for (int i = 0; i < n; i++)
        s2 += ((double)x[i] - mean) * ((double)x[i] - mean);
    float inv = (float)(1.0 / sqrt(s2 / n + (double)eps));
    for (int i = 0; i < n; i++)
        y[i] = ((x[i] - (float)mean) * inv) * w[i] + b[i];
}

/* x[i] = LN(token_embd[t] + token_types[0] (+ position_embd[pos])) */
static void op_embed(void *arg, int ith, int nth)
{
    struct bfwd *f = arg;
    struct eng_bert *b = f->b;
    const struct eng_weight *te = &f->m->w.token_embd;
    int E = f->m->hp.n_embd;
    float *pos = b->tmp;   /* per-token row of position_embd, [n][E] */
    int64_t lo, hi;
    split(f->n, ith, nth, 1, &lo, &hi);
    for (int64_t i = lo; i < hi; i++) {
        float *x = b->x + i * E;
        const char *row = (const char *)te->data + (size_t)f->tokens[i] * te->row_bytes;
        quant_dequantize_row(te->type, row, x, E);
        for (int j = 0; j < E; j++)
            x[j] += b->type0[j];
        if (!b->nomic) {
            size_t p = (size_t)(i - f->seq_start[i]);
            quant_dequantize_row(b->pos.type, (const char *)b->pos.data + p * b->pos.row_bytes,
                                 pos + i * E, E);
            for (int j = 0; j < E; j++)
                x[j] += pos[i * E + j];
        }
        layernorm(x, x, b->emb_ln_w, b->emb_ln_b, E, f->m->hp.eps);
    }
}

/* Per token: src += add + bias; src = LN(src); act = quant(src) for qw. */
static void op_add_ln_quant(void *arg, int ith, int nth)
{
    struct bfwd *f = arg;
    size_t ar = f->qw ? quant_act_row_size(f->qw->type, f->k) : 0;
    int64_t lo, hi;
    split(f->n, ith, nth, 1, &lo, &hi);
    for (int64_t i = lo; i < hi; i++) {
        float *x = f->src + i * f->k;
        for (int j = 0; f->add && j < f->k; j++)
            x[j] += f->add[i * f->k + j];
        for (int j = 0; f->bias && j < f->k; j++)
            x[j] += f->bias[j];
        if (f->ln_w)
            layernorm(x, x, f->ln_w, f->ln_b, f->k, f->m->hp.eps);
        if (f->qw)
            quant_quantize_act(f->qw->type, x, (char *)f->b->act + i * ar, f->k);
    }
}

/* out[j*stride + r] = W[r] . act[j] for this thread's rows. */
static void op_matmul(void *arg, int ith, int nth)
{
    struct bfwd *f = arg;
    const struct eng_weight *w = f->w;
    int64_t lo, hi;
    split(w->n, ith, nth, ROW_UNIT, &lo, &hi);
    if (hi > lo)
        quant_matmul(w->type, (const char *)w->data + (size_t)lo * w->row_bytes, hi - lo,
                     w->k, f->b->act, f->n, f->out + lo, f->out_stride);
}

static void run_quant(struct bfwd *f, float *src, const float *add, const float *bias,
                      const float *ln_w, const float *ln_b, int k,
                      const struct eng_weight *qw)
{
    f->src = src, f->add = add, f->bias = bias;
    f->ln_w = ln_w, f->ln_b = ln_b, f->k = k, f->qw = qw;
    eng_pool_run(f->m->pool, op_add_ln_quant, f);
}

static void run_matmul(struct bfwd *f, const struct eng_weight *w, float *out, int stride)
{
    f->w = w, f->out = out, f->out_stride = stride;
    eng_pool_run(f->m->pool, op_matmul, f);
}

/* NEOX rotation of pairs (i, i + D/2) of each head by pos * inv_freq[i]. */
static void rope_neox(float *v, int n_heads, int D, int pos, const float *inv_freq)
{
    for (int i = 0; i < D / 2; i++) {
        double th = (double)pos * inv_freq[i];
        float c = (float)cos(th), s = (float)sin(th);
        for (int h = 0; h < n_heads; h++) {
            float *a = v + h * D + i, *bb = v + h * D + i + D / 2;
            float x0 = *a, x1 = *bb;
            *a = x0 * c - x1 * s;
            *bb = x0 * s + x1 * c;
        }
    }
}

/* bert: q,k,v += biases; nomic: RoPE on q and k. Rows of qkv are [q|k|v]. */
static void op_bias_rope(void *arg, int ith, int nth)
{
    struct bfwd *f = arg;
    const struct bert_layer *ly = &f->b->layers[f->il];
    int E = f->m->hp.n_embd, H = f->m->hp.n_head, D = f->m->hp.head_dim;
    int64_t lo, hi;
    split(f->n, ith, nth, 1, &lo, &hi);
    for (int64_t i = lo; i < hi; i++) {
        float *r = f->b->qkv + i * 3 * E;
        if (f->b->nomic) {
            int pos = (int)(i - f->seq_start[i]);
            rope_neox(r, H, D, pos, f->b->rope_inv_freq);
            rope_neox(r + E, H, D, pos, f->b->rope_inv_freq);
            continue;
        }
        for (int j = 0; j < E; j++) {
            r[j] += ly->bq[j];
            r[E + j] += ly->bk[j];
            r[2 * E + j] += ly->bv[j];
        }
    }
}

static float dot_scalar(const float *a, const float *b, int n)
{
    float d = 0;
    for (int t = 0; t < n; t++)
        d += a[t] * b[t];
    return d;
}

static void axpy_scalar(float *out, float s, const float *v, int n)
{
    for (int t = 0; t < n; t++)
        out[t] += s * v[t];
}

/* att[i][h] = softmax(q_i,h . k_j,h / sqrt(D)) v_j,h over j in i's sequence. */
static void op_attention(void *arg, int ith, int nth)
{
    struct bfwd *f = arg;
    struct eng_bert *b = f->b;
    int E = f->m->hp.n_embd, H = f->m->hp.n_head, D = f->m->hp.head_dim;
    float scale = 1.0f / sqrtf((float)D);
    float *sc = b->scores + (size_t)ith * b->B;
    int64_t lo, hi;
    split((int64_t)f->n * H, ith, nth, 1, &lo, &hi);
    for (int64_t p = lo; p < hi; p++) {
        int i = (int)(p / H), h = (int)(p % H);
        int s0 = f->seq_start[i], len = f->seq_len[i];
        const float *q = b->qkv + (size_t)i * 3 * E + (size_t)h * D;
        float mx = -INFINITY;
        for (int j = 0; j < len; j++) {
            const float *k = b->qkv + (size_t)(s0 + j) * 3 * E + E + (size_t)h * D;
            sc[j] = b->dot(q, k, D) * scale;
            mx = sc[j] > mx ? sc[j] : mx;
        }
        float sum = 0;
        for (int j = 0; j < len; j++) {
            sc[j] = expf(sc[j] - mx);
            sum += sc[j];
        }
        float *o = b->att + (size_t)i * E + (size_t)h * D;
        memset(o, 0, (size_t)D * sizeof *o);
        for (int j = 0; j < len; j++) {
            const float *v = b->qkv + (size_t)(s0 + j) * 3 * E + 2 * E + (size_t)h * D;
            b->axpy(o, sc[j] / sum, v, D);
        }
    }
}

/* bert: hb = GELU(hb + b_up) (erf form); nomic: hb = SiLU(hb2) * hb
 * (hb = up, hb2 = gate); then act = quant(hb) for W_down. */
static void op_ffn_act(void *arg, int ith, int nth)
{
    struct bfwd *f = arg;
    const struct bert_layer *ly = &f->b->layers[f->il];
    int F = f->m->hp.n_ff;
    size_t ar = quant_act_row_size(ly->w_down.type, F);
    int64_t lo, hi;
    split(f->n, ith, nth, 1, &lo, &hi);
    for (int64_t i = lo; i < hi; i++) {
        float *h = f->b->hb + i * F;
        const float *g = f->b->hb2 + i * F;
        for (int j = 0; j < F; j++) {
            if (f->b->nomic) {
                h[j] = g[j] / (1.0f + expf(-g[j])) * h[j];
            } else {
                float x = h[j] + ly->b_up[j];
                h[j] = 0.5f * x * (1.0f + erff(x * (float)M_SQRT1_2));
            }
        }
        quant_quantize_act(ly->w_down.type, h, (char *)f->b->act + i * ar, F);
    }
}

static void layer(struct bfwd *f)
{
    struct eng_bert *b = f->b;
    const struct bert_layer *ly = &b->layers[f->il];
    int E = f->m->hp.n_embd, F = f->m->hp.n_ff;
    /* q|k|v = W x (+ b) ; x already quantized for the first matrix */
    if (b->nomic) {
        run_matmul(f, &ly->wqkv, b->qkv, 3 * E);
    } else {
        run_matmul(f, &ly->wq, b->qkv, 3 * E);
        run_quant(f, b->x, NULL, NULL, NULL, NULL, E, &ly->wk);
        run_matmul(f, &ly->wk, b->qkv + E, 3 * E);
        run_quant(f, b->x, NULL, NULL, NULL, NULL, E, &ly->wv);
        run_matmul(f, &ly->wv, b->qkv + 2 * E, 3 * E);
    }
    eng_pool_run(f->m->pool, op_bias_rope, f);
    eng_pool_run(f->m->pool, op_attention, f);
    /* tmp = Wo att */
    run_quant(f, b->att, NULL, NULL, NULL, NULL, E, &ly->wo);
    run_matmul(f, &ly->wo, b->tmp, E);
    /* x1 = LN(x + tmp + bo), quantized for W_up */
    memcpy(b->x1, b->x, (size_t)f->n * E * sizeof(float));
    run_quant(f, b->x1, b->tmp, ly->bo, ly->ln1_w, ly->ln1_b, E, &ly->w_up);
    /* hb = W_up x1 (, hb2 = W_gate x1) */
    run_matmul(f, &ly->w_up, b->hb, F);
    if (b->nomic) {
        run_quant(f, b->x1, NULL, NULL, NULL, NULL, E, &ly->w_gate);
        run_matmul(f, &ly->w_gate, b->hb2, F);
    }
    eng_pool_run(f->m->pool, op_ffn_act, f);
    /* tmp = W_down hb ; x = LN(x1 + tmp + b_down), quantized for the next layer */
    run_matmul(f, &ly->w_down, b->tmp, E);
    memcpy(b->x, b->x1, (size_t)f->n * E * sizeof(float));
    const struct eng_weight *next = NULL;
    if (f->il + 1 < f->m->hp.n_layer)
        next = b->nomic ? &b->layers[f->il + 1].wqkv : &b->layers[f->il + 1].wq;
    run_quant(f, b->x, b->tmp, ly->b_down, ly->ln2_w, ly->ln2_b, E, next);
}

/* Pool sequence rows [s0, s0+len) of x into out[E] and L2-normalize. */
static void pool(const struct eng_model *m, int s0, int len, float *out)
{
    const struct eng_bert *b = m->bert;
    int E = m->hp.n_embd;
    for (int j = 0; j < E; j++) {
        double s = 0;
        if (b->pooling == POOL_CLS) {
            s = b->x[(size_t)s0 * E + j];
        } else {
            for (int i = 0; i < len; i++)
                s += b->x[(size_t)(s0 + i) * E + j];
            s /= len;
        }
        out[j] = (float)s;
    }
    double nn = 0;
    for (int j = 0; j < E; j++)
        nn += (double)out[j] * out[j];
    float inv = nn > 0 ? (float)(1.0 / sqrt(nn)) : 0.0f;
    for (int j = 0; j < E; j++)
        out[j] *= inv;
}

/* Run whole sequences packed in tokens[0..n) (seq_start/seq_len per token). */
int eng__bert_forward(struct eng_model *m, const int32_t *tokens, const int *seq_start,
                      const int *seq_len, int n, struct km_err *err)
{
    struct eng_bert *b = m->bert;
    if (n < 1 || n > b->B)
        return km_fail(err, KM_EINVAL, "batch of %d tokens is outside 1..%d", n, b->B);
    for (int i = 0; i < n; i++) {
        if (tokens[i] < 0 || tokens[i] >= m->hp.n_vocab)
            return km_fail(err, KM_EINVAL, "token id %d is outside the vocabulary "
                           "(0..%d)", tokens[i], m->hp.n_vocab - 1);
    }
    struct bfwd f = {.m = m, .b = b, .tokens = tokens, .seq_start = seq_start,
                     .seq_len = seq_len, .n = n};
    int E = m->hp.n_embd;
    eng_pool_run(m->pool, op_embed, &f);
    const struct eng_weight *w0 = b->nomic ? &b->layers[0].wqkv : &b->layers[0].wq;
    run_quant(&f, b->x, NULL, NULL, NULL, NULL, E, w0);
    for (f.il = 0; f.il < m->hp.n_layer; f.il++)
        layer(&f);
    return KM_OK;
}

/* ---- eng_embed ---------------------------------------------------------- */

/* Fill the per-token sequence tables for inputs [first, last). */
static int pack(struct eng_model *m, const int32_t *const *ids, const size_t *n_ids,
                size_t first, size_t last, int32_t *tok, int *st, int *ln)
{
    (void)m;
    int n = 0;
    for (size_t s = first; s < last; s++) {
        int s0 = n;
        for (size_t i = 0; i < n_ids[s]; i++, n++) {
            tok[n] = ids[s][i];
            st[n] = s0;
            ln[n] = (int)n_ids[s];
        }
    }
    return n;
}

static int check_inputs(struct eng_model *m, const size_t *n_ids, size_t n,
                        struct km_err *err)
{
    if (!m->bert)
        return km_fail(err, KM_EUNSUPPORTED, "model %s (%s) generates text; it has no "
                       "embeddings", m->name, m->arch);
    if (eng_model_state(m, NULL, NULL) != ENG_READY)
        return km_fail(err, KM_ESTATE, "model %s is not loaded", m->name);
    for (size_t i = 0; i < n; i++) {
        if (n_ids[i] == 0)
            return km_fail(err, KM_EINVAL, "input %zu is empty (0 tokens)", i);
        if (n_ids[i] > (size_t)m->n_ctx)
            return km_fail(err, KM_ERANGE, "input %zu has %zu tokens, more than this "
                           "model's maximum of %d", i, n_ids[i], m->n_ctx);
    }
    return KM_OK;
}

int eng_embed(struct eng_model *m, const int32_t *const *ids, const size_t *n_ids,
              size_t n, float *out, struct km_err *err)
{
    int rc = check_inputs(m, n_ids, n, err);
    if (rc != KM_OK)
        return rc;
    struct eng_bert *b = m->bert;
    int32_t *tok = km_mallocarray((size_t)b->B, sizeof *tok);
    int *st = km_mallocarray((size_t)b->B, sizeof *st);
    int *ln = km_mallocarray((size_t)b->B, sizeof *ln);
    if (!tok || !st || !ln) {
        rc = km_fail(err, KM_ENOMEM, "out of memory for a batch of %d tokens", b->B);
        goto out;
    }
    pthread_mutex_lock(&m->compute_mu);
    for (size_t first = 0; first < n && rc == KM_OK;) {
        size_t last = first, total = 0;
        while (last < n && total + n_ids[last] <= (size_t)b->B)
            total += n_ids[last++];
        int nt = pack(m, ids, n_ids, first, last, tok, st, ln);
        rc = eng__bert_forward(m, tok, st, ln, nt, err);
        for (size_t s = first, s0 = 0; rc == KM_OK && s < last; s0 += n_ids[s], s++)
            pool(m, (int)s0, (int)n_ids[s], out + s * (size_t)m->hp.n_embd);
        first = last;
    }
    pthread_mutex_unlock(&m->compute_mu);
out:
    km_free(tok);
    km_free(st);
    km_free(ln);
    return rc;
}
