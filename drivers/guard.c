/*
 * guard.c: the guard device, a plain (non-cloning) device whose pager
 * manages its mappings' protection, counts faults by kind, and removes
 * mappings on a trip wire or on request (include/fomap/guard.h).
 *
 * This is David Young's driver from the 2013 thread: no per-open state, so
 * no fo_mmap of its own; the cdevsw's pager hook (d_mmap_single, his
 * d_get_pagerops) hands fomap a memory object with the driver's pagerops:
 *
 *   guard_mmap      d_mmap_single: the region's object (MAP_SHARED only)
 *   guard_fault     pgo_fault: refuse revoked pages, count the fault,
 *                   zero-fill, write-protect wired pages, choose
 *                   fault-around
 *   guard_write     pgo_write: a write to a write-protected page: refuse
 *                   or record it (read-only pages), feed the trip wires
 *   guard_detach    pgo_detach: free the region
 *   guard_ioctl     d_ioctl: setup, protect, remove, restore, arm, stats
 *
 * The driver keeps its own per-page state (read-only and its policy,
 * revoked, recorded) beside fomap's. It changes that state first, under
 * region.lock, and then asks fomap to apply it to the mappings
 * (fm_object_protect, fm_object_unmap) with no lock held, so a fault that
 * races the change sees the new state whenever it reaches the hook again.
 *
 * Removal from a hook: guard_fault runs with the object's pmaplock held
 * shared, so it must not remove or protect (fomap answers -EDEADLK); a
 * wire therefore counts writes in guard_write, which may. Pages under an
 * armed wire are mapped write-protected so each first write reaches it.
 *
 * Revocation drops the pages (FM_UNMAP_DISCARD): fomap then has nothing
 * resident to map, so every later access reaches guard_fault, which
 * refuses it; a revoked range comes back zero-filled.
 *
 * Lock order: guard.lock, then region.lock.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <fomap/driver.h>
#include <fomap/guard.h>

/* Page state of the driver; RDONLY, REVOKED, RECORDED as in guard.h. */
#define G_RDONLY FM_GUARD_PG_RDONLY
#define G_REVOKED FM_GUARD_PG_REVOKED
#define G_RECORDED FM_GUARD_PG_RECORDED
#define G_RECORD 0x40 /* read-only policy: record (else refuse) */

struct wire {
	uint64_t pg, n; /* the range, in pages */
	uint32_t left; /* writes still let through */
	uint32_t policy;
	int armed;
};

/* A removal decided under the lock, done after it. */
struct removal {
	uint64_t pg, n;
	uint32_t policy;
};

struct region {
	struct fm_object *obj;
	uint64_t npages;
	pthread_mutex_t lock;
	uint8_t *pg; /* G_* per page */
	struct wire wires[FM_GUARD_MAXWIRES];
	struct fm_guard_stats st;
};

static struct {
	pthread_mutex_t lock;
	struct region *cur; /* what a new mapping gets */
} guard = {.lock = PTHREAD_MUTEX_INITIALIZER};

static int
good_policy(uint32_t p, uint32_t a, uint32_t b)
{
	return p == a || p == b;
}

/* A byte range of the region in pages. => -EINVAL, -ENXIO */
static int
range_pages(const struct region *rg, uint64_t off, uint64_t len, uint64_t *pg,
    uint64_t *n)
{
	if (off % FM_PAGE_SIZE != 0 || len == 0)
		return -EINVAL;
	if (off >= rg->npages * FM_PAGE_SIZE ||
	    len > rg->npages * FM_PAGE_SIZE - off)
		return -ENXIO;
	*pg = off / FM_PAGE_SIZE;
	*n = (len + FM_PAGE_SIZE - 1) / FM_PAGE_SIZE;
	return 0;
}

/*
 * Remove the mappings of pages [pg, pg+n), but for page xpg (the page a
 * write is going through), or all of them when xpg is past the range.
 * => no lock held
 */
