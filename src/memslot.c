/* SPDX-License-Identifier: MIT */
/*
 * Memslots: a sorted array of non-overlapping gfn ranges. Lookups binary-search
 * the array after checking the slot found last (most accesses hit the same slot
 * as the previous one: a walk reads four tables from one region, a harvest
 * scans one slot).
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <libvmmu/memslot.h>

#include "internal.h"
#include "memslot_internal.h"

#define MAX_GFN_END (1ULL << (VMMU_MAX_PHYS_BITS - VMMU_PAGE_SHIFT))

int vmmu_memslots_create(struct vmmu_memslots **out)
{
	struct vmmu_memslots *s;

	if (!out)
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	*out = s;
	return 0;
}

void vmmu_memslots_destroy(struct vmmu_memslots *slots)
{
	if (!slots)
		return;
	free(slots->slot);
	free(slots);
}

static int index_of_id(const struct vmmu_memslots *s, uint32_t id)
{
	for (unsigned int i = 0; i < s->nr; i++)
		if (s->slot[i].id == id)
			return (int)i;
	return -1;
}

/* First index whose slot ends after @gfn (the only candidate to hold it). */
static unsigned int lower_bound(const struct vmmu_memslots *s, vmmu_gfn_t gfn)
{
	unsigned int lo = 0, hi = s->nr;

	while (lo < hi) {
		unsigned int mid = lo + (hi - lo) / 2;

		if (s->slot[mid].base_gfn + s->slot[mid].npages <= gfn)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static bool overlaps_other(const struct vmmu_memslots *s, vmmu_gfn_t base, uint64_t npages, int skip)
{
	unsigned int i = lower_bound(s, base);

	for (; i < s->nr; i++) {
		if ((int)i == skip)
			continue;
		return s->slot[i].base_gfn < base + npages;
	}
	return false;
}

static int check_range(vmmu_gpa_t gpa, uint64_t size)
{
	if (size == 0) {
		log_err("memslot: zero size at gpa 0x%llx", (unsigned long long)gpa);
		return -EINVAL;
	}
	if ((gpa | size) & (VMMU_PAGE_SIZE - 1)) {
		log_err("memslot: gpa 0x%llx size 0x%llx not 4 KiB aligned", (unsigned long long)gpa,
			(unsigned long long)size);
		return -EINVAL;
	}
	if (gpa >= (1ULL << VMMU_MAX_PHYS_BITS) || size > (1ULL << VMMU_MAX_PHYS_BITS) - gpa) {
		log_err("memslot: gpa 0x%llx size 0x%llx passes the 52-bit physical limit",
			(unsigned long long)gpa, (unsigned long long)size);
		return -EINVAL;
	}
	return 0;
}

static void insert_sorted(struct vmmu_memslots *s, const struct memslot *m)
{
	unsigned int i = lower_bound(s, m->base_gfn);

	memmove(&s->slot[i + 1], &s->slot[i], (s->nr - i) * sizeof(s->slot[0]));
	s->slot[i] = *m;
	s->nr++;
}

static void changed(struct vmmu_memslots *s)
{
	atomic_store_explicit(&s->last_hit, 0, memory_order_relaxed);
	s->generation++;
}

int vmmu_memslots_add(struct vmmu_memslots *slots, uint32_t id, vmmu_gpa_t gpa, uint64_t size, void *hva,
		      uint32_t flags)
{
	struct memslot m;
	int ret;

	if (!slots)
		return -EINVAL;
	ret = check_range(gpa, size);
	if (ret)
		return ret;
	if (!hva || ((uintptr_t)hva & (VMMU_PAGE_SIZE - 1))) {
		log_err("memslot %u: host memory %p is NULL or not 4 KiB aligned", id, hva);
		return -EINVAL;
	}
	if (flags & ~VMMU_MEMSLOT_FLAGS_ALL) {
		log_err("memslot %u: unknown flags 0x%x", id, flags);
		return -EINVAL;
	}
	if (index_of_id(slots, id) >= 0) {
		log_err("memslot %u: id already in use", id);
		return -EEXIST;
	}
	m = (struct memslot){ .base_gfn = gpa >> VMMU_PAGE_SHIFT, .npages = size >> VMMU_PAGE_SHIFT,
			      .hva = hva, .id = id, .flags = flags };
	if (overlaps_other(slots, m.base_gfn, m.npages, -1)) {
		log_err("memslot %u: [0x%llx, 0x%llx) overlaps another slot", id, (unsigned long long)gpa,
			(unsigned long long)(gpa + size));
		return -EEXIST;
	}
	if (slots->nr == VMMU_MEMSLOTS_MAX) {
		log_err("memslot %u: set is full (%u slots)", id, VMMU_MEMSLOTS_MAX);
		return -ENOSPC;
	}
	if (slots->nr == slots->cap) {
		unsigned int cap = slots->cap ? slots->cap * 2 : 8;
		struct memslot *n = realloc(slots->slot, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		slots->slot = n;
		slots->cap = cap;
	}
	insert_sorted(slots, &m);
	changed(slots);
	return 0;
}

int vmmu_memslots_remove(struct vmmu_memslots *slots, uint32_t id)
{
	int i;

	if (!slots)
		return -EINVAL;
	i = index_of_id(slots, id);
	if (i < 0) {
		log_err("memslot %u: no such slot to remove", id);
		return -ENOENT;
	}
	memmove(&slots->slot[i], &slots->slot[i + 1], (slots->nr - i - 1) * sizeof(slots->slot[0]));
	slots->nr--;
	changed(slots);
	return 0;
}

int vmmu_memslots_move(struct vmmu_memslots *slots, uint32_t id, vmmu_gpa_t new_gpa)
{
	struct memslot m;
	int i, ret;

	if (!slots)
		return -EINVAL;
	i = index_of_id(slots, id);
	if (i < 0) {
		log_err("memslot %u: no such slot to move", id);
		return -ENOENT;
	}
	m = slots->slot[i];
	ret = check_range(new_gpa, m.npages << VMMU_PAGE_SHIFT);
	if (ret)
		return ret;
	if (overlaps_other(slots, new_gpa >> VMMU_PAGE_SHIFT, m.npages, i)) {
		log_err("memslot %u: move to 0x%llx overlaps another slot", id, (unsigned long long)new_gpa);
		return -EEXIST;
	}
	memmove(&slots->slot[i], &slots->slot[i + 1], (slots->nr - i - 1) * sizeof(slots->slot[0]));
	slots->nr--;
	m.base_gfn = new_gpa >> VMMU_PAGE_SHIFT;
	insert_sorted(slots, &m);
	changed(slots);
	return 0;
}

int vmmu_memslots_set_flags(struct vmmu_memslots *slots, uint32_t id, uint32_t flags)
{
	int i;

	if (!slots)
		return -EINVAL;
	if (flags & ~VMMU_MEMSLOT_FLAGS_ALL) {
		log_err("memslot %u: unknown flags 0x%x", id, flags);
		return -EINVAL;
	}
	i = index_of_id(slots, id);
	if (i < 0) {
		log_err("memslot %u: no such slot", id);
		return -ENOENT;
	}
	slots->slot[i].flags = flags;
	changed(slots);
	return 0;
}

uint64_t vmmu_memslots_generation(const struct vmmu_memslots *slots)
{
	return slots ? slots->generation : 0;
}

unsigned int vmmu_memslots_count(const struct vmmu_memslots *slots)
{
	return slots ? slots->nr : 0;
}

const struct memslot *memslot_lookup(const struct vmmu_memslots *s, vmmu_gfn_t gfn)
{
	struct vmmu_memslots *m = (struct vmmu_memslots *)s;
	unsigned int i = atomic_load_explicit(&m->last_hit, memory_order_relaxed);

	if (likely(i < s->nr) && gfn - s->slot[i].base_gfn < s->slot[i].npages)
		return &s->slot[i];
	i = lower_bound(s, gfn);
	if (i < s->nr && s->slot[i].base_gfn <= gfn) {
		atomic_store_explicit(&m->last_hit, i, memory_order_relaxed);
		return &s->slot[i];
	}
	return NULL;
}

static void fill_info(const struct memslot *m, struct vmmu_memslot_info *out)
{
	*out = (struct vmmu_memslot_info){ .id = m->id, .flags = m->flags, .base_gfn = m->base_gfn,
					   .npages = m->npages, .hva = m->hva };
}

int vmmu_memslots_find(const struct vmmu_memslots *slots, vmmu_gpa_t gpa, struct vmmu_memslot_info *out)
{
	const struct memslot *m;

	if (!slots)
		return -EINVAL;
	m = memslot_lookup(slots, gpa >> VMMU_PAGE_SHIFT);
	if (!m)
		return -ENOENT;
	if (out)
		fill_info(m, out);
	return 0;
}

int vmmu_memslots_get(const struct vmmu_memslots *slots, uint32_t id, struct vmmu_memslot_info *out)
{
	int i;

	if (!slots || !out)
		return -EINVAL;
	i = index_of_id(slots, id);
	if (i < 0)
		return -ENOENT;
	fill_info(&slots->slot[i], out);
	return 0;
}

int vmmu_memslots_at(const struct vmmu_memslots *slots, unsigned int index, struct vmmu_memslot_info *out)
{
	if (!slots || !out)
		return -EINVAL;
	if (index >= slots->nr)
		return -ENOENT;
	fill_info(&slots->slot[index], out);
	return 0;
}

void *vmmu_memslots_hva(const struct vmmu_memslots *slots, vmmu_gpa_t gpa, size_t len, bool write)
{
	const struct memslot *m;
	uint64_t off;

	if (!slots || len == 0 || gpa >= (1ULL << VMMU_MAX_PHYS_BITS))
		return NULL;
	m = memslot_lookup(slots, gpa >> VMMU_PAGE_SHIFT);
	if (!m || (write && (m->flags & VMMU_MEMSLOT_READONLY)))
		return NULL;
	off = gpa - (m->base_gfn << VMMU_PAGE_SHIFT);
	if (len > (m->npages << VMMU_PAGE_SHIFT) - off)
		return NULL;
	return m->hva + off;
}

enum copy_op { COPY_READ, COPY_CHECK_WRITE, COPY_WRITE };

/*
 * Walk [gpa, gpa + len) slot by slot: copy out (COPY_READ), only check that
 * every byte is writable (COPY_CHECK_WRITE), or copy in (COPY_WRITE).
 * Returns 0, -EFAULT (a byte without a slot) or -EACCES (read-only slot).
 */
static int copy_range(const struct vmmu_memslots *s, vmmu_gpa_t gpa, size_t len, enum copy_op op,
		      uint8_t *dst, const uint8_t *src)
{
	while (len) {
		const struct memslot *m;
		uint64_t off, chunk;

		if (gpa >= (1ULL << VMMU_MAX_PHYS_BITS))
			return -EFAULT;
		m = memslot_lookup(s, gpa >> VMMU_PAGE_SHIFT);
		if (!m)
			return -EFAULT;
		if (op != COPY_READ && (m->flags & VMMU_MEMSLOT_READONLY))
			return -EACCES;
		off = gpa - (m->base_gfn << VMMU_PAGE_SHIFT);
		chunk = (m->npages << VMMU_PAGE_SHIFT) - off;
		if (chunk > len)
			chunk = len;
		if (op == COPY_READ) {
			memcpy(dst, m->hva + off, chunk);
			dst += chunk;
		} else if (op == COPY_WRITE) {
			memcpy(m->hva + off, src, chunk);
			src += chunk;
		}
		gpa += chunk;
		len -= chunk;
	}
	return 0;
}

int vmmu_memslots_read(const struct vmmu_memslots *slots, vmmu_gpa_t gpa, void *buf, size_t len)
{
	if (!slots || (!buf && len))
		return -EINVAL;
	return copy_range(slots, gpa, len, COPY_READ, buf, NULL);
}

int vmmu_memslots_write(const struct vmmu_memslots *slots, vmmu_gpa_t gpa, const void *buf, size_t len)
{
	int ret;

	if (!slots || (!buf && len))
		return -EINVAL;
	ret = copy_range(slots, gpa, len, COPY_CHECK_WRITE, NULL, NULL);
	if (ret)
		return ret;
	return copy_range(slots, gpa, len, COPY_WRITE, NULL, buf);
}
