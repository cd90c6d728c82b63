/*
 * poll.c: readiness of fomap files (a driver's fo_poll, d_poll) and the
 * wake-ups drivers post when it changes (NetBSD's selnotify).
 *
 * One generation counter counts every wake-up; fm_poll waits for it to
 * move. A host that serves opens elsewhere (fomapd) is told too.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

#include <fomap/fomap.h>

#include "kern/kern.h"

#define FM_POLL_MIXED_MS 10 /* how often other descriptors are looked at */

void (*fm__poll_notify)(struct fm_dev *dev, struct fm_file *fp);

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cv;
	uint64_t gen; /* wake-ups so far */
} wk = {.lock = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static void
wakeup(struct fm_dev *dev, struct fm_file *fp)
{
	void (*notify)(struct fm_dev *, struct fm_file *) = fm__poll_notify;

	pthread_mutex_lock(&wk.lock);
	wk.gen++;
	pthread_cond_broadcast(&wk.cv);
	pthread_mutex_unlock(&wk.lock);
	if (notify)
		notify(dev, fp);
}

void
fm_file_wakeup(struct fm_file *fp)
{
	if (fp != NULL)
		wakeup(fp->f_dev, fp);
}

void
fm_dev_wakeup(struct fm_dev *dev)
{
	if (dev != NULL)
		wakeup(dev, NULL);
}

/*
 * One look at every entry: fomap's through their fo_poll, the others
 * gathered (sys, made at the first) for one poll(2) of timeout 0.
 * *others: how many were not fomap's. => the count of entries with
 * revents, or -errno
 */
static int
poll_once(struct pollfd *fds, nfds_t nfds, nfds_t *others)
{
	struct pollfd *sys = NULL;
	int ready = 0, r = 0;

	*others = 0;
	for (nfds_t i = 0; i < nfds; i++) {
		struct fm_file *fp;
		int err;

		fds[i].revents = 0;
		if (fds[i].fd < 0)
			continue;
		if ((fp = fm__file_get(fds[i].fd, NULL, &err)) != NULL) {
			fds[i].revents = (short)fm__fo_poll(fp, fds[i].events);
			fm__file_rele(fp);
			ready += fds[i].revents != 0;
			continue;
		}
		if (err < 0) { /* a fork child's copy of a parent's file */
			fds[i].revents = POLLNVAL;
			ready++;
			continue;
		}
		if (sys == NULL) {
			if ((sys = calloc(nfds, sizeof(*sys))) == NULL)
				return -ENOMEM;
			for (nfds_t j = 0; j < nfds; j++) /* left out */
				sys[j].fd = -1;
		}
		sys[i] =
		    (struct pollfd){.fd = fds[i].fd, .events = fds[i].events};
		++*others;
	}
	if (sys == NULL)
		return ready;
	if ((r = poll(sys, nfds, 0)) < 0)
		r = -errno;
	for (nfds_t i = 0; r > 0 && i < nfds; i++)
		if (sys[i].fd >= 0 && sys[i].revents) {
			fds[i].revents = sys[i].revents;
			ready++;
		}
	free(sys);
	return r < 0 ? r : ready;
}

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait until a wake-up after gen, or ms (< 0: for ever). */
static void
wait_gen(uint64_t gen, int64_t ms)
{
	struct timespec ts;

	pthread_mutex_lock(&wk.lock);
	if (ms >= 0) {
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += ms / 1000;
		ts.tv_nsec += (ms % 1000) * 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
	}
	while (wk.gen == gen)
		if (ms < 0)
			pthread_cond_wait(&wk.cv, &wk.lock);
		else if (pthread_cond_timedwait(&wk.cv, &wk.lock, &ts) != 0)
			break;
	pthread_mutex_unlock(&wk.lock);
}

int
fm_poll(struct pollfd *fds, unsigned long nfds, int timeout)
{
	int64_t end = timeout > 0 ? now_ms() + timeout : 0;
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && nfds > rl.rlim_cur)
		return fm__syserr(-EINVAL);
	for (;;) {
		uint64_t gen;
		int64_t left = timeout < 0 ? -1 : end - now_ms();
		nfds_t others;
		int r;

		pthread_mutex_lock(&wk.lock);
		gen = wk.gen; /* before the look: a wake-up after it counts */
		pthread_mutex_unlock(&wk.lock);
		if ((r = poll_once(fds, nfds, &others)) != 0)
			return r < 0 ? fm__syserr(r) : r;
		if (timeout == 0 || (timeout > 0 && left <= 0))
			return 0;
		if (others > 0 && (left < 0 || left > FM_POLL_MIXED_MS))
			left = FM_POLL_MIXED_MS;
		wait_gen(gen, left);
	}
}
