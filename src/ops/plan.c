/* plan.c - deployment sizing: which preset of each model family fits this
 * machine, and with which vLLM flags (see ops.h).
 *
 * The memory model (GiB, per GPU), checked in this order for each preset,
 * largest first, bf16 before 4-bit, one GPU before tensor parallelism:
 *
 *   budget   = gpu_mem * util            util = 0.90 - embeddings share
 *   fixed    = weights / tp + overhead   overhead: activations, CUDA graphs
 *   kv       = (budget - fixed) * tp     what is left for the KV cache
 *   seq(c)   = kv_per_token * c + kv_per_seq
 *   fits     when kv >= 2 * seq(4096)    two full sequences at 4k context
 *   context  = largest of 32768, 16384, 8192, 4096 (<= the model's own)
 *              with kv >= 2 * seq(context)
 *   seqs     = kv / seq(2048), clamped to [2, 64]   (--max-num-seqs)
 *
 * kv_per_token counts only full-attention layers; for Gemma 3, whose
 * sliding-window layers hold at most 1024 tokens, those layers are the fixed
 * kv_per_seq (vLLM's hybrid KV cache allocates them per window). Weights are
 * estimates from the parameter counts: bf16 = 2 bytes per parameter;
 * bitsandbytes 4-bit = 0.5625 bytes per linear-layer parameter (4 bits +
 * block scales) with embeddings, lm_head and the vision tower kept in bf16.
 *
 * The embeddings profile (vLLM, BAAI/bge-small-en-v1.5) reserves 1.5 GiB of
 * the first GPU: its share is ceil(1.5 / gpu_mem, 0.01) within [0.03, 0.20].
 *
 * CPU plan (no GPU): GGUF Q4_K_M files for the built-in engine; a model fits
 * when weights + 2 sequences of 8192 tokens of f16 KV cache <= 60% of RAM.
 */
#include "ops/ops.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define MIN_CTX 4096
#define SEQ_TOKENS 2048
#define MAX_SEQS 64
#define MIN_SEQS 2
#define LLM_UTIL 0.90
#define EMBED_GIB 1.5
#define CPU_RAM_SHARE 0.60
#define CPU_CTX 8192
#define CPU_SEQS 2

struct preset {
    enum ops_family fam;
    const char *name;
    const char *repo;
    int max_ctx;
    double bf16_gib, q4_gib;    /* weights */
    double kv_kib_token;        /* full-attention layers, bf16 */
    double kv_mib_seq;          /* sliding-window layers, per sequence */
    double overhead_gib;
    const char *gguf_repo, *gguf_file;  /* CPU plan, NULL = GPU only */
    double gguf_gib;
};

/* Largest first within each family. */
static const struct preset presets[] = {
    {OPS_MOLMO, "molmo-7b-d", "allenai/Molmo-7B-D-0924", 4096,
     14.9, 6.2, 56, 0, 1.5, NULL, NULL, 0},
    {OPS_GEMMA3, "gemma3-27b", "google/gemma-3-27b-it", 131072,
     51.0, 16.8, 80, 416, 1.5,
     "bartowski/google_gemma-3-27b-it-GGUF",
     "google_gemma-3-27b-it-Q4_K_M.gguf", 15.4},
    {OPS_GEMMA3, "gemma3-12b", "google/gemma-3-12b-it", 131072,
     22.7, 8.3, 64, 320, 1.5,
     "bartowski/google_gemma-3-12b-it-GGUF",
     "google_gemma-3-12b-it-Q4_K_M.gguf", 6.8},
    {OPS_GEMMA3, "gemma3-4b", "google/gemma-3-4b-it", 131072,
     8.0, 3.7, 20, 116, 1.5,
     "bartowski/google_gemma-3-4b-it-GGUF",
     "google_gemma-3-4b-it-Q4_K_M.gguf", 2.3},
    {OPS_LLAMA3, "llama3.1-70b", "meta-llama/Llama-3.1-70B-Instruct", 131072,
     131.5, 39.8, 320, 0, 1.0,
     "bartowski/Meta-Llama-3.1-70B-Instruct-GGUF",
     "Meta-Llama-3.1-70B-Instruct-Q4_K_M.gguf", 39.6},
    {OPS_LLAMA3, "llama3.1-8b", "meta-llama/Llama-3.1-8B-Instruct", 131072,
     15.0, 5.6, 128, 0, 1.0,
     "bartowski/Meta-Llama-3.1-8B-Instruct-GGUF",
     "Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf", 4.6},
    {OPS_LLAMA3, "llama3.2-3b", "meta-llama/Llama-3.2-3B-Instruct", 131072,
     6.0, 2.2, 112, 0, 1.0,
     "bartowski/Llama-3.2-3B-Instruct-GGUF",
     "Llama-3.2-3B-Instruct-Q4_K_M.gguf", 1.9},
};

