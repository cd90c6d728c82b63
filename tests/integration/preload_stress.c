/*
 * preload_stress.c: a worker of the preloaded stress (test_preload_stress.c),
 * a dynamically linked program that knows nothing of fomap, run under
 * LD_PRELOAD=libfomap-preload.so. Several of it map one gem buffer (by
 * global name) and guard's region, each through its own open, and write,
 * read, evict, protect, fork and exit at random, checking every word it
 * reads against the oracle.
 *
 *   fomap-preload-stress work GEM GUARD NAME LEDGER SLOT SEED END_NS
 *       a worker of slot SLOT (0..3) until CLOCK_MONOTONIC END_NS, or
 *       until it chooses to exit (the test starts another for the slot);
 *       its forked child works as slot SLOT + 4 for a while, then exits.
 *   fomap-preload-stress check GEM GUARD NAME LEDGER
 *       every word of both objects is exactly what its owner wrote last,
 *       before and after an eviction: "ok".
 *
 * The oracle. A word w of an object is owned by one slot (gem: w % 8;
 * guard: its page % 8, so that an owner may protect its pages): only the
 * process working as that slot writes it. The ledger, an ordinary file
 * every process maps (the library leaves it alone), holds for every word
 * the sequence number of the write begun (next) and of the write done
 * (done): the owner stores next, the word, then done. So a reader that
 * loads done, then the word, then next must see a value its owner wrote
 * with done <= seq <= next; anything else is a mismatch: a value older
 * than one already written (a lost write, a resurrected page), a zero
 * after the first write (a zero page), a value never written (torn,
 * misplaced, from nowhere), or a private mapping's value in the object
 * (copy-on-write leaked). The owner checks its own words exactly. Values
 * carry (tag, private, object, word, slot, seq) and a checksum.
 *
 * Private mappings (gem only): each keeps a shadow of the values written
 * through it; those words must hold exactly that, across evictions and in
 * a forked child (whose shadow is the fork's copy, as its pages are).
 *
 * FOMAP_PRELOAD_STRESS_SKIP: ops not to do, by name, comma-separated
 * ("fork,gprotect"): to tell one failure from another.
 *
 * Exit status: 0 when nothing was wrong; 1 after a mismatch (each printed
 * on standard error, with the op, object, page, word, expected and seen,
 * the process); 3 at a SIGBUS or SIGSEGV nobody expected.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <fomap/gem.h>
#include <fomap/guard.h>

#define PS_PG 4096
#define PS_PAGES 64 /* of each object */
#define PS_NSLOTS 8 /* 4 workers and their forked children */
#define PS_GEM 0
#define PS_GUARD 1
#define PS_NOBJ 2

enum {
	PS_OP_MAP,
	PS_OP_UNMAP,
	PS_OP_WRITE,
	PS_OP_PWRITE,
	PS_OP_READ,
	PS_OP_EVICT,
	PS_OP_MPROTECT,
	PS_OP_GPROTECT,
	PS_OP_GREMOVE,
	PS_OP_FORK,
	PS_OP_EXIT,
	PS_NOPS
};

/* The ledger: the oracle's file, shared by every process of the run. */
struct ps_ledger {
	uint32_t seq[PS_NSLOTS]; /* each slot's last sequence number */
	uint64_t ops[PS_NOPS], mismatches, workers, children;
	uint32_t next[PS_NOBJ][PS_PAGES * PS_PG / 8];
	uint32_t done[PS_NOBJ][PS_PAGES * PS_PG / 8];
};

#define WPP (PS_PG / 8) /* words a page */
#define MAXMAPS 4
#define MAXBAD 8 /* mismatches printed before giving up */

/* Values. */
#define V_TAG ((uint64_t)1 << 63)
#define V_PRIV ((uint64_t)1 << 62)
#define V_OBJ ((uint64_t)1 << 61)

static const char *const objname[PS_NOBJ] = {"gem", "guard"};
static const char *const ps_opname[PS_NOPS] = {"map", "unmap", "write",
    "pwrite", "read", "evict", "mprotect", "gprotect", "gremove", "fork",
    "exit"};

struct map {
	volatile uint64_t *p; /* NULL: free */
	int obj, first, n; /* object, its pages [first, first + n) */
	int priv; /* MAP_PRIVATE (gem only) */
	uint64_t *shadow; /* private: what was written through it, or 0 */
	uint8_t *cowed; /* private: a page written through it */
};

