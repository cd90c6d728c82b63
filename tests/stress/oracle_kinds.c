/*
 * oracle_kinds.c: the objects under the oracle (oracle.h), one or_kind
 * each, with the pagers and the device written for the test:
 *
 *   zero    anonymous zero-fill object; discard zeroes
 *   store   the store pager on a temporary file; data survives discard
 *   slow    a pgo_fault pager that fills slowly through the window, with a
 *           pattern, partly, and maps some pages write-protected; discard
 *           gives the pattern back
 *   put     pgo_get / pgo_put over a malloc'ed array and a write hook that
 *           refuses the pages the model made read-only
 *   gem     the gem driver: two opens share a buffer; discard is eviction
 *   guard   the guard driver: protection (refuse or record), removal,
 *           revocation (discard: revoke, wait, restore: zero-filled)
 *   device  a legacy d_mmap device, served by the device pager, with a
 *           reversed layout; writers also use the driver's view (kva)
 *   file    a regular file, mapped by the host kernel; discard punches
 *
 * Each returns 0 or -errno, as the test's calls it makes do.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <fomap/driver.h>
#include <fomap/fomap.h>
#include <fomap/gem.h>
#include <fomap/guard.h>

#include "../test.h"
#include "../unit/testdev.h"
#include "oracle.h"

#define RW (PROT_READ | PROT_WRITE)

static atomic_uint devno; /* device names: one per run */

static size_t
obj_len(const struct oracle *o)
{
	return (size_t)o->npages * OR_PG;
}

/* ------------------------------------------------------------------------
 * Objects made with the driver API, mapped through the test device.
 */

/* Map o->obj through a new test device: every mapping through one open. */
static int
testdev_all(struct oracle *o)
{
	int fd;

	snprintf(o->devname, sizeof o->devname, "oracle%u",
	    atomic_fetch_add(&devno, 1));
	fd = testdev_open(o->devname, o->obj, RW, O_RDWR);
	for (int s = 0; s < o->k->nshared + o->k->nprivate; s++) {
		o->fd[s] = fd;
		o->off[s] = 0;
	}
	return 0;
}

static void
obj_teardown(struct oracle *o)
{
	if (o->fd[0] >= 0)
		fm_close(o->fd[0]);
	(void)fm_dev_unregister(o->devname);
	if (o->obj != NULL)
		fm_object_rele(o->obj);
	free(o->kpriv);
}

static int
obj_keep(struct oracle *o, unsigned pg, unsigned n)
{
	return fm_object_unmap(o->obj, (off_t)pg * OR_PG, (size_t)n * OR_PG,
	    FM_UNMAP_KEEP);
}

static int
obj_discard(struct oracle *o, unsigned pg, unsigned n)
{
	return fm_object_unmap(o->obj, (off_t)pg * OR_PG, (size_t)n * OR_PG,
	    FM_UNMAP_DISCARD);
}

static int
obj_protect(struct oracle *o, unsigned pg, unsigned n, int how)
{
	return fm_object_protect(o->obj, (off_t)pg * OR_PG, (size_t)n * OR_PG,
	    how == P_RW ? RW : PROT_READ);
}

static int
obj_clean(struct oracle *o, unsigned pg, unsigned n)
{
	return fm_object_clean(o->obj, (off_t)pg * OR_PG, (size_t)n * OR_PG);
}

/* zero: the anonymous pager. */

static int
zero_setup(struct oracle *o)
{
	int r = fm_object_create(NULL, obj_len(o), NULL, &o->obj);

	return r < 0 ? r : testdev_all(o);
}

const struct or_kind or_zero = {
    .name = "zero",
    .nshared = 2,
    .nprivate = 1,
    .flags = OK_RESETS | OK_ENGINE,
    .setup = zero_setup,
    .teardown = obj_teardown,
    .keep = obj_keep,
    .discard = obj_discard,
    .protect = obj_protect,
    .clean = obj_clean,
};

/* store: the store pager over a temporary file that holds the pattern. */

struct store {
	int file;
};

