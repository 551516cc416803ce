#!/bin/bash
# bench/http/run.sh - HTTP requests/s of `kanoa-mlops serve` (release build)
# with wrk -t2 -c64: GET /v1/models and GET /health, against a baseline
# measured in the same run: GET /version (the smallest static JSON answer
# through the same stack). Prints requests/s, the server's CPU time per
# request (user + system, from /proc) and ratios to the baseline.
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
tck=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
# rps PATH: prints "requests/s server-CPU-microseconds-per-request"; the CPU
# cost per request does not depend on how busy a shared machine is.
rps() {
    local t0 t1 out
    t0=$(cpu_ticks)
    out=$(wrk -t2 -c64 -d"${dur}s" "http://127.0.0.1:$port$1")
    t1=$(cpu_ticks)
    awk -v t0="$t0" -v t1="$t1" -v hz="$tck" '
        /requests in/ { n = $1 }
        /^Requests\/sec:/ { r = $2 }
        END { printf "%s %.1f\n", r, n ? (t1 - t0) / hz * 1e6 / n : 0 }' <<<"$out"
}
read -r base base_us < <(rps /version)
read -r models models_us < <(rps /v1/models)
read -r health health_us < <(rps /health)
printf 'GET /version    (baseline) %10.0f req/s  %5.1f us server CPU/req\n' "$base" "$base_us"
awk -v m="$models" -v h="$health" -v b="$base" -v mu="$models_us" -v hu="$health_us" 'BEGIN {
    printf "GET /v1/models             %10.0f req/s  %5.1f us server CPU/req  (%.2fx baseline)\n", m, mu, m / b
    printf "GET /health                %10.0f req/s  %5.1f us server CPU/req  (%.2fx baseline)\n", h, hu, h / b }'
echo "cores: $(nproc), load average: $(cut -d' ' -f1-3 /proc/loadavg)"
