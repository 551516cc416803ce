/* fuzz.h - entry points of the fuzz harnesses (one per input surface).
 *
 * Each fuzz/fuzz_<target>.c defines `int fuzz_<target>(data, size)`: it
 * feeds the bytes to the real parsing code of libkanoa and checks what the
 * module promises (a clean KM_E* error or a result that stays in bounds).
 * A broken promise the sanitizers cannot see calls abort(): harness code
 * only, never the library. Unless FUZZ_REPLAY is defined, the file also
 * defines libFuzzer's LLVMFuzzerTestOneInput calling its function, so
 * `make fuzz` links one binary per file (clang -fsanitize=fuzzer).
 *
 * tests/test_fuzz_corpus.c defines FUZZ_REPLAY, includes every harness
 * (one translation unit: file-local names carry the target's prefix) and
 * replays fuzz/corpus/<target>/ through the same functions in make test.
 *
 * Harnesses keep no state between calls except read-only fixtures loaded
 * once (the tokenizer vocabularies), and free everything they allocate.
 */
#ifndef KM_FUZZ_H
#define KM_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int fuzz_gguf(const uint8_t *data, size_t size);
int fuzz_oai_parse(const uint8_t *data, size_t size);
int fuzz_tok(const uint8_t *data, size_t size);
int fuzz_chunk(const uint8_t *data, size_t size);
int fuzz_config(const uint8_t *data, size_t size);
int fuzz_hub(const uint8_t *data, size_t size);
int fuzz_upstream(const uint8_t *data, size_t size);
int fuzz_model(const uint8_t *data, size_t size);
int fuzz_vocab(const uint8_t *data, size_t size);
int fuzz_h1(const uint8_t *data, size_t size);

#ifndef FUZZ_REPLAY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
#endif

#endif
