/*
 * test_zero.c: the zero and null devices through the POSIX-mirror calls.
 */
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <fomap/fomap.h>

#include "../test.h"

TEST(zero_shared_fault_fill)
{
	fm_test_need_uffd();
	int fd = fm_open("/dev/fomap/zero", O_RDWR);
	ASSERT_GE(fd, 0);
	size_t len = 1024 * PG;
	char *p = fm_mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT(p != MAP_FAILED);
	struct fm_stats before, after;
	fm_engine_stats(&before);
	for (size_t i = 0; i < len; i += PG) {
		ASSERT_EQ(p[i], 0);
		p[i] = (char)(i / PG);
	}
	for (size_t i = 0; i < len; i += PG)
		ASSERT_EQ(p[i], (char)(i / PG));
	fm_engine_stats(&after);
	ASSERT_GE(after.faults - before.faults, 1);
	ASSERT_LE(after.faults - before.faults, 256); /* fault-around worked */
	/* The engine counts a window's pages just after it wakes the thread. */
	for (int i = 0; i < 1000 && after.pages - before.pages < 1024; i++) {
		usleep(1000);
		fm_engine_stats(&after);
	}
	ASSERT_EQ(after.pages - before.pages, 1024);
	ASSERT_OK(fm_munmap(p, len));
	ASSERT_OK(fm_close(fd));
}
