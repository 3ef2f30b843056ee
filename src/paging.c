/* SPDX-License-Identifier: MIT */
/*
 * Guest paging contexts and the walker (SDM vol. 3A ch. 4, vol. 3C ch. 29; AMD APM vol. 2 ch. 15.25).
 *
 * A context precomputes from the registers everything a walk would otherwise
 * re-derive: reserved-bit masks per level and per PS bit (one AND per entry),
 * a 16-byte permission table indexed by error-code bits 4:1 whose bit N says
 * "an access with these error-code bits to a translation whose effective
 * VMMU_ACC_* value is N faults" (the RSVD slot of the index is reused for
 * "SMAP overridden by EFLAGS.AC"), and a 32-bit protection-key mask.
 *
 * One walker, walk_stage() over walk_level(), serves every format: it is
 * inlined with constant arguments (number of levels, 4-byte entries or not,
 * EPT or not, nested or not), so each use compiles to straight-line code
 * without format tests; walk_one() picks the variant for a context.
 *
 * Guest memory: every entry address goes through the memslots (the slot of
 * the previous table is checked first, then memslot_lookup()); an entry
 * outside guest memory reads as not present. Entries are read with relaxed
 * atomic loads, since the guest (or another thread) may change them.
 *
 * A/D bits: a walk records the entries that need A (every level) or D (the
 * leaf, for a write), of both stages, and writes them with compare-and-swap
 * only once the whole walk has succeeded. A lost race restarts the walk.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <libvmmu/paging.h>

#include "internal.h"
#include "memslot_internal.h"

#define PT_P  BIT_ULL(0)
#define PT_W  BIT_ULL(1)
#define PT_U  BIT_ULL(2)
#define PT_A  BIT_ULL(5)
#define PT_D  BIT_ULL(6)
#define PT_PS BIT_ULL(7)
#define PT_NX BIT_ULL(63)

#define EPT_R   BIT_ULL(0)
#define EPT_W   BIT_ULL(1)
#define EPT_X   BIT_ULL(2)
#define EPT_RWX (EPT_R | EPT_W | EPT_X)
#define EPT_A   BIT_ULL(8)
#define EPT_D   BIT_ULL(9)

#define EPTP_AD       BIT_ULL(6)
#define EPTP_RESERVED (BIT_ULL(7) | GENMASK_ULL(11, 8))

#define ADDR64_MASK GENMASK_ULL(51, 12)
#define ADDR32_MASK 0xfffff000ULL

/* Error-code bits that index the permission table, and the slot SMAP's override borrows. */
#define PFEC_INDEX_BITS (VMMU_PFERR_WRITE | VMMU_PFERR_USER | VMMU_PFERR_RSVD | VMMU_PFERR_FETCH)
#define PFEC_SMAP_OVERRIDE VMMU_PFERR_RSVD

/* walk_guest() moves VMMU_WALK_IMPLICIT onto the U and SMAP-override bits with shifts */
_Static_assert(VMMU_WALK_IMPLICIT >> 6 == VMMU_PFERR_USER, "IMPLICIT >> 6 must be U");
_Static_assert(VMMU_WALK_IMPLICIT >> 5 == PFEC_SMAP_OVERRIDE, "IMPLICIT >> 5 must be the SMAP override slot");
_Static_assert(VMMU_WALK_WRITE == VMMU_PFERR_WRITE && VMMU_WALK_USER == VMMU_PFERR_USER &&
	       VMMU_WALK_FETCH == VMMU_PFERR_FETCH, "access kinds sit at their error-code positions");

/* Register bits whose change reloads the PAE PDPTE registers: CR0.PG/CD/NW, CR4.PSE/PAE/PGE/SMEP. */
#define PDPTE_RELOAD_CR0 (VMMU_CR0_PG | BIT_ULL(30) | BIT_ULL(29))
#define PDPTE_RELOAD_CR4 (VMMU_CR4_PSE | VMMU_CR4_PAE | BIT_ULL(7) | VMMU_CR4_SMEP)

/* Lost A/D races before a walk gives up with -ELOOP. */
#define AD_RETRIES 64

enum ctx_kind { KIND_GUEST, KIND_EPT, KIND_NPT };

/* The walk variants (see walk_one()). */
enum variant { V_OFF, V_32, V_PAE, V_4, V_5, V_NESTED32, V_NESTED, V_TDP };

struct vmmu_paging {
	/* read by every walk */
	const struct vmmu_memslots *mem;
	struct vmmu_paging *nested;   /* second stage of a 2-D walk, or NULL */
	uint8_t root_level;           /* 0: paging off; 2..5 */
	uint8_t kind;                 /* enum ctx_kind */
	bool pte32;                   /* 4-byte entries, 10-bit indices */
	bool pae;                     /* level 3 comes from the PDPTE registers */
	bool ad;                      /* A/D bits are maintained */
	bool fetch_ec;                /* I/D is reported in error codes (NXE or SMEP) */
	bool nxe;                     /* bit 63 is XD */
	uint8_t smap_override;        /* PFEC_SMAP_OVERRIDE if EFLAGS.AC, else 0 */
	uint8_t variant;              /* enum variant: which specialised walk serves the context */
	uint8_t va_bits;              /* canonical width (48 or 57) for 4-/5-level; 0 for none */
	uint64_t ps_mask;             /* PT_PS where bit 7 can mean "page size"; 0 for 32-bit without PSE */
	uint64_t root;                /* GPA of the root table (PAE: of the PDPT) */
	uint64_t addr_mask;           /* address bits of a table entry */
	uint64_t rsvd[VMMU_WALK_MAX_LEVELS][2]; /* [level - 1][bit 7 set] */
	uint64_t bad_mt_xwr;          /* EPT: bit (pte & 63) set = misconfigured combination */
	uint64_t pdptrs[4];
	uint8_t permissions[16];
	uint32_t pkru_mask;
	uint32_t pkru;
	enum vmmu_paging_mode mode;
	/* the slot holding the root table, valid while the memslots' generation is root_gen */
	uint64_t root_gen;
	vmmu_gpa_t root_start;
	uint64_t root_size;
	uintptr_t root_bias;

	/* what the context was built from */
	bool built;
	struct vmmu_paging_regs regs;
	uint8_t maxphyaddr;
};

/* ---- building contexts ---- */

static void set_variant(struct vmmu_paging *c)
{
	if (c->kind != KIND_GUEST)
		c->variant = V_TDP;
	else if (!c->root_level)
		c->variant = V_OFF;
	else if (c->nested)
		c->variant = c->pte32 ? V_NESTED32 : V_NESTED;
	else if (c->pte32)
		c->variant = V_32;
	else if (c->pae)
		c->variant = V_PAE;
	else
		c->variant = c->root_level == 5 ? V_5 : V_4;
}

static uint64_t high_bits(unsigned int from, unsigned int to)
{
	return from > to ? 0 : GENMASK_ULL(to, from);
}

