/* SPDX-License-Identifier: MIT */
/*
 * The dirty formats against KVM itself (needs /dev/kvm; exits 77 without it):
 *  - KVM_CLEAR_DIRTY_LOG as the oracle for vmmu_dirty_bitmap_clear(): the same
 *    (first, num_pages, mask) sequence is accepted or refused alike and leaves
 *    KVM's log and the library's bitmap identical word for word, starting from
 *    INITIALLY_SET on a slot whose size is not a multiple of 64;
 *  - KVM_GET_DIRTY_LOG's buffer, after a guest wrote 100 pages, is read by the
 *    library's iterator as exactly those pages;
 *  - KVM's mmap'ed dirty ring is harvested by vmmu_dirty_ring_harvest() over
 *    caller-provided storage, and KVM_RESET_DIRTY_RINGS accepts what it
 *    marked harvested, twice round.
 * The guest is 16-bit real-mode code (run by KVM's emulator on this machine)
 * writing one byte to each of 100 consecutive pages.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "test_dirty_helpers.h"

#define SLOT_PAGES 200 /* not a multiple of 64 */
#define FIRST_WRITTEN 32
#define NR_WRITTEN 100
#define RING_ENTRIES 4096

static int kvm_fd = -1;

struct vm {
	int fd, vcpu_fd;
	uint8_t *mem;
	struct kvm_run *run;
	size_t run_size;
	struct vmmu_dirty_gfn *ring;
};

static int setup(void **state)
{
	(void)state;
	kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm_fd < 0) {
		char why[128];

		snprintf(why, sizeof(why), "cannot open /dev/kvm: %s", strerror(errno));
		test_skip_all(why);
	}
	if (ioctl(kvm_fd, KVM_GET_API_VERSION, 0) != KVM_API_VERSION)
		test_skip_all("unexpected KVM API version");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	close(kvm_fd);
	return 0;
}

static void enable_cap(int fd, uint32_t cap, uint64_t arg)
{
	struct kvm_enable_cap c = { .cap = cap, .args = { arg } };

	assert_int_equal(ioctl(fd, KVM_ENABLE_CAP, &c), 0);
}

/* A VM with one slot of SLOT_PAGES pages at gpa 0 with dirty logging on. */
static void vm_create(struct vm *vm, uint64_t manual_flags, bool ring)
{
	struct kvm_userspace_memory_region region = { 0 };

	memset(vm, 0, sizeof(*vm));
	vm->vcpu_fd = -1;
	vm->fd = ioctl(kvm_fd, KVM_CREATE_VM, 0);
	assert_true(vm->fd >= 0);
	if (manual_flags)
		enable_cap(vm->fd, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, manual_flags);
	if (ring) {
		uint32_t cap = ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_DIRTY_LOG_RING_ACQ_REL) > 0 ?
				       KVM_CAP_DIRTY_LOG_RING_ACQ_REL :
				       KVM_CAP_DIRTY_LOG_RING;

		enable_cap(vm->fd, cap, RING_ENTRIES * sizeof(struct kvm_dirty_gfn));
	}
	vm->mem = mmap(NULL, SLOT_PAGES * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(vm->mem != MAP_FAILED);
	region.slot = 0;
	region.flags = KVM_MEM_LOG_DIRTY_PAGES;
	region.guest_phys_addr = 0;
	region.memory_size = SLOT_PAGES * 4096;
	region.userspace_addr = (uintptr_t)vm->mem;
	assert_int_equal(ioctl(vm->fd, KVM_SET_USER_MEMORY_REGION, &region), 0);
}

static void vm_destroy(struct vm *vm)
{
	if (vm->ring)
		munmap(vm->ring, RING_ENTRIES * sizeof(struct kvm_dirty_gfn));
	if (vm->run)
		munmap(vm->run, vm->run_size);
	if (vm->vcpu_fd >= 0)
		close(vm->vcpu_fd);
	munmap(vm->mem, SLOT_PAGES * 4096);
	close(vm->fd);
}

