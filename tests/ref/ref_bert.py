#!/usr/bin/python3
"""ref_bert.py - NumPy float64 reference for BERT-family embeddings
(bert, nomic-bert; facts §5.4, §5.5), independent of the engine's code.

  ref_bert.py [--act-quant] MODEL OUT.f32 ID... [-- ID...]...
      pooled, L2-normalized embeddings of each id sequence, as f32 rows
  ref_bert.py compare ENGINE.f32 REFERENCE.f32 DIM TOL
      max |engine - reference| as a fraction of the reference range per
      vector; exit 0 when every vector is within TOL

GGUF parsing and dequantization come from reference.py (same directory).
--act-quant rounds every matmul input the way the engine does (Q8_0/Q8_K
for quantized weights). GELU is the exact erf form (HF BERT).
"""
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference import ACT_QUANT, dequant, read_gguf  # noqa: E402

erf = np.vectorize(math.erf)


def layernorm(x, w, b, eps):
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def rope_neox(x, pos, inv_freq):
    """x: [T, heads, D]; rotate pairs (i, i + D/2)."""
    half = x.shape[-1] // 2
    ang = pos[:, None] * inv_freq[None, :]
    c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    a, b = x[..., :half], x[..., half:]
    return np.concatenate([a * c - b * s, a * s + b * c], axis=-1)


def forward(kv, T, ids, act_quant):
    arch = kv['general.architecture']
    hp = lambda k, d=None: kv.get('%s.%s' % (arch, k), d)
    nomic = arch == 'nomic-bert'
    E, L, H = hp('embedding_length'), hp('block_count'), hp('attention.head_count')
    D = E // H
    eps = hp('attention.layer_norm_epsilon', 1e-12)
    W = lambda name: dequant(T[name])

    def mm(name, h):
        t = T[name][1]
        if act_quant and t in ACT_QUANT:
            h = ACT_QUANT[t](h)
        return h @ W(name).T

    n = len(ids)
    pos = np.arange(n, dtype=np.float64)
    x = W('token_embd.weight')[ids] + W('token_types.weight')[0]
    if not nomic:
        x = x + W('position_embd.weight')[:n]
    x = layernorm(x, W('token_embd_norm.weight'), W('token_embd_norm.bias'), eps)
    inv_freq = hp('rope.freq_base', 1000.0) ** (-2.0 * np.arange(D // 2) / D)
    for l in range(L):
        p = 'blk.%d.' % l
        if nomic:
            qkv = mm(p + 'attn_qkv.weight', x)
            q, k, v = qkv[:, :E], qkv[:, E:2 * E], qkv[:, 2 * E:]
            q = rope_neox(q.reshape(n, H, D), pos, inv_freq)
            k = rope_neox(k.reshape(n, H, D), pos, inv_freq)
            v = v.reshape(n, H, D)
        else:
            q = (mm(p + 'attn_q.weight', x) + W(p + 'attn_q.bias')).reshape(n, H, D)
            k = (mm(p + 'attn_k.weight', x) + W(p + 'attn_k.bias')).reshape(n, H, D)
            v = (mm(p + 'attn_v.weight', x) + W(p + 'attn_v.bias')).reshape(n, H, D)
        s = np.einsum('qhd,khd->hqk', q, k) / np.sqrt(D)     # no mask: bidirectional
        s = np.exp(s - s.max(axis=-1, keepdims=True))
        s /= s.sum(axis=-1, keepdims=True)
        att = np.einsum('hqk,khd->qhd', s, v).reshape(n, E)
        a = mm(p + 'attn_output.weight', att)
        if not nomic:
            a = a + W(p + 'attn_output.bias')
        x1 = layernorm(x + a, W(p + 'attn_output_norm.weight'),
                       W(p + 'attn_output_norm.bias'), eps)
        if nomic:
            g = mm(p + 'ffn_gate.weight', x1)
            u = mm(p + 'ffn_up.weight', x1)
            f = mm(p + 'ffn_down.weight', g / (1 + np.exp(-g)) * u)
        else:
            u = mm(p + 'ffn_up.weight', x1) + W(p + 'ffn_up.bias')
            f = mm(p + 'ffn_down.weight', 0.5 * u * (1 + erf(u / math.sqrt(2))))
            f = f + W(p + 'ffn_down.bias')
        x = layernorm(x1 + f, W(p + 'layer_output_norm.weight'),
                      W(p + 'layer_output_norm.bias'), eps)
    v = x[0] if hp('pooling_type', 2 if not nomic else 1) == 2 else x.mean(axis=0)
    return v / np.linalg.norm(v)


def compare(argv):
    a = np.fromfile(argv[2], dtype='<f4').astype(np.float64)
    b = np.fromfile(argv[3], dtype='<f4').astype(np.float64)
    dim, tol = int(argv[4]), float(argv[5])
    if a.shape != b.shape or a.size % dim:
        print('shape %s vs %s' % (a.shape, b.shape))
        return 1
    a, b = a.reshape(-1, dim), b.reshape(-1, dim)
    rel = max(np.abs(x - y).max() / (y.max() - y.min()) for x, y in zip(a, b))
    cos = min(float(x @ y / np.linalg.norm(x) / np.linalg.norm(y)) for x, y in zip(a, b))
    print('%d vectors: max|diff|/range = %.3g (tolerance %g), min cosine %.6f'
          % (len(a), rel, tol, cos))
    return 0 if rel <= tol else 1


def main(argv):
    if len(argv) >= 6 and argv[1] == 'compare':
        return compare(argv)
    act_quant = '--act-quant' in argv
    argv = [a for a in argv if a != '--act-quant']
    if len(argv) < 4:
        raise SystemExit(__doc__)
    kv, T = read_gguf(argv[1])
    seqs, cur = [], []
    for a in argv[3:]:
        if a == '--':
            seqs.append(cur)
            cur = []
        else:
            cur.append(int(a))
    seqs.append(cur)
    out = np.stack([forward(kv, T, s, act_quant) for s in seqs])
    out.astype('<f4').tofile(argv[2])
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
