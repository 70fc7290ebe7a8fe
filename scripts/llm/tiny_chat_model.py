#!/usr/bin/env python3
"""A tiny random model that carries a tokenizer, so the whole stack runs on text.

Usage: tiny_chat_model.py --out FILE.gguf [--arch qwen3|llama|qwen2|qwen3moe] [--merges N] [--ctx N]

Writes one GGUF model (tiny_models.py's shapes and random weights) with tokenizer metadata:
a byte-level BPE vocabulary (tokenizer.ggml.model = gpt2, pre = qwen2) made of the 256 byte
characters of GPT-2's bytes_to_unicode map, N merges learned here from a small built-in
corpus of math reasoning text, and the ChatML special tokens <|endoftext|>, <|im_start|>,
<|im_end|> (control) and <think>, </think> (user-defined); eos = <|im_end|>.  The model's
vocabulary is exactly these tokens.  Random weights: the text is gibberish, the mechanics
(prompt format, streaming decode, probes, </think>) are real.

Exits 77 when NumPy is missing (tests skip on it).
"""
import argparse
import collections
import os
import re
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tiny_models as tm  # noqa: E402  (exits 77 without numpy)

np = tm.np

V_U32, V_I32, V_STRING, V_ARRAY = 4, 5, 8, 9

CORPUS = r"""
Let me think about this problem step by step. We need to find the value of x such that
2x + 3 = 11. Subtracting 3 from both sides gives 2x = 8, so x = 4. Let me check: 2 * 4 + 3 = 11.
Wait, the problem asks for the sum of all the solutions of the equation x^2 - 5x + 6 = 0.
The roots are 2 and 3, and their sum is 5. So the answer is \boxed{5}.
Hmm, let's compute the area of the triangle with vertices (0, 0), (4, 0) and (0, 3). The area
is one half of the base times the height, which is 6. Therefore the final answer is \boxed{6}.
Alternatively, we can use the formula \frac{1}{2} |x_1 y_2 - x_2 y_1|. Okay, so the number of
ways to choose 2 items from 5 is \binom{5}{2} = 10. The probability is then 10 / 32 = 5/16.
Now consider the sequence a_n = a_{n-1} + a_{n-2} with a_1 = 1 and a_2 = 1. The tenth term is 55.
I think the answer should be the integer part of \sqrt{50}, which is 7. But wait, let me verify
that again. Since 7^2 = 49 and 8^2 = 64, the square root of 50 lies between 7 and 8.
"""

SPECIALS = [("<|endoftext|>", 3), ("<|im_start|>", 3), ("<|im_end|>", 3), ("<think>", 4),
            ("</think>", 4)]


def bytes_to_unicode():
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) +
          list(range(ord("\xae"), ord("\xff") + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def learn_merges(text, n_merges):
    b2u = bytes_to_unicode()
    pieces = re.findall(r" ?[A-Za-z]+| ?[0-9]| ?[^\sA-Za-z0-9]+|\s+", text)
    words = collections.Counter(tuple(b2u[b] for b in p.encode()) for p in pieces)
    merges = []
    for _ in range(n_merges):
        pairs = collections.Counter()
        for w, c in words.items():
            for a, b in zip(w, w[1:]):
                pairs[(a, b)] += c
        if not pairs:
            break
        best = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))[0]
        merges.append(best)
        nw = collections.Counter()
        for w, c in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == best:
                    out.append(w[i] + w[i + 1])
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            nw[tuple(out)] += c
        words = nw
    return merges


def kv_array(key, elem, values):
    out = tm.gguf_str(key) + struct.pack("<IIQ", V_ARRAY, elem, len(values))
    if elem == V_STRING:
        return out + b"".join(tm.gguf_str(v) for v in values)
    return out + b"".join(struct.pack("<i" if elem == V_I32 else "<I", v) for v in values)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--arch", default="qwen3", choices=["qwen3", "llama", "qwen2", "qwen3moe"])
    ap.add_argument("--merges", type=int, default=300)
    ap.add_argument("--ctx", type=int, default=1024)
    args = ap.parse_args()

    b2u = bytes_to_unicode()
    tokens = [b2u[b] for b in range(256)]
    merges = learn_merges(CORPUS, args.merges)
    seen = set(tokens)
    for a, b in merges:
        if a + b not in seen:
            tokens.append(a + b)
            seen.add(a + b)
    types = [1] * len(tokens)
    for s, t in SPECIALS:
        tokens.append(s)
        types.append(t)
    eos = tokens.index("<|im_end|>")

    d = dict(tm.DIMS, n_vocab=len(tokens), n_ctx=args.ctx)
    rng = np.random.default_rng(20261201)
    w = tm.random_weights(args.arch, rng, d)
    stored, tensors = {}, []
    for name, arr in w.items():
        t = tm.T_F32
        raw, _ = tm.encode(arr, t)
        tensors.append((name, list(reversed(arr.shape)), t, raw))
    kvs = tm.metadata(args.arch, d, name="tiny-chat-" + args.arch)

    # write_gguf takes (key, value) pairs; arrays are pre-encoded bytes here.
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs) + 7)
    head += b"".join(tm.gguf_kv(k, v) for k, v in kvs)
    head += tm.gguf_kv("tokenizer.ggml.model", "gpt2")
    head += tm.gguf_kv("tokenizer.ggml.pre", "qwen2")
    head += kv_array("tokenizer.ggml.tokens", V_STRING, tokens)
    head += kv_array("tokenizer.ggml.token_type", V_I32, types)
    head += kv_array("tokenizer.ggml.merges", V_STRING, ["%s %s" % m for m in merges])
    head += tm.gguf_kv("tokenizer.ggml.eos_token_id", eos)
    head += tm.gguf_kv("tokenizer.chat_template", "{{ '<|im_start|>' }}")
    data = b""
    for name, ne, ttype, raw in tensors:
        head += tm.gguf_str(name) + struct.pack("<I", len(ne))
        head += b"".join(struct.pack("<Q", n) for n in ne)
        head += struct.pack("<IQ", ttype, len(data))
        data += raw + b"\0" * ((-len(raw)) % tm.ALIGN)
    head += b"\0" * ((-len(head)) % tm.ALIGN)
    with open(args.out, "wb") as f:
        f.write(head)
        f.write(data)
    print("%s: %s, %d tokens (%d merges), context %d" % (args.out, args.arch, len(tokens),
                                                         len(merges), args.ctx))


if __name__ == "__main__":
    main()