static void
remove_pages(struct fm_object *obj, uint64_t pg, uint64_t n, int how,
    uint64_t xpg)
{
	if (xpg < pg || xpg >= pg + n) {
		(void)fm_object_unmap(obj, (off_t)(pg * FM_PAGE_SIZE),
		    n * FM_PAGE_SIZE, how);
		return;
	}
	if (xpg > pg)
		(void)fm_object_unmap(obj, (off_t)(pg * FM_PAGE_SIZE),
		    (xpg - pg) * FM_PAGE_SIZE, how);
	if (xpg + 1 < pg + n)
		(void)fm_object_unmap(obj, (off_t)((xpg + 1) * FM_PAGE_SIZE),
		    (pg + n - xpg - 1) * FM_PAGE_SIZE, how);
}

/*
 * A write to page pg: count it against every armed wire covering pg; a
 * wire with nothing left trips: it is disarmed and its range is removed
 * (by the caller, from rm) and, under FM_GUARD_REVOKE, revoked at once.
 * => region.lock held; returns the number of removals in rm
 */
static int
wires_write_locked(struct region *rg, uint64_t pg, struct removal *rm)
{
	int k = 0;

	for (int i = 0; i < FM_GUARD_MAXWIRES; i++) {
		struct wire *w = &rg->wires[i];

		if (!w->armed || pg < w->pg || pg >= w->pg + w->n)
			continue;
		if (w->left > 0) {
			w->left--;
			continue;
		}
		w->armed = 0;
		rg->st.trips++;
		rg->st.removals++;
		if (w->policy == FM_GUARD_REVOKE)
			for (uint64_t j = w->pg; j < w->pg + w->n; j++)
				rg->pg[j] |= G_REVOKED;
		rm[k++] = (struct removal){w->pg, w->n, w->policy};
	}
	return k;
}

/* => region.lock held */
static int
wired_locked(const struct region *rg, uint64_t pg)
{
	for (int i = 0; i < FM_GUARD_MAXWIRES; i++)
		if (rg->wires[i].armed && pg >= rg->wires[i].pg &&
		    pg < rg->wires[i].pg + rg->wires[i].n)
			return 1;
	return 0;
}

/*
 * pgo_fault: every fault on the region. Pages under an armed wire are
 * mapped write-protected, so that each first write to one comes to
 * guard_write, where the wires count writes.
 * => runs in an engine thread that holds the object's pmaplock shared (so
 *    no fm_object_unmap/protect of this object from here: -EDEADLK)
 * => -EACCES (SIGBUS): the page is revoked
 */
static int
guard_fault(struct fm_fault *f)
{
	struct region *rg = fm_object_private(f->obj);
	uint64_t pg = f->pgidx;
	int wr = f->access == PROT_WRITE, wired;
	unsigned around = 1;

	pthread_mutex_lock(&rg->lock);
	if (rg->pg[pg] & G_REVOKED) {
		rg->st.revoked++;
		pthread_mutex_unlock(&rg->lock);
		return -EACCES;
	}
	if (f->npages > 0)
		wr ? rg->st.write_faults++ : rg->st.read_faults++;
	else
		wr ? rg->st.write_minor++ : rg->st.read_minor++;
	/* Map around only pages like this one: not revoked, as wired. */
	wired = wired_locked(rg, pg);
	while (around < f->around && pg + around < rg->npages &&
	    !(rg->pg[pg + around] & G_REVOKED) &&
	    wired_locked(rg, pg + around) == wired)
		around++;
	f->around = around;
	f->rdonly = wired;
	if (f->npages > around)
		f->npages = around; /* fill only what will be mapped */
	rg->st.pages_filled += f->npages;
	pthread_mutex_unlock(&rg->lock);
	if (f->npages > 0) {
		char *w = fm_object_window(f->obj);

		if (w == NULL)
			return -errno;
		memset(w + pg * FM_PAGE_SIZE, 0, f->npages * FM_PAGE_SIZE);
	}
	return 0;
}

/*
 * pgo_write: a write to a write-protected page: a read-only page (refuse
 * or record, as its policy says) or a page under a wire (count the write;
 * the wire may trip and remove its range).
 * => runs in an engine thread, no object lock held; 0 allows the write,
 *    -EACCES refuses it (SIGBUS)
 */
