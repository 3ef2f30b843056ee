/* SPDX-License-Identifier: MIT */
/*
 * Page-table builder: write guest page tables (or EPT/NPT second-stage tables)
 * into guest memory.
 *
 * A builder owns one tree of tables rooted at one page. It maps, unmaps and
 * re-protects GVA ranges with 4 KiB, 2 MiB, 1 GiB (4-/5-level, EPT) or 4 MiB
 * (32-bit paging) pages. Table pages come from a caller-supplied allocator
 * that hands out 4 KiB pages of guest memory; the builder zeroes each page it
 * gets. Every write goes through the memslot set and is bounds-checked.
 *
 * Formats (enum vmmu_paging_mode): VMMU_PAGING_32BIT, _PAE, _4LEVEL, _5LEVEL,
 * _EPT4, _EPT5. AMD NPT tables are the 4-/5-level format: build them with
 * _4LEVEL/_5LEVEL and VMMU_PTBUILD_F_NPT, map with VMMU_PT_USER (every NPT
 * access is a user access) and load vmmu_ptbuild_root() into nCR3.
 *
 * Entries the builder writes:
 *  - non-leaf entries grant everything (first stage: P|W|U, no XD; PAE
 *    PDPTEs: P only, as the PDPTE format has no W/U/XD; EPT: R|W|X), so the
 *    leaf alone decides the access;
 *  - leaves carry the protection given (VMMU_PT_*) plus optional raw extra
 *    bits ORed in verbatim (for tests that need exact entries: preset A/D,
 *    reserved bits, ignored bits);
 *  - nothing sets A or D unless the extra bits say so.
 *
 * Overlaps: mapping over an existing mapping replaces it page by page. A page
 * smaller than an existing huge leaf splits that leaf first (the new table
 * maps the rest of the huge page exactly as before, same attributes), then
 * writes the small page. A huge page over an existing table replaces the table
 * entry; the tables below it become unreachable and are given back through
 * the free callback if there is one (else they are simply abandoned). Unmap
 * and protect of a part of a huge page split it in the same way. Tables that
 * unmap empties stay in place (a later map reuses them) until destroy.
 *
 * Progress on error: map, unmap and protect work in ascending address order,
 * one page (or one huge leaf) at a time, and every single entry write leaves
 * the tree consistent (a split fills the new table completely before linking
 * it). When a step fails with -ENOMEM (the allocator had no page) or -EFAULT
 * (a table is not in writable guest memory), every page of the range below the
 * failing page has been processed, the failing page and every page after it
 * translate exactly as before the call (same GPA, same protection; a huge
 * page on the failing page's path may already be split into smaller pages
 * that map the same), and the call returns the error. Tables linked before
 * the failure stay linked (possibly empty); they are valid. After -ENOMEM,
 * calling again with the same arguments (and pages to give) completes the
 * operation.
 * -EFAULT also covers an allocator that returns an unusable page (unaligned,
 * past MAXPHYADDR or 4 GiB, not in writable guest memory); that page is given
 * back through the free callback. Argument errors (-EINVAL) are found before
 * anything is written, with one exception: in 32-bit paging a 4 MiB page
 * above 4 GiB (PSE-36) cannot be split into 4 KiB pages, which a PTE cannot
 * address; that step fails with -EINVAL and the same partial progress.
 *
 * Threading: a builder is not thread-safe; serialize calls on one builder.
 * Each entry is written with one aligned store, so a concurrent walker sees
 * either the old or the new entry, never a torn one; but a range operation is
 * not atomic as a whole and the builder flushes no TLB.
 */
#ifndef LIBVMMU_PTBUILD_H
#define LIBVMMU_PTBUILD_H

#include <libvmmu/types.h>
#include <libvmmu/memslot.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Page sizes accepted by vmmu_ptbuild_map(). */
#define VMMU_PT_SIZE_4K (1ULL << 12)
#define VMMU_PT_SIZE_2M (1ULL << 21) /**< PAE, 4-/5-level, EPT */
#define VMMU_PT_SIZE_4M (1ULL << 22) /**< 32-bit paging (the walker needs CR4.PSE to see it as a page) */
#define VMMU_PT_SIZE_1G (1ULL << 30) /**< 4-/5-level, EPT */

