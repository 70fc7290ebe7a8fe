#!/usr/bin/env python3
"""Plots bench-serve's results: SLO attainment vs arrival rate, one line per policy.

    python3 scripts/plot-bench-serve.py [RESULTS.tsv ...] [OUT.png]

Defaults: build/bench-serve.tsv and docs/bench-serve.png; several .tsv files (sweeps of other
rates) are merged.

Needs Debian's python3-matplotlib (scripts/deps.sh)."""
import sys
import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    srcs = [a for a in sys.argv[1:] if not a.endswith(".png")] or ["build/bench-serve.tsv"]
    dst = ([a for a in sys.argv[1:] if a.endswith(".png")] or ["docs/bench-serve.png"])[0]
    title = "bench-serve"
    lines = {}
    for src in srcs:
        with open(src, encoding="utf-8") as f:
            for line in f:
                if line.startswith("#"):
                    title = line[1:].strip()
                    continue
                cols = line.rstrip("\n").split("\t")
                if cols[0] == "policy" or len(cols) < 3:
                    continue
                lines.setdefault(cols[0], []).append((float(cols[1]), 100 * float(cols[2])))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, pts in lines.items():
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
    ax.axhline(90, color="grey", linestyle="--", linewidth=0.8)
    ax.set_xlabel("arrival rate (programs per GPU-second, all workers)")
    ax.set_ylabel("programs within SLO (%)")
    ax.set_ylim(0, 102)
    ax.set_title("\n".join(textwrap.wrap(title, 90)), fontsize=7)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(dst, dpi=120)
    print("wrote", dst)


if __name__ == "__main__":
    main()