static int
store_setup(struct oracle *o)
{
	char path[] = "/tmp/fomap-oracle-XXXXXX";
	struct store *st = calloc(1, sizeof(*st));
	uint64_t page[OR_WORDS];
	int r;

	if (st == NULL)
		return -ENOMEM;
	o->kpriv = st;
	if ((st->file = mkstemp(path)) < 0)
		return -errno;
	unlink(path);
	for (unsigned pg = 0; pg < o->npages; pg++) {
		or_fill_base(o, pg, page);
		if (pwrite(st->file, page, OR_PG, (off_t)pg * OR_PG) != OR_PG)
			return -EIO;
	}
	if ((r = fm_store_create(st->file, 0, obj_len(o), &o->obj)) < 0)
		return r;
	return testdev_all(o);
}

static void
store_final(struct oracle *o)
{
	struct store *st = o->kpriv;
	uint64_t page[OR_WORDS];

	for (unsigned pg = 0; pg < o->npages; pg++) {
		if (pread(st->file, page, OR_PG, (off_t)pg * OR_PG) != OR_PG)
			or_fail(o, F_CALL, "store: pread of the file");
		or_check_page(o, pg, page, "the store's file");
	}
}

static void
store_teardown(struct oracle *o)
{
	struct store *st = o->kpriv;

	if (st != NULL && st->file >= 0)
		close(st->file);
	obj_teardown(o);
}

const struct or_kind or_store = {
    .name = "store",
    .nshared = 2,
    .nprivate = 1,
    .flags = OK_PATTERN | OK_ENGINE,
    .setup = store_setup,
    .teardown = store_teardown,
    .keep = obj_keep,
    .discard = obj_discard,
    .protect = obj_protect,
    .clean = obj_clean,
    .final = store_final,
};

/*
 * slow: a full fault handler that fills slowly through the window. It
 * fills a prefix of what it is offered now and then, maps fewer pages
 * than the engine would, and maps odd pages write-protected (their first
 * write is a WP fault that the engine allows: no hook, not read-only).
 */

struct slow {
	struct oracle *o;
	atomic_ulong calls;
};

static int
slow_fault(struct fm_fault *f)
{
	struct slow *sl = fm_object_private(f->obj);
	struct oracle *o = sl->o;
	uint64_t h = or_mix(atomic_fetch_add(&sl->calls, 1) ^ o->salt);
	unsigned n = f->npages;
	char *w;

	f->rdonly = f->pgidx % 2 == 1;
	if (f->around > 1 && h % 4 == 0)
		f->around = 1 + (unsigned)(h >> 8) % f->around;
	if (n == 0)
		return 0; /* resident: a minor fault */
	if (n > 1 && h % 3 == 0)
		n = 1 + (unsigned)(h >> 16) % n;
	if (o->slow_us > 0)
		usleep(o->slow_us);
	if ((w = fm_object_window(f->obj)) == NULL)
		return -errno;
	for (unsigned i = 0; i < n; i++)
		or_fill_base(o, (unsigned)f->pgidx + i,
		    (uint64_t *)(w + (f->pgidx + i) * OR_PG));
	f->npages = n;
	return 0;
}

static const struct fm_pagerops slow_ops = {
    .pgo_fault = slow_fault,
};

static int
slow_setup(struct oracle *o)
{
	struct slow *sl = calloc(1, sizeof(*sl));
	int r;

	if (sl == NULL)
		return -ENOMEM;
	sl->o = o;
	o->kpriv = sl;
	if ((r = fm_object_create(&slow_ops, obj_len(o), sl, &o->obj)) < 0)
		return r;
	return testdev_all(o);
}

const struct or_kind or_slow = {
    .name = "slow",
    .nshared = 2,
    .nprivate = 1,
    .flags = OK_RESETS | OK_PATTERN | OK_ENGINE,
    .setup = slow_setup,
    .teardown = obj_teardown,
    .keep = obj_keep,
    .discard = obj_discard,
    .protect = obj_protect,
    .clean = obj_clean,
};

/*
 * put: pgo_get and pgo_put over a malloc'ed array, and a write hook that
 * refuses the pages the model made read-only and whose calls the oracle
 * bounds (or_hook). One shared mapping, so that the bound is exact: at
 * most one allowed call per page between two epoch events.
 */

struct put {
	struct oracle *o;
	uint64_t *backing;
	atomic_uchar ro[OR_MAXPAGES]; /* the driver's read-only pages */
};

