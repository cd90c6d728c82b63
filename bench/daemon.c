/*
 * daemon.c: devices as files through fomapd (row 11 of docs/benchmarks.md).
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
 */
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fomap/gem.h>

#include "bench.h"

static char mnt[64];
static pid_t fomapd, echo;
static int echo_fd = -1; /* the socket to the echo server */

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

/* Start BUILD/fomapd on a fresh directory. => 0, or -1 (why printed) */
static int
daemon_start(void)
{
	char self[PATH_MAX], exe[PATH_MAX + 16], status[128];
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);

	if (geteuid() != 0 || access("/dev/fuse", R_OK | W_OK) < 0) {
		printf("Row 11 skipped: fomapd needs root and /dev/fuse.\n");
		return -1;
	}
	if (n <= 0)
		bench_fail("readlink");
	self[n] = 0;
	*strrchr(self, '/') = 0; /* BUILD/bench */
	snprintf(exe, sizeof exe, "%s/../fomapd", self);
	snprintf(mnt, sizeof mnt, "/tmp/fomap-bench-XXXXXX");
	if (mkdtemp(mnt) == NULL)
		bench_fail("mkdtemp");
	if ((fomapd = fork()) == 0) {
		int null = open("/dev/null", O_WRONLY);

		pin_here();
		dup2(null, 2);
		execl(exe, "fomapd", "--mount", mnt, (char *)NULL);
		_exit(127);
	}
	snprintf(status, sizeof status, "%s/.status", mnt);
	for (int i = 0; i < 500 && access(status, R_OK) < 0; i++)
		usleep(10000);
	if (access(status, R_OK) < 0) {
		printf("Row 11 skipped: fomapd did not start (%s).\n", exe);
		return -1;
	}
	return 0;
}

static void
daemon_stop(void)
{
	kill(fomapd, SIGTERM);
	waitpid(fomapd, NULL, 0);
	rmdir(mnt);
	close(echo_fd);
	waitpid(echo, NULL, 0);
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

int
main(int argc, char **argv)
{
	static const int one = 1, zero = 0;
	char zpath[128], npath[128];

	bench_init(argc, argv, "fomap benchmarks: devices as files (fomapd)");
	if (!bench_want("11") || daemon_start() < 0) {
		bench_done();
		return 0;
	}
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
	daemon_stop();
	bench_done();
	return 0;
}
