/*
 * fault.c: the fault engine. Engine threads read the userfaultfd of an
 * address space and resolve every fault through the faulting object's pager.
 *
 * ======================================================================
 * Design notes
 * ======================================================================
 *
 * Page states (obj->pgstate, one byte a page; fm__object_assert_locked):
 *
 *   EMPTY      not in the object store (as far as fomap knows)
 *   FILLING    BUSY: one thread's pager is filling it
 *   CLEAN      RESIDENT: in the store; for a pager with pgo_put, mapped
 *              write-protected in every shared mapping
 *   DIRTY      RESIDENT|DIRTY: written since it was last written back
 *   WRITEBACK  RESIDENT|BUSY: pgo_put is writing it back
 *   RDONLY     a flag on any state: the driver made the page read-only
 *   WRITING    a flag on a resident page: one write to it is being decided
 *              (the write hook runs); other writes to it wait
 *   REFUSING   with WRITING: that write was refused and its thread is
 *              being told; nothing makes the page writable meanwhile
 *
 * Transitions, each with the function that makes it, all under obj->lock:
 *
 *   EMPTY -> FILLING            fm__object_busy      (fault, prefetch)
 *   FILLING -> CLEAN | EMPTY    fm__object_unbusy    (pager done / failed,
 *                                                     or zero_install)
 *   CLEAN -> CLEAN|WRITING      fault_wp             (pmaplock shared)
 *   CLEAN|WRITING -> DIRTY      fault_wp             (write hook allowed,
 *                                                     pmaplock shared)
 *   CLEAN -> DIRTY              install_locked,      (a write with no hook
 *                               dirty_run_locked,     to ask, or the pager
 *                               set_dirty             filled it dirty:
 *                                                     pmaplock shared)
 *   DIRTY -> WRITEBACK          clean_pmaplocked     (pmaplock excl.: msync,
 *   WRITEBACK -> CLEAN | DIRTY                        last unmap, release,
 *                                                     discard; DIRTY again
 *                                                     if pgo_put failed)
 *   CLEAN | DIRTY -> EMPTY      fm_object_unmap      (DISCARD, pmaplock
 *                                                     excl.)
 *   RESIDENT -> EMPTY           forget_page          (the kernel has no such
 *                                                     page: pmaplock shared)
 *   any <-> any|RDONLY          fm_object_protect    (pmaplock excl.)
 *   EMPTY -> CLEAN              fm_object_write      (the driver wrote it)
 *
 * Invariants (asserted by fm__object_assert_locked at every transition:
 * 1 and 2 per page always, 2 to 4 against the page tables when
 * FOMAP_CHECK=1, which the test runner sets):
 *
 *   1. A page is filled by one thread at a time: only fm__object_busy makes
 *      an EMPTY page BUSY (FILLING) and only clean_pmaplocked a DIRTY one
 *      (WRITEBACK, clearing DIRTY first): a BUSY page is never DIRTY. A
 *      fill that failed keeps its page BUSY, with no lock held, until its
 *      refusal is told (refuse_held).
 *   2. A DIRTY page is RESIDENT; a page mapped in a shared mapping is
 *      RESIDENT; a BUSY page is never installed (install_locked stops at
 *      one, and waits on it when it is the faulting page).
 *   3. A page is installed only while obj->pmaplock is held shared and its
 *      state says RESIDENT and not BUSY, or says BUSY for the installing
 *      thread, which fills and maps it in one act (zero_install, only for
 *      pages whose state asks no write protection); the write protection
 *      it is installed with is read from its state under that same lock.
 *      Every change of what may be mapped, and how (protect, clean,
 *      discard), holds pmaplock exclusive and applies itself to every
 *      shared mapping before letting go; a mapping that leaves its
 *      object is write-protected first (fm__object_unlink), since such
 *      changes no longer reach it. So a mapping never holds a page more
 *      writable than its state allows, but for a write the write hook
 *      (or, without one, the page's state) allowed, which makes the page
 *      DIRTY under the same shared lock first.
 *   4. For a pager with pgo_put, a page writable in some mapping is DIRTY:
 *      clean_pmaplocked write-protects before it clears DIRTY, and a
 *      mapping that is being removed is write-protected when it leaves its
 *      object (fm__object_unlink), before the kernel removes it.
 *   5. No page is installed into an entry that has left its object: an
 *      install holds the entry (entry_hold_locked: it is not dead) across
 *      its ioctl, and fm__object_unlink marks it dead and waits for the
 *      installs under way before the kernel may remove or replace its
 *      memory. New memory is registered with the uffd only after the stale
 *      entries at its address are gone (enter_new), and MAP_FIXED moves a
 *      registered mapping into place (replace), so an install meant for an
 *      old mapping can never reach a new one.
 *   6. Every fault read from the uffd is answered exactly once with an act
 *      that wakes its thread: a mapped prefix that starts at the faulting
 *      page, a wake (EEXIST, the entry is gone or dying, or the message is
 *      stale), an unprotect (write allowed), a SIGBUS to the faulting
 *      thread, or a poison (a refusal inside a system call, or a thread
 *      that blocks SIGBUS). resolve_fault() asserts that one happened.
 *
 * Locks (vm.h gives the order): no map lock is held across a pager call or
 * a blocking kernel call; a fault holds a reference on its entry instead.
 * fm__map.oplock serialises the calls that change the address space and
 * is never taken by the engine, so the engine can always read the uffd
 * (the kernel's munmap and mremap wait until their event is read).
 *
 * Races and what answers them:
 *
 *   two faults on one page      the second waits on BUSY, then finds the
 *                               page RESIDENT; its enter gives EEXIST: wake
 *   a fault on a page being     it waits on BUSY like any other: the kind of
 *   filled (a MINOR fault, the  fault (MINOR or MISSING) never decides;
 *   page half in the store)     the page's state does
 *   fault-around over a busy    install_locked stops before the busy page
 *   page
 *   fault vs fm_munmap          invariant 5; a fault on a dead entry is
 *                               woken and retried until the memory is gone
 *   fault vs MAP_FIXED          invariant 5 (replace)
 *   fault vs discard            enter gives ENOENT: fill again (bounded)
 *   fault vs protect            invariant 3
 *   write vs write              one write per page is decided at a time
 *                               (WRITING); a write whose PTE is writable
 *                               or gone when its turn comes (pagemap) is
 *                               woken (wp_mapped)
 *   write hook vs protect       the hook decides with no lock held (it may
 *                               protect or remove); if the page's
 *                               protection changed meanwhile (its count in
 *                               fm__object_gen), the write is woken to
 *                               fault again and be decided afresh (a
 *                               second hook call: the protection changed;
 *                               a change to other pages is none)
 *   a pager's own error codes   mapped to EIO (pager_errno): a pager can
 *                               never make the engine wake or retry
 *   write allowed vs install    an install that maps write-protected
 *                               keeps obj->lock across its CONTINUE, so
 *                               it is before the write's DIRTY (and the
 *                               unprotect follows it) or sees DIRTY
 *   protect across a page away  the kernel stops at the page: the rest is
 *                               protected a page at a time
 *                               (fm__fault_protect)
 *   fm_mprotect vs a refusal    it waits for the refusals being told in
 *                               its range and holds the next ones; a
 *                               refusal whose mapping no longer allows
 *                               the access, or whose page an fm_mprotect
 *                               ended over since its message was read
 *                               (the access may have ended with SIGSEGV
 *                               then, even if the protection is back:
 *                               mprot_since_locked), is not told: woken,
 *                               a thread still in it faults again and is
 *                               told then (its kept refusal)
 *   write vs write-back         invariant 4: the write faults, re-dirties
 *   a refusal vs an install     an install woke every thread at the page:
 *   at its page                 a refusal whose page was mapped since its
 *                               message was read is not told; installs and
 *                               the SIGBUS hold the page's stripe lock
 *                               (enter_answered, tell_user)
 *   a fault on a page moved     woken: its retry waits in the user-mode-
 *   away (swap_page)            only uffd until the page is back
 *   the engine's own moves      their UNMAP and REMAP events are expected
 *                               (own_expect) and not followed
 *   an event waiting (EAGAIN)   the kernel refuses page-table changes until
 *                               the munmap/mremap event is read: the caller
 *                               reads the uffd itself (pm->drain), retries
 *   zero fill vs a page put in  ZEROPAGE gives EEXIST: fill the usual way
 *   the store by other means    (fallocate keeps the page, CONTINUE maps it)
 *   raw munmap / mremap         the UNMAP/REMAP event is recorded as gone
 *                               before the program's call returns (read
 *                               under gone.lock): zaps skip the range; the
 *                               map then drops (or moves) the entries older
 *                               than the event (fm__map_gone)
 *
 * Duplicate messages and refusals: a thread interrupted by a signal while
 * it waits in a fault leaves the fault, runs its handler and faults again:
 * a second message for the same access. The last message read from each
 * thread is remembered (thr); a message that is not its thread's last is
 * only woken (unless the thread faults there without end, to_decide: a
 * system call retried while a signal is pending). A refusal is delivered only while the thread is still in
 * the access (its last message, or its last is at the same page for the
 * same access: it left the fault for a handler and faulted again) and
 * waits in a fault (/proc: fm__pmap_thread). From
 * user mode it is a SIGBUS sent to the thread (si_addr the exact address
 * when the kernel gives it, SI_QUEUE, si_errno the error); from inside a
 * system call (which the kernel would retry forever while a signal is
 * pending) the page is moved to the user-mode-only uffd (swap_page) until
 * the call has failed with EFAULT, and back: other threads' accesses from
 * user mode wait meanwhile, and are served afresh; a thread that blocks
 * SIGBUS gets the page poisoned (the kernel's own SIGBUS). A refusal the
 * thread did not get is kept for that thread's retry, which is refused without asking the pager or the hook
 * again. A thread that has gone gets nothing.
 *
 * A refusal must reach the access it was made for, never a later one, so
 * from its decision until its thread has taken the SIGBUS nothing may let
 * that access through or end it otherwise:
 *
 *   - the page is held: a failed fill keeps it BUSY (other faults wait,
 *     nothing installs it), a refused write keeps its turn (WRITING) and
 *     marks it REFUSING (fm_object_protect waits before it unprotects);
 *   - the entry is held (entry_hold_locked): the memory is neither removed
 *     nor replaced under the thread;
 *   - one refusal is told to a thread at a time (tell .. told): a message
 *     read meanwhile may be the same access (read before the thread took
 *     the SIGBUS) or a new one; told() decides, once the SIGBUS is taken,
 *     that the thread's messages at the page read so far were the old one.
 *
 * Filling and mapping (fill_and_install):
 *
 *   - The pager fills the busy run through the vm.h wrappers (pgo_fault,
 *     else pgo_get, whose default is the anonymous pager's fallocate:
 *     pager_anon.c); install_locked maps the resident run with
 *     UFFDIO_CONTINUE, write-protected or not as the first page's state
 *     says.
 *   - A zero-fill object (fm__pgo_zero_fill: the anonymous pager, or a
 *     pager with no pgo_get and no pgo_fault of its own; and no pgo_put)
 *     in a shared registration fills and maps its busy run with one
 *     UFFDIO_ZEROPAGE (zero_install): the kernel allocates each page in
 *     the store's page cache and maps it writable, so only the prefix of
 *     the run that is not RDONLY; the rest is filled the usual way (by
 *     fm__anon_get). Never for a private
 *     registration, where ZEROPAGE maps the zero page and the object
 *     would never see the page.
 *
 * Writes at once (write_at_once): a write to a clean page of a pager that
 * tracks dirty pages (pgo_put) and has no write hook is allowed by the
 * page's state alone (not read-only), so the engine does not map the page
 * write-protected to ask again at once: a write fault that fills or maps
 * it (install_locked) makes it DIRTY and maps it writable in one act, as
 * the kernel's own dirtying does. A sequential writer (its fault-around
 * stream) dirties a window of up to FM_DIRTY_AROUND pages a fault, at a
 * fill, a minor fault or a write-protect fault (dirty_run_locked): pages
 * of the window it does not write are written back unchanged, never
 * more than that window past its last write. A pager's handler may also
 * fill pages dirty (fm_fault.dirty). Dirty tracking stays exact in the
 * sense of invariant 4: a page writable anywhere is DIRTY, and write-back
 * protects it again before it is clean.
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
 * Read-ahead (readahead_plan, readahead_run): a fault that maps a window
 * of FM_RA_MIN pages or more of a sequential stream, on a pager whose
 * fill costs (a pgo_get of its own: not zero-fill, not a pgo_fault, which
 * decides per fault), leaves the next window, twice as large (at most
 * FM_AROUND_MAX), to be filled by the engine thread that answered it,
 * once it has: the reader runs on while its next window is filled beside
 * it. Only when the engine may use several CPUs (on one there is nothing
 * to overlap). The window is filled, not mapped: its pages go EMPTY ->
 * FILLING -> CLEAN like any fill, under pmaplock shared (so a removal or
 * protect is before or after it, never between the fill and its pages'
 * state), skipping a window a fault or another read-ahead has begun; a
 * failed fill is left for the reader's own fault, which tells it. The
 * reader's fault in that window is then a minor one, and reads the next
 * window ahead.
 *
 * Address spaces: the engine serves this process's own and those of other
 * processes (kern/client.c: fomapd's clients) with the same threads and
 * the same code. Their userfaultfds are in one epoll set (eng.set), each
 * message carries the address space it came from (emsg.pm, and f->pm),
 * and its map is that space's (fm__vmspace_of). What is kept by address
 * is kept by address space where a mix-up could be wrong: gone ranges
 * (an event of one space never covers another's entries) and pages moved
 * away (only this process's: a client's page refused inside a system call
 * is poisoned for the moment instead). What is hashed by address alone
 * (pans, stripes, telling, mprot) only errs on the side that is safe when
 * two spaces share a slot: a fault woken to fault again, a lock shared, a
 * refusal held or not told at once. Threads are known by their thread id,
 * which is the kernel's for every process of one pid namespace (clients
 * must be in fomapd's). fm__engine_unserve ends a space: its queued
 * faults woken, its faults in progress (pm->inflight) and events awaited.
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
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "vm/vm.h"

#define FM_AROUND_SHIFT 8 /* log2 of the largest window */
#define FM_AROUND_MAX (1u << FM_AROUND_SHIFT) /* pages */
#define FM_AROUND_STREAMS 4 /* e->ra_next and e->ra_more */
#define FM_DIRTY_AROUND 64 /* pages a sequential write dirties at most */
#define FM_RA_MIN 4 /* a window this large: the next one is read ahead */
#define FM_FAULT_TRIES 64 /* fills before a fault gives up (SIGBUS) */
#define FM_ENGINE_MAXTHREADS 16 /* at start */
#define FM_ENGINE_POOL 64 /* at most, when threads wait on pagers */
#define FM_STALL_US 2000 /* a reader waiting this long: another reads */
#define FM_ENGINE_BATCH 8 /* messages a read takes at most */
#define FM_ENGINE_QUEUE (FM_ENGINE_MAXTHREADS * FM_ENGINE_BATCH)
#define FM_TSLOTS 1024 /* faulting threads remembered (a hint) */
#define FM_NOENTRY_MAX 32 /* faults of a thread at a page with no entry */
#define FM_GONE_TRIES 10000 /* reads for an event a call says waits */
#define FM_LOOK_TRIES 8 /* looks at a running thread before deciding */
#define FM_LOOK_US 10 /* between two looks */
#define FM_SPIN_MSGS 32 /* messages in a row: a syscall's fault retried */
#define FM_SPIN_US 20000 /* ... over refusals not told this long, */
#define FM_SPIN_LONG_MSGS 8 /* ... with these messages more */
#define FM_REFUSAL_US 20000 /* a kept refusal is for this access only */
#define FM_ACCESS_FLAGS (UFFD_PAGEFAULT_FLAG_WRITE | UFFD_PAGEFAULT_FLAG_WP)
#define FM_EFAULT_WAIT_US 20000 /* how long a refusal waits for its syscall */
#define FM_STUCK_WAIT_US 2000 /* ... for one that retried without sleeping, */
#define FM_STUCK_RUN_NS 200000 /* ... and ran this long since (or left) */
#define FM_TAKEN_WAIT_US 200000 /* ... for its thread to take its SIGBUS */

