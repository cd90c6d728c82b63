/*
 * demo.c: fomap's main job, step by step (make demo).
 *
 * In embedded mode (no daemon, no set-up call) this program opens the
 * built-in drivers and walks through what user-space drivers can do with
 * mmap(2) under fomap: a cloning device with private handles and shared
 * buffers (gem), eviction and transparent re-fault, a driver that manages
 * its mappings' protection and removes them (guard), and an old-style
 * driver with only d_mmap, served by the device pager (fb). Every access
 * below is a plain load or store through a real mapping; the drivers see
 * only the faults the MMU reports.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <fomap/driver.h>
#include <fomap/fb.h>
#include <fomap/fomap.h>
#include <fomap/gem.h>
#include <fomap/guard.h>

#define PG FM_PAGE_SIZE /* the demo counts in pages */

static sigjmp_buf jb;
static volatile sig_atomic_t armed;

static void
on_sigbus(int sig)
{
	if (armed)
		siglongjmp(jb, sig);
	signal(sig, SIG_DFL);
	raise(sig);
}

/* Load (or store c) at p. => 0, or the signal it raised. */
static int
try_access(volatile char *p, int store, char c)
{
	int sig = sigsetjmp(jb, 1);

	if (sig == 0) {
		armed = 1;
		if (store)
			*p = c;
		else
			(void)*p;
	}
	armed = 0;
	return sig;
}

static const char *
outcome(int sig)
{
	return sig == 0 ? "ok" : sig == SIGBUS ? "SIGBUS" : "SIGSEGV";
}

static void
step(const char *title)
{
	printf("\n== %s\n\n", title);
}

