#!/bin/bash
# bench/rag/run.sh - build bench_rag against the release library and run it
# on a throwaway cluster (or $KANOA_DATABASE_URL when set).
#   bench/rag/run.sh [BUILD_DIR] [N] [DIM] [QUERIES]   (build 100000 384 100)
# Set BENCH_REUSE=1 (with KANOA_DATABASE_URL) to rerun only the queries on
# an already loaded collection. Then POST /v1/retrieve latency (what the
# server adds over the query), and `rag ingest` with embeddings included (fake_embed.py, a
# Python server: the embedding share is the fake's cost, not a model's).
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-build}
n=${2:-100000}; dim=${3:-384}; nq=${4:-100}
cd "$top"
make -s BUILD="$build" "$build/kanoa-mlops" "$build/libkanoa.a"
cc -std=gnu17 -O2 -Isrc -D_GNU_SOURCE $(pkg-config --cflags libpq) -o "$build/bench_rag" \
    bench/rag/bench_rag.c "$build/libkanoa.a" \
    $(pkg-config --libs libmicrohttpd libcurl jansson libpq yaml-0.1 libcrypto) -lm -ldl -pthread
tmp=$(mktemp -d /tmp/kanoa-rag-bench.XXXXXX)
chmod 755 "$tmp"
pids=""
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null || true; done
    [ -d "$tmp/pg" ] && "$build/kanoa-mlops" db stop --data-dir "$tmp/pg" >/dev/null 2>&1
    rm -rf "$tmp"
}
trap cleanup EXIT
url=${KANOA_DATABASE_URL:-}
if [ -z "$url" ]; then
    url=$("$build/kanoa-mlops" db start --data-dir "$tmp/pg" -q 2>/dev/null)
fi
"$build/bench_rag" "$url" "$n" "$dim" "$nq"

# POST /v1/retrieve over the same collection, embedding time subtracted
/usr/bin/python3 tests/rag/fake_embed.py "$tmp/bport" --dim "$dim" --model bench 2>/dev/null &
pids="$pids $!"
for _ in $(seq 1 100); do [ -s "$tmp/bport" ] && break; sleep 0.1; done
"$build/kanoa-mlops" serve --host 127.0.0.1 --port 0 --database-url "$url" \
    --upstream "fake=http://127.0.0.1:$(cat "$tmp/bport"),embed=bench" >"$tmp/serve.log" 2>&1 &
pids="$pids $!"
sport=""
for _ in $(seq 1 100); do
    sport=$(grep -o 'listening on http://127.0.0.1:[0-9]*' "$tmp/serve.log" 2>/dev/null | grep -o '[0-9]*$' || true)
    [ -n "$sport" ] && grep -q "is healthy" "$tmp/serve.log" && break
    sleep 0.1
done
/usr/bin/python3 bench/rag/retrieve_latency.py "$sport" "bench-$n-$dim" bench "$nq"

# ingest with embeddings included: 500 one-chunk files (500), 384-d fake vectors
/usr/bin/python3 tests/rag/fake_embed.py "$tmp/port" --dim "$dim" 2>/dev/null &
pids="$pids $!"
for _ in $(seq 1 100); do [ -s "$tmp/port" ] && break; sleep 0.1; done
/usr/bin/python3 -c '
import random, sys
rng = random.Random(1)
w = "vector index query model token chunk postgres kanoa recall latency cosine plot".split()
for i in range(500):
    open("%s/f%04d.txt" % (sys.argv[1], i), "w").write(" ".join(rng.choice(w) for _ in range(40)) + "\n")
' "$(mkdir -p "$tmp/files" && echo "$tmp/files")"
start=$(date +%s.%N)
out=$("$build/kanoa-mlops" rag ingest "$tmp/files" --collection bench-ingest --embed-model fake-embed \
      --embed-url "http://127.0.0.1:$(cat "$tmp/port")/v1" --database-url "$url" --batch 64 2>/dev/null)
end=$(date +%s.%N)
echo "rag ingest (embeddings included, 500 files): $out"
/usr/bin/python3 -c "import sys; t=float(sys.argv[2])-float(sys.argv[1]); print('  %.0f chunks/s wall (%.1f s)' % (500/t, t))" "$start" "$end"
