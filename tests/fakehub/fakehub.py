#!/usr/bin/python3
"""fakehub.py - a local Hugging Face Hub for kanoa-mlops pull tests.

Two listeners: the "Hub" on 127.0.0.1 (API + /resolve) and a "CDN" on
127.0.0.2 (LFS bodies after a 302), both on free ports chosen at start and
written to --port-file as "HUBPORT CDNPORT". Headers follow the facts doc
(shared/docs/hf-hub-protocol.md sections 1 and 9): X-Repo-Commit, quoted ETag
(git sha1) or X-Linked-Etag (sha256) + X-Linked-Size, X-Error-Code, Link
rel="next" tree pages, Accept-Ranges / 206 / Content-Range.

Control (on the Hub listener, for tests):
  POST /_fault  {"path": P, "kind": K, "count": N, ...}  arm a fault for the
                next N body GETs of file path P. Kinds: drop (after=bytes),
                status (code, retry_after), flip (at=offset in file),
                trickle (delay=s per piece, piece=bytes), stall (seconds),
                norange, expired (CDN answers 403 as for an expired URL).
  GET  /_log    JSON list of requests {"listener","method","path","range","auth"}
  POST /_reset  clear faults and the log

Repos are fixtures built in code (fixtures()); content is deterministic.
Usage: fakehub.py --port-file F [--rate BYTES_PER_S_PER_CONN] [--big-size N]
                  [--synth-gguf FILE]
"""
import argparse, hashlib, json, os, random, socket, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit, parse_qs, unquote, quote

PAGE = 2               # tree page size: forces pagination
BLOCK = 1 << 20


