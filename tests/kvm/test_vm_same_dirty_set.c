/* SPDX-License-Identifier: MIT */
/*
 * The same scripted access pattern run on the soft backend and on KVM reports
 * the same dirty set, in each dirty mode both backends offer.
 *
 * A seed gives a sequence of phases over a logged slot of LOG_PAGES pages;
 * each phase is a list of 8-byte writes and reads (some pages written several
 * times, some only read, runs of neighbouring pages across bitmap words, and
 * empty or read-only phases). On KVM a CPL3 guest executes the list (the host
 * puts it in guest memory, outside the logged slot, as are the page tables,
 * the code and the stack, so the guest dirties nothing else in the slot) and
 * exits by port I/O; on the soft backend the same accesses are issued with
 * vmmu_soft_access() at CPL3 through the same page tables. After each phase
 * both dirty logs are harvested with vmmu_vm_dirty_get() and each must equal
 * the pages the phase wrote: a page dropped or added by either backend fails,
 * naming the backend. The two logged slots must also hold the same bytes.
 *
 * Reads: KVM on shadow paging (e.g. kvm_pvm, no EPT) maps a page writable on a
 * read fault when the guest PTE is already dirty, and logs it dirty then (its
 * log is "may have been written"); it also zaps the shadow of a guest table
 * when it sets A/D bits in it, so read faults recur. The soft backend (EPT)
 * logs only writes. So that reads compare exactly, the guest's PDEs are built
 * with A and D set (nothing writes the guest tables afterwards) and a warm-up
 * pass reads every logged page before the first harvest; that harvest is
 * discarded on KVM and must be empty on soft. After it no read faults.
 */
#include "helpers.h"
#include "guest.h"

#include <libvmmu/soft.h>

#define LOG_SLOT   1
#define LOG_GPA    0x40000000ULL
#define LOG_PAGES  1024ULL
#define LOG_WORDS  (LOG_PAGES / 64)
#define SCRIPT_GPA 0x100000ULL /* in the system slot: [1 MiB, 1 MiB + 8 * MAX_OPS) */
#define MAX_OPS    1024
#define PHASES     48
#define PORT_DONE  0x12
#define RING_SIZE  256 /* the smallest ring, so that ring-full exits happen on both backends */
_Static_assert(MAX_OPS >= LOG_PAGES, "the warm-up reads every page in one phase");

/*
 * CPL3 script runner. rdi = GVA of the script, rdx = GVA of { count, value }.
 * Forever: for each of the count entries (gva | 1 for a write, gva for a read),
 * write value to, or read 8 bytes from, gva; then out %al -> port PORT_DONE.
 */
__asm__(".text\n"
	".globl script_guest_start, script_guest_end\n"
	"script_guest_start:\n"
	"1:	mov (%rdx), %rcx\n"
	"	mov 8(%rdx), %r10\n"
	"	mov %rdi, %rsi\n"
	"	test %rcx, %rcx\n"
	"	jz 4f\n"
	"2:	mov (%rsi), %rax\n"
	"	add $8, %rsi\n"
	"	btr $0, %rax\n"
	"	jc 3f\n"
	"	mov (%rax), %r11\n"
	"	jmp 5f\n"
	"3:	mov %r10, (%rax)\n"
	"5:	dec %rcx\n"
	"	jnz 2b\n"
	"4:	out %al, $0x12\n"
	"	jmp 1b\n"
	"script_guest_end:\n");
extern const char script_guest_start[], script_guest_end[];

struct phase {
	uint64_t ops[MAX_OPS]; /* gva | 1 (write) or gva (read) */
	unsigned int nr_ops;
	uint64_t value;
	uint64_t expect[LOG_WORDS]; /* the pages written */
};

struct machine {
	struct guest g;
	struct vmmu_guestmem log;
	uint64_t bitmap[LOG_WORDS];
	unsigned int ring_full;
};

static void add_op(struct phase *p, uint64_t page, bool write, uint64_t *seed)
{
	uint64_t gva = LOG_GPA + page * 4096 + (test_rand64(seed) % 512) * 8;

	if (p->nr_ops == MAX_OPS)
		return;
	p->ops[p->nr_ops++] = gva | write;
	if (write)
		p->expect[page / 64] |= 1ULL << (page % 64);
}

/* Phase @n of the script of @seed. */
static void make_phase(struct phase *p, uint64_t *seed, unsigned int n)
{
	uint64_t shape = test_rand64(seed) % 8, recent[32] = { 0 };
	unsigned int nr_recent = 0, nr = (unsigned int)(test_rand64(seed) % 600);

	memset(p, 0, sizeof(*p));
	p->value = 0x5eed000000000000ULL | (uint64_t)n << 32 | (test_rand64(seed) & 0xffffffff);
	if (shape == 0)
		return; /* empty */
	if (shape == 1) {
		/* a run of neighbouring pages crossing bitmap words, each written twice */
		uint64_t first = test_rand64(seed) % (LOG_PAGES - 200), len = 1 + test_rand64(seed) % 200;

		for (int twice = 0; twice < 2; twice++)
			for (uint64_t i = 0; i < len; i++)
				add_op(p, first + i, true, seed);
	}
	for (unsigned int i = 0; i < nr; i++) {
		bool write = shape != 2 && test_rand64(seed) % 2; /* shape 2: reads only */
		uint64_t page = test_rand64(seed) % LOG_PAGES;

		if (nr_recent && test_rand64(seed) % 4 == 0)
			page = recent[test_rand64(seed) % nr_recent]; /* the same page again */
		else if (nr_recent < 32)
			recent[nr_recent++] = page;
		add_op(p, page, write, seed);
	}
}

