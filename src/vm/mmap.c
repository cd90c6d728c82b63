/*
 * mmap.c: the POSIX-mirror memory calls: fm_mmap, fm_munmap, fm_mprotect,
 * fm_msync, fm_madvise (NetBSD's uvm_mmap.c).
 *
 * fm_mmap never tests what kind of file it maps. MAP_ANONYMOUS is host
 * memory; for any other descriptor it asks the file's fileops (fo_mmap)
 * for the object, the offset and the maximum protection: a device's file
 * answers with its driver's object (d_mmap_single, or the device pager
 * for a driver with only d_mmap), a cloned file with the driver's own, a
 * file fomap does not own (vnode.c) with a host object, and an answer
 * with no object means anonymous memory. The object then decides how it
 * is mapped: the host kernel maps host objects; the engine serves the
 * others.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <sys/vfs.h>

#include "kern/kern.h"
#include "vm/vm.h"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
#ifndef MAP_SHARED_VALIDATE
#define MAP_SHARED_VALIDATE 0x03
#endif
#define MAP_TYPE_MASK 0x0f
#define FM_BURY_WAIT 1000 /* x 100 µs: how long bury waits for a fault */

/* Flags Linux accepts without validation (LEGACY_MAP_MASK and type). */
#define FM_MAP_KNOWN                                                       \
	((unsigned)(MAP_TYPE_MASK | MAP_FIXED | MAP_ANONYMOUS |            \
	     MAP_DENYWRITE | MAP_EXECUTABLE | MAP_GROWSDOWN | MAP_LOCKED | \
	     MAP_NORESERVE | MAP_POPULATE | MAP_NONBLOCK | MAP_STACK |     \
	     MAP_HUGETLB | MAP_32BIT | FM_MAP_ABOVE4G) |                   \
	    (0x3fU << 26))
#define FM_MAP_ABOVE4G 0x80
#ifndef MAP_SYNC
#define MAP_SYNC 0x80000
#endif
/*
 * Flags passed to the kernel's mmap of every mapping it makes, so that it
 * honours them or refuses them itself; a host object's also get
 * MAP_POPULATE, MAP_LOCKED and MAP_NONBLOCK (on an object store they would
 * fault pages in behind the engine's back).
 */
#define FM_MAP_PASSED                                                   \
	((int)(FM_MAP_KNOWN &                                           \
	     ~(unsigned)(MAP_TYPE_MASK | MAP_ANONYMOUS | MAP_POPULATE | \
	         MAP_LOCKED | MAP_NONBLOCK)) |                          \
	    MAP_FIXED_NOREPLACE | MAP_SYNC)

#ifndef PROT_SEM
#define PROT_SEM 0x8
#endif

/*
 * The protection mprotect(2) accepts (arch_validate_prot): PROT_SEM has no
 * meaning on x86 and is dropped; PROT_GROWSDOWN and _GROWSUP are the
 * caller's. => 0 or -EINVAL
 */
static int
check_prot(int *prot)
{
	int grows = *prot & (PROT_GROWSDOWN | PROT_GROWSUP);

	if ((*prot & ~grows) & ~(PROT_READ | PROT_WRITE | PROT_EXEC | PROT_SEM))
		return -EINVAL;
	*prot &= ~PROT_SEM;
	return 0;
}

/*
 * Kill the entries in [start, end), clipped already: they stay in the map
 * (a fault there is woken: the kernel is about to remove the memory) but
 * leave their objects (fm__object_unlink). => whether there were any
 * => fm__map.lock exclusive held
 */
static int
kill_locked(struct fm_vmspace *vs, uintptr_t start, uintptr_t end)
{
	struct fm_map_iter it;
	struct fm_entry *e;
	size_t n = fm__map_iter(&it, vs, start, end);

	while ((e = fm__map_next(&it)) != NULL)
		if (!e->dead)
			fm__object_unlink(e->obj, e);
	return n > 0;
}

/*
 * The killed entries in [start, end) are about to be unmapped: make their
 * memory inaccessible (an access racing the munmap faults as if it were
 * gone already) and unregister it, so that the kernel's munmap sends the
 * engine no event to wait for (an event unread makes the kernel refuse
 * every page-table change of the engine with EAGAIN).
 * => 1 if every unregister worked (it woke the faults waiting there)
 * => fm__map.lock exclusive held
 */
static int
quiesce_locked(struct fm_vmspace *vs, uintptr_t start, uintptr_t end, int back)
{
	struct fm_map_iter it;
	struct fm_entry *e;
	int woken = 1;

	fm__map_iter(&it, vs, start, end);
	while ((e = fm__map_next(&it)) != NULL) {
		void *va = (void *)e->start;
		size_t len = e->end - e->start;

		if (e->pm == NULL)
			continue;
		if (!back) {
			(void)mprotect(va, len, PROT_NONE);
			if (fm__pmap_unregister(e->pm, e->start, len) < 0)
				woken = 0;
		} else { /* the munmap failed: as they were */
			(void)fm__pmap_register(e->pm, e->start, len, e->pmode);
			(void)mprotect(va, len, e->prot);
		}
	}
	return woken;
}

/* The kernel kept the memory after all: the killed entries live again. */
static void
revive_locked(struct fm_vmspace *vs, uintptr_t start, uintptr_t end)
{
	struct fm_map_iter it;
	struct fm_entry *e;

	fm__map_iter(&it, vs, start, end);
	while ((e = fm__map_next(&it)) != NULL)
		if (e->dead)
			fm__object_link(e->obj, e);
}

/*
 * Take the entries in [start, end), clipped already, out of the map,
 * killing those still live; they are returned on *dead to bury once the
 * map lock is dropped.
 * => fm__map.lock exclusive held
 */
static void
take_locked(struct fm_vmspace *vs, uintptr_t start, uintptr_t end,
    struct fm_entry **dead)
{
	struct fm_map_iter it;
	struct fm_entry *e;

	fm__map_iter(&it, vs, start, end);
	while ((e = fm__map_next(&it)) != NULL) {
		fm__map_remove(e); /* the walk goes on from its end */
		if (!e->dead)
			fm__object_unlink(e->obj, e);
		e->onext = *dead;
		*dead = e;
	}
}

/* Clip, then take: the entries in [start, end) out of the map. */
static int
evict_locked(struct fm_vmspace *vs, uintptr_t start, uintptr_t end,
    struct fm_entry **dead)
{
	int r = fm__map_clip(vs, start, end);

	if (r == 0)
		take_locked(vs, start, end, dead);
	return r;
}

/* Whether obj is still mapped (a hint: it may be mapped again at once). */
static int
mapped(struct fm_object *obj)
{
	int r;

	pthread_mutex_lock(&obj->lock);
	r = fm__object_mapped_locked(obj);
	pthread_mutex_unlock(&obj->lock);
	return r;
}

/*
 * Wake every fault of the dead entries (their memory is gone, so the
 * threads see SIGSEGV or whatever replaced it), then let them go; the last
 * mapping of an object writes it back. woken: the entries were
 * unregistered before their memory went (quiesce_locked), which woke
 * their faults already (UFFDIO_UNREGISTER does, for a registration with
 * MISSING, as every one of the engine's is), and no fault can wait on
 * them since.
 * => no lock held
 */
static void
bury(struct fm_entry *dead, int woken)
{
	while (dead) {
		struct fm_entry *e = dead;
		struct fm_object *obj = e->obj;

		dead = e->onext;
		if (e->pm && !woken)
			(void)fm__pmap_wake(e->pm, e->start, e->end - e->start);
		/*
		 * A fault still resolving on e holds a reference: let it end
		 * (it installs nothing: e is dead), so that the object is let
		 * go when the call that unmapped it returns, as the kernel's
		 * munmap waits for the faults in progress (bounded: a pager
		 * may be slow).
		 */
		for (int i = 0; i < FM_BURY_WAIT && atomic_load(&e->refs) > 1;
		     i++)
			usleep(100);
		if (!(obj->flags & FM_OBJ_HOST) && !mapped(obj))
			(void)fm_object_clean(obj, 0,
			    obj->npages << FM_PAGE_SHIFT);
		fm__entry_rele(e);
	}
}

