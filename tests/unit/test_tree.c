/*
 * test_tree.c: the intrusive AVL tree (src/vm/tree.h) against a plain
 * array: random inserts, removals, augment updates, lookups and interval
 * queries, with its invariants checked after every change.
 */
#include <stddef.h>

#include "../test.h"
#include "vm/tree.h"

#define NITEMS 512
#define NOPS 20000

struct item {
	struct fm_tnode node;
	uint64_t lo, hi; /* the interval [lo, hi) */
	uint64_t max; /* the augment: the largest hi in the subtree */
	int in; /* the reference: in the tree */
};

#define ITEM(n) FM_TREE_ENTRY(n, struct item, node)

static uint64_t
item_lo(const struct fm_tnode *n)
{
	return ITEM(n)->lo;
}

static uint64_t
item_hi(const struct fm_tnode *n)
{
	return ITEM(n)->hi;
}

static uint64_t
item_max(const struct fm_tnode *n)
{
	return ITEM(n)->max;
}

/* By lo, then by address: many items share a lo, as entries a pgoff. */
static int
item_cmp(const struct fm_tnode *a, const struct fm_tnode *b)
{
	return fm__tree_cmp_lo(a, b, item_lo);
}

static void
item_aug(struct fm_tnode *n)
{
	ITEM(n)->max = fm__tree_max_below(n, item_hi, item_max);
}

static const struct fm_tree_ops item_ops = {
    .cmp = item_cmp,
    .aug = item_aug,
    .lo = item_lo,
    .hi = item_hi,
    .max = item_max,
};

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t
rnd(uint64_t n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng % n;
}

static int
lo_at_least(const struct fm_tnode *n, const void *arg)
{
	return item_lo(n) >= *(const uint64_t *)arg;
}

/* Walk the tree both ways: every item that is in, in order, once. */
static void
check_order(const struct fm_tree *t, const struct item *v)
{
	size_t in = 0, k = 0;
	const struct fm_tnode *prev = NULL;

	for (int i = 0; i < NITEMS; i++)
		in += v[i].in;
	ASSERT_EQ(t->n, in);
	for (const struct fm_tnode *n = fm__tree_first(t); n != NULL;
	     prev = n, n = fm__tree_next(n), k++) {
		ASSERT(ITEM(n)->in);
		ASSERT(prev == NULL || item_cmp(prev, n) < 0);
	}
	ASSERT_EQ(k, in);
	k = 0;
	for (const struct fm_tnode *n = fm__tree_last(t); n != NULL;
	     n = fm__tree_prev(n), k++)
		;
	ASSERT_EQ(k, in);
}

/* The overlap query of [lo, hi) finds exactly what the array says. */
static void
check_query(const struct fm_tree *t, const struct item *v, uint64_t lo,
    uint64_t hi)
{
	size_t want = 0, got = 0;
	const struct fm_tnode *prev = NULL;

	for (int i = 0; i < NITEMS; i++)
		want += v[i].in && v[i].lo < hi && v[i].hi > lo;
	for (const struct fm_tnode *n = fm__tree_overlap_first(t, lo, hi);
	     n != NULL; prev = n, n = fm__tree_overlap_next(t, n, lo, hi)) {
		ASSERT(ITEM(n)->in && item_lo(n) < hi && item_hi(n) > lo);
		ASSERT(prev == NULL || item_cmp(prev, n) < 0);
		got++;
	}
	ASSERT_EQ(got, want);
}

/* The first item with lo >= at, as the array says. */
static void
check_lookup(const struct fm_tree *t, const struct item *v, uint64_t at)
{
	const struct item *want = NULL;
	const struct fm_tnode *n = fm__tree_first_that(t, lo_at_least, &at);

	for (int i = 0; i < NITEMS; i++)
		if (v[i].in && v[i].lo >= at &&
		    (want == NULL || item_cmp(&v[i].node, &want->node) < 0))
			want = &v[i];
	ASSERT_PTR_EQ(n, want != NULL ? &want->node : NULL);
}

TEST(tree_random_against_reference)
{
	static struct item v[NITEMS];
	struct fm_tree t = FM_TREE_INIT(&item_ops);
	unsigned long ops[4] = {0};

	for (int op = 0; op < NOPS; op++) {
		struct item *it = &v[rnd(NITEMS)];
		unsigned what = (unsigned)rnd(8);

		if (!it->in) { /* in, with a new interval */
			it->lo = rnd(1024);
			it->hi = it->lo + 1 + rnd(rnd(4) == 0 ? 512 : 8);
			fm__tree_insert(&t, &it->node);
			it->in = 1;
			ops[0]++;
		} else if (what < 3) { /* out */
			fm__tree_remove(&t, &it->node);
			it->in = 0;
			ops[1]++;
		} else if (what < 5 && it->hi - it->lo > 1) { /* shrink */
			it->hi = it->lo + 1 + rnd(it->hi - it->lo - 1);
			fm__tree_update(&t, &it->node);
			ops[2]++;
		}
		fm__tree_check(&t);
		uint64_t lo = rnd(1100);
		check_query(&t, v, lo, lo + 1 + rnd(rnd(2) ? 4 : 300));
		check_lookup(&t, v, rnd(1100));
		if (op % 64 == 0)
			check_order(&t, v);
		ops[3]++;
	}
	check_order(&t, v);
	/* Empty it in order, then nothing is left. */
	while (!fm__tree_empty(&t)) {
		struct fm_tnode *n = fm__tree_first(&t);

		fm__tree_remove(&t, n);
		ITEM(n)->in = 0;
		fm__tree_check(&t);
	}
	check_order(&t, v);
	ASSERT(ops[0] > 1000 && ops[1] > 1000 && ops[2] > 1000);
}

/* Sorted inserts (as the kernel places mappings) keep it balanced. */
TEST(tree_sorted_inserts_stay_balanced)
{
	static struct item v[1 << 14];
	struct fm_tree t = FM_TREE_INIT(&item_ops);
	size_t n = sizeof v / sizeof v[0];

	for (size_t i = 0; i < n; i++) {
		v[i].lo = n - i; /* top-down */
		v[i].hi = v[i].lo + 1;
		fm__tree_insert(&t, &v[i].node);
	}
	fm__tree_check(&t);
	ASSERT_LE(t.root->height, 20); /* 1.44 log2(n) at most: AVL */
	for (size_t i = 0; i < n; i += 2)
		fm__tree_remove(&t, &v[i].node);
	fm__tree_check(&t);
	ASSERT_EQ(t.n, n / 2);
	ASSERT_LE(t.root->height, 19);
}
