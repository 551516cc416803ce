#!/usr/bin/python3
"""load_client.py - many requests through the gateway, some abandoned by
their client mid-way, for the leak test in tests/gateway/run.sh.

usage: load_client.py PORT TOTAL THREADS CANCEL_PERCENT
Each thread keeps one keep-alive connection for normal requests (half
streamed, half not) and opens a fresh socket for a request it abandons: it
sends a streamed request, reads a few bytes (or nothing) and closes.
Prints "ok N canceled N gateway-errors N bad N" and exits 1 when a
non-canceled request ended neither in 200 with a complete body nor in a
clear gateway error (502-504 naming the upstream), or when such errors
exceed 1%.
"""
import http.client
import json
import random
import socket
import sys
import threading

PORT, TOTAL, THREADS, CANCEL = (int(a) for a in sys.argv[1:5])
LOCK = threading.Lock()
COUNT = {"next": 0, "ok": 0, "canceled": 0, "clear": 0, "bad": 0}
FIRST_BAD = []


def take():
    with LOCK:
        if COUNT["next"] >= TOTAL:
            return None
        COUNT["next"] += 1
        return COUNT["next"]


def body(i, stream):
    return json.dumps({"model": "m1", "stream": stream, "messages": [
        {"role": "user", "content": "req %d" % i}]}).encode()


def abandon(i, rng):
    s = socket.create_connection(("127.0.0.1", PORT), timeout=10)
    b = body(i, True)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
              b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
              % (len(b), b))
    if rng.random() < 0.7:
        try:
            s.recv(rng.choice([1, 64, 300]))
        except OSError:
            pass
    s.close()


def normal(conn, i, rng):
    stream = rng.random() < 0.5
    conn.request("POST", "/v1/chat/completions", body(i, stream),
                 {"Content-Type": "application/json"})
    r = conn.getresponse()
    data = r.read()
    sse_err = b"data: {\"error\":" in data
    good = r.status == 200 and (data.endswith(b"data: [DONE]\n\n") and not sse_err
                                if stream else data.startswith(b"{\"id\":"))
    # a clear gateway error: 502-504 in the OpenAI envelope naming the upstream
    # (a loaded loopback fake may reset a connection now and then)
    clear = (500 < r.status < 505 and data.startswith(b"{\"error\":") and
             (b"upstream " in data))
    if stream and data.endswith(b"data: [DONE]\n\n") and sse_err:
        clear = True
    return ("ok" if good else "clear" if clear else "bad"), "%d %r" % (r.status, data[-200:])


def worker(seed):
    rng = random.Random(seed)
    conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
    while True:
        i = take()
        if i is None:
            break
        if rng.randrange(100) < CANCEL:
            abandon(i, rng)
            with LOCK:
                COUNT["canceled"] += 1
            continue
        try:
            kind, why = normal(conn, i, rng)
        except (OSError, http.client.HTTPException) as e:
            kind, why = "bad", repr(e)
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
        with LOCK:
            COUNT[kind] += 1
            if kind == "bad" and len(FIRST_BAD) < 3:
                FIRST_BAD.append(why)
    conn.close()


threads = [threading.Thread(target=worker, args=(k,)) for k in range(THREADS)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("ok %d canceled %d gateway-errors %d bad %d" % (
    COUNT["ok"], COUNT["canceled"], COUNT["clear"], COUNT["bad"]))
for b in FIRST_BAD:
    print("bad:", b)
# every request completes or gets a clear error; clear errors stay rare
sys.exit(1 if COUNT["bad"] or COUNT["clear"] > TOTAL // 100 else 0)
