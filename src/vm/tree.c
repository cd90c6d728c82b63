/*
 * tree.c: the intrusive AVL tree of tree.h.
 *
 * Every change rebalances from the lowest node it touched up to the root,
 * recomputing heights and augments on the way (an augment may change
 * anywhere on that path, so the walk always goes all the way up: O(log n)).
 */
#include "vm/tree.h"
#include "vm/vm.h"

static int
height(const struct fm_tnode *n)
{
	return n != NULL ? n->height : 0;
}

/* n's height and augment from its children's. */
static void
update(const struct fm_tree *t, struct fm_tnode *n)
{
	int l = height(n->left), r = height(n->right);

	n->height = 1 + (l > r ? l : r);
	if (t->ops->aug != NULL)
		t->ops->aug(n);
}

/* In p (the root when p is NULL), child old becomes new. */
static void
replace_child(struct fm_tree *t, struct fm_tnode *p, struct fm_tnode *old,
    struct fm_tnode *new)
{
	if (p == NULL)
		t->root = new;
	else if (p->left == old)
		p->left = new;
	else
		p->right = new;
	if (new != NULL)
		new->parent = p;
}

/* x's right child takes its place, x its left. => the new subtree root */
static struct fm_tnode *
rotate_left(struct fm_tree *t, struct fm_tnode *x)
{
	struct fm_tnode *y = x->right;

	x->right = y->left;
	if (y->left != NULL)
		y->left->parent = x;
	replace_child(t, x->parent, x, y);
	y->left = x;
	x->parent = y;
	update(t, x);
	update(t, y);
	return y;
}

/* The mirror of rotate_left. */
static struct fm_tnode *
rotate_right(struct fm_tree *t, struct fm_tnode *x)
{
	struct fm_tnode *y = x->left;

	x->left = y->right;
	if (y->right != NULL)
		y->right->parent = x;
	replace_child(t, x->parent, x, y);
	y->right = x;
	x->parent = y;
	update(t, x);
	update(t, y);
	return y;
}

/*
 * Update n, and rotate if its children's heights differ by 2.
 * => its children balanced and up to date; => the subtree's new root
 */
static struct fm_tnode *
balance(struct fm_tree *t, struct fm_tnode *n)
{
	int b = height(n->left) - height(n->right);

	if (b > 1) {
		if (height(n->left->left) < height(n->left->right))
			(void)rotate_left(t, n->left);
		return rotate_right(t, n);
	}
	if (b < -1) {
		if (height(n->right->right) < height(n->right->left))
			(void)rotate_right(t, n->right);
		return rotate_left(t, n);
	}
	update(t, n);
	return n;
}

/* Balance and update from n up to the root. */
static void
fixup(struct fm_tree *t, struct fm_tnode *n)
{
	while (n != NULL)
		n = balance(t, n)->parent;
}

void
fm__tree_insert(struct fm_tree *t, struct fm_tnode *n)
{
	struct fm_tnode **link = &t->root, *p = NULL;

	while (*link != NULL) {
		int c = t->ops->cmp(n, *link);

		FM_ASSERT(c != 0, "node %p already in tree %p (or its twin %p)",
		    (void *)n, (void *)t, (void *)*link);
		p = *link;
		link = c < 0 ? &p->left : &p->right;
	}
	n->left = n->right = NULL;
	n->parent = p;
	n->height = 1;
	*link = n;
	t->n++;
	fixup(t, n);
}

void
fm__tree_remove(struct fm_tree *t, struct fm_tnode *n)
{
	struct fm_tnode *from; /* the lowest node whose subtree changed */

	FM_ASSERT(t->n > 0 && (n->parent != NULL || t->root == n),
	    "node %p not in tree %p", (void *)n, (void *)t);
	if (n->left != NULL && n->right != NULL) {
		/* Its successor s, which has no left child, takes its place. */
		struct fm_tnode *s = n->right;

		while (s->left != NULL)
			s = s->left;
		from = s;
		if (s->parent != n) {
			from = s->parent;
			replace_child(t, s->parent, s, s->right);
			s->right = n->right;
			s->right->parent = s;
		}
		s->left = n->left;
		s->left->parent = s;
		replace_child(t, n->parent, n, s);
	} else {
		from = n->parent;
		replace_child(t, n->parent, n,
		    n->left != NULL ? n->left : n->right);
	}
	t->n--;
	n->left = n->right = n->parent = NULL;
	n->height = 0;
	fixup(t, from);
}

void
fm__tree_update(struct fm_tree *t, struct fm_tnode *n)
{
	fixup(t, n);
}

static struct fm_tnode *
leftmost(const struct fm_tnode *n)
{
	while (n != NULL && n->left != NULL)
		n = n->left;
	return (struct fm_tnode *)n;
}

static struct fm_tnode *
rightmost(const struct fm_tnode *n)
{
	while (n != NULL && n->right != NULL)
		n = n->right;
	return (struct fm_tnode *)n;
}

struct fm_tnode *
fm__tree_first(const struct fm_tree *t)
{
	return leftmost(t->root);
}