/*
 * Protection of a leaf (the prot argument). First-stage formats (32-bit, PAE,
 * 4-/5-level, NPT) take WRITE, USER, NX (not in 32-bit paging), GLOBAL, PWT,
 * PCD, PAT and, 4-/5-level only, PKEY(k). EPT takes READ, WRITE, EXEC, IPAT
 * and MT(type). A flag the format does not have is -EINVAL. A first-stage leaf
 * is always present (P=1) and readable.
 */
#define VMMU_PT_WRITE  (1u << 0)  /**< writable (first stage W, EPT W) */
#define VMMU_PT_USER   (1u << 1)  /**< user-accessible (U/S) */
#define VMMU_PT_NX     (1u << 2)  /**< execute-disable (XD, bit 63; needs EFER.NXE at walk time) */
#define VMMU_PT_GLOBAL (1u << 3)  /**< global (G) */
#define VMMU_PT_PWT    (1u << 4)  /**< page write-through */
#define VMMU_PT_PCD    (1u << 5)  /**< page cache disable */
#define VMMU_PT_PAT    (1u << 6)  /**< PAT bit (bit 7 of a PTE, bit 12 of a huge leaf) */
#define VMMU_PT_READ   (1u << 8)  /**< EPT: readable */
#define VMMU_PT_EXEC   (1u << 9)  /**< EPT: executable */
#define VMMU_PT_IPAT   (1u << 10) /**< EPT: ignore guest PAT */
#define VMMU_PT_MT_SHIFT 12
#define VMMU_PT_MT_MASK  (7u << VMMU_PT_MT_SHIFT)
/** EPT memory type of the leaf: 0 UC, 1 WC, 4 WT, 5 WP, 6 WB (2, 3, 7 are written as asked: misconfigurations). */
#define VMMU_PT_MT(t)    (((uint32_t)(t) & 7u) << VMMU_PT_MT_SHIFT)
#define VMMU_PT_MT_WB    VMMU_PT_MT(6)
#define VMMU_PT_PKEY_SHIFT 16
#define VMMU_PT_PKEY_MASK  (15u << VMMU_PT_PKEY_SHIFT)
/** Protection key 0-15 (bits 62:59 of a 4-/5-level leaf). */
#define VMMU_PT_PKEY(k)    (((uint32_t)(k) & 15u) << VMMU_PT_PKEY_SHIFT)
/** EPT read + write + execute, write-back: the usual RAM mapping. */
#define VMMU_PT_EPT_RWX  (VMMU_PT_READ | VMMU_PT_WRITE | VMMU_PT_EXEC | VMMU_PT_MT_WB)

/**
 * typedef vmmu_ptbuild_alloc_fn - hand out one 4 KiB page of guest memory for a table.
 * @opaque: vmmu_ptbuild_config.opaque.
 * @gpa: receives the page's guest physical address (4 KiB aligned, in a
 *       writable memslot, below MAXPHYADDR; below 4 GiB for 32-bit paging
 *       tables and for a PAE root).
 *
 * The builder zeroes the page. Return: 0, or any non-zero value when no page
 * is left (the builder call then fails with -ENOMEM).
 */
typedef int (*vmmu_ptbuild_alloc_fn)(void *opaque, vmmu_gpa_t *gpa);

/** typedef vmmu_ptbuild_free_fn - take back a table page the builder no longer uses. */
typedef void (*vmmu_ptbuild_free_fn)(void *opaque, vmmu_gpa_t gpa);

/* vmmu_ptbuild_config.flags */
#define VMMU_PTBUILD_F_ROOT   (1u << 0) /**< use config.root as the root table instead of allocating one */
#define VMMU_PTBUILD_F_EPT_AD (1u << 1) /**< EPT: set the A/D enable bit (6) in the EPTP */
/**
 * 4-/5-level tables used as an AMD NPT: input addresses are GPAs in
 * [0, 2^48) or [0, 2^57), not canonical linear addresses.
 */
#define VMMU_PTBUILD_F_NPT    (1u << 2)

