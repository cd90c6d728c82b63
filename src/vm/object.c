/*
 * object.c: memory objects: the object store, page states, references and
 * the calls a driver makes on an object (protect, unmap, clean, mincore).
 *
 * An object's pages live in its memfd. Page state, one byte a page, says
 * what fomap knows: resident, dirty, made read-only by the driver, busy
 * (one thread fills or writes back the page; the others wait on busycv).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vm/vm.h"

#define FM_OBJ_MAXSIZE ((size_t)1 << 44)

/* The object whose pmaplock this thread holds exclusive for pgo_put. */
__thread struct fm_object *fm__pmaplock_excl;

/*
 * obj->entries: an interval tree of the live entries' page ranges, ordered
 * by pgoff, then by address (entries may share a pgoff), each node's omax
 * the largest end page in its subtree.
 */
#define OBJ_ENTRY(n) FM_TREE_ENTRY(n, struct fm_entry, onode)

static uint64_t
entry_lo(const struct fm_tnode *n)
{
	return OBJ_ENTRY(n)->pgoff;
}

static uint64_t
entry_hi(const struct fm_tnode *n)
{
	const struct fm_entry *e = OBJ_ENTRY(n);

	return e->pgoff + ((e->end - e->start) >> FM_PAGE_SHIFT);
}

static uint64_t
entry_max(const struct fm_tnode *n)
{
	return OBJ_ENTRY(n)->omax;
}

static int
entry_cmp(const struct fm_tnode *a, const struct fm_tnode *b)
{
	return fm__tree_cmp_lo(a, b, entry_lo);
}

static void
entry_aug(struct fm_tnode *n)
{
	OBJ_ENTRY(n)->omax = fm__tree_max_below(n, entry_hi, entry_max);
}

static const struct fm_tree_ops entry_ops = {
    .cmp = entry_cmp,
    .aug = entry_aug,
    .lo = entry_lo,
    .hi = entry_hi,
    .max = entry_max,
};

#define FM_CHECK_ENTRIES 64 /* the most entries a change checks them all */

/* Check obj->entries after a change, when that is cheap. => obj->lock */
static void
entries_changed_locked(const struct fm_object *obj)
{
	if (obj->entries.n <= FM_CHECK_ENTRIES)
		fm__tree_check(&obj->entries);
}

atomic_int fm__object_ownfd;

int
fm__object_alloc(const struct fm_pagerops *ops, size_t size, void *priv, int fd,
    int flags, struct fm_object **objp)
{
	struct fm_object *obj;
	uint64_t npages = FM_PAGES(size);

	FM_ASSERT(ops != NULL, "%s: an object with no pager", __func__);
	if (size == 0 && !(flags & FM_OBJ_HOST))
		return -EINVAL;
	if (size > FM_OBJ_MAXSIZE)
		return -ENOMEM;
	obj = calloc(1, sizeof(*obj));
	if (obj == NULL)
		return -ENOMEM;
	obj->rofd = -1;
	if (!(flags & FM_OBJ_HOST)) {
		obj->pgstate = calloc(npages, 1);
		if (obj->pgstate == NULL)
			goto err;
		if ((flags & FM_OBJ_OWNFD) || atomic_load(&fm__object_ownfd) ||
		    fm__store_alloc(npages << FM_PAGE_SHIFT, &fd, &obj->rofd,
		        &obj->base) < 0) {
			/* No room in the store: a memfd of its own. */
			flags |= FM_OBJ_OWNFD;
			fd = memfd_create("fomap-object",
			    MFD_CLOEXEC | MFD_ALLOW_SEALING);
			if (fd < 0 ||
			    ftruncate(fd, (off_t)(npages << FM_PAGE_SHIFT)) <
			        0 ||
			    fcntl(fd, F_ADD_SEALS,
			        F_SEAL_SHRINK | F_SEAL_GROW) < 0)
				goto err;
		}
	}
	obj->ops = ops;
	obj->priv = priv;
	obj->flags = flags;
	obj->fd = fd;
	obj->npages = npages;
	atomic_init(&obj->refs, 1);
	obj->entries = (struct fm_tree)FM_TREE_INIT(&entry_ops);
	pthread_mutex_init(&obj->lock, NULL);
	pthread_cond_init(&obj->busycv, NULL);
	pthread_rwlockattr_t ra;
	pthread_rwlockattr_init(&ra);
	pthread_rwlockattr_setkind_np(&ra,
	    PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&obj->pmaplock, &ra);
	pthread_rwlockattr_destroy(&ra);
	*objp = obj;
	return 0;
err:
	if ((flags & FM_OBJ_OWNFD) && fd >= 0)
		close(fd);
	free(obj->pgstate);
	free(obj);
	return errno == EMFILE || errno == ENFILE ? -errno : -ENOMEM;
}

