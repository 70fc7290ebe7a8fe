#!/usr/bin/env bash
# device-check.sh — everything the CUDA backend needs checked on a GPU, in one run of under
# 10 minutes (docs/engine.md "CUDA backend"; issue 12):
#
#   1. build       certa with the CUDA backend (make CUDA=1, only what the checks run)
#   2. ops         every backend op on the GPU against the CPU backend (test_backend_cuda)
#   3. parity      end-to-end logits and greedy tokens of the tiny models on both backends,
#                  with fork + probe, batches and MoE top-p (test_forward_cuda)
#                  (2 and 3 are what `make check-cuda` runs; here each has its own timeout)
#   4. bench       an 8B-shaped (Llama-3-8B) random BF16 model: prefill, decode at batch 1, 16,
#                  64, 256, HBM bandwidth at batch 1 against the GPU's peak, probe cost
#   5. memcheck    the ops test under compute-sanitizer (out-of-bounds and misaligned device
#                  accesses that happen not to change a result), when the toolkit has it and
#                  time is left (T_SAN); a timeout there fails nothing.  When ops or parity
#                  failed it runs before the bench: the diagnosis matters more than speed
#
# Diagnosis in one run: nvidia-smi's full report and the driver/runtime versions come first;
# the tests print every op's relative error ("ok ..." / "FAIL ..."); a test part that fails is
# run once more with CUDA_LAUNCH_BLOCKING=1 (each launch waits, so a kernel that faults names
# itself instead of surfacing at the next check: "last queued: ..."), and the summary quotes
# the first FAIL line of each test.
#
# Run from anywhere (it works in the repository root): scripts/device-check.sh.  It prints a
# summary (PASS / FAIL / SKIP / TIMEOUT per part, with the figures) and writes the whole log to
# $OUT/device-check.log when OUT is set, else to $BUILD/device-check.log.  Exit status: 0 when
# every part passed or the machine has no GPU (then it says SKIP: nothing is run), 1 otherwise.
#
# Environment: BUILD (default build; what CUDA=1 changes there is rebuilt), JOBS (default: the
# CPU count), DEVICE_CHECK_DEPS=1 (run scripts/deps.sh first, under a timeout; it is also run
# when pkg-config or protoc-c is missing),
# DEVICE_CHECK_FORCE=1 (run every part even without a GPU: the binaries then say SKIP
# themselves; for checking this script), BENCH_ARGS (extra bench-cuda arguments, e.g.
# "--peak-gbs 4800"), CUDA_DEVICE (default 0).  Timeouts in seconds: T_DEPS, T_BUILD, T_OPS,
# T_PARITY, T_BENCH, T_RERUN (the blocking rerun of a failed test), T_SAN; the whole run also
# stops at T_TOTAL (570) whatever is left.
set -u
cd "$(dirname "$0")/.." || exit 1

BUILD=${BUILD:-build}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 4)}
DEV=${CUDA_DEVICE:-0}
T_DEPS=${T_DEPS:-120}
T_BUILD=${T_BUILD:-300}
T_OPS=${T_OPS:-90}
T_PARITY=${T_PARITY:-120}
T_BENCH=${T_BENCH:-300}
T_RERUN=${T_RERUN:-60}
T_SAN=${T_SAN:-120}
T_TOTAL=${T_TOTAL:-570}
START=$(date +%s)

mkdir -p "$BUILD" || exit 1
if [ -n "${OUT:-}" ]; then
	mkdir -p "$OUT"
	LOG="$OUT/device-check.log"
else
	LOG="$BUILD/device-check.log"
fi
: > "$LOG"
# Everything below goes to the terminal and the log.
exec > >(tee -a "$LOG") 2>&1
TEE_PID=$!

SUMMARY=()
FAILED=0

say() { printf 'device-check: %s\n' "$*"; }
result() {                  # result PART STATUS DETAIL (INFO: reported, fails nothing)
	SUMMARY+=("$(printf '%-8s %-7s %s' "$1" "$2" "$3")")
	case $2 in PASS|SKIP|INFO) ;; *) FAILED=1 ;; esac
}
# The first FAIL line of a test's output, under its result.
first_fail() {
	local l
	l=$(grep -m 1 -E '^FAIL' "$1")
	[ -n "$l" ] && SUMMARY+=("         first: ${l:0:160}")
	return 0
}
# The lines a part's binary marks "SUMMARY ..." go under its result.
summary_lines() {
	local l
	while IFS= read -r l; do
		SUMMARY+=("         ${l#SUMMARY }")
	done < <(grep -E '^SUMMARY ' "$1")
}
left() { echo $((T_TOTAL - ($(date +%s) - START))); }
# budget WANTED: the timeout a part gets, never past the total.
budget() {
	local l
	l=$(left)
	if [ "$l" -lt "$1" ]; then echo "$l"; else echo "$1"; fi
}
# run_part NAME TIMEOUT LOGFILE CMD...: runs CMD under a timeout, output to the terminal,
# the log and LOGFILE; returns the command's status (124/137: timed out).
run_part() {
	local name=$1 t=$2 out=$3
	shift 3
	: > "$out"
	if [ "$t" -le 5 ]; then
		say "$name: no time left"
		return 124
	fi
	say "$name: $* (timeout ${t}s)"
	timeout -k 10 "$t" "$@" 2>&1 | tee "$out"
	return "${PIPESTATUS[0]}"
}
finish() {
	local s
	echo
	say "summary ($(($(date +%s) - START)) s, log $LOG)"
	for s in "${SUMMARY[@]}"; do
		printf '  %s\n' "$s"
	done
	if [ "$FAILED" -eq 0 ]; then say "result: PASS"; else say "result: FAIL"; fi
	exec 1>&- 2>&-
	wait "$TEE_PID" 2> /dev/null
	exit "$FAILED"
}

