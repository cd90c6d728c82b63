/*
 * kern.h: files, descriptors and the device switch.
 *
 * Lock order: fm__files lock, then devsw lock; neither is held while a
 * driver hook runs.
 */
#ifndef FM_KERN_KERN_H
#define FM_KERN_KERN_H

#include <stdatomic.h>

#include <fomap/driver.h>

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
 * => NULL with -EBADF in *err: not open (or tmp NULL: not fomap's)
 */
struct fm_file *fm__file_get(int fd, struct fm_file *tmp, int *err);
void fm__file_rele(struct fm_file *fp);
/* In a fork child: whether fd is a fomap descriptor of the parent's. */
int fm__fd_inherited(int fd);

/* devsw.c */
/* The device, with an open counted (so it cannot be unregistered), or NULL. */
struct fm_dev *fm__dev_lookup(const char *name);
extern const struct fm_fileops fm__devfileops;

/* vnode.c: a regular file of the host */
extern const struct fm_fileops fm__vnfileops;

#endif
