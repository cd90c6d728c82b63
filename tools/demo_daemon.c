/*
 * demo_daemon.c: make demo's gem and guard story, across processes
 * (make demo-daemon).
 *
 * It starts a fomapd of its own on a temporary mount and runs two ordinary
 * programs, A and B (fomap-demo-client: open, ioctl, mmap, loads and
 * stores; no fomap library linked in), under
 * LD_PRELOAD=libfomap-preload.so. It tells each what to do next, one
 * command at a time, and checks what it answers; the programs say what
 * they did themselves. Every step that does not behave says FAIL, and the
 * run then exits 1. The end is checked too: the programs exit, their
 * sessions go, fomapd exits 0 at SIGTERM, the mount and the temporary
 * files are gone.
 *
 * Needs root and /dev/fuse (fomapd mounts). Nothing waits for ever: a
 * program's answer comes within CMD_TIMEOUT seconds or the run ends, and
 * the whole run within RUN_TIMEOUT; at any end every process it started is
 * killed and the mount removed.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CMD_TIMEOUT 10 /* seconds for a program to answer a command */
#define RUN_TIMEOUT 120 /* seconds for the whole run */
#define GEM_PAGES 16
#define GUARD_PAGES 16

struct client {
	const char *name;
	pid_t pid;
	int cmd; /* its standard input */
	int ans; /* its descriptor 3 */
	char buf[512]; /* what it answered, not yet read as lines */
	size_t len;
};

static char tooldir[PATH_MAX];
static char mnt[64] = "/tmp/fomap-demo-XXXXXX";
static char logfile[80];
static volatile pid_t fomapd_pid; /* (read by the alarm's handler) */
static struct client clients[2] = {{.name = "A"}, {.name = "B"}};
static struct client *const A = &clients[0], *const B = &clients[1];
static int failures, checks;

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

/* A step's check: FAIL and why when it does not hold. => ok */
static int
check(int ok, const char *fmt, ...)
{
	va_list ap;

	checks++;
	if (ok)
		return 1;
	failures++;
	printf("   FAIL: ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	return 0;
}

/*
 * Kill what we started and remove the mount, its directory and the log.
 * Only system calls: the signal handler calls it too.
 */
static void
teardown_now(void)
{
	for (int i = 0; i < 2; i++)
		if (clients[i].pid > 0)
			kill(clients[i].pid, SIGKILL);
	if (fomapd_pid > 0)
		kill(fomapd_pid, SIGKILL);
	(void)umount2(mnt, MNT_DETACH);
	(void)rmdir(mnt);
	if (logfile[0])
		(void)unlink(logfile);
}

/* SIGALRM (RUN_TIMEOUT), SIGINT, SIGTERM: undo everything, exit 1. */
static void
on_signal(int sig)
{
	static const char late[] = "   FAIL: the demo ran out of time; "
	                           "everything it started is killed\n";
	static const char intr[] = "   interrupted: everything the demo "
	                           "started is killed\n";

	if (sig == SIGALRM)
		(void)!write(1, late, sizeof late - 1);
	else
		(void)!write(1, intr, sizeof intr - 1);
	teardown_now();
	_exit(1);
}

/* A step that cannot go on: say why, undo everything, exit 1. */
static void __attribute__((noreturn)) bail(const char *fmt, ...)
{
	va_list ap;

	printf("   FAIL: ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
	if (logfile[0]) {
		char cmd[200];

		snprintf(cmd, sizeof cmd, "sed 's/^/   fomapd: /' %s >&2",
		    logfile);
		(void)!system(cmd);
	}
	teardown_now();
	for (int i = 0; i < 2; i++)
		if (clients[i].pid > 0)
			waitpid(clients[i].pid, NULL, 0);
	if (fomapd_pid > 0)
		waitpid(fomapd_pid, NULL, 0);
	exit(1);
}

static double
now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Wait up to secs for pid: => its status, or -1 (still running). */
static int
wait_for(pid_t pid, double secs)
{
	double end = now() + secs;
	int st;

	for (;;) {
		pid_t r = waitpid(pid, &st, WNOHANG);

		if (r == pid)
			return st;
		if (r < 0 || now() > end)
			return -1;
		usleep(5000);
	}
}

/* The path of a file beside this program (fomapd, ...). */
static const char *
tool(const char *name)
{
	static char path[4][PATH_MAX + 64];
	static int n;

	snprintf(path[n & 3], sizeof path[0], "%s/%s", tooldir, name);
	return path[n++ & 3];
}

/*
 * The LD_PRELOAD the programs get: the library, after the sanitizer
 * runtimes it needs first when it was built with them (make asan-check).
 */
static const char *
preload_env(void)
{
	static char env[2048];
	char cmd[PATH_MAX + 128], line[512], *p;
	const char *lib = tool("libfomap-preload.so");
	FILE *f;

	env[0] = 0;
	snprintf(cmd, sizeof cmd, "ldd %s 2>/dev/null", lib);
	if ((f = popen(cmd, "r")) != NULL) {
		while (fgets(line, sizeof line, f))
			if ((strstr(line, "libasan") ||
			        strstr(line, "libubsan") ||
			        strstr(line, "libtsan")) &&
			    (p = strstr(line, "=> ")) != NULL) {
				p[3 + strcspn(p + 3, " \n")] = 0;
				strncat(env, p + 3,
				    sizeof env - strlen(env) - 2);
				strcat(env, " ");
			}
		pclose(f);
	}
	strncat(env, lib, sizeof env - strlen(env) - 1);
	return env;
}

static void
start_fomapd(void)
{
	char status[128], line[256] = "";
	FILE *f;

	if (mkdtemp(mnt) == NULL)
		bail("mkdtemp: %s", strerror(errno));
	snprintf(logfile, sizeof logfile, "%s.log", mnt);
	fflush(NULL);
	if ((fomapd_pid = fork()) < 0)
		bail("fork: %s", strerror(errno));
	if (fomapd_pid == 0) {
		int fd = open(logfile, O_WRONLY | O_CREAT | O_TRUNC, 0600);

		prctl(PR_SET_PDEATHSIG, SIGTERM); /* we die: it unmounts */
		if (fd < 0 || dup2(fd, 2) < 0)
			_exit(127);
		execl(tool("fomapd"), "fomapd", "--mount", mnt, (char *)NULL);
		_exit(127);
	}
	snprintf(status, sizeof status, "%s/.status", mnt);
	for (double end = now() + 5; access(status, R_OK) < 0;) {
		if (waitpid(fomapd_pid, NULL, WNOHANG) != 0) {
			fomapd_pid = 0;
			bail("fomapd exited at start");
		}
		if (now() > end)
			bail("fomapd did not serve %s within 5 s", mnt);
		usleep(10000);
	}
	if ((f = fopen(logfile, "r")) != NULL) {
		while (fgets(line, sizeof line, f) && !strstr(line, "FUSE"))
			;
		fclose(f);
	}
	line[strcspn(line, "\n")] = 0;
	say("started %s --mount %s (pid %d)", tool("fomapd"), mnt,
	    (int)fomapd_pid);
	if (line[0])
		say("it says: \"%s\"", line);
}

static void
spawn(struct client *c, const char *preload)
{
	int in[2], out[2];

	if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0)
		bail("pipe: %s", strerror(errno));
	fflush(NULL);
	if ((c->pid = fork()) < 0)
		bail("fork: %s", strerror(errno));
	if (c->pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (dup2(in[0], 0) < 0 || dup2(out[1], 3) < 0)
			_exit(127);
		setenv("LD_PRELOAD", preload, 1);
		execl(tool("fomap-demo-client"), "fomap-demo-client", c->name,
		    (char *)NULL);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	c->cmd = in[1];
	c->ans = out[0];
	c->len = 0;
}

/*
 * Send c a command (printf format) and wait for its answer line, which is
 * copied to ans (n bytes). A program that dies or does not answer within
 * CMD_TIMEOUT ends the run.
 */
static void __attribute__((format(printf, 4, 5)))
tell(struct client *c, char *ans, size_t n, const char *fmt, ...)
{
	char cmd[512];
	double end = now() + CMD_TIMEOUT;
	va_list ap;
	int len;
	char *nl;

	va_start(ap, fmt);
	len = vsnprintf(cmd, sizeof cmd - 1, fmt, ap);
	va_end(ap);
	cmd[len++] = '\n';
	fflush(stdout);
	if (write(c->cmd, cmd, (size_t)len) != len)
		bail("%s (pid %d) is gone: %s", c->name, (int)c->pid,
		    strerror(errno));
	while ((nl = memchr(c->buf, '\n', c->len)) == NULL) {
		struct pollfd p = {.fd = c->ans, .events = POLLIN};
		int ms = (int)((end - now()) * 1000);
		ssize_t r;

		if (ms <= 0 || poll(&p, 1, ms) == 0)
			bail("%s did not answer \"%.*s\" within %d s", c->name,
			    len - 1, cmd, CMD_TIMEOUT);
		r = read(c->ans, c->buf + c->len, sizeof c->buf - 1 - c->len);
		if (r <= 0)
			bail("%s (pid %d) died at \"%.*s\"", c->name,
			    (int)c->pid, len - 1, cmd);
		c->len += (size_t)r;
	}
	*nl = 0;
	snprintf(ans, n, "%s", c->buf);
	c->len -= (size_t)(nl + 1 - c->buf);
	memmove(c->buf, nl + 1, c->len);
}

/* A command whose answer must start with want ("ok", "SIGBUS"). */
static void __attribute__((format(printf, 3, 4)))
expect(struct client *c, const char *want, const char *fmt, ...)
{
	char cmd[512], ans[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof cmd, fmt, ap);
	va_end(ap);
	tell(c, ans, sizeof ans, "%s", cmd);
	check(strncmp(ans, want, strlen(want)) == 0,
	    "%s: \"%s\" answered \"%s\", not %s", c->name, cmd, ans, want);
}

/* "ok TEXT": TEXT must be want. */
static void
expect_text(struct client *c, const char *cmd, const char *want)
{
	char ans[512];

	tell(c, ans, sizeof ans, "%s", cmd);
	check(strncmp(ans, "ok ", 3) == 0 && strcmp(ans + 3, want) == 0,
	    "%s: \"%s\" answered \"%s\", not \"ok %s\"", c->name, cmd, ans,
	    want);
}

/* "ok N N ...": up to n numbers into v. => how many */
static int
numbers(struct client *c, const char *cmd, unsigned long long *v, int n)
{
	char ans[512], *p;
	int k = 0;

	tell(c, ans, sizeof ans, "%s", cmd);
	if (!check(strncmp(ans, "ok", 2) == 0, "%s: \"%s\" answered \"%s\"",
	        c->name, cmd, ans))
		return 0;
	for (p = ans + 2; k < n && *p; k++)
		v[k] = strtoull(p, &p, 0);
	return k;
}

/* fomapctl WHAT, its lines shown: => how many of them start with prefix. */
static int
fomapctl(const char *what, const char *prefix)
{
	char cmd[PATH_MAX + 200], line[512];
	FILE *f;
	int n = 0;

	snprintf(cmd, sizeof cmd, "%s --mount %s %s", tool("fomapctl"), mnt,
	    what);
	fflush(stdout);
	if ((f = popen(cmd, "r")) == NULL)
		bail("fomapctl: %s", strerror(errno));
	while (fgets(line, sizeof line, f)) {
		printf("   | %s", line);
		n += strncmp(line, prefix, strlen(prefix)) == 0;
	}
	check(pclose(f) == 0, "fomapctl %s failed", what);
	return n;
}

/* How many sessions fomapd lists now (nothing shown). */
static int
sessions(void)
{
	char cmd[PATH_MAX + 200];
	int st;

	snprintf(cmd, sizeof cmd, "exit $(%s --mount %s sessions | wc -l)",
	    tool("fomapctl"), mnt);
	st = system(cmd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static const char *
dev(const char *name)
{
	static char path[2][128];
	static int n;

	snprintf(path[n & 1], sizeof path[0], "%s/%s", mnt, name);
	return path[n++ & 1];
}

/* ------------------------------------------------------------------------
 * The story
 */

static void
share_by_name(void)
{
	char ans[512];
	unsigned name;

	step("1. gem: two processes share a buffer by its global name");
	tell(A, ans, sizeof ans, "gem-create %s %d", dev("gem"), GEM_PAGES);
	if (sscanf(ans, "ok %u", &name) != 1)
		bail("A could not make a gem buffer: %s", ans);
	expect(A, "ok", "put 3 hello from A");
	expect(B, "ok", "gem-open %s %u", dev("gem"), name);
	expect_text(B, "get 3", "hello from A");
	expect(B, "ok", "put 9 hello back from B");
	expect_text(A, "get 9", "hello back from B");
	expect(A, "ok", "fill");
	expect(B, "ok", "check");
	say("two processes, two opens, two mappings: one set of pages");
}

static void
show_sessions(void)
{
	int n;

	step("2. fomapctl: what fomapd holds while they run");
	say("%s --mount %s sessions", tool("fomapctl"), mnt);
	n = fomapctl("sessions", "session pid");
	check(n == 2, "fomapctl lists %d sessions, not A's and B's", n);
	say("%s --mount %s opens", tool("fomapctl"), mnt);
	n = fomapctl("opens", "open ");
	check(n == 2, "fomapctl lists %d opens, not A's and B's of gem", n);
	say("one session a process (its userfaultfd, handed to fomapd by the "
	    "preload");
	say("library at its first mmap), one open a process");
}

static void
evict_and_refill(void)
{
	unsigned long long v0[6] = {0}, v1[6] = {0}, v2[6] = {0};
	enum { RESIDENT, DIRTY, FAULTS, REFILL, SAVED, EVICTIONS };

	step("3. gem: eviction, then transparent refill in both processes");
	numbers(A, "info", v0, 6);
	expect(A, "ok", "evict");
	numbers(A, "info", v1, 6);
	check(v1[RESIDENT] == 0, "%llu pages resident after the eviction",
	    v1[RESIDENT]);
	check(v1[SAVED] > v0[SAVED], "the eviction saved nothing");
	expect(B, "ok", "check");
	expect_text(B, "get 3", "hello from A");
	expect_text(A, "get 9", "hello back from B");
	numbers(A, "info", v2, 6);
	check(v2[EVICTIONS] == 1, "%llu evictions, not 1", v2[EVICTIONS]);
	check(v2[REFILL] > v1[REFILL] && v2[FAULTS] > v1[FAULTS],
	    "the pager read nothing back (refill %llu -> %llu, faults %llu "
	    "-> %llu)",
	    v1[REFILL], v2[REFILL], v1[FAULTS], v2[FAULTS]);
	check(v2[RESIDENT] == GEM_PAGES, "%llu of %d pages resident again",
	    v2[RESIDENT], GEM_PAGES);
	say("the reads faulted in A and B; fomapd's engine asked gem's pager, "
	    "which read");
	say("back %llu pages: %llu faults served since the eviction",
	    v2[REFILL] - v1[REFILL], v2[FAULTS] - v1[FAULTS]);
}

static void
guard_story(void)
{
	unsigned long long s[3] = {0};

	step("4. guard: a read-only range, then a revoked one, in two "
	     "processes");
	expect(A, "ok", "guard-map %s %d", dev("guard"), GUARD_PAGES);
	expect(B, "ok", "guard-map %s %d", dev("guard"), GUARD_PAGES);
	expect(A, "ok", "letters");
	expect_text(B, "r 2", "43"); /* 'C' */
	expect(A, "ok", "protect 2 2 ro");
	expect(A, "SIGBUS", "w 2 x");
	expect_text(A, "r 2", "43");
	expect(A, "ok", "w 6 y");
	expect(B, "SIGBUS", "w 3 z");
	expect_text(B, "r 3", "44"); /* 'D' */
	expect_text(B, "r 6", "79"); /* 'y' */
	say("refused writes are SIGBUS in the writer only; both go on");
	expect(B, "ok", "revoke 4 2");
	expect(A, "SIGBUS", "r 4");
	expect(A, "SIGBUS", "w 5 q");
	expect(B, "SIGBUS", "r 5");
	expect(B, "SIGBUS", "r 4");
	expect(A, "ok", "restore 4 2");
	expect_text(A, "r 4", "0");
	expect(B, "ok", "w 5 R");
	expect_text(A, "r 5", "52"); /* 'R' */
	say("revoked pages answered every access with SIGBUS, in A and in B, "
	    "until");
	say("GUARD_RESTORE gave them back zero-filled (revocation drops the "
	    "data)");
	if (numbers(A, "gstats", s, 3) == 3) {
		check(s[0] >= 2, "guard refused %llu writes, not 2", s[0]);
		check(s[1] >= 4, "guard revoked %llu accesses, not 4", s[1]);
	}
}

static void
fork_story(void)
{
	step("5. fork: the child of a preloaded program keeps its mappings");
	expect_text(A, "fork 3 12 hello from A's child",
	    "hello from A's child");
	expect_text(B, "get 12", "hello from A's child");
	say("the child read A's shared mapping and wrote to it; A and B see "
	    "the write");
}

static void
the_end(void)
{
	double t;
	int st, n;

	step("6. the end: the programs exit, fomapd stops (SIGTERM)");
	for (int i = 0; i < 2; i++) {
		struct client *c = &clients[i];

		expect(c, "ok", "quit");
		st = wait_for(c->pid, CMD_TIMEOUT);
		if (!check(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
		        "%s did not exit 0 (status %#x)", c->name, st))
			kill(c->pid, SIGKILL), waitpid(c->pid, NULL, 0);
		c->pid = 0;
		close(c->cmd);
		close(c->ans);
	}
	for (t = now() + 5; (n = sessions()) != 0 && now() < t;)
		usleep(20000);
	check(n == 0, "fomapd still lists %d sessions", n);
	say("A and B exited 0; fomapd lists %d sessions", n);
	kill(fomapd_pid, SIGTERM);
	st = wait_for(fomapd_pid, 10);
	if (!check(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
	        "fomapd did not exit 0 at SIGTERM (status %#x)", st)) {
		kill(fomapd_pid, SIGKILL);
		waitpid(fomapd_pid, NULL, 0);
	}
	fomapd_pid = 0;
	say("fomapd exited %d",
	    st >= 0 && WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	n = 0;
	{
		FILE *f = fopen("/proc/self/mountinfo", "r");
		char line[1024];

		while (f && fgets(line, sizeof line, f))
			n += strstr(line, mnt) != NULL;
		if (f)
			fclose(f);
	}
	if (!check(n == 0, "%s is still mounted", mnt))
		(void)umount2(mnt, MNT_DETACH);
	(void)rmdir(mnt);
	(void)unlink(logfile);
	check(access(mnt, F_OK) < 0 && access(logfile, F_OK) < 0,
	    "%s or %s is left", mnt, logfile);
	say("%s is unmounted; it and fomapd's log are removed", mnt);
	logfile[0] = 0;
}

int
main(void)
{
	const char *preload;
	char self[PATH_MAX];
	ssize_t n;
	double t0 = now();

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (geteuid() != 0) {
		fprintf(stderr,
		    "fomap-demo-daemon: needs root: fomapd mounts "
		    "a FUSE file system (run it with sudo)\n");
		return 1;
	}
	if (access("/dev/fuse", R_OK | W_OK) < 0) {
		fprintf(stderr,
		    "fomap-demo-daemon: /dev/fuse: %s (fomapd "
		    "needs FUSE)\n",
		    strerror(errno));
		return 1;
	}
	if ((n = readlink("/proc/self/exe", self, sizeof self - 1)) <= 0)
		return 1;
	self[n] = 0;
	*strrchr(self, '/') = 0;
	snprintf(tooldir, sizeof tooldir, "%s", self);
	for (int i = 0; i < 4; i++) {
		static const char *const need[] = {"fomapd", "fomapctl",
		    "libfomap-preload.so", "fomap-demo-client"};

		if (access(tool(need[i]), R_OK) < 0) {
			fprintf(stderr,
			    "fomap-demo-daemon: %s: %s (make all)\n",
			    tool(need[i]), strerror(errno));
			return 1;
		}
	}
	signal(SIGALRM, on_signal);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGPIPE, SIG_IGN);
	alarm(RUN_TIMEOUT);

	printf("fomap demo across processes: fomapd serves the devices as "
	       "files, and two\n");
	printf("ordinary programs, A and B, use them with open, ioctl and "
	       "mmap. No fomap\n");
	printf("library is linked into them: LD_PRELOAD=libfomap-preload.so "
	       "hands their\n");
	printf("mmaps of fomap files to fomapd's fault engine, which serves "
	       "the faults\n");
	printf("through each program's own userfaultfd.\n\n");
	start_fomapd();
	preload = preload_env();
	spawn(A, preload);
	spawn(B, preload);
	say("started A (pid %d) and B (pid %d): fomap-demo-client, "
	    "LD_PRELOAD=%s",
	    (int)A->pid, (int)B->pid, preload);

	share_by_name();
	show_sessions();
	evict_and_refill();
	guard_story();
	fork_story();
	the_end();

	printf("\n%s: %d checks, %d failed (%.1f s).\n",
	    failures ? "FAIL" : "Done", checks, failures, now() - t0);
	return failures ? 1 : 0;
}
