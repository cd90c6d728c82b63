/*
 * gem.c: the gem device, a DRM/GEM-style cloning device with buffer
 * objects, per-open handles, global names, and eviction to backing storage.
 *
 * Map of the driver:
 *
 *   gem_open        d_open: clones the open (fm_file_clone) with its own
 *                   handle table, so two opens never see each other's handles
 *   gem_ioctl       create, close, mmap offset, flink, open by name, evict,
 *                   info, stats (include/fomap/gem.h)
 *   gem_mmap        fo_mmap: a fake offset -> the buffer's object, through
 *                   the open's tree of its buffers by fake offset (tsearch)
 *   gem_fault       pgo_fault: fill from backing storage if the page was
 *                   saved, else with zeros
 *   gem_put         pgo_put: save dirty pages to backing storage
 *   gem_detach      pgo_detach: free the buffer
 *
 * A buffer is an fm_object whose private data is its struct gem_bo; the
 * object's reference count is the buffer's. Handles and mappings hold
 * references; a global name lives while some open holds a handle.
 *
 * Backing storage is one unlinked file per process (in $FOMAP_GEM_SWAPDIR,
 * else /var/tmp; a memfd when no directory will do). A buffer has its own
 * place there (bo->swap), given back when it is freed and reused, so that
 * create/free cycles never run the file past the kernel's limits; fake
 * mmap offsets are never reused. A page's bit in bo->saved says the file holds its
 * latest clean contents: a page evicted with the bit clear was all zeros.
 *
 * Lock order: gem_file.lock, then gem.lock, then gem_bo.lock. No lock is
 * held across an fm_object_* call (those can call back into the pager).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <search.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <fomap/driver.h>
#include <fomap/gem.h>

#define PAGES(b) (((b) + FM_PAGE_SIZE - 1) / FM_PAGE_SIZE)
#define FAKE_BASE ((uint64_t)1 << 32) /* first fake mmap offset */
#define MAXHANDLES 65536 /* per open */

struct gem_bo {
	struct fm_object *obj; /* the buffer's object (its reference count) */
	size_t size;
	uint64_t fake; /* fake mmap offset; immutable */
	uint64_t swap; /* its place in backing storage; immutable */
	uint32_t name; /* global name, 0: none (gem.lock) */
	unsigned handles; /* handles to it in every open (gem.lock) */
	struct gem_bo *next; /* every live buffer (gem.lock) */
	pthread_mutex_t lock;
	uint8_t *saved; /* bit per page: backing holds it (lock) */
	atomic_ulong faults, minor, zerofill, refill, nsaved, evictions;
};

struct gem_file {
	pthread_mutex_t lock;
	struct gem_bo **h; /* h[handle - 1] */
	uint32_t nh;
	void *byfake; /* tsearch(3) tree of struct gem_ref, by fake offset */
};

/*
 * A buffer this open holds handles to, in gf->byfake; or, bo NULL, a key
 * to look up the buffer that holds fake offset off.
 */
struct gem_ref {
	struct gem_bo *bo;
	uint64_t off;
	unsigned handles; /* this open's handles to bo (gem_file.lock) */
};

static struct {
	pthread_mutex_t lock;
	struct gem_bo *bos;
	uint64_t nbos, bytes, named;
	uint64_t next_fake; /* never reused: an old offset maps nothing */
	uint64_t next_swap; /* backing storage: reused, see swap_alloc */
	struct {
		uint64_t at, len;
	} freed[64];
	unsigned nfreed;
	uint32_t next_name;
	int swapfd; /* backing storage, or -1 */
} gem = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .next_fake = FAKE_BASE,
    .next_name = 1,
    .swapfd = -1,
};

/* ------------------------------------------------------------------------
 * Backing storage.
 */

