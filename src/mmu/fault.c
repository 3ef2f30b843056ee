/* SPDX-License-Identifier: MIT */
/*
 * Page faults on the tables the MMU builds, direct (TDP) mode:
 *  1. an MMIO fault (reserved bit / EPT misconfiguration) is checked first on
 *     a lockless walk: an MMIO SPTE of the current memslot generation is
 *     emulated at once, with no memslot lookup;
 *  2. a write (or, with A/D off, an access-tracked SPTE) tries the lockless
 *     fast path: compare-and-swap W onto an MMU-writable leaf and mark the
 *     page dirty; never on a huge leaf of a slot that logs dirty pages;
 *  3. otherwise the slow path tops up the vCPU's caches, takes the MMU lock
 *     and maps the gfn (splitting a huge leaf where a smaller one is needed),
 *     or installs an MMIO SPTE where no memslot is.
 */

#include <errno.h>

#include "mmu_internal.h"

/* Walk @v's root to the last SPTE on the way to @gpa without the lock; inside walk_begin/end. */
static uint64_t *walk_lockless(struct vmmu_mmu_vcpu *v, vmmu_gpa_t gpa, int *level, uint64_t *spte)
{
	uint64_t *table, *sptep = NULL;
	int l;

	if (!v->root || atomic_load_explicit(&v->root->zapped, memory_order_relaxed))
		return NULL;
	table = mmu_page_spt(v->root);
	for (l = v->mmu->root_level; l >= 1; l--) {
		sptep = &table[spte_index(gpa, l)];
		*spte = spte_get(sptep);
		*level = l;
		if (!(*spte & VMMU_SPTE_MMU_PRESENT) || vmmu_spte_is_leaf(&v->mmu->fmt, *spte, l))
			break;
		table = spte_to_child(*spte);
	}
	return sptep;
}

/* Does @spte already allow the access of @f? */
static bool access_allowed(const struct vmmu_spte_format *fmt, const struct mmu_fault *f, uint64_t spte)
{
	if (!vmmu_spte_is_shadow_present(fmt, spte))
		return false;
	if (f->write && !(spte & VMMU_SPTE_WRITABLE))
		return false;
	if (f->exec && !(vmmu_spte_to_access(fmt, spte) & VMMU_ACC_EXEC))
		return false;
	if (f->read && !(vmmu_spte_to_access(fmt, spte) & VMMU_ACC_USER) && fmt->kind == VMMU_SPTE_KIND_EPT)
		return false;
	return true;
}

static bool ring_soft_full(struct vmmu_mmu_vcpu *v, struct mmu_slot *s)
{
	bool full;

	if (!v->ring || !(s->flags & VMMU_MEMSLOT_LOG_DIRTY))
		return false;
	pthread_mutex_lock(&v->ring_lock);
	full = vmmu_dirty_ring_soft_full(v->ring);
	pthread_mutex_unlock(&v->ring_lock);
	return full;
}

/* 1. An MMIO SPTE of the current generation: emulate. -EAGAIN: take the slow path. */
static int fault_mmio(struct vmmu_mmu_vcpu *v, struct mmu_fault *f)
{
	struct vmmu_mmu *mmu = v->mmu;
	uint64_t spte = VMMU_SPTE_NONPRESENT;
	int level;

	walk_begin(v);
	walk_lockless(v, f->addr, &level, &spte);
	walk_end(v);
	if (vmmu_spte_is_mmio(&mmu->fmt, spte)) {
		if (vmmu_spte_is_mmio_gen(&mmu->fmt, spte, vmmu_memslots_generation(mmu->slots))) {
			f->mmio_cached = true;
			stat_inc(&v->stats.mmio_hits);
			return VMMU_FAULT_EMULATE_MMIO;
		}
		stat_inc(&v->stats.mmio_stale);
		return -EAGAIN;
	}
	/* Replaced or zapped meanwhile: the access will tell. */
	return VMMU_FAULT_RETRY;
}

