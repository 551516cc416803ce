#!/bin/bash
# tests/gateway/run.sh - the gateway end to end: `kanoa-mlops serve
# --upstream` (the sanitized binary) in front of fault-injecting upstreams
# (fault_upstream.py) and of real `kanoa-mlops serve` processes running a
# synthesized model; the official openai npm SDK suite through the gateway;
# 10,000 requests with random client cancels and a LeakSanitizer check at
# exit; and the `kanoa-mlops bench` command. Ends with "N passed, N failed".
set -u
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
build=${KM_BUILD:-$top/build}
bin=${KM_BIN:-$build/asan/kanoa-mlops}
rel=${KM_BIN_RELEASE:-$build/kanoa-mlops}
py=/usr/bin/python3
work="$build/gateway-tests"
rm -rf "$work"
mkdir -p "$work"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export KANOA_UPSTREAM_PROBE_INTERVAL_MS=200
export KANOA_UPSTREAM_PROBE_TIMEOUT_MS=2000
passed=0
failed=0
pids=()

ok() { passed=$((passed + 1)); echo "ok $passed - $1"; }
notok() { failed=$((failed + 1)); echo "not ok - $1"; shift; for l in "$@"; do echo "  $l"; done; }
check() { # check DESC COND-COMMAND...
    local d=$1; shift
    if "$@"; then ok "$d"; else notok "$d"; fi
}
cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
    wait 2>/dev/null
}
trap cleanup EXIT

# start_fake VAR NAME [args]: a fault upstream; its port goes into VAR
start_fake() {
    local var=$1 name=$2; shift 2
    local out="$work/fake-$name.out"
    "$py" "$here/fault_upstream.py" --name "$name" --lifetime 600 "$@" \
        >"$out" 2>/dev/null &
    pids+=($!)
    local port=""
    for _ in $(seq 1 100); do
        port=$(sed -n 's/^PORT \([0-9]*\)$/\1/p' "$out" 2>/dev/null)
        [ -n "$port" ] && break
        sleep 0.05
    done
    printf -v "$var" '%s' "$port"
}

# start_serve VAR PIDVAR LOG BINARY [args]: kanoa-mlops serve on a free port
start_serve() {
    local var=$1 pvar=$2 log=$3 exe=$4; shift 4
    "$exe" serve --port 0 "$@" >"$log" 2>&1 &
    local pid=$!
    pids+=($pid)
    printf -v "$pvar" '%s' "$pid"
    local port=""
    for _ in $(seq 1 200); do
        port=$(sed -n 's|.*listening on http://127.0.0.1:\([0-9]*\).*|\1|p' "$log" | head -n 1)
        [ -n "$port" ] && break
        sleep 0.05
    done
    printf -v "$var" '%s' "$port"
}

metric() { # metric PORT PREFIX -> value of the first sample line
    curl -s "http://127.0.0.1:$1/metrics" | grep -F "$2" | head -n 1 | awk '{print $2}'
}

wait_metric() { # wait_metric PORT LINE-PREFIX VALUE [tries]
    for _ in $(seq 1 "${4:-100}"); do
        [ "$(metric "$1" "$2")" = "$3" ] && return 0
        sleep 0.05
    done
    return 1
}

post() { # post PORT JSON [curl args] -> body; status in $work/status
    local port=$1 json=$2; shift 2
    curl -s -o "$work/body" -w '%{http_code}' -H 'Content-Type: application/json' \
        "$@" --data-binary "$json" "http://127.0.0.1:$port/v1/chat/completions" \
        >"$work/status"
    cat "$work/body"
}

served_by() { # served_by N NAME -> how many of N chat requests NAME answered
    local n=0
    for _ in $(seq 1 "$1"); do
        post "$gw" '{"model":"m1","messages":[{"role":"user","content":"x"}]}' |
            grep -q "\"upstream\":\"$2\"" && n=$((n + 1))
    done
    echo "$n"
}

control() { # control PORT JSON: change a fault upstream's state
    curl -s -d "$2" "http://127.0.0.1:$1/control" >/dev/null
}

# ---- the bench command's interface ---------------------------------------
"$rel" bench --help >"$work/h.out" 2>&1
check "bench --help exits 0 with the usage" \
    test $? -eq 0 -a "$(head -n 1 "$work/h.out")" = "usage: kanoa-mlops bench --url URL --model M [options]"
