/*
 * test_trust.c: regression tests for what a user of fomap must be able to
 * trust about its data and its progress: a page is never mapped while it
 * is being filled (1), no write is lost to a racing removal (2), removal
 * does not fail because another mapping goes away meanwhile (3), and one
 * slow fill does not stall unrelated faults (7). Numbers are the defects
 * of the issue these tests came from.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>

#include <fomap/driver.h>
#include <fomap/fomap.h>
#include <fomap/gem.h>
#include <fomap/guard.h>

#include "test_trust.h"
#include "testdev.h"

/* ------------------------------------------------------------------------
 * 1. A page still being filled is never mapped: not by fault-around, not
 * by MADV_WILLNEED, whether the pager fills through the window (where a
 * touch of the half-filled page is a minor fault) or by pieces with
 * fm_object_write (which makes the page resident as it goes).
 */

#define SLOWPG 5 /* the page filled slowly */
#define NPIECES 4
#define PIECE (PG / NPIECES)
#define PIECE_US 150000
#define SPOT (3 * PIECE + 500) /* in the last piece the pager writes */

enum { FILL_WINDOW, FILL_WRITE };

struct slowfill {
	int how;
	atomic_int started, done;
};

static int
put_bytes(struct fm_object *obj, int how, off_t off, int c, size_t len)
{
	char buf[PG];

	memset(buf, c, len);
	if (how == FILL_WRITE)
		return fm_object_write(obj, off, buf, len);
	char *w = fm_object_window(obj);
	if (w == NULL)
		return -EIO;
	memcpy(w + off, buf, len);
	return 0;
}

/*
 * Fill n busy pages from pg: page SLOWPG alone and slowly, in pieces of
 * 'P'; the others at once with 'Q', up to SLOWPG. => pages filled, or -errno
 */
static int
slowfill_pages(struct fm_object *obj, uint64_t pg, unsigned n)
{
	struct slowfill *s = fm_object_private(obj);
	int r;

	if (pg == SLOWPG) {
		for (int i = 0; i < NPIECES; i++) {
			r = put_bytes(obj, s->how, (off_t)(pg * PG + i * PIECE),
			    'P', PIECE);
			if (r < 0)
				return r;
			atomic_store(&s->started, 1);
			sleep_us(PIECE_US);
		}
		atomic_store(&s->done, 1);
		return 1;
	}
	if (pg < SLOWPG && pg + n > SLOWPG)
		n = (unsigned)(SLOWPG - pg);
	for (unsigned i = 0; i < n; i++)
		if ((r = put_bytes(obj, s->how, (off_t)((pg + i) * PG), 'Q',
		         PG)) < 0)
			return r;
	return (int)n;
}

static int
slowfill_fault(struct fm_fault *f)
{
	int r;

	if (f->npages == 0)
		return 0;
	r = slowfill_pages(f->obj, f->pgidx, f->npages);
	if (r < 0)
		return r;
	f->npages = (unsigned)r;
	return 0;
}

static int
slowfill_get(struct fm_object *obj, uint64_t pg, unsigned *n)
{
	int r = slowfill_pages(obj, pg, *n);

	if (r < 0)
		return r;
	*n = (unsigned)r;
	return 0;
}

static const struct fm_pagerops slowfill_fault_ops = {
    .pgo_fault = slowfill_fault};
static const struct fm_pagerops slowfill_get_ops = {.pgo_get = slowfill_get};

struct toucher {
	volatile char *p;
	size_t len; /* MADV_WILLNEED this long at p first, when not 0 */
	volatile char *spot; /* then read it, and write 'W' there */
	char seen;
};

static void *
touch_main(void *arg)
{
	struct toucher *t = arg;

	if (t->len > 0) {
		if (fm_madvise((void *)t->p, t->len, MADV_WILLNEED) < 0)
			return "madvise";
	} else {
		(void)t->p[0];
	}
	if (t->spot != NULL) {
		t->seen = *t->spot;
		*t->spot = 'W';
	}
	return NULL;
}

