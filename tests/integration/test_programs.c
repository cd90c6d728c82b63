/*
 * test_programs.c: programs nobody here wrote, unmodified, against fomapd's
 * fb0 and video0: fbcat, fbset, yavta, python3; and what they meet when
 * the daemon dies under them or they are interrupted in a wait.
 */
#include <fcntl.h>
#include <linux/videodev2.h>
#include <poll.h>
#include <pthread.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../test.h"
#include "daemon.h"

/* waitpid, for at most ms: => pid once it has ended, else 0 */
static pid_t
reap_within(pid_t pid, int *st, int ms)
{
	pid_t w = 0;

	for (int i = 0; i < ms / 10 && (w = waitpid(pid, st, WNOHANG)) == 0;
	     i++)
		usleep(10000);
	return w;
}

TEST(daemon_fbcat_screenshot_is_what_the_driver_drew)
{
	struct fmd m;

	fmd_need("fbcat");
	fmd_need("python3");
	fmd_start(&m, NULL);
	ASSERT_EQ(fmd_sh("python3 %s draw %s 7 >/dev/null",
	              fmd_script("fbcheck.py"), fmd_path(&m, "fb0", 0)),
	    0);
	ASSERT_EQ(fmd_sh("fbcat %s > %s/../shot-%d.ppm", fmd_path(&m, "fb0", 0),
	              m.dir, (int)getpid()),
	    0);
	ASSERT_EQ(
	    fmd_sh("python3 %s ppm %s/../shot-%d.ppm 7 640 480 >/dev/null",
	        fmd_script("fbcheck.py"), m.dir, (int)getpid()),
	    0);
	/* The check can fail: another seed's pattern is not this one. */
	ASSERT_NE(fmd_sh("python3 %s ppm %s/../shot-%d.ppm 8 640 480 "
	                 ">/dev/null 2>&1",
	              fmd_script("fbcheck.py"), m.dir, (int)getpid()),
	    0);
	fmd_sh("rm -f %s/../shot-%d.ppm", m.dir, (int)getpid());
	ASSERT_EQ(fmd_stop(&m), 0);
}

TEST(daemon_fbset_reads_and_changes_the_mode)
{
	struct fmd m;
	const char *fb;

	fmd_need("fbset");
	fmd_start(&m, NULL);
	fb = fmd_path(&m, "fb0", 0);
	ASSERT_EQ(
	    fmd_sh("fbset -fb %s -i | grep -q 'geometry 640 480 640 960 32'",
	        fb),
	    0);
	ASSERT_EQ(fmd_sh("fbset -fb %s -i | grep -q 'Name *: fomap-fb0'", fb),
	    0);
	ASSERT_EQ(fmd_sh("fbset -fb %s -g 800 600 800 1200 32", fb), 0);
	ASSERT_EQ(
	    fmd_sh("fbset -fb %s | grep -q 'geometry 800 600 800 1200 32'", fb),
	    0);
	/* A mode too large for the memory: refused, the mode as it was. */
	ASSERT_NE(fmd_sh("fbset -fb %s -g 4000 4000 4000 4000 32 2>/dev/null",
	              fb),
	    0);
	ASSERT_EQ(
	    fmd_sh("fbset -fb %s | grep -q 'geometry 800 600 800 1200 32'", fb),
	    0);
	ASSERT_EQ(fmd_stop(&m), 0);
}

TEST(daemon_python_maps_the_framebuffer_and_ioctls_it)
{
	struct fmd m;

	fmd_need("python3");
	fmd_start(&m, NULL);
	ASSERT_EQ(fmd_sh("python3 %s map %s >/dev/null",
	              fmd_script("fbcheck.py"), fmd_path(&m, "fb0", 0)),
	    0);
	ASSERT_EQ(fmd_stop(&m), 0);
}

/* A legacy number's bad pointer: EFAULT, as the kernel's copy would. */
TEST(daemon_legacy_ioctl_bad_pointer_gets_efault)
{
	struct fmd m;
	int fd;

	fmd_start(&m, NULL);
	ASSERT((fd = open(fmd_path(&m, "fb0", 0), O_RDWR)) >= 0);
	ASSERT_ERRNO(ioctl(fd, 0x4600 /* FBIOGET_VSCREENINFO */, (void *)8),
	    EFAULT);
	ASSERT_ERRNO(ioctl(fd, 0x4601 /* FBIOPUT_VSCREENINFO */, (void *)8),
	    EFAULT);
	ASSERT_OK(close(fd));
	ASSERT_EQ(fmd_stop(&m), 0);
}

