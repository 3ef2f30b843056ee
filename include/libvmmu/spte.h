/* SPDX-License-Identifier: MIT */
/*
 * SPTEs: the entries of the page tables the MMU builds (shadow page tables, EPT
 * or NPT), in the encodings KVM uses.
 *
 * A format descriptor (struct vmmu_spte_format) holds everything that differs
 * between paging formats: which bits mean present, user, exec, A/D, where the
 * software bits sit, the reserved-bit tables and the MMIO encoding. It is a
 * caller-owned value filled once by vmmu_spte_format_init() and read-only
 * afterwards, so any number of formats (an EPT MMU and an NPT MMU, A/D on and
 * off, different MAXPHYADDRs) coexist in one process; nothing is global. All
 * functions here are pure: they take an SPTE value and return one, and are safe
 * to call from any thread.
 *
 * Bit layout (bit N = 1ULL << N; "SW" = ignored by hardware, used by software):
 *
 *   bit    EPT format                          legacy / NPT format (4/5-level)
 *   0      R (readable; ACC_USER)              P (present)
 *   1      W                                   W
 *   2      X (ACC_EXEC)                        U/S (ACC_USER)
 *   5:3    memory type (leaf)                  PWT, PCD, A (bit 5)
 *   6      ignore PAT (leaf)                   D
 *   7      PS (huge leaf at level 2/3)         PS (huge leaf at level 2/3)
 *   8      A (when A/D enabled)                G (never set)
 *   9      D (when A/D enabled)                SW: host-writable
 *   10     -                                   SW: MMU-writable
 *   11     SW: MMU-present                     SW: MMU-present
 *   51:12  host physical frame (pfn)           host physical frame (pfn)
 *   53:52  SW: A/D type (0 on, 1 off, 2 wrprot) always 0
 *   54     SW: saved R while access-tracked    -
 *   56     SW: saved X while access-tracked    -
 *   57     SW: host-writable                   -
 *   58     SW: MMU-writable                    -
 *   63     suppress #VE (set in every present  NX (set when not executable)
 *          SPTE and in the non-present value)
 *
 * Writable state (host-writable H, MMU-writable M, W): H M W = 111 writable;
 * 110 write-protected for dirty logging or access tracking (a lockless fast path
 * may set W again); 100 write-protected because a guest page table is shadowed
 * here; 000 the host forbids writes. W implies M, M implies H.
 *
 * Access tracking (EPT with A/D off): R and X move to bits 54/56 and R/W/X are
 * cleared, so hardware sees the entry not present while MMU-present stays set.
 *
 * MMIO SPTEs carry a guest frame (bits 51:12), guest access bits (legacy: W, U)
 * and 19 bits of the memslot generation: generation bits 7:0 in SPTE bits 10:3
 * and generation bits 18:8 in SPTE bits 62:52. EPT MMIO SPTEs have R/W/X = 110
 * (an EPT misconfiguration) and bit 63 clear; legacy ones have P and the
 * reserved physical-address bit 51 set (a #PF/#NPF with RSVD), so they exist
 * only when MAXPHYADDR < 52. MMIO SPTEs are never MMU-present.
 *
 * A cleared SPTE holds VMMU_SPTE_NONPRESENT (bit 63), never 0.
 *
 * Not modelled (KVM has them): the L1TF relocation of high GPA bits in
 * non-present SPTEs, memory-encryption bits (SME C-bit, TDX shared bit and the
 * TDX MMIO value), MBEC user-execute (EPT bit 10), protection keys, and 32-bit
 * PAE shadow roots. Marking the gfn dirty when a writable SPTE is built is the
 * caller's job.
 */
#ifndef LIBVMMU_SPTE_H
#define LIBVMMU_SPTE_H

#include <libvmmu/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bits common to both formats. */
#define VMMU_SPTE_WRITABLE     (1ULL << 1)  /**< hardware W */
#define VMMU_SPTE_PS           (1ULL << 7)  /**< page size: a huge leaf at level 2 or 3 */
#define VMMU_SPTE_MMU_PRESENT  (1ULL << 11) /**< SW: backed by memory (also when access-tracked) */
#define VMMU_SPTE_PFN_MASK     0x000ffffffffff000ULL /**< bits 51:12 */
#define VMMU_SPTE_NONPRESENT   (1ULL << 63) /**< value of a cleared SPTE */
/** A non-present placeholder a writer may install with compare-and-swap during a multi-step update. */
#define VMMU_SPTE_FROZEN       (VMMU_SPTE_NONPRESENT | 0x5a0ULL)

