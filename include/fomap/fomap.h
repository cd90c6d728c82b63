/*
 * fomap.h: the user API of fomap, a mirror of the POSIX file and mmap calls.
 *
 * Every call behaves like its libc namesake: it returns what libc returns
 * for the same arguments (-1, or MAP_FAILED for fm_mmap, with the same
 * errno, checked in the same order). A call that fails has changed
 * nothing, but where its namesake may have changed something too:
 * fm_mmap with MAP_FIXED may leave the range it was to replace unmapped;
 * fm_mprotect may have acted on the part of the range before a hole;
 * fm_madvise and fm_msync act on every mapped part of a range with a hole
 * before they fail with ENOMEM, and may have acted on part of the range
 * before another error (a pager's failure). What a driver's hook did
 * before it failed is the driver's to undo.
 * tests/unit/test_parity.c holds the cases, and the few known differences.
 * No set-up call is needed: the first call starts fomap's fault engine.
 *
 * Paths under /dev/fomap/ name fomap devices (drivers in drivers/ are built
 * in; an application registers its own with fm_dev_register(), driver.h).
 * Any other path is an ordinary file, opened by the host kernel.
 * Descriptors returned by fm_open() are real kernel descriptor numbers
 * reserved by fomap, so they never collide with the process's own. If the
 * program takes one back behind fomap's back (close(2), or dup2(2) over
 * it), the next call on that number sees it: the number is the program's
 * again, an ordinary descriptor, and the device's open is released.
 * fomap's descriptors cannot be dup(2)'ed: the copy is an ordinary one.
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
 * flags as open(2), honoured as given (an ordinary file is open(2)'s), and
 * a mode argument with O_CREAT or O_TMPFILE. A device is a character
 * device: O_RDONLY, O_WRONLY, O_RDWR, O_APPEND, O_NONBLOCK, O_CLOEXEC and
 * O_PATH (a name to fm_fstat and fm_close: its driver is not opened) are
 * kept, the others ignored but as below.
 * => ENXIO: no such device. EEXIST: O_CREAT|O_EXCL. ENOTDIR: O_DIRECTORY
 *    or O_TMPFILE. EINVAL: O_DIRECT, or O_ACCMODE (ioctl-only opens are
 *    not supported). Errors of open(2) and of the driver's d_open.
 */
int fm_open(const char *path, int flags, ...);

/*
 * fm_close: close a descriptor from fm_open (or any ordinary descriptor).
 * Mappings made from it stay valid, as with close(2).
 */
int fm_close(int fd);

/*
 * fm_read, fm_write: read(2) and write(2), through the file's fileops. At
 * most 0x7ffff000 bytes at once, as the kernel's. The driver is handed
 * only the part of buf it may touch (a buffer usable only in part gives a
 * short count); a driver that ignores buf (the null stubs) is not checked.
 * => EBADF: not open for reading (writing), or an O_PATH open. EINVAL: the
 *    file has no read (write). EFAULT: buf is not writable (readable) at
 *    its start, or outside the user address space.
 */
ssize_t fm_read(int fd, void *buf, size_t len);
ssize_t fm_write(int fd, const void *buf, size_t len);

/*
 * fm_ioctl: ioctl(2) on a fomap descriptor; the argument is a pointer.
 * => ENOTTY: the file has no such request.
 */
int fm_ioctl(int fd, unsigned long request, ...);

/*
 * fm_poll: poll(2) over descriptors of which any may be fomap's: a fomap
 * file's readiness is its driver's (fo_poll), waited for until the driver
 * calls fm_file_wakeup or fm_dev_wakeup, the others' as poll(2) says it.
 * An O_PATH open is not open to it (POLLNVAL). fds is read first and its
 * revents written last, as by poll(2).
 * => the count of entries with revents, 0 at the timeout; EINVAL: nfds
 *    over RLIMIT_NOFILE; EFAULT: fds not readable, or (after the wait) its
 *    revents not writable; EINTR: a signal was caught while nothing was
 *    ready; ENOMEM
 */
struct pollfd;
int fm_poll(struct pollfd *fds, unsigned long nfds, int timeout);

/*
 * fm_fstat: fstat(2). A device file is a character device (S_IFCHR) unless
 * its driver's fo_stat says more.
 * => EBADF; EFAULT: st is not writable.
 */
struct stat;
int fm_fstat(int fd, struct stat *st);

/*
 * fm_mmap: mmap(2). MAP_ANONYMOUS gives host memory; a descriptor from
 * fm_open is mapped through its fileops' fo_mmap, which chooses the memory
 * object; any other descriptor (a regular file, /dev/zero, ...) is mapped
 * by the kernel, which answers for it. The arguments are checked in the
 * kernel's order (an unaligned offset, then the descriptor, then the
 * length, the address, the offset's range, the flags); prot bits other
 * than PROT_READ, PROT_WRITE and PROT_EXEC are ignored, as by mmap(2).
 * Flags: MAP_SHARED, MAP_SHARED_VALIDATE (which refuses flags outside
 * Linux's legacy set with EOPNOTSUPP), MAP_PRIVATE, MAP_FIXED,
 * MAP_FIXED_NOREPLACE and MAP_POPULATE are honoured; MAP_NORESERVE,
 * MAP_GROWSDOWN, MAP_HUGETLB (and its size), MAP_32BIT, MAP_STACK and
 * MAP_SYNC go to the kernel's mmap, which honours or refuses them;
 * MAP_LOCKED and MAP_NONBLOCK too where the kernel maps the memory itself
 * (MAP_ANONYMOUS, files fomap does not own), and are ignored on the
 * engine's mappings. MAP_DROPPABLE is not supported (EINVAL).
 * => EINVAL: length 0, unaligned offset or fixed address, bad type;
 *    MAP_GROWSDOWN or MAP_HUGETLB on a file (but hugetlbfs).
 * => EBADF: fd is not open (or O_PATH). EACCES: protection not allowed by
 *    the open mode or by the object's maximum protection. ENODEV: the file
 *    cannot be mapped. ENXIO: the range is not valid for the device.
 * => ENOMEM: a length or fixed range beyond the address space. EOVERFLOW:
 *    the offset plus the length beyond what the file can address.
 */
