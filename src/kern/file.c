/*
 * file.c: fomap descriptors and the POSIX-mirror file calls.
 *
 * A fomap descriptor is a real kernel descriptor number, reserved by
 * holding an empty memfd of fomap's own there, so it can never collide
 * with one the process opens itself. The table maps the number to its
 * struct fm_file. The program may take a number back behind fomap's back
 * (close(2), or dup2(2) over it), so every lookup checks that the number
 * still holds the open file fomap put there: each reserving memfd is
 * seeked to a tag of its own, far beyond any real file's end, and the
 * number's file position must still be that tag (lseek(2) is the
 * cheapest call that can tell: about a third of fstat(2)). A number that
 * says otherwise is the program's again: the stale entry is dropped, its
 * file released without closing the number, and the call goes to the
 * kernel. A descriptor fomap does not know is an ordinary one: the calls
 * pass it to the host kernel.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "kern/kern.h"
#include "vm/vm.h"

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#define MADV_POPULATE_WRITE 23
#endif

struct slot {
	struct fm_file *fp;
	off_t tag; /* the file position the number's memfd was given */
};

static struct {
	pthread_mutex_t lock;
	struct slot *v; /* indexed by descriptor */
	int n;
	off_t tags; /* the next tag */
	char none; /* a driver's buffer of length 0: never NULL */
} fm__files = {.lock = PTHREAD_MUTEX_INITIALIZER};

#define FM_TAG_BASE ((off_t)1 << 62) /* no file of the program gets there */

/*
 * Reserve a number: a new memfd, seeked to a new tag.
 * => the descriptor with its tag in *s, or -errno
 */
static int
fd_reserve(int cloexec, struct slot *s)
{
	int fd = memfd_create("fomap-fd", cloexec ? MFD_CLOEXEC : 0);

	if (fd < 0)
		return -errno;
	pthread_mutex_lock(&fm__files.lock);
	s->tag = FM_TAG_BASE + fm__files.tags++;
	pthread_mutex_unlock(&fm__files.lock);
	if (lseek(fd, s->tag, SEEK_SET) != s->tag) {
		int r = -errno;

		close(fd);
		return r;
	}
	return fd;
}

/* Whether fd still holds the memfd it was reserved with. */
static int
still_ours(int fd, off_t tag)
{
	return lseek(fd, 0, SEEK_CUR) == tag;
}

int
fm__fd_inherited(int fd)
{
	return fm__forked && lseek(fd, 0, SEEK_CUR) >= FM_TAG_BASE;
}

/*
 * In a fork child (vm.h: fm__forked) a fomap descriptor is not one: the
 * files and drivers behind it are the parent's. => -EBADF for one, 0 for
 * any other descriptor (the plain system call serves it).
 */
static int
forked_fd(int fd)
{
	return fm__fd_inherited(fd) ? -EBADF : 0;
}

/*
 * The number of fp is the program's now: its file must not close it.
 * => fm__files.lock held
 */
static void
disown_locked(struct fm_file *fp)
{
	fp->f_fd = -1;
}

/*
 * Enter fp at its number. An entry already there is stale (the kernel gave
 * the number out again, so the program closed it): its file is released.
 */