/*
 * Thread A faults page SLOWPG of mapping m1; while the pager fills it, B
 * touches it too (minor: the half-filled page is in the store), and C
 * reaches page SLOWPG - 1 of mapping m2 (fault-around or WILLNEED), then
 * reads and writes page SLOWPG in m2. C must see the page filled, and its
 * write must stay.
 */
static void
filling_page_test(const struct fm_pagerops *ops, int how, int minor,
    int willneed)
{
	/* A, B and C each hold an engine thread at once. */
	setenv("FOMAP_ENGINE_THREADS", "4", 1);
	fm_test_need_uffd();
	struct slowfill s = {.how = how};
	struct fm_object *obj;
	ASSERT_EQ(fm_object_create(ops, 8 * PG, &s, &obj), 0);
	int fd = testdev_open("fill-early", obj, RW, O_RDWR);
	char *m1 = fm_mmap(NULL, 8 * PG, RW, MAP_SHARED, fd, 0);
	char *m2 = fm_mmap(NULL, 8 * PG, RW, MAP_SHARED, fd, 0);
	struct toucher a = {.p = m1 + SLOWPG * PG}, b = {.p = m1 + SLOWPG * PG};
	struct toucher c = {.p = m2 + (SLOWPG - 1) * PG,
	    .spot = m2 + SLOWPG * PG + SPOT};
	pthread_t ta, tb, tc;
	struct fm_stats st0, st1;

	ASSERT(m1 != MAP_FAILED && m2 != MAP_FAILED);
	ASSERT_OK(fm_madvise(m1, 8 * PG, MADV_RANDOM));
	ASSERT_OK(fm_madvise(m2, 8 * PG, MADV_SEQUENTIAL));
	if (willneed)
		c.len = 2 * PG;
	ASSERT_EQ(pthread_create(&ta, NULL, touch_main, &a), 0);
	ASSERT(wait_flag(&s.started, 3));
	if (minor) {
		fm_engine_stats(&st0);
		ASSERT_EQ(pthread_create(&tb, NULL, touch_main, &b), 0);
		for (double end = now_s() + 0.3; now_s() < end;) {
			fm_engine_stats(&st1);
			if (st1.minor > st0.minor)
				break;
			sleep_us(1000);
		}
		sleep_us(10000);
	}
	ASSERT(!atomic_load(&s.done));
	ASSERT_EQ(pthread_create(&tc, NULL, touch_main, &c), 0);
	JOIN_WITHIN(tc, 5, "thread C");
	JOIN_WITHIN(ta, 5, "thread A");
	if (minor)
		JOIN_WITHIN(tb, 5, "thread B");
	ASSERT(atomic_load(&s.done));
	/* C saw the page before the pager had filled it: it was mapped. */
	ASSERT_EQ(c.seen, 'P');
	/* ... and the pager's fill overwrote C's write. */
	ASSERT_EQ(m1[SLOWPG * PG + SPOT], 'W');
	ASSERT_EQ(m2[SLOWPG * PG + SPOT], 'W');
	for (size_t i = 0; i < PG; i++)
		if (i != SPOT)
			ASSERT_EQ(m1[SLOWPG * PG + i], 'P');
	ASSERT_EQ(m2[(SLOWPG - 1) * PG], 'Q');
	ASSERT_OK(fm_munmap(m1, 8 * PG));
	ASSERT_OK(fm_munmap(m2, 8 * PG));
	ASSERT_OK(fm_close(fd));
	fm_object_rele(obj);
}

/* pgo_fault fills through the window; a minor fault marks the page. */
TEST_TAGGED(trust_filling_page_window_minor_fault_around, "thread")
{
	filling_page_test(&slowfill_fault_ops, FILL_WINDOW, 1, 0);
}

/* pgo_get fills by pieces with fm_object_write. */
TEST_TAGGED(trust_filling_page_object_write_fault_around, "thread")
{
	filling_page_test(&slowfill_get_ops, FILL_WRITE, 0, 0);
}

/* The same through MADV_WILLNEED instead of fault-around. */
TEST_TAGGED(trust_filling_page_object_write_willneed, "thread")
{
	filling_page_test(&slowfill_get_ops, FILL_WRITE, 0, 1);
}

