/* fuzz_gguf.c - libFuzzer harness for the GGUF reader: any byte string must
 * either open (and then every accessor stays in bounds) or fail cleanly. */
#include "engine/gguf.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void walk(const struct gguf_file *f)
{
    for (int64_t i = 0; i < gguf_n_kv(f); i++) {
        uint64_t len = 0, n = gguf_kv_arr_len(f, i);
        int64_t iv;
        double dv;
        gguf_kv_int(f, i, &iv);
        gguf_kv_float(f, i, &dv);
        gguf_kv_str(f, i, &len);
        gguf_kv_raw(f, i, &len);
        for (uint64_t j = 0; j < n && j < 64; j++) {
            const char *s = gguf_kv_arr_str(f, i, j, &len);
            if (s && len)
                (void)*(volatile const char *)(s + len - 1);
            gguf_kv_arr_int(f, i, j, &iv);
            gguf_kv_arr_float(f, i, j, &dv);
        }
    }
    for (int64_t i = 0; i < gguf_n_tensors(f); i++) {
        const struct gguf_tensor *t = gguf_tensor_at(f, i);
        if (t->nbytes)
            (void)*(volatile const uint8_t *)((const uint8_t *)t->data + t->nbytes - 1);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct gguf_file *f = NULL;
    struct km_err err;
    if (gguf_open_mem(data, size, "fuzz.gguf", &f, &err) == KM_OK) {
        walk(f);
        gguf_close(f);
    }
    return 0;
}
