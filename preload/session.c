/*
 * session.c: the process's sessions with fomapd (src/ipc/proto.h): one
 * for each fomapd whose files it maps, made at the first mmap of one.
 *
 * A session's socket is read by its watcher thread alone: replies go to
 * the one thread waiting for one (requests go one at a time: rlock),
 * fomapd's own requests (FM_IPC_ZAP) are answered there and then, so a
 * requester's wait never holds up a zap its own request caused. EOF is
 * fomapd's death: the watcher wakes every thread waiting in a fault of
 * the session's ranges and answers every later fault with SIGBUS (poison)
 * through the userfaultfd it kept for that: nothing hangs; every later
 * request fails with ENOTCONN, as the FUSE front's calls do.
 *
 * States: FREE -> LIVE (HELLO taken; fmp_session_get) -> DEAD (EOF;
 * watcher) or FORKED (in a child; fmp_session_postfork), then LIVE again
 * (HELLO_CHILD), FREE (it inherited no range of it) or ORPHAN (its fork
 * not named: its ranges stay served, no request goes through it); FREE
 * -> NOENGINE
 * (fomapd has no engine for this process: ENOSYS, or no userfaultfd can
 * be made). A slot the table's ranges point at is never reused.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include "ipc/ipc.h"
#include "preload.h"

/* Newer than the installed kernel headers (6.1): see src/vm/uffd_compat.h. */
#ifndef _UFFDIO_POISON
#define _UFFDIO_POISON (0x08) /* 6.6 */
struct uffdio_poison {
	struct uffdio_range range;
	__u64 mode;
	__s64 updated;
};
#define UFFDIO_POISON _IOWR(UFFDIO, _UFFDIO_POISON, struct uffdio_poison)
#endif
#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC 0xAA
#define USERFAULTFD_IOC_NEW _IO(USERFAULTFD_IOC, 0x00)
#endif

#define FMP_SESSIONS 8 /* fomapds one process maps from, over its life */

enum { S_FREE, S_LIVE, S_NOENGINE, S_DEAD, S_FORKED, S_ORPHAN };

struct fmp_session {
	char name[FM_IPC_NAME_MAX];
	atomic_int state;
	int was_live; /* FORKED: live in the parent (a child's to remake) */
	int sock; /* -1 once DEAD (closed under rlock) */
	int uffd; /* kept for fomapd's death */
	pthread_mutex_t rlock; /* one request at a time */
	pthread_mutex_t lock; /* what follows; the state's changes */
	pthread_cond_t cv;
	uint64_t seq; /* the request waiting for its reply */
	int waiting, got, rfd;
	struct fm_ipc_msg reply;
};

static struct fmp_session sessions[FMP_SESSIONS];
static pthread_mutex_t slock = PTHREAD_MUTEX_INITIALIZER; /* making them */

static void
closefds(const int *fds, int from)
{
	for (int i = from; i < FM_IPC_MAXFDS; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

/* ------------------------------------------------------------------ */
/* Making a session (slock held, signals blocked). */

static int
connect_to(const char *name)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	size_t n = strlen(name);
	int fd, r;

	if (n == 0 || n + 1 > sizeof sa.sun_path)
		return -EINVAL;
	memcpy(sa.sun_path + 1, name, n); /* abstract: a NUL first */
	if ((fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0)) < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa,
	        (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n)) <
	    0) {
		r = -errno;
		close(fd);
		return r;
	}
	return fd;
}

/*
 * A request before the watcher runs: the reply read here. => its err,
 * *rfd its descriptor (or -1)
 */
static int
call(int sock, struct fm_ipc_msg *m, int fd, int *rfd)
{
	int fds[FM_IPC_MAXFDS], r;
	uint32_t op = m->op;

	*rfd = -1;
	m->seq = 1;
	if ((r = fm_ipc_send(sock, m, &fd, fd >= 0 ? 1 : 0)) < 0)
		return r;
	for (;;) {
		if ((r = fm_ipc_recv(sock, m, fds)) == -EBADMSG)
			continue;
		if (r < 0)
			return r == -ECONNRESET ? -ENOTCONN : r;
		if ((m->flags & FM_IPC_F_REPLY) && m->op == op && m->seq == 1)
			break;
		closefds(fds, 0); /* (nothing else is due yet) */
	}
	*rfd = fds[0];
	closefds(fds, 1);
	return m->err > 0 ? -EPROTO : m->err;
}

