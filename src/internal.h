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

#endif
