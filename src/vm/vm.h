/*
 * vm.h: fomap's virtual-memory core: objects, the address-space map and
 * the fault engine.
 *
 * Lock order (never take a lock above one you hold):
 *   0. fm__map.oplock      (mutex)   serialises the calls that change the
 *                                    address space (fm_mmap, fm_munmap,
 *                                    fm_mprotect); held across their kernel
 *                                    calls; never taken by the engine
 *   1. fm__map.lock        (rwlock)  the map of entries; held only to look
 *                                    up or edit it, never across a pager
 *                                    call or a blocking kernel call
 *   2. obj->pmaplock       (rwlock)  shared: installing pages of obj;
 *                                    exclusive: changing what may be mapped
 *                                    (protect, unmap, clean)
 *   3. obj->lock           (mutex)   page states, busy pages, obj->entries,
 *                                    e->dead, e->installing, e->end
 *                                    (and fm__map.lock exclusive too to
 *                                    change obj->entries or e->end)
 *   4. the engine's own locks (fault.c: an install's stripes, gone.lock,
 *      thr.lock, eng.lock), taken under 3 by installs and protects
 * pgo_get and pgo_fault run with 2 held shared (so a fill and its install
 * are one step); pgo_put with 2 held exclusive; pgo_write with none. Calls
 * that need 2 exclusive on the object a hook of this thread holds it for
 * fail with -EDEADLK. Every path that holds 0, 1 exclusive or 2 does so
 * inside fm__crit_enter/leave: no signal handler can run and no
 * cancellation can act while it holds them.
 */
#ifndef FM_VM_VM_H
#define FM_VM_VM_H

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>

#include <fomap/driver.h>

#include "vm/pmap.h"
#include "vm/tree.h"

#define FM_PAGE_SHIFT 12
_Static_assert(FM_PAGE_SIZE == (size_t)1 << FM_PAGE_SHIFT, "FM_PAGE_SHIFT");
#define FM_PAGE_MASK (FM_PAGE_SIZE - 1)
#define FM_PAGES(b) (((b) + FM_PAGE_MASK) >> FM_PAGE_SHIFT)

