/*
 * vm.h: fomap's virtual-memory core: objects, the address-space map and
 * the fault engine.
 *
 * Lock order (never take a lock above one you hold):
 *   1. fm__map.lock        (rwlock)  the map of entries; the engine holds it
 *                                    shared while it resolves a fault
 *   2. obj->pmaplock       (rwlock)  shared: installing pages of obj;
 *                                    exclusive: changing what may be mapped
 *                                    (protect, unmap, clean)
 *   3. obj->lock           (mutex)   page states, busy pages, obj->entries
 * pgo_get and pgo_fault run with 1 and 2 held shared (so a fill and its
 * install are one step); pgo_put with 2 held exclusive; pgo_write with
 * 1 shared; the other hooks with none. Calls that need 2 exclusive on the
 * object a hook of this thread holds it for fail with -EDEADLK.
 */
#ifndef FM_VM_VM_H
#define FM_VM_VM_H

#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <fomap/driver.h>

#include "vm/pmap.h"

#define FM_PAGE_SHIFT 12
#define FM_PAGE_SIZE ((size_t)1 << FM_PAGE_SHIFT)
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

/* Internal page states; the low bits are the public FM_PG_*. */
#define FM_PGS_BUSY 0x80 /* being filled by one thread; wait on busycv */

#define FM_OBJ_HOST 0x1 /* the host kernel maps obj->fd directly */

struct fm_entry;

struct fm_object {
	const struct fm_pagerops *ops;
	void *priv;
	atomic_uint refs;
	int flags; /* FM_OBJ_* */
	int fd; /* the object store (memfd), or the host file */
	int rofd; /* fd reopened read-only, or -1 (under lock) */
	uint64_t npages;
	void *window; /* fm_object_window, or NULL (under lock) */
	pthread_mutex_t lock;
	pthread_cond_t busycv;
	pthread_rwlock_t pmaplock;
	atomic_uint protgen; /* bumped by fm_object_protect, pmaplock excl. */
	uint8_t *pgstate; /* FM_PG_* | FM_PGS_BUSY, one byte a page */
	struct fm_entry *entries; /* entries mapping obj, via e->onext */
};

/*
 * A map entry: one mapping [start, end) of obj from page pgoff, or of host
 * memory (obj NULL or FM_OBJ_HOST). Immutable while in the map, but for
 * prot (changed under the map lock held exclusive) and the fault-around
 * hints (atomics).
 */
struct fm_entry {
	uintptr_t start, end;
	struct fm_object *obj;
	uint64_t pgoff;
	int prot, maxprot;
	int flags; /* MAP_SHARED or MAP_PRIVATE */
	int advice; /* MADV_NORMAL, MADV_RANDOM, MADV_SEQUENTIAL */
	struct fm_pmap *pm; /* the address space, when the engine serves it */
	int pmode; /* FM_PMAP_SHARED or _PRIVATE: how pm has it */
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
int fm__object_alloc(const struct fm_pagerops *ops, size_t size, void *priv,
    int fd, int flags, struct fm_object **objp);
int fm__object_rofd(struct fm_object *obj);
void fm__object_link(struct fm_object *obj, struct fm_entry *e);
void fm__object_unlink(struct fm_object *obj, struct fm_entry *e);
int fm__object_zero(struct fm_object *obj, uint64_t pgidx, unsigned npages);
unsigned fm__object_busy(struct fm_object *obj, uint64_t pgidx, unsigned max);
void fm__object_unbusy(struct fm_object *obj, uint64_t pgidx, unsigned n,
    unsigned filled);
uint8_t fm__object_state(struct fm_object *obj, uint64_t pgidx);
void fm__object_set(struct fm_object *obj, uint64_t pgidx, unsigned n,
    uint8_t set, uint8_t clear);
int fm__object_entry_wp(const struct fm_object *obj, uint8_t st);

/* pager_host.c: a host object mapping fd; the kernel is its pager. */
int fm__host_object(int fd, struct fm_object **objp);

/* map.c: the map of the process's fomap mappings. */
struct fm_map {
	pthread_rwlock_t lock;
	struct fm_entry **v; /* sorted by start, not overlapping */
	size_t n, cap;
};
extern struct fm_map fm__map;
struct fm_entry *fm__map_lookup(uintptr_t va);
/* Room for more entries, so that as many inserts cannot fail. */
int fm__map_reserve(size_t more);
int fm__map_insert(struct fm_entry *e);
/* Split the entries straddling start or end so the range has its own. */
int fm__map_clip(uintptr_t start, uintptr_t end);
void fm__map_remove(struct fm_entry *e);
/* Entries overlapping [start, end): index of the first, count in *n. */
size_t fm__map_range(uintptr_t start, uintptr_t end, size_t *n);
void fm__map_assert(void);

/* fault.c: the fault engine. */
extern __thread struct fm_object *fm__pmaplock_held;
int fm__engine_start(void);
/* Make pages of e from va resident and map them (MADV_WILLNEED). */
int fm__fault_prefetch(struct fm_entry *e, uintptr_t va, uintptr_t end);

static inline uint64_t
fm__entry_pgidx(const struct fm_entry *e, uintptr_t va)
{
	return e->pgoff + ((va - e->start) >> FM_PAGE_SHIFT);
}

#endif
