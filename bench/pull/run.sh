#!/bin/bash
# bench/pull/run.sh - `kanoa-mlops pull` throughput against the fake hub
# (tests/fakehub/fakehub.py) over loopback, as ratios to a baseline measured
# in the same run:
#   A. a SIZE file (default 2 GiB: a sparse file with 1 MiB of random bytes
#      at its start, sent with sendfile) served at full speed: `curl -o` of
#      the CDN URL, the same plus one fsync of the file (`sync FILE`: the
#      durable baseline) and plus sha256sum, vs pull -c 1/4/8 (pull includes
#      the HEAD/redirect, the ranges file, the sha256 verification and the
#      fsync before the rename only with --fsync, measured separately against the
#      durable baseline). Each pull line splits its time into
#      "transfer" (start to the `verify` event: every byte written) and
#      "tail" (verify to finish: the last hash step, fsync, rename, link).
#   B. the server limits each connection to RATE bytes/s: pull -c 1/4/8.
# Usage: bench/pull/run.sh [SIZE_BYTES] [RATE_SIZE_BYTES] [RATE]
# The machine may be shared: read the ratios, not the absolute numbers.
set -u
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
BIN=${KM_BIN_RELEASE:-$top/build/kanoa-mlops}
PY=/usr/bin/python3
SIZE=${1:-2147483648}
RSIZE=${2:-268435456}
RATE=${3:-25000000}
work=$(mktemp -d /tmp/kanoa-bench-pull.XXXXXX)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

start_hub() { # size rate
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -f "$work/ports" "$work/big.bin"
    head -c 1048576 /dev/urandom >"$work/big.bin"
    truncate -s "$1" "$work/big.bin"
    $PY "$top/tests/fakehub/fakehub.py" --port-file "$work/ports" --big-file "$work/big.bin" \
        --rate "$2" --lifetime 1800 >"$work/hub.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 600); do [ -s "$work/ports" ] && break; sleep 0.1; done
    read -r HP CP <"$work/ports"
    export HF_ENDPOINT="http://127.0.0.1:$HP" HF_HOME="$work/home"
    unset HF_TOKEN HF_HUB_OFFLINE
}

now() { date +%s.%N; }
secs() { $PY -c "print(f'{$2 - $1:.2f}')"; }

# Prefix each line of stdin with the seconds since $1 (when it arrived).
stamp() { $PY -c "
import sys, time
t0 = float(sys.argv[1])
for line in sys.stdin:
    print(f'{time.time() - t0:.3f} {line}', end='', flush=True)" "$1"; }

pull_run() { # label connections size [extra flag] -> seconds hash_MB/s transfer_s tail_s
    export HF_HUB_CACHE="$work/cache"
    rm -rf "$HF_HUB_CACHE"
    sync
    local t0 t1
    t0=$(now)
    "$BIN" pull kanoa-test/big -c "$2" ${4:-} --json 2>"$work/pull.err" | stamp "$t0" >"$work/pull.json"
    t1=$(now)
    grep -q '"event":"finish"' "$work/pull.json" || {
        echo "pull failed: $(cat "$work/pull.err")" >&2; return 1; }
    $PY - "$(secs "$t0" "$t1")" "$work/pull.json" <<'PYEOF'
import json, sys
total, ev = sys.argv[1], {}
for line in open(sys.argv[2]):
    t, js = line.split(' ', 1)
    ev[json.loads(js)['event']] = (float(t), json.loads(js))
v, f = ev['verify'][0], ev['finish'][0]
print(f"{total} {ev['finish'][1]['hash_rate'] / 1e6:.0f} {v:.2f} {f - v:.2f}")
PYEOF
}

echo "== A: $SIZE bytes, unlimited server =="
start_hub "$SIZE" 0
sha=$(curl -s "$HF_ENDPOINT/api/models/kanoa-test/big/tree/main?recursive=true" |
      $PY -c "import json,sys; print(json.load(sys.stdin)[0]['lfs']['oid'])")
sync
t0=$(now)
curl -s -o "$work/curl.bin" "http://127.0.0.2:$CP/cdn/$sha"
t1=$(now)
sync "$work/curl.bin"
t2=$(now)
base=$(secs "$t0" "$t1")
durable=$(secs "$t0" "$t2")
t0=$(now)
sha256sum "$work/curl.bin" >/dev/null
t1=$(now)
hs=$(secs "$t0" "$t1")
rm -f "$work/curl.bin"
mbs() { $PY -c "print(f'{$SIZE/$1/1e6:.0f}')"; }
ratio() { $PY -c "print(f'{$1/$2:.2f}')"; }
echo "curl -o (1 connection, no verification): ${base}s  $(mbs "$base") MB/s  = 1.00x"
echo "curl -o + fsync of the file (durable):   ${durable}s  $(mbs "$durable") MB/s"
echo "sha256sum of that file (hashing speed of this machine now): ${hs}s  $(mbs "$hs") MB/s"
for c in 1 4 8; do
    read -r s hr tr tail < <(pull_run "A" "$c" "$SIZE")
    echo "pull -c $c (sha256 verified):           ${s}s  $(mbs "$s") MB/s  = $(ratio "$base" "$s")x curl  (transfer ${tr}s, tail ${tail}s, hash ${hr} MB/s)"
done
for c in 1 8; do
    read -r s hr tr tail < <(pull_run "A" "$c" "$SIZE" --fsync)
    echo "pull -c $c --fsync (verified, durable): ${s}s  $(mbs "$s") MB/s  = $(ratio "$durable" "$s")x curl+fsync  (transfer ${tr}s, tail ${tail}s)"
done
rm -rf "$work/cache"

echo "== B: $RSIZE bytes, server limits each connection to $RATE B/s =="
start_hub "$RSIZE" "$RATE"
read -r one hr tr tail < <(pull_run "B" 1 "$RSIZE")
echo "pull -c 1: ${one}s  = 1.00x"
for c in 4 8; do
    read -r s hr tr tail < <(pull_run "B" "$c" "$RSIZE")
    echo "pull -c $c: ${s}s  = $($PY -c "print(f'{$one/$s:.2f}')")x faster than -c 1"
done