_Static_assert(sizeof(((struct fm_entry *)0)->ra_more) ==
        (FM_AROUND_STREAMS - 1) * sizeof(uintptr_t),
    "fault-around streams");
_Static_assert(FM_AROUND_SHIFT < FM_PAGE_SHIFT, "window shift in an offset");

static struct {
	atomic_ulong faults, minor, wp, pages, sigbus, retries;
	atomic_ulong latency[FM_LATENCY_BUCKETS]; /* fm_engine_latency */
} stats;

/* The object whose pmaplock this thread holds shared for a fill, if any. */
__thread struct fm_object *fm__pmaplock_held;
__thread int fm__quiet_thread;
atomic_uint fm__map_behind;

/* A message as the engine queues it: seq orders a thread's messages. */
struct emsg {
	struct fm_pmap *pm; /* the address space it came from */
	struct uffd_msg m;
	uint64_t seq;
	int64_t read_us; /* when it was read (now_us) */
	uint64_t mprot_gen; /* fm_mprotects ended before it was read */
};

static int64_t now_us(void);

/* The engine threads (design notes); all but the constants under lock. */
static struct {
	pthread_mutex_t lock;
	pthread_cond_t cv; /* a message queued, or no reader */
	struct emsg *q; /* a ring of cap messages */
	unsigned head, n, cap;
	int readers; /* threads that read, or may read next */
	int idle; /* threads waiting on cv */
	int nthreads; /* engine threads */
	int blocked; /* ... in a pager's hook or waiting for a page */
	int64_t stalled_since; /* a reader has waited since (now_us), or 0 */
	int shared; /* every thread may read (several CPUs) */
	unsigned around; /* FOMAP_FAULT_AROUND, or 0 */
	int set; /* the address spaces served, and the kick (pmap.c) */
} eng = {.lock = PTHREAD_MUTEX_INITIALIZER,
    .cv = PTHREAD_COND_INITIALIZER,
    .set = -1};

/* Written when messages are queued by a thread outside the engine. */
static int kickfd = -1;

/*
 * This thread counts in eng.readers; is an engine thread; and how deep it
 * is in engine_block.
 */
static __thread int eng_reader, eng_thread, eng_blocking;

struct fault;
static int enter_answered(const struct fault *f, size_t len, int wp,
    size_t *mapped, int zero);
static int engine_spawn(void);
static int engine_spawn_fn(struct fm_pmap *pm, void *(*fn)(void *),
    const char *name);
static int engine_drain(struct fm_pmap *pm);

/*
 * An engine thread is about to wait (a pager's hook, a page another fault
 * fills): it gives up reading, and if every engine thread waits, one more
 * starts, so that a slow pager never stalls an unrelated fault.
 */
static void
engine_block(void)
{
	int spawn = 0;

	if (!eng_thread || eng_blocking++ > 0)
		return;
	pthread_mutex_lock(&eng.lock);
	eng.blocked++;
	/*
	 * A reader that waits keeps its role (no wake-up on the fast path):
	 * a waiting thread takes over once it has waited FM_STALL_US.
	 */
	if (eng_reader && eng.stalled_since == 0)
		eng.stalled_since = now_us();
	if (eng.blocked >= eng.nthreads && eng.nthreads < FM_ENGINE_POOL) {
		eng.nthreads++;
		spawn = 1;
	}
	pthread_mutex_unlock(&eng.lock);
	if (spawn && engine_spawn() < 0) {
		pthread_mutex_lock(&eng.lock);
		eng.nthreads--;
		pthread_mutex_unlock(&eng.lock);
	}
}

static void
engine_unblock(void)
{
	if (!eng_thread || --eng_blocking > 0)
		return;
	pthread_mutex_lock(&eng.lock);
	eng.blocked--;
	if (eng_reader)
		eng.stalled_since = 0;
	pthread_mutex_unlock(&eng.lock);
}

/*
 * The last message read from each faulting thread (design notes: duplicate
 * messages), hashed by thread id; a leaf lock.
 */
struct tslot {
	pid_t tid;
	uint64_t seq; /* its last message */
	uintptr_t va; /* the page of that message */
	uint64_t flags; /* and its access (FM_ACCESS_FLAGS) */
	uintptr_t prevva; /* the page of its messages before, */
	uint64_t prevseq; /* and the last of them */
	unsigned noentry; /* its faults in a row at va that found no entry */
	unsigned atva; /* its messages in a row at va */
	int deciding; /* its access is decided by a message not its last */
	uintptr_t refused; /* a page whose access it was refused, not told */
	unsigned refgen; /* refusal_gen of that refusal */
	int referr; /* and its error */
	int64_t refwhen; /* and when (now_us) */
	uint64_t refflags; /* and for what access (write, write-protect) */
	uint64_t refseq; /* and its message */
	uintptr_t allowed; /* a page its write was let through to, not mapped */
	unsigned allowgen; /* allow_gen then */
	/* ... and the page it was: another object's there now is not it. */
	const struct fm_object *allowobj;
	uint64_t allowpg;
	/*
	 * thr.seq when it was last told of a refusal: its messages read
	 * before that belong to the access that refusal ended.
	 */
	uint64_t told;
	int telling; /* a refusal is being told to it (tell .. told) */
	/*
	 * Since when (now_us) every look at it, over refusals at va not
	 * told, found it running with a signal pending (0: not so), and its
	 * messages at va then (atva).
	 */
	int64_t spin_since;
	int64_t spin_last; /* the last such look */
	unsigned spin_atva;
};
static struct {
	pthread_mutex_t lock;
	uint64_t seq;
	struct tslot s[FM_TSLOTS];
} thr = {.lock = PTHREAD_MUTEX_INITIALIZER};

/*
 * The last time each page was mapped or made writable, hashed by address:
 * seq_bound then. The install or unprotect woke every thread that waited
 * at the page, so each message of it read before is answered. Pages that
 * share a slot share it: a message may be taken for answered when it is
 * not (its thread is woken and faults again), never the other way.
 * seq_bound: the sequence number of the last message read, or while a
 * read is under way, the largest it may note (read_batch).
 */
#define FM_ASLOT_BITS 12
static atomic_uint_least64_t pans[1 << FM_ASLOT_BITS];
static atomic_uint_least64_t seq_bound;

/* x hashed to bits bits (Fibonacci): no layout of pages shares slots. */
static unsigned
hash_bits(uint64_t x, unsigned bits)
{
	return (unsigned)((x * 0x9e3779b97f4a7c15ULL) >> (64 - bits));
}

static unsigned
aslot(uintptr_t va)
{
	return hash_bits(va >> FM_PAGE_SHIFT, FM_ASLOT_BITS);
}

/*
 * Address ranges the kernel has unmapped or moved (an UNMAP or REMAP event
 * read) whose entries have not left the map yet: no zap may reach them
 * (the program may have mapped its own memory there). Under evlock, which
 * is also held across each read of the userfaultfd, so that a range is
 * recorded before the program's munmap or mremap can return.
 */
static struct {
	pthread_mutex_t lock;
	struct gone {
		struct fm_pmap *pm; /* whose uffd said so */
		uintptr_t start, end;
		uintptr_t to; /* REMAP: where it went; UNMAP: 0 */
		uint64_t gen;
		int forkfd; /* FORK: the child's uffd (ours now), else -1 */
	} * v; /* in the order read */
	unsigned n, cap;
	atomic_uint pending; /* n, read without the lock */
	atomic_int reading; /* a read is under way: it may bring one */
	atomic_int burying; /* entries of followed events not yet buried */
} gone = {.lock = PTHREAD_MUTEX_INITIALIZER};

/*
 * Whether g leaves the map behind the kernel until it is followed (a
 * fork's child, a move: vm.h, fm__map_behind), counted from its read to
 * its following.
 */
static int
puts_map_behind(const struct gone *g)
{
	return g->forkfd >= 0 || g->to != 0;
}

/*
 * The engine's own moves of a page (swap): the events they make on the
 * uffd, which are not the program's (UNMAP: a, b the range; REMAP: a the
 * source, b where it went), and the pages moved away meanwhile. Under
 * gone.lock.
 */
#define FM_OWN_MAX 64
static struct {
	struct own {
		int event;
		uintptr_t a, b;
	} ev[FM_OWN_MAX];
	unsigned nev;
	uintptr_t va[FM_OWN_MAX]; /* pages registered with uffd_user now */
	int lost[FM_OWN_MAX]; /* the program unmapped or moved it since */
	unsigned nva;
	atomic_uint swapped; /* nva, read without the lock */
} own;

/* Whether an event is one the engine's own move made. => gone.lock held */
static int
own_take_locked(int event, uintptr_t a, uintptr_t b)
{
	for (unsigned i = 0; i < own.nev; i++)
		if (own.ev[i].event == event && own.ev[i].a == a &&
		    own.ev[i].b == b) {
			own.ev[i] = own.ev[--own.nev];
			return 1;
		}
	return 0;
}

enum answer { ANS_NONE, ANS_MAPPED, ANS_WOKEN, ANS_UNPROTECTED, ANS_SIGBUS };

/* What resolving one fault needs to know, read under the map lock. */
struct fault {
	struct fm_pmap *pm;
	struct fm_entry *e; /* referenced */
	uintptr_t va; /* the page */
	uintptr_t addr; /* the exact address, when the kernel gives it */
	uint64_t flags;
	pid_t tid;
	uint64_t seq;
	uint64_t mprot_gen; /* fm_mprotects ended before it was read */
	uintptr_t end; /* e->end */
	int prot, advice;
};

/*
 * The invariants of the design notes that one page's state can show.
 * => obj->lock held
 */
static void
assert_page_locked(const struct fm_object *obj, uint64_t pg)
{
	uint8_t st = obj->pgstate[pg];

	FM_ASSERT(!(st & FM_PG_DIRTY) || (st & FM_PG_RESIDENT),
	    "invariant 2: page %llu of %p dirty but not resident (%#x)",
	    (unsigned long long)pg, (const void *)obj, st);
	FM_ASSERT(!(st & FM_PGS_BUSY) || !(st & FM_PG_DIRTY),
	    "invariant 1: page %llu of %p busy and dirty (%#x)",
	    (unsigned long long)pg, (const void *)obj, st);
}

/* FOMAP_CHECK=1 (the test runner sets it): check the page tables too. */
static int
check_ptes(void)
{
	static int on = -1;

	if (on < 0) {
		const char *v = getenv("FOMAP_CHECK");
		on = v != NULL && atoi(v) > 0;
	}
	return on;
}

#define FM_CHECK_PAGES 64 /* pages a transition checks in the page tables */

/*
 * Invariants 2, 3 and 4 as the page tables show them, in every live shared
 * mapping of pages [pg, pg+n) that no thread is filling or deciding: a
 * mapped page is resident; a page writable there is DIRTY if the pager
 * tracks dirty pages, and not RDONLY unless a write hook let it be.
 * => obj->lock held
 */
static int gone_any(const struct fm_entry *e);

static void
assert_ptes_locked(const struct fm_object *obj, uint64_t pg, uint64_t n)
{
	if (n > FM_CHECK_PAGES)
		n = FM_CHECK_PAGES;
	for (const struct fm_entry *e = fm__object_overlap_first(obj, pg, n); e;
	     e = fm__object_overlap_next(obj, e, pg, n)) {
		uint64_t epg = (e->end - e->start) >> FM_PAGE_SHIFT;

		if (e->pm == NULL || e->pmode != FM_PMAP_SHARED || gone_any(e))
			continue; /* (its memory may not be its any more) */
		for (uint64_t i = pg > e->pgoff ? pg : e->pgoff;
		     i < pg + n && i < e->pgoff + epg; i++) {
			uint8_t st = obj->pgstate[i];
			int w;

			if (st & (FM_PGS_BUSY | FM_PGS_WRITING))
				continue;
			w = fm__pmap_wp_state(e->pm,
			    e->start + ((i - e->pgoff) << FM_PAGE_SHIFT));
			FM_ASSERT(w < 0 || (st & FM_PG_RESIDENT),
			    "invariant 2: page %llu of %p mapped, not resident "
			    "(%#x)",
			    (unsigned long long)i, (const void *)obj, st);
			FM_ASSERT(w != 0 || !fm__pgo_has_put(obj) ||
			        (st & FM_PG_DIRTY),
			    "invariant 4: page %llu of %p writable, not dirty "
			    "(%#x)",
			    (unsigned long long)i, (const void *)obj, st);
			FM_ASSERT(w != 0 || !(st & FM_PG_RDONLY) ||
			        fm__pgo_has_write(obj),
			    "invariant 3: page %llu of %p writable, read-only "
			    "(%#x)",
			    (unsigned long long)i, (const void *)obj, st);
		}
	}
}

/*
 * assert_object_state: every invariant of the design notes that pages
 * [pg, pg+n) of obj can show; called at every transition of their state.
 * => obj->lock held
 */
void
fm__object_assert_locked(const struct fm_object *obj, uint64_t pg, uint64_t n)
{
	for (uint64_t i = pg; i < pg + n && i < obj->npages; i++)
		assert_page_locked(obj, i);
	if (check_ptes() && !(obj->flags & FM_OBJ_HOST))
		assert_ptes_locked(obj, pg, n);
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
fault_around(const struct fault *f)
{
	struct fm_entry *e = f->e;
	uintptr_t va = f->va;
	uint64_t left = (f->end - va) >> FM_PAGE_SHIFT;
	uint64_t pg = fm__entry_pgidx(e, va);
	unsigned n, i = FM_AROUND_STREAMS, shift = 0;

	if (eng.around > 0)
		n = eng.around;
	else if (f->advice == MADV_RANDOM)
		n = 1;
	else if (f->advice == MADV_SEQUENTIAL)
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
	    r == -ESRCH || r == -ESTALE)
		return -EIO;
	return r;
}

/* What the pager made of a fill (pager_fill). */
struct fill {
	unsigned filled; /* pages it filled */
	unsigned around; /* in: the window; out: the pager's choice */
	int rdonly; /* map them write-protected */
	int dirty; /* the pages filled are dirty now */
	unsigned wdirty; /* a write's pages made dirty at once (write_at_once) */
};

/*
 * Let the pager fill pages [pg, pg+n) (busy; n may be 0 when the page is
 * resident); fl->around in, and fl's other fields, come back from it.
 * => obj->pmaplock held shared, no object lock
 */
static int
pager_fill(const struct fault *f, uint64_t pg, unsigned n, struct fill *fl)
{
	struct fm_object *obj = f->e->obj;
	int r;

	fl->filled = 0;
	fl->rdonly = fl->dirty = 0;
	if (fm__pgo_has_fault(obj)) {
		struct fm_fault ff = {
		    .obj = obj,
		    .pgidx = pg,
		    .npages = n,
		    .around = fl->around,
		    .access = (f->flags & UFFD_PAGEFAULT_FLAG_WRITE)
		        ? PROT_WRITE
		        : PROT_READ,
		    .prot = f->prot,
		    .mapflags = f->e->flags & (MAP_SHARED | MAP_PRIVATE),
		};
		r = fm__pgo_fault(&ff);
		if (r < 0)
			return pager_errno(r);
		if (n > 0 && (ff.npages == 0 || ff.npages > n))
			return -EIO; /* the handler did not fill the page */
		fl->filled = n > 0 ? ff.npages : 0;
		if (ff.around >= 1 && ff.around < fl->around)
			fl->around = ff.around;
		fl->rdonly = ff.rdonly != 0;
		fl->dirty = ff.dirty != 0 && fl->filled > 0;
		return 0;
	}
	if (n == 0)
		return 0;
	unsigned cnt = n;
	r = fm__pgo_get(obj, pg, &cnt);
	if (r < 0)
		return pager_errno(r);
	if (cnt == 0 || cnt > n)
		return -EIO;
	fl->filled = cnt;
	return 0;
}

