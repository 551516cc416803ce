#!/bin/bash
# bench/gateway/ab.sh - compare gateway builds: each BIN runs as
# `serve --upstream` in front of one fake upstream
# (tests/gateway/fault_upstream.py, 4-token streams) and ab.py measures the
# latency each adds, all paths interleaved in random order per request.
# Load-insensitive A/B for changes smaller than the run-to-run spread of
# run.sh.   usage: bench/gateway/ab.sh [-r ROUNDS] [-n N] NAME=BIN ...
#   e.g. bench/gateway/ab.sh old=build-gw-base5/kanoa-mlops new=build/kanoa-mlops
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
rounds=8 n=600
while getopts r:n: o; do
    case $o in r) rounds=$OPTARG ;; n) n=$OPTARG ;; *) exit 2 ;; esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || { sed -n '2,9p' "$0"; exit 2; }
work=$(mktemp -d -t kanoa-gwab.XXXXXX)
pids=()
trap 'for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done; wait; rm -rf "$work"' EXIT
/usr/bin/python3 "$top/tests/gateway/fault_upstream.py" --name fake --tokens 4 \
    --lifetime 3600 >"$work/fake.out" 2>/dev/null &
pids+=($!)
for _ in $(seq 1 100); do
    fk=$(sed -n 's/^PORT \([0-9]*\)$/\1/p' "$work/fake.out"); [ -n "$fk" ] && break; sleep 0.05
done
args=()
for nb in "$@"; do
    name=${nb%%=*} bin=${nb#*=}
    [ -x "$bin" ] || { echo "ab.sh: $bin is not an executable"; exit 1; }
    "$bin" serve --port 0 --log-level info --upstream "f=http://127.0.0.1:$fk" \
        >"$work/$name.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 1 100); do
        p=$(sed -n 's|.*listening on http://127.0.0.1:\([0-9]*\).*|\1|p' "$work/$name.log" | head -n 1)
        [ -n "$p" ] && break; sleep 0.05
    done
    [ -n "$p" ] || { echo "ab.sh: $name did not start:"; cat "$work/$name.log"; exit 1; }
    args+=("$name=$p")
done
sleep 1
echo "upstream :$fk  ${args[*]}  ($(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg))"
/usr/bin/python3 "$top/bench/gateway/ab.py" "$rounds" "$n" "$fk" "${args[@]}"
