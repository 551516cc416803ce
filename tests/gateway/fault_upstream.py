#!/usr/bin/python3
"""fault_upstream.py - a small OpenAI-compatible upstream that misbehaves on
request, for the gateway tests (tests/test_upstream_proxy.c, tests/gateway/).

Listens on 127.0.0.1 (port 0 = any free port), prints "PORT <n>" on its first
stdout line, then serves until killed (or --lifetime seconds, a safety net).

Endpoints
  GET  /health      200 "" (or 503 while --health is off; 404 with --no-health)
  GET  /v1/models   {"object":"list","data":[{"id":...}]} for --models
  GET  /metrics     vllm:num_requests_waiting{model_name=...} <--waiting>
                    (absent with --waiting -1)
  GET  /stats       {"requests":n,"open":n,"last_request_id":...}
  POST /control     {"health":bool,"waiting":n,"mode":str} changes state
  POST /v1/chat/completions, /v1/completions, /v1/embeddings

Fault selection: the request body text "FAULT:<kind>" (e.g. inside a message)
or --mode <kind> for every request. Kinds:
  ok        normal answer (JSON, or SSE with --tokens chunks when stream)
  500       HTTP 500 with an OpenAI error envelope
  503       HTTP 503 with an OpenAI error envelope
  drop      SSE: headers and 2 chunks, then the connection is closed
  close     the connection is closed before any response byte
  slow      --slow seconds of silence, then a normal answer
  hang      headers and 1 chunk, then silence (until the client gives up)
  silent    nothing at all, the connection stays open
Answers name this upstream (--name) and echo the X-Request-Id they got.
"""
import argparse
import json
import select
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STATE = {"health": True, "waiting": 0, "mode": "ok", "requests": 0,
         "open": 0, "last_request_id": None, "last_ignore_eos": None}
LOCK = threading.Lock()
ARGS = None


def wait_for_close(sock, limit):
    """Stay silent until the client closes the connection (or limit s)."""
    end = time.time() + limit
    while time.time() < end:
        r, _, _ = select.select([sock], [], [], 0.1)
        if r:
            try:
                if not sock.recv(1, socket.MSG_PEEK):
                    return
            except OSError:
                return
            time.sleep(0.01)


def chunk(wfile, data):
    wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
    wfile.flush()


