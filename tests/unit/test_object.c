/*
 * test_object.c: what a driver does to an object's mappings: protect,
 * remove (keeping or discarding the pages), mincore; the write hook; and
 * fault-around as the mappings' advice steers it.
 */
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <fomap/driver.h>

#include "../test.h"
#include "testdev.h"

#define RW (PROT_READ | PROT_WRITE)

static struct fm_stats
stats_now(void)
{
	struct fm_stats st;

	fm_engine_stats(&st);
	return st;
}

TEST(object_bad_input)
{
	fm_test_need_uffd();
	struct fm_object *obj;
	unsigned char vec[4];

	ASSERT_EQ(fm_object_create(NULL, 0, NULL, &obj), -EINVAL);
	ASSERT_EQ(fm_object_create(NULL, (size_t)1 << 62, NULL, &obj), -ENOMEM);
	ASSERT_EQ(fm_object_create(NULL, 4 * PG, NULL, &obj), 0);
	ASSERT_EQ(fm_object_size(obj), 4 * PG);
	ASSERT_EQ(fm_object_protect(obj, 100, PG, PROT_READ), -EINVAL);
	ASSERT_EQ(fm_object_protect(obj, 0, 0, PROT_READ), -EINVAL);
	ASSERT_EQ(fm_object_protect(obj, 0, 5 * PG, PROT_READ), -ENXIO);
	ASSERT_EQ(fm_object_protect(obj, 8 * PG, PG, PROT_READ), -ENXIO);
	ASSERT_EQ(fm_object_protect(obj, 0, PG, PROT_WRITE), -EINVAL);
	ASSERT_EQ(fm_object_unmap(obj, 0, PG, 7), -EINVAL);
	ASSERT_EQ(fm_object_unmap(obj, -(off_t)PG, PG, FM_UNMAP_KEEP), -EINVAL);
	ASSERT_EQ(fm_object_mincore(obj, 0, 5 * PG, vec), -ENXIO);
	ASSERT_EQ(fm_object_read(obj, 3 * PG, vec, PG + 1), -ENXIO);
	ASSERT_EQ(fm_object_write(obj, -1, vec, 1), -EINVAL);
	ASSERT_EQ(fm_object_clean(obj, 0, 4 * PG), 0); /* nothing to do */
	ASSERT_EQ(fm_object_mincore(obj, 0, 4 * PG, vec), 0);
	ASSERT_EQ(vec[0], 0);
	ASSERT_EQ(fm_object_write(obj, PG + 10, "abc", 3), 0);
	ASSERT_EQ(fm_object_mincore(obj, 0, 4 * PG, vec), 0);
	ASSERT_EQ(vec[1], FM_PG_RESIDENT);
	fm_object_rele(obj);
}

TEST(protect_read_only_refuses_writes)
{
	fm_test_need_uffd();
	struct fm_object *obj = testdev_object(NULL, 16 * PG);
	int fd = testdev_open("protect", obj, RW, O_RDWR);
	char *a = testdev_map(fd, 16 * PG, RW, MAP_SHARED);
	char *b = testdev_map(fd, 16 * PG, RW, MAP_SHARED);
	unsigned char vec[16];

	memset(a, 1, 16 * PG);
	ASSERT_EQ(fm_object_protect(obj, 4 * PG, 4 * PG, PROT_READ), 0);
	ASSERT_EQ(fm_object_mincore(obj, 0, 16 * PG, vec), 0);
	ASSERT(vec[4] & FM_PG_RDONLY);
	ASSERT(!(vec[3] & FM_PG_RDONLY));
	/* Mapped pages in both mappings, and pages not mapped yet (b). */
	ASSERT_EQ(fm_test_probe(a + 5 * PG, 1), SIGBUS);
	ASSERT_PTR_EQ(fm_test_fault_addr(), a + 5 * PG);
	ASSERT_EQ(fm_test_probe(b + 6 * PG, 1), SIGBUS);
	ASSERT_EQ(b[7 * PG], 1); /* reads still work */
	ASSERT_EQ(fm_test_probe(b + 7 * PG, 1), SIGBUS);
	ASSERT_EQ(fm_test_probe(a + 3 * PG, 1), 0);
	ASSERT_EQ(fm_test_probe(a + 8 * PG, 1), 0);
	ASSERT_EQ(a[5 * PG], 1); /* nothing was written */
	ASSERT_EQ(fm_object_protect(obj, 4 * PG, 4 * PG, RW), 0);
	a[5 * PG] = 2; /* writable again, even where a write was refused */
	b[6 * PG] = 3;
	ASSERT_EQ(b[5 * PG], 2);
	ASSERT_EQ(a[6 * PG], 3);
	ASSERT_OK(fm_munmap(a, 16 * PG));
	testdev_done(b, 16 * PG, fd, obj);
}

