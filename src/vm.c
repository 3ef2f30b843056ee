/* SPDX-License-Identifier: MIT */
/*
 * The VM layer: backend selection, argument checks, the memslot mirror, the
 * VMM's own dirty marks and the per-slot logs rings are harvested into, and GVA
 * translation with the libvmmu walker. Backends do only what needs the
 * hypervisor (src/backend.h).
 */

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <libvmmu/hvf.h>
#include <libvmmu/kvm.h>

#include "backend.h"
#include "vmmu-features.h"

/* An optional op the backend left NULL: -EOPNOTSUPP with a log line. */
#define NEED_OP(vm, op, what)								\
	do {										\
		if (!(vm)->ops->op) {							\
			log_err("vm: %s: not supported by the %s backend", (what), (vm)->ops->name); \
			return -EOPNOTSUPP;						\
		}									\
	} while (0)

/* ---------------------------------------------------------- selection */

static const struct vm_ops *find_backend(const char *name)
{
#if VMMU_HAVE_KVM
	if (!strcmp(name, "kvm"))
		return &kvm_vm_ops;
#endif
#if VMMU_HAVE_HVF
	if (!strcmp(name, "hvf"))
		return &hvf_vm_ops;
#endif
#if VMMU_HAVE_SOFT
	if (!strcmp(name, "soft"))
		return &soft_vm_ops;
#endif
	return NULL;
}

static bool known_backend(const char *name)
{
	return !strcmp(name, "kvm") || !strcmp(name, "hvf") || !strcmp(name, "soft");
}

static int select_backend(const char *name, const struct vm_ops **ops)
{
	if (!name || !*name) {
		name = getenv("VMMU_BACKEND");
		if (!name || !*name)
			name = "auto";
	}
	if (!strcmp(name, "auto")) {
#if VMMU_HAVE_KVM
		if (kvm_available()) {
			*ops = &kvm_vm_ops;
			return 0;
		}
#endif
#if VMMU_HAVE_SOFT
		*ops = &soft_vm_ops;
		return 0;
#else
		log_err("vm: backend auto: /dev/kvm cannot be opened and the soft backend is not built in");
		return -ENODEV;
#endif
	}
	*ops = find_backend(name);
	if (*ops)
		return 0;
	if (known_backend(name)) {
		log_err("vm: backend \"%s\" is not built into this library", name);
		return -ENODEV;
	}
	log_err("vm: unknown backend \"%s\" (kvm, hvf, soft or auto)", name);
	return -EINVAL;
}

static bool options_valid(const struct vmmu_vm_options *o)
{
	if (o->size < sizeof(*o)) {
		log_err("vm: options size %u is smaller than %zu", o->size, sizeof(*o));
		return false;
	}
	if (o->dirty_mode > VMMU_DIRTY_RING) {
		log_err("vm: unknown dirty mode %u", o->dirty_mode);
		return false;
	}
	if (o->flags & ~VMMU_VM_F_INITIALLY_SET) {
		log_err("vm: unknown option flags 0x%x", o->flags);
		return false;
	}
	if ((o->flags & VMMU_VM_F_INITIALLY_SET) && o->dirty_mode != VMMU_DIRTY_MANUAL) {
		log_err("vm: INITIALLY_SET needs the MANUAL dirty mode");
		return false;
	}
	if (!ring_entries_valid("vm", o->ring_entries) || !reserved_zero("vm", o->reserved, ARRAY_SIZE(o->reserved)))
		return false;
	return true;
}

int vmmu_vm_create(struct vmmu_vm **out, const char *backend, const struct vmmu_vm_options *opts)
{
	struct vmmu_vm_options o = { .size = sizeof(o) };
	const struct vm_ops *ops;
	int ret;

	if (!out) {
		log_err("vm: create: NULL out");
		return -EINVAL;
	}
	*out = NULL;
	if (opts) {
		if (!options_valid(opts))
			return -EINVAL;
		o = *opts;
		o.size = sizeof(o);
	}
	if (o.dirty_mode == VMMU_DIRTY_RING && !o.ring_entries)
		o.ring_entries = 4096;
	ret = select_backend(backend, &ops);
	if (ret)
		return ret;
	return ops->create(out, &o);
}

int vm_init(struct vmmu_vm *vm, const struct vm_ops *ops, const struct vmmu_vm_options *opts)
{
	int ret;

	vm->ops = ops;
	vm->opts = *opts;
	vm->caps.size = sizeof(vm->caps);
	ret = vmmu_memslots_create(&vm->slots);
	if (ret)
		return ret;
	pthread_mutex_init(&vm->lock, NULL);
	return 0;
}

