/*
 * test_guard.c: the guard device with real mappings: read-only ranges
 * refused or recorded, faults counted by kind, removal on request or on a
 * trip wire, re-fault (refill) or SIGBUS (revoke), and bad input.
 *
 * Mappings use MADV_RANDOM so that every fault maps one page and the
 * counters can be predicted exactly.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <unistd.h>

#include <fomap/fomap.h>
#include <fomap/guard.h>

#include "../test.h"

static int
guard_dev(int flags)
{
	int fd = fm_open(FM_GUARD_DEV, flags);

	ASSERT_GE(fd, 0);
	return fd;
}

/* A fresh region of npages, and its descriptor. */
static int
guard_setup(size_t npages)
{
	int fd = guard_dev(O_RDWR);
	struct fm_guard_setup s = {.size = npages * PG};

	ASSERT_OK(fm_ioctl(fd, FM_GUARD_SETUP, &s));
	ASSERT_EQ(s.size, npages * PG);
	return fd;
}

/* Volatile: the order of accesses is what the fault counters see. */
static volatile char *
guard_map(int fd, size_t len)
{
	char *p = fm_mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);

	ASSERT(p != MAP_FAILED);
	ASSERT_OK(fm_madvise(p, len, MADV_RANDOM));
	return p;
}

/* The page of a SIGBUS address (the engine reports the faulting page). */
static volatile char *
page_of(void *addr)
{
	return (volatile char *)((uintptr_t)addr & ~(uintptr_t)(PG - 1));
}

static struct fm_guard_stats
gstats(int fd)
{
	struct fm_guard_stats s;

	ASSERT_OK(fm_ioctl(fd, FM_GUARD_STATS, &s));
	return s;
}

static void
gprotect(int fd, size_t pg, size_t n, int prot, int policy)
{
	struct fm_guard_protect a = {pg * PG, n * PG, (uint32_t)prot,
	    (uint32_t)policy};

	ASSERT_OK(fm_ioctl(fd, FM_GUARD_PROTECT, &a));
}

static void
gremove(int fd, size_t pg, size_t n, int policy)
{
	struct fm_guard_remove a = {pg * PG, n * PG, (uint32_t)policy, 0};

	ASSERT_OK(fm_ioctl(fd, FM_GUARD_REMOVE, &a));
}

static void
grestore(int fd, size_t pg, size_t n)
{
	struct fm_guard_restore a = {pg * PG, n * PG};

	ASSERT_OK(fm_ioctl(fd, FM_GUARD_RESTORE, &a));
}

static void
garm(int fd, size_t pg, size_t n, unsigned writes, int policy)
{
	struct fm_guard_arm a = {pg * PG, n * PG, writes, (uint32_t)policy};

	ASSERT_OK(fm_ioctl(fd, FM_GUARD_ARM, &a));
}

static uint8_t
gpage(int fd, size_t pg)
{
	struct fm_guard_pages a = {.off = pg * PG, .npages = 1};

	ASSERT_OK(fm_ioctl(fd, FM_GUARD_PAGES, &a));
	return a.state[0];
}