/*
 * Hold e for an act on its memory: => 0 while e is in the map (its removal
 * then waits for entry_unhold_locked), -ESTALE once it is leaving it.
 * => obj->lock held
 */
static int
entry_hold_locked(struct fm_entry *e)
{
	if (e->dead)
		return -ESTALE;
	e->installing++;
	return 0;
}

static void
entry_unhold(struct fm_entry *e)
{
	struct fm_object *obj = e->obj;

	pthread_mutex_lock(&obj->lock);
	FM_ASSERT(e->installing > 0, "entry %p not held", (void *)e);
	if (--e->installing == 0) /* a removal or a split may wait */
		pthread_cond_broadcast(&obj->busycv);
	pthread_mutex_unlock(&obj->lock);
}

/*
 * Hold e for an act on its memory from va: => 0 with the pages of e from
 * there in *room; -ESTALE, nothing held: e is leaving the map, or va is
 * not in it (a split has left it out since the fault began). An act
 * stops at *room: the kernel may apply a protect to whatever mapping
 * follows e, and a split may have shrunk it.
 * => obj->lock held
 */
static int
entry_hold_at_locked(struct fm_entry *e, uintptr_t va, uint64_t *room)
{
	int r;

	if (va < e->start || va >= e->end)
		return -ESTALE;
	if ((r = entry_hold_locked(e)) == 0)
		*room = (e->end - va) >> FM_PAGE_SHIFT;
	return r;
}

/*
 * The entry that maps page pg of f's object at f->va now, held
 * (entry_hold_at_locked): f's own while the page is still in it, else the
 * part of it a split (fm_mprotect) gave the page to, found on the object's
 * tree, so that a write let through reaches the page there: left DIRTY
 * and write-protected, the page would have other writers ask the hook
 * again.
 * => NULL: no mapping of the page is there any more; *room: the held
 *    entry's pages from f->va
 * => obj->lock held
 */
static struct fm_entry *
entry_hold_page_locked(const struct fault *f, uint64_t pg, uint64_t *room)
{
	struct fm_object *obj = f->e->obj;
	struct fm_entry *e;

	if (entry_hold_at_locked(f->e, f->va, room) == 0)
		return f->e;
	for (e = fm__object_overlap_first(obj, pg, 1); e != NULL;
	     e = fm__object_overlap_next(obj, e, pg, 1))
		if (e->pm == f->pm && e->start <= f->va &&
		    fm__entry_pgidx(e, f->va) == pg &&
		    entry_hold_at_locked(e, f->va, room) == 0)
			return e;
	return NULL;
}

/* Whether a fault on page pg would wait (BUSY, or the flag given). */
static int
page_waits(struct fm_object *obj, uint64_t pg, uint8_t flag)
{
	int r;

	pthread_mutex_lock(&obj->lock);
	r = (obj->pgstate[pg] & (FM_PGS_BUSY | flag)) != 0;
	pthread_mutex_unlock(&obj->lock);
	return r;
}

/*
 * Whether f, a write, makes the clean pages it maps DIRTY and writable at
 * once, as the kernel's own dirtying does: a shared mapping of a pager
 * that tracks dirty pages (pgo_put) with no write hook (whose default
 * allows every write but to a read-only page, which stays protected).
 */
static int
write_at_once(const struct fault *f)
{
	struct fm_object *obj = f->e->obj;

	return (f->flags & UFFD_PAGEFAULT_FLAG_WRITE) &&
	    f->e->pmode == FM_PMAP_SHARED && (f->prot & PROT_WRITE) &&
	    fm__pgo_has_put(obj) && !fm__pgo_has_write(obj);
}

/*
 * How many pages of a window of want a write makes dirty at once
 * (write_at_once): a sequential writer's window, but no more than
 * FM_DIRTY_AROUND, since the pages it does not write after all are
 * written back unchanged.
 */
static unsigned
dirty_window(unsigned want)
{
	return want < FM_DIRTY_AROUND ? want : FM_DIRTY_AROUND;
}

/*
 * How page pg, k pages into f's window, is installed: whether the
 * install makes it DIRTY first (*dirty: f writes it at once, and no
 * protection or write decision is on it), and
 * => whether it is mapped write-protected, as its state will say.
 * => obj->lock held
 */
static int
install_wp(const struct fault *f, const struct fill *fl, uint64_t pg,
    unsigned k, int *dirty)
{
	struct fm_object *obj = f->e->obj;
	uint8_t st = obj->pgstate[pg];

	*dirty = !fl->rdonly && k < fl->wdirty &&
	    !(st & (FM_PG_RDONLY | FM_PGS_WRITING | FM_PGS_REFUSING));
	if (*dirty)
		st |= FM_PG_DIRTY;
	return f->e->pmode == FM_PMAP_SHARED &&
	    (fl->rdonly || fm__object_entry_wp(obj, st));
}

#define FM_NOT_SEEN UINT64_MAX /* install_locked: the state said EMPTY */

/*
 * Map the resident pages of e from va on (at most fl->around, all with
 * the write protection of the first, none busy), each made DIRTY first
 * where install_wp says: invariants 2 to 4. want: the window chosen.
 * => -ENOENT: va's page is not resident (*seen: FM_NOT_SEEN when its
 *    state said so, else obj->forgets when the state said resident, for
 *    forget_page); -ESTALE: e is leaving the map; else as fm__pmap_enter
 * => obj->pmaplock held shared
 */
static int
install_locked(const struct fault *f, uint64_t pg, const struct fill *fl,
    unsigned want, size_t *mapped, uint64_t *seen)
{
	struct fm_entry *e = f->e;
	struct fm_object *obj = e->obj;
	int wp = 0, r, dirty, made = 0;
	unsigned k = 0, around = fl->around;
	uint64_t room;
	uint8_t st;

	pthread_mutex_lock(&obj->lock);
	if ((r = entry_hold_at_locked(f->e, f->va, &room)) < 0) {
		pthread_mutex_unlock(&obj->lock);
		return r;
	}
	/* (An install across the end fails: forget_page would take it for
	 * a page the kernel lacks.) */
	if (around > room)
		around = (unsigned)room;
	st = obj->pgstate[pg];
	*seen = obj->forgets;
	if ((st & FM_PG_RESIDENT) && !(st & FM_PGS_BUSY)) {
		assert_page_locked(obj, pg);
		wp = install_wp(f, fl, pg, 0, &dirty);
		for (k = 0; k < around; k++) {
			st = obj->pgstate[pg + k];
			if (!(st & FM_PG_RESIDENT) || (st & FM_PGS_BUSY) ||
			    install_wp(f, fl, pg + k, k, &dirty) != wp)
				break;
			made |= dirty && !(st & FM_PG_DIRTY);
			if (dirty) /* CLEAN -> DIRTY: it is written now */
				obj->pgstate[pg + k] |= FM_PG_DIRTY;
		}
		if (made)
			fm__object_assert_locked(obj, pg, k);
	}
	/*
	 * A write-protected install keeps obj->lock: a write let through
	 * meanwhile (fault_wp: DIRTY, then unprotect) must not find its
	 * page mapped write-protected again after its unprotect.
	 */
	if (k == 0 || !wp)
		pthread_mutex_unlock(&obj->lock);
	if (k == 0) {
		entry_unhold(e);
		*seen = FM_NOT_SEEN;
		return -ENOENT;
	}
	ra_advance(e, f->va, want, k);
	r = enter_answered(f, (size_t)k << FM_PAGE_SHIFT, wp, mapped, 0);
	FM_TRACE(wp ? "engine: install wp" : "engine: install", f->tid, f->va,
	    k);
	if (wp)
		pthread_mutex_unlock(&obj->lock);
	entry_unhold(e);
	return r;
}

/*
 * The pager filled pages [pg, pg+n) dirty (fm_fault.dirty): CLEAN ->
 * DIRTY now, whether or not they are mapped next.
 * => obj->pmaplock held shared
 */
static void
set_dirty(struct fm_object *obj, uint64_t pg, unsigned n)
{
	pthread_mutex_lock(&obj->lock);
	for (unsigned i = 0; i < n; i++)
		if ((obj->pgstate[pg + i] & (FM_PG_RESIDENT | FM_PGS_BUSY)) ==
		    FM_PG_RESIDENT)
			obj->pgstate[pg + i] |= FM_PG_DIRTY;
	fm__object_assert_locked(obj, pg, n);
	pthread_mutex_unlock(&obj->lock);
}

/*
 * Whether e's faults may fill with zero_install: an object the anonymous
 * pager fills (fm__pgo_zero_fill) in a shared registration, without
 * pgo_put (whose clean pages are mapped write-protected).
 */
static int
zero_fill(const struct fm_entry *e)
{
	return e->pmode == FM_PMAP_SHARED && fm__pgo_zero_fill(e->obj) &&
	    !fm__pgo_has_put(e->obj);
}

/*
 * Zero-fill and map, with one UFFDIO_ZEROPAGE, the busy pages from va
 * (n of them, ours) that need no write protection: invariant 3.
 * => the pages mapped, a prefix; 0: none, fill them the usual way
 * => obj->pmaplock held shared; e is zero_fill
 */
static unsigned
zero_install(const struct fault *f, uint64_t pg, unsigned n, unsigned want,
    size_t *mapped)
{
	struct fm_entry *e = f->e;
	struct fm_object *obj = e->obj;
	unsigned k = 0;
	uint64_t room;

	pthread_mutex_lock(&obj->lock);
	if (entry_hold_at_locked(f->e, f->va, &room) == 0) {
		if (n > room)
			n = (unsigned)room;
		while (k < n && !fm__object_entry_wp(obj, obj->pgstate[pg + k]))
			k++;
	} else
		n = 0;
	pthread_mutex_unlock(&obj->lock);
	if (n == 0)
		return 0;
	if (k > 0) {
		ra_advance(e, f->va, want, k);
		if (enter_answered(f, (size_t)k << FM_PAGE_SHIFT, 0, mapped,
		        1) < 0)
			*mapped = 0;
	}
	entry_unhold(e);
	return k > 0 ? (unsigned)(*mapped >> FM_PAGE_SHIFT) : 0;
}

/*
 * The state says resident, the kernel says not (the pager claimed a fill
 * it did not make, or the program punched the store): under the same
 * hold of the pmaplock no one else discards it: empty it, so the next try
 * fills it again; unless a page was emptied since the install read the
 * state (seen, obj->forgets then): another fault that found it missing
 * too may have emptied it and filled it again since, and mapped it
 * writable (its next try sees the state afresh).
 * => obj->pmaplock held shared
 */
static void
forget_page(struct fm_object *obj, uint64_t pg, uint64_t seen)
{
	pthread_mutex_lock(&obj->lock);
	if (seen != FM_NOT_SEEN && obj->forgets == seen &&
	    !(obj->pgstate[pg] & FM_PGS_BUSY)) {
		obj->pgstate[pg] &= (uint8_t) ~(FM_PG_RESIDENT | FM_PG_DIRTY);
		obj->forgets++;
	}
	pthread_mutex_unlock(&obj->lock);
}

/*
 * Fill the busy pages (zero_install, or the pager) and map one window
 * from va: the pmaplock is held shared across both, so no protect, clean
 * or discard comes between the fill and the install (a discard could
 * otherwise starve a fault by punching every fill before it is mapped).
 * => no lock held; e referenced
 */
/*
 * Fill and map from f's page; held (if not NULL): when the pager fails,
 * f's page stays busy for the refusal, and *held says so.
 */
static int
fill_and_install(const struct fault *f, unsigned around, size_t *mapped,
    int *held)
{
	struct fm_entry *e = f->e;
	struct fm_object *obj = e->obj;
	uint64_t pg = fm__entry_pgidx(e, f->va);
	struct fill fl = {.around = around,
	    .wdirty = write_at_once(f) ? dirty_window(around) : 0};
	unsigned n, filled, want = around, keep;
	uint64_t seen = FM_NOT_SEEN;
	int r, blk = !zero_fill(e) || page_waits(obj, pg, 0);

	if (blk)
		engine_block(); /* a pager's hook, or a wait */
	pthread_rwlock_rdlock(&obj->pmaplock);
	fm__pmaplock_held = obj;
	n = fm__object_busy(obj, pg, around);
	if (n > 0 && zero_fill(e) &&
	    (filled = zero_install(f, pg, n, want, mapped)) > 0) {
		fm__object_unbusy(obj, pg, n, filled);
		r = 0;
	} else {
		r = pager_fill(f, pg, n, &fl);
		keep = r < 0 && n > 0 && held != NULL;
		if (held != NULL)
			*held = keep;
		fm__object_unbusy(obj, pg + keep, n - keep,
		    r < 0 ? 0 : fl.filled);
		if (r == 0 && fl.dirty)
			set_dirty(obj, pg, fl.filled);
		if (r == 0)
			r = install_locked(f, pg, &fl, want, mapped, &seen);
		if (r == -ENOENT && *mapped == 0)
			forget_page(obj, pg, seen);
		if (r == -ENOENT && *mapped > 0)
			r = 0; /* the faulting page is mapped; the rest later */
	}
	fm__pmaplock_held = NULL;
	pthread_rwlock_unlock(&obj->pmaplock);
	if (blk)
		engine_unblock();
	return r;
}

/*
 * Read-ahead (design notes): the window after the one a sequential fault
 * mapped, filled by the engine thread that answered the fault, once it
 * has. e referenced, or NULL: nothing to read.
 */
struct readahead {
	struct fm_entry *e;
	uint64_t pg;
	unsigned n;
};
static __thread struct readahead ra_fill;

/*
 * f's fault mapped mapped bytes of a window of around pages: if it is a
 * sequential reader's, of a pager whose fill costs (pgo_get of its own),
 * and the engine has CPUs to do it beside the reader, the next window is
 * to be filled now (readahead_run), twice as large as this one.
 */
static void
readahead_plan(const struct fault *f, size_t mapped, unsigned around)
{
	struct fm_entry *e = f->e;
	struct fm_object *obj = e->obj;
	uintptr_t va = f->va + mapped;
	unsigned n = around * 2 < FM_AROUND_MAX ? around * 2 : FM_AROUND_MAX;
	uint64_t pg;

	if (!eng_thread || !eng.shared || eng.around > 0 ||
	    around < FM_RA_MIN || fm__pgo_has_fault(obj) ||
	    fm__pgo_zero_fill(obj) || va >= f->end)
		return;
	pg = fm__entry_pgidx(e, va);
	if (pg >= obj->npages)
		return;
	if (n > (f->end - va) >> FM_PAGE_SHIFT)
		n = (unsigned)((f->end - va) >> FM_PAGE_SHIFT);
	if (n > obj->npages - pg)
		n = (unsigned)(obj->npages - pg);
	FM_ASSERT(ra_fill.e == NULL, "read-ahead of entry %p not run",
	    (void *)ra_fill.e);
	fm__entry_ref(e);
	ra_fill = (struct readahead){.e = e, .pg = pg, .n = n};
}

static int
entry_dead(struct fm_entry *e)
{
	int r;

	pthread_mutex_lock(&e->obj->lock);
	r = e->dead;
	pthread_mutex_unlock(&e->obj->lock);
	return r;
}

/*
 * Fill the window readahead_plan chose, unless a fault or another
 * read-ahead is at it already: not mapped (the reader's fault there is
 * then a minor one, which reads the next window ahead), and nothing told
 * of a failure (the reader's own fault fills again, and is told).
 * => no lock held; an engine thread
 */
