/*
 * pmap.c: the MMU layer: userfaultfd set-up, probing, the ioctls that
 * enter, zero-fill, protect, poison and wake pages, and the operations of
 * an address space ("self": this process's).
 */
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "vm/pmap.h"
#include "vm/vm.h"

#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif

/* The kernel must offer these for fomap's engine to work. */
#define FM_UFFD_NEEDED                                                \
	(UFFD_FEATURE_MISSING_SHMEM | UFFD_FEATURE_MINOR_SHMEM |      \
	    UFFD_FEATURE_WP_HUGETLBFS_SHMEM | UFFD_FEATURE_POISON |   \
	    UFFD_FEATURE_PAGEFAULT_FLAG_WP | UFFD_FEATURE_THREAD_ID | \
	    UFFD_FEATURE_EVENT_REMAP | UFFD_FEATURE_EVENT_UNMAP)
#define FM_PMAP_AGAIN_MAX 100000 /* EAGAIN tries before giving up */
/* Used when offered. */
#define FM_UFFD_WANTED UFFD_FEATURE_EXACT_ADDRESS

/*
 * The operations of an address space. fm__pmap_proc_task_read and
 * fm__pmap_proc_sigbus reach
 * any process of ours (/proc/<pid>, a signal to pm->pid); self_zap only
 * the caller's own address space.
 */
static fm_pmap_zap_t self_zap;

/* This process's own address space. */
static const struct fm_pmap_ops self_ops = {
    .pmo_name = "self",
    .pmo_zap = self_zap,
    .pmo_task_read = fm__pmap_proc_task_read,
    .pmo_sigbus = fm__pmap_proc_sigbus,
};

/* Set-up is tried again after a transient failure (EMFILE, ENOMEM). */
static pthread_mutex_t pmap_lock = PTHREAD_MUTEX_INITIALIZER;
static int pmap_done;
static struct fm_pmap kernel_pmap = {.ops = &self_ops,
    .uffd = -1,
    .uffd_user = -1,
    .pagemap = -1};
static char unavail[160];
static int unavail_errno;
static uint64_t probed;

