/* fuzz_config.c - the YAML config file (src/server/config.c).
 *
 * The input is the file's content, handed to srv_config_load_yaml through a
 * memfd (the loader takes a path). Property: it loads or fails with a
 * message; what srv_config_print writes ("the effective settings as YAML")
 * loads again to the same settings (lines of unset strings, printed as
 * `null`, aside: the loader reads every scalar as text); nothing leaks. */
#include "fuzz.h"

#include "server/server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* A memfd holding data[0..n); its path goes to path[64]. */
static int fz_config_file(const void *data, size_t n, char *path)
{
    int fd = memfd_create("fuzz-config", MFD_CLOEXEC);
    if (fd < 0 || (n && write(fd, data, n) != (ssize_t)n))
        abort(); /* harness set-up */
    snprintf(path, 64, "/proc/self/fd/%d", fd);
    return fd;
}

/* srv_config_print into a malloc'd string (free). */
static char *fz_config_print(const struct srv_config *c, size_t *len)
{
    char *text = NULL;
    FILE *out = open_memstream(&text, len);
    if (!out)
        abort();
    srv_config_print(c, out);
    fclose(out);
    return text;
}

/* Equal line by line, except lines ending in ": null" in a. */
static void fz_config_same(const char *a, const char *b)
{
    while (*a && *b) {
        size_t la = strcspn(a, "\n"), lb = strcspn(b, "\n");
        if (!(la >= 6 && memcmp(a + la - 6, ": null", 6) == 0) &&
            (la != lb || memcmp(a, b, la) != 0))
            abort(); /* the printed settings did not load back the same */
        a += la + (a[la] == '\n');
        b += lb + (b[lb] == '\n');
    }
    if (*a || *b)
        abort();
}

static void fz_config_reload(const char *text, size_t len)
{
    char path[64];
    struct srv_config c;
    struct km_err err;
    int fd = fz_config_file(text, len, path);
    srv_config_init(&c);
    if (srv_config_load_yaml(&c, path, &err) != KM_OK)
        abort(); /* srv_config_print wrote YAML its own loader refuses */
    size_t len2 = 0;
    char *text2 = fz_config_print(&c, &len2);
    fz_config_same(text, text2);
    free(text2);
    srv_config_free(&c);
    close(fd);
}

int fuzz_config(const uint8_t *data, size_t size)
{
    char path[64];
    int fd = fz_config_file(data, size, path);
    struct srv_config c;
    struct km_err err;
    srv_config_init(&c);
    if (srv_config_load_yaml(&c, path, &err) == KM_OK) {
        size_t len = 0;
        char *text = fz_config_print(&c, &len);
        fz_config_reload(text, len);
        free(text);
    } else if (!err.msg[0]) {
        abort(); /* a refusal must say why */
    }
    srv_config_free(&c);
    close(fd);
    return 0;
}

#ifndef FUZZ_REPLAY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_config(data, size);
}
#endif
