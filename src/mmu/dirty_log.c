/* SPDX-License-Identifier: MIT */
/*
 * Dirty logging and aging.
 *
 * Harvests (get-and-clear, clear, ring reset) are serialized by dirty_lock and
 * run their re-protection under the MMU lock: for each page reported, clear W
 * on its 4 KiB SPTEs (MMU-writable stays, so the next write is fixed on the
 * fast path and logged), and make the huge leaves covering the first and last
 * page of each reported word read-only (slots logging in INITIALLY_SET mode
 * may still have them). The TLB flush follows outside the lock, before the
 * call returns, whenever anything was harvested (KVM's rule), so no write
 * through a stale writable translation can land after the caller read the
 * page contents without being logged.
 */

#include <errno.h>

#include "mmu_internal.h"

struct rearm_ctx {
	struct vmmu_mmu *mmu;
	uint64_t pages;
};

static void wrprot_head(struct vmmu_rmap_head *h)
{
	struct vmmu_rmap_iter it;
	uint64_t *sptep;

	if (!h)
		return;
	vmmu_rmap_for_each(&it, h, sptep)
		spte_and(sptep, ~VMMU_SPTE_WRITABLE);
}

void mmu_rearm_dirty(uint32_t slot, uint64_t offset, uint64_t mask, void *opaque)
{
	struct rearm_ctx *c = opaque;
	struct mmu_slot *s = slot < c->mmu->nr_slot ? c->mmu->slot[slot] : NULL;
	vmmu_gfn_t first, last;

	if (!s || !mask)
		return;
	first = s->base_gfn + offset + (uint64_t)__builtin_ctzll(mask);
	last = s->base_gfn + offset + 63 - (uint64_t)__builtin_clzll(mask);
	c->pages += (uint64_t)__builtin_popcountll(mask);
	for (uint64_t m = mask; m; m &= m - 1)
		wrprot_head(mmu_rmap_head(s, s->base_gfn + offset + (uint64_t)__builtin_ctzll(m), 1));
	for (int level = 2; level <= VMMU_RMAP_MAX_LEVEL; level++) {
		wrprot_head(mmu_rmap_head(s, first, level));
		if ((first ^ last) >> (9 * (level - 1)))
			wrprot_head(mmu_rmap_head(s, last, level));
	}
}

bool mmu_slot_wrprot_all(struct vmmu_mmu *mmu, struct mmu_slot *s)
{
	bool changed = false;

	for (int level = 1; level <= VMMU_RMAP_MAX_LEVEL; level++) {
		uint64_t step = level_pages(level);

		for (vmmu_gfn_t g = s->base_gfn; g < s->base_gfn + s->npages; g = (g & ~(step - 1)) + step) {
			struct vmmu_rmap_iter it;
			uint64_t *sptep;

			vmmu_rmap_for_each(&it, mmu_rmap_head(s, g, level), sptep)
				changed |= (spte_and(sptep, ~VMMU_SPTE_WRITABLE) & VMMU_SPTE_WRITABLE) != 0;
		}
	}
	return changed;
}

/* The bitmap slot @id for a dirty-log call, with slots_lock held for read; NULL and *ret on error. */
static struct mmu_slot *log_slot(struct vmmu_mmu *mmu, uint32_t id, const void *buf, const char *what, int64_t *ret)
{
	struct mmu_slot *s;

	*ret = -EINVAL;
	if (!mmu || !buf) {
		log_err("mmu: %s: NULL argument", what);
		return NULL;
	}
	if (mmu->opts.dirty != VMMU_MMU_DIRTY_BITMAP) {
		log_err("mmu: %s: this MMU logs dirty pages in rings", what);
		*ret = -EOPNOTSUPP;
		return NULL;
	}
	pthread_rwlock_rdlock(&mmu->slots_lock);
	s = id < mmu->nr_slot ? mmu->slot[id] : NULL;
	if (!s) {
		log_err("mmu: %s: no slot %u", what, id);
		*ret = -ENOENT;
	} else if (!s->dirty) {
		log_err("mmu: %s: dirty logging is off on slot %u", what, id);
		*ret = -EPERM;
		s = NULL;
	}
	if (!s)
		pthread_rwlock_unlock(&mmu->slots_lock);
	return s;
}

static void harvest_end(struct vmmu_mmu *mmu, int64_t n)
{
	if (n > 0)
		mmu_flush_request(mmu);
	pthread_mutex_unlock(&mmu->lock);
	mmu_flush_commit(mmu);
	pthread_mutex_unlock(&mmu->dirty_lock);
	pthread_rwlock_unlock(&mmu->slots_lock);
}

int64_t vmmu_mmu_dirty_log_get(struct vmmu_mmu *mmu, uint32_t id, uint64_t *buf)
{
	struct rearm_ctx c = { .mmu = mmu };
	struct mmu_slot *s;
	int64_t n;

	s = log_slot(mmu, id, buf, "dirty_log_get", &n);
	if (!s)
		return n;
	pthread_mutex_lock(&mmu->dirty_lock);
	pthread_mutex_lock(&mmu->lock);
	n = vmmu_dirty_bitmap_get_and_clear(s->dirty, buf, mmu_rearm_dirty, &c);
	harvest_end(mmu, n);
	return n;
}