/*
 * 16-bit code at 0x1000: for (es = FIRST_WRITTEN * 0x100, cx = NR_WRITTEN; cx; es += 0x100, cx--)
 * es:[0] = 1; then hlt.
 */
static const uint8_t guest_code[] = {
	0xb9, NR_WRITTEN, 0x00,                   /* mov cx, NR_WRITTEN */
	0xb8, 0x00, FIRST_WRITTEN,                /* mov ax, FIRST_WRITTEN << 8 */
	0x8e, 0xc0,                               /* 1: mov es, ax */
	0x26, 0xc6, 0x06, 0x00, 0x00, 0x01,       /* mov byte es:[0], 1 */
	0x05, 0x00, 0x01,                         /* add ax, 0x100 */
	0x49,                                     /* dec cx */
	0x75, 0xf2,                               /* jnz 1b */
	0xf4,                                     /* hlt */
};

static void vcpu_create(struct vm *vm, bool ring)
{
	int size;

	memcpy(vm->mem + 0x1000, guest_code, sizeof(guest_code));
	assert_int_equal(ioctl(vm->fd, KVM_SET_TSS_ADDR, 0xfffbd000ul), 0);
	vm->vcpu_fd = ioctl(vm->fd, KVM_CREATE_VCPU, 0);
	assert_true(vm->vcpu_fd >= 0);
	size = ioctl(kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	assert_true(size > 0);
	vm->run_size = (size_t)size;
	vm->run = mmap(NULL, vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vm->vcpu_fd, 0);
	assert_true(vm->run != MAP_FAILED);
	if (ring) {
		vm->ring = mmap(NULL, RING_ENTRIES * sizeof(struct kvm_dirty_gfn), PROT_READ | PROT_WRITE, MAP_SHARED,
				vm->vcpu_fd, 64 * sysconf(_SC_PAGESIZE));
		assert_true(vm->ring != MAP_FAILED);
	}
}

/* Run the guest from its first instruction to its hlt. */
static void vcpu_run_to_hlt(struct vm *vm)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs = { .rip = 0x1000, .rflags = 2 };

	assert_int_equal(ioctl(vm->vcpu_fd, KVM_GET_SREGS, &sregs), 0);
	sregs.cs.base = 0;
	sregs.cs.selector = 0;
	assert_int_equal(ioctl(vm->vcpu_fd, KVM_SET_SREGS, &sregs), 0);
	assert_int_equal(ioctl(vm->vcpu_fd, KVM_SET_REGS, &regs), 0);
	for (;;) {
		assert_int_equal(ioctl(vm->vcpu_fd, KVM_RUN, 0), 0);
		if (vm->run->exit_reason == KVM_EXIT_HLT)
			return;
		/* a full ring would exit with KVM_EXIT_DIRTY_RING_FULL; 100 pages never fill 4096 entries */
		fail_msg("unexpected exit reason %u", vm->run->exit_reason);
	}
}

static void kvm_get_log(struct vm *vm, uint64_t *buf)
{
	struct kvm_dirty_log log = { .slot = 0, .dirty_bitmap = buf };

	assert_int_equal(ioctl(vm->fd, KVM_GET_DIRTY_LOG, &log), 0);
}

static int kvm_clear_log(struct vm *vm, uint64_t first, uint32_t num, uint64_t *mask)
{
	struct kvm_clear_dirty_log c = { .slot = 0, .num_pages = num, .first_page = first, .dirty_bitmap = mask };

	return ioctl(vm->fd, KVM_CLEAR_DIRTY_LOG, &c) ? -errno : 0;
}

