/*
 * fault.c: first-touch faults (rows 1–3 of docs/benchmarks.md).
 *
 *   1. one page per fault, sequential: fomap's engine (zero device,
 *      MADV_RANDOM) vs a raw userfaultfd handler (UFFDIO_COPY, and
 *      fallocate + UFFDIO_CONTINUE) vs the kernel's own first touch;
 *      fomap and raw UFFDIO_COPY again unpinned (the scheduler places the
 *      threads: a wake-up on the other CPU costs tens of µs);
 *   2. sequential with fault-around: fomap's default (adaptive 1 → 256),
 *      MADV_SEQUENTIAL and MAP_POPULATE vs the kernel's first touch and the
 *      populate floor; then a sweep of the window, 1 … 256 pages: the zero
 *      device with FOMAP_FAULT_AROUND vs a raw handler's UFFDIO_ZEROPAGE at
 *      the same window (both fill and map in one call), and a pager whose
 *      pgo_fault sets f->around vs a raw handler filling the same way
 *      (pwrite of zeros + UFFDIO_CONTINUE);
 *   3. random first touch of 1 page in 16 (fault-around only wastes work).
 *
 * Every touch is a write of one byte of the page. Figures: ns per touched
 * page, out[1] faults and out[2] pages the engine installed, out[3] faults
 * the raw handler saw, out[4] context switches per touched page.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bench.h"

#define AROUND_MAX 256

enum kind {
	FOMAP, /* zero device, advice as given */
	FOMAP_KNOB, /* zero device, FOMAP_FAULT_AROUND=around */
	FOMAP_POP, /* zero device, MAP_POPULATE */
	SWEEP, /* the sweep pager, MADV_SEQUENTIAL, window `around` */
	RAW_COPY_, /* raw handler, UFFDIO_COPY */
	RAW_CONT, /* raw handler, fallocate + UFFDIO_CONTINUE */
	RAW_CONT_W, /* raw handler, pwrite of zeros + UFFDIO_CONTINUE */
	RAW_ZERO_, /* raw handler, UFFDIO_ZEROPAGE */
	KMEMFD, /* kernel: memfd MAP_SHARED */
	KANON, /* kernel: anonymous MAP_PRIVATE */
	KPOP_MADV, /* kernel: memfd + MADV_POPULATE_WRITE, then touch */
	KPOP_MAP, /* kernel: memfd mmap(MAP_POPULATE), then touch */
};

struct touch {
	enum kind kind;
	size_t npages; /* the mapping */
	const uint32_t *order; /* pages to touch, in order; NULL: all, in turn */
	size_t ntouch;
	int advice; /* fomap: MADV_*, or -1 for the default */
	int engine; /* fomap engine threads; 0: the default */
	unsigned around; /* SWEEP and raw: pages per fault */
	int nthreads, excl; /* raw: handler threads, EPOLLEXCLUSIVE */
	const char *latfile; /* write per-touch latency quantiles here */
};

/* The sweep pager: fills min(window, busy) pages with zeros, maps that many. */
static unsigned sweep_around;
static char zeros[AROUND_MAX * PG];

static int
sweep_fault(struct fm_fault *f)
{
	unsigned n = f->npages < sweep_around ? f->npages : sweep_around;
	int r;

	if (n > 0 &&
	    (r = fm_object_write(f->obj, (off_t)f->pgidx * PG, zeros,
	         (size_t)n * PG)) < 0)
		return r;
	f->npages = n;
	f->around = sweep_around;
	return 0;
}

