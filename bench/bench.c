/*
 * bench.c: the harness every benchmark links: children, statistics, tables,
 * headline ratios, touching pages and bench devices.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

#define CHILD_TIMEOUT 300 /* seconds: a hung fault path is a failure */
#define MAXHEAD 16

struct bench_opts bench = {.reps = 0, .pin = 0};

static struct {
	char name[48];
	double v, lo, hi;
	char note[96];
} heads[MAXHEAD];
static int nheads;

void
bench_init(int argc, char **argv, const char *title)
{
	int c;

	while ((c = getopt(argc, argv, "qr:o:R:vFC:")) != -1) {
		switch (c) {
		case 'q':
			bench.quick = 1;
			break;
		case 'r':
			bench.reps = atoi(optarg);
			break;
		case 'o':
			bench.outdir = optarg;
			break;
		case 'R':
			bench.only = optarg;
			break;
		case 'v':
			bench.verbose = 1;
			break;
		case 'F':
			bench.pin = -1;
			break;
		case 'C':
			bench.cfg = optarg;
			break;
		default:
			fprintf(stderr,
			    "usage: %s [-q] [-v] [-F] [-r reps] [-o dir] [-R "
			    "rows] [-C cfg]\n",
			    argv[0]);
			exit(2);
		}
	}
	if (bench.reps <= 0)
		bench.reps = bench.quick ? 5 : 9;
	if (bench.reps > BENCH_MAXREP)
		bench.reps = BENCH_MAXREP;
	printf("\n### %s\n\n", title);
	fflush(stdout);
}

int
bench_want(const char *row)
{
	size_t n = strlen(row);

	if (bench.only == NULL)
		return 1;
	for (const char *s = bench.only; *s; s += strcspn(s, ",")) {
		s += *s == ',';
		if (strncmp(s, row, n) == 0 && (s[n] == ',' || s[n] == '\0'))
			return 1;
	}
	return 0;
}

void
bench_fail(const char *what)
{
	fprintf(stderr, "# bench: %s: %s\n", what, strerror(errno));
	_exit(1);
}

/* bench_child on CPU pin, or anywhere when pin is -1. */
static int
child_on(bench_fn *fn, const void *arg, double *out, int pin)
{
	double v[BENCH_NOUT];
	int pfd[2], status;
	size_t got = 0;
	pid_t pid;

	for (int i = 0; i < BENCH_NOUT; i++)
		out[i] = v[i] = NAN;
	fflush(stdout);
	fflush(stderr);
	if (pipe(pfd) < 0 || (pid = fork()) < 0) {
		perror("bench: fork");
		return -1;
	}
	if (pid == 0) {
		close(pfd[0]);
		alarm(CHILD_TIMEOUT);
		if (pin >= 0) {
			cpu_set_t set;

			CPU_ZERO(&set);
			CPU_SET(pin, &set);
			if (sched_setaffinity(0, sizeof set, &set) < 0)
				bench_fail("sched_setaffinity");
		}
		fn(arg, v);
		if (write(pfd[1], v, sizeof v) != (ssize_t)sizeof v)
			_exit(1);
		_exit(0);
	}
	close(pfd[1]);
	while (got < sizeof v) {
		ssize_t k = read(pfd[0], (char *)v + got, sizeof v - got);

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		got += (size_t)k;
	}
	close(pfd[0]);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (got != sizeof v || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "# bench: a measurement failed (%s %d)\n",
		    WIFSIGNALED(status) ? "signal" : "exit",
		    WIFSIGNALED(status) ? WTERMSIG(status)
		                        : WEXITSTATUS(status));
		return -1;
	}
	memcpy(out, v, sizeof v);
	return 0;
}

