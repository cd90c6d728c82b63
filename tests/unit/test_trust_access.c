/*
 * test_trust_access.c: regression tests for access control that must hold
 * after mmap time too: a shared mapping of a read-only open cannot be made
 * writable, for every kind of device (11), and a page that legacy d_mmap
 * allows only for reading stays read-only (12). mprotect(2) says EACCES
 * for both. Numbers are the defects of the issue these tests came from.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>

#include <fomap/driver.h>
#include <fomap/fb.h>
#include <fomap/fomap.h>
#include <fomap/gem.h>
#include <fomap/guard.h>

#include "test_trust.h"
#include "testdev.h"

/* ------------------------------------------------------------------------
 * 11. A read-only open maps shared read-only, and stays so.
 */

/*
 * Map [off, off+len) of ro (opened O_RDONLY) shared and read-only: making
 * it writable must fail with EACCES, and leave it read-only.
 */
static void
rdonly_stays_rdonly(int ro, off_t off, size_t len, const char *what)
{
	char *p = fm_mmap(NULL, len, PROT_READ, MAP_SHARED, ro, off);
	int r, e;

	ASSERT(p != MAP_FAILED);
	errno = 0;
	r = fm_mprotect(p, len, RW);
	e = errno;
	if (r == 0)
		fm_test_fail(__FILE__, __LINE__,
		    "%s: a shared mapping of a read-only open was made "
		    "writable; a write to it then %s",
		    what,
		    fm_test_probe(p, 1) == 0 ? "went through" : "faulted");
	if (e != EACCES)
		fm_test_fail(__FILE__, __LINE__,
		    "%s: fm_mprotect gave errno %d (%s), want EACCES", what, e,
		    strerror(e));
	ASSERT_EQ(fm_test_probe(p, 1), SIGSEGV);
	ASSERT_EQ(fm_test_probe(p, 0), 0);
	ASSERT_OK(fm_munmap(p, len));
}

TEST(trust_rdonly_open_mprotect_zero)
{
	fm_test_need_uffd();
	int ro = fm_open("/dev/fomap/zero", O_RDONLY);

	ASSERT_GE(ro, 0);
	rdonly_stays_rdonly(ro, 0, 4 * PG, "zero");
	ASSERT_OK(fm_close(ro));
}

TEST(trust_rdonly_open_mprotect_gem)
{
	fm_test_need_uffd();
	int rw = fm_open(FM_GEM_DEV, O_RDWR),
	    ro = fm_open(FM_GEM_DEV, O_RDONLY);
	struct fm_gem_create cr = {.size = 4 * PG};
	struct fm_gem_flink fl;
	struct fm_gem_open op;
	struct fm_gem_mmap_offset mo;

	ASSERT_GE(rw, 0);
	ASSERT_GE(ro, 0);
	ASSERT_OK(fm_ioctl(rw, FM_GEM_CREATE, &cr));
	fl = (struct fm_gem_flink){.handle = cr.handle};
	ASSERT_OK(fm_ioctl(rw, FM_GEM_FLINK, &fl));
	op = (struct fm_gem_open){.name = fl.name};
	ASSERT_OK(fm_ioctl(ro, FM_GEM_OPEN, &op));
	mo = (struct fm_gem_mmap_offset){.handle = op.handle};
	ASSERT_OK(fm_ioctl(ro, FM_GEM_MMAP_OFFSET, &mo));
	rdonly_stays_rdonly(ro, (off_t)mo.offset, 4 * PG, "gem");
	ASSERT_OK(fm_close(ro));
	ASSERT_OK(fm_close(rw));
}

TEST(trust_rdonly_open_mprotect_guard)
{
	fm_test_need_uffd();
	int ro = fm_open(FM_GUARD_DEV, O_RDONLY);

	ASSERT_GE(ro, 0);
	rdonly_stays_rdonly(ro, 0, 4 * PG, "guard");
	ASSERT_OK(fm_close(ro));
}

TEST(trust_rdonly_open_mprotect_fb)
{
	fm_test_need_uffd();
	int ro = fm_open("/dev/fomap/fb", O_RDONLY);

	ASSERT_GE(ro, 0);
	rdonly_stays_rdonly(ro, FB_PIXELS_OFF, 2 * PG, "fb pixels");
	ASSERT_OK(fm_close(ro));
}

/*
 * A driver's object (d_mmap_single). A private mapping of the read-only
 * open may be made writable: its writes are its own copy.
 */
