/*
 * oracle_writer.c: the writers of the oracle (oracle.h). Each access is
 * made between two readings of the domains it depends on, with the
 * signals it may take caught, and checked against the model at once:
 *
 *   touch, pipe_call   the access, by the CPU or by the kernel for a
 *                      system call
 *   check_*            what the model allows it to see, or to get
 *   writer_step        one access of a writer, chosen by the weights
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "oracle.h"

/*
 * The words are shared on purpose: writers load others' words while their
 * owners store them, and the kernel copies into them for read(2). Under
 * TSan an access is a plain volatile one that TSan is told to ignore: an
 * atomic would be made inside TSan's runtime, where the fault that
 * refuses it is fatal. Elsewhere it is a relaxed atomic, and fences keep
 * it between the readings of the domains. TSan runs handlers with every
 * signal blocked, so a jump out of one must restore the mask (JMP_MASK);
 * elsewhere the handlers block nothing (SA_NODEFER, empty sa_mask) and
 * the jump need not make a system call.
 */
#ifdef __SANITIZE_THREAD__
void AnnotateIgnoreReadsBegin(const char *file, int line);
void AnnotateIgnoreReadsEnd(const char *file, int line);
#define IGNORE_BEGIN() AnnotateIgnoreReadsBegin(__FILE__, __LINE__)
#define IGNORE_END() AnnotateIgnoreReadsEnd(__FILE__, __LINE__)
#define WORD_LOAD(p) (*(p))
#define WORD_STORE(p, v) (*(p) = (v))
#define FENCE() ((void)0)
#define JMP_MASK 1
#else
#define IGNORE_BEGIN() ((void)0)
#define IGNORE_END() ((void)0)
#define WORD_LOAD(p) __atomic_load_n(p, __ATOMIC_RELAXED)
#define WORD_STORE(p, v) __atomic_store_n(p, v, __ATOMIC_RELAXED)
#define FENCE() atomic_thread_fence(memory_order_seq_cst)
#define JMP_MASK 0
#endif

/* A domain nothing ever changes, for what does not apply to an access. */
static struct or_dom quiet_dom;

/* ------------------------------------------------------------------------
 * Accesses. Each is made between two readings of its domains, with the
 * signals it may take caught: a fault ends it (siglongjmp); a signal
 * during a system call is noted and the call returns.
 */

enum { D_RESET, D_PROT, D_REVOKE, D_SLOT, ND };

struct acc {
	int slot; /* -1: the driver's view (o->kva) */
	int shared;
	unsigned pg, spg, w; /* object page, mapping page, word */
	volatile uint64_t *p;
	struct or_dom *d[ND];
	struct or_win win[ND];
	int kother; /* a system call on its page refused just before or
	             * overlapped it (oracle.h: kseq) */
};

static void
acc_at(struct oracle *o, struct acc *a, int slot, unsigned pg, unsigned w)
{
	*a = (struct acc){.slot = slot, .shared = 1, .pg = pg, .w = w};
	for (int i = 0; i < ND; i++)
		a->d[i] = &quiet_dom;
	a->d[D_RESET] = &o->reset[pg];
	if (slot < 0) {
		a->p = o->kva + pg * OR_WORDS + w;
		return;
	}
	a->shared = o->shared[slot];
	a->spg = or_spage(o, pg);
	a->p = (volatile uint64_t *)(o->slot[slot] + a->spg * OR_PG) + w;
	a->d[D_SLOT] = &o->sdom[slot][a->spg];
	if (a->shared) {
		a->d[D_PROT] = &o->prot[pg];
		a->d[D_REVOKE] = &o->revoke[pg];
	} else {
		a->d[D_RESET] = &o->preset[slot][a->spg];
	}
}

static void
acc_before(struct acc *a)
{
	for (int i = 0; i < ND; i++)
		or_dom_snap(a->d[i], &a->win[i]);
	FENCE();
}

static void
acc_after(struct acc *a)
{
	FENCE();
	for (int i = 0; i < ND; i++)
		or_dom_after(a->d[i], &a->win[i]);
}