/* A write hook that allows even pages, refuses odd ones, and counts. */
static int hook_calls;

static int
hook_write(struct fm_object *obj, uint64_t pg)
{
	__atomic_add_fetch(&hook_calls, 1, __ATOMIC_RELAXED);
	return pg % 2 ? -EPERM : 0;
}

static const struct fm_pagerops hook_ops = {.pgo_write = hook_write};

TEST(write_hook_allows_and_refuses)
{
	fm_test_need_uffd();
	struct fm_object *obj = testdev_object(&hook_ops, 8 * PG);
	int fd = testdev_open("hook", obj, RW, O_RDWR);
	char *a = testdev_map(fd, 8 * PG, RW, MAP_SHARED);
	unsigned char vec[8];

	a[0] = 1; /* not read-only: no hook */
	ASSERT_EQ(__atomic_load_n(&hook_calls, __ATOMIC_RELAXED), 0);
	ASSERT_EQ(fm_object_protect(obj, 0, 8 * PG, PROT_READ), 0);
	ASSERT_EQ(fm_test_probe(a + 2 * PG, 1), 0); /* allowed, recorded */
	ASSERT_EQ(__atomic_load_n(&hook_calls, __ATOMIC_RELAXED), 1);
	ASSERT_EQ(fm_test_probe(a + 2 * PG, 1), 0); /* writable now */
	ASSERT_EQ(__atomic_load_n(&hook_calls, __ATOMIC_RELAXED), 1);
	ASSERT_EQ(fm_test_probe(a + 3 * PG, 1), SIGBUS);
	ASSERT_EQ(__atomic_load_n(&hook_calls, __ATOMIC_RELAXED), 2);
	ASSERT_EQ(fm_object_mincore(obj, 0, 8 * PG, vec), 0);
	ASSERT(vec[2] & FM_PG_DIRTY);
	ASSERT(!(vec[3] & FM_PG_DIRTY));
	testdev_done(a, 8 * PG, fd, obj);
}

TEST(unmap_keep_refaults_minor)
{
	fm_test_need_uffd();
	struct fm_object *obj = testdev_object(NULL, 32 * PG);
	int fd = testdev_open("keep", obj, RW, O_RDWR);
	char *a = testdev_map(fd, 32 * PG, RW, MAP_SHARED);
	struct fm_stats s0, s1, s2;

	memset(a, 7, 32 * PG);
	s0 = stats_now();
	ASSERT_EQ(a[20 * PG], 7);
	s1 = stats_now();
	ASSERT_EQ(s1.faults, s0.faults); /* mapped */
	ASSERT_EQ(fm_object_unmap(obj, 16 * PG, 16 * PG, FM_UNMAP_KEEP), 0);
	ASSERT_EQ(a[20 * PG], 7);
	s2 = stats_now();
	ASSERT_EQ(s2.faults, s1.faults + 1); /* removed: it faulted again */
	ASSERT_EQ(s2.minor, s1.minor + 1); /* ... minor: the page was kept */
	ASSERT_EQ(a[2 * PG], 7);
	/* Outside the range: still mapped, no fault. */
	ASSERT_EQ(stats_now().faults, s2.faults);
	testdev_done(a, 32 * PG, fd, obj);
}

