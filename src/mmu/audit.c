/* SPDX-License-Identifier: MIT */
/* vmmu_mmu_audit(): every invariant of the tables, rmaps and dirty logs, checked under the locks. */

#include <errno.h>

#include "mmu_internal.h"

#define AUDIT_MAX_REPORTS 16

struct audit {
	struct vmmu_mmu *mmu;
	unsigned int problems;
	uint64_t leaves, rmap_entries;
};

#define PROBLEM(a, ...)                                       \
	do {                                                  \
		if ((a)->problems++ < AUDIT_MAX_REPORTS)      \
			log_err("mmu audit: " __VA_ARGS__);   \
	} while (0)

static bool rmap_has(struct vmmu_rmap_head *h, uint64_t *sptep)
{
	struct vmmu_rmap_iter it;
	uint64_t *p;

	vmmu_rmap_for_each(&it, h, p)
		if (p == sptep)
			return true;
	return false;
}

static void audit_leaf(struct audit *a, struct mmu_page *sp, unsigned int i, uint64_t spte)
{
	struct vmmu_mmu *mmu = a->mmu;
	const struct vmmu_spte_format *fmt = &mmu->fmt;
	int level = sp->role.level;
	uint64_t *sptep = &mmu_page_spt(sp)[i];
	vmmu_gfn_t gfn = sp->shadowed ? sp->shadowed[i] >> VMMU_PAGE_SHIFT : mmu_page_entry_gfn(sp, i);
	struct mmu_slot *s = mmu_slot_of(mmu, gfn);
	unsigned long long g = gfn;

	a->leaves++;
	if (!s) {
		PROBLEM(a, "leaf for gfn 0x%llx (level %d) outside every slot", g, level);
		return;
	}
	if (vmmu_spte_to_pfn(fmt, spte) != ((uintptr_t)s->hva >> VMMU_PAGE_SHIFT) + (gfn - s->base_gfn))
		PROBLEM(a, "leaf for gfn 0x%llx maps the wrong host page", g);
	if (!rmap_has(mmu_rmap_head(s, gfn, level), sptep))
		PROBLEM(a, "leaf for gfn 0x%llx level %d missing from its rmap", g, level);
	if ((spte & VMMU_SPTE_WRITABLE) && !vmmu_spte_is_mmu_writable(fmt, spte))
		PROBLEM(a, "gfn 0x%llx: W without MMU-writable", g);
	if (vmmu_spte_is_mmu_writable(fmt, spte) && !vmmu_spte_is_host_writable(fmt, spte))
		PROBLEM(a, "gfn 0x%llx: MMU-writable without host-writable", g);
	if (vmmu_spte_is_host_writable(fmt, spte) && (s->flags & VMMU_MEMSLOT_READONLY))
		PROBLEM(a, "gfn 0x%llx: host-writable in a read-only slot", g);
	if (vmmu_spte_is_mmu_writable(fmt, spte) && mmu_gfn_write_tracked(s, gfn))
		PROBLEM(a, "gfn 0x%llx: writable SPTE to a shadowed guest table", g);
	/*
	 * Dirty pages accounted: a writable leaf in a logging slot has every page
	 * it maps dirty in the bitmap (a huge one only before the first clear of
	 * INITIALLY_SET). Rings cannot be checked page by page; there a writable
	 * huge leaf alone is the error.
	 */
	if ((spte & VMMU_SPTE_WRITABLE) && (s->flags & VMMU_MEMSLOT_LOG_DIRTY)) {
		if (!s->dirty && level > 1)
			PROBLEM(a, "gfn 0x%llx: writable huge leaf in a logging slot", g);
		for (uint64_t p = 0; s->dirty && p < level_pages(level); p++)
			if (vmmu_dirty_bitmap_test(s->dirty, gfn + p - s->base_gfn) != 1) {
				PROBLEM(a, "gfn 0x%llx: writable (level %d) in a logging slot but not dirty in the log",
					g + p, level);
				break;
			}
	}
}

