/*
 * test_hooks.c: the hook contract. A test device whose every hook (cdevsw,
 * fileops, pagerops) counts its calls and can be told to fail: each hook
 * is called when it should be, and each failure gives the user an errno or
 * SIGBUS and leaves fomap consistent. First the null device, whose hooks
 * are the stubs.
 */
#include <fcntl.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <unistd.h>

#include <fomap/driver.h>
#include <fomap/fomap.h>

#include "../test.h"
#include "testdev.h"

/* ------------------------------------------------------------------------
 * null
 */

TEST(null_reads_eof_and_swallows_writes)
{
	int fd = fm_open(FM_DEVPREFIX "null", O_RDWR);
	char buf[16] = "untouched";

	ASSERT_GE(fd, 0);
	ASSERT_EQ(fm_read(fd, buf, sizeof buf), 0);
	ASSERT(strcmp(buf, "untouched") == 0);
	ASSERT_EQ(fm_write(fd, "hello", 5), 5);
	ASSERT_EQ(fm_write(fd, buf, 0), 0);
	ASSERT_ERRNO(fm_ioctl(fd, 0x1234, buf), ENOTTY);
	ASSERT_OK(fm_close(fd));
	ASSERT_ERRNO(fm_read(fd, buf, 1), EBADF);
}

TEST(null_cannot_be_mapped)
{
	int fd = fm_open(FM_DEVPREFIX "null", O_RDWR);
	int ro = fm_open(FM_DEVPREFIX "null", O_RDONLY);

	ASSERT_GE(fd, 0);
	ASSERT_GE(ro, 0);
	ASSERT_ERRNO(fm_mmap(NULL, PG, PROT_READ, MAP_SHARED, fd, 0), ENODEV);
	ASSERT_ERRNO(fm_mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
	                 0),
	    ENODEV);
	ASSERT_ERRNO(fm_mmap(NULL, PG, PROT_READ, MAP_PRIVATE, fd, 0), ENODEV);
	ASSERT_ERRNO(fm_mmap(NULL, PG, PROT_READ, MAP_PRIVATE, ro, 0), ENODEV);
	ASSERT_ERRNO(fm_mmap(NULL, 16 * PG, PROT_READ, MAP_SHARED, ro, 64 * PG),
	    ENODEV);
	/* Still a working device afterwards. */
	ASSERT_EQ(fm_write(fd, "x", 1), 1);
	ASSERT_OK(fm_close(fd));
	ASSERT_OK(fm_close(ro));
	ASSERT_ERRNO(fm_open(FM_DEVPREFIX "nosuchdevice", O_RDWR), ENXIO);
}

/* ------------------------------------------------------------------------
 * The test device: "plain" (every call to its cdevsw) and "clone" (its
 * d_open clones, every call to its fileops). Both map tobj.
 */

static struct {
	atomic_int d_open, d_close, d_read, d_write, d_ioctl, d_mmap_single;
	atomic_int fo_read, fo_write, fo_ioctl, fo_close, fo_mmap;
	atomic_int pgo_reference, pgo_detach, pgo_get, pgo_put, pgo_fault,
	    pgo_write;
	atomic_int put_pages;
	off_t last_off;
	int last_flags;
} calls;

/* Volatile: the engine's threads read it while the test's accesses fault. */
static volatile struct {
	int open_err; /* d_open fails with it */
	int io_err; /* read, write, ioctl fail with it */
	int mmap_err; /* the mmap hook fails with it */
	int mmap_noobj; /* ... says yes without an object */
	off_t mmap_off; /* ... puts this offset in the request */
	int maxprot;
	int64_t fail_pg; /* pgo_get / pgo_fault fail on this page */
	int nofill; /* pgo_fault claims success, fills nothing */
	int put_err;
	int write_err;
} cfg = {.maxprot = PROT_READ | PROT_WRITE, .fail_pg = -1};

static struct fm_object *tobj;

