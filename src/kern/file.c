/*
 * file.c: fomap descriptors and the POSIX-mirror file calls.
 *
 * A fomap descriptor is a real kernel descriptor number, reserved by
 * duplicating a descriptor of /dev/null, so it can never collide with one
 * the process opens itself. The table maps it to its struct fm_file.
 * A descriptor fomap does not know is an ordinary one: the calls pass it
 * to the host kernel.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kern/kern.h"

static struct {
	pthread_mutex_t lock;
	struct fm_file **v; /* indexed by descriptor */
	int n;
	int anchor; /* /dev/null, duplicated to reserve numbers */
} fm__files = {.lock = PTHREAD_MUTEX_INITIALIZER, .anchor = -1};

static int
fd_reserve(void)
{
	int fd;

	pthread_mutex_lock(&fm__files.lock);
	if (fm__files.anchor < 0)
		fm__files.anchor = open("/dev/null", O_RDONLY | O_CLOEXEC);
	fd = fm__files.anchor < 0 ? -1
	                          : fcntl(fm__files.anchor, F_DUPFD_CLOEXEC, 0);
	pthread_mutex_unlock(&fm__files.lock);
	return fd < 0 ? -errno : fd;
}

static int
table_insert(struct fm_file *fp)
{
	int fd = fp->f_fd, r = 0;

	pthread_mutex_lock(&fm__files.lock);
	if (fd >= fm__files.n) {
		int n = fm__files.n ? fm__files.n : 64;
		struct fm_file **v;

		while (n <= fd)
			n *= 2;
		v = realloc(fm__files.v, (size_t)n * sizeof(*v));
		if (v == NULL) {
			r = -ENOMEM;
			goto out;
		}
		memset(v + fm__files.n, 0,
		    (size_t)(n - fm__files.n) * sizeof(*v));
		fm__files.v = v;
		fm__files.n = n;
	}
	fm__files.v[fd] = fp;
out:
	pthread_mutex_unlock(&fm__files.lock);
	return r;
}

/* Take fd out of the table; returns its file (with the table's reference). */
static struct fm_file *
table_remove(int fd)
{
	struct fm_file *fp = NULL;

	pthread_mutex_lock(&fm__files.lock);
	if (fd >= 0 && fd < fm__files.n) {
		fp = fm__files.v[fd];
		fm__files.v[fd] = NULL;
	}
	pthread_mutex_unlock(&fm__files.lock);
	return fp;
}

struct fm_file *
fm__file_get(int fd, struct fm_file *tmp, int *err)
{
	struct fm_file *fp = NULL;
	struct stat st;
	int fl;

	pthread_mutex_lock(&fm__files.lock);
	if (fd >= 0 && fd < fm__files.n && (fp = fm__files.v[fd]) != NULL)
		atomic_fetch_add(&fp->f_refs, 1);
	pthread_mutex_unlock(&fm__files.lock);
	if (fp != NULL)
		return fp;
	if (tmp == NULL || (fl = fcntl(fd, F_GETFL)) < 0 ||
	    fstat(fd, &st) < 0) {
		*err = -EBADF;
		return NULL;
	}
	if (!S_ISREG(st.st_mode)) {
		*err = -ENODEV;
		return NULL;
	}
	memset(tmp, 0, sizeof(*tmp));
	tmp->f_ops = &fm__vnfileops;
	tmp->f_flag = fl;
	tmp->f_fd = fd;
	atomic_init(&tmp->f_refs, 2); /* never freed: it is the caller's */
	return tmp;
}

void
fm__file_rele(struct fm_file *fp)
{
	if (atomic_fetch_sub(&fp->f_refs, 1) != 1)
		return;
	if (fp->f_ops->fo_close)
		(void)fp->f_ops->fo_close(fp);
	if (fp->f_dev)
		atomic_fetch_sub(&fp->f_dev->opens, 1);
	close(fp->f_fd);
	free(fp);
}

