/*
 * map.c: the map of the process's fomap mappings: entries sorted by
 * address, never overlapping, looked up by binary search.
 * => every call here needs fm__map.lock: shared for lookups, exclusive
 *    for changes
 */
#include <errno.h>
#include <string.h>

#include "vm/vm.h"

struct fm_map fm__map = {.oplock = PTHREAD_MUTEX_INITIALIZER,
    .lock = PTHREAD_RWLOCK_WRITER_NONRECURSIVE_INITIALIZER_NP};

/* The entries, sorted by start, not overlapping: fm__map.n of map_cap. */
static struct fm_entry **map_v;
static size_t map_cap;

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

/* Index of the first entry whose end is above va. */
static size_t
first_above(uintptr_t va)
{
	size_t lo = 0, hi = fm__map.n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (map_v[mid]->end <= va)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

struct fm_entry *
fm__map_lookup(uintptr_t va)
{
	size_t i = first_above(va);

	if (i < fm__map.n && map_v[i]->start <= va)
		return map_v[i];
	return NULL;
}

size_t
fm__map_iter(struct fm_map_iter *it, uintptr_t start, uintptr_t end)
{
	size_t i = first_above(start), j = i;

	it->at = start;
	it->end = end;
	while (start < end && j < fm__map.n && map_v[j]->start < end)
		j++;
	return j - i;
}

struct fm_entry *
fm__map_next(struct fm_map_iter *it)
{
	size_t i;

	if (it->at >= it->end)
		return NULL;
	i = first_above(it->at);
	if (i == fm__map.n || map_v[i]->start >= it->end)
		return NULL;
	it->at = map_v[i]->end;
	return map_v[i];
}

int
fm__map_reserve(size_t more)
{
	struct fm_entry **nv;
	size_t ncap;

	if (fm__map.n + more <= map_cap)
		return 0;
	ncap = map_cap ? map_cap * 2 : 64;
	while (ncap < fm__map.n + more)
		ncap *= 2;
	nv = realloc(map_v, ncap * sizeof(*nv));
	if (nv == NULL)
		return -ENOMEM;
	map_v = nv;
	map_cap = ncap;
	return 0;
}

/* Put e in the map, whose room is reserved. */
static void
place(struct fm_entry *e)
{
	size_t i;

	FM_ASSERT(e->start < e->end, "empty entry %p", (void *)e);
	i = first_above(e->start);
	FM_ASSERT(i == fm__map.n || map_v[i]->start >= e->end,
	    "entry [%#lx, %#lx) overlaps [%#lx, %#lx)", (unsigned long)e->start,
	    (unsigned long)e->end, (unsigned long)map_v[i]->start,
	    (unsigned long)map_v[i]->end);
	memmove(&map_v[i + 1], &map_v[i], (fm__map.n - i) * sizeof(*map_v));
	map_v[i] = e;
	fm__map.n++;
}

int
fm__map_insert(struct fm_entry *e)
{
	if (fm__map_reserve(1) < 0)
		return -ENOMEM;
	e->gen = atomic_fetch_add(&fm__map.gen, 1) + 1;
	place(e);
	return 0;
}

void
fm__map_remove(struct fm_entry *e)
{
	size_t i = first_above(e->start);

	FM_ASSERT(i < fm__map.n && map_v[i] == e, "entry %p not in map",
	    (void *)e);
	memmove(&map_v[i], &map_v[i + 1], (fm__map.n - i - 1) * sizeof(*map_v));
	fm__map.n--;
}

/* Split e at va into [start, va) and a new entry [va, end). */
static int
split(struct fm_entry *e, uintptr_t va)
{
	struct fm_entry *t;

	if (va <= e->start || va >= e->end)
		return 0;
	t = malloc(sizeof(*t));
	if (t == NULL || fm__map_reserve(1) < 0) {
		free(t);
		return -ENOMEM;
	}
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
fm__map_clip(uintptr_t start, uintptr_t end)
{
	struct fm_entry *e = fm__map_lookup(start);
	int r = 0;

	if (e)
		r = split(e, start);
	e = end > 0 ? fm__map_lookup(end - 1) : NULL;
	if (r == 0 && e)
		r = split(e, end);
	return r;
}

void
fm__map_assert(void)
{
	for (size_t i = 0; i < fm__map.n; i++) {
		const struct fm_entry *e = map_v[i];

		FM_ASSERT(e->start < e->end && !(e->start & FM_PAGE_MASK) &&
		        !(e->end & FM_PAGE_MASK),
		    "bad entry [%#lx, %#lx)", (unsigned long)e->start,
		    (unsigned long)e->end);
		FM_ASSERT(i == 0 || map_v[i - 1]->end <= e->start,
		    "entries %zu and %zu overlap", i - 1, i);
	}
}
