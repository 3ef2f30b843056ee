/* SPDX-License-Identifier: MIT */
/* Version, error strings and the log sink. */

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

uint32_t vmmu_version(void)
{
	return VMMU_VERSION_NUMBER;
}

const char *vmmu_version_string(void)
{
	return VMMU_VERSION_STRING;
}

const char *vmmu_strerror(int err)
{
	if (err < 0)
		err = -err;
	switch (err) {
	case 0: return "success";
	case EINVAL: return "invalid argument";
	case EEXIST: return "already exists or overlaps";
	case ENOENT: return "no such object";
	case ENOMEM: return "out of memory";
	case EFAULT: return "address not backed by guest memory";
	case EACCES: return "access not permitted";
	case ENOSPC: return "no space left";
	case EOPNOTSUPP: return "operation not supported";
	case EBUSY: return "busy";
	case EAGAIN: return "try again";
	case EINTR: return "interrupted";
	case ENXIO: return "no such device or address";
	case ENODEV: return "no such device";
	case ERANGE: return "out of range";
	case EBADF: return "bad file descriptor";
	case EPERM: return "operation not permitted";
	case EIO: return "input/output error";
	case EPROTO: return "protocol error";
	case E2BIG: return "too big";
	case ELOOP: return "loop detected";
	case ETIMEDOUT: return "timed out";
	case ECONNREFUSED: return "connection refused";
	default: return "unknown error";
	}
}

static void default_sink(enum vmmu_log_level level, const char *msg, void *opaque)
{
	static const char *const names[] = { "error", "warning", "info", "debug" };

	(void)opaque;
	fprintf(stderr, "libvmmu: %s: %s\n", names[level <= VMMU_LOG_DEBUG ? level : VMMU_LOG_DEBUG], msg);
}

struct log_config {
	vmmu_log_fn fn;
	void *opaque;
	enum vmmu_log_level max_level;
};

static struct log_config log_cfg = { default_sink, NULL, VMMU_LOG_WARN };
static atomic_int log_max = VMMU_LOG_WARN;

void vmmu_set_log(vmmu_log_fn fn, enum vmmu_log_level max_level, void *opaque)
{
	log_cfg.fn = fn;
	log_cfg.opaque = opaque;
	log_cfg.max_level = max_level;
	atomic_store(&log_max, fn ? (int)max_level : -1);
}

bool log_enabled(enum vmmu_log_level level)
{
	return (int)level <= atomic_load_explicit(&log_max, memory_order_relaxed);
}

void log_line(enum vmmu_log_level level, const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	if (!log_enabled(level) || !log_cfg.fn)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	log_cfg.fn(level, buf, log_cfg.opaque);
}
