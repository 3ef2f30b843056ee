/* SPDX-License-Identifier: MIT */
/*
 * SPTE formats: descriptor setup, builders (leaf, non-leaf, MMIO), huge-page
 * split and collapse. Decoding, predicates and the single-SPTE transitions are
 * inline in include/libvmmu/spte.h.
 */
#include <assert.h>
#include <errno.h>
#include <string.h>

#include <libvmmu/spte.h>

#include "internal.h"

#define POPC(x) __builtin_popcountll(x)

/* The fields of each layout are pairwise disjoint: the OR has as many bits as the fields together. */
static_assert(POPC(VMMU_SPTE_EPT_R | VMMU_SPTE_EPT_W | VMMU_SPTE_EPT_X | VMMU_SPTE_EPT_MT_MASK | VMMU_SPTE_EPT_IPAT |
		   VMMU_SPTE_PS | VMMU_SPTE_EPT_A | VMMU_SPTE_EPT_D | VMMU_SPTE_MMU_PRESENT | VMMU_SPTE_PFN_MASK |
		   VMMU_SPTE_AD_MASK | VMMU_SPTE_EPT_SAVED_MASK | VMMU_SPTE_EPT_HOST_WRITABLE |
		   VMMU_SPTE_EPT_MMU_WRITABLE | VMMU_SPTE_EPT_SUPPRESS_VE) ==
		      POPC(VMMU_SPTE_EPT_R) + POPC(VMMU_SPTE_EPT_W) + POPC(VMMU_SPTE_EPT_X) +
			      POPC(VMMU_SPTE_EPT_MT_MASK) + POPC(VMMU_SPTE_EPT_IPAT) + POPC(VMMU_SPTE_PS) +
			      POPC(VMMU_SPTE_EPT_A) + POPC(VMMU_SPTE_EPT_D) + POPC(VMMU_SPTE_MMU_PRESENT) +
			      POPC(VMMU_SPTE_PFN_MASK) + POPC(VMMU_SPTE_AD_MASK) + POPC(VMMU_SPTE_EPT_SAVED_MASK) +
			      POPC(VMMU_SPTE_EPT_HOST_WRITABLE) + POPC(VMMU_SPTE_EPT_MMU_WRITABLE) +
			      POPC(VMMU_SPTE_EPT_SUPPRESS_VE),
	      "EPT SPTE fields overlap");
static_assert(POPC(VMMU_SPTE_LEGACY_P | VMMU_SPTE_LEGACY_W | VMMU_SPTE_LEGACY_U | VMMU_SPTE_LEGACY_A |
		   VMMU_SPTE_LEGACY_D | VMMU_SPTE_PS | VMMU_SPTE_LEGACY_HOST_WRITABLE |
		   VMMU_SPTE_LEGACY_MMU_WRITABLE | VMMU_SPTE_MMU_PRESENT | VMMU_SPTE_PFN_MASK | VMMU_SPTE_AD_MASK |
		   VMMU_SPTE_LEGACY_NX) ==
		      POPC(VMMU_SPTE_LEGACY_P) + POPC(VMMU_SPTE_LEGACY_W) + POPC(VMMU_SPTE_LEGACY_U) +
			      POPC(VMMU_SPTE_LEGACY_A) + POPC(VMMU_SPTE_LEGACY_D) + POPC(VMMU_SPTE_PS) +
			      POPC(VMMU_SPTE_LEGACY_HOST_WRITABLE) + POPC(VMMU_SPTE_LEGACY_MMU_WRITABLE) +
			      POPC(VMMU_SPTE_MMU_PRESENT) + POPC(VMMU_SPTE_PFN_MASK) + POPC(VMMU_SPTE_AD_MASK) +
			      POPC(VMMU_SPTE_LEGACY_NX),
	      "legacy SPTE fields overlap");
