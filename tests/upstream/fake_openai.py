#!/usr/bin/env python3
"""fake_openai.py — an OpenAI-compatible completions server over the recorded traces, for the
openai engine's tests (docs/upstream.md "Tests").  Python standard library only.

It implements the subset certa-worker uses: POST /v1/completions with model, prompt,
max_tokens, temperature, top_p, seed, logprobs, n = 1, stream = false; the answer carries
choices[0].text, finish_reason, logprobs (tokens, token_logprobs, top_logprobs, text_offset)
and usage.  It plays the traces exactly as the replay engine does (workers/engines/replay.c):

  * the prompt is the chat format (--chat-format, as the worker's openai.chat_format) around a
    recorded problem, followed by the chain's text so far; that text must be a prefix of the
    recorded text of sample `seed` (the seed certad sends is the sample index);
  * token position p of a trace ends at byte floor(p * len / tokens_used), moved forward to a
    UTF-8 boundary (lib/traces.c traces_text_offset), so a step of n tokens from position p0
    returns the bytes between the offsets of p0 and min(p0 + n, tokens_used); finish_reason
    is "stop" at the recorded end, else "length";
  * a prompt that ends with the probe suffix (--probe-suffix) is a probe: the answer is the
    recorded probe in effect at the position, its closing brace and filler, in
    min(out_tokens, max_tokens) tokens (the replay engine's probe tokens are out_tokens).

Positions: the server remembers which position each text length it produced stands for (a
text length can stand for two positions where one token maps to no byte); an unknown length
takes the smallest position that reaches it.

Failures on command: POST /control {"mode": M, "count": N, "delay_ms": D, "what": W,
"after": A} makes the next N completion requests (-1: all until the next /control) after the
next A fail as M says:
  ok         answer normally
  http500    500 with an OpenAI error body
  http429    429 with Retry-After: 0
  http400    400 with an OpenAI error body ("what" is the message)
  slow       answer after delay_ms
  malformed  a 200 whose body is wrong: what = json (cut JSON), usage (no usage),
             text (text is a number), logprobs (token_logprobs too short)
  reset      close the connection without an answer (RST)
  context    a context of max_len tokens (the text so far counts, the prompt does not): a
             step whose text + max_tokens exceed it is refused with vLLM's 400 message
GET /stats answers {"requests": N, "failed": F}.  Refused connections: point the worker at a
port nothing listens on, or stop this server.

  fake_openai.py --traces DIR [--port 0] [--port-file F] [--chat-format chatml]
                 [--probe-suffix S]
"""

import argparse
import glob
import gzip
import json
import math
import os
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DEFAULT_SUFFIX = ("... Oh, I suddenly got the answer to the whole problem, "
                  "**Final Answer**\n\n\\[ \\boxed{")

# The worker's prompt formats (workers/llm/tokenizer.c tokenizer_chat_prompt): before, after.
CHAT_FORMATS = {
    "chatml": ("<|im_start|>user\n", "<|im_end|>\n<|im_start|>assistant\n<think>\n"),
    "deepseek-r1": ("<\uff5cbegin\u2581of\u2581sentence\uff5c><\uff5cUser\uff5c>",
                    "<\uff5cAssistant\uff5c><think>\n"),
    "llama3": ("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n",
               "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"),
}
CHAT_FORMATS["qwen3"] = CHAT_FORMATS["qwq"] = CHAT_FORMATS["chatml"]


class Trace:
    def __init__(self, rec):
        self.seed = int(rec["seed"])
        self.text = rec["text"].encode("utf-8")
        self.tokens = int(rec["tokens_used"])
        # probes: [position, answer, out_tokens] (data/traces/README.md)
        self.probes = sorted(((int(p[0]), p[1] or "", int(p[2] or 0))
                              for p in (rec.get("probes") or [])), key=lambda p: p[0])

    def offset(self, pos):
        n = len(self.text)
        if self.tokens == 0 or pos >= self.tokens:
            return n
        off = pos * n // self.tokens
        while off < n and (self.text[off] & 0xC0) == 0x80:
            off += 1
        return off

    def position_of(self, length):
        """Smallest p with offset(p) == length, or None."""
        lo, hi = 0, self.tokens
        while lo < hi:
            mid = (lo + hi) // 2
            if self.offset(mid) < length:
                lo = mid + 1
            else:
                hi = mid
        return lo if self.offset(lo) == length else None

    def probe_at(self, pos):
        best = None
        for p in self.probes:
            if p[0] <= pos:
                best = p
            else:
                break
        return best