/* Faults by kind; a removal (refill) makes the next access fault again. */
TEST(guard_counts_faults_by_kind)
{
	fm_test_need_uffd();
	int fd = guard_setup(16);
	volatile char *p = guard_map(fd, 16 * PG);
	struct fm_guard_stats s;
	struct fm_stats e0, e1;

	ASSERT_EQ(p[0], 0); /* read fault, fills a page */
	p[PG] = 'w'; /* write fault, fills a page */
	ASSERT_EQ(p[0], 0); /* mapped: no fault */
	p[PG + 1] = 'x';
	s = gstats(fd);
	ASSERT_EQ(s.read_faults, 1);
	ASSERT_EQ(s.write_faults, 1);
	ASSERT_EQ(s.pages_filled, 2);
	ASSERT_EQ(s.read_minor + s.write_minor, 0);
	ASSERT_EQ(gpage(fd, 0), FM_GUARD_PG_RESIDENT);
	ASSERT_EQ(gpage(fd, 2), 0);

	gremove(fd, 0, 2, FM_GUARD_REFILL);
	ASSERT_EQ(gpage(fd, 1), FM_GUARD_PG_RESIDENT); /* data kept */
	fm_engine_stats(&e0);
	ASSERT_EQ(p[0], 0); /* faults again: minor */
	p[PG + 2] = 'y'; /* ditto, a write */
	ASSERT_EQ(p[PG], 'w');
	ASSERT_EQ(p[PG + 1], 'x');
	fm_engine_stats(&e1);
	s = gstats(fd);
	ASSERT_EQ(s.read_minor, 1);
	ASSERT_EQ(s.write_minor, 1);
	ASSERT_EQ(s.removals, 1);
	ASSERT_EQ(s.pages_filled, 2); /* nothing filled again */
	ASSERT_GE(e1.faults - e0.faults, 2);
	ASSERT_GE(e1.minor - e0.minor, 2);
	ASSERT_OK(fm_munmap((void *)p, 16 * PG));
	ASSERT_OK(fm_close(fd));
}

/* Read-only, policy refuse: SIGBUS in every mapping, data untouched. */
TEST(guard_readonly_refuses_writes)
{
	fm_test_need_uffd();
	int fd = guard_setup(8), fd2 = guard_dev(O_RDWR);
	volatile char *p = guard_map(fd, 8 * PG), *q = guard_map(fd2, 8 * PG);

	p[0] = 'a';
	p[PG] = 'b';
	gprotect(fd, 0, 1, PROT_READ, FM_GUARD_REFUSE);
	ASSERT_EQ(gpage(fd, 0), FM_GUARD_PG_RESIDENT | FM_GUARD_PG_RDONLY);
	ASSERT_EQ(gpage(fd, 1), FM_GUARD_PG_RESIDENT);

	ASSERT_EQ(fm_test_probe(p + 10, 1), SIGBUS);
	ASSERT_PTR_EQ(page_of(fm_test_fault_addr()), p);
	ASSERT_EQ(fm_test_probe(q + 20, 1), SIGBUS); /* the other mapping too */
	ASSERT_EQ(fm_test_probe(q + 30, 1), SIGBUS); /* and again */
	ASSERT_EQ(gstats(fd).refused, 3);
	ASSERT_EQ(fm_test_probe(p, 0), 0); /* still readable */
	ASSERT_EQ(p[0], 'a');
	ASSERT_EQ(q[0], 'a');
	q[PG] = 'B'; /* the next page is not */
	ASSERT_EQ(p[PG], 'B');

	gprotect(fd, 0, 1, PROT_READ | PROT_WRITE, 0);
	ASSERT_EQ(gpage(fd, 0), FM_GUARD_PG_RESIDENT);
	ASSERT_EQ(fm_test_probe(p + 10, 1), 0);
	p[0] = 'c';
	ASSERT_EQ(q[0], 'c');
	ASSERT_EQ(gstats(fd).refused, 3);
	ASSERT_EQ(gstats(fd).recorded, 0);
	ASSERT_OK(fm_munmap((void *)p, 8 * PG));
	ASSERT_OK(fm_munmap((void *)q, 8 * PG));
	ASSERT_OK(fm_close(fd));
	ASSERT_OK(fm_close(fd2));
}

