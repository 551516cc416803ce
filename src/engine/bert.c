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
 * Threads: every step is one eng_pool_run_chunks over chunks that depend
 * only on the pass, never on the thread count: token blocks for per-token
 * steps, (weight-row block x column block) tiles for matmuls (so a 384-row
 * matrix still gives many tiles), (sequence, query block, head) units for
 * attention. Each output value is computed by one call with the same
 * arithmetic wherever its tile or unit falls, so vectors are the same for
 * any --threads and any neighbours in the pass. Activations of float
 * weights are the f32 rows themselves (no copy). Calls are serialized by
 * m->compute_mu (eng_embed takes it); all buffers are the model's scratch.
 * Ownership: m->bert is freed by eng__bert_free (eng_model_close).
 */
#include "engine/engine_int.h"

#include "base/mem.h"
#include "engine/bert_ops.h"
#include "engine/quant.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

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
    struct bert_ops ops;             /* LN, GELU, SiLU, attention; chosen at load */
    /* scratch for B tokens */
    int B;
    float *rope_cs;                  /* nomic: [n_ctx][D] cos | sin of pos * inv_freq */
    float *x;                        /* [B][E] residual */
    float *x1;                       /* [B][E] after the attention LN */
    float *qkv;                      /* [B][3E] q | k | v per token */
    float *att;                      /* [B][E] attention output */
    float *tmp;                      /* [B][E] Wo att, then the FFN output */
    float *hb, *hb2;                 /* [B][F] */
    float *att_scratch;              /* [nth][att_floats] per-thread attention scratch */
    size_t att_floats;
    void *act;                       /* quantized activation rows */
    size_t act_cap;
    int32_t *tok;                    /* [B] packed token ids of a pass */
    int *seq_start, *seq_len;        /* [B] per token: its sequence */
    int *unit_start, *unit_len, *unit_q0;  /* [B] attention units (sequence, query block) */
};

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
    int rc = read_hparams(m, b, err);
    if (rc == KM_OK)
        eng__bert_ops_select(&b->ops, quant_kernels_active() == QUANT_ISA_AVX2,
                             m->hp.head_dim);
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

static int build_rope_table(struct eng_model *m, struct eng_bert *b, struct km_err *err)
{
    int D = m->hp.head_dim;
    b->rope_cs = km_mallocarray((size_t)m->n_ctx * (size_t)D, sizeof(float));
    if (!b->rope_cs)
        return km_fail(err, KM_ENOMEM, "out of memory for the RoPE table of %d positions",
                       m->n_ctx);
    for (int p = 0; p < m->n_ctx; p++) {
        float *cs = b->rope_cs + (size_t)p * D;
        for (int i = 0; i < D / 2; i++) {
            double th = (double)p * b->rope_inv_freq[i];
            cs[i] = (float)cos(th);
            cs[D / 2 + i] = (float)sin(th);
        }
    }
    return KM_OK;
}

