/* SPDX-License-Identifier: MIT */
/*
 * vmmu-walk-demo: build 4-level page tables in a small guest memory with the
 * page-table builder, translate a few addresses with the walker, print each
 * translation or fault, and exit 1 if any differs from what the mappings say.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include <libvmmu/vmmu.h>
#include <libvmmu/memslot.h>
#include <libvmmu/paging.h>
#include <libvmmu/ptbuild.h>

#define RAM_SIZE   (4u << 20) /* guest RAM at GPA [0, 4 MiB) */
#define TABLES_GPA 0x300000u  /* page-table pages come from [3 MiB, 4 MiB) */
#define K4 VMMU_PT_SIZE_4K
#define M2 VMMU_PT_SIZE_2M

/* The allocator the builder calls for each table page: a bump pointer. */
struct bump {
	vmmu_gpa_t next, end;
};

static int alloc_table(void *opaque, vmmu_gpa_t *gpa)
{
	struct bump *b = opaque;

	if (b->next >= b->end)
		return -ENOMEM;
	*gpa = b->next;
	b->next += K4;
	return 0;
}

/* What a walk must give: the GPA (VMMU_WALK_OK) or the #PF error code. */
struct probe {
	vmmu_gva_t gva;
	uint32_t access;
	int outcome;
	uint64_t want;
};

#define USER  VMMU_WALK_USER
#define WRITE VMMU_WALK_WRITE
#define FETCH VMMU_WALK_FETCH
#define OK    VMMU_WALK_OK
#define PF    VMMU_WALK_PAGE_FAULT

static const struct probe probes[] = {
	{ 0x400000, USER | WRITE, OK, 0x200000 },           /* user page */
	{ 0x400abc, USER, OK, 0x200abc },
	{ 0x401000, USER | WRITE, PF, 0x7 },                /* made read-only by protect */
	{ 0x401000, USER | FETCH, OK, 0x201000 },
	{ 0x410000, USER, PF, 0x4 },                        /* past the user pages: not present */
	{ 0xffffffff80001234, FETCH, OK, 0x1234 },          /* kernel text, 2 MiB page */
	{ 0xffffffff80001234, USER, PF, 0x5 },              /* supervisor page */
	{ 0xffffffff80200010, 0, OK, 0x200010 },            /* kernel read-only data, NX */
	{ 0xffffffff80200010, WRITE, PF, 0x3 },             /* CR0.WP=1 */
	{ 0xffffffff80200010, FETCH, PF, 0x11 },            /* NX */
	{ 0x7fff0ff8, USER | WRITE, OK, 0x280ff8 },         /* user stack, NX */
	{ 0x7fff0000, USER | FETCH, PF, 0x15 },
	{ 0x800000, USER, PF, 0x25 },                       /* protection key 1, access-disabled */
	{ 0x800000, 0, PF, 0x21 },                          /* ... for supervisor reads too */
	{ 0x801000, USER, PF, 0xd },                        /* reserved bit 51 set */
	{ 0x0000800000000000ULL, USER, VMMU_WALK_GP, 0 },   /* not canonical */
};

static const char *const pf_words[] = { "P", "W", "U", "RSVD", "I/D", "PK", "SS" };

static void print_error_code(uint64_t ec)
{
	printf("#PF error 0x%llx (", (unsigned long long)ec);
	if (!(ec & VMMU_PFERR_PRESENT))
		printf("not-present");
	for (unsigned int i = 0; i < sizeof(pf_words) / sizeof(pf_words[0]); i++)
		if (ec & (1ULL << i))
			printf("%s%s", i || !(ec & VMMU_PFERR_PRESENT) ? " " : "", pf_words[i]);
	printf(")");
}

static bool walk_and_print(struct vmmu_paging *ctx, const struct probe *p)
{
	struct vmmu_walk_result r;
	int ret = vmmu_walk(ctx, p->gva, p->access, &r);

	printf("gva 0x%llx %s %s -> ", (unsigned long long)p->gva, p->access & USER ? "user" : "kernel",
	       p->access & WRITE ? "write" : p->access & FETCH ? "fetch" : "read");
	switch (ret) {
	case VMMU_WALK_OK:
		printf("gpa 0x%llx (%s, r%c%c-%c)\n", (unsigned long long)r.gpa,
		       r.page_size == M2 ? "2 MiB" : r.page_size == K4 ? "4 KiB" : "1 GiB",
		       r.access & VMMU_ACC_WRITE ? 'w' : '-', r.access & VMMU_ACC_EXEC ? 'x' : '-',
		       r.access & VMMU_ACC_USER ? 'u' : 's');
		return ret == p->outcome && r.gpa == p->want;
	case VMMU_WALK_PAGE_FAULT:
		print_error_code(r.error_code);
		printf(" cr2 0x%llx\n", (unsigned long long)r.cr2);
		return ret == p->outcome && r.error_code == p->want && r.cr2 == p->gva;
	case VMMU_WALK_GP:
		printf("#GP(0): not a canonical address\n");
		return ret == p->outcome;
	default:
		printf("error: %s\n", ret < 0 ? vmmu_strerror(ret) : "unexpected outcome");
		return false;
	}
}