static ssize_t
t_dread(struct fm_dev *dev, void *buf, size_t len, off_t off)
{
	calls.d_read++;
	calls.last_off = off;
	if (cfg.io_err)
		return cfg.io_err;
	memset(buf, 'r', len);
	return (ssize_t)len;
}

static ssize_t
t_dwrite(struct fm_dev *dev, const void *buf, size_t len, off_t off)
{
	calls.d_write++;
	calls.last_off = off;
	return cfg.io_err ? cfg.io_err : (ssize_t)len;
}

static int
t_dioctl(struct fm_dev *dev, unsigned long cmd, void *data, int flags)
{
	calls.d_ioctl++;
	calls.last_flags = flags;
	if (cmd != 1)
		return -ENOTTY;
	return cfg.io_err;
}

static int
t_mmap_common(struct fm_mmap_req *req)
{
	if (cfg.mmap_err)
		return cfg.mmap_err;
	req->maxprot = cfg.maxprot;
	if (cfg.mmap_noobj)
		return 0;
	fm_object_ref(tobj);
	req->obj = tobj;
	req->off = cfg.mmap_off;
	return 0;
}

static int
t_dmmap(struct fm_dev *dev, struct fm_mmap_req *req)
{
	calls.d_mmap_single++;
	return t_mmap_common(req);
}

static int
t_dclose(struct fm_dev *dev, int flags)
{
	calls.d_close++;
	return 0;
}

static int
t_dopen(struct fm_dev *dev, int flags, struct fm_file *fp)
{
	calls.d_open++;
	return cfg.open_err;
}

static const struct fm_cdevsw plain_cdevsw = {
    .d_open = t_dopen,
    .d_close = t_dclose,
    .d_read = t_dread,
    .d_write = t_dwrite,
    .d_ioctl = t_dioctl,
    .d_mmap_single = t_dmmap,
};

/* The clone's per-open state: which open it is. */
struct topen {
	int id;
};

static ssize_t
t_foread(struct fm_file *fp, void *buf, size_t len, off_t *offp)
{
	struct topen *o = fm_file_data(fp);

	calls.fo_read++;
	memset(buf, '0' + o->id, len);
	*offp += (off_t)len;
	return (ssize_t)len;
}

static ssize_t
t_fowrite(struct fm_file *fp, const void *buf, size_t len, off_t *offp)
{
	calls.fo_write++;
	return cfg.io_err ? cfg.io_err : (ssize_t)len;
}

static int
t_foioctl(struct fm_file *fp, unsigned long cmd, void *data)
{
	struct topen *o = fm_file_data(fp);

	calls.fo_ioctl++;
	if (cmd != 2)
		return -ENOTTY;
	*(int *)data = o->id;
	return 0;
}

static int
t_foclose(struct fm_file *fp)
{
	calls.fo_close++;
	free(fm_file_data(fp));
	return 0;
}

static int
t_fommap(struct fm_file *fp, struct fm_mmap_req *req)
{
	calls.fo_mmap++;
	return t_mmap_common(req);
}

/* Only what differs from the device file's status: its size. */
static int
t_fostat(struct fm_file *fp, struct stat *st)
{
	(void)fp;
	st->st_size = 4 * PG;
	return 0;
}

static const struct fm_fileops clone_fileops = {
    .fo_read = t_foread,
    .fo_write = t_fowrite,
    .fo_ioctl = t_foioctl,
    .fo_close = t_foclose,
    .fo_stat = t_fostat,
    .fo_mmap = t_fommap,
};

static int
t_clone_open(struct fm_dev *dev, int flags, struct fm_file *fp)
{
	static int next_id;
	struct topen *o = malloc(sizeof(*o));

	calls.d_open++;
	if (cfg.open_err || o == NULL) {
		free(o);
		return cfg.open_err ? cfg.open_err : -ENOMEM;
	}
	o->id = ++next_id;
	fm_file_clone(fp, &clone_fileops, o);
	return 0;
}

static const struct fm_cdevsw clone_cdevsw = {
    .d_open = t_clone_open,
    .d_close = t_dclose, /* never called: fo_close replaces it */
};

