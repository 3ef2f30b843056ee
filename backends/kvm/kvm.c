/* SPDX-License-Identifier: MIT */
/*
 * The KVM backend: /dev/kvm drives the hardware, libvmmu drives memslots,
 * vCPUs, KVM_RUN, dirty logs (bitmap, manual protect, ring) and ioeventfds.
 * Written from Documentation/virt/kvm/api.rst.
 *
 * errno becomes -errno in exactly one place: sys_error(), which kvm_ioctl()
 * (every ioctl) and the few open/mmap calls go through.
 */

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <linux/kvm.h>

#include <libvmmu/dirty.h>
#include <libvmmu/kvm.h>

#include "backend.h"
#include "vmmu-features.h"

static_assert(sizeof(struct vmmu_dirty_gfn) == sizeof(struct kvm_dirty_gfn), "ring entry layout");

/* Newer than some installed headers. */
#ifndef KVM_EXIT_MEMORY_FAULT
#define KVM_EXIT_MEMORY_FAULT 39
#endif
#ifndef KVM_CAP_DIRTY_LOG_RING_ACQ_REL
#define KVM_CAP_DIRTY_LOG_RING_ACQ_REL 223
#endif

struct kvm_vm {
	struct vmmu_vm base;
	int sys_fd, fd;
	int run_size;
	const struct kvm_cpuid2 *cpuid; /* what KVM supports (shared cache); every vCPU gets it */
	bool acq_rel;             /* ring enabled with the ACQ_REL capability */
};

struct kvm_vcpu {
	struct vmmu_vcpu base;
	int fd;
	struct kvm_run *run;
	struct kvm_dirty_gfn *ring;      /* KVM's ring, mmap'ed */
	struct vmmu_dirty_ring *dring;   /* the consumer side of it (src/dirty.c) */
	atomic_bool in_run;
	pthread_t thread;         /* valid while in_run */
};

static inline struct kvm_vm *to_kvm(struct vmmu_vm *vm) { return (struct kvm_vm *)vm; }
static inline struct kvm_vcpu *to_kcpu(struct vmmu_vcpu *v) { return (struct kvm_vcpu *)v; }

/* The one place errno becomes -errno; logs "@what: reason" unless @quiet. */
static int sys_error(const char *what, bool quiet)
{
	int err = errno;

	if (!quiet)
		log_err("kvm: %s: %s", what, strerror(err));
	return -err;
}

static long kvm_ioctl(int fd, unsigned long req, const char *name, uintptr_t arg)
{
	long ret = ioctl(fd, req, arg);

	/* EINTR/EAGAIN from KVM_RUN are not failures; the caller decides. */
	if (ret < 0)
		return sys_error(name, errno == EINTR || errno == EAGAIN);
	return ret;
}

#define KVM_IOCTL(fd, req, arg) kvm_ioctl((fd), (req), #req, (uintptr_t)(arg))

bool kvm_available(void)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);

	if (fd < 0)
		return false;
	close(fd);
	return true;
}

/* ------------------------------------------------------------ the VM */

static long check_cap(struct kvm_vm *k, long cap)
{
	long r = KVM_IOCTL(k->fd, KVM_CHECK_EXTENSION, cap);

	return r < 0 ? 0 : r;
}