/* A/D type (SW, EPT only, bits 53:52). */
#define VMMU_SPTE_AD_MASK        (3ULL << 52)
#define VMMU_SPTE_AD_ENABLED     (0ULL << 52) /**< hardware sets A/D */
#define VMMU_SPTE_AD_DISABLED    (1ULL << 52) /**< no A/D: access tracking, write protection */
#define VMMU_SPTE_AD_WRPROT_ONLY (2ULL << 52) /**< A/D on, but dirty tracking by write protection */

/* EPT format. */
#define VMMU_SPTE_EPT_R             (1ULL << 0)
#define VMMU_SPTE_EPT_W             (1ULL << 1)
#define VMMU_SPTE_EPT_X             (1ULL << 2)
#define VMMU_SPTE_EPT_RWX           (7ULL << 0)
#define VMMU_SPTE_EPT_MT_SHIFT      3
#define VMMU_SPTE_EPT_MT_MASK       (7ULL << 3)
#define VMMU_SPTE_EPT_IPAT          (1ULL << 6)
#define VMMU_SPTE_EPT_A             (1ULL << 8)
#define VMMU_SPTE_EPT_D             (1ULL << 9)
#define VMMU_SPTE_EPT_SAVED_SHIFT   54 /**< saved R at 54, saved X at 56 */
#define VMMU_SPTE_EPT_SAVED_MASK    ((VMMU_SPTE_EPT_R | VMMU_SPTE_EPT_X) << VMMU_SPTE_EPT_SAVED_SHIFT)
#define VMMU_SPTE_EPT_HOST_WRITABLE (1ULL << 57)
#define VMMU_SPTE_EPT_MMU_WRITABLE  (1ULL << 58)
#define VMMU_SPTE_EPT_SUPPRESS_VE   (1ULL << 63)

/* Legacy / NPT format (64-bit entries, 4 or 5 levels). */
#define VMMU_SPTE_LEGACY_P             (1ULL << 0)
#define VMMU_SPTE_LEGACY_W             (1ULL << 1)
#define VMMU_SPTE_LEGACY_U             (1ULL << 2)
#define VMMU_SPTE_LEGACY_A             (1ULL << 5)
#define VMMU_SPTE_LEGACY_D             (1ULL << 6)
#define VMMU_SPTE_LEGACY_HOST_WRITABLE (1ULL << 9)
#define VMMU_SPTE_LEGACY_MMU_WRITABLE  (1ULL << 10)
#define VMMU_SPTE_LEGACY_NX            (1ULL << 63)

/* MMIO SPTEs. */
#define VMMU_SPTE_MMIO_GEN_BITS      19
#define VMMU_SPTE_MMIO_GEN_MASK      ((1ULL << VMMU_SPTE_MMIO_GEN_BITS) - 1)
#define VMMU_SPTE_MMIO_GEN_LOW_MASK  (0xffULL << 3)  /**< generation bits 7:0 at SPTE 10:3 */
#define VMMU_SPTE_MMIO_GEN_HIGH_MASK (0x7ffULL << 52) /**< generation bits 18:8 at SPTE 62:52 */
#define VMMU_SPTE_EPT_MMIO_VALUE     (VMMU_SPTE_EPT_W | VMMU_SPTE_EPT_X) /**< XWR = 110: misconfiguration */
#define VMMU_SPTE_EPT_MMIO_MASK      (VMMU_SPTE_EPT_RWX | VMMU_SPTE_EPT_SUPPRESS_VE)
#define VMMU_SPTE_LEGACY_MMIO_VALUE  ((1ULL << 51) | VMMU_SPTE_LEGACY_P) /**< reserved PA bit 51 + P */
#define VMMU_SPTE_LEGACY_MMIO_MASK   VMMU_SPTE_LEGACY_MMIO_VALUE
#define VMMU_SPTE_LEGACY_MMIO_ACCESS (VMMU_ACC_WRITE | VMMU_ACC_USER) /**< access bits kept in MMIO SPTEs */