int eng__bert_scratch_init(struct eng_model *m, struct km_err *err)
{
    struct eng_bert *b = m->bert;
    int B = m->scratch.n_batch > m->n_ctx ? m->scratch.n_batch : m->n_ctx;
    size_t E = (size_t)m->hp.n_embd, F = (size_t)m->hp.n_ff, nB = (size_t)B;
    if (!b->nomic && m->n_ctx > b->pos.n)
        return km_fail(err, KM_EINVAL, "%s: context %d is longer than the model's %lld "
                       "positions", m->path, m->n_ctx, (long long)b->pos.n);
    b->B = B;
    b->x = km_calloc(nB * E, sizeof(float));
    b->x1 = km_calloc(nB * E, sizeof(float));
    b->qkv = km_calloc(nB * 3 * E, sizeof(float));
    b->att = km_calloc(nB * E, sizeof(float));
    b->tmp = km_calloc(nB * E, sizeof(float));
    b->hb = km_calloc(nB * F, sizeof(float));
    b->hb2 = km_calloc(nB * F, sizeof(float));
    b->att_floats = eng__bert_attn_scratch(m->n_ctx, m->hp.head_dim);
    b->att_scratch = km_calloc((size_t)m->n_threads * b->att_floats, sizeof(float));
    b->act_cap = nB * max_act_row(m);
    b->act = km_malloc(b->act_cap ? b->act_cap : 1);
    b->tok = km_mallocarray(nB, sizeof *b->tok);
    int **ints[] = {&b->seq_start, &b->seq_len, &b->unit_start, &b->unit_len, &b->unit_q0};
    bool ok = true;
    for (size_t i = 0; i < sizeof ints / sizeof *ints; i++) {
        *ints[i] = km_mallocarray(nB, sizeof(int));
        ok = ok && *ints[i];
    }
    if (!ok || !b->x || !b->x1 || !b->qkv || !b->att || !b->tmp || !b->hb || !b->hb2 ||
        !b->att_scratch || !b->act || !b->tok)
        return km_fail(err, KM_ENOMEM, "out of memory for activations of %d tokens", B);
    return b->nomic ? build_rope_table(m, b, err) : KM_OK;
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
                    b->rope_cs, b->x, b->x1, b->qkv, b->att, b->tmp, b->hb, b->hb2,
                    b->att_scratch, b->act, b->tok, b->seq_start, b->seq_len,
                    b->unit_start, b->unit_len, b->unit_q0};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
        km_free(bufs[i]);
    km_free(b);
    m->bert = NULL;
}

/* ---- forward ---------------------------------------------------------------- */

#define TOK_BLOCK 16     /* tokens per chunk of the per-token steps */
#define ROW_BLOCK 48     /* weight rows per matmul tile (a multiple of 2, 3, 4, 6, 8, 16) */
#define TILES_PER_THREAD 6  /* columns are split until a matmul has this many tiles per thread */
#define COL_MIN 48       /* ... but column blocks stay at least this wide */
#define COL_ALIGN 24     /* column block boundaries are multiples of this */
#define Q_BLOCK 128      /* queries per attention unit */

/* Matmuls sharing one activation matrix (q|k|v, up|gate), run as tiles of
 * ROW_BLOCK weight rows x a column block; tile t of matrix i is column
 * block t / row_blocks, row block t % row_blocks. Few-row matrices (384
 * rows: 8 row blocks) get their columns split too, so every thread has
 * several tiles to claim. */
struct mm_group {
    int n_mat;
    const struct eng_weight *w[3];
    float *out[3];               /* output column j of matrix i at out[i] + j * stride */
    const float *bias[3];        /* added to the outputs (or NULL) */
    bool gelu;                   /* then GELU in place (bert W_up) */
    int stride;
    const void *act;             /* n activation rows for these weight types */
    int n_cb;                    /* column blocks */
    int tiles[3];                /* tiles of each matrix */
};

/* Arguments of the parallel steps. */
struct bfwd {
    struct eng_model *m;
    struct eng_bert *b;
    const int32_t *tokens;       /* [n] */
    const int *seq_start;        /* [n]: index of the first token of its sequence */
    int n;
    int n_units;                 /* attention units (sequence, query block) */
    int q_rows;                  /* queries per unit */
    int il;
    /* per-token step: dst = LN(src + add + bias), then act = quant(dst) */
    float *dst;
    const float *src, *add, *bias;
    const float *ln_w, *ln_b;    /* LayerNorm (or NULL) */
    int k;
    const struct eng_weight *qw; /* quantize for this weight (or NULL) */
    struct mm_group mm;
};

static bool float_act(const struct eng_weight *w)
{
    return quant_vec_dot_type(w->type) == GGML_TYPE_F32;
}

static bool same_act(const struct eng_weight *a, const struct eng_weight *b)
{
    return quant_vec_dot_type(a->type) == quant_vec_dot_type(b->type);
}

/* Activations of rows x for w: x itself for float weights, else b->act
 * (quantized by the step before). */
static const void *act_of(const struct bfwd *f, const float *x, const struct eng_weight *w)
{
    return float_act(w) ? (const void *)x : f->b->act;
}

static int n_token_chunks(const struct bfwd *f)
{
    return (f->n + TOK_BLOCK - 1) / TOK_BLOCK;
}

