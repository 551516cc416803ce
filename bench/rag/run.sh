#!/bin/bash
# bench/rag/run.sh - the knowledge-base benchmark, in one run:
#   bench/rag/run.sh [BUILD_DIR] [N] [DIM] [QUERIES]   (build 100000 384 100)
#  1. bench_rag (built against BUILD_DIR/libkanoa.a) on a throwaway cluster
#     (or $KANOA_DATABASE_URL): COPY rates (text, the baseline, encoded
#     before the clock starts; binary), the ingest path without embeddings
#     (1 and BENCH_JOBS connections, then incremental into the HNSW), the
#     HNSW build, recall@10 and query latency; BENCH_COSTS=M adds the
#     per-row cost of each part of kanoa.chunks (M rows per variant, among
#     them schema 3's generated tsv against schema 4's tsv sent by the
#     client or computed by the trigger); the ingest path sends each row's
#     tsvector from the client (tsv.c) when it handles the text,
#     BENCH_TSV=server leaves them all to the trigger;
#  1b. the real `rag ingest` without a model (--embed-hash DIM): N/5
#     chunks in N/500 files of 100 paragraphs like bench_rag's rows,
#     --jobs 1, the default (the online CPUs) and CPUs + 1; rate = chunks / the
#     files phase (read, hash, chunk, COPY, commits, the WAL flush; the
#     HNSW build after it is reported apart);
#  2. POST /v1/retrieve against the bare SQL with the same query vectors
#     (bench_rag with PORT): `serve` embeds with a synthesized 2-layer BERT
#     of DIM dims served as "bench", the collection's model (one thread, so
#     its CPU time per request is the embedding's); wall-clock percentiles
#     and CPU time per request of the server and the database backends,
#     retrieve's added CPU split into server and database, and retrieve's
#     query + hits JSON run inside bench_rag (client and backend CPU);
#  3. `rag ingest` of 500 one-chunk files with embeddings included: the
#     local engine (--embed-model, a synthesized bge-small: 12 layers, 384
#     dims, random weights, the real cost) and the same model behind
#     `serve` (--embed-url).
# BENCH_REUSE=1 (with KANOA_DATABASE_URL pointing at a database that already
# holds the collection) skips the load and index build of step 1.
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-build}
n=${2:-100000}; dim=${3:-384}; nq=${4:-100}
cd "$top"
make -s BUILD="$build" "$build/kanoa-mlops" "$build/libkanoa.a"
cc -std=gnu17 -O2 -Isrc -D_GNU_SOURCE $(pkg-config --cflags libpq) -o "$build/bench_rag" \
    bench/rag/bench_rag.c bench/rag/bench_retrieve.c "$build/libkanoa.a" \
    $(pkg-config --libs libmicrohttpd libcurl jansson libpq yaml-0.1 libcrypto) -lm -ldl -pthread
bin=$build/kanoa-mlops
vocab=$top/../shared/data/tokenizer/ggml-vocab-bert-bge.gguf
tmp=$(mktemp -d /tmp/kanoa-rag-bench.XXXXXX)
chmod 755 "$tmp"
pids=""
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null || true; done
    [ -d "$tmp/pg" ] && "$bin" db stop --data-dir "$tmp/pg" >/dev/null 2>&1
    rm -rf "$tmp"
}
trap cleanup EXIT
url=${KANOA_DATABASE_URL:-}
if [ -z "$url" ]; then
    url=$("$bin" db start --data-dir "$tmp/pg" -q 2>/dev/null)
fi
echo "# $(uptime)"
"$build/bench_rag" "$url" "$n" "$dim" "$nq" | tee "$tmp/step1.out"

# 1b. the real rag ingest, embeddings excluded (--embed-hash)
mkdir -p "$tmp/kb"
/usr/bin/python3 -c '
import random, sys
rng = random.Random(2)
w = "vector index query model token chunk postgres kanoa recall latency cosine plot".split()
for f in range(int(sys.argv[2])):
    with open("%s/d%05d.txt" % (sys.argv[1], f), "w") as out:
        out.write("\n\n".join("chunk %d: " % (100 * f + p) + " ".join(rng.choice(w) for _ in range(24))
                              for p in range(100)) + "\n")
