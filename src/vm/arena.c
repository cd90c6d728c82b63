/*
 * arena.c: fomap's own resources, kept where the program cannot reach
 * them and few whatever the number of objects and mappings:
 *
 * - The arena, where fomap's own memory lives (object windows, the
 *   engine's thread stacks). A program may free a range and map its own
 *   memory there with MAP_FIXED a moment later; anything fomap mapped at
 *   an address of the kernel's choosing in between could land in that hole
 *   and be replaced. So fomap's memory is placed inside one reservation of
 *   its own (PROT_NONE, no memory behind it), made once, far from where the
 *   kernel places mappings, that the program never had and never frees.
 * - The object store: one memfd (and one read-only descriptor of it) that
 *   holds the pages of every object, each object a range of it, so that
 *   fomap holds two descriptors whatever the number of objects.
 *
 * Both hand out ranges from a pool (first fit, adjacent ranges merged).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vm/vm.h"

#define FM_ARENA_SIZE ((uint64_t)1 << 44) /* 16 TiB of addresses */
#define FM_ARENA_HINT ((uintptr_t)0x500000000000) /* 80 TiB */
#define FM_STORE_SIZE ((uint64_t)1 << 52) /* 4 PiB of offsets */
#define FM_POOL_FREE 1024 /* free ranges a pool keeps at most */

struct pool {
	pthread_mutex_t lock;
	int tried; /* set up (or failed to) */
	uint64_t base, end;
	struct range {
		uint64_t start, end;
	} free[FM_POOL_FREE];
	unsigned nfree;
};

/* => the start of len bytes of p, or UINT64_MAX. => p->lock held */
static uint64_t
pool_take_locked(struct pool *p, uint64_t len)
{
	for (unsigned i = 0; i < p->nfree; i++) {
		struct range *r = &p->free[i];
		uint64_t at = r->start;

		if (r->end - r->start < len)
			continue;
		r->start += len;
		if (r->start == r->end)
			p->free[i] = p->free[--p->nfree];
		return at;
	}
	return UINT64_MAX;
}

/*
 * Give [s, s+len) back to p. => 0, or -ENOMEM when p keeps too many
 * ranges (the range is then lost to the pool). => p->lock held
 */
static int
pool_give_locked(struct pool *p, uint64_t s, uint64_t len)
{
	uint64_t e = s + len;
	unsigned i, j = p->nfree;

	for (i = 0; i < p->nfree; i++) {
		struct range *r = &p->free[i];

		if (r->end == s || r->start == e) {
			r->start = r->start < s ? r->start : s;
			r->end = r->end > e ? r->end : e;
			break;
		}
	}
	if (i == p->nfree) {
		if (p->nfree == FM_POOL_FREE)
			return -ENOMEM;
		p->free[p->nfree++] = (struct range){s, e};
		return 0;
	}
	/* The range merged into free[i]: it may now touch another one. */
	for (j = 0; j < p->nfree; j++) {
		struct range *r = &p->free[j];

		if (j != i &&
		    (r->end == p->free[i].start ||
		        r->start == p->free[i].end)) {
			p->free[i].start = r->start < p->free[i].start
			    ? r->start
			    : p->free[i].start;
			p->free[i].end =
			    r->end > p->free[i].end ? r->end : p->free[i].end;
			p->free[j] = p->free[--p->nfree];
			break;
		}
	}
	return 0;
}

static void
pool_init_locked(struct pool *p, uint64_t base, uint64_t size)
{
	p->base = base;
	p->end = base + size;
	p->free[0] = (struct range){base, base + size};
	p->nfree = 1;
}

static struct pool arena = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void
arena_reserve_locked(void)
{
	int fl = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
	void *p;

	arena.tried = 1;
	p = mmap((void *)FM_ARENA_HINT, FM_ARENA_SIZE, PROT_NONE,
	    fl | MAP_FIXED_NOREPLACE, -1, 0);
	if (p == MAP_FAILED)
		p = mmap(NULL, FM_ARENA_SIZE, PROT_NONE, fl, -1, 0);
	if (p == MAP_FAILED)
		return; /* RLIMIT_AS: fomap's memory goes where the kernel says */
	(void)madvise(p, FM_ARENA_SIZE, MADV_DONTFORK);
	pool_init_locked(&arena, (uintptr_t)p, FM_ARENA_SIZE);
}

/*
 * fm__arena_take: len bytes of the arena, still reserved (PROT_NONE), for
 * the caller to map over with MAP_FIXED; fm__arena_unmap or, once what
 * was mapped there has been moved away, fm__arena_moved gives them back.
 * => the address, or NULL when the arena has no room (or there is none)
 */
void *
fm__arena_take(size_t len)
{
	uint64_t at;

	len = FM_PAGES(len) << FM_PAGE_SHIFT;
	pthread_mutex_lock(&arena.lock);
	if (!arena.tried)
		arena_reserve_locked();
	at = pool_take_locked(&arena, len);
	pthread_mutex_unlock(&arena.lock);
	return at == UINT64_MAX ? NULL : (void *)(uintptr_t)at;
}

/*
 * fm__arena_map: mmap(2) of fomap's own memory (prot, flags, fd, off as
 * mmap's; never MAP_FIXED), placed in the arena when there is room.
 * => the address, or MAP_FAILED with errno
 */
void *
fm__arena_map(size_t len, int prot, int flags, int fd, off_t off)
{
	void *at = fm__arena_take(len), *p;

	if (at == NULL)
		return mmap(NULL, len, prot, flags, fd, off);
	p = mmap(at, len, prot, flags | MAP_FIXED, fd, off);
	if (p == MAP_FAILED) {
		int err = errno;

		fm__arena_unmap(at, len);
		errno = err;
	}
	return p;
}