static struct ps_ledger *L;
static struct map maps[MAXMAPS];
static int slot, ischild, gemfd, guardfd, bad;
static uint32_t handle;
static uint64_t gemoff, rng, privseq;
static int64_t end_ns;
static pid_t child;
static const char *curop = "start";

static int64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static uint64_t
rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static int
below(int n)
{
	return (int)(rnd() % (uint64_t)n);
}

/* ------------------------------------------------------------------ */
/* Values and owners. */

static uint64_t
csum(uint64_t v)
{
	v >>= 8;
	v *= 0x9e3779b97f4a7c15ULL;
	return (v >> 56) & 0xff;
}

static uint64_t
enc(int obj, int priv, uint32_t w, int s, uint32_t seq)
{
	uint64_t v = V_TAG | (priv ? V_PRIV : 0) | (obj ? V_OBJ : 0) |
	    (uint64_t)(w & 0xffff) << 45 | (uint64_t)(s & 0x1f) << 40 |
	    (uint64_t)seq << 8;

	return v | csum(v);
}

static int
owner(int obj, uint32_t w)
{
	return obj == PS_GEM ? (int)(w % PS_NSLOTS)
	                     : (int)(w / WPP % PS_NSLOTS);
}

/* What a value says, for a message. */
static const char *
dec(uint64_t v, int n)
{
	static char s[2][96];

	if (v == 0)
		return "0";
	snprintf(s[n], sizeof s[0],
	    "%#llx (%s%s %s word %llu slot %llu seq %llu%s)",
	    (unsigned long long)v, v & V_TAG ? "" : "untagged ",
	    v & V_PRIV ? "private" : "shared", v & V_OBJ ? "guard" : "gem",
	    (unsigned long long)(v >> 45 & 0xffff),
	    (unsigned long long)(v >> 40 & 0x1f),
	    (unsigned long long)(v >> 8 & 0xffffffff),
	    csum(v) == (v & 0xff) ? "" : ", bad checksum");
	return s[n];
}

/* ------------------------------------------------------------------ */
/* Signals: the expected ones jump back, the others are failures. */

static sigjmp_buf jb;
static volatile sig_atomic_t armed;
static volatile int cur_obj = -1, cur_pg = -1, cur_word = -1;

static void
on_fault(int sig, siginfo_t *si, void *uc)
{
	char msg[256];
	int n;

	(void)uc;
	if (armed) {
		armed = 0;
		siglongjmp(jb, sig);
	}
	n = snprintf(msg, sizeof msg,
	    "FAIL pid %d slot %d: unexpected %s at %p (op %s, %s page %d "
	    "word %d)\n",
	    (int)getpid(), slot, sig == SIGBUS ? "SIGBUS" : "SIGSEGV",
	    si->si_addr, curop, cur_obj >= 0 ? objname[cur_obj] : "-", cur_pg,
	    cur_word);
	(void)!write(2, msg, (size_t)n);
	_exit(3);
}

/* Store v at p, expecting a fault: => the signal, or 0 if it went. */
static int
store_expecting_fault(volatile uint64_t *p, uint64_t v)
{
	int sig;

	if ((sig = sigsetjmp(jb, 1)) != 0)
		return sig;
	armed = 1;
	*p = v;
	armed = 0;
	return 0;
}

/* ------------------------------------------------------------------ */
/* The checks. */

static void
mismatch(const struct map *m, int pg, int i, const char *what, uint64_t want,
    uint64_t seen)
{
	uint32_t w = (uint32_t)((m->first + pg) * WPP + i);

	__atomic_add_fetch(&L->mismatches, 1, __ATOMIC_SEQ_CST);
	if (bad++ < MAXBAD)
		fprintf(stderr,
		    "MISMATCH pid %d slot %d%s op %s: %s page %d word %d "
		    "(owner slot %d, %s mapping of pages %d-%d): %s; "
		    "expected %s, seen %s\n",
		    (int)getpid(), slot, ischild ? " (forked)" : "", curop,
		    objname[m->obj], m->first + pg, i, owner(m->obj, w),
		    m->priv ? "private" : "shared", m->first,
		    m->first + m->n - 1, what, dec(want, 0), dec(seen, 1));
}

/*
 * Check word i of page pg of mapping m against the oracle.
 * => 1 if it holds what it may.
 */
