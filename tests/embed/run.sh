#!/bin/bash
# run.sh - system test of /v1/embeddings on a real `kanoa-mlops serve` with
# synthesized encoder models (bert tiny, nomic-bert tiny, bge tokenizer) and
# a llama tiny for wrong-task checks, on a loopback port. Checks: Python
# client (tests/embed/client.py) and the official openai npm SDK
# (tests/embed/sdk.mjs, the SDK installed as in tests/compat). Ends with
# "N passed, N failed".
set -u
# shellcheck source=tests/helpers/serve.sh
source "$(dirname "$0")/../helpers/serve.sh"

bge=$shared/data/tokenizer/ggml-vocab-bert-bge.gguf
"$synth" models synth --arch bert --shape tiny --seed 3 -q --vocab-from "$bge" \
    -o "$work/bert.gguf" >/dev/null || fail "synthesize bert"
"$synth" models synth --arch nomic-bert --shape tiny --type Q8_0 --seed 4 -q \
    --vocab-from "$bge" -o "$work/nomic.gguf" >/dev/null || fail "synthesize nomic-bert"
"$synth" models synth --arch llama --shape tiny --seed 5 -q --dim 64 --ffn 128 \
    --vocab-from "$shared/data/tokenizer/ggml-vocab-gpt-2.gguf" \
    -o "$work/llama.gguf" >/dev/null || fail "synthesize llama"

serve_start --model "$work/bert.gguf" --model "$work/nomic.gguf" \
    --model "$work/llama.gguf" --threads 2
for _ in $(seq 1 600); do   # wait for the models to load (bounded: 60 s)
    curl -sf "http://127.0.0.1:$port/health" >/dev/null && break
    sleep 0.1
done
out=$(/usr/bin/python3 tests/embed/client.py "$port")
echo "$out" | sed '$d'
read -r p f < <(echo "$out" | tail -n 1 | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\1 \2/p')
p=${p:-0}; f=${f:-1}

# the official openai SDK (installed like tests/compat does)
npmdir="$build/compat-npm"
mkdir -p "$npmdir"
if ! cmp -s tests/compat/package-lock.json "$npmdir/package-lock.json" ||
   [ ! -d "$npmdir/node_modules/openai" ]; then
    cp tests/compat/package.json tests/compat/package-lock.json "$npmdir/"
    (cd "$npmdir" && timeout 300 npm ci --no-audit --no-fund --silent) || {
        echo "not ok - npm ci"; f=$((f + 1)); }
fi
cp tests/embed/sdk.mjs "$npmdir/embed_sdk.mjs"
sdk=$(timeout 120 node "$npmdir/embed_sdk.mjs" "http://127.0.0.1:$port")
echo "$sdk" | sed '$d'
read -r sp sf < <(echo "$sdk" | tail -n 1 | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\1 \2/p')
p=$((p + ${sp:-0})); f=$((f + ${sf:-1}))

serve_stop
serve_log_clean || f=$((f + 1))
[ "$f" -eq 0 ] || tail -n 20 "$work/log"
echo "$p passed, $f failed"
[ "$f" -eq 0 ]
