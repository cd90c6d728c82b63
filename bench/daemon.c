/*
 * daemon.c: devices as files through fomapd (rows 11 and 12 of
 * docs/benchmarks.md).
 * The program starts a fomapd of its own (BUILD/fomapd, needs root and
 * FUSE passthrough; otherwise the row says why it is skipped).
 *   touch  a program's first touch of a passthrough mapping of zero (the
 *          open's own object) vs of a memfd it mapped itself: write one
 *          byte a page, ns per page. Like for like: both are the kernel's
 *          shmem faults; fomapd is not involved once the open is done.
 *   ioctl  one size-encoded ioctl through FUSE to fomapd and back (gem's
 *          FM_GEM_STATS: 24 bytes out) vs a minimal request and reply of
 *          the same size over a UNIX socket to another process, which this
 *          program starts as it starts fomapd: like for like, a round trip
 *          to a server process, both servers on the measuring CPU (bench
 *          -F: anywhere).
 *   open   open + close of zero (with its passthrough backing) and of null
 *          (no backing) through fomapd, vs of /dev/null: µs per pair.
 *
 * Row 12, the preload: a client process (BUILD/bench/xclient, which links
 * no fomap library) run with LD_PRELOAD=BUILD/libfomap-preload.so; it
 * times only its own loop.
 *   xfault one-page faults of a gem buffer (zero-fill, a pgo_fault of the
 *          driver: the engine serves it) mapped by the preloaded client,
 *          MADV_RANDOM (1 page a fault; the library hands the advice to
 *          fomapd), served by fomapd's engine through the client's own
 *          userfaultfd, vs the same client touching a memfd MAP_SHARED
 *          mapping registered MISSING | MINOR with its own userfaultfd,
 *          which it sent (with the memfd) over a UNIX socket to a server
 *          process (this program's measuring child) that answers each
 *          fault with fallocate of the page + UFFDIO_CONTINUE (bench/raw.c,
 *          raw_serve): like for like, the same pages of the same kind of
 *          memory installed the same way, by another process. Pinned: the
 *          client, fomapd and the raw server on the measuring CPU; again
 *          unpinned, with a second fomapd started unpinned.
 *   seq    sequential first touch of a large gem buffer, default
 *          fault-around: the preloaded client through fomapd vs this
 *          program's measuring child mapping the same driver's buffer
 *          embedded (fm_mmap of the library's gem device).
 *   cost   what the library costs a program that never touches fomap:
 *          open + read + close of an ordinary 4 KiB file, and mmap +
 *          munmap of it, with LD_PRELOAD vs without (the same client).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fomap/gem.h>

#include "bench.h"

static char mnt[64], mnt2[64]; /* fomapd pinned; unpinned (row 12) */
static pid_t fomapd, fomapd2 = -1, echo;
static int echo_fd = -1; /* the socket to the echo server */
static char build[PATH_MAX + 8]; /* BUILD: fomapd, the preload, xclient */

/* A server process runs on the measuring CPU, as its client does. */
static void
pin_here(void)
{
	cpu_set_t set;

	if (bench.pin < 0)
		return;
	CPU_ZERO(&set);
	CPU_SET(bench.pin, &set);
	(void)sched_setaffinity(0, sizeof set, &set);
}

/*
 * Start BUILD/fomapd on a fresh directory m (64 bytes), on the measuring
 * CPU when pinned. => its pid, or -1 (why printed)
 */