static void dirty_slot_free(struct vmmu_vm *vm, uint32_t id)
{
	if (id < vm->nr_dirty && vm->dirty[id]) {
		vmmu_dirty_bitmap_destroy(vm->dirty[id]->bm);
		free(vm->dirty[id]->scratch);
		free(vm->dirty[id]->ring_bits);
		free(vm->dirty[id]);
		vm->dirty[id] = NULL;
	}
}

void vm_finish(struct vmmu_vm *vm)
{
	for (uint32_t i = 0; i < vm->nr_dirty; i++)
		dirty_slot_free(vm, i);
	free(vm->dirty);
	free(vm->vcpus);
	vmmu_memslots_destroy(vm->slots);
	pthread_mutex_destroy(&vm->lock);
}

/* The vCPU's cached translation context (vmmu_vcpu_translate()). */
static void vcpu_paging_free(struct vmmu_vcpu *vcpu)
{
	vmmu_paging_destroy(vcpu->paging);
	vcpu->paging = NULL;
}

void vmmu_vm_destroy(struct vmmu_vm *vm)
{
	if (!vm)
		return;
	for (unsigned int i = 0; i < vm->nr_vcpus; i++) {
		struct vmmu_vcpu *v = vm->vcpus[i];

		if (!v->destroyed)
			vm->ops->vcpu_release(v);
		vcpu_paging_free(v);
		vm->ops->vcpu_free(v);
	}
	vm->nr_vcpus = 0;
	vm->ops->destroy(vm);
}

const char *vmmu_vm_backend_name(const struct vmmu_vm *vm)
{
	return vm ? vm->ops->name : "none";
}

int vmmu_vm_get_caps(const struct vmmu_vm *vm, struct vmmu_vm_caps *caps)
{
	if (!vm || !caps || caps->size < sizeof(*caps)) {
		log_err("vm: get_caps: NULL VM or caps, or caps->size too small");
		return -EINVAL;
	}
	*caps = vm->caps;
	return 0;
}

/* ------------------------------------------------------------ memslots */

/* A slot's per-slot log of pages the VMM marked or rings reported (under vm->lock). */
static int dirty_slot_alloc(struct vmmu_vm *vm, uint32_t id, vmmu_gpa_t gpa, uint64_t size)
{
	struct dirty_slot *d;

	if (id >= vm->nr_dirty) {
		uint32_t n = id + 1 > 2 * vm->nr_dirty ? id + 1 : 2 * vm->nr_dirty;
		struct dirty_slot **p = realloc(vm->dirty, n * sizeof(*p));

		if (!p)
			return -ENOMEM;
		memset(p + vm->nr_dirty, 0, (n - vm->nr_dirty) * sizeof(*p));
		vm->dirty = p;
		vm->nr_dirty = n;
	}
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->base_gfn = gpa >> VMMU_PAGE_SHIFT;
	d->npages = size >> VMMU_PAGE_SHIFT;
	d->scratch = calloc(VMMU_DIRTY_WORDS(d->npages), sizeof(uint64_t));
	if (vm->opts.dirty_mode == VMMU_DIRTY_RING)
		d->ring_bits = calloc(VMMU_DIRTY_WORDS(d->npages), sizeof(uint64_t));
	if (!d->scratch || (vm->opts.dirty_mode == VMMU_DIRTY_RING && !d->ring_bits) ||
	    vmmu_dirty_bitmap_create(id, d->npages, 0, &d->bm)) {
		free(d->scratch);
		free(d->ring_bits);
		free(d);
		return -ENOMEM;
	}
	vm->dirty[id] = d;
	return 0;
}

/* Does the caller's mapping cover [hva, hva + size)? msync reports unmapped holes as ENOMEM. */
static bool host_range_mapped(void *hva, uint64_t size)
{
	return msync(hva, size, MS_ASYNC) == 0 || errno != ENOMEM;
}

