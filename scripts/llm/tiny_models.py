#!/usr/bin/env python3
"""Tiny random GGUF models and an independent NumPy reference forward pass.

Usage: tiny_models.py --out DIR [--bench-05b]

Writes, for each architecture (llama, qwen2, qwen3, qwen3moe), the same random weights as
F32, F16, BF16 and Q8_0 GGUF files, and the reference logits of a fixed token sequence
(a prefill of 7 tokens, then 5 decode steps) to DIR:

  <arch>-<type>.gguf        the model
  <case>.f32                expected logits, float32 little-endian [12][n_vocab]
  cases.txt                 one case a line:
      NAME MODEL TOP_P EXPERTS_PER_TOKEN TOKENS LOGITS REF_F32_LOGITS
    TOP_P 0 = top-k as trained; EXPERTS_PER_TOKEN is the mean number of experts the
    reference ran per token and MoE layer (-1 for dense models); TOKENS comma-separated.
  bad-*.gguf                files the loader must refuse (unknown architecture, a wrong
                            shape, an unsupported tensor type, a missing tensor)

The reference follows the models' published equations (Hugging Face modeling code), not
certa's C: float64 throughout, rotate_half rope on *un-permuted* llama Q/K weights (GGUF's
llama Q/K rows are permuted by llama.cpp's converter so that it can rotate adjacent pairs),
repeat_interleave for grouped KV heads, softmax router with top-k renormalized (Qwen3-MoE
norm_topk_prob).  Quantized variants run the reference on the dequantized stored weights, so
their tolerance is the engine's arithmetic; cases.txt also names the F32 reference, to
measure what quantization itself costs.

--bench-05b additionally writes bench-05b.gguf: a qwen2-shaped ~0.5B random Q8_0 model
(24 layers, 896 wide, 14 heads, 2 KV heads, FFN 4864, vocab 151936) for bench/bench-llm.c.

Exits 77 when NumPy is missing (tests skip on it).
"""
import argparse
import os
import struct
import sys

try:
    import numpy as np
except ImportError:
    print("tiny_models.py: python3-numpy is not installed", file=sys.stderr)
    sys.exit(77)

# ---- GGUF writing ---------------------------------------------------------------------------

T_F32, T_F16, T_Q5_1, T_Q8_0, T_Q4_K, T_Q6_K, T_BF16 = 0, 1, 7, 8, 12, 14, 30
V_U32, V_F32, V_STRING, V_ARRAY = 4, 6, 8, 9
ALIGN = 32


def gguf_str(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def gguf_kv(key, val):
    out = gguf_str(key)
    if isinstance(val, str):
        return out + struct.pack("<I", V_STRING) + gguf_str(val)
    if isinstance(val, float):
        return out + struct.pack("<If", V_F32, val)
    return out + struct.pack("<II", V_U32, val)


def write_gguf(path, kvs, tensors):
    """tensors: list of (name, ne list (ne[0] innermost), ggml type, raw bytes)."""
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs))
    head += b"".join(gguf_kv(k, v) for k, v in kvs)
    data = b""
    for name, ne, ttype, raw in tensors:
        head += gguf_str(name) + struct.pack("<I", len(ne))
        head += b"".join(struct.pack("<Q", n) for n in ne)
        head += struct.pack("<IQ", ttype, len(data))
        data += raw + b"\0" * ((-len(raw)) % ALIGN)
    head += b"\0" * ((-len(head)) % ALIGN)
    with open(path, "wb") as f:
        f.write(head)
        f.write(data)


def encode(w, ttype):
    """Stored bytes of a float array (rows along the last axis) and what they decode to."""
    w = np.asarray(w, dtype=np.float64)
    if ttype == T_F32:
        a = w.astype("<f4")
        return a.tobytes(), a.astype(np.float64)
    if ttype == T_F16:
        a = w.astype("<f2")
        return a.tobytes(), a.astype(np.float64)
    if ttype == T_BF16:
        b = w.astype("<f4").view("<u4").astype(np.uint64)
        b = ((b + 0x7FFF + ((b >> 16) & 1)) >> 16).astype("<u2")   # round to nearest even
        return b.tobytes(), (b.astype("<u4") << 16).view("<f4").astype(np.float64)
    if ttype == T_Q8_0:                      # blocks of 32: f16 scale d, int8 q; x = d * q
        blocks = w.reshape(-1, 32)
        amax = np.abs(blocks).max(axis=1)
        d = (amax / 127.0).astype("<f2")
        dd = d.astype(np.float64)
        inv = np.divide(1.0, dd, out=np.zeros_like(dd), where=dd != 0)
        q = np.clip(np.rint(blocks * inv[:, None]), -127, 127).astype("i1")
        raw = b"".join(d[i].tobytes() + q[i].tobytes() for i in range(len(d)))
        return raw, (dd[:, None] * q).reshape(w.shape)
    raise ValueError(ttype)