/* A copy of e at to, in the map and on its object. => 0, or -ENOMEM */
static int
move_locked(struct fm_entry *e, uintptr_t to, struct fm_entry **dead)
{
	struct fm_entry *c = malloc(sizeof(*c));

	if (c == NULL ||
	    evict_locked(e->vs, to, to + (e->end - e->start), dead) < 0) {
		free(c);
		return -ENOMEM;
	}
	fm__entry_copy(c, e);
	c->end = to + (e->end - e->start);
	c->start = to;
	fm_object_ref(c->obj);
	if (fm__map_insert_copy(c) < 0) {
		c->dead = 1;
		fm__entry_rele(c);
		return -ENOMEM;
	}
	fm__object_link(c->obj, c);
	return 0;
}

void
fm__map_bury(struct fm_entry *dead)
{
	bury(dead, 0);
}

void
fm__map_gone(struct fm_vmspace *vs, uintptr_t start, uintptr_t end,
    uintptr_t to, uint64_t gen, struct fm_entry **deadp)
{
	struct fm_entry *dead = *deadp, **old, *e;
	struct fm_map_iter it;
	size_t n, k = 0;

	pthread_rwlock_wrlock(&fm__map.lock);
	(void)fm__map_clip(vs, start, end);
	n = fm__map_iter(&it, vs, start, end);
	old = calloc(n ? n : 1, sizeof(*old));
	/* Only entries older than the event, and not being removed already. */
	while (old && (e = fm__map_next(&it)) != NULL) {
		if (e->gen <= gen && !e->dead && e->start >= start &&
		    e->end <= end)
			old[k++] = e;
	}
	for (size_t j = 0; j < k; j++) {
		if (to != 0)
			(void)move_locked(old[j], to + (old[j]->start - start),
			    &dead);
		fm__map_remove(old[j]);
		fm__object_unlink(old[j]->obj, old[j]);
		old[j]->onext = dead;
		dead = old[j];
	}
	pthread_rwlock_unlock(&fm__map.lock);
	free(old);
	*deadp = dead;
}

/*
 * A run of a mapping: npages pages of the object from page pgoff, and the
 * most it may be mapped with.
 */
struct run {
	uint64_t pgoff;
	size_t npages;
	int maxprot;
};

void
fm__map_exit(void)
{
	struct fm_vmspace *vs = &fm__vs_self;
	struct fm_object **v;
	struct fm_map_iter it;
	struct fm_entry *e;
	size_t n, k = 0;
	struct fm_crit c;

	if (fm__forked)
		return; /* the parent's objects: not ours to write */
	fm__crit_enter(&c);
	pthread_rwlock_rdlock(&fm__map.lock);
	n = fm__map_iter(&it, vs, 0, UINTPTR_MAX); /* every entry */
	v = calloc(n ? n : 1, sizeof(*v));
	while (v && (e = fm__map_next(&it)) != NULL) {
		if (e->pm && (e->flags & MAP_SHARED) && !e->dead) {
			fm_object_ref(e->obj);
			v[k++] = e->obj;
		}
	}
	pthread_rwlock_unlock(&fm__map.lock);
	for (size_t i = 0; i < k; i++) {
		(void)fm_object_clean(v[i], 0, v[i]->npages << FM_PAGE_SHIFT);
		/* No release: the process is going; pagers stay as they are. */
	}
	free(v);
	fm__crit_leave(&c);
}

/*
 * Map obj with the host kernel; if the engine serves it, *pmp and *pmode
 * say how it will be registered (register_locked, once the map is ready).
 */
static void *
map_object(void *addr, size_t len, int prot, int flags, struct fm_mmap_req *req,
    const struct run *run, struct fm_pmap **pmp, int *pmode)
{
	struct fm_object *obj = req->obj;
	off_t off = obj->base + (off_t)(run->pgoff << FM_PAGE_SHIFT);
	int kflags = (flags & FM_MAP_PASSED) |
	    (flags & MAP_PRIVATE ? MAP_PRIVATE : MAP_SHARED);
	int fd = obj->fd, r;
	void *va;

	*pmp = NULL;
	if (obj->flags & FM_OBJ_HOST) {
		if (fd < 0)
			kflags |= MAP_ANONYMOUS;
		kflags |= flags & (MAP_POPULATE | MAP_LOCKED | MAP_NONBLOCK);
		va = mmap(addr, len, prot, kflags, fd, fd < 0 ? 0 : off);
		if (va != MAP_FAILED && fd >= 0) {
			/* The mapping holds the file: no descriptor kept. */
			close(fd);
			obj->fd = -1;
		}
		return va;
	}
	if ((r = fm__engine_start()) < 0 ||
	    (*pmp = fm__pmap_kernel()) == NULL) {
		errno = r < 0 ? -r : errno;
		return MAP_FAILED;
	}
	*pmode = flags & MAP_SHARED ? FM_PMAP_SHARED : FM_PMAP_PRIVATE;
	if (*pmode == FM_PMAP_SHARED && !(run->maxprot & PROT_WRITE)) {
		if ((fd = fm__object_rofd(obj)) < 0) {
			errno = -fd;
			return MAP_FAILED;
		}
		kflags = (kflags & ~MAP_SHARED) | MAP_PRIVATE;
		*pmode = FM_PMAP_PRIVATE;
	}
	/* A pager fills through the window: have it now, not in a fault. */
	if (!fm__pgo_zero_fill(obj) && fm_object_window(obj) == NULL)
		return MAP_FAILED;
	va = mmap(addr, len, prot, kflags, fd, off);
	if (va == MAP_FAILED)
		return va;
	/*
	 * A child of fork() would inherit the memory but not the engine: its
	 * faults would fill the object behind the pager's back. Like a
	 * device's mapping, it is not inherited.
	 */
	r = madvise(va, len, MADV_DONTFORK) < 0 ? -errno : 0;
	/*
	 * Under mlockall(MCL_FUTURE) the kernel has just filled and mapped
	 * the range from the store, behind the pager's back: unlock it (the
	 * engine must be able to remove its pages) and drop what it mapped.
	 */
	if (r == 0 && fm__pmap_wp_state(*pmp, (uintptr_t)va) >= 0 &&
	    (munlock(va, len) < 0 || madvise(va, len, MADV_DONTNEED) < 0))
		r = -errno;
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
	/* As the kernel does: a shared mapping is writable only with O_RDWR. */
	if ((flags & MAP_SHARED) && acc != O_RDWR)
		req->maxprot &= ~PROT_WRITE;
	if (flags & MAP_PRIVATE)
		req->maxprot |= PROT_WRITE; /* copy-on-write */
	if (prot & ~req->maxprot)
		return -EACCES;
	return 0;
}

/*
 * fo_mmap said yes with no object: anonymous zero-fill memory, as a NULL
 * uobj is in NetBSD's uvm_mmap. Shared, a new object the engine serves;
 * private, the host's own (copy-on-write of zeros needs no pager). It has
 * no offset.
 */
static int
anon_object(struct fm_mmap_req *req)
{
	req->off = 0;
	if (req->flags & MAP_PRIVATE)
		return fm__host_object(-1, &req->obj);
	return fm_object_create(&fm__anon_pagerops, req->len, NULL, &req->obj);
}

int
fm__mmap_object(struct fm_file *fp, int prot, int flags,
    struct fm_mmap_req *req)
{
	int r = fm__fo_mmap(fp, req);

