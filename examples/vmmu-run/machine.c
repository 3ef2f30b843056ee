/* SPDX-License-Identifier: MIT */
/*
 * The machine: one VM, its RAM in one memslot at GPA 0, long-mode page tables
 * written by the libvmmu builder, the built-in guest, and one vCPU run by its
 * own thread, which handles the guest's port I/O and parks on request.
 *
 * Parking: the main thread sets park_req and kicks the vCPU; KVM completes any
 * port I/O still pending (an IN whose value was just filled in) before it
 * returns VMMU_EXIT_INTR, so the parked vCPU is at an instruction boundary and
 * its registers are complete: what migration and snapshots need.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <libvmmu/ptbuild.h>
#include <libvmmu/vmmu.h>

#include "vmmu-run.h"

extern const char vmmu_run_guest_image[], vmmu_run_guest_image_end[];

unsigned int ring_entries; /* --ring-entries; 0: the library's default */

#define SEL_UDATA 0x1b
#define SEL_UCODE 0x23
#define SEL_TSS   0x28
#define TSS_IOMAP 0x68                     /* the I/O bitmap follows the 104-byte TSS */
#define TSS_LIMIT (TSS_IOMAP + 8192)       /* 65536 port bits and the terminating byte */
#define GUEST_TSS_END (GUEST_TSS_GPA + 3 * PAGE_SIZE)

