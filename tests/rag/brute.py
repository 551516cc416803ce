#!/usr/bin/python3
"""brute.py - exact top-k by cosine similarity, the reference for rag query.

usage: brute.py K DIM "QUERY" < rows   (rows: chunk_id|[x,y,...] from psql -At)
Prints "chunk_id score" lines, best first (ties by chunk id). The query is
embedded with fake_embed.py's function; numpy does the math.
"""
import os
import sys

import numpy as np

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fake_embed  # noqa: E402

k, dim, query = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
ids, vecs = [], []
for line in sys.stdin:
    line = line.strip()
    if not line:
        continue
    cid, vec = line.split("|", 1)
    ids.append(cid)
    vecs.append([float(x) for x in vec.strip("[]").split(",")])
m = np.array(vecs, dtype=np.float64)
q = np.array(fake_embed.embed(query, dim), dtype=np.float32).astype(np.float64)
sim = (m @ q) / (np.linalg.norm(m, axis=1) * np.linalg.norm(q))
order = sorted(range(len(ids)), key=lambda i: (-sim[i], ids[i]))[:k]
for i in order:
    print("%s %.6f" % (ids[i], max(0.0, min(1.0, sim[i]))))