/* Read-only, policy record: the write goes through and is recorded. */
TEST(guard_readonly_records_writes)
{
	fm_test_need_uffd();
	int fd = guard_setup(8);
	volatile char *p = guard_map(fd, 8 * PG), *q = guard_map(fd, 8 * PG);

	ASSERT_EQ(p[PG], 0);
	ASSERT_EQ(q[PG], 0);
	gprotect(fd, 0, 4, PROT_READ, FM_GUARD_RECORD);
	ASSERT_EQ(gstats(fd).recorded, 0);
	p[PG] = 'r'; /* write-protect fault: recorded */
	struct fm_guard_stats s = gstats(fd);
	ASSERT_EQ(s.recorded, 1);
	ASSERT_EQ(s.last_recorded, PG);
	ASSERT_EQ(gpage(fd, 1),
	    FM_GUARD_PG_RESIDENT | FM_GUARD_PG_RDONLY | FM_GUARD_PG_RECORDED);
	ASSERT_EQ(gpage(fd, 2), FM_GUARD_PG_RDONLY); /* never touched */
	ASSERT_EQ(q[PG], 'r');
	p[PG + 1] = 's'; /* writable in p now: not seen */
	ASSERT_EQ(gstats(fd).recorded, 1);
	q[PG + 2] = 't'; /* q's first write: seen */
	ASSERT_EQ(gstats(fd).recorded, 2);
	p[3 * PG] = 'u'; /* fills write-protected, then records */
	s = gstats(fd);
	ASSERT_EQ(s.recorded, 3);
	ASSERT_EQ(s.last_recorded, 3 * PG);
	ASSERT_EQ(s.refused, 0);
	ASSERT_EQ(q[3 * PG], 'u');
	ASSERT_OK(fm_munmap((void *)p, 8 * PG));
	ASSERT_OK(fm_munmap((void *)q, 8 * PG));
	ASSERT_OK(fm_close(fd));
}

/* Removal with policy refill, seen from two mappings: both fault again. */
TEST(guard_remove_refill_refaults_everywhere)
{
	fm_test_need_uffd();
	int fd = guard_setup(8);
	volatile char *p = guard_map(fd, 8 * PG), *q = guard_map(fd, 8 * PG);

	for (int i = 0; i < 8; i++)
		p[i * PG] = (char)('A' + i);
	for (int i = 0; i < 8; i++)
		ASSERT_EQ(q[i * PG], 'A' + i);
	struct fm_guard_stats s0 = gstats(fd);
	gremove(fd, 2, 4, FM_GUARD_REFILL);
	for (int i = 0; i < 8; i++) {
		ASSERT_EQ(p[i * PG], 'A' + i);
		ASSERT_EQ(q[i * PG], 'A' + i);
	}
	struct fm_guard_stats s1 = gstats(fd);
	ASSERT_EQ(s1.read_minor - s0.read_minor, 8); /* 4 pages, 2 mappings */
	ASSERT_EQ(s1.read_faults, s0.read_faults);
	ASSERT_EQ(s1.write_faults, s0.write_faults);
	ASSERT_OK(fm_munmap((void *)p, 8 * PG));
	ASSERT_OK(fm_munmap((void *)q, 8 * PG));
	ASSERT_OK(fm_close(fd));
}