void *fm_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);

/*
 * fm_munmap: munmap(2). Unmapping a range that holds no mapping is not an
 * error. When the last mapping of an object goes, its pager writes back.
 */
int fm_munmap(void *addr, size_t len);

/*
 * fm_mprotect: mprotect(2). Length 0 succeeds (the address aligned);
 * PROT_SEM is accepted and means nothing, as on x86.
 * => EACCES: above the maximum protection of a mapping in the range.
 * => ENOMEM: part of the range is not mapped, or it wraps around.
 * => EINVAL: unaligned; a prot bit mprotect(2) does not know; PROT_GROWSDOWN
 *    or PROT_GROWSUP on a range that holds a fomap mapping (none grows).
 */
int fm_mprotect(void *addr, size_t len, int prot);

/*
 * fm_msync: msync(2); MS_SYNC and MS_ASYNC both write dirty pages back
 * through the pager before returning. Length 0 succeeds.
 * => EIO: the pager failed to write back (the pages stay dirty).
 * => ENOMEM: part of the range is not mapped (after the rest is written
 *    back).
 */
int fm_msync(void *addr, size_t len, int flags);

/*
 * fm_madvise: madvise(2). Length 0 succeeds (for advice the kernel knows);
 * a range with a hole gives ENOMEM after advising the rest. On memory the
 * kernel maps itself every advice is the kernel's. On the engine's
 * mappings (a device's objects):
 * - MADV_DONTNEED (and _LOCKED) drops the pages from the range (the object
 *   keeps them: the next access maps them again; a private mapping goes
 *   back to the object's contents).
 * - MADV_WILLNEED makes pages resident and maps them: advice, so at most
 *   32 MiB a call, and never more than an eighth of the free memory.
 * - MADV_NORMAL, MADV_RANDOM and MADV_SEQUENTIAL steer fault-around.
 * - MADV_POPULATE_READ and _WRITE make every page resident and map it, as
 *   faults would (a shared page whose pager tracks writes stays write-
 *   protected until written; a private page is copied for _WRITE); a page
 *   past the object's end gives EFAULT, as its access would SIGBUS.
 * - MADV_REMOVE drops the pages from the object and from every mapping of
 *   it (fm_object_unmap, FM_UNMAP_DISCARD: a pager with pgo_put writes
 *   dirty pages back first, and the next access faults to the pager
 *   again); EACCES on a private or read-only shared mapping.
 * - MADV_DONTFORK is what fomap sets on them already; MADV_DOFORK is
 *   accepted and changes nothing: a child of fork() has no engine, so it
 *   never inherits them.
 * - MADV_HUGEPAGE is accepted and changes nothing (the engine maps small
 *   pages); MADV_COLLAPSE gives EINVAL, as on a device's mapping.
 * - MADV_GUARD_INSTALL gives EINVAL: the engine's fills would map over the
 *   guard markers.
 * - Every other advice Linux has is the kernel's on the object store's
 *   mapping, which is what it means there too: MADV_FREE and
 *   MADV_WIPEONFORK give EINVAL as on any shared file; MADV_COLD,
 *   MADV_PAGEOUT, MADV_(UN)MERGEABLE, MADV_NOHUGEPAGE, MADV_(DONT|DO)DUMP,
 *   MADV_KEEPONFORK, MADV_GUARD_REMOVE, MADV_HWPOISON and
 *   MADV_SOFT_OFFLINE act on the store's pages. Advice the kernel does not
 *   know gives EINVAL.
 */
int fm_madvise(void *addr, size_t len, int advice);

/*
 * Faults on fomap memory that the driver refuses (or that fall past the
 * end of the object) give the faulting thread SIGBUS, as the kernel does
 * for a device: si_code SI_QUEUE (only the kernel may send BUS_ADRERR),
 * si_addr the exact faulting address, si_errno the driver's error. If the
 * thread blocks or ignores SIGBUS, the kernel's own SIGBUS kills it, as it
 * would. A system call that touches such memory fails with EFAULT.
 *
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

/*
 * fm_engine_latency: how long the engine took to answer faults, from
 * reading a fault's message to its answer: hist[i] counts those of
 * [2^i, 2^(i+1)) microseconds (hist[0]: under 2 µs; the last bucket: its
 * time or longer), for i < n. => how many buckets were filled (at most
 * FM_LATENCY_BUCKETS)
 */
#define FM_LATENCY_BUCKETS 16
int fm_engine_latency(unsigned long *hist, int n);

/*
 * fm_probe: whether fomap's fault engine can run in this process: NULL, or
 * a sentence saying why not (no userfaultfd for it, or a kernel without the
 * features it needs); the calls that need the engine then fail with EPERM,
 * or ENOSYS on such a kernel. The first call opens a userfaultfd to see.
 */
const char *fm_probe(void);

/*
 * fm_probe_feature: the i-th (from 0) userfaultfd feature fomap knows:
 * whether this kernel offers it (*offered) and whether fomap's engine
 * needs it (*needed). => its name (UFFD_FEATURE_ without the prefix), or
 * NULL past the last one
 */
const char *fm_probe_feature(unsigned i, int *offered, int *needed);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif /* FOMAP_FOMAP_H */