static void probe_caps(struct kvm_vm *k)
{
	struct vmmu_vm_caps *c = &k->base.caps;
	long r;

	c->flags = VMMU_CAP_KICK;
	if (check_cap(k, KVM_CAP_READONLY_MEM))
		c->flags |= VMMU_CAP_READONLY_MEM;
	c->flags |= VMMU_CAP_DIRTY_LOG; /* KVM_GET_DIRTY_LOG is in every KVM with memslots */
	if (check_cap(k, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2) & KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE)
		c->flags |= VMMU_CAP_DIRTY_MANUAL;
	r = check_cap(k, KVM_CAP_DIRTY_LOG_RING);
	if (r > 0) {
		c->flags |= VMMU_CAP_DIRTY_RING;
		c->max_ring_entries = (uint32_t)(r / sizeof(struct kvm_dirty_gfn));
	}
	r = check_cap(k, KVM_CAP_DIRTY_LOG_RING_ACQ_REL);
	if (r > 0) {
		c->flags |= VMMU_CAP_DIRTY_RING | VMMU_CAP_DIRTY_RING_ACQ_REL;
		c->max_ring_entries = (uint32_t)(r / sizeof(struct kvm_dirty_gfn));
	}
	if (check_cap(k, KVM_CAP_IOEVENTFD))
		c->flags |= VMMU_CAP_NOTIFIER;
	c->flags |= VMMU_CAP_TRANSLATE;
	r = check_cap(k, KVM_CAP_MAX_VCPUS);
	if (r <= 0)
		r = check_cap(k, KVM_CAP_NR_VCPUS);
	c->max_vcpus = r > 0 ? (uint32_t)r : 1;
	r = check_cap(k, KVM_CAP_NR_MEMSLOTS);
	c->max_memslots = r > 0 ? (uint32_t)r : 32;
	/* The guest CPU is what KVM supports (every vCPU gets that CPUID): MAXPHYADDR, GB pages, vendor. */
	c->maxphyaddr = 36;
	for (uint32_t i = 0; i < k->cpuid->nent; i++) {
		const struct kvm_cpuid_entry2 *e = &k->cpuid->entries[i];

		if (e->function == 0x80000008)
			c->maxphyaddr = e->eax & 0xff;
		if (e->function == 0x80000001 && (e->edx & (1u << 26)))
			k->base.paging_flags |= VMMU_PAGING_F_GBPAGES;
		if (e->function == 0 && e->ebx == 0x68747541) /* "Auth"enticAMD */
			k->base.paging_flags |= VMMU_PAGING_F_AMD;
	}
}

/*
 * KVM_GET_SUPPORTED_CPUID costs ~100 us and its answer does not change while
 * the process runs: read it once and share it (read-only) between VMs.
 */
static pthread_mutex_t cpuid_lock = PTHREAD_MUTEX_INITIALIZER;
static struct kvm_cpuid2 *cpuid_cache; /* kept for the life of the process */

static int read_supported_cpuid(int sys_fd, struct kvm_cpuid2 **out)
{
	for (uint32_t n = 64; n <= 4096; n *= 2) {
		struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + n * sizeof(c->entries[0]));
		long r;

		if (!c)
			return -ENOMEM;
		c->nent = n;
		/* E2BIG: the buffer is too small; grow it (not worth a log line). */
		r = ioctl(sys_fd, KVM_GET_SUPPORTED_CPUID, c);
		if (r == 0) {
			*out = c;
			return 0;
		}
		r = sys_error("KVM_GET_SUPPORTED_CPUID", errno == E2BIG);
		free(c);
		if (r != -E2BIG)
			return (int)r;
	}
	log_err("kvm: KVM_GET_SUPPORTED_CPUID: more than 4096 entries");
	return -E2BIG;
}

static int get_supported_cpuid(struct kvm_vm *k)
{
	int ret = 0;

	pthread_mutex_lock(&cpuid_lock);
	if (!cpuid_cache)
		ret = read_supported_cpuid(k->sys_fd, &cpuid_cache);
	k->cpuid = cpuid_cache;
	pthread_mutex_unlock(&cpuid_lock);
	return ret;
}

