/* SPDX-License-Identifier: MIT */
/*
 * Reference model of x86 paging (see paging_ref.h). Written from the SDM's
 * text rule by rule; slow and plain on purpose. Bit numbers are spelled out
 * where the SDM gives them.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <libvmmu/memslot.h>

#include "paging_ref.h"

#define B(n) (1ULL << (n))

static bool bit(uint64_t v, unsigned int n)
{
	return (v >> n) & 1;
}

/* Any bit in [lo, hi] set? */
static bool any_bits(uint64_t v, unsigned int lo, unsigned int hi)
{
	for (unsigned int b = lo; b <= hi && b < 64; b++)
		if (bit(v, b))
			return true;
	return false;
}

/* Read an entry; false if the memory is not guest memory. */
static bool read_entry(const struct vmmu_memslots *mem, vmmu_gpa_t gpa, bool pte32, uint64_t *val)
{
	if (pte32) {
		uint32_t v;

		if (vmmu_memslots_read(mem, gpa, &v, 4))
			return false;
		*val = v;
	} else {
		if (vmmu_memslots_read(mem, gpa, val, 8))
			return false;
	}
	return true;
}

static struct ref_entry *add_entry(struct ref_out *out, vmmu_gpa_t gpa, uint64_t val, bool pte32, bool in_memory)
{
	struct ref_entry *e = &out->e[out->n++];

	e->gpa = gpa;
	e->before = e->after = val;
	e->pte32 = pte32;
	e->in_memory = in_memory;
	return e;
}

/* Set @bits in the entry (if its memory is writable), and in every other read of the same entry. */
static void set_bits(const struct vmmu_memslots *mem, struct ref_out *out, struct ref_entry *e, uint64_t bits)
{
	if (!e->in_memory || !vmmu_memslots_hva(mem, e->gpa, e->pte32 ? 4 : 8, true))
		return;
	for (unsigned int i = 0; i < out->n; i++)
		if (out->e[i].in_memory && out->e[i].gpa == e->gpa)
			out->e[i].after |= bits;
}

/* ---- second stage ---- */

enum tdp_kind { TDP_READ, TDP_WRITE, TDP_FETCH, TDP_TABLE };

struct tdp_fault {
	int outcome;
	uint64_t code;
};

/* EPT (SDM vol. 3C 29.3). Returns true with *out on success. */
static bool ept_translate(const struct vmmu_memslots *mem, const struct ref_tdp *t, uint64_t gpa,
			  enum tdp_kind kind, struct ref_out *out, uint64_t *res, struct tdp_fault *f)
{
	unsigned int levels = (unsigned int)((t->eptp >> 3) & 7) + 1;
	unsigned int m = t->maxphyaddr;
	bool ad = bit(t->eptp, 6);
	bool table_write = kind == TDP_TABLE && ad;
	uint64_t table = t->eptp & 0x000ffffffffff000ULL;
	unsigned int first = out->n;
	bool r_all = true, w_all = true, x_all = true;
	uint64_t qual_kind;
	uint64_t e = 0;
	unsigned int level;

	if (kind == TDP_FETCH)
		qual_kind = VMMU_EPT_QUAL_FETCH;
	else if (kind == TDP_WRITE)
		qual_kind = VMMU_EPT_QUAL_WRITE;
	else if (table_write)
		qual_kind = VMMU_EPT_QUAL_READ | VMMU_EPT_QUAL_WRITE;
	else
		qual_kind = VMMU_EPT_QUAL_READ;

