/*
 * test_gem.c: the gem device with real mappings: per-open handles, sharing
 * by name, coherence across opens, eviction and transparent re-fault, the
 * life of a buffer, and bad input.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <fomap/driver.h>
#include <fomap/fomap.h>
#include <fomap/gem.h>

#include "../test.h"

static uint32_t
gem_create(int fd, uint64_t size)
{
	struct fm_gem_create c = {.size = size};

	ASSERT_OK(fm_ioctl(fd, FM_GEM_CREATE, &c));
	ASSERT_NE(c.handle, 0);
	ASSERT_EQ(c.size, (size + PG - 1) / PG * PG);
	return c.handle;
}

static uint64_t
gem_offset(int fd, uint32_t h)
{
	struct fm_gem_mmap_offset o = {.handle = h};

	ASSERT_OK(fm_ioctl(fd, FM_GEM_MMAP_OFFSET, &o));
	ASSERT_EQ(o.offset % PG, 0);
	return o.offset;
}

static char *
gem_map(int fd, uint32_t h, size_t len)
{
	char *p = fm_mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
	    (off_t)gem_offset(fd, h));

	ASSERT(p != MAP_FAILED);
	return p;
}

static struct fm_gem_info
gem_info(int fd, uint32_t h)
{
	struct fm_gem_info i = {.handle = h};

	ASSERT_OK(fm_ioctl(fd, FM_GEM_INFO, &i));
	return i;
}

static uint32_t
gem_flink(int fd, uint32_t h)
{
	struct fm_gem_flink f = {.handle = h};

	ASSERT_OK(fm_ioctl(fd, FM_GEM_FLINK, &f));
	ASSERT_NE(f.name, 0);
	return f.name;
}

static uint32_t
gem_open_name(int fd, uint32_t name)
{
	struct fm_gem_open o = {.name = name};

	ASSERT_OK(fm_ioctl(fd, FM_GEM_OPEN, &o));
	ASSERT_NE(o.handle, 0);
	return o.handle;
}

static void
gem_evict(int fd, uint32_t h)
{
	struct fm_gem_evict e = {.handle = h};

	ASSERT_OK(fm_ioctl(fd, FM_GEM_EVICT, &e));
}

static struct fm_gem_stats
gem_stats(int fd)
{
	struct fm_gem_stats s;

	ASSERT_OK(fm_ioctl(fd, FM_GEM_STATS, &s));
	return s;
}

static int
gem_dev(int flags)
{
	int fd = fm_open(FM_GEM_DEV, flags);

	ASSERT_GE(fd, 0);
	return fd;
}

static void
fill(char *p, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i += 512)
		p[i] = (char)(seed + i / 512 * 7);
}

static void
check(const char *p, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i += 512)
		if (p[i] != (char)(seed + i / 512 * 7))
			fm_test_fail(__FILE__, __LINE__,
			    "byte %zu is %d, want %d", i, p[i],
			    (char)(seed + i / 512 * 7));
}

/* Two opens: private handle tables, private buffers, no way across. */
TEST(gem_open_has_private_handles)
{
	fm_test_need_uffd();
	int a = gem_dev(O_RDWR), b = gem_dev(O_RDWR);
	uint32_t ha = gem_create(a, 4 * PG), hb = gem_create(b, 4 * PG);

	ASSERT_EQ(ha, 1); /* numbered per open: the same number, two buffers */
	ASSERT_EQ(hb, 1);
	uint64_t oa = gem_offset(a, ha), ob = gem_offset(b, hb);
	ASSERT_NE(oa, ob);

	char *pa = gem_map(a, ha, 4 * PG), *pb = gem_map(b, hb, 4 * PG);
	fill(pa, 4 * PG, 1);
	fill(pb, 4 * PG, 2);
	check(pa, 4 * PG, 1);
	check(pb, 4 * PG, 2);

	/* b cannot map a's buffer by its offset, nor name a's second handle. */
	ASSERT_ERRNO(fm_mmap(NULL, PG, PROT_READ, MAP_SHARED, b, (off_t)oa),
	    EINVAL);
	uint32_t ha2 = gem_create(a, PG);
	ASSERT_EQ(ha2, 2);
	struct fm_gem_info i = {.handle = ha2};
	ASSERT_ERRNO(fm_ioctl(b, FM_GEM_INFO, &i), ENOENT);
	struct fm_gem_close c = {.handle = ha2};
	ASSERT_ERRNO(fm_ioctl(b, FM_GEM_CLOSE, &c), ENOENT);
	struct fm_gem_evict e = {.handle = ha2};
	ASSERT_ERRNO(fm_ioctl(b, FM_GEM_EVICT, &e), ENOENT);
	ASSERT_OK(fm_ioctl(a, FM_GEM_CLOSE, &c)); /* a's own: fine */
	ASSERT_EQ(gem_stats(a).buffers, 2);

	ASSERT_OK(fm_munmap(pa, 4 * PG));
	ASSERT_OK(fm_munmap(pb, 4 * PG));
	ASSERT_OK(fm_close(a));
	ASSERT_OK(fm_close(b));
}

