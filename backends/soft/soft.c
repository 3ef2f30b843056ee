/* SPDX-License-Identifier: MIT */
/*
 * The soft backend: a software machine over the libvmmu MMU (include/libvmmu/soft.h).
 *
 * A vCPU's access runs inside a walk section of its MMU vCPU (walk_begin/end),
 * the software equivalent of "in guest mode": the MMU's TLB flush bumps the
 * VM's TLB generation and then waits until every vCPU inside a section has
 * left it, so a translation cached before a flush is never used after the
 * flush returned, and a table is never freed while a walk may read it. The
 * hardware walk reads SPTEs with atomic loads and sets A/D with atomic ORs.
 */

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libvmmu/soft.h>

#include "backend.h"
#include "mmu/mmu_internal.h"

#define TLB_ENTRIES 256
#define TLB_R 1u
#define TLB_W 2u
#define TLB_X 4u

struct tlb_entry {
	uint64_t tag;   /* (gva >> 12) << 1 | user, plus 1; 0 = empty */
	uint8_t *hva;   /* host address of the 4 KiB page */
	unsigned int rights;
};

struct soft_vm {
	struct vmmu_vm base;
	struct vmmu_mmu *mmu;
	_Atomic uint64_t tlb_gen;     /* bumped by every MMU flush */
	vmmu_soft_mmio_fn mmio_fn;
	void *mmio_opaque;
	pthread_rwlock_t notifiers_lock;
	struct vmmu_notifier *notifiers;
	unsigned int nr_notifiers;
	bool shadow, bypass;          /* shadow paging; PFEC_MASK = PFEC_MATCH = P (bypass) */
};

struct soft_vcpu {
	struct vmmu_vcpu base;
	struct vmmu_mmu_vcpu *mv;
	struct vmmu_regs regs;
	struct vmmu_sregs sregs;
	struct vmmu_paging *guest;    /* NULL while CR0.PG = 0 */
	uint64_t tlb_gen_seen;
	struct tlb_entry tlb[TLB_ENTRIES];
	struct vmmu_soft_stats st;
};

extern const struct vm_ops soft_vm_ops;

static inline struct soft_vm *to_svm(struct vmmu_vm *vm) { return (struct soft_vm *)vm; }
static inline struct soft_vcpu *to_scpu(struct vmmu_vcpu *v) { return (struct soft_vcpu *)v; }

/* ---------------------------------------------------------------- TLB */

static void soft_flush_tlbs(void *opaque)
{
	atomic_fetch_add(&((struct soft_vm *)opaque)->tlb_gen, 1);
}

static void tlb_clear(struct soft_vcpu *sc)
{
	memset(sc->tlb, 0, sizeof(sc->tlb));
	sc->st.tlb_flushes++;
}

static inline unsigned int tlb_index(uint64_t tag) { return (unsigned int)((tag ^ (tag >> 8)) % TLB_ENTRIES); }
static inline uint64_t tlb_tag(vmmu_gva_t gva, bool user) { return ((gva >> VMMU_PAGE_SHIFT) << 1 | user) + 1; }

static void tlb_drop(struct soft_vcpu *sc, vmmu_gva_t gva)
{
	for (int u = 0; u < 2; u++) {
		uint64_t tag = tlb_tag(gva, u);
		struct tlb_entry *e = &sc->tlb[tlb_index(tag)];

		if (e->tag == tag)
			e->tag = 0;
	}
}

/* ------------------------------------------------------ hardware walk */

enum hw_exit { HW_OK, HW_VIOLATION, HW_MISCONFIG };

struct hw_walk {
	uint8_t *hva;        /* OK: host address of the byte */
	unsigned int rights; /* OK: TLB rights the translation grants now */
	uint64_t ec;         /* exit: #PF-style error code for the MMU */
};

/*
 * Walk the SPTE tables for @gpa as a CPU does: a not-present entry or missing
 * permission is a violation (NPF), a reserved-bit entry a misconfiguration
 * (RSVD NPF). On success set A on every entry and D on the leaf of a write.
 * @final: the access is to the final translation (else a guest table).
 */
static enum hw_exit hw_walk_tdp(struct soft_vcpu *sc, uint64_t *root, vmmu_gpa_t gpa, unsigned int kind, bool final,
				struct hw_walk *out)
{
	const struct vmmu_spte_format *fmt = &sc->mv->mmu->fmt;
	bool ept = fmt->kind == VMMU_SPTE_KIND_EPT;
	uint64_t *table = root, *path[VMMU_WALK_MAX_LEVELS], spte = 0;
	unsigned int acc = VMMU_ACC_ALL;
	uint64_t ec = (kind == VMMU_SOFT_WRITE ? VMMU_PFERR_WRITE : 0) | (kind == VMMU_SOFT_FETCH ? VMMU_PFERR_FETCH : 0) |
		      (final ? VMMU_PFERR_GUEST_FINAL : VMMU_PFERR_GUEST_PAGE);
	int level, levels = sc->mv->mmu->root_level;