static pid_t
fomapd_start(char *m, int pinned)
{
	char exe[PATH_MAX + 32], status[128];
	pid_t pid;

	snprintf(exe, sizeof exe, "%s/fomapd", build);
	snprintf(m, 64, "/tmp/fomap-bench-XXXXXX");
	if (mkdtemp(m) == NULL)
		bench_fail("mkdtemp");
	if ((pid = fork()) == 0) {
		int null = open("/dev/null", O_WRONLY);

		if (pinned)
			pin_here();
		dup2(null, 2);
		execl(exe, "fomapd", "--mount", m, (char *)NULL);
		_exit(127);
	}
	snprintf(status, sizeof status, "%s/.status", m);
	for (int i = 0; i < 500 && access(status, R_OK) < 0; i++)
		usleep(10000);
	if (access(status, R_OK) < 0) {
		printf("Rows 11-12 skipped: fomapd did not start (%s).\n", exe);
		kill(pid, SIGTERM);
		waitpid(pid, NULL, 0);
		rmdir(m);
		return -1;
	}
	return pid;
}

/* Start the pinned fomapd of rows 11 and 12. => 0, or -1 (why printed) */
static int
daemon_start(void)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);

	if (geteuid() != 0 || access("/dev/fuse", R_OK | W_OK) < 0) {
		printf(
		    "Rows 11-12 skipped: fomapd needs root and /dev/fuse.\n");
		return -1;
	}
	if (n <= 0)
		bench_fail("readlink");
	self[n] = 0;
	*strrchr(self, '/') = 0; /* BUILD/bench */
	snprintf(build, sizeof build, "%s/..", self);
	return (fomapd = fomapd_start(mnt, 1)) < 0 ? -1 : 0;
}

static void
daemon_stop(void)
{
	kill(fomapd, SIGTERM);
	waitpid(fomapd, NULL, 0);
	rmdir(mnt);
	if (fomapd2 > 0) {
		kill(fomapd2, SIGTERM);
		waitpid(fomapd2, NULL, 0);
		rmdir(mnt2);
	}
	if (echo_fd >= 0) {
		close(echo_fd);
		waitpid(echo, NULL, 0);
	}
}

static const char *
dev(const char *name)
{
	static char path[128];

	snprintf(path, sizeof path, "%s/%s", mnt, name);
	return path;
}

#define TOUCH_PAGES 8192

/* arg: 1 passthrough of zero through fomapd, 0 a memfd of its own. */
static void
run_touch(const void *arg, double *out)
{
	size_t len = (size_t)TOUCH_PAGES * PG;
	int fd =
	    *(const int *)arg ? open(dev("zero"), O_RDWR) : bench_memfd(len);
	char *p;
	uint64_t t0;

	if (fd < 0)
		bench_fail("open zero");
	p = bench_mmap(len, PROT_READ | PROT_WRITE, MAP_SHARED, fd);
	t0 = now_ns();
	bench_touch(p, TOUCH_PAGES, 1);
	out[0] = (double)(now_ns() - t0) / TOUCH_PAGES;
	munmap(p, len);
	close(fd);
}

#define CALLS 2000

/* The echo server: a process that answers each request with it. */
static void
echo_start(void)
{
	struct fm_gem_stats st;
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0 ||
	    (echo = fork()) < 0)
		bench_fail("socketpair");
	if (echo == 0) {
		pin_here();
		close(sv[0]);
		while (read(sv[1], &st, sizeof st) == (ssize_t)sizeof st)
			if (write(sv[1], &st, sizeof st) != (ssize_t)sizeof st)
				break;
		_exit(0);
	}
	close(sv[1]);
	echo_fd = sv[0];
}

/* arg: 1 an ioctl through fomapd, 0 a request and reply over a socket. */
static void
run_ioctl(const void *arg, double *out)
{
	struct fm_gem_stats st = {0};
	int fd = -1;
	uint64_t t0;

	if (*(const int *)arg && (fd = open(dev("gem"), O_RDWR)) < 0)
		bench_fail("open gem");
	t0 = now_ns();
	for (int i = 0; i < CALLS; i++) {
		if (fd >= 0) {
			if (ioctl(fd, FM_GEM_STATS, &st) < 0)
				bench_fail("ioctl");
		} else if (write(echo_fd, &st, sizeof st) != sizeof st ||
		    read(echo_fd, &st, sizeof st) != sizeof st) {
			bench_fail("socket");
		}
	}
	out[0] = (double)(now_ns() - t0) / CALLS;
	if (fd >= 0)
		close(fd);
}

