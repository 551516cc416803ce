/* synth.c - random-weight GGUF models: presets, llama.cpp's per-tensor type
 * policy, the tensor plan and the threaded row filler (see synth.h). */
#include "engine/synth.h"

#include "base/mem.h"
#include "engine/quant.h"
#include "engine/synth_int.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

/* ---- file types ------------------------------------------------------ */

struct ftype_info {
    const char *name;
    int number;     /* LLAMA_FTYPE (general.file_type) */
    uint32_t base;  /* default type of 2-D weights */
};

static const struct ftype_info ftypes[] = {
    {"F32", 0, GGML_TYPE_F32},    {"F16", 1, GGML_TYPE_F16},
    {"BF16", 32, GGML_TYPE_BF16}, {"Q8_0", 7, GGML_TYPE_Q8_0},
    {"Q4_0", 2, GGML_TYPE_Q4_0},  {"Q4_K_M", 15, GGML_TYPE_Q4_K},
    {"Q5_K_M", 17, GGML_TYPE_Q5_K}, {"Q6_K", 18, GGML_TYPE_Q6_K},
};

static const struct ftype_info *find_ftype(const char *name)
{
    for (size_t i = 0; i < sizeof ftypes / sizeof ftypes[0]; i++) {
        if (strcmp(ftypes[i].name, name) == 0)
            return &ftypes[i];
    }
    return NULL;
}

int synth_ftype_number(const char *ftype)
{
    const struct ftype_info *f = find_ftype(ftype);
    return f ? f->number : -1;
}

/* ---- presets ----------------------------------------------------------- */

struct preset {
    const char *arch, *shape;
    int64_t embd, layer, head, head_kv, ff, ctx, vocab, head_dim;
    bool tied, rope3;
    float rope_factor, rope_base, lin_scale;
    int64_t swa;
    uint32_t pooling;
};

/* Shapes from facts §3 (tiny: small but with 256-divisible rows so every
 * k-quant is exercised). */
static const struct preset presets[] = {
    {"llama", "tiny", 256, 2, 4, 2, 512, 2048, 512, 0, false, true, 32, 500000, 0, 0, 0},
    {"llama", "llama-3.2-1b", 2048, 16, 32, 8, 8192, 131072, 128256, 0, true, true, 32, 500000, 0, 0, 0},
    {"llama", "llama-3.1-8b", 4096, 32, 32, 8, 14336, 131072, 128256, 0, false, true, 8, 500000, 0, 0, 0},
    {"gemma3", "tiny", 256, 6, 2, 1, 512, 2048, 512, 128, true, false, 0, 1e6f, 0, 64, 0},
    {"gemma3", "gemma-3-1b", 1152, 26, 4, 1, 6912, 32768, 262144, 256, true, false, 0, 1e6f, 0, 512, 0},
    {"gemma3", "gemma-3-4b", 2560, 34, 8, 4, 10240, 131072, 262144, 256, true, false, 0, 1e6f, 8, 1024, 0},
    {"gemma3", "gemma-3-12b", 3840, 48, 16, 8, 15360, 131072, 262144, 256, true, false, 0, 1e6f, 8, 1024, 0},
    {"bert", "tiny", 128, 2, 4, 4, 256, 128, 512, 0, true, false, 0, 0, 0, 0, 2},
    {"bert", "bge-small", 384, 12, 12, 12, 1536, 512, 30522, 0, true, false, 0, 0, 0, 0, 2},
    {"bert", "minilm-l6", 384, 6, 12, 12, 1536, 512, 30522, 0, true, false, 0, 0, 0, 0, 1},
    {"nomic-bert", "tiny", 256, 2, 4, 4, 512, 2048, 512, 0, true, false, 0, 1000, 0, 0, 1},
    {"nomic-bert", "nomic-embed", 768, 12, 12, 12, 3072, 2048, 30522, 0, true, false, 0, 1000, 0, 0, 1},
};

