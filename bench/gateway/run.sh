#!/bin/bash
# bench/gateway/run.sh - what the gateway costs. Upstreams: a release
# `kanoa-mlops serve` with a synthesized tiny model (model "tiny") and the
# test suite's OpenAI-compatible fake, tests/gateway/fault_upstream.py
# (model "m1", 4-token streams: a fast, steady upstream, so the engine's
# own variance does not drown the gateway's); a third `kanoa-mlops serve
# --upstream` in front of both. In one run it prints
#   - latency added by the gateway, p50 and p99, for GET /v1/models (vs the
#     C upstream) and for a streamed chat completion (vs the fake), paths
#     interleaved, and the gateway's CPU time and context switches per
#     request, which a busy machine disturbs far less (latency.py);
#   - requests/s for GET /v1/models (wrk -t2 -c16) direct vs gateway, and
#     streamed completions/s at concurrency 16 (kanoa-mlops bench) direct vs
#     gateway, with their ratios.
#   usage: bench/gateway/run.sh [BUILD_DIR] [SECONDS] [N]  (build, 5, 1000)
# The machine may be shared: run it a few times and read the ratios.
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-build}
dur=${2:-5}
n=${3:-1000}
bin="$top/$build/kanoa-mlops"
[ -x "$bin" ] || { echo "bench/gateway: build $bin first (make BUILD=$build)"; exit 1; }
work=$(mktemp -d -t kanoa-gwbench.XXXXXX)
pids=()
trap 'for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done; wait; rm -rf "$work"' EXIT
"$bin" models synth -o "$work/tiny.gguf" -q >/dev/null 2>&1
start() { # start LOG args -> port on stdout
    local log=$1; shift
    "$bin" serve --port 0 --log-level warn "$@" >"$log" 2>&1 &
    pids+=($!)
}
port_of() {
    for _ in $(seq 1 100); do
        p=$(sed -n 's|.*listening on http://127.0.0.1:\([0-9]*\).*|\1|p' "$1" | head -n 1)
        [ -n "$p" ] && { echo "$p"; return; }
        sleep 0.05
    done
}
# --log-level warn hides the "listening" line: use info for startup only
start "$work/up.log" --log-level info --model "$work/tiny.gguf" --served-model-name tiny
up=$(port_of "$work/up.log")
for _ in $(seq 1 100); do
    curl -s "http://127.0.0.1:$up/health" | grep -q '"ok"' && break
    sleep 0.1
done
"/usr/bin/python3" "$top/tests/gateway/fault_upstream.py" --name fake --tokens 4 \
    --lifetime 3600 >"$work/fake.out" 2>/dev/null &
pids+=($!)
for _ in $(seq 1 100); do
    fk=$(sed -n 's/^PORT \([0-9]*\)$/\1/p' "$work/fake.out"); [ -n "$fk" ] && break; sleep 0.05
done
start "$work/gw.log" --log-level info --upstream "u=http://127.0.0.1:$up" \
    --upstream "f=http://127.0.0.1:$fk"
gw=$(port_of "$work/gw.log")
sleep 1
echo "upstreams :$up (kanoa-mlops, tiny) :$fk (python fake, m1)  gateway :$gw  ($(nproc) cores, shared machine)"
/usr/bin/python3 "$top/bench/gateway/latency.py" "$up" "$gw" "$fk" m1 "$n" "${pids[-1]}"
if command -v wrk >/dev/null; then
    rps() { wrk -t2 -c16 -d"${dur}s" "http://127.0.0.1:$1/v1/models" |
            sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p'; }
    a=$(rps "$up"); b=$(rps "$gw")
    printf 'GET /v1/models req/s       direct %9.0f  gateway %9.0f  ratio %.2f\n' \
        "$a" "$b" "$(awk -v a="$a" -v b="$b" 'BEGIN{print b/a}')"
fi
cps() {
    "$bin" bench --url "http://127.0.0.1:$1" --model m1 -c 16 -n 1000 -t 4 -p 8 \
        --json -q | /usr/bin/python3 -c \
        'import json,sys; print(json.load(sys.stdin)["levels"][0]["requests_per_s"])'
}
a=$(cps "$fk"); b=$(cps "$gw")
printf 'streamed chat req/s (c16)  direct %9.1f  gateway %9.1f  ratio %.2f\n' \
    "$a" "$b" "$(awk -v a="$a" -v b="$b" 'BEGIN{print b/a}')"
