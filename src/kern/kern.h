/*
 * kern.h: files, descriptors and the device switch.
 *
 * Lock order: fm__files lock, then devsw lock; neither is held while a
 * driver hook runs.
 */
#ifndef FM_KERN_KERN_H
#define FM_KERN_KERN_H

#include <poll.h>
#include <stdatomic.h>

#include <fomap/driver.h>

#include "vm/vm.h" /* FM_ASSERT */

struct fm_dev {
	char name[32];
	const struct fm_cdevsw *cdev;
	void *priv;
	atomic_uint opens;
	/*
	 * fm_dev_memory's object, or NULL: set once, and read, under the
	 * devsw lock. It stays until the device is unregistered, which no
	 * open allows, so an open's holder (spec_mmap) or the driver itself
	 * (fm_dev_memory) may use it once the lock is dropped.
	 */
	struct fm_object *mem;
	struct fm_dev *next;
};

struct fm_file {
	const struct fm_fileops *f_ops;
	void *f_data;
	int f_flag; /* open(2) flags */
	int f_fd; /* the kernel descriptor: reserved, or the file; -1: the
	             program took the reserved number back */
	off_t f_offset; /* for fo_read/fo_write of devices */
	struct fm_dev *f_dev;
	atomic_uint f_refs; /* the descriptor table's, and calls in flight */
};

/*
 * fm__file_get: the file behind a fomap descriptor, referenced; or, for any
 * other open descriptor, *tmp set up as its vnode file (the kernel's to
 * map). A fomap number the program took back (closed, or dup2'ed over) is
 * an other descriptor. With tmp, an O_PATH descriptor is not open (fget).
 * In a fork child (vm.h: fm__forked) no descriptor is fomap's, and one
 * that was fomap's in the parent is not open.
 * => NULL with -EBADF in *err: not open; with tmp NULL, NULL with 0 in
 *    *err: not fomap's (the kernel's descriptor, open or not)
 */
struct fm_file *fm__file_get(int fd, struct fm_file *tmp, int *err);
void fm__file_rele(struct fm_file *fp);
/* One more reference to fp, which its caller holds one of already. */
static inline void
fm__file_hold(struct fm_file *fp)
{
	unsigned old = atomic_fetch_add(&fp->f_refs, 1);

	FM_ASSERT(old > 0, "file %p revived from 0 references", (void *)fp);
}
/* In a fork child: whether fd is a fomap descriptor of the parent's. */
int fm__fd_inherited(int fd);
/*
 * How many bytes of the caller's [p, p+len) from p on may be read (or
 * written, when wr), as the kernel's copy from (to) user memory would find
 * them; 0 when the range leaves the user address space. Writes nothing.
 */
size_t fm__user_span(const void *p, size_t len, int wr);

/* devsw.c */
/* The device, with an open counted (so it cannot be unregistered), or NULL. */
struct fm_dev *fm__dev_lookup(const char *name);
extern const struct fm_fileops fm__devfileops;

/* vnode.c: a regular file of the host */
extern const struct fm_fileops fm__vnfileops;

/*
 * ------------------------------------------------------------------------
 * File and device calls (FreeBSD's sys/file.h fo_* inlines, NetBSD's
 * cdev_* calls). The core calls a file's fileops and a device's cdevsw
 * only through these: each supplies the default of a NULL method and
 * asserts the preconditions it can see.
 *
 * driver.h promises every d_* and fo_* hook that it runs in the caller's
 * thread with no fomap lock held. That is not checked here: the fm__files
 * lock and the devsw lock are plain mutexes that record no holder, and a
 * pager's hook may itself call fm_read or fm_ioctl on a fomap device (its
 * own pmaplock then held, fm__pmaplock_held): a driver's doing, which
 * must never abort fomap. What is checked is what the caller must hold
 * instead: a reference on the file (f_refs), and a counted open of the
 * device (dev->opens), so that neither goes away under the hook.
 */