static int enable_dirty_mode(struct kvm_vm *k, const struct vmmu_vm_options *o)
{
	struct kvm_enable_cap cap = { 0 };
	const struct vmmu_vm_caps *c = &k->base.caps;

	switch (o->dirty_mode) {
	case VMMU_DIRTY_MANUAL:
		if (!(c->flags & VMMU_CAP_DIRTY_MANUAL)) {
			log_err("kvm: KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 is missing: no MANUAL dirty mode");
			return -EOPNOTSUPP;
		}
		cap.cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2;
		cap.args[0] = KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE;
		if (o->flags & VMMU_VM_F_INITIALLY_SET) {
			long offered = check_cap(k, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2);

			if (!(offered & KVM_DIRTY_LOG_INITIALLY_SET)) {
				log_err("kvm: KVM_DIRTY_LOG_INITIALLY_SET is not offered");
				return -EOPNOTSUPP;
			}
			cap.args[0] |= KVM_DIRTY_LOG_INITIALLY_SET;
		}
		return (int)KVM_IOCTL(k->fd, KVM_ENABLE_CAP, &cap);
	case VMMU_DIRTY_RING:
		if (!(c->flags & VMMU_CAP_DIRTY_RING)) {
			log_err("kvm: KVM_CAP_DIRTY_LOG_RING is missing: no RING dirty mode");
			return -EOPNOTSUPP;
		}
		if (o->ring_entries > c->max_ring_entries) {
			log_err("kvm: a ring of %u entries is larger than KVM's %u", o->ring_entries,
				c->max_ring_entries);
			return -EOPNOTSUPP;
		}
		/* ACQ_REL where offered: correct on weakly ordered hosts too. */
		k->acq_rel = c->flags & VMMU_CAP_DIRTY_RING_ACQ_REL;
		cap.cap = k->acq_rel ? KVM_CAP_DIRTY_LOG_RING_ACQ_REL : KVM_CAP_DIRTY_LOG_RING;
		cap.args[0] = (uint64_t)o->ring_entries * sizeof(struct kvm_dirty_gfn);
		return (int)KVM_IOCTL(k->fd, KVM_ENABLE_CAP, &cap);
	default:
		return 0;
	}
}

static void kvm_vm_destroy(struct vmmu_vm *vm)
{
	struct kvm_vm *k = to_kvm(vm);

	if (k->fd >= 0)
		close(k->fd);
	if (k->sys_fd >= 0)
		close(k->sys_fd);
	vm_finish(vm);
	free(k);
}

