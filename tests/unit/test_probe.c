/*
 * test_probe.c: fm_probe and fm_probe_feature, what fomap-probe and the
 * runner's skips rely on.
 */
#include <fomap/fomap.h>

#include "../test.h"

/* The engine runs only where the kernel offers every feature it needs. */
TEST(probe_agrees_with_its_features)
{
	const char *name;
	int offered, needed, lacking = 0;
	unsigned n = 0;

	while ((name = fm_probe_feature(n, &offered, &needed)) != NULL) {
		ASSERT(name[0] != '\0');
		lacking |= needed && !offered;
		n++;
	}
	ASSERT_GE(n, 1);
	if (fm_probe() == NULL)
		ASSERT_EQ(lacking, 0);
}