int
fm_object_create(const struct fm_pagerops *ops, size_t size, void *priv,
    struct fm_object **objp)
{
	/* No ops: the anonymous pager (pager_anon.c). */
	return fm__object_alloc(ops != NULL ? ops : &fm__anon_pagerops, size,
	    priv, -1, 0, objp);
}

int
fm_object_create_backing(size_t size, void *priv, struct fm_object **objp)
{
	return fm__object_alloc(&fm__anon_pagerops, size, priv, -1,
	    FM_OBJ_OWNFD, objp);
}

void
fm_object_ref(struct fm_object *obj)
{
	unsigned old = atomic_fetch_add(&obj->refs, 1);

	FM_ASSERT(old > 0, "object %p revived from 0 references", (void *)obj);
	fm__pgo_reference(obj);
}

void
fm_object_rele(struct fm_object *obj)
{
	unsigned old = atomic_fetch_sub(&obj->refs, 1);

	FM_ASSERT(old > 0, "object %p released below 0", (void *)obj);
	if (old != 1)
		return;
	FM_ASSERT(!fm__object_mapped_locked(obj),
	    "last reference of a mapped object");
	if (!(obj->flags & FM_OBJ_HOST))
		(void)fm_object_clean(obj, 0, obj->npages << FM_PAGE_SHIFT);
	fm__pgo_detach(obj);
	if (obj->window)
		fm__arena_unmap(obj->window, obj->npages << FM_PAGE_SHIFT);
	if (!(obj->flags & (FM_OBJ_HOST | FM_OBJ_OWNFD)))
		fm__store_free(obj->base, obj->npages << FM_PAGE_SHIFT);
	else {
		if (obj->rofd >= 0)
			close(obj->rofd);
		if (obj->fd >= 0)
			close(obj->fd);
	}
	pthread_rwlock_destroy(&obj->pmaplock);
	pthread_cond_destroy(&obj->busycv);
	pthread_mutex_destroy(&obj->lock);
	free(obj->pgstate);
	free(obj);
}

void *
fm_object_private(struct fm_object *obj)
{
	return obj->priv;
}

size_t
fm_object_size(struct fm_object *obj)
{
	return obj->npages << FM_PAGE_SHIFT;
}

void *
fm_object_window(struct fm_object *obj)
{
	struct fm_crit c;
	void *w;

	if (obj->flags & FM_OBJ_HOST) {
		errno = EINVAL;
		return NULL;
	}
	fm__crit_enter(&c);
	pthread_mutex_lock(&obj->lock);
	if (obj->window == NULL) {
		w = fm__arena_map_unlocked(obj->npages << FM_PAGE_SHIFT,
		    PROT_READ | PROT_WRITE, MAP_SHARED, obj->fd, obj->base);
		obj->window = w == MAP_FAILED ? NULL : w;
	}
	w = obj->window;
	pthread_mutex_unlock(&obj->lock);
	fm__crit_leave(&c);
	return w;
}

/*
 * fm__object_rofd: a read-only descriptor of the store, so the kernel
 * enforces a maximum protection without PROT_WRITE.
 */