static void audit_page(struct audit *a, struct mmu_page *sp)
{
	const struct vmmu_spte_format *fmt = &a->mmu->fmt;
	uint64_t *spt = mmu_page_spt(sp);

	for (unsigned int i = 0; i < MMU_SPTES; i++) {
		uint64_t spte = spte_get(&spt[i]);

		if (!(spte & VMMU_SPTE_MMU_PRESENT)) {
			if ((spte & fmt->hw_present) && !vmmu_spte_is_mmio(fmt, spte) &&
			    !shadow_spte_is_trap(a->mmu, spte))
				PROBLEM(a, "entry %u of a level-%d table is visible to hardware but not MMU-present", i,
					sp->role.level);
			continue;
		}
		if (vmmu_spte_is_rsvd(fmt, spte, sp->role.level))
			PROBLEM(a, "entry %u of a level-%d table has reserved bits", i, sp->role.level);
		if (vmmu_spte_is_leaf(fmt, spte, sp->role.level)) {
			audit_leaf(a, sp, i, spte);
		} else {
			struct mmu_page *child = mmu_page_of(spte_to_child(spte));

			if (!child->on_list || child->role.level != sp->role.level - 1)
				PROBLEM(a, "entry %u of a level-%d table points at a dead or misplaced table", i,
					sp->role.level);
			else if (!rmap_has(&child->parent_ptes, &spt[i]))
				PROBLEM(a, "entry %u of a level-%d table missing from its child's parents", i,
					sp->role.level);
		}
	}
}

/* Every rmap entry is an MMU-present leaf of its level mapping a frame of its head. */
static void audit_rmaps(struct audit *a, struct mmu_slot *s)
{
	const struct vmmu_spte_format *fmt = &a->mmu->fmt;

	for (int level = 1; level <= VMMU_RMAP_MAX_LEVEL; level++) {
		uint64_t step = level_pages(level);

		for (vmmu_gfn_t g = s->base_gfn; g < s->base_gfn + s->npages; g = (g & ~(step - 1)) + step) {
			struct vmmu_rmap_iter it;
			uint64_t *sptep;

			vmmu_rmap_for_each(&it, mmu_rmap_head(s, g, level), sptep) {
				struct mmu_page *sp = sptep_to_page(sptep);
				uint64_t spte = spte_get(sptep);
				unsigned int i = sptep_index(sptep);
				vmmu_gfn_t gfn = sp->shadowed ? sp->shadowed[i] >> 12 : mmu_page_entry_gfn(sp, i);

				a->rmap_entries++;
				if (!(spte & VMMU_SPTE_MMU_PRESENT) || !vmmu_spte_is_leaf(fmt, spte, sp->role.level) ||
				    sp->role.level != level || (gfn >> (9 * (level - 1))) != (g >> (9 * (level - 1))))
					PROBLEM(a, "rmap of gfn 0x%llx level %d holds a stale SPTE", (unsigned long long)g,
						level);
			}
		}
	}
}

int vmmu_mmu_audit(struct vmmu_mmu *mmu)
{
	struct audit a = { .mmu = mmu };

	if (!mmu) {
		log_err("mmu: audit: NULL MMU");
		return -EINVAL;
	}
	pthread_rwlock_rdlock(&mmu->slots_lock);
	pthread_mutex_lock(&mmu->dirty_lock);
	pthread_mutex_lock(&mmu->lock);
	for (struct mmu_page *sp = mmu->active.next; sp != &mmu->active; sp = sp->next)
		audit_page(&a, sp);
	for (uint32_t i = 0; i < mmu->nr_slot; i++)
		if (mmu->slot[i])
			audit_rmaps(&a, mmu->slot[i]);
	a.problems += shadow_audit(mmu);
	if (a.rmap_entries != a.leaves)
		PROBLEM(&a, "%llu rmap entries for %llu present leaves", (unsigned long long)a.rmap_entries,
			(unsigned long long)a.leaves);
	pthread_mutex_unlock(&mmu->lock);
	pthread_mutex_unlock(&mmu->dirty_lock);
	pthread_rwlock_unlock(&mmu->slots_lock);
	return a.problems ? -EUCLEAN : 0;
}
