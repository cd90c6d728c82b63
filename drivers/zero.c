/*
 * zero.c: the zero device. Reads give zeros, writes are swallowed. Its
 * mappings are anonymous memory (fo_mmap without an object): MAP_SHARED a
 * new zero-fill object served by the fault engine, MAP_PRIVATE private
 * zero-fill memory of the host.
 */
#include <string.h>

#include <fomap/driver.h>

static ssize_t
zero_read(struct fm_dev *dev, void *buf, size_t len, off_t off)
{
	memset(buf, 0, len);
	return (ssize_t)len;
}

static int
zero_mmap(struct fm_dev *dev, struct fm_mmap_req *req)
{
	req->obj = NULL; /* anonymous: fomap makes it */
	return 0;
}

const struct fm_cdevsw fm__zero_cdevsw = {
    .d_open = fm_nullopen,
    .d_close = fm_nullclose,
    .d_read = zero_read,
    .d_write = fm_nullwrite,
    .d_ioctl = fm_noioctl,
    .d_mmap_single = zero_mmap,
};
