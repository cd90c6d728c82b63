/*
 * store.c: objects filled from a file, and host objects (row 5 of
 * docs/benchmarks.md).
 *
 * The backing file is written once, before any measurement, so it is in
 * the page cache: what is measured is the fill and the install, not a disk.
 *   store   fomap's store pager (fm_store_create) vs a raw userfaultfd
 *           handler doing the same pread + install (UFFDIO_COPY from the
 *           buffer, or pwrite into the memfd + UFFDIO_CONTINUE), at one
 *           page per fault and at the store's 64-page chunk; and, for
 *           scale, the kernel's own mmap of the file. Every page is read.
 *   host    fm_mmap of the regular file and of MAP_ANONYMOUS memory vs
 *           plain mmap: mmap + touch every page + munmap, timed whole.
 * Figures: ns per page; for host objects also out[1] the map (µs), out[2]
 * the touch (ns per page) and out[3] the unmap (µs) apart.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bench.h"

enum kind {
	STORE,
	RAW_COPY_,
	RAW_CONT,
	KFILE,
	HOST_FILE,
	PLAIN_FILE,
	HOST_ANON,
	PLAIN_ANON
};

struct fill {
	enum kind kind;
	size_t npages;
	int advice; /* STORE: MADV_*, -1 the default */
	unsigned around; /* raw: pages per fault */
};

static char path[256];

static void
make_file(size_t npages)
{
	const char *dir = getenv("TMPDIR");
	char *page = malloc(PG);
	int fd;

	snprintf(path, sizeof path, "%s/fomap-bench-XXXXXX",
	    dir ? dir : "/var/tmp");
	if (page == NULL || (fd = mkstemp(path)) < 0)
		bench_fail("backing file");
	for (size_t i = 0; i < npages; i++) {
		memset(page, (int)(i & 0xff), PG);
		if (write(fd, page, PG) != PG)
			bench_fail("write backing file");
	}
	fsync(fd);
	close(fd);
	free(page);
}

static void
run_fill(const void *arg, double *out)
{
	const struct fill *f = arg;
	size_t len = f->npages * PG;
	struct raw raw = {.around = f->around};
	struct fm_object *obj;
	char *p = NULL;
	uint64_t t0, t1 = 0, t2 = 0, t3;
	int fd = open(path, O_RDWR | O_CLOEXEC), mfd;

	if (fd < 0)
		bench_fail(path);
	switch (f->kind) {
	case STORE:
		if (fm_store_create(fd, 0, len, &obj) < 0)
			bench_fail("fm_store_create");
		p = bench_fm_map(obj, len);
		fm_object_rele(obj);
		if (f->advice >= 0 && fm_madvise(p, len, f->advice) < 0)
			bench_fail("fm_madvise");
		break;
	case RAW_COPY_:
	case RAW_CONT:
		raw.memfd = mfd = bench_memfd(len);
		raw.base = p =
		    bench_mmap(len, PROT_READ | PROT_WRITE, MAP_SHARED, mfd);
		raw.len = len;
		raw.srcfd = fd;
		raw.mode = f->kind == RAW_COPY_ ? RAW_COPY : RAW_CONTINUE;
		raw_start(&raw);
		break;
	case KFILE:
		p = bench_mmap(len, PROT_READ | PROT_WRITE, MAP_SHARED, fd);
		break;
	default:
		break;
	}
	t0 = now_ns();
	switch (f->kind) {
	case HOST_FILE:
	case HOST_ANON: {
		int anon = f->kind == HOST_ANON;

		p = fm_mmap(NULL, len, PROT_READ | PROT_WRITE,
		    anon ? MAP_PRIVATE | MAP_ANONYMOUS : MAP_SHARED,
		    anon ? -1 : fd, 0);
		if (p == MAP_FAILED)
			bench_fail("fm_mmap");
		t1 = now_ns();
		bench_touch(p, f->npages, anon);
		t2 = now_ns();
		fm_munmap(p, len);
		break;
	}
	case PLAIN_FILE:
	case PLAIN_ANON: {
		int anon = f->kind == PLAIN_ANON;

		p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		    anon ? MAP_PRIVATE | MAP_ANONYMOUS : MAP_SHARED,
		    anon ? -1 : fd, 0);
		if (p == MAP_FAILED)
			bench_fail("mmap");
		t1 = now_ns();
		bench_touch(p, f->npages, anon);
		t2 = now_ns();
		munmap(p, len);
		break;
	}
	default:
		bench_touch(p, f->npages, 0);
		/* Check the fill: page i holds byte i. */
		for (size_t i = 0; i < f->npages; i += 4099 / 7)
			if ((unsigned char)p[i * PG + 5] != (i & 0xff))
				bench_fail("wrong contents");
	}
	t3 = now_ns();
	out[0] = (double)(t3 - t0) / (double)f->npages;
	out[1] = (double)raw.faults;
	if (t1 > 0) { /* host: map, touch, unmap apart (µs, ns/page, µs) */
		out[1] = (double)(t1 - t0) / 1e3;
		out[2] = (double)(t2 - t1) / (double)f->npages;
		out[3] = (double)(t3 - t2) / 1e3;
	}
}