static const struct fm_pagerops sweep_pagerops = {
    .pgo_fault = sweep_fault,
};

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Touch with a clock around each access; write 1000 quantiles (ns). */
static void
touch_latency(char *p, const struct touch *t)
{
	uint64_t *lat = malloc(t->ntouch * sizeof *lat);
	FILE *f;

	if (lat == NULL)
		bench_fail("malloc");
	for (size_t i = 0; i < t->ntouch; i++) {
		size_t pg = t->order ? t->order[i] : i;
		uint64_t t0 = now_ns();

		((volatile char *)p)[pg * PG] = 1;
		lat[i] = now_ns() - t0;
	}
	qsort(lat, t->ntouch, sizeof *lat, cmp_u64);
	if ((f = bench_data(t->latfile)) != NULL) {
		for (int q = 0; q < 1000; q++)
			fprintf(f, "%.4f %.3f\n", (q + 0.5) / 1000.0,
			    lat[(size_t)((q + 0.5) / 1000.0 *
			        (double)t->ntouch)] /
			        1e3);
		fclose(f);
	}
	free(lat);
}

static char *
fomap_map(const struct touch *t, size_t len)
{
	struct fm_object *obj;
	char *p;
	int r;

	if (t->engine > 0)
		bench_engine_threads(t->engine);
	if (t->kind == FOMAP_KNOB) {
		char s[16];

		snprintf(s, sizeof s, "%u", t->around);
		setenv("FOMAP_FAULT_AROUND", s, 1);
	}
	if (t->kind == SWEEP) {
		sweep_around = t->around;
		if ((r = fm_object_create(&sweep_pagerops, len, NULL, &obj)) <
		    0)
			bench_fail("fm_object_create");
		p = bench_fm_map(obj, len);
		fm_object_rele(obj);
		if (fm_madvise(p, len, MADV_SEQUENTIAL) < 0)
			bench_fail("fm_madvise");
		return p;
	}
	p = bench_fm_zero(len);
	if (t->advice >= 0 && fm_madvise(p, len, t->advice) < 0)
		bench_fail("fm_madvise");
	return p;
}

static void
run_touch(const void *arg, double *out)
{
	const struct touch *t = arg;
	size_t len = t->npages * PG;
	struct fm_stats s0, s1;
	struct raw raw = {.srcfd = -1,
	    .around = t->around,
	    .nthreads = t->nthreads,
	    .excl = t->excl};
	char *p = NULL;
	int fd = -1;
	uint64_t t0;
	long cs0 = bench_ctxsw();

	fm_engine_stats(&s0);
	switch (t->kind) {
	case FOMAP:
	case FOMAP_KNOB:
	case SWEEP:
		p = fomap_map(t, len);
		break;
	case RAW_COPY_:
	case RAW_CONT:
	case RAW_CONT_W:
	case RAW_ZERO_:
		raw.memfd = fd = bench_memfd(len);
		raw.base = p =
		    bench_mmap(len, PROT_READ | PROT_WRITE, MAP_SHARED, fd);
		raw.len = len;
		raw.mode = t->kind == RAW_COPY_ ? RAW_COPY
		    : t->kind == RAW_ZERO_      ? RAW_ZERO
		                                : RAW_CONTINUE;
		raw.fill_write = t->kind == RAW_CONT_W;
		raw_start(&raw);
		break;
	case KMEMFD:
		fd = bench_memfd(len);
		p = bench_mmap(len, PROT_READ | PROT_WRITE, MAP_SHARED, fd);
		break;
	case KANON:
		p = bench_mmap(len, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1);
		break;
	case KPOP_MADV:
	case KPOP_MAP:
	case FOMAP_POP:
		fd = t->kind == FOMAP_POP ? fm_open(FM_DEVPREFIX "zero", O_RDWR)
		                          : bench_memfd(len);
		break;
	}
	t0 = now_ns();
	if (t->kind == KPOP_MAP)
		p = bench_mmap(len, PROT_READ | PROT_WRITE,
		    MAP_SHARED | MAP_POPULATE, fd);
	if (t->kind == FOMAP_POP &&
	    (p = fm_mmap(NULL, len, PROT_READ | PROT_WRITE,
	         MAP_SHARED | MAP_POPULATE, fd, 0)) == MAP_FAILED)
		bench_fail("fm_mmap MAP_POPULATE");
	if (t->kind == KPOP_MADV) {
		p = bench_mmap(len, PROT_READ | PROT_WRITE, MAP_SHARED, fd);
		if (madvise(p, len, MADV_POPULATE_WRITE) < 0)
			bench_fail("MADV_POPULATE_WRITE");
	}
	if (t->latfile)
		touch_latency(p, t);
	else if (t->order)
		bench_touch_idx(p, t->order, t->ntouch, 1);
	else
		bench_touch(p, t->ntouch, 1);
	out[0] = (double)(now_ns() - t0) / (double)t->ntouch;
	usleep(2000); /* the engine counts a window just after it wakes us */
	fm_engine_stats(&s1);
	out[1] = (double)(s1.faults - s0.faults);
	out[2] = (double)(s1.pages - s0.pages);
	out[3] = (double)raw.faults;
	out[4] = (double)(bench_ctxsw() - cs0) / (double)t->ntouch;
}

