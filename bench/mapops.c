/*
 * mapops.c: mapping calls among many live mappings (row 10 of
 * docs/benchmarks.md; memory.c is row 9).
 *
 * Before the clock starts, N one-page mappings are made and left in place
 * (N = 10, 1,000, 10,000, 60,000; the quick run: 10 and 60,000). Then,
 * timed, each in its own child:
 *   ring     the N mappings are a FIFO: an operation unmaps the oldest and
 *            maps a new one in its place in the ring. fomap: fm_munmap +
 *            fm_mmap of one page of the zero device (a new object each).
 *            Kernel: munmap + mmap of one page of a memfd, ring slot s at
 *            offset 2s pages, so that no two mappings are ever contiguous in
 *            the file and none merges with a neighbour (checked: the
 *            process has at least N mappings in /proc/self/maps).
 *   object   one object of N pages mapped N times, mapping i maps its page
 *            i; the middle page is written, then fm_object_protect of that
 *            page read-only and back read-write (out[0]: per protect), then
 *            fm_object_unmap FM_UNMAP_KEEP of it (out[1]: the unmap alone,
 *            timed call by call; the page is written again untimed before
 *            each, so every unmap removes a mapped page).
 * Nothing is touched in the ring: the calls, not the faults, are measured.
 * Each loop runs its iterations or stops after LOOP_NS, whichever is
 * first (16 at least): a figure is ns per operation.
 * Figures: out[0] ns per op (ring: munmap + mmap; object: per protect),
 * out[1] object: ns per unmap, out[2] µs to make one live mapping
 * (untimed set-up, for scale), out[3] lines of /proc/self/maps per live
 * mapping (at N = 10 the engine's own (its threads' stacks) add 0.2). The
 * kernel keeps at most vm.max_map_count mappings in a process
 * (65,530 by default); a count beyond what it allows is left out.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bench.h"

/* At most this long a timed loop (ns): the quick run's, the full run's. */
#define LOOP_NS (bench.quick ? 100000000ull : 400000000ull)
#define LOOP_MIN 16

enum kind { FM_RING, K_RING, FM_OBJECT };

struct ops {
	enum kind kind;
	size_t live; /* N */
	size_t iters;
};

/* Whether a timed loop that started at t0 and has done i goes on. */
static int
more(size_t i, size_t iters, uint64_t t0)
{
	return i < iters && (i < LOOP_MIN || now_ns() - t0 < LOOP_NS);
}

static size_t
maps_lines(void)
{
	FILE *f = fopen("/proc/self/maps", "r");
	size_t n = 0;
	int ch;

	if (f == NULL)
		bench_fail("/proc/self/maps");
	while ((ch = getc(f)) != EOF)
		n += ch == '\n';
	fclose(f);
	return n;
}

/* FIFO of N live one-page mappings: unmap the oldest, map a new one. */
static void
run_ring(const struct ops *o, double *out)
{
	int kernel = o->kind == K_RING;
	void *(*mmap_fn)(void *, size_t, int, int, int, off_t) =
	    kernel ? mmap : fm_mmap;
	int (*munmap_fn)(void *, size_t) = kernel ? munmap : fm_munmap;
	void **ring = malloc(o->live * sizeof *ring);
	size_t base = maps_lines(), i;
	int fd;
	uint64_t t0;

	if (ring == NULL)
		bench_fail("malloc");
	if (kernel)
		fd = bench_memfd(2 * o->live * PG);
	else if ((fd = fm_open(FM_DEVPREFIX "zero", O_RDWR)) < 0)
		bench_fail("fm_open zero");
	t0 = now_ns();
	for (size_t s = 0; s < o->live; s++) {
		ring[s] = mmap_fn(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED,
		    fd, kernel ? (off_t)(2 * s * PG) : 0);
		if (ring[s] == MAP_FAILED)
			bench_fail("mmap (live)");
	}
	out[2] = (double)(now_ns() - t0) / 1e3 / (double)o->live;
	out[3] = (double)(maps_lines() - base) / (double)o->live;
	if (kernel && maps_lines() < base + o->live)
		bench_fail("kernel mappings merged");
	t0 = now_ns();
	for (i = 0; more(i, o->iters, t0); i++) {
		size_t s = i % o->live;
		int r;

		r = munmap_fn(ring[s], PG);
		ring[s] = mmap_fn(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED,
		    fd, kernel ? (off_t)(2 * s * PG) : 0);
		if (r < 0 || ring[s] == MAP_FAILED)
			bench_fail("the timed munmap + mmap");
	}
	out[0] = (double)(now_ns() - t0) / (double)i;
	if (kernel && maps_lines() < base + o->live)
		bench_fail("kernel mappings merged");
}