#define OPENS 500

static void
run_open(const void *arg, double *out)
{
	const char *path = arg;
	uint64_t t0 = now_ns();

	for (int i = 0; i < OPENS; i++) {
		int fd = open(path, O_RDWR);

		if (fd < 0)
			bench_fail(path);
		close(fd);
	}
	out[0] = (double)(now_ns() - t0) / OPENS;
}

static void
row11(void)
{
	static const int one = 1, zero = 0;
	char zpath[128], npath[128];

	echo_start();
	snprintf(zpath, sizeof zpath, "%s", dev("zero"));
	snprintf(npath, sizeof npath, "%s", dev("null"));
	struct bench_cfg t[] = {
	    {.name = "first touch: passthrough of fomapd's zero",
	        .fn = run_touch,
	        .arg = &one},
	    {.name = "first touch: a memfd of the program's own",
	        .fn = run_touch,
	        .arg = &zero},
	};
	struct bench_cfg io[] = {
	    {.name = "ioctl through fomapd (FM_GEM_STATS)",
	        .fn = run_ioctl,
	        .arg = &one},
	    {.name = "request + reply over a UNIX socket",
	        .fn = run_ioctl,
	        .arg = &zero},
	};
	struct bench_cfg op[] = {
	    {.name = "open + close: fomapd zero (passthrough)",
	        .fn = run_open,
	        .arg = zpath},
	    {.name = "open + close: fomapd null", .fn = run_open, .arg = npath},
	    {.name = "open + close: /dev/null",
	        .fn = run_open,
	        .arg = "/dev/null"},
	};

	printf("Row 11: a program's first touch of a passthrough mapping, %d "
	       "pages (ns per page)\n\n",
	    TOUCH_PAGES);
	bench_compare("11", t, 2, bench.reps, 1, "ns/page", 1);
	printf("\nRow 11: one ioctl round trip (µs)\n\n");
	bench_compare("11", io, 2, bench.reps, 1, "µs", 1e3);
	printf("\nRow 11: open + close (µs)\n\n");
	bench_compare("11", op, 3, bench.reps, 2, "µs", 1e3);
	bench_ratio("passthrough_touch_vs_memfd", &t[0], &t[1], 0);
	bench_ratio("daemon_ioctl_vs_socket", &io[0], &io[1], 0);
	bench_ratio("daemon_open_close_vs_dev_null", &op[0], &op[2], 0);
}

/* ---------------------------------------------------------------------
 * Row 12: the preload. */

/* A run of the client process, xclient. */
struct xrun {
	const char *mode; /* "gem", "raw", "orc", "mmap" */
	const char *file; /* gem: the device file; orc, mmap: the file */
	size_t n; /* pages, or iterations */
	int random; /* gem: MADV_RANDOM */
	int preload; /* run it with LD_PRELOAD=BUILD/libfomap-preload.so */
};

static struct raw xraw; /* the raw server's: lives until its child exits */

/* The server of a raw run: receive the client's uffd and memfd, serve. */
static void
raw_server(int sock)
{
	char cbuf[CMSG_SPACE(2 * sizeof(int))];
	uint64_t range[2];
	struct iovec iov = {.iov_base = range, .iov_len = sizeof range};
	struct msghdr m = {.msg_iov = &iov,
	    .msg_iovlen = 1,
	    .msg_control = cbuf,
	    .msg_controllen = sizeof cbuf};
	struct cmsghdr *cm;
	int fds[2];

	if (recvmsg(sock, &m, MSG_CMSG_CLOEXEC) != (ssize_t)sizeof range ||
	    (cm = CMSG_FIRSTHDR(&m)) == NULL || cm->cmsg_type != SCM_RIGHTS ||
	    cm->cmsg_len != CMSG_LEN(sizeof fds))
		bench_fail("raw server: recvmsg");
	memcpy(fds, CMSG_DATA(cm), sizeof fds);
	xraw = (struct raw){.mode = RAW_CONTINUE,
	    .base = (char *)(uintptr_t)range[0],
	    .len = range[1],
	    .uffd = fds[0],
	    .memfd = fds[1],
	    .srcfd = -1,
	    .around = 1};
	raw_serve(&xraw);
	if (write(sock, "", 1) != 1)
		bench_fail("raw server: ack");
}