/* Remember the slot of the root table, so that walks start without a lookup. */
static void cache_root_slot(struct vmmu_paging *c)
{
	const struct memslot *m = memslot_lookup(c->mem, c->root >> VMMU_PAGE_SHIFT);

	c->root_gen = c->mem->generation;
	c->root_start = m ? m->base_gfn << VMMU_PAGE_SHIFT : 0;
	c->root_size = m ? m->npages << VMMU_PAGE_SHIFT : 0;
	c->root_bias = m ? (uintptr_t)m->hva - (uintptr_t)(m->base_gfn << VMMU_PAGE_SHIFT) : 0;
}

/*
 * The permission table for first-stage (and NPT) formats, from the rules of
 * SDM 4.6. Index: error-code bits 4:1 (W, U, SMAP-override, F). Bit @acc of a
 * byte: an access of that kind to a translation with effective access @acc faults.
 */
static void build_permissions(uint8_t perm[16], bool wp, bool nxe, bool smep, bool smap)
{
	for (unsigned int idx = 0; idx < 16; idx++) {
		uint64_t pfec = (uint64_t)idx << 1;
		bool write = pfec & VMMU_PFERR_WRITE, user = pfec & VMMU_PFERR_USER;
		bool fetch = pfec & VMMU_PFERR_FETCH, ac = pfec & PFEC_SMAP_OVERRIDE;
		uint8_t byte = 0;

		for (unsigned int acc = 0; acc < 8; acc++) {
			bool x = acc & VMMU_ACC_EXEC, w = acc & VMMU_ACC_WRITE, u = acc & VMMU_ACC_USER;
			bool fault = false;

			if (fetch && nxe && !x)
				fault = true;
			if (user) {
				fault |= !u || (write && !w);
			} else {
				fault |= write && wp && !w;
				fault |= fetch && smep && u;
				fault |= !fetch && smap && u && !ac;
			}
			byte |= (uint8_t)(fault << acc);
		}
		perm[idx] = byte;
	}
}

/*
 * Two bits per slot: bit 0 "check the key's AD", bit 1 "check its WD". Slot =
 * error-code bits 4:1 with the RSVD position replaced by the leaf's effective U.
 * Keys apply to data accesses to user-mode addresses; WD blocks user writes,
 * and supervisor writes only with CR0.WP.
 */
static uint32_t build_pkru_mask(bool wp)
{
	uint32_t mask = 0;

	for (unsigned int idx = 0; idx < 16; idx++) {
		uint64_t pfec = (uint64_t)idx << 1;
		bool write = pfec & VMMU_PFERR_WRITE, user = pfec & VMMU_PFERR_USER;
		bool user_page = pfec & VMMU_PFERR_RSVD, fetch = pfec & VMMU_PFERR_FETCH;
		bool ad = !fetch && user_page;
		bool wd = ad && write && (user || wp);

		mask |= (uint32_t)(ad | (wd << 1)) << (idx * 2);
	}
	return mask;
}

/*
 * Reserved-bit masks, [level - 1][bit 7 of the entry]: bit 7 is PS above
 * level 1 (a leaf when set, or reserved where no such page size exists) and
 * PAT or ignored in a PTE, which therefore has the same mask either way.
 */
typedef uint64_t rsvd_masks[VMMU_WALK_MAX_LEVELS][2];

static void set_rsvd(rsvd_masks r, unsigned int level, uint64_t table, uint64_t leaf)
{
	r[level - 1][0] = table;
	r[level - 1][1] = leaf;
}

/* 4-/5-level entries (also NPT). */
static void rsvd_64(rsvd_masks r, unsigned int maxphy, bool nxe, bool gbpages, bool amd)
{
	uint64_t high = high_bits(maxphy, 51) | (nxe ? 0 : PT_NX);
	uint64_t top = high | PT_PS | (amd ? BIT_ULL(8) : 0);

	set_rsvd(r, 5, top, top);
	set_rsvd(r, 4, top, top);
	set_rsvd(r, 3, high, gbpages ? high | GENMASK_ULL(29, 13) : high | PT_PS);
	set_rsvd(r, 2, high, high | GENMASK_ULL(20, 13));
	set_rsvd(r, 1, high, high);
}

/* PAE PDEs and PTEs (the PDPTEs are registers, checked when loaded). */
static void rsvd_pae(rsvd_masks r, unsigned int maxphy, bool nxe)
{
	uint64_t high = high_bits(maxphy, 62) | (nxe ? 0 : PT_NX);

	memset(r, 0, sizeof(rsvd_masks));
	set_rsvd(r, 2, high, high | GENMASK_ULL(20, 13));
	set_rsvd(r, 1, high, high);
}

/* PDPTE registers (PAE): bits 2:1, 8:5, 63 and 62:M are reserved. */
static uint64_t rsvd_pdpte(unsigned int maxphy)
{
	return GENMASK_ULL(2, 1) | GENMASK_ULL(8, 5) | PT_NX | high_bits(maxphy, 62);
}

/* 32-bit paging: only a 4 MiB PDE has reserved bits. */
static void rsvd_32(rsvd_masks r, unsigned int maxphy)
{
	memset(r, 0, sizeof(rsvd_masks));
	/* PA bits 39:32 sit in bits 20:13 (PSE-36); bit 21 is reserved */
	set_rsvd(r, 2, 0, BIT_ULL(21) | (maxphy < 40 ? GENMASK_ULL(20, maxphy - 19) : 0));
}

static void rsvd_ept(rsvd_masks r, unsigned int maxphy, uint32_t flags)
{
	uint64_t high = high_bits(maxphy, 51);

	set_rsvd(r, 5, high | GENMASK_ULL(7, 3), high | GENMASK_ULL(7, 3));
	set_rsvd(r, 4, high | GENMASK_ULL(7, 3), high | GENMASK_ULL(7, 3));
	set_rsvd(r, 3, high | GENMASK_ULL(6, 3),
		 (flags & VMMU_EPT_F_1G) ? high | GENMASK_ULL(29, 12) : high | GENMASK_ULL(7, 3));
	set_rsvd(r, 2, high | GENMASK_ULL(6, 3),
		 (flags & VMMU_EPT_F_NO_2M) ? high | GENMASK_ULL(7, 3) : high | GENMASK_ULL(20, 12));
	set_rsvd(r, 1, high, high); /* bit 7 of an EPT PTE is ignored */
}

/* EPT combinations of memory type (5:3) and XWR (2:0) that are misconfigurations. */
static uint64_t build_bad_mt_xwr(bool execonly)
{
	uint64_t bad = 0;

	for (unsigned int i = 0; i < 64; i++) {
		unsigned int mt = i >> 3, xwr = i & 7;

		if (mt == 2 || mt == 3 || mt == 7 || xwr == 2 || xwr == 6 || (xwr == 4 && !execonly))
			bad |= BIT_ULL(i);
	}
	return bad;
}

static int check_maxphyaddr(unsigned int m)
{
	if (m < 32 || m > 52) {
		log_err("paging: MAXPHYADDR %u outside 32..52", m);
		return -EINVAL;
	}
	return 0;
}

static enum vmmu_paging_mode regs_mode(const struct vmmu_paging_regs *r)
{
	if (!(r->cr0 & VMMU_CR0_PG))
		return VMMU_PAGING_OFF;
	if (!(r->cr4 & VMMU_CR4_PAE))
		return VMMU_PAGING_32BIT;
	if (!(r->efer & VMMU_EFER_LMA))
		return VMMU_PAGING_PAE;
	return (r->cr4 & VMMU_CR4_LA57) ? VMMU_PAGING_5LEVEL : VMMU_PAGING_4LEVEL;
}