/* MMIO: generation, marker and frame bits are disjoint, and never MMU-present. */
static_assert(POPC(VMMU_SPTE_MMIO_GEN_LOW_MASK | VMMU_SPTE_MMIO_GEN_HIGH_MASK | VMMU_SPTE_EPT_MMIO_MASK |
		   VMMU_SPTE_PFN_MASK | VMMU_SPTE_MMU_PRESENT) ==
		      POPC(VMMU_SPTE_MMIO_GEN_LOW_MASK) + POPC(VMMU_SPTE_MMIO_GEN_HIGH_MASK) +
			      POPC(VMMU_SPTE_EPT_MMIO_MASK) + POPC(VMMU_SPTE_PFN_MASK) + POPC(VMMU_SPTE_MMU_PRESENT),
	      "EPT MMIO SPTE fields overlap");
static_assert(POPC(VMMU_SPTE_MMIO_GEN_LOW_MASK | VMMU_SPTE_MMIO_GEN_HIGH_MASK | VMMU_SPTE_LEGACY_P |
		   VMMU_SPTE_LEGACY_MMIO_ACCESS | VMMU_SPTE_PFN_MASK | VMMU_SPTE_MMU_PRESENT) ==
		      POPC(VMMU_SPTE_MMIO_GEN_LOW_MASK) + POPC(VMMU_SPTE_MMIO_GEN_HIGH_MASK) +
			      POPC(VMMU_SPTE_LEGACY_P) + POPC(VMMU_SPTE_LEGACY_MMIO_ACCESS) +
			      POPC(VMMU_SPTE_PFN_MASK) + POPC(VMMU_SPTE_MMU_PRESENT),
	      "legacy MMIO SPTE fields overlap");
static_assert(POPC(VMMU_SPTE_MMIO_GEN_LOW_MASK) + POPC(VMMU_SPTE_MMIO_GEN_HIGH_MASK) == VMMU_SPTE_MMIO_GEN_BITS,
	      "MMIO generation width");
static_assert((VMMU_SPTE_LEGACY_MMIO_VALUE & VMMU_SPTE_LEGACY_MMIO_MASK) == VMMU_SPTE_LEGACY_MMIO_VALUE &&
		      (VMMU_SPTE_EPT_MMIO_VALUE & VMMU_SPTE_EPT_MMIO_MASK) == VMMU_SPTE_EPT_MMIO_VALUE,
	      "MMIO value outside its mask");
/* The non-present and frozen values are neither MMU-present nor MMIO in either format. */
static_assert(!(VMMU_SPTE_FROZEN & VMMU_SPTE_MMU_PRESENT) &&
		      (VMMU_SPTE_FROZEN & VMMU_SPTE_EPT_MMIO_MASK) != VMMU_SPTE_EPT_MMIO_VALUE &&
		      (VMMU_SPTE_FROZEN & VMMU_SPTE_LEGACY_MMIO_MASK) != VMMU_SPTE_LEGACY_MMIO_VALUE &&
		      (VMMU_SPTE_NONPRESENT & VMMU_SPTE_EPT_MMIO_MASK) != VMMU_SPTE_EPT_MMIO_VALUE &&
		      (VMMU_SPTE_NONPRESENT & VMMU_SPTE_LEGACY_MMIO_MASK) != VMMU_SPTE_LEGACY_MMIO_VALUE,
	      "non-present values look present or MMIO");
/* KVM relies on W being bit 1 in both formats, and on ACC_WRITE matching it. */
static_assert(VMMU_SPTE_EPT_W == VMMU_SPTE_WRITABLE && VMMU_SPTE_LEGACY_W == VMMU_SPTE_WRITABLE &&
		      VMMU_ACC_WRITE == VMMU_SPTE_WRITABLE && VMMU_ACC_USER == VMMU_SPTE_LEGACY_U,
	      "W/U positions");

/* vmmu_spte_make_leaf() shifts these flags straight into place. */
static_assert(((uint64_t)VMMU_SPTE_WRPROT_ONLY << (53 - 5)) == VMMU_SPTE_AD_WRPROT_ONLY &&
		      ((uint64_t)VMMU_SPTE_IPAT << (6 - 3)) == VMMU_SPTE_EPT_IPAT,
	      "flag positions");

