/*
 * oracle_model.c: the oracle's model (oracle.h): written values and what
 * a word holds before anyone wrote it, the domains and what an access
 * learns from them, the first failure, and the trace.
 */
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

#include "../test.h"
#include "oracle.h"

__thread struct or_worker *or_cur;

/*
 * FOMAP_ORACLE_TRACE: a ring of the last events (mutations, hook calls,
 * signals), printed after a failure, to see what led to it (to the file
 * FOMAP_ORACLE_TRACE_FILE if set: the test's output keeps only its end).
 */
#define TRACE_LEN 65536

struct trace_ev {
	long t;
	const char *what;
	int who;
	unsigned pg, n;
	unsigned long x, y;
};

static struct {
	pthread_mutex_t lock;
	int on;
	atomic_int focus; /* the page of the failure, or -1: every event */
	unsigned pos;
	struct trace_ev ev[TRACE_LEN];
} trace = {.lock = PTHREAD_MUTEX_INITIALIZER};

void
or_trace(const char *what, int who, unsigned pg, unsigned n, unsigned long x,
    unsigned long y)
{
	if (!trace.on)
		return;
	pthread_mutex_lock(&trace.lock);
	trace.ev[trace.pos++ % TRACE_LEN] =
	    (struct trace_ev){or_now_ns(), what, who, pg, n, x, y};
	pthread_mutex_unlock(&trace.lock);
}

/* The run traced, for the engine's events (fm_test_trace). */
static _Atomic(const struct oracle *) trace_o;
static atomic_int trace_in; /* engine threads in trace_engine */

static fm_test_trace_fn trace_engine;

/* o: trace its run; NULL: no more, and none is being traced on return. */
void
or_trace_oracle(const struct oracle *o)
{
	atomic_store(&trace_o, o);
	atomic_store(&fm_test_trace, o != NULL ? trace_engine : NULL);
	while (o == NULL && atomic_load(&trace_in) > 0)
		sched_yield();
}

static void
trace_run(const struct oracle *o, const char *what, pid_t tid, uintptr_t va,
    unsigned long x)
{
	int who = -1; /* which writer, for a fault; else the thread */

	for (unsigned i = 0; i < o->nwriters; i++)
		if (o->w[i] != NULL && atomic_load(&o->w[i]->tid) == tid)
			who = -100 - (int)i;
	for (unsigned s = 0; s < o->nslots; s++) {
		uintptr_t base = (uintptr_t)o->slot[s];

		if (va >= base && va < base + (uintptr_t)o->npages * OR_PG) {
			or_trace(what, who,
			    or_spage(o, (unsigned)((va - base) / OR_PG)), 1,
			    s * 1000000UL + (unsigned long)tid % 1000000, x);
			return;
		}
	}
}

/*
 * The engine's decisions on the same timeline: who is -1, x the thread,
 * y what the engine says of it (a sequence number, pages, an error).
 */
static void
trace_engine(const char *what, pid_t tid, uintptr_t va, unsigned long x)
{
	atomic_fetch_add(&trace_in, 1);
	const struct oracle *o = atomic_load(&trace_o);

	if (o != NULL) /* (set only while a traced run's mappings are up) */
		trace_run(o, what, tid, va, x);
	atomic_fetch_sub(&trace_in, 1);
}

static int
trace_about(const struct trace_ev *e, int focus)
{
	unsigned f = (unsigned)focus;

	return focus < 0 || (f >= e->pg && f < e->pg + e->n);
}

/* Where the dump goes: FOMAP_ORACLE_TRACE_FILE, or the test's output. */
static FILE *
trace_out(void)
{
	static FILE *f;
	const char *p = getenv("FOMAP_ORACLE_TRACE_FILE");

	if (f == NULL && p != NULL)
		f = fopen(p, "a");
	return f != NULL ? f : stdout;
}