static int
check_word(const struct map *m, int pg, int i)
{
	uint32_t w = (uint32_t)((m->first + pg) * WPP + i), seq, done, next;
	int o = m->obj, own = owner(o, w);
	uint64_t v, want;

	cur_obj = o;
	cur_pg = m->first + pg;
	cur_word = i;
	done = __atomic_load_n(&L->done[o][w], __ATOMIC_SEQ_CST);
	v = __atomic_load_n(&m->p[pg * WPP + i], __ATOMIC_SEQ_CST);
	next = __atomic_load_n(&L->next[o][w], __ATOMIC_SEQ_CST);
	want = done ? enc(o, 0, w, own, done) : 0;
	if (m->priv && m->shadow[pg * WPP + i]) {
		if (v == m->shadow[pg * WPP + i])
			return 1;
		mismatch(m, pg, i, "private write lost",
		    m->shadow[pg * WPP + i], v);
		return 0;
	}
	if (v == 0) {
		if (done == 0 || m->priv)
			return 1; /* (a private page may be older) */
		mismatch(m, pg, i, "zero page after a write", want, v);
		return 0;
	}
	seq = (uint32_t)(v >> 8);
	if (!(v & V_TAG) || csum(v) != (v & 0xff) || !!(v & V_OBJ) != o ||
	    (v >> 45 & 0xffff) != (w & 0xffff) ||
	    (int)(v >> 40 & 0x1f) != own) {
		mismatch(m, pg, i, "a value never written here", want, v);
		return 0;
	}
	if (v & V_PRIV) {
		mismatch(m, pg, i,
		    m->priv ? "another process's private write"
		            : "a private write leaked into the object",
		    want, v);
		return 0;
	}
	if (own == slot && !m->priv && v != want) {
		mismatch(m, pg, i, "not the owner's last write", want, v);
		return 0;
	}
	if (seq > next) {
		mismatch(m, pg, i, "a value from the future", want, v);
		return 0;
	}
	if (seq < done && !m->priv) {
		mismatch(m, pg, i,
		    "a stale value (lost write, resurrected "
		    "page)",
		    want, v);
		return 0;
	}
	return 1;
}

static int
check_page(const struct map *m, int pg)
{
	int ok = 1;

	for (int i = 0; i < WPP; i++)
		ok &= check_word(m, pg, i);
	return ok;
}

static int
check_map(const struct map *m)
{
	int ok = 1;

	for (int pg = 0; pg < m->n; pg++)
		ok &= check_page(m, pg);
	return ok;
}

/* ------------------------------------------------------------------ */
/* Mappings. */

static int
syserr(const char *what)
{
	fprintf(stderr, "FAIL pid %d slot %d op %s: %s: %s\n", (int)getpid(),
	    slot, curop, what, strerror(errno));
	bad++;
	return 0;
}

static void
count(int op)
{
	__atomic_add_fetch(&L->ops[op], 1, __ATOMIC_RELAXED);
}

/* Map pages [first, first + n) of obj into m. => 1, or 0 (reported). */
static int
map_obj(struct map *m, int obj, int first, int n, int priv)
{
	size_t len = (size_t)n * PS_PG;
	void *p;

	if (obj == PS_GEM)
		p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		    priv ? MAP_PRIVATE : MAP_SHARED, gemfd,
		    (off_t)(gemoff + (uint64_t)first * PS_PG));
	else
		p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, guardfd,
		    (off_t)first * PS_PG);
	if (p == MAP_FAILED)
		return syserr("mmap");
	*m = (struct map){.p = p,
	    .obj = obj,
	    .first = first,
	    .n = n,
	    .priv = priv};
	if (priv) {
		m->shadow = calloc((size_t)n * WPP, sizeof(uint64_t));
		m->cowed = calloc((size_t)n, 1);
	}
	return 1;
}

static int
unmap(struct map *m)
{
	int ok = munmap((void *)m->p, (size_t)m->n * PS_PG) == 0;

	free(m->shadow);
	free(m->cowed);
	*m = (struct map){0};
	return ok ? 1 : syserr("munmap");
}

/* A random mapping in use, of obj (-1: any), shared only if noprv. */
static struct map *
pick(int obj, int noprv)
{
	int k = below(MAXMAPS);

	for (int j = 0; j < MAXMAPS; j++) {
		struct map *m = &maps[(k + j) % MAXMAPS];

		if (m->p && (obj < 0 || m->obj == obj) && !(noprv && m->priv))
			return m;
	}
	return NULL;
}

