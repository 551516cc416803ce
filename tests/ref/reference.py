#!/usr/bin/python3
"""reference.py - an independent NumPy reference of the Llama 3.x forward pass.

Reads a GGUF file with its own parser and dequantizers (nothing shared with
the C engine), runs the prompt token ids given on the command line through
the model in float64, and writes the logits of the last position as
little-endian float32 to the output file.

    reference.py [--act-quant] [--f32-kv] MODEL.gguf OUT.f32 ID [ID ...]

Math (facts §5.2): x = token_embd[t]; per layer: h = rmsnorm(x)*attn_norm;
q,k,v = Wq h, Wk h, Wv h; RoPE on adjacent pairs (2i, 2i+1) with angle
pos * base^(-2i/D) / rope_freqs[i]; causal GQA softmax attention with scale
1/sqrt(D); x += Wo att; h = rmsnorm(x)*ffn_norm; x += Wd (silu(Wg h) * Wu h);
logits = Wout (rmsnorm(x)*output_norm), Wout = output or token_embd (tied).
The engine keeps K and V in an F16 cache, so K (after RoPE) and V are
rounded to float16 here too (--f32-kv turns that off). With --act-quant the
input of every quantized matmul is first rounded the way the engine feeds
its integer dot products (Q8_0 per 32 with an f16 scale for Q4_0/Q5_0/Q8_0
weights, Q8_1 for Q4_1/Q5_1, Q8_K per 256 with an f32 scale for k-quants),
which isolates everything else the engine does.
"""
import struct
import sys

import numpy as np

# ---- GGUF container -------------------------------------------------------

SCALAR = {0: '<B', 1: '<b', 2: '<H', 3: '<h', 4: '<I', 5: '<i', 6: '<f',
          7: '<?', 10: '<Q', 11: '<q', 12: '<d'}

# type id -> (elements per block, bytes per block)
BLOCK = {0: (1, 4), 1: (1, 2), 30: (1, 2), 2: (32, 18), 3: (32, 20),
         6: (32, 22), 7: (32, 24), 8: (32, 34), 12: (256, 144),
         13: (256, 176), 14: (256, 210)}


class Reader:
    def __init__(self, data):
        self.d = data
        self.o = 0

    def take(self, fmt):
        v = struct.unpack_from(fmt, self.d, self.o)[0]
        self.o += struct.calcsize(fmt)
        return v

    def string(self):
        n = self.take('<Q')
        s = bytes(self.d[self.o:self.o + n])
        self.o += n
        return s.decode('utf-8', errors='replace')

    def value(self, t):
        if t == 8:
            return self.string()
        if t == 9:
            et = self.take('<I')
            n = self.take('<Q')
            return [self.value(et) for _ in range(n)]
        return self.take(SCALAR[t])


def read_gguf(path):
    data = memoryview(open(path, 'rb').read())
    r = Reader(data)
    if r.take('<I') != 0x46554747:
        raise SystemExit(path + ': not a GGUF file')
    version = r.take('<I')
    if version not in (2, 3):
        raise SystemExit('%s: GGUF version %d' % (path, version))
    n_tensors = r.take('<Q')
    n_kv = r.take('<Q')
    kv = {}
    for _ in range(n_kv):
        key = r.string()
        kv[key] = r.value(r.take('<I'))
    infos = []
    for _ in range(n_tensors):
        name = r.string()
        nd = r.take('<I')
        ne = [r.take('<Q') for _ in range(nd)]
        t = r.take('<I')
        off = r.take('<Q')
        infos.append((name, ne, t, off))
    align = kv.get('general.alignment', 32)
    start = (r.o + align - 1) // align * align
    tensors = {}
    for name, ne, t, off in infos:
        tensors[name] = (ne, t, data[start + off:])
    return kv, tensors

# ---- dequantization (facts §2) ------------------------------------------------