	if (r == 0 && req->obj == NULL)
		r = anon_object(req);
	if (r == 0 && (req->off < 0 || (req->off & (off_t)FM_PAGE_MASK)))
		r = -EINVAL;
	if (r == 0)
		r = check_access(fp, prot, flags, req);
	if (r < 0 && req->obj) {
		fm_object_rele(req->obj);
		req->obj = NULL;
	}
	return r;
}

/* Let go of what check_mmap_fd took: fp, or tmp (the caller's), or NULL. */
static void
file_put(struct fm_file *fp, const struct fm_file *tmp)
{
	if (fp != NULL && fp != tmp)
		fm__file_rele(fp);
}

/* What fm_mmap's fd is: */
#define FD_DEVICE 1 /* a fomap file */
#define FD_HOST_REG 2 /* a regular file of the host */
#define FD_HOST 3 /* any other file of the host */
#ifndef HUGETLBFS_MAGIC
#define HUGETLBFS_MAGIC 0x958458f6
#endif

/*
 * The kernel's fget() and its MAP_HUGETLB check (ksys_mmap_pgoff): what fd
 * is, or -EBADF, or -EINVAL for MAP_HUGETLB on a file not of hugetlbfs.
 * *fpp: its file, referenced (or tmp, for a file of the host), whatever
 * the answer (file_put); NULL only with -EBADF.
 */
static int
check_mmap_fd(int fd, int flags, struct fm_file *tmp, struct fm_file **fpp)
{
	struct fm_file *fp;
	struct statfs sf;
	struct stat st;
	int r;

	if ((*fpp = fp = fm__file_get(fd, tmp, &r)) == NULL)
		return r;
	if (fp != tmp)
		return flags & MAP_HUGETLB ? -EINVAL : FD_DEVICE;
	if ((flags & MAP_HUGETLB) &&
	    (fstatfs(fd, &sf) < 0 || sf.f_type != HUGETLBFS_MAGIC))
		return -EINVAL;
	return fstat(fd, &st) == 0 && S_ISREG(st.st_mode) ? FD_HOST_REG
	                                                  : FD_HOST;
}

/* The kernel's file_mmap_ok() for a regular file (maxsize) or a device. */
static int
mmap_size_ok(uint64_t maxsize, off_t off, uint64_t len)
{
	uint64_t pgoff = (uint64_t)off >> FM_PAGE_SHIFT;

	if (len > maxsize)
		return 0;
	return pgoff <= (maxsize - len) >> FM_PAGE_SHIFT;
}

/*
 * Check an mmap request in the order Linux does (sys_mmap, ksys_mmap_pgoff,
 * do_mmap), but for what the file or the kernel says later: EEXIST, EPERM
 * and EAGAIN for MAP_LOCKED, EACCES, ENODEV. *prot loses the bits mmap
 * ignores. Not supported: MAP_DROPPABLE (EINVAL); a fixed address above
 * the 47-bit TASK_SIZE (ENOMEM, as on 4-level paging). *fpp: as
 * check_mmap_fd leaves it (NULL for MAP_ANONYMOUS).
 * => 0 or -errno
 */
static int
check_mmap(void *addr, size_t len, int *prot, int flags, int fd, off_t off,
    struct fm_file *tmp, struct fm_file **fpp)
{
	const uint64_t task_size = 0x7ffffffff000ULL;
	int type = flags & MAP_TYPE_MASK, anon = flags & MAP_ANONYMOUS;
	uintptr_t a = (uintptr_t)addr;
	int kind = 0;
	size_t alen;

	*prot &= PROT_READ | PROT_WRITE | PROT_EXEC;
	if (off & (off_t)FM_PAGE_MASK)
		return -EINVAL;
	if (!anon && (kind = check_mmap_fd(fd, flags, tmp, fpp)) < 0)
		return kind;
	if (len == 0)
		return -EINVAL;
	if (len > SIZE_MAX - FM_PAGE_MASK)
		return -ENOMEM;
	alen = FM_PAGES(len) << FM_PAGE_SHIFT;
	if (alen > task_size)
		return -ENOMEM;
	if ((flags & (MAP_FIXED | MAP_FIXED_NOREPLACE)) && a > task_size - alen)
		return -ENOMEM;
	if ((flags & (MAP_FIXED | MAP_FIXED_NOREPLACE)) && (a & FM_PAGE_MASK))
		return -EINVAL;
	if ((kind == FD_HOST_REG && !mmap_size_ok(INT64_MAX, off, alen)) ||
	    (kind == FD_DEVICE && !mmap_size_ok(UINT64_MAX, off, alen)))
		return -EOVERFLOW;
	if (anon)
		return type == MAP_PRIVATE ||
		        (type == MAP_SHARED && !(flags & MAP_GROWSDOWN))
		    ? 0
		    : -EINVAL;
	if (type == MAP_SHARED_VALIDATE && ((unsigned)flags & ~FM_MAP_KNOWN))
		return -EOPNOTSUPP;
	if (type != MAP_SHARED && type != MAP_PRIVATE &&
	    type != MAP_SHARED_VALIDATE)
		return -EINVAL;
	return flags & MAP_GROWSDOWN ? -EINVAL : 0;
}

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
		v[k++] = (struct run){(uint64_t)req->off >> FM_PAGE_SHIFT, n,
		    req->maxprot};
	for (size_t i = 0; req->pages && i < n; i++) {
		uint64_t pg = req->pages[i] & ~FM_PAGE_RDONLY;
		int maxprot = req->maxprot;

		/* A read-only page: never writable, but copy-on-write. */
		if ((req->pages[i] & FM_PAGE_RDONLY) &&
		    !(req->flags & MAP_PRIVATE))
			maxprot &= ~PROT_WRITE;
		if (k > 0 && v[k - 1].pgoff + v[k - 1].npages == pg &&
		    v[k - 1].maxprot == maxprot)
			v[k - 1].npages++;
		else
			v[k++] = (struct run){pg, 1, maxprot};
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
		    flags, req, &runs[i], &pm, &pmode);

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
		    .dead = 1, /* until it is linked to its object */
		    .obj = req->obj,
		    .pgoff = runs[i].pgoff,
		    .prot = prot,
		    .maxprot = runs[i].maxprot,
		    .advice = req->advice,
		    .flags = flags & MAP_PRIVATE ? MAP_PRIVATE : MAP_SHARED,
		    .vs = &fm__vs_self,
		    .pm = pm,
		    .pmode = pmode};
	}
	return va;
}

/* Register the entries with the engine. => 0, or -errno */
static int
register_entries(struct fm_entry **e, size_t n)
{
	int r = 0;

	for (size_t i = 0; r == 0 && i < n; i++)
		if (e[i]->pm)
			r = fm__pmap_register(e[i]->pm, e[i]->start,
			    e[i]->end - e[i]->start, e[i]->pmode);
	return r;
}

/*
 * Put the entries in the map, each with its reference on the object, live
 * (linked) or not yet. => fm__map.lock exclusive held, room reserved
 */
static void
insert_locked(struct fm_entry **e, size_t n, int live)
{
	for (size_t i = 0; i < n; i++) {
		atomic_init(&e[i]->refs, 1);
		FM_ASSERT(fm__map_insert(e[i]) == 0, "reserved insert failed");
		if (i > 0)
			fm_object_ref(e[i]->obj);
		if (live)
			fm__object_link(e[i]->obj, e[i]);
	}
}

/*
 * The entries made by map_runs at va take their place in the map. What
 * the map still had there is stale (a plain munmap left it): it goes,
 * before the new memory is registered, so that no install meant for it
 * can reach the new memory (invariant 5).
 * => fm__map.oplock held; => 0, or -errno with the memory unmapped
 */
static int
enter_new(void *va, size_t len, struct fm_entry **e, size_t n,
    struct fm_entry **dead)
{
	struct fm_vmspace *vs = &fm__vs_self;
	int r;

