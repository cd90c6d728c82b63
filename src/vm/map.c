/*
 * map.c: the maps of fomap mappings, one an address space (this
 * process's, and each other process the engine serves): entries in an AVL
 * tree (tree.h) by address, never overlapping: O(log n) a lookup or change.
 * => every call here needs fm__map.lock: shared for lookups, exclusive
 *    for changes
 */
#include <errno.h>

#include "vm/vm.h"

struct fm_map fm__map = {.oplock = PTHREAD_MUTEX_INITIALIZER,
    .lock = PTHREAD_RWLOCK_WRITER_NONRECURSIVE_INITIALIZER_NP};

#define MAP_ENTRY(n) FM_TREE_ENTRY(n, struct fm_entry, mnode)

void
fm__entry_copy(struct fm_entry *c, const struct fm_entry *e)
{
	*c = (struct fm_entry){.start = e->start,
	    .end = e->end,
	    .dead = e->dead,
	    .gen = e->gen,
	    .obj = e->obj,
	    .pgoff = e->pgoff,
	    .prot = e->prot,
	    .maxprot = e->maxprot,
	    .flags = e->flags,
	    .advice = e->advice,
	    .vs = e->vs,
	    .pm = e->pm,
	    .pmode = e->pmode};
	atomic_init(&c->refs, 1);
	atomic_init(&c->ra_next, 0);
	atomic_init(&c->ra_size, 0);
	for (unsigned i = 0; i < sizeof c->ra_more / sizeof c->ra_more[0]; i++)
		atomic_init(&c->ra_more[i], 0);
}

void
fm__entry_ref(struct fm_entry *e)
{
	unsigned old = atomic_fetch_add(&e->refs, 1);

	FM_ASSERT(old > 0, "entry %p revived", (void *)e);
}

void
fm__entry_rele(struct fm_entry *e)
{
	unsigned old = atomic_fetch_sub(&e->refs, 1);

	FM_ASSERT(old > 0, "entry %p released below 0", (void *)e);
	if (old != 1)
		return;
	FM_ASSERT(e->obj == NULL || e->dead, "live entry %p freed", (void *)e);
	if (e->obj)
		fm_object_rele(e->obj);
	free(e);
}

static int
map_cmp(const struct fm_tnode *a, const struct fm_tnode *b)
{
	uintptr_t x = MAP_ENTRY(a)->start, y = MAP_ENTRY(b)->start;

	return x < y ? -1 : x > y;
}

static const struct fm_tree_ops map_ops = {.cmp = map_cmp};

/*
 * This process's address space. In each, the entries by start, not
 * overlapping; changes: an iterator's last entry is good if unchanged.
 */
struct fm_vmspace fm__vs_self = {.tree = FM_TREE_INIT(&map_ops)};

void
fm__vmspace_init(struct fm_vmspace *vs, struct fm_pmap *pm)
{
	*vs = (struct fm_vmspace){.pm = pm, .tree = FM_TREE_INIT(&map_ops)};
	pm->vs = vs;
}

static int
ends_above(const struct fm_tnode *n, const void *va)
{
	return MAP_ENTRY(n)->end > *(const uintptr_t *)va;
}

/* The first entry whose end is above va, or NULL. O(log n) */
static struct fm_entry *
first_above(struct fm_vmspace *vs, uintptr_t va)
{
	return MAP_ENTRY(fm__tree_first_that(&vs->tree, ends_above, &va));
}

static struct fm_entry *
map_next(const struct fm_entry *e)
{
	return MAP_ENTRY(fm__tree_next(&e->mnode));
}

struct fm_entry *
fm__map_lookup(struct fm_vmspace *vs, uintptr_t va)
{
	struct fm_entry *e = first_above(vs, va);

	return e != NULL && e->start <= va ? e : NULL;
}

size_t
fm__map_iter(struct fm_map_iter *it, struct fm_vmspace *vs, uintptr_t start,
    uintptr_t end)
{
	size_t n = 0;

	it->vs = vs;
	it->at = start;
	it->end = end;
	it->last = NULL;
	for (struct fm_entry *e = start < end ? first_above(vs, start) : NULL;
	     e != NULL && e->start < end; e = map_next(e))
		n++;
	return n;
}

struct fm_entry *
fm__map_next(struct fm_map_iter *it)
{
	struct fm_entry *e;

	if (it->at >= it->end)
		return NULL;
	/* Unchanged since: the next entry follows the last (its end is at). */
	if (it->last != NULL && it->changes == it->vs->changes)
		e = map_next(it->last);
	else
		e = first_above(it->vs, it->at);
	if (e == NULL || e->start >= it->end)
		return NULL;
	it->at = e->end;
	it->last = e;
	it->changes = it->vs->changes;
	return e;
}

int
fm__map_reserve(size_t more)
{
	return 0;
}

/* Put e in the map. */
static void
place(struct fm_entry *e)
{
	struct fm_vmspace *vs = e->vs;
	struct fm_entry *f;

	FM_ASSERT(e->start < e->end, "empty entry %p", (void *)e);
	FM_ASSERT(vs != NULL &&
	        (e->pm == NULL || e->pm == vs->pm || vs == &fm__vs_self),
	    "entry %p of no address space, or another's", (void *)e);
	f = first_above(vs, e->start);
	FM_ASSERT(f == NULL || f->start >= e->end,
	    "entry [%#lx, %#lx) overlaps [%#lx, %#lx)", (unsigned long)e->start,
	    (unsigned long)e->end, (unsigned long)f->start,
	    (unsigned long)f->end);
	fm__tree_insert(&vs->tree, &e->mnode);
	vs->n++;
	fm__map.n++;
	vs->changes++;
}

int
fm__map_insert(struct fm_entry *e)
{
	e->gen = atomic_fetch_add(&fm__map.gen, 1) + 1;
	place(e);
	return 0;
}

int
fm__map_insert_copy(struct fm_entry *e)
{
	place(e); /* e->gen: the mapping's, as a split's */
	return 0;
}

void
fm__map_remove(struct fm_entry *e)
{
	FM_ASSERT(fm__map_lookup(e->vs, e->start) == e, "entry %p not in map",
	    (void *)e);
	fm__tree_remove(&e->vs->tree, &e->mnode);
	e->vs->n--;
	fm__map.n--;
	e->vs->changes++;
}

/* Split e at va into [start, va) and a new entry [va, end). */
static int
split(struct fm_entry *e, uintptr_t va)
{
	struct fm_entry *t;

	if (va <= e->start || va >= e->end)
		return 0;
	t = malloc(sizeof(*t));
	if (t == NULL)
		return -ENOMEM;
	fm__entry_copy(t, e);
	t->start = va;
	t->pgoff = fm__entry_pgidx(e, va);
	if (e->obj) {
		fm_object_ref(e->obj);
		fm__object_split(e->obj, e, t);
	} else
		e->end = va;
	place(t); /* as old as the mapping it is part of: e's gen */
	return 0;
}

int
fm__map_clip(struct fm_vmspace *vs, uintptr_t start, uintptr_t end)
{
	struct fm_entry *e = fm__map_lookup(vs, start);
	int r = 0;

	if (e)
		r = split(e, start);
	e = end > 0 ? fm__map_lookup(vs, end - 1) : NULL;
	if (r == 0 && e)
		r = split(e, end);
	return r;
}

/* => fm__map.lock held. O(n): for tests */
void
fm__map_assert(struct fm_vmspace *vs)
{
	const struct fm_entry *prev = NULL;

	fm__tree_check(&vs->tree);
	FM_ASSERT(vs->n == vs->tree.n, "map: %zu entries, tree %zu", vs->n,
	    vs->tree.n);
	for (const struct fm_entry *e = MAP_ENTRY(fm__tree_first(&vs->tree));
	     e != NULL; prev = e, e = map_next(e)) {
		FM_ASSERT(e->start < e->end && !(e->start & FM_PAGE_MASK) &&
		        !(e->end & FM_PAGE_MASK),
		    "bad entry [%#lx, %#lx)", (unsigned long)e->start,
		    (unsigned long)e->end);
		FM_ASSERT(e->vs == vs, "entry %p in another's map",
		    (const void *)e);
		FM_ASSERT(prev == NULL || prev->end <= e->start,
		    "entries [%#lx, %#lx) and [%#lx, %#lx) overlap",
		    (unsigned long)prev->start, (unsigned long)prev->end,
		    (unsigned long)e->start, (unsigned long)e->end);
	}
}
