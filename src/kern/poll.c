/*
 * poll.c: readiness of fomap files (a driver's fo_poll, d_poll) and the
 * wake-ups drivers post when it changes (NetBSD's selnotify).
 *
 * fm_poll is poll(2) as the kernel does it: the caller's array is copied
 * in (EFAULT if it cannot be read), every entry is looked at, and when
 * none is ready the call sleeps until one may be, a signal is caught
 * (EINTR) or the time is up; then the revents are copied out (EFAULT if
 * they cannot be written). The look runs with asynchronous signals
 * blocked, and the sleep is one ppoll(2) with the caller's mask, over the
 * other descriptors of the set and an eventfd of the call's own that a
 * wake-up writes: so a signal that comes while the call looks ends its
 * sleep as surely as one that comes while it sleeps (pselect's reason to
 * be), and a wake-up or another descriptor ends it at once.
 *
 * A generation counter counts every wake-up; a call registers its eventfd
 * before it sleeps, and looks again if the counter moved since its look.
 * A host that serves opens elsewhere (fomapd) is told too.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <time.h>

#include <fomap/fomap.h>

#include "kern/kern.h"

/* With no eventfd to be had: how often a call looks at fomap's files. */
#define FM_POLL_LOOK_MS 10
#define FM_POLL_SMALL 8 /* entries a call takes on its stack, not malloc */

void (*fm__poll_notify)(struct fm_dev *dev, struct fm_file *fp);

/* A call that sleeps on fomap files: the eventfd its wake-ups write. */
struct waiter {
	int efd;
	struct waiter *next;
};

static struct {
	pthread_mutex_t lock; /* waiters; taken in fm__crit_enter */
	_Atomic uint64_t gen; /* wake-ups so far */
	struct waiter *waiters;
} wk = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void
wakeup(struct fm_dev *dev, struct fm_file *fp)
{
	void (*notify)(struct fm_dev *, struct fm_file *) = fm__poll_notify;
	struct fm_crit c;

	fm__crit_enter(&c); /* eventfd_write is a cancellation point */
	pthread_mutex_lock(&wk.lock);
	atomic_fetch_add(&wk.gen, 1);
	for (struct waiter *w = wk.waiters; w != NULL; w = w->next)
		(void)eventfd_write(w->efd, 1);
	pthread_mutex_unlock(&wk.lock);
	fm__crit_leave(&c);
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

/* One fm_poll call. */
struct pollset {
	struct pollfd *in; /* the caller's entries, copied; revents set here */
	struct pollfd *sys; /* nfds + 1: the kernel's (fomap's fd -1), then
	                       the eventfd */
	nfds_t nfds;
	nfds_t others; /* entries the kernel looks at */
	nfds_t files; /* fomap files, whose wake-ups the sleep waits for */
	struct waiter w; /* efd -1 until the first sleep on a fomap file */
	int registered; /* w is on wk.waiters */
	sigset_t old; /* the caller's signal mask */
	/* in and sys of a small call: no malloc (a signal handler's call) */
	struct pollfd small[2 * FM_POLL_SMALL + 1];
};

/*
 * Copy the caller's entries in (as the kernel's copy_from_user) and block
 * asynchronous signals until pollset_done. => 0 or -errno, ps not set up
 */
static int
pollset_init(struct pollset *ps, const struct pollfd *fds, nfds_t nfds)
{
	size_t len = nfds * sizeof(*fds);
	sigset_t async;

	*ps = (struct pollset){.nfds = nfds, .w = {.efd = -1}};
	if (nfds > 0 && fm__user_span(fds, len, 0) < len)
		return -EFAULT;
	ps->in = nfds <= FM_POLL_SMALL ? ps->small
	                               : calloc(2 * nfds + 1, sizeof(*fds));
	if (ps->in == NULL)
		return -ENOMEM;
	ps->sys = ps->in + nfds;
	if (nfds > 0)
		memcpy(ps->in, fds, len);
	fm__async_signals(&async);
	pthread_sigmask(SIG_BLOCK, &async, &ps->old);
	return 0;
}

/*
 * Copy the revents out, as far as fds may be written (the kernel's
 * put_user stops at the first fault). => r, or -EFAULT
 */
static int
pollset_out(const struct pollset *ps, struct pollfd *fds, int r)
{
	size_t len = ps->nfds * sizeof(*fds), ok, at;

	if (ps->nfds == 0)
		return r;
	ok = fm__user_span(fds, len, 1);
	for (nfds_t i = 0; i < ps->nfds; i++) {
		at = i * sizeof(*fds) + offsetof(struct pollfd, revents);
		if (at + sizeof(fds->revents) > ok)
			return -EFAULT;
		memcpy((char *)fds + at, &ps->in[i].revents,
		    sizeof(fds->revents)); /* fds may be misaligned */
	}
	return r;
}

/*
 * Undo pollset_init, and what the call did since (a cancellation too:
 * close is a cancellation point, so none may act in here).
 */
static void
pollset_done(void *arg)
{
	struct pollset *ps = arg;
	struct fm_crit c;
	int cs;

	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cs);
	if (ps->registered) {
		fm__crit_enter(&c);
		pthread_mutex_lock(&wk.lock);
		for (struct waiter **pp = &wk.waiters; *pp; pp = &(*pp)->next)
			if (*pp == &ps->w) {
				*pp = ps->w.next;
				break;
			}
		pthread_mutex_unlock(&wk.lock);
		fm__crit_leave(&c);
	}
	if (ps->w.efd >= 0)
		close(ps->w.efd);
	if (ps->in != ps->small)
		free(ps->in);
	pthread_sigmask(SIG_SETMASK, &ps->old, NULL);
	pthread_setcancelstate(cs, NULL);
}

