/* SPDX-License-Identifier: MIT */
/*
 * Reverse maps: for one guest frame at one mapping level, the set of SPTEs
 * that map it (KVM's rmap), and the same structure for any other "list of
 * SPTE pointers" (a shadow page's parent SPTEs).
 *
 * The data structure knows nothing of SPTE formats: an entry is an opaque,
 * 8-byte aligned `uint64_t *`, never dereferenced here. A head is one machine
 * word (all-zero = empty) holding either nothing, one SPTE pointer, or a pointer
 * to a chain of 128-byte descriptors of 14 entries each, in which only the first
 * (head) descriptor may be partly full. So a frame mapped once costs no memory
 * beyond its head, and every further 14 SPTEs cost one 128-byte descriptor
 * (about 9.1 bytes per SPTE), as in KVM. The number of entries is known in O(1).
 * Entries form a multiset: adding a pointer twice keeps two entries.
 *
 * Memory: add never allocates. It takes descriptors from a caller-owned
 * struct vmmu_rmap_cache that the caller fills with vmmu_rmap_cache_topup()
 * before taking its MMU lock (as KVM tops up its per-vCPU memory caches); an
 * add that needs a descriptor from an empty cache fails with -ENOMEM and
 * changes nothing. Descriptors freed by removals go back to the cache given to
 * the removing call; the cache gives memory above its capacity back to the
 * system at the next top-up or trim, which run outside the lock.
 *
 * Threading. "Writers" are add, remove and the writer iterator; the caller
 * serializes them per head with its own lock (the MMU lock). Lockless readers
 * (e.g. aging without the MMU lock) may run concurrently with writers through
 * vmmu_rmap_walk_lockless() only: bit 1 of the head word is a lock bit that
 * such readers take (spin, then compare-exchange with acquire order), and that
 * writers take around every change of a non-empty list (release-store to
 * unlock). Empty heads are never locked. The bit protects the list, not the
 * SPTEs: a lockless reader must access each SPTE atomically itself.
 * vmmu_rmap_count() and the writer iterator are for lock holders.
 * A struct vmmu_rmap_cache is not thread-safe: give each thread its own.
 */
#ifndef LIBVMMU_RMAP_H
#define LIBVMMU_RMAP_H

#include <libvmmu/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/** SPTE pointers per descriptor. */
#define VMMU_RMAP_DESC_ENTRIES 14
/** Bytes per descriptor (the only memory an rmap allocates). */
#define VMMU_RMAP_DESC_SIZE 128
/** Highest mapping level with its own heads in a table: 1 = 4 KiB, 2 = 2 MiB, 3 = 1 GiB. */
#define VMMU_RMAP_MAX_LEVEL 3

/**
 * struct vmmu_rmap_head - one reverse map: one machine word.
 *
 * Zero-initialize it (or use VMMU_RMAP_HEAD_INIT) for an empty map. The word is
 * private to the library; read it only through the functions below. Before
 * freeing memory holding a non-empty head, empty it (remove every entry).
 */
struct vmmu_rmap_head {
	uintptr_t word;
};

#define VMMU_RMAP_HEAD_INIT { 0 }

struct vmmu_rmap_cache;

/**
 * vmmu_rmap_cache_create() - create an empty descriptor cache.
 * @out: receives the cache; the caller owns it (vmmu_rmap_cache_destroy()).
 * @capacity: how many descriptors the cache keeps at most across top-ups and
 *            trims (1..65536). Removals may push it above @capacity until the
 *            next vmmu_rmap_cache_topup() or vmmu_rmap_cache_trim().
 *
 * Return: 0; -EINVAL (NULL @out or @capacity out of range); -ENOMEM.
 */
VMMU_API int vmmu_rmap_cache_create(struct vmmu_rmap_cache **out, unsigned int capacity);

/**
 * vmmu_rmap_cache_destroy() - free a cache and every descriptor it holds.
 * Descriptors in use by rmaps are not affected. NULL is a no-op.
 */
VMMU_API void vmmu_rmap_cache_destroy(struct vmmu_rmap_cache *cache);

/**
 * vmmu_rmap_cache_topup() - make @cache hold at least @min descriptors,
 * allocating what is missing; then free what it holds above its capacity.
 * May allocate: call it without the MMU lock. @min descriptors cover @min adds.
 *
 * Return: 0; -EINVAL (NULL @cache, or @min above the capacity); -ENOMEM, in
 * which case nothing was allocated and the cache holds what it held before
 * (any surplus above its capacity has still been freed).
 */
VMMU_API int vmmu_rmap_cache_topup(struct vmmu_rmap_cache *cache, unsigned int min);

/** vmmu_rmap_cache_trim() - free the descriptors @cache holds above its capacity. NULL is a no-op. */
VMMU_API void vmmu_rmap_cache_trim(struct vmmu_rmap_cache *cache);

/** vmmu_rmap_cache_count() - number of descriptors @cache holds now (0 for NULL). */
VMMU_API unsigned int vmmu_rmap_cache_count(const struct vmmu_rmap_cache *cache);

/**
 * vmmu_rmap_add() - add @sptep to @head. Writer: hold the lock that
 * serializes writers of @head. Never allocates.
 * @cache: source of a descriptor when one is needed (the second entry, and
 *         every entry that finds the head descriptor full).
 *
 * Return: the number of entries after the add (>= 1); -EINVAL (NULL @head,
 * @sptep or @cache, or @sptep not 8-byte aligned; logged); -ENOMEM (a
 * descriptor was needed and @cache is empty); -EOVERFLOW (the map holds
 * INT_MAX - 14 entries; logged). On error @head is unchanged.
 */
