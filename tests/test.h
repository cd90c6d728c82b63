/*
 * test.h: fomap's test harness. Each TEST() runs in its own child process,
 * in its own process group, with a timeout kept by the runner (a broken
 * fault path hangs rather than crashes); its output is shown only when it
 * fails. The runner (runner.c) prints TAP-like lines and one closing line
 * "N passed, N failed, N skipped".
 */
#ifndef FOMAP_TEST_H
#define FOMAP_TEST_H

#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include <fomap/driver.h>

#define PG FM_PAGE_SIZE /* tests count in fomap's pages */

typedef void fm_test_fn(void);

struct fm_test {
	const char *name;
	const char *tags; /* space-separated: "thread" runs under tsan-check */
	fm_test_fn *fn;
	struct fm_test *next;
};

void fm_test_register(struct fm_test *t);
/* Ends the test as skipped; why goes on its TAP line. */
void fm_test_skip(const char *why) __attribute__((noreturn));
void fm_test_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 3, 4)));
/* Skips the test unless userfaultfd can be used here. */
void fm_test_need_uffd(void);
/* A hang: what pid (thread tid, if > 0) is doing, into FOMAP_TEST_HANG_DUMP. */
void fm_test_hang_dump(pid_t pid, pid_t tid, const char *why);
/*
 * The engine's decisions (fm__trace_engine, FM_TRACE) go to fm_test_trace
 * while it is set: the oracle's trace, or a test that acts at a chosen
 * moment of a fault (in the engine thread, before the engine goes on).
 */
typedef void fm_test_trace_fn(const char *what, pid_t tid, uintptr_t va,
    unsigned long x);
extern fm_test_trace_fn *_Atomic fm_test_trace;

#define TEST_TAGGED(name, tags)                                                \
	static void test_##name(void);                                         \
	static struct fm_test test_rec_##name = {#name, tags, test_##name, 0}; \
	__attribute__((constructor)) static void test_reg_##name(void)         \
	{                                                                      \
		fm_test_register(&test_rec_##name);                            \
	}                                                                      \
	static void test_##name(void)
#define TEST(name) TEST_TAGGED(name, "")

#define ASSERT(c)                                                   \
	do {                                                        \
		if (!(c))                                           \
			fm_test_fail(__FILE__, __LINE__, "%s", #c); \
	} while (0)

#define ASSERT_CMP(a, op, b, fmt, type)                                        \
	do {                                                                   \
		type a_ = (type)(a);                                           \
		type b_ = (type)(b);                                           \
		if (!(a_ op b_))                                               \
			fm_test_fail(__FILE__, __LINE__,                       \
			    "%s " #op " %s: " fmt " vs " fmt, #a, #b, a_, b_); \
	} while (0)
#define ASSERT_EQ(a, b) ASSERT_CMP(a, ==, b, "%lld", long long)
#define ASSERT_NE(a, b) ASSERT_CMP(a, !=, b, "%lld", long long)
#define ASSERT_GE(a, b) ASSERT_CMP(a, >=, b, "%lld", long long)
#define ASSERT_LE(a, b) ASSERT_CMP(a, <=, b, "%lld", long long)
typedef const void *fm_test_ptr;
#define ASSERT_PTR_EQ(a, b) ASSERT_CMP(a, ==, b, "%p", fm_test_ptr)
/* A call that must fail with errno e. */
#define ASSERT_ERRNO(call, e)                                                \
	do {                                                                 \
		errno = 0;                                                   \
		long r_ = (long)(call);                                      \
		int e_ = errno;                                              \
		if (r_ != -1 || e_ != (e))                                   \
			fm_test_fail(__FILE__, __LINE__,                     \
			    "%s: returned %ld errno %d (%s), want errno %d " \
			    "(%s)",                                          \
			    #call, r_, e_, strerror(e_), (e), strerror(e));  \
	} while (0)
#define ASSERT_OK(call)                                                \
	do {                                                           \
		errno = 0;                                             \
		long r_ = (long)(call);                                \
		if (r_ < 0)                                            \
			fm_test_fail(__FILE__, __LINE__,               \
			    "%s: %ld errno %d (%s)", #call, r_, errno, \
			    strerror(errno));                          \
	} while (0)

/*
 * fm_test_probe: touch one byte (write when wr), catching SIGBUS/SIGSEGV in
 * this thread. Returns 0, SIGBUS or SIGSEGV.
 */
int fm_test_probe(volatile char *p, int wr);
/* si_addr of the last signal fm_test_probe caught in this thread. */
void *fm_test_fault_addr(void);

#endif
