/* SPDX-License-Identifier: MIT */
/*
 * Page-table builder. One loop (apply()) descends from the root for each page
 * of a range, creating tables (map) or splitting huge leaves on the way, and
 * acts on the entry at the level where the operation lands. Entries are
 * written one aligned store at a time, each store leaving a consistent tree.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <libvmmu/ptbuild.h>

#include "internal.h"

/* First-stage entry bits (SDM vol. 3A 4.3-4.5). */
#define PTE_P        BIT_ULL(0)
#define PTE_W        BIT_ULL(1)
#define PTE_U        BIT_ULL(2)
#define PTE_PWT      BIT_ULL(3)
#define PTE_PCD      BIT_ULL(4)
#define PTE_A        BIT_ULL(5)
#define PTE_D        BIT_ULL(6)
#define PTE_PS       BIT_ULL(7) /* in a PDE / PDPTE: the entry maps a page */
#define PTE_PAT_4K   BIT_ULL(7) /* in a PTE the same bit is PAT */
#define PTE_G        BIT_ULL(8)
#define PTE_PAT_HUGE BIT_ULL(12)
#define PTE_PKEY_SHIFT 59
#define PTE_NX       BIT_ULL(63)
/* 32-bit 4 MiB PDE: physical-address bits 39:32 sit in bits 20:13 (PSE-36). */
#define PDE32_HIGH_SHIFT 13
#define PDE32_HIGH_MASK  GENMASK_ULL(20, 13)

/* EPT entry bits (SDM vol. 3C 29.3.2). */
#define EPT_R    BIT_ULL(0)
#define EPT_W    BIT_ULL(1)
#define EPT_X    BIT_ULL(2)
#define EPT_RWX  (EPT_R | EPT_W | EPT_X)
#define EPT_MT_SHIFT 3
#define EPT_IPAT BIT_ULL(6)
#define EPT_PS   BIT_ULL(7)
#define EPT_A    BIT_ULL(8)
#define EPT_D    BIT_ULL(9)
#define EPTP_MT_WB 6ULL
#define EPTP_LEVELS_SHIFT 3
#define EPTP_AD  BIT_ULL(6)

#define ADDR_MASK    GENMASK_ULL(51, 12)
#define ADDR_MASK_32 GENMASK_ULL(31, 12)
#define FOUR_GIB     (1ULL << 32)
#define PAE_PDPT_BYTES 32

struct vmmu_ptbuild {
	const struct vmmu_memslots *mem;
	enum vmmu_paging_mode mode;
	uint8_t levels;     /* 2 .. 5 */
	uint8_t bits;       /* index bits per level: 10 (32-bit paging) or 9 */
	uint8_t esize;      /* bytes per entry: 4 or 8 */
	uint8_t va_bits;    /* width of the input address: 32, 48 or 57 */
	uint8_t maxphyaddr;
	bool ept;
	bool canonical;     /* 4-/5-level first stage: the input address must be canonical */
	bool root_owned;    /* the builder allocated the root */
	uint32_t flags;
	vmmu_gpa_t root;
	vmmu_ptbuild_alloc_fn alloc;
	vmmu_ptbuild_free_fn free;
	void *opaque;
};

/* ---- geometry ---- */

static unsigned int level_shift(const struct vmmu_ptbuild *b, int level)
{
	return VMMU_PAGE_SHIFT + b->bits * (unsigned int)(level - 1);
}

static uint64_t level_size(const struct vmmu_ptbuild *b, int level)
{
	return 1ULL << level_shift(b, level);
}

static bool is_pae_root(const struct vmmu_ptbuild *b, int level)
{
	return b->mode == VMMU_PAGING_PAE && level == 3;
}

static unsigned int table_entries(const struct vmmu_ptbuild *b, int level)
{
	return is_pae_root(b, level) ? 4 : 1u << b->bits;
}

static unsigned int table_index(const struct vmmu_ptbuild *b, uint64_t va, int level)
{
	return (unsigned int)(va >> level_shift(b, level)) & (table_entries(b, level) - 1);
}

