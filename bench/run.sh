#!/usr/bin/env bash
# Runs the benchmarks that print comparable numbers.  Needs CERTA_TRACES (the Makefile sets it).
set -eu
B=${BUILD:-build}
for b in "$B"/bin/bench-*; do
	[ -x "$b" ] || continue
	[ "$(basename "$b")" = bench-scale ] && continue   # make bench-scale: minutes
	[ "$(basename "$b")" = bench-serve ] && continue   # make bench-serve (minutes)
	echo "== $(basename "$b")"
	"$b" 2>/dev/null
done
if [ -x "$B/bin/certa-eval" ]; then
	echo "== certa-eval (cot)"
	"$B/bin/certa-eval" --traces "$CERTA_TRACES" --algo cot
	echo "== certa-eval (sc, n=3)"
	"$B/bin/certa-eval" --traces "$CERTA_TRACES" --algo sc
fi
