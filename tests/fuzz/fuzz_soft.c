/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the soft backend (the MMU under a software machine) driven by
 * random memslot changes, guest accesses from two vCPUs, VMM writes, zaps,
 * aging and dirty-log harvests. After every operation the MMU audit must pass,
 * and a deliberately simple model checks what the guest sees:
 *  - a memslot add/remove/flag change succeeds exactly when the model says the
 *    request is valid (ids 0..3, no overlap, READONLY never toggled);
 *  - an access to a slot reads and writes the slot's host memory (so a VMM
 *    write straight to host memory is seen at once, and a guest write lands
 *    where the VMM reads it); an access outside every slot, or a write to a
 *    read-only slot, is MMIO;
 *  - a dirty-log harvest reports at least every page written (by the guest or
 *    marked by the VMM) since the last harvest of a logging slot: no write is
 *    ever lost. Extra pages are allowed (KVM may report them too).
 * Guest paging is off (GVA = GPA); the MMU format, largest leaf, A/D, MMIO
 * caching and the dirty mode come from the header.
 *
 * Input: 2 header bytes, then operations of 4 bytes: an opcode and 3 argument bytes.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_helpers.h"
#include <libvmmu/mmu.h>
#include <libvmmu/soft.h>
#include <libvmmu/vm.h>
#include <libvmmu/vmmu.h>

#define NR_SLOTS 4
#define SLOT_HOST (2ULL << 20)           /* host bytes behind each slot id */
#define SLOT_MAX_PAGES (SLOT_HOST / 4096)
#define GPA_SPACE (32ULL << 20)          /* slots and accesses fall in [0, 32 MiB) */
#define NR_VCPUS 2
#define MAX_OPS 400


struct slot_model {
	int used;
	uint64_t gpa, npages;
	uint32_t flags;
	uint8_t dirty[SLOT_MAX_PAGES]; /* written since the last harvest (logging slots) */
};

struct fuzz_state {
	struct vmmu_vm *vm;
	struct vmmu_mmu *mmu;
	struct vmmu_vcpu *vcpu[NR_VCPUS];
	uint32_t mode;
	struct slot_model slot[NR_SLOTS];
};

static struct vmmu_guestmem mem; /* NR_SLOTS * SLOT_HOST bytes, mapped once */

static uint8_t *slot_hva(unsigned int id)
{
	return (uint8_t *)mem.hva + id * SLOT_HOST;
}

static int find_slot(const struct fuzz_state *s, uint64_t gpa)
{
	for (int i = 0; i < NR_SLOTS; i++)
		if (s->slot[i].used && gpa >= s->slot[i].gpa && gpa < s->slot[i].gpa + s->slot[i].npages * 4096)
			return i;
	return -1;
}

static void op_add(struct fuzz_state *s, const uint8_t *a)
{
	unsigned int id = a[0] % NR_SLOTS;
	uint64_t npages = 1 + (((uint64_t)a[1] << 1 | (a[0] >> 7)) % SLOT_MAX_PAGES);
	uint64_t gpa;
	uint32_t flags = (a[0] >> 2) & VMMU_MEMSLOT_FLAGS_ALL;
	bool ok = !s->slot[id].used;
	int r;

	/* half of the slots start 2 MiB aligned with 2 MiB (huge leaves possible) */
	if (a[0] & 0x40) {
		gpa = (uint64_t)(a[2] % (GPA_SPACE >> 21)) << 21;
		npages = SLOT_MAX_PAGES;
	} else {
		gpa = ((uint64_t)a[2] << 4 | (a[1] & 0xf)) % (GPA_SPACE / 4096) * 4096;
	}
	for (int i = 0; i < NR_SLOTS; i++)
		if (s->slot[i].used && gpa < s->slot[i].gpa + s->slot[i].npages * 4096 &&
		    s->slot[i].gpa < gpa + npages * 4096)
			ok = false;
	r = vmmu_vm_memslot_add(s->vm, id, gpa, npages * 4096, slot_hva(id), flags);
	if (!ok) {
		CHECK(r == -EEXIST);
		return;
	}
	CHECK(r == 0);
	s->slot[id] = (struct slot_model){ .used = 1, .gpa = gpa, .npages = npages, .flags = flags };
}

