#!/bin/bash
# run.sh - system test of `kanoa-mlops serve --model` (the local engine
# backend) on a loopback port: loading/health, /v1/models, completions with
# text and id prompts, chat streamed and not, seeds, n, logprobs shapes, stop
# strings, context overflow and image errors, concurrent streams, and
# cancellation on client disconnect. Checks live in tests/serve/client.py.
set -u
# shellcheck source=tests/helpers/serve.sh
source "$(dirname "$0")/../helpers/serve.sh"

vocab=$shared/data/tokenizer/ggml-vocab-gpt-2.gguf
"$synth" models synth --arch llama --shape tiny --type Q8_0 --seed 3 -q \
    --vocab-from "$vocab" -o "$work/tiny.gguf" >/dev/null || fail "synthesize tiny Q8_0"
"$synth" models synth --arch llama --shape tiny --type F16 --seed 4 -q \
    --vocab-from "$vocab" -o "$work/tiny-f16.gguf" >/dev/null || fail "synthesize tiny F16"

KANOA_ENGINE_TEST_LOAD_DELAY_MS=1500 serve_start \
    --model "$work/tiny.gguf" --served-model-name tiny --model "$work/tiny-f16.gguf" \
    --ctx 256 --threads 2 --chat-template llama3
/usr/bin/python3 tests/serve/client.py "$port"
rc=$?
serve_stop
serve_log_clean || exit 1
[ $rc -eq 0 ] || tail -n 20 "$work/log"
exit $rc