/* pgo_fault by pieces with fm_object_write, a minor fault too. */
TEST_TAGGED(trust_filling_page_fault_object_write_minor, "thread")
{
	filling_page_test(&slowfill_fault_ops, FILL_WRITE, 1, 0);
}

/* ------------------------------------------------------------------------
 * 2. No write is lost when removal races writers: gem eviction, discard
 * of a store object or of a pager that fills slowly through the window,
 * MADV_DONTNEED. Each writer owns one word in every page (so the pages are
 * shared by all writers, and fault-around is on), and checks before each
 * write that the word still holds what it wrote last.
 */

#define NWR 8
#define WPAGES 16
#define WORD(pg, id) ((pg) * (PG / sizeof(unsigned)) + (size_t)(id)*16)

struct wordwriter {
	volatile unsigned *p;
	int id;
	atomic_int *stop;
	atomic_int *bad;
	unsigned last[WPAGES];
	atomic_long rounds;
	char why[160];
};

static void *
wordwriter_main(void *arg)
{
	struct wordwriter *w = arg;
	unsigned v = 0;

	while (!atomic_load(w->stop) && !atomic_load(w->bad)) {
		v++;
		for (size_t pg = 0; pg < WPAGES; pg++) {
			volatile unsigned *x = &w->p[WORD(pg, w->id)];
			unsigned got = *x;

			if (got != w->last[pg]) {
				snprintf(w->why, sizeof w->why,
				    "writer %d, page %zu: read %u, wrote %u "
				    "last (round %ld)",
				    w->id, pg, got, w->last[pg],
				    atomic_load(&w->rounds));
				atomic_store(w->bad, 1);
				return NULL;
			}
			*x = v;
			w->last[pg] = v;
		}
		atomic_fetch_add(&w->rounds, 1);
	}
	return NULL;
}

enum { RM_GEM_EVICT, RM_DONTNEED, RM_DISCARD };

struct remover {
	int how;
	int gemfd;
	uint32_t handle;
	struct fm_object *obj;
	void *p;
	size_t len;
	atomic_long n;
	atomic_int *stop;
};

static void
remove_once(struct remover *r)
{
	if (r->how == RM_GEM_EVICT) {
		struct fm_gem_evict e = {.handle = r->handle};

		ASSERT_OK(fm_ioctl(r->gemfd, FM_GEM_EVICT, &e));
	} else if (r->how == RM_DONTNEED) {
		ASSERT_OK(fm_madvise(r->p, r->len, MADV_DONTNEED));
	} else {
		ASSERT_EQ(fm_object_unmap(r->obj, 0, r->len,
		              atomic_load(&r->n) % 2 ? FM_UNMAP_DISCARD
		                                     : FM_UNMAP_KEEP),
		    0);
	}
	atomic_fetch_add(&r->n, 1);
}

static void *
remover_main(void *arg)
{
	struct remover *r = arg;

	while (!atomic_load(r->stop))
		remove_once(r);
	return NULL;
}

/* Burn CPU: preempted engine threads and writers widen the races. */
static void *
spin_main(void *arg)
{
	while (!atomic_load((atomic_int *)arg))
		;
	return NULL;
}