/*
 * The process's userfaultfd: its own if it may (the syscall, else
 * /dev/userfaultfd), else from fomapd's /dev/userfaultfd descriptor
 * (FM_IPC_UFFD_DEV, naming fd, a fomap open it holds).
 * => the descriptor; -ENOSYS: none can be made here; -errno
 */
static int
make_uffd(int sock, int fd)
{
	struct fm_ipc_msg m = {.op = FM_IPC_UFFD_DEV};
	int u, dev, r;

	u = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (u >= 0)
		return u;
	if (errno != EPERM && errno != ENOSYS)
		return -errno;
	if ((dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC)) < 0) {
		if ((r = call(sock, &m, fd, &dev)) < 0 || dev < 0) {
			if (dev >= 0)
				close(dev);
			return r == -ENOTCONN ? r : -ENOSYS;
		}
	}
	u = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
	r = u < 0 ? -ENOSYS : u;
	close(dev);
	return r;
}

static void *watcher(void *arg);
static int session_live(struct fmp_session *s, int sock, int uffd, int fail);

/*
 * Make session s with the fomapd at name: connect, userfaultfd, HELLO,
 * watcher. => 0: LIVE; -ENOSYS: NOENGINE; else -errno and s stays FREE
 */
static int
session_make(struct fmp_session *s, const char *name, int fd)
{
	struct fm_ipc_msg m = {.op = FM_IPC_HELLO, .a = {FM_IPC_VERSION}};
	int sock, uffd, r, none;

	if ((sock = connect_to(name)) < 0)
		return sock;
	if ((uffd = make_uffd(sock, fd)) < 0) {
		r = uffd;
	} else {
		/* fomapd gets a copy; this one is kept for its death. */
		r = call(sock, &m, uffd, &none);
		if (none >= 0)
			close(none);
		if (r < 0)
			close(uffd);
	}
	if (r < 0) {
		close(sock);
		if (r == -ENOSYS) {
			snprintf(s->name, sizeof s->name, "%s", name);
			atomic_store(&s->state, S_NOENGINE);
		}
		return r;
	}
	snprintf(s->name, sizeof s->name, "%s", name);
	return session_live(s, sock, uffd, S_FREE);
}

/*
 * s is live with sock and uffd: its watcher runs. => 0; -EAGAIN: no
 * thread (s back to state fail, its descriptors closed)
 */
static int
session_live(struct fmp_session *s, int sock, int uffd, int fail)
{
	pthread_attr_t at;
	pthread_t t;
	int r;

	s->sock = sock;
	s->uffd = uffd;
	s->seq = 1;
	pthread_mutex_init(&s->rlock, NULL);
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cv, NULL);
	atomic_store(&s->state, S_LIVE);
	/* The watcher starts with every signal blocked (the caller's mask). */
	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&at, 64 * 1024);
	r = pthread_create(&t, &at, watcher, s);
	pthread_attr_destroy(&at);
	if (r != 0) {
		atomic_store(&s->state, fail);
		close(sock); /* fomapd drops the address space */
		close(uffd);
		s->sock = s->uffd = -1;
		return -EAGAIN;
	}
	return 0;
}

int
fmp_session_get(const char *name, int fd, struct fmp_session **sp)
{
	struct fmp_session *s = NULL, *free_slot = NULL;
	sigset_t old;
	int r = 0;

	fmp_block(&old);
	pthread_mutex_lock(&slock);
	for (int i = 0; i < FMP_SESSIONS && !s; i++) {
		int st = atomic_load(&sessions[i].state);

		if (st == S_FREE)
			free_slot = free_slot ? free_slot : &sessions[i];
		else if (st != S_ORPHAN && strcmp(sessions[i].name, name) == 0)
			s = &sessions[i];
	}
	if (s) {
		switch (atomic_load(&s->state)) {
		case S_LIVE:
			break;
		case S_NOENGINE:
			r = -ENOSYS;
			break;
		default:
			r = -ENOTCONN;
		}
	} else if ((s = free_slot) == NULL) {
		r = -EMFILE;
	} else {
		r = session_make(s, name, fd);
	}
	pthread_mutex_unlock(&slock);
	fmp_unblock(&old);
	*sp = s;
	return r;
}

