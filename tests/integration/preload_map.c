/*
 * preload_map.c: a dynamically linked program that knows nothing of fomap,
 * run by the preload tests under LD_PRELOAD=libfomap-preload.so. Prints
 * "ok" when what it did behaved, else what did not, and exits 1.
 *
 *   fomap-preload-map zero FILE   two MAP_SHARED mappings of zero share
 *                                 memory; mprotect, msync, munmap work
 *   fomap-preload-map file FILE   an ordinary file maps as ever, and the
 *                                 library made no socket and no thread
 *   fomap-preload-map gem FILE    a gem buffer mapped through the engine:
 *                                 coherent mappings, eviction and refault
 *
 * The failure tests' modes (test_preload_fail.c) name a gem buffer by its
 * global name (FM_GEM_FLINK of the test's own open):
 *
 *   fomap-preload-map gemloop FILE NAME fill|check|ro|rw
 *       fill: write the pattern over the buffer; check: every byte has it;
 *       ro, rw: read (rw: and write back) every byte, checking it, page
 *       after page for ever, "ready" once the first pass is done; at a
 *       SIGBUS: "sigbus SEC NSEC pages N" (CLOCK_MONOTONIC, pages read
 *       whole), exit 0. A byte without the pattern: "bad ...", exit 1.
 *   fomap-preload-map poke FILE NAME|-
 *       maps the gem buffer NAME (or, -, the whole region of guard) and
 *       answers commands on standard input, one line each:
 *       "r PG" -> "v HEX" (the page's first byte); "w PG HEX" -> "ok";
 *       "f PG HEX" fill the page -> "ok"; "c PG HEX" every byte of the
 *       page is HEX -> "ok" or "bad OFF HEX"; "u" munmap -> "ok";
 *       "m" map again -> "ok"; any access that faults: "SIGBUS" or
 *       "SIGSEGV"; "q" exits.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <stddef.h>
#include <sys/xattr.h>
#include <sys/un.h>
#include <sys/syscall.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fomap/gem.h>

#define PGSZ 4096
#define LEN (1 << 20)

static int
fail(const char *what)
{
	printf("%s: %s\n", what, strerror(errno));
	return 1;
}

/* Descriptors of ours that are sockets, and our threads. */
static int
count(const char *dir, const char *prefix)
{
	char path[300], link[300];
	struct dirent *e;
	DIR *d = opendir(dir);
	int n = 0;

	while (d && (e = readdir(d)) != NULL) {
		ssize_t k;

		if (e->d_name[0] == '.')
			continue;
		if (prefix == NULL) {
			n++;
			continue;
		}
		snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
		k = readlink(path, link, sizeof link - 1);
		if (k > 0) {
			link[k] = 0;
			n += strncmp(link, prefix, strlen(prefix)) == 0;
		}
	}
	if (d)
		closedir(d);
	return n;
}

static int
map_zero(const char *file)
{
	int fd = open(file, O_RDWR);
	char *a, *b;

	if (fd < 0)
		return fail("open");
	a = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	b = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (a == MAP_FAILED || b == MAP_FAILED)
		return fail("mmap");
	memcpy(a + PGSZ, "hello", 5);
	if (memcmp(b + PGSZ, "hello", 5) != 0 || b[0] != 0) {
		printf("the two mappings differ\n");
		return 1;
	}
	if (mprotect(b, LEN, PROT_READ) < 0)
		return fail("mprotect");
	if (msync(a, LEN, MS_SYNC) < 0)
		return fail("msync");
	if (madvise(a, LEN, MADV_DONTNEED) < 0)
		return fail("madvise");
	if (memcmp(a + PGSZ, "hello", 5) != 0) {
		printf("MADV_DONTNEED lost the object's page\n");
		return 1;
	}
	if (munmap(a, LEN) < 0 || munmap(b, LEN) < 0)
		return fail("munmap");
	close(fd);
	return 0;
}

