/* SPDX-License-Identifier: MIT */
/*
 * Reverse maps: one-word heads, 14-entry descriptor chains, a descriptor cache
 * and per-memslot head tables. The layout and its invariants are described in
 * rmap_internal.h; the contract in include/libvmmu/rmap.h.
 *
 * Locking. Writers are serialized by the caller, so between their own steps
 * the list can only change by the lock bit coming and going. A writer takes
 * the bit (lock_head) only for the instant it changes the list, and stores the
 * new word with release order, which also drops the bit. Lockless readers take
 * the same bit for a whole walk. Empty heads are never locked: a reader finds
 * nothing to walk, and a writer may simply publish the first entry.
 *
 * User space cannot disable preemption around the bit the way the kernel does,
 * so a spinner yields the CPU after a bounded number of spins, in case the
 * holder was preempted.
 */
#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "internal.h"
#include "rmap_internal.h"

#define CACHE_CAPACITY_MAX 65536u
#define SPINS_BEFORE_YIELD 128
#define LEVEL_SHIFT(level) (9 * ((level) - 1))
#define MAX_GFN_END (1ULL << (VMMU_MAX_PHYS_BITS - VMMU_PAGE_SHIFT))

bool (*rmap_alloc_fail_hook)(void);

struct vmmu_rmap_cache {
	struct rmap_desc *free;   /* singly linked through ->more */
	unsigned int nr;
	unsigned int capacity;
};

struct vmmu_rmap_table {
	vmmu_gfn_t base_gfn;
	uint64_t npages;
	int max_level;
	uint64_t nr[VMMU_RMAP_MAX_LEVEL];
	struct vmmu_rmap_head *heads[VMMU_RMAP_MAX_LEVEL];
};

static_assert(sizeof(_Atomic uintptr_t) == sizeof(uintptr_t) && _Alignof(_Atomic uintptr_t) == _Alignof(uintptr_t),
	      "a head word can be accessed atomically in place");

static inline _Atomic uintptr_t *head_word(const struct vmmu_rmap_head *head)
{
	return (_Atomic uintptr_t *)(uintptr_t)&head->word;
}

/* The head word without the lock bit; for writers, whose view only the bit can change. */
static inline uintptr_t head_peek(const struct vmmu_rmap_head *head)
{
	return atomic_load_explicit(head_word(head), memory_order_relaxed) & ~RMAP_LOCKED;
}