TEST_TAGGED(daemon_yavta_captures_the_pattern_over_mmap_streaming, "thread")
{
	struct fmd m;

	fmd_need("yavta");
	fmd_need("python3");
	fmd_start(&m, NULL);
	ASSERT_EQ(
	    fmd_sh("mkdir -p %s.frames && yavta -c12 -n4 -f YUYV -s 320x240 "
	           "-t 1/100 -F%s.frames/frame-#.bin %s >/dev/null",
	        m.dir, m.dir, fmd_path(&m, "video0", 0)),
	    0);
	ASSERT_EQ(fmd_sh("python3 %s %s.frames 12 153600 240",
	              fmd_script("framecheck.py"), m.dir),
	    0);
	fmd_sh("rm -rf %s.frames", m.dir);
	ASSERT_EQ(fmd_stop(&m), 0);
}

/* yavta capturing while fomapd is killed: it fails and exits, no hang. */
TEST(daemon_killed_during_a_capture_the_program_exits)
{
	struct fmd m;
	pid_t pid;
	int st;

	fmd_need("yavta");
	fmd_start(&m, NULL);
	ASSERT((pid = fork()) >= 0);
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);

		dup2(null, 1);
		dup2(null, 2);
		execlp("yavta", "yavta", "-c100000", "-n4", "-f", "YUYV", "-s",
		    "320x240", fmd_path(&m, "video0", 0), (char *)NULL);
		_exit(127);
	}
	fmd_wait_waits_of(&m, 1, pid); /* streaming: DQBUF waits for frames */
	kill(m.pid, SIGKILL);
	ASSERT_EQ(waitpid(m.pid, NULL, 0), m.pid);
	m.pid = 0;
	ASSERT_EQ(reap_within(pid, &st, 5000), pid);
	ASSERT(WIFEXITED(st) && WEXITSTATUS(st) != 0 && WEXITSTATUS(st) != 127);
	fmd_stop(&m);
}

struct cap {
	int fd;
	void *buf[2];
};

/* video0 streaming at fps frames a second, 2 buffers, none queued. */
static void
stream(const struct fmd *m, struct cap *c, int fps)
{
	struct v4l2_requestbuffers rb = {.count = 2,
	    .type = V4L2_BUF_TYPE_VIDEO_CAPTURE,
	    .memory = V4L2_MEMORY_MMAP};
	struct v4l2_streamparm sp = {.type = V4L2_BUF_TYPE_VIDEO_CAPTURE};
	int type = V4L2_BUF_TYPE_VIDEO_CAPTURE;

	ASSERT((c->fd = open(fmd_path(m, "video0", 0), O_RDWR)) >= 0);
	sp.parm.capture.timeperframe.numerator = 1;
	sp.parm.capture.timeperframe.denominator = (unsigned)fps;
	ASSERT_OK(ioctl(c->fd, VIDIOC_S_PARM, &sp));
	ASSERT_OK(ioctl(c->fd, VIDIOC_REQBUFS, &rb));
	ASSERT_EQ(rb.count, 2);
	ASSERT_OK(ioctl(c->fd, VIDIOC_STREAMON, &type));
}

static int
qbuf(struct cap *c, unsigned i)
{
	struct v4l2_buffer b = {.index = i,
	    .type = V4L2_BUF_TYPE_VIDEO_CAPTURE,
	    .memory = V4L2_MEMORY_MMAP};

	return ioctl(c->fd, VIDIOC_QBUF, &b);
}

static int
dqbuf(struct cap *c)
{
	struct v4l2_buffer b = {.type = V4L2_BUF_TYPE_VIDEO_CAPTURE,
	    .memory = V4L2_MEMORY_MMAP};

	return ioctl(c->fd, VIDIOC_DQBUF, &b);
}

static void
on_alarm(int sig)
{
	(void)sig;
}

/*
 * A program blocked in a driver's wait (DQBUF with nothing queued) that
 * takes a signal gets EINTR (FUSE's INTERRUPT ends the daemon's wait); one
 * killed there dies at once. poll(2) waits for a frame (FUSE's poll
 * notification).
 */
TEST_TAGGED(daemon_waits_end_on_signals_and_poll_sees_frames, "thread")
{
	struct sigaction sa = {.sa_handler = on_alarm};
	struct fmd m;
	struct cap c;
	pid_t pid;
	int st;

	fmd_start(&m, NULL);
	stream(&m, &c, 100);
	sigaction(SIGALRM, &sa, NULL); /* no SA_RESTART */
	/* Again and again: one that came before the call would be lost. */
	struct itimerval it = {{0, 100000}, {0, 100000}},
	                 off = {{0, 0}, {0, 0}};
	setitimer(ITIMER_REAL, &it, NULL);
	ASSERT_ERRNO(dqbuf(&c), EINTR);
	setitimer(ITIMER_REAL, &off, NULL);

	ASSERT((pid = fork()) >= 0);
	if (pid == 0) {
		struct cap k;

		stream(&m, &k, 100);
		(void)dqbuf(&k); /* nothing queued: waits */
		_exit(0);
	}
	fmd_wait_waits(&m, 1); /* its DQBUF waits in fomapd */
	kill(pid, SIGKILL);
	ASSERT_EQ(reap_within(pid, &st, 3000), pid);
	ASSERT(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);

	struct pollfd p = {.fd = c.fd, .events = POLLIN};
	ASSERT_OK(qbuf(&c, 0));
	ASSERT_EQ(poll(&p, 1, 5000), 1);
	ASSERT(p.revents & POLLIN);
	ASSERT_OK(dqbuf(&c));
	ASSERT_OK(close(c.fd));
	fmd_wait_opens(&m, 0);
	ASSERT_EQ(fmd_stop(&m), 0);
}

