/*
 * probe.c: fomap-probe, what this kernel's userfaultfd offers and whether
 * fomap's engine can run here (and if not, why).
 */
#include <stdio.h>

#include <fomap/fomap.h>

int
main(void)
{
	const char *why = fm_probe(), *name;
	int offered, needed;

	printf("userfaultfd features of this kernel (* = fomap needs it):\n");
	for (unsigned i = 0;
	     (name = fm_probe_feature(i, &offered, &needed)) != NULL; i++)
		printf("  %c %-20s %s\n", needed ? '*' : ' ', name,
		    offered ? "yes" : "no");
	if (why != NULL) {
		printf("fomap's engine cannot run here: %s\n", why);
		return 1;
	}
	printf("fomap's engine can run here.\n");
	return 0;
}
