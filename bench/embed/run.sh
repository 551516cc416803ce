#!/bin/bash
# run.sh - embeddings benchmark: the bge-small shape (384, 12 layers, 12
# heads, ffn 1536, vocab 30522) as F16, 2 threads, 128-token inputs at batch
# 1, 8 and 32 (best of RUNS runs each); prints embeddings/s, embeddings per
# CPU-second and the ratio to llama.cpp's server figures given in the brief
# (15.3, 7.2, 2.9 /s). Then the CPU use of an idle `serve` (the thread pool
# must sleep between requests): one request, then CPU seconds over 5 s.
#   bench/embed/run.sh [BUILD_DIR] [SECONDS] [MODEL_DIR] [RUNS]
# MODEL_DIR/bge-small-F16.gguf is used when present, else synthesized into
# BUILD_DIR/bench-models. The machine is shared: figures are noisy (see the
# "CPUs busy" column and the load average printed first).
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-build}
secs=${2:-5}
models=${3:-$build/bench-models}
runs=${4:-3}
cd "$top"
make -s BUILD="$build" "$build/libkanoa.a" "$build/kanoa-mlops"
pkgs="libmicrohttpd libcurl jansson libpq yaml-0.1 libcrypto"
# shellcheck disable=SC2046,SC2086
cc -std=gnu17 -O2 -Isrc -D_GNU_SOURCE -pthread -o "$build/bench_embed" \
    bench/embed/bench_embed.c "$build/libkanoa.a" $(pkg-config --libs $pkgs) -lm -ldl
m=$models/bge-small-F16.gguf
mkdir -p "$models"
[ -f "$m" ] || "$build/kanoa-mlops" models synth --arch bert --shape bge-small --type F16 \
    -q -o "$m" >/dev/null
echo "load: $(uptime | sed 's/.*load average: //')"
declare -A ref=([1]=15.3 [8]=7.2 [32]=2.9)
for b in 1 8 32; do
    best="" best_rate=0 best_cpu=0
    for _ in $(seq 1 "$runs"); do
        line=$("$build/bench_embed" "$m" 2 128 "$b" "$secs" 2>/dev/null)
        rate=$(sed -E 's/.*: ([0-9.]+) embeddings.*/\1/' <<<"$line")
        cpu=$(sed -E 's/.*; ([0-9.]+) per CPU-second.*/\1/' <<<"$line")
        if awk -v r="$rate" -v b="$best_rate" 'BEGIN { exit !(r > b) }'; then
            best=$line best_rate=$rate
        fi
        best_cpu=$(awk -v c="$cpu" -v b="$best_cpu" 'BEGIN { print (c > b ? c : b) }')
    done
    echo "$best  (llama.cpp server ${ref[$b]}/s: x$(awk -v r="$best_rate" -v b="${ref[$b]}" \
        'BEGIN { printf "%.2f", r / b }'); best per CPU-second $best_cpu)"
done

# idle serve: CPU seconds used in 5 s after a request
log=$(mktemp)
"$build/kanoa-mlops" serve --host 127.0.0.1 --port 0 --model "$m" --threads 2 >"$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -f "$log"' EXIT
port=""
for _ in $(seq 1 400); do
    port=$(grep -Eo 'listening on http://127\.0\.0\.1:[0-9]+' "$log" |
        grep -Eo '[0-9]+$' | head -n 1)
    [ -n "$port" ] && break
    sleep 0.05
done
for _ in $(seq 1 600); do
    curl -sf "http://127.0.0.1:$port/health" >/dev/null && break
    sleep 0.1
done
curl -sf -H content-type:application/json "http://127.0.0.1:$port/v1/embeddings" \
    -d '{"model":"bge-small-F16","input":["hello world","a second input"]}' >/dev/null
sleep 1
ticks() { awk '{ print $14 + $15 }' "/proc/$pid/stat"; }
t0=$(ticks)
sleep 5
t1=$(ticks)
echo "idle serve after a request: $(awk -v d=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" \
    'BEGIN { printf "%.3f", d / hz }') CPU seconds in 5 s"