"$rel" bench --bogus >"$work/h.out" 2>"$work/h.err"
check "bench with a bad flag exits 2 with the usage on stderr" \
    test $? -eq 2 -a -s "$work/h.err" -a ! -s "$work/h.out"
"$rel" bench --model m >/dev/null 2>"$work/h.err"
check "bench without --url exits 2" \
    grep -q "kanoa-mlops bench: --url and --model are required" "$work/h.err"

# ---- gateway over two fault-injecting replicas ---------------------------
start_fake pa a --tokens 6
start_fake pb b --tokens 6
start_serve gw gwpid "$work/gw.log" "$bin" \
    --upstream "a=http://127.0.0.1:$pa" --upstream "b=http://127.0.0.1:$pb"
check "gateway starts" test -n "$gw"

models=$(curl -s "http://127.0.0.1:$gw/v1/models")
check "/v1/models merges the upstreams' models (m1 once)" \
    test "$(grep -o '"id":"m1"' <<<"$models" | wc -l)" -eq 1

hdr=$(curl -s -D - -o "$work/body" -H 'Content-Type: application/json' \
      -H 'X-Request-Id: gw-rid-1' --data-binary '{"model":"m1","messages":[{"role":"user","content":"hi"}]}' \
      "http://127.0.0.1:$gw/v1/chat/completions")
check "non-streamed answer passes through with X-Request-Id forwarded" \
    grep -q '"request_id":"gw-rid-1"' "$work/body"
check "X-Request-Id echoed to the client" grep -qi '^x-request-id: gw-rid-1' <<<"$hdr"

# a 6 MB base64 image, as kanoa sends plots
"$py" - "$work/big.json" <<'EOF'
import json, sys
img = "data:image/png;base64," + "A" * (6 << 20)
json.dump({"model": "m1", "messages": [{"role": "user", "content": [
    {"type": "text", "text": "describe"},
    {"type": "image_url", "image_url": {"url": img}}]}]}, open(sys.argv[1], "w"))
EOF
size=$(stat -c %s "$work/big.json")
curl -s -o "$work/body" -H 'Content-Type: application/json' \
    --data-binary @"$work/big.json" "http://127.0.0.1:$gw/v1/chat/completions"
check "a 6 MB image request reaches the upstream byte for byte" \
    grep -q "\"body_bytes\":$size," "$work/body"

post "$gw" '{"model":"m1","stream":true,"messages":[{"role":"user","content":"hi"}]}' >"$work/sse"
check "a stream passes through, 6 events then [DONE]" \
    test "$(grep -c '^data: {' "$work/sse")" -eq 6 -a "$(tail -n 2 "$work/sse" | head -n 1)" = "data: [DONE]"

post "$gw" '{"model":"m1","messages":[{"role":"user","content":"FAULT:500"}]}' >"$work/e"
check "500 from every replica -> 502 in the OpenAI envelope naming the upstream" \
    grep -Eq '^\{"error":\{"message":"upstream [ab] \(http://127.0.0.1:[0-9]+\) answered HTTP 500: .*"code":502\}\}$' "$work/e"
check "  ... with status 502" test "$(cat "$work/status")" = 502