int64_t vmmu_mmu_dirty_log_peek(struct vmmu_mmu *mmu, uint32_t id, uint64_t *buf)
{
	struct mmu_slot *s;
	int64_t n;

	s = log_slot(mmu, id, buf, "dirty_log_peek", &n);
	if (!s)
		return n;
	n = vmmu_dirty_bitmap_get(s->dirty, buf);
	pthread_rwlock_unlock(&mmu->slots_lock);
	return n;
}

int64_t vmmu_mmu_dirty_log_clear(struct vmmu_mmu *mmu, uint32_t id, uint64_t first, uint64_t npages,
				 const uint64_t *mask)
{
	struct rearm_ctx c = { .mmu = mmu };
	struct mmu_slot *s;
	int64_t n;

	s = log_slot(mmu, id, mask, "dirty_log_clear", &n);
	if (!s)
		return n;
	pthread_mutex_lock(&mmu->dirty_lock);
	pthread_mutex_lock(&mmu->lock);
	n = vmmu_dirty_bitmap_clear(s->dirty, first, npages, mask, mmu_rearm_dirty, &c);
	harvest_end(mmu, n);
	return n;
}

int vmmu_mmu_vcpu_dirty_harvest(struct vmmu_mmu_vcpu *v, struct vmmu_dirty_gfn *out, uint32_t max)
{
	if (!v || (!out && max)) {
		log_err("mmu: dirty_harvest: NULL argument");
		return -EINVAL;
	}
	if (!v->ring) {
		log_err("mmu: dirty_harvest: this MMU logs dirty pages in bitmaps");
		return -EOPNOTSUPP;
	}
	return vmmu_dirty_ring_harvest(v->ring, out, max);
}

int vmmu_mmu_dirty_ring_reset(struct vmmu_mmu *mmu)
{
	struct rearm_ctx c;
	int64_t n = 0;

	if (!mmu) {
		log_err("mmu: dirty_ring_reset: NULL MMU");
		return -EINVAL;
	}
	if (mmu->opts.dirty != VMMU_MMU_DIRTY_RING) {
		log_err("mmu: dirty_ring_reset: this MMU logs dirty pages in bitmaps");
		return -EOPNOTSUPP;
	}
	c.mmu = mmu;
	pthread_rwlock_rdlock(&mmu->slots_lock);
	pthread_mutex_lock(&mmu->dirty_lock);
	pthread_mutex_lock(&mmu->lock);
	pthread_mutex_lock(&mmu->vcpus_lock);
	for (unsigned int i = 0; i < mmu->nr_vcpus; i++) {
		struct vmmu_mmu_vcpu *v = mmu->vcpus[i];
		int r;

		pthread_mutex_lock(&v->ring_lock);
		r = vmmu_dirty_ring_reset(v->ring, mmu_rearm_dirty, &c);
		pthread_mutex_unlock(&v->ring_lock);
		if (r > 0)
			n += r;
	}
	pthread_mutex_unlock(&mmu->vcpus_lock);
	harvest_end(mmu, n);
	return (int)n;
}

/* ------------------------------------------------------------------ aging */

struct age_ctx {
	const struct vmmu_spte_format *fmt;
	bool clear;
	int64_t young;
};

static int age_one(uint64_t *sptep, void *opaque)
{
	struct age_ctx *c = opaque;
	uint64_t spte = spte_get(sptep);

	for (;;) {
		uint64_t old_spte;

		if (!(spte & VMMU_SPTE_MMU_PRESENT) || !vmmu_spte_is_accessed(c->fmt, spte))
			return 0;
		if (!c->clear)
			break;
		old_spte = vmmu_spte_mark_access_track(c->fmt, spte);
		if (spte_cmpxchg(sptep, &spte, old_spte))
			break;
	}
	c->young++;
	return 0;
}

int64_t vmmu_mmu_age_gfn_range(struct vmmu_mmu *mmu, vmmu_gfn_t start, vmmu_gfn_t end, bool clear)
{
	struct age_ctx c = { .clear = clear };

	if (!mmu || start > end) {
		log_err("mmu: age_gfn_range: NULL MMU or empty range");
		return -EINVAL;
	}
	c.fmt = &mmu->fmt;
	pthread_rwlock_rdlock(&mmu->slots_lock);
	for (uint32_t i = 0; i < mmu->nr_slot; i++) {
		struct mmu_slot *s = mmu->slot[i];
		vmmu_gfn_t lo, hi;

		if (!s)
			continue;
		lo = start > s->base_gfn ? start : s->base_gfn;
		hi = end < s->base_gfn + s->npages ? end : s->base_gfn + s->npages;
		for (int level = 1; level <= VMMU_RMAP_MAX_LEVEL && lo < hi; level++) {
			uint64_t step = level_pages(level);

			for (vmmu_gfn_t g = lo; g < hi; g = (g & ~(step - 1)) + step)
				vmmu_rmap_walk_lockless(mmu_rmap_head(s, g, level), age_one, &c);
		}
	}
	pthread_rwlock_unlock(&mmu->slots_lock);
	return c.young;
}