static void
readahead_run(struct fm_pmap *pm)
{
	struct readahead ra = ra_fill;
	struct fm_object *obj;
	unsigned n, cnt;

	if (ra.e == NULL)
		return;
	ra_fill.e = NULL;
	obj = ra.e->obj;
	/* Not for a mapping that is going: it would hold up its munmap. */
	if (!entry_dead(ra.e) && !page_waits(obj, ra.pg, FM_PG_RESIDENT)) {
		engine_block(); /* a pager's hook */
		pthread_rwlock_rdlock(&obj->pmaplock);
		fm__pmaplock_held = obj;
		n = fm__object_busy(obj, ra.pg, ra.n);
		if (n > 0) {
			cnt = n;
			if (fm__pgo_get(obj, ra.pg, &cnt) < 0 || cnt > n)
				cnt = 0;
			fm__object_unbusy(obj, ra.pg, n, cnt);
			FM_TRACE("engine: read ahead", 0,
			    ra.e->start +
			        ((ra.pg - ra.e->pgoff) << FM_PAGE_SHIFT),
			    cnt);
		}
		fm__pmaplock_held = NULL;
		pthread_rwlock_unlock(&obj->pmaplock);
		engine_unblock();
	}
	fm__entry_rele(ra.e);
}

static enum answer
wake(const struct fault *f)
{
	return fm__pmap_wake(f->pm, f->va, FM_PAGE_SIZE) == 0 ? ANS_WOKEN
	                                                      : ANS_NONE;
}

static struct tslot *
tslot_locked(pid_t tid)
{
	return &thr.s[(unsigned)tid % FM_TSLOTS];
}

/*
 * Whether f's access is the one its thread is in now: f is its last
 * message, or (any: the thread left the fault for a signal's handler, and
 * faulted again) its last is the same access at the same page; and it was
 * read since the thread was last told of a refusal (a message read before
 * that belongs to the access the refusal ended). => thr.lock held
 */
static int
same_access_locked(const struct tslot *t, const struct fault *f, int any)
{
	return f->seq > t->told &&
	    (t->seq == f->seq ||
	        (any && t->va == f->va &&
	            t->flags == (f->flags & FM_ACCESS_FLAGS)));
}

/*
 * Whether f is still to be answered for its thread (or it has gone): its
 * last message (latest), or one of its access (in_access).
 */
static int
still_for(const struct fault *f, int any)
{
	struct tslot *t;
	int r;

	pthread_mutex_lock(&thr.lock);
	t = tslot_locked(f->tid);
	r = t->tid != f->tid || same_access_locked(t, f, any);
	pthread_mutex_unlock(&thr.lock);
	return r;
}

static int
latest(const struct fault *f)
{
	return still_for(f, 0);
}

static int
in_access(const struct fault *f)
{
	return still_for(f, 1);
}

/*
 * About to tell f's thread of a refusal: => 1 if f's access is still the
 * one to answer so (in_access), and from now on the thread's messages
 * read so far are answered. While
 * one refusal of a thread is being told (until told()), another waits: a
 * message read meanwhile may be of the same access (read before the
 * thread took its SIGBUS) or of a new one, which only told() can tell.
 */
static int
tell(const struct fault *f)
{
	struct tslot *t;
	int r;

	pthread_mutex_lock(&thr.lock);
	t = tslot_locked(f->tid);
	while (t->tid == f->tid && t->telling) {
		pthread_mutex_unlock(&thr.lock);
		usleep(FM_LOOK_US);
		pthread_mutex_lock(&thr.lock);
	}
	r = t->tid != f->tid || same_access_locked(t, f, 1);
	if (r && t->tid == f->tid) {
		t->told = thr.seq;
		t->refused = 0;
		t->telling = 1;
	}
	pthread_mutex_unlock(&thr.lock);
	return r;
}

/*
 * Pages [va, va + len) have been mapped, or made writable: that woke every
 * thread waiting at them, so each message of them read so far is answered
 * (a message the kernel removes once its thread is woken cannot be read
 * after that). => an install's stripes held (an unprotect: its page's
 * WRITING)
 */
static void
page_answered(uintptr_t va, size_t len)
{
	uint64_t seq = atomic_load(&seq_bound);

	for (uintptr_t a = va; a < va + len; a += FM_PAGE_SIZE) {
		atomic_uint_least64_t *slot = &pans[aslot(a)];
		uint64_t old = atomic_load(slot);

		while (
		    old < seq && !atomic_compare_exchange_weak(slot, &old, seq))
			;
	}
}

/*
 * Installs and the telling of refusals at the same pages are serialised by
 * stripe locks, 256 KiB of address each (hashed): an install holds
 * those of its range across its ioctl and its page_answered; a refusal is
 * checked and told under the one of its page (tell_user), so that no
 * install lets its thread go on in between. (Not obj->lock: two threads
 * filling one object would then install one at a time.)
 */
#define FM_STRIPE_BITS 8
#define FM_STRIPES (1 << FM_STRIPE_BITS)
#define FM_STRIPE_SHIFT (FM_PAGE_SHIFT + 6)
static pthread_mutex_t stripe[FM_STRIPES] = {
    [0 ... FM_STRIPES - 1] = PTHREAD_MUTEX_INITIALIZER};

struct stripes {
	uint64_t bit[FM_STRIPES / 64];
};

/* The stripes of [va, va + len): 256 KiB each, hashed. */
static struct stripes
stripes_of(uintptr_t va, size_t len)
{
	struct stripes set = {{0}};
	uintptr_t g = va >> FM_STRIPE_SHIFT,
	          last = (va + len - 1) >> FM_STRIPE_SHIFT;

	for (unsigned n = 0; g <= last && n < FM_STRIPES; g++, n++) {
		unsigned i = hash_bits(g, FM_STRIPE_BITS);

		set.bit[i / 64] |= 1ULL << (i % 64);
	}
	if (g <= last) /* more groups than stripes: all of them */
		memset(&set, 0xff, sizeof set);
	return set;
}

/* Lock (or unlock) the stripes of set, in one order. */
static void
stripes_lock(const struct stripes *set, int lock)
{
	for (unsigned w = 0; w < FM_STRIPES / 64; w++)
		for (uint64_t b = set->bit[w]; b != 0; b &= b - 1) {
			pthread_mutex_t *m =
			    &stripe[w * 64 + (unsigned)__builtin_ctzll(b)];

			(void)(lock ? pthread_mutex_lock(m)
			            : pthread_mutex_unlock(m));
		}
}

/*
 * Map len bytes from f's page (UFFDIO_CONTINUE, write-protected or not, or
 * with zero: UFFDIO_ZEROPAGE) under their stripes, and note what was
 * mapped as answered. => as fm__pmap_enter
 */
static int
enter_answered(const struct fault *f, size_t len, int wp, size_t *mapped,
    int zero)
{
	struct stripes set = stripes_of(f->va, len);
	int r;

	stripes_lock(&set, 1);
	r = zero ? fm__pmap_zero(f->pm, f->va, len, mapped)
	         : fm__pmap_enter(f->pm, f->va, len, wp, mapped);
	if (*mapped > 0)
		page_answered(f->va, *mapped);
	stripes_lock(&set, 0);
	return r;
}

/*
 * Whether page va may have been mapped or made writable after the message
 * seq was read.
 */
static int
answered_after(uintptr_t va, uint64_t seq)
{
	return atomic_load(&pans[aslot(va)]) >= seq;
}

/* Whether f's page may have been mapped or made writable since f was read. */
static int
answered_since(const struct fault *f)
{
	return answered_after(f->va, f->seq);
}

static void wait_taken(const struct fault *f);

/*
 * f's thread has been told of its refusal (tell): once it has taken its
 * SIGBUS, if it was sent one, its messages at f's page read so far belong
 * to the access that the refusal ended (the kernel drops an unread message
 * of a thread that leaves its fault), and every later one to a new access.
 * A new access at the same page whose message was read already is taken
 * for the old one: that message is only woken, and its retry is new.
 */
static void
told(const struct fault *f)
{
	struct tslot *t;
	uint64_t seq = f->seq;

	wait_taken(f);
	pthread_mutex_lock(&gone.lock); /* a read under way notes first */
	pthread_mutex_lock(&thr.lock);
	t = tslot_locked(f->tid);
	if (t->tid == f->tid) {
		if (t->va == f->va) {
			seq = t->seq;
			t->atva = 0; /* that access has ended */
		} else if (t->prevva == f->va)
			seq = t->prevseq;
		if (seq > t->told)
			t->told = seq;
		t->telling = 0;
		t->spin_since = 0;
	}
	pthread_mutex_unlock(&thr.lock);
	pthread_mutex_unlock(&gone.lock);
}

/* A message read from thread tid at page va: its sequence number. */
static uint64_t
note_message(pid_t tid, uintptr_t va, uint64_t flags)
{
	struct tslot *t;
	uint64_t seq;

	pthread_mutex_lock(&thr.lock);
	seq = ++thr.seq;
	t = tslot_locked(tid);
	if (t->tid != tid)
		*t = (struct tslot){.tid = tid};
	if (t->va != va) {
		t->prevva = t->va;
		t->prevseq = t->seq;
		t->noentry = t->atva = 0;
		t->spin_since = 0;
	} else if (answered_after(va, t->seq)) {
		t->atva = 0; /* its access there was answered: a new one */
		t->spin_since = 0;
	}
	t->atva++;
	t->seq = seq;
	t->va = va;
	t->flags = flags & FM_ACCESS_FLAGS;
	pthread_mutex_unlock(&thr.lock);
	return seq;
}

/* What a kept refusal at page pg must be made under to still hold. */
static unsigned
refusal_gen(struct fm_object *obj, uint64_t pg)
{
	return fm__object_gen(obj, pg) % FM_GEN_CLEAN;
}

/*
 * A refusal the thread was not told of (it had left the fault): remember
 * it, so that its next fault at va is refused without asking the pager or
 * the hook again; or take it (=> its error, or 0 when there is none).
 */
static void
refusal_keep(const struct fault *f, unsigned gen, int err)
{
	pthread_mutex_lock(&thr.lock);
	struct tslot *t = tslot_locked(f->tid);
	if (t->tid == f->tid && f->seq > t->told) {
		t->refused = f->va;
		t->refgen = gen;
		t->referr = err;
		t->refwhen = now_us();
		t->refflags = f->flags & FM_ACCESS_FLAGS;
		t->refseq = f->seq;
	}
	pthread_mutex_unlock(&thr.lock);
}

static int
refusal_take(const struct fault *f, unsigned gen)
{
	int r = 0;

	pthread_mutex_lock(&thr.lock);
	struct tslot *t = tslot_locked(f->tid);
	if (t->tid == f->tid && t->refused == f->va) {
		/*
		 * Only for the same access: soon, and nothing changed since
		 * (the page not mapped meanwhile: that let the access go on).
		 */
		if (t->refgen == gen && now_us() - t->refwhen < FM_REFUSAL_US &&
		    t->refflags == (f->flags & FM_ACCESS_FLAGS) &&
		    !answered_after(f->va, t->refseq))
			r = t->referr;
		t->refused = 0;
	}
	pthread_mutex_unlock(&thr.lock);
	return r;
}

/*
 * The write hook let f's write through, but the page could not be made
 * writable in f's mapping (it was away: swap_page): its retry is let
 * through without asking again, unless something changed meanwhile
 * (allow_keep; allow_take => 1 if so): its protection, what is mapped,
 * or a write-back (the page is clean again: its next write is asked).
 */
static unsigned
allow_gen(struct fm_object *obj, uint64_t pg)
{
	return fm__object_gen(obj, pg);
}

static void
allow_keep(const struct fault *f, unsigned gen)
{
	pthread_mutex_lock(&thr.lock);
	struct tslot *t = tslot_locked(f->tid);
	if (t->tid == f->tid) {
		t->allowed = f->va;
		t->allowgen = gen;
		t->allowobj = f->e->obj;
		t->allowpg = fm__entry_pgidx(f->e, f->va);
	}
	pthread_mutex_unlock(&thr.lock);
}

static int
allow_take(const struct fault *f, unsigned gen)
{
	int r = 0;

	pthread_mutex_lock(&thr.lock);
	struct tslot *t = tslot_locked(f->tid);
	if (t->tid == f->tid && t->allowed == f->va) {
		r = t->allowgen == gen && t->allowobj == f->e->obj &&
		    t->allowpg == fm__entry_pgidx(f->e, f->va);
		t->allowed = 0;
	}
	pthread_mutex_unlock(&thr.lock);
	return r;
}

/*
 * How many times in a row f's thread has faulted at f's page since it was
 * last told of a refusal there (told) or the page was mapped there since
 * (note_message): a system call whose fault the kernel retries without
 * sleeping does so without end.
 */
static unsigned
faults_in_a_row(const struct fault *f)
{
	unsigned n;

	pthread_mutex_lock(&thr.lock);
	struct tslot *t = tslot_locked(f->tid);
	n = t->tid == f->tid && t->va == f->va ? t->atva : 0;
	pthread_mutex_unlock(&thr.lock);
	return n;
}

/*
 * Whether f is the message to decide its thread's access by: its latest,
 * or one of the same access if the thread faults there without end (a
 * system call whose fault the kernel retries: a newer message of it may
 * always be read before the latest is decided). Then one such decision
 * at a time: this engine thread's, until decided().
 */
static __thread pid_t deciding_for;

static int
to_decide(const struct fault *f)
{
	struct tslot *t;

	if ((f->tid > 0 && deciding_for == f->tid) || latest(f))
		return 1;
	if (faults_in_a_row(f) < FM_SPIN_MSGS)
		return 0;
	pthread_mutex_lock(&thr.lock);
	t = tslot_locked(f->tid);
	if (t->tid == f->tid && !t->deciding && same_access_locked(t, f, 1)) {
		t->deciding = 1;
		deciding_for = f->tid;
	}
	pthread_mutex_unlock(&thr.lock);
	return f->tid > 0 && deciding_for == f->tid;
}

static void
decided(const struct fault *f)
{
	struct tslot *t;

	if (f->tid <= 0 || deciding_for != f->tid)
		return;
	pthread_mutex_lock(&thr.lock);
	t = tslot_locked(f->tid);
	if (t->tid == f->tid)
		t->deciding = 0;
	pthread_mutex_unlock(&thr.lock);
	deciding_for = 0;
}

/* No entry at f's page: a stale message (wake), or memory fomap lost. */
static int
noentry_again(const struct fault *f)
{
	int r;

	pthread_mutex_lock(&thr.lock);
	struct tslot *t = tslot_locked(f->tid);
	r = t->tid == f->tid && ++t->noentry > FM_NOENTRY_MAX;
	pthread_mutex_unlock(&thr.lock);
	return r;
}

/* Whether an UNMAP or REMAP event is read but not yet followed. */
static int
events_pending(void)
{
	return atomic_load(&gone.pending) > 0;
}

/* Whether gone range g can hold e's memory (its space's; e not newer). */
static int
gone_for(const struct gone *g, const struct fm_entry *e)
{
	return g->pm == e->pm && e->gen <= g->gen;
}

/* Whether an event not yet followed may have taken e's memory. */
static int
gone_any(const struct fm_entry *e)
{
	int r = 0;

	pthread_mutex_lock(&gone.lock);
	for (unsigned i = 0; i < gone.n && !r; i++)
		r = gone_for(&gone.v[i], e) && gone.v[i].start < e->end &&
		    e->start < gone.v[i].end;
	pthread_mutex_unlock(&gone.lock);
	return r;
}

typedef int run_fn(struct fm_entry *e, uintptr_t va, size_t len, int arg);

/*
 * Apply fn to the runs of [va, va+len) of e that the kernel has not
 * unmapped or moved since (a gone range not yet out of the map): never to
 * memory fomap does not own. While gone.lock is held no munmap or mremap
 * of registered memory can end (its event cannot be read); fn gives
 * -EAGAIN when one waits, which is then read and the run tried again.
 * => e held, or obj->lock held with e linked
 */
