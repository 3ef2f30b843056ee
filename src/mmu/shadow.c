/* SPDX-License-Identifier: MIT */
/*
 * Shadow paging (VMMU_MMU_F_SHADOW): the MMU builds tables that map guest
 * virtual addresses, derived from the guest's own page tables.
 *
 * Faults. A fault arrives with a GVA and the hardware #PF error code. The
 * guest's tables are walked with the libvmmu walker over the vCPU's paging
 * context (vmmu_mmu_vcpu_set_guest()): a guest fault is handed back as
 * INJECT_PF with the walker's exact error code; otherwise the walk sets the
 * guest A/D bits (only on success) and the MMU descends its own tables from
 * the vCPU's root, creating on the way one shadow page per guest table,
 * keyed by the guest table's gfn and a role (level, inherited access, CR0.WP,
 * SMEP/SMAP-and-not-WP, EFER.NX), and direct pages below a guest huge page
 * (the host maps it with 4 KiB leaves). Before following a guest entry the
 * MMU re-reads it (under the lock, after the table is write-protected): a
 * changed entry means another vCPU raced with the walk, and the fault is
 * retried. The leaf gets the accumulated guest access, minus W while the
 * guest's D bit is clear (so the first write faults and sets D), minus W on a
 * gfn that holds a shadowed guest table; with CR0.WP = 0 a supervisor write to
 * a read-only page gets a supervisor-only writable leaf (not executable under
 * SMEP), as KVM does. No lockless fast path: the gfn behind a GVA can change.
 *
 * Write tracking. A gfn shadowed by at least one indirect page is counted in
 * its slot's write_track array; the first count write-protects every SPTE
 * that maps it (clearing MMU-writable, and flushing before the MMU lock is
 * dropped whenever MMU-writable was set: a dirty-log protection may have left
 * a writable TLB entry behind). Level-1 tables are tracked too: there is no
 * unsync, so every guest page-table write faults and is emulated
 * (VMMU_FAULT_EMULATE_WRITE, then vmmu_mmu_write_gpa()), which zaps the
 * SPTEs made from the written entry, or the whole shadow page for a
 * misaligned write, or for the third write in a row to a level > 1 table with
 * no walk through it in between (KVM's write-flooding rule; level-1 pages
 * are exempt as in KVM).
 *
 * Bypass (VMMU_MMU_F_SHADOW_BYPASS, the 2007 trick): a cleared SPTE holds the
 * "trap" value (P=1 and reserved physical-address bits: a P=1|RSVD #PF, which
 * exits), except where the guest entry itself is not present, which holds
 * VMMU_SPTE_NONPRESENT ("notrap": a P=0 #PF a backend filtering on P=1 hands
 * straight to the guest, and the error code is the guest's).
 *
 * Guest modes: 4-level and 5-level (the MMU's level count), PAE on 4-level
 * tables, and paging off (an identity map through direct pages). A PAE guest's
 * root is a passthrough page (role.passthrough) whose entry 0 points at a
 * second passthrough page standing for the four PDPTE registers; those are
 * loaded at the CR3 load (as MOV CR3 does) and not write tracked, so the root
 * is keyed by CR3 and the register values together: vCPUs share it only while
 * their registers agree (the entries are also rechecked whenever the root is
 * loaded). 32-bit guests are refused.
 */

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "mmu_internal.h"

#define SHADOWED_CACHE_MIN 8 /* per-page gfn arrays a fault may need: one per level, with margin */
#define FLOOD_LIMIT 3
#define GPTE_P (1ULL << 0)
#define GPTE_W (1ULL << 1)
#define GPTE_U (1ULL << 2)
#define GPTE_D (1ULL << 6)
#define GPTE_NX (1ULL << 63)
#define GPTE_ADDR 0x000ffffffffff000ULL

bool mmu_debug_wrprot_flush_on_w;

/* The vCPU's guest paging state (vmmu_mmu_vcpu.guest). */
struct shadow_vcpu {
	struct vmmu_paging *ctx;  /* NULL: paging off */
	struct vmmu_paging_regs regs;  /* PAE: with the PDPTE registers loaded (VMMU_PAGING_F_PDPTRS) */
	int levels;               /* the guest's: 3 (PAE), 4, 5 */
	unsigned int nr_shadowed;
	uint64_t *shadowed[SHADOWED_CACHE_MIN];
};

static inline struct shadow_vcpu *to_sv(struct vmmu_mmu_vcpu *v) { return v->guest; }

/* ------------------------------------------------------------ options */

bool shadow_options_valid(const struct vmmu_mmu_options *o)
{
	if (!(o->flags & VMMU_MMU_F_SHADOW)) {
		if (o->flags & VMMU_MMU_F_SHADOW_BYPASS) {
			log_err("mmu: SHADOW_BYPASS without SHADOW");
			return false;
		}
		return true;
	}
	if (o->mode != VMMU_PAGING_4LEVEL && o->mode != VMMU_PAGING_5LEVEL) {
		log_err("mmu: shadow paging builds 4LEVEL or 5LEVEL tables (mode %u)", o->mode);
		return false;
	}
	if ((o->flags & VMMU_MMU_F_SHADOW_BYPASS) && o->maxphyaddr > 50) {
		log_err("mmu: SHADOW_BYPASS needs a reserved physical-address bit below 51 (MAXPHYADDR <= 50)");
		return false;
	}
	return true;
}

