/*
 * xclient.c: the client process of row 12 (bench/daemon.c), a program that
 * knows nothing of fomap: linked with no fomap library, run by bench-daemon
 * with or without LD_PRELOAD=libfomap-preload.so. It does its set-up, then
 * times only its loop and prints one line: the figure (ns per page or per
 * iteration), then what else it counted.
 *
 *   xclient gem FILE NPAGES RANDOM  a gem buffer of NPAGES mapped MAP_SHARED
 *                                   (through fomapd's engine when preloaded);
 *                                   RANDOM 1: madvise(MADV_RANDOM) first (1
 *                                   page a fault). Writes one byte a page.
 *                                   Prints ns/page and the driver's faults.
 *   xclient raw SOCKFD NPAGES       a memfd of NPAGES mapped MAP_SHARED and
 *                                   registered MISSING | MINOR with a
 *                                   userfaultfd of its own, which it sends
 *                                   (with the memfd, SCM_RIGHTS) to the
 *                                   server process on SOCKFD; once it
 *                                   answers, writes one byte a page.
 *   xclient orc FILE N              open + read 4 KiB + close of FILE, N times
 *   xclient mmap FILE N             mmap (4 KiB, MAP_SHARED, read) + munmap of
 *                                   FILE (opened once, untimed), N times
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <fomap/gem.h>

#define PGSZ 4096

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void
die(const char *what)
{
	fprintf(stderr, "xclient: %s: %s\n", what, strerror(errno));
	exit(1);
}

/* Write one byte of each page; => ns per page */
static double
touch(char *p, size_t npages)
{
	uint64_t t0 = now_ns();

	for (size_t i = 0; i < npages; i++)
		((volatile char *)p)[i * PGSZ] = 1;
	return (double)(now_ns() - t0) / (double)npages;
}

static int
gem(const char *file, size_t npages, int random)
{
	struct fm_gem_create c = {.size = npages * PGSZ};
	struct fm_gem_mmap_offset o = {0};
	struct fm_gem_info i = {0};
	int fd = open(file, O_RDWR);
	double ns;
	char *p;

	if (fd < 0 || ioctl(fd, FM_GEM_CREATE, &c) < 0)
		die("gem create");
	o.handle = i.handle = c.handle;
	if (ioctl(fd, FM_GEM_MMAP_OFFSET, &o) < 0)
		die("gem mmap offset");
	p = mmap(NULL, c.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
	    (off_t)o.offset);
	if (p == MAP_FAILED)
		die("gem mmap");
	if (random && madvise(p, c.size, MADV_RANDOM) < 0)
		die("madvise");
	ns = touch(p, npages);
	if (ioctl(fd, FM_GEM_INFO, &i) < 0)
		die("gem info");
	printf("%.3f %llu\n", ns, (unsigned long long)i.faults);
	return 0;
}

static int
raw(int sock, size_t npages)
{
	struct uffdio_api api = {.api = UFFD_API,
	    .features = UFFD_FEATURE_MINOR_SHMEM};
	size_t len = npages * PGSZ;
	int memfd = memfd_create("xclient", MFD_CLOEXEC);
	int uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC);
	char cbuf[CMSG_SPACE(2 * sizeof(int))] = {0}, ack;
	uint64_t range[2];
	struct iovec iov = {.iov_base = range, .iov_len = sizeof range};
	struct msghdr m = {.msg_iov = &iov,
	    .msg_iovlen = 1,
	    .msg_control = cbuf,
	    .msg_controllen = sizeof cbuf};
	struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
	struct uffdio_register reg;
	double ns;
	char *p;

	if (memfd < 0 || ftruncate(memfd, (off_t)len) < 0)
		die("memfd");
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
	if (p == MAP_FAILED)
		die("mmap");
	if (uffd < 0 || ioctl(uffd, UFFDIO_API, &api) < 0)
		die("userfaultfd");
	reg = (struct uffdio_register){.range = {(uintptr_t)p, len},
	    .mode = UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_MINOR};
	if (ioctl(uffd, UFFDIO_REGISTER, &reg) < 0)
		die("UFFDIO_REGISTER");
	range[0] = (uintptr_t)p;
	range[1] = len;
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(2 * sizeof(int));
	memcpy(CMSG_DATA(cm), (int[]){uffd, memfd}, 2 * sizeof(int));
	if (sendmsg(sock, &m, 0) != (ssize_t)sizeof range ||
	    read(sock, &ack, 1) != 1)
		die("the server");
	ns = touch(p, npages);
	printf("%.3f %zu\n", ns, npages);
	return 0;
}

static int
loop(const char *what, const char *file, long n)
{
	char buf[PGSZ];
	int mfd = what[0] == 'm' ? open(file, O_RDONLY) : -1;
	uint64_t t0;

	if (what[0] == 'm' && mfd < 0)
		die("open");
	t0 = now_ns();
	for (long i = 0; i < n; i++) {
		if (mfd < 0) {
			int fd = open(file, O_RDONLY);

			if (fd < 0 || read(fd, buf, sizeof buf) < 0)
				die("open/read");
			close(fd);
		} else {
			void *p =
			    mmap(NULL, PGSZ, PROT_READ, MAP_SHARED, mfd, 0);

			if (p == MAP_FAILED || munmap(p, PGSZ) < 0)
				die("mmap");
		}
	}
	printf("%.3f 0\n", (double)(now_ns() - t0) / (double)n);
	return 0;
}

int
main(int argc, char **argv)
{
	if (argc == 5 && strcmp(argv[1], "gem") == 0)
		return gem(argv[2], strtoul(argv[3], NULL, 0), atoi(argv[4]));
	if (argc == 4 && strcmp(argv[1], "raw") == 0)
		return raw(atoi(argv[2]), strtoul(argv[3], NULL, 0));
	if (argc == 4 &&
	    (strcmp(argv[1], "orc") == 0 || strcmp(argv[1], "mmap") == 0))
		return loop(argv[1], argv[2], atol(argv[3]));
	fprintf(stderr,
	    "usage: xclient gem FILE NPAGES RANDOM | raw SOCKFD "
	    "NPAGES | orc|mmap FILE N\n");
	return 2;
}