static int check_regs(const struct vmmu_paging_regs *r)
{
	int ret = check_maxphyaddr(r->maxphyaddr);

	if (ret)
		return ret;
	if ((r->efer & VMMU_EFER_LMA) &&
	    (!(r->efer & VMMU_EFER_LME) || !(r->cr4 & VMMU_CR4_PAE) || !(r->cr0 & VMMU_CR0_PG))) {
		log_err("paging: EFER.LMA without LME, CR4.PAE and CR0.PG (efer 0x%llx cr0 0x%llx cr4 0x%llx)",
			(unsigned long long)r->efer, (unsigned long long)r->cr0, (unsigned long long)r->cr4);
		return -EINVAL;
	}
	if ((r->efer & VMMU_EFER_LME) && (r->cr0 & VMMU_CR0_PG) && !(r->efer & VMMU_EFER_LMA)) {
		log_err("paging: EFER.LME with CR0.PG but LMA clear");
		return -EINVAL;
	}
	if (r->flags & ~(VMMU_PAGING_F_GBPAGES | VMMU_PAGING_F_AMD | VMMU_PAGING_F_PDPTRS)) {
		log_err("paging: unknown flags 0x%x", r->flags);
		return -EINVAL;
	}
	return 0;
}

static int translate_gpa_noad(struct vmmu_paging *tdp, vmmu_gpa_t gpa, vmmu_gpa_t *out);

/* Load the PDPTE registers from the PDPT at CR3, as MOV CR3 does in PAE mode. */
static int load_pdptrs(struct vmmu_paging *c)
{
	uint64_t bad = rsvd_pdpte(c->maxphyaddr);
	vmmu_gpa_t gpa = c->root;

	if (c->regs.flags & VMMU_PAGING_F_PDPTRS) {
		memcpy(c->pdptrs, c->regs.pdptrs, sizeof(c->pdptrs));
	} else {
		if (c->nested && translate_gpa_noad(c->nested, gpa, &gpa)) {
			log_err("paging: PAE PDPT at 0x%llx does not translate through the second stage",
				(unsigned long long)c->root);
			return -EFAULT;
		}
		if (vmmu_memslots_read(c->mem, gpa, c->pdptrs, sizeof(c->pdptrs))) {
			log_err("paging: PAE PDPT at 0x%llx is not in guest memory", (unsigned long long)gpa);
			return -EFAULT;
		}
	}
	for (unsigned int i = 0; i < 4; i++) {
		if ((c->pdptrs[i] & PT_P) && (c->pdptrs[i] & bad)) {
			log_err("paging: PDPTE %u = 0x%llx has reserved bits set", i,
				(unsigned long long)c->pdptrs[i]);
			return -EINVAL;
		}
	}
	return 0;
}

/* Fill @c (mem and nested already set) from @r. */
static int build_guest(struct vmmu_paging *c, const struct vmmu_paging_regs *r)
{
	enum vmmu_paging_mode mode = regs_mode(r);
	unsigned int m = r->maxphyaddr;
	bool lma = mode == VMMU_PAGING_4LEVEL || mode == VMMU_PAGING_5LEVEL;
	bool wp = r->cr0 & VMMU_CR0_WP, smep = r->cr4 & VMMU_CR4_SMEP, smap = r->cr4 & VMMU_CR4_SMAP;
	/* PAE: keep the PDPTE registers unless the write is one that reloads them on a CPU (SDM 4.4.1) */
	bool old_pdptrs = c->pae && c->regs.cr3 == r->cr3 && !((c->regs.cr0 ^ r->cr0) & PDPTE_RELOAD_CR0) &&
			  !((c->regs.cr4 ^ r->cr4) & PDPTE_RELOAD_CR4) && c->maxphyaddr == m &&
			  !((c->regs.flags ^ r->flags) & VMMU_PAGING_F_PDPTRS) &&
			  !memcmp(c->regs.pdptrs, r->pdptrs, sizeof(r->pdptrs));
	/* which precomputed parts the change touches (everything on the first build or a mode change) */
	bool all = !c->built || c->mode != mode;
	bool perm = all || ((c->regs.cr0 ^ r->cr0) & VMMU_CR0_WP) ||
		    ((c->regs.cr4 ^ r->cr4) & (VMMU_CR4_SMEP | VMMU_CR4_SMAP)) ||
		    ((c->regs.efer ^ r->efer) & VMMU_EFER_NXE);
	bool pk = all || ((c->regs.cr0 ^ r->cr0) & VMMU_CR0_WP) || ((c->regs.cr4 ^ r->cr4) & VMMU_CR4_PKE);
	bool rsvd = all || c->maxphyaddr != m || ((c->regs.efer ^ r->efer) & VMMU_EFER_NXE) ||
		    ((c->regs.flags ^ r->flags) & (VMMU_PAGING_F_GBPAGES | VMMU_PAGING_F_AMD));

	c->kind = KIND_GUEST;
	c->mode = mode;
	c->regs = *r;
	c->maxphyaddr = (uint8_t)m;
	c->ad = true;
	c->nxe = (r->efer & VMMU_EFER_NXE) && mode >= VMMU_PAGING_PAE;
	c->fetch_ec = c->nxe || smep;
	c->smap_override = (r->rflags & VMMU_RFLAGS_AC) ? PFEC_SMAP_OVERRIDE : 0;
	c->pte32 = mode == VMMU_PAGING_32BIT;
	c->pae = mode == VMMU_PAGING_PAE;
	c->va_bits = mode == VMMU_PAGING_5LEVEL ? 57 : mode == VMMU_PAGING_4LEVEL ? 48 : 0;
	c->ps_mask = PT_PS;
	c->addr_mask = ADDR64_MASK;
	c->bad_mt_xwr = 0;
	c->pkru = r->pkru;
	if (pk)
		c->pkru_mask = (lma && (r->cr4 & VMMU_CR4_PKE)) ? build_pkru_mask(wp) : 0;
	if (perm)
		build_permissions(c->permissions, wp, c->nxe, smep, smap);
	c->built = true;

	switch (mode) {
	case VMMU_PAGING_OFF:
		c->root_level = 0;
		c->root = 0;
		break;
	case VMMU_PAGING_32BIT:
		c->root_level = 2;
		c->root = r->cr3 & ADDR32_MASK;
		c->addr_mask = ADDR32_MASK;
		c->ps_mask = (r->cr4 & VMMU_CR4_PSE) ? PT_PS : 0;
		if (rsvd)
			rsvd_32(c->rsvd, m);
		break;
	case VMMU_PAGING_PAE:
		c->root_level = 3;
		c->root = r->cr3 & GENMASK_ULL(31, 5);
		if (rsvd)
			rsvd_pae(c->rsvd, m, c->nxe);
		if (!old_pdptrs) {
			int ret = load_pdptrs(c);

			if (ret)
				return ret;
		}
		break;
	default:
		c->root_level = mode == VMMU_PAGING_5LEVEL ? 5 : 4;
		c->root = r->cr3 & high_bits(12, m - 1);
		if (rsvd)
			rsvd_64(c->rsvd, m, c->nxe, r->flags & VMMU_PAGING_F_GBPAGES, r->flags & VMMU_PAGING_F_AMD);
		break;
	}
	cache_root_slot(c);
	set_variant(c);
	return 0;
}