static int check(int ret, const char *what)
{
	if (ret < 0)
		fprintf(stderr, "vmmu-walk-demo: %s: %s\n", what, vmmu_strerror(ret));
	return ret < 0;
}

int main(void)
{
	struct bump pages = { TABLES_GPA, RAM_SIZE };
	struct vmmu_ptbuild_config cfg = { .mode = VMMU_PAGING_4LEVEL, .maxphyaddr = 46,
					   .alloc = alloc_table, .opaque = &pages };
	struct vmmu_paging_regs regs = {
		.cr0 = VMMU_CR0_PG | VMMU_CR0_WP,
		.cr4 = VMMU_CR4_PAE | VMMU_CR4_PKE,
		.efer = VMMU_EFER_LME | VMMU_EFER_LMA | VMMU_EFER_NXE,
		.pkru = 1u << 2, /* access-disable key 1 */
		.maxphyaddr = 46,
	};
	struct vmmu_memslots *mem = NULL;
	struct vmmu_ptbuild *b = NULL;
	struct vmmu_paging *ctx = NULL;
	void *ram = aligned_alloc(K4, RAM_SIZE);
	unsigned int bad = 0;
	int err = 1;

	if (!ram || check(vmmu_memslots_create(&mem), "memslots") ||
	    check(vmmu_memslots_add(mem, 0, 0, RAM_SIZE, ram, 0), "add RAM") ||
	    check(vmmu_ptbuild_create(&b, mem, &cfg), "builder"))
		goto out;
	if (check(vmmu_ptbuild_map(b, 0x400000, 0x200000, 16 * K4, K4, VMMU_PT_WRITE | VMMU_PT_USER), "map user") ||
	    check(vmmu_ptbuild_protect(b, 0x401000, K4, VMMU_PT_USER), "protect") ||
	    check(vmmu_ptbuild_map(b, 0xffffffff80000000, 0x0, M2, M2, VMMU_PT_WRITE), "map kernel text") ||
	    check(vmmu_ptbuild_map(b, 0xffffffff80200000, 0x200000, M2, M2, VMMU_PT_NX), "map kernel rodata") ||
	    check(vmmu_ptbuild_map(b, 0x7fff0000, 0x280000, K4, K4, VMMU_PT_WRITE | VMMU_PT_USER | VMMU_PT_NX),
		  "map stack") ||
	    check(vmmu_ptbuild_map(b, 0x800000, 0x281000, K4, K4, VMMU_PT_USER | VMMU_PT_PKEY(1)), "map pkey") ||
	    check(vmmu_ptbuild_map_raw(b, 0x801000, 0x282000, K4, K4, VMMU_PT_USER, 1ULL << 51), "map rsvd"))
		goto out;
	regs.cr3 = vmmu_ptbuild_root(b);
	if (check(vmmu_paging_create(&ctx, mem, &regs), "paging context"))
		goto out;
	printf("4-level tables: cr3 0x%llx, %llu table pages, MAXPHYADDR %u\n", (unsigned long long)regs.cr3,
	       (unsigned long long)((pages.next - TABLES_GPA) / K4), regs.maxphyaddr);
	for (unsigned int i = 0; i < sizeof(probes) / sizeof(probes[0]); i++) {
		if (!walk_and_print(ctx, &probes[i])) {
			printf("  ^ MISMATCH: expected %s 0x%llx\n", probes[i].outcome == OK ? "gpa" : "outcome/error",
			       (unsigned long long)probes[i].want);
			bad++;
		}
	}
	printf("%s: %u of %u walks as expected\n", bad ? "FAIL" : "ok",
	       (unsigned int)(sizeof(probes) / sizeof(probes[0])) - bad, (unsigned int)(sizeof(probes) / sizeof(probes[0])));
	err = bad != 0;
out:
	vmmu_paging_destroy(ctx);
	vmmu_ptbuild_destroy(b, false);
	vmmu_memslots_destroy(mem);
	free(ram);
	return err;
}