static void
arm(struct or_worker *w, int how)
{
	atomic_signal_fence(memory_order_seq_cst);
	w->armed = how;
	atomic_signal_fence(memory_order_seq_cst);
}

/* Signals sent to a thread that is no worker (after a run, say). */
static atomic_ulong unowned;
static _Atomic(void *) unowned_addr;

static void
fault_handler(int sig, siginfo_t *si, void *uc)
{
	struct or_worker *w = or_cur;
	uintptr_t pg = (uintptr_t)si->si_addr & ~(uintptr_t)(OR_PG - 1);

	if (w != NULL && w->armed && pg == w->page) {
		if (w->armed == ARM_JUMP) {
			w->armed = 0;
			w->caught = sig;
			siglongjmp(w->jb, 1);
		}
		w->callsig = sig;
		return;
	}
	if (si->si_code <= 0) {
		/* Sent (by the engine), not raised by an access of ours. */
		if (w == NULL) {
			atomic_store(&unowned_addr, si->si_addr);
			atomic_fetch_add(&unowned, 1);
			return;
		}
		w->stray_sig = sig;
		w->stray_code = si->si_code;
		w->stray_addr = si->si_addr;
		w->stray++;
		return;
	}
	/* A real fault outside an access: say what it was, and die of it. */
	char msg[160];
	int n = snprintf(msg, sizeof msg,
	    "oracle: signal %d (code %d) at %p outside any access (%s %d)\n",
	    sig, si->si_code, si->si_addr,
	    w == NULL                 ? "not a worker"
	        : w->role == R_WRITER ? "writer"
	                              : "mutator or checker",
	    w != NULL ? w->id : -1);
	if (write(2, msg, (size_t)n) < 0)
		n = 0;
	signal(sig, SIG_DFL);
}

static void
storm_handler(int sig)
{
	if (or_cur != NULL)
		or_cur->nsig++;
}

/* Load or store *p. => 0, or the signal that refused it */
static int
touch(struct or_worker *w, volatile uint64_t *p, int store, uint64_t *v)
{
	w->page = (uintptr_t)p & ~(uintptr_t)(OR_PG - 1);
	w->caught = 0;
	if (sigsetjmp(w->jb, JMP_MASK) == 0) {
		/* TSan zeroes the ignores in a handler: no end after a jump */
		IGNORE_BEGIN();
		arm(w, ARM_JUMP);
		if (store)
			WORD_STORE(p, *v);
		else
			*v = WORD_LOAD(p);
		arm(w, 0);
		IGNORE_END();
	}
	return w->caught;
}

/*
 * The kernel touches *p for a system call on the writer's pipe: reads it
 * (out: write(2) from it) or writes v into it (in: read(2) into it).
 * => 8, or -errno; *v the word read out; w->callsig a signal taken
 */
static ssize_t
pipe_call(struct or_worker *w, volatile uint64_t *p, int in, uint64_t *v)
{
	uint64_t junk;
	ssize_t r;
	int e;

	if (in && write(w->pipe[1], v, 8) != 8)
		return -EPIPE;
	w->page = (uintptr_t)p & ~(uintptr_t)(OR_PG - 1);
	w->callsig = 0;
	w->callns = or_now_ns();
	IGNORE_BEGIN();
	arm(w, ARM_CALL);
	r = in ? read(w->pipe[0], (void *)p, 8)
	       : write(w->pipe[1], (const void *)p, 8);
	e = errno;
	arm(w, 0);
	IGNORE_END();
	w->callns = or_now_ns() - w->callns;
	if (r == 8 && !in && read(w->pipe[0], v, 8) != 8)
		return -EPIPE;
	while (r != 8 && in && read(w->pipe[0], &junk, sizeof junk) > 0)
		; /* the pipe keeps what read(2) did not take */
	w->n.pipeops++;
	return r < 0 ? -e : r;
}

void
or_handlers_install(struct oracle *o)
{
	struct sigaction sa = {.sa_sigaction = fault_handler,
	    .sa_flags = SA_SIGINFO | SA_NODEFER};

	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, NULL);
	sigaction(SIGSEGV, &sa, NULL);
	sa = (struct sigaction){.sa_handler = storm_handler,
	    .sa_flags = SA_NODEFER | (o->restart ? SA_RESTART : 0)};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
}

