/*
 * wp.c: a write to a write-protected page that the driver allows: dirty
 * tracking (row 4 of docs/benchmarks.md).
 *
 * Every page is resident and mapped write-protected before the clock
 * starts; then one byte of each page is written, in turn, so every write
 * is one write-protect fault that is allowed:
 *   fomap   a pager with pgo_put (so clean pages are mapped write-protected)
 *           and a pgo_write that allows and counts;
 *   raw     a raw userfaultfd handler: mark dirty, UFFDIO_WRITEPROTECT off;
 *   signal  mprotect(PROT_READ) + a SIGSEGV handler that marks the page
 *           dirty and mprotects it read-write.
 * Figures: ns per write fault; out[1] write faults seen.
 */
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bench.h"

enum kind { FOMAP, RAW, SIGNAL };

struct wp {
	enum kind kind;
	size_t npages;
	int engine; /* fomap engine threads; 0: the default */
};

/* The dirty-tracking pager: zero-fill, write-back nowhere, allow writes. */
static int
track_put(struct fm_object *obj, uint64_t pgidx, unsigned npages, int flags)
{
	return 0;
}

static int
track_write(struct fm_object *obj, uint64_t pgidx)
{
	return 0; /* a driver would note pgidx dirty; the engine already has */
}

static const struct fm_pagerops track_pagerops = {
    .pgo_put = track_put,
    .pgo_write = track_write,
};

/* The signal handler's state. */
static char *sig_base;
static unsigned char *sig_dirty;
static unsigned long sig_faults;

static void
on_segv(int sig, siginfo_t *si, void *uc)
{
	uintptr_t va = (uintptr_t)si->si_addr & ~(uintptr_t)(PG - 1);

	sig_dirty[(va - (uintptr_t)sig_base) / PG] = 1;
	sig_faults++;
	if (mprotect((void *)va, PG, PROT_READ | PROT_WRITE) < 0)
		_exit(3);
}

static void
run_wp(const void *arg, double *out)
{
	const struct wp *w = arg;
	size_t len = w->npages * PG;
	struct raw raw = {.srcfd = -1};
	struct fm_stats s0, s1;
	struct fm_object *obj;
	char *p = NULL;
	uint64_t t0;
	int fd;

	switch (w->kind) {
	case FOMAP:
		if (w->engine > 0)
			bench_engine_threads(w->engine);
		if (fm_object_create(&track_pagerops, len, NULL, &obj) < 0)
			bench_fail("fm_object_create");
		p = bench_fm_map(obj, len);
		fm_object_rele(obj);
		/* Resident and mapped write-protected: clean pages of a pgo_put pager. */
		if (fm_madvise(p, len, MADV_WILLNEED) < 0)
			bench_fail("fm_madvise WILLNEED");
		break;
	case RAW:
		raw.memfd = fd = bench_memfd(len);
		raw.base = p =
		    bench_mmap(len, PROT_READ | PROT_WRITE, MAP_SHARED, fd);
		raw.len = len;
		raw.mode = RAW_WP;
		if (madvise(p, len, MADV_POPULATE_WRITE) < 0)
			bench_fail("MADV_POPULATE_WRITE");
		raw_start(&raw);
		break;
	case SIGNAL: {
		struct sigaction sa = {.sa_sigaction = on_segv,
		    .sa_flags = SA_SIGINFO};

		fd = bench_memfd(len);
		sig_base = p =
		    bench_mmap(len, PROT_READ | PROT_WRITE, MAP_SHARED, fd);
		sig_dirty = calloc(w->npages, 1);
		if (sig_dirty == NULL ||
		    madvise(p, len, MADV_POPULATE_WRITE) < 0 ||
		    mprotect(p, len, PROT_READ) < 0)
			bench_fail("set-up");
		sigemptyset(&sa.sa_mask);
		sigaction(SIGSEGV, &sa, NULL);
		break;
	}
	}
	fm_engine_stats(&s0);
	t0 = now_ns();
	bench_touch(p, w->npages, 1);
	out[0] = (double)(now_ns() - t0) / (double)w->npages;
	fm_engine_stats(&s1);
	out[1] = w->kind == FOMAP ? (double)(s1.wp - s0.wp)
	    : w->kind == RAW      ? (double)raw.faults
	                          : (double)sig_faults;
}

int
main(int argc, char **argv)
{
	size_t npages = 0;

	bench_init(argc, argv, "Write-protect faults: dirty tracking (row 4)");
	npages = bench.quick ? 4096 : 32768;
	struct wp w[] = {
	    {.kind = FOMAP, .npages = npages},
	    {.kind = RAW, .npages = npages},
	    {.kind = SIGNAL, .npages = npages},
	    {.kind = FOMAP, .npages = npages, .engine = 1},
	};
	struct bench_cfg c[] = {
	    {.name = "fomap, pgo_write allows", .fn = run_wp, .arg = &w[0]},
	    {.name = "raw uffd UFFDIO_WRITEPROTECT", .fn = run_wp, .arg = &w[1]},
	    {.name = "mprotect + SIGSEGV handler", .fn = run_wp, .arg = &w[2]},
	    {.name = "fomap, 1 engine thread", .fn = run_wp, .arg = &w[3]},
	};

	printf("Row 4: %zu write-protected pages written in turn; µs per write "
	       "fault.\n\n",
	    npages);
	bench_compare("4", c, 4, bench.reps, 1, "µs/fault", 1e3);
	printf("Write faults per run: fomap %.0f, raw %.0f, signal %.0f.\n\n",
	    bench_median(&c[0], 1), bench_median(&c[1], 1),
	    bench_median(&c[2], 1));
	bench_ratio("wp_fault_vs_raw_uffd_wp", &c[0], &c[1], 0);
	bench_ratio("wp_fault_vs_mprotect", &c[0], &c[2], 0);
	bench_done();
	return 0;
}
