#!/bin/bash
# bench/pull/run.sh - `kanoa-mlops pull` throughput against the fake hub
# (tests/fakehub/fakehub.py) over loopback, as ratios to a baseline measured
# in the same run:
#   A. a SIZE file (default 2 GiB: a sparse file with 1 MiB of random bytes
#      at its start, sent with sendfile) served at full speed: `curl -o` of
#      the CDN URL (and curl + sha256sum) vs pull -c 1/4/8 (pull includes the
#      HEAD/redirect, the ranges file and the sha256 verification).
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

pull_run() { # label connections size
    export HF_HUB_CACHE="$work/cache"
    rm -rf "$HF_HUB_CACHE"
    local t0 t1
    t0=$(now)
    "$BIN" pull kanoa-test/big -c "$2" --json >"$work/pull.json" 2>"$work/pull.err" || {
        echo "pull failed: $(cat "$work/pull.err")"; return 1; }
    t1=$(now)
    local s hr
    s=$(secs "$t0" "$t1")
    hr=$(grep '"event":"finish"' "$work/pull.json" | $PY -c "import json,sys; print(f'{json.load(sys.stdin)[\"hash_rate\"]/1e6:.0f}')")
    echo "$s $hr"
}

echo "== A: $SIZE bytes, unlimited server =="
start_hub "$SIZE" 0
sha=$(curl -s "$HF_ENDPOINT/api/models/kanoa-test/big/tree/main?recursive=true" |
      $PY -c "import json,sys; print(json.load(sys.stdin)[0]['lfs']['oid'])")
t0=$(now)
curl -s -o "$work/curl.bin" "http://127.0.0.2:$CP/cdn/$sha"
t1=$(now)
base=$(secs "$t0" "$t1")
t0=$(now)
sha256sum "$work/curl.bin" >/dev/null
t1=$(now)
hs=$(secs "$t0" "$t1")
rm -f "$work/curl.bin"
echo "curl -o (1 connection, no verification): ${base}s  $($PY -c "print(f'{$SIZE/$base/1e6:.0f}')") MB/s  = 1.00x"
echo "sha256sum of that file (hashing speed of this machine now): ${hs}s  $($PY -c "print(f'{$SIZE/$hs/1e6:.0f}')") MB/s"
for c in 1 4 8; do
    read -r s hr < <(pull_run "A" "$c" "$SIZE")
    echo "pull -c $c (sha256 verified):            ${s}s  $($PY -c "print(f'{$SIZE/$s/1e6:.0f}')") MB/s  = $($PY -c "print(f'{$base/$s:.2f}')")x curl, $($PY -c "print(f'{($base+$hs)/$s:.2f}')")x curl+sha256sum  (hash ${hr} MB/s)"
done
rm -rf "$work/cache"

echo "== B: $RSIZE bytes, server limits each connection to $RATE B/s =="
start_hub "$RSIZE" "$RATE"
read -r one hr < <(pull_run "B" 1 "$RSIZE")
echo "pull -c 1: ${one}s  = 1.00x"
for c in 4 8; do
    read -r s hr < <(pull_run "B" "$c" "$RSIZE")
    echo "pull -c $c: ${s}s  = $($PY -c "print(f'{$one/$s:.2f}')")x faster than -c 1"
done
