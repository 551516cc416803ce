/* test_ops.c - ops/: /proc and nvidia-smi parsers, the sizing planner, the
 * .env renderer and reader, URL redaction, status checks against a closed
 * port, and the compose argv built for a fake docker. */
#include "base/buf.h"
#include "base/err.h"
#include "base/mem.h"
#include "ops/ops.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

TestSuite(ops, .timeout = 60);

#define GIB (1024ull * 1024ull * 1024ull)
#define MIB (1024ull * 1024ull)

Test(ops, cpuinfo_and_meminfo)
{
    struct ops_hw hw = {0};
    struct km_err e;
    ops_hw_parse_cpuinfo("processor\t: 0\nmodel name\t: Test CPU @ 3GHz\n"
                         "flags\t\t: avx2\n\nprocessor\t: 1\n"
                         "model name\t: Test CPU @ 3GHz\n", &hw);
    cr_assert_eq(hw.n_cpus, 2);
    cr_assert_str_eq(hw.cpu_model, "Test CPU @ 3GHz");
    cr_assert_eq(ops_hw_parse_meminfo("MemTotal:       16318480 kB\n"
                                      "MemFree: 1 kB\n", &hw, &e), KM_OK);
    cr_assert_eq(hw.ram_bytes, 16318480ull * 1024);
    cr_assert_eq(ops_hw_parse_meminfo("MemFree: 1 kB\n", &hw, &e),
                 KM_EFORMAT);
    cr_assert_str_eq(e.msg, "meminfo: no MemTotal line");
    cr_assert_eq(ops_hw_parse_meminfo("MemTotal: 12 MB\n", &hw, &e),
                 KM_EFORMAT);
    cr_assert_str_eq(e.msg, "meminfo: MemTotal unit is not kB");
}

Test(ops, hw_detect_reads_proc_root)
{
    char dir[] = "/tmp/km-ops-procXXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char p[256];
    snprintf(p, sizeof p, "%s/cpuinfo", dir);
    FILE *f = fopen(p, "w");
    fputs("processor : 0\nprocessor : 1\nprocessor : 2\n", f);
    fclose(f);
    snprintf(p, sizeof p, "%s/meminfo", dir);
    f = fopen(p, "w");
    fputs("MemTotal: 8388608 kB\n", f);
    fclose(f);
    setenv("KANOA_PROC_ROOT", dir, 1);
    struct ops_hw hw;
    struct km_err e;
    cr_assert_eq(ops_hw_detect(&hw, &e), KM_OK);
    cr_assert_eq(hw.n_cpus, 3);
    cr_assert_eq(hw.ram_bytes, 8 * GIB);
    unlink(p);
    cr_assert_eq(ops_hw_detect(&hw, &e), KM_EIO);
    cr_assert(strstr(e.msg, "meminfo: No such file"), "%s", e.msg);
    snprintf(p, sizeof p, "%s/cpuinfo", dir);
    unlink(p);
    rmdir(dir);
    unsetenv("KANOA_PROC_ROOT");
}

Test(ops, nvidia_smi_csv)
{
    struct ops_gpus g;
    struct km_err e;
    cr_assert_eq(ops_gpu_parse_smi("NVIDIA GeForce RTX 4090, 24564\n"
                                   "NVIDIA A100-SXM4-80GB, 81920\n\n", &g, &e),
                 KM_OK);
    cr_assert_eq(g.n, 2);
    cr_assert_str_eq(g.gpu[0].name, "NVIDIA GeForce RTX 4090");
    cr_assert_eq(g.gpu[0].mem_bytes, 24564 * MIB);
    cr_assert_eq(g.gpu[1].mem_bytes, 81920 * MIB);
    cr_assert_str_eq(g.source, "nvidia-smi");
    cr_assert_eq(ops_gpu_parse_smi("", &g, &e), KM_OK);
    cr_assert_eq(g.n, 0);
    cr_assert_eq(ops_gpu_parse_smi("Tesla T4, [N/A]\n", &g, &e), KM_EFORMAT);
    cr_assert_str_eq(e.msg, "nvidia-smi: memory.total ' [N/A]' is not a "
                     "number of MiB");
    cr_assert_eq(ops_gpu_parse_smi("No devices were found\n", &g, &e),
                 KM_EFORMAT);
}

