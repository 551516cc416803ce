#!/usr/bin/python3
"""latency.py - per-request latency direct vs through the gateway, measured
in one run with the two paths interleaved (so both see the same machine
load). usage: latency.py MODELS_PORT GATEWAY_PORT STREAM_PORT MODEL N [GW_PID]
(GET /v1/models is compared between MODELS_PORT and the gateway, streamed
chat completions of MODEL between STREAM_PORT and the gateway)
Prints p50/p99 for each path and the difference (the latency the gateway
adds) for GET /v1/models and for a streamed chat completion (time to the
last byte of the stream), one keep-alive connection per path, pooled over
LATENCY_ROUNDS rounds (default 3) of N requests per path, each round on
fresh connections, and each round's own added p50 (their spread shows
how much of a difference is the machine's). With GW_PID
(Linux), also the gateway process's CPU time and context switches per
request (summed over its threads from /proc), which depend far less on
the machine's load than latencies do."""
import glob
import http.client
import json
import os
import sys
import time

mport, gw, sport = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
model, n = sys.argv[4], int(sys.argv[5])
def body(stream):
    return json.dumps({"model": model, "stream": stream, "max_tokens": 4,
                       "temperature": 0, "ignore_eos": True,
                       "messages": [{"role": "user", "content": "hi"}]}).encode()


BODIES = {"chat": body(False), "stream": body(True)}


def once(conn, kind):
    t = time.perf_counter()
    if kind in BODIES:
        conn.request("POST", "/v1/chat/completions", BODIES[kind],
                     {"Content-Type": "application/json"})
    else:
        conn.request("GET", "/v1/models")
    r = conn.getresponse()
    data = r.read()
    dt = time.perf_counter() - t
    stream = kind == "stream"
    if r.status != 200 or (stream and not data.endswith(b"data: [DONE]\n\n")):
        raise SystemExit("bad answer %d %r" % (r.status, data[-200:]))
    return dt


def usage(pid):
    """(CPU seconds, voluntary + involuntary context switches) of pid."""
    cpu, cs = 0, 0
    for t in glob.glob("/proc/%d/task/*" % pid):
        try:
            st = open(t + "/stat").read().rsplit(")", 1)[1].split()
            cpu += int(st[11]) + int(st[12])
            for line in open(t + "/status"):
                if "ctxt_switches" in line:
                    cs += int(line.split()[1])
        except (OSError, IndexError, ValueError):
            pass
    return cpu / os.sysconf("SC_CLK_TCK"), cs


GW_PID = int(sys.argv[6]) if len(sys.argv) > 6 else 0


def pct(v, q):
    v = sorted(v)
    pos = q * (len(v) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


ROUNDS = int(os.environ.get("LATENCY_ROUNDS", "3"))

for kind, name in (("models", "GET /v1/models"), ("chat", "chat, not streamed"),
                   ("stream", "streamed chat, 4 events")):
    d, g, per_round = [], [], []
    u0 = usage(GW_PID) if GW_PID else None
    for _ in range(ROUNDS):             # fresh connections each round
        cd = http.client.HTTPConnection("127.0.0.1",
                                        mport if kind == "models" else sport)
        cg = http.client.HTTPConnection("127.0.0.1", gw)
        for _ in range(20):             # warm up both paths
            once(cd, kind)
            once(cg, kind)
        rd, rg = [], []
        for _ in range(n):
            rd.append(once(cd, kind))
            rg.append(once(cg, kind))
        cd.close()
        cg.close()
        per_round.append((pct(rg, 0.5) - pct(rd, 0.5)) * 1e3)
        d += rd
        g += rg
    for q, label in ((0.5, "p50"), (0.99, "p99")):
        a, b = pct(d, q) * 1e3, pct(g, q) * 1e3
        print("%-26s %s  direct %8.3f ms  gateway %8.3f ms  added %+8.3f ms"
              % (name, label, a, b, b - a))
    print("%-26s added p50 per round of %d: %s" % (name, n, ", ".join(
        "%+.3f" % x for x in per_round)))
    if u0:
        u1 = usage(GW_PID)
        total = n * ROUNDS
        print("%-26s gateway CPU %6.1f us/request, %.2f context switches/request"
              % (name, (u1[0] - u0[0]) * 1e6 / total, (u1[1] - u0[1]) / total))