void msg(const char *fmt, ...)
{
	char line[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	fprintf(stderr, "vmmu-run: %s\n", line);
}

uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

uint64_t trace_t0;

void trace(const char *what)
{
	if (trace_t0)
		fprintf(stderr, "vmmu-run: trace: %8.1f us  %s\n", (double)(now_ns() - trace_t0) / 1e3, what);
}

bool page_is_zero(const void *p)
{
	const uint64_t *w = p;
	uint64_t acc = 0;

	for (size_t i = 0; i < PAGE_SIZE / 8; i += 4)
		acc |= w[i] | w[i + 1] | w[i + 2] | w[i + 3];
	return !acc;
}

static void fail(struct machine *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(struct machine *m, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	pthread_mutex_lock(&m->lock);
	vsnprintf(m->failure, sizeof(m->failure), fmt, ap);
	m->state = M_FAILED;
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
	va_end(ap);
	eventfd_write(m->event_fd, 1);
}

int machine_create(struct machine *m, const char *backend, uint32_t dirty_mode, uint64_t mem_size,
		   bool prefault)
{
	struct vmmu_vm_options o = { .size = sizeof(o), .dirty_mode = dirty_mode,
				     .ring_entries = dirty_mode == VMMU_DIRTY_RING ? ring_entries : 0 };
	int ret;

	memset(m, 0, sizeof(*m));
	m->event_fd = m->pass_fd = -1;
	m->mem_size = mem_size;
	m->dirty_mode = dirty_mode;
	pthread_condattr_t ca;

	pthread_mutex_init(&m->lock, NULL);
	pthread_cond_init(&m->cond, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&m->pace_cond, &ca);
	pthread_condattr_destroy(&ca);
	m->event_fd = eventfd(0, EFD_CLOEXEC);
	if (m->event_fd < 0)
		return -errno;
	ret = vmmu_vm_create(&m->vm, backend, &o);
	if (ret)
		return ret;
	trace("VM created");
	if (!strcmp(vmmu_vm_backend_name(m->vm), "soft"))
		return -ENOEXEC; /* the soft machine has an MMU but no instruction emulator */
	/*
	 * Transparent huge pages. Booting, do not prefault: populating 18 MiB up
	 * front costs ~25 ms here, longer than all the guest's first touches. A
	 * migration destination prefaults so that pages copy at memcpy speed.
	 */
	ret = vmmu_guestmem_init(&m->ram, mem_size, prefault ? VMMU_GUESTMEM_PREFAULT : 0);
	if (ret)
		return ret;
	/*
	 * The first 2 MiB (descriptors, tables, image, stack) with small pages:
	 * vmmu-run writes a few KiB there before the guest runs, and a huge page
	 * would have the host zero all 2 MiB first (0.6-1 ms here, a third of a
	 * boot). The work area above keeps its huge pages.
	 */
	if (!prefault && mem_size > GUEST_WORK_GPA)
		madvise(m->ram.hva, GUEST_WORK_GPA, MADV_NOHUGEPAGE); /* advice only: fine to fail */
	trace("guest RAM mapped");
	ret = vmmu_vm_memslot_add(m->vm, 0, 0, mem_size, m->ram.hva, 0);
	if (ret)
		return ret;
	trace("memslot added");
	ret = vmmu_vcpu_create(m->vm, 0, &m->vcpu);
	if (ret)
		return ret;
	trace("vCPU created");
	/* The end-of-pass doorbell is an ioeventfd: the guest's OUT never leaves the kernel. */
	m->pass_fd = eventfd(0, EFD_CLOEXEC);
	if (m->pass_fd < 0)
		return -errno;
	struct vmmu_notifier n = { .addr = GUEST_PORT_PASS, .len = 1, .flags = VMMU_NOTIFIER_PIO, .fd = m->pass_fd };
	ret = vmmu_vm_notifier_add(m->vm, &n);
	if (ret == -EOPNOTSUPP) {
		close(m->pass_fd);
		m->pass_fd = -1;
		ret = 0;
	}
	return ret;
}

struct table_pool {
	vmmu_gpa_t next, end;
};

static int table_alloc(void *opaque, vmmu_gpa_t *gpa)
{
	struct table_pool *p = opaque;

	if (p->next >= p->end)
		return -1;
	*gpa = p->next;
	p->next += PAGE_SIZE;
	return 0;
}

/* Identity-map the guest: supervisor-only descriptors, a read-only parameter page, user code and data. */
static int build_tables(struct machine *m, vmmu_gpa_t *cr3)
{
	struct vmmu_vm_caps caps = { .size = sizeof(caps) };
	struct table_pool pool = { GUEST_TABLES_GPA, GUEST_IMAGE_GPA };
	struct vmmu_ptbuild_config cfg = { .mode = VMMU_PAGING_4LEVEL, .alloc = table_alloc, .opaque = &pool };
	struct vmmu_ptbuild *b;
	uint64_t huge_end = m->mem_size & ~(VMMU_PT_SIZE_2M - 1);
	int ret = vmmu_vm_get_caps(m->vm, &caps);

	if (ret)
		return ret;
	cfg.maxphyaddr = caps.maxphyaddr ? caps.maxphyaddr : 46;
	ret = vmmu_ptbuild_create(&b, vmmu_vm_memslots(m->vm), &cfg);
	if (ret)
		return ret;
	ret = vmmu_ptbuild_map(b, GUEST_PARAMS_GPA, GUEST_PARAMS_GPA, PAGE_SIZE, VMMU_PT_SIZE_4K,
			       VMMU_PT_USER | VMMU_PT_NX);
	if (!ret)
		ret = vmmu_ptbuild_map(b, GUEST_GDT_GPA, GUEST_GDT_GPA, GUEST_TSS_END - GUEST_GDT_GPA, VMMU_PT_SIZE_4K,
				       VMMU_PT_WRITE | VMMU_PT_NX);
	if (!ret)
		ret = vmmu_ptbuild_map(b, GUEST_IMAGE_GPA, GUEST_IMAGE_GPA, GUEST_WORK_GPA - GUEST_IMAGE_GPA,
				       VMMU_PT_SIZE_4K, VMMU_PT_WRITE | VMMU_PT_USER);
	if (!ret && huge_end > GUEST_WORK_GPA)
		ret = vmmu_ptbuild_map(b, GUEST_WORK_GPA, GUEST_WORK_GPA, huge_end - GUEST_WORK_GPA,
				       VMMU_PT_SIZE_2M, VMMU_PT_WRITE | VMMU_PT_USER | VMMU_PT_NX);
	if (!ret && m->mem_size > huge_end)
		ret = vmmu_ptbuild_map(b, huge_end, huge_end, m->mem_size - huge_end, VMMU_PT_SIZE_4K,
				       VMMU_PT_WRITE | VMMU_PT_USER | VMMU_PT_NX);
	*cr3 = vmmu_ptbuild_root(b);
	vmmu_ptbuild_destroy(b, false); /* the tables stay in guest memory */
	return ret;
}

static void flat_segment(struct vmmu_segment *s, uint16_t sel, uint8_t type, bool code)
{
	*s = (struct vmmu_segment){ .limit = 0xffffffff, .selector = sel, .type = type, .present = 1, .dpl = 3,
				    .db = code ? 0 : 1, .s = 1, .l = code ? 1 : 0, .g = 1 };
}

int machine_load_guest(struct machine *m, const struct workload *w)
{
	uint8_t *ram = m->ram.hva;
	uint64_t *gdt = (uint64_t *)(ram + GUEST_GDT_GPA);
	size_t image = (size_t)(vmmu_run_guest_image_end - vmmu_run_guest_image);
	struct guest_params p = {
		.magic = GUEST_PARAMS_MAGIC, .work_gva = GUEST_WORK_GPA,
		.work_pages = (w->mem_size - GUEST_WORK_GPA) / PAGE_SIZE, .passes = w->passes,
		.writes_per_pass = w->writes_per_pass, .writes_per_tick = w->writes_per_tick,
		.seed = 0x2545f4914f6cdd1dULL, .fill = w->fill,
	};
	struct vmmu_sregs s;
	struct vmmu_regs r = { 0 };
	vmmu_gpa_t cr3;
	int ret;

	if (image > GUEST_STACK_TOP - GUEST_IMAGE_GPA - 64 * 1024)
		return -E2BIG;
	memcpy(ram + GUEST_IMAGE_GPA, vmmu_run_guest_image, image);
	memcpy(ram + GUEST_PARAMS_GPA, &p, sizeof(p));
	gdt[0] = 0;
	gdt[1] = 0x00af9b000000ffffULL; /* kernel code64 (unused: the guest has no kernel) */
	gdt[2] = 0x00cf93000000ffffULL; /* kernel data */
	gdt[3] = 0x00cff3000000ffffULL; /* user data, DPL 3: 0x1b */
	gdt[4] = 0x00affb000000ffffULL; /* user code64, DPL 3: 0x23 */
	gdt[5] = TSS_LIMIT | ((GUEST_TSS_GPA & 0xffffff) << 16) | (0x89ULL << 40); /* 64-bit TSS: 0x28 */
	gdt[6] = 0;
	/*
	 * An I/O permission bitmap that allows every port, ending with the 0xff
	 * byte the SDM asks for. IOPL 3 should make it unused, but on this
	 * machine's KVM an IN/OUT with the port in DX at CPL3 consults it (and
	 * faults without it); the immediate-port forms do not.
	 */
	memcpy(ram + GUEST_TSS_GPA + 0x66, &(uint16_t){ TSS_IOMAP }, 2);
	ram[GUEST_TSS_GPA + TSS_IOMAP + 8192] = 0xff;
	trace("image and descriptors written");
	ret = build_tables(m, &cr3);
	if (ret)
		return ret;
	trace("page tables built");

	ret = vmmu_vcpu_get_sregs(m->vcpu, &s);
	if (ret)
		return ret;
	flat_segment(&s.cs, SEL_UCODE, 11, true);
	flat_segment(&s.ss, SEL_UDATA, 3, false);
	s.ds = s.es = s.fs = s.gs = s.ss;
	s.tr = (struct vmmu_segment){ .base = GUEST_TSS_GPA, .limit = TSS_LIMIT, .selector = SEL_TSS, .type = 11,
				      .present = 1 };
	s.ldt = (struct vmmu_segment){ .unusable = 1, .type = 2 };
	s.gdt = (struct vmmu_dtable){ .base = GUEST_GDT_GPA, .limit = 7 * 8 - 1 };
	s.idt = (struct vmmu_dtable){ .base = 0, .limit = 0 }; /* no IDT: any fault is a triple fault */
	s.cr0 = 0x80050033; /* PG | AM | WP | NE | ET | MP | PE */
	s.cr3 = cr3;
	s.cr4 = 0x20;       /* PAE */
	s.efer = 0xd00;     /* NXE | LMA | LME */
	ret = vmmu_vcpu_set_sregs(m->vcpu, &s);
	if (ret)
		return ret;
	r.rip = GUEST_IMAGE_GPA;
	r.rsp = GUEST_STACK_TOP;
	r.rflags = 0x3002; /* IOPL 3: port I/O at CPL3 */
	m->dirty_rate = w->dirty_rate;
	m->writes_per_tick = w->writes_per_tick;
	return vmmu_vcpu_set_regs(m->vcpu, &r);
}

static void serial_out(struct machine *m, const uint8_t *data, size_t n)
{
	if (!m->first_output_ns) {
		m->first_output_ns = now_ns();
		trace("first guest output");
	}
	while (n) {
		ssize_t w = write(STDOUT_FILENO, data, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		data += w;
		n -= (size_t)w;
	}
}

/*
 * Hold the guest to its dirty rate: each tick stands for writes_per_tick page
 * writes. The wait is on a condition variable so that machine_park() cuts it
 * short (a kick only signals a thread inside KVM_RUN).
 */
static void pace(struct machine *m)
{
	uint64_t now = now_ns();
	struct timespec ts;

	if (m->dirty_rate <= 0)
		return;
	if (!m->next_tick_ns || m->next_tick_ns + 100000000ULL < now)
		m->next_tick_ns = now; /* first tick, or long parked: do not catch up */
	m->next_tick_ns += (uint64_t)((double)m->writes_per_tick * 1e9 / m->dirty_rate);
	ts.tv_sec = (time_t)(m->next_tick_ns / 1000000000ULL);
	ts.tv_nsec = (long)(m->next_tick_ns % 1000000000ULL);
	pthread_mutex_lock(&m->lock);
	while (!atomic_load(&m->park_req) && now_ns() < m->next_tick_ns)
		if (pthread_cond_timedwait(&m->pace_cond, &m->lock, &ts) == ETIMEDOUT)
			break;
	pthread_mutex_unlock(&m->lock);
}

/* Return true when the guest is done (exit port). */
static bool handle_io(struct machine *m, struct vmmu_exit *e)
{
	size_t bytes = (size_t)e->io.size * e->io.count;

	if (e->io.is_write && e->io.port == GUEST_PORT_SERIAL) {
		serial_out(m, e->io.data, bytes);
	} else if (e->io.is_write && e->io.port == GUEST_PORT_EXIT) {
		pthread_mutex_lock(&m->lock);
		m->guest_status = e->io.data[0];
		m->state = M_EXITED;
		pthread_cond_broadcast(&m->cond);
		pthread_mutex_unlock(&m->lock);
		eventfd_write(m->event_fd, 1);
		return true;
	} else if (!e->io.is_write && e->io.port == GUEST_PORT_TICK && e->io.size == 4) {
		uint32_t v = (atomic_load(&m->epoch) & GUEST_TICK_EPOCH_MASK) |
			     (atomic_load(&m->stop_guest) ? GUEST_TICK_STOP : 0);

		pace(m);
		memcpy(e->io.data, &v, 4);
	} else if (!e->io.is_write && e->io.port == GUEST_PORT_LSR) {
		memset(e->io.data, 0x60, bytes); /* transmitter empty */
	} else if (!e->io.is_write) {
		memset(e->io.data, 0xff, bytes); /* nothing there */
	} else if (e->io.port == GUEST_PORT_PASS) {
		/* Reached only without ioeventfd support: nothing to do. */
	}
	return false;
}

/* Parked: wait for resume or quit. Return true to quit. */
static bool park(struct machine *m)
{
	bool quit;

	pthread_mutex_lock(&m->lock);
	m->state = M_PARKED;
	pthread_cond_broadcast(&m->cond);
	while (!m->resume && !m->quit)
		pthread_cond_wait(&m->cond, &m->lock);
	quit = m->quit;
	m->resume = false;
	if (!quit)
		m->state = M_RUNNING;
	pthread_mutex_unlock(&m->lock);
	return quit;
}

static const char *exit_name(uint32_t r)
{
	static const char *const names[] = { "unknown", "io", "mmio", "hlt", "shutdown (triple fault)",
					     "internal error", "dirty ring full", "memory fault", "intr",
					     "failed entry" };

	return r < sizeof(names) / sizeof(names[0]) ? names[r] : "?";
}

static void *vcpu_thread(void *arg)
{
	struct machine *m = arg;
	struct vmmu_exit e;

	trace("vCPU thread runs");
	for (;;) {
		int ret = vmmu_vcpu_run(m->vcpu, &e);

		if (ret) {
			fail(m, "running the vCPU failed: %s", vmmu_strerror(ret));
			return NULL;
		}
		switch (e.reason) {
		case VMMU_EXIT_IO:
			if (handle_io(m, &e))
				return NULL;
			break;
		case VMMU_EXIT_INTR:
			if (atomic_load(&m->park_req) && park(m))
				return NULL;
			break;
		case VMMU_EXIT_DIRTY_RING_FULL:
			/* Harvest into the VM's log (the migration reads it) and re-arm. */
			m->ring_full_exits++;
			ret = vmmu_vcpu_dirty_harvest(m->vcpu);
			if (ret >= 0)
				ret = vmmu_vm_dirty_reset(m->vm);
			if (ret < 0) {
				fail(m, "harvesting the dirty ring failed: %s", vmmu_strerror(ret));
				return NULL;
			}
			break;
		default: {
			struct vmmu_regs r = { 0 };

			vmmu_vcpu_get_regs(m->vcpu, &r);
			fail(m, "guest stopped: %s exit at rip %#llx, rflags %#llx", exit_name(e.reason),
			     (unsigned long long)r.rip, (unsigned long long)r.rflags);
			return NULL;
		}
		}
	}
}

int machine_start(struct machine *m)
{
	int ret;

	m->state = M_RUNNING;
	ret = -pthread_create(&m->thread, NULL, vcpu_thread, m);
	if (!ret)
		m->thread_started = true;
	return ret;
}

enum machine_state machine_state(struct machine *m)
{
	enum machine_state s;

	pthread_mutex_lock(&m->lock);
	s = m->state;
	pthread_mutex_unlock(&m->lock);
	return s;
}

/* Stop the vCPU at an instruction boundary. Return 0 (parked) or -ESRCH (it exited or failed first). */
int machine_park(struct machine *m)
{
	int ret;

	pthread_mutex_lock(&m->lock);
	atomic_store(&m->park_req, true);
	pthread_cond_broadcast(&m->pace_cond);
	pthread_mutex_unlock(&m->lock);
	ret = vmmu_vcpu_kick(m->vcpu);
	if (ret)
		return ret;
	pthread_mutex_lock(&m->lock);
	while (m->state == M_RUNNING)
		pthread_cond_wait(&m->cond, &m->lock);
	ret = m->state == M_PARKED ? 0 : -ESRCH;
	pthread_mutex_unlock(&m->lock);
	return ret;
}

int machine_resume(struct machine *m)
{
	pthread_mutex_lock(&m->lock);
	atomic_store(&m->park_req, false);
	if (m->state == M_PARKED)
		m->resume = true;
	else if (m->state == M_CREATED)
		m->state = M_RUNNING;
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
	return m->thread_started ? 0 : machine_start(m);
}

/* Wait until the guest exits or fails; return its status, or -1 after a failure (printed). */
int machine_wait_exit(struct machine *m)
{
	int status;

	pthread_mutex_lock(&m->lock);
	while (m->state != M_EXITED && m->state != M_FAILED)
		pthread_cond_wait(&m->cond, &m->lock);
	status = m->state == M_EXITED ? m->guest_status : -1;
	pthread_mutex_unlock(&m->lock);
	if (status < 0)
		msg("%s", m->failure);
	return status;
}

int machine_get_state(struct machine *m, struct vcpu_state *s)
{
	int ret;

	memset(s, 0, sizeof(*s));
	ret = vmmu_vcpu_get_regs(m->vcpu, &s->regs);
	if (!ret)
		ret = vmmu_vcpu_get_sregs(m->vcpu, &s->sregs);
	s->epoch = atomic_load(&m->epoch);
	return ret;
}

int machine_set_state(struct machine *m, const struct vcpu_state *s)
{
	int ret = vmmu_vcpu_set_sregs(m->vcpu, &s->sregs);

	if (!ret)
		ret = vmmu_vcpu_set_regs(m->vcpu, &s->regs);
	atomic_store(&m->epoch, s->epoch);
	return ret;
}

void machine_destroy(struct machine *m)
{
	if (m->thread_started) {
		pthread_mutex_lock(&m->lock);
		m->quit = true;
		atomic_store(&m->park_req, true);
		pthread_cond_broadcast(&m->cond);
		pthread_cond_broadcast(&m->pace_cond);
		pthread_mutex_unlock(&m->lock);
		if (m->vcpu)
			vmmu_vcpu_kick(m->vcpu);
		pthread_join(m->thread, NULL);
	}
	vmmu_vm_destroy(m->vm);
	vmmu_guestmem_finish(&m->ram);
	if (m->event_fd >= 0)
		close(m->event_fd);
	if (m->pass_fd >= 0)
		close(m->pass_fd);
	pthread_mutex_destroy(&m->lock);
	pthread_cond_destroy(&m->cond);
	pthread_cond_destroy(&m->pace_cond);
	memset(m, 0, sizeof(*m));
	m->event_fd = m->pass_fd = -1;
}
