/* SPDX-License-Identifier: MIT */
#include "vmmu-run.h"
#include <errno.h>
int migrate_local(struct machine *src, struct loop *l, const struct migrate_opts *o, struct machine *dst) { return -ENOSYS; }
int migrate_to_peer(struct machine *src, struct loop *l, const struct migrate_opts *o) { return -ENOSYS; }
int migrate_listen(const char *addr, struct loop *l, const char *backend, struct machine *dst, bool keep_caps) { return -ENOSYS; }
int snapshot_write(struct machine *m, const char *path) { return -ENOSYS; }
int snapshot_restore(const char *path, const char *backend, struct machine *m) { return -ENOSYS; }
