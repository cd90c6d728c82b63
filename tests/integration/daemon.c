/*
 * daemon.c: the integration tests' fomapd and programs (daemon.h).
 */
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../test.h"
#include "daemon.h"

const char *
fmd_tool(const char *name)
{
	static char path[PATH_MAX + 64];
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	char *slash;

	ASSERT(n > 0);
	self[n] = 0;
	slash = strrchr(self, '/');
	*slash = 0;
	snprintf(path, sizeof path, "%s/%s", self, name);
	return path;
}

const char *
fmd_script(const char *name)
{
	static char path[PATH_MAX + 64];
	char top[PATH_MAX];
	char *slash;

	snprintf(top, sizeof top, "%s", fmd_tool(""));
	top[strlen(top) - 1] = 0; /* the build directory */
	slash = strrchr(top, '/');
	*slash = 0; /* the tree it was built from */
	snprintf(path, sizeof path, "%s/tests/integration/%s", top, name);
	return path;
}

static void
need_fuse(void)
{
	if (geteuid() != 0)
		fm_test_skip("fomapd needs root (mount, FUSE passthrough)");
	if (access("/dev/fuse", R_OK | W_OK) < 0)
		fm_test_skip("no /dev/fuse");
}

void
fmd_need(const char *program)
{
	char why[128];

	if (fmd_sh("command -v %s >/dev/null 2>&1", program) != 0) {
		snprintf(why, sizeof why, "%s is not installed", program);
		fm_test_skip(why);
	}
}

void
fmd_start(struct fmd *m, ...)
{
	const char *argv[32] = {"fomapd", "--mount", m->dir};
	char status[128];
	int n = 3, fd;
	va_list ap;

	need_fuse();
	snprintf(m->dir, sizeof m->dir, "/tmp/fomap-itest-XXXXXX");
	ASSERT(mkdtemp(m->dir) != NULL);
	snprintf(m->log, sizeof m->log, "%s.log", m->dir);
	va_start(ap, m);
	for (const char *a; (a = va_arg(ap, const char *)) != NULL && n < 31;)
		argv[n++] = a;
	va_end(ap);
	argv[n] = NULL;
	ASSERT((m->pid = fork()) >= 0);
	if (m->pid == 0) {
		fd = open(m->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		dup2(fd, 2);
		execv(fmd_tool("fomapd"), (char **)argv);
		_exit(127);
	}
	snprintf(status, sizeof status, "%s/.status", m->dir);
	for (int i = 0; i < 500 && access(status, R_OK) < 0; i++) {
		ASSERT(waitpid(m->pid, NULL, WNOHANG) == 0);
		usleep(10000);
	}
	ASSERT_OK(access(status, R_OK));
	if (fmd_sh("grep -q 'passthrough yes' %s", m->log) != 0) {
		fmd_stop(m);
		fm_test_skip("the kernel has no FUSE passthrough");
	}
}

int
fmd_stop(struct fmd *m)
{
	int st = -1;

	if (m->pid > 0) {
		kill(m->pid, SIGTERM);
		ASSERT_EQ(waitpid(m->pid, &st, 0), m->pid);
		m->pid = 0;
	}
	(void)umount2(m->dir, MNT_DETACH); /* a killed one leaves it */
	(void)rmdir(m->dir);
	(void)unlink(m->log);
	return st;
}

const char *
fmd_path(const struct fmd *m, const char *dev, int n)
{
	static char path[4][128];

	snprintf(path[n & 3], sizeof path[0], "%s/%s", m->dir, dev);
	return path[n & 3];
}

int
fmd_sh(const char *fmt, ...)
{
	char cmd[4096];
	va_list ap;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof cmd, fmt, ap);
	va_end(ap);
	fflush(NULL);
	st = system(cmd);
	return st >= 0 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The number fomapctl's line "WHAT N" gives, or -1. */
static int
ctl_count(const struct fmd *m, const char *what)
{
	char cmd[512], line[256];
	FILE *f;
	int n = -1;

	snprintf(cmd, sizeof cmd, "%s --mount %s all | grep '^%s '",
	    fmd_tool("fomapctl"), m->dir, what);
	ASSERT((f = popen(cmd, "r")) != NULL);
	if (fgets(line, sizeof line, f))
		n = atoi(line + strlen(what) + 1);
	pclose(f);
	return n;
}

int
fmd_opens(const struct fmd *m)
{
	return ctl_count(m, "opens");
}

void
fmd_wait_opens(const struct fmd *m, int n)
{
	for (int i = 0; i < 200 && fmd_opens(m) != n; i++)
		usleep(10000);
	ASSERT_EQ(fmd_opens(m), n);
}

void
fmd_wait_waits(const struct fmd *m, int n)
{
	fmd_wait_waits_of(m, n, 0);
}

/*
 * (What was seen decides: a streaming program's parked DQBUF may be
 * answered a moment later, and a second look find none parked.)
 */
void
fmd_wait_waits_of(const struct fmd *m, int n, pid_t prog)
{
	int st, w;

	for (int i = 0; (w = ctl_count(m, "waits")) < n && i < 1000; i++) {
		if (prog > 0 && waitpid(prog, &st, WNOHANG) == prog)
			fm_test_fail(__FILE__, __LINE__,
			    "the program ended (status %#x) before %d waits",
			    st, n);
		usleep(10000);
	}
	if (w < n) {
		fm_test_hang_dump(m->pid, 0, "a fomapd with no call parked");
		if (prog > 0)
			fm_test_hang_dump(prog, 0, "its program");
	}
	ASSERT_GE(w, n);
}

const char *
fmd_preload_value(void)
{
	static char val[4096];
	char cmd[2048], lib[1024];
	FILE *f;
	size_t n;

	if (val[0])
		return val;
	snprintf(lib, sizeof lib, "%s", fmd_tool("libfomap-preload.so"));
	snprintf(cmd, sizeof cmd,
	    "ldd %s | awk '/lib[amt]san|libubsan/ {printf \"%%s \", $3}'", lib);
	ASSERT((f = popen(cmd, "r")) != NULL);
	n = fread(val, 1, sizeof val - 1100, f);
	pclose(f);
	snprintf(val + n, sizeof val - n, "%s", lib);
	return val;
}

const char *
fmd_preload_env(void)
{
	static char env[4200];

	snprintf(env, sizeof env, "LD_PRELOAD='%s'", fmd_preload_value());
	return env;
}

int64_t
fmd_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}