static inline void cpu_relax(unsigned int *spins)
{
	if (++*spins % SPINS_BEFORE_YIELD == 0) {
		sched_yield();
		return;
	}
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

/*
 * Take the lock bit of a non-empty head and return its word (without the bit);
 * return 0 without locking if the head is empty.
 */
static uintptr_t lock_head(struct vmmu_rmap_head *head)
{
	_Atomic uintptr_t *w = head_word(head);
	uintptr_t old = atomic_load_explicit(w, memory_order_relaxed);
	unsigned int spins = 0;

	for (;;) {
		if (!old)
			return 0;
		if (old & RMAP_LOCKED) {
			cpu_relax(&spins);
			old = atomic_load_explicit(w, memory_order_relaxed);
			continue;
		}
		if (atomic_compare_exchange_weak_explicit(w, &old, old | RMAP_LOCKED, memory_order_acquire,
							  memory_order_relaxed))
			return old;
	}
}

/* Publish @word as the head's new value; drops the lock bit if it was held. */
static inline void unlock_head(struct vmmu_rmap_head *head, uintptr_t word)
{
	atomic_store_explicit(head_word(head), word, memory_order_release);
}

/* Descriptor cache */

static struct rmap_desc *desc_alloc(void)
{
	if (rmap_alloc_fail_hook && rmap_alloc_fail_hook())
		return NULL;
	return aligned_alloc(RMAP_DESC_ALIGN, sizeof(struct rmap_desc));
}

static void free_list(struct rmap_desc *d)
{
	while (d) {
		struct rmap_desc *next = d->more;

		free(d);
		d = next;
	}
}

static struct rmap_desc *cache_take(struct vmmu_rmap_cache *c)
{
	struct rmap_desc *d = c->free;

	if (d) {
		c->free = d->more;
		c->nr--;
	}
	return d;
}

static void cache_put(struct vmmu_rmap_cache *c, struct rmap_desc *d)
{
	d->more = c->free;
	c->free = d;
	c->nr++;
}

int vmmu_rmap_cache_create(struct vmmu_rmap_cache **out, unsigned int capacity)
{
	struct vmmu_rmap_cache *c;

	if (!out || !capacity || capacity > CACHE_CAPACITY_MAX) {
		log_err("rmap cache: bad arguments (out %p, capacity %u, limit %u)", (void *)out, capacity,
			CACHE_CAPACITY_MAX);
		return -EINVAL;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->capacity = capacity;
	*out = c;
	return 0;
}

void vmmu_rmap_cache_destroy(struct vmmu_rmap_cache *cache)
{
	if (!cache)
		return;
	free_list(cache->free);
	free(cache);
}

void vmmu_rmap_cache_trim(struct vmmu_rmap_cache *cache)
{
	if (!cache)
		return;
	while (cache->nr > cache->capacity)
		free(cache_take(cache));
}

int vmmu_rmap_cache_topup(struct vmmu_rmap_cache *cache, unsigned int min)
{
	struct rmap_desc *fresh = NULL;
	unsigned int n = 0;

	if (!cache || min > cache->capacity) {
		log_err("rmap cache: top-up to %u beyond capacity %u", min, cache ? cache->capacity : 0);
		return -EINVAL;
	}
	vmmu_rmap_cache_trim(cache);
	/* All or nothing: collect the missing descriptors first. */
	while (cache->nr + n < min) {
		struct rmap_desc *d = desc_alloc();

		if (!d) {
			free_list(fresh);
			return -ENOMEM;
		}
		d->more = fresh;
		fresh = d;
		n++;
	}
	while (fresh) {
		struct rmap_desc *d = fresh;

		fresh = d->more;
		cache_put(cache, d);
	}
	return 0;
}

unsigned int vmmu_rmap_cache_count(const struct vmmu_rmap_cache *cache)
{
	return cache ? cache->nr : 0;
}

/* Heads */

static inline unsigned int word_count(uintptr_t word)
{
	struct rmap_desc *d;

	if (!word)
		return 0;
	if (!(word & RMAP_MANY))
		return 1;
	d = rmap_word_desc(word);
	return d->count + d->tail_count;
}

unsigned int vmmu_rmap_count(const struct vmmu_rmap_head *head)
{
	return head ? word_count(head_peek(head)) : 0;
}

int vmmu_rmap_add(struct vmmu_rmap_head *head, uint64_t *sptep, struct vmmu_rmap_cache *cache)
{
	struct rmap_desc *d, *nd;
	uintptr_t word;

	if (unlikely(!head || !sptep || !cache || ((uintptr_t)sptep & 7))) {
		log_err("rmap add: bad arguments (head %p, spte %p, cache %p)", (void *)head, (void *)sptep,
			(void *)cache);
		return -EINVAL;
	}
	word = head_peek(head);
	if (!word) {
		/* Empty heads are not locked: no reader can hold this one. */
		unlock_head(head, (uintptr_t)sptep);
		return 1;
	}
	if (!(word & RMAP_MANY)) {
		nd = cache_take(cache);
		if (unlikely(!nd))
			return -ENOMEM;
		nd->more = NULL;
		nd->count = 2;
		nd->tail_count = 0;
		nd->sptes[0] = (uint64_t *)word;
		nd->sptes[1] = sptep;
		lock_head(head);
		unlock_head(head, (uintptr_t)nd | RMAP_MANY);
		return 2;
	}
	d = rmap_word_desc(word);
	if (d->count < VMMU_RMAP_DESC_ENTRIES) {
		lock_head(head);
		d->sptes[d->count++] = sptep;
		unlock_head(head, word);
		return (int)(d->count + d->tail_count);
	}
	if (unlikely(d->tail_count > (unsigned int)INT_MAX - 2 * VMMU_RMAP_DESC_ENTRIES)) {
		log_err("rmap add: %u entries, no more fit", d->count + d->tail_count);
		return -EOVERFLOW;
	}
	/* Head full: a new head descriptor goes in front. */
	nd = cache_take(cache);
	if (unlikely(!nd))
		return -ENOMEM;
	nd->more = d;
	nd->count = 1;
	nd->tail_count = d->count + d->tail_count;
	nd->sptes[0] = sptep;
	lock_head(head);
	unlock_head(head, (uintptr_t)nd | RMAP_MANY);
	return (int)(nd->tail_count + 1);
}

/*
 * Remove the entry at @d->sptes[@pos] of the chain @word of @head: the head
 * descriptor's last entry fills the hole, and a head descriptor left empty is
 * unlinked and given to @cache. Return the number of entries left.
 */
static int remove_at(struct vmmu_rmap_head *head, uintptr_t word, struct rmap_desc *d, unsigned int pos,
		     struct vmmu_rmap_cache *cache)
{
	struct rmap_desc *hd = rmap_word_desc(word);
	uintptr_t new_word = word;
	unsigned int left;

	lock_head(head);
	hd->count--;
	d->sptes[pos] = hd->sptes[hd->count];
	hd->sptes[hd->count] = NULL;
	if (!hd->count)
		new_word = hd->more ? (uintptr_t)hd->more | RMAP_MANY : 0;
	left = hd->count + hd->tail_count;
	unlock_head(head, new_word);
	if (!hd->count)
		cache_put(cache, hd);
	return (int)left;
}

int vmmu_rmap_remove(struct vmmu_rmap_head *head, uint64_t *sptep, struct vmmu_rmap_cache *cache)
{
	uintptr_t word;

	if (unlikely(!head || !sptep || !cache)) {
		log_err("rmap remove: bad arguments (head %p, spte %p, cache %p)", (void *)head, (void *)sptep,
			(void *)cache);
		return -EINVAL;
	}
	word = head_peek(head);
	if (word == (uintptr_t)sptep) {
		lock_head(head);
		unlock_head(head, 0);
		return 0;
	}
	if (word & RMAP_MANY) {
		for (struct rmap_desc *d = rmap_word_desc(word); d; d = d->more)
			for (unsigned int i = 0; i < d->count; i++)
				if (d->sptes[i] == sptep)
					return remove_at(head, word, d, i, cache);
	}
	log_err("rmap remove: spte %p is not in rmap %p (%u entries)", (void *)sptep, (void *)head,
		word_count(word));
	return -ENOENT;
}

/*
 * Writer iteration goes through each descriptor from its last entry down, head
 * descriptor first. Removing the current entry moves the head descriptor's last
 * entry into its slot; that entry has always been visited already (it is either
 * later in the current descriptor or in the head descriptor, which comes first),
 * so stepping down from the slot visits every other entry exactly once.
 */
static uint64_t *iter_load(struct vmmu_rmap_iter *it, struct rmap_desc *d)
{
	it->desc = d;
	if (!d) {
		it->cur = NULL;
		return NULL;
	}
	it->pos = (int)d->count - 1;
	it->cur = d->sptes[it->pos];
	return it->cur;
}

uint64_t *vmmu_rmap_iter_first(struct vmmu_rmap_iter *it, struct vmmu_rmap_head *head)
{
	uintptr_t word;

	if (!it)
		return NULL;
	it->head = head;
	it->desc = NULL;
	it->cur = NULL;
	it->pos = -1;
	word = head ? head_peek(head) : 0;
	if (!word)
		return NULL;
	if (!(word & RMAP_MANY)) {
		it->cur = (uint64_t *)word;
		return it->cur;
	}
	return iter_load(it, rmap_word_desc(word));
}

uint64_t *vmmu_rmap_iter_next(struct vmmu_rmap_iter *it)
{
	struct rmap_desc *d;

	if (!it || !it->desc) {
		if (it)
			it->cur = NULL;
		return NULL;
	}
	d = it->desc;
	if (--it->pos < 0)
		return iter_load(it, d->more);
	it->cur = d->sptes[it->pos];
	return it->cur;
}

int vmmu_rmap_iter_remove(struct vmmu_rmap_iter *it, struct vmmu_rmap_cache *cache)
{
	struct rmap_desc *d, *hd;
	unsigned int pos;
	uintptr_t word;

	if (unlikely(!it || !cache || !it->cur)) {
		log_err("rmap iterator remove: %s", it && cache ? "no current entry" : "bad arguments");
		return -EINVAL;
	}
	it->cur = NULL;
	word = head_peek(it->head);
	if (!(word & RMAP_MANY)) {
		lock_head(it->head);
		unlock_head(it->head, 0);
		return 0;
	}
	d = it->desc;
	pos = (unsigned int)it->pos;
	hd = rmap_word_desc(word);
	if (d == hd && hd->count == 1) {
		/* The head descriptor goes away: next() continues with the last entry of the next one. */
		it->desc = hd->more;
		it->pos = hd->more ? (int)hd->more->count : 0;
	}
	return remove_at(it->head, word, d, pos, cache);
}

int vmmu_rmap_walk_lockless(struct vmmu_rmap_head *head, vmmu_rmap_walk_fn fn, void *opaque)
{
	uintptr_t word;
	int ret = 0;

	if (unlikely(!head || !fn)) {
		log_err("rmap lockless walk: bad arguments (head %p)", (void *)head);
		return -EINVAL;
	}
	word = lock_head(head);
	if (!word)
		return 0;
	if (!(word & RMAP_MANY)) {
		ret = fn((uint64_t *)word, opaque);
	} else {
		for (struct rmap_desc *d = rmap_word_desc(word); d && !ret; d = d->more)
			for (unsigned int i = 0; i < d->count && !ret; i++)
				ret = fn(d->sptes[i], opaque);
	}
	unlock_head(head, word);
	return ret;
}

/* Per-memslot tables */

int vmmu_rmap_table_create(struct vmmu_rmap_table **out, vmmu_gfn_t base_gfn, uint64_t npages, int max_level)
{
	struct vmmu_rmap_table *t;

	if (!out || !npages || base_gfn >= MAX_GFN_END || npages > MAX_GFN_END - base_gfn || max_level < 1 ||
	    max_level > VMMU_RMAP_MAX_LEVEL) {
		log_err("rmap table: bad arguments (base gfn 0x%llx, %llu pages, max level %d)",
			(unsigned long long)base_gfn, (unsigned long long)npages, max_level);
		return -EINVAL;
	}
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->base_gfn = base_gfn;
	t->npages = npages;
	t->max_level = max_level;
	for (int level = 1; level <= max_level; level++) {
		unsigned int s = LEVEL_SHIFT(level);
		uint64_t nr = ((base_gfn + npages - 1) >> s) - (base_gfn >> s) + 1;

		t->heads[level - 1] = calloc(nr, sizeof(struct vmmu_rmap_head));
		if (!t->heads[level - 1]) {
			vmmu_rmap_table_destroy(t);
			return -ENOMEM;
		}
		t->nr[level - 1] = nr;
	}
	*out = t;
	return 0;
}

void vmmu_rmap_table_destroy(struct vmmu_rmap_table *table)
{
	if (!table)
		return;
	for (int l = 0; l < VMMU_RMAP_MAX_LEVEL; l++) {
		for (uint64_t i = 0; i < table->nr[l]; i++) {
			uintptr_t word = head_peek(&table->heads[l][i]);

			if (word & RMAP_MANY)
				free_list(rmap_word_desc(word));
		}
		free(table->heads[l]);
	}
	free(table);
}

struct vmmu_rmap_head *vmmu_rmap_table_head(struct vmmu_rmap_table *table, vmmu_gfn_t gfn, int level)
{
	unsigned int s;

	if (unlikely(!table || level < 1 || level > table->max_level || gfn < table->base_gfn ||
		     gfn - table->base_gfn >= table->npages)) {
		log_err("rmap table: no head for gfn 0x%llx at level %d", (unsigned long long)gfn, level);
		return NULL;
	}
	s = LEVEL_SHIFT(level);
	return &table->heads[level - 1][(gfn >> s) - (table->base_gfn >> s)];
}

uint64_t vmmu_rmap_table_nr_heads(const struct vmmu_rmap_table *table, int level)
{
	if (!table || level < 1 || level > table->max_level)
		return 0;
	return table->nr[level - 1];
}
