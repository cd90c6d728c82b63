/*
 * test_trust.h: helpers of the regression tests of test_trust*.c: bounded
 * waits (a hang shows as a failure within seconds, not at the runner's
 * timeout), a SIGBUS catcher that keeps si_addr and si_code and counts
 * the signals nobody was waiting for, and a SIGUSR1 storm.
 */
#ifndef FOMAP_TEST_TRUST_H
#define FOMAP_TEST_TRUST_H

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include "../test.h"

#define RW (PROT_READ | PROT_WRITE)

static inline double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline void
sleep_us(long us)
{
	struct timespec ts = {us / 1000000, (us % 1000000) * 1000};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/*
 * Join t within secs seconds, or fail the test: the thread is stuck (the
 * failure exits the process, stuck threads and all).
 */
#define JOIN_WITHIN(t, secs, what) \
	trust_join(t, secs, what, NULL, __FILE__, __LINE__)
#define JOIN_WITHIN_RET(t, secs, what, retp) \
	trust_join(t, secs, what, retp, __FILE__, __LINE__)

static inline void
trust_join(pthread_t t, double secs, const char *what, void **retp,
    const char *file, int line)
{
	struct timespec ts;
	int r;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += (time_t)secs;
	ts.tv_nsec += (long)((secs - (double)(time_t)secs) * 1e9);
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	r = pthread_timedjoin_np(t, retp, &ts);
	if (r == ETIMEDOUT)
		fm_test_fail(file, line,
		    "%s: still not done after %.1f s (hung)", what, secs);
	if (r != 0)
		fm_test_fail(file, line, "%s: join: %s", what, strerror(r));
}

/* Wait until *flag is non-zero, at most secs seconds. => 1, or 0 */
static inline int
wait_flag(atomic_int *flag, double secs)
{
	double end = now_s() + secs;

	while (!atomic_load(flag)) {
		if (now_s() > end)
			return 0;
		sleep_us(200);
	}
	return 1;
}

/*
 * Watch counters for secs seconds (or until *stop is set): each must move
 * at least once every stall seconds, or the test fails naming it (a thread
 * stuck in a fault or a call).
 */
struct progress {
	const char *name;
	atomic_long *count;
	long last;
	double at;
};

#define WATCH(pv, n, secs, stall, stop) \
	trust_watch(pv, n, secs, stall, stop, __FILE__, __LINE__)

static inline void
trust_watch(struct progress *pv, int n, double secs, double stall,
    atomic_int *stop, const char *file, int line)
{
	double end = now_s() + secs;

	for (int i = 0; i < n; i++) {
		pv[i].last = atomic_load(pv[i].count);
		pv[i].at = now_s();
	}
	while (now_s() < end && !(stop && atomic_load(stop))) {
		sleep_us(20000);
		for (int i = 0; i < n; i++) {
			long c = atomic_load(pv[i].count);

			if (c != pv[i].last) {
				pv[i].last = c;
				pv[i].at = now_s();
			} else if (now_s() - pv[i].at > stall)
				fm_test_fail(file, line,
				    "%s: no progress for %.1f s (stuck at %ld)",
				    pv[i].name, stall, c);
		}
	}
}

/* ------------------------------------------------------------------------
 * SIGBUS, caught with sigsetjmp/siglongjmp in the thread that asked.
 */

static __thread sigjmp_buf tb_jb;
static __thread volatile sig_atomic_t tb_armed;
static __thread void *volatile tb_addr;
static __thread volatile int tb_code;
static atomic_long tb_total __attribute__((unused)); /* every SIGBUS */
static atomic_long tb_stray __attribute__((unused)); /* ... not awaited */

static inline void
tb_handler(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	if (sig == SIGSEGV) { /* (tb_catch(SIGSEGV)) the access ended so */
		if (!tb_armed) {
			signal(SIGSEGV, SIG_DFL);
			return; /* it faults again, and dies */
		}
		tb_armed = 0;
		siglongjmp(tb_jb, 2);
	}
	atomic_fetch_add(&tb_total, 1);
	if (tb_armed) {
		tb_armed = 0;
		tb_addr = si->si_addr;
		tb_code = si->si_code;
		siglongjmp(tb_jb, 1);
	}
	/* Nobody is touching fomap memory here: a late or spurious one. */
	atomic_fetch_add(&tb_stray, 1);
}

/*
 * Catch sig in every thread with tb_handler: SIGBUS; or SIGSEGV too, in the
 * access only (a protection changed under it; elsewhere it stays fatal).
 */
static inline void
tb_catch(int sig)
{
	struct sigaction sa = {.sa_sigaction = tb_handler,
	    .sa_flags = SA_SIGINFO | SA_RESTART};

	sigemptyset(&sa.sa_mask);
	ASSERT_OK(sigaction(sig, &sa, NULL));
}

static inline void
tb_install(void)
{
	tb_catch(SIGBUS);
}

/*
 * Touch one byte, catching SIGBUS: read it, or (wr) store 'x' into it
 * without reading it first. => 0 or SIGBUS (or SIGSEGV: tb_catch(SIGSEGV));
 * then tb_addr and tb_code say what the SIGBUS said.
 */
static inline int
tb_probe(volatile char *p, int wr)
{
	int k = sigsetjmp(tb_jb, 1);

	if (k != 0)
		return k == 2 ? SIGSEGV : SIGBUS;
	tb_addr = NULL;
	tb_armed = 1;
	if (wr)
		*p = 'x';
	else
		(void)*p;
	tb_armed = 0;
	return 0;
}

/* ------------------------------------------------------------------------
 * A storm of SIGUSR1 at one thread, one every ~40 µs.
 */

static atomic_long storm_hits __attribute__((unused));

static inline void
storm_handler(int sig)
{
	(void)sig;
	atomic_fetch_add(&storm_hits, 1);
}

struct storm {
	pthread_t target, self;
	atomic_int stop;
	long sent;
};

static inline void *
storm_main(void *arg)
{
	struct storm *s = arg;

	while (!atomic_load(&s->stop)) {
		if (pthread_kill(s->target, SIGUSR1) != 0)
			break;
		s->sent++;
		sleep_us(40);
	}
	return NULL;
}

static inline void
storm_start(struct storm *s, pthread_t target)
{
	struct sigaction sa = {.sa_handler = storm_handler,
	    .sa_flags = SA_RESTART};

	sigemptyset(&sa.sa_mask);
	ASSERT_OK(sigaction(SIGUSR1, &sa, NULL));
	s->target = target;
	atomic_store(&s->stop, 0);
	s->sent = 0;
	ASSERT_EQ(pthread_create(&s->self, NULL, storm_main, s), 0);
}

static inline void
storm_stop(struct storm *s)
{
	atomic_store(&s->stop, 1);
	JOIN_WITHIN(s->self, 3, "signal storm");
}

#endif
