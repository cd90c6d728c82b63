/*
 * bench.h: what every fomap benchmark shares: the clock, statistics, running
 * one measurement in a fresh child process, touching pages, result tables and
 * headline ratios, bench devices, and the reference userfaultfd handler.
 *
 * A benchmark program runs each configuration in its own child (process-wide
 * state such as the engine threads must start fresh), alternating fomap and
 * its references rep after rep, and prints a markdown table:
 *   | row | configuration | median | min–max | vs reference |
 * then its headline ratios as lines "ratio <name> <value>". Options:
 *   -q       quick (fewer pages and reps)
 *   -r N     repetitions of every figure
 *   -o DIR   where to write data files for plots
 *   -R ROWS  run only these rows (comma-separated tags, e.g. "1,2s")
 *   -v       print every rep's figures
 *   -F       free placement: do not pin measurements to one CPU
 *   -C TEXT  only the configurations whose name contains TEXT (to profile
 *            one: perf record -g -- bench-fault -R 1 -r 1 -C "fomap zero")
 *
 * Measurements run pinned to one CPU (all threads of the child, engine and
 * handler threads too) unless the row is about placement or scaling: in
 * this VM a wake-up of the other, idle vCPU costs tens of µs and the
 * scheduler's choice of CPU would decide each run (see docs/benchmarks.md).
 */
#ifndef FOMAP_BENCH_H
#define FOMAP_BENCH_H

#include <stddef.h>
#include <stdint.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>

#include <fomap/driver.h>
#include <fomap/fomap.h>

#define PG FM_PAGE_SIZE
#define BENCH_NOUT 8 /* values a measurement reports */
#define BENCH_MAXREP 32

struct bench_opts {
	int quick;
	int reps;
	const char *outdir; /* NULL: no data files */
	const char *only; /* -R: the rows to run ("1,2s"), NULL: all */
	int verbose; /* -v: print every rep */
	int pin; /* children run on this CPU only; -1 (-F): anywhere */
	const char *cfg; /* -C: only configurations whose name has this */
};

extern struct bench_opts bench;

/* Parse -q, -r N, -o DIR, -R rows; print the program's title. */
void bench_init(int argc, char **argv, const char *title);
/* Whether row (a tag such as "2s") was asked for (-R), or no -R was given. */
int bench_want(const char *row);

static inline uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/*
 * A measurement: runs in a child, fills out[0..BENCH_NOUT) (out[0] is the
 * figure compared, in ns per page or per fault unless said otherwise).
 */
typedef void bench_fn(const void *arg, double *out);

/*
 * bench_child: run fn(arg) in a fresh child process with a timeout, pinned
 * to CPU bench.pin unless it is -1.
 * => 0 with out filled; -1 (out all NaN) when the child failed or hung
 */
int bench_child(bench_fn *fn, const void *arg, double *out);

/* A configuration measured rep after rep, alternating with the others. */
struct bench_cfg {
	const char *name;
	bench_fn *fn;
	const void *arg;
	int unpinned; /* run anywhere, even when the others are pinned */
	double v[BENCH_MAXREP][BENCH_NOUT]; /* per rep */
	int n;
};

/*
 * bench_compare: run every configuration once untimed (warm-up), then reps
 * of each, alternating (rep 1 of each, then rep 2 of each, ...; the order
 * rotates from rep to rep), then print a table of out[0] in unit
 * (divided by scale) with each row's ratio to c[ref] (-1: no ratio column).
 */
void bench_compare(const char *row, struct bench_cfg *c, int n, int reps,
    int ref, const char *unit, double scale);
/* Print the table of bench_compare again for value k of each rep. */
void bench_table(const char *row, struct bench_cfg *c, int n, int k, int ref,
    const char *unit, double scale);

/* Median, min and max of value k over the reps of c. */
double bench_median(const struct bench_cfg *c, int k);
double bench_min(const struct bench_cfg *c, int k);
double bench_max(const struct bench_cfg *c, int k);

/*
 * bench_ratio: the headline ratio of value k, median(a) / median(b), with
 * the min–max of the per-rep ratios; printed as "ratio <name> <value>" at
 * the end of the program. Returns the ratio.
 */