/* Fill pages [pg, pg+n) with 'a' + page % 26. */
static int
t_fill(struct fm_object *obj, uint64_t pg, unsigned n)
{
	char buf[PG];

	for (unsigned i = 0; i < n; i++) {
		memset(buf, 'a' + (int)((pg + i) % 26), PG);
		int r = fm_object_write(obj, (off_t)((pg + i) * PG), buf, PG);
		if (r < 0)
			return r;
	}
	return 0;
}

/* The count of pages from pg that do not reach the failing page. */
static unsigned
t_until_fail(uint64_t pg, unsigned n)
{
	if (cfg.fail_pg >= 0 && (uint64_t)cfg.fail_pg >= pg &&
	    (uint64_t)cfg.fail_pg < pg + n)
		return (unsigned)((uint64_t)cfg.fail_pg - pg);
	return n;
}

static void
t_reference(struct fm_object *obj)
{
	calls.pgo_reference++;
}

static void
t_detach(struct fm_object *obj)
{
	calls.pgo_detach++;
}

/*
 * The engine thread that served a fault lets go of its reference on the
 * mapping just after the fault's answer: the last one may come a moment
 * after fm_munmap returns.
 */
static void
wait_detached(void)
{
	for (int i = 0; i < 1000 && atomic_load(&calls.pgo_detach) == 0; i++)
		usleep(1000);
}

static int
t_get(struct fm_object *obj, uint64_t pg, unsigned *npages)
{
	calls.pgo_get++;
	unsigned n = t_until_fail(pg, *npages);
	if (n == 0)
		return -EIO;
	*npages = n;
	return t_fill(obj, pg, n);
}

static int
t_fault(struct fm_fault *f)
{
	calls.pgo_fault++;
	if (cfg.fail_pg >= 0 && f->pgidx == (uint64_t)cfg.fail_pg)
		return -EIO;
	if (f->npages == 0)
		return 0;
	if (cfg.nofill) {
		f->npages = 0;
		return 0;
	}
	f->npages = t_until_fail(f->pgidx, f->npages);
	return t_fill(f->obj, f->pgidx, f->npages);
}

static int
t_put(struct fm_object *obj, uint64_t pg, unsigned n, int flags)
{
	calls.pgo_put++;
	if (flags != FM_PGO_CLEAN)
		return -EINVAL;
	if (cfg.put_err)
		return cfg.put_err;
	calls.put_pages += (int)n;
	return 0;
}

static int
t_write(struct fm_object *obj, uint64_t pg)
{
	calls.pgo_write++;
	return cfg.write_err;
}

static const struct fm_pagerops get_pagerops = {
    .pgo_reference = t_reference,
    .pgo_detach = t_detach,
    .pgo_get = t_get,
    .pgo_put = t_put,
    .pgo_write = t_write,
};

static const struct fm_pagerops fault_pagerops = {
    .pgo_reference = t_reference,
    .pgo_detach = t_detach,
    .pgo_fault = t_fault,
    .pgo_put = t_put,
};

/* Register both devices over a new object of npages with ops. */
static void
tdev_setup(const struct fm_pagerops *ops, size_t npages)
{
	tobj = testdev_object(ops, npages * PG);
	ASSERT_OK(fm_dev_register("t-plain", &plain_cdevsw, NULL));
	ASSERT_OK(fm_dev_register("t-clone", &clone_cdevsw, NULL));
}

static int
tdev_open(const char *name, int flags)
{
	int fd = fm_open(name, flags);

	ASSERT_GE(fd, 0);
	return fd;
}

/* ------------------------------------------------------------------------
 * Every hook is called.
 */

