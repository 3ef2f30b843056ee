/* SPDX-License-Identifier: MIT */
/*
 * Fuzz the guest page walker against the reference model (tests/unit/paging_ref.c).
 *
 * Input: a 48-byte header (registers, access, address, second stage, an
 * optional second register set applied with vmmu_paging_update()) and then
 * the contents of guest memory: 16 writable pages at GPA 0 and 4 read-only
 * pages at GPA 0x10000. A word whose bit 11 is set has its address bits 51:17
 * cleared, so that most such entries point into guest memory. The walker and
 * the reference must agree on the outcome, every reported field, and every
 * A/D bit left in memory; ASan checks that nothing outside guest memory is read.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libvmmu/memslot.h>
#include <libvmmu/paging.h>
#include <libvmmu/vmmu.h>

#include "unit/paging_ref.h"

#define RAM_PAGES 16
#define ROM_PAGES 4
#define ROM_GPA   0x10000ULL
#define HEADER    48

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct vmmu_memslots *mem;
static uint8_t *ram, *rom;

static void setup(void)
{
	vmmu_set_log(NULL, VMMU_LOG_ERROR, NULL);
	ram = aligned_alloc(4096, RAM_PAGES * 4096);
	rom = aligned_alloc(4096, ROM_PAGES * 4096);
	if (!ram || !rom || vmmu_memslots_create(&mem) || vmmu_memslots_add(mem, 0, 0, RAM_PAGES * 4096, ram, 0) ||
	    vmmu_memslots_add(mem, 1, ROM_GPA, ROM_PAGES * 4096, rom, VMMU_MEMSLOT_READONLY))
		abort();
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return v;
}

static uint64_t get48(const uint8_t *p)
{
	uint64_t v = 0;

	memcpy(&v, p, 6);
	return v;
}

static void fill(uint8_t *dst, size_t len, const uint8_t *src, size_t avail)
{
	memset(dst, 0, len);
	memcpy(dst, src, avail < len ? avail : len);
	for (size_t i = 0; i + 8 <= len; i += 8) {
		uint64_t v = get64(dst + i);

		if (v & (1ULL << 11))
			v &= ~0x000ffffffffe0000ULL;
		memcpy(dst + i, &v, 8);
	}
}

static void mismatch(const char *what, int ret, const struct vmmu_walk_result *res, const struct ref_out *ref)
{
	fprintf(stderr, "fuzz-walk: %s: walker %d gpa 0x%llx ec 0x%llx qual 0x%llx fault 0x%llx; "
		"reference %d gpa 0x%llx ec 0x%llx qual 0x%llx fault 0x%llx\n", what, ret,
		(unsigned long long)res->gpa, (unsigned long long)res->error_code,
		(unsigned long long)res->exit_qualification, (unsigned long long)res->fault_gpa, ref->outcome,
		(unsigned long long)ref->gpa, (unsigned long long)ref->error_code,
		(unsigned long long)ref->exit_qualification, (unsigned long long)ref->fault_gpa);
	abort();
}

/* Registers: mode 0 off, 1 32-bit, 2 PAE (given PDPTEs), 3 4-level, 4 5-level; @reg holds the bits. */
static void make_regs(struct vmmu_paging_regs *regs, unsigned int mode, uint64_t reg, const uint8_t *data)
{
	*regs = (struct vmmu_paging_regs){ 0 };
	regs->maxphyaddr = (uint8_t)(32 + data[2] % 21);
	regs->cr3 = (reg & 0x1f000) | ((reg >> 20) & 0x1e0);
	regs->cr0 = (reg & 1 ? VMMU_CR0_WP : 0);
	regs->cr4 = (reg & 2 ? VMMU_CR4_PSE : 0) | (reg & 4 ? VMMU_CR4_SMEP : 0) | (reg & 8 ? VMMU_CR4_SMAP : 0) |
		    (reg & 16 ? VMMU_CR4_PKE : 0);
	regs->efer = reg & 32 ? VMMU_EFER_NXE : 0;
	regs->rflags = reg & 64 ? VMMU_RFLAGS_AC : 0;
	regs->flags = (reg & 128 ? VMMU_PAGING_F_GBPAGES : 0) | (reg & 256 ? VMMU_PAGING_F_AMD : 0);
	regs->pkru = (uint32_t)(reg >> 32);
	switch (mode % 5) {
	case 0:
		break;
	case 1:
		regs->cr0 |= VMMU_CR0_PG;
		break;
	case 2:
		regs->cr0 |= VMMU_CR0_PG;
		regs->cr4 |= VMMU_CR4_PAE;
		regs->flags |= VMMU_PAGING_F_PDPTRS;
		for (unsigned int i = 0; i < 4; i++)
			regs->pdptrs[i] = get48(data + 24 + i * 6) & 0x0000fffffffff001ULL;
		break;
	default:
		regs->cr0 |= VMMU_CR0_PG;
		regs->cr4 |= VMMU_CR4_PAE | (mode % 5 == 4 ? VMMU_CR4_LA57 : 0);
		regs->efer |= VMMU_EFER_LME | VMMU_EFER_LMA;
		break;
	}
}

