/* SPDX-License-Identifier: MIT */
/*
 * The MMU core: creation, memslots, vCPUs, memory caches, shadow pages (hash,
 * link, zap), roots, TLB-flush requests and the deferred freeing of zapped
 * tables. Faults are in fault.c, dirty logging and aging in dirty_log.c, the
 * audit in audit.c. Locking and layout: mmu_internal.h.
 */

#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>

#if defined(__linux__)
#include <linux/membarrier.h>
#endif

#include "mmu_internal.h"

/* Register this process for expedited membarriers (once); false where unavailable. */
static bool membarrier_ready(void)
{
#if defined(__linux__) && defined(SYS_membarrier)
	static _Atomic int state; /* 0 unknown, 1 yes, -1 no; registering twice is harmless */

	if (!atomic_load(&state)) {
		long cmds = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);

		atomic_store(&state, cmds > 0 && (cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED) &&
			     syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0 ? 1 : -1);
	}
	return atomic_load(&state) > 0;
#else
	return false;
#endif
}

/* The flusher's side of walk_begin()'s barrier. */
static void flusher_fence(struct vmmu_mmu *mmu)
{
#if defined(__linux__) && defined(SYS_membarrier)
	if (mmu->asym_fence && syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0)
		return;
#endif
	atomic_thread_fence(memory_order_seq_cst);
}

bool (*mmu_alloc_fail_hook)(void);
void (*mmu_free_hook)(struct mmu_page *sp, uint64_t flush_done, uint64_t free_tag);

void *mmu_alloc(size_t size)
{
	if (mmu_alloc_fail_hook && mmu_alloc_fail_hook())
		return NULL;
	return calloc(1, size);
}

/* A table with its header behind it; every SPTE non-present. */
void *mmu_alloc_table(void)
{
	uint64_t *spt;

	if (mmu_alloc_fail_hook && mmu_alloc_fail_hook())
		return NULL;
	if (posix_memalign((void **)&spt, 4096, 4096 + sizeof(struct mmu_page)))
		return NULL;
	for (int i = 0; i < MMU_SPTES; i++)
		spt[i] = VMMU_SPTE_NONPRESENT;
	memset(mmu_page_of(spt), 0, sizeof(struct mmu_page));
	return spt;
}

/* ------------------------------------------------------------------ slots */

struct mmu_slot *mmu_slot_of(struct vmmu_mmu *mmu, vmmu_gfn_t gfn)
{
	const struct memslot *m = memslot_lookup(mmu->slots, gfn);

	return m ? mmu->slot[m->id] : NULL;
}

struct vmmu_rmap_head *mmu_rmap_head(struct mmu_slot *s, vmmu_gfn_t gfn, int level)
{
	/* checked here so that a frame outside the slot is NULL without the table's log line */
	if (gfn < s->base_gfn || gfn >= s->base_gfn + s->npages)
		return NULL;
	return vmmu_rmap_table_head(s->rmap, gfn, level);
}

static void slot_state_free(struct mmu_slot *s)
{
	if (!s)
		return;
	vmmu_rmap_table_destroy(s->rmap);
	vmmu_dirty_bitmap_destroy(s->dirty);
	free(s->disallow_lpage[0]);
	free(s->disallow_lpage[1]);
	free(s->write_track);
	free(s);
}

static uint64_t regions(vmmu_gfn_t base, uint64_t npages, int level)
{
	uint64_t shift = 9 * (level - 1);

	return ((base + npages - 1) >> shift) - (base >> shift) + 1;
}

static int slot_dirty_alloc(struct vmmu_mmu *mmu, struct mmu_slot *s, uint32_t flags)
{
	uint32_t f = (mmu->opts.flags & VMMU_MMU_F_INITIALLY_SET) ? VMMU_DIRTY_INITIALLY_SET : 0;

	if (!(flags & VMMU_MEMSLOT_LOG_DIRTY) || mmu->opts.dirty != VMMU_MMU_DIRTY_BITMAP)
		return 0;
	if (mmu_alloc_fail_hook && mmu_alloc_fail_hook())
		return -ENOMEM;
	return vmmu_dirty_bitmap_create(s->id, s->npages, f, &s->dirty);
}

static int slot_state_alloc(struct vmmu_mmu *mmu, uint32_t id, vmmu_gfn_t base, uint64_t npages, void *hva,
			    uint32_t flags, struct mmu_slot **out)
{
	struct mmu_slot *s = mmu_alloc(sizeof(*s));
	int ret = -ENOMEM;

	if (!s)
		return -ENOMEM;
	s->id = id;
	s->flags = flags;
	s->base_gfn = base;
	s->npages = npages;
	s->hva = hva;
	if (mmu_alloc_fail_hook && mmu_alloc_fail_hook())
		goto fail;
	ret = vmmu_rmap_table_create(&s->rmap, base, npages, VMMU_RMAP_MAX_LEVEL);
	if (ret)
		goto fail;
	ret = -ENOMEM;
	for (int l = 2; l <= 3; l++) {
		s->disallow_lpage[l - 2] = mmu_alloc(regions(base, npages, l) * sizeof(uint32_t));
		if (!s->disallow_lpage[l - 2])
			goto fail;
	}
	ret = slot_dirty_alloc(mmu, s, flags);
	if (ret)
		goto fail;
	if (mmu->shadow) {
		ret = -ENOMEM;
		s->write_track = mmu_alloc(npages * sizeof(*s->write_track));
		if (!s->write_track)
			goto fail;
	}
	*out = s;
	return 0;
fail:
	slot_state_free(s);
	return ret;
}

