/* SPDX-License-Identifier: MIT */
/*
 * What a CPL3 guest sees under random page tables, recorded by the guest
 * itself: a CPL0 #PF handler stores each fault's error code and CR2. The
 * KVM here is shadow-paged, so these are KVM's own walker's answers.
 *
 * Per round: random 4-level tables (random P/W/U/NX bits, 2 MiB leaves,
 * 1 GiB leaves (reserved on this machine), PS in a PML4E, PAT in PTEs,
 * reserved address bits, sub-tables shared within a level) under PML4 entries 1..8; a few hundred reads,
 * writes and fetches at CPL3 over a few dozen GVAs (so pages are revisited and A/D interplay). Checked
 * against:
 *  - a deliberately simple reference model written here (fault or not, error
 *    code, CR2, and the A/D bits left in every table entry);
 *  - with "walker" as the argument: the libvmmu walker through
 *    vmmu_vcpu_translate() replaying the same accesses from the same initial
 *    memory (exit 77 where the library has no walker).
 */
#include "helpers.h"
#include "guest.h"

#define POOL_GPA   0x100000ULL /* table pages: [1 MiB, 1.5 MiB) of the system slot */
#define POOL_PAGES 128
#define LIST_GPA   0x20000ULL  /* the access list */
#define DATA_GPA   0x40000000ULL
#define DATA_SIZE  (4ULL << 20)
#define MAXPHY     46
#define NGVAS      48
#define NACCESS    300
#define ROUNDS     12
#define PORT_SYNC  0x12

enum { READ = 0, WRITE = 1, FETCH = 2 };

struct access {
	uint64_t gva, kind, error_code, cr2;
};

static uint64_t seed = 0xfa017c0de5ULL;

static uint64_t rnd(uint64_t n)
{
	return test_rand64(&seed) % n;
}

/* ---- random tables ---- */

/*
 * The pool is split by level so that a leaf never points into the tables (a
 * fetch would run them): pages [0, 16) are PDPTs, [16, 64) PDs, [64, 128) PTs.
 * Within a level, tables are shared by many entries.
 */
static uint64_t table_of_level(int level)
{
	static const uint64_t first[4] = { 0, 64, 16, 0 }, count[4] = { 1, 64, 48, 16 };

	return POOL_GPA + (first[level] + rnd(count[level])) * 4096;
}

static uint64_t random_entry(int level)
{
	uint64_t e = 0;

	if (rnd(100) < 93)
		e |= 1;                              /* P */
	if (rnd(100) < 75)
		e |= 2;                              /* W */
	if (rnd(100) < 93)
		e |= 4;                              /* U */
	if (rnd(100) < 20)
		e |= 1ULL << 63;                     /* NX */
	if (rnd(40) == 0)
		e |= 1ULL << (MAXPHY + rnd(52 - MAXPHY)); /* reserved address bit */
	if (level == 1)
		return e | (DATA_GPA + rnd(DATA_SIZE / 4096) * 4096) |
		       (rnd(4) == 0 ? 1ULL << 7 : 0); /* PAT */
	if (rnd(100) < (level == 2 ? 20 : 3)) {
		/* PS: a 2 MiB leaf in a PD; reserved in a PDPT (no 1 GiB pages) and a PML4 */
		e |= 1ULL << 7 | (DATA_GPA + rnd(2) * (2ULL << 20));
		if (rnd(15) == 0)
			e |= 1ULL << 20;             /* reserved in a 2 MiB PDE */
		return e;
	}
	return e | table_of_level(level - 1);
}

static void build_tables(struct guest *g)
{
	for (uint64_t p = 0; p < POOL_PAGES; p++) {
		int level = p < 16 ? 3 : p < 64 ? 2 : 1;

		for (int i = 0; i < 512; i++)
			*guest_u64(g, POOL_GPA + p * 4096 + i * 8) = random_entry(level);
	}
	for (int i = 1; i <= 8; i++)
		*guest_u64(g, GUEST_PML4 + i * 8) = random_entry(4);
}

/* ---- the reference model ---- */

struct mem {
	uint8_t *sys, *data; /* copies of the system and data slots */
};

static uint64_t *mem_entry(struct mem *m, uint64_t gpa)
{
	if (gpa + 8 <= GUEST_SYS_SIZE)
		return (uint64_t *)(m->sys + gpa);
	if (gpa >= DATA_GPA && gpa + 8 <= DATA_GPA + DATA_SIZE)
		return (uint64_t *)(m->data + gpa - DATA_GPA);
	return NULL; /* never generated */
}

