/* ref_tool.c - test-only C side of the reference check (built by run.sh).
 *
 *   ref_tool logits MODEL OUT.f32 THREADS[:BATCH] ID...
 *                                   the engine's last-position logits as f32,
 *                                   evaluated in batches of BATCH tokens
 *                                   (default: the engine's)
 */
#include "base/mem.h"
#include "engine/engine.h"
#include "engine/quant.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int logits(int argc, char **argv)
{
    struct eng_load_params p;
    eng_load_params_default(&p);
    p.path = argv[2];
    p.n_threads = atoi(argv[4]);
    const char *batch = strchr(argv[4], ':');
    p.n_batch = batch ? atoi(batch + 1) : 0;
    p.n_slots = 1;
    int n = argc - 5;
    int32_t *ids = km_calloc((size_t)n, sizeof *ids);
    for (int i = 0; i < n; i++)
        ids[i] = atoi(argv[5 + i]);
    struct eng_model *m = NULL;
    struct eng_seq *s = NULL;
    struct km_err err;
    int rc = eng_model_open(&p, &m, &err);
    rc = rc ? rc : eng_seq_new(m, 0, &s, &err);
    struct eng_model_info info;
    float *l = NULL;
    if (rc == KM_OK) {
        eng_model_info(m, &info);
        l = km_calloc((size_t)info.n_vocab, sizeof *l);
        rc = eng_eval(s, ids, (size_t)n, l, &err);
    }
    if (rc == KM_OK) {
        FILE *f = fopen(argv[3], "wb");
        if (!f || fwrite(l, sizeof *l, (size_t)info.n_vocab, f) != (size_t)info.n_vocab)
            rc = km_fail(&err, KM_EIO, "cannot write %s", argv[3]);
        if (f)
            fclose(f);
    }
    if (rc != KM_OK)
        fprintf(stderr, "ref_tool: %s\n", km_err_text(&err));
    km_free(l);
    km_free(ids);
    eng_seq_free(s);
    eng_model_close(m);
    return rc == KM_OK ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc >= 6 && strcmp(argv[1], "logits") == 0)
        return logits(argc, argv);
    fprintf(stderr, "usage: ref_tool logits MODEL OUT THREADS[:BATCH] ID...\n");
    return 2;
}
