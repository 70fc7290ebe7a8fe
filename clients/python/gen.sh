#!/bin/bash
# Generates the Python stubs of certa's client services (Reasoning, Admin and the messages
# they use, certa/v1/common.proto) into OUT/certa_client/_proto/, and copies the package
# beside them: OUT is then an installable tree (pip install OUT).
#
# The stubs live in certa_client's own namespace (certa_client._proto.certa.v1): the protos
# are staged under certa_client/_proto/ with their imports rewritten, so the generated
# imports read `from certa_client._proto.certa.v1 import common_pb2`.  Nothing is generated
# at the top level: grpc/health/v1 stubs generated there would make a `grpc` package that
# shadows grpcio itself (use grpcio-health-checking's grpc_health.v1, or call
# /grpc.health.v1.Health/Check as the tests do).
#
# Needs protoc and grpc_python_plugin (Debian: protobuf-compiler, protobuf-compiler-grpc),
# whose versions match Debian's python3-protobuf and python3-grpcio.
# Usage: clients/python/gen.sh REPO_ROOT OUT
set -euo pipefail
root=$1
out=$2
stage=$out/.stage
rm -rf "$stage" "$out/certa_client"
mkdir -p "$stage/certa_client/_proto/certa/v1"
for f in common reasoning admin; do
	sed -e 's|^import "certa/v1/|import "certa_client/_proto/certa/v1/|' \
		"$root/proto/certa/v1/$f.proto" > "$stage/certa_client/_proto/certa/v1/$f.proto"
done
cp -r "$root/clients/python/certa_client" "$out/"
cp "$root/clients/python/pyproject.toml" "$root/clients/python/README.md" "$out/"
plugin=$(command -v grpc_python_plugin)
protoc -I"$stage" --python_out="$out" --grpc_python_out="$out" \
	--plugin=protoc-gen-grpc_python="$plugin" \
	"$stage"/certa_client/_proto/certa/v1/*.proto
for d in _proto _proto/certa _proto/certa/v1; do
	[ -f "$out/certa_client/$d/__init__.py" ] || : > "$out/certa_client/$d/__init__.py"
done
rm -rf "$stage"