/* EPT memory types (bits 5:3 of a leaf). 2, 3 and 7 are misconfigurations. */
#define VMMU_SPTE_MT_UC 0
#define VMMU_SPTE_MT_WC 1
#define VMMU_SPTE_MT_WT 4
#define VMMU_SPTE_MT_WP 5
#define VMMU_SPTE_MT_WB 6

/* Flags of vmmu_spte_make_leaf(). */
#define VMMU_SPTE_PREFETCH       (1u << 0) /**< speculative: no A; A/D-off SPTEs start access-tracked */
#define VMMU_SPTE_HOST_WRITABLE  (1u << 1) /**< the host mapping allows writes */
#define VMMU_SPTE_CAN_WRITE      (1u << 2) /**< no shadowed guest table forbids write access */
#define VMMU_SPTE_IPAT           (1u << 3) /**< EPT: ignore guest PAT (with the memory type) */
#define VMMU_SPTE_NX_HUGE        (1u << 4) /**< iTLB-multihit mitigation: huge leaves never executable */
#define VMMU_SPTE_WRPROT_ONLY    (1u << 5) /**< EPT with A/D: A/D type 2 (dirty tracking by write protection) */
#define VMMU_SPTE_MAKE_FLAGS_ALL 0x3fu

/** Outcomes of vmmu_spte_make_leaf() (non-negative). */
enum vmmu_spte_made {
	VMMU_SPTE_MADE = 0,   /**< built as asked */
	VMMU_SPTE_WRPROT = 1, /**< write was asked and the host allows it, but !CAN_WRITE: built read-only */
};

/** Options of vmmu_spte_format_init(). Zero-initialise, then set what you need. */
struct vmmu_spte_format_opts {
	size_t size;                 /**< sizeof(struct vmmu_spte_format_opts) */
	enum vmmu_paging_mode mode;  /**< VMMU_PAGING_EPT4/EPT5, or VMMU_PAGING_4LEVEL/5LEVEL (NPT, shadow) */
	unsigned int maxphyaddr;     /**< host physical-address width, 32..52 */
	unsigned int max_leaf_level; /**< largest leaf: 1 (4K, EPT only), 2 (2M) or 3 (1G); 0 means 3 */
	bool ad_disabled;            /**< EPT only: no A/D bits (EPTP bit 6 clear): access tracking */
	bool exec_only;              /**< EPT only: the CPU allows execute-only entries (XWR = 100) */
};

/** Which encoding a struct vmmu_spte_format describes. */
enum vmmu_spte_kind {
	VMMU_SPTE_KIND_EPT = 1,
	VMMU_SPTE_KIND_LEGACY = 2,
};

/**
 * struct vmmu_spte_format - one paging format's SPTE encoding.
 *
 * Caller-owned; filled by vmmu_spte_format_init() and then read-only. The
 * fields are public so that the inline helpers below compile to a few loads;
 * do not change them. No finish call is needed (it holds no resources).
 */
struct vmmu_spte_format {
	uint64_t present;       /**< set in every present SPTE (legacy P; EPT bit 63, and R unless exec-only) */
	uint64_t user;          /**< ACC_USER: legacy U, EPT R */
	uint64_t x;             /**< ACC_EXEC when set (EPT X), else 0 */
	uint64_t nx;            /**< !ACC_EXEC when set (legacy NX), else 0 */
	uint64_t accessed;      /**< hardware A bit */
	uint64_t dirty;         /**< hardware D bit */
	uint64_t host_writable; /**< SW host-writable bit */
	uint64_t mmu_writable;  /**< SW MMU-writable bit */
	uint64_t hw_present;    /**< bits of which one must be set for hardware to see the entry (P or RWX) */
	uint64_t acc_track;     /**< bits cleared while access-tracked (EPT RWX; 0 for legacy) */
	uint64_t ad_type;       /**< A/D type of SPTEs this format builds */
	uint64_t max_pfn;       /**< largest host frame: 2^(maxphyaddr - 12) - 1 */
	uint64_t mmio_value;    /**< an SPTE is MMIO iff (spte & mmio_mask) == mmio_value */
	uint64_t mmio_mask;     /**< 0 (and mmio_value ~0) when the format has no MMIO SPTEs */
	uint64_t mmio_access;   /**< SPTE bits that keep the guest access in MMIO SPTEs */
	uint64_t max_mmio_gfn;  /**< largest guest frame an MMIO SPTE holds */
	uint64_t rsvd[2][5];    /**< reserved bits by [bit 7][level - 1] for present entries */
	uint64_t bad_mt_xwr;    /**< EPT: bit (spte & 63) set = bad memory type / XWR combination */
	uint8_t kind;           /**< enum vmmu_spte_kind */
	uint8_t levels;         /**< 4 or 5 */
	uint8_t max_leaf_level; /**< 1..3 */
	uint8_t maxphyaddr;     /**< 32..52 */
	bool exec_only;
	uint8_t pad[3];
	uint64_t reserved[4];
};

