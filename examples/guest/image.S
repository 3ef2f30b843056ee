/* SPDX-License-Identifier: MIT */
/* The built-in guest's flat image (built by mkguest.sh), embedded in vmmu-run. */
	.section .rodata
	.balign 4096
	.globl vmmu_run_guest_image, vmmu_run_guest_image_end
vmmu_run_guest_image:
	.incbin GUEST_IMAGE
vmmu_run_guest_image_end:

	.section .note.GNU-stack,"",@progbits