/* ------------------------------------------------------------------ */
/* The ops. */

/* Write up to k of our words in page pg of shared mapping m. */
static int
write_words(struct map *m, int pg, int k)
{
	int gp = m->first + pg, wrote[WPP], nw = 0;

	cur_obj = m->obj;
	cur_pg = gp;
	for (int j = 0; j < k; j++) {
		int i = below(WPP);
		uint32_t w = (uint32_t)(gp * WPP + i), s;

		if (owner(m->obj, w) != slot)
			i = i - i % PS_NSLOTS + slot,
			w = (uint32_t)(gp * WPP + i);
		if (owner(m->obj, w) != slot)
			return 1; /* (a guard page of another slot) */
		cur_word = i;
		s = __atomic_add_fetch(&L->seq[slot], 1, __ATOMIC_SEQ_CST);
		__atomic_store_n(&L->next[m->obj][w], s, __ATOMIC_SEQ_CST);
		__atomic_store_n(&m->p[pg * WPP + i],
		    enc(m->obj, 0, w, slot, s), __ATOMIC_SEQ_CST);
		__atomic_store_n(&L->done[m->obj][w], s, __ATOMIC_SEQ_CST);
		wrote[nw++] = i;
	}
	for (int j = 0; j < nw; j++)
		if (!check_word(m, pg, wrote[j]))
			return 0;
	return 1;
}

/* Write our words through private mapping m (never reach the object). */
static int
write_private(struct map *m, int pg)
{
	int gp = m->first + pg;

	cur_obj = m->obj;
	cur_pg = gp;
	for (int i = slot; i < WPP; i += PS_NSLOTS * (1 + below(4))) {
		uint32_t w = (uint32_t)(gp * WPP + i);
		uint64_t v = enc(m->obj, 1, w, slot, (uint32_t)++privseq);

		cur_word = i;
		m->p[pg * WPP + i] = v;
		m->shadow[pg * WPP + i] = v;
	}
	m->cowed[pg] = 1;
	return check_page(m, pg);
}

static int
op_map(void)
{
	struct map *m = NULL;
	int obj, first, n;

	for (int j = 0; j < MAXMAPS && m == NULL; j++)
		if (maps[j].p == NULL)
			m = &maps[j];
	if (m == NULL)
		return 1;
	obj = below(4) == 0 ? PS_GUARD : PS_GEM;
	first = below(PS_PAGES);
	n = 1 + below(PS_PAGES - first);
	if (below(3) == 0)
		first = 0, n = PS_PAGES;
	if (!map_obj(m, obj, first, n, obj == PS_GEM && below(3) == 0))
		return 0;
	return check_map(m);
}

static int
op_evict(void)
{
	struct fm_gem_evict e = {.handle = handle};

	if (ioctl(gemfd, FM_GEM_EVICT, &e) < 0)
		return syserr("FM_GEM_EVICT");
	return 1;
}

/* mprotect a shared gem mapping read-only: reads go, a write faults. */
static int
op_mprotect(void)
{
	struct map *m = pick(PS_GEM, 1);
	int pg, i, sig;
	uint32_t w;

	if (m == NULL)
		return 1;
	pg = below(m->n);
	i = below(WPP / PS_NSLOTS) * PS_NSLOTS + slot;
	w = (uint32_t)((m->first + pg) * WPP + i);
	if (mprotect((void *)m->p, (size_t)m->n * PS_PG, PROT_READ) < 0)
		return syserr("mprotect PROT_READ");
	if (!check_page(m, pg))
		return 0;
	cur_word = i;
	sig = store_expecting_fault(&m->p[pg * WPP + i],
	    enc(PS_GEM, 0, w, slot, 0xffffffff));
	if (sig != SIGSEGV) {
		fprintf(stderr,
		    "MISMATCH pid %d slot %d op mprotect: gem page %d word %d: "
		    "a write to a PROT_READ mapping %s\n",
		    (int)getpid(), slot, m->first + pg, i,
		    sig ? "got SIGBUS, not SIGSEGV" : "went through");
		bad++;
		return 0;
	}
	if (!check_page(m, pg))
		return 0;
	if (mprotect((void *)m->p, (size_t)m->n * PS_PG,
	        PROT_READ | PROT_WRITE) < 0)
		return syserr("mprotect PROT_READ|PROT_WRITE");
	return write_words(m, pg, 4);
}