/*
 * A signal sent to a thread that was no worker since the last call (the
 * handlers stay: one that comes late must not kill the test unsaid).
 * => the count, and where in *addr
 */
unsigned long
or_unowned_signals(void **addr)
{
	*addr = atomic_load(&unowned_addr);
	return atomic_exchange(&unowned, 0);
}

/* ------------------------------------------------------------------------
 * Checks of the writers' accesses.
 */

static const char *
acc_where(const struct acc *a, char *buf, size_t len)
{
	if (a->slot < 0)
		snprintf(buf, len, "word %u of page %u through the driver",
		    a->w, a->pg);
	else
		snprintf(buf, len,
		    "word %u of page %u through %s mapping %d (its page %u)",
		    a->w, a->pg, a->shared ? "shared" : "private", a->slot,
		    a->spg);
	return buf;
}

/* The domains as the access saw them, for a failure's message. */
static const char *
acc_doms(const struct acc *a, char *buf, size_t len)
{
	static const char *const names[ND] = {"reset", "prot", "revoke", "map"};
	size_t k = 0;

	buf[0] = '\0';
	for (int i = 0; i < ND && k < len; i++) {
		const struct or_win *s = &a->win[i];

		k += (size_t)snprintf(buf + k, len - k,
		    "%s%s ended %lu begun %lu..%lu state %d..%d", i ? "; " : "",
		    names[i], s->e0, s->b0, s->b1, s->s0, s->s1);
	}
	return buf;
}

static struct or_est *
est_of(struct or_worker *w, const struct acc *a)
{
	if (a->slot >= 0 && !a->shared)
		return &w->priv[a->slot][a->pg][a->w - OR_PRIV];
	return &w->own[a->pg][a->w];
}

/* Why a write through a had to be refused, or NULL. */
static const char *
must_refuse(const struct acc *a)
{
	if (or_win_must(&a->win[D_SLOT], DS_UNMAPPED))
		return "an unmapped page";
	if (or_win_must(&a->win[D_SLOT], DS_RO))
		return "a page mprotect'ed read-only";
	if (a->shared && or_win_must(&a->win[D_PROT], DS_RO))
		return "a page the driver made read-only";
	return NULL;
}

/* Whether sig (0: EFAULT) may end the access: some operation explains it. */
static int
refusal_ok(const struct acc *a, int sig, int store)
{
	int segv = or_win_may(&a->win[D_SLOT], DS_UNMAPPED) ||
	    (store && or_win_may(&a->win[D_SLOT], DS_RO));
	int bus = a->shared &&
	    (!or_win_quiet(&a->win[D_REVOKE]) ||
	        (store && or_win_may(&a->win[D_PROT], DS_RO)));

	return sig == SIGSEGV ? segv
	    : sig == SIGBUS   ? bus
	                      : segv || bus || a->kother;
}

static void
check_refusal(struct or_worker *w, const struct acc *a, int sig, int store,
    const char *how)
{
	char where[128], doms[256];

	or_trace(sig == SIGBUS ? "writer SIGBUS"
	        : sig          ? "writer SIGSEGV"
	                       : "writer EFAULT",
	    w->id, a->pg, 1, (unsigned long)a->slot, a->w);
	if (sig == SIGBUS)
		w->n.sigbus++;
	else if (sig == SIGSEGV)
		w->n.sigsegv++;
	else
		w->n.efault++;
	if (refusal_ok(a, sig, store))
		return;
	or_fail(w->o, sig == SIGBUS ? F_SIGBUS : F_SEGV,
	    "writer %d: %s %s got %s, and no operation explains it [%s]", w->id,
	    how, acc_where(a, where, sizeof where),
	    sig == SIGBUS        ? "SIGBUS"
	        : sig == SIGSEGV ? "SIGSEGV"
	                         : "EFAULT",
	    acc_doms(a, doms, sizeof doms));
}

