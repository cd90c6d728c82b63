/*
 * demo_client.c: the ordinary program of make demo-daemon.
 *
 * It knows nothing of fomap but the drivers' ioctl numbers (the headers
 * gem.h and guard.h): it uses open(2), ioctl(2) and mmap(2) on the device
 * files of a fomapd mount, and plain loads and stores through the
 * mappings. fomap-demo-daemon runs it under LD_PRELOAD=libfomap-preload.so,
 * which is what makes its mmaps of gem and guard work (fomapd's engine
 * serves them through this process's userfaultfd).
 *
 *   fomap-demo-client NAME
 *
 * It reads one command a line on standard input, says what it did on
 * standard output ("   NAME: ..."), and answers on descriptor 3, one line
 * a command: "ok [VALUES]" when the call behaved, "SIGBUS" or "SIGSEGV"
 * when an access faulted (caught: the program goes on), else "err WHAT".
 *
 *   gem-create FILE PAGES   open, GEM_CREATE, GEM_FLINK, map -> "ok NAME"
 *   gem-open FILE NAME      open, GEM_OPEN by global name, map
 *   put PG TEXT             store TEXT at the start of page PG
 *   get PG                  -> "ok TEXT" (the string at page PG)
 *   fill                    mark bytes 256.. of every page with its number
 *   check                   every page still has its mark -> ok, or "err"
 *   evict                   GEM_EVICT
 *   info                    GEM_INFO -> "ok RESIDENT DIRTY FAULTS REFILL
 *                           SAVED EVICTIONS"
 *   fork RPG WPG TEXT       a child reads page RPG of the shared mapping,
 *                           writes TEXT to page WPG and exits; we read it
 *   guard-map FILE PAGES    open guard, map its first PAGES pages
 *   letters                 store 'A', 'B', ... at the start of each page
 *   r PG                    load page PG's first byte -> "ok HEX"
 *   w PG CHAR               store CHAR at page PG
 *   protect PG N ro|rw      GUARD_PROTECT (ro: policy refuse)
 *   revoke PG N             GUARD_REMOVE, policy revoke
 *   restore PG N            GUARD_RESTORE
 *   gstats                  GUARD_STATS -> "ok REFUSED REVOKED REMOVALS"
 *   quit                    munmap, close, exit 0
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fomap/gem.h>
#include <fomap/guard.h>

#define PGSZ 4096
#define MARK 256 /* where fill's marks start in a page */

static const char *me; /* "A", "B": the name the demo gave us */
static FILE *reply; /* descriptor 3 */

/* What this process holds: one gem buffer and one guard region. */
static int gem_fd = -1, guard_fd = -1;
static uint32_t gem_handle;
static char *gem;
static volatile char *guard;
static size_t gem_len, guard_len;

static sigjmp_buf jb;
static volatile sig_atomic_t armed;

static void
on_fault(int sig)
{
	if (armed) {
		armed = 0;
		siglongjmp(jb, sig);
	}
	signal(sig, SIG_DFL); /* not ours: the access again, and die of it */
}

static void
say(const char *fmt, ...)
{
	va_list ap;

	printf("   %s: ", me);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

static void
answer(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout); /* our narration before the demo's next line */
	va_start(ap, fmt);
	vfprintf(reply, fmt, ap);
	va_end(ap);
	fputc('\n', reply);
	fflush(reply);
}

/* A failed call: say so, answer "err". */
static void
failed(const char *what)
{
	say("%s: %s", what, strerror(errno));
	answer("err %s: %s", what, strerror(errno));
}

static const char *
signame(int sig)
{
	return sig == SIGBUS ? "SIGBUS" : "SIGSEGV";
}

/* The page PG of a mapping of len bytes, or NULL (and an answer). */
static char *
page(char *base, size_t len, long pg)
{
	if (base == NULL || pg < 0 || (size_t)(pg + 1) * PGSZ > len) {
		answer("err no page %ld mapped", pg);
		return NULL;
	}
	return base + pg * PGSZ;
}

/* Map gem buffer handle h of gem_fd: => 0, or -1 (answered). */
static int
gem_map(void)
{
	struct fm_gem_mmap_offset o = {.handle = gem_handle};

	if (ioctl(gem_fd, FM_GEM_MMAP_OFFSET, &o) < 0) {
		failed("GEM_MMAP_OFFSET");
		return -1;
	}
	gem = mmap(NULL, gem_len, PROT_READ | PROT_WRITE, MAP_SHARED, gem_fd,
	    (off_t)o.offset);
	if (gem == MAP_FAILED) {
		gem = NULL;
		failed("mmap");
		return -1;
	}
	say("mmap(%zu KiB, MAP_SHARED, fd %d, offset %#llx) -> %p",
	    gem_len / 1024, gem_fd, (unsigned long long)o.offset, (void *)gem);
	return 0;
}

