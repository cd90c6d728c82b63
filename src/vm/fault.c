/*
 * fault.c: the fault engine. Engine threads read the userfaultfd of an
 * address space and resolve every fault through the faulting object's pager.
 *
 * ======================================================================
 * Design notes
 * ======================================================================
 *
 * Page states (obj->pgstate, one byte a page; assert_page_state()):
 *
 *   EMPTY      not in the object store
 *   FILLING    BUSY: one thread's pager is filling it
 *   CLEAN      RESIDENT: in the store; for a pager with pgo_put, mapped
 *              write-protected in every shared mapping
 *   DIRTY      RESIDENT|DIRTY: written since it was last written back
 *   WRITEBACK  RESIDENT|BUSY: pgo_put is writing it back
 *   RDONLY     a flag on any state: the driver made the page read-only
 *
 * Transitions, each with the function that makes it:
 *
 *   EMPTY -> FILLING            fm__object_busy      (fault, prefetch)
 *   FILLING -> CLEAN | EMPTY    fm__object_unbusy    (pager done / failed,
 *                                                     or zero_install)
 *   CLEAN -> DIRTY              fault_wp             (write hook allowed)
 *   DIRTY -> WRITEBACK -> CLEAN clean_pmaplocked     (msync, last unmap,
 *                                                     release, discard)
 *   CLEAN | DIRTY -> EMPTY      fm_object_unmap      (FM_UNMAP_DISCARD)
 *   any <-> any|RDONLY          fm_object_protect
 *
 * Invariants:
 *
 *   1. A page is filled by one thread at a time: only fm__object_busy makes
 *      a page BUSY, and only when it is neither RESIDENT nor BUSY.
 *   2. A DIRTY page is RESIDENT; a BUSY page is never installed from a fill
 *      that is not the busy holder's (installs need RESIDENT).
 *   3. A page is installed only while obj->pmaplock is held shared and its
 *      state says RESIDENT, or says BUSY for the installing thread, which
 *      fills and maps it in one act (zero_install, only for pages whose
 *      state asks no write protection); the write protection it is
 *      installed with is read from its state under that same lock. Every
 *      change of what may be mapped, and how (protect, clean, discard),
 *      holds pmaplock exclusive and applies itself to every shared mapping
 *      before letting go. So a mapping never holds a page more writable
 *      than its state allows, but for a WP fault the write hook allowed
 *      (which makes the page DIRTY under the same shared lock).
 *   4. For a pager with pgo_put, a page writable in some mapping is DIRTY:
 *      clean_pmaplocked write-protects before it clears DIRTY.
 *   5. No page is installed into an entry that has left the map: faults are
 *      resolved with fm__map.lock shared; fm_munmap takes it exclusive,
 *      removes the entries, unmaps, and only then wakes the range.
 *   6. Every fault read from the uffd is answered exactly once with an act
 *      that wakes its thread: a mapped prefix that starts at the faulting
 *      page, a wake (EEXIST, or the entry is gone), an unprotect (write
 *      allowed), or a SIGBUS sent to the faulting thread (pager error or
 *      refused write), which leaves the page as it was so that the next
 *      access is served afresh. resolve() asserts that one of these
 *      happened.
 *
 * Races and what answers them:
 *
 *   two faults on one page      the second waits on BUSY, then finds the
 *                               page RESIDENT; its enter gives EEXIST: wake
 *   fault vs fm_munmap          invariant 5; a stale message gets a wake
 *   fault vs MAP_FIXED          fm_mmap replaces and re-enters the map under
 *                               the map lock exclusive (invariant 5); enter
 *                               on a range the kernel no longer has
 *                               registered gives ESRCH: wake, state untouched
 *   fault vs discard            enter gives ENOENT: fill again (bounded)
 *   fault vs protect            invariant 3
 *   write hook vs protect       the hook decides without the pmaplock; if
 *                               obj->protgen moved meanwhile, the write is
 *                               woken to fault again and be decided afresh
 *   a pager's own error codes   mapped to EIO (pager_errno): a pager can
 *                               never make the engine wake or retry
 *   write vs write-back         invariant 4: the write faults, re-dirties
 *   kernel busy (mmap_changing) enter gives EAGAIN: try again (bounded)
 *   zero fill vs a page put in  ZEROPAGE gives EEXIST: fill the usual way
 *   the store by other means    (fallocate keeps the page, CONTINUE maps it)
 *
 * Filling and mapping (fill_and_install):
 *
 *   - The pager fills the busy run (pgo_fault, pgo_get, or fallocate for
 *     zero-fill objects); install_locked maps the resident run with
 *     UFFDIO_CONTINUE, write-protected or not as the first page's state
 *     says.
 *   - A zero-fill object (no pgo_get, pgo_fault or pgo_put) in a shared
 *     registration fills and maps its busy run with one UFFDIO_ZEROPAGE
 *     (zero_install): the kernel allocates each page in the store's page
 *     cache and maps it writable, so only the prefix of the run that is
 *     not RDONLY; the rest is filled the usual way. Never for a private
 *     registration, where ZEROPAGE maps the zero page and the object
 *     would never see the page.
 *
 * Fault-around (fault_around): how many pages a fault maps from the
 * faulting one. MADV_RANDOM: 1; MADV_SEQUENTIAL: FM_AROUND_MAX. Otherwise
 * each entry keeps FM_AROUND_STREAMS sequential streams (relaxed atomics:
 * a hint), matched on the address of their next fault: a hit doubles the
 * stream's window up to FM_AROUND_MAX, a miss starts a new stream at 1
 * page in place of the one started first. So random access maps 1 page a
 * fault and threads scanning one mapping do not reset each other. The
 * stream is advanced when the window is chosen and corrected to what was
 * mapped before the faulter is woken (ra_advance). The environment
 * variable FOMAP_FAULT_AROUND (read once at engine start, clamped to 1 ..
 * FM_AROUND_MAX; 0 or not a number: unset), when set, is the window of
 * every fault, whatever the advice (for benchmarks). Windows are clipped
 * to the entry and the object.
 *
 * Engine threads (FOMAP_ENGINE_THREADS, default 2): the kernel wakes every
 * thread sleeping in read(2) on a uffd for each fault. When the engine
 * may use one CPU only (its affinity at start), the others' wake-ups are
 * pure cost, so one thread at a time, the reader, reads; the others wait
 * on eng.cv. When it may use several, every engine thread reads: a
 * second reader costs another CPU, not the faulter, and it gives a
 * faulting thread a reader on its own CPU (in a VM, waking an idle vCPU
 * costs tens of µs) and faults of several threads are resolved in
 * parallel. Either way a thread resolves the first fault of its read and
 * queues the others (eng.q), which go before any new read: a waiting
 * thread, or the reader once done, takes them. eng.lock is a leaf:
 * nothing is taken while it is held.
 * ======================================================================
 */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vm/vm.h"

