/*
 * memory.c: fomap's own memory per page (row 9 of docs/benchmarks.md).
 *
 * In a child that has already used fomap once (the engine and tables are
 * up), a 1 GiB object is mapped, then every page is written. At each step
 * we read the allocator's count (mallinfo2: bytes in use, arena and mmap)
 * and the process's RssAnon (private memory actually resident, which is
 * where fomap's own bookkeeping lives; the data pages are shared memory,
 * RssShmem) and VmPTE (page tables, which the kernel needs for any mapping
 * and so are reported apart).
 * Figures, bytes per page of the object: out[0] heap after mapping,
 * out[1] RssAnon after mapping, out[2] heap when resident, out[3] RssAnon
 * when resident, out[4] VmPTE when resident, out[5] the same VmPTE for a
 * plain memfd mapping written the same way.
 */
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bench.h"

struct mem {
	int store; /* 1: a store object, 0: the zero device */
	size_t npages;
};

struct snap {
	double heap, anon, pte;
};

/* A "Key:   123 kB" line of /proc/self/status, in bytes. */
static double
status_kb(const char *key)
{
	char line[256];
	double v = 0;
	FILE *f = fopen("/proc/self/status", "r");

	if (f == NULL)
		bench_fail("/proc/self/status");
	while (fgets(line, sizeof line, f))
		if (strncmp(line, key, strlen(key)) == 0)
			v = atof(line + strlen(key)) * 1024;
	fclose(f);
	return v;
}

static void
snap(struct snap *s)
{
	struct mallinfo2 mi = mallinfo2();

	s->heap = (double)(mi.uordblks + mi.hblkhd);
	s->anon = status_kb("RssAnon:");
	s->pte = status_kb("VmPTE:");
}

static char *
map(const struct mem *m, size_t len)
{
	struct fm_object *obj;
	char *p;
	int fd;

	if (!m->store)
		return bench_fm_zero(len);
	fd = bench_memfd(len); /* the backing "file": a hole, reads as zeros */
	if (fm_store_create(fd, 0, len, &obj) < 0)
		bench_fail("fm_store_create");
	close(fd);
	p = bench_fm_map(obj, len);
	fm_object_rele(obj);
	return p;
}

static void
run_mem(const void *arg, double *out)
{
	const struct mem *m = arg;
	size_t len = m->npages * PG;
	struct snap s0, s1, s2, k0, k1;
	double n = (double)m->npages;
	char *p, *q;
	int fd;

	/* Warm up: fomap's engine, tables and thread stacks exist already. */
	p = map(m, 64 * PG);
	bench_touch(p, 64, 1);
	fm_munmap(p, 64 * PG);
	snap(&s0);
	p = map(m, len);
	snap(&s1);
	bench_touch(p, m->npages, 1);
	usleep(10000);
	snap(&s2);
	out[0] = (s1.heap - s0.heap) / n;
	out[1] = (s1.anon - s0.anon) / n;
	out[2] = (s2.heap - s0.heap) / n;
	out[3] = (s2.anon - s0.anon) / n;
	out[4] = (s2.pte - s0.pte) / n;
	/* The page tables of a plain mapping, for comparison. */
	fd = bench_memfd(len);
	q = bench_mmap(len, PROT_READ | PROT_WRITE, MAP_SHARED, fd);
	snap(&k0);
	bench_touch(q, m->npages, 1);
	snap(&k1);
	out[5] = (k1.pte - k0.pte) / n;
}

int
main(int argc, char **argv)
{
	struct mem m[] = {{0, 262144}, {1, 262144}};
	struct bench_cfg c[] = {
	    {.name = "zero device object", .fn = run_mem, .arg = &m[0]},
	    {.name = "store object", .fn = run_mem, .arg = &m[1]},
	};
	static const char *what[] = {
	    "heap (mallinfo2) per mapped page",
	    "RssAnon per mapped page",
	    "heap per resident page",
	    "RssAnon per resident page",
	    "page tables (VmPTE) per resident page",
	    "page tables of a plain memfd mapping",
	};
	double v = 0;
	int reps;

	bench_init(argc, argv, "fomap's own memory per page at 1 GiB (row 9)");
	reps = bench.quick ? 1 : 3; /* bytes, not times: they barely vary */
	printf("Row 9: a 1 GiB object mapped, then written in full; bytes per "
	       "page.\n\n");
	for (int r = 0; r < reps; r++)
		for (int i = 0; i < 2; i++) {
			(void)bench_child(c[i].fn, c[i].arg, c[i].v[r]);
			c[i].n = r + 1;
		}
	printf("| row | measure | %s | %s |\n|---|---|---:|---:|\n", c[0].name,
	    c[1].name);
	for (int k = 0; k < 6; k++)
		printf("| 9 | %s | %.2f | %.2f |\n", what[k],
		    bench_median(&c[0], k), bench_median(&c[1], k));
	printf("\n");
	for (int i = 0; i < 2; i++)
		for (int k = 2; k <= 3; k++)
			if (bench_median(&c[i], k) > v)
				v = bench_median(&c[i], k);
	bench_headline("meta_bytes_per_page", v,
	    "fomap's own bytes per resident page, the larger of heap and "
	    "RssAnon");
	bench_done();
	return 0;
}
