/*
 * static_map.c: a statically linked program (nothing can be preloaded into
 * it) that maps a fomap device through fomapd: it writes a pattern through
 * one MAP_SHARED mapping, reads it through a second, and prints "ok".
 * usage: fomap-static-map FILE
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define LEN (1 << 20)

int
main(int argc, char **argv)
{
	unsigned char *a, *b;
	int fd;

	if (argc != 2 || (fd = open(argv[1], O_RDWR)) < 0) {
		perror(argc == 2 ? argv[1] : "usage: fomap-static-map FILE");
		return 1;
	}
	a = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	b = mmap(NULL, LEN, PROT_READ, MAP_SHARED, fd, 0);
	if (a == MAP_FAILED || b == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	for (size_t i = 0; i < LEN; i += 4096)
		a[i] = (unsigned char)(i / 4096 + 1);
	for (size_t i = 0; i < LEN; i += 4096)
		if (b[i] != (unsigned char)(i / 4096 + 1)) {
			fprintf(stderr, "page %zu: %u\n", i / 4096, b[i]);
			return 1;
		}
	munmap(a, LEN);
	munmap(b, LEN);
	close(fd);
	puts("ok");
	return 0;
}