	if (ept && kind == VMMU_SOFT_READ)
		ec |= VMMU_PFERR_USER; /* KVM: an EPT read violation is reported with U */
	if (!ept)
		ec |= VMMU_PFERR_USER; /* NPT: every access is a user access */
	for (level = levels; level >= 1; level--) {
		uint64_t *sptep = &table[spte_index(gpa, level)];

		spte = spte_get(sptep);
		path[level - 1] = sptep;
		if (!(spte & fmt->hw_present)) {
			out->ec = ec; /* R/W/X of the path AND to 0: not present */
			return HW_VIOLATION;
		}
		if (vmmu_spte_is_rsvd(fmt, spte, level)) {
			out->ec = ec | VMMU_PFERR_RSVD | VMMU_PFERR_PRESENT;
			return ept ? HW_MISCONFIG : HW_VIOLATION;
		}
		if (ept) {
			acc &= ((spte & VMMU_SPTE_EPT_R) ? VMMU_ACC_USER : 0) | (spte & VMMU_SPTE_EPT_W) |
			       ((spte & VMMU_SPTE_EPT_X) ? VMMU_ACC_EXEC : 0);
		} else {
			acc &= ((spte & VMMU_SPTE_LEGACY_U) ? VMMU_ACC_USER : 0) | (spte & VMMU_SPTE_LEGACY_W) |
			       ((spte & VMMU_SPTE_LEGACY_NX) ? 0 : VMMU_ACC_EXEC);
		}
		if (level == 1 || (spte & VMMU_SPTE_PS))
			break;
		table = spte_to_child(spte);
	}
	if ((kind == VMMU_SOFT_READ && !(acc & VMMU_ACC_USER)) || (kind == VMMU_SOFT_WRITE && !(acc & VMMU_ACC_WRITE)) ||
	    (kind == VMMU_SOFT_FETCH && !(acc & VMMU_ACC_EXEC))) {
		out->ec = ec | VMMU_PFERR_PRESENT;
		return HW_VIOLATION;
	}
	/* A/D (when this SPTE's A/D type has them) */
	if (vmmu_spte_is_ad_enabled(fmt, spte) && fmt->accessed) {
		for (int l = levels; l >= level; l--)
			if (!(spte_get(path[l - 1]) & fmt->accessed))
				spte_or(path[l - 1], fmt->accessed);
		if (kind == VMMU_SOFT_WRITE && !(spte & fmt->dirty))
			spte_or(path[level - 1], fmt->dirty);
	}
	{
		uint64_t page_off = gpa & ((1ULL << (12 + 9 * (level - 1))) - 1);

		out->hva = (uint8_t *)(uintptr_t)((spte & VMMU_SPTE_PFN_MASK) + page_off);
	}
	out->rights = ((acc & VMMU_ACC_USER) || !ept ? TLB_R : 0) | ((acc & VMMU_ACC_EXEC) ? TLB_X : 0);
	/* W is cached only once D is set, so a later write need not walk again to set it */
	if ((acc & VMMU_ACC_WRITE) && (kind == VMMU_SOFT_WRITE || !vmmu_spte_is_ad_enabled(fmt, spte) || !fmt->dirty ||
				       (spte & fmt->dirty)))
		out->rights |= TLB_W;
	return HW_OK;
}

static unsigned int walk_access(unsigned int kind, unsigned int cpl)
{
	return (kind == VMMU_SOFT_WRITE ? VMMU_WALK_WRITE : 0) | (kind == VMMU_SOFT_FETCH ? VMMU_WALK_FETCH : 0) |
	       (cpl == 3 ? VMMU_WALK_USER : 0);
}

static unsigned int guest_top_level(const struct vmmu_paging *ctx)
{
	switch (vmmu_paging_get_mode(ctx)) {
	case VMMU_PAGING_32BIT:
		return 2;
	case VMMU_PAGING_PAE:
		return 3;
	case VMMU_PAGING_5LEVEL:
		return 5;
	default:
		return 4;
	}
}

enum step {
	STEP_DONE,   /* translated: *hva, rights */
	STEP_EXIT,   /* a second-stage exit: hw->ec at *gpa */
	STEP_GUEST,  /* a guest fault: outcome in *outcome */
};

/* ------------------------------------------------ shadow paging: hardware walk */

static bool gva_canonical(vmmu_gva_t gva, int levels)
{
	int bits = 12 + 9 * levels; /* 48 or 57 */

	return (uint64_t)((int64_t)(gva << (64 - bits)) >> (64 - bits)) == gva;
}