/* KVM_CLEAR_DIRTY_LOG is the oracle: same verdicts, same log after every call. */
static void test_clear_matches_kvm(void **state)
{
	static const struct {
		uint64_t first;
		uint32_t num;
	} edges[] = {
		{ 0, 0 },   { 0, 64 },   { 1, 64 },    { 32, 64 },  { 64, 1 },   { 0, 65 },  { 128, 71 },
		{ 128, 72 }, { 192, 8 },  { 192, 7 },   { 192, 64 }, { 200, 0 }, { 256, 0 }, { 64, 136 },
		{ 64, 137 }, { 0, 200 },  { 0, 201 },   { 0, 192 },  { 128, 0 }, { 64, 128 }, { 0, 0xffffffc0u },
	};
	uint64_t caps = (uint64_t)ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2);
	const uint64_t want_caps = KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE | KVM_DIRTY_LOG_INITIALLY_SET;
	struct vmmu_dirty_bitmap *bm;
	uint64_t kbuf[4], vbuf[4], mask[8], seed = 42;
	struct log_capture cap;
	unsigned int accepted = 0, refused = 0;
	int64_t cleared = 0;
	struct vm vm;

	(void)state;
	if ((caps & want_caps) != want_caps)
		skip();
	vm_create(&vm, want_caps, false);
	assert_int_equal(vmmu_dirty_bitmap_create(0, SLOT_PAGES, VMMU_DIRTY_INITIALLY_SET, &bm), 0);
	/* INITIALLY_SET: all 200 pages, and nothing past them, in both */
	kvm_get_log(&vm, kbuf);
	assert_int_equal(vmmu_dirty_bitmap_get(bm, vbuf), SLOT_PAGES);
	assert_memory_equal(kbuf, vbuf, VMMU_DIRTY_WORDS(SLOT_PAGES) * 8);

	log_capture_start(&cap);
	for (unsigned int i = 0; i < 400; i++) {
		uint64_t first;
		uint32_t num;
		int kret;
		int64_t vret;

		if (i < sizeof(edges) / sizeof(edges[0])) {
			first = edges[i].first;
			num = edges[i].num;
		} else {
			first = test_rand64(&seed) % 4 ? test_rand64(&seed) % 4 * 64 : test_rand64(&seed) % 260;
			num = (uint32_t)(test_rand64(&seed) % 4 ? test_rand64(&seed) % 4 * 64 : test_rand64(&seed) % 260);
			if (test_rand64(&seed) % 4 == 0 && first <= SLOT_PAGES)
				num = (uint32_t)(SLOT_PAGES - first);
		}
		for (unsigned int k = 0; k < 8; k++)
			mask[k] = test_rand64(&seed) % 3 ? test_rand64(&seed) | test_rand64(&seed) : ~0ULL;
		/* refill now and then, so that there is something to clear */
		if (i % 16 == 15) {
			vmmu_dirty_bitmap_destroy(bm);
			vm_destroy(&vm);
			vm_create(&vm, want_caps, false);
			assert_int_equal(vmmu_dirty_bitmap_create(0, SLOT_PAGES, VMMU_DIRTY_INITIALLY_SET, &bm), 0);
		}
		kret = kvm_clear_log(&vm, first, num, mask);
		vret = vmmu_dirty_bitmap_clear(bm, first, num, mask, NULL, NULL);
		if ((kret == 0) != (vret >= 0) || (kret && kret != vret))
			fail_msg("clear(first %llu, %u pages): KVM %d, libvmmu %lld", (unsigned long long)first, num,
				 kret, (long long)vret);
		if (vret >= 0) {
			accepted++;
			cleared += vret;
		} else {
			refused++;
		}
		kvm_get_log(&vm, kbuf);
		vmmu_dirty_bitmap_get(bm, vbuf);
		if (memcmp(kbuf, vbuf, VMMU_DIRTY_WORDS(SLOT_PAGES) * 8))
			fail_msg("after clear(first %llu, %u pages) the logs differ", (unsigned long long)first, num);
	}
	log_capture_stop();
	assert_int_equal(cap.lines, refused); /* each refusal logged once */
	printf("%u clears accepted (%lld pages cleared), %u refused, alike in KVM and libvmmu\n", accepted,
	       (long long)cleared, refused);
	assert_true(accepted > 50 && refused > 50 && cleared > 1000);
	vmmu_dirty_bitmap_destroy(bm);
	vm_destroy(&vm);
}