/* x[i] = LN(token_embd[t] + token_types[0] (+ position_embd[pos])) */
static void op_embed(void *arg, int chunk, int ith)
{
    struct bfwd *f = arg;
    struct eng_bert *b = f->b;
    const struct eng_weight *te = &f->m->w.token_embd;
    int E = f->m->hp.n_embd;
    int lo = chunk * TOK_BLOCK, hi = lo + TOK_BLOCK < f->n ? lo + TOK_BLOCK : f->n;
    for (int i = lo; i < hi; i++) {
        float *x = b->x + (size_t)i * E, *pos = b->tmp + (size_t)i * E;
        const char *row = (const char *)te->data + (size_t)f->tokens[i] * te->row_bytes;
        quant_dequantize_row(te->type, row, x, E);
        for (int j = 0; j < E; j++)
            x[j] += b->type0[j];
        if (!b->nomic) {
            size_t p = (size_t)(i - f->seq_start[i]);
            quant_dequantize_row(b->pos.type, (const char *)b->pos.data + p * b->pos.row_bytes,
                                 pos, E);
            for (int j = 0; j < E; j++)
                x[j] += pos[j];
        }
        b->ops.layernorm(x, x, b->emb_ln_w, b->emb_ln_b, E, f->m->hp.eps);
    }
}

/* y = (x + a) + b, a and b optional (NULL); y may be x. */
static void add3(const struct eng_bert *bt, float *y, const float *x, const float *a,
                 const float *b, int n)
{
    if (a || b)
        bt->ops.add(y, x, a ? a : b, a ? b : NULL, n);
    else if (y != x)
        memcpy(y, x, (size_t)n * sizeof *y);
}

/* Per token: dst = src + add + bias; dst = LN(dst); act = quant(dst) for qw. */
static void op_add_ln_quant(void *arg, int chunk, int ith)
{
    struct bfwd *f = arg;
    bool quant = f->qw && !float_act(f->qw);
    size_t ar = quant ? quant_act_row_size(f->qw->type, f->k) : 0;
    int lo = chunk * TOK_BLOCK, hi = lo + TOK_BLOCK < f->n ? lo + TOK_BLOCK : f->n;
    for (int i = lo; i < hi; i++) {
        float *x = f->dst + (size_t)i * f->k;
        const float *s = f->src + (size_t)i * f->k;
        add3(f->b, x, s, f->add ? f->add + (size_t)i * f->k : NULL, f->bias, f->k);
        if (f->ln_w)
            f->b->ops.layernorm(x, x, f->ln_w, f->ln_b, f->k, f->m->hp.eps);
        if (quant)
            quant_quantize_act(f->qw->type, x, (char *)f->b->act + i * ar, f->k);
    }
}

/* dst = LN(src + add + bias) per token, quantized for qw (NULL: not at all);
 * nothing to do when it would only quantize for a float weight. */
static void run_add_ln_quant(struct bfwd *f, float *dst, const float *src, const float *add,
                             const float *bias, const float *ln_w, const float *ln_b, int k,
                             const struct eng_weight *qw)
{
    if (dst == src && !add && !bias && !ln_w && (!qw || float_act(qw)))
        return;
    f->dst = dst, f->src = src, f->add = add, f->bias = bias;
    f->ln_w = ln_w, f->ln_b = ln_b, f->k = k, f->qw = qw;
    eng_pool_run_chunks(f->m->pool, op_add_ln_quant, f, n_token_chunks(f));
}

/* Columns [lo, hi) of column block cb of n. Boundaries are multiples of
 * COL_ALIGN except n; blocks have >= COL_MIN - COL_ALIGN columns when
 * n_cb > 1, so with n >= 2 every block has >= 2 and quant_matmul always
 * takes its matmul path. */
static void col_range(int n, int n_cb, int cb, int *lo, int *hi)
{
    *lo = (int)((int64_t)n * cb / n_cb) / COL_ALIGN * COL_ALIGN;
    *hi = cb + 1 == n_cb ? n : (int)((int64_t)n * (cb + 1) / n_cb) / COL_ALIGN * COL_ALIGN;
}

static int row_blocks(const struct eng_weight *w)
{
    return (int)((w->n + ROW_BLOCK - 1) / ROW_BLOCK);
}