/*
 * The CPU's walk of the shadow tables for @gva (legacy format, CR0.WP and
 * EFER.NX on, the guest's SMEP/SMAP/AC). A fault returns HW_VIOLATION with the
 * #PF error code in out->ec. On success sets A (and D on a write) in the SPTEs.
 */
static enum hw_exit hw_walk_shadow(struct soft_vcpu *sc, uint64_t *root, vmmu_gva_t gva, unsigned int kind,
				   unsigned int cpl, struct hw_walk *out)
{
	const struct vmmu_spte_format *fmt = &sc->mv->mmu->fmt;
	bool user = cpl == 3, fetch = kind == VMMU_SOFT_FETCH, write = kind == VMMU_SOFT_WRITE;
	uint64_t *table = root, *path[VMMU_WALK_MAX_LEVELS], spte = 0;
	uint64_t ec = (write ? VMMU_PFERR_WRITE : 0) | (user ? VMMU_PFERR_USER : 0) |
		      (fetch ? VMMU_PFERR_FETCH : 0);
	bool w = true, u = true, nx = false;
	int level, levels = sc->mv->mmu->root_level;

	for (level = levels; level >= 1; level--) {
		uint64_t *sptep = &table[spte_index(gva, level)];

		spte = spte_get(sptep);
		path[level - 1] = sptep;
		if (!(spte & VMMU_SPTE_LEGACY_P)) {
			out->ec = ec;
			return HW_VIOLATION;
		}
		if (vmmu_spte_is_rsvd(fmt, spte, level)) {
			out->ec = ec | VMMU_PFERR_RSVD | VMMU_PFERR_PRESENT;
			return HW_VIOLATION;
		}
		w &= !!(spte & VMMU_SPTE_LEGACY_W);
		u &= !!(spte & VMMU_SPTE_LEGACY_U);
		nx |= !!(spte & VMMU_SPTE_LEGACY_NX);
		if (level == 1 || (spte & VMMU_SPTE_PS))
			break;
		table = spte_to_child(spte);
	}
	if ((user && !u) || (write && !w) || (fetch && nx) ||
	    (!user && u && fetch && (sc->sregs.cr4 & VMMU_CR4_SMEP)) ||
	    (!user && u && !fetch && (sc->sregs.cr4 & VMMU_CR4_SMAP) && !(sc->regs.rflags & VMMU_RFLAGS_AC))) {
		out->ec = ec | VMMU_PFERR_PRESENT;
		return HW_VIOLATION;
	}
	for (int l = levels; l >= level; l--)
		if (!(spte_get(path[l - 1]) & fmt->accessed))
			spte_or(path[l - 1], fmt->accessed);
	if (write && !(spte & fmt->dirty))
		spte_or(path[level - 1], fmt->dirty);
	out->hva = (uint8_t *)(uintptr_t)((spte & VMMU_SPTE_PFN_MASK) +
					  (gva & ((1ULL << (12 + 9 * (level - 1))) - 1)));
	out->rights = write ? TLB_W | TLB_R : fetch ? TLB_X : TLB_R;
	return HW_OK;
}

/*
 * The full walk for one access: guest tables (each table access translated
 * through the SPTE tables first), then the final GPA. Inside a walk section.
 */
static enum step translate(struct soft_vcpu *sc, uint64_t *root, vmmu_gva_t gva, unsigned int kind, unsigned int cpl,
			   struct hw_walk *hw, vmmu_gpa_t *gpa, int *outcome, struct vmmu_soft_result *res)
{
	vmmu_gpa_t final = gva;

	if (to_svm(sc->base.vm)->shadow) {
		/* shadow paging: the exit's "address" is the GVA (32 bits with PAE paging) */
		if (sc->guest && vmmu_paging_get_mode(sc->guest) == VMMU_PAGING_PAE)
			gva = (uint32_t)gva;
		else if (sc->guest && !gva_canonical(gva, sc->mv->mmu->root_level))
			return *outcome = VMMU_SOFT_GP, STEP_GUEST;
		*gpa = gva;
		return hw_walk_shadow(sc, root, gva, kind, cpl, hw) == HW_OK ? STEP_DONE : STEP_EXIT;
	}
	if (sc->guest) {
		struct vmmu_walk_result w;
		unsigned int acc = walk_access(kind, cpl);
		int r = vmmu_walk(sc->guest, gva, acc | VMMU_WALK_NO_AD, &w);

		if (r < 0)
			return *outcome = r, STEP_GUEST;
		/* Every guest table the walk read goes through the second stage first (A/D: as a write). */
		for (unsigned int i = 0; i < w.levels; i++) {
			unsigned int l = guest_top_level(sc->guest) - i; /* entries are stored by level */
			vmmu_gpa_t tgpa = w.gpte_gpa[l - 1];
			unsigned int tkind = sc->mv->mmu->fmt.accessed ? VMMU_SOFT_WRITE : VMMU_SOFT_READ;

			if (hw_walk_tdp(sc, root, tgpa, tkind, false, hw) != HW_OK) {
				*gpa = tgpa;
				return STEP_EXIT;
			}
		}
		if (r == VMMU_WALK_OK)
			r = vmmu_walk(sc->guest, gva, acc, &w);
		if (r == VMMU_WALK_PAGE_FAULT) {
			if (res) {
				res->error_code = w.error_code;
				res->cr2 = w.cr2;
			}
			*outcome = VMMU_SOFT_PAGE_FAULT;
			return STEP_GUEST;
		}
		if (r != VMMU_WALK_OK) {
			*outcome = r == VMMU_WALK_GP ? VMMU_SOFT_GP : -EFAULT;
			return STEP_GUEST;
		}
		final = w.gpa;
	}
	*gpa = final;
	return hw_walk_tdp(sc, root, final, kind, true, hw) == HW_OK ? STEP_DONE : STEP_EXIT;
}