/* A new open file description of obj's store, with flags. => fd or -1 */
static int
store_reopen(const struct fm_object *obj, int flags)
{
	char path[64];

	snprintf(path, sizeof path, "/proc/self/fd/%d", obj->fd);
	return open(path, flags | O_CLOEXEC);
}

int
fm__object_rofd(struct fm_object *obj)
{
	int fd;

	pthread_mutex_lock(&obj->lock);
	if (obj->rofd < 0)
		obj->rofd = store_reopen(obj, O_RDONLY);
	fd = obj->rofd;
	pthread_mutex_unlock(&obj->lock);
	return fd < 0 ? -errno : fd;
}

int
fm__object_backing_fd(struct fm_object *obj, int wr, size_t *size)
{
	int fd;

	/* Its pages are the engine's to give, or its store is shared. */
	if (!(obj->flags & FM_OBJ_OWNFD) || obj->ops != &fm__anon_pagerops)
		return -ENODEV;
	if ((fd = store_reopen(obj, wr ? O_RDWR : O_RDONLY)) < 0)
		return -errno;
	*size = (size_t)(obj->npages << FM_PAGE_SHIFT);
	return fd;
}

static int
range_pages(const struct fm_object *obj, off_t off, size_t len, uint64_t *pg,
    uint64_t *n)
{
	if (off < 0 || ((size_t)off & FM_PAGE_MASK) || len == 0)
		return -EINVAL;
	if ((uint64_t)off >= obj->npages << FM_PAGE_SHIFT ||
	    len > (obj->npages << FM_PAGE_SHIFT) - (uint64_t)off)
		return -ENXIO;
	*pg = (uint64_t)off >> FM_PAGE_SHIFT;
	*n = FM_PAGES(len);
	return 0;
}

/*
 * The pages of [off, off+len) for a call that takes obj->pmaplock
 * exclusive. => -EDEADLK from obj's own fill or write-back (the lock is
 * held there), -EINVAL for a host object or a bad range, -ENXIO past the end
 */
static int
op_range(const struct fm_object *obj, off_t off, size_t len, uint64_t *pg,
    uint64_t *n)
{
	if (fm__pmaplock_held == obj)
		return -EDEADLK;
	if (obj->flags & FM_OBJ_HOST)
		return -EINVAL;
	return range_pages(obj, off, len, pg, n);
}

static int
byte_range(const struct fm_object *obj, off_t off, size_t len)
{
	if (off < 0 || (obj->flags & FM_OBJ_HOST))
		return -EINVAL;
	if ((uint64_t)off > obj->npages << FM_PAGE_SHIFT ||
	    len > (obj->npages << FM_PAGE_SHIFT) - (uint64_t)off)
		return -ENXIO;
	return 0;
}

int
fm_object_read(struct fm_object *obj, off_t off, void *buf, size_t len)
{
	int r = byte_range(obj, off, len);
	ssize_t k;

	if (r < 0)
		return r;
	k = fm__full_pread(obj->fd, buf, len, obj->base + off);
	/* The store holds every page of the object: short is an error. */
	return k < 0 ? (int)k : (size_t)k < len ? -EIO : 0;
}

int
fm_object_write(struct fm_object *obj, off_t off, const void *buf, size_t len)
{
	int r = byte_range(obj, off, len);

	if (r == 0)
		r = fm__full_pwrite(obj->fd, buf, len, obj->base + off);
	if (r == 0 && len > 0) {
		uint64_t first = (uint64_t)off >> FM_PAGE_SHIFT;
		uint64_t last = ((uint64_t)off + len - 1) >> FM_PAGE_SHIFT;
		struct fm_crit c;

		fm__crit_enter(&c); /* obj->lock: no handler may fault here */
		fm__object_set(obj, first, (unsigned)(last - first + 1),
		    FM_PG_RESIDENT, 0);
		fm__crit_leave(&c);
	}
	return r;
}

