/* synth_meta.c - metadata of synthetic models: general.*, the
 * architecture's hyperparameters (keys and order as llama.cpp's converter
 * writes them, facts §3) and the tokenizer, copied from another GGUF or
 * synthesized as a small byte-level vocabulary of the family's kind. */
#include "base/mem.h"
#include "engine/synth_int.h"

#include <stdio.h>
#include <string.h>

static const char llama3_template[] =
    "{{- bos_token }}{%- for message in messages %}{{- '<|start_header_id|>' + "
    "message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + "
    "'<|eot_id|>' }}{%- endfor %}{%- if add_generation_prompt %}{{- "
    "'<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}";

static const char gemma_template[] =
    "{{ bos_token }}{%- for message in messages -%}{%- if message['role'] == "
    "'assistant' -%}{%- set role = 'model' -%}{%- else -%}{%- set role = "
    "message['role'] -%}{%- endif -%}{{ '<start_of_turn>' + role + '\\n' + "
    "message['content'] | trim + '<end_of_turn>\\n' }}{%- endfor -%}{%- if "
    "add_generation_prompt -%}{{ '<start_of_turn>model\\n' }}{%- endif -%}";

/* A synthetic vocabulary under construction. */
struct vocab {
    char **tok;
    int32_t *type;
    float *score;
    int64_t n, cap;
};

static int vpush(struct vocab *v, const char *s, int32_t type, float score)
{
    if (v->n == v->cap)
        return KM_ERANGE;
    v->tok[v->n] = km_strdup(s);
    if (!v->tok[v->n])
        return KM_ENOMEM;
    v->type[v->n] = type;
    v->score[v->n] = score;
    v->n++;
    return KM_OK;
}

static void vfree(struct vocab *v)
{
    for (int64_t i = 0; i < v->n; i++)
        km_free(v->tok[i]);
    km_free(v->tok);
    km_free(v->type);
    km_free(v->score);
}

/* UTF-8 of code point cp into out (cp < 0x800 here). */
static void utf8(unsigned cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        out[1] = 0;
    } else {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        out[2] = 0;
    }
}

/* GPT-2 byte-level alphabet in the order of GPT-2's first 256 ids. */
static int vocab_bytes_gpt2(struct vocab *v)
{
    int rc = KM_OK;
    char s[8];
    unsigned extra = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (unsigned b = 0; b < 256; b++) {
            bool printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || b >= 0xae;
            if (printable != (pass == 0))
                continue;
            utf8(printable ? b : 0x100 + extra++, s);
            rc = rc ? rc : vpush(v, s, 1, 0);
        }
    }
    return rc;
}

static int vocab_llama(struct vocab *v, int64_t n)
{
    static const char *const sp[] = {"<|begin_of_text|>", "<|end_of_text|>",
        "<|reserved_special_token_0|>", "<|reserved_special_token_1|>",
        "<|finetune_right_pad_id|>", "<|reserved_special_token_2|>", "<|start_header_id|>",
        "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>", "<|python_tag|>"};
    int rc = vocab_bytes_gpt2(v);
    char s[64];
    for (int64_t i = 256; i < n - 256 && !rc; i++) {
        snprintf(s, sizeof s, "<|filler_%lld|>", (long long)i);
        rc = vpush(v, s, 5, 0);
    }
    for (int i = 0; i < 256 && !rc; i++) {
        if (i < 11)
            snprintf(s, sizeof s, "%s", sp[i]);
        else
            snprintf(s, sizeof s, "<|reserved_special_token_%d|>", i - 8);
        rc = vpush(v, s, 3, 0);
    }
    return rc;
}

static int vocab_gemma(struct vocab *v, int64_t n)
{
    static const char *const sp[] = {"<pad>", "<eos>", "<bos>", "<unk>", "<mask>"};
    int rc = KM_OK;
    char s[32];
    for (int i = 0; i < 5; i++)
        rc = rc ? rc : vpush(v, sp[i], i == 3 ? 2 : 3, 0);
    for (int i = 5; i < 105; i++) {
        snprintf(s, sizeof s, "<unused%d>", i - 5);
        rc = rc ? rc : vpush(v, s, 5, 0);
    }
    rc = rc ? rc : vpush(v, "<start_of_turn>", 3, 0);
    rc = rc ? rc : vpush(v, "<end_of_turn>", 3, 0);
    for (int b = 0; b < 256; b++) {
        snprintf(s, sizeof s, "<0x%02X>", b);
        rc = rc ? rc : vpush(v, s, 6, 0);
    }
    rc = rc ? rc : vpush(v, "\xe2\x96\x81", 1, -1);
    for (int c = 0x21; c < 0x7f; c++) {
        snprintf(s, sizeof s, "%c", c);
        rc = rc ? rc : vpush(v, s, 1, -2.0f - (float)c);
    }
    for (int64_t i = v->n; i < n && !rc; i++) {
        snprintf(s, sizeof s, "<unused%lld>", (long long)(i - 264));
        rc = vpush(v, s, 5, 0);
    }
    return rc;
}