static int kvm_vm_create(struct vmmu_vm **out, const struct vmmu_vm_options *opts)
{
	struct kvm_vm *k = calloc(1, sizeof(*k));
	long r;
	int ret;

	if (!k)
		return -ENOMEM;
	k->sys_fd = k->fd = -1;
	ret = vm_init(&k->base, &kvm_vm_ops, opts);
	if (ret) {
		free(k);
		return ret;
	}
	k->sys_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (k->sys_fd < 0) {
		ret = sys_error("open /dev/kvm", false);
		goto fail;
	}
	r = KVM_IOCTL(k->sys_fd, KVM_GET_API_VERSION, 0);
	if (r != KVM_API_VERSION) {
		log_err("kvm: API version %ld, expected %d", r, KVM_API_VERSION);
		ret = r < 0 ? (int)r : -EOPNOTSUPP;
		goto fail;
	}
	r = KVM_IOCTL(k->sys_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (r < 0) {
		ret = (int)r;
		goto fail;
	}
	k->run_size = (int)r;
	ret = get_supported_cpuid(k);
	if (ret)
		goto fail;
	r = KVM_IOCTL(k->sys_fd, KVM_CREATE_VM, 0);
	if (r < 0) {
		ret = (int)r;
		goto fail;
	}
	k->fd = (int)r;
	probe_caps(k);
	ret = enable_dirty_mode(k, opts);
	if (ret)
		goto fail;
	*out = &k->base;
	return 0;
fail:
	kvm_vm_destroy(&k->base);
	return ret;
}

static int kvm_memslot_set(struct vmmu_vm *vm, uint32_t id, vmmu_gpa_t gpa, uint64_t size, void *hva,
			   uint32_t flags)
{
	struct kvm_userspace_memory_region r = {
		.slot = id,
		.flags = (flags & VMMU_MEMSLOT_LOG_DIRTY ? KVM_MEM_LOG_DIRTY_PAGES : 0) |
			 (flags & VMMU_MEMSLOT_READONLY ? KVM_MEM_READONLY : 0),
		.guest_phys_addr = gpa,
		.memory_size = size,
		.userspace_addr = (uintptr_t)hva,
	};

	return (int)KVM_IOCTL(to_kvm(vm)->fd, KVM_SET_USER_MEMORY_REGION, &r);
}

static int kvm_memslot_delete(struct vmmu_vm *vm, uint32_t id, vmmu_gpa_t gpa)
{
	struct kvm_userspace_memory_region r = { .slot = id, .guest_phys_addr = gpa };

	return (int)KVM_IOCTL(to_kvm(vm)->fd, KVM_SET_USER_MEMORY_REGION, &r);
}

/* ---------------------------------------------------------- vCPUs */

static void kick_handler(int sig)
{
	(void)sig; /* the kicker set immediate_exit; the signal only ends KVM_RUN */
}

static int kick_signal(void)
{
	return SIGRTMIN;
}

static pthread_once_t kick_once = PTHREAD_ONCE_INIT;

static void install_kick_handler(void)
{
	struct sigaction sa, old;

	if (sigaction(kick_signal(), NULL, &old) == 0 && old.sa_handler != SIG_DFL)
		return; /* the application owns this signal; kicks then rely on its handler */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = kick_handler;
	sigemptyset(&sa.sa_mask);
	sigaction(kick_signal(), &sa, NULL);
}

static int kvm_vcpu_create(struct vmmu_vm *vm, uint32_t id, struct vmmu_vcpu **out)
{
	struct kvm_vm *k = to_kvm(vm);
	struct kvm_vcpu *c = calloc(1, sizeof(*c));
	long r;
	int ret;

	if (!c)
		return -ENOMEM;
	pthread_once(&kick_once, install_kick_handler);
	r = KVM_IOCTL(k->fd, KVM_CREATE_VCPU, id);
	if (r < 0) {
		free(c);
		return (int)r;
	}
	c->fd = (int)r;
	c->run = mmap(NULL, k->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, c->fd, 0);
	if (c->run == MAP_FAILED) {
		ret = sys_error("mmap kvm_run", false);
		c->run = NULL;
		goto fail;
	}
	if (vm->opts.dirty_mode == VMMU_DIRTY_RING) {
		size_t bytes = (size_t)vm->opts.ring_entries * sizeof(struct kvm_dirty_gfn);

		c->ring = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, c->fd,
			       KVM_DIRTY_LOG_PAGE_OFFSET * sysconf(_SC_PAGESIZE));
		if (c->ring == MAP_FAILED) {
			ret = sys_error("mmap the dirty ring", false);
			c->ring = NULL;
			goto fail;
		}
		/* KVM produces; the dirty module harvests. 64 reserved entries, as KVM keeps without PML. */
		ret = vmmu_dirty_ring_create(vm->opts.ring_entries, 64, c->ring, &c->dring);
		if (ret)
			goto fail;
	}
	ret = (int)KVM_IOCTL(c->fd, KVM_SET_CPUID2, k->cpuid);
	if (ret)
		goto fail;
	*out = &c->base;
	return 0;
fail:
	if (c->ring)
		munmap(c->ring, (size_t)vm->opts.ring_entries * sizeof(struct kvm_dirty_gfn));
	if (c->run)
		munmap(c->run, k->run_size);
	close(c->fd);
	free(c);
	return ret;
}

static void kvm_vcpu_release(struct vmmu_vcpu *vcpu)
{
	struct kvm_vcpu *c = to_kcpu(vcpu);
	struct vmmu_vm *vm = vcpu->vm;

	vmmu_dirty_ring_destroy(c->dring);
	if (c->ring)
		munmap(c->ring, (size_t)vm->opts.ring_entries * sizeof(struct kvm_dirty_gfn));
	if (c->run)
		munmap(c->run, to_kvm(vm)->run_size);
	close(c->fd);
	c->dring = NULL;
	c->ring = NULL;
	c->run = NULL;
	c->fd = -1;
}

static void kvm_vcpu_free(struct vmmu_vcpu *vcpu)
{
	free(vcpu);
}