/* Removal with policy revoke: SIGBUS everywhere until restored. */
TEST(guard_revoke_gives_sigbus_until_restored)
{
	fm_test_need_uffd();
	int fd = guard_setup(8), ro = guard_dev(O_RDONLY);
	volatile char *p = guard_map(fd, 8 * PG);
	volatile char *q = fm_mmap(NULL, 8 * PG, PROT_READ, MAP_SHARED, ro, 0);

	ASSERT(q != MAP_FAILED);
	for (int i = 0; i < 8; i++)
		p[i * PG] = (char)('A' + i);
	ASSERT_EQ(q[2 * PG], 'C');
	gremove(fd, 1, 2, FM_GUARD_REVOKE);
	ASSERT_EQ(gpage(fd, 1),
	    FM_GUARD_PG_REVOKED); /* and no longer resident */
	ASSERT_EQ(gpage(fd, 3), FM_GUARD_PG_RESIDENT);

	ASSERT_EQ(fm_test_probe(p + PG, 0), SIGBUS);
	ASSERT_PTR_EQ(page_of(fm_test_fault_addr()), p + PG);
	ASSERT_EQ(fm_test_probe(p + 2 * PG, 1), SIGBUS);
	ASSERT_EQ(fm_test_probe(q + 2 * PG, 0), SIGBUS);
	ASSERT_EQ(fm_test_probe(q + PG, 0), SIGBUS); /* every time */
	/*
	 * revoked counts the hook's refusals, not accesses: a refusal its
	 * thread was not seen waiting for (tell_how: TELL_NOT) is kept for
	 * the retry only FM_REFUSAL_US; a retry later than that (a loaded
	 * machine) asks the hook again. Each access got its one SIGBUS above.
	 */
	uint64_t revoked = gstats(fd).revoked;
	ASSERT_GE(revoked, 4);
	ASSERT_EQ(p[0], 'A'); /* the rest is fine */
	ASSERT_EQ(q[3 * PG], 'D');

	grestore(fd, 1, 2);
	ASSERT_EQ(gpage(fd, 1), 0);
	ASSERT_EQ(fm_test_probe(q + PG, 0), 0);
	ASSERT_EQ(q[PG], 0); /* revoked data is gone */
	p[2 * PG] = 'z';
	ASSERT_EQ(q[2 * PG], 'z');
	ASSERT_EQ(gstats(fd).revoked, revoked); /* restored: none refused */
	ASSERT_OK(fm_munmap((void *)p, 8 * PG));
	ASSERT_OK(fm_munmap((void *)q, 8 * PG));
	ASSERT_OK(fm_close(fd));
	ASSERT_OK(fm_close(ro));
}

/* A wire with policy refill: N writes go through, the next removes. */
TEST(guard_wire_refill)
{
	fm_test_need_uffd();
	int fd = guard_setup(16);
	volatile char *p = guard_map(fd, 16 * PG);

	ASSERT_EQ(p[3 * PG], 0); /* mapped before the wire */
	garm(fd, 0, 4, 2, FM_GUARD_REFILL);
	ASSERT_EQ(gpage(fd, 0), FM_GUARD_PG_WIRED);
	ASSERT_EQ(gpage(fd, 3), FM_GUARD_PG_WIRED | FM_GUARD_PG_RESIDENT);
	ASSERT_EQ(gpage(fd, 4), 0);
	p[0] = 1; /* write 1 */
	p[PG] = 2; /* write 2 */
	p[1] = 9; /* same page: not a new write */
	p[5 * PG] = 5; /* outside the wire */
	ASSERT_EQ(p[2 * PG], 0); /* reads do not count */
	struct fm_guard_stats s = gstats(fd);
	ASSERT_EQ(s.trips, 0);
	ASSERT_EQ(s.removals, 0);

	p[3 * PG] = 3; /* write 3: trips, goes through */
	s = gstats(fd);
	ASSERT_EQ(s.trips, 1);
	ASSERT_EQ(s.removals, 1);
	ASSERT_EQ(gpage(fd, 0), FM_GUARD_PG_RESIDENT); /* disarmed, kept */
	uint64_t minor = s.read_minor + s.write_minor;
	ASSERT_EQ(p[3 * PG], 3); /* the tripping page stayed */
	ASSERT_EQ(gstats(fd).read_minor + gstats(fd).write_minor, minor);
	ASSERT_EQ(p[0], 1); /* the others fault again */
	ASSERT_EQ(p[1], 9);
	ASSERT_EQ(p[PG], 2);
	ASSERT_EQ(p[2 * PG], 0);
	ASSERT_EQ(gstats(fd).read_minor + gstats(fd).write_minor, minor + 3);
	ASSERT_EQ(p[5 * PG], 5);
	p[2 * PG] = 7; /* no wire: plain writes now */
	ASSERT_EQ(gstats(fd).trips, 1);
	ASSERT_OK(fm_munmap((void *)p, 16 * PG));
	ASSERT_OK(fm_close(fd));
}