	if (gpa >> (12 + 9 * levels)) {
		f->outcome = VMMU_WALK_EPT_VIOLATION;
		f->code = qual_kind;
		return false;
	}
	for (level = levels; level >= 1; level--) {
		unsigned int index = (unsigned int)((gpa >> (12 + 9 * (level - 1))) & 511);
		vmmu_gpa_t egpa = table + index * 8;
		unsigned int xwr, mt;
		bool leaf = false, misconfig = false;

		if (!read_entry(mem, egpa, false, &e))
			e = 0;
		add_entry(out, egpa, e, false, true);
		xwr = e & 7;
		mt = (e >> 3) & 7;
		if (xwr == 0) {
			/* not present: the AND over the path includes this entry */
			f->outcome = VMMU_WALK_EPT_VIOLATION;
			f->code = qual_kind;
			return false;
		}
		if (any_bits(e, m, 51))
			misconfig = true;
		if (xwr == 2 || xwr == 6)
			misconfig = true; /* write without read */
		if (xwr == 4 && !(t->ept_flags & VMMU_EPT_F_EXECONLY))
			misconfig = true;
		if (level >= 4) {
			if (any_bits(e, 3, 7))
				misconfig = true;
		} else if (level == 1) {
			leaf = true;
		} else if (bit(e, 7)) {
			leaf = true;
			if (level == 3 && !(t->ept_flags & VMMU_EPT_F_1G))
				misconfig = true;
			if (level == 2 && (t->ept_flags & VMMU_EPT_F_NO_2M))
				misconfig = true;
			if (level == 3 && any_bits(e, 12, 29))
				misconfig = true;
			if (level == 2 && any_bits(e, 12, 20))
				misconfig = true;
		} else {
			if (any_bits(e, 3, 6))
				misconfig = true;
		}
		if (leaf && (mt == 2 || mt == 3 || mt == 7))
			misconfig = true;
		if (misconfig) {
			f->outcome = VMMU_WALK_EPT_MISCONFIG;
			f->code = 0;
			return false;
		}
		r_all = r_all && bit(e, 0);
		w_all = w_all && bit(e, 1);
		x_all = x_all && bit(e, 2);
		if (leaf)
			break;
		table = e & 0x000ffffffffff000ULL;
	}
	{
		bool ok;

		if (kind == TDP_FETCH)
			ok = x_all;
		else if (kind == TDP_WRITE || table_write)
			ok = w_all;
		else
			ok = r_all;
		if (!ok) {
			f->outcome = VMMU_WALK_EPT_VIOLATION;
			f->code = qual_kind | (r_all ? VMMU_EPT_QUAL_READABLE : 0) |
				  (w_all ? VMMU_EPT_QUAL_WRITABLE : 0) | (x_all ? VMMU_EPT_QUAL_EXECUTABLE : 0);
			return false;
		}
	}
	{
		uint64_t size = 1ULL << (12 + 9 * (level - 1));

		*res = (e & 0x000ffffffffff000ULL & ~(size - 1)) | (gpa & (size - 1));
		out->tdp_page_size = size;
	}
	out->tdp_level = level;
	out->tdp_access = (r_all ? VMMU_ACC_USER : 0) | (w_all ? VMMU_ACC_WRITE : 0) | (x_all ? VMMU_ACC_EXEC : 0);
	if (ad) {
		/* the caller sets these only if the whole walk succeeds: mark them now in a scratch way */
		for (unsigned int i = first; i < out->n; i++) {
			uint64_t want = B(8);

			if (i == out->n - 1 && (kind == TDP_WRITE || table_write))
				want |= B(9);
			out->e[i].after |= want; /* provisional; see finish_ad() */
		}
	}
	return true;
}

/* Reserved-bit check for a 4-/5-level format entry (also NPT). */
static bool rsvd_64(uint64_t e, unsigned int level, bool ps, unsigned int m, bool nxe, bool gbpages, bool amd)
{
	if (any_bits(e, m, 51))
		return true;
	if (!nxe && bit(e, 63))
		return true;
	if (level >= 4) {
		if (bit(e, 7))
			return true;
		if (amd && bit(e, 8))
			return true;
	}
	if (level == 3 && ps) {
		if (!gbpages)
			return true;
		if (any_bits(e, 13, 29))
			return true;
	}
	if (level == 2 && ps && any_bits(e, 13, 20))
		return true;
	return false;
}

/* NPT (AMD APM 15.25): host-format tables, every access a user access. */
static bool npt_translate(const struct vmmu_memslots *mem, const struct ref_tdp *t, uint64_t gpa,
			  enum tdp_kind kind, struct ref_out *out, uint64_t *res, struct tdp_fault *f)
{
	unsigned int m = t->maxphyaddr;
	bool write = kind == TDP_WRITE || kind == TDP_TABLE;
	bool fetch = kind == TDP_FETCH;
	uint64_t table = t->ncr3 & ((1ULL << m) - 1) & ~0xfffULL;
	unsigned int first = out->n;
	bool u_all = true, w_all = true, nx_any = false;
	uint64_t code = VMMU_PFERR_USER | (write ? VMMU_PFERR_WRITE : 0) | (fetch && t->nxe ? VMMU_PFERR_FETCH : 0);
	uint64_t e = 0;
	unsigned int level;