/* Bits h..l, empty when h < l (so MAXPHYADDR 52 leaves no high reserved bits). */
static uint64_t bits(unsigned int h, unsigned int l)
{
	return h < l ? 0 : GENMASK_ULL(h, l);
}

/* Reserved bits of 64-bit paging as used for shadow/NPT tables: NX usable, AMD's bit 8 in PML4E/PML5E. */
static void legacy_rsvd(struct vmmu_spte_format *f)
{
	uint64_t high = bits(51, f->maxphyaddr);
	uint64_t no_1g = f->max_leaf_level < 3 ? VMMU_SPTE_PS : 0;

	f->rsvd[0][0] = high;
	f->rsvd[1][0] = high; /* bit 7 of a PTE is PAT */
	f->rsvd[0][1] = high;
	f->rsvd[1][1] = high | bits(20, 13);
	f->rsvd[0][2] = high;
	f->rsvd[1][2] = high | bits(29, 13) | no_1g;
	for (int b = 0; b < 2; b++) {
		f->rsvd[b][3] = high | BIT_ULL(7) | BIT_ULL(8);
		f->rsvd[b][4] = high | BIT_ULL(7) | BIT_ULL(8);
	}
	f->bad_mt_xwr = 0;
}

static void ept_rsvd(struct vmmu_spte_format *f)
{
	uint64_t high = bits(51, f->maxphyaddr);
	uint64_t no_2m = f->max_leaf_level < 2 ? VMMU_SPTE_PS : 0;
	uint64_t no_1g = f->max_leaf_level < 3 ? VMMU_SPTE_PS : 0;

	f->rsvd[0][0] = high;
	f->rsvd[1][0] = high; /* bit 7 of an EPT PTE is ignored */
	f->rsvd[0][1] = high | bits(6, 3) | no_2m;
	f->rsvd[1][1] = high | bits(20, 12) | no_2m;
	f->rsvd[0][2] = high | bits(6, 3) | no_1g;
	f->rsvd[1][2] = high | bits(29, 12) | no_1g;
	for (int b = 0; b < 2; b++) {
		f->rsvd[b][3] = high | bits(7, 3);
		f->rsvd[b][4] = high | bits(7, 3);
	}
	/* bit (mt << 3 | xwr): memory types 2, 3, 7; XWR 010 and 110; 100 unless execute-only */
	f->bad_mt_xwr = (0xffULL << (2 * 8)) | (0xffULL << (3 * 8)) | (0xffULL << (7 * 8));
	for (int mt = 0; mt < 8; mt++) {
		f->bad_mt_xwr |= BIT_ULL(mt * 8 + 2) | BIT_ULL(mt * 8 + 6);
		if (!f->exec_only)
			f->bad_mt_xwr |= BIT_ULL(mt * 8 + 4);
	}
}

static const struct vmmu_spte_format ept_template = {
	.kind = VMMU_SPTE_KIND_EPT,
	.present = VMMU_SPTE_EPT_SUPPRESS_VE, /* + R unless execute-only */
	.user = VMMU_SPTE_EPT_R,
	.x = VMMU_SPTE_EPT_X,
	.accessed = VMMU_SPTE_EPT_A,
	.dirty = VMMU_SPTE_EPT_D,
	.host_writable = VMMU_SPTE_EPT_HOST_WRITABLE,
	.mmu_writable = VMMU_SPTE_EPT_MMU_WRITABLE,
	.hw_present = VMMU_SPTE_EPT_RWX,
	.acc_track = VMMU_SPTE_EPT_RWX,
	.mmio_value = VMMU_SPTE_EPT_MMIO_VALUE,
	.mmio_mask = VMMU_SPTE_EPT_MMIO_MASK,
};