static int
guard_write(struct fm_object *obj, uint64_t pg)
{
	struct region *rg = fm_object_private(obj);
	struct removal rm[FM_GUARD_MAXWIRES];
	int k = 0, r = 0;

	pthread_mutex_lock(&rg->lock);
	if (rg->pg[pg] & G_REVOKED) {
		rg->st.revoked++;
		r = -EACCES;
	} else if ((rg->pg[pg] & G_RDONLY) && !(rg->pg[pg] & G_RECORD)) {
		rg->st.refused++;
		r = -EACCES;
	} else {
		k = wires_write_locked(rg, pg, rm);
		for (int i = 0; i < k; i++)
			if (rm[i].policy == FM_GUARD_REVOKE)
				r = -EACCES; /* this write revokes its own page */
		if (r == 0 && (rg->pg[pg] & G_RDONLY)) {
			rg->st.recorded++;
			rg->st.last_recorded = pg * FM_PAGE_SIZE;
			rg->pg[pg] |= G_RECORDED;
		}
	}
	pthread_mutex_unlock(&rg->lock);
	for (int i = 0; i < k; i++) {
		if (rm[i].policy == FM_GUARD_REVOKE) {
			/* Revoked: drop the pages; this write too gets SIGBUS. */
			remove_pages(obj, rm[i].pg, rm[i].n, FM_UNMAP_DISCARD,
			    UINT64_MAX);
		} else {
			/* The writing page stays: this write goes through. */
			remove_pages(obj, rm[i].pg, rm[i].n, FM_UNMAP_KEEP, pg);
		}
	}
	return r;
}

/* pgo_detach: the region's last mapping and the device have let go. */
static void
guard_detach(struct fm_object *obj)
{
	struct region *rg = fm_object_private(obj);

	pthread_mutex_destroy(&rg->lock);
	free(rg->pg);
	free(rg);
}

static const struct fm_pagerops guard_pagerops = {
    .pgo_fault = guard_fault,
    .pgo_write = guard_write,
    .pgo_detach = guard_detach,
};

/* A new zero-filled region. => 0 with *rgp, its object referenced once */
static int
region_create(uint64_t size, struct region **rgp)
{
	struct region *rg = calloc(1, sizeof(*rg));
	int r;

	if (rg == NULL || (rg->pg = calloc(size / FM_PAGE_SIZE, 1)) == NULL) {
		free(rg);
		return -ENOMEM;
	}
	rg->npages = size / FM_PAGE_SIZE;
	rg->st.size = size;
	pthread_mutex_init(&rg->lock, NULL);
	r = fm_object_create(&guard_pagerops, size, rg, &rg->obj);
	if (r < 0) {
		pthread_mutex_destroy(&rg->lock);
		free(rg->pg);
		free(rg);
		return r;
	}
	*rgp = rg;
	return 0;
}

/* The current region, made on first use, referenced. */
static int
region_get(struct region **rgp)
{
	int r = 0;

	pthread_mutex_lock(&guard.lock);
	if (guard.cur == NULL)
		r = region_create(FM_GUARD_DEFSIZE, &guard.cur);
	if (r == 0) {
		fm_object_ref(guard.cur->obj);
		*rgp = guard.cur;
	}
	pthread_mutex_unlock(&guard.lock);
	return r;
}

/*
 * d_mmap_single: the region's object, for MAP_SHARED within its size.
 * => EINVAL: MAP_PRIVATE; ENXIO: past the end
 */
static int
guard_mmap(struct fm_dev *dev, struct fm_mmap_req *req)
{
	struct region *rg;
	int r;

	if (!(req->flags & MAP_SHARED) || (req->flags & MAP_PRIVATE))
		return -EINVAL;
	if ((r = region_get(&rg)) < 0)
		return r;
	if ((uint64_t)req->off >= rg->npages * FM_PAGE_SIZE ||
	    req->len > rg->npages * FM_PAGE_SIZE - (uint64_t)req->off) {
		fm_object_rele(rg->obj);
		return -ENXIO;
	}
	req->obj = rg->obj;
	req->maxprot = PROT_READ | PROT_WRITE;
	return 0;
}

