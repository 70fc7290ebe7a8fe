#!/usr/bin/env bash
# Runs test binaries, each under a hard timeout, and prints a summary.
# Usage: tests/run.sh BIN...   (TEST_TIMEOUT seconds per binary, default 300; TEST_WRAPPER, e.g.
# a valgrind command line, runs each binary under it)
set -u
timeout_s=${TEST_TIMEOUT:-300}
pass=0
fail=0
failed=()
for t in "$@"; do
	name=$(basename "$t")
	start=$(date +%s.%N)
	# shellcheck disable=SC2086
	timeout -k 5 "$timeout_s" ${TEST_WRAPPER:-} "$t"
	rc=$?
	end=$(date +%s.%N)
	dur=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
	if [ $rc -eq 0 ]; then
		pass=$((pass + 1))
		echo "PASS: $name (${dur}s)"
	else
		fail=$((fail + 1))
		failed+=("$name")
		if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
			echo "FAIL: $name (timed out after ${timeout_s}s)"
		else
			echo "FAIL: $name (exit $rc, ${dur}s)"
		fi
	fi
done
echo "== $pass passed, $fail failed =="
[ $fail -eq 0 ] || { echo "failed: ${failed[*]}"; exit 1; }
