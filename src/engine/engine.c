/* engine.c - public API: loading (optionally on a thread), info, tokenizer
 * helpers and direct evaluation (see engine.h). The scheduler is sched.c. */
#include "engine/engine_int.h"

#include "base/log.h"
#include "base/mem.h"
#include "engine/chat.h"
#include "engine/ops.h"
#include "engine/quant.h"
#include "engine/sched.h"
#include "engine/tok.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_CTX 4096
#define DEFAULT_SLOTS 4
#define DEFAULT_BATCH 128

void eng_load_params_default(struct eng_load_params *p)
{
    memset(p, 0, sizeof *p);
}

static void set_state(struct eng_model *m, int state, double progress)
{
    pthread_mutex_lock(&m->state_mu);
    m->state = state;
    m->progress = progress;
    pthread_mutex_unlock(&m->state_mu);
}

static char *file_stem(const char *path)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t n = strlen(base);
    if (n > 5 && strcmp(base + n - 5, ".gguf") == 0)
        n -= 5;
    return km_strndup(base, n);
}

/* Read every page of the mapping once (so the first request does not stall
 * on page faults) and report progress; a test-only delay stretches it. */
static void prefault(struct eng_model *m)
{
    const volatile unsigned char *p = gguf_base(m->gguf);
    uint64_t size = gguf_file_size(m->gguf);
    const char *delay = getenv("KANOA_ENGINE_TEST_LOAD_DELAY_MS");
    long delay_ms = delay ? strtol(delay, NULL, 10) : 0;
    unsigned sum = 0;
    uint64_t step = size / 20 + 1;
    for (uint64_t off = 0; off < size; off += 4096) {
        sum += p[off];
        if (off % step < 4096) {
            set_state(m, ENG_LOADING, 0.1 + 0.8 * (double)off / (double)size);
            if (delay_ms > 0)
                usleep((useconds_t)(delay_ms * 1000 / 20));
        }
    }
    (void)sum;
}

static int pick_sizes(struct eng_model *m, struct km_err *err)
{
    const struct eng_load_params *p = &m->params;
    m->n_ctx = p->n_ctx > 0 ? p->n_ctx : m->hp.n_ctx_train;
    if (p->n_ctx <= 0 && m->n_ctx > DEFAULT_CTX)
        m->n_ctx = DEFAULT_CTX;
    if (m->n_ctx < 8 || m->n_ctx > (1 << 20))
        return km_fail(err, KM_EINVAL, "context length %d is outside 8..1048576", m->n_ctx);
    m->n_threads = p->n_threads > 0 ? p->n_threads : eng_physical_cores();
    m->scratch.n_batch = p->n_batch > 0 ? p->n_batch : DEFAULT_BATCH;
    if (m->scratch.n_batch > m->n_ctx)
        m->scratch.n_batch = m->n_ctx;
    return KM_OK;
}

static int load_arch(struct eng_model *m, struct km_err *err)
{
    const char *arch = NULL;
    int rc = gguf_get_str(m->gguf, "general.architecture", &arch, NULL, err);
    if (rc != KM_OK)
        return km_err_prefix(err, "%s", m->path);
    if (strcmp(arch, "llama") != 0 && strcmp(arch, "gemma3") != 0 && !eng__is_bert_arch(arch))
        return km_fail(err, KM_EUNSUPPORTED, "%s: general.architecture is \"%s\"; "
                       "this engine runs llama, gemma3, bert and nomic-bert models", m->path, arch);
    snprintf(m->arch, sizeof m->arch, "%s", arch);
    return KM_OK;
}