/* Levels where an entry with PS set maps a page: 4K, 2M/4M everywhere, 1G with 4-/5-level formats. */
static bool level_can_map(const struct vmmu_ptbuild *b, int level)
{
	return level <= 2 || (level == 3 && b->levels >= 4);
}

static int page_size_level(const struct vmmu_ptbuild *b, uint64_t page_size)
{
	if (page_size == VMMU_PT_SIZE_4K)
		return 1;
	if (page_size == VMMU_PT_SIZE_2M && b->esize == 8)
		return 2;
	if (page_size == VMMU_PT_SIZE_4M && b->esize == 4)
		return 2;
	if (page_size == VMMU_PT_SIZE_1G && b->levels >= 4)
		return 3;
	return -1;
}

/* ---- entries ---- */

static void *table_hva(const struct vmmu_ptbuild *b, vmmu_gpa_t table, int level, bool write)
{
	size_t bytes = (size_t)table_entries(b, level) * b->esize;

	return vmmu_memslots_hva(b->mem, table, bytes, write);
}

static uint64_t entry_get(const struct vmmu_ptbuild *b, const void *t, unsigned int i)
{
	if (b->esize == 4)
		return __atomic_load_n((const uint32_t *)t + i, __ATOMIC_RELAXED);
	return __atomic_load_n((const uint64_t *)t + i, __ATOMIC_RELAXED);
}

static void entry_set(const struct vmmu_ptbuild *b, void *t, unsigned int i, uint64_t e)
{
	if (b->esize == 4)
		__atomic_store_n((uint32_t *)t + i, (uint32_t)e, __ATOMIC_RELAXED);
	else
		__atomic_store_n((uint64_t *)t + i, e, __ATOMIC_RELAXED);
}

static bool entry_is_present(const struct vmmu_ptbuild *b, uint64_t e)
{
	return e & (b->ept ? EPT_RWX : PTE_P);
}

/* A present entry at @level maps a page (rather than pointing to a table). */
static bool entry_is_leaf(const struct vmmu_ptbuild *b, uint64_t e, int level)
{
	return level == 1 || (level_can_map(b, level) && (e & PTE_PS));
}

static vmmu_gpa_t entry_table(const struct vmmu_ptbuild *b, uint64_t e)
{
	return e & (b->esize == 4 ? ADDR_MASK_32 : ADDR_MASK);
}

/* The first byte of the page a leaf at @level maps. */
static vmmu_gpa_t leaf_frame(const struct vmmu_ptbuild *b, uint64_t e, int level)
{
	if (level == 1)
		return entry_table(b, e);
	if (b->esize == 4)
		return (e & GENMASK_ULL(31, 22)) | ((e & PDE32_HIGH_MASK) >> PDE32_HIGH_SHIFT << 32);
	return e & ADDR_MASK & ~(level_size(b, level) - 1);
}

static uint64_t make_table(const struct vmmu_ptbuild *b, int level, vmmu_gpa_t table)
{
	if (b->ept)
		return table | EPT_RWX;
	if (is_pae_root(b, level))
		return table | PTE_P; /* a PDPTE has no W/U/XD: those bits are reserved */
	return table | PTE_P | PTE_W | PTE_U;
}

