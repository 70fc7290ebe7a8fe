#!/usr/bin/env bash
# make demo: certad with an LMDB directory under build/demo/, two replay workers, a handful of
# real MATH500/AMC23 problems (cot and sc) with live progress and answers, then a clean shutdown.
# Runs from a plain clone: without ../shared/data/traces it replays data/traces-demo.
set -eu
B=${BUILD:-build}
# The full recorded traces when they are beside the checkout, else the subset shipped in
# data/traces-demo (see its README); CERTA_TRACES overrides both.
if [ -n "${CERTA_TRACES:-}" ]; then
	TRACES=$CERTA_TRACES
elif [ -d ../shared/data/traces ]; then
	TRACES=../shared/data/traces
else
	TRACES=data/traces-demo
fi
DEMO=$B/demo
BIN=$B/bin

if [ ! -d "$TRACES" ]; then
	echo "demo: no traces directory at $TRACES (set CERTA_TRACES or make TRACES=DIR demo)" >&2
	exit 1
fi
rm -rf "$DEMO"
mkdir -p "$DEMO"
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap cleanup EXIT

wait_port() {
	for _ in $(seq 1 200); do
		[ -s "$1" ] && { cat "$1"; return 0; }
		sleep 0.05
	done
	echo "demo: $1 did not appear; see logs in $DEMO" >&2
	exit 1
}

echo "== traces: $TRACES"
echo "== starting two replay workers (recorded traces of real models, 4 ms per 64-token step)"
for i in 1 2; do
	"$BIN/certa-worker" --listen 127.0.0.1:0 --port-file "$DEMO/w$i.port" --traces "$TRACES" \
		--step-delay 4 >"$DEMO/w$i.log" 2>&1 &
	pids+=($!)
done
W1=$(wait_port "$DEMO/w1.port")
W2=$(wait_port "$DEMO/w2.port")

echo "== starting certad (state in $DEMO/state, workers 127.0.0.1:$W1 127.0.0.1:$W2)"
"$BIN/certad" --listen 127.0.0.1:0 --port-file "$DEMO/certad.port" --state-dir "$DEMO/state" \
	--worker "127.0.0.1:$W1" --worker "127.0.0.1:$W2" \
	--set admin.socket="$PWD/$DEMO/admin.sock" \
	--set metrics.port=0 --set metrics.port_file="$DEMO/metrics.port" >"$DEMO/certad.log" 2>&1 &
CERTAD=$!
pids+=($CERTAD)
export CERTA_SERVER=127.0.0.1:$(wait_port "$DEMO/certad.port")
METRICS=$(wait_port "$DEMO/metrics.port")
sleep 0.5

echo "== an operator creates a tenant over the local admin socket (the key is shown once)"
"$BIN/certactl" --server "unix:$PWD/$DEMO/admin.sock" tenant add demo --weight 2 >"$DEMO/tenant.txt"
sed 's/\(certa_[0-9a-f]*_\)[0-9a-f]*/\1<secret>/' "$DEMO/tenant.txt"
CERTA_TOKEN=$(sed -n 's/^api key: *//p' "$DEMO/tenant.txt")
export CERTA_TOKEN

# A few real problems and their recorded answers (first samples of the default model).
python3 - "$TRACES" >"$DEMO/problems.tsv" <<'PY'
import gzip, json, os, sys
d = sys.argv[1]
files = sorted(f for f in os.listdir(d) if f.endswith(".jsonl.gz") and "seed_42" in f)
model = sorted({f.split("__")[0] for f in files})[0]
picked = []
for ds, n in (("math500", 3), ("amc23", 2)):
    with gzip.open(os.path.join(d, f"{model}__{ds}__seed_42.jsonl.gz"), "rt") as f:
        for line in f:
            r = json.loads(line)
            if r["finished"] and len(r["problem"]) < 300 and r["tokens_used"] < 4000:
                picked.append((ds, r["problem"].replace("\t", " ").replace("\n", " "), r["target"]))
                n -= 1
                if n == 0:
                    break
for ds, p, t in picked:
    print(f"{ds}\t{p}\t{t}")
PY

# Every 12th progress line plus the first two and the last (the final answer).
show() { awk 'NR <= 2 || NR % 12 == 0 { print; shown = NR } { l = $0 } END { if (NR != shown) print l }'; }
n=0
while IFS=$'\t' read -r ds problem target; do
	n=$((n + 1))
	echo
	if [ $((n % 2)) -eq 1 ]; then algo="--cot"; label="cot"; else algo="--sc 3"; label="sc n=3"; fi
	echo "== [$ds, $label] $problem"
	echo "   reference answer: $target"
	# shellcheck disable=SC2086
	"$BIN/certactl" submit "$problem" $algo --watch | show || true
done <"$DEMO/problems.tsv"

echo
echo "== four programs at once (detached), then the list"
while IFS=$'\t' read -r _ problem _; do
	"$BIN/certactl" submit "$problem" --sc 2 --detach >/dev/null
done < <(head -4 "$DEMO/problems.tsv")
sleep 2
"$BIN/certactl" list --limit 10

echo
echo "== a problem the workers have no trace for (clear error, non-zero exit)"
"$BIN/certactl" submit "What is the meaning of life?" || echo "   (certactl exit status $?)"

echo
echo "== per-tenant statistics and a few Prometheus metrics"
"$BIN/certactl" --server "unix:$PWD/$DEMO/admin.sock" stats
python3 -c "import urllib.request,sys; sys.stdout.write(urllib.request.urlopen('http://127.0.0.1:$METRICS/metrics').read().decode())" \
	| grep -E '^certa_(programs_finished_total|tokens_generated_total|tokens_saved_total|worker_up)' | head -12

echo
echo "== shutting down (SIGTERM: drain, persist, exit 0)"
kill -TERM "$CERTAD"
wait "$CERTAD" && echo "certad exited cleanly"
pids=("${pids[@]:0:2}")
echo "logs and the LMDB environment are in $DEMO (try: mdb_stat -a $DEMO/state)"
