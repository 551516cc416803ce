#!/usr/bin/python3
"""ref_gemma3.py - NumPy float64 reference for Gemma 3 text logits (facts
§3.3, §5.3), independent of the engine's code.

  ref_gemma3.py [--act-quant] [--f32-kv] MODEL OUT.f32 ID...
      the last position's logits as f32

GGUF parsing, dequantization and activation rounding come from reference.py.
"""
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference import Args, attention, dequant, matmul, rmsnorm, rope_neox  # noqa: E402


def gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * x * (1 + 0.044715 * x * x)))


def forward(kv, T, ids, f16_kv, act_quant):
    hp = lambda k, d=None: kv.get('gemma3.%s' % k, d)
    E, L = hp('embedding_length'), hp('block_count')
    H = hp('attention.head_count')
    Hkv = hp('attention.head_count_kv', H)
    D = hp('attention.key_length', E // H)
    eps = hp('attention.layer_norm_rms_epsilon', 1e-6)
    window = hp('attention.sliding_window')
    factor = hp('rope.scaling.factor', 1.0) or 1.0
    # float32 inv_freq as in the engine (angles pos * inv_freq in float64)
    inv_g = (hp('rope.freq_base', 1e6) ** (-2.0 * np.arange(D // 2) / D) / factor).astype(np.float32).astype(np.float64)
    inv_l = (hp('rope.freq_base_swa', 10000.0) ** (-2.0 * np.arange(D // 2) / D)).astype(np.float32).astype(np.float64)
    scale = 1 / math.sqrt(E / H) if L == 62 else 1 / math.sqrt(D)
    W = lambda name: dequant(T[name])
    mm = lambda name, h: matmul(T, name, h, act_quant)

    n = len(ids)
    pos = np.arange(n, dtype=np.float64)
    x = W('token_embd.weight')[ids] * np.float64(np.float32(math.sqrt(E)))
    causal = np.triu(np.full((n, n), -np.inf), 1)
    dist = pos[:, None] - pos[None, :]
    local = np.where(dist >= window, -np.inf, 0.0) + causal
    for l in range(L):
        p = 'blk.%d.' % l
        glob = (l + 1) % 6 == 0
        h = rmsnorm(x, W(p + 'attn_norm.weight'), eps)
        q = mm(p + 'attn_q.weight', h).reshape(n, H, D)
        k = mm(p + 'attn_k.weight', h).reshape(n, Hkv, D)
        v = mm(p + 'attn_v.weight', h).reshape(n, Hkv, D)
        q = rmsnorm(q, W(p + 'attn_q_norm.weight'), eps)
        k = rmsnorm(k, W(p + 'attn_k_norm.weight'), eps)
        inv = inv_g if glob else inv_l
        q, k = rope_neox(q, pos, inv), rope_neox(k, pos, inv)
        if f16_kv:
            k = k.astype(np.float16).astype(np.float64)
            v = v.astype(np.float16).astype(np.float64)
        k = np.repeat(k, H // Hkv, axis=1)
        v = np.repeat(v, H // Hkv, axis=1)
        att = attention(q, k, v, scale, causal if glob else local)
        a = mm(p + 'attn_output.weight', att)
        x = x + rmsnorm(a, W(p + 'post_attention_norm.weight'), eps)
        h = rmsnorm(x, W(p + 'ffn_norm.weight'), eps)
        f = mm(p + 'ffn_down.weight', gelu_tanh(mm(p + 'ffn_gate.weight', h)) *
               mm(p + 'ffn_up.weight', h))
        x = x + rmsnorm(f, W(p + 'post_ffw_norm.weight'), eps)
    out = 'output.weight' if 'output.weight' in T else 'token_embd.weight'
    h = rmsnorm(x[-1:], W('output_norm.weight'), eps)
    return mm(out, h)[0]


if __name__ == '__main__':
    a = Args(sys.argv, __doc__)
    a.write([forward(a.kv, a.T, a.seqs[0], a.f16_kv, a.act_quant)])