def load_traces(d):
    """(model, problem) -> samples ordered by seed (one per seed; first file wins)."""
    idx = {}
    files = sorted(glob.glob(os.path.join(d, "*.jsonl.gz")) + glob.glob(os.path.join(d, "*.jsonl")))
    for f in files:
        op = gzip.open if f.endswith(".gz") else open
        with op(f, "rt", encoding="utf-8") as fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                try:
                    rec = json.loads(line)
                    key = (rec["model"], rec["problem"])
                    t = Trace(rec)
                except (ValueError, KeyError, TypeError, IndexError):
                    sys.stderr.write("fake-openai: %s: skipped a malformed line\n" % f)
                    continue
                seeds = idx.setdefault(key, {})
                seeds.setdefault(t.seed, t)
    return {k: [v[s] for s in sorted(v)] for k, v in idx.items()}


class State:
    def __init__(self, args):
        self.traces = load_traces(args.traces)
        self.chat = CHAT_FORMATS[args.chat_format]
        self.suffix = args.probe_suffix
        self.lock = threading.Lock()
        self.memo = {}            # (model, problem, seed, text length) -> position
        self.mode = {"mode": "ok", "count": 0}
        self.requests = 0
        self.failed = 0

    def take_mode(self):
        with self.lock:
            self.requests += 1
            m = dict(self.mode)
            if self.mode.get("after", 0) > 0:
                self.mode["after"] -= 1
                return {"mode": "ok"}
            if m["mode"] != "ok" and m.get("count", -1) != 0:
                if self.mode.get("count", -1) > 0:
                    self.mode["count"] -= 1
                self.failed += 1
                return m
            return {"mode": "ok"}


class ApiError(Exception):
    def __init__(self, status, msg, typ="BadRequestError"):
        super().__init__(msg)
        self.status = status
        self.msg = msg
        self.typ = typ


def logprob_of(pos):
    return -0.05 * ((pos * 7919) % 10)


def complete(st, req, max_len=None):
    for f in ("model", "prompt", "max_tokens"):
        if f not in req:
            raise ApiError(400, "missing field '%s'" % f)
    if req.get("stream"):
        raise ApiError(400, "stream is not supported here")
    model, prompt, max_tokens = req["model"], req["prompt"], int(req["max_tokens"])
    seed = int(req.get("seed", 0))
    if max_tokens < 1:
        raise ApiError(400, "max_tokens must be at least 1")
    before, after = st.chat
    if not prompt.startswith(before) or after not in prompt:
        raise ApiError(400, "prompt is not in the chat format this server was started with")
    problem, rest = prompt[len(before):].split(after, 1)
    samples = st.traces.get((model, problem))
    if samples is None:
        if not any(k[0] == model for k in st.traces):
            raise ApiError(404, "The model `%s` does not exist." % model, "NotFoundError")
        raise ApiError(400, "no recorded trace of model %s for this problem" % model)
    if seed < 0 or seed >= len(samples):
        raise ApiError(400, "seed %d: only %d samples are recorded" % (seed, len(samples)))
    t = samples[seed]
    probe = rest.endswith(st.suffix)
    so_far = (rest[:-len(st.suffix)] if probe else rest).encode("utf-8")
    if t.text[:len(so_far)] != so_far:
        raise ApiError(400, "the text so far is not a prefix of the recorded text")
    key = (model, problem, seed, len(so_far))
    with st.lock:
        pos0 = st.memo.get(key)
    if pos0 is None:
        pos0 = t.position_of(len(so_far))
    if pos0 is None:
        raise ApiError(400, "the text so far ends inside a recorded token")
    if probe:
        p = t.probe_at(pos0)
        answer, out = (p[1], p[2]) if p is not None else ("", 0)
        # The answer and its brace in as many tokens as they have characters (at most
        # out_tokens), then what the model wrote after it, up to out_tokens in all.
        gen = answer + "}"
        k = max(1, min(out, max_tokens))
        pieces = [gen[i] for i in range(min(len(gen), k) - 1)]
        pieces.append(gen[len(pieces):])
        pieces += ["\\]" if i == 0 else " " for i in range(k - len(pieces))]
        finish = "length" if k == max_tokens else "stop"
    else:
        if max_len is not None and pos0 + max_tokens > max_len:
            raise ApiError(400, "This model's maximum context length is %d tokens. However, "
                           "you requested %d tokens (%d in the messages, %d in the "
                           "completion). Please reduce the length of the messages or "
                           "completion." % (max_len, pos0 + max_tokens, pos0, max_tokens))
        pos1 = min(pos0 + max_tokens, t.tokens)
        pieces = [t.text[t.offset(p):t.offset(p + 1)].decode("utf-8")
                  for p in range(pos0, pos1)]
        with st.lock:
            st.memo[(model, problem, seed, t.offset(pos1))] = pos1
        finish = "stop" if pos1 >= t.tokens else "length"
    text = "".join(pieces)
    lps = [logprob_of(pos0 + i) for i in range(len(pieces))]
    top = []
    for tok, lp in zip(pieces, lps):
        rest_p = max(1e-6, (1 - math.exp(lp)) * 0.5)
        alt = {tok: lp}
        alt["<|alt|>" if tok != "<|alt|>" else "<|alt2|>"] = math.log(rest_p)
        top.append(alt)
    offs, o = [], 0
    for tok in pieces:
        offs.append(o)
        o += len(tok)
    return {
        "id": "cmpl-fake-%d" % seed,
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{
            "index": 0,
            "text": text,
            "finish_reason": finish,
            "logprobs": {"tokens": pieces, "token_logprobs": lps, "top_logprobs": top,
                         "text_offset": offs},
        }],
        "usage": {"prompt_tokens": len(prompt) // 4, "completion_tokens": len(pieces),
                  "total_tokens": len(prompt) // 4 + len(pieces)},
    }


