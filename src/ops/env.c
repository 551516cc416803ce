/* env.c - render a plan as text: the explanation printed by `init` and the
 * `.env` file read by deploy/compose/compose.yaml; read env files back
 * (see ops.h). */
#include "ops/ops.h"

#include "base/mem.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ENV_FILE_MAX (1u << 20)
#define EMBED_MODEL "BAAI/bge-small-en-v1.5"

/* Preference for the default vllm-* profile: vision first (kanoa reads
 * plots), then text. */
static const enum ops_family default_order[] = {OPS_GEMMA3, OPS_MOLMO,
                                                OPS_LLAMA3};

static const char *upper(enum ops_family f)
{
    switch (f) {
    case OPS_MOLMO: return "MOLMO";
    case OPS_GEMMA3: return "GEMMA3";
    case OPS_LLAMA3: return "LLAMA3";
    default: return "X";
    }
}

/* Fixed flags the compose file adds for each family. */
static const char *fixed_flags(enum ops_family f)
{
    switch (f) {
    case OPS_MOLMO:
        return "--trust-remote-code --limit-mm-per-prompt '{\"image\":1}'";
    case OPS_GEMMA3:
        return "--limit-mm-per-prompt '{\"image\":1}'";
    default:
        return "";
    }
}

static const struct ops_choice *default_choice(const struct ops_plan *plan)
{
    for (size_t i = 0; i < 3; i++)
        if (plan->fam[default_order[i]].ok)
            return &plan->fam[default_order[i]];
    return NULL;
}

static int explain_gpu(const struct ops_plan *plan, struct km_buf *out)
{
    int rc = KM_OK;
    for (int f = 0; f < OPS_N_FAMILIES && rc == KM_OK; f++) {
        const struct ops_choice *c = &plan->fam[f];
        if (!c->ok) {
            rc = km_buf_printf(out, "  %-7s none: %s\n", c->family, c->why);
            continue;
        }
        rc = km_buf_printf(out, "  %-7s %s (%s), context %d, %d sequences\n"
                           "          because %s\n"
                           "          vllm serve %s --served-model-name %s "
                           "%s%s%s\n",
                           c->family, c->preset, c->model, c->max_model_len,
                           c->max_num_seqs, c->why, c->model, c->family,
                           c->vllm_args, *fixed_flags(f) ? " " : "",
                           fixed_flags(f));
    }
    const struct ops_choice *d = default_choice(plan);
    if (rc == KM_OK)
        rc = km_buf_printf(out, "  %-7s %s, --gpu-memory-utilization %.2f on "
                           "GPU 0\n", "embed", EMBED_MODEL,
                           plan->embed_mem_util);
    if (rc == KM_OK && d)
        rc = km_buf_printf(out, "default profiles: gateway, embeddings, "
                           "vllm-%s (one vllm-* profile at a time: each is "
                           "sized for the whole GPU)\n", d->family);
    return rc;
}

static int explain_cpu(const struct ops_plan *plan, struct km_buf *out)
{
    int rc = KM_OK;
    for (int f = 0; f < OPS_N_FAMILIES && rc == KM_OK; f++) {
        const struct ops_choice *c = &plan->fam[f];
        if (!c->ok)
            rc = km_buf_printf(out, "  %-7s none: %s\n", c->family, c->why);
        else
            rc = km_buf_printf(out, "  %-7s %s, %s / %s\n          because "
                               "%s\n", c->family, c->preset, c->model,
                               c->gguf_file, c->why);
    }
    if (rc == KM_OK)
        rc = km_buf_puts(out, "no GPU: run the built-in engine without "
                         "Docker: kanoa-mlops pull REPO --include FILE, then "
                         "kanoa-mlops serve --model PATH\n");
    return rc;
}

int ops_plan_explain(const struct ops_plan *plan, struct km_buf *out)
{
    int rc;
    if (plan->gpu)
        rc = km_buf_printf(out, "plan: GPU, %d x %.1f GiB; %d CPUs, %.1f GiB "
                           "RAM\n", plan->n_gpus,
                           plan->gpu_mem_bytes / OPS_GIB, plan->n_cpus,
                           plan->ram_bytes / OPS_GIB);
    else
        rc = km_buf_printf(out, "plan: CPU (no GPU); %d CPUs, %.1f GiB RAM\n",
                           plan->n_cpus, plan->ram_bytes / OPS_GIB);
    if (rc != KM_OK)
        return rc;
    return plan->gpu ? explain_gpu(plan, out) : explain_cpu(plan, out);
}

