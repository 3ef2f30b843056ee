/* SPDX-License-Identifier: MIT */
/*
 * The layout of reverse maps, for the library and for test-side checkers.
 *
 * Head word encoding (struct vmmu_rmap_head.word):
 *   0                      empty
 *   bit 0 clear, non-zero  the word is the only SPTE pointer
 *   bit 0 set (RMAP_MANY)  (word & ~3) points at the head descriptor
 *   bit 1 (RMAP_LOCKED)    held by a lockless reader or a writer changing the list
 * SPTE pointers are 8-byte aligned and descriptors 64-byte aligned, so bits 1:0
 * are free in both forms.
 *
 * Descriptor chain invariants: every descriptor holds 1..14 entries in
 * sptes[0..count-1]; only the head descriptor may hold fewer than 14;
 * tail_count is the number of entries in all descriptors after this one, so
 * the total is head->count + head->tail_count. A descriptor is freed as soon as
 * it becomes empty, which can only happen to the head; a chain never goes back
 * to the single-pointer form except through empty.
 */
#ifndef VMMU_RMAP_INTERNAL_H
#define VMMU_RMAP_INTERNAL_H

#include <assert.h>
#include <stdbool.h>
#include <stdint.h>

#include <libvmmu/rmap.h>

#define RMAP_MANY ((uintptr_t)1 << 0)
#define RMAP_LOCKED ((uintptr_t)1 << 1)
#define RMAP_FLAGS (RMAP_MANY | RMAP_LOCKED)
#define RMAP_DESC_ALIGN 64

struct rmap_desc {
	struct rmap_desc *more;   /* next (older, full) descriptor, or NULL; free-list link in a cache */
	uint32_t count;           /* entries in this descriptor */
	uint32_t tail_count;      /* entries in all descriptors after this one */
	uint64_t *sptes[VMMU_RMAP_DESC_ENTRIES];
};

static_assert(sizeof(struct rmap_desc) == VMMU_RMAP_DESC_SIZE, "a descriptor is two cache lines");
static_assert(sizeof(uintptr_t) == sizeof(uint64_t *), "a head word holds a pointer");

static inline struct rmap_desc *rmap_word_desc(uintptr_t word)
{
	return (struct rmap_desc *)(word & ~RMAP_FLAGS);
}

/*
 * Fault injection for tests: when set, called before each descriptor
 * allocation; returning true makes that allocation fail as if malloc had.
 */
extern bool (*rmap_alloc_fail_hook)(void);

#endif
