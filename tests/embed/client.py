#!/usr/bin/python3
"""client.py - checks of /v1/embeddings against a real `serve` (tests/embed/run.sh).

Usage: client.py PORT. Models: `bert` (bert tiny, CLS pooling, 128 dims,
context 128), `nomic` (nomic-bert tiny, 256 dims, Matryoshka), `llama`
(generation). Prints one line per check and "N passed, N failed".
"""
import base64
import json
import math
import struct
import sys
import threading
import urllib.error
import urllib.request

PORT = int(sys.argv[1])
BASE = f"http://127.0.0.1:{PORT}"
passed = 0
failed = 0


def req(path, body=None):
    data = None if body is None else json.dumps(body).encode()
    r = urllib.request.Request(BASE + path, data=data,
                               headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(r, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def check(name, fn):
    global passed, failed
    try:
        fn()
        passed += 1
        print(f"ok - {name}")
    except Exception as e:  # noqa: BLE001 - report every failure
        failed += 1
        print(f"not ok - {name}: {e!r}")


def emb(model, inp, **kw):
    st, j = req("/v1/embeddings", dict(model=model, input=inp, **kw))
    assert st == 200, (st, j)
    return j


def b64(model, inp, **kw):
    j = emb(model, inp, encoding_format="base64", **kw)
    return [d["embedding"] for d in j["data"]], j


def f32(s):
    raw = base64.b64decode(s)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


def norm(v):
    return math.sqrt(sum(x * x for x in v))


def t_models():
    st, j = req("/v1/models")
    assert st == 200
    tasks = {m["id"]: m["task"] for m in j["data"]}
    assert tasks == {"bert": "embed", "nomic": "embed", "llama": "generate"}, tasks
    mx = {m["id"]: m["max_model_len"] for m in j["data"]}
    assert mx["bert"] == 128 and mx["nomic"] == 2048, mx


def t_float():
    j = emb("bert", ["hello world", "a"])
    assert j["object"] == "list" and j["model"] == "bert"
    assert j["id"].startswith("embd-")
    assert [d["index"] for d in j["data"]] == [0, 1]
    assert all(d["object"] == "embedding" for d in j["data"])
    for d in j["data"]:
        assert len(d["embedding"]) == 128
        assert abs(norm(d["embedding"]) - 1) < 1e-5
    # [CLS] hello world [SEP] = 4 tokens, [CLS] a [SEP] = 3
    assert j["usage"]["prompt_tokens"] == 7 and j["usage"]["total_tokens"] == 7, j["usage"]


def t_base64_equals_float():
    jf = emb("bert", "hello world")
    vb, _ = b64("bert", "hello world")
    fl = [struct.unpack("<f", struct.pack("<f", x))[0] for x in jf["data"][0]["embedding"]]
    assert f32(vb[0]) == fl


def t_token_ids():
    vt, _ = b64("bert", "hello world")
    vi, j = b64("bert", [[101, 7592, 2088, 102]])
    assert vi == vt
    assert j["usage"]["prompt_tokens"] == 4
    vs, _ = b64("bert", [101, 7592, 2088, 102])   # one id array
    assert vs == vt


def t_batch_independence():
    solo, _ = b64("bert", "hello world")
    others = ["The quick brown fox", "a", "hello world", "x y z " * 10]
    batch, _ = b64("bert", others)
    assert batch[2] == solo[0]
    nomic_solo, _ = b64("nomic", "hello world")
    nb, _ = b64("nomic", others)
    assert nb[2] == nomic_solo[0]
    again, _ = b64("bert", "hello world")
    assert again == solo


def t_concurrent():
    texts = [f"request number {i} with some words" for i in range(6)]
    solo = [b64("bert", t)[0][0] for t in texts]
    got = [None] * len(texts)

    def run(i):
        got[i] = b64("bert", [texts[i], texts[(i + 1) % 6]])[0]
    th = [threading.Thread(target=run, args=(i,)) for i in range(6)]
    for t in th:
        t.start()
    for t in th:
        t.join(60)
    for i in range(6):
        assert got[i] == [solo[i], solo[(i + 1) % 6]], i


def t_dimensions():
    full = f32(b64("nomic", "hello world")[0][0])
    assert len(full) == 256
    cut = f32(b64("nomic", "hello world", dimensions=32)[0][0])
    assert len(cut) == 32 and abs(norm(cut) - 1) < 1e-5
    n = norm(full[:32])
    assert all(abs(a - b / n) < 1e-6 for a, b in zip(cut, full[:32]))
    st, j = req("/v1/embeddings", {"model": "bert", "input": "x", "dimensions": 64})
    assert st == 400
    assert j["error"]["message"] == ("model `bert` does not support matryoshka "
                                     "representation: dimensions must be 128 (got 64)"), j
    st, j = req("/v1/embeddings", {"model": "nomic", "input": "x", "dimensions": 300})
    assert st == 400 and j["error"]["message"] == "dimensions 300 is outside 1..256 for model `nomic`", j
    st, j = req("/v1/embeddings", {"model": "bert", "input": "x", "dimensions": 128})
    assert st == 200 and len(j["data"][0]["embedding"]) == 128


def t_wrong_task():
    st, j = req("/v1/embeddings", {"model": "llama", "input": "x"})
    assert st == 400 and j["error"]["message"] == (
        "The model `llama` does not support /v1/embeddings: its task is `generate`"), j
    assert j["error"]["param"] == "model", j
    st, j = req("/v1/chat/completions", {"model": "bert",
                                         "messages": [{"role": "user", "content": "x"}]})
    assert st == 400 and j["error"]["message"] == (
        "The model `bert` does not support /v1/chat/completions: its task is `embed`"), j


def t_too_long():
    text = "word " * 200
    st, j = req("/v1/embeddings", {"model": "bert", "input": ["ok", text]})
    assert st == 400, (st, j)
    assert j["error"]["message"] == ("input 1 has 202 tokens, more than model `bert`'s "
                                     "maximum of 128 tokens; shorten it or pass "
                                     "truncate_prompt_tokens"), j
    st, j = req("/v1/embeddings", {"model": "bert", "input": [list(range(1000, 1129))]})
    assert st == 400 and "129 tokens" in j["error"]["message"], j


def t_truncate():
    text = "word " * 200
    v, j = b64("bert", text, truncate_prompt_tokens=16)
    assert j["usage"]["prompt_tokens"] == 16
    st, tj = req("/tokenize", {"model": "bert", "prompt": text})
    assert st == 200, tj
    ids = tj["tokens"][:15] + [102]
    w, _ = b64("bert", [ids])
    assert v == w


def t_bad_format():
    st, j = req("/v1/embeddings", {"model": "bert", "input": "x", "encoding_format": "int8"})
    assert st == 400 and j["error"]["param"] == "encoding_format", j


for name, fn in [("models show the task", t_models), ("float vectors and usage", t_float),
                 ("base64 decodes to the float values", t_base64_equals_float),
                 ("token-id input equals text input", t_token_ids),
                 ("batch independence (bit-exact)", t_batch_independence),
                 ("concurrent requests bit-exact", t_concurrent),
                 ("dimensions (Matryoshka)", t_dimensions), ("wrong task -> 400", t_wrong_task),
                 ("over-long input -> 400", t_too_long), ("truncate_prompt_tokens", t_truncate),
                 ("bad encoding_format -> 400", t_bad_format)]:
    check(name, fn)
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