static int vocab_bert(struct vocab *v, int64_t n)
{
    static const char *const sp[] = {"[UNK]", "[CLS]", "[SEP]", "[MASK]"};
    int rc = vpush(v, "[PAD]", 3, 0);
    char s[32];
    for (int i = 1; i < 100; i++) {
        snprintf(s, sizeof s, "[unused%d]", i - 1);
        rc = rc ? rc : vpush(v, s, 5, 0);
    }
    for (int i = 0; i < 4; i++)
        rc = rc ? rc : vpush(v, sp[i], 3, 0);
    for (int c = 0x21; c < 0x7f; c++) {
        if (c >= 'A' && c <= 'Z')
            continue;
        snprintf(s, sizeof s, "\xe2\x96\x81%c", c);
        rc = rc ? rc : vpush(v, s, 1, 0);
        snprintf(s, sizeof s, "%c", c);
        rc = rc ? rc : vpush(v, s, 1, 0);
    }
    for (int64_t i = v->n; i < n && !rc; i++) {
        snprintf(s, sizeof s, "[unused%lld]", (long long)(i - 5));
        rc = vpush(v, s, 5, 0);
    }
    return rc;
}

static int add_synth_tokenizer(struct gguf_writer *w, const struct synth_params *p,
                               struct vocab *v, struct km_err *err)
{
    bool llama = strcmp(p->arch, "llama") == 0, gemma = strcmp(p->arch, "gemma3") == 0;
    int rc = KM_OK;
    int64_t n = p->n_vocab;
    if (llama)
        rc = rc ? rc : gguf_writer_add_str(w, "tokenizer.ggml.model", "gpt2", err);
    else
        rc = rc ? rc : gguf_writer_add_str(w, "tokenizer.ggml.model", gemma ? "llama" : "bert", err);
    rc = rc ? rc : gguf_writer_add_str(w, "tokenizer.ggml.pre", llama ? "llama-bpe" : gemma ? "default" : "bert-bge", err);
    rc = rc ? rc : gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)v->tok, NULL, (uint64_t)n, err);
    if (gemma)
        rc = rc ? rc : gguf_writer_add_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, v->score, (uint64_t)n, err);
    rc = rc ? rc : gguf_writer_add_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, v->type, (uint64_t)n, err);
    if (llama) {
        rc = rc ? rc : gguf_writer_add_arr_str(w, "tokenizer.ggml.merges", NULL, NULL, 0, err);
        rc = rc ? rc : gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)(n - 256), err);
        rc = rc ? rc : gguf_writer_add_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)(n - 256 + 9), err);
        rc = rc ? rc : gguf_writer_add_str(w, "tokenizer.chat_template", llama3_template, err);
    } else if (gemma) {
        rc = rc ? rc : gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", 2, err);
        rc = rc ? rc : gguf_writer_add_u32(w, "tokenizer.ggml.eos_token_id", 1, err);
        rc = rc ? rc : gguf_writer_add_u32(w, "tokenizer.ggml.unknown_token_id", 3, err);
        rc = rc ? rc : gguf_writer_add_u32(w, "tokenizer.ggml.padding_token_id", 0, err);
        rc = rc ? rc : gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", true, err);
        rc = rc ? rc : gguf_writer_add_bool(w, "tokenizer.ggml.add_eos_token", false, err);
        rc = rc ? rc : gguf_writer_add_bool(w, "tokenizer.ggml.add_space_prefix", false, err);
        rc = rc ? rc : gguf_writer_add_str(w, "tokenizer.chat_template", gemma_template, err);
    } else {
        rc = rc ? rc : gguf_writer_add_u32(w, "tokenizer.ggml.token_type_count", 2, err);
        rc = rc ? rc : gguf_writer_add_u32(w, "tokenizer.ggml.unknown_token_id", 100, err);
        rc = rc ? rc : gguf_writer_add_u32(w, "tokenizer.ggml.seperator_token_id", 102, err);
        rc = rc ? rc : gguf_writer_add_u32(w, "tokenizer.ggml.padding_token_id", 0, err);
        rc = rc ? rc : gguf_writer_add_u32(w, "tokenizer.ggml.cls_token_id", 101, err);
        rc = rc ? rc : gguf_writer_add_u32(w, "tokenizer.ggml.mask_token_id", 103, err);
    }
    return rc;
}