/* 2. The lockless fast path. -EAGAIN: take the slow path. */
static int fast_page_fault(struct vmmu_mmu_vcpu *v, struct mmu_fault *f)
{
	struct vmmu_mmu *mmu = v->mmu;
	const struct vmmu_spte_format *fmt = &mmu->fmt;

	for (int retry = 0; retry < 4; retry++) {
		uint64_t spte = VMMU_SPTE_NONPRESENT, new_spte, *sptep;
		struct mmu_slot *s = NULL;
		int level = 0;

		walk_begin(v);
		sptep = walk_lockless(v, f->addr, &level, &spte);
		if (!sptep || !(spte & VMMU_SPTE_MMU_PRESENT) || !vmmu_spte_is_leaf(fmt, spte, level)) {
			walk_end(v);
			return -EAGAIN;
		}
		new_spte = vmmu_spte_restore_access_track(fmt, spte);
		if (f->write && !(new_spte & VMMU_SPTE_WRITABLE)) {
			if (!vmmu_spte_is_mmu_writable(fmt, new_spte)) {
				walk_end(v);
				return -EAGAIN;
			}
			s = mmu_slot_of(mmu, f->gfn);
			/* Only the first 4 KiB would be logged: split it on the slow path instead. */
			if (!s || (level > 1 && (s->flags & VMMU_MEMSLOT_LOG_DIRTY))) {
				walk_end(v);
				return -EAGAIN;
			}
			if (ring_soft_full(v, s)) {
				walk_end(v);
				return VMMU_FAULT_RING_FULL;
			}
			new_spte |= VMMU_SPTE_WRITABLE;
		}
		if (new_spte == spte) {
			walk_end(v);
			if (!access_allowed(fmt, f, spte))
				return -EAGAIN;
			f->fast = true;
			return VMMU_FAULT_SPURIOUS;
		}
		if (!access_allowed(fmt, f, new_spte)) {
			walk_end(v);
			return -EAGAIN;
		}
		if (spte_cmpxchg(sptep, &spte, new_spte)) {
			walk_end(v);
			if (s)
				mmu_mark_dirty(mmu, v, s, f->gfn);
			f->fast = true;
			f->level = level;
			stat_inc(&v->stats.fast_fixed);
			return VMMU_FAULT_FIXED;
		}
		walk_end(v);
	}
	return -EAGAIN;
}

/* Largest leaf level for @f->gfn in its slot. */
static int max_mapping_level(struct vmmu_mmu *mmu, const struct mmu_fault *f)
{
	const struct mmu_slot *s = f->slot;
	uint64_t hva_pfn = f->pfn;

	if ((s->flags & VMMU_MEMSLOT_LOG_DIRTY) || (mmu->opts.flags & VMMU_MMU_F_NO_HUGE))
		return 1;
	for (int level = mmu->fmt.max_leaf_level; level > 1; level--) {
		uint64_t n = level_pages(level), shift = 9 * (level - 1);
		vmmu_gfn_t start = f->gfn & ~(n - 1);

		if (start < s->base_gfn || start + n > s->base_gfn + s->npages)
			continue;
		if ((hva_pfn ^ f->gfn) & (n - 1))
			continue;
		if (s->disallow_lpage[level - 2][(f->gfn >> shift) - (s->base_gfn >> shift)])
			continue;
		return level;
	}
	return 1;
}

/* Replace the huge leaf at *@sptep (level @level) by a table of its 512 pieces. -EAGAIN: refill rmaps. */
static int split_huge(struct vmmu_mmu_vcpu *v, uint64_t *sptep, int level, vmmu_gfn_t gfn0, unsigned int *need)
{
	struct vmmu_mmu *mmu = v->mmu;
	struct mmu_slot *s = mmu_slot_of(mmu, gfn0);
	uint64_t huge = spte_get(sptep), step = level_pages(level - 1), *spt;
	union mmu_role role = sptep_to_page(sptep)->role;
	struct mmu_page *sp;
	unsigned int busy = 0;
	bool created;
	int ret;

	for (unsigned int i = 0; i < MMU_SPTES; i++)
		busy += vmmu_rmap_count(mmu_rmap_head(s, gfn0 + i * step, level - 1)) != 0;
	if (vmmu_rmap_cache_count(v->rmap_cache) < busy + 2) {
		*need = busy + 2;
		return -EAGAIN;
	}
	role.level = level - 1;
	sp = mmu_get_page(v, gfn0, role, &created);
	if (!sp)
		return -ENOMEM;
	spt = mmu_page_spt(sp);
	if (created) {
		uint64_t child[MMU_SPTES];

		ret = vmmu_spte_split(&mmu->fmt, huge, level, 0, child);
		if (ret)
			return ret;
		for (unsigned int i = 0; i < MMU_SPTES; i++) {
			vmmu_rmap_add(mmu_rmap_head(s, gfn0 + i * step, level - 1), &spt[i], v->rmap_cache);
			spte_set(&spt[i], child[i]);
		}
	}
	/* Drop the huge leaf's rmap entry, then point the entry at the table: the same memory, no flush. */
	vmmu_rmap_remove(mmu_rmap_head(s, gfn0, level), sptep, mmu->cache);
	spte_set(sptep, VMMU_SPTE_NONPRESENT);
	ret = mmu_link_page(mmu, sptep, sp, v->rmap_cache);
	if (!created)
		mmu_flush_request(mmu); /* a different table's contents: stale huge entries must go */
	atomic_fetch_add_explicit(&mmu->stat_splits, 1, memory_order_relaxed);
	return ret;
}