static int do_load(struct eng_model *m, struct km_err *err)
{
    quant_kernels_init();
    eng_ops_select(false);
    int rc = gguf_open(m->path, &m->gguf, err);
    rc = rc ? rc : load_arch(m, err);
    rc = rc ? rc : tok_load(m->gguf, &m->vocab, err);
    if (rc == KM_OK && eng__is_bert_arch(m->arch))   /* bert.c */
        rc = eng__bert_load(m, err);
    else
        rc = rc ? rc : eng__load_weights(m, err);
    if (rc == KM_OK && strcmp(m->arch, "gemma3") == 0)   /* gemma3.c */
        rc = eng__gemma3_load(m, err);
    if (rc == KM_OK && tok_n_vocab(m->vocab) > m->hp.n_vocab)
        rc = km_fail(err, KM_EFORMAT, "%s: the tokenizer has %d tokens but "
                     "token_embd.weight only %d rows", m->path,
                     tok_n_vocab(m->vocab), m->hp.n_vocab);
    rc = rc ? rc : pick_sizes(m, err);
    rc = rc ? rc : eng_pool_new(m->n_threads, &m->pool, err);
    rc = rc ? rc : m->bert ? eng__bert_scratch_init(m, err) : eng__scratch_init(m, err);
    if (rc != KM_OK)
        return rc;
    prefault(m);
    rc = m->bert ? KM_OK : eng__sched_new(m, m->params.n_slots > 0 ? m->params.n_slots : DEFAULT_SLOTS,
                        &m->sched, err);
    if (rc != KM_OK)
        return rc;
    km_log(KM_LOG_INFO, "model %s ready: %s, %d layers, n_embd %d, vocab %d, "
           "context %d, %d threads", m->name, m->arch, m->hp.n_layer, m->hp.n_embd,
           m->hp.n_vocab, m->n_ctx, m->n_threads);
    return KM_OK;
}

static void *loader_main(void *arg)
{
    struct eng_model *m = arg;
    struct km_err err;
    km_err_clear(&err);
    int rc = do_load(m, &err);
    pthread_mutex_lock(&m->state_mu);
    m->load_err = err;
    m->state = rc == KM_OK ? ENG_READY : ENG_FAILED;
    m->progress = rc == KM_OK ? 1.0 : m->progress;
    pthread_mutex_unlock(&m->state_mu);
    if (rc != KM_OK)
        km_log(KM_LOG_ERROR, "loading %s failed: %s", m->path, km_err_text(&err));
    return NULL;
}

int eng_model_open(const struct eng_load_params *p, struct eng_model **out,
                   struct km_err *err)
{
    *out = NULL;
    if (!p->path)
        return km_fail(err, KM_EINVAL, "no model path given");
    struct eng_model *m = km_calloc(1, sizeof *m);
    if (!m)
        return km_fail(err, KM_ENOMEM, "out of memory for a model");
    m->params = *p;
    m->path = km_strdup(p->path);
    m->name = p->name ? km_strdup(p->name) : file_stem(p->path);
    pthread_mutex_init(&m->state_mu, NULL);
    pthread_mutex_init(&m->compute_mu, NULL);
    m->params.path = m->path;
    m->params.name = m->name;
    m->params.chat_template = NULL;
    if (p->chat_template)
        m->chat_override = km_strdup(p->chat_template);
    if (!m->path || !m->name || (p->chat_template && !m->chat_override)) {
        eng_model_close(m);
        return km_fail(err, KM_ENOMEM, "out of memory for a model");
    }
    set_state(m, ENG_LOADING, 0.0);
    if (p->background) {
        if (pthread_create(&m->loader, NULL, loader_main, m) != 0) {
            eng_model_close(m);
            return km_fail(err, KM_ENOMEM, "cannot start the loader thread");
        }
        m->loader_started = true;
        *out = m;
        return KM_OK;
    }
    loader_main(m);
    if (m->state != ENG_READY) {
        if (err)
            *err = m->load_err;
        int rc = m->load_err.code ? m->load_err.code : KM_EIO;
        eng_model_close(m);
        return rc;
    }
    *out = m;
    return KM_OK;
}

int eng_model_wait(struct eng_model *m, struct km_err *err)
{
    if (m->loader_started) {
        pthread_join(m->loader, NULL);
        m->loader_started = false;
    }
    if (m->state == ENG_READY)
        return KM_OK;
    if (err)
        *err = m->load_err;
    return m->load_err.code ? m->load_err.code : KM_ESTATE;
}

enum eng_state eng_model_state(struct eng_model *m, double *progress,
                               struct km_err *err)
{
    pthread_mutex_lock(&m->state_mu);
    enum eng_state st = (enum eng_state)m->state;
    if (progress)
        *progress = m->progress;
    if (err && st == ENG_FAILED)
        *err = m->load_err;
    pthread_mutex_unlock(&m->state_mu);
    return st;
}

