/*
 * mmap.c: the POSIX-mirror memory calls: fm_mmap, fm_munmap, fm_mprotect,
 * fm_msync, fm_madvise (NetBSD's uvm_mmap.c).
 *
 * fm_mmap dispatches as the seed asks: MAP_ANONYMOUS is host memory; every
 * other file goes through its fileops' fo_mmap, which returns the object,
 * the offset and the maximum protection. The object decides how it is
 * mapped: the host kernel maps host objects; the engine serves the others.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>

#include "kern/kern.h"
#include "vm/vm.h"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
#ifndef MAP_SHARED_VALIDATE
#define MAP_SHARED_VALIDATE 0x03
#endif
#define MAP_TYPE_MASK 0x0f

/* Flags Linux accepts without validation (LEGACY_MAP_MASK and type). */
#define FM_MAP_KNOWN                                                       \
	((unsigned)(MAP_TYPE_MASK | MAP_FIXED | MAP_ANONYMOUS |            \
	     MAP_DENYWRITE | MAP_EXECUTABLE | MAP_GROWSDOWN | MAP_LOCKED | \
	     MAP_NORESERVE | MAP_POPULATE | MAP_NONBLOCK | MAP_STACK |     \
	     MAP_HUGETLB | MAP_32BIT | MAP_FIXED_NOREPLACE) |              \
	    (0x3fU << 26))
/* Flags passed to the kernel's mmap of an object store. */
#define FM_MAP_PASSED (MAP_FIXED | MAP_FIXED_NOREPLACE | MAP_NORESERVE)

#define FAIL(e)                    \
	do {                       \
		errno = (e);       \
		return MAP_FAILED; \
	} while (0)

static int
check_prot(int prot)
{
	return (prot & ~(PROT_READ | PROT_WRITE | PROT_EXEC)) ? -EINVAL : 0;
}

/*
 * Take the entries in [start, end), clipped already, out of the map; they
 * are returned on *dead to free once the map lock is dropped.
 * => fm__map.lock exclusive held
 */
static void
take_locked(uintptr_t start, uintptr_t end, struct fm_entry **dead)
{
	size_t n, i = fm__map_range(start, end, &n);

	while (n-- > 0) {
		struct fm_entry *e = fm__map.v[i];

		fm__map_remove(e);
		if (e->obj)
			fm__object_unlink(e->obj, e);
		e->onext = *dead;
		*dead = e;
	}
}

/* Clip, then take: the entries in [start, end) out of the map. */
static int
evict_locked(uintptr_t start, uintptr_t end, struct fm_entry **dead)
{
	int r = fm__map_clip(start, end);

	if (r == 0)
		take_locked(start, end, dead);
	return r;
}

/* Whether obj is still mapped (a hint: it may be mapped again at once). */
static int
mapped(struct fm_object *obj)
{
	int r;

	pthread_mutex_lock(&obj->lock);
	r = obj->entries != NULL;
	pthread_mutex_unlock(&obj->lock);
	return r;
}

/*
 * Wake every fault of the dead entries (their memory is gone, so the
 * threads see SIGSEGV or whatever replaced it), then free them; the last
 * mapping of an object writes it back.
 * => no lock held
 */
static void
bury(struct fm_entry *dead)
{
	while (dead) {
		struct fm_entry *e = dead;
		struct fm_object *obj = e->obj;

		dead = e->onext;
		if (e->pm)
			(void)fm__pmap_wake(e->pm, e->start, e->end - e->start);
		if (obj && !(obj->flags & FM_OBJ_HOST) && !mapped(obj))
			(void)fm_object_clean(obj, 0,
			    obj->npages << FM_PAGE_SHIFT);
		if (obj)
			fm_object_rele(obj);
		free(e);
	}
}

/*
 * Map obj with the host kernel, and register it with the engine if it
 * serves it: *pmp and *pmode say how.
 */