/* A write of v through a went through. */
static void
check_written(struct or_worker *w, const struct acc *a, uint64_t v,
    const char *how)
{
	const char *why = must_refuse(a);
	char where[128], doms[256];

	if (why != NULL)
		or_fail(w->o, F_MISSING,
		    "writer %d: %s %s went through %s [%s]", w->id, how,
		    acc_where(a, where, sizeof where), why,
		    acc_doms(a, doms, sizeof doms));
	*est_of(w, a) =
	    (struct or_est){v, a->win[D_RESET].e0, a->win[D_RESET].b1};
}

/*
 * x was read from a word whose state is e (owner's model): it must be
 * e->val if no reset may have come between, the base if one certainly
 * came, either when one may have.
 */
static void
check_owned(struct or_worker *w, struct or_est *e, const struct acc *a,
    uint64_t x, const char *who, const char *how)
{
	struct oracle *o = w->o;
	const struct or_win *r = &a->win[D_RESET];
	uint64_t base = or_base(o, a->pg, a->w);
	int must_reset = r->e0 > e->b1, must_keep = r->b1 == e->e0;
	int ok = must_reset ? x == base
	    : must_keep     ? x == e->val
	                    : x == e->val || x == base;
	char where[128], got[48], want[48], doms[256];

	if (!ok) {
		const char *hint = "";

		or_trace_focus((int)a->pg);
		if (x == base)
			hint = " (a lost write: the word was reset)";
		else if (or_val_ok(o, x, a->pg, a->w) && (e->val & OR_TAG) &&
		    or_val_seq(x) < or_val_seq(e->val))
			hint = " (an older value: a lost write, or an old one "
			       "back)";
		else if (or_val_ok(o, x, a->pg, a->w))
			hint = " (a newer value: a refused write went through)";
		or_fail(o, F_VALUE,
		    "%s: %s %s holds %s, the model says %s%s%s (its reset "
		    "domain: ended %lu begun %lu when it was %s) [%s]",
		    who, how, acc_where(a, where, sizeof where),
		    or_val_str(o, x, a->pg, a->w, got, sizeof got),
		    must_reset
		        ? "base, reset since"
		        : or_val_str(o, e->val, a->pg, a->w, want, sizeof want),
		    must_reset || must_keep ? "" : " or base", hint, e->e0,
		    e->b1, e->val & OR_TAG ? "written or seen" : "base",
		    acc_doms(a, doms, sizeof doms));
	}
	*e = (struct or_est){x, r->e0, r->b1};
}

/* x was read from another writer's word: it never goes back. */
static void
check_peek(struct or_worker *w, const struct acc *a, uint64_t x)
{
	struct oracle *o = w->o;
	struct or_est *e = &w->seen[a->pg][a->w];
	const struct or_win *r = &a->win[D_RESET];
	char where[128], got[48], was[48];
	int back = 0;

	if (x == e->val)
		;
	else if (or_val_ok(o, x, a->pg, a->w))
		back = (e->val & OR_TAG) && or_val_seq(x) < or_val_seq(e->val);
	else if (x == or_base(o, a->pg, a->w))
		back = r->b1 == e->e0; /* no reset may have come between */
	else {
		w->n.torn++; /* a copy by the kernel, half done: look again */
		return;
	}
	if (back)
		or_trace_focus((int)a->pg);
	if (back)
		or_fail(o, F_VALUE,
		    "writer %d: %s went back from %s to %s (another writer's "
		    "word: a lost write, or an old one back)",
		    w->id, acc_where(a, where, sizeof where),
		    or_val_str(o, e->val, a->pg, a->w, was, sizeof was),
		    or_val_str(o, x, a->pg, a->w, got, sizeof got));
	*e = (struct or_est){x, r->e0, r->b1};
}

/* ------------------------------------------------------------------------
 * The writers.
 */

enum {
	W_STORE, /* its shared word, through a shared mapping */
	W_LOAD,
	W_PEEK, /* another's shared word */
	W_PSTORE, /* its private word, through a private mapping */
	W_PLOAD,
	W_PIPE_OUT, /* write(2) from its shared word to a pipe */
	W_PIPE_IN, /* read(2) from a pipe into its shared word */
	W_KSTORE, /* its shared word, through the driver's view */
	W_KLOAD,
	W_N
};