void eng_model_close(struct eng_model *m)
{
    if (!m)
        return;
    if (m->loader_started)
        pthread_join(m->loader, NULL);
    eng__sched_free(m->sched);
    eng__scratch_free(&m->scratch);
    eng_pool_free(m->pool);
    eng__free_weights(m);
    eng__bert_free(m);
    eng__gemma3_free(m);
    tok_free(m->vocab);
    gguf_close(m->gguf);
    pthread_mutex_destroy(&m->state_mu);
    pthread_mutex_destroy(&m->compute_mu);
    km_free(m->chat_override);
    km_free(m->path);
    km_free(m->name);
    km_free(m);
}

static uint64_t matrix_bytes(const struct eng_weight *w)
{
    return (uint64_t)w->row_bytes * (uint64_t)w->n;
}

/* KV cache rows of one sequence over all layers (eng__kv_len). */
static uint64_t kv_rows(const struct eng_hparams *hp, int n_ctx, int n_batch)
{
    uint64_t rows = 0;
    for (int il = 0; il < hp->n_layer; il++)
        rows += (uint64_t)eng__kv_len(hp, il, n_ctx, n_batch);
    return rows;
}

void eng_model_info(const struct eng_model *m, struct eng_model_info *out)
{
    const struct eng_hparams *hp = &m->hp;
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "%s", m->name);
    snprintf(out->arch, sizeof out->arch, "%s", m->arch);
    out->task = m->bert ? ENG_TASK_EMBED : ENG_TASK_GENERATE;
    out->n_ctx = m->n_ctx;
    out->n_ctx_train = hp->n_ctx_train;
    out->n_vocab = hp->n_vocab;
    out->n_embd = hp->n_embd;
    out->n_layer = hp->n_layer;
    out->n_head = hp->n_head;
    out->n_head_kv = hp->n_head_kv;
    out->n_ff = hp->n_ff;
    out->n_threads = m->n_threads;
    out->n_slots = eng__sched_slots(m->sched);
    out->file_size = m->gguf ? gguf_file_size(m->gguf) : 0;
    uint64_t wb = matrix_bytes(&m->w.output);
    for (int il = 0; m->w.layers && il < hp->n_layer; il++) {
        const struct eng_layer *l = &m->w.layers[il];
        wb += matrix_bytes(&l->wq) + matrix_bytes(&l->wk) + matrix_bytes(&l->wv) +
              matrix_bytes(&l->wo) + matrix_bytes(&l->w_gate) +
              matrix_bytes(&l->w_up) + matrix_bytes(&l->w_down);
    }
    out->weight_bytes = wb;
    out->kv_bytes = (uint64_t)out->n_slots * 2 * kv_rows(hp, m->n_ctx, m->scratch.n_batch) *
                    hp->n_head_kv * hp->head_dim * 2;
}

uint64_t eng_kv_rows(const struct gguf_file *f, int n_layer, int n_ctx)
{
    const char *arch = "";
    struct eng_hparams hp = {.n_layer = n_layer};
    gguf_get_str(f, "general.architecture", &arch, NULL, NULL);
    if (strcmp(arch, "gemma3") == 0 && eng__gemma3_swa(f, &hp, NULL) != KM_OK)
        hp.n_swa = 0;
    return kv_rows(&hp, n_ctx, DEFAULT_BATCH);
}

void eng_model_stats(struct eng_model *m, struct eng_stats *out)
{
    memset(out, 0, sizeof *out);
    if (m->sched)
        eng__sched_stats(m->sched, out);
}

static int need_ready(struct eng_model *m, struct km_err *err)
{
    if (eng_model_state(m, NULL, NULL) != ENG_READY)
        return km_fail(err, KM_ESTATE, "model %s is not loaded", m->name);
    return KM_OK;
}

int eng_tokenize(struct eng_model *m, const char *text, size_t len,
                 bool add_special, bool parse_special, int32_t **ids,
                 size_t *n_ids, struct km_err *err)
{
    int rc = need_ready(m, err);
    return rc ? rc : tok_encode(m->vocab, text, len, add_special, parse_special, ids, n_ids, err);
}

