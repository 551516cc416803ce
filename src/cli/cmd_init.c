/* cmd_init.c - `kanoa-mlops init`: detect the hardware, size the models,
 * write .env (and secrets/) for deploy/compose, explain the choice. */
#include "cli/cli.h"
#include "base/buf.h"
#include "ops/ops.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "usage: kanoa-mlops init [options]\n"
    "\n"
    "Detect CPUs, RAM and NVIDIA GPUs (NVML, else nvidia-smi), pick the\n"
    "largest preset of each model family (molmo, gemma3, llama3) that fits,\n"
    "with its vLLM flags, and write DIR/.env for deploy/compose plus random\n"
    "secrets in DIR/secrets/ (existing secrets are kept).\n"
    "\n"
    "options:\n"
    "  -d, --dir DIR        where to write .env and secrets/ (default .)\n"
    "  -g, --gpu-mem SIZE   plan for GPUs of SIZE each (e.g. 16G) instead of\n"
    "                       the detected ones\n"
    "  -n, --gpus N         with --gpu-mem: number of GPUs (default 1)\n"
    "  -r, --ram SIZE       plan for SIZE of RAM instead of the detected\n"
    "      --cpu            plan for the CPU engine even if GPUs exist\n"
    "      --dry-run        print the plan and the .env; write nothing\n"
    "  -h, --help           show this help\n"
    "\n"
    "environment: KANOA_NVML_LIB (NVML library, default libnvidia-ml.so.1),\n"
    "KANOA_NVIDIA_SMI (nvidia-smi program); \"none\" disables either.\n";

struct init_opts {
    const char *dir;
    unsigned long long gpu_mem, ram;
    long gpus;
    int cpu_only, dry_run, gpus_given;
};

