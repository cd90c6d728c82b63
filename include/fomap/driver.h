/*
 * driver.h: the driver API of fomap: files and their fileops, the device
 * switch, memory objects and their pagers.
 *
 * A driver is trusted code of the process that hosts it. Its hooks return 0
 * (or a count) on success and a negative errno on failure; fomap turns that
 * into the errno of the user's call, or into SIGBUS for a fault.
 *
 * Locking and context:
 * - d_*, fo_* and pgo_detach run in the caller's thread with no fomap lock
 *   held; pgo_reference may run with the address-space map held (it must
 *   only count).
 * - pgo_get and pgo_fault run in an engine thread (faults) or in the
 *   thread of fm_madvise(MADV_WILLNEED, MADV_POPULATE_READ or _WRITE) /
 *   MAP_POPULATE (signals blocked there); pgo_write only in an engine
 *   thread (a write fault); no address-space lock is held. pgo_get and pgo_fault hold the
 *   object's mapping lock shared, so that what they fill is mapped before
 *   anyone can remove it; pgo_write holds none (it may protect or remove).
 *   pgo_put runs with that lock exclusive (faults on the object wait).
 * - So a pager must not call fm_mmap, fm_munmap, fm_mprotect, fm_msync or
 *   fm_madvise, nor touch a user mapping of a fomap object (it reads and writes objects through
 *   fm_object_read/write or the window). It may call any fm_object_* call,
 *   except that fm_object_protect, _unmap and _clean on the object it is
 *   filling or writing back fail with -EDEADLK from its pgo_get, pgo_fault
 *   or pgo_put (call them from pgo_write or an ioctl instead). On another
 *   object they take that object's lock: two pagers must not do so to each
 *   other's objects (a lock cycle).
 * - Hooks may sleep (I/O): only the faulting thread waits, faults of other
 *   objects and fm_mmap/fm_munmap proceed; faults of the same object
 *   proceed too unless a protect, clean or removal of it is waiting.
 * - A refusal (a negative errno from pgo_get, pgo_fault or pgo_write) gives
 *   the faulting thread SIGBUS (si_code SI_QUEUE, si_addr the exact
 *   address, si_errno the error) when it faulted from user mode, and fails
 *   the system call with EFAULT when a system call touched the page.
 */
#ifndef FOMAP_DRIVER_H
#define FOMAP_DRIVER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <fomap/fomap.h>

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default)

struct fm_file;
struct fm_dev;
struct fm_object;
struct fm_fault;

/* ------------------------------------------------------------------------
 * Memory objects and pagers (NetBSD uvm_object / uvm_pagerops).
 *
 * An object's pages live in its own memfd, the object store; a page is
 * resident when it is in the store. Offsets and sizes are in bytes and
 * page-aligned; page indexes (pgidx) count pages from the object's start.
 */

/*
 * FM_PAGE_SIZE: fomap's page, the kernel's base page (fomap's engine does
 * not start, ENOSYS, where sysconf(_SC_PAGESIZE) differs). A size_t, so
 * that a page count times it does not overflow an int and ~(FM_PAGE_SIZE
 * - 1) masks every bit of an address; cast it for off_t arithmetic.
 */
#define FM_PAGE_SIZE ((size_t)4096)

typedef void fm_pgo_reference_t(struct fm_object *obj);
typedef void fm_pgo_detach_t(struct fm_object *obj);
typedef int fm_pgo_get_t(struct fm_object *obj, uint64_t pgidx,
    unsigned *npages);
typedef int fm_pgo_put_t(struct fm_object *obj, uint64_t pgidx, unsigned npages,
    int flags);
typedef int fm_pgo_fault_t(struct fm_fault *f);
typedef int fm_pgo_write_t(struct fm_object *obj, uint64_t pgidx);

struct fm_pagerops {
	/* A reference was taken (optional; the count itself is fomap's). */
	fm_pgo_reference_t *pgo_reference;
	/*
	 * The last reference is gone: free the pager's state (optional). The
	 * object has been cleaned (pgo_put FM_PGO_CLEAN) just before.
	 */
	fm_pgo_detach_t *pgo_detach;
	/*
	 * Make pages [pgidx, pgidx + *npages) resident, all of them not
	 * resident and busy (no one else fills them meanwhile). May fill fewer
	 * (at least one): set *npages to the count filled. Default: zero-fill.
	 * => a negative errno gives SIGBUS to the faulting thread.
	 */
	fm_pgo_get_t *pgo_get;
	/*
	 * Write back (FM_PGO_CLEAN) dirty pages [pgidx, pgidx + npages),
	 * already write-protected in every mapping. Optional: without it the
	 * object has nowhere to write back to.
	 * => a negative errno: the pages stay dirty and the user sees EIO.
	 */
	fm_pgo_put_t *pgo_put;
	/*
	 * Full fault handler (optional): called for every fault on the object
	 * instead of pgo_get; see struct fm_fault.
	 */
	fm_pgo_fault_t *pgo_fault;
	/*
	 * Write hook (optional): the first write to a write-protected page of
	 * a shared mapping. 0 allows it (the page becomes dirty and writable
	 * in that mapping); a negative errno refuses it: SIGBUS. Without a
	 * hook, writes to pages made read-only by fm_object_protect are
	 * refused and all others are allowed.
	 */
	fm_pgo_write_t *pgo_write;
};

