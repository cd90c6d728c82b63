/*
 * preload.c: libfomap-preload.so, for unmodified dynamically linked
 * programs (LD_PRELOAD): their mmap of a fomap file goes through fomapd,
 * which runs the device's fo_mmap and serves the mapping's faults through
 * the process's own userfaultfd; munmap, mprotect, msync and madvise of
 * such a mapping follow it. Everything else goes straight through.
 *
 * The hot path: an anonymous mapping costs nothing more; a file's costs
 * one fstatfs (a FUSE file one fstat and one getxattr more: the
 * FM_IPC_XATTR that names fomapd's session); munmap and the others cost
 * nothing more while the process has no fomap mapping, and a table look-up
 * (signals blocked around it) when it has. That path takes no lock, calls
 * no malloc: a signal handler may take it.
 *
 * fork: the child inherits the mappings, served by fomapd through the
 * child's own userfaultfd (fmp_session_forked, _child); mremap of a fomap
 * mapping is followed (fomapd from the uffd's REMAP event, the table
 * here). docs/daemon.md says what it does and cannot do.
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "preload.h"

#define EXPORT __attribute__((visibility("default")))

#ifndef FUSE_SUPER_MAGIC
#define FUSE_SUPER_MAGIC 0x65735546
#endif

#define FMP_RANGES 4096 /* fomap mappings at once */
#define FMP_NOTFOMAP 16 /* FUSE file systems known to be another's */

/* ------------------------------------------------------------------ */
/* The next library's calls (libc's), found lazily. */

static struct {
	void *(*mmap)(void *, size_t, int, int, int, off_t);
	int (*munmap)(void *, size_t);
	int (*mprotect)(void *, size_t, int);
	int (*msync)(void *, size_t, int);
	int (*madvise)(void *, size_t, int);
	pid_t (*fork)(void);
	atomic_int state; /* 0 not yet, 1 being found, 2 found */
} real;

/*
 * fork (write) against a mapping being made through fomapd (read): see
 * fork() below.
 */
static pthread_rwlock_t fork_rw = PTHREAD_RWLOCK_INITIALIZER;

/*
 * dlsym may allocate, and so map: while it runs, this thread's and
 * every other's calls go to the kernel directly (no recursion, no lock).
 * => whether real's pointers are there
 */
static int
resolve(void)
{
	int expect = 0;

	if (atomic_load_explicit(&real.state, memory_order_acquire) == 2)
		return 1;
	if (!atomic_compare_exchange_strong(&real.state, &expect, 1))
		return 0;
	*(void **)&real.mmap = dlsym(RTLD_NEXT, "mmap");
	*(void **)&real.munmap = dlsym(RTLD_NEXT, "munmap");
	*(void **)&real.mprotect = dlsym(RTLD_NEXT, "mprotect");
	*(void **)&real.msync = dlsym(RTLD_NEXT, "msync");
	*(void **)&real.madvise = dlsym(RTLD_NEXT, "madvise");
	*(void **)&real.fork = dlsym(RTLD_NEXT, "fork");
	if (!real.mmap || !real.munmap || !real.mprotect || !real.msync ||
	    !real.madvise || !real.fork) {
		atomic_store(&real.state, 0); /* (no next library: syscalls) */
		return 0;
	}
	atomic_store_explicit(&real.state, 2, memory_order_release);
	return 1;
}

void *
fmp_real_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	if (resolve())
		return real.mmap(addr, len, prot, flags, fd, off);
	return (void *)syscall(SYS_mmap, addr, len, prot, flags, fd, off);
}

int
fmp_real_munmap(void *addr, size_t len)
{
	return resolve() ? real.munmap(addr, len)
	                 : (int)syscall(SYS_munmap, addr, len);
}

int
fmp_real_mprotect(void *addr, size_t len, int prot)
{
	return resolve() ? real.mprotect(addr, len, prot)
	                 : (int)syscall(SYS_mprotect, addr, len, prot);
}

