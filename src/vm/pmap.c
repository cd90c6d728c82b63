/*
 * pmap.c: the MMU layer: userfaultfd set-up, probing and the ioctls that
 * enter, zero-fill, protect, poison and wake pages.
 */
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "vm/pmap.h"

#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif

/* The kernel must offer these for fomap's engine to work. */
#define FM_UFFD_NEEDED                                              \
	(UFFD_FEATURE_MISSING_SHMEM | UFFD_FEATURE_MINOR_SHMEM |    \
	    UFFD_FEATURE_WP_HUGETLBFS_SHMEM | UFFD_FEATURE_POISON | \
	    UFFD_FEATURE_PAGEFAULT_FLAG_WP | UFFD_FEATURE_THREAD_ID)

static pthread_once_t pmap_once = PTHREAD_ONCE_INIT;
static struct fm_pmap kernel_pmap = {.uffd = -1};
static char unavail[160];
static int unavail_errno;
static uint64_t probed;

/* Open a userfaultfd: the syscall, then /dev/userfaultfd, then user-only. */
static int
uffd_open(void)
{
	int fd, dev, err;

	fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC);
	if (fd >= 0)
		return fd;
	err = errno;
	dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev >= 0) {
		fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC);
		close(dev);
		if (fd >= 0)
			return fd;
	}
	fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY);
	if (fd >= 0)
		return fd;
	errno = err;
	return -1;
}

static int
uffd_api(int fd, uint64_t features, uint64_t *got)
{
	struct uffdio_api api = {.api = UFFD_API, .features = features};

	if (ioctl(fd, UFFDIO_API, &api) < 0)
		return -errno;
	*got = api.features;
	return 0;
}

static void
pmap_setup(void)
{
	uint64_t f = 0;
	int fd = uffd_open();

	if (fd < 0) {
		unavail_errno = errno == ENOSYS ? ENOSYS : EPERM;
		snprintf(unavail, sizeof unavail,
		    "userfaultfd unavailable (%s): run as root, or grant "
		    "read-write access to /dev/userfaultfd, or set "
		    "vm.unprivileged_userfaultfd=1",
		    strerror(errno));
		return;
	}
	if (uffd_api(fd, 0, &f) < 0)
		f = 0;
	close(fd);
	probed = f;
	if ((f & FM_UFFD_NEEDED) != FM_UFFD_NEEDED) {
		unavail_errno = ENOSYS;
		snprintf(unavail, sizeof unavail,
		    "kernel userfaultfd lacks features 0x%llx (needs Linux "
		    "6.6+ "
		    "with shmem minor faults and write protection)",
		    (unsigned long long)(FM_UFFD_NEEDED & ~f));
		return;
	}
	fd = uffd_open();
	if (fd < 0 || uffd_api(fd, FM_UFFD_NEEDED, &f) < 0) {
		unavail_errno = EPERM;
		snprintf(unavail, sizeof unavail, "userfaultfd set-up failed");
		if (fd >= 0)
			close(fd);
		return;
	}
	kernel_pmap.features = f;
	kernel_pmap.uffd = fd;
}

struct fm_pmap *
fm__pmap_kernel(void)
{
	pthread_once(&pmap_once, pmap_setup);
	if (kernel_pmap.uffd < 0) {
		errno = unavail_errno;
		return NULL;
	}
	return &kernel_pmap;
}

const char *
fm__pmap_unavailable(void)
{
	pthread_once(&pmap_once, pmap_setup);
	return kernel_pmap.uffd < 0 ? unavail : NULL;
}

uint64_t
fm__pmap_probe(void)
{
	pthread_once(&pmap_once, pmap_setup);
	return probed;
}

int
fm__pmap_register(struct fm_pmap *pm, uintptr_t va, size_t len, int mode)
{
	struct uffdio_register reg = {
	    .range = {.start = va, .len = len},
	    .mode = UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_MINOR,
	};

	if (mode & FM_PMAP_SHARED)
		reg.mode |= UFFDIO_REGISTER_MODE_WP;
	return ioctl(pm->uffd, UFFDIO_REGISTER, &reg) < 0 ? -errno : 0;
}

int
fm__pmap_enter(struct fm_pmap *pm, uintptr_t va, size_t len, int wp,
    size_t *mapped)
{
	struct uffdio_continue c = {
	    .range = {.start = va, .len = len},
	    .mode = wp ? UFFDIO_CONTINUE_MODE_WP : 0,
	};
	int r = ioctl(pm->uffd, UFFDIO_CONTINUE, &c) < 0 ? -errno : 0;

	*mapped = c.mapped > 0 ? (size_t)c.mapped : 0;
	if (r == -ENOENT) /* the kernel's: no registered mapping there now */
		r = -ESRCH;
	if (r == -EFAULT) /* CONTINUE's word for "not in the page cache" */
		r = -ENOENT;
	if (r == -EAGAIN && *mapped > 0)
		r = 0; /* a prefix was mapped and its faulter woken */
	return r;
}