static uint64_t make_leaf(const struct vmmu_ptbuild *b, int level, vmmu_gpa_t gpa, uint32_t prot, uint64_t extra)
{
	uint64_t e;

	if (b->ept) {
		e = gpa | ((prot & VMMU_PT_MT_MASK) >> VMMU_PT_MT_SHIFT << EPT_MT_SHIFT);
		e |= (prot & VMMU_PT_READ ? EPT_R : 0) | (prot & VMMU_PT_WRITE ? EPT_W : 0) |
		     (prot & VMMU_PT_EXEC ? EPT_X : 0) | (prot & VMMU_PT_IPAT ? EPT_IPAT : 0) |
		     (level > 1 ? EPT_PS : 0);
		return e | extra;
	}
	e = PTE_P | (prot & VMMU_PT_WRITE ? PTE_W : 0) | (prot & VMMU_PT_USER ? PTE_U : 0) |
	    (prot & VMMU_PT_PWT ? PTE_PWT : 0) | (prot & VMMU_PT_PCD ? PTE_PCD : 0) |
	    (prot & VMMU_PT_GLOBAL ? PTE_G : 0) | (prot & VMMU_PT_NX ? PTE_NX : 0) |
	    (uint64_t)((prot & VMMU_PT_PKEY_MASK) >> VMMU_PT_PKEY_SHIFT) << PTE_PKEY_SHIFT;
	if (level == 1)
		e |= gpa | (prot & VMMU_PT_PAT ? PTE_PAT_4K : 0);
	else if (b->esize == 4)
		e |= PTE_PS | (prot & VMMU_PT_PAT ? PTE_PAT_HUGE : 0) | (gpa & GENMASK_ULL(31, 22)) |
		     (gpa >> 32 << PDE32_HIGH_SHIFT);
	else
		e |= PTE_PS | (prot & VMMU_PT_PAT ? PTE_PAT_HUGE : 0) | gpa;
	return e | extra;
}

/* The VMMU_PT_* protection a leaf carries. */
static uint32_t leaf_prot(const struct vmmu_ptbuild *b, uint64_t e, int level)
{
	uint32_t p = 0;

	if (b->ept) {
		p |= (e & EPT_R ? VMMU_PT_READ : 0) | (e & EPT_W ? VMMU_PT_WRITE : 0) |
		     (e & EPT_X ? VMMU_PT_EXEC : 0) | (e & EPT_IPAT ? VMMU_PT_IPAT : 0);
		return p | VMMU_PT_MT((e >> EPT_MT_SHIFT) & 7);
	}
	p |= (e & PTE_W ? VMMU_PT_WRITE : 0) | (e & PTE_U ? VMMU_PT_USER : 0) | (e & PTE_PWT ? VMMU_PT_PWT : 0) |
	     (e & PTE_PCD ? VMMU_PT_PCD : 0) | (e & PTE_G ? VMMU_PT_GLOBAL : 0);
	p |= (e & (level == 1 ? PTE_PAT_4K : PTE_PAT_HUGE)) ? VMMU_PT_PAT : 0;
	if (b->esize == 8)
		p |= e & PTE_NX ? VMMU_PT_NX : 0;
	if (b->levels >= 4)
		p |= VMMU_PT_PKEY((e >> PTE_PKEY_SHIFT) & 15);
	return p;
}

/* Entry @i of the table that replaces huge leaf @e at @level: same attributes, one level down. */
static uint64_t split_child(const struct vmmu_ptbuild *b, uint64_t e, int level, unsigned int i)
{
	vmmu_gpa_t frame = leaf_frame(b, e, level) + (uint64_t)i * level_size(b, level - 1);
	uint64_t attrs;

	if (b->esize == 4)
		attrs = e & GENMASK_ULL(11, 0) & ~PTE_PS;
	else
		attrs = e & ~ADDR_MASK & ~PTE_PS;
	if (b->ept)
		return attrs | frame | (level - 1 > 1 ? EPT_PS : 0);
	if (level - 1 > 1)
		attrs |= PTE_PS | (e & PTE_PAT_HUGE);
	else if (e & PTE_PAT_HUGE)
		attrs |= PTE_PAT_4K;
	return attrs | frame;
}

/* ---- table pages ---- */

static void give_back(struct vmmu_ptbuild *b, vmmu_gpa_t gpa)
{
	if (b->free)
		b->free(b->opaque, gpa);
}