/* ------------------------------------------------------------- MMIO */

static bool notifier_hit(struct soft_vm *svm, vmmu_gpa_t gpa, unsigned int size, const void *data)
{
	bool hit = false;

	pthread_rwlock_rdlock(&svm->notifiers_lock);
	for (unsigned int i = 0; i < svm->nr_notifiers && !hit; i++) {
		const struct vmmu_notifier *n = &svm->notifiers[i];
		uint64_t v = 0;

		if ((n->flags & VMMU_NOTIFIER_PIO) || n->addr != gpa || (n->len && n->len != size))
			continue;
		memcpy(&v, data, size);
		if ((n->flags & VMMU_NOTIFIER_DATAMATCH) && v != n->datamatch)
			continue;
		{
			uint64_t one = 1;

			hit = write(n->fd, &one, sizeof(one)) == sizeof(one);
		}
	}
	pthread_rwlock_unlock(&svm->notifiers_lock);
	return hit;
}

static int do_mmio(struct soft_vcpu *sc, vmmu_gpa_t gpa, unsigned int size, unsigned int kind, void *data,
		   struct vmmu_soft_result *res)
{
	struct soft_vm *svm = to_svm(sc->base.vm);

	sc->st.mmio++;
	if (kind == VMMU_SOFT_WRITE && notifier_hit(svm, gpa, size, data)) {
		sc->st.notifier_hits++;
		return VMMU_SOFT_OK;
	}
	if (svm->mmio_fn) {
		int r = svm->mmio_fn(&sc->base, gpa, size, kind == VMMU_SOFT_WRITE, data, svm->mmio_opaque);

		return r < 0 ? r : VMMU_SOFT_OK;
	}
	if (res)
		res->gpa = gpa;
	return VMMU_SOFT_MMIO;
}

/* ------------------------------------------------------------ access */

/*
 * Copy between guest memory and the caller: an aligned access of 1, 2, 4 or 8
 * bytes is single-copy atomic (as on x86), others go byte by byte. Guest
 * memory is shared with other vCPUs and the VMM, so every byte is accessed
 * atomically (relaxed).
 */
static void guest_copy(void *dst, const void *src, unsigned int size, bool to_guest)
{
	uintptr_t g = (uintptr_t)(to_guest ? dst : src);

	if (size == 8 && !(g & 7)) {
		uint64_t v;

		if (to_guest) {
			memcpy(&v, src, 8);
			__atomic_store_n((uint64_t *)dst, v, __ATOMIC_RELAXED);
		} else {
			v = __atomic_load_n((const uint64_t *)src, __ATOMIC_RELAXED);
			memcpy(dst, &v, 8);
		}
		return;
	}
	for (unsigned int i = 0; i < size; i++) {
		if (to_guest)
			__atomic_store_n((uint8_t *)dst + i, ((const uint8_t *)src)[i], __ATOMIC_RELAXED);
		else
			((uint8_t *)dst)[i] = __atomic_load_n((const uint8_t *)src + i, __ATOMIC_RELAXED);
	}
}