say "$(date -u '+%Y-%m-%d %H:%M:%S UTC'), $(uname -srm), $(nproc) CPUs, commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"

# ---- is there a GPU? ------------------------------------------------------------------------
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
gpu=""
if command -v nvidia-smi > /dev/null 2>&1; then
	gpu=$(timeout 30 nvidia-smi --query-gpu=index,name,driver_version,memory.total \
		--format=csv,noheader 2>/dev/null)
fi
if [ -z "$gpu" ] && ls /dev/nvidia[0-9]* > /dev/null 2>&1; then
	gpu="(a /dev/nvidia device; nvidia-smi gave nothing)"
fi
if [ -n "$gpu" ]; then
	say "GPU: $gpu"
	timeout 30 nvidia-smi 2>&1
	timeout 10 nvidia-smi --query-gpu=pstate,clocks.sm,clocks.mem,clocks.max.sm,power.limit,ecc.errors.uncorrected.volatile.total,mig.mode.current,compute_mode \
		--format=csv 2>&1
else
	say "no GPU (nvidia-smi finds none, no /dev/nvidia0)"
fi
if [ ! -x "$CUDA_HOME/bin/nvcc" ]; then
	say "no nvcc in $CUDA_HOME (set CUDA_HOME)"
	if [ -z "${DEVICE_CHECK_FORCE:-}" ]; then
		result all SKIP "no CUDA toolkit ($CUDA_HOME/bin/nvcc): the CUDA path is not built here"
		finish
	fi
fi
if [ -z "$gpu" ] && [ -z "${DEVICE_CHECK_FORCE:-}" ]; then
	result all SKIP "no GPU on this machine: the CUDA path is compiled but not run here"
	finish
fi
[ -x "$CUDA_HOME/bin/nvcc" ] && say "nvcc: $("$CUDA_HOME/bin/nvcc" --version | tail -n 2 | head -n 1)"
say "CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-(unset)}, device $DEV"

# ---- 0. packages (optional) -----------------------------------------------------------------
if [ -n "${DEVICE_CHECK_DEPS:-}" ] || ! command -v pkg-config > /dev/null 2>&1 ||
	! command -v protoc-c > /dev/null 2>&1; then
	if run_part deps "$(budget "$T_DEPS")" "$BUILD/deps.out" bash scripts/deps.sh; then
		result deps PASS "scripts/deps.sh"
	else
		result deps FAIL "scripts/deps.sh failed or timed out (offline? the build may still work)"
	fi
fi
if ! /usr/bin/python3 -c 'import numpy' > /dev/null 2>&1 &&
	! python3 -c 'import numpy' > /dev/null 2>&1; then
	say "python3-numpy is missing: the parity test will skip (scripts/deps.sh installs it)"
fi

# ---- 1. build ---------------------------------------------------------------------------------
OPS_BIN="$BUILD/cuda/test_backend_cuda"
PARITY_BIN="$BUILD/cuda/test_forward_cuda"
BENCH_BIN="$BUILD/bin/bench-cuda"
t0=$(date +%s)
if run_part build "$(budget "$T_BUILD")" "$BUILD/build.out" \
	nice make -j"$JOBS" --no-print-directory BUILD="$BUILD" CUDA=1 CUDA_HOME="$CUDA_HOME" \
	"$OPS_BIN" "$PARITY_BIN" "$BENCH_BIN"; then
	result build PASS "make CUDA=1 BUILD=$BUILD ($(($(date +%s) - t0)) s, -j$JOBS)"
else
	rc=$?
	[ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] && st=TIMEOUT || st=FAIL
	result build "$st" "make CUDA=1 (status $rc; see $BUILD/build.out in the log)"
	grep -E 'error|Error' "$BUILD/build.out" | head -n 20
	finish
fi