int
fm_object_zero(struct fm_object *obj, off_t off, size_t len)
{
	int r = byte_range(obj, off, len);
	off_t at = obj->base + off, data;
	struct fm_crit c;

	if (r < 0 || len == 0)
		return r;
	if ((off | (off_t)len) & (off_t)FM_PAGE_MASK)
		return -EINVAL;
	/*
	 * Freed (if the store holds any of them: SEEK_DATA), then allocated:
	 * the kernel clears each page; nobody maps it meanwhile (a fill's
	 * pages are busy; any other is refaulted).
	 */
	data = lseek(obj->fd, at, SEEK_DATA);
	if ((data >= 0 && data < at + (off_t)len &&
	        fallocate(obj->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
	            at, (off_t)len) < 0) ||
	    fallocate(obj->fd, 0, at, (off_t)len) < 0)
		return errno == ENOSPC ? -ENOMEM : -errno;
	fm__crit_enter(&c); /* obj->lock: no handler may fault here */
	fm__object_set(obj, (uint64_t)off >> FM_PAGE_SHIFT,
	    (unsigned)(len >> FM_PAGE_SHIFT), FM_PG_RESIDENT, 0);
	fm__crit_leave(&c);
	return 0;
}

uint8_t
fm__object_state(struct fm_object *obj, uint64_t pgidx)
{
	uint8_t st;

	pthread_mutex_lock(&obj->lock);
	st = obj->pgstate[pgidx];
	pthread_mutex_unlock(&obj->lock);
	return st;
}

void
fm__object_set(struct fm_object *obj, uint64_t pgidx, unsigned n, uint8_t set,
    uint8_t clear)
{
	pthread_mutex_lock(&obj->lock);
	for (uint64_t i = pgidx; i < pgidx + n && i < obj->npages; i++)
		obj->pgstate[i] = (uint8_t)((obj->pgstate[i] & ~clear) | set);
	fm__object_assert_locked(obj, pgidx, n);
	pthread_mutex_unlock(&obj->lock);
}

/*
 * fm__object_busy: wait until page pgidx is not busy; then mark busy the run
 * of non-resident, non-busy pages from pgidx (at most max) and return its
 * length: 0 when pgidx is resident.
 * => caller holds no object lock
 */
unsigned
fm__object_busy(struct fm_object *obj, uint64_t pgidx, unsigned max)
{
	unsigned n = 0;

	pthread_mutex_lock(&obj->lock);
	while (obj->pgstate[pgidx] & FM_PGS_BUSY)
		pthread_cond_wait(&obj->busycv, &obj->lock);
	while (n < max && pgidx + n < obj->npages &&
	    !(obj->pgstate[pgidx + n] & (FM_PG_RESIDENT | FM_PGS_BUSY))) {
		obj->pgstate[pgidx + n] |= FM_PGS_BUSY;
		n++;
	}
	fm__object_assert_locked(obj, pgidx, n);
	pthread_mutex_unlock(&obj->lock);
	return n;
}

/* Unbusy n pages from pgidx, of which the first filled are now resident. */
void
fm__object_unbusy(struct fm_object *obj, uint64_t pgidx, unsigned n,
    unsigned filled)
{
	if (n == 0)
		return;
	pthread_mutex_lock(&obj->lock);
	for (unsigned i = 0; i < n; i++) {
		FM_ASSERT(obj->pgstate[pgidx + i] & FM_PGS_BUSY,
		    "page %llu of %p not busy", (unsigned long long)(pgidx + i),
		    (void *)obj);
		obj->pgstate[pgidx + i] &= (uint8_t)~FM_PGS_BUSY;
		if (i < filled)
			obj->pgstate[pgidx + i] |= FM_PG_RESIDENT;
	}
	fm__object_assert_locked(obj, pgidx, n);
	pthread_cond_broadcast(&obj->busycv);
	pthread_mutex_unlock(&obj->lock);
}

/* Wait until no page of [pg, pg+n) is busy. => obj->lock held */
static void
wait_unbusy_locked(struct fm_object *obj, uint64_t pg, uint64_t n)
{
	for (uint64_t i = pg; i < pg + n; i++)
		while (obj->pgstate[i] & FM_PGS_BUSY)
			pthread_cond_wait(&obj->busycv, &obj->lock);
}