/* Open a userfaultfd: the syscall, then /dev/userfaultfd, then user-only. */
static int
uffd_open(void)
{
	int fd, dev, err;

	fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (fd >= 0)
		return fd;
	err = errno;
	dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev >= 0) {
		fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
		close(dev);
		if (fd >= 0)
			return fd;
	}
	fd = (int)syscall(SYS_userfaultfd,
	    O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
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

/*
 * The user-mode-only userfaultfd (pm->uffd_user), or -1. It follows
 * mremap (EVENT_REMAP: without it the kernel drops a moved registration).
 */
static int
user_uffd_open(void)
{
	int fd = (int)syscall(SYS_userfaultfd,
	    O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
	uint64_t got;

	if (fd >= 0 &&
	    uffd_api(fd,
	        UFFD_FEATURE_EVENT_REMAP | UFFD_FEATURE_MISSING_SHMEM |
	            UFFD_FEATURE_MINOR_SHMEM,
	        &got) < 0) {
		close(fd);
		fd = -1;
	}
	return fd;
}

/* Open /proc/<pid>/<what> of pm's process. => fd, or -1 with errno */
static int
proc_open(const struct fm_pmap *pm, const char *what)
{
	char path[64];

	snprintf(path, sizeof path, "/proc/%d/%s",
	    (int)__atomic_load_n(&pm->pid, __ATOMIC_ACQUIRE), what);
	return open(path, O_RDONLY | O_CLOEXEC);
}

pid_t
fm__proc_status_pid(pid_t pid, const char *key)
{
	char path[48], buf[1024], *at;
	ssize_t k;
	int fd;

	snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return 0;
	k = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (k <= 0)
		return 0;
	buf[k] = '\0';
	at = strstr(buf, key);
	return at ? (pid_t)strtol(at + strlen(key), NULL, 10) : 0;
}

/*
 * pm's process; a forked client's not named yet is learned from thread
 * tid, which faulted in it (the kernel says so: its uffd is the child's).
 */
static pid_t
pmap_pid(struct fm_pmap *pm, pid_t tid)
{
	pid_t pid = __atomic_load_n(&pm->pid, __ATOMIC_ACQUIRE);

	if (pid == 0 && tid > 0 &&
	    (pid = fm__proc_status_pid(tid, "\nTgid:")) > 0)
		(void)fm__pmap_claim(pm, pid);
	return __atomic_load_n(&pm->pid, __ATOMIC_ACQUIRE);
}

static int
transient(int err)
{
	return err == EMFILE || err == ENFILE || err == ENOMEM || err == EAGAIN;
}

/* => pmap_lock held; sets pmap_done unless it may work next time */
static void
pmap_setup_locked(void)
{
	uint64_t f = 0;
	int fd = uffd_open();

	pmap_done = 1;
	if (fd < 0) {
		if (transient(errno)) {
			pmap_done = 0;
			unavail_errno = errno;
		} else
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
	if (fd < 0 && transient(errno)) {
		pmap_done = 0;
		unavail_errno = errno;
		snprintf(unavail, sizeof unavail, "userfaultfd: %s",
		    strerror(errno));
		return;
	}
	if (fd < 0 ||
	    uffd_api(fd, FM_UFFD_NEEDED | (f & FM_UFFD_WANTED), &f) < 0) {
		unavail_errno = EPERM;
		snprintf(unavail, sizeof unavail, "userfaultfd set-up failed");
		if (fd >= 0)
			close(fd);
		return;
	}
	kernel_pmap.features = f;
	kernel_pmap.pid = getpid();
	kernel_pmap.pagemap = proc_open(&kernel_pmap, "pagemap");
	kernel_pmap.uffd_user = user_uffd_open();
	kernel_pmap.uffd = fd;
}

static void
pmap_setup(void)
{
	pthread_mutex_lock(&pmap_lock);
	if (!pmap_done)
		pmap_setup_locked();
	pthread_mutex_unlock(&pmap_lock);
}

struct fm_pmap *
fm__pmap_kernel(void)
{
	pmap_setup();
	if (kernel_pmap.uffd < 0) {
		errno = unavail_errno;
		return NULL;
	}
	return &kernel_pmap;
}

const struct fm_pmap *
fm__pmap_self(void)
{
	return &kernel_pmap;
}

const char *
fm__pmap_unavailable(void)
{
	pmap_setup();
	return kernel_pmap.uffd < 0 ? unavail : NULL;
}

uint64_t
fm__pmap_probe(void)
{
	pmap_setup();
	return probed;
}

/*
 * Read a uffd without waiting, whatever its descriptor's O_NONBLOCK says:
 * a client shares its uffd's open file description with the engine, and
 * may clear that flag (a blocking read would hold the engine's readers).
 * A kernel whose uffd has no RWF_NOWAIT: the descriptor's flag (only
 * this process's own uffd is read so: fm__pmap_client probes).
 */
static ssize_t
uffd_read(int fd, void *buf, size_t len)
{
	struct iovec iov = {.iov_base = buf, .iov_len = len};
	ssize_t k = preadv2(fd, &iov, 1, -1, RWF_NOWAIT);

	return k < 0 && errno == EOPNOTSUPP ? read(fd, buf, len) : k;
}

/*
 * Clients' pmaps are never freed, only reused: an engine thread may hold
 * one its wait returned just before it stopped being served (it reads it
 * only once it has seen pm->served under the engine's lock). Under
 * pmap_lock.
 */
static struct fm_pmap *client_free;

/* A client's pmap, not served, its fields cleared. => NULL: no memory */
static struct fm_pmap *
pmap_alloc(void)
{
	struct fm_pmap *pm;

	pthread_mutex_lock(&pmap_lock);
	if ((pm = client_free) != NULL)
		client_free = pm->next_free;
	pthread_mutex_unlock(&pmap_lock);
	if (pm == NULL && (pm = calloc(1, sizeof(*pm))) == NULL)
		return NULL;
	/* (served stays 0: a thread that looks at it sees no other field) */
	pm->ops = NULL;
	pm->pid = 0;
	pm->uffd = pm->uffd_user = pm->pagemap = -1;
	atomic_store(&pm->user_ready, 0);
	pm->features = 0;
	pm->drain = NULL;
	pm->vs = NULL;
	atomic_store(&pm->inflight, 0);
	pm->next_free = NULL;
	return pm;
}

static void
pmap_release(struct fm_pmap *pm)
{
	pthread_mutex_lock(&pmap_lock);
	pm->next_free = client_free;
	client_free = pm;
	pthread_mutex_unlock(&pmap_lock);
}

int
fm__pmap_client(pid_t pid, int uffd, const struct fm_pmap_ops *ops,
    struct fm_pmap **pmp)
{
	struct fm_pmap *pm;
	/* EVENT_FORK: a child's mappings stay served (its uffd is ours). */
	uint64_t want = FM_UFFD_NEEDED | UFFD_FEATURE_EVENT_FORK |
	    (fm__pmap_probe() & FM_UFFD_WANTED);
	uint64_t got = 0;
	int fl, r;

	if ((fl = fcntl(uffd, F_GETFL)) < 0)
		return -errno;
	if (!(fl & O_NONBLOCK) && fcntl(uffd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	/*
	 * Not a userfaultfd: ENOTTY (-EBADF here); one whose API was done
	 * already (its features not the engine's): EINVAL.
	 */
	if ((r = uffd_api(uffd, want, &got)) < 0)
		return r == -ENOTTY ? -EBADF : r;
	if ((got & FM_UFFD_NEEDED) != FM_UFFD_NEEDED)
		return -ENOTSUP;
	/* (the kernel refuses RWF_NOWAIT before it looks at the length) */
	if (preadv2(uffd, &(struct iovec){.iov_base = &got, .iov_len = 0}, 1,
	        -1, RWF_NOWAIT) < 0 &&
	    errno == EOPNOTSUPP)
		return -ENOTSUP; /* no read that never waits */
	if ((pm = pmap_alloc()) == NULL)
		return -ENOMEM;
	pm->ops = ops;
	pm->pid = pid;
	pm->uffd = uffd;
	pm->uffd_user = -1;
	pm->features = got;
	pm->pagemap = proc_open(pm, "pagemap");
	if (pm->pagemap < 0) {
		int err = errno;

		pmap_release(pm);
		return err == ENOENT ? -ESRCH : -err;
	}
	*pmp = pm;
	return 0;
}

int
fm__pmap_forked(const struct fm_pmap *parent, int ufd, struct fm_pmap **pmp)
{
	struct fm_pmap *pm;
	int fl = fcntl(ufd, F_GETFL);

	/* (the kernel gives the child's uffd the flags its parent was made
	 * with, not those set since) */
	if (fl < 0 || fcntl(ufd, F_SETFL, fl | O_NONBLOCK) < 0 ||
	    fcntl(ufd, F_SETFD, FD_CLOEXEC) < 0)
		return -errno;
	if ((pm = pmap_alloc()) == NULL)
		return -ENOMEM;
	pm->ops = parent->ops;
	pm->uffd = ufd;
	pm->uffd_user = -1;
	pm->pagemap = -1;
	pm->features = parent->features;
	*pmp = pm;
	return 0;
}

int
fm__pmap_claim(struct fm_pmap *pm, pid_t pid)
{
	char path[48];
	int r = 0, fd;

	pthread_mutex_lock(&pmap_lock);
	if (pm->pid != 0)
		r = pm->pid == pid ? 0 : -EBUSY;
	else {
		snprintf(path, sizeof path, "/proc/%d/pagemap", (int)pid);
		if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
			r = errno == ENOENT ? -ESRCH : -errno;
		else {
			__atomic_store_n(&pm->pagemap, fd, __ATOMIC_RELEASE);
			__atomic_store_n(&pm->pid, pid, __ATOMIC_RELEASE);
		}
	}
	pthread_mutex_unlock(&pmap_lock);
	return r;
}

int
fm__pmap_alive(struct fm_pmap *pm, uintptr_t va)
{
	/*
	 * A write-protect of page va, which the caller knows none of pm's
	 * mappings covers: ENOENT (nothing registered there, nothing done)
	 * while its mm lives, ESRCH once it has gone. (Protecting is what
	 * changes nothing even where the process registered memory itself:
	 * an unprotect there would let writes past the engine; a wake never
	 * looks at the mm.)
	 */
	struct uffdio_writeprotect w = {.range = {.start = va,
	                                    .len = FM_PAGE_SIZE_PMAP},
	    .mode = UFFDIO_WRITEPROTECT_MODE_WP};

	return ioctl(pm->uffd, UFFDIO_WRITEPROTECT, &w) == 0 || errno != ESRCH;
}

void
fm__pmap_client_free(struct fm_pmap *pm)
{
	FM_ASSERT(!atomic_load(&pm->served), "pmap of pid %d still served",
	    (int)pm->pid);
	close(pm->uffd);
	if (pm->pagemap >= 0)
		close(pm->pagemap);
	pmap_release(pm);
}

int
fm__pmap_user_register(struct fm_pmap *pm, uintptr_t va, size_t len)
{
	struct uffdio_register reg = {
	    .range = {.start = va, .len = len},
	    .mode = UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_MINOR,
	};

	if (pm->uffd_user < 0)
		return -ENOSYS;
	return ioctl(pm->uffd_user, UFFDIO_REGISTER, &reg) < 0 ? -errno : 0;
}

int
fm__pmap_user_wake(struct fm_pmap *pm, uintptr_t va, size_t len)
{
	struct uffdio_range r = {.start = va, .len = len};

	return ioctl(pm->uffd_user, UFFDIO_WAKE, &r) < 0 ? -errno : 0;
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

/*
 * A userfaultfd ioctl, tried again while the kernel says EAGAIN: an event
 * (munmap, mremap) is waiting to be read, and until it is, every call that
 * changes page tables fails. The caller may be what keeps the engine from
 * reading it, so it reads it itself (pm->drain). *progress (when given)
 * says whether a try did part of the work: then it is done.
 */
static int
uffd_ioctl(struct fm_pmap *pm, unsigned long req, void *arg,
    const __s64 *progress)
{
	for (int tries = 0;; tries++) {
		if (ioctl(pm->uffd, req, arg) == 0)
			return 0;
		if (errno != EAGAIN || (progress && *progress > 0) ||
		    tries == FM_PMAP_AGAIN_MAX)
			return -errno;
		if (pm->drain)
			(void)pm->drain(pm);
		sched_yield();
	}
}

int
fm__pmap_unregister(struct fm_pmap *pm, uintptr_t va, size_t len)
{
	struct uffdio_range r = {.start = va, .len = len};

	return ioctl(pm->uffd, UFFDIO_UNREGISTER, &r) < 0 ? -errno : 0;
}

int
fm__pmap_enter(struct fm_pmap *pm, uintptr_t va, size_t len, int wp,
    size_t *mapped)
{
	struct uffdio_continue c = {
	    .range = {.start = va, .len = len},
	    .mode = wp ? UFFDIO_CONTINUE_MODE_WP : 0,
	};
	int r = uffd_ioctl(pm, UFFDIO_CONTINUE, &c, &c.mapped);

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
	int r = uffd_ioctl(pm, UFFDIO_ZEROPAGE, &z, &z.zeropage);

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

static struct uffdio_writeprotect
writeprotect(uintptr_t va, size_t len, int wp, int wake)
{
	return (struct uffdio_writeprotect){
	    .range = {.start = va, .len = len},
	    /* Protecting never wakes; the kernel refuses DONTWAKE with it. */
	    .mode = wp ? UFFDIO_WRITEPROTECT_MODE_WP
	        : wake ? 0
	               : UFFDIO_WRITEPROTECT_MODE_DONTWAKE,
	};
}

int
fm__pmap_protect(struct fm_pmap *pm, uintptr_t va, size_t len, int wp, int wake)
{
	struct uffdio_writeprotect w = writeprotect(va, len, wp, wake);

	return uffd_ioctl(pm, UFFDIO_WRITEPROTECT, &w, NULL);
}

int
fm__pmap_protect_try(struct fm_pmap *pm, uintptr_t va, size_t len, int wp)
{
	struct uffdio_writeprotect w = writeprotect(va, len, wp, 0);

	return ioctl(pm->uffd, UFFDIO_WRITEPROTECT, &w) < 0 ? -errno : 0;
}

/*
 * Whether pm's uffd has an UNMAP, REMAP or FORK event not read yet: the
 * kernel refuses every UFFDIO_WRITEPROTECT with EAGAIN then, before it
 * looks at the range (one of length 0 is EINVAL otherwise, and changes
 * nothing). Measured on 6.18: EINVAL, EAGAIN while an mremap's event
 * waits, EINVAL once it is read.
 */
int
fm__pmap_event_unread(struct fm_pmap *pm)
{
	struct uffdio_writeprotect w = writeprotect(0, 0, 0, 0);

	return ioctl(pm->uffd, UFFDIO_WRITEPROTECT, &w) < 0 && errno == EAGAIN;
}

int
fm__pmap_read(struct fm_pmap *pm, struct uffd_msg *msgs, size_t n, int user)
{
	ssize_t k = uffd_read(pm->uffd, msgs, n * sizeof(*msgs));
	struct uffd_msg drop[8];

	/*
	 * What the user-mode-only uffd has: read, so that mremap may end
	 * (not on every read: a read that finds nothing is a system call a
	 * fault).
	 */
	if (pm->uffd_user >= 0 && (user || atomic_exchange(&pm->user_ready, 0)))
		while (read(pm->uffd_user, drop, sizeof drop) > 0)
			;
	if (k < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -errno;
	return (int)((size_t)k / sizeof(*msgs));
}

int
fm__pmap_set_create(int kick)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0};
	int ep = epoll_create1(EPOLL_CLOEXEC);

	if (ep < 0)
		return -errno;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, kick, &ev) < 0) {
		int err = errno;

		close(ep);
		return -err;
	}
	return ep;
}

/*
 * In the set, pm's uffd is known by pm, its uffd_user by pm with the low
 * bit set (a message there is dropped by the next read of pm), the kick by
 * 0.
 */
#define PMAP_USER_TAG 1u

int
fm__pmap_set_add(int set, struct fm_pmap *pm)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uintptr_t)pm};
	struct epoll_event evu = {.events = EPOLLIN,
	    .data.u64 = (uintptr_t)pm | PMAP_USER_TAG};

	if (epoll_ctl(set, EPOLL_CTL_ADD, pm->uffd, &ev) < 0)
		return -errno;
	if (pm->uffd_user >= 0 &&
	    epoll_ctl(set, EPOLL_CTL_ADD, pm->uffd_user, &evu) < 0) {
		int err = errno;

		(void)epoll_ctl(set, EPOLL_CTL_DEL, pm->uffd, NULL);
		return -err;
	}
	return 0;
}

void
fm__pmap_set_del(int set, struct fm_pmap *pm)
{
	(void)epoll_ctl(set, EPOLL_CTL_DEL, pm->uffd, NULL);
	if (pm->uffd_user >= 0)
		(void)epoll_ctl(set, EPOLL_CTL_DEL, pm->uffd_user, NULL);
}

int
fm__pmap_set_wait(int set, int kick, struct fm_pmap **ready, int max)
{
	struct epoll_event ev[FM_PMAP_SET_MAX];
	uint64_t v;
	int n, k = 0;

	if (max > FM_PMAP_SET_MAX)
		max = FM_PMAP_SET_MAX;
	while ((n = epoll_wait(set, ev, max, -1)) < 0 && errno == EINTR)
		;
	for (int i = 0; i < n; i++) {
		uintptr_t tag = (uintptr_t)ev[i].data.u64;
		struct fm_pmap *pm =
		    (struct fm_pmap *)(tag & ~(uintptr_t)PMAP_USER_TAG);
		int seen = 0;

		if (pm == NULL) {
			(void)!read(kick, &v, sizeof v);
			continue;
		}
		if (tag & PMAP_USER_TAG)
			atomic_store(&pm->user_ready, 1);
		for (int j = 0; j < k; j++)
			seen |= ready[j] == pm;
		if (!seen)
			ready[k++] = pm;
	}
	return k;
}

/* pm's operations: every address space has them all. */
static const struct fm_pmap_ops *
pmap_ops(const struct fm_pmap *pm)
{
	FM_ASSERT(pm->ops != NULL && pm->ops->pmo_zap != NULL &&
	        pm->ops->pmo_task_read != NULL && pm->ops->pmo_sigbus != NULL,
	    "address space of pid %d has no or partial ops", (int)pm->pid);
	return pm->ops;
}

/* The /proc file what of thread tid of pm's process, into buf. */
int
fm__pmap_proc_task_read(struct fm_pmap *pm, pid_t tid, const char *what,
    char *buf, size_t size)
{
	char rel[48];
	ssize_t k;
	int fd;

	(void)pmap_pid(pm, tid); /* (a forked client's, learned) */
	snprintf(rel, sizeof rel, "task/%d/%s", (int)tid, what);
	if ((fd = proc_open(pm, rel)) < 0)
		return -1;
	k = read(fd, buf, size - 1);
	close(fd);
	if (k < 0)
		return -1;
	buf[k] = '\0';
	return (int)k;
}

static unsigned long long
status_mask(const char *status, const char *key)
{
	const char *at = strstr(status, key);

	return at ? strtoull(at + strlen(key), NULL, 16) : 0;
}

int
fm__pmap_thread_in_fault(struct fm_pmap *pm, pid_t tid)
{
	const struct fm_pmap_ops *ops = pmap_ops(pm);
	char wchan[64];

	if (ops->pmo_task_read(pm, tid, "wchan", wchan, sizeof wchan) < 0)
		return -ESRCH;
	return strcmp(wchan, "handle_userfault") == 0;
}

/* => the CPU time thread tid has run so far (ns), or -1: not known */
long long
fm__pmap_thread_ran(struct fm_pmap *pm, pid_t tid)
{
	char line[128];

	if (pmap_ops(pm)->pmo_task_read(pm, tid, "schedstat", line,
	        sizeof line) < 0)
		return -1;
	return strtoll(line, NULL, 10);
}

int
fm__pmap_thread(struct fm_pmap *pm, pid_t tid, struct fm_pmap_thread *t)
{
	char status[2048];
	unsigned long long bus = 1ULL << (SIGBUS - 1), pnd, blk, ign;
	const struct fm_pmap_ops *ops = pmap_ops(pm);
	const char *v;
	int before;

	memset(t, 0, sizeof(*t));
	/*
	 * Waiting in a fault both before and after the rest is read: what
	 * the rest says (its signal mask above all) is what it faulted with.
	 */
	if (tid <= 0 || (before = fm__pmap_thread_in_fault(pm, tid)) < 0 ||
	    ops->pmo_task_read(pm, tid, "status", status, sizeof status) < 0 ||
	    ops->pmo_task_read(pm, tid, "syscall", t->syscall,
	        sizeof t->syscall) < 0)
		return -ESRCH;
	pnd = status_mask(status, "SigPnd:") | status_mask(status, "ShdPnd:");
	blk = status_mask(status, "SigBlk:");
	ign = status_mask(status, "SigIgn:");
	v = strstr(status, "\nvoluntary_ctxt_switches:");
	t->switches = v ? strtoull(v + 26, NULL, 10) : 0;
	t->sigbus_pending = (pnd & bus) != 0;
	t->sigbus_taken = !((blk | ign) & bus);
	t->signal_pending = (pnd & ~blk) != 0;
	t->running = strncmp(t->syscall, "running", 7) == 0;
	t->in_fault =
	    !t->running && before && fm__pmap_thread_in_fault(pm, tid) > 0;
	t->in_syscall = !t->running && t->syscall[0] != '-';
	return 0;
}

/*
 * Only a process's main thread may send it a kernel si_code, so the
 * engine's SIGBUS says SI_QUEUE; si_addr holds the faulting address all the
 * same (it shares its bytes with si_pid and si_uid, which the kernel leaves
 * as given for queued signals), si_errno the pager's error.
 */
int
fm__pmap_proc_sigbus(struct fm_pmap *pm, pid_t tid, uintptr_t addr, int err)
{
	siginfo_t si = {.si_signo = SIGBUS, .si_code = SI_QUEUE};

	si.si_addr = (void *)addr;
	si.si_errno = err;
	return syscall(SYS_rt_tgsigqueueinfo, pmap_pid(pm, tid), tid, SIGBUS,
	           &si) < 0
	    ? -errno
	    : 0;
}

int
fm__pmap_sigbus(struct fm_pmap *pm, pid_t tid, uintptr_t addr, int err)
{
	return pmap_ops(pm)->pmo_sigbus(pm, tid, addr, err);
}

int
fm__pmap_poison(struct fm_pmap *pm, uintptr_t va, int mapped)
{
	struct uffdio_poison p = {
	    .range = {.start = va, .len = FM_PAGE_SIZE_PMAP}};

	/*
	 * Poison needs an empty PTE with no write-protect marker: zap first
	 * (a protected PTE leaves its marker), then unprotect (the marker
	 * goes; no PTE is ever writable on the way).
	 */
	(void)fm__pmap_zap(pm, va, FM_PAGE_SIZE_PMAP);
	if (mapped)
		(void)fm__pmap_protect(pm, va, FM_PAGE_SIZE_PMAP, 0, 0);
	if (uffd_ioctl(pm, UFFDIO_POISON, &p, &p.updated) == 0)
		return 0;
	if (errno == EEXIST) /* mapped meanwhile: let the thread retry */
		return fm__pmap_wake(pm, va, FM_PAGE_SIZE_PMAP);
	return -errno;
}

#define PM_PRESENT (1ULL << 63)
#define PM_UFFD_WP (1ULL << 57)

int
fm__pmap_wp_state(struct fm_pmap *pm, uintptr_t va)
{
	uint64_t ent;

	if (pread(__atomic_load_n(&pm->pagemap, __ATOMIC_ACQUIRE), &ent,
	        sizeof ent,
	        (off_t)(va / FM_PAGE_SIZE_PMAP) * (off_t)sizeof ent) !=
	    (ssize_t)sizeof ent)
		return -EIO;
	if (!(ent & PM_PRESENT))
		return -ENOENT;
	return (ent & PM_UFFD_WP) != 0;
}

/* MADV_DONTNEED: this process's own address space only. */
static int
self_zap(struct fm_pmap *pm, uintptr_t va, size_t len)
{
	(void)pm;
	return madvise((void *)va, len, MADV_DONTNEED) < 0 ? -errno : 0;
}

int
fm__pmap_zap(struct fm_pmap *pm, uintptr_t va, size_t len)
{
	return pmap_ops(pm)->pmo_zap(pm, va, len);
}