void shadow_init(struct vmmu_mmu *mmu)
{
	mmu->shadow = mmu->opts.flags & VMMU_MMU_F_SHADOW;
	mmu->nonpresent = VMMU_SPTE_NONPRESENT;
	/* P, NX, PA bits 50..MAXPHYADDR: reserved at every level, never MMU-present, not MMIO (bit 51 clear) */
	if (mmu->opts.flags & VMMU_MMU_F_SHADOW_BYPASS)
		mmu->nonpresent = VMMU_SPTE_NONPRESENT | VMMU_SPTE_LEGACY_P |
				  (((1ULL << 51) - 1) & ~((1ULL << mmu->opts.maxphyaddr) - 1));
}

/* --------------------------------------------------------- vCPU state */

int shadow_topup(struct vmmu_mmu_vcpu *v)
{
	struct shadow_vcpu *sv = to_sv(v);

	if (!sv) {
		sv = mmu_alloc(sizeof(*sv));
		if (!sv)
			return -ENOMEM;
		v->guest = sv;
	}
	while (sv->nr_shadowed < SHADOWED_CACHE_MIN) {
		uint64_t *p = mmu_alloc(MMU_SPTES * sizeof(uint64_t));

		if (!p)
			return -ENOMEM;
		sv->shadowed[sv->nr_shadowed++] = p;
	}
	return 0;
}

void shadow_vcpu_free(struct vmmu_mmu_vcpu *v)
{
	struct shadow_vcpu *sv = to_sv(v);

	if (!sv)
		return;
	while (sv->nr_shadowed)
		free(sv->shadowed[--sv->nr_shadowed]);
	vmmu_paging_destroy(sv->ctx);
	free(sv);
	v->guest = NULL;
}

/* ------------------------------------------------------------- pages */

static inline uint64_t *guest_table(struct vmmu_mmu *mmu, vmmu_gfn_t gfn)
{
	struct mmu_slot *s = mmu_slot_of(mmu, gfn);

	return s ? (uint64_t *)(s->hva + ((gfn - s->base_gfn) << VMMU_PAGE_SHIFT)) : NULL;
}