int vmmu_vm_memslot_add(struct vmmu_vm *vm, uint32_t id, vmmu_gpa_t gpa, uint64_t size, void *hva,
			uint32_t flags)
{
	int ret;

	if (!vm) {
		log_err("vm: memslot_add: NULL VM");
		return -EINVAL;
	}
	if (id >= vm->caps.max_memslots) {
		log_err("vm: memslot id %u is past the backend's %u slots", id, vm->caps.max_memslots);
		return -EINVAL;
	}
	if ((flags & VMMU_MEMSLOT_READONLY) && !(vm->caps.flags & VMMU_CAP_READONLY_MEM)) {
		log_err("vm: memslot %u: read-only slots are not supported by this backend", id);
		return -EOPNOTSUPP;
	}
	/* The mirror checks alignment, flags, id reuse and overlaps, and logs. */
	ret = vmmu_memslots_add(vm->slots, id, gpa, size, hva, flags);
	if (ret)
		return ret;
	if (!host_range_mapped(hva, size)) {
		log_err("vm: memslot %u: host memory at %p is not mapped for all of its 0x%llx bytes", id,
			hva, (unsigned long long)size);
		ret = -EFAULT;
		goto undo_mirror;
	}
	if (flags & VMMU_MEMSLOT_LOG_DIRTY) {
		pthread_mutex_lock(&vm->lock);
		ret = dirty_slot_alloc(vm, id, gpa, size);
		pthread_mutex_unlock(&vm->lock);
		if (ret)
			goto undo_mirror;
	}
	ret = vm->ops->memslot_set(vm, id, gpa, size, hva, flags);
	if (ret)
		goto undo_dirty;
	return 0;

undo_dirty:
	pthread_mutex_lock(&vm->lock);
	dirty_slot_free(vm, id);
	pthread_mutex_unlock(&vm->lock);
undo_mirror:
	vmmu_memslots_remove(vm->slots, id);
	return ret;
}

int vmmu_vm_memslot_remove(struct vmmu_vm *vm, uint32_t id)
{
	struct vmmu_memslot_info m;
	int ret;

	if (!vm) {
		log_err("vm: memslot_remove: NULL VM");
		return -EINVAL;
	}
	if (vmmu_memslots_get(vm->slots, id, &m)) {
		log_err("vm: memslot_remove: no slot %u", id);
		return -ENOENT;
	}
	ret = vm->ops->memslot_delete(vm, id, vmmu_gfn_to_gpa(m.base_gfn));
	if (ret)
		return ret;
	pthread_mutex_lock(&vm->lock);
	dirty_slot_free(vm, id);
	pthread_mutex_unlock(&vm->lock);
	return vmmu_memslots_remove(vm->slots, id);
}

int vmmu_vm_memslot_set_flags(struct vmmu_vm *vm, uint32_t id, uint32_t flags)
{
	struct vmmu_memslot_info m;
	vmmu_gpa_t gpa;
	uint64_t size;
	int ret;

	if (!vm) {
		log_err("vm: memslot_set_flags: NULL VM");
		return -EINVAL;
	}
	if (vmmu_memslots_get(vm->slots, id, &m)) {
		log_err("vm: memslot_set_flags: no slot %u", id);
		return -ENOENT;
	}
	if (flags & ~VMMU_MEMSLOT_FLAGS_ALL) {
		log_err("vm: memslot %u: unknown flags 0x%x", id, flags);
		return -EINVAL;
	}
	if ((flags ^ m.flags) & VMMU_MEMSLOT_READONLY) {
		log_err("vm: memslot %u: READONLY cannot change on a live slot; remove and add it", id);
		return -EINVAL;
	}
	gpa = vmmu_gfn_to_gpa(m.base_gfn);
	size = m.npages << VMMU_PAGE_SHIFT;
	bool log_on = (flags & VMMU_MEMSLOT_LOG_DIRTY) && !(m.flags & VMMU_MEMSLOT_LOG_DIRTY);
	bool log_off = !(flags & VMMU_MEMSLOT_LOG_DIRTY) && (m.flags & VMMU_MEMSLOT_LOG_DIRTY);

	if (log_on) {
		pthread_mutex_lock(&vm->lock);
		ret = dirty_slot_alloc(vm, id, gpa, size);
		pthread_mutex_unlock(&vm->lock);
		if (ret)
			return ret;
	}
	ret = vm->ops->memslot_set(vm, id, gpa, size, m.hva, flags);
	if (ret || log_off) {
		pthread_mutex_lock(&vm->lock);
		if (ret ? log_on : log_off)
			dirty_slot_free(vm, id);
		pthread_mutex_unlock(&vm->lock);
	}
	if (ret)
		return ret;
	return vmmu_memslots_set_flags(vm->slots, id, flags);
}

const struct vmmu_memslots *vmmu_vm_memslots(const struct vmmu_vm *vm)
{
	return vm ? vm->slots : NULL;
}

/* --------------------------------------------------------------- vCPUs */

static int vcpu_usable(const struct vmmu_vcpu *vcpu, const void *arg, const char *what)
{
	if (!vcpu || !arg) {
		log_err("vcpu: %s: NULL argument", what);
		return -EINVAL;
	}
	if (vcpu->destroyed) {
		log_err("vcpu %u: %s on a destroyed vCPU", vcpu->id, what);
		return -EBADF;
	}
	return 0;
}

