/*
 * oracle_mutator.c: the mutators of the oracle (oracle.h): operations
 * that change what is mapped, raced against the writers. Each is
 * bracketed in the domains it may affect, and the state it leaves is set
 * inside the bracket:
 *
 *   mop_*          one operation of the object or of a mapping
 *   mutate         one operation, chosen by the weights, on a range
 *   or_hook        the bound on the write hook's calls
 *   or_settle      the end of a run: every mapping whole and writable
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <fomap/fomap.h>

#include "oracle.h"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

#define RW (PROT_READ | PROT_WRITE)

enum {
	M_KEEP,
	M_DISCARD,
	M_PROTECT,
	M_UNPROTECT,
	M_CLEAN,
	M_MSYNC,
	M_DONTNEED,
	M_WILLNEED,
	M_MPROTECT,
	M_REMAP,
	M_REPLACE,
	M_N
};

static const char *const mnames[M_N] = {"fm_object_unmap KEEP", "discard",
    "protect", "unprotect", "fm_object_clean", "fm_msync", "MADV_DONTNEED",
    "MADV_WILLNEED", "fm_mprotect", "fm_munmap+fm_mmap", "MAP_FIXED replace"};
static const char *const mkeys[M_N] = {"keep", "discard", "protect",
    "unprotect", "clean", "msync", "dontneed", "willneed", "mprotect", "remap",
    "replace"};

static void
call_ok(struct or_worker *m, int r, const char *what)
{
	if (r < 0)
		or_fail(m->o, F_CALL, "mutator %d: %s: %s", m->id, what,
		    strerror(-r));
}

static int
sys(int r)
{
	return r < 0 ? -errno : 0;
}

/* The epoch domains of the object pages a mapping's pages [i, i+n) show. */
static void
epoch_of_slot(struct oracle *o, unsigned i, unsigned n, int begin)
{
	for (unsigned k = i; k < i + n; k++) {
		struct or_dom *d = &o->epoch[or_spage(o, k)];

		begin ? or_dom_begin(d) : or_dom_end(d);
	}
}

/* What a change of a mapping's pages may affect (slot_change). */
#define SC_SLOT 0x1 /* the mapping itself (sdom) */
#define SC_EPOCH 0x2 /* a shared mapping: the pages' epochs */
#define SC_PRESET 0x4 /* a private mapping: its copies of the pages */

static void
slot_change(struct oracle *o, int s, unsigned i, unsigned n, int begin,
    int what)
{
	if (begin && (what & SC_SLOT))
		or_doms_begin(o->sdom[s], i, n);
	if (o->shared[s] && (what & SC_EPOCH))
		epoch_of_slot(o, i, n, begin);
	if (!o->shared[s] && (what & SC_PRESET))
		(begin ? or_doms_begin : or_doms_end)(o->preset[s], i, n);
	if (!begin && (what & SC_SLOT))
		or_doms_end(o->sdom[s], i, n);
}

static char *
slot_addr(struct oracle *o, int s, unsigned i)
{
	return o->slot[s] + (size_t)i * OR_PG;
}

void *
or_map_slot(struct oracle *o, int s, unsigned i, unsigned n, int fixed)
{
	return fm_mmap(slot_addr(o, s, i), (size_t)n * OR_PG, RW,
	    fixed | (o->shared[s] ? MAP_SHARED : MAP_PRIVATE), o->fd[s],
	    o->off[s] + (off_t)i * OR_PG);
}

static void
mop_keep(struct or_worker *m, unsigned pg, unsigned n)
{
	struct oracle *o = m->o;

	or_doms_begin(o->epoch, pg, n);
	call_ok(m, o->k->keep(o, pg, n), mnames[M_KEEP]);
	or_doms_end(o->epoch, pg, n);
}