def event(wfile, ev):
    """One SSE data event as one HTTP chunk."""
    chunk(wfile, b"data: " + json.dumps(ev, separators=(",", ":")).encode() + b"\n\n")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *a):
        pass

    def setup(self):
        super().setup()
        with LOCK:
            STATE["open"] += 1

    def finish(self):
        try:
            super().finish()
        finally:
            with LOCK:
                STATE["open"] -= 1

    def send_json(self, code, obj):
        body = json.dumps(obj, separators=(",", ":")).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/health":
            if ARGS.no_health:
                return self.send_json(404, {"detail": "Not Found"})
            code = 200 if STATE["health"] else 503
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/v1/models":
            data = [{"id": m, "object": "model", "created": 1700000000,
                     "owned_by": "vllm", "max_model_len": 4096}
                    for m in ARGS.models.split(",")]
            self.send_json(200, {"object": "list", "data": data})
        elif self.path == "/metrics":
            lines = ["# HELP vllm:num_requests_waiting waiting",
                     "# TYPE vllm:num_requests_waiting gauge"]
            if STATE["waiting"] >= 0:
                for m in ARGS.models.split(","):
                    lines.append('vllm:num_requests_waiting{engine="0",'
                                 'model_name="%s"} %d.0' % (m, STATE["waiting"]))
            body = ("\n".join(lines) + "\n").encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path == "/stats":
            with LOCK:
                self.send_json(200, dict(STATE))
        else:
            self.send_json(404, {"detail": "Not Found"})

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n) if n else b""
        if self.path == "/control":
            with LOCK:
                STATE.update(json.loads(body or b"{}"))
            return self.send_json(200, {"ok": True})
        if self.path not in ("/v1/chat/completions", "/v1/completions",
                             "/v1/embeddings"):
            return self.send_json(404, {"detail": "Not Found"})
        rid = self.headers.get("X-Request-Id")
        with LOCK:
            STATE["requests"] += 1
            STATE["last_request_id"] = rid
        kind = STATE["mode"]
        i = body.find(b"FAULT:")
        if i >= 0:
            kind = body[i + 6:].split(b'"')[0].split(b" ")[0].decode()
        try:
            req = json.loads(body)
        except ValueError:
            return self.send_json(400, {"error": {
                "message": "bad json", "type": "BadRequestError",
                "param": None, "code": 400}})
        with LOCK:
            STATE["last_ignore_eos"] = req.get("ignore_eos")
        self.answer(kind, req, rid, len(body))

    def cut(self):
        """Close the connection now, mid-exchange."""
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    def go_silent(self):
        """Send nothing more until the client gives up."""
        self.close_connection = True
        wait_for_close(self.connection, ARGS.lifetime)

    def error_env(self, code):
        self.send_json(code, {"error": {
            "message": "injected %d from %s" % (code, ARGS.name),
            "type": "InternalServerError", "param": None, "code": code}})

    def answer(self, kind, req, rid, nbody):
        if kind in ("500", "503"):
            return self.error_env(int(kind))
        if kind == "close":
            return self.cut()
        if kind == "silent":
            return self.go_silent()
        if kind == "slow":
            time.sleep(ARGS.slow)
        model = req.get("model", "")
        if model not in ARGS.models.split(","):
            return self.send_json(404, {"error": {
                "message": "The model `%s` does not exist." % model,
                "type": "NotFoundError", "param": None, "code": 404}})
        if req.get("stream"):
            usage = (req.get("stream_options") or {}).get("include_usage")
            return self.stream(kind, model, rid, usage)
        content = "hello from %s" % ARGS.name
        self.send_json(200, {
            "id": "chatcmpl-%s" % rid, "object": "chat.completion",
            "created": 1700000000, "model": model, "upstream": ARGS.name,
            "request_id": rid, "body_bytes": nbody,
            "choices": [{"index": 0, "message": {
                "role": "assistant", "content": content},
                "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 3,
                      "total_tokens": 6}})

    def stream(self, kind, model, rid, usage=False):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        ntok = ARGS.tokens
        for t in range(ntok):
            ev = {"id": "chatcmpl-%s" % rid, "object": "chat.completion.chunk",
                  "model": model, "upstream": ARGS.name,
                  "choices": [{"index": 0, "delta": {"content": "t%d " % t},
                               "finish_reason": None}]}
            event(self.wfile, ev)
            if kind == "drop" and t == 1:
                return self.cut()
            if kind == "hang":
                return self.go_silent()
            if ARGS.token_delay:
                time.sleep(ARGS.token_delay)
        if usage:
            ev = {"id": "chatcmpl-%s" % rid, "object": "chat.completion.chunk",
                  "model": model, "choices": [], "usage": {
                      "prompt_tokens": 3, "completion_tokens": ntok,
                      "total_tokens": 3 + ntok}}
            event(self.wfile, ev)
        chunk(self.wfile, b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--name", default="fault")
    ap.add_argument("--models", default="m1")
    ap.add_argument("--mode", default="ok")
    ap.add_argument("--tokens", type=int, default=4)
    ap.add_argument("--token-delay", type=float, default=0.0)
    ap.add_argument("--slow", type=float, default=2.0)
    ap.add_argument("--waiting", type=int, default=0)
    ap.add_argument("--no-health", action="store_true")
    ap.add_argument("--lifetime", type=float, default=300.0)
    ARGS = ap.parse_args()
    STATE["mode"] = ARGS.mode
    STATE["waiting"] = ARGS.waiting
    srv = Server(("127.0.0.1", ARGS.port), Handler)
    print("PORT %d" % srv.server_address[1], flush=True)
    threading.Timer(ARGS.lifetime, lambda: srv.shutdown()).start()
    srv.serve_forever()


if __name__ == "__main__":
    main()
