#!/bin/bash
# tests/hostile/run.sh - hostile requests (data files in cases/ plus generated
# ones: deep nesting, chunked overflow, slow drip, 1,000 idle connections)
# against the scripted server; /health must keep answering; the server must
# exit cleanly (no sanitizer report) on SIGTERM. Ends with "N passed, N failed".
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../compat/lib.sh"
build=${KM_BUILD:-$here/../../build}
bin=$("$here/../compat/build-scripted.sh") || { echo "0 passed, 1 failed"; exit 1; }
out="$build/server-tests/hostile.out"
err="$build/server-tests/hostile.err"
"$bin" max-body=1M conn-timeout=10 >"$out" 2>"$err" &
pid=$!
port=$(wait_port "$out" "$SCRIPTED_PORT")
if [ -z "$port" ]; then
    kill "$pid" 2>/dev/null; echo "hostile: server did not start"; echo "0 passed, 1 failed"; exit 1
fi
ulimit -n 4096 2>/dev/null
result=$(timeout 300 /usr/bin/python3 "$here/hostile.py" "$port" "$here/cases")
echo "$result" | sed '$d'
p=$(echo "$result" | tail -n 1 | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\1/p')
f=$(echo "$result" | tail -n 1 | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\2/p')
p=${p:-0}; f=${f:-1}
if stop_scripted "$pid" "$err"; then
    p=$((p + 1))
else
    f=$((f + 1))
fi
echo "$p passed, $f failed"
[ "$f" -eq 0 ]