static const struct vmmu_spte_format legacy_template = {
	.kind = VMMU_SPTE_KIND_LEGACY,
	.present = VMMU_SPTE_LEGACY_P,
	.user = VMMU_SPTE_LEGACY_U,
	.nx = VMMU_SPTE_LEGACY_NX,
	.accessed = VMMU_SPTE_LEGACY_A,
	.dirty = VMMU_SPTE_LEGACY_D,
	.host_writable = VMMU_SPTE_LEGACY_HOST_WRITABLE,
	.mmu_writable = VMMU_SPTE_LEGACY_MMU_WRITABLE,
	.hw_present = VMMU_SPTE_LEGACY_P,
	.mmio_value = VMMU_SPTE_LEGACY_MMIO_VALUE,
	.mmio_mask = VMMU_SPTE_LEGACY_MMIO_MASK,
	.mmio_access = VMMU_SPTE_LEGACY_MMIO_ACCESS,
};

int vmmu_spte_format_init(struct vmmu_spte_format *fmt, const struct vmmu_spte_format_opts *opts)
{
	struct vmmu_spte_format f;
	bool ept;

	if (!fmt || !opts || opts->size != sizeof(*opts)) {
		log_err("spte: format_init needs a format and options of size %zu", sizeof(*opts));
		return -EINVAL;
	}
	switch (opts->mode) {
	case VMMU_PAGING_EPT4:
	case VMMU_PAGING_EPT5:
		ept = true;
		break;
	case VMMU_PAGING_4LEVEL:
	case VMMU_PAGING_5LEVEL:
		ept = false;
		break;
	default:
		log_err("spte: paging mode %d has no 64-bit SPTE format", (int)opts->mode);
		return -EINVAL;
	}
	if (opts->maxphyaddr < 32 || opts->maxphyaddr > VMMU_MAX_PHYS_BITS) {
		log_err("spte: MAXPHYADDR %u outside 32..52", opts->maxphyaddr);
		return -EINVAL;
	}
	if (opts->max_leaf_level > 3 || (!ept && opts->max_leaf_level == 1)) {
		log_err("spte: largest leaf level %u not possible for this format", opts->max_leaf_level);
		return -EINVAL;
	}
	if (!ept && (opts->ad_disabled || opts->exec_only)) {
		log_err("spte: legacy/NPT formats always have A/D bits and no execute-only entries");
		return -EINVAL;
	}

	f = ept ? ept_template : legacy_template;
	f.levels = (opts->mode == VMMU_PAGING_EPT5 || opts->mode == VMMU_PAGING_5LEVEL) ? 5 : 4;
	f.max_leaf_level = opts->max_leaf_level ? (uint8_t)opts->max_leaf_level : 3;
	f.maxphyaddr = (uint8_t)opts->maxphyaddr;
	f.max_pfn = (1ULL << (opts->maxphyaddr - VMMU_PAGE_SHIFT)) - 1;
	f.max_mmio_gfn = f.max_pfn;
	if (ept) {
		f.exec_only = opts->exec_only;
		if (!opts->exec_only)
			f.present |= VMMU_SPTE_EPT_R;
		if (opts->ad_disabled)
			f.ad_type = VMMU_SPTE_AD_DISABLED;
		ept_rsvd(&f);
	} else {
		if (opts->maxphyaddr == VMMU_MAX_PHYS_BITS) {
			/* no reserved PA bit to fault on: nothing is MMIO */
			f.mmio_value = ~0ULL;
			f.mmio_mask = 0;
			f.mmio_access = 0;
			f.max_mmio_gfn = 0;
		}
		legacy_rsvd(&f);
	}
	*fmt = f;
	return 0;
}

/* Memory types an EPT leaf may hold: UC, WC, WT, WP, WB. */
#define VALID_MT_SET (1u << VMMU_SPTE_MT_UC | 1u << VMMU_SPTE_MT_WC | 1u << VMMU_SPTE_MT_WT | \
		      1u << VMMU_SPTE_MT_WP | 1u << VMMU_SPTE_MT_WB)