/* Our own invariants: checked in every build, loudly. */
#define FM_ASSERT(c, ...)                                                 \
	do {                                                              \
		if (!(c)) {                                               \
			fprintf(stderr,                                   \
			    "fomap: %s:%d: %s: assertion %s: ", __FILE__, \
			    __LINE__, __func__, #c);                      \
			fprintf(stderr, __VA_ARGS__);                     \
			fputc('\n', stderr);                              \
			abort();                                          \
		}                                                         \
	} while (0)

/*
 * The failure of a POSIX-mirror call (fm_munmap, fm_read, ...) from the
 * negative errno r: errno set, and -1 to return, as libc's calls do.
 * Called as "return fm__syserr(r);", so that the return stays in sight.
 */
static inline int
fm__syserr(long r)
{
	errno = (int)-r;
	return -1;
}

/* Internal page states; the low bits are the public FM_PG_*. */
#define FM_PGS_BUSY 0x80 /* being filled by one thread; wait on busycv */
#define FM_PGS_WRITING 0x40 /* a write to it is being decided; wait too */
#define FM_PGS_REFUSING 0x20 /* with WRITING: a write's refusal is told */

#define FM_OBJ_HOST 0x1 /* the host kernel maps obj->fd directly */
#define FM_OBJ_OWNFD 0x2 /* obj->fd is a memfd of its own, not the store */

/* In fm_mmap_req.pages, from the device pager: the page is read-only. */
#define FM_PAGE_RDONLY ((uint64_t)1 << 63)

struct fm_entry;

#define FM_OBJ_GENS 64 /* change counters of an object's pages */
#define FM_GEN_MAP (1u << 10) /* an unmap's count (a protect's is 1) */
#define FM_GEN_CLEAN (1u << 20) /* a write-back's: refusals ignore it */

struct fm_object {
	const struct fm_pagerops *ops; /* never NULL: see pager_anon.c */
	void *priv;
	atomic_uint refs;
	int flags; /* FM_OBJ_* */
	int fd; /* the object store (memfd), or the host file */
	int rofd; /* fd reopened read-only, or -1 (under lock) */
	off_t base; /* where the object's pages start in fd */
	uint64_t npages;
	void *window; /* fm_object_window, or NULL (under lock) */
	pthread_mutex_t lock;
	pthread_cond_t busycv;
	pthread_rwlock_t pmaplock;
	/*
	 * What changed the pages' protection or mapping, by page, hashed
	 * (fm__object_gen): a protect adds 1, an unmap FM_GEN_MAP, a
	 * write-back FM_GEN_CLEAN; pmaplock exclusive.
	 */
	atomic_uint gens[FM_OBJ_GENS];
	uint8_t *pgstate; /* FM_PG_* | FM_PGS_BUSY, one byte a page */
	uint64_t forgets; /* pages fault.c's forget_page emptied (lock) */
	/*
	 * The live entries mapping obj: an interval tree of their page
	 * ranges [pgoff, pgoff + pages) (fm__object_overlap_first), under
	 * lock; changed with fm__map.lock exclusive held too.
	 */
	struct fm_tree entries;
};

/*
 * A map entry: one mapping [start, end) of obj from page pgoff, or of host
 * memory (obj NULL or FM_OBJ_HOST). Immutable while in the map, but for
 * end (shrunk by a split, under the map lock exclusive and obj->lock), prot
 * (under the map lock exclusive, stored atomically: the engine reads it
 * without the lock), advice (under the map lock exclusive) and the
 * fault-around hints (atomics). Referenced by the map and by each fault resolving on it
 * (refs); freed with the last reference.
 */
struct fm_entry {
	uintptr_t start, end;
	atomic_uint refs;
	/*
	 * Under obj->lock: dead once the entry is leaving the map (no page
	 * is installed into it after that); installing counts the installs
	 * under way into it, which its removal waits for (invariant 5).
	 */
	int dead;
	unsigned installing;
	uint64_t gen; /* fm__map.gen when it entered the map */
	struct fm_object *obj;
	uint64_t pgoff;
	int prot, maxprot;
	int flags; /* MAP_SHARED or MAP_PRIVATE */
	int advice; /* MADV_NORMAL, MADV_RANDOM, MADV_SEQUENTIAL */
	struct fm_vmspace *vs; /* the address space whose map holds it */
	struct fm_pmap *pm; /* its userfaultfd, when the engine serves it */
	int pmode; /* FM_PMAP_SHARED or _PRIVATE: how pm has it */
	struct fm_tnode mnode; /* in the map (map.c), by start */
	struct fm_tnode onode; /* in obj->entries while live (object.c) */
	uint64_t omax; /* obj->entries: the largest end page in its subtree */
	/*
	 * The link of a list of entries out of the map (mmap.c's dead lists:
	 * take_locked, fm__map_gone, bury), and nothing else.
	 */
	struct fm_entry *onext;
	/*
	 * Fault-around streams (fault.c), so that sequential runs of
	 * several threads do not reset each other: each the address where its
	 * next fault should land | log2 of its window, or 0. ra_size counts
	 * the streams started: a new one replaces the one started first.
	 */
	_Atomic uintptr_t ra_next; /* stream 0 */
	_Atomic uintptr_t ra_more[3]; /* streams 1 to 3 */
	_Atomic unsigned ra_size;
};

/* object.c */
/*
 * Every object made from now on has a store of its own (a host that hands
 * objects' stores to other processes: one object's store shows no other's).
 */
extern atomic_int fm__object_ownfd;
int fm__object_alloc(const struct fm_pagerops *ops, size_t size, void *priv,
    int fd, int flags, struct fm_object **objp);
int fm__object_rofd(struct fm_object *obj);
/*
 * A descriptor of obj's store of its own (read-write when wr) for a host
 * that maps it into another process (fomapd's FUSE passthrough): only for
 * an object of fm_object_create_backing (the anonymous pager's, with a
 * store of its own: another object's pages are never in it). *size: its
 * length.
 * => the descriptor, -ENODEV (the engine must serve it), or -errno
 */
int fm__object_backing_fd(struct fm_object *obj, int wr, size_t *size);
/* The change counter of page pg (shared with the pages FM_OBJ_GENS apart). */
static inline unsigned
fm__object_gen(struct fm_object *obj, uint64_t pg)
{
	return atomic_load(&obj->gens[pg % FM_OBJ_GENS]);
}
/* Count a change of pages [pg, pg+n). => obj->pmaplock exclusive */
void fm__object_gen_add(struct fm_object *obj, uint64_t pg, uint64_t n,
    unsigned by);
/* => the map lock held exclusive (for all three) */
void fm__object_link(struct fm_object *obj, struct fm_entry *e);
void fm__object_unlink(struct fm_object *obj, struct fm_entry *e);
void fm__object_split(struct fm_object *obj, struct fm_entry *e,
    struct fm_entry *t);
/*
 * The live entries of obj that map a page of [pg, pg+n), by pgoff:
 *	for (e = fm__object_overlap_first(obj, pg, n); e != NULL;
 *	     e = fm__object_overlap_next(obj, e, pg, n))
 * O(log m) each, for m entries. => obj->lock held across the walk
 */
struct fm_entry *fm__object_overlap_first(const struct fm_object *obj,
    uint64_t pg, uint64_t n);
struct fm_entry *fm__object_overlap_next(const struct fm_object *obj,
    const struct fm_entry *e, uint64_t pg, uint64_t n);
/* Whether a live entry maps obj. => obj->lock held */
static inline int
fm__object_mapped_locked(const struct fm_object *obj)
{
	return !fm__tree_empty(&obj->entries);
}
unsigned fm__object_busy(struct fm_object *obj, uint64_t pgidx, unsigned max);
void fm__object_unbusy(struct fm_object *obj, uint64_t pgidx, unsigned n,
    unsigned filled);
uint8_t fm__object_state(struct fm_object *obj, uint64_t pgidx);
void fm__object_set(struct fm_object *obj, uint64_t pgidx, unsigned n,
    uint8_t set, uint8_t clear);
int fm__object_entry_wp(const struct fm_object *obj, uint8_t st);
/* Check the invariants of pages [pg, pg+n). => obj->lock held */
void fm__object_assert_locked(const struct fm_object *obj, uint64_t pg,
    uint64_t n);

/*
 * A copy of e's mapping (not its references, hints or installs) in c.
 * => the map lock exclusive held (e->end, e->dead stable)
 */
void fm__entry_copy(struct fm_entry *c, const struct fm_entry *e);
void fm__entry_ref(struct fm_entry *e);
void fm__entry_rele(struct fm_entry *e);

/* arena.c: where fomap's own memory and the objects' pages live */
void *fm__arena_map(size_t len, int prot, int flags, int fd, off_t off);
void *fm__arena_map_unlocked(size_t len, int prot, int flags, int fd,
    off_t off);
void fm__arena_unmap(void *addr, size_t len);
void *fm__arena_take(size_t len);
void fm__arena_moved(void *addr, size_t len);
int fm__store_alloc(uint64_t size, int *fd, int *rofd, off_t *base);
void fm__store_free(off_t base, uint64_t size);
/* => 0, or -ENOSYS: the kernel's pages are not FM_PAGE_SIZE bytes */
int fm__page_size_check(void);
const char *fm__page_size_why(void);

/*
 * io.c: fm__full_pread reads len bytes of fd at off into buf, through short
 * reads and EINTR. => the count, less than len only at the end of the
 * file; or -errno
 * fm__full_pwrite writes all len bytes of buf to fd at off, through short
 * writes and EINTR. => 0, or -errno (-EIO: the file takes no more)
 */
ssize_t fm__full_pread(int fd, void *buf, size_t len, off_t off);
int fm__full_pwrite(int fd, const void *buf, size_t len, off_t off);
/*
 * fm__file_copy copies len bytes of from at off to to at tooff in the
 * kernel, with one copy of the data and no buffer of the caller's: splice
 * through a pipe (an engine thread's own, kept; else one made for the
 * copy), FM_FILE_COPY_MAX bytes a round when the pipe limits allow.
 * => the count, less than len only at the end of from; or -errno, nothing
 *    copied: -EINVAL, the files do not splice; -EMFILE, -ENFILE, -ENOMEM,
 *    no pipe (copy through a buffer instead); a failure later may have
 *    copied a part
 */
#define FM_FILE_COPY_MAX ((size_t)1 << 20)
ssize_t fm__file_copy(int from, off_t off, int to, off_t tooff, size_t len);

/*
 * pager_anon.c: the anonymous pager (zero-fill), the pager of an object
 * made without one; fm__anon_get, its pgo_get, is also the default fill.
 */
extern const struct fm_pagerops fm__anon_pagerops;
fm_pgo_get_t fm__anon_get;

/* pager_host.c: a host object mapping fd; the kernel is its pager. */
int fm__host_object(int fd, struct fm_object **objp);

/*
 * pager_device.c: the device pager, for legacy d_mmap.
 * fm__udv_memory: a device's memory in *memp, made on the first call:
 * size bytes of zeroed pages, all resident; a later call checks that size
 * fits it. => 0, or -EINVAL (size 0, or larger), -ENOMEM, -EMFILE
 * => the lock that guards *memp held (the device's)
 */
int fm__udv_memory(struct fm_object **memp, size_t size);
/*
 * fm__udv_attach: req maps mem as d_mmap's cookies say.
 * => 0 with req->obj referenced; -ENXIO: no memory, or a cookie outside it
 */
int fm__udv_attach(struct fm_dev *dev, fm_d_mmap_t *d_mmap,
    struct fm_object *mem, struct fm_mmap_req *req);

/*
 * map.c: the map of the process's fomap mappings. The entries themselves
 * are map.c's: others look them up, or walk a range of them, through the
 * calls below.
 */
struct fm_map {
	pthread_mutex_t oplock;
	pthread_rwlock_t lock;
	_Atomic uint64_t gen; /* entries inserted so far */
	size_t n; /* entries in the map, of every address space */
};
extern struct fm_map fm__map;
/*
 * An address space whose fomap mappings the map keeps: this process's own
 * (fm__vs_self) or another process's that the engine serves through its
 * userfaultfd (kern/client.c). One fm__map.lock guards them all.
 */
struct fm_vmspace {
	struct fm_pmap *pm; /* its userfaultfd; NULL: self's, not open yet */
	struct fm_tree tree; /* its entries by start (map.c) */
	uint64_t changes; /* inserts and removals so far */
	size_t n; /* entries */
};
extern struct fm_vmspace fm__vs_self;
void fm__vmspace_init(struct fm_vmspace *vs, struct fm_pmap *pm);
/* The address space whose faults arrive on pm's userfaultfd. */
static inline struct fm_vmspace *
fm__vmspace_of(struct fm_pmap *pm)
{
	return pm->vs != NULL ? pm->vs : &fm__vs_self;
}
struct fm_entry *fm__map_lookup(struct fm_vmspace *vs, uintptr_t va);
/*
 * Room for more entries, so that as many inserts cannot fail: the map is
 * intrusive (tree.h), so there is always room. => 0
 */
int fm__map_reserve(size_t more);
/* Put e in e->vs's map (a new mapping: newer than every event read). */
int fm__map_insert(struct fm_entry *e);
/*
 * Put e, a copy of an entry (moved by an mremap, or a fork child's), in
 * e->vs's map as old as the mapping it copies (e->gen kept): an event
 * read before the copy was made is still about it (a second mremap of
 * the moved range, read before the first was followed).
 */
int fm__map_insert_copy(struct fm_entry *e);
/* Split the entries straddling start or end so the range has its own. */
int fm__map_clip(struct fm_vmspace *vs, uintptr_t start, uintptr_t end);
void fm__map_remove(struct fm_entry *e);
/*
 * A walk over the entries overlapping [start, end), in address order:
 *	struct fm_map_iter it;
 *	struct fm_entry *e;
 *
 *	n = fm__map_iter(&it, vs, start, end);
 *	while ((e = fm__map_next(&it)) != NULL)
 *		...
 * fm__map_iter returns how many entries the walk will meet if the map
 * does not change. The walk goes by address (it resumes at the end of the
 * entry it returned last), so that entry may leave the map meanwhile.
 * Each step is O(1) amortized while the map does not change, O(log n)
 * after a change.
 * => fm__map.lock held across the walk (exclusive to change the map)
 */
struct fm_map_iter {
	struct fm_vmspace *vs;
	uintptr_t at, end;
	struct fm_entry *last; /* returned last, or NULL */
	uint64_t changes; /* the map's changes when last was returned */
};
size_t fm__map_iter(struct fm_map_iter *it, struct fm_vmspace *vs,
    uintptr_t start, uintptr_t end);
struct fm_entry *fm__map_next(struct fm_map_iter *it);
void fm__map_assert(struct fm_vmspace *vs);

/* mmap.c */
/*
 * The kernel unmapped [start, end) (to == 0) or moved it to to: entries
 * there that are older than gen leave the map (or follow it), onto *dead,
 * for fm__map_bury once no lock is held (the last may write back).
 */
void fm__map_gone(struct fm_vmspace *vs, uintptr_t start, uintptr_t end,
    uintptr_t to, uint64_t gen, struct fm_entry **dead);
void fm__map_bury(struct fm_entry *dead);
/* At exit(): write back what is dirty in every object still mapped. */
void fm__map_exit(void);
/* fo_mmap of fp for an mmap (fm_mmap's checks). => 0 with req->obj */
struct fm_file;
int fm__mmap_object(struct fm_file *fp, int prot, int flags,
    struct fm_mmap_req *req);
/*
 * Another process's mappings (kern/client.c). fm__vmspace_enter: it
 * mapped obj's store from page pgoff at [va, va+len) (flags: MAP_SHARED
 * or MAP_PRIVATE); registered and put in vs's map, taking the caller's
 * reference on obj (not on failure). fm__vmspace_clear: every entry of vs
 * leaves the map. The others: what fm_msync (the write-back) and
 * fm_madvise (the engine's advice) do for this process's mappings.
 * => 0, or -errno
 */
int fm__vmspace_enter(struct fm_vmspace *vs, uintptr_t va, size_t len,
    struct fm_object *obj, uint64_t pgoff, int prot, int maxprot, int flags);
void fm__vmspace_clear(struct fm_vmspace *vs);
/* The entries of [start, end) leave vs's map, and it is unregistered. */
void fm__vmspace_remove(struct fm_vmspace *vs, uintptr_t start, uintptr_t end);
/*
 * vs's process forked (the FORK event of its uffd, read when gen was the
 * map's count; ufd the child's uffd): kern/client.c makes the child's
 * address space, and copies into it every entry of vs older than the
 * event (fm__vmspace_copy). NULL: no host of clients here (ufd kept).
 * => no lock held (fm__fault_events)
 */
extern void (*fm__client_forked)(struct fm_vmspace *vs, int ufd, uint64_t gen);
void fm__vmspace_copy(struct fm_vmspace *vs, struct fm_vmspace *child,
    uint64_t gen);
/*
 * An mprotect of vs's [start, end) in two halves, around the kernel's
 * (this process's own, or the client's): begin checks every entry's
 * maximum protection (-EACCES), clips the range and holds the refusals in
 * it (*slot); end, once the kernel's is done (done: it worked), sets the
 * entries' protection and lets go. => oplock held for this process's own
 */
int fm__vmspace_protect_begin(struct fm_vmspace *vs, uintptr_t start,
    uintptr_t end, int prot, int *slot);
void fm__vmspace_protect_end(struct fm_vmspace *vs, uintptr_t start,
    uintptr_t end, int prot, int slot, int done);
int fm__vmspace_msync(struct fm_vmspace *vs, uintptr_t start, uintptr_t end);
int fm__vmspace_advise(struct fm_vmspace *vs, uintptr_t start, uintptr_t end,
    int advice);

/*
 * fault.c: the fault engine.
 * fm__pmaplock_held: the object whose pmaplock this thread holds for a
 * pager's hook, if any: shared around pgo_get and pgo_fault (fault.c),
 * exclusive around pgo_put (object.c, which then sets fm__pmaplock_excl
 * too). The pager wrappers below check their hooks' locks against them.
 */
extern __thread struct fm_object *fm__pmaplock_held;
extern __thread struct fm_object *fm__pmaplock_excl;
int fm__engine_start(void);
int fm__engine_started(void);
/*
 * Serve another address space (kern/client.c) with the same threads; or
 * stop (its entries must have left the map: fm__vmspace_clear): returns
 * once no fault or event of pm's is being read or answered.
 */
int fm__engine_serve(struct fm_pmap *pm);
void fm__engine_unserve(struct fm_pmap *pm);
/*
 * Events read from a uffd that the map has not followed yet
 * (fm__fault_events follows them) and whose page-table entries the map
 * does not know: a client's fork (its child's entries are not linked) or
 * a raw mremap (the moved entries are still at the old range, skipped as
 * gone). The kernel copied or moved the page-table entries, writable ones
 * too, before fomap knew: no page may be made clean, or read-only, while
 * one is pending (the copy or the moved entry would be left writable):
 * such an object operation (object.c) finds this after its write-protect
 * of the known mappings (which reads any such event that waits: the
 * kernel refuses the write-protect with EAGAIN until it is read), gives
 * -EAGAIN, and is done again once the map has followed.
 */
extern atomic_uint fm__map_behind;
/* Whether this thread is one of the engine's. */
int fm__engine_thread(void);
/* In a fork child of a process that used fomap: calls are plain syscalls. */
extern int fm__forked;
/* Make pages of e from va resident and map them (MADV_WILLNEED). */
int fm__fault_prefetch(struct fm_entry *e, uintptr_t va, uintptr_t end);
/* The map follows the munmap/mremap events read so far. => no lock held */
void fm__fault_events(void);
/*
 * fm__trace_engine: the engine's decisions, for a test to put on its own
 * timeline (a weak symbol: called only where a test program defines it).
 */
void fm__trace_engine(const char *what, pid_t tid, uintptr_t va,
    unsigned long x) __attribute__((weak));
#define FM_TRACE(what, tid, va, x)                                           \
	do {                                                                 \
		if (fm__trace_engine)                                        \
			fm__trace_engine(what, tid, va, (unsigned long)(x)); \
	} while (0)

/* Whether a page of [start, end) of pm's is away while a refusal is told. */
int fm__fault_swapped(struct fm_pmap *pm, uintptr_t start, uintptr_t end);
/*
 * An mprotect of pm's [start, end): wait until no refusal in it is being
 * told, and hold later ones until fm__fault_mprotect_end. => its slot
 */
int fm__fault_mprotect_begin(const struct fm_pmap *pm, uintptr_t start,
    uintptr_t end);
void fm__fault_mprotect_end(int slot);
/*
 * Zap, or write-protect (wp) or unprotect (no wake), [va, va+len) of e:
 * every page the kernel still maps there for e (not taken away meanwhile,
 * not away while a refusal is told).
 */
int fm__fault_zap(struct fm_entry *e, uintptr_t va, size_t len);
int fm__fault_protect(struct fm_entry *e, uintptr_t va, size_t len, int wp);

/*
 * A critical section of a fomap call: every signal that can be sent
 * asynchronously blocked and cancellation disabled, so that a handler that
 * touches fomap memory never waits for a lock its own thread holds, and
 * cancellation never leaves a lock or a busy page behind. Synchronous
 * signals stay open (the kernel would kill the process on them anyway).
 */
struct fm_crit {
	sigset_t old;
	int cancel;
};

/*
 * Set in threads that block every signal for good and are never
 * cancelled (the engine's): their critical sections need no system call.
 */
extern __thread int fm__quiet_thread;

/* Every signal that can be sent asynchronously (not a fault's). */
static inline void
fm__async_signals(sigset_t *set)
{
	sigfillset(set);
	sigdelset(set, SIGBUS);
	sigdelset(set, SIGSEGV);
	sigdelset(set, SIGILL);
	sigdelset(set, SIGFPE);
	sigdelset(set, SIGTRAP);
}

static inline void
fm__crit_enter(struct fm_crit *c)
{
	sigset_t all;

	if (fm__quiet_thread)
		return;
	fm__async_signals(&all);
	pthread_sigmask(SIG_BLOCK, &all, &c->old);
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &c->cancel);
}

