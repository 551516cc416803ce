#!/bin/bash
# bench/pull/cpu.sh - CPU cost of `kanoa-mlops pull` per byte, against the
# fake hub over loopback, next to `curl -o` of the same URL: a measure that
# a loaded machine disturbs much less than wall time. For each client it
# prints the client's task-clock (perf stat) per GiB, the sys part, the
# fake hub's CPU seconds during the run (/proc/<pid>/stat) and, for pull,
# the share hashed from memory. Runs are interleaved
# (curl, pull -c 1, 4, 8, then again) ROUNDS times.
# Usage: bench/pull/cpu.sh [SIZE_BYTES] [ROUNDS]
#   KM_BIN_RELEASE=build-x/kanoa-mlops picks the binary (KM_BIN_B adds a
#   second binary, run right after the first in each round, for A/B).
set -u
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
BIN=${KM_BIN_RELEASE:-$top/build/kanoa-mlops}
BIN_B=${KM_BIN_B:-}
PY=/usr/bin/python3
SIZE=${1:-2147483648}
ROUNDS=${2:-2}
work=$(mktemp -d /tmp/kanoa-bench-pullcpu.XXXXXX)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

head -c 1048576 /dev/urandom >"$work/big.bin"
truncate -s "$SIZE" "$work/big.bin"
$PY "$top/tests/fakehub/fakehub.py" --port-file "$work/ports" --big-file "$work/big.bin" \
    --rate 0 --lifetime 1800 >"$work/hub.log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do [ -s "$work/ports" ] && break; sleep 0.1; done
read -r HP CP <"$work/ports"
export HF_ENDPOINT="http://127.0.0.1:$HP" HF_HOME="$work/home" HF_HUB_CACHE="$work/cache"
unset HF_TOKEN HF_HUB_OFFLINE
sha=$(curl -s "$HF_ENDPOINT/api/models/kanoa-test/big/tree/main?recursive=true" |
      $PY -c "import json,sys; print(json.load(sys.stdin)[0]['lfs']['oid'])")
hz=$(getconf CLK_TCK)
srv_cpu() { awk -v hz="$hz" '{print ($14 + $15) / hz}' "/proc/$pid/stat"; }

run() { # label command... -> one line
    local label=$1
    shift
    rm -rf "$HF_HUB_CACHE" "$work/curl.bin" "$work/out.json"
    sync
    local s0 s1
    s0=$(srv_cpu)
    perf stat -x, -e task-clock,system_time -o "$work/perf" "$@" >"$work/out.json" 2>"$work/err" ||
        { echo "$label failed: $(tail -2 "$work/err")"; return; }
    s1=$(srv_cpu)
    $PY - "$label" "$work/perf" "$work/out.json" "$s0" "$s1" "$SIZE" <<'PYEOF'
import json, sys
label, perf, out, s0, s1, size = sys.argv[1:]
tc = sys_ = 0.0
for line in open(perf):
    f = line.strip().split(',')
    if len(f) > 2 and f[2] == 'task-clock':
        tc = float(f[0]) / 1e3
    if len(f) > 2 and f[2] == 'system_time' and f[0][0].isdigit():
        sys_ = float(f[0]) / 1e9
mem = ''
for line in open(out):
    try:
        ev = json.loads(line)
    except ValueError:
        continue
    if ev.get('event') == 'finish':
        mem = f"  from memory {100 * ev.get('hash_from_memory', 0):.0f}%"
gib = int(size) / 2**30
print(f"{label:16s} task-clock {tc:6.2f} s ({tc / gib:5.2f} s/GiB, sys {sys_ / gib:4.2f})  hub cpu "
      f"{float(s1) - float(s0):5.2f} s{mem}")
PYEOF
}

for r in $(seq 1 "$ROUNDS"); do
    echo "-- round $r ($(uptime | sed 's/.*load/load/'))"
    run "curl -o" curl -s -o "$work/curl.bin" "http://127.0.0.2:$CP/cdn/$sha"
    for c in 1 4 8; do
        run "pull -c $c" "$BIN" pull kanoa-test/big -c "$c" --json
        [ -n "$BIN_B" ] && run "pull -c $c (B)" "$BIN_B" pull kanoa-test/big -c "$c" --json
    done
done
