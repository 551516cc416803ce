/* fuzz_config.c - the YAML config file (src/server/config.c).
 *
 * The input is the file's content, handed to srv_config_load_yaml through a
 * memfd (the loader takes a path). Property: it loads or fails with a
 * message; the resulting settings print; nothing leaks. */
#include "fuzz.h"

#include "server/server.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

int fuzz_config(const uint8_t *data, size_t size)
{
    int fd = memfd_create("fuzz-config", MFD_CLOEXEC);
    if (fd < 0)
        abort(); /* harness set-up */
    if (size && write(fd, data, size) != (ssize_t)size)
        abort();
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    struct srv_config c;
    struct km_err err;
    srv_config_init(&c);
    if (srv_config_load_yaml(&c, path, &err) != KM_OK && !err.msg[0])
        abort(); /* a refusal must say why */
    FILE *out = fopen("/dev/null", "w");
    if (out) {
        srv_config_print(&c, out);
        fclose(out);
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