post "$gw" '{"model":"m1","stream":true,"messages":[{"role":"user","content":"FAULT:drop"}]}' >"$work/d"
check "a stream dropped mid-way ends with an error event and [DONE]" \
    test "$(grep -c '^data: {"error":{"message":"upstream [ab] (http://127.0.0.1:[0-9]*) broke off the response' "$work/d")" -eq 1 \
         -a "$(tail -n 2 "$work/d" | head -n 1)" = "data: [DONE]"

t=$(curl -s -H 'Content-Type: application/json' -d '{"model":"m1","prompt":"x"}' \
    -w ' %{http_code}' "http://127.0.0.1:$gw/tokenize")
check "/tokenize on an upstream without it: 400 naming the upstream's 404" \
    grep -Eq '"message":"upstream [ab] \(http://127.0.0.1:[0-9]+/tokenize\) answered HTTP 404".* 400$' <<<"$t"
post "$gw" '{"model":"nope","messages":[{"role":"user","content":"x"}]}' >"$work/n"
check "unknown model -> 404" test "$(cat "$work/status")" = 404

# a client that gives up: the upstream request is aborted, nothing stays in flight
post "$gw" '{"model":"m1","stream":true,"messages":[{"role":"user","content":"FAULT:silent"}]}' \
    --max-time 1 >/dev/null
canceled_total() {
    curl -s "http://127.0.0.1:$gw/metrics" |
        grep '^kanoa_upstream_errors_total{upstream="[ab]",kind="canceled"}' |
        awk '{s+=$2} END {print s+0}'
}
wait_canceled() {
    for _ in $(seq 1 100); do
        [ "$(canceled_total)" = 1 ] && return 0
        sleep 0.05
    done
    return 1
}
check "client disconnect aborts the upstream request (canceled = 1)" wait_canceled
inflight=$(curl -s "http://127.0.0.1:$gw/metrics" | grep '^kanoa_upstream_in_flight' | awk '{s+=$2} END {print s}')
check "  ... and kanoa_upstream_in_flight sums to 0" test "$inflight" = 0

# flapping health: a fails its probes -> ejected; requests go to b; recovery
control "$pa" '{"health":false}'
check "failing /health ejects the replica" \
    wait_metric "$gw" 'kanoa_upstream_healthy{upstream="a"}' 0 100
hs=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$gw/health")
check "the gateway's own /health stays 200 while a replica is ejected" test "$hs" = 200
check "while ejected every request goes to the healthy replica (10/10)" \
    test "$(served_by 10 b)" -eq 10
control "$pa" '{"health":true}'
check "the replica recovers when its probes pass again" \
    wait_metric "$gw" 'kanoa_upstream_healthy{upstream="a"}' 1 100

# load-aware: b reports a long vLLM queue -> new requests go to a
control "$pb" '{"waiting":40}'
for _ in $(seq 1 60); do
    curl -s "http://127.0.0.1:$gw/metrics" | grep -q '^kanoa_upstream_waiting{upstream="b"} 40$' && break
    sleep 0.2
done
check "vllm:num_requests_waiting of a replica steers requests away (8/8)" \
    test "$(served_by 8 a)" -eq 8
control "$pb" '{"waiting":0}'

# session affinity by X-Session-Id
first=""; same=0
for i in $(seq 1 6); do
    u=$(post "$gw" '{"model":"m1","messages":[{"role":"user","content":"x"}]}' -H 'X-Session-Id: sess-42' |
        sed -n 's/.*"upstream":"\([ab]\)".*/\1/p')
    [ -z "$first" ] && first=$u
    [ "$u" = "$first" ] && same=$((same + 1))
done
check "X-Session-Id keeps a session on one replica (6/6)" test $same -eq 6

curl -s "http://127.0.0.1:$gw/metrics" >"$work/metrics"
check "metrics: per-upstream requests, errors, latency histogram, TTFT/ITL" \
    grep -q '^kanoa_upstream_requests_total{upstream="[ab]",model="m1",code="200"} ' "$work/metrics"
check "  ... kanoa_gateway:time_to_first_token_seconds with model_name" \
    grep -q '^kanoa_gateway:time_to_first_token_seconds_count{model_name="m1",upstream="[ab]"} [1-9]' "$work/metrics"
check "  ... kanoa_upstream_latency_seconds histogram" \
    grep -q '^kanoa_upstream_latency_seconds_bucket{upstream="a",le="+Inf"} [1-9]' "$work/metrics"

# the same upstreams from a YAML config file (upstream: list)
printf 'upstream:\n  - a=http://127.0.0.1:%s,models=m1\n  - "b=http://127.0.0.1:%s"\n' \
    "$pa" "$pb" >"$work/gw.yaml"
start_serve gwy gwypid "$work/gwy.log" "$bin" --config "$work/gw.yaml"
post "$gwy" '{"model":"m1","messages":[{"role":"user","content":"x"}]}' >"$work/y"
check "upstreams from the YAML config serve m1" \
    test "$(cat "$work/status")" = 200 -a "$(grep -c '"upstream":"[ab]"' "$work/y")" = 1
kill -TERM "$gwypid"; wait "$gwypid"

# 10,000 requests, ~10% abandoned by their client, then a clean exit
"$py" "$here/load_client.py" "$gw" 10000 8 10 >"$work/load.out" 2>&1
lrc=$?
check "10,000 requests with random client cancels: all others complete" test $lrc -eq 0
sed 's/^/  /' "$work/load.out"
check "  ... nothing left in flight" \
    wait_metric "$gw" 'kanoa_upstream_in_flight{upstream="a"}' 0 100
opena=$(curl -s "http://127.0.0.1:$pa/stats" | sed -n 's/.*"open":\([0-9]*\).*/\1/p')
kill -TERM "$gwpid"
wait "$gwpid"
grc=$?
check "gateway exits 0 on SIGTERM after the load" test $grc -eq 0
check "  ... with no LeakSanitizer or UBSan report" \
    bash -c "! grep -Eq 'LeakSanitizer|AddressSanitizer|runtime error' '$work/gw.log'"
for _ in $(seq 1 50); do
    opena=$(curl -s "http://127.0.0.1:$pa/stats" | sed -n 's/.*"open":\([0-9]*\).*/\1/p')
    [ "$opena" = 1 ] && break
    sleep 0.1
done
check "  ... and no upstream connection left open (only our /stats one; open=$opena)" \
    test "$opena" = 1

# ---- real upstreams: two `kanoa-mlops serve` replicas of a synthesized model
"$rel" models synth -o "$work/tiny.gguf" -q >/dev/null 2>&1
start_serve r1 r1pid "$work/r1.log" "$rel" --model "$work/tiny.gguf" --served-model-name tiny
start_serve r2 r2pid "$work/r2.log" "$rel" --model "$work/tiny.gguf" --served-model-name tiny
for p in $r1 $r2; do
    for _ in $(seq 1 100); do
        curl -s "http://127.0.0.1:$p/health" | grep -q '"ok"' && break
        sleep 0.1
    done
done
start_serve gw2 gw2pid "$work/gw2.log" "$bin" \
    --upstream "r1=http://127.0.0.1:$r1" --upstream "r2=http://127.0.0.1:$r2"
req='{"model":"tiny","messages":[{"role":"user","content":"hello"}],"max_tokens":8,"temperature":0}'
direct=$(post "$r1" "$req" | sed 's/"id":"[^"]*"//; s/"created":[0-9]*//')
via=$(post "$gw2" "$req" | sed 's/"id":"[^"]*"//; s/"created":[0-9]*//')
check "a real kanoa-mlops upstream answers the same through the gateway" \
    test -n "$direct" -a "$direct" = "$via"
sreq='{"model":"tiny","messages":[{"role":"user","content":"hello"}],"max_tokens":8,"temperature":0,"stream":true}'
post "$gw2" "$sreq" >"$work/s2"
check "  ... streamed too (8 content events then [DONE])" \
    test "$(grep -c '"content":' "$work/s2")" -ge 8 -a "$(tail -n 2 "$work/s2" | head -n 1)" = "data: [DONE]"
# the gateway forwards an upstream model's body after a scan (oai_scan.c):
# field errors are the upstream's 400, passed through; invalid JSON is its own
breq='{"model":"tiny","messages":[{"role":"user","content":"hi"}],"temperature":-1}'
bdirect=$(post "$r1" "$breq"); bds=$(cat "$work/status")
bvia=$(post "$gw2" "$breq"); bvs=$(cat "$work/status")
check "a field the upstream rejects: its 400 naming the field passes through" \
    test "$bds" = 400 -a "$bvs" = 400 -a -n "$bvia" -a "$bdirect" = "$bvia"
check "  ... naming temperature" grep -q '"param":"temperature"' <<<"$bvia"
post "$gw2" '{"model":"tiny","messages":[' >"$work/bad"
check "invalid JSON for an upstream model: the gateway's own 400" \
    test "$(cat "$work/status")" = 400 -a -n "$(grep -o '"message":"invalid JSON at line 1' "$work/bad")"
tok() { # tok PORT PATH JSON
    curl -s -H 'Content-Type: application/json' --data-binary "$3" "http://127.0.0.1:$1$2"
}
same=0
for q in '/tokenize|{"model":"tiny","prompt":"hello world"}' \
         '/tokenize|{"model":"tiny","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]}' \
         '/detokenize|{"model":"tiny","tokens":[71,68,75,75,78]}'; do
    a=$(tok "$r1" "${q%%|*}" "${q#*|}"); b=$(tok "$gw2" "${q%%|*}" "${q#*|}")
    [ -n "$a" ] && [ "$a" = "$b" ] && grep -q '"tokens"\|"prompt"' <<<"$a" && same=$((same + 1))
done
check "/tokenize (prompt, messages) and /detokenize through the gateway match the upstream (3/3)" \
    test $same -eq 3
for i in $(seq 1 8); do post "$gw2" "$req" >/dev/null; done
n1=$(metric "$gw2" 'kanoa_upstream_requests_total{upstream="r1",model="tiny",code="200"}')
n2=$(metric "$gw2" 'kanoa_upstream_requests_total{upstream="r2",model="tiny",code="200"}')
check "requests are spread over both replicas (r1=${n1:-0} r2=${n2:-0})" \
    test "${n1:-0}" -gt 0 -a "${n2:-0}" -gt 0
kill -9 "$r1pid"
good=0
for i in $(seq 1 6); do post "$gw2" "$req" | grep -q '"object":"chat.completion"' && good=$((good + 1)); done
check "a replica killed: requests fail over to the other (6/6)" test $good -eq 6

# ---- bench through the gateway, JSON and SVG -------------------------------
"$rel" bench --url "http://127.0.0.1:$gw2" --model tiny -c 1,2 -n 4 -t 8 -p 16 \
    --json --svg "$work/bench.svg" -q >"$work/bench.json" 2>"$work/bench.err"
brc=$?
check "bench --json --svg through the gateway exits 0" test $brc -eq 0
check "  ... JSON: 2 levels, 4 ok each, 32 output tokens each" \
    "$py" -c "import json,sys; d=json.load(open(sys.argv[1])); L=d['levels']; \
sys.exit(not (len(L)==2 and all(l['ok']==4 and l['output_tokens']==32 and l['ttft_ms']['n']==4 for l in L)))" \
    "$work/bench.json"
if command -v rsvg-convert >/dev/null; then
    check "  ... the SVG renders to PNG" rsvg-convert -o "$work/bench.png" "$work/bench.svg"
else
    check "  ... the SVG parses as XML" "$py" -c "import sys,xml.dom.minidom as m; m.parse(sys.argv[1])" "$work/bench.svg"
fi
"$rel" bench --url "http://127.0.0.1:$gw2" --model tiny -c 1 -n 1 -t 2 -p 4 -q \
    --svg "$work/no/such/dir/x.svg" >/dev/null 2>"$work/bench2.err"
check "bench --svg to an unwritable path exits 1 naming it" \
    test $? -eq 1 -a "$(cat "$work/bench2.err")" = "kanoa-mlops bench: cannot write $work/no/such/dir/x.svg"
"$rel" bench --url "http://127.0.0.1:$gw2" --model nope -c 1 -n 2 -q >/dev/null 2>"$work/bench3.err"
check "bench exits 1 when every request fails, with the reason" \
    test $? -eq 1 -a "$(grep -c 'every request failed at concurrency 1: HTTP 404' "$work/bench3.err")" = 1
kill -TERM "$gw2pid"; wait "$gw2pid"
check "second gateway exits 0 with no sanitizer report" \
    bash -c "! grep -Eq 'LeakSanitizer|AddressSanitizer|runtime error' '$work/gw2.log'"

# ---- the official openai npm SDK suite through the gateway ----------------
npmdir="$build/compat-npm"
sdk_ready=1
if [ ! -d "$npmdir/node_modules/openai" ]; then
    mkdir -p "$npmdir"
    cp "$top/tests/compat/package.json" "$top/tests/compat/package-lock.json" "$npmdir/"
    (cd "$npmdir" && timeout 300 npm ci --no-audit --no-fund --silent) >/dev/null 2>&1 || sdk_ready=0
fi
scripted=$(KM_BUILD=$build "$top/tests/compat/build-scripted.sh" 2>/dev/null) || sdk_ready=0
if [ $sdk_ready -eq 1 ]; then
    "$scripted" api-key=compat-key >"$work/scripted.out" 2>"$work/scripted.err" &
    spid=$!; pids+=($spid)
    sp=""
    for _ in $(seq 1 100); do
        sp=$(sed -n 's/^port \([0-9]*\)$/\1/p' "$work/scripted.out"); [ -n "$sp" ] && break; sleep 0.1
    done
    # tests/compat/compat.mjs unchanged, pointed at the gateway; the gateway
    # and its upstream each check the key (the gateway forwards it from
    # api-key-env, not from the client)
    cp "$top/tests/compat/compat.mjs" "$npmdir/compat.mjs"
    UPSTREAM_KEY=compat-key start_serve gw3 gw3pid "$work/gw3.log" "$bin" --api-key compat-key \
        --upstream "s=http://127.0.0.1:$sp,api-key-env=UPSTREAM_KEY,embed=scripted-embed"
    timeout 120 node "$npmdir/compat.mjs" "http://127.0.0.1:$gw3" compat-key \
        >"$work/sdk.out" 2>&1
    sed 's/^/  sdk: /' "$work/sdk.out"
    sp_pass=$(sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\1 \2/p' "$work/sdk.out")
    check "openai npm SDK suite through the gateway (${sp_pass:-no summary})" \
        test -n "$sp_pass" -a "${sp_pass#* }" = 0
    kill -TERM "$gw3pid"; wait "$gw3pid"
else
    notok "openai npm SDK suite: npm ci or the scripted server build failed"
fi

# ---- both upstream clients: the own HTTP/1.1 one and libcurl -------------
# Two gateways in front of the first gateway's fake upstreams, one with the
# own client (http:// URLs) and one with KANOA_UPSTREAM_CLIENT=curl: the
# same request (same X-Request-Id, and X-Session-Id so both pick the same
# replica) must give the same bytes. The 500 case goes last (it counts
# towards ejection).
start_serve gwo gwopid "$work/gwo.log" "$bin" \
    --upstream "a=http://127.0.0.1:$pa" --upstream "b=http://127.0.0.1:$pb"
KANOA_UPSTREAM_CLIENT=curl start_serve gwc gwcpid "$work/gwc.log" "$bin" \
    --upstream "a=http://127.0.0.1:$pa" --upstream "b=http://127.0.0.1:$pb"
both() { # both NAME JSON: the answer of each gateway in $work/NAME.{own,curl}
    post "$gwo" "$2" -H 'X-Request-Id: both-1' -H 'X-Session-Id: s1' >"$work/$1.own"
    echo " $(cat "$work/status")" >>"$work/$1.own"
    post "$gwc" "$2" -H 'X-Request-Id: both-1' -H 'X-Session-Id: s1' >"$work/$1.curl"
    echo " $(cat "$work/status")" >>"$work/$1.curl"
}
both sse '{"model":"m1","stream":true,"messages":[{"role":"user","content":"hi"}]}'
same_sse() {
    test "$(grep -c '^data: {"id":"chatcmpl-both-1"' "$work/sse.own")" -eq 6 &&
        test "$(tail -n 1 "$work/sse.own")" = " 200" &&
        cmp "$work/sse.own" "$work/sse.curl"
}
check "KANOA_UPSTREAM_CLIENT=curl: a stream is byte-identical to the own client's" \
    same_sse
same_502=0
for f in close drop 500; do
    both "f$f" "{\"model\":\"m1\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"FAULT:$f\"}]}"
    grep -q 'upstream [ab] (http://127.0.0.1:[0-9]*) [a-z ]*.*"code":502' "$work/f$f.own" &&
        cmp -s "$work/f$f.own" "$work/f$f.curl" && same_502=$((same_502 + 1))
done
check "  ... and a failing upstream (close, drop mid-stream, 500) the same 502 (3/3)" \
    test $same_502 -eq 3
kill -TERM "$gwopid" "$gwcpid"; wait "$gwopid"; orc=$?; wait "$gwcpid"; crc=$?
check "  ... both exit 0 with no sanitizer report" \
    bash -c "[ $orc -eq 0 ] && [ $crc -eq 0 ] && ! grep -Eq 'LeakSanitizer|AddressSanitizer|runtime error' '$work/gwo.log' '$work/gwc.log'"

echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
