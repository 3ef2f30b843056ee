/* SPDX-License-Identifier: MIT */
/*
 * Guest paging: paging contexts built from CPU state, and the walker.
 *
 * A paging context (struct vmmu_paging) holds what a walk needs and what can be
 * precomputed from the registers: the mode, the 16-entry permission table
 * indexed by error-code bits, the PKRU mask, reserved-bit masks per level, and
 * for PAE the four PDPTE registers. vmmu_walk() translates a GVA with every
 * rule of the SDM (vol. 3A ch. 4) and reports either the translation or the
 * exact architectural fault.
 *
 * Second stage (EPT or NPT) contexts translate guest-physical addresses; a
 * first-stage context can be nested on one with vmmu_paging_set_nested(), so
 * that every guest table access and the final GPA go through it (a 2-D walk).
 *
 * Guest memory is reached through a memslot set; every GPA is bounds-checked.
 * A table entry in guest memory that no memslot backs ends the walk as the
 * CPU model of KVM does: a not-present fault at that level.
 *
 * Threading: walks on one context may run concurrently (A/D updates use
 * compare-and-swap on guest memory); vmmu_paging_update() must not run
 * concurrently with walks on the same context.
 */
#ifndef LIBVMMU_PAGING_H
#define LIBVMMU_PAGING_H

#include <libvmmu/types.h>
#include <libvmmu/memslot.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Register bits the walker reads. */
#define VMMU_CR0_WP    (1ULL << 16)
#define VMMU_CR0_PG    (1ULL << 31)
#define VMMU_CR4_PSE   (1ULL << 4)
#define VMMU_CR4_PAE   (1ULL << 5)
#define VMMU_CR4_LA57  (1ULL << 12)
#define VMMU_CR4_SMEP  (1ULL << 20)
#define VMMU_CR4_SMAP  (1ULL << 21)
#define VMMU_CR4_PKE   (1ULL << 22)
#define VMMU_EFER_LME  (1ULL << 8)
#define VMMU_EFER_LMA  (1ULL << 10)
#define VMMU_EFER_NXE  (1ULL << 11)
#define VMMU_RFLAGS_AC (1ULL << 18)

/* vmmu_paging_regs.flags */
#define VMMU_PAGING_F_GBPAGES (1u << 0) /**< 1 GiB pages exist (CPUID 8000_0001h EDX[26]) */
#define VMMU_PAGING_F_AMD     (1u << 1) /**< AMD reserved-bit rules (bit 8 reserved in PML4E/PML5E) */
#define VMMU_PAGING_F_PDPTRS  (1u << 2) /**< PAE: pdptrs[] hold the PDPTE registers; else loaded from CR3 */

/** CPU state a first-stage paging context is built from. */
struct vmmu_paging_regs {
	uint64_t cr0, cr3, cr4, efer;
	uint64_t rflags;    /**< only AC (bit 18) matters, for SMAP */
	uint32_t pkru;      /**< used when CR4.PKE and long mode */
	uint8_t maxphyaddr; /**< CPUID 8000_0008h EAX[7:0]: 32..52 */
	uint8_t pad[3];
	uint32_t flags;     /**< VMMU_PAGING_F_* */
	uint32_t pad2;
	uint64_t pdptrs[4]; /**< PAE PDPTE registers, used with VMMU_PAGING_F_PDPTRS */
	uint64_t reserved[4];
};

/* EPT configuration (vmmu_ept_config.flags) */
#define VMMU_EPT_F_EXECONLY (1u << 0) /**< execute-only entries (XWR=100) are allowed */
#define VMMU_EPT_F_1G       (1u << 1) /**< 1 GiB EPT pages are supported */
#define VMMU_EPT_F_NO_2M    (1u << 2) /**< 2 MiB EPT pages are NOT supported */

/** An EPT second stage. */
struct vmmu_ept_config {
	uint64_t eptp;      /**< bits 5:3 walk length - 1 (3 or 4), bit 6 A/D enable, M-1:12 root */
	uint8_t maxphyaddr; /**< 32..52 */
	uint8_t pad[3];
	uint32_t flags;     /**< VMMU_EPT_F_* */
	uint64_t reserved[4];
};