static int
each_owned(struct fm_entry *e, uintptr_t va, size_t len, run_fn *fn, int arg)
{
	uintptr_t end = va + len, to;
	int r = 0, moved = 1, tries = 0;

	pthread_mutex_lock(&gone.lock);
	while (va < end && r == 0) {
		while (moved) { /* past every gone range that covers va */
			moved = 0;
			for (unsigned i = 0; i < gone.n; i++)
				if (gone_for(&gone.v[i], e) &&
				    gone.v[i].start <= va &&
				    va < gone.v[i].end) {
					va = gone.v[i].end;
					moved = 1;
				}
		}
		to = end; /* up to the next gone range */
		for (unsigned i = 0; i < gone.n; i++)
			if (gone_for(&gone.v[i], e) && gone.v[i].start > va &&
			    gone.v[i].start < to)
				to = gone.v[i].start;
		if (va < to && (r = fn(e, va, to - va, arg)) == -EAGAIN &&
		    tries++ < FM_GONE_TRIES) {
			/* An event waits: read it (gone.lock is the reader's). */
			pthread_mutex_unlock(&gone.lock);
			(void)engine_drain(e->pm);
			sched_yield(); /* (it is read only once it is sent) */
			pthread_mutex_lock(&gone.lock);
			r = 0;
		} else
			va = to;
		moved = 1;
	}
	pthread_mutex_unlock(&gone.lock);
	return r == -EAGAIN ? -EIO : r; /* (an event said to wait never came) */
}

/*
 * A zap cannot tell that the program has just moved or unmapped the run
 * (madvise, unlike the uffd's calls, says no EAGAIN for it: the old range
 * is unmapped, ENOMEM, or still there after MREMAP_DONTUNMAP, 0), and the
 * moved page-table entries are not zapped: so after it, an event not read
 * yet is looked for, and read (EAGAIN), and the run done again. ENOMEM
 * with no event: the part still mapped is zapped, the rest is not ours.
 */
static int
zap_run(struct fm_entry *e, uintptr_t va, size_t len, int arg)
{
	int r = fm__pmap_zap(e->pm, va, len);

	(void)arg;
	if (r == 0 || r == -ENOMEM)
		r = fm__pmap_event_unread(e->pm) ? -EAGAIN : 0;
	return r;
}

/*
 * The kernel's write protection stops at the first page of the range
 * that is not registered for it (-ENOENT: a page away, swap_page): the
 * rest is then done a page at a time, each such page left out (it comes
 * back with no page table entry).
 */
static int
protect_run(struct fm_entry *e, uintptr_t va, size_t len, int wp)
{
	int r = fm__pmap_protect_try(e->pm, va, len, wp);

	/* Another process's that has gone (not yet let go): nothing left. */
	if (r == -ESRCH && e->pm->vs != NULL)
		return 0;
	if (r != -ENOENT)
		return r;
	for (uintptr_t a = va; a < va + len; a += FM_PAGE_SIZE)
		if ((r = fm__pmap_protect_try(e->pm, a, FM_PAGE_SIZE, wp)) <
		        0 &&
		    r != -ENOENT)
			return r;
	return 0;
}

int
fm__fault_zap(struct fm_entry *e, uintptr_t va, size_t len)
{
	return each_owned(e, va, len, zap_run, 0);
}

int
fm__fault_protect(struct fm_entry *e, uintptr_t va, size_t len, int wp)
{
	return each_owned(e, va, len, protect_run, wp);
}

static int64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/*
 * Wait until f's thread has taken the SIGBUS sent to it (it is no longer
 * pending: the thread has left its fault for the handler), at most
 * FM_TAKEN_WAIT_US (it may block SIGBUS in a handler for a while).
 */
static void
wait_taken(const struct fault *f)
{
	int64_t until = now_us() + FM_TAKEN_WAIT_US;
	struct fm_pmap_thread t;

	while (fm__pmap_thread(f->pm, f->tid, &t) == 0 && t.sigbus_pending &&
	    now_us() < until)
		usleep(FM_LOOK_US);
}

/*
 * Expect the events a move of one page from tmp to va makes (to the
 * user-mode-only uffd: the page at va leaves the engine's, UNMAP; back:
 * REMAP, then UNMAP of tmp), or forget them (ok: the move failed).
 */
static void
own_expect(uintptr_t tmp, uintptr_t va, int user, int ok)
{
	struct own ev[2] = {{UFFD_EVENT_UNMAP, va, va + FM_PAGE_SIZE},
	    {UFFD_EVENT_REMAP, tmp, va}};
	struct own ev2 = {UFFD_EVENT_UNMAP, tmp, tmp + FM_PAGE_SIZE};

	if (!user)
		ev[0] = ev2;
	pthread_mutex_lock(&gone.lock);
	for (unsigned i = 0; i < (user ? 1u : 2u); i++)
		if (ok && own.nev < FM_OWN_MAX)
			own.ev[own.nev++] = ev[i];
		else if (!ok)
			(void)own_take_locked(ev[i].event, ev[i].a, ev[i].b);
	pthread_mutex_unlock(&gone.lock);
}

/* Page va is (on) moved to the user-mode-only uffd, or back (!on). */
static void
own_swapped(uintptr_t va, int on)
{
	pthread_mutex_lock(&gone.lock);
	if (on && own.nva < FM_OWN_MAX) {
		own.lost[own.nva] = 0;
		own.va[own.nva++] = va;
	}
	for (unsigned i = 0; !on && i < own.nva; i++)
		if (own.va[i] == va) {
			own.va[i] = own.va[--own.nva];
			own.lost[i] = own.lost[own.nva];
			break;
		}
	atomic_store(&own.swapped, own.nva);
	pthread_mutex_unlock(&gone.lock);
}

/*
 * While a page is moved (swap_page), the kernel's mremap waits until its
 * events are read, and the engine's threads may all wait on what the
 * refusal holds meanwhile (an unlink under the map lock, a protect): this
 * thread only reads then. Its messages go to the engine's queue.
 */