/* Exec survives for the leaf: asked for, and not a huge leaf under the NX huge-page mitigation. */
static inline bool leaf_exec(int level, unsigned int access, unsigned int flags)
{
	return (access & VMMU_ACC_EXEC) && !(level > 1 && (flags & VMMU_SPTE_NX_HUGE));
}

/*
 * Why the leaf inputs are invalid (and *err the errno), or NULL. Called only
 * once the fast check in vmmu_spte_make_leaf() has failed, so it may be slow.
 */
static const char *leaf_inputs_bad(const struct vmmu_spte_format *fmt, uint64_t pfn, int level, unsigned int access,
				   unsigned int mt, unsigned int flags, int *err)
{
	*err = -EINVAL;
	if ((access & ~VMMU_ACC_ALL) || (flags & ~VMMU_SPTE_MAKE_FLAGS_ALL))
		return "unknown access or flag bits";
	if (level < 1 || level > fmt->max_leaf_level)
		return "leaf level not supported by the format";
	if (mt > 7 || !((VALID_MT_SET >> mt) & 1))
		return "invalid memory type";
	if ((flags & VMMU_SPTE_WRPROT_ONLY) && (fmt->kind != VMMU_SPTE_KIND_EPT || fmt->ad_type))
		return "write-protect-only A/D type needs an EPT format with A/D";
	if (pfn & ((1ULL << (9 * (level - 1))) - 1))
		return "pfn not aligned to the leaf size";
	if (fmt->exec_only && !(access & VMMU_ACC_USER) &&
	    ((access & VMMU_ACC_WRITE) || !leaf_exec(level, access, flags)))
		return "EPT access needs read for write, and read or exec";
	*err = -ERANGE;
	return pfn > fmt->max_pfn ? "pfn beyond MAXPHYADDR" : NULL;
}

static int __attribute__((noinline, cold)) leaf_refuse(const struct vmmu_spte_format *fmt, uint64_t pfn, int level,
							 unsigned int access, unsigned int mt, unsigned int flags)
{
	int err;
	const char *why = leaf_inputs_bad(fmt, pfn, level, access, mt, flags, &err);

	if (!why) /* the fast check and leaf_inputs_bad() disagree: a library bug */
		why = "internal error", err = -EINVAL;
	log_err("spte: make_leaf pfn 0x%llx level %d access %#x mt %u flags %#x: %s", (unsigned long long)pfn, level,
		access, mt, flags, why);
	return err;
}

int vmmu_spte_make_leaf(const struct vmmu_spte_format *fmt, uint64_t pfn, int level, unsigned int access,
			unsigned int mt, unsigned int flags, uint64_t *out)
{
	bool ept, x, want_w, w, bad;
	uint64_t spte;

	if (unlikely(!fmt || !out)) {
		log_err("spte: make_leaf needs a format and an output");
		return -EINVAL;
	}
	/* One pass over every input; the reason is worked out only on failure. */
	ept = fmt->kind == VMMU_SPTE_KIND_EPT;
	x = leaf_exec(level, access, flags);
	bad = flags > VMMU_SPTE_MAKE_FLAGS_ALL || access > VMMU_ACC_ALL ||
	      (unsigned int)(level - 1) >= fmt->max_leaf_level || mt > 7 || !((VALID_MT_SET >> mt) & 1) ||
	      pfn > fmt->max_pfn || ((flags & VMMU_SPTE_WRPROT_ONLY) && (!ept || fmt->ad_type));
	if (unlikely(bad || (pfn & ((1ULL << (9 * (level - 1))) - 1)) ||
		     (fmt->exec_only && !(access & VMMU_ACC_USER) && ((access & VMMU_ACC_WRITE) || !x))))
		return leaf_refuse(fmt, pfn, level, access, mt, flags);

	spte = VMMU_SPTE_MMU_PRESENT | fmt->present | fmt->ad_type | (pfn << VMMU_PAGE_SHIFT);
	spte |= (uint64_t)(flags & VMMU_SPTE_WRPROT_ONLY) << (53 - 5); /* A/D type 2 */
	spte |= x ? fmt->x : fmt->nx;
	spte |= (access & VMMU_ACC_USER) ? fmt->user : 0;
	spte |= (uint64_t)(level > 1) << 7;
	if (ept)
		spte |= ((uint64_t)mt << VMMU_SPTE_EPT_MT_SHIFT) | ((uint64_t)(flags & VMMU_SPTE_IPAT) << (6 - 3));
	spte |= (flags & VMMU_SPTE_HOST_WRITABLE) ? fmt->host_writable : 0;
	/* W needs the host's permission, then no shadowed guest table in the way; D is pre-set with W */
	want_w = (access & VMMU_ACC_WRITE) && (flags & VMMU_SPTE_HOST_WRITABLE);
	w = want_w && (flags & VMMU_SPTE_CAN_WRITE);
	if (w)
		spte |= VMMU_SPTE_WRITABLE | fmt->mmu_writable | (fmt->ad_type ? 0 : fmt->dirty);
	if (unlikely(flags & VMMU_SPTE_PREFETCH))
		spte = vmmu_spte_mark_access_track(fmt, spte);
	else if (!fmt->ad_type)
		spte |= fmt->accessed;
	*out = spte;
	return want_w && !w ? VMMU_SPTE_WRPROT : VMMU_SPTE_MADE;
}