' "$tmp/kb" $((n / 500))
ref=$(sed -n 's/^text COPY[^:]*: *\([0-9]*\) rows\/s.*/\1/p' "$tmp/step1.out" | sort -n | tail -n 1)
# --jobs 1, the default (the online CPUs), and one more job than CPUs (a
# document's round trips and the client's share of the work leave a core
# idle now and then: does one more job fill those gaps?)
for jobs in 1 0 $(($(nproc) + 1)); do
    flag=""; [ "$jobs" != 0 ] && flag="--jobs $jobs"
    out=$("$bin" rag ingest "$tmp/kb" --database-url "$url" --collection bench-files \
          --embed-hash "$dim" --chunk-tokens 64 --overlap 0 $flag 2>/dev/null)
    echo "rag ingest --embed-hash $dim ${flag:-(default jobs)}: $out"
    /usr/bin/python3 -c '
import re, sys
m = re.search(r"\((\d+) chunks\).*files ([0-9.]+) s with (\d+) job", sys.argv[1])
c, t, j = int(m.group(1)), float(m.group(2)), int(m.group(3))
print("  %.0f chunks/s (%d chunks, files phase %.1f s, %d jobs) = %.2fx text COPY (%s rows/s)"
      % (c / t, c, t, j, c / t / float(sys.argv[2]), sys.argv[2]))' "$out" "$ref"
    psql "$url" -X -q -c "DELETE FROM kanoa.collections WHERE name = 'bench-files'"
done

serve() { # serve LOG ARGS...: start kanoa-mlops serve, wait until ready; $sport, $spid
    local log=$1; shift
    "$bin" serve --host 127.0.0.1 --port 0 --database-url "$url" "$@" >"$log" 2>&1 &
    spid=$!
    pids="$pids $spid"
    sport=""
    for _ in $(seq 1 300); do
        sport=$(grep -o 'listening on http://127.0.0.1:[0-9]*' "$log" 2>/dev/null | grep -o '[0-9]*$' || true)
        [ -n "$sport" ] && curl -sf "http://127.0.0.1:$sport/health" >/dev/null && return 0
        sleep 0.1
    done
    cat "$log"
    return 1
}

# 2. POST /v1/retrieve vs the bare SQL
"$bin" models synth --arch bert --shape tiny --dim "$dim" --heads 6 --ffn $((4 * dim)) -q \
    --vocab-from "$vocab" -o "$tmp/bench.gguf" >/dev/null
serve "$tmp/serve.log" --model "$tmp/bench.gguf" --served-model-name bench --threads 1
echo "# $(uptime)"
BENCH_SERVE_PID=$spid "$build/bench_rag" "$url" "$n" "$dim" "$nq" "$sport"

# 3. ingest with embeddings included: 500 one-chunk files of 40 words
"$bin" models synth --arch bert --shape bge-small -q --vocab-from "$vocab" \
    -o "$tmp/bge-small.gguf" >/dev/null
mkdir -p "$tmp/files"
/usr/bin/python3 -c '
import random, sys
rng = random.Random(1)
w = "vector index query model token chunk postgres kanoa recall latency cosine plot".split()
for i in range(500):
    open("%s/f%04d.txt" % (sys.argv[1], i), "w").write(" ".join(rng.choice(w) for _ in range(40)) + "\n")
' "$tmp/files"
ingest() { # ingest LABEL ARGS...
    local label=$1; shift
    local start end out
    start=$(date +%s.%N)
    out=$("$bin" rag ingest "$tmp/files" --database-url "$url" --batch 32 "$@" 2>/dev/null)
    end=$(date +%s.%N)
    echo "rag ingest, $label: $out"
    /usr/bin/python3 -c "import sys; t=float(sys.argv[2])-float(sys.argv[1]); print('  %.1f chunks/s wall (%.1f s, 500 chunks)' % (500/t, t))" "$start" "$end"
}
psql "$url" -X -q -c "DELETE FROM kanoa.collections WHERE name LIKE 'bench-ingest%'"
echo "# $(uptime)"
ingest "local engine (bge-small shape, --threads 2)" --collection bench-ingest-local \
    --embed-model "$tmp/bge-small.gguf" --threads 2
serve "$tmp/serve2.log" --model "$tmp/bge-small.gguf" --threads 2
ingest "endpoint (the same model behind serve)" --collection bench-ingest-http \
    --embed-url "http://127.0.0.1:$sport/v1" --embed-model bge-small
psql "$url" -X -q -c "DELETE FROM kanoa.collections WHERE name LIKE 'bench-ingest-%'"
echo "# $(uptime)"