/* Writers at p for secs seconds while r removes; then check every word. */
static void
writers_vs_removal(volatile unsigned *p, struct remover *r, double secs)
{
	struct wordwriter w[NWR];
	struct progress pv[NWR + 1];
	pthread_t t[NWR], spinner, remover;
	atomic_int stop = 0, bad = 0;

	ASSERT_EQ(pthread_create(&spinner, NULL, spin_main, &stop), 0);
	for (int i = 0; i < NWR; i++) {
		w[i] = (struct wordwriter){.p = p,
		    .id = i,
		    .stop = &stop,
		    .bad = &bad};
		ASSERT_EQ(pthread_create(&t[i], NULL, wordwriter_main, &w[i]),
		    0);
		pv[i] = (struct progress){.name = "a writer",
		    .count = &w[i].rounds};
	}
	r->stop = &stop;
	ASSERT_EQ(pthread_create(&remover, NULL, remover_main, r), 0);
	pv[NWR] = (struct progress){.name = "the remover", .count = &r->n};
	WATCH(pv, NWR + 1, secs, 2.0, &bad);
	atomic_store(&stop, 1);
	JOIN_WITHIN(remover, 3, "remover");
	JOIN_WITHIN(spinner, 3, "spinner");
	for (int i = 0; i < NWR; i++)
		JOIN_WITHIN(t[i], 3, "writer");
	for (int i = 0; i < NWR; i++)
		if (w[i].why[0])
			fm_test_fail(__FILE__, __LINE__,
			    "lost write after %ld removals: %s",
			    atomic_load(&r->n), w[i].why);
	remove_once(r);
	for (int i = 0; i < NWR; i++) {
		ASSERT_GE(atomic_load(&w[i].rounds), 1);
		for (size_t pg = 0; pg < WPAGES; pg++)
			ASSERT_EQ(p[WORD(pg, i)], w[i].last[pg]);
	}
}

static void
gem_writers(int how)
{
	fm_test_need_uffd();
	int fd = fm_open(FM_GEM_DEV, O_RDWR);
	size_t len = WPAGES * PG;
	struct fm_gem_create cr = {.size = len};
	struct fm_gem_mmap_offset mo;

	ASSERT_GE(fd, 0);
	ASSERT_OK(fm_ioctl(fd, FM_GEM_CREATE, &cr));
	mo = (struct fm_gem_mmap_offset){.handle = cr.handle};
	ASSERT_OK(fm_ioctl(fd, FM_GEM_MMAP_OFFSET, &mo));
	char *p = fm_mmap(NULL, len, RW, MAP_SHARED, fd, (off_t)mo.offset);
	ASSERT(p != MAP_FAILED);
	struct remover r = {.how = how,
	    .gemfd = fd,
	    .handle = cr.handle,
	    .p = p,
	    .len = len};
	writers_vs_removal((volatile unsigned *)p, &r, 3.0);
	ASSERT_OK(fm_munmap(p, len));
	ASSERT_OK(fm_close(fd));
}

TEST_TAGGED(trust_gem_evict_loses_no_write, "thread")
{
	gem_writers(RM_GEM_EVICT);
}

/* MADV_DONTNEED keeps the pages: it races the writers' minor faults. */
TEST_TAGGED(trust_gem_dontneed_loses_no_write, "thread")
{
	gem_writers(RM_DONTNEED);
}

/* A store object, removed with fm_object_unmap (keep and discard). */
TEST_TAGGED(trust_store_discard_loses_no_write, "thread")
{
	fm_test_need_uffd();
	size_t len = WPAGES * PG;
	int file = testdev_tmpfile(len);
	struct fm_object *obj;
	ASSERT_EQ(fm_store_create(file, 0, len, &obj), 0);
	int fd = testdev_open("store-discard-writers", obj, RW, O_RDWR);
	char *p = fm_mmap(NULL, len, RW, MAP_SHARED, fd, 0);

	ASSERT(p != MAP_FAILED);
	for (size_t pg = 0; pg < WPAGES; pg++)
		for (int i = 0; i < NWR; i++)
			((unsigned *)p)[WORD(pg, i)] = 0;
	struct remover r = {.how = RM_DISCARD, .obj = obj, .p = p, .len = len};
	writers_vs_removal((volatile unsigned *)p, &r, 3.0);
	ASSERT_OK(fm_munmap(p, len));
	ASSERT_OK(fm_close(fd));
	fm_object_rele(obj);
	close(file);
}

/*
 * A pager with backing memory that fills through the window as a driver
 * doing I/O would, a half page at a time, and saves on write-back; its
 * pages discarded (and kept) with fm_object_unmap.
 */
struct backing {
	char mem[WPAGES * PG];
};

