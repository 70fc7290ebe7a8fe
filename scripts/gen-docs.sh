#!/usr/bin/env bash
# Generates the documentation that comes from the option tables, from built binaries.
# Usage: scripts/gen-docs.sh BUILD      (BUILD: the build directory, e.g. build)
#
# Writes:
#   BUILD/etc/certad.conf.example        certad --print-config
#   BUILD/etc/certa-worker.conf.example  certa-worker --print-config
#   BUILD/man/certad.conf.5              docs/man/certad.conf.5.in, @OPTIONS@ replaced by
#                                        certad --print-config-man
#   BUILD/man/certa-worker.8             docs/man/certa-worker.8.in, @OPTIONS@ replaced by
#                                        certa-worker --print-config-man without its
#                                        .SH OPTIONS line (the page has its own OPTIONS for
#                                        the flags; the list goes under CONFIGURATION)
#   BUILD/man/certad.8, certactl.1, certa-eval.1   copied from docs/man
# Runs from any directory; `make install` calls it.  Needs only bash, awk and sed.
set -eu

if [ $# -ne 1 ]; then
	echo "usage: $0 BUILD" >&2
	exit 2
fi
build=$1
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$build/bin
for b in certad certa-worker; do
	if [ ! -x "$bin/$b" ]; then
		echo "gen-docs: $bin/$b not built (run make first)" >&2
		exit 1
	fi
done
# An ASan build (make check-asan) may leak on these early exits; that is not this script's
# business.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
mkdir -p "$build/etc" "$build/man"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Roff OPTIONS section of one binary.  Until a binary knows --print-config-man, fall back to
# its example file as a preformatted block, so the page is still complete and correct.
options_man() {
	local b=$1 out=$2
	if "$bin/$b" --print-config-man >"$out" 2>/dev/null && grep -q '^\.SH' "$out"; then
		return 0
	fi
	echo "gen-docs: $b has no --print-config-man; using --print-config" >&2
	{
		echo ".SH OPTIONS"
		echo "Every option with its help and default, as printed by"
		echo ".BR \"$b \\-\\-print\\-config\" :"
		echo ".PP"
		echo ".nf"
		"$bin/$b" --print-config | sed -e 's/\\/\\e/g' -e "s/^\\([.']\\)/\\\\\\&\\1/"
		echo ".fi"
	} >"$out"
}

# Replaces the line @OPTIONS@ of template $1 with file $2, writing $3.  With $4 = noheading
# the first ".SH OPTIONS" line of $2 is left out.
splice() {
	local in=$1 opts=$2 out=$3 mode=${4:-}
	if [ "$(grep -c '^@OPTIONS@$' "$in")" -ne 1 ]; then
		echo "gen-docs: $in must contain exactly one line @OPTIONS@" >&2
		exit 1
	fi
	awk -v f="$opts" -v drop="$mode" '
		$0 == "@OPTIONS@" {
			while ((getline l < f) > 0) {
				if (drop == "noheading" && l == ".SH OPTIONS") { drop = ""; continue }
				print l
			}
			next
		}
		{ print }' "$in" >"$out.tmp"
	mv "$out.tmp" "$out"
}

"$bin/certad" --print-config >"$tmp/certad.conf.example"
"$bin/certa-worker" --print-config >"$tmp/certa-worker.conf.example"
mv "$tmp/certad.conf.example" "$tmp/certa-worker.conf.example" "$build/etc/"

options_man certad "$tmp/certad.options"
options_man certa-worker "$tmp/worker.options"
splice "$root/docs/man/certad.conf.5.in" "$tmp/certad.options" "$build/man/certad.conf.5"
splice "$root/docs/man/certa-worker.8.in" "$tmp/worker.options" "$build/man/certa-worker.8" \
	noheading
cp "$root/docs/man/certad.8" "$root/docs/man/certactl.1" "$root/docs/man/certa-eval.1" \
	"$build/man/"
