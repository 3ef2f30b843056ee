#!/bin/sh
# Fails when the complete example in the API guide differs from the example program.
# usage: check-doc-example.sh walk-demo.c docs/api-paging.md
set -eu
src=$1 doc=$2
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
# the C block right after the line "<!-- example: walk-demo.c -->"
awk '/^<!-- example: walk-demo.c -->$/ { want = 1; next }
     want && /^```c$/ { inside = 1; next }
     inside && /^```$/ { exit }
     inside { print }' "$doc" >"$tmp"
if [ ! -s "$tmp" ]; then
	echo "FAIL: $doc has no C block after <!-- example: walk-demo.c -->"
	exit 1
fi
if ! diff -u "$src" "$tmp"; then
	echo "FAIL: the example in $doc differs from $src (- program, + guide)"
	exit 1
fi
echo "ok: the example in $doc is $src"