static int slot_array_grow(struct vmmu_mmu *mmu, uint32_t id)
{
	uint32_t n;
	struct mmu_slot **p;

	if (id < mmu->nr_slot)
		return 0;
	n = id + 1 > 2 * mmu->nr_slot ? id + 1 : 2 * mmu->nr_slot;
	if (mmu_alloc_fail_hook && mmu_alloc_fail_hook())
		return -ENOMEM;
	p = realloc(mmu->slot, n * sizeof(*p));
	if (!p)
		return -ENOMEM;
	memset(p + mmu->nr_slot, 0, (n - mmu->nr_slot) * sizeof(*p));
	mmu->slot = p;
	mmu->nr_slot = n;
	return 0;
}

/* After a memslot change: if the 19 generation bits MMIO SPTEs keep wrapped, no MMIO SPTE can be trusted. */
static void check_mmio_gen_wrap(struct vmmu_mmu *mmu)
{
	uint64_t gen = vmmu_memslots_generation(mmu->slots) & VMMU_SPTE_MMIO_GEN_MASK;

	if (gen < mmu->mmio_gen_seen) {
		log_debug("mmu: MMIO generation wrapped: zapping every shadow page");
		pthread_mutex_lock(&mmu->lock);
		mmu_zap_all_locked(mmu);
		pthread_mutex_unlock(&mmu->lock);
		mmu_flush_commit(mmu);
	}
	mmu->mmio_gen_seen = gen;
}

/* Zap the small leaves of @s so huge mappings can come back (logging turned off). */
static void slot_zap_small_leaves(struct vmmu_mmu *mmu, struct mmu_slot *s)
{
	for (vmmu_gfn_t g = s->base_gfn; g < s->base_gfn + s->npages; g++) {
		struct vmmu_rmap_head *h = mmu_rmap_head(s, g, 1);
		struct vmmu_rmap_iter it;
		uint64_t *sptep;

		/* each zap removes the entry from the rmap: start over until it is empty */
		while ((sptep = vmmu_rmap_iter_first(&it, h)))
			mmu_zap_spte(mmu, sptep);
	}
}

static int slot_change_flags(struct vmmu_mmu *mmu, struct mmu_slot *s, uint32_t flags)
{
	bool on = (flags & VMMU_MEMSLOT_LOG_DIRTY) && !(s->flags & VMMU_MEMSLOT_LOG_DIRTY);
	bool off = !(flags & VMMU_MEMSLOT_LOG_DIRTY) && (s->flags & VMMU_MEMSLOT_LOG_DIRTY);
	struct vmmu_dirty_bitmap *old = NULL;
	int ret;

	if (on) {
		ret = slot_dirty_alloc(mmu, s, flags);
		if (ret)
			return ret;
	}
	ret = vmmu_memslots_set_flags(mmu->slots, s->id, flags);
	if (ret) {
		if (on) {
			vmmu_dirty_bitmap_destroy(s->dirty);
			s->dirty = NULL;
		}
		return ret;
	}
	pthread_mutex_lock(&mmu->lock);
	s->flags = flags;
	if (on && !(mmu->opts.flags & VMMU_MMU_F_INITIALLY_SET && mmu->opts.dirty == VMMU_MMU_DIRTY_BITMAP)) {
		mmu_slot_wrprot_all(mmu, s);
		mmu_flush_request(mmu); /* enabling logging always flushes */
	}
	if (off) {
		slot_zap_small_leaves(mmu, s);
		old = s->dirty;
		s->dirty = NULL;
	}
	pthread_mutex_unlock(&mmu->lock);
	mmu_flush_commit(mmu);
	vmmu_dirty_bitmap_destroy(old);
	return 0;
}

int vmmu_mmu_memslot_set(struct vmmu_mmu *mmu, uint32_t id, vmmu_gpa_t gpa, uint64_t size, void *hva,
			 uint32_t flags)
{
	struct vmmu_memslot_info m;
	struct mmu_slot *s = NULL;
	int ret;

	if (!mmu) {
		log_err("mmu: memslot_set: NULL MMU");
		return -EINVAL;
	}
	pthread_rwlock_wrlock(&mmu->slots_lock);
	if (!vmmu_memslots_get(mmu->slots, id, &m)) {
		if (m.base_gfn != vmmu_gpa_to_gfn(gpa) || m.npages << VMMU_PAGE_SHIFT != size || m.hva != hva) {
			log_err("mmu: memslot %u exists with another range; delete or move it", id);
			ret = -EINVAL;
		} else if ((flags ^ m.flags) & VMMU_MEMSLOT_READONLY) {
			log_err("mmu: memslot %u: READONLY cannot change on a live slot", id);
			ret = -EINVAL;
		} else if (flags & ~VMMU_MEMSLOT_FLAGS_ALL) {
			log_err("mmu: memslot %u: unknown flags 0x%x", id, flags);
			ret = -EINVAL;
		} else {
			ret = slot_change_flags(mmu, mmu->slot[id], flags);
		}
		goto out;
	}
	if ((gpa | size) & (VMMU_PAGE_SIZE - 1) || !size || (flags & ~VMMU_MEMSLOT_FLAGS_ALL)) {
		log_err("mmu: memslot %u: unaligned or empty range, or unknown flags", id);
		ret = -EINVAL;
		goto out;
	}
	ret = slot_array_grow(mmu, id);
	if (ret)
		goto out;
	ret = slot_state_alloc(mmu, id, vmmu_gpa_to_gfn(gpa), size >> VMMU_PAGE_SHIFT, hva, flags, &s);
	if (ret)
		goto out;
	ret = vmmu_memslots_add(mmu->slots, id, gpa, size, hva, flags);
	if (ret) {
		slot_state_free(s);
		goto out;
	}
	mmu->slot[id] = s;
out:
	if (!ret)
		check_mmio_gen_wrap(mmu);
	pthread_rwlock_unlock(&mmu->slots_lock);
	return ret;
}