/**
 * vmmu_spte_format_init() - fill @fmt for the format @opts describes.
 * @fmt: caller-owned descriptor; written only on success.
 * @opts: the format; opts->size must be sizeof(struct vmmu_spte_format_opts).
 *
 * Legacy/NPT formats always have A/D bits and no execute-only entries; setting
 * ad_disabled or exec_only for them, or max_leaf_level 1, is an error (2 MiB
 * leaves always exist in 64-bit paging). A legacy format with MAXPHYADDR 52 has
 * no reserved physical-address bit and so no MMIO SPTEs (see vmmu_spte_make_mmio()).
 *
 * Return: 0; -EINVAL (and a log line) for NULL pointers, a wrong size, a mode
 * other than EPT4/EPT5/4LEVEL/5LEVEL, maxphyaddr outside 32..52, or an option
 * the format does not have.
 */
VMMU_API int vmmu_spte_format_init(struct vmmu_spte_format *fmt, const struct vmmu_spte_format_opts *opts);

/**
 * vmmu_spte_make_leaf() - build a leaf SPTE mapping host frame @pfn.
 * @fmt: the format.
 * @pfn: host frame; aligned to the leaf size; at most fmt->max_pfn.
 * @level: 1 (4K), 2 (2M) or 3 (1G), at most fmt->max_leaf_level.
 * @access: VMMU_ACC_* granted (for EPT, VMMU_ACC_USER means readable).
 * @mt: EPT memory type (VMMU_SPTE_MT_*); must be a valid type for legacy
 *      formats too, where it is not stored (they carry no memory type, as KVM's).
 * @flags: VMMU_SPTE_PREFETCH, _HOST_WRITABLE, _CAN_WRITE, _IPAT, _NX_HUGE, _WRPROT_ONLY.
 * @out: receives the SPTE; written only on success.
 *
 * Follows KVM's make_spte(): MMU-present and the A/D type; A unless prefetched;
 * exec (dropped on huge leaves with NX_HUGE), user, PS, memory type; W is kept
 * only with HOST_WRITABLE and then only with CAN_WRITE, and sets W, MMU-writable
 * and D (so the CPU need not set D); a prefetched SPTE is finally marked for
 * access tracking. Marking the gfn dirty in a dirty log is the caller's job.
 * Every SPTE built passes vmmu_spte_is_rsvd() as false.
 *
 * Return: VMMU_SPTE_MADE, VMMU_SPTE_WRPROT (write refused for !CAN_WRITE: the
 * caller emulates or unsyncs); -EINVAL (and a log line) for bad access bits,
 * flags, level, memory type, a misaligned @pfn, or an access an EPT format with
 * execute-only cannot express (write without read, or nothing at all);
 * -ERANGE for @pfn above fmt->max_pfn.
 */
VMMU_API int vmmu_spte_make_leaf(const struct vmmu_spte_format *fmt, uint64_t pfn, int level, unsigned int access,
				 unsigned int mt, unsigned int flags, uint64_t *out);

/**
 * vmmu_spte_make_nonleaf() - build an SPTE pointing at the page table in host frame @child_pfn.
 *
 * Full access (present, W, user, exec) as KVM's make_nonleaf_spte(); A set, or
 * the A/D-disabled type. Permissions are enforced at the leaves.
 *
 * Return: 0; -EINVAL for NULL pointers; -ERANGE for @child_pfn above fmt->max_pfn.
 */
VMMU_API int vmmu_spte_make_nonleaf(const struct vmmu_spte_format *fmt, uint64_t child_pfn, uint64_t *out);