int vmmu_vcpu_create(struct vmmu_vm *vm, uint32_t id, struct vmmu_vcpu **out)
{
	struct vmmu_vcpu *v;
	int ret = 0;

	if (!vm || !out) {
		log_err("vcpu: create: NULL argument");
		return -EINVAL;
	}
	*out = NULL;
	if (id >= vm->caps.max_vcpus) {
		log_err("vcpu: id %u is past the backend's %u vCPUs", id, vm->caps.max_vcpus);
		return -EINVAL;
	}
	pthread_mutex_lock(&vm->lock);
	for (unsigned int i = 0; i < vm->nr_vcpus; i++)
		if (vm->vcpus[i]->id == id) {
			log_err("vcpu: id %u exists (or existed) in this VM", id);
			ret = -EEXIST;
			goto out;
		}
	if (vm->nr_vcpus == vm->cap_vcpus) {
		unsigned int n = vm->cap_vcpus ? 2 * vm->cap_vcpus : 4;
		struct vmmu_vcpu **p = realloc(vm->vcpus, n * sizeof(*p));

		if (!p) {
			ret = -ENOMEM;
			goto out;
		}
		vm->vcpus = p;
		vm->cap_vcpus = n;
	}
	ret = vm->ops->vcpu_create(vm, id, &v);
	if (ret)
		goto out;
	v->vm = vm;
	v->id = id;
	v->destroyed = false;
	v->paging = NULL;
	vm->vcpus[vm->nr_vcpus++] = v;
	*out = v;
out:
	pthread_mutex_unlock(&vm->lock);
	return ret;
}

void vmmu_vcpu_destroy(struct vmmu_vcpu *vcpu)
{
	if (!vcpu || vcpu->destroyed)
		return;
	pthread_mutex_lock(&vcpu->vm->lock);
	/* Entries left in the ring would be lost with it: take them into the slot logs first. */
	if (vcpu->vm->opts.dirty_mode == VMMU_DIRTY_RING && vcpu->vm->ops->dirty_ring_harvest)
		vcpu->vm->ops->dirty_ring_harvest(vcpu);
	vcpu->vm->ops->vcpu_release(vcpu);
	vcpu_paging_free(vcpu);
	vcpu->destroyed = true;
	pthread_mutex_unlock(&vcpu->vm->lock);
}

uint32_t vmmu_vcpu_id(const struct vmmu_vcpu *vcpu)
{
	return vcpu ? vcpu->id : UINT32_MAX;
}

int vmmu_vcpu_get_regs(struct vmmu_vcpu *vcpu, struct vmmu_regs *regs)
{
	int ret = vcpu_usable(vcpu, regs, "get_regs");

	return ret ? ret : vcpu->vm->ops->get_regs(vcpu, regs);
}

int vmmu_vcpu_set_regs(struct vmmu_vcpu *vcpu, const struct vmmu_regs *regs)
{
	int ret = vcpu_usable(vcpu, regs, "set_regs");

	return ret ? ret : vcpu->vm->ops->set_regs(vcpu, regs);
}

int vmmu_vcpu_get_sregs(struct vmmu_vcpu *vcpu, struct vmmu_sregs *sregs)
{
	int ret = vcpu_usable(vcpu, sregs, "get_sregs");

	return ret ? ret : vcpu->vm->ops->get_sregs(vcpu, sregs);
}

int vmmu_vcpu_set_sregs(struct vmmu_vcpu *vcpu, const struct vmmu_sregs *sregs)
{
	int ret = vcpu_usable(vcpu, sregs, "set_sregs");

	return ret ? ret : vcpu->vm->ops->set_sregs(vcpu, sregs);
}

int vmmu_vcpu_run(struct vmmu_vcpu *vcpu, struct vmmu_exit *exit)
{
	int ret = vcpu_usable(vcpu, exit, "run");

	return ret ? ret : vcpu->vm->ops->run(vcpu, exit);
}

int vmmu_vcpu_kick(struct vmmu_vcpu *vcpu)
{
	int ret = vcpu_usable(vcpu, vcpu, "kick");

	if (ret)
		return ret;
	NEED_OP(vcpu->vm, kick, "kick");
	return vcpu->vm->ops->kick(vcpu);
}