/* One walk by the library and by the reference model; any difference aborts. */
static void check(struct vmmu_paging *ctx, struct vmmu_paging *second, const struct vmmu_paging_regs *regs,
		  const struct ref_tdp *tdp, bool alone, uint64_t gva, uint32_t access)
{
	struct vmmu_walk_result res;
	struct ref_out ref;
	int ret;

	if (alone) {
		/* the second stage on its own */
		ref_walk_tdp(mem, tdp, gva & 0x1ffffffffffffffULL, access, &ref);
		ret = vmmu_walk(second, gva & 0x1ffffffffffffffULL, access, &res);
	} else {
		ref_walk(mem, regs, regs->pdptrs, second ? tdp : NULL, gva, access, &ref);
		ret = vmmu_walk(ctx, gva, access, &res);
	}
	if (ret == -ELOOP)
		abort(); /* nobody races here */
	if (ret != ref.outcome)
		mismatch("outcome", ret, &res, &ref);
	if (res.error_code != ref.error_code || res.exit_qualification != ref.exit_qualification ||
	    res.fault_gpa != ref.fault_gpa || res.cr2 != ref.cr2)
		mismatch("fault fields", ret, &res, &ref);
	if (ret == VMMU_WALK_OK && (res.gpa != ref.gpa || res.access != ref.access || res.page_size != ref.page_size ||
				    res.level != ref.level || res.guest_gpa != ref.guest_gpa))
		mismatch("translation", ret, &res, &ref);
	if (ref_check_memory(mem, &ref) >= 0)
		mismatch("A/D bits in memory", ret, &res, &ref);
	if (getenv("FUZZ_WALK_VERBOSE"))
		fprintf(stderr, "fuzz-walk: outcome %d gpa 0x%llx ec 0x%llx qual 0x%llx\n", ret,
			(unsigned long long)res.gpa, (unsigned long long)res.error_code,
			(unsigned long long)res.exit_qualification);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vmmu_paging_regs regs;
	struct vmmu_paging *ctx = NULL, *second = NULL;
	struct ref_tdp tdp = { 0 };
	uint64_t gva, reg;
	uint32_t access;

	if (!mem)
		setup();
	if (size < HEADER)
		return 0;
	reg = get64(data + 8);
	gva = get64(data + 16);
	access = data[1] & (VMMU_WALK_WRITE | VMMU_WALK_USER | VMMU_WALK_FETCH);
	if ((access & (VMMU_WALK_WRITE | VMMU_WALK_FETCH)) == (VMMU_WALK_WRITE | VMMU_WALK_FETCH))
		access &= ~VMMU_WALK_FETCH;
	if (data[1] & 0x80)
		access |= VMMU_WALK_IMPLICIT;
	if (data[1] & 0x40)
		access |= VMMU_WALK_NO_AD;
	fill(ram, RAM_PAGES * 4096, data + HEADER, size - HEADER);
	fill(rom, ROM_PAGES * 4096, data + HEADER + RAM_PAGES * 4096,
	     size > HEADER + RAM_PAGES * 4096 ? size - HEADER - RAM_PAGES * 4096 : 0);

	make_regs(&regs, data[0], reg, data);
	if (vmmu_paging_create(&ctx, mem, &regs))
		return 0; /* reserved bits in the given PDPTEs */

	/* second stage: data[3] % 3 = none, EPT, NPT */
	tdp.maxphyaddr = (uint8_t)(32 + data[4] % 21);
	if (data[3] % 3 == 1) {
		struct vmmu_ept_config cfg = { .maxphyaddr = (uint8_t)tdp.maxphyaddr, .flags = data[5] & 7 };

		cfg.eptp = ((uint64_t)(data[6] & 0x1f) << 12) | ((uint64_t)(3 + (data[6] >> 7)) << 3) | 6 |
			   ((data[6] & 0x40) ? 1 << 6 : 0);
		tdp.ept = true;
		tdp.eptp = cfg.eptp;
		tdp.ept_flags = cfg.flags;
		if (vmmu_paging_create_ept(&second, mem, &cfg))
			abort();
	} else if (data[3] % 3 == 2) {
		struct vmmu_npt_config cfg = { .maxphyaddr = (uint8_t)tdp.maxphyaddr, .levels = 4 + (data[6] >> 7),
					       .nxe = data[5] & 1, .gbpages = (data[5] >> 1) & 1 };

		cfg.ncr3 = (uint64_t)(data[6] & 0x1f) << 12;
		tdp.ncr3 = cfg.ncr3;
		tdp.levels = cfg.levels;
		tdp.nxe = cfg.nxe;
		tdp.gbpages = cfg.gbpages;
		if (vmmu_paging_create_npt(&second, mem, &cfg))
			abort();
	}
	if (second && vmmu_paging_set_nested(ctx, second))
		abort();

	check(ctx, second, &regs, &tdp, second && (data[7] & 1), gva, access);
	/* data[7] bit 1: a register write (vmmu_paging_update), then the same walk again */
	if (data[7] & 2) {
		make_regs(&regs, (data[7] >> 2) % 5, reg ^ (data[7] * 0x0101010101010101ULL), data);
		if (!vmmu_paging_update(ctx, &regs))
			check(ctx, second, &regs, &tdp, false, gva, access);
	}
	vmmu_paging_destroy(ctx);
	vmmu_paging_destroy(second);
	return 0;
}