static int
real_msync(void *addr, size_t len, int flags)
{
	return resolve() ? real.msync(addr, len, flags)
	                 : (int)syscall(SYS_msync, addr, len, flags);
}

int
fmp_real_madvise(void *addr, size_t len, int advice)
{
	return resolve() ? real.madvise(addr, len, advice)
	                 : (int)syscall(SYS_madvise, addr, len, advice);
}

void
fmp_block(sigset_t *old)
{
	sigset_t all;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, old);
}

void
fmp_unblock(const sigset_t *old)
{
	pthread_sigmask(SIG_SETMASK, old, NULL);
}

/* ------------------------------------------------------------------ */
/* The table of fomap ranges. */

struct range {
	uintptr_t start, end;
	const struct fmp_session *s;
};

/*
 * A spin lock, held with all signals blocked for a few loads and stores:
 * a handler cannot interrupt its holder, and no allocation is needed.
 */
static struct {
	atomic_flag lock;
	atomic_uint n; /* 0: the calls go straight through */
	struct range r[FMP_RANGES];
} table = {.lock = ATOMIC_FLAG_INIT};

static void
table_spin(void)
{
	while (atomic_flag_test_and_set_explicit(&table.lock,
	    memory_order_acquire))
		sched_yield();
}

static void
table_lock(sigset_t *old)
{
	fmp_block(old);
	table_spin();
}

static void
table_unlock(const sigset_t *old)
{
	atomic_flag_clear_explicit(&table.lock, memory_order_release);
	fmp_unblock(old);
}

static uintptr_t
page_up(uintptr_t x)
{
	uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);

	return (x + pg - 1) & ~(pg - 1);
}

/* Take [start, end) out of the table, splitting what straddles it. */
static void
table_remove_locked(uintptr_t start, uintptr_t end)
{
	unsigned n = atomic_load(&table.n);

	for (unsigned i = 0; i < n;) {
		struct range *r = &table.r[i];

		if (r->end <= start || r->start >= end) {
			i++;
		} else if (r->start < start && r->end > end) {
			if (n < FMP_RANGES) /* (else the tail is forgotten) */
				table.r[n++] =
				    (struct range){end, r->end, r->s};
			r->end = start;
			i++;
		} else if (r->start < start) {
			r->end = start;
			i++;
		} else if (r->end > end) {
			r->start = end;
			i++;
		} else {
			*r = table.r[--n];
		}
	}
	atomic_store(&table.n, n);
}

static void
table_remove(void *addr, size_t len)
{
	sigset_t old;

	if (atomic_load(&table.n) == 0)
		return;
	table_lock(&old);
	table_remove_locked((uintptr_t)addr, page_up((uintptr_t)addr + len));
	table_unlock(&old);
}

static int
table_add(void *addr, size_t len, const struct fmp_session *s)
{
	uintptr_t start = (uintptr_t)addr, end = page_up(start + len);
	sigset_t old;
	unsigned n;
	int r = 0;

	table_lock(&old);
	table_remove_locked(start, end);
	if ((n = atomic_load(&table.n)) < FMP_RANGES) {
		table.r[n] = (struct range){start, end, s};
		atomic_store(&table.n, n + 1);
	} else {
		r = -ENOMEM;
	}
	table_unlock(&old);
	return r;
}

/* The session of the first fomap range in [addr, addr+len), or NULL. */
static struct fmp_session *
table_find(const void *addr, size_t len)
{
	uintptr_t start = (uintptr_t)addr, end = page_up(start + len);
	const struct fmp_session *s = NULL;
	sigset_t old;

	if (atomic_load(&table.n) == 0)
		return NULL;
	table_lock(&old);
	for (unsigned i = 0; i < atomic_load(&table.n) && !s; i++)
		if (table.r[i].start < end && table.r[i].end > start)
			s = table.r[i].s;
	table_unlock(&old);
	return (struct fmp_session *)s;
}