static int access_page(struct soft_vcpu *sc, vmmu_gva_t gva, unsigned int size, unsigned int kind, unsigned int cpl,
		       uint8_t *data, struct vmmu_soft_result *res)
{
	struct soft_vm *svm = to_svm(sc->base.vm);
	struct vmmu_mmu_vcpu *mv = sc->mv;
	unsigned int need = kind == VMMU_SOFT_WRITE ? TLB_W : kind == VMMU_SOFT_FETCH ? TLB_X : TLB_R;
	uint64_t tag = tlb_tag(gva, cpl == 3);
	struct tlb_entry *e = &sc->tlb[tlb_index(tag)];

	sc->st.accesses++;
	for (int loops = 0; loops < 64; loops++) {
		struct vmmu_fault_result fr;
		struct hw_walk hw;
		vmmu_gpa_t gpa = 0;
		uint64_t *root, gen;
		enum step step;
		int outcome = 0, r;

		r = vmmu_mmu_vcpu_root(mv, &root);
		if (r)
			return r;
		walk_begin(mv);
		gen = atomic_load_explicit(&svm->tlb_gen, memory_order_relaxed);
		if (gen != sc->tlb_gen_seen) {
			sc->tlb_gen_seen = gen;
			tlb_clear(sc);
		}
		if (e->tag == tag && (e->rights & need)) {
			uint8_t *p = e->hva + (gva & (VMMU_PAGE_SIZE - 1));

			if (kind == VMMU_SOFT_WRITE)
				guest_copy(p, data, size, true);
			else
				guest_copy(data, p, size, false);
			walk_end(mv);
			sc->st.tlb_hits++;
			if (res)
				res->tlb_hit = loops == 0;
			return VMMU_SOFT_OK;
		}
		sc->st.walks++;
		step = translate(sc, root, gva, kind, cpl, &hw, &gpa, &outcome, res);
		if (step == STEP_DONE) {
			if (kind == VMMU_SOFT_WRITE)
				guest_copy(hw.hva, data, size, true);
			else
				guest_copy(data, hw.hva, size, false);
			if (e->tag != tag) {
				e->tag = tag;
				e->rights = 0;
			}
			e->hva = hw.hva - (gva & (VMMU_PAGE_SIZE - 1));
			/* with guest paging only the access just checked is known to pass both stages (a write implies a read) */
			e->rights |= sc->guest ? hw.rights & (need | (need == TLB_W ? TLB_R : 0)) : hw.rights;
			walk_end(mv);
			return VMMU_SOFT_OK;
		}
		walk_end(mv);
		/* A fault invalidates the TLB entries of the address. */
		tlb_drop(sc, gva);
		if (step == STEP_GUEST) {
			if (outcome == VMMU_SOFT_PAGE_FAULT)
				sc->st.page_faults++;
			return outcome;
		}
		if (svm->bypass && !(hw.ec & VMMU_PFERR_PRESENT)) {
			/* PFEC_MASK = PFEC_MATCH = P: a P=0 #PF goes to the guest, no exit */
			sc->st.pf_bypassed++;
			sc->st.page_faults++;
			if (res) {
				res->error_code = hw.ec;
				res->cr2 = gva;
			}
			return VMMU_SOFT_PAGE_FAULT;
		}
		if (hw.ec & VMMU_PFERR_RSVD)
			sc->st.ept_misconfigs++;
		else
			sc->st.ept_violations++;
		if (res)
			res->exits++;
		r = vmmu_mmu_page_fault(mv, gpa, hw.ec, &fr);
		if (r < 0)
			return r;
		switch (r) {
		case VMMU_FAULT_EMULATE_MMIO:
			return do_mmio(sc, fr.gpa, size, kind, data, res);
		case VMMU_FAULT_RING_FULL:
			return VMMU_SOFT_DIRTY_RING_FULL;
		case VMMU_FAULT_EMULATE_WRITE:
			/* a write to a shadowed guest table: the emulator does it through the MMU */
			sc->st.pt_writes++;
			r = vmmu_mmu_write_gpa(mv, fr.gpa, data, size);
			return r < 0 ? r : VMMU_SOFT_OK;
		case VMMU_FAULT_INJECT_PF:
			if (res) {
				res->error_code = fr.error_code;
				res->cr2 = gva;
			}
			sc->st.page_faults++;
			return VMMU_SOFT_PAGE_FAULT;
		default:
			break;
		}
	}
	log_err("soft: vCPU %u: access to 0x%llx keeps faulting", sc->base.id, (unsigned long long)gva);
	return -EFAULT;
}

int vmmu_soft_access(struct vmmu_vcpu *vcpu, vmmu_gva_t gva, unsigned int size, unsigned int kind, unsigned int cpl,
		     void *data, struct vmmu_soft_result *res)
{
	unsigned int first;
	int r;

	if (!vcpu || !data || !vmmu_vm_is_soft(vcpu->vm) || !size || size > 8 || kind > VMMU_SOFT_FETCH || cpl > 3) {
		log_err("soft: access: bad argument");
		return -EINVAL;
	}
	if (vcpu->destroyed) {
		log_err("soft: access: vCPU %u was destroyed", vcpu->id);
		return -EBADF;
	}
	if (res)
		memset(res, 0, sizeof(*res));
	first = (unsigned int)(VMMU_PAGE_SIZE - (gva & (VMMU_PAGE_SIZE - 1)));
	if (first >= size)
		return access_page(to_scpu(vcpu), gva, size, kind, cpl, data, res);
	r = access_page(to_scpu(vcpu), gva, first, kind, cpl, data, res);
	if (r)
		return r;
	return access_page(to_scpu(vcpu), gva + first, size - first, kind, cpl, (uint8_t *)data + first, res);
}