def malformed(what, good):
    if what == "json":
        return json.dumps(good)[:40].encode()
    if what == "usage":
        del good["usage"]
    elif what == "text":
        good["choices"][0]["text"] = 42
    elif what == "logprobs":
        lp = good["choices"][0]["logprobs"]
        lp["token_logprobs"] = lp["token_logprobs"][:-1] + ["x"]
    return json.dumps(good).encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-openai/1"

    def setup(self):
        super().setup()
        # Headers and body go out in two writes: without this, Nagle and delayed ACKs
        # add 40 ms to every answer on a kept-alive connection.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, fmt, *a):
        sys.stderr.write("fake-openai: %s\n" % (fmt % a))

    def send_json(self, status, obj, extra=None):
        body = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def error_json(self, status, msg, typ):
        self.send_json(status, {"object": "error", "message": msg, "type": typ,
                                "code": status, "error": {"message": msg, "type": typ,
                                                          "code": status}})

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def do_GET(self):
        st = self.server.st
        if self.path == "/stats":
            with st.lock:
                self.send_json(200, {"requests": st.requests, "failed": st.failed})
        elif self.path in ("/health", "/v1/models"):
            self.send_json(200, {"object": "list", "data": []})
        else:
            self.error_json(404, "no such path " + self.path, "NotFoundError")

    def do_POST(self):
        st = self.server.st
        body = self.read_body()
        if self.path == "/control":
            m = json.loads(body or b"{}")
            m.setdefault("count", -1)
            with st.lock:
                st.mode = m
            self.send_json(200, {"ok": True})
            return
        if self.path != "/v1/completions":
            self.error_json(404, "no such path " + self.path, "NotFoundError")
            return
        if self.headers.get("Authorization", "") != self.server.want_auth and self.server.want_auth:
            self.error_json(401, "bad API key", "AuthenticationError")
            return
        m = st.take_mode()
        mode = m["mode"]
        if mode == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()
            return
        if mode == "http500":
            self.error_json(500, "the engine died (on command)", "InternalServerError")
            return
        if mode == "http429":
            self.send_json(429, {"error": {"message": "too many requests (on command)",
                                           "type": "RateLimitError"}}, {"Retry-After": "0"})
            return
        if mode == "http400":
            self.error_json(400, m.get("what") or "bad request (on command)", "BadRequestError")
            return
        if mode == "slow":
            time.sleep(float(m.get("delay_ms", 1000)) / 1000.0)
        try:
            req = json.loads(body)
            out = complete(st, req, int(m["max_len"]) if mode == "context" else None)
        except ApiError as e:
            self.error_json(e.status, e.msg, e.typ)
            return
        except (ValueError, TypeError) as e:
            self.error_json(400, "bad request: %s" % e, "BadRequestError")
            return
        if mode == "malformed":
            self.send_json(200, malformed(m.get("what", "json"), out))
            return
        self.send_json(200, out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--traces", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--chat-format", default="chatml", choices=sorted(CHAT_FORMATS))
    ap.add_argument("--probe-suffix", default=DEFAULT_SUFFIX)
    ap.add_argument("--api-key", default="")
    args = ap.parse_args()
    st = State(args)
    srv = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    srv.daemon_threads = True
    srv.st = st
    srv.want_auth = "Bearer " + args.api_key if args.api_key else ""
    port = srv.server_address[1]
    sys.stderr.write("fake-openai: %d problems, listening on 127.0.0.1:%d\n"
                     % (len(st.traces), port))
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.rename(tmp, args.port_file)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