# Status of a test part from its exit code and its own SKIP line.  A GPU that nvidia-smi sees
# but CUDA does not ("no CUDA device": driver too old, CUDA_VISIBLE_DEVICES) is a failure.
test_status() {             # test_status RC OUTFILE
	if [ "$1" -eq 124 ] || [ "$1" -eq 137 ]; then echo TIMEOUT
	elif [ -n "$gpu" ] && grep -q 'SKIP: no CUDA device' "$2"; then echo FAIL
	elif grep -q 'SKIP' "$2" && [ "$1" -eq 0 ]; then echo SKIP
	elif [ "$1" -eq 0 ]; then echo PASS
	else echo FAIL
	fi
}

# A failed test part once more with CUDA_LAUNCH_BLOCKING=1, so that a faulting kernel names
# itself (rerun NAME OUTFILE CMD...); its first FAIL line goes under the part's result.
rerun_blocking() {
	local name=$1 out=$2
	shift 2
	run_part "$name-blocking" "$(budget "$T_RERUN")" "$out" env CUDA_LAUNCH_BLOCKING=1 "$@"
	result "$name-blk" INFO "CUDA_LAUNCH_BLOCKING=1 rerun: status $?, $(grep -c '^FAIL' "$out") FAIL lines"
	first_fail "$out"
}

# ---- 2. ops (make check-cuda, first half) -----------------------------------------------------
run_part ops "$(budget "$T_OPS")" "$BUILD/ops.out" "$OPS_BIN" "$DEV"
rc=$?
st=$(test_status "$rc" "$BUILD/ops.out")
result ops "$st" \
	"$(grep -E '^check-cuda:' "$BUILD/ops.out" | tail -n 1) [$(grep -c '^FAIL' "$BUILD/ops.out") FAIL lines]"
first_fail "$BUILD/ops.out"
case $st in FAIL|TIMEOUT) rerun_blocking ops "$BUILD/ops-blocking.out" "$OPS_BIN" "$DEV" ;; esac

# ---- 3. parity (make check-cuda, second half) -------------------------------------------------
run_part parity "$(budget "$T_PARITY")" "$BUILD/parity.out" "$PARITY_BIN" "$DEV"
rc=$?
st=$(test_status "$rc" "$BUILD/parity.out")
result parity "$st" "$(grep -E '^check-cuda-forward:' "$BUILD/parity.out" | tail -n 1)"
first_fail "$BUILD/parity.out"
summary_lines "$BUILD/parity.out"
case $st in
FAIL|TIMEOUT) rerun_blocking parity "$BUILD/parity-blocking.out" "$PARITY_BIN" "$DEV" ;;
esac

# ---- 5. memcheck (when there is a sanitizer and time; before the bench when a test failed) ----
memcheck() {
	local SAN="$CUDA_HOME/bin/compute-sanitizer" rc sum l
	if [ ! -x "$SAN" ]; then
		result memcheck SKIP "no $SAN"
	elif [ "$(left)" -lt 30 ]; then
		result memcheck SKIP "no time left ($(left) s)"
	else
		run_part memcheck "$(budget "$T_SAN")" "$BUILD/memcheck.out" "$SAN" --tool memcheck \
			--error-exitcode 99 --print-limit 20 "$OPS_BIN" "$DEV"
		rc=$?
		sum=$(grep -m 1 -E 'ERROR SUMMARY' "$BUILD/memcheck.out")
		if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
			if grep -q -E '^========= (Invalid|Misaligned|Program hit)' "$BUILD/memcheck.out"; then
				result memcheck FAIL "timed out, after finding errors (see the log)"
			else
				result memcheck INFO "timed out (T_SAN); no error found before"
			fi
		elif [ "$rc" -eq 0 ]; then
			result memcheck PASS "${sum:-compute-sanitizer memcheck}"
		else
			result memcheck FAIL "status $rc: ${sum:-see the log}"
			# The error and the line naming its kernel.
			l=$(grep -m 1 -A 1 -E '^========= (Invalid|Misaligned|Program hit)' \
				"$BUILD/memcheck.out" | sed 's/^=* *//' | paste -sd '|' -)
			[ -n "$l" ] && SUMMARY+=("         first: ${l:0:160}")
		fi
	fi
}
memcheck_done=""
if [ "$FAILED" -ne 0 ]; then
	memcheck
	memcheck_done=1
fi

# ---- 4. bench ---------------------------------------------------------------------------------
# shellcheck disable=SC2086
run_part bench "$(budget "$T_BENCH")" "$BUILD/bench.out" "$BENCH_BIN" --device "$DEV" \
	${BENCH_ARGS:-}
rc=$?
st=$(test_status "$rc" "$BUILD/bench.out")
result bench "$st" "bench-cuda (status $rc)"
summary_lines "$BUILD/bench.out"
[ -n "$memcheck_done" ] || memcheck


finish
