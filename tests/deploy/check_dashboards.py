#!/usr/bin/python3
"""check_dashboards.py - lint the Grafana dashboards and turn every panel
query into a recording rule so `promtool check rules` parses it.

Lint rules (each failure is one "not ok" line):
  - valid JSON; unique, non-empty uid; "id": null; unique panel ids;
  - every datasource is the provisioned uid "prometheus";
  - every metric name is one vLLM v1 exports (serving-anchors 1.5), one
    `kanoa-mlops serve` exports, or a DCGM field: no stale V0 names
    (avg_*_throughput_toks_per_s, gpu_cache_usage_perc, cpu_cache_usage_perc,
    time_per_output_token_seconds);
  - no rate()/increase() over a gauge; histograms only through _bucket,
    _sum or _count, and histogram_quantile always over sum by (le ...);
  - no aggregation over vllm:* across scrape jobs: `kanoa-mlops serve`
    exports vllm:* for the models it proxies too, so the gateway's job and
    vLLM's job both carry the same requests; every sum/avg/max/... over a
    vllm:* series keeps `job` (by (job, ...)) or selects a job (job=...).
Alert rule files (*.yml, *.yaml) among the arguments get the job check.
Usage: check_dashboards.py RULES_OUT DASHBOARD.json|RULES.yml...
(exit 1 on failure)
"""
import json
import re
import sys

import yaml

VLLM = {
    "vllm:num_requests_running": "gauge", "vllm:num_requests_waiting": "gauge",
    "vllm:kv_cache_usage_perc": "gauge",
    "vllm:prompt_tokens_total": "counter", "vllm:generation_tokens_total": "counter",
    "vllm:request_success_total": "counter", "vllm:num_preemptions_total": "counter",
    "vllm:time_to_first_token_seconds": "histogram",
    "vllm:inter_token_latency_seconds": "histogram",
    "vllm:e2e_request_latency_seconds": "histogram",
    "vllm:request_queue_time_seconds": "histogram",
}
KANOA = {
    "http_requests_total": "counter", "http_request_duration_seconds": "histogram",
    "kanoa_upstream_healthy": "gauge", "kanoa_upstream_in_flight": "gauge",
    "kanoa_upstream_waiting": "gauge", "kanoa_upstream_requests_total": "counter",
    "kanoa_upstream_errors_total": "counter",
    "kanoa_upstream_latency_seconds": "histogram",
    "kanoa_gateway:time_to_first_token_seconds": "histogram",
    "kanoa_gateway:inter_token_latency_seconds": "histogram",
}
DCGM = {n: "gauge" for n in (
    "DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE",
    "DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_XID_ERRORS")}
KNOWN = {**VLLM, **KANOA, **DCGM}
FUNCS = {"sum", "max", "min", "avg", "rate", "increase", "histogram_quantile",
         "by", "le", "without", "on", "and", "or", "count", "label_values"}
failures = 0


def bad(msg):
    global failures
    failures += 1
    print("not ok - dashboards: " + msg)


def metric_names(expr):
    text = re.sub(r'"[^"]*"', '""', expr)           # drop label values
    text = re.sub(r"\{[^}]*\}", "", text)            # drop matchers
    text = re.sub(r"\[[^\]]*\]", "", text)           # drop ranges
    text = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", text)
    return [t for t in re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", text)
            if t not in FUNCS]


def base_of(name):
    for suf in ("_bucket", "_sum", "_count"):
        if name.endswith(suf) and KNOWN.get(name[: -len(suf)]) == "histogram":
            return name[: -len(suf)], suf
    return name, ""


def lint_expr(where, expr):
    for name in metric_names(expr):
        base, suf = base_of(name)
        kind = KNOWN.get(base)
        if kind is None:
            bad(f"{where}: unknown or stale metric {name}")
        elif kind == "histogram" and not suf:
            bad(f"{where}: histogram {name} used without _bucket/_sum/_count")
        if kind == "gauge" and re.search(r"\b(rate|increase)\(\s*" + re.escape(name), expr):
            bad(f"{where}: rate()/increase() over the gauge {name}")
    for m in re.finditer(r"histogram_quantile\(\s*[0-9.]+\s*,\s*(\w+)", expr):
        if m.group(1) != "sum" or not re.search(r"histogram_quantile\([^,]+,\s*sum by \(le", expr):
            bad(f"{where}: histogram_quantile not over sum by (le ...)")


