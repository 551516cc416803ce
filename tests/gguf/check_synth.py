"""check_synth.py - independent check that `models synth` files decode as
ggml decodes them: a small GGUF parser and numpy dequantizers written from the
format description (facts §1-§2), and a re-implementation of synth's seeded
RNG, so every tensor's dequantized values must match the values that were
generated, within the type's quantization error. A wrong block layout, scale
packing or tensor offset makes the errors as large as the values.

usage: check_synth.py FILE.gguf SEED   (prints one line per tensor, exits 1
on the first mismatch)
"""
import struct
import sys

import numpy as np

BLOCK = {0: (1, 4), 1: (1, 2), 30: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22),
         7: (32, 24), 8: (32, 34), 12: (256, 144), 13: (256, 176), 14: (256, 210)}
NAMES = {0: "F32", 1: "F16", 30: "BF16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1",
         8: "Q8_0", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K"}
# max |error| / max |x| of a block allowed per type (quantization step bounds)
TOL = {0: 0.0, 1: 1e-3, 30: 8e-3, 2: 0.13, 3: 0.07, 6: 0.065, 7: 0.035, 8: 0.0045,
       12: 0.16, 13: 0.08, 14: 0.05}
M64 = (1 << 64) - 1


def parse(path):
    data = open(path, "rb").read()
    pos = 0

    def rd(fmt):
        nonlocal pos
        v = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return v[0] if len(v) == 1 else v

    def rstr():
        n = rd("Q")
        nonlocal pos
        s = data[pos:pos + n]
        pos += n
        return s.decode("utf-8", "replace")

    sizes = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}

    def rval(t):
        if t == 8:
            return rstr()
        if t == 9:
            et, n = rd("I"), rd("Q")
            return [rval(et) for _ in range(n)]
        return rd(sizes[t])

    assert rd("I") == 0x46554747
    version, n_t, n_kv = rd("I"), rd("Q"), rd("Q")
    kv = {}
    for _ in range(n_kv):
        k = rstr()
        kv[k] = rval(rd("I"))
    tensors = []
    for _ in range(n_t):
        name = rstr()
        nd = rd("I")
        ne = [rd("Q") for _ in range(nd)]
        tensors.append((name, ne, rd("I"), rd("Q")))
    align = kv.get("general.alignment", 32)
    start = pos + (align - pos % align) % align
    return data, kv, tensors, start


def f16(b):
    return b.copy().view(np.float16).astype(np.float32)


def deq(t, raw, n):
    bs, ts = BLOCK[t]
    b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, ts)
    if t == 0:
        return b.view(np.float32).reshape(-1)
    if t == 1:
        return f16(b.reshape(-1)).reshape(-1)
    if t == 30:
        return (b.reshape(-1).view(np.uint16).astype(np.uint32) << 16).view(np.float32)
    if t in (2, 3, 6, 7, 8):
        return deq_legacy(t, b)
    return deq_k(t, b)


def nibbles(qs):
    return np.concatenate([qs & 15, qs >> 4], axis=1).astype(np.int32)


def deq_legacy(t, b):
    d = f16(b[:, 0:2]).reshape(-1, 1)
    if t == 8:
        return (d * b[:, 2:34].view(np.int8)).reshape(-1)
    if t == 2:
        return (d * (nibbles(b[:, 2:18]) - 8)).reshape(-1)
    if t == 3:
        return (d * nibbles(b[:, 4:20]) + f16(b[:, 2:4]).reshape(-1, 1)).reshape(-1)
    off = 2 if t == 6 else 4
    qh = b[:, off:off + 4].copy().view(np.uint32).reshape(-1, 1)
    hb = ((qh >> np.arange(32, dtype=np.uint32)) & 1).astype(np.int32) << 4
    q = nibbles(b[:, off + 4:off + 20]) | hb
    if t == 6:
        return (d * (q - 16)).reshape(-1)
    return (d * q + f16(b[:, 2:4]).reshape(-1, 1)).reshape(-1)


def scale_min_k4(s):
    sc = np.zeros((s.shape[0], 8), np.int32)
    m = np.zeros((s.shape[0], 8), np.int32)
    s = s.astype(np.int32)
    for j in range(8):
        if j < 4:
            sc[:, j] = s[:, j] & 63
            m[:, j] = s[:, j + 4] & 63
        else:
            sc[:, j] = (s[:, j + 4] & 15) | ((s[:, j - 4] >> 6) << 4)
            m[:, j] = (s[:, j + 4] >> 4) | ((s[:, j] >> 6) << 4)
    return sc, m