int eng_detokenize(struct eng_model *m, const int32_t *ids, size_t n,
                   char **text, size_t *len, struct km_err *err)
{
    int rc = need_ready(m, err);
    if (rc != KM_OK)
        return rc;
    struct km_buf b;
    km_buf_init(&b, TOK_MAX_TEXT);
    rc = tok_decode(m->vocab, ids, n, false, true, &b, err);
    if (rc == KM_OK) /* a lone byte token: U+FFFD, as the chat text shows it */
        rc = tok_utf8_lossy(&b, err);
    if (rc == KM_OK)
        rc = km_buf_reserve(&b, 1);
    if (rc != KM_OK) {
        km_buf_free(&b);
        return rc;
    }
    *text = km_buf_take(&b, len);
    return KM_OK;
}

int eng_token_bytes(struct eng_model *m, int32_t id, struct km_buf *out,
                    struct km_err *err)
{
    return tok_piece(m->vocab, id, true, out, err);
}

bool eng_token_is_eog(struct eng_model *m, int32_t id)
{
    return tok_is_eog(m->vocab, id);
}

int eng_chat_prompt(struct eng_model *m, const char *const *roles,
                    const char *const *contents, size_t n,
                    bool add_generation_prompt, char **text,
                    struct km_err *err)
{
    int rc = need_ready(m, err);
    if (rc != KM_OK)
        return rc;
    enum chat_family fam;
    const char *tmpl = tok_chat_template(m->vocab);
    rc = chat_select(m->chat_override, tmpl, &fam, err);
    if (rc == KM_ENOTFOUND && !m->chat_override && !tmpl)
        rc = chat_family_from_name(strcmp(m->arch, "gemma3") == 0 ? "gemma" : "llama3",
                                   &fam, err);   /* the arch's default */
    if (rc != KM_OK)
        return rc;
    struct chat_msg *msgs = km_calloc(n ? n : 1, sizeof *msgs);
    if (!msgs)
        return km_fail(err, KM_ENOMEM, "out of memory for %zu messages", n);
    for (size_t i = 0; i < n; i++)
        msgs[i] = (struct chat_msg){roles[i], contents[i]};
    struct chat_opts o = {.add_generation_prompt = add_generation_prompt, .with_bos = true};
    struct km_buf b;
    km_buf_init(&b, TOK_MAX_TEXT);
    rc = chat_render(fam, msgs, n, &o, &b, err);
    km_free(msgs);
    if (rc == KM_OK)
        rc = km_buf_reserve(&b, 1);
    if (rc != KM_OK) {
        km_buf_free(&b);
        return rc;
    }
    *text = km_buf_take(&b, NULL);
    return KM_OK;
}

int eng_seq_new(struct eng_model *m, int n_ctx, struct eng_seq **out,
                struct km_err *err)
{
    int rc = need_ready(m, err);
    if (rc == KM_OK && m->bert)
        rc = km_fail(err, KM_EUNSUPPORTED, "model %s (%s) is an encoder; use eng_embed", m->name, m->arch);
    return rc ? rc : eng__seq_new(m, n_ctx, out, err);
}

void eng_seq_free(struct eng_seq *s)
{
    eng__seq_free(s);
}

void eng_seq_clear(struct eng_seq *s)
{
    s->n_past = 0;
}

int eng_seq_pos(const struct eng_seq *s)
{
    return s->n_past;
}

int eng_eval(struct eng_seq *s, const int32_t *tokens, size_t n,
             float *logits, struct km_err *err)
{
    struct eng_model *m = s->model;
    if (n == 0)
        return km_fail(err, KM_EINVAL, "nothing to evaluate (0 tokens)");
    if ((size_t)s->n_past + n > (size_t)s->n_ctx)
        return km_fail(err, KM_ERANGE, "%d positions + %zu tokens exceed the "
                       "context of %d", s->n_past, n, s->n_ctx);
    pthread_mutex_lock(&m->compute_mu);
    int rc = KM_OK;
    for (size_t i = 0; i < n && rc == KM_OK;) {
        size_t chunk = n - i < (size_t)m->scratch.n_batch ? n - i : (size_t)m->scratch.n_batch;
        bool last = i + chunk == n;
        rc = eng__llama_forward(m, s, tokens + i, (int)chunk, last && logits, err);
        i += chunk;
    }
    if (rc == KM_OK && logits)
        memcpy(logits, m->scratch.logits, (size_t)m->hp.n_vocab * sizeof *logits);
    pthread_mutex_unlock(&m->compute_mu);
    return rc;
}