/* => the trace lock held (engine threads may still add hook calls) */
static void
trace_dump_locked(unsigned last)
{
	unsigned end = trace.pos, i = end, k = 0;
	int focus = atomic_load(&trace.focus);
	long t0;

	while (i > 0 && end - i < TRACE_LEN && k < last)
		k += trace_about(&trace.ev[--i % TRACE_LEN], focus);
	t0 = trace.ev[i % TRACE_LEN].t;
	for (; i < end; i++) {
		const struct trace_ev *e = &trace.ev[i % TRACE_LEN];

		if (!trace_about(e, focus))
			continue;
		fprintf(trace_out(),
		    "# trace %+9.1f us  %-3d %-28s page %u+%u  %lu %lu\n",
		    (e->t - t0) / 1e3, e->who, e->what, e->pg, e->n, e->x,
		    e->y);
	}
}

/* Print the last events about the failure's page (or all). */
void
or_trace_dump(unsigned last)
{
	pthread_mutex_lock(&trace.lock);
	trace_dump_locked(last);
	fflush(trace_out());
	pthread_mutex_unlock(&trace.lock);
}

/* Trace this run if FOMAP_ORACLE_TRACE says so. */
void
or_trace_start(void)
{
	trace.on = getenv("FOMAP_ORACLE_TRACE") != NULL;
	trace.pos = 0;
	atomic_store(&trace.focus, -1);
}

/* Print, after a failure, the events about page pg. */
void
or_trace_focus(int pg)
{
	atomic_store(&trace.focus, pg);
}

int
or_trace_on(void)
{
	return trace.on;
}

/* ------------------------------------------------------------------------
 * Randomness, time, values.
 */

uint64_t
or_mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

unsigned
or_rnd(uint64_t *s, unsigned n)
{
	*s = or_mix(*s);
	return n == 0 ? 0 : (unsigned)(*s % n);
}

long
or_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

static uint64_t
word_id(unsigned pg, unsigned w)
{
	return (uint64_t)pg * OR_WORDS + w;
}

/* A written value: tag, the writer's sequence number, a checksum. */
uint64_t
or_val(const struct oracle *o, uint32_t seq, unsigned pg, unsigned w)
{
	uint64_t sum = or_mix(o->salt ^ (word_id(pg, w) << 32) ^ seq);

	return OR_TAG | (uint64_t)(seq & 0x7fffffff) << 32 | (uint32_t)sum;
}

uint32_t
or_val_seq(uint64_t v)
{
	return (uint32_t)(v >> 32) & 0x7fffffff;
}

int
or_val_ok(const struct oracle *o, uint64_t v, unsigned pg, unsigned w)
{
	return (v & OR_TAG) && or_val(o, or_val_seq(v), pg, w) == v;
}

/* What a word holds before anyone wrote it, and after a reset. */
uint64_t
or_base(const struct oracle *o, unsigned pg, unsigned w)
{
	if (!(o->k->flags & OK_PATTERN))
		return 0;
	return or_mix(o->salt + word_id(pg, w)) & ~OR_TAG;
}

void
or_fill_base(const struct oracle *o, unsigned pg, uint64_t *page)
{
	for (unsigned w = 0; w < OR_WORDS; w++)
		page[w] = or_base(o, pg, w);
}

const char *
or_val_str(const struct oracle *o, uint64_t v, unsigned pg, unsigned w,
    char *buf, size_t len)
{
	if (or_val_ok(o, v, pg, w))
		snprintf(buf, len, "#%u", or_val_seq(v));
	else if (v == or_base(o, pg, w))
		snprintf(buf, len, "base");
	else
		snprintf(buf, len, "garbage %#llx", (unsigned long long)v);
	return buf;
}

void
or_fail(struct oracle *o, int cls, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&o->faillock);
	if (atomic_load(&o->fail) == F_NONE) {
		va_start(ap, fmt);
		vsnprintf(o->failmsg, sizeof o->failmsg, fmt, ap);
		va_end(ap);
		atomic_store(&o->fail, cls);
	}
	pthread_mutex_unlock(&o->faillock);
	atomic_store(&o->stop, 1);
}

