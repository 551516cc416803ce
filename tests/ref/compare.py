#!/usr/bin/python3
"""compare.py ENGINE.f32 REFERENCE.f32 TOL [DIM] - max |engine - reference|
as a fraction of the reference range; exit 0 when within TOL.

Without DIM the files are one logit vector: both must also put the same
token first unless the reference's top two are within TOL. With DIM they are
rows of DIM values (embeddings), each row checked against its own range;
the smallest cosine between matching rows is printed too."""
import sys

import numpy as np

a = np.fromfile(sys.argv[1], dtype='<f4').astype(np.float64)
b = np.fromfile(sys.argv[2], dtype='<f4').astype(np.float64)
tol = float(sys.argv[3])
dim = int(sys.argv[4]) if len(sys.argv) > 4 else a.size
if a.shape != b.shape or dim < 1 or a.size % dim:
    print('shape %s vs %s (rows of %d)' % (a.shape, b.shape, dim))
    sys.exit(1)
a, b = a.reshape(-1, dim), b.reshape(-1, dim)
rel = max(np.abs(x - y).max() / (y.max() - y.min()) for x, y in zip(a, b))
if len(sys.argv) > 4:
    cos = min(float(x @ y / np.linalg.norm(x) / np.linalg.norm(y)) for x, y in zip(a, b))
    print('%d vectors: max|diff|/range = %.3g (tolerance %g), min cosine %.6f'
          % (len(a), rel, tol, cos))
    sys.exit(0 if rel <= tol else 1)
a, b = a[0], b[0]
rng = b.max() - b.min()
top = np.argsort(-b)[:2]
same_top = a.argmax() == b.argmax() or (b[top[0]] - b[top[1]]) / rng < tol
print('max|diff|/range = %.3g (range %.3f, tolerance %g), argmax engine %d ref %d'
      % (rel, rng, tol, a.argmax(), b.argmax()))
sys.exit(0 if rel <= tol and same_top else 1)