void
fmp_table_each(const struct fmp_session *s,
    void (*fn)(uintptr_t start, uintptr_t end, void *arg), void *arg)
{
	sigset_t old;

	table_lock(&old);
	for (unsigned i = 0; i < atomic_load(&table.n); i++)
		if (table.r[i].s == s)
			fn(table.r[i].start, table.r[i].end, arg);
	table_unlock(&old);
}

int
fmp_table_has(const struct fmp_session *s)
{
	sigset_t old;
	int has = 0;

	table_lock(&old);
	for (unsigned i = 0; i < atomic_load(&table.n) && !has; i++)
		has = table.r[i].s == s;
	table_unlock(&old);
	return has;
}

int
fmp_table_covers(const struct fmp_session *s, uintptr_t start, uintptr_t end)
{
	sigset_t old;
	int more = 1;

	/* (ranges do not overlap: walk on from each that holds start) */
	table_lock(&old);
	while (more && start < end) {
		more = 0;
		for (unsigned i = 0; i < atomic_load(&table.n); i++)
			if (table.r[i].s == s && table.r[i].start <= start &&
			    table.r[i].end > start) {
				start = table.r[i].end;
				more = 1;
				break;
			}
	}
	table_unlock(&old);
	return start >= end;
}

/* ------------------------------------------------------------------ */
/* Which descriptors are fomap's. */

/* FUSE file systems (by device) that answered: no xattrs at all. */
static _Atomic dev_t notfomap[FMP_NOTFOMAP];
static atomic_uint notfomap_next;

static int
known_not_fomap(dev_t dev)
{
	for (int i = 0; i < FMP_NOTFOMAP; i++)
		if (atomic_load(&notfomap[i]) == dev)
			return 1;
	return 0;
}

/*
 * Whether fd is a file of a fomapd mount: *name its session socket's.
 * Only a file system with no xattrs is remembered as another's (fomapd
 * answers ENODATA for its own files that are not devices); a device
 * number reused by a later mount may make it wrongly so.
 */
static int
fomap_file(int fd, char name[FM_IPC_NAME_MAX])
{
	struct statfs sf;
	struct stat st;
	ssize_t n;

	if (fstatfs(fd, &sf) < 0 || sf.f_type != FUSE_SUPER_MAGIC)
		return 0;
	if (fstatat(fd, "", &st, AT_EMPTY_PATH) < 0 || !S_ISREG(st.st_mode) ||
	    known_not_fomap(st.st_dev))
		return 0;
	n = fgetxattr(fd, FM_IPC_XATTR, name, FM_IPC_NAME_MAX - 1);
	if (n <= 0) {
		if (n < 0 && (errno == ENOTSUP || errno == ENOSYS))
			atomic_store(
			    &notfomap[atomic_fetch_add(&notfomap_next, 1) %
			        FMP_NOTFOMAP],
			    st.st_dev);
		return 0;
	}
	name[n] = 0;
	return 1;
}

/* ------------------------------------------------------------------ */
/* The calls. */

/*
 * The answers that mean "no engine here for this process": the plain
 * mmap is then the FUSE front's, which maps a resident device by
 * passthrough and refuses (ENODEV) one that needs the engine.
 */
static int
no_engine(int err)
{
	return err == -ENOSYS || err == -ECONNREFUSED || err == -ENOENT;
}

#define FMP_FLAGS_OK                                                  \
	(MAP_TYPE | MAP_FIXED | MAP_FIXED_NOREPLACE | MAP_NORESERVE | \
	    MAP_POPULATE)

/* The flags fomapd takes: the sharing alone. => them, or -EINVAL */
static int
sharing_of(int flags)
{
	int type = flags & MAP_TYPE;

	if (flags & ~FMP_FLAGS_OK)
		return -EINVAL;
	if (type == MAP_SHARED_VALIDATE)
		type = MAP_SHARED; /* (every flag it has is known) */
	return type == MAP_SHARED || type == MAP_PRIVATE ? type : -EINVAL;
}