/* Highest table address + 1: CR3 and 32-bit entries hold 32 bits; else MAXPHYADDR. */
static uint64_t table_limit(const struct vmmu_ptbuild *b, bool root)
{
	if (b->esize == 4 || (root && b->mode == VMMU_PAGING_PAE))
		return FOUR_GIB;
	return 1ULL << b->maxphyaddr;
}

static int table_alloc(struct vmmu_ptbuild *b, bool root, vmmu_gpa_t *out)
{
	vmmu_gpa_t gpa = 0;
	void *p;

	if (b->alloc(b->opaque, &gpa)) {
		log_err("ptbuild: the allocator has no page left for a table");
		return -ENOMEM;
	}
	p = vmmu_memslots_hva(b->mem, gpa, VMMU_PAGE_SIZE, true);
	if ((gpa & ~VMMU_PAGE_MASK) || gpa >= table_limit(b, root) || !p) {
		log_err("ptbuild: the allocator returned table page 0x%llx, which is %s",
			(unsigned long long)gpa,
			p ? "unaligned or past the format's address limit" : "not in writable guest memory");
		give_back(b, gpa);
		return -EFAULT;
	}
	memset(p, 0, VMMU_PAGE_SIZE);
	*out = gpa;
	return 0;
}

/* Give back every table below @table (at @level), then @table itself unless @keep_self. */
static void free_tree(struct vmmu_ptbuild *b, vmmu_gpa_t table, int level, bool keep_self)
{
	const void *t = table_hva(b, table, level, false);

	if (t && level > 1) {
		for (unsigned int i = 0; i < table_entries(b, level); i++) {
			uint64_t e = entry_get(b, t, i);

			if (entry_is_present(b, e) && !entry_is_leaf(b, e, level))
				free_tree(b, entry_table(b, e), level - 1, false);
		}
	}
	if (!keep_self)
		b->free(b->opaque, table);
}

/* Build a table that maps what huge leaf @e at @level maps, in pages one level down. */
static int split(struct vmmu_ptbuild *b, uint64_t e, int level, vmmu_gpa_t *out)
{
	vmmu_gpa_t child;
	void *t;
	int ret;

	if (b->esize == 4 && leaf_frame(b, e, level) >= FOUR_GIB) {
		log_err("ptbuild: cannot split the 4 MiB page at 0x%llx: 4 KiB PTEs do not reach past 4 GiB",
			(unsigned long long)leaf_frame(b, e, level));
		return -EINVAL;
	}
	ret = table_alloc(b, false, &child);
	if (ret)
		return ret;
	t = table_hva(b, child, level - 1, true);
	for (unsigned int i = 0; i < table_entries(b, level - 1); i++)
		entry_set(b, t, i, split_child(b, e, level, i));
	*out = child;
	return 0;
}

/* ---- range operations ---- */

enum op { OP_MAP, OP_UNMAP, OP_PROTECT };

struct request {
	enum op op;
	int map_level;   /* OP_MAP: level of the leaves to write */
	vmmu_gpa_t gpa;  /* OP_MAP: where the current page goes */
	uint32_t prot;
	uint64_t extra;
};

static uint64_t reprotect(const struct vmmu_ptbuild *b, uint64_t e, int level, uint32_t prot)
{
	uint64_t ad = b->ept ? EPT_A | EPT_D : PTE_A | PTE_D;

	return make_leaf(b, level, leaf_frame(b, e, level), prot, 0) | (e & ad);
}

/* Write leaves from entry @i of table @t on: as many as the range and the table hold. */
static void map_leaves(struct vmmu_ptbuild *b, struct request *r, void *t, unsigned int i, int level,
		       uint64_t *va, uint64_t *left)
{
	uint64_t size = level_size(b, level);

	do {
		uint64_t old = entry_get(b, t, i);

		entry_set(b, t, i, make_leaf(b, level, r->gpa, r->prot, r->extra));
		if (level > 1 && b->free && entry_is_present(b, old) && !entry_is_leaf(b, old, level))
			free_tree(b, entry_table(b, old), level - 1, false);
		*va += size;
		r->gpa += size;
		*left -= size;
		i++;
	} while (*left && i < table_entries(b, level));
}

