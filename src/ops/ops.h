/* ops.h - operations: hardware detection, deployment sizing, the docker
 * compose wrapper and service status checks (`kanoa-mlops init|up|down|logs|
 * status`).
 *
 * Pieces
 *  - ops_hw_*: CPU count/model and RAM from /proc (root overridable for
 *    tests with KANOA_PROC_ROOT).
 *  - ops_gpu_*: NVIDIA GPUs through NVML, loaded with dlopen() at run time
 *    (library path from KANOA_NVML_LIB, default "libnvidia-ml.so.1"), else
 *    the output of `nvidia-smi --query-gpu=name,memory.total
 *    --format=csv,noheader,nounits` (program from KANOA_NVIDIA_SMI, default
 *    "nvidia-smi" on PATH), else no GPU. Nothing links against NVML.
 *  - ops_plan_*: pick, for each model family (molmo, gemma3, llama3), the
 *    largest preset whose weights + KV cache at the chosen context fit the
 *    GPU memory budget (bf16 first, then 4-bit bitsandbytes), with the vLLM
 *    flags; with no GPU, a CPU plan of GGUF files that fit RAM. Pure.
 *  - ops_env_*: render a plan as the `.env` read by deploy/compose.
 *  - ops_compose_*: find `docker compose` (or docker-compose) and run it.
 *  - ops_status_*: HTTP (libcurl) and PostgreSQL (libpq PQping) checks.
 *
 * Memory: every struct here is caller-owned and fixed-size; functions that
 * return text fill a caller's struct km_buf. Nothing needs freeing except
 * those buffers.
 *
 * Thread-safety: ops_plan_*, ops_env_*, ops_gpu_parse_smi and ops_hw_parse_*
 * are pure and reentrant. Detection, compose and status functions touch the
 * process (dlopen, fork/exec, libcurl global init): call them from one
 * thread.
 */
#ifndef OPS_OPS_H
#define OPS_OPS_H

#include "base/buf.h"
#include "base/err.h"

#include <stdbool.h>
#include <stddef.h>

#define OPS_GIB (1024.0 * 1024.0 * 1024.0)
#define OPS_MIB (1024.0 * 1024.0)

/* ---- hardware ------------------------------------------------------------ */

struct ops_hw {
    int n_cpus;                     /* logical CPUs ("processor" lines) */
    char cpu_model[128];            /* "model name", "" if unknown */
    unsigned long long ram_bytes;   /* MemTotal */
};

/* Parse /proc/cpuinfo and /proc/meminfo text. */
int ops_hw_parse_cpuinfo(const char *text, struct ops_hw *hw);
int ops_hw_parse_meminfo(const char *text, struct ops_hw *hw,
                         struct km_err *err);
/* Read $KANOA_PROC_ROOT (default /proc)/cpuinfo and /meminfo. */
int ops_hw_detect(struct ops_hw *hw, struct km_err *err);

#define OPS_MAX_GPUS 16

struct ops_gpu {
    char name[96];
    unsigned long long mem_bytes;   /* total framebuffer memory */
};

struct ops_gpus {
    int n;
    struct ops_gpu gpu[OPS_MAX_GPUS];
    char source[16];                /* "nvml", "nvidia-smi", "flag", "none" */
    char note[256];                 /* why NVML or nvidia-smi was not used */
};

/* Parse nvidia-smi CSV lines "NAME, MIB" (no header, no units). */
int ops_gpu_parse_smi(const char *text, struct ops_gpus *out,
                      struct km_err *err);
/* Query NVML through dlopen(lib). KM_ENOTFOUND when the library is absent. */
int ops_gpu_nvml(const char *lib, struct ops_gpus *out, struct km_err *err);
/* Run `prog --query-gpu=...` and parse it. KM_ENOTFOUND when not runnable. */
int ops_gpu_smi(const char *prog, struct ops_gpus *out, struct km_err *err);
/* NVML, then nvidia-smi, then none (n = 0, source "none"); always KM_OK
 * unless out of memory; out->note says what failed. */
int ops_gpu_detect(struct ops_gpus *out, struct km_err *err);

/* ---- sizing -------------------------------------------------------------- */

enum ops_family { OPS_MOLMO, OPS_GEMMA3, OPS_LLAMA3, OPS_N_FAMILIES };