static int
put_get(struct fm_object *obj, uint64_t pg, unsigned *npages)
{
	struct put *pp = fm_object_private(obj);
	unsigned n = *npages < 4 ? *npages : 4;

	*npages = n;
	return fm_object_write(obj, (off_t)pg * OR_PG,
	    pp->backing + pg * OR_WORDS, (size_t)n * OR_PG);
}

static int
put_put(struct fm_object *obj, uint64_t pg, unsigned npages, int flags)
{
	struct put *pp = fm_object_private(obj);

	return fm_object_read(obj, (off_t)pg * OR_PG,
	    pp->backing + pg * OR_WORDS, (size_t)npages * OR_PG);
}

static int
put_write(struct fm_object *obj, uint64_t pg)
{
	struct put *pp = fm_object_private(obj);

	return or_hook(pp->o, (unsigned)pg, atomic_load(&pp->ro[pg]));
}

static const struct fm_pagerops put_ops = {
    .pgo_get = put_get,
    .pgo_put = put_put,
    .pgo_write = put_write,
};

static int
put_setup(struct oracle *o)
{
	struct put *pp = calloc(1, sizeof(*pp));
	int r;

	if (pp == NULL || (pp->backing = malloc(obj_len(o))) == NULL) {
		free(pp);
		return -ENOMEM;
	}
	pp->o = o;
	o->kpriv = pp;
	for (unsigned pg = 0; pg < o->npages; pg++)
		or_fill_base(o, pg, pp->backing + pg * OR_WORDS);
	if ((r = fm_object_create(&put_ops, obj_len(o), pp, &o->obj)) < 0)
		return r;
	return testdev_all(o);
}

/* The driver's state first, then fomap's (as guard does). */
static int
put_protect(struct oracle *o, unsigned pg, unsigned n, int how)
{
	struct put *pp = o->kpriv;

	for (unsigned i = pg; i < pg + n; i++)
		atomic_store(&pp->ro[i], how != P_RW);
	return obj_protect(o, pg, n, how);
}

static void
put_final(struct oracle *o)
{
	struct put *pp = o->kpriv;

	for (unsigned pg = 0; pg < o->npages; pg++)
		or_check_page(o, pg, pp->backing + pg * OR_WORDS,
		    "the pager's array");
}

static void
put_teardown(struct oracle *o)
{
	struct put *pp = o->kpriv;
	uint64_t *backing = pp != NULL ? pp->backing : NULL;

	obj_teardown(o); /* the last reference writes back: free after */
	free(backing);
}

const struct or_kind or_put = {
    .name = "put",
    .nshared = 1,
    .nprivate = 1,
    .flags = OK_PATTERN | OK_ENGINE,
    .setup = put_setup,
    .teardown = put_teardown,
    .keep = obj_keep,
    .discard = obj_discard,
    .protect = put_protect,
    .clean = obj_clean,
    .final = put_final,
};

/* ------------------------------------------------------------------------
 * gem: one buffer, two opens (the second by its global name); eviction
 * is the discard. Mapping 0 and 2 through the first open, 1 the second.
 */

struct gem {
	int fd2;
	uint32_t h;
};

/* A device's ioctl. => 0 or -errno */
static int
dev_ioctl(int fd, unsigned long cmd, void *arg)
{
	return fm_ioctl(fd, cmd, arg) < 0 ? -errno : 0;
}

static int
gem_setup(struct oracle *o)
{
	struct gem *g = calloc(1, sizeof(*g));
	struct fm_gem_create c = {.size = obj_len(o)};
	struct fm_gem_mmap_offset m1 = {0}, m2 = {0};
	struct fm_gem_flink fl = {0};
	struct fm_gem_open op = {0};
	int fd, r;

	if (g == NULL)
		return -ENOMEM;
	o->kpriv = g;
	g->fd2 = -1;
	if ((fd = fm_open(FM_GEM_DEV, O_RDWR)) < 0)
		return -errno;
	o->fd[0] = o->fd[2] = fd;
	if ((r = dev_ioctl(fd, FM_GEM_CREATE, &c)) < 0)
		return r;
	g->h = m1.handle = fl.handle = c.handle;
	if ((r = dev_ioctl(fd, FM_GEM_MMAP_OFFSET, &m1)) < 0 ||
	    (r = dev_ioctl(fd, FM_GEM_FLINK, &fl)) < 0)
		return r;
	if ((g->fd2 = fm_open(FM_GEM_DEV, O_RDWR)) < 0)
		return -errno;
	op.name = fl.name;
	if ((r = dev_ioctl(g->fd2, FM_GEM_OPEN, &op)) < 0)
		return r;
	m2.handle = op.handle;
	if ((r = dev_ioctl(g->fd2, FM_GEM_MMAP_OFFSET, &m2)) < 0)
		return r;
	o->fd[1] = g->fd2;
	o->off[0] = o->off[2] = (off_t)m1.offset;
	o->off[1] = (off_t)m2.offset;
	return 0;
}