/*
 * Unmap or protect: handle the entries of table @t from @i on that need no
 * descent (holes, leaves the range covers whole). Returns false if the
 * entry at @i needs one (a table, or a leaf the range covers in part).
 */
static bool sweep_leaves(const struct vmmu_ptbuild *b, const struct request *r, void *t, unsigned int i, int level,
			 uint64_t *va, uint64_t *left)
{
	uint64_t size = level_size(b, level);
	bool moved = false;

	for (; *left && i < table_entries(b, level); i++) {
		uint64_t e = entry_get(b, t, i), step = size - (*va & (size - 1));

		if (entry_is_present(b, e)) {
			if (!entry_is_leaf(b, e, level) || step != size || *left < size)
				break;
			entry_set(b, t, i, r->op == OP_UNMAP ? 0 : reprotect(b, e, level, r->prot));
		}
		*left = step >= *left ? 0 : *left - step;
		*va += step;
		moved = true;
	}
	return moved;
}

static int apply(struct vmmu_ptbuild *b, struct request *r, uint64_t va, uint64_t left)
{
	while (left) {
		vmmu_gpa_t table = b->root;
		int level = b->levels;

		for (;;) {
			void *t = table_hva(b, table, level, true);
			unsigned int i = table_index(b, va, level);
			uint64_t e;
			vmmu_gpa_t child;
			int ret;

			if (!t) {
				log_err("ptbuild: level-%d table at 0x%llx is not in writable guest memory", level,
					(unsigned long long)table);
				return -EFAULT;
			}
			if (r->op == OP_MAP && level == r->map_level) {
				map_leaves(b, r, t, i, level, &va, &left);
				break;
			}
			if (r->op != OP_MAP && sweep_leaves(b, r, t, i, level, &va, &left))
				break;
			/* map: a missing table or a huge leaf on the way; unmap/protect: a table or a partly covered leaf */
			e = entry_get(b, t, i);
			if (!entry_is_present(b, e)) {
				ret = table_alloc(b, false, &child);
			} else if (entry_is_leaf(b, e, level)) {
				ret = split(b, e, level, &child);
			} else {
				table = entry_table(b, e);
				level--;
				continue;
			}
			if (ret)
				return ret;
			entry_set(b, t, i, make_table(b, level, child));
			table = child;
			level--;
		}
	}
	return 0;
}

/* ---- argument checks ---- */

static bool is_null(const void *b, const char *what)
{
	if (b)
		return false;
	log_err("ptbuild: %s with a NULL argument", what);
	return true;
}

static int check_gva_range(const struct vmmu_ptbuild *b, vmmu_gva_t gva, uint64_t size, uint64_t align)
{
	uint64_t last = gva + size - 1;

	if (!size || ((gva | size) & (align - 1))) {
		log_err("ptbuild: range 0x%llx + 0x%llx is empty or not aligned to 0x%llx",
			(unsigned long long)gva, (unsigned long long)size, (unsigned long long)align);
		return -EINVAL;
	}
	if (size - 1 > ~gva)
		goto out_of_range;
	if (b->canonical) {
		unsigned int s = 64 - b->va_bits;

		if ((uint64_t)((int64_t)(gva << s) >> s) != gva || (uint64_t)((int64_t)(last << s) >> s) != last ||
		    ((gva ^ last) >> 63))
			goto out_of_range;
	} else if (last >> b->va_bits) {
		goto out_of_range;
	}
	return 0;
out_of_range:
	log_err("ptbuild: range 0x%llx + 0x%llx is not %s %u-bit addresses", (unsigned long long)gva,
		(unsigned long long)size, b->canonical ? "canonical" : "within", b->va_bits);
	return -EINVAL;
}