/**
 * vmmu_spte_make_mmio() - build an MMIO SPTE for guest frame @gfn.
 * @access: VMMU_ACC_*; only the bits in fmt->mmio_access are kept (legacy W|U, EPT none).
 * @gen: the memslot generation; its low 19 bits are stored.
 *
 * Return: 0; -EINVAL for NULL pointers or access bits outside VMMU_ACC_ALL;
 * -ERANGE when @gfn is above fmt->max_mmio_gfn (it is never truncated);
 * -EOPNOTSUPP when the format has no MMIO SPTEs (legacy with MAXPHYADDR 52).
 */
VMMU_API int vmmu_spte_make_mmio(const struct vmmu_spte_format *fmt, vmmu_gfn_t gfn, unsigned int access,
				 uint64_t gen, uint64_t *out);

/**
 * vmmu_spte_split() - the 512 SPTEs of a page table that maps what huge leaf @huge maps.
 * @level: level of @huge (2 or 3); the children are leaves at @level - 1.
 * @flags: 0, or VMMU_SPTE_NX_HUGE: @huge lost exec to the NX huge-page
 *         mitigation although exec is allowed; 4K children get exec back.
 * @child: receives 512 SPTEs; child i maps @huge's frame + i * (pages per child).
 *
 * Children keep every attribute of @huge (W, A, D, access-tracking state), so
 * installing the table needs no TLB flush.
 *
 * Return: 0; -EINVAL (and a log line) for NULL pointers, a bad level or flags,
 * or an @huge that is not an MMU-present huge leaf.
 */
VMMU_API int vmmu_spte_split(const struct vmmu_spte_format *fmt, uint64_t huge, int level, unsigned int flags,
			     uint64_t child[512]);

/**
 * vmmu_spte_collapse() - the huge leaf at @level that maps what 512 @child leaves map.
 * @flags: 0, or VMMU_SPTE_NX_HUGE to drop exec from the huge leaf.
 * @out: receives the huge SPTE; written only on success.
 *
 * The children must be MMU-present leaves at @level - 1 mapping contiguous host
 * frames from a @level-aligned one, and be equal in every other bit except A and
 * D (and, for A/D-disabled SPTEs, access tracking). The result is accessed if
 * any child is (A/D-disabled: access-tracked only if every child is) and dirty
 * if any child is, so no A/D information is lost. Split followed by collapse
 * gives back the original SPTE.
 *
 * Return: 0; -EINVAL (and a log line) for NULL pointers, a level not in
 * 2..fmt->max_leaf_level, bad flags, or children that cannot be collapsed
 * (e.g. some writable and some write-protected: write-protect them all first).
 */
VMMU_API int vmmu_spte_collapse(const struct vmmu_spte_format *fmt, const uint64_t child[512], int level,
				unsigned int flags, uint64_t *out);

/*
 * Decoding and predicates. Inline; @fmt must come from vmmu_spte_format_init().
 * Where a @level is taken it must be 1..fmt->levels (not checked).
 */

/** MMU-present (bit 11): backed by memory. False for MMIO, non-present and frozen SPTEs; true when access-tracked. */
static inline bool vmmu_spte_is_present(const struct vmmu_spte_format *fmt, uint64_t spte)
{
	(void)fmt;
	return spte & VMMU_SPTE_MMU_PRESENT;
}

/**
 * MMU-present and visible to the hardware walker (legacy P, or EPT R/W/X not all
 * clear), i.e. not access-tracked: a CPU may cache translations through it.
 * (KVM's is_shadow_present_pte() is vmmu_spte_is_present() here.)
 */
static inline bool vmmu_spte_is_shadow_present(const struct vmmu_spte_format *fmt, uint64_t spte)
{
	return (spte & VMMU_SPTE_MMU_PRESENT) && (spte & fmt->hw_present);
}

/** Huge: PS set (meaningful at levels 2 and 3). */
static inline bool vmmu_spte_is_huge(const struct vmmu_spte_format *fmt, uint64_t spte)
{
	(void)fmt;
	return spte & VMMU_SPTE_PS;
}

/** A leaf at @level: level 1, or PS set. */
static inline bool vmmu_spte_is_leaf(const struct vmmu_spte_format *fmt, uint64_t spte, int level)
{
	(void)fmt;
	return level == 1 || (spte & VMMU_SPTE_PS);
}

/** The host frame an MMU-present SPTE maps or points at (for a huge leaf, its first frame). */
static inline uint64_t vmmu_spte_to_pfn(const struct vmmu_spte_format *fmt, uint64_t spte)
{
	(void)fmt;
	return (spte & VMMU_SPTE_PFN_MASK) >> VMMU_PAGE_SHIFT;
}