static inline void
fm__crit_leave(struct fm_crit *c)
{
	if (fm__quiet_thread)
		return;
	pthread_setcancelstate(c->cancel, NULL);
	pthread_sigmask(SIG_SETMASK, &c->old, NULL);
}

static inline uint64_t
fm__entry_pgidx(const struct fm_entry *e, uintptr_t va)
{
	return e->pgoff + ((va - e->start) >> FM_PAGE_SHIFT);
}

/*
 * ------------------------------------------------------------------------
 * Pager calls (FreeBSD's vm_pager.h). The core calls a pager's hooks only
 * through these: each asserts what driver.h promises the hook (which lock
 * is held, shared or exclusive) as far as this thread's records show, and
 * supplies the default of a hook the pager leaves NULL.
 *
 * What is checked: the pmaplock holds a hook runs under (fm__pmaplock_held,
 * fm__pmaplock_excl). What is not, and why: obj->lock and fm__map.lock (a
 * pthread mutex or rwlock cannot say cheaply whether this thread holds
 * it), a pmaplock hold made outside a hook (fault_wp's, around its own
 * look at the page), and the states of the pages a hook is given (read
 * under obj->lock only, which the caller has just dropped).
 */

static inline int
fm__pgo_has_fault(const struct fm_object *obj)
{
	return obj->ops->pgo_fault != NULL;
}