/*
 * fm__object_entry_wp: whether a page in state st is mapped write-protected
 * in shared mappings: the driver made it read-only, the pager tracks dirty
 * pages (it has pgo_put) and the page is clean, or a write to it has been
 * refused and its thread is being told (it must not go through meanwhile).
 */
int
fm__object_entry_wp(const struct fm_object *obj, uint8_t st)
{
	if (st & (FM_PG_RDONLY | FM_PGS_REFUSING))
		return 1;
	return fm__pgo_has_put(obj) && !(st & FM_PG_DIRTY);
}

struct fm_entry *
fm__object_overlap_first(const struct fm_object *obj, uint64_t pg, uint64_t n)
{
	return OBJ_ENTRY(fm__tree_overlap_first(&obj->entries, pg, pg + n));
}

struct fm_entry *
fm__object_overlap_next(const struct fm_object *obj, const struct fm_entry *e,
    uint64_t pg, uint64_t n)
{
	return OBJ_ENTRY(
	    fm__tree_overlap_next(&obj->entries, &e->onode, pg, pg + n));
}

/*
 * e goes on obj's mappings, live. An entry that is dead (new, not live
 * yet, or killed) is on no object's list.
 */
void
fm__object_link(struct fm_object *obj, struct fm_entry *e)
{
	pthread_mutex_lock(&obj->lock);
	FM_ASSERT(e->obj == obj && e->onode.parent == NULL &&
	        obj->entries.root != &e->onode,
	    "entry %p on object %p already", (void *)e, (void *)obj);
	e->dead = 0;
	fm__tree_insert(&obj->entries, &e->onode);
	entries_changed_locked(obj);
	pthread_mutex_unlock(&obj->lock);
}

/*
 * e was split at t->start: t, its upper part, maps obj too. The installs
 * under way into e finish first (they were counted on e).
 * => the map lock held exclusive
 */
void
fm__object_split(struct fm_object *obj, struct fm_entry *e, struct fm_entry *t)
{
	pthread_mutex_lock(&obj->lock);
	while (e->installing > 0)
		pthread_cond_wait(&obj->busycv, &obj->lock);
	e->end = t->start;
	if (!e->dead) { /* a dead entry is out of the tree already */
		fm__tree_update(&obj->entries, &e->onode); /* its end shrank */
		fm__tree_insert(&obj->entries, &t->onode);
		entries_changed_locked(obj);
	}
	pthread_mutex_unlock(&obj->lock);
}

/*
 * Whether a page of e's may be writable in e: one that is mapped there is
 * RESIDENT (invariant 2) and, where dirty pages are tracked, DIRTY if it
 * is writable (invariant 4), or BUSY still (zero_install maps its pages
 * and lets e go before it makes them RESIDENT).
 * => obj->lock held, no install under way in e
 */
static int
entry_maybe_writable_locked(const struct fm_object *obj,
    const struct fm_entry *e)
{
	uint8_t need =
	    FM_PG_RESIDENT | (fm__pgo_has_put(obj) ? FM_PG_DIRTY : 0);
	uint64_t n = (e->end - e->start) >> FM_PAGE_SHIFT;

	for (uint64_t i = e->pgoff; i < e->pgoff + n && i < obj->npages; i++)
		if ((obj->pgstate[i] & need) == need ||
		    (obj->pgstate[i] & FM_PGS_BUSY))
			return 1;
	return 0;
}

/*
 * Take e off obj's mappings: it is dead, so no page is installed into it
 * any more, and once the installs under way are done its memory may go
 * (invariant 5). Its pages are write-protected first, so that no write
 * through it, until the kernel removes it, escapes a protection change
 * or a write-back that no longer sees it (invariants 3 and 4); a mapping
 * where no page can be writable needs no such system call.
 * => the map lock held exclusive; the memory not yet replaced by the
 *    caller, or not ours any more (then the protect does nothing)
 */