double bench_ratio(const char *name, const struct bench_cfg *a,
    const struct bench_cfg *b, int k);
/* A headline that is a value, not a ratio. */
void bench_headline(const char *name, double v, const char *note);
/* Print the collected headline lines (call last). */
void bench_done(void);

/* Open DIR/name for writing a data file. => NULL when no -o */
FILE *bench_data(const char *name);

/* Touch pages: a write (or read) of one byte of each. */
void bench_touch(char *p, size_t npages, int write);
/* Touch pages idx[0..n) in that order. */
void bench_touch_idx(char *p, const uint32_t *idx, size_t n, int write);
/* A random order of n distinct pages out of npages (seeded, repeatable). */
uint32_t *bench_random_pages(size_t npages, size_t n, uint64_t seed);

/* Context switches of the whole process so far (getrusage). */
long bench_ctxsw(void);
/* Set FOMAP_ENGINE_THREADS for this (child) process before any fomap call. */
void bench_engine_threads(int n);

/* A memfd of len bytes. => the fd; exits on failure */
int bench_memfd(size_t len);
/* mmap or die. */
void *bench_mmap(size_t len, int prot, int flags, int fd);
/* Exit the child with a message: the measurement is reported as failed. */
void bench_fail(const char *what) __attribute__((noreturn));

/*
 * bench_fm_map: map obj shared read-write through fomap (a bench device
 * whose d_mmap_single returns obj); fomap takes its own reference.
 * => the address; exits on failure
 */
void *bench_fm_map(struct fm_object *obj, size_t len);
/*
 * bench_fm_open: a descriptor of the bench device: fm_mmap of it maps obj at
 * the offset given, until the next bench_fm_open or bench_fm_map (one
 * object at a time). fm_close it when done.
 * => the descriptor; exits on failure
 */
int bench_fm_open(struct fm_object *obj);
/* Map the built-in zero device shared: an anonymous object of the engine. */
void *bench_fm_zero(size_t len);

/* ------------------------------------------------------------------------
 * The reference: a minimal hand-written userfaultfd handler, one thread doing
 * blocking reads, for a memfd MAP_SHARED mapping. Per fault it installs
 * `around` pages from the faulting one (clipped to the mapping). With more
 * threads, all block in read(2) (the kernel wakes every one of them for
 * each fault), or (excl) each waits in its own epoll set holding the uffd
 * with EPOLLEXCLUSIVE, so a fault wakes one thread.
 */
enum raw_mode {
	RAW_COPY, /* MISSING: fill a buffer, UFFDIO_COPY */
	RAW_CONTINUE, /* MISSING: fill the memfd, UFFDIO_CONTINUE */
	RAW_WP, /* WP: mark the page dirty, UFFDIO_WRITEPROTECT off */
	RAW_ZERO, /* MISSING: UFFDIO_ZEROPAGE (zeros only) */
};

struct raw {
	enum raw_mode mode;
	char *base; /* the mapping */
	size_t len;
	int memfd; /* behind the mapping */
	int srcfd; /* fill by pread from here; -1: zeros */
	const char *src; /* RAW_COPY: copy from src + offset (no fill) */
	int fill_write; /* RAW_CONTINUE, zeros: pwrite them, not fallocate */
	unsigned around; /* pages per fault */
	int nthreads; /* handler threads (0: 1) */
	int excl; /* each waits in its own epoll, EPOLLEXCLUSIVE */
	int uffd;
	unsigned char *dirty; /* RAW_WP: one byte a page */
	atomic_ulong faults;
};

/*
 * raw_start: register [base, base+len) and start the handler thread.
 * For RAW_WP the mapping must be populated; raw_start write-protects it.
 * => 0; exits on failure
 */
int raw_start(struct raw *r);
/*
 * raw_serve: start the handler threads on r->uffd as it is: a userfaultfd
 * that another process created and registered over [base, base+len) of its
 * own address space (MISSING | MINOR for RAW_CONTINUE), received with its
 * memfd (r->memfd). The handler answers its faults from here.
 * => 0; exits on failure
 */
int raw_serve(struct raw *r);

#endif