/* The pager writes dirty pages back, so clean pages are write-protected. */
static inline int
fm__pgo_has_put(const struct fm_object *obj)
{
	return obj->ops->pgo_put != NULL;
}

static inline int
fm__pgo_has_write(const struct fm_object *obj)
{
	return obj->ops->pgo_write != NULL;
}

/*
 * Whether obj's pages are filled by the anonymous pager (no pgo_fault, and
 * fm__anon_get or no pgo_get): nothing of the driver's reads or writes the
 * window on a fault, and, without pgo_put, the engine may fill and map a
 * shared registration's pages at once (fault.c: zero_install).
 */
static inline int
fm__pgo_zero_fill(const struct fm_object *obj)
{
	return obj->ops->pgo_fault == NULL &&
	    (obj->ops->pgo_get == NULL || obj->ops->pgo_get == fm__anon_get);
}

/*
 * A reference to obj was taken. Default: nothing (the count is fomap's).
 * => any lock may be held, fm__map.lock too (the hook only counts): none
 *    is checked
 */
static inline void
fm__pgo_reference(struct fm_object *obj)
{
	FM_ASSERT(atomic_load_explicit(&obj->refs, memory_order_relaxed) > 1,
	    "%s: object %p has %u references, the new one included", __func__,
	    (void *)obj, atomic_load(&obj->refs));
	if (obj->ops->pgo_reference != NULL)
		obj->ops->pgo_reference(obj);
}