static int
dev_open(const char *name, int flags)
{
	struct fm_dev *dev;
	struct fm_file *fp;
	int r;

	if ((flags & O_ACCMODE) == O_ACCMODE)
		return -EINVAL;
	fp = calloc(1, sizeof(*fp));
	if (fp == NULL)
		return -ENOMEM;
	dev = fm__dev_lookup(name); /* counted open: it cannot go away */
	if (dev == NULL) {
		free(fp);
		return -ENXIO;
	}
	fp->f_ops = &fm__devfileops;
	fp->f_flag = flags & (O_ACCMODE | O_APPEND | O_NONBLOCK);
	fp->f_dev = dev;
	atomic_init(&fp->f_refs, 1);
	fp->f_fd = r = fd_reserve();
	if (r < 0)
		goto err;
	r = dev->cdev->d_open ? dev->cdev->d_open(dev, flags, fp) : 0;
	if (r < 0) {
		close(fp->f_fd);
		goto err;
	}
	r = table_insert(fp);
	if (r < 0) {
		fm__file_rele(fp); /* closes it through the driver */
		return r;
	}
	return fp->f_fd;
err:
	atomic_fetch_sub(&dev->opens, 1);
	free(fp);
	return r;
}

int
fm_open(const char *path, int flags, ...)
{
	size_t plen = strlen(FM_DEVPREFIX);
	mode_t mode = 0;
	va_list ap;
	int r;

	if (path == NULL) {
		errno = EFAULT;
		return -1;
	}
	if (strncmp(path, FM_DEVPREFIX, plen) != 0) {
		if (flags & (O_CREAT | O_TMPFILE)) {
			va_start(ap, flags);
			mode = va_arg(ap, mode_t);
			va_end(ap);
		}
		return open(path, flags | O_CLOEXEC, mode);
	}
	r = dev_open(path + plen, flags);
	if (r < 0) {
		errno = -r;
		return -1;
	}
	return r;
}

int
fm_close(int fd)
{
	struct fm_file *fp = table_remove(fd);

	if (fp == NULL)
		return close(fd);
	fm__file_rele(fp);
	return 0;
}

/* Run one fileops call on fd, or the host's call on an ordinary fd. */
#define FILE_CALL(fd, method, hostcall, ...)                                   \
	do {                                                                   \
		int err_;                                                      \
		struct fm_file *fp_ = fm__file_get(fd, NULL, &err_);           \
		ssize_t r_;                                                    \
		if (fp_ == NULL)                                               \
			return hostcall;                                       \
		r_ = fp_->f_ops->method ? fp_->f_ops->method(fp_, __VA_ARGS__) \
		                        : -ENODEV;                             \
		fm__file_rele(fp_);                                            \
		if (r_ < 0) {                                                  \
			errno = (int)-r_;                                      \
			return -1;                                             \
		}                                                              \
		return r_;                                                     \
	} while (0)

ssize_t
fm_read(int fd, void *buf, size_t len)
{
	FILE_CALL(fd, fo_read, read(fd, buf, len), buf, len, &fp_->f_offset);
}

ssize_t
fm_write(int fd, const void *buf, size_t len)
{
	FILE_CALL(fd, fo_write, write(fd, buf, len), buf, len, &fp_->f_offset);
}

int
fm_ioctl(int fd, unsigned long request, ...)
{
	void *arg;
	va_list ap;

	va_start(ap, request);
	arg = va_arg(ap, void *);
	va_end(ap);
	FILE_CALL(fd, fo_ioctl, ioctl(fd, request, arg), request, arg);
}

int
fm_fstat(int fd, struct stat *st)
{
	int r;
	struct fm_file *fp = fm__file_get(fd, NULL, &r);

	if (fp == NULL)
		return fstat(fd, st);
	/* A clone without fo_stat is still its device's file. */
	r = (fp->f_ops->fo_stat ? fp->f_ops : &fm__devfileops)->fo_stat(fp, st);
	fm__file_rele(fp);
	if (r < 0) {
		errno = -r;
		return -1;
	}
	return 0;
}

void *
fm_file_data(struct fm_file *fp)
{
	return fp->f_data;
}

int
fm_file_flags(struct fm_file *fp)
{
	return fp->f_flag;
}

struct fm_dev *
fm_file_dev(struct fm_file *fp)
{
	return fp->f_dev;
}

void
fm_file_clone(struct fm_file *fp, const struct fm_fileops *ops, void *data)
{
	fp->f_ops = ops;
	fp->f_data = data;
}
