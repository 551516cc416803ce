#!/bin/sh
# run.sh - build and run the kernel benchmark against an optimized build.
#   bench/kernels/run.sh [BUILD_DIR] [MiB] [MODEL.gguf]   (default build, 256 MiB;
#   with a model: one decode and one 64-token prefill pass over its weights)
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-build}
cd "$top"
make -s BUILD="$build" "$build/libkanoa.a"
cc -std=gnu17 -O2 -Isrc -D_GNU_SOURCE -o "$build/bench_kernels" bench/kernels/bench_kernels.c \
    "$build/libkanoa.a" -lm -pthread
"$build/bench_kernels" "${2:-256}" ${3:+"$3"}