static int synth_tokenizer(struct gguf_writer *w, const struct synth_params *p, struct km_err *err)
{
    struct vocab v = {0};
    int64_t n = p->n_vocab;
    int rc;
    int64_t min = strcmp(p->arch, "bert") == 0 || strcmp(p->arch, "nomic-bert") == 0 ? 300 : 512;
    if (n < min)
        return km_fail(err, KM_EINVAL, "a synthetic %s vocabulary needs at least %lld tokens, got %lld",
                       p->arch, (long long)min, (long long)n);
    v.cap = n;
    v.tok = km_calloc((size_t)n, sizeof *v.tok);
    v.type = km_calloc((size_t)n, sizeof *v.type);
    v.score = km_calloc((size_t)n, sizeof *v.score);
    if (!v.tok || !v.type || !v.score) {
        rc = km_fail(err, KM_ENOMEM, "out of memory for a %lld-token vocabulary", (long long)n);
        goto out;
    }
    if (strcmp(p->arch, "llama") == 0)
        rc = vocab_llama(&v, n);
    else if (strcmp(p->arch, "gemma3") == 0)
        rc = vocab_gemma(&v, n);
    else
        rc = vocab_bert(&v, n);
    if (rc) {
        rc = km_fail(err, rc, "building the synthetic vocabulary failed");
        goto out;
    }
    rc = add_synth_tokenizer(w, p, &v, err);
out:
    vfree(&v);
    return rc;
}

/* Copy every tokenizer.* key of `path`, in its order. */
static int copy_tokenizer(struct gguf_writer *w, const char *path, int64_t *n_vocab,
                          struct km_err *err)
{
    struct gguf_file *f = NULL;
    int rc = gguf_open(path, &f, err);
    if (rc)
        return rc;
    int64_t ti = gguf_find_key(f, "tokenizer.ggml.tokens");
    if (ti < 0 || gguf_kv_arr_type(f, ti) != GGUF_TYPE_STRING) {
        rc = km_fail(err, KM_EFORMAT, "%s: no tokenizer.ggml.tokens string array to copy", path);
        goto out;
    }
    *n_vocab = (int64_t)gguf_kv_arr_len(f, ti);
    for (int64_t i = 0; i < gguf_n_kv(f) && !rc; i++) {
        if (strncmp(gguf_kv_key(f, i), "tokenizer.", 10) == 0)
            rc = gguf_writer_copy_kv(w, f, i, err);
    }
out:
    gguf_close(f);
    return rc;
}

int synth__vocab_size(const char *path, int64_t *n, struct km_err *err)
{
    struct gguf_file *f = NULL;
    int rc = gguf_open(path, &f, err);
    if (rc)
        return rc;
    int64_t ti = gguf_find_key(f, "tokenizer.ggml.tokens");
    if (ti < 0 || gguf_kv_arr_type(f, ti) != GGUF_TYPE_STRING)
        rc = km_fail(err, KM_EFORMAT, "%s: no tokenizer.ggml.tokens string array", path);
    else
        *n = (int64_t)gguf_kv_arr_len(f, ti);
    gguf_close(f);
    return rc;
}

static int key(char *buf, size_t n, const char *arch, const char *suffix)
{
    snprintf(buf, n, "%s.%s", arch, suffix);
    return KM_OK;
}

static int add_u32k(struct gguf_writer *w, const char *arch, const char *suffix, int64_t v,
                    struct km_err *err)
{
    char k[128];
    key(k, sizeof k, arch, suffix);
    return gguf_writer_add_u32(w, k, (uint32_t)v, err);
}

static int add_f32k(struct gguf_writer *w, const char *arch, const char *suffix, float v,
                    struct km_err *err)
{
    char k[128];
    key(k, sizeof k, arch, suffix);
    return gguf_writer_add_f32(w, k, v, err);
}

static int add_boolk(struct gguf_writer *w, const char *arch, const char *suffix, bool v,
                     struct km_err *err)
{
    char k[128];
    key(k, sizeof k, arch, suffix);
    return gguf_writer_add_bool(w, k, v, err);
}

static int add_file_type(struct gguf_writer *w, const struct synth_params *p, struct km_err *err)
{
    return gguf_writer_add_u32(w, "general.file_type", (uint32_t)synth_ftype_number(p->ftype), err);
}

static int meta_llama(struct gguf_writer *w, const struct synth_params *p, int64_t hd,
                      int64_t n_vocab, struct km_err *err)
{
    const char *a = "llama";
    int rc = add_u32k(w, a, "block_count", p->n_layer, err);
    rc = rc ? rc : add_u32k(w, a, "context_length", p->n_ctx, err);
    rc = rc ? rc : add_u32k(w, a, "embedding_length", p->n_embd, err);
    rc = rc ? rc : add_u32k(w, a, "feed_forward_length", p->n_ff, err);
    rc = rc ? rc : add_u32k(w, a, "attention.head_count", p->n_head, err);
    rc = rc ? rc : add_u32k(w, a, "attention.head_count_kv", p->n_head_kv, err);
    rc = rc ? rc : add_f32k(w, a, "rope.freq_base", p->rope_base, err);
    rc = rc ? rc : add_f32k(w, a, "attention.layer_norm_rms_epsilon", 1e-5f, err);
    rc = rc ? rc : add_u32k(w, a, "attention.key_length", hd, err);
    rc = rc ? rc : add_u32k(w, a, "attention.value_length", hd, err);
    rc = rc ? rc : add_file_type(w, p, err);
    rc = rc ? rc : add_u32k(w, a, "vocab_size", n_vocab, err);
    rc = rc ? rc : add_u32k(w, a, "rope.dimension_count", hd, err);
    return rc;
}