static const int ctx_ladder[] = {32768, 16384, 8192, 4096};

const char *ops_family_name(enum ops_family f)
{
    switch (f) {
    case OPS_MOLMO: return "molmo";
    case OPS_GEMMA3: return "gemma3";
    case OPS_LLAMA3: return "llama3";
    default: return "?";
    }
}

/* GiB of KV cache for one sequence of `ctx` tokens. */
static double seq_gib(const struct preset *p, int ctx)
{
    return (p->kv_kib_token * ctx / 1024.0 + p->kv_mib_seq) / 1024.0;
}

static double embed_share(double gpu_gib)
{
    double s = ceil(EMBED_GIB / gpu_gib * 100.0 - 1e-9) / 100.0;
    if (s < 0.03)
        s = 0.03;
    if (s > 0.20)
        s = 0.20;
    return s;
}

static int pick_ctx(const struct preset *p, double kv)
{
    for (size_t i = 0; i < sizeof ctx_ladder / sizeof ctx_ladder[0]; i++) {
        int c = ctx_ladder[i];
        if (c <= p->max_ctx && kv >= 2 * seq_gib(p, c))
            return c;
    }
    return 0;
}

static void fill_gpu_choice(struct ops_choice *c, const struct preset *p,
                            bool q4, int tp, double util, double kv,
                            int ctx, double gpu_gib)
{
    long seqs = (long)floor(kv / seq_gib(p, SEQ_TOKENS));
    if (seqs > MAX_SEQS)
        seqs = MAX_SEQS;
    if (seqs < MIN_SEQS)
        seqs = MIN_SEQS;
    c->ok = true;
    snprintf(c->preset, sizeof c->preset, "%s", p->name);
    snprintf(c->model, sizeof c->model, "%s", p->repo);
    snprintf(c->quant, sizeof c->quant, "%s", q4 ? "bitsandbytes" : "bf16");
    c->max_model_len = ctx;
    c->max_num_seqs = (int)seqs;
    c->tensor_parallel = tp;
    c->gpu_mem_util = util;
    c->weights_gib = q4 ? p->q4_gib : p->bf16_gib;
    c->kv_gib = kv;
    int n = snprintf(c->vllm_args, sizeof c->vllm_args,
                     "--max-model-len %d --gpu-memory-utilization %.2f "
                     "--max-num-seqs %d", ctx, util, c->max_num_seqs);
    if (tp > 1)
        n += snprintf(c->vllm_args + n, sizeof c->vllm_args - n,
                      " --tensor-parallel-size %d", tp);
    if (q4)
        snprintf(c->vllm_args + n, sizeof c->vllm_args - n,
                 " --quantization bitsandbytes");
    snprintf(c->why, sizeof c->why,
             "%s in %s: %.1f GiB of weights%s + %.1f GiB overhead leave "
             "%.1f GiB of KV cache within %.2f of %.1f GiB",
             p->name, q4 ? "bitsandbytes" : "bf16", c->weights_gib,
             tp > 1 ? " (split)" : "",
             p->overhead_gib, kv, util, gpu_gib);
}

/* Try preset p with quantization q4 on tp GPUs; 1 when it fits. */
static int try_gpu(struct ops_choice *c, const struct preset *p, bool q4,
                   int tp, double gpu_gib, double util)
{
    double w = q4 ? p->q4_gib : p->bf16_gib;
    double kv = (gpu_gib * util - w / tp - p->overhead_gib) * tp;
    if (kv < 2 * seq_gib(p, MIN_CTX))
        return 0;
    int ctx = pick_ctx(p, kv);
    if (ctx == 0)
        return 0;
    fill_gpu_choice(c, p, q4, tp, util, kv, ctx, gpu_gib);
    return 1;
}

