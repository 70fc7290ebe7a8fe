#!/usr/bin/env python3
"""Regenerates the seed corpora of the fuzz targets in tests/fuzz/corpus/<name>/.

Usage: tests/fuzz/make_corpus.py TRACES_DIR FUZZ_BIN_DIR
Seeds come from the recorded traces (a few short records, their text cut), the unit tests'
inputs (answer pairs, the default policy) and protobuf messages encoded from text with protoc.
Each corpus stays small (the whole tree well under 500 KB).
"""
import glob, gzip, json, os, re, subprocess, sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(HERE, "corpus")


def put(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def traces(tdir):
    """The three shortest records of the first files, text cut to 1500 bytes."""
    recs = []
    for path in sorted(glob.glob(os.path.join(tdir, "*.jsonl.gz")))[:4]:
        with gzip.open(path, "rt") as f:
            for line in f:
                recs.append((len(line), line))
    recs.sort()
    out = []
    for _, line in recs[:3]:
        r = json.loads(line)
        r["text"] = r["text"][:1500]
        r["probes"] = r.get("probes", [])[:6]
        out.append(json.dumps(r))
    return out


def main():
    tdir, bindir = sys.argv[1], sys.argv[2]
    recs = traces(tdir)
    for i, r in enumerate(recs):
        put("traces", "trace%d.jsonl" % i, r + "\n")
        put("json", "trace%d.json" % i, r)
    put("traces", "two.jsonl", recs[0] + "\n\n" + recs[1] + "\n{\"model\": \"m\"}\n")
    for i, j in enumerate(['{"a": [1, 2.5e-3, -0, true, false, null], "b": {"c": "\\u00e9\\ud83d\\ude00"}}',
                           '[[[[[[[[1]]]]]]]]', '"\\\\ \\" \\n \\t"', '-12345678901234567890',
                           '{"k": 1, "k": 2}']):
        put("json", "case%d.json" % i, j)

    pairs = re.findall(r'^\{"((?:[^"\\]|\\.)*)", "((?:[^"\\]|\\.)*)"', open(
        os.path.join(ROOT, "tests/unit/answer_pairs.inc")).read(), re.M)
    seen = set()
    for a, b in pairs:
        a = a.encode().decode("unicode_escape").encode("latin-1")
        b = b.encode().decode("unicode_escape").encode("latin-1")
        if (a, b) in seen or len(seen) >= 120:
            continue
        seen.add((a, b))
        put("answer", "pair%03d" % len(seen), a + b"\n" + b)
    for i, s in enumerate([r"\left( 3, \dfrac{\pi}{2} \right)" + "\n(3,\\frac{\\pi}{2})",
                           "15\\text{ cm}^2\n15", "x \\in [1,2]\n[1,2]", "1,000\n1000",
                           "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}\n\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}",
                           "\\sqrt2/2\n\\frac{\\sqrt{2}}{2}", "(B)\nB", "π√2 ≤ ∞\n\\pi\\sqrt{2}\\leq\\infty"]):
        put("answer", "case%d" % i, s)

    pol = open(os.path.join(ROOT, "policy/default.policy")).read()
    put("policy", "default.policy", pol)
    put("policy", "sections.policy", "step_tokens = 64\n[cot]\nthreshold = 0.9\nw.stable = 1.5\n"
        "[sc]\nthreshold = 0.8\n\0step_tokens = 32\ncot.threshold = 0.95\n")
    put("policy", "bad.policy", "step_tokens = x\n[cot\nthreshold 0.5\n")

    put("config", "full.conf", "\ufeffthreads = 8\noffset = -3\n[log]\nlevel = debug\n[store]\n"
        "path = \"/var/lib/certa # not a comment\"\nmap_size = 4GiB\nsync = off\n[daemon]\n"
        "worker = 127.0.0.1:7701\nworker = 127.0.0.1:7702\nratio = 0.25 ; comment\n"
        "timeout = 2m\nname = \"a \\\"quoted\\\" \\\\ name\"\r\n")
    put("config", "dotted.conf", "store.map_size = 1T\ndaemon.worker =\ndaemon.scale = 1e300\n")
    put("config", "bad.conf", "threads = 99999\n[store\nsync = maybe\n")

    # Protobuf messages: "Type" -> text format, encoded with protoc; the selector byte is the
    # type's index in the fuzz target's table.
    env = dict(os.environ, FUZZ_PROTO_TYPES="1")
    listing = subprocess.run([os.path.join(bindir, "fuzz_proto"), "-runs=0"], env=env,
                             capture_output=True, text=True).stderr
    index = {m.group(2): int(m.group(1)) for m in re.finditer(r"^type (\d+) (\S+)$", listing, re.M)}
    msgs = {
        "certa.v1.SubmitRequest": 'program { problem: "What is 2+2?" algorithm: ALGORITHM_SC n: 3 '
            'token_budget: 4096 priority: PRIORITY_HIGH idempotency_key: "k1" '
            'sampling { temperature: 0.6 top_p: 0.95 top_k: 20 } model: "qwen-qwen3-8b" }',
        "certa.v1.GetRequest": 'program_id: "p-0001"',
        "certa.v1.ListRequest": 'state: PROGRAM_STATE_RUNNING page_size: 10 page_token: "abc"',
        "certa.v1.CreateTenantRequest": 'tenant { name: "acme" weight: 2 policy: "default" }',
        "certa.v1.SetPolicyRequest": 'tenant: "acme" policy { name: "acme" text: "step_tokens = 64\\n" }',
        "certa.v1.AddWorkerRequest": 'address: "127.0.0.1:7701"',
        "certa.v1.StepRequest": 'items { request_id: "p-1/0" prompt: "What is 2+2?" resume_text: '
            '"<think>ok" resume_tokens: 3 sample_index: 1 max_new_tokens: 64 seed: 7 model: "m" }',
        "certa.v1.StepReply": 'results { request_id: "p-1/0" text: "so 4" new_tokens: 2 '
            'total_tokens: 5 finished: true final_answer: "4" thinking_done: true }',
        "certa.v1.Program": 'id: "p-1" tenant: "acme" spec { problem: "q" n: 1 } '
            'state: PROGRAM_STATE_FINISHED result { answer: "4" }',
    }
    protos = glob.glob(os.path.join(ROOT, "proto/certa/v1/*.proto"))
    for name, text in msgs.items():
        if name not in index:
            continue
        data = subprocess.run(["protoc", "-I" + os.path.join(ROOT, "proto"), "--encode=" + name]
                              + protos, input=text.encode(), capture_output=True, check=True).stdout
        put("proto", name.split(".")[-1], bytes([index[name]]) + data)
    # fuzz_admin: the selector byte is the request's place in its enum fuzz_admin_op.
    admin = [
        (0, "certa.v1.CreateTenantRequest", 'tenant { name: "bravo" weight: 3 priority: PRIORITY_HIGH '
            'quota { max_concurrent_programs: 5 tokens_per_minute: 30000 max_sc_n: 8 } }'),
        (1, "certa.v1.UpdateTenantRequest", 'tenant { name: "acme" weight: 4 quota { max_sc_n: 4 } } '
            'fields: "weight" fields: "quota.max_sc_n"'),
        (2, "certa.v1.TenantRef", 'name: "bravo"'),
        (3, "certa.v1.RotateKeyRequest", 'tenant: "acme"'),
        (4, "certa.v1.RevokeKeyRequest", 'tenant: "acme" key_id: "k1"'),
        (5, "certa.v1.SetPolicyRequest", 'tenant: "acme" policy { text: "step_tokens = 32\\n[cot]\\n'
            'threshold = 0.9\\n" }'),
        (6, "certa.v1.RollbackPolicyRequest", 'tenant: "acme" version: 1'),
        (7, "certa.v1.PolicyRef", 'tenant: "acme"'),
    ]
    for op, name, text in admin:
        data = subprocess.run(["protoc", "-I" + os.path.join(ROOT, "proto"), "--encode=" + name]
                              + protos, input=text.encode(), capture_output=True, check=True).stdout
        put("admin", "%d-%s" % (op, name.split(".")[-1]), bytes([op]) + data)
    put("admin", "8-auth", b"\x08Bearer certa_0123456789abcdef")

    # A ProgramRecord with two RequestRecords after it (the recovery path).
    rec = subprocess.run(["protoc", "-I" + os.path.join(ROOT, "proto"), "--encode=certa.v1.ProgramRecord"]
                         + protos, input=b'program { id: "p-1" tenant: "acme" spec { problem: "q" '
                         b'algorithm: ALGORITHM_SC n: 2 } state: PROGRAM_STATE_RUNNING } step_count: 3',
                         capture_output=True, check=True).stdout
    reqs = b""
    for i in range(2):
        r = subprocess.run(["protoc", "-I" + os.path.join(ROOT, "proto"), "--encode=certa.v1.RequestRecord"]
                           + protos, input=('program_id: "p-1" index: %d text: "<think>a" tokens: 3 '
                           'answer: "4" probes { position: 64 answer: "4" }' % i).encode(),
                           capture_output=True, check=True).stdout
        reqs += bytes([len(r)]) + r
    put("proto", "ProgramRecord", bytes([index["certa.v1.ProgramRecord"], len(rec) >> 8, len(rec) & 255])
        + rec + reqs)


if __name__ == "__main__":
    main()
