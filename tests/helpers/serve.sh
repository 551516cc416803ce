# shellcheck shell=bash disable=SC2034
# serve.sh - shared set-up of the suites that run a real `kanoa-mlops serve`
# on a loopback port (sourced by tests/embed/run.sh and tests/serve/run.sh).
#
# Sets top (and cd there), build, shared, bin (the ASan binary under test),
# synth (the release binary when present: it only writes model files) and
# work, a scratch dir removed on exit together with the server. Defines:
#   fail MSG          print "not ok - MSG" and a 0/1 summary, exit 1
#   serve_start ARGS  run `$bin serve --host 127.0.0.1 --port 0 ARGS` in the
#                     background, log in $work/log; sets pid, and port once
#                     the server says it listens (20 s at most), else fails
#   serve_stop        stop the server and wait for it
#   serve_log_clean   false (and says so) when the log has a sanitizer report
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top" || exit 1
build=${KM_BUILD:-$top/build}
shared=${KM_SHARED:-$top/../shared}
bin=${KM_BIN:-$build/asan/kanoa-mlops}
synth=${KM_BIN_RELEASE:-$build/kanoa-mlops}
[ -x "$synth" ] || synth=$bin
work=$(mktemp -d)
pid=""
cleanup() {
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; fi
    rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "not ok - $1"; echo "0 passed, 1 failed"; exit 1; }

serve_start() {
    "$bin" serve --host 127.0.0.1 --port 0 "$@" >"$work/log" 2>&1 &
    pid=$!
    port=""
    for _ in $(seq 1 400); do
        port=$(grep -Eo 'listening on http://127\.0\.0\.1:[0-9]+' "$work/log" | grep -Eo '[0-9]+$' | head -n 1)
        [ -n "$port" ] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    [ -n "$port" ] || { cat "$work/log"; fail "server did not start"; }
}

serve_stop() {
    kill "$pid" 2>/dev/null
    wait "$pid"
    pid=""
}

serve_log_clean() {
    if grep -E 'Sanitizer|runtime error' "$work/log"; then
        echo "not ok - sanitizer report in the server log"
        return 1
    fi
}