/** A/D enabled for this SPTE (A/D type 0 or 2). */
static inline bool vmmu_spte_is_ad_enabled(const struct vmmu_spte_format *fmt, uint64_t spte)
{
	(void)fmt;
	return (spte & VMMU_SPTE_AD_MASK) != VMMU_SPTE_AD_DISABLED;
}

/** Access-tracked: an A/D-disabled MMU-present SPTE whose R/W/X are parked (hardware sees it not present). */
static inline bool vmmu_spte_is_access_track(const struct vmmu_spte_format *fmt, uint64_t spte)
{
	return (spte & VMMU_SPTE_MMU_PRESENT) && !vmmu_spte_is_ad_enabled(fmt, spte) && !(spte & fmt->acc_track);
}

/** Hardware W set. */
static inline bool vmmu_spte_is_writable(const struct vmmu_spte_format *fmt, uint64_t spte)
{
	(void)fmt;
	return spte & VMMU_SPTE_WRITABLE;
}

/** MMU-writable: the MMU lets W be set again without its lock (write-protected only for dirty logging or aging). */
static inline bool vmmu_spte_is_mmu_writable(const struct vmmu_spte_format *fmt, uint64_t spte)
{
	return spte & fmt->mmu_writable;
}

/** Host-writable: the host mapping allows writes. */
static inline bool vmmu_spte_is_host_writable(const struct vmmu_spte_format *fmt, uint64_t spte)
{
	return spte & fmt->host_writable;
}

/** Accessed: A set (A/D on), or not access-tracked (A/D off). */
static inline bool vmmu_spte_is_accessed(const struct vmmu_spte_format *fmt, uint64_t spte)
{
	if (vmmu_spte_is_ad_enabled(fmt, spte))
		return spte & fmt->accessed;
	return !vmmu_spte_is_access_track(fmt, spte);
}

/** Dirty: D set (A/D on), or W set (A/D off, where writability is the only record). */
static inline bool vmmu_spte_is_dirty(const struct vmmu_spte_format *fmt, uint64_t spte)
{
	if (vmmu_spte_is_ad_enabled(fmt, spte))
		return spte & fmt->dirty;
	return spte & VMMU_SPTE_WRITABLE;
}

/** Put back the R/X an access-tracked SPTE parked; other SPTEs are returned unchanged (W stays clear). */
static inline uint64_t vmmu_spte_restore_access_track(const struct vmmu_spte_format *fmt, uint64_t spte)
{
	if (!vmmu_spte_is_access_track(fmt, spte))
		return spte;
	return (spte & ~VMMU_SPTE_EPT_SAVED_MASK) |
	       ((spte >> VMMU_SPTE_EPT_SAVED_SHIFT) & (VMMU_SPTE_EPT_R | VMMU_SPTE_EPT_X));
}

/** The VMMU_ACC_* an MMU-present SPTE grants (for an access-tracked one, what it grants once restored). */
static inline unsigned int vmmu_spte_to_access(const struct vmmu_spte_format *fmt, uint64_t spte)
{
	unsigned int acc = 0;

	spte = vmmu_spte_restore_access_track(fmt, spte);
	if ((spte & fmt->x) || (fmt->nx && !(spte & fmt->nx)))
		acc |= VMMU_ACC_EXEC;
	if (spte & VMMU_SPTE_WRITABLE)
		acc |= VMMU_ACC_WRITE;
	if (spte & fmt->user)
		acc |= VMMU_ACC_USER;
	return acc;
}

/**
 * True if hardware walking @spte at @level would fault on it as a reserved-bit
 * violation (#PF/#NPF with RSVD) or an EPT misconfiguration: reserved bits for
 * the format and level (PS-dependent), physical-address bits at or above
 * MAXPHYADDR, and for EPT a memory type of 2, 3 or 7 or R/W/X of 010, 110 (and
 * 100 without execute-only). Entries hardware sees as not present are never
 * reserved. KVM's "shadow zero check".
 */
static inline bool vmmu_spte_is_rsvd(const struct vmmu_spte_format *fmt, uint64_t spte, int level)
{
	if (!(spte & fmt->hw_present))
		return false;
	return ((fmt->bad_mt_xwr >> (spte & 63)) & 1) || (spte & fmt->rsvd[(spte >> 7) & 1][level - 1]);
}

