/*
 * test_preload_stress.c: four preloaded processes map, write, evict,
 * protect, fork and exit at random against an oracle, with zero
 * mismatches (the workers: preload_stress.c, which says what the oracle
 * checks).
 *
 * One gem buffer of 64 pages, shared by global name, and guard's region
 * (64 pages): each worker process opens both itself and maps them through
 * fomapd's engine. The ops: map (gem shared or private, a random range;
 * guard shared) and unmap; write its own words and read them back; read
 * anybody's and check them; write through a private mapping; FM_GEM_EVICT;
 * mprotect a mapping read-only (a write: SIGSEGV); guard's read-only range
 * on a page of its own (a write: SIGBUS, not done); guard's removal with
 * refill; fork (the child works a while on what it inherited and on new
 * mappings, then exits); exit (the test starts a new process in its
 * place, which finds its words as they were left).
 *
 * The test fails at any mismatch, at a SIGBUS or SIGSEGV nobody expected,
 * at a hang (a worker not gone 15 s after the run's end is killed), if an
 * op never ran; and unless, at the end, every word is exactly its owner's
 * last write (evicted and not), fomapd lists no session and has the
 * descriptors it had before.
 *
 *   FOMAP_STRESS_SECONDS          set (make stress): runs a tenth of it,
 *                                 6 s at least; unset: 5 s
 *   FOMAP_PRELOAD_STRESS_SECONDS  the run's length, whatever the above
 *   FOMAP_PRELOAD_STRESS_SKIP     ops the workers leave out (by name:
 *                                 "fork,gprotect"), to tell failures apart
 */
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <fomap/gem.h>
#include <fomap/guard.h>

#include "../test.h"
#include "daemon.h"

#define WORKERS 4
#define PAGES 64
#define GRACE_NS (15 * 1000000000LL) /* after the end, then: a hang */

static double
run_seconds(void)
{
	const char *s = getenv("FOMAP_PRELOAD_STRESS_SECONDS");
	double t;

	if (s != NULL && (t = atof(s)) > 0)
		return t;
	if ((s = getenv("FOMAP_STRESS_SECONDS")) != NULL && (t = atof(s)) > 0)
		return t / 10 > 6 ? t / 10 : 6;
	return 5;
}

static int
sessions(const struct fmd *m)
{
	return fmd_sh("exit $(%s --mount %s sessions | wc -l)",
	    fmd_tool("fomapctl"), m->dir);
}

/*
 * fomapd's descriptors but its objects' read-only stores (each object
 * keeps one once a client maps it read-only or private, until it is
 * freed: the buffers outlive the workers).
 */
static int
fds_of(pid_t pid)
{
	return fmd_sh("exit $(ls -l /proc/%d/fd | grep -vc "
	              "'^lr-x.* /memfd:fomap-object')",
	    (int)pid);
}

struct run {
	const struct fmd *m;
	char name[16], ledger[40], end[32];
	int64_t end_ns;
	pid_t pid[WORKERS];
	unsigned long started;
};

/* A worker for slot s, preloaded. */
static void
spawn(struct run *r, int s)
{
	char helper[1100], slot[16], seed[24];

	snprintf(helper, sizeof helper, "%s", fmd_tool("fomap-preload-stress"));
	snprintf(slot, sizeof slot, "%d", s);
	snprintf(seed, sizeof seed, "%llu",
	    (unsigned long long)fmd_now_ns() * 2654435761u + (unsigned)s);
	(void)fmd_preload_value();
	fflush(NULL);
	ASSERT((r->pid[s] = fork()) >= 0);
	if (r->pid[s] == 0) {
		setenv("LD_PRELOAD", fmd_preload_value(), 1);
		execl(helper, "fomap-preload-stress", "work",
		    fmd_path(r->m, "gem", 0), fmd_path(r->m, "guard", 1),
		    r->name, r->ledger, slot, seed, r->end, (char *)NULL);
		_exit(127);
	}
	r->started++;
}

/* How a worker ended, if not well: a line for the failure. */
static const char *
how(int st)
{
	static char s[64];

	if (WIFEXITED(st))
		snprintf(s, sizeof s, "exited %d%s", WEXITSTATUS(st),
		    WEXITSTATUS(st) == 3 ? " (an unexpected SIGBUS/SIGSEGV)"
		        : WEXITSTATUS(st) == 1
		        ? " (a mismatch or a failed call)"
		        : "");
	else
		snprintf(s, sizeof s, "killed by signal %d", WTERMSIG(st));
	return s;
}

/*
 * Run the workers until the end, replacing those that exit; then wait
 * for them (GRACE_NS at most). => 0, or a failure's description in why.
 */
