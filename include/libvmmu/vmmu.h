/* SPDX-License-Identifier: MIT */
/*
 * libvmmu: a user-space x86 MMU library for virtual machine monitors.
 *
 * This header holds what every part of the library shares: the version, error
 * strings and the log callback. Conventions for every function of the library:
 *  - fallible calls return int: 0 (or a count) on success, a negative errno on
 *    failure; results that are not errors (a walk that faults) are non-negative
 *    enums, so -errno stays free for real errors;
 *  - constructors take an out-parameter; every *_destroy accepts NULL;
 *  - nothing is printed except through the log callback below.
 */
#ifndef LIBVMMU_VMMU_H
#define LIBVMMU_VMMU_H

#include <stdarg.h>

#include <libvmmu/types.h>
#include <libvmmu/version.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Runtime version, encoded as VMMU_VERSION_NUMBER is: major << 16 | minor << 8 | patch. */
VMMU_API uint32_t vmmu_version(void);

/** Runtime version as a static string such as "0.1.0". Never NULL; not to be freed. */
VMMU_API const char *vmmu_version_string(void);

/**
 * vmmu_strerror() - describe an error code returned by a libvmmu call.
 * @err: a negative (or positive) errno value as returned by the library.
 *
 * Return: a static, thread-safe string; never NULL. Unknown values give
 * "unknown error".
 */
VMMU_API const char *vmmu_strerror(int err);

/** Log levels, lowest value most severe. */
enum vmmu_log_level {
	VMMU_LOG_ERROR = 0,
	VMMU_LOG_WARN = 1,
	VMMU_LOG_INFO = 2,
	VMMU_LOG_DEBUG = 3,
};

/**
 * typedef vmmu_log_fn - a log sink.
 * @level: severity of the message.
 * @msg: the formatted message, without a trailing newline; valid only during the call.
 * @opaque: the pointer given to vmmu_set_log().
 *
 * May be called from any thread that calls into the library, concurrently.
 */
typedef void (*vmmu_log_fn)(enum vmmu_log_level level, const char *msg, void *opaque);

/**
 * vmmu_set_log() - route library log lines to @fn.
 * @fn: the sink, or NULL to discard every message.
 * @max_level: messages less severe than this are dropped before formatting.
 * @opaque: passed back to @fn.
 *
 * Process-wide. The default sink writes VMMU_LOG_WARN and more severe lines to
 * stderr prefixed with "libvmmu: ". Callers should set the sink before starting
 * threads that use the library.
 */
VMMU_API void vmmu_set_log(vmmu_log_fn fn, enum vmmu_log_level max_level, void *opaque);

#ifdef __cplusplus
}
#endif

#endif
