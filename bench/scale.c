/*
 * scale.c: scaling with faulting threads and engine threads (row 7 of
 * docs/benchmarks.md).
 *
 * One shared mapping; T faulting threads (1 or 2) each write their own half
 * (or all of it, T = 1) page by page, started together. fomap runs with E
 * engine threads (1 or 2, FOMAP_ENGINE_THREADS). The kernel's own first
 * touch and a raw userfaultfd handler (one thread) give the machine's
 * ceiling. Not pinned: this row is about using both CPUs.
 * Figures: out[0] ns per page of wall time (all threads), out[1] faults.
 * Throughput is its inverse; speedup = throughput(2 faulters) / (1 faulter).
 */
#include <pthread.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bench.h"

enum kind { FOMAP, RAW_CONT, KMEMFD };

struct scale {
	enum kind kind;
	size_t npages;
	int faulters; /* T */
	int engine; /* E (fomap) */
	int advice; /* MADV_RANDOM (1 page a fault) or -1 (the default) */
	int split; /* 1: each faulter has its own mapping */
};

struct worker {
	char *p;
	size_t npages;
	pthread_barrier_t *go;
};

static void *
worker_main(void *arg)
{
	struct worker *w = arg;

	pthread_barrier_wait(w->go);
	bench_touch(w->p, w->npages, 1);
	return NULL;
}

static char *
map_one(const struct scale *s, size_t len, struct raw *raw)
{
	char *p = NULL;
	int fd;

	switch (s->kind) {
	case FOMAP:
		p = bench_fm_zero(len);
		if (s->advice >= 0 && fm_madvise(p, len, s->advice) < 0)
			bench_fail("fm_madvise");
		break;
	case RAW_CONT:
		*raw = (struct raw){.srcfd = -1,
		    .around = 1,
		    .mode = RAW_CONTINUE};
		raw->memfd = fd = bench_memfd(len);
		raw->base = p =
		    bench_mmap(len, PROT_READ | PROT_WRITE, MAP_SHARED, fd);
		raw->len = len;
		raw_start(raw);
		break;
	case KMEMFD:
		fd = bench_memfd(len);
		p = bench_mmap(len, PROT_READ | PROT_WRITE, MAP_SHARED, fd);
		break;
	}
	return p;
}

static void
run_scale(const void *arg, double *out)
{
	const struct scale *s = arg;
	size_t len = s->npages * PG, per = s->npages / (size_t)s->faulters;
	struct worker w[2];
	struct raw raw[2];
	pthread_t t[2];
	pthread_barrier_t go;
	struct fm_stats s0, s1;
	char *p = NULL;
	uint64_t t0;

	if (s->kind == FOMAP)
		bench_engine_threads(s->engine);
	if (!s->split)
		p = map_one(s, len, &raw[0]);
	pthread_barrier_init(&go, NULL, (unsigned)s->faulters + 1);
	for (int i = 0; i < s->faulters; i++) {
		w[i] = (struct worker){.npages = per,
		    .go = &go,
		    .p = s->split ? map_one(s, per * PG, &raw[i])
		                  : p + (size_t)i * per * PG};
		if (pthread_create(&t[i], NULL, worker_main, &w[i]) != 0)
			bench_fail("pthread_create");
	}
	fm_engine_stats(&s0);
	usleep(1000);
	t0 = now_ns();
	pthread_barrier_wait(&go);
	for (int i = 0; i < s->faulters; i++)
		pthread_join(t[i], NULL);
	out[0] = (double)(now_ns() - t0) / (double)(per * (size_t)s->faulters);
	fm_engine_stats(&s1);
	out[1] = (double)(s1.faults - s0.faults);
}

int
main(int argc, char **argv)
{
	size_t npages;
	char names[16][80];
	struct scale sc[16];
	struct bench_cfg c[16];
	int n = 0;

	bench_init(argc, argv,
	    "Scaling: faulting threads and engine threads (row 7)");
	bench.pin = -1;
	npages = bench.quick ? 8192 : 65536;
	for (int adv = 0; adv < 2; adv++) {
		int advice = adv ? -1 : MADV_RANDOM;

		for (int e = 1; e <= 2; e++)
			for (int f = 1; f <= 2; f++) {
				sc[n] = (struct scale){.kind = FOMAP,
				    .npages = npages,
				    .faulters = f,
				    .engine = e,
				    .advice = advice};
				snprintf(names[n], sizeof names[n],
				    "fomap %s, %d faulter%s, %d engine "
				    "thread%s",
				    adv ? "default fault-around"
				        : "1 page/fault",
				    f, f > 1 ? "s" : "", e, e > 1 ? "s" : "");
				n++;
			}
	}
	for (int f = 1; f <= 2; f++) {
		sc[n] = (struct scale){.kind = FOMAP,
		    .npages = npages,
		    .faulters = f,
		    .engine = 2,
		    .advice = -1,
		    .split = 1};
		snprintf(names[n++], sizeof names[0],
		    "fomap default fault-around, %d faulter%s, own mappings", f,
		    f > 1 ? "s" : "");
	}
	for (int f = 1; f <= 2; f++) {
		sc[n] = (struct scale){.kind = RAW_CONT,
		    .npages = npages,
		    .faulters = f,
		    .split = 1};
		snprintf(names[n++], sizeof names[0],
		    "raw uffd CONTINUE (1 handler per mapping), %d faulter%s",
		    f, f > 1 ? "s" : "");
	}
	for (int f = 1; f <= 2; f++) {
		sc[n] = (struct scale){.kind = KMEMFD,
		    .npages = npages,
		    .faulters = f};
		snprintf(names[n++], sizeof names[0],
		    "kernel memfd first touch, %d thread%s", f,
		    f > 1 ? "s" : "");
	}
	for (int i = 0; i < n; i++)
		c[i] = (struct bench_cfg){.name = names[i],
		    .fn = run_scale,
		    .arg = &sc[i]};
	printf(
	    "Row 7: %zu pages written, split between the faulting threads; µs "
	    "of "
	    "wall time per page (throughput is its inverse). Not pinned.\n\n",
	    npages);
	bench_compare("7", c, n, bench.reps, -1, "µs/page", 1e3);
	printf("| configuration | speedup, 2 faulters / 1 |\n|---|---:|\n");
	for (int i = 0; i + 1 < n; i += 2)
		printf("| %s | %.2f |\n", names[i + 1],
		    bench_median(&c[i], 0) / bench_median(&c[i + 1], 0));
	printf("\n");
	/* Headline: the defaults (2 engine threads, adaptive fault-around). */
	bench_ratio("two_thread_speedup", &c[6], &c[7], 0);
	bench_ratio("two_thread_speedup_1page", &c[2], &c[3], 0);
	bench_ratio("kernel_two_thread_speedup", &c[12], &c[13], 0);
	bench_done();
	return 0;
}
