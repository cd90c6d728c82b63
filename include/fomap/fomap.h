/*
 * fomap.h: the user API of fomap, a mirror of the POSIX file and mmap calls.
 *
 * Every call behaves like its libc namesake: it returns -1 (MAP_FAILED for
 * fm_mmap) and sets errno on failure, and on failure nothing was changed.
 * No set-up call is needed: the first call starts fomap's fault engine.
 *
 * Paths under /dev/fomap/ name fomap devices (drivers in drivers/ are built
 * in; an application registers its own with fm_dev_register(), driver.h).
 * Any other path is an ordinary file, opened by the host kernel.
 * Descriptors returned by fm_open() are real kernel descriptor numbers
 * reserved by fomap, so they never collide with the process's own.
 */
#ifndef FOMAP_FOMAP_H
#define FOMAP_FOMAP_H

#include <stddef.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default)

#define FM_DEVPREFIX "/dev/fomap/"

/*
 * fm_open: open a fomap device (FM_DEVPREFIX "name") or an ordinary file.
 * flags as open(2): O_RDONLY, O_WRONLY or O_RDWR, plus O_CREAT, O_TRUNC,
 * O_APPEND, O_EXCL (ordinary files) and a mode argument with O_CREAT.
 * => ENXIO: no such device; errors of open(2) and of the driver's d_open.
 */
int fm_open(const char *path, int flags, ...);

/*
 * fm_close: close a descriptor from fm_open (or any ordinary descriptor).
 * Mappings made from it stay valid, as with close(2).
 */
int fm_close(int fd);

/* fm_read, fm_write: read(2) and write(2), through the file's fileops. */
ssize_t fm_read(int fd, void *buf, size_t len);
ssize_t fm_write(int fd, const void *buf, size_t len);

/*
 * fm_ioctl: ioctl(2) on a fomap descriptor; the argument is a pointer.
 * => ENOTTY: the file has no such request.
 */
int fm_ioctl(int fd, unsigned long request, ...);

/*
 * fm_fstat: fstat(2). A device file is a character device (S_IFCHR) unless
 * its driver's fo_stat says more.
 */
struct stat;
int fm_fstat(int fd, struct stat *st);

/*
 * fm_mmap: mmap(2). MAP_ANONYMOUS gives host memory; any other file is mapped
 * through its fileops' fo_mmap, which chooses the memory object. fd may be a
 * descriptor from fm_open or an ordinary descriptor of a regular file.
 * MAP_SHARED, MAP_SHARED_VALIDATE, MAP_PRIVATE, MAP_FIXED, MAP_FIXED_NOREPLACE
 * and MAP_POPULATE are honoured; other Linux flags are accepted and ignored
 * except under MAP_SHARED_VALIDATE, where they give EOPNOTSUPP.
 * => EINVAL: length 0, unaligned offset or fixed address, bad flags or prot.
 * => EBADF: fd is not open. EACCES: protection not allowed by the open mode
 *    or by the object's maximum protection. ENODEV: the file has no fo_mmap.
 * => ENXIO: the range is not valid for the device. ENOMEM, EOVERFLOW.
 */
void *fm_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);

/*
 * fm_munmap: munmap(2). Unmapping a range that holds no mapping is not an
 * error. When the last mapping of an object goes, its pager writes back.
 */
int fm_munmap(void *addr, size_t len);

/*
 * fm_mprotect: mprotect(2).
 * => EACCES: above the maximum protection of a mapping in the range.
 * => ENOMEM: part of the range is not mapped.
 */
int fm_mprotect(void *addr, size_t len, int prot);

/*
 * fm_msync: msync(2); MS_SYNC and MS_ASYNC both write dirty pages back
 * through the pager before returning.
 * => EIO: the pager failed to write back (the pages stay dirty).
 */
int fm_msync(void *addr, size_t len, int flags);

/*
 * fm_madvise: madvise(2). MADV_DONTNEED drops the pages from the range (the
 * object keeps them: the next access maps them again; a private mapping goes
 * back to the object's contents); MADV_WILLNEED makes them resident and maps
 * them; MADV_NORMAL, MADV_RANDOM and MADV_SEQUENTIAL steer fault-around.
 */
int fm_madvise(void *addr, size_t len, int advice);

/*
 * fm_engine_stats: counters of the fault engine, since the process started.
 */
struct fm_stats {
	unsigned long faults; /* page faults resolved */
	unsigned long minor; /* ... of which the page was resident */
	unsigned long wp; /* write faults on write-protected pages */
	unsigned long pages; /* pages installed (fault-around included) */
	unsigned long sigbus; /* faults answered with SIGBUS */
	unsigned long retries; /* installs retried after a race */
};
void fm_engine_stats(struct fm_stats *st);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif /* FOMAP_FOMAP_H */