static void
gem_create(const char *file, long pages)
{
	struct fm_gem_create c = {.size = (uint64_t)pages * PGSZ};
	struct fm_gem_flink fl = {0};

	if ((gem_fd = open(file, O_RDWR)) < 0)
		return failed("open");
	if (ioctl(gem_fd, FM_GEM_CREATE, &c) < 0)
		return failed("GEM_CREATE");
	gem_handle = fl.handle = c.handle;
	gem_len = c.size;
	if (ioctl(gem_fd, FM_GEM_FLINK, &fl) < 0)
		return failed("GEM_FLINK");
	say("open(\"%s\") = %d; GEM_CREATE %zu KiB -> handle %u; GEM_FLINK "
	    "-> name %u",
	    file, gem_fd, gem_len / 1024, gem_handle, fl.name);
	if (gem_map() == 0)
		answer("ok %u", fl.name);
}

static void
gem_open(const char *file, unsigned name)
{
	struct fm_gem_open g = {.name = name};

	if ((gem_fd = open(file, O_RDWR)) < 0)
		return failed("open");
	if (ioctl(gem_fd, FM_GEM_OPEN, &g) < 0)
		return failed("GEM_OPEN");
	gem_handle = g.handle;
	gem_len = g.size;
	say("open(\"%s\") = %d; GEM_OPEN name %u -> handle %u (%zu KiB)", file,
	    gem_fd, name, gem_handle, gem_len / 1024);
	if (gem_map() == 0)
		answer("ok");
}

static void
gem_put(long pg, const char *text)
{
	char *p = page(gem, gem_len, pg);

	if (p == NULL)
		return;
	snprintf(p, MARK, "%s", text);
	say("writes page %ld: \"%s\"", pg, p);
	answer("ok");
}

static void
gem_get(long pg)
{
	char *p = page(gem, gem_len, pg);

	if (p == NULL)
		return;
	say("reads page %ld: \"%.*s\"", pg, MARK, p);
	answer("ok %.*s", MARK, p);
}

static void
gem_fill(void)
{
	for (size_t pg = 0; pg < gem_len / PGSZ; pg++)
		memset(gem + pg * PGSZ + MARK, (int)(pg + 1), PGSZ - MARK);
	say("marks every page of the buffer with its number (%zu pages)",
	    gem_len / PGSZ);
	answer("ok");
}

static void
gem_check(void)
{
	for (size_t pg = 0; pg < gem_len / PGSZ; pg++)
		for (size_t k = MARK; k < PGSZ; k++)
			if (gem[pg * PGSZ + k] != (char)(pg + 1)) {
				say("page %zu byte %zu is %#x: not its mark",
				    pg, k, (unsigned char)gem[pg * PGSZ + k]);
				answer("err page %zu lost its mark", pg);
				return;
			}
	say("reads every byte of the %zu pages: every mark intact",
	    gem_len / PGSZ);
	answer("ok");
}

static void
gem_evict(void)
{
	struct fm_gem_evict e = {.handle = gem_handle};

	if (ioctl(gem_fd, FM_GEM_EVICT, &e) < 0)
		return failed("GEM_EVICT");
	say("ioctl(GEM_EVICT): the driver saves the buffer and removes every "
	    "mapping of it");
	answer("ok");
}

static void
gem_info(void)
{
	struct fm_gem_info i = {.handle = gem_handle};

	if (ioctl(gem_fd, FM_GEM_INFO, &i) < 0)
		return failed("GEM_INFO");
	say("GEM_INFO: resident %llu, dirty %llu, faults %llu (minor %llu), "
	    "zero-filled %llu,",
	    (unsigned long long)i.resident, (unsigned long long)i.dirty,
	    (unsigned long long)i.faults, (unsigned long long)i.minor,
	    (unsigned long long)i.zerofill);
	say("          read back %llu, saved %llu, evictions %llu",
	    (unsigned long long)i.refill, (unsigned long long)i.saved,
	    (unsigned long long)i.evictions);
	answer("ok %llu %llu %llu %llu %llu %llu",
	    (unsigned long long)i.resident, (unsigned long long)i.dirty,
	    (unsigned long long)i.faults, (unsigned long long)i.refill,
	    (unsigned long long)i.saved, (unsigned long long)i.evictions);
}

