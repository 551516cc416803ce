#!/bin/sh
# run.sh - build and run the kernel benchmark against an optimized build.
#   bench/kernels/run.sh [BUILD_DIR] [MiB]   (default build, 256 MiB)
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-build}
cd "$top"
make -s BUILD="$build" "$build/libkanoa.a"
cc -std=gnu17 -O2 -Isrc -D_GNU_SOURCE -o "$build/bench_kernels" bench/kernels/bench_kernels.c \
    "$build/libkanoa.a" -lm -pthread
"$build/bench_kernels" "${2:-256}"
