/* SPDX-License-Identifier: MIT */
/*
 * A deliberately simple reference model of x86 paging, for tests only.
 *
 * It evaluates the SDM's rules (vol. 3A ch. 4, vol. 3C ch. 29, AMD APM 15.25)
 * with plain if/else, one entry at a time, without precomputed tables, and
 * reads guest memory only through the public vmmu_memslots_read(). It does not
 * write memory: it reports what each entry should hold after the walk (A/D),
 * and the test compares that with what the walker left in memory.
 */
#ifndef VMMU_PAGING_REF_H
#define VMMU_PAGING_REF_H

#include <libvmmu/paging.h>

/* One paging-structure entry the reference read. */
struct ref_entry {
	vmmu_gpa_t gpa;  /* where the entry lives (in memory seen by the stage that reads it) */
	uint64_t before; /* as read */
	uint64_t after;  /* what memory must hold after the walk */
	bool pte32;
	bool in_memory;  /* false for PAE PDPTE registers */
};

#define REF_MAX_ENTRIES 40

struct ref_out {
	int outcome;                  /* enum vmmu_walk_outcome */
	vmmu_gpa_t gpa;               /* OK */
	vmmu_gpa_t guest_gpa;         /* OK, nested: the first-stage translation */
	uint64_t page_size;
	unsigned int level;           /* OK: leaf level */
	unsigned int access;          /* OK: VMMU_ACC_* */
	uint64_t error_code;          /* PAGE_FAULT / NPF */
	uint64_t cr2;
	uint64_t exit_qualification;
	vmmu_gpa_t fault_gpa;
	/* the last successful second-stage translation */
	uint64_t tdp_page_size;
	unsigned int tdp_level, tdp_access;
	unsigned int n;               /* entries read, both stages, in order */
	struct ref_entry e[REF_MAX_ENTRIES];
};

/* A second stage for the reference: EPT or NPT. */
struct ref_tdp {
	bool ept;
	/* EPT */
	uint64_t eptp;
	uint32_t ept_flags;
	/* NPT */
	uint64_t ncr3;
	unsigned int levels;
	bool nxe, gbpages;
	unsigned int maxphyaddr;
};

/*
 * ref_walk() - walk @gva for @access (VMMU_WALK_*) with the registers @regs,
 * optionally through the second stage @tdp (NULL: none).
 * @pdptrs: PAE PDPTE registers as the context loaded them (NULL: not PAE).
 */
void ref_walk(const struct vmmu_memslots *mem, const struct vmmu_paging_regs *regs, const uint64_t *pdptrs,
	      const struct ref_tdp *tdp, uint64_t gva, uint32_t access, struct ref_out *out);

/* ref_walk_tdp() - a second stage walked on its own (the GPA is the input). */
void ref_walk_tdp(const struct vmmu_memslots *mem, const struct ref_tdp *tdp, uint64_t gpa, uint32_t access,
		  struct ref_out *out);

/*
 * ref_check_memory() - compare every entry's expected value with guest memory.
 * Returns the index of the first entry that differs, or -1.
 */
int ref_check_memory(const struct vmmu_memslots *mem, const struct ref_out *out);

/* Guest memory for tests: one slot at @base, tables allocated upwards from @base. */
struct ref_guest {
	struct vmmu_memslots *mem;
	uint8_t *ram;
	vmmu_gpa_t base, next;
	uint64_t size;
};

int ref_guest_init(struct ref_guest *g, vmmu_gpa_t base, uint64_t size);
void ref_guest_fini(struct ref_guest *g);
vmmu_gpa_t ref_guest_alloc(struct ref_guest *g); /* a zeroed page; aborts when full */
void *ref_guest_ptr(struct ref_guest *g, vmmu_gpa_t gpa);
uint64_t ref_get(struct ref_guest *g, vmmu_gpa_t gpa);
void ref_set(struct ref_guest *g, vmmu_gpa_t gpa, uint64_t v);

/*
 * ref_map() - map @va to @pa in 8-byte-entry tables rooted at @root (@levels
 * deep), with a leaf at @leaf_level (PS added above level 1). Missing tables
 * are allocated with @table_bits. Returns the GPA of the leaf entry.
 */
vmmu_gpa_t ref_map(struct ref_guest *g, vmmu_gpa_t root, unsigned int levels, uint64_t va, uint64_t pa,
		   unsigned int leaf_level, uint64_t table_bits, uint64_t leaf_bits);

#endif