static int env_gpu(const struct ops_plan *plan, struct km_buf *out)
{
    int rc = KM_OK;
    const struct ops_choice *d = default_choice(plan);
    for (int f = 0; f < OPS_N_FAMILIES && rc == KM_OK; f++) {
        const struct ops_choice *c = &plan->fam[f];
        if (!c->ok)
            rc = km_buf_printf(out, "# %s: %s\n", c->family, c->why);
        else
            rc = km_buf_printf(out, "%s_MODEL=%s\n%s_VLLM_ARGS=%s\n",
                               upper(f), c->model, upper(f), c->vllm_args);
    }
    if (rc == KM_OK)
        rc = km_buf_printf(out, "EMBED_MODEL=%s\nEMBED_VLLM_ARGS="
                           "--gpu-memory-utilization %.2f --max-model-len 512"
                           "\n", EMBED_MODEL, plan->embed_mem_util);
    if (rc == KM_OK)
        rc = km_buf_printf(out, "COMPOSE_PROFILES=gateway,pgvector,"
                           "monitoring,embeddings%s%s\n",
                           d ? ",vllm-" : "", d ? d->family : "");
    if (rc == KM_OK)
        rc = km_buf_printf(out, "KANOA_UPSTREAM=%s%s%s%sembed=http://"
                           "embeddings:8000,api-key-env=VLLM_API_KEY\n",
                           d ? d->family : "", d ? "=http://vllm-" : "",
                           d ? d->family : "",
                           d ? ":8000,api-key-env=VLLM_API_KEY " : "");
    return rc;
}

static int env_cpu(const struct ops_plan *plan, struct km_buf *out)
{
    int rc = KM_OK;
    for (int f = 0; f < OPS_N_FAMILIES && rc == KM_OK; f++) {
        const struct ops_choice *c = &plan->fam[f];
        if (!c->ok)
            rc = km_buf_printf(out, "# %s: %s\n", c->family, c->why);
        else
            rc = km_buf_printf(out, "%s_GGUF_REPO=%s\n%s_GGUF_FILE=%s\n",
                               upper(f), c->model, upper(f), c->gguf_file);
    }
    if (rc == KM_OK)
        rc = km_buf_puts(out, "COMPOSE_PROFILES=pgvector,monitoring\n");
    return rc;
}

static void hf_cache(char *out, size_t cap)
{
    const char *hub = getenv("HF_HUB_CACHE");
    const char *home = getenv("HF_HOME");
    const char *h = getenv("HOME");
    if (hub && *hub)
        snprintf(out, cap, "%s", hub);
    else if (home && *home)
        snprintf(out, cap, "%s/hub", home);
    else
        snprintf(out, cap, "%s/.cache/huggingface/hub", h && *h ? h : "/root");
}

int ops_env_render(const struct ops_plan *plan, const char *gpu_desc,
                   const char *secrets_dir, struct km_buf *out)
{
    char cache[1024];
    hf_cache(cache, sizeof cache);
    int rc = km_buf_printf(out,
        "# .env for deploy/compose/compose.yaml, written by `kanoa-mlops "
        "init`.\n# Hardware: %s; %d CPUs, %.1f GiB RAM.\n"
        "# Re-run init to re-plan. Secrets are not here: see secrets/.\n"
        "KANOA_PLAN=%s\nKANOA_GPUS=%d\nKANOA_GPU_MEM_MIB=%llu\n"
        "HF_HUB_CACHE_DIR=%s\nKANOA_SECRETS_DIR=%s\nBIND_ADDRESS=127.0.0.1\n"
        "GATEWAY_PORT=8080\nGRAFANA_PORT=3000\n",
        gpu_desc, plan->n_cpus, plan->ram_bytes / OPS_GIB,
        plan->gpu ? "gpu" : "cpu", plan->n_gpus,
        plan->gpu_mem_bytes / (1024ull * 1024ull), cache, secrets_dir);
    if (rc != KM_OK)
        return rc;
    return plan->gpu ? env_gpu(plan, out) : env_cpu(plan, out);
}

