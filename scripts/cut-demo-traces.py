#!/usr/bin/env python3
"""Cuts data/traces-demo/ out of the full recorded traces, reproducibly.

usage: scripts/cut-demo-traces.py [FULL_TRACES_DIR [OUT_DIR]]
       (defaults: ../shared/data/traces and data/traces-demo)

For every model and dataset it keeps, in all three seeds:
  - the problems scripts/demo.sh picks (first seed-42 records that finished, with a problem under
    300 characters and under 4000 tokens: 3 of MATH500, 2 of AMC23), and
  - the first problems of the seed-42 file (PER_DATASET in total per dataset, demo picks included),
so cot and sc (n <= 3) programs run on each of them.  Lines are copied byte for byte, in their
original order, so lib/traces.c reads the subset exactly as it reads the full set.  The gzip
streams carry no name and mtime 0, so the same input gives the same files.
"""
import gzip
import json
import os
import sys

# problems kept per dataset (demo picks count towards these)
PER_DATASET = {"math500": 16, "amc23": 6, "aime24": 4}
# scripts/demo.sh's picks per dataset
DEMO_PICKS = {"math500": 3, "amc23": 2}
SEEDS = (42, 43, 44)


def read_lines(path):
    with gzip.open(path, "rb") as f:
        return [line for line in f.read().split(b"\n") if line.strip()]


def demo_pick(rec):
    return rec["finished"] and len(rec["problem"]) < 300 and rec["tokens_used"] < 4000


def chosen_problems(lines, dataset):
    recs = [json.loads(line) for line in lines]
    want = DEMO_PICKS.get(dataset, 0)
    keep = []
    for r in recs:
        if want > 0 and demo_pick(r):
            keep.append(r["problem"])
            want -= 1
    for r in recs:
        if len(keep) >= PER_DATASET[dataset]:
            break
        if r["problem"] not in keep:
            keep.append(r["problem"])
    return set(keep)


def write_gz(path, lines):
    with open(path, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as f:
            for line in lines:
                f.write(line + b"\n")


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else "../shared/data/traces"
    out = sys.argv[2] if len(sys.argv) > 2 else "data/traces-demo"
    files = sorted(f for f in os.listdir(src) if f.endswith(".jsonl.gz"))
    models = sorted({f.split("__")[0] for f in files})
    os.makedirs(out, exist_ok=True)
    for model in models:
        for dataset in sorted(PER_DATASET):
            name = lambda seed: f"{model}__{dataset}__seed_{seed}.jsonl.gz"
            if not os.path.exists(os.path.join(src, name(42))):
                continue
            keep = chosen_problems(read_lines(os.path.join(src, name(42))), dataset)
            for seed in SEEDS:
                lines = read_lines(os.path.join(src, name(seed)))
                sub = [l for l in lines if json.loads(l)["problem"] in keep]
                write_gz(os.path.join(out, name(seed)), sub)
                print(f"{name(seed)}: {len(sub)} of {len(lines)} records")


if __name__ == "__main__":
    main()
