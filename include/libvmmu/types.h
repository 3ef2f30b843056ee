/* SPDX-License-Identifier: MIT */
/*
 * libvmmu common types: addresses, access bits, page-fault error-code bits and
 * the export macro. Every other public header includes this one.
 */
#ifndef LIBVMMU_TYPES_H
#define LIBVMMU_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if defined(VMMU_BUILDING_LIBRARY) && defined(__GNUC__)
#define VMMU_API __attribute__((visibility("default")))
#else
#define VMMU_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/** A guest virtual (linear) address. */
typedef uint64_t vmmu_gva_t;
/** A guest physical address. */
typedef uint64_t vmmu_gpa_t;
/** A guest frame number: a guest physical address >> 12. */
typedef uint64_t vmmu_gfn_t;

#define VMMU_PAGE_SHIFT 12
#define VMMU_PAGE_SIZE (1ULL << VMMU_PAGE_SHIFT)
#define VMMU_PAGE_MASK (~(VMMU_PAGE_SIZE - 1))

/** Largest physical address width x86 defines (MAXPHYADDR can be at most 52). */
#define VMMU_MAX_PHYS_BITS 52

static inline vmmu_gfn_t vmmu_gpa_to_gfn(vmmu_gpa_t gpa) { return gpa >> VMMU_PAGE_SHIFT; }
static inline vmmu_gpa_t vmmu_gfn_to_gpa(vmmu_gfn_t gfn) { return gfn << VMMU_PAGE_SHIFT; }

/*
 * Effective permissions of a translation, in KVM's ACC_* encoding: exec is a
 * positive bit (not NX), write and user sit at the positions of the PTE's W and
 * U/S bits. For EPT second-stage translations VMMU_ACC_USER means "readable".
 */
#define VMMU_ACC_EXEC  (1u << 0)
#define VMMU_ACC_WRITE (1u << 1)
#define VMMU_ACC_USER  (1u << 2)
#define VMMU_ACC_ALL   (VMMU_ACC_EXEC | VMMU_ACC_WRITE | VMMU_ACC_USER)

/*
 * Page-fault error-code bits (SDM vol. 3A 4.7). Bits 0-6 are what a CPU pushes
 * for #PF; bits 32 and 33 are the AMD #NPF EXITINFO1 bits (fault on the final
 * GPA / on a guest paging-structure access), also used for EPT violations.
 */
#define VMMU_PFERR_PRESENT     (1ULL << 0)
#define VMMU_PFERR_WRITE       (1ULL << 1)
#define VMMU_PFERR_USER        (1ULL << 2)
#define VMMU_PFERR_RSVD        (1ULL << 3)
#define VMMU_PFERR_FETCH       (1ULL << 4)
#define VMMU_PFERR_PK          (1ULL << 5)
#define VMMU_PFERR_SS          (1ULL << 6)
#define VMMU_PFERR_GUEST_FINAL (1ULL << 32)
#define VMMU_PFERR_GUEST_PAGE  (1ULL << 33)

/** Paging formats: guest modes, and second-stage (EPT) formats. NPT uses the 4-/5-level format. */
enum vmmu_paging_mode {
	VMMU_PAGING_OFF = 0, /**< CR0.PG = 0: GVA == GPA */
	VMMU_PAGING_32BIT,   /**< 2 levels, 4-byte entries, 4 MiB pages with CR4.PSE */
	VMMU_PAGING_PAE,     /**< 3 levels, PDPTE registers, 2 MiB pages */
	VMMU_PAGING_4LEVEL,  /**< IA-32e 4-level (also AMD NPT) */
	VMMU_PAGING_5LEVEL,  /**< IA-32e 5-level, CR4.LA57 (also AMD NPT with LA57 hosts) */
	VMMU_PAGING_EPT4,    /**< Intel EPT, 4-level walk */
	VMMU_PAGING_EPT5,    /**< Intel EPT, 5-level walk */
};

#ifdef __cplusplus
}
#endif

#endif
