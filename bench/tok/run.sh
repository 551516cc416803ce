#!/bin/sh
# run.sh - build and run the tokenizer benchmark against an optimized build.
#   bench/tok/run.sh [BUILD_DIR]     (default build; needs BUILD_DIR/libkanoa.a)
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-build}
cd "$top"
make -s BUILD="$build" "$build/libkanoa.a"
cc -std=gnu17 -O2 -Isrc -D_GNU_SOURCE -o "$build/bench_tok" bench/tok/bench_tok.c \
    "$build/libkanoa.a" -lm -pthread
"$build/bench_tok" "$top/../shared"