int vmmu_spte_make_nonleaf(const struct vmmu_spte_format *fmt, uint64_t child_pfn, uint64_t *out)
{
	uint64_t spte;

	if (unlikely(!fmt || !out)) {
		log_err("spte: make_nonleaf needs a format and an output");
		return -EINVAL;
	}
	if (unlikely(child_pfn > fmt->max_pfn)) {
		log_err("spte: table pfn 0x%llx beyond MAXPHYADDR %u", (unsigned long long)child_pfn, fmt->maxphyaddr);
		return -ERANGE;
	}
	spte = VMMU_SPTE_MMU_PRESENT | fmt->present | VMMU_SPTE_WRITABLE | fmt->user | fmt->x |
	       (child_pfn << VMMU_PAGE_SHIFT);
	spte |= fmt->ad_type == VMMU_SPTE_AD_ENABLED ? fmt->accessed : fmt->ad_type;
	*out = spte;
	return 0;
}

int vmmu_spte_make_mmio(const struct vmmu_spte_format *fmt, vmmu_gfn_t gfn, unsigned int access, uint64_t gen,
			uint64_t *out)
{
	uint64_t spte;

	if (unlikely(!fmt || !out || (access & ~VMMU_ACC_ALL))) {
		log_err("spte: make_mmio needs a format, an output and VMMU_ACC_* access (got %#x)", access);
		return -EINVAL;
	}
	if (unlikely(!fmt->mmio_mask)) {
		log_err("spte: MAXPHYADDR %u leaves no reserved bit for MMIO SPTEs", fmt->maxphyaddr);
		return -EOPNOTSUPP;
	}
	if (unlikely(gfn > fmt->max_mmio_gfn)) {
		log_err("spte: MMIO gfn 0x%llx above the largest an MMIO SPTE holds (0x%llx)",
			(unsigned long long)gfn, (unsigned long long)fmt->max_mmio_gfn);
		return -ERANGE;
	}
	gen &= VMMU_SPTE_MMIO_GEN_MASK;
	spte = fmt->mmio_value | (access & fmt->mmio_access) | (gfn << VMMU_PAGE_SHIFT);
	spte |= ((gen << 3) & VMMU_SPTE_MMIO_GEN_LOW_MASK) | ((gen << (52 - 8)) & VMMU_SPTE_MMIO_GEN_HIGH_MASK);
	*out = spte;
	return 0;
}

/* Grant exec to an SPTE, through its parked bits if it is access-tracked. */
static uint64_t make_executable(const struct vmmu_spte_format *fmt, uint64_t spte)
{
	if (vmmu_spte_is_access_track(fmt, spte))
		return spte | (fmt->x << VMMU_SPTE_EPT_SAVED_SHIFT);
	return (spte & ~fmt->nx) | fmt->x;
}