TEST(unmap_discard_frees_and_refills)
{
	fm_test_need_uffd();
	struct fm_object *obj = testdev_object(NULL, 8 * PG);
	int fd = testdev_open("discard", obj, RW, O_RDWR);
	char *a = testdev_map(fd, 8 * PG, RW, MAP_SHARED);
	char *p = testdev_map(fd, 8 * PG, RW, MAP_PRIVATE);
	unsigned char vec[8];
	struct fm_stats s0;

	memset(a, 9, 8 * PG);
	ASSERT_EQ(p[PG], 9);
	p[2 * PG] = 'p';
	ASSERT_EQ(fm_object_unmap(obj, 0, 8 * PG, FM_UNMAP_DISCARD), 0);
	ASSERT_EQ(fm_object_mincore(obj, 0, 8 * PG, vec), 0);
	ASSERT_EQ(vec[1], 0);
	s0 = stats_now();
	ASSERT_EQ(a[PG], 0); /* anonymous pager: discarded is zero again */
	ASSERT_EQ(p[PG], 0);
	ASSERT_EQ(p[2 * PG], 'p'); /* a private copy is the mapping's own */
	ASSERT_GE(stats_now().faults, s0.faults + 1);
	ASSERT_OK(fm_munmap(a, 8 * PG));
	testdev_done(p, 8 * PG, fd, obj);
}

TEST(store_discard_keeps_data)
{
	fm_test_need_uffd();
	int file = testdev_tmpfile(64 * PG);
	struct fm_object *obj = testdev_store(file, 0, 64 * PG);
	int fd = testdev_open("evict", obj, RW, O_RDWR);
	char *a = testdev_map(fd, 64 * PG, RW, MAP_SHARED);
	unsigned char vec[64];

	for (int i = 0; i < 64; i++)
		a[i * PG] = (char)(i + 100);
	ASSERT_EQ(fm_object_unmap(obj, 0, 64 * PG, FM_UNMAP_DISCARD), 0);
	ASSERT_EQ(fm_object_mincore(obj, 0, 64 * PG, vec), 0);
	for (int i = 0; i < 64; i++)
		ASSERT_EQ(vec[i], 0);
	for (int i = 0; i < 64; i++)
		ASSERT_EQ(a[i * PG],
		    (char)(i + 100)); /* written back, refilled */
	ASSERT_EQ(a[5], (char)5);
	testdev_done(a, 64 * PG, fd, obj);
	close(file);
}

static unsigned long
touch_faults(char *a, size_t pages)
{
	struct fm_stats s0 = stats_now();

	for (size_t i = 0; i < pages; i++)
		a[i * PG] = 1;
	return stats_now().faults - s0.faults;
}

TEST(fault_around_follows_advice)
{
	fm_test_need_uffd();
	int fd = fm_open("/dev/fomap/zero", O_RDWR);
	char *a = testdev_map(fd, 4096 * PG, RW, MAP_SHARED);
	char *b = testdev_map(fd, 64 * PG, RW, MAP_SHARED);
	char *c = testdev_map(fd, 512 * PG, RW, MAP_SHARED);

	/* Sequential: windows double up to 256 pages. */
	ASSERT_LE(touch_faults(a, 4096), 24);
	ASSERT_OK(fm_madvise(b, 64 * PG, MADV_RANDOM));
	ASSERT_EQ(touch_faults(b, 64), 64);
	ASSERT_OK(fm_madvise(c, 512 * PG, MADV_SEQUENTIAL));
	ASSERT_EQ(touch_faults(c, 512), 2);
	ASSERT_OK(fm_munmap(a, 4096 * PG));
	ASSERT_OK(fm_munmap(b, 64 * PG));
	ASSERT_OK(fm_munmap(c, 512 * PG));
	ASSERT_OK(fm_close(fd));
}

/* A full fault handler that fills one page, maps it read-only, and counts. */
static int fault_calls;

static int
one_page_fault(struct fm_fault *f)
{
	__atomic_add_fetch(&fault_calls, 1, __ATOMIC_RELAXED);
	if (f->npages > 0) {
		char b[8];
		snprintf(b, sizeof b, "pg%d", (int)f->pgidx);
		f->npages = 1;
		if (fm_object_write(f->obj, (off_t)f->pgidx * PG, b, sizeof b) <
		    0)
			return -EIO;
	}
	f->around = 1;
	f->rdonly = f->pgidx == 3;
	return 0;
}

static const struct fm_pagerops one_page_ops = {.pgo_fault = one_page_fault};