static int check_prot(const struct vmmu_ptbuild *b, uint32_t prot, uint64_t extra)
{
	uint32_t allowed;

	if (b->ept)
		allowed = VMMU_PT_READ | VMMU_PT_WRITE | VMMU_PT_EXEC | VMMU_PT_IPAT | VMMU_PT_MT_MASK;
	else
		allowed = VMMU_PT_WRITE | VMMU_PT_USER | VMMU_PT_GLOBAL | VMMU_PT_PWT | VMMU_PT_PCD | VMMU_PT_PAT |
			  (b->esize == 8 ? VMMU_PT_NX : 0) | (b->levels >= 4 ? VMMU_PT_PKEY_MASK : 0);
	if (prot & ~allowed) {
		log_err("ptbuild: protection flags 0x%x are not in this format (allowed 0x%x)", prot & ~allowed,
			allowed);
		return -EINVAL;
	}
	if (b->esize == 4 && (extra >> 32)) {
		log_err("ptbuild: extra bits 0x%llx do not fit a 32-bit entry", (unsigned long long)extra);
		return -EINVAL;
	}
	if (b->ept && !((extra & EPT_RWX) || (prot & (VMMU_PT_READ | VMMU_PT_WRITE | VMMU_PT_EXEC)))) {
		log_err("ptbuild: an EPT leaf without R, W or X is not present (use unmap)");
		return -EINVAL;
	}
	return 0;
}

int vmmu_ptbuild_map_raw(struct vmmu_ptbuild *b, vmmu_gva_t gva, vmmu_gpa_t gpa, uint64_t size,
			 uint64_t page_size, uint32_t prot, uint64_t extra)
{
	struct request r = { .op = OP_MAP, .gpa = gpa, .prot = prot, .extra = extra };
	uint64_t limit;
	int ret;

	if (is_null(b, "map"))
		return -EINVAL;
	r.map_level = page_size_level(b, page_size);
	if (r.map_level < 0) {
		log_err("ptbuild: page size 0x%llx does not exist in this paging mode",
			(unsigned long long)page_size);
		return -EINVAL;
	}
	ret = check_gva_range(b, gva, size, page_size);
	if (!ret)
		ret = check_prot(b, prot, extra);
	if (ret)
		return ret;
	limit = 1ULL << b->maxphyaddr;
	if (b->esize == 4)
		limit = r.map_level == 1 ? FOUR_GIB : 1ULL << (b->maxphyaddr < 40 ? b->maxphyaddr : 40);
	if ((gpa & (page_size - 1)) || gpa >= limit || size > limit - gpa) {
		log_err("ptbuild: gpa range 0x%llx + 0x%llx is unaligned or passes 0x%llx",
			(unsigned long long)gpa, (unsigned long long)size, (unsigned long long)limit);
		return -EINVAL;
	}
	return apply(b, &r, gva, size);
}

int vmmu_ptbuild_map(struct vmmu_ptbuild *b, vmmu_gva_t gva, vmmu_gpa_t gpa, uint64_t size, uint64_t page_size,
		     uint32_t prot)
{
	return vmmu_ptbuild_map_raw(b, gva, gpa, size, page_size, prot, 0);
}

int vmmu_ptbuild_unmap(struct vmmu_ptbuild *b, vmmu_gva_t gva, uint64_t size)
{
	struct request r = { .op = OP_UNMAP };
	int ret;

	if (is_null(b, "unmap"))
		return -EINVAL;
	ret = check_gva_range(b, gva, size, VMMU_PAGE_SIZE);
	return ret ? ret : apply(b, &r, gva, size);
}

int vmmu_ptbuild_protect(struct vmmu_ptbuild *b, vmmu_gva_t gva, uint64_t size, uint32_t prot)
{
	struct request r = { .op = OP_PROTECT, .prot = prot };
	int ret;

	if (is_null(b, "protect"))
		return -EINVAL;
	ret = check_gva_range(b, gva, size, VMMU_PAGE_SIZE);
	if (!ret)
		ret = check_prot(b, prot, 0);
	return ret ? ret : apply(b, &r, gva, size);
}

