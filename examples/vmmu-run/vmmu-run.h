/* SPDX-License-Identifier: MIT */
/*
 * vmmu-run: a mini-VMM on libvmmu's public API. Shared declarations of its parts:
 *   machine.c  a VM with guest RAM, long-mode page tables, the built-in guest and
 *              a vCPU thread that handles its exits (serial, debug exit, tick);
 *   migrate.c  pre-copy live migration to a sink (a second VM in this process,
 *              a TCP stream, a snapshot file) and the receiving side;
 *   loop.c     the io_uring event loop of the main thread;
 *   privs.c    dropping capabilities once the VM exists;
 *   main.c     arguments and the modes.
 * Messages of vmmu-run go to stderr prefixed "vmmu-run: "; stdout carries only
 * what the guest writes to its serial port.
 */
#ifndef VMMU_RUN_H
#define VMMU_RUN_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <libvmmu/vm.h>

#include "../guest/protocol.h"

/* Exit statuses of vmmu-run itself (the guest's own status is passed through otherwise). */
#define EXIT_USAGE     64 /* bad arguments */
#define EXIT_NOVM      69 /* no VM could be created (no /dev/kvm...) */
#define EXIT_INTERNAL  70 /* a vmmu-run or library failure, or the guest crashed */
#define EXIT_IO        74 /* the migration stream or a file broke (truncated, corrupt, unreachable peer) */
#define EXIT_MIGFAIL   75 /* migration failed; the guest kept running on the source and finished there */
#define EXIT_PROTOCOL  76 /* stream version or format mismatch */

#define PAGE_SIZE 4096ULL

/* What the guest should do (struct guest_params, filled from the command line). */
struct workload {
	uint64_t mem_size;        /* guest RAM in bytes: 2 MiB + a power-of-two work area */
	uint64_t passes;          /* 0: run until asked to stop */
	uint64_t writes_per_pass;
	uint64_t writes_per_tick;
	double dirty_rate;        /* page writes per second the host paces the guest to; 0 = no pacing */
	bool fill;                /* write every work page once first */
};

struct vcpu_state {
	struct vmmu_regs regs;
	struct vmmu_sregs sregs;
	uint32_t epoch;           /* the guest's resume counter (GUEST_PORT_TICK) */
	uint32_t pad;
};

enum machine_state { M_CREATED, M_RUNNING, M_PARKED, M_EXITED, M_FAILED };

struct machine {
	struct vmmu_vm *vm;
	struct vmmu_vcpu *vcpu;
	struct vmmu_guestmem ram;
	uint64_t mem_size;
	uint32_t dirty_mode;

	pthread_t thread;
	bool thread_started;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	pthread_cond_t pace_cond;   /* CLOCK_MONOTONIC: the pacing wait, cut short by machine_park() */
	enum machine_state state;   /* under lock */
	bool resume;                /* under lock: the parked thread may go on */
	bool quit;                  /* under lock: the parked thread must end */
	atomic_bool park_req;       /* the main thread wants the vCPU parked */
	int event_fd;               /* written by the vCPU thread when it parks, exits or fails */
	int pass_fd;                /* ioeventfd on GUEST_PORT_PASS (-1 without notifiers) */

	atomic_uint epoch;          /* low 16 bits go to the guest */
	atomic_bool stop_guest;     /* GUEST_TICK_STOP */
	double dirty_rate;
	uint64_t writes_per_tick;
	uint64_t next_tick_ns;

	int guest_status;           /* M_EXITED: what the guest wrote to GUEST_PORT_EXIT */
	char failure[160];          /* M_FAILED: why */
	uint64_t first_output_ns;   /* CLOCK_MONOTONIC of the first serial byte, 0 before */
	uint64_t ring_full_exits;
};

/* machine.c */
extern unsigned int ring_entries; /* dirty ring entries per vCPU (--ring-entries), 0 = library default */
/* main.c: machine_create() with the error explained; 0 or an exit status */
int machine_setup(struct machine *m, const char *backend, uint32_t dirty_mode, uint64_t mem_size);
int machine_create(struct machine *m, const char *backend, uint32_t dirty_mode, uint64_t mem_size,
		   bool prefault);
int machine_load_guest(struct machine *m, const struct workload *w);
int machine_start(struct machine *m);
int machine_park(struct machine *m);
int machine_resume(struct machine *m);
int machine_wait_exit(struct machine *m);
void machine_destroy(struct machine *m);
int machine_get_state(struct machine *m, struct vcpu_state *s);
int machine_set_state(struct machine *m, const struct vcpu_state *s);
enum machine_state machine_state(struct machine *m);
uint64_t now_ns(void);
/* VMMU_RUN_TRACE=1 in the environment: the startup timeline on stderr, in us since main(). */
extern uint64_t trace_t0;
void trace(const char *what);
void msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
bool page_is_zero(const void *p);

/* loop.c: the main thread's io_uring. */
struct loop;
enum loop_tag { TAG_MACHINE = 1, TAG_PASS, TAG_TIMER, TAG_IO };
int loop_create(struct loop **out);
void loop_destroy(struct loop *l);
int loop_watch(struct loop *l, int fd, enum loop_tag tag);
int loop_timer(struct loop *l, uint64_t ns);
int loop_wait(struct loop *l, enum loop_tag *tag, uint64_t *count);
int loop_write_all(struct loop *l, int fd, const void *buf, size_t len);
int loop_read(struct loop *l, int fd, void *buf, size_t len, unsigned int timeout_ms);
int loop_write_async(struct loop *l, int fd, const void *buf, size_t len);
int loop_write_wait(struct loop *l);
int loop_connect(struct loop *l, int fd, const void *addr, unsigned int addrlen);
int loop_accept(struct loop *l, int fd);

/* privs.c */
int privs_drop(void);

/* migrate.c */
struct migrate_opts {
	uint32_t dirty_mode;
	double max_downtime_ms;
	unsigned int max_rounds;
	const char *peer;       /* --migrate-to HOST:PORT */
};
int migrate_local(struct machine *src, struct loop *l, const struct migrate_opts *o, struct machine *dst);
int migrate_to_peer(struct machine *src, struct loop *l, const struct migrate_opts *o);
int migrate_listen(const char *addr, struct loop *l, const char *backend, struct machine *dst,
		   bool keep_caps);
int snapshot_write(struct machine *m, const char *path);
int snapshot_restore(const char *path, const char *backend, struct machine *m);

#endif
