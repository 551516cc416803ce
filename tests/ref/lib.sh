# shellcheck shell=bash disable=SC2034,SC2154
# lib.sh - shared set-up of the reference suites (sourced by run.sh,
# run_embed.sh, run_gemma.sh): paths, a scratch dir, ok/bad counters, and
# ref_build_tool NAME, which links tests/ref/NAME.c against the built library
# (the release one when present: the tools only dump numbers) into
# $work/NAME, or ends the suite with a failure.
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top" || exit 1
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

# ref_check LABEL TYPE AQTOL DIM REF TOOL...
#   The engine's numbers for $ids -- "TOOL... OUT THREADS$ref_batch $ids"
#   with 1 and 2 threads -- must be bit-identical, within the tolerance of
#   TYPE of "$py REF $model OUT $ids" (F32/F16/BF16 1e-3 of the range,
#   quantized types 3e-2), and for quantized types within AQTOL of REF run
#   with --act-quant. DIM: compare.py's row size ("" = one logit vector).
#   Leaves $work/e1.f32 (engine) and $work/r.f32 (plain reference).
ref_check() {
    local label=$1 type=$2 aqtol=$3 dim=$4 ref=$5 tol=3e-2
    shift 5
    case $type in F32|F16|BF16) tol=1e-3 ;; esac
    # shellcheck disable=SC2086
    if ! "$@" "$work/e1.f32" "1${ref_batch:-}" $ids 2>"$work/err" ||
       ! "$@" "$work/e2.f32" "2${ref_batch:-}" $ids 2>>"$work/err"; then
        cat "$work/err"
        bad "$label: engine"
        return
    fi
    if cmp -s "$work/e1.f32" "$work/e2.f32"; then
        ok "$label: identical with 1 and 2 threads"
    else
        bad "$label: differ between 1 and 2 threads"
    fi
    ref_compare "$label: float64 reference" e1 r "$tol" "$dim" "$ref" || return
    [ $tol = 1e-3 ] && return
    ref_compare "$label: reference with the engine's activation rounding" e1 rq "$aqtol" \
        "$dim" "$ref" --act-quant
}

# ref_compare LABEL ENGINE OUT TOL DIM REF [FLAG]: runs "$py REF [FLAG]
# $model $work/OUT.f32 $ids" and checks $work/ENGINE.f32 against it.
ref_compare() {
    local label=$1 eng=$2 out=$3 tol=$4 dim=$5 ref=$6 res
    shift 6
    # shellcheck disable=SC2086
    if ! $py "$ref" "$@" "$model" "$work/$out.f32" $ids; then
        bad "$label: the reference failed"
        return 1
    fi
    # shellcheck disable=SC2086
    if res=$($py tests/ref/compare.py "$work/$eng.f32" "$work/$out.f32" "$tol" $dim); then
        ok "$label: $res"
    else
        bad "$label: $res"
    fi
}

# ref_synth LABEL ARGS...: synthesize $model with `models synth ARGS... -q`.
ref_synth() {
    local label=$1
    shift
    "$synth" models synth "$@" -q -o "$model" >/dev/null && return 0
    bad "$label: synthesize"
    return 1
}

# ref_sub SCRIPT: run another reference suite, echo its lines and add its
# counts to ours.
ref_sub() {
    local res p f
    res=$("$top/tests/ref/$1")
    echo "$res" | sed '$d'
    read -r p f < <(echo "$res" | tail -n 1 | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\1 \2/p')
    passed=$((passed + ${p:-0}))
    failed=$((failed + ${f:-1}))
}
