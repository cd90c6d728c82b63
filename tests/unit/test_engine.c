/*
 * test_engine.c: the fault engine under concurrency: faults from several
 * threads on one mapping, faults racing munmap, discard, protect and
 * write-back. Tagged "thread": they also run under TSan.
 */
#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>

#include <fomap/driver.h>

#include "../test.h"
#include "testdev.h"

#define RW (PROT_READ | PROT_WRITE)
#define NTHREADS 4

struct job {
	void *(*fn)(void *);
	char *base;
	size_t pages;
	int id;
	pthread_barrier_t *bar;
	volatile int *stop;
	struct fm_object *obj;
	long count;
};

static void
run_threads(struct job *jobs, int n)
{
	pthread_t t[NTHREADS + 1];

	for (int i = 0; i < n; i++)
		ASSERT_EQ(pthread_create(&t[i], NULL, jobs[i].fn, &jobs[i]), 0);
	for (int i = 0; i < n; i++)
		ASSERT_EQ(pthread_join(t[i], NULL), 0);
}

/* Each thread writes its id into its stripe of pages, then checks all. */
static void *
stripe_writer(void *arg)
{
	struct job *j = arg;

	pthread_barrier_wait(j->bar);
	for (size_t i = (size_t)j->id; i < j->pages; i += NTHREADS)
		j->base[i * PG + j->id] = (char)(j->id + 1);
	return NULL;
}

TEST_TAGGED(concurrent_faults_one_mapping, "thread")
{
	fm_test_need_uffd();
	int fd = fm_open("/dev/fomap/zero", O_RDWR);
	size_t pages = 4096;
	char *a = fm_mmap(NULL, pages * PG, RW, MAP_SHARED, fd, 0);
	pthread_barrier_t bar;
	struct job jobs[NTHREADS];

	ASSERT(a != MAP_FAILED);
	pthread_barrier_init(&bar, NULL, NTHREADS);
	for (int i = 0; i < NTHREADS; i++)
		jobs[i] = (struct job){stripe_writer, .base = a, .pages = pages,
		    .id = i, .bar = &bar};
	run_threads(jobs, NTHREADS);
	for (size_t i = 0; i < pages; i++)
		for (int k = 0; k < NTHREADS; k++)
			ASSERT_EQ(a[i * PG + k],
			    (int)(i % NTHREADS) == k ? k + 1 : 0);
	ASSERT_OK(fm_munmap(a, pages * PG));
	ASSERT_OK(fm_close(fd));
	pthread_barrier_destroy(&bar);
}

/* All threads fault the same pages at the same time. */
static void *
same_page_reader(void *arg)
{
	struct job *j = arg;

	pthread_barrier_wait(j->bar);
	for (size_t i = 0; i < j->pages; i++)
		j->count += j->base[i * PG];
	return NULL;
}

TEST_TAGGED(concurrent_faults_same_pages, "thread")
{
	fm_test_need_uffd();
	int file = testdev_tmpfile(256 * PG);
	struct fm_object *obj;
	ASSERT_EQ(fm_store_create(file, 0, 256 * PG, &obj), 0);
	int fd = testdev_open("same", obj, RW, O_RDWR);
	char *a = fm_mmap(NULL, 256 * PG, PROT_READ, MAP_SHARED, fd, 0);
	pthread_barrier_t bar;
	struct job jobs[NTHREADS];
	long want = 0;

	ASSERT(a != MAP_FAILED);
	ASSERT_OK(fm_madvise(a, 256 * PG, MADV_RANDOM)); /* one page a fault */
	for (size_t i = 0; i < 256; i++)
		want += (char)((i * PG) % 251);
	pthread_barrier_init(&bar, NULL, NTHREADS);
	for (int i = 0; i < NTHREADS; i++)
		jobs[i] = (struct job){same_page_reader, .base = a,
		    .pages = 256, .bar = &bar};
	run_threads(jobs, NTHREADS);
	for (int i = 0; i < NTHREADS; i++)
		ASSERT_EQ(jobs[i].count, want);
	ASSERT_OK(fm_munmap(a, 256 * PG));
	ASSERT_OK(fm_close(fd));
	fm_object_rele(obj);
	pthread_barrier_destroy(&bar);
	close(file);
}