/* Map @f under the MMU lock. -EAGAIN: refill caches (*@need rmap descriptors) and retry. */
static int direct_map(struct vmmu_mmu_vcpu *v, struct mmu_fault *f, unsigned int *need)
{
	struct vmmu_mmu *mmu = v->mmu;
	const struct vmmu_spte_format *fmt = &mmu->fmt;
	uint64_t *table = mmu_page_spt(v->root), *sptep, spte, new_spte;
	int level, goal = f->slot ? f->max_level : 1, ret;

	for (level = mmu->root_level;; level--) {
		struct mmu_page *sp;
		bool created;

		sptep = &table[spte_index(f->addr, level)];
		spte = spte_get(sptep);
		if (level == goal)
			break;
		if (spte & VMMU_SPTE_MMU_PRESENT) {
			if (vmmu_spte_is_leaf(fmt, spte, level)) {
				vmmu_gfn_t gfn0 = f->gfn & ~(level_pages(level) - 1);

				ret = split_huge(v, sptep, level, gfn0, need);
				if (ret)
					return ret;
				spte = spte_get(sptep);
			}
			table = spte_to_child(spte);
			continue;
		}
		{
			union mmu_role role = sptep_to_page(sptep)->role;

			role.level = level - 1;
			sp = mmu_get_page(v, f->gfn & ~(level_pages(level) - 1), role, &created);
		}
		if (!sp)
			return -ENOMEM;
		ret = mmu_link_page(mmu, sptep, sp, v->rmap_cache);
		if (ret)
			return ret;
		table = mmu_page_spt(sp);
	}
	f->level = level;
	if (!f->slot) {
		if ((mmu->opts.flags & VMMU_MMU_F_NO_MMIO_CACHE) || f->gfn > fmt->max_mmio_gfn)
			return VMMU_FAULT_EMULATE_MMIO;
		if (spte & VMMU_SPTE_MMU_PRESENT)
			return VMMU_FAULT_RETRY; /* cannot happen: slots changed under slots_lock */
		if (vmmu_spte_make_mmio(fmt, f->gfn, f->access, vmmu_memslots_generation(mmu->slots), &new_spte))
			return VMMU_FAULT_EMULATE_MMIO;
		spte_set(sptep, new_spte);
		return VMMU_FAULT_EMULATE_MMIO;
	}
	/* A table where a huge leaf now fits (logging was turned off): drop it. */
	if ((spte & VMMU_SPTE_MMU_PRESENT) && !vmmu_spte_is_leaf(fmt, spte, level))
		mmu_zap_spte(mmu, sptep);
	{
		unsigned int flags = VMMU_SPTE_IPAT, access = f->access;
		uint64_t pfn = f->pfn & ~(level_pages(level) - 1);

		if (f->map_writable)
			flags |= VMMU_SPTE_HOST_WRITABLE;
		if (!mmu_gfn_write_tracked(f->slot, f->gfn))
			flags |= VMMU_SPTE_CAN_WRITE;
		ret = vmmu_spte_make_leaf(fmt, pfn, level, access, VMMU_SPTE_MT_WB, flags, &new_spte);
		if (ret < 0)
			return ret;
		/* A read in a logging slot: leave W for the fast path, so only written pages are logged. */
		if (!f->write && (f->slot->flags & VMMU_MEMSLOT_LOG_DIRTY))
			new_spte = vmmu_spte_wrprot_for_dirty_log(fmt, new_spte);
	}
	if (spte & VMMU_SPTE_MMU_PRESENT) {
		/* keep hardware-set A/D of the old leaf */
		new_spte |= spte & (fmt->accessed | fmt->dirty);
		if (vmmu_spte_is_access_track(fmt, new_spte))
			new_spte = vmmu_spte_restore_access_track(fmt, new_spte);
		if (new_spte == spte)
			return VMMU_FAULT_SPURIOUS;
	}
	ret = mmu_set_leaf(mmu, sptep, level, f->gfn & ~(level_pages(level) - 1), new_spte, v->rmap_cache);
	if (ret < 0) {
		*need = MMU_RMAP_CACHE_MIN;
		return ret == -ENOMEM ? -EAGAIN : ret;
	}
	if (new_spte & VMMU_SPTE_WRITABLE)
		mmu_mark_dirty(mmu, v, f->slot, f->gfn);
	atomic_fetch_add_explicit(&mmu->stat_mapped[level - 1], 1, memory_order_relaxed);
	return VMMU_FAULT_FIXED;
}