Test(ops, nvml_missing_library_is_not_found)
{
    struct ops_gpus g;
    struct km_err e;
    cr_assert_eq(ops_gpu_nvml("/nonexistent/libnvidia-ml.so.1", &g, &e),
                 KM_ENOTFOUND);
    cr_assert(strstr(e.msg, "cannot load /nonexistent/libnvidia-ml.so.1"));
    /* a library without the NVML symbols */
    cr_assert_eq(ops_gpu_nvml("libm.so.6", &g, &e), KM_EUNSUPPORTED);
    cr_assert_str_eq(e.msg, "libm.so.6: no symbol nvmlInit_v2");
    setenv("KANOA_NVML_LIB", "none", 1);
    setenv("KANOA_NVIDIA_SMI", "none", 1);
    cr_assert_eq(ops_gpu_detect(&g, &e), KM_OK);
    cr_assert_eq(g.n, 0);
    cr_assert_str_eq(g.source, "none");
    cr_assert_str_eq(g.note, "NVML disabled by KANOA_NVML_LIB=none; "
                     "nvidia-smi disabled by KANOA_NVIDIA_SMI=none");
}

static void plan_gib(int n, double gib, struct ops_plan *p)
{
    struct km_err e;
    int rc = ops_plan_make(n, (unsigned long long)(gib * GIB), 64 * GIB, 16,
                           p, &e);
    cr_assert_eq(rc, KM_OK, "%s", e.msg);
}

Test(ops, plan_16g)
{
    struct ops_plan p;
    plan_gib(1, 16, &p);
    cr_assert(p.gpu);
    cr_assert_float_eq(p.embed_mem_util, 0.10, 1e-9);
    const struct ops_choice *m = &p.fam[OPS_MOLMO];
    const struct ops_choice *g = &p.fam[OPS_GEMMA3];
    const struct ops_choice *l = &p.fam[OPS_LLAMA3];
    cr_assert_str_eq(m->preset, "molmo-7b-d");
    cr_assert_str_eq(m->vllm_args, "--max-model-len 4096 "
                     "--gpu-memory-utilization 0.80 --max-num-seqs 46 "
                     "--quantization bitsandbytes");
    cr_assert_str_eq(g->preset, "gemma3-12b");
    cr_assert_str_eq(g->model, "google/gemma-3-12b-it");
    cr_assert_str_eq(g->vllm_args, "--max-model-len 16384 "
                     "--gpu-memory-utilization 0.80 --max-num-seqs 6 "
                     "--quantization bitsandbytes");
    cr_assert_str_eq(l->preset, "llama3.1-8b");
    cr_assert_str_eq(l->quant, "bitsandbytes");
    cr_assert_eq(l->max_model_len, 16384);
}

Test(ops, plan_80g_uses_bf16_for_gemma)
{
    struct ops_plan p;
    plan_gib(1, 80, &p);
    cr_assert_str_eq(p.fam[OPS_GEMMA3].preset, "gemma3-27b");
    cr_assert_str_eq(p.fam[OPS_GEMMA3].quant, "bf16");
    cr_assert_str_eq(p.fam[OPS_GEMMA3].vllm_args, "--max-model-len 32768 "
                     "--gpu-memory-utilization 0.87 --max-num-seqs 30");
    cr_assert_str_eq(p.fam[OPS_LLAMA3].preset, "llama3.1-70b");
    cr_assert_str_eq(p.fam[OPS_MOLMO].quant, "bf16");
    cr_assert_eq(p.fam[OPS_MOLMO].max_num_seqs, 64);
}

Test(ops, plan_tensor_parallel_on_two_gpus)
{
    struct ops_plan p;
    plan_gib(2, 40, &p);
    /* 70B in 4-bit does not fit one 40 GiB card but fits two */
    const struct ops_choice *l = &p.fam[OPS_LLAMA3];
    cr_assert_str_eq(l->preset, "llama3.1-70b");
    cr_assert_eq(l->tensor_parallel, 2);
    cr_assert(strstr(l->vllm_args, " --tensor-parallel-size 2 "
                     "--quantization bitsandbytes"), "%s", l->vllm_args);
}