static void
mop_discard(struct or_worker *m, unsigned pg, unsigned n)
{
	struct oracle *o = m->o;
	int resets = (o->k->flags & OK_RESETS) && o->p.sabotage != SAB_RESET;

	if (o->k->flags & OK_WHOLE) {
		pg = 0;
		n = o->npages;
		or_trace("  (the whole object)", 100 + m->id, pg, n, 0, 0);
	}
	or_doms_begin(o->epoch, pg, n);
	if (resets)
		or_doms_begin(o->reset, pg, n);
	if (o->k->flags & OK_REVOKES)
		or_doms_begin(o->revoke, pg, n);
	call_ok(m, o->k->discard(o, pg, n), mnames[M_DISCARD]);
	if (o->k->flags & OK_REVOKES)
		or_doms_end(o->revoke, pg, n);
	if (resets)
		or_doms_end(o->reset, pg, n);
	or_doms_end(o->epoch, pg, n);
}

/*
 * Protection changes are serialized: the state they leave must be the
 * last one made. The engine decides a write anew after any protection
 * change of its page (fm__object_gen; pages 64 apart share a count);
 * every page's epoch moves here, which covers that.
 */
static void
mop_protect(struct or_worker *m, unsigned pg, unsigned n, int how)
{
	struct oracle *o = m->o;

	pthread_mutex_lock(&o->protlock);
	atomic_fetch_add(&o->protops, 1);
	or_doms_begin(o->epoch, 0, o->npages);
	or_doms_begin(o->prot, pg, n);
	if (o->p.sabotage != SAB_PROT)
		or_doms_state(o->prot, pg, n, how == P_REFUSE ? DS_RO : 0);
	call_ok(m, o->k->protect(o, pg, n, how), mnames[M_PROTECT]);
	or_doms_end(o->prot, pg, n);
	or_doms_end(o->epoch, 0, o->npages);
	pthread_mutex_unlock(&o->protlock);
}

static void
mop_clean(struct or_worker *m, unsigned pg, unsigned n)
{
	struct oracle *o = m->o;
	int tell = o->p.sabotage != SAB_EPOCH;

	if (tell)
		or_doms_begin(o->epoch, pg, n);
	call_ok(m, o->k->clean(o, pg, n), mnames[M_CLEAN]);
	if (tell)
		or_doms_end(o->epoch, pg, n);
}

static void
mop_msync(struct or_worker *m, int s, unsigned i, unsigned n)
{
	struct oracle *o = m->o;
	int tell = o->shared[s] && o->p.sabotage != SAB_EPOCH;

	if (tell)
		epoch_of_slot(o, i, n, 1);
	call_ok(m,
	    sys(fm_msync(slot_addr(o, s, i), (size_t)n * OR_PG,
	        or_rnd(&m->rng, 2) ? MS_SYNC : MS_ASYNC)),
	    mnames[M_MSYNC]);
	if (tell)
		epoch_of_slot(o, i, n, 0);
}

static void
mop_madvise(struct or_worker *m, int s, unsigned i, unsigned n, int advice)
{
	struct oracle *o = m->o;
	int tell = advice == MADV_DONTNEED &&
	    (o->shared[s] || o->p.sabotage != SAB_PRIVATE);

	if (tell)
		slot_change(o, s, i, n, 1, SC_EPOCH | SC_PRESET);
	call_ok(m,
	    sys(fm_madvise(slot_addr(o, s, i), (size_t)n * OR_PG, advice)),
	    advice == MADV_DONTNEED ? mnames[M_DONTNEED] : mnames[M_WILLNEED]);
	if (tell)
		slot_change(o, s, i, n, 0, SC_EPOCH | SC_PRESET);
}

