#!/usr/bin/python3
"""compare.py ENGINE.f32 REFERENCE.f32 TOL - max |engine - reference| as a
fraction of the reference logit range; exit 0 when within TOL. Also checks
that both put the same token first unless the top two are within TOL."""
import sys

import numpy as np

a = np.fromfile(sys.argv[1], dtype='<f4').astype(np.float64)
b = np.fromfile(sys.argv[2], dtype='<f4').astype(np.float64)
tol = float(sys.argv[3])
if a.shape != b.shape:
    print('shape %s vs %s' % (a.shape, b.shape))
    sys.exit(1)
rng = b.max() - b.min()
rel = np.abs(a - b).max() / rng
top = np.argsort(-b)[:2]
same_top = a.argmax() == b.argmax() or (b[top[0]] - b[top[1]]) / rng < tol
print('max|diff|/range = %.3g (range %.3f, tolerance %g), argmax engine %d ref %d'
      % (rel, rng, tol, a.argmax(), b.argmax()))
sys.exit(0 if rel <= tol and same_top else 1)
