#!/bin/sh
# SPDX-License-Identifier: MIT
# Time to first guest output: vmmu-run (its built-in guest: long mode, CPL3)
# against QEMU (-accel kvm -machine microvm) booting a tiny PVH guest that
# prints one line on COM1 and exits through isa-debug-exit. Both are measured
# from process start to the first byte on stdout, interleaved, in one run;
# medians and minimums of N runs (default 15) and their ratios. BASE=path/to/vmmu-run
# adds another vmmu-run binary (an older build, say) to the same interleaved runs.
# usage: [BASE=OLD_VMMU_RUN] bench/boot.sh [BUILD_DIR] [N]
set -eu
build=${1:-build} n=${2:-15}
vmmu_run=$build/examples/vmmu-run
qemu=$(command -v qemu-system-x86_64 || true)
[ -x "$vmmu_run" ] || { echo "no $vmmu_run: build first"; exit 1; }
[ -n "$qemu" ] || { echo "no qemu-system-x86_64: apt-get install -y qemu-system-x86"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The QEMU guest: a PVH ELF (entry in 32-bit protected mode, paging off).
cat >"$tmp/pvh.S" <<'ASM'
	.section .note.Xen, "a"
	.balign 4
	.long 4, 4, 18			/* name size, desc size, XEN_ELFNOTE_PHYS32_ENTRY */
	.asciz "Xen"
	.long _start
	.text
	.code32
	.globl _start
_start:	mov $msg, %esi
	mov $0x3f8, %dx
1:	lodsb
	test %al, %al
	jz 2f
	out %al, %dx
	jmp 1b
2:	mov $0xf4, %dx			/* isa-debug-exit: status (0 << 1) | 1 */
	xor %eax, %eax
	out %eax, %dx
3:	hlt
	jmp 3b
msg:	.asciz "Hello from the PVH guest\n"
	.section .note.GNU-stack,"",@progbits
ASM
gcc -m32 -c "$tmp/pvh.S" -o "$tmp/pvh.o"
ld -m elf_i386 -e _start -Ttext=0x100000 -o "$tmp/pvh.elf" "$tmp/pvh.o"

python3 - "$n" "$vmmu_run" "$qemu" "$tmp/pvh.elf" "${BASE:-}" <<'PY'
import statistics, subprocess, sys, time
n, vmmu_run, qemu, pvh, base = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
cmds = {
    "vmmu-run": [vmmu_run, "--passes", "1", "--writes", "256"],
    "qemu microvm": [qemu, "-accel", "kvm", "-machine", "microvm", "-nodefaults", "-no-user-config",
                     "-nographic", "-serial", "stdio", "-device", "isa-debug-exit,iobase=0xf4,iosize=4",
                     "-kernel", pvh, "-m", "32"],
}
if base:
    cmds["vmmu-run BASE"] = [base, "--passes", "1", "--writes", "256"]
first = {k: [] for k in cmds}
total = {k: [] for k in cmds}
for i in range(n):
    for name, cmd in cmds.items():
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        b = p.stdout.read(1)
        t1 = time.perf_counter()
        p.stdout.read()
        rc = p.wait()
        t2 = time.perf_counter()
        if not b or rc not in (0, 1):
            sys.exit("%s failed (exit %d)" % (name, rc))
        first[name].append((t1 - t0) * 1e3)
        total[name].append((t2 - t0) * 1e3)
print("time to first guest output, median of %d (min..max), ms:" % n)
for name in cmds:
    print("  %-13s %8.2f  (%.2f..%.2f)   to exit %8.2f" % (name, statistics.median(first[name]),
          min(first[name]), max(first[name]), statistics.median(total[name])))
for name in cmds:
    if name.startswith("vmmu-run"):
        print("%s is %.1fx faster to first output by the medians, %.1fx by the minimums" % (name,
              statistics.median(first["qemu microvm"]) / statistics.median(first[name]),
              min(first["qemu microvm"]) / min(first[name])))
PY