/* A wire with policy revoke: the tripping write and all after get SIGBUS. */
TEST(guard_wire_revoke)
{
	fm_test_need_uffd();
	int fd = guard_setup(16);
	volatile char *p = guard_map(fd, 16 * PG);

	garm(fd, 4, 4, 1, FM_GUARD_REVOKE);
	p[4 * PG] = 'x'; /* write 1: allowed */
	ASSERT_EQ(p[4 * PG], 'x');
	ASSERT_EQ(gstats(fd).trips, 0);
	ASSERT_EQ(fm_test_probe(p + 5 * PG, 1), SIGBUS); /* write 2: trips */
	struct fm_guard_stats s = gstats(fd);
	ASSERT_EQ(s.trips, 1);
	ASSERT_EQ(s.removals, 1);
	ASSERT_EQ(fm_test_probe(p + 4 * PG, 0), SIGBUS); /* removed, revoked */
	ASSERT_EQ(fm_test_probe(p + 7 * PG, 0), SIGBUS);
	ASSERT_EQ(gpage(fd, 4), FM_GUARD_PG_REVOKED);
	ASSERT_EQ(fm_test_probe(p + 3 * PG, 1), 0); /* outside: fine */
	ASSERT_EQ(fm_test_probe(p + 8 * PG, 1), 0);
	grestore(fd, 4, 4);
	ASSERT_EQ(p[4 * PG], 0);
	p[5 * PG] = 'y';
	ASSERT_EQ(gstats(fd).trips, 1);
	ASSERT_OK(fm_munmap((void *)p, 16 * PG));
	ASSERT_OK(fm_close(fd));
}

/* Wires count writes to read-only pages that their policy allows. */
TEST(guard_wire_over_recorded_writes)
{
	fm_test_need_uffd();
	int fd = guard_setup(8);
	volatile char *p = guard_map(fd, 8 * PG);

	gprotect(fd, 0, 4, PROT_READ, FM_GUARD_RECORD);
	garm(fd, 0, 4, 1, FM_GUARD_REVOKE);
	p[0] = 1; /* recorded, counted */
	ASSERT_EQ(gstats(fd).recorded, 1);
	ASSERT_EQ(fm_test_probe(p + PG, 1), SIGBUS); /* trips: not recorded */
	struct fm_guard_stats s = gstats(fd);
	ASSERT_EQ(s.recorded, 1);
	ASSERT_EQ(s.trips, 1);
	ASSERT_EQ(s.refused, 0);
	ASSERT_EQ(fm_test_probe(p, 0), SIGBUS);
	ASSERT_OK(fm_munmap((void *)p, 8 * PG));
	ASSERT_OK(fm_close(fd));
}

/* Making a wired range read-write does not blind the wire. */
TEST(guard_wire_survives_protect)
{
	fm_test_need_uffd();
	int fd = guard_setup(8);
	volatile char *p = guard_map(fd, 8 * PG);

	garm(fd, 0, 2, 1, FM_GUARD_REVOKE);
	ASSERT_EQ(p[0], 0); /* mapped write-protected */
	ASSERT_EQ(p[PG], 0);
	gprotect(fd, 0, 2, PROT_READ, FM_GUARD_RECORD);
	gprotect(fd, 0, 2, PROT_READ | PROT_WRITE, 0);
	p[0] = 1; /* write 1: still seen */
	ASSERT_EQ(fm_test_probe(p + PG, 1), SIGBUS); /* write 2 trips */
	ASSERT_EQ(gstats(fd).trips, 1);
	ASSERT_EQ(gstats(fd).recorded, 0);
	ASSERT_OK(fm_munmap((void *)p, 8 * PG));
	ASSERT_OK(fm_close(fd));
}