/* One-page faults, sequential. => the fomap / best raw ratio */
static void
row1(size_t npages)
{
	struct touch t[] = {
	    {.kind = FOMAP, .advice = MADV_RANDOM},
	    {.kind = FOMAP, .advice = MADV_RANDOM, .engine = 1},
	    {.kind = RAW_COPY_},
	    {.kind = RAW_CONT},
	    {.kind = KMEMFD},
	    {.kind = KANON},
	    {.kind = RAW_COPY_, .nthreads = 2},
	    {.kind = RAW_COPY_, .nthreads = 2, .excl = 1},
	    {.kind = RAW_ZERO_},
	    {.kind = FOMAP, .advice = MADV_RANDOM},
	    {.kind = RAW_COPY_},
	};
	const char *lat[] = {"lat-fomap.dat", NULL, "lat-raw-copy.dat",
	    "lat-raw-continue.dat", "lat-kernel-memfd.dat",
	    "lat-kernel-anon.dat", NULL, NULL, NULL, NULL, NULL};
	struct bench_cfg c[] = {
	    {.name = "fomap zero, MADV_RANDOM (1 page/fault)"},
	    {.name = "fomap zero, MADV_RANDOM, 1 engine thread"},
	    {.name = "raw uffd UFFDIO_COPY"},
	    {.name = "raw uffd fallocate + UFFDIO_CONTINUE"},
	    {.name = "kernel memfd MAP_SHARED first touch"},
	    {.name = "kernel anonymous first touch"},
	    {.name = "raw uffd UFFDIO_COPY, 2 threads in read(2)"},
	    {.name = "raw uffd UFFDIO_COPY, 2 threads, EPOLLEXCLUSIVE"},
	    {.name = "raw uffd UFFDIO_ZEROPAGE"},
	    {.name = "fomap zero, MADV_RANDOM, unpinned", .unpinned = 1},
	    {.name = "raw uffd UFFDIO_COPY, unpinned", .unpinned = 1},
	};
	int n = (int)(sizeof c / sizeof c[0]);

	for (int i = 0; i < n; i++) {
		t[i].npages = t[i].ntouch = npages;
		t[i].around = 1;
		c[i].fn = run_touch;
		c[i].arg = &t[i];
	}
	printf("Row 1: one page per fault, %zu pages written in turn; µs per "
	       "fault.\n\n",
	    npages);
	bench_compare("1", c, n, bench.reps, 2, "µs/fault", 1e3);
	const struct bench_cfg *best =
	    bench_median(&c[2], 0) <= bench_median(&c[3], 0) ? &c[2] : &c[3];
	bench_ratio("fault_vs_raw_uffd", &c[0], best, 0);
	bench_ratio("fault_vs_kernel_memfd", &c[0], &c[4], 0);
	bench_ratio("fault_vs_raw_uffd_unpinned", &c[9], &c[10], 0);
	printf("Context switches per fault, all threads:\n\n");
	for (int i = 0; i < n; i++)
		if (i != 4 && i != 5)
			printf("- %s: %.2f\n", c[i].name,
			    bench_median(&c[i], 4));
	printf("\n");
	/* The latency distributions, one run each, for the plot. */
	if (bench.outdir) {
		double out[BENCH_NOUT];

		for (int i = 0; i < n; i++) {
			if (lat[i] == NULL)
				continue;
			t[i].latfile = lat[i];
			(void)bench_child(run_touch, &t[i], out);
		}
	}
}