static uint64_t make_nonexecutable(const struct vmmu_spte_format *fmt, uint64_t spte)
{
	if (vmmu_spte_is_access_track(fmt, spte))
		return spte & ~(fmt->x << VMMU_SPTE_EPT_SAVED_SHIFT);
	return (spte & ~fmt->x) | fmt->nx;
}

static bool huge_args_ok(const struct vmmu_spte_format *fmt, const void *p, const void *q, int level,
			 unsigned int flags, const char *what)
{
	if (fmt && p && q && level >= 2 && level <= fmt->max_leaf_level && !(flags & ~VMMU_SPTE_NX_HUGE))
		return true;
	log_err("spte: %s needs a format, buffers, a huge level (2..%d) and flags 0 or NX_HUGE (level %d flags %#x)",
		what, fmt ? fmt->max_leaf_level : 3, level, flags);
	return false;
}

int vmmu_spte_split(const struct vmmu_spte_format *fmt, uint64_t huge, int level, unsigned int flags,
		    uint64_t child[512])
{
	uint64_t step, first;

	if (!huge_args_ok(fmt, child, child, level, flags, "split"))
		return -EINVAL;
	if (!(huge & VMMU_SPTE_MMU_PRESENT) || !(huge & VMMU_SPTE_PS)) {
		log_err("spte: split of 0x%llx, not an MMU-present huge leaf", (unsigned long long)huge);
		return -EINVAL;
	}
	step = VMMU_PAGE_SIZE << (9 * (level - 2));
	if (huge & (step * 512 - 1) & VMMU_SPTE_PFN_MASK) {
		log_err("spte: split of 0x%llx, frame not aligned to level %d", (unsigned long long)huge, level);
		return -EINVAL;
	}
	first = huge;
	if (level == 2) {
		first &= ~VMMU_SPTE_PS;
		if (flags & VMMU_SPTE_NX_HUGE)
			first = make_executable(fmt, first);
	}
	for (unsigned int i = 0; i < 512; i++)
		child[i] = first + i * step;
	return 0;
}

int vmmu_spte_collapse(const struct vmmu_spte_format *fmt, const uint64_t child[512], int level, unsigned int flags,
		       uint64_t *out)
{
	uint64_t step, ad, young = 0, tracked = 0, base, huge;
	const char *why = NULL;

	if (!huge_args_ok(fmt, child, out, level, flags, "collapse"))
		return -EINVAL;
	step = VMMU_PAGE_SIZE << (9 * (level - 2));
	ad = fmt->accessed | fmt->dirty;
	base = vmmu_spte_restore_access_track(fmt, child[0]);
	if (!(child[0] & VMMU_SPTE_MMU_PRESENT) || !vmmu_spte_is_leaf(fmt, child[0], level - 1) ||
	    (level == 2 && (child[0] & VMMU_SPTE_PS)))
		why = "child 0 is not an MMU-present leaf";
	else if (child[0] & (step * 512 - 1) & VMMU_SPTE_PFN_MASK)
		why = "child 0's frame is not aligned to the huge size";
	for (unsigned int i = 0; i < 512 && !why; i++) {
		uint64_t c = child[i];

		tracked |= vmmu_spte_is_access_track(fmt, c) ? 1 : 0;
		young |= vmmu_spte_is_access_track(fmt, c) ? 0 : 1;
		base |= c & ad;
		c = vmmu_spte_restore_access_track(fmt, c);
		if ((c | ad) != ((base + i * step) | ad))
			why = "children differ in frame order or attributes";
	}
	if (why) {
		log_err("spte: cannot collapse into a level-%d leaf: %s", level, why);
		return -EINVAL;
	}
	huge = base | VMMU_SPTE_PS;
	if (tracked && !young)
		huge = vmmu_spte_mark_access_track(fmt, huge);
	if (flags & VMMU_SPTE_NX_HUGE)
		huge = make_nonexecutable(fmt, huge);
	*out = huge;
	return 0;
}