static void op_remove(struct fuzz_state *s, const uint8_t *a)
{
	unsigned int id = a[0] % NR_SLOTS;
	int r = vmmu_vm_memslot_remove(s->vm, id);

	CHECK(r == (s->slot[id].used ? 0 : -ENOENT));
	s->slot[id].used = 0;
}

static void op_set_flags(struct fuzz_state *s, const uint8_t *a)
{
	unsigned int id = a[0] % NR_SLOTS;
	uint32_t flags = a[1] & VMMU_MEMSLOT_FLAGS_ALL;
	struct slot_model *m = &s->slot[id];
	int r = vmmu_vm_memslot_set_flags(s->vm, id, flags);

	if (!m->used) {
		CHECK(r == -ENOENT);
		return;
	}
	if ((flags ^ m->flags) & VMMU_MEMSLOT_READONLY) {
		CHECK(r == -EINVAL);
		return;
	}
	CHECK(r == 0);
	if ((flags & ~m->flags) & VMMU_MEMSLOT_LOG_DIRTY)
		memset(m->dirty, 0, sizeof(m->dirty)); /* logging starts afresh */
	m->flags = flags;
}

/* A ring-full access: harvest every ring, reset them, and let the caller retry. */
static void drain_rings(struct fuzz_state *s)
{
	for (int i = 0; i < NR_VCPUS; i++)
		CHECK(vmmu_vcpu_dirty_harvest(s->vcpu[i]) >= 0);
	CHECK(vmmu_vm_dirty_reset(s->vm) >= 0);
}

static void op_access(struct fuzz_state *s, const uint8_t *a, bool write)
{
	unsigned int cpu = a[0] & 1, size = 1u << ((a[0] >> 1) & 3);
	int id = (a[0] >> 3) % (NR_SLOTS + 1);
	uint64_t gpa, v = 0, expect = 0;
	struct slot_model *m;
	int r, tries = 0;

	if (id < NR_SLOTS && s->slot[id].used)
		gpa = s->slot[id].gpa + ((uint64_t)a[1] << 8 | a[2]) % s->slot[id].npages * 4096;
	else
		gpa = ((uint64_t)a[1] << 8 | a[2]) % (GPA_SPACE / 4096) * 4096;
	gpa += ((uint64_t)a[0] << 4) & 0xff8 & ~(uint64_t)(size - 1);
	id = find_slot(s, gpa);
	m = id >= 0 ? &s->slot[id] : NULL;
	if (write)
		v = mix(gpa ^ ((uint64_t)a[0] << 56) ^ (uint64_t)a[2] << 40);
	do {
		r = vmmu_soft_access(s->vcpu[cpu], gpa, size, write ? VMMU_SOFT_WRITE : VMMU_SOFT_READ, 0, &v, NULL);
		if (r == VMMU_SOFT_DIRTY_RING_FULL)
			drain_rings(s);
	} while (r == VMMU_SOFT_DIRTY_RING_FULL && ++tries < 4);
	if (!m || (write && (m->flags & VMMU_MEMSLOT_READONLY))) {
		CHECK(r == VMMU_SOFT_MMIO);
		return;
	}
	CHECK(r == VMMU_SOFT_OK);
	memcpy(&expect, slot_hva(id) + (gpa - m->gpa), size);
	if (write) {
		CHECK(memcmp(&expect, &v, size) == 0);
		if (m->flags & VMMU_MEMSLOT_LOG_DIRTY)
			m->dirty[(gpa - m->gpa) / 4096] = 1;
	} else {
		CHECK(memcmp(&expect, &v, size) == 0);
	}
}

/* The VMM writes guest memory itself and marks the page (migration's rule). */
static void op_vmm_write(struct fuzz_state *s, const uint8_t *a)
{
	unsigned int id = a[0] % NR_SLOTS;
	struct slot_model *m = &s->slot[id];
	uint64_t page, v = mix((uint64_t)a[1] << 8 | a[2]);
	int r;

	if (!m->used)
		return;
	page = ((uint64_t)a[1] << 8 | a[2]) % m->npages;
	memcpy(slot_hva(id) + page * 4096 + (a[1] & 0xf8), &v, 8);
	r = vmmu_vm_dirty_mark(s->vm, m->gpa + page * 4096, 8);
	if (m->flags & VMMU_MEMSLOT_LOG_DIRTY) {
		CHECK(r == 1);
		m->dirty[page] = 1;
	} else {
		CHECK(r == -EPERM);
	}
}