static int
gem_evict(struct oracle *o, unsigned pg, unsigned n)
{
	struct gem *g = o->kpriv;
	struct fm_gem_evict e = {.handle = g->h};

	return dev_ioctl(o->fd[0], FM_GEM_EVICT, &e);
}

static void
gem_teardown(struct oracle *o)
{
	struct gem *g = o->kpriv;

	if (o->fd[0] >= 0)
		fm_close(o->fd[0]);
	if (g != NULL && g->fd2 >= 0)
		fm_close(g->fd2);
	free(g);
}

const struct or_kind or_gem = {
    .name = "gem",
    .nshared = 2,
    .nprivate = 1,
    .flags = OK_WHOLE | OK_ENGINE,
    .setup = gem_setup,
    .teardown = gem_teardown,
    .discard = gem_evict,
};

/* ------------------------------------------------------------------------
 * guard: a region of our size; two shared mappings (it refuses private).
 */

static int
guard_setup(struct oracle *o)
{
	struct fm_guard_setup su = {.size = obj_len(o)};
	int fd = fm_open(FM_GUARD_DEV, O_RDWR);

	if (fd < 0)
		return -errno;
	o->fd[0] = o->fd[1] = fd;
	return dev_ioctl(fd, FM_GUARD_SETUP, &su);
}

static int
guard_keep(struct oracle *o, unsigned pg, unsigned n)
{
	struct fm_guard_remove rm = {.off = (uint64_t)pg * OR_PG,
	    .len = (uint64_t)n * OR_PG,
	    .policy = FM_GUARD_REFILL};

	return dev_ioctl(o->fd[0], FM_GUARD_REMOVE, &rm);
}

/* Revoke, let the writers meet it a while, restore (zero-filled). */
static int
guard_revoke(struct oracle *o, unsigned pg, unsigned n)
{
	struct fm_guard_remove rm = {.off = (uint64_t)pg * OR_PG,
	    .len = (uint64_t)n * OR_PG,
	    .policy = FM_GUARD_REVOKE};
	struct fm_guard_restore rs = {.off = rm.off, .len = rm.len};
	int r = dev_ioctl(o->fd[0], FM_GUARD_REMOVE, &rm);

	usleep(50 + (unsigned)(or_mix(rm.off ^ o->salt) % 400));
	return r < 0 ? r : dev_ioctl(o->fd[0], FM_GUARD_RESTORE, &rs);
}

static int
guard_protect(struct oracle *o, unsigned pg, unsigned n, int how)
{
	struct fm_guard_protect pr = {.off = (uint64_t)pg * OR_PG,
	    .len = (uint64_t)n * OR_PG,
	    .prot = how == P_RW ? RW : PROT_READ,
	    .policy = how == P_RW ? 0
	        : how == P_RECORD ? FM_GUARD_RECORD
	                          : FM_GUARD_REFUSE};

	return dev_ioctl(o->fd[0], FM_GUARD_PROTECT, &pr);
}

static void
guard_teardown(struct oracle *o)
{
	if (o->fd[0] >= 0)
		fm_close(o->fd[0]);
}

const struct or_kind or_guard = {
    .name = "guard",
    .nshared = 2,
    .nprivate = 0,
    .flags = OK_RESETS | OK_REVOKES | OK_RECORD | OK_ENGINE,
    .setup = guard_setup,
    .teardown = guard_teardown,
    .keep = guard_keep,
    .discard = guard_revoke,
    .protect = guard_protect,
};

/* ------------------------------------------------------------------------
 * device: legacy d_mmap over the device's memory, reversed: offset page i
 * is device page npages-1-i. Two opens; the driver's view is o->kva.
 */

