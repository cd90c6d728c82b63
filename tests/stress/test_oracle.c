/*
 * test_oracle.c: the oracle stress test (oracle.h) over every object kind,
 * with several seeds, and the oracle's own test: bugs planted in its
 * expectations, or in the run, must be caught.
 *
 *   FOMAP_STRESS_SECONDS   unset: about a second a kind (make check); set:
 *                          that many seconds in all, shared by the kinds,
 *                          in seeds of at most 20 s (make stress)
 *   FOMAP_STRESS_SEED      the first seed (default 1); seeds follow it
 *   FOMAP_ORACLE_HANG_SECS an operation longer than this is a hang
 *                          (default 5, 20 with FOMAP_STRESS_SECONDS)
 *   FOMAP_STRESS_VERBOSE   the counts of every run on stderr too
 *   FOMAP_ORACLE_WRITERS, FOMAP_ORACLE_MUTATORS, FOMAP_ORACLE_SKIP (a
 *                          list of operations not to do, oracle_run.c):
 *                          to tell what a failure needs
 *   FOMAP_ORACLE_TRACE=N   after a failure, the last N events about its
 *                          page (FOMAP_ORACLE_TRACE_FILE: into that file)
 *   FOMAP_TEST_HANG_DUMP=FILE  after a hang, the hung thread's /proc
 *                          files and every thread's stacks into FILE
 */
#include <sys/wait.h>
#include <unistd.h>

#include "../test.h"
#include "oracle.h"

#define NKINDS 8
#define CHECK_SEEDS 3
#define CHECK_SECS 0.35
#define STRESS_SEED_SECS 20.0

static double
env_double(const char *name, double dflt)
{
	const char *s = getenv(name);

	return s != NULL && *s != '\0' ? atof(s) : dflt;
}

static void
add(struct or_counts *sum, const struct or_counts *c)
{
	unsigned long *s = (unsigned long *)sum;
	const unsigned long *x = (const unsigned long *)c;

	for (size_t i = 0; i < sizeof *sum / sizeof *s; i++)
		s[i] += x[i];
}

/*
 * Run kind k with several seeds; fail on the first failure, with its seed.
 * The sums prove the run was not vacuous: it raced, signalled, faulted.
 */
static void
oracle_kind(const struct or_kind *k)
{
	double total = env_double("FOMAP_STRESS_SECONDS", 0) / NKINDS;
	struct or_params p = {.storm = 1,
	    .hang_secs =
	        env_double("FOMAP_ORACLE_HANG_SECS", total > 0 ? 20 : 5),
	    .nwriters = (int)env_double("FOMAP_ORACLE_WRITERS", 0),
	    .nmutators = (int)env_double("FOMAP_ORACLE_MUTATORS", 0)};
	unsigned long seed = (unsigned long)env_double("FOMAP_STRESS_SEED", 1);
	unsigned nseeds = CHECK_SEEDS;
	struct or_counts sum = {0}, c;
	char msg[1200];

	if (k->flags & OK_ENGINE)
		fm_test_need_uffd();
	p.secs = CHECK_SECS;
	if (total > 0) {
		nseeds = (unsigned)(total / STRESS_SEED_SECS) + 1;
		if (nseeds < CHECK_SEEDS)
			nseeds = CHECK_SEEDS;
		p.secs = total / nseeds;
	}
	for (unsigned i = 0; i < nseeds; i++, seed++) {
		if (or_run(k, seed, &p, &c, msg, sizeof msg) != F_NONE)
			fm_test_fail(__FILE__, __LINE__, "oracle %s", msg);
		add(&sum, &c);
	}
	printf("# oracle %s: %u seeds, %lu accesses, %lu mutations (%lu "
	       "raced), %lu signals, %lu SIGBUS, %lu faults\n",
	    k->name, nseeds, sum.accesses, sum.mops, sum.races, sum.signals,
	    sum.sigbus, sum.faults);
	ASSERT_GE(sum.accesses, 1000);
	ASSERT_GE(sum.races, 10);
	if (total > 0)
		ASSERT_GE(sum.signals, 100);
	if (k->flags & OK_ENGINE)
		ASSERT_GE(sum.faults, 100);
	if (k->protect != NULL || (k->flags & OK_REVOKES))
		ASSERT_GE(sum.sigbus, 1);
	if (k == &or_put)
		ASSERT_GE(sum.hook_calls, 10);
}

TEST_TAGGED(oracle_zero, "thread oracle")
{
	oracle_kind(&or_zero);
}

