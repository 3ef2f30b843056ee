#!/bin/sh
# SPDX-License-Identifier: MIT
# Live migration of a 1 GiB guest that dirties 1% of its pages per second
# (2621 random page writes/s, paced by vmmu-run), in each dirty-log mode in
# one process, and between two processes over loopback TCP. For each run:
# total time, downtime, rounds, bytes, against the memcpy bound (the time a
# plain memcpy takes for the same bytes, 4 KiB at a time, measured here too).
# usage: bench/migrate.sh [BUILD_DIR] [MIB] [RATE]
set -eu
build=${1:-build} mib=${2:-1024} rate=${3:-2621}
vmmu_run=$build/examples/vmmu-run
[ -x "$vmmu_run" ] || { echo "no $vmmu_run: build first"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The guest writes every page once (--fill, ~1-3 s here), then dirties at the rate;
# migration starts after that.
after=${AFTER_MS:-3000}
args="--mem $mib --fill --dirty-rate $rate --after $after --keep-caps"

cat >"$tmp/memcpy.c" <<'C'
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
int main(int argc, char **argv)
{
	size_t n = strtoull(argv[1], NULL, 0);
	struct timespec a, b;
	char *s = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	char *d = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	double best = 1e9;

	memset(s, 1, n);
	for (int r = 0; r < 3; r++) {
		clock_gettime(CLOCK_MONOTONIC, &a);
		for (size_t i = 0; i < n; i += 4096)
			memcpy(d + i, s + i, 4096);
		clock_gettime(CLOCK_MONOTONIC, &b);
		double t = (b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) / 1e6;
		best = t < best ? t : best;
	}
	printf("%.1f\n", best);
	return d[n - 1] != 1;
}
C
cc -O2 -o "$tmp/memcpy" "$tmp/memcpy.c"

report() { # name logfile
	line=$(grep "migrated in" "$2" || true)
	[ -n "$line" ] || { echo "$1: FAILED"; sed 's/^/    /' "$2"; return; }
	grep -q "resumed on a new VM: memory checksum ok" "$2" || { echo "$1: guest checksum not verified"; return; }
	total=$(echo "$line" | sed 's/.*migrated in \([0-9.]*\) ms.*/\1/')
	down=$(echo "$line" | sed 's/.*downtime \([0-9.]*\) ms.*/\1/')
	rounds=$(echo "$line" | sed 's/.* \([0-9]*\) pre-copy rounds.*/\1/')
	mibs=$(echo "$line" | sed 's/.* \([0-9.]*\) MiB sent.*/\1/')
	bytes=$(awk "BEGIN { printf \"%d\", $mibs * 1048576 }")
	bound=$("$tmp/memcpy" "$bytes")
	printf '%-14s total %8.1f ms  downtime %6.2f ms  rounds %2s  %7.1f MiB  memcpy bound %7.1f ms  total/bound %.2fx\n' \
		"$1" "$total" "$down" "$rounds" "$mibs" "$bound" "$(awk "BEGIN { print $total / $bound }")"
	grep "downtime:" "$2" | sed 's/^vmmu-run: /    /'
}

echo "guest: $mib MiB work area, $rate page writes/s ($(awk "BEGIN { printf \"%.2f\", $rate * 100 / ($mib * 256) }")% of pages per second)"
for mode in bitmap manual ring; do
	# shellcheck disable=SC2086
	"$vmmu_run" --migrate --dirty-log $mode $args >"$tmp/out" 2>&1 || true
	report "local $mode" "$tmp/out"
done
port=$((20000 + $$ % 20000))
# shellcheck disable=SC2086
"$vmmu_run" --listen $port --keep-caps >"$tmp/dst" 2>&1 &
dst=$!
sleep 0.3
# shellcheck disable=SC2086
"$vmmu_run" --migrate-to 127.0.0.1:$port $args >"$tmp/out" 2>&1 || true
wait $dst || true
cat "$tmp/dst" >>"$tmp/out"
report "tcp bitmap" "$tmp/out"