/* Touch pages until the mapping disappears under us (SIGSEGV). */
static void *
toucher(void *arg)
{
	struct job *j = arg;

	pthread_barrier_wait(j->bar);
	for (size_t i = 0; i < j->pages; i++) {
		int sig = fm_test_probe(j->base + i * PG, 1);

		if (sig == SIGSEGV)
			break;
		ASSERT_EQ(sig, 0);
		j->count++;
	}
	return NULL;
}

static void *
unmapper(void *arg)
{
	struct job *j = arg;

	pthread_barrier_wait(j->bar);
	usleep((useconds_t)(j->id * 50));
	ASSERT_OK(fm_munmap(j->base, j->pages * PG));
	return NULL;
}

TEST_TAGGED(munmap_races_faults, "thread")
{
	fm_test_need_uffd();
	int fd = fm_open("/dev/fomap/zero", O_RDWR);

	for (int round = 0; round < 40; round++) {
		size_t pages = 2048;
		char *a = fm_mmap(NULL, pages * PG, RW, MAP_SHARED, fd, 0);
		pthread_barrier_t bar;
		struct job jobs[3];

		ASSERT(a != MAP_FAILED);
		ASSERT_OK(fm_madvise(a, pages * PG, MADV_RANDOM));
		pthread_barrier_init(&bar, NULL, 3);
		jobs[0] = (struct job){toucher, .base = a, .pages = pages,
		    .bar = &bar};
		jobs[1] = (struct job){toucher, .base = a + PG * (pages / 2),
		    .pages = pages / 2, .bar = &bar};
		jobs[2] = (struct job){unmapper, .base = a, .pages = pages,
		    .bar = &bar, .id = round};
		run_threads(jobs, 3);
		pthread_barrier_destroy(&bar);
	}
	ASSERT_OK(fm_close(fd));
}

/* Write page i's number into it, then check it over and over. */
static void *
verifier(void *arg)
{
	struct job *j = arg;

	for (size_t i = 0; i < j->pages; i++)
		j->base[i * PG] = (char)i;
	pthread_barrier_wait(j->bar);
	do {
		for (size_t i = 0; i < j->pages; i++)
			ASSERT_EQ(j->base[i * PG], (char)i);
		j->count++;
	} while (!__atomic_load_n(j->stop, __ATOMIC_ACQUIRE));
	return NULL;
}

static void *
discarder(void *arg)
{
	struct job *j = arg;

	pthread_barrier_wait(j->bar);
	for (int i = 0; i < 200; i++)
		ASSERT_EQ(fm_object_unmap(j->obj, 0, j->pages * PG,
		              i % 2 ? FM_UNMAP_DISCARD : FM_UNMAP_KEEP),
		    0);
	__atomic_store_n(j->stop, 1, __ATOMIC_RELEASE);
	return NULL;
}

TEST_TAGGED(discard_races_faults, "thread")
{
	fm_test_need_uffd();
	int file = testdev_tmpfile(64 * PG);
	struct fm_object *obj;
	ASSERT_EQ(fm_store_create(file, 0, 64 * PG, &obj), 0);
	int fd = testdev_open("discard-race", obj, RW, O_RDWR);
	char *a = fm_mmap(NULL, 64 * PG, RW, MAP_SHARED, fd, 0);
	pthread_barrier_t bar;
	volatile int stop = 0;
	struct job jobs[2];

	ASSERT(a != MAP_FAILED);
	pthread_barrier_init(&bar, NULL, 2);
	jobs[0] = (struct job){verifier, .base = a, .pages = 64, .bar = &bar,
	    .stop = &stop};
	jobs[1] = (struct job){discarder, .pages = 64, .bar = &bar,
	    .stop = &stop, .obj = obj};
	run_threads(jobs, 2);
	ASSERT_GE(jobs[0].count, 1);
	ASSERT_OK(fm_munmap(a, 64 * PG));
	ASSERT_OK(fm_close(fd));
	fm_object_rele(obj);
	pthread_barrier_destroy(&bar);
	close(file);
}