static void
mop_mprotect(struct or_worker *m, int s, unsigned i, unsigned n, int ro)
{
	struct oracle *o = m->o;

	slot_change(o, s, i, n, 1, SC_SLOT | SC_EPOCH);
	or_doms_state(o->sdom[s], i, n, ro ? DS_RO : 0);
	call_ok(m,
	    sys(fm_mprotect(slot_addr(o, s, i), (size_t)n * OR_PG,
	        ro ? PROT_READ : RW)),
	    mnames[M_MPROTECT]);
	slot_change(o, s, i, n, 0, SC_SLOT | SC_EPOCH);
}

/* Map pages [i, i+n) of mapping s anew, after unmapping them, or over. */
static void
mop_remap(struct or_worker *m, int s, unsigned i, unsigned n, int replace)
{
	struct oracle *o = m->o;
	void *p;

	slot_change(o, s, i, n, 1, SC_SLOT | SC_EPOCH | SC_PRESET);
	if (!replace) {
		or_doms_state(o->sdom[s], i, n, DS_UNMAPPED);
		call_ok(m,
		    sys(fm_munmap(slot_addr(o, s, i), (size_t)n * OR_PG)),
		    "fm_munmap");
		if (or_rnd(&m->rng, 4) == 0)
			usleep(or_rnd(&m->rng, 100));
	}
	p = or_map_slot(o, s, i, n, replace ? MAP_FIXED : MAP_FIXED_NOREPLACE);
	if (p != slot_addr(o, s, i))
		or_fail(o, F_CALL,
		    "mutator %d: fm_mmap of mapping %d page %u: %s", m->id, s,
		    i, p == MAP_FAILED ? strerror(errno) : "moved");
	or_doms_state(o->sdom[s], i, n, 0);
	slot_change(o, s, i, n, 0, SC_SLOT | SC_EPOCH | SC_PRESET);
}

static void
pick_range(struct or_worker *m, unsigned *pg, unsigned *n)
{
	unsigned np = m->o->npages, max;

	*pg = or_rnd(&m->rng, np);
	max = np - *pg;
	if (or_rnd(&m->rng, 4) != 0 && max > 4)
		max = 4;
	*n = 1 + or_rnd(&m->rng, max);
}

static void
mutate(struct or_worker *m, unsigned op)
{
	struct oracle *o = m->o;
	int s = (int)or_rnd(&m->rng, o->nslots), how;
	unsigned pg, n;

	pick_range(m, &pg, &n);
	or_doing(m, mnames[op], s, pg);
	or_trace(mnames[op], 100 + m->id, pg, n, (unsigned long)s, 0);
	switch (op) {
	case M_KEEP:
		mop_keep(m, pg, n);
		break;
	case M_DISCARD:
		mop_discard(m, pg, n);
		break;
	case M_PROTECT:
		how = (o->k->flags & OK_RECORD) && or_rnd(&m->rng, 3) == 0
		    ? P_RECORD
		    : P_REFUSE;
		mop_protect(m, pg, n, how);
		break;
	case M_UNPROTECT:
		mop_protect(m, pg, n, P_RW);
		break;
	case M_CLEAN:
		mop_clean(m, pg, n);
		break;
	default:
		pthread_mutex_lock(&o->slotlock[s]);
		if (op == M_MSYNC)
			mop_msync(m, s, pg, n);
		else if (op == M_DONTNEED || op == M_WILLNEED)
			mop_madvise(m, s, pg, n,
			    op == M_DONTNEED ? MADV_DONTNEED : MADV_WILLNEED);
		else if (op == M_MPROTECT)
			mop_mprotect(m, s, pg, n, or_rnd(&m->rng, 5) < 2);
		else
			mop_remap(m, s, pg, n, op == M_REPLACE);
		pthread_mutex_unlock(&o->slotlock[s]);
	}
	or_trace("  done", 100 + m->id, pg, n, (unsigned long)s, 0);
	or_done(m);
}

