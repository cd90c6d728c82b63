/*
 * daemon.h: helpers of the integration tests: a fomapd of the test's own
 * on a fresh mount, real programs run against it, and their results.
 */
#ifndef FOMAP_TEST_DAEMON_H
#define FOMAP_TEST_DAEMON_H

#include <stdint.h>
#include <sys/types.h>

struct fmd {
	pid_t pid;
	char dir[64]; /* its mount */
	char log[80]; /* its standard error */
};

/*
 * Start build/fomapd on a new directory with the given extra arguments
 * (NULL-terminated), and wait until it serves. Skips the test (with the
 * reason) without root, /dev/fuse or FUSE passthrough.
 */
void fmd_start(struct fmd *m, ...);
/* SIGTERM it and wait: => its exit status (waitpid's) */
int fmd_stop(struct fmd *m);
/* The path of a device under m's mount, in a static buffer of n's. */
const char *fmd_path(const struct fmd *m, const char *dev, int n);
/* Run a shell command line (printf format): => its exit code, or -1 */
int fmd_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Skips the test unless the program is installed. */
void fmd_need(const char *program);
/* Files, beside the test binary, built for these tests (fomapctl, ...). */
const char *fmd_tool(const char *name);
/*
 * LD_PRELOAD's value for the preload library (with the sanitizer
 * runtimes it was built with first, which must come first).
 */
const char *fmd_preload_value(void);
/* CLOCK_MONOTONIC in ns. */
int64_t fmd_now_ns(void);
/* The same as a shell's assignment: LD_PRELOAD='...'. */
const char *fmd_preload_env(void);
/* A script of these tests (tests/integration/name), by its full path. */
const char *fmd_script(const char *name);
/* The count of "open" lines fomapctl shows. */
int fmd_opens(const struct fmd *m);
/* Until fomapctl shows n opens (a RELEASE follows the last close soon). */
void fmd_wait_opens(const struct fmd *m, int n);
/* Until fomapd has at least n calls parked on a driver (10 s at most). */
void fmd_wait_waits(const struct fmd *m, int n);
/* The same while program prog (a child) runs: its end fails the test. */
void fmd_wait_waits_of(const struct fmd *m, int n, pid_t prog);

#endif
