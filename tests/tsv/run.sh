#!/bin/bash
# tests/tsv/run.sh - the client's to_tsvector('english', ...) (src/rag/tsv.c)
# against a real throwaway PostgreSQL 15 cluster.
#
# Builds tsv_check.c (sanitized, linked with the sanitized library), starts
# a cluster with `kanoa-mlops db start` in a temp dir (loopback, free port),
# then checks:
#  - every ASCII alphabetic word of the GGUF vocabularies in
#    ../shared/data/tokenizer/ stems as ts_lexize('english_stem', w) does;
#  - every text the fast path accepts gives, as a binary tsvector parameter,
#    exactly to_tsvector('english', text)::text: seeded random sentences of
#    vocabulary words, numbers and punctuation, and every paragraph of
#    docs/*.md, README.md and ../shared/docs/*.md, random strings of
#    punctuation-rich characters and every combination of up to three tricky
#    pieces (dots, hyphens, blanks next to words and numbers);
#  - the fast path accepts at least MIN_RANDOM % of the random sentences (so
#    the check cannot pass by refusing everything).
# Works as root (the server then runs as `postgres`) and as a normal user.
set -u
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
BIN=${KM_BIN:-$top/build/asan/kanoa-mlops}
BUILD=${KM_BUILD:-$top/build}
SHARED=${KM_SHARED:-$top/../shared}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
MIN_RANDOM=75
N_RANDOM=4000

pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok - $1"; }
bad() { fail=$((fail + 1)); echo "not ok - $1"; }

tmp=$(mktemp -d /tmp/kanoa-tsv-test.XXXXXX)
chmod 755 "$tmp" # the server may run as `postgres` (when we are root)
pgdir=$tmp/pg
cleanup() {
    "$BIN" db stop --data-dir "$pgdir" >/dev/null 2>&1
    rm -rf "$tmp"
}
trap cleanup EXIT
finish() { echo "$pass passed, $fail failed"; [ "$fail" -eq 0 ]; exit; }

# ---- helper -------------------------------------------------------------
pkgs="libmicrohttpd libcurl jansson libpq yaml-0.1 libcrypto"
if cc -std=gnu17 -Wall -Wextra -Werror -O1 -g -fsanitize=address,undefined \
    -fno-omit-frame-pointer -fno-sanitize-recover=undefined -I"$top/src" -D_GNU_SOURCE \
    $(pkg-config --cflags libpq) -o "$tmp/tsv_check" "$here/tsv_check.c" \
    "$BUILD/asan/libkanoa.a" $(pkg-config --libs $pkgs) -lm -ldl -pthread \
    2>"$tmp/cc.err"; then
    ok "build tsv_check"
else
    cat "$tmp/cc.err"; bad "build tsv_check"; finish
fi
"$tmp/tsv_check" vocab "$SHARED"/data/tokenizer/*.gguf | sort -u >"$tmp/words"
nwords=$(wc -l <"$tmp/words")
if [ "$nwords" -ge 20000 ]; then ok "vocabulary words: $nwords"; else bad "vocabulary words: $nwords"; fi

# ---- cluster ------------------------------------------------------------
if ! "$BIN" db start --data-dir "$pgdir" >"$tmp/start.out" 2>&1; then
    cat "$tmp/start.out"; bad "db start"; finish
fi
ok "db start"
URL=$("$BIN" db status --data-dir "$pgdir" -q)

# ---- stems --------------------------------------------------------------
"$tmp/tsv_check" words "$URL" "$tmp/words" >"$tmp/words.out" 2>&1
rc=$?
grep -v '^words: ' "$tmp/words.out" | head -n 20 # mismatches, errors
tail -n 1 "$tmp/words.out"
if [ $rc -eq 0 ]; then ok "stems equal ts_lexize('english_stem') for $nwords words"; else bad "stems"; fi

# ---- texts --------------------------------------------------------------
/usr/bin/python3 "$here/mkcorpus.py" "$tmp/words" 20261127 "$N_RANDOM" "$tmp/corpus" \
    "$top"/docs/*.md "$top/README.md" "$SHARED"/docs/*.md
"$tmp/tsv_check" texts "$URL" "$tmp/corpus" >"$tmp/texts.out" 2>&1
rc=$?
head -n -4 "$tmp/texts.out" | head -n 40 # mismatches, errors
tail -n 4 "$tmp/texts.out"
if [ $rc -eq 0 ]; then ok "accepted texts equal to_tsvector('english')"; else bad "texts"; fi
rate=$(sed -nE 's/^random texts: .*\(([0-9]+)%\)$/\1/p' "$tmp/texts.out")
if [ "${rate:-0}" -ge "$MIN_RANDOM" ]; then
    ok "random sentences accepted: ${rate}% (minimum $MIN_RANDOM%)"
else
    bad "random sentences accepted: ${rate:-?}% (minimum $MIN_RANDOM%)"
fi
finish