def f16(b):
    return np.frombuffer(b.tobytes(), dtype='<f2').astype(np.float64)


def blocks(raw, t, n):
    per, size = BLOCK[t]
    nb = n // per
    return np.frombuffer(raw[:nb * size], dtype=np.uint8).reshape(nb, size)


def dq_legacy(b, t):
    d = f16(b[:, 0:2].copy())[:, None]
    if t == 8:
        return d * b[:, 2:34].view(np.int8).astype(np.float64)
    m = f16(b[:, 2:4].copy())[:, None] if t in (3, 7) else None
    qs = b[:, {2: 2, 3: 4, 6: 6, 7: 8}[t]:]
    q = np.concatenate([qs & 15, qs >> 4], axis=1).astype(np.int64)
    if t in (6, 7):
        qhb = b[:, {6: 2, 7: 4}[t]:][:, :4].copy()
        h = np.unpackbits(qhb, axis=1, bitorder='little').astype(np.int64)
        q = q | (h << 4)
    if t == 2:
        return d * (q - 8)
    if t == 6:
        return d * (q - 16)
    return d * q + m


def k_scales(s):
    s = s.astype(np.int64)
    sc = np.zeros((s.shape[0], 8), np.int64)
    mn = np.zeros((s.shape[0], 8), np.int64)
    for j in range(4):
        sc[:, j] = s[:, j] & 63
        mn[:, j] = s[:, j + 4] & 63
    for j in range(4, 8):
        sc[:, j] = (s[:, j + 4] & 15) | ((s[:, j - 4] >> 6) << 4)
        mn[:, j] = (s[:, j + 4] >> 4) | ((s[:, j] >> 6) << 4)
    return sc, mn


def dq_q45k(b, t):
    d = f16(b[:, 0:2].copy())[:, None]
    dmin = f16(b[:, 2:4].copy())[:, None]
    sc, mn = k_scales(b[:, 4:16])
    qh = b[:, 16:48].astype(np.int64) if t == 13 else None
    qs = b[:, 48:176] if t == 13 else b[:, 16:144]
    out = np.zeros((b.shape[0], 256))
    for c in range(4):
        q = qs[:, 32 * c:32 * c + 32].astype(np.int64)
        lo, hi = q & 15, q >> 4
        if qh is not None:
            lo = lo + ((qh >> (2 * c)) & 1) * 16
            hi = hi + ((qh >> (2 * c + 1)) & 1) * 16
        out[:, 64 * c:64 * c + 32] = d * sc[:, 2 * c:2 * c + 1] * lo - dmin * mn[:, 2 * c:2 * c + 1]
        out[:, 64 * c + 32:64 * c + 64] = d * sc[:, 2 * c + 1:2 * c + 2] * hi - dmin * mn[:, 2 * c + 1:2 * c + 2]
    return out


def dq_q6k(b):
    ql = b[:, 0:128].astype(np.int64)
    qh = b[:, 128:192].astype(np.int64)
    sc = b[:, 192:208].view(np.int8).astype(np.float64)
    d = f16(b[:, 208:210].copy())[:, None]
    q = np.zeros((b.shape[0], 256), np.int64)
    for h in range(2):
        L, H = ql[:, 64 * h:64 * h + 64], qh[:, 32 * h:32 * h + 32]
        base = 128 * h
        q[:, base:base + 32] = (L[:, :32] & 15) | (((H >> 0) & 3) << 4)
        q[:, base + 32:base + 64] = (L[:, 32:] & 15) | (((H >> 2) & 3) << 4)
        q[:, base + 64:base + 96] = (L[:, :32] >> 4) | (((H >> 4) & 3) << 4)
        q[:, base + 96:base + 128] = (L[:, 32:] >> 4) | (((H >> 6) & 3) << 4)
    scale = np.repeat(sc, 16, axis=1)
    return d * scale * (q - 32)


