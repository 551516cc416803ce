#!/bin/bash
# gemma.sh - Gemma 3 1B next to Llama 3.2 1B, both Q4_K_M, with 1 and 2
# threads: prefill (pp) and decode (tg) tokens/s from bench_engine, one row per
# thread count, and Gemma's speed as a fraction of Llama's.
#   bench/engine/gemma.sh [BUILD_DIR] [MODEL_DIR] [PP] [TG]
# MODEL_DIR (default /work/models) holds gemma-3-1b-Q4_K_M.gguf and
# llama-3.2-1b-Q4_K_M.gguf (synthesized here with `models synth` when
# missing). PP/TG default to 512/128. The machine is shared: figures are noisy;
# the full bench_engine lines follow the table.
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-build}
models=${2:-/work/models}
pp=${3:-512}
tg=${4:-128}
cd "$top"
make -s BUILD="$build" "$build/libkanoa.a" "$build/kanoa-mlops"
# shellcheck disable=SC2046
cc -std=gnu17 -O2 -Isrc -D_GNU_SOURCE -pthread -o "$build/bench_engine" bench/engine/bench_engine.c \
    "$build/libkanoa.a" $(pkg-config --libs libmicrohttpd libcurl jansson libpq yaml-0.1 libcrypto) -lm -ldl
declare -A shape=([gemma]=gemma-3-1b [llama]=llama-3.2-1b) line
for arch in gemma llama; do
    m=$models/${shape[$arch]}-Q4_K_M.gguf
    [ -f "$m" ] || "$build/kanoa-mlops" models synth --arch "${arch/gemma/gemma3}" \
        --shape "${shape[$arch]}" --type Q4_K_M -q -o "$m"
    for t in 1 2; do
        line[$arch-$t]=$("$build/bench_engine" "$m" "$t" "$pp" "$tg")
    done
done
num() { sed -E "s/.*$1 ([0-9.]+) tok.*/\\1/" <<<"$2"; }
printf '%-8s %14s %14s %14s %14s %9s %9s\n' threads "gemma pp$pp" "llama pp$pp" \
    "gemma tg$tg" "llama tg$tg" "pp ratio" "tg ratio"
for t in 1 2; do
    gp=$(num "pp$pp" "${line[gemma-$t]}") lp=$(num "pp$pp" "${line[llama-$t]}")
    gt=$(num "tg$tg" "${line[gemma-$t]}") lt=$(num "tg$tg" "${line[llama-$t]}")
    awk -v t="$t" -v gp="$gp" -v lp="$lp" -v gt="$gt" -v lt="$lt" 'BEGIN {
        printf "%-8s %14.1f %14.1f %14.2f %14.2f %8.0f%% %8.0f%%\n", t, gp, lp, gt, lt,
               100 * gp / lp, 100 * gt / lt }'
done
for k in gemma-1 gemma-2 llama-1 llama-2; do
    echo "${line[$k]}"
done