int vmmu_paging_create(struct vmmu_paging **out, const struct vmmu_memslots *mem,
		       const struct vmmu_paging_regs *regs)
{
	struct vmmu_paging *c;
	int ret;

	if (!out || !mem || !regs) {
		log_err("paging: create with a NULL argument");
		return -EINVAL;
	}
	ret = check_regs(regs);
	if (ret)
		return ret;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->mem = mem;
	ret = build_guest(c, regs);
	if (ret) {
		free(c);
		return ret;
	}
	*out = c;
	return 0;
}

int vmmu_paging_update(struct vmmu_paging *ctx, const struct vmmu_paging_regs *regs)
{
	struct vmmu_paging tmp;
	int ret;

	if (!ctx || !regs || ctx->kind != KIND_GUEST) {
		log_err("paging: update needs a first-stage context and registers");
		return -EINVAL;
	}
	ret = check_regs(regs);
	if (ret)
		return ret;
	/* a write that changes nothing only refreshes the root-slot hint after memslot changes */
	if (!memcmp(&ctx->regs, regs, sizeof(*regs))) {
		if (ctx->root_gen != ctx->mem->generation)
			cache_root_slot(ctx);
		return 0;
	}
	tmp = *ctx;
	ret = build_guest(&tmp, regs);
	if (ret)
		return ret;
	*ctx = tmp;
	return 0;
}

int vmmu_paging_reload_pdptrs(struct vmmu_paging *ctx)
{
	struct vmmu_paging tmp;
	int ret;

	if (!ctx || ctx->kind != KIND_GUEST || !ctx->pae) {
		log_err("paging: reload_pdptrs needs a PAE first-stage context");
		return -EINVAL;
	}
	tmp = *ctx;
	ret = load_pdptrs(&tmp);
	if (ret)
		return ret;
	memcpy(ctx->pdptrs, tmp.pdptrs, sizeof(ctx->pdptrs));
	return 0;
}

/*
 * A second-stage context with the fields EPT and NPT share; the caller adds the
 * format's reserved bits and permissions, then publishes it with publish_tdp().
 */
static struct vmmu_paging *new_tdp(const struct vmmu_memslots *mem, enum ctx_kind kind,
				   enum vmmu_paging_mode mode, unsigned int levels, vmmu_gpa_t root, bool ad,
				   uint8_t maxphyaddr)
{
	struct vmmu_paging *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->mem = mem;
	c->kind = kind;
	c->mode = mode;
	c->root_level = (uint8_t)levels;
	c->root = root;
	c->ad = ad;
	c->ps_mask = PT_PS;
	c->addr_mask = ADDR64_MASK;
	c->maxphyaddr = maxphyaddr;
	return c;
}

static int publish_tdp(struct vmmu_paging *c, struct vmmu_paging **out)
{
	cache_root_slot(c);
	set_variant(c);
	*out = c;
	return 0;
}

int vmmu_paging_create_ept(struct vmmu_paging **out, const struct vmmu_memslots *mem,
			   const struct vmmu_ept_config *cfg)
{
	struct vmmu_paging *c;
	unsigned int len;
	int ret;

	if (!out || !mem || !cfg) {
		log_err("paging: create with a NULL argument");
		return -EINVAL;
	}
	ret = check_maxphyaddr(cfg->maxphyaddr);
	if (ret)
		return ret;
	len = ((cfg->eptp >> 3) & 7) + 1;
	if (len != 4 && len != 5) {
		log_err("paging: EPTP 0x%llx walk length %u is not 4 or 5", (unsigned long long)cfg->eptp, len);
		return -EINVAL;
	}
	if ((cfg->eptp & 7) != 0 && (cfg->eptp & 7) != 6) {
		log_err("paging: EPTP 0x%llx memory type is not UC or WB", (unsigned long long)cfg->eptp);
		return -EINVAL;
	}
	if (cfg->eptp & (EPTP_RESERVED | high_bits(cfg->maxphyaddr, 63))) {
		log_err("paging: EPTP 0x%llx has reserved bits set", (unsigned long long)cfg->eptp);
		return -EINVAL;
	}
	if (cfg->flags & ~(VMMU_EPT_F_EXECONLY | VMMU_EPT_F_1G | VMMU_EPT_F_NO_2M)) {
		log_err("paging: unknown EPT flags 0x%x", cfg->flags);
		return -EINVAL;
	}
	c = new_tdp(mem, KIND_EPT, len == 5 ? VMMU_PAGING_EPT5 : VMMU_PAGING_EPT4, len, cfg->eptp & ADDR64_MASK,
		    cfg->eptp & EPTP_AD, cfg->maxphyaddr);
	if (!c)
		return -ENOMEM;
	rsvd_ept(c->rsvd, cfg->maxphyaddr, cfg->flags);
	c->bad_mt_xwr = build_bad_mt_xwr(cfg->flags & VMMU_EPT_F_EXECONLY);
	return publish_tdp(c, out);
}

int vmmu_paging_create_npt(struct vmmu_paging **out, const struct vmmu_memslots *mem,
			   const struct vmmu_npt_config *cfg)
{
	struct vmmu_paging *c;
	int ret;

	if (!out || !mem || !cfg) {
		log_err("paging: create with a NULL argument");
		return -EINVAL;
	}
	ret = check_maxphyaddr(cfg->maxphyaddr);
	if (ret)
		return ret;
	if (cfg->levels != 4 && cfg->levels != 5) {
		log_err("paging: NPT with %u levels (4 or 5 exist)", cfg->levels);
		return -EINVAL;
	}
	c = new_tdp(mem, KIND_NPT, cfg->levels == 5 ? VMMU_PAGING_5LEVEL : VMMU_PAGING_4LEVEL, cfg->levels,
		    cfg->ncr3 & high_bits(12, cfg->maxphyaddr - 1), true, cfg->maxphyaddr);
	if (!c)
		return -ENOMEM;
	c->nxe = cfg->nxe;
	c->fetch_ec = c->nxe;
	rsvd_64(c->rsvd, cfg->maxphyaddr, c->nxe, cfg->gbpages, true);
	/* every NPT access is a user access: CR0.WP, SMEP and SMAP do not matter */
	build_permissions(c->permissions, true, c->nxe, false, false);
	return publish_tdp(c, out);
}

void vmmu_paging_destroy(struct vmmu_paging *ctx)
{
	free(ctx);
}

enum vmmu_paging_mode vmmu_paging_get_mode(const struct vmmu_paging *ctx)
{
	return ctx ? ctx->mode : VMMU_PAGING_OFF;
}