static struct {
	pthread_mutex_t lock;
	pthread_cond_t cv;
	int moving; /* moves under way */
	int started;
} swapr = {.lock = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static void *
swap_reader(void *arg)
{
	struct fm_pmap *pm = arg;

	for (;;) {
		pthread_mutex_lock(&swapr.lock);
		while (swapr.moving == 0)
			pthread_cond_wait(&swapr.cv, &swapr.lock);
		pthread_mutex_unlock(&swapr.lock);
		(void)engine_drain(pm);
		usleep(FM_LOOK_US);
	}
	return NULL;
}

/* A move begins (on) or ends: the reader reads while one is under way. */
static int
swap_moving(struct fm_pmap *pm, int on)
{
	int r = 0;

	pthread_mutex_lock(&swapr.lock);
	if (on && !swapr.started &&
	    (r = engine_spawn_fn(pm, swap_reader, "fomap-swapper")) == 0)
		swapr.started = 1;
	if (r == 0) {
		swapr.moving += on ? 1 : -1;
		pthread_cond_signal(&swapr.cv);
	}
	pthread_mutex_unlock(&swapr.lock);
	return r;
}

/*
 * A fresh mapping of e's page (the store's at off, through fd) in the
 * arena, with protection prot, not filled nor locked by mlockall: a page
 * filled behind the pager would let the system call refused find it, a
 * locked one refuses the engine's MADV_DONTNEED for good.
 * => the address, or MAP_FAILED
 */
static void *
swap_map(const struct fm_entry *e, int prot, int fd, off_t off)
{
	void *tmp = fm__arena_map_unlocked(FM_PAGE_SIZE, prot,
	    e->pmode == FM_PMAP_SHARED ? MAP_SHARED : MAP_PRIVATE, fd, off);

	if (tmp != MAP_FAILED &&
	    madvise(tmp, FM_PAGE_SIZE, MADV_DONTFORK) < 0) {
		fm__arena_unmap(tmp, FM_PAGE_SIZE);
		tmp = MAP_FAILED;
	}
	return tmp;
}

/*
 * Move a fresh mapping of e's page at va over it (made in the arena, never
 * where the program may be about to map: swap_map): registered with the
 * user-mode-only uffd (user), where a system call's fault fails with
 * EFAULT at once and a fault from user mode waits; or with the engine's
 * uffd as e is, back in place (its page tables are empty: faults fill
 * them afresh), and then the threads that waited are woken.
 * => e held; 0, or -errno with nothing changed
 */
static int
swap_page(struct fm_entry *e, uintptr_t va, int user)
{
	struct fm_object *obj = e->obj;
	int shared = e->pmode == FM_PMAP_SHARED, r, registered;
	int fd =
	    shared || (e->flags & MAP_PRIVATE) ? obj->fd : fm__object_rofd(obj);
	off_t off =
	    obj->base + (off_t)(fm__entry_pgidx(e, va) << FM_PAGE_SHIFT);
	void *tmp = MAP_FAILED;

	if (fd >= 0 && (user ? e->pm->uffd_user >= 0 : 1))
		tmp = swap_map(e, __atomic_load_n(&e->prot, __ATOMIC_ACQUIRE),
		    fd, off);
	if (tmp == MAP_FAILED)
		return fd < 0 ? fd : -ENOSYS;
	r = user
	    ? fm__pmap_user_register(e->pm, (uintptr_t)tmp, FM_PAGE_SIZE)
	    : fm__pmap_register(e->pm, (uintptr_t)tmp, FM_PAGE_SIZE, e->pmode);
	registered = r == 0;
	if (r == 0 && (r = swap_moving(e->pm, 1)) == 0) {
		own_expect((uintptr_t)tmp, va, user, 1);
		if (mremap(tmp, FM_PAGE_SIZE, FM_PAGE_SIZE,
		        MREMAP_MAYMOVE | MREMAP_FIXED,
		        (void *)va) == MAP_FAILED) {
			r = -errno;
			own_expect((uintptr_t)tmp, va, user, 0);
		}
		(void)swap_moving(e->pm, 0);
	}
	/* Unmapped registered with the engine, it would send it an event. */
	if (r < 0 && registered && !user)
		(void)fm__pmap_unregister(e->pm, (uintptr_t)tmp, FM_PAGE_SIZE);
	if (r < 0)
		fm__arena_unmap(tmp, FM_PAGE_SIZE);
	else
		fm__arena_moved(tmp, FM_PAGE_SIZE);
	if (r == 0 && !user)
		(void)fm__pmap_user_wake(e->pm, va, FM_PAGE_SIZE);
	return r;
}

/* Whether the program has unmapped or moved page va while it was away. */
static int
own_lost(uintptr_t va)
{
	int r = 0;

	pthread_mutex_lock(&gone.lock);
	for (unsigned i = 0; i < own.nva; i++)
		r |= own.va[i] == va && own.lost[i];
	pthread_mutex_unlock(&gone.lock);
	return r;
}

/*
 * Whether a page of [start, end) of pm's is moved to the user-mode-only
 * uffd now (only the engine's own address space has pages moved).
 */
int
fm__fault_swapped(struct fm_pmap *pm, uintptr_t start, uintptr_t end)
{
	int r = 0;

	if (atomic_load(&own.swapped) == 0 || pm->vs != NULL)
		return 0;
	pthread_mutex_lock(&gone.lock);
	for (unsigned i = 0; i < own.nva && !r; i++)
		r = own.va[i] >= start && own.va[i] < end;
	pthread_mutex_unlock(&gone.lock);
	return r;
}

/*
 * Whether f's thread, which retried its fault without sleeping, has had
 * the time to retry it once more since t0 (its CPU time then: ran0): at
 * least FM_STUCK_WAIT_US, and FM_STUCK_RUN_NS on a CPU (a busy CPU may
 * not run it for milliseconds; -1: not known, the time alone).
 */
static int
had_its_turn(const struct fault *f, int64_t t0, long long ran0)
{
	long long ran;

	if (now_us() - t0 < FM_STUCK_WAIT_US)
		return 0;
	ran = ran0 < 0 ? -1 : fm__pmap_thread_ran(f->pm, f->tid);
	return ran < 0 || ran - ran0 >= FM_STUCK_RUN_NS;
}

/*
 * Wait until f's thread, made to fail its system call, has left it: it
 * waits in no fault, and (stuck: it retried its fault without sleeping,
 * a signal pending) it no longer runs with a signal pending, or has had
 * its turn to retry (a thread that did not leave then was not in that
 * call). At most FM_EFAULT_WAIT_US.
 */
static void
wait_failed(const struct fault *f, int stuck)
{
	int64_t t0 = now_us();
	long long ran0 = stuck ? fm__pmap_thread_ran(f->pm, f->tid) : -1;
	struct fm_pmap_thread t;

	while (fm__pmap_thread(f->pm, f->tid, &t) == 0 &&
	    now_us() < t0 + FM_EFAULT_WAIT_US &&
	    (t.in_fault ||
	        (stuck && t.running && t.signal_pending &&
	            !had_its_turn(f, t0, ran0))))
		usleep(FM_LOOK_US);
}

/*
 * A refused access from inside a system call (stuck: one the kernel
 * retries without sleeping): make the call fail with EFAULT, then put the
 * page back once the thread has left it. The page is moved to the
 * user-mode-only uffd meanwhile, so other threads' accesses to it from
 * user mode wait, and are served afresh once it is back; only their own
 * system calls touching it in that moment fail too. Without that uffd,
 * the page is poisoned for the moment: every access to it gets SIGBUS.
 */
static enum answer
refuse_syscall(const struct fault *f, int mapped, int stuck)
{
	int r;

	/* Only the engine's own address space can have a page moved. */
	if (f->pm->vs == NULL)
		own_swapped(f->va, 1);
	if (f->e != NULL && f->pm->vs == NULL &&
	    (r = swap_page(f->e, f->va, 1)) == 0) {
		FM_TRACE("engine: page away", f->tid, f->va, 0);
		(void)fm__pmap_wake(f->pm, f->va, FM_PAGE_SIZE);
		wait_failed(f, stuck);
		/* Back, unless the program took the memory meanwhile. */
		for (int tries = 0;
		     !own_lost(f->va) && swap_page(f->e, f->va, 0) < 0;
		     tries++) {
			FM_ASSERT(tries < FM_FAULT_TRIES,
			    "a refused page at %#lx cannot be put back",
			    (unsigned long)f->va);
			usleep(FM_LOOK_US * 100);
		}
		own_swapped(f->va, 0);
		FM_TRACE("engine: page back", f->tid, f->va, 0);
		return ANS_SIGBUS;
	}
	if (f->pm->vs == NULL)
		own_swapped(f->va, 0);
	r = fm__pmap_poison(f->pm, f->va, mapped);
	if (r == 0)
		wait_failed(f, stuck);
	/* No entry: the poison stays with the memory fomap does not serve
	 * (every access there is refused), and goes with it. */
	if (f->e != NULL)
		(void)fm__fault_zap(f->e, f->va, FM_PAGE_SIZE);
	return r == 0 ? ANS_SIGBUS : ANS_NONE;
}

/*
 * Whether f's thread may be told of a refusal now. First read what waits
 * on the uffd: a newer fault of the thread (it left this one, and waits
 * elsewhere) is then seen, and this message is stale.
 */
static int
may_tell(const struct fault *f)
{
	while (engine_drain(f->pm) == FM_ENGINE_BATCH)
		; /* all of it: the newer fault may be anywhere in the queue */
	return tell(f);
}

/* How a refusal reaches its thread. */
enum tell_how {
	TELL_NOT, /* it is not waiting on this fault: not now */
	TELL_SIGNAL, /* SIGBUS to the thread, which waits in a user fault */
	TELL_POISON, /* it blocks SIGBUS: the kernel's own, which kills */
	TELL_SYSCALL, /* EFAULT to the system call it waits in */
	TELL_STUCK, /* a system call retrying its fault: poison */
};

/*
 * Tell f's thread, which waits in a fault at f's page from user mode: a
 * SIGBUS, or (it blocks SIGBUS: how) the page poisoned. Not if the page
 * may have been mapped since f was read: that woke the thread, whose
 * access went on, or faults again and is decided afresh. Under the page's
 * stripe, which installs hold, so that none lets the thread go on between.
 */
static enum answer
tell_user(const struct fault *f, int err, int mapped, enum tell_how how)
{
	struct stripes set = stripes_of(f->va, FM_PAGE_SIZE);
	enum answer a;
	int r;

	stripes_lock(&set, 1);
	if (answered_since(f))
		a = wake(f);
	else {
		r = how == TELL_SIGNAL ? fm__pmap_sigbus(f->pm, f->tid,
		                             f->addr ? f->addr : f->va, -err)
		                       : fm__pmap_poison(f->pm, f->va, mapped);
		a = r == 0 ? ANS_SIGBUS : ANS_NONE;
	}
	stripes_lock(&set, 0);
	return a;
}

static enum answer
tell_now(const struct fault *f, int err, int mapped, enum tell_how how)
{
	switch (how) {
	case TELL_SIGNAL:
	case TELL_POISON:
		return tell_user(f, err, mapped, how);
	case TELL_SYSCALL:
	case TELL_STUCK: /* (mapped since: its call went on; a hint) */
		return answered_since(f)
		    ? wake(f)
		    : refuse_syscall(f, mapped, how == TELL_STUCK);
	default:
		return ANS_NONE;
	}
}

/*
 * After the looks of a refusal not told: whether f's thread has been
 * running with a signal pending at every look (pending) of every refusal
 * at f's page for FM_SPIN_US (refusals at most FM_SPIN_US apart), and
 * faulted there FM_SPIN_LONG_MSGS times more meanwhile. So is a system
 * call retrying its fault, whose retries are switched out on a busy CPU
 * (which /proc counts as sleeps: no one look tells it); a thread in user
 * mode either waits for a CPU (and faults no more) or sleeps in its
 * fault, seen so at some look, or is told. (The looks decide, the
 * messages only show it faults on: on a busy CPU the engine reads a
 * retry's message about once a millisecond.)
 */
static int
spinning_long(const struct fault *f, int pending)
{
	int64_t now = now_us();
	struct tslot *t;
	int r = 0;

	pthread_mutex_lock(&thr.lock);
	t = tslot_locked(f->tid);
	if (t->tid == f->tid && t->va == f->va) { /* (else: gone, or new) */
		if (!pending)
			t->spin_since = 0;
		else if (t->spin_since == 0 ||
		    now - t->spin_last > FM_SPIN_US) {
			/* (none, or looks too far apart) */
			t->spin_since = now;
			t->spin_atva = t->atva;
		} else
			r = now - t->spin_since >= FM_SPIN_US &&
			    t->atva >= t->spin_atva + FM_SPIN_LONG_MSGS;
		t->spin_last = now;
	}
	pthread_mutex_unlock(&thr.lock);
	return r;
}

/* Look at f's thread until it is known how to tell it of a refusal. */
static enum tell_how
tell_how(const struct fault *f)
{
	struct fm_pmap_thread t;
	unsigned long long slept = ~0ULL; /* its sleeps at the first look */
	unsigned faults = 0; /* its faults in a row at the page then */
	int spinning = 1; /* running, never sleeping, at every look */
	int pending = 1; /* running, a signal pending, at every look */
	int blocked = 0; /* looks that found it waiting, SIGBUS blocked */

	for (int look = 0; look < FM_LOOK_TRIES; look++) {
		if (!in_access(f) || fm__pmap_thread(f->pm, f->tid, &t) < 0)
			return TELL_NOT; /* a new access of it, or it has gone */
		if (t.in_fault && t.in_syscall)
			return TELL_SYSCALL;
		if (t.in_fault && t.sigbus_pending)
			return TELL_NOT; /* it leaves the fault for that one */
		if (t.in_fault && t.sigbus_taken)
			return TELL_SIGNAL;
		/*
		 * It blocks SIGBUS: poison, whose SIGBUS kills, only when it
		 * does so at every look (a runtime such as TSan's blocks
		 * signals for a moment of its own).
		 */
		if (t.in_fault && ++blocked == FM_LOOK_TRIES)
			return TELL_POISON;
		pending &= t.running && t.signal_pending;
		if (t.in_fault) {
			usleep(FM_LOOK_US);
			continue;
		}
		/*
		 * Blocked, not in a userfaultfd wait (on its way into or out
		 * of the fault, or it left the fault for a system call), or
		 * running: back in user mode (a signal interrupted the fault;
		 * it will fault again, and sleep in it), or a system call
		 * whose fault the kernel retries without ever sleeping while
		 * a signal waits. Only that one never sleeps and has a signal
		 * pending at every look (but so may a thread in user mode
		 * that waits for a CPU, a signal pending, or runs on after it
		 * left the fault: so only if it faulted there many times in a
		 * row, and faulted there again while it was looked at).
		 */
		if (!t.running)
			spinning = 0;
		else if (slept == ~0ULL) {
			slept = t.switches;
			faults = faults_in_a_row(f);
		}
		spinning &= t.switches == slept && t.signal_pending;
		(void)engine_drain(f->pm); /* its retries, if it is stuck */
		usleep(FM_LOOK_US);
	}
	/*
	 * Stuck: it faults there still, not only before it went on or while
	 * it waits for a CPU (a message of its last wait may be read once
	 * after it was woken).
	 */
	if (spinning && faults >= FM_SPIN_MSGS &&
	    faults_in_a_row(f) >= faults + 2)
		return TELL_STUCK;
	return spinning_long(f, pending) ? TELL_STUCK : TELL_NOT;
}

/*
 * The pages whose refusal is being told, and the ranges mprotects are
 * changing (fm__fault_mprotect_begin .. _end), each of its address space:
 * a protection changed under a refused access would end it with a
 * SIGSEGV, and its SIGBUS would come after. Each waits for the other's
 * earlier arrivals only, in its own address space (a client that holds a
 * range, between its two halves of an mprotect, holds only its own).
 */
#define FM_TELLING_MAX 64
#define FM_MPROT_HOLDS 64
static struct {
	pthread_mutex_t lock;
	pthread_cond_t cv;
	struct {
		const struct fm_pmap *pm;
		uintptr_t va;
	} tell[FM_TELLING_MAX];
	unsigned n;
	struct {
		const struct fm_pmap *pm; /* NULL: a free slot */
		uintptr_t start, end;
	} hold[FM_MPROT_HOLDS];
} telling = {.lock = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

/* Whether an mprotect of pm's holds va. => telling.lock held */
static int
held_locked(const struct fm_pmap *pm, uintptr_t va)
{
	for (unsigned i = 0; i < FM_MPROT_HOLDS; i++)
		if (telling.hold[i].pm == pm && telling.hold[i].start <= va &&
		    va < telling.hold[i].end)
			return 1;
	return 0;
}

static void
telling_begin(const struct fm_pmap *pm, uintptr_t va)
{
	pthread_mutex_lock(&telling.lock);
	while (held_locked(pm, va) || telling.n == FM_TELLING_MAX)
		pthread_cond_wait(&telling.cv, &telling.lock);
	telling.tell[telling.n].pm = pm;
	telling.tell[telling.n++].va = va;
	pthread_mutex_unlock(&telling.lock);
}

static void
telling_end(const struct fm_pmap *pm, uintptr_t va)
{
	pthread_mutex_lock(&telling.lock);
	for (unsigned i = 0; i < telling.n; i++)
		if (telling.tell[i].pm == pm && telling.tell[i].va == va) {
			telling.tell[i] = telling.tell[--telling.n];
			break;
		}
	pthread_cond_broadcast(&telling.cv);
	pthread_mutex_unlock(&telling.lock);
}

/*
 * The ranges of the last mprotects, by generation (gen counts those
 * ended): an access whose message was read before one over its page may
 * have ended meanwhile (a SIGSEGV under the protection it set, even if a
 * later one set it back), with no message to say so. => telling.lock
 */
#define FM_MPROT_RING 64
static struct {
	atomic_uint_least64_t gen;
	struct {
		uint64_t gen;
		const struct fm_pmap *pm;
		uintptr_t start, end;
	} v[FM_MPROT_RING];
} mprot;

static void
mprot_note_locked(const struct fm_pmap *pm, uintptr_t start, uintptr_t end)
{
	uint64_t g = atomic_load(&mprot.gen) + 1;

	mprot.v[g % FM_MPROT_RING].gen = g;
	mprot.v[g % FM_MPROT_RING].pm = pm;
	mprot.v[g % FM_MPROT_RING].start = start;
	mprot.v[g % FM_MPROT_RING].end = end;
	atomic_store(&mprot.gen, g); /* after: a reader sees it whole */
}

/*
 * Whether an mprotect over f's page ended after f's message was read.
 * Too many since to look at: yes. => telling.lock held
 */
static int
mprot_since_locked(const struct fault *f)
{
	uint64_t now = atomic_load(&mprot.gen);

	if (now - f->mprot_gen >= FM_MPROT_RING)
		return now != f->mprot_gen;
	for (uint64_t g = f->mprot_gen + 1; g <= now; g++)
		if (mprot.v[g % FM_MPROT_RING].pm == f->pm &&
		    mprot.v[g % FM_MPROT_RING].start <= f->va &&
		    f->va < mprot.v[g % FM_MPROT_RING].end)
			return 1;
	return 0;
}

static int
telling_in_locked(const struct fm_pmap *pm, uintptr_t start, uintptr_t end)
{
	for (unsigned i = 0; i < telling.n; i++)
		if (telling.tell[i].pm == pm && start <= telling.tell[i].va &&
		    telling.tell[i].va < end)
			return 1;
	return 0;
}

int
fm__fault_mprotect_begin(const struct fm_pmap *pm, uintptr_t start,
    uintptr_t end)
{
	int slot = -1;

	pthread_mutex_lock(&telling.lock);
	for (;;) {
		for (int i = 0; i < FM_MPROT_HOLDS && slot < 0; i++)
			if (telling.hold[i].pm == NULL)
				slot = i;
		if (slot >= 0)
			break;
		pthread_cond_wait(&telling.cv, &telling.lock);
	}
	telling.hold[slot].pm = pm;
	telling.hold[slot].start = start;
	telling.hold[slot].end = end;
	while (telling_in_locked(pm, start, end))
		pthread_cond_wait(&telling.cv, &telling.lock);
	pthread_mutex_unlock(&telling.lock);
	return slot;
}

void
fm__fault_mprotect_end(int slot)
{
	pthread_mutex_lock(&telling.lock);
	FM_ASSERT(slot >= 0 && slot < FM_MPROT_HOLDS &&
	        telling.hold[slot].pm != NULL,
	    "mprotect hold %d not held", slot);
	mprot_note_locked(telling.hold[slot].pm, telling.hold[slot].start,
	    telling.hold[slot].end);
	telling.hold[slot].pm = NULL;
	pthread_cond_broadcast(&telling.cv);
	pthread_mutex_unlock(&telling.lock);
}

/*
 * Whether the mapping still lets f's access through: an fm_mprotect may
 * have taken it away while f waited (before its refusal was being told,
 * which holds the next ones off): its retry then ends it with SIGSEGV,
 * and a SIGBUS would come after. (Any protection but PROT_NONE lets a
 * read through, as the kernel does on x86.)
 */
static int
prot_allows(const struct fault *f)
{
	int prot, since;

	if (f->e == NULL)
		return 1;
	/*
	 * Not if one changed it since f was read, even if back: f's access
	 * may have ended then. Not told, it is woken: still in the access,
	 * it faults again and its kept refusal is told (refusal_take).
	 */
	pthread_mutex_lock(&telling.lock);
	since = mprot_since_locked(f);
	pthread_mutex_unlock(&telling.lock);
	if (since)
		return 0;
	/* (not under fm__map.lock: an unlink holds it waiting for e) */
	prot = __atomic_load_n(&f->e->prot, __ATOMIC_ACQUIRE);
	return (f->flags & UFFD_PAGEFAULT_FLAG_WRITE) ? (prot & PROT_WRITE) != 0
	                                              : prot != PROT_NONE;
}

/*
 * Refuse f's access (gen: what a refusal kept for its retry must be made
 * under, or UINT32_MAX: none kept). No entry: memory fomap does not serve.
 */
static enum answer
refuse(const struct fault *f, int err, int mapped, unsigned gen)
{
	struct fm_object *obj = f->e ? f->e->obj : NULL;
	enum tell_how how = TELL_NOT;
	enum answer a;
	int allowed;

	atomic_fetch_add_explicit(&stats.sigbus, 1, memory_order_relaxed);
	engine_block(); /* looks at the thread, waits for it */
	/* Before the hold: an fm_mprotect may need the map lock, which an
	 * unlink holds while it waits for the entry's holds. */
	telling_begin(f->pm, f->va);
	if (obj != NULL) {
		uint64_t room;

		pthread_mutex_lock(&obj->lock);
		if (entry_hold_at_locked(f->e, f->va, &room) < 0) {
			pthread_mutex_unlock(&obj->lock);
			telling_end(f->pm, f->va);
			engine_unblock();
			/* The memory is leaving: its retry sees. */
			return wake(f);
		}
		pthread_mutex_unlock(&obj->lock);
	}
	if ((allowed = prot_allows(f)))
		how = tell_how(f);
	FM_TRACE(how == TELL_NOT     ? "engine: refusal not told"
	        : how == TELL_SIGNAL ? "engine: refusal to signal"
	        : how == TELL_POISON ? "engine: refusal to poison"
	        : how == TELL_STUCK  ? "engine: refusal to stuck"
	                             : "engine: refusal to syscall",
	    f->tid, f->va, f->seq);
	if (how == TELL_NOT || !may_tell(f)) {
		if (gen != UINT32_MAX && allowed)
			refusal_keep(f, gen, err);
		a = wake(f);
	} else {
		a = tell_now(f, err, mapped, how);
		told(f);
	}
	telling_end(f->pm, f->va);
	engine_unblock();
	if (obj != NULL)
		entry_unhold(f->e);
	return a;
}

/* Refuse f's access to its page, which the caller made busy, then free it. */
static enum answer
refuse_held(const struct fault *f, int err, unsigned gen)
{
	enum answer a = refuse(f, err, 0, gen);

	fm__object_unbusy(f->e->obj, fm__entry_pgidx(f->e, f->va), 1, 0);
	return a;
}

/*
 * Resolve a missing or minor fault: fill, then map; on a race, again.
 * What the page's state says now decides, not the kind of fault.
 */
static enum answer
fault_page(const struct fault *f)
{
	struct fm_object *obj = f->e->obj;
	uint64_t pg = fm__entry_pgidx(f->e, f->va);
	size_t mapped = 0;
	unsigned around, gen;
	int r = -EIO, held = 0;

	if (f->flags & UFFD_PAGEFAULT_FLAG_MINOR)
		atomic_fetch_add_explicit(&stats.minor, 1,
		    memory_order_relaxed);
	if (!to_decide(f))
		return wake(f); /* a newer message of its thread is answered */
	if (pg >= obj->npages)
		return refuse(f, -EFAULT, 0, UINT32_MAX);
	gen = refusal_gen(obj, pg);
	/* The pager said no already, unless the page was filled since. */
	if ((r = refusal_take(f, gen)) < 0) {
		engine_block(); /* the page may be busy */
		held = fm__object_busy(obj, pg, 1) == 1;
		engine_unblock();
		if (held)
			return refuse_held(f, r, gen);
	}
	around = fault_around(f);
	for (int tries = 0; tries < FM_FAULT_TRIES; tries++) {
		mapped = 0;
		r = fill_and_install(f, around, &mapped, &held);
		if (r == 0) {
			atomic_fetch_add_explicit(&stats.pages,
			    mapped >> FM_PAGE_SHIFT, memory_order_relaxed);
			readahead_plan(f, mapped, around);
			return ANS_MAPPED;
		}
		/*
		 * EEXIST: another fault mapped it first. ESRCH: the mapping
		 * was replaced under us (MAP_FIXED); ESTALE: it is leaving
		 * the map: the thread's access goes to whatever is there.
		 */
		if (r == -EEXIST || r == -ESRCH || r == -ESTALE ||
		    fm__fault_swapped(f->pm, f->va, f->va + FM_PAGE_SIZE)) {
			/* (a pager's failure kept its page busy: let it go) */
			if (held)
				fm__object_unbusy(obj, pg, 1, 0);
			return wake(f);
		}
		if (r != -ENOENT && r != -EAGAIN)
			break; /* the pager failed: SIGBUS */
		atomic_fetch_add_explicit(&stats.retries, 1,
		    memory_order_relaxed);
	}
	refusal_keep(f, gen, r); /* for this access's next message */
	return held ? refuse_held(f, r, gen) : refuse(f, r, 0, gen);
}

/*
 * Make a write to page pg of f's mapping go through, and to the len bytes
 * from it, all inside the entry that maps it, which this thread holds
 * (held: the entry keeps its end and its memory, so that the unprotect,
 * which the kernel applies across mappings, reaches no other): the pages
 * are DIRTY (or not tracked) and stay so while pmaplock is held
 * (invariant 4). The hold is let go.
 * => obj->pmaplock held shared
 */
static enum answer
unprotect_held(const struct fault *f, struct fm_entry *held, size_t len)
{
	int r = fm__pmap_protect(f->pm, f->va, len, 0, 1);

	entry_unhold(held);
	if (r == -ENOENT) /* replaced under us, or moved away (swap_page) */
		return wake(f);
	return r == 0 ? ANS_UNPROTECTED : ANS_NONE;
}

/*
 * A write allowed at page pg: of the want pages from pg (inside its
 * entry as it is now: entry_hold_at_locked), the run after it that is
 * resident, not busy, and not read-only or being written by another,
 * becomes DIRTY too (write_at_once: a sequential writer's window), so
 * that one unprotect lets it through all of them.
 * => the pages from pg made DIRTY, pg's included
 * => obj->pmaplock held shared and obj->lock; pg DIRTY; its entry held
 */
static unsigned
dirty_run_locked(struct fm_object *obj, uint64_t pg, unsigned want)
{
	const uint8_t stop =
	    FM_PGS_BUSY | FM_PG_RDONLY | FM_PGS_WRITING | FM_PGS_REFUSING;
	unsigned k = 1;

	for (; k < want; k++) {
		uint8_t st = obj->pgstate[pg + k];

		if (!(st & FM_PG_RESIDENT) || (st & stop))
			break;
		obj->pgstate[pg + k] = st | FM_PG_DIRTY;
	}
	return k;
}

/*
 * Wait until no write to page pg is being decided, then mark this one.
 * => obj->lock held, and no pmaplock (a writer holding WRITING may wait
 *    for it behind a protect)
 */
static void
write_begin_locked(struct fm_object *obj, uint64_t pg)
{
	while (obj->pgstate[pg] & FM_PGS_WRITING)
		pthread_cond_wait(&obj->busycv, &obj->lock);
	obj->pgstate[pg] |= FM_PGS_WRITING;
}

static void
write_end_locked(struct fm_object *obj, uint64_t pg)
{
	obj->pgstate[pg] &= (uint8_t)~FM_PGS_WRITING;
	pthread_cond_broadcast(&obj->busycv);
}

/*
 * Ask the write hook about a write to page pg (or the page's state when
 * the pager has none): => 0 allowed, -EACCES (or the hook's error) refused
 */
static int
write_decide(const struct fault *f, uint64_t pg, uint8_t st, unsigned gen)
{
	struct fm_object *obj = f->e->obj;

	if (fm__pgo_has_write(obj)) {
		int r = refusal_take(f, gen);

		if (r < 0)
			return r; /* asked already for this write */
		if (allow_take(f, allow_gen(obj, pg)))
			return 0; /* let through already */
		r = fm__pgo_write(obj, pg, st);
		return r < 0 ? pager_errno(r) : 0;
	}
	return fm__pgo_write(obj, pg, st); /* the default: RDONLY refused */
}

/*
 * Whether f's page is mapped write-protected in f's mapping now: else its
 * write message is older than what is there. Writable: an earlier write
 * went through. Not mapped: the mapping was dropped since (MADV_DONTNEED,
 * a removal), maybe after an earlier write went through; the kernel may
 * queue a message of a thread that finds its page writable and leaves,
 * so such a message can be read after that write's answer. The retry
 * faults the page in again, write-protected if it must be.
 * => obj->lock held
 */
static int
wp_mapped(const struct fault *f)
{
	int ws = fm__pmap_wp_state(f->pm, f->va);

	return ws != 0 && ws != -ENOENT;
}

/*
 * A write to a write-protected page of a shared mapping. One write to a
 * page is decided at a time (FM_PGS_WRITING); a write whose page an
 * earlier one has made writable in this mapping meanwhile is only woken,
 * without asking the hook again. => e referenced, no lock held
 */
static enum answer
fault_wp(const struct fault *f)
{
	struct fm_object *obj = f->e->obj;
	uint64_t pg = fm__entry_pgidx(f->e, f->va);
	enum answer a = ANS_NONE;
	unsigned gen, pgen, around = 1, want = 1, k;
	struct fm_entry *held;
	uint64_t room;
	uint8_t st;
	int r = 0, blk, refusing;

	atomic_fetch_add_explicit(&stats.wp, 1, memory_order_relaxed);
	if (f->e->pmode != FM_PMAP_SHARED || pg >= obj->npages)
		return wake(f); /* only shared registrations are protected */
	if (write_at_once(f)) /* a sequential writer: a window */
		want = dirty_window(around = fault_around(f));
	/* Our turn for this page, waited for with no pmaplock held. */
	blk = fm__pgo_has_write(obj) || page_waits(obj, pg, FM_PGS_WRITING);
	if (blk)
		engine_block(); /* the write hook, or a wait */
	pthread_mutex_lock(&obj->lock);
	write_begin_locked(obj, pg);
	pthread_mutex_unlock(&obj->lock);

	pthread_rwlock_rdlock(&obj->pmaplock);
	pthread_mutex_lock(&obj->lock);
	st = obj->pgstate[pg];
	gen = refusal_gen(obj, pg);
	pgen = gen % FM_GEN_MAP; /* its protection */
	if (!(st & FM_PG_RESIDENT) || (st & FM_PGS_BUSY))
		r = -EAGAIN; /* discarded or in write-back: it faults again */
	else if (answered_since(f) || !wp_mapped(f))
		r = -EAGAIN; /* older than what is mapped: it faults again */
	pthread_mutex_unlock(&obj->lock);
	pthread_rwlock_unlock(&obj->pmaplock);

	/* The hook decides with no lock held: it may protect or remove. */
	if (r == 0)
		r = to_decide(f) ? write_decide(f, pg, st, gen) : -ESTALE;
	FM_TRACE("engine: write decided", f->tid, f->va, -r);
	if (r < 0 && r != -ESTALE && r != -EAGAIN)
		refusal_keep(f, gen, r); /* for this write's next message */

	pthread_rwlock_rdlock(&obj->pmaplock);
	pthread_mutex_lock(&obj->lock);
	st = obj->pgstate[pg];
	if (r == 0 && (st & FM_PG_RESIDENT) && !(st & FM_PGS_BUSY) &&
	    fm__object_gen(obj, pg) % FM_GEN_MAP == pgen) {
		obj->pgstate[pg] |= FM_PG_DIRTY;
		if ((held = entry_hold_page_locked(f, pg, &room)) != NULL) {
			k = dirty_run_locked(obj, pg,
			    want < room ? want : (unsigned)room);
			fm__object_assert_locked(obj, pg, k);
			pthread_mutex_unlock(&obj->lock);
			ra_advance(held, f->va, around, k);
			a = unprotect_held(f, held, (size_t)k << FM_PAGE_SHIFT);
		} else { /* not here any more: allowed, for its page */
			k = 1;
			fm__object_assert_locked(obj, pg, k);
			pthread_mutex_unlock(&obj->lock);
			a = wake(f);
		}
		if (a != ANS_NONE)
			page_answered(f->va, (size_t)k << FM_PAGE_SHIFT);
		if (a == ANS_WOKEN && fm__pgo_has_write(obj))
			allow_keep(f, allow_gen(obj, pg));
		pthread_mutex_lock(&obj->lock);
	}
	/*
	 * Only now: a write waiting for its turn sees this one's PTE. A
	 * refused write keeps its turn until it is told, and no protection
	 * change lets it through meanwhile (REFUSING: fm_object_protect
	 * waits); unless one did while the hook decided (the page may be
	 * writable now: the retry is decided afresh).
	 */
	refusing = a == ANS_NONE && r < 0 && r != -ESTALE && r != -EAGAIN &&
	    refusal_gen(obj, pg) == gen;
	if (refusing)
		obj->pgstate[pg] |= FM_PGS_REFUSING;
	else
		write_end_locked(obj, pg);
	pthread_mutex_unlock(&obj->lock);
	pthread_rwlock_unlock(&obj->pmaplock);
	if (blk)
		engine_unblock();
	if (a != ANS_NONE)
		return a;
	if (refusing) {
		a = refuse(f, r, 1, gen);
		pthread_mutex_lock(&obj->lock);
		obj->pgstate[pg] &= (uint8_t)~FM_PGS_REFUSING;
		write_end_locked(obj, pg);
		pthread_mutex_unlock(&obj->lock);
		return a;
	}
	/*
	 * Already writable, a newer message of the thread (ESTALE), the page
	 * discarded, or its protection changed while the hook decided: the
	 * retried write is decided afresh.
	 */
	return wake(f);
}

/* Take f's entry from the map, referenced. => 0, or -ENOENT */
static int
fault_lookup(struct fm_pmap *pm, struct fault *f)
{
	struct fm_entry *e;

	pthread_rwlock_rdlock(&fm__map.lock);
	e = fm__map_lookup(fm__vmspace_of(pm), f->va);
	if (e != NULL && e->pm == pm && e->obj != NULL) {
		fm__entry_ref(e);
		f->e = e;
		f->end = e->end;
		f->prot = e->prot;
		f->advice = e->advice;
	}
	pthread_rwlock_unlock(&fm__map.lock);
	return f->e ? 0 : -ENOENT;
}

static void
resolve_fault(struct fm_pmap *pm, const struct emsg *em)
{
	struct fault f = {
	    .pm = pm,
	    .addr = (uintptr_t)em->m.arg.pagefault.address,
	    .flags = em->m.arg.pagefault.flags,
	    .tid = (pid_t)em->m.arg.pagefault.feat.ptid,
	    .seq = em->seq,
	    .mprot_gen = em->mprot_gen,
	};
	enum answer a;

	f.va = f.addr & ~(uintptr_t)FM_PAGE_MASK;
	if (!(pm->features & UFFD_FEATURE_EXACT_ADDRESS))
		f.addr = 0;
	FM_TRACE(f.flags & UFFD_PAGEFAULT_FLAG_WP     ? "engine: wp fault"
	        : f.flags & UFFD_PAGEFAULT_FLAG_MINOR ? "engine: minor fault"
	                                              : "engine: missing fault",
	    f.tid, f.va, f.seq);
	atomic_fetch_add_explicit(&stats.faults, 1, memory_order_relaxed);
	if (fault_lookup(pm, &f) < 0 && events_pending()) {
		fm__fault_events(); /* an mremap moved it here, maybe */
		(void)fault_lookup(pm, &f);
	}
	if (f.e == NULL) {
		/*
		 * A stale message (the memory is gone: the thread's retry
		 * faults elsewhere), or registered memory without an entry
		 * (an mremap grew it): after many tries of the thread's
		 * latest access, refused.
		 */
		if (latest(&f) && !events_pending() && noentry_again(&f))
			a = refuse(&f, -EFAULT, 0, UINT32_MAX);
		else
			a = wake(&f);
	} else if (fm__fault_swapped(pm, f.va, f.va + FM_PAGE_SIZE))
		a = wake(&f); /* its retry waits until the page is back */
	else if (f.flags & UFFD_PAGEFAULT_FLAG_WP)
		a = fault_wp(&f);
	else
		a = fault_page(&f);
	decided(&f);
	if (f.e)
		fm__entry_rele(f.e);
	FM_TRACE(a == ANS_MAPPED       ? "engine: mapped"
	        : a == ANS_WOKEN       ? "engine: woken"
	        : a == ANS_UNPROTECTED ? "engine: unprotected"
	                               : "engine: refused",
	    f.tid, f.va, f.seq);
	/*
	 * Another process's answer may fail for what that process did (its
	 * thread or itself gone, its range unregistered through its own
	 * copy of the uffd): a wake, or nothing left to answer.
	 */
	if (a == ANS_NONE && pm->vs != NULL) {
		if (wake(&f) == ANS_NONE)
			FM_TRACE("engine: client gone", f.tid, f.va, errno);
	} else
		FM_ASSERT(a != ANS_NONE,
		    "invariant 6: fault at %#lx (flags %#llx) left unanswered: "
		    "%s",
		    (unsigned long)f.va, (unsigned long long)f.flags,
		    strerror(errno));
}

/* Serialises the following of events, so that it is in their order. */
static pthread_mutex_t evproc = PTHREAD_MUTEX_INITIALIZER;

/*
 * fm__fault_events: the map follows every UNMAP and REMAP event read so
 * far, oldest first; then they are forgotten (zaps may reach their ranges
 * again: no entry older than them is left there).
 * => no fomap lock held
 */
void
fm__fault_events(void)
{
	struct fm_entry *dead = NULL;
	struct fm_crit c;
	struct gone g;

	if (fm__forked)
		return; /* the parent's map: its locks may be held for good */
	if (atomic_load(&gone.pending) == 0 &&
	    atomic_load(&gone.reading) == 0 && atomic_load(&gone.burying) == 0)
		return; /* nothing read and not followed, nothing in a read */
	fm__crit_enter(&c);
	/*
	 * Under gone.lock: a reader records an event under it, and the call
	 * that made the event may return as soon as it is read.
	 */
	pthread_mutex_lock(&gone.lock);
	g.start = gone.n;
	pthread_mutex_unlock(&gone.lock);
	if (g.start == 0) {
		/*
		 * Another thread follows them: a call waits until it has
		 * buried (the engine need not: they have left the map).
		 */
		while (!eng_thread && atomic_load(&gone.burying) > 0)
			sched_yield();
		fm__crit_leave(&c);
		return;
	}
	/*
	 * Following may wait (evproc, or an unlink for a refusal that holds
	 * its entry and needs the uffd read meanwhile): another engine
	 * thread reads.
	 */
	engine_block();
	pthread_mutex_lock(&evproc);
	for (;;) {
		pthread_mutex_lock(&gone.lock);
		if (gone.n == 0) {
			pthread_mutex_unlock(&gone.lock);
			break;
		}
		g = gone.v[0];
		pthread_mutex_unlock(&gone.lock);
		/* (no host of clients: a child's uffd is kept, unserved) */
		if (g.forkfd < 0)
			fm__map_gone(fm__vmspace_of(g.pm), g.start, g.end, g.to,
			    g.gen, &dead);
		else if (fm__client_forked != NULL)
			fm__client_forked(fm__vmspace_of(g.pm), g.forkfd,
			    g.gen);
		if (puts_map_behind(&g)) /* (linked, or moved, now) */
			atomic_fetch_sub(&fm__map_behind, 1);
		pthread_mutex_lock(&gone.lock);
		memmove(&gone.v[0], &gone.v[1], --gone.n * sizeof(gone.v[0]));
		atomic_store(&gone.pending, gone.n);
		pthread_mutex_unlock(&gone.lock);
	}
	if (dead != NULL)
		atomic_fetch_add(&gone.burying, 1);
	pthread_mutex_unlock(&evproc);
	if (dead != NULL) {
		/* The last unmap writes back: a pager may take its time. */
		fm__map_bury(dead);
		atomic_fetch_sub(&gone.burying, 1);
	}
	engine_unblock();
	fm__crit_leave(&c);
}

int
fm__fault_prefetch(struct fm_entry *e, uintptr_t va, uintptr_t end)
{
	struct fault f = {.pm = e->pm, .e = e, .end = e->end};

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
		f.va = va;
		f.prot = e->prot;
		r = fill_and_install(&f, around, &mapped, NULL);
		if (r == -ESTALE || r == -ESRCH)
			break;
		if (r < 0 && r != -EEXIST && r != -ENOENT && r != -EAGAIN)
			return r;
		va += mapped ? mapped : FM_PAGE_SIZE;
	}
	return 0;
}

/*
 * Read the messages waiting, under gone.lock so that every UNMAP or REMAP
 * event is recorded as gone before the call that made it returns; user:
 * drop what the user-mode-only uffd has too (else only after a wait saw
 * some: fm__pmap_read).
 * => the count read into got (faults and the events the engine follows)
 */
static int
read_batch(struct fm_pmap *pm, struct emsg *got, int user)
{
	struct uffd_msg msgs[FM_ENGINE_BATCH];
	int64_t read_us;
	uint64_t gen, mprot_gen;
	int k, n = 0;

	pthread_mutex_lock(&gone.lock);
	if (!atomic_load(&pm->served)) {
		/* (a wait returned it just before fm__engine_unserve) */
		pthread_mutex_unlock(&gone.lock);
		return 0;
	}
	atomic_store(&gone.reading, 1);
	/*
	 * Before the read: the call that made an event returns once it is
	 * read, and may map anew at once; what it maps must count as newer.
	 */
	gen = atomic_load(&fm__map.gen);
	/* What this read may note (thr.seq changes only under gone.lock). */
	atomic_store(&seq_bound, thr.seq + FM_ENGINE_BATCH);
	/* Before the read: an fm_mprotect ended after it counts as later. */
	mprot_gen = atomic_load(&mprot.gen);
	k = fm__pmap_read(pm, msgs, FM_ENGINE_BATCH, user);
	/* (a client's uffd is the client's too: what it does is no bug) */
	FM_ASSERT(k >= 0 || pm->vs != NULL, "reading the userfaultfd: %s",
	    strerror(-k));
	if (k < 0)
		k = 0;
	read_us = k > 0 ? now_us() : 0;
	for (int i = 0; i < k; i++) {
		const struct uffd_msg *m = &msgs[i];
		uintptr_t start, end;
		uintptr_t to = 0;
		int forkfd = -1;

		if (m->event == UFFD_EVENT_PAGEFAULT) {
			got[n] = (struct emsg){.pm = pm,
			    .m = *m,
			    .read_us = read_us,
			    .mprot_gen = mprot_gen};
			atomic_fetch_add(&pm->inflight, 1);
			got[n++].seq =
			    note_message((pid_t)m->arg.pagefault.feat.ptid,
			        (uintptr_t)m->arg.pagefault.address &
			            ~(uintptr_t)FM_PAGE_MASK,
			        m->arg.pagefault.flags);
			continue;
		}
		if (m->event == UFFD_EVENT_UNMAP) {
			start = m->arg.remove.start;
			end = m->arg.remove.end;
		} else if (m->event == UFFD_EVENT_REMAP) {
			start = m->arg.remap.from;
			end = start + m->arg.remap.len;
			to = m->arg.remap.to;
		} else if (m->event == UFFD_EVENT_FORK) {
			/* Its child's address space (a client's: kern/client.c) */
			start = end = 0;
			forkfd = (int)m->arg.fork.ufd;
		} else
			continue; /* REMOVE: not asked for */
		if (forkfd < 0 && pm->vs == NULL &&
		    own_take_locked(m->event, start, to ? to : end))
			continue; /* the engine's own move */
		for (unsigned j = 0; pm->vs == NULL && j < own.nva; j++)
			own.lost[j] |= own.va[j] >= start && own.va[j] < end;
		if (gone.n == gone.cap) {
			unsigned cap = gone.cap ? gone.cap * 2 : 64;
			struct gone *v = realloc(gone.v, cap * sizeof(*v));

			FM_ASSERT(v != NULL, "no memory for the gone list");
			gone.v = v;
			gone.cap = cap;
		}
		gone.v[gone.n++] =
		    (struct gone){pm, start, end, to, gen, forkfd};
		if (puts_map_behind(&gone.v[gone.n - 1]))
			atomic_fetch_add(&fm__map_behind, 1);
		atomic_store(&gone.pending, gone.n);
	}
	atomic_store(&seq_bound, thr.seq); /* exact again */
	atomic_store(&gone.reading, 0);
	pthread_mutex_unlock(&gone.lock);
	return n;
}

/* Queue messages for the engine threads. => eng.lock held */
static void
queue_locked(const struct emsg *v, int n)
{
	for (int i = 0; i < n; i++) {
		if (eng.n == eng.cap) {
			unsigned cap = eng.cap ? eng.cap * 2 : FM_ENGINE_QUEUE;
			struct emsg *q = malloc(cap * sizeof(*q));

			FM_ASSERT(q != NULL, "no memory for the engine queue");
			for (unsigned j = 0; j < eng.n; j++)
				q[j] = eng.q[(eng.head + j) % eng.cap];
			free(eng.q);
			eng.q = q;
			eng.head = 0;
			eng.cap = cap;
		}
		eng.q[(eng.head + eng.n++) % eng.cap] = v[i];
	}
	if (n > 0 && eng.idle > 0)
		pthread_cond_signal(&eng.cv);
}

/*
 * pm->drain: read what waits on the uffd and queue it, from a thread that
 * needs an event read (EAGAIN) and cannot count on the engine's readers.
 */
static int
engine_drain(struct fm_pmap *pm)
{
	struct emsg got[FM_ENGINE_BATCH];
	uint64_t one = 1;
	int n = read_batch(pm, got, 1);

	if (n == 0 && !events_pending())
		return 0;
	pthread_mutex_lock(&eng.lock);
	queue_locked(got, n);
	pthread_mutex_unlock(&eng.lock);
	/* Engine threads waiting in poll take them now. */
	(void)!write(kickfd, &one, sizeof one);
	return n;
}

/*
 * Wait for and read the next messages: the first comes back in *em, the
 * others are queued. => 1, or 0 when the read gave nothing
 * => eng.lock held, this thread a reader; returns with them
 */
static int
engine_read_locked(struct emsg *em)
{
	struct emsg got[FM_ENGINE_BATCH * FM_PMAP_SET_MAX];
	struct fm_pmap *ready[FM_PMAP_SET_MAX];
	int n = 0, k;

	pthread_mutex_unlock(&eng.lock);
	k = fm__pmap_set_wait(eng.set, kickfd, ready, FM_PMAP_SET_MAX);
	for (int i = 0; i < k; i++) /* each one ready: none starves */
		n += read_batch(ready[i], got + n, 0);
	fm__fault_events(); /* the map follows the kernel before faults */
	pthread_mutex_lock(&eng.lock);
	if (n > 0) {
		*em = got[0];
		queue_locked(got + 1, n - 1);
	}
	return n > 0;
}

/* A fault answered us after its message was read: its log2 bucket. */
static void
latency_note(int64_t us)
{
	int b = us < 2 ? 0 : 63 - __builtin_clzll((unsigned long long)us);

	if (b >= FM_LATENCY_BUCKETS)
		b = FM_LATENCY_BUCKETS - 1;
	atomic_fetch_add_explicit(&stats.latency[b], 1, memory_order_relaxed);
}

static void *
engine_main(void *arg)
{
	struct emsg m;

	pthread_mutex_lock(&eng.lock);
	for (;;) {
		if (eng.n > 0) {
			/* Queued messages first; another thread may read. */
			m = eng.q[eng.head];
			eng.head = (eng.head + 1) % eng.cap;
			eng.n--;
			if (eng_reader) {
				eng_reader = 0;
				eng.readers--;
				if (eng.idle > 0)
					pthread_cond_signal(&eng.cv);
			}
		} else if (eng_reader || eng.readers == 0 || eng.shared ||
		    (eng.stalled_since != 0 &&
		        now_us() - eng.stalled_since > FM_STALL_US)) {
			if (!eng_reader) {
				eng_reader = 1;
				eng.readers++;
			}
			if (!engine_read_locked(&m))
				continue;
		} else {
			struct timespec ts;

			/* Timed: to see a reader that waits on a pager. */
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += FM_STALL_US * 1000 * 2;
			if (ts.tv_nsec >= 1000000000) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000;
			}
			eng.idle++;
			(void)pthread_cond_timedwait(&eng.cv, &eng.lock, &ts);
			eng.idle--;
			continue;
		}
		pthread_mutex_unlock(&eng.lock);
		resolve_fault(m.pm, &m);
		latency_note(now_us() - m.read_us);
		readahead_run(m.pm); /* its thread is woken: beside it */
		atomic_fetch_sub(&m.pm->inflight, 1);
		pthread_mutex_lock(&eng.lock);
	}
	return NULL;
}