int vmmu_vcpu_translate(struct vmmu_vcpu *vcpu, vmmu_gva_t gva, uint32_t access, struct vmmu_walk_result *res)
{
	int ret = vcpu_usable(vcpu, res, "translate");

	if (ret)
		return ret;
	struct vmmu_paging_regs pr = { 0 };
	struct vmmu_sregs s;
	struct vmmu_regs r;

	ret = vcpu->vm->ops->get_sregs(vcpu, &s);
	if (ret)
		return ret;
	/* RFLAGS matters only for SMAP (AC): spare the second register read otherwise. */
	if (s.cr4 & VMMU_CR4_SMAP) {
		ret = vcpu->vm->ops->get_regs(vcpu, &r);
		if (ret)
			return ret;
		pr.rflags = r.rflags;
	}
	pr.cr0 = s.cr0;
	pr.cr3 = s.cr3;
	pr.cr4 = s.cr4;
	pr.efer = s.efer;
	pr.maxphyaddr = vcpu->vm->caps.maxphyaddr;
	pr.flags = vcpu->vm->paging_flags;
	/*
	 * The context is kept per vCPU and updated from the registers each time.
	 * PAE: the PDPTE registers were loaded by the guest's last CR3 write,
	 * which the registers alone do not show; reload them from CR3.
	 */
	if (!vcpu->paging)
		ret = vmmu_paging_create(&vcpu->paging, vcpu->vm->slots, &pr);
	else if (!(ret = vmmu_paging_update(vcpu->paging, &pr)) &&
		 vmmu_paging_get_mode(vcpu->paging) == VMMU_PAGING_PAE)
		ret = vmmu_paging_reload_pdptrs(vcpu->paging);
	if (ret)
		return ret;
	return vmmu_walk(vcpu->paging, gva, access, res);
}

/* ---------------------------------------------------------- dirty logs */

/* The VMM's marks: [@first, @first + @npages) of @d; lock-free. */
static void dirty_slot_mark(struct dirty_slot *d, uint64_t first, uint64_t npages)
{
	vmmu_dirty_bitmap_mark_range(d->bm, first, npages);
	atomic_store_explicit(&d->any, true, memory_order_release);
}

/* The slot's log for a dirty call, or NULL with *ret set (and a log line). */
static struct dirty_slot *dirty_slot_of(struct vmmu_vm *vm, uint32_t id, const void *arg, const char *what,
					int *ret)
{
	struct vmmu_memslot_info m;

	if (!vm || !arg) {
		log_err("vm: %s: NULL argument", what);
		*ret = -EINVAL;
		return NULL;
	}
	if (vmmu_memslots_get(vm->slots, id, &m)) {
		log_err("vm: %s: no slot %u", what, id);
		*ret = -ENOENT;
		return NULL;
	}
	if (!(m.flags & VMMU_MEMSLOT_LOG_DIRTY)) {
		log_err("vm: %s: dirty logging is off on slot %u", what, id);
		*ret = -EPERM;
		return NULL;
	}
	return vm->dirty[id];
}

static bool mode_is(struct vmmu_vm *vm, enum vmmu_dirty_mode mode, const char *what)
{
	static const char *const names[] = { "GET_CLEAR", "MANUAL", "RING" };

	if (vm->opts.dirty_mode == mode)
		return true;
	log_err("vm: %s needs the %s dirty mode; this VM uses %s", what, names[mode],
		names[vm->opts.dirty_mode]);
	return false;
}

/*
 * OR the pages marked in @d into @bitmap and, with @forget, unmark them; under
 * vm->lock. A mark sets its bit before d->any, and d->any is taken before the
 * bits are read, so a mark racing with this is reported now or next time.
 */
static void take_marks(struct dirty_slot *d, uint64_t *bitmap, bool forget)
{
	uint64_t words = VMMU_DIRTY_WORDS(d->npages);

	if (forget ? !atomic_exchange_explicit(&d->any, false, memory_order_acquire)
		   : !atomic_load_explicit(&d->any, memory_order_acquire))
		return;
	if (forget)
		vmmu_dirty_bitmap_get_and_clear(d->bm, d->scratch, NULL, NULL);
	else
		vmmu_dirty_bitmap_get(d->bm, d->scratch);
	for (uint64_t i = 0; i < words; i++)
		bitmap[i] |= d->scratch[i];
}

static int harvest_all(struct vmmu_vm *vm)
{
	int n = 0;

	for (unsigned int i = 0; i < vm->nr_vcpus; i++) {
		int ret;

		if (vm->vcpus[i]->destroyed)
			continue;
		ret = vm->ops->dirty_ring_harvest(vm->vcpus[i]);
		if (ret < 0)
			return ret;
		n += ret;
	}
	return n;
}