struct waiter {
	struct cap *c;
	int err;
};

static void *
dq_main(void *arg)
{
	struct waiter *w = arg;

	w->err = dqbuf(w->c) < 0 ? errno : 0;
	return NULL;
}

#define WAITERS 100

/*
 * More calls waiting on a driver than fomapd has threads: none holds a
 * thread (they are parked), so other calls are served meanwhile; STREAMOFF
 * wakes them all; and SIGTERM with calls parked ends fomapd cleanly.
 */
TEST(daemon_many_waits_hold_no_thread)
{
	static struct waiter w[WAITERS];
	static pthread_t t[WAITERS];
	struct v4l2_capability cap;
	int type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
	struct fmd m;
	struct cap c, c2;

	fmd_start(&m, NULL);
	stream(&m, &c, 100);
	for (int i = 0; i < WAITERS; i++) {
		w[i] = (struct waiter){.c = &c};
		ASSERT_EQ(pthread_create(&t[i], NULL, dq_main, &w[i]), 0);
	}
	fmd_wait_waits(&m, WAITERS);
	ASSERT_OK(ioctl(c.fd, VIDIOC_QUERYCAP, &cap)); /* served meanwhile */
	ASSERT_EQ(fmd_sh("cmp -n 4096 %s /dev/zero", fmd_path(&m, "zero", 0)),
	    0);
	ASSERT_OK(ioctl(c.fd, VIDIOC_STREAMOFF, &type));
	for (int i = 0; i < WAITERS; i++) {
		ASSERT_EQ(pthread_join(t[i], NULL), 0);
		ASSERT_EQ(w[i].err, EINVAL); /* not streaming any more */
	}
	ASSERT_OK(close(c.fd));

	stream(&m, &c2, 100);
	struct waiter last = {.c = &c2};
	pthread_t lt;
	ASSERT_EQ(pthread_create(&lt, NULL, dq_main, &last), 0);
	fmd_wait_waits(&m, 1);
	int st;
	kill(m.pid, SIGTERM);
	ASSERT_EQ(reap_within(m.pid, &st, 5000), m.pid);
	m.pid = 0;
	ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	ASSERT_EQ(pthread_join(lt, NULL), 0);
	ASSERT(last.err == EINTR || last.err == ENOTCONN);
	(void)close(c2.fd);
	fmd_stop(&m);
}

static void *
sigchld_main(void *arg)
{
	sigset_t chld;
	pid_t pid;

	(void)arg;
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	pthread_sigmask(SIG_BLOCK, &chld, NULL);
	if ((pid = fork()) == 0)
		_exit(
		    0); /* its SIGCHLD: the process's, this thread blocks it */
	(void)waitpid(pid, NULL, 0);
	return NULL;
}

/*
 * A signal the waiting thread ignores (a SIGCHLD that a sibling blocks
 * comes to it) does not end its wait; a SIGKILL after it still kills it,
 * though FUSE sends no second INTERRUPT (fomapd looks: deferred_check).
 */
TEST_TAGGED(daemon_wait_goes_on_through_an_ignored_signal, "thread")
{
	struct fmd m;
	pid_t pid;
	int st, ready[2];

	fmd_start(&m, NULL);
	ASSERT_OK(pipe(ready));
	ASSERT((pid = fork()) >= 0);
	if (pid == 0) {
		struct cap k;
		pthread_t t;

		stream(&m, &k, 100);
		(void)!write(ready[1], "r", 1);
		usleep(100000); /* the DQBUF below is parked by then */
		pthread_create(&t, NULL, sigchld_main, NULL);
		(void)dqbuf(&k); /* nothing queued: waits, until killed */
		_exit(3);
	}
	char c;
	ASSERT_EQ(read(ready[0], &c, 1), 1);
	fmd_wait_waits(&m, 1);
	usleep(400000); /* the SIGCHLD came and went */
	ASSERT_EQ(waitpid(pid, &st, WNOHANG), 0); /* still waiting */
	fmd_wait_waits(&m, 1);
	kill(pid, SIGKILL);
	ASSERT_EQ(reap_within(pid, &st, 3000), pid);
	ASSERT(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
	fmd_wait_opens(&m, 0);
	ASSERT_EQ(fmd_stop(&m), 0);
}