/* A and D in every 2 MiB PDE of guest_build_tables(), so that no access writes the guest's tables. */
static void set_ad_bits(struct guest *g)
{
	for (uint64_t i = 0; i < GUEST_MAP_GIB * 512; i++)
		*guest_u64(g, GUEST_PD + i * 8) |= 0x60;
}

static void machine_create(struct machine *m, const char *backend, const struct vmmu_vm_options *o)
{
	struct guest *g = &m->g;

	memset(m, 0, sizeof(*m));
	if (!strcmp(backend, "kvm")) {
		assert_int_equal(guest_create(g, o, script_guest_start, script_guest_end, 3), 0);
		set_ad_bits(g);
	} else {
		/* The same machine on the soft backend; it runs no code, so none is copied. */
		assert_int_equal(vmmu_vm_create(&g->vm, backend, o), 0);
		assert_int_equal(vmmu_guestmem_init(&g->sys, GUEST_SYS_SIZE, VMMU_GUESTMEM_DEFAULT), 0);
		g->mem = g->sys.hva;
		guest_build_tables(g);
		set_ad_bits(g);
		assert_int_equal(vmmu_vm_memslot_add(g->vm, 0, 0, GUEST_SYS_SIZE, g->mem, 0), 0);
		assert_int_equal(vmmu_vcpu_create(g->vm, 0, &g->vcpu), 0);
		assert_int_equal(guest_set_cpu(g, GUEST_CODE, 3), 0);
	}
	assert_int_equal(guest_set_args(g, SCRIPT_GPA, 0, GUEST_DATA, 0, 0), 0);
	assert_int_equal(vmmu_guestmem_init(&m->log, LOG_PAGES * 4096, VMMU_GUESTMEM_DEFAULT), 0);
	assert_int_equal(vmmu_vm_memslot_add(g->vm, LOG_SLOT, LOG_GPA, LOG_PAGES * 4096, m->log.hva,
					     VMMU_MEMSLOT_LOG_DIRTY), 0);
}

static void machine_destroy(struct machine *m)
{
	guest_destroy(&m->g);
	vmmu_guestmem_finish(&m->log);
}

static void ring_full(struct machine *m)
{
	m->ring_full++;
	assert_true(vmmu_vcpu_dirty_harvest(m->g.vcpu) >= 0);
	assert_true(vmmu_vm_dirty_reset(m->g.vm) >= 0);
}

/* KVM: the guest runs the script from its memory until it reports done. */
static void run_kvm(struct machine *m, const struct phase *p)
{
	struct vmmu_exit e;

	memcpy(m->g.mem + SCRIPT_GPA, p->ops, p->nr_ops * sizeof(p->ops[0]));
	*guest_u64(&m->g, GUEST_DATA) = p->nr_ops;
	*guest_u64(&m->g, GUEST_DATA + 8) = p->value;
	for (;;) {
		assert_int_equal(vmmu_vcpu_run(m->g.vcpu, &e), 0);
		if (e.reason == VMMU_EXIT_DIRTY_RING_FULL)
			ring_full(m);
		else if (e.reason == VMMU_EXIT_IO && e.io.port == PORT_DONE)
			return;
		else if (e.reason != VMMU_EXIT_INTR)
			fail_msg("kvm: unexpected exit %u", e.reason);
	}
}

/* Soft: the same accesses, issued by the caller at CPL3. */
static void run_soft(struct machine *m, const struct phase *p)
{
	for (unsigned int i = 0; i < p->nr_ops; i++) {
		uint64_t gva = p->ops[i] & ~1ULL, data = p->value;
		unsigned int kind = p->ops[i] & 1 ? VMMU_SOFT_WRITE : VMMU_SOFT_READ;
		int ret;

		while ((ret = vmmu_soft_access(m->g.vcpu, gva, 8, kind, 3, &data, NULL)) ==
		       VMMU_SOFT_DIRTY_RING_FULL)
			ring_full(m);
		assert_int_equal(ret, VMMU_SOFT_OK);
	}
}

static void check_log(const char *backend, const char *mode, unsigned int phase, const uint64_t *got,
		      const uint64_t *expect)
{
	for (uint64_t pg = 0; pg < LOG_PAGES; pg++) {
		bool g = got[pg / 64] >> (pg % 64) & 1, x = expect[pg / 64] >> (pg % 64) & 1;

		if (g != x)
			fail_msg("%s, %s, phase %u: page %llu %s", backend, mode, phase, (unsigned long long)pg,
				 x ? "was written but not reported (dropped)" :
				     "was reported but not written (added)");
	}
}