int vmmu_soft_invlpg(struct vmmu_vcpu *vcpu, vmmu_gva_t gva)
{
	if (!vcpu || !vmmu_vm_is_soft(vcpu->vm)) {
		log_err("soft: invlpg: not a soft vCPU");
		return -EINVAL;
	}
	tlb_drop(to_scpu(vcpu), gva);
	if (to_svm(vcpu->vm)->shadow)
		return vmmu_mmu_invlpg(to_scpu(vcpu)->mv, gva);
	return 0;
}

int vmmu_soft_set_mmio_handler(struct vmmu_vm *vm, vmmu_soft_mmio_fn fn, void *opaque)
{
	if (!vmmu_vm_is_soft(vm)) {
		log_err("soft: set_mmio_handler: not a soft VM");
		return -EINVAL;
	}
	to_svm(vm)->mmio_fn = fn;
	to_svm(vm)->mmio_opaque = opaque;
	return 0;
}

bool vmmu_vm_is_soft(const struct vmmu_vm *vm)
{
	return vm && vm->ops == &soft_vm_ops;
}

struct vmmu_mmu *vmmu_soft_mmu(struct vmmu_vm *vm)
{
	return vmmu_vm_is_soft(vm) ? to_svm(vm)->mmu : NULL;
}

int vmmu_soft_vcpu_stats(struct vmmu_vcpu *vcpu, struct vmmu_soft_stats *st)
{
	if (!vcpu || !st || !vmmu_vm_is_soft(vcpu->vm) || st->size < sizeof(*st)) {
		log_err("soft: vcpu_stats: bad argument");
		return -EINVAL;
	}
	*st = to_scpu(vcpu)->st;
	st->size = sizeof(*st);
	return 0;
}

/* ------------------------------------------------------------ VM ops */

int vmmu_soft_vm_create(struct vmmu_vm **out, const struct vmmu_vm_options *opts,
			const struct vmmu_mmu_options *mmu_opts)
{
	struct vmmu_mmu_options mo = { .size = sizeof(mo) };
	struct vmmu_vm_options o = { .size = sizeof(o) };
	struct soft_vm *svm;
	int ret;

	if (!out) {
		log_err("soft: create: NULL out");
		return -EINVAL;
	}
	*out = NULL;
	if (opts) {
		if (opts->size < sizeof(o) || opts->dirty_mode > VMMU_DIRTY_RING) {
			log_err("soft: create: bad VM options");
			return -EINVAL;
		}
		o = *opts;
	}
	if (mmu_opts) {
		if (mmu_opts->size < sizeof(mo)) {
			log_err("soft: create: MMU options size too small");
			return -EINVAL;
		}
		mo = *mmu_opts;
	}
	mo.dirty = o.dirty_mode == VMMU_DIRTY_RING ? VMMU_MMU_DIRTY_RING : VMMU_MMU_DIRTY_BITMAP;
	mo.ring_entries = o.dirty_mode == VMMU_DIRTY_RING ? (o.ring_entries ? o.ring_entries : 4096) : 0;
	if (o.flags & VMMU_VM_F_INITIALLY_SET)
		mo.flags |= VMMU_MMU_F_INITIALLY_SET;
	svm = calloc(1, sizeof(*svm));
	if (!svm)
		return -ENOMEM;
	ret = vmmu_mmu_create(&svm->mmu, &mo, &(struct vmmu_mmu_callbacks){ .flush_tlbs = soft_flush_tlbs, .opaque = svm });
	if (ret) {
		free(svm);
		return ret;
	}
	ret = vm_init(&svm->base, &soft_vm_ops, &o);
	if (ret) {
		vmmu_mmu_destroy(svm->mmu);
		free(svm);
		return ret;
	}
	pthread_rwlock_init(&svm->notifiers_lock, NULL);
	svm->base.caps.flags = VMMU_CAP_READONLY_MEM | VMMU_CAP_DIRTY_LOG | VMMU_CAP_DIRTY_MANUAL | VMMU_CAP_DIRTY_RING |
			       VMMU_CAP_DIRTY_RING_ACQ_REL | VMMU_CAP_NOTIFIER | VMMU_CAP_TRANSLATE;
	svm->base.caps.max_vcpus = 1024;
	svm->base.caps.max_memslots = VMMU_MEMSLOTS_MAX;
	svm->base.caps.max_ring_entries = 65536;
	svm->base.caps.maxphyaddr = svm->mmu->fmt.maxphyaddr;
	svm->shadow = mo.flags & VMMU_MMU_F_SHADOW;
	svm->bypass = mo.flags & VMMU_MMU_F_SHADOW_BYPASS;
	*out = &svm->base;
	return 0;
}

