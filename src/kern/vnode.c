/*
 * vnode.c: the fileops of a file of the host: any descriptor fomap does not
 * own (a regular file, /dev/zero, a pipe, ...). Its fo_mmap returns a host
 * object: the kernel maps the file itself, or refuses it with its own
 * errno, and for a regular file its page cache (the best vnode pager there
 * is) keeps every mapping coherent with read(2) and write(2). fomap copies
 * nothing.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kern/kern.h"
#include "vm/vm.h"

static ssize_t
vn_read(struct fm_file *fp, void *buf, size_t len, off_t *offp)
{
	ssize_t r = read(fp->f_fd, buf, len);

	return r < 0 ? -errno : r;
}

static ssize_t
vn_write(struct fm_file *fp, const void *buf, size_t len, off_t *offp)
{
	ssize_t r = write(fp->f_fd, buf, len);

	return r < 0 ? -errno : r;
}

static int
vn_ioctl(struct fm_file *fp, unsigned long cmd, void *data)
{
	return ioctl(fp->f_fd, cmd, data) < 0 ? -errno : 0;
}

static int
vn_stat(struct fm_file *fp, struct stat *st)
{
	return fstat(fp->f_fd, st) < 0 ? -errno : 0;
}

static int
vn_mmap(struct fm_file *fp, struct fm_mmap_req *req)
{
	req->maxprot = PROT_READ | PROT_EXEC;
	if ((fp->f_flag & O_ACCMODE) == O_RDWR)
		req->maxprot |= PROT_WRITE;
	return fm__host_object(fp->f_fd, &req->obj);
}

const struct fm_fileops fm__vnfileops = {
    .fo_read = vn_read,
    .fo_write = vn_write,
    .fo_ioctl = vn_ioctl,
    .fo_stat = vn_stat,
    .fo_mmap = vn_mmap,
};