static bool has_cap(const struct vmmu_vm *vm, uint32_t cap)
{
	struct vmmu_vm_caps caps = { .size = sizeof(caps) };

	assert_int_equal(vmmu_vm_get_caps(vm, &caps), 0);
	return caps.flags & cap;
}

static const struct {
	const char *name;
	uint32_t mode, cap;
} modes[] = {
	{ "get-clear", VMMU_DIRTY_GET_CLEAR, VMMU_CAP_DIRTY_LOG },
	{ "manual", VMMU_DIRTY_MANUAL, VMMU_CAP_DIRTY_MANUAL },
	{ "ring", VMMU_DIRTY_RING, VMMU_CAP_DIRTY_RING },
};

static unsigned int modes_run;

/* Every mode both backends offer, each with the same script. */
static void test_same_dirty_set(void **state)
{
	struct machine *kvm = calloc(1, sizeof(*kvm)), *soft = calloc(1, sizeof(*soft));
	struct phase *p = calloc(1, sizeof(*p));

	(void)state;
	assert_non_null(kvm);
	assert_non_null(soft);
	assert_non_null(p);
	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		struct vmmu_vm_options o = { .size = sizeof(o), .dirty_mode = modes[i].mode,
					     .ring_entries = modes[i].mode == VMMU_DIRTY_RING ? RING_SIZE : 0 };
		struct vmmu_vm *probe[2] = { NULL, NULL };
		uint64_t seed = 0x9e3779b97f4a7c15ULL, writes = 0, dirty = 0, warm = 0;

		/* Both backends must offer the mode (default options probe the caps). */
		assert_int_equal(vmmu_vm_create(&probe[0], "kvm", NULL), 0);
		assert_int_equal(vmmu_vm_create(&probe[1], "soft", NULL), 0);
		bool both = has_cap(probe[0], modes[i].cap) && has_cap(probe[1], modes[i].cap);

		vmmu_vm_destroy(probe[0]);
		vmmu_vm_destroy(probe[1]);
		if (!both) {
			printf("mode %s: not offered by both backends, not compared\n", modes[i].name);
			continue;
		}
		machine_create(kvm, "kvm", &o);
		machine_create(soft, "soft", &o);
		/* Warm-up: read every page once (see the top of the file). */
		memset(p, 0, sizeof(*p));
		for (uint64_t pg = 0; pg < LOG_PAGES; pg++)
			p->ops[p->nr_ops++] = LOG_GPA + pg * 4096;
		run_kvm(kvm, p);
		run_soft(soft, p);
		assert_int_equal(vmmu_vm_dirty_get(kvm->g.vm, LOG_SLOT, kvm->bitmap), 0);
		assert_int_equal(vmmu_vm_dirty_get(soft->g.vm, LOG_SLOT, soft->bitmap), 0);
		check_log("soft", modes[i].name, 0, soft->bitmap, p->expect);
		for (unsigned int w = 0; w < LOG_WORDS; w++)
			warm += (uint64_t)__builtin_popcountll(kvm->bitmap[w]);
		for (unsigned int n = 0; n < PHASES; n++) {
			make_phase(p, &seed, n);
			run_kvm(kvm, p);
			run_soft(soft, p);
			assert_int_equal(vmmu_vm_dirty_get(kvm->g.vm, LOG_SLOT, kvm->bitmap), 0);
			assert_int_equal(vmmu_vm_dirty_get(soft->g.vm, LOG_SLOT, soft->bitmap), 0);
			check_log("kvm", modes[i].name, n, kvm->bitmap, p->expect);
			check_log("soft", modes[i].name, n, soft->bitmap, p->expect);
			assert_memory_equal(kvm->log.hva, soft->log.hva, LOG_PAGES * 4096);
			for (unsigned int w = 0; w < LOG_WORDS; w++)
				dirty += (uint64_t)__builtin_popcountll(p->expect[w]);
			for (unsigned int k = 0; k < p->nr_ops; k++)
				writes += p->ops[k] & 1;
		}
		printf("mode %s: %u phases, %llu writes, %llu dirty pages reported alike; ring-full: kvm %u, "
		       "soft %u; warm-up reads logged by kvm: %llu\n",
		       modes[i].name, PHASES, (unsigned long long)writes, (unsigned long long)dirty,
		       kvm->ring_full, soft->ring_full, (unsigned long long)warm);
		if (modes[i].mode == VMMU_DIRTY_RING)
			assert_true(kvm->ring_full > 0 && soft->ring_full > 0); /* the full path was taken */
		machine_destroy(kvm);
		machine_destroy(soft);
		modes_run++;
	}
	free(kvm);
	free(soft);
	free(p);
	assert_true(modes_run > 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_same_dirty_set),
	};

	guest_skip_without_kvm();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