static int soft_create(struct vmmu_vm **out, const struct vmmu_vm_options *opts)
{
	return vmmu_soft_vm_create(out, opts, NULL);
}

static void soft_destroy(struct vmmu_vm *vm)
{
	struct soft_vm *svm = to_svm(vm);

	vmmu_mmu_destroy(svm->mmu);
	free(svm->notifiers);
	pthread_rwlock_destroy(&svm->notifiers_lock);
	vm_finish(vm);
	free(svm);
}

static int soft_memslot_set(struct vmmu_vm *vm, uint32_t id, vmmu_gpa_t gpa, uint64_t size, void *hva, uint32_t flags)
{
	return vmmu_mmu_memslot_set(to_svm(vm)->mmu, id, gpa, size, hva, flags);
}

static int soft_memslot_delete(struct vmmu_vm *vm, uint32_t id, vmmu_gpa_t gpa)
{
	(void)gpa;
	return vmmu_mmu_memslot_delete(to_svm(vm)->mmu, id);
}

static int soft_vcpu_create(struct vmmu_vm *vm, uint32_t id, struct vmmu_vcpu **out)
{
	struct soft_vcpu *sc = calloc(1, sizeof(*sc));
	int ret;

	if (!sc)
		return -ENOMEM;
	ret = vmmu_mmu_vcpu_create(to_svm(vm)->mmu, id, &sc->mv);
	if (ret) {
		free(sc);
		return ret;
	}
	sc->regs.rflags = 2;
	sc->sregs.cr0 = 0x60000010; /* reset value: CD, NW, ET */
	sc->tlb_gen_seen = atomic_load(&to_svm(vm)->tlb_gen);
	*out = &sc->base;
	return 0;
}

static void soft_vcpu_release(struct vmmu_vcpu *vcpu)
{
	struct soft_vcpu *sc = to_scpu(vcpu);

	vmmu_mmu_vcpu_destroy(sc->mv);
	sc->mv = NULL;
	vmmu_paging_destroy(sc->guest);
	sc->guest = NULL;
}

static void soft_vcpu_free(struct vmmu_vcpu *vcpu)
{
	free(to_scpu(vcpu));
}

static int soft_get_regs(struct vmmu_vcpu *vcpu, struct vmmu_regs *regs)
{
	*regs = to_scpu(vcpu)->regs;
	return 0;
}

static int soft_set_regs(struct vmmu_vcpu *vcpu, const struct vmmu_regs *regs)
{
	to_scpu(vcpu)->regs = *regs;
	return 0;
}

static int soft_get_sregs(struct vmmu_vcpu *vcpu, struct vmmu_sregs *sregs)
{
	*sregs = to_scpu(vcpu)->sregs;
	return 0;
}

/* A load of CR0/CR3/CR4/EFER: a new guest paging context and (no PCID) an empty TLB. */
static int soft_set_sregs(struct vmmu_vcpu *vcpu, const struct vmmu_sregs *sregs)
{
	struct soft_vcpu *sc = to_scpu(vcpu);
	struct vmmu_paging *ctx = NULL;

	if (sregs->cr0 & VMMU_CR0_PG) {
		struct vmmu_paging_regs pr = {
			.cr0 = sregs->cr0, .cr3 = sregs->cr3, .cr4 = sregs->cr4, .efer = sregs->efer,
			.rflags = sc->regs.rflags, .maxphyaddr = sc->mv->mmu->fmt.maxphyaddr,
		};
		int ret = vmmu_paging_create(&ctx, sc->mv->mmu->slots, &pr);

		if (ret)
			return ret;
	}
	if (to_svm(vcpu->vm)->shadow) {
		struct vmmu_paging_regs pr = {
			.cr0 = sregs->cr0, .cr3 = sregs->cr3, .cr4 = sregs->cr4, .efer = sregs->efer,
			.rflags = sc->regs.rflags, .maxphyaddr = sc->mv->mmu->fmt.maxphyaddr,
		};
		int ret = vmmu_mmu_vcpu_set_guest(sc->mv, &pr);

		if (ret) {
			vmmu_paging_destroy(ctx);
			return ret;
		}
	}
	if (sregs->cr0 != sc->sregs.cr0 || sregs->cr3 != sc->sregs.cr3 || sregs->cr4 != sc->sregs.cr4 ||
	    sregs->efer != sc->sregs.efer)
		tlb_clear(sc);
	vmmu_paging_destroy(sc->guest);
	sc->guest = ctx;
	sc->sregs = *sregs;
	return 0;
}