int vmmu_ptbuild_lookup(const struct vmmu_ptbuild *b, vmmu_gva_t gva, struct vmmu_ptbuild_entry *out)
{
	vmmu_gpa_t table;
	int level;

	if (is_null(b, "lookup") || is_null(out, "lookup"))
		return -EINVAL;
	if (check_gva_range(b, gva & VMMU_PAGE_MASK, VMMU_PAGE_SIZE, VMMU_PAGE_SIZE))
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	out->levels = b->levels;
	for (table = b->root, level = b->levels;; level--) {
		const void *t = table_hva(b, table, level, false);
		unsigned int i = table_index(b, gva, level);
		uint64_t e;

		if (!t) {
			log_err("ptbuild: lookup: level-%d table at 0x%llx is not in guest memory", level,
				(unsigned long long)table);
			return -EFAULT;
		}
		e = entry_get(b, t, i);
		out->level = (uint8_t)level;
		out->entries[level - 1] = e;
		out->entry_gpa[level - 1] = table + (uint64_t)i * b->esize;
		if (!entry_is_present(b, e))
			return -ENOENT;
		if (entry_is_leaf(b, e, level)) {
			out->page_size = level_size(b, level);
			out->gpa = leaf_frame(b, e, level) + (gva & (out->page_size - 1));
			out->prot = leaf_prot(b, e, level);
			return 0;
		}
		table = entry_table(b, e);
	}
}

/* ---- life cycle ---- */

static int set_format(struct vmmu_ptbuild *b, enum vmmu_paging_mode mode)
{
	static const struct {
		uint8_t levels, bits, esize, va_bits;
		bool ept, canonical;
	} fmt[] = {
		[VMMU_PAGING_32BIT] = { 2, 10, 4, 32, false, false },
		[VMMU_PAGING_PAE] = { 3, 9, 8, 32, false, false },
		[VMMU_PAGING_4LEVEL] = { 4, 9, 8, 48, false, true },
		[VMMU_PAGING_5LEVEL] = { 5, 9, 8, 57, false, true },
		[VMMU_PAGING_EPT4] = { 4, 9, 8, 48, true, false },
		[VMMU_PAGING_EPT5] = { 5, 9, 8, 57, true, false },
	};

	if ((unsigned int)mode >= ARRAY_SIZE(fmt) || !fmt[mode].levels)
		return -EINVAL;
	b->mode = mode;
	b->levels = fmt[mode].levels;
	b->bits = fmt[mode].bits;
	b->esize = fmt[mode].esize;
	b->va_bits = fmt[mode].va_bits;
	b->ept = fmt[mode].ept;
	b->canonical = fmt[mode].canonical;
	return 0;
}

static int check_config(const struct vmmu_ptbuild_config *cfg)
{
	for (size_t i = 0; i < ARRAY_SIZE(cfg->reserved); i++) {
		if (cfg->reserved[i]) {
			log_err("ptbuild: config reserved[%zu] is not zero", i);
			return -EINVAL;
		}
	}
	if (!cfg->alloc) {
		log_err("ptbuild: no table allocator given");
		return -EINVAL;
	}
	if (cfg->maxphyaddr < 32 || cfg->maxphyaddr > VMMU_MAX_PHYS_BITS) {
		log_err("ptbuild: MAXPHYADDR %u is outside 32..52", cfg->maxphyaddr);
		return -EINVAL;
	}
	if (cfg->flags & ~(VMMU_PTBUILD_F_ROOT | VMMU_PTBUILD_F_EPT_AD | VMMU_PTBUILD_F_NPT)) {
		log_err("ptbuild: unknown flags 0x%x", cfg->flags);
		return -EINVAL;
	}
	if ((cfg->flags & VMMU_PTBUILD_F_EPT_AD) && cfg->mode != VMMU_PAGING_EPT4 && cfg->mode != VMMU_PAGING_EPT5) {
		log_err("ptbuild: the EPT A/D flag needs an EPT mode");
		return -EINVAL;
	}
	if ((cfg->flags & VMMU_PTBUILD_F_NPT) && cfg->mode != VMMU_PAGING_4LEVEL && cfg->mode != VMMU_PAGING_5LEVEL) {
		log_err("ptbuild: NPT tables are 4- or 5-level");
		return -EINVAL;
	}
	return 0;
}