int synth_preset(const char *arch, const char *shape, struct synth_params *p,
                 struct km_err *err)
{
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++) {
        const struct preset *s = &presets[i];
        if (strcmp(s->arch, arch) || strcmp(s->shape, shape))
            continue;
        memset(p, 0, sizeof *p);
        snprintf(p->arch, sizeof p->arch, "%s", arch);
        snprintf(p->name, sizeof p->name, "synth-%s", shape);
        snprintf(p->ftype, sizeof p->ftype, "F16");
        p->n_embd = s->embd;
        p->n_layer = s->layer;
        p->n_head = s->head;
        p->n_head_kv = s->head_kv;
        p->n_ff = s->ff;
        p->n_ctx = s->ctx;
        p->n_vocab = s->vocab;
        p->head_dim = s->head_dim;
        p->tied = s->tied;
        p->rope_llama3 = s->rope3;
        p->rope_factor = s->rope_factor;
        p->rope_base = s->rope_base;
        p->rope_scale_linear = s->lin_scale;
        p->sliding_window = s->swa;
        p->pooling = s->pooling;
        p->seed = 1;
        p->n_threads = 1;
        return KM_OK;
    }
    return km_fail(err, KM_EINVAL, "unknown shape '%s' for architecture '%s'", shape, arch);
}

int synth_validate(const struct synth_params *p, struct km_err *err)
{
    static const char *const archs[] = {"llama", "gemma3", "bert", "nomic-bert"};
    bool arch_ok = false;
    for (size_t i = 0; i < 4; i++)
        arch_ok |= strcmp(p->arch, archs[i]) == 0;
    if (!arch_ok)
        return km_fail(err, KM_EINVAL, "unknown architecture '%s' (llama, gemma3, bert, nomic-bert)", p->arch);
    if (!find_ftype(p->ftype))
        return km_fail(err, KM_EINVAL, "unknown type '%s' (F32 F16 BF16 Q8_0 Q4_0 Q4_K_M Q5_K_M Q6_K)", p->ftype);
    if (p->n_embd <= 0 || p->n_layer <= 0 || p->n_head <= 0 || p->n_head_kv <= 0 ||
        p->n_ff <= 0 || p->n_ctx <= 0 || p->n_vocab <= 0)
        return km_fail(err, KM_EINVAL, "every dimension must be positive");
    int64_t hd = p->head_dim ? p->head_dim : p->n_embd / p->n_head;
    if (!p->head_dim && p->n_embd % p->n_head)
        return km_fail(err, KM_EINVAL, "dim %lld is not a multiple of heads %lld",
                       (long long)p->n_embd, (long long)p->n_head);
    if (p->n_head % p->n_head_kv)
        return km_fail(err, KM_EINVAL, "heads %lld is not a multiple of kv-heads %lld",
                       (long long)p->n_head, (long long)p->n_head_kv);
    if (hd % 2 || p->n_embd % 32 || p->n_ff % 32 || (hd * p->n_head) % 32)
        return km_fail(err, KM_EINVAL, "dim, ffn and heads x head-dim must be multiples of 32 (head dim even)");
    if (p->n_embd > (1 << 20) || p->n_ff > (1 << 20) || p->n_layer > 1024 || p->n_vocab > (1 << 22))
        return km_fail(err, KM_EINVAL, "shape too large");
    return KM_OK;
}

/* ---- llama.cpp's type policy (facts §2.4) ----------------------------- */

