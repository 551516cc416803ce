/* cmd_models_info.c - `kanoa-mlops models info FILE`: what a GGUF holds and
 * the memory it needs (engine/gguf.h). */
#include "cli/cli.h"

#include "engine/engine.h"
#include "engine/gguf.h"
#include "engine/quant.h"
#include "engine/synth.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

static const char info_usage[] =
    "usage: kanoa-mlops models info [--ctx N] FILE.gguf\n\n"
    "Show a GGUF model's architecture, parameter count, context length, tensor\n"
    "types, file size, chat template and the memory for weights plus an f16 KV\n"
    "cache of N tokens (sliding-window layers, as in gemma3, keep only their\n"
    "window plus one batch).\n\n"
    "  --ctx N      KV cache length for the memory estimate (default: the\n"
    "               model's context length)\n"
    "  -h, --help   this help\n";

static const struct option info_opts[] = {
    {"ctx", required_argument, NULL, 'c'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* <arch>.<suffix> as u64, or `def` when absent or not an integer. */
static uint64_t arch_u64(const struct gguf_file *f, const char *arch, const char *suffix,
                         uint64_t def)
{
    char k[160];
    uint64_t v;
    snprintf(k, sizeof k, "%s.%s", arch, suffix);
    if (gguf_get_u64(f, k, &v, NULL) != KM_OK)
        return def;
    return v;
}

static const char *template_name(const struct gguf_file *f)
{
    const char *t = NULL;
    if (gguf_get_str(f, "tokenizer.chat_template", &t, NULL, NULL) != KM_OK)
        return "none";
    if (strstr(t, "<|start_header_id|>"))
        return "llama3";
    if (strstr(t, "<start_of_turn>"))
        return "gemma";
    if (strstr(t, "<|im_start|>"))
        return "chatml";
    return "custom";
}

static const char *ftype_name(uint32_t n)
{
    static const char *const names[] = {"F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_K_M", "Q5_K_M", "Q6_K"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (synth_ftype_number(names[i]) == (int)n)
            return names[i];
    }
    return "other";
}

static void print_types(const struct gguf_file *f, uint64_t *params, uint64_t *wbytes)
{
    uint64_t count[GGML_TYPE_COUNT] = {0}, bytes[GGML_TYPE_COUNT] = {0};
    *params = 0;
    *wbytes = 0;
    for (int64_t i = 0; i < gguf_n_tensors(f); i++) {
        const struct gguf_tensor *t = gguf_tensor_at(f, i);
        count[t->type]++;
        bytes[t->type] += t->nbytes;
        *params += t->n_elements;
        *wbytes += t->nbytes;
    }
    printf("tensor types:    ");
    const char *sep = "";
    for (int t = 0; t < GGML_TYPE_COUNT; t++) {
        if (count[t]) {
            printf("%s%s %llu (%.1f MiB)", sep, quant_type_name((uint32_t)t),
                   (unsigned long long)count[t], (double)bytes[t] / 1048576.0);
            sep = ", ";
        }
    }
    printf("%s\n", *sep ? "" : "none");
}

static void print_info(const struct gguf_file *f, long ctx_arg)
{
    const char *arch = "?", *name = "?", *tokm = "none";
    gguf_get_str(f, "general.architecture", &arch, NULL, NULL);
    gguf_get_str(f, "general.name", &name, NULL, NULL);
    gguf_get_str(f, "tokenizer.ggml.model", &tokm, NULL, NULL);
    uint64_t n_ctx = arch_u64(f, arch, "context_length", 0);
    uint64_t n_layer = arch_u64(f, arch, "block_count", 0);
    uint64_t n_embd = arch_u64(f, arch, "embedding_length", 0);
    uint64_t n_head = arch_u64(f, arch, "attention.head_count", 0);
    uint64_t n_kv = arch_u64(f, arch, "attention.head_count_kv", n_head);
    uint64_t hd = arch_u64(f, arch, "attention.key_length", n_head ? n_embd / n_head : 0);
    uint32_t ft = 0;
    bool has_ft = gguf_get_u32(f, "general.file_type", &ft, NULL) == KM_OK;
    int64_t ti = gguf_find_key(f, "tokenizer.ggml.tokens");
    uint64_t params, wbytes;
    printf("file:            %s (%.1f MiB, GGUF v%u, alignment %u)\n", gguf_path(f),
           (double)gguf_file_size(f) / 1048576.0, gguf_version(f), gguf_alignment(f));
    printf("name:            %s\n", name);
    printf("architecture:    %s\n", arch);
    printf("shape:           %llu layers, embedding %llu, %llu heads (%llu kv, head dim %llu)\n",
           (unsigned long long)n_layer, (unsigned long long)n_embd, (unsigned long long)n_head,
           (unsigned long long)n_kv, (unsigned long long)hd);
    printf("context length:  %llu\n", (unsigned long long)n_ctx);
    if (has_ft)
        printf("file type:       %s (%u)\n", ftype_name(ft), ft);
    print_types(f, &params, &wbytes);
    printf("parameters:      %llu (%.2f B), %lld tensors\n", (unsigned long long)params,
           (double)params / 1e9, (long long)gguf_n_tensors(f));
    printf("vocabulary:      %llu tokens (%s)\n", (unsigned long long)gguf_kv_arr_len(f, ti), tokm);
    printf("chat template:   %s\n", template_name(f));
    uint64_t ctx = ctx_arg > 0 ? (uint64_t)ctx_arg : n_ctx;
    bool encoder = strcmp(arch, "bert") == 0 || strcmp(arch, "nomic-bert") == 0;
    /* sliding-window layers (gemma3) keep a window ring, not ctx rows */
    uint64_t rows = encoder ? 0 : eng_kv_rows(f, (int)n_layer, (int)ctx);
    uint64_t kv = 2ull * rows * n_kv * hd * 2;
    printf("memory at ctx %llu: weights %.1f MiB + KV cache %.1f MiB (f16%s) = %.1f MiB\n",
           (unsigned long long)ctx, (double)wbytes / 1048576.0, (double)kv / 1048576.0,
           encoder ? ", encoder: none" : "", (double)(wbytes + kv) / 1048576.0);
}

int cmd_models_info(int argc, char **argv)
{
    long ctx = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, "h", info_opts, NULL)) != -1) {
        if (opt == 'h') {
            fputs(info_usage, stdout);
            return CLI_EXIT_OK;
        }
        if (opt != 'c' || cli_parse_long(optarg, 1, 1L << 30, &ctx) != 0) {
            if (opt == 'c')
                fprintf(stderr, "kanoa-mlops models info: --ctx: '%s' is not a number in 1..%ld\n",
                        optarg, 1L << 30);
            return cli_usage_error(info_usage);
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "kanoa-mlops models info: expected one FILE.gguf\n");
        return cli_usage_error(info_usage);
    }
    struct km_err err;
    struct gguf_file *f = NULL;
    km_err_clear(&err);
    if (gguf_open(argv[optind], &f, &err) != KM_OK)
        return cli_fail("models info", &err);
    print_info(f, ctx);
    gguf_close(f);
    return CLI_EXIT_OK;
}