def deq_k(t, b):
    nb = b.shape[0]
    if t == 14:
        ql, qh = b[:, 0:128].astype(np.int32), b[:, 128:192].astype(np.int32)
        sc = b[:, 192:208].view(np.int8).astype(np.float32)
        d = f16(b[:, 208:210]).reshape(-1, 1)
        q = np.zeros((nb, 256), np.int32)
        for h in range(2):
            L, H = ql[:, 64 * h:64 * h + 64], qh[:, 32 * h:32 * h + 32]
            q[:, 128 * h:128 * h + 32] = (L[:, :32] & 15) | ((H & 3) << 4)
            q[:, 128 * h + 32:128 * h + 64] = (L[:, 32:] & 15) | (((H >> 2) & 3) << 4)
            q[:, 128 * h + 64:128 * h + 96] = (L[:, :32] >> 4) | (((H >> 4) & 3) << 4)
            q[:, 128 * h + 96:128 * h + 128] = (L[:, 32:] >> 4) | (((H >> 6) & 3) << 4)
        return (d * np.repeat(sc, 16, axis=1) * (q - 32)).reshape(-1)
    d, dmin = f16(b[:, 0:2]).reshape(-1, 1), f16(b[:, 2:4]).reshape(-1, 1)
    sc, m = scale_min_k4(b[:, 4:16])
    qs = b[:, 16:144] if t == 12 else b[:, 48:176]
    q = np.zeros((nb, 256), np.int32)
    for c in range(4):
        q[:, 64 * c:64 * c + 32] = qs[:, 32 * c:32 * c + 32] & 15
        q[:, 64 * c + 32:64 * c + 64] = qs[:, 32 * c:32 * c + 32] >> 4
        if t == 13:
            qh = b[:, 16:48].astype(np.int32)
            q[:, 64 * c:64 * c + 32] |= ((qh >> (2 * c)) & 1) << 4
            q[:, 64 * c + 32:64 * c + 64] |= ((qh >> (2 * c + 1)) & 1) << 4
    scale = d * np.repeat(sc, 32, axis=1)
    mins = dmin * np.repeat(m, 32, axis=1)
    return (scale * q - mins).reshape(-1)


def splitmix(x):
    x = (x + 0x9E3779B97F4A7C15) & M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def generate(seed, index, name, ne0, rows):
    """The values synth generated for this tensor (float32, rows x ne0)."""
    st = np.array([splitmix(seed ^ splitmix(((index << 40) ^ r) & M64)) | 1 for r in range(rows)],
                  dtype=np.uint64)
    if name.endswith("norm.weight"):
        add, mul = np.float32(1), np.float32(0.1)
    elif name.endswith(".bias"):
        add, mul = np.float32(0), np.float32(0.02)
    elif name in ("token_embd.weight", "position_embd.weight", "token_types.weight"):
        add, mul = np.float32(0), np.float32(0.05)
    else:
        add, mul = np.float32(0), np.float32(1) / np.sqrt(np.float32(ne0))
    out = np.empty((rows, ne0), np.float32)
    with np.errstate(over="ignore"):
        for i in range(ne0):
            st ^= st >> np.uint64(12)
            st ^= st << np.uint64(25)
            st ^= st >> np.uint64(27)
            r = st * np.uint64(0x2545F4914F6CDD1D)
            u = (r >> np.uint64(40)).astype(np.float32) * np.float32(2.0 ** -23) - np.float32(1)
            out[:, i] = add + mul * u
    return out


def main():
    path, seed = sys.argv[1], int(sys.argv[2])
    data, kv, tensors, start = parse(path)
    bad = 0
    for index, (name, ne, t, off) in enumerate(tensors):
        if name == "rope_freqs.weight":
            continue
        ne0, rows = ne[0], int(np.prod(ne[1:])) if len(ne) > 1 else 1
        bs, ts = BLOCK[t]
        nbytes = ne0 // bs * ts * rows
        got = deq(t, data[start + off:start + off + nbytes], ne0 * rows).reshape(rows, ne0)
        want = generate(seed, index, name, ne0, rows)
        blk = 32 if bs == 1 else bs
        err = np.abs(got - want).reshape(rows, -1, blk).max(axis=2)
        amax = np.abs(want).reshape(rows, -1, blk).max(axis=2)
        ratio = float((err / np.maximum(amax, 1e-30)).max())
        ok = ratio <= TOL[t] + 1e-6
        print("%-28s %-5s %s max err/amax %.5f" % (name, NAMES[t], "ok " if ok else "BAD", ratio))
        bad += 0 if ok else 1
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