static int
map_file(const char *file)
{
	int fd = open(file, O_RDONLY);
	char *p;

	if (fd < 0)
		return fail("open");
	p = mmap(NULL, PGSZ, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	if (p == MAP_FAILED)
		return fail("mmap");
	if (memcmp(p, "fomap", 5) != 0) {
		printf("the file's bytes are not there\n");
		return 1;
	}
	p[0] = 'F'; /* private: the file keeps its own */
	if (mprotect(p, PGSZ, PROT_READ) < 0 || munmap(p, PGSZ) < 0)
		return fail("mprotect/munmap");
	close(fd);
	if (count("/proc/self/fd", "socket:") != 0 ||
	    count("/proc/self/task", NULL) != 1) {
		printf("the library did something for an ordinary file\n");
		return 1;
	}
	return 0;
}

static int
gem_ioctl(int fd, unsigned long cmd, void *arg, const char *what)
{
	if (ioctl(fd, cmd, arg) < 0)
		return fail(what);
	return 0;
}

/*
 * An open for reading maps the buffer shared and readable only: its
 * mprotect to PROT_WRITE is refused (EACCES), as the kernel's for a
 * shared mapping of a read-only descriptor.
 */
static int
map_gem_readonly(const char *file, size_t len)
{
	int fd = open(file, O_RDONLY);
	struct fm_gem_create c = {.size = len};
	struct fm_gem_mmap_offset ro = {0};
	char *p;

	if (fd < 0)
		return fail("open read-only");
	if (gem_ioctl(fd, FM_GEM_CREATE, &c, "FM_GEM_CREATE (read-only)"))
		return 1;
	ro.handle = c.handle;
	if (gem_ioctl(fd, FM_GEM_MMAP_OFFSET, &ro, "FM_GEM_MMAP_OFFSET"))
		return 1;
	p = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, (off_t)ro.offset);
	if (p == MAP_FAILED)
		return fail("mmap read-only");
	if (mprotect(p, len, PROT_READ | PROT_WRITE) == 0 || errno != EACCES)
		return fail("mprotect(PROT_WRITE) of a read-only open");
	if (mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
	        (off_t)ro.offset) != MAP_FAILED ||
	    errno != EACCES)
		return fail("mmap(PROT_WRITE) of a read-only open");
	munmap(p, len);
	close(fd);
	return 0;
}

static int
map_gem(const char *file)
{
	struct fm_gem_create c = {.size = 4 * PGSZ};
	struct fm_gem_mmap_offset o = {0};
	struct fm_gem_evict e = {0};
	struct fm_gem_info i = {0};
	int fd = open(file, O_RDWR);
	char *a, *b;

	if (fd < 0)
		return fail("open");
	if (gem_ioctl(fd, FM_GEM_CREATE, &c, "FM_GEM_CREATE"))
		return 1;
	o.handle = e.handle = i.handle = c.handle;
	if (gem_ioctl(fd, FM_GEM_MMAP_OFFSET, &o, "FM_GEM_MMAP_OFFSET"))
		return 1;
	a = mmap(NULL, c.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
	    (off_t)o.offset);
	b = mmap(NULL, c.size, PROT_READ, MAP_SHARED, fd, (off_t)o.offset);
	if (a == MAP_FAILED || b == MAP_FAILED)
		return fail("mmap");
	for (size_t k = 0; k < c.size; k += PGSZ)
		a[k] = (char)(k / PGSZ + 1);
	for (size_t k = 0; k < c.size; k += PGSZ)
		if (b[k] != (char)(k / PGSZ + 1)) {
			printf("page %zu: not coherent\n", k / PGSZ);
			return 1;
		}
	if (gem_ioctl(fd, FM_GEM_EVICT, &e, "FM_GEM_EVICT"))
		return 1;
	for (size_t k = 0; k < c.size; k += PGSZ)
		if (a[k] != (char)(k / PGSZ + 1)) {
			printf("page %zu: lost at eviction\n", k / PGSZ);
			return 1;
		}
	if (gem_ioctl(fd, FM_GEM_INFO, &i, "FM_GEM_INFO"))
		return 1;
	if (i.faults == 0 || i.evictions != 1 || i.refill == 0) {
		printf("the pager did not serve it: faults %llu evictions "
		       "%llu refill %llu\n",
		    (unsigned long long)i.faults,
		    (unsigned long long)i.evictions,
		    (unsigned long long)i.refill);
		return 1;
	}
	/* Beyond the buffer: the driver's ENXIO, as in the embedded API. */
	if (mmap(NULL, c.size + PGSZ, PROT_READ, MAP_SHARED, fd,
	        (off_t)o.offset) != MAP_FAILED ||
	    errno != ENXIO) {
		printf("a mapping past the buffer was not refused ENXIO\n");
		return 1;
	}
	/* mprotect: down and up again through fomapd, the kernel's too. */
	if (mprotect(a, c.size, PROT_READ) < 0 ||
	    mprotect(a, c.size, PROT_READ | PROT_WRITE) < 0)
		return fail("mprotect");
	a[0] = 9;
	if (b[0] != 9)
		return fail("a write after mprotect is not seen");
	if (map_gem_readonly(file, c.size))
		return 1;
	if (munmap(a, c.size) < 0 || munmap(b, c.size) < 0)
		return fail("munmap");
	close(fd);
	return 0;
}

