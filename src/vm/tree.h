/*
 * tree.h: an intrusive AVL tree: the node lives in the caller's struct,
 * the order is the caller's compare function, and an optional hook keeps
 * an augment (a value computed from a node and its children) up to date
 * on every change, e.g. the largest end of an interval tree's subtree.
 *
 * Every change and lookup is O(log n); a walk in order O(log n + k) for
 * k nodes; an interval query O((k + 1) log n). The tree takes no lock:
 * => the caller serialises changes, and lookups against changes
 */
#ifndef FM_VM_TREE_H
#define FM_VM_TREE_H

#include <stddef.h>
#include <stdint.h>

struct fm_tnode {
	struct fm_tnode *left, *right, *parent;
	int height; /* of its subtree: 1 for a leaf */
};

/* The order: < 0, > 0; 0 only for a node with itself (keys are unique). */
typedef int fm_tree_cmp_t(const struct fm_tnode *a, const struct fm_tnode *b);
/* Recompute n's augment from n and its children (already up to date). */
typedef void fm_tree_aug_t(struct fm_tnode *n);
/* A key of n, for an interval tree (below). */
typedef uint64_t fm_tree_key_t(const struct fm_tnode *n);
/* Whether n is at or after a point (false, then true, in order). */
typedef int fm_tree_pred_t(const struct fm_tnode *n, const void *arg);

/*
 * What a tree's nodes are to it. An interval tree sets lo, hi and max too:
 * each node is the interval [lo, hi) (lo < hi), the order sorts by lo
 * first, and aug keeps max, the largest hi in the node's subtree.
 */
struct fm_tree_ops {
	fm_tree_cmp_t *cmp;
	fm_tree_aug_t *aug; /* NULL: no augment */
	fm_tree_key_t *lo, *hi, *max; /* NULL: not an interval tree */
};

struct fm_tree {
	struct fm_tnode *root;
	const struct fm_tree_ops *ops;
	size_t n; /* nodes in the tree */
};

#define FM_TREE_INIT(opsp)                          \
	{                                           \
		.root = NULL, .ops = (opsp), .n = 0 \
	}

/* The struct of type holding node n at member, or NULL for NULL. */
#define FM_TREE_ENTRY(n, type, member)                                      \
	((n) != NULL ? (type *)(void *)((char *)(n)-offsetof(type, member)) \
	             : (type *)NULL)

/*
 * For an interval tree's ops: order by lo, then by address (many nodes
 * may share a lo); and its aug's value, the largest hi below n, from n's
 * own and its children's max.
 */
static inline int
fm__tree_cmp_lo(const struct fm_tnode *a, const struct fm_tnode *b,
    fm_tree_key_t *lo)
{
	uint64_t x = lo(a), y = lo(b);

	if (x != y)
		return x < y ? -1 : 1;
	return a < b ? -1 : a > b;
}

static inline uint64_t
fm__tree_max_below(const struct fm_tnode *n, fm_tree_key_t *hi,
    fm_tree_key_t *max)
{
	uint64_t m = hi(n);

	if (n->left != NULL && max(n->left) > m)
		m = max(n->left);
	if (n->right != NULL && max(n->right) > m)
		m = max(n->right);
	return m;
}

static inline int
fm__tree_empty(const struct fm_tree *t)
{
	return t->root == NULL;
}

/* Put n in t. => n not in a tree; no node of t equal to it (asserted) */
void fm__tree_insert(struct fm_tree *t, struct fm_tnode *n);
/* Take n out of t. => n in t */
void fm__tree_remove(struct fm_tree *t, struct fm_tnode *n);
/*
 * n's augment changed (what aug reads of n itself), its place in the
 * order did not: recompute the augments from n to the root. => n in t
 */
void fm__tree_update(struct fm_tree *t, struct fm_tnode *n);

/* The first, last node in order, or NULL; the next, previous, or NULL. */
struct fm_tnode *fm__tree_first(const struct fm_tree *t);
struct fm_tnode *fm__tree_last(const struct fm_tree *t);
struct fm_tnode *fm__tree_next(const struct fm_tnode *n);
struct fm_tnode *fm__tree_prev(const struct fm_tnode *n);
/*
 * The first node in order for which at(n, arg) holds, or NULL.
 * => at is false for a prefix of the order and true for the rest
 */
struct fm_tnode *fm__tree_first_that(const struct fm_tree *t,
    fm_tree_pred_t *at, const void *arg);

/*
 * An interval tree's nodes that overlap [lo, hi), in order:
 *	for (n = fm__tree_overlap_first(t, lo, hi); n != NULL;
 *	     n = fm__tree_overlap_next(t, n, lo, hi))
 * => the tree unchanged across the walk
 */
struct fm_tnode *fm__tree_overlap_first(const struct fm_tree *t, uint64_t lo,
    uint64_t hi);
struct fm_tnode *fm__tree_overlap_next(const struct fm_tree *t,
    const struct fm_tnode *n, uint64_t lo, uint64_t hi);

/*
 * Assert t's invariants: links, order, heights and balance, the count,
 * and an interval tree's max. O(n): for tests and small trees.
 */
void fm__tree_check(const struct fm_tree *t);

#endif