/* A buffer shared by name: both opens map the same pages, coherently. */
TEST(gem_shared_buffer_is_coherent)
{
	fm_test_need_uffd();
	int a = gem_dev(O_RDWR), b = gem_dev(O_RDWR);
	size_t len = 32 * PG;
	uint32_t ha = gem_create(a, len), name = gem_flink(a, ha);

	ASSERT_EQ(gem_flink(a, ha), name); /* one name per buffer */
	struct fm_gem_open o = {.name = name};
	ASSERT_OK(fm_ioctl(b, FM_GEM_OPEN, &o));
	ASSERT_EQ(o.size, len);
	uint32_t hb = o.handle;
	ASSERT_EQ(gem_offset(a, ha), gem_offset(b, hb));
	ASSERT_EQ(gem_info(b, hb).name, name);

	char *pa = gem_map(a, ha, len), *pb = gem_map(b, hb, len);
	ASSERT(pa != pb);
	fill(pa, len, 10);
	check(pb, len, 10); /* b reads what a wrote */
	fill(pb, len, 20);
	check(pa, len, 20); /* and the other way */
	for (int k = 0; k < 100; k++) { /* word by word, both ways */
		((volatile int *)pa)[k] = k;
		ASSERT_EQ(((volatile int *)pb)[k], k);
	}
	ASSERT_EQ(gem_stats(a).buffers, 1);
	ASSERT_EQ(gem_stats(a).named, 1);

	ASSERT_OK(fm_munmap(pa, len));
	ASSERT_OK(fm_munmap(pb, len));
	ASSERT_OK(fm_close(a));
	ASSERT_OK(fm_close(b));
}

/* Eviction removes every mapping; the next access faults the data back. */
TEST(gem_evict_and_refault_keep_data)
{
	fm_test_need_uffd();
	int a = gem_dev(O_RDWR), b = gem_dev(O_RDWR);
	size_t len = 64 * PG, n = len / PG;
	uint32_t ha = gem_create(a, len);
	uint32_t hb = gem_open_name(b, gem_flink(a, ha));
	char *pa = gem_map(a, ha, len), *pb = gem_map(b, hb, len);

	fill(pa, len, 33);
	struct fm_gem_info i0 = gem_info(a, ha);
	ASSERT_EQ(i0.resident, n);
	ASSERT_EQ(i0.dirty, n);
	ASSERT_EQ(i0.refill, 0);

	struct fm_stats e0, e1;
	gem_evict(a, ha);
	struct fm_gem_info i1 = gem_info(a, ha);
	ASSERT_EQ(i1.resident, 0);
	ASSERT_EQ(i1.dirty, 0);
	ASSERT_EQ(i1.saved - i0.saved,
	    n); /* every dirty page went to backing */
	ASSERT_EQ(i1.evictions, 1);

	fm_engine_stats(&e0);
	check(pb, len, 33); /* through the other open's mapping */
	check(pa, len, 33);
	fm_engine_stats(&e1);
	struct fm_gem_info i2 = gem_info(a, ha);
	ASSERT_GE(e1.faults - e0.faults, 1); /* it really faulted again */
	ASSERT_GE(i2.faults - i1.faults, 1);
	ASSERT_EQ(i2.refill - i1.refill, n); /* every page read back */
	ASSERT_EQ(i2.resident, n);
	ASSERT_EQ(i2.dirty, 0);

	/* Written again, evicted again: the newest data comes back. */
	fill(pb, len, 44);
	gem_evict(b, hb);
	ASSERT_EQ(gem_info(b, hb).resident, 0);
	check(pa, len, 44);
	ASSERT_EQ(gem_info(a, ha).evictions, 2);

	ASSERT_OK(fm_munmap(pa, len));
	ASSERT_OK(fm_munmap(pb, len));
	ASSERT_OK(fm_close(a));
	ASSERT_OK(fm_close(b));
}