static void
say(const char *fmt, ...)
{
	va_list ap;

	printf("   ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
}

static void
die(const char *what)
{
	fprintf(stderr, "fomap-demo: %s: %s\n", what, strerror(errno));
	exit(1);
}

static int
ioc(int fd, unsigned long req, void *arg, const char *what)
{
	if (fm_ioctl(fd, req, arg) < 0)
		die(what);
	return 0;
}

static struct fm_gem_info
gem_info(int fd, uint32_t h)
{
	struct fm_gem_info i = {.handle = h};

	ioc(fd, FM_GEM_INFO, &i, "GEM_INFO");
	return i;
}

static struct fm_guard_stats
guard_stats(int fd)
{
	struct fm_guard_stats s;

	ioc(fd, FM_GUARD_STATS, &s, "GUARD_STATS");
	return s;
}

static void
guard_range(int fd, unsigned long req, uint64_t pg, uint64_t n, uint32_t a,
    uint32_t b, const char *what)
{
	union {
		struct fm_guard_protect p;
		struct fm_guard_remove r;
		struct fm_guard_restore s;
		struct fm_guard_arm w;
	} u;

	memset(&u, 0, sizeof u);
	if (req == FM_GUARD_PROTECT)
		u.p = (struct fm_guard_protect){pg * PG, n * PG, a, b};
	else if (req == FM_GUARD_REMOVE)
		u.r = (struct fm_guard_remove){pg * PG, n * PG, a, 0};
	else if (req == FM_GUARD_RESTORE)
		u.s = (struct fm_guard_restore){pg * PG, n * PG};
	else
		u.w = (struct fm_guard_arm){pg * PG, n * PG, a, b};
	ioc(fd, req, &u, what);
}

/* ------------------------------------------------------------------------
 * gem
 */

static void
demo_gem(void)
{
	size_t len = 16 * PG;

	step("1. gem: a cloning device; every open has its own handles");
	int a = fm_open(FM_GEM_DEV, O_RDWR), b = fm_open(FM_GEM_DEV, O_RDWR);
	if (a < 0 || b < 0)
		die("open " FM_GEM_DEV);
	say("open A = fm_open(\"%s\") -> fd %d", FM_GEM_DEV, a);
	say("open B = fm_open(\"%s\") -> fd %d", FM_GEM_DEV, b);
	struct fm_gem_create ca = {.size = len}, cb = {.size = PG};
	ioc(a, FM_GEM_CREATE, &ca, "GEM_CREATE");
	ioc(b, FM_GEM_CREATE, &cb, "GEM_CREATE");
	say("A: GEM_CREATE %zu KiB -> handle %u", len / 1024, ca.handle);
	say("B: GEM_CREATE %zu KiB  -> handle %u   (the same number, another "
	    "buffer:",
	    PG / 1024, cb.handle);
	say("                                 handles are private to their "
	    "open)");
	struct fm_gem_mmap_offset oa = {.handle = ca.handle};
	ioc(a, FM_GEM_MMAP_OFFSET, &oa, "GEM_MMAP_OFFSET");
	say("A: GEM_MMAP_OFFSET handle %u -> fake offset %#llx", ca.handle,
	    (unsigned long long)oa.offset);
	errno = 0;
	void *bad =
	    fm_mmap(NULL, len, PROT_READ, MAP_SHARED, b, (off_t)oa.offset);
	say("B: fm_mmap at A's offset -> %s (%s): B holds no handle to it",
	    bad == MAP_FAILED ? "refused" : "MAPPED?!", strerror(errno));
	struct fm_gem_close cl = {.handle = 7};
	errno = 0;
	(void)fm_ioctl(b, FM_GEM_CLOSE, &cl);
	say("B: GEM_CLOSE handle 7 -> %s", strerror(errno));

	step("2. gem: one buffer shared by name, mapped by both opens");
	struct fm_gem_flink fl = {.handle = ca.handle};
	ioc(a, FM_GEM_FLINK, &fl, "GEM_FLINK");
	struct fm_gem_open op = {.name = fl.name};
	ioc(b, FM_GEM_OPEN, &op, "GEM_OPEN");
	say("A: GEM_FLINK handle %u -> global name %u", ca.handle, fl.name);
	say("B: GEM_OPEN name %u -> handle %u in B (size %llu KiB)", fl.name,
	    op.handle, (unsigned long long)op.size / 1024);
	struct fm_gem_mmap_offset ob = {.handle = op.handle};
	ioc(b, FM_GEM_MMAP_OFFSET, &ob, "GEM_MMAP_OFFSET");
	char *pa = fm_mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, a,
	    (off_t)oa.offset);
	char *pb = fm_mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, b,
	    (off_t)ob.offset);
	if (pa == MAP_FAILED || pb == MAP_FAILED)
		die("fm_mmap gem");
	say("A maps it at %p, B at %p: two mappings, one set of pages",
	    (void *)pa, (void *)pb);
	strcpy(pa + 3 * PG, "hello from A");
	say("A writes page 3: \"%s\"", pa + 3 * PG);
	say("B reads page 3:  \"%s\"", pb + 3 * PG);
	strcpy(pb + 9 * PG, "hello back from B");
	say("B writes page 9, A reads it: \"%s\"", pa + 9 * PG);
	for (size_t i = 0; i < len; i += PG)
		pa[i + 100] = (char)(i / PG);

	step("3. gem: eviction to backing storage, then transparent re-fault");
	struct fm_gem_info i0 = gem_info(a, ca.handle);
	say("before: %llu of %zu pages resident, %llu dirty",
	    (unsigned long long)i0.resident, len / PG,
	    (unsigned long long)i0.dirty);
	struct fm_gem_evict ev = {.handle = ca.handle};
	ioc(a, FM_GEM_EVICT, &ev, "GEM_EVICT");
	struct fm_gem_info i1 = gem_info(a, ca.handle);
	say("GEM_EVICT: dirty pages saved (%llu), pages dropped, every mapping "
	    "removed",
	    (unsigned long long)(i1.saved - i0.saved));
	say("after:  %llu pages resident", (unsigned long long)i1.resident);
	struct fm_stats e0, e1;
	fm_engine_stats(&e0);
	int intact = strcmp(pb + 3 * PG, "hello from A") == 0 &&
	    strcmp(pa + 9 * PG, "hello back from B") == 0;
	for (size_t i = 0; i < len; i += PG)
		intact &= pb[i + 100] == (char)(i / PG);
	fm_engine_stats(&e1);
	struct fm_gem_info i2 = gem_info(a, ca.handle);
	say("B reads page 3 again: \"%s\"; all %zu pages %s", pb + 3 * PG,
	    len / PG, intact ? "intact" : "CORRUPT");
	say("the reads faulted (%lu faults; each maps several pages), the "
	    "pager read",
	    e1.faults - e0.faults);
	say("back %llu pages, and %llu pages are resident again",
	    (unsigned long long)(i2.refill - i1.refill),
	    (unsigned long long)i2.resident);

	step("gem buffer counters");
	say("faults %llu (minor %llu), zero-filled %llu, read back %llu, saved "
	    "%llu, evictions %llu",
	    (unsigned long long)i2.faults, (unsigned long long)i2.minor,
	    (unsigned long long)i2.zerofill, (unsigned long long)i2.refill,
	    (unsigned long long)i2.saved, (unsigned long long)i2.evictions);
	fm_munmap(pa, len);
	fm_munmap(pb, len);
	fm_close(a);
	fm_close(b);
	struct fm_gem_stats gs;
	int c = fm_open(FM_GEM_DEV, O_RDONLY);
	ioc(c, FM_GEM_STATS, &gs, "GEM_STATS");
	say("after munmap and close: %llu buffers alive",
	    (unsigned long long)gs.buffers);
	fm_close(c);
	if (!intact) {
		fprintf(stderr, "fomap-demo: gem data was lost\n");
		exit(1);
	}
}