static void
store(size_t npages)
{
	struct fill f[] = {
	    {.kind = STORE, .advice = MADV_RANDOM},
	    {.kind = RAW_COPY_, .around = 1},
	    {.kind = RAW_CONT, .around = 1},
	    {.kind = STORE, .advice = -1},
	    {.kind = STORE, .advice = MADV_SEQUENTIAL},
	    {.kind = RAW_COPY_, .around = 64},
	    {.kind = RAW_CONT, .around = 64},
	    {.kind = KFILE},
	};
	struct bench_cfg c[] = {
	    {.name = "fomap store pager, MADV_RANDOM (1 page/fault)"},
	    {.name = "raw pread + UFFDIO_COPY, 1 page"},
	    {.name = "raw pread + pwrite + UFFDIO_CONTINUE, 1 page"},
	    {.name = "fomap store pager, default fault-around"},
	    {.name = "fomap store pager, MADV_SEQUENTIAL (64-page fills)"},
	    {.name = "raw pread + UFFDIO_COPY, 64 pages"},
	    {.name = "raw pread + pwrite + UFFDIO_CONTINUE, 64 pages"},
	    {.name = "kernel mmap of the file (page cache)"},
	};
	int n = (int)(sizeof c / sizeof c[0]);

	for (int i = 0; i < n; i++) {
		f[i].npages = npages;
		c[i].fn = run_fill;
		c[i].arg = &f[i];
	}
	printf(
	    "Row 5: first touch (read) of %zu pages filled from a cached file; "
	    "µs per page.\n\n",
	    npages);
	bench_compare("5", c, n, bench.reps, 1, "µs/page", 1e3);
	const struct bench_cfg *best1 =
	    bench_median(&c[1], 0) <= bench_median(&c[2], 0) ? &c[1] : &c[2];
	const struct bench_cfg *best64 =
	    bench_median(&c[5], 0) <= bench_median(&c[6], 0) ? &c[5] : &c[6];
	bench_ratio("store_fill_vs_raw_uffd", &c[0], best1, 0);
	bench_ratio("store_seq_vs_raw_uffd64", &c[4], best64, 0);
	bench_ratio("store_seq_vs_kernel_file", &c[3], &c[7], 0);
}

static void
host(size_t npages)
{
	struct fill f[] = {
	    {.kind = HOST_FILE},
	    {.kind = PLAIN_FILE},
	    {.kind = HOST_ANON},
	    {.kind = PLAIN_ANON},
	};
	struct bench_cfg c[] = {
	    {.name = "fomap: fm_mmap of the regular file (read)"},
	    {.name = "plain mmap of the regular file (read)"},
	    {.name = "fomap: fm_mmap MAP_ANONYMOUS (write)"},
	    {.name = "plain mmap MAP_ANONYMOUS (write)"},
	};

	for (int i = 0; i < 4; i++) {
		f[i].npages = npages;
		c[i].fn = run_fill;
		c[i].arg = &f[i];
	}
	printf("Row 5 host objects: mmap + touch %zu pages + munmap; µs per "
	       "page.\n\n",
	    npages);
	/* Cheap and noisy (a few ms a run): twice the reps. */
	bench_compare("5h", c, 4, 2 * bench.reps, 1, "µs/page", 1e3);
	printf("Apart, medians: map µs / touch ns per page / unmap µs:\n\n");
	for (int i = 0; i < 4; i++)
		printf("- %s: %.1f / %.1f / %.0f\n", c[i].name,
		    bench_median(&c[i], 1), bench_median(&c[i], 2),
		    bench_median(&c[i], 3));
	printf("\n");
	bench_ratio("host_touch_vs_kernel", &c[0], &c[1], 0);
	bench_ratio("host_anon_vs_kernel", &c[2], &c[3], 0);
}

int
main(int argc, char **argv)
{
	size_t npages;

	bench_init(argc, argv, "Store pager and host objects (row 5)");
	npages = bench.quick ? 32768 : 65536;
	make_file(npages);
	if (bench_want("5"))
		store(bench.quick ? 4096 : 32768);
	if (bench_want("5h"))
		host(npages);
	unlink(path);
	bench_done();
	return 0;
}
