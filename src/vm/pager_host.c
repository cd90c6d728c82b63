/*
 * pager_host.c: host objects. The host kernel maps them itself (a regular
 * file, or anonymous memory when there is no file) and is their pager;
 * fomap only keeps the mapping in its map.
 */
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "vm/vm.h"

/* The host kernel is the pager: no hook ever runs (no fault reaches us). */
static const struct fm_pagerops host_pagerops = {0};

/*
 * fm__host_object: a host object for fd (duplicated), or for anonymous
 * memory when fd is -1. => 0 with *objp referenced, or -errno
 */
int
fm__host_object(int fd, struct fm_object **objp)
{
	int dfd = -1, r;

	if (fd >= 0 && (dfd = fcntl(fd, F_DUPFD_CLOEXEC, 0)) < 0)
		return -errno;
	r = fm__object_alloc(&host_pagerops, 0, NULL, dfd, FM_OBJ_HOST, objp);
	if (r < 0 && dfd >= 0)
		close(dfd);
	return r;
}