int vmmu_paging_set_nested(struct vmmu_paging *ctx, struct vmmu_paging *second_stage)
{
	struct vmmu_paging tmp;
	int ret;

	if (!ctx || ctx->kind != KIND_GUEST) {
		log_err("paging: set_nested needs a first-stage context");
		return -EINVAL;
	}
	if (second_stage && second_stage->kind == KIND_GUEST) {
		log_err("paging: set_nested: %p is not an EPT or NPT context", (void *)second_stage);
		return -EINVAL;
	}
	tmp = *ctx;
	tmp.nested = second_stage;
	set_variant(&tmp);
	/* PDPTE registers loaded from memory come through the new second stage */
	if (tmp.pae && !(tmp.regs.flags & VMMU_PAGING_F_PDPTRS)) {
		ret = load_pdptrs(&tmp);
		if (ret)
			return ret;
	}
	*ctx = tmp;
	return 0;
}

/* ---- walking ---- */

/* Accessed/dirty bits to set once the walk has succeeded. */
struct ad_rec {
	void *hva;
	uint64_t old, set;
	uint64_t *report; /* the entry's copy in the result, or NULL */
	bool pte32;
};

#define AD_MAX (VMMU_WALK_MAX_LEVELS * (VMMU_WALK_MAX_LEVELS + 2))

struct ad_list {
	const struct vmmu_memslots *mem;
	unsigned int n;
	struct ad_rec r[AD_MAX];
};

/*
 * One stage's walk over its tables. The entries go straight into the
 * caller's arrays (the result's, for the stage that is reported).
 */
struct stage {
	uint64_t *gpte;                  /* [level - 1]: entry as read */
	vmmu_gpa_t *gpte_gpa;            /* [level - 1]: its address, in the stage's input space */
	vmmu_gpa_t mem_gpa[VMMU_WALK_MAX_LEVELS]; /* nested first stage: the entry's address in memory */
	uint64_t acc;                    /* AND of the entries; x86: of (entry ^ XD), bit 63 = executable */
	vmmu_gpa_t out;                  /* translation */
	uint64_t page_size;
	unsigned int level;              /* leaf level, or where the walk stopped */
	unsigned int top;                /* first level read */
	unsigned int first_mem;          /* first level read from memory (PAE: 2) */
};

/* A stage with its own entry arrays (second-stage walks inside a 2-D walk). */
struct stage_buf {
	struct stage s;
	uint64_t gpte[VMMU_WALK_MAX_LEVELS];
	vmmu_gpa_t gpte_gpa[VMMU_WALK_MAX_LEVELS];
};

/* Why a stage stopped. */
enum stop {
	STOP_LEAF,        /* found the leaf; permissions not checked yet */
	STOP_NOT_PRESENT, /* not present, or the table is not in guest memory */
	STOP_RSVD,        /* reserved bit (EPT: misconfiguration) */
	STOP_NESTED,      /* a table access faulted in the second stage: see the fault */
};

/* A second-stage fault, before the first stage adds what it knows (GVA, final or not). */
struct tdp_fault {
	int outcome;   /* VMMU_WALK_EPT_VIOLATION, _EPT_MISCONFIG or _NPF */
	uint64_t code; /* EPT qualification bits 5:0, or NPF error code bits 31:0 */
	vmmu_gpa_t gpa;
	unsigned int level;
};

static int tdp_translate(struct vmmu_paging *tdp, vmmu_gpa_t gpa, uint64_t pfec, struct ad_list *ad,
			 struct stage *s, struct tdp_fault *f, uint64_t *report);

static inline uint64_t load_entry(uintptr_t p, bool pte32)
{
	if (pte32)
		return __atomic_load_n((const uint32_t *)p, __ATOMIC_RELAXED);
	return __atomic_load_n((const uint64_t *)p, __ATOMIC_RELAXED);
}

static inline bool gpte_is_present(uint64_t pte, bool ept)
{
	return ept ? (pte & EPT_RWX) != 0 : (pte & PT_P) != 0;
}

/* Where a walk is: the next table, the AND of the entries so far, the slot of the last table. */
struct cursor {
	vmmu_gpa_t table;
	uint64_t acc, pte;       /* AND of the entries so far (bit 63 flipped: "executable"), the last entry */
	vmmu_gpa_t start;        /* the slot that held the previous table: [start, start + size) */
	uint64_t size;
	uintptr_t bias;          /* its host address minus its GPA */
	/* copies of the context's fields: stores into the result cannot alias them */
	uint64_t ps_mask, addr_mask;
};

/* Not a stop: go down one level. */
#define STEP_NEXT (-1)

/*
 * One level of a walk: read the entry for @addr at @level of c->table, check
 * it, accumulate it. Returns STEP_NEXT, or why the walk stops (the leaf
 * included). The arguments from @level on are constants at most call sites.
 */
static inline __attribute__((always_inline)) int
walk_level(const struct vmmu_paging *ctx, uint64_t addr, struct stage *s, struct cursor *c, struct ad_list *ad,
	   uint64_t table_pfec, struct tdp_fault *nf, const unsigned int level, const bool pte32, const bool ept,
	   const bool nested)
{
	const unsigned int bits = pte32 ? 10 : 9;
	const unsigned int shift = VMMU_PAGE_SHIFT + (level - 1) * bits;
	vmmu_gpa_t gpa = c->table + ((addr >> shift) & ((1u << bits) - 1)) * (pte32 ? 4 : 8);
	vmmu_gpa_t mem_gpa = gpa;
	uint64_t pte, ps;

	s->gpte_gpa[level - 1] = gpa;
	if (nested && ctx->nested) {
		struct stage_buf nb;

		nb.s.gpte = nb.gpte;
		nb.s.gpte_gpa = nb.gpte_gpa;
		if (tdp_translate(ctx->nested, gpa, table_pfec, ad, &nb.s, nf, NULL))
			return STOP_NESTED;
		mem_gpa = nb.s.out;
		s->mem_gpa[level - 1] = mem_gpa;
	}
	if (unlikely(mem_gpa - c->start >= c->size)) {
		const struct memslot *slot = memslot_lookup(ctx->mem, mem_gpa >> VMMU_PAGE_SHIFT);

		if (unlikely(!slot))
			return STOP_NOT_PRESENT; /* gpte[] stays 0: the result was cleared */
		c->start = slot->base_gfn << VMMU_PAGE_SHIFT;
		c->size = slot->npages << VMMU_PAGE_SHIFT;
		c->bias = (uintptr_t)slot->hva - (uintptr_t)c->start;
	}
	pte = load_entry(c->bias + (uintptr_t)mem_gpa, pte32);
	s->gpte[level - 1] = pte;
	c->pte = pte;
	if (unlikely(!gpte_is_present(pte, ept))) {
		c->acc = 0;
		return STOP_NOT_PRESENT;
	}
	ps = pte32 ? (pte & c->ps_mask) >> 7 : (pte >> 7) & 1;
	if (unlikely(pte & ctx->rsvd[level - 1][ps]))
		return STOP_RSVD;
	if (ept && unlikely((ctx->bad_mt_xwr >> (pte & 63)) & 1))
		return STOP_RSVD;
	c->acc &= pte ^ (ept ? 0 : PT_NX);
	if (ps || level == 1)
		return STOP_LEAF;
	c->table = pte & c->addr_mask;
	return STEP_NEXT;
}