/** An MMIO SPTE of this format. */
static inline bool vmmu_spte_is_mmio(const struct vmmu_spte_format *fmt, uint64_t spte)
{
	return (spte & fmt->mmio_mask) == fmt->mmio_value;
}

/** The 19 generation bits an MMIO SPTE holds. */
static inline uint64_t vmmu_spte_to_mmio_gen(const struct vmmu_spte_format *fmt, uint64_t spte)
{
	(void)fmt;
	return ((spte & VMMU_SPTE_MMIO_GEN_LOW_MASK) >> 3) | ((spte & VMMU_SPTE_MMIO_GEN_HIGH_MASK) >> (52 - 8));
}

/** An MMIO SPTE made in memslot generation @gen (compared on its low 19 bits): the cached MMIO fault is valid. */
static inline bool vmmu_spte_is_mmio_gen(const struct vmmu_spte_format *fmt, uint64_t spte, uint64_t gen)
{
	return vmmu_spte_is_mmio(fmt, spte) && vmmu_spte_to_mmio_gen(fmt, spte) == (gen & VMMU_SPTE_MMIO_GEN_MASK);
}

/** The guest frame of an MMIO SPTE. */
static inline vmmu_gfn_t vmmu_spte_to_mmio_gfn(const struct vmmu_spte_format *fmt, uint64_t spte)
{
	return (spte & VMMU_SPTE_PFN_MASK & ~fmt->mmio_mask) >> VMMU_PAGE_SHIFT;
}

/** The guest access bits an MMIO SPTE keeps (VMMU_ACC_* within fmt->mmio_access). */
static inline unsigned int vmmu_spte_to_mmio_access(const struct vmmu_spte_format *fmt, uint64_t spte)
{
	return (unsigned int)(spte & fmt->mmio_access);
}

/*
 * Transitions: pure functions from one SPTE value to the next. The caller
 * stores the result (atomically where vmmu_spte_needs_atomic_update() says so)
 * and asks vmmu_spte_needs_tlb_flush() whether a flush must follow.
 */

/** Write-protect for dirty logging: clear W, keep MMU-writable (the fast path may restore W). */
static inline uint64_t vmmu_spte_wrprot_for_dirty_log(const struct vmmu_spte_format *fmt, uint64_t spte)
{
	(void)fmt;
	return spte & ~VMMU_SPTE_WRITABLE;
}

/** Write-protect because a guest page table is shadowed: clear W and MMU-writable (needs a flush if it was set). */
static inline uint64_t vmmu_spte_wrprot_for_shadowing(const struct vmmu_spte_format *fmt, uint64_t spte)
{
	return spte & ~(VMMU_SPTE_WRITABLE | fmt->mmu_writable);
}

/**
 * The fast path's write fix-up: set W again on an SPTE that dirty-log write
 * protection left MMU-writable. Unchanged if it is not MMU-writable (shadowed
 * guest table, read-only host page) or is access-tracked (restore it first:
 * W alone would be an EPT misconfiguration). D is left for the CPU to set.
 */
static inline uint64_t vmmu_spte_restore_writable(const struct vmmu_spte_format *fmt, uint64_t spte)
{
	if (!(spte & fmt->mmu_writable) || vmmu_spte_is_access_track(fmt, spte))
		return spte;
	return spte | VMMU_SPTE_WRITABLE;
}

/**
 * Mark an MMU-present SPTE for access tracking (aging): clear A when A/D is on;
 * otherwise park R and X in bits 54/56 and clear R/W/X (W is not saved).
 * Other SPTEs, and already-tracked ones, are returned unchanged.
 */
static inline uint64_t vmmu_spte_mark_access_track(const struct vmmu_spte_format *fmt, uint64_t spte)
{
	if (!(spte & VMMU_SPTE_MMU_PRESENT) || vmmu_spte_is_access_track(fmt, spte))
		return spte;
	if (vmmu_spte_is_ad_enabled(fmt, spte))
		return spte & ~fmt->accessed;
	spte |= (spte & (VMMU_SPTE_EPT_R | VMMU_SPTE_EPT_X)) << VMMU_SPTE_EPT_SAVED_SHIFT;
	return spte & ~(fmt->acc_track | fmt->accessed);
}

