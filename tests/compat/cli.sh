#!/bin/bash
# cli.sh - `kanoa-mlops serve` as a process: --help, bad flags, config
# precedence in --print-config, a JSON access log line, SIGTERM drain with
# exit 0. usage: cli.sh KANOA_BIN WORKDIR. Prints ok/not ok lines and
# "N passed, N failed" last.
set -u
. "$(dirname "$0")/lib.sh"
bin=$1
work=$2
mkdir -p "$work"
p=0; f=0
t() { # name, condition result (0 = ok)
    if [ "$2" -eq 0 ]; then p=$((p + 1)); echo "ok $1"; else f=$((f + 1)); echo "not ok $1"; fi
}
"$bin" serve --help >"$work/help.out" 2>&1; rc=$?
t "serve --help exits 0" $(( rc != 0 ))
grep -q -- "--max-concurrent" "$work/help.out"; t "help lists --max-concurrent" $?
"$bin" serve --nope >/dev/null 2>"$work/bad.err"; rc=$?
t "bad flag exits 2" $(( rc != 2 ))
grep -q "usage: kanoa-mlops serve" "$work/bad.err"; t "bad flag prints usage on stderr" $?
printf 'port: 9001\nmax-queue: 5\nhost: 0.0.0.0\napi-key: [filekey]\n' >"$work/c.yaml"
KANOA_PORT=9002 KANOA_MAX_QUEUE=6 "$bin" serve --config "$work/c.yaml" --port 9003 \
    --print-config >"$work/pc.out"; rc=$?
t "print-config exits 0" $rc
grep -qx "port: 9003" "$work/pc.out"; t "flag beats env" $?
grep -qx "max-queue: 6" "$work/pc.out"; t "env beats file" $?
grep -qx 'host: "0.0.0.0"' "$work/pc.out"; t "file beats default" $?
! grep -q filekey "$work/pc.out"; t "keys redacted" $?
printf '# keys\nk-one\n\n  k-two  \n' >"$work/keys"
KANOA_API_KEY=envkey "$bin" serve --api-key-file "$work/keys" --print-config >"$work/kf.out"
[ "$(grep -c '^  - "\*\*\*"$' "$work/kf.out")" = 3 ]; t "api-key-file adds two keys to KANOA_API_KEY" $?
"$bin" serve --port 70000 >/dev/null 2>"$work/port.err"; rc=$?
t "bad value exits 1" $(( rc != 1 ))
grep -q "^kanoa-mlops serve: setting port: '70000'" "$work/port.err"; t "bad value message" $?
"$bin" serve --port 0 --log-format json --http-threads 1 2>"$work/serve.err" &
pid=$!
port=$(wait_port "$work/serve.err" 's|.*listening on http://127.0.0.1:\([0-9]*\).*|\1|p')
[ -n "$port" ]; t "serve starts with no backend" $?
code=$(curl -s -o "$work/h.out" -w '%{http_code}' -H 'X-Request-Id: cli-1' "http://127.0.0.1:$port/health")
[ "$code" = 200 ]; t "/health 200 without models" $?
sleep 0.2
grep -q '"msg":"request","remote":"127.0.0.1","method":"GET","path":"/health","status":200,.*"request_id":"cli-1"' "$work/serve.err"
t "json access log line" $?
kill -TERM "$pid"; wait "$pid"; rc=$?
t "SIGTERM exits 0" $rc
grep -q "SIGTERM received; draining" "$work/serve.err"; t "drain logged" $?
echo "$p passed, $f failed"