/* KVM_GET_DIRTY_LOG's buffer, read with the library's iterators. */
static void test_kvm_bitmap_layout(void **state)
{
	struct vmmu_dirty_bitmap *bm;
	uint64_t buf[4], got[4];
	struct vmmu_dirty_iter it;
	struct vmmu_dirty_range r;
	vmmu_gfn_t gfn, expect = FIRST_WRITTEN;
	struct vm vm;

	(void)state;
	vm_create(&vm, 0, false);
	vcpu_create(&vm, false);
	kvm_get_log(&vm, buf); /* start from a clean log */
	vcpu_run_to_hlt(&vm);
	kvm_get_log(&vm, buf);

	vmmu_dirty_iter_init(&it, buf, SLOT_PAGES, 0x1000);
	assert_true(vmmu_dirty_iter_next_range(&it, &r));
	assert_int_equal(r.first, 0x1000 + FIRST_WRITTEN);
	assert_int_equal(r.npages, NR_WRITTEN);
	assert_false(vmmu_dirty_iter_next_range(&it, &r));
	vmmu_dirty_iter_init(&it, buf, SLOT_PAGES, 0);
	while (vmmu_dirty_iter_next(&it, &gfn))
		assert_int_equal(gfn, expect++);
	assert_int_equal(expect, FIRST_WRITTEN + NR_WRITTEN);

	/* merged into a bitmap with a page the VMM wrote itself */
	assert_int_equal(vmmu_dirty_bitmap_create(0, SLOT_PAGES, 0, &bm), 0);
	assert_int_equal(vmmu_dirty_bitmap_mark(bm, 5), 0);
	assert_int_equal(vmmu_dirty_bitmap_merge_buf(bm, buf), 0);
	assert_int_equal(vmmu_dirty_bitmap_get_and_clear(bm, got, NULL, NULL), NR_WRITTEN + 1);
	buf[0] |= 1ULL << 5;
	assert_memory_equal(got, buf, VMMU_DIRTY_WORDS(SLOT_PAGES) * 8);
	vmmu_dirty_bitmap_destroy(bm);
	vm_destroy(&vm);
}

/* KVM's own ring, harvested by the library; KVM_RESET_DIRTY_RINGS takes the harvested entries back. */
static void test_kvm_ring_harvest(void **state)
{
	struct vmmu_dirty_gfn out[RING_ENTRIES];
	struct vmmu_dirty_ring *ring;
	struct vm vm;

	(void)state;
	if (ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_DIRTY_LOG_RING) <= 0)
		skip();
	vm_create(&vm, 0, true);
	vcpu_create(&vm, true);
	assert_int_equal(vmmu_dirty_ring_create(RING_ENTRIES, 64, vm.ring, &ring), 0);
	for (int round = 0; round < 2; round++) {
		uint8_t seen[SLOT_PAGES] = { 0 };
		int n, reset;

		vcpu_run_to_hlt(&vm);
		n = vmmu_dirty_ring_harvest(ring, out, RING_ENTRIES);
		/* every written page at least once (KVM may repeat a page), nothing else */
		assert_true(n >= NR_WRITTEN);
		for (int i = 0; i < n; i++) {
			assert_int_equal(out[i].slot, 0);
			assert_true(out[i].offset >= FIRST_WRITTEN && out[i].offset < FIRST_WRITTEN + NR_WRITTEN);
			seen[out[i].offset] = 1;
		}
		for (int p = FIRST_WRITTEN; p < FIRST_WRITTEN + NR_WRITTEN; p++)
			assert_int_equal(seen[p], 1);
		assert_int_equal(vmmu_dirty_ring_harvest(ring, out, RING_ENTRIES), 0);
		reset = ioctl(vm.fd, KVM_RESET_DIRTY_RINGS, 0);
		assert_int_equal(reset, n);
		/* KVM freed the entries the library marked harvested */
		for (int i = 0; i < RING_ENTRIES; i++)
			assert_int_equal(vm.ring[i].flags, 0);
		printf("round %d: KVM pushed %d entries, all harvested and reset\n", round, n);
	}
	vmmu_dirty_ring_destroy(ring);
	vm_destroy(&vm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_clear_matches_kvm),
		cmocka_unit_test(test_kvm_bitmap_layout),
		cmocka_unit_test(test_kvm_ring_harvest),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
