#!/usr/bin/env bash
# Installs the Debian packages certa needs to build and test, when they are missing.
# As root: runs apt-get update + install. Otherwise: prints the one command to run.
# `deps.sh fuzz` checks only FUZZ_PKGS, what `make fuzz` / `make check-fuzz` need (clang with
# its libFuzzer and sanitizer runtimes), so plain builds and `make check` do not need them.
set -eu

PKGS="build-essential pkg-config libevent-dev libprotobuf-c-dev protobuf-c-compiler
protobuf-compiler libgrpc-dev liblmdb-dev lmdb-utils libcmocka-dev libsystemd-dev zlib1g-dev
libinih-dev libssl-dev libpcre2-dev python3 python3-numpy procps systemd openssl python3-matplotlib"

# Optional: promtool (package prometheus) lets the metrics test check the exposition format
# with the real parser; the test uses its own strict parser when it is missing.
OPTIONAL="prometheus"

# libFuzzer ships in clang's compiler runtime package (a Recommends of clang-14, which
# --no-install-recommends would skip).
FUZZ_PKGS="clang libclang-rt-14-dev"

if [ "${1:-}" = fuzz ]; then
	PKGS="$FUZZ_PKGS"
	OPTIONAL=""
fi

missing=""
for p in $PKGS; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done

opt_missing=""
for p in $OPTIONAL; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		opt_missing="$opt_missing $p"
	fi
done

if [ -z "$missing" ] && { [ -z "$opt_missing" ] || [ "$(id -u)" -ne 0 ]; }; then
	exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
	echo "certa: missing Debian packages:$missing" >&2
	echo "certa: run as root: apt-get update && apt-get install -y --no-install-recommends$missing" >&2
	exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -q
if [ -n "$missing" ]; then
	echo "certa: installing:$missing"
	# shellcheck disable=SC2086
	apt-get install -y -q --no-install-recommends $missing
fi
if [ -n "$opt_missing" ]; then
	echo "certa: installing (optional):$opt_missing"
	# shellcheck disable=SC2086
	apt-get install -y -q --no-install-recommends $opt_missing ||
		echo "certa: optional packages not installed; tests that use them will skip"
fi
