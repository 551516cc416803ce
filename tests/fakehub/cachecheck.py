#!/usr/bin/python3
"""cachecheck.py - assert the exact state of a Hugging Face cache written by
`kanoa-mlops pull`, against the fakehub fixtures.

usage: cachecheck.py CACHE REPO REV [PATH ...]
  Checks that CACHE holds for REPO exactly: refs/<REV> = 40-hex commit with
  no newline (unless REV is the commit), snapshots/<commit>/ with exactly
  PATH... (all files of the commit when none given) as relative symlinks
  "../"*(2+slashes)+"blobs/<etag>", blobs/ whose names are the etags of the
  snapshot files of every snapshot present and whose bytes hash to them, and
  no partial or temp files anywhere. Prints one line per problem; exit 1 if
  any.
"""
import hashlib, os, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fakehub


def main():
    cache, repo_id, rev = sys.argv[1:4]
    want = sys.argv[4:]
    repo = fakehub.fixtures(8 * fakehub.BLOCK + 77)[repo_id]
    commit = repo["revs"].get(rev, rev)
    files = {f.path: f for f in repo["commits"][commit]}
    want = want or sorted(files)
    errs = []
    rdir = os.path.join(cache, "models--" + repo_id.replace("/", "--"))
    if rev != commit:
        try:
            ref = open(os.path.join(rdir, "refs", rev), "rb").read()
            if ref != commit.encode():
                errs.append("refs/%s is %r, want %s" % (rev, ref, commit))
        except OSError as e:
            errs.append("refs/%s: %s" % (rev, e))
    snap = os.path.join(rdir, "snapshots", commit)
    got = []
    for root, dirs, names in os.walk(snap):
        for n in names:
            got.append(os.path.relpath(os.path.join(root, n), snap))
    if sorted(got) != sorted(want):
        errs.append("snapshot files %s, want %s" % (sorted(got), sorted(want)))
    for p in want:
        f = files.get(p)
        link = os.path.join(snap, p)
        if f is None or not os.path.islink(link):
            errs.append("%s: missing or not a symlink" % p)
            continue
        target = "../" * (2 + p.count("/")) + "blobs/" + f.etag
        if os.readlink(link) != target:
            errs.append("%s -> %s, want %s" % (p, os.readlink(link), target))
    # every blob named by its hash, content matching
    bdir = os.path.join(rdir, "blobs")
    for b in sorted(os.listdir(bdir)) if os.path.isdir(bdir) else []:
        data = open(os.path.join(bdir, b), "rb").read()
        if len(b) == 64:
            h = hashlib.sha256(data).hexdigest()
        else:
            h = fakehub.git_sha1(data)
        if h != b:
            errs.append("blob %s has content hash %s" % (b, h))
    for root, dirs, names in os.walk(cache):
        for n in names:
            if "partial" in n or "kanoa-tmp" in n or n.endswith(".incomplete"):
                errs.append("leftover %s" % os.path.join(root, n))
    for e in errs:
        print("cachecheck: " + e)
    sys.exit(1 if errs else 0)


if __name__ == "__main__":
    main()
