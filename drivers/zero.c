/*
 * zero.c: the zero device. Reads give zeros, writes are swallowed.
 * MAP_SHARED gives a new zero-fill object served by the fault engine;
 * MAP_PRIVATE gives private zero-fill memory of the host.
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "kern/kern.h"
#include "vm/vm.h"

static ssize_t
zero_read(struct fm_dev *dev, void *buf, size_t len, off_t off)
{
	memset(buf, 0, len);
	return (ssize_t)len;
}

static int
zero_mmap(struct fm_dev *dev, struct fm_mmap_req *req)
{
	req->maxprot = PROT_READ | PROT_WRITE | PROT_EXEC;
	req->off = 0;
	if (req->flags & MAP_PRIVATE)
		return fm__host_object(-1, &req->obj);
	return fm_object_create(NULL, req->len, NULL, &req->obj);
}

const struct fm_cdevsw fm__zero_cdevsw = {
    .d_open = fm_nullopen,
    .d_close = fm_nullclose,
    .d_read = zero_read,
    .d_write = fm_nullwrite,
    .d_ioctl = fm_noioctl,
    .d_mmap_single = zero_mmap,
};
