#!/bin/sh
# Installs the build into a scratch root, then builds and runs a tiny consumer
# with nothing but `pkg-config --cflags --libs libvmmu`.
# usage: install-consumer.sh BUILD_DIR consumer.c
set -eu
build=$1 src=$2
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
meson install -C "$build" --destdir "$root" --no-rebuild >"$root.log" 2>&1 || { cat "$root.log"; rm -f "$root.log"; exit 1; }
rm -f "$root.log"
pcdir=$(dirname "$(find "$root" -name libvmmu.pc | head -n 1)")
[ -n "$pcdir" ] || { echo "FAIL: no libvmmu.pc installed"; exit 1; }
export PKG_CONFIG_PATH="$pcdir" PKG_CONFIG_SYSROOT_DIR="$root"
flags=$(pkg-config --cflags --libs libvmmu)
echo "pkg-config: $flags"
san=
case "${VMMU_SANITIZE:-none}" in none|'') ;; *) san="-fsanitize=$VMMU_SANITIZE" ;; esac
${CC:-cc} $san -std=c11 -Wall -Werror -o "$root/consumer" "$src" $flags
libdir=$(pkg-config --libs-only-L libvmmu | sed 's/^ *-L//; s/ *$//')
LD_LIBRARY_PATH="$libdir" "$root/consumer"