/* Zap everything (obsolete roots) and flush; under slots_lock for write. */
static void zap_all_and_flush(struct vmmu_mmu *mmu)
{
	pthread_mutex_lock(&mmu->lock);
	mmu_zap_all_locked(mmu);
	pthread_mutex_unlock(&mmu->lock);
	mmu_flush_commit(mmu);
}

int vmmu_mmu_memslot_delete(struct vmmu_mmu *mmu, uint32_t id)
{
	int ret;

	if (!mmu) {
		log_err("mmu: memslot_delete: NULL MMU");
		return -EINVAL;
	}
	pthread_rwlock_wrlock(&mmu->slots_lock);
	if (id >= mmu->nr_slot || !mmu->slot[id]) {
		log_err("mmu: memslot_delete: no slot %u", id);
		ret = -ENOENT;
		goto out;
	}
	zap_all_and_flush(mmu);
	ret = vmmu_memslots_remove(mmu->slots, id);
	slot_state_free(mmu->slot[id]);
	mmu->slot[id] = NULL;
	check_mmio_gen_wrap(mmu);
out:
	pthread_rwlock_unlock(&mmu->slots_lock);
	return ret;
}

int vmmu_mmu_memslot_move(struct vmmu_mmu *mmu, uint32_t id, vmmu_gpa_t new_gpa)
{
	struct mmu_slot *s, *old;
	int ret;

	if (!mmu) {
		log_err("mmu: memslot_move: NULL MMU");
		return -EINVAL;
	}
	pthread_rwlock_wrlock(&mmu->slots_lock);
	if (id >= mmu->nr_slot || !(old = mmu->slot[id])) {
		log_err("mmu: memslot_move: no slot %u", id);
		ret = -ENOENT;
		goto out;
	}
	if (new_gpa & (VMMU_PAGE_SIZE - 1)) {
		log_err("mmu: memslot_move: unaligned address");
		ret = -EINVAL;
		goto out;
	}
	ret = slot_state_alloc(mmu, id, vmmu_gpa_to_gfn(new_gpa), old->npages, old->hva, old->flags, &s);
	if (ret)
		goto out;
	zap_all_and_flush(mmu);
	ret = vmmu_memslots_move(mmu->slots, id, new_gpa);
	if (ret) {
		slot_state_free(s);
		goto out;
	}
	mmu->slot[id] = s;
	slot_state_free(old);
	check_mmio_gen_wrap(mmu);
out:
	pthread_rwlock_unlock(&mmu->slots_lock);
	return ret;
}

const struct vmmu_memslots *vmmu_mmu_memslots(const struct vmmu_mmu *mmu)
{
	return mmu ? mmu->slots : NULL;
}

const struct vmmu_spte_format *vmmu_mmu_spte_format(const struct vmmu_mmu *mmu)
{
	return mmu ? &mmu->fmt : NULL;
}

/* ------------------------------------------------------------- create */

static bool options_valid(const struct vmmu_mmu_options *o)
{
	if (o->size < sizeof(*o)) {
		log_err("mmu: options size %u is smaller than %zu", o->size, sizeof(*o));
		return false;
	}
	if (o->mode && o->mode != VMMU_PAGING_EPT4 && o->mode != VMMU_PAGING_EPT5 &&
	    o->mode != VMMU_PAGING_4LEVEL && o->mode != VMMU_PAGING_5LEVEL) {
		log_err("mmu: mode %u is not EPT4, EPT5, 4LEVEL or 5LEVEL", o->mode);
		return false;
	}
	if (o->maxphyaddr && (o->maxphyaddr < 48 || o->maxphyaddr > 52)) {
		log_err("mmu: maxphyaddr %u outside 48..52 (SPTEs hold host virtual addresses)", o->maxphyaddr);
		return false;
	}
	if (o->max_leaf_level > 3 || o->dirty > VMMU_MMU_DIRTY_RING || (o->flags & ~VMMU_MMU_F_ALL)) {
		log_err("mmu: bad max_leaf_level, dirty mode or flags");
		return false;
	}
	if ((o->flags & VMMU_MMU_F_INITIALLY_SET) && o->dirty != VMMU_MMU_DIRTY_BITMAP) {
		log_err("mmu: INITIALLY_SET needs bitmap dirty logging");
		return false;
	}
	if (!ring_entries_valid("mmu", o->ring_entries) || !reserved_zero("mmu", o->reserved, ARRAY_SIZE(o->reserved)))
		return false;
	return shadow_options_valid(o);
}