static int
udv_open(struct fm_dev *dev, int flags, struct fm_file *fp)
{
	struct oracle *o = fm_dev_private(dev);
	void *kva;
	int r = fm_dev_memory(dev, obj_len(o), &kva);

	if (r == 0)
		o->kva = kva;
	return r;
}

static fm_cookie_t
udv_mmap(struct fm_dev *dev, off_t off, int prot)
{
	struct oracle *o = fm_dev_private(dev);

	if (off < 0 || off % OR_PG || off / OR_PG >= o->npages)
		return FM_COOKIE_INVALID;
	return o->npages - 1 - (fm_cookie_t)(off / OR_PG);
}

static const struct fm_cdevsw udv_cdevsw = {
    .d_open = udv_open,
    .d_close = fm_nullclose,
    .d_read = fm_noread,
    .d_write = fm_nowrite,
    .d_ioctl = fm_noioctl,
    .d_mmap = udv_mmap,
};

static int
device_setup(struct oracle *o)
{
	char path[64];
	int r;

	snprintf(o->devname, sizeof o->devname, "oracle-udv%u",
	    atomic_fetch_add(&devno, 1));
	if ((r = fm_dev_register(o->devname, &udv_cdevsw, o)) < 0)
		return r;
	snprintf(path, sizeof path, FM_DEVPREFIX "%s", o->devname);
	if ((o->fd[0] = o->fd[2] = fm_open(path, O_RDWR)) < 0 ||
	    (o->fd[1] = fm_open(path, O_RDWR)) < 0)
		return -errno;
	return 0;
}

static void
device_final(struct oracle *o)
{
	for (unsigned pg = 0; pg < o->npages; pg++)
		or_check_page(o, pg, o->kva + pg * OR_WORDS,
		    "the device's memory");
}

static void
device_teardown(struct oracle *o)
{
	for (int s = 0; s < 2; s++)
		if (o->fd[s] >= 0)
			fm_close(o->fd[s]);
	(void)fm_dev_unregister(o->devname);
}

const struct or_kind or_device = {
    .name = "device",
    .nshared = 2,
    .nprivate = 1,
    .flags = OK_REVERSED | OK_KVA | OK_ENGINE,
    .setup = device_setup,
    .teardown = device_teardown,
    .final = device_final,
};

/* ------------------------------------------------------------------------
 * file: a regular file (zeros), fm_open'ed, mapped by the host kernel.
 * Discard punches a hole (zeros again), through a descriptor of its own.
 */

struct file {
	int fd;
};

static int
file_setup(struct oracle *o)
{
	char path[] = "/tmp/fomap-oracle-XXXXXX";
	struct file *f = calloc(1, sizeof(*f));
	int fd;

	if (f == NULL)
		return -ENOMEM;
	o->kpriv = f;
	if ((f->fd = mkstemp(path)) < 0)
		return -errno;
	fd = ftruncate(f->fd, (off_t)obj_len(o)) < 0 ? -1
	                                             : fm_open(path, O_RDWR);
	unlink(path);
	if (fd < 0)
		return -errno;
	for (int s = 0; s < 3; s++)
		o->fd[s] = fd;
	return 0;
}

static int
file_punch(struct oracle *o, unsigned pg, unsigned n)
{
	struct file *f = o->kpriv;

	return fallocate(f->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
	           (off_t)pg * OR_PG, (off_t)n * OR_PG) < 0
	    ? -errno
	    : 0;
}

static void
file_final(struct oracle *o)
{
	struct file *f = o->kpriv;
	uint64_t page[OR_WORDS];

	for (unsigned pg = 0; pg < o->npages; pg++) {
		if (pread(f->fd, page, OR_PG, (off_t)pg * OR_PG) != OR_PG)
			or_fail(o, F_CALL, "file: pread");
		or_check_page(o, pg, page, "the file");
	}
}

static void
file_teardown(struct oracle *o)
{
	struct file *f = o->kpriv;

	if (o->fd[0] >= 0)
		fm_close(o->fd[0]);
	if (f != NULL && f->fd >= 0)
		close(f->fd);
	free(f);
}

const struct or_kind or_file = {
    .name = "file",
    .nshared = 2,
    .nprivate = 1,
    .flags = OK_RESETS,
    .setup = file_setup,
    .teardown = file_teardown,
    .discard = file_punch,
    .final = file_final,
};
