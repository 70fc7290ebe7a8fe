#!/usr/bin/env bash
# Runs every fuzz target of a fuzz build for a bounded time and prints, per target, the inputs
# run, inputs/s and crashes.  Usage: tests/fuzz/run.sh BUILD_DIR   (FUZZ_SECONDS per target,
# default 60; FUZZ_TARGETS, e.g. "answer json", to run only some).
# The seed corpus tests/fuzz/corpus/<name>/ is read, never written: new inputs go to
# BUILD_DIR/corpus/<name>/, crashing inputs to BUILD_DIR/crash/<name>/, the log to
# BUILD_DIR/log/<name>.log.  Exit 1 if any target crashed.
set -u
build=${1:?usage: tests/fuzz/run.sh BUILD_DIR}
secs=${FUZZ_SECONDS:-60}
here=$(cd "$(dirname "$0")" && pwd)
failed=()
printf '%-14s %12s %10s %8s\n' target inputs inputs/s crashes
for bin in "$build"/bin/fuzz_*; do
	name=${bin##*/fuzz_}
	if [ -n "${FUZZ_TARGETS:-}" ] && ! [[ " $FUZZ_TARGETS " == *" $name "* ]]; then
		continue
	fi
	corpus="$build/corpus/$name"
	crash="$build/crash/$name"
	log="$build/log/$name.log"
	mkdir -p "$corpus" "$crash" "$build/log"
	seeds=()
	[ -d "$here/corpus/$name" ] && seeds=("$here/corpus/$name")
	# One process; an input that crashes or leaks stops the run and is saved in $crash.
	# -timeout: one input taking more than 10 s counts as a crash (a hang).
	timeout -k 10 $((secs + 60)) "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
		-max_len=65536 -print_final_stats=1 -artifact_prefix="$crash/" \
		"$corpus" "${seeds[@]}" >"$log" 2>&1
	rc=$?
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
	crashes=$(find "$crash" -type f | wc -l)
	printf '%-14s %12s %10s %8s\n' "$name" "${runs:-?}" "${rate:-?}" "$crashes"
	if [ $rc -ne 0 ] || [ "$crashes" -gt 0 ]; then
		failed+=("$name")
		grep -m 5 -E 'ERROR|SUMMARY|runtime error|deadly signal' "$log" | sed 's/^/    /'
	fi
done
[ ${#failed[@]} -eq 0 ] || { echo "fuzz: crashes in: ${failed[*]} (inputs in $build/crash/, logs in $build/log/)"; exit 1; }