static int meta_gemma3(struct gguf_writer *w, const struct synth_params *p, int64_t hd,
                       struct km_err *err)
{
    const char *a = "gemma3";
    int rc = add_u32k(w, a, "context_length", p->n_ctx, err);
    rc = rc ? rc : add_u32k(w, a, "embedding_length", p->n_embd, err);
    rc = rc ? rc : add_u32k(w, a, "block_count", p->n_layer, err);
    rc = rc ? rc : add_u32k(w, a, "feed_forward_length", p->n_ff, err);
    rc = rc ? rc : add_u32k(w, a, "attention.head_count", p->n_head, err);
    rc = rc ? rc : add_f32k(w, a, "attention.layer_norm_rms_epsilon", 1e-6f, err);
    rc = rc ? rc : add_u32k(w, a, "attention.key_length", hd, err);
    rc = rc ? rc : add_u32k(w, a, "attention.value_length", hd, err);
    rc = rc ? rc : add_f32k(w, a, "rope.freq_base", p->rope_base, err);
    rc = rc ? rc : add_u32k(w, a, "attention.sliding_window", p->sliding_window, err);
    rc = rc ? rc : add_u32k(w, a, "attention.head_count_kv", p->n_head_kv, err);
    if (p->rope_scale_linear > 0) {
        rc = rc ? rc : gguf_writer_add_str(w, "gemma3.rope.scaling.type", "linear", err);
        rc = rc ? rc : add_f32k(w, a, "rope.scaling.factor", p->rope_scale_linear, err);
    }
    rc = rc ? rc : add_file_type(w, p, err);
    return rc;
}

static int meta_bert(struct gguf_writer *w, const struct synth_params *p, struct km_err *err)
{
    const char *a = p->arch;
    bool nomic = strcmp(a, "nomic-bert") == 0;
    int rc = add_u32k(w, a, "block_count", p->n_layer, err);
    rc = rc ? rc : add_u32k(w, a, "context_length", p->n_ctx, err);
    rc = rc ? rc : add_u32k(w, a, "embedding_length", p->n_embd, err);
    rc = rc ? rc : add_u32k(w, a, "feed_forward_length", p->n_ff, err);
    rc = rc ? rc : add_u32k(w, a, "attention.head_count", p->n_head, err);
    rc = rc ? rc : add_f32k(w, a, "attention.layer_norm_epsilon", 1e-12f, err);
    rc = rc ? rc : add_file_type(w, p, err);
    rc = rc ? rc : add_boolk(w, a, "attention.causal", false, err);
    rc = rc ? rc : add_u32k(w, a, "pooling_type", p->pooling, err);
    if (nomic)
        rc = rc ? rc : add_f32k(w, a, "rope.freq_base", p->rope_base, err);
    return rc;
}

int synth__write_meta(struct gguf_writer *w, const struct synth_params *p,
                      int64_t *n_vocab, struct km_err *err)
{
    int64_t hd = p->head_dim ? p->head_dim : p->n_embd / p->n_head;
    int rc = KM_OK;
    *n_vocab = p->n_vocab;
    if (p->vocab_from)
        rc = synth__vocab_size(p->vocab_from, n_vocab, err);
    rc = rc ? rc : gguf_writer_add_str(w, "general.architecture", p->arch, err);
    rc = rc ? rc : gguf_writer_add_str(w, "general.type", "model", err);
    rc = rc ? rc : gguf_writer_add_str(w, "general.name", p->name, err);
    if (rc)
        return rc;
    if (strcmp(p->arch, "llama") == 0)
        rc = meta_llama(w, p, hd, *n_vocab, err);
    else if (strcmp(p->arch, "gemma3") == 0)
        rc = meta_gemma3(w, p, hd, err);
    else
        rc = meta_bert(w, p, err);
    if (!rc && p->vocab_from)
        rc = copy_tokenizer(w, p->vocab_from, n_vocab, err);
    else if (!rc)
        rc = synth_tokenizer(w, p, err);
    rc = rc ? rc : gguf_writer_add_u32(w, "general.quantization_version", 2, err);
    return rc;
}
