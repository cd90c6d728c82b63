/*
 * store.c: objects filled from a file, and host objects (row 5 of
 * docs/benchmarks.md).
 *
 * The backing file is written once, before any measurement, so it is in
 * the page cache: what is measured is the fill and the install, not a disk.
 *   store   fomap's store pager (fm_store_create) vs a raw userfaultfd
 *           handler doing the same pread + install (UFFDIO_COPY from the
 *           buffer, or pwrite into the memfd + UFFDIO_CONTINUE), at one
 *           page per fault and at 64 pages; and, for scale, the kernel's
 *           own mmap of the file. Every page is read. The default again
 *           unpinned, with the kernel's: the engine's read-ahead overlaps
 *           the reader only with a second CPU.
 *   write   first write through a store object vs the kernel's mmap of the
 *           file: map MAP_SHARED read-write, write one byte of every page in
 *           turn, msync the whole mapping, unmap, timed whole (for fomap
 *           fm_store_create too). MS_ASYNC: fomap writes the dirty pages
 *           back into the file (splice; the page cache holds them
 *           after), the kernel's pages are in the page cache already and
 *           its msync does nothing. MS_SYNC (a diagnostic): both reach the
 *           disk, fomap by fm_msync + fdatasync of the file. Each run
 *           starts from the same clean, page-cached file (restored and
 *           fdatasync'ed untimed), and checks after the msync that the
 *           file holds what was written.
 *   host    fm_mmap of the regular file and of MAP_ANONYMOUS memory vs
 *           plain mmap: mmap + touch every page + munmap, timed whole.
 * Figures: ns per page; for host objects also out[1] the map (µs), out[2]
 * the touch (ns per page) and out[3] the unmap (µs) apart; for the write
 * row out[1] the writes and out[2] the msync (ns per page), out[3] the map
 * and out[4] the unmap (µs), out[5] the engine's faults and out[6] its
 * write-protect faults among them during the writes.
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
	PLAIN_ANON,
	STORE_W,
	KFILE_W
};

struct fill {
	enum kind kind;
	size_t npages;
	int advice; /* STORE: MADV_*, -1 the default */
	unsigned around; /* raw: pages per fault */
	int sync; /* STORE_W, KFILE_W: MS_SYNC (and to disk), not MS_ASYNC */
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

/*
 * Put back the first byte of each of the file's first npages pages (byte i
 * in page i, as make_file wrote it) and make them clean: the file's state
 * before any write run.
 */
static void
restore_file(int fd, size_t npages)
{
	for (size_t i = 0; i < npages; i++) {
		unsigned char b = (unsigned char)(i & 0xff);

		if (pwrite(fd, &b, 1, (off_t)(i * PG)) != 1)
			bench_fail("restore backing file");
	}
	if (fdatasync(fd) < 0)
		bench_fail("fdatasync");
}

