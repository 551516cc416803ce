/* fuzz_model.c - loading a model from a hostile GGUF file (src/engine:
 * engine.c, model.c, llama.c, gemma3.c, bert.c) and running one forward
 * pass: the hyper-parameters, tensor shapes and types a file declares must
 * be checked against each other before any buffer is sized from them.
 *
 * The input is the file, handed to eng_model_open through a memfd (the
 * loader takes a path). Property: it loads or fails with a message; a loaded
 * model evaluates two tokens (generation) or embeds them (embedding) without
 * a sanitizer report; everything is freed. Seeds: tiny `models synth`
 * files (Q4_0, 1 layer). */
#include "fuzz.h"

#include "base/mem.h"
#include "engine/engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

static void fz_model_run(struct eng_model *m)
{
    struct eng_model_info info;
    struct km_err err;
    int32_t ids[2] = {1, 0};
    eng_model_info(m, &info);
    if (info.n_vocab < 2 || info.n_embd < 1)
        abort(); /* a loaded model must have a usable shape */
    if (info.task == ENG_TASK_EMBED) {
        const int32_t *in[1] = {ids};
        size_t n_in[1] = {2};
        float *v = km_mallocarray((size_t)info.n_embd, sizeof *v);
        if (v)
            eng_embed(m, in, n_in, 1, v, &err);
        km_free(v);
        return;
    }
    struct eng_seq *s = NULL;
    float *logits = km_mallocarray((size_t)info.n_vocab, sizeof *logits);
    if (logits && eng_seq_new(m, 8, &s, &err) == KM_OK)
        eng_eval(s, ids, 2, logits, &err);
    eng_seq_free(s);
    km_free(logits);
}

int fuzz_model(const uint8_t *data, size_t size)
{
    int fd = memfd_create("fuzz-model", MFD_CLOEXEC);
    if (fd < 0 || (size && write(fd, data, size) != (ssize_t)size))
        abort(); /* harness set-up */
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    struct eng_load_params p;
    eng_load_params_default(&p);
    p.path = path;
    p.name = "fuzz";
    p.n_threads = 1;
    p.n_ctx = 8;
    p.n_slots = 1;
    p.n_batch = 4;
    struct eng_model *m = NULL;
    struct km_err err;
    if (eng_model_open(&p, &m, &err) == KM_OK)
        fz_model_run(m);
    else if (!err.msg[0])
        abort(); /* a refusal must say why */
    eng_model_close(m);
    close(fd);
    return 0;
}

#ifndef FUZZ_REPLAY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_model(data, size);
}
#endif