/* ------------------------------------------------------------------------
 * guard
 */

static void
demo_guard(void)
{
	size_t n = 16, len = n * PG;

	step("4. guard: a driver that manages its mapping's protection");
	int fd = fm_open(FM_GUARD_DEV, O_RDWR);
	if (fd < 0)
		die("open " FM_GUARD_DEV);
	struct fm_guard_setup su = {.size = len};
	ioc(fd, FM_GUARD_SETUP, &su, "GUARD_SETUP");
	volatile char *p =
	    fm_mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		die("fm_mmap guard");
	fm_madvise((void *)p, len,
	    MADV_RANDOM); /* one page a fault: easy to count */
	for (size_t i = 0; i < n; i++)
		p[i * PG] = (char)('A' + i);
	say("mapped %zu pages of /dev/fomap/guard and wrote 'A'..'P', one per "
	    "page",
	    n);

	guard_range(fd, FM_GUARD_PROTECT, 2, 2, PROT_READ, FM_GUARD_REFUSE,
	    "GUARD_PROTECT");
	say("GUARD_PROTECT pages 2-3 read-only, policy refuse:");
	int r = try_access(p + 2 * PG, 0, 0);
	say("  read page 2   -> %s ('%c')", outcome(r), p[2 * PG]);
	r = try_access(p + 2 * PG, 1, 'x');
	say("  write page 2  -> %s (refused; page 2 still holds '%c')",
	    outcome(r), p[2 * PG]);

	guard_range(fd, FM_GUARD_PROTECT, 4, 2, PROT_READ, FM_GUARD_RECORD,
	    "GUARD_PROTECT");
	say("GUARD_PROTECT pages 4-5 read-only, policy record:");
	r = try_access(p + 4 * PG, 1, 'e');
	struct fm_guard_stats s = guard_stats(fd);
	say("  write page 4  -> %s (allowed and recorded: %llu write, at page "
	    "%llu)",
	    outcome(r), (unsigned long long)s.recorded,
	    (unsigned long long)(s.last_recorded / PG));

	struct fm_guard_stats s0 = guard_stats(fd);
	guard_range(fd, FM_GUARD_REMOVE, 6, 2, FM_GUARD_REFILL, 0,
	    "GUARD_REMOVE");
	say("GUARD_REMOVE pages 6-7, policy refill (mappings removed, data "
	    "kept):");
	say("  read pages 6, 7 -> '%c' '%c'", p[6 * PG], p[7 * PG]);
	s = guard_stats(fd);
	say("  both faulted again: the driver counted %llu minor faults",
	    (unsigned long long)(s.read_minor - s0.read_minor));

	guard_range(fd, FM_GUARD_REMOVE, 8, 2, FM_GUARD_REVOKE, 0,
	    "GUARD_REMOVE");
	say("GUARD_REMOVE pages 8-9, policy revoke:");
	r = try_access(p + 8 * PG, 0, 0);
	say("  read page 8   -> %s", outcome(r));
	guard_range(fd, FM_GUARD_RESTORE, 8, 2, 0, 0, "GUARD_RESTORE");
	r = try_access(p + 8 * PG, 0, 0);
	say("  GUARD_RESTORE, read page 8 -> %s (value %d: revoked data is "
	    "gone)",
	    outcome(r), p[8 * PG]);

	guard_range(fd, FM_GUARD_ARM, 10, 4, 2, FM_GUARD_REVOKE, "GUARD_ARM");
	say("GUARD_ARM pages 10-13: let 2 writes through, then revoke the "
	    "range:");
	for (int i = 10; i <= 12; i++) {
		r = try_access(p + i * PG, 1, 'w');
		say("  write page %d -> %s", i, outcome(r));
	}
	r = try_access(p + 10 * PG, 0, 0);
	say("  read page 10  -> %s (the wire tripped, %llu trip: the range is "
	    "revoked)",
	    outcome(r), (unsigned long long)guard_stats(fd).trips);
	r = try_access(p + 14 * PG, 0, 0);
	say("  read page 14  -> %s ('%c', outside the wire)", outcome(r),
	    p[14 * PG]);

	step("guard fault counters, by kind");
	s = guard_stats(fd);
	say("read faults %llu, write faults %llu, minor read %llu, minor write "
	    "%llu",
	    (unsigned long long)s.read_faults,
	    (unsigned long long)s.write_faults,
	    (unsigned long long)s.read_minor,
	    (unsigned long long)s.write_minor);
	say("writes to read-only pages: %llu refused, %llu recorded",
	    (unsigned long long)s.refused, (unsigned long long)s.recorded);
	say("accesses to revoked pages: %llu; removals %llu; wires tripped "
	    "%llu",
	    (unsigned long long)s.revoked, (unsigned long long)s.removals,
	    (unsigned long long)s.trips);
	fm_munmap((void *)p, len);
	fm_close(fd);
}

