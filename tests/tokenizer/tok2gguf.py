#!/usr/bin/env python3
"""tok2gguf.py — a Hugging Face tokenizer.json (byte-level BPE) as a GGUF v3 file holding only
tokenizer metadata, the way llama.cpp's converter writes it, so the engine's tokenizer can be
checked against the real one without model weights.

Usage: tok2gguf.py TOKENIZER_JSON OUT.gguf [--config tokenizer_config.json] [--arch NAME]
                   [--pre NAME] [--name NAME]

Writes general.architecture/name, tokenizer.ggml.model = "gpt2", tokenizer.ggml.pre (from
--pre, else guessed from the Split regex: \\p{N}{1,3} -> "llama-bpe", \\p{N} -> "qwen2"),
tokens (the vocabulary and the added tokens by id; holes become "[PAD<id>]"), token_type
(1 normal, 3 control = special added token, 4 user-defined = other added token, 5 unused),
merges ("a b"), bos/eos/padding ids and chat_template when tokenizer_config.json names them.
Python 3 standard library only.
"""
import argparse
import json
import struct
import sys

GGUF_U32, GGUF_I32, GGUF_STRING, GGUF_ARRAY = 4, 5, 8, 9
NORMAL, CONTROL, USER_DEFINED, UNUSED = 1, 3, 4, 5


def gstr(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def kv_str(key, val):
    return gstr(key) + struct.pack("<I", GGUF_STRING) + gstr(val)


def kv_u32(key, val):
    return gstr(key) + struct.pack("<II", GGUF_U32, val)


def kv_arr_str(key, vals):
    out = [gstr(key), struct.pack("<IIQ", GGUF_ARRAY, GGUF_STRING, len(vals))]
    out.extend(gstr(v) for v in vals)
    return b"".join(out)


def kv_arr_i32(key, vals):
    return (gstr(key) + struct.pack("<IIQ", GGUF_ARRAY, GGUF_I32, len(vals)) +
            struct.pack("<%di" % len(vals), *vals))


def guess_pre(tj):
    """The llama.cpp pre-tokenizer name for the tokenizer.json's Split regex."""
    text = json.dumps(tj.get("pre_tokenizer"))
    if "\\\\p{N}{1,3}" in text:
        return "llama-bpe"
    if "\\\\p{N}|" in text:
        return "qwen2"
    sys.exit("tok2gguf: cannot tell the pre-tokenizer from the Split regex: pass --pre")


def special_id(cfg, name, ids):
    tok = cfg.get(name)
    if isinstance(tok, dict):
        tok = tok.get("content")
    return ids.get(tok) if isinstance(tok, str) else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("tokenizer_json")
    ap.add_argument("out")
    ap.add_argument("--config")
    ap.add_argument("--arch", default="llama")
    ap.add_argument("--pre")
    ap.add_argument("--name", default="tokenizer-only")
    a = ap.parse_args()

    with open(a.tokenizer_json, encoding="utf-8") as f:
        tj = json.load(f)
    cfg = {}
    if a.config:
        with open(a.config, encoding="utf-8") as f:
            cfg = json.load(f)
    model = tj["model"]
    if model.get("type") != "BPE":
        sys.exit("tok2gguf: model type %r is not BPE" % model.get("type"))

    ids = dict(model["vocab"])
    types = {i: NORMAL for i in ids.values()}
    for t in tj.get("added_tokens", []):
        ids[t["content"]] = t["id"]
        types[t["id"]] = CONTROL if t.get("special") else USER_DEFINED
    n = max(ids.values()) + 1
    tokens = [None] * n
    for s, i in ids.items():
        tokens[i] = s
    ttype = [types.get(i, UNUSED) for i in range(n)]
    for i in range(n):
        if tokens[i] is None:
            tokens[i] = "[PAD%d]" % i
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]

    kvs = [
        kv_str("general.architecture", a.arch),
        kv_str("general.name", a.name),
        kv_str("tokenizer.ggml.model", "gpt2"),
        kv_str("tokenizer.ggml.pre", a.pre or guess_pre(tj)),
        kv_arr_str("tokenizer.ggml.tokens", tokens),
        kv_arr_i32("tokenizer.ggml.token_type", ttype),
        kv_arr_str("tokenizer.ggml.merges", merges),
    ]
    for key, name in (("bos", "bos_token"), ("eos", "eos_token"), ("padding", "pad_token")):
        i = special_id(cfg, name, ids)
        if i is not None:
            kvs.append(kv_u32("tokenizer.ggml.%s_token_id" % key, i))
    if isinstance(cfg.get("chat_template"), str):
        kvs.append(kv_str("tokenizer.chat_template", cfg["chat_template"]))

    head = b"GGUF" + struct.pack("<IQQ", 3, 0, len(kvs))
    body = head + b"".join(kvs)
    body += b"\0" * ((32 - len(body) % 32) % 32)
    with open(a.out, "wb") as f:
        f.write(body)
    print("tok2gguf: %s: %d tokens, %d merges, pre %s" %
          (a.out, n, len(merges), a.pre or guess_pre(tj)))


if __name__ == "__main__":
    main()