static int
backing_get(struct fm_object *obj, uint64_t pg, unsigned *n)
{
	struct backing *b = fm_object_private(obj);
	char *w = fm_object_window(obj);

	if (w == NULL)
		return -EIO;
	for (uint64_t i = pg; i < pg + *n; i++) {
		memcpy(w + i * PG, b->mem + i * PG, PG / 2);
		sleep_us(20);
		memcpy(w + i * PG + PG / 2, b->mem + i * PG + PG / 2, PG / 2);
	}
	return 0;
}

static int
backing_put(struct fm_object *obj, uint64_t pg, unsigned n, int flags)
{
	struct backing *b = fm_object_private(obj);
	char *w = fm_object_window(obj);

	(void)flags;
	if (w == NULL)
		return -EIO;
	memcpy(b->mem + pg * PG, w + pg * PG, (size_t)n * PG);
	return 0;
}

static const struct fm_pagerops backing_ops = {.pgo_get = backing_get,
    .pgo_put = backing_put};

TEST_TAGGED(trust_slow_pager_discard_loses_no_write, "thread")
{
	fm_test_need_uffd();
	size_t len = WPAGES * PG;
	struct backing *b = calloc(1, sizeof(*b));
	struct fm_object *obj;

	ASSERT(b != NULL);
	ASSERT_EQ(fm_object_create(&backing_ops, len, b, &obj), 0);
	int fd = testdev_open("backing-writers", obj, RW, O_RDWR);
	char *p = fm_mmap(NULL, len, RW, MAP_SHARED, fd, 0);

	ASSERT(p != MAP_FAILED);
	struct remover r = {.how = RM_DISCARD, .obj = obj, .p = p, .len = len};
	writers_vs_removal((volatile unsigned *)p, &r, 3.0);
	ASSERT_OK(fm_munmap(p, len));
	ASSERT_OK(fm_close(fd));
	fm_object_rele(obj);
	free(b);
}

/* ------------------------------------------------------------------------
 * 3. Removing an object's pages from every mapping (fm_object_unmap, as
 * FM_GEM_EVICT and FM_GUARD_REMOVE do) succeeds while another thread maps
 * and unmaps (whole or in parts) other mappings of the same object.
 */

struct churner {
	int fd;
	off_t off;
	size_t len;
	atomic_int *stop;
	atomic_long n;
	const char *err;
};

static void *
churn_main(void *arg)
{
	struct churner *c = arg;

	while (!atomic_load(c->stop)) {
		char *q = fm_mmap(NULL, c->len, RW, MAP_SHARED, c->fd, c->off);

		if (q == MAP_FAILED) {
			c->err = "fm_mmap";
			break;
		}
		q[1] = 1; /* byte 0 is the test's */
		q[c->len - PG] = 2;
		if (atomic_load(&c->n) % 2 == 0) {
			if (fm_munmap(q, c->len) < 0)
				c->err = "fm_munmap";
		} else if (fm_munmap(q, PG) < 0 ||
		    fm_munmap(q + PG, c->len - PG) < 0) {
			c->err = "fm_munmap (partial)";
		}
		if (c->err)
			break;
		atomic_fetch_add(&c->n, 1);
	}
	return NULL;
}

/* Calls op over and over; counts the calls and the failures. */
struct opper {
	int (*op)(void *, long);
	void *arg;
	atomic_int *stop;
	atomic_long n;
	long failed;
	int err;
};

static void *
opper_main(void *arg)
{
	struct opper *o = arg;

	while (!atomic_load(o->stop)) {
		if (o->op(o->arg, atomic_load(&o->n)) < 0 && o->failed++ == 0)
			o->err = errno;
		atomic_fetch_add(&o->n, 1);
	}
	return NULL;
}

