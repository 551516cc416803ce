#!/usr/bin/python3
"""ref_bert.py - NumPy float64 reference for BERT-family embeddings
(bert, nomic-bert; facts §5.4, §5.5), independent of the engine's code.

  ref_bert.py [--act-quant] MODEL OUT.f32 ID... [-- ID...]...
      pooled, L2-normalized embeddings of each id sequence, as f32 rows

GGUF parsing, dequantization, attention and the command line come from
reference.py (same directory); compare.py ... DIM compares per vector.
--act-quant rounds every matmul input the way the engine does (Q8_0/Q8_K
for quantized weights). GELU is the exact erf form (HF BERT).
"""
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference import Args, attention, dequant, matmul, rope_neox  # noqa: E402

erf = np.vectorize(math.erf)


def layernorm(x, w, b, eps):
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def forward(kv, T, ids, act_quant):
    arch = kv['general.architecture']
    hp = lambda k, d=None: kv.get('%s.%s' % (arch, k), d)
    nomic = arch == 'nomic-bert'
    E, L, H = hp('embedding_length'), hp('block_count'), hp('attention.head_count')
    D = E // H
    eps = hp('attention.layer_norm_epsilon', 1e-12)
    W = lambda name: dequant(T[name])

    mm = lambda name, h: matmul(T, name, h, act_quant)

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
        att = attention(q, k, v, 1 / np.sqrt(D), 0.0)    # no mask: bidirectional
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


if __name__ == '__main__':
    a = Args(sys.argv, __doc__)
    a.write([forward(a.kv, a.T, ids, a.act_quant) for ids in a.seqs])
