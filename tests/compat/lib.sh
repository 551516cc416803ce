# lib.sh - shell helpers sourced by the server's system suites
# (tests/compat/run.sh, tests/compat/cli.sh, tests/hostile/run.sh).

# wait_port FILE SED_SCRIPT: print the port that SED_SCRIPT (sed -n) extracts
# from FILE, polling every 0.1 s for at most 10 s; prints nothing on timeout.
wait_port() {
    local port=""
    for _ in $(seq 1 100); do
        port=$(sed -n "$2" "$1")
        [ -n "$port" ] && break
        sleep 0.1
    done
    echo "$port"
}

# The scripted server prints "port N" on stdout once it listens.
SCRIPTED_PORT='s/^port \([0-9]*\)$/\1/p'

# stop_scripted PID ERRFILE: SIGTERM the server and wait for it. Prints "ok"
# and returns 0 when it exits 0 without a sanitizer report in ERRFILE; else
# prints "not ok" with the report's first lines and returns 1.
stop_scripted() {
    kill -TERM "$1"
    wait "$1"
    local rc=$?
    if [ $rc -ne 0 ] || grep -qE "Sanitizer|runtime error" "$2"; then
        echo "not ok server exit status $rc or sanitizer report (see $2)"
        grep -E "Sanitizer|runtime error" "$2" | head
        return 1
    fi
    echo "ok server exited cleanly"
}