int vmmu_mmu_create(struct vmmu_mmu **out, const struct vmmu_mmu_options *opts, const struct vmmu_mmu_callbacks *cb)
{
	struct vmmu_mmu_options o = { .size = sizeof(o) };
	struct vmmu_spte_format_opts fo = { .size = sizeof(fo) };
	pthread_rwlockattr_t ra;
	struct vmmu_mmu *mmu;
	int ret;

	if (!out || !cb || !cb->flush_tlbs) {
		log_err("mmu: create: NULL out or callbacks, or no flush_tlbs callback");
		return -EINVAL;
	}
	*out = NULL;
	if (opts) {
		if (!options_valid(opts))
			return -EINVAL;
		o = *opts;
		o.size = sizeof(o);
	}
	if (!o.mode)
		o.mode = VMMU_PAGING_EPT4;
	if (!o.maxphyaddr)
		o.maxphyaddr = 48;
	if (!o.max_leaf_level)
		o.max_leaf_level = 3;
	if (!o.ring_entries)
		o.ring_entries = 4096;
	fo.mode = o.mode;
	fo.maxphyaddr = o.maxphyaddr;
	fo.max_leaf_level = o.max_leaf_level;
	fo.ad_disabled = o.ad_disabled;
	mmu = mmu_alloc(sizeof(*mmu));
	if (!mmu)
		return -ENOMEM;
	ret = vmmu_spte_format_init(&mmu->fmt, &fo);
	if (ret)
		goto fail;
	mmu->opts = o;
	mmu->cb = *cb;
	mmu->root_level = mmu->fmt.levels;
	mmu->asym_fence = membarrier_ready();
	mmu->active.next = mmu->active.prev = &mmu->active;
	shadow_init(mmu);
	ret = vmmu_memslots_create(&mmu->slots);
	if (ret)
		goto fail;
	ret = vmmu_rmap_cache_create(&mmu->cache, MMU_RMAP_CACHE_CAP);
	if (ret)
		goto fail;
	pthread_rwlockattr_init(&ra);
	pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&mmu->slots_lock, &ra);
	pthread_rwlockattr_destroy(&ra);
	pthread_mutex_init(&mmu->lock, NULL);
	pthread_mutex_init(&mmu->dirty_lock, NULL);
	pthread_mutex_init(&mmu->vcpus_lock, NULL);
	pthread_mutex_init(&mmu->flush_lock, NULL);
	pthread_mutex_init(&mmu->free_lock, NULL);
	*out = mmu;
	return 0;
fail:
	vmmu_memslots_destroy(mmu->slots);
	free(mmu);
	return ret;
}

static void free_page_now(struct vmmu_mmu *mmu, struct mmu_page *sp)
{
	if (mmu_free_hook)
		mmu_free_hook(sp, atomic_load(&mmu->flush_done), sp->free_tag);
	free(sp->shadowed);
	free(mmu_page_spt(sp));
	atomic_fetch_sub_explicit(&mmu->stat_pages, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&mmu->stat_freed, 1, memory_order_relaxed);
}

void vmmu_mmu_destroy(struct vmmu_mmu *mmu)
{
	if (!mmu)
		return;
	pthread_mutex_lock(&mmu->lock);
	mmu_zap_all_locked(mmu);
	pthread_mutex_unlock(&mmu->lock);
	mmu_flush_commit(mmu);
	for (uint32_t i = 0; i < mmu->nr_slot; i++)
		slot_state_free(mmu->slot[i]);
	free(mmu->slot);
	free(mmu->vcpus);
	vmmu_rmap_cache_destroy(mmu->cache);
	vmmu_memslots_destroy(mmu->slots);
	pthread_rwlock_destroy(&mmu->slots_lock);
	pthread_mutex_destroy(&mmu->lock);
	pthread_mutex_destroy(&mmu->dirty_lock);
	pthread_mutex_destroy(&mmu->vcpus_lock);
	pthread_mutex_destroy(&mmu->flush_lock);
	pthread_mutex_destroy(&mmu->free_lock);
	free(mmu);
}

/* --------------------------------------------------------------- vCPUs */

int vmmu_mmu_vcpu_create(struct vmmu_mmu *mmu, uint32_t id, struct vmmu_mmu_vcpu **out)
{
	struct vmmu_mmu_vcpu *v;
	int ret;

	if (!mmu || !out) {
		log_err("mmu: vcpu_create: NULL argument");
		return -EINVAL;
	}
	v = mmu_alloc(sizeof(*v));
	if (!v)
		return -ENOMEM;
	v->mmu = mmu;
	v->id = id;
	v->asym_fence = mmu->asym_fence;
	pthread_mutex_init(&v->ring_lock, NULL);
	ret = vmmu_rmap_cache_create(&v->rmap_cache, MMU_RMAP_CACHE_CAP);
	if (ret)
		goto fail;
	if (mmu->opts.dirty == VMMU_MMU_DIRTY_RING) {
		ret = -ENOMEM;
		if (mmu_alloc_fail_hook && mmu_alloc_fail_hook())
			goto fail;
		/* KVM keeps 64 entries (plus the PML size) below the hard limit. */
		ret = vmmu_dirty_ring_create(mmu->opts.ring_entries, 64, NULL, &v->ring);
		if (ret)
			goto fail;
	}
	pthread_mutex_lock(&mmu->vcpus_lock);
	if (mmu->nr_vcpus == mmu->cap_vcpus) {
		unsigned int n = mmu->cap_vcpus ? 2 * mmu->cap_vcpus : 8;
		struct vmmu_mmu_vcpu **p = NULL;

		if (!(mmu_alloc_fail_hook && mmu_alloc_fail_hook()))
			p = realloc(mmu->vcpus, n * sizeof(*p));
		if (!p) {
			pthread_mutex_unlock(&mmu->vcpus_lock);
			ret = -ENOMEM;
			goto fail;
		}
		mmu->vcpus = p;
		mmu->cap_vcpus = n;
	}
	mmu->vcpus[mmu->nr_vcpus++] = v;
	pthread_mutex_unlock(&mmu->vcpus_lock);
	*out = v;
	return 0;
fail:
	vmmu_dirty_ring_destroy(v->ring);
	vmmu_rmap_cache_destroy(v->rmap_cache);
	pthread_mutex_destroy(&v->ring_lock);
	free(v);
	return ret;
}

