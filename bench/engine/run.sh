#!/bin/bash
# run.sh - engine benchmark: the llama-3.2-1b shape (dim 2048, 16 layers,
# 32/8 heads, ffn 8192, vocab 128256, tied, llama3 rope scaling) as Q4_K_M,
# Q8_0 and F16, with 1 and 2 threads: pp512 and tg128 tokens/s, decode as a
# fraction of the bandwidth roofline measured in the same run, and the ratio
# to the ik_llama.cpp figures measured on this machine (given in the brief).
#   bench/engine/run.sh [BUILD_DIR] [MODEL_DIR]
# Models are synthesized once into MODEL_DIR (default BUILD_DIR/bench-models;
# ~2.5 GB, several minutes). The machine is shared: figures are noisy.
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-build}
cd "$top"
models=${2:-$build/bench-models}
make -s BUILD="$build" "$build/libkanoa.a" "$build/kanoa-mlops"
pkgs="libmicrohttpd libcurl jansson libpq yaml-0.1 libcrypto"
# shellcheck disable=SC2046
cc -std=gnu17 -O2 -Isrc -D_GNU_SOURCE -pthread -o "$build/bench_engine" \
    bench/engine/bench_engine.c "$build/libkanoa.a" $(pkg-config --libs $pkgs) -lm -ldl
mkdir -p "$models"
declare -A ik_pp=([Q4_K_M-1]=57.0 [Q4_K_M-2]=77.2 [Q8_0-1]=47.8 [Q8_0-2]=87.9 [F16-1]=36.1 [F16-2]=72.1)
declare -A ik_tg=([Q4_K_M-1]=11.8 [Q4_K_M-2]=19.8 [Q8_0-1]=9.6 [Q8_0-2]=17.3 [F16-1]=7.1 [F16-2]=7.9)
for type in Q4_K_M Q8_0 F16; do
    m=$models/llama-3.2-1b-$type.gguf
    [ -f "$m" ] || "$build/kanoa-mlops" models synth --arch llama --shape llama-3.2-1b \
        --type "$type" --tied --rope-scaling llama3 -q -o "$m"
    for t in 1 2; do
        line=$("$build/bench_engine" "$m" "$t" 512 128)
        echo "$type $line"
        pp=$(sed -E 's/.*pp512 ([0-9.]+).*/\1/' <<<"$line")
        tg=$(sed -E 's/.*tg128 ([0-9.]+).*/\1/' <<<"$line")
        awk -v pp="$pp" -v tg="$tg" -v ipp="${ik_pp[$type-$t]}" -v itg="${ik_tg[$type-$t]}" \
            'BEGIN { printf "    vs ik_llama.cpp: pp512 %.0f%% of %.1f, tg128 %.0f%% of %.1f\n", 100*pp/ipp, ipp, 100*tg/itg, itg }'
    done
done
