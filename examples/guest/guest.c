/* SPDX-License-Identifier: MIT */
/*
 * The built-in guest of vmmu-run: greets over the serial port, dirties its
 * work area at CPL3 while keeping a checksum of it, checks that checksum
 * whenever it finds itself resumed on a new VM (migration, restore), and
 * exits through the debug-exit port with its status.
 *
 * The checksum: every page p of the work area holds a word a at its start and
 * a word b at its end (both 0 until written); the guest keeps
 *   sum = SUM over p of (a * K1 + b * K2) * (2p + 1)   (mod 2^64)
 * updated on every write. A page that a migration failed to carry (stale or
 * zero), or carried to the wrong place, changes the recomputed sum.
 *
 * Freestanding: no libc, no SSE (-mgeneral-regs-only), no interrupts.
 */
#include "protocol.h"

typedef unsigned long long u64;
typedef unsigned int u32;

#define K1 0x9e3779b97f4a7c15ULL
#define K2 0xc2b2ae3d27d4eb4fULL

static volatile struct guest_params *const params = (volatile struct guest_params *)GUEST_PARAMS_GPA;

/* Kept in memory so that a migration carries them. */
static u64 sum, writes, rng;
static u32 epoch;

static inline void outb(unsigned short port, unsigned char v)
{
	__asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline u32 inl(unsigned short port)
{
	u32 v;

	__asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

/* One string I/O instruction: the host receives the whole string in one exit. */
static void put(const char *s)
{
	u64 n = 0;

	while (s[n])
		n++;
	__asm__ volatile("rep outsb" : "+S"(s), "+c"(n) : "d"((unsigned short)GUEST_PORT_SERIAL) : "memory");
}

static void put_u64(u64 v)
{
	char buf[24];
	int i = sizeof(buf) - 1;

	buf[i] = 0;
	do {
		buf[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	put(buf + i);
}

static u64 xorshift(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static inline u64 *page(u64 p)
{
	return (u64 *)(params->work_gva + (p << 12));
}

static u64 recompute(u64 pages)
{
	u64 s = 0;

	for (u64 p = 0; p < pages; p++) {
		u64 *pg = page(p);

		s += (pg[0] * K1 + pg[511] * K2) * (2 * p + 1);
	}
	return s;
}

/* Check the work area against the kept checksum; print what was found. */
static int verify(const char *when)
{
	u64 pages = params->work_pages;
	int ok = recompute(pages) == sum;

	put("guest: ");
	put(when);
	put(": memory checksum ");
	put(ok ? "ok" : "MISMATCH");
	put(" (");
	put_u64(pages);
	put(" pages, ");
	put_u64(writes);
	put(" writes)\n");
	return ok;
}

/* One write of page @p: new words at both ends, checksum updated to match. */
static void dirty_one(u64 p)
{
	u64 *pg = page(p);
	u64 a = pg[0], b = pg[511];
	u64 na = ++writes, nb = xorshift();

	sum += ((na - a) * K1 + (nb - b) * K2) * (2 * p + 1);
	pg[0] = na;
	pg[511] = nb;
}

int guest_main(void);

int guest_main(void)
{
	u64 pages = params->work_pages, per_tick = params->writes_per_tick;

	put("Hello from the vmmu-run guest: 64-bit mode, CPL3, GVA == GPA.\n");
	if (params->magic != GUEST_PARAMS_MAGIC || !pages || (pages & (pages - 1)) || !per_tick ||
	    !params->writes_per_pass || !params->seed) {
		put("guest: bad parameter block\n");
		return GUEST_STATUS_BADPARAM;
	}
	rng = params->seed;
	put("guest: dirtying ");
	put_u64(pages);
	put(" pages of work area\n");
	if (params->fill) {
		for (u64 p = 0; p < pages; p++)
			dirty_one(p);
		outb(GUEST_PORT_PASS, 1);
	}

	for (u64 pass = 0; !params->passes || pass < params->passes; pass++) {
		for (u64 i = 0; i < params->writes_per_pass; i++) {
			u32 tick;

			dirty_one(xorshift() & (pages - 1));
			if ((i + 1) % per_tick)
				continue;
			tick = inl(GUEST_PORT_TICK);
			if ((tick & GUEST_TICK_EPOCH_MASK) != epoch) {
				epoch = tick & GUEST_TICK_EPOCH_MASK;
				if (!verify("resumed on a new VM"))
					return GUEST_STATUS_CORRUPT;
			}
			if (tick & GUEST_TICK_STOP)
				goto done;
		}
		outb(GUEST_PORT_PASS, 1);
	}
done:
	if (!verify("done"))
		return GUEST_STATUS_CORRUPT;
	return GUEST_STATUS_OK;
}