#define FM_PGO_CLEAN 0x1 /* pgo_put: write dirty pages back */

/*
 * What a full fault handler sees and decides. The engine has made pages
 * [pgidx, pgidx + npages) busy for it: they are not resident, and the
 * handler may fill any prefix of them (with fm_object_write or through the
 * window); npages is 0 when the faulting page is already resident.
 */
struct fm_fault {
	struct fm_object *obj;
	uint64_t pgidx; /* the faulting page */
	unsigned npages; /* in: busy pages it may fill; out: pages it filled */
	unsigned around; /* in: pages the engine would map; out: its choice */
	int access; /* PROT_READ or PROT_WRITE */
	int mapflags; /* MAP_SHARED or MAP_PRIVATE */
	int prot; /* the faulting mapping's protection */
	int rdonly; /* out: map the pages write-protected */
	/*
	 * out: the pages it filled are dirty now (their content is not in
	 * the pager's backing store yet): written back at the next clean,
	 * and, being dirty, mapped writable where the mapping allows.
	 */
	int dirty;
};

/*
 * fm_object_create: a new object of size bytes (rounded up to pages), with
 * pager ops (NULL: anonymous zero-fill) and the pager's private data.
 * => returns 0 with *objp holding one reference; -EINVAL (size 0),
 *    -ENOMEM, -EMFILE, -ENFILE.
 */
int fm_object_create(const struct fm_pagerops *ops, size_t size, void *priv,
    struct fm_object **objp);
void fm_object_ref(struct fm_object *obj);
/* Drop a reference; the last one cleans the object and frees it. */
void fm_object_rele(struct fm_object *obj);
void *fm_object_private(struct fm_object *obj);
size_t fm_object_size(struct fm_object *obj);

/*
 * fm_object_window: the object store mapped read-write into the host (like
 * a kernel's direct map): a pager reads and writes pages in place here.
 * => NULL with errno on failure.
 */
void *fm_object_window(struct fm_object *obj);

/*
 * fm_object_read, fm_object_write: copy bytes out of / into the store
 * without mapping it. Writing makes the pages it covers resident; it does
 * not make them dirty (the pager's own fill). Return 0 or -errno.
 */
int fm_object_read(struct fm_object *obj, off_t off, void *buf, size_t len);
int fm_object_write(struct fm_object *obj, off_t off, const void *buf,
    size_t len);
/*
 * fm_object_zero: [off, off+len) (whole pages) reads as zeros: its pages
 * freed and allocated anew by the kernel, which clears them, never
 * touched through the window (as fm_object_write of zeros, without its
 * copy or the window's own page faults): for a pager's fill of pages it
 * has no data for (pages nobody writes meanwhile: a write between its
 * look at the store and its fill may stay). Resident, not dirty. Return 0 or -errno (-EINVAL: not
 * whole pages; -ENXIO: past the object's end; -ENOMEM: no memory left).
 */
int fm_object_zero(struct fm_object *obj, off_t off, size_t len);

/*
 * fm_object_protect: make [off, off+len) read-only (PROT_READ) or
 * read-write (PROT_READ|PROT_WRITE) in every shared mapping, now and for
 * pages mapped later. Never splits a mapping.
 */
int fm_object_protect(struct fm_object *obj, off_t off, size_t len, int prot);

/*
 * fm_object_unmap: remove [off, off+len) from every shared mapping
 * (Linux's unmap_mapping_range with even_cows 0): a private mapping keeps
 * the pages it has copied, and what it has not copied yet it reads anew.
 * FM_UNMAP_KEEP keeps the pages resident: the next access maps them
 * again. FM_UNMAP_DISCARD also frees them: dirty pages are written back
 * first through pgo_put when the pager has one, then the next access
 * faults to the pager again.
 */
#define FM_UNMAP_KEEP 0
#define FM_UNMAP_DISCARD 1
int fm_object_unmap(struct fm_object *obj, off_t off, size_t len, int how);

/*
 * fm_object_mincore: one byte per page of [off, off+len): FM_PG_RESIDENT,
 * FM_PG_DIRTY and FM_PG_RDONLY as they stand.
 */