static void plan_gpu_family(struct ops_plan *plan, enum ops_family f,
                            double gpu_gib, double util)
{
    struct ops_choice *c = &plan->fam[f];
    int tps[2] = {1, plan->n_gpus};
    int n_tp = (plan->n_gpus > 1 && (plan->n_gpus & (plan->n_gpus - 1)) == 0)
                   ? 2 : 1;
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++) {
        const struct preset *p = &presets[i];
        if (p->fam != f)
            continue;
        for (int q = 0; q < 2; q++)
            for (int t = 0; t < n_tp; t++)
                if (try_gpu(c, p, q == 1, tps[t], gpu_gib, util))
                    return;
    }
    snprintf(c->why, sizeof c->why,
             "no %s preset fits %d x %.1f GiB (even 4-bit at %d tokens)",
             ops_family_name(f), plan->n_gpus, gpu_gib, MIN_CTX);
}

static void plan_cpu_family(struct ops_plan *plan, enum ops_family f)
{
    struct ops_choice *c = &plan->fam[f];
    double budget = plan->ram_bytes / OPS_GIB * CPU_RAM_SHARE;
    bool any = false;
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++) {
        const struct preset *p = &presets[i];
        if (p->fam != f || !p->gguf_repo)
            continue;
        any = true;
        double kv = CPU_SEQS * seq_gib(p, CPU_CTX);
        if (p->gguf_gib + kv > budget)
            continue;
        c->ok = true;
        snprintf(c->preset, sizeof c->preset, "%s", p->name);
        snprintf(c->model, sizeof c->model, "%s", p->gguf_repo);
        snprintf(c->gguf_file, sizeof c->gguf_file, "%s", p->gguf_file);
        snprintf(c->quant, sizeof c->quant, "Q4_K_M");
        c->max_model_len = CPU_CTX;
        c->max_num_seqs = CPU_SEQS;
        c->weights_gib = p->gguf_gib;
        c->kv_gib = kv;
        snprintf(c->why, sizeof c->why,
                 "%s Q4_K_M: %.1f GiB of weights + %.1f GiB of KV cache "
                 "(%d x %d tokens) within %.0f%% of %.1f GiB RAM",
                 p->name, p->gguf_gib, kv, CPU_SEQS, CPU_CTX,
                 CPU_RAM_SHARE * 100, plan->ram_bytes / OPS_GIB);
        return;
    }
    if (!any)
        snprintf(c->why, sizeof c->why, "%s needs a GPU (vLLM): the built-in "
                 "CPU engine does not run it", ops_family_name(f));
    else
        snprintf(c->why, sizeof c->why, "no %s GGUF fits %.0f%% of %.1f GiB "
                 "RAM", ops_family_name(f), CPU_RAM_SHARE * 100,
                 plan->ram_bytes / OPS_GIB);
}

int ops_plan_make(int n_gpus, unsigned long long gpu_mem_bytes,
                  unsigned long long ram_bytes, int n_cpus,
                  struct ops_plan *plan, struct km_err *err)
{
    memset(plan, 0, sizeof *plan);
    if (n_gpus < 0 || n_gpus > OPS_MAX_GPUS)
        return km_fail(err, KM_EINVAL, "GPU count %d is outside 0..%d",
                       n_gpus, OPS_MAX_GPUS);
    if (n_gpus > 0 && gpu_mem_bytes < 1024ull * 1024 * 1024)
        return km_fail(err, KM_EINVAL, "GPU memory %llu bytes is below "
                       "1 GiB", gpu_mem_bytes);
    plan->gpu = n_gpus > 0;
    plan->n_gpus = n_gpus;
    plan->gpu_mem_bytes = gpu_mem_bytes;
    plan->ram_bytes = ram_bytes;
    plan->n_cpus = n_cpus;
    double gib = gpu_mem_bytes / OPS_GIB;
    if (plan->gpu)
        plan->embed_mem_util = embed_share(gib);
    double util = LLM_UTIL - plan->embed_mem_util;
    for (int f = 0; f < OPS_N_FAMILIES; f++) {
        snprintf(plan->fam[f].family, sizeof plan->fam[f].family, "%s",
                 ops_family_name(f));
        if (plan->gpu)
            plan_gpu_family(plan, f, gib, util);
        else
            plan_cpu_family(plan, f);
    }
    return KM_OK;
}