TEST(hooks_cdevsw_of_a_plain_device)
{
	fm_test_need_uffd();
	tdev_setup(&get_pagerops, 4);
	int fd = tdev_open(FM_DEVPREFIX "t-plain", O_RDWR | O_NONBLOCK);
	char buf[8];
	int dummy = 0;

	ASSERT_EQ(calls.d_open, 1);
	ASSERT_EQ(fm_read(fd, buf, 8), 8);
	ASSERT_EQ(buf[7], 'r');
	ASSERT_EQ(fm_read(fd, buf, 8), 8);
	ASSERT_EQ(calls.last_off, 8); /* fomap keeps the offset */
	ASSERT_EQ(fm_write(fd, buf, 3), 3);
	ASSERT_EQ(calls.last_off, 16);
	ASSERT_EQ(calls.d_read, 2);
	ASSERT_EQ(calls.d_write, 1);
	ASSERT_OK(fm_ioctl(fd, 1, &dummy));
	ASSERT_EQ(calls.last_flags & (O_ACCMODE | O_NONBLOCK),
	    O_RDWR | O_NONBLOCK);
	ASSERT_ERRNO(fm_ioctl(fd, 7, &dummy), ENOTTY);
	ASSERT_EQ(calls.d_ioctl, 2);

	char *p = testdev_map(fd, 4 * PG, PROT_READ | PROT_WRITE, MAP_SHARED);
	ASSERT_EQ(calls.d_mmap_single, 1);
	ASSERT_EQ(p[2 * PG], 'c');
	ASSERT_GE(calls.pgo_get, 1);
	ASSERT_OK(fm_close(fd));
	ASSERT_EQ(calls.d_close, 1);
	ASSERT_EQ(p[3 * PG], 'd'); /* the mapping outlives it */
	ASSERT_OK(fm_munmap(p, 4 * PG));
	ASSERT_EQ(calls.d_open, 1);
	ASSERT_OK(fm_dev_unregister("t-plain"));
}

TEST(hooks_fileops_of_a_cloning_device)
{
	fm_test_need_uffd();
	tdev_setup(&get_pagerops, 4);
	int a = tdev_open(FM_DEVPREFIX "t-clone", O_RDWR);
	int b = tdev_open(FM_DEVPREFIX "t-clone", O_RDWR);
	char buf[4];
	int id = 0;

	ASSERT_EQ(calls.d_open, 2);
	ASSERT_EQ(fm_read(a, buf, 4), 4);
	ASSERT_EQ(buf[0], '1'); /* each open its own state */
	ASSERT_EQ(fm_read(b, buf, 4), 4);
	ASSERT_EQ(buf[0], '2');
	ASSERT_OK(fm_ioctl(b, 2, &id));
	ASSERT_EQ(id, 2);
	ASSERT_ERRNO(fm_ioctl(a, 1, &id), ENOTTY);
	ASSERT_EQ(fm_write(a, buf, 4), 4);
	ASSERT_EQ(calls.fo_read, 2);
	ASSERT_EQ(calls.fo_ioctl, 2);
	ASSERT_EQ(calls.fo_write, 1);
	ASSERT_EQ(calls.d_read + calls.d_write + calls.d_ioctl, 0);

	/* fo_stat changes the device file's status, never leaves garbage. */
	struct stat st;
	memset(&st, 0xab, sizeof st);
	ASSERT_OK(fm_fstat(a, &st));
	ASSERT_EQ(st.st_size, 4 * PG);
	ASSERT_EQ(st.st_mode, S_IFCHR | 0666);
	ASSERT_EQ(st.st_nlink, 1);
	ASSERT_EQ(st.st_uid, 0);

	char *p = testdev_map(a, PG, PROT_READ, MAP_SHARED);
	ASSERT_EQ(calls.fo_mmap, 1);
	ASSERT_EQ(calls.d_mmap_single, 0);
	ASSERT_EQ(p[0], 'a');
	ASSERT_OK(fm_close(a));
	ASSERT_EQ(calls.fo_close, 1); /* fo_close, not d_close */
	ASSERT_EQ(calls.d_close, 0);
	ASSERT_OK(fm_close(b));
	ASSERT_EQ(calls.fo_close, 2);
	ASSERT_ERRNO(fm_ioctl(b, 2, &id), EBADF);
	ASSERT_OK(fm_munmap(p, PG));
}