static int
table_insert(struct fm_file *fp, const struct slot *s)
{
	struct fm_file *old = NULL;
	int fd = fp->f_fd, r = 0;

	pthread_mutex_lock(&fm__files.lock);
	if (fd >= fm__files.n) {
		int n = fm__files.n ? fm__files.n : 64;
		struct slot *v;

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
	old = fm__files.v[fd].fp;
	if (old)
		disown_locked(old);
	fm__files.v[fd] = *s;
	fm__files.v[fd].fp = fp;
out:
	pthread_mutex_unlock(&fm__files.lock);
	if (old)
		fm__file_rele(old);
	return r;
}

/*
 * Take fd out of the table; returns its file (with the table's reference),
 * disowned if the number no longer holds its memfd.
 */
static struct fm_file *
table_remove(int fd)
{
	struct fm_file *fp = NULL;
	struct slot s = {0};

	pthread_mutex_lock(&fm__files.lock);
	if (fd >= 0 && fd < fm__files.n && fm__files.v[fd].fp) {
		s = fm__files.v[fd];
		fp = s.fp;
		fm__files.v[fd].fp = NULL;
	}
	pthread_mutex_unlock(&fm__files.lock);
	if (fp && !still_ours(fd, s.tag)) {
		pthread_mutex_lock(&fm__files.lock);
		disown_locked(fp);
		pthread_mutex_unlock(&fm__files.lock);
	}
	return fp;
}

/*
 * The file of fomap descriptor fd, referenced, or NULL. A stale entry is
 * dropped on the way (NULL: the number is the program's).
 */
static struct fm_file *
table_get(int fd)
{
	struct fm_file *fp = NULL, *drop = NULL;
	struct slot s;

	pthread_mutex_lock(&fm__files.lock);
	if (fd >= 0 && fd < fm__files.n && (fp = fm__files.v[fd].fp) != NULL) {
		atomic_fetch_add(&fp->f_refs, 1);
		s = fm__files.v[fd];
	}
	pthread_mutex_unlock(&fm__files.lock);
	if (fp == NULL || still_ours(fd, s.tag))
		return fp;
	pthread_mutex_lock(&fm__files.lock);
	if (fm__files.v[fd].fp == fp) { /* not closed or replaced meanwhile */
		fm__files.v[fd].fp = NULL;
		disown_locked(fp);
		drop = fp;
	}
	pthread_mutex_unlock(&fm__files.lock);
	if (drop)
		fm__file_rele(drop); /* the table's reference */
	fm__file_rele(fp);
	return NULL;
}

struct fm_file *
fm__file_get(int fd, struct fm_file *tmp, int *err)
{
	struct fm_file *fp;
	int fl;

	if ((*err = fm__forked ? forked_fd(fd) : 0) < 0)
		return NULL;
	fp = fm__forked ? NULL : table_get(fd);

	if (fp != NULL && tmp != NULL && (fp->f_flag & O_PATH)) {
		fm__file_rele(fp); /* a path, not an open file (fget) */
		*err = -EBADF;
		return NULL;
	}
	if (fp != NULL || tmp == NULL) /* NULL, 0: the kernel's descriptor */
		return fp;
	if ((fl = fcntl(fd, F_GETFL)) < 0 || (fl & O_PATH)) {
		*err = -EBADF;
		return NULL;
	}
	/* Any file of the host: the kernel maps it, or says why not. */
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
	(void)fm__fo_close(fp);
	if (fp->f_dev)
		atomic_fetch_sub(&fp->f_dev->opens, 1);
	if (fp->f_fd >= 0)
		close(fp->f_fd);
	free(fp);
}

/* An O_PATH open of a device: a name to fstat, not an open file. */
static const struct fm_fileops pathfileops = {0};

/*
 * Open flags as the kernel judges them for a character device, before its
 * open is called. => 0 or -errno
 */
static int
dev_open_flags(int flags)
{
	if ((flags & O_CREAT) && (flags & O_EXCL) && !(flags & O_PATH))
		return -EEXIST;
	if (flags & O_DIRECTORY) /* and so O_TMPFILE */
		return -ENOTDIR;
	if (flags & O_PATH)
		return 0;
	if ((flags & O_ACCMODE) == O_ACCMODE)
		return -EINVAL; /* ioctl-only opens: not supported */
	if (flags & O_DIRECT) /* a device has no direct I/O */
		return -EINVAL;
	return 0;
}

static int
dev_open(const char *name, int flags)
{
	struct fm_dev *dev;
	struct fm_file *fp;
	struct slot s;
	int r = dev_open_flags(flags);

	if (r < 0)
		return r;
	fp = calloc(1, sizeof(*fp));
	if (fp == NULL)
		return -ENOMEM;
	dev = fm__dev_lookup(name); /* counted open: it cannot go away */
	if (dev == NULL) {
		free(fp);
		return -ENXIO;
	}
	fp->f_ops = flags & O_PATH ? &pathfileops : &fm__devfileops;
	fp->f_flag = flags & O_PATH
	    ? O_PATH
	    : flags & (O_ACCMODE | O_APPEND | O_NONBLOCK);
	fp->f_dev = dev;
	atomic_init(&fp->f_refs, 1);
	fp->f_fd = r = fd_reserve(flags & O_CLOEXEC, &s);
	if (r < 0)
		goto err;
	if (!(flags & O_PATH))
		r = fm__d_open(dev, flags, fp);
	if (r < 0) {
		close(fp->f_fd);
		goto err;
	}
	r = table_insert(fp, &s);
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

	if (path == NULL)
		return fm__syserr(-EFAULT);
	if (strncmp(path, FM_DEVPREFIX, plen) != 0) {
		if ((flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE) {
			va_start(ap, flags);
			mode = va_arg(ap, mode_t);
			va_end(ap);
		}
		return open(path, flags, mode);
	}
	r = fm__forked ? -ENXIO : dev_open(path + plen, flags);
	if (r < 0)
		return fm__syserr(r);
	return r;
}

int
fm_close(int fd)
{
	struct fm_file *fp;
	int disowned;

	if (fm__forked)
		return close(fd); /* the parent's file is not the child's */
	fp = table_remove(fd);

	if (fp == NULL)
		return close(fd);
	disowned = fp->f_fd < 0;
	fm__file_rele(fp);
	return disowned ? close(fd) : 0; /* the program's number: its file */
}

/* ------------------------------------------------------------------------
 * The user's buffer. A driver reads and writes it directly, where the
 * kernel's driver would use copy_from_user and copy_to_user and fail with
 * EFAULT; so fomap checks the buffer first, and hands the driver only the
 * part it may touch, as a short count (a kernel driver's copy stops there
 * too). Nothing here writes a byte of the buffer.
 */

#define FM_MAX_RW_COUNT (INT_MAX & ~4095) /* the kernel's MAX_RW_COUNT */

static uintptr_t user_top; /* the kernel's TASK_SIZE_MAX */
static pthread_once_t user_top_once = PTHREAD_ONCE_INIT;

/*
 * 4-level paging, unless a page can be mapped above its top. The raw
 * system calls: TSan's mmap turns an address it does not shadow into 0,
 * which MAP_FIXED_NOREPLACE then maps (root may map page 0), and dies.
 */
static void
user_top_init(void)
{
	void *p = (void *)syscall(SYS_mmap, (uintptr_t)1 << 47, FM_PAGE_SIZE,
	    PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1,
	    0);

	user_top = 0x7ffffffff000;
	if (p != MAP_FAILED || errno == EEXIST)
		user_top = 0xfffffffffff000; /* 5-level */
	if (p != MAP_FAILED)
		syscall(SYS_munmap, p, FM_PAGE_SIZE);
}

/* The kernel's access_ok(): [p, p+len) lies in the user address space. */
static int
user_range_ok(const void *p, size_t len)
{
	uintptr_t a = (uintptr_t)p;

	pthread_once(&user_top_once, user_top_init);
	return a + len >= a && a + len <= user_top;
}

/*
 * Whether the page at pg may be read (or written, when wr) by this thread:
 * futex(2) reads the word, or adds 0 to it atomically (a write that cannot
 * lose a concurrent store); EFAULT says it may not.
 */
static int
page_ok(uintptr_t pg, int wr)
{
	static uint32_t dummy;
	struct timespec zero = {0, 0};
	long r;

	if (wr)
		r = syscall(SYS_futex, &dummy, FUTEX_WAKE_OP_PRIVATE, 0, NULL,
		    (uint32_t *)pg,
		    FUTEX_OP(FUTEX_OP_ADD, 0, FUTEX_OP_CMP_EQ, 0));
	else
		r = syscall(SYS_futex, (uint32_t *)pg, FUTEX_WAIT_PRIVATE, 0,
		    &zero, NULL, 0);
	return r >= 0 || errno != EFAULT;
}

/*
 * One madvise(2) makes every page present as an access would (and fails if
 * one cannot be); only if it fails are the pages tried one by one.
 */
size_t
fm__user_span(const void *p, size_t len, int wr)
{
	uintptr_t a = (uintptr_t)p, mask = FM_PAGE_SIZE - 1, lo = a & ~mask, hi;

	if (len == 0 || !user_range_ok(p, len))
		return 0;
	hi = (a + len + mask) & ~mask;
	if (madvise((void *)lo, hi - lo,
	        wr ? MADV_POPULATE_WRITE : MADV_POPULATE_READ) == 0)
		return len;
	for (uintptr_t pg = lo; pg < hi; pg += FM_PAGE_SIZE)
		if (!page_ok(pg, wr))
			return pg > a ? pg - a : 0;
	return len; /* populate refused memory an access can use (VM_IO) */
}

/* Whether a file's read (wr 0) or write method reads or writes the buffer. */
static int
uses_buffer(const struct fm_file *fp, int wr)
{
	const struct fm_cdevsw *c;

	if (fp->f_ops != &fm__devfileops)
		return 1;
	c = fp->f_dev->cdev; /* the stubs, like /dev/null's, never do */
	if (wr)
		return c->d_write && c->d_write != fm_nullwrite &&
		    c->d_write != fm_nowrite;
	return c->d_read && c->d_read != fm_nullread && c->d_read != fm_noread;
}

/*
 * Check a read (into buf) or write (from it) of *lenp bytes on a fomap
 * file as vfs_read and vfs_write do, then the buffer as the driver's copy
 * would; *lenp is cut to what the driver may touch. => 0 or -errno
 */
static int
check_rw(struct fm_file *fp, const void *buf, size_t *lenp, int wr)
{
	int acc = fp->f_flag & O_ACCMODE;
	size_t n;

	if ((fp->f_flag & O_PATH) || acc == (wr ? O_RDONLY : O_WRONLY))
		return -EBADF;
	if (wr ? fp->f_ops->fo_write == NULL : fp->f_ops->fo_read == NULL)
		return -EINVAL; /* the kernel's FMODE_CAN_READ, _WRITE */
	if (!user_range_ok(buf, *lenp))
		return -EFAULT;
	if (*lenp > FM_MAX_RW_COUNT)
		*lenp = FM_MAX_RW_COUNT;
	if (!uses_buffer(fp, wr))
		return 0;
	n = fm__user_span(buf, *lenp, !wr);
	if (n == 0 && *lenp > 0)
		return -EFAULT;
	*lenp = n;
	return 0;
}

/* fm_read and fm_write: through the file's fileops, or the kernel's. */
static ssize_t
rw(int fd, void *buf, size_t len, int wr)
{
	int err;
	struct fm_file *fp = fm__file_get(fd, NULL, &err);
	ssize_t r;

	if (fp == NULL && err < 0)
		return fm__syserr(err);
	if (fp == NULL)
		return wr ? write(fd, buf, len) : read(fd, buf, len);
	r = check_rw(fp, buf, &len, wr);
	if (r == 0 && wr)
		r = fm__fo_write(fp, len ? buf : &fm__files.none, len,
		    &fp->f_offset);
	else if (r == 0)
		r = fm__fo_read(fp, len ? buf : &fm__files.none, len,
		    &fp->f_offset);
	fm__file_rele(fp);
	if (r < 0)
		return fm__syserr(r);
	return r;
}

ssize_t
fm_read(int fd, void *buf, size_t len)
{
	return rw(fd, buf, len, 0);
}

ssize_t
fm_write(int fd, const void *buf, size_t len)
{
	return rw(fd, (void *)buf, len, 1);
}

int
fm_ioctl(int fd, unsigned long request, ...)
{
	int err;
	struct fm_file *fp;
	void *arg;
	va_list ap;
	int r;

	va_start(ap, request);
	arg = va_arg(ap, void *);
	va_end(ap);
	fm__fault_events(); /* a driver sees the mappings the program has */
	if ((fp = fm__file_get(fd, NULL, &err)) == NULL && err < 0)
		return fm__syserr(err);
	if (fp == NULL)
		return ioctl(fd, request, arg);
	if (fp->f_flag & O_PATH)
		r = -EBADF;
	else
		r = fm__fo_ioctl(fp, request, arg);
	fm__file_rele(fp);
	if (r < 0)
		return fm__syserr(r);
	return r;
}

int
fm_fstat(int fd, struct stat *st)
{
	int r;
	struct fm_file *fp = fm__file_get(fd, NULL, &r);

	if (fp == NULL && r < 0)
		return fm__syserr(r);
	if (fp == NULL && st == NULL) /* fstat(3) may not be given NULL */
		return fcntl(fd, F_GETFD) < 0 ? -1 : fm__syserr(-EFAULT);
	if (fp == NULL)
		return fstat(fd, st);
	if (fm__user_span(st, sizeof(*st), 1) < sizeof(*st))
		r = -EFAULT; /* the kernel's copy_to_user would fail */
	else /* a clone without fo_stat is still its device's file */
		r = fm__fo_stat(fp, st);
	fm__file_rele(fp);
	if (r < 0)
		return fm__syserr(r);
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