	pthread_rwlock_wrlock(&fm__map.lock);
	r = fm__map_reserve(n + 2); /* + the two a clip may split off */
	if (r == 0)
		r = evict_locked(vs, (uintptr_t)va, (uintptr_t)va + len, dead);
	if (r == 0)
		r = register_entries(e, n);
	if (r == 0)
		insert_locked(e, n, 1);
	pthread_rwlock_unlock(&fm__map.lock);
	if (r < 0)
		munmap(va, len);
	return r;
}

/*
 * Replace [addr, addr+len) atomically, as mmap(MAP_FIXED) does: the new
 * mapping is made and registered elsewhere, then moved over the old one
 * (mremap), so a thread touching the range sees the old memory or the new,
 * never unregistered memory nor a hole. The old entries die first; the new
 * ones are in the map, not live, until the move is done (a fault on them
 * meanwhile is woken and retried).
 * => fm__map.oplock held; => 0, or -errno (the range may be gone then)
 */
static int
replace(void *addr, size_t len, void *tmp, struct fm_entry **e,
    struct fm_entry **dead)
{
	struct fm_vmspace *vs = &fm__vs_self;
	uintptr_t start = (uintptr_t)addr, end = start + len;
	int r;

	pthread_rwlock_wrlock(&fm__map.lock);
	r = fm__map_reserve(3);
	if (r == 0)
		r = evict_locked(vs, (uintptr_t)tmp, (uintptr_t)tmp + len,
		    dead);
	if (r == 0) /* e[0] is at tmp: registered there, then moved */
		r = register_entries(e, 1);
	e[0]->end = start + len;
	e[0]->start = start;
	if (r == 0)
		r = evict_locked(vs, start, end, dead);
	if (r == 0)
		insert_locked(e, 1, 0);
	pthread_rwlock_unlock(&fm__map.lock);
	if (r == 0 &&
	    mremap(tmp, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, addr) ==
	        MAP_FAILED)
		r = -errno;
	if (r == 0)
		fm__arena_moved(tmp, len);
	pthread_rwlock_wrlock(&fm__map.lock);
	if (r == 0) {
		e[0]->gen = atomic_fetch_add(&fm__map.gen, 1) + 1;
		fm__object_link(e[0]->obj, e[0]);
	} else if (fm__map_lookup(vs, start) == e[0]) {
		take_locked(vs, start, end,
		    dead); /* the new one did not come */
		(void)munmap(addr, len);
	}
	pthread_rwlock_unlock(&fm__map.lock);
	if (r < 0)
		fm__arena_unmap(tmp, len);
	return r;
}

/*
 * The engine starts inside a MAP_FIXED call: the program may have freed the
 * range just before, and the engine's start (threads, their memory) must
 * not land there. Hold the range while it starts (if it is free), then
 * leave the reservation to be replaced by the mapping.
 */
static void
start_beside(void *addr, size_t len)
{
	void *hold = mmap(addr, len, PROT_NONE,
	    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE,
	    -1, 0);

	if (fm__engine_start() < 0 && hold == addr)
		munmap(hold, len);
	else if (hold != MAP_FAILED && hold != addr)
		munmap(hold, len); /* an old kernel's hint: not ours to keep */
}

/*
 * Map the runs and put their entries in the map.
 * => the address, or MAP_FAILED with errno and nothing changed (but, for
 *    MAP_FIXED, what the kernel itself already replaced)
 * => fm__map.oplock held
 */
static void *
map_and_insert(void *addr, size_t len, int prot, int flags,
    struct fm_mmap_req *req, const struct run *runs, size_t n,
    struct fm_entry **e)
{
	struct fm_vmspace *vs = &fm__vs_self;
	int fixed = (flags & MAP_FIXED) != 0;
	int move = fixed && n == 1 && !(req->obj->flags & FM_OBJ_HOST);
	struct fm_entry *dead = NULL;
	void *va, *at = NULL;
	int r = 0, hide;

	if (fixed && !(req->obj->flags & FM_OBJ_HOST) && !fm__engine_started())
		start_beside(addr, len);
	if (fixed && !move) {
		/* The old entries die before the kernel replaces them. */
		pthread_rwlock_wrlock(&fm__map.lock);
		r = fm__map_clip(vs, (uintptr_t)addr, (uintptr_t)addr + len);
		if (r == 0)
			(void)kill_locked(vs, (uintptr_t)addr,
			    (uintptr_t)addr + len);
		pthread_rwlock_unlock(&fm__map.lock);
	}
	/*
	 * At an address the program chose, other threads may touch the new
	 * memory before it is registered: it is inaccessible until it is.
	 */
	hide = !move && !(req->obj->flags & FM_OBJ_HOST) && prot != PROT_NONE &&
	    (flags & (MAP_FIXED | MAP_FIXED_NOREPLACE));
	/*
	 * A mapping that replaces another is made in the arena and moved: at
	 * an address of the kernel's choosing it could take a range the
	 * program has just freed and is about to map.
	 */
	if (move && (at = fm__arena_take(len)) == NULL)
		flags &= ~MAP_FIXED;
	va = r < 0 ? MAP_FAILED
	           : map_runs(move ? at : addr, len, hide ? PROT_NONE : prot,
	                 flags, req, runs, n, e);
	for (size_t i = 0; va != MAP_FAILED && i < n; i++)
		e[i]->prot = prot;
	if (va == MAP_FAILED && r == 0)
		r = -errno;
	/* A failed map may have left a hole there: never replace what the
	 * kernel put in it meanwhile. */
	if (va == MAP_FAILED && at != NULL)
		fm__arena_moved(at, len);
	if (r < 0 && fixed && !move) {
		pthread_rwlock_wrlock(&fm__map.lock);
		revive_locked(vs, (uintptr_t)addr, (uintptr_t)addr + len);
		pthread_rwlock_unlock(&fm__map.lock);
	}
	if (r == 0 && move) {
		r = replace(addr, len, va, e, &dead);
		va = addr;
	} else if (r == 0)
		r = enter_new(va, len, e, n, &dead);
	if (r == 0 && hide && mprotect(va, len, prot) < 0) {
		r = -errno;
		pthread_rwlock_wrlock(&fm__map.lock);
		(void)quiesce_locked(vs, (uintptr_t)va, (uintptr_t)va + len, 0);
		take_locked(vs, (uintptr_t)va, (uintptr_t)va + len, &dead);
		pthread_rwlock_unlock(&fm__map.lock);
		munmap(va, len);
	}
	bury(dead, 0);
	if (r < 0) {
		errno = -r;
		return MAP_FAILED;
	}
	return va;
}

static void
populate(struct fm_entry **e, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		fm__entry_ref(e[i]);
		(void)fm__fault_prefetch(e[i], e[i]->start, e[i]->end);
		fm__entry_rele(e[i]);
	}
}