struct fm_tnode *
fm__tree_last(const struct fm_tree *t)
{
	return rightmost(t->root);
}

struct fm_tnode *
fm__tree_next(const struct fm_tnode *n)
{
	if (n->right != NULL)
		return leftmost(n->right);
	while (n->parent != NULL && n->parent->right == n)
		n = n->parent;
	return n->parent;
}

struct fm_tnode *
fm__tree_prev(const struct fm_tnode *n)
{
	if (n->left != NULL)
		return rightmost(n->left);
	while (n->parent != NULL && n->parent->left == n)
		n = n->parent;
	return n->parent;
}

struct fm_tnode *
fm__tree_first_that(const struct fm_tree *t, fm_tree_pred_t *at,
    const void *arg)
{
	struct fm_tnode *n = t->root, *found = NULL;

	while (n != NULL) {
		if (at(n, arg)) {
			found = n;
			n = n->left;
		} else
			n = n->right;
	}
	return found;
}

/*
 * The first node of the subtree at n that overlaps [lo, hi), or NULL.
 * The order is by lo: a node that starts at hi or above ends the search.
 */
static struct fm_tnode *
overlap_under(const struct fm_tree *t, const struct fm_tnode *n, uint64_t lo,
    uint64_t hi)
{
	const struct fm_tree_ops *o = t->ops;

	while (n != NULL && o->max(n) > lo) {
		if (n->left != NULL && o->max(n->left) > lo) {
			n = n->left;
			continue;
		}
		if (o->lo(n) >= hi)
			return NULL;
		if (o->hi(n) > lo)
			return (struct fm_tnode *)n;
		n = n->right;
	}
	return NULL;
}

struct fm_tnode *
fm__tree_overlap_first(const struct fm_tree *t, uint64_t lo, uint64_t hi)
{
	FM_ASSERT(t->ops->max != NULL, "tree %p: not an interval tree",
	    (const void *)t);
	return lo < hi ? overlap_under(t, t->root, lo, hi) : NULL;
}

struct fm_tnode *
fm__tree_overlap_next(const struct fm_tree *t, const struct fm_tnode *n,
    uint64_t lo, uint64_t hi)
{
	const struct fm_tree_ops *o = t->ops;

	for (;;) {
		if (n->right != NULL && o->max(n->right) > lo)
			return overlap_under(t, n->right, lo, hi);
		/* Up to the first ancestor that follows n in order. */
		while (n->parent != NULL && n->parent->right == n)
			n = n->parent;
		n = n->parent;
		if (n == NULL || o->lo(n) >= hi)
			return NULL;
		if (o->hi(n) > lo)
			return (struct fm_tnode *)n;
	}
}

/*
 * Check the subtree at n (whose parent is p): links, heights, balance and
 * an interval tree's max. => its height; *count += its nodes
 */
static int
check_under(const struct fm_tree *t, const struct fm_tnode *n,
    const struct fm_tnode *p, size_t *count)
{
	const struct fm_tree_ops *o = t->ops;
	int l, r;

	if (n == NULL)
		return 0;
	FM_ASSERT(n->parent == p, "node %p: parent %p, not %p", (const void *)n,
	    (const void *)n->parent, (const void *)p);
	l = check_under(t, n->left, n, count);
	r = check_under(t, n->right, n, count);
	FM_ASSERT(n->height == 1 + (l > r ? l : r),
	    "node %p: height %d, children %d and %d", (const void *)n,
	    n->height, l, r);
	FM_ASSERT(l - r <= 1 && r - l <= 1, "node %p: unbalanced, %d vs %d",
	    (const void *)n, l, r);
	if (o->max != NULL) {
		uint64_t m = o->hi(n);

		FM_ASSERT(o->lo(n) < m, "node %p: empty interval",
		    (const void *)n);
		if (n->left != NULL && o->max(n->left) > m)
			m = o->max(n->left);
		if (n->right != NULL && o->max(n->right) > m)
			m = o->max(n->right);
		FM_ASSERT(o->max(n) == m, "node %p: max %llu, not %llu",
		    (const void *)n, (unsigned long long)o->max(n),
		    (unsigned long long)m);
	}
	(*count)++;
	return 1 + (l > r ? l : r);
}

void
fm__tree_check(const struct fm_tree *t)
{
	const struct fm_tnode *prev = NULL;
	size_t count = 0;

	(void)check_under(t, t->root, NULL, &count);
	FM_ASSERT(count == t->n, "tree %p: %zu nodes, counted %zu",
	    (const void *)t, t->n, count);
	for (const struct fm_tnode *n = fm__tree_first(t); n != NULL;
	     n = fm__tree_next(n)) {
		FM_ASSERT(prev == NULL || t->ops->cmp(prev, n) < 0,
		    "tree %p: %p and %p out of order", (const void *)t,
		    (const void *)prev, (const void *)n);
		if (prev != NULL && t->ops->lo != NULL)
			FM_ASSERT(t->ops->lo(prev) <= t->ops->lo(n),
			    "tree %p: not ordered by lo", (const void *)t);
		prev = n;
	}
}