def dequant(tensor):
    ne, t, raw = tensor
    n = int(np.prod(ne))
    if t == 0:
        x = np.frombuffer(raw[:4 * n], dtype='<f4').astype(np.float64)
    elif t == 1:
        x = np.frombuffer(raw[:2 * n], dtype='<f2').astype(np.float64)
    elif t == 30:
        u = np.frombuffer(raw[:2 * n], dtype='<u2').astype(np.uint32) << 16
        x = u.view(np.float32).astype(np.float64)
    elif t in (2, 3, 6, 7, 8):
        x = dq_legacy(blocks(raw, t, n), t).reshape(-1)
    elif t in (12, 13):
        x = dq_q45k(blocks(raw, t, n), t).reshape(-1)
    elif t == 14:
        x = dq_q6k(blocks(raw, t, n)).reshape(-1)
    else:
        raise SystemExit('tensor type %d not supported by the reference' % t)
    return x.reshape(list(reversed(ne)))   # numpy order: [rows, ne0]

# ---- activation quantization (facts §2.2) ----------------------------------------
# The engine rounds in float32: d = amax / 127, id = 1 / d, q = nearest(x * id)
# (Q8_0), or iscale = -127 / max, q = nearest(iscale * x) (Q8_K), ties to even.
# The same float32 steps here: a float64 product differs at exact ties, which
# f16-valued activations (attention over one key returns an f16 V row) hit,
# and one flipped rounding moves a random 6-layer Gemma's logits by ~1%.

F32 = np.float32


def act_q8_0(x):
    b = x.reshape(-1, 32).astype(F32)
    d = np.abs(b).max(axis=1, keepdims=True) / F32(127)
    idv = np.where(d > 0, F32(1) / np.where(d > 0, d, F32(1)), F32(0)).astype(F32)
    q = np.round(b * idv).astype(np.float64)
    d16 = d.astype(np.float16).astype(np.float64)
    return (q * d16).reshape(x.shape)


def act_q8_k(x):
    b = x.reshape(-1, 256).astype(F32)
    idx = np.abs(b).argmax(axis=1)
    mx = b[np.arange(b.shape[0]), idx][:, None]
    iscale = np.where(mx != 0, F32(-127) / np.where(mx != 0, mx, F32(1)), F32(0)).astype(F32)
    q = np.minimum(np.round(iscale * b), 127).astype(np.float64)
    d = np.where(iscale != 0, F32(1) / np.where(iscale != 0, iscale, F32(1)), F32(0))
    return (q * d.astype(F32).astype(np.float64)).reshape(x.shape)


ACT_QUANT = {2: act_q8_0, 6: act_q8_0, 8: act_q8_0, 3: act_q8_0, 7: act_q8_0,
             12: act_q8_k, 13: act_q8_k, 14: act_q8_k}

# ---- the forward pass ---------------------------------------------------------


def rmsnorm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def rope(x, pos, inv_freq):
    """x: [T, heads, D]; rotate adjacent pairs (2i, 2i+1)."""
    ang = pos[:, None] * inv_freq[None, :]            # [T, D/2]
    c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    a, b = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = a * c - b * s
    out[..., 1::2] = a * s + b * c
    return out


def rope_neox(x, pos, inv_freq):
    """x: [T, heads, D]; rotate pairs (i, i + D/2) (Gemma, nomic-bert)."""
    half = x.shape[-1] // 2
    ang = pos[:, None] * inv_freq[None, :]
    c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    a, b = x[..., :half], x[..., half:]
    return np.concatenate([a * c - b * s, a * s + b * c], axis=-1)


def attention(q, k, v, scale, mask):
    """softmax(scale q.k + mask) v per head; q [n, H, D], k/v [m, H, D]."""
    s = np.einsum('qhd,khd->hqk', q, k) * scale + mask
    s = np.exp(s - s.max(axis=-1, keepdims=True))
    s /= s.sum(axis=-1, keepdims=True)
    return np.einsum('hqk,khd->qhd', s, v).reshape(q.shape[0], -1)


