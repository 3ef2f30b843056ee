#!/bin/sh
# SPDX-License-Identifier: MIT
# Builds the built-in guest: compiles start.S and guest.c freestanding, links
# them flat at GUEST_IMAGE_GPA (guest.ld), and wraps the raw image in an object
# (image.S, .incbin) that vmmu-run links in.
# usage: mkguest.sh SRCDIR OUTDIR OBJECT_OUT CC...
set -eu
src=$1 out=$2 obj=$3
shift 3
flags="-O2 -std=c11 -ffreestanding -fno-pic -fno-pie -fno-stack-protector -fno-asynchronous-unwind-tables
	-mno-red-zone -mgeneral-regs-only -nostdlib -static -Wl,--build-id=none -Wl,--no-warn-rwx-segments -Wl,-T,$src/guest.ld
	-Wall -Wextra -Werror"
# shellcheck disable=SC2086
"$@" $flags -o "$out/guest.elf" "$src/start.S" "$src/guest.c"
objcopy -O binary "$out/guest.elf" "$out/guest.bin"
# shellcheck disable=SC2086
"$@" -c -DGUEST_IMAGE="\"$out/guest.bin\"" -o "$obj" "$src/image.S"