def git_sha1(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def prng(seed, n):
    r = random.Random(seed)
    return r.randbytes(n)


class Blob:
    """File content: bytes in memory, or a virtual big object from blocks."""
    def __init__(self, data=None, size=None, seed=0, path=None):
        self.data = data
        self.path = path
        self.size = len(data) if data is not None else size
        if path is not None:
            self.size = os.path.getsize(path)
            self.fd = os.open(path, os.O_RDONLY)
        elif data is None:
            self.base = prng(seed, BLOCK)
        self.sha256 = None

    def read(self, start, end):  # [start, end)
        if self.data is not None:
            return self.data[start:end]
        if self.path is not None:
            return os.pread(self.fd, end - start, start)
        out = bytearray()
        pos = start
        while pos < end:
            k, off = divmod(pos, BLOCK)
            take = min(end - pos, BLOCK - off)
            if off < 8:  # the block number occupies bytes 0..7 of each block
                h = k.to_bytes(8, "little")[off:min(8, off + take)]
                out += h
                out += self.base[8:8 + take - len(h)]
            else:
                out += self.base[off:off + take]
            pos += take
        return bytes(out)

    def block(self, k):
        n = min(BLOCK, self.size - k * BLOCK)
        return (k.to_bytes(8, "little") + self.base[8:])[:n]

    def hash(self):
        if self.sha256 is None and self.data is not None:
            self.sha256 = hashlib.sha256(self.data).hexdigest()
        if self.sha256 is None and self.path is not None:
            h = hashlib.sha256()
            with open(self.path, "rb") as fh:
                for piece in iter(lambda: fh.read(1 << 22), b""):
                    h.update(piece)
            self.sha256 = h.hexdigest()
        if self.sha256 is None:
            h = hashlib.sha256()
            for k in range((self.size + BLOCK - 1) // BLOCK):
                h.update(self.block(k))
            self.sha256 = h.hexdigest()
        return self.sha256


class File:
    def __init__(self, path, blob, lfs):
        self.path, self.blob, self.lfs = path, blob, lfs
        self.etag = blob.hash() if lfs else git_sha1(blob.data)


def commit_of(name):
    return hashlib.sha1(name.encode()).hexdigest()


def fixtures(big_size, gguf=None, big_file=None):
    """repo id -> {"revs": {name: commit}, "commits": {commit: [File]},
    "gated": bool, "private": bool}"""
    repos = {}
    model = Blob(prng(1, 3 * BLOCK + 123))
    ga = Blob(b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n")
    files_v1 = [File(".gitattributes", ga, False),
                File("README.md", Blob(b"# tiny v1\n"), False),
                File("model.safetensors", model, True)]
    files_main = [File(".gitattributes", ga, False),
                  File("README.md", Blob(b"# tiny\nA test repo.\n"), False),
                  File("config.json", Blob(b'{"model_type": "llama"}\n'), False),
                  File("sub/dir/notes.txt", Blob(b"nested\n"), False),
                  File("odd name/a #1%.txt", Blob(b"odd\n"), False),
                  File("model.safetensors", model, True)]
    c0, c1 = commit_of("tiny-v1"), commit_of("tiny-main")
    repos["kanoa-test/tiny"] = {"revs": {"main": c1, "v1": c0},
                                "commits": {c1: files_main, c0: files_v1}}
    q4 = Blob(b"GGUF" + prng(2, 200000))
    q8 = Blob(b"GGUF" + prng(3, 300000))
    cg = commit_of("gguf-main")
    repos["kanoa-test/gguf"] = {"revs": {"main": cg}, "commits": {cg: [
        File("README.md", Blob(b"# gguf\n"), False),
        File("tiny-Q4_K_M.gguf", q4, True),
        File("tiny-Q8_0.gguf", q8, True)]}}
    cs = commit_of("single-main")
    repos["kanoa-test/single"] = {"revs": {"main": cs}, "commits": {cs: [
        File("only-Q4_0.gguf", Blob(b"GGUF" + prng(4, 5000)), True)]}}
    cga = commit_of("gated-main")
    repos["kanoa-test/gated"] = {"revs": {"main": cga}, "gated": True,
                                 "commits": {cga: [
        File("model.safetensors", Blob(prng(5, 65536)), True)]}}
    cp = commit_of("private-main")
    repos["kanoa-test/private"] = {"revs": {"main": cp}, "private": True,
                                   "commits": {cp: [
        File("README.md", Blob(b"private\n"), False)]}}
    for name, bad in (("hostile", "../escape.txt"), ("hostile-abs", "/tmp/kanoa-evil"),
                      ("hostile-deep", "a/../../../x")):
        ch = commit_of(name)
        repos["kanoa-test/" + name] = {"revs": {"main": ch}, "commits": {ch: [
            File("README.md", Blob(b"ok\n"), False),
            File(bad, Blob(b"evil\n"), False)]}}
    if gguf:
        csy = commit_of("synth-main")
        repos["kanoa-test/synth"] = {"revs": {"main": csy}, "commits": {csy: [
            File("README.md", Blob(b"# synth\n"), False),
            File("tiny-F16.gguf", Blob(open(gguf, "rb").read()), True)]}}
    cr = commit_of("relredir-main")
    repos["kanoa-test/relredir"] = {"revs": {"main": cr}, "relative": True,
                                    "commits": {cr: [
        File("config.json", Blob(b'{"renamed": true}\n'), False)]}}
    cb = commit_of("big-main")
    repos["kanoa-test/big"] = {"revs": {"main": cb}, "commits": {cb: [
        File("big.bin", Blob(path=big_file) if big_file else
             Blob(size=big_size, seed=6), True)]}}
    return repos


class State:
    def __init__(self, args):
        self.repos = fixtures(args.big_size, args.synth_gguf, args.big_file)
        self.rate = args.rate
        self.faults = []
        self.log = []
        self.lock = threading.Lock()
        self.hub_port = self.cdn_port = 0
        self.by_sha = {}
        for repo in self.repos.values():
            for files in repo["commits"].values():
                for f in files:
                    if f.lfs:
                        self.by_sha[f.etag] = f

    def take_fault(self, path):
        with self.lock:
            for f in self.faults:
                if f["path"] == path and f["count"] > 0:
                    f["count"] -= 1
                    return f
        return None


TOKENS_GRANTED = {"hf_granted"}
TOKENS_VALID = {"hf_granted", "hf_other"}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fakehub"

    def log_message(self, fmt, *a):
        pass

    @property
    def st(self):
        return self.server.state

    def record(self):
        with self.st.lock:
            self.st.log.append({"listener": self.server.name,
                                "method": self.command, "path": self.path,
                                "range": self.headers.get("Range"),
                                "auth": self.headers.get("Authorization")})

    def token(self):
        a = self.headers.get("Authorization") or ""
        return a[7:] if a.startswith("Bearer ") else None

    def reply(self, code, body=b"", headers=None, ctype="application/json"):
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def error(self, code, ecode=None, msg="", extra=None):
        h = dict(extra or {})
        if ecode:
            h["X-Error-Code"] = ecode
        if msg:
            h["X-Error-Message"] = msg
        self.reply(code, json.dumps({"error": msg or ecode or "error"}).encode(), h)

    # ---- dispatch ----
    def do_HEAD(self):
        self.handle_any()

    def do_GET(self):
        self.handle_any()

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        if self.path == "/_fault":
            f = json.loads(body)
            f.setdefault("count", 1)
            with self.st.lock:
                self.st.faults.append(f)
            return self.reply(200, b"{}")
        if self.path == "/_reset":
            with self.st.lock:
                self.st.faults.clear()
                self.st.log.clear()
            return self.reply(200, b"{}")
        self.error(404)

    def handle_any(self):
        u = urlsplit(self.path)
        path = u.path
        if path == "/_log":
            with self.st.lock:
                data = json.dumps(self.st.log).encode()
            return self.reply(200, data)
        self.record()
        if self.server.name == "cdn":
            return self.cdn(path)
        if path.startswith("/api/resolve-cache/models/"):
            rest = path[len("/api/resolve-cache/models/"):].split("/", 3)
            repo = self.st.repos.get(rest[0] + "/" + rest[1])
            f = next((x for x in repo["commits"][rest[2]]
                      if x.path == unquote(rest[3])), None) if repo else None
            if f is None:
                return self.error(404, "EntryNotFound", "Entry not found")
            return self.body(f, {"ETag": '"%s"' % f.etag, "X-Repo-Commit": rest[2]})
        if path.startswith("/api/models/"):
            return self.api(path[len("/api/models/"):], parse_qs(u.query))
        parts = path.lstrip("/").split("/", 4)
        if len(parts) == 5 and parts[2] == "resolve":
            repo = parts[0] + "/" + parts[1]
            return self.resolve(repo, unquote(parts[3]), unquote(parts[4]))
        self.error(404, "RepoNotFound", "Repository not found")

    # ---- auth ----
    def check_repo(self, repo_id, for_file):
        """None if allowed, else sends the error and returns True."""
        repo = self.st.repos.get(repo_id)
        tok = self.token()
        if tok is not None and tok not in TOKENS_VALID:
            self.error(401, None, "Invalid credentials in Authorization header")
            return True
        if repo is None or (repo.get("private") and tok is None):
            if tok is None:
                self.error(401, "RepoNotFound", "Repository not found")
            else:
                self.error(404, "RepoNotFound", "Repository not found")
            return True
        if repo.get("gated") and for_file:
            if tok is None:
                self.error(401, "GatedRepo", "Access to model %s is restricted. "
                           "You must have access to it and be authenticated to "
                           "access it. Please log in." % repo_id)
                return True
            if tok not in TOKENS_GRANTED:
                self.error(403, "GatedRepo", "Access to model %s is restricted "
                           "and you are not in the authorized list." % repo_id)
                return True
        return None

    def commit_for(self, repo, rev):
        if rev in repo["revs"]:
            return repo["revs"][rev]
        if rev in repo["commits"]:
            return rev
        return None

    # ---- API ----
    def api(self, rest, q):
        parts = rest.split("/")
        repo_id = "/".join(parts[:2])
        if self.check_repo(repo_id, False):
            return
        repo = self.st.repos[repo_id]
        if len(parts) >= 4 and parts[2] == "revision":
            rev = unquote("/".join(parts[3:]))
            c = self.commit_for(repo, rev)
            if c is None:
                return self.error(404, "RevisionNotFound", "Invalid rev id: " + rev)
            sib = [{"rfilename": f.path} for f in repo["commits"][c]]
            return self.reply(200, json.dumps({"id": repo_id, "sha": c,
                                               "siblings": sib}).encode())
        if len(parts) >= 4 and parts[2] == "tree":
            c = self.commit_for(repo, unquote(parts[3]))
            if c is None:
                return self.error(404, "RevisionNotFound", "Invalid rev id")
            return self.tree(repo_id, c, repo["commits"][c], q)
        self.error(404)

    def tree(self, repo_id, commit, files, q):
        entries = []
        dirs = set()
        for f in files:
            d = f.path.rsplit("/", 1)[0] if "/" in f.path else None
            while d and d not in dirs:
                dirs.add(d)
                entries.append({"type": "directory", "oid": "0" * 40, "size": 0,
                                "path": d})
                d = d.rsplit("/", 1)[0] if "/" in d else None
            e = {"type": "file", "path": f.path, "size": f.blob.size,
                 "oid": git_sha1(f.blob.data) if f.blob.data is not None
                 else "1" * 40}
            if f.lfs:
                e["lfs"] = {"oid": f.etag, "size": f.blob.size, "pointerSize": 134}
            entries.append(e)
        cur = int(q.get("cursor", ["0"])[0])
        page = entries[cur:cur + PAGE]
        h = {}
        if cur + PAGE < len(entries):
            h["Link"] = ('<http://127.0.0.1:%d/api/models/%s/tree/%s?recursive=true'
                         '&cursor=%d>; rel="next"' % (self.st.hub_port, repo_id,
                                                      commit, cur + PAGE))
        self.reply(200, json.dumps(page).encode(), h)

    # ---- resolve ----
    def resolve(self, repo_id, rev, path):
        if self.check_repo(repo_id, True):
            return
        repo = self.st.repos[repo_id]
        c = self.commit_for(repo, rev)
        if c is None:
            return self.error(404, "RevisionNotFound", "Invalid rev id: " + rev)
        f = next((x for x in repo["commits"][c] if x.path == path), None)
        if f is None:
            return self.error(404, "EntryNotFound", "Entry not found",
                              {"X-Repo-Commit": c})
        if f.lfs:
            body = b"Found. Redirecting to the CDN"
            loc = "http://127.0.0.2:%d/cdn/%s?sig=x&X-Amz-Expires=3600" % (
                self.st.cdn_port, f.etag)
            return self.reply(302, body, {"Location": loc, "X-Repo-Commit": c,
                                          "X-Linked-Etag": '"%s"' % f.etag,
                                          "X-Linked-Size": str(f.blob.size),
                                          "ETag": '"%s"' % git_sha1(b"pointer")},
                              "text/plain")
        if repo.get("relative"):  # mid-2025 Hub: relative 307 to resolve-cache
            return self.reply(307, b"", {"Location": "/api/resolve-cache/models/%s/%s/%s"
                                         "?etag=%s" % (repo_id, c, quote(path), f.etag),
                                         "X-Repo-Commit": c})
        self.body(f, {"ETag": '"%s"' % f.etag, "X-Repo-Commit": c})

    def cdn(self, path):
        sha = path.rsplit("/", 1)[-1]
        f = self.st.by_sha.get(sha)
        if f is None:
            return self.reply(404, b"no such object", {}, "text/plain")
        self.body(f, {"ETag": '"%s"' % f.etag})

    # ---- bodies with ranges and faults ----
    def body(self, f, headers):
        size = f.blob.size
        fault = self.st.take_fault(f.path) if self.command == "GET" else None
        kind = fault["kind"] if fault else None
        if kind == "expired" and self.server.name == "cdn":
            return self.reply(403, b"Request has expired", {}, "text/plain")
        if kind == "status":
            h = {}
            if "retry_after" in fault:
                h["Retry-After"] = str(fault["retry_after"])
            if "ratelimit_t" in fault:
                h["RateLimit"] = '"resolvers";r=0;t=%d' % fault["ratelimit_t"]
                h["RateLimit-Policy"] = '"fixed window";"resolvers";q=3000;w=300'
            return self.error(fault["code"], None, "injected", h)
        start, end, code = 0, size, 200
        rng = self.headers.get("Range")
        if rng and kind != "norange" and rng.startswith("bytes="):
            a, _, b = rng[6:].partition("-")
            start = int(a)
            end = min(size, int(b) + 1) if b else size
            if start >= size:
                return self.reply(416, b"", {"Content-Range": "bytes */%d" % size})
            code = 206
        self.send_response(code)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(end - start))
        if code == 206:
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, end - 1, size))
        self.end_headers()
        if self.command == "HEAD":
            return
        if kind == "stall":
            time.sleep(fault.get("seconds", 30))
            self.close_connection = True
            return
        self.send_range(f, start, end, fault)

    def send_range(self, f, start, end, fault):
        kind = fault["kind"] if fault else None
        if f.blob.path is not None and kind is None:
            return self.send_file(f, start, end)
        piece = fault.get("piece", 16384) if kind == "trickle" else 256 * 1024
        rate = self.st.rate
        t0, sent = time.monotonic(), 0
        pos = start
        while pos < end:
            n = min(piece, end - pos)
            if kind == "drop" and pos + n > start + fault.get("after", 0):
                n = start + fault.get("after", 0) - pos
                if n > 0:
                    self.wfile.write(f.blob.read(pos, pos + n))
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            data = f.blob.read(pos, pos + n)
            if kind == "flip" and pos <= fault.get("at", 0) < pos + n:
                i = fault.get("at", 0) - pos
                data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:]
            try:
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True
                return
            pos += n
            sent += n
            if kind == "trickle":
                time.sleep(fault.get("delay", 0.05))
            if rate:
                ahead = sent / rate - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)


    def send_file(self, f, start, end):
        """Zero-copy body for --big-file, honouring --rate per connection."""
        rate = self.st.rate
        t0, pos = time.monotonic(), start
        try:
            while pos < end:
                n = os.sendfile(self.connection.fileno(), f.blob.fd, pos,
                                min(1 << 20, end - pos))
                if n <= 0:
                    break
                pos += n
                if rate:
                    ahead = (pos - start) / rate - (time.monotonic() - t0)
                    if ahead > 0:
                        time.sleep(ahead)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--rate", type=float, default=0)
    ap.add_argument("--big-size", type=int, default=8 * BLOCK + 77)
    ap.add_argument("--big-file", help="serve this file (e.g. sparse) as "
                    "kanoa-test/big big.bin, with sendfile")
    ap.add_argument("--synth-gguf", help="serve this file as kanoa-test/synth "
                    "tiny-F16.gguf")
    ap.add_argument("--lifetime", type=float, default=900,
                    help="exit after this many seconds (bounded)")
    args = ap.parse_args()
    st = State(args)
    hub = Server(("127.0.0.1", 0), Handler)
    cdn = Server(("127.0.0.2", 0), Handler)
    hub.name, cdn.name = "hub", "cdn"
    hub.state = cdn.state = st
    st.hub_port, st.cdn_port = hub.server_address[1], cdn.server_address[1]
    for s in (hub, cdn):
        threading.Thread(target=s.serve_forever, daemon=True).start()
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as fh:
        fh.write("%d %d\n" % (st.hub_port, st.cdn_port))
    os.rename(tmp, args.port_file)
    time.sleep(args.lifetime)


if __name__ == "__main__":
    main()
