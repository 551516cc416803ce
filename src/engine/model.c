/* model.c - map a llama GGUF into the weight table, allocate activations and
 * KV caches (see engine_int.h for the layout and ownership). */
#include "engine/engine_int.h"

#include "base/mem.h"
#include "engine/quant.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static int get_hp(struct eng_model *m, const char *field, uint32_t *out,
                  bool required, uint32_t dflt, struct km_err *err)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", m->arch, field);
    int rc = gguf_get_u32(m->gguf, key, out, err);
    if (rc == KM_ENOTFOUND && !required) {
        *out = dflt;
        return KM_OK;
    }
    if (rc != KM_OK)
        return km_err_prefix(err, "%s", m->path);
    return KM_OK;
}

static int get_hp_f32(struct eng_model *m, const char *field, float *out,
                      float dflt, struct km_err *err)
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

static int read_hparams(struct eng_model *m, struct km_err *err)
{
    struct eng_hparams *hp = &m->hp;
    uint32_t e, l, h, hkv, ff, ctx, kl, rdim;
    int rc = get_hp(m, "embedding_length", &e, true, 0, err);
    rc = rc ? rc : get_hp(m, "block_count", &l, true, 0, err);
    rc = rc ? rc : get_hp(m, "attention.head_count", &h, true, 0, err);
    rc = rc ? rc : get_hp(m, "feed_forward_length", &ff, true, 0, err);
    rc = rc ? rc : get_hp(m, "context_length", &ctx, false, 2048, err);
    rc = rc ? rc : get_hp(m, "attention.head_count_kv", &hkv, false, h, err);
    if (rc != KM_OK)
        return rc;
    if (e == 0 || l == 0 || h == 0 || hkv == 0 || ff == 0 || e > 65536 ||
        l > 1024 || h > 1024 || ff > 1u << 20 || e % h != 0 || h % hkv != 0)
        return km_fail(err, KM_EFORMAT,
                       "%s: inconsistent hyperparameters: embedding_length %u, "
                       "block_count %u, head_count %u, head_count_kv %u, "
                       "feed_forward_length %u", m->path, e, l, h, hkv, ff);
    rc = get_hp(m, "attention.key_length", &kl, false, e / h, err);
    rc = rc ? rc : get_hp(m, "rope.dimension_count", &rdim, false, kl, err);
    rc = rc ? rc : get_hp_f32(m, "attention.layer_norm_rms_epsilon", &hp->eps, 1e-5f, err);
    rc = rc ? rc : get_hp_f32(m, "rope.freq_base", &hp->rope_base, 10000.0f, err);
    if (rc != KM_OK)
        return rc;
    if (kl == 0 || kl % 2 != 0 || kl > 1024 || rdim != kl)
        return km_fail(err, KM_EFORMAT,
                       "%s: %s.rope.dimension_count %u must equal the head "
                       "dimension %u (even, at most 1024)", m->path, m->arch, rdim, kl);
    *hp = (struct eng_hparams){
        .n_embd = (int)e, .n_layer = (int)l, .n_head = (int)h,
        .n_head_kv = (int)hkv, .head_dim = (int)kl, .n_ff = (int)ff,
        .n_ctx_train = (int)ctx, .eps = hp->eps, .rope_base = hp->rope_base,
    };
    return KM_OK;
}

/* Find a 2-D matrix `name` with ne = [k, n] of a computable type. */
static int map_matrix(struct eng_model *m, const char *name, int64_t k,
                      int64_t n, struct eng_weight *w, struct km_err *err)
{
    const struct gguf_tensor *t = gguf_find_tensor(m->gguf, name);
    if (!t)
        return km_fail(err, KM_EFORMAT, "%s: tensor %s is missing", m->path, name);
    if (t->n_dims != 2 || (int64_t)t->ne[0] != k || (n >= 0 && (int64_t)t->ne[1] != n))
        return km_fail(err, KM_EFORMAT,
                       "%s: tensor %s has shape [%llu, %llu] (n_dims %u), "
                       "expected [%lld, %lld]", m->path, name,
                       (unsigned long long)t->ne[0], (unsigned long long)t->ne[1],
                       t->n_dims, (long long)k, (long long)n);
    if (!quant_supported(t->type))
        return km_fail(err, KM_EUNSUPPORTED, "%s: tensor %s has type %s, which "
                       "this engine cannot compute", m->path, name,
                       quant_type_name(t->type) ? quant_type_name(t->type) : "unknown");
    *w = (struct eng_weight){
        .type = t->type, .k = k, .n = (int64_t)t->ne[1],
        .row_bytes = (size_t)t->row_size, .data = t->data,
    };
    return KM_OK;
}

