/*
 * runner.c: runs every registered test in its own child process, with a
 * timeout; prints "ok N - name" / "not ok N - name" / "ok N - name # SKIP"
 * and the closing line. Arguments select tests: a name, or a tag.
 *   FOMAP_TEST_TIMEOUT  seconds per test (default 60)
 */
#include <pthread.h>
#include <stdarg.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test.h"
#include "vm/pmap.h"

#define EXIT_SKIP 77

static struct fm_test *tests, **tail = &tests;
static __thread sigjmp_buf probe_jb;
static __thread volatile int probe_armed;

void
fm_test_register(struct fm_test *t)
{
	*tail = t;
	tail = &t->next;
}

void
fm_test_skip(const char *why)
{
	printf("# SKIP %s\n", why);
	fflush(stdout);
	_exit(EXIT_SKIP);
}

void
fm_test_fail(const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "# %s:%d: ", file, line);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	fflush(stderr);
	_exit(1);
}

void
fm_test_need_uffd(void)
{
	const char *why = fm__pmap_unavailable();

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

static int
selected(const struct fm_test *t, int argc, char **argv)
{
	if (argc < 2)
		return 1;
	for (int i = 1; i < argc; i++) {
		size_t n = strlen(argv[i]);
		const char *tg = strstr(t->tags, argv[i]);

		if (strcmp(t->name, argv[i]) == 0)
			return 1;
		if (tg && (tg[n] == '\0' || tg[n] == ' '))
			return 1;
	}
	return 0;
}

/* Returns 0 pass, 1 fail, 2 skip. */
static int
run_one(const struct fm_test *t, int timeout)
{
	int status;
	time_t start = time(NULL);
	pid_t pid = fork();

	if (pid < 0) {
		perror("fork");
		return 1;
	}
	if (pid == 0) {
		alarm(timeout);
		signal(SIGALRM, SIG_DFL);
		t->fn();
		fflush(stdout);
		_exit(0);
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return 1;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	if (WIFEXITED(status) && WEXITSTATUS(status) == EXIT_SKIP)
		return 2;
	if (WIFSIGNALED(status))
		printf("# %s: killed by signal %d%s after %lds\n", t->name,
		    WTERMSIG(status),
		    WTERMSIG(status) == SIGALRM ? " (timeout: a hang)" : "",
		    (long)(time(NULL) - start));
	return 1;
}

int
main(int argc, char **argv)
{
	const char *to = getenv("FOMAP_TEST_TIMEOUT");
	int timeout = to ? atoi(to) : 60;
	int n = 0, pass = 0, fail = 0, skip = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	for (struct fm_test *t = tests; t; t = t->next) {
		if (!selected(t, argc, argv))
			continue;
		n++;
		fflush(stdout);
		switch (run_one(t, timeout)) {
		case 0:
			pass++;
			printf("ok %d - %s\n", n, t->name);
			break;
		case 2:
			skip++;
			printf("ok %d - %s # SKIP\n", n, t->name);
			break;
		default:
			fail++;
			printf("not ok %d - %s\n", n, t->name);
		}
	}
	printf("1..%d\n", n);
	printf("%d passed, %d failed, %d skipped\n", pass, fail, skip);
	return fail || n == 0 ? 1 : 0;
}
