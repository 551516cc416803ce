#!/usr/bin/python3
"""ab.py - A/B of gateway builds: the latency each adds over the upstream,
measured in one run with every path interleaved in a random order per
request (so each sees the same machine), in rounds on fresh connections.
usage: ab.py ROUNDS N UPSTREAM_PORT NAME=PORT ...
For streamed (4 events) and non-streamed chat completions of model m1,
prints each gateway's added p50 per round and the median over rounds."""
import http.client
import json
import random
import statistics
import sys
import time

rounds, n, up = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
targets = [("direct", up)] + [(a.split("=")[0], int(a.split("=")[1]))
                              for a in sys.argv[4:]]


def body(stream):
    return json.dumps({"model": "m1", "stream": stream, "max_tokens": 4,
                       "messages": [{"role": "user", "content": "hi"}]}).encode()


def once(conn, b):
    t = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", b,
                 {"Content-Type": "application/json"})
    r = conn.getresponse()
    data = r.read()
    if r.status != 200:
        raise SystemExit("bad answer %d %r" % (r.status, data[-200:]))
    return time.perf_counter() - t


for kind, stream in (("streamed chat", True), ("chat, not streamed", False)):
    b = body(stream)
    added = {name: [] for name, _ in targets[1:]}
    for _ in range(rounds):
        conns = [http.client.HTTPConnection("127.0.0.1", p) for _, p in targets]
        times = [[] for _ in targets]
        for _ in range(20):
            for c in conns:
                once(c, b)
        order = list(range(len(targets)))
        for _ in range(n):
            random.shuffle(order)
            for k in order:
                times[k].append(once(conns[k], b))
        for c in conns:
            c.close()
        base = statistics.median(times[0])
        for k, (name, _) in enumerate(targets[1:], 1):
            added[name].append((statistics.median(times[k]) - base) * 1e3)
    for name, v in added.items():
        print("%-20s %-10s added p50 median %+.3f ms  rounds %s" % (
            kind, name, statistics.median(v), " ".join("%+.3f" % x for x in v)))