static inline uint64_t gpte_read(const uint64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

/*
 * The cleared value for an SPTE of @sp whose guest entry is @gpte: with
 * bypass, notrap if that entry is not present, but only in pages of guests
 * with EFER.NXE (role.efer_nx): the hardware runs with NX on and reports
 * fetches in the error code, which a guest without NXE (and without SMEP)
 * does not expect, so there every fault must exit and be reflected exactly.
 */
static inline uint64_t cleared_for(const struct vmmu_mmu *mmu, const struct mmu_page *sp, uint64_t gpte)
{
	return (gpte & GPTE_P) || !sp->role.efer_nx ? mmu->nonpresent : VMMU_SPTE_NONPRESENT;
}

/* A new page's SPTEs: cleared values; with bypass, notrap where the guest entry is not present. */
static void fill_new_page(struct vmmu_mmu *mmu, struct mmu_page *sp)
{
	uint64_t *spt = mmu_page_spt(sp), *gt;

	if (mmu->nonpresent == VMMU_SPTE_NONPRESENT)
		return;
	gt = sp->role.direct ? NULL : guest_table(mmu, sp->gfn);
	for (int i = 0; i < MMU_SPTES; i++)
		spt[i] = gt ? cleared_for(mmu, sp, gpte_read(&gt[i])) : mmu->nonpresent;
}

/* Count @sp's guest table as shadowed; the first count write-protects the gfn (flushing before unlock). */
static void account_page(struct vmmu_mmu *mmu, struct mmu_page *sp)
{
	struct mmu_slot *s = mmu_slot_of(mmu, sp->gfn);

	if (!s || !s->write_track)
		return;
	if (s->write_track[sp->gfn - s->base_gfn]++ == 0)
		mmu_wrprot_gfn_for_shadowing(mmu, s, sp->gfn);
}

void shadow_unaccount_page(struct vmmu_mmu *mmu, struct mmu_page *sp)
{
	struct mmu_slot *s = mmu_slot_of(mmu, sp->gfn);

	if (s && s->write_track && s->write_track[sp->gfn - s->base_gfn])
		s->write_track[sp->gfn - s->base_gfn]--;
}

static inline void flood_reset(struct mmu_page *sp) { sp->priv = NULL; }
static inline unsigned int flood_inc(struct mmu_page *sp)
{
	sp->priv = (void *)((uintptr_t)sp->priv + 1);
	return (unsigned int)(uintptr_t)sp->priv;
}

/* Find or create the page (@gfn, @role) from @v's caches; under lock. NULL: a cache is empty. */
static struct mmu_page *get_page(struct vmmu_mmu_vcpu *v, vmmu_gfn_t gfn, union mmu_role role)
{
	struct shadow_vcpu *sv = to_sv(v);
	struct mmu_page *sp;
	bool created;

	if (!role.direct && (!sv || !sv->nr_shadowed))
		return NULL;
	sp = mmu_get_page(v, gfn, role, &created);
	if (!sp || !created)
		return sp;
	if (!role.direct) {
		sp->shadowed = sv->shadowed[--sv->nr_shadowed];
		account_page(v->mmu, sp);
	}
	fill_new_page(v->mmu, sp);
	return sp;
}

/* ------------------------------------------------------------- roots */

/* The role of the root for the vCPU's current registers (gfn 0 and a direct role with paging off). */
static union mmu_role root_role(struct vmmu_mmu_vcpu *v, vmmu_gfn_t *gfn)
{
	struct shadow_vcpu *sv = to_sv(v);
	union mmu_role r = { 0 };

	r.level = v->mmu->root_level;
	r.access = VMMU_ACC_ALL;
	r.efer_nx = 1;
	*gfn = 0;
	if (!sv || !sv->ctx) {
		r.direct = 1;
		r.cr0_wp = 1;
		return r;
	}
	r.efer_nx = !!(sv->regs.efer & VMMU_EFER_NXE); /* the guest's (KVM forces 1): see cleared_for() */
	r.cr0_wp = !!(sv->regs.cr0 & VMMU_CR0_WP);
	r.smep_andnot_wp = (sv->regs.cr4 & VMMU_CR4_SMEP) && !r.cr0_wp;
	r.smap_andnot_wp = (sv->regs.cr4 & VMMU_CR4_SMAP) && !r.cr0_wp;
	*gfn = (sv->regs.cr3 & GPTE_ADDR) >> VMMU_PAGE_SHIFT;
	if (sv->levels == 3) {
		uint64_t key = (sv->regs.cr3 & 0xffffffe0u) >> 5;

		r.direct = 1;
		r.passthrough = 1;
		for (int i = 0; i < 4; i++)
			key = (key ^ sv->regs.pdptrs[i]) * 0x9e3779b97f4a7c15ULL;
		*gfn = key;
	}
	return r;
}

/* Drop the PDPTE-level SPTEs of a PAE root that no longer match the vCPU's PDPTE registers. */
static void pae_recheck(struct vmmu_mmu *mmu, const struct shadow_vcpu *sv, struct mmu_page *root)
{
	uint64_t top = spte_get(&mmu_page_spt(root)[0]), *pdpt;

	if (!(top & VMMU_SPTE_MMU_PRESENT))
		return;
	pdpt = spte_to_child(top);
	for (int i = 0; i < 4; i++) {
		uint64_t spte = spte_get(&pdpt[i]), pdpte = sv->regs.pdptrs[i];

		if ((spte & VMMU_SPTE_MMU_PRESENT) &&
		    (!(pdpte & GPTE_P) ||
		     mmu_page_of(spte_to_child(spte))->gfn != (pdpte & GPTE_ADDR) >> VMMU_PAGE_SHIFT))
			mmu_zap_spte(mmu, &pdpt[i]);
	}
}

int shadow_load_root(struct vmmu_mmu_vcpu *v)
{
	struct vmmu_mmu *mmu = v->mmu;
	union mmu_role role;
	struct mmu_page *root;
	vmmu_gfn_t gfn;

	role = root_role(v, &gfn);
	if (v->root && !v->root->role.invalid && v->root->gfn == gfn && v->root->role.word == role.word)
		return 0;
	root = get_page(v, gfn, role);
	if (!root)
		return -ENOMEM;
	if (v->root)
		mmu_put_root(mmu, v->root);
	root->root_count++;
	flood_reset(root);
	v->root = root;
	if (role.passthrough)
		pae_recheck(mmu, to_sv(v), root);
	return 0;
}

int vmmu_mmu_vcpu_set_guest(struct vmmu_mmu_vcpu *v, const struct vmmu_paging_regs *regs)
{
	struct vmmu_paging *ctx = NULL, *old;
	struct vmmu_paging_regs r = { 0 };
	struct vmmu_mmu *mmu;
	struct shadow_vcpu *sv;
	int ret, levels = 0;

	if (!v || !regs) {
		log_err("mmu: vcpu_set_guest: NULL argument");
		return -EINVAL;
	}
	mmu = v->mmu;
	if (!mmu->shadow) {
		log_err("mmu: vcpu_set_guest: not a shadow-paging MMU");
		return -EOPNOTSUPP;
	}
	if (regs->cr0 & VMMU_CR0_PG) {
		enum vmmu_paging_mode want = mmu->root_level == 5 ? VMMU_PAGING_5LEVEL : VMMU_PAGING_4LEVEL, mode;

		r = *regs;
		ret = vmmu_paging_create(&ctx, mmu->slots, &r);
		if (ret)
			return ret;
		mode = vmmu_paging_get_mode(ctx);
		if ((mode != want && (mode != VMMU_PAGING_PAE || mmu->root_level != 4)) ||
		    (mode != VMMU_PAGING_PAE && (regs->cr4 & VMMU_CR4_PKE))) {
			log_err("mmu: vcpu_set_guest: this MMU shadows %d-level guests without protection keys%s",
				mmu->root_level, mmu->root_level == 4 ? " and PAE guests" : "");
			vmmu_paging_destroy(ctx);
			return -EOPNOTSUPP;
		}
		levels = mode == VMMU_PAGING_PAE ? 3 : mmu->root_level;
		if (levels == 3 && !(r.flags & VMMU_PAGING_F_PDPTRS)) {
			/* the PDPTE registers the load just read (the context keeps them): the MMU needs them */
			vmmu_paging_destroy(ctx);
			ctx = NULL;
			if (vmmu_memslots_read(mmu->slots, r.cr3 & 0xffffffe0u, r.pdptrs, sizeof(r.pdptrs)))
				return -EFAULT;
			r.flags |= VMMU_PAGING_F_PDPTRS;
			ret = vmmu_paging_create(&ctx, mmu->slots, &r);
			if (ret)
				return ret;
		}
	}
	ret = mmu_topup_caches(v, 0);
	if (ret) {
		vmmu_paging_destroy(ctx);
		return ret;
	}
	sv = to_sv(v);
	pthread_mutex_lock(&mmu->lock);
	old = sv->ctx;
	sv->ctx = ctx;
	sv->regs = ctx ? r : *regs;
	sv->levels = levels;
	if (v->root)
		mmu_put_root(mmu, v->root);
	v->root = NULL;
	pthread_mutex_unlock(&mmu->lock);
	mmu_flush_commit(mmu);
	vmmu_paging_destroy(old);
	return 0;
}

/* ------------------------------------------------------------- faults */

/* What the fault path needs from the guest walk. */
struct gwalk {
	bool paging;
	bool pae;                                /* levels 4 and 3 of the tables are passthrough pages */
	int level;                               /* guest leaf level (paging off: root_level + 1) */
	vmmu_gpa_t gpa;
	unsigned int access;                     /* effective access */
	unsigned int acc[VMMU_WALK_MAX_LEVELS];  /* access accumulated through the entry at level L, in [L - 1] */
	uint64_t gpte[VMMU_WALK_MAX_LEVELS];
	vmmu_gpa_t gpte_gpa[VMMU_WALK_MAX_LEVELS];
};

static unsigned int gpte_access(uint64_t gpte, bool nxe)
{
	return ((gpte & GPTE_W) ? VMMU_ACC_WRITE : 0) | ((gpte & GPTE_U) ? VMMU_ACC_USER : 0) |
	       ((nxe && (gpte & GPTE_NX)) ? 0 : VMMU_ACC_EXEC);
}

/* Walk the guest tables (A/D set on success); marks table pages whose entries the walk changed dirty. */
static int guest_walk(struct vmmu_mmu_vcpu *v, vmmu_gva_t gva, uint64_t ec, struct gwalk *g,
		      struct vmmu_fault_result *res)
{
	struct vmmu_mmu *mmu = v->mmu;
	struct shadow_vcpu *sv = to_sv(v);
	uint32_t acc = (uint32_t)(ec & (VMMU_PFERR_WRITE | VMMU_PFERR_USER | VMMU_PFERR_FETCH));
	struct vmmu_walk_result w0, w;
	unsigned int a = VMMU_ACC_ALL;
	int r, top = sv && sv->ctx ? sv->levels : mmu->root_level;

	if (!sv || !sv->ctx) {
		g->paging = false;
		g->pae = false;
		g->level = top + 1;
		g->gpa = gva;
		g->access = VMMU_ACC_ALL;
		return VMMU_FAULT_FIXED;
	}
	r = vmmu_walk(sv->ctx, gva, acc | VMMU_WALK_NO_AD, &w0);
	if (r == VMMU_WALK_OK)
		r = vmmu_walk(sv->ctx, gva, acc, &w);
	else
		w = w0;
	if (r < 0)
		return r == -ELOOP ? VMMU_FAULT_RETRY : r;
	if (r == VMMU_WALK_PAGE_FAULT) {
		res->error_code = w.error_code;
		return VMMU_FAULT_INJECT_PF;
	}
	if (r != VMMU_WALK_OK) {
		log_err("mmu: shadow fault on 0x%llx: the guest walk says #GP (the backend must raise it)",
			(unsigned long long)gva);
		return -EFAULT;
	}
	g->paging = true;
	g->pae = top == 3;
	g->level = w.level;
	g->gpa = w.gpa;
	g->access = w.access;
	for (int l = top; l >= w.level; l--) {
		bool nxe = sv->regs.efer & VMMU_EFER_NXE;

		g->gpte[l - 1] = w.gpte[l - 1];
		g->gpte_gpa[l - 1] = w.gpte_gpa[l - 1];
		if (top != 3 || l != 3) /* a PAE PDPTE has no permission bits */
			a &= gpte_access(w.gpte[l - 1], nxe);
		g->acc[l - 1] = a;
		/* A/D the walk set: the table page was written */
		if (w.gpte[l - 1] != w0.gpte[l - 1]) {
			struct mmu_slot *s = mmu_slot_of(mmu, w.gpte_gpa[l - 1] >> VMMU_PAGE_SHIFT);

			if (s)
				mmu_mark_dirty(mmu, v, s, w.gpte_gpa[l - 1] >> VMMU_PAGE_SHIFT);
		}
	}
	return VMMU_FAULT_FIXED;
}

/* Is the guest entry the walk followed at @level still what it read? (After its table became tracked.) */
static bool gpte_unchanged(struct vmmu_mmu *mmu, const struct gwalk *g, int level)
{
	vmmu_gpa_t gpa = g->gpte_gpa[level - 1];
	uint64_t *gt = guest_table(mmu, gpa >> VMMU_PAGE_SHIFT);

	return gt && gpte_read(&gt[(gpa & 4095) / 8]) == g->gpte[level - 1];
}

/*
 * The leaf access for the fault: protect_clean_gpte, and the CR0.WP = 0 rule
 * (hardware runs with WP on): a supervisor write to a page the guest maps
 * read-only gets a supervisor-only writable leaf, not executable under SMEP.
 * Under SMAP that leaf would let supervisor reads with AC clear through, and
 * below a guest huge page it would sit in a direct page shared with other
 * guest entries whose D bit it would never set; there the write is emulated
 * instead (*@emulate) and the leaf stays as the guest maps it.
 */
static unsigned int leaf_access(struct vmmu_mmu_vcpu *v, const struct gwalk *g, uint64_t ec, bool *emulate)
{
	struct shadow_vcpu *sv = to_sv(v);
	unsigned int acc = g->access;

	*emulate = false;
	if (!g->paging)
		return acc;
	if ((ec & VMMU_PFERR_WRITE) && !(ec & VMMU_PFERR_USER) && !(sv->regs.cr0 & VMMU_CR0_WP) &&
	    !(acc & VMMU_ACC_WRITE)) {
		if ((sv->regs.cr4 & VMMU_CR4_SMAP) || g->level > 1) {
			*emulate = true;
		} else {
			acc = (acc | VMMU_ACC_WRITE) & ~VMMU_ACC_USER;
			if (sv->regs.cr4 & VMMU_CR4_SMEP)
				acc &= ~VMMU_ACC_EXEC;
		}
	}
	if (!(g->gpte[g->level - 1] & GPTE_D))
		acc &= ~VMMU_ACC_WRITE;
	return acc;
}

/* Install the 4 KiB leaf for the fault at *@sptep (page @sp). Under lock. */
static int map_leaf(struct vmmu_mmu_vcpu *v, struct mmu_page *sp, uint64_t *sptep, const struct gwalk *g,
		    uint64_t ec, struct vmmu_fault_result *res)
{
	struct vmmu_mmu *mmu = v->mmu;
	const struct vmmu_spte_format *fmt = &mmu->fmt;
	vmmu_gfn_t gfn = g->gpa >> VMMU_PAGE_SHIFT;
	struct mmu_slot *s = mmu_slot_of(mmu, gfn);
	bool write = ec & VMMU_PFERR_WRITE;
	unsigned int flags = 0, acc;
	uint64_t old, spte;
	bool emulate;
	int made, ret;

	acc = leaf_access(v, g, ec, &emulate);

	res->gpa = g->gpa;
	if (!s)
		return VMMU_FAULT_EMULATE_MMIO; /* no MMIO SPTEs in shadow mode: every access exits */
	if (!(s->flags & VMMU_MEMSLOT_READONLY))
		flags |= VMMU_SPTE_HOST_WRITABLE;
	else if (write)
		return VMMU_FAULT_EMULATE_MMIO;
	if (!mmu_gfn_write_tracked(s, gfn))
		flags |= VMMU_SPTE_CAN_WRITE;
	made = vmmu_spte_make_leaf(fmt, ((uintptr_t)s->hva >> VMMU_PAGE_SHIFT) + (gfn - s->base_gfn), 1, acc,
				   VMMU_SPTE_MT_WB, flags, &spte);
	if (made < 0)
		return made;
	/* A read in a logging slot: W comes with the first write fault, which logs it. */
	if (!write && (s->flags & VMMU_MEMSLOT_LOG_DIRTY))
		spte = vmmu_spte_wrprot_for_dirty_log(fmt, spte);
	old = spte_get(sptep);
	if ((old & VMMU_SPTE_MMU_PRESENT) && vmmu_spte_to_pfn(fmt, old) != vmmu_spte_to_pfn(fmt, spte)) {
		mmu_zap_spte(mmu, sptep);
		old = spte_get(sptep);
	}
	if (old & VMMU_SPTE_MMU_PRESENT)
		spte |= old & (fmt->accessed | fmt->dirty);
	if (sp->shadowed)
		sp->shadowed[sptep_index(sptep)] = gfn << VMMU_PAGE_SHIFT | acc;
	if (spte != old) {
		ret = mmu_set_leaf(mmu, sptep, 1, gfn, spte, v->rmap_cache);
		if (ret < 0)
			return ret == -ENOMEM ? -EAGAIN : ret;
		if (spte & VMMU_SPTE_WRITABLE)
			mmu_mark_dirty(mmu, v, s, gfn);
		atomic_fetch_add_explicit(&mmu->stat_mapped[0], 1, memory_order_relaxed);
	}
	if (write && (made == VMMU_SPTE_WRPROT || emulate))
		return VMMU_FAULT_EMULATE_WRITE; /* a write to a shadowed guest table, or WP = 0 under SMAP */
	return spte == old ? VMMU_FAULT_SPURIOUS : VMMU_FAULT_FIXED;
}

/* Descend from the root to the leaf of @gva, building what is missing. Under lock. -EAGAIN: refill. */
static int fetch(struct vmmu_mmu_vcpu *v, vmmu_gva_t gva, const struct gwalk *g, uint64_t ec,
		 struct vmmu_fault_result *res)
{
	struct vmmu_mmu *mmu = v->mmu;
	struct mmu_page *sp;
	int ret, level;

	ret = mmu_load_root(v);
	if (ret)
		return ret == -ENOMEM ? -EAGAIN : ret;
	sp = v->root;
	if (g->paging && !g->pae && sp->gfn != g->gpte_gpa[mmu->root_level - 1] >> VMMU_PAGE_SHIFT)
		return VMMU_FAULT_RETRY; /* CR3 changed under the walk */
	for (level = mmu->root_level; level > 1; level--) {
		uint64_t *sptep = &mmu_page_spt(sp)[spte_index(gva, level)], spte;
		union mmu_role role = sp->role;
		struct mmu_page *child;
		vmmu_gfn_t gfn;

		flood_reset(sp);
		if (g->paging && level >= g->level && !(g->pae && level >= 3) && !gpte_unchanged(mmu, g, level))
			return VMMU_FAULT_RETRY; /* the guest changed the entry after the walk read it */
		role.level = level - 1;
		if (g->pae && level == 4) {
			/* PAE: the PDPTE registers' stand-in, same key as the root */
			gfn = sp->gfn;
		} else if (g->pae && level == 3) {
			/* PAE: a PDPTE register points at a guest PD */
			gfn = (g->gpte[2] & GPTE_ADDR) >> VMMU_PAGE_SHIFT;
			role.access = VMMU_ACC_ALL;
			role.direct = 0;
			role.passthrough = 0;
		} else if (level > g->level) {
			/* a guest table: the entry at @level points at it */
			gfn = (g->gpte[level - 1] & GPTE_ADDR) >> VMMU_PAGE_SHIFT;
			role.access = g->acc[level - 1];
			role.direct = 0;
		} else if (level == g->level) {
			/*
			 * A guest huge page: direct pages below, with the leaf's access,
			 * without W while its D is clear (protect_clean_gpte), so that
			 * direct pages shared by several guest entries never let a write
			 * through one of them skip setting its D.
			 */
			gfn = (g->gpa >> VMMU_PAGE_SHIFT) & ~(level_pages(level) - 1);
			role.access = g->acc[level - 1];
			if (!(g->gpte[level - 1] & GPTE_D))
				role.access &= ~VMMU_ACC_WRITE;
			role.direct = 1;
		} else {
			gfn = mmu_page_entry_gfn(sp, spte_index(gva, level));
		}
		spte = spte_get(sptep);
		if (spte & VMMU_SPTE_MMU_PRESENT) {
			child = mmu_page_of(spte_to_child(spte));
			if (child->gfn == gfn && child->role.word == role.word) {
				sp = child;
				continue;
			}
			/* another child now: a guest huge page became dirty, or the PDPTE registers changed */
			mmu_zap_spte(mmu, sptep);
		}
		child = get_page(v, gfn, role);
		if (!child)
			return -EAGAIN;
		if (sp->shadowed)
			sp->shadowed[sptep_index(sptep)] = gfn << VMMU_PAGE_SHIFT | role.access;
		ret = mmu_link_page(mmu, sptep, child, v->rmap_cache);
		if (ret)
			return ret == -ENOMEM ? -EAGAIN : ret;
		sp = child;
	}
	flood_reset(sp);
	if (g->paging && g->level == 1 && !gpte_unchanged(mmu, g, 1))
		return VMMU_FAULT_RETRY;
	return map_leaf(v, sp, &mmu_page_spt(sp)[spte_index(gva, 1)], g, ec, res);
}

/* Ring mode: a write that would log @gpa while the vCPU's ring is soft-full waits for a harvest. */
static bool ring_full(struct vmmu_mmu_vcpu *v, vmmu_gpa_t gpa)
{
	struct mmu_slot *s;
	bool full;

	if (!v->ring || !(s = mmu_slot_of(v->mmu, gpa >> VMMU_PAGE_SHIFT)) || !(s->flags & VMMU_MEMSLOT_LOG_DIRTY))
		return false;
	pthread_mutex_lock(&v->ring_lock);
	full = vmmu_dirty_ring_soft_full(v->ring);
	pthread_mutex_unlock(&v->ring_lock);
	return full;
}

int shadow_page_fault(struct vmmu_mmu_vcpu *v, vmmu_gva_t gva, uint64_t ec, struct vmmu_fault_result *res)
{
	struct vmmu_mmu *mmu = v->mmu;
	struct vmmu_fault_result r = { .gpa = 0 };
	struct gwalk g;
	int ret;

	if (to_sv(v) && to_sv(v)->levels == 3)
		gva = (uint32_t)gva; /* PAE: 32-bit linear addresses */
	pthread_rwlock_rdlock(&mmu->slots_lock);
	for (int tries = 0;; tries++) {
		ret = mmu_topup_caches(v, MMU_RMAP_CACHE_MIN);
		if (ret)
			break;
		ret = guest_walk(v, gva, ec, &g, &r);
		if (ret != VMMU_FAULT_FIXED)
			break;
		if ((ec & VMMU_PFERR_WRITE) && ring_full(v, g.gpa)) {
			ret = VMMU_FAULT_RING_FULL;
			break;
		}
		pthread_mutex_lock(&mmu->lock);
		ret = fetch(v, gva, &g, ec, &r);
		pthread_mutex_unlock(&mmu->lock);
		if (ret != -EAGAIN)
			break;
		if (tries > 4) {
			ret = -ENOMEM;
			break;
		}
	}
	pthread_rwlock_unlock(&mmu->slots_lock);
	mmu_flush_commit(mmu);
	if (ret >= 0)
		atomic_fetch_add_explicit(&v->stats.faults[ret], 1, memory_order_relaxed);
	if (res) {
		*res = r;
		res->level = ret == VMMU_FAULT_FIXED ? 1 : 0;
	}
	return ret;
}

/* ------------------------------------------------------------- INVLPG */

int vmmu_mmu_invlpg(struct vmmu_mmu_vcpu *v, vmmu_gva_t gva)
{
	struct vmmu_mmu *mmu;

	if (!v) {
		log_err("mmu: invlpg: NULL vCPU");
		return -EINVAL;
	}
	mmu = v->mmu;
	if (!mmu->shadow || !to_sv(v) || !to_sv(v)->ctx)
		return 0;
	if (to_sv(v)->levels == 3)
		gva = (uint32_t)gva;
	pthread_rwlock_rdlock(&mmu->slots_lock);
	pthread_mutex_lock(&mmu->lock);
	if (v->root && !v->root->role.invalid) {
		uint64_t *table = mmu_page_spt(v->root);

		for (int level = mmu->root_level; level >= 1; level--) {
			uint64_t *sptep = &table[spte_index(gva, level)], spte = spte_get(sptep);

			if (!(spte & VMMU_SPTE_MMU_PRESENT))
				break;
			if (level == 1) {
				mmu_zap_spte(mmu, sptep);
				break;
			}
			table = spte_to_child(spte);
		}
	}
	pthread_mutex_unlock(&mmu->lock);
	pthread_rwlock_unlock(&mmu->slots_lock);
	mmu_flush_commit(mmu);
	return 0;
}

/* ------------------------------------------------- emulated table writes */

/* KVM's rule: crossing a guest-entry boundary, or shorter than 4 bytes (except one byte at an entry's start). */
static bool write_misaligned(vmmu_gpa_t gpa, unsigned int size)
{
	unsigned int off = gpa & 4095;

	if (!(off & 7) && size == 1)
		return false;
	return ((off ^ (off + size - 1)) & ~7u) || size < 4;
}

#define MAX_PAGES_PER_GFN 64

/* React to a write of @size bytes at @gpa on every shadow page of its gfn. Under lock. */
static void track_write(struct vmmu_mmu *mmu, vmmu_gpa_t gpa, unsigned int size)
{
	vmmu_gfn_t gfn = gpa >> VMMU_PAGE_SHIFT;
	struct mmu_page *pages[MAX_PAGES_PER_GFN], *sp;
	unsigned int n = 0, idx = (gpa & 4095) / 8;
	bool misaligned = write_misaligned(gpa, size), more = false;
	uint64_t *gt = guest_table(mmu, gfn);

	for (sp = mmu_hash_first(mmu, gfn); sp; sp = sp->hash_next) {
		if (sp->gfn != gfn || sp->role.direct || !sp->on_list || sp->valid_gen != mmu->valid_gen)
			continue;
		if (n == MAX_PAGES_PER_GFN) {
			more = true;
			break;
		}
		pages[n++] = sp;
	}
	for (unsigned int i = 0; i < n; i++) {
		uint64_t *sptep;

		sp = pages[i];
		if (!sp->on_list)
			continue;
		if (misaligned || more) {
			mmu_zap_page(mmu, sp);
			atomic_fetch_add_explicit(&mmu->stat_misaligned_zaps, 1, memory_order_relaxed);
			continue;
		}
		if (sp->role.level > 1 && flood_inc(sp) >= FLOOD_LIMIT) {
			mmu_zap_page(mmu, sp);
			atomic_fetch_add_explicit(&mmu->stat_flood_zaps, 1, memory_order_relaxed);
			continue;
		}
		sptep = &mmu_page_spt(sp)[idx];
		if (spte_get(sptep) & VMMU_SPTE_MMU_PRESENT) {
			mmu_zap_spte(mmu, sptep);
			atomic_fetch_add_explicit(&mmu->stat_pt_zaps, 1, memory_order_relaxed);
		}
		if (!(spte_get(sptep) & VMMU_SPTE_MMU_PRESENT) && gt)
			spte_set(sptep, cleared_for(mmu, sp, gpte_read(&gt[idx])));
	}
	if (more) /* pathological: every page of the gfn goes */
		for (sp = mmu_hash_first(mmu, gfn); sp;) {
			struct mmu_page *next = sp->hash_next;

			if (sp->gfn == gfn && !sp->role.direct && sp->on_list) {
				mmu_zap_page(mmu, sp);
				next = mmu_hash_first(mmu, gfn);
			}
			sp = next;
		}
}

int vmmu_mmu_write_gpa(struct vmmu_mmu_vcpu *v, vmmu_gpa_t gpa, const void *data, unsigned int size)
{
	struct vmmu_mmu *mmu;
	struct mmu_slot *s;
	uint8_t *p;
	int ret = 0;

	if (!v || !data || !size || size > 8 || (gpa & 4095) + size > 4096) {
		log_err("mmu: write_gpa: NULL argument, size not 1..8, or crossing a page");
		return -EINVAL;
	}
	mmu = v->mmu;
	pthread_rwlock_rdlock(&mmu->slots_lock);
	s = mmu_slot_of(mmu, gpa >> VMMU_PAGE_SHIFT);
	if (!s || (s->flags & VMMU_MEMSLOT_READONLY)) {
		log_err("mmu: write_gpa: no writable memslot at 0x%llx", (unsigned long long)gpa);
		ret = -EFAULT;
		goto out;
	}
	p = s->hva + (gpa - (s->base_gfn << VMMU_PAGE_SHIFT));
	pthread_mutex_lock(&mmu->lock);
	if (size == 8 && !(gpa & 7))
		__atomic_store_n((uint64_t *)p, *(const uint64_t *)data, __ATOMIC_RELEASE);
	else
		memcpy(p, data, size);
	mmu_mark_dirty(mmu, v, s, gpa >> VMMU_PAGE_SHIFT);
	if (mmu->shadow && mmu_gfn_write_tracked(s, gpa >> VMMU_PAGE_SHIFT)) {
		atomic_fetch_add_explicit(&mmu->stat_pt_writes, 1, memory_order_relaxed);
		track_write(mmu, gpa, size);
	}
	pthread_mutex_unlock(&mmu->lock);
	mmu_flush_commit(mmu);
out:
	pthread_rwlock_unlock(&mmu->slots_lock);
	return ret;
}

/* ------------------------------------------------------- stats, audit */

void shadow_fill_stats(struct vmmu_mmu *mmu, struct vmmu_mmu_stats *st)
{
	st->pt_writes = atomic_load(&mmu->stat_pt_writes);
	st->pt_zaps = atomic_load(&mmu->stat_pt_zaps);
	st->flood_zaps = atomic_load(&mmu->stat_flood_zaps);
	st->misaligned_zaps = atomic_load(&mmu->stat_misaligned_zaps);
}

/*
 * Shadow invariants: each gfn's write-track count equals the number of live
 * indirect pages shadowing it (so no guest table is shadowed unprotected: the
 * leaf audit then checks no SPTE to it is MMU-writable); indirect pages record
 * the gfn of each leaf.
 */
unsigned int shadow_audit(struct vmmu_mmu *mmu)
{
	unsigned int problems = 0;

	if (!mmu->shadow)
		return 0;
	for (uint32_t i = 0; i < mmu->nr_slot; i++) {
		struct mmu_slot *s = mmu->slot[i];

		for (uint64_t g = 0; s && g < s->npages; g++) {
			unsigned int count = 0;

			for (struct mmu_page *sp = mmu_hash_first(mmu, s->base_gfn + g); sp; sp = sp->hash_next)
				count += sp->gfn == s->base_gfn + g && !sp->role.direct && sp->on_list;
			if (count != s->write_track[g] && problems++ < 16)
				log_err("mmu audit: gfn 0x%llx shadowed by %u pages but write-tracked %u times",
					(unsigned long long)(s->base_gfn + g), count, s->write_track[g]);
		}
	}
	return problems;
}