static int soft_run(struct vmmu_vcpu *vcpu, struct vmmu_exit *exit)
{
	(void)exit;
	log_err("soft: vCPU %u: the software machine executes no instructions; use vmmu_soft_access()", vcpu->id);
	return -EOPNOTSUPP;
}

static int soft_dirty_log_get(struct vmmu_vm *vm, uint32_t id, uint64_t npages, uint64_t *bitmap)
{
	int64_t n;

	(void)npages;
	if (vm->opts.dirty_mode == VMMU_DIRTY_MANUAL)
		n = vmmu_mmu_dirty_log_peek(to_svm(vm)->mmu, id, bitmap);
	else
		n = vmmu_mmu_dirty_log_get(to_svm(vm)->mmu, id, bitmap);
	return n < 0 ? (int)n : 0;
}

static int soft_dirty_log_clear(struct vmmu_vm *vm, uint32_t id, uint64_t first, uint64_t npages,
				const uint64_t *bitmap)
{
	int64_t n = vmmu_mmu_dirty_log_clear(to_svm(vm)->mmu, id, first, npages, bitmap);

	return n < 0 ? (int)n : 0;
}

static int soft_dirty_ring_harvest(struct vmmu_vcpu *vcpu)
{
	struct vmmu_dirty_gfn buf[256];
	int total = 0, n;

	do {
		n = vmmu_mmu_vcpu_dirty_harvest(to_scpu(vcpu)->mv, buf, ARRAY_SIZE(buf));
		for (int i = 0; i < n; i++)
			dirty_slot_set_ring(vcpu->vm, buf[i].slot & 0xffff, buf[i].offset);
		total += n > 0 ? n : 0;
	} while (n == (int)ARRAY_SIZE(buf));
	return n < 0 ? n : total;
}

static int soft_dirty_ring_reset(struct vmmu_vm *vm)
{
	return vmmu_mmu_dirty_ring_reset(to_svm(vm)->mmu);
}

static int soft_notifier_add(struct vmmu_vm *vm, const struct vmmu_notifier *n)
{
	struct soft_vm *svm = to_svm(vm);
	struct vmmu_notifier *p;
	int ret = 0;

	if (n->flags & VMMU_NOTIFIER_PIO) {
		log_err("soft: notifiers on I/O ports are not modelled (the machine has no port I/O)");
		return -EOPNOTSUPP;
	}
	pthread_rwlock_wrlock(&svm->notifiers_lock);
	for (unsigned int i = 0; i < svm->nr_notifiers; i++) {
		const struct vmmu_notifier *o = &svm->notifiers[i];

		if (o->addr == n->addr && o->len == n->len && o->flags == n->flags && o->datamatch == n->datamatch) {
			ret = -EEXIST;
			goto out;
		}
	}
	p = realloc(svm->notifiers, (svm->nr_notifiers + 1) * sizeof(*p));
	if (!p) {
		ret = -ENOMEM;
		goto out;
	}
	p[svm->nr_notifiers++] = *n;
	svm->notifiers = p;
out:
	pthread_rwlock_unlock(&svm->notifiers_lock);
	return ret;
}

static int soft_notifier_remove(struct vmmu_vm *vm, const struct vmmu_notifier *n)
{
	struct soft_vm *svm = to_svm(vm);
	int ret = -ENOENT;

	pthread_rwlock_wrlock(&svm->notifiers_lock);
	for (unsigned int i = 0; i < svm->nr_notifiers; i++) {
		const struct vmmu_notifier *o = &svm->notifiers[i];

		if (o->addr == n->addr && o->len == n->len && o->flags == n->flags && o->datamatch == n->datamatch &&
		    o->fd == n->fd) {
			svm->notifiers[i] = svm->notifiers[--svm->nr_notifiers];
			ret = 0;
			break;
		}
	}
	pthread_rwlock_unlock(&svm->notifiers_lock);
	return ret;
}

const struct vm_ops soft_vm_ops = {
	.name = "soft",
	.create = soft_create,
	.destroy = soft_destroy,
	.memslot_set = soft_memslot_set,
	.memslot_delete = soft_memslot_delete,
	.vcpu_create = soft_vcpu_create,
	.vcpu_release = soft_vcpu_release,
	.vcpu_free = soft_vcpu_free,
	.get_regs = soft_get_regs,
	.set_regs = soft_set_regs,
	.get_sregs = soft_get_sregs,
	.set_sregs = soft_set_sregs,
	.run = soft_run,
	.dirty_log_get = soft_dirty_log_get,
	.dirty_log_clear = soft_dirty_log_clear,
	.dirty_ring_harvest = soft_dirty_ring_harvest,
	.dirty_ring_reset = soft_dirty_ring_reset,
	.notifier_add = soft_notifier_add,
	.notifier_remove = soft_notifier_remove,
};