/* A new region for new mappings; old mappings keep the old one. */
TEST(guard_setup_starts_afresh)
{
	fm_test_need_uffd();
	int fd = guard_setup(4);
	volatile char *old = guard_map(fd, 4 * PG);

	old[0] = 'o';
	gprotect(fd, 1, 1, PROT_READ, FM_GUARD_REFUSE);
	struct fm_guard_setup su = {.size = 8 * PG - 100};
	ASSERT_OK(fm_ioctl(fd, FM_GUARD_SETUP, &su));
	ASSERT_EQ(su.size, 8 * PG);
	struct fm_guard_stats s = gstats(fd);
	ASSERT_EQ(s.size, 8 * PG);
	ASSERT_EQ(s.write_faults + s.read_faults, 0);
	volatile char *p = guard_map(fd, 8 * PG);
	ASSERT_EQ(p[0], 0);
	p[PG] = 1; /* not read-only here */
	ASSERT_EQ(old[0], 'o');
	ASSERT_EQ(fm_test_probe(old + PG, 1), SIGBUS); /* the old rules hold */
	ASSERT_EQ(gstats(fd).refused, 0); /* counted in the old one */
	ASSERT_EQ(gstats(fd).read_faults, 1);
	ASSERT_OK(fm_munmap((void *)old, 4 * PG));
	ASSERT_OK(fm_munmap((void *)p, 8 * PG));
	ASSERT_OK(fm_close(fd));
}

