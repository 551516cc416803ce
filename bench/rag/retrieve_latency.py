#!/usr/bin/python3
"""retrieve_latency.py - what POST /v1/retrieve adds over the database query.

usage: retrieve_latency.py PORT COLLECTION MODEL [N]
Over one keep-alive connection to `kanoa-mlops serve`, alternately times
POST /v1/embeddings (the query's embedding through the same server and
upstream) and POST /v1/retrieve (embedding + query + JSON), N times each
with N different queries, and prints p50/p99 of both and of the difference.
Compare the difference with bench_rag's rag_query_run and bare-SQL figures.
"""
import http.client
import json
import sys
import time

port, coll, model = int(sys.argv[1]), sys.argv[2], sys.argv[3]
n = int(sys.argv[4]) if len(sys.argv) > 4 else 200
conn = http.client.HTTPConnection("127.0.0.1", port)
H = {"Content-Type": "application/json"}


def post(path, body):
    t0 = time.perf_counter()
    conn.request("POST", path, json.dumps(body), H)
    r = conn.getresponse()
    data = r.read()
    t = time.perf_counter() - t0
    if r.status != 200:
        sys.exit("%s: HTTP %d %s" % (path, r.status, data[:200]))
    return t, json.loads(data)


emb, ret = [], []
for i in range(n):
    q = "query %d about vector index recall latency" % i
    t, _ = post("/v1/embeddings", {"model": model, "input": q})
    emb.append(t)
    t, d = post("/v1/retrieve", {"collection": coll, "query": q, "k": 10})
    assert len(d["data"]) == 10
    ret.append(t)


def pct(v, p):
    v = sorted(v)
    return v[max(0, int(round(p * len(v))) - 1)] * 1e3


diff = [r - e for r, e in zip(ret, emb)]
print("POST /v1/embeddings  p50 %.2f ms p99 %.2f ms" % (pct(emb, .5), pct(emb, .99)))
print("POST /v1/retrieve    p50 %.2f ms p99 %.2f ms" % (pct(ret, .5), pct(ret, .99)))
print("retrieve - embedding p50 %.2f ms (query + HTTP + JSON; %d queries)" % (pct(diff, .5), n))