/* Sequential with fault-around, and the populate floor. */
static void
row2(size_t npages)
{
	struct touch t[] = {
	    {.kind = FOMAP, .advice = -1},
	    {.kind = FOMAP, .advice = MADV_SEQUENTIAL},
	    {.kind = FOMAP_POP},
	    {.kind = KMEMFD},
	    {.kind = KANON},
	    {.kind = KPOP_MADV},
	    {.kind = KPOP_MAP},
	};
	struct bench_cfg c[] = {
	    {.name = "fomap zero, default fault-around (1 → 256)"},
	    {.name = "fomap zero, MADV_SEQUENTIAL (256)"},
	    {.name = "fomap zero, MAP_POPULATE (no faults)"},
	    {.name = "kernel memfd MAP_SHARED first touch"},
	    {.name = "kernel anonymous first touch"},
	    {.name = "floor: memfd MADV_POPULATE_WRITE"},
	    {.name = "floor: memfd MAP_POPULATE"},
	};
	int n = (int)(sizeof c / sizeof c[0]);

	for (int i = 0; i < n; i++) {
		t[i].npages = t[i].ntouch = npages;
		c[i].fn = run_touch;
		c[i].arg = &t[i];
	}
	printf("Row 2: sequential first touch of %zu pages; µs per page.\n\n",
	    npages);
	bench_compare("2", c, n, bench.reps, 3, "µs/page", 1e3);
	bench_ratio("seq_touch_vs_kernel", &c[0], &c[3], 0);
	/* The references of the sweep's plot. */
	FILE *f = bench_data("row2.dat");

	if (f) {
		fprintf(f,
		    "fomap_default %.4f\nkernel_memfd %.4f\nkernel_anon %.4f\n"
		    "populate_write %.4f\nmap_populate %.4f\n",
		    bench_median(&c[0], 0) / 1e3, bench_median(&c[3], 0) / 1e3,
		    bench_median(&c[4], 0) / 1e3, bench_median(&c[5], 0) / 1e3,
		    bench_median(&c[6], 0) / 1e3);
		fclose(f);
	}
	bench_ratio("seq_touch_vs_populate", &c[0], &c[5], 0);
	printf("Faults per run of fomap default: %.0f for %zu pages.\n\n",
	    bench_median(&c[0], 1), npages);
}

/*
 * The fault-around sweep, each against a raw handler at the same window:
 * the zero device (FOMAP_FAULT_AROUND) vs UFFDIO_ZEROPAGE, and the sweep
 * pager (f->around) vs pwrite of zeros + UFFDIO_CONTINUE.
 */
#define SWEEP_KINDS 4