static int kvm_get_regs(struct vmmu_vcpu *vcpu, struct vmmu_regs *regs)
{
	struct kvm_regs r;
	int ret = (int)KVM_IOCTL(to_kcpu(vcpu)->fd, KVM_GET_REGS, &r);

	if (ret)
		return ret;
	*regs = (struct vmmu_regs){
		.rax = r.rax, .rbx = r.rbx, .rcx = r.rcx, .rdx = r.rdx,
		.rsi = r.rsi, .rdi = r.rdi, .rsp = r.rsp, .rbp = r.rbp,
		.r8 = r.r8, .r9 = r.r9, .r10 = r.r10, .r11 = r.r11,
		.r12 = r.r12, .r13 = r.r13, .r14 = r.r14, .r15 = r.r15,
		.rip = r.rip, .rflags = r.rflags,
	};
	return 0;
}

static int kvm_set_regs(struct vmmu_vcpu *vcpu, const struct vmmu_regs *regs)
{
	struct kvm_regs r = {
		.rax = regs->rax, .rbx = regs->rbx, .rcx = regs->rcx, .rdx = regs->rdx,
		.rsi = regs->rsi, .rdi = regs->rdi, .rsp = regs->rsp, .rbp = regs->rbp,
		.r8 = regs->r8, .r9 = regs->r9, .r10 = regs->r10, .r11 = regs->r11,
		.r12 = regs->r12, .r13 = regs->r13, .r14 = regs->r14, .r15 = regs->r15,
		.rip = regs->rip, .rflags = regs->rflags,
	};

	return (int)KVM_IOCTL(to_kcpu(vcpu)->fd, KVM_SET_REGS, &r);
}

static void seg_from_kvm(struct vmmu_segment *d, const struct kvm_segment *s)
{
	*d = (struct vmmu_segment){
		.base = s->base, .limit = s->limit, .selector = s->selector, .type = s->type,
		.present = s->present, .dpl = s->dpl, .db = s->db, .s = s->s, .l = s->l, .g = s->g,
		.avl = s->avl, .unusable = s->unusable,
	};
}

static void seg_to_kvm(struct kvm_segment *d, const struct vmmu_segment *s)
{
	*d = (struct kvm_segment){
		.base = s->base, .limit = s->limit, .selector = s->selector, .type = s->type,
		.present = s->present, .dpl = s->dpl, .db = s->db, .s = s->s, .l = s->l, .g = s->g,
		.avl = s->avl, .unusable = s->unusable,
	};
}

static int kvm_get_sregs(struct vmmu_vcpu *vcpu, struct vmmu_sregs *sregs)
{
	struct kvm_sregs s;
	int ret = (int)KVM_IOCTL(to_kcpu(vcpu)->fd, KVM_GET_SREGS, &s);

	if (ret)
		return ret;
	memset(sregs, 0, sizeof(*sregs));
	seg_from_kvm(&sregs->cs, &s.cs);
	seg_from_kvm(&sregs->ds, &s.ds);
	seg_from_kvm(&sregs->es, &s.es);
	seg_from_kvm(&sregs->fs, &s.fs);
	seg_from_kvm(&sregs->gs, &s.gs);
	seg_from_kvm(&sregs->ss, &s.ss);
	seg_from_kvm(&sregs->tr, &s.tr);
	seg_from_kvm(&sregs->ldt, &s.ldt);
	sregs->gdt = (struct vmmu_dtable){ .base = s.gdt.base, .limit = s.gdt.limit };
	sregs->idt = (struct vmmu_dtable){ .base = s.idt.base, .limit = s.idt.limit };
	sregs->cr0 = s.cr0;
	sregs->cr2 = s.cr2;
	sregs->cr3 = s.cr3;
	sregs->cr4 = s.cr4;
	sregs->cr8 = s.cr8;
	sregs->efer = s.efer;
	sregs->apic_base = s.apic_base;
	return 0;
}

