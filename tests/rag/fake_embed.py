#!/usr/bin/python3
"""fake_embed.py - a deterministic OpenAI /v1/embeddings server for tests.

Each text's vector is the normalized sum of one pseudo-random unit vector per
word (lower-cased runs of letters and digits), seeded by the word's SHA-256:
texts sharing words are near each other, and the same text always gives the
same vector. Standard library only.

usage: fake_embed.py PORT_FILE [--dim N] [--delay SECONDS] [--model NAME]
Binds 127.0.0.1 on a free port and writes the port to PORT_FILE. Requests
for another model get a 404 in the OpenAI error envelope.
"""
import hashlib
import http.server
import json
import math
import random
import re
import sys
import time

ARGS = {"dim": 32, "delay": 0.0, "model": "fake-embed"}


def word_vector(word, dim):
    rng = random.Random(hashlib.sha256(word.encode()).digest())
    v = [rng.gauss(0.0, 1.0) for _ in range(dim)]
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]


def embed(text, dim):
    acc = [0.0] * dim
    words = re.findall(r"[a-z0-9]+", text.lower()) or ["<empty>"]
    for w in words:
        for i, x in enumerate(word_vector(w, dim)):
            acc[i] += x
    n = math.sqrt(sum(x * x for x in acc)) or 1.0
    return [x / n for x in acc]


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def reply(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path.endswith("/models"):
            return self.reply(200, {"object": "list", "data": [
                {"id": ARGS["model"], "object": "model", "owned_by": "fake"}]})
        return self.reply(200, {"status": "ok"})

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        req = json.loads(self.rfile.read(n))
        if not self.path.endswith("/embeddings"):
            return self.reply(404, {"error": {"message": "no route", "type": "not_found"}})
        if req.get("model") != ARGS["model"]:
            return self.reply(404, {"error": {"message": "model '%s' not found" % req.get("model"),
                                              "type": "not_found"}})
        inputs = req["input"]
        if isinstance(inputs, str):
            inputs = [inputs]
        time.sleep(ARGS["delay"])
        data = [{"object": "embedding", "index": i, "embedding": embed(t, ARGS["dim"])}
                for i, t in enumerate(inputs)]
        self.reply(200, {"object": "list", "data": data, "model": ARGS["model"],
                         "usage": {"prompt_tokens": 0, "total_tokens": 0}})


def main():
    port_file = sys.argv[1]
    rest = sys.argv[2:]
    for i in range(0, len(rest), 2):
        key = rest[i].lstrip("-")
        ARGS[key] = type(ARGS[key])(rest[i + 1])
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    with open(port_file + ".tmp", "w") as f:
        f.write(str(srv.server_address[1]))
    import os
    os.rename(port_file + ".tmp", port_file)
    srv.serve_forever()


if __name__ == "__main__":
    main()
