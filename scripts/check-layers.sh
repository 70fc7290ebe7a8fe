#!/usr/bin/env bash
# Checks that layers only look down: every project include ("dir/file.h") of a source file
# must name its own directory or one it may use.  Exits 1 and lists each wrong-way include.
#
#   lib        (ground)   lib; generated protobuf (certa/, grpc/health/, grpc/reflection/,
#                         google/rpc/ and google/protobuf/ for grpc-status-details-bin)
#   store                 lib, store; generated records
#   scheduler  (pure)     lib, scheduler            — no protobuf types, no I/O layers
#   eval                  lib, store, scheduler, eval; generated
#   daemon                lib, store, scheduler, daemon; generated
#   workers               lib, scheduler, workers; generated
#   cli                   lib, scheduler, cli; generated
#   tests, bench          anything
# Usage: scripts/check-layers.sh [ROOT]   (default: the repository this script is in)
set -eu
root=${1:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$root"

declare -A allowed=(
	[lib]="lib certa grpc google"
	[store]="lib store certa"
	[scheduler]="lib scheduler"
	[eval]="lib store scheduler eval certa"
	[daemon]="lib store scheduler daemon certa grpc"
	[workers]="lib scheduler workers certa grpc"
	[cli]="lib scheduler cli certa grpc"
)

bad=0
checked=0
for layer in lib store scheduler eval daemon workers cli; do
	[ -d "$layer" ] || continue
	while IFS= read -r file; do
		checked=$((checked + 1))
		while IFS=: read -r line inc; do
			top=${inc%%/*}
			[ "$top" = "$inc" ] && continue          # same-directory include, no prefix
			ok=0
			for a in ${allowed[$layer]}; do
				[ "$top" = "$a" ] && ok=1
			done
			if [ "$ok" -eq 0 ]; then
				echo "check-layers: $file:$line: includes \"$inc\" ($layer may use: ${allowed[$layer]})" >&2
				bad=$((bad + 1))
			fi
		done < <(grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$file" |
			sed -E 's/^([0-9]+):[[:space:]]*#[[:space:]]*include[[:space:]]*"([^"]*)".*/\1:\2/')
	done < <(find "$layer" -name '*.[ch]' | sort)
done

if [ "$bad" -ne 0 ]; then
	echo "check-layers: $bad wrong-way include(s) in $checked files" >&2
	exit 1
fi
echo "check-layers: $checked files, every include looks down"