int
bench_child(bench_fn *fn, const void *arg, double *out)
{
	return child_on(fn, arg, out, bench.pin);
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* The non-NaN values k of c's reps, sorted, into s. => their count */
static int
sorted(const struct bench_cfg *c, int k, double *s)
{
	int m = 0;

	for (int i = 0; i < c->n; i++)
		if (!isnan(c->v[i][k]))
			s[m++] = c->v[i][k];
	qsort(s, (size_t)m, sizeof *s, cmp_double);
	return m;
}

double
bench_median(const struct bench_cfg *c, int k)
{
	double s[BENCH_MAXREP];
	int m = sorted(c, k, s);

	if (m == 0)
		return NAN;
	return m % 2 ? s[m / 2] : (s[m / 2 - 1] + s[m / 2]) / 2;
}

double
bench_min(const struct bench_cfg *c, int k)
{
	double s[BENCH_MAXREP];

	return sorted(c, k, s) ? s[0] : NAN;
}

double
bench_max(const struct bench_cfg *c, int k)
{
	double s[BENCH_MAXREP];
	int m = sorted(c, k, s);

	return m ? s[m - 1] : NAN;
}

void
bench_table(const char *row, struct bench_cfg *c, int n, int k, int ref,
    const char *unit, double scale)
{
	printf("| row | configuration | median %s | min–max | %s%s |\n", unit,
	    ref >= 0 ? "vs " : "", ref >= 0 ? c[ref].name : "");
	printf("|---|---|---:|---:|---:|\n");
	for (int i = 0; i < n; i++) {
		double m = bench_median(&c[i], k);

		if (c[i].n == 0 ||
		    (bench.cfg && strstr(c[i].name, bench.cfg) == NULL))
			continue; /* not run (-C) */
		printf("| %s | %s | %.3g | %.3g–%.3g |", row, c[i].name,
		    m / scale, bench_min(&c[i], k) / scale,
		    bench_max(&c[i], k) / scale);
		if (ref >= 0)
			printf(" %.2f |\n", m / bench_median(&c[ref], k));
		else
			printf("  |\n");
	}
	printf("\n");
	fflush(stdout);
}

void
bench_compare(const char *row, struct bench_cfg *c, int n, int reps, int ref,
    const char *unit, double scale)
{
	double warm[BENCH_NOUT];

	/* One run of each, not counted: page cache, allocator and CPU settle. */
	for (int i = 0; i < n; i++) {
		c[i].n = 0;
		if (!bench.cfg || strstr(c[i].name, bench.cfg))
			(void)child_on(c[i].fn, c[i].arg, warm,
			    c[i].unpinned ? -1 : bench.pin);
	}
	for (int r = 0; r < reps && r < BENCH_MAXREP; r++) {
		/* Rotate the order so no configuration always runs first. */
		for (int j = 0; j < n; j++) {
			struct bench_cfg *x = &c[(j + r) % n];

			if (bench.cfg && strstr(x->name, bench.cfg) == NULL)
				continue;
			(void)child_on(x->fn, x->arg, x->v[r],
			    x->unpinned ? -1 : bench.pin);
			x->n = r + 1;
			if (bench.verbose)
				printf("# rep %d %s: %.4g %.4g %.4g %.4g\n", r,
				    x->name, x->v[r][0], x->v[r][1], x->v[r][2],
				    x->v[r][3]);
		}
	}
	bench_table(row, c, n, 0, ref, unit, scale);
}

static void
add_head(const char *name, double v, double lo, double hi, const char *note)
{
	if (nheads == MAXHEAD)
		return;
	snprintf(heads[nheads].name, sizeof heads[nheads].name, "%s", name);
	snprintf(heads[nheads].note, sizeof heads[nheads].note, "%s", note);
	heads[nheads].v = v;
	heads[nheads].lo = lo;
	heads[nheads].hi = hi;
	nheads++;
}

double
bench_ratio(const char *name, const struct bench_cfg *a,
    const struct bench_cfg *b, int k)
{
	double v = bench_median(a, k) / bench_median(b, k);
	double lo = INFINITY, hi = -INFINITY;
	char note[96];

	for (int i = 0; i < a->n && i < b->n; i++) {
		double x = a->v[i][k] / b->v[i][k];

		if (isnan(x))
			continue;
		lo = x < lo ? x : lo;
		hi = x > hi ? x : hi;
	}
	snprintf(note, sizeof note, "%s / %s", a->name, b->name);
	add_head(name, v, lo, hi, note);
	return v;
}

void
bench_headline(const char *name, double v, const char *note)
{
	add_head(name, v, NAN, NAN, note);
}

void
bench_done(void)
{
	for (int i = 0; i < nheads; i++) {
		printf("# %s: %s", heads[i].name, heads[i].note);
		if (!isnan(heads[i].lo) && isfinite(heads[i].lo))
			printf(" (per-rep %.3f–%.3f)", heads[i].lo,
			    heads[i].hi);
		printf("\n");
	}
	for (int i = 0; i < nheads; i++)
		printf("ratio %s %.3f\n", heads[i].name, heads[i].v);
	fflush(stdout);
}

FILE *
bench_data(const char *name)
{
	char path[512];
	FILE *f;

	if (bench.outdir == NULL)
		return NULL;
	snprintf(path, sizeof path, "%s/%s", bench.outdir, name);
	if ((f = fopen(path, "w")) == NULL)
		perror(path);
	return f;
}

void
bench_touch(char *p, size_t npages, int write)
{
	volatile char *v = p;
	char sum = 0;

	for (size_t i = 0; i < npages; i++) {
		if (write)
			v[i * PG] = 1;
		else
			sum = (char)(sum + v[i * PG]);
	}
	(void)sum;
}

void
bench_touch_idx(char *p, const uint32_t *idx, size_t n, int write)
{
	volatile char *v = p;
	char sum = 0;

	for (size_t i = 0; i < n; i++) {
		if (write)
			v[(size_t)idx[i] * PG] = 1;
		else
			sum = (char)(sum + v[(size_t)idx[i] * PG]);
	}
	(void)sum;
}

uint32_t *
bench_random_pages(size_t npages, size_t n, uint64_t seed)
{
	uint32_t *v = malloc(npages * sizeof *v);
	uint64_t x = seed | 1;

	if (v == NULL)
		bench_fail("malloc");
	for (size_t i = 0; i < npages; i++)
		v[i] = (uint32_t)i;
	for (size_t i = 0; i < n && i < npages; i++) {
		x ^= x >> 12, x ^= x << 25, x ^= x >> 27; /* xorshift64* */
		size_t j =
		    i + (size_t)((x * 0x2545F4914F6CDD1DULL) % (npages - i));
		uint32_t t = v[i];

		v[i] = v[j];
		v[j] = t;
	}
	return v;
}

long
bench_ctxsw(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_nvcsw + ru.ru_nivcsw;
}

void
bench_engine_threads(int n)
{
	char s[16];

	snprintf(s, sizeof s, "%d", n);
	setenv("FOMAP_ENGINE_THREADS", s, 1);
}

int
bench_memfd(size_t len)
{
	int fd = memfd_create("bench", MFD_CLOEXEC);

	if (fd < 0 || ftruncate(fd, (off_t)len) < 0)
		bench_fail("memfd");
	return fd;
}

void *
bench_mmap(size_t len, int prot, int flags, int fd)
{
	void *p = mmap(NULL, len, prot, flags, fd, 0);

	if (p == MAP_FAILED)
		bench_fail("mmap");
	return p;
}

/*
 * The bench device: d_mmap_single hands out the object set by bench_fm_map
 * or bench_fm_open, at the offset asked for.
 */
static struct fm_object *map_obj;

static int
benchdev_mmap(struct fm_dev *dev, struct fm_mmap_req *req)
{
	if (map_obj == NULL)
		return -ENODEV;
	fm_object_ref(map_obj);
	req->obj = map_obj;
	req->maxprot = PROT_READ | PROT_WRITE;
	return 0;
}

static const struct fm_cdevsw benchdev_cdevsw = {
    .d_open = fm_nullopen,
    .d_close = fm_nullclose,
    .d_read = fm_noread,
    .d_write = fm_nowrite,
    .d_ioctl = fm_noioctl,
    .d_mmap_single = benchdev_mmap,
};

int
bench_fm_open(struct fm_object *obj)
{
	static int registered;
	int fd, r;

	if (!registered) {
		if ((r = fm_dev_register("bench", &benchdev_cdevsw, NULL)) <
		    0) {
			errno = -r;
			bench_fail("fm_dev_register");
		}
		registered = 1;
	}
	map_obj = obj;
	if ((fd = fm_open(FM_DEVPREFIX "bench", O_RDWR)) < 0)
		bench_fail("fm_open bench");
	return fd;
}

void *
bench_fm_map(struct fm_object *obj, size_t len)
{
	int fd = bench_fm_open(obj);
	void *p;

	p = fm_mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		bench_fail("fm_mmap bench");
	fm_close(fd);
	map_obj = NULL;
	return p;
}

void *
bench_fm_zero(size_t len)
{
	int fd = fm_open(FM_DEVPREFIX "zero", O_RDWR);
	void *p;

	if (fd < 0)
		bench_fail("fm_open zero");
	p = fm_mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		bench_fail("fm_mmap zero");
	fm_close(fd);
	return p;
}
