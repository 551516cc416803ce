#!/bin/bash
# tests/compat/run.sh - the official openai npm SDK (version pinned in
# package.json / package-lock.json, installed with `npm ci` into a cache under
# the build dir) drives a scripted server process over loopback.
# Ends with "N passed, N failed".
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
build=${KM_BUILD:-$here/../../build}
npmdir="$build/compat-npm"
mkdir -p "$npmdir"
if ! cmp -s "$here/package-lock.json" "$npmdir/package-lock.json" ||
   [ ! -d "$npmdir/node_modules/openai" ]; then
    cp "$here/package.json" "$here/package-lock.json" "$npmdir/"
    (cd "$npmdir" && timeout 300 npm ci --no-audit --no-fund --silent) || {
        echo "compat: npm ci failed"; echo "0 passed, 1 failed"; exit 1; }
fi
cp "$here/compat.mjs" "$npmdir/compat.mjs"
bin=$("$here/build-scripted.sh") || { echo "0 passed, 1 failed"; exit 1; }
out="$build/server-tests/compat.out"
"$bin" api-key=compat-key >"$out" 2>"$build/server-tests/compat.err" &
pid=$!
port=$(wait_port "$out" "$SCRIPTED_PORT")
if [ -z "$port" ]; then
    kill "$pid" 2>/dev/null; echo "compat: server did not start"; echo "0 passed, 1 failed"; exit 1
fi
summary() { tail -n 1 | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\1 \2/p'; }
sdk=$(timeout 120 node "$npmdir/compat.mjs" "http://127.0.0.1:$port" compat-key)
echo "$sdk" | sed '$d'
read -r p f < <(echo "$sdk" | summary)
p=${p:-0}; f=${f:-1}
if stop_scripted "$pid" "$build/server-tests/compat.err"; then
    p=$((p + 1))
else
    f=$((f + 1))
fi
# the serve command itself (the sanitized binary when run from make test)
cli=$("$here/cli.sh" "${KM_BIN:-$build/asan/kanoa-mlops}" "$build/server-tests/cli")
echo "$cli" | sed '$d'
read -r cp cf < <(echo "$cli" | summary)
p=$((p + ${cp:-0})); f=$((f + ${cf:-1}))
echo "$p passed, $f failed"
[ "$f" -eq 0 ]