#define FM_ENGINE_STACK ((size_t)2 << 20) /* at least (sanitizers need 1) */

/* The engine's start: retried until it works (a transient EMFILE). */
static struct {
	pthread_mutex_t lock;
	pthread_cond_t cv;
	int started; /* the threads run */
	int ready; /* threads that have made their own malloc arena */
} start = {.lock = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

int fm__forked;

/*
 * In the child of a fork(), fomap is the parent's: its engine, objects and
 * drivers' state are copies that must not act (a driver hook in the child
 * could write or punch what the parent still uses, and a lock a parent's
 * thread held is held for good). So once the parent has used fomap, every
 * fomap call in the child is the plain system call (vm.h: fm__forked).
 */
static void
fork_child(void)
{
	if (start.started || fm__map.n > 0)
		fm__forked = 1;
}

__attribute__((constructor)) static void
fork_setup(void)
{
	pthread_atfork(NULL, NULL, fork_child);
}

static void *
engine_thread(void *arg)
{
	eng_thread = 1;
	fm__quiet_thread = 1; /* (started with every signal blocked) */
	/*
	 * Make this thread's malloc arena now, inside the call that starts
	 * the engine, not later in a hole the program has just freed.
	 */
	free(malloc(64));
	pthread_mutex_lock(&start.lock);
	start.ready++;
	pthread_cond_broadcast(&start.cv);
	pthread_mutex_unlock(&start.lock);
	return engine_main(arg);
}

/* One engine thread, its stack in fomap's arena. => 0, or -errno */
static int
engine_spawn_fn(struct fm_pmap *pm, void *(*fn)(void *), const char *name)
{
	pthread_attr_t attr;
	size_t size = FM_ENGINE_STACK;
	pthread_t t;
	void *stack;
	int r;

	pthread_attr_init(&attr);
	if (pthread_attr_getstacksize(&attr, &size) != 0 ||
	    size < FM_ENGINE_STACK)
		size = FM_ENGINE_STACK;
	stack = fm__arena_map(size, PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (stack == MAP_FAILED) {
		pthread_attr_destroy(&attr);
		return -errno;
	}
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstack(&attr, stack, size);
	r = pthread_create(&t, &attr, fn, pm);
	pthread_attr_destroy(&attr);
	if (r != 0) {
		fm__arena_unmap(stack, size);
		return -r;
	}
	pthread_setname_np(t, name);
	return 0;
}

static int
engine_spawn(void)
{
	return engine_spawn_fn(NULL, engine_thread, "fomap-engine");
}

/* => start.lock held */
static int
engine_setup_locked(void)
{
	struct fm_pmap *pm = fm__pmap_kernel();
	const char *env = getenv("FOMAP_ENGINE_THREADS");
	int nthreads = env ? atoi(env) : 2, n = 0, r = 0;
	cpu_set_t cpus;
	sigset_t all, old;

	if (pm == NULL)
		return -errno;
	if (nthreads < 1 || nthreads > FM_ENGINE_MAXTHREADS)
		nthreads = 2;
	if (kickfd < 0 && (kickfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0)
		return -errno;
	if (eng.set < 0) {
		int set = fm__pmap_set_create(kickfd);

		if (set < 0)
			return set;
		atomic_store(&pm->served, 1);
		if ((r = fm__pmap_set_add(set, pm)) < 0) {
			close(set);
			return r;
		}
		eng.set = set;
	}
	pm->drain = engine_drain;
	if ((env = getenv("FOMAP_FAULT_AROUND")) != NULL && atoi(env) != 0) {
		int k = atoi(env);

		eng.around = k < 1           ? 1
		    : k > (int)FM_AROUND_MAX ? FM_AROUND_MAX
		                             : (unsigned)k;
	}
	/* A second reader only helps if it can run beside the first. */
	if (sched_getaffinity(0, sizeof cpus, &cpus) < 0 ||
	    CPU_COUNT(&cpus) > 1)
		eng.shared = 1;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	for (; n < nthreads && r == 0; n++)
		r = engine_spawn();
	pthread_mutex_lock(&eng.lock);
	eng.nthreads = n - (r < 0);
	pthread_mutex_unlock(&eng.lock);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r < 0 && n == 1)
		return r; /* no thread: try again at the next call */
	while (start.ready < n - (r < 0))
		pthread_cond_wait(&start.cv, &start.lock);
	atexit(fm__map_exit);
	start.started = 1;
	return 0;
}

/*
 * Start the engine (once it has worked, it runs for good).
 * => 0, or the errno that stops it now, negated
 */
int
fm__engine_start(void)
{
	int r = 0;

	pthread_mutex_lock(&start.lock);
	if (!start.started && (r = fm__page_size_check()) == 0)
		r = engine_setup_locked();
	pthread_mutex_unlock(&start.lock);
	return r;
}

int
fm__engine_serve(struct fm_pmap *pm)
{
	int r = fm__engine_start();

	if (r < 0)
		return r;
	pm->drain = engine_drain;
	atomic_store(&pm->served, 1);
	if ((r = fm__pmap_set_add(eng.set, pm)) < 0)
		atomic_store(&pm->served, 0);
	return r;
}

/* Whether an event of pm's is recorded and not yet followed. */
static int
gone_of(const struct fm_pmap *pm)
{
	int r = 0;

	pthread_mutex_lock(&gone.lock);
	for (unsigned i = 0; i < gone.n && !r; i++)
		r = gone.v[i].pm == pm;
	pthread_mutex_unlock(&gone.lock);
	return r;
}

void
fm__engine_unserve(struct fm_pmap *pm)
{
	FM_ASSERT(!eng_thread, "an engine thread drops an address space");
	fm__pmap_set_del(eng.set, pm);
	/*
	 * A read of it under way ends under gone.lock, and none after this
	 * (a thread whose wait returned pm meanwhile sees it unserved).
	 */
	pthread_mutex_lock(&gone.lock);
	atomic_store(&pm->served, 0);
	pthread_mutex_unlock(&gone.lock);
	/* Its queued faults: woken (its threads, if any, fault again). */
	pthread_mutex_lock(&eng.lock);
	for (unsigned i = 0, n = eng.n; i < n; i++) {
		struct emsg m = eng.q[eng.head];

		eng.head = (eng.head + 1) % eng.cap;
		eng.n--;
		if (m.pm != pm) {
			eng.q[(eng.head + eng.n++) % eng.cap] = m;
			continue;
		}
		(void)fm__pmap_wake(pm,
		    (uintptr_t)m.m.arg.pagefault.address &
		        ~(uintptr_t)FM_PAGE_MASK,
		    FM_PAGE_SIZE);
		atomic_fetch_sub(&pm->inflight, 1);
	}
	pthread_mutex_unlock(&eng.lock);
	/*
	 * The faults being answered, its events, and the burial of what
	 * they took from the map (which wakes their faults through pm) end.
	 */
	while (atomic_load(&pm->inflight) > 0 || gone_of(pm) ||
	    atomic_load(&gone.burying) > 0) {
		fm__fault_events();
		usleep(FM_LOOK_US * 10);
	}
}

int
fm__engine_thread(void)
{
	return eng_thread;
}

int
fm__engine_started(void)
{
	int r;

	pthread_mutex_lock(&start.lock);
	r = start.started;
	pthread_mutex_unlock(&start.lock);
	return r;
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

int
fm_engine_latency(unsigned long *hist, int n)
{
	if (n > FM_LATENCY_BUCKETS)
		n = FM_LATENCY_BUCKETS;
	for (int i = 0; i < n; i++)
		hist[i] = atomic_load(&stats.latency[i]);
	return n < 0 ? 0 : n;
}
