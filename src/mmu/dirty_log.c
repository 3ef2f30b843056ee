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
 *
 * Finding the SPTEs: while the MMU has only direct pages (TDP), the 4 KiB
 * leaves of a gfn live in the direct level-1 tables of its 512-page region,
 * at index gfn % 512, and nowhere else. The bitmap arrives a 64-page word at a
 * time, in order, so the tables of a region are looked up once in the page
 * hash (eight words share them) and each reported bit is one load, plus one
 * atomic AND where W is set. Huge leaves are taken from the rmaps once per
 * region. Once an indirect (shadow) page exists, a gfn may also be mapped by
 * indirect leaves, so every page goes through its rmap as before.
 */

#include <errno.h>

#include "mmu_internal.h"

/* Direct level-1 tables of one 512-page region remembered during a harvest (more: use the rmaps). */
#define REARM_TABLES 4

struct rearm_ctx {
	struct vmmu_mmu *mmu;
	/* the region whose level-1 tables are in @table (~0: none yet) */
	vmmu_gfn_t region;
	unsigned int nr_table;        /* > REARM_TABLES: too many, fall back to the rmaps */
	uint64_t *table[REARM_TABLES];
	/* per level 2..3, the last region (gfn >> 9 * (level - 1)) of @slot whose huge leaves were made read-only */
	struct mmu_slot *slot;
	vmmu_gfn_t huge_done[VMMU_RMAP_MAX_LEVEL + 1];
};

#define REARM_CTX(m) { .mmu = (m), .region = ~0ULL }

static void wrprot_head(struct vmmu_rmap_head *h)
{
	struct vmmu_rmap_iter it;
	uint64_t *sptep;

	if (!h)
		return;
	vmmu_rmap_for_each(&it, h, sptep)
		spte_and(sptep, ~VMMU_SPTE_WRITABLE);
}

/*
 * Find the direct level-1 tables mapping the 512 pages from @region. Under
 * the lock they cannot change, so one hash-chain scan serves every word of
 * the region. Only used while the MMU has no indirect page: then every 4 KiB
 * leaf for a gfn sits in such a table (at index gfn % 512), nowhere else.
 */
static void load_region(struct rearm_ctx *c, vmmu_gfn_t region)
{
	c->region = region;
	c->nr_table = 0;
	for (struct mmu_page *sp = c->mmu->hash[mmu_hash_of(region)]; sp; sp = sp->hash_next) {
		if (sp->gfn != region || sp->role.level != 1 || !sp->role.direct)
			continue;
		if (c->nr_table < REARM_TABLES)
			c->table[c->nr_table] = mmu_page_spt(sp);
		c->nr_table++;
	}
}

/* Clear W on the present SPTEs at the indices set in @mask (bit b = index @first + b) of @spt. */
static void wrprot_table_mask(uint64_t *spt, unsigned int first, uint64_t mask)
{
	uint64_t *p = spt + first;

	for (; mask; mask &= mask - 1) {
		uint64_t *sptep = p + __builtin_ctzll(mask);
		uint64_t spte = spte_get(sptep);

		/* non-present SPTEs (MMIO ones included) are left alone; read-only ones need no RMW */
		if ((spte & (VMMU_SPTE_MMU_PRESENT | VMMU_SPTE_WRITABLE)) == (VMMU_SPTE_MMU_PRESENT | VMMU_SPTE_WRITABLE))
			spte_and(sptep, ~VMMU_SPTE_WRITABLE);
	}
}

/* Level-1 protection of the pages @mask from @gfn (all inside one 512-page region). */
static void wrprot_4k(struct rearm_ctx *c, struct mmu_slot *s, vmmu_gfn_t gfn, uint64_t mask)
{
	vmmu_gfn_t region = gfn & ~(vmmu_gfn_t)511;

	if (!mask)
		return;
	if (!c->mmu->has_indirect) {
		if (region != c->region)
			load_region(c, region);
		if (c->nr_table <= REARM_TABLES) {
			for (unsigned int t = 0; t < c->nr_table; t++)
				wrprot_table_mask(c->table[t], (unsigned int)(gfn & 511), mask);
			return;
		}
	}
	for (uint64_t m = mask; m; m &= m - 1)
		wrprot_head(mmu_rmap_head(s, gfn + (uint64_t)__builtin_ctzll(m), 1));
}

/* Huge leaves covering @first and @last (ordered) at each level, once per region while one slot is harvested. */
static void wrprot_huge(struct rearm_ctx *c, struct mmu_slot *s, vmmu_gfn_t first, vmmu_gfn_t last)
{
	if (c->slot != s) {
		c->slot = s;
		for (int level = 0; level <= VMMU_RMAP_MAX_LEVEL; level++)
			c->huge_done[level] = ~0ULL;
	}
	for (int level = 2; level <= VMMU_RMAP_MAX_LEVEL; level++) {
		vmmu_gfn_t lo = first >> (9 * (level - 1)), hi = last >> (9 * (level - 1));

		if (lo != c->huge_done[level])
			wrprot_head(mmu_rmap_head(s, first, level));
		if (hi != lo)
			wrprot_head(mmu_rmap_head(s, last, level));
		c->huge_done[level] = hi;
	}
}

void mmu_rearm_dirty(uint32_t slot, uint64_t offset, uint64_t mask, void *opaque)
{
	struct rearm_ctx *c = opaque;
	struct mmu_slot *s = slot < c->mmu->nr_slot ? c->mmu->slot[slot] : NULL;
	vmmu_gfn_t gfn;
	unsigned int split;

	if (!s || !mask)
		return;
	gfn = s->base_gfn + offset;
	/* a slot base that is not 64-aligned makes a word straddle two regions */
	split = 512 - (unsigned int)(gfn & 511);
	if (likely(split >= 64)) {
		wrprot_4k(c, s, gfn, mask);
	} else {
		wrprot_4k(c, s, gfn, mask & ((1ULL << split) - 1));
		wrprot_4k(c, s, gfn + split, mask >> split);
	}
	wrprot_huge(c, s, gfn + (uint64_t)__builtin_ctzll(mask), gfn + 63 - (uint64_t)__builtin_clzll(mask));
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
	struct rearm_ctx c = REARM_CTX(mmu);
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
	struct rearm_ctx c = REARM_CTX(mmu);
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
	struct rearm_ctx c = REARM_CTX(mmu);
	int64_t n = 0;

	if (!mmu) {
		log_err("mmu: dirty_ring_reset: NULL MMU");
		return -EINVAL;
	}
	if (mmu->opts.dirty != VMMU_MMU_DIRTY_RING) {
		log_err("mmu: dirty_ring_reset: this MMU logs dirty pages in bitmaps");
		return -EOPNOTSUPP;
	}
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

static void age_head(struct vmmu_mmu *mmu, struct vmmu_rmap_head *h, void *opaque)
{
	(void)mmu;
	vmmu_rmap_walk_lockless(h, age_one, opaque);
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
	mmu_for_each_rmap_head(mmu, start, end, age_head, &c);
	pthread_rwlock_unlock(&mmu->slots_lock);
	return c.young;
}