/* Pages never written are not saved, and come back as zeros. */
TEST(gem_evict_untouched_pages_are_zero)
{
	fm_test_need_uffd();
	int a = gem_dev(O_RDWR);
	size_t len = 16 * PG;
	uint32_t h = gem_create(a, len);
	char *p = gem_map(a, h, len);

	for (size_t i = 0; i < len; i += PG)
		ASSERT_EQ(p[i], 0); /* read only: resident, clean */
	p[5 * PG] = 'x';
	ASSERT_EQ(gem_info(a, h).dirty, 1);
	gem_evict(a, h);
	struct fm_gem_info i = gem_info(a, h);
	ASSERT_EQ(i.saved, 1);
	ASSERT_EQ(i.resident, 0);
	for (size_t k = 0; k < len; k += PG)
		ASSERT_EQ(p[k], k == 5 * PG ? 'x' : 0);
	i = gem_info(a, h);
	ASSERT_EQ(i.refill, 1);
	ASSERT_EQ(i.zerofill, 16 + 15);
	ASSERT_OK(fm_munmap(p, len));
	ASSERT_OK(fm_close(a));
}

/* msync and the last munmap save dirty pages through pgo_put. */
TEST(gem_msync_and_unmap_save)
{
	fm_test_need_uffd();
	int a = gem_dev(O_RDWR);
	size_t len = 8 * PG;
	uint32_t h = gem_create(a, len);
	char *p = gem_map(a, h, len);

	fill(p, len, 5);
	ASSERT_EQ(gem_info(a, h).dirty, 8);
	ASSERT_OK(fm_msync(p, len, MS_SYNC));
	struct fm_gem_info i = gem_info(a, h);
	ASSERT_EQ(i.dirty, 0);
	ASSERT_EQ(i.saved, 8);
	p[0] = 1; /* dirty again: write-protected after the save, so seen */
	ASSERT_EQ(gem_info(a, h).dirty, 1);
	ASSERT_OK(fm_munmap(p, len));
	i = gem_info(a, h);
	ASSERT_EQ(i.dirty, 0);
	ASSERT_EQ(i.saved, 9);
	p = gem_map(a, h,
	    len); /* the data is the buffer's, not the mapping's */
	ASSERT_EQ(p[0], 1);
	check(p + PG, len - PG, 5 + PG / 512 * 7);
	ASSERT_OK(fm_munmap(p, len));
	ASSERT_OK(fm_close(a));
}