int vmmu_vm_dirty_get(struct vmmu_vm *vm, uint32_t id, uint64_t *bitmap)
{
	struct dirty_slot *d;
	int ret = 0;

	d = dirty_slot_of(vm, id, bitmap, "dirty_get", &ret);
	if (!d)
		return ret;
	if (vm->opts.dirty_mode == VMMU_DIRTY_RING) {
		NEED_OP(vm, dirty_ring_harvest, "dirty_get");
		NEED_OP(vm, dirty_ring_reset, "dirty_get");
	} else {
		NEED_OP(vm, dirty_log_get, "dirty_get");
		if (vm->opts.dirty_mode == VMMU_DIRTY_MANUAL)
			NEED_OP(vm, dirty_log_clear, "dirty_get");
	}
	switch (vm->opts.dirty_mode) {
	case VMMU_DIRTY_RING:
		pthread_mutex_lock(&vm->lock);
		ret = harvest_all(vm);
		pthread_mutex_unlock(&vm->lock);
		if (ret < 0)
			return ret;
		/* Re-arm before the caller reads page contents. */
		ret = vm->ops->dirty_ring_reset(vm);
		if (ret < 0)
			return ret;
		pthread_mutex_lock(&vm->lock);
		memcpy(bitmap, d->ring_bits, VMMU_DIRTY_WORDS(d->npages) * sizeof(uint64_t));
		memset(d->ring_bits, 0, VMMU_DIRTY_WORDS(d->npages) * sizeof(uint64_t));
		take_marks(d, bitmap, true);
		pthread_mutex_unlock(&vm->lock);
		return 0;
	case VMMU_DIRTY_MANUAL:
		ret = vm->ops->dirty_log_get(vm, id, d->npages, bitmap);
		if (!ret)
			ret = vm->ops->dirty_log_clear(vm, id, 0, d->npages, bitmap);
		break;
	default:
		ret = vm->ops->dirty_log_get(vm, id, d->npages, bitmap);
		break;
	}
	if (ret)
		return ret;
	if (atomic_load_explicit(&d->any, memory_order_relaxed)) {
		pthread_mutex_lock(&vm->lock);
		take_marks(d, bitmap, true);
		pthread_mutex_unlock(&vm->lock);
	}
	return 0;
}

int vmmu_vm_dirty_peek(struct vmmu_vm *vm, uint32_t id, uint64_t *bitmap)
{
	struct dirty_slot *d;
	int ret = 0;

	d = dirty_slot_of(vm, id, bitmap, "dirty_peek", &ret);
	if (!d)
		return ret;
	if (!mode_is(vm, VMMU_DIRTY_MANUAL, "dirty_peek"))
		return -EOPNOTSUPP;
	NEED_OP(vm, dirty_log_get, "dirty_peek");
	ret = vm->ops->dirty_log_get(vm, id, d->npages, bitmap);
	if (ret)
		return ret;
	pthread_mutex_lock(&vm->lock);
	take_marks(d, bitmap, false);
	pthread_mutex_unlock(&vm->lock);
	return 0;
}

int vmmu_vm_dirty_clear(struct vmmu_vm *vm, uint32_t id, uint64_t first_page, uint64_t npages,
			const uint64_t *bitmap)
{
	struct dirty_slot *d;
	int ret = 0;

	d = dirty_slot_of(vm, id, bitmap, "dirty_clear", &ret);
	if (!d)
		return ret;
	if (!mode_is(vm, VMMU_DIRTY_MANUAL, "dirty_clear"))
		return -EOPNOTSUPP;
	NEED_OP(vm, dirty_log_clear, "dirty_clear");
	if (first_page % 64 || first_page >= d->npages || npages == 0 || npages > d->npages - first_page ||
	    (npages % 64 && first_page + npages != d->npages)) {
		log_err("vm: dirty_clear: pages [%llu, +%llu) of slot %u (%llu pages): the start must be a "
			"multiple of 64, the length too unless the range ends the slot",
			(unsigned long long)first_page, (unsigned long long)npages, id,
			(unsigned long long)d->npages);
		return -EINVAL;
	}
	ret = vm->ops->dirty_log_clear(vm, id, first_page, npages, bitmap);
	if (ret)
		return ret;
	/* The VMM's marks in the range count as reported once the caller clears them. */
	if (atomic_load_explicit(&d->any, memory_order_acquire))
		vmmu_dirty_bitmap_clear(d->bm, first_page, npages, bitmap, NULL, NULL);
	return 0;
}

int vmmu_vcpu_dirty_harvest(struct vmmu_vcpu *vcpu)
{
	int ret = vcpu_usable(vcpu, vcpu, "dirty_harvest");

	if (ret)
		return ret;
	if (!mode_is(vcpu->vm, VMMU_DIRTY_RING, "dirty_harvest"))
		return -EOPNOTSUPP;
	NEED_OP(vcpu->vm, dirty_ring_harvest, "dirty_harvest");
	pthread_mutex_lock(&vcpu->vm->lock);
	ret = vcpu->vm->ops->dirty_ring_harvest(vcpu);
	pthread_mutex_unlock(&vcpu->vm->lock);
	return ret;
}