static int set_given_root(struct vmmu_ptbuild *b, vmmu_gpa_t root)
{
	uint64_t align = b->mode == VMMU_PAGING_PAE ? PAE_PDPT_BYTES : VMMU_PAGE_SIZE;

	if ((root & (align - 1)) || root >= table_limit(b, true)) {
		log_err("ptbuild: root 0x%llx is not %llu-byte aligned or passes 0x%llx", (unsigned long long)root,
			(unsigned long long)align, (unsigned long long)table_limit(b, true));
		return -EINVAL;
	}
	if (!table_hva(b, root, b->levels, true)) {
		log_err("ptbuild: root 0x%llx is not in writable guest memory", (unsigned long long)root);
		return -EFAULT;
	}
	b->root = root;
	return 0;
}

int vmmu_ptbuild_create(struct vmmu_ptbuild **out, const struct vmmu_memslots *mem,
			const struct vmmu_ptbuild_config *cfg)
{
	struct vmmu_ptbuild *b;
	int ret;

	if (!out || !mem || !cfg) {
		log_err("ptbuild: create: NULL argument");
		return -EINVAL;
	}
	ret = check_config(cfg);
	if (ret)
		return ret;
	b = calloc(1, sizeof(*b));
	if (!b) {
		log_err("ptbuild: no memory for a builder");
		return -ENOMEM;
	}
	ret = set_format(b, cfg->mode);
	if (ret) {
		log_err("ptbuild: mode %d has no page tables to build", (int)cfg->mode);
		goto fail;
	}
	if (cfg->flags & VMMU_PTBUILD_F_NPT)
		b->canonical = false; /* the input is a GPA: [0, 2^48) or [0, 2^57) */
	b->mem = mem;
	b->maxphyaddr = cfg->maxphyaddr;
	b->flags = cfg->flags;
	b->alloc = cfg->alloc;
	b->free = cfg->free;
	b->opaque = cfg->opaque;
	if (cfg->flags & VMMU_PTBUILD_F_ROOT) {
		ret = set_given_root(b, cfg->root);
	} else {
		ret = table_alloc(b, true, &b->root);
		b->root_owned = true;
	}
	if (ret)
		goto fail;
	*out = b;
	return 0;
fail:
	free(b);
	return ret;
}

void vmmu_ptbuild_destroy(struct vmmu_ptbuild *b, bool free_tables)
{
	if (!b)
		return;
	if (free_tables && b->free)
		free_tree(b, b->root, b->levels, !b->root_owned);
	free(b);
}

uint64_t vmmu_ptbuild_root(const struct vmmu_ptbuild *b)
{
	if (!b)
		return 0;
	if (!b->ept)
		return b->root;
	return b->root | (uint64_t)(b->levels - 1) << EPTP_LEVELS_SHIFT | EPTP_MT_WB |
	       (b->flags & VMMU_PTBUILD_F_EPT_AD ? EPTP_AD : 0);
}

int vmmu_ptbuild_pdptes(const struct vmmu_ptbuild *b, uint64_t pdptes[4])
{
	const void *t;

	if (!b || !pdptes || b->mode != VMMU_PAGING_PAE) {
		log_err("ptbuild: PDPTEs exist only for a PAE builder");
		return -EINVAL;
	}
	t = table_hva(b, b->root, b->levels, false);
	if (!t) {
		log_err("ptbuild: PDPT 0x%llx is not in guest memory", (unsigned long long)b->root);
		return -EFAULT;
	}
	for (unsigned int i = 0; i < 4; i++)
		pdptes[i] = entry_get(b, t, i);
	return 0;
}