int eng__map_vector(struct eng_model *m, const char *name, int64_t n, float **out,
                    struct km_err *err)
{
    const struct gguf_tensor *t = gguf_find_tensor(m->gguf, name);
    if (!t)
        return km_fail(err, KM_EFORMAT, "%s: tensor %s is missing", m->path, name);
    if (t->n_elements != (uint64_t)n || t->ne[0] != (uint64_t)n)
        return km_fail(err, KM_EFORMAT, "%s: tensor %s has %llu elements, expected %lld",
                       m->path, name, (unsigned long long)t->n_elements, (long long)n);
    if (!quant_supported(t->type))
        return km_fail(err, KM_EUNSUPPORTED, "%s: tensor %s has an unsupported type %u",
                       m->path, name, t->type);
    *out = km_mallocarray((size_t)n, sizeof **out);
    if (!*out)
        return km_fail(err, KM_ENOMEM, "out of memory for tensor %s", name);
    quant_dequantize_row(t->type, t->data, *out, n);
    return KM_OK;
}

static int map_layer(struct eng_model *m, int il, struct km_err *err)
{
    const struct eng_hparams *hp = &m->hp;
    struct eng_layer *ly = &m->w.layers[il];
    int64_t E = hp->n_embd, qd = (int64_t)hp->n_head * hp->head_dim;
    int64_t kvd = (int64_t)hp->n_head_kv * hp->head_dim, F = hp->n_ff;
    char nm[GGUF_MAX_NAME + 16];
#define NM(suffix) (snprintf(nm, sizeof nm, "blk.%d." suffix, il), nm)
    int rc = eng__map_vector(m, NM("attn_norm.weight"), E, &ly->attn_norm, err);
    rc = rc ? rc : map_matrix(m, NM("attn_q.weight"), E, qd, &ly->wq, err);
    rc = rc ? rc : map_matrix(m, NM("attn_k.weight"), E, kvd, &ly->wk, err);
    rc = rc ? rc : map_matrix(m, NM("attn_v.weight"), E, kvd, &ly->wv, err);
    rc = rc ? rc : map_matrix(m, NM("attn_output.weight"), qd, E, &ly->wo, err);
    rc = rc ? rc : eng__map_vector(m, NM("ffn_norm.weight"), E, &ly->ffn_norm, err);
    rc = rc ? rc : map_matrix(m, NM("ffn_gate.weight"), E, F, &ly->w_gate, err);
    rc = rc ? rc : map_matrix(m, NM("ffn_up.weight"), E, F, &ly->w_up, err);
    rc = rc ? rc : map_matrix(m, NM("ffn_down.weight"), F, E, &ly->w_down, err);
#undef NM
    return rc;
}

/* inv_freq[i] = base^(-2i/D) / rope_freqs[i] (llama3 scaling factors). */
static int build_rope(struct eng_model *m, struct km_err *err)
{
    int D = m->hp.head_dim;
    float *ff = NULL;
    if (gguf_find_tensor(m->gguf, "rope_freqs.weight")) {
        int rc = eng__map_vector(m, "rope_freqs.weight", D / 2, &ff, err);
        if (rc != KM_OK)
            return rc;
    }
    m->w.rope_inv_freq = km_mallocarray((size_t)D / 2, sizeof(float));
    if (!m->w.rope_inv_freq) {
        km_free(ff);
        return km_fail(err, KM_ENOMEM, "out of memory for the RoPE table");
    }
    for (int i = 0; i < D / 2; i++) {
        double f = pow((double)m->hp.rope_base, -2.0 * i / D);
        m->w.rope_inv_freq[i] = (float)(ff ? f / ff[i] : f);
    }
    km_free(ff);
    return KM_OK;
}