/* => gem.lock held; returns the descriptor or -errno */
static int
swap_open_locked(void)
{
	const char *dir = getenv("FOMAP_GEM_SWAPDIR");

	if (gem.swapfd >= 0)
		return gem.swapfd;
	gem.swapfd =
	    open(dir ? dir : "/var/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (gem.swapfd < 0)
		gem.swapfd = memfd_create("fomap-gem-backing", MFD_CLOEXEC);
	return gem.swapfd < 0 ? -errno : gem.swapfd;
}

static int
swap_fd(void)
{
	int fd;

	pthread_mutex_lock(&gem.lock);
	fd = swap_open_locked();
	pthread_mutex_unlock(&gem.lock);
	return fd;
}

static off_t
swap_off(const struct gem_bo *bo, uint64_t pg)
{
	return (off_t)(bo->swap + pg * FM_PAGE_SIZE);
}

static int
saved_test(const struct gem_bo *bo, uint64_t pg)
{
	return (bo->saved[pg / 8] >> (pg % 8)) & 1;
}

/* Copy len bytes between the backing file and buf, all or nothing. */
static int
swap_io(int fd, int wr, char *buf, size_t len, off_t off)
{
	for (size_t done = 0; done < len;) {
		ssize_t k = wr
		    ? pwrite(fd, buf + done, len - done, off + (off_t)done)
		    : pread(fd, buf + done, len - done, off + (off_t)done);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		if (k == 0 && wr)
			return -EIO;
		if (k ==
		    0) { /* past the end of the file: never written, zeros */
			memset(buf + done, 0, len - done);
			break;
		}
		done += (size_t)k;
	}
	return 0;
}

/* ------------------------------------------------------------------------
 * The pager.
 */

/*
 * Fill busy pages [pg, pg+n) through the window: runs saved in backing
 * storage are read back, the others are zeroed.
 * => no lock held; the pages are busy for us
 */
static int
gem_fill(struct gem_bo *bo, struct fm_object *obj, uint64_t pg, unsigned n)
{
	char *w = fm_object_window(obj);
	int fd = -1, r = 0;

	if (w == NULL)
		return -errno;
	for (uint64_t i = pg; i < pg + n && r == 0;) {
		uint64_t j = i;
		int saved;

		pthread_mutex_lock(&bo->lock);
		saved = saved_test(bo, i);
		while (j < pg + n && saved_test(bo, j) == saved)
			j++;
		pthread_mutex_unlock(&bo->lock);
		if (saved) {
			if (fd < 0 && (fd = r = swap_fd()) < 0)
				break;
			r = swap_io(fd, 0, w + i * FM_PAGE_SIZE,
			    (j - i) * FM_PAGE_SIZE, swap_off(bo, i));
			atomic_fetch_add(&bo->refill, j - i);
		} else {
			/* (the kernel clears them: no fault in the window) */
			r = fm_object_zero(obj, (off_t)(i * FM_PAGE_SIZE),
			    (j - i) * FM_PAGE_SIZE);
			atomic_fetch_add(&bo->zerofill, j - i);
		}
		i = j;
	}
	return r;
}

/*
 * pgo_fault: every fault on a buffer. A resident page (npages 0) needs
 * nothing; otherwise fill all the busy pages offered.
 * => runs in an engine thread, no lock held
 * => a negative errno (backing storage failed) gives SIGBUS
 */
static int
gem_fault(struct fm_fault *f)
{
	struct gem_bo *bo = fm_object_private(f->obj);

	atomic_fetch_add(&bo->faults, 1);
	if (f->npages == 0) {
		atomic_fetch_add(&bo->minor, 1);
		return 0;
	}
	return gem_fill(bo, f->obj, f->pgidx, f->npages);
}

/*
 * pgo_put: save dirty pages [pg, pg+n) to backing storage. The pages are
 * busy and write-protected everywhere, so nobody changes them meanwhile.
 * A page that is not resident is skipped: its saved copy, if any, is
 * already the latest, and reading it would only see zeros.
 * => no lock held; a negative errno leaves the pages dirty
 */
static int
gem_put(struct fm_object *obj, uint64_t pg, unsigned n, int flags)
{
	struct gem_bo *bo = fm_object_private(obj);
	unsigned char *vec = malloc(n);
	char *w = fm_object_window(obj);
	int fd = swap_fd(), r;

	r = vec == NULL ? -ENOMEM : w == NULL ? -errno : fd < 0 ? fd : 0;
	if (r == 0)
		r = fm_object_mincore(obj, (off_t)(pg * FM_PAGE_SIZE),
		    n * FM_PAGE_SIZE, vec);
	for (unsigned i = 0; r == 0 && i < n;) {
		unsigned j = i;

		while (j < n &&
		    (vec[j] & FM_PG_RESIDENT) == (vec[i] & FM_PG_RESIDENT))
			j++;
		if (vec[i] & FM_PG_RESIDENT) {
			r = swap_io(fd, 1, w + (pg + i) * FM_PAGE_SIZE,
			    (j - i) * FM_PAGE_SIZE, swap_off(bo, pg + i));
			if (r < 0)
				break;
			pthread_mutex_lock(&bo->lock);
			for (uint64_t k = pg + i; k < pg + j; k++)
				bo->saved[k / 8] |= (uint8_t)(1u << (k % 8));
			pthread_mutex_unlock(&bo->lock);
			atomic_fetch_add(&bo->nsaved, j - i);
		}
		i = j;
	}
	free(vec);
	return r;
}

/*
 * A place of len bytes in backing storage: a freed one that is large
 * enough, or new. Places are reused so that create/free cycles never run
 * the backing file past the size the kernel allows.
 * => gem.lock held
 */
static uint64_t
swap_alloc_locked(uint64_t len)
{
	len = PAGES(len) * FM_PAGE_SIZE;
	for (unsigned i = 0; i < gem.nfreed; i++) {
		uint64_t at = gem.freed[i].at;

		if (gem.freed[i].len < len)
			continue;
		gem.freed[i].at += len;
		gem.freed[i].len -= len;
		if (gem.freed[i].len == 0)
			gem.freed[i] = gem.freed[--gem.nfreed];
		return at;
	}
	gem.next_swap += len;
	return gem.next_swap - len;
}

/* => gem.lock held */
static void
swap_free_locked(uint64_t at, uint64_t len)
{
	len = PAGES(len) * FM_PAGE_SIZE;
	if (at + len == gem.next_swap)
		gem.next_swap = at;
	else if (gem.nfreed < sizeof gem.freed / sizeof gem.freed[0]) {
		gem.freed[gem.nfreed].at = at;
		gem.freed[gem.nfreed++].len = len;
	}
}

/*
 * pgo_detach: the last reference is gone (no handle, no mapping): free the
 * buffer and its place in backing storage.
 */
static void
gem_detach(struct fm_object *obj)
{
	struct gem_bo *bo = fm_object_private(obj), **pp;
	int fd = -1;

	pthread_mutex_lock(&gem.lock);
	for (pp = &gem.bos; *pp != bo; pp = &(*pp)->next)
		;
	*pp = bo->next;
	gem.nbos--;
	gem.bytes -= bo->size;
	if (gem.swapfd >= 0)
		(void)fallocate(gem.swapfd,
		    FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, swap_off(bo, 0),
		    (off_t)bo->size);
	swap_free_locked(bo->swap, bo->size);
	if (gem.nbos == 0) { /* nothing left to back: give the file back */
		fd = gem.swapfd;
		gem.swapfd = -1;
		gem.next_swap = 0; /* and start its offsets afresh */
		gem.nfreed = 0;
	}
	pthread_mutex_unlock(&gem.lock);
	if (fd >= 0)
		close(fd);
	pthread_mutex_destroy(&bo->lock);
	free(bo->saved);
	free(bo);
}

static const struct fm_pagerops gem_pagerops = {
    .pgo_fault = gem_fault,
    .pgo_put = gem_put,
    .pgo_detach = gem_detach,
};

/* ------------------------------------------------------------------------
 * Buffers and handles.
 */

/* A new buffer of size bytes. => 0 with *bop holding one reference */
static int
bo_create(uint64_t size, struct gem_bo **bop)
{
	struct gem_bo *bo = calloc(1, sizeof(*bo));
	int r;

	if (bo == NULL ||
	    (bo->saved = calloc(PAGES(size) / 8 + 1, 1)) == NULL) {
		free(bo);
		return -ENOMEM;
	}
	bo->size = size;
	pthread_mutex_init(&bo->lock, NULL);
	r = fm_object_create(&gem_pagerops, size, bo, &bo->obj);
	if (r < 0) {
		pthread_mutex_destroy(&bo->lock);
		free(bo->saved);
		free(bo);
		return r;
	}
	pthread_mutex_lock(&gem.lock);
	bo->fake = gem.next_fake;
	gem.next_fake +=
	    size + FM_PAGE_SIZE; /* a gap: a buffer's end is no other's start */
	bo->swap = swap_alloc_locked(size);
	bo->next = gem.bos;
	gem.bos = bo;
	gem.nbos++;
	gem.bytes += size;
	pthread_mutex_unlock(&gem.lock);
	*bop = bo;
	return 0;
}

/* The fake offsets r covers: [*lo, *hi). */
static void
ref_range(const struct gem_ref *r, uint64_t *lo, uint64_t *hi)
{
	*lo = r->bo != NULL ? r->bo->fake : r->off;
	*hi = r->bo != NULL ? r->bo->fake + r->bo->size : r->off + 1;
}

/*
 * gf->byfake's order: buffers never share a fake offset, so two refs (or
 * a key and a ref) are equal only when their ranges overlap.
 */
static int
ref_cmp(const void *a, const void *b)
{
	uint64_t alo, ahi, blo, bhi;

	ref_range(a, &alo, &ahi);
	ref_range(b, &blo, &bhi);
	return ahi <= blo ? -1 : bhi <= alo ? 1 : 0;
}

/* The ref of the buffer holding fake offset off, or NULL. O(log n) */
static struct gem_ref *
ref_find_locked(struct gem_file *gf, uint64_t off)
{
	struct gem_ref key = {.bo = NULL, .off = off};
	void *p = tfind(&key, &gf->byfake, ref_cmp);

	return p != NULL ? *(struct gem_ref **)p : NULL;
}

/*
 * Count one more handle of gf to bo in gf->byfake.
 * => 0, or -ENOMEM: nothing changed; => gf->lock held
 */
static int
ref_hold_locked(struct gem_file *gf, struct gem_bo *bo)
{
	struct gem_ref *r = ref_find_locked(gf, bo->fake);

	if (r == NULL) {
		if ((r = calloc(1, sizeof(*r))) == NULL)
			return -ENOMEM;
		r->bo = bo;
		if (tsearch(r, &gf->byfake, ref_cmp) == NULL) {
			free(r);
			return -ENOMEM;
		}
	}
	r->handles++;
	return 0;
}

/* One handle of gf to bo fewer. => gf->lock held; a handle of gf held bo */
static void
ref_drop_locked(struct gem_file *gf, struct gem_bo *bo)
{
	struct gem_ref *r = ref_find_locked(gf, bo->fake);

	if (r == NULL || r->bo != bo) { /* our own table and tree disagree */
		fprintf(stderr, "gem: %s: buffer %p not in its open's tree\n",
		    __func__, (void *)bo);
		abort();
	}
	if (--r->handles == 0) {
		(void)tdelete(r, &gf->byfake, ref_cmp);
		free(r);
	}
}

/*
 * Give bo (one reference, counted in bo->handles by the caller) a handle in
 * gf. => 0 with *hp set; -ENOSPC or -ENOMEM: nothing changed
 */
static int
handle_insert(struct gem_file *gf, struct gem_bo *bo, uint32_t *hp)
{
	uint32_t i;
	int r = 0;

	pthread_mutex_lock(&gf->lock);
	for (i = 0; i < gf->nh && gf->h[i] != NULL; i++)
		;
	if (i == gf->nh) {
		uint32_t n = gf->nh ? gf->nh * 2 : 16;
		struct gem_bo **v;

		if (n > MAXHANDLES)
			n = MAXHANDLES;
		v = n > gf->nh ? realloc(gf->h, n * sizeof(*v)) : NULL;
		if (v == NULL) {
			r = gf->nh == MAXHANDLES ? -ENOSPC : -ENOMEM;
			goto out;
		}
		memset(v + gf->nh, 0, (n - gf->nh) * sizeof(*v));
		gf->h = v;
		gf->nh = n;
	}
	if ((r = ref_hold_locked(gf, bo)) < 0)
		goto out;
	gf->h[i] = bo;
	*hp = i + 1;
out:
	pthread_mutex_unlock(&gf->lock);
	return r;
}

/* The buffer of a handle, referenced. => NULL: no such handle */
static struct gem_bo *
handle_get(struct gem_file *gf, uint32_t h)
{
	struct gem_bo *bo = NULL;

	pthread_mutex_lock(&gf->lock);
	if (h >= 1 && h <= gf->nh && (bo = gf->h[h - 1]) != NULL)
		fm_object_ref(bo->obj);
	pthread_mutex_unlock(&gf->lock);
	return bo;
}

/* Drop one handle's hold on bo: the name goes with the last handle. */
static void
handle_drop(struct gem_bo *bo)
{
	pthread_mutex_lock(&gem.lock);
	if (--bo->handles == 0 && bo->name != 0) {
		bo->name = 0;
		gem.named--;
	}
	pthread_mutex_unlock(&gem.lock);
	fm_object_rele(bo->obj);
}

static int
handle_close(struct gem_file *gf, uint32_t h)
{
	struct gem_bo *bo = NULL;

	pthread_mutex_lock(&gf->lock);
	if (h >= 1 && h <= gf->nh && (bo = gf->h[h - 1]) != NULL) {
		gf->h[h - 1] = NULL;
		ref_drop_locked(gf, bo);
	}
	pthread_mutex_unlock(&gf->lock);
	if (bo == NULL)
		return -ENOENT;
	handle_drop(bo);
	return 0;
}

/* ------------------------------------------------------------------------
 * The ioctls. Each returns 0 or a negative errno; on error nothing changed.
 */

static int
ioc_create(struct gem_file *gf, struct fm_gem_create *a)
{
	struct gem_bo *bo;
	uint64_t size;
	int r;

	if (a->pad != 0 || a->size == 0 || a->size > FM_GEM_MAXSIZE)
		return -EINVAL;
	size = PAGES(a->size) * FM_PAGE_SIZE;
	if ((r = bo_create(size, &bo)) < 0)
		return r;
	bo->handles = 1; /* not yet visible to anyone else */
	if ((r = handle_insert(gf, bo, &a->handle)) < 0) {
		handle_drop(bo);
		return r;
	}
	a->size = size;
	return 0;
}

static int
ioc_mmap_offset(struct gem_file *gf, struct fm_gem_mmap_offset *a)
{
	struct gem_bo *bo;

	if (a->pad != 0 || a->handle == 0)
		return -EINVAL;
	if ((bo = handle_get(gf, a->handle)) == NULL)
		return -ENOENT;
	a->offset = bo->fake;
	fm_object_rele(bo->obj);
	return 0;
}

static int
ioc_flink(struct gem_file *gf, struct fm_gem_flink *a)
{
	struct gem_bo *bo;

	if (a->handle == 0)
		return -EINVAL;
	if ((bo = handle_get(gf, a->handle)) == NULL)
		return -ENOENT;
	pthread_mutex_lock(&gem.lock);
	if (bo->name == 0) {
		bo->name =
		    gem.next_name++; /* never reused: a stale name finds nothing */
		gem.named++;
	}
	a->name = bo->name;
	pthread_mutex_unlock(&gem.lock);
	fm_object_rele(bo->obj);
	return 0;
}

static int
ioc_open(struct gem_file *gf, struct fm_gem_open *a)
{
	struct gem_bo *bo;
	int r;

	if (a->name == 0)
		return -EINVAL;
	pthread_mutex_lock(&gem.lock);
	for (bo = gem.bos; bo && bo->name != a->name; bo = bo->next)
		;
	if (bo != NULL) { /* named, so some handle holds a reference */
		bo->handles++;
		fm_object_ref(bo->obj);
	}
	pthread_mutex_unlock(&gem.lock);
	if (bo == NULL)
		return -ENOENT;
	if ((r = handle_insert(gf, bo, &a->handle)) < 0) {
		handle_drop(bo);
		return r;
	}
	a->size = bo->size;
	return 0;
}

static int
ioc_evict(struct gem_file *gf, struct fm_gem_evict *a)
{
	struct gem_bo *bo;
	int r;

	if (a->pad != 0 || a->handle == 0)
		return -EINVAL;
	if ((bo = handle_get(gf, a->handle)) == NULL)
		return -ENOENT;
	/* Saves dirty pages through gem_put, punches them out: PTEs are gone. */
	r = fm_object_unmap(bo->obj, 0, bo->size, FM_UNMAP_DISCARD);
	if (r == 0)
		atomic_fetch_add(&bo->evictions, 1);
	fm_object_rele(bo->obj);
	return r;
}

static int
ioc_info(struct gem_file *gf, struct fm_gem_info *a)
{
	struct gem_bo *bo;
	unsigned char *vec;
	uint64_t n;
	int r;

	if (a->handle == 0)
		return -EINVAL;
	if ((bo = handle_get(gf, a->handle)) == NULL)
		return -ENOENT;
	n = PAGES(bo->size);
	vec = malloc(n);
	r = vec ? fm_object_mincore(bo->obj, 0, bo->size, vec) : -ENOMEM;
	if (r == 0) {
		uint32_t h = a->handle;

		memset(a, 0, sizeof(*a));
		a->handle = h;
		for (uint64_t i = 0; i < n; i++) {
			a->resident += (vec[i] & FM_PG_RESIDENT) != 0;
			a->dirty += (vec[i] & FM_PG_DIRTY) != 0;
		}
		pthread_mutex_lock(&gem.lock);
		a->name = bo->name;
		pthread_mutex_unlock(&gem.lock);
		a->size = bo->size;
		a->offset = bo->fake;
		a->faults = atomic_load(&bo->faults);
		a->minor = atomic_load(&bo->minor);
		a->zerofill = atomic_load(&bo->zerofill);
		a->refill = atomic_load(&bo->refill);
		a->saved = atomic_load(&bo->nsaved);
		a->evictions = atomic_load(&bo->evictions);
	}
	free(vec);
	fm_object_rele(bo->obj);
	return r;
}

static int
ioc_stats(struct fm_gem_stats *a)
{
	pthread_mutex_lock(&gem.lock);
	a->buffers = gem.nbos;
	a->bytes = gem.bytes;
	a->named = gem.named;
	pthread_mutex_unlock(&gem.lock);
	return 0;
}

/*
 * fo_ioctl: the requests of gem.h.
 * => ENOTTY: unknown request; EFAULT: NULL argument
 */
static int
gem_ioctl(struct fm_file *fp, unsigned long cmd, void *data)
{
	struct gem_file *gf = fm_file_data(fp);

	switch (cmd) {
	case FM_GEM_CREATE:
	case FM_GEM_CLOSE:
	case FM_GEM_MMAP_OFFSET:
	case FM_GEM_FLINK:
	case FM_GEM_OPEN:
	case FM_GEM_EVICT:
	case FM_GEM_INFO:
	case FM_GEM_STATS:
		if (data == NULL)
			return -EFAULT;
		break;
	default:
		return -ENOTTY;
	}
	switch (cmd) {
	case FM_GEM_CREATE:
		return ioc_create(gf, data);
	case FM_GEM_CLOSE: {
		struct fm_gem_close *a = data;

		return a->pad != 0 || a->handle == 0
		    ? -EINVAL
		    : handle_close(gf, a->handle);
	}
	case FM_GEM_MMAP_OFFSET:
		return ioc_mmap_offset(gf, data);
	case FM_GEM_FLINK:
		return ioc_flink(gf, data);
	case FM_GEM_OPEN:
		return ioc_open(gf, data);
	case FM_GEM_EVICT:
		return ioc_evict(gf, data);
	case FM_GEM_INFO:
		return ioc_info(gf, data);
	default:
		return ioc_stats(data);
	}
}

/*
 * fo_mmap: resolve a fake offset to a buffer this open holds a handle to.
 * A mapping may start inside the buffer; it may not run past its end.
 * => EINVAL: the offset names no buffer of this open; ENXIO: too long
 * => 0 with req->obj referenced and req->off the offset in the buffer
 */
static int
gem_mmap(struct fm_file *fp, struct fm_mmap_req *req)
{
	struct gem_file *gf = fm_file_data(fp);
	uint64_t off = (uint64_t)req->off;
	struct gem_bo *bo = NULL;
	struct gem_ref *ref;
	int r = -EINVAL;

	pthread_mutex_lock(&gf->lock);
	if ((ref = ref_find_locked(gf, off)) != NULL)
		bo = ref->bo;
	if (bo != NULL && req->len > bo->size - (off - bo->fake))
		r = -ENXIO;
	else if (bo != NULL) {
		fm_object_ref(bo->obj);
		req->obj = bo->obj;
		req->off = (off_t)(off - bo->fake);
		req->maxprot = PROT_READ | PROT_WRITE;
		r = 0;
	}
	pthread_mutex_unlock(&gf->lock);
	return r;
}

/* fo_close: the last descriptor of this open is gone: drop its handles. */
static int
gem_close(struct fm_file *fp)
{
	struct gem_file *gf = fm_file_data(fp);

	for (uint32_t i = 0; i < gf->nh; i++)
		if (gf->h[i] != NULL)
			handle_drop(gf->h[i]);
	tdestroy(gf->byfake, free);
	pthread_mutex_destroy(&gf->lock);
	free(gf->h);
	free(gf);
	return 0;
}

static const struct fm_fileops gem_fileops = {
    .fo_ioctl = gem_ioctl,
    .fo_close = gem_close,
    .fo_mmap = gem_mmap,
};

/* d_open: every open is a clone with its own handle table. */
static int
gem_open(struct fm_dev *dev, int flags, struct fm_file *fp)
{
	struct gem_file *gf = calloc(1, sizeof(*gf));

	if (gf == NULL)
		return -ENOMEM;
	pthread_mutex_init(&gf->lock, NULL);
	fm_file_clone(fp, &gem_fileops, gf);
	return 0;
}

const struct fm_cdevsw fm__gem_cdevsw = {
    .d_open = gem_open,
    .d_close = fm_nullclose,
    .d_read = fm_noread,
    .d_write = fm_nowrite,
    .d_ioctl = fm_noioctl,
    .d_mmap = fm_nommap,
};
