/*
 * oracle_run.c: one run of the oracle (oracle.h) over one object kind:
 * set up the object and its mappings, start the writers, the mutators and
 * the signal storm, watch for failures and hangs, stop, check the end,
 * count, tear down.
 *
 *   or_run          the whole run
 *   storm_main      SIGUSR1 to every writer every storm_us
 *   watch           the watchdog: a failure, a hang, or time is up
 *   final_check     every word through every mapping, then the backing
 *
 * What is a failure: a word that holds anything but what the model allows
 * (a lost or resurrected write), a SIGBUS or SIGSEGV or EFAULT that no
 * operation explains, a write that went through where it had to be
 * refused, a signal that arrives outside the access it answers, a second
 * write hook call with nothing in between that could have asked again,
 * and an operation that does not end within hang_secs.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <fomap/fomap.h>

#include "../test.h"
#include "oracle.h"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

/* ------------------------------------------------------------------------
 * The signal storm and the planted stray SIGBUS.
 */

static pthread_t storm_th;

static void *
storm_main(void *arg)
{
	struct oracle *o = arg;
	struct timespec ts = {0, (long)o->storm_us * 1000};

	prctl(PR_SET_TIMERSLACK, 1UL); /* the default slack is 50 us */
	while (!atomic_load(&o->stop)) {
		for (unsigned i = 0; i < o->nwriters; i++)
			pthread_kill(o->w[i]->th, SIGUSR1);
		nanosleep(&ts, NULL);
	}
	return NULL;
}

static void
sabotage_stray(struct oracle *o)
{
	siginfo_t si = {.si_signo = SIGBUS, .si_code = SI_QUEUE};

	si.si_addr = o->slot[0];
	if (or_writer0_tid() > 0)
		syscall(SYS_rt_tgsigqueueinfo, getpid(), or_writer0_tid(),
		    SIGBUS, &si);
}

/* ------------------------------------------------------------------------
 * Set-up and the end of a run.
 */

/* What the seed decides, unless the parameters say. */
static void
configure(struct oracle *o, unsigned long seed)
{
	static const unsigned pace[] = {0, 10, 50, 200},
	                      slow[] = {0, 20, 100, 300};
	uint64_t r = or_mix(seed ^ 0x6f7261636c65ULL);

	o->seed = seed;
	o->salt = or_mix(seed);
	o->npages = 8u << or_rnd(&r, 3);
	o->nwriters =
	    o->p.nwriters ? (unsigned)o->p.nwriters : 2 + or_rnd(&r, 3);
	o->nmutators =
	    o->p.nmutators ? (unsigned)o->p.nmutators : 1 + or_rnd(&r, 2);
	o->storm = o->p.storm >= 0 ? o->p.storm : or_rnd(&r, 4) != 0;
	if (or_skipped(o, "storm"))
		o->storm = 0;
	o->restart = or_rnd(&r, 2);
	o->storm_us = 20 + or_rnd(&r, 80);
	o->pace_us = pace[or_rnd(&r, 4)];
	o->slow_us = slow[or_rnd(&r, 4)];
	o->nslots = (unsigned)(o->k->nshared + o->k->nprivate);
	or_writer_weights(o, &r);
	or_mutator_weights(o, &r);
	/* Drawn apart, so that the draws above stay each seed's own. */
	r = or_mix(seed ^ 0x7377656570ULL);
	o->sweep = or_rnd(&r, 2);
}

/*
 * A place for the mappings far below where the kernel puts new mappings,
 * so that a range fm_munmap leaves free is not taken by another thread's
 * mmap before it is mapped again. (1 GiB is application memory under
 * ASan and TSan too.) => 0, or -errno
 */