static void *
map_object(void *addr, size_t len, int prot, int flags, struct fm_mmap_req *req,
    off_t off, struct fm_pmap **pmp, int *pmode)
{
	struct fm_object *obj = req->obj;
	int kflags = (flags & FM_MAP_PASSED) |
	    (flags & MAP_PRIVATE ? MAP_PRIVATE : MAP_SHARED);
	int fd = obj->fd, r;
	void *va;

	*pmp = NULL;
	if (obj->flags & FM_OBJ_HOST) {
		if (fd < 0)
			kflags |= MAP_ANONYMOUS;
		kflags |= flags & (MAP_POPULATE | MAP_LOCKED | MAP_NONBLOCK);
		return mmap(addr, len, prot, kflags, fd, fd < 0 ? 0 : off);
	}
	if ((r = fm__engine_start()) < 0 ||
	    (*pmp = fm__pmap_kernel()) == NULL) {
		errno = r < 0 ? -r : errno;
		return MAP_FAILED;
	}
	*pmode = flags & MAP_SHARED ? FM_PMAP_SHARED : FM_PMAP_PRIVATE;
	if (*pmode == FM_PMAP_SHARED && !(req->maxprot & PROT_WRITE)) {
		if ((fd = fm__object_rofd(obj)) < 0) {
			errno = -fd;
			return MAP_FAILED;
		}
		kflags = (kflags & ~MAP_SHARED) | MAP_PRIVATE;
		*pmode = FM_PMAP_PRIVATE;
	}
	va = mmap(addr, len, prot, kflags, fd, off);
	if (va == MAP_FAILED)
		return va;
	/*
	 * A child of fork() would inherit the memory but not the engine: its
	 * faults would fill the object behind the pager's back. Like a
	 * device's mapping, it is not inherited.
	 */
	r = madvise(va, len, MADV_DONTFORK) < 0 ? -errno : 0;
	if (r == 0)
		r = fm__pmap_register(*pmp, (uintptr_t)va, len, *pmode);
	if (r < 0) {
		munmap(va, len);
		errno = -r;
		return MAP_FAILED;
	}
	return va;
}

/* Check the request against the open mode and what fo_mmap returned. */
static int
check_access(const struct fm_file *fp, int prot, int flags,
    struct fm_mmap_req *req)
{
	int acc = fp->f_flag & O_ACCMODE;

	if (acc == O_WRONLY)
		return -EACCES;
	if ((flags & MAP_SHARED) && (prot & PROT_WRITE) && acc != O_RDWR)
		return -EACCES;
	if (flags & MAP_PRIVATE)
		req->maxprot |= PROT_WRITE; /* copy-on-write */
	if (prot & ~req->maxprot)
		return -EACCES;
	return 0;
}

/* Ask the file for its object. => 0 with req->obj referenced, or -errno */
static int
file_object(int fd, int prot, int flags, struct fm_mmap_req *req)
{
	struct fm_file tmp, *fp;
	int r;

	fp = fm__file_get(fd, &tmp, &r);
	if (fp == NULL)
		return r;
	r = fp->f_ops->fo_mmap ? fp->f_ops->fo_mmap(fp, req) : -ENODEV;
	if (r == 0 && req->obj == NULL)
		r = -ENODEV; /* a driver that said yes without an object */
	if (r == 0 && (req->off < 0 || (req->off & (off_t)FM_PAGE_MASK)))
		r = -EINVAL;
	if (r == 0)
		r = check_access(fp, prot, flags, req);
	if (r < 0 && req->obj) {
		fm_object_rele(req->obj);
		req->obj = NULL;
	}
	if (fp != &tmp)
		fm__file_rele(fp);
	return r;
}

static int
check_mmap(void *addr, size_t len, int prot, int flags, off_t off)
{
	int type = flags & MAP_TYPE_MASK;

	if (len == 0 || check_prot(prot) < 0)
		return -EINVAL;
	if (type != MAP_SHARED && type != MAP_PRIVATE &&
	    type != MAP_SHARED_VALIDATE)
		return -EINVAL;
	if (type == MAP_SHARED_VALIDATE && ((unsigned)flags & ~FM_MAP_KNOWN))
		return -EOPNOTSUPP;
	if ((flags & (MAP_FIXED | MAP_FIXED_NOREPLACE)) &&
	    ((uintptr_t)addr & FM_PAGE_MASK))
		return -EINVAL;
	if (len > SIZE_MAX - FM_PAGE_MASK)
		return -ENOMEM;
	if (!(flags & MAP_ANONYMOUS) && (off & (off_t)FM_PAGE_MASK))
		return -EINVAL;
	if (!(flags & MAP_ANONYMOUS) &&
	    (off < 0 ||
	        (uint64_t)off + FM_PAGES(len) * FM_PAGE_SIZE < (uint64_t)off ||
	        (uint64_t)off + FM_PAGES(len) * FM_PAGE_SIZE >
	            (uint64_t)INT64_MAX))
		return -EOVERFLOW;
	return 0;
}

/* A run of a mapping: npages pages of the object from page pgoff. */
struct run {
	uint64_t pgoff;
	size_t npages;
};

/*
 * The runs of a mapping of n pages: one for a linear layout, else the
 * object pages of req->pages with consecutive ones coalesced.
 * => the count, or -ENOMEM
 */