/* Keep writing a counter into every page; msync in another thread. */
static void *
scribbler(void *arg)
{
	struct job *j = arg;

	pthread_barrier_wait(j->bar);
	do {
		j->count++;
		for (size_t i = 0; i < j->pages; i++)
			j->base[i * PG + 1] = (char)j->count;
	} while (!__atomic_load_n(j->stop, __ATOMIC_ACQUIRE));
	return NULL;
}

static void *
syncer(void *arg)
{
	struct job *j = arg;

	pthread_barrier_wait(j->bar);
	for (int i = 0; i < 300; i++)
		ASSERT_OK(fm_msync(j->base, j->pages * PG, MS_SYNC));
	__atomic_store_n(j->stop, 1, __ATOMIC_RELEASE);
	return NULL;
}

TEST_TAGGED(writeback_races_writes, "thread")
{
	fm_test_need_uffd();
	int file = testdev_tmpfile(16 * PG);
	struct fm_object *obj;
	ASSERT_EQ(fm_store_create(file, 0, 16 * PG, &obj), 0);
	int fd = testdev_open("wb-race", obj, RW, O_RDWR);
	char *a = fm_mmap(NULL, 16 * PG, RW, MAP_SHARED, fd, 0);
	pthread_barrier_t bar;
	volatile int stop = 0;
	struct job jobs[2];
	char c;

	ASSERT(a != MAP_FAILED);
	pthread_barrier_init(&bar, NULL, 2);
	jobs[0] = (struct job){scribbler, .base = a, .pages = 16, .bar = &bar,
	    .stop = &stop};
	jobs[1] = (struct job){syncer, .base = a, .pages = 16, .bar = &bar,
	    .stop = &stop};
	run_threads(jobs, 2);
	/* No write may be lost: the last values reach the file. */
	ASSERT_OK(fm_msync(a, 16 * PG, MS_SYNC));
	for (int i = 0; i < 16; i++) {
		ASSERT_EQ(pread(file, &c, 1, i * PG + 1), 1);
		ASSERT_EQ(c, (char)jobs[0].count);
	}
	ASSERT_OK(fm_munmap(a, 16 * PG));
	ASSERT_OK(fm_close(fd));
	fm_object_rele(obj);
	pthread_barrier_destroy(&bar);
	close(file);
}

/* Toggle read-only and read-write while another thread writes. */
static void *
protector(void *arg)
{
	struct job *j = arg;

	pthread_barrier_wait(j->bar);
	for (int i = 0; i < 300; i++)
		ASSERT_EQ(fm_object_protect(j->obj, 0, j->pages * PG,
		              i % 2 ? PROT_READ | PROT_WRITE : PROT_READ),
		    0);
	__atomic_store_n(j->stop, 1, __ATOMIC_RELEASE);
	return NULL;
}

static void *
prober(void *arg)
{
	struct job *j = arg;

	pthread_barrier_wait(j->bar);
	while (!__atomic_load_n(j->stop, __ATOMIC_ACQUIRE))
		for (size_t i = 0; i < j->pages; i++) {
			int sig = fm_test_probe(j->base + i * PG, 1);
			ASSERT(sig == 0 || sig == SIGBUS);
			j->count += sig == SIGBUS;
		}
	return NULL;
}

TEST_TAGGED(protect_races_writes, "thread")
{
	fm_test_need_uffd();
	struct fm_object *obj;
	ASSERT_EQ(fm_object_create(NULL, 32 * PG, NULL, &obj), 0);
	int fd = testdev_open("protect-race", obj, RW, O_RDWR);
	char *a = fm_mmap(NULL, 32 * PG, RW, MAP_SHARED, fd, 0);
	pthread_barrier_t bar;
	volatile int stop = 0;
	struct job jobs[2];

	ASSERT(a != MAP_FAILED);
	pthread_barrier_init(&bar, NULL, 2);
	jobs[0] = (struct job){prober, .base = a, .pages = 32, .bar = &bar,
	    .stop = &stop};
	jobs[1] = (struct job){protector, .pages = 32, .bar = &bar,
	    .stop = &stop, .obj = obj};
	run_threads(jobs, 2);
	/* Settled: the last call (i = 299) made it read-write. */
	for (int i = 0; i < 32; i++)
		ASSERT_EQ(fm_test_probe(a + i * PG, 1), 0);
	ASSERT_EQ(fm_object_protect(obj, 0, 32 * PG, PROT_READ), 0);
	for (int i = 0; i < 32; i++)
		ASSERT_EQ(fm_test_probe(a + i * PG, 1), SIGBUS);
	ASSERT_OK(fm_munmap(a, 32 * PG));
	ASSERT_OK(fm_close(fd));
	fm_object_rele(obj);
	pthread_barrier_destroy(&bar);
}