/* ------------------------------------------------------------------ */
/* Requests. */

int
fmp_request(struct fmp_session *s, struct fm_ipc_msg *m, int fd, int *rfd)
{
	sigset_t old;
	int r;

	if (rfd)
		*rfd = -1;
	fmp_block(&old);
	pthread_mutex_lock(&s->rlock);
	if (atomic_load(&s->state) != S_LIVE) {
		r = -ENOTCONN;
		goto out;
	}
	pthread_mutex_lock(&s->lock);
	m->flags = 0;
	m->seq = ++s->seq;
	s->waiting = 1;
	s->got = 0;
	s->rfd = -1;
	pthread_mutex_unlock(&s->lock);
	r = fm_ipc_send(s->sock, m, &fd, fd >= 0 ? 1 : 0);
	pthread_mutex_lock(&s->lock);
	while (r == 0 && !s->got && atomic_load(&s->state) == S_LIVE)
		pthread_cond_wait(&s->cv, &s->lock);
	if (r == 0 && s->got) {
		*m = s->reply;
		r = m->err > 0 ? -EPROTO : m->err;
		if (rfd)
			*rfd = s->rfd;
		else if (s->rfd >= 0)
			close(s->rfd);
	} else if (r == 0 || r == -EPIPE || r == -ECONNRESET) {
		r = -ENOTCONN; /* fomapd has gone */
	}
	s->waiting = 0;
	pthread_mutex_unlock(&s->lock);
out:
	pthread_mutex_unlock(&s->rlock);
	fmp_unblock(&old);
	return r;
}

/* ------------------------------------------------------------------ */
/* The watcher. */

/* A reply: to the requester waiting for it; a stray one is dropped. */
static void
deliver(struct fmp_session *s, const struct fm_ipc_msg *m, int *fds)
{
	pthread_mutex_lock(&s->lock);
	if (s->waiting && !s->got && m->seq == s->seq) {
		s->reply = *m;
		s->rfd = fds[0];
		fds[0] = -1;
		s->got = 1;
		pthread_cond_broadcast(&s->cv);
	}
	pthread_mutex_unlock(&s->lock);
	closefds(fds, 0);
}

/*
 * fomapd's request. ZAP: drop the page-table entries of a range of the
 * session's own mappings (the object keeps its pages), nothing else.
 */
static void
answer(struct fmp_session *s, const struct fm_ipc_msg *q)
{
	struct fm_ipc_msg m = {.op = q->op,
	    .flags = FM_IPC_F_REPLY,
	    .seq = q->seq};
	uintptr_t va = (uintptr_t)q->a[0];
	size_t len = (size_t)q->a[1];

	if (q->op != FM_IPC_ZAP)
		m.err = -ENOSYS;
	else if (len == 0 || va + len < va ||
	    !fmp_table_covers(s, va, va + len))
		m.err = -EINVAL;
	else if (fmp_real_madvise((void *)va, len, MADV_DONTNEED) < 0 &&
	    errno != ENOMEM)
		m.err = -errno; /* (ENOMEM: unmapped just now, nothing left) */
	(void)fm_ipc_send(s->sock, &m, NULL, 0);
}

static void
wake(uintptr_t start, uintptr_t end, void *arg)
{
	struct uffdio_range r = {.start = start, .len = end - start};

	(void)ioctl(*(int *)arg, UFFDIO_WAKE, &r);
}

struct seal {
	int uffd;
	uintptr_t va;
};

/* The range holding va made PROT_NONE and woken: its access SIGSEGVs. */
static void
seal_range(uintptr_t start, uintptr_t end, void *arg)
{
	struct seal *a = arg;

	if (a->va < start || a->va >= end)
		return;
	(void)fmp_real_mprotect((void *)start, end - start, PROT_NONE);
	wake(start, end, &a->uffd);
}

/*
 * [start, end) left with no page-table entry and no uffd-wp marker, so
 * that every access faults, and every fault can be poisoned. fomapd
 * write-protects shared mappings (the engine's dirty tracking): a write
 * to a page it left mapped is a write-protect fault, which poison cannot
 * answer (the entry is there: EEXIST), and a page it removed, or had the
 * client zap, keeps a uffd-wp marker, which poison refuses to overwrite
 * (EEXIST) while the fault it gives is a missing one: waking either
 * thread makes it fault again, for ever. Unprotecting drops the markers
 * (a range not registered for write protection: ENOENT, nothing to
 * drop); MADV_DONTNEED then drops the entries (the store keeps its
 * pages; a private mapping's own copies go, and are never reached again).
 * Nobody is woken here.
 */