/* ------------------------------------------------------------------------
 * The ioctls: each returns 0 or a negative errno, and on error changes
 * nothing. => the region referenced by the caller
 */

static int
ioc_setup(struct fm_guard_setup *a)
{
	struct region *rg, *old;
	uint64_t size =
	    (a->size + FM_PAGE_SIZE - 1) / FM_PAGE_SIZE * FM_PAGE_SIZE;
	int r;

	if (a->size == 0 || a->size > FM_GUARD_MAXSIZE)
		return -EINVAL;
	if ((r = region_create(size, &rg)) < 0)
		return r;
	pthread_mutex_lock(&guard.lock);
	old = guard.cur;
	guard.cur = rg;
	pthread_mutex_unlock(&guard.lock);
	if (old != NULL)
		fm_object_rele(old->obj); /* its mappings keep it */
	a->size = size;
	return 0;
}

static int
ioc_protect(struct region *rg, const struct fm_guard_protect *a)
{
	uint64_t pg, n;
	int r = range_pages(rg, a->off, a->len, &pg, &n);

	if (r == 0 &&
	    !(a->prot == PROT_READ &&
	        good_policy(a->policy, FM_GUARD_REFUSE, FM_GUARD_RECORD)) &&
	    !(a->prot == (PROT_READ | PROT_WRITE) && a->policy == 0))
		r = -EINVAL;
	if (r < 0)
		return r;
	int wired = 0;

	pthread_mutex_lock(&rg->lock);
	for (uint64_t i = pg; i < pg + n; i++) {
		rg->pg[i] &= (uint8_t) ~(G_RDONLY | G_RECORD | G_RECORDED);
		if (a->prot == PROT_READ)
			rg->pg[i] |= (uint8_t)(G_RDONLY |
			    (a->policy == FM_GUARD_RECORD ? G_RECORD : 0));
		wired |= wired_locked(rg, i);
	}
	pthread_mutex_unlock(&rg->lock);
	r = fm_object_protect(rg->obj, (off_t)a->off, n * FM_PAGE_SIZE,
	    (int)a->prot);
	/* Read-write unprotects wired pages too: have them fault, and map
	 * them write-protected again. */
	if (r == 0 && wired && a->prot != PROT_READ)
		r = fm_object_unmap(rg->obj, (off_t)a->off, n * FM_PAGE_SIZE,
		    FM_UNMAP_KEEP);
	return r;
}

static int
ioc_remove(struct region *rg, const struct fm_guard_remove *a)
{
	uint64_t pg, n;
	int r = range_pages(rg, a->off, a->len, &pg, &n);

	if (r == 0 &&
	    (a->pad != 0 ||
	        !good_policy(a->policy, FM_GUARD_REFILL, FM_GUARD_REVOKE)))
		r = -EINVAL;
	if (r < 0)
		return r;
	pthread_mutex_lock(&rg->lock);
	rg->st.removals++;
	if (a->policy == FM_GUARD_REVOKE)
		for (uint64_t i = pg; i < pg + n; i++)
			rg->pg[i] |= G_REVOKED;
	pthread_mutex_unlock(&rg->lock);
	return fm_object_unmap(rg->obj, (off_t)a->off, n * FM_PAGE_SIZE,
	    a->policy == FM_GUARD_REVOKE ? FM_UNMAP_DISCARD : FM_UNMAP_KEEP);
}

static int
ioc_restore(struct region *rg, const struct fm_guard_restore *a)
{
	uint64_t pg, n;
	int r = range_pages(rg, a->off, a->len, &pg, &n);

	if (r < 0)
		return r;
	pthread_mutex_lock(&rg->lock);
	for (uint64_t i = pg; i < pg + n; i++)
		rg->pg[i] &= (uint8_t)~G_REVOKED;
	pthread_mutex_unlock(&rg->lock);
	/* Removing the mappings again clears the SIGBUS left in them. */
	return fm_object_unmap(rg->obj, (off_t)a->off, n * FM_PAGE_SIZE,
	    FM_UNMAP_KEEP);
}