void *
or_mutator_main(void *arg)
{
	struct or_worker *m = arg;
	struct oracle *o = m->o;

	or_cur = m;
	while (!atomic_load(&o->stop)) {
		unsigned op = or_pick(&m->rng, o->mweight, M_N);
		unsigned long a0 = atomic_load(&o->accesses);

		mutate(m, op);
		if (atomic_load(&o->accesses) != a0)
			atomic_fetch_add(&o->races, 1);
		atomic_fetch_add(&o->mops, 1);
		if (o->pace_us > 0)
			usleep(or_rnd(&m->rng, o->pace_us));
	}
	or_cur = NULL;
	return NULL;
}

/* The weights of the mutations: what the seed says, and what the kind has. */
void
or_mutator_weights(struct oracle *o, uint64_t *r)
{
	const struct or_kind *k = o->k;

	for (int i = 0; i < M_N; i++)
		o->mweight[i] = 1 + or_rnd(r, 4);
	if (k->keep == NULL)
		o->mweight[M_KEEP] = 0;
	if (k->discard == NULL)
		o->mweight[M_DISCARD] = 0;
	if (k->protect == NULL)
		o->mweight[M_PROTECT] = o->mweight[M_UNPROTECT] = 0;
	else
		o->mweight[M_UNPROTECT] += o->mweight[M_PROTECT];
	if (k->clean == NULL)
		o->mweight[M_CLEAN] = 0;
	for (int i = 0; i < M_N; i++)
		if (or_skipped(o, mkeys[i]))
			o->mweight[i] = 0;
}

/*
 * Whether a protection change began while a write to page pg was in
 * flight: the engine may then decide that write afresh, and ask the hook
 * again (the change intervened in the page's clean->dirty transition).
 */
static int
protect_during_write(struct oracle *o, unsigned pg)
{
	unsigned long ops = atomic_load(&o->protops);

	for (unsigned i = 0; i < o->nwriters; i++) {
		unsigned long at = atomic_load(&o->inflight[pg][i]);

		if (at != 0 && ops > at - 1)
			return 1;
	}
	return 0;
}

/*
 * The write hook's bound (kinds with one shared mapping): at most one
 * call that allows a write per clean->dirty transition of a page, unless
 * a protection change intervened. So after a call that allowed a write,
 * the next call for the page must come after an epoch event began (clean,
 * protect, removal, a new mapping: the page may be write-protected again),
 * or while a write is in flight that a protection change overlapped.
 * => runs in an engine thread; 0 or -EACCES
 */
int
or_hook(struct oracle *o, unsigned pg, int refuse)
{
	struct or_dom *d = &o->epoch[pg];
	unsigned long e = atomic_load(&d->ended), b = atomic_load(&d->begun);
	unsigned long prev;

	atomic_fetch_add(&o->hook_calls, 1);
	or_trace(refuse ? "hook refuses" : "hook allows", -1, pg, 1, e, b);
	if (refuse) {
		atomic_fetch_add(&o->hook_refused, 1);
		return -EACCES;
	}
	prev = atomic_exchange(&o->hook_last[pg], e + 1);
	if (prev != 0 && b == prev - 1 && !protect_during_write(o, pg)) {
		or_trace_focus((int)pg);
		or_fail(o, F_HOOK,
		    "the write hook was called again for page %u, with no "
		    "clean, protect, removal or new mapping since its last "
		    "call allowed a write",
		    pg);
	}
	return 0;
}

/*
 * The end: every mapping writable (each is whole once the mutators have
 * stopped; settling leans on no operation under test but fm_mprotect),
 * the object writable, and a persistent object's data dropped to its
 * backing store, so that the final check reads it back from there.
 */
void
or_settle(struct oracle *o, struct or_worker *c)
{
	for (unsigned s = 0; s < o->nslots; s++)
		mop_mprotect(c, (int)s, 0, o->npages, 0);
	if (o->k->protect != NULL)
		mop_protect(c, 0, o->npages, P_RW);
	if (o->k->discard != NULL && !(o->k->flags & OK_RESETS))
		mop_discard(c, 0, o->npages);
}