void vmmu_mmu_vcpu_destroy(struct vmmu_mmu_vcpu *v)
{
	struct vmmu_mmu *mmu;

	if (!v)
		return;
	mmu = v->mmu;
	pthread_mutex_lock(&mmu->vcpus_lock);
	for (unsigned int i = 0; i < mmu->nr_vcpus; i++)
		if (mmu->vcpus[i] == v) {
			mmu->vcpus[i] = mmu->vcpus[--mmu->nr_vcpus];
			break;
		}
	pthread_mutex_unlock(&mmu->vcpus_lock);
	pthread_mutex_lock(&mmu->lock);
	if (v->root)
		mmu_put_root(mmu, v->root);
	v->root = NULL;
	for (size_t i = 0; i < VMMU_FAULT_NR_OUTCOMES; i++)
		mmu->gone.faults[i] += v->stats.faults[i];
	mmu->gone.fast_fixed += v->stats.fast_fixed;
	mmu->gone.mmio_hits += v->stats.mmio_hits;
	mmu->gone.mmio_stale += v->stats.mmio_stale;
	pthread_mutex_unlock(&mmu->lock);
	mmu_flush_commit(mmu);
	while (v->pages.nr)
		free(mmu_page_spt(v->pages.page[--v->pages.nr]));
	vmmu_dirty_ring_destroy(v->ring);
	vmmu_rmap_cache_destroy(v->rmap_cache);
	pthread_mutex_destroy(&v->ring_lock);
	shadow_vcpu_free(v);
	free(v);
}

int mmu_topup_caches(struct vmmu_mmu_vcpu *v, unsigned int rmap_min)
{
	if (v->mmu->shadow && shadow_topup(v))
		return -ENOMEM;
	while (v->pages.nr < MMU_PAGE_CACHE_MIN) {
		uint64_t *spt = mmu_alloc_table();

		if (!spt)
			return -ENOMEM;
		v->pages.page[v->pages.nr++] = mmu_page_of(spt);
	}
	if (vmmu_rmap_cache_count(v->rmap_cache) >= rmap_min)
		return 0;
	if (mmu_alloc_fail_hook && mmu_alloc_fail_hook())
		return -ENOMEM;
	return vmmu_rmap_cache_topup(v->rmap_cache, rmap_min);
}

struct mmu_page *mmu_page_alloc_cached(struct vmmu_mmu_vcpu *v)
{
	return v->pages.nr ? v->pages.page[--v->pages.nr] : NULL;
}

/* ------------------------------------------------------------ shadow pages */

static unsigned int hash_of(vmmu_gfn_t gfn)
{
	return mmu_hash_of(gfn);
}

static void hash_del(struct vmmu_mmu *mmu, struct mmu_page *sp)
{
	struct mmu_page **pp = &mmu->hash[hash_of(sp->gfn)];

	for (; *pp; pp = &(*pp)->hash_next)
		if (*pp == sp) {
			*pp = sp->hash_next;
			return;
		}
}

struct mmu_page *mmu_hash_first(struct vmmu_mmu *mmu, vmmu_gfn_t gfn)
{
	return mmu->hash[hash_of(gfn)];
}

struct mmu_page *mmu_get_page(struct vmmu_mmu_vcpu *v, vmmu_gfn_t gfn, union mmu_role role, bool *created)
{
	struct vmmu_mmu *mmu = v->mmu;
	unsigned int b = hash_of(gfn);
	struct mmu_page *sp;

	for (sp = mmu->hash[b]; sp; sp = sp->hash_next)
		if (sp->gfn == gfn && sp->role.word == role.word && sp->valid_gen == mmu->valid_gen) {
			*created = false;
			return sp;
		}
	sp = mmu_page_alloc_cached(v);
	if (!sp)
		return NULL;
	*created = true;
	if (!role.direct)
		mmu->has_indirect = true;
	sp->gfn = gfn;
	sp->role = role;
	sp->valid_gen = mmu->valid_gen;
	sp->hash_next = mmu->hash[b];
	mmu->hash[b] = sp;
	/* newest first */
	sp->next = mmu->active.next;
	sp->prev = &mmu->active;
	mmu->active.next->prev = sp;
	mmu->active.next = sp;
	sp->on_list = true;
	atomic_fetch_add_explicit(&mmu->stat_pages, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&mmu->stat_created, 1, memory_order_relaxed);
	return sp;
}

int mmu_link_page(struct vmmu_mmu *mmu, uint64_t *sptep, struct mmu_page *child, struct vmmu_rmap_cache *c)
{
	uint64_t spte;
	int ret;

	ret = vmmu_spte_make_nonleaf(&mmu->fmt, (uintptr_t)mmu_page_spt(child) >> VMMU_PAGE_SHIFT, &spte);
	if (ret)
		return ret;
	ret = vmmu_rmap_add(&child->parent_ptes, sptep, c);
	if (ret < 0)
		return ret;
	spte_set(sptep, spte);
	return 0;
}

static void note_rmap_len(struct vmmu_mmu *mmu, int len)
{
	uint64_t max = atomic_load_explicit(&mmu->stat_rmap_max, memory_order_relaxed);

	if ((uint64_t)len > max)
		atomic_store_explicit(&mmu->stat_rmap_max, (uint64_t)len, memory_order_relaxed);
}