/** An AMD NPT second stage: host-format tables, every access a user access. */
struct vmmu_npt_config {
	uint64_t ncr3;      /**< root table address (bits M-1:12) */
	uint8_t levels;     /**< 4 or 5 */
	uint8_t maxphyaddr; /**< 32..52 */
	uint8_t nxe;        /**< host EFER.NXE: bit 63 is NX (else reserved) */
	uint8_t gbpages;    /**< 1 GiB pages exist */
	uint32_t pad;
	uint64_t reserved[4];
};

struct vmmu_paging;

/**
 * vmmu_paging_create() - build a first-stage paging context from CPU state.
 * @out: receives the context; the caller owns it (vmmu_paging_destroy()).
 * @mem: guest memory; borrowed, must outlive the context.
 * @regs: CR0/CR3/CR4/EFER/RFLAGS/PKRU, MAXPHYADDR and flags; copied.
 *
 * The mode follows the registers: CR0.PG=0 -> paging off; PAE=0 -> 32-bit;
 * EFER.LMA=0 -> PAE (PDPTE registers from @regs->pdptrs or loaded from CR3
 * as MOV CR3 does); LA57=0 -> 4-level; else 5-level.
 *
 * Return: 0; -EINVAL (NULL argument, MAXPHYADDR outside 32..52, an
 * inconsistent register combination such as LMA without PAE or PG); -EFAULT
 * (PAE: the PDPT at CR3 is not in guest memory); -ENOMEM. PAE PDPTEs with
 * reserved bits set are -EINVAL (a CPU raises #GP on the load).
 */
VMMU_API int vmmu_paging_create(struct vmmu_paging **out, const struct vmmu_memslots *mem,
				const struct vmmu_paging_regs *regs);

/**
 * vmmu_paging_create_ept() - build an EPT second-stage context.
 *
 * Return: 0; -EINVAL (NULL argument, walk length not 4 or 5, bad MAXPHYADDR,
 * reserved EPTP bits); -ENOMEM.
 */
VMMU_API int vmmu_paging_create_ept(struct vmmu_paging **out, const struct vmmu_memslots *mem,
				    const struct vmmu_ept_config *cfg);

/**
 * vmmu_paging_create_npt() - build an AMD NPT second-stage context.
 *
 * Return: 0; -EINVAL (NULL argument, levels not 4 or 5, bad MAXPHYADDR); -ENOMEM.
 */
VMMU_API int vmmu_paging_create_npt(struct vmmu_paging **out, const struct vmmu_memslots *mem,
				    const struct vmmu_npt_config *cfg);

/**
 * vmmu_paging_update() - rebuild a first-stage context after register changes
 * (a CR0/CR3/CR4/EFER/PKRU/RFLAGS write). Identical registers cost nothing;
 * otherwise only what the changed bits feed is recomputed: the permission
 * table (CR0.WP, CR4.SMEP/SMAP, EFER.NXE), the PKRU mask (CR0.WP, CR4.PKE),
 * the reserved-bit masks (MAXPHYADDR, EFER.NXE, flags), all of them on a
 * paging-mode change; CR3, RFLAGS.AC and PKRU are plain copies. PAE PDPTE
 * registers loaded from memory are reloaded only by the writes that reload them on a
 * CPU (CR3; CR0.PG/CD/NW; CR4.PSE/PAE/PGE/SMEP; a change of MAXPHYADDR or of
 * the given pdptrs), so a walk keeps using the loaded values otherwise; a
 * MOV CR3 that rewrites the same value is vmmu_paging_reload_pdptrs().
 * Walks stay correct across memslot changes; calling this afterwards (even
 * with the same registers) restores the cached slot of the root table that
 * spares a lookup at the start of each walk.
 *
 * Return: as vmmu_paging_create(); on error the context is unchanged.
 */
VMMU_API int vmmu_paging_update(struct vmmu_paging *ctx, const struct vmmu_paging_regs *regs);