static int kvm_set_sregs(struct vmmu_vcpu *vcpu, const struct vmmu_sregs *sregs)
{
	struct kvm_sregs s;
	int ret;

	/* Read first: the interrupt bitmap must be preserved. */
	ret = (int)KVM_IOCTL(to_kcpu(vcpu)->fd, KVM_GET_SREGS, &s);
	if (ret)
		return ret;
	seg_to_kvm(&s.cs, &sregs->cs);
	seg_to_kvm(&s.ds, &sregs->ds);
	seg_to_kvm(&s.es, &sregs->es);
	seg_to_kvm(&s.fs, &sregs->fs);
	seg_to_kvm(&s.gs, &sregs->gs);
	seg_to_kvm(&s.ss, &sregs->ss);
	seg_to_kvm(&s.tr, &sregs->tr);
	seg_to_kvm(&s.ldt, &sregs->ldt);
	s.gdt.base = sregs->gdt.base;
	s.gdt.limit = sregs->gdt.limit;
	s.idt.base = sregs->idt.base;
	s.idt.limit = sregs->idt.limit;
	s.cr0 = sregs->cr0;
	s.cr2 = sregs->cr2;
	s.cr3 = sregs->cr3;
	s.cr4 = sregs->cr4;
	s.cr8 = sregs->cr8;
	s.efer = sregs->efer;
	s.apic_base = sregs->apic_base;
	return (int)KVM_IOCTL(to_kcpu(vcpu)->fd, KVM_SET_SREGS, &s);
}

static void fill_exit(const struct kvm_run *run, struct vmmu_exit *e)
{
	memset(e, 0, sizeof(*e));
	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		e->reason = VMMU_EXIT_IO;
		e->io.port = run->io.port;
		e->io.size = run->io.size;
		e->io.is_write = run->io.direction == KVM_EXIT_IO_OUT;
		e->io.count = run->io.count;
		e->io.data = (uint8_t *)run + run->io.data_offset;
		return;
	case KVM_EXIT_MMIO:
		e->reason = VMMU_EXIT_MMIO;
		e->mmio.gpa = run->mmio.phys_addr;
		e->mmio.len = run->mmio.len;
		e->mmio.is_write = run->mmio.is_write;
		e->mmio.data = (uint8_t *)run->mmio.data;
		return;
	case KVM_EXIT_HLT:
		e->reason = VMMU_EXIT_HLT;
		return;
	case KVM_EXIT_SHUTDOWN:
		e->reason = VMMU_EXIT_SHUTDOWN;
		return;
	case KVM_EXIT_DIRTY_RING_FULL:
		e->reason = VMMU_EXIT_DIRTY_RING_FULL;
		return;
	case KVM_EXIT_INTR:
		e->reason = VMMU_EXIT_INTR;
		return;
	case KVM_EXIT_MEMORY_FAULT: {
		/* Layout (api.rst): flags, gpa, size, three u64 at the start of the union. */
		const uint64_t *mf = (const uint64_t *)&run->hw;

		e->reason = VMMU_EXIT_FAULT;
		e->fault.flags = mf[0];
		e->fault.gpa = mf[1];
		e->fault.size = mf[2];
		return;
	}
	case KVM_EXIT_INTERNAL_ERROR:
		e->reason = VMMU_EXIT_INTERNAL_ERROR;
		e->raw.reason = run->exit_reason;
		e->raw.data[0] = run->internal.suberror;
		e->raw.ndata = run->internal.ndata < 7 ? run->internal.ndata + 1 : 8;
		for (uint32_t i = 1; i < e->raw.ndata; i++)
			e->raw.data[i] = run->internal.data[i - 1];
		return;
	case KVM_EXIT_FAIL_ENTRY:
		e->reason = VMMU_EXIT_FAIL_ENTRY;
		e->raw.reason = run->exit_reason;
		e->raw.ndata = 1;
		e->raw.data[0] = run->fail_entry.hardware_entry_failure_reason;
		return;
	default:
		e->reason = VMMU_EXIT_UNKNOWN;
		e->raw.reason = run->exit_reason;
		e->raw.ndata = 1;
		e->raw.data[0] = run->hw.hardware_exit_reason;
		return;
	}
}

