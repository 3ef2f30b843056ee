/* SPDX-License-Identifier: MIT */
/*
 * Least privilege: once /dev/kvm is open and guest memory is mapped, vmmu-run
 * needs no capability. Clear the bounding, ambient, permitted, effective and
 * inheritable sets and set no-new-privileges, then say what was dropped.
 *
 * Plain prctl()/capset() rather than libcap: libcap costs a shared library to
 * load and three system calls per capability, about 0.2 ms of a boot that
 * takes a few milliseconds.
 */
#include <errno.h>
#include <linux/capability.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "vmmu-run.h"

/* The names of the capabilities, by number (linux/capability.h). */
static const char *const cap_names[] = {
	"cap_chown", "cap_dac_override", "cap_dac_read_search", "cap_fowner", "cap_fsetid", "cap_kill",
	"cap_setgid", "cap_setuid", "cap_setpcap", "cap_linux_immutable", "cap_net_bind_service",
	"cap_net_broadcast", "cap_net_admin", "cap_net_raw", "cap_ipc_lock", "cap_ipc_owner", "cap_sys_module",
	"cap_sys_rawio", "cap_sys_chroot", "cap_sys_ptrace", "cap_sys_pacct", "cap_sys_admin", "cap_sys_boot",
	"cap_sys_nice", "cap_sys_resource", "cap_sys_time", "cap_sys_tty_config", "cap_mknod", "cap_lease",
	"cap_audit_write", "cap_audit_control", "cap_setfcap", "cap_mac_override", "cap_mac_admin", "cap_syslog",
	"cap_wake_alarm", "cap_block_suspend", "cap_audit_read", "cap_perfmon", "cap_bpf", "cap_checkpoint_restore",
};

int privs_drop(void)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct data[2] = { 0 };
	char held[1024] = "";
	unsigned int nheld = 0, nbound = 0;

	if (syscall(SYS_capget, &hdr, data))
		return -errno;
	for (unsigned int c = 0; c < 64; c++) {
		uint64_t permitted = data[0].permitted | (uint64_t)data[1].permitted << 32;
		int in_bound = prctl(PR_CAPBSET_READ, c, 0, 0, 0);

		if (permitted & (1ULL << c)) {
			char num[16];
			const char *name = c < sizeof(cap_names) / sizeof(cap_names[0]) ? cap_names[c] : num;

			snprintf(num, sizeof(num), "cap_%u", c);
			if (nheld++ < 8 && strlen(held) + strlen(name) + 3 < sizeof(held)) {
				strcat(held, nheld > 1 ? ", " : "");
				strcat(held, name);
			}
		}
		if (in_bound < 0) /* past the last capability this kernel knows */
			break;
		/* The bounding set needs CAP_SETPCAP, so it goes first. */
		if (in_bound == 1 && prctl(PR_CAPBSET_DROP, c, 0, 0, 0) == 0)
			nbound++;
	}
	/* Ambient capabilities may be absent (before Linux 4.3): nothing to clear then. */
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) && errno != EINVAL)
		return -errno;
	memset(data, 0, sizeof(data));
	if (syscall(SYS_capset, &hdr, data))
		return -errno;
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		return -errno;
	msg("privileges: dropped %u capabilities (%s%s), %u from the bounding set; no_new_privs set", nheld,
	    nheld ? held : "none held", nheld > 8 ? ", ..." : "", nbound);
	return 0;
}
