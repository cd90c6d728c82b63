/*
 * runner.c: fomap's test runner.
 *
 * Every selected test runs in its own child, which leads its own process
 * group and writes stdout and stderr into a memfd. The parent alone keeps
 * the clock: when the timeout runs out it SIGKILLs the whole group (the
 * test's threads and any process it forked), and it kills the group after a
 * normal exit too, so that nothing a test started outlives it. A passing
 * test prints only its "ok" line; a failing one is followed by the last
 * 64 KiB of its output, each line prefixed with "# ". A skip's reason
 * (fm_test_skip) travels in a shared page and ends up on its TAP line.
 *
 *   fomap-test [--list] [--help] [pattern...]
 *   pattern             run the tests whose name contains it, or tagged it
 *   FOMAP_TEST_TIMEOUT  seconds per test (default 60)
 *   FOMAP_TEST_SHOW     show a passing test's output too (what a stress
 *                       run exercised)
 *   FOMAP_TEST_HANG_DUMP=FILE  on a hang (a timeout, an oracle's hung
 *                       operation, a client that says nothing), append to
 *                       FILE what the hung process's threads are doing
 *                       (fm_test_hang_dump)
 *
 * Prints "ok N - name", "ok N - name # SKIP reason", "not ok N - name"
 * (with "# timeout after Ns: a hang", "# killed by signal ..." or
 * "# exit status N" when the test did not just fail an ASSERT), then "1..N"
 * and the closing line "N passed, N failed, N skipped". Exits non-zero on
 * any failure, and when no test was selected.
 */
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <fomap/fomap.h>

#include "test.h"

#define EXIT_SKIP 77
#define OUT_MAX (64 * 1024) /* output shown for a failed test: its tail */
#define WHY_MAX 512 /* a skip's reason */

enum result { PASS, FAIL, SKIP };

static struct fm_test *tests, **tail = &tests;
static __thread sigjmp_buf probe_jb;
static __thread volatile int probe_armed;
static char *skip_why; /* MAP_SHARED: the child writes, the parent reads */
static volatile sig_atomic_t running; /* the current test's pid (its group) */

fm_test_trace_fn *_Atomic fm_test_trace;

/* The engine's FM_TRACE (a weak symbol in the library): see test.h. */
void fm__trace_engine(const char *what, pid_t tid, uintptr_t va,
    unsigned long x);

void
fm__trace_engine(const char *what, pid_t tid, uintptr_t va, unsigned long x)
{
	fm_test_trace_fn *fn = atomic_load(&fm_test_trace);

	if (fn != NULL)
		fn(what, tid, va, x);
}

void
fm_test_register(struct fm_test *t)
{
	*tail = t;
	tail = &t->next;
}

void
fm_test_skip(const char *why)
{
	if (skip_why != NULL)
		snprintf(skip_why, WHY_MAX, "%s", why);
	_exit(EXIT_SKIP);
}

void
fm_test_fail(const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	fflush(stdout); /* what the test printed comes first */
	fprintf(stderr, "%s:%d: ", file, line);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	fflush(stderr);
	_exit(1);
}

/*
 * With FOMAP_TEST_HANG_DUMP=FILE: append to FILE what process pid is doing
 * (thread tid above all, if > 0): its /proc files (a thread retrying a
 * fault in the kernel shows R, a signal pending, system time growing),
 * every thread's kernel stack (root only), and gdb's stacks. A stall that
 * comes once in thirty runs needs this to be explained. gdb's attach stops
 * the process, which interrupts a FUSE call it waits in: dump a server
 * before its clients.
 */
#define DUMP_SECS 30 /* a dump that takes longer is killed */