#define FM_FO_ASSERT_HELD(fp)                     \
	FM_ASSERT(atomic_load(&(fp)->f_refs) > 0, \
	    "%s: file %p not referenced", __func__, (void *)(fp))

/* Default: -EINVAL, the file cannot be read (the kernel's FMODE_CAN_READ). */
static inline ssize_t
fm__fo_read(struct fm_file *fp, void *buf, size_t len, off_t *offp)
{
	FM_FO_ASSERT_HELD(fp);
	if (fp->f_ops->fo_read == NULL)
		return -EINVAL;
	return fp->f_ops->fo_read(fp, buf, len, offp);
}

/* Default: -EINVAL, the file cannot be written (FMODE_CAN_WRITE). */
static inline ssize_t
fm__fo_write(struct fm_file *fp, const void *buf, size_t len, off_t *offp)
{
	FM_FO_ASSERT_HELD(fp);
	if (fp->f_ops->fo_write == NULL)
		return -EINVAL;
	return fp->f_ops->fo_write(fp, buf, len, offp);
}

/* Default: -ENOTTY, as for a file with no unlocked_ioctl. */
static inline int
fm__fo_ioctl(struct fm_file *fp, unsigned long cmd, void *data)
{
	FM_FO_ASSERT_HELD(fp);
	if (fp->f_ops->fo_ioctl == NULL)
		return -ENOTTY;
	return fp->f_ops->fo_ioctl(fp, cmd, data);
}

/*
 * The last reference to fp is gone. Default: nothing, 0.
 * => fp's references are 0 (checked)
 */
static inline int
fm__fo_close(struct fm_file *fp)
{
	FM_ASSERT(atomic_load(&fp->f_refs) == 0,
	    "%s: file %p closed with %u references", __func__, (void *)fp,
	    atomic_load(&fp->f_refs));
	if (fp->f_ops->fo_close == NULL)
		return 0;
	return fp->f_ops->fo_close(fp);
}

/*
 * The device file's (a clone without fo_stat, or an O_PATH open, is still
 * its device's file), then what the open's fo_stat says over it: a field
 * it leaves alone is the device file's, never what st held.
 */
static inline int
fm__fo_stat(struct fm_file *fp, struct stat *st)
{
	int r;

	FM_FO_ASSERT_HELD(fp);
	r = fm__devfileops.fo_stat(fp, st);
	if (r == 0 && fp->f_ops->fo_stat != NULL &&
	    fp->f_ops->fo_stat != fm__devfileops.fo_stat)
		r = fp->f_ops->fo_stat(fp, st);
	return r;
}

/*
 * Default: -ENODEV, the file cannot be mapped.
 * => req holds no object yet (checked); fm__map.oplock not held (fm_mmap
 *    asks before it takes it; not tracked, not checked)
 */
static inline int
fm__fo_mmap(struct fm_file *fp, struct fm_mmap_req *req)
{
	FM_FO_ASSERT_HELD(fp);
	FM_ASSERT(req->obj == NULL && req->pages == NULL,
	    "%s: request of file %p holds an object already", __func__,
	    (void *)fp);
	if (fp->f_ops->fo_mmap == NULL)
		return -ENODEV;
	return fp->f_ops->fo_mmap(fp, req);
}

/* Default: what the kernel's DEFAULT_POLLMASK says of a file (ready). */
#define FM_POLL_DEFAULT (POLLIN | POLLOUT | POLLRDNORM | POLLWRNORM)
static inline int
fm__fo_poll(struct fm_file *fp, int events)
{
	FM_FO_ASSERT_HELD(fp);
	if (fp->f_ops->fo_poll == NULL)
		return FM_POLL_DEFAULT & events;
	return fp->f_ops->fo_poll(fp, events) & (events | POLLERR | POLLHUP);
}

/* Default: -ENODEV, the file's mappings need the engine. */
static inline int
fm__fo_backing(struct fm_file *fp, struct fm_object **objp, int *maxprot)
{
	FM_FO_ASSERT_HELD(fp);
	*objp = NULL;
	if (fp->f_ops->fo_backing == NULL)
		return -ENODEV;
	return fp->f_ops->fo_backing(fp, objp, maxprot);
}

