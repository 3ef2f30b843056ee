/* SPDX-License-Identifier: MIT */
/*
 * vmmu-run: boot the built-in guest on a libvmmu VM and, on request,
 * live-migrate it (to a second VM here, or to another vmmu-run over TCP),
 * snapshot it to a file or restore it. See docs/vmmu-run.md.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libvmmu/vmmu.h>

#include "vmmu-run.h"

static const char usage[] =
	"usage: vmmu-run [options]\n"
	"  (no option)              boot the built-in guest; exit with its status\n"
	"  --migrate                live-migrate the running guest to a second VM in this process\n"
	"  --migrate-to HOST:PORT   live-migrate it to 'vmmu-run --listen PORT' over TCP\n"
	"  --listen [HOST:]PORT     receive a migrating guest (HOST defaults to 127.0.0.1), then run it\n"
	"  --snapshot FILE          run the guest a while, then save it (sparse memory + vCPU) and exit\n"
	"  --restore FILE           resume a saved guest\n"
	"  --dirty-log MODE         bitmap (default), manual or ring: how migration finds dirty pages\n"
	"  --ring-entries N         dirty ring size per vCPU (a power of two >= 256; default 4096)\n"
	"  --after MS               after the guest's first workload pass, run this long\n"
	"                           before migrating or saving (default 100)\n"
	"  --max-downtime MS        stop-and-copy once the rest fits in this (default 20)\n"
	"  --max-rounds N           pre-copy rounds at most (default 30)\n"
	"  --mem MIB                work area of the guest, a power of two (default 16); RAM is 2 MiB more\n"
	"  --passes N               workload passes before the guest exits (default 8; 0 with migration)\n"
	"  --writes N               page writes per pass (default 4096)\n"
	"  --fill                   the guest writes every page of its work area once before the workload\n"
	"  --dirty-rate N           pace the guest to N page writes per second (default: as fast as it can)\n"
	"  --backend NAME           libvmmu backend: auto (default), kvm, soft, hvf\n"
	"  --keep-caps              keep capabilities (by default all are dropped once the VM exists)\n"
	"  -h, --help               this text\n";

enum mode { RUN, MIGRATE, MIGRATE_TO, LISTEN, SNAPSHOT, RESTORE };

struct options {
	enum mode mode;
	const char *arg; /* peer, listen address or file */
	const char *backend;
	struct workload w;
	struct migrate_opts mig;
	uint64_t after_ms;
	bool keep_caps;
	bool passes_set;
};

static int bad(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int bad(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "vmmu-run: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n%s", usage);
	va_end(ap);
	return EXIT_USAGE;
}

static bool parse_u64(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s || *end || *s == '-')
		return false;
	*out = v;
	return true;
}