static int parse(int argc, char **argv, struct init_opts *o)
{
    static const struct option longs[] = {
        {"dir", required_argument, NULL, 'd'},
        {"gpu-mem", required_argument, NULL, 'g'},
        {"gpus", required_argument, NULL, 'n'},
        {"ram", required_argument, NULL, 'r'},
        {"cpu", no_argument, NULL, 'C'},
        {"dry-run", no_argument, NULL, 'D'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    for (;;) {
        int ch = getopt_long(argc, argv, "d:g:n:r:h", longs, NULL);
        if (ch == -1)
            break;
        switch (ch) {
        case 'd': o->dir = optarg; break;
        case 'g':
            if (cli_parse_size(optarg, &o->gpu_mem) != 0 || !o->gpu_mem) {
                fprintf(stderr, "kanoa-mlops init: --gpu-mem '%s' is not a "
                        "size like 16G\n", optarg);
                return -CLI_EXIT_USAGE;
            }
            break;
        case 'n':
            o->gpus_given = 1;
            if (cli_parse_long(optarg, 1, OPS_MAX_GPUS, &o->gpus) != 0) {
                fprintf(stderr, "kanoa-mlops init: --gpus '%s' is not in "
                        "1..%d\n", optarg, OPS_MAX_GPUS);
                return -CLI_EXIT_USAGE;
            }
            break;
        case 'r':
            if (cli_parse_size(optarg, &o->ram) != 0 || !o->ram) {
                fprintf(stderr, "kanoa-mlops init: --ram '%s' is not a size "
                        "like 32G\n", optarg);
                return -CLI_EXIT_USAGE;
            }
            break;
        case 'C': o->cpu_only = 1; break;
        case 'D': o->dry_run = 1; break;
        case 'h': fputs(usage, stdout); return 1;
        default: return -cli_usage_error(usage);
        }
    }
    if (cli_no_operands("init", argc, argv))
        return -cli_usage_error(usage);
    if (o->gpus_given && !o->gpu_mem) {
        fprintf(stderr, "kanoa-mlops init: --gpus needs --gpu-mem\n");
        return -cli_usage_error(usage);
    }
    return 0;
}

/* Describe the GPUs (or why there are none) into desc; set count/mem. */
static void gpu_summary(const struct init_opts *o, const struct ops_gpus *g,
                        int *n, unsigned long long *mem, char *desc,
                        size_t cap)
{
    if (o->cpu_only) {
        *n = 0;
        snprintf(desc, cap, "CPU plan requested (--cpu)");
        return;
    }
    if (o->gpu_mem) {
        *n = (int)o->gpus;
        *mem = o->gpu_mem;
        snprintf(desc, cap, "%d x %llu MiB GPU (--gpu-mem)", *n,
                 o->gpu_mem >> 20);
        return;
    }
    *n = g->n;
    if (g->n == 0) {
        snprintf(desc, cap, "no NVIDIA GPU (%s)", g->note);
        return;
    }
    *mem = g->gpu[0].mem_bytes;
    for (int i = 1; i < g->n; i++)
        if (g->gpu[i].mem_bytes < *mem)
            *mem = g->gpu[i].mem_bytes;
    snprintf(desc, cap, "%d x %s (%llu MiB) via %s", g->n, g->gpu[0].name,
             g->gpu[0].mem_bytes >> 20, g->source);
}

static int write_outputs(const struct init_opts *o, const struct km_buf *env,
                         struct km_err *err)
{
    struct km_buf created;
    km_buf_init(&created, 4096);
    int rc = ops_write_file(o->dir, ".env", env->data, env->len, 0644, err);
    if (rc == KM_OK)
        rc = ops_secrets_init(o->dir, &created, err);
    if (rc == KM_OK) {
        printf("wrote %s/.env\n", o->dir);
        if (created.len)
            printf("created secrets in %s/secrets/: %s\n", o->dir,
                   km_buf_str(&created));
    }
    km_buf_free(&created);
    return rc;
}

int cmd_init(int argc, char **argv)
{
    struct init_opts o = {.dir = ".", .gpus = 1};
    struct km_err err;
    struct ops_hw hw;
    struct ops_gpus gpus;
    struct ops_plan plan;
    struct km_buf text, env;
    char desc[512];
    int n_gpus = 0, rc, ret = CLI_EXIT_FAIL;
    unsigned long long mem = 0;
    km_err_clear(&err);
    int p = parse(argc, argv, &o);
    if (p != 0)
        return p > 0 ? CLI_EXIT_OK : -p;
    km_buf_init(&text, 1 << 16);
    km_buf_init(&env, 1 << 16);
    rc = ops_hw_detect(&hw, &err);
    if (rc != KM_OK)
        goto out;
    if (o.ram)
        hw.ram_bytes = o.ram;
    memset(&gpus, 0, sizeof gpus);
    if (!o.cpu_only && !o.gpu_mem)
        ops_gpu_detect(&gpus, &err);
    gpu_summary(&o, &gpus, &n_gpus, &mem, desc, sizeof desc);
    rc = ops_plan_make(n_gpus, mem, hw.ram_bytes, hw.n_cpus, &plan, &err);
    if (rc == KM_OK)
        rc = ops_plan_explain(&plan, &text);
    if (rc == KM_OK) {
        char abs[4096], sdir[4200];
        if (!realpath(o.dir, abs))
            snprintf(abs, sizeof abs, "%s", o.dir);
        snprintf(sdir, sizeof sdir, "%s/secrets", abs);
        rc = ops_env_render(&plan, desc, sdir, &env);
    }
    if (rc != KM_OK && err.code == KM_OK)
        km_fail(&err, rc, "cannot render the plan");
    if (rc != KM_OK)
        goto out;
    printf("hardware: %s; %d CPUs (%s), %.1f GiB RAM\n%s", desc, hw.n_cpus,
           hw.cpu_model[0] ? hw.cpu_model : "unknown model",
           hw.ram_bytes / OPS_GIB, km_buf_str(&text));
    if (o.dry_run) {
        printf("--- %s/.env (dry run: nothing written) ---\n%s", o.dir,
               km_buf_str(&env));
        ret = CLI_EXIT_OK;
        goto out;
    }
    rc = write_outputs(&o, &env, &err);
    if (rc == KM_OK)
        ret = CLI_EXIT_OK;
out:
    km_buf_free(&text);
    km_buf_free(&env);
    if (ret != CLI_EXIT_OK && rc != KM_OK)
        return cli_fail("init", &err);
    return ret;
}
