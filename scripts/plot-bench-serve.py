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
    rows = {}
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
                rows.setdefault(cols[0], {})[float(cols[1])] = [float(c) for c in cols[1:8]]
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
    summary(rows)


def summary(rows):
    """Per policy, over the merged sweep: the highest rate with >= 90% within the SLO (and
    every lower rate too), P50/P90 at the second rate of the sweep, accuracy and tokens per
    program next to run-to-end's."""
    ref = rows.get("run-to-end")
    rates = sorted({r for pts in rows.values() for r in pts})
    fixed = rates[1] if len(rates) > 1 else rates[0]

    def best(pts):
        b = 0.0
        for r in sorted(pts):
            if pts[r][1] < 0.9:
                break
            b = r
        return b

    print(f"{'policy':13} {'rate@90%':>9} {'x r2e':>6} {'p50@' + str(fixed):>9} "
          f"{'p90@' + str(fixed):>9} {'acc':>6} {'acc-r2e':>8} {'tok/prog':>9} {'tok/r2e':>8}")
    for name, pts in rows.items():
        first = pts[min(pts)]
        f = pts.get(fixed, [float("nan")] * 7)
        rb = best(ref) if ref else 0
        print(f"{name:13} {best(pts):9.2f} {best(pts) / rb if rb else float('nan'):6.2f} "
              f"{f[2]:9.1f} {f[3]:9.1f} {first[4]:6.3f} "
              f"{first[4] - ref[min(ref)][4] if ref else float('nan'):+8.3f} "
              f"{first[5]:9.0f} {first[5] / ref[min(ref)][5] if ref else float('nan'):8.2f}")


if __name__ == "__main__":
    main()