TEST(fault_handler_chooses_fill_around_and_protection)
{
	fm_test_need_uffd();
	struct fm_object *obj = testdev_object(&one_page_ops, 8 * PG);
	int fd = testdev_open("handler", obj, RW, O_RDWR);
	char *a = testdev_map(fd, 8 * PG, RW, MAP_SHARED);

	for (int i = 0; i < 8; i++) {
		char want[8];
		snprintf(want, sizeof want, "pg%d", i);
		ASSERT(strcmp(a + i * PG, want) == 0);
	}
	ASSERT_EQ(__atomic_load_n(&fault_calls, __ATOMIC_RELAXED),
	    8); /* around = 1: a fault per page */
	ASSERT_EQ(fm_test_probe(a + 2 * PG, 1), 0);
	ASSERT_EQ(fm_test_probe(a + 3 * PG, 1),
	    0); /* rdonly, no hook: allowed */
	testdev_done(a, 8 * PG, fd, obj);
}

/*
 * A handler that fills pages dirty (content its backing store does not
 * have yet), and a pgo_put that counts the pages written back. dirty_all
 * 0: one page a fault, the even ones dirty; 1: every page it is offered,
 * all dirty (the engine maps them or not: a read-only page in the window
 * stops the run it maps).
 */
static int dirty_put_pages, dirty_all;

static int
dirty_fault(struct fm_fault *f)
{
	if (f->npages == 0)
		return 0;
	if (!dirty_all) {
		f->npages = 1;
		f->around = 1;
	}
	for (unsigned i = 0; i < f->npages; i++)
		if (fm_object_write(f->obj, (off_t)(f->pgidx + i) * PG, "new",
		        4) < 0)
			return -EIO;
	f->dirty = dirty_all || f->pgidx % 2 == 0;
	return 0;
}

static int
dirty_put(struct fm_object *obj, uint64_t pg, unsigned n, int flags)
{
	__atomic_add_fetch(&dirty_put_pages, (int)n, __ATOMIC_RELAXED);
	return 0;
}

static const struct fm_pagerops dirty_ops = {.pgo_fault = dirty_fault,
    .pgo_put = dirty_put};

TEST(fault_handler_fills_pages_dirty)
{
	fm_test_need_uffd();
	struct fm_object *obj = testdev_object(&dirty_ops, 8 * PG);
	int fd = testdev_open("dirty", obj, RW, O_RDWR);
	char *a = testdev_map(fd, 8 * PG, RW, MAP_SHARED);
	unsigned char vec[8];
	struct fm_stats before, after;

	for (int i = 0; i < 8; i++)
		ASSERT(strcmp(a + i * PG, "new") == 0); /* read faults */
	ASSERT_EQ(fm_object_mincore(obj, 0, 8 * PG, vec), 0);
	for (int i = 0; i < 8; i++)
		ASSERT_EQ(!!(vec[i] & FM_PG_DIRTY), i % 2 == 0);
	fm_engine_stats(&before);
	a[2 * PG] = 'd'; /* dirty, so mapped writable: no fault */
	fm_engine_stats(&after);
	ASSERT_EQ(after.wp, before.wp);
	a[3 * PG] = 'c'; /* clean: its write is seen */
	fm_engine_stats(&after);
	ASSERT_GE(after.wp, before.wp + 1);
	ASSERT_EQ(fm_object_clean(obj, 0, 8 * PG), 0);
	ASSERT_EQ(__atomic_load_n(&dirty_put_pages, __ATOMIC_RELAXED), 5);
	testdev_done(a, 8 * PG, fd, obj);
}

TEST(fault_handler_dirty_fill_past_a_read_only_page)
{
	fm_test_need_uffd();
	dirty_all = 1;
	struct fm_object *obj = testdev_object(&dirty_ops, 8 * PG);
	int fd = testdev_open("dirty-all", obj, RW, O_RDWR);
	char *a = testdev_map(fd, 8 * PG, RW, MAP_SHARED);
	unsigned char vec[8];

	ASSERT_EQ(fm_object_protect(obj, 3 * PG, PG, PROT_READ), 0);
	ASSERT_OK(fm_madvise(a, 8 * PG, MADV_SEQUENTIAL)); /* one fill */
	ASSERT(strcmp(a, "new") == 0);
	ASSERT_EQ(fm_object_mincore(obj, 0, 8 * PG, vec), 0);
	for (int i = 0; i < 8; i++)
		ASSERT(vec[i] & FM_PG_DIRTY);
	__atomic_store_n(&dirty_put_pages, 0, __ATOMIC_RELAXED);
	ASSERT_EQ(fm_object_clean(obj, 0, 8 * PG), 0);
	ASSERT_EQ(__atomic_load_n(&dirty_put_pages, __ATOMIC_RELAXED), 8);
	testdev_done(a, 8 * PG, fd, obj);
}