void *
fm_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	struct fm_mmap_req req = {.off = off,
	    .len = len,
	    .prot = prot,
	    .advice = MADV_NORMAL,
	    .maxprot = PROT_READ | PROT_WRITE | PROT_EXEC};
	struct fm_file tmp, *fp = NULL;
	struct fm_entry **e = NULL;
	struct run *runs = NULL;
	ssize_t nruns = 0;
	void *va = MAP_FAILED;
	struct fm_crit c;
	int r;

	if (fm__forked && !(flags & MAP_ANONYMOUS) && fm__fd_inherited(fd)) {
		errno = EBADF; /* the parent's device, not the child's */
		return MAP_FAILED;
	}
	if (fm__forked)
		return mmap(addr, len, prot, flags, fd, off);
	fm__fault_events(); /* what the program unmapped or moved itself */
	if ((r = check_mmap(addr, len, &prot, flags, fd, off, &tmp, &fp)) < 0) {
		file_put(fp, &tmp);
		errno = -r;
		return MAP_FAILED;
	}
	if ((flags & MAP_TYPE_MASK) == MAP_SHARED_VALIDATE)
		flags = (flags & ~MAP_TYPE_MASK) | MAP_SHARED;
	len = FM_PAGES(len) << FM_PAGE_SHIFT;
	req.len = len;
	req.flags = flags;
	fm__crit_enter(&c);
	r = flags & MAP_ANONYMOUS ? fm__host_object(-1, &req.obj)
	                          : fm__mmap_object(fp, prot, flags, &req);
	file_put(fp, &tmp);
	if (r < 0)
		goto out;
	flags = req.flags;
	nruns = make_runs(&req, len >> FM_PAGE_SHIFT, &runs);
	r = nruns < 0 ? (int)nruns : 0;
	if (r == 0 && (e = calloc((size_t)nruns, sizeof(*e))) == NULL)
		r = -ENOMEM;
	for (ssize_t i = 0; r == 0 && i < nruns; i++)
		if ((e[i] = malloc(sizeof(**e))) == NULL)
			r = -ENOMEM;
	if (r == 0) {
		pthread_mutex_lock(&fm__map.oplock);
		va = map_and_insert(addr, len, prot, flags, &req, runs,
		    (size_t)nruns, e);
		r = va == MAP_FAILED ? -errno : 0;
		if (r == 0 && (flags & MAP_POPULATE))
			populate(e, (size_t)nruns);
		pthread_mutex_unlock(&fm__map.oplock);
	}
	for (ssize_t i = 0; r < 0 && e && i < nruns; i++)
		free(e[i]);
	if (r < 0)
		fm_object_rele(req.obj);
	free(e);
	free(runs);
	free(req.pages);
out:
	fm__crit_leave(&c);
	if (r < 0) {
		errno = -r;
		return MAP_FAILED;
	}
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

/*
 * An empty range for mprotect and msync, which succeed on length 0: no
 * entry lies in [0, 0), and the kernel, asked about length 0, says 0.
 */
static int
empty_range(uintptr_t *start, uintptr_t *end)
{
	*start = *end = 0;
	return 0;
}

/*
 * Check an mprotect request as do_mprotect_pkey does: length 0 is success
 * whatever prot says, an overflowing one ENOMEM. No fomap mapping grows:
 * PROT_GROWSDOWN and _GROWSUP are EINVAL on a range that holds one.
 */
static int
check_mprotect(struct fm_vmspace *vs, void *addr, size_t len, int *prot,
    uintptr_t *start, uintptr_t *end)
{
	int grows = *prot & (PROT_GROWSDOWN | PROT_GROWSUP);
	struct fm_map_iter it;
	size_t n;

	*start = (uintptr_t)addr;
	if (grows == (PROT_GROWSDOWN | PROT_GROWSUP) || (*start & FM_PAGE_MASK))
		return -EINVAL;
	if (len == 0)
		return empty_range(start, end);
	if (len > UINTPTR_MAX - *start - FM_PAGE_MASK)
		return -ENOMEM;
	*end = *start + (FM_PAGES(len) << FM_PAGE_SHIFT);
	if (check_prot(prot) < 0)
		return -EINVAL;
	if (grows && !fm__forked) {
		pthread_rwlock_rdlock(&fm__map.lock);
		n = fm__map_iter(&it, vs, *start, *end);
		pthread_rwlock_unlock(&fm__map.lock);
		if (n > 0)
			return -EINVAL;
	}
	return 0;
}

/*
 * Check an msync request as msync(2) does: flags first; a length that
 * rounds up to 0 is empty (success), one that wraps ENOMEM.
 */
static int
check_msync(void *addr, size_t len, int flags, uintptr_t *start, uintptr_t *end)
{
	size_t alen = (len + FM_PAGE_MASK) & ~FM_PAGE_MASK;

	*start = (uintptr_t)addr;
	if ((flags & ~(MS_ASYNC | MS_SYNC | MS_INVALIDATE)) ||
	    (*start & FM_PAGE_MASK) ||
	    (flags & (MS_ASYNC | MS_SYNC)) == (MS_ASYNC | MS_SYNC))
		return -EINVAL;
	if (alen == 0)
		return empty_range(start, end);
	if (alen > UINTPTR_MAX - *start)
		return -ENOMEM;
	*end = *start + alen;
	return 0;
}

/*
 * Begin a change of the address space (fm_munmap, fm_mprotect, advice):
 * => returns inside a critical section, with fm__map.oplock held and
 *    fm__map.lock held exclusive
 */
static void
change_begin(struct fm_crit *c)
{
	fm__crit_enter(c);
	pthread_mutex_lock(&fm__map.oplock);
	pthread_rwlock_wrlock(&fm__map.lock);
}

/*
 * fm_munmap: the entries die (no install reaches them, writes through them
 * fault) before the kernel removes their memory, and leave the map after
 * it did; if it did not, they live again.
 */
int
fm_munmap(void *addr, size_t len)
{
	struct fm_vmspace *vs = &fm__vs_self;
	struct fm_entry *dead = NULL;
	uintptr_t start, end;
	struct fm_crit c;
	int r = check_range(addr, len, &start, &end), any = 0, woken = 0;

	if (fm__forked)
		return munmap(addr, len);
	fm__fault_events();
	if (r < 0)
		return fm__syserr(r);
	change_begin(&c);
	r = fm__map_clip(vs, start, end);
	if (r == 0 && (any = kill_locked(vs, start, end)))
		woken = quiesce_locked(vs, start, end, 0);
	pthread_rwlock_unlock(&fm__map.lock);
	if (r == 0 && munmap(addr, end - start) < 0)
		r = -errno;
	if (any) {
		pthread_rwlock_wrlock(&fm__map.lock);
		if (r == 0)
			take_locked(vs, start, end, &dead);
		else {
			(void)quiesce_locked(vs, start, end, 1);
			revive_locked(vs, start, end);
		}
		pthread_rwlock_unlock(&fm__map.lock);
	}
	pthread_mutex_unlock(&fm__map.oplock);
	bury(dead, woken); /* unregistered before the munmap */
	fm__crit_leave(&c);
	if (r < 0)
		return fm__syserr(r);
	return 0;
}

/*
 * mprotect(2) that failed part way (a hole: ENOMEM; a mapping that may
 * not have prot: EACCES) has changed the mappings before the failure:
 * the entries of [start, end) that lie in one mapping of /proc/self/maps
 * take its protection (one that spans several is left as it was).
 * => fm__map.oplock held
 */
static void
prot_as_kernel(struct fm_vmspace *vs, uintptr_t start, uintptr_t end)
{
	FILE *f = fopen("/proc/self/maps", "re");
	struct fm_map_iter it;
	struct fm_entry *e;
	unsigned long lo, hi;
	char perm[5], line[512];

	while (f != NULL && fgets(line, sizeof line, f) != NULL) {
		if (sscanf(line, "%lx-%lx %4s", &lo, &hi, perm) != 3 ||
		    hi <= start || lo >= end)
			continue;
		int prot = (perm[0] == 'r' ? PROT_READ : 0) |
		    (perm[1] == 'w' ? PROT_WRITE : 0) |
		    (perm[2] == 'x' ? PROT_EXEC : 0);
		pthread_rwlock_wrlock(&fm__map.lock);
		fm__map_iter(&it, vs, lo > start ? lo : start,
		    hi < end ? hi : end);
		while ((e = fm__map_next(&it)) != NULL)
			if (e->start >= lo && e->end <= hi) /* else unknown */
				__atomic_store_n(&e->prot, prot,
				    __ATOMIC_RELEASE);
		pthread_rwlock_unlock(&fm__map.lock);
	}
	if (f != NULL)
		fclose(f);
}

/* The address space whose faults vs's are (its holds are by it). */
static const struct fm_pmap *
space_pm(const struct fm_vmspace *vs)
{
	return vs->pm != NULL ? vs->pm : fm__pmap_self();
}

