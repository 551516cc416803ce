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