/* A mapping starting inside the buffer; a private mapping copies on write. */
TEST(gem_partial_and_private_mappings)
{
	fm_test_need_uffd();
	int a = gem_dev(O_RDWR);
	size_t len = 8 * PG;
	uint32_t h = gem_create(a, len);
	uint64_t off = gem_offset(a, h);
	char *p = gem_map(a, h, len);

	fill(p, len, 9);
	char *q = fm_mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, a,
	    (off_t)(off + 6 * PG));
	ASSERT(q != MAP_FAILED);
	ASSERT_EQ(q[0], p[6 * PG]);
	q[1] = 'q';
	ASSERT_EQ(p[6 * PG + 1], 'q');

	char *v = fm_mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE, a,
	    (off_t)off);
	ASSERT(v != MAP_FAILED);
	check(v, len, 9);
	v[3 * PG] = 'v'; /* its own copy */
	ASSERT_NE(p[3 * PG], 'v');
	p[4 * PG] = 'p'; /* an untouched private page still shows the buffer */
	ASSERT_EQ(v[4 * PG], 'p');
	ASSERT_OK(fm_munmap(v, len));
	ASSERT_OK(fm_munmap(q, 2 * PG));
	ASSERT_OK(fm_munmap(p, len));
	ASSERT_OK(fm_close(a));
}

/*
 * A buffer lives while a handle or a mapping holds it: closing every
 * handle and the descriptor leaves the mapping working; its munmap frees
 * the buffer (pgo_detach). The name dies with the last handle.
 */
TEST(gem_buffer_life)
{
	fm_test_need_uffd();
	int a = gem_dev(O_RDWR), b = gem_dev(O_RDWR);
	size_t len = 4 * PG;
	uint32_t h = gem_create(a, len), name = gem_flink(a, h);
	uint32_t hb = gem_open_name(b, name);
	char *p = gem_map(a, h, len);

	fill(p, len, 3);
	struct fm_gem_close c = {.handle = h};
	ASSERT_OK(fm_ioctl(a, FM_GEM_CLOSE, &c));
	ASSERT_ERRNO(fm_ioctl(a, FM_GEM_CLOSE, &c), ENOENT); /* gone from a */
	ASSERT_EQ(gem_open_name(a, name), 1); /* b still holds it: name lives */
	ASSERT_OK(fm_ioctl(a, FM_GEM_CLOSE, &c));
	c.handle = hb;
	ASSERT_OK(fm_ioctl(b, FM_GEM_CLOSE, &c));
	struct fm_gem_open o = {.name = name};
	ASSERT_ERRNO(fm_ioctl(b, FM_GEM_OPEN, &o),
	    ENOENT); /* last handle: no name */
	ASSERT_EQ(gem_stats(b).named, 0);
	ASSERT_EQ(gem_stats(b).buffers, 1); /* the mapping holds it */
	ASSERT_OK(fm_close(a));
	check(p, len, 3);
	p[0] = 77;
	ASSERT_EQ(p[0], 77);
	ASSERT_OK(fm_munmap(p, len));
	ASSERT_EQ(gem_stats(b).buffers, 0); /* freed */
	ASSERT_EQ(gem_stats(b).bytes, 0);

	/* Closing the descriptor drops every handle of the open. */
	for (int i = 0; i < 5; i++)
		(void)gem_create(b, PG);
	ASSERT_EQ(gem_stats(b).buffers, 5);
	ASSERT_OK(fm_close(b));
	int d = gem_dev(O_RDONLY);
	ASSERT_EQ(gem_stats(d).buffers, 0);
	ASSERT_OK(fm_close(d));
}

/* Handles are reused lowest first, as DRM's are; offsets never are. */
TEST(gem_handles_and_offsets)
{
	fm_test_need_uffd();
	int a = gem_dev(O_RDWR);
	uint32_t h1 = gem_create(a, PG), h2 = gem_create(a, 3 * PG);
	uint64_t o1 = gem_offset(a, h1), o2 = gem_offset(a, h2);

	ASSERT_EQ(h2, 2);
	ASSERT_GE(o2, o1 + PG); /* no overlap */
	struct fm_gem_close c = {.handle = h1};
	ASSERT_OK(fm_ioctl(a, FM_GEM_CLOSE, &c));
	uint32_t h3 = gem_create(a, PG);
	ASSERT_EQ(h3, 1);
	ASSERT_NE(gem_offset(a, h3), o1); /* a stale offset maps nothing */
	ASSERT_ERRNO(fm_mmap(NULL, PG, PROT_READ, MAP_SHARED, a, (off_t)o1),
	    EINVAL);
	ASSERT_OK(fm_close(a));
}

