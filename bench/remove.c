/*
 * remove.c: removal of every mapping of a large object, and the touch that
 * follows (row 8 of docs/benchmarks.md).
 *
 * The object (1 GiB; 256 MiB in the quick run) is made resident and mapped
 * before the clock starts. Then, timed apart:
 *   remove   fm_object_unmap of the whole object: FM_UNMAP_KEEP (zap the
 *            PTEs, keep the pages) or FM_UNMAP_DISCARD (also free them);
 *   touch    a write of every page again: minor faults after KEEP, missing
 *            faults (zero-fill) after DISCARD.
 * The kernel's counterparts on a memfd MAP_SHARED mapping: MADV_DONTNEED
 * and fallocate(PUNCH_HOLE), each followed by the same touch.
 * Figures: out[0] removal, out[1] touch, both ns per page.
 */
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bench.h"

enum kind { FOMAP_KEEP, FOMAP_DISCARD, K_DONTNEED, K_PUNCH };

struct rm {
	enum kind kind;
	size_t npages;
};

static void
run_rm(const void *arg, double *out)
{
	const struct rm *r = arg;
	size_t len = r->npages * PG;
	struct fm_object *obj = NULL;
	char *p;
	uint64_t t0, t1;
	int fd = -1, k = 0;

	if (r->kind == FOMAP_KEEP || r->kind == FOMAP_DISCARD) {
		if (fm_object_create(NULL, len, NULL, &obj) < 0)
			bench_fail("fm_object_create");
		p = bench_fm_map(obj, len);
		if (fm_madvise(p, len, MADV_WILLNEED) < 0)
			bench_fail("fm_madvise WILLNEED");
	} else {
		fd = bench_memfd(len);
		p = bench_mmap(len, PROT_READ | PROT_WRITE, MAP_SHARED, fd);
		if (madvise(p, len, MADV_POPULATE_WRITE) < 0)
			bench_fail("MADV_POPULATE_WRITE");
	}
	bench_touch(p, r->npages, 1);
	t0 = now_ns();
	switch (r->kind) {
	case FOMAP_KEEP:
		k = fm_object_unmap(obj, 0, len, FM_UNMAP_KEEP);
		break;
	case FOMAP_DISCARD:
		k = fm_object_unmap(obj, 0, len, FM_UNMAP_DISCARD);
		break;
	case K_DONTNEED:
		k = madvise(p, len, MADV_DONTNEED);
		break;
	case K_PUNCH:
		k = fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0,
		    (off_t)len);
		break;
	}
	t1 = now_ns();
	if (k < 0)
		bench_fail("remove");
	bench_touch(p, r->npages, 1);
	out[0] = (double)(t1 - t0) / (double)r->npages;
	out[1] = (double)(now_ns() - t1) / (double)r->npages;
}

int
main(int argc, char **argv)
{
	size_t npages;

	bench_init(argc, argv,
	    "Removal of all mappings of a large object (row 8)");
	npages = bench.quick ? 65536 : 262144;
	struct rm r[] = {
	    {FOMAP_KEEP, npages},
	    {K_DONTNEED, npages},
	    {FOMAP_DISCARD, npages},
	    {K_PUNCH, npages},
	};
	struct bench_cfg c[] = {
	    {.name = "fomap fm_object_unmap FM_UNMAP_KEEP"},
	    {.name = "kernel madvise MADV_DONTNEED"},
	    {.name = "fomap fm_object_unmap FM_UNMAP_DISCARD"},
	    {.name = "kernel fallocate PUNCH_HOLE"},
	};

	for (int i = 0; i < 4; i++) {
		c[i].fn = run_rm;
		c[i].arg = &r[i];
	}
	printf(
	    "Row 8: remove every mapping of a %zu MiB object; ns per page.\n\n",
	    npages * PG >> 20);
	bench_compare("8", c, 4, bench.reps, -1, "ns/page (removal)", 1);
	printf("Then write every page again; µs per page.\n\n");
	bench_table("8t", c, 4, 1, -1, "µs/page (touch again)", 1e3);
	bench_ratio("remove_keep_vs_dontneed", &c[0], &c[1], 0);
	bench_ratio("remove_discard_vs_punch", &c[2], &c[3], 0);
	bench_ratio("retouch_keep_vs_dontneed", &c[0], &c[1], 1);
	bench_ratio("retouch_discard_vs_punch", &c[2], &c[3], 1);
	bench_done();
	return 0;
}