int eng__load_weights(struct eng_model *m, struct km_err *err)
{
    int rc = read_hparams(m, err);
    if (rc != KM_OK)
        return rc;
    struct eng_hparams *hp = &m->hp;
    const struct gguf_tensor *te = gguf_find_tensor(m->gguf, "token_embd.weight");
    if (!te || te->n_dims != 2 || te->ne[1] < 1 || te->ne[1] > (1u << 24))
        return km_fail(err, KM_EFORMAT, "%s: tensor token_embd.weight is missing "
                       "or not a [%d, n_vocab] matrix", m->path, hp->n_embd);
    hp->n_vocab = (int)te->ne[1];
    rc = map_matrix(m, "token_embd.weight", hp->n_embd, hp->n_vocab, &m->w.token_embd, err);
    if (rc != KM_OK)
        return rc;
    m->w.tied = gguf_find_tensor(m->gguf, "output.weight") == NULL;
    if (m->w.tied)
        m->w.output = m->w.token_embd;
    else
        rc = map_matrix(m, "output.weight", hp->n_embd, hp->n_vocab, &m->w.output, err);
    rc = rc ? rc : eng__map_vector(m, "output_norm.weight", hp->n_embd, &m->w.output_norm, err);
    rc = rc ? rc : build_rope(m, err);
    if (rc != KM_OK)
        return rc;
    m->w.layers = km_calloc((size_t)hp->n_layer, sizeof *m->w.layers);
    if (!m->w.layers)
        return km_fail(err, KM_ENOMEM, "out of memory for %d layers", hp->n_layer);
    for (int il = 0; il < hp->n_layer && rc == KM_OK; il++)
        rc = map_layer(m, il, err);
    return rc;
}

void eng__free_weights(struct eng_model *m)
{
    for (int il = 0; m->w.layers && il < m->hp.n_layer; il++) {
        km_free(m->w.layers[il].attn_norm);
        km_free(m->w.layers[il].ffn_norm);
    }
    km_free(m->w.layers);
    km_free(m->w.output_norm);
    km_free(m->w.rope_inv_freq);
    memset(&m->w, 0, sizeof m->w);
}

/* Largest input size any matmul quantizes. */
static int64_t max_matmul_k(const struct eng_hparams *hp)
{
    int64_t k = hp->n_embd;
    int64_t qd = (int64_t)hp->n_head * hp->head_dim;
    k = qd > k ? qd : k;
    return hp->n_ff > k ? hp->n_ff : k;
}

static size_t max_act_row(const struct eng_model *m)
{
    size_t best = 0;
    int64_t kmax = max_matmul_k(&m->hp);
    for (int il = 0; il < m->hp.n_layer; il++) {
        const struct eng_layer *l = &m->w.layers[il];
        const struct eng_weight *ws[] = {&l->wq, &l->wk, &l->wv, &l->wo,
                                         &l->w_gate, &l->w_up, &l->w_down};
        for (size_t i = 0; i < sizeof ws / sizeof *ws; i++) {
            size_t b = quant_act_row_size(ws[i]->type, kmax);
            best = b > best ? b : best;
        }
    }
    size_t b = quant_act_row_size(m->w.output.type, kmax);
    return b > best ? b : best;
}

int eng__scratch_init(struct eng_model *m, struct km_err *err)
{
    const struct eng_hparams *hp = &m->hp;
    struct eng_scratch *s = &m->scratch;
    size_t B = (size_t)s->n_batch, E = (size_t)hp->n_embd;
    size_t qd = (size_t)hp->n_head * hp->head_dim;
    size_t kvd = (size_t)hp->n_head_kv * hp->head_dim, F = (size_t)hp->n_ff;
    s->x = km_calloc(B * E, sizeof(float));
    s->xb = km_calloc(B * E, sizeof(float));
    s->q = km_calloc(B * qd, sizeof(float));
    s->k = km_calloc(B * kvd, sizeof(float));
    s->v = km_calloc(B * kvd, sizeof(float));
    s->att = km_calloc(B * (qd > E ? qd : E), sizeof(float));   /* also normed x */
    s->hb = km_calloc(B * F, sizeof(float));
    s->hb2 = km_calloc(B * F, sizeof(float));
    s->rope = km_calloc(B * (size_t)hp->head_dim, sizeof(float));
    s->scores = km_calloc((size_t)m->n_threads * (size_t)m->n_ctx, sizeof(float));
    s->logits = km_calloc((size_t)hp->n_vocab, sizeof(float));
    s->act_cap = B * max_act_row(m);
    s->act = km_malloc(s->act_cap);
    if (!s->x || !s->xb || !s->q || !s->k || !s->v || !s->att || !s->hb ||
        !s->hb2 || !s->rope || !s->scores || !s->logits || !s->act)
        return km_fail(err, KM_ENOMEM, "out of memory for activations of %zu tokens", B);
    return KM_OK;
}