/*
 * guard's read-only range (FM_GUARD_REFUSE) on a page of ours: a write
 * gets SIGBUS and does not happen, in every mapping; reads go on; made
 * writable again, writes go.
 */
static int
op_gprotect(void)
{
	struct map *m = pick(PS_GUARD, 1);
	struct fm_guard_protect a = {.prot = PROT_READ,
	    .policy = FM_GUARD_REFUSE};
	int pg, i, sig;
	uint32_t w;

	if (m == NULL)
		return 1;
	for (pg = 0; pg < m->n && (m->first + pg) % PS_NSLOTS != slot; pg++)
		;
	if (pg == m->n)
		return 1;
	pg += below((m->n - pg + PS_NSLOTS - 1) / PS_NSLOTS) * PS_NSLOTS;
	i = below(WPP);
	w = (uint32_t)((m->first + pg) * WPP + i);
	a.off = (uint64_t)(m->first + pg) * PS_PG;
	a.len = PS_PG;
	if (ioctl(guardfd, FM_GUARD_PROTECT, &a) < 0)
		return syserr("FM_GUARD_PROTECT PROT_READ");
	cur_obj = PS_GUARD;
	cur_pg = m->first + pg;
	cur_word = i;
	sig = store_expecting_fault(&m->p[pg * WPP + i],
	    enc(PS_GUARD, 0, w, slot, 0xffffffff));
	if (sig != SIGBUS) {
		fprintf(stderr,
		    "MISMATCH pid %d slot %d op gprotect: guard page %d word "
		    "%d: a write to a read-only (REFUSE) page %s\n",
		    (int)getpid(), slot, m->first + pg, i,
		    sig ? "got SIGSEGV, not SIGBUS" : "went through");
		bad++;
		return 0;
	}
	if (!check_page(m, pg))
		return 0;
	a.prot = PROT_READ | PROT_WRITE;
	a.policy = 0;
	if (ioctl(guardfd, FM_GUARD_PROTECT, &a) < 0)
		return syserr("FM_GUARD_PROTECT PROT_READ|PROT_WRITE");
	return write_words(m, pg, 8);
}

/* guard's removal with refill, of any range: the data stays. */
static int
op_gremove(void)
{
	int first = below(PS_PAGES), n = 1 + below(PS_PAGES - first);
	struct fm_guard_remove a = {(uint64_t)first * PS_PG,
	    (uint64_t)n * PS_PG, FM_GUARD_REFILL, 0};

	if (ioctl(guardfd, FM_GUARD_REMOVE, &a) < 0)
		return syserr("FM_GUARD_REMOVE");
	return 1;
}