/**
 * vmmu_paging_reload_pdptrs() - reload the PAE PDPTE registers from the PDPT at
 * CR3 (through the second stage when nested), as a MOV to CR3 does even when it
 * writes the value CR3 already holds. vmmu_paging_update() cannot see such a
 * write (its registers are unchanged), so a VMM emulating it calls this. With
 * VMMU_PAGING_F_PDPTRS the given pdptrs[] are reloaded instead.
 *
 * Return: 0; -EINVAL (NULL, not a PAE first-stage context, or a present PDPTE
 * with reserved bits: a CPU raises #GP); -EFAULT (the PDPT is not in guest
 * memory). On error the context is unchanged.
 */
VMMU_API int vmmu_paging_reload_pdptrs(struct vmmu_paging *ctx);

/** vmmu_paging_destroy() - free a context. NULL is a no-op. Does not touch a nested context. */
VMMU_API void vmmu_paging_destroy(struct vmmu_paging *ctx);

/** vmmu_paging_get_mode() - the context's paging mode. */
VMMU_API enum vmmu_paging_mode vmmu_paging_get_mode(const struct vmmu_paging *ctx);

/**
 * vmmu_paging_set_nested() - make @ctx a 2-D walk over @second_stage: every
 * guest paging-structure access and the final GPA are translated through it.
 * @second_stage: an EPT or NPT context, borrowed (must outlive the link), or
 * NULL to walk guest tables directly in guest memory again.
 *
 * A PAE context whose PDPTE registers come from memory (no
 * VMMU_PAGING_F_PDPTRS) reloads them through the new second stage (a read
 * without side effects), as the CPU loads them through EPT.
 *
 * Return: 0; -EINVAL (@ctx NULL or itself a second stage, @second_stage not
 * a second stage, or reserved bits in the reloaded PDPTEs); -EFAULT (PAE: the
 * PDPT does not translate through @second_stage or is not in guest memory).
 * On error the context is unchanged.
 */
VMMU_API int vmmu_paging_set_nested(struct vmmu_paging *ctx, struct vmmu_paging *second_stage);

/* Access kinds for vmmu_walk(); WRITE/USER/FETCH sit at their #PF error-code positions. */
#define VMMU_WALK_READ     0u
#define VMMU_WALK_WRITE    (1u << 1) /**< a write */
#define VMMU_WALK_USER     (1u << 2) /**< CPL 3 (a user-mode access) */
#define VMMU_WALK_FETCH    (1u << 4) /**< an instruction fetch */
#define VMMU_WALK_IMPLICIT (1u << 8) /**< implicit supervisor access (GDT/LDT/IDT/TSS) even at CPL 3 */
#define VMMU_WALK_NO_AD    (1u << 9) /**< no side effects: A/D bits are not written (debuggers) */

/** Non-error outcomes of vmmu_walk(). */
enum vmmu_walk_outcome {
	VMMU_WALK_OK = 0,            /**< translated: gpa, level, access, entries */
	VMMU_WALK_PAGE_FAULT = 1,    /**< #PF: error_code and cr2 */
	VMMU_WALK_GP = 2,            /**< non-canonical address: #GP(0), not #PF */
	VMMU_WALK_EPT_VIOLATION = 3, /**< second stage: exit_qualification, fault_gpa (cr2 if GVA valid) */
	VMMU_WALK_EPT_MISCONFIG = 4, /**< second stage: fault_gpa */
	VMMU_WALK_NPF = 5,           /**< AMD #NPF: error_code (EXITINFO1) and fault_gpa (EXITINFO2) */
};

/* EPT-violation exit-qualification bits (SDM vol. 3C, table 28-7). */
#define VMMU_EPT_QUAL_READ        (1ULL << 0)
#define VMMU_EPT_QUAL_WRITE       (1ULL << 1)
#define VMMU_EPT_QUAL_FETCH       (1ULL << 2)
#define VMMU_EPT_QUAL_READABLE    (1ULL << 3)
#define VMMU_EPT_QUAL_WRITABLE    (1ULL << 4)
#define VMMU_EPT_QUAL_EXECUTABLE  (1ULL << 5)
#define VMMU_EPT_QUAL_GVA_VALID   (1ULL << 7)
#define VMMU_EPT_QUAL_GVA_FINAL   (1ULL << 8) /**< the access was to the final translation, not a guest table */