/** How to create a builder. Zero-initialise, then fill in. */
struct vmmu_ptbuild_config {
	enum vmmu_paging_mode mode; /**< any mode but VMMU_PAGING_OFF */
	uint8_t maxphyaddr;         /**< 32..52: bounds leaf GPAs and table GPAs */
	uint8_t pad[3];
	uint32_t flags;             /**< VMMU_PTBUILD_F_* */
	uint32_t pad2;
	/**
	 * With VMMU_PTBUILD_F_ROOT: the root table (4 KiB aligned; PAE: a 32-byte
	 * aligned PDPT below 4 GiB), used as it is (zero it for an empty address
	 * space); the caller keeps ownership of that page.
	 */
	vmmu_gpa_t root;
	vmmu_ptbuild_alloc_fn alloc; /**< required */
	vmmu_ptbuild_free_fn free;   /**< optional: pages of replaced tables and, on request, of destroy */
	void *opaque;                /**< passed to alloc and free */
	uint64_t reserved[4];        /**< must be zero */
};

struct vmmu_ptbuild;

/**
 * vmmu_ptbuild_create() - create a builder and its root table.
 * @out: receives the builder; the caller owns it (vmmu_ptbuild_destroy()).
 * @mem: guest memory the tables live in; borrowed, must outlive the builder.
 * @cfg: copied.
 *
 * Without VMMU_PTBUILD_F_ROOT the root page comes from @cfg->alloc and is
 * zeroed (for PAE the PDPT is the first 32 bytes of that page).
 *
 * Return: 0; -EINVAL (NULL argument, no allocator, paging off or unknown mode,
 * MAXPHYADDR outside 32..52, unknown flags, EPT_AD for a non-EPT mode, NPT
 * for a mode other than 4-/5-level,
 * non-zero reserved fields, a given root that is unaligned or out of range);
 * -EFAULT (the root is not in writable guest memory, or the allocator returned
 * a page that is unaligned, out of range or not in writable guest memory);
 * -ENOMEM (no memory for the builder, or the allocator had no page).
 */
VMMU_API int vmmu_ptbuild_create(struct vmmu_ptbuild **out, const struct vmmu_memslots *mem,
				 const struct vmmu_ptbuild_config *cfg);

/**
 * vmmu_ptbuild_destroy() - free a builder. NULL is a no-op.
 * @free_tables: give every table page reachable from the root back through
 * the free callback (if there is one), the root included unless the caller
 * supplied it; otherwise the tables stay in guest memory, valid, for the
 * guest to keep using. Tables the caller linked in by hand are freed too if
 * reachable; a table reachable through two entries would be freed twice, so
 * free only trees the builder built.
 */
VMMU_API void vmmu_ptbuild_destroy(struct vmmu_ptbuild *b, bool free_tables);

/**
 * vmmu_ptbuild_root() - the value to load: CR3 (first stage), nCR3 (NPT) or
 * the EPTP (EPT: root | (levels - 1) << 3 | WB (6) | A/D bit 6 if asked).
 * For PAE it is the PDPT address (load the PDPTE registers too). 0 for NULL.
 */
VMMU_API uint64_t vmmu_ptbuild_root(const struct vmmu_ptbuild *b);

/**
 * vmmu_ptbuild_pdptes() - PAE: the four PDPTEs as the PDPTE registers must
 * hold them (what MOV CR3 would load).
 *
 * Return: 0; -EINVAL (NULL argument, not PAE); -EFAULT (PDPT not in memory).
 */
VMMU_API int vmmu_ptbuild_pdptes(const struct vmmu_ptbuild *b, uint64_t pdptes[4]);

/**
 * vmmu_ptbuild_map() - map [@gva, @gva + @size) to [@gpa, @gpa + @size) with
 * pages of @page_size and protection @prot (VMMU_PT_*).
 * @gva: the linear address (for EPT/NPT: the guest-physical input address).
 *
 * Replaces what was mapped there (see the top of this header for splits and
 * replaced tables).
 *
 * Return: 0; -EINVAL (NULL builder, @page_size not a page size of the mode,
 * @gva/@gpa/@size not aligned to it, @size zero, the GVA range not canonical
 * or past the mode's range, the GPA range past MAXPHYADDR (32-bit paging:
 * 4 GiB for 4 KiB pages), a @prot flag the mode lacks); -ENOMEM; -EFAULT
 * (both with partial progress, as the top of this header says).
 */