/* Wait for the child (ms at most): => 1 if it ended well. */
static int
reap(int ms)
{
	int64_t until = now_ns() + (int64_t)ms * 1000000;
	pid_t r;
	int st;

	while ((r = waitpid(child, &st, WNOHANG)) == 0) {
		if (ms == 0)
			return 1;
		if (now_ns() > until) {
			fprintf(stderr,
			    "FAIL pid %d slot %d: its child %d hangs\n",
			    (int)getpid(), slot, (int)child);
			kill(child, SIGKILL);
			waitpid(child, NULL, 0);
			child = 0;
			bad++;
			return 0;
		}
		usleep(1000);
	}
	child = 0;
	if (r < 0)
		return syserr("waitpid");
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return 1;
	fprintf(stderr, "FAIL pid %d slot %d: its child %d ended %s %d\n",
	    (int)getpid(), slot, (int)r,
	    WIFEXITED(st) ? "with status" : "by signal",
	    WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
	bad++;
	return 0;
}

/*
 * fork: the child works as slot + 4 for 100-500 ms on what it inherited
 * and its own new mappings, then exits (with its mappings).
 */
static int
op_fork(void)
{
	pid_t pid;

	if (ischild || child)
		return 1;
	fflush(NULL);
	if ((pid = fork()) < 0)
		return syserr("fork");
	if (pid > 0) {
		child = pid;
		return 1;
	}
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	ischild = 1;
	slot += PS_NSLOTS / 2;
	rng ^= (uint64_t)getpid() * 0x9e3779b97f4a7c15ULL;
	rng |= 1;
	end_ns = now_ns() + 100000000 + below(400) * 1000000LL;
	curop = "fork (the child's inherited mappings)";
	for (int j = 0; j < MAXMAPS; j++)
		if (maps[j].p && !check_map(&maps[j]))
			return 0;
	return 1;
}

/* An op FOMAP_PRELOAD_STRESS_SKIP lists (to tell failures apart). */
static int
skipped(int op)
{
	const char *l = getenv("FOMAP_PRELOAD_STRESS_SKIP");
	size_t n = strlen(ps_opname[op]);

	for (const char *p = l; p && (p = strstr(p, ps_opname[op])); p += n)
		if ((p == l || p[-1] == ',') && (p[n] == 0 || p[n] == ','))
			return 1;
	return 0;
}

/* One random op: => 0 after a failure; *quit when the process exits. */
static int
one_op(int *quit)
{
	struct map *m;
	int op = below(100);

	if (op < 6)
		op = PS_OP_MAP;
	else if (op < 10)
		op = PS_OP_UNMAP;
	else if (op < 40)
		op = PS_OP_WRITE;
	else if (op < 48)
		op = PS_OP_PWRITE;
	else if (op < 70)
		op = PS_OP_READ;
	else if (op < 76)
		op = PS_OP_EVICT;
	else if (op < 82)
		op = PS_OP_MPROTECT;
	else if (op < 88)
		op = PS_OP_GPROTECT;
	else if (op < 94)
		op = PS_OP_GREMOVE;
	else if (op < 97)
		op = PS_OP_FORK;
	else
		op = PS_OP_EXIT;
	if (skipped(op))
		return 1;
	curop = ps_opname[op];
	switch (op) {
	case PS_OP_MAP:
		count(op);
		return op_map();
	case PS_OP_UNMAP:
		if ((m = pick(-1, 0)) == NULL)
			return 1;
		count(op);
		return unmap(m);
	case PS_OP_WRITE:
		if ((m = pick(-1, 1)) == NULL)
			return 1;
		count(op);
		return write_words(m, below(m->n), 1 + below(WPP / PS_NSLOTS));
	case PS_OP_PWRITE:
		if ((m = pick(PS_GEM, 0)) == NULL || !m->priv)
			return 1;
		count(op);
		return write_private(m, below(m->n));
	case PS_OP_READ:
		if ((m = pick(-1, 0)) == NULL)
			return 1;
		count(op);
		return below(4) == 0 ? check_map(m)
		                     : check_page(m, below(m->n));
	case PS_OP_EVICT:
		count(op);
		return op_evict();
	case PS_OP_MPROTECT:
		count(op);
		return op_mprotect();
	case PS_OP_GPROTECT:
		count(op);
		return op_gprotect();
	case PS_OP_GREMOVE:
		count(op);
		return op_gremove();
	case PS_OP_FORK:
		if (ischild || child)
			return 1;
		count(op);
		return op_fork();
	default:
		/* Exits are rare: a worker lives a while. */
		if (ischild || below(20) != 0)
			return 1;
		count(op);
		*quit = 1;
		return 1;
	}
}

/* ------------------------------------------------------------------ */

/* The ledger (the test made the file, empty: the first one sizes it). */
static struct ps_ledger *
ledger(const char *path)
{
	int fd = open(path, O_RDWR);
	void *p;

	if (fd < 0 || ftruncate(fd, sizeof *L) < 0)
		return NULL;
	p = mmap(NULL, sizeof *L, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	return p == MAP_FAILED ? NULL : p;
}

/* Open both devices and the buffer by name. => 1, or 0 (reported). */
static int
setup(char **argv)
{
	struct fm_gem_open g = {.name = (uint32_t)strtoul(argv[4], NULL, 0)};
	struct fm_gem_mmap_offset o = {0};
	struct sigaction sa = {.sa_sigaction = on_fault,
	    .sa_flags = SA_SIGINFO | SA_NODEFER};

	sigaction(SIGBUS, &sa, NULL);
	sigaction(SIGSEGV, &sa, NULL);
	if ((L = ledger(argv[5])) == NULL)
		return syserr("the ledger");
	if ((gemfd = open(argv[2], O_RDWR)) < 0)
		return syserr("open gem");
	if ((guardfd = open(argv[3], O_RDWR)) < 0)
		return syserr("open guard");
	if (ioctl(gemfd, FM_GEM_OPEN, &g) < 0)
		return syserr("FM_GEM_OPEN");
	if (g.size != PS_PAGES * PS_PG) {
		errno = EINVAL;
		return syserr("the buffer's size");
	}
	o.handle = handle = g.handle;
	if (ioctl(gemfd, FM_GEM_MMAP_OFFSET, &o) < 0)
		return syserr("FM_GEM_MMAP_OFFSET");
	gemoff = o.offset;
	return 1;
}

static int
work(char **argv)
{
	int quit = 0, ok;
	int64_t life;

	slot = atoi(argv[6]);
	rng = strtoull(argv[7], NULL, 0) | 1;
	end_ns = strtoll(argv[8], NULL, 0);
	life = now_ns() + 300000000 + below(1500) * 1000000LL;
	if (!setup(argv))
		return 1;
	/* Everything as the slot's last process left it. */
	curop = "start (the slot's words as left)";
	ok = map_obj(&maps[0], PS_GEM, 0, PS_PAGES, 0) && check_map(&maps[0]);
	ok = ok && map_obj(&maps[1], PS_GUARD, 0, PS_PAGES, 0) &&
	    check_map(&maps[1]);
	while (ok && !quit && now_ns() < end_ns) {
		ok = one_op(&quit);
		if (ok && child && !ischild)
			ok = reap(0);
		if (!ischild && now_ns() > life) {
			count(PS_OP_EXIT); /* (as a chosen exit: the same) */
			quit = 1;
		}
	}
	curop = "exit";
	if (child)
		ok &= reap(5000);
	if (ok && below(2)) /* (else exit with the mappings) */
		for (int j = 0; j < MAXMAPS; j++)
			if (maps[j].p)
				ok &= unmap(&maps[j]);
	__atomic_add_fetch(ischild ? &L->children : &L->workers, 1,
	    __ATOMIC_RELAXED);
	return ok && bad == 0 ? 0 : 1;
}

/* The end: every word exactly its owner's last write, evicted or not. */
static int
check_all(char **argv)
{
	slot = -1;
	if (!setup(argv))
		return 1;
	curop = "final check";
	if (!map_obj(&maps[0], PS_GEM, 0, PS_PAGES, 0) ||
	    !map_obj(&maps[1], PS_GUARD, 0, PS_PAGES, 0))
		return 1;
	for (int round = 0; round < 2; round++) {
		for (int o = 0; o < PS_NOBJ; o++)
			for (uint32_t w = 0; w < PS_PAGES * WPP; w++) {
				uint32_t d = L->done[o][w];
				uint64_t want =
				    d ? enc(o, 0, w, owner(o, w), d) : 0;

				if (L->next[o][w] != d)
					mismatch(&maps[o], (int)(w / WPP),
					    (int)(w % WPP),
					    "a write never done", want, 0);
				if (maps[o].p[w] != want)
					mismatch(&maps[o], (int)(w / WPP),
					    (int)(w % WPP),
					    "not the owner's last write", want,
					    maps[o].p[w]);
			}
		curop = "final check, after an eviction";
		if (!op_evict())
			return 1;
	}
	printf("ops:");
	for (int op = 0; op < PS_NOPS; op++) {
		printf(" %s %llu", ps_opname[op],
		    (unsigned long long)L->ops[op]);
		if (L->ops[op] == 0 && !skipped(op)) {
			fprintf(stderr, "FAIL: no %s op ran\n", ps_opname[op]);
			bad++;
		}
	}
	printf("; workers %llu, children %llu, mismatches %llu\n",
	    (unsigned long long)L->workers, (unsigned long long)L->children,
	    (unsigned long long)L->mismatches);
	if (bad || L->mismatches)
		return 1;
	puts("ok");
	return 0;
}

int
main(int argc, char **argv)
{
	setvbuf(stderr, NULL, _IOLBF, 0);
	if (argc == 9 && strcmp(argv[1], "work") == 0)
		return work(argv);
	if (argc == 6 && strcmp(argv[1], "check") == 0)
		return check_all(argv);
	fprintf(stderr,
	    "usage: fomap-preload-stress work GEM GUARD NAME "
	    "LEDGER SLOT SEED END_NS\n"
	    "       fomap-preload-stress check GEM GUARD NAME "
	    "LEDGER\n");
	return 2;
}