static void
demo_fb(void)
{
	int fd = fm_open(FM_DEVPREFIX "fb", O_RDWR);
	struct fb_info info;
	uint32_t red = 0xff0000ffu;

	step("5. fb: an old-style driver with only d_mmap (the device pager)");
	if (fd < 0)
		die("open /dev/fomap/fb");
	ioc(fd, FB_IOC_INFO, &info, "FB_IOC_INFO");
	size_t len = FB_PIXELS_OFF + info.pixels_len;
	char *m = fm_mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	say("map registers + pixels read-write -> %s: d_mmap says the register "
	    "page is read-only",
	    m == MAP_FAILED ? strerror(errno) : "MAPPED?!");
	m = fm_mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED)
		die("mmap fb");
	ioc(fd, FB_IOC_FILL, &red, "FB_IOC_FILL");
	const struct fb_regs *regs = (const void *)m;
	const uint32_t *px = (const void *)(m + FB_PIXELS_OFF);
	say("mapped read-only: %ux%u pixels; d_mmap was asked for all %zu "
	    "pages",
	    regs->width, regs->height, len / PG);
	say("the driver fills the screen: registers say frame %u, pixel 0 is "
	    "%#010x",
	    regs->frames, px[0]);
	say("page 1 of the mapping is device page 4: the layout is the "
	    "driver's");
	fm_munmap(m, len);
	fm_close(fd);
}

int
main(void)
{
	struct fm_stats st;
	struct sigaction sa = {.sa_handler = on_sigbus};

	setvbuf(stdout, NULL, _IOLBF, 0);
	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, NULL);
	printf("fomap demo: drivers in user space own mmap(2).\n");
	printf("Embedded mode: the fault engine runs as threads of this "
	       "process and\n");
	printf("serves the faults of every fomap mapping through userfaultfd. "
	       "The\n");
	printf("drivers gem, guard and fb are built in: "
	       "fm_open(\"/dev/fomap/NAME\").\n");
	int z = fm_open(FM_DEVPREFIX "zero", O_RDWR);
	char *t =
	    z < 0 ? MAP_FAILED : fm_mmap(NULL, PG, PROT_READ, MAP_SHARED, z, 0);
	if (t == MAP_FAILED) {
		fprintf(stderr,
		    "fomap-demo: cannot map a fomap device (%s).\n"
		    "Userfaultfd must be usable: run as root, or see README.\n",
		    strerror(errno));
		return 1;
	}
	(void)*(volatile char *)t;
	fm_munmap(t, PG);
	fm_close(z);

	demo_gem();
	demo_guard();
	demo_fb();

	step("6. the fault engine's counters, for the whole run");
	fm_engine_stats(&st);
	say("faults served %lu (of which the page was in memory: %lu)",
	    st.faults, st.minor);
	say("writes to write-protected pages %lu, pages mapped %lu", st.wp,
	    st.pages);
	say("answered with SIGBUS %lu, retried after a race %lu", st.sigbus,
	    st.retries);
	printf(
	    "\nDone. docs/drivers.md shows how these drivers are written.\n");
	return 0;
}