#define FM_AROUND_SHIFT 8 /* log2 of the largest window */
#define FM_AROUND_MAX (1u << FM_AROUND_SHIFT) /* pages */
#define FM_AROUND_STREAMS 4 /* e->ra_next and e->ra_more */
#define FM_FAULT_TRIES 64 /* fills before a fault gives up (SIGBUS) */
#define FM_ENGINE_MAXTHREADS 16
#define FM_ENGINE_BATCH 8 /* messages a read takes at most */
#define FM_ENGINE_QUEUE (FM_ENGINE_MAXTHREADS * FM_ENGINE_BATCH)

_Static_assert(sizeof(((struct fm_entry *)0)->ra_more) ==
        (FM_AROUND_STREAMS - 1) * sizeof(uintptr_t),
    "fault-around streams");
_Static_assert(FM_AROUND_SHIFT < FM_PAGE_SHIFT, "window shift in an offset");

static struct {
	atomic_ulong faults, minor, wp, pages, sigbus, retries;
} stats;

/* The object whose pmaplock this thread holds shared for a fill, if any. */
__thread struct fm_object *fm__pmaplock_held;

/* The engine threads (design notes); all but the constants under lock. */
static struct {
	pthread_mutex_t lock;
	pthread_cond_t cv; /* a message queued, or no reader */
	struct uffd_msg q[FM_ENGINE_QUEUE];
	unsigned head, n; /* the queue */
	int readers; /* threads that read, or may read next */
	int idle; /* threads waiting on cv */
	int shared; /* every thread may read (several CPUs) */
	unsigned around; /* FOMAP_FAULT_AROUND, or 0 */
} eng = {.lock = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

/* This thread counts in eng.readers. */
static __thread int eng_reader;

enum answer { ANS_NONE, ANS_MAPPED, ANS_WOKEN, ANS_UNPROTECTED, ANS_SIGBUS };

static void
assert_page_state(const struct fm_object *obj, uint64_t pg)
{
	uint8_t st = obj->pgstate[pg];

	FM_ASSERT(!(st & FM_PG_DIRTY) || (st & FM_PG_RESIDENT),
	    "page %llu of %p dirty but not resident (%#x)",
	    (unsigned long long)pg, (const void *)obj, st);
}

static _Atomic uintptr_t *
ra_stream(struct fm_entry *e, unsigned i)
{
	return i == 0 ? &e->ra_next : &e->ra_more[i - 1];
}

/*
 * fault_around: how many pages a fault at va should map, from va on
 * (design notes: fault-around). Advances the stream it continues or
 * starts to just past the window. Clipped to the entry and the object.
 */
static unsigned
fault_around(struct fm_entry *e, uintptr_t va)
{
	uint64_t left = (e->end - va) >> FM_PAGE_SHIFT;
	uint64_t pg = fm__entry_pgidx(e, va);
	unsigned n, i = FM_AROUND_STREAMS, shift = 0;

	if (eng.around > 0)
		n = eng.around;
	else if (e->advice == MADV_RANDOM)
		n = 1;
	else if (e->advice == MADV_SEQUENTIAL)
		n = FM_AROUND_MAX;
	else {
		for (i = 0; i < FM_AROUND_STREAMS; i++) {
			uintptr_t s = atomic_load_explicit(ra_stream(e, i),
			    memory_order_relaxed);

			if (s != 0 && (s & ~(uintptr_t)FM_PAGE_MASK) == va) {
				shift = (unsigned)(s & FM_PAGE_MASK) + 1;
				break;
			}
		}
		if (i == FM_AROUND_STREAMS) /* a new stream */
			i = atomic_fetch_add_explicit(&e->ra_size, 1,
			        memory_order_relaxed) %
			    FM_AROUND_STREAMS;
		if (shift > FM_AROUND_SHIFT)
			shift = FM_AROUND_SHIFT;
		n = 1u << shift;
	}
	if (n > left)
		n = (unsigned)left;
	if (pg + n > e->obj->npages)
		n = pg < e->obj->npages ? (unsigned)(e->obj->npages - pg) : 1;
	if (n == 0)
		n = 1;
	if (i < FM_AROUND_STREAMS)
		atomic_store_explicit(ra_stream(e, i),
		    (va + ((uintptr_t)n << FM_PAGE_SHIFT)) | shift,
		    memory_order_relaxed);
	return n;
}

/*
 * A fault at va chose a window of want pages and maps k: the stream that
 * expects va + want expects va + k instead. Before the faulter is woken:
 * its next fault may reach another engine thread.
 */
static void
ra_advance(struct fm_entry *e, uintptr_t va, unsigned want, unsigned k)
{
	uintptr_t at = va + ((uintptr_t)want << FM_PAGE_SHIFT);

	if (k == want)
		return;
	for (unsigned i = 0; i < FM_AROUND_STREAMS; i++) {
		_Atomic uintptr_t *sp = ra_stream(e, i);
		uintptr_t s = atomic_load_explicit(sp, memory_order_relaxed);

		if ((s & ~(uintptr_t)FM_PAGE_MASK) == at) {
			uintptr_t to = (va + ((uintptr_t)k << FM_PAGE_SHIFT)) |
			    (s & FM_PAGE_MASK);

			(void)atomic_compare_exchange_strong_explicit(sp, &s,
			    to, memory_order_relaxed, memory_order_relaxed);
			return;
		}
	}
}

/*
 * A pager's error as the engine may report it: never one of the codes by
 * which the install tells the engine to wake or try again.
 */
static int
pager_errno(int r)
{
	if (r <= -4096 || r == -EEXIST || r == -ENOENT || r == -EAGAIN ||
	    r == -ESRCH)
		return -EIO;
	return r;
}

/*
 * Let the pager fill pages [pg, pg+n) (busy; n may be 0 when the page is
 * resident). *filled, *around and *rdonly come back from the pager.
 * => no object lock held
 */
static int
pager_fill(struct fm_entry *e, uint64_t pg, unsigned n, int access,
    unsigned *filled, unsigned *around, int *rdonly)
{
	struct fm_object *obj = e->obj;
	const struct fm_pagerops *ops = obj->ops;
	int r;

	*filled = 0;
	if (ops && ops->pgo_fault) {
		struct fm_fault f = {
		    .obj = obj,
		    .pgidx = pg,
		    .npages = n,
		    .around = *around,
		    .access = access,
		    .prot = e->prot,
		    .mapflags = e->flags & (MAP_SHARED | MAP_PRIVATE),
		};
		r = ops->pgo_fault(&f);
		if (r < 0)
			return pager_errno(r);
		if (n > 0 && (f.npages == 0 || f.npages > n))
			return -EIO; /* the handler did not fill the page */
		*filled = f.npages;
		if (f.around >= 1 && f.around < *around)
			*around = f.around;
		*rdonly = f.rdonly != 0;
		return 0;
	}
	if (n == 0)
		return 0;
	unsigned cnt = n;
	r = ops && ops->pgo_get ? ops->pgo_get(obj, pg, &cnt)
	                        : fm__object_zero(obj, pg, n);
	if (r < 0)
		return pager_errno(r);
	if (cnt == 0 || cnt > n)
		return -EIO;
	*filled = cnt;
	return 0;
}

/*
 * Map the resident pages of e from va on (at most around, all with the
 * write protection of the first): invariant 3. want: the window chosen.
 * => fm__map.lock and obj->pmaplock shared held
 */
static int
install_locked(struct fm_entry *e, uintptr_t va, uint64_t pg, unsigned around,
    unsigned want, int rdonly, size_t *mapped)
{
	struct fm_object *obj = e->obj;
	int shared = e->pmode == FM_PMAP_SHARED, wp = 0;
	unsigned k = 0;

	pthread_mutex_lock(&obj->lock);
	if (obj->pgstate[pg] & FM_PG_RESIDENT) {
		assert_page_state(obj, pg);
		wp = shared &&
		    (rdonly || fm__object_entry_wp(obj, obj->pgstate[pg]));
		for (k = 1; k < around; k++) {
			uint8_t st = obj->pgstate[pg + k];

			if (!(st & FM_PG_RESIDENT) ||
			    (shared &&
			        (rdonly || fm__object_entry_wp(obj, st)) != wp))
				break;
		}
	}
	pthread_mutex_unlock(&obj->lock);
	if (k == 0)
		return -ENOENT;
	ra_advance(e, va, want, k);
	return fm__pmap_enter(e->pm, va, (size_t)k << FM_PAGE_SHIFT, wp,
	    mapped);
}

/*
 * Whether e's faults may fill with zero_install: a zero-fill object in a
 * shared registration, without pgo_put (whose clean pages are mapped
 * write-protected).
 */
static int
zero_fill(const struct fm_entry *e)
{
	const struct fm_pagerops *ops = e->obj->ops;

	return e->pmode == FM_PMAP_SHARED &&
	    (ops == NULL ||
	        (!ops->pgo_get && !ops->pgo_fault && !ops->pgo_put));
}

/*
 * Zero-fill and map, with one UFFDIO_ZEROPAGE, the busy pages from va
 * (n of them, ours) that need no write protection: invariant 3.
 * => the pages mapped, a prefix; 0: none, fill them the usual way
 * => fm__map.lock and obj->pmaplock shared held; e is zero_fill
 */
static unsigned
zero_install(struct fm_entry *e, uintptr_t va, uint64_t pg, unsigned n,
    unsigned want, size_t *mapped)
{
	struct fm_object *obj = e->obj;
	unsigned k = 0;

	pthread_mutex_lock(&obj->lock);
	while (k < n && !fm__object_entry_wp(obj, obj->pgstate[pg + k]))
		k++;
	pthread_mutex_unlock(&obj->lock);
	if (k == 0)
		return 0;
	ra_advance(e, va, want, k);
	if (fm__pmap_zero(e->pm, va, (size_t)k << FM_PAGE_SHIFT, mapped) < 0)
		*mapped = 0;
	return (unsigned)(*mapped >> FM_PAGE_SHIFT);
}

/*
 * Fill the busy pages (zero_install, or the pager) and map one window
 * from va: the pmaplock is held shared across both, so no protect, clean
 * or discard comes between the fill and the install (a discard could
 * otherwise starve a fault by punching every fill before it is mapped).
 * => fm__map.lock shared held
 */
static int
fill_and_install(struct fm_entry *e, uintptr_t va, unsigned around, int access,
    size_t *mapped)
{
	struct fm_object *obj = e->obj;
	uint64_t pg = fm__entry_pgidx(e, va);
	unsigned n, filled, want = around;
	int rdonly = 0, r;

	pthread_rwlock_rdlock(&obj->pmaplock);
	fm__pmaplock_held = obj;
	n = fm__object_busy(obj, pg, around);
	if (n > 0 && zero_fill(e) &&
	    (filled = zero_install(e, va, pg, n, want, mapped)) > 0) {
		fm__object_unbusy(obj, pg, n, filled);
		r = 0;
	} else {
		r = pager_fill(e, pg, n, access, &filled, &around, &rdonly);
		fm__object_unbusy(obj, pg, n, r < 0 ? 0 : filled);
		if (r == 0)
			r = install_locked(e, va, pg, around, want, rdonly,
			    mapped);
		/*
		 * The state said resident, the kernel says not: the pager
		 * claimed a fill it did not make. Under the same hold of the
		 * pmaplock no one else fills or discards it: fill it again.
		 */
		if (r == -ENOENT)
			fm__object_set(obj, pg, 1, 0,
			    FM_PG_RESIDENT | FM_PG_DIRTY);
	}
	fm__pmaplock_held = NULL;
	pthread_rwlock_unlock(&obj->pmaplock);
	return r;
}

/*
 * Resolve a missing or minor fault at va: fill, then map; on a race, again.
 * => fm__map.lock shared held
 */
static enum answer
fault_page(struct fm_entry *e, uintptr_t va, uint64_t flags, pid_t tid)
{
	struct fm_object *obj = e->obj;
	uint64_t pg = fm__entry_pgidx(e, va);
	int access =
	    (flags & UFFD_PAGEFAULT_FLAG_WRITE) ? PROT_WRITE : PROT_READ;
	size_t mapped = 0;
	unsigned around;
	int r = -EIO;

	if (pg >= obj->npages)
		goto sigbus;
	if (flags & UFFD_PAGEFAULT_FLAG_MINOR) {
		/* The kernel has the page: a fill through the window. */
		fm__object_set(obj, pg, 1, FM_PG_RESIDENT, 0);
		atomic_fetch_add_explicit(&stats.minor, 1,
		    memory_order_relaxed);
	}
	around = fault_around(e, va);
	for (int tries = 0; tries < FM_FAULT_TRIES; tries++) {
		r = fill_and_install(e, va, around, access, &mapped);
		if (r == 0) {
			atomic_fetch_add_explicit(&stats.pages,
			    mapped >> FM_PAGE_SHIFT, memory_order_relaxed);
			return ANS_MAPPED;
		}
		/*
		 * EEXIST: another fault mapped it first. ESRCH: the mapping
		 * was replaced under us (MAP_FIXED): the thread's access now
		 * goes to whatever is there.
		 */
		if (r == -EEXIST || r == -ESRCH)
			return fm__pmap_wake(e->pm, va, FM_PAGE_SIZE) == 0
			    ? ANS_WOKEN
			    : ANS_NONE;
		if (r != -ENOENT && r != -EAGAIN)
			break; /* the pager failed: SIGBUS */
		atomic_fetch_add_explicit(&stats.retries, 1,
		    memory_order_relaxed);
	}
sigbus:
	atomic_fetch_add_explicit(&stats.sigbus, 1, memory_order_relaxed);
	return fm__pmap_sigbus(e->pm, tid, va, 0) == 0 ? ANS_SIGBUS : ANS_NONE;
}

/*
 * A write to a write-protected page: ask the write hook.
 * => fm__map.lock shared held
 */
static enum answer
fault_wp(struct fm_entry *e, uintptr_t va, pid_t tid)
{
	struct fm_object *obj = e->obj;
	uint64_t pg = fm__entry_pgidx(e, va);
	unsigned gen = atomic_load(&obj->protgen);
	int r = 0;

	atomic_fetch_add_explicit(&stats.wp, 1, memory_order_relaxed);
	if (e->pmode != FM_PMAP_SHARED)
		r = 0; /* only shared registrations are write-protected */
	else if (obj->ops && obj->ops->pgo_write)
		r = obj->ops->pgo_write(obj, pg);
	else if (fm__object_state(obj, pg) & FM_PG_RDONLY)
		r = -EACCES;
	if (r < 0) {
		/* Refused: SIGBUS; the page stays mapped read-only. */
		atomic_fetch_add_explicit(&stats.sigbus, 1,
		    memory_order_relaxed);
		return fm__pmap_sigbus(e->pm, tid, va, 1) == 0 ? ANS_SIGBUS
		                                               : ANS_NONE;
	}
	pthread_rwlock_rdlock(&obj->pmaplock);
	/*
	 * Discarded meanwhile (the retried write faults it back in), or its
	 * protection changed while the hook decided (the retried write is
	 * decided afresh): invariant 3.
	 */
	if (!(fm__object_state(obj, pg) & FM_PG_RESIDENT) ||
	    atomic_load(&obj->protgen) != gen) {
		pthread_rwlock_unlock(&obj->pmaplock);
		return fm__pmap_wake(e->pm, va, FM_PAGE_SIZE) == 0 ? ANS_WOKEN
		                                                   : ANS_NONE;
	}
	fm__object_set(obj, pg, 1, FM_PG_DIRTY, 0);
	r = fm__pmap_protect(e->pm, va, FM_PAGE_SIZE, 0, 1);
	pthread_rwlock_unlock(&obj->pmaplock);
	if (r == -ENOENT) /* the mapping was replaced under us */
		r = fm__pmap_wake(e->pm, va, FM_PAGE_SIZE);
	return r == 0 ? ANS_UNPROTECTED : ANS_NONE;
}

static void
resolve(struct fm_pmap *pm, const struct uffd_msg *m)
{
	uintptr_t va =
	    (uintptr_t)m->arg.pagefault.address & ~(uintptr_t)FM_PAGE_MASK;
	uint64_t flags = m->arg.pagefault.flags;
	pid_t tid = (pid_t)m->arg.pagefault.feat.ptid;
	enum answer a;
	struct fm_entry *e;

	atomic_fetch_add_explicit(&stats.faults, 1, memory_order_relaxed);
	pthread_rwlock_rdlock(&fm__map.lock);
	e = fm__map_lookup(va);
	if (e == NULL || e->pm != pm || e->obj == NULL)
		a = fm__pmap_wake(pm, va, FM_PAGE_SIZE) == 0 ? ANS_WOKEN
		                                             : ANS_NONE;
	else if (flags & UFFD_PAGEFAULT_FLAG_WP)
		a = fault_wp(e, va, tid);
	else
		a = fault_page(e, va, flags, tid);
	pthread_rwlock_unlock(&fm__map.lock);
	FM_ASSERT(a != ANS_NONE,
	    "fault at %#lx (flags %#llx) left unanswered: %s",
	    (unsigned long)va, (unsigned long long)flags, strerror(errno));
}

int
fm__fault_prefetch(struct fm_entry *e, uintptr_t va, uintptr_t end)
{
	while (va < end) {
		uint64_t pg = fm__entry_pgidx(e, va);
		uint64_t left = (end - va) >> FM_PAGE_SHIFT;
		unsigned around = FM_AROUND_MAX;
		size_t mapped = 0;
		int r;

		if (pg >= e->obj->npages)
			break;
		if (around > left)
			around = (unsigned)left;
		if (pg + around > e->obj->npages)
			around = (unsigned)(e->obj->npages - pg);
		r = fill_and_install(e, va, around, PROT_READ, &mapped);
		if (r < 0 && r != -EEXIST && r != -ENOENT && r != -EAGAIN)
			return r;
		va += mapped ? mapped : FM_PAGE_SIZE;
	}
	return 0;
}

/*
 * Read the next messages: the first comes back in *m, the others are
 * queued. => 1, or 0 when the read gave no fault
 * => eng.lock held, this thread a reader; returns with them
 */
static int
engine_read_locked(struct fm_pmap *pm, struct uffd_msg *m)
{
	struct uffd_msg msgs[FM_ENGINE_BATCH];
	ssize_t k;
	int got = 0;

	pthread_mutex_unlock(&eng.lock);
	k = read(pm->uffd, msgs, sizeof msgs);
	if (k < 0)
		FM_ASSERT(errno == EINTR || errno == EAGAIN,
		    "reading the userfaultfd: %s", strerror(errno));
	pthread_mutex_lock(&eng.lock);
	for (size_t i = 0; k > 0 && i < (size_t)k / sizeof msgs[0]; i++) {
		if (msgs[i].event != UFFD_EVENT_PAGEFAULT)
			continue;
		if (!got) {
			*m = msgs[i];
			got = 1;
			continue;
		}
		FM_ASSERT(eng.n < FM_ENGINE_QUEUE, "engine queue full (%u)",
		    eng.n);
		eng.q[(eng.head + eng.n++) % FM_ENGINE_QUEUE] = msgs[i];
		if (eng.idle > 0)
			pthread_cond_signal(&eng.cv);
	}
	return got;
}

static void *
engine_main(void *arg)
{
	struct fm_pmap *pm = arg;
	struct uffd_msg m = {0};

	pthread_mutex_lock(&eng.lock);
	for (;;) {
		if (eng.n > 0) {
			/* Queued faults first; another thread may read. */
			m = eng.q[eng.head];
			eng.head = (eng.head + 1) % FM_ENGINE_QUEUE;
			eng.n--;
			if (eng_reader) {
				eng_reader = 0;
				eng.readers--;
				if (eng.idle > 0)
					pthread_cond_signal(&eng.cv);
			}
		} else if (eng_reader || eng.readers == 0 || eng.shared) {
			if (!eng_reader) {
				eng_reader = 1;
				eng.readers++;
			}
			if (!engine_read_locked(pm, &m))
				continue;
		} else {
			eng.idle++;
			pthread_cond_wait(&eng.cv, &eng.lock);
			eng.idle--;
			continue;
		}
		pthread_mutex_unlock(&eng.lock);
		resolve(pm, &m);
		pthread_mutex_lock(&eng.lock);
	}
	return NULL;
}

static pthread_once_t engine_once = PTHREAD_ONCE_INIT;
static int engine_err;

static void
engine_setup(void)
{
	struct fm_pmap *pm = fm__pmap_kernel();
	const char *env = getenv("FOMAP_ENGINE_THREADS");
	int nthreads = env ? atoi(env) : 2;
	cpu_set_t cpus;
	sigset_t all, old;
	pthread_attr_t attr;

	if (pm == NULL) {
		engine_err = -errno;
		return;
	}
	if (nthreads < 1 || nthreads > FM_ENGINE_MAXTHREADS)
		nthreads = 2;
	if ((env = getenv("FOMAP_FAULT_AROUND")) != NULL && atoi(env) != 0) {
		int n = atoi(env);

		eng.around = n < 1           ? 1
		    : n > (int)FM_AROUND_MAX ? FM_AROUND_MAX
		                             : (unsigned)n;
	}
	/* A second reader only helps if it can run beside the first. */
	if (sched_getaffinity(0, sizeof cpus, &cpus) < 0 ||
	    CPU_COUNT(&cpus) > 1)
		eng.shared = 1;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	for (int i = 0; i < nthreads; i++) {
		pthread_t t;
		int r = pthread_create(&t, &attr, engine_main, pm);

		if (r != 0 && i == 0)
			engine_err = -r;
		if (r != 0)
			break;
		pthread_setname_np(t, "fomap-engine");
	}
	pthread_attr_destroy(&attr);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* Start the engine once. => 0, or the errno that stops it, negated. */
int
fm__engine_start(void)
{
	pthread_once(&engine_once, engine_setup);
	return engine_err;
}

void
fm_engine_stats(struct fm_stats *st)
{
	st->faults = atomic_load(&stats.faults);
	st->minor = atomic_load(&stats.minor);
	st->wp = atomic_load(&stats.wp);
	st->pages = atomic_load(&stats.pages);
	st->sigbus = atomic_load(&stats.sigbus);
	st->retries = atomic_load(&stats.retries);
}
