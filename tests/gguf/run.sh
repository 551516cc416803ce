#!/bin/bash
# run.sh - system suite "gguf": files written by `kanoa-mlops models synth`
# decode, with an independent numpy reader (check_synth.py, written from the
# GGUF/ggml format description), to the values synth generated, for every
# file type and architecture. Ends with "N passed, N failed".
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
bin=${KM_BIN:-$top/build/asan/kanoa-mlops}
py=/usr/bin/python3
tmp=$(mktemp -d /tmp/km-gguf-suite.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0

check() {   # name seed synth-args...
    local name=$1 seed=$2
    shift 2
    local f="$tmp/$name.gguf"
    if ! "$bin" models synth "$@" --seed "$seed" -q -o "$f" >"$tmp/out" 2>&1; then
        echo "not ok $name: synth failed: $(cat "$tmp/out")"
        failed=$((failed + 1))
        return
    fi
    if timeout 300 "$py" "$top/tests/gguf/check_synth.py" "$f" "$seed" >"$tmp/check" 2>&1; then
        echo "ok $name ($(grep -c ' ok ' "$tmp/check") tensors)"
        passed=$((passed + 1))
    else
        echo "not ok $name"
        grep -v ' ok ' "$tmp/check" | head -20
        failed=$((failed + 1))
    fi
}

check llama-q4_k_m 5 --arch llama --type Q4_K_M
check llama-q5_k_m 6 --arch llama --type Q5_K_M
check llama-q6_k 7 --arch llama --type Q6_K
check llama-q8_0 8 --arch llama --type Q8_0
check llama-q4_0 9 --arch llama --type Q4_0
check llama-f16 10 --arch llama --type F16
check llama-bf16 11 --arch llama --type BF16
check llama-f32-tied 12 --arch llama --type F32 --tied
check gemma3-q4_k_m 13 --arch gemma3 --type Q4_K_M
check bert-q4_k_m 14 --arch bert --type Q4_K_M
check bert-q5_k_m 15 --arch bert --type Q5_K_M
check nomic-q5_k_m 16 --arch nomic-bert --type Q5_K_M
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