/* Give the token of a prepared mmap up (the client's own mmap failed). */
static void
give_up(struct fmp_session *s, uint64_t token)
{
	struct fm_ipc_msg m = {.op = FM_IPC_ATTACH, .a = {token, 0}};

	(void)fmp_request(s, &m, -1, NULL);
}

/*
 * The fomap half of mmap: fomapd's MMAP, the store mapped PROT_NONE where
 * asked, ATTACH, then the protection asked. On error nothing is mapped.
 * => 0 with *pp; -ENOSYS (no engine: map it plainly); -errno
 */
static int
fomap_mmap(struct fmp_session *s, void *addr, size_t len, int prot, int flags,
    int type, int fd, off_t off, void **pp)
{
	struct fm_ipc_msg m = {.op = FM_IPC_MMAP,
	    .a = {len, (uint64_t)prot, (uint64_t)type, (uint64_t)off}};
	int r, storefd = -1,
	       keep = flags & (MAP_FIXED | MAP_FIXED_NOREPLACE | MAP_NORESERVE);
	uint64_t token;
	void *p;

	if ((r = fmp_request(s, &m, fd, &storefd)) < 0)
		return r;
	token = m.a[0];
	if (storefd < 0) {
		give_up(s, token);
		return -EPROTO;
	}
	/*
	 * A shared mapping of an object this open may not write is a private
	 * one of its read-only store (fomapd refuses it PROT_WRITE).
	 */
	if (type == MAP_SHARED && !(m.a[2] & PROT_WRITE))
		type = MAP_PRIVATE;
	p = fmp_real_mmap(addr, len, PROT_NONE, type | keep, storefd,
	    (off_t)m.a[1]);
	r = p == MAP_FAILED ? -errno : 0;
	close(storefd);
	if (r < 0) {
		give_up(s, token);
		return r;
	}
	/* In the table before fomapd serves it: its zaps are checked there. */
	if ((r = table_add(p, len, s)) < 0) {
		(void)fmp_real_munmap(p, len);
		give_up(s, token);
		return r;
	}
	m = (struct fm_ipc_msg){.op = FM_IPC_ATTACH,
	    .a = {token, (uint64_t)(uintptr_t)p}};
	if ((r = fmp_request(s, &m, -1, NULL)) == 0 && prot != PROT_NONE &&
	    fmp_real_mprotect(p, len, prot) < 0)
		r = -errno;
	if (r < 0) {
		table_remove(p, len);
		(void)fmp_real_munmap(p, len); /* (fomapd sees it: UNMAP) */
		return r;
	}
	*pp = p;
	return 0;
}

/* mmap of a fomap file: through fomapd, or plainly where it has no engine. */
static void *
mmap_fomap(void *addr, size_t len, int prot, int flags, int fd, off_t off,
    const char *name)
{
	struct fmp_session *s;
	int type = sharing_of(flags), r;
	void *p = MAP_FAILED;

	if (type < 0 || len == 0 || (off & (sysconf(_SC_PAGESIZE) - 1))) {
		errno = EINVAL;
		return MAP_FAILED;
	}
	r = fmp_session_get(name, fd, &s);
	if (r == 0) {
		sigset_t old;

		/*
		 * No fork between the store's mapping and its attach (the
		 * child would inherit it unregistered): forks wait.
		 */
		fmp_block(&old);
		pthread_rwlock_rdlock(&fork_rw);
		r = fomap_mmap(s, addr, len, prot, flags, type, fd, off, &p);
		pthread_rwlock_unlock(&fork_rw);
		fmp_unblock(&old);
	}
	if (r == 0)
		return p;
	if (no_engine(r)) {
		p = fmp_real_mmap(addr, len, prot, flags, fd, off);
		if (p != MAP_FAILED && (flags & MAP_FIXED))
			table_remove(p, len);
		return p;
	}
	errno = -r;
	return MAP_FAILED;
}