void
fm_test_hang_dump(pid_t pid, pid_t tid, const char *why)
{
	const char *to = getenv("FOMAP_TEST_HANG_DUMP");
	char p[24], t[24];
	char *argv[] = {"sh", "-c",
	    "echo \"==== $2: process $0, thread $1\"; t=/proc/$0/task/$1;"
	    " head -50 $t/stat $t/wchan $t/syscall $t/stack $t/status;"
	    " for t in /proc/$0/task/*; do echo \"== $t $(cat $t/comm)"
	    " $(cat $t/wchan)\"; cat $t/stack; done;"
	    " timeout -s KILL 20 gdb -p $0 -batch -ex 'thread apply all bt'",
	    p, t, (char *)why, NULL};
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	extern char **environ;
	pid_t c;
	int st;

	if (to == NULL)
		return;
	snprintf(p, sizeof p, "%d", (int)pid);
	snprintf(t, sizeof t, "%d", (int)(tid > 0 ? tid : pid));
	/*
	 * posix_spawn, not fork: a fork would send a fork event to a
	 * userfaultfd that asks for them, and wait for the engine that may
	 * be what hangs. Its own group, killed at the end: gdb's attach
	 * stops every thread, and one retrying a fault inside a system call
	 * never stops, nor does gdb then.
	 */
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, to,
	    O_WRONLY | O_CREAT | O_APPEND, 0644);
	posix_spawn_file_actions_adddup2(&fa, 1, 2);
	posix_spawnattr_init(&at);
	posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP);
	posix_spawnattr_setpgroup(&at, 0);
	if (posix_spawnp(&c, "sh", &fa, &at, argv, environ) == 0) {
		for (int i = 0;
		     i < DUMP_SECS * 100 && waitpid(c, &st, WNOHANG) == 0; i++)
			usleep(10000);
		kill(-c, SIGKILL);
		(void)waitpid(c, &st, 0);
		kill(pid, SIGCONT); /* (gdb may have left it stopped) */
	}
	posix_spawnattr_destroy(&at);
	posix_spawn_file_actions_destroy(&fa);
}

void
fm_test_need_uffd(void)
{
	const char *why = fm_probe();

	if (why != NULL)
		fm_test_skip(why);
}

static __thread void *probe_addr;

static void
probe_handler(int sig, siginfo_t *si, void *uc)
{
	probe_addr = si->si_addr;
	if (probe_armed)
		siglongjmp(probe_jb, sig);
	signal(sig, SIG_DFL); /* not a probe: die of it as usual */
	raise(sig);
}

static void
probe_setup(void)
{
	struct sigaction sa = {.sa_sigaction = probe_handler,
	    .sa_flags = SA_SIGINFO};

	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, NULL);
	sigaction(SIGSEGV, &sa, NULL);
}

int
fm_test_probe(volatile char *p, int wr)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	int sig;

	pthread_once(&once, probe_setup);
	sig = sigsetjmp(probe_jb, 1);
	if (sig == 0) {
		probe_armed = 1;
		if (wr)
			*p = *p;
		else
			(void)*p;
	}
	probe_armed = 0;
	return sig;
}

void *
fm_test_fault_addr(void)
{
	return probe_addr;
}

/* A tag is a whole word of t->tags. */
static int
has_tag(const struct fm_test *t, const char *tag)
{
	size_t n = strlen(tag);

	if (n == 0)
		return 0;
	for (const char *p = t->tags; (p = strstr(p, tag)) != NULL; p++)
		if ((p == t->tags || p[-1] == ' ') &&
		    (p[n] == '\0' || p[n] == ' '))
			return 1;
	return 0;
}

static int
selected(const struct fm_test *t, int npat, char **pat)
{
	if (npat == 0)
		return 1;
	for (int i = 0; i < npat; i++)
		if (strstr(t->name, pat[i]) != NULL || has_tag(t, pat[i]))
			return 1;
	return 0;
}

static int
timeout_secs(void)
{
	const char *s = getenv("FOMAP_TEST_TIMEOUT");
	char *end;
	long v;

	if (s == NULL || *s == '\0')
		return 60;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || *end != '\0' || v <= 0 || v > INT_MAX / 1000) {
		fprintf(stderr,
		    "fomap-test: FOMAP_TEST_TIMEOUT=%s is not a number of "
		    "seconds; using 60\n",
		    s);
		return 60;
	}
	return (int)v;
}

/*
 * An interrupted run takes the current test's group with it: the group is
 * not in the terminal's foreground, so ^C does not reach it.
 */
static void
on_signal(int sig)
{
	if (running > 0)
		kill(-(pid_t)running, SIGKILL);
	signal(sig, SIG_DFL);
	raise(sig);
}

static pid_t runner_pid;

/*
 * LeakSanitizer's check at exit() in a child that a test forked beside
 * busy threads waits forever for the sanitizer allocator's lock, which one
 * of those threads held at the fork (the allocator is not fork-safe).
 * Only the runner itself is checked at exit: a test's process ends with
 * _exit(), so nothing is lost.
 */
int __lsan_is_turned_off(void) __attribute__((visibility("default")));

int
__lsan_is_turned_off(void)
{
	return runner_pid != 0 && getpid() != runner_pid;
}

static const int stop_signals[] = {SIGINT, SIGTERM, SIGHUP};

static void
set_stop_handlers(void (*fn)(int))
{
	for (size_t i = 0; i < sizeof stop_signals / sizeof stop_signals[0];
	     i++)
		signal(stop_signals[i], fn);
}