#define FM_D_ASSERT_OPEN(dev)                                               \
	FM_ASSERT(atomic_load(&(dev)->opens) > 0, "%s: device %s not open", \
	    __func__, (dev)->name)

/* Default: 0 (fm_nullopen). */
static inline int
fm__d_open(struct fm_dev *dev, int flags, struct fm_file *fp)
{
	FM_D_ASSERT_OPEN(dev);
	if (dev->cdev->d_open == NULL)
		return 0;
	return dev->cdev->d_open(dev, flags, fp);
}

/* Default: 0 (fm_nullclose). */
static inline int
fm__d_close(struct fm_dev *dev, int flags)
{
	FM_D_ASSERT_OPEN(dev);
	if (dev->cdev->d_close == NULL)
		return 0;
	return dev->cdev->d_close(dev, flags);
}

/* Default: -ENODEV (fm_noread). */
static inline ssize_t
fm__d_read(struct fm_dev *dev, void *buf, size_t len, off_t off)
{
	FM_D_ASSERT_OPEN(dev);
	if (dev->cdev->d_read == NULL)
		return -ENODEV;
	return dev->cdev->d_read(dev, buf, len, off);
}

/* Default: -ENODEV (fm_nowrite). */
static inline ssize_t
fm__d_write(struct fm_dev *dev, const void *buf, size_t len, off_t off)
{
	FM_D_ASSERT_OPEN(dev);
	if (dev->cdev->d_write == NULL)
		return -ENODEV;
	return dev->cdev->d_write(dev, buf, len, off);
}

/* Default: -ENOTTY (fm_noioctl). */
static inline int
fm__d_ioctl(struct fm_dev *dev, unsigned long cmd, void *data, int flags)
{
	FM_D_ASSERT_OPEN(dev);
	if (dev->cdev->d_ioctl == NULL)
		return -ENOTTY;
	return dev->cdev->d_ioctl(dev, cmd, data, flags);
}

/*
 * The device's pager hook. Default: -ENODEV; spec_mmap asks it only of a
 * device that has one, and otherwise hands d_mmap to the device pager
 * (pager_device.c, which calls it for each page: vm does not see this
 * header, so that call is the adapter's own).
 * => req holds no object yet (checked)
 */
static inline int
fm__d_mmap_single(struct fm_dev *dev, struct fm_mmap_req *req)
{
	FM_D_ASSERT_OPEN(dev);
	FM_ASSERT(req->obj == NULL && req->pages == NULL,
	    "%s: request of device %s holds an object already", __func__,
	    dev->name);
	if (dev->cdev->d_mmap_single == NULL)
		return -ENODEV;
	return dev->cdev->d_mmap_single(dev, req);
}

/* Default: ready (fm__fo_poll's). */
static inline int
fm__d_poll(struct fm_dev *dev, int events)
{
	FM_D_ASSERT_OPEN(dev);
	if (dev->cdev->d_poll == NULL)
		return FM_POLL_DEFAULT & events;
	return dev->cdev->d_poll(dev, events);
}

/* Default: -ENODEV (fm__fo_backing's). */
static inline int
fm__d_backing(struct fm_dev *dev, struct fm_object **objp, int *maxprot)
{
	FM_D_ASSERT_OPEN(dev);
	if (dev->cdev->d_backing == NULL)
		return -ENODEV;
	return dev->cdev->d_backing(dev, objp, maxprot);
}

/*
 * The names of the devices registered now, at most max of them, into
 * names. => how many there are (more than max: some were left out)
 */
int fm__dev_names(char (*names)[32], int max);

/*
 * poll.c: a host that serves opens to other processes (fomapd) learns here
 * of every fm_file_wakeup (fp) and fm_dev_wakeup (dev, fp NULL); set once,
 * before the first open. It runs in the driver's thread: it must not wait.
 */
extern void (*fm__poll_notify)(struct fm_dev *dev, struct fm_file *fp);

#endif
