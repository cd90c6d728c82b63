/*
 * pager_anon.c: the anonymous pager, zero-fill memory (NetBSD's uvm_aobj).
 * An object made without pager ops (fm_object_create(NULL, ...), the
 * object of a file whose fo_mmap answers with none, a device's memory)
 * has this pager: its pages read as zeros until written, and it has
 * nowhere to write them back (no pgo_put), so no page of it is tracked
 * dirty. Its pgo_get is also the fill of every pager that has none
 * (fm__pgo_get).
 *
 * The engine recognises it (fm__pgo_zero_fill: no pgo_fault, and this
 * pgo_get or none): in a shared registration it fills and maps the pages
 * at once with UFFDIO_ZEROPAGE (fault.c: zero_install), the kernel
 * allocating each page in the store, and this pgo_get does not run; in a
 * private one, or for pages that must be mapped write-protected, it does.
 */
#include <errno.h>
#include <fcntl.h>

#include "vm/vm.h"

/*
 * fm__anon_get: zero-fill pages [pgidx, pgidx + *npages), all of them:
 * allocated in the store, which clears each page when it is first mapped.
 * => 0, or -ENOMEM (no room left in the store), -errno
 */
int
fm__anon_get(struct fm_object *obj, uint64_t pgidx, unsigned *npages)
{
	if (fallocate(obj->fd, 0, obj->base + (off_t)(pgidx << FM_PAGE_SHIFT),
	        (off_t)*npages << FM_PAGE_SHIFT) < 0)
		return errno == ENOSPC ? -ENOMEM : -errno;
	return 0;
}

const struct fm_pagerops fm__anon_pagerops = {
    .pgo_get = fm__anon_get,
};