int mmu_set_leaf(struct vmmu_mmu *mmu, uint64_t *sptep, int level, vmmu_gfn_t gfn, uint64_t spte,
		 struct vmmu_rmap_cache *c)
{
	uint64_t old = spte_get(sptep);

	if (!(old & VMMU_SPTE_MMU_PRESENT)) {
		struct mmu_slot *s = mmu_slot_of(mmu, gfn);
		int ret = vmmu_rmap_add(mmu_rmap_head(s, gfn, level), sptep, c);

		if (ret < 0)
			return ret;
		note_rmap_len(mmu, ret);
		spte_set(sptep, spte);
		return 0;
	}
	old = spte_xchg(sptep, spte);
	if (vmmu_spte_needs_tlb_flush(&mmu->fmt, old, spte, level))
		mmu_flush_request(mmu);
	return 0;
}

/* The gfn an SPTE of @sp at index @i maps (direct pages: computed; indirect: recorded). */
static vmmu_gfn_t entry_gfn(struct mmu_page *sp, unsigned int i)
{
	if (sp->shadowed)
		return sp->shadowed[i] >> VMMU_PAGE_SHIFT;
	return mmu_page_entry_gfn(sp, i);
}

static void free_list_add(struct vmmu_mmu *mmu, struct mmu_page *sp)
{
	mmu_flush_request(mmu);
	sp->free_tag = atomic_load(&mmu->flush_req);
	pthread_mutex_lock(&mmu->free_lock);
	sp->next = atomic_load_explicit(&mmu->free_list, memory_order_relaxed);
	atomic_store_explicit(&mmu->free_list, sp, memory_order_relaxed);
	pthread_mutex_unlock(&mmu->free_lock);
}

uint64_t mmu_zap_spte(struct vmmu_mmu *mmu, uint64_t *sptep)
{
	struct mmu_page *sp = sptep_to_page(sptep), *child;
	int level = sp->role.level;
	uint64_t old = spte_xchg(sptep, mmu->nonpresent);

	if (!(old & VMMU_SPTE_MMU_PRESENT))
		return old;
	mmu_flush_request(mmu);
	if (vmmu_spte_is_leaf(&mmu->fmt, old, level)) {
		vmmu_gfn_t gfn = entry_gfn(sp, sptep_index(sptep));
		struct mmu_slot *s = mmu_slot_of(mmu, gfn);

		if (s)
			vmmu_rmap_remove(mmu_rmap_head(s, gfn, level), sptep, mmu->cache);
		else
			log_err("mmu: zap: leaf for gfn 0x%llx without a slot", (unsigned long long)gfn);
		return old;
	}
	child = mmu_page_of(spte_to_child(old));
	vmmu_rmap_remove(&child->parent_ptes, sptep, mmu->cache);
	if (!child->parent_ptes.word && !child->root_count && child->role.direct && child->on_list)
		mmu_zap_page(mmu, child);
	return old;
}

void mmu_zap_page(struct vmmu_mmu *mmu, struct mmu_page *sp)
{
	uint64_t *spt = mmu_page_spt(sp), *sptep;
	struct vmmu_rmap_iter it;

	if (!sp->on_list)
		return;
	/* off the lists first, so recursion through children never comes back here */
	sp->on_list = false;
	hash_del(mmu, sp);
	sp->prev->next = sp->next;
	sp->next->prev = sp->prev;
	sp->role.invalid = 1;
	atomic_store_explicit(&sp->zapped, true, memory_order_relaxed);
	if (sp->shadowed)
		shadow_unaccount_page(mmu, sp);
	for (int i = 0; i < MMU_SPTES; i++)
		if (spte_get(&spt[i]) & VMMU_SPTE_MMU_PRESENT)
			mmu_zap_spte(mmu, &spt[i]);
	for (sptep = vmmu_rmap_iter_first(&it, &sp->parent_ptes); sptep; sptep = vmmu_rmap_iter_next(&it)) {
		spte_set(sptep, mmu->nonpresent);
		vmmu_rmap_iter_remove(&it, mmu->cache);
	}
	mmu_flush_request(mmu);
	if (!sp->root_count)
		free_list_add(mmu, sp);
}

void mmu_zap_all_locked(struct vmmu_mmu *mmu)
{
	while (mmu->active.next != &mmu->active)
		mmu_zap_page(mmu, mmu->active.prev);
	mmu->valid_gen ^= 1;
	vmmu_rmap_cache_trim(mmu->cache);
}

/* ------------------------------------------------------------------ roots */

void mmu_put_root(struct vmmu_mmu *mmu, struct mmu_page *root)
{
	if (--root->root_count == 0 && root->role.invalid)
		free_list_add(mmu, root);
}

static union mmu_role tdp_root_role(struct vmmu_mmu *mmu)
{
	union mmu_role r = { 0 };

	r.level = mmu->root_level;
	r.direct = 1;
	r.access = VMMU_ACC_ALL;
	r.cr0_wp = 1;
	r.efer_nx = 1;
	r.ad_disabled = mmu->opts.ad_disabled;
	return r;
}

int mmu_load_root(struct vmmu_mmu_vcpu *v)
{
	struct vmmu_mmu *mmu = v->mmu;
	struct mmu_page *root;
	bool created;

	if (mmu->shadow)
		return shadow_load_root(v);
	if (v->root && !v->root->role.invalid)
		return 0;
	root = mmu_get_page(v, 0, tdp_root_role(mmu), &created);
	if (!root)
		return -ENOMEM;
	if (v->root)
		mmu_put_root(mmu, v->root);
	root->root_count++;
	v->root = root;
	return 0;
}

