#!/bin/bash
# build-scripted.sh - build the test-only scripted server (tests/compat/
# scripted_server.c + tests/helpers/server_scripted.c) against the sanitized
# library of a `make test` build. Prints the binary's path.
#   usage: tests/compat/build-scripted.sh   (KM_BUILD set by tests/run.sh)
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${KM_BUILD:-$top/build}
out="$build/server-tests/scripted_server"
mkdir -p "$(dirname "$out")"
src="$top/tests/compat/scripted_server.c $top/tests/helpers/server_scripted.c"
lib="$build/asan/libkanoa.a"
if [ ! -x "$out" ] || [ "$lib" -nt "$out" ] ||
   [ "$top/tests/compat/scripted_server.c" -nt "$out" ] ||
   [ "$top/tests/helpers/server_scripted.c" -nt "$out" ]; then
    # shellcheck disable=SC2046,SC2086
    cc -std=gnu17 -Wall -Wextra -Werror -Wno-unused-parameter -D_GNU_SOURCE \
       -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -pthread \
       -I"$top/src" -I"$top/tests" $(pkg-config --cflags jansson) \
       -o "$out" $src "$lib" \
       $(pkg-config --libs libmicrohttpd libcurl jansson libpq yaml-0.1 libcrypto) -lm -ldl
fi
echo "$out"