#define FM_PG_RESIDENT 0x01
#define FM_PG_DIRTY 0x02
#define FM_PG_RDONLY 0x04
int fm_object_mincore(struct fm_object *obj, off_t off, size_t len,
    unsigned char *vec);

/* fm_object_clean: write back the dirty pages of [off, off+len). */
int fm_object_clean(struct fm_object *obj, off_t off, size_t len);

/*
 * fm_store_create: an object filled on fault from fd at [off, off+size) and
 * written back there (pgo_put) when dirty; fd is duplicated. Reads past the
 * end of the file fill zeros. Dirty pages are found by write protection.
 */
int fm_store_create(int fd, off_t off, size_t size, struct fm_object **objp);

/*
 * fm_object_create_backing: an anonymous zero-fill object (as
 * fm_object_create with ops NULL) whose memory is a memfd of its own, so
 * that fo_backing may hand it whole to another process: no other object's
 * pages are in it. It costs a descriptor while it lives.
 */
int fm_object_create_backing(size_t size, void *priv, struct fm_object **objp);

/* ------------------------------------------------------------------------
 * Files (NetBSD struct file / struct fileops).
 */

struct fm_mmap_req {
	off_t off; /* in: the user's offset; out: offset in *obj */
	size_t len; /* the length asked for */
	int prot; /* PROT_* asked for */
	int flags; /* in/out: MAP_* (fo_mmap may adjust) */
	int advice; /* in/out: MADV_* applied to the mapping */
	int maxprot; /* out: the most the object may be mapped with */
	/* out: the object, with a reference for fomap; NULL: anonymous memory */
	struct fm_object *obj;
	/*
	 * out, optional: a non-linear layout, the object page of each page of
	 * the mapping (malloc'ed; fomap frees it). NULL: linear from off. The
	 * device pager uses it for d_mmap's cookies.
	 */
	uint64_t *pages;
};

typedef ssize_t fm_fo_read_t(struct fm_file *fp, void *buf, size_t len,
    off_t *offp);
typedef ssize_t fm_fo_write_t(struct fm_file *fp, const void *buf, size_t len,
    off_t *offp);
typedef int fm_fo_ioctl_t(struct fm_file *fp, unsigned long cmd, void *data);
typedef int fm_fo_close_t(struct fm_file *fp);
typedef int fm_fo_stat_t(struct fm_file *fp, struct stat *st);
typedef int fm_fo_mmap_t(struct fm_file *fp, struct fm_mmap_req *req);
/* => the POLL* bits of events that hold now (never blocks) */
typedef int fm_fo_poll_t(struct fm_file *fp, int events);
/*
 * The one object that holds the file's whole mmap space, linear from
 * offset 0 (an mmap at offset off maps the object's bytes at off), made by
 * fm_object_create_backing. A host that serves the file to another process
 * (fomapd) hands that process the object's memory itself: its mappings
 * need no fault engine, and no protection or removal the driver applies
 * later reaches them. => 0 with *objp referenced and *maxprot (PROT_*),
 * or -ENODEV: the file's mappings need the engine.
 */
typedef int fm_fo_backing_t(struct fm_file *fp, struct fm_object **objp,
    int *maxprot);

struct fm_fileops {
	fm_fo_read_t *fo_read;
	fm_fo_write_t *fo_write;
	fm_fo_ioctl_t *fo_ioctl;
	fm_fo_close_t *fo_close; /* the last descriptor is closed */
	fm_fo_stat_t *fo_stat;
	/*
	 * NULL: the file cannot be mapped (ENODEV). An fo_mmap (or
	 * d_mmap_single) that returns 0 with req->obj NULL asks for anonymous
	 * zero-fill memory, as a NULL uobj does in NetBSD's uvm_mmap:
	 * MAP_SHARED maps a new object of req->len bytes served by the
	 * engine, MAP_PRIVATE the host's private zero-fill memory; req->off
	 * is ignored, req->maxprot still applies.
	 */
	fm_fo_mmap_t *fo_mmap;
	/*
	 * NULL: always readable and writable (POLLIN | POLLOUT | POLLRDNORM
	 * | POLLWRNORM), as the kernel's default for a file without poll.
	 * A driver whose readiness changes calls fm_file_wakeup (a clone) or
	 * fm_dev_wakeup (every open of the device) after the change, as a
	 * kernel driver calls selnotify: fm_poll and fomapd's clients wait
	 * for that.
	 */
	fm_fo_poll_t *fo_poll;
	fm_fo_backing_t *fo_backing; /* NULL: -ENODEV */
};

/* The readiness of fp changed (a clone's: its fo_poll may answer anew). */
void fm_file_wakeup(struct fm_file *fp);

/* The file's driver data (f_data), open flags and device. */
void *fm_file_data(struct fm_file *fp);
int fm_file_flags(struct fm_file *fp);
struct fm_dev *fm_file_dev(struct fm_file *fp);