TEST_TAGGED(oracle_store, "thread oracle")
{
	oracle_kind(&or_store);
}

TEST_TAGGED(oracle_slow_pager, "thread oracle")
{
	oracle_kind(&or_slow);
}

TEST_TAGGED(oracle_put_pager_and_write_hook, "thread oracle")
{
	oracle_kind(&or_put);
}

TEST_TAGGED(oracle_gem_eviction, "thread oracle")
{
	oracle_kind(&or_gem);
}

TEST_TAGGED(oracle_guard, "thread oracle")
{
	oracle_kind(&or_guard);
}

TEST_TAGGED(oracle_device_pager, "thread oracle")
{
	oracle_kind(&or_device);
}

TEST_TAGGED(oracle_regular_file, "thread oracle")
{
	oracle_kind(&or_file);
}

/*
 * The oracle's own test. Each planted bug runs in a child process (fomap
 * cannot be used across fork); the child exits with the class of the
 * failure the oracle found. Each configuration first runs without a
 * planted bug and must pass, so that what fails the next run is the bug.
 * Where the engine serves the object, the configuration leaves out what
 * meets the engine's own known bugs (one writer, no signal storm, no
 * system calls on the pages, no new or split mappings, no prefetch; for
 * the write hook no discard and no protection changes either).
 */
#define ENGINE_QUIET "pipein,pipeout,replace,remap,willneed,mprotect"

struct planted {
	const char *what;
	const struct or_kind *k;
	int sabotage, nwriters;
	int want, also; /* the classes the oracle may name */
	const char *skip;
};

static const struct planted planted[] = {
    {"a reset the model is not told of", &or_file, SAB_RESET, 2, F_VALUE,
        F_VALUE, NULL},
    {"a private reset the model is not told of", &or_file, SAB_PRIVATE, 2,
        F_VALUE, F_VALUE, NULL},
    {"a hang", &or_file, SAB_HANG, 2, F_HANG, F_HANG, NULL},
    {"a SIGBUS from nowhere", &or_file, SAB_STRAY, 2, F_STRAY, F_SIGBUS, NULL},
    {"protection the model is not told of", &or_zero, SAB_PROT, 1, F_SIGBUS,
        F_SIGBUS, ENGINE_QUIET},
    {"write-backs the hook's bound is not told of", &or_put, SAB_EPOCH, 1,
        F_HOOK, F_HOOK, ENGINE_QUIET ",discard,protect,unprotect"},
};

static int
run_child(const struct planted *pl, int sabotage, double secs)
{
	/* (a short bound only where the hang is planted: a loaded machine
	 * can hold a writer for half a second) */
	struct or_params p = {.secs = secs,
	    .hang_secs = sabotage == SAB_HANG ? 0.5 : 5,
	    .nwriters = pl->nwriters,
	    .nmutators = 2,
	    .storm = 0,
	    .sabotage = sabotage,
	    .quiet = 1,
	    .skip = pl->skip};
	struct or_counts c;
	char msg[1200];
	int status, fail;
	pid_t pid = fork();

	ASSERT_GE(pid, 0);
	if (pid == 0) {
		alarm(20);
		if (pl->k->flags & OK_ENGINE)
			fm_test_need_uffd();
		fail = or_run(pl->k, 7, &p, &c, msg, sizeof msg);
		if (fail != F_NONE)
			printf("# %s %s: %s\n",
			    sabotage ? "planted" : "without", pl->what, msg);
		fflush(stdout);
		_exit(fail);
	}
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 77)
		fm_test_skip("userfaultfd unavailable");
	if (!WIFEXITED(status))
		fm_test_fail(__FILE__, __LINE__, "planted %s: killed by %d",
		    pl->what, WTERMSIG(status));
	return WEXITSTATUS(status);
}

TEST_TAGGED(oracle_catches_planted_bugs, "thread oracle")
{
	for (size_t i = 0; i < sizeof planted / sizeof planted[0]; i++) {
		const struct planted *pl = &planted[i];
		int got;

		if ((i == 0 || pl->k != planted[i - 1].k) &&
		    (got = run_child(pl, SAB_NONE, 0.3)) != F_NONE)
			fm_test_fail(__FILE__, __LINE__,
			    "%s without a planted bug: failure class %d",
			    pl->k->name, got);
		got = run_child(pl, pl->sabotage, 1.5);
		if (got != pl->want && got != pl->also)
			fm_test_fail(__FILE__, __LINE__,
			    "planted %s: the oracle said class %d, not %d",
			    pl->what, got, pl->want);
	}
}
