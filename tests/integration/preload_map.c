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
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
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
	if (munmap(a, c.size) < 0 || munmap(b, c.size) < 0)
		return fail("munmap");
	close(fd);
	return 0;
}

int
main(int argc, char **argv)
{
	int r;

	if (argc != 3) {
		fprintf(stderr,
		    "usage: fomap-preload-map zero|file|gem FILE\n");
		return 2;
	}
	if (strcmp(argv[1], "zero") == 0)
		r = map_zero(argv[2]);
	else if (strcmp(argv[1], "file") == 0)
		r = map_file(argv[2]);
	else if (strcmp(argv[1], "gem") == 0)
		r = map_gem(argv[2]);
	else
		return 2;
	if (r == 0)
		puts("ok");
	return r;
}