/* Run xclient as x says; out[0] its figure (ns), out[1] what it counted. */
static void
run_x(const void *arg, double *out)
{
	const struct xrun *x = arg;
	char exe[PATH_MAX + 32], pre[PATH_MAX + 32], n[32], a4[32], res[128];
	int pfd[2], sv[2] = {-1, -1}, status;
	size_t got = 0;
	ssize_t k;
	pid_t pid;

	snprintf(exe, sizeof exe, "%s/bench/xclient", build);
	snprintf(pre, sizeof pre, "%s/libfomap-preload.so", build);
	snprintf(n, sizeof n, "%zu", x->n);
	if (pipe2(pfd, O_CLOEXEC) < 0)
		bench_fail("pipe");
	if (x->mode[0] == 'r' && socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		bench_fail("socketpair");
	fflush(stdout);
	if ((pid = fork()) < 0)
		bench_fail("fork");
	if (pid == 0) {
		dup2(pfd[1], 1);
		if (x->preload)
			setenv("LD_PRELOAD", pre, 1);
		else
			unsetenv("LD_PRELOAD");
		if (x->mode[0] == 'r') {
			snprintf(a4, sizeof a4, "%d", sv[1]);
			execl(exe, "xclient", "raw", a4, n, (char *)NULL);
		} else {
			snprintf(a4, sizeof a4, "%d", x->random);
			execl(exe, "xclient", x->mode, x->file, n,
			    x->mode[0] == 'g' ? a4 : (char *)NULL,
			    (char *)NULL);
		}
		_exit(127);
	}
	close(pfd[1]);
	if (sv[1] >= 0) {
		close(sv[1]);
		raw_server(sv[0]);
	}
	while (got < sizeof res - 1 &&
	    ((k = read(pfd[0], res + got, sizeof res - 1 - got)) > 0 ||
	        (k < 0 && errno == EINTR)))
		got += k > 0 ? (size_t)k : 0;
	res[got] = 0;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 ||
	    sscanf(res, "%lf %lf", &out[0], &out[1]) != 2)
		bench_fail("xclient");
	if (sv[0] >= 0) /* the faults the server answered */
		out[1] = (double)atomic_load(&xraw.faults);
}

/* A gem buffer of x->n pages mapped embedded, written a byte a page. */
static void
run_gem_embedded(const void *arg, double *out)
{
	const struct xrun *x = arg;
	size_t np = x->n, len = np * PG;
	struct fm_gem_create cr = {.size = len};
	struct fm_gem_mmap_offset mo = {0};
	struct fm_gem_info in = {0};
	int fd = fm_open(FM_GEM_DEV, O_RDWR);
	uint64_t t0;
	char *p;

	if (fd < 0 || fm_ioctl(fd, FM_GEM_CREATE, &cr) < 0)
		bench_fail("gem create");
	mo.handle = in.handle = cr.handle;
	if (fm_ioctl(fd, FM_GEM_MMAP_OFFSET, &mo) < 0)
		bench_fail("gem mmap offset");
	p = fm_mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
	    (off_t)mo.offset);
	if (p == MAP_FAILED)
		bench_fail("gem fm_mmap");
	if (x->random && fm_madvise(p, len, MADV_RANDOM) < 0)
		bench_fail("fm_madvise");
	t0 = now_ns();
	bench_touch(p, np, 1);
	out[0] = (double)(now_ns() - t0) / (double)np;
	if (fm_ioctl(fd, FM_GEM_INFO, &in) < 0)
		bench_fail("gem info");
	out[1] = (double)in.faults;
	fm_munmap(p, len);
	fm_close(fd);
}