static void
disarm(uintptr_t start, uintptr_t end, void *arg)
{
	struct uffdio_writeprotect wp = {.range = {start, end - start},
	    .mode = UFFDIO_WRITEPROTECT_MODE_DONTWAKE};

	(void)ioctl(*(int *)arg, UFFDIO_WRITEPROTECT, &wp);
	(void)fmp_real_madvise((void *)start, end - start, MADV_DONTNEED);
}

/*
 * A fault after fomapd's death: SIGBUS in its thread (poison). A page
 * mapped, or a marker, in the way (EEXIST: left by a fault resolved just
 * before the death was seen): disarmed and poisoned again. The kernel
 * busy with a munmap's or mremap's event (EAGAIN until the event is
 * read): => -EAGAIN, the caller tries again after reading it (waking the
 * thread now would only bring its fault back ahead of the event). A
 * kernel without UFFDIO_POISON: the range is sealed instead, never left
 * waiting. => 0, -EAGAIN
 */
static int
refuse(struct fmp_session *s, uintptr_t addr)
{
	uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE), va = addr & ~(pg - 1);
	struct uffdio_poison p = {.range = {.start = va, .len = pg}};
	struct seal a = {s->uffd, va};

	if (ioctl(s->uffd, UFFDIO_POISON, &p) == 0)
		return 0;
	if (errno == EEXIST) {
		disarm(va, va + pg, &s->uffd);
		if (ioctl(s->uffd, UFFDIO_POISON, &p) == 0)
			return 0;
	}
	if (errno == EAGAIN)
		return -EAGAIN;
	if (errno == EEXIST)
		wake(va, va + pg, &s->uffd); /* (faults again: poisoned) */
	else
		fmp_table_each(s, seal_range, &a);
	return 0;
}

#define FMP_DEFER 64 /* faults waiting for an event to be read */

/*
 * After fomapd's death, for ever: every fault of the session refused.
 * Faults are read before events: one refused EAGAIN waits (the next
 * read, a millisecond at most) until the event ahead of it is read.
 */
static void
refuse_all(struct fmp_session *s)
{
	struct uffd_msg ev[16];
	uintptr_t defer[FMP_DEFER];
	int ndefer = 0;

	for (;;) {
		struct pollfd p = {.fd = s->uffd, .events = POLLIN};
		ssize_t n = 0;
		int left = 0;

		if (poll(&p, 1, ndefer ? 1 : -1) > 0) {
			n = read(s->uffd, ev, sizeof ev);
			if (n == 0 ||
			    (n < 0 && errno != EAGAIN && errno != EINTR))
				return; /* (a uffd fomapd never set up) */
		}
		for (int i = 0; i < ndefer; i++)
			if (refuse(s, defer[i]) < 0)
				defer[left++] = defer[i];
		ndefer = left;
		for (size_t i = 0; n > 0 && i < (size_t)n / sizeof ev[0]; i++) {
			uintptr_t va = (uintptr_t)ev[i].arg.pagefault.address;

			if (ev[i].event == UFFD_EVENT_FORK)
				close((int)ev[i].arg.fork.ufd);
			if (ev[i].event != UFFD_EVENT_PAGEFAULT ||
			    refuse(s, va) == 0)
				continue;
			if (ndefer < FMP_DEFER)
				defer[ndefer++] = va;
			else
				wake(va, va + 1, &s->uffd);
		}
	}
}

static void
program_closed(struct fmp_session *s)
{
	pthread_mutex_lock(&s->lock);
	atomic_store(&s->state, S_DEAD);
	pthread_cond_broadcast(&s->cv); /* the requester: ENOTCONN */
	pthread_mutex_unlock(&s->lock);
}