/* One object of N pages, mapping i maps page i: protect, unmap page N/2. */
static void
run_object(const struct ops *o, double *out)
{
	size_t mid = o->live / 2, i, base = maps_lines();
	off_t off = (off_t)(mid * PG);
	volatile char *page = NULL;
	struct fm_object *obj;
	uint64_t t0, tu = 0;
	int fd;

	if (fm_object_create(NULL, o->live * PG, NULL, &obj) < 0)
		bench_fail("fm_object_create");
	fd = bench_fm_open(obj);
	t0 = now_ns();
	for (size_t k = 0; k < o->live; k++) {
		char *p = fm_mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED,
		    fd, (off_t)(k * PG));

		if (p == MAP_FAILED)
			bench_fail("fm_mmap (live)");
		if (k == mid)
			page = p;
	}
	out[2] = (double)(now_ns() - t0) / 1e3 / (double)o->live;
	out[3] = (double)(maps_lines() - base) / (double)o->live;
	fm_close(fd);
	*page = 1; /* resident and mapped: the protect has work to do */
	t0 = now_ns();
	for (i = 0; more(i, o->iters, t0); i++)
		if (fm_object_protect(obj, off, PG, PROT_READ) < 0 ||
		    fm_object_protect(obj, off, PG, PROT_READ | PROT_WRITE) < 0)
			bench_fail("fm_object_protect");
	out[0] = (double)(now_ns() - t0) / (double)(2 * i);
	t0 = now_ns();
	for (i = 0; i < o->iters && (i < LOOP_MIN || tu < LOOP_NS); i++) {
		uint64_t t1;

		*page = 1; /* maps it again (a fault), untimed */
		t1 = now_ns();
		if (fm_object_unmap(obj, off, PG, FM_UNMAP_KEEP) < 0)
			bench_fail("fm_object_unmap");
		tu += now_ns() - t1;
	}
	out[1] = (double)tu / (double)i;
	fm_object_rele(obj);
}

static void
run_ops(const void *arg, double *out)
{
	const struct ops *o = arg;

	if (o->kind == FM_OBJECT)
		run_object(o, out);
	else
		run_ring(o, out);
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

#define NCOUNT 4
#define NKIND 3

int
main(int argc, char **argv)
{
	static const size_t counts[NCOUNT] = {10, 1000, 10000, 60000};
	static const char *kinds[NKIND] = {
	    [FM_RING] = "fomap ring: fm_munmap + fm_mmap (zero)",
	    [K_RING] = "kernel ring: munmap + mmap (memfd)",
	    [FM_OBJECT] = "fomap object: protect, unmap 1 page",
	};
	struct bench_cfg c[NKIND * NCOUNT], u[NCOUNT];
	struct ops o[NKIND * NCOUNT];
	char names[NKIND * NCOUNT][80];
	int n = 0, at60k = -1, at10 = -1;

	bench_init(argc, argv,
	    "Mapping calls among many live mappings (row 10)");
	if (!bench_want("10")) {
		bench_done();
		return 0;
	}
	for (int i = 0; i < NCOUNT; i++) {
		size_t live = counts[i];

		if ((bench.quick && live != 10 && live != 60000) ||
		    live > max_live())
			continue;
		if (live == 10)
			at10 = n;
		if (live == 60000)
			at60k = n;
		for (int k = 0; k < NKIND; k++) {
			o[n] = (struct ops){.kind = (enum kind)k,
			    .live = live,
			    .iters = bench.quick ? 2000 : 10000};
			snprintf(names[n], sizeof names[n], "%s, %zu live",
			    kinds[k], live);
			c[n] = (struct bench_cfg){.name = names[n],
			    .fn = run_ops,
			    .arg = &o[n]};
			n++;
		}
	}
	printf("Row 10: one-page mapping calls beside N live one-page "
	       "mappings; µs per call (ring: an munmap + mmap pair; object: "
	       "one protect).\n\n");
	/* Quick: 3 reps (each sets up and tears down 60,000 mappings). */
	bench_compare("10", c, n, bench.quick ? 3 : bench.reps, -1, "µs/op",
	    1e3);
	printf("fm_object_unmap FM_UNMAP_KEEP of the one mapped page (alone; "
	       "the object rows only):\n\n");
	for (int i = 0; i < n / NKIND; i++)
		u[i] = c[NKIND * i + FM_OBJECT];
	bench_table("10u", u, n / NKIND, 1, -1, "µs/unmap", 1e3);
	printf("Set-up, medians: µs to make one live mapping / lines of "
	       "/proc/self/maps per live mapping:\n\n");
	for (int i = 0; i < n; i++)
		printf("- %s: %.2f / %.2f\n", c[i].name, bench_median(&c[i], 2),
		    bench_median(&c[i], 3));
	printf("\n");
	if (at60k >= 0)
		bench_ratio("map_ops_60k_vs_kernel", &c[at60k + FM_RING],
		    &c[at60k + K_RING], 0);
	if (at60k >= 0 && at10 >= 0) {
		bench_ratio("protect_60k_vs_10", &c[at60k + FM_OBJECT],
		    &c[at10 + FM_OBJECT], 0);
		bench_ratio("unmap_60k_vs_10", &c[at60k + FM_OBJECT],
		    &c[at10 + FM_OBJECT], 1);
	}
	bench_done();
	return 0;
}
