/*
 * mapops.c: the cost of mapping calls as the count of live mappings grows
 * (row 9 of docs/benchmarks.md).
 *
 * Before the clock starts, N one-page mappings are made and left in place
 * (N = 10, 1,000, 10,000, 60,000; the quick run: 10 and 60,000). Then,
 * timed:
 *   map+unmap  fm_mmap of one page of the zero device and its fm_munmap,
 *              beside N live zero-device mappings; the kernel's mmap +
 *              munmap of one page of a memfd beside N live mappings of it
 *              (each at offset 0: none merges with its neighbour);
 *   protect    fm_object_protect of one page read-only and back, the
 *              object mapped N times (every mapping covers that page).
 * Figures: out[0] ns per operation (a map+unmap pair, or a protect).
 * The kernel keeps at most vm.max_map_count mappings in a process (65,530
 * by default); a count beyond what it allows is left out.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bench.h"

enum kind { FM_MAPOPS, K_MAPOPS, FM_PROTECT };

struct ops {
	enum kind kind;
	size_t live; /* N */
	size_t iters;
};

static void
fm_live(size_t n, struct fm_object *obj, int fd)
{
	for (size_t i = 0; i < n; i++) {
		void *p = obj != NULL
		    ? bench_fm_map(obj, PG)
		    : fm_mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
		          0);
		if (p == MAP_FAILED)
			bench_fail("fm_mmap (live)");
	}
}

static void
run_ops(const void *arg, double *out)
{
	const struct ops *o = arg;
	struct fm_object *obj = NULL;
	int fd = -1, k = 0;
	uint64_t t0;

	if (o->kind == K_MAPOPS) {
		fd = bench_memfd(PG);
		for (size_t i = 0; i < o->live; i++)
			(void)bench_mmap(PG, PROT_READ | PROT_WRITE, MAP_SHARED,
			    fd);
	} else if (o->kind == FM_MAPOPS) {
		if ((fd = fm_open(FM_DEVPREFIX "zero", O_RDWR)) < 0)
			bench_fail("fm_open zero");
		fm_live(o->live, NULL, fd);
	} else {
		if (fm_object_create(NULL, PG, NULL, &obj) < 0)
			bench_fail("fm_object_create");
		fm_live(o->live, obj, -1);
	}
	t0 = now_ns();
	for (size_t i = 0; i < o->iters && k == 0; i++) {
		void *p;

		switch (o->kind) {
		case K_MAPOPS:
			p = bench_mmap(PG, PROT_READ | PROT_WRITE, MAP_SHARED,
			    fd);
			k = munmap(p, PG);
			break;
		case FM_MAPOPS:
			p = fm_mmap(NULL, PG, PROT_READ | PROT_WRITE,
			    MAP_SHARED, fd, 0);
			k = p == MAP_FAILED ? -1 : fm_munmap(p, PG);
			break;
		case FM_PROTECT:
			k = fm_object_protect(obj, 0, PG,
			    i % 2 ? PROT_READ | PROT_WRITE : PROT_READ);
			break;
		}
	}
	if (k != 0)
		bench_fail("the timed operation");
	out[0] = (double)(now_ns() - t0) / (double)o->iters;
}

/* The kernel's limit of mappings a process, with room for everything else. */
static size_t
max_live(void)
{
	FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
	unsigned long n = 65530;

	if (f != NULL) {
		if (fscanf(f, "%lu", &n) != 1)
			n = 65530;
		fclose(f);
	}
	return n > 2000 ? n - 2000 : 0;
}

int
main(int argc, char **argv)
{
	static const size_t counts[] = {10, 1000, 10000, 60000};
	struct bench_cfg c[3 * 4];
	struct ops o[3 * 4];
	char names[3 * 4][64];
	int n = 0, at60k = -1, at10 = -1;

	bench_init(argc, argv, "mapping calls among many live mappings");
	if (!bench_want("9"))
		return 0;
	for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
		size_t live = counts[i];

		if ((bench.quick && live != 10 && live != 60000) ||
		    live > max_live())
			continue;
		for (int k = 0; k < 3; k++) {
			o[n] = (struct ops){.kind = (enum kind)k,
			    .live = live,
			    .iters = bench.quick ? 2000 : 10000};
			snprintf(names[n], sizeof names[n], "%s, %zu live",
			    k == FM_MAPOPS ? "fomap fm_mmap + fm_munmap"
			        : k == K_MAPOPS
			        ? "kernel mmap + munmap"
			        : "fomap fm_object_protect, 1 page",
			    live);
			c[n] = (struct bench_cfg){.name = names[n],
			    .fn = run_ops,
			    .arg = &o[n]};
			n++;
		}
		if (live == 10)
			at10 = n - 3;
		if (live == 60000)
			at60k = n - 3;
	}
	bench_compare("9", c, n, bench.reps, -1, "µs/op", 1000.0);
	if (at60k >= 0) {
		bench_ratio("map_ops_60k_vs_kernel", &c[at60k], &c[at60k + 1],
		    0);
		if (at10 >= 0)
			bench_ratio("protect_60k_vs_10", &c[at60k + 2],
			    &c[at10 + 2], 0);
	}
	bench_done();
	return 0;
}