# ---- the models -----------------------------------------------------------------------------

ARCHS = {
    #            rope base, qkv bias, qk norm, moe,   tied output, head_dim, rope freqs
    "llama":    dict(base=10000.0, bias=False, qk_norm=False, moe=False, tied=False, hd=16,
                     freqs=True),
    "qwen2":    dict(base=1000000.0, bias=True, qk_norm=False, moe=False, tied=True, hd=16,
                     freqs=False),
    "qwen3":    dict(base=1000000.0, bias=False, qk_norm=True, moe=False, tied=False, hd=32,
                     freqs=False),
    "qwen3moe": dict(base=1000000.0, bias=False, qk_norm=True, moe=True, tied=False, hd=16,
                     freqs=False),
}
DIMS = dict(n_layer=2, n_embd=64, n_head=4, n_head_kv=2, n_ff=128, n_vocab=300, n_ctx=64,
            n_expert=4, n_expert_used=2, n_ff_exp=32, eps=1e-5)
TYPES = {"f32": T_F32, "f16": T_F16, "bf16": T_BF16, "q8_0": T_Q8_0}
TOKENS = [1, 17, 250, 42, 299, 0, 123, 77, 5, 201, 64, 150]
N_PREFILL = 7


def random_weights(arch, rng, d=DIMS):
    a = ARCHS[arch]
    E, hd, H, K = d["n_embd"], a["hd"], d["n_head"], d["n_head_kv"]
    mat = lambda rows, cols: rng.standard_normal((rows, cols)) / np.sqrt(cols)
    norm = lambda n: 1.0 + 0.1 * rng.standard_normal(n)
    w = {"token_embd.weight": rng.standard_normal((d["n_vocab"], E)),
         "output_norm.weight": norm(E)}
    if not a["tied"]:
        w["output.weight"] = mat(d["n_vocab"], E)
    if a["freqs"]:
        w["rope_freqs.weight"] = rng.uniform(1.0, 8.0, hd // 2)
    for i in range(d["n_layer"]):
        p = "blk.%d." % i
        w[p + "attn_norm.weight"] = norm(E)
        w[p + "ffn_norm.weight"] = norm(E)
        w[p + "attn_q.weight"] = mat(H * hd, E)
        w[p + "attn_k.weight"] = mat(K * hd, E)
        w[p + "attn_v.weight"] = mat(K * hd, E)
        w[p + "attn_output.weight"] = mat(E, H * hd)
        if a["bias"]:
            w[p + "attn_q.bias"] = 0.5 * rng.standard_normal(H * hd)
            w[p + "attn_k.bias"] = 0.5 * rng.standard_normal(K * hd)
            w[p + "attn_v.bias"] = 0.5 * rng.standard_normal(K * hd)
        if a["qk_norm"]:
            w[p + "attn_q_norm.weight"] = norm(hd)
            w[p + "attn_k_norm.weight"] = norm(hd)
        if a["moe"]:
            X, F = d["n_expert"], d["n_ff_exp"]
            w[p + "ffn_gate_inp.weight"] = 2.0 * mat(X, E)
            w[p + "ffn_gate_exps.weight"] = np.stack([mat(F, E) for _ in range(X)])
            w[p + "ffn_up_exps.weight"] = np.stack([mat(F, E) for _ in range(X)])
            w[p + "ffn_down_exps.weight"] = np.stack([mat(E, F) for _ in range(X)])
        else:
            w[p + "ffn_gate.weight"] = mat(d["n_ff"], E)
            w[p + "ffn_up.weight"] = mat(d["n_ff"], E)
            w[p + "ffn_down.weight"] = mat(E, d["n_ff"])
    return w


def metadata(arch, d=DIMS, name=None):
    a = ARCHS[arch]
    kv = [("general.architecture", arch), ("general.name", name or "tiny-" + arch),
          (arch + ".block_count", d["n_layer"]), (arch + ".embedding_length", d["n_embd"]),
          (arch + ".attention.head_count", d["n_head"]),
          (arch + ".attention.head_count_kv", d["n_head_kv"]),
          (arch + ".attention.key_length", a["hd"]),
          (arch + ".attention.value_length", a["hd"]),
          (arch + ".rope.freq_base", a["base"]),
          (arch + ".attention.layer_norm_rms_epsilon", d["eps"]),
          (arch + ".context_length", d["n_ctx"])]
    if a["moe"]:
        kv += [(arch + ".expert_count", d["n_expert"]),
               (arch + ".expert_used_count", d["n_expert_used"]),
               (arch + ".expert_feed_forward_length", d["n_ff_exp"])]
    else:
        kv.append((arch + ".feed_forward_length", d["n_ff"]))
    return kv


def write_model(path, arch, w, ttype, d=DIMS, name=None, override=None):
    """Writes the model; returns the weights as stored (decoded)."""
    stored, tensors = {}, []
    for name_, arr in w.items():
        t = ttype if arr.ndim >= 2 and "gate_inp" not in name_ else T_F32
        if override and name_ in override:
            t = override[name_]
        raw, dec = encode(arr, t)
        stored[name_] = dec
        tensors.append((name_, list(reversed(arr.shape)), t, raw))
    write_gguf(path, metadata(arch, d, name), tensors)
    return stored


# ---- the reference --------------------------------------------------------------------------

def rms_norm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def rotate_half(x):
    h = x.shape[-1] // 2
    return np.concatenate([-x[..., h:], x[..., :h]], axis=-1)


def unpermute(w, n_head):
    """Inverse of llama.cpp's convert_hf_to_gguf permute(): GGUF llama Q/K rows -> HF rows."""
    rows, cols = w.shape
    return w.reshape(n_head, rows // n_head // 2, 2, cols).swapaxes(1, 2).reshape(rows, cols)


def silu(x):
    return x / (1.0 + np.exp(-x))


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def route(probs, top_k, top_p, cap):
    """Experts in descending probability: top_k, or until cumulative >= top_p (1..cap)."""
    order = sorted(range(len(probs)), key=lambda e: (-probs[e], e))
    if top_p <= 0:
        return order[:top_k]
    chosen, cum = [], 0.0
    for e in order[:cap]:
        chosen.append(e)
        cum += probs[e]
        if cum >= top_p:
            break
    return chosen


def reference(arch, w, tokens, top_p=0.0, d=DIMS, margins=None):
    """All-position logits [T][vocab] of tokens (a causal forward over the whole sequence,
    which is what a prefill followed by decodes must equal) and mean experts per token."""
    a = ARCHS[arch]
    E, hd, H, K = d["n_embd"], a["hd"], d["n_head"], d["n_head_kv"]
    T = len(tokens)
    pos = np.arange(T, dtype=np.float64)
    inv_freq = 1.0 / (a["base"] ** (np.arange(0, hd, 2, dtype=np.float64) / hd))
    if a["freqs"]:
        inv_freq = inv_freq / w["rope_freqs.weight"]
    ang = np.outer(pos, inv_freq)
    cos = np.cos(np.concatenate([ang, ang], axis=-1))[:, None, :]   # [T, 1, hd]
    sin = np.sin(np.concatenate([ang, ang], axis=-1))[:, None, :]
    mask = np.triu(np.full((T, T), -np.inf), 1)
    x = w["token_embd.weight"][tokens]
    uses = 0
    for i in range(d["n_layer"]):
        p = "blk.%d." % i
        wq, wk = w[p + "attn_q.weight"], w[p + "attn_k.weight"]
        if arch == "llama":
            wq, wk = unpermute(wq, H), unpermute(wk, K)
        h = rms_norm(x, w[p + "attn_norm.weight"], d["eps"])
        q, k, v = h @ wq.T, h @ wk.T, h @ w[p + "attn_v.weight"].T
        if a["bias"]:
            q = q + w[p + "attn_q.bias"]
            k = k + w[p + "attn_k.bias"]
            v = v + w[p + "attn_v.bias"]
        q, k, v = q.reshape(T, H, hd), k.reshape(T, K, hd), v.reshape(T, K, hd)
        if a["qk_norm"]:
            q = rms_norm(q, w[p + "attn_q_norm.weight"], d["eps"])
            k = rms_norm(k, w[p + "attn_k_norm.weight"], d["eps"])
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = np.repeat(k, H // K, axis=1)
        v = np.repeat(v, H // K, axis=1)
        att = np.einsum("thd,shd->hts", q, k) / np.sqrt(hd) + mask
        o = np.einsum("hts,shd->thd", softmax(att), v).reshape(T, H * hd)
        x = x + o @ w[p + "attn_output.weight"].T
        h = rms_norm(x, w[p + "ffn_norm.weight"], d["eps"])
        if a["moe"]:
            probs = softmax(h @ w[p + "ffn_gate_inp.weight"].T)
            out = np.zeros_like(x)
            for t in range(T):
                chosen = route(probs[t], d["n_expert_used"], top_p, d["n_expert"])
                uses += len(chosen)
                if margins is not None and top_p > 0:
                    cum = np.cumsum(sorted(probs[t], reverse=True))
                    margins.append(np.abs(cum - top_p).min())
                wts = probs[t][chosen] / probs[t][chosen].sum()   # norm_topk_prob
                for e, wt in zip(chosen, wts):
                    g = w[p + "ffn_gate_exps.weight"][e] @ h[t]
                    u = w[p + "ffn_up_exps.weight"][e] @ h[t]
                    out[t] += wt * (w[p + "ffn_down_exps.weight"][e] @ (silu(g) * u))
            x = x + out
        else:
            x = x + (silu(h @ w[p + "ffn_gate.weight"].T) * (h @ w[p + "ffn_up.weight"].T)) \
                @ w[p + "ffn_down.weight"].T
    out_w = w["token_embd.weight"] if a["tied"] else w["output.weight"]
    logits = rms_norm(x, w["output_norm.weight"], d["eps"]) @ out_w.T
    experts = uses / (T * d["n_layer"]) if a["moe"] else -1.0
    return logits, experts


# ---- K-quants: random blocks, decoded as ggml's dequantize_row_q4_K / _q6_K define them ----

def f16_bytes(rng, n, lo, hi):
    return rng.uniform(lo, hi, n).astype("<f2").view(np.uint8).reshape(n, 2)


def q4_k_blocks(rng, nblk):
    """Blocks of 256 in 144 bytes: f16 d, f16 dmin, 12 bytes of 6-bit scales/mins, 128 nibbles."""
    b = rng.integers(0, 256, (nblk, 144), dtype=np.uint8)
    b[:, 0:2] = f16_bytes(rng, nblk, 0.001, 0.01)
    b[:, 2:4] = f16_bytes(rng, nblk, 0.001, 0.01)
    d = b[:, 0:2].copy().view("<f2").astype(np.float64)
    dmin = b[:, 2:4].copy().view("<f2").astype(np.float64)
    sc, qs = b[:, 4:16].astype(np.int64), b[:, 16:144].astype(np.int64)
    s = np.zeros((nblk, 8), np.int64)
    m = np.zeros((nblk, 8), np.int64)
    s[:, :4], m[:, :4] = sc[:, 0:4] & 63, sc[:, 4:8] & 63
    s[:, 4:] = (sc[:, 8:12] & 0xF) | ((sc[:, 0:4] >> 6) << 4)
    m[:, 4:] = (sc[:, 8:12] >> 4) | ((sc[:, 4:8] >> 6) << 4)
    y = np.zeros((nblk, 256))
    for g in range(4):
        q = qs[:, 32 * g:32 * g + 32]
        y[:, 64 * g:64 * g + 32] = d * s[:, 2 * g:2 * g + 1] * (q & 0xF) - dmin * m[:, 2 * g:2 * g + 1]
        y[:, 64 * g + 32:64 * g + 64] = (d * s[:, 2 * g + 1:2 * g + 2] * (q >> 4)
                                         - dmin * m[:, 2 * g + 1:2 * g + 2])
    return b.tobytes(), y


def q6_k_blocks(rng, nblk):
    """Blocks of 256 in 210 bytes: 128 low nibbles, 64 bytes of 2-bit highs, 16 int8 scales, f16 d."""
    b = rng.integers(0, 256, (nblk, 210), dtype=np.uint8)
    b[:, 208:210] = f16_bytes(rng, nblk, 0.001, 0.01)
    d = b[:, 208:210].copy().view("<f2").astype(np.float64)
    ql, qh = b[:, 0:128].astype(np.int64), b[:, 128:192].astype(np.int64)
    sc = b[:, 192:208].view(np.int8).astype(np.int64)
    y = np.zeros((nblk, 256))
    for h in range(2):
        L, H, S = ql[:, 64 * h:64 * h + 64], qh[:, 32 * h:32 * h + 32], sc[:, 8 * h:8 * h + 8]
        for l in range(32):
            i = l // 16
            base = 128 * h + l
            y[:, base] = d[:, 0] * S[:, i] * (((L[:, l] & 0xF) | (((H[:, l] >> 0) & 3) << 4)) - 32)
            y[:, base + 32] = d[:, 0] * S[:, i + 2] * (((L[:, l + 32] & 0xF) | (((H[:, l] >> 2) & 3) << 4)) - 32)
            y[:, base + 64] = d[:, 0] * S[:, i + 4] * (((L[:, l] >> 4) | (((H[:, l] >> 4) & 3) << 4)) - 32)
            y[:, base + 96] = d[:, 0] * S[:, i + 6] * (((L[:, l + 32] >> 4) | (((H[:, l] >> 6) & 3) << 4)) - 32)
    return b.tobytes(), y


def write_kquants(out, rng):
    """kquants.gguf: q4_k and q6_k [512 x 3] random blocks with their decoded values
    (<name>.expected, f32), an input x [512 x 2] and y = x . W^T (<name>.y, f32 [3 x 2])."""
    cols, rows, ntok = 512, 3, 2
    x = rng.standard_normal((ntok, cols))
    tensors = [("x", [cols, ntok], T_F32, x.astype("<f4").tobytes())]
    for name, ttype, fn in (("q4_k", T_Q4_K, q4_k_blocks), ("q6_k", T_Q6_K, q6_k_blocks)):
        raw, y = fn(rng, rows * cols // 256)
        w = y.reshape(rows, cols)
        tensors.append((name, [cols, rows], ttype, raw))
        tensors.append((name + ".expected", [cols, rows], T_F32, w.astype("<f4").tobytes()))
        tensors.append((name + ".y", [rows, ntok], T_F32,
                        (x.astype("<f4").astype(np.float64) @ w.T).astype("<f4").tobytes()))
    write_gguf(os.path.join(out, "kquants.gguf"), [("general.architecture", "none")], tensors)


# ---- main -----------------------------------------------------------------------------------

def write_bad(out, rng):
    w = random_weights("llama", rng)
    # Same tensors, an architecture nobody supports.
    tensors = []
    for name, arr in w.items():
        raw, _ = encode(arr, T_F32)
        tensors.append((name, list(reversed(arr.shape)), T_F32, raw))
    kv = [(k.replace("llama", "gpt2") if k != "general.name" else k,
           "gpt2" if v == "llama" else v) for k, v in metadata("llama")]
    write_gguf(os.path.join(out, "bad-arch.gguf"), kv, tensors)
    shape = dict(w)
    shape["blk.1.attn_k.weight"] = rng.standard_normal((48, DIMS["n_embd"]))
    write_model(os.path.join(out, "bad-shape.gguf"), "llama", shape, T_F32)
    # q5_1: blocks of 32 in 24 bytes; valid bytes, a type the engine does not run.
    tensors = []
    for name, arr in w.items():
        if name == "blk.0.ffn_up.weight":
            raw = bytes(arr.size // 32 * 24)
            tensors.append((name, list(reversed(arr.shape)), T_Q5_1, raw))
        else:
            tensors.append((name, list(reversed(arr.shape)), T_F32, encode(arr, T_F32)[0]))
    write_gguf(os.path.join(out, "bad-type.gguf"), metadata("llama"), tensors)
    missing = {k: v for k, v in w.items() if k != "blk.1.ffn_down.weight"}
    write_model(os.path.join(out, "bad-missing.gguf"), "llama", missing, T_F32)


def q8_0_bytes(w):
    """Q8_0 encoding of a float32 array whose rows are multiples of 32 (vectorized)."""
    blocks = w.reshape(-1, 32)
    d = (np.abs(blocks).max(axis=1) / 127.0).astype("<f2")
    dd = d.astype(np.float32)
    inv = np.divide(1.0, dd, out=np.zeros_like(dd), where=dd != 0)
    out = np.empty((len(d), 34), np.uint8)
    out[:, :2] = d.view(np.uint8).reshape(-1, 2)
    out[:, 2:] = np.clip(np.rint(blocks * inv[:, None]), -127, 127).astype("i1").view(np.uint8)
    return out.tobytes()


def write_bench(out, rng):
    """A qwen2-shaped ~0.5B model (Qwen2.5-0.5B's dimensions), Q8_0 matrices, streamed to disk
    a tensor (or 8192 rows) at a time."""
    L, E, H, K, hd, F, V = 24, 896, 14, 2, 64, 4864, 151936
    kv = [("general.architecture", "qwen2"), ("general.name", "bench-0.5b"),
          ("qwen2.block_count", L), ("qwen2.embedding_length", E),
          ("qwen2.attention.head_count", H), ("qwen2.attention.head_count_kv", K),
          ("qwen2.feed_forward_length", F), ("qwen2.rope.freq_base", 1000000.0),
          ("qwen2.attention.layer_norm_rms_epsilon", 1e-6), ("qwen2.context_length", 32768)]
    specs = [("token_embd.weight", (V, E)), ("output_norm.weight", (E,))]
    for i in range(L):
        p = "blk.%d." % i
        specs += [(p + "attn_norm.weight", (E,)), (p + "ffn_norm.weight", (E,)),
                  (p + "attn_q.weight", (H * hd, E)), (p + "attn_k.weight", (K * hd, E)),
                  (p + "attn_v.weight", (K * hd, E)), (p + "attn_output.weight", (E, H * hd)),
                  (p + "attn_q.bias", (H * hd,)), (p + "attn_k.bias", (K * hd,)),
                  (p + "attn_v.bias", (K * hd,)), (p + "ffn_gate.weight", (F, E)),
                  (p + "ffn_up.weight", (F, E)), (p + "ffn_down.weight", (E, F))]
    size = lambda shape: (int(np.prod(shape)) // 32 * 34 if len(shape) == 2
                          else int(np.prod(shape)) * 4)
    head = b"GGUF" + struct.pack("<IQQ", 3, len(specs), len(kv))
    head += b"".join(gguf_kv(k, v) for k, v in kv)
    off = 0
    for name, shape in specs:
        head += gguf_str(name) + struct.pack("<I", len(shape))
        head += b"".join(struct.pack("<Q", n) for n in reversed(shape))
        head += struct.pack("<IQ", T_Q8_0 if len(shape) == 2 else T_F32, off)
        off += size(shape) + (-size(shape)) % ALIGN
    head += b"\0" * ((-len(head)) % ALIGN)
    with open(os.path.join(out, "bench-05b.gguf"), "wb") as f:
        f.write(head)
        for name, shape in specs:
            if len(shape) == 1:
                raw = (1.0 + 0.1 * rng.standard_normal(shape, dtype=np.float32)).astype("<f4")
                f.write(raw.tobytes())
            else:
                for r0 in range(0, shape[0], 8192):
                    rows = min(8192, shape[0] - r0)
                    w = rng.standard_normal((rows, shape[1]), dtype=np.float32)
                    f.write(q8_0_bytes(w / np.float32(np.sqrt(shape[1]))))
            f.write(b"\0" * ((-size(shape)) % ALIGN))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--bench-05b", action="store_true")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    rng = np.random.default_rng(20261130)
    lines = []
    for arch in ARCHS:
        w = random_weights(arch, rng)
        ps = [0.0]
        if ARCHS[arch]["moe"]:
            # p -> 1 takes every expert, a small p one; a middle p is chosen away from any
            # cumulative probability so float32 and float64 agree on the routing.
            for mid in (0.6, 0.55, 0.65, 0.7, 0.5, 0.75):
                margins = []
                reference(arch, w, TOKENS, mid, margins=margins)
                if min(margins) > 1e-3:
                    break
            else:
                sys.exit("tiny_models.py: no top-p value clear of the routing boundaries")
            ps += [1.0, 0.01, mid]
        f32_logits = {}
        for tname, ttype in TYPES.items():
            model = "%s-%s.gguf" % (arch, tname)
            stored = write_model(os.path.join(args.out, model), arch, w, ttype)
            for p in ps:
                case = "%s-%s%s" % (arch, tname, "" if p == 0 else "-p%g" % p)
                logits, experts = reference(arch, stored, TOKENS, p)
                logits.astype("<f4").tofile(os.path.join(args.out, case + ".f32"))
                if tname == "f32":
                    f32_logits[p] = case + ".f32"
                lines.append("%s %s %g %.9f %s %s %s" % (
                    case, model, p, experts, ",".join(map(str, TOKENS)), case + ".f32",
                    f32_logits[p]))
    with open(os.path.join(args.out, "cases.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    write_bad(args.out, rng)
    write_kquants(args.out, rng)
    if args.bench_05b:
        write_bench(args.out, rng)


if __name__ == "__main__":
    main()