	if (gpa >> (12 + 9 * t->levels)) {
		f->outcome = VMMU_WALK_NPF;
		f->code = code;
		return false;
	}
	for (level = t->levels; level >= 1; level--) {
		unsigned int index = (unsigned int)((gpa >> (12 + 9 * (level - 1))) & 511);
		vmmu_gpa_t egpa = table + index * 8;
		bool ps;

		if (!read_entry(mem, egpa, false, &e))
			e = 0;
		add_entry(out, egpa, e, false, true);
		if (!bit(e, 0)) {
			f->outcome = VMMU_WALK_NPF;
			f->code = code;
			return false;
		}
		ps = level > 1 && bit(e, 7);
		if (rsvd_64(e, level, ps, m, t->nxe, t->gbpages, true)) {
			f->outcome = VMMU_WALK_NPF;
			f->code = code | VMMU_PFERR_PRESENT | VMMU_PFERR_RSVD;
			return false;
		}
		u_all = u_all && bit(e, 2);
		w_all = w_all && bit(e, 1);
		nx_any = nx_any || (t->nxe && bit(e, 63));
		if (level == 1 || ps)
			break;
		table = e & 0x000ffffffffff000ULL;
	}
	if (!u_all || (write && !w_all) || (fetch && nx_any)) {
		f->outcome = VMMU_WALK_NPF;
		f->code = code | VMMU_PFERR_PRESENT;
		return false;
	}
	{
		uint64_t size = 1ULL << (12 + 9 * (level - 1));

		*res = (e & 0x000ffffffffff000ULL & ~(size - 1)) | (gpa & (size - 1));
		out->tdp_page_size = size;
	}
	out->tdp_level = level;
	out->tdp_access = (w_all ? VMMU_ACC_WRITE : 0) | (u_all ? VMMU_ACC_USER : 0) | (nx_any ? 0 : VMMU_ACC_EXEC);
	for (unsigned int i = first; i < out->n; i++)
		out->e[i].after |= B(5) | (i == out->n - 1 && write ? B(6) : 0);
	return true;
}

static bool tdp_translate(const struct vmmu_memslots *mem, const struct ref_tdp *t, uint64_t gpa,
			  enum tdp_kind kind, struct ref_out *out, uint64_t *res, struct tdp_fault *f)
{
	if (t->ept)
		return ept_translate(mem, t, gpa, kind, out, res, f);
	return npt_translate(mem, t, gpa, kind, out, res, f);
}

/*
 * A/D bits were marked provisionally in e->after while walking; on success
 * they become real (except in read-only memory and for registers), on failure
 * nothing changes.
 */
static void finish_ad(const struct vmmu_memslots *mem, struct ref_out *out, bool success, bool no_ad)
{
	uint64_t want[REF_MAX_ENTRIES];

	for (unsigned int i = 0; i < out->n; i++) {
		want[i] = out->e[i].after & ~out->e[i].before;
		out->e[i].after = out->e[i].before;
	}
	if (!success || no_ad)
		return;
	for (unsigned int i = 0; i < out->n; i++)
		if (want[i])
			set_bits(mem, out, &out->e[i], want[i]);
}

static void tdp_fault_out(const struct tdp_fault *f, bool final, bool gva_valid, uint64_t gva, uint64_t gpa,
			  struct ref_out *out)
{
	out->outcome = f->outcome;
	out->fault_gpa = gpa;
	if (f->outcome == VMMU_WALK_EPT_VIOLATION) {
		out->exit_qualification = f->code;
		if (gva_valid) {
			out->exit_qualification |= VMMU_EPT_QUAL_GVA_VALID;
			if (final)
				out->exit_qualification |= VMMU_EPT_QUAL_GVA_FINAL;
			out->cr2 = gva;
		}
	} else if (f->outcome == VMMU_WALK_NPF) {
		out->error_code = f->code | (final ? VMMU_PFERR_GUEST_FINAL : VMMU_PFERR_GUEST_PAGE);
	}
}

void ref_walk_tdp(const struct vmmu_memslots *mem, const struct ref_tdp *tdp, uint64_t gpa, uint32_t access,
		  struct ref_out *out)
{
	enum tdp_kind kind = (access & VMMU_WALK_FETCH) ? TDP_FETCH : (access & VMMU_WALK_WRITE) ? TDP_WRITE : TDP_READ;
	struct tdp_fault f;
	uint64_t res;
	bool ok;