/*
 * Entry i: a fomap file's readiness (fo_poll), POLLNVAL for a descriptor
 * that is not open to poll (an O_PATH open, or a fork child's copy of a
 * parent's file, as fdget refuses), or 0 and left to the kernel (sys[i]).
 */
static short
look_entry(struct pollset *ps, nfds_t i)
{
	struct pollfd *p = &ps->in[i];
	struct fm_file *fp;
	short rev = POLLNVAL;
	int err;

	ps->sys[i] = (struct pollfd){.fd = -1};
	if (p->fd < 0)
		return 0;
	fp = fm__file_get(p->fd, NULL, &err);
	if (fp == NULL && err == 0) {
		ps->sys[i] = (struct pollfd){.fd = p->fd, .events = p->events};
		ps->others++;
		return 0;
	}
	if (fp != NULL && !(fp->f_flag & O_PATH)) {
		rev = (short)fm__fo_poll(fp, p->events);
		ps->files++;
	}
	if (fp != NULL)
		fm__file_rele(fp);
	return rev;
}

/*
 * One look at every entry: fomap's through look_entry, the others with
 * one poll(2) of timeout 0. => the count of entries with revents, or
 * -errno
 */
static int
look(struct pollset *ps)
{
	int ready = 0, r;

	ps->others = ps->files = 0;
	for (nfds_t i = 0; i < ps->nfds; i++) {
		ps->in[i].revents = look_entry(ps, i);
		ready += ps->in[i].revents != 0;
	}
	if (ps->others == 0)
		return ready;
	if ((r = poll(ps->sys, ps->nfds, 0)) < 0)
		return -errno;
	for (nfds_t i = 0; r > 0 && i < ps->nfds; i++)
		if (ps->sys[i].fd >= 0 && ps->sys[i].revents) {
			ps->in[i].revents = ps->sys[i].revents;
			ready++;
		}
	return ready;
}

/*
 * Put ps's eventfd (made at its first sleep) where wake-ups write it.
 * => 1: armed; 0: a wake-up came since gen, the look is stale; -1: no
 *    eventfd could be made
 */
static int
arm(struct pollset *ps, uint64_t gen)
{
	struct fm_crit c;
	int armed;

	if (ps->w.efd < 0 &&
	    (ps->w.efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0)
		return -1;
	fm__crit_enter(&c);
	pthread_mutex_lock(&wk.lock);
	if (!ps->registered) {
		ps->w.next = wk.waiters;
		wk.waiters = &ps->w;
		ps->registered = 1;
	}
	armed = atomic_load(&wk.gen) == gen;
	pthread_mutex_unlock(&wk.lock);
	fm__crit_leave(&c);
	return armed;
}

#define NS 1000000000LL

/*
 * Sleep, with the caller's signal mask, until one of the others may be
 * ready, a wake-up after gen (if a fomap file waits), or ns (< 0: no
 * end). A stale look sleeps not at all, but lets a signal in all the
 * same (a driver's hook that wakes itself must not keep them out).
 * => 0: look again; -EINTR: a signal was caught; or -errno
 */
static int
sleep_ready(struct pollset *ps, uint64_t gen, int64_t ns)
{
	const int64_t look = (int64_t)FM_POLL_LOOK_MS * 1000000;
	nfds_t n = ps->nfds;
	struct timespec ts;
	uint64_t v;

	if (ps->files > 0) {
		int a = arm(ps, gen);

		if (a == 0) { /* stale: no sleep, but a signal may come in */
			ns = 0;
			n = 0;
		} else if (a > 0)
			ps->sys[n++] =
			    (struct pollfd){.fd = ps->w.efd, .events = POLLIN};
		else if (ns < 0 || ns > look)
			ns = look;
	}
	ts = (struct timespec){(time_t)(ns / NS), (long)(ns % NS)};
	if (ppoll(n ? ps->sys : NULL, n, ns < 0 ? NULL : &ts, &ps->old) < 0)
		return -errno;
	if (ps->w.efd >= 0)
		(void)eventfd_read(ps->w.efd, &v); /* the next sleep's anew */
	return 0;
}

static int64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * NS + ts.tv_nsec;
}

/*
 * Look, and sleep while nothing is ready (timeout in ms, kept to the
 * nanosecond: never an early end). => the count, or -errno
 */
static int
poll_loop(struct pollset *ps, int timeout)
{
	int64_t end = timeout > 0 ? now_ns() + (int64_t)timeout * 1000000 : 0,
	        left = -1;

	for (;;) {
		/* Taken before the look: a wake-up after it counts. */
		uint64_t gen = atomic_load(&wk.gen);
		int r = look(ps);

		if (r != 0)
			return r;
		if (timeout >= 0 && (left = end - now_ns()) <= 0)
			return 0;
		if ((r = sleep_ready(ps, gen, left)) < 0)
			return r;
	}
}

int
fm_poll(struct pollfd *fds, unsigned long nfds, int timeout)
{
	struct pollset ps;
	struct rlimit rl;
	int r;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && nfds > rl.rlim_cur)
		return fm__syserr(-EINVAL);
	if ((r = pollset_init(&ps, fds, nfds)) < 0)
		return fm__syserr(r);
	pthread_cleanup_push(pollset_done, &ps);
	r = pollset_out(&ps, fds, poll_loop(&ps, timeout));
	pthread_cleanup_pop(1);
	if (r < 0)
		return fm__syserr(r);
	return r;
}