int vmmu_vm_dirty_reset(struct vmmu_vm *vm)
{
	if (!vm) {
		log_err("vm: dirty_reset: NULL VM");
		return -EINVAL;
	}
	if (!mode_is(vm, VMMU_DIRTY_RING, "dirty_reset"))
		return -EOPNOTSUPP;
	NEED_OP(vm, dirty_ring_reset, "dirty_reset");
	return vm->ops->dirty_ring_reset(vm);
}

int vmmu_vm_dirty_mark(struct vmmu_vm *vm, vmmu_gpa_t gpa, uint64_t len)
{
	struct vmmu_memslot_info m;
	vmmu_gfn_t gfn, last;
	int n = 0;

	if (!vm || !len || gpa + len < gpa) {
		log_err("vm: dirty_mark: NULL VM, empty or wrapping range");
		return -EINVAL;
	}
	last = (gpa + len - 1) >> VMMU_PAGE_SHIFT;
	/* Check the whole range first so that an error marks nothing. */
	for (gfn = gpa >> VMMU_PAGE_SHIFT; gfn <= last; gfn = m.base_gfn + m.npages) {
		if (vmmu_memslots_find(vm->slots, vmmu_gfn_to_gpa(gfn), &m)) {
			log_err("vm: dirty_mark: gpa 0x%llx is in no slot",
				(unsigned long long)vmmu_gfn_to_gpa(gfn));
			return -EFAULT;
		}
		if (!(m.flags & VMMU_MEMSLOT_LOG_DIRTY)) {
			log_err("vm: dirty_mark: slot %u does not log dirty pages", m.id);
			return -EPERM;
		}
	}
	for (gfn = gpa >> VMMU_PAGE_SHIFT; gfn <= last; gfn = m.base_gfn + m.npages) {
		uint64_t end;

		vmmu_memslots_find(vm->slots, vmmu_gfn_to_gpa(gfn), &m);
		end = last < m.base_gfn + m.npages - 1 ? last + 1 : m.base_gfn + m.npages;
		dirty_slot_mark(vm->dirty[m.id], gfn - m.base_gfn, end - gfn);
		n += (int)(end - gfn);
	}
	return n;
}

/* ----------------------------------------------------------- notifiers */

static int notifier_check(struct vmmu_vm *vm, const struct vmmu_notifier *n, const char *what)
{
	if (!vm || !n) {
		log_err("vm: %s: NULL argument", what);
		return -EINVAL;
	}
	if (n->flags & ~(VMMU_NOTIFIER_PIO | VMMU_NOTIFIER_DATAMATCH) || n->fd < 0 ||
	    (n->len != 0 && n->len != 1 && n->len != 2 && n->len != 4 && n->len != 8) ||
	    (n->len == 0 && (n->flags & (VMMU_NOTIFIER_PIO | VMMU_NOTIFIER_DATAMATCH))) ||
	    ((n->flags & VMMU_NOTIFIER_PIO) && n->addr > 0xffff)) {
		log_err("vm: %s: bad notifier (addr 0x%llx len %u flags 0x%x fd %d)", what,
			(unsigned long long)n->addr, n->len, n->flags, n->fd);
		return -EINVAL;
	}
	NEED_OP(vm, notifier_add, what);
	NEED_OP(vm, notifier_remove, what);
	if (!(vm->caps.flags & VMMU_CAP_NOTIFIER)) {
		log_err("vm: %s: the %s backend offers no notifiers on this host", what, vm->ops->name);
		return -EOPNOTSUPP;
	}
	return 0;
}

int vmmu_vm_notifier_add(struct vmmu_vm *vm, const struct vmmu_notifier *n)
{
	int ret = notifier_check(vm, n, "notifier_add");

	return ret ? ret : vm->ops->notifier_add(vm, n);
}

int vmmu_vm_notifier_remove(struct vmmu_vm *vm, const struct vmmu_notifier *n)
{
	int ret = notifier_check(vm, n, "notifier_remove");

	return ret ? ret : vm->ops->notifier_remove(vm, n);
}

/* -------------------------------------------------------- guest memory */

#define HUGE_2M (2ULL << 20)