static bool rsvd(uint64_t e, int level)
{
	const uint64_t high = ((1ULL << 52) - 1) & ~((1ULL << MAXPHY) - 1);
	bool ps = e & (1ULL << 7);

	if (e & high)
		return true;
	if (level == 4 && ps)
		return true;         /* PS in a PML4E */
	if (level == 3 && ps)
		return true;         /* no 1 GiB pages here */
	if (level == 2 && ps && (e & 0x1fe000ULL))
		return true;         /* bits 20:13 of a 2 MiB PDE */
	return false;
}

/* One CPL3 access with NXE=1; updates A/D in @m on success. Returns the error code or -1. */
static uint64_t ref_access(struct mem *m, uint64_t gva, uint64_t kind)
{
	const uint64_t addr = ((1ULL << MAXPHY) - 1) & ~0xfffULL;
	const uint64_t acc = 4 | (kind == WRITE ? 2 : 0) | (kind == FETCH ? 16 : 0);
	uint64_t *path[4], table = GUEST_PML4, e = 0;
	bool user = true, write = true, nx = false;
	int level, n = 0;

	for (level = 4; level >= 1; level--) {
		uint64_t *pe = mem_entry(m, table + ((gva >> (12 + 9 * (level - 1))) & 511) * 8);

		if (!pe || !(*pe & 1))
			return acc;
		e = *pe;
		if (rsvd(e, level))
			return acc | 1 | 8;
		user &= !!(e & 4);
		write &= !!(e & 2);
		nx |= !!(e >> 63);
		path[n++] = pe;
		if (level == 1 || (level == 2 && (e & (1ULL << 7))))
			break;
		table = e & addr;
	}
	if (!user || (kind == WRITE && !write) || (kind == FETCH && nx))
		return acc | 1;
	for (int i = 0; i < n; i++)
		*path[i] |= 1ULL << 5;                 /* A at every level */
	if (kind == WRITE)
		*path[n - 1] |= 1ULL << 6;             /* D on the leaf */
	return (uint64_t)-1;
}

/* ---- one round ---- */

static void snapshot(struct guest *g, struct vmmu_guestmem *data, struct mem *m)
{
	memcpy(m->sys, g->mem, GUEST_SYS_SIZE);
	memcpy(m->data, data->hva, DATA_SIZE);
}

/* The table state compared: PML4 entries 1..8, the pool, the data slot. */
static void compare_tables(const char *who, struct mem *want, const uint8_t *sys, const uint8_t *data)
{
	if (memcmp(want->sys + GUEST_PML4 + 8, sys + GUEST_PML4 + 8, 64))
		fail_msg("%s: PML4 entries differ from what the guest left", who);
	for (uint64_t off = 0; off < POOL_PAGES * 4096; off += 8) {
		uint64_t a, b;

		memcpy(&a, want->sys + POOL_GPA + off, 8);
		memcpy(&b, sys + POOL_GPA + off, 8);
		if (a != b)
			fail_msg("%s: table entry at gpa 0x%llx: guest left 0x%llx, model 0x%llx", who,
				 (unsigned long long)(POOL_GPA + off), (unsigned long long)b,
				 (unsigned long long)a);
	}
	if (memcmp(want->data, data, DATA_SIZE))
		fail_msg("%s: data slot differs", who);
}