TEST(hooks_of_a_pager_with_get)
{
	fm_test_need_uffd();
	tdev_setup(&get_pagerops, 8);
	int fd = tdev_open(FM_DEVPREFIX "t-plain", O_RDWR);

	char *p = testdev_map(fd, 8 * PG, PROT_READ | PROT_WRITE, MAP_SHARED);
	ASSERT_EQ(calls.pgo_reference, 1); /* the mapping's reference */
	ASSERT_EQ(p[0], 'a');
	ASSERT_EQ(p[7 * PG], 'h');
	ASSERT_GE(calls.pgo_get, 1);
	ASSERT_EQ(calls.pgo_write, 0);
	p[PG] = 'B'; /* clean page: write hook */
	ASSERT_EQ(calls.pgo_write, 1);
	p[PG + 1] = 'B'; /* dirty now: no fault */
	ASSERT_EQ(calls.pgo_write, 1);
	unsigned char vec[8];
	ASSERT_OK(fm_object_mincore(tobj, 0, 8 * PG, vec));
	ASSERT_EQ(vec[1], FM_PG_RESIDENT | FM_PG_DIRTY);
	ASSERT_EQ(vec[2], FM_PG_RESIDENT);
	ASSERT_OK(fm_msync(p, 8 * PG, MS_SYNC));
	ASSERT_EQ(calls.pgo_put, 1);
	ASSERT_EQ(calls.put_pages, 1);
	p[PG + 2] = 'C'; /* clean again: hook again */
	ASSERT_EQ(calls.pgo_write, 2);
	ASSERT_OK(fm_munmap(p, 8 * PG)); /* the last mapping: put */
	ASSERT_EQ(calls.put_pages, 2);
	ASSERT_OK(fm_close(fd));
	ASSERT_EQ(calls.pgo_detach, 0);
	fm_object_rele(tobj); /* the last reference */
	wait_detached();
	ASSERT_EQ(calls.pgo_detach, 1);
}

TEST(hooks_of_a_pager_with_fault)
{
	fm_test_need_uffd();
	tdev_setup(&fault_pagerops, 8);
	int fd = tdev_open(FM_DEVPREFIX "t-clone", O_RDWR);

	char *p = testdev_map(fd, 8 * PG, PROT_READ | PROT_WRITE, MAP_SHARED);
	ASSERT_OK(fm_madvise(p, 8 * PG, MADV_RANDOM));
	ASSERT_EQ(p[3 * PG], 'd');
	ASSERT_EQ(calls.pgo_fault, 1);
	ASSERT_EQ(calls.pgo_get, 0); /* the full handler instead */
	ASSERT_OK(fm_madvise(p, 8 * PG, MADV_DONTNEED));
	ASSERT_EQ(p[3 * PG], 'd'); /* resident: npages 0 */
	ASSERT_EQ(calls.pgo_fault, 2);
	p[4 * PG] = 'E'; /* no write hook: allowed */
	ASSERT_EQ(p[4 * PG], 'E');
	ASSERT_OK(fm_munmap(p, 8 * PG));
	ASSERT_EQ(calls.put_pages, 1);
	ASSERT_OK(fm_close(fd));
	fm_object_rele(tobj);
	wait_detached();
	ASSERT_EQ(calls.pgo_detach, 1);
}

/* ------------------------------------------------------------------------
 * Hooks that fail: an errno for the call, or SIGBUS for the fault; fomap
 * stays consistent.
 */