Test(ops, plan_nothing_fits_4g)
{
    struct ops_plan p;
    plan_gib(1, 4, &p);
    cr_assert_not(p.fam[OPS_MOLMO].ok);
    cr_assert_not(p.fam[OPS_GEMMA3].ok);
    cr_assert_str_eq(p.fam[OPS_GEMMA3].why, "no gemma3 preset fits 1 x 4.0 "
                     "GiB (even 4-bit at 4096 tokens)");
    struct km_err e;
    cr_assert_eq(ops_plan_make(1, 100 * MIB, 0, 1, &p, &e), KM_EINVAL);
    cr_assert_str_eq(e.msg, "GPU memory 104857600 bytes is below 1 GiB");
}

Test(ops, plan_cpu)
{
    struct ops_plan p;
    struct km_err e;
    cr_assert_eq(ops_plan_make(0, 0, 16 * GIB, 8, &p, &e), KM_OK);
    cr_assert_not(p.gpu);
    cr_assert_not(p.fam[OPS_MOLMO].ok);
    cr_assert_str_eq(p.fam[OPS_MOLMO].why, "molmo needs a GPU (vLLM): the "
                     "built-in CPU engine does not run it");
    cr_assert_str_eq(p.fam[OPS_LLAMA3].preset, "llama3.1-8b");
    cr_assert_str_eq(p.fam[OPS_LLAMA3].gguf_file,
                     "Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf");
    cr_assert_str_eq(p.fam[OPS_GEMMA3].preset, "gemma3-12b");
    cr_assert_eq(ops_plan_make(0, 0, 8 * GIB, 8, &p, &e), KM_OK);
    cr_assert_str_eq(p.fam[OPS_LLAMA3].preset, "llama3.2-3b");
    cr_assert_str_eq(p.fam[OPS_GEMMA3].preset, "gemma3-4b");
    cr_assert_eq(ops_plan_make(0, 0, 2 * GIB, 8, &p, &e), KM_OK);
    cr_assert_not(p.fam[OPS_LLAMA3].ok);
    cr_assert_str_eq(p.fam[OPS_LLAMA3].why, "no llama3 GGUF fits 60% of "
                     "2.0 GiB RAM");
}

struct kv {
    char keys[32][64];
    char vals[32][512];
    int n;
};

static void collect(void *ud, const char *k, const char *v)
{
    struct kv *s = ud;
    if (s->n < 32) {
        snprintf(s->keys[s->n], 64, "%s", k);
        snprintf(s->vals[s->n], 512, "%s", v);
        s->n++;
    }
}

static const char *get(const struct kv *s, const char *k)
{
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->keys[i], k) == 0)
            return s->vals[i];
    return NULL;
}

