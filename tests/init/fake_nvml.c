/* fake_nvml.c - a stand-in for libnvidia-ml.so.1, built by tests/init/run.sh
 * and loaded by `kanoa-mlops init` through KANOA_NVML_LIB.
 *
 * FAKE_NVML_GPUS="NAME:BYTES;NAME:BYTES" lists the GPUs (empty: none);
 * FAKE_NVML_INIT=N makes nvmlInit_v2 return N (999 = NVML_ERROR_UNKNOWN).
 * Only the six entry points kanoa-mlops resolves are defined, with NVML's
 * signatures (nvmlDevice_t is a pointer; nvmlMemory_t is total/free/used). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct mem { unsigned long long total, free, used; };

static char names[16][96];
static unsigned long long sizes[16];
static unsigned int count;

int nvmlInit_v2(void)
{
    const char *fail = getenv("FAKE_NVML_INIT");
    if (fail && *fail)
        return atoi(fail);
    const char *spec = getenv("FAKE_NVML_GPUS");
    count = 0;
    while (spec && *spec && count < 16) {
        const char *end = strchr(spec, ';');
        size_t len = end ? (size_t)(end - spec) : strlen(spec);
        const char *colon = memchr(spec, ':', len);
        if (!colon)
            break;
        snprintf(names[count], sizeof names[count], "%.*s",
                 (int)(colon - spec), spec);
        sizes[count] = strtoull(colon + 1, NULL, 10);
        count++;
        spec = end ? end + 1 : "";
    }
    return 0;
}

int nvmlShutdown(void) { return 0; }

int nvmlDeviceGetCount_v2(unsigned int *n)
{
    *n = count;
    return 0;
}

int nvmlDeviceGetHandleByIndex_v2(unsigned int i, void **dev)
{
    if (i >= count)
        return 2; /* NVML_ERROR_INVALID_ARGUMENT */
    *dev = (void *)(unsigned long)(i + 1);
    return 0;
}

int nvmlDeviceGetName(void *dev, char *name, unsigned int len)
{
    unsigned long i = (unsigned long)dev - 1;
    snprintf(name, len, "%s", names[i]);
    return 0;
}

int nvmlDeviceGetMemoryInfo(void *dev, struct mem *m)
{
    unsigned long i = (unsigned long)dev - 1;
    m->total = sizes[i];
    m->free = sizes[i];
    m->used = 0;
    return 0;
}