static ssize_t
make_runs(const struct fm_mmap_req *req, size_t n, struct run **runsp)
{
	struct run *v = malloc((req->pages ? n : 1) * sizeof(*v));
	size_t k = 0;

	if (v == NULL)
		return -ENOMEM;
	if (req->pages == NULL)
		v[k++] = (struct run){(uint64_t)req->off >> FM_PAGE_SHIFT, n};
	for (size_t i = 0; req->pages && i < n; i++) {
		if (k > 0 && v[k - 1].pgoff + v[k - 1].npages == req->pages[i])
			v[k - 1].npages++;
		else
			v[k++] = (struct run){req->pages[i], 1};
	}
	*runsp = v;
	return (ssize_t)k;
}

/*
 * Map every run of the object at its place from addr (a reservation holds
 * the range when there are several) and make its entry in e[].
 * => the address, or MAP_FAILED with errno and nothing left mapped
 */
static void *
map_runs(void *addr, size_t len, int prot, int flags, struct fm_mmap_req *req,
    const struct run *runs, size_t nruns, struct fm_entry **e)
{
	char *va = addr;
	int err;

	if (nruns > 1) {
		va = mmap(addr, len, PROT_NONE,
		    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE |
		        (flags & (MAP_FIXED | MAP_FIXED_NOREPLACE)),
		    -1, 0);
		if (va == MAP_FAILED)
			return MAP_FAILED;
		flags = (flags & ~MAP_FIXED_NOREPLACE) | MAP_FIXED;
	}
	for (size_t i = 0, at = 0; i < nruns; at += runs[i++].npages) {
		size_t rlen = runs[i].npages << FM_PAGE_SHIFT;
		struct fm_pmap *pm;
		int pmode = 0;
		char *p = map_object(va + (at << FM_PAGE_SHIFT), rlen, prot,
		    flags, req, (off_t)(runs[i].pgoff << FM_PAGE_SHIFT), &pm,
		    &pmode);

		if (p == MAP_FAILED) {
			err = errno;
			if (nruns > 1)
				munmap(va, len);
			errno = err;
			return MAP_FAILED;
		}
		if (i == 0)
			va = p;
		*e[i] = (struct fm_entry){.start = (uintptr_t)p,
		    .end = (uintptr_t)p + rlen,
		    .obj = req->obj,
		    .pgoff = runs[i].pgoff,
		    .prot = prot,
		    .maxprot = req->maxprot,
		    .advice = req->advice,
		    .flags = flags & MAP_PRIVATE ? MAP_PRIVATE : MAP_SHARED,
		    .pm = pm,
		    .pmode = pmode};
	}
	return va;
}

/*
 * Map the runs and put their entries in the map, each with its reference
 * on obj, holding the map lock exclusive across both: the kernel replaces
 * whatever was in the range (MAP_FIXED, or memory that a plain munmap left
 * in the map), and no engine thread may act on the old entries once their
 * memory is gone (invariant 5).
 * => the address, or MAP_FAILED with errno and nothing changed (but, for
 *    MAP_FIXED, what the kernel itself already replaced)
 */
static void *
map_and_insert(void *addr, size_t len, int prot, int flags,
    struct fm_mmap_req *req, const struct run *runs, size_t n,
    struct fm_entry **e)
{
	struct fm_entry *dead = NULL;
	void *va = MAP_FAILED;
	int r;

	pthread_rwlock_wrlock(&fm__map.lock);
	r = fm__map_reserve(n + 2); /* + the two a clip may split off */
	if (r == 0) {
		va = map_runs(addr, len, prot, flags, req, runs, n, e);
		r = va == MAP_FAILED ? -errno : 0;
	}
	if (r == 0)
		r = evict_locked((uintptr_t)va, (uintptr_t)va + len, &dead);
	for (size_t i = 0; r == 0 && i < n; i++) {
		FM_ASSERT(fm__map_insert(e[i]) == 0, "reserved insert failed");
		if (i > 0)
			fm_object_ref(e[i]->obj);
		fm__object_link(e[i]->obj, e[i]);
	}
	if (r < 0 && va != MAP_FAILED)
		munmap(va, len);
	pthread_rwlock_unlock(&fm__map.lock);
	bury(dead);
	if (r < 0) {
		errno = -r;
		return MAP_FAILED;
	}
	return va;
}

static void
populate(struct fm_entry **e, size_t n)
{
	pthread_rwlock_rdlock(&fm__map.lock);
	for (size_t i = 0; i < n; i++)
		if (e[i]->pm != NULL && fm__map_lookup(e[i]->start) == e[i])
			(void)fm__fault_prefetch(e[i], e[i]->start, e[i]->end);
	pthread_rwlock_unlock(&fm__map.lock);
}

