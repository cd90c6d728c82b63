/*
 * pager.c: a custom-pager driver, fill from backing storage on fault
 * (row 6 of docs/benchmarks.md).
 *
 *   bench pager  a driver written here with the driver API: a device whose
 *                d_mmap_single gives an object with a pgo_fault that fills
 *                the busy pages it is offered (up to its window) from a
 *                backing buffer in memory (fm_object_write: one copy);
 *   gem          when the gem driver is built in: a buffer written, evicted
 *                (FM_GEM_EVICT: its data goes to backing storage) and then
 *                read back by first touch;
 *   raw          a raw userfaultfd handler, UFFDIO_COPY straight from the
 *                backing buffer (one copy), 1 and 64 pages per fault;
 *   kernel       memcpy of the backing buffer into a fresh memfd mapping.
 * Every page is read once (a write for the kernel's memcpy). Figures: ns
 * per page.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bench.h"

#if __has_include(<fomap/gem.h>)
#include <fomap/gem.h>
#define HAVE_GEM 1
#else
#define HAVE_GEM 0
#endif

enum kind { PAGER, GEM, RAW_COPY_, KERNEL };

struct fill {
	enum kind kind;
	size_t npages;
	int advice; /* fomap: MADV_*, -1: the default */
	unsigned around; /* raw: pages per fault */
};

static char *backing; /* the driver's backing storage: page i holds byte i */

static int
bpager_fault(struct fm_fault *f)
{
	int r;

	if (f->npages == 0)
		return 0; /* resident: the engine maps it */
	r = fm_object_write(f->obj, (off_t)f->pgidx * PG,
	    backing + f->pgidx * PG, (size_t)f->npages * PG);
	return r;
}

static const struct fm_pagerops bpager_ops = {
    .pgo_fault = bpager_fault,
};

#if HAVE_GEM
/* A gem buffer whose data sits in backing storage. => the mapping */
static char *
gem_evicted(size_t len)
{
	struct fm_gem_create cr = {.size = len};
	struct fm_gem_mmap_offset mo = {0};
	struct fm_gem_evict ev = {0};
	int fd = fm_open(FM_GEM_DEV, O_RDWR);
	char *p;

	if (fd < 0 || fm_ioctl(fd, FM_GEM_CREATE, &cr) < 0)
		bench_fail("gem create");
	mo.handle = ev.handle = cr.handle;
	if (fm_ioctl(fd, FM_GEM_MMAP_OFFSET, &mo) < 0)
		bench_fail("gem mmap offset");
	p = fm_mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
	    (off_t)mo.offset);
	if (p == MAP_FAILED)
		bench_fail("gem fm_mmap");
	memcpy(p, backing, len);
	if (fm_ioctl(fd, FM_GEM_EVICT, &ev) < 0)
		bench_fail("gem evict");
	return p;
}

/* Whether the gem device is there (asked in a child: fomap stays unused here). */
static void
gem_probe(const void *arg, double *out)
{
	out[0] = fm_open(FM_GEM_DEV, O_RDWR) >= 0;
}
#endif

static void
run_fill(const void *arg, double *out)
{
	const struct fill *f = arg;
	size_t len = f->npages * PG;
	struct raw raw = {.srcfd = -1, .around = f->around};
	struct fm_object *obj;
	char *p = NULL;
	uint64_t t0;
	int fd;

	switch (f->kind) {
	case PAGER:
		if (fm_object_create(&bpager_ops, len, NULL, &obj) < 0)
			bench_fail("fm_object_create");
		p = bench_fm_map(obj, len);
		fm_object_rele(obj);
		break;
	case GEM:
#if HAVE_GEM
		p = gem_evicted(len);
#endif
		break;
	case RAW_COPY_:
		raw.memfd = fd = bench_memfd(len);
		raw.base = p =
		    bench_mmap(len, PROT_READ | PROT_WRITE, MAP_SHARED, fd);
		raw.len = len;
		raw.src = backing;
		raw.mode = RAW_COPY;
		raw_start(&raw);
		break;
	case KERNEL:
		fd = bench_memfd(len);
		p = bench_mmap(len, PROT_READ | PROT_WRITE, MAP_SHARED, fd);
		break;
	}
	if (p == NULL)
		bench_fail("no such driver");
	if (f->advice >= 0 && fm_madvise(p, len, f->advice) < 0)
		bench_fail("fm_madvise");
	t0 = now_ns();
	if (f->kind == KERNEL)
		memcpy(p, backing, len);
	else
		bench_touch(p, f->npages, 0);
	out[0] = (double)(now_ns() - t0) / (double)f->npages;
	for (size_t i = 0; i < f->npages; i += 333)
		if ((unsigned char)p[i * PG + 7] != (i & 0xff))
			bench_fail("wrong contents");
}

int
main(int argc, char **argv)
{
	size_t npages;
	int gem = 0, n;

	bench_init(argc, argv,
	    "A custom-pager driver: fill from backing storage (row 6)");
	npages = bench.quick ? 8192 : 32768;
	if ((backing = malloc(npages * PG)) == NULL)
		bench_fail("malloc");
	for (size_t i = 0; i < npages; i++)
		memset(backing + i * PG, (int)(i & 0xff), PG);
#if HAVE_GEM
	double probe[BENCH_NOUT];

	gem = bench_child(gem_probe, NULL, probe) == 0 && probe[0] == 1;
#endif
	struct fill f[] = {
	    {.kind = PAGER, .advice = -1},
	    {.kind = PAGER, .advice = MADV_RANDOM},
	    {.kind = RAW_COPY_, .advice = -1, .around = 1},
	    {.kind = RAW_COPY_, .advice = -1, .around = 64},
	    {.kind = KERNEL, .advice = -1},
	    {.kind = GEM, .advice = -1},
	    {.kind = GEM, .advice = MADV_RANDOM},
	};
	struct bench_cfg c[] = {
	    {.name = "bench pager (pgo_fault), default fault-around"},
	    {.name = "bench pager (pgo_fault), MADV_RANDOM"},
	    {.name = "raw UFFDIO_COPY from the buffer, 1 page"},
	    {.name = "raw UFFDIO_COPY from the buffer, 64 pages"},
	    {.name = "kernel: memcpy into a fresh memfd mapping"},
	    {.name = "gem buffer after FM_GEM_EVICT, default fault-around"},
	    {.name = "gem buffer after FM_GEM_EVICT, MADV_RANDOM"},
	};
	n = gem ? 7 : 5;
	for (int i = 0; i < n; i++) {
		f[i].npages = npages;
		c[i].fn = run_fill;
		c[i].arg = &f[i];
	}
	printf("Row 6: first touch (read) of %zu pages filled on fault from "
	       "backing storage; µs per page.%s\n\n",
	    npages,
	    gem ? ""
	        : " The gem driver is not built in: the bench pager only.");
	bench_compare("6", c, n, bench.reps, 4, "µs/page", 1e3);
	bench_ratio("pager_fill_vs_kernel_copy", &c[0], &c[4], 0);
	bench_ratio("pager_fill_vs_raw_uffd64", &c[0], &c[3], 0);
	bench_ratio("pager_fault_vs_raw_uffd", &c[1], &c[2], 0);
	if (gem)
		bench_ratio("gem_fill_vs_kernel_copy", &c[5], &c[4], 0);
	bench_done();
	return 0;
}