/*
 * The last reference to obj is gone and it has been cleaned: the pager
 * frees its state. Default: nothing.
 * => no lock of obj held (nothing maps it, no one else refers to it); the
 *    other locks the contract excludes are not tracked
 */
static inline void
fm__pgo_detach(struct fm_object *obj)
{
	FM_ASSERT(atomic_load(&obj->refs) == 0 &&
	        !fm__object_mapped_locked(obj),
	    "%s: object %p still referenced (%u) or mapped", __func__,
	    (void *)obj, atomic_load(&obj->refs));
	FM_ASSERT(fm__pmaplock_held != obj && fm__pmaplock_excl != obj,
	    "%s: pmaplock of object %p held", __func__, (void *)obj);
	if (obj->ops->pgo_detach != NULL)
		obj->ops->pgo_detach(obj);
}

/* pgo_get and pgo_fault: obj's pmaplock held shared, for this fill. */
#define FM_PGO_ASSERT_FILLING(obj)                                          \
	FM_ASSERT(fm__pmaplock_held == (obj) && fm__pmaplock_excl != (obj), \
	    "%s: pmaplock of object %p not held shared for a fill "         \
	    "(held for %p, exclusive for %p)",                              \
	    __func__, (void *)(obj), (void *)fm__pmaplock_held,             \
	    (void *)fm__pmaplock_excl)