static int
ioc_arm(struct region *rg, const struct fm_guard_arm *a)
{
	uint64_t pg, n;
	int r = range_pages(rg, a->off, a->len, &pg, &n), i;

	if (r == 0 && !good_policy(a->policy, FM_GUARD_REFILL, FM_GUARD_REVOKE))
		r = -EINVAL;
	if (r < 0)
		return r;
	pthread_mutex_lock(&rg->lock);
	for (i = 0; i < FM_GUARD_MAXWIRES && rg->wires[i].armed; i++)
		;
	if (i < FM_GUARD_MAXWIRES)
		rg->wires[i] = (struct wire){pg, n, a->writes, a->policy, 1};
	pthread_mutex_unlock(&rg->lock);
	if (i == FM_GUARD_MAXWIRES)
		return -ENOSPC;
	/* Pages mapped before were mapped several a fault: make them fault. */
	return fm_object_unmap(rg->obj, (off_t)a->off, n * FM_PAGE_SIZE,
	    FM_UNMAP_KEEP);
}

static int
ioc_pages(struct region *rg, struct fm_guard_pages *a)
{
	unsigned char vec[FM_GUARD_MAXPAGES];
	uint64_t pg, n;
	int r;

	if (a->pad != 0 || a->npages == 0 || a->npages > FM_GUARD_MAXPAGES)
		return -EINVAL;
	if ((r = range_pages(rg, a->off, (uint64_t)a->npages * FM_PAGE_SIZE,
	         &pg, &n)) < 0)
		return r;
	if ((r = fm_object_mincore(rg->obj, (off_t)a->off, n * FM_PAGE_SIZE,
	         vec)) < 0)
		return r;
	pthread_mutex_lock(&rg->lock);
	for (uint64_t i = 0; i < n; i++)
		a->state[i] =
		    (uint8_t)((rg->pg[pg + i] &
		                  (G_RDONLY | G_REVOKED | G_RECORDED)) |
		        (vec[i] & FM_PG_RESIDENT ? FM_GUARD_PG_RESIDENT : 0) |
		        (wired_locked(rg, pg + i) ? FM_GUARD_PG_WIRED : 0));
	pthread_mutex_unlock(&rg->lock);
	return 0;
}

/*
 * d_ioctl: the requests of guard.h.
 * => ENOTTY: unknown; EFAULT: NULL argument; EBADF: a change asked
 *    through a descriptor not open for writing
 */
static int
guard_ioctl(struct fm_dev *dev, unsigned long cmd, void *data, int flags)
{
	struct region *rg;
	int r, ro = (flags & O_ACCMODE) == O_RDONLY;

	switch (cmd) {
	case FM_GUARD_STATS:
	case FM_GUARD_PAGES:
		break;
	case FM_GUARD_SETUP:
	case FM_GUARD_PROTECT:
	case FM_GUARD_REMOVE:
	case FM_GUARD_RESTORE:
	case FM_GUARD_ARM:
		if (ro)
			return -EBADF;
		break;
	default:
		return -ENOTTY;
	}
	if (data == NULL)
		return -EFAULT;
	if (cmd == FM_GUARD_SETUP)
		return ioc_setup(data);
	if ((r = region_get(&rg)) < 0)
		return r;
	switch (cmd) {
	case FM_GUARD_PROTECT:
		r = ioc_protect(rg, data);
		break;
	case FM_GUARD_REMOVE:
		r = ioc_remove(rg, data);
		break;
	case FM_GUARD_RESTORE:
		r = ioc_restore(rg, data);
		break;
	case FM_GUARD_ARM:
		r = ioc_arm(rg, data);
		break;
	case FM_GUARD_PAGES:
		r = ioc_pages(rg, data);
		break;
	default:
		pthread_mutex_lock(&rg->lock);
		*(struct fm_guard_stats *)data = rg->st;
		pthread_mutex_unlock(&rg->lock);
	}
	fm_object_rele(rg->obj);
	return r;
}

const struct fm_cdevsw fm__guard_cdevsw = {
    .d_open = fm_nullopen,
    .d_close = fm_nullclose,
    .d_read = fm_noread,
    .d_write = fm_nowrite,
    .d_ioctl = guard_ioctl,
    .d_mmap = fm_nommap,
    .d_mmap_single = guard_mmap,
};