int
fm__vmspace_protect_begin(struct fm_vmspace *vs, uintptr_t start, uintptr_t end,
    int prot, int *slot)
{
	struct fm_map_iter it;
	struct fm_entry *e;
	int r = 0;

	pthread_rwlock_wrlock(&fm__map.lock);
	fm__map_iter(&it, vs, start, end);
	while (r == 0 && (e = fm__map_next(&it)) != NULL)
		if (prot & ~e->maxprot)
			r = -EACCES;
	if (r == 0)
		r = fm__map_clip(vs, start, end);
	pthread_rwlock_unlock(&fm__map.lock);
	/*
	 * Not under a refusal being told: its access ends with its SIGBUS,
	 * and a page away meanwhile comes back with e->prot.
	 */
	if (r == 0)
		*slot = fm__fault_mprotect_begin(space_pm(vs), start, end);
	return r;
}

void
fm__vmspace_protect_end(struct fm_vmspace *vs, uintptr_t start, uintptr_t end,
    int prot, int slot, int done)
{
	struct fm_map_iter it;
	struct fm_entry *e;

	if (done) {
		pthread_rwlock_wrlock(&fm__map.lock);
		fm__map_iter(&it, vs, start, end);
		while ((e = fm__map_next(&it)) != NULL)
			__atomic_store_n(&e->prot, prot, __ATOMIC_RELEASE);
		pthread_rwlock_unlock(&fm__map.lock);
	}
	fm__fault_mprotect_end(slot);
}

int
fm_mprotect(void *addr, size_t len, int prot)
{
	struct fm_vmspace *vs = &fm__vs_self;
	uintptr_t start, end;
	struct fm_crit c;
	int r = check_mprotect(vs, addr, len, &prot, &start, &end), slot;

	if (fm__forked)
		return mprotect(addr, len, prot);
	fm__fault_events();
	if (r < 0)
		return fm__syserr(r);
	fm__crit_enter(&c);
	pthread_mutex_lock(&fm__map.oplock);
	if ((r = fm__vmspace_protect_begin(vs, start, end, prot, &slot)) == 0) {
		if (mprotect(addr, end - start, prot) < 0) {
			r = -errno;
			prot_as_kernel(vs, start,
			    end); /* it may have done a part */
		}
		fm__vmspace_protect_end(vs, start, end, prot, slot, r == 0);
	}
	pthread_mutex_unlock(&fm__map.oplock);
	fm__crit_leave(&c);
	if (r < 0)
		return fm__syserr(r);
	return 0;
}

/*
 * Collect, referenced, the objects (and their byte ranges) of the shared
 * fomap entries in [start, end), each clipped to its object: a mapping may
 * run past the end (a driver's fo_mmap let it), and that part has nothing
 * to write back. => returns the count, or -ENOMEM
 */
struct span {
	struct fm_object *obj;
	off_t off;
	size_t len;
};

static ssize_t
shared_spans(struct fm_vmspace *vs, uintptr_t start, uintptr_t end,
    struct span **out)
{
	struct fm_map_iter it;
	struct fm_entry *e;
	size_t n, k = 0;
	struct span *v;

	pthread_rwlock_rdlock(&fm__map.lock);
	n = fm__map_iter(&it, vs, start, end);
	v = calloc(n ? n : 1, sizeof(*v));
	while (v && (e = fm__map_next(&it)) != NULL) {
		uintptr_t lo = e->start > start ? e->start : start;
		uintptr_t hi = e->end < end ? e->end : end;
		size_t off = fm__entry_pgidx(e, lo) << FM_PAGE_SHIFT;
		size_t size = fm_object_size(e->obj);

		if (e->pm == NULL || !(e->flags & MAP_SHARED) || off >= size)
			continue;
		fm_object_ref(e->obj);
		v[k++] = (struct span){e->obj, (off_t)off,
		    hi - lo < size - off ? hi - lo : size - off};
	}
	pthread_rwlock_unlock(&fm__map.lock);
	*out = v;
	return v ? (ssize_t)k : -ENOMEM;
}

/* Write back what the shared entries of [start, end) have dirty. */
static int
clean_spans(struct fm_vmspace *vs, uintptr_t start, uintptr_t end)
{
	struct span *v;
	ssize_t n = shared_spans(vs, start, end, &v);
	int r = 0;

	if (n < 0)
		return (int)n;
	for (ssize_t k = 0; k < n; k++) {
		int c = fm_object_clean(v[k].obj, v[k].off, v[k].len);

		if (c < 0 && r == 0)
			r = c;
		fm_object_rele(v[k].obj);
	}
	free(v);
	return r;
}

int
fm_msync(void *addr, size_t len, int flags)
{
	struct fm_vmspace *vs = &fm__vs_self;
	uintptr_t start, end;
	int r = check_msync(addr, len, flags, &start, &end), hole = 0;

	if (r == 0 &&
	    ((flags & ~(MS_ASYNC | MS_SYNC | MS_INVALIDATE)) ||
	        (flags & (MS_ASYNC | MS_SYNC)) == (MS_ASYNC | MS_SYNC)))
		r = -EINVAL;
	if (r < 0)
		return fm__syserr(r);
	/*
	 * Host files are written back here. msync(2) goes on past a hole and
	 * says ENOMEM at the end, so the engine's mappings are written back
	 * before it is returned; its other errors (EBUSY) stop it where met.
	 */
	if (msync(addr, end - start, flags) < 0 && (hole = -errno) != -ENOMEM)
		return fm__syserr(hole);
	if (!fm__forked) { /* else the parent's objects: msync(2) only */
		fm__fault_events();
		r = clean_spans(vs, start, end);
	}
	if (r < 0 || hole < 0)
		return fm__syserr(r < 0 ? r : hole);
	return 0;
}

/*
 * MADV_WILLNEED is advice: one call makes at most FM_WILLNEED_MAX bytes of
 * the engine's entries resident, and never more than an eighth of the
 * memory free when it is called, so that no huge sparse mapping can
 * exhaust memory through it.
 */
#define FM_WILLNEED_MAX ((size_t)32 << 20)

static size_t
willneed_budget(void)
{
	struct sysinfo si;
	size_t b = FM_WILLNEED_MAX;

	if (sysinfo(&si) == 0 && (uint64_t)si.freeram * si.mem_unit / 8 < b)
		b = (size_t)((uint64_t)si.freeram * si.mem_unit / 8);
	return b & ~FM_PAGE_MASK;
}

/*
 * MADV_WILLNEED on the engine's entries: make resident and map, each entry
 * referenced, with no map lock held across the pager's fills.
 */
static int
willneed(struct fm_vmspace *vs, uintptr_t start, uintptr_t end)
{
	struct fm_entry **v, *e;
	struct fm_map_iter it;
	size_t n, k = 0, budget = willneed_budget();
	struct fm_crit c;
	int r = 0;

	fm__crit_enter(&c);
	pthread_rwlock_rdlock(&fm__map.lock);
	n = fm__map_iter(&it, vs, start, end);
	v = calloc(n ? n : 1, sizeof(*v));
	while (v && (e = fm__map_next(&it)) != NULL)
		if (e->pm != NULL && !e->dead) {
			fm__entry_ref(e);
			v[k++] = e;
		}
	pthread_rwlock_unlock(&fm__map.lock);
	if (v == NULL)
		r = -ENOMEM;
	for (size_t j = 0; j < k; j++) {
		uintptr_t lo, hi;

		e = v[j];
		lo = e->start > start ? e->start : start;
		hi = e->end < end ? e->end : end;
		if (hi < lo) /* split meanwhile */
			hi = lo;
		if (hi - lo > budget)
			hi = lo + budget;
		budget -= hi - lo;
		if (r == 0 && hi > lo)
			r = fm__fault_prefetch(e, lo, hi);
		/* Advice: a pager's error shows at the access, not here. */
		if (r != -ENOMEM)
			r = 0;
		fm__entry_rele(e);
	}
	free(v);
	fm__crit_leave(&c);
	return r;
}