int vmmu_mmu_vcpu_root(struct vmmu_mmu_vcpu *v, uint64_t **root)
{
	int ret;

	if (!v || !root) {
		log_err("mmu: vcpu_root: NULL argument");
		return -EINVAL;
	}
	if (v->root && !atomic_load_explicit(&v->root->zapped, memory_order_relaxed)) {
		*root = mmu_page_spt(v->root);
		return 0;
	}
	ret = mmu_topup_caches(v, 0);
	if (ret)
		return ret;
	pthread_mutex_lock(&v->mmu->lock);
	ret = mmu_load_root(v);
	if (!ret)
		*root = mmu_page_spt(v->root);
	pthread_mutex_unlock(&v->mmu->lock);
	mmu_flush_commit(v->mmu);
	return ret;
}

/* ------------------------------------------------------------ TLB flushes */

void mmu_flush_request(struct vmmu_mmu *mmu)
{
	atomic_fetch_add(&mmu->flush_req, 1);
	atomic_fetch_add_explicit(&mmu->stat_flush_requested, 1, memory_order_relaxed);
}

/* Wait until every vCPU that was inside a lockless walk has left it. */
static void wait_for_walkers(struct vmmu_mmu *mmu)
{
	flusher_fence(mmu);
	pthread_mutex_lock(&mmu->vcpus_lock);
	for (unsigned int i = 0; i < mmu->nr_vcpus; i++) {
		uint32_t s = atomic_load(&mmu->vcpus[i]->walk_seq);

		if (!(s & 1))
			continue;
		for (int spins = 0; atomic_load(&mmu->vcpus[i]->walk_seq) == s; spins++)
			if (spins > 64)
				sched_yield();
	}
	pthread_mutex_unlock(&mmu->vcpus_lock);
}

static void free_zapped(struct vmmu_mmu *mmu)
{
	uint64_t done = atomic_load(&mmu->flush_done);
	struct mmu_page *keep = NULL, *go = NULL, *sp, *next;

	pthread_mutex_lock(&mmu->free_lock);
	for (sp = atomic_load_explicit(&mmu->free_list, memory_order_relaxed); sp; sp = next) {
		next = sp->next;
		if (sp->free_tag <= done) {
			sp->next = go;
			go = sp;
		} else {
			sp->next = keep;
			keep = sp;
		}
	}
	atomic_store_explicit(&mmu->free_list, keep, memory_order_relaxed);
	pthread_mutex_unlock(&mmu->free_lock);
	for (sp = go; sp; sp = next) {
		next = sp->next;
		free_page_now(mmu, sp);
	}
}

void mmu_flush_commit(struct vmmu_mmu *mmu)
{
	uint64_t want = atomic_load(&mmu->flush_req);

	if (atomic_load(&mmu->flush_done) < want) {
		pthread_mutex_lock(&mmu->flush_lock);
		if (atomic_load(&mmu->flush_done) < want) {
			uint64_t upto = atomic_load(&mmu->flush_req);

			mmu->cb.flush_tlbs(mmu->cb.opaque);
			wait_for_walkers(mmu);
			atomic_store(&mmu->flush_done, upto);
			atomic_fetch_add_explicit(&mmu->stat_flush_performed, 1, memory_order_relaxed);
		}
		pthread_mutex_unlock(&mmu->flush_lock);
	}
	if (atomic_load_explicit(&mmu->free_list, memory_order_relaxed))
		free_zapped(mmu);
}

/* ------------------------------------------------------------ dirty marks */

void mmu_mark_dirty(struct vmmu_mmu *mmu, struct vmmu_mmu_vcpu *v, struct mmu_slot *slot, vmmu_gfn_t gfn)
{
	if (!(slot->flags & VMMU_MEMSLOT_LOG_DIRTY))
		return;
	if (slot->dirty) {
		vmmu_dirty_bitmap_mark(slot->dirty, gfn - slot->base_gfn);
	} else if (v && v->ring) {
		pthread_mutex_lock(&v->ring_lock);
		if (vmmu_dirty_ring_push(v->ring, slot->id, gfn - slot->base_gfn) < 0)
			log_err("mmu: vCPU %u: dirty ring full past its hard limit: a dirty page was lost", v->id);
		pthread_mutex_unlock(&v->ring_lock);
	}
}

bool mmu_wrprot_gfn_for_shadowing(struct vmmu_mmu *mmu, struct mmu_slot *slot, vmmu_gfn_t gfn)
{
	bool changed = false, flush = false;

	for (int level = 1; level <= VMMU_RMAP_MAX_LEVEL; level++) {
		struct vmmu_rmap_iter it;
		uint64_t *sptep;

		vmmu_rmap_for_each(&it, mmu_rmap_head(slot, gfn, level), sptep) {
			uint64_t old = spte_and(sptep, ~(VMMU_SPTE_WRITABLE | mmu->fmt.mmu_writable));

			changed |= (old & (VMMU_SPTE_WRITABLE | mmu->fmt.mmu_writable)) != 0;
			flush |= (old & (mmu_debug_wrprot_flush_on_w ? VMMU_SPTE_WRITABLE : mmu->fmt.mmu_writable)) !=
				 0;
		}
	}
	if (flush) {
		/* A writable TLB entry may outlive dirty-log protection: flush before the lock drops. */
		mmu_flush_request(mmu);
		mmu_flush_commit(mmu);
	}
	return changed;
}

