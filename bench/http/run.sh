#!/bin/bash
# bench/http/run.sh - HTTP requests/s of `kanoa-mlops serve` (release build)
# with wrk -t2 -c64: GET /v1/models and GET /health, against a baseline
# measured in the same run: GET /version (the smallest static JSON answer
# through the same stack). Prints requests/s and ratios to the baseline.
#   usage: bench/http/run.sh [BUILD_DIR] [SECONDS]   (defaults: build, 10)
# The machine may be shared: run it a few times and read the ratios.
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-build}
dur=${2:-10}
bin="$top/$build/kanoa-mlops"
[ -x "$bin" ] || { echo "bench/http: build $bin first (make BUILD=$build)"; exit 1; }
command -v wrk >/dev/null || { echo "bench/http: wrk is missing (apt-get install wrk)"; exit 1; }
port=$((20000 + RANDOM % 20000))
"$bin" serve --host 127.0.0.1 --port "$port" --log-level warn 2>/dev/null &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null' EXIT
for _ in $(seq 1 50); do
    curl -sf "http://127.0.0.1:$port/health" >/dev/null && break
    sleep 0.1
done
rps() {
    wrk -t2 -c64 -d"${dur}s" "http://127.0.0.1:$port$1" |
        sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p'
}
base=$(rps /version)
models=$(rps /v1/models)
health=$(rps /health)
printf 'GET /version    (baseline) %10.0f req/s\n' "$base"
awk -v m="$models" -v h="$health" -v b="$base" 'BEGIN {
    printf "GET /v1/models             %10.0f req/s  (%.2fx baseline)\n", m, m / b
    printf "GET /health                %10.0f req/s  (%.2fx baseline)\n", h, h / b }'
echo "cores: $(nproc), load average: $(cut -d' ' -f1-3 /proc/loadavg)"
