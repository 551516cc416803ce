#!/bin/bash
# run.sh - system test of `kanoa-mlops serve --model` (the local engine
# backend) on a loopback port: loading/health, /v1/models, completions with
# text and id prompts, chat streamed and not, seeds, n, logprobs shapes, stop
# strings, context overflow and image errors, concurrent streams, and
# cancellation on client disconnect. Checks live in tests/serve/client.py.
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"
build=${KM_BUILD:-$top/build}
shared=${KM_SHARED:-$top/../shared}
bin=${KM_BIN:-$build/asan/kanoa-mlops}
synth=${KM_BIN_RELEASE:-$build/kanoa-mlops}
[ -x "$synth" ] || synth=$bin
work=$(mktemp -d)
pid=""
cleanup() {
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; fi
    rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "not ok - $1"; echo "0 passed, 1 failed"; exit 1; }

vocab=$shared/data/tokenizer/ggml-vocab-gpt-2.gguf
"$synth" models synth --arch llama --shape tiny --type Q8_0 --seed 3 -q \
    --vocab-from "$vocab" -o "$work/tiny.gguf" >/dev/null || fail "synthesize tiny Q8_0"
"$synth" models synth --arch llama --shape tiny --type F16 --seed 4 -q \
    --vocab-from "$vocab" -o "$work/tiny-f16.gguf" >/dev/null || fail "synthesize tiny F16"

KANOA_ENGINE_TEST_LOAD_DELAY_MS=1500 "$bin" serve --host 127.0.0.1 --port 0 \
    --model "$work/tiny.gguf" --served-model-name tiny --model "$work/tiny-f16.gguf" \
    --ctx 256 --threads 2 --chat-template llama3 >"$work/log" 2>&1 &
pid=$!
port=""
for _ in $(seq 1 200); do
    port=$(grep -Eo 'listening on http://127\.0\.0\.1:[0-9]+' "$work/log" | grep -Eo '[0-9]+$' | head -n 1)
    [ -n "$port" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
done
[ -n "$port" ] || { cat "$work/log"; fail "server did not start"; }
/usr/bin/python3 tests/serve/client.py "$port"
rc=$?
kill "$pid" 2>/dev/null
wait "$pid"
src=$?
pid=""
if grep -E 'Sanitizer|runtime error' "$work/log"; then
    echo "not ok - sanitizer report in the server log"
    exit 1
fi
[ $rc -eq 0 ] || tail -n 20 "$work/log"
exit $rc