void eng__scratch_free(struct eng_scratch *s)
{
    void *bufs[] = {s->x, s->xb, s->q, s->k, s->v, s->att, s->hb, s->hb2,
                    s->rope, s->scores, s->logits, s->act};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
        km_free(bufs[i]);
    int nb = s->n_batch;
    memset(s, 0, sizeof *s);
    s->n_batch = nb;
}

int eng__check_batch(const struct eng_model *m, const struct eng_seq *s,
                     const int32_t *tokens, int n, struct km_err *err)
{
    if (n < 1 || n > m->scratch.n_batch)
        return km_fail(err, KM_EINVAL, "batch of %d tokens is outside 1..%d", n,
                       m->scratch.n_batch);
    if (s->n_past + n > s->n_ctx)
        return km_fail(err, KM_ERANGE, "%d positions + %d tokens exceed the context of %d",
                       s->n_past, n, s->n_ctx);
    for (int i = 0; i < n; i++) {
        if (tokens[i] < 0 || tokens[i] >= m->hp.n_vocab)
            return km_fail(err, KM_EINVAL, "token id %d is outside the vocabulary "
                           "(0..%d)", tokens[i], m->hp.n_vocab - 1);
    }
    return KM_OK;
}

int eng__kv_len(const struct eng_hparams *hp, int il, int n_ctx, int n_batch)
{
    bool local = hp->n_swa > 0 && (hp->swa_every < 1 || (il + 1) % hp->swa_every != 0);
    int64_t ring = (int64_t)hp->n_swa + (n_batch > 1 ? n_batch : 1) - 1;
    return local && ring < n_ctx ? (int)ring : n_ctx;
}

/* s->kv_len / kv_off for n_ctx; *halves = one cache's size. */
static int kv_layout(struct eng_model *m, struct eng_seq *s, size_t *halves, struct km_err *err)
{
    int L = m->hp.n_layer;
    size_t kvd = (size_t)m->hp.n_head_kv * m->hp.head_dim;
    s->kv_len = km_calloc((size_t)L, sizeof *s->kv_len);
    s->kv_off = km_calloc((size_t)L, sizeof *s->kv_off);
    if (!s->kv_len || !s->kv_off)
        return km_fail(err, KM_ENOMEM, "out of memory for a sequence");
    *halves = 0;
    for (int il = 0; il < L; il++) {
        s->kv_len[il] = eng__kv_len(&m->hp, il, s->n_ctx, m->scratch.n_batch);
        s->kv_off[il] = *halves;
        *halves += (size_t)s->kv_len[il] * kvd;
    }
    return KM_OK;
}

int eng__seq_new(struct eng_model *m, int n_ctx, struct eng_seq **out,
                 struct km_err *err)
{
    *out = NULL;
    if (n_ctx <= 0 || n_ctx > m->n_ctx)
        n_ctx = m->n_ctx;
    struct eng_seq *s = km_calloc(1, sizeof *s);
    if (!s)
        return km_fail(err, KM_ENOMEM, "out of memory for a sequence");
    s->model = m;
    s->n_ctx = n_ctx;
    size_t n = 0;
    int rc = kv_layout(m, s, &n, err);
    if (rc == KM_OK) {
        s->k_cache = km_calloc(n, sizeof(uint16_t));
        s->v_cache = km_calloc(n, sizeof(uint16_t));
        if (!s->k_cache || !s->v_cache)
            rc = km_fail(err, KM_ENOMEM, "out of memory for a KV cache of %d positions "
                         "(%zu MiB)", n_ctx, n * 4 >> 20);
    }
    if (rc != KM_OK) {
        eng__seq_free(s);
        return rc;
    }
    *out = s;
    return KM_OK;
}

void eng__seq_free(struct eng_seq *s)
{
    if (!s)
        return;
    km_free(s->kv_len);
    km_free(s->kv_off);
    km_free(s->k_cache);
    km_free(s->v_cache);
    km_free(s);
}