int
fm__pmap_zero(struct fm_pmap *pm, uintptr_t va, size_t len, size_t *mapped)
{
	struct uffdio_zeropage z = {.range = {.start = va, .len = len}};
	int r = ioctl(pm->uffd, UFFDIO_ZEROPAGE, &z) < 0 ? -errno : 0;

	*mapped = z.zeropage > 0 ? (size_t)z.zeropage : 0;
	if (r == -EAGAIN && *mapped > 0)
		r = 0; /* a prefix was mapped and its faulter woken */
	return r;
}

int
fm__pmap_wake(struct fm_pmap *pm, uintptr_t va, size_t len)
{
	struct uffdio_range r = {.start = va, .len = len};

	return ioctl(pm->uffd, UFFDIO_WAKE, &r) < 0 ? -errno : 0;
}

int
fm__pmap_protect(struct fm_pmap *pm, uintptr_t va, size_t len, int wp, int wake)
{
	struct uffdio_writeprotect w = {
	    .range = {.start = va, .len = len},
	    /* Protecting never wakes; the kernel refuses DONTWAKE with it. */
	    .mode = wp ? UFFDIO_WRITEPROTECT_MODE_WP
	        : wake ? 0
	               : UFFDIO_WRITEPROTECT_MODE_DONTWAKE,
	};

	return ioctl(pm->uffd, UFFDIO_WRITEPROTECT, &w) < 0 ? -errno : 0;
}

/* Whether thread tid of this process takes a SIGBUS sent to it. */
static int
sigbus_deliverable(pid_t tid)
{
	char path[64], line[128];
	unsigned long long blk = ~0ULL, ign = ~0ULL;
	FILE *f;

	snprintf(path, sizeof path, "/proc/self/task/%d/status", (int)tid);
	if ((f = fopen(path, "re")) == NULL)
		return 0;
	while (fgets(line, sizeof line, f)) {
		(void)sscanf(line, "SigBlk: %llx", &blk);
		(void)sscanf(line, "SigIgn: %llx", &ign);
	}
	fclose(f);
	return !((blk | ign) & (1ULL << (SIGBUS - 1)));
}

/* Make [va, va+len) raise SIGBUS when touched, and wake its faulters. */
static int
poison(struct fm_pmap *pm, uintptr_t va, size_t len)
{
	struct uffdio_poison p = {.range = {.start = va, .len = len}};

	if (ioctl(pm->uffd, UFFDIO_POISON, &p) == 0)
		return 0;
	if (errno == EEXIST) /* mapped meanwhile: let the thread retry */
		return fm__pmap_wake(pm, va, len);
	return -errno;
}

/*
 * Only a thread may send itself a signal with a kernel si_code, so the
 * engine's SIGBUS says SI_QUEUE; si_addr holds the faulting page all the
 * same (it shares its bytes with si_pid and si_uid, which the kernel leaves
 * as given for queued signals).
 */
int
fm__pmap_sigbus(struct fm_pmap *pm, pid_t tid, uintptr_t va, int mapped)
{
	siginfo_t si = {.si_signo = SIGBUS, .si_code = SI_QUEUE};

	si.si_addr = (void *)va;
	if (tid > 0 && sigbus_deliverable(tid)) {
		/*
		 * The signal itself wakes the thread, and only it: a range wake
		 * would also wake other threads waiting on va, which would then
		 * go on while their own messages are still to be answered.
		 * (A thread already woken by another answer's range wake
		 * still gets it: rare, see docs/internals.md.)
		 */
		if (syscall(SYS_rt_tgsigqueueinfo, getpid(), tid, SIGBUS,
		        &si) == 0)
			return 0;
	}
	/*
	 * The thread would not take it (blocked or ignored): the kernel's own
	 * SIGBUS, as for any fault it cannot serve. Poison needs an empty PTE
	 * with no write-protect marker: unprotect without waking, then zap.
	 */
	if (mapped)
		(void)fm__pmap_protect(pm, va, FM_PAGE_SIZE_PMAP, 0, 0);
	(void)fm__pmap_zap(pm, va, FM_PAGE_SIZE_PMAP);
	return poison(pm, va, FM_PAGE_SIZE_PMAP);
}

int
fm__pmap_zap(struct fm_pmap *pm, uintptr_t va, size_t len)
{
	(void)pm; /* embedded: the uffd's address space is ours */
	return madvise((void *)va, len, MADV_DONTNEED) < 0 ? -errno : 0;
}