/* Run op for secs seconds against two churners: every call must succeed. */
static void
remove_vs_churn(int fd, off_t off, size_t len, int (*op)(void *, long),
    void *arg, double secs)
{
	struct churner c[2];
	struct opper o = {.op = op, .arg = arg};
	struct progress pv[3];
	pthread_t t[2], to;
	atomic_int stop = 0;

	for (int i = 0; i < 2; i++) {
		c[i] = (struct churner){.fd = fd,
		    .off = off,
		    .len = len,
		    .stop = &stop};
		ASSERT_EQ(pthread_create(&t[i], NULL, churn_main, &c[i]), 0);
		pv[i] = (struct progress){.name = "a map churner",
		    .count = &c[i].n};
	}
	o.stop = &stop;
	ASSERT_EQ(pthread_create(&to, NULL, opper_main, &o), 0);
	pv[2] = (struct progress){.name = "the remover", .count = &o.n};
	WATCH(pv, 3, secs, 2.0, NULL);
	atomic_store(&stop, 1);
	JOIN_WITHIN(to, 3, "remover");
	for (int i = 0; i < 2; i++)
		JOIN_WITHIN(t[i], 3, "map churner");
	for (int i = 0; i < 2; i++) {
		if (c[i].err)
			fm_test_fail(__FILE__, __LINE__, "churner: %s failed",
			    c[i].err);
		ASSERT_GE(atomic_load(&c[i].n), 1);
	}
	if (o.failed)
		fm_test_fail(__FILE__, __LINE__,
		    "%ld of %ld removals failed, the first with errno %d (%s)",
		    o.failed, atomic_load(&o.n), o.err, strerror(o.err));
}

struct gem_ref {
	int fd;
	uint32_t handle;
};

static int
gem_evict_op(void *arg, long k)
{
	struct gem_ref *g = arg;
	struct fm_gem_evict e = {.handle = g->handle};

	(void)k;
	return fm_ioctl(g->fd, FM_GEM_EVICT, &e);
}

TEST_TAGGED(trust_gem_evict_races_munmap, "thread")
{
	fm_test_need_uffd();
	int fd = fm_open(FM_GEM_DEV, O_RDWR);
	size_t len = 16 * PG;
	struct fm_gem_create cr = {.size = len};
	struct fm_gem_mmap_offset mo;

	ASSERT_GE(fd, 0);
	ASSERT_OK(fm_ioctl(fd, FM_GEM_CREATE, &cr));
	mo = (struct fm_gem_mmap_offset){.handle = cr.handle};
	ASSERT_OK(fm_ioctl(fd, FM_GEM_MMAP_OFFSET, &mo));
	char *p = fm_mmap(NULL, len, RW, MAP_SHARED, fd, (off_t)mo.offset);
	ASSERT(p != MAP_FAILED);
	p[0] = 'k';
	struct gem_ref g = {fd, cr.handle};
	remove_vs_churn(fd, (off_t)mo.offset, len, gem_evict_op, &g, 2.0);
	ASSERT_EQ(p[0], 'k');
	ASSERT_OK(fm_munmap(p, len));
	ASSERT_OK(fm_close(fd));
}

static int
guard_op(void *arg, long k)
{
	int fd = *(int *)arg;

	if (k % 3 == 0) {
		struct fm_guard_remove rm = {0, 16 * PG, FM_GUARD_REFILL, 0};

		return fm_ioctl(fd, FM_GUARD_REMOVE, &rm);
	}
	struct fm_guard_protect pr = {0, 16 * PG, k % 3 == 1 ? PROT_READ : RW,
	    k % 3 == 1 ? FM_GUARD_RECORD : 0};
	return fm_ioctl(fd, FM_GUARD_PROTECT, &pr);
}

TEST_TAGGED(trust_guard_remove_races_munmap, "thread")
{
	fm_test_need_uffd();
	int fd = fm_open(FM_GUARD_DEV, O_RDWR);
	struct fm_guard_setup su = {.size = 16 * PG};

	ASSERT_GE(fd, 0);
	ASSERT_OK(fm_ioctl(fd, FM_GUARD_SETUP, &su));
	char *p = fm_mmap(NULL, 16 * PG, RW, MAP_SHARED, fd, 0);
	ASSERT(p != MAP_FAILED);
	p[0] = 'k';
	remove_vs_churn(fd, 0, 16 * PG, guard_op, &fd, 2.0);
	ASSERT_EQ(p[0], 'k');
	ASSERT_OK(fm_munmap(p, 16 * PG));
	ASSERT_OK(fm_close(fd));
}