/* MADV_NORMAL, _RANDOM, _SEQUENTIAL: the entries' fault-around policy. */
static int
set_advice(struct fm_vmspace *vs, uintptr_t start, uintptr_t end, int advice)
{
	struct fm_map_iter it;
	struct fm_entry *e;
	struct fm_crit c;
	int r;

	change_begin(&c);
	r = fm__map_clip(vs, start, end);
	fm__map_iter(&it, vs, start, end);
	while (r == 0 && (e = fm__map_next(&it)) != NULL)
		e->advice = advice;
	pthread_rwlock_unlock(&fm__map.lock);
	pthread_mutex_unlock(&fm__map.oplock);
	fm__crit_leave(&c);
	return r;
}

/*
 * MADV_WILLNEED, _NORMAL, _RANDOM and _SEQUENTIAL: the kernel's madvise of
 * [start, end) first (the engine's mappings are its VMAs too), then the
 * engine's entries. madvise(2) goes on past a hole and says ENOMEM at the
 * end, so the entries are advised before it is returned; its other errors
 * end the call. => 0 or -errno
 */
static int
advise_entries(struct fm_vmspace *vs, uintptr_t start, uintptr_t end,
    int advice)
{
	int hole = 0, r;

	if (madvise((void *)start, end - start, advice) < 0)
		hole = -errno;
	/* (EBADF for WILLNEED: no swap, anonymous memory, nothing to read) */
	if (hole == -EBADF && advice == MADV_WILLNEED)
		hole = 0;
	if (hole < 0 && hole != -ENOMEM)
		return hole;
	if (advice == MADV_WILLNEED)
		r = willneed(vs, start, end);
	else
		r = set_advice(vs, start, end, advice);
	return r < 0 ? r : hole;
}

static int
engine_entries(struct fm_vmspace *vs, uintptr_t start, uintptr_t end)
{
	struct fm_map_iter it;
	struct fm_entry *e;
	int found = 0;

	pthread_rwlock_rdlock(&fm__map.lock);
	fm__map_iter(&it, vs, start, end);
	while ((e = fm__map_next(&it)) != NULL)
		found |= e->pm != NULL;
	pthread_rwlock_unlock(&fm__map.lock);
	return found;
}

#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif
#ifndef MADV_DONTNEED_LOCKED
#define MADV_DONTNEED_LOCKED 24
#endif
#ifndef MADV_SOFT_OFFLINE
#define MADV_SOFT_OFFLINE 101
#endif
#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#define MADV_GUARD_REMOVE 103
#endif

/*
 * A piece of an madvise range: a part of one engine entry (obj set,
 * referenced), or a stretch between them, which the kernel advises.
 */
struct piece {
	uintptr_t start, end;
	struct fm_object *obj;
	off_t off; /* of start in obj */
	int flags, maxprot, prot;
};

/* The pieces of [start, end), in order. => the count, or -ENOMEM */
static ssize_t
pieces(struct fm_vmspace *vs, uintptr_t start, uintptr_t end,
    struct piece **out)
{
	struct fm_map_iter it;
	struct fm_entry *e;
	struct piece *v;
	uintptr_t at = start;
	size_t n, k = 0;

	pthread_rwlock_rdlock(&fm__map.lock);
	n = fm__map_iter(&it, vs, start, end);
	v = calloc(2 * n + 1, sizeof(*v));
	while (v && (e = fm__map_next(&it)) != NULL) {
		uintptr_t lo = e->start > start ? e->start : start;
		uintptr_t hi = e->end < end ? e->end : end;

		if (e->pm == NULL || e->dead) /* the kernel's, or leaving */
			continue;
		if (lo > at)
			v[k++] = (struct piece){.start = at, .end = lo};
		fm_object_ref(e->obj);
		v[k++] = (struct piece){lo, hi, e->obj,
		    (off_t)(fm__entry_pgidx(e, lo) << FM_PAGE_SHIFT), e->flags,
		    e->maxprot, e->prot};
		at = hi;
	}
	if (v && at < end)
		v[k++] = (struct piece){.start = at, .end = end};
	pthread_rwlock_unlock(&fm__map.lock);
	*out = v;
	return v ? (ssize_t)k : -ENOMEM;
}

/*
 * MADV_POPULATE_READ, _WRITE on a piece of an engine entry: fill and map
 * its pages as faults would (a shared page the pager tracks stays write-
 * protected until written; a private one is copied). Past the object's
 * end an access gives SIGBUS: EFAULT, as the kernel says.
 */
static int
populate_piece(struct fm_vmspace *vs, const struct piece *p, int advice)
{
	size_t osize = fm_object_size(p->obj);
	uintptr_t hi = p->end;
	struct fm_entry *e;
	struct fm_crit c;
	int r = 0;

	if (!(p->prot &
	        (advice == MADV_POPULATE_WRITE ? PROT_WRITE : PROT_READ)))
		return -EINVAL;
	if ((size_t)p->off >= osize)
		return -EFAULT;
	if (hi - p->start > osize - (size_t)p->off)
		hi = p->start + (osize - (size_t)p->off);
	/* The entry referenced, no map lock across the pager's fills. */
	fm__crit_enter(&c);
	pthread_rwlock_rdlock(&fm__map.lock);
	e = fm__map_lookup(vs, p->start);
	if (e && (e->obj != p->obj || e->pm == NULL || e->dead))
		e = NULL;
	if (e)
		fm__entry_ref(e);
	pthread_rwlock_unlock(&fm__map.lock);
	if (e) {
		r = fm__fault_prefetch(e, p->start, hi < e->end ? hi : e->end);
		fm__entry_rele(e);
	}
	fm__crit_leave(&c);
	if (r == 0 && advice == MADV_POPULATE_WRITE && !(p->flags & MAP_SHARED))
		r = madvise((void *)p->start, hi - p->start, advice) < 0
		    ? -errno
		    : 0;
	if (r == 0 && hi < p->end)
		r = -EFAULT;
	return r == 0 || r == -ENOMEM || r == -EFAULT || r == -EINVAL ? r
	                                                              : -EFAULT;
}

/* An advice with its own meaning on a piece of an engine entry. */
static int
advise_piece(struct fm_vmspace *vs, const struct piece *p, int advice)
{
	size_t osize = fm_object_size(p->obj);

	switch (advice) {
	case MADV_REMOVE:
		/* The pages and their contents go: the object drops them. */
		if (!(p->flags & MAP_SHARED) || !(p->maxprot & PROT_WRITE))
			return -EACCES;
		if ((size_t)p->off >= osize)
			return 0;
		return fm_object_unmap(p->obj, p->off,
		    p->end - p->start < osize - (size_t)p->off
		        ? p->end - p->start
		        : osize - (size_t)p->off,
		    FM_UNMAP_DISCARD);
	case MADV_POPULATE_READ:
	case MADV_POPULATE_WRITE:
		return populate_piece(vs, p, advice);
	case MADV_COLLAPSE:
		return -EINVAL; /* no huge pages: a device's mapping */
	case MADV_GUARD_INSTALL:
		return -EINVAL; /* the engine's fills would map over them */
	default:
		return 0; /* DOFORK, HUGEPAGE: see fomap.h */
	}
}

/*
 * Advise [start, end) piece by piece, in order, as the kernel walks VMAs:
 * a hole is ENOMEM at the end (POPULATE stops there), any other error
 * stops the walk.
 */