/* ------------------------------------------------------------------------
 * Domains (oracle.h).
 */

void
or_dom_begin(struct or_dom *d)
{
	atomic_fetch_add(&d->begun, 1);
}

void
or_dom_end(struct or_dom *d)
{
	atomic_fetch_add(&d->ended, 1);
}

/* Ended first: if begun then equals it, nothing was in flight between. */
void
or_dom_snap(struct or_dom *d, struct or_win *s)
{
	s->e0 = atomic_load(&d->ended);
	s->s0 = atomic_load(&d->state);
	s->b0 = atomic_load(&d->begun);
}

void
or_dom_after(struct or_dom *d, struct or_win *s)
{
	s->s1 = atomic_load(&d->state);
	s->b1 = atomic_load(&d->begun);
}

/* No operation of the domain overlapped the access. */
int
or_win_quiet(const struct or_win *s)
{
	return s->b0 == s->e0 && s->b1 == s->b0;
}

/* The state may have had flag during the access (any, when in flux). */
int
or_win_may(const struct or_win *s, int flag)
{
	return !or_win_quiet(s) || (s->s0 & flag) || (s->s1 & flag);
}

/* The state had flag all through the access. */
int
or_win_must(const struct or_win *s, int flag)
{
	return or_win_quiet(s) && (s->s0 & flag);
}

void
or_doms_begin(struct or_dom *d, unsigned pg, unsigned n)
{
	for (unsigned i = pg; i < pg + n; i++)
		or_dom_begin(&d[i]);
}

void
or_doms_end(struct or_dom *d, unsigned pg, unsigned n)
{
	for (unsigned i = pg; i < pg + n; i++)
		or_dom_end(&d[i]);
}

void
or_doms_state(struct or_dom *d, unsigned pg, unsigned n, int state)
{
	for (unsigned i = pg; i < pg + n; i++)
		atomic_store(&d[i].state, state);
}

/* Mapping page i shows object page or_spage(i), and the reverse. */
unsigned
or_spage(const struct oracle *o, unsigned i)
{
	return o->k->flags & OK_REVERSED ? o->npages - 1 - i : i;
}

/* An index drawn with the weights weight[0..n). */
unsigned
or_pick(uint64_t *rng, const unsigned *weight, unsigned n)
{
	unsigned sum = 0, x;

	for (unsigned i = 0; i < n; i++)
		sum += weight[i];
	x = or_rnd(rng, sum);
	for (unsigned i = 0; i < n; i++) {
		if (x < weight[i])
			return i;
		x -= weight[i];
	}
	return 0;
}

/* A named key in the comma-separated list s. */
int
or_listed(const char *s, const char *key)
{
	size_t n = strlen(key);

	for (const char *p = s; p != NULL && (p = strstr(p, key)) != NULL;
	     p += n)
		if ((p == s || p[-1] == ',') && (p[n] == '\0' || p[n] == ','))
			return 1;
	return 0;
}

/*
 * Whether the run leaves out the operation named key: the parameters'
 * list or FOMAP_ORACLE_SKIP names it (to tell what a failure needs).
 */
int
or_skipped(const struct oracle *o, const char *key)
{
	return or_listed(o->p.skip, key) ||
	    or_listed(getenv("FOMAP_ORACLE_SKIP"), key);
}

/* What a worker does now, for the watchdog. */
void
or_doing(struct or_worker *w, const char *what, int slot, unsigned pg)
{
	atomic_store(&w->what, what);
	atomic_store(&w->wslot, slot);
	atomic_store(&w->wpg, pg);
	atomic_store(&w->since, or_now_ns());
}

void
or_done(struct or_worker *w)
{
	atomic_store(&w->since, 0);
}
