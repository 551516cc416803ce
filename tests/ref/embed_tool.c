/* embed_tool.c - test-only C side of the embedding reference check (built
 * by tests/ref/run_embed.sh; owned by "arch").
 *
 *   embed_tool MODEL OUT.f32 THREADS ID... [-- ID...]...
 *       the engine's embeddings of each id sequence (one eng_embed call,
 *       all sequences in one batch), n_embd f32 per sequence
 */
#include "base/mem.h"
#include "engine/engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: embed_tool MODEL OUT THREADS ID... [-- ID...]...\n");
        return 2;
    }
    size_t cap = (size_t)argc, n = 1;
    int32_t **ids = km_calloc(cap, sizeof *ids);
    size_t *n_ids = km_calloc(cap, sizeof *n_ids);
    for (size_t i = 0; i < cap; i++)
        ids[i] = km_calloc(cap, sizeof **ids);
    for (int a = 4; a < argc; a++) {
        if (strcmp(argv[a], "--") == 0)
            n++;
        else
            ids[n - 1][n_ids[n - 1]++] = atoi(argv[a]);
    }
    struct eng_load_params p;
    eng_load_params_default(&p);
    p.path = argv[1];
    p.n_threads = atoi(argv[3]);
    struct eng_model *m = NULL;
    struct km_err err;
    float *out = NULL;
    struct eng_model_info info;
    int rc = eng_model_open(&p, &m, &err);
    if (rc == KM_OK) {
        eng_model_info(m, &info);
        out = km_calloc(n * (size_t)info.n_embd, sizeof *out);
        rc = eng_embed(m, (const int32_t *const *)ids, n_ids, n, out, &err);
    }
    if (rc == KM_OK) {
        FILE *f = fopen(argv[2], "wb");
        size_t cnt = n * (size_t)info.n_embd;
        if (!f || fwrite(out, sizeof *out, cnt, f) != cnt)
            rc = km_fail(&err, KM_EIO, "cannot write %s", argv[2]);
        if (f)
            fclose(f);
    }
    if (rc != KM_OK)
        fprintf(stderr, "embed_tool: %s\n", km_err_text(&err));
    for (size_t i = 0; i < cap; i++)
        km_free(ids[i]);
    km_free(ids);
    km_free(n_ids);
    km_free(out);
    eng_model_close(m);
    return rc == KM_OK ? 0 : 1;
}