static int kvm_run_vcpu(struct vmmu_vcpu *vcpu, struct vmmu_exit *exit)
{
	struct kvm_vcpu *c = to_kcpu(vcpu);
	long r;

	c->thread = pthread_self();
	atomic_store(&c->in_run, true);
	for (int tries = 0;; tries++) {
		/* An output field; cleared so that a stale reason cannot explain this run's error. */
		c->run->exit_reason = KVM_EXIT_UNKNOWN;
		r = ioctl(c->fd, KVM_RUN, 0);
		if (r < 0) {
			/*
			 * Not failures: EINTR (signal, kick), EAGAIN (nothing ran: retried a
			 * few times), and EFAULT with KVM_EXIT_MEMORY_FAULT, which api.rst
			 * says comes with -1/EFAULT rather than 0.
			 */
			bool quiet = errno == EINTR || errno == EAGAIN ||
				     (errno == EFAULT && c->run->exit_reason == KVM_EXIT_MEMORY_FAULT);

			r = sys_error("KVM_RUN", quiet);
		}
		if (r != -EAGAIN || tries == 16)
			break;
	}
	atomic_store(&c->in_run, false);
	if (r == -EFAULT && c->run->exit_reason == KVM_EXIT_MEMORY_FAULT)
		r = 0;
	if (r == -EAGAIN)
		log_err("kvm: KVM_RUN: still EAGAIN after 16 tries");
	if (r == -EINTR) {
		/*
		 * A signal or a kick (immediate_exit). api.rst: KVM_RUN returns
		 * -EINTR; the exit reason is then KVM_EXIT_INTR or stale, so report INTR.
		 */
		__atomic_store_n(&c->run->immediate_exit, 0, __ATOMIC_RELAXED);
		memset(exit, 0, sizeof(*exit));
		exit->reason = VMMU_EXIT_INTR;
		return 0;
	}
	if (r < 0)
		return (int)r;
	fill_exit(c->run, exit);
	return 0;
}