TEST(failing_open_read_write_ioctl_give_errno)
{
	fm_test_need_uffd();
	tdev_setup(NULL, 1);
	cfg.open_err = -EIO;
	ASSERT_ERRNO(fm_open(FM_DEVPREFIX "t-plain", O_RDWR), EIO);
	ASSERT_ERRNO(fm_open(FM_DEVPREFIX "t-clone", O_RDWR), EIO);
	ASSERT_EQ(calls.d_open, 2);
	ASSERT_OK(fm_dev_unregister("t-clone")); /* not left open */
	cfg.open_err = 0;

	int fd = tdev_open(FM_DEVPREFIX "t-plain", O_RDWR);
	char buf[4];
	int dummy;
	cfg.io_err = -EPERM;
	ASSERT_ERRNO(fm_read(fd, buf, 4), EPERM);
	ASSERT_ERRNO(fm_write(fd, buf, 4), EPERM);
	ASSERT_ERRNO(fm_ioctl(fd, 1, &dummy), EPERM);
	cfg.io_err = 0;
	ASSERT_EQ(fm_read(fd, buf, 4), 4);
	ASSERT_EQ(calls.last_off, 0); /* failures moved nothing */
	ASSERT_EQ(fm_dev_unregister("t-plain"), -EBUSY);
	ASSERT_OK(fm_close(fd));
	ASSERT_OK(fm_dev_unregister("t-plain"));
	fm_object_rele(tobj);
}

TEST(failing_mmap_hook_gives_errno)
{
	fm_test_need_uffd();
	tdev_setup(&get_pagerops, 4);
	int fd = tdev_open(FM_DEVPREFIX "t-plain", O_RDWR);

	cfg.mmap_err = -ENXIO;
	ASSERT_ERRNO(fm_mmap(NULL, PG, PROT_READ, MAP_SHARED, fd, 0), ENXIO);
	cfg.mmap_err = -ENOMEM;
	ASSERT_ERRNO(fm_mmap(NULL, PG, PROT_READ, MAP_SHARED, fd, 0), ENOMEM);
	cfg.mmap_err = 0;
	cfg.mmap_noobj = 1; /* yes, but no object: anonymous memory */
	char *z = testdev_map(fd, PG, PROT_READ, MAP_SHARED);
	ASSERT_EQ(z[0], 0);
	ASSERT_OK(fm_munmap(z, PG));
	cfg.mmap_noobj = 0;
	cfg.mmap_off = 100; /* an unaligned offset */
	ASSERT_ERRNO(fm_mmap(NULL, PG, PROT_READ, MAP_SHARED, fd, 0), EINVAL);
	cfg.mmap_off = -(off_t)PG;
	ASSERT_ERRNO(fm_mmap(NULL, PG, PROT_READ, MAP_SHARED, fd, 0), EINVAL);
	cfg.mmap_off = 0;
	cfg.maxprot = PROT_READ; /* less than asked */
	ASSERT_ERRNO(fm_mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
	                 0),
	    EACCES);
	/* Every refused request gave its reference back. */
	ASSERT_EQ(calls.pgo_reference, 3);
	ASSERT_EQ(calls.d_mmap_single, 6);
	cfg.maxprot = PROT_READ | PROT_WRITE;
	char *p = testdev_map(fd, 4 * PG, PROT_READ, MAP_SHARED);
	ASSERT_EQ(p[0], 'a');
	testdev_done(p, 4 * PG, fd, tobj);
	wait_detached();
	ASSERT_EQ(calls.pgo_detach, 1); /* no reference leaked */
}

TEST(failing_pgo_get_gives_sigbus_on_that_page)
{
	fm_test_need_uffd();
	tdev_setup(&get_pagerops, 8);
	int fd = tdev_open(FM_DEVPREFIX "t-plain", O_RDWR);
	volatile char *p =
	    testdev_map(fd, 8 * PG, PROT_READ | PROT_WRITE, MAP_SHARED);
	struct fm_stats s0, s1;

	cfg.fail_pg = 3;
	fm_engine_stats(&s0);
	ASSERT_EQ(p[0], 'a'); /* a fill that stops short */
	ASSERT_EQ(p[2 * PG], 'c');
	ASSERT_EQ(fm_test_probe(p + 3 * PG, 0), SIGBUS);
	ASSERT_EQ(fm_test_probe(p + 3 * PG, 1), SIGBUS);
	ASSERT_EQ(p[4 * PG], 'e');
	fm_engine_stats(&s1);
	ASSERT_GE(s1.sigbus - s0.sigbus, 2);
	cfg.fail_pg = -1; /* the driver recovers */
	ASSERT_EQ(fm_test_probe(p + 3 * PG, 0), 0);
	ASSERT_EQ(p[3 * PG], 'd');
	testdev_done((void *)p, 8 * PG, fd, tobj);
}