	memset(out, 0, sizeof(*out));
	ok = tdp_translate(mem, tdp, gpa, kind, out, &res, &f);
	finish_ad(mem, out, ok, access & VMMU_WALK_NO_AD);
	if (!ok) {
		tdp_fault_out(&f, true, false, 0, gpa, out);
		return;
	}
	out->outcome = VMMU_WALK_OK;
	out->gpa = res;
	out->page_size = out->tdp_page_size;
	out->level = out->tdp_level;
	out->access = out->tdp_access;
}

/* ---- first stage ---- */

struct walk_ctx {
	const struct vmmu_memslots *mem;
	const struct ref_tdp *tdp;
	uint64_t gva;
	struct ref_out *out;
	bool failed_nested;
	struct tdp_fault nf;
	uint64_t nf_gpa;
};

/* Read a guest paging-structure entry, through the second stage if any. */
static bool guest_entry(struct walk_ctx *w, vmmu_gpa_t gpa, bool pte32, uint64_t *val, struct ref_entry **ep)
{
	vmmu_gpa_t where = gpa;

	if (w->tdp && !tdp_translate(w->mem, w->tdp, gpa, TDP_TABLE, w->out, &where, &w->nf)) {
		w->failed_nested = true;
		w->nf_gpa = gpa;
		return false;
	}
	if (!read_entry(w->mem, where, pte32, val))
		*val = 0; /* not in guest memory: not present */
	*ep = add_entry(w->out, where, *val, pte32, true);
	return true;
}