void
fm__object_unlink(struct fm_object *obj, struct fm_entry *e)
{
	pthread_mutex_lock(&obj->lock);
	FM_ASSERT(!e->dead && e->obj == obj &&
	        (e->onode.parent != NULL || obj->entries.root == &e->onode),
	    "entry %p not on object %p", (void *)e, (void *)obj);
	e->dead = 1;
	while (e->installing > 0)
		pthread_cond_wait(&obj->busycv, &obj->lock);
	/* A write meanwhile faults, and is retried until the memory goes. */
	if (e->pm && e->pmode == FM_PMAP_SHARED &&
	    entry_maybe_writable_locked(obj, e))
		(void)fm__fault_protect(e, e->start, e->end - e->start, 1);
	fm__tree_remove(&obj->entries, &e->onode);
	entries_changed_locked(obj);
	pthread_mutex_unlock(&obj->lock);
}

/*
 * A fork whose child's entries are not linked yet, or a move not followed
 * yet (vm.h: fm__map_behind): a page may be neither cleaned nor made
 * read-only.
 */
static int
map_behind(void)
{
	/* (a fork child follows no event: a parent's count means nothing) */
	return !fm__forked && atomic_load(&fm__map_behind) > 0;
}

/*
 * After an object operation that gave r: -EAGAIN (the map behind): let
 * the map follow (no lock held) and => 1, do it again; else 0.
 */
static int
settled(int r)
{
	if (r != -EAGAIN)
		return 0;
	fm__fault_events();
	if (map_behind())
		sched_yield(); /* (another thread follows them) */
	return 1;
}

typedef int entry_fn(struct fm_entry *e, uintptr_t va, size_t len, void *arg);

/*
 * Apply fn to the part of object pages [pg, pg+n) that each shared entry
 * maps: only the entries that map a page of it are visited.
 * => obj->pmaplock exclusive and obj->lock held
 */
static int
each_shared_locked(struct fm_object *obj, uint64_t pg, uint64_t n, entry_fn *fn,
    void *arg)
{
	int r = 0;

	for (struct fm_entry *e = fm__object_overlap_first(obj, pg, n);
	     e != NULL; e = fm__object_overlap_next(obj, e, pg, n)) {
		uint64_t epages = (e->end - e->start) >> FM_PAGE_SHIFT;
		uint64_t lo = pg > e->pgoff ? pg : e->pgoff;
		uint64_t hi =
		    pg + n < e->pgoff + epages ? pg + n : e->pgoff + epages;

		if (!(e->flags & MAP_SHARED) || e->pm == NULL || lo >= hi)
			continue;
		int k = fn(e, e->start + ((lo - e->pgoff) << FM_PAGE_SHIFT),
		    (size_t)(hi - lo) << FM_PAGE_SHIFT, arg);
		if (k < 0 && k != -ENOENT && r == 0)
			r = k;
	}
	return r;
}

static int
protect_fn(struct fm_entry *e, uintptr_t va, size_t len, void *arg)
{
	if (e->pmode != FM_PMAP_SHARED)
		return 0; /* read-only for good: the kernel sees to it */
	return fm__fault_protect(e, va, len, *(int *)arg);
}

static int
zap_fn(struct fm_entry *e, uintptr_t va, size_t len, void *arg)
{
	return fm__fault_zap(e, va, len);
}

/*
 * Make every shared mapping of [pg, pg+n) agree with the page states:
 * write-protect the runs that must be, unprotect the others.
 * => obj->pmaplock exclusive and obj->lock held
 */
static int
sync_protection_locked(struct fm_object *obj, uint64_t pg, uint64_t n)
{
	int r = 0;

	for (uint64_t i = pg; i < pg + n;) {
		int wp = fm__object_entry_wp(obj, obj->pgstate[i]);
		uint64_t j = i + 1;

		while (j < pg + n &&
		    fm__object_entry_wp(obj, obj->pgstate[j]) == wp)
			j++;
		int k = each_shared_locked(obj, i, j - i, protect_fn, &wp);
		if (k < 0 && r == 0)
			r = k;
		i = j;
	}
	return r;
}