/* Read every page over and over while another thread flips the protection. */
static void *
reader(void *arg)
{
	struct job *j = arg;

	pthread_barrier_wait(j->bar);
	do {
		for (size_t i = 0; i < j->pages; i++)
			ASSERT_EQ(fm_test_probe(j->base + i * PG, 0), 0);
		j->count++;
	} while (!__atomic_load_n(j->stop, __ATOMIC_ACQUIRE));
	return NULL;
}

static void *
mprotector(void *arg)
{
	struct job *j = arg;

	pthread_barrier_wait(j->bar);
	for (int i = 0; i < 300; i++) {
		ASSERT_OK(fm_mprotect(j->base, j->pages * PG,
		    i % 2 ? PROT_READ : PROT_READ | PROT_WRITE));
		if (i % 50 == 0) /* and make the pages fault again */
			ASSERT_OK(
			    fm_madvise(j->base, j->pages * PG, MADV_DONTNEED));
	}
	__atomic_store_n(j->stop, 1, __ATOMIC_RELEASE);
	return NULL;
}

TEST_TAGGED(mprotect_races_faults, "thread")
{
	fm_test_need_uffd();
	int fd = fm_open("/dev/fomap/zero", O_RDWR);
	char *a = fm_mmap(NULL, 128 * PG, RW, MAP_SHARED, fd, 0);
	pthread_barrier_t bar;
	volatile int stop = 0;
	struct job jobs[2];

	ASSERT(a != MAP_FAILED);
	ASSERT_OK(fm_madvise(a, 128 * PG, MADV_RANDOM));
	pthread_barrier_init(&bar, NULL, 2);
	jobs[0] = (struct job){reader, .base = a, .pages = 128, .bar = &bar,
	    .stop = &stop};
	jobs[1] = (struct job){mprotector, .base = a, .pages = 128, .bar = &bar,
	    .stop = &stop};
	run_threads(jobs, 2);
	ASSERT_GE(jobs[0].count, 1);
	/* The last call made it read-only. */
	ASSERT_EQ(fm_test_probe(a, 1), SIGSEGV);
	ASSERT_OK(fm_munmap(a, 128 * PG));
	ASSERT_OK(fm_close(fd));
	pthread_barrier_destroy(&bar);
}

/* A pager slow enough for the program to replace the mapping meanwhile. */
static int
slow_fault(struct fm_fault *f)
{
	usleep(20000);
	if (f->npages == 0)
		return 0;
	f->npages = 1;
	return fm_object_write(f->obj, (off_t)f->pgidx * PG, "Z", 2);
}

static int
slow_put(struct fm_object *obj, uint64_t pg, unsigned n, int flags)
{
	return 0;
}

static const struct fm_pagerops slow_ops = {.pgo_fault = slow_fault,
    .pgo_put = slow_put};

static void *
slow_reader(void *arg)
{
	struct job *j = arg;

	pthread_barrier_wait(j->bar);
	j->count = fm_test_probe(j->base, 0); /* 0 or SIGSEGV, never SIGBUS */
	return NULL;
}