void *
fm_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	struct fm_mmap_req req = {.off = off,
	    .len = len,
	    .prot = prot,
	    .advice = MADV_NORMAL,
	    .maxprot = PROT_READ | PROT_WRITE | PROT_EXEC};
	struct fm_entry **e = NULL;
	struct run *runs = NULL;
	ssize_t nruns = 0;
	void *va = MAP_FAILED;
	int r = check_mmap(addr, len, prot, flags, off);

	if (r < 0)
		FAIL(-r);
	if ((flags & MAP_TYPE_MASK) == MAP_SHARED_VALIDATE)
		flags = (flags & ~MAP_TYPE_MASK) | MAP_SHARED;
	len = FM_PAGES(len) << FM_PAGE_SHIFT;
	req.len = len;
	req.flags = flags;
	r = flags & MAP_ANONYMOUS ? fm__host_object(-1, &req.obj)
	                          : file_object(fd, prot, flags, &req);
	if (r < 0)
		FAIL(-r);
	flags = req.flags;
	nruns = make_runs(&req, len >> FM_PAGE_SHIFT, &runs);
	r = nruns < 0 ? (int)nruns : 0;
	if (r == 0 && (e = calloc((size_t)nruns, sizeof(*e))) == NULL)
		r = -ENOMEM;
	for (ssize_t i = 0; r == 0 && i < nruns; i++)
		if ((e[i] = malloc(sizeof(**e))) == NULL)
			r = -ENOMEM;
	if (r == 0) {
		va = map_and_insert(addr, len, prot, flags, &req, runs,
		    (size_t)nruns, e);
		r = va == MAP_FAILED ? -errno : 0;
	}
	if (r == 0 && (flags & MAP_POPULATE))
		populate(e, (size_t)nruns);
	for (ssize_t i = 0; r < 0 && e && i < nruns; i++)
		free(e[i]);
	if (r < 0)
		fm_object_rele(req.obj);
	free(e);
	free(runs);
	free(req.pages);
	if (r < 0)
		FAIL(-r);
	return va;
}

static int
check_range(void *addr, size_t len, uintptr_t *start, uintptr_t *end)
{
	*start = (uintptr_t)addr;
	if ((*start & FM_PAGE_MASK) || len == 0 ||
	    len > UINTPTR_MAX - *start - FM_PAGE_MASK)
		return -EINVAL;
	*end = *start + (FM_PAGES(len) << FM_PAGE_SHIFT);
	return 0;
}

#define SYSFAIL(r)                    \
	do {                          \
		if ((r) < 0) {        \
			errno = -(r); \
			return -1;    \
		}                     \
	} while (0)

int
fm_munmap(void *addr, size_t len)
{
	struct fm_entry *dead = NULL;
	uintptr_t start, end;
	int r = check_range(addr, len, &start, &end);

	SYSFAIL(r);
	pthread_rwlock_wrlock(&fm__map.lock);
	/* Entries leave the map only once their memory is gone. */
	r = fm__map_clip(start, end);
	if (r == 0 && munmap(addr, end - start) < 0)
		r = -errno;
	if (r == 0)
		take_locked(start, end, &dead);
	pthread_rwlock_unlock(&fm__map.lock);
	bury(dead);
	SYSFAIL(r);
	return 0;
}

int
fm_mprotect(void *addr, size_t len, int prot)
{
	uintptr_t start, end;
	size_t i, n;
	int r = check_range(addr, len, &start, &end);

	if (r == 0)
		r = check_prot(prot);
	SYSFAIL(r);
	pthread_rwlock_wrlock(&fm__map.lock);
	i = fm__map_range(start, end, &n);
	for (size_t k = i; k < i + n && r == 0; k++)
		if (prot & ~fm__map.v[k]->maxprot)
			r = -EACCES;
	if (r == 0)
		r = fm__map_clip(start, end);
	if (r == 0 && mprotect(addr, end - start, prot) < 0)
		r = -errno;
	if (r == 0) {
		i = fm__map_range(start, end, &n);
		for (size_t k = i; k < i + n; k++)
			fm__map.v[k]->prot = prot;
	}
	pthread_rwlock_unlock(&fm__map.lock);
	SYSFAIL(r);
	return 0;
}

/*
 * Collect, referenced, the objects (and their byte ranges) of the shared
 * fomap entries in [start, end). => returns the count, or -ENOMEM
 */
struct span {
	struct fm_object *obj;
	off_t off;
	size_t len;
};