/* 3. The slow path. */
static int slow_page_fault(struct vmmu_mmu_vcpu *v, struct mmu_fault *f)
{
	struct vmmu_mmu *mmu = v->mmu;
	unsigned int need = MMU_RMAP_CACHE_MIN;
	int ret;

	for (int tries = 0;; tries++) {
		ret = mmu_topup_caches(v, need);
		if (ret)
			return ret;
		f->slot = mmu_slot_of(mmu, f->gfn);
		f->access = VMMU_ACC_ALL;
		if (f->slot) {
			f->pfn = ((uintptr_t)f->slot->hva >> VMMU_PAGE_SHIFT) + (f->gfn - f->slot->base_gfn);
			f->map_writable = !(f->slot->flags & VMMU_MEMSLOT_READONLY);
			if (f->write && !f->map_writable)
				return VMMU_FAULT_EMULATE_MMIO; /* a write to ROM: emulated, nothing mapped */
			if (f->write && ring_soft_full(v, f->slot))
				return VMMU_FAULT_RING_FULL;
			f->max_level = max_mapping_level(mmu, f);
		}
		pthread_mutex_lock(&mmu->lock);
		ret = mmu_load_root(v);
		if (!ret)
			ret = direct_map(v, f, &need);
		pthread_mutex_unlock(&mmu->lock);
		if (ret != -EAGAIN || tries > 4)
			return ret == -EAGAIN ? -ENOMEM : ret;
	}
}

int vmmu_mmu_page_fault(struct vmmu_mmu_vcpu *v, vmmu_gpa_t gpa, uint64_t ec, struct vmmu_fault_result *res)
{
	struct vmmu_mmu *mmu;
	int ret = -EAGAIN;

	if (!v) {
		log_err("mmu: page_fault: NULL vCPU");
		return -EINVAL;
	}
	mmu = v->mmu;
	if (mmu->shadow)
		return shadow_page_fault(v, gpa, ec, res);
	if (gpa >> mmu->fmt.maxphyaddr) {
		log_err("mmu: page_fault: gpa 0x%llx past MAXPHYADDR", (unsigned long long)gpa);
		return -EINVAL;
	}
	struct mmu_fault f = {
		.addr = gpa,
		.error_code = ec,
		.write = ec & VMMU_PFERR_WRITE,
		.exec = ec & VMMU_PFERR_FETCH,
		.read = !(ec & (VMMU_PFERR_WRITE | VMMU_PFERR_FETCH)),
		.rsvd = ec & VMMU_PFERR_RSVD,
		.present = ec & VMMU_PFERR_PRESENT,
		.gfn = vmmu_gpa_to_gfn(gpa),
	};

	pthread_rwlock_rdlock(&mmu->slots_lock);
	if (f.rsvd)
		ret = fault_mmio(v, &f);
	else if (f.write || mmu->opts.ad_disabled)
		ret = fast_page_fault(v, &f);
	if (ret == -EAGAIN)
		ret = slow_page_fault(v, &f);
	pthread_rwlock_unlock(&mmu->slots_lock);
	mmu_flush_commit(mmu);
	if (ret >= 0)
		stat_inc(&v->stats.faults[ret]);
	if (res) {
		*res = (struct vmmu_fault_result){ .gpa = gpa };
		res->level = (uint8_t)f.level;
		res->fast = f.fast;
		res->mmio_cached = f.mmio_cached;
	}
	return ret;
}