TEST(failing_pgo_fault_gives_sigbus)
{
	fm_test_need_uffd();
	tdev_setup(&fault_pagerops, 8);
	int fd = tdev_open(FM_DEVPREFIX "t-plain", O_RDWR);
	volatile char *p =
	    testdev_map(fd, 8 * PG, PROT_READ | PROT_WRITE, MAP_SHARED);

	ASSERT_OK(
	    fm_madvise((void *)p, 8 * PG, MADV_RANDOM)); /* one page a fault */
	ASSERT_EQ(p[PG], 'b');
	cfg.fail_pg = 5;
	ASSERT_EQ(fm_test_probe(p + 5 * PG, 1), SIGBUS);
	cfg.fail_pg = -1;
	cfg.nofill = 1; /* "done", but filled nothing */
	ASSERT_EQ(fm_test_probe(p + 6 * PG, 0), SIGBUS);
	cfg.nofill = 0;
	ASSERT_EQ(p[5 * PG], 'f');
	ASSERT_EQ(p[6 * PG], 'g');
	cfg.fail_pg = 1; /* resident: fails all the same */
	ASSERT_OK(fm_madvise((void *)p, 8 * PG, MADV_DONTNEED));
	ASSERT_EQ(fm_test_probe(p + PG, 0), SIGBUS);
	cfg.fail_pg = -1;
	ASSERT_EQ(p[PG], 'b');
	testdev_done((void *)p, 8 * PG, fd, tobj);
}

TEST(failing_pgo_put_gives_eio_and_keeps_pages_dirty)
{
	fm_test_need_uffd();
	tdev_setup(&get_pagerops, 4);
	int fd = tdev_open(FM_DEVPREFIX "t-plain", O_RDWR);
	char *p = testdev_map(fd, 4 * PG, PROT_READ | PROT_WRITE, MAP_SHARED);
	unsigned char vec[4];

	p[0] = 'X';
	cfg.put_err = -ENOSPC;
	ASSERT_ERRNO(fm_msync(p, 4 * PG, MS_SYNC), EIO);
	ASSERT_OK(fm_object_mincore(tobj, 0, 4 * PG, vec));
	ASSERT_EQ(vec[0], FM_PG_RESIDENT | FM_PG_DIRTY);
	ASSERT_EQ(p[0], 'X');
	p[1] = 'Y'; /* still writable */
	cfg.put_err = 0;
	ASSERT_OK(fm_msync(p, 4 * PG, MS_SYNC));
	ASSERT_OK(fm_object_mincore(tobj, 0, 4 * PG, vec));
	ASSERT_EQ(vec[0], FM_PG_RESIDENT);
	ASSERT_EQ(calls.put_pages, 1);
	testdev_done(p, 4 * PG, fd, tobj);
}

TEST(failing_pgo_write_gives_sigbus)
{
	fm_test_need_uffd();
	tdev_setup(&get_pagerops, 4);
	int fd = tdev_open(FM_DEVPREFIX "t-plain", O_RDWR);
	volatile char *p =
	    testdev_map(fd, 4 * PG, PROT_READ | PROT_WRITE, MAP_SHARED);

	ASSERT_EQ(p[0], 'a');
	cfg.write_err = -EROFS;
	ASSERT_EQ(fm_test_probe(p, 1), SIGBUS);
	ASSERT_EQ(calls.pgo_write, 1);
	ASSERT_EQ(p[0], 'a'); /* readable, unchanged */
	cfg.write_err = 0;
	p[0] = 'z';
	ASSERT_EQ(calls.pgo_write, 2);
	ASSERT_EQ(p[0], 'z');
	testdev_done((void *)p, 4 * PG, fd, tobj);
}
