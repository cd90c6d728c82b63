/*
 * test_trust_signals.c: regression tests for fomap under what a process
 * does to its threads: system calls that touch a page the driver refuses
 * (4), signal handlers that touch fomap memory (5), cancellation in the
 * middle of a call (6), signal storms during refused accesses (8) and
 * write hooks (9), faults abandoned before their answer (10), and what a
 * SIGBUS says (13). Numbers are the defects of the issue these tests came
 * from.
 */
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include <fomap/driver.h>
#include <fomap/fomap.h>
#include <fomap/guard.h>

#include "test_trust.h"
#include "testdev.h"

/* A fresh guard region of npages, mapped shared, one page a fault. */
static int
guard_region(size_t npages, volatile char **pp)
{
	int fd = fm_open(FM_GUARD_DEV, O_RDWR);
	struct fm_guard_setup su = {.size = npages * PG};
	char *p;

	ASSERT_GE(fd, 0);
	ASSERT_OK(fm_ioctl(fd, FM_GUARD_SETUP, &su));
	p = fm_mmap(NULL, npages * PG, RW, MAP_SHARED, fd, 0);
	ASSERT(p != MAP_FAILED);
	ASSERT_OK(fm_madvise(p, npages * PG, MADV_RANDOM));
	*pp = p;
	return fd;
}

static void
guard_protect_ro(int fd, size_t pg, size_t n)
{
	struct fm_guard_protect a = {pg * PG, n * PG, PROT_READ,
	    FM_GUARD_REFUSE};

	ASSERT_OK(fm_ioctl(fd, FM_GUARD_PROTECT, &a));
}

static void
guard_revoke(int fd, size_t pg, size_t n)
{
	struct fm_guard_remove a = {pg * PG, n * PG, FM_GUARD_REVOKE, 0};

	ASSERT_OK(fm_ioctl(fd, FM_GUARD_REMOVE, &a));
}

/* A pager whose every fill fails. */
static int
failing_fault(struct fm_fault *f)
{
	(void)f;
	return -EIO;
}

static const struct fm_pagerops failing_ops = {.pgo_fault = failing_fault};

/* An object of npages whose fills all fail, mapped shared. */
static volatile char *
failing_mapping(const char *name, size_t npages, int *fdp,
    struct fm_object **objp)
{
	char *p;

	ASSERT_EQ(fm_object_create(&failing_ops, npages * PG, NULL, objp), 0);
	*fdp = testdev_open(name, *objp, RW, O_RDWR);
	p = fm_mmap(NULL, npages * PG, RW, MAP_SHARED, *fdp, 0);
	ASSERT(p != MAP_FAILED);
	return p;
}

/*
 * A failed fill in a mapping whose protection the kernel reads through
 * though it lacks PROT_READ (write-only: readable on x86): the read gets
 * its SIGBUS, once, and does not hang.
 */
TEST_TAGGED(trust_failed_fill_in_write_only_mapping_sigbus, "thread")
{
	fm_test_need_uffd();
	struct fm_object *obj;
	int fd;
	volatile char *p = failing_mapping("wonly-fail", 2, &fd, &obj);

	tb_install();
	ASSERT_OK(fm_munmap((void *)p, 2 * PG));
	p = fm_mmap(NULL, 2 * PG, PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT(p != MAP_FAILED);
	ASSERT_EQ(tb_probe(p + PG, 0), SIGBUS);
	ASSERT_EQ(atomic_load(&tb_total), 1);
	ASSERT_OK(fm_munmap((void *)p, 2 * PG));
	ASSERT_OK(fm_close(fd));
	fm_object_rele(obj);
}

/* ------------------------------------------------------------------------
 * 4. A system call that touches a page the driver refuses fails with
 * EFAULT, as it would for any bad address; it neither hangs nor spins.
 */

enum { SC_READ_INTO, SC_WRITE_FROM };

struct sysc {
	int how;
	volatile char *p;
	int pfd[2];
	ssize_t r;
	int err;
};

static void *
syscall_main(void *arg)
{
	struct sysc *s = arg;

	errno = 0;
	if (s->how == SC_READ_INTO)
		s->r = read(s->pfd[0], (void *)s->p, 5);
	else
		s->r = write(s->pfd[1], (const void *)s->p, 5);
	s->err = errno;
	return NULL;
}

static void
syscall_gives_efault(volatile char *p, int how, const char *what)
{
	struct sysc s = {.how = how, .p = p};
	pthread_t t;

	tb_install(); /* a SIGBUS for the access must not kill the test */
	ASSERT_OK(pipe(s.pfd));
	if (how == SC_READ_INTO)
		ASSERT_EQ(write(s.pfd[1], "hello", 5), 5);
	ASSERT_EQ(pthread_create(&t, NULL, syscall_main, &s), 0);
	JOIN_WITHIN(t, 4, what);
	if (s.r != -1 || s.err != EFAULT)
		fm_test_fail(__FILE__, __LINE__,
		    "%s: returned %zd errno %d (%s), want EFAULT", what, s.r,
		    s.err, strerror(s.err));
	close(s.pfd[0]);
	close(s.pfd[1]);
}

TEST_TAGGED(trust_read_into_revoked_page_efault, "thread")
{
	fm_test_need_uffd();
	volatile char *p;
	int fd = guard_region(4, &p);

	p[PG] = 'a';
	guard_revoke(fd, 1, 1);
	syscall_gives_efault(p + PG, SC_READ_INTO,
	    "read(2) into a revoked page");
	ASSERT_OK(fm_munmap((void *)p, 4 * PG));
	ASSERT_OK(fm_close(fd));
}

TEST_TAGGED(trust_write_from_revoked_page_efault, "thread")
{
	fm_test_need_uffd();
	volatile char *p;
	int fd = guard_region(4, &p);

	p[PG] = 'a';
	guard_revoke(fd, 1, 1);
	syscall_gives_efault(p + PG, SC_WRITE_FROM,
	    "write(2) from a revoked page");
	ASSERT_OK(fm_munmap((void *)p, 4 * PG));
	ASSERT_OK(fm_close(fd));
}

/* The write hook refuses: a kernel write to a read-only page. */
TEST_TAGGED(trust_read_into_refused_page_efault, "thread")
{
	fm_test_need_uffd();
	volatile char *p;
	int fd = guard_region(4, &p);

	p[2 * PG] = 'b';
	guard_protect_ro(fd, 2, 1);
	syscall_gives_efault(p + 2 * PG, SC_READ_INTO,
	    "read(2) into a read-only page");
	ASSERT_EQ(p[2 * PG], 'b');
	ASSERT_OK(fm_munmap((void *)p, 4 * PG));
	ASSERT_OK(fm_close(fd));
}

/*
 * While a system call's refused write to a page fails with EFAULT, other
 * threads' accesses to the page are served as ever: their reads read it,
 * their writes get SIGBUS (refused), never SIGSEGV nor a SIGBUS for a read.
 */
struct bystander {
	volatile char *p;
	int wr;
	atomic_int *stop;
	long n, bad;
};

static void *
bystander_main(void *arg)
{
	struct bystander *b = arg;

	while (!atomic_load(b->stop)) {
		int sig = tb_probe(b->p, b->wr);

		b->n++;
		if (b->wr ? sig != SIGBUS : sig != 0 || *b->p != 'b')
			b->bad++;
	}
	return NULL;
}

TEST_TAGGED(trust_syscall_refusal_leaves_other_threads_alone, "thread")
{
	fm_test_need_uffd();
	volatile char *p;
	int fd = guard_region(4, &p), pfd[2];
	atomic_int stop = 0;
	struct bystander b[2] = {{.p = p + 2 * PG + 8, .wr = 0, .stop = &stop},
	    {.p = p + 2 * PG + 16, .wr = 1, .stop = &stop}};
	pthread_t t[2];
	long calls = 0, efault = 0;

	tb_install();
	p[2 * PG + 8] = p[2 * PG + 16] = 'b';
	guard_protect_ro(fd, 2, 1);
	ASSERT_OK(pipe(pfd));
	for (int i = 0; i < 2; i++)
		ASSERT_EQ(pthread_create(&t[i], NULL, bystander_main, &b[i]),
		    0);
	for (double end = now_s() + 1.0; now_s() < end; calls++) {
		ASSERT_EQ(write(pfd[1], "x", 1), 1);
		if (read(pfd[0], (void *)(p + 2 * PG), 1) < 0 &&
		    errno == EFAULT)
			efault++;
		else
			break;
		char c;
		ASSERT_EQ(read(pfd[0], &c, 1), 1); /* the byte left behind */
	}
	atomic_store(&stop, 1);
	for (int i = 0; i < 2; i++)
		JOIN_WITHIN(t[i], 4, "a bystander");
	if (efault != calls || b[0].bad || b[1].bad)
		fm_test_fail(__FILE__, __LINE__,
		    "%ld of %ld refused read(2)s failed with EFAULT; reads "
		    "by another thread: %ld of %ld wrong; writes: %ld of %ld "
		    "without their SIGBUS",
		    efault, calls, b[0].bad, b[0].n, b[1].bad, b[1].n);
	ASSERT_GE(calls, 10);
	close(pfd[0]);
	close(pfd[1]);
	ASSERT_OK(fm_munmap((void *)p, 4 * PG));
	ASSERT_OK(fm_close(fd));
}

/*
 * While a refused system call's page is away (moved out of the engine's
 * userfaultfd until the call has failed), a protection change across it
 * must still reach every other page of the range: the kernel's write
 * protection stops at the first page not registered for it, and pages
 * after it were left writable.
 */
struct ro_reader {
	volatile char *p;
	int pfd[2];
	atomic_int stop;
	long n, bad;
	double longest; /* s, the longest refused read(2) */
	double longest_cpu; /* s, the most CPU time one took */
};

/* The calling thread's CPU time: a call retrying its fault spins on it. */
static double
thread_cpu_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *
ro_reader_main(void *arg)
{
	struct ro_reader *r = arg;
	char c;

	while (!atomic_load(&r->stop)) {
		double t0 = now_s(), c0 = thread_cpu_s();

		if (write(r->pfd[1], "x", 1) != 1)
			break;
		if (read(r->pfd[0], (void *)r->p, 1) >= 0 || errno != EFAULT)
			r->bad++;
		if (now_s() - t0 > r->longest)
			r->longest = now_s() - t0;
		if (thread_cpu_s() - c0 > r->longest_cpu)
			r->longest_cpu = thread_cpu_s() - c0;
		if (read(r->pfd[0], &c, 1) != 1)
			break;
		r->n++;
	}
	return NULL;
}

static void
pin_to(pthread_t t, int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	ASSERT_EQ(pthread_setaffinity_np(t, sizeof set, &set), 0);
}

static void *
spin_main(void *arg)
{
	atomic_int *stop = arg;

	while (!atomic_load(stop))
		;
	return NULL;
}

/*
 * busy: the refused call shares CPU 0 with its storm and two busy
 * threads, two more keep CPU 1 busy. Its bound is on the CPU time it
 * spins retrying its fault, which the machine's other load does not
 * stretch as it does the time it waits for a CPU.
 */
#define REFUSED_CALL_CPU 0.1
#define NSPIN 4

/*
 * Refused read(2)s into a read-only page for secs under a storm of
 * signals (with SA_RESTART), a CPU shared (busy) or not: each fails with
 * EFAULT; with busy, each within REFUSED_CALL_CPU of CPU time.
 */
static void
refused_reads(int busy, long us)
{
	volatile char *p;
	int fd;
	struct ro_reader r;
	atomic_int stop = 0;
	pthread_t t, spin[NSPIN];
	struct storm st;
	cpu_set_t ours;

	ASSERT_OK(sched_getaffinity(0, sizeof ours, &ours));
	if (busy && (!CPU_ISSET(0, &ours) || !CPU_ISSET(1, &ours)))
		fm_test_skip("CPUs 0 and 1 are not both ours: no contention");
	fd = guard_region(4, &p);
	r = (struct ro_reader){.p = p + 2 * PG};

	p[2 * PG] = 'b';
	guard_protect_ro(fd, 2, 1);
	tb_install();
	ASSERT_OK(pipe(r.pfd));
	ASSERT_EQ(pthread_create(&t, NULL, ro_reader_main, &r), 0);
	for (int i = 0; busy && i < NSPIN; i++) {
		ASSERT_EQ(pthread_create(&spin[i], NULL, spin_main, &stop), 0);
		pin_to(spin[i], i % 2);
	}
	storm_start(&st, t);
	if (busy) {
		pin_to(t, 0);
		pin_to(st.self, 0);
	}
	sleep_us(us);
	storm_stop(&st);
	atomic_store(&r.stop, 1);
	JOIN_WITHIN(t, 10, "read(2)s into a read-only page, signals pending");
	atomic_store(&stop, 1);
	for (int i = 0; busy && i < NSPIN; i++)
		JOIN_WITHIN(spin[i], 3, "a busy thread");
	printf("# %ld refused read(2)s failed with EFAULT under %ld signals%s, "
	       "the longest %.1f ms, the most CPU time %.1f ms\n",
	    r.n, st.sent, busy ? " on a busy CPU" : "", r.longest * 1e3,
	    r.longest_cpu * 1e3);
	if (r.bad != 0 || atomic_load(&tb_total) != 0 ||
	    (busy && r.longest_cpu > REFUSED_CALL_CPU))
		fm_test_fail(__FILE__, __LINE__,
		    "%ld read(2)s: %ld did not fail with EFAULT; %ld SIGBUS; "
		    "%ld SIGUSR1 sent; the longest took %.1f ms, %.1f ms of "
		    "CPU time",
		    r.n, r.bad, atomic_load(&tb_total), st.sent,
		    r.longest * 1e3, r.longest_cpu * 1e3);
	ASSERT_GE(r.n, 1);
	ASSERT_EQ(p[2 * PG], 'b');
	close(r.pfd[0]);
	close(r.pfd[1]);
	ASSERT_OK(fm_munmap((void *)p, 4 * PG));
	ASSERT_OK(fm_close(fd));
}

/*
 * A refused read(2) under a storm of signals: the kernel retries a system
 * call's fault without sleeping while a signal is pending, so the engine
 * must tell such a call from a thread that left the fault; each refused
 * read(2) fails with EFAULT, none hangs.
 */
TEST_TAGGED(trust_refused_syscall_under_signal_storm_efault, "thread")
{
	fm_test_need_uffd();
	refused_reads(0, 1500000);
}

/*
 * The same on a CPU the refused call shares with busy threads and its
 * storm: it is switched out of its retries all the time, which the kernel
 * counts as sleeps, so it never looks stuck at one look; it must be told
 * all the same, each call within 100 ms of the CPU time it spins (told
 * after 20 ms of retries, as internals.md says: 11-16 ms measured, 24-55
 * with four more busy threads on the machine; before, calls spun 110-380
 * ms of CPU time, 0.4-1.6 s of wall time, here).
 */
TEST_TAGGED(trust_refused_syscall_under_load_and_storm_ends, "thread")
{
	fm_test_need_uffd();
	refused_reads(1, 2000000);
}

/*
 * A page the pager refuses, read into by read(2) under a storm of signals
 * (a stuck call: its page is moved away for a moment) while another
 * thread reads it from user mode. A fault whose fill failed while the
 * page was away kept the page busy for good: every later fill of it
 * waited, holding the object's pmaplock shared, and the next protection
 * change of the object waited for them (a deadlock seen once in a 180 s
 * make stress). Every protect here must end.
 */
struct toucher {
	volatile char *p;
	atomic_int stop;
	long n;
};

static void *
toucher_main(void *arg)
{
	struct toucher *t = arg;

	while (!atomic_load(&t->stop)) {
		(void)tb_probe(t->p, 0);
		t->n++;
	}
	return NULL;
}

TEST_TAGGED(trust_refused_fill_while_its_page_is_away_frees_it, "thread")
{
	fm_test_need_uffd();
	volatile char *p;
	int fd = guard_region(4, &p);
	struct ro_reader r = {.p = p + 2 * PG};
	struct toucher to = {.p = p + 2 * PG};
	pthread_t t, u;
	struct storm st;
	long k;

	p[2 * PG] = 'b';
	guard_revoke(fd, 2, 1);
	tb_install();
	ASSERT_OK(pipe(r.pfd));
	ASSERT_EQ(pthread_create(&t, NULL, ro_reader_main, &r), 0);
	ASSERT_EQ(pthread_create(&u, NULL, toucher_main, &to), 0);
	storm_start(&st, t);
	for (k = 0; k < 3000; k++)
		guard_protect_ro(fd, 0,
		    1); /* the object's pmaplock, exclusive */
	storm_stop(&st);
	atomic_store(&r.stop, 1);
	atomic_store(&to.stop, 1);
	JOIN_WITHIN(t, 10, "read(2)s into a revoked page");
	JOIN_WITHIN(u, 10, "reads of a revoked page");
	printf("# %ld protects beside %ld refused read(2)s and %ld refused "
	       "reads\n",
	    k, r.n, to.n);
	ASSERT_EQ(r.bad, 0);
	close(r.pfd[0]);
	close(r.pfd[1]);
	ASSERT_OK(fm_munmap((void *)p, 4 * PG));
	ASSERT_OK(fm_close(fd));
}

TEST_TAGGED(trust_protect_across_a_refused_syscall_page, "thread")
{
	fm_test_need_uffd();
	struct fm_object *obj;
	struct ro_reader r = {0};
	long rounds = 0, writable = 0;
	pthread_t t;

	tb_install();
	ASSERT_EQ(fm_object_create(NULL, 4 * PG, NULL, &obj), 0);
	int fd = testdev_open("protect-across", obj, RW, O_RDWR);
	volatile char *p = fm_mmap(NULL, 4 * PG, RW, MAP_SHARED, fd, 0);
	ASSERT(p != MAP_FAILED);
	for (int i = 0; i < 4; i++)
		p[i * PG] = 'a';
	ASSERT_EQ(fm_object_protect(obj, PG, PG, PROT_READ), 0);
	r.p = p + PG;
	ASSERT_OK(pipe(r.pfd));
	ASSERT_EQ(pthread_create(&t, NULL, ro_reader_main, &r), 0);
	for (double end = now_s() + 1.0; now_s() < end; rounds++) {
		ASSERT_EQ(fm_object_protect(obj, 2 * PG, 2 * PG, RW), 0);
		ASSERT_EQ(tb_probe(p + 3 * PG, 1), 0);
		/* One run across page 1, maybe away now. */
		ASSERT_EQ(fm_object_protect(obj, 0, 4 * PG, PROT_READ), 0);
		if (tb_probe(p + 3 * PG, 1) != SIGBUS)
			writable++;
	}
	atomic_store(&r.stop, 1);
	JOIN_WITHIN(t, 4, "the refused reader");
	if (writable > 0 || r.bad > 0)
		fm_test_fail(__FILE__, __LINE__,
		    "%ld of %ld writes to a read-only page went through; "
		    "%ld of %ld refused read(2)s did not fail with EFAULT",
		    writable, rounds, r.bad, r.n);
	ASSERT_GE(r.n, 10);
	close(r.pfd[0]);
	close(r.pfd[1]);
	ASSERT_OK(fm_munmap((void *)p, 4 * PG));
	ASSERT_OK(fm_close(fd));
	fm_object_rele(obj);
}

/*
 * An fm_mprotect that fails part way (a hole in the range: ENOMEM, as
 * mprotect(2) does) has changed the mapping before the hole. A page a
 * refused system call moves away and back comes back with that
 * protection: a write to it from user mode is then SIGSEGV.
 */
TEST_TAGGED(trust_partial_mprotect_holds_across_a_refused_syscall, "thread")
{
	fm_test_need_uffd();
	volatile char *p;
	int fd = guard_region(4, &p), pfd[2];
	struct fm_guard_restore back = {0, PG};

	tb_install();
	p[8] = 'a';
	ASSERT_OK(fm_munmap((void *)(p + 2 * PG), 2 * PG));
	ASSERT_ERRNO(fm_mprotect((void *)p, 3 * PG, PROT_READ), ENOMEM);
	guard_revoke(fd, 0, 1);
	ASSERT_OK(pipe(pfd));
	ASSERT_ERRNO(write(pfd[1], (const void *)p, 1), EFAULT);
	ASSERT_OK(fm_ioctl(fd, FM_GUARD_RESTORE, &back));
	tb_catch(SIGSEGV);
	int sig = tb_probe(p + 8, 1);
	signal(SIGSEGV, SIG_DFL);
	ASSERT_EQ(sig, SIGSEGV);
	close(pfd[0]);
	close(pfd[1]);
	ASSERT_OK(fm_munmap((void *)p, 2 * PG));
	ASSERT_OK(fm_close(fd));
}

/* The pager fails the fill. */
TEST_TAGGED(trust_read_into_failing_pager_efault, "thread")
{
	fm_test_need_uffd();
	struct fm_object *obj;
	int fd;
	volatile char *p = failing_mapping("sys-fail", 4, &fd, &obj);

	syscall_gives_efault(p + PG, SC_READ_INTO,
	    "read(2) into a page whose fill fails");
	syscall_gives_efault(p + 2 * PG, SC_WRITE_FROM,
	    "write(2) from a page whose fill fails");
	ASSERT_OK(fm_munmap((void *)p, 4 * PG));
	ASSERT_OK(fm_close(fd));
	fm_object_rele(obj);
}

/* ------------------------------------------------------------------------
 * 5. A signal handler may touch fomap memory whatever its thread was doing,
 * fm_mmap, fm_mprotect and fm_munmap included.
 */

#define HPAGES 64

static volatile char *h_mem;
static atomic_long h_next, h_done;

static void
touch_handler(int sig)
{
	long i = atomic_fetch_add(&h_next, 1);

	(void)sig;
	h_mem[(i % HPAGES) * PG + 1] = (char)i;
	atomic_fetch_add(&h_done, 1);
}

struct victim {
	int fd;
	atomic_int *stop;
	atomic_long n;
	const char *err;
};

static void *
victim_main(void *arg)
{
	struct victim *v = arg;

	while (!atomic_load(v->stop)) {
		char *q = fm_mmap(NULL, 4 * PG, RW, MAP_SHARED, v->fd, 0);

		if (q == MAP_FAILED) {
			v->err = "fm_mmap";
			break;
		}
		if (fm_mprotect(q, 2 * PG, PROT_READ) < 0) {
			v->err = "fm_mprotect";
			break;
		}
		if (fm_munmap(q, 4 * PG) < 0) {
			v->err = "fm_munmap";
			break;
		}
		atomic_fetch_add(&v->n, 1);
	}
	return NULL;
}

/* Make the handler's pages fault again, over and over. */
static void *
dontneed_main(void *arg)
{
	atomic_int *stop = arg;

	while (!atomic_load(stop)) {
		if (fm_madvise((void *)h_mem, HPAGES * PG, MADV_DONTNEED) < 0)
			return "madvise";
		sleep_us(200);
	}
	return NULL;
}

TEST_TAGGED(trust_signal_handler_touches_fomap_memory, "thread")
{
	fm_test_need_uffd();
	int zfd = fm_open("/dev/fomap/zero", O_RDWR);
	struct sigaction sa = {.sa_handler = touch_handler,
	    .sa_flags = SA_RESTART};
	atomic_int stop = 0, stop_dn = 0;
	struct victim v = {.stop = &stop};
	pthread_t tv, tdn;
	long sent = 0;
	void *why;

	ASSERT_GE(zfd, 0);
	v.fd = zfd;
	char *m = fm_mmap(NULL, HPAGES * PG, RW, MAP_SHARED, zfd, 0);
	ASSERT(m != MAP_FAILED);
	ASSERT_OK(fm_madvise(m, HPAGES * PG, MADV_RANDOM));
	h_mem = m;
	sigemptyset(&sa.sa_mask);
	ASSERT_OK(sigaction(SIGUSR1, &sa, NULL));
	ASSERT_EQ(pthread_create(&tdn, NULL, dontneed_main, &stop_dn), 0);
	ASSERT_EQ(pthread_create(&tv, NULL, victim_main, &v), 0);
	long seen = 0;
	double moved = now_s();
	for (double end = now_s() + 2.5; now_s() < end; sent++) {
		ASSERT_EQ(pthread_kill(tv, SIGUSR1), 0);
		sleep_us(100);
		if (atomic_load(&v.n) != seen) {
			seen = atomic_load(&v.n);
			moved = now_s();
		} else if (now_s() - moved > 1.5)
			fm_test_fail(__FILE__, __LINE__,
			    "deadlock: no fm_mmap/fm_mprotect/fm_munmap done "
			    "for 1.5 s (%ld done, %ld signals, %ld handled)",
			    seen, sent, atomic_load(&h_done));
	}
	atomic_store(&stop, 1);
	JOIN_WITHIN(tv, 3,
	    "a thread whose signal handler touched fomap memory "
	    "inside fm_mmap/fm_mprotect/fm_munmap");
	atomic_store(&stop_dn, 1);
	JOIN_WITHIN_RET(tdn, 3, "madvise thread", &why);
	ASSERT(why == NULL);
	if (v.err)
		fm_test_fail(__FILE__, __LINE__, "victim: %s failed", v.err);
	ASSERT_GE(atomic_load(&v.n), 1);
	ASSERT_GE(atomic_load(&h_done), 1);
	ASSERT_OK(fm_munmap(m, HPAGES * PG));
	ASSERT_OK(fm_close(zfd));
}

/* ------------------------------------------------------------------------
 * 6. A thread cancelled inside a call that writes back (the last fm_munmap
 * of an object, fm_msync, or a MAP_FIXED that replaces the last mapping)
 * leaves nothing locked or busy: later faults and write-backs go on, and
 * no dirty page goes unwritten.
 */

#define CPAGES 8

enum { C_MUNMAP, C_MSYNC, C_MAPFIXED };
enum { C_PENDING, C_DURING };

struct slowput {
	atomic_int in_put;
	atomic_int done[CPAGES]; /* a put of the page has returned */
};

static int
slowput_put(struct fm_object *obj, uint64_t pg, unsigned n, int flags)
{
	struct slowput *s = fm_object_private(obj);

	(void)flags;
	atomic_store(&s->in_put, 1);
	for (int i = 0; i < 5; i++)
		sleep_us(40000); /* I/O: nanosleep is a cancellation point */
	for (uint64_t i = pg; i < pg + n && i < CPAGES; i++)
		atomic_store(&s->done[i], 1);
	return 0;
}

static const struct fm_pagerops slowput_ops = {.pgo_put = slowput_put};

struct cancel_job {
	int op;
	char *a;
	atomic_int ready, go;
};

static void *
cancel_victim(void *arg)
{
	struct cancel_job *j = arg;

	atomic_store(&j->ready, 1);
	while (!atomic_load(&j->go))
		; /* no cancellation point before the call */
	if (j->op == C_MUNMAP)
		(void)fm_munmap(j->a, CPAGES * PG);
	else if (j->op == C_MSYNC)
		(void)fm_msync(j->a, CPAGES * PG, MS_SYNC);
	else
		(void)fm_mmap(j->a, CPAGES * PG, RW,
		    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	pthread_testcancel();
	return "not cancelled";
}

struct after {
	int fd;
	const char *err;
};

/* Map the object again, fault, write, write back, unmap. */
static void *
after_main(void *arg)
{
	struct after *a = arg;
	volatile char *b = fm_mmap(NULL, CPAGES * PG, RW, MAP_SHARED, a->fd, 0);

	if (b == MAP_FAILED) {
		a->err = "fm_mmap";
		return NULL;
	}
	for (int i = 0; i < CPAGES; i++)
		if (b[i * PG] != 'c')
			a->err = "a page lost its data";
	b[1] = 'd';
	if (fm_msync((void *)b, CPAGES * PG, MS_SYNC) < 0)
		a->err = "fm_msync";
	if (fm_munmap((void *)b, CPAGES * PG) < 0)
		a->err = "fm_munmap";
	return NULL;
}

/*
 * Dirty every page of the only mapping of obj (mapped through fd), have a
 * thread do op on it and cancel that thread, before the call (pending) or
 * while the pager writes back (during: s is the slow pager's state).
 */
static void
cancel_test(int fd, int op, int when, struct slowput *s)
{
	struct cancel_job j = {.op = op};
	struct after af = {.fd = fd};
	pthread_t t;
	void *ret;

	j.a = fm_mmap(NULL, CPAGES * PG, RW, MAP_SHARED, fd, 0);
	ASSERT(j.a != MAP_FAILED);
	for (int i = 0; i < CPAGES; i++)
		j.a[i * PG] = 'c';
	ASSERT_EQ(pthread_create(&t, NULL, cancel_victim, &j), 0);
	ASSERT(wait_flag(&j.ready, 3));
	if (when == C_PENDING) {
		ASSERT_EQ(pthread_cancel(t), 0);
		atomic_store(&j.go, 1);
	} else {
		atomic_store(&j.go, 1);
		ASSERT(wait_flag(&s->in_put, 3));
		ASSERT_EQ(pthread_cancel(t), 0);
	}
	JOIN_WITHIN_RET(t, 3, "the cancelled thread", &ret);
	ASSERT(ret == PTHREAD_CANCELED);
	ASSERT_EQ(pthread_create(&t, NULL, after_main, &af), 0);
	JOIN_WITHIN(t, 4, "faults and write-back after the cancel");
	if (af.err)
		fm_test_fail(__FILE__, __LINE__, "after the cancel: %s",
		    af.err);
	if (op == C_MSYNC)
		ASSERT_OK(fm_munmap(j.a, CPAGES * PG));
	else if (op == C_MAPFIXED)
		ASSERT_OK(fm_munmap(j.a, CPAGES * PG));
	for (int i = 0; s && i < CPAGES; i++)
		if (!atomic_load(&s->done[i]))
			fm_test_fail(__FILE__, __LINE__,
			    "dirty page %d was never written back", i);
}

/* The issue's case: a store object, cancelled as fm_munmap writes back. */
TEST_TAGGED(trust_cancel_in_munmap_store_writeback, "thread")
{
	fm_test_need_uffd();
	int file = testdev_tmpfile(CPAGES * PG);
	struct fm_object *obj;
	char c;

	ASSERT_EQ(fm_store_create(file, 0, CPAGES * PG, &obj), 0);
	int fd = testdev_open("cancel-store", obj, RW, O_RDWR);
	cancel_test(fd, C_MUNMAP, C_PENDING, NULL);
	for (int i = 0; i < CPAGES; i++) {
		ASSERT_EQ(pread(file, &c, 1, i * PG), 1);
		ASSERT_EQ(c, 'c');
	}
	ASSERT_EQ(pread(file, &c, 1, 1), 1);
	ASSERT_EQ(c, 'd');
	ASSERT_OK(fm_close(fd));
	fm_object_rele(obj);
	close(file);
}

static void
slowput_cancel(int op)
{
	fm_test_need_uffd();
	struct slowput s = {0};
	struct fm_object *obj;

	ASSERT_EQ(fm_object_create(&slowput_ops, CPAGES * PG, &s, &obj), 0);
	int fd = testdev_open("cancel-slowput", obj, RW, O_RDWR);
	cancel_test(fd, op, C_DURING, &s);
	ASSERT_OK(fm_close(fd));
	fm_object_rele(obj);
}

TEST_TAGGED(trust_cancel_during_munmap_writeback, "thread")
{
	slowput_cancel(C_MUNMAP);
}

TEST_TAGGED(trust_cancel_during_msync_writeback, "thread")
{
	slowput_cancel(C_MSYNC);
}

TEST_TAGGED(trust_cancel_during_map_fixed_writeback, "thread")
{
	slowput_cancel(C_MAPFIXED);
}

/* ------------------------------------------------------------------------
 * 8. Under a storm of other signals, each refused access gives exactly one
 * SIGBUS, for that access: none late, none twice, none lost.
 */

#define RPAGES 4

/*
 * What the engine decided and what each access met, in order: printed for
 * a SIGBUS that reached another access (the last events of its thread,
 * and the protection changes, up to the first such SIGBUS: the record
 * stops there), so that a rare failure says how it came about.
 */
#define TR_N 8192
static struct tr_ev {
	const char *what;
	pid_t tid;
	uintptr_t va;
	unsigned long x;
} tr[TR_N];
static unsigned long tr_n;
static int tr_frozen; /* at the first SIGBUS elsewhere */
static pthread_mutex_t tr_lock = PTHREAD_MUTEX_INITIALIZER;

static void
tr_note(const char *what, pid_t tid, uintptr_t va, unsigned long x)
{
	pthread_mutex_lock(&tr_lock);
	if (!tr_frozen)
		tr[tr_n++ % TR_N] =
		    (struct tr_ev){what, tid, va & ~(uintptr_t)(PG - 1), x};
	pthread_mutex_unlock(&tr_lock);
}

/* The last events, before mark, of tid (and of no thread: mprotect). */
static void
tr_dump(unsigned long mark, pid_t tid)
{
	unsigned long from = mark > TR_N ? mark - TR_N : 0;
	int shown = 0;

	pthread_mutex_lock(&tr_lock);
	for (unsigned long i = mark; i-- > from && shown < 120;) {
		const struct tr_ev *e = &tr[i % TR_N];

		if (e->tid != tid && e->tid != 0)
			continue;
		fprintf(stderr, "  %6ld %-28s tid %d page %#lx %lu\n",
		    (long)(i - mark), e->what, (int)e->tid,
		    (unsigned long)e->va, e->x);
		shown++;
	}
	pthread_mutex_unlock(&tr_lock);
}

struct refuser {
	volatile char *p;
	int wr, npages; /* npages: 0 means RPAGES */
	atomic_int stop;
	long attempts, caught, went, segv, elsewhere;
	void *bad_addr, *want_addr;
	pid_t tid;
	unsigned long mark; /* tr_n at the first SIGBUS elsewhere */
};

static void *
refuser_main(void *arg)
{
	struct refuser *r = arg;

	r->tid = gettid();
	while (!atomic_load(&r->stop)) {
		volatile char *x = r->p +
		    (r->attempts % (r->npages ? r->npages : RPAGES)) * PG + 5;
		uintptr_t want = (uintptr_t)x & ~(uintptr_t)(PG - 1);

		r->attempts++;
		tr_note("access", r->tid, want, (unsigned long)r->attempts);
		int sig = tb_probe(x, r->wr);
		tr_note(sig == 0         ? "access went"
		        : sig == SIGSEGV ? "access SIGSEGV"
		                         : "access SIGBUS at",
		    r->tid, sig == SIGBUS ? (uintptr_t)tb_addr : want,
		    (unsigned long)r->attempts);
		if (sig == 0)
			r->went++;
		else if (sig == SIGSEGV)
			r->segv++;
		else if (((uintptr_t)tb_addr & ~(uintptr_t)(PG - 1)) != want) {
			if (r->elsewhere++ == 0) {
				r->bad_addr = tb_addr;
				r->want_addr = (void *)x;
				pthread_mutex_lock(&tr_lock);
				if (!tr_frozen)
					r->mark = tr_n;
				tr_frozen = 1;
				pthread_mutex_unlock(&tr_lock);
			}
		} else
			r->caught++;
	}
	sleep_us(300000); /* late signals land here */
	return NULL;
}

static void
one_sigbus_each(volatile char *p, int wr, const char *what)
{
	struct refuser r = {.p = p, .wr = wr};
	struct storm st;
	pthread_t t;

	tb_install();
	ASSERT_EQ(pthread_create(&t, NULL, refuser_main, &r), 0);
	storm_start(&st, t);
	sleep_us(2000000);
	storm_stop(&st);
	atomic_store(&r.stop, 1);
	JOIN_WITHIN(t, 4, what);
	long total = atomic_load(&tb_total), stray = atomic_load(&tb_stray);
	if (r.went || r.elsewhere || stray || total != r.attempts)
		fm_test_fail(__FILE__, __LINE__,
		    "%s: %ld attempts, %ld SIGBUS (%ld for the access, %ld "
		    "for another page (first %p at %p), %ld while none was "
		    "awaited), %ld went through; %ld SIGUSR1 sent",
		    what, r.attempts, total, r.caught, r.elsewhere, r.bad_addr,
		    r.want_addr, stray, r.went, st.sent);
	ASSERT_GE(r.attempts, 10);
}

TEST_TAGGED(trust_refused_write_one_sigbus_under_signal_storm, "thread")
{
	fm_test_need_uffd();
	volatile char *p;
	int fd = guard_region(RPAGES, &p);

	for (int i = 0; i < RPAGES; i++)
		p[i * PG + 5] = 'r';
	guard_protect_ro(fd, 0, RPAGES);
	one_sigbus_each(p, 1, "refused writes");
	ASSERT_EQ(p[5], 'r');
	ASSERT_OK(fm_munmap((void *)p, RPAGES * PG));
	ASSERT_OK(fm_close(fd));
}

TEST_TAGGED(trust_revoked_read_one_sigbus_under_signal_storm, "thread")
{
	fm_test_need_uffd();
	volatile char *p;
	int fd = guard_region(RPAGES, &p);

	guard_revoke(fd, 0, RPAGES);
	one_sigbus_each(p, 0, "reads of revoked pages");
	ASSERT_OK(fm_munmap((void *)p, RPAGES * PG));
	ASSERT_OK(fm_close(fd));
}

TEST_TAGGED(trust_failed_fill_one_sigbus_under_signal_storm, "thread")
{
	fm_test_need_uffd();
	struct fm_object *obj;
	int fd;
	volatile char *p = failing_mapping("storm-fail", RPAGES, &fd, &obj);

	one_sigbus_each(p, 0, "reads of pages whose fill fails");
	ASSERT_OK(fm_munmap((void *)p, RPAGES * PG));
	ASSERT_OK(fm_close(fd));
	fm_object_rele(obj);
}

/*
 * The same without signals, while another thread gives the pages back and
 * takes them again (protect RW/RO, or restore/revoke): each access either
 * goes through or gets one SIGBUS, for itself; a refusal never reaches the
 * thread's next access because the page was given back meanwhile.
 */
enum { T_PROTECT, T_REVOKE, T_MPROTECT };

struct toggler {
	int fd, how;
	volatile char *p;
	atomic_int stop;
	long flips;
};

static void *
toggler_main(void *arg)
{
	struct toggler *tg = arg;

	while (!atomic_load(&tg->stop)) {
		int give = tg->flips++ % 2 == 0;

		if (tg->how == T_MPROTECT) {
			tr_note(give ? "mprotect RW" : "mprotect R", 0,
			    (uintptr_t)tg->p, (unsigned long)tg->flips);
			(void)fm_mprotect((void *)tg->p, RPAGES * PG,
			    give ? RW : PROT_READ);
			tr_note("mprotect done", 0, (uintptr_t)tg->p,
			    (unsigned long)tg->flips);
		} else if (tg->how == T_REVOKE && give) {
			struct fm_guard_restore a = {0, RPAGES * PG};

			(void)fm_ioctl(tg->fd, FM_GUARD_RESTORE, &a);
		} else if (tg->how == T_REVOKE) {
			struct fm_guard_remove a = {0, RPAGES * PG,
			    FM_GUARD_REVOKE, 0};

			(void)fm_ioctl(tg->fd, FM_GUARD_REMOVE, &a);
		} else {
			struct fm_guard_protect a = {0, RPAGES * PG,
			    give ? RW : PROT_READ, give ? 0 : FM_GUARD_REFUSE};

			(void)fm_ioctl(tg->fd, FM_GUARD_PROTECT, &a);
		}
		sleep_us(50);
	}
	return NULL;
}

#define NRACERS 3

/*
 * how: what the other thread toggles (the guard's protection, revocation,
 * or the mapping's protection, fm_mprotect: then a refused write may end
 * with SIGSEGV, and its SIGBUS must not come after).
 */
static void
sigbus_for_its_access(int how)
{
	fm_test_need_uffd();
	volatile char *p;
	int fd = guard_region(RPAGES, &p), revoke = how == T_REVOKE;
	struct toggler tg = {.fd = fd, .how = how, .p = p};
	struct refuser r[NRACERS];
	struct storm st[NRACERS];
	pthread_t t[NRACERS], tt;
	long attempts = 0, went = 0, caught = 0, elsewhere = 0, segv = 0;

	tb_install();
	atomic_store(&fm_test_trace, tr_note);
	if (how == T_MPROTECT) {
		tb_catch(SIGSEGV);
		guard_protect_ro(fd, 0, RPAGES);
	}
	for (int i = 0; i < NRACERS; i++) {
		/* Each its own byte of the pages. */
		r[i] = (struct refuser){.p = p + i, .wr = !revoke};
		ASSERT_EQ(pthread_create(&t[i], NULL, refuser_main, &r[i]), 0);
	}
	ASSERT_EQ(pthread_create(&tt, NULL, toggler_main, &tg), 0);
	/* Signals wake a refused access, which faults again under the new
	 * protection. */
	for (int i = 0; how == T_MPROTECT && i < NRACERS; i++)
		storm_start(&st[i], t[i]);
	sleep_us(2000000);
	for (int i = 0; how == T_MPROTECT && i < NRACERS; i++)
		storm_stop(&st[i]);
	atomic_store(&tg.stop, 1);
	JOIN_WITHIN(tt, 4, "the toggler");
	for (int i = 0; i < NRACERS; i++) {
		atomic_store(&r[i].stop, 1);
		JOIN_WITHIN(t[i], 4, "the accesses");
		attempts += r[i].attempts;
		went += r[i].went;
		caught += r[i].caught;
		elsewhere += r[i].elsewhere;
		segv += r[i].segv;
	}
	if (how == T_MPROTECT)
		signal(SIGSEGV, SIG_DFL);
	atomic_store(&fm_test_trace, NULL);
	for (int i = 0; i < NRACERS; i++)
		if (r[i].elsewhere) {
			fprintf(stderr,
			    "tid %d: SIGBUS at %p during its access at %p; "
			    "before it, newest first:\n",
			    (int)r[i].tid, r[i].bad_addr, r[i].want_addr);
			tr_dump(r[i].mark, r[i].tid);
		}
	long total = atomic_load(&tb_total), stray = atomic_load(&tb_stray);
	if (elsewhere || stray || total != attempts - went - segv)
		fm_test_fail(__FILE__, __LINE__,
		    "%ld accesses, %ld went through, %ld SIGSEGV, %ld SIGBUS "
		    "(%ld for the access, %ld for another page, %ld while "
		    "none was awaited); %ld flips",
		    attempts, went, segv, total, caught, elsewhere, stray,
		    tg.flips);
	ASSERT_GE(caught, 10);
	ASSERT_GE(how == T_MPROTECT ? segv : went, 10);
	ASSERT_OK(fm_munmap((void *)p, RPAGES * PG));
	ASSERT_OK(fm_close(fd));
}

TEST_TAGGED(trust_refused_write_racing_unprotect_hits_its_access, "thread")
{
	sigbus_for_its_access(T_PROTECT);
}

TEST_TAGGED(trust_refused_write_racing_mprotect_hits_its_access, "thread")
{
	sigbus_for_its_access(T_MPROTECT);
}

TEST_TAGGED(trust_revoked_read_racing_restore_hits_its_access, "thread")
{
	sigbus_for_its_access(T_REVOKE);
}

/*
 * A refusal whose page was mapped after its message was read is not told:
 * the install woke the thread, whose access went on. Here the pager keeps
 * a read's refusal (call A) while another thread's fault maps the page
 * (B): the read goes through; the thread reads the page again, after its
 * mapping was dropped, and that fault's call (C) waits too. Then A refuses:
 * the thread is in a fault at the same page, as it was, but in a new
 * access, which C lets through: a SIGBUS for A would end it.
 */
enum { RM_FILL, RM_REFUSE, RM_ALLOW, RM_LATE };

static struct {
	atomic_int calls, armed, entered[RM_LATE + 1], release[RM_LATE + 1];
	volatile char *p;
	atomic_int step, res[2];
} rm;

static int
rm_fault(struct fm_fault *f)
{
	int k = atomic_load(&rm.armed) ? atomic_fetch_add(&rm.calls, 1) + 1
	                               : RM_FILL;

	f->around = 1;
	if (f->npages > 0) {
		f->npages = 1;
		memset(fm_object_window(f->obj) + f->pgidx * PG, 'a', PG);
	}
	if (k > RM_LATE)
		return 0;
	atomic_store(&rm.entered[k], 1);
	if (k == RM_REFUSE || k == RM_LATE)
		ASSERT(wait_flag(&rm.release[k], 5));
	return k == RM_REFUSE ? -EACCES : 0;
}

static const struct fm_pagerops rm_ops = {.pgo_fault = rm_fault};

static void *
rm_reader(void *arg)
{
	(void)arg;
	atomic_store(&rm.res[0], tb_probe(rm.p, 0));
	atomic_store(&rm.step, 1);
	ASSERT(
	    wait_flag(&rm.release[RM_FILL], 5)); /* its mapping dropped again */
	atomic_store(&rm.res[1], tb_probe(rm.p, 0));
	return NULL;
}

TEST_TAGGED(trust_refusal_not_told_once_its_page_was_mapped, "thread")
{
	fm_test_need_uffd();
	struct fm_object *obj;
	pthread_t t;

	ASSERT_EQ(fm_object_create(&rm_ops, PG, NULL, &obj), 0);
	int fd = testdev_open("refuse-mapped", obj, RW, O_RDWR);
	char *p = fm_mmap(NULL, PG, RW, MAP_SHARED, fd, 0);

	ASSERT(p != MAP_FAILED);
	rm.p = p;
	tb_install();
	(void)*(volatile char *)p; /* resident */
	ASSERT_OK(madvise(p, PG, MADV_DONTNEED));
	atomic_store(&rm.armed, 1);
	ASSERT_EQ(pthread_create(&t, NULL, rm_reader, NULL), 0);
	ASSERT(
	    wait_flag(&rm.entered[RM_REFUSE], 5)); /* A: the reader's fault */
	ASSERT_EQ(*(volatile char *)p, 'a'); /* B maps it: the reader goes on */
	ASSERT(wait_flag(&rm.step, 5));
	ASSERT_EQ(atomic_load(&rm.res[0]), 0);
	ASSERT_OK(madvise(p, PG, MADV_DONTNEED));
	atomic_store(&rm.release[RM_FILL], 1); /* it reads again: C */
	ASSERT(wait_flag(&rm.entered[RM_LATE], 5));
	atomic_store(&rm.release[RM_REFUSE], 1); /* A refuses */
	sleep_us(200000);
	atomic_store(&rm.release[RM_LATE], 1);
	JOIN_WITHIN(t, 5, "the reader");
	ASSERT_EQ(atomic_load(&rm.res[1]), 0);
	ASSERT_EQ(atomic_load(&tb_total), 0);
	ASSERT_OK(fm_munmap(p, PG));
	ASSERT_OK(fm_close(fd));
	fm_object_rele(obj);
}

/* ------------------------------------------------------------------------
 * 9. The write hook is asked once per first write to a clean page: not
 * once per thread that raced to write it, not again for a write that a
 * signal interrupted.
 */

#define WHPAGES 8
#define MAXW 4

struct hookcount {
	atomic_int writes[WHPAGES];
	atomic_int puts;
	int hook_us;
};

static int
hc_write(struct fm_object *obj, uint64_t pg)
{
	struct hookcount *h = fm_object_private(obj);

	if (pg < WHPAGES)
		atomic_fetch_add(&h->writes[pg], 1);
	if (h->hook_us)
		sleep_us(h->hook_us);
	return 0;
}

static int
hc_put(struct fm_object *obj, uint64_t pg, unsigned n, int flags)
{
	struct hookcount *h = fm_object_private(obj);

	(void)pg;
	(void)n;
	(void)flags;
	atomic_fetch_add(&h->puts, 1);
	return 0;
}

static const struct fm_pagerops hookcount_ops = {.pgo_put = hc_put,
    .pgo_write = hc_write};

struct hwriter {
	volatile char *p;
	int id;
	pthread_barrier_t *start, *end;
	atomic_int *stop;
	int round;
};

static void *
hwriter_main(void *arg)
{
	struct hwriter *w = arg;

	for (;;) {
		pthread_barrier_wait(w->start);
		if (atomic_load(w->stop))
			break;
		for (int pg = 0; pg < WHPAGES; pg++)
			w->p[pg * PG + w->id] = (char)w->round;
		pthread_barrier_wait(w->end);
	}
	return NULL;
}

/*
 * Another thread drops the pages' mappings (MADV_DONTNEED) and reads them
 * back in, so that installs race the writes the hook lets through.
 */
struct zapper {
	volatile char *p;
	atomic_int stop;
	long n;
};

static void *
zapper_main(void *arg)
{
	struct zapper *z = arg;

	while (!atomic_load(&z->stop)) {
		ASSERT_OK(madvise((void *)z->p, WHPAGES * PG, MADV_DONTNEED));
		for (int pg = 0; pg < WHPAGES; pg++)
			(void)z->p[pg * PG + PG - 1];
		z->n++;
	}
	return NULL;
}

/*
 * Rounds of: clean every page, nw threads write every page, count; with
 * a signal storm at a writer, or a zapper.
 */
enum { H_QUIET, H_STORM, H_ZAP };

static void
hook_once(int nw, int hook_us, int how)
{
	fm_test_need_uffd();
	struct hookcount h = {.hook_us = hook_us};
	struct fm_object *obj;
	ASSERT_EQ(fm_object_create(&hookcount_ops, WHPAGES * PG, &h, &obj), 0);
	int fd = testdev_open("hook-once", obj, RW, O_RDWR);
	char *p = fm_mmap(NULL, WHPAGES * PG, RW, MAP_SHARED, fd, 0);
	pthread_barrier_t start, end;
	struct hwriter w[MAXW];
	pthread_t t[MAXW];
	atomic_int stop = 0;
	struct storm st;
	struct zapper z = {.p = p};
	pthread_t zt;
	int round = 0, before[WHPAGES], storm = how == H_STORM;

	ASSERT(p != MAP_FAILED);
	for (int pg = 0; pg < WHPAGES; pg++)
		(void)*(volatile char *)(p + pg * PG); /* resident, clean */
	pthread_barrier_init(&start, NULL, (unsigned)nw + 1);
	pthread_barrier_init(&end, NULL, (unsigned)nw + 1);
	for (int i = 0; i < nw; i++) {
		w[i] = (struct hwriter){.p = p,
		    .id = i,
		    .start = &start,
		    .end = &end,
		    .stop = &stop};
		ASSERT_EQ(pthread_create(&t[i], NULL, hwriter_main, &w[i]), 0);
	}
	if (storm)
		storm_start(&st, t[0]);
	if (how == H_ZAP)
		ASSERT_EQ(pthread_create(&zt, NULL, zapper_main, &z), 0);
	for (double stop_at = now_s() + 2.0; now_s() < stop_at; round++) {
		ASSERT_OK(fm_msync(p, WHPAGES * PG, MS_SYNC)); /* all clean */
		for (int pg = 0; pg < WHPAGES; pg++)
			before[pg] = atomic_load(&h.writes[pg]);
		for (int i = 0; i < nw; i++)
			w[i].round = round;
		pthread_barrier_wait(&start);
		pthread_barrier_wait(&end);
		for (int pg = 0; pg < WHPAGES; pg++) {
			int calls = atomic_load(&h.writes[pg]) - before[pg];

			if (calls != 1)
				fm_test_fail(__FILE__, __LINE__,
				    "round %d, page %d: the write hook was "
				    "called %d times for one clean->dirty "
				    "(%d writers%s)",
				    round, pg, calls, nw,
				    storm              ? ", signal storm"
				        : how == H_ZAP ? ", mappings dropped"
				                       : "");
		}
	}
	if (storm)
		storm_stop(&st);
	if (how == H_ZAP) {
		atomic_store(&z.stop, 1);
		JOIN_WITHIN(zt, 3, "zapper");
		ASSERT_GE(z.n, 10);
	}
	atomic_store(&stop, 1);
	pthread_barrier_wait(&start);
	for (int i = 0; i < nw; i++)
		JOIN_WITHIN(t[i], 3, "writer");
	for (int pg = 0; pg < WHPAGES; pg++)
		for (int i = 0; i < nw; i++)
			ASSERT_EQ(p[pg * PG + i], (char)(round - 1));
	ASSERT_GE(round, 5);
	ASSERT_OK(fm_munmap(p, WHPAGES * PG));
	ASSERT_OK(fm_close(fd));
	fm_object_rele(obj);
	pthread_barrier_destroy(&start);
	pthread_barrier_destroy(&end);
}

TEST_TAGGED(trust_write_hook_once_for_racing_writers, "thread")
{
	hook_once(MAXW, 300, H_QUIET);
}

TEST_TAGGED(trust_write_hook_once_while_mappings_dropped, "thread")
{
	hook_once(MAXW, 300, H_ZAP);
}

/*
 * A write message whose page is no longer mapped when the engine reads it
 * is older than what is there: the hook is not asked for it (had a write
 * gone through meanwhile, the page would be dirty, and this its second
 * call). The kernel queues such messages in a window no test can widen
 * (a thread that finds its page writable after all leaves its fault, its
 * message read later); here the page's mapping is dropped as its write
 * message is read (fm_test_trace, in the engine thread), and the hook
 * looks whether the page is mapped as it is asked.
 */
static struct {
	char *p;
	atomic_int armed, unmapped_asks, asks;
} dz;

static int
mapped_now(const void *va)
{
	uint64_t ent = 0;
	int fd = open("/proc/self/pagemap", O_RDONLY);

	ASSERT(fd >= 0);
	ASSERT_EQ(pread(fd, &ent, sizeof ent,
	              (off_t)((uintptr_t)va / (uintptr_t)getpagesize()) * 8),
	    sizeof ent);
	close(fd);
	return (ent >> 63) & 1;
}

static int
dz_write(struct fm_object *obj, uint64_t pg)
{
	(void)obj;
	atomic_fetch_add(&dz.asks, 1);
	if (!mapped_now(dz.p + pg * PG))
		atomic_fetch_add(&dz.unmapped_asks, 1);
	return 0;
}

static const struct fm_pagerops dz_ops = {.pgo_put = hc_put,
    .pgo_write = dz_write};

static void
dz_trace(const char *what, pid_t tid, uintptr_t va, unsigned long x)
{
	(void)tid;
	(void)x;
	if (strcmp(what, "engine: wp fault") == 0 && va == (uintptr_t)dz.p &&
	    atomic_exchange(&dz.armed, 0))
		ASSERT_OK(madvise(dz.p, PG, MADV_DONTNEED));
}

TEST_TAGGED(trust_write_hook_not_asked_for_a_dropped_mapping, "thread")
{
	fm_test_need_uffd();
	struct hookcount h = {0};
	struct fm_object *obj;
	ASSERT_EQ(fm_object_create(&dz_ops, PG, &h, &obj), 0);
	int fd = testdev_open("hook-dropped", obj, RW, O_RDWR);

	dz.p = fm_mmap(NULL, PG, RW, MAP_SHARED, fd, 0);
	ASSERT(dz.p != MAP_FAILED);
	atomic_store(&fm_test_trace, dz_trace);
	for (int round = 0; round < 20; round++) {
		ASSERT_OK(fm_msync(dz.p, PG, MS_SYNC)); /* clean */
		(void)*(volatile char *)dz.p; /* mapped write-protected */
		atomic_store(&dz.asks, 0);
		atomic_store(&dz.armed, 1);
		dz.p[round] = (char)round;
		ASSERT_EQ(atomic_load(&dz.armed), 0); /* it was dropped */
		ASSERT_EQ(atomic_load(&dz.asks), 1);
	}
	atomic_store(&fm_test_trace, NULL);
	ASSERT_EQ(atomic_load(&dz.unmapped_asks), 0);
	ASSERT_OK(fm_munmap(dz.p, PG));
	ASSERT_OK(fm_close(fd));
	fm_object_rele(obj);
}

/*
 * A write the hook allows reaches its page even when an fm_mprotect has
 * split the mapping at that page while the hook decided: the page is the
 * same object's page in the split-off part, and must be made writable
 * there (left DIRTY but write-protected, the next writer of another
 * thread asked the hook a second time for the page's one dirtying).
 */
static struct {
	char *p;
	_Atomic int armed;
	pthread_t t;
} hs;

static void *
sp_writer(void *arg)
{
	(void)arg;
	hs.p[2 * PG + 1] = 'b';
	return NULL;
}

static void
sp_trace(const char *what, pid_t tid, uintptr_t va, unsigned long x)
{
	(void)tid;
	(void)x;
	if (strcmp(what, "engine: write decided") != 0 ||
	    va != (uintptr_t)(hs.p + 2 * PG) || !atomic_exchange(&hs.armed, 0))
		return;
	ASSERT_OK(fm_mprotect(hs.p + 2 * PG, 2 * PG, RW));
	/* A writer of another thread waits for the page's turn meanwhile. */
	ASSERT_EQ(pthread_create(&hs.t, NULL, sp_writer, NULL), 0);
	sleep_us(50000);
}

TEST_TAGGED(trust_write_hook_once_when_its_mapping_is_split, "thread")
{
	fm_test_need_uffd();
	struct hookcount h = {0};
	struct fm_object *obj;
	ASSERT_EQ(fm_object_create(&hookcount_ops, 4 * PG, &h, &obj), 0);
	int fd = testdev_open("hook-split", obj, RW, O_RDWR);

	hs.p = fm_mmap(NULL, 4 * PG, RW, MAP_SHARED, fd, 0);
	ASSERT(hs.p != MAP_FAILED);
	for (int i = 0; i < 4; i++) /* clean, mapped write-protected */
		(void)*(volatile char *)(hs.p + i * PG);
	atomic_store(&hs.armed, 1);
	atomic_store(&fm_test_trace, sp_trace);
	hs.p[2 * PG] = 'a';
	atomic_store(&fm_test_trace, NULL);
	ASSERT_EQ(atomic_load(&hs.armed), 0); /* split while it decided */
	JOIN_WITHIN(hs.t, 3, "second writer");
	ASSERT_EQ(atomic_load(&h.writes[2]), 1);
	ASSERT_EQ(hs.p[2 * PG], 'a');
	ASSERT_EQ(hs.p[2 * PG + 1], 'b');
	ASSERT_OK(fm_munmap(hs.p, 4 * PG));
	ASSERT_OK(fm_close(fd));
	fm_object_rele(obj);
}

TEST_TAGGED(trust_write_hook_once_under_signal_storm, "thread")
{
	hook_once(1, 3000, H_STORM);
}

/*
 * A change to other pages of the object while the hook decides (here made
 * by the hook itself: a protect of page 1, a removal of page 2) is no
 * reason to ask it again about page 0: the engine counted such changes per
 * object, threw the decision away and asked a second time.
 */
static atomic_int other_calls[3];

static int
other_write(struct fm_object *obj, uint64_t pg)
{
	if (pg < 3 && atomic_fetch_add(&other_calls[pg], 1) == 0 && pg == 0) {
		ASSERT_OK(fm_object_protect(obj, PG, PG, RW));
		ASSERT_OK(fm_object_unmap(obj, 2 * PG, PG, FM_UNMAP_KEEP));
	}
	return 0;
}

static int
other_put(struct fm_object *obj, uint64_t pg, unsigned n, int flags)
{
	(void)obj;
	(void)pg;
	(void)n;
	(void)flags;
	return 0; /* written back: nowhere (a pgo_put asks for dirty tracking) */
}

static const struct fm_pagerops other_ops = {.pgo_put = other_put,
    .pgo_write = other_write};

TEST_TAGGED(trust_write_hook_once_while_other_pages_change, "thread")
{
	fm_test_need_uffd();
	struct fm_object *obj;
	ASSERT_OK(fm_object_create(&other_ops, 3 * PG, NULL, &obj));
	int fd = testdev_open("hook-other", obj, RW, O_RDWR);
	volatile char *p = fm_mmap(NULL, 3 * PG, RW, MAP_SHARED, fd, 0);

	ASSERT(p != MAP_FAILED);
	for (int pg = 0; pg < 3; pg++)
		(void)p[pg * PG]; /* resident and clean: write-protected */
	p[0] = 'w';
	ASSERT_EQ(p[0], 'w');
	int calls = atomic_load(&other_calls[0]);
	ASSERT_EQ(calls, 1); /* (before: 2) */
	ASSERT_OK(fm_munmap((void *)p, 3 * PG));
	ASSERT_OK(fm_close(fd));
	fm_object_rele(obj);
}

/* ------------------------------------------------------------------------
 * 10. A fill that fails for a fault its thread has abandoned (the thread
 * was interrupted and left, or has exited) does not poison the page: the
 * next access asks the pager again.
 */

#define FPG 2 /* the page whose first fill fails */

struct failonce {
	atomic_int calls, entered, release;
};

static int
failonce_fault(struct fm_fault *f)
{
	struct failonce *s = fm_object_private(f->obj);

	if (f->pgidx == FPG &&
	    atomic_fetch_add(&s->calls, 1) == 0) { /* the first fill */
		atomic_store(&s->entered, 1);
		(void)wait_flag(&s->release, 5);
		return -EIO;
	}
	if (f->npages == 0)
		return 0;
	f->npages = 1;
	return fm_object_write(f->obj, (off_t)(f->pgidx * PG), "R", 2);
}

static const struct fm_pagerops failonce_ops = {.pgo_fault = failonce_fault};

static __thread sigjmp_buf ab_jb;
static __thread volatile sig_atomic_t ab_armed;

static void
abandon_handler(int sig)
{
	(void)sig;
	if (ab_armed) {
		ab_armed = 0;
		siglongjmp(ab_jb, 1);
	}
}

struct abandoner {
	volatile char *p;
	int stay; /* after leaving the fault: block SIGBUS and wait */
	atomic_int left, finish;
	int abandoned;
};

static void *
abandon_main(void *arg)
{
	struct abandoner *a = arg;
	sigset_t bus;

	if (sigsetjmp(ab_jb, 1) == 0) {
		ab_armed = 1;
		(void)*a->p;
		ab_armed = 0;
		return NULL;
	}
	a->abandoned = 1;
	if (a->stay) {
		sigemptyset(&bus);
		sigaddset(&bus, SIGBUS);
		pthread_sigmask(SIG_BLOCK, &bus, NULL);
		atomic_store(&a->left, 1);
		(void)wait_flag(&a->finish, 10);
	}
	return NULL;
}

static void
abandoned_fill(int stay)
{
#if defined(__SANITIZE_THREAD__)
	/* TSan runs the handler at the thread's next call: never, in a fault. */
	fm_test_skip("TSan defers signal handlers: no thread can leave a "
	             "fault");
#endif
	fm_test_need_uffd();
	struct failonce s = {0};
	struct fm_object *obj;
	ASSERT_EQ(fm_object_create(&failonce_ops, 4 * PG, &s, &obj), 0);
	int fd = testdev_open("fail-once", obj, RW, O_RDWR);
	char *p = fm_mmap(NULL, 4 * PG, RW, MAP_SHARED, fd, 0);
	struct sigaction sa = {.sa_handler = abandon_handler};
	struct abandoner a = {.stay = stay};
	struct fm_stats s0, s1;
	pthread_t t;

	ASSERT(p != MAP_FAILED);
	ASSERT_OK(fm_madvise(p, 4 * PG, MADV_RANDOM));
	tb_install();
	sigemptyset(&sa.sa_mask);
	ASSERT_OK(sigaction(SIGUSR2, &sa, NULL));
	a.p = p + FPG * PG;
	ASSERT_EQ(pthread_create(&t, NULL, abandon_main, &a), 0);
	ASSERT(wait_flag(&s.entered, 3));
	sleep_us(20000); /* the thread waits in its fault */
	ASSERT_EQ(pthread_kill(t, SIGUSR2), 0);
	if (stay)
		ASSERT(wait_flag(&a.left, 3));
	else
		JOIN_WITHIN(t, 3, "the thread that left its fault");
	ASSERT(stay || a.abandoned);
	fm_engine_stats(&s0);
	atomic_store(&s.release, 1); /* now the fill fails */
	for (double end = now_s() + 1; now_s() < end;) {
		fm_engine_stats(&s1);
		if (s1.sigbus > s0.sigbus)
			break;
		sleep_us(1000);
	}
	sleep_us(50000);
	int sig = tb_probe(p + FPG * PG, 0);
	if (sig != 0)
		fm_test_fail(__FILE__, __LINE__,
		    "the page gives SIGBUS after a fill failed for a thread "
		    "that %s (pager asked %d times)",
		    stay ? "left the fault" : "exited", atomic_load(&s.calls));
	ASSERT_EQ(p[FPG * PG], 'R');
	ASSERT_EQ(atomic_load(&s.calls), 2);
	if (stay) {
		atomic_store(&a.finish, 1);
		JOIN_WITHIN(t, 3, "the thread that left its fault");
		ASSERT(a.abandoned);
	}
	ASSERT_OK(fm_munmap(p, 4 * PG));
	ASSERT_OK(fm_close(fd));
	fm_object_rele(obj);
}

TEST_TAGGED(trust_failed_fill_for_exited_thread_no_poison, "thread")
{
	abandoned_fill(0);
}

TEST_TAGGED(trust_failed_fill_for_abandoned_fault_no_poison, "thread")
{
	abandoned_fill(1);
}

/* ------------------------------------------------------------------------
 * 13. A SIGBUS says the exact address of the access, and an si_code of
 * SI_QUEUE or a BUS_* code, for every kind of refusal.
 */

static void
exact_sigbus(volatile char *x, int wr, const char *what)
{
	int sig = tb_probe(x, wr);

	if (sig != SIGBUS)
		fm_test_fail(__FILE__, __LINE__, "%s at %p: no SIGBUS", what,
		    (void *)x);
	if (tb_addr != (void *)x)
		fm_test_fail(__FILE__, __LINE__, "%s at %p: si_addr %p", what,
		    (void *)x, tb_addr);
	if (tb_code != SI_QUEUE && tb_code != BUS_ADRALN &&
	    tb_code != BUS_ADRERR && tb_code != BUS_OBJERR &&
	    tb_code != BUS_MCEERR_AR && tb_code != BUS_MCEERR_AO)
		fm_test_fail(__FILE__, __LINE__, "%s at %p: si_code %d", what,
		    (void *)x, tb_code);
}

TEST(trust_sigbus_si_addr_is_exact)
{
	fm_test_need_uffd();
	volatile char *p;
	int gfd = guard_region(4, &p);
	struct fm_object *obj;
	int fd;
	volatile char *q = failing_mapping("exact-fail", 4, &fd, &obj);

	tb_install();
	p[0] = 'g';
	guard_protect_ro(gfd, 0, 1);
	guard_revoke(gfd, 1, 1);
	exact_sigbus(p + 123, 1, "refused write");
	exact_sigbus(p + PG + 77, 0, "read of a revoked page");
	exact_sigbus(p + PG + 78, 1, "write to a revoked page");
	exact_sigbus(q + 2 * PG + 4095, 0, "read, the fill fails");
	exact_sigbus(q + 3 * PG + 1, 1, "write, the fill fails");
	ASSERT_EQ(p[0], 'g');
	ASSERT_OK(fm_munmap((void *)p, 4 * PG));
	ASSERT_OK(fm_munmap((void *)q, 4 * PG));
	ASSERT_OK(fm_close(gfd));
	ASSERT_OK(fm_close(fd));
	fm_object_rele(obj);
}

/*
 * A refused write from user mode whose thread waits for a CPU, a storm
 * signal pending, is not a system call retrying its fault: the page is
 * not taken away for it (which fails other threads' system calls on it
 * with EFAULT, here a write(2) from the page, which only reads it). A
 * real-time thread on the writer's CPU keeps it waiting for milliseconds
 * at a time.
 */
struct hog {
	atomic_int stop;
	int rt;
};

static void *
hog_main(void *arg)
{
	struct hog *h = arg;
	struct sched_param sp = {.sched_priority = 1};

	h->rt = pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp) == 0;
	while (!atomic_load(&h->stop)) {
		for (double end = now_s() + 0.003; now_s() < end;)
			;
		sleep_us(1000);
	}
	return NULL;
}

struct piper {
	volatile char *p;
	atomic_int stop;
	long n, efault;
};

static void *
piper_main(void *arg)
{
	struct piper *w = arg;
	int pfd[2];
	char buf[8];

	if (pipe(pfd) < 0)
		return NULL;
	while (!atomic_load(&w->stop)) {
		if (write(pfd[1], (const void *)w->p, 8) != 8) {
			w->efault += errno == EFAULT;
			continue;
		}
		(void)!read(pfd[0], buf, sizeof buf);
		w->n++;
	}
	close(pfd[0]);
	close(pfd[1]);
	return NULL;
}

TEST_TAGGED(trust_refused_write_of_a_thread_waiting_for_a_cpu, "thread")
{
	fm_test_need_uffd();
	volatile char *p;
	int fd = guard_region(RPAGES, &p);
	struct refuser r = {.p = p, .wr = 1, .npages = 1}; /* one page */
	struct piper w = {.p = p + 64};
	struct hog h = {0};
	struct storm st;
	pthread_t t, tw, th;

	cpu_set_t ours;

	ASSERT_OK(sched_getaffinity(0, sizeof ours, &ours));
	if (!CPU_ISSET(0, &ours) || !CPU_ISSET(1, &ours))
		fm_test_skip("CPUs 0 and 1 are not both ours: no contention");
	for (int i = 0; i < RPAGES; i++)
		p[i * PG + 5] = 'r';
	guard_protect_ro(fd, 0, RPAGES);
	tb_install();
	ASSERT_EQ(pthread_create(&t, NULL, refuser_main, &r), 0);
	ASSERT_EQ(pthread_create(&th, NULL, hog_main, &h), 0);
	ASSERT_EQ(pthread_create(&tw, NULL, piper_main, &w), 0);
	pin_to(t, 0);
	pin_to(th, 0);
	pin_to(tw, 1);
	storm_start(&st, t);
	sleep_us(3000000);
	storm_stop(&st);
	atomic_store(&h.stop, 1);
	atomic_store(&w.stop, 1);
	JOIN_WITHIN(th, 4, "the hog");
	JOIN_WITHIN(tw, 4, "the write(2)s");
	atomic_store(&r.stop, 1);
	JOIN_WITHIN(t, 4, "the refused writes");
	long total = atomic_load(&tb_total), stray = atomic_load(&tb_stray);
	if (w.efault || r.went || r.elsewhere || stray || total != r.attempts)
		fm_test_fail(__FILE__, __LINE__,
		    "%ld of %ld write(2)s from the page failed with EFAULT; "
		    "%ld refused writes, %ld SIGBUS (%ld while none was "
		    "awaited), %ld went through; %ld SIGUSR1 sent (hog %s)",
		    w.efault, w.n + w.efault, r.attempts, total, stray, r.went,
		    st.sent, h.rt ? "real-time" : "not real-time");
	ASSERT_GE(r.attempts, 10);
	ASSERT_GE(w.n, 10);
	ASSERT_OK(fm_munmap((void *)p, RPAGES * PG));
	ASSERT_OK(fm_close(fd));
}

/*
 * A refused write whose access ended while it was decided (a signal took
 * the thread out of the fault, an fm_mprotect made its retry a SIGSEGV)
 * is not told, even once the protection is back: the thread is elsewhere
 * by then, here in a fault of another userfaultfd (as it may be in a fault
 * whose message is not read yet), and the SIGBUS would end that access.
 * The trace hook, in the engine thread that decided, makes it so.
 */
static struct {
	volatile char *a;
	pthread_t t;
	atomic_int armed, step;
	int sig1, sig2;
	void *addr2;
	char *other;
} mt;

static void
mt_nothing(int sig)
{
	(void)sig;
}

static void
mt_trace(const char *what, pid_t tid, uintptr_t va, unsigned long x)
{
	(void)tid;
	(void)x;
	if (strcmp(what, "engine: write decided") != 0 ||
	    va != ((uintptr_t)mt.a & ~(uintptr_t)(PG - 1)) ||
	    !atomic_exchange(&mt.armed, 0))
		return;
	ASSERT_OK(fm_mprotect((void *)mt.a, PG, PROT_READ));
	pthread_kill(mt.t, SIGUSR1); /* out of the fault: a SIGSEGV */
	while (atomic_load(&mt.step) < 1)
		usleep(1000);
	usleep(50000); /* it waits in the other fault now */
	ASSERT_OK(fm_mprotect((void *)mt.a, PG, RW)); /* back */
}

static void *
mt_main(void *arg)
{
	(void)arg;
	mt.sig1 = tb_probe(mt.a, 1);
	atomic_store(&mt.step, 1);
	mt.sig2 = tb_probe(mt.other, 0); /* waits: the other uffd's */
	mt.addr2 = tb_addr;
	return NULL;
}

TEST_TAGGED(trust_refusal_of_an_access_ended_meanwhile_not_told, "thread")
{
	fm_test_need_uffd();
	struct uffdio_api api = {.api = UFFD_API};
	struct sigaction sa = {.sa_handler = mt_nothing};
	volatile char *p;
	int fd = guard_region(1, &p);
	int uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC);

	ASSERT(uffd >= 0);
	ASSERT_OK(ioctl(uffd, UFFDIO_API, &api));
	mt.other = mmap(NULL, PG, RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT(mt.other != MAP_FAILED);
	struct uffdio_register reg = {.range = {(uintptr_t)mt.other, PG},
	    .mode = UFFDIO_REGISTER_MODE_MISSING};
	ASSERT_OK(ioctl(uffd, UFFDIO_REGISTER, &reg));
	sigaction(SIGUSR1, &sa, NULL); /* (no SA_RESTART: none needed) */
	tb_install();
	tb_catch(SIGSEGV);
	guard_protect_ro(fd, 0, 1); /* writes refused */
	mt.a = p;
	atomic_store(&mt.armed, 1);
	atomic_store(&fm_test_trace, mt_trace);
	ASSERT_EQ(pthread_create(&mt.t, NULL, mt_main, NULL), 0);
	while (atomic_load(&mt.step) < 1)
		usleep(1000);
	usleep(300000); /* the engine decides, and tells or not */
	struct uffdio_zeropage z = {.range = {(uintptr_t)mt.other, PG}};
	ASSERT_OK(ioctl(uffd, UFFDIO_ZEROPAGE, &z));
	ASSERT_EQ(pthread_join(mt.t, NULL), 0);
	atomic_store(&fm_test_trace, NULL);
	signal(SIGSEGV, SIG_DFL);
	ASSERT_EQ(atomic_load(&mt.armed), 0); /* the scenario ran */
	ASSERT_EQ(mt.sig1, SIGSEGV);
	if (mt.sig2 != 0)
		fm_test_fail(__FILE__, __LINE__,
		    "the other page's access got signal %d (si_addr %p; the "
		    "refused page %p)",
		    mt.sig2, mt.addr2, (void *)mt.a);
	ASSERT_EQ(atomic_load(&tb_stray), 0);
	munmap(mt.other, PG);
	close(uffd);
	ASSERT_OK(fm_munmap((void *)p, PG));
	ASSERT_OK(fm_close(fd));
}