TEST(trust_rdonly_open_mprotect_object)
{
	fm_test_need_uffd();
	struct fm_object *obj;
	char c;

	ASSERT_EQ(fm_object_create(NULL, 4 * PG, NULL, &obj), 0);
	ASSERT_EQ(fm_object_write(obj, 0, "o", 1), 0);
	int ro = testdev_open("rdonly-object", obj, RW, O_RDONLY);
	char *q = fm_mmap(NULL, 4 * PG, PROT_READ, MAP_PRIVATE, ro, 0);
	ASSERT(q != MAP_FAILED);
	ASSERT_OK(fm_mprotect(q, 4 * PG, RW));
	q[0] = 'p';
	ASSERT_EQ(fm_object_read(obj, 0, &c, 1), 0);
	ASSERT_EQ(c, 'o');
	ASSERT_OK(fm_munmap(q, 4 * PG));
	rdonly_stays_rdonly(ro, 0, 4 * PG, "object");
	ASSERT_EQ(fm_object_read(obj, 0, &c, 1), 0);
	ASSERT_EQ(c, 'o');
	ASSERT_OK(fm_close(ro));
	fm_object_rele(obj);
}

TEST(trust_rdonly_open_mprotect_store)
{
	fm_test_need_uffd();
	int file = testdev_tmpfile(4 * PG);
	struct fm_object *obj;

	ASSERT_EQ(fm_store_create(file, 0, 4 * PG, &obj), 0);
	int ro = testdev_open("rdonly-store", obj, RW, O_RDONLY);
	rdonly_stays_rdonly(ro, 0, 4 * PG, "store");
	ASSERT_OK(fm_close(ro));
	fm_object_rele(obj);
	close(file);
}

/* An ordinary file: the host kernel's own mapping. */
TEST(trust_rdonly_open_mprotect_file)
{
	fm_test_need_uffd();
	char path[] = "/tmp/fomap-trust-XXXXXX";
	int fd = mkstemp(path);
	char buf[4 * PG] = {0};

	ASSERT_GE(fd, 0);
	ASSERT_EQ(write(fd, buf, sizeof buf), (ssize_t)sizeof buf);
	int ro = fm_open(path, O_RDONLY);
	ASSERT_GE(ro, 0);
	unlink(path);
	rdonly_stays_rdonly(ro, 0, 4 * PG, "regular file");
	ASSERT_OK(fm_close(ro));
	close(fd);
}

/* ------------------------------------------------------------------------
 * 12. Legacy d_mmap decides per page and per protection: the fb register
 * page, which d_mmap maps only for reading, cannot be made writable
 * later, alone or with writable pixel pages beside it.
 */

TEST(trust_fb_register_page_stays_read_only)
{
	fm_test_need_uffd();
	int fd = fm_open("/dev/fomap/fb", O_RDWR);
	char *px, *regs, *both;

	ASSERT_GE(fd, 0);
	/* The pixels may be made writable: d_mmap allows them so. */
	px = fm_mmap(NULL, PG, PROT_READ, MAP_SHARED, fd, FB_PIXELS_OFF);
	ASSERT(px != MAP_FAILED);
	ASSERT_OK(fm_mprotect(px, PG, RW));
	px[0] = 1;
	ASSERT_OK(fm_munmap(px, PG));

	regs = fm_mmap(NULL, PG, PROT_READ, MAP_SHARED, fd, 0);
	ASSERT(regs != MAP_FAILED);
	ASSERT_EQ(((const struct fb_regs *)regs)->magic, FB_MAGIC);
	errno = 0;
	if (fm_mprotect(regs, PG, RW) == 0)
		fm_test_fail(__FILE__, __LINE__,
		    "the read-only register page was made writable; a write "
		    "to it then %s",
		    fm_test_probe(regs + 100, 1) == 0 ? "went through"
		                                      : "faulted");
	ASSERT_EQ(errno, EACCES);
	ASSERT_EQ(fm_test_probe(regs, 1), SIGSEGV);
	ASSERT_OK(fm_munmap(regs, PG));

	/* Registers and the first pixel page in one mapping. */
	both = fm_mmap(NULL, 2 * PG, PROT_READ, MAP_SHARED, fd, 0);
	ASSERT(both != MAP_FAILED);
	ASSERT_ERRNO(fm_mprotect(both, 2 * PG, RW), EACCES);
	ASSERT_OK(fm_mprotect(both + PG, PG, RW));
	both[PG] = 2;
	ASSERT_EQ(fm_test_probe(both, 1), SIGSEGV);
	ASSERT_EQ(((const struct fb_regs *)both)->magic, FB_MAGIC);
	ASSERT_OK(fm_munmap(both, 2 * PG));
	ASSERT_OK(fm_close(fd));
}