/* One tile: out = W[rows] . act[cols], then + bias, then GELU. */
static void op_mm_tile(void *arg, int chunk, int ith)
{
    struct bfwd *f = arg;
    const struct mm_group *g = &f->mm;
    int i = 0, t = chunk;
    while (t >= g->tiles[i])
        t -= g->tiles[i++];
    const struct eng_weight *w = g->w[i];
    int nrb = row_blocks(w), c0, c1;
    int64_t r0 = (int64_t)(t % nrb) * ROW_BLOCK;
    int64_t nr = w->n - r0 < ROW_BLOCK ? w->n - r0 : ROW_BLOCK;
    col_range(f->n, g->n_cb, t / nrb, &c0, &c1);
    size_t as = quant_act_row_size(w->type, w->k);
    float *out = g->out[i] + (size_t)c0 * g->stride + r0;
    quant_matmul(w->type, (const char *)w->data + (size_t)r0 * w->row_bytes, nr, w->k,
                 (const char *)g->act + (size_t)c0 * as, c1 - c0, out, g->stride);
    const float *bias = g->bias[i] ? g->bias[i] + r0 : NULL;
    for (int j = 0; j < c1 - c0; j++) {
        float *o = out + (size_t)j * g->stride;
        if (g->gelu)
            f->b->ops.gelu(o, bias, (int)nr);
        else
            add3(f->b, o, o, bias, NULL, (int)nr);
    }
}

/* Run the matmuls set up in f->mm (n_mat, w, out, bias, gelu, stride, act). */
static void run_mm_group(struct bfwd *f)
{
    struct mm_group *g = &f->mm;
    int rbs = 0, total = 0;
    for (int i = 0; i < g->n_mat; i++)
        rbs += row_blocks(g->w[i]);
    int want = TILES_PER_THREAD * eng_pool_size(f->m->pool);
    int max_cb = f->n / COL_MIN;
    g->n_cb = (want + rbs - 1) / rbs;
    g->n_cb = g->n_cb > max_cb ? max_cb : g->n_cb;
    g->n_cb = g->n_cb < 1 ? 1 : g->n_cb;
    for (int i = 0; i < g->n_mat; i++) {
        g->tiles[i] = row_blocks(g->w[i]) * g->n_cb;
        total += g->tiles[i];
    }
    eng_pool_run_chunks(f->m->pool, op_mm_tile, f, total);
}

static void run_mm(struct bfwd *f, const struct eng_weight *w, const void *act, float *out,
                   int stride, const float *bias, bool gelu)
{
    f->mm = (struct mm_group){.n_mat = 1, .w = {w}, .out = {out}, .bias = {bias},
                              .gelu = gelu, .stride = stride, .act = act};
    run_mm_group(f);
}

/* nomic: NEOX rotation of q and k, pairs (i, i + D/2) of each head, by the
 * token's position within its sequence (table b->rope_cs). */
static void op_rope(void *arg, int chunk, int ith)
{
    struct bfwd *f = arg;
    int E = f->m->hp.n_embd, H = f->m->hp.n_head, D = f->m->hp.head_dim;
    int lo = chunk * TOK_BLOCK, hi = lo + TOK_BLOCK < f->n ? lo + TOK_BLOCK : f->n;
    for (int i = lo; i < hi; i++) {
        const float *cs = f->b->rope_cs + (size_t)(i - f->seq_start[i]) * D;
        float *r = f->b->qkv + (size_t)i * 3 * E;
        for (int h = 0; h < 2 * H; h++) {   /* the H heads of q, then of k */
            float *v = r + (size_t)h * D;
            for (int j = 0; j < D / 2; j++) {
                float x0 = v[j], x1 = v[j + D / 2], c = cs[j], s = cs[D / 2 + j];
                v[j] = x0 * c - x1 * s;
                v[j + D / 2] = x0 * s + x1 * c;
            }
        }
    }
}

/* Attention units: whole sequences cut in blocks of q_rows queries
 * (q_rows = 1 with cls_only: one unit per sequence, its [CLS] query). */