/* ------------------------------------------------------------------------
 * 7. One slow fill stalls only the thread that waits for it: while a pager
 * sleeps 2 s in a fill and another thread maps, protects and unmaps in a
 * loop, a fault on an unrelated zero-device mapping takes well under
 * 500 ms.
 */

static atomic_int slow_in;

static int
slow2s_fault(struct fm_fault *f)
{
	if (f->npages == 0)
		return 0;
	f->npages = 1;
	if (f->pgidx == 0) {
		atomic_store(&slow_in, 1);
		sleep_us(2000000);
	}
	return fm_object_write(f->obj, (off_t)(f->pgidx * PG), "s", 2);
}

static const struct fm_pagerops slow2s_ops = {.pgo_fault = slow2s_fault};

static void *
read_first(void *arg)
{
	(void)*(volatile char *)arg;
	return NULL;
}

struct mapper {
	int fd;
	atomic_int *stop;
	long n;
	const char *err;
};

static void *
mapper_main(void *arg)
{
	struct mapper *m = arg;

	while (!atomic_load(m->stop)) {
		char *q = fm_mmap(NULL, 2 * PG, RW, MAP_SHARED, m->fd, 0);

		if (q == MAP_FAILED) {
			m->err = "fm_mmap";
			break;
		}
		if (fm_mprotect(q, PG, PROT_READ) < 0) {
			m->err = "fm_mprotect";
			break;
		}
		if (fm_munmap(q, 2 * PG) < 0) {
			m->err = "fm_munmap";
			break;
		}
		m->n++;
	}
	return NULL;
}

TEST_TAGGED(trust_slow_fill_does_not_stall_other_faults, "thread")
{
	fm_test_need_uffd();
	struct fm_object *obj;
	ASSERT_EQ(fm_object_create(&slow2s_ops, 4 * PG, NULL, &obj), 0);
	int fd = testdev_open("slow-2s", obj, RW, O_RDWR);
	int zfd = fm_open("/dev/fomap/zero", O_RDWR);
	char *a = fm_mmap(NULL, 4 * PG, RW, MAP_SHARED, fd, 0);
	char *z = fm_mmap(NULL, 256 * PG, RW, MAP_SHARED, zfd, 0);
	atomic_int stop = 0;
	struct mapper m = {.fd = zfd, .stop = &stop};
	pthread_t ts, tm;
	double worst = 0;
	int n = 0;

	ASSERT_GE(zfd, 0);
	ASSERT(a != MAP_FAILED && z != MAP_FAILED);
	ASSERT_OK(fm_madvise(a, 4 * PG, MADV_RANDOM));
	ASSERT_OK(fm_madvise(z, 256 * PG, MADV_RANDOM));
	z[0] = 1; /* the engine is warm */
	ASSERT_EQ(pthread_create(&ts, NULL, read_first, a), 0);
	ASSERT(wait_flag(&slow_in, 3));
	ASSERT_EQ(pthread_create(&tm, NULL, mapper_main, &m), 0);
	sleep_us(20000);
	for (double end = now_s() + 1.2; now_s() < end && n < 255; n++) {
		double t0 = now_s();

		z[(n + 1) * PG] = 1;
		if (now_s() - t0 > worst)
			worst = now_s() - t0;
		sleep_us(50000);
	}
	atomic_store(&stop, 1);
	JOIN_WITHIN(tm, 5, "mapper");
	JOIN_WITHIN(ts, 5, "slow reader");
	if (m.err)
		fm_test_fail(__FILE__, __LINE__, "mapper: %s failed", m.err);
	if (worst > 0.5)
		fm_test_fail(__FILE__, __LINE__,
		    "a zero-device fault took %.0f ms while a pager slept "
		    "(%d faults, %ld map calls)",
		    worst * 1000, n, m.n);
	ASSERT_EQ(a[0], 's');
	ASSERT_OK(fm_munmap(a, 4 * PG));
	ASSERT_OK(fm_munmap(z, 256 * PG));
	ASSERT_OK(fm_close(fd));
	ASSERT_OK(fm_close(zfd));
	fm_object_rele(obj);
}