#define VMMU_WALK_MAX_LEVELS 5

/**
 * Result of vmmu_walk(). Fields not named by the outcome are zero.
 *
 * gpte[] and gpte_gpa[] hold the first-stage entries (for a second-stage
 * context walked on its own: its entries); in a 2-D walk gpte_gpa[] are
 * guest-physical addresses in the guest's (first-stage) address space. When a
 * 2-D walk faults in the second stage, level is the second-stage level where
 * that walk stopped and levels counts the first-stage entries actually read.
 */
struct vmmu_walk_result {
	vmmu_gpa_t gpa;          /**< OK: the translation of the GVA (page offset included) */
	uint64_t page_size;      /**< OK: 4 KiB, 2 MiB, 4 MiB or 1 GiB */
	uint8_t level;           /**< OK: level of the leaf (1 = 4 KiB table; 0 with paging off);
				      fault: level where the walk stopped */
	uint8_t levels;          /**< number of entries read (valid in gpte[]/gpte_gpa[] from the top) */
	uint16_t access;         /**< OK: effective VMMU_ACC_* over the first-stage path
				      (a second stage walked alone: its path, R in ACC_USER) */
	uint32_t pad;
	uint64_t gpte[VMMU_WALK_MAX_LEVELS];       /**< entry read at level L in [L - 1], as in memory (after A/D) */
	vmmu_gpa_t gpte_gpa[VMMU_WALK_MAX_LEVELS]; /**< guest physical address of that entry */
	uint64_t error_code;     /**< PAGE_FAULT: #PF error code; NPF: EXITINFO1 */
	vmmu_gva_t cr2;          /**< PAGE_FAULT: faulting linear address; EPT_VIOLATION: the GVA if valid */
	uint64_t exit_qualification; /**< EPT_VIOLATION */
	vmmu_gpa_t fault_gpa;    /**< EPT_VIOLATION / EPT_MISCONFIG / NPF: the guest-physical address that faulted
				      (a guest table access: the address of the entry itself, as hardware reports it) */
	vmmu_gpa_t guest_gpa;    /**< OK, nested context: the first-stage translation, before the second stage */
	uint64_t reserved[3];
};

/**
 * vmmu_walk() - translate @gva for an access of kind @access.
 * @ctx: a first-stage context (or a second stage, to translate a GPA alone).
 * @gva: the linear address (or GPA for a second-stage context).
 * @access: VMMU_WALK_* flags.
 * @res: receives the result; fully written on every non-negative return.
 *
 * Sets A on every level and D on the leaf for a write, with compare-and-swap
 * into guest memory, only when the whole walk (both stages) succeeds; retries
 * on a lost race; never writes entries in read-only memslots; VMMU_WALK_NO_AD
 * writes nothing. Second-stage A/D bits are set when the second stage has
 * them (NPT always, EPT with EPTP bit 6); guest table accesses count as
 * writes there (EPT: only with A/D on). Guest A/D bits are written straight
 * into memory, as KVM's walker does: their writes are not checked against
 * second-stage write permission.
 *
 * VMMU_WALK_USER with VMMU_WALK_IMPLICIT is a supervisor access (U clear in
 * the error code; EFLAGS.AC does not lift SMAP). With 32-bit and PAE paging
 * @gva is truncated to 32 bits. An EPT violation on a guest table access made
 * as a write (EPT A/D on) reports both read and write in the qualification,
 * as KVM does. A GPA beyond what a second stage translates (2^48 with 4
 * levels, 2^57 with 5) faults there as a not-present root entry would.
 *
 * Return: a vmmu_walk_outcome (>= 0); -EINVAL for NULL arguments, unknown
 * @access bits, or WRITE together with FETCH; -ELOOP if A/D updates lose the
 * race too many times (64).
 */
VMMU_API int vmmu_walk(struct vmmu_paging *ctx, vmmu_gva_t gva, uint32_t access, struct vmmu_walk_result *res);

#ifdef __cplusplus
}
#endif

#endif