AGG = re.compile(r"\b(sum|avg|count|max|min|group|stddev|stdvar|topk|bottomk|"
                 r"quantile|count_values)\s*(?:(by|without)\s*\(([^)]*)\))?\s*\(")


def inside(expr, open_at):
    """The text between the parenthesis at open_at and its match, and the
    index after the match."""
    depth = 0
    for i in range(open_at, len(expr)):
        depth += {"(": 1, ")": -1}.get(expr[i], 0)
        if depth == 0:
            return expr[open_at + 1:i], i + 1
    return expr[open_at + 1:], len(expr)


def keeps_job(mode, labels):
    names = [x.strip() for x in (labels or "").split(",")]
    return (mode == "by" and "job" in names) or (mode == "without" and "job" not in names)


def cross_job(where, expr):
    """Every aggregation over vllm:* keeps `job` or selects a job."""
    for m in AGG.finditer(expr):
        body, end = inside(expr, m.end() - 1)
        if "vllm:" not in body:
            continue
        mode, labels = m.group(2), m.group(3)
        if not mode:        # a trailing clause: sum(x) by (job)
            t = re.match(r"\s*(by|without)\s*\(([^)]*)\)", expr[end:])
            mode, labels = (t.group(1), t.group(2)) if t else (None, None)
        if keeps_job(mode, labels):
            continue
        sels = [s.group(1) or "" for s in re.finditer(r"vllm:[A-Za-z0-9_:]+(\{[^}]*\})?", body)]
        if all(re.search(r"\bjob\s*=", s) for s in sels):
            continue
        bad(f"{where}: {m.group(1)} over vllm:* across scrape jobs (the gateway and "
            "vLLM both export it): aggregate by (job, ...) or select a job")


def lint_rules(path):
    with open(path) as f:
        doc = yaml.safe_load(f)
    n = 0
    for g in doc.get("groups", []):
        for r in g.get("rules", []):
            n += 1
            cross_job(f"{path.split('/')[-1]} {r.get('alert') or r.get('record')}", r["expr"])
    return n


def concrete(expr):
    return (expr.replace("$__rate_interval", "5m").replace("$model_name", ".*"))


def main():
    out, files = sys.argv[1], sys.argv[2:]
    rules, uids, n, n_rules = [], set(), 0, 0
    for path in [f for f in files if f.endswith((".yml", ".yaml"))]:
        n_rules += lint_rules(path)
    files = [f for f in files if not f.endswith((".yml", ".yaml"))]
    for path in files:
        try:
            with open(path) as f:
                d = json.load(f)
        except ValueError as e:
            bad(f"{path}: not JSON: {e}")
            continue
        if not d.get("uid") or d["uid"] in uids:
            bad(f"{path}: missing or duplicate uid {d.get('uid')}")
        uids.add(d.get("uid"))
        if d.get("id") is not None:
            bad(f"{path}: id is not null")
        ids = [p["id"] for p in d.get("panels", [])]
        if len(ids) != len(set(ids)):
            bad(f"{path}: duplicate panel ids")
        for var in d.get("templating", {}).get("list", []):
            if var.get("datasource", {}).get("uid") != "prometheus":
                bad(f"{path}: variable {var.get('name')} datasource is not 'prometheus'")
        for p in d.get("panels", []):
            if p.get("type") == "row":
                continue
            if p.get("datasource", {}).get("uid") != "prometheus":
                bad(f"{path}: panel {p.get('title')} datasource is not 'prometheus'")
            for t in p.get("targets", []):
                where = f"{path.split('/')[-1]} '{p['title']}' {t['refId']}"
                if t.get("datasource", {}).get("uid") != "prometheus":
                    bad(f"{where}: target datasource is not 'prometheus'")
                lint_expr(where, t["expr"])
                cross_job(where, t["expr"])
                n += 1
                rules.append({"record": f"kanoa_dashboard_check_{n}",
                              "expr": concrete(t["expr"])})
    with open(out, "w") as f:
        json.dump({"groups": [{"name": "dashboard-queries", "rules": rules}]}, f, indent=1)
    if failures == 0:
        print(f"ok - dashboards: {len(files)} dashboards, {n} queries"
              + (f", {n_rules} alert rules" if n_rules else "") + " lint clean")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