static bool use_more_bits(int64_t i, int64_t n)
{
    return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static uint32_t fallback(uint32_t t, int64_t ne0)
{
    if (quant_block_size(t) == QK_K && ne0 % QK_K) {
        if (t == GGML_TYPE_Q4_K)
            t = GGML_TYPE_Q5_0;
        else if (t == GGML_TYPE_Q5_K)
            t = GGML_TYPE_Q5_1;
        else
            t = GGML_TYPE_Q8_0;
    }
    if (ne0 % quant_block_size(t))
        t = GGML_TYPE_F16;
    return t;
}

uint32_t synth_tensor_type(const char *arch, const char *ftype,
                           const char *name, int64_t ne0, uint32_t n_dims,
                           int64_t layer, int64_t n_layer, bool has_output)
{
    const struct ftype_info *f = find_ftype(ftype);
    if (!f || n_dims < 2 || !ends_with(name, "weight"))
        return GGML_TYPE_F32;
    bool is_bert = strcmp(arch, "bert") == 0 || strcmp(arch, "nomic-bert") == 0;
    if (is_bert && (strcmp(name, "position_embd.weight") == 0 || strcmp(name, "token_types.weight") == 0))
        return f->base == GGML_TYPE_F32 ? GGML_TYPE_F32 : GGML_TYPE_F16;
    uint32_t t = f->base;
    if (t == GGML_TYPE_F32 || t == GGML_TYPE_F16 || t == GGML_TYPE_BF16)
        return t;
    bool km = strcmp(ftype, "Q4_K_M") == 0 || strcmp(ftype, "Q5_K_M") == 0;
    bool output_like = strcmp(name, "output.weight") == 0 ||
                       (!has_output && strcmp(name, "token_embd.weight") == 0);
    if (output_like) {
        if (ne0 % QK_K)
            return GGML_TYPE_Q8_0;
        return t == GGML_TYPE_Q8_0 ? t : GGML_TYPE_Q6_K;
    }
    if (km && (ends_with(name, ".attn_v.weight") || ends_with(name, ".ffn_down.weight")) &&
        use_more_bits(layer, n_layer))
        t = GGML_TYPE_Q6_K;
    else if (ends_with(name, ".attn_qkv.weight") && km)
        t = strcmp(ftype, "Q4_K_M") == 0 ? GGML_TYPE_Q5_K : GGML_TYPE_Q6_K;
    return fallback(t, ne0);
}

void synth_llama3_rope_factors(float base, float factor, float low_freq_factor,
                               float high_freq_factor, float orig_ctx,
                               int64_t dim, float *out)
{
    double low_wl = orig_ctx / low_freq_factor, high_wl = orig_ctx / high_freq_factor;
    for (int64_t k = 0; k < dim / 2; k++) {
        double freq = pow(base, -2.0 * (double)k / (double)dim);
        double wl = 2 * M_PI / freq;
        if (wl < high_wl) {
            out[k] = 1.0f;
        } else if (wl > low_wl) {
            out[k] = factor;
        } else {
            double smooth = (orig_ctx / wl - low_freq_factor) / (high_freq_factor - low_freq_factor);
            out[k] = (float)(1.0 / ((1 - smooth) / factor + smooth));
        }
    }
}

/* ---- tensor plan (names, shapes and order as llama.cpp's files) --------- */

struct plan {
    struct synth_tensor *t;
    int64_t n, cap;
    const struct synth_params *p;
    int64_t n_vocab;
    bool has_output;
    int rc;
    struct km_err *err;
};

/* Append one tensor; a 2-D tensor is [ne0 = row length, ne1 = rows]. */
static void add(struct plan *pl, enum synth_kind kind, int64_t layer, const char *name,
                int64_t ne0, int64_t ne1)
{
    if (pl->rc)
        return;
    if (pl->n == pl->cap) {
        int64_t nc = pl->cap ? pl->cap * 2 : 64;
        struct synth_tensor *nt = km_realloc(pl->t, (size_t)nc * sizeof *nt);
        if (!nt) {
            pl->rc = km_fail(pl->err, KM_ENOMEM, "out of memory planning tensors");
            return;
        }
        pl->t = nt;
        pl->cap = nc;
    }
    struct synth_tensor *t = &pl->t[pl->n++];
    memset(t, 0, sizeof *t);
    if (layer >= 0)
        snprintf(t->name, sizeof t->name, "blk.%lld.%s", (long long)layer, name);
    else
        snprintf(t->name, sizeof t->name, "%s", name);
    t->n_dims = ne1 > 0 ? 2 : 1;
    t->ne[0] = (uint64_t)ne0;
    t->ne[1] = ne1 > 0 ? (uint64_t)ne1 : 1;
    t->kind = kind;
    t->scale = kind == SK_WEIGHT ? 1.0f / sqrtf((float)ne0) : (kind == SK_EMBD ? 0.05f : 0.0f);
    t->type = synth_tensor_type(pl->p->arch, pl->p->ftype, t->name, ne0, t->n_dims, layer,
                                pl->p->n_layer, pl->has_output);
}

/* A gated FFN (Llama, Gemma 3) in sorted key order: down, gate, up. */
static void add_gated_ffn(struct plan *pl, int64_t l, int64_t E, int64_t F)
{
    add(pl, SK_WEIGHT, l, "ffn_down.weight", F, E);
    add(pl, SK_WEIGHT, l, "ffn_gate.weight", E, F);
    add(pl, SK_WEIGHT, l, "ffn_up.weight", E, F);
}

/* BERT-style pairs, bias before weight as the sorted keys have them: a
 * LayerNorm of n values, a linear layer n_in -> n_out. */
static void add_layer_norm(struct plan *pl, int64_t l, const char *base, int64_t n)
{
    char name[64];
    snprintf(name, sizeof name, "%s.bias", base);
    add(pl, SK_BIAS, l, name, n, 0);
    snprintf(name, sizeof name, "%s.weight", base);
    add(pl, SK_NORM, l, name, n, 0);
}

static void add_linear(struct plan *pl, int64_t l, const char *base, int64_t n_in,
                       int64_t n_out)
{
    char name[64];
    snprintf(name, sizeof name, "%s.bias", base);
    add(pl, SK_BIAS, l, name, n_out, 0);
    snprintf(name, sizeof name, "%s.weight", base);
    add(pl, SK_WEIGHT, l, name, n_in, n_out);
}

static int64_t head_dim(const struct synth_params *p)
{
    return p->head_dim ? p->head_dim : p->n_embd / p->n_head;
}

/* Llama: HF safetensors key order (sorted) mapped to GGUF names. */
static void plan_llama(struct plan *pl)
{
    const struct synth_params *p = pl->p;
    int64_t E = p->n_embd, F = p->n_ff, D = head_dim(p);
    if (p->rope_llama3)
        add(pl, SK_ROPE, -1, "rope_freqs.weight", D / 2, 0);
    add(pl, SK_EMBD, -1, "token_embd.weight", E, pl->n_vocab);
    for (int64_t l = 0; l < p->n_layer; l++) {
        add(pl, SK_NORM, l, "attn_norm.weight", E, 0);
        add_gated_ffn(pl, l, E, F);
        add(pl, SK_NORM, l, "ffn_norm.weight", E, 0);
        add(pl, SK_WEIGHT, l, "attn_k.weight", E, p->n_head_kv * D);
        add(pl, SK_WEIGHT, l, "attn_output.weight", p->n_head * D, E);
        add(pl, SK_WEIGHT, l, "attn_q.weight", E, p->n_head * D);
        add(pl, SK_WEIGHT, l, "attn_v.weight", E, p->n_head_kv * D);
    }
    add(pl, SK_NORM, -1, "output_norm.weight", E, 0);
    if (pl->has_output)
        add(pl, SK_WEIGHT, -1, "output.weight", E, pl->n_vocab);
}

static void plan_gemma3(struct plan *pl)
{
    const struct synth_params *p = pl->p;
    int64_t E = p->n_embd, F = p->n_ff, D = head_dim(p);
    add(pl, SK_EMBD, -1, "token_embd.weight", E, pl->n_vocab);
    for (int64_t l = 0; l < p->n_layer; l++) {
        add(pl, SK_NORM, l, "attn_norm.weight", E, 0);
        add_gated_ffn(pl, l, E, F);
        add(pl, SK_NORM, l, "post_attention_norm.weight", E, 0);
        add(pl, SK_NORM, l, "post_ffw_norm.weight", E, 0);
        add(pl, SK_NORM, l, "ffn_norm.weight", E, 0);
        add(pl, SK_NORM, l, "attn_k_norm.weight", D, 0);
        add(pl, SK_WEIGHT, l, "attn_k.weight", E, p->n_head_kv * D);
        add(pl, SK_WEIGHT, l, "attn_output.weight", p->n_head * D, E);
        add(pl, SK_NORM, l, "attn_q_norm.weight", D, 0);
        add(pl, SK_WEIGHT, l, "attn_q.weight", E, p->n_head * D);
        add(pl, SK_WEIGHT, l, "attn_v.weight", E, p->n_head_kv * D);
    }
    add(pl, SK_NORM, -1, "output_norm.weight", E, 0);
}

static void plan_bert(struct plan *pl)
{
    const struct synth_params *p = pl->p;
    int64_t E = p->n_embd, F = p->n_ff;
    add_layer_norm(pl, -1, "token_embd_norm", E);
    add(pl, SK_EMBD, -1, "position_embd.weight", E, p->n_ctx);
    add(pl, SK_EMBD, -1, "token_types.weight", E, 2);
    add(pl, SK_EMBD, -1, "token_embd.weight", E, pl->n_vocab);
    for (int64_t l = 0; l < p->n_layer; l++) {
        add_layer_norm(pl, l, "attn_output_norm", E);
        add_linear(pl, l, "attn_output", E, E);
        add_linear(pl, l, "attn_k", E, E);
        add_linear(pl, l, "attn_q", E, E);
        add_linear(pl, l, "attn_v", E, E);
        add_linear(pl, l, "ffn_up", E, F);
        add_layer_norm(pl, l, "layer_output_norm", E);
        add_linear(pl, l, "ffn_down", F, E);
    }
}

static void plan_nomic(struct plan *pl)
{
    const struct synth_params *p = pl->p;
    int64_t E = p->n_embd, F = p->n_ff;
    add_layer_norm(pl, -1, "token_embd_norm", E);
    add(pl, SK_EMBD, -1, "token_types.weight", E, 2);
    add(pl, SK_EMBD, -1, "token_embd.weight", E, pl->n_vocab);
    for (int64_t l = 0; l < p->n_layer; l++) {
        add(pl, SK_WEIGHT, l, "attn_qkv.weight", E, 3 * E);
        add(pl, SK_WEIGHT, l, "attn_output.weight", E, E);
        add(pl, SK_WEIGHT, l, "ffn_up.weight", E, F);
        add(pl, SK_WEIGHT, l, "ffn_gate.weight", E, F);
        add(pl, SK_WEIGHT, l, "ffn_down.weight", F, E);
        add_layer_norm(pl, l, "attn_output_norm", E);
        add_layer_norm(pl, l, "layer_output_norm", E);
    }
}

static int make_plan(struct plan *pl)
{
    const char *a = pl->p->arch;
    pl->has_output = strcmp(a, "llama") == 0 && !pl->p->tied;
    if (strcmp(a, "llama") == 0)
        plan_llama(pl);
    else if (strcmp(a, "gemma3") == 0)
        plan_gemma3(pl);
    else if (strcmp(a, "bert") == 0)
        plan_bert(pl);
    else
        plan_nomic(pl);
    return pl->rc;
}

/* ---- random rows, quantized on n_threads threads ----------------------- */

struct fill_ctx {
    const struct synth_params *p;
    const struct synth_tensor *t;  /* the plan */
    float *rope;                   /* llama3 factors, head_dim/2 */
    synth_progress_fn progress;
    void *progress_ctx;
    uint64_t done, total;
};

struct fill_job {
    const struct fill_ctx *c;
    int64_t index;
    uint64_t row0, row1;
    uint8_t *dst;                  /* bytes of row0 */
    int rc;
};

static uint64_t splitmix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* One row of values: a fresh stream per (seed, tensor, row), so the file
 * does not depend on the thread count or chunking. */
static void gen_row(const struct fill_ctx *c, int64_t index, uint64_t row, float *x, int64_t n)
{
    const struct synth_tensor *t = &c->t[index];
    if (t->kind == SK_ROPE) {
        memcpy(x, c->rope, (size_t)n * sizeof *x);
        return;
    }
    uint64_t s = splitmix(c->p->seed ^ splitmix(((uint64_t)index << 40) ^ row)) | 1;
    float mul = t->kind == SK_WEIGHT ? t->scale : t->kind == SK_EMBD ? t->scale
              : t->kind == SK_NORM ? 0.1f : 0.02f;
    float add = t->kind == SK_NORM ? 1.0f : 0.0f;
    for (int64_t i = 0; i < n; i++) {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        uint64_t r = s * 0x2545f4914f6cdd1dull;
        x[i] = add + mul * ((float)(r >> 40) * 0x1p-23f - 1.0f);
    }
}

static void *fill_worker(void *arg)
{
    struct fill_job *j = arg;
    const struct synth_tensor *t = &j->c->t[j->index];
    int64_t n = (int64_t)t->ne[0];
    size_t rs = quant_row_size(t->type, n);
    float *x = km_mallocarray((size_t)n, sizeof *x);
    if (!x) {
        j->rc = KM_ENOMEM;
        return NULL;
    }
    for (uint64_t r = j->row0; r < j->row1; r++) {
        gen_row(j->c, j->index, r, x, n);
        quant_quantize_row(t->type, x, j->dst + (r - j->row0) * rs, n);
    }
    km_free(x);
    return NULL;
}

static int fill_rows(void *ctx, int64_t index, uint64_t row0, uint64_t n_rows,
                     void *dst, struct km_err *err)
{
    struct fill_ctx *c = ctx;
    enum { MAX_THREADS = 64 };
    struct fill_job jobs[MAX_THREADS];
    pthread_t th[MAX_THREADS];
    bool started[MAX_THREADS] = {false};
    const struct synth_tensor *t = &c->t[index];
    size_t rs = quant_row_size(t->type, (int64_t)t->ne[0]);
    int nt = c->p->n_threads < 1 ? 1 : (c->p->n_threads > MAX_THREADS ? MAX_THREADS : c->p->n_threads);
    if (n_rows < (uint64_t)nt * 4)
        nt = 1;
    for (int i = 0; i < nt; i++) {
        jobs[i] = (struct fill_job){.c = c, .index = index, .rc = KM_OK};
        jobs[i].row0 = row0 + n_rows * (uint64_t)i / (uint64_t)nt;
        jobs[i].row1 = row0 + n_rows * (uint64_t)(i + 1) / (uint64_t)nt;
        jobs[i].dst = (uint8_t *)dst + (jobs[i].row0 - row0) * rs;
        if (i > 0)
            started[i] = pthread_create(&th[i], NULL, fill_worker, &jobs[i]) == 0;
    }
    fill_worker(&jobs[0]);
    for (int i = 1; i < nt; i++) {
        if (started[i])
            pthread_join(th[i], NULL);
        else
            fill_worker(&jobs[i]);
    }
    for (int i = 0; i < nt; i++) {
        if (jobs[i].rc)
            return km_fail(err, jobs[i].rc, "out of memory generating tensor %s", t->name);
    }
    c->done += n_rows * rs;
    if (c->progress)
        c->progress(c->progress_ctx, c->done, c->total);
    return KM_OK;
}

/* ---- writing ------------------------------------------------------------ */

static int add_tensors(struct gguf_writer *w, struct plan *pl, struct fill_ctx *fc,
                       struct synth_stats *st, struct km_err *err)
{
    for (int64_t i = 0; i < pl->n; i++) {
        const struct synth_tensor *t = &pl->t[i];
        int rc = gguf_writer_add_tensor_rows(w, t->name, t->type, t->n_dims, t->ne, fill_rows,
                                             fc, err);
        if (rc)
            return rc;
        fc->total += gguf_writer_tensor_nbytes(w, i);
        st->n_params += t->ne[0] * t->ne[1];
    }
    st->n_tensors = pl->n;
    return KM_OK;
}

int synth_write(const struct synth_params *p, const char *path,
                synth_progress_fn progress, void *progress_ctx,
                struct synth_stats *stats, struct km_err *err)
{
    struct synth_stats st = {0};
    struct plan pl = {.p = p, .err = err};
    struct fill_ctx fc = {.p = p, .progress = progress, .progress_ctx = progress_ctx};
    struct gguf_writer *w = NULL;
    int rc = synth_validate(p, err);
    if (!rc)
        rc = gguf_writer_new(&w, err);
    if (!rc)
        rc = synth__write_meta(w, p, &pl.n_vocab, err);
    if (!rc)
        rc = make_plan(&pl);
    if (rc)
        goto out;
    fc.t = pl.t;
    fc.rope = km_calloc((size_t)head_dim(p) / 2 + 1, sizeof(float));
    if (!fc.rope) {
        rc = km_fail(err, KM_ENOMEM, "out of memory");
        goto out;
    }
    if (p->rope_llama3 && p->rope_factor > 0 && p->rope_base > 0)
        synth_llama3_rope_factors(p->rope_base, p->rope_factor, 1.0f, 4.0f, 8192.0f,
                                  head_dim(p), fc.rope);
    rc = add_tensors(w, &pl, &fc, &st, err);
    if (!rc)
        rc = gguf_writer_write_file(w, path, err);
    if (!rc) {
        st.n_vocab = pl.n_vocab;
        st.file_bytes = 0;
        FILE *fp = fopen(path, "rb");
        if (fp && fseeko(fp, 0, SEEK_END) == 0)
            st.file_bytes = (uint64_t)ftello(fp);
        if (fp)
            fclose(fp);
    }
out:
    if (stats)
        *stats = st;
    km_free(fc.rope);
    km_free(pl.t);
    gguf_writer_free(w);
    return rc;
}