/* Every request with bad input fails with its errno and changes nothing. */
TEST(guard_bad_input)
{
	fm_test_need_uffd();
	int fd = guard_setup(8), ro = guard_dev(O_RDONLY);
	struct fm_guard_protect pr = {0, PG, PROT_READ, FM_GUARD_REFUSE};
	struct fm_guard_remove rm = {0, PG, FM_GUARD_REVOKE, 0};
	struct fm_guard_arm ar = {0, PG, 1, FM_GUARD_REVOKE};
	struct fm_guard_pages pa = {.off = 0, .npages = 1};
	struct fm_guard_setup su = {.size = 0};

	ASSERT_ERRNO(fm_ioctl(fd, _IOW('w', 77, int), &fd), ENOTTY);
	ASSERT_ERRNO(fm_ioctl(fd, FM_GUARD_PROTECT, NULL), EFAULT);
	ASSERT_ERRNO(fm_ioctl(fd, FM_GUARD_SETUP, &su), EINVAL);
	su.size = FM_GUARD_MAXSIZE + 1;
	ASSERT_ERRNO(fm_ioctl(fd, FM_GUARD_SETUP, &su), EINVAL);

	/* Changes need a descriptor open for writing; looking does not. */
	ASSERT_ERRNO(fm_ioctl(ro, FM_GUARD_PROTECT, &pr), EBADF);
	ASSERT_ERRNO(fm_ioctl(ro, FM_GUARD_REMOVE, &rm), EBADF);
	ASSERT_ERRNO(fm_ioctl(ro, FM_GUARD_ARM, &ar), EBADF);
	ASSERT_OK(fm_ioctl(ro, FM_GUARD_PAGES, &pa));
	ASSERT_EQ(gstats(ro).size, 8 * PG);

	pr.off = 100;
	ASSERT_ERRNO(fm_ioctl(fd, FM_GUARD_PROTECT, &pr), EINVAL);
	pr = (struct fm_guard_protect){0, 0, PROT_READ, FM_GUARD_REFUSE};
	ASSERT_ERRNO(fm_ioctl(fd, FM_GUARD_PROTECT, &pr), EINVAL);
	pr = (struct fm_guard_protect){8 * PG, PG, PROT_READ, FM_GUARD_REFUSE};
	ASSERT_ERRNO(fm_ioctl(fd, FM_GUARD_PROTECT, &pr), ENXIO);
	pr = (struct fm_guard_protect){7 * PG, 2 * PG, PROT_READ,
	    FM_GUARD_REFUSE};
	ASSERT_ERRNO(fm_ioctl(fd, FM_GUARD_PROTECT, &pr), ENXIO);
	pr = (struct fm_guard_protect){0, PG, PROT_WRITE, 0};
	ASSERT_ERRNO(fm_ioctl(fd, FM_GUARD_PROTECT, &pr), EINVAL);
	pr = (struct fm_guard_protect){0, PG, PROT_READ, FM_GUARD_REFILL};
	ASSERT_ERRNO(fm_ioctl(fd, FM_GUARD_PROTECT, &pr), EINVAL);
	pr = (struct fm_guard_protect){0, PG, PROT_READ | PROT_WRITE,
	    FM_GUARD_RECORD};
	ASSERT_ERRNO(fm_ioctl(fd, FM_GUARD_PROTECT, &pr), EINVAL);
	rm.policy = FM_GUARD_RECORD;
	ASSERT_ERRNO(fm_ioctl(fd, FM_GUARD_REMOVE, &rm), EINVAL);
	rm = (struct fm_guard_remove){0, PG, FM_GUARD_REFILL, 1};
	ASSERT_ERRNO(fm_ioctl(fd, FM_GUARD_REMOVE, &rm), EINVAL);
	rm = (struct fm_guard_remove){UINT64_MAX & ~(uint64_t)(PG - 1), PG,
	    FM_GUARD_REFILL, 0};
	ASSERT_ERRNO(fm_ioctl(fd, FM_GUARD_REMOVE, &rm), ENXIO);
	struct fm_guard_restore rs = {PG, UINT64_MAX};
	ASSERT_ERRNO(fm_ioctl(fd, FM_GUARD_RESTORE, &rs), ENXIO);
	ar.policy = 0;
	ASSERT_ERRNO(fm_ioctl(fd, FM_GUARD_ARM, &ar), EINVAL);
	ar.policy = FM_GUARD_REFILL;
	for (int i = 0; i < FM_GUARD_MAXWIRES; i++)
		ASSERT_OK(fm_ioctl(fd, FM_GUARD_ARM, &ar));
	ASSERT_ERRNO(fm_ioctl(fd, FM_GUARD_ARM, &ar), ENOSPC);
	pa.npages = 0;
	ASSERT_ERRNO(fm_ioctl(fd, FM_GUARD_PAGES, &pa), EINVAL);
	pa.npages = FM_GUARD_MAXPAGES + 1;
	ASSERT_ERRNO(fm_ioctl(fd, FM_GUARD_PAGES, &pa), EINVAL);
	pa = (struct fm_guard_pages){.off = 4 * PG, .npages = 5};
	ASSERT_ERRNO(fm_ioctl(fd, FM_GUARD_PAGES, &pa), ENXIO);

	/* Mappings: private, past the end, beyond the open mode. */
	ASSERT_ERRNO(fm_mmap(NULL, PG, PROT_READ, MAP_PRIVATE, fd, 0), EINVAL);
	ASSERT_ERRNO(fm_mmap(NULL, 9 * PG, PROT_READ, MAP_SHARED, fd, 0),
	    ENXIO);
	ASSERT_ERRNO(fm_mmap(NULL, PG, PROT_READ, MAP_SHARED, fd, 8 * PG),
	    ENXIO);
	ASSERT_ERRNO(fm_mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, ro,
	                 0),
	    EACCES);

	/* Nothing changed: no page is read-only or revoked; it all works. */
	volatile char *p = guard_map(fd, 8 * PG);
	for (int i = 0; i < 8; i++) {
		ASSERT_EQ(fm_test_probe(p + i * PG, 1), 0);
		ASSERT_EQ(gpage(fd, (size_t)i) & ~FM_GUARD_PG_WIRED,
		    FM_GUARD_PG_RESIDENT);
	}
	struct fm_guard_stats s = gstats(fd);
	ASSERT_EQ(s.refused + s.revoked + s.removals + s.recorded, 0);
	ASSERT_OK(fm_munmap((void *)p, 8 * PG));
	ASSERT_OK(fm_close(ro));
	ASSERT_OK(fm_close(fd));
}

/* ------------------------------------------------------------------------
 * Threads.
 */

#define NT 3
#define NPG 8 /* pages per thread */

struct gthread {
	char *p;
	int id;
	atomic_int *stop;
	long writes, sigbus;
	char last[NPG];
};