static int kvm_kick(struct vmmu_vcpu *vcpu)
{
	struct kvm_vcpu *c = to_kcpu(vcpu);

	/* KVM polls immediate_exit as KVM_RUN starts; the signal ends a run in progress. */
	__atomic_store_n(&c->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
	if (atomic_load(&c->in_run))
		pthread_kill(c->thread, kick_signal());
	return 0;
}

/* ------------------------------------------------------- dirty logs */

static int kvm_dirty_log_get(struct vmmu_vm *vm, uint32_t id, uint64_t npages, uint64_t *bitmap)
{
	struct kvm_dirty_log d = { .slot = id, .dirty_bitmap = bitmap };

	(void)npages;
	return (int)KVM_IOCTL(to_kvm(vm)->fd, KVM_GET_DIRTY_LOG, &d);
}

static int kvm_dirty_log_clear(struct vmmu_vm *vm, uint32_t id, uint64_t first_page, uint64_t npages,
			       const uint64_t *bitmap)
{
	struct kvm_clear_dirty_log d = {
		.slot = id,
		.num_pages = (uint32_t)npages,
		.first_page = first_page,
		.dirty_bitmap = (void *)bitmap,
	};

	if (npages > UINT32_MAX) {
		log_err("kvm: dirty_clear: %llu pages do not fit KVM's 32-bit count",
			(unsigned long long)npages);
		return -EINVAL;
	}
	return (int)KVM_IOCTL(to_kvm(vm)->fd, KVM_CLEAR_DIRTY_LOG, &d);
}

/* Take every dirty entry of the ring in order into the VM's per-slot logs. Called under vm->lock. */
static int kvm_dirty_ring_harvest(struct vmmu_vcpu *vcpu)
{
	struct kvm_vcpu *c = to_kcpu(vcpu);
	struct vmmu_dirty_gfn batch[128];
	int n = 0, got;

	do {
		got = vmmu_dirty_ring_harvest(c->dring, batch, ARRAY_SIZE(batch));
		for (int i = 0; i < got; i++)
			dirty_slot_set_ring(vcpu->vm, batch[i].slot & 0xffff, batch[i].offset);
		n += got > 0 ? got : 0;
	} while (got == (int)ARRAY_SIZE(batch));
	return got < 0 ? got : n;
}

static int kvm_dirty_ring_reset(struct vmmu_vm *vm)
{
	return (int)KVM_IOCTL(to_kvm(vm)->fd, KVM_RESET_DIRTY_RINGS, 0);
}

/* --------------------------------------------------------- notifiers */

static int ioeventfd(struct vmmu_vm *vm, const struct vmmu_notifier *n, uint32_t extra)
{
	struct kvm_ioeventfd io = {
		.datamatch = n->datamatch,
		.addr = n->addr,
		.len = n->len,
		.fd = n->fd,
		.flags = extra | (n->flags & VMMU_NOTIFIER_PIO ? KVM_IOEVENTFD_FLAG_PIO : 0) |
			 (n->flags & VMMU_NOTIFIER_DATAMATCH ? KVM_IOEVENTFD_FLAG_DATAMATCH : 0),
	};
	long r = KVM_IOCTL(to_kvm(vm)->fd, KVM_IOEVENTFD, &io);

	/* KVM reports a duplicate as EEXIST and an unknown one as ENOENT, as vm.h promises. */
	return (int)r;
}

static int kvm_notifier_add(struct vmmu_vm *vm, const struct vmmu_notifier *n)
{
	return ioeventfd(vm, n, 0);
}

static int kvm_notifier_remove(struct vmmu_vm *vm, const struct vmmu_notifier *n)
{
	return ioeventfd(vm, n, KVM_IOEVENTFD_FLAG_DEASSIGN);
}

const struct vm_ops kvm_vm_ops = {
	.name = "kvm",
	.create = kvm_vm_create,
	.destroy = kvm_vm_destroy,
	.memslot_set = kvm_memslot_set,
	.memslot_delete = kvm_memslot_delete,
	.vcpu_create = kvm_vcpu_create,
	.vcpu_release = kvm_vcpu_release,
	.vcpu_free = kvm_vcpu_free,
	.get_regs = kvm_get_regs,
	.set_regs = kvm_set_regs,
	.get_sregs = kvm_get_sregs,
	.set_sregs = kvm_set_sregs,
	.run = kvm_run_vcpu,
	.kick = kvm_kick,
	.dirty_log_get = kvm_dirty_log_get,
	.dirty_log_clear = kvm_dirty_log_clear,
	.dirty_ring_harvest = kvm_dirty_ring_harvest,
	.dirty_ring_reset = kvm_dirty_ring_reset,
	.notifier_add = kvm_notifier_add,
	.notifier_remove = kvm_notifier_remove,
};

/* ------------------------------------------------- kvm.h public calls */

bool vmmu_vm_is_kvm(const struct vmmu_vm *vm)
{
	return vm && vm->ops == &kvm_vm_ops;
}

int vmmu_kvm_vm_fd(const struct vmmu_vm *vm)
{
	if (!vmmu_vm_is_kvm(vm)) {
		log_err("kvm: vm_fd: not a KVM VM");
		return -EINVAL;
	}
	return ((const struct kvm_vm *)vm)->fd;
}

int vmmu_kvm_vcpu_fd(const struct vmmu_vcpu *vcpu)
{
	if (!vcpu || !vmmu_vm_is_kvm(vcpu->vm)) {
		log_err("kvm: vcpu_fd: not a KVM vCPU");
		return -EINVAL;
	}
	if (vcpu->destroyed) {
		log_err("kvm: vcpu_fd: vCPU %u was destroyed", vcpu->id);
		return -EBADF;
	}
	return ((const struct kvm_vcpu *)vcpu)->fd;
}

int vmmu_kvm_translate(struct vmmu_vcpu *vcpu, vmmu_gva_t gva, vmmu_gpa_t *gpa, bool *valid)
{
	struct kvm_translation t = { .linear_address = gva };
	int ret;

	if (!gpa || !valid) {
		log_err("kvm: translate: NULL argument");
		return -EINVAL;
	}
	ret = vmmu_kvm_vcpu_fd(vcpu);
	if (ret < 0)
		return ret;
	ret = (int)KVM_IOCTL(ret, KVM_TRANSLATE, &t);
	if (ret)
		return ret;
	*gpa = t.physical_address;
	*valid = t.valid;
	return 0;
}