static int
reserve_arena(struct oracle *o)
{
	o->arenalen = ((size_t)o->nslots * (o->npages + 1) + 1) * OR_PG;
	for (uintptr_t hint = 1UL << 30; hint < 2UL << 30; hint += 1UL << 24) {
		void *p = mmap((void *)hint, o->arenalen, PROT_NONE,
		    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE |
		        MAP_FIXED_NOREPLACE,
		    -1, 0);

		if (p == (void *)hint) {
			o->arena = p;
			break;
		}
		if (p != MAP_FAILED)
			munmap(p, o->arenalen);
	}
	if (o->arena == NULL) { /* then where the kernel likes */
		o->arena = mmap(NULL, o->arenalen, PROT_NONE,
		    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (o->arena == MAP_FAILED) {
			o->arena = NULL;
			return -errno;
		}
	}
	for (unsigned s = 0; s < o->nslots; s++) {
		o->slot[s] =
		    o->arena + OR_PG + (size_t)s * (o->npages + 1) * OR_PG;
		o->shared[s] = (int)s < o->k->nshared;
	}
	return 0;
}

/*
 * Map every slot in its place of the arena. Nothing races the set-up, so
 * the place is freed and mapped afresh rather than replaced (MAP_FIXED is
 * one of the operations under test).
 */
static int
map_all(struct oracle *o)
{
	size_t len = (size_t)o->npages * OR_PG;

	for (unsigned s = 0; s < o->nslots; s++)
		if (munmap(o->slot[s], len) < 0 ||
		    or_map_slot(o, (int)s, 0, o->npages, MAP_FIXED_NOREPLACE) !=
		        o->slot[s])
			return -errno;
	return 0;
}

static struct or_worker *
worker_new(struct oracle *o, int id, int role)
{
	struct or_worker *w = calloc(1, sizeof(*w));

	if (w == NULL)
		return NULL;
	w->o = o;
	w->id = id;
	w->role = role;
	w->rng = or_mix(o->seed * 1000003 + (uint64_t)id * 7919 + role);
	w->pipe[0] = w->pipe[1] = -1;
	if (role == R_WRITER && pipe2(w->pipe, O_NONBLOCK | O_CLOEXEC) < 0) {
		free(w);
		return NULL;
	}
	for (unsigned pg = 0; pg < o->npages; pg++)
		for (unsigned i = 0; i < OR_SHW; i++) {
			w->own[pg][i].val = w->seen[pg][i].val =
			    or_base(o, pg, i);
			for (unsigned s = 0; s < OR_MAXSLOTS; s++)
				w->priv[s][pg][i].val =
				    or_base(o, pg, OR_PRIV + i);
		}
	return w;
}

/* => 1 if some thread has been in one operation longer than hang_secs */
static int
check_hang(struct oracle *o)
{
	long t = or_now_ns();

	for (unsigned i = 0; i < o->nw; i++) {
		struct or_worker *w = o->w[i];
		long since = atomic_load(&w->since);

		if (since != 0 && t - since > (long)(o->p.hang_secs * 1e9)) {
			or_fail(o, F_HANG,
			    "%s %d: %s (mapping %d, page %u) has not ended "
			    "after %.1f s",
			    w->role == R_WRITER ? "writer" : "mutator", w->id,
			    atomic_load(&w->what), atomic_load(&w->wslot),
			    atomic_load(&w->wpg), (t - since) / 1e9);
			fm_test_hang_dump(getpid(), atomic_load(&w->tid),
			    "an oracle operation hung");
			return 1;
		}
	}
	return 0;
}

/* Run until the time is up, a failure, or a hang. */
static void
watch(struct oracle *o)
{
	long end = or_now_ns() + (long)(o->p.secs * 1e9);

	while (!atomic_load(&o->stop) && or_now_ns() < end) {
		usleep(10000);
		if (check_hang(o))
			break;
		if (o->p.sabotage == SAB_STRAY)
			sabotage_stray(o);
	}
	atomic_store(&o->stop, 1);
}

/*
 * Join every thread within hang_secs. => 0, or -1: some did not stop (a
 * hang; the process must exit without tearing the run down)
 */
static int
join_all(struct oracle *o, unsigned nstarted)
{
	long end = or_now_ns() + (long)(o->p.hang_secs * 1e9);
	int left;

	if (o->storm)
		pthread_join(storm_th, NULL);
	do {
		left = 0;
		for (unsigned i = 0; i < nstarted; i++) {
			if (o->w[i]->th == 0)
				continue;
			if (pthread_tryjoin_np(o->w[i]->th, NULL) == 0)
				o->w[i]->th = 0;
			else
				left++;
		}
		if (left > 0)
			usleep(5000);
	} while (left > 0 && or_now_ns() < end);
	if (left > 0) {
		(void)check_hang(o);
		or_fail(o, F_HANG, "%d threads did not stop within %.1f s",
		    left, o->p.hang_secs);
		return -1;
	}
	return 0;
}

static void
final_check(struct oracle *o, struct or_worker *c)
{
	for (unsigned pg = 0; pg < o->npages; pg++)
		for (unsigned w = 0; w < OR_SHW; w++) {
			for (int s = 0; s < o->k->nshared; s++)
				or_final_word(o, c, s, pg, w);
			for (unsigned s = (unsigned)o->k->nshared;
			     s < o->nslots; s++)
				or_final_word(o, c, (int)s, pg, OR_PRIV + w);
			if (o->k->flags & OK_KVA)
				or_final_word(o, c, -1, pg, w);
		}
	for (int s = 0; s < o->k->nshared && !atomic_load(&o->fail); s++)
		if (fm_msync(o->slot[s], (size_t)o->npages * OR_PG, MS_SYNC) <
		    0)
			or_fail(o, F_CALL, "fm_msync at the end: %s",
			    strerror(errno));
	if (o->k->final != NULL && !atomic_load(&o->fail))
		o->k->final(o);
}

/* A backing store's page: the shared words as the mappings showed them. */
void
or_check_page(struct oracle *o, unsigned pg, const uint64_t *page,
    const char *where)
{
	char got[48], want[48];

	for (unsigned w = 0; w < OR_WORDS; w++) {
		uint64_t x = w < OR_SHW ? o->final[pg][w] : or_base(o, pg, w);

		if (page[w] != x) {
			or_fail(o, F_VALUE,
			    "at the end: %s holds %s in word %u of page %u, "
			    "the mappings %s",
			    where,
			    or_val_str(o, page[w], pg, w, got, sizeof got), w,
			    pg, or_val_str(o, x, pg, w, want, sizeof want));
			return;
		}
	}
}

static void
count(struct oracle *o, struct or_counts *c, const struct fm_stats *s0)
{
	struct fm_stats s1;

	memset(c, 0, sizeof *c);
	for (unsigned i = 0; i < o->nw; i++) {
		struct or_worker *w = o->w[i];

		if (w->role != R_WRITER)
			continue;
		c->signals += w->nsig;
		c->sigbus += w->n.sigbus;
		c->sigsegv += w->n.sigsegv;
		c->efault += w->n.efault;
		c->torn += w->n.torn;
		c->pipeops += w->n.pipeops;
	}
	c->accesses = atomic_load(&o->accesses);
	c->mops = atomic_load(&o->mops);
	c->races = atomic_load(&o->races);
	c->hook_calls = atomic_load(&o->hook_calls);
	c->hook_refused = atomic_load(&o->hook_refused);
	fm_engine_stats(&s1);
	c->faults = s1.faults - s0->faults;
	c->minor = s1.minor - s0->minor;
	c->wp = s1.wp - s0->wp;
	c->engine_sigbus = s1.sigbus - s0->sigbus;
	c->retries = s1.retries - s0->retries;
}

static void
report(const struct oracle *o, const struct or_counts *c)
{
	char line[512];

	snprintf(line, sizeof line,
	    "# oracle %s seed %lu (%u pages, %u writers, %u mutators, %s%s): "
	    "%lu accesses, %lu mutations (%lu raced writers), %lu signals, "
	    "%lu SIGBUS, %lu SIGSEGV, %lu EFAULT, %lu pipe calls, "
	    "%lu write hook calls (%lu refused); engine: %lu faults "
	    "(%lu minor, %lu wp, %lu sigbus, %lu retries)\n",
	    o->k->name, o->seed, o->npages, o->nwriters, o->nmutators,
	    !o->storm        ? "no storm"
	        : o->restart ? "storm, SA_RESTART"
	                     : "storm",
	    o->sweep ? ", sweeps" : "", c->accesses, c->mops, c->races,
	    c->signals, c->sigbus, c->sigsegv, c->efault, c->pipeops,
	    c->hook_calls, c->hook_refused, c->faults, c->minor, c->wp,
	    c->engine_sigbus, c->retries);
	fputs(line, stdout);
	if (getenv("FOMAP_STRESS_VERBOSE") != NULL)
		fputs(line, stderr);
}

static int
start_threads(struct oracle *o, unsigned *nstarted)
{
	for (unsigned i = 0; i < o->nwriters + o->nmutators; i++) {
		int writer = i < o->nwriters;
		struct or_worker *w = o->w[i];
		int r = pthread_create(&w->th, NULL,
		    !writer      ? or_mutator_main
		        : i == 0 ? or_writer0_main
		                 : or_writer_main,
		    w);

		if (r != 0)
			return -r;
		++*nstarted;
	}
	if (o->storm && pthread_create(&storm_th, NULL, storm_main, o) != 0)
		o->storm = 0;
	return 0;
}

static void
teardown(struct oracle *o)
{
	for (unsigned s = 0; s < o->nslots; s++)
		if (o->slot[s] != NULL)
			(void)fm_munmap(o->slot[s], (size_t)o->npages * OR_PG);
	if (o->arena != NULL)
		munmap(o->arena, o->arenalen);
	o->k->teardown(o);
	for (unsigned i = 0; i < o->nw; i++) {
		if (o->w[i]->pipe[0] >= 0) {
			close(o->w[i]->pipe[0]);
			close(o->w[i]->pipe[1]);
		}
		free(o->w[i]);
	}
}

static void
init(struct oracle *o, const struct or_kind *k, const struct or_params *p)
{
	memset(o, 0, sizeof *o);
	o->k = k;
	o->p = *p;
	for (int s = 0; s < OR_MAXSLOTS; s++) {
		o->fd[s] = -1;
		pthread_mutex_init(&o->slotlock[s], NULL);
	}
	pthread_mutex_init(&o->protlock, NULL);
	pthread_mutex_init(&o->faillock, NULL);
}

/*
 * A SIGBUS sent to a thread while it was no worker: after the last run
 * (before this one started), or to the main thread during this one.
 */
static void
check_unowned(struct oracle *o)
{
	void *addr;
	unsigned long n = or_unowned_signals(&addr);

	if (n > 0)
		or_fail(o, F_STRAY,
		    "%lu signal(s) sent to a thread that was accessing "
		    "nothing, the last for %p (a late answer to a fault)",
		    n, addr);
}

/* The first failure's message (engine threads may still be reporting). */
static void
fail_msg(struct oracle *o, char *msg, size_t len)
{
	pthread_mutex_lock(&o->faillock);
	snprintf(msg, len, "%s seed %lu: %s", o->k->name, o->seed, o->failmsg);
	pthread_mutex_unlock(&o->faillock);
}

/*
 * or_run: one run of kind k with seed for p->secs.
 * => F_NONE, or the class of the first failure with its message in msg;
 *    *c holds the counts. After F_HANG threads may still be stuck: the
 *    caller must not go on in this process.
 */
int
or_run(const struct or_kind *k, unsigned long seed, const struct or_params *p,
    struct or_counts *c, char *msg, size_t len)
{
	struct oracle *o = malloc(sizeof(*o));
	struct or_worker *checker = NULL;
	unsigned nstarted = 0;
	struct fm_stats s0;
	int r, fail;

	if (o == NULL)
		return F_CALL;
	init(o, k, p);
	configure(o, seed);
	or_trace_start();
	fm_engine_stats(&s0);
	r = k->setup(o);
	if (r == 0)
		r = reserve_arena(o);
	if (r == 0)
		r = map_all(o);
	for (unsigned i = 0; r == 0 && i < o->nwriters + o->nmutators; i++) {
		o->w[i] =
		    worker_new(o, (int)(i < o->nwriters ? i : i - o->nwriters),
		        i < o->nwriters ? R_WRITER : R_MUTATOR);
		r = o->w[i] == NULL ? -ENOMEM : 0;
		o->nw += r == 0;
	}
	if (r == 0 && (checker = worker_new(o, 0, R_CHECKER)) == NULL)
		r = -ENOMEM;
	if (r == 0 && or_trace_on()) /* (the engine reads o->w) */
		or_trace_oracle(o);
	if (r < 0)
		or_fail(o, F_CALL, "set-up of %s: %s", k->name, strerror(-r));
	or_handlers_install(o);
	check_unowned(o);
	if (r == 0 && (r = start_threads(o, &nstarted)) < 0)
		or_fail(o, F_CALL, "pthread_create: %s", strerror(-r));
	watch(o);
	if (join_all(o, nstarted) < 0) {
		fail_msg(o, msg, len);
		if (or_trace_on())
			or_trace_dump(
			    (unsigned)atoi(getenv("FOMAP_ORACLE_TRACE")));
		count(o, c, &s0);
		if (!p->quiet)
			report(o, c);
		return F_HANG; /* threads are stuck: leave everything */
	}
	if (!atomic_load(&o->fail)) {
		or_cur = checker;
		or_settle(o, checker);
		if (!atomic_load(&o->fail))
			final_check(o, checker);
		or_cur = NULL;
	}
	count(o, c, &s0);
	if (!p->quiet)
		report(o, c);
	check_unowned(o);
	fail = atomic_load(&o->fail);
	if (fail != F_NONE)
		fail_msg(o, msg, len);
	if (fail != F_NONE && or_trace_on())
		or_trace_dump((unsigned)atoi(getenv("FOMAP_ORACLE_TRACE")));
	or_trace_oracle(NULL);
	teardown(o);
	free(checker);
	free(o);
	return fail;
}