TEST_TAGGED(map_fixed_replaces_under_a_fault, "thread")
{
	fm_test_need_uffd();
	struct fm_object *obj;
	ASSERT_EQ(fm_object_create(&slow_ops, 4 * PG, NULL, &obj), 0);
	int fd = testdev_open("fixed-race", obj, RW, O_RDWR);
	char *m1 = fm_mmap(NULL, 4 * PG, RW, MAP_SHARED, fd, 0);
	char *m2 = fm_mmap(NULL, 4 * PG, RW, MAP_SHARED, fd, 0);
	pthread_barrier_t bar;
	struct job jobs[1];
	struct fm_stats s0, s1;

	ASSERT(m1 != MAP_FAILED && m2 != MAP_FAILED);
	m2[0] = 'U'; /* resident and dirty */
	ASSERT_EQ(fm_object_unmap(obj, 0, PG, FM_UNMAP_KEEP), 0);
	fm_engine_stats(&s0);
	pthread_barrier_init(&bar, NULL, 2);
	jobs[0] = (struct job){slow_reader, .base = m1, .bar = &bar};
	pthread_t t;
	ASSERT_EQ(pthread_create(&t, NULL, slow_reader, &jobs[0]), 0);
	pthread_barrier_wait(&bar);
	usleep(5000); /* the fault is in the pager now */
	char *r = fm_mmap(m1, 4 * PG, RW,
	    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	ASSERT_PTR_EQ(r, m1);
	ASSERT_EQ(pthread_join(t, NULL), 0);
	fm_engine_stats(&s1);
	ASSERT_EQ(jobs[0].count, 0);
	ASSERT_EQ(s1.sigbus, s0.sigbus);
	ASSERT_EQ(m2[0], 'U'); /* the object's page was never refilled */
	ASSERT_OK(fm_munmap(m1, 4 * PG));
	ASSERT_OK(fm_munmap(m2, 4 * PG));
	ASSERT_OK(fm_close(fd));
	fm_object_rele(obj);
	pthread_barrier_destroy(&bar);
}

/*
 * fm_engine_latency counts every fault the engine answers, once, in the
 * bucket of its time; a fault held up by a slow pager for about 20 ms
 * lands in a bucket of 8 ms or more, never under.
 */
static int
sleepy_fault(struct fm_fault *f)
{
	usleep(20000);
	if (f->npages == 0)
		return 0;
	f->npages = 1;
	return fm_object_write(f->obj, (off_t)f->pgidx * PG, "S", 2);
}

static const struct fm_pagerops sleepy_ops = {.pgo_fault = sleepy_fault};

static unsigned long
latency_sum(unsigned long *h, int from)
{
	unsigned long s = 0;

	for (int i = from; i < FM_LATENCY_BUCKETS; i++)
		s += h[i];
	return s;
}

TEST(engine_latency_histogram_counts_each_fault)
{
	fm_test_need_uffd();
	unsigned long h0[FM_LATENCY_BUCKETS], h1[FM_LATENCY_BUCKETS];
	struct fm_stats s0, s1;
	struct fm_object *obj;

	ASSERT_EQ(fm_object_create(&sleepy_ops, 4 * PG, NULL, &obj), 0);
	int fd = testdev_open("latency", obj, RW, O_RDWR);
	char *p = fm_mmap(NULL, 4 * PG, RW, MAP_SHARED, fd, 0);

	ASSERT(p != MAP_FAILED);
	ASSERT_OK(fm_madvise(p, 4 * PG, MADV_RANDOM)); /* a fault a page */
	ASSERT_EQ(fm_engine_latency(h0, FM_LATENCY_BUCKETS),
	    FM_LATENCY_BUCKETS);
	fm_engine_stats(&s0);
	for (int i = 0; i < 4; i++)
		(void)*(volatile char *)(p + i * PG);
	fm_engine_stats(&s1);
	/* Noted once answered: the woken thread may look before. */
	for (int i = 0; i < 1000; i++) {
		ASSERT_EQ(fm_engine_latency(h1, FM_LATENCY_BUCKETS),
		    FM_LATENCY_BUCKETS);
		if (latency_sum(h1, 0) - latency_sum(h0, 0) >=
		    s1.faults - s0.faults)
			break;
		usleep(1000);
	}
	ASSERT_EQ(latency_sum(h1, 0) - latency_sum(h0, 0),
	    s1.faults - s0.faults);
	ASSERT_GE(s1.faults - s0.faults, 4);
	/* 2^13 µs = 8.2 ms: each of the four slow fills is there or above */
	ASSERT_GE(latency_sum(h1, 13) - latency_sum(h0, 13), 4);
	ASSERT_EQ(fm_engine_latency(h1, 3), 3);
	ASSERT_EQ(fm_engine_latency(h1, -1), 0);
	ASSERT_OK(fm_munmap(p, 4 * PG));
	ASSERT_OK(fm_close(fd));
	fm_object_rele(obj);
}