/*
 * fm_file_clone: from d_open, make this open a clone with its own fileops
 * and per-open data (NetBSD's fd_clone). fo_close then replaces d_close.
 */
void fm_file_clone(struct fm_file *fp, const struct fm_fileops *ops,
    void *data);

/* ------------------------------------------------------------------------
 * Devices (NetBSD struct cdevsw).
 */

/*
 * A page cookie, what legacy d_mmap returns for an offset (NetBSD's
 * paddr_t): the number of a page of the device's memory.
 */
typedef uint64_t fm_cookie_t;
#define FM_COOKIE_INVALID ((fm_cookie_t)-1)

typedef int fm_d_open_t(struct fm_dev *dev, int flags, struct fm_file *fp);
typedef int fm_d_close_t(struct fm_dev *dev, int flags);
typedef ssize_t fm_d_read_t(struct fm_dev *dev, void *buf, size_t len,
    off_t off);
typedef ssize_t fm_d_write_t(struct fm_dev *dev, const void *buf, size_t len,
    off_t off);
typedef int fm_d_ioctl_t(struct fm_dev *dev, unsigned long cmd, void *data,
    int flags);
typedef fm_cookie_t fm_d_mmap_t(struct fm_dev *dev, off_t off, int prot);
typedef int fm_d_mmap_single_t(struct fm_dev *dev, struct fm_mmap_req *req);
typedef int fm_d_poll_t(struct fm_dev *dev, int events);
typedef int fm_d_backing_t(struct fm_dev *dev, struct fm_object **objp,
    int *maxprot);

/*
 * A legacy ioctl number, one with no size or direction encoded in it
 * (fbdev's 0x46xx, the tty's): how many bytes of the caller's memory at
 * its argument the driver reads (in) and then writes (out). fm_ioctl
 * hands the driver the caller's pointer as it is; fomapd, serving a
 * program in another process, must copy them, and needs the sizes. in ==
 * out == 0: the argument is a value, not a pointer (FBIOBLANK). A number
 * with no size that the table lacks gets ENOTTY from fomapd without
 * reaching the driver (TCGETS, so that isatty() says no).
 */
struct fm_ioctl_legacy {
	unsigned long cmd; /* 0 ends the table */
	uint32_t in, out;
};

struct fm_cdevsw {
	fm_d_open_t *d_open;
	fm_d_close_t *d_close;
	fm_d_read_t *d_read;
	fm_d_write_t *d_write;
	fm_d_ioctl_t *d_ioctl;
	/* legacy: the page cookie of each offset, served by the device pager */
	fm_d_mmap_t *d_mmap;
	/* pager hook (Young's d_get_pagerops, FreeBSD's d_mmap_single) */
	fm_d_mmap_single_t *d_mmap_single;
	/* the device's readiness, for an open that did not clone: fo_poll */
	fm_d_poll_t *d_poll;
	/* the legacy ioctl numbers the driver serves, or NULL: none */
	const struct fm_ioctl_legacy *d_legacy;
	/* for an open that did not clone: fo_backing */
	fm_d_backing_t *d_backing;
};

/* Stubs: no* fail with ENODEV, null* succeed doing nothing. */
fm_d_open_t fm_noopen, fm_nullopen;
fm_d_close_t fm_noclose, fm_nullclose;
fm_d_read_t fm_noread, fm_nullread;
fm_d_write_t fm_nowrite, fm_nullwrite;
fm_d_ioctl_t fm_noioctl;
fm_d_mmap_t fm_nommap;

/*
 * fm_dev_register: make a device openable as FM_DEVPREFIX name. Names are
 * at most 31 bytes of [A-Za-z0-9_.-].
 * => -EEXIST: the name is taken; -EINVAL: bad name or NULL cdevsw.
 */
int fm_dev_register(const char *name, const struct fm_cdevsw *cdev, void *priv);
/* => -ENOENT: no such device; -EBUSY: it is open. */
int fm_dev_unregister(const char *name);
void *fm_dev_private(struct fm_dev *dev);
const char *fm_dev_name(struct fm_dev *dev);
/* The readiness of every open of dev changed (fm_file_wakeup). */
void fm_dev_wakeup(struct fm_dev *dev);

/*
 * fm_dev_memory: the device's memory, the pages d_mmap's cookies name (like
 * a device's BAR): size bytes of zeroed memory, made on the first call; a
 * later call returns the same memory (size no larger than the first).
 * *kva: where the driver reads and writes it. All opens share it; the
 * device pager maps its pages into every mapping, coherently.
 * => 0, -EINVAL (size 0 or larger than the first), -ENOMEM
 */
int fm_dev_memory(struct fm_dev *dev, size_t size, void **kva);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif /* FOMAP_DRIVER_H */