static void run_round(bool with_walker, unsigned int *faults, unsigned int *total)
{
	struct mem m0 = { malloc(GUEST_SYS_SIZE), malloc(DATA_SIZE) };
	struct mem ref = { malloc(GUEST_SYS_SIZE), malloc(DATA_SIZE) };
	struct mem after = { malloc(GUEST_SYS_SIZE), malloc(DATA_SIZE) };
	struct vmmu_guestmem data;
	struct access *list;
	uint64_t gvas[NGVAS];
	struct vmmu_exit e;
	struct guest g;

	assert_int_equal(guest_create(&g, NULL, guest_pf_start, guest_pf_end, 3), 0);
	assert_int_equal(vmmu_guestmem_init(&data, DATA_SIZE, 0), 0);
	memset(data.hva, 0xc3, DATA_SIZE);
	assert_int_equal(vmmu_vm_memslot_add(g.vm, 1, DATA_GPA, DATA_SIZE, data.hva, 0), 0);
	guest_set_idt_gate(&g, 14, GUEST_CODE + (uint64_t)(guest_pf_handler - guest_pf_start));
	build_tables(&g);
	for (int i = 0; i < NGVAS; i++)
		gvas[i] = (1 + rnd(8)) << 39 | rnd(1ULL << 39) << 0;
	list = (struct access *)(g.mem + LIST_GPA);
	for (int i = 0; i < NACCESS; i++) {
		list[i].gva = gvas[rnd(NGVAS)] & ~7ULL;
		list[i].kind = rnd(3);
	}
	snapshot(&g, &data, &m0);
	assert_int_equal(guest_set_args(&g, LIST_GPA, NACCESS, 0, 0, 0), 0);
	assert_int_equal(vmmu_vcpu_run(g.vcpu, &e), 0);
	if (e.reason != VMMU_EXIT_IO || e.io.port != PORT_SYNC)
		fail_msg("the guest ended with exit %u, not its sync", e.reason);
	snapshot(&g, &data, &after);

	/* The reference model from the same initial memory. */
	memcpy(ref.sys, m0.sys, GUEST_SYS_SIZE);
	memcpy(ref.data, m0.data, DATA_SIZE);
	for (int i = 0; i < NACCESS; i++) {
		uint64_t want = ref_access(&ref, list[i].gva, list[i].kind);

		if (want != list[i].error_code)
			fail_msg("access %d (%s 0x%llx): the guest saw %llx, the model says %llx", i,
				 list[i].kind == READ ? "read" : list[i].kind == WRITE ? "write" : "fetch",
				 (unsigned long long)list[i].gva, (unsigned long long)list[i].error_code,
				 (unsigned long long)want);
		if (want != (uint64_t)-1 && list[i].cr2 != list[i].gva)
			fail_msg("access %d: CR2 0x%llx, expected 0x%llx", i, (unsigned long long)list[i].cr2,
				 (unsigned long long)list[i].gva);
		*faults += want != (uint64_t)-1;
		(*total)++;
	}
	compare_tables("model", &ref, after.sys, after.data);

	if (with_walker) {
		/* Replay through the libvmmu walker from the initial memory; the vCPU is stopped. */
		memcpy(g.mem + GUEST_PML4 + 8, m0.sys + GUEST_PML4 + 8, 64);
		memcpy(g.mem + POOL_GPA, m0.sys + POOL_GPA, POOL_PAGES * 4096);
		for (int i = 0; i < NACCESS; i++) {
			uint32_t acc = VMMU_WALK_USER | (list[i].kind == WRITE ? VMMU_WALK_WRITE : 0) |
				       (list[i].kind == FETCH ? VMMU_WALK_FETCH : 0);
			struct vmmu_walk_result res;
			int out = vmmu_vcpu_translate(g.vcpu, list[i].gva, acc, &res);
			uint64_t got = out == VMMU_WALK_OK ? (uint64_t)-1 : res.error_code;

			assert_true(out == VMMU_WALK_OK || out == VMMU_WALK_PAGE_FAULT);
			if (got != list[i].error_code)
				fail_msg("access %d (kind %llu, 0x%llx): the guest saw %llx, the walker %llx",
					 i, (unsigned long long)list[i].kind, (unsigned long long)list[i].gva,
					 (unsigned long long)list[i].error_code, (unsigned long long)got);
			if (out == VMMU_WALK_PAGE_FAULT && res.cr2 != list[i].gva)
				fail_msg("access %d: walker CR2 0x%llx", i, (unsigned long long)res.cr2);
		}
		/* The walker's A/D writes must equal what KVM left. */
		memcpy(ref.sys, g.mem, GUEST_SYS_SIZE);
		memcpy(ref.data, data.hva, DATA_SIZE);
		compare_tables("walker", &ref, after.sys, after.data);
	}
	guest_destroy(&g);
	vmmu_guestmem_finish(&data);
	free(m0.sys); free(m0.data); free(ref.sys); free(ref.data); free(after.sys); free(after.data);
}

static void run_rounds(bool with_walker)
{
	unsigned int faults = 0, total = 0;

	for (int r = 0; r < ROUNDS; r++)
		run_round(with_walker, &faults, &total);
	printf("%u CPL3 accesses, %u faulted; the guest's #PF error codes, CR2 and A/D bits match the %s\n",
	       total, faults, with_walker ? "model and the walker" : "model");
	assert_true(faults > total / 10 && faults < total - total / 10); /* both outcomes exercised */
}

static void test_guest_faults_match_model(void **state)
{
	(void)state;
	run_rounds(false);
}

static void test_guest_faults_match_walker(void **state)
{
	(void)state;
	run_rounds(true);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest model[] = {
		cmocka_unit_test(test_guest_faults_match_model),
	};
	const struct CMUnitTest walker[] = {
		cmocka_unit_test(test_guest_faults_match_walker),
	};

	guest_skip_without_kvm();
	if (argc > 1 && !strcmp(argv[1], "walker")) {
		guest_skip_without_walker();
		return cmocka_run_group_tests(walker, NULL, NULL);
	}
	return cmocka_run_group_tests(model, NULL, NULL);
}