/*
 * fork: the child inherits a shared gem mapping (coherent with the
 * parent, served by fomapd through the child's userfaultfd, its writes
 * reaching the object through the pager) and a private one (copy-on-
 * write: neither the parent nor the object sees the child's write); the
 * child maps a buffer of its own and evicts, and both exit.
 */
static int
fork_child(char *sh, char *pr, int fd, const struct fm_gem_mmap_offset *o,
    size_t len)
{
	struct fm_gem_evict e = {.handle = o->handle};
	char *own;

	/* Inherited: the parent's bytes, through both mappings. */
	for (size_t k = 0; k < len; k += PGSZ)
		if (sh[k] != (char)(k / PGSZ + 1) ||
		    pr[k] != (char)(k / PGSZ + 1))
			return fail("child: not the parent's bytes");
	sh[PGSZ] = 0x55; /* shared: the parent sees it */
	pr[2 * PGSZ] = 0x66; /* private: nobody else does */
	/* Its own mapping, through its own session, and an eviction. */
	own = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
	    (off_t)o->offset);
	if (own == MAP_FAILED)
		return fail("child: mmap");
	if (own[PGSZ] != 0x55)
		return fail("child: its own mapping is not coherent");
	if (gem_ioctl(fd, FM_GEM_EVICT, &e, "child: FM_GEM_EVICT"))
		return 1;
	if (sh[PGSZ] != 0x55 || own[3 * PGSZ] != 4 || pr[2 * PGSZ] != 0x66)
		return fail("child: lost at eviction");
	return munmap(own, len) < 0 ? fail("child: munmap") : 0;
}

static int
map_fork(const char *file)
{
	struct fm_gem_create c = {.size = 4 * PGSZ};
	struct fm_gem_mmap_offset o = {0};
	int fd = open(file, O_RDWR), st;
	char *sh, *pr;
	pid_t pid;

	if (fd < 0)
		return fail("open");
	if (gem_ioctl(fd, FM_GEM_CREATE, &c, "FM_GEM_CREATE"))
		return 1;
	o.handle = c.handle;
	if (gem_ioctl(fd, FM_GEM_MMAP_OFFSET, &o, "FM_GEM_MMAP_OFFSET"))
		return 1;
	sh = mmap(NULL, c.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
	    (off_t)o.offset);
	if (sh == MAP_FAILED)
		return fail("mmap shared");
	for (size_t k = 0; k < c.size; k += PGSZ)
		sh[k] = (char)(k / PGSZ + 1);
	pr = mmap(NULL, c.size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd,
	    (off_t)o.offset);
	if (pr == MAP_FAILED)
		return fail("mmap private");
	if ((pid = fork()) < 0)
		return fail("fork");
	if (pid == 0)
		_exit(fork_child(sh, pr, fd, &o, c.size));
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) ||
	    WEXITSTATUS(st) != 0)
		return fail("the child failed");
	if (sh[PGSZ] != 0x55)
		return fail("the child's shared write is not seen");
	if (pr[2 * PGSZ] != 3 || sh[2 * PGSZ] != 3)
		return fail("the child's private write leaked");
	return munmap(sh, c.size) < 0 || munmap(pr, c.size) < 0 ? fail("munmap")
	                                                        : 0;
}

/*
 * mremap: a gem mapping moved elsewhere keeps its bytes, and is served
 * there (an eviction refills it at its new address; mprotect of the new
 * address goes through fomapd).
 */