static int parse(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{ "migrate", no_argument, NULL, 'm' }, { "migrate-to", required_argument, NULL, 't' },
		{ "listen", required_argument, NULL, 'l' }, { "snapshot", required_argument, NULL, 's' },
		{ "restore", required_argument, NULL, 'r' }, { "dirty-log", required_argument, NULL, 'd' },
		{ "after", required_argument, NULL, 'a' }, { "max-downtime", required_argument, NULL, 'D' },
		{ "max-rounds", required_argument, NULL, 'R' }, { "mem", required_argument, NULL, 'M' },
		{ "passes", required_argument, NULL, 'p' }, { "writes", required_argument, NULL, 'w' },
		{ "dirty-rate", required_argument, NULL, 'x' }, { "backend", required_argument, NULL, 'b' },
		{ "keep-caps", no_argument, NULL, 'k' }, { "fill", no_argument, NULL, 'f' },
		{ "ring-entries", required_argument, NULL, 'E' }, { "help", no_argument, NULL, 'h' }, { 0 },
	};
	uint64_t v, mib = 16;
	int c, modes = 0;

	*o = (struct options){ .backend = "auto", .after_ms = 100,
			       .w = { .passes = 8, .writes_per_pass = 4096, .writes_per_tick = 256 },
			       .mig = { .dirty_mode = VMMU_DIRTY_GET_CLEAR, .max_downtime_ms = 20, .max_rounds = 30 } };
	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'm': o->mode = MIGRATE; modes++; break;
		case 't': o->mode = MIGRATE_TO; o->arg = optarg; modes++; break;
		case 'l': o->mode = LISTEN; o->arg = optarg; modes++; break;
		case 's': o->mode = SNAPSHOT; o->arg = optarg; modes++; break;
		case 'r': o->mode = RESTORE; o->arg = optarg; modes++; break;
		case 'd':
			if (!strcmp(optarg, "bitmap"))
				o->mig.dirty_mode = VMMU_DIRTY_GET_CLEAR;
			else if (!strcmp(optarg, "manual"))
				o->mig.dirty_mode = VMMU_DIRTY_MANUAL;
			else if (!strcmp(optarg, "ring"))
				o->mig.dirty_mode = VMMU_DIRTY_RING;
			else
				return bad("--dirty-log: \"%s\" is not bitmap, manual or ring", optarg);
			break;
		case 'a':
			if (!parse_u64(optarg, &o->after_ms))
				return bad("--after: \"%s\" is not a number of milliseconds", optarg);
			break;
		case 'D':
			if (!parse_u64(optarg, &v) || !v)
				return bad("--max-downtime: \"%s\" is not a positive number of milliseconds", optarg);
			o->mig.max_downtime_ms = (double)v;
			break;
		case 'R':
			if (!parse_u64(optarg, &v) || !v || v > 1000)
				return bad("--max-rounds: \"%s\" is not a number in 1..1000", optarg);
			o->mig.max_rounds = (unsigned int)v;
			break;
		case 'M':
			if (!parse_u64(optarg, &mib) || mib < 2 || (mib & (mib - 1)) || mib > (1u << 16))
				return bad("--mem: \"%s\" is not a power of two from 2 to 65536 (MiB)", optarg);
			break;
		case 'p':
			if (!parse_u64(optarg, &o->w.passes))
				return bad("--passes: \"%s\" is not a number", optarg);
			o->passes_set = true;
			break;
		case 'w':
			if (!parse_u64(optarg, &o->w.writes_per_pass) || !o->w.writes_per_pass)
				return bad("--writes: \"%s\" is not a positive number", optarg);
			break;
		case 'x':
			if (!parse_u64(optarg, &v) || !v)
				return bad("--dirty-rate: \"%s\" is not a positive number of pages per second", optarg);
			o->w.dirty_rate = (double)v;
			break;
		case 'b': o->backend = optarg; break;
		case 'k': o->keep_caps = true; break;
		case 'f': o->w.fill = true; break;
		case 'E':
			if (!parse_u64(optarg, &v) || v < 256 || v > (1u << 20) || (v & (v - 1)))
				return bad("--ring-entries: \"%s\" is not a power of two from 256 to 1048576", optarg);
			ring_entries = (unsigned int)v;
			break;
		case 'h': fputs(usage, stdout); exit(0);
		default:
			return bad("unknown or incomplete option \"%s\"", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return bad("unexpected argument \"%s\"", argv[optind]);
	if (modes > 1)
		return bad("%s", "choose one of --migrate, --migrate-to, --listen, --snapshot, --restore");
	o->w.mem_size = GUEST_WORK_GPA + (mib << 20);
	if (o->w.writes_per_tick > o->w.writes_per_pass)
		o->w.writes_per_tick = o->w.writes_per_pass;
	/* A guest that is to be moved runs until the host asks it to finish. */
	if (!o->passes_set && (o->mode == MIGRATE || o->mode == MIGRATE_TO || o->mode == SNAPSHOT))
		o->w.passes = 0;
	o->mig.peer = o->arg;
	return 0;
}

/* Explain why no VM could be made. */
static int no_vm(int err, const char *backend)
{
	if (err == -ENOEXEC) {
		msg("%s the soft backend, which models the MMU but cannot execute x86 guest code. vmmu-run "
		    "needs a readable and writable /dev/kvm (load kvm_intel or kvm_amd; be root or in the kvm group).",
		    strcmp(backend, "soft") ? "/dev/kvm cannot be opened, so the VM is on" : "the VM is on");
		return EXIT_NOVM;
	}
	msg("cannot create a VM on backend \"%s\": %s", backend, vmmu_strerror(err));
	if (err == -ENODEV || err == -ENOENT || err == -EACCES || err == -EPERM)
		msg("vmmu-run runs x86 code through KVM: it needs a readable and writable /dev/kvm (load kvm_intel "
		    "or kvm_amd; be root or in the kvm group). The soft backend models the MMU but cannot "
		    "execute guest instructions.");
	return err == -EINVAL ? EXIT_USAGE : EXIT_NOVM;
}

int machine_setup(struct machine *m, const char *backend, uint32_t dirty_mode, uint64_t mem_size)
{
	int ret = machine_create(m, backend, dirty_mode, mem_size, false);

	if (ret) {
		machine_destroy(m);
		return no_vm(ret, backend);
	}
	return 0;
}

/*
 * Run until the guest exits; @action fires once after @after_ms (migration,
 * snapshot). Every wait goes through the io_uring loop.
 */
