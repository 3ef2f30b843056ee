/* SPDX-License-Identifier: MIT */
/* Private helpers shared by the library's sources. Never installed. */
#ifndef VMMU_INTERNAL_H
#define VMMU_INTERNAL_H

#include <libvmmu/vmmu.h>

#if defined(__GNUC__)
#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#define PRINTF_FMT(a, b) __attribute__((format(printf, a, b)))
#else
#define likely(x) (x)
#define unlikely(x) (x)
#define PRINTF_FMT(a, b)
#endif

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define BIT_ULL(n) (1ULL << (n))
/* Bits h..l inclusive. */
#define GENMASK_ULL(h, l) ((~0ULL << (l)) & (~0ULL >> (63 - (h))))

/* Format and emit one log line through the process-wide sink. */
void log_line(enum vmmu_log_level level, const char *fmt, ...) PRINTF_FMT(2, 3);
/* True if a line at @level would be emitted (to skip costly formatting). */
bool log_enabled(enum vmmu_log_level level);

#define log_err(...) log_line(VMMU_LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_line(VMMU_LOG_WARN, __VA_ARGS__)
#define log_info(...) log_line(VMMU_LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_line(VMMU_LOG_DEBUG, __VA_ARGS__)

/* Smallest per-vCPU dirty ring the VM and MMU layers accept (entries). */
#define DIRTY_RING_MIN_ENTRIES 256

/*
 * Shared checks of the options structs (vm.h, mmu.h), logged with @who:
 * a ring size of 0 (default) or a power of two >= DIRTY_RING_MIN_ENTRIES, and
 * reserved fields all zero.
 */
static inline bool ring_entries_valid(const char *who, uint32_t n)
{
	if (n && (n < DIRTY_RING_MIN_ENTRIES || (n & (n - 1)))) {
		log_err("%s: ring_entries %u is not a power of two >= %u", who, n, DIRTY_RING_MIN_ENTRIES);
		return false;
	}
	return true;
}

static inline bool reserved_zero(const char *who, const uint64_t *r, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (r[i]) {
			log_err("%s: reserved option fields must be zero", who);
			return false;
		}
	return true;
}

#endif