/*
 * Fill pages [pgidx, pgidx + *npages) of obj, all busy and not resident:
 * *npages comes back as the count filled. Default: the anonymous pager's
 * zero-fill, all of them (fm__anon_get).
 * => obj->pmaplock held shared by this thread (checked); obj->lock not
 *    held (not checked)
 */
static inline int
fm__pgo_get(struct fm_object *obj, uint64_t pgidx, unsigned *npages)
{
	FM_PGO_ASSERT_FILLING(obj);
	FM_ASSERT(*npages > 0 && pgidx < obj->npages &&
	        *npages <= obj->npages - pgidx,
	    "%s: pages %llu+%u outside object %p", __func__,
	    (unsigned long long)pgidx, *npages, (void *)obj);
	if (obj->ops->pgo_get != NULL)
		return obj->ops->pgo_get(obj, pgidx, npages);
	return fm__anon_get(obj, pgidx, npages);
}

/*
 * The full fault handler of f->obj (only for a pager that has one:
 * fm__pgo_has_fault; without one the engine fills with fm__pgo_get).
 * => f->obj's pmaplock held shared by this thread (checked); obj->lock
 *    not held (not checked)
 */
static inline int
fm__pgo_fault(struct fm_fault *f)
{
	FM_PGO_ASSERT_FILLING(f->obj);
	FM_ASSERT(fm__pgo_has_fault(f->obj), "%s: object %p has no pgo_fault",
	    __func__, (void *)f->obj);
	FM_ASSERT(f->pgidx < f->obj->npages &&
	        f->npages <= f->obj->npages - f->pgidx,
	    "%s: pages %llu+%u outside object %p", __func__,
	    (unsigned long long)f->pgidx, f->npages, (void *)f->obj);
	return f->obj->ops->pgo_fault(f);
}

