#!/bin/bash
# run.sh - run every test suite and print one summary line.
#
# Suites:
#   build/asan/tests/test_*   Criterion unit tests, one binary per module
#                             (each test in its own process, with a timeout)
#   tests/*/run.sh            system suites (real servers, reference checks);
#                             each ends its output with "N passed, N failed"
#
# Environment given to suites: KM_BUILD (build dir), KM_BIN (the sanitized
# kanoa-mlops), KM_BIN_RELEASE (the optimized one), KM_SHARED (../shared).
# Usage: tests/run.sh BUILD_DIR [FILTER]   (FILTER: substring of suite name)
set -u
build=${1:-build}
filter=${2:-}
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
export KM_BUILD="$top/$build"
export KM_BIN="$top/$build/asan/kanoa-mlops"
export KM_BIN_RELEASE="$top/$build/kanoa-mlops"
export KM_SHARED="$top/../shared"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

passed=0
failed=0
failed_suites=""
log_dir="$KM_BUILD/test-logs"
mkdir -p "$log_dir"

count_line() {   # add the last "N passed, N failed" line of a log
    local log=$1 name=$2 p f
    read -r p f < <(grep -Eo '^([A-Za-z]+: )?[0-9]+ passed, [0-9]+ failed' "$log" |
                    tail -n 1 | grep -Eo '[0-9]+' | tr '\n' ' ')
    if [ -z "${p:-}" ]; then
        echo "  (no summary line from $name: counted as 1 failure)"
        p=0; f=1
    fi
    passed=$((passed + p))
    failed=$((failed + f))
    echo "$name: $p passed, $f failed"
    return 0
}

for bin in "$KM_BUILD"/asan/tests/test_*; do
    [ -x "$bin" ] || continue
    name=$(basename "$bin")
    case "$name" in *"$filter"*) ;; *) continue ;; esac
    log="$log_dir/$name.log"
    timeout 900 "$bin" --ascii -j2 >"$log" 2>&1
    rc=$?
    syn=$(grep -E 'Synthesis: Tested: [0-9]+' "$log" | tail -n 1)
    t=$(sed -E 's/.*Tested: ([0-9]+).*/\1/' <<<"$syn")
    ok=$(sed -E 's/.*Passing: ([0-9]+).*/\1/' <<<"$syn")
    if [ -z "$syn" ]; then
        t=1; ok=0
    fi
    bad=$((t - ok))
    if [ $rc -ne 0 ] && [ $bad -eq 0 ]; then bad=1; fi
    # Leaks are reported by LeakSanitizer when a test process exits, after
    # Criterion has counted the test as passed: count each report as a failure.
    leaks=$(grep -c 'ERROR: LeakSanitizer' "$log")
    if [ "$leaks" -gt 0 ]; then
        echo "  $name: $leaks leak report(s)"
        bad=$((bad + leaks)); ok=$((ok - leaks)); [ $ok -lt 0 ] && ok=0
    fi
    passed=$((passed + ok))
    failed=$((failed + bad))
    echo "$name: $ok passed, $bad failed"
    if [ $bad -ne 0 ]; then
        failed_suites="$failed_suites $name"
        grep -E '\[(FAIL|----)\]|ERROR|Sanitizer|runtime error|#[0-9]+ 0x' "$log" | head -n 60
    fi
done

for suite in tests/*/run.sh; do
    [ -x "$suite" ] || continue
    name=$(basename "$(dirname "$suite")")
    case "$name" in *"$filter"*) ;; *) continue ;; esac
    log="$log_dir/suite-$name.log"
    before=$failed
    timeout 1200 "$suite" >"$log" 2>&1
    rc=$?
    count_line "$log" "$name"
    if [ $rc -ne 0 ] && [ $failed -eq $before ]; then
        failed=$((failed + 1))
        echo "  $name exited $rc"
    fi
    if [ $failed -ne $before ]; then
        failed_suites="$failed_suites $name"
        grep -E 'not ok|FAIL|Sanitizer|runtime error' "$log" | head -n 40
    fi
done

if [ -n "$failed_suites" ]; then
    echo "failing suites:$failed_suites (logs in $log_dir)"
fi
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
