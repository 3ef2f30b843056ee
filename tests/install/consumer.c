/* SPDX-License-Identifier: MIT */
/* A consumer built only from the installed headers and pkg-config flags. */
#include <stdio.h>
#include <string.h>

#include <libvmmu/vmmu.h>
#include <libvmmu/memslot.h>

int main(void)
{
	static unsigned char mem[4096] __attribute__((aligned(4096)));
	struct vmmu_memslots *s;
	unsigned char byte = 0;

	if (vmmu_version() != VMMU_VERSION_NUMBER) {
		printf("FAIL: runtime version %s, compiled against %s\n", vmmu_version_string(), VMMU_VERSION_STRING);
		return 1;
	}
	if (vmmu_memslots_create(&s) || vmmu_memslots_add(s, 0, 0x1000, sizeof(mem), mem, 0))
		return 1;
	mem[5] = 0x5a;
	if (vmmu_memslots_read(s, 0x1005, &byte, 1) || byte != 0x5a) {
		printf("FAIL: read through the installed library\n");
		return 1;
	}
	vmmu_memslots_destroy(s);
	printf("consumer: libvmmu %s ok\n", vmmu_version_string());
	return 0;
}