EXPORT void *
mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	char name[FM_IPC_NAME_MAX];
	int saved = errno;
	void *p;

	if (!(flags & MAP_ANONYMOUS) && fd >= 0 && fomap_file(fd, name))
		return mmap_fomap(addr, len, prot, flags, fd, off, name);
	errno = saved;
	p = fmp_real_mmap(addr, len, prot, flags, fd, off);
	/* (a fomap range it replaced is gone: fomapd saw its UNMAP) */
	if (p != MAP_FAILED && (flags & MAP_FIXED))
		table_remove(p, len);
	return p;
}

EXPORT void *
mmap64(void *addr, size_t len, int prot, int flags, int fd, off64_t off)
{
	return mmap(addr, len, prot, flags, fd, (off_t)off);
}

EXPORT int
munmap(void *addr, size_t len)
{
	int r = fmp_real_munmap(addr, len);

	/* fomapd learns of it from the kernel (the uffd's UNMAP event). */
	if (r == 0)
		table_remove(addr, len);
	return r;
}

/*
 * mremap of a fomap mapping: the kernel moves it (fomapd learns of it from
 * the uffd's REMAP event), and the table follows. A part it grew has no
 * object behind it: an access there is SIGBUS, as past a device's end.
 */
EXPORT void *
mremap(void *old, size_t oldlen, size_t len, int flags, ...)
{
	struct fmp_session *s = table_find(old, oldlen);
	void *want = NULL, *p;
	va_list ap;

	if (flags & MREMAP_FIXED) {
		va_start(ap, flags);
		want = va_arg(ap, void *);
		va_end(ap);
	}
	p = (void *)syscall(SYS_mremap, old, oldlen, len, flags, want);
	if (p == MAP_FAILED || s == NULL)
		return p;
	if (!(flags & MREMAP_DONTUNMAP))
		table_remove(old, oldlen);
	/* (a full table: the moved range's calls go to the kernel alone) */
	(void)table_add(p, len, s);
	return p;
}

/* A fomap range's request: => the daemon's answer, errno set on error. */
static int
ask(struct fmp_session *s, int op, const void *addr, size_t len, int x)
{
	struct fm_ipc_msg m = {.op = (uint32_t)op,
	    .a = {(uint64_t)(uintptr_t)addr, len, (uint64_t)x}};
	int r = fmp_request(s, &m, -1, NULL);

	if (r < 0) {
		errno = -r;
		return -1;
	}
	return 0;
}

EXPORT int
mprotect(void *addr, size_t len, int prot)
{
	struct fmp_session *s = table_find(addr, len);
	struct fm_ipc_msg m = {.op = FM_IPC_MPROTECT,
	    .a = {(uint64_t)(uintptr_t)addr, len, (uint64_t)prot}};
	int r, err;

	if (s == NULL)
		return fmp_real_mprotect(addr, len, prot);
	/* fomapd checks it (the maximum protection) and holds refusals. */
	if ((r = fmp_request(s, &m, -1, NULL)) < 0) {
		errno = -r;
		return -1;
	}
	r = fmp_real_mprotect(addr, len, prot);
	err = errno;
	m = (struct fm_ipc_msg){.op = FM_IPC_MPROTECT,
	    .a = {(uint64_t)(uintptr_t)addr, len, (uint64_t)prot, 1, m.a[0],
	        r == 0}};
	(void)fmp_request(s, &m, -1, NULL);
	errno = err;
	return r;
}

EXPORT int
msync(void *addr, size_t len, int flags)
{
	struct fmp_session *s = table_find(addr, len);

	if (s)
		return ask(s, FM_IPC_MSYNC, addr, len, flags);
	return real_msync(addr, len, flags);
}

/* Advice that sets a flag of the kernel's mapping, not its pages'. */
static int
vma_advice(int advice)
{
	switch (advice) {
	case MADV_DONTFORK:
	case MADV_DOFORK:
	case MADV_DONTDUMP:
	case MADV_DODUMP:
	case MADV_WIPEONFORK:
	case MADV_KEEPONFORK:
	case MADV_HUGEPAGE:
	case MADV_NOHUGEPAGE:
	case MADV_MERGEABLE:
	case MADV_UNMERGEABLE:
		return 1;
	default:
		return 0;
	}
}

