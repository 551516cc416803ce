/* gpu.c - NVIDIA GPU detection: NVML through dlopen, nvidia-smi as the
 * fallback (see ops.h). No build-time dependency on the NVIDIA driver.
 *
 * Test hooks: KANOA_NVML_LIB names the NVML shared library to load (the
 * tests build a fake one), KANOA_NVIDIA_SMI the nvidia-smi program to run
 * (the tests use a script). Setting either to "none" disables that source.
 */
#include "ops/ops.h"
#include "ops/ops_int.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NVML_SUCCESS 0
#define NVML_NAME_LEN 96
#define SMI_OUT_MAX (64u << 10)
#define SMI_TIMEOUT_MS 10000

/* The NVML ABI we use: nvmlDevice_t is an opaque pointer, nvmlMemory_t
 * is three unsigned long longs (total, free, used, in bytes). */
typedef struct nvml_device_st *nvml_device;
struct nvml_memory {
    unsigned long long total, free, used;
};

struct nvml_api {
    int (*init)(void);
    int (*shutdown)(void);
    int (*count)(unsigned int *);
    int (*handle)(unsigned int, nvml_device *);
    int (*name)(nvml_device, char *, unsigned int);
    int (*memory)(nvml_device, struct nvml_memory *);
};

static int load_api(void *dl, struct nvml_api *api, const char *lib,
                    struct km_err *err)
{
    static const char *const names[] = {
        "nvmlInit_v2", "nvmlShutdown", "nvmlDeviceGetCount_v2",
        "nvmlDeviceGetHandleByIndex_v2", "nvmlDeviceGetName",
        "nvmlDeviceGetMemoryInfo",
    };
    void *syms[6];
    for (size_t i = 0; i < 6; i++) {
        syms[i] = dlsym(dl, names[i]);
        if (!syms[i])
            return km_fail(err, KM_EUNSUPPORTED, "%s: no symbol %s", lib,
                           names[i]);
    }
    /* POSIX guarantees object/function pointer conversion for dlsym */
    memcpy(&api->init, &syms[0], sizeof(void *));
    memcpy(&api->shutdown, &syms[1], sizeof(void *));
    memcpy(&api->count, &syms[2], sizeof(void *));
    memcpy(&api->handle, &syms[3], sizeof(void *));
    memcpy(&api->name, &syms[4], sizeof(void *));
    memcpy(&api->memory, &syms[5], sizeof(void *));
    return KM_OK;
}

static int query_devices(const struct nvml_api *api, const char *lib,
                         struct ops_gpus *out, struct km_err *err)
{
    unsigned int n = 0;
    int r = api->count(&n);
    if (r != NVML_SUCCESS)
        return km_fail(err, KM_EIO, "%s: nvmlDeviceGetCount_v2 returned %d",
                       lib, r);
    for (unsigned int i = 0; i < n && out->n < OPS_MAX_GPUS; i++) {
        nvml_device dev = NULL;
        struct nvml_memory mem = {0};
        struct ops_gpu *g = &out->gpu[out->n];
        r = api->handle(i, &dev);
        if (r == NVML_SUCCESS)
            r = api->memory(dev, &mem);
        if (r != NVML_SUCCESS)
            return km_fail(err, KM_EIO, "%s: GPU %u: NVML call returned %d",
                           lib, i, r);
        char name[NVML_NAME_LEN] = "";
        if (api->name(dev, name, sizeof name) != NVML_SUCCESS)
            snprintf(name, sizeof name, "GPU %u", i);
        name[sizeof name - 1] = '\0';
        snprintf(g->name, sizeof g->name, "%s", name);
        g->mem_bytes = mem.total;
        out->n++;
    }
    return KM_OK;
}

int ops_gpu_nvml(const char *lib, struct ops_gpus *out, struct km_err *err)
{
    struct nvml_api api = {0};
    int rc;
    out->n = 0;
    void *dl = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
    if (!dl)
        return km_fail(err, KM_ENOTFOUND, "cannot load %s: %s", lib,
                       dlerror());
    rc = load_api(dl, &api, lib, err);
    if (rc != KM_OK)
        goto out;
    int r = api.init();
    if (r != NVML_SUCCESS) {
        rc = km_fail(err, KM_EIO, "%s: nvmlInit_v2 returned %d", lib, r);
        goto out;
    }
    rc = query_devices(&api, lib, out, err);
    api.shutdown();
    if (rc == KM_OK)
        snprintf(out->source, sizeof out->source, "nvml");
out:
    dlclose(dl);
    return rc;
}