/* ------------------------------------------------------------------ zap */

void mmu_for_each_rmap_head(struct vmmu_mmu *mmu, vmmu_gfn_t start, vmmu_gfn_t end,
			    void (*fn)(struct vmmu_mmu *mmu, struct vmmu_rmap_head *head, void *opaque),
			    void *opaque)
{
	for (uint32_t i = 0; i < mmu->nr_slot; i++) {
		struct mmu_slot *s = mmu->slot[i];
		vmmu_gfn_t lo, hi;

		if (!s)
			continue;
		lo = start > s->base_gfn ? start : s->base_gfn;
		hi = end < s->base_gfn + s->npages ? end : s->base_gfn + s->npages;
		for (int level = 1; level <= VMMU_RMAP_MAX_LEVEL && lo < hi; level++) {
			uint64_t step = level_pages(level);

			/* each head of the level that covers part of [lo, hi) */
			for (vmmu_gfn_t g = lo; g < hi; g = (g & ~(step - 1)) + step)
				fn(mmu, mmu_rmap_head(s, g, level), opaque);
		}
	}
}

static void zap_head(struct vmmu_mmu *mmu, struct vmmu_rmap_head *h, void *opaque)
{
	int64_t *n = opaque;
	struct vmmu_rmap_iter it;
	uint64_t *sptep;

	while ((sptep = vmmu_rmap_iter_first(&it, h))) {
		mmu_zap_spte(mmu, sptep);
		(*n)++;
	}
}

int64_t vmmu_mmu_zap_gfn_range(struct vmmu_mmu *mmu, vmmu_gfn_t start, vmmu_gfn_t end)
{
	int64_t n = 0;

	if (!mmu || start > end) {
		log_err("mmu: zap_gfn_range: NULL MMU or empty range");
		return -EINVAL;
	}
	pthread_rwlock_rdlock(&mmu->slots_lock);
	pthread_mutex_lock(&mmu->lock);
	mmu_for_each_rmap_head(mmu, start, end, zap_head, &n);
	pthread_mutex_unlock(&mmu->lock);
	pthread_rwlock_unlock(&mmu->slots_lock);
	mmu_flush_commit(mmu);
	return n;
}

int vmmu_mmu_zap_all(struct vmmu_mmu *mmu)
{
	if (!mmu) {
		log_err("mmu: zap_all: NULL MMU");
		return -EINVAL;
	}
	pthread_rwlock_rdlock(&mmu->slots_lock);
	pthread_mutex_lock(&mmu->lock);
	mmu_zap_all_locked(mmu);
	pthread_mutex_unlock(&mmu->lock);
	pthread_rwlock_unlock(&mmu->slots_lock);
	mmu_flush_commit(mmu);
	return 0;
}

/* ------------------------------------------------------------------ stats */

int vmmu_mmu_get_stats(struct vmmu_mmu *mmu, struct vmmu_mmu_stats *st)
{
	uint64_t entries = 0;

	if (!mmu || !st || st->size < sizeof(*st)) {
		log_err("mmu: get_stats: NULL argument or stats->size too small");
		return -EINVAL;
	}
	memset(st, 0, sizeof(*st));
	st->size = sizeof(*st);
	pthread_mutex_lock(&mmu->vcpus_lock);
	for (unsigned int k = 0; k <= mmu->nr_vcpus; k++) {
		struct mmu_vcpu_stats *s = k < mmu->nr_vcpus ? &mmu->vcpus[k]->stats : &mmu->gone;

		for (size_t i = 0; i < VMMU_FAULT_NR_OUTCOMES; i++)
			st->faults[i] += atomic_load_explicit(&s->faults[i], memory_order_relaxed);
		st->fast_fixed += atomic_load_explicit(&s->fast_fixed, memory_order_relaxed);
		st->mmio_hits += atomic_load_explicit(&s->mmio_hits, memory_order_relaxed);
		st->mmio_stale += atomic_load_explicit(&s->mmio_stale, memory_order_relaxed);
	}
	pthread_mutex_unlock(&mmu->vcpus_lock);
	st->flush_requested = atomic_load(&mmu->stat_flush_requested);
	st->flush_performed = atomic_load(&mmu->stat_flush_performed);
	st->pages = atomic_load(&mmu->stat_pages);
	st->pages_created = atomic_load(&mmu->stat_created);
	st->pages_freed = atomic_load(&mmu->stat_freed);
	st->splits = atomic_load(&mmu->stat_splits);
	for (int i = 0; i < 3; i++)
		st->huge_mapped[i] = atomic_load(&mmu->stat_mapped[i]);
	st->rmap_max_len = atomic_load(&mmu->stat_rmap_max);
	shadow_fill_stats(mmu, st);
	pthread_rwlock_rdlock(&mmu->slots_lock);
	pthread_mutex_lock(&mmu->lock);
	for (uint32_t i = 0; i < mmu->nr_slot; i++) {
		struct mmu_slot *s = mmu->slot[i];

		for (int l = 1; s && l <= VMMU_RMAP_MAX_LEVEL; l++) {
			uint64_t step = level_pages(l);

			for (vmmu_gfn_t g = s->base_gfn; g < s->base_gfn + s->npages; g = (g & ~(step - 1)) + step)
				entries += vmmu_rmap_count(mmu_rmap_head(s, g, l));
		}
	}
	pthread_mutex_unlock(&mmu->lock);
	pthread_rwlock_unlock(&mmu->slots_lock);
	st->rmap_entries = entries;
	return 0;
}
