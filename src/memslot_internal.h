/* SPDX-License-Identifier: MIT */
/* The memslot set's layout, for the library's hot paths (walker, MMU). */
#ifndef VMMU_MEMSLOT_INTERNAL_H
#define VMMU_MEMSLOT_INTERNAL_H

#include <stdatomic.h>

#include <libvmmu/memslot.h>

struct memslot {
	vmmu_gfn_t base_gfn;
	uint64_t npages;
	uint8_t *hva;
	uint32_t id;
	uint32_t flags;
};

struct vmmu_memslots {
	struct memslot *slot; /* sorted by base_gfn, non-overlapping */
	unsigned int nr, cap;
	atomic_uint last_hit; /* index of the slot found last; a hint only */
	uint64_t generation;
};

/* The slot holding @gfn, or NULL. Safe against concurrent lookups. */
const struct memslot *memslot_lookup(const struct vmmu_memslots *s, vmmu_gfn_t gfn);

#endif
