#!/usr/bin/python3
"""query_panels.py - ask a running Prometheus (scraping `kanoa-mlops serve`)
for every dashboard query whose metrics that server exports, and require
data back: the "kanoa-mlops panels" of the dashboards work against the real
/metrics output, not only on paper.

Usage: query_panels.py PROM_URL METRICS_TEXT_FILE DASHBOARD.json...
A query is "covered" when every metric it names appears in METRICS_TEXT_FILE
(serve's /metrics). Each covered query must return status success and a
non-empty result; the HTTP panel (http_requests_total) must be covered.
Uncovered queries (vLLM engine or DCGM metrics this server does not export
yet) are listed. Prints ok / not ok lines; exit 1 on any failure.
"""
import json
import re
import sys
import urllib.parse
import urllib.request

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from check_dashboards import metric_names  # noqa: E402


def exported(path):
    names = set()
    with open(path) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def query(prom, expr):
    url = prom + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


def main():
    prom, metrics_file, dashboards = sys.argv[1], sys.argv[2], sys.argv[3:]
    have = exported(metrics_file)
    fails, covered, uncovered, http_seen = 0, 0, [], False
    for path in dashboards:
        with open(path) as f:
            d = json.load(f)
        for p in d["panels"]:
            for t in p.get("targets", []):
                names = metric_names(t["expr"])
                if not all(n in have for n in names):
                    uncovered.append(f"{p['title']} {t['refId']}")
                    continue
                covered += 1
                http_seen |= "http_requests_total" in names
                expr = t["expr"].replace("$__rate_interval", "15s").replace("$model_name", ".*")
                res = query(prom, expr)
                ok = res.get("status") == "success" and res["data"]["result"]
                print(("ok - " if ok else "not ok - ") +
                      f"panel '{p['title']}' {t['refId']}: {len(res['data']['result'])} series")
                fails += not ok
    if not http_seen:
        print("not ok - the HTTP requests panel is not covered by serve's /metrics")
        fails += 1
    print(f"# {covered} queries checked live; not exported by this server: "
          + ("; ".join(uncovered) if uncovered else "none"))
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