static int
map_mremap(const char *file)
{
	struct fm_gem_create c = {.size = 4 * PGSZ};
	struct fm_gem_mmap_offset o = {0};
	struct fm_gem_evict e = {0};
	int fd = open(file, O_RDWR);
	char *a, *hole, *b;

	if (fd < 0)
		return fail("open");
	if (gem_ioctl(fd, FM_GEM_CREATE, &c, "FM_GEM_CREATE"))
		return 1;
	o.handle = e.handle = c.handle;
	if (gem_ioctl(fd, FM_GEM_MMAP_OFFSET, &o, "FM_GEM_MMAP_OFFSET"))
		return 1;
	a = mmap(NULL, c.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
	    (off_t)o.offset);
	hole =
	    mmap(NULL, c.size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (a == MAP_FAILED || hole == MAP_FAILED)
		return fail("mmap");
	for (size_t k = 0; k < c.size; k += PGSZ)
		a[k] = (char)(k / PGSZ + 1);
	b = mremap(a, c.size, c.size, MREMAP_MAYMOVE | MREMAP_FIXED, hole);
	if (b != hole)
		return fail("mremap");
	if (gem_ioctl(fd, FM_GEM_EVICT, &e, "FM_GEM_EVICT"))
		return 1;
	for (size_t k = 0; k < c.size; k += PGSZ)
		if (b[k] != (char)(k / PGSZ + 1))
			return fail("moved: not its bytes");
	if (mprotect(b, c.size, PROT_READ) < 0 ||
	    mprotect(b, c.size, PROT_READ | PROT_WRITE) < 0)
		return fail("mprotect at the new address");
	b[PGSZ] = 0x33;
	if (gem_ioctl(fd, FM_GEM_EVICT, &e, "FM_GEM_EVICT"))
		return 1;
	if (b[PGSZ] != 0x33)
		return fail("moved: a write lost at eviction");
	return munmap(b, c.size) < 0 ? fail("munmap") : 0;
}

/* A gem buffer of len bytes mapped shared at addr (NULL: anywhere). */
static char *
gem_new_map(int fd, size_t len, void *addr, struct fm_gem_mmap_offset *o)
{
	struct fm_gem_create c = {.size = len};
	char *p;

	if (gem_ioctl(fd, FM_GEM_CREATE, &c, "FM_GEM_CREATE"))
		return NULL;
	*o = (struct fm_gem_mmap_offset){.handle = c.handle};
	if (gem_ioctl(fd, FM_GEM_MMAP_OFFSET, o, "FM_GEM_MMAP_OFFSET"))
		return NULL;
	p = mmap(addr, len, PROT_READ | PROT_WRITE,
	    MAP_SHARED | (addr ? MAP_FIXED_NOREPLACE : 0), fd,
	    (off_t)o->offset);
	return p == MAP_FAILED ? NULL : p;
}

/* The session protocol's message (src/ipc/proto.h), as fomapd reads it. */
struct wire {
	uint32_t op, flags;
	int32_t err;
	uint32_t nfds;
	uint64_t seq, a[6];
};
_Static_assert(sizeof(struct wire) == 72, "proto.h's struct fm_ipc_msg");
#define WIRE_HELLO_CHILD 10

/*
 * A sibling's HELLO_CHILD: its parent forked a child the library did not
 * see (not named yet); the sibling asks for "its" fork. => 0 when fomapd
 * refuses it (and hands it no descriptor)
 */
static int
sibling_asks(const char *file)
{
	struct wire m = {.op = WIRE_HELLO_CHILD, .seq = 1, .a = {1}};
	char name[128] = {0}, cb[CMSG_SPACE(2 * sizeof(int))];
	struct iovec iv = {&m, sizeof m};
	struct msghdr h = {.msg_iov = &iv,
	    .msg_iovlen = 1,
	    .msg_control = cb,
	    .msg_controllen = sizeof cb};
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int f = open(file, O_RDONLY), s;
	ssize_t n;

	if (f < 0 ||
	    (n = fgetxattr(f, "user.fomap.session", name, sizeof name - 1)) <=
	        0)
		return fail("sibling: the session's name");
	memcpy(sa.sun_path + 1, name, (size_t)n);
	s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (connect(s, (struct sockaddr *)&sa,
	        (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 +
	            (size_t)n)) < 0 ||
	    send(s, &m, sizeof m, 0) != sizeof m || recvmsg(s, &h, 0) <= 0)
		return fail("sibling: the session");
	if (m.err == 0 || CMSG_FIRSTHDR(&h) != NULL) {
		printf(
		    "a sibling was handed another process's address space\n");
		return 1;
	}
	return 0;
}

/*
 * steal: a process's sibling cannot take the address space of a fork
 * fomapd has not named (HELLO_CHILD by guess): refused, and the fork's
 * mapping stays coherent with its parent's.
 */
static int
map_steal(const char *file)
{
	struct fm_gem_mmap_offset o;
	int go[2], done[2], fd, st;
	pid_t sib, child;
	char *p, c = 0;

	if (pipe(go) < 0 || pipe(done) < 0)
		return fail("pipe");
	if ((sib = (pid_t)syscall(SYS_fork)) == 0) { /* before any mapping */
		if (read(go[0], &c, 1) != 1)
			_exit(2);
		_exit(sibling_asks(file));
	}
	if ((fd = open(file, O_RDWR)) < 0 ||
	    (p = gem_new_map(fd, 4 * PGSZ, NULL, &o)) == NULL)
		return fail("map");
	p[PGSZ] = 7;
	if ((child = (pid_t)syscall(SYS_fork)) == 0) { /* not the library's */
		if (read(done[0], &c, 1) != 1)
			_exit(2);
		_exit(p[PGSZ] == 8 ? 0 : 3);
	}
	if (write(go[1], &c, 1) != 1 || waitpid(sib, &st, 0) != sib ||
	    !WIFEXITED(st) || WEXITSTATUS(st) != 0)
		return fail("the sibling");
	p[PGSZ] = 8;
	if (write(done[1], &c, 1) != 1)
		return fail("pipe");
	if (waitpid(child, &st, 0) != child || !WIFEXITED(st) ||
	    WEXITSTATUS(st) != 0)
		return fail("the fork's mapping is not its parent's");
	return 0;
}

static double
now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/*
 * twofork: a fork the library does not see, then one it does: the
 * library's child gets its own session at once (fomapd names its fork
 * by its parent's word, not confused by the other), maps and evicts.
 */
static int
map_twofork(const char *file)
{
	struct fm_gem_mmap_offset o;
	struct fm_gem_evict e;
	pid_t raw, child;
	double t0;
	int fd, st;
	char *p;

	if ((fd = open(file, O_RDWR)) < 0 ||
	    (p = gem_new_map(fd, 4 * PGSZ, NULL, &o)) == NULL)
		return fail("map");
	p[0] = 1;
	if ((raw = (pid_t)syscall(SYS_fork)) == 0) {
		usleep(500000);
		_exit(0);
	}
	t0 = now_s();
	if ((child = fork()) == 0) {
		/* (a wait for a name that never comes: seconds) */
		if (now_s() - t0 > 1.0)
			_exit(4);
		e = (struct fm_gem_evict){.handle = o.handle};
		if (mmap(NULL, 4 * PGSZ, PROT_READ, MAP_SHARED, fd,
		        (off_t)o.offset) == MAP_FAILED)
			_exit(5);
		_exit(ioctl(fd, FM_GEM_EVICT, &e) == 0 && p[0] == 1 ? 0 : 6);
	}
	waitpid(raw, NULL, 0);
	if (child < 0 || waitpid(child, &st, 0) != child || !WIFEXITED(st) ||
	    WEXITSTATUS(st) != 0) {
		printf("the library's child failed (status %d)\n",
		    WIFEXITED(st) ? WEXITSTATUS(st) : -1);
		return 1;
	}
	return 0;
}

/*
 * forkafter: a fork once every fomap mapping is gone (no fork event, no
 * fork for fomapd to name) returns at once in the child, which maps anew.
 */
static int
map_forkafter(const char *file)
{
	struct fm_gem_mmap_offset o;
	pid_t child;
	double t0;
	int fd, st;
	char *p;

	if ((fd = open(file, O_RDWR)) < 0 ||
	    (p = gem_new_map(fd, 4 * PGSZ, NULL, &o)) == NULL)
		return fail("map");
	p[0] = 1;
	if (munmap(p, 4 * PGSZ) < 0)
		return fail("munmap");
	t0 = now_s();
	if ((child = fork()) == 0) {
		if (now_s() - t0 > 1.0)
			_exit(4); /* (a wait for a fork that never was) */
		p = mmap(NULL, 4 * PGSZ, PROT_READ, MAP_SHARED, fd,
		    (off_t)o.offset);
		_exit(p != MAP_FAILED && p[0] == 1 ? 0 : 5);
	}
	if (child < 0 || waitpid(child, &st, 0) != child || !WIFEXITED(st) ||
	    WEXITSTATUS(st) != 0) {
		printf("the child failed (status %d)\n",
		    WIFEXITED(st) ? WEXITSTATUS(st) : -1);
		return 1;
	}
	return 0;
}

/* Whether page va of this process is mapped write-protected (uffd-wp). */
static int
wp_bit(const volatile void *va)
{
	int f = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	uint64_t e = 0;

	if (f < 0 || pread(f, &e, 8, (off_t)((uintptr_t)va / PGSZ * 8)) != 8)
		e = 0;
	if (f >= 0)
		close(f);
	return (int)((e >> 57) & 1);
}

/*
 * wpkeep: a fork no session claims (the library did not see it) keeps
 * its pages write-protected while fomapd looks whether it lives (its
 * probe changed the protection of a mapping at 1 GiB: writes there went
 * past the pager's write tracking).
 */
static int
map_wpkeep(const char *file)
{
	struct fm_gem_mmap_offset o1, o2;
	volatile char *a, *b;
	pid_t child;
	int fd, st;

	if ((fd = open(file, O_RDWR)) < 0 ||
	    (a = gem_new_map(fd, PGSZ, (void *)(1UL << 30), &o1)) == NULL ||
	    (b = gem_new_map(fd, PGSZ, (void *)(5UL << 28), &o2)) == NULL)
		return fail("map");
	(void)a[0];
	(void)b[0];
	if ((child = (pid_t)syscall(SYS_fork)) == 0) {
		int wa = wp_bit(a), wb = wp_bit(b);

		usleep(1500000); /* (fomapd's reaper looks every 500 ms) */
		_exit(wa == 1 && wb == 1 && wp_bit(a) == wa && wp_bit(b) == wb
		        ? 0
		        : 7);
	}
	if (waitpid(child, &st, 0) != child || !WIFEXITED(st) ||
	    WEXITSTATUS(st) != 0)
		return fail("a pending fork's write protection changed");
	return 0;
}

/*
 * exec: the mappings go with the old image, the opens stay: the new
 * image (execd, preloaded as well) maps the buffer through the open it
 * inherited and finds what the old one wrote.
 */
static int
map_exec(const char *self, const char *file)
{
	struct fm_gem_mmap_offset o;
	char fdarg[16], handle[16];
	int fd;
	char *p;

	if ((fd = open(file, O_RDWR)) < 0 ||
	    (p = gem_new_map(fd, 4 * PGSZ, NULL, &o)) == NULL)
		return fail("map");
	p[2 * PGSZ] = 0x42;
	snprintf(fdarg, sizeof fdarg, "%d", fd);
	snprintf(handle, sizeof handle, "%u", o.handle);
	execl(self, self, "execd", fdarg, handle, (char *)NULL);
	return fail("exec");
}

static int
map_execd(const char *fdarg, const char *handle)
{
	struct fm_gem_mmap_offset o = {.handle = (uint32_t)atoi(handle)};
	int fd = atoi(fdarg);
	char *p;

	if (gem_ioctl(fd, FM_GEM_MMAP_OFFSET, &o, "FM_GEM_MMAP_OFFSET"))
		return 1;
	p = mmap(NULL, 4 * PGSZ, PROT_READ, MAP_SHARED, fd, (off_t)o.offset);
	if (p == MAP_FAILED)
		return fail("mmap after exec");
	return p[2 * PGSZ] == 0x42 ? 0 : fail("not the old image's bytes");
}

/*
 * closefds: a program that closes every descriptor it did not open (as
 * daemons do), the library's session among them, then evicts and reads:
 * fomapd goes on serving its mapping (refills, never zeros).
 */
static int
map_closefds(const char *file)
{
	struct fm_gem_create c = {.size = 4 * PGSZ};
	struct fm_gem_mmap_offset o = {0};
	struct fm_gem_evict e = {0};
	int fd = open(file, O_RDWR);
	char *sh;

	if (fd < 0)
		return fail("open");
	if (gem_ioctl(fd, FM_GEM_CREATE, &c, "FM_GEM_CREATE"))
		return 1;
	o.handle = e.handle = c.handle;
	if (gem_ioctl(fd, FM_GEM_MMAP_OFFSET, &o, "FM_GEM_MMAP_OFFSET"))
		return 1;
	sh = mmap(NULL, c.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
	    (off_t)o.offset);
	if (sh == MAP_FAILED)
		return fail("mmap");
	for (size_t k = 0; k < c.size; k += PGSZ)
		sh[k] = (char)(k / PGSZ + 1);
	for (int i = 3; i < 1024; i++)
		if (i != fd)
			close(i);
	usleep(100000); /* (fomapd sees the socket's end) */
	if (gem_ioctl(fd, FM_GEM_EVICT, &e, "FM_GEM_EVICT"))
		return 1;
	for (size_t k = 0; k < c.size; k += PGSZ)
		if (sh[k] != (char)(k / PGSZ + 1))
			return fail("not served once the session was closed");
	sh[PGSZ] = 0x44;
	if (gem_ioctl(fd, FM_GEM_EVICT, &e, "FM_GEM_EVICT"))
		return 1;
	return sh[PGSZ] == 0x44 ? 0 : fail("a write lost");
}

/* ------------------------------------------------------------------ */
/* The failure tests' modes. */

/* The pattern: never a zero byte, so a zero page never passes for it. */
static unsigned char
pat(size_t k)
{
	return (unsigned char)(1 + (k + k / PGSZ * 7) % 255);
}

static sigjmp_buf jb;
static volatile sig_atomic_t armed;
static struct timespec sig_at;

static void
on_fault(int sig, siginfo_t *si, void *uc)
{
	(void)si;
	(void)uc;
	clock_gettime(CLOCK_MONOTONIC, &sig_at);
	if (!armed) {
		signal(sig, SIG_DFL);
		return; /* (the access again, and the default action) */
	}
	armed = 0;
	siglongjmp(jb, sig);
}

static void
catch_faults(void)
{
	struct sigaction sa = {.sa_sigaction = on_fault,
	    .sa_flags = SA_SIGINFO | SA_NODEFER};

	sigaction(SIGBUS, &sa, NULL);
	sigaction(SIGSEGV, &sa, NULL);
}

/* The gem buffer with global name, mapped shared: its length in *lenp. */
static char *
gem_by_name(int fd, uint32_t name, size_t *lenp)
{
	struct fm_gem_open g = {.name = name};
	struct fm_gem_mmap_offset o = {0};
	char *p;

	if (ioctl(fd, FM_GEM_OPEN, &g) < 0)
		return NULL;
	o.handle = g.handle;
	if (ioctl(fd, FM_GEM_MMAP_OFFSET, &o) < 0)
		return NULL;
	p = mmap(NULL, g.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
	    (off_t)o.offset);
	*lenp = g.size;
	return p == MAP_FAILED ? NULL : p;
}

static int
gem_loop(const char *file, const char *name, const char *how)
{
	int fd = open(file, O_RDWR), wr = strcmp(how, "rw") == 0, sig;
	volatile unsigned char *p;
	volatile unsigned long pages = 0; /* (kept across siglongjmp) */
	volatile size_t k = 0;
	size_t len;

	if (fd < 0)
		return fail("open");
	p = (volatile unsigned char *)gem_by_name(fd,
	    (uint32_t)strtoul(name, NULL, 0), &len);
	if (p == NULL)
		return fail("gem_by_name");
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (strcmp(how, "fill") == 0) {
		for (k = 0; k < len; k++)
			p[k] = pat(k);
		return msync((void *)p, len, MS_SYNC) < 0 ? fail("msync") : 0;
	}
	catch_faults();
	if ((sig = sigsetjmp(jb, 1)) != 0) {
		printf("%s %lld %ld pages %lu at %zu\n",
		    sig == SIGBUS ? "sigbus" : "sigsegv",
		    (long long)sig_at.tv_sec, sig_at.tv_nsec, pages, k);
		return sig == SIGBUS ? 0 : 1;
	}
	armed = 1;
	for (;;) {
		for (k = 0; k < len; k++) {
			unsigned char v = p[k];

			if (v != pat(k)) {
				armed = 0;
				printf("bad byte %zu: %#x, not %#x\n", k, v,
				    pat(k));
				return 1;
			}
			if (wr)
				p[k] = v;
			if ((k + 1) % PGSZ == 0)
				pages++;
		}
		if (strcmp(how, "check") == 0)
			return 0;
		if (pages == len / PGSZ)
			puts("ready");
	}
}

/* What poke maps: the gem buffer name, or guard's whole region. */
static char *
poke_map(int fd, const char *name, size_t *lenp)
{
	char *p;

	if (strcmp(name, "-") != 0)
		return gem_by_name(fd, (uint32_t)strtoul(name, NULL, 0), lenp);
	*lenp = 256 * PGSZ; /* FM_GUARD_DEFSIZE */
	p = mmap(NULL, *lenp, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	return p == MAP_FAILED ? NULL : p;
}

static int
poke(const char *file, const char *name)
{
	int fd = open(file, O_RDWR), sig;
	volatile unsigned char *p;
	char line[128], cmd;
	size_t len, pg;
	unsigned v;

	if (fd < 0)
		return fail("open");
	if ((p = (volatile unsigned char *)poke_map(fd, name, &len)) == NULL)
		return fail("map");
	setvbuf(stdout, NULL, _IOLBF, 0);
	catch_faults();
	puts("ok");
	while (fgets(line, sizeof line, stdin)) {
		int n = sscanf(line, " %c %zu %x", &cmd, &pg, &v);

		if (n < 1 || cmd == 'q')
			break;
		if ((n >= 2 && (pg + 1) * PGSZ > len) ||
		    (strchr("rwfc", cmd) && n < 2)) {
			puts("usage");
			continue;
		}
		if ((sig = sigsetjmp(jb, 1)) != 0) {
			puts(sig == SIGBUS ? "SIGBUS" : "SIGSEGV");
			continue;
		}
		armed = 1;
		switch (cmd) {
		case 'r':
			v = p[pg * PGSZ];
			armed = 0;
			printf("v %x\n", v);
			break;
		case 'w':
			p[pg * PGSZ] = (unsigned char)v;
			armed = 0;
			puts("ok");
			break;
		case 'f':
			for (size_t k = 0; k < PGSZ; k++)
				p[pg * PGSZ + k] = (unsigned char)v;
			armed = 0;
			puts("ok");
			break;
		case 'c': {
			size_t k;

			for (k = 0; k < PGSZ && p[pg * PGSZ + k] == v; k++)
				;
			armed = 0;
			if (k == PGSZ)
				puts("ok");
			else
				printf("bad %zu %x\n", k, p[pg * PGSZ + k]);
			break;
		}
		case 'u':
			armed = 0;
			puts(munmap((void *)p, len) == 0 ? "ok" : "munmap");
			break;
		case 'm':
			armed = 0;
			p = (volatile unsigned char *)poke_map(fd, name, &len);
			puts(p ? "ok" : "map");
			break;
		default:
			armed = 0;
			puts("usage");
		}
	}
	return 0;
}

int
main(int argc, char **argv)
{
	int r;

	if (argc == 5 && strcmp(argv[1], "gemloop") == 0) {
		if ((r = gem_loop(argv[2], argv[3], argv[4])) == 0)
			puts("ok");
		return r;
	}
	if (argc == 4 && strcmp(argv[1], "poke") == 0)
		return poke(argv[2], argv[3]);
	if (argc == 4 && strcmp(argv[1], "execd") == 0) {
		if ((r = map_execd(argv[2], argv[3])) == 0)
			puts("ok");
		return r;
	}
	if (argc == 3 && strcmp(argv[1], "exec") == 0)
		return map_exec("/proc/self/exe", argv[2]);
	if (argc != 3) {
		fprintf(stderr,
		    "usage: fomap-preload-map zero|file|gem|fork|closefds "
		    "FILE\n"
		    "       fomap-preload-map gemloop FILE NAME "
		    "fill|check|ro|rw\n"
		    "       fomap-preload-map poke FILE NAME|-\n");
		return 2;
	}
	if (strcmp(argv[1], "zero") == 0)
		r = map_zero(argv[2]);
	else if (strcmp(argv[1], "file") == 0)
		r = map_file(argv[2]);
	else if (strcmp(argv[1], "gem") == 0)
		r = map_gem(argv[2]);
	else if (strcmp(argv[1], "fork") == 0)
		r = map_fork(argv[2]);
	else if (strcmp(argv[1], "closefds") == 0)
		r = map_closefds(argv[2]);
	else if (strcmp(argv[1], "mremap") == 0)
		r = map_mremap(argv[2]);
	else if (strcmp(argv[1], "steal") == 0)
		r = map_steal(argv[2]);
	else if (strcmp(argv[1], "twofork") == 0)
		r = map_twofork(argv[2]);
	else if (strcmp(argv[1], "wpkeep") == 0)
		r = map_wpkeep(argv[2]);
	else if (strcmp(argv[1], "forkafter") == 0)
		r = map_forkafter(argv[2]);
	else
		return 2;
	if (r == 0)
		puts("ok");
	return r;
}
