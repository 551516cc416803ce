#!/bin/bash
# tests/init/run.sh - `kanoa-mlops init|up|down|logs|status` end to end with
# fake hardware and a fake docker:
#   - a fake NVML library (fake_nvml.c, built here) loaded via KANOA_NVML_LIB
#     with 8, 12, 16, 24 and 80 GB GPUs, and a fake nvidia-smi script
#     (KANOA_NVIDIA_SMI) for the fallback path, and no GPU at all;
#     the chosen presets and vLLM flags are asserted exactly;
#   - a fake docker (KANOA_DOCKER) that records its argv: the compose
#     command lines and the missing-Docker / missing-NVIDIA-runtime errors;
#   - status against python http.server on loopback and a closed port.
# Ends with "N passed, N failed".
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
bin=${KM_BIN:-$top/build/asan/kanoa-mlops}
work=$(mktemp -d /tmp/km-init-test.XXXXXX)
pass=0
fail=0
srv_pid=""
cleanup() {
    [ -n "$srv_pid" ] && kill "$srv_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

ok() { pass=$((pass + 1)); echo "ok - $1"; }
bad() { fail=$((fail + 1)); echo "not ok - $1"; }

# has FILE LINE: the exact line is in the file
has() { grep -Fxq -- "$2" "$1"; }
check() { # name, file, exact lines...
    local name=$1 file=$2 l missing=""
    shift 2
    for l in "$@"; do
        has "$file" "$l" || missing="$missing
    missing: $l"
    done
    if [ -z "$missing" ]; then ok "$name"; else bad "$name$missing"; sed 's/^/    | /' "$file"; fi
}

cc -shared -fPIC -O1 -o "$work/libfake-nvml.so" "$top/tests/init/fake_nvml.c" ||
    { echo "cannot build the fake NVML"; echo "0 passed, 1 failed"; exit 1; }
export KANOA_NVML_LIB="$work/libfake-nvml.so"
export KANOA_NVIDIA_SMI="$top/tests/init/fake-nvidia-smi"
export HF_HUB_CACHE=/hf/hub
unset FAKE_SMI_OUTPUT FAKE_NVML_INIT

# init_gpu NAME BYTES: dry-run with one fake NVML GPU, output in $work/NAME
init_gpu() {
    FAKE_NVML_GPUS="$1:$2" "$bin" init --dry-run --ram 64G --dir "$work/d" \
        >"$work/$1" 2>&1
}

init_gpu "NVIDIA GeForce RTX 3070" $((8192 * 1048576))
check "init 8 GB (NVML)" "$work/NVIDIA GeForce RTX 3070" \
    "  molmo   none: no molmo preset fits 1 x 8.0 GiB (even 4-bit at 4096 tokens)" \
    "GEMMA3_MODEL=google/gemma-3-4b-it" \
    "GEMMA3_VLLM_ARGS=--max-model-len 4096 --gpu-memory-utilization 0.71 --max-num-seqs 3 --quantization bitsandbytes" \
    "LLAMA3_MODEL=meta-llama/Llama-3.2-3B-Instruct" \
    "LLAMA3_VLLM_ARGS=--max-model-len 8192 --gpu-memory-utilization 0.71 --max-num-seqs 11 --quantization bitsandbytes" \
    "EMBED_VLLM_ARGS=--gpu-memory-utilization 0.19 --max-model-len 512" \
    "COMPOSE_PROFILES=gateway,pgvector,monitoring,embeddings,vllm-gemma3"

init_gpu "NVIDIA GeForce RTX 3060" $((12288 * 1048576))
check "init 12 GB (NVML)" "$work/NVIDIA GeForce RTX 3060" \
    "MOLMO_MODEL=allenai/Molmo-7B-D-0924" \
    "MOLMO_VLLM_ARGS=--max-model-len 4096 --gpu-memory-utilization 0.77 --max-num-seqs 14 --quantization bitsandbytes" \
    "GEMMA3_VLLM_ARGS=--max-model-len 32768 --gpu-memory-utilization 0.77 --max-num-seqs 26 --quantization bitsandbytes" \
    "GEMMA3_MODEL=google/gemma-3-4b-it" \
    "LLAMA3_MODEL=meta-llama/Llama-3.1-8B-Instruct" \
    "LLAMA3_VLLM_ARGS=--max-model-len 8192 --gpu-memory-utilization 0.77 --max-num-seqs 10 --quantization bitsandbytes"

init_gpu "Tesla V100-SXM2-16GB" $((16384 * 1048576))
check "init 16 GB (NVML)" "$work/Tesla V100-SXM2-16GB" \
    "hardware: 1 x Tesla V100-SXM2-16GB (16384 MiB) via nvml; $(grep -c ^processor /proc/cpuinfo) CPUs ($(grep -m1 '^model name' /proc/cpuinfo | sed 's/^model name[[:space:]]*: //')), 64.0 GiB RAM" \
    "GEMMA3_MODEL=google/gemma-3-12b-it" \
    "GEMMA3_VLLM_ARGS=--max-model-len 16384 --gpu-memory-utilization 0.80 --max-num-seqs 6 --quantization bitsandbytes" \
    "LLAMA3_VLLM_ARGS=--max-model-len 16384 --gpu-memory-utilization 0.80 --max-num-seqs 24 --quantization bitsandbytes" \
    "MOLMO_VLLM_ARGS=--max-model-len 4096 --gpu-memory-utilization 0.80 --max-num-seqs 46 --quantization bitsandbytes"

init_gpu "NVIDIA GeForce RTX 4090" $((24564 * 1048576))
check "init 24 GB (NVML)" "$work/NVIDIA GeForce RTX 4090" \
    "MOLMO_VLLM_ARGS=--max-model-len 4096 --gpu-memory-utilization 0.83 --max-num-seqs 32" \
    "GEMMA3_MODEL=google/gemma-3-27b-it" \
    "GEMMA3_VLLM_ARGS=--max-model-len 4096 --gpu-memory-utilization 0.83 --max-num-seqs 2 --quantization bitsandbytes" \
    "LLAMA3_MODEL=meta-llama/Llama-3.1-8B-Instruct" \
    "LLAMA3_VLLM_ARGS=--max-model-len 8192 --gpu-memory-utilization 0.83 --max-num-seqs 15" \
    "KANOA_UPSTREAM=gemma3=http://vllm-gemma3:8000,api-key-env=VLLM_API_KEY embed=http://embeddings:8000,api-key-env=VLLM_API_KEY"

init_gpu "NVIDIA A100-SXM4-80GB" $((81920 * 1048576))
check "init 80 GB (NVML)" "$work/NVIDIA A100-SXM4-80GB" \
    "MOLMO_VLLM_ARGS=--max-model-len 4096 --gpu-memory-utilization 0.87 --max-num-seqs 64" \
    "GEMMA3_VLLM_ARGS=--max-model-len 32768 --gpu-memory-utilization 0.87 --max-num-seqs 30" \
    "LLAMA3_MODEL=meta-llama/Llama-3.1-70B-Instruct" \
    "LLAMA3_VLLM_ARGS=--max-model-len 32768 --gpu-memory-utilization 0.87 --max-num-seqs 46 --quantization bitsandbytes" \
    "EMBED_VLLM_ARGS=--gpu-memory-utilization 0.03 --max-model-len 512"

# NVML fails to initialise -> nvidia-smi fallback (two 24 GB cards)
FAKE_NVML_INIT=999 FAKE_SMI_OUTPUT="NVIDIA L4, 23034
NVIDIA L4, 23034
" "$bin" init --dry-run --ram 64G --dir "$work/d" >"$work/smi" 2>&1
check "init falls back to nvidia-smi" "$work/smi" \
    "KANOA_GPUS=2" "KANOA_GPU_MEM_MIB=23034" \
    "GEMMA3_VLLM_ARGS=--max-model-len 32768 --gpu-memory-utilization 0.83 --max-num-seqs 31 --tensor-parallel-size 2 --quantization bitsandbytes"

# no GPU at all: NVML reports none, nvidia-smi fails -> CPU plan
FAKE_NVML_GPUS="" FAKE_SMI_FAIL=1 "$bin" init --dry-run --ram 16G \
    --dir "$work/d" >"$work/none" 2>&1
check "init with no GPU plans for the CPU" "$work/none" \
    "KANOA_PLAN=cpu" "KANOA_GPUS=0" \
    "# molmo: molmo needs a GPU (vLLM): the built-in CPU engine does not run it" \
    "LLAMA3_GGUF_REPO=bartowski/Meta-Llama-3.1-8B-Instruct-GGUF" \
    "LLAMA3_GGUF_FILE=Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf" \
    "GEMMA3_GGUF_FILE=google_gemma-3-12b-it-Q4_K_M.gguf" \
    "COMPOSE_PROFILES=pgvector,monitoring"
if grep -Fq "hardware: no NVIDIA GPU (NVML reports no GPU; $KANOA_NVIDIA_SMI exited with status 6)" "$work/none"; then
    ok "init explains why no GPU was found"
else bad "init explains why no GPU was found"; cat "$work/none"; fi

# --gpu-mem plans for another machine without detection
KANOA_NVML_LIB=/nonexistent "$bin" init --dry-run --gpu-mem 16G --ram 64G \
    --dir "$work/d" >"$work/flag" 2>&1
check "init --gpu-mem 16G" "$work/flag" \
    "GEMMA3_MODEL=google/gemma-3-12b-it" \
    "GEMMA3_VLLM_ARGS=--max-model-len 16384 --gpu-memory-utilization 0.80 --max-num-seqs 6 --quantization bitsandbytes"

# dry run writes nothing; a real run writes .env and secrets, keeps secrets
if [ ! -e "$work/d" ]; then ok "dry run wrote nothing"; else bad "dry run wrote nothing"; fi
mkdir -p "$work/d"
FAKE_NVML_GPUS="NVIDIA GeForce RTX 4090:$((24564 * 1048576))" "$bin" init \
    --dir "$work/d" >"$work/real" 2>&1
rc=$?
key1=$(cat "$work/d/secrets/vllm_api_key" 2>/dev/null)
FAKE_NVML_GPUS="NVIDIA GeForce RTX 4090:$((24564 * 1048576))" "$bin" init \
    --dir "$work/d" >"$work/real2" 2>&1
key2=$(cat "$work/d/secrets/vllm_api_key" 2>/dev/null)
if [ $rc -eq 0 ] && has "$work/real" "wrote $work/d/.env" &&
   has "$work/real" "created secrets in $work/d/secrets/: vllm_api_key kanoa_api_key postgres_password grafana_admin_password" &&
   has "$work/d/.env" "KANOA_SECRETS_DIR=$work/d/secrets" &&
   has "$work/d/.env" "HF_HUB_CACHE_DIR=/hf/hub" &&
   [ ${#key1} -eq 48 ] && [ "$key1" = "$key2" ] &&
   ! grep -q "created secrets" "$work/real2"; then
    ok "init writes .env and keeps existing secrets"
else bad "init writes .env and keeps existing secrets"; cat "$work/real" "$work/real2"; fi

# usage errors
"$bin" init --gpu-mem lots >/dev/null 2>"$work/err"; rc=$?
if [ $rc -eq 2 ] && has "$work/err" "kanoa-mlops init: --gpu-mem 'lots' is not a size like 16G"; then
    ok "init bad --gpu-mem is a usage error"; else bad "init bad --gpu-mem ($rc)"; fi
"$bin" init --gpus 2 >/dev/null 2>"$work/err"; rc=$?
if [ $rc -eq 2 ] && has "$work/err" "kanoa-mlops init: --gpus needs --gpu-mem"; then
    ok "init --gpus without --gpu-mem is a usage error"; else bad "init --gpus alone ($rc)"; fi
"$bin" init --help >"$work/help" 2>&1; rc=$?
if [ $rc -eq 0 ] && head -1 "$work/help" | grep -q "^usage: kanoa-mlops init"; then
    ok "init --help"; else bad "init --help"; fi

# ---- up/down/logs with a fake docker ----------------------------------------
cat >"$work/docker" <<'EOF'
#!/bin/sh
# fake docker: records argv; `compose version` works; `info` prints runtimes
echo "$*" >>"$FAKE_DOCKER_LOG"
case "$1 $2" in
"compose version") echo "Docker Compose version v2.35.1"; exit 0 ;;
"info --format")
    if [ -n "${FAKE_RUNTIMES:-}" ]; then echo "$FAKE_RUNTIMES"
    else echo '{"nvidia":{"path":"nvidia-container-runtime"},"runc":{}}'; fi
    exit 0 ;;
esac
exit "${FAKE_DOCKER_RC:-0}"
EOF
chmod +x "$work/docker"
export KANOA_DOCKER="$work/docker" FAKE_DOCKER_LOG="$work/docker.log"
cf="$top/deploy/compose/compose.yaml"
: >"$FAKE_DOCKER_LOG"
"$bin" up --dir "$work/d" --file "$cf" vllm-gemma3 >"$work/up" 2>&1; rc=$?
if [ $rc -eq 0 ] && has "$FAKE_DOCKER_LOG" "info --format {{json .Runtimes}}" &&
   has "$FAKE_DOCKER_LOG" "compose --project-name kanoa-mlops --env-file $work/d/.env -f $cf --profile vllm-gemma3 up -d"; then
    ok "up PROFILE runs docker compose up -d"
else bad "up PROFILE ($rc)"; cat "$work/up" "$FAKE_DOCKER_LOG"; fi
: >"$FAKE_DOCKER_LOG"
"$bin" logs --dir "$work/d" --file "$cf" --tail 50 --follow >/dev/null 2>&1; rc=$?
"$bin" down --dir "$work/d" --file "$cf" >/dev/null 2>&1; rc2=$?
if [ $rc -eq 0 ] && [ $rc2 -eq 0 ] &&
   has "$FAKE_DOCKER_LOG" "compose --project-name kanoa-mlops --env-file $work/d/.env -f $cf logs --follow --tail 50" &&
   has "$FAKE_DOCKER_LOG" "compose --project-name kanoa-mlops --env-file $work/d/.env -f $cf down"; then
    ok "logs and down"
else bad "logs and down"; cat "$FAKE_DOCKER_LOG"; fi
FAKE_RUNTIMES='{"runc":{}}' "$bin" up --dir "$work/d" --file "$cf" >/dev/null 2>"$work/err"; rc=$?
if [ $rc -eq 1 ] && has "$work/err" "kanoa-mlops up: the NVIDIA container runtime is not registered with Docker: install nvidia-container-toolkit and run 'nvidia-ctk runtime configure --runtime=docker', then restart Docker"; then
    ok "up on a GPU plan without the NVIDIA runtime fails clearly"
else bad "up without NVIDIA runtime ($rc)"; cat "$work/err"; fi
FAKE_DOCKER_RC=3 "$bin" down --dir "$work/d" --file "$cf" >/dev/null 2>"$work/err"; rc=$?
if [ $rc -eq 1 ] && has "$work/err" "kanoa-mlops down: $work/docker compose down exited with status 3"; then
    ok "a failing compose is reported"; else bad "failing compose ($rc)"; cat "$work/err"; fi
PATH=/usr/bin:/bin KANOA_DOCKER=docker-not-here "$bin" up --dir "$work/d" --file "$cf" >/dev/null 2>"$work/err"; rc=$?
if [ $rc -eq 1 ] && has "$work/err" "kanoa-mlops up: docker-not-here not found on PATH: install Docker Engine and the Compose plugin (Debian 12: apt-get install docker.io docker-compose)"; then
    ok "up without Docker fails clearly"; else bad "up without Docker ($rc)"; cat "$work/err"; fi
"$bin" up --dir "$work/nowhere" --file "$cf" >/dev/null 2>"$work/err"; rc=$?
if [ $rc -eq 1 ] && has "$work/err" "kanoa-mlops up: $work/nowhere/.env: No such file or directory (run 'kanoa-mlops init' first)"; then
    ok "up without init fails clearly"; else bad "up without init ($rc)"; cat "$work/err"; fi
"$bin" up --dir "$work/d" --file "$cf" vllm-nope >/dev/null 2>"$work/err"; rc=$?
if [ $rc -eq 2 ] && has "$work/err" "kanoa-mlops up: unknown profile or extra argument 'vllm-nope'"; then
    ok "unknown profile is a usage error"; else bad "unknown profile ($rc)"; fi

# ---- status ------------------------------------------------------------------
mkdir -p "$work/www/-" && echo ok >"$work/www/health" && echo ready >"$work/www/-/ready"
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
(cd "$work/www" && exec /usr/bin/python3 -m http.server --bind 127.0.0.1 "$port" >/dev/null 2>&1) &
srv_pid=$!
for _ in $(seq 50); do
    curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
    sleep 0.1
done
"$bin" status --no-env --gateway "http://127.0.0.1:$port" \
    --prometheus "http://127.0.0.1:$port/" --upstream "gemma3=http://127.0.0.1:$port" \
    >"$work/st" 2>&1; rc=$?
if [ $rc -eq 0 ] && grep -Eq "^gateway +up +[0-9]+ms  http://127.0.0.1:$port/health +HTTP 200: ok$" "$work/st" &&
   grep -Eq "^prometheus +up .*http://127.0.0.1:$port/-/ready +HTTP 200: ready$" "$work/st" &&
   grep -Eq "^upstream gemma3 +up " "$work/st"; then
    ok "status: all up, exit 0"
else bad "status all up ($rc)"; cat "$work/st"; fi
"$bin" status --no-env --gateway "http://127.0.0.1:$port" --upstream "molmo=http://127.0.0.1:1" \
    --database-url "postgresql://kanoa:pw@127.0.0.1:1/kb" --timeout 2000 >"$work/st" 2>&1; rc=$?
if [ $rc -eq 1 ] && grep -Eq "^upstream molmo +DOWN " "$work/st" &&
   grep -Eq "^database +DOWN .*postgresql://kanoa:\*\*\*@127.0.0.1:1/kb +no response$" "$work/st" &&
   has "$work/st" "kanoa-mlops status: 2 of 3 services down: upstream molmo database"; then
    ok "status: down services, exit 1"
else bad "status with down services ($rc)"; cat "$work/st"; fi
printf 'GATEWAY_PORT=%s\nBIND_ADDRESS=127.0.0.1\nGRAFANA_PORT=1\nCOMPOSE_PROFILES=gateway,monitoring\n' "$port" >"$work/d/.env"
"$bin" status --dir "$work/d" >"$work/st" 2>&1; rc=$?
if [ $rc -eq 1 ] && grep -Eq "^gateway +up .*http://127.0.0.1:$port/health" "$work/st" &&
   grep -Eq "^grafana +DOWN .*http://127.0.0.1:1/api/health" "$work/st"; then
    ok "status reads the services from .env"
else bad "status from .env ($rc)"; cat "$work/st"; fi
"$bin" status --no-env >/dev/null 2>"$work/err"; rc=$?
if [ $rc -eq 1 ] && grep -q "^kanoa-mlops status: nothing to check" "$work/err"; then
    ok "status with nothing to check"; else bad "status nothing to check ($rc)"; fi

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