static ssize_t
shared_spans(uintptr_t start, uintptr_t end, struct span **out)
{
	size_t i, n, k = 0;
	struct span *v;

	pthread_rwlock_rdlock(&fm__map.lock);
	i = fm__map_range(start, end, &n);
	v = calloc(n ? n : 1, sizeof(*v));
	for (size_t j = i; v && j < i + n; j++) {
		struct fm_entry *e = fm__map.v[j];
		uintptr_t lo = e->start > start ? e->start : start;
		uintptr_t hi = e->end < end ? e->end : end;

		if (e->pm == NULL || !(e->flags & MAP_SHARED))
			continue;
		fm_object_ref(e->obj);
		v[k++] = (struct span){e->obj,
		    (off_t)(fm__entry_pgidx(e, lo) << FM_PAGE_SHIFT), hi - lo};
	}
	pthread_rwlock_unlock(&fm__map.lock);
	*out = v;
	return v ? (ssize_t)k : -ENOMEM;
}

int
fm_msync(void *addr, size_t len, int flags)
{
	uintptr_t start, end;
	struct span *v;
	ssize_t n;
	int r = check_range(addr, len, &start, &end);

	if (r == 0 &&
	    ((flags & ~(MS_ASYNC | MS_SYNC | MS_INVALIDATE)) ||
	        (flags & (MS_ASYNC | MS_SYNC)) == (MS_ASYNC | MS_SYNC)))
		r = -EINVAL;
	if (r == 0 && msync(addr, end - start, flags) < 0)
		r = -errno; /* ENOMEM for a hole; host files are written here */
	SYSFAIL(r);
	n = shared_spans(start, end, &v);
	SYSFAIL((int)(n < 0 ? n : 0));
	for (ssize_t k = 0; k < n; k++) {
		int c = fm_object_clean(v[k].obj, v[k].off, v[k].len);

		if (c < 0 && r == 0)
			r = c;
		fm_object_rele(v[k].obj);
	}
	free(v);
	SYSFAIL(r);
	return 0;
}

/* MADV_WILLNEED on the engine's entries: make resident and map. */
static int
willneed(uintptr_t start, uintptr_t end)
{
	size_t i, n;
	int r = 0;

	pthread_rwlock_rdlock(&fm__map.lock);
	i = fm__map_range(start, end, &n);
	for (size_t k = i; k < i + n && r == 0; k++) {
		struct fm_entry *e = fm__map.v[k];

		if (e->pm != NULL)
			r = fm__fault_prefetch(e,
			    e->start > start ? e->start : start,
			    e->end < end ? e->end : end);
		/* Advice: a pager's error shows at the access, not here. */
		if (r != -ENOMEM)
			r = 0;
	}
	pthread_rwlock_unlock(&fm__map.lock);
	return r;
}

/* MADV_NORMAL, _RANDOM, _SEQUENTIAL: the entries' fault-around policy. */
static int
set_advice(uintptr_t start, uintptr_t end, int advice)
{
	size_t i, n;
	int r;

	pthread_rwlock_wrlock(&fm__map.lock);
	r = fm__map_clip(start, end);
	i = fm__map_range(start, end, &n);
	for (size_t k = i; r == 0 && k < i + n; k++)
		fm__map.v[k]->advice = advice;
	pthread_rwlock_unlock(&fm__map.lock);
	return r;
}

static int
engine_entries(uintptr_t start, uintptr_t end)
{
	size_t i, n;
	int found = 0;

	pthread_rwlock_rdlock(&fm__map.lock);
	i = fm__map_range(start, end, &n);
	for (size_t k = i; k < i + n; k++)
		found |= fm__map.v[k]->pm != NULL;
	pthread_rwlock_unlock(&fm__map.lock);
	return found;
}

int
fm_madvise(void *addr, size_t len, int advice)
{
	uintptr_t start, end;
	int r = check_range(addr, len, &start, &end);

	SYSFAIL(r);
	switch (advice) {
	case MADV_DONTNEED:
		/* Zaps PTEs; the object store keeps its pages. */
		return madvise(addr, end - start, advice);
	case MADV_WILLNEED:
		if (madvise(addr, end - start, advice) < 0 && errno != EBADF)
			return -1;
		r = willneed(start, end);
		break;
	case MADV_NORMAL:
	case MADV_RANDOM:
	case MADV_SEQUENTIAL:
		if (madvise(addr, end - start, advice) < 0)
			return -1;
		r = set_advice(start, end, advice);
		break;
	default:
		if (engine_entries(start, end)) /* not defined on fomap's */
			r = -EINVAL;
		else
			return madvise(addr, end - start, advice);
	}
	SYSFAIL(r);
	return 0;
}