void ref_walk(const struct vmmu_memslots *mem, const struct vmmu_paging_regs *regs, const uint64_t *pdptrs,
	      const struct ref_tdp *tdp, uint64_t gva, uint32_t access, struct ref_out *out)
{
	struct walk_ctx w = { .mem = mem, .tdp = tdp, .out = out };
	bool pg = bit(regs->cr0, 31), pae = bit(regs->cr4, 5), lma = bit(regs->efer, 10);
	bool la57 = bit(regs->cr4, 12), pse = bit(regs->cr4, 4);
	bool wp = bit(regs->cr0, 16), smep = bit(regs->cr4, 20), smap = bit(regs->cr4, 21);
	bool pke = bit(regs->cr4, 22), ac = bit(regs->rflags, 18);
	bool nxe = bit(regs->efer, 11) && pae; /* XD exists only with PAE-format entries */
	bool gbpages = regs->flags & VMMU_PAGING_F_GBPAGES, amd = regs->flags & VMMU_PAGING_F_AMD;
	unsigned int m = regs->maxphyaddr;
	bool write = access & VMMU_WALK_WRITE, fetch = access & VMMU_WALK_FETCH;
	bool user = (access & VMMU_WALK_USER) && !(access & VMMU_WALK_IMPLICIT);
	bool implicit = access & VMMU_WALK_IMPLICIT;
	bool no_ad = access & VMMU_WALK_NO_AD;
	bool u_all = true, w_all = true, xd_any = false;
	struct ref_entry *leaf_e = NULL, *ents[5] = { 0 };
	uint64_t e = 0, gpa = 0, size = 4096, code;
	bool perm_fault = false, pk_fault = false;
	unsigned int level = 0, top;
	enum tdp_kind final_kind = fetch ? TDP_FETCH : write ? TDP_WRITE : TDP_READ;

	memset(out, 0, sizeof(*out));
	w.gva = gva;

	if (!pg) {
		gpa = gva;
		goto translated;
	}
	if (lma) {
		unsigned int bits = la57 ? 57 : 48;
		int64_t s = (int64_t)(gva << (64 - bits)) >> (64 - bits);

		if ((uint64_t)s != gva) {
			out->outcome = VMMU_WALK_GP;
			return;
		}
	} else {
		gva &= 0xffffffffULL;
	}
	w.gva = gva;

	if (!pae) {
		/* 32-bit paging: PDE at CR3[31:12] + gva[31:22] * 4 */
		vmmu_gpa_t pde_gpa = (regs->cr3 & 0xfffff000ULL) + ((gva >> 22) & 1023) * 4;

		top = 2;
		level = 2;
		if (!guest_entry(&w, pde_gpa, true, &e, &ents[1]))
			goto nested_fault;
		if (!bit(e, 0))
			goto not_present;
		u_all = bit(e, 2);
		w_all = bit(e, 1);
		if (pse && bit(e, 7)) {
			/* 4 MiB page: bit 21 reserved; bits 20:13 are PA bits 39:32, reserved at or above M */
			if (bit(e, 21))
				goto reserved;
			for (unsigned int b = 13; b <= 20; b++)
				if (bit(e, b) && b + 19 >= m)
					goto reserved;
			size = 4ULL << 20;
			gpa = (e & 0xffc00000ULL) | (((e >> 13) & 0xff) << 32) | (gva & (size - 1));
			leaf_e = ents[1];
		} else {
			vmmu_gpa_t pte_gpa = (e & 0xfffff000ULL) + ((gva >> 12) & 1023) * 4;

			level = 1;
			if (!guest_entry(&w, pte_gpa, true, &e, &ents[0]))
				goto nested_fault;
			if (!bit(e, 0))
				goto not_present;
			u_all = u_all && bit(e, 2);
			w_all = w_all && bit(e, 1);
			gpa = (e & 0xfffff000ULL) | (gva & 0xfff);
			leaf_e = ents[0];
		}
	} else {
		uint64_t table;

		if (!lma) {
			/* PAE: level 3 is a PDPTE register; no permission bits, no A bit */
			unsigned int i = (unsigned int)((gva >> 30) & 3);

			top = 3;
			level = 3;
			e = pdptrs[i];
			ents[2] = add_entry(out, (regs->cr3 & 0xffffffe0ULL) + i * 8, e, false, false);
			if (!bit(e, 0))
				goto not_present;
			table = e & 0x000ffffffffff000ULL;
			level = 2;
		} else {
			top = la57 ? 5 : 4;
			level = top;
			table = regs->cr3 & ((1ULL << m) - 1) & ~0xfffULL;
		}
		for (;; level--) {
			unsigned int index = (unsigned int)((gva >> (12 + 9 * (level - 1))) & 511);
			bool ps;

			if (!guest_entry(&w, table + index * 8, false, &e, &ents[level - 1]))
				goto nested_fault;
			if (!bit(e, 0))
				goto not_present;
			ps = level > 1 && bit(e, 7);
			if (lma) {
				if (rsvd_64(e, level, ps, m, nxe, gbpages, amd))
					goto reserved;
			} else {
				/* PAE PDE/PTE: bits 62:M reserved, 63 without NXE, 20:13 in a 2 MiB PDE */
				if (any_bits(e, m, 62) || (!nxe && bit(e, 63)))
					goto reserved;
				if (level == 2 && ps && any_bits(e, 13, 20))
					goto reserved;
			}
			u_all = u_all && bit(e, 2);
			w_all = w_all && bit(e, 1);
			xd_any = xd_any || (nxe && bit(e, 63));
			if (level == 1 || ps)
				break;
			table = e & 0x000ffffffffff000ULL;
		}
		size = 1ULL << (12 + 9 * (level - 1));
		gpa = (e & 0x000ffffffffff000ULL & ~(size - 1)) | (gva & (size - 1));
		leaf_e = ents[level - 1];
	}

	/* Permissions, SDM 4.6 */
	if (user) {
		if (!u_all)
			perm_fault = true;
		else if (write && !w_all)
			perm_fault = true;
		else if (fetch && xd_any)
			perm_fault = true;
	} else {
		if (fetch) {
			if (xd_any)
				perm_fault = true;
			if (smep && u_all)
				perm_fault = true;
		} else {
			if (smap && u_all && (implicit || !ac))
				perm_fault = true;
			if (write && wp && !w_all)
				perm_fault = true;
		}
	}
	/* Protection keys: IA-32e paging, user-mode addresses, data accesses */
	if (lma && pke && u_all && !fetch) {
		unsigned int key = (unsigned int)((leaf_e->before >> 59) & 15);
		bool ad = bit(regs->pkru, 2 * key), wd = bit(regs->pkru, 2 * key + 1);

		if (ad)
			pk_fault = true;
		if (write && wd && (user || wp))
			pk_fault = true;
	}
	if (perm_fault || pk_fault) {
		code = VMMU_PFERR_PRESENT | (pk_fault ? VMMU_PFERR_PK : 0);
		goto page_fault;
	}
	out->level = level;
	out->access = (w_all ? VMMU_ACC_WRITE : 0) | (u_all ? VMMU_ACC_USER : 0) | (xd_any ? 0 : VMMU_ACC_EXEC);
	out->page_size = size;

	/* A in every entry of the walk, D in the leaf for a write (PDPTE registers excluded) */
	for (unsigned int l = top; l >= level && l >= 1; l--) {
		struct ref_entry *x = ents[l - 1];

		if (x && x->in_memory)
			x->after |= B(5) | (x == leaf_e && write ? B(6) : 0);
	}

translated:
	if (tdp) {
		uint64_t l1;
		struct tdp_fault f;

		out->guest_gpa = gpa;
		if (!tdp_translate(mem, tdp, gpa, final_kind, out, &l1, &f)) {
			finish_ad(mem, out, false, no_ad);
			tdp_fault_out(&f, true, true, gva, gpa, out);
			out->level = 0;
			out->access = 0;
			out->page_size = 0;
			out->guest_gpa = 0;
			return;
		}
		gpa = l1;
	}
	finish_ad(mem, out, true, no_ad);
	out->outcome = VMMU_WALK_OK;
	out->gpa = gpa;
	if (!pg) {
		out->page_size = 4096;
		out->access = VMMU_ACC_ALL;
	}
	return;

nested_fault:
	finish_ad(mem, out, false, no_ad);
	tdp_fault_out(&w.nf, false, true, gva, w.nf_gpa, out);
	return;
not_present:
	code = 0;
	goto page_fault;
reserved:
	code = VMMU_PFERR_PRESENT | VMMU_PFERR_RSVD;
page_fault:
	finish_ad(mem, out, false, no_ad);
	out->outcome = VMMU_WALK_PAGE_FAULT;
	out->error_code = code | (write ? VMMU_PFERR_WRITE : 0) | (user ? VMMU_PFERR_USER : 0);
	/* I/D only when SMEP, or PAE-format entries with NXE */
	if (fetch && (smep || nxe))
		out->error_code |= VMMU_PFERR_FETCH;
	out->cr2 = gva;
}