/* Map, write a byte of every page, msync, unmap: fomap or the kernel. */
static void
run_write(const struct fill *f, double *out)
{
	size_t len = f->npages * PG;
	int fd = open(path, O_RDWR | O_CLOEXEC), mfd = -1, fomap;
	int (*msync_fn)(void *, size_t, int);
	int (*munmap_fn)(void *, size_t);
	uint64_t t0, t1, t2, t3, t4, t5;
	struct fm_stats s0, s1;
	struct fm_object *obj;
	char *p;

	fomap = f->kind == STORE_W;
	msync_fn = fomap ? fm_msync : msync;
	munmap_fn = fomap ? fm_munmap : munmap;
	if (fd < 0)
		bench_fail(path);
	restore_file(fd, f->npages);
	if (fomap) { /* the engine starts once a process: not timed */
		p = bench_fm_zero(PG);
		*(volatile char *)p = 1;
		fm_munmap(p, PG);
	}
	fm_engine_stats(&s0);
	t0 = now_ns();
	if (fomap) {
		if (fm_store_create(fd, 0, len, &obj) < 0)
			bench_fail("fm_store_create");
		mfd = bench_fm_open(obj);
		p = fm_mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, mfd,
		    0);
		fm_object_rele(obj); /* the mapping holds it */
	} else {
		p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	}
	if (p == MAP_FAILED)
		bench_fail("mmap");
	t1 = now_ns();
	for (size_t i = 0; i < f->npages; i++)
		((volatile char *)p)[i * PG] = (char)((i + 1) & 0xff);
	t2 = now_ns();
	fm_engine_stats(&s1);
	if (msync_fn(p, len, f->sync ? MS_SYNC : MS_ASYNC) < 0)
		bench_fail("msync");
	if (fomap && f->sync && fdatasync(fd) < 0)
		bench_fail("fdatasync");
	t3 = now_ns();
	/* Untimed: the file (its page cache) has every byte written. */
	for (size_t i = 0; i < f->npages; i += 97) {
		unsigned char b;

		if (pread(fd, &b, 1, (off_t)(i * PG)) != 1 ||
		    b != ((i + 1) & 0xff))
			bench_fail("the file lacks a write after msync");
	}
	t4 = now_ns();
	if (munmap_fn(p, len) < 0)
		bench_fail("munmap");
	t5 = now_ns();
	if (mfd >= 0)
		fm_close(mfd);
	close(fd);
	out[0] = (double)(t3 - t0 + t5 - t4) / (double)f->npages;
	out[1] = (double)(t2 - t1) / (double)f->npages;
	out[2] = (double)(t3 - t2) / (double)f->npages;
	out[3] = (double)(t1 - t0) / 1e3;
	out[4] = (double)(t5 - t4) / 1e3;
	out[5] = (double)(s1.faults - s0.faults);
	out[6] = (double)(s1.wp - s0.wp);
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

	if (f->kind == STORE_W || f->kind == KFILE_W) {
		close(fd);
		run_write(f, out);
		return;
	}
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
	    {.kind = STORE, .advice = -1},
	    {.kind = KFILE},
	};
	struct bench_cfg c[] = {
	    {.name = "fomap store pager, MADV_RANDOM (1 page/fault)"},
	    {.name = "raw pread + UFFDIO_COPY, 1 page"},
	    {.name = "raw pread + pwrite + UFFDIO_CONTINUE, 1 page"},
	    {.name = "fomap store pager, default fault-around"},
	    {.name = "fomap store pager, MADV_SEQUENTIAL (256-page fills)"},
	    {.name = "raw pread + UFFDIO_COPY, 64 pages"},
	    {.name = "raw pread + pwrite + UFFDIO_CONTINUE, 64 pages"},
	    {.name = "kernel mmap of the file (page cache)"},
	    /* Read-ahead overlaps the reader only with a second CPU. */
	    {.name = "fomap store pager, default fault-around, unpinned",
	        .unpinned = 1},
	    {.name = "kernel mmap of the file, unpinned", .unpinned = 1},
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
	bench_ratio("store_seq_vs_kernel_file_unpinned", &c[8], &c[9], 0);
}

static void
write_row(size_t npages)
{
	struct fill f[] = {
	    {.kind = STORE_W},
	    {.kind = KFILE_W},
	    {.kind = STORE_W, .sync = 1},
	    {.kind = KFILE_W, .sync = 1},
	};
	struct bench_cfg c[] = {
	    {.name = "fomap store: map, write, fm_msync MS_ASYNC, unmap"},
	    {.name = "kernel mmap of the file: the same, msync MS_ASYNC"},
	    {.name = "fomap store, MS_SYNC + fdatasync (to disk)"},
	    {.name = "kernel mmap of the file, MS_SYNC (to disk)"},
	};
	int n = (int)(sizeof c / sizeof c[0]);

	for (int i = 0; i < n; i++) {
		f[i].npages = npages;
		c[i].fn = run_fill;
		c[i].arg = &f[i];
	}
	printf("Row 5w: first write of one byte a page of %zu pages of a "
	       "cached file, then msync, timed whole with map and unmap; µs "
	       "per page.\n\n",
	    npages);
	bench_compare("5w", c, n, bench.reps, 1, "µs/page", 1e3);
	printf("The writes alone:\n\n");
	bench_table("5w", c, n, 1, 1, "µs/page", 1e3);
	printf("The msync alone (fomap: its write-back into the file; MS_SYNC: "
	       "and the disk):\n\n");
	bench_table("5w", c, n, 2, -1, "µs/page", 1e3);
	printf("Map / unmap, medians (µs); fomap's faults / write-protect "
	       "faults for the %zu pages:\n\n",
	    npages);
	for (int i = 0; i < n; i++)
		printf("- %s: %.1f / %.1f; %.0f / %.0f\n", c[i].name,
		    bench_median(&c[i], 3), bench_median(&c[i], 4),
		    bench_median(&c[i], 5), bench_median(&c[i], 6));
	printf("\n");
	bench_ratio("store_write_vs_kernel_file", &c[0], &c[1], 0);
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
	if (bench_want("5w"))
		write_row(bench.quick ? 4096 : 16384);
	if (bench_want("5h"))
		host(npages);
	unlink(path);
	bench_done();
	return 0;
}