static int build_units(struct bfwd *f, const int *seq_len, bool cls_only)
{
    struct eng_bert *b = f->b;
    int u = 0;
    f->q_rows = cls_only ? 1 : Q_BLOCK;
    for (int i = 0; i < f->n; i++) {
        if (f->seq_start[i] != i)
            continue;
        int n_q = cls_only ? 1 : seq_len[i];
        for (int q0 = 0; q0 < n_q; q0 += f->q_rows, u++) {
            b->unit_start[u] = i;
            b->unit_len[u] = seq_len[i];
            b->unit_q0[u] = q0;
        }
    }
    return u;
}

/* att = softmax(q k^T / sqrt(D)) v for one (unit, head). */
static void op_attention(void *arg, int chunk, int ith)
{
    struct bfwd *f = arg;
    struct eng_bert *b = f->b;
    int E = f->m->hp.n_embd, H = f->m->hp.n_head, D = f->m->hp.head_dim;
    int u = chunk / H, h = chunk % H;
    int s0 = b->unit_start[u], len = b->unit_len[u], q0 = b->unit_q0[u];
    const float *base = b->qkv + (size_t)s0 * 3 * E + (size_t)h * D;
    struct bert_attn a = {
        .q = base + (size_t)q0 * 3 * E, .k = base + E, .v = base + 2 * E,
        .stride = (size_t)3 * E,
        .n_q = len - q0 < f->q_rows ? len - q0 : f->q_rows, .n_k = len, .D = D,
        .scale = 1.0f / sqrtf((float)D),
        .out = b->att + (size_t)(s0 + q0) * E + (size_t)h * D, .out_stride = (size_t)E,
        .scratch = b->att_scratch + (size_t)ith * b->att_floats,
    };
    b->ops.attend(&a);
}

/* nomic: hb = SiLU(hb2) * hb (hb = up, hb2 = gate), quantized for W_down. */
static void op_silu_quant(void *arg, int chunk, int ith)
{
    struct bfwd *f = arg;
    const struct bert_layer *ly = &f->b->layers[f->il];
    int F = f->m->hp.n_ff;
    bool quant = !float_act(&ly->w_down);
    size_t ar = quant_act_row_size(ly->w_down.type, F);
    int lo = chunk * TOK_BLOCK, hi = lo + TOK_BLOCK < f->n ? lo + TOK_BLOCK : f->n;
    for (int i = lo; i < hi; i++) {
        float *h = f->b->hb + (size_t)i * F;
        f->b->ops.silu_mul(h, f->b->hb2 + (size_t)i * F, F);
        if (quant)
            quant_quantize_act(ly->w_down.type, h, (char *)f->b->act + i * ar, F);
    }
}

/* bert: q|k|v = W x + b as one group when the three take the same
 * activations (x was quantized for Wq by the step before), else one by one. */
static void bert_qkv(struct bfwd *f, const struct bert_layer *ly)
{
    struct eng_bert *b = f->b;
    int E = f->m->hp.n_embd;
    if (same_act(&ly->wq, &ly->wk) && same_act(&ly->wq, &ly->wv)) {
        f->mm = (struct mm_group){
            .n_mat = 3, .w = {&ly->wq, &ly->wk, &ly->wv},
            .out = {b->qkv, b->qkv + E, b->qkv + 2 * E}, .bias = {ly->bq, ly->bk, ly->bv},
            .stride = 3 * E, .act = act_of(f, b->x, &ly->wq)};
        run_mm_group(f);
        return;
    }
    const struct eng_weight *w[] = {&ly->wq, &ly->wk, &ly->wv};
    const float *bias[] = {ly->bq, ly->bk, ly->bv};
    for (int i = 0; i < 3; i++) {
        if (i > 0)
            run_add_ln_quant(f, b->x, b->x, NULL, NULL, NULL, NULL, E, w[i]);
        run_mm(f, w[i], act_of(f, b->x, w[i]), b->qkv + i * E, 3 * E, bias[i], false);
    }
}