Test(ops, env_render_write_and_read_back)
{
    struct ops_plan p;
    struct km_buf b;
    struct km_err e;
    plan_gib(1, 24, &p);
    km_buf_init(&b, 1 << 16);
    cr_assert_eq(ops_env_render(&p, "1 x test GPU", "/srv/secrets", &b),
                 KM_OK);
    char dir[] = "/tmp/km-ops-envXXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    cr_assert_eq(ops_write_file(dir, ".env", b.data, b.len, 0644, &e), KM_OK);
    struct kv s = {0};
    char path[256];
    snprintf(path, sizeof path, "%s/.env", dir);
    cr_assert_eq(ops_env_read(path, collect, &s, &e), KM_OK);
    cr_assert_str_eq(get(&s, "KANOA_PLAN"), "gpu");
    cr_assert_str_eq(get(&s, "KANOA_SECRETS_DIR"), "/srv/secrets");
    cr_assert_str_eq(get(&s, "BIND_ADDRESS"), "127.0.0.1");
    cr_assert_str_eq(get(&s, "GEMMA3_MODEL"), "google/gemma-3-27b-it");
    cr_assert_str_eq(get(&s, "LLAMA3_VLLM_ARGS"), "--max-model-len 8192 "
                     "--gpu-memory-utilization 0.83 --max-num-seqs 15");
    cr_assert_str_eq(get(&s, "COMPOSE_PROFILES"),
                     "gateway,pgvector,monitoring,embeddings,vllm-gemma3");
    cr_assert_str_eq(get(&s, "KANOA_UPSTREAM"),
                     "gemma3=http://vllm-gemma3:8000,api-key-env=VLLM_API_KEY"
                     " embed=http://embeddings:8000,api-key-env=VLLM_API_KEY");
    cr_assert_str_eq(get(&s, "EMBED_VLLM_ARGS"),
                     "--gpu-memory-utilization 0.07 --max-model-len 512");
    /* secrets: created once, never overwritten */
    struct km_buf created;
    km_buf_init(&created, 4096);
    cr_assert_eq(ops_secrets_init(dir, &created, &e), KM_OK);
    cr_assert_str_eq(km_buf_str(&created), "vllm_api_key kanoa_api_key "
                     "postgres_password grafana_admin_password");
    char sp[256], key1[128] = "", key2[128] = "";
    snprintf(sp, sizeof sp, "%s/secrets/vllm_api_key", dir);
    FILE *f = fopen(sp, "r");
    cr_assert(fgets(key1, sizeof key1, f));
    fclose(f);
    cr_assert_eq(strlen(key1), 49, "48 hex digits and a newline");
    km_buf_reset(&created);
    cr_assert_eq(ops_secrets_init(dir, &created, &e), KM_OK);
    cr_assert_str_eq(km_buf_str(&created), "");
    f = fopen(sp, "r");
    cr_assert(fgets(key2, sizeof key2, f));
    fclose(f);
    cr_assert_str_eq(key1, key2);
    struct stat st;
    snprintf(sp, sizeof sp, "%s/secrets", dir);
    cr_assert_eq(stat(sp, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0700);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
    km_buf_free(&created);
    km_buf_free(&b);
}

Test(ops, env_read_quotes_comments_export)
{
    char path[] = "/tmp/km-ops-envfileXXXXXX";
    int fd = mkstemp(path);
    const char *t = "# comment\n\nexport A=1\nB = \"two words\"\nC='x'\n"
                    "bad line\n=novalue\n";
    cr_assert_eq(write(fd, t, strlen(t)), (ssize_t)strlen(t));
    close(fd);
    struct kv s = {0};
    struct km_err e;
    cr_assert_eq(ops_env_read(path, collect, &s, &e), KM_OK);
    cr_assert_eq(s.n, 3);
    cr_assert_str_eq(get(&s, "A"), "1");
    cr_assert_str_eq(get(&s, "B"), "two words");
    cr_assert_str_eq(get(&s, "C"), "x");
    unlink(path);
    cr_assert_eq(ops_env_read(path, collect, &s, &e), KM_ENOTFOUND);
}

Test(ops, redact_url)
{
    char out[256];
    ops_redact_url("postgresql://kanoa:s3cret@db:5432/kb", out, sizeof out);
    cr_assert_str_eq(out, "postgresql://kanoa:***@db:5432/kb");
    ops_redact_url("http://127.0.0.1:8080/health", out, sizeof out);
    cr_assert_str_eq(out, "http://127.0.0.1:8080/health");
    ops_redact_url("http://host/a@b", out, sizeof out);
    cr_assert_str_eq(out, "http://host/a@b");
}

Test(ops, status_closed_port_is_down)
{
    struct ops_check c = {.kind = OPS_CHECK_HTTP};
    snprintf(c.name, sizeof c.name, "gateway");
    /* port 1 on loopback: nothing listens there */
    snprintf(c.target, sizeof c.target, "http://127.0.0.1:1/health");
    cr_assert_eq(ops_status_check(&c, 2000), KM_ENET);
    cr_assert_not(c.up);
    cr_assert_eq(c.http_status, 0);
    cr_assert(strstr(c.detail, "onnect"), "%s", c.detail);
    struct ops_check d = {.kind = OPS_CHECK_PG};
    snprintf(d.name, sizeof d.name, "database");
    snprintf(d.target, sizeof d.target,
             "postgresql://u:pw@127.0.0.1:1/kb");
    cr_assert_eq(ops_status_check(&d, 2000), KM_ENET);
    cr_assert_str_eq(d.detail, "no response");
    struct km_buf b;
    km_buf_init(&b, 4096);
    struct ops_check both[2] = {c, d};
    cr_assert_eq(ops_status_table(both, 2, &b), KM_OK);
    cr_assert(strstr(km_buf_str(&b), "postgresql://u:***@127.0.0.1:1/kb"));
    cr_assert(strstr(km_buf_str(&b), "database         DOWN"));
    cr_assert_null(strstr(km_buf_str(&b), "pw@"));
    km_buf_free(&b);
}
