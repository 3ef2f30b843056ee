#!/bin/sh
# Fails when the dynamic symbols the library exports differ from the version
# script, or when the script's node does not match the project version.
# Also fails when a VMMU_API declaration in the public headers is not in the map.
# usage: check-symbols.sh LIB.so libvmmu.map LIBVMMU_X.Y INCLUDE_DIR
set -eu
lib=$1 map=$2 node=$3 incdir=$4
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBRW]$/ { sub(/@.*/, "", $3); print $3 }' | grep -v "^$node\$" | sort -u >"$tmp/exported"
sed -e 's,/\*.*\*/,,g' "$map" | tr -d ' \t' | grep -E '^vmmu_[a-z0-9_]+;$' | tr -d ';' | sort -u >"$tmp/listed"
status=0
if ! grep -q "^$node *{" "$map"; then
	echo "FAIL: $map has no node $node (the project version says $node)"
	status=1
fi
if ! diff -u "$tmp/listed" "$tmp/exported" >"$tmp/diff"; then
	echo "FAIL: exported symbols differ from $map (- listed only, + exported only):"
	cat "$tmp/diff"
	status=1
fi
grep -ho 'VMMU_API[^;(]*\bvmmu_[a-z0-9_]*' "$incdir"/*.h | grep -o 'vmmu_[a-z0-9_]*$' | sort -u >"$tmp/declared"
if ! diff -u "$tmp/declared" "$tmp/listed" >"$tmp/diff2"; then
	echo "FAIL: VMMU_API declarations in $incdir differ from $map (- declared only, + listed only):"
	cat "$tmp/diff2"
	status=1
fi
nonprefixed=$(grep -v '^vmmu_' "$tmp/exported" || true)
if [ -n "$nonprefixed" ]; then
	echo "FAIL: exported symbols without the vmmu_ prefix: $nonprefixed"
	status=1
fi
[ $status -eq 0 ] && echo "ok: $(wc -l <"$tmp/exported") symbols exported, all listed in $map under $node"
exit $status