/*
 * Walk @ctx's tables for @addr. The arguments from @levels on are constants
 * in each caller, so every use compiles to straight-line code for one format
 * (@levels: how many levels are read from memory, 0 = ctx->root_level).
 * @table_pfec is the access each table read makes in the second stage.
 */
static inline __attribute__((always_inline)) enum stop
walk_stage(const struct vmmu_paging *ctx, uint64_t addr, struct stage *s, struct ad_list *ad, uint64_t table_pfec,
	   struct tdp_fault *nf, const unsigned int levels, const bool pte32, const bool ept, const bool nested)
{
	struct cursor c = { .table = ctx->root, .acc = ~0ULL, .ps_mask = ctx->ps_mask,
			    .addr_mask = ctx->addr_mask };
	unsigned int level = levels ? levels : ctx->root_level;

	if (likely(ctx->root_gen == ctx->mem->generation)) {
		c.start = ctx->root_start;
		c.size = ctx->root_size;
		c.bias = ctx->root_bias;
	}
	int stop = STEP_NEXT;

	s->top = s->first_mem = level;
	if (!ept && !pte32 && ctx->pae) {
		/* PAE: level 3 is a PDPTE register, with no permission bits and no A bit to set */
		unsigned int i = (addr >> 30) & 3;

		c.pte = ctx->pdptrs[i];
		s->top = 3;
		s->first_mem = level = 2;
		s->gpte[2] = c.pte;
		s->gpte_gpa[2] = c.table + i * 8;
		if (!(c.pte & PT_P)) {
			s->level = 3;
			return STOP_NOT_PRESENT;
		}
		c.table = c.pte & ctx->addr_mask;
	}
#define LEVEL(l)                                                                                  \
	do {                                                                                      \
		stop = walk_level(ctx, addr, s, &c, ad, table_pfec, nf, l, pte32, ept, nested);   \
		if (stop != STEP_NEXT) {                                                          \
			level = l;                                                                \
			goto out;                                                                 \
		}                                                                                 \
	} while (0)
	/* fall through from the root level down: constant levels, straight-line code */
	switch (level) {
	case 5:
		LEVEL(5);
		/* fall through */
	case 4:
		LEVEL(4);
		/* fall through */
	case 3:
		LEVEL(3);
		/* fall through */
	case 2:
		LEVEL(2);
		/* fall through */
	default:
		LEVEL(1);
	}
#undef LEVEL
out:
	s->level = level;
	s->acc = c.acc;
	if (stop != STOP_LEAF)
		return (enum stop)stop;
	if (pte32 && level == 2) {
		s->page_size = 1ULL << 22;
		s->out = (c.pte & GENMASK_ULL(31, 22)) | ((c.pte & GENMASK_ULL(20, 13)) << 19) |
			 (addr & GENMASK_ULL(21, 0));
	} else {
		s->page_size = 1ULL << (VMMU_PAGE_SHIFT + (level - 1) * 9);
		s->out = (c.pte & ctx->addr_mask & ~(s->page_size - 1)) | (addr & (s->page_size - 1));
	}
	return STOP_LEAF;
}

/*
 * Effective VMMU_ACC_* of an x86-format path from the AND of its entries with
 * bit 63 flipped. Without NXE bit 63 is reserved (or absent, in 4-byte
 * entries), so every entry that got this far has it clear: executable.
 */
static inline unsigned int x86_acc(uint64_t and)
{
	return (unsigned int)(and & (PT_W | PT_U)) | (unsigned int)(and >> 63);
}

/* Effective VMMU_ACC_* of an EPT path: R is reported as VMMU_ACC_USER. */
static inline unsigned int ept_acc(uint64_t and)
{
	return (unsigned int)(((and & EPT_R) ? VMMU_ACC_USER : 0) | ((and & EPT_W) ? VMMU_ACC_WRITE : 0) |
			      ((and & EPT_X) ? VMMU_ACC_EXEC : 0));
}

/*
 * Record A on every entry read from memory and D on the leaf (for a write)
 * where they are clear. Entries in read-only memslots are skipped. A second
 * read of the same entry (a 2-D walk reads upper second-stage entries again
 * and again) merges into the first record.
 */
static void record_ad(struct ad_list *ad, const struct stage *s, bool write, uint64_t a_bit, uint64_t d_bit,
		      bool pte32, bool nested, uint64_t *report)
{
	for (unsigned int l = s->first_mem; l >= s->level && l >= 1; l--) {
		uint64_t want = a_bit | (l == s->level && write ? d_bit : 0);
		uint64_t pte = s->gpte[l - 1];
		vmmu_gpa_t gpa = nested ? s->mem_gpa[l - 1] : s->gpte_gpa[l - 1];
		struct ad_rec *r;
		unsigned int i;
		void *hva;

		if ((pte & want) == want)
			continue;
		hva = vmmu_memslots_hva(ad->mem, gpa, pte32 ? 4 : 8, true);
		if (!hva)
			continue;
		for (i = 0; i < ad->n; i++)
			if (ad->r[i].hva == hva)
				break;
		r = &ad->r[i];
		if (i == ad->n) {
			if (ad->n == AD_MAX)
				continue;
			ad->n++;
			*r = (struct ad_rec){ .hva = hva, .old = pte, .pte32 = pte32,
					      .report = report ? &report[l - 1] : NULL };
		}
		r->set |= want & ~pte;
	}
}

/* Write the recorded bits. Returns false if an entry changed since it was read. */
static bool apply_ad(struct ad_list *ad)
{
	for (unsigned int i = 0; i < ad->n; i++) {
		struct ad_rec *r = &ad->r[i];
		bool ok;

		if (r->pte32) {
			uint32_t old = (uint32_t)r->old;

			ok = __atomic_compare_exchange_n((uint32_t *)r->hva, &old, (uint32_t)(r->old | r->set), false,
							 __ATOMIC_SEQ_CST, __ATOMIC_RELAXED);
		} else {
			uint64_t old = r->old;

			ok = __atomic_compare_exchange_n((uint64_t *)r->hva, &old, r->old | r->set, false,
							 __ATOMIC_SEQ_CST, __ATOMIC_RELAXED);
		}
		if (!ok)
			return false;
		if (r->report)
			*r->report |= r->set;
	}
	return true;
}

/*
 * Second stage: translate @gpa for an access with error-code bits @pfec (W, F;
 * U is implied; for EPT, U with W marks a table access made as a write, which
 * reports read and write), into @s. A/D bits go to @ad unless it is NULL;
 * @report is the result's entry array for a second stage walked on its own.
 */
static int tdp_translate(struct vmmu_paging *tdp, vmmu_gpa_t gpa, uint64_t pfec, struct ad_list *ad,
			 struct stage *s, struct tdp_fault *f, uint64_t *report)
{
	bool ept = tdp->kind == KIND_EPT;
	bool write = pfec & VMMU_PFERR_WRITE;
	unsigned int width = VMMU_PAGE_SHIFT + 9 * tdp->root_level;
	enum stop stop;

