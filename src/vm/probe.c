/*
 * probe.c: what this kernel's userfaultfd offers and whether fomap's
 * engine can run here, for programs (fomap-probe, the test runner) that
 * see only fomap.h.
 */
#include <fomap/fomap.h>

#include "vm/pmap.h"
#include "vm/vm.h"

/* The features fomap-probe lists; needed: the engine cannot run without. */
static const struct {
	uint64_t bit;
	const char *name;
	int needed;
} features[] = {
    {UFFD_FEATURE_PAGEFAULT_FLAG_WP, "PAGEFAULT_FLAG_WP", 1},
    {UFFD_FEATURE_EVENT_FORK, "EVENT_FORK", 0},
    {UFFD_FEATURE_MISSING_SHMEM, "MISSING_SHMEM", 1},
    {UFFD_FEATURE_THREAD_ID, "THREAD_ID", 1},
    {UFFD_FEATURE_MINOR_SHMEM, "MINOR_SHMEM", 1},
    {UFFD_FEATURE_EXACT_ADDRESS, "EXACT_ADDRESS", 0},
    {UFFD_FEATURE_WP_HUGETLBFS_SHMEM, "WP_HUGETLBFS_SHMEM", 1},
    {UFFD_FEATURE_WP_UNPOPULATED, "WP_UNPOPULATED", 0},
    {UFFD_FEATURE_POISON, "POISON", 1},
    {UFFD_FEATURE_WP_ASYNC, "WP_ASYNC", 0},
    {UFFD_FEATURE_MOVE, "MOVE", 0},
};

const char *
fm_probe(void)
{
	const char *why = fm__pmap_unavailable();

	return why != NULL ? why : fm__page_size_why();
}

const char *
fm_probe_feature(unsigned i, int *offered, int *needed)
{
	if (i >= sizeof(features) / sizeof(features[0]))
		return NULL;
	*offered = (fm__pmap_probe() & features[i].bit) != 0;
	*needed = features[i].needed;
	return features[i].name;
}