struct ops_choice {
    bool ok;                        /* false: nothing in the family fits */
    char family[16];                /* "molmo", "gemma3", "llama3" */
    char preset[32];                /* e.g. "gemma3-12b" */
    char model[128];                /* HF repo id (GPU) or GGUF repo (CPU) */
    char gguf_file[128];            /* CPU plan: file in the repo */
    char quant[24];                 /* "bf16", "bitsandbytes", "Q4_K_M" */
    int max_model_len;              /* context tokens */
    int max_num_seqs;
    int tensor_parallel;            /* GPUs used */
    double gpu_mem_util;            /* --gpu-memory-utilization */
    double weights_gib;
    double kv_gib;                  /* KV budget left for the cache */
    char vllm_args[512];            /* the flags for `vllm serve` */
    char why[256];                  /* one sentence: why this one */
};

struct ops_plan {
    bool gpu;                       /* false: CPU plan */
    int n_gpus;
    unsigned long long gpu_mem_bytes; /* per GPU (smallest) */
    unsigned long long ram_bytes;
    int n_cpus;
    double embed_mem_util;          /* embeddings vLLM share of each GPU */
    struct ops_choice fam[OPS_N_FAMILIES];
};

/* Plan from detected (or --gpu-mem) hardware. n_gpus 0 = CPU plan. */
int ops_plan_make(int n_gpus, unsigned long long gpu_mem_bytes,
                  unsigned long long ram_bytes, int n_cpus,
                  struct ops_plan *plan, struct km_err *err);
const char *ops_family_name(enum ops_family f);

/* Human explanation (several lines) and the .env text. */
int ops_plan_explain(const struct ops_plan *plan, struct km_buf *out);
int ops_env_render(const struct ops_plan *plan, const char *gpu_desc,
                   const char *secrets_dir, struct km_buf *out);
/* Write `text` to dir/name atomically (temp file + rename), mode 0644. */
int ops_write_file(const char *dir, const char *name, const char *text,
                   size_t len, int mode, struct km_err *err);

/* ---- docker compose ------------------------------------------------------ */

struct ops_compose {
    char docker[256];               /* docker binary (KANOA_DOCKER or PATH) */
    bool v2;                        /* `docker compose` plugin; else v1 */
    char file[512];                 /* compose file */
    char env_file[512];             /* the .env written by init */
};

/* Find docker and compose; KM_ENOTFOUND with a how-to-install sentence.
 * Paths inside the compose file stay relative to the compose file; the
 * env file (from `init`) is passed with --env-file; project name
 * "kanoa-mlops". */
int ops_compose_find(struct ops_compose *c, const char *compose_file,
                     const char *env_file, struct km_err *err);
/* KM_ENOTFOUND when the NVIDIA container runtime is not registered. */
int ops_compose_check_nvidia(const struct ops_compose *c, struct km_err *err);
/* Run compose with `args` (NULL-terminated), profile may be NULL (all in
 * COMPOSE_PROFILES). Returns KM_OK and the child's exit status. */
int ops_compose_run(const struct ops_compose *c, const char *profile,
                    const char *const *args, int *status, struct km_err *err);

/* ---- status -------------------------------------------------------------- */

enum ops_check_kind { OPS_CHECK_HTTP, OPS_CHECK_PG };

struct ops_check {
    char name[64];
    enum ops_check_kind kind;
    char target[512];               /* URL or libpq conninfo */
    /* results */
    bool up;
    int http_status;                /* 0 when no HTTP answer */
    double seconds;
    char detail[256];
};

/* Run one check with a timeout in milliseconds. */
int ops_status_check(struct ops_check *c, long timeout_ms);
/* Render the checks as an aligned table (passwords in URLs redacted). */
int ops_status_table(const struct ops_check *c, size_t n, struct km_buf *out);
/* Replace the password of a URL's userinfo with "***" into out. */
void ops_redact_url(const char *url, char *out, size_t cap);

/* Create dir/secrets/ (0700) and, for each of vllm_api_key, kanoa_api_key,
 * postgres_password and grafana_admin_password that does not exist yet, a
 * file of 48 random hex digits (0644: containers read it through a bind
 * mount; the directory keeps other host users out). Appends the names it
 * created, space separated, to `created`. Never overwrites. */
int ops_secrets_init(const char *dir, struct km_buf *created,
                     struct km_err *err);

/* Read KEY=VALUE lines of an env file into a callback (comments, blank lines
 * and surrounding quotes handled). KM_ENOTFOUND if the file does not exist. */
int ops_env_read(const char *path,
                 void (*fn)(void *ud, const char *key, const char *value),
                 void *ud, struct km_err *err);

#endif