/* hb = the FFN's hidden activations for W_down (quantized if it needs). */
static void ffn_hidden(struct bfwd *f, const struct bert_layer *ly)
{
    struct eng_bert *b = f->b;
    int E = f->m->hp.n_embd, F = f->m->hp.n_ff;
    if (!b->nomic) {   /* hb = GELU(W_up x1 + b_up) */
        run_mm(f, &ly->w_up, act_of(f, b->x1, &ly->w_up), b->hb, F, ly->b_up, true);
        run_add_ln_quant(f, b->hb, b->hb, NULL, NULL, NULL, NULL, F, &ly->w_down);
        return;
    }
    if (same_act(&ly->w_up, &ly->w_gate)) {   /* hb = W_up x1, hb2 = W_gate x1 */
        f->mm = (struct mm_group){
            .n_mat = 2, .w = {&ly->w_up, &ly->w_gate}, .out = {b->hb, b->hb2},
            .stride = F, .act = act_of(f, b->x1, &ly->w_up)};
        run_mm_group(f);
    } else {
        run_mm(f, &ly->w_up, act_of(f, b->x1, &ly->w_up), b->hb, F, NULL, false);
        run_add_ln_quant(f, b->x1, b->x1, NULL, NULL, NULL, NULL, E, &ly->w_gate);
        run_mm(f, &ly->w_gate, act_of(f, b->x1, &ly->w_gate), b->hb2, F, NULL, false);
    }
    eng_pool_run_chunks(f->m->pool, op_silu_quant, f, n_token_chunks(f));
}

/* q|k|v = W x (+ b), nomic: RoPE on q and k; then the attention units. */
static void layer_attention(struct bfwd *f)
{
    struct eng_bert *b = f->b;
    const struct bert_layer *ly = &b->layers[f->il];
    int E = f->m->hp.n_embd;
    if (b->nomic) {
        run_mm(f, &ly->wqkv, act_of(f, b->x, &ly->wqkv), b->qkv, 3 * E, NULL, false);
        eng_pool_run_chunks(f->m->pool, op_rope, f, n_token_chunks(f));
    } else {
        bert_qkv(f, ly);
    }
    /* att = softmax(q k^T / sqrt(D)) v per sequence and head */
    eng_pool_run_chunks(f->m->pool, op_attention, f, f->n_units * f->m->hp.n_head);
}

/* Output projection, first LN, FFN, second LN on the f->n rows of att, x. */
static void layer_rest(struct bfwd *f)
{
    struct eng_bert *b = f->b;
    const struct bert_layer *ly = &b->layers[f->il];
    int E = f->m->hp.n_embd;
    /* tmp = Wo att */
    run_add_ln_quant(f, b->att, b->att, NULL, NULL, NULL, NULL, E, &ly->wo);
    run_mm(f, &ly->wo, act_of(f, b->att, &ly->wo), b->tmp, E, NULL, false);
    /* x1 = LN(x + tmp + bo), quantized for W_up */
    run_add_ln_quant(f, b->x1, b->x, b->tmp, ly->bo, ly->ln1_w, ly->ln1_b, E, &ly->w_up);
    /* tmp = W_down act(x1) */
    ffn_hidden(f, ly);
    run_mm(f, &ly->w_down, act_of(f, b->hb, &ly->w_down), b->tmp, E, NULL, false);
    /* x = LN(x1 + tmp + b_down), quantized for the next layer */
    const struct eng_weight *next = NULL;
    if (f->il + 1 < f->m->hp.n_layer)
        next = b->nomic ? &b->layers[f->il + 1].wqkv : &b->layers[f->il + 1].wq;
    run_add_ln_quant(f, b->x, b->x1, b->tmp, ly->b_down, ly->ln2_w, ly->ln2_b, E, next);
}

/* Last layer of a CLS model: only [CLS] rows matter from here on. Moves
 * sequence k's [CLS] rows of att and x to row k (sources are at or after
 * their destination, so in order nothing is overwritten before it is read)
 * and returns the new row count; one sequence gets a copy in row 1 so that
 * matmuls keep >= 2 columns (see pack). */