static int
advise_pieces(struct fm_vmspace *vs, uintptr_t start, uintptr_t end, int advice)
{
	int populate =
	    advice == MADV_POPULATE_READ || advice == MADV_POPULATE_WRITE;
	struct piece *v;
	ssize_t n = pieces(vs, start, end, &v);
	int r = n < 0 ? (int)n : 0, hole = 0;

	for (ssize_t k = 0; k < n; k++) {
		if (r == 0 && v[k].obj)
			r = advise_piece(vs, &v[k], advice);
		else if (r == 0 &&
		    madvise((void *)v[k].start, v[k].end - v[k].start, advice) <
		        0)
			r = -errno;
		if (r == -ENOMEM && !populate) {
			hole = r;
			r = 0;
		}
		if (v[k].obj)
			fm_object_rele(v[k].obj);
	}
	free(v);
	return r < 0 ? r : hole;
}

int
fm_madvise(void *addr, size_t len, int advice)
{
	struct fm_vmspace *vs = &fm__vs_self;
	uintptr_t start = (uintptr_t)addr, end;
	size_t alen = (len + FM_PAGE_MASK) & ~FM_PAGE_MASK;
	int r;

	/*
	 * A bad range or length 0: the kernel's answer (it checks the advice
	 * first), and nothing is done. In a fork child: the system call.
	 */
	if ((start & FM_PAGE_MASK) || alen == 0 || alen > UINTPTR_MAX - start ||
	    fm__forked)
		return madvise(addr, len, advice);
	fm__fault_events();
	end = start + alen;
	switch (advice) {
	case MADV_WILLNEED:
	case MADV_NORMAL:
	case MADV_RANDOM:
	case MADV_SEQUENTIAL:
		r = advise_entries(vs, start, end, advice);
		break;
	case MADV_REMOVE:
	case MADV_DOFORK:
	case MADV_HUGEPAGE:
	case MADV_COLLAPSE:
	case MADV_GUARD_INSTALL:
	case MADV_POPULATE_READ:
	case MADV_POPULATE_WRITE:
		r = advise_pieces(vs, start, end, advice);
		break;
	case MADV_DONTNEED: /* zaps PTEs; the object store keeps its pages */
	case MADV_DONTNEED_LOCKED:
	case MADV_FREE: /* the kernel refuses it on any file mapping */
	case MADV_DONTFORK: /* what fomap sets on the engine's mappings */
	case MADV_MERGEABLE:
	case MADV_UNMERGEABLE:
	case MADV_NOHUGEPAGE:
	case MADV_DONTDUMP:
	case MADV_DODUMP:
	case MADV_WIPEONFORK: /* refused too */
	case MADV_KEEPONFORK:
	case MADV_COLD:
	case MADV_PAGEOUT: /* a page of the store goes to swap and back */
	case MADV_HWPOISON:
	case MADV_SOFT_OFFLINE:
	case MADV_GUARD_REMOVE:
		/* The kernel's meaning is the mapping's too. */
		return madvise(addr, len, advice);
	default:
		if (engine_entries(vs, start,
		        end)) /* unknown: not on fomap's */
			r = -EINVAL;
		else
			return madvise(addr, len, advice);
	}
	if (r < 0)
		return fm__syserr(r);
	return 0;
}

/*
 * ------------------------------------------------------------------------
 * Another process's address space (kern/client.c): the process makes,
 * moves, protects and removes its mappings itself; the map follows what
 * it is told here and what the process's userfaultfd reports (UNMAP and
 * REMAP events, as for a raw munmap of this process's own).
 */

int
fm__vmspace_enter(struct fm_vmspace *vs, uintptr_t va, size_t len,
    struct fm_object *obj, uint64_t pgoff, int prot, int maxprot, int flags)
{
	struct fm_entry *e = malloc(sizeof(*e)), *dead = NULL;
	struct fm_crit c;
	int r;

	if (e == NULL)
		return -ENOMEM;
	*e = (struct fm_entry){.start = va,
	    .end = va + len,
	    .dead = 1, /* until it is linked to its object */
	    .obj = obj,
	    .pgoff = pgoff,
	    .prot = prot,
	    .maxprot = maxprot,
	    .advice = MADV_NORMAL,
	    .flags = flags & MAP_PRIVATE ? MAP_PRIVATE : MAP_SHARED,
	    .vs = vs,
	    .pm = vs->pm,
	    .pmode = (flags & MAP_SHARED) && (maxprot & PROT_WRITE)
	        ? FM_PMAP_SHARED
	        : FM_PMAP_PRIVATE};
	fm__crit_enter(&c);
	pthread_mutex_lock(&fm__map.oplock);
	/* What the map still has there is stale (invariant 5: enter_new). */
	pthread_rwlock_wrlock(&fm__map.lock);
	r = evict_locked(vs, va, va + len, &dead);
	if (r == 0)
		r = register_entries(&e, 1);
	if (r == 0)
		insert_locked(&e, 1, 1);
	pthread_rwlock_unlock(&fm__map.lock);
	pthread_mutex_unlock(&fm__map.oplock);
	bury(dead, 0);
	fm__crit_leave(&c);
	if (r < 0)
		free(e); /* (the caller keeps its reference on obj) */
	return r;
}

void
fm__vmspace_remove(struct fm_vmspace *vs, uintptr_t start, uintptr_t end)
{
	struct fm_entry *dead = NULL;
	struct fm_crit c;

	change_begin(&c);
	if (evict_locked(vs, start, end, &dead) == 0)
		(void)fm__pmap_unregister(vs->pm, start, end - start);
	pthread_rwlock_unlock(&fm__map.lock);
	pthread_mutex_unlock(&fm__map.oplock);
	bury(dead, 0);
	fm__crit_leave(&c);
}

void
fm__vmspace_clear(struct fm_vmspace *vs)
{
	struct fm_entry *dead = NULL;
	struct fm_crit c;

	change_begin(&c);
	take_locked(vs, 0, UINTPTR_MAX, &dead);
	pthread_rwlock_unlock(&fm__map.lock);
	pthread_mutex_unlock(&fm__map.oplock);
	bury(dead, 0);
	fm__crit_leave(&c);
}

int
fm__vmspace_msync(struct fm_vmspace *vs, uintptr_t start, uintptr_t end)
{
	fm__fault_events();
	return clean_spans(vs, start, end);
}

int
fm__vmspace_advise(struct fm_vmspace *vs, uintptr_t start, uintptr_t end,
    int advice)
{
	fm__fault_events();
	switch (advice) {
	case MADV_WILLNEED:
		return willneed(vs, start, end);
	case MADV_NORMAL:
	case MADV_RANDOM:
	case MADV_SEQUENTIAL:
		return set_advice(vs, start, end, advice);
	case MADV_DONTFORK:
	case MADV_WIPEONFORK:
		/* Its fork child's address space has a copy of every mapping
		 * (EVENT_FORK): one the kernel left out would be stale there. */
		return -EINVAL;
	default:
		return 0; /* the process's own madvise does the rest */
	}
}

void (*fm__client_forked)(struct fm_vmspace *vs, int ufd, uint64_t gen);

void
fm__vmspace_copy(struct fm_vmspace *vs, struct fm_vmspace *child, uint64_t gen)
{
	struct fm_map_iter it;
	struct fm_entry *e, *c;

	/*
	 * The child has what the parent had mapped when its fork's event
	 * was read: the entries older than it (the UNMAP events read before
	 * it are followed already, as the events are, in their order).
	 */
	pthread_rwlock_wrlock(&fm__map.lock);
	fm__map_iter(&it, vs, 0, UINTPTR_MAX);
	while ((e = fm__map_next(&it)) != NULL) {
		if (e->gen > gen || e->dead || e->pm == NULL)
			continue;
		if ((c = malloc(sizeof(*c))) == NULL)
			break; /* (its faults there find no entry: SIGBUS) */
		fm__entry_copy(c, e);
		c->vs = child;
		c->pm = child->pm;
		c->dead = 1;
		fm_object_ref(c->obj);
		(void)fm__map_insert_copy(c);
		fm__object_link(c->obj, c);
	}
	pthread_rwlock_unlock(&fm__map.lock);
}
