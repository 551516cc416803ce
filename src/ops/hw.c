/* hw.c - CPU and RAM detection from /proc (see ops.h). */
#include "ops/ops.h"

#include "base/mem.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PROC_FILE_MAX (4u << 20)

/* Value after "key<spaces>:" on a line starting with key, or NULL. */
static const char *field_value(const char *line, const char *key)
{
    size_t k = strlen(key);
    if (strncmp(line, key, k) != 0)
        return NULL;
    const char *p = line + k;
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p != ':')
        return NULL;
    p++;
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

int ops_hw_parse_cpuinfo(const char *text, struct ops_hw *hw)
{
    hw->n_cpus = 0;
    hw->cpu_model[0] = '\0';
    const char *line = text;
    while (line && *line) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        char tmp[256];
        size_t n = len < sizeof tmp - 1 ? len : sizeof tmp - 1;
        memcpy(tmp, line, n);
        tmp[n] = '\0';
        if (field_value(tmp, "processor"))
            hw->n_cpus++;
        const char *v = field_value(tmp, "model name");
        if (v && !hw->cpu_model[0])
            snprintf(hw->cpu_model, sizeof hw->cpu_model, "%s", v);
        line = end ? end + 1 : NULL;
    }
    return KM_OK;
}

int ops_hw_parse_meminfo(const char *text, struct ops_hw *hw,
                         struct km_err *err)
{
    const char *p = strstr(text, "MemTotal:");
    if (!p || (p != text && p[-1] != '\n'))
        return km_fail(err, KM_EFORMAT, "meminfo: no MemTotal line");
    p += strlen("MemTotal:");
    char *end = NULL;
    errno = 0;
    unsigned long long kb = strtoull(p, &end, 10);
    if (errno || end == p)
        return km_fail(err, KM_EFORMAT, "meminfo: MemTotal has no number");
    while (*end == ' ')
        end++;
    if (strncmp(end, "kB", 2) != 0)
        return km_fail(err, KM_EFORMAT,
                       "meminfo: MemTotal unit is not kB");
    hw->ram_bytes = kb * 1024ull;
    return KM_OK;
}

static int read_text(const char *path, struct km_buf *b, struct km_err *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return km_fail(err, KM_EIO, "cannot open %s: %s", path,
                       strerror(errno));
    int rc = KM_OK;
    char chunk[4096];
    for (;;) {
        size_t n = fread(chunk, 1, sizeof chunk, f);
        if (n == 0)
            break;
        rc = km_buf_append(b, chunk, n);
        if (rc != KM_OK) {
            km_fail(err, rc, "%s: larger than %u bytes or out of memory",
                    path, PROC_FILE_MAX);
            break;
        }
    }
    fclose(f);
    return rc;
}

int ops_hw_detect(struct ops_hw *hw, struct km_err *err)
{
    const char *root = getenv("KANOA_PROC_ROOT");
    char path[1024];
    struct km_buf b;
    int rc;
    km_buf_init(&b, PROC_FILE_MAX);
    memset(hw, 0, sizeof *hw);
    if (!root || !*root)
        root = "/proc";
    snprintf(path, sizeof path, "%s/cpuinfo", root);
    rc = read_text(path, &b, err);
    if (rc != KM_OK)
        goto out;
    ops_hw_parse_cpuinfo(km_buf_str(&b), hw);
    km_buf_reset(&b);
    snprintf(path, sizeof path, "%s/meminfo", root);
    rc = read_text(path, &b, err);
    if (rc != KM_OK)
        goto out;
    rc = ops_hw_parse_meminfo(km_buf_str(&b), hw, err);
    if (rc != KM_OK)
        km_err_prefix(err, "%s", path);
out:
    km_buf_free(&b);
    return rc;
}
