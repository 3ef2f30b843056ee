#!/usr/bin/env bash
# Soak: the dirty-log stress tests, run over and over for a set time, with
# every write checked (a lost write fails the run at once).
#
#   tests/reliability/soak.sh [mmu|kvm|all] [seconds]     (default: all, 600 each)
#
# mmu: tests/unit/test_mmu_stress.c on the soft machine (2 writer vCPU threads
#      against a harvesting thread, in get-and-clear, manual, manual +
#      INITIALLY_SET and ring modes); VMMU_STRESS_WRITES writes per mode per run
#      (default here 2000000).
# kvm: tests/kvm/test_kvm_dirty_log.c on a real guest through /dev/kvm (the
#      three modes, 1 and 2 vCPUs, 110 iterations of 1536 guest writes each per
#      mode and vCPU count); skipped with a message where /dev/kvm cannot be opened.
#
# Builds build/ if needed. Prints one summary line per test: runs, writes (or
# pages reported) checked, lost writes (always 0 on success). Exit status:
# non-zero if any run failed; the failing run's output is kept in $SOAK_LOGDIR
# (default /tmp/vmmu-soak).
set -euo pipefail
cd "$(dirname "$0")/../.."
which=${1:-all}
secs=${2:-600}
logdir=${SOAK_LOGDIR:-/tmp/vmmu-soak}
mkdir -p "$logdir"
[ -f build/build.ninja ] || meson setup build >/dev/null
ninja -C build tests/test-mmu_stress tests/kvm/test-kvm-dirty-log >/dev/null

soak() { # name binary
	local name=$1 bin=$2 end=$(($(date +%s) + secs)) runs=0 writes=0 lost=0 pages=0 out
	while [ "$(date +%s)" -lt "$end" ]; do
		out="$logdir/$name.$runs.log"
		set +e
		"$bin" >"$out" 2>&1
		rc=$?
		set -e
		if [ $rc -eq 77 ]; then
			echo "$name: skipped: $(tail -n 1 "$out")"
			return 0
		fi
		if [ $rc -ne 0 ]; then
			echo "$name: run $runs FAILED (exit $rc), output in $out" >&2
			return 1
		fi
		runs=$((runs + 1))
		# mmu: "mode M flags F: W writes, R rounds, X ring-full retries, L lost"
		writes=$((writes + $(awk '/ writes, .* lost$/ { s += $5 } END { print s + 0 }' "$out")))
		lost=$((lost + $(awk '/ writes, .* lost$/ { s += $(NF - 1) } END { print s + 0 }' "$out")))
		# kvm: "mode M, N vCPU(s): I iterations, P pages reported, O owed to a later harvest"
		pages=$((pages + $(awk '/pages reported/ { for (i = 1; i < NF; i++) if ($(i + 1) == "pages") s += $i } END { print s + 0 }' "$out")))
		rm -f "$out"
	done
	if [ "$writes" -gt 0 ]; then
		echo "$name: $runs runs in ${secs}s, $writes writes checked, $lost lost"
	else # the KVM test checks each run's pages itself: a lost write fails the run
		echo "$name: $runs runs in ${secs}s, $pages pages reported and checked, 0 lost"
	fi
	[ "$lost" -eq 0 ]
}

status=0
if [ "$which" = mmu ] || [ "$which" = all ]; then
	VMMU_STRESS_WRITES=${VMMU_STRESS_WRITES:-2000000} soak mmu_stress build/tests/test-mmu_stress || status=1
fi
if [ "$which" = kvm ] || [ "$which" = all ]; then
	soak kvm_dirty_log build/tests/kvm/test-kvm-dirty-log || status=1
fi
exit $status