EXPORT int
madvise(void *addr, size_t len, int advice)
{
	struct fmp_session *s = table_find(addr, len);

	if (s == NULL)
		return fmp_real_madvise(addr, len, advice);
	if (ask(s, FM_IPC_MADVISE, addr, len, advice) < 0)
		return -1;
	return vma_advice(advice) ? fmp_real_madvise(addr, len, advice) : 0;
}

/*
 * fstat of a fomap device file that fomapd gives no size (its opens have
 * no passthrough backing: gem, guard, fb, null; DESIGN.md wants st_size
 * to cover the mmap space, and fomapd's GETATTR has it only for a
 * passthrough open) says what the file stands for: a character device.
 * Else a program that checks a regular file's size before mapping it
 * (python's mmap.mmap: "mmap length is greater than file size") cannot
 * map a device the engine serves, at any offset. A huge st_size instead
 * would make readers size their buffers by it (python's read()). stat by
 * path is not changed. Costs a fstatfs (and a getxattr on FUSE) for an
 * empty regular file of a file system with no device.
 */
static void
as_device(int fd, mode_t *mode, off_t size, dev_t dev)
{
	char name[FM_IPC_NAME_MAX];
	int saved = errno;

	if (S_ISREG(*mode) && size == 0 && major(dev) == 0 &&
	    fomap_file(fd, name))
		*mode = (*mode & ~(mode_t)S_IFMT) | S_IFCHR;
	errno = saved;
}

EXPORT int
fstat(int fd, struct stat *st)
{
	int r = fstatat(fd, "", st, AT_EMPTY_PATH);

	if (r == 0)
		as_device(fd, &st->st_mode, st->st_size, st->st_dev);
	return r;
}

EXPORT int
fstat64(int fd, struct stat64 *st)
{
	int r = fstatat64(fd, "", st, AT_EMPTY_PATH);

	if (r == 0)
		as_device(fd, &st->st_mode, (off_t)st->st_size, st->st_dev);
	return r;
}

/* ------------------------------------------------------------------ */
/* fork. */

/*
 * fork: one at a time in the process (so that fomapd can tell its forks
 * apart: FORKED names the one it has not named yet), and never while a
 * mapping is being made (fork_rw). The parent tells
 * each fomapd it has a session with the child's pid; the child opens its
 * own sessions (HELLO_CHILD), through which fomapd serves the mappings it
 * inherited (the kernel's fork event gave fomapd its userfaultfd) and
 * its own later ones.
 */

EXPORT pid_t
fork(void)
{
	sigset_t old;
	pid_t pid;
	int err;

	if (!resolve())
		return (pid_t)syscall(SYS_fork);
	fmp_block(&old);
	pthread_rwlock_wrlock(&fork_rw);
	pid = real.fork();
	err = errno;
	if (pid == 0) {
		pthread_rwlock_init(&fork_rw, NULL);
		fmp_session_child();
	} else {
		if (pid > 0)
			fmp_session_forked(pid);
		pthread_rwlock_unlock(&fork_rw);
	}
	fmp_unblock(&old);
	errno = err;
	return pid;
}

static sigset_t fork_mask;

/* Signals blocked first: no handler may wait for what the fork holds. */
static void
prefork(void)
{
	fmp_block(&fork_mask);
	fmp_session_prefork();
	table_spin(); /* no table half changed in the child */
}

static void
postfork_parent(void)
{
	atomic_flag_clear_explicit(&table.lock, memory_order_release);
	fmp_session_postfork(0);
	fmp_unblock(&fork_mask);
}

static void
postfork_child(void)
{
	atomic_flag_clear(&table.lock);
	fmp_session_postfork(1);
	fmp_unblock(&fork_mask);
}

__attribute__((constructor)) static void
preload_init(void)
{
	(void)resolve();
	pthread_atfork(prefork, postfork_parent, postfork_child);
}