int vmmu_guestmem_init(struct vmmu_guestmem *mem, uint64_t size, uint32_t flags)
{
	uint64_t align;
	uint8_t *p;

	if (!mem || !size || size % VMMU_PAGE_SIZE ||
	    (flags & ~(VMMU_GUESTMEM_PREFAULT | VMMU_GUESTMEM_HUGETLB | VMMU_GUESTMEM_NO_THP)) ||
	    ((flags & VMMU_GUESTMEM_HUGETLB) && size % HUGE_2M)) {
		log_err("guestmem: bad size 0x%llx or flags 0x%x", (unsigned long long)size, flags);
		return -EINVAL;
	}
	memset(mem, 0, sizeof(*mem));
	mem->fd = -1;
	if (flags & VMMU_GUESTMEM_HUGETLB) {
		p = mmap(NULL, size, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | (21 << MAP_HUGE_SHIFT), -1, 0);
		if (p == MAP_FAILED) {
			log_err("guestmem: no free 2 MiB huge pages for 0x%llx bytes (vm.nr_hugepages)",
				(unsigned long long)size);
			return -ENOMEM;
		}
	} else {
		/* Over-map by 2 MiB and trim, so that THP can back whole guest 2 MiB pages. */
		align = size >= HUGE_2M ? HUGE_2M : VMMU_PAGE_SIZE;
		uint8_t *raw = mmap(NULL, size + align, PROT_READ | PROT_WRITE,
				    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

		if (raw == MAP_FAILED) {
			log_err("guestmem: cannot map 0x%llx bytes", (unsigned long long)size);
			return -ENOMEM;
		}
		p = (uint8_t *)(((uintptr_t)raw + align - 1) & ~(uintptr_t)(align - 1));
		if (p > raw)
			munmap(raw, p - raw);
		if (p + size < raw + size + align)
			munmap(p + size, raw + size + align - (p + size));
		if (!(flags & VMMU_GUESTMEM_NO_THP))
			madvise(p, size, MADV_HUGEPAGE); /* advice only: fine to fail */
	}
	mem->hva = p;
	mem->size = size;
	mem->flags = flags;
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
	if ((flags & VMMU_GUESTMEM_PREFAULT) && madvise(p, size, MADV_POPULATE_WRITE))
		log_warn("guestmem: MADV_POPULATE_WRITE failed; pages will be faulted on first use");
	return 0;
}

int vmmu_guestmem_init_fd(struct vmmu_guestmem *mem, int fd, uint64_t offset, uint64_t size, uint32_t flags)
{
	void *p;
	int err;

	if (!mem || fd < 0 || !size || size % VMMU_PAGE_SIZE || offset % VMMU_PAGE_SIZE ||
	    (flags & ~VMMU_GUESTMEM_PREFAULT)) {
		log_err("guestmem: bad fd %d, offset 0x%llx, size 0x%llx or flags 0x%x", fd,
			(unsigned long long)offset, (unsigned long long)size, flags);
		return -EINVAL;
	}
	memset(mem, 0, sizeof(*mem));
	mem->fd = -1;
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)offset);
	if (p == MAP_FAILED) {
		err = errno;
		log_err("guestmem: cannot map fd %d: %s", fd, strerror(err));
		return -err;
	}
	if ((flags & VMMU_GUESTMEM_PREFAULT) && madvise(p, size, MADV_POPULATE_WRITE))
		log_warn("guestmem: MADV_POPULATE_WRITE failed on fd %d (is the file large enough?)", fd);
	mem->hva = p;
	mem->size = size;
	mem->flags = flags;
	mem->fd = fd;
	return 0;
}

void vmmu_guestmem_finish(struct vmmu_guestmem *mem)
{
	if (!mem)
		return;
	if (mem->hva)
		munmap(mem->hva, mem->size);
	mem->hva = NULL;
	mem->size = 0;
	mem->fd = -1;
}

/* ------------------------------------- backend calls of backends not built */

#if !VMMU_HAVE_KVM
bool vmmu_vm_is_kvm(const struct vmmu_vm *vm)
{
	return false;
}

static int kvm_not_built(const char *what)
{
	log_err("kvm: %s: the KVM backend is not built into this library", what);
	return -EINVAL;
}

int vmmu_kvm_vm_fd(const struct vmmu_vm *vm)
{
	return kvm_not_built("vm_fd");
}

int vmmu_kvm_vcpu_fd(const struct vmmu_vcpu *vcpu)
{
	return kvm_not_built("vcpu_fd");
}

int vmmu_kvm_translate(struct vmmu_vcpu *vcpu, vmmu_gva_t gva, vmmu_gpa_t *gpa, bool *valid)
{
	return kvm_not_built("translate");
}
#endif

#if !VMMU_HAVE_HVF
bool vmmu_vm_is_hvf(const struct vmmu_vm *vm)
{
	return false;
}
#endif