/* Every request with bad input fails with its errno and changes nothing. */
TEST(gem_bad_input)
{
	fm_test_need_uffd();
	int a = gem_dev(O_RDWR);
	uint32_t h = gem_create(a, 2 * PG);
	uint64_t off = gem_offset(a, h);

	ASSERT_ERRNO(fm_ioctl(a, _IOWR('g', 99, struct fm_gem_create), &h),
	    ENOTTY);
	ASSERT_ERRNO(fm_ioctl(a, 0, NULL), ENOTTY);
	ASSERT_ERRNO(fm_ioctl(a, FM_GEM_CREATE, NULL), EFAULT);

	struct fm_gem_create cr = {.size = 0};
	ASSERT_ERRNO(fm_ioctl(a, FM_GEM_CREATE, &cr), EINVAL);
	cr.size = FM_GEM_MAXSIZE + 1;
	ASSERT_ERRNO(fm_ioctl(a, FM_GEM_CREATE, &cr), EINVAL);
	cr = (struct fm_gem_create){.size = PG, .pad = 1};
	ASSERT_ERRNO(fm_ioctl(a, FM_GEM_CREATE, &cr), EINVAL);

	struct fm_gem_close c = {.handle = 0};
	ASSERT_ERRNO(fm_ioctl(a, FM_GEM_CLOSE, &c), EINVAL);
	c.handle = 99;
	ASSERT_ERRNO(fm_ioctl(a, FM_GEM_CLOSE, &c), ENOENT);
	c.handle = UINT32_MAX;
	ASSERT_ERRNO(fm_ioctl(a, FM_GEM_CLOSE, &c), ENOENT);
	struct fm_gem_mmap_offset mo = {.handle = 7};
	ASSERT_ERRNO(fm_ioctl(a, FM_GEM_MMAP_OFFSET, &mo), ENOENT);
	mo.handle = 0;
	ASSERT_ERRNO(fm_ioctl(a, FM_GEM_MMAP_OFFSET, &mo), EINVAL);
	struct fm_gem_flink fl = {.handle = 7};
	ASSERT_ERRNO(fm_ioctl(a, FM_GEM_FLINK, &fl), ENOENT);
	struct fm_gem_open op = {.name = 0};
	ASSERT_ERRNO(fm_ioctl(a, FM_GEM_OPEN, &op), EINVAL);
	op.name = 12345;
	ASSERT_ERRNO(fm_ioctl(a, FM_GEM_OPEN, &op), ENOENT);
	struct fm_gem_evict ev = {.handle = 7};
	ASSERT_ERRNO(fm_ioctl(a, FM_GEM_EVICT, &ev), ENOENT);
	struct fm_gem_info in = {.handle = 7};
	ASSERT_ERRNO(fm_ioctl(a, FM_GEM_INFO, &in), ENOENT);

	/* Mappings: beyond the buffer, no buffer, unaligned, too much prot. */
	ASSERT_ERRNO(fm_mmap(NULL, 3 * PG, PROT_READ, MAP_SHARED, a,
	                 (off_t)off),
	    ENXIO);
	ASSERT_ERRNO(fm_mmap(NULL, 2 * PG, PROT_READ, MAP_SHARED, a,
	                 (off_t)(off + PG)),
	    ENXIO);
	ASSERT_ERRNO(fm_mmap(NULL, PG, PROT_READ, MAP_SHARED, a,
	                 (off_t)(off + 2 * PG)),
	    EINVAL); /* the gap after it */
	ASSERT_ERRNO(fm_mmap(NULL, PG, PROT_READ, MAP_SHARED, a, 0), EINVAL);
	ASSERT_ERRNO(fm_mmap(NULL, PG, PROT_READ, MAP_SHARED, a,
	                 (off_t)off + 1),
	    EINVAL);
	ASSERT_ERRNO(fm_mmap(NULL, PG, PROT_READ | PROT_EXEC, MAP_SHARED, a,
	                 (off_t)off),
	    EACCES);
	int ro = gem_dev(O_RDONLY);
	uint32_t hr = gem_open_name(ro, gem_flink(a, h));
	ASSERT_ERRNO(fm_mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, ro,
	                 (off_t)gem_offset(ro, hr)),
	    EACCES);

	/* Nothing changed: the buffer maps and works, one buffer exists. */
	ASSERT_EQ(gem_stats(a).buffers, 1);
	char *p = gem_map(a, h, 2 * PG);
	p[PG] = 1;
	char *r = fm_mmap(NULL, 2 * PG, PROT_READ, MAP_SHARED, ro, (off_t)off);
	ASSERT(r != MAP_FAILED);
	ASSERT_EQ(r[PG], 1);
	ASSERT_OK(fm_munmap(r, 2 * PG));
	ASSERT_OK(fm_munmap(p, 2 * PG));
	ASSERT_OK(fm_close(ro));
	ASSERT_OK(fm_close(a));
}