/* The child: its own group, output into out, nothing from the terminal. */
static void __attribute__((noreturn)) child(const struct fm_test *t, int out)
{
	int null = open("/dev/null", O_RDONLY);

	setpgid(0, 0);
	set_stop_handlers(SIG_DFL);
	if (null >= 0 && null != STDIN_FILENO) {
		dup2(null, STDIN_FILENO);
		close(null);
	}
	dup2(out, STDOUT_FILENO);
	dup2(out, STDERR_FILENO);
	close(out);
	t->fn();
	fflush(stdout);
	fflush(stderr);
	_exit(0);
}

static long
ms_until(const struct timespec *deadline)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (deadline->tv_sec - now.tv_sec) * 1000 +
	    (deadline->tv_nsec - now.tv_nsec) / 1000000;
}

/*
 * wait_exit: wait until child pid has exited or the deadline has passed.
 * The child is not reaped: while it is a zombie its pid cannot be reused, so
 * killing its process group afterwards cannot hit another one. A pidfd
 * wakes us at the exit; without one (old kernel, seccomp), poll every few ms.
 * => returns 0 once it has exited, -ETIMEDOUT at the deadline
 */
static int
wait_exit(pid_t pid, const struct timespec *deadline)
{
	int pfd = -1, nap = 1, ret;

#ifdef SYS_pidfd_open
	pfd = (int)syscall(SYS_pidfd_open, pid, 0);
#endif
	for (;;) {
		siginfo_t si = {0};
		long left;

		if (waitid(P_PID, pid, &si, WEXITED | WNOHANG | WNOWAIT) < 0 &&
		    errno != EINTR) {
			ret = 0; /* not ours to wait for: waitpid will say */
			break;
		}
		if (si.si_pid == pid) {
			ret = 0;
			break;
		}
		left = ms_until(deadline);
		if (left <= 0) {
			ret = -ETIMEDOUT;
			break;
		}
		if (pfd >= 0) {
			struct pollfd p = {.fd = pfd, .events = POLLIN};

			/* left fits: timeout_secs() keeps it under INT_MAX ms. */
			if (poll(&p, 1, (int)left) < 0 && errno != EINTR) {
				close(pfd);
				pfd = -1;
			}
		} else {
			struct timespec ts = {0,
			    (left < nap ? left : nap) * 1000000L};

			nanosleep(&ts, NULL);
			nap = nap < 32 ? 2 * nap : 50;
		}
	}
	if (pfd >= 0)
		close(pfd);
	return ret;
}

/*
 * reap_group: reaps the killed test, leaving its status in *status, and the
 * processes of its group that were orphaned to us (we are a subreaper):
 * when it returns, the whole group is dead and gone.
 */
static void
reap_group(pid_t pid, int *status)
{
	pid_t r;
	int st;

	while ((r = waitpid(-pid, &st, 0)) != -1 || errno == EINTR)
		if (r == pid)
			*status = st;
}

/* Prints the tail of out (at most OUT_MAX bytes), each line after "# ". */
static void
show_output(int out)
{
	static char buf[OUT_MAX];
	struct stat st;
	off_t off = 0;
	ssize_t len = 0, r;
	char *p, *end, *nl;

	if (fstat(out, &st) < 0 || st.st_size == 0)
		return;
	if (st.st_size > OUT_MAX)
		off = st.st_size - OUT_MAX;
	while (len < OUT_MAX &&
	    (r = pread(out, buf + len, OUT_MAX - len, off + len)) != 0) {
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			break;
		len += r;
	}
	p = buf;
	end = buf + len;
	if (off > 0) {
		/* Start at a whole line. */
		nl = memchr(p, '\n', (size_t)len);
		if (nl != NULL)
			p = nl + 1;
		printf("# [... first %lld bytes of output left out ...]\n",
		    (long long)(off + (p - buf)));
	}
	while (p < end) {
		nl = memchr(p, '\n', (size_t)(end - p));
		if (nl == NULL)
			nl = end;
		fputs("# ", stdout);
		fwrite(p, 1, (size_t)(nl - p), stdout);
		putchar('\n');
		p = nl + 1;
	}
}

/* The skip reason the child left, on one line. */
static const char *
skip_reason(void)
{
	if (skip_why == NULL)
		return "";
	skip_why[WHY_MAX - 1] = '\0';
	for (char *c = skip_why; *c != '\0'; c++)
		if (*c == '\n' || *c == '\r' || *c == '\t')
			*c = ' ';
	return skip_why;
}

/*
 * run_one: runs test t as test number n and prints its TAP line, and when
 * it failed, its output.
 * => returns PASS, FAIL or SKIP
 */