VMMU_API int vmmu_ptbuild_map(struct vmmu_ptbuild *b, vmmu_gva_t gva, vmmu_gpa_t gpa, uint64_t size,
			      uint64_t page_size, uint32_t prot);

/**
 * vmmu_ptbuild_map_raw() - vmmu_ptbuild_map() with @extra ORed verbatim into
 * every leaf written, last (32-bit paging: @extra must fit in 32 bits). It may
 * set any bit: A/D, ignored bits, reserved bits, an address bit past
 * MAXPHYADDR; it cannot clear one.
 *
 * Return: as vmmu_ptbuild_map(); -EINVAL if the leaf would not be present
 * (EPT: no R, W or X in @prot | @extra).
 */
VMMU_API int vmmu_ptbuild_map_raw(struct vmmu_ptbuild *b, vmmu_gva_t gva, vmmu_gpa_t gpa, uint64_t size,
				  uint64_t page_size, uint32_t prot, uint64_t extra);

/**
 * vmmu_ptbuild_unmap() - make [@gva, @gva + @size) not present. Holes are
 * skipped; a huge page only partly inside the range is split first (so the
 * rest stays mapped), which needs the allocator.
 *
 * Return: 0; -EINVAL (NULL, @gva/@size not 4 KiB aligned, zero or out of
 * range); -ENOMEM; -EFAULT (both with partial progress).
 */
VMMU_API int vmmu_ptbuild_unmap(struct vmmu_ptbuild *b, vmmu_gva_t gva, uint64_t size);

/**
 * vmmu_ptbuild_protect() - set the protection of every page mapped in
 * [@gva, @gva + @size) to @prot. Frames, page sizes and the A/D bits stay;
 * other bits (extra bits of map_raw included) are rewritten from @prot.
 * Holes are skipped; a huge page only partly inside is split first.
 *
 * Return: as vmmu_ptbuild_unmap(), and -EINVAL for a @prot flag the mode
 * lacks or (EPT) a @prot without R, W and X (use unmap).
 */
VMMU_API int vmmu_ptbuild_protect(struct vmmu_ptbuild *b, vmmu_gva_t gva, uint64_t size, uint32_t prot);

#define VMMU_PTBUILD_MAX_LEVELS 5

/** What vmmu_ptbuild_lookup() found. */
struct vmmu_ptbuild_entry {
	vmmu_gpa_t gpa;      /**< mapped: the translation of the GVA (offset included) */
	uint64_t page_size;  /**< mapped: 4 KiB, 2 MiB, 4 MiB or 1 GiB */
	uint32_t prot;       /**< mapped: the leaf's VMMU_PT_* bits */
	uint8_t level;       /**< level of the leaf, or of the non-present entry (1 = 4 KiB table) */
	uint8_t levels;      /**< number of levels of the format */
	uint16_t pad;
	uint64_t entries[VMMU_PTBUILD_MAX_LEVELS];    /**< entry read at level L in [L - 1], from the top down to level */
	vmmu_gpa_t entry_gpa[VMMU_PTBUILD_MAX_LEVELS]; /**< guest physical address of that entry */
	uint64_t reserved[2];
};

/**
 * vmmu_ptbuild_lookup() - read back the entry that maps @gva, with its level,
 * as the builder sees the tables (no permission checks, no A/D updates).
 * @out: fully written on 0 and on -ENOENT.
 *
 * Return: 0 (mapped); -ENOENT (not mapped: @out->level is the level of the
 * non-present entry); -EINVAL (NULL argument, @gva out of the mode's range);
 * -EFAULT (a table on the path is not in guest memory).
 */
VMMU_API int vmmu_ptbuild_lookup(const struct vmmu_ptbuild *b, vmmu_gva_t gva, struct vmmu_ptbuild_entry *out);

#ifdef __cplusplus
}
#endif

#endif