static void op_harvest(struct fuzz_state *s, const uint8_t *a)
{
	unsigned int id = a[0] % NR_SLOTS;
	struct slot_model *m = &s->slot[id];
	uint64_t bitmap[SLOT_MAX_PAGES / 64];
	int r = vmmu_vm_dirty_get(s->vm, id, bitmap);

	if (!m->used) {
		CHECK(r == -ENOENT);
		return;
	}
	if (!(m->flags & VMMU_MEMSLOT_LOG_DIRTY)) {
		CHECK(r == -EPERM);
		return;
	}
	CHECK(r == 0);
	for (uint64_t p = 0; p < m->npages; p++)
		if (m->dirty[p])
			CHECK(bitmap[p / 64] >> (p % 64) & 1); /* a lost write */
	memset(m->dirty, 0, sizeof(m->dirty));
}

static void op_zap_age(struct fuzz_state *s, const uint8_t *a)
{
	uint64_t start = ((uint64_t)a[1] << 8 | a[2]) % (GPA_SPACE / 4096);
	uint64_t end = start + ((uint64_t)1 << (a[0] % 12));

	switch ((a[0] >> 4) & 3) {
	case 0:
		CHECK(vmmu_mmu_zap_gfn_range(s->mmu, start, end) >= 0);
		break;
	case 1:
		CHECK(vmmu_mmu_zap_all(s->mmu) == 0);
		break;
	default:
		CHECK(vmmu_mmu_age_gfn_range(s->mmu, start, end, a[0] & 0x40) >= 0);
		break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint32_t modes[] = { VMMU_PAGING_EPT4, VMMU_PAGING_EPT5, VMMU_PAGING_4LEVEL,
					  VMMU_PAGING_5LEVEL };
	struct vmmu_vm_options o = { .size = sizeof(o), .ring_entries = 256 };
	struct vmmu_mmu_options mo = { .size = sizeof(mo) };
	struct fuzz_state *s;
	size_t nops;

	if (size < 2)
		return 0;
	if (!mem.hva && vmmu_guestmem_init(&mem, NR_SLOTS * SLOT_HOST, VMMU_GUESTMEM_DEFAULT) != 0)
		abort();
	if (!getenv("FUZZ_SOFT_LOG"))
		vmmu_set_log(NULL, VMMU_LOG_ERROR, NULL); /* expected refusals log; keep the output readable */
	mo.mode = modes[data[0] & 3];
	mo.ad_disabled = (data[0] & 4) && mo.mode >= VMMU_PAGING_EPT4;
	mo.max_leaf_level = 1 + (data[0] >> 3) % 3;
	if (mo.max_leaf_level == 1 && mo.mode < VMMU_PAGING_EPT4)
		mo.max_leaf_level = 2; /* 4 KiB-only leaves are an EPT option (spte.h) */
	mo.flags = (data[0] >> 5) & (VMMU_MMU_F_NO_MMIO_CACHE | VMMU_MMU_F_NO_HUGE);
	o.dirty_mode = data[1] % 3;
	s = calloc(1, sizeof(*s));
	if (!s)
		abort();
	s->mode = o.dirty_mode;
	CHECK(vmmu_soft_vm_create(&s->vm, &o, &mo) == 0);
	s->mmu = vmmu_soft_mmu(s->vm);
	for (unsigned int i = 0; i < NR_VCPUS; i++)
		CHECK(vmmu_vcpu_create(s->vm, i, &s->vcpu[i]) == 0);

	nops = (size - 2) / 4;
	if (nops > MAX_OPS)
		nops = MAX_OPS;
	for (size_t i = 0; i < nops; i++) {
		const uint8_t *op = data + 2 + i * 4;

		switch (op[0] % 10) {
		case 0:
			op_add(s, op + 1);
			break;
		case 1:
			op_remove(s, op + 1);
			break;
		case 2:
			op_set_flags(s, op + 1);
			break;
		case 3:
		case 4:
			op_access(s, op + 1, false);
			break;
		case 5:
		case 6:
			op_access(s, op + 1, true);
			break;
		case 7:
			op_vmm_write(s, op + 1);
			break;
		case 8:
			op_harvest(s, op + 1);
			break;
		default:
			op_zap_age(s, op + 1);
			break;
		}
		CHECK(vmmu_mmu_audit(s->mmu) == 0);
	}
	vmmu_vm_destroy(s->vm);
	free(s);
	return 0;
}