/* A pager whose errors are the engine's own retry codes. */
static int err_code;

/* Set what the pager returns before any later access to a mapping. */
static void
set_err(int e)
{
	__atomic_store_n(&err_code, e, __ATOMIC_SEQ_CST);
	__asm__ __volatile__("" ::: "memory"); /* no access moves above */
}

static int
err_fault(struct fm_fault *f)
{
	int e = __atomic_load_n(&err_code, __ATOMIC_SEQ_CST);

	if (e)
		return e;
	if (f->npages == 0)
		return 0;
	f->npages = 1;
	return fm_object_write(f->obj, (off_t)f->pgidx * PG, "ok", 3);
}

static int
err_put(struct fm_object *obj, uint64_t pg, unsigned n, int flags)
{
	return 0;
}

static const struct fm_pagerops err_ops = {.pgo_fault = err_fault,
    .pgo_put = err_put};

TEST(pager_errors_never_mean_retry)
{
	fm_test_need_uffd();
	struct fm_object *obj = testdev_object(&err_ops, 4 * PG);
	int fd = testdev_open("errcodes", obj, RW, O_RDWR);
	char *a = testdev_map(fd, 4 * PG, RW, MAP_SHARED);
	char c;

	/* EEXIST, ENOENT, EAGAIN from a pager: SIGBUS, not a loop. */
	static const int codes[] = {-EEXIST, -ENOENT, -EAGAIN};
	for (int i = 0; i < 3; i++) {
		set_err(codes[i]);
		ASSERT_EQ(fm_test_probe(a + (i + 1) * PG, 0), SIGBUS);
	}
	set_err(0);
	/* ... and on a resident, dirty page it does not lose the data. */
	a[0] = 'U';
	ASSERT_EQ(fm_object_unmap(obj, 0, PG, FM_UNMAP_KEEP), 0);
	set_err(-ENOENT);
	ASSERT_EQ(fm_test_probe(a, 0), SIGBUS);
	set_err(0);
	ASSERT_EQ(fm_object_read(obj, 0, &c, 1), 0);
	ASSERT_EQ(c, 'U');
	ASSERT_EQ(a[0], 'U');
	testdev_done(a, 4 * PG, fd, obj);
}

/*
 * fm_object_zero: whole pages read as zeros (through the store and through
 * a mapping, which refaults), resident and not dirty; the pages beside
 * keep their bytes; partial pages and ranges past the end are refused.
 */
TEST(object_zero_clears_whole_pages)
{
	struct fm_object *obj = testdev_object(NULL, 4 * PG);
	unsigned char vec[4], b[PG];
	int fd = testdev_open("zeroobj", obj, PROT_READ | PROT_WRITE, O_RDWR);
	char *p = testdev_map(fd, 4 * PG, PROT_READ | PROT_WRITE, MAP_SHARED);

	memset(p, 0x5a, 4 * PG);
	ASSERT_EQ(fm_object_zero(obj, PG, 2 * PG), 0);
	ASSERT_EQ(p[PG], 0);
	ASSERT_EQ(p[3 * PG - 1], 0);
	ASSERT_EQ(p[PG - 1], 0x5a);
	ASSERT_EQ(p[3 * PG], 0x5a);
	ASSERT_EQ(fm_object_read(obj, 2 * PG, b, PG), 0);
	for (size_t i = 0; i < PG; i++)
		ASSERT_EQ(b[i], 0);
	ASSERT_EQ(fm_object_mincore(obj, 0, 4 * PG, vec), 0);
	ASSERT(vec[1] & FM_PG_RESIDENT);
	/* A hole (never written) too. */
	ASSERT_EQ(fm_object_unmap(obj, 3 * PG, PG, FM_UNMAP_DISCARD), 0);
	ASSERT_EQ(fm_object_zero(obj, 3 * PG, PG), 0);
	ASSERT_EQ(p[3 * PG], 0);
	ASSERT_EQ(fm_object_zero(obj, 10, PG), -EINVAL);
	ASSERT_EQ(fm_object_zero(obj, 0, 10), -EINVAL);
	ASSERT_EQ(fm_object_zero(obj, 4 * PG, PG), -ENXIO);
	testdev_done(p, 4 * PG, fd, obj);
}