/*
 * fork: the child inherits our shared mapping (the preload library keeps
 * it across fork, served by fomapd through the child's userfaultfd).
 */
static void
gem_fork(long rpg, long wpg, const char *text)
{
	char *r = page(gem, gem_len, rpg), *w = r ? page(gem, gem_len, wpg) : 0;
	char before[128];
	pid_t pid;
	int st;

	if (w == NULL)
		return;
	snprintf(before, sizeof before, "%s", r);
	say("fork()");
	fflush(NULL);
	if ((pid = fork()) < 0)
		return failed("fork");
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		say("  the child (pid %d) reads page %ld: \"%s\"",
		    (int)getpid(), rpg, r);
		if (strcmp(r, before) != 0) {
			say("  not what its parent had there: \"%s\"", before);
			_exit(1);
		}
		snprintf(w, PGSZ, "%s", text);
		say("  the child writes page %ld: \"%s\", and exits", wpg,
		    text);
		_exit(0);
	}
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) ||
	    WEXITSTATUS(st) != 0) {
		say("the child failed (status %#x)", st);
		answer("err the child failed");
		return;
	}
	say("the child exited 0; reads page %ld: \"%s\"", wpg, w);
	answer("ok %s", w);
}

static void
guard_map(const char *file, long pages)
{
	void *p;

	if ((guard_fd = open(file, O_RDWR)) < 0)
		return failed("open");
	guard_len = (size_t)pages * PGSZ;
	p = mmap(NULL, guard_len, PROT_READ | PROT_WRITE, MAP_SHARED, guard_fd,
	    0);
	if (p == MAP_FAILED)
		return failed("mmap");
	guard = p;
	say("open(\"%s\") = %d; mmap(%zu KiB, MAP_SHARED) -> %p", file,
	    guard_fd, guard_len / 1024, p);
	answer("ok");
}

static void
guard_letters(void)
{
	for (size_t pg = 0; pg < guard_len / PGSZ; pg++)
		guard[pg * PGSZ] = (char)('A' + pg);
	say("stores 'A'..'%c' at the start of its %zu pages",
	    (char)('A' + guard_len / PGSZ - 1), guard_len / PGSZ);
	answer("ok");
}

/* A load (store: c) at page pg of guard's mapping, signals caught. */
static void
guard_access(long pg, int store, char c)
{
	volatile char *p = (volatile char *)page((char *)guard, guard_len, pg);
	volatile char v = 0;
	int sig;

	if (p == NULL)
		return;
	if ((sig = sigsetjmp(jb, 1)) != 0) {
		if (store)
			say("writes '%c' to page %ld -> %s (caught; carrying "
			    "on)",
			    c, pg, signame(sig));
		else
			say("reads page %ld -> %s (caught; carrying on)", pg,
			    signame(sig));
		answer("%s", signame(sig));
		return;
	}
	armed = 1;
	if (store)
		*p = c;
	else
		v = *p;
	armed = 0;
	if (store) {
		say("writes '%c' to page %ld -> ok", c, pg);
		answer("ok");
	} else {
		if (v >= ' ' && v < 127)
			say("reads page %ld -> ok, '%c'", pg, v);
		else
			say("reads page %ld -> ok, %d", pg, v);
		answer("ok %x", (unsigned char)v);
	}
}

static void
guard_ioctl(const char *what, long pg, long n, const char *how)
{
	union {
		struct fm_guard_protect p;
		struct fm_guard_remove r;
		struct fm_guard_restore s;
	} u;
	unsigned long req;
	uint64_t off = (uint64_t)pg * PGSZ, len = (uint64_t)n * PGSZ;

	memset(&u, 0, sizeof u);
	if (strcmp(what, "protect") == 0) {
		int ro = strcmp(how, "ro") == 0;

		req = FM_GUARD_PROTECT;
		u.p = (struct fm_guard_protect){off, len,
		    ro ? PROT_READ : PROT_READ | PROT_WRITE,
		    ro ? FM_GUARD_REFUSE : 0};
		say("ioctl(GUARD_PROTECT) pages %ld-%ld %s", pg, pg + n - 1,
		    ro ? "read-only, policy refuse" : "read-write");
	} else if (strcmp(what, "revoke") == 0) {
		req = FM_GUARD_REMOVE;
		u.r = (struct fm_guard_remove){off, len, FM_GUARD_REVOKE, 0};
		say("ioctl(GUARD_REMOVE) pages %ld-%ld, policy revoke", pg,
		    pg + n - 1);
	} else {
		req = FM_GUARD_RESTORE;
		u.s = (struct fm_guard_restore){off, len};
		say("ioctl(GUARD_RESTORE) pages %ld-%ld", pg, pg + n - 1);
	}
	if (ioctl(guard_fd, req, &u) < 0)
		return failed(what);
	answer("ok");
}

