#!/usr/bin/env bash
# npm-openai.sh — installs the official `openai` npm package (major version 6) into NPM_DIR
# ($BUILD/npm by default, as tests/tokenizer/check.sh does for its packages) for
# tests/integration/test_http.c.
# Exit 0 when it is there; exit 77 after printing "SKIP: <reason>" when it cannot be (no
# node/npm, no registry).
set -u
NPM=${1:-${BUILD:-build}/npm}
PKG=openai@6

skip() { echo "SKIP: $*"; exit 77; }
[ -f "$NPM/node_modules/openai/package.json" ] && exit 0
command -v node >/dev/null || skip "node is not installed"
command -v npm >/dev/null || skip "npm is not installed"
mkdir -p "$NPM" || skip "cannot create $NPM"
npm install --silent --no-audit --no-fund --prefix "$NPM" "$PKG" >"$NPM/install.log" 2>&1 ||
	skip "npm install $PKG failed (offline? see $NPM/install.log)"
[ -f "$NPM/node_modules/openai/package.json" ] || skip "npm install $PKG left no package"
exit 0
