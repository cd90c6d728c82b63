/*
 * zero.c: the zero device. Reads give zeros, writes are swallowed. Its
 * mappings are anonymous memory (fo_mmap without an object): MAP_SHARED a
 * new zero-fill object served by the fault engine, MAP_PRIVATE private
 * zero-fill memory of the host.
 */
#include <string.h>
#include <sys/mman.h>

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

/*
 * For a program in another process (fomapd): each open its own zero-fill
 * object of FM_ZERO_BACKING bytes, whose mappings the kernel fills. Unlike
 * an embedded MAP_SHARED mapping, two mappings through one open share it.
 */
#define FM_ZERO_BACKING ((size_t)1 << 30)

static int
zero_backing(struct fm_dev *dev, struct fm_object **objp, int *maxprot)
{
	*maxprot = PROT_READ | PROT_WRITE | PROT_EXEC;
	return fm_object_create_backing(FM_ZERO_BACKING, NULL, objp);
}

const struct fm_cdevsw fm__zero_cdevsw = {
    .d_open = fm_nullopen,
    .d_close = fm_nullclose,
    .d_read = zero_read,
    .d_write = fm_nullwrite,
    .d_ioctl = fm_noioctl,
    .d_mmap_single = zero_mmap,
    .d_backing = zero_backing,
};