static void
guard_stats(void)
{
	struct fm_guard_stats s;

	if (ioctl(guard_fd, FM_GUARD_STATS, &s) < 0)
		return failed("GUARD_STATS");
	say("GUARD_STATS: read faults %llu, write faults %llu, refused "
	    "writes %llu,",
	    (unsigned long long)s.read_faults,
	    (unsigned long long)s.write_faults, (unsigned long long)s.refused);
	say("          revoked accesses %llu, removals %llu",
	    (unsigned long long)s.revoked, (unsigned long long)s.removals);
	answer("ok %llu %llu %llu", (unsigned long long)s.refused,
	    (unsigned long long)s.revoked, (unsigned long long)s.removals);
}

/* The rest of line from its field k on (fields: words apart by spaces). */
static const char *
field(const char *line, int k)
{
	for (; k > 0 && line; k--)
		if ((line = strchr(line, ' ')) != NULL)
			line += strspn(line, " ");
	return line ? line : "";
}

/* One command line. => 0, or 1 at quit. */
static int
command(char *line)
{
	char cmd[32] = "", file[256] = "";
	long a = 0, b = 0, num = 0;
	int n;

	line[strcspn(line, "\n")] = 0;
	n = sscanf(line, "%31s %ld %ld", cmd, &a, &b);
	if (n >= 1 && strcmp(cmd, "quit") == 0)
		return 1;
	if (sscanf(line, "%*s %255s %ld", file, &num) < 2)
		file[0] = 0;
	if (strcmp(cmd, "gem-create") == 0 && file[0])
		gem_create(file, num);
	else if (strcmp(cmd, "gem-open") == 0 && file[0])
		gem_open(file, (unsigned)num);
	else if (strcmp(cmd, "guard-map") == 0 && file[0])
		guard_map(file, num);
	else if (strcmp(cmd, "put") == 0 && n >= 2 && gem)
		gem_put(a, field(line, 2));
	else if (strcmp(cmd, "get") == 0 && n == 2 && gem)
		gem_get(a);
	else if (strcmp(cmd, "fill") == 0 && gem)
		gem_fill();
	else if (strcmp(cmd, "check") == 0 && gem)
		gem_check();
	else if (strcmp(cmd, "evict") == 0 && gem)
		gem_evict();
	else if (strcmp(cmd, "info") == 0 && gem)
		gem_info();
	else if (strcmp(cmd, "fork") == 0 && n == 3 && gem)
		gem_fork(a, b, field(line, 3));
	else if (strcmp(cmd, "letters") == 0 && guard)
		guard_letters();
	else if (strcmp(cmd, "r") == 0 && n == 2 && guard)
		guard_access(a, 0, 0);
	else if (strcmp(cmd, "w") == 0 && n >= 2 && guard)
		guard_access(a, 1, *field(line, 2));
	else if ((strcmp(cmd, "protect") == 0 || strcmp(cmd, "revoke") == 0 ||
	             strcmp(cmd, "restore") == 0) &&
	    n == 3 && guard)
		guard_ioctl(cmd, a, b, field(line, 3));
	else if (strcmp(cmd, "gstats") == 0 && guard)
		guard_stats();
	else
		answer("err what is \"%s\"?", line);
	return 0;
}

int
main(int argc, char **argv)
{
	struct sigaction sa = {.sa_handler = on_fault};
	char line[512];

	if (argc != 2 || (reply = fdopen(3, "w")) == NULL) {
		fprintf(stderr,
		    "usage: fomap-demo-client NAME 3>REPLIES "
		    "(make demo-daemon runs it)\n");
		return 2;
	}
	me = argv[1];
	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, NULL);
	sigaction(SIGSEGV, &sa, NULL);
	while (fgets(line, sizeof line, stdin))
		if (command(line))
			break;
	if (gem)
		munmap(gem, gem_len);
	if (guard)
		munmap((void *)guard, guard_len);
	if (gem_fd >= 0)
		close(gem_fd);
	if (guard_fd >= 0)
		close(guard_fd);
	answer("ok");
	return 0;
}