static void
daemon_gone(struct fmp_session *s)
{
	pthread_mutex_lock(&s->lock);
	atomic_store(&s->state, S_DEAD);
	pthread_cond_broadcast(&s->cv); /* the requester: ENOTCONN */
	pthread_mutex_unlock(&s->lock);
	pthread_mutex_lock(&s->rlock); /* (no requester on the socket now) */
	close(s->sock);
	s->sock = -1;
	pthread_mutex_unlock(&s->rlock);
	/*
	 * Every access faults from now on, and threads waiting in faults
	 * fomapd read fault again: each is refused, below.
	 */
	fmp_table_each(s, disarm, &s->uffd);
	fmp_table_each(s, wake, &s->uffd);
	refuse_all(s);
}

static void *
watcher(void *arg)
{
	struct fmp_session *s = arg;
	struct fm_ipc_msg m;
	int fds[FM_IPC_MAXFDS], r;
	sigset_t all;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, NULL);
	for (;;) {
		if ((r = fm_ipc_recv(s->sock, &m, fds)) == -EBADMSG)
			continue;
		if (r == -EBADF || r == -ENOTSOCK) {
			/*
			 * The program closed the socket itself (a daemon
			 * closing every descriptor): fomapd goes on serving
			 * its mappings; only this session's requests end.
			 */
			program_closed(s);
			return NULL;
		}
		if (r < 0)
			break;
		if (m.flags & FM_IPC_F_REPLY) {
			deliver(s, &m, fds);
			continue;
		}
		closefds(fds, 0);
		if (m.flags & FM_IPC_F_DAEMON)
			answer(s, &m);
	}
	daemon_gone(s);
	return NULL;
}

/* ------------------------------------------------------------------ */
/* fork (signals blocked by the caller, preload.c). */

void
fmp_session_prefork(void)
{
	pthread_mutex_lock(&slock);
}

/*
 * The child has the parent's mappings but none of its sessions: its
 * descriptors of them are closed (the parent's stay), and its requests
 * get ENOTCONN until fmp_session_child makes its own (the library's
 * fork).
 */
void
fmp_session_postfork(int child)
{
	for (int i = 0; child && i < FMP_SESSIONS; i++) {
		struct fmp_session *s = &sessions[i];
		int st = atomic_load(&s->state);

		if (st != S_LIVE && st != S_DEAD)
			continue;
		s->was_live = st == S_LIVE;
		pthread_mutex_init(&s->rlock, NULL);
		pthread_mutex_init(&s->lock, NULL);
		pthread_cond_init(&s->cv, NULL);
		if (s->sock >= 0)
			close(s->sock);
		close(s->uffd);
		s->sock = s->uffd = -1;
		atomic_store(&s->state, S_FORKED);
	}
	pthread_mutex_unlock(&slock);
}

void
fmp_session_forked(pid_t child)
{
	for (int i = 0; i < FMP_SESSIONS; i++) {
		struct fm_ipc_msg m = {.op = FM_IPC_FORKED,
		    .a = {(uint64_t)child}};

		/* (no mapping of its: no fork event, nothing to name) */
		if (atomic_load(&sessions[i].state) == S_LIVE &&
		    fmp_table_has(&sessions[i]))
			(void)fmp_request(&sessions[i], &m, -1, NULL);
	}
}

void
fmp_session_child(void)
{
	pthread_mutex_lock(&slock);
	for (int i = 0; i < FMP_SESSIONS; i++) {
		struct fmp_session *s = &sessions[i];
		struct fm_ipc_msg m = {.op = FM_IPC_HELLO_CHILD,
		    .a = {FM_IPC_VERSION}};
		int sock, uffd = -1;

		if (atomic_load(&s->state) != S_FORKED || !s->was_live)
			continue;
		s->was_live = 0;
		if (!fmp_table_has(s)) {
			/* Nothing inherited: a session of its own if it maps. */
			atomic_store(&s->state, S_FREE);
			continue;
		}
		if ((sock = connect_to(s->name)) < 0)
			continue;
		if (call(sock, &m, -1, &uffd) < 0 || uffd < 0) {
			/*
			 * Not named (a fork fomapd cannot tell apart): what it
			 * inherited is served all the same (the kernel's fork
			 * event), its table's ranges stay with this slot
			 * (ORPHAN: no requests); its own mappings get a session
			 * in another slot.
			 */
			if (uffd >= 0)
				close(uffd);
			close(sock);
			atomic_store(&s->state, S_ORPHAN);
			continue;
		}
		(void)session_live(s, sock, uffd, S_FORKED);
	}
	pthread_mutex_unlock(&slock);
}