static int
in_arena(uint64_t s, size_t len)
{
	return arena.base != 0 && s >= arena.base && s + len <= arena.end;
}

static void
arena_give(uint64_t s, size_t len)
{
	pthread_mutex_lock(&arena.lock);
	(void)pool_give_locked(&arena, s, len);
	pthread_mutex_unlock(&arena.lock);
}

/*
 * fm__arena_map_unlocked: fm__arena_map of a view of the store that the
 * program's mlockall(MCL_FUTURE) neither fills nor locks: made
 * inaccessible (the kernel fills an accessible new mapping inside
 * mmap(2), behind the pager), unlocked, then given prot.
 * => the address, or MAP_FAILED with errno
 */
void *
fm__arena_map_unlocked(size_t len, int prot, int flags, int fd, off_t off)
{
	void *p = fm__arena_map(len, PROT_NONE, flags, fd, off);

	if (p != MAP_FAILED &&
	    (munlock(p, len) < 0 ||
	        (prot != PROT_NONE && mprotect(p, len, prot) < 0))) {
		int err = errno;

		fm__arena_unmap(p, len);
		errno = err;
		p = MAP_FAILED;
	}
	return p;
}

/*
 * fm__arena_unmap: unmap what fm__arena_map mapped: in the arena, the
 * range is reserved again, its memory gone.
 */
void
fm__arena_unmap(void *addr, size_t len)
{
	uint64_t s = (uintptr_t)addr;

	len = FM_PAGES(len) << FM_PAGE_SHIFT;
	if (!in_arena(s, len)) {
		munmap(addr, len);
		return;
	}
	(void)mmap(addr, len, PROT_NONE,
	    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
	arena_give(s, len);
}

/*
 * fm__arena_moved: what was mapped at [addr, addr+len) of the arena has
 * been moved away (mremap) or unmapped, leaving a hole: reserve it again,
 * unless the kernel has put another mapping there meanwhile, or the old
 * reservation is still there (never replaced: the range is then lost to
 * the arena).
 */
void
fm__arena_moved(void *addr, size_t len)
{
	uint64_t s = (uintptr_t)addr;
	void *p;

	len = FM_PAGES(len) << FM_PAGE_SHIFT;
	if (!in_arena(s, len))
		return;
	p = mmap(addr, len, PROT_NONE,
	    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE,
	    -1, 0);
	if (p == addr)
		arena_give(s, len);
	else if (p != MAP_FAILED)
		munmap(p, len); /* an old kernel's hint: not ours */
}

static struct {
	struct pool pool;
	int fd, rofd;
} store = {.pool = {.lock = PTHREAD_MUTEX_INITIALIZER}, .fd = -1, .rofd = -1};

static void
store_open_locked(void)
{
	char path[64];
	int fd = memfd_create("fomap-store", MFD_CLOEXEC), ro = -1;

	store.pool.tried = 1;
	if (fd >= 0 && ftruncate(fd, (off_t)FM_STORE_SIZE) == 0) {
		snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
		ro = open(path, O_RDONLY | O_CLOEXEC);
	}
	if (ro < 0) {
		if (fd >= 0)
			close(fd);
		store.pool.tried = 0; /* try again next time (EMFILE) */
		return;
	}
	store.fd = fd;
	store.rofd = ro;
	pool_init_locked(&store.pool, 0, FM_STORE_SIZE);
}

/*
 * fm__store_alloc: room for size bytes in the object store.
 * => 0 with the store's descriptor, its read-only one and the offset;
 *    or -errno (no store here: the caller makes a memfd of its own)
 */
int
fm__store_alloc(uint64_t size, int *fd, int *rofd, off_t *base)
{
	uint64_t at = UINT64_MAX;

	size = FM_PAGES(size) << FM_PAGE_SHIFT;
	pthread_mutex_lock(&store.pool.lock);
	if (!store.pool.tried)
		store_open_locked();
	if (store.fd >= 0)
		at = pool_take_locked(&store.pool, size);
	pthread_mutex_unlock(&store.pool.lock);
	if (at == UINT64_MAX)
		return -ENOSPC;
	*fd = store.fd;
	*rofd = store.rofd;
	*base = (off_t)at;
	return 0;
}

/* fm__store_free: drop the pages of [base, base+size) and free the room. */
void
fm__store_free(off_t base, uint64_t size)
{
	size = FM_PAGES(size) << FM_PAGE_SHIFT;
	(void)fallocate(store.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
	    base, (off_t)size);
	pthread_mutex_lock(&store.pool.lock);
	(void)pool_give_locked(&store.pool, (uint64_t)base, size);
	pthread_mutex_unlock(&store.pool.lock);
}

/*
 * fm__page_size_check: whether the kernel's pages are FM_PAGE_SIZE bytes,
 * as every page index fomap hands a pager, every range it gives
 * userfaultfd and every offset in the store assume. The engine must not
 * start where they are not. Prints nothing: fm__page_size_why says why.
 * => 0, or -ENOSYS
 */
int
fm__page_size_check(void)
{
	return fm__page_size_why() == NULL ? 0 : -ENOSYS;
}

/* => NULL when the kernel's pages are FM_PAGE_SIZE bytes, else why not */
const char *
fm__page_size_why(void)
{
	static __thread char why[96];
	long ps = sysconf(_SC_PAGESIZE);

	if (ps == (long)FM_PAGE_SIZE)
		return NULL;
	snprintf(why, sizeof why,
	    "the kernel's page size is %ld bytes; fomap needs %zu "
	    "(FM_PAGE_SIZE)",
	    ps, FM_PAGE_SIZE);
	return why;
}