/* ------------------------------------------------------------------------
 * Threads.
 */

struct churn {
	int fd;
	uint32_t name;
	int id;
};

/* Open the shared buffer, map it, check it, close it, over and over. */
static void *
churn_main(void *arg)
{
	struct churn *c = arg;

	for (int k = 0; k < 200; k++) {
		struct fm_gem_open o = {.name = c->name};
		struct fm_gem_mmap_offset mo;
		struct fm_gem_close cl;

		if (fm_ioctl(c->fd, FM_GEM_OPEN, &o) < 0)
			return "open by name";
		mo = (struct fm_gem_mmap_offset){.handle = o.handle};
		if (fm_ioctl(c->fd, FM_GEM_MMAP_OFFSET, &mo) < 0)
			return "offset";
		volatile char *p = fm_mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE,
		    MAP_SHARED, c->fd, (off_t)mo.offset);
		if (p == MAP_FAILED)
			return "mmap";
		if (p[0] != 'S')
			return "shared byte";
		p[PG + c->id] = (char)k;
		/* A private buffer of this thread's, in the same open. */
		struct fm_gem_create cr = {.size = PG};
		if (fm_ioctl(c->fd, FM_GEM_CREATE, &cr) < 0)
			return "create";
		cl = (struct fm_gem_close){.handle = cr.handle};
		if (fm_ioctl(c->fd, FM_GEM_CLOSE, &cl) < 0)
			return "close own";
		cl.handle = o.handle;
		if (fm_ioctl(c->fd, FM_GEM_CLOSE, &cl) < 0)
			return "close";
		if (fm_munmap((void *)p, 4 * PG) < 0)
			return "munmap";
	}
	return NULL;
}