/* One CSV line "name, mib" into g. */
static int parse_smi_line(const char *line, size_t len, struct ops_gpu *g,
                          struct km_err *err)
{
    char tmp[256];
    if (len >= sizeof tmp)
        return km_fail(err, KM_EFORMAT, "nvidia-smi: line longer than %zu "
                       "bytes", sizeof tmp - 1);
    memcpy(tmp, line, len);
    tmp[len] = '\0';
    char *comma = strrchr(tmp, ',');
    if (!comma)
        return km_fail(err, KM_EFORMAT, "nvidia-smi: line '%s' has no comma",
                       tmp);
    *comma = '\0';
    char *end = NULL;
    errno = 0;
    unsigned long long mib = strtoull(comma + 1, &end, 10);
    while (end && (*end == ' ' || *end == '\r'))
        end++;
    if (errno || end == comma + 1 || (end && *end) || mib == 0)
        return km_fail(err, KM_EFORMAT, "nvidia-smi: memory.total '%s' is "
                       "not a number of MiB", comma + 1);
    char *name = tmp;
    while (*name == ' ')
        name++;
    snprintf(g->name, sizeof g->name, "%s", name);
    g->mem_bytes = mib * 1024ull * 1024ull;
    return KM_OK;
}

int ops_gpu_parse_smi(const char *text, struct ops_gpus *out,
                      struct km_err *err)
{
    out->n = 0;
    const char *line = text;
    while (*line) {
        size_t len = strcspn(line, "\n");
        size_t blank = strspn(line, " \t\r");
        if (blank < len && out->n < OPS_MAX_GPUS) {
            int rc = parse_smi_line(line, len, &out->gpu[out->n], err);
            if (rc != KM_OK)
                return rc;
            out->n++;
        }
        line += len;
        if (*line == '\n')
            line++;
    }
    snprintf(out->source, sizeof out->source, "nvidia-smi");
    return KM_OK;
}

int ops_gpu_smi(const char *prog, struct ops_gpus *out, struct km_err *err)
{
    const char *argv[] = {prog, "--query-gpu=name,memory.total",
                          "--format=csv,noheader,nounits", NULL};
    struct km_buf b;
    int status = 0;
    km_buf_init(&b, SMI_OUT_MAX);
    int rc = ops__run_capture(argv, &b, 0, SMI_TIMEOUT_MS, &status, err);
    if (rc != KM_OK)
        goto out;
    if (status != 0) {
        rc = km_fail(err, KM_EIO, "%s exited with status %d", prog, status);
        goto out;
    }
    rc = ops_gpu_parse_smi(km_buf_str(&b), out, err);
out:
    km_buf_free(&b);
    return rc;
}

static int disabled(const char *v)
{
    return v && strcmp(v, "none") == 0;
}

int ops_gpu_detect(struct ops_gpus *out, struct km_err *err)
{
    struct km_err e1, e2;
    const char *lib = getenv("KANOA_NVML_LIB");
    const char *smi = getenv("KANOA_NVIDIA_SMI");
    memset(out, 0, sizeof *out);
    km_err_clear(&e1);
    km_err_clear(&e2);
    if (!lib || !*lib)
        lib = "libnvidia-ml.so.1";
    if (!smi || !*smi)
        smi = "nvidia-smi";
    if (disabled(lib))
        km_fail(&e1, KM_ENOTFOUND, "NVML disabled by KANOA_NVML_LIB=none");
    else if (ops_gpu_nvml(lib, out, &e1) == KM_OK && out->n > 0)
        return KM_OK;
    if (disabled(smi))
        km_fail(&e2, KM_ENOTFOUND, "nvidia-smi disabled by "
                "KANOA_NVIDIA_SMI=none");
    else if (ops_gpu_smi(smi, out, &e2) == KM_OK && out->n > 0)
        return KM_OK;
    out->n = 0;
    snprintf(out->source, sizeof out->source, "none");
    snprintf(out->note, sizeof out->note, "%.120s; %.120s",
             e1.code ? km_err_text(&e1) : "NVML reports no GPU",
             e2.code ? km_err_text(&e2) : "nvidia-smi reports no GPU");
    (void)err;
    return KM_OK;
}