	if (unlikely(gpa >> width)) {
		/* beyond what the tables translate: as a not-present root entry */
		s->top = s->first_mem = s->level = tdp->root_level;
		s->acc = 0;
		s->gpte[s->level - 1] = 0;
		s->gpte_gpa[s->level - 1] = 0;
		stop = STOP_NOT_PRESENT;
	} else if (ept) {
		stop = walk_stage(tdp, gpa, s, NULL, 0, NULL, 0, false, true, false);
	} else {
		stop = walk_stage(tdp, gpa, s, NULL, 0, NULL, 0, false, false, false);
	}
	f->gpa = gpa;
	f->level = s->level;
	if (ept) {
		uint64_t kind = (pfec & VMMU_PFERR_FETCH) ? VMMU_EPT_QUAL_FETCH :
				write ? VMMU_EPT_QUAL_WRITE : VMMU_EPT_QUAL_READ;
		uint64_t need = (pfec & VMMU_PFERR_FETCH) ? EPT_X : write ? EPT_W : EPT_R;

		if (stop == STOP_RSVD) {
			f->outcome = VMMU_WALK_EPT_MISCONFIG;
			f->code = 0;
			return -1;
		}
		if (stop != STOP_LEAF || !(s->acc & need)) {
			if (pfec & VMMU_PFERR_USER)
				kind |= VMMU_EPT_QUAL_READ;
			f->outcome = VMMU_WALK_EPT_VIOLATION;
			f->code = kind | (stop == STOP_LEAF ? (s->acc & EPT_RWX) << 3 : 0);
			return -1;
		}
		if (ad && tdp->ad)
			record_ad(ad, s, write, EPT_A, EPT_D, false, false, report);
	} else {
		uint64_t code, ec_bits = VMMU_PFERR_USER | (pfec & VMMU_PFERR_WRITE);

		if (tdp->fetch_ec)
			ec_bits |= pfec & VMMU_PFERR_FETCH;
		if (stop == STOP_RSVD) {
			code = VMMU_PFERR_PRESENT | VMMU_PFERR_RSVD;
		} else if (stop != STOP_LEAF) {
			code = 0;
		} else {
			unsigned int idx = (unsigned int)((pfec | VMMU_PFERR_USER) & PFEC_INDEX_BITS) >> 1;

			code = (tdp->permissions[idx] >> x86_acc(s->acc)) & 1;
		}
		if (stop != STOP_LEAF || code) {
			f->outcome = VMMU_WALK_NPF;
			f->code = code | ec_bits;
			return -1;
		}
		if (ad)
			record_ad(ad, s, write, PT_A, PT_D, false, false, report);
	}
	return 0;
}

/* A read through the second stage without side effects (PDPTE loads). */
static int translate_gpa_noad(struct vmmu_paging *tdp, vmmu_gpa_t gpa, vmmu_gpa_t *out)
{
	struct tdp_fault f;
	struct stage_buf b;

	b.s.gpte = b.gpte;
	b.s.gpte_gpa = b.gpte_gpa;
	if (tdp_translate(tdp, gpa, 0, NULL, &b.s, &f, NULL))
		return -1;
	*out = b.s.out;
	return 0;
}

/* The access each guest table read makes in the second stage. */
static uint64_t table_access(const struct vmmu_paging *tdp)
{
	if (!tdp || tdp->kind == KIND_NPT)
		return VMMU_PFERR_WRITE | VMMU_PFERR_USER; /* NPT: guest table accesses are user writes */
	/* EPT: reads, or writes when EPT A/D is on (USER marks "also a read" in the qualification) */
	return tdp->ad ? VMMU_PFERR_WRITE | VMMU_PFERR_USER : 0;
}

/* Turn a second-stage fault into the walk's outcome. */
static int report_tdp_fault(const struct tdp_fault *f, bool final, bool gva_valid, vmmu_gva_t gva,
			    struct vmmu_walk_result *res)
{
	res->level = (uint8_t)f->level;
	res->fault_gpa = f->gpa;
	switch (f->outcome) {
	case VMMU_WALK_EPT_VIOLATION:
		res->exit_qualification = f->code;
		if (gva_valid) {
			res->exit_qualification |= VMMU_EPT_QUAL_GVA_VALID | (final ? VMMU_EPT_QUAL_GVA_FINAL : 0);
			res->cr2 = gva;
		}
		break;
	case VMMU_WALK_NPF:
		res->error_code = f->code | (final ? VMMU_PFERR_GUEST_FINAL : VMMU_PFERR_GUEST_PAGE);
		break;
	default:
		break;
	}
	return f->outcome;
}

static bool is_canonical(uint64_t va, unsigned int bits)
{
	return (uint64_t)((int64_t)(va << (64 - bits)) >> (64 - bits)) == va;
}

/*
 * One attempt at a first-stage walk. The arguments from @levels on are
 * constants in each caller (see walk_guest_*), which lets the compiler
 * specialise it.
 */
static inline __attribute__((always_inline)) int
walk_guest(struct vmmu_paging *ctx, vmmu_gva_t gva, uint32_t access, struct vmmu_walk_result *res,
	   struct ad_list *ad, const unsigned int levels, const bool pte32, const bool nested)
{
	/* an implicit access is a supervisor access: U goes (bit 8 moved down to bit 2) */
	uint64_t pfec = access & (VMMU_WALK_WRITE | VMMU_WALK_USER | VMMU_WALK_FETCH) & ~(uint64_t)(access >> 6);
	struct tdp_fault nf;
	struct stage s;
	enum stop stop;
	uint64_t code;
	unsigned int acc, idx;

	/* the width is a constant where the level count is */
	unsigned int va_bits = levels == 4 ? 48 : levels == 5 ? 57 : levels ? 0 : ctx->va_bits;

	if (va_bits) {
		if (unlikely(!is_canonical(gva, va_bits)))
			return VMMU_WALK_GP;
	} else {
		gva &= 0xffffffffULL; /* 32-bit and PAE paging: linear addresses are 32 bits */
	}

	s.gpte = res->gpte;
	s.gpte_gpa = res->gpte_gpa;
	stop = walk_stage(ctx, gva, &s, ad, table_access(ctx->nested), &nf, levels, pte32, false, nested);
	res->levels = (uint8_t)(s.top - s.level + 1);
	res->level = (uint8_t)s.level;
	if (unlikely(stop != STOP_LEAF)) {
		if (stop == STOP_NESTED) {
			res->levels--; /* the entry was never read */
			return report_tdp_fault(&nf, false, true, gva, res);
		}
		code = stop == STOP_RSVD ? VMMU_PFERR_PRESENT | VMMU_PFERR_RSVD : 0;
		goto fault;
	}

	acc = x86_acc(s.acc);
	/* EFLAGS.AC lifts SMAP for explicit accesses only (bit 8, implicit, moved down to bit 3) */
	idx = (unsigned int)((pfec | (ctx->smap_override & ~(access >> 5))) >> 1);
	code = (ctx->permissions[idx] >> acc) & 1;
	if (ctx->pkru_mask) {
		uint64_t leaf = res->gpte[s.level - 1];
		uint32_t pk = (ctx->pkru >> (((leaf >> 59) & 15) * 2)) & 3;
		unsigned int slot = (unsigned int)(pfec >> 1) | ((acc & VMMU_ACC_USER) ? 4 : 0);

		pk &= ctx->pkru_mask >> (slot * 2);
		if (pk)
			code |= VMMU_PFERR_PRESENT | VMMU_PFERR_PK;
	}
	if (unlikely(code))
		goto fault;

