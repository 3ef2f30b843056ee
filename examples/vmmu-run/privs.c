/* SPDX-License-Identifier: MIT */
/*
 * Least privilege: once /dev/kvm is open and guest memory is mapped, vmmu-run
 * needs no capability. Clear the bounding, ambient, permitted, effective and
 * inheritable sets and set no-new-privileges, then say what was dropped.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

#include <sys/capability.h>

#include "vmmu-run.h"

int privs_drop(void)
{
	cap_t caps = cap_get_proc(), none = NULL;
	char held[1024] = "";
	unsigned int nheld = 0, nbound = 0;
	int ret = 0;

	if (!caps)
		return -errno;
	for (cap_value_t c = 0; cap_valid(c); c++) {
		cap_flag_value_t v = CAP_CLEAR;

		if (cap_get_flag(caps, c, CAP_PERMITTED, &v) == 0 && v == CAP_SET) {
			char *name = cap_to_name(c);

			if (nheld++ < 8 && name && strlen(held) + strlen(name) + 3 < sizeof(held)) {
				strcat(held, nheld > 1 ? ", " : "");
				strcat(held, name);
			}
			cap_free(name);
		}
		/* The bounding set needs CAP_SETPCAP, so it goes first. */
		if (CAP_IS_SUPPORTED(c) && cap_get_bound(c) == 1 && cap_drop_bound(c) == 0)
			nbound++;
	}
	cap_reset_ambient();
	none = cap_init();
	if (!none || cap_set_proc(none))
		ret = -errno;
	if (!ret && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		ret = -errno;
	if (!ret)
		msg("privileges: dropped %u capabilities (%s%s), %u from the bounding set; no_new_privs set",
		    nheld, nheld ? held : "none held", nheld > 8 ? ", ..." : "", nbound);
	cap_free(none);
	cap_free(caps);
	return ret;
}