/** Clear A of an A/D-enabled SPTE; A/D-disabled SPTEs are returned unchanged (age them with mark_access_track). */
static inline uint64_t vmmu_spte_clear_accessed(const struct vmmu_spte_format *fmt, uint64_t spte)
{
	if (!vmmu_spte_is_ad_enabled(fmt, spte))
		return spte;
	return spte & ~fmt->accessed;
}

/**
 * Re-arm dirty tracking: clear D of an A/D-enabled SPTE (type 0, so PML or a D
 * scan sees the next write); for A/D-disabled and write-protect-only SPTEs clear
 * W instead (as dirty-log write protection).
 */
static inline uint64_t vmmu_spte_clear_dirty(const struct vmmu_spte_format *fmt, uint64_t spte)
{
	if ((spte & VMMU_SPTE_AD_MASK) == VMMU_SPTE_AD_ENABLED)
		return spte & ~fmt->dirty;
	return spte & ~VMMU_SPTE_WRITABLE;
}

/**
 * Must replacing @old at @level by @new be followed by a TLB flush before the
 * old translation's page is reused or relied on as read-only?
 * - @old not MMU-present (non-present, MMIO, frozen): never cached, no.
 * - @new not MMU-present (a zap): yes.
 * - a non-leaf replaced by a leaf, or pointing elsewhere: yes (the old table is dropped).
 * - a huge leaf replaced by a table (a split that maps the same): no.
 * - leaf to leaf: only when MMU-writable goes 1 -> 0 (KVM's rule: dirty-log
 *   write protection, clearing A or D, and access tracking need no flush here),
 *   or the frame changes (KVM never does that in place).
 */
static inline bool vmmu_spte_needs_tlb_flush(const struct vmmu_spte_format *fmt, uint64_t old, uint64_t new_spte,
					     int level)
{
	bool old_leaf = vmmu_spte_is_leaf(fmt, old, level), new_leaf = vmmu_spte_is_leaf(fmt, new_spte, level);

	if (!(old & VMMU_SPTE_MMU_PRESENT))
		return false;
	if (!(new_spte & VMMU_SPTE_MMU_PRESENT))
		return true;
	if (!old_leaf)
		return new_leaf || ((old ^ new_spte) & VMMU_SPTE_PFN_MASK);
	if (!new_leaf)
		return false;
	return ((old & fmt->mmu_writable) && !(new_spte & fmt->mmu_writable)) ||
	       ((old ^ new_spte) & VMMU_SPTE_PFN_MASK);
}

/**
 * Must @spte, a leaf at @level, be replaced with an atomic exchange (not a
 * plain store), because hardware or a lockless path may change it and the
 * change must not be lost? KVM's spte_needs_atomic_update(), for MMU-present
 * leaves only (as the TDP MMU asks it): W clear but MMU-writable set (the fast
 * path may set W); A/D disabled (aging may track it, the fast path may restore
 * it); A/D on with W set and D clear (the CPU may set D). A is ignored.
 * Non-leaf, non-present, MMIO and frozen SPTEs: false.
 */
static inline bool vmmu_spte_needs_atomic_update(const struct vmmu_spte_format *fmt, uint64_t spte, int level)
{
	if (!(spte & VMMU_SPTE_MMU_PRESENT) || !vmmu_spte_is_leaf(fmt, spte, level))
		return false;
	if (!(spte & VMMU_SPTE_WRITABLE) && (spte & fmt->mmu_writable))
		return true;
	if (!vmmu_spte_is_ad_enabled(fmt, spte))
		return true;
	return (spte & VMMU_SPTE_WRITABLE) && !(spte & fmt->dirty);
}

/**
 * Volatile: some bit of @spte at @level may change under the caller, A
 * included: vmmu_spte_needs_atomic_update(), or an MMU-present A/D-enabled SPTE
 * (leaf or not) with A clear, which the CPU may set. Use it where losing an A
 * update matters (e.g. propagating A to the host page).
 */
static inline bool vmmu_spte_is_volatile(const struct vmmu_spte_format *fmt, uint64_t spte, int level)
{
	return vmmu_spte_needs_atomic_update(fmt, spte, level) ||
	       ((spte & VMMU_SPTE_MMU_PRESENT) && vmmu_spte_is_ad_enabled(fmt, spte) && !(spte & fmt->accessed));
}

#ifdef __cplusplus
}
#endif

#endif