int
fm_object_protect(struct fm_object *obj, off_t off, size_t len, int prot)
{
	struct fm_crit c;
	uint64_t pg, n;
	int r = op_range(obj, off, len, &pg, &n);

	if (r == 0 && prot != PROT_READ && prot != (PROT_READ | PROT_WRITE))
		r = -EINVAL;
	if (r < 0)
		return r;
	do {
		fm__crit_enter(&c);
		pthread_rwlock_wrlock(&obj->pmaplock);
		fm__object_gen_add(obj, pg, n, 1);
		pthread_mutex_lock(&obj->lock);
		/* A write being refused is told before it may go through. */
		for (uint64_t i = pg; (prot & PROT_WRITE) && i < pg + n; i++)
			while (obj->pgstate[i] & FM_PGS_REFUSING)
				pthread_cond_wait(&obj->busycv, &obj->lock);
		for (uint64_t i = pg; i < pg + n; i++) {
			if (prot & PROT_WRITE)
				obj->pgstate[i] &= (uint8_t)~FM_PG_RDONLY;
			else
				obj->pgstate[i] |= FM_PG_RDONLY;
		}
		r = sync_protection_locked(obj, pg, n);
		if (r == 0 && !(prot & PROT_WRITE) && map_behind())
			r = -EAGAIN;
		fm__object_assert_locked(obj, pg, n);
		pthread_mutex_unlock(&obj->lock);
		pthread_rwlock_unlock(&obj->pmaplock);
		fm__crit_leave(&c);
	} while (settled(r));
	return r;
}

void
fm__object_gen_add(struct fm_object *obj, uint64_t pg, uint64_t n, unsigned by)
{
	for (uint64_t i = 0; i < n && i < FM_OBJ_GENS; i++)
		atomic_fetch_add(&obj->gens[(pg + i) % FM_OBJ_GENS], by);
}

/*
 * Write back the dirty pages of [pg, pg+n): write-protect them everywhere
 * and mark them clean and busy, then pgo_put each run with no lock held.
 * A write that races the write-back faults and dirties the page again.
 * => obj->pmaplock exclusive held; returns with it held
 */
static int
clean_pmaplocked(struct fm_object *obj, uint64_t pg, uint64_t n)
{
	int r = 0, wp = 1;

	fm__object_gen_add(obj, pg, n, FM_GEN_CLEAN);
	pthread_mutex_lock(&obj->lock);
	wait_unbusy_locked(obj, pg, n);
	for (uint64_t i = pg; i < pg + n;) {
		uint64_t j = i;

		while (j < pg + n && j - i < UINT32_MAX &&
		    (obj->pgstate[j] & FM_PG_DIRTY))
			j++;
		if (j == i) {
			i++;
			continue;
		}
		r = each_shared_locked(obj, i, j - i, protect_fn, &wp);
		if (r == 0 && map_behind())
			r = -EAGAIN; /* (nothing of this run changed) */
		if (r < 0)
			break; /* (still dirty: not written back, not clean) */
		for (uint64_t k = i; k < j; k++)
			obj->pgstate[k] =
			    (uint8_t)((obj->pgstate[k] & ~FM_PG_DIRTY) |
			        FM_PGS_BUSY);
		pthread_mutex_unlock(&obj->lock);
		struct fm_object *held = fm__pmaplock_held;
		struct fm_object *excl = fm__pmaplock_excl;
		fm__pmaplock_held = fm__pmaplock_excl = obj;
		int k = fm__pgo_put(obj, i, (unsigned)(j - i), FM_PGO_CLEAN);
		fm__pmaplock_held = held;
		fm__pmaplock_excl = excl;
		pthread_mutex_lock(&obj->lock);
		for (uint64_t m = i; m < j; m++) {
			obj->pgstate[m] &= (uint8_t)~FM_PGS_BUSY;
			if (k < 0)
				obj->pgstate[m] |= FM_PG_DIRTY;
		}
		pthread_cond_broadcast(&obj->busycv);
		fm__object_assert_locked(obj, i, j - i);
		if (k < 0 && r == 0)
			r = -EIO;
		i = j;
	}
	pthread_mutex_unlock(&obj->lock);
	return r;
}