static int compact_cls(struct bfwd *f)
{
    struct eng_bert *b = f->b;
    size_t E = (size_t)f->m->hp.n_embd, row = E * sizeof(float);
    int k = 0;
    for (int i = 0; i < f->n; i++) {
        if (f->seq_start[i] != i)
            continue;
        if (i != k) {
            memcpy(b->att + k * E, b->att + (size_t)i * E, row);
            memcpy(b->x + k * E, b->x + (size_t)i * E, row);
        }
        k++;
    }
    if (k == 1) {
        memcpy(b->att + E, b->att, row);
        memcpy(b->x + E, b->x, row);
        k = 2;
    }
    return k;
}

/* Pool rows [r0, r0 + rows) of x into out[E] (their mean) and L2-normalize. */
static void pool(const struct eng_model *m, int r0, int rows, float *out)
{
    const struct eng_bert *b = m->bert;
    int E = m->hp.n_embd;
    for (int j = 0; j < E; j++) {
        double s = 0;
        for (int i = 0; i < rows; i++)
            s += b->x[(size_t)(r0 + i) * E + j];
        out[j] = (float)(s / rows);
    }
    double nn = 0;
    for (int j = 0; j < E; j++)
        nn += (double)out[j] * out[j];
    float inv = nn > 0 ? (float)(1.0 / sqrt(nn)) : 0.0f;
    for (int j = 0; j < E; j++)
        out[j] *= inv;
}

/* Run whole sequences packed in tokens[0..n) (seq_start/seq_len per token).
 * Afterwards x holds, for CLS pooling, the [CLS] row of the k-th sequence
 * in row k (the last layer runs on those rows only), else every token's
 * row. */
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
    struct bfwd f = {.m = m, .b = b, .tokens = tokens, .seq_start = seq_start, .n = n};
    int E = m->hp.n_embd, L = m->hp.n_layer;
    eng_pool_run_chunks(m->pool, op_embed, &f, n_token_chunks(&f));
    const struct eng_weight *w0 = b->nomic ? &b->layers[0].wqkv : &b->layers[0].wq;
    run_add_ln_quant(&f, b->x, b->x, NULL, NULL, NULL, NULL, E, w0);
    for (f.il = 0; f.il < L; f.il++) {
        bool cls_only = f.il == L - 1 && b->pooling == POOL_CLS;
        if (f.il == 0 || cls_only)
            f.n_units = build_units(&f, seq_len, cls_only);
        layer_attention(&f);
        if (cls_only)
            f.n = compact_cls(&f);
        layer_rest(&f);
    }
    return KM_OK;
}

/* ---- eng_embed ---------------------------------------------------------- */

/* Fill b->tok / seq_start / seq_len for inputs [first, last); returns the
 * token count. A pass of a single token gets a copy of it as a second
 * sequence: with one column quant_matmul would take its dot-product path,
 * whose rounding differs from the matmul path every other pass takes. */
static int pack(struct eng_bert *b, const int32_t *const *ids, const size_t *n_ids,
                size_t first, size_t last)
{
    int n = 0;
    for (size_t s = first; s < last; s++) {
        int s0 = n;
        for (size_t i = 0; i < n_ids[s]; i++, n++) {
            b->tok[n] = ids[s][i];
            b->seq_start[n] = s0;
            b->seq_len[n] = (int)n_ids[s];
        }
    }
    if (n == 1) {
        b->tok[1] = b->tok[0];
        b->seq_start[1] = 1;
        b->seq_len[1] = 1;
        n = 2;
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
    pthread_mutex_lock(&m->compute_mu);
    for (size_t first = 0; first < n && rc == KM_OK;) {
        size_t last = first, total = 0;
        while (last < n && total + n_ids[last] <= (size_t)b->B)
            total += n_ids[last++];
        int nt = pack(b, ids, n_ids, first, last);
        rc = eng__bert_forward(m, b->tok, b->seq_start, b->seq_len, nt, err);
        for (size_t s = first, s0 = 0; rc == KM_OK && s < last; s0 += n_ids[s], s++) {
            float *o = out + s * (size_t)m->hp.n_embd;
            if (b->pooling == POOL_CLS)
                pool(m, (int)(s - first), 1, o);
            else
                pool(m, (int)s0, (int)n_ids[s], o);
        }
        first = last;
    }
    pthread_mutex_unlock(&m->compute_mu);
    return rc;
}
