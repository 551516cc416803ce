#!/bin/bash
# run.sh - run every libFuzzer harness for a bounded time, one at a time.
#
# Usage: fuzz/run.sh [SECONDS] [BUILD] [TARGET...]
#   SECONDS  per harness (default 60)
#   BUILD    build directory holding fuzz/fuzz_* (default build; make fuzz)
#   TARGET   harness names without fuzz_ (default: every one built)
#
# Inputs that add coverage go to BUILD/fuzz/corpus/<target>/ (fuzz/corpus/
# <target>/ is only read: it holds the seeds and the regression inputs);
# a crash, leak, timeout or out-of-memory input lands in
# BUILD/fuzz/artifacts/. To keep one, copy it into fuzz/corpus/<target>/
# (make test replays that directory). Runs under nice -n 19 with
# -rss_limit_mb=2048. Ends with "N passed, N failed" (failed = harnesses
# that left an artifact).
set -u
secs=${1:-60}
build=${2:-build}
shift 2 2>/dev/null || shift $#
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
export KM_SHARED=${KM_SHARED:-$top/../shared}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

max_len() {   # largest input worth mutating, per surface
    case $1 in
        gguf|model) echo 65536 ;;
        tok) echo 1024 ;;
        config|upstream) echo 2048 ;;
        *) echo 4096 ;;
    esac
}

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    for bin in "$build"/fuzz/fuzz_*; do
        [ -x "$bin" ] && [ -f "$bin" ] && targets+=("${bin##*/fuzz_}")
    done
fi
if [ ${#targets[@]} -eq 0 ]; then
    echo "no harness in $build/fuzz: run make BUILD=$build fuzz" >&2
    exit 2
fi

passed=0
failed=0
mkdir -p "$build/fuzz/artifacts"
for t in "${targets[@]}"; do
    work="$build/fuzz/corpus/$t"
    mkdir -p "$work"
    before=$(ls "$build/fuzz/artifacts" | grep -c "^$t-")
    dict=()
    [ -f "fuzz/$t.dict" ] && dict=(-dict="fuzz/$t.dict")
    nice -n 19 "$build/fuzz/fuzz_$t" "$work" "fuzz/corpus/$t" "${dict[@]}" \
        -max_total_time="$secs" -max_len="$(max_len "$t")" -rss_limit_mb=2048 \
        -timeout=10 -print_final_stats=1 \
        -artifact_prefix="$build/fuzz/artifacts/$t-" \
        >"$build/fuzz/$t.log" 2>&1
    rc=$?
    after=$(ls "$build/fuzz/artifacts" | grep -c "^$t-")
    runs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$build/fuzz/$t.log" |
           grep -Eo '[0-9]+$' | tail -n 1)
    if [ $rc -eq 0 ] && [ "$after" -eq "$before" ]; then
        passed=$((passed + 1))
        echo "ok   $t: ${runs:-?} inputs in ${secs}s"
    else
        failed=$((failed + 1))
        echo "FAIL $t (exit $rc): see $build/fuzz/$t.log"
        grep -E 'ERROR|runtime error|SUMMARY|Test unit written' "$build/fuzz/$t.log" | head -n 5
    fi
done
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