static void
sweep(size_t npages)
{
	static const unsigned full[] = {1, 2, 4, 8, 16, 32, 64, 128, 256};
	static const unsigned quick[] = {1, 8, 64, 256};
	static const struct {
		enum kind kind;
		const char *name;
	} kinds[SWEEP_KINDS] = {
	    {FOMAP_KNOB, "fomap zero, FOMAP_FAULT_AROUND"},
	    {RAW_ZERO_, "raw UFFDIO_ZEROPAGE"},
	    {SWEEP, "fomap pager (f->around)"},
	    {RAW_CONT_W, "raw pwrite + UFFDIO_CONTINUE"},
	};
	const unsigned *k = bench.quick ? quick : full;
	int nk = bench.quick ? 4 : 9;
	struct touch t[SWEEP_KINDS * 9];
	struct bench_cfg c[SWEEP_KINDS * 9];
	char names[SWEEP_KINDS * 9][64];
	FILE *f;

	for (int i = 0; i < nk; i++)
		for (int j = 0; j < SWEEP_KINDS; j++) {
			int x = SWEEP_KINDS * i + j;

			t[x] = (struct touch){.kind = kinds[j].kind,
			    .around = k[i],
			    .npages = npages,
			    .ntouch = npages};
			snprintf(names[x], sizeof names[0], "%s, window %u",
			    kinds[j].name, k[i]);
			c[x] = (struct bench_cfg){.name = names[x],
			    .fn = run_touch,
			    .arg = &t[x]};
		}
	printf("Row 2 sweep: window 1 … 256 pages, %zu pages in turn; µs per "
	       "page.\n\n",
	    npages);
	bench_compare("2", c, SWEEP_KINDS * nk, bench.reps, -1, "µs/page", 1e3);
	printf("| window | fomap zero | raw ZEROPAGE | ratio | fomap pager | "
	       "raw pwrite + CONTINUE | ratio |\n"
	       "|---:|---:|---:|---:|---:|---:|---:|\n");
	f = bench_data("sweep.dat");
	for (int i = 0; i < nk; i++) {
		const struct bench_cfg *x = &c[SWEEP_KINDS * i];
		double m[SWEEP_KINDS];

		for (int j = 0; j < SWEEP_KINDS; j++)
			m[j] = bench_median(&x[j], 0) / 1e3;
		printf("| %u | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f |\n",
		    k[i], m[0], m[1], m[0] / m[1], m[2], m[3], m[2] / m[3]);
		if (f == NULL)
			continue;
		fprintf(f, "%u", k[i]);
		for (int j = 0; j < SWEEP_KINDS; j++)
			fprintf(f, " %.4f %.4f %.4f", m[j],
			    bench_min(&x[j], 0) / 1e3,
			    bench_max(&x[j], 0) / 1e3);
		fprintf(f, "\n");
	}
	printf("\n");
	if (f)
		fclose(f);
}

/* Random first touch of 1 page in 16. */
static void
row3(size_t ntouch)
{
	size_t npages = ntouch * 16;
	uint32_t *order = bench_random_pages(npages, ntouch, 42);
	struct touch t[] = {
	    {.kind = FOMAP, .advice = -1},
	    {.kind = FOMAP, .advice = MADV_RANDOM},
	    {.kind = RAW_COPY_},
	    {.kind = RAW_CONT},
	    {.kind = KMEMFD},
	    {.kind = KANON},
	};
	struct bench_cfg c[] = {
	    {.name = "fomap zero, default fault-around"},
	    {.name = "fomap zero, MADV_RANDOM"},
	    {.name = "raw uffd UFFDIO_COPY"},
	    {.name = "raw uffd fallocate + UFFDIO_CONTINUE"},
	    {.name = "kernel memfd MAP_SHARED first touch"},
	    {.name = "kernel anonymous first touch"},
	};
	int n = (int)(sizeof c / sizeof c[0]);

	for (int i = 0; i < n; i++) {
		t[i].npages = npages;
		t[i].ntouch = ntouch;
		t[i].order = order;
		t[i].around = 1;
		c[i].fn = run_touch;
		c[i].arg = &t[i];
	}
	printf(
	    "Row 3: %zu random pages of %zu written; µs per touched page.\n\n",
	    ntouch, npages);
	bench_compare("3", c, n, bench.reps, 4, "µs/page", 1e3);
	bench_ratio("random_touch_vs_kernel", &c[0], &c[4], 0);
	free(order);
}

int
main(int argc, char **argv)
{
	bench_init(argc, argv, "First-touch faults (rows 1–3)");
	if (bench_want("1"))
		row1(bench.quick ? 4096 : 32768);
	if (bench_want("2"))
		row2(bench.quick ? 16384 : 65536);
	if (bench_want("2s"))
		sweep(bench.quick ? 8192 : 32768);
	if (bench_want("3"))
		row3(bench.quick ? 2048 : 8192);
	bench_done();
	return 0;
}