static __thread sigjmp_buf try_jb;

static void
try_handler(int sig)
{
	siglongjmp(try_jb, sig);
}

/* Store v at b. => 0, or the signal the store raised (the store did not happen) */
static int
try_write(volatile char *b, char v)
{
	int sig = sigsetjmp(try_jb, 1);

	if (sig == 0)
		*b = v;
	return sig;
}

/* Write this thread's pages over and over, counting refused writes. */
static void *
gthread_main(void *arg)
{
	struct gthread *t = arg;

	for (unsigned v = 1; !atomic_load(t->stop); v++) {
		for (int i = 0; i < NPG; i++) {
			volatile char *b = t->p + (t->id * NPG + i) * PG;
			int sig = try_write(b, (char)v);

			if (sig == SIGBUS) {
				t->sigbus++;
				if (*b != t->last[i])
					return "a refused write changed the "
					       "page";
			} else if (sig != 0) {
				return "unexpected signal";
			} else {
				t->last[i] = (char)v;
			}
			t->writes++;
		}
	}
	return NULL;
}

/*
 * Threads write while the protection flips, ranges are removed and refused:
 * every refused write is exactly one SIGBUS, no write is lost.
 */
TEST_TAGGED(guard_threads_protect_and_remove, "thread")
{
	fm_test_need_uffd();
	int fd = guard_setup(NT * NPG);
	volatile char *p = guard_map(fd, NT * NPG * PG);
	struct gthread t[NT];
	pthread_t th[NT];
	atomic_int stop = 0;
	struct sigaction sa = {.sa_handler = try_handler};

	sigemptyset(&sa.sa_mask);
	ASSERT_OK(sigaction(SIGBUS, &sa, NULL));
	for (int i = 0; i < NT; i++) {
		t[i] = (struct gthread){.p = (char *)p, .id = i, .stop = &stop};
		ASSERT_EQ(pthread_create(&th[i], NULL, gthread_main, &t[i]), 0);
	}
	for (int k = 0; k < 200; k++) {
		size_t pg = (size_t)k % (NT * NPG - 4);

		gprotect(fd, pg, 4, PROT_READ,
		    k % 2 ? FM_GUARD_REFUSE : FM_GUARD_RECORD);
		usleep(500);
		gremove(fd, (size_t)(k * 7) % (NT * NPG - 2), 2,
		    FM_GUARD_REFILL);
		usleep(200);
		gprotect(fd, pg, 4, PROT_READ | PROT_WRITE, 0);
		usleep(200);
	}
	atomic_store(&stop, 1);
	long sigbus = 0, writes = 0;
	for (int i = 0; i < NT; i++) {
		void *why;

		ASSERT_EQ(pthread_join(th[i], &why), 0);
		if (why != NULL)
			fm_test_fail(__FILE__, __LINE__, "thread %d: %s", i,
			    (char *)why);
		sigbus += t[i].sigbus;
		writes += t[i].writes;
		for (int j = 0; j < NPG; j++)
			ASSERT_EQ(p[(i * NPG + j) * PG], t[i].last[j]);
	}
	struct fm_guard_stats s = gstats(fd);
	/*
	 * Every SIGBUS is a refusal; a refusal whose write was retried
	 * before it was answered (its page was removed and mapped again,
	 * which wakes the writer) and then went through after the
	 * protection changed back gets no SIGBUS: it came too late.
	 */
	ASSERT_GE(s.refused, sigbus);
	ASSERT_LE(s.refused - sigbus, s.removals);
	ASSERT_GE(sigbus, 1); /* the test did race writes with refusal */
	ASSERT_GE(writes - sigbus, 1);
	ASSERT_GE(s.recorded, 1);
	ASSERT_EQ(s.removals, 200);
	ASSERT_EQ(s.revoked, 0);
	ASSERT_OK(fm_munmap((void *)p, NT * NPG * PG));
	ASSERT_OK(fm_close(fd));
}