TEST_TAGGED(gem_threads_share_and_churn, "thread")
{
	fm_test_need_uffd();
	int a = gem_dev(O_RDWR), b = gem_dev(O_RDWR);
	uint32_t h = gem_create(a, 4 * PG), name = gem_flink(a, h);
	char *p = gem_map(a, h, 4 * PG);
	pthread_t t[4];
	struct churn c[4];

	p[0] = 'S';
	for (int i = 0; i < 4; i++) {
		c[i] = (struct churn){i % 2 ? a : b, name, i};
		ASSERT_EQ(pthread_create(&t[i], NULL, churn_main, &c[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		void *why;

		ASSERT_EQ(pthread_join(t[i], &why), 0);
		if (why != NULL)
			fm_test_fail(__FILE__, __LINE__, "thread %d: %s", i,
			    (char *)why);
	}
	for (int i = 0; i < 4; i++)
		ASSERT_EQ(p[PG + i], (char)199);
	ASSERT_EQ(gem_stats(a).buffers, 1);
	ASSERT_OK(fm_munmap(p, 4 * PG));
	ASSERT_OK(fm_close(a));
	ASSERT_OK(fm_close(b));
}

#define NWRITERS 4

struct writer {
	volatile unsigned *p; /* one counter per page */
	size_t npages;
	int id;
	atomic_int *stop;
	unsigned last[64];
};

/* Bump the counter of every NWRITERS-th page, remembering what it wrote. */
static void *
writer_main(void *arg)
{
	struct writer *w = arg;
	unsigned v = 0;

	while (!atomic_load(w->stop)) {
		v++;
		for (size_t i = (size_t)w->id; i < w->npages; i += NWRITERS) {
			w->p[i * PG / sizeof(unsigned)] = v;
			w->last[i] = v;
		}
	}
	return NULL;
}

/* Burn CPU: preempted engine threads widen the races below. */
static void *
spin_main(void *arg)
{
	while (!atomic_load((atomic_int *)arg))
		;
	return NULL;
}

/*
 * Evictions while threads write: no write is ever lost, no fault gets
 * SIGBUS. (Against core 4766ba6 this caught fault_wp dirtying a page a
 * racing discard had dropped, and clean_pmaplocked then stealing a fault's
 * busy page: fm__object_unbusy aborted.)
 */
static void
evict_while_writing(unsigned pause_us, int secs)
{
	int a = gem_dev(O_RDWR);
	size_t n = 64, len = n * PG;
	uint32_t h = gem_create(a, len);
	volatile unsigned *p = (volatile unsigned *)gem_map(a, h, len);
	struct writer w[NWRITERS];
	pthread_t t[NWRITERS], spinner;
	atomic_int stop = 0;

	ASSERT_OK(fm_madvise((void *)p, len, MADV_RANDOM)); /* more faults */
	for (int i = 0; i < NWRITERS; i++) {
		w[i] =
		    (struct writer){.p = p, .npages = n, .id = i, .stop = &stop};
		ASSERT_EQ(pthread_create(&t[i], NULL, writer_main, &w[i]), 0);
	}
	ASSERT_EQ(pthread_create(&spinner, NULL, spin_main, &stop), 0);
	unsigned long k = 0;
	for (time_t t0 = time(NULL); time(NULL) - t0 < secs; k++) {
		gem_evict(a, h);
		if (pause_us)
			usleep(pause_us);
	}
	atomic_store(&stop, 1);
	for (int i = 0; i < NWRITERS; i++)
		ASSERT_EQ(pthread_join(t[i], NULL), 0);
	ASSERT_EQ(pthread_join(spinner, NULL), 0);
	for (size_t i = 0; i < n; i++)
		ASSERT_EQ(p[i * PG / sizeof(unsigned)],
		    w[i % NWRITERS].last[i]);
	gem_evict(a, h);
	for (size_t i = 0; i < n; i++)
		ASSERT_EQ(p[i * PG / sizeof(unsigned)],
		    w[i % NWRITERS].last[i]);
	ASSERT_EQ(gem_info(a, h).evictions, k + 1);
	ASSERT_OK(fm_munmap((void *)p, len));
	ASSERT_OK(fm_close(a));
}

TEST_TAGGED(gem_evict_while_writing, "thread")
{
	fm_test_need_uffd();
	evict_while_writing(50, 3);
}

/*
 * Back-to-back evictions must not starve a fault into SIGBUS. (Against
 * core 4766ba6 each discard waited for the fault's fill, then dropped the
 * pages before they were mapped, FM_FAULT_TRIES times: SIGBUS.)
 */
TEST_TAGGED(gem_evict_back_to_back, "thread")
{
	fm_test_need_uffd();
	evict_while_writing(0, 2);
}

/*
 * Create, map, write, evict and free a 64 GiB buffer, 300 times: the
 * backing storage a freed buffer had is reused, so eviction never runs
 * out of file (it gave EIO once every offset had been used).
 */
TEST(gem_create_free_cycles_reuse_backing)
{
	/* 17 TiB of buffers in all: about 30 s (every page's state walked). */
	if (getenv("FOMAP_TEST_KNOWN") == NULL)
		fm_test_skip("slow (30 s): make stress or FOMAP_TEST_KNOWN=1 "
		             "runs it");
	fm_test_need_uffd();
	int fd = gem_dev(O_RDWR);

	for (int i = 0; i < 300; i++) {
		uint32_t h = gem_create(fd, (uint64_t)64 << 30);
		char *p = gem_map(fd, h, 16 * PG);

		p[PG] = (char)(i + 1);
		gem_evict(fd, h);
		ASSERT_EQ(p[PG], (char)(i + 1));
		ASSERT_OK(fm_munmap(p, 16 * PG));
		struct fm_gem_close c = {.handle = h};
		ASSERT_OK(fm_ioctl(fd, FM_GEM_CLOSE, &c));
	}
	ASSERT_OK(fm_close(fd));
}

/*
 * gem_mmap finds a buffer by fake offset among many (its open's tree):
 * any page of each, none in the gap after one, none of a closed handle;
 * a buffer with two handles in one open stays mappable while one is left.
 */
TEST(gem_mmap_offset_lookup_among_many)
{
	fm_test_need_uffd();
	int fd = fm_open(FM_GEM_DEV, O_RDWR);
	enum { NBO = 300 };
	uint32_t h[NBO];
	uint64_t off[NBO];
	char *p;

	ASSERT_GE(fd, 0);
	for (int i = 0; i < NBO; i++) {
		h[i] = gem_create(fd, (uint64_t)(1 + i % 3) * PG);
		off[i] = gem_offset(fd, h[i]);
	}
	for (int i = 0; i < NBO; i += 37) {
		size_t len = (size_t)(1 + i % 3) * PG;

		p = fm_mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
		    (off_t)(off[i] + len - PG)); /* its last page */
		ASSERT(p != MAP_FAILED);
		p[0] = (char)i;
		ASSERT_OK(fm_munmap(p, PG));
		ASSERT_ERRNO(fm_mmap(NULL, PG, PROT_READ, MAP_SHARED, fd,
		                 (off_t)(off[i] + len)),
		    EINVAL); /* the gap after it */
		ASSERT_ERRNO(fm_mmap(NULL, len + PG, PROT_READ, MAP_SHARED, fd,
		                 (off_t)off[i]),
		    ENXIO);
	}
	/* Two handles to buffer 100 in this open: one closed, still there. */
	uint32_t again = gem_open_name(fd, gem_flink(fd, h[100]));
	struct fm_gem_close c = {.handle = h[100]};
	ASSERT_OK(fm_ioctl(fd, FM_GEM_CLOSE, &c));
	p = gem_map(fd, again, PG);
	ASSERT_EQ(p[0], 100 % 37 == 0 ? 100 : 0);
	ASSERT_OK(fm_munmap(p, PG));
	c.handle = again;
	ASSERT_OK(fm_ioctl(fd, FM_GEM_CLOSE, &c));
	ASSERT_ERRNO(fm_mmap(NULL, PG, PROT_READ, MAP_SHARED, fd,
	                 (off_t)off[100]),
	    EINVAL);
	c.handle = h[111];
	ASSERT_OK(fm_ioctl(fd, FM_GEM_CLOSE, &c));
	ASSERT_ERRNO(fm_mmap(NULL, PG, PROT_READ, MAP_SHARED, fd,
	                 (off_t)off[111]),
	    EINVAL);
	p = gem_map(fd, h[148], 2 * PG); /* 148 % 37 == 0: written above */
	ASSERT_EQ(p[PG], (char)148);
	ASSERT_OK(fm_munmap(p, 2 * PG));
	ASSERT_OK(fm_close(fd));
}