def matmul(T, name, h, act_quant):
    """h @ W.T for the weight `name`, with the engine's input rounding."""
    t = T[name][1]
    if act_quant and t in ACT_QUANT:
        h = ACT_QUANT[t](h)
    return h @ dequant(T[name]).T


def forward(kv, T, ids, f16_kv=True, act_quant=False):
    arch = kv['general.architecture']
    hp = lambda k, d=None: kv.get('%s.%s' % (arch, k), d)
    E, L = hp('embedding_length'), hp('block_count')
    H = hp('attention.head_count')
    Hkv = hp('attention.head_count_kv', H)
    D = hp('attention.key_length', E // H)
    eps = hp('attention.layer_norm_rms_epsilon', 1e-5)
    base = hp('rope.freq_base', 10000.0)
    W = lambda name: dequant(T[name])
    inv_freq = base ** (-2.0 * np.arange(D // 2) / D)
    if 'rope_freqs.weight' in T:
        inv_freq = inv_freq / W('rope_freqs.weight')
    n = len(ids)
    pos = np.arange(n, dtype=np.float64)
    x = W('token_embd.weight')[ids]                   # [n, E]
    mask = np.triu(np.full((n, n), -np.inf), 1)
    for l in range(L):
        p = 'blk.%d.' % l
        h = rmsnorm(x, W(p + 'attn_norm.weight'), eps)
        q = matmul(T, p + 'attn_q.weight', h, act_quant).reshape(n, H, D)
        k = matmul(T, p + 'attn_k.weight', h, act_quant).reshape(n, Hkv, D)
        v = matmul(T, p + 'attn_v.weight', h, act_quant).reshape(n, Hkv, D)
        q, k = rope(q, pos, inv_freq), rope(k, pos, inv_freq)
        if f16_kv:
            k = k.astype(np.float16).astype(np.float64)
            v = v.astype(np.float16).astype(np.float64)
        k = np.repeat(k, H // Hkv, axis=1)            # GQA: head h uses h // (H/Hkv)
        v = np.repeat(v, H // Hkv, axis=1)
        att = attention(q, k, v, 1 / np.sqrt(D), mask)
        x = x + matmul(T, p + 'attn_output.weight', att, act_quant)
        h = rmsnorm(x, W(p + 'ffn_norm.weight'), eps)
        g = matmul(T, p + 'ffn_gate.weight', h, act_quant)
        u = matmul(T, p + 'ffn_up.weight', h, act_quant)
        x = x + matmul(T, p + 'ffn_down.weight', g / (1 + np.exp(-g)) * u, act_quant)
    out = 'output.weight' if 'output.weight' in T else 'token_embd.weight'
    h = rmsnorm(x[-1:], W('output_norm.weight'), eps)
    return matmul(T, out, h, act_quant)[0]


class Args:
    """Command line of the reference scripts: [--act-quant] [--f32-kv] MODEL
    OUT.f32 ID... [-- ID...]... (f16_kv unless --f32-kv)."""

    def __init__(self, argv, doc):
        self.act_quant = '--act-quant' in argv
        self.f16_kv = '--f32-kv' not in argv
        argv = [a for a in argv if a not in ('--f32-kv', '--act-quant')]
        if len(argv) < 4:
            raise SystemExit(doc)
        self.kv, self.T = read_gguf(argv[1])
        self.out = argv[2]
        self.seqs = [[]]
        for a in argv[3:]:
            if a == '--':
                self.seqs.append([])
            else:
                self.seqs[-1].append(int(a))

    def write(self, rows):
        np.stack(rows).astype('<f4').tofile(self.out)


if __name__ == '__main__':
    a = Args(sys.argv, __doc__)
    a.write([forward(a.kv, a.T, a.seqs[0], a.f16_kv, a.act_quant)])
