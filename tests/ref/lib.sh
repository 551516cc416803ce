# lib.sh - shared set-up of the reference suites (sourced by run.sh,
# run_embed.sh, run_gemma.sh): paths, a scratch dir, ok/bad counters, and
# ref_build_tool NAME, which links tests/ref/NAME.c against the built library
# (the release one when present: the tools only dump numbers) into
# $work/NAME, or ends the suite with a failure.
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"
build=${KM_BUILD:-$top/build}
shared=${KM_SHARED:-$top/../shared}
py=/usr/bin/python3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0
failed=0
ok() { echo "ok - $1"; passed=$((passed + 1)); }
bad() { echo "not ok - $1"; failed=$((failed + 1)); }
synth=${KM_BIN_RELEASE:-$build/kanoa-mlops}
[ -x "$synth" ] || synth=${KM_BIN:-$build/asan/kanoa-mlops}

ref_build_tool() {
    local name=$1 lib=$build/asan/libkanoa.a
    local flags="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer"
    if [ -f "$build/libkanoa.a" ]; then
        lib=$build/libkanoa.a
        flags="-O2 -g"
    fi
    local pkgs="libmicrohttpd libcurl jansson libpq yaml-0.1 libcrypto"
    # shellcheck disable=SC2046,SC2086
    if ! cc -std=gnu17 $flags -Isrc -Itests -D_GNU_SOURCE -pthread -o "$work/$name" \
            "tests/ref/$name.c" "$lib" $(pkg-config --libs $pkgs) -lm -ldl; then
        bad "build $name"
        echo "$passed passed, $failed failed"
        exit 1
    fi
}