int ops_write_file(const char *dir, const char *name, const char *text,
                   size_t len, int mode, struct km_err *err)
{
    char path[4096], tmp[4200];
    int rc = KM_OK;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0)
        return km_fail(err, KM_EIO, "cannot create %s: %s", tmp,
                       strerror(errno));
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, text + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            rc = km_fail(err, errno == ENOSPC ? KM_ENOSPACE : KM_EIO,
                         "cannot write %s: %s", tmp, strerror(errno));
            break;
        }
        off += (size_t)w;
    }
    if (close(fd) != 0 && rc == KM_OK)
        rc = km_fail(err, KM_EIO, "cannot close %s: %s", tmp,
                     strerror(errno));
    if (rc == KM_OK && rename(tmp, path) != 0)
        rc = km_fail(err, KM_EIO, "cannot rename %s to %s: %s", tmp, path,
                     strerror(errno));
    if (rc != KM_OK)
        unlink(tmp);
    return rc;
}

/* Strip spaces and one level of matching quotes, in place. */
static char *trim_value(char *v)
{
    while (*v == ' ' || *v == '\t')
        v++;
    size_t n = strlen(v);
    while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t' || v[n - 1] == '\r'))
        v[--n] = '\0';
    if (n >= 2 && (v[0] == '"' || v[0] == '\'') && v[n - 1] == v[0]) {
        v[n - 1] = '\0';
        v++;
    }
    return v;
}

static void env_line(char *line, void (*fn)(void *, const char *,
                                             const char *), void *ud)
{
    while (*line == ' ' || *line == '\t')
        line++;
    if (*line == '#' || *line == '\0')
        return;
    if (strncmp(line, "export ", 7) == 0)
        line += 7;
    char *eq = strchr(line, '=');
    if (!eq || eq == line)
        return;
    *eq = '\0';
    char *key = trim_value(line);
    fn(ud, key, trim_value(eq + 1));
}

int ops_env_read(const char *path,
                 void (*fn)(void *ud, const char *key, const char *value),
                 void *ud, struct km_err *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return km_fail(err, errno == ENOENT ? KM_ENOTFOUND : KM_EIO,
                       "cannot open %s: %s", path, strerror(errno));
    char line[4096];
    size_t total = 0;
    int rc = KM_OK;
    while (fgets(line, sizeof line, f)) {
        total += strlen(line);
        if (total > ENV_FILE_MAX) {
            rc = km_fail(err, KM_ERANGE, "%s: larger than %u bytes", path,
                         ENV_FILE_MAX);
            break;
        }
        line[strcspn(line, "\n")] = '\0';
        env_line(line, fn, ud);
    }
    fclose(f);
    return rc;
}

static const char *const secret_names[] = {
    "vllm_api_key", "kanoa_api_key", "postgres_password",
    "grafana_admin_password",
};

static int random_hex(char *out, size_t n_bytes, struct km_err *err)
{
    unsigned char raw[64];
    if (n_bytes > sizeof raw)
        return km_fail(err, KM_EINVAL, "secret of %zu bytes is too long",
                       n_bytes);
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return km_fail(err, KM_EIO, "cannot open /dev/urandom: %s",
                       strerror(errno));
    ssize_t r = read(fd, raw, n_bytes);
    close(fd);
    if (r != (ssize_t)n_bytes)
        return km_fail(err, KM_EIO, "short read from /dev/urandom");
    for (size_t i = 0; i < n_bytes; i++)
        sprintf(out + 2 * i, "%02x", raw[i]);
    return KM_OK;
}

int ops_secrets_init(const char *dir, struct km_buf *created,
                     struct km_err *err)
{
    char sdir[4096];
    snprintf(sdir, sizeof sdir, "%s/secrets", dir);
    if (mkdir(sdir, 0700) != 0 && errno != EEXIST)
        return km_fail(err, KM_EIO, "cannot create %s: %s", sdir,
                       strerror(errno));
    for (size_t i = 0; i < sizeof secret_names / sizeof secret_names[0]; i++) {
        char path[4200], hex[2 * 24 + 2];
        snprintf(path, sizeof path, "%s/%s", sdir, secret_names[i]);
        if (access(path, F_OK) == 0)
            continue;
        int rc = random_hex(hex, 24, err);
        if (rc != KM_OK)
            return rc;
        strcat(hex, "\n");
        rc = ops_write_file(sdir, secret_names[i], hex, strlen(hex), 0644,
                            err);
        if (rc != KM_OK)
            return rc;
        rc = km_buf_printf(created, "%s%s", created->len ? " " : "",
                           secret_names[i]);
        if (rc != KM_OK)
            return km_fail(err, rc, "out of memory listing secrets");
    }
    return KM_OK;
}