static const char *const wnames[W_N] = {"write", "read", "peek",
    "private write", "private read", "write(2) from", "read(2) into",
    "driver write", "driver read"};
/* Their names for FOMAP_ORACLE_SKIP. */
static const char *const wkeys[W_N] = {"store", "load", "peek", "pstore",
    "pload", "pipeout", "pipein", "kstore", "kload"};

/* One of w's words of a page: [first, first + OR_SHW). */
static unsigned
own_word(struct or_worker *w, unsigned first)
{
	unsigned nw = w->o->nwriters;

	return first + w->id +
	    nw * or_rnd(&w->rng, (OR_SHW - w->id + nw - 1) / nw);
}

static unsigned
other_word(struct or_worker *w)
{
	unsigned nw = w->o->nwriters, x;

	do
		x = or_rnd(&w->rng, OR_SHW);
	while (x % nw == (unsigned)w->id);
	return x;
}

/*
 * Make the access of a: a store of *v, or a load into *v, by the CPU or
 * by the kernel for a system call on the writer's pipe, between two
 * readings of its domains. => 8, or -errno when a system call did not
 * make it; *sig the signal that refused it, or that came during the call
 */
static ssize_t
access_word(struct or_worker *w, struct acc *a, int store, int via_pipe,
    uint64_t *v, int *sig)
{
	ssize_t r = 8;

	acc_before(a);
	or_trace(via_pipe
	        ? (store ? "writer read(2) into" : "writer write(2) from")
	        : store ? "writer store"
	                : "writer load",
	    w->id, a->pg, 1, (unsigned long)a->slot, a->w);
	if (via_pipe && a->slot >= 0) {
		atomic_ulong *sq = &w->o->kseq[a->slot][a->spg];
		atomic_int *in = &w->o->kin[a->slot][a->spg];
		atomic_long *kr = &w->o->krefused[a->slot][a->spg];
		unsigned long s0 = atomic_fetch_add(sq, 1);
		int i0 = atomic_fetch_add(in, 1);
		long t0 = or_now_ns(), k0 = atomic_load(kr);

		r = pipe_call(w, a->p, store, v);
		*sig = w->callsig;
		if (r == -EFAULT)
			atomic_store(kr, or_now_ns());
		int i1 = atomic_fetch_sub(in, 1) - 1;
		a->kother = i0 > 0 || i1 > 0 ||
		    atomic_fetch_add(sq, 1) != s0 + 1 ||
		    (k0 != 0 && t0 - k0 < OR_KWINDOW_NS);
	} else if (via_pipe) {
		r = pipe_call(w, a->p, store, v);
		*sig = w->callsig;
	} else {
		*sig = touch(w, a->p, store, v);
	}
	acc_after(a);
	return r;
}

/*
 * How the access ended: refused (a signal, or EFAULT from the system
 * call: may it be?), or made. => 1 if it was made: its value is to check
 */
static int
made(struct or_worker *w, const struct acc *a, ssize_t r, int sig, int store,
    int via_pipe, const char *how)
{
	if (r == -EFAULT || r == -EINTR) { /* the call did not touch it */
		if (sig != 0)
			check_refusal(w, a, sig, store, how);
		if (r == -EFAULT)
			check_refusal(w, a, 0, store, how);
		return 0;
	}
	if (r != 8) {
		or_fail(w->o, F_CALL, "writer %d: %s its word: %zd", w->id, how,
		    r);
		return 0;
	}
	if (sig != 0 && !via_pipe) {
		check_refusal(w, a, sig, store, how);
		return 0;
	}
	if (sig != 0)
		or_fail(w->o, F_SIGBUS,
		    "writer %d: %s word %u of page %u succeeded after %.3f "
		    "ms, and signal %d came with it",
		    w->id, how, a->w, a->pg, w->callns / 1e6, sig);
	return 1;
}

