/*
 * probe.c: fomap-probe, what this kernel's userfaultfd offers and whether
 * fomap's engine can run here (and if not, why).
 */
#include <stdio.h>

#include "vm/pmap.h"

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

int
main(void)
{
	const char *why = fm__pmap_unavailable();
	uint64_t f = fm__pmap_probe();

	printf("userfaultfd features of this kernel (* = fomap needs it):\n");
	for (size_t i = 0; i < sizeof features / sizeof features[0]; i++)
		printf("  %c %-20s %s\n", features[i].needed ? '*' : ' ',
		    features[i].name, f & features[i].bit ? "yes" : "no");
	if (why != NULL) {
		printf("fomap's engine cannot run here: %s\n", why);
		return 1;
	}
	printf("fomap's engine can run here.\n");
	return 0;
}
