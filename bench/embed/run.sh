#!/bin/bash
# run.sh - embeddings benchmark (owned by "arch"): the bge-small shape (384,
# 12 layers, 12 heads, ffn 1536, vocab 30522) as F16, 2 threads, 128-token
# inputs at batch 1, 8 and 32; prints embeddings/s and the ratio to
# llama.cpp's server figures given in the brief (15.3, 7.2, 2.9 /s).
#   bench/embed/run.sh [BUILD_DIR] [SECONDS]
# The machine is shared: figures are noisy.
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-build}
secs=${2:-5}
cd "$top"
make -s BUILD="$build" "$build/libkanoa.a" "$build/kanoa-mlops"
pkgs="libmicrohttpd libcurl jansson libpq yaml-0.1 libcrypto"
# shellcheck disable=SC2046
cc -std=gnu17 -O2 -Isrc -D_GNU_SOURCE -pthread -o "$build/bench_embed" \
    bench/embed/bench_embed.c "$build/libkanoa.a" $(pkg-config --libs $pkgs) -lm -ldl
m=$build/bench-models/bge-small-F16.gguf
mkdir -p "$(dirname "$m")"
[ -f "$m" ] || "$build/kanoa-mlops" models synth --arch bert --shape bge-small --type F16 \
    -q -o "$m" >/dev/null
declare -A ref=([1]=15.3 [8]=7.2 [32]=2.9)
for b in 1 8 32; do
    line=$("$build/bench_embed" "$m" 2 128 "$b" "$secs")
    rate=$(sed -E 's/.*: ([0-9.]+) embeddings.*/\1/' <<<"$line")
    echo "$line  (llama.cpp server ${ref[$b]}/s: x$(awk -v r="$rate" -v b="${ref[$b]}" 'BEGIN { printf "%.2f", r / b }'))"
done