static void
do_store(struct or_worker *w, struct acc *a, int via_pipe, const char *how)
{
	uint64_t v = or_val(w->o, ++w->seq, a->pg, a->w), x = v;
	ssize_t r;
	int sig;

	if (a->shared && a->slot >= 0) /* for the write hook's bound */
		atomic_store(&w->o->inflight[a->pg][w->id],
		    atomic_load(&w->o->protops) + 1);
	r = access_word(w, a, 1, via_pipe, &x, &sig);
	atomic_store(&w->o->inflight[a->pg][w->id], 0);
	or_trace("  stored", w->id, a->pg, 1, (unsigned long)sig,
	    or_val_seq(v));
	if (made(w, a, r, sig, 1, via_pipe, how))
		check_written(w, a, v, how);
}

static void
do_load(struct or_worker *w, struct acc *a, int via_pipe, int peek,
    const char *how)
{
	uint64_t x = 0;
	char who[32];
	int sig;
	ssize_t r = access_word(w, a, 0, via_pipe, &x, &sig);

	if (!made(w, a, r, sig, 0, via_pipe, how))
		return;
	snprintf(who, sizeof who, "writer %d", w->id);
	if (peek)
		check_peek(w, a, x);
	else
		check_owned(w, est_of(w, a), a, x, who, how);
}

static int
private_slot(struct or_worker *w)
{
	return w->o->k->nshared +
	    (int)or_rnd(&w->rng, (unsigned)w->o->k->nprivate);
}

/*
 * The page of a writer's next access: at random, or, for an even writer
 * of a seed that sweeps, the page after its last (a sequential stream:
 * fault-around windows, a write's window of dirty pages, read-ahead),
 * restarted at random now and then.
 */
static int
sweeps(const struct or_worker *w)
{
	return w->o->sweep && w->id % 2 == 0;
}

static unsigned
next_page(struct or_worker *w)
{
	struct oracle *o = w->o;

	if (!sweeps(w))
		return or_rnd(&w->rng, o->npages);
	if (or_rnd(&w->rng, 4 * o->npages) == 0) {
		w->sweep_pg = or_rnd(&w->rng, o->npages);
		w->sweep_slot = or_rnd(&w->rng, (unsigned)o->k->nshared);
	}
	return w->sweep_pg++ % o->npages;
}

/* A shared mapping: a sweep keeps to one, so that it is a stream there. */
static int
shared_slot(struct or_worker *w)
{
	if (sweeps(w))
		return (int)(w->sweep_slot % (unsigned)w->o->k->nshared);
	return (int)or_rnd(&w->rng, (unsigned)w->o->k->nshared);
}

static void
writer_step(struct or_worker *w)
{
	struct oracle *o = w->o;
	unsigned op = or_pick(&w->rng, o->wweight, W_N);
	unsigned pg = next_page(w);
	int slot = op == W_PSTORE || op == W_PLOAD ? private_slot(w)
	    : op == W_KSTORE || op == W_KLOAD      ? -1
	                                           : shared_slot(w);
	unsigned word = op == W_PEEK          ? other_word(w)
	    : op == W_PSTORE || op == W_PLOAD ? own_word(w, OR_PRIV)
	                                      : own_word(w, 0);
	struct acc a;

	acc_at(o, &a, slot, pg, word);
	or_doing(w, wnames[op], slot, pg);
	switch (op) {
	case W_STORE:
	case W_PSTORE:
	case W_KSTORE:
		do_store(w, &a, 0, wnames[op]);
		break;
	case W_PIPE_IN:
		do_store(w, &a, 1, wnames[op]);
		break;
	case W_PIPE_OUT:
		do_load(w, &a, 1, 0, wnames[op]);
		break;
	default:
		do_load(w, &a, 0, op == W_PEEK, wnames[op]);
	}
	or_done(w);
}