/* The zero device embedded (the anonymous pager: fallocate), 1 page a fault. */
static void
run_zero_embedded(const void *arg, double *out)
{
	const struct xrun *x = arg;
	size_t len = x->n * PG;
	char *p = bench_fm_zero(len);
	uint64_t t0;

	if (fm_madvise(p, len, MADV_RANDOM) < 0)
		bench_fail("fm_madvise");
	t0 = now_ns();
	bench_touch(p, x->n, 1);
	out[0] = (double)(now_ns() - t0) / (double)x->n;
	out[1] = NAN;
}

/* The raw handler in-process: a thread of the faulting process. */
static void
run_raw_inproc(const void *arg, double *out)
{
	const struct xrun *x = arg;
	size_t len = x->n * PG;
	int fd = bench_memfd(len);
	struct raw r = {.mode = RAW_CONTINUE,
	    .memfd = fd,
	    .srcfd = -1,
	    .len = len,
	    .around = 1};
	uint64_t t0;

	r.base = bench_mmap(len, PROT_READ | PROT_WRITE, MAP_SHARED, fd);
	raw_start(&r);
	t0 = now_ns();
	bench_touch(r.base, x->n, 1);
	out[0] = (double)(now_ns() - t0) / (double)x->n;
	out[1] = (double)r.faults;
}

static void
row12(void)
{
	static char gem[128], gem2[128],
	    file[] = "/tmp/fomap-bench-file-XXXXXX";
	size_t nfault = bench.quick ? 1024 : 8192;
	size_t nseq = bench.quick ? 8192 : 65536;
	size_t nloop = bench.quick ? 2000 : 10000;
	char page[PG];
	int fd;

	snprintf(gem, sizeof gem, "%s/gem", mnt);
	if ((fomapd2 = fomapd_start(mnt2, 0)) > 0)
		snprintf(gem2, sizeof gem2, "%s/gem", mnt2);
	memset(page, 'f', sizeof page);
	if ((fd = mkstemp(file)) < 0 || write(fd, page, PG) != PG)
		bench_fail("the ordinary file");
	close(fd);

	struct xrun xg = {.mode = "gem",
	                .file = gem,
	                .n = nfault,
	                .random = 1,
	                .preload = 1},
	            xr = {.mode = "raw", .n = nfault},
	            xg2 = {.mode = "gem",
	                .file = gem2,
	                .n = nfault,
	                .random = 1,
	                .preload = 1};
	struct bench_cfg f[] = {
	    {.name = "preloaded client: gem via fomapd, MADV_RANDOM",
	        .fn = run_x,
	        .arg = &xg},
	    {.name = "client + server process: fallocate + UFFDIO_CONTINUE",
	        .fn = run_x,
	        .arg = &xr},
	    {.name = "embedded: fm_mmap of gem, MADV_RANDOM",
	        .fn = run_gem_embedded,
	        .arg = &xg},
	    {.name = "in-process: raw handler thread, fallocate + CONTINUE",
	        .fn = run_raw_inproc,
	        .arg = &xr},
	    {.name = "embedded: fm_mmap of zero (anon pager), MADV_RANDOM",
	        .fn = run_zero_embedded,
	        .arg = &xg},
	    {.name = "preloaded client: gem via fomapd, unpinned",
	        .fn = run_x,
	        .arg = &xg2,
	        .unpinned = 1},
	    {.name = "client + server process: CONTINUE, unpinned",
	        .fn = run_x,
	        .arg = &xr,
	        .unpinned = 1},
	};
	struct xrun sg = {.mode = "gem", .file = gem, .n = nseq, .preload = 1};
	struct bench_cfg q[] = {
	    {.name = "preloaded client: gem via fomapd, default fault-around",
	        .fn = run_x,
	        .arg = &sg},
	    {.name = "embedded: fm_mmap of gem, default fault-around",
	        .fn = run_gem_embedded,
	        .arg = &sg},
	};
	struct xrun
	    op = {.mode = "orc", .file = file, .n = nloop, .preload = 1},
	    on = {.mode = "orc", .file = file, .n = nloop},
	    mp = {.mode = "mmap", .file = file, .n = nloop, .preload = 1},
	    mn = {.mode = "mmap", .file = file, .n = nloop};
	struct bench_cfg oc[] = {
	    {.name = "open + read + close, LD_PRELOAD", .fn = run_x, .arg = &op},
	    {.name = "open + read + close, no preload", .fn = run_x, .arg = &on},
	};
	struct bench_cfg mc[] = {
	    {.name = "mmap + munmap, LD_PRELOAD", .fn = run_x, .arg = &mp},
	    {.name = "mmap + munmap, no preload", .fn = run_x, .arg = &mn},
	};
	int nf = fomapd2 > 0 ? 7 : 5;

	printf("\nRow 12: a client process's one-page faults, %zu pages "
	       "written in turn (µs per fault); pinned: client, fomapd and "
	       "the raw server on the measuring CPU%s\n\n",
	    nfault, fomapd2 > 0 ? "" : " (the unpinned fomapd did not start)");
	bench_compare("12", f, nf, bench.reps, 1, "µs/fault", 1e3);
	printf("\nFaults per page, medians (1: one page a fault):\n\n");
	for (int i = 0; i < nf; i++)
		if (i != 4)
			printf("- %s: %.3f\n", f[i].name,
			    bench_median(&f[i], 1) / (double)nfault);
	printf("\nRow 12: sequential first touch of a %zu MiB gem buffer "
	       "(µs per page)\n\n",
	    nseq * PG >> 20);
	bench_compare("12s", q, 2, bench.reps, 1, "µs/page", 1e3);
	printf("\nFaults the driver counted (medians): %s %.0f, %s %.0f\n",
	    q[0].name, bench_median(&q[0], 1), q[1].name,
	    bench_median(&q[1], 1));
	printf("\nRow 12: a program that never touches fomap, %zu "
	       "iterations (µs per iteration)\n\n",
	    nloop);
	bench_compare("12c", oc, 2, bench.reps, 1, "µs", 1e3);
	printf("\n");
	bench_compare("12c", mc, 2, bench.reps, 1, "µs", 1e3);
	bench_ratio("daemon_fault_vs_raw_xproc", &f[0], &f[1], 0);
	bench_ratio("gem_fault_embedded_vs_raw_inproc", &f[2], &f[3], 0);
	bench_ratio("daemon_fault_vs_embedded", &f[0], &f[2], 0);
	bench_ratio("raw_fault_xproc_vs_inproc", &f[1], &f[3], 0);
	bench_ratio("gem_vs_zero_fault_embedded", &f[2], &f[4], 0);
	if (nf == 7)
		bench_ratio("daemon_fault_vs_raw_xproc_unpinned", &f[5], &f[6],
		    0);
	bench_ratio("daemon_seq_touch_vs_embedded", &q[0], &q[1], 0);
	bench_ratio("preload_overhead_open_read_close", &oc[0], &oc[1], 0);
	bench_ratio("preload_overhead_mmap_munmap", &mc[0], &mc[1], 0);
	unlink(file);
}

int
main(int argc, char **argv)
{
	bench_init(argc, argv, "fomap benchmarks: devices as files (fomapd)");
	if ((!bench_want("11") && !bench_want("12")) || daemon_start() < 0) {
		bench_done();
		return 0;
	}
	if (bench_want("11"))
		row11();
	if (bench_want("12"))
		row12();
	daemon_stop();
	bench_done();
	return 0;
}