/*
 * Write back (FM_PGO_CLEAN) pages [pgidx, pgidx + npages) of obj, busy and
 * write-protected in every mapping. Default: nothing to write back to, 0
 * (callers ask fm__pgo_has_put first: such an object has no dirty pages).
 * => obj->pmaplock held exclusive by this thread (checked); obj->lock not
 *    held (not checked)
 */
static inline int
fm__pgo_put(struct fm_object *obj, uint64_t pgidx, unsigned npages, int flags)
{
	FM_ASSERT(fm__pmaplock_excl == obj && fm__pmaplock_held == obj,
	    "%s: pmaplock of object %p not held exclusive (held for %p, "
	    "exclusive for %p)",
	    __func__, (void *)obj, (void *)fm__pmaplock_held,
	    (void *)fm__pmaplock_excl);
	FM_ASSERT(npages > 0 && pgidx < obj->npages &&
	        npages <= obj->npages - pgidx,
	    "%s: pages %llu+%u outside object %p", __func__,
	    (unsigned long long)pgidx, npages, (void *)obj);
	if (obj->ops->pgo_put != NULL)
		return obj->ops->pgo_put(obj, pgidx, npages, flags);
	return 0;
}

/*
 * The write hook: may the first write to page pgidx of obj, write-protected
 * in a shared mapping, go through? st: the page's state as the caller last
 * read it. Default (no hook): a page made read-only (FM_PG_RDONLY) is
 * refused, -EACCES; any other allowed, 0.
 * => no pmaplock of obj held for a hook (checked; fault_wp's own holds
 *    around the hook are not tracked: it drops them before, in sight);
 *    obj->lock not held (not checked)
 */
static inline int
fm__pgo_write(struct fm_object *obj, uint64_t pgidx, uint8_t st)
{
	FM_ASSERT(fm__pmaplock_held != obj && fm__pmaplock_excl != obj,
	    "%s: pmaplock of object %p held for a hook", __func__, (void *)obj);
	FM_ASSERT(pgidx < obj->npages, "%s: page %llu outside object %p",
	    __func__, (unsigned long long)pgidx, (void *)obj);
	if (obj->ops->pgo_write != NULL)
		return obj->ops->pgo_write(obj, pgidx);
	return (st & FM_PG_RDONLY) ? -EACCES : 0;
}

#endif