int
fm_object_clean(struct fm_object *obj, off_t off, size_t len)
{
	struct fm_crit c;
	uint64_t pg, n;
	int r = op_range(obj, off, len, &pg, &n);

	if (r < 0 || !fm__pgo_has_put(obj))
		return r;
	do {
		fm__crit_enter(&c);
		pthread_rwlock_wrlock(&obj->pmaplock);
		r = clean_pmaplocked(obj, pg, n);
		pthread_rwlock_unlock(&obj->pmaplock);
		fm__crit_leave(&c);
	} while (settled(r));
	return r;
}

static int unmap_once(struct fm_object *obj, uint64_t pg, uint64_t n, int how);

int
fm_object_unmap(struct fm_object *obj, off_t off, size_t len, int how)
{
	struct fm_crit c;
	uint64_t pg, n;
	int r = op_range(obj, off, len, &pg, &n);

	if (r == 0 && how != FM_UNMAP_KEEP && how != FM_UNMAP_DISCARD)
		r = -EINVAL;
	if (r < 0)
		return r;
	do {
		fm__crit_enter(&c);
		r = unmap_once(obj, pg, n, how);
		fm__crit_leave(&c);
	} while (settled(r));
	return r;
}

/* fm_object_unmap's work. => -EAGAIN: do it again (settled) */
static int
unmap_once(struct fm_object *obj, uint64_t pg, uint64_t n, int how)
{
	int r;

	pthread_rwlock_wrlock(&obj->pmaplock);
	fm__object_gen_add(obj, pg, n, FM_GEN_MAP); /* older refusals are old */
	pthread_mutex_lock(&obj->lock);
	r = each_shared_locked(obj, pg, n, zap_fn, NULL);
	if (r == 0 && map_behind())
		r = -EAGAIN; /* a moved or copied mapping not zapped yet */
	pthread_mutex_unlock(&obj->lock);
	if (r == 0 && how == FM_UNMAP_DISCARD) {
		if (fm__pgo_has_put(obj))
			r = clean_pmaplocked(obj, pg, n);
		pthread_mutex_lock(&obj->lock);
		wait_unbusy_locked(obj, pg, n);
		if (r == 0 &&
		    fallocate(obj->fd,
		        FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		        obj->base + (off_t)(pg << FM_PAGE_SHIFT),
		        (off_t)(n << FM_PAGE_SHIFT)) < 0)
			r = -errno;
		if (r == 0)
			for (uint64_t i = pg; i < pg + n; i++)
				obj->pgstate[i] &=
				    (uint8_t) ~(FM_PG_RESIDENT | FM_PG_DIRTY);
		fm__object_assert_locked(obj, pg, n);
		pthread_mutex_unlock(&obj->lock);
	}
	pthread_rwlock_unlock(&obj->pmaplock);
	return r;
}

int
fm_object_mincore(struct fm_object *obj, off_t off, size_t len,
    unsigned char *vec)
{
	struct fm_crit c;
	uint64_t pg, n;
	int r = range_pages(obj, off, len, &pg, &n);

	if (r == 0 && (obj->flags & FM_OBJ_HOST))
		r = -EINVAL;
	if (r < 0)
		return r;
	fm__crit_enter(&c);
	pthread_mutex_lock(&obj->lock);
	for (uint64_t i = 0; i < n; i++)
		vec[i] = obj->pgstate[pg + i] &
		    (FM_PG_RESIDENT | FM_PG_DIRTY | FM_PG_RDONLY);
	pthread_mutex_unlock(&obj->lock);
	fm__crit_leave(&c);
	return 0;
}
