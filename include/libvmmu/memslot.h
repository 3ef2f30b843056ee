/* SPDX-License-Identifier: MIT */
/*
 * Memslots: sorted, non-overlapping guest-frame ranges backed by host memory.
 *
 * A set of memslots is the one place where guest physical addresses become host
 * pointers; every access the library makes to guest memory goes through it and
 * is bounds-checked here. Every change bumps a generation number (as KVM's
 * memslot generation), which MMIO SPTEs and caches compare against.
 *
 * Threading: lookups (find, hva, read, write, cmpxchg) may run concurrently
 * with each other. Changes (add, remove, move, set_flags) must not run
 * concurrently with any other call on the same set; the MMU and VM layers
 * serialize them.
 */
#ifndef LIBVMMU_MEMSLOT_H
#define LIBVMMU_MEMSLOT_H

#include <libvmmu/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Flags of a memslot (values equal to KVM's KVM_MEM_* flags). */
#define VMMU_MEMSLOT_LOG_DIRTY (1u << 0) /**< dirty logging is on for the slot */
#define VMMU_MEMSLOT_READONLY  (1u << 1) /**< guest writes fault (to MMIO); the library never writes it */
#define VMMU_MEMSLOT_FLAGS_ALL (VMMU_MEMSLOT_LOG_DIRTY | VMMU_MEMSLOT_READONLY)

/** Largest number of slots a set holds. */
#define VMMU_MEMSLOTS_MAX 32768

struct vmmu_memslots;

/** A slot as reported by lookups: a copy, valid until the set changes. */
struct vmmu_memslot_info {
	uint32_t id;          /**< caller's slot id (KVM's slot number) */
	uint32_t flags;       /**< VMMU_MEMSLOT_* */
	vmmu_gfn_t base_gfn;  /**< first frame */
	uint64_t npages;      /**< number of 4 KiB frames */
	void *hva;            /**< host address of base_gfn */
	uint64_t reserved[2];
};

/**
 * vmmu_memslots_create() - create an empty memslot set.
 * @out: receives the set; the caller owns it and frees it with vmmu_memslots_destroy().
 *
 * Return: 0, -EINVAL if @out is NULL, -ENOMEM.
 */
VMMU_API int vmmu_memslots_create(struct vmmu_memslots **out);

/** vmmu_memslots_destroy() - free a set (not the host memory it points at). NULL is a no-op. */
VMMU_API void vmmu_memslots_destroy(struct vmmu_memslots *slots);

/**
 * vmmu_memslots_add() - add a slot mapping [@gpa, @gpa + @size) to @hva.
 * @slots: the set.
 * @id: slot id, unique in the set.
 * @gpa: first guest physical address; 4 KiB aligned.
 * @size: bytes; non-zero, a multiple of 4 KiB; @gpa + @size must not pass 2^52.
 * @hva: host memory of at least @size bytes, 4 KiB aligned; owned by the caller
 *       and must stay mapped until the slot is removed.
 * @flags: VMMU_MEMSLOT_*.
 *
 * Bumps the generation. On any error the set is unchanged and a log line says why.
 *
 * Return: 0; -EINVAL for a NULL set or @hva, zero, unaligned or too large a
 * range, or unknown flags; -EEXIST if @id is in use or the range overlaps
 * another slot; -ENOSPC past VMMU_MEMSLOTS_MAX slots; -ENOMEM.
 */
VMMU_API int vmmu_memslots_add(struct vmmu_memslots *slots, uint32_t id, vmmu_gpa_t gpa, uint64_t size,
			       void *hva, uint32_t flags);

/**
 * vmmu_memslots_remove() - remove slot @id. Bumps the generation.
 *
 * Return: 0, -EINVAL for a NULL set, -ENOENT if there is no such slot.
 */
VMMU_API int vmmu_memslots_remove(struct vmmu_memslots *slots, uint32_t id);

/**
 * vmmu_memslots_move() - move slot @id to start at @new_gpa (same size, same host memory).
 *
 * Bumps the generation. Return: 0; -EINVAL (NULL set, unaligned or past 2^52);
 * -ENOENT (no such slot); -EEXIST (the new range overlaps another slot).
 */
VMMU_API int vmmu_memslots_move(struct vmmu_memslots *slots, uint32_t id, vmmu_gpa_t new_gpa);

/**
 * vmmu_memslots_set_flags() - replace the flags of slot @id. Bumps the generation.
 *
 * Return: 0; -EINVAL (NULL set or unknown flags); -ENOENT (no such slot).
 */
VMMU_API int vmmu_memslots_set_flags(struct vmmu_memslots *slots, uint32_t id, uint32_t flags);

/**
 * vmmu_memslots_generation() - the generation number; it changes on every
 * successful add, remove, move and set_flags, and never goes back.
 */
VMMU_API uint64_t vmmu_memslots_generation(const struct vmmu_memslots *slots);

/** vmmu_memslots_count() - number of slots in the set (0 for NULL). */
VMMU_API unsigned int vmmu_memslots_count(const struct vmmu_memslots *slots);

/**
 * vmmu_memslots_find() - find the slot holding @gpa, in O(log n), with a
 * fast path for the slot found last.
 * @out: receives a copy of the slot; may be NULL to test membership.
 *
 * Return: 0; -EINVAL (NULL set); -ENOENT (no slot holds @gpa).
 */
VMMU_API int vmmu_memslots_find(const struct vmmu_memslots *slots, vmmu_gpa_t gpa,
				struct vmmu_memslot_info *out);

/**
 * vmmu_memslots_get() - the slot with id @id.
 *
 * Return: 0; -EINVAL (NULL set or @out); -ENOENT.
 */
VMMU_API int vmmu_memslots_get(const struct vmmu_memslots *slots, uint32_t id, struct vmmu_memslot_info *out);

/**
 * vmmu_memslots_at() - the @index-th slot in ascending gpa order (for iteration).
 *
 * Return: 0; -EINVAL (NULL set or @out); -ENOENT (@index past the end).
 */
VMMU_API int vmmu_memslots_at(const struct vmmu_memslots *slots, unsigned int index,
			      struct vmmu_memslot_info *out);

/**
 * vmmu_memslots_hva() - host pointer for [@gpa, @gpa + @len), which must lie
 * inside one slot.
 * @write: the caller will write through the pointer; refused for read-only slots.
 *
 * Return: the pointer, or NULL if the range is not inside one slot (or @len is
 * 0, or @write and the slot is read-only). The pointer stays valid while the
 * slot exists.
 */
VMMU_API void *vmmu_memslots_hva(const struct vmmu_memslots *slots, vmmu_gpa_t gpa, size_t len, bool write);

/**
 * vmmu_memslots_read() - copy @len bytes of guest memory at @gpa into @buf.
 * The range may span adjacent slots.
 *
 * Return: 0; -EINVAL (NULL arguments); -EFAULT if any byte has no slot.
 */
VMMU_API int vmmu_memslots_read(const struct vmmu_memslots *slots, vmmu_gpa_t gpa, void *buf, size_t len);

/**
 * vmmu_memslots_write() - copy @len bytes from @buf into guest memory at @gpa.
 * The range may span adjacent slots. Nothing is written unless every byte
 * lies in a writable slot.
 *
 * Return: 0; -EINVAL (NULL arguments); -EFAULT (a byte without a slot);
 * -EACCES (a byte in a read-only slot).
 */
VMMU_API int vmmu_memslots_write(const struct vmmu_memslots *slots, vmmu_gpa_t gpa, const void *buf, size_t len);

#ifdef __cplusplus
}
#endif

#endif