VMMU_API int vmmu_rmap_add(struct vmmu_rmap_head *head, uint64_t *sptep, struct vmmu_rmap_cache *cache);

/**
 * vmmu_rmap_remove() - remove one entry equal to @sptep from @head. Writer.
 * Searches the chain (O(entries)). A descriptor left empty goes to @cache.
 *
 * Return: the number of entries left (>= 0); -EINVAL (NULL @head, @sptep or
 * @cache; logged); -ENOENT (@sptep is not in @head; logged, @head unchanged).
 */
VMMU_API int vmmu_rmap_remove(struct vmmu_rmap_head *head, uint64_t *sptep, struct vmmu_rmap_cache *cache);

/** vmmu_rmap_count() - number of entries in @head, in O(1) (0 for NULL). Writer side. */
VMMU_API unsigned int vmmu_rmap_count(const struct vmmu_rmap_head *head);

/**
 * struct vmmu_rmap_iter - a writer's position in one rmap. Caller-owned; its
 * fields are private. Valid while no add or remove other than
 * vmmu_rmap_iter_remove() on this iterator changes the head. The order in
 * which entries come is unspecified.
 */
struct vmmu_rmap_iter {
	struct vmmu_rmap_head *head;
	void *desc;
	uint64_t *cur;
	int pos;
	int reserved;
};

/**
 * vmmu_rmap_iter_first() - start iterating @head. Writer.
 *
 * Return: the first entry, or NULL if @head is empty (or NULL).
 */
VMMU_API uint64_t *vmmu_rmap_iter_first(struct vmmu_rmap_iter *it, struct vmmu_rmap_head *head);

/** vmmu_rmap_iter_next() - the next entry, or NULL past the last one. */
VMMU_API uint64_t *vmmu_rmap_iter_next(struct vmmu_rmap_iter *it);

/**
 * vmmu_rmap_iter_remove() - remove the entry the iterator returned last, in
 * O(1). Writer. Iteration continues with vmmu_rmap_iter_next() and still visits
 * every other entry exactly once. A descriptor left empty goes to @cache.
 *
 * Return: the number of entries left; -EINVAL (NULL argument, or no current
 * entry: before the first, past the last, or already removed; logged).
 */
VMMU_API int vmmu_rmap_iter_remove(struct vmmu_rmap_iter *it, struct vmmu_rmap_cache *cache);

/** Iterate @head as a writer: @sptep takes each entry in turn. */
#define vmmu_rmap_for_each(it, head, sptep) \
	for ((sptep) = vmmu_rmap_iter_first((it), (head)); (sptep); (sptep) = vmmu_rmap_iter_next(it))

/** Callback of vmmu_rmap_walk_lockless(): non-zero stops the walk and is returned. */
typedef int (*vmmu_rmap_walk_fn)(uint64_t *sptep, void *opaque);

/**
 * vmmu_rmap_walk_lockless() - call @fn for every entry of @head without the
 * writers' lock, holding the head's lock bit for the whole walk (writers of
 * this head wait). @fn must be short, must not add or remove entries of @head
 * (it would deadlock), and must access the SPTEs atomically. An empty head is
 * not locked and @fn is not called.
 *
 * Return: 0 after visiting every entry, else the first non-zero value @fn
 * returned; -EINVAL (NULL @head or @fn; logged).
 */
VMMU_API int vmmu_rmap_walk_lockless(struct vmmu_rmap_head *head, vmmu_rmap_walk_fn fn, void *opaque);

/*
 * An rmap table: the heads of one memslot for levels 1..max_level. The head of
 * @gfn at @level has index (gfn >> 9*(level-1)) - (base_gfn >> 9*(level-1)) in
 * that level's array, so a huge page's SPTE lives in the rmap of its own level
 * and each 2 MiB (1 GiB) region the slot touches has one head at level 2 (3).
 */
struct vmmu_rmap_table;

/**
 * vmmu_rmap_table_create() - create the (empty) heads of a memslot.
 * @out: receives the table; the caller owns it (vmmu_rmap_table_destroy()).
 * @base_gfn: first frame of the slot.
 * @npages: frames in the slot, non-zero; @base_gfn + @npages <= 2^40.
 * @max_level: highest level with heads, 1..VMMU_RMAP_MAX_LEVEL.
 *
 * Return: 0; -EINVAL (bad argument; logged); -ENOMEM.
 */
VMMU_API int vmmu_rmap_table_create(struct vmmu_rmap_table **out, vmmu_gfn_t base_gfn, uint64_t npages,
				    int max_level);

/**
 * vmmu_rmap_table_destroy() - free a table, including the descriptors of heads
 * that are not empty (the SPTEs they point at are not touched). NULL is a no-op.
 */
VMMU_API void vmmu_rmap_table_destroy(struct vmmu_rmap_table *table);

/**
 * vmmu_rmap_table_head() - the head of @gfn at @level, in O(1).
 *
 * Return: the head, owned by the table; NULL (logged) if @table is NULL, @gfn
 * is outside the slot or @level is not in 1..max_level.
 */
VMMU_API struct vmmu_rmap_head *vmmu_rmap_table_head(struct vmmu_rmap_table *table, vmmu_gfn_t gfn, int level);

/** vmmu_rmap_table_nr_heads() - how many heads @level has (0 for NULL or a level without heads). */
VMMU_API uint64_t vmmu_rmap_table_nr_heads(const struct vmmu_rmap_table *table, int level);

#ifdef __cplusplus
}
#endif

#endif
