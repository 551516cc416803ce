/* engine_eval.c - see engine_eval.h. */
#include "engine_eval.h"

#include "base/mem.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>

const char *engine_shared_file(const char *name)
{
    static char path[4096];
    const char *sh = getenv("KM_SHARED");
    snprintf(path, sizeof path, "%s/data/tokenizer/%s", sh ? sh : "../shared", name);
    return path;
}

float *engine_last_logits(struct eng_model *m, const int32_t *ids, size_t n, size_t chunk)
{
    struct eng_model_info info;
    eng_model_info(m, &info);
    float *l = km_calloc((size_t)info.n_vocab, sizeof *l);
    struct eng_seq *s;
    struct km_err err;
    cr_assert_eq(eng_seq_new(m, 0, &s, &err), KM_OK, "%s", km_err_text(&err));
    for (size_t i = 0; i < n; i += chunk) {
        size_t k = n - i < chunk ? n - i : chunk;
        cr_assert_eq(eng_eval(s, ids + i, k, i + k == n ? l : NULL, &err), KM_OK,
                     "%s", km_err_text(&err));
    }
    cr_assert_eq(eng_seq_pos(s), (int)n);
    eng_seq_free(s);
    return l;
}