int ref_check_memory(const struct vmmu_memslots *mem, const struct ref_out *out)
{
	for (unsigned int i = 0; i < out->n; i++) {
		const struct ref_entry *e = &out->e[i];
		uint64_t v;

		if (!e->in_memory)
			continue;
		if (!read_entry(mem, e->gpa, e->pte32, &v))
			continue; /* not guest memory: read as not present, never written */
		if (v != e->after)
			return (int)i;
	}
	return -1;
}

/* ---- guest memory for tests ---- */

int ref_guest_init(struct ref_guest *g, vmmu_gpa_t base, uint64_t size)
{
	memset(g, 0, sizeof(*g));
	g->ram = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (g->ram == MAP_FAILED)
		return -1;
	if (vmmu_memslots_create(&g->mem) || vmmu_memslots_add(g->mem, 0, base, size, g->ram, 0)) {
		munmap(g->ram, size);
		return -1;
	}
	g->base = base;
	g->size = size;
	g->next = base;
	return 0;
}

void ref_guest_fini(struct ref_guest *g)
{
	vmmu_memslots_destroy(g->mem);
	munmap(g->ram, g->size);
}

vmmu_gpa_t ref_guest_alloc(struct ref_guest *g)
{
	vmmu_gpa_t gpa = g->next;

	if (gpa + 4096 > g->base + g->size)
		abort();
	g->next += 4096;
	memset(ref_guest_ptr(g, gpa), 0, 4096);
	return gpa;
}

void *ref_guest_ptr(struct ref_guest *g, vmmu_gpa_t gpa)
{
	if (gpa < g->base || gpa >= g->base + g->size)
		abort();
	return g->ram + (gpa - g->base);
}

uint64_t ref_get(struct ref_guest *g, vmmu_gpa_t gpa)
{
	uint64_t v;

	memcpy(&v, ref_guest_ptr(g, gpa), 8);
	return v;
}

void ref_set(struct ref_guest *g, vmmu_gpa_t gpa, uint64_t v)
{
	memcpy(ref_guest_ptr(g, gpa), &v, 8);
}

vmmu_gpa_t ref_map(struct ref_guest *g, vmmu_gpa_t root, unsigned int levels, uint64_t va, uint64_t pa,
		   unsigned int leaf_level, uint64_t table_bits, uint64_t leaf_bits)
{
	vmmu_gpa_t table = root;

	for (unsigned int level = levels;; level--) {
		vmmu_gpa_t e = table + ((va >> (12 + 9 * (level - 1))) & 511) * 8;
		uint64_t v = ref_get(g, e);

		if (level == leaf_level) {
			ref_set(g, e, (pa & ~((1ULL << (12 + 9 * (level - 1))) - 1)) | leaf_bits |
					      (level > 1 ? B(7) : 0));
			return e;
		}
		if (!v) {
			v = ref_guest_alloc(g) | table_bits;
			ref_set(g, e, v);
		}
		table = v & 0x000ffffffffff000ULL;
	}
}
