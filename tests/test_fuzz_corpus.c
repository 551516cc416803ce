/* test_fuzz_corpus.c - replays fuzz/corpus/<target>/ through the fuzz
 * harnesses (fuzz/fuzz_<target>.c, built here by gcc with ASan+UBSan and
 * without libFuzzer), so every input the fuzzers found or were seeded with
 * keeps passing: a crash, sanitizer report, leak or broken harness check
 * fails the target's test. Each file is read into a buffer of exactly its
 * size, as libFuzzer passes it, so over-reads are caught.
 * KM_FUZZ_CORPUS overrides the corpus root (default fuzz/corpus, from the
 * top of the tree, where tests/run.sh runs). */
#define FUZZ_REPLAY
#include "../fuzz/fuzz_chunk.c"
#include "../fuzz/fuzz_config.c"
#include "../fuzz/fuzz_gguf.c"
#include "../fuzz/fuzz_h1.c"
#include "../fuzz/fuzz_hub.c"
#include "../fuzz/fuzz_model.c"
#include "../fuzz/fuzz_oai_parse.c"
#include "../fuzz/fuzz_tok.c"
#include "../fuzz/fuzz_upstream.c"
#include "../fuzz/fuzz_vocab.c"

#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

TestSuite(fuzz_corpus, .timeout = 120);

/* The whole file in a malloc'd buffer of exactly its size (NULL if empty). */
static uint8_t *read_exact(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    cr_assert_eq(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    cr_assert_geq(n, 0);
    rewind(f);
    uint8_t *p = n > 0 ? malloc((size_t)n) : NULL;
    cr_assert(n == 0 || p);
    cr_assert_eq(fread(p, 1, (size_t)n, f), (size_t)n, "short read of %s", path);
    fclose(f);
    *len = (size_t)n;
    return p;
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

/* Run fn over every regular file of the target's corpus; at least one. */
static void replay(const char *target, int (*fn)(const uint8_t *, size_t))
{
    const char *root = getenv("KM_FUZZ_CORPUS");
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/%s", root ? root : "fuzz/corpus", target);
    struct dirent **ents = NULL;
    int n = scandir(dir, &ents, NULL, by_name);
    cr_assert_geq(n, 0, "cannot read the corpus %s", dir);
    size_t files = 0;
    for (int i = 0; i < n; i++) {
        char path[2048];
        size_t len = 0;
        if (ents[i]->d_name[0] != '.') {
            snprintf(path, sizeof path, "%s/%s", dir, ents[i]->d_name);
            fprintf(stderr, "replay %s\n", path); /* names a crashing input */
            uint8_t *data = read_exact(path, &len);
            fn(data, len);
            free(data);
            files++;
        }
        free(ents[i]);
    }
    free(ents);
    cr_assert_gt(files, 0, "the corpus %s is empty", dir);
}

Test(fuzz_corpus, gguf) { replay("gguf", fuzz_gguf); }
Test(fuzz_corpus, model) { replay("model", fuzz_model); }
Test(fuzz_corpus, oai_parse) { replay("oai_parse", fuzz_oai_parse); }
Test(fuzz_corpus, tok) { replay("tok", fuzz_tok); }
Test(fuzz_corpus, chunk) { replay("chunk", fuzz_chunk); }
Test(fuzz_corpus, config) { replay("config", fuzz_config); }
Test(fuzz_corpus, hub) { replay("hub", fuzz_hub); }
Test(fuzz_corpus, upstream) { replay("upstream", fuzz_upstream); }
Test(fuzz_corpus, vocab) { replay("vocab", fuzz_vocab); }
Test(fuzz_corpus, h1) { replay("h1", fuzz_h1); }
