"""hostile.py - hostile requests against a running server.

usage: /usr/bin/python3 hostile.py PORT CASES_DIR

Each cases/NAME.http holds raw request bytes (LF line ends in the head are
sent as CRLF; "Content-Length: AUTO" becomes the body's length) and
NAME.expect the accepted outcomes, e.g. "400" or "413|closed". Generated
cases: 100k-deep nesting, a chunked body over the limit, a slow-drip
client, 1,000 idle connections. After every case /health must answer 200.
Prints "ok"/"not ok" lines and ends with "N passed, N failed".
"""
import os
import socket
import sys
import threading
import time

PORT = int(sys.argv[1])
CASES = sys.argv[2]
passed = failed = 0


def report(ok, name, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print(f"ok {name}")
    else:
        failed += 1
        print(f"not ok {name}: {detail}")
    sys.stdout.flush()


def connect(timeout=10):
    s = socket.create_connection(("127.0.0.1", PORT), timeout=timeout)
    return s


def read_status(s):
    """Status code of the first response, or 'closed'."""
    data = b""
    try:
        while b"\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except (ConnectionResetError, socket.timeout, BrokenPipeError):
        pass
    if not data.startswith(b"HTTP/1."):
        return "closed"
    return data.split(b" ", 2)[1].decode()


def send_raw(raw):
    s = connect()
    try:
        s.sendall(raw)
    except (BrokenPipeError, ConnectionResetError):
        pass
    st = read_status(s)
    s.close()
    return st


def health_ok():
    try:
        s = connect(timeout=5)
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        st = read_status(s)
        s.close()
        return st == "200"
    except OSError:
        return False


def prepare(raw):
    head, sep, body = raw.partition(b"\n\n")
    if not sep:
        return raw.replace(b"\n", b"\r\n")
    head = head.replace(b"Content-Length: AUTO", b"Content-Length: %d" % len(body))
    return head.replace(b"\n", b"\r\n") + b"\r\n\r\n" + body


def expect(name, got, accepted):
    ok = got in accepted.split("|")
    report(ok, name, f"got {got}, want {accepted}")
    report(health_ok(), name + " (health after)", "/health did not answer 200")


def run_files():
    for f in sorted(os.listdir(CASES)):
        if not f.endswith(".http"):
            continue
        name = f[:-5]
        raw = open(os.path.join(CASES, f), "rb").read()
        want = open(os.path.join(CASES, name + ".expect")).read().strip()
        expect(name, send_raw(prepare(raw)), want)


def post(body, extra=b""):
    return (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\n" + extra +
            b"Content-Length: %d\r\n\r\n" % len(body) + body)


def deep_nesting():
    body = b'{"model":"scripted-chat","messages":' + b"[" * 100000 + b"]" * 100000 + b"}"
    expect("nesting_100k_deep", send_raw(post(body)), "400")


def chunked_over_limit():
    s = connect()
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
              b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"a" * 65536
    try:
        for _ in range(40):  # 2.5 MiB against a 1 MiB limit
            s.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
        s.sendall(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass
    st = read_status(s)
    s.close()
    expect("chunked_body_over_limit", st, "413|closed")


def slow_drip():
    """One byte every 50 ms while /health keeps answering."""
    raw = post(b'{"model":"scripted-chat","messages":[{"role":"user","content":"drip"}]}')
    s = connect(timeout=30)
    healthy = True
    for i, b in enumerate(raw):
        s.sendall(bytes([b]))
        if i % 40 == 0:
            healthy = healthy and health_ok()
        time.sleep(0.05 if i < 60 else 0)
    st = read_status(s)
    s.close()
    report(st == "200", "slow_drip_completes", f"got {st}")
    report(healthy, "slow_drip (health during)", "/health failed during the drip")


def idle_connections():
    socks = []
    try:
        for _ in range(1000):
            socks.append(connect())
        ok = all(health_ok() for _ in range(5))
        report(ok, "1000_idle_connections (health during)", "/health failed")
        # half-sent requests on 100 of them
        for s in socks[:100]:
            s.sendall(b"GET /v1/mod")
        report(health_ok(), "100_half_requests (health during)", "/health failed")
    except OSError as e:
        report(False, "1000_idle_connections", str(e))
    for s in socks:
        s.close()
    time.sleep(0.2)
    report(health_ok(), "idle_connections_closed (health after)", "/health failed")


def pipelined():
    raw = (b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n" * 50)
    s = connect()
    s.sendall(raw)
    data = b""
    deadline = time.time() + 5
    while data.count(b"HTTP/1.1 200") < 50 and time.time() < deadline:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    report(data.count(b"HTTP/1.1 200") == 50, "50_pipelined_requests",
           f"{data.count(b'HTTP/1.1 200')} answered")


def abort_storm():
    """100 concurrent streams, most dropped mid-way; all cancel cleanly."""
    body = (b'{"model":"scripted-chat","stream":true,"messages":[{"role":"user",'
            b'"content":"[tokens:40][delay:5]"}]}')
    done = []

    def one(i):
        s = connect(timeout=20)
        s.sendall(post(body))
        want = 200 + 300 * (i % 7)  # bytes to read before hanging up
        got = b""
        try:
            while len(got) < want or i % 10 == 0:
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
        except OSError:
            pass
        s.close()
        done.append(got.startswith(b"HTTP/1.1 200"))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    report(len(done) == 100 and all(done), "100_streams_aborted_midway",
           f"{sum(done)} of {len(done)} started with 200")
    report(health_ok(), "abort_storm (health after)", "/health failed")


run_files()
deep_nesting()
chunked_over_limit()
slow_drip()
idle_connections()
pipelined()
abort_storm()
print(f"{passed} passed, {failed} failed")