static enum result
run_one(const struct fm_test *t, int n, int timeout)
{
	struct timespec deadline;
	char note[WHY_MAX + 64] = "";
	enum result res = FAIL;
	int out, status = -1, w;
	pid_t pid;

	out = memfd_create("fomap-test-output", MFD_CLOEXEC);
	if (out < 0) {
		printf("not ok %d - %s # cannot capture output: %s\n", n,
		    t->name, strerror(errno));
		return FAIL;
	}
	if (skip_why != NULL)
		skip_why[0] = '\0';
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += timeout;
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0) {
		printf("not ok %d - %s # fork: %s\n", n, t->name,
		    strerror(errno));
		close(out);
		return FAIL;
	}
	if (pid == 0)
		child(t, out);
	setpgid(pid, pid); /* as the child does: no race with the kill */
	running = pid;

	w = wait_exit(pid, &deadline);
	if (w == -ETIMEDOUT)
		fm_test_hang_dump(pid, 0, t->name);
	kill(-pid, SIGKILL); /* its threads are gone; stray processes too */
	reap_group(pid, &status);
	running = 0;

	if (w == -ETIMEDOUT)
		snprintf(note, sizeof note, " # timeout after %ds: a hang",
		    timeout);
	else if (status == -1)
		snprintf(note, sizeof note, " # lost: waitpid: %s",
		    strerror(errno));
	else if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		res = PASS;
	else if (WIFEXITED(status) && WEXITSTATUS(status) == EXIT_SKIP) {
		res = SKIP;
		snprintf(note, sizeof note, " # SKIP %s", skip_reason());
	} else if (WIFSIGNALED(status))
		snprintf(note, sizeof note, " # killed by signal %d (%s)",
		    WTERMSIG(status), strsignal(WTERMSIG(status)));
	else if (WIFEXITED(status) && WEXITSTATUS(status) != 1)
		snprintf(note, sizeof note, " # exit status %d",
		    WEXITSTATUS(status));

	printf("%s %d - %s%s\n", res == FAIL ? "not ok" : "ok", n, t->name,
	    note);
	if (res == FAIL || (res == PASS && getenv("FOMAP_TEST_SHOW")))
		show_output(out);
	close(out);
	return res;
}

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: fomap-test [--list] [pattern...]\n"
	    "  Runs each test in its own process group; prints TAP lines and\n"
	    "  \"N passed, N failed, N skipped\". A pattern selects the tests\n"
	    "  whose name contains it or that carry it as a tag (\"thread\").\n"
	    "  --list  print the selected tests' names and tags, run nothing\n"
	    "  --help  this text\n"
	    "  FOMAP_TEST_TIMEOUT  seconds per test (default 60)\n");
}

int
main(int argc, char **argv)
{
	runner_pid = getpid();
	/* The engine checks its invariants against the page tables too. */
	setenv("FOMAP_CHECK", "1", 0);
	int n = 0, pass = 0, fail = 0, skip = 0, list = 0, npat = 0;
	int timeout, dashdash = 0;
	char **pat = argv + 1;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (dashdash || a[0] != '-')
			pat[npat++] = argv[i];
		else if (strcmp(a, "--") == 0)
			dashdash = 1;
		else if (strcmp(a, "--list") == 0)
			list = 1;
		else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			usage(stdout);
			return 0;
		} else {
			fprintf(stderr, "fomap-test: unknown option %s\n", a);
			usage(stderr);
			return 2;
		}
	}
	if (list) {
		for (struct fm_test *t = tests; t; t = t->next)
			if (selected(t, npat, pat))
				printf("%s%s%s%s\n", t->name,
				    *t->tags ? " [" : "", t->tags,
				    *t->tags ? "]" : "");
		return 0;
	}

	timeout = timeout_secs();
	setvbuf(stdout, NULL, _IOLBF, 0);
	skip_why = mmap(NULL, WHY_MAX, PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (skip_why == MAP_FAILED)
		skip_why = NULL; /* skips then come without their reason */
	set_stop_handlers(on_signal);
	/* A test's orphans come to us, to be reaped with it. */
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	for (struct fm_test *t = tests; t; t = t->next) {
		if (!selected(t, npat, pat))
			continue;
		switch (run_one(t, ++n, timeout)) {
		case PASS:
			pass++;
			break;
		case SKIP:
			skip++;
			break;
		case FAIL:
			fail++;
			break;
		}
	}
	printf("1..%d\n", n);
	printf("%d passed, %d failed, %d skipped\n", pass, fail, skip);
	return fail || n == 0 ? 1 : 0;
}