static int
run_workers(struct run *r, char *why, size_t n)
{
	int live = 0, failed = 0;

	for (int s = 0; s < WORKERS; s++, live++)
		spawn(r, s);
	while (live > 0) {
		int64_t t = fmd_now_ns();

		if (t > r->end_ns + GRACE_NS) {
			for (int s = 0; s < WORKERS; s++)
				if (r->pid[s] > 0) {
					snprintf(why, n,
					    "slot %d: worker %d hangs (%.0f s "
					    "after the end)",
					    s, (int)r->pid[s],
					    (double)GRACE_NS / 1e9);
					fm_test_hang_dump(r->pid[s], 0,
					    "a preload worker hangs");
					fm_test_hang_dump(r->m->pid, 0,
					    "fomapd");
					kill(r->pid[s], SIGKILL);
					waitpid(r->pid[s], NULL, 0);
					r->pid[s] = 0;
				}
			return -1;
		}
		for (int s = 0; s < WORKERS; s++) {
			int st;

			if (r->pid[s] <= 0 ||
			    waitpid(r->pid[s], &st, WNOHANG) != r->pid[s])
				continue;
			if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
				if (!failed)
					snprintf(why, n,
					    "slot %d: worker %d %s", s,
					    (int)r->pid[s], how(st));
				failed = 1;
				r->end_ns = t; /* the others stop now */
				for (int k = 0; k < WORKERS; k++)
					if (r->pid[k] > 0 && k != s)
						kill(r->pid[k], SIGTERM);
			}
			r->pid[s] = 0;
			live--;
			if (!failed && t < r->end_ns - 200000000) {
				spawn(r, s);
				live++;
			}
		}
		usleep(2000);
	}
	return failed ? -1 : 0;
}

TEST(preload_stress_four_processes_against_the_oracle)
{
	struct fm_guard_setup su = {.size = PAGES * PG};
	struct fm_gem_create c = {.size = PAGES * PG};
	struct fm_gem_flink f = {0};
	struct fm_gem_info gi = {0};
	struct fm_guard_stats gs;
	struct run r = {0};
	struct fmd m;
	char why[256] = "";
	int gem, guard, fds0, fds = -1, lf;
	char helper[1100];
	double secs = run_seconds();
	int64_t t0;

	fmd_start(&m, NULL);
	r.m = &m;
	ASSERT((gem = open(fmd_path(&m, "gem", 0), O_RDWR)) >= 0);
	ASSERT((guard = open(fmd_path(&m, "guard", 0), O_RDWR)) >= 0);
	ASSERT_OK(ioctl(gem, FM_GEM_CREATE, &c));
	f.handle = gi.handle = c.handle;
	ASSERT_OK(ioctl(gem, FM_GEM_FLINK, &f));
	ASSERT_OK(ioctl(guard, FM_GUARD_SETUP, &su));
	/* (the first eviction opens gem's backing file: counted before) */
	ASSERT_OK(ioctl(gem, FM_GEM_EVICT,
	    &(struct fm_gem_evict){.handle = c.handle}));
	/*
	 * (so does the first client: fomapd's engine starts then, with
	 * descriptors of its own for good: its own userfaultfds, pagemap,
	 * epoll set, kick and splice pipe)
	 */
	snprintf(helper, sizeof helper, "%s", fmd_tool("fomap-preload-map"));
	ASSERT_EQ(fmd_sh("LD_PRELOAD='%s' %s gem %s >/dev/null",
	              fmd_preload_value(), helper, fmd_path(&m, "gem", 0)),
	    0);
	for (int i = 0; i < 500 && sessions(&m) != 0; i++)
		usleep(10000);
	fds0 = fds_of(m.pid);
	snprintf(r.name, sizeof r.name, "%u", f.name);
	snprintf(r.ledger, sizeof r.ledger, "/tmp/fomap-pstress-XXXXXX");
	ASSERT((lf = mkstemp(r.ledger)) >= 0);
	close(lf);

	t0 = fmd_now_ns();
	r.end_ns = t0 + (int64_t)(secs * 1e9);
	snprintf(r.end, sizeof r.end, "%lld", (long long)r.end_ns);
	if (run_workers(&r, why, sizeof why) != 0) {
		printf("FAIL: %s\n", why);
		(void)fmd_sh("echo '# fomapd:'; tail -20 %s", m.log);
		unlink(r.ledger);
		fmd_stop(&m);
		ASSERT(!"a worker failed (its lines above)");
	}
	printf("%lu worker processes in %.1f s\n", r.started,
	    (double)(fmd_now_ns() - t0) / 1e9);

	/* Every word as its owner left it, evicted or not. */
	ASSERT_EQ(fmd_sh("LD_PRELOAD='%s' %s check %s %s %s %s",
	              fmd_preload_value(), fmd_tool("fomap-preload-stress"),
	              fmd_path(&m, "gem", 0), fmd_path(&m, "guard", 1), r.name,
	              r.ledger),
	    0);
	unlink(r.ledger);
	ASSERT_OK(ioctl(gem, FM_GEM_INFO, &gi));
	ASSERT_OK(ioctl(guard, FM_GUARD_STATS, &gs));
	printf("gem: faults %llu refill %llu evictions %llu; guard: refused "
	       "%llu removals %llu\n",
	    (unsigned long long)gi.faults, (unsigned long long)gi.refill,
	    (unsigned long long)gi.evictions, (unsigned long long)gs.refused,
	    (unsigned long long)gs.removals);
	ASSERT_GE(gi.evictions, 2);
	ASSERT_GE(gi.refill, 1);
	ASSERT_GE(gs.refused, 1);

	/* Nothing left of them in fomapd. */
	for (int i = 0; i < 500 && sessions(&m) != 0; i++)
		usleep(10000);
	if (sessions(&m) != 0)
		(void)fmd_sh("%s --mount %s sessions", fmd_tool("fomapctl"),
		    m.dir);
	ASSERT_EQ(sessions(&m), 0);
	for (int i = 0; i < 200 && (fds = fds_of(m.pid)) != fds0; i++)
		usleep(10000);
	if (fds != fds0)
		(void)fmd_sh("ls -l /proc/%d/fd", (int)m.pid);
	ASSERT_EQ(fds, fds0);
	close(gem);
	close(guard);
	ASSERT_EQ(fmd_stop(&m), 0);
}
