#!/bin/bash
# tests/fakehub/run.sh - `kanoa-mlops pull` and `models` against a local fake
# Hugging Face Hub (fakehub.py: Hub on 127.0.0.1, CDN on 127.0.0.2) with
# fault injection. Every case asserts exact cache state (cachecheck.py),
# exact error text, or the exact requests the hub saw. Ends with
# "N passed, N failed".
set -u
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
PY=/usr/bin/python3
BIN=${KM_BIN:-$top/build/asan/kanoa-mlops}
work=$(mktemp -d /tmp/kanoa-fakehub.XXXXXX)
umask 022
pass=0
fail=0
n=0

cleanup() {
    [ -n "${hub_pid:-}" ] && kill "$hub_pid" 2>/dev/null
    mountpoint -q "$work/small" 2>/dev/null && umount "$work/small"
    rm -rf "$work"
}
trap cleanup EXIT

# a tiny random GGUF (engine's `models synth`) served as kanoa-test/synth
synth=()
if "$BIN" models synth -q -o "$work/synth.gguf" >/dev/null 2>&1; then
    synth=(--synth-gguf "$work/synth.gguf")
fi
$PY "$here/fakehub.py" --port-file "$work/ports" --lifetime 900 "${synth[@]}" >"$work/hub.log" 2>&1 &
hub_pid=$!
for _ in $(seq 1 100); do [ -s "$work/ports" ] && break; sleep 0.1; done
read -r HP CP <"$work/ports"
EP="http://127.0.0.1:$HP"
export HF_ENDPOINT="$EP" HF_HOME="$work/home" KANOA_HUB_BACKOFF_MS=50
unset HF_TOKEN HUGGING_FACE_HUB_TOKEN HF_HUB_OFFLINE TRANSFORMERS_OFFLINE HF_TOKEN_PATH
unset HUGGINGFACE_HUB_CACHE
C_MAIN=$($PY -c "import hashlib;print(hashlib.sha1(b'tiny-main').hexdigest())")
C_V1=$($PY -c "import hashlib;print(hashlib.sha1(b'tiny-v1').hexdigest())")
MODEL_SHA=$($PY -c "
import sys; sys.path.insert(0, '$here'); import fakehub
print([f for f in fakehub.fixtures(1)['kanoa-test/tiny']['commits']['$C_MAIN'] if f.path == 'model.safetensors'][0].etag)")

ok() { n=$((n + 1)); pass=$((pass + 1)); echo "ok $n - $1"; }
bad() { n=$((n + 1)); fail=$((fail + 1)); echo "not ok $n - $1: $2"; }
reset_hub() { curl -s -X POST "$EP/_reset" >/dev/null; }
fault() { curl -s -X POST -H 'Content-Type: application/json' -d "$1" "$EP/_fault" >/dev/null; }
hublog() { curl -s "$EP/_log"; }
newcache() { export HF_HUB_CACHE="$work/cache-$1"; rm -rf "$HF_HUB_CACHE"; }
# fresh NAME [FAULT]: a new empty cache, the hub's log and faults cleared, FAULT armed
fresh() { newcache "$1"; reset_hub; [ -z "${2:-}" ] || fault "$2"; }
# pull ARGS...: runs the binary, sets rc, out, errout
pull() {
    timeout 120 "$BIN" pull "$@" >"$work/out" 2>"$work/err"
    rc=$?
    out=$(cat "$work/out")
    errout=$(cat "$work/err")
}
check() { $PY "$here/cachecheck.py" "$HF_HUB_CACHE" "$@" 2>&1; }
# count requests in the hub log matching a python predicate on entry r
count_req() {
    hublog | $PY -c "import json,sys; L=json.load(sys.stdin); print(sum(1 for r in L if $1))"
}
# pulled COND NAME DETAIL REPO REV [FILE...]: ok when the last pull exited 0,
# the cache holds exactly that (cachecheck.py) and COND (an exit status) is 0
pulled() {
    local cond=$1 name=$2 detail=$3 r
    shift 3
    r=$(check "$@")
    if [ "$rc" = 0 ] && [ -z "$r" ] && [ "$cond" = 0 ]; then ok "$name"
    else bad "$name" "rc=$rc $detail $r $errout"; fi
}
expect_err() { # name, expected substring of stderr, exit code
    if [ "$rc" = "${3:-1}" ] && grep -qF -- "$2" "$work/err"; then ok "$1"
    else bad "$1" "rc=$rc stderr=$errout"; fi
}

# 1. full pull: exact cache, stdout is the snapshot, tag and locks exist
fresh basic
pull kanoa-test/tiny -q
r=$(check kanoa-test/tiny main)
if [ $rc = 0 ] && [ -z "$r" ] && [ "$out" = "$HF_HUB_CACHE/models--kanoa-test--tiny/snapshots/$C_MAIN" ] &&
   grep -q '^Signature: 8a477f597d28d172789f06886806bc55$' "$HF_HUB_CACHE/CACHEDIR.TAG" &&
   [ "$(stat -c %a "$HF_HUB_CACHE/.locks/models--kanoa-test--tiny/$MODEL_SHA.lock")" = 664 ] &&
   [ "$(stat -c %a "$HF_HUB_CACHE/models--kanoa-test--tiny/blobs/$MODEL_SHA")" = 644 ] &&
   [ -z "$errout" ]; then
    ok "full pull writes huggingface_hub's layout"
else bad "full pull" "rc=$rc out=$out err=$errout $r"; fi

# 2. tree pagination was followed (page size 2 -> several tree requests)
t=$(count_req "'/tree/' in r['path']")
if [ "$t" -ge 4 ]; then ok "tree listing follows Link rel=next ($t pages)"
else bad "tree pages" "only $t tree requests"; fi

# 3. second pull: no file request at all
reset_hub
pull kanoa-test/tiny -q
fr=$(count_req "'/resolve/' in r['path'] or r['listener'] == 'cdn'")
[ "$fr" = 0 ]
pulled $? "second pull downloads nothing" "file requests=$fr" kanoa-test/tiny main

# 4. another revision sharing a blob: only the changed file is fetched
reset_hub
pull kanoa-test/tiny --revision v1 -q
cdn=$(count_req "r['listener'] == 'cdn'")
res=$(count_req "'/resolve/' in r['path'] and r['method'] == 'GET'")
r=$(check kanoa-test/tiny v1)
if [ $rc = 0 ] && [ "$cdn" = 0 ] && [ "$res" = 1 ] && [ -z "$r" ]; then
    ok "revision v1 reuses the shared LFS blob (1 resolve GET, 0 CDN)"
else bad "revision v1" "rc=$rc cdn=$cdn resolve=$res $r $errout"; fi

# 5. include/exclude with fnmatch semantics ('*' crosses '/')
fresh filter
pull kanoa-test/tiny --include '*.json' --include 'sub/*' --exclude 'config*' -q
r=$(check kanoa-test/tiny main sub/dir/notes.txt)
if [ $rc = 0 ] && [ -z "$r" ]; then ok "--include/--exclude select exactly sub/dir/notes.txt"
else bad "include/exclude" "rc=$rc $r $errout"; fi

# 6. positional FILE and GLOB
newcache files
pull kanoa-test/tiny README.md '*.txt' -q
r=$(check kanoa-test/tiny main README.md sub/dir/notes.txt "odd name/a #1%.txt")
if [ $rc = 0 ] && [ -z "$r" ]; then ok "positional file and glob (odd names url-encoded)"
else bad "positional" "rc=$rc $r $errout"; fi

# 7. missing file: clear error, .no_exist marker, no snapshot entry
newcache nofile
pull kanoa-test/tiny nope.txt -q
expect_err "missing file names the file, repo, revision" \
  "kanoa-mlops pull: file 'nope.txt' not found in repository kanoa-test/tiny at revision 'main' (commit $C_MAIN)"
if [ -f "$HF_HUB_CACHE/models--kanoa-test--tiny/.no_exist/$C_MAIN/nope.txt" ] &&
   [ ! -e "$HF_HUB_CACHE/models--kanoa-test--tiny/snapshots" ]; then
    ok ".no_exist/<commit>/nope.txt marker, no snapshot"
else bad ".no_exist" "$(find "$HF_HUB_CACHE")"; fi

# 8. repo and revision not found
newcache nf
pull kanoa-test/nope -q
expect_err "unknown repo" "kanoa-mlops pull: repository kanoa-test/nope not found on $EP (if it is private, set HF_TOKEN to a token with access)"
pull kanoa-test/tiny --revision nobranch -q
expect_err "unknown revision" "kanoa-mlops pull: revision 'nobranch' not found in repository kanoa-test/tiny"
pull kanoa-test/private -q
expect_err "private repo without token" "repository kanoa-test/private not found on $EP (if it is private"

# 9. gated repo: 401 without token, 403 with an unapproved token
newcache gated
pull kanoa-test/gated -q
expect_err "gated 401 tells to accept the licence and set HF_TOKEN" \
  "kanoa-mlops pull: repository kanoa-test/gated is gated: accept its licence on $EP/kanoa-test/gated while logged in, then set HF_TOKEN"
HF_TOKEN=hf_other pull kanoa-test/gated -q
expect_err "gated 403 says the token is not authorized" \
  "repository kanoa-test/gated is gated and your token is not on its authorized list: accept the licence on $EP/kanoa-test/gated"
HF_TOKEN=hf_bad pull kanoa-test/gated -q
expect_err "invalid token" "the token in HF_TOKEN was rejected by $EP (invalid credentials)"
if [ -z "$(find "$HF_HUB_CACHE" -type f 2>/dev/null | grep -v '\.lock$\|CACHEDIR.TAG')" ]; then
    ok "failed gated pulls leave no files"
else bad "gated leftovers" "$(find "$HF_HUB_CACHE" -type f)"; fi

# 10. granted token: auth sent to the Hub, never to the CDN (127.0.0.2)
reset_hub
HF_TOKEN=hf_granted pull kanoa-test/gated -q
hub_auth=$(count_req "r['listener'] == 'hub' and r['auth'] == 'Bearer hf_granted'")
cdn_auth=$(count_req "r['listener'] == 'cdn' and r['auth'] is not None")
cdn_all=$(count_req "r['listener'] == 'cdn'")
[ "$hub_auth" -ge 3 ] && [ "$cdn_auth" = 0 ] && [ "$cdn_all" -ge 1 ]
pulled $? "Authorization dropped on the redirect to 127.0.0.2 ($cdn_all CDN requests)" \
  "hub_auth=$hub_auth cdn_auth=$cdn_auth cdn=$cdn_all" kanoa-test/gated main

# 11. token file with a trailing newline ($HF_HOME/token)
newcache tokfile; mkdir -p "$HF_HOME"; printf 'hf_granted\n' >"$HF_HOME/token"
pull kanoa-test/gated -q
pulled 0 "token file is read and trimmed" "" kanoa-test/gated main
rm -f "$HF_HOME/token"

# 12. hostile paths: refused, nothing written anywhere
for repo in hostile hostile-abs hostile-deep; do
    newcache "$repo"
    rm -f /tmp/kanoa-evil "$work/escape.txt"
    pull "kanoa-test/$repo" -q
    if [ $rc = 1 ] && grep -q "refusing unsafe path" "$work/err" &&
       [ ! -e "$HF_HUB_CACHE" ] && [ ! -e /tmp/kanoa-evil ] && [ ! -e "$work/escape.txt" ]; then
        ok "hostile listing ($repo) refused, nothing written"
    else bad "hostile $repo" "rc=$rc $errout $(find "$HF_HUB_CACHE" 2>/dev/null | head)"; fi
done

# 13. connection dropped mid-body: resumed inside the range, correct cache
fresh drop '{"path": "model.safetensors", "kind": "drop", "after": 100000, "count": 2}'
pull kanoa-test/tiny model.safetensors -c 1 -q
resumed=$(count_req "r['listener'] == 'cdn' and r['method'] == 'GET' and (r['range'] or '').startswith('bytes=100000-')")
[ "$resumed" = 1 ]
pulled $? "dropped connection resumes at byte 100000 and ends correct" "resumed=$resumed" kanoa-test/tiny main model.safetensors

# 14. 500s then success
fresh e500 '{"path": "config.json", "kind": "status", "code": 500, "count": 2}'
pull kanoa-test/tiny config.json -q
gets=$(count_req "r['path'].endswith('/config.json') and r['method'] == 'GET'")
[ "$gets" = 3 ]
pulled $? "two 500s are retried (3 GETs) and the cache is correct" "gets=$gets" kanoa-test/tiny main config.json

# 15. 500 forever: clear error, partial kept for resume, no blob
fresh e500b '{"path": "config.json", "kind": "status", "code": 503, "count": 100}'
pull kanoa-test/tiny config.json -q
expect_err "persistent 503 gives up with the status" "giving up after 6 failed attempts: config.json: HTTP 503 from the server"
if [ ! -e "$HF_HUB_CACHE/models--kanoa-test--tiny/blobs/9eddb62b076f586b2186445e7872e5a05f0dfe06" ] &&
   [ ! -e "$HF_HUB_CACHE/models--kanoa-test--tiny/snapshots/$C_MAIN/config.json" ]; then
    ok "no blob or link after a failed download"
else bad "503 leftovers" "$(find "$HF_HUB_CACHE")"; fi

# 16. 429 with Retry-After is honoured (JSON retry event names it)
fresh e429 '{"path": "README.md", "kind": "status", "code": 429, "retry_after": 1, "count": 1}'
pull kanoa-test/tiny README.md --json
retry=$(grep -c '"event":"retry".*HTTP 429' "$work/out")
[ "$retry" = 1 ] && tail -n 1 "$work/out" | grep -q '"event":"finish"'
pulled $? "429 + Retry-After retried; --json reports retry and finish events" \
  "retry=$retry $out" kanoa-test/tiny main README.md

# 16b. 429 with a RateLimit header (r=0;t=0 -> wait t+1 s), then success
fresh rl '{"path": "README.md", "kind": "status", "code": 429, "ratelimit_t": 0, "count": 1}'
pull kanoa-test/tiny README.md -q
gets=$(count_req "r['path'].endswith('/README.md') and r['method'] == 'GET'")
[ "$gets" = 2 ]
pulled $? "429 with RateLimit r=0 is retried" "gets=$gets" kanoa-test/tiny main README.md

# 16c. relative 307 to /api/resolve-cache (same host: the token is kept)
fresh rel
HF_TOKEN=hf_granted pull kanoa-test/relredir -q
rc_auth=$(count_req "r['path'].startswith('/api/resolve-cache/') and r['method'] == 'GET' and r['auth'] == 'Bearer hf_granted'")
[ "$rc_auth" = 1 ]
pulled $? "relative redirect followed on the same host, token kept" "auth=$rc_auth" \
  kanoa-test/relredir main

# 16d. an expired presigned CDN URL (403) is resolved again, then resumed
fresh expired '{"path": "model.safetensors", "kind": "expired", "count": 2}'
pull kanoa-test/tiny model.safetensors -c 2 -q
heads=$(count_req "r['method'] == 'HEAD' and r['path'].endswith('/model.safetensors')")
[ "$heads" -ge 2 ]
pulled $? "CDN 403 (expired URL) triggers a new resolve and the pull completes" \
  "heads=$heads" kanoa-test/tiny main model.safetensors

# 17. wrong bytes: hash mismatch is an error and nothing corrupt remains
fresh flip '{"path": "model.safetensors", "kind": "flip", "at": 2000000, "count": 100}'
pull kanoa-test/tiny model.safetensors -q
expect_err "flipped byte fails sha256 verification" \
  "model.safetensors: sha256 mismatch: the listing says $MODEL_SHA (3145851 bytes)"
if [ -z "$(find "$HF_HUB_CACHE/models--kanoa-test--tiny/blobs" -type f)" ] &&
   [ ! -e "$HF_HUB_CACHE/models--kanoa-test--tiny/snapshots/$C_MAIN/model.safetensors" ]; then
    ok "after a hash mismatch: no blob, no partial, no link"
else bad "flip leftovers" "$(find "$HF_HUB_CACHE")"; fi
reset_hub
pull kanoa-test/tiny model.safetensors -q
pulled 0 "re-pull after the mismatch gives a correct cache" "" kanoa-test/tiny main model.safetensors

# 18. a stalled body (headers then silence) times out and is retried
fresh stall '{"path": "README.md", "kind": "stall", "seconds": 20, "count": 1}'
HF_HUB_DOWNLOAD_TIMEOUT=1 pull kanoa-test/tiny README.md -q
pulled 0 "stall detected by HF_HUB_DOWNLOAD_TIMEOUT and retried" "" kanoa-test/tiny main README.md

# 19. server ignoring Range once (200 to a ranged GET) is not written at an offset
fresh norange '{"path": "model.safetensors", "kind": "norange", "count": 2}'
pull kanoa-test/tiny model.safetensors -c 4 -q
pulled 0 "200-instead-of-206 is refused and retried" "" kanoa-test/tiny main model.safetensors

# 20. kill -9 mid-download, then resume from the finished chunks
fresh kill '{"path": "model.safetensors", "kind": "trickle", "delay": 0.02, "piece": 65536, "count": 100}'
"$BIN" pull kanoa-test/tiny model.safetensors -c 1 -q >/dev/null 2>&1 &
pid=$!
ranges="$HF_HUB_CACHE/models--kanoa-test--tiny/blobs/$MODEL_SHA.kanoa-partial.ranges"
for _ in $(seq 1 200); do
    grep -q 'kanoa-partial 1 3145851 1048576' "$ranges" 2>/dev/null &&
        [ "$(tail -c 4 "$ranges" | head -c 1)" = 1 ] && break
    sleep 0.05
done
kill -9 $pid; wait $pid 2>/dev/null
blob="$HF_HUB_CACHE/models--kanoa-test--tiny/blobs/$MODEL_SHA"
if [ ! -e "$blob" ] && [ -f "$blob.kanoa-partial" ] && [ "$(tail -c 4 "$ranges")" = 1000 ]; then
    ok "kill -9: no final blob, partial + ranges file with chunk 0 done"
else bad "kill state" "$(ls -la "$HF_HUB_CACHE/models--kanoa-test--tiny/blobs" 2>&1) $(cat "$ranges" 2>&1 | tail -c 5)"; fi
reset_hub
pull kanoa-test/tiny model.safetensors -c 1 -q
first=$(count_req "r['listener'] == 'cdn' and r['method'] == 'GET' and (r['range'] or '').startswith('bytes=0-')")
[ "$first" = 0 ]
pulled $? "re-run after kill -9 skips the finished chunk and ends correct" "first=$first" kanoa-test/tiny main model.safetensors

# 20b. kill -9 at several moments (4 connections), then a clean pull
fresh killmany '{"path": "model.safetensors", "kind": "trickle", "delay": 0.01, "piece": 32768, "count": 1000}'
for d in 0.05 0.2 0.4 0.7 1.0; do
    "$BIN" pull kanoa-test/tiny -c 4 -q >/dev/null 2>&1 &
    pid=$!
    sleep $d
    kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
done
reset_hub
pull kanoa-test/tiny -q
pulled 0 "five kill -9 at different moments, then pull: correct cache, no leftovers" "" \
  kanoa-test/tiny main

# 20c. killed after the rename but before the ranges file was deleted
blobdir="$HF_HUB_CACHE/models--kanoa-test--tiny/blobs"
printf 'kanoa-partial 1 3145851 1048576\n1111' >"$blobdir/$MODEL_SHA.kanoa-partial.ranges"
rm "$HF_HUB_CACHE/models--kanoa-test--tiny/snapshots/$C_MAIN/model.safetensors"
pull kanoa-test/tiny -q
pulled 0 "a stale ranges file beside a finished blob is removed" "" kanoa-test/tiny main

# 21. offline: warm cache resolves via refs with no request; cold cache errors
reset_hub
HF_HUB_OFFLINE=1 pull kanoa-test/tiny model.safetensors -q
reqs=$(count_req "True")
if [ $rc = 0 ] && [ "$out" = "$HF_HUB_CACHE/models--kanoa-test--tiny/snapshots/$C_MAIN" ] && [ "$reqs" = 0 ]; then
    ok "HF_HUB_OFFLINE=1 with a warm cache: no request"
else bad "offline warm" "rc=$rc reqs=$reqs $errout"; fi
newcache offcold
HF_HUB_OFFLINE=1 pull kanoa-test/tiny -q
expect_err "HF_HUB_OFFLINE=1 with a cold cache" \
  "kanoa-mlops pull: HF_HUB_OFFLINE is set and kanoa-test/tiny at revision 'main' is not in the cache $HF_HUB_CACHE"

# 22. a cache built by a huggingface_hub-layout fixture is reused as is
fresh fixture
$PY - "$HF_HUB_CACHE" "$here" <<'PYEOF'
import os, sys
sys.path.insert(0, sys.argv[2]); import fakehub
cache = sys.argv[1]
repo = fakehub.fixtures(1)["kanoa-test/gguf"]
c = repo["revs"]["main"]
d = os.path.join(cache, "models--kanoa-test--gguf")
for sub in ("blobs", "refs", "snapshots/" + c):
    os.makedirs(os.path.join(d, sub), exist_ok=True)
open(os.path.join(d, "refs", "main"), "w").write(c)
for f in repo["commits"][c]:
    open(os.path.join(d, "blobs", f.etag), "wb").write(f.blob.data)
    os.symlink(os.path.relpath(os.path.join(d, "blobs", f.etag),
                               os.path.join(d, "snapshots", c)),
               os.path.join(d, "snapshots", c, f.path))
PYEOF
pull kanoa-test/gguf -q
fr=$(count_req "'/resolve/' in r['path'] or r['listener'] == 'cdn'")
[ "$fr" = 0 ]
pulled $? "huggingface_hub-made cache reused without downloading" "requests=$fr" \
  kanoa-test/gguf main

# 23. not enough disk: refused before the first byte, nothing left behind
if [ "$(id -u)" = 0 ] && mkdir -p "$work/small" && mount -t tmpfs -o size=2m tmpfs "$work/small" 2>/dev/null; then
    export HF_HUB_CACHE="$work/small/cache"
    pull kanoa-test/tiny -q
    expect_err "disk full: error gives the space needed" \
      "not enough free space in $HF_HUB_CACHE: the pull needs 3145956 bytes"
    if [ -z "$(find "$HF_HUB_CACHE" -name '*partial*')" ]; then ok "disk full: no partial files"
    else bad "enospc leftovers" "$(find "$HF_HUB_CACHE")"; fi
    umount "$work/small"
    # a read-only cache holding the snapshot: pull succeeds, writes nothing
    mount -t tmpfs -o size=64m tmpfs "$work/small"
    export HF_HUB_CACHE="$work/small/cache"
    pull kanoa-test/tiny -q
    rm -f "$HF_HUB_CACHE/CACHEDIR.TAG"   # caches made before huggingface_hub 1.9
    mount -o remount,ro "$work/small"
    pull kanoa-test/tiny -q
    if [ $rc = 0 ] && [ "$out" = "$HF_HUB_CACHE/models--kanoa-test--tiny/snapshots/$C_MAIN" ]; then
        ok "read-only cache with the snapshot present: pull succeeds"
    else bad "read-only cache" "rc=$rc $errout"; fi
    umount "$work/small"
else
    echo "# skip: disk-full case needs root to mount a small tmpfs"
fi

# 24. two concurrent pulls of the same repo: both succeed, one download
fresh conc '{"path": "model.safetensors", "kind": "trickle", "delay": 0.01, "piece": 262144, "count": 100}'
"$BIN" pull kanoa-test/tiny -c 2 -q >"$work/o1" 2>"$work/e1" & p1=$!
"$BIN" pull kanoa-test/tiny -c 2 -q >"$work/o2" 2>"$work/e2" & p2=$!
wait $p1; r1=$?; wait $p2; r2=$?
cdn_bytes=$(hublog | $PY -c "
import json,sys
L=json.load(sys.stdin)
print(len([r for r in L if r['listener']=='cdn' and r['method']=='GET']))")
if [ $r1 = 0 ] && [ $r2 = 0 ] && [ -z "$(check kanoa-test/tiny main)" ] && [ "$cdn_bytes" -le 4 ]; then
    ok "concurrent pulls share the lock; blob fetched once ($cdn_bytes CDN GETs)"
else bad "concurrent" "r1=$r1 r2=$r2 cdn=$cdn_bytes $(cat "$work/e1" "$work/e2")"; fi

# 25. usage errors
"$BIN" pull >/dev/null 2>"$work/err"; rc=$?
"$BIN" pull --help >"$work/out" 2>/dev/null; rc2=$?
"$BIN" pull kanoa-test/tiny --bogus >/dev/null 2>&1; rc3=$?
if [ $rc = 2 ] && grep -q '^usage: kanoa-mlops pull' "$work/err" && [ $rc2 = 0 ] &&
   grep -q '^usage: kanoa-mlops pull' "$work/out" && [ $rc3 = 2 ]; then
    ok "usage: no repo -> 2, --help -> 0 on stdout, bad flag -> 2"
else bad "usage" "rc=$rc rc2=$rc2 rc3=$rc3"; fi
pull 'bad/../repo' -q
expect_err "invalid repo id" "kanoa-mlops pull: 'bad/../repo' is not a repository id of the form org/name"

# ---- models list / verify / rm / du on a cache written by pull ----
fresh models
"$BIN" pull kanoa-test/tiny -q >/dev/null 2>&1
"$BIN" pull kanoa-test/tiny --revision v1 -q >/dev/null 2>&1
"$BIN" pull kanoa-test/gguf -q >/dev/null 2>&1
C_GG=$($PY -c "import hashlib;print(hashlib.sha1(b'gguf-main').hexdigest())")
"$BIN" models list >"$work/out" 2>"$work/err"; rc=$?
sorted=$(printf '%s\n' \
  "kanoa-test/gguf@$C_GG refs=main files=3 size=500015 (488.3 KiB) quants=Q4_K_M,Q8_0 complete" \
  "kanoa-test/tiny@$C_MAIN refs=main files=6 size=3145956 (3.0 MiB) quants=- complete" \
  "kanoa-test/tiny@$C_V1 refs=v1 files=3 size=3145911 (3.0 MiB) quants=- complete" | sort)
if [ $rc = 0 ] && [ "$(sort "$work/out")" = "$sorted" ]; then
    ok "models list: revisions, refs, sizes, quant types, completeness"
else bad "models list" "rc=$rc $(cat "$work/out" "$work/err")"; fi

"$BIN" models list --files kanoa-test/gguf >"$work/out" 2>&1
want=$(printf '%s\n' \
  "kanoa-test/gguf@$C_GG refs=main files=3 size=500015 (488.3 KiB) quants=Q4_K_M,Q8_0 complete" \
  "  README.md 7" "  tiny-Q4_K_M.gguf 200004 Q4_K_M" "  tiny-Q8_0.gguf 300004 Q8_0")
if [ "$(cat "$work/out")" = "$want" ]; then ok "models list --files REPO lists files with quant types"
else bad "models list --files" "$(cat "$work/out")"; fi

"$BIN" models du >"$work/out" 2>&1
if grep -qE '^kanoa-test/tiny +3145966 +3.0 MiB  blobs=7 partial=0 revisions=2$' "$work/out" &&
   grep -qE '^total +3645981 ' "$work/out"; then
    ok "models du: unique blob bytes per repo and total"
else bad "models du" "$(cat "$work/out")"; fi

"$BIN" models verify >"$work/out" 2>&1; rc=$?
if [ $rc = 0 ] && tail -n 1 "$work/out" | grep -qx '0 problem(s), 3645981 bytes hashed'; then
    ok "models verify: every blob re-hashed"
else bad "models verify" "rc=$rc $(tail -n 3 "$work/out")"; fi

# corrupt one byte of a blob, remove another: verify and list report them
tb="$HF_HUB_CACHE/models--kanoa-test--tiny/blobs"
printf 'X' | dd of="$tb/9eddb62b076f586b2186445e7872e5a05f0dfe06" bs=1 seek=3 conv=notrunc 2>/dev/null
rm "$tb/79c53955ef856f16f2107446bc721c8879a1bd2e"
"$BIN" models verify kanoa-test/tiny >"$work/out" 2>&1; rc=$?
if [ $rc = 1 ] && grep -q "^BAD kanoa-test/tiny config.json: blob $tb/9eddb62b076f586b2186445e7872e5a05f0dfe06: content hashes to" "$work/out" &&
   grep -qx "MISSING kanoa-test/tiny@$C_MAIN sub/dir/notes.txt" "$work/out" &&
   tail -n 1 "$work/out" | grep -q '^2 problem(s)'; then
    ok "models verify finds a corrupt blob and a dangling link"
else bad "verify corrupt" "rc=$rc $(cat "$work/out")"; fi
if "$BIN" models list kanoa-test/tiny | grep -q "^kanoa-test/tiny@$C_MAIN .* INCOMPLETE$"; then
    ok "models list marks the damaged revision INCOMPLETE"
else bad "list incomplete" "$("$BIN" models list kanoa-test/tiny)"; fi
# pull repairs it: the corrupt blob has the right size, so remove it first
rm "$tb/9eddb62b076f586b2186445e7872e5a05f0dfe06"
pull kanoa-test/tiny -q
pulled 0 "pull repairs missing blobs" "" kanoa-test/tiny main

# rm one revision: its snapshot, ref and private blobs go; shared blobs stay
"$BIN" models rm kanoa-test/tiny@v1 >"$work/out" 2>&1; rc=$?
if [ $rc = 0 ] && grep -qx 'removed kanoa-test/tiny@v1 (10 bytes, 10 B freed)' "$work/out" &&
   [ ! -e "$HF_HUB_CACHE/models--kanoa-test--tiny/refs/v1" ] &&
   [ ! -e "$HF_HUB_CACHE/models--kanoa-test--tiny/snapshots/$C_V1" ] &&
   [ -z "$(check kanoa-test/tiny main)" ]; then
    ok "models rm REPO@REV keeps blobs shared with main"
else bad "rm rev" "rc=$rc $(cat "$work/out")"; fi

# rm while a pull is writing a blob of the repo: refused at once (it does
# not wait), nothing removed, and the pull completes
rm "$tb/$MODEL_SHA"; reset_hub
fault '{"path": "model.safetensors", "kind": "trickle", "delay": 0.05, "piece": 65536, "count": 100}'
"$BIN" pull kanoa-test/tiny -c 1 -q >/dev/null 2>"$work/e1" & p1=$!
for _ in $(seq 1 200); do [ -f "$tb/$MODEL_SHA.kanoa-partial" ] && break; sleep 0.05; done
"$BIN" models rm kanoa-test/tiny >/dev/null 2>"$work/err"; rc=$?
wait $p1; r1=$?
expect_err "models rm during a pull fails naming the held lock" \
  "kanoa-mlops models rm: kanoa-test/tiny is being downloaded by another process (it holds the lock $HF_HUB_CACHE/.locks/models--kanoa-test--tiny/$MODEL_SHA.lock); nothing was removed: try again when that pull finishes"
if [ $r1 = 0 ] && [ -z "$(check kanoa-test/tiny main)" ]; then
    ok "the pull that held the lock completes; the repo is intact"
else bad "pull during rm" "r1=$r1 $(cat "$work/e1") $(check kanoa-test/tiny main)"; fi

"$BIN" models rm kanoa-test/gguf >"$work/out" 2>&1; rc=$?
if [ $rc = 0 ] && grep -qx 'removed kanoa-test/gguf (500015 bytes, 488.3 KiB freed)' "$work/out" &&
   [ ! -e "$HF_HUB_CACHE/models--kanoa-test--gguf" ] && [ ! -e "$HF_HUB_CACHE/.locks/models--kanoa-test--gguf" ]; then
    ok "models rm REPO removes the repo folder and its locks"
else bad "rm repo" "rc=$rc $(cat "$work/out")"; fi
"$BIN" models rm kanoa-test/gguf >/dev/null 2>"$work/err"; rc=$?
expect_err "models rm of an absent repo" "kanoa-mlops models rm: repository kanoa-test/gguf is not in the cache $HF_HUB_CACHE"

# ---- serve --model REPO resolves from the cache written by pull ----
if [ ${#synth[@]} -gt 0 ]; then
    fresh serve
    pull kanoa-test/synth -q
    SNAP="$HF_HUB_CACHE/models--kanoa-test--synth/snapshots/$($PY -c "import hashlib;print(hashlib.sha1(b'synth-main').hexdigest())")"
    if [ $rc = 0 ] && cmp -s "$SNAP/tiny-F16.gguf" "$work/synth.gguf"; then
        ok "pulled GGUF is byte-identical to the served file"
    else bad "synth pull" "rc=$rc $errout"; fi
    "$BIN" serve --model kanoa-test/synth --port 0 >"$work/serve.log" 2>&1 &
    spid=$!
    sport=""
    for _ in $(seq 1 100); do
        sport=$(grep -o 'listening on http://127.0.0.1:[0-9]*' "$work/serve.log" | grep -o '[0-9]*$')
        [ -n "$sport" ] && grep -q 'ready' "$work/serve.log" && break
        sleep 0.1
    done
    models=$(curl -s --max-time 5 "http://127.0.0.1:$sport/v1/models")
    kill $spid 2>/dev/null; wait $spid 2>/dev/null
    if echo "$models" | grep -q '"id":"tiny-F16"' &&
       grep -qF "loading $SNAP/tiny-F16.gguf as \`tiny-F16\`" "$work/serve.log"; then
        ok "serve --model kanoa-test/synth loads the cached snapshot file"
    else bad "serve from cache" "models=$models $(cat "$work/serve.log")"; fi
    "$BIN" serve --model kanoa-test/gguf --port 0 >"$work/serve.log" 2>&1; rc=$?
    if [ $rc = 1 ] && grep -qF "kanoa-mlops serve: --model kanoa-test/gguf: kanoa-test/gguf@main is not in the cache" "$work/serve.log"; then
        ok "serve --model of an uncached repo says to pull it"
    else bad "serve uncached" "rc=$rc $(cat "$work/serve.log")"; fi
else
    echo "# skip: serve case needs 'models synth'"
fi

echo "$pass passed, $fail failed"
[ $fail = 0 ]
