#!/usr/bin/env bash
# Installs the Debian packages certa needs to build and test, when they are missing.
# As root: runs apt-get update + install. Otherwise: prints the one command to run.
set -eu

PKGS="build-essential pkg-config libevent-dev libprotobuf-c-dev protobuf-c-compiler
protobuf-compiler libgrpc-dev liblmdb-dev lmdb-utils libcmocka-dev libsystemd-dev zlib1g-dev
libinih-dev libssl-dev python3 procps"

missing=""
for p in $PKGS; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done

if [ -z "$missing" ]; then
	exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
	echo "certa: missing Debian packages:$missing" >&2
	echo "certa: run as root: apt-get update && apt-get install -y --no-install-recommends$missing" >&2
	exit 1
fi

echo "certa: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing
