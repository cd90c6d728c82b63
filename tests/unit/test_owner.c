/*
 * test_owner.c: fomap lives inside other people's programs. The program
 * goes on using the plain system calls (munmap, mremap, mmap(MAP_FIXED),
 * mlockall, fork, exit, setrlimit) on its own memory and on fomap's, and
 * none of it may make fomap touch memory that is not its own, lose data,
 * leak, hang, or fail for good.
 *
 * Map of the file, by the defect each group catches:
 *   1. a raw munmap leaves a stale entry: eviction zeroes the program's
 *      new memory there; zaps, protects and descriptors trip over it
 *   2. a raw mremap: the data and its dirt must follow the mapping
 *   3. fomap's own memory (engine stacks, object windows) in a range the
 *      program freed and maps again with MAP_FIXED
 *   4. fork: a child must not harm the parent, and its own use of fomap
 *      works or fails with an errno, never hangs, never reads wrong data
 *   5. exit() writes back dirty pages of a store object, without msync
 *   6. mlockall(MCL_CURRENT | MCL_FUTURE)
 *   7. descriptors: many mappings under a low RLIMIT_NOFILE; a transient
 *      EMFILE at the engine's start is not a failure for good
 *
 * Several tests need a process in which fomap has never run: the runner's
 * child for the test, or a child forked from it before any fomap call.
 * Those never call fm_test_need_uffd() before the fork (it sets fomap up):
 * need_uffd_fresh() asks in a throw-away child instead.
 */
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <fomap/driver.h>
#include <fomap/fomap.h>
#include <fomap/gem.h>
#include <fomap/guard.h>

#include "../test.h"
#include "testdev.h"

#define RW (PROT_READ | PROT_WRITE)
#define MIB ((size_t)1 << 20)
#define CHILD_SECS 20 /* how long a forked child may take */

/* ------------------------------------------------------------------------
 * Helpers.
 */

static int
gem_dev(int flags)
{
	int fd = fm_open(FM_GEM_DEV, flags);

	ASSERT_GE(fd, 0);
	return fd;
}

static uint32_t
gem_create(int fd, uint64_t size)
{
	struct fm_gem_create c = {.size = size};

	ASSERT_OK(fm_ioctl(fd, FM_GEM_CREATE, &c));
	return c.handle;
}

static uint64_t
gem_offset(int fd, uint32_t h)
{
	struct fm_gem_mmap_offset o = {.handle = h};

	ASSERT_OK(fm_ioctl(fd, FM_GEM_MMAP_OFFSET, &o));
	return o.offset;
}

static char *
gem_map(int fd, uint32_t h, size_t len, int prot)
{
	char *p =
	    fm_mmap(NULL, len, prot, MAP_SHARED, fd, (off_t)gem_offset(fd, h));

	ASSERT(p != MAP_FAILED);
	return p;
}

static void
gem_close(int fd, uint32_t h)
{
	struct fm_gem_close c = {.handle = h};

	ASSERT_OK(fm_ioctl(fd, FM_GEM_CLOSE, &c));
}

/* => 0, or -1 with errno (the caller decides what is acceptable) */
static int
gem_evict(int fd, uint32_t h)
{
	struct fm_gem_evict e = {.handle = h};

	return fm_ioctl(fd, FM_GEM_EVICT, &e);
}

static char
pat(unsigned seed, size_t off)
{
	return (char)(seed + off / 64 * 13 + 1);
}

static void
fill(volatile char *p, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i += 64)
		p[i] = pat(seed, i);
}

/*
 * The first byte of [p, p+len) that is not pat(seed), probed (a signal
 * counts as a mismatch). => -1 when all match
 */
static ssize_t
mismatch(volatile char *p, size_t len, unsigned seed, int *sig)
{
	*sig = 0;
	for (size_t i = 0; i < len; i += 64) {
		if (i % PG == 0 && (*sig = fm_test_probe(p + i, 0)) != 0)
			return (ssize_t)i;
		if (p[i] != pat(seed, i))
			return (ssize_t)i;
	}
	return -1;
}

#define CHECK_PAT(p, len, seed)                                            \
	do {                                                               \
		int sig_;                                                  \
		ssize_t at_ = mismatch((p), (len), (seed), &sig_);         \
		if (at_ >= 0)                                              \
			fm_test_fail(__FILE__, __LINE__,                   \
			    "%s: byte %zd is %d, want %d%s", #p, at_,      \
			    sig_ ? 0 : (p)[at_], pat((seed), (size_t)at_), \
			    sig_ == SIGBUS ? " (SIGBUS)"                   \
			        : sig_     ? " (SIGSEGV)"                  \
			                   : "");                              \
	} while (0)

/* Every byte of [p, p+len) is c. => the first that is not, or -1 */
static ssize_t
not_all(const volatile char *p, size_t len, char c)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] != c)
			return (ssize_t)i;
	return -1;
}

static int
count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	ASSERT(d != NULL);
	while (readdir(d) != NULL)
		n++;
	closedir(d);
	return n;
}

/* Memory the program maps itself, where it wants it. */
static char *
own_map(void *at, size_t len)
{
	char *p = mmap(at, len, RW,
	    MAP_PRIVATE | MAP_ANONYMOUS | (at ? MAP_FIXED_NOREPLACE : 0), -1,
	    0);

	/*
	 * Never over what took the freed range meanwhile (a sanitizer's
	 * runtime maps its own memory where the kernel chooses): MAP_FIXED
	 * would clobber it.
	 */
	if (p == MAP_FAILED && errno == EEXIST)
		fm_test_skip("the freed range was taken by other memory (a "
		             "sanitizer's runtime) before the test mapped it");
	ASSERT(p != MAP_FAILED);
	if (at != NULL)
		ASSERT_PTR_EQ(p, at);
	return p;
}

/*
 * Wait for child pid at most secs seconds; kill it after that.
 * => its wait status, or -1 when it hung (and was killed)
 */
static int
wait_child(pid_t pid, int secs)
{
	struct timespec t0, now;
	int status;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		pid_t r = waitpid(pid, &status, WNOHANG);

		if (r == pid)
			return status;
		ASSERT(r == 0 || errno == EINTR);
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec - t0.tv_sec >= secs) {
			kill(pid, SIGKILL);
			(void)waitpid(pid, &status, 0);
			return -1;
		}
		usleep(10000);
	}
}

/* A child must have exited with status 0 within CHILD_SECS. */
#define ASSERT_CHILD_OK(pid, what)                                       \
	do {                                                             \
		int st_ = wait_child((pid), CHILD_SECS);                 \
		if (st_ == -1)                                           \
			fm_test_fail(__FILE__, __LINE__,                 \
			    "%s: hung (killed after %d s)", (what),      \
			    CHILD_SECS);                                 \
		if (WIFSIGNALED(st_))                                    \
			fm_test_fail(__FILE__, __LINE__,                 \
			    "%s: killed by signal %d (%s)", (what),      \
			    WTERMSIG(st_), strsignal(WTERMSIG(st_)));    \
		if (WEXITSTATUS(st_) == 77)                              \
			fm_test_skip("userfaultfd unavailable (a child " \
			             "said so)");                        \
		if (WEXITSTATUS(st_) != 0)                               \
			fm_test_fail(__FILE__, __LINE__,                 \
			    "%s: exit status %d (its output is above)",  \
			    (what), WEXITSTATUS(st_));                   \
	} while (0)

/*
 * fm_test_need_uffd() without setting fomap up in this process: ask in a
 * child, so that this one stays fresh.
 */
static void
need_uffd_fresh(void)
{
	pid_t pid = fork();

	ASSERT_GE(pid, 0);
	if (pid == 0) {
		fm_test_need_uffd();
		_exit(0);
	}
	ASSERT_CHILD_OK(pid, "the userfaultfd probe");
}

/* A hang in a test that cannot hand its work to a child: fail, loudly. */
static void
on_alarm(int sig)
{
	static const char msg[] = "hang: the alarm went off\n";

	(void)sig;
	(void)!write(STDERR_FILENO, msg, sizeof msg - 1);
	_exit(1);
}

static void
fail_after(unsigned secs)
{
	signal(SIGALRM, on_alarm);
	alarm(secs);
}

/* ------------------------------------------------------------------------
 * 1. A raw munmap of a fomap mapping.
 */

/*
 * The program unmaps a gem mapping itself and maps its own memory there:
 * an eviction of the buffer must not reach that memory (the stale entry's
 * zap did: MADV_DONTNEED zeroed it), and the buffer keeps its data.
 */
TEST(owner_raw_munmap_evict_spares_new_memory)
{
	fm_test_need_uffd();
	int fd = gem_dev(O_RDWR);
	size_t len = 16 * PG;
	uint32_t h = gem_create(fd, len);
	char *p = gem_map(fd, h, len, RW);
	ssize_t at;

	fill(p, len, 1);
	ASSERT_OK(munmap(p, len));
	own_map(p, len);
	memset(p, 'M', len);
	ASSERT_OK(gem_evict(fd, h));
	if ((at = not_all(p, len, 'M')) >= 0)
		fm_test_fail(__FILE__, __LINE__,
		    "the eviction changed the program's memory: byte %zd is "
		    "%d, not 'M'",
		    at, p[at]);
	ASSERT_OK(gem_evict(fd, h)); /* and again, with nothing resident */
	ASSERT_EQ(not_all(p, len, 'M'), -1);

	/* The buffer kept what was written through the old mapping. */
	char *q = gem_map(fd, h, len, RW);
	CHECK_PAT(q, len, 1);
	ASSERT_EQ(not_all(p, len, 'M'), -1);
	ASSERT_OK(fm_munmap(q, len));
	ASSERT_OK(munmap(p, len));
	ASSERT_OK(fm_close(fd));
}

/*
 * The same for part of a mapping: the program unmaps the middle pages of
 * a gem mapping and maps its own memory there.
 */
TEST(owner_raw_munmap_part_evict_spares_new_memory)
{
	fm_test_need_uffd();
	int fd = gem_dev(O_RDWR);
	size_t len = 16 * PG;
	uint32_t h = gem_create(fd, len);
	char *p = gem_map(fd, h, len, RW), *mid = p + 4 * PG;
	ssize_t at;

	fill(p, len, 17);
	ASSERT_OK(munmap(mid, 8 * PG));
	own_map(mid, 8 * PG);
	memset(mid, 'M', 8 * PG);
	ASSERT_OK(gem_evict(fd, h));
	if ((at = not_all(mid, 8 * PG, 'M')) >= 0)
		fm_test_fail(__FILE__, __LINE__,
		    "the eviction changed the program's memory: byte %zd is "
		    "%d, not 'M'",
		    at, mid[at]);
	CHECK_PAT(p, 4 * PG, 17); /* the parts still mapped refault */
	CHECK_PAT(p + 12 * PG, 4 * PG, 17 + 12 * PG / 64 * 13);
	ASSERT_OK(gem_evict(fd, h));
	ASSERT_EQ(not_all(mid, 8 * PG, 'M'), -1);
	ASSERT_OK(fm_munmap(p, len)); /* the program's memory goes too */
	ASSERT_OK(fm_close(fd));
}

/*
 * Calls that reach every mapping of an object must not fail on one that
 * the program has unmapped itself: eviction (gem) and removal (guard) of
 * a range that is now a hole gave ENOMEM.
 */
TEST(owner_raw_munmap_evict_and_remove_succeed)
{
	fm_test_need_uffd();
	int fd = gem_dev(O_RDWR), g = fm_open(FM_GUARD_DEV, O_RDWR);
	size_t len = 8 * PG;
	uint32_t h = gem_create(fd, len);
	char *p = gem_map(fd, h, len, RW), *keep = gem_map(fd, h, len, RW);

	ASSERT_GE(g, 0);
	fill(p, len, 2);
	ASSERT_OK(munmap(p, len)); /* a hole: nobody maps there now */
	if (gem_evict(fd, h) < 0)
		fm_test_fail(__FILE__, __LINE__,
		    "FM_GEM_EVICT after a raw munmap: %s", strerror(errno));
	CHECK_PAT(keep, len, 2); /* the other mapping refaults the data */

	struct fm_guard_setup s = {.size = 16 * PG};
	ASSERT_OK(fm_ioctl(g, FM_GUARD_SETUP, &s));
	char *r = fm_mmap(NULL, 16 * PG, RW, MAP_SHARED, g, 0);
	ASSERT(r != MAP_FAILED);
	ASSERT_OK(fm_madvise(r, 16 * PG, MADV_RANDOM)); /* a page a fault */
	memset(r, 'g', 16 * PG);
	ASSERT_OK(munmap(r + 4 * PG, 4 * PG)); /* part of it */
	struct fm_guard_remove rm = {.off = 0,
	    .len = 16 * PG,
	    .policy = FM_GUARD_REFILL};
	if (fm_ioctl(g, FM_GUARD_REMOVE, &rm) < 0)
		fm_test_fail(__FILE__, __LINE__,
		    "FM_GUARD_REMOVE after a raw munmap: %s", strerror(errno));
	/* Removed now from what is still mapped: the next access faults. */
	struct fm_guard_stats s0, s1;
	ASSERT_OK(fm_ioctl(g, FM_GUARD_STATS, &s0));
	ASSERT_EQ(r[0], 'g'); /* refilled: the data stayed */
	ASSERT_EQ(r[12 * PG], 'g');
	ASSERT_OK(fm_ioctl(g, FM_GUARD_STATS, &s1));
	ASSERT_EQ(s1.read_minor - s0.read_minor, 2);
	ASSERT_OK(munmap(r, 16 * PG)); /* the rest, raw too */
	if (fm_ioctl(g, FM_GUARD_REMOVE, &rm) < 0)
		fm_test_fail(__FILE__, __LINE__,
		    "FM_GUARD_REMOVE after a raw munmap of all: %s",
		    strerror(errno));
	ASSERT_OK(fm_munmap(keep, len));
	ASSERT_OK(fm_close(g));
	ASSERT_OK(fm_close(fd));
}

/*
 * The program's own memory where a fomap mapping was: its protection is
 * the program's business, whatever the old mapping's maximum protection
 * (gem's lacks PROT_EXEC; a read-only open's lacks PROT_WRITE): the stale
 * entry's gave EACCES.
 */
static void
mprotect_own(char *p, size_t len, int prot)
{
	if (fm_mprotect(p, len, prot) < 0)
		fm_test_fail(__FILE__, __LINE__,
		    "fm_mprotect(%#x) of the program's own memory: %s", prot,
		    strerror(errno));
}

TEST(owner_raw_munmap_mprotect_new_memory)
{
	fm_test_need_uffd();
	int fd = gem_dev(O_RDWR), ro = gem_dev(O_RDONLY);
	size_t len = 4 * PG;
	uint32_t h = gem_create(fd, len);
	struct fm_gem_flink fl = {.handle = h};

	ASSERT_OK(fm_ioctl(fd, FM_GEM_FLINK, &fl));
	struct fm_gem_open o = {.name = fl.name};
	ASSERT_OK(fm_ioctl(ro, FM_GEM_OPEN, &o));
	char *p = gem_map(fd, h, len, RW); /* never executable */
	char *r = gem_map(ro, o.handle, len, PROT_READ); /* at most read */
	ASSERT_EQ(r[0], 0);
	p[0] = 1;

	ASSERT_OK(munmap(p, len));
	own_map(p, len);
	mprotect_own(p, len, PROT_READ | PROT_EXEC);
	mprotect_own(p, len, RW);
	p[1] = 'w';
	ASSERT_EQ(p[1], 'w');

	ASSERT_OK(munmap(r, len));
	own_map(r, len);
	mprotect_own(r, len, PROT_READ);
	mprotect_own(r, len, RW);
	r[1] = 'w';
	ASSERT_EQ(r[1], 'w');
	ASSERT_OK(munmap(p, len));
	ASSERT_OK(munmap(r, len));
	ASSERT_OK(fm_close(ro));
	ASSERT_OK(fm_close(fd));
}

/*
 * The stale entry held its object, and so the object's descriptor. The
 * program keeps its own memory where the mapping was, so that fomap's
 * next mapping cannot land there and push the stale entry out.
 */
static char *
map_and_drop(int fd)
{
	uint32_t h = gem_create(fd, 2 * PG);
	char *p = gem_map(fd, h, 2 * PG, RW);

	p[0] = 1;
	ASSERT_OK(munmap(p, 2 * PG));
	own_map(p, 2 * PG);
	gem_close(fd, h);
	return p;
}

/* Until the count falls to want (the engine may follow munmap later). */
static int
fds_settle(int want)
{
	int n = count_fds();

	for (int i = 0; i < 300 && n > want; i++) {
		usleep(10000);
		n = count_fds();
	}
	return n;
}

TEST(owner_raw_munmap_does_not_leak_descriptors)
{
	fm_test_need_uffd();
	int fd = gem_dev(O_RDWR), before, after;
	char *own[301];

	own[300] = map_and_drop(fd); /* what fomap opens once, it opens now */
	usleep(100000); /* the engine may follow a munmap a little later */
	before = count_fds();
	for (int i = 0; i < 300; i++)
		own[i] = map_and_drop(fd);
	after = fds_settle(before);
	if (after > before)
		fm_test_fail(__FILE__, __LINE__,
		    "300 buffers mapped and unmapped with munmap: %d "
		    "descriptors before, %d after",
		    before, after);
	struct fm_gem_stats st;
	ASSERT_OK(fm_ioctl(fd, FM_GEM_STATS, &st));
	ASSERT_EQ(st.buffers, 0); /* every buffer freed */
	for (int i = 0; i <= 300; i++)
		ASSERT_OK(munmap(own[i], 2 * PG));
	ASSERT_OK(fm_close(fd));
}

/* ------------------------------------------------------------------------
 * 2. A raw mremap of a fomap mapping.
 */

/*
 * Before the move: the buffer (len bytes, h of fd) holds pattern seed,
 * its pages resident and clean, mapped write-protected at p.
 */
static void
before_move(int fd, uint32_t h, char *p, size_t len, unsigned seed)
{
	fill(p, len, seed);
	ASSERT_OK(gem_evict(fd, h));
	CHECK_PAT(p, len, seed);
}

/*
 * The mapping has just moved from p to q. Its first access comes at once:
 * a read (how 0), an eviction (1) or a write (2). After an eviction q
 * reads the data back from the pager (not zeros); a write through q is
 * seen (dirty) and saved by the next eviction.
 */
static void
after_move(int fd, uint32_t h, char *p, char *q, size_t len, unsigned seed,
    int how)
{
	struct fm_gem_info info = {.handle = h};

	ASSERT(q != MAP_FAILED);
	ASSERT(q != p);
	if (how == 0)
		CHECK_PAT(q, len, seed); /* moved with its pages */
	for (size_t i = 0; how == 2 && i < len; i += PG) {
		int sig = fm_test_probe(q + i, 1); /* a write, faulting */
		if (sig != 0)
			fm_test_fail(__FILE__, __LINE__,
			    "a write at %p (page %zu) just moved: %s",
			    (void *)(q + i), i / PG, strsignal(sig));
	}
	if (how == 2)
		fill(q, len, ++seed); /* write-protected: must be seen */
	if (gem_evict(fd, h) < 0)
		fm_test_fail(__FILE__, __LINE__,
		    "FM_GEM_EVICT after mremap: %s", strerror(errno));
	CHECK_PAT(q, len, seed); /* refilled, not zeros */
	ASSERT_OK(fm_ioctl(fd, FM_GEM_INFO, &info));
	ASSERT_GE(info.refill, len / PG); /* by the pager */

	fill(q, len, seed + 1);
	ASSERT_OK(fm_ioctl(fd, FM_GEM_INFO, &info));
	ASSERT_EQ(info.dirty, len / PG);
	ASSERT_OK(gem_evict(fd, h));
	CHECK_PAT(q, len, seed + 1);

	/* Another mapping of the buffer sees the same. */
	char *r = gem_map(fd, h, len, RW);
	CHECK_PAT(r, len, seed + 1);
	ASSERT_OK(fm_munmap(r, len));
}

/* Rounds: what follows a move races the program; fewer when sanitized. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define MOVES 256
#else
#define MOVES 1024
#endif

/*
 * Burn a CPU while the moves go on: an engine thread preempted between
 * reading a move and following it widens the window in which the program
 * uses its memory at the new address.
 */
static void *
spin_main(void *arg)
{
	while (!atomic_load((atomic_int *)arg))
		;
	return NULL;
}

static pthread_t
spin_start(atomic_int *stop)
{
	pthread_t t;

	ASSERT_EQ(pthread_create(&t, NULL, spin_main, stop), 0);
	return t;
}

static void
spin_stop(pthread_t t, atomic_int *stop)
{
	atomic_store(stop, 1);
	ASSERT_EQ(pthread_join(t, NULL), 0);
}

TEST_TAGGED(owner_raw_mremap_fixed_follows, "thread")
{
	fm_test_need_uffd();
	int fd = gem_dev(O_RDWR);
	size_t len = 16 * PG;
	atomic_int stop = 0;
	pthread_t spinner = spin_start(&stop);

	for (unsigned k = 0; k < MOVES; k++) {
		uint32_t h = gem_create(fd, len);
		char *p = gem_map(fd, h, len, RW);
		char *to = mmap(NULL, len, PROT_NONE,
		    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

		ASSERT(to != MAP_FAILED);
		before_move(fd, h, p, len, 3 * k);
		char *q =
		    mremap(p, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, to);
		ASSERT_PTR_EQ(q, to);
		after_move(fd, h, p, q, len, 3 * k, (int)(k % 3));
		ASSERT_OK(fm_munmap(q, len));
		gem_close(fd, h);
	}
	spin_stop(spinner, &stop);
	ASSERT_OK(fm_close(fd));
}

TEST_TAGGED(owner_raw_mremap_maymove_follows, "thread")
{
	fm_test_need_uffd();
	int fd = gem_dev(O_RDWR);
	size_t len = 16 * PG;
	atomic_int stop = 0;
	pthread_t spinner = spin_start(&stop);

	for (unsigned k = 0; k < MOVES; k++) {
		uint32_t h = gem_create(fd, len + PG);
		char *p = gem_map(fd, h, len, RW);
		/* The page after it taken, so that growing must move it. */
		char *after = mmap(p + len, PG, PROT_NONE,
		    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);

		ASSERT(after == p + len ||
		    (after == MAP_FAILED && errno == EEXIST));
		before_move(fd, h, p, len, 5 * k);
		char *q = mremap(p, len, len + PG, MREMAP_MAYMOVE);
		after_move(fd, h, p, q, len, 5 * k, (int)(k % 3));
		ASSERT_OK(fm_munmap(q, len + PG));
		if (after != MAP_FAILED)
			ASSERT_OK(munmap(after, PG));
		gem_close(fd, h);
	}
	spin_stop(spinner, &stop);
	ASSERT_OK(fm_close(fd));
}

/*
 * A raw mremap of dirty pages while another thread evicts the buffer
 * again and again. The kernel moves the writable page-table entries
 * before fomap reads the move: an eviction that write-protected and
 * cleaned the pages then (the old range skipped as gone) left them
 * writable and clean at the new address (invariant 4, FOMAP_CHECK), and
 * a write there unseen by the next write-back. Every pattern written is
 * read back after the last eviction.
 */
struct evictor {
	int fd;
	uint32_t h;
	atomic_int stop;
	long n, err;
};

static void *
evictor_main(void *arg)
{
	struct evictor *e = arg;

	while (!atomic_load(&e->stop)) {
		if (gem_evict(e->fd, e->h) < 0)
			e->err = errno;
		e->n++;
	}
	return NULL;
}

TEST_TAGGED(owner_raw_mremap_races_evictions, "thread")
{
	fm_test_need_uffd();
	int fd = gem_dev(O_RDWR);
	size_t len = 8 * PG;
	struct evictor e = {.fd = fd, .h = gem_create(fd, len)};
	char *p = gem_map(fd, e.h, len, RW);
	unsigned k;
	pthread_t t;

	ASSERT_EQ(pthread_create(&t, NULL, evictor_main, &e), 0);
	for (k = 0; k < MOVES * 4; k++) {
		char *to = mmap(NULL, len, PROT_NONE,
		    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

		ASSERT(to != MAP_FAILED);
		fill(p, len, k); /* dirty, writable */
		p = mremap(p, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, to);
		ASSERT_PTR_EQ(p, to);
		CHECK_PAT(p, len, k);
	}
	atomic_store(&e.stop, 1);
	ASSERT_EQ(pthread_join(t, NULL), 0);
	ASSERT_EQ(e.err, 0);
	ASSERT_OK(gem_evict(fd, e.h));
	CHECK_PAT(p, len, k - 1);
	printf("# %u moves, %ld evictions beside them\n", k, e.n);
	ASSERT_OK(fm_munmap(p, len));
	gem_close(fd, e.h);
	ASSERT_OK(fm_close(fd));
}

/* ------------------------------------------------------------------------
 * 3. fomap's own memory where the program maps with MAP_FIXED.
 */

/*
 * The first fomap call maps at a range the program has just freed: the
 * engine (its threads, their stacks) starts inside that call, and must
 * not be where the mapping goes.
 */
TEST(owner_first_map_fixed_over_freed_range)
{
	size_t len = 64 * MIB;

	need_uffd_fresh();
	fail_after(20);
	int fd = fm_open("/dev/fomap/zero", O_RDWR);
	ASSERT_GE(fd, 0);
	char *hole = own_map(NULL, len);
	ASSERT_OK(munmap(hole, len));
	char *p = fm_mmap(hole, len, RW, MAP_SHARED | MAP_FIXED, fd, 0);
	ASSERT_PTR_EQ(p, hole);
	for (size_t i = 0; i < len; i += PG)
		p[i] = (char)(i / PG + 1);
	for (size_t i = 0; i < len; i += PG)
		ASSERT_EQ(p[i], (char)(i / PG + 1));
	ASSERT_OK(fm_munmap(p, len));
	ASSERT_OK(fm_close(fd));
}

/*
 * The program maps its own data, filled with c, at every page of
 * [lo, lo+len) that [x, x+xlen) (a fomap mapping it was given) leaves
 * free; or checks that data. => the first byte changed, or NULL
 */
static char *
own_around(char *lo, size_t len, const char *x, size_t xlen, char c, int map)
{
	char *hi = lo + len;
	char *piece[2][2] = {{lo,
	                         x < lo       ? lo
	                             : x < hi ? (char *)x
	                                      : hi},
	    {x + xlen > hi          ? hi
	            : x + xlen > lo ? (char *)x + xlen
	                            : lo,
	        hi}};

	for (int i = 0; i < 2; i++) {
		size_t n = (size_t)(piece[i][1] - piece[i][0]);
		ssize_t at;

		if (piece[i][1] <= piece[i][0])
			continue;
		if (map) {
			own_map(piece[i][0], n);
			memset(piece[i][0], c, n);
		} else if ((at = not_all(piece[i][0], n, c)) >= 0)
			return piece[i][0] + at;
	}
	return NULL;
}

/*
 * fomap's own memory for an object (its window, made by the engine when a
 * fault first needs it, or when it is mapped) must not be placed in a
 * range the program has freed and maps again with MAP_FIXED: a gem
 * buffer and a guard region faulted for the first time right after the
 * program freed a range; then a gem buffer mapped right after.
 */
TEST(owner_window_not_in_freed_range)
{
	fm_test_need_uffd();
	size_t blen = MIB, hlen = 4 * MIB;
	int fd = gem_dev(O_RDWR), g = fm_open(FM_GUARD_DEV, O_RDWR);
	char *bad;

	ASSERT_GE(g, 0);
	for (unsigned k = 0; k < 12; k++) {
		uint32_t h = gem_create(fd, blen);
		char *b = gem_map(fd, h, blen, RW);
		struct fm_guard_setup s = {.size = blen};
		ASSERT_OK(fm_ioctl(g, FM_GUARD_SETUP, &s));
		char *r = fm_mmap(NULL, blen, RW, MAP_SHARED, g, 0);
		ASSERT(r != MAP_FAILED);
		ASSERT_OK(fm_madvise(r, blen, MADV_RANDOM));

		/* The program frees a range, fomap faults, the program
		 * maps its data there again. */
		char *hole = own_map(NULL, hlen);
		ASSERT_OK(munmap(hole, hlen));
		fill(b, blen, k); /* the buffer's first faults */
		ASSERT_EQ(r[0], 0); /* the region's first fault */
		own_map(hole, hlen);
		memset(hole, 'P', hlen);

		ASSERT_OK(gem_evict(fd, h)); /* saved through the window */
		CHECK_PAT(b, blen, k); /* refilled through the window */
		for (size_t i = PG; i < blen; i += PG) /* more guard fills */
			ASSERT_EQ(fm_test_probe(r + i, 1), 0);
		if ((bad = own_around(hole, hlen, NULL, 0, 'P', 0)) != NULL)
			fm_test_fail(__FILE__, __LINE__,
			    "round %u: the program's memory changed: byte "
			    "%zd of its range is %d, not 'P'",
			    k, bad - hole, *bad);
		ASSERT_OK(fm_munmap(b, blen));
		ASSERT_OK(fm_munmap(r, blen));
		ASSERT_OK(munmap(hole, hlen));
		gem_close(fd, h);

		/* The program frees a range, maps a buffer, and maps its
		 * data where the buffer is not. */
		hole = own_map(NULL, hlen);
		ASSERT_OK(munmap(hole, hlen));
		h = gem_create(fd, blen);
		b = gem_map(fd, h, blen, RW);
		own_around(hole, hlen, b, blen, 'Q', 1);
		fill(b, blen, k + 1);
		ASSERT_OK(gem_evict(fd, h));
		CHECK_PAT(b, blen, k + 1);
		if ((bad = own_around(hole, hlen, b, blen, 'Q', 0)) != NULL)
			fm_test_fail(__FILE__, __LINE__,
			    "round %u: the program's memory changed: byte "
			    "%zd of its range is %d, not 'Q'",
			    k, bad - hole, *bad);
		ASSERT_OK(fm_munmap(b, blen));
		ASSERT_OK(fm_munmap(hole, hlen)); /* what is left of it */
		gem_close(fd, h);
	}
	ASSERT_OK(fm_close(g));
	ASSERT_OK(fm_close(fd));
}

/*
 * fomap must not hold, even for a moment, an address of the kernel's
 * choosing: the program may have just freed it and be about to map it
 * with MAP_FIXED_NOREPLACE. A thread keeps freeing and mapping the page
 * the kernel picks next while fomap replaces a mapping with MAP_FIXED
 * (the new memory is made elsewhere and moved in) and refuses system
 * calls (the refused page is moved away and back): the program's mapping
 * must always find its page free.
 */
struct taker {
	char *at;
	atomic_int stop;
	long n, taken;
};

static void *
taker_main(void *arg)
{
	struct taker *t = arg;

	while (!atomic_load(&t->stop)) {
		char *q = mmap(t->at, PG, RW,
		    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);

		t->n++;
		if (q == MAP_FAILED)
			t->taken++;
		else
			(void)munmap(q, PG);
	}
	return NULL;
}

static void
guard_ioctl_ok(int g, unsigned long req, void *arg)
{
	ASSERT_OK(fm_ioctl(g, req, arg));
}

TEST_TAGGED(owner_no_transient_memory_in_freed_range, "thread")
{
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
	fm_test_skip("a sanitizer's runtime maps its own memory where the "
	             "kernel chooses: the freed page is taken by it, not by "
	             "fomap");
#endif
	fm_test_need_uffd();
	int z = fm_open("/dev/fomap/zero", O_RDWR),
	    g = fm_open(FM_GUARD_DEV, O_RDWR), pfd[2];
	struct fm_guard_setup s = {.size = PG};
	struct fm_guard_remove rm = {.off = 0,
	    .len = PG,
	    .policy = FM_GUARD_REVOKE};
	struct taker t = {0};
	pthread_t th;
	char c;

	ASSERT_GE(z, 0);
	ASSERT_GE(g, 0);
	guard_ioctl_ok(g, FM_GUARD_SETUP, &s);
	char *r = fm_mmap(NULL, PG, RW, MAP_SHARED, g, 0);
	char *m = fm_mmap(NULL, PG, RW, MAP_SHARED, z, 0);
	ASSERT(r != MAP_FAILED && m != MAP_FAILED);
	r[0] = 'r';
	guard_ioctl_ok(g, FM_GUARD_REMOVE, &rm);
	ASSERT_OK(pipe(pfd));
	t.at = own_map(NULL, PG); /* where the kernel maps next */
	ASSERT_OK(munmap(t.at, PG));
	ASSERT_EQ(pthread_create(&th, NULL, taker_main, &t), 0);
	for (int i = 0; i < 300; i++) {
		ASSERT_PTR_EQ(fm_mmap(m, PG, RW, MAP_SHARED | MAP_FIXED, z, 0),
		    m);
		m[0] = 'm';
		ASSERT_EQ(write(pfd[1], "x", 1), 1);
		ASSERT_ERRNO(read(pfd[0], r, 1), EFAULT);
		ASSERT_EQ(read(pfd[0], &c, 1), 1);
	}
	atomic_store(&t.stop, 1);
	ASSERT_EQ(pthread_join(th, NULL), 0);
	if (t.taken > 0)
		fm_test_fail(__FILE__, __LINE__,
		    "%ld of the program's %ld MAP_FIXED_NOREPLACE maps found "
		    "its freed page taken",
		    t.taken, t.n);
	ASSERT_GE(t.n, 100);
	close(pfd[0]);
	close(pfd[1]);
	ASSERT_OK(fm_munmap(r, PG));
	ASSERT_OK(fm_munmap(m, PG));
	ASSERT_OK(fm_close(g));
	ASSERT_OK(fm_close(z));
}

/* ------------------------------------------------------------------------
 * 4. fork.
 */

/*
 * A child inherits the parent's descriptors and fomap's state. Whatever
 * it does with them, once it has gone the parent's buffer still holds
 * its data: here, evicted to backing storage before the fork, and the
 * child unmaps and closes its copy of everything.
 */
TEST(owner_fork_child_close_spares_parent)
{
	fm_test_need_uffd();
	int fd = gem_dev(O_RDWR);
	size_t len = 16 * PG;
	uint32_t h = gem_create(fd, len);
	char *p = gem_map(fd, h, len, RW);

	fill(p, len, 7);
	ASSERT_OK(gem_evict(fd, h));
	pid_t pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		(void)fm_munmap(p, len);
		struct fm_gem_close c = {.handle = h};
		(void)fm_ioctl(fd, FM_GEM_CLOSE, &c);
		(void)fm_close(fd);
		exit(0);
	}
	ASSERT_CHILD_OK(pid, "the child");
	CHECK_PAT(p, len, 7);
	ASSERT_OK(gem_evict(fd, h)); /* and what is saved now is right */
	CHECK_PAT(p, len, 7);
	ASSERT_OK(fm_munmap(p, len));
	ASSERT_OK(fm_close(fd));
}

/*
 * What a fork child gets from fomap: each call either works, with the
 * right result, or fails with an errno. (Exit status names the step.)
 */
static void
child_uses_fomap(int zfd, int gfd, uint32_t h, size_t len, unsigned seed)
{
	char buf[64];
	ssize_t k;

	memset(buf, 1, sizeof buf);
	k = fm_read(zfd, buf, sizeof buf);
	if (k >= 0 && (k != (ssize_t)sizeof buf || buf[0] != 0 || buf[63]))
		fm_test_fail(__FILE__, __LINE__, "child: fm_read of zero: %zd",
		    k);

	struct fm_gem_info i = {.handle = h};
	if (fm_ioctl(gfd, FM_GEM_INFO, &i) == 0 && i.size != len)
		fm_test_fail(__FILE__, __LINE__,
		    "child: FM_GEM_INFO: size %llu",
		    (unsigned long long)i.size);

	int z = fm_open("/dev/fomap/zero", O_RDWR);
	if (z >= 0) {
		char *m = fm_mmap(NULL, 4 * PG, RW, MAP_SHARED, z, 0);
		if (m != MAP_FAILED) {
			ASSERT_EQ(fm_test_probe(m + PG, 1), 0);
			ASSERT_EQ(m[PG], 0);
			m[PG] = 'c';
			ASSERT_EQ(m[PG], 'c');
			ASSERT_EQ(m[0], 0);
			(void)fm_munmap(m, 4 * PG);
		}
		(void)fm_close(z);
	}

	/* The parent's buffer, evicted: only its pager has the data. */
	struct fm_gem_mmap_offset o = {.handle = h};
	if (fm_ioctl(gfd, FM_GEM_MMAP_OFFSET, &o) == 0) {
		char *b = fm_mmap(NULL, len, PROT_READ, MAP_SHARED, gfd,
		    (off_t)o.offset);
		if (b != MAP_FAILED) {
			CHECK_PAT(b, len, seed);
			(void)fm_munmap(b, len);
		}
	}
	/* The buffer is the parent's too: evicted, it keeps its data. */
	(void)gem_evict(gfd, h);
}

/*
 * Forked with the buffer evicted (only its pager has the data), then
 * with it dirty (newer than what backing storage holds).
 */
TEST(owner_fork_child_use_works_or_fails)
{
	fm_test_need_uffd();
	int zfd = fm_open("/dev/fomap/zero", O_RDWR), gfd = gem_dev(O_RDWR);
	size_t len = 16 * PG;
	uint32_t h = gem_create(gfd, len);
	char *p = gem_map(gfd, h, len, RW);
	char *z = fm_mmap(NULL, 4 * PG, RW, MAP_SHARED, zfd, 0);

	ASSERT_GE(zfd, 0);
	ASSERT(z != MAP_FAILED);
	z[0] = 'z';
	fill(p, len, 9);
	ASSERT_OK(gem_evict(gfd, h));
	for (unsigned seed = 9; seed <= 10; seed++) {
		if (seed == 10)
			fill(p, len, seed); /* dirty at the fork */
		pid_t pid = fork();
		ASSERT_GE(pid, 0);
		if (pid == 0) {
			child_uses_fomap(zfd, gfd, h, len, seed);
			exit(0);
		}
		ASSERT_CHILD_OK(pid, "the child");
		CHECK_PAT(p, len, seed); /* the parent's, untouched */
		ASSERT_EQ(z[0], 'z');
	}
	ASSERT_OK(gem_evict(gfd, h));
	CHECK_PAT(p, len, 10);
	ASSERT_OK(fm_munmap(p, len));
	ASSERT_OK(fm_munmap(z, 4 * PG));
	ASSERT_OK(fm_close(gfd));
	ASSERT_OK(fm_close(zfd));
}

/*
 * In the child, a call on an ordinary descriptor (a pipe here) is the
 * plain system call, and a fomap descriptor of the parent's is not open:
 * EBADF, and POLLNVAL in fm_poll.
 */
static void
child_plain_calls(int zfd, const int pfd[2])
{
	struct pollfd pf[2] = {{.fd = pfd[0], .events = POLLIN},
	    {.fd = zfd, .events = POLLIN | POLLOUT}};
	struct stat st;
	char c = 'x';
	int n = -1;

	ASSERT_EQ(fm_write(pfd[1], &c, 1), 1);
	ASSERT_OK(fm_ioctl(pfd[0], FIONREAD, &n));
	ASSERT_EQ(n, 1);
	ASSERT_OK(fm_fstat(pfd[0], &st));
	ASSERT(S_ISFIFO(st.st_mode));
	ASSERT_EQ(fm_poll(pf, 2, 0), 2);
	ASSERT_EQ(pf[0].revents, POLLIN);
	ASSERT_EQ(pf[1].revents, POLLNVAL);
	c = 0;
	ASSERT_EQ(fm_read(pfd[0], &c, 1), 1);
	ASSERT_EQ(c, 'x');
	ASSERT_ERRNO(fm_read(zfd, &c, 1), EBADF);
	ASSERT_ERRNO(fm_write(zfd, &c, 1), EBADF);
	ASSERT_ERRNO(fm_ioctl(zfd, FIONREAD, &n), EBADF);
	ASSERT_ERRNO(fm_fstat(zfd, &st), EBADF);
	ASSERT_OK(fm_close(zfd));
}

TEST(owner_fork_child_calls_on_ordinary_descriptors_are_plain)
{
	fm_test_need_uffd();
	int zfd = fm_open("/dev/fomap/zero", O_RDWR), pfd[2];
	char *z = fm_mmap(NULL, PG, RW, MAP_SHARED, zfd, 0);

	ASSERT_GE(zfd, 0);
	ASSERT(z != MAP_FAILED);
	ASSERT_OK(pipe(pfd));
	pid_t pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		child_plain_calls(zfd, pfd);
		exit(0);
	}
	ASSERT_CHILD_OK(pid, "the child");
	ASSERT_OK(fm_munmap(z, PG));
	ASSERT_OK(fm_close(zfd));
}

struct churn {
	int fd;
	uint32_t h;
	char *p;
	size_t len;
	atomic_int *stop;
	const char *why; /* what went wrong, or NULL */
	unsigned round;
};

/*
 * Write, evict, read back, without a pause, so that a fork lands in the
 * middle of faults and write-backs, and so that a child that harms the
 * parent's data is seen.
 */
static void *
churn_main(void *arg)
{
	struct churn *c = arg;

	while (!atomic_load(c->stop) && c->why == NULL) {
		char v = (char)++c->round;

		for (size_t i = 0; i < c->len; i += PG)
			c->p[i] = v;
		if (gem_evict(c->fd, c->h) < 0)
			c->why = "FM_GEM_EVICT failed";
		for (size_t i = 0; i < c->len && !c->why; i += PG)
			if (c->p[i] != v)
				c->why = "a buffer lost its data";
	}
	return NULL;
}

/*
 * Forks while other threads fault, evict and write back: a lock the
 * engine held at the fork must not hang the child, which uses fomap as
 * above and leaves with exit(); nor may the children harm the parent.
 */
TEST_TAGGED(owner_fork_while_faulting, "thread")
{
#ifdef __SANITIZE_THREAD__
	/* TSan's own runtime can hang a child forked beside busy threads. */
	fm_test_skip("TSan does not support fork beside running threads");
#endif
	fm_test_need_uffd();
	int zfd = fm_open("/dev/fomap/zero", O_RDWR), gfd = gem_dev(O_RDWR);
	size_t len = 16 * PG;
	uint32_t h = gem_create(gfd, len);
	char *p = gem_map(gfd, h, len, RW);
	struct churn c[2];
	pthread_t t[2];
	atomic_int stop = 0;

	ASSERT_GE(zfd, 0);
	fill(p, len, 11);
	ASSERT_OK(gem_evict(gfd, h));
	for (int i = 0; i < 2; i++) {
		uint32_t hc = gem_create(gfd, len);
		c[i] = (struct churn){.fd = gfd,
		    .h = hc,
		    .p = gem_map(gfd, hc, len, RW),
		    .len = len,
		    .stop = &stop};
		ASSERT_EQ(pthread_create(&t[i], NULL, churn_main, &c[i]), 0);
	}
	for (int k = 0; k < 30; k++) {
		pid_t pid = fork();
		ASSERT_GE(pid, 0);
		if (pid == 0) {
			child_uses_fomap(zfd, gfd, h, len, 11);
			exit(0);
		}
		ASSERT_CHILD_OK(pid, "a child");
	}
	atomic_store(&stop, 1);
	for (int i = 0; i < 2; i++) {
		ASSERT_EQ(pthread_join(t[i], NULL), 0);
		if (c[i].why != NULL)
			fm_test_fail(__FILE__, __LINE__,
			    "thread %d, round %u: %s", i, c[i].round, c[i].why);
		ASSERT_GE(c[i].round, 2); /* it did run beside the forks */
		ASSERT_OK(fm_munmap(c[i].p, len));
	}
	CHECK_PAT(p, len, 11);
	ASSERT_OK(fm_munmap(p, len));
	ASSERT_OK(fm_close(gfd));
	ASSERT_OK(fm_close(zfd));
}

/* ------------------------------------------------------------------------
 * 5. exit().
 */

/*
 * A program writes to a store object's mapping and calls exit(0): the
 * dirty pages reach the file, as a MAP_SHARED file mapping's would.
 */
TEST(owner_exit_writes_back_store)
{
	char path[] = "/tmp/fomap-owner-XXXXXX";
	int file = mkstemp(path);
	size_t len = 8 * PG;

	ASSERT_GE(file, 0);
	unlink(path);
	ASSERT_OK(ftruncate(file, (off_t)len));
	need_uffd_fresh();
	pid_t pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		struct fm_object *obj;
		ASSERT_EQ(fm_store_create(file, 0, len, &obj), 0);
		int fd = testdev_open("owner-exit", obj, RW, O_RDWR);
		char *p = fm_mmap(NULL, len, RW, MAP_SHARED, fd, 0);
		ASSERT(p != MAP_FAILED);
		fill(p, len, 13);
		exit(0); /* no msync, no munmap: exit() */
	}
	ASSERT_CHILD_OK(pid, "the child");
	char *buf = malloc(len);
	ASSERT(buf != NULL);
	ASSERT_EQ(pread(file, buf, len, 0), (ssize_t)len);
	CHECK_PAT(buf, len, 13);
	free(buf);
	close(file);
}

/* ------------------------------------------------------------------------
 * 6. mlockall.
 */

/* mlockall(MCL_CURRENT | MCL_FUTURE), or the test is skipped. */
static void
lock_all(void)
{
	struct rlimit big = {RLIM_INFINITY, RLIM_INFINITY};

	(void)setrlimit(RLIMIT_MEMLOCK, &big);
	if (mlockall(MCL_CURRENT | MCL_FUTURE) < 0)
		fm_test_skip("mlockall not allowed here");
}

TEST(owner_mlockall_evict_and_remap)
{
	fm_test_need_uffd();
	lock_all();
	int fd = gem_dev(O_RDWR);
	size_t len = 16 * PG;
	uint32_t h = gem_create(fd, len);
	char *p = gem_map(fd, h, len, RW);

	fill(p, len, 15);
	if (gem_evict(fd, h) < 0)
		fm_test_fail(__FILE__, __LINE__,
		    "FM_GEM_EVICT under mlockall: %s", strerror(errno));
	CHECK_PAT(p, len, 15);
	ASSERT_OK(fm_munmap(p, len));
	ASSERT_OK(gem_evict(fd, h));
	p = gem_map(fd, h, len, RW); /* mapped again: its data, not zeros */
	CHECK_PAT(p, len, 15);
	fill(p, len, 16);
	ASSERT_OK(gem_evict(fd, h));
	CHECK_PAT(p, len, 16);
	ASSERT_OK(fm_munmap(p, len));
	ASSERT_OK(fm_close(fd));
}

/*
 * Under mlockall(MCL_FUTURE) a page the driver revoked stays refused: a
 * system call into it fails with EFAULT, every time, and a touch from user
 * mode is a SIGBUS. (The engine moves such a page to a fresh mapping while
 * the call fails; the kernel used to fill that mapping from the store
 * inside mmap(2), so the call found a page and wrote into it.) Restored,
 * the page can be revoked again: the fresh mapping, locked by mlockall,
 * used to refuse the engine's MADV_DONTNEED, and the revoke failed.
 */
TEST(owner_mlockall_revoked_page_stays_refused)
{
	fm_test_need_uffd();
	lock_all();
	int g = fm_open(FM_GUARD_DEV, O_RDWR), pfd[2];
	struct fm_guard_setup s = {.size = 2 * PG};
	struct fm_guard_remove rm = {.off = 0,
	    .len = PG,
	    .policy = FM_GUARD_REVOKE};
	char c;

	ASSERT_GE(g, 0);
	guard_ioctl_ok(g, FM_GUARD_SETUP, &s);
	char *r = fm_mmap(NULL, 2 * PG, RW, MAP_SHARED, g, 0);
	ASSERT(r != MAP_FAILED);
	r[0] = 'r';
	r[PG] = 's';
	guard_ioctl_ok(g, FM_GUARD_REMOVE, &rm);
	ASSERT_OK(pipe(pfd));
	for (int i = 0; i < 20; i++) {
		ASSERT_EQ(write(pfd[1], "x", 1), 1);
		ASSERT_ERRNO(read(pfd[0], r, 1), EFAULT);
		ASSERT_EQ(read(pfd[0], &c, 1), 1);
		ASSERT_EQ(fm_test_probe(r, 0), SIGBUS);
	}
	ASSERT_EQ(r[PG], 's');
	struct fm_guard_restore back = {.off = 0, .len = PG};
	guard_ioctl_ok(g, FM_GUARD_RESTORE, &back);
	ASSERT_EQ(r[0], 0); /* given back zero-filled */
	r[0] = 'b';
	rm.len = 2 * PG;
	guard_ioctl_ok(g, FM_GUARD_REMOVE, &rm);
	ASSERT_EQ(fm_test_probe(r, 0), SIGBUS);
	ASSERT_EQ(fm_test_probe(r + PG, 0), SIGBUS);
	close(pfd[0]);
	close(pfd[1]);
	ASSERT_OK(fm_munmap(r, 2 * PG));
	ASSERT_OK(fm_close(g));
}

/* Locked: of /proc/self/smaps_rollup: the bytes locked in memory. */
static long long
locked_bytes(void)
{
	char buf[4096], *at;
	int fd = open("/proc/self/smaps_rollup", O_RDONLY);
	ssize_t k = fd < 0 ? -1 : read(fd, buf, sizeof buf - 1);

	if (fd >= 0)
		close(fd);
	ASSERT(k > 0);
	buf[k] = '\0';
	ASSERT((at = strstr(buf, "Locked:")) != NULL);
	return atoll(at + 7) * 1024;
}

/*
 * Under mlockall(MCL_FUTURE) mapping an object locks none of fomap's own
 * views of it: the pager's window of a 64 MiB store object (it used to be
 * filled and locked whole, 64 MiB, inside mmap(2)).
 */
TEST(owner_mlockall_locks_no_window)
{
	fm_test_need_uffd();
	lock_all();
	size_t len = 64 << 20;
	int file = testdev_tmpfile(PG);
	struct fm_object *obj = testdev_store(file, 0, len);
	int fd = testdev_open("mlock-window", obj, RW, O_RDWR);
	int z = fm_open(FM_DEVPREFIX "zero", O_RDWR);
	char *q = testdev_map(z, PG, RW, MAP_SHARED); /* the engine started */
	long long before = locked_bytes();
	char *p = testdev_map(fd, len, PROT_READ, MAP_SHARED);

	ASSERT(fm_object_window(obj) != NULL);
	ASSERT_LE(locked_bytes() - before, 1 << 20);
	ASSERT_EQ(p[5], (char)5); /* its data, through the pager */
	ASSERT_OK(fm_munmap(q, PG));
	ASSERT_OK(fm_close(z));
	testdev_done(p, len, fd, obj);
	close(file);
}

/* ------------------------------------------------------------------------
 * 7. Descriptors.
 */

#define NMAPS 60000

/*
 * 60,000 live mappings of the zero device (a new object each) in a
 * process allowed 1024 descriptors: the program's descriptors are its
 * own, fomap's mappings must not use them up.
 */
TEST(owner_many_mappings_low_nofile)
{
	fm_test_need_uffd();
	struct rlimit rl;
	ASSERT_OK(getrlimit(RLIMIT_NOFILE, &rl));
	rl.rlim_cur = 1024;
	ASSERT_OK(setrlimit(RLIMIT_NOFILE, &rl));
	int fd = fm_open("/dev/fomap/zero", O_RDWR);
	char **v = calloc(NMAPS, sizeof(*v));
	int n, err = 0;

	ASSERT_GE(fd, 0);
	ASSERT(v != NULL);
	for (n = 0; n < NMAPS; n++) {
		v[n] = fm_mmap(NULL, PG, RW, MAP_SHARED, fd, 0);
		if (v[n] == MAP_FAILED) {
			err = errno;
			break;
		}
	}
	int own = open("/dev/null", O_RDONLY);
	int own_err = errno;
	if (n < NMAPS)
		fm_test_fail(__FILE__, __LINE__,
		    "fm_mmap %d of %d: %s; open() afterwards: %s", n + 1, NMAPS,
		    strerror(err), own < 0 ? strerror(own_err) : "ok");
	if (own < 0)
		fm_test_fail(__FILE__, __LINE__, "open() after %d mappings: %s",
		    NMAPS, strerror(own_err));
	close(own);
	/* Served by the engine: every 4th (all of them would take long). */
	for (int i = 0; i < NMAPS; i += 4)
		*(int *)v[i] = i;
	for (int i = 0; i < NMAPS; i += 4)
		ASSERT_EQ(*(int *)v[i], i);
	for (int i = NMAPS - 1; i >= 0; i--)
		ASSERT_OK(fm_munmap(v[i], PG));
	free(v);
	ASSERT_OK(fm_close(fd));
}

/* The lowest descriptor number free now. */
static int
lowest_free_fd(void)
{
	int fd = dup(0);

	ASSERT_GE(fd, 0);
	close(fd);
	return fd;
}

/*
 * In a fresh child, with slack descriptors left under RLIMIT_NOFILE: open
 * the zero device, map it, touch it. A step that fails (EMFILE: fomap
 * needed more descriptors than that) must work once the limit is raised.
 * => exits 0, 2 if the first try went through, or fails
 */
static void __attribute__((noreturn)) fresh_start(int slack)
{
	struct rlimit rl, low;
	int fd = -1, again = 0;
	char *p = MAP_FAILED;

	ASSERT_OK(getrlimit(RLIMIT_NOFILE, &rl));
	low = rl;
	low.rlim_cur = (rlim_t)(lowest_free_fd() + slack);
	ASSERT_OK(setrlimit(RLIMIT_NOFILE, &low));
	for (int tries = 0; tries < 2; tries++) {
		if (fd < 0 && (fd = fm_open("/dev/fomap/zero", O_RDWR)) < 0)
			printf("slack %d, try %d: fm_open: %s\n", slack, tries,
			    strerror(errno));
		if (fd >= 0 && p == MAP_FAILED &&
		    (p = fm_mmap(NULL, 4 * PG, RW, MAP_SHARED, fd, 0)) ==
		        MAP_FAILED)
			printf("slack %d, try %d: fm_mmap: %s\n", slack, tries,
			    strerror(errno));
		if (p != MAP_FAILED)
			break;
		again = 1;
		ASSERT_OK(setrlimit(RLIMIT_NOFILE, &rl)); /* raised again */
	}
	if (p == MAP_FAILED)
		fm_test_fail(__FILE__, __LINE__,
		    "slack %d: still failing once the limit was raised", slack);
	ASSERT_OK(setrlimit(RLIMIT_NOFILE, &rl));
	ASSERT_EQ(fm_test_probe(p + PG, 1), 0);
	p[PG] = 'e';
	ASSERT_EQ(p[PG], 'e');
	ASSERT_EQ(p[0], 0);
	ASSERT_OK(fm_munmap(p, 4 * PG));
	ASSERT_OK(fm_close(fd));
	exit(again ? 0 : 2);
}

/*
 * fomap's start-up, cut short by EMFILE at each descriptor it opens in
 * turn (the userfaultfd among them), is tried again by the next call.
 */
TEST(owner_transient_emfile_at_start)
{
	need_uffd_fresh();
	for (int slack = 0; slack < 32; slack++) {
		pid_t pid = fork();
		ASSERT_GE(pid, 0);
		if (pid == 0)
			fresh_start(slack);
		int st = wait_child(pid, CHILD_SECS);
		if (st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 2)
			return; /* enough descriptors: every step was tried */
		if (st == -1)
			fm_test_fail(__FILE__, __LINE__, "slack %d: hung",
			    slack);
		if (WIFSIGNALED(st))
			fm_test_fail(__FILE__, __LINE__,
			    "slack %d: killed by signal %d", slack,
			    WTERMSIG(st));
		if (WEXITSTATUS(st) != 0)
			fm_test_fail(__FILE__, __LINE__,
			    "slack %d: exit status %d (its output is above)",
			    slack, WEXITSTATUS(st));
	}
	fm_test_fail(__FILE__, __LINE__,
	    "32 spare descriptors were not enough to start");
}