static int run_loop(struct loop *l, struct machine **mp, const struct options *o, uint64_t t0)
{
	struct machine *m = *mp;
	uint64_t passes = 0, first_output = 0;
	bool acted = o->mode == RUN || o->mode == LISTEN || o->mode == RESTORE;
	int status = -1;

	if (loop_watch(l, m->event_fd, TAG_MACHINE) || loop_watch(l, m->pass_fd, TAG_PASS))
		return EXIT_INTERNAL;
	for (;;) {
		enum loop_tag tag;
		uint64_t n;
		enum machine_state st;
		int ret = loop_wait(l, &tag, &n);

		if (ret) {
			msg("event loop: %s", strerror(-ret));
			return EXIT_INTERNAL;
		}
		if (tag == TAG_PASS) {
			/*
			 * --after counts from the end of the guest's first pass of its
			 * workload, not from start-up: on a loaded host the guest may
			 * not even have printed its greeting after a fixed delay.
			 */
			if (!acted && !passes && loop_timer(l, o->after_ms * 1000000ULL))
				return EXIT_INTERNAL;
			passes += n;
			continue;
		}
		if (tag == TAG_TIMER && !acted) {
			acted = true;
			if (o->mode == SNAPSHOT) {
				ret = snapshot_write(m, o->arg);
				return ret ? EXIT_IO : 0;
			}
			if (o->mode == MIGRATE) {
				struct machine *dst = calloc(1, sizeof(*dst));

				if (!dst)
					return EXIT_INTERNAL;
				ret = migrate_local(m, l, &o->mig, dst);
				if (ret) {
					free(dst);
					msg("migration failed: %s; the guest keeps running here", strerror(-ret));
					atomic_store(&m->stop_guest, true);
					status = machine_wait_exit(m);
					return status == 0 ? EXIT_MIGFAIL : status < 0 ? EXIT_INTERNAL : status;
				}
				first_output = m->first_output_ns;
				machine_destroy(m);
				free(m);
				*mp = m = dst;
				if (loop_watch(l, m->event_fd, TAG_MACHINE) || loop_watch(l, m->pass_fd, TAG_PASS))
					return EXIT_INTERNAL;
				continue;
			}
			/* MIGRATE_TO */
			ret = migrate_to_peer(m, l, &o->mig);
			if (ret == 0) {
				msg("the guest now runs on %s; exiting", o->arg);
				return 0;
			}
			msg("migration to %s failed; the guest keeps running here and finishes", o->arg);
			atomic_store(&m->stop_guest, true);
			status = machine_wait_exit(m);
			return status == 0 ? EXIT_MIGFAIL : status < 0 ? EXIT_INTERNAL : status;
		}
		if (tag != TAG_MACHINE)
			continue;
		st = machine_state(m);
		if (st == M_EXITED || st == M_FAILED)
			break;
	}
	status = machine_wait_exit(m);
	if (status < 0)
		return EXIT_INTERNAL;
	if (!acted) {
		msg("the guest ended (status %d) before --after %llu ms: nothing was %s", status,
		    (unsigned long long)o->after_ms, o->mode == SNAPSHOT ? "saved" : "migrated");
		return EXIT_MIGFAIL;
	}
	if (!first_output)
		first_output = m->first_output_ns;
	msg("guest exited with status %d after %llu passes; first output %.0f us after start, total %.1f ms",
	    status, (unsigned long long)passes,
	    first_output ? (double)(first_output - t0) / 1e3 : -1.0, (double)(now_ns() - t0) / 1e6);
	return status;
}

static int start_loop(struct loop **l)
{
	int ret = loop_create(l);

	trace("io_uring set up");
	if (ret)
		msg("io_uring: %s", strerror(-ret));
	return ret;
}

int main(int argc, char **argv)
{
	uint64_t t0 = now_ns();
	struct options o;
	struct machine *m = NULL;
	struct loop *l = NULL;
	int ret = parse(argc, argv, &o);

	if (ret)
		return ret;
	if (getenv("VMMU_RUN_TRACE"))
		trace_t0 = t0;
	signal(SIGPIPE, SIG_IGN);
	/* The event loop is first needed by --listen, or else once the guest runs: it is set up meanwhile. */
	if (o.mode == LISTEN && start_loop(&l))
		return EXIT_INTERNAL;
	m = calloc(1, sizeof(*m));
	if (!m) {
		ret = EXIT_INTERNAL;
		goto out;
	}
	if (o.mode == LISTEN) {
		ret = migrate_listen(o.arg, l, o.backend, m, o.keep_caps);
		if (ret)
			goto out;
	} else if (o.mode == RESTORE) {
		ret = snapshot_restore(o.arg, o.backend, m);
		if (ret)
			goto out;
	} else {
		ret = machine_setup(m, o.backend, o.mig.dirty_mode, o.w.mem_size);
		if (ret)
			goto out;
		ret = machine_load_guest(m, &o.w);
		if (ret) {
			msg("loading the guest failed: %s", vmmu_strerror(ret));
			ret = EXIT_INTERNAL;
			goto out;
		}
	}
	if (!o.keep_caps && o.mode != LISTEN) {
		int err = privs_drop();

		if (err)
			msg("dropping capabilities failed: %s (going on)", strerror(-err));
		trace("capabilities dropped");
	}
	if (machine_resume(m)) {
		ret = EXIT_INTERNAL;
		goto out;
	}
	trace("vCPU thread started");
	if (!l && start_loop(&l)) {
		ret = EXIT_INTERNAL;
		goto out;
	}
	ret = run_loop(l, &m, &o, t0);
out:
	if (m)
		machine_destroy(m);
	free(m);
	loop_destroy(l);
	return ret;
}