/* The weights of the writers' accesses: what the seed says, and the kind. */
void
or_writer_weights(struct oracle *o, uint64_t *r)
{
	const struct or_kind *k = o->k;

	for (int i = 0; i < W_N; i++)
		o->wweight[i] = 1 + or_rnd(r, 4);
	o->wweight[W_STORE] += 6;
	o->wweight[W_LOAD] += 2;
	if (o->nwriters == 1)
		o->wweight[W_PEEK] = 0;
	if (k->nprivate == 0)
		o->wweight[W_PSTORE] = o->wweight[W_PLOAD] = 0;
	if (!(k->flags & OK_KVA))
		o->wweight[W_KSTORE] = o->wweight[W_KLOAD] = 0;
	for (int i = 0; i < W_N; i++)
		if (or_skipped(o, wkeys[i]))
			o->wweight[i] = 0;
}

/* The object page an address of a mapping shows, or -1. */
static int
page_at(const struct oracle *o, uintptr_t va)
{
	for (unsigned s = 0; s < o->nslots; s++) {
		uintptr_t base = (uintptr_t)o->slot[s];

		if (va >= base && va < base + (uintptr_t)o->npages * OR_PG)
			return (
			    int)or_spage(o, (unsigned)((va - base) / OR_PG));
	}
	return -1;
}

static void
check_stray(struct or_worker *w)
{
	or_trace("writer stray signal", w->id, 0, 0,
	    (unsigned long)w->stray_addr, 0);
	or_trace_focus(page_at(w->o, (uintptr_t)w->stray_addr));
	or_fail(w->o, F_STRAY,
	    "writer %d: signal %d (code %d) for %p (page %d) outside any "
	    "access to that page (a late or duplicate answer to a fault)",
	    w->id, w->stray_sig, w->stray_code, w->stray_addr,
	    page_at(w->o, (uintptr_t)w->stray_addr));
}

/* The planted hang: stop in an access, well past the watchdog's bound. */
static void
sabotage_hang(struct or_worker *w)
{
	long until = or_now_ns() + (long)(w->o->p.hang_secs * 4e9);

	or_doing(w, "sleep (a planted hang)", 0, 0);
	while (or_now_ns() < until && !atomic_load(&w->o->stop))
		usleep(1000);
}

void *
or_writer_main(void *arg)
{
	struct or_worker *w = arg;
	struct oracle *o = w->o;
	unsigned long strays = 0;

	or_cur = w;
	atomic_store(&w->tid, (int)syscall(SYS_gettid));
	while (!atomic_load(&o->stop)) {
		writer_step(w);
		atomic_fetch_add(&o->accesses, 1);
		w->n.accesses++;
		if (w->stray != strays) {
			strays = w->stray;
			check_stray(w);
		}
		if (o->p.sabotage == SAB_HANG && w->id == 0 &&
		    w->n.accesses == 20000)
			sabotage_hang(w);
	}
	or_cur = NULL;
	return NULL;
}

static atomic_int writer0_tid;

/* Writer 0 says who it is, for the planted stray SIGBUS. */
void *
or_writer0_main(void *arg)
{
	atomic_store(&writer0_tid, (int)syscall(SYS_gettid));
	return or_writer_main(arg);
}

pid_t
or_writer0_tid(void)
{
	return (pid_t)atomic_load(&writer0_tid);
}

/*
 * After the run: check word w of page pg through mapping slot (-1: the
 * driver's view) against its owner's model; o->final keeps mapping 0's.
 */
void
or_final_word(struct oracle *o, struct or_worker *c, int slot, unsigned pg,
    unsigned w)
{
	struct or_worker *owner =
	    o->w[(w < OR_PRIV ? w : w - OR_PRIV) % o->nwriters];
	struct acc a;
	uint64_t x = 0;
	int sig;

	acc_at(o, &a, slot, pg, w);
	acc_before(&a);
	sig = touch(c, a.p, 0, &x);
	acc_after(&a);
	if (sig != 0) {
		or_fail(o, sig == SIGBUS ? F_SIGBUS : F_SEGV,
		    "at the end: signal %d reading word %u of page %u "
		    "through mapping %d",
		    sig, w, pg, slot);
		return;
	}
	check_owned(c, est_of(owner, &a), &a, x, "at the end",
	    "the last read of");
	if (slot == 0)
		o->final[pg][w] = x;
}