	res->gpa = s.out;
	if (nested && ctx->nested) {
		struct stage_buf nb;

		nb.s.gpte = nb.gpte;
		nb.s.gpte_gpa = nb.gpte_gpa;
		res->guest_gpa = s.out;
		if (tdp_translate(ctx->nested, s.out, pfec & (VMMU_PFERR_WRITE | VMMU_PFERR_FETCH), ad, &nb.s, &nf,
				  NULL))
			return report_tdp_fault(&nf, true, true, gva, res);
		res->gpa = nb.s.out;
	}
	res->page_size = s.page_size;
	res->access = (uint16_t)acc;
	if (ad && (!(s.acc & PT_A) || ((pfec & VMMU_PFERR_WRITE) && !(res->gpte[s.level - 1] & PT_D))))
		record_ad(ad, &s, pfec & VMMU_PFERR_WRITE, PT_A, PT_D, pte32, nested && ctx->nested, res->gpte);
	return VMMU_WALK_OK;

fault:
	res->error_code = code | (pfec & (VMMU_PFERR_WRITE | VMMU_PFERR_USER)) |
			  (ctx->fetch_ec ? pfec & VMMU_PFERR_FETCH : 0);
	res->cr2 = gva;
	return VMMU_WALK_PAGE_FAULT;
}

/* Paging off: GVA == GPA, then the second stage if any. */
static int walk_off(struct vmmu_paging *ctx, vmmu_gva_t gva, uint32_t access, struct vmmu_walk_result *res,
		    struct ad_list *ad)
{
	uint64_t pfec = access & (VMMU_WALK_WRITE | VMMU_WALK_FETCH);
	struct tdp_fault nf;
	struct stage_buf nb;

	res->gpa = gva;
	if (ctx->nested) {
		nb.s.gpte = nb.gpte;
		nb.s.gpte_gpa = nb.gpte_gpa;
		res->guest_gpa = gva;
		if (tdp_translate(ctx->nested, gva, pfec, ad, &nb.s, &nf, NULL))
			return report_tdp_fault(&nf, true, true, gva, res);
		res->gpa = nb.s.out;
	}
	res->page_size = VMMU_PAGE_SIZE;
	res->access = VMMU_ACC_ALL;
	return VMMU_WALK_OK;
}

/* A second-stage context walked on its own: the GPA is the input, no GVA. */
static int walk_tdp(struct vmmu_paging *ctx, vmmu_gva_t gpa, uint32_t access, struct vmmu_walk_result *res,
		    struct ad_list *ad)
{
	uint64_t pfec = access & (VMMU_WALK_WRITE | VMMU_WALK_FETCH);
	struct tdp_fault nf;
	struct stage s = { .gpte = res->gpte, .gpte_gpa = res->gpte_gpa };
	int ret = VMMU_WALK_OK;

	if (tdp_translate(ctx, gpa, pfec, ad, &s, &nf, res->gpte))
		ret = report_tdp_fault(&nf, true, false, 0, res);
	res->levels = (uint8_t)(s.top - s.level + 1);
	res->level = (uint8_t)s.level;
	if (ret != VMMU_WALK_OK)
		return ret;
	res->gpa = s.out;
	res->page_size = s.page_size;
	res->access = (uint16_t)(ctx->kind == KIND_EPT ? ept_acc(s.acc) : x86_acc(s.acc));
	return VMMU_WALK_OK;
}

/* One attempt at a walk with the variant that fits @ctx. */
static int walk_one(struct vmmu_paging *ctx, vmmu_gva_t gva, uint32_t access, struct vmmu_walk_result *res,
		    struct ad_list *ad)
{
	switch (ctx->variant) {
	case V_4:
		return walk_guest(ctx, gva, access, res, ad, 4, false, false);
	case V_5:
		return walk_guest(ctx, gva, access, res, ad, 5, false, false);
	case V_PAE:
		return walk_guest(ctx, gva, access, res, ad, 2, false, false);
	case V_32:
		return walk_guest(ctx, gva, access, res, ad, 2, true, false);
	case V_NESTED32:
		return walk_guest(ctx, gva, access, res, ad, 2, true, true);
	case V_NESTED:
		return walk_guest(ctx, gva, access, res, ad, 0, false, true);
	case V_TDP:
		return walk_tdp(ctx, gva, access, res, ad);
	default:
		return walk_off(ctx, gva, access, res, ad);
	}
}

/*
 * Zero the result field by field: a memset() of this size becomes "rep stos",
 * whose start-up cost is a large part of a hot walk.
 */
static inline void clear_result(struct vmmu_walk_result *res)
{
	res->gpa = 0;
	res->page_size = 0;
	res->level = 0;
	res->levels = 0;
	res->access = 0;
	res->pad = 0;
	for (unsigned int i = 0; i < VMMU_WALK_MAX_LEVELS; i++) {
		res->gpte[i] = 0;
		res->gpte_gpa[i] = 0;
	}
	res->error_code = 0;
	res->cr2 = 0;
	res->exit_qualification = 0;
	res->fault_gpa = 0;
	res->guest_gpa = 0;
	for (unsigned int i = 0; i < ARRAY_SIZE(res->reserved); i++)
		res->reserved[i] = 0;
}

#define WALK_ACCESS_ALL (VMMU_WALK_WRITE | VMMU_WALK_USER | VMMU_WALK_FETCH | VMMU_WALK_IMPLICIT | VMMU_WALK_NO_AD)

/* A walk that sets A/D bits: record, then compare-and-swap; a lost race walks again. */
static int __attribute__((noinline)) walk_with_ad(struct vmmu_paging *ctx, vmmu_gva_t gva, uint32_t access,
						  struct vmmu_walk_result *res)
{
	struct ad_list ad; /* not zeroed: 1.4 KiB; only n and mem are read before being written */

	ad.mem = ctx->mem;
	for (unsigned int tries = 0; tries < AD_RETRIES; tries++) {
		int ret;

		if (tries)
			clear_result(res);
		ad.n = 0;
		ret = walk_one(ctx, gva, access, res, &ad);
		if (ret != VMMU_WALK_OK || !ad.n || apply_ad(&ad))
			return ret;
	}
	log_warn("paging: walk of 0x%llx lost the A/D race %u times", (unsigned long long)gva, AD_RETRIES);
	return -ELOOP;
}

int vmmu_walk(struct vmmu_paging *ctx, vmmu_gva_t gva, uint32_t access, struct vmmu_walk_result *res)
{
	if (unlikely(!ctx || !res || (access & ~WALK_ACCESS_ALL) ||
		     (access & (VMMU_WALK_WRITE | VMMU_WALK_FETCH)) == (VMMU_WALK_WRITE | VMMU_WALK_FETCH))) {
		log_err("paging: walk with a NULL argument or bad access 0x%x", access);
		return -EINVAL;
	}
	clear_result(res);
	/* both are tail calls: this function keeps no frame */
	if (access & VMMU_WALK_NO_AD)
		return walk_one(ctx, gva, access, res, NULL);
	return walk_with_ad(ctx, gva, access, res);
}
