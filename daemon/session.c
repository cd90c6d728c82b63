/*
 * session.c: fomapd's side of the session protocol (src/ipc/proto.h, the
 * preload library's peer): the socket, one thread per client process, and
 * the core's calls (kern/client.h) each request becomes.
 *
 * A client's reader thread reads every message of its connection: the
 * client's replies to fomapd's own requests (FM_IPC_ZAP) are handed at
 * once to the thread that waits for them, and its requests go to its
 * worker thread, which serves them in order (the client waits for each
 * reply). So a zap's reply is read even while the worker waits in the
 * core for an object that the zapping thread holds (an eviction of
 * another process's, waiting for this client's zap, and this client's
 * mmap of the same object). Every wait on a client is bounded
 * (SESS_WAIT_MS); a client's messages are checked before use, and a bad
 * one is answered with an error.
 *
 * Lock order: sess.zlock, S.lock, sess.lock.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "ipc/ipc.h"
#include "kern/client.h"
#include "kern/kern.h"
#include "session.h"

#define SESS_MAX 4096 /* clients at once */
#define SESS_TOKENS 64 /* prepared mmaps a client has not attached yet */
#define SESS_PROTS 8 /* mprotects a client has begun, not ended */
#define SESS_QUEUE 4 /* requests read, not served yet (one is the rule) */
#define SESS_WAIT_MS 1000 /* a zap's reply; a reply's send */
#define SESS_STACK (1 << 20)

static _Atomic uint64_t zseq; /* fomapd's requests' numbers */

struct token {
	uint64_t id; /* 0: free */
	struct fm_client_map *m;
};

struct sess {
	int sock;
	pid_t pid; /* the peer (SO_PEERCRED) */
	struct fm_vmspace *vs; /* once a HELLO is taken */
	struct token tok[SESS_TOKENS];
	uint64_t next_token;
	struct fm_client_prot *prot[SESS_PROTS]; /* begun mprotects */
	unsigned long maps; /* mmaps attached, over its life */
	pthread_mutex_t zlock; /* one zap in flight */
	pthread_mutex_t lock; /* what follows */
	pthread_cond_t cv;
	uint64_t zseq; /* the zap waiting for its reply (0: none) */
	int zerr, zdone;
	int dead; /* EOF: zaps fail at once */
	/*
	 * The client's requests, read by its reader thread and served in
	 * order by its worker thread (so that a zap's reply is read while
	 * the worker waits in the core, for an object a zap of the client's
	 * holds).
	 */
	struct qmsg {
		struct fm_ipc_msg m;
		int fds[FM_IPC_MAXFDS];
	} q[SESS_QUEUE];
	unsigned qhead, qn;
	int worker_done;
	int stuck; /* a zap went unanswered: the next ones do not wait */
	unsigned zapping; /* zap calls on it (it is freed after the last) */
	struct sess *next;
};

/*
 * A client's fork: the child's address space (served already: the core
 * follows the fork), until a session of the child's own claims it
 * (HELLO_CHILD) or it is found gone (the reaper).
 */
struct pend {
	struct fm_vmspace *vs;
	pid_t parent; /* the forking session's process, or 0 */
	uint64_t seq; /* pending_add's order */
	struct pend *next;
};

static struct {
	pthread_mutex_t lock;
	int lsock;
	char name[FM_IPC_NAME_MAX];
	dev_t dev;
	struct sess *list;
	unsigned n;
	struct pend *pending;
	uint64_t pseq;
} S = {.lock = PTHREAD_MUTEX_INITIALIZER, .lsock = -1};

static void
closefds(const int *fds)
{
	for (int i = 0; i < FM_IPC_MAXFDS; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

/* Reply to request q: err, or a[0..2] and a descriptor (fd >= 0). */
static void
reply(struct sess *s, const struct fm_ipc_msg *q, int err, const uint64_t *a,
    int fd)
{
	struct fm_ipc_msg m = {.op = q->op,
	    .flags = FM_IPC_F_REPLY,
	    .err = err,
	    .seq = q->seq};

	if (a)
		memcpy(m.a, a, 3 * sizeof(*a));
	(void)fm_ipc_send(s->sock, &m, &fd, fd >= 0 ? 1 : 0);
}

static void
deadline_of(struct timespec *ts, int ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_nsec += (long)ms * 1000000;
	ts->tv_sec += ts->tv_nsec / 1000000000;
	ts->tv_nsec %= 1000000000;
}

/* ------------------------------------------------------------------ */
/* fomapd's requests to a client: zap. */

/*
 * A reply from the client: the zap waiting for it takes it; a late one
 * (its zap timed out) is dropped. => s->lock not held
 */
static void
zap_replied(struct sess *s, const struct fm_ipc_msg *m)
{
	pthread_mutex_lock(&s->lock);
	if (m->op == FM_IPC_ZAP && s->zseq != 0 && m->seq == s->zseq) {
		s->zerr = m->err > 0 ? -EPROTO : m->err;
		s->zdone = 1;
		pthread_cond_broadcast(&s->cv);
	}
	pthread_mutex_unlock(&s->lock);
}

/*
 * fm_client_ops.zap: the client removes its page-table entries of the
 * range (its watcher's madvise). Any thread of fomapd's, the client's own
 * included; bounded by SESS_WAIT_MS.
 * => 0, also when the client has gone (EOF, or its socket refuses the
 *    request): its page tables went with it (the socket closes only when
 *    the process dies or execs), so the zap is done. And when it does
 *    not answer in SESS_WAIT_MS (stopped, or hostile): its page-table
 *    entries stay (they map the objects' own pages), and from then on
 *    its zaps do not wait, so that it holds up no removal of anyone's
 *    again (until it sends anything: it is not stuck then). (The core
 *    counts a failed zap as a failure of the whole removal: a driver's
 *    fm_object_unmap, gem's FM_GEM_EVICT, would fail for everyone.)
 *    -errno: what the client answered
 */
static int
sess_zap(void *arg, uintptr_t va, size_t len)
{
	struct sess *s = arg;
	struct fm_ipc_msg m = {.op = FM_IPC_ZAP,
	    .flags = FM_IPC_F_DAEMON,
	    .a = {va, len}};
	struct timespec end;
	int r;

	pthread_mutex_lock(&s->lock);
	if (s->dead || s->stuck) {
		pthread_mutex_unlock(&s->lock);
		return 0; /* (gone, or not answering: see above) */
	}
	s->zapping++;
	pthread_mutex_unlock(&s->lock);

	pthread_mutex_lock(&s->zlock);
	m.seq = ++zseq;
	pthread_mutex_lock(&s->lock);
	s->zseq = m.seq;
	s->zdone = 0;
	pthread_mutex_unlock(&s->lock);
	r = fm_ipc_send(s->sock, &m, NULL, 0);
	if (r == -EAGAIN)
		r = -ETIMEDOUT; /* (SO_SNDTIMEO: it reads nothing) */
	else if (r < 0)
		r = -ESRCH;
	else {
		deadline_of(&end, SESS_WAIT_MS);
		pthread_mutex_lock(&s->lock);
		while (!s->zdone && !s->dead &&
		    pthread_cond_timedwait(&s->cv, &s->lock, &end) == 0)
			;
		r = s->zdone ? s->zerr : s->dead ? -ESRCH : -ETIMEDOUT;
		pthread_mutex_unlock(&s->lock);
	}
	pthread_mutex_lock(&s->lock);
	s->zseq = 0;
	pthread_mutex_unlock(&s->lock);
	pthread_mutex_unlock(&s->zlock);

	pthread_mutex_lock(&s->lock);
	s->zapping--;
	if (r == -ETIMEDOUT)
		s->stuck = 1;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->lock);
	return r == -ESRCH || r == -ETIMEDOUT ? 0 : r;
}

/*
 * fm_client_ops.forked, from the engine: the child waits on the pending
 * list for its session (arg: the forking client's session, or NULL for a
 * fork of a child not claimed yet).
 */
/*
 * vs waits on the pending list (a fork's, or a client's whose session
 * ended while its process lives: parent 0, claimed).
 */
static void
pending_add(struct fm_vmspace *vs, pid_t parent)
{
	struct pend *p = malloc(sizeof(*p));

	if (p == NULL)
		return; /* (served till fomapd ends: never claimed nor reaped) */
	p->vs = vs;
	p->parent = parent;
	pthread_mutex_lock(&S.lock);
	p->seq = ++S.pseq;
	p->next = S.pending;
	S.pending = p;
	pthread_mutex_unlock(&S.lock);
}

static void
sess_forked(void *arg, struct fm_vmspace *child)
{
	struct sess *s = arg;

	pending_add(child, s ? s->pid : 0);
}

static const struct fm_client_ops sess_ops = {
    .zap = sess_zap,
    .forked = sess_forked,
};

/* ------------------------------------------------------------------ */
/* A client's requests. */

/*
 * The open behind a descriptor the client sent: one of this mount's
 * regular files that fomapd's own FUSE server says is an open of its
 * (FMD_IOC_OPEN). No ioctl goes to a descriptor of anything else.
 * => its file, referenced; NULL
 */
static struct fm_file *
open_of(int fd, int *backed)
{
	struct stat st;
	uint64_t id = 0;

	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    st.st_dev != S.dev || ioctl(fd, FMD_IOC_OPEN, &id) < 0)
		return NULL;
	return fmd_open_file(id, backed);
}

static void
do_hello(struct sess *s, const struct fm_ipc_msg *q, int *fds)
{
	int r;

	if (s->vs)
		r = -EEXIST;
	else if (q->a[0] != FM_IPC_VERSION)
		r = -EPROTO;
	else if (q->nfds != 1)
		r = -EBADF;
	else {
		/* The core owns the uffd from here, whatever it answers. */
		struct fm_vmspace *vs = NULL;

		r = fm_client_create(s->pid, fds[0], &sess_ops, s, &vs);
		fds[0] = -1;
		pthread_mutex_lock(&s->lock); /* (the status file reads it) */
		s->vs = r < 0 ? NULL : vs;
		pthread_mutex_unlock(&s->lock);
	}
	reply(s, q, r, NULL, -1);
}

/*
 * The pending fork named pid: by the kernel (the thread of its first
 * fault is of pid) or by its parent (FORKED). Never by guess: a process
 * could otherwise take a sibling's address space. Taken off the list.
 * => S.lock held
 */
static struct fm_vmspace *
pending_take_locked(pid_t pid)
{
	struct pend **pp, *p;
	struct fm_vmspace *vs;

	for (pp = &S.pending; *pp; pp = &(*pp)->next)
		if ((*pp)->parent != 0 && fm_client_pid((*pp)->vs) == pid)
			break;
	if ((p = *pp) == NULL)
		return NULL;
	vs = p->vs;
	*pp = p->next;
	free(p);
	return vs;
}

#define SESS_CHILD_TRIES 400 /* x 5 ms: a child's wait for its fork */

/*
 * HELLO_CHILD: a forked client's own session takes the address space the
 * core made for it at the fork, once its parent's FORKED (or the kernel's
 * word at its first fault) has named it. The reply carries a copy of its
 * uffd, for its watcher.
 */
static void
do_hello_child(struct sess *s, const struct fm_ipc_msg *q)
{
	struct fm_vmspace *vs = NULL;
	int r = 0, fd = -1;

	if (s->vs)
		r = -EEXIST;
	else if (q->a[0] != FM_IPC_VERSION)
		r = -EPROTO;
	for (int i = 0; r == 0 && vs == NULL && i < SESS_CHILD_TRIES; i++) {
		if (i > 0)
			usleep(5000);
		fm_client_sync(); /* (a fork read, not followed yet) */
		pthread_mutex_lock(&S.lock);
		vs = pending_take_locked(s->pid);
		pthread_mutex_unlock(&S.lock);
	}
	if (r == 0 && vs == NULL)
		r = -ESRCH;
	if (r == 0 && (r = fm_client_claim(vs, s->pid, s)) < 0) {
		pending_add(vs, 0); /* (gone meanwhile: the reaper's) */
		vs = NULL;
	}
	if (r == 0 && (fd = fm_client_uffd(vs)) < 0)
		r = fd; /* (claimed: its session's end lets it go) */
	if (vs != NULL) {
		pthread_mutex_lock(&s->lock);
		s->vs = vs;
		pthread_mutex_unlock(&s->lock);
	}
	reply(s, q, r, NULL, fd);
	if (fd >= 0)
		close(fd);
}

/* FORKED: the client forked child a[0]: its pending fork is named so. */
static void
do_forked(struct sess *s, const struct fm_ipc_msg *q)
{
	pid_t child = (pid_t)q->a[0];
	struct pend *p, *latest = NULL;
	int r = 0;

	if (s->vs == NULL)
		r = -EPROTO;
	else if (q->a[0] == 0 || q->a[0] > INT32_MAX ||
	    fm__proc_status_pid(child, "\nPPid:") != s->pid)
		r = -EINVAL; /* not its child (or gone already) */
	if (r == 0) {
		/*
		 * Its latest fork not named yet: the library's forks are one
		 * at a time, and it names each as it returns (a fork that
		 * bypassed the library, named by its first fault meanwhile,
		 * is not it; one between the two, not named yet, would be
		 * taken for it: the process's own child either way).
		 */
		fm_client_sync();
		pthread_mutex_lock(&S.lock);
		for (p = S.pending; p && r == 0; p = p->next) {
			pid_t named = fm_client_pid(p->vs);

			if (named == child)
				r = -EEXIST; /* (its first fault named it) */
			else if (p->parent == s->pid && named == 0 &&
			    (latest == NULL || p->seq > latest->seq))
				latest = p;
		}
		if (r == 0)
			r = latest ? fm_client_name(latest->vs, child) : -ESRCH;
		else
			r = 0;
		pthread_mutex_unlock(&S.lock);
	}
	reply(s, q, r, NULL, -1);
}

/*
 * A /dev/userfaultfd descriptor makes userfaultfds that may take kernel
 * faults: handed only to a client that sends a fomap open it holds.
 */
static void
do_uffd_dev(struct sess *s, const struct fm_ipc_msg *q, const int *fds)
{
	int fd = -1, r = -EBADF, backed;
	struct fm_file *fp = q->nfds == 1 ? open_of(fds[0], &backed) : NULL;

	if (fp) {
		fm__file_rele(fp);
		fd = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
		r = fd < 0 ? -errno : 0;
	}
	reply(s, q, r, NULL, fd);
	if (fd >= 0)
		close(fd);
}

/* A free token slot, or NULL. */
static struct token *
token_new(struct sess *s)
{
	for (int i = 0; i < SESS_TOKENS; i++)
		if (s->tok[i].id == 0) {
			s->tok[i].id = ++s->next_token;
			return &s->tok[i];
		}
	return NULL;
}

/* Token id's prepared map, taken out of its slot; or NULL. */
static struct fm_client_map *
token_take(struct sess *s, uint64_t id)
{
	struct fm_client_map *m;

	for (int i = 0; i < SESS_TOKENS && id != 0; i++)
		if (s->tok[i].id == id) {
			m = s->tok[i].m;
			s->tok[i] = (struct token){0};
			return m;
		}
	return NULL;
}

/* MMAP's arguments as client.h takes them. => 0, -EINVAL */
static int
mmap_args(const struct fm_ipc_msg *q)
{
	uint64_t len = q->a[0], prot = q->a[1], flags = q->a[2], off = q->a[3];

	if (len == 0 || len > SIZE_MAX / 2 || off > (uint64_t)INT64_MAX ||
	    (prot & ~(uint64_t)(PROT_READ | PROT_WRITE | PROT_EXEC)) ||
	    (flags != MAP_SHARED && flags != MAP_PRIVATE))
		return -EINVAL;
	return 0;
}

static void
do_mmap(struct sess *s, const struct fm_ipc_msg *q, const int *fds)
{
	int r, storefd = -1, maxprot = 0, backed = 0;
	struct fm_file *fp = q->nfds == 1 ? open_of(fds[0], &backed) : NULL;
	struct fm_client_map *cm = NULL;
	off_t storeoff = 0;
	struct token *t = NULL;
	uint64_t a[3];

	/* Which open first: a client learns EBADF before anything else. */
	if (fp == NULL)
		r = -EBADF;
	else if (s->vs == NULL)
		r = -EPROTO; /* no HELLO yet */
	else if (backed)
		r = -ENOSYS; /* the client's own mmap: passthrough, as without */
	else if ((r = mmap_args(q)) == 0 && (t = token_new(s)) == NULL)
		r = -EAGAIN;
	if (r == 0)
		r = fm_client_prepare(s->vs, fp, (size_t)q->a[0], (int)q->a[1],
		    (int)q->a[2], (off_t)q->a[3], &cm, &storefd, &storeoff,
		    &maxprot);
	if (fp)
		fm__file_rele(fp);
	if (r < 0) {
		if (t)
			*t = (struct token){0};
		reply(s, q, r, NULL, -1);
		return;
	}
	t->m = cm;
	a[0] = t->id;
	a[1] = (uint64_t)storeoff;
	a[2] = (uint64_t)maxprot;
	reply(s, q, 0, a, storefd);
	close(storefd);
}

static void
do_attach(struct sess *s, const struct fm_ipc_msg *q)
{
	struct fm_client_map *m = token_take(s, q->a[0]);
	int r = 0;

	if (m == NULL)
		r = -EINVAL;
	else if (q->a[1] == 0)
		fm_client_abandon(m); /* its own mmap failed */
	else if ((r = fm_client_attach(s->vs, m, (uintptr_t)q->a[1])) == 0) {
		pthread_mutex_lock(&s->lock);
		s->maps++;
		pthread_mutex_unlock(&s->lock);
	}
	reply(s, q, r, NULL, -1);
}

/*
 * MPROTECT's two halves: the first holds the refusals in the range (a
 * handle for the client), the second, after the client's own mprotect,
 * records it and lets them go.
 */
static void
do_mprotect(struct sess *s, const struct fm_ipc_msg *q)
{
	uint64_t a[3] = {0};
	int r = -EINVAL, i;

	if (q->a[3] == 0) {
		for (i = 0; i < SESS_PROTS && s->prot[i] != NULL; i++)
			;
		if (i == SESS_PROTS)
			r = -EAGAIN;
		else if ((r = fm_client_mprotect_begin(s->vs,
		              (uintptr_t)q->a[0], (size_t)q->a[1], (int)q->a[2],
		              &s->prot[i])) == 0)
			a[0] = (uint64_t)i + 1;
	} else if (q->a[3] == 1 && q->a[4] >= 1 && q->a[4] <= SESS_PROTS &&
	    s->prot[q->a[4] - 1] != NULL) {
		fm_client_mprotect_end(s->vs, s->prot[q->a[4] - 1],
		    q->a[5] == 1);
		s->prot[q->a[4] - 1] = NULL;
		r = 0;
	}
	reply(s, q, r, a, -1);
}

/* MPROTECT, MSYNC, MADVISE: a[0] address, a[1] length, a[2] the rest. */
static void
do_range(struct sess *s, const struct fm_ipc_msg *q)
{
	uintptr_t va = (uintptr_t)q->a[0];
	size_t len = (size_t)q->a[1];
	int x = (int)q->a[2], r;

	if (s->vs == NULL)
		r = -EPROTO;
	else if (q->a[2] > INT32_MAX || len == 0 || va + len < va)
		r = -EINVAL;
	else if (q->op == FM_IPC_MPROTECT) {
		do_mprotect(s, q);
		return;
	} else if (q->op == FM_IPC_MSYNC)
		r = fm_client_msync(s->vs, va, len, x);
	else
		r = fm_client_madvise(s->vs, va, len, x);
	reply(s, q, r, NULL, -1);
}

static void
serve(struct sess *s, const struct fm_ipc_msg *q, int *fds)
{
	if (q->flags != 0) {
		reply(s, q, -EINVAL, NULL, -1);
		return;
	}
	switch (q->op) {
	case FM_IPC_HELLO:
		do_hello(s, q, fds);
		break;
	case FM_IPC_UFFD_DEV:
		do_uffd_dev(s, q, fds);
		break;
	case FM_IPC_MMAP:
		do_mmap(s, q, fds);
		break;
	case FM_IPC_ATTACH:
		do_attach(s, q);
		break;
	case FM_IPC_MPROTECT:
	case FM_IPC_MSYNC:
	case FM_IPC_MADVISE:
		do_range(s, q);
		break;
	case FM_IPC_FORKED:
		do_forked(s, q);
		break;
	case FM_IPC_HELLO_CHILD:
		do_hello_child(s, q);
		break;
	default:
		reply(s, q, -ENOSYS, NULL, -1);
	}
}

/* ------------------------------------------------------------------ */
/* Clients. */

/*
 * The client has gone: its prepared maps and its address space go; s is
 * freed once no zap is on it.
 */
static void
sess_end(struct sess *s)
{
	pthread_mutex_lock(&s->lock);
	s->dead = 1;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->lock);
	for (int i = 0; i < SESS_TOKENS; i++)
		if (s->tok[i].id != 0)
			fm_client_abandon(s->tok[i].m);
	for (int i = 0; i < SESS_PROTS; i++)
		if (s->prot[i] != NULL)
			fm_client_mprotect_end(s->vs, s->prot[i], 0);
	/*
	 * A process that exits or execs has no address space when its
	 * socket closes (the kernel drops it first). One that closed the
	 * socket itself (a daemon closing every descriptor) and still maps:
	 * dropping its uffd would leave its mappings unserved (the kernel
	 * then fills them with zeros behind the drivers): it stays served,
	 * with no zaps, until the reaper finds it gone.
	 */
	if (s->vs) /* (no zap through s from now on: it is to be freed) */
		fm_client_unclaim(s->vs);
	if (s->vs && fm_client_mapped(s->vs) && fm_client_alive(s->vs))
		pending_add(s->vs, 0);
	else if (s->vs)
		fm_client_destroy(s->vs);
	pthread_mutex_lock(&s->lock);
	while (s->zapping > 0)
		pthread_cond_wait(&s->cv, &s->lock);
	pthread_mutex_unlock(&s->lock);

	pthread_mutex_lock(&S.lock);
	for (struct sess **pp = &S.list; *pp; pp = &(*pp)->next)
		if (*pp == s) {
			*pp = s->next;
			break;
		}
	S.n--;
	pthread_mutex_unlock(&S.lock);
	close(s->sock);
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->lock);
	pthread_mutex_destroy(&s->zlock);
	free(s);
}

/* The client's worker: its requests, in order, until its reader ends. */
static void *
sess_worker(void *arg)
{
	struct sess *s = arg;
	struct qmsg q;

	for (;;) {
		pthread_mutex_lock(&s->lock);
		while (s->qn == 0 && !s->dead)
			pthread_cond_wait(&s->cv, &s->lock);
		if (s->qn == 0) {
			s->worker_done = 1;
			pthread_cond_broadcast(&s->cv);
			pthread_mutex_unlock(&s->lock);
			return NULL;
		}
		q = s->q[s->qhead];
		s->qhead = (s->qhead + 1) % SESS_QUEUE;
		s->qn--;
		pthread_mutex_unlock(&s->lock);
		serve(s, &q.m, q.fds);
		closefds(q.fds);
	}
}

/*
 * The client's reader: every message of its connection. Replies (to
 * fomapd's zaps) are handed over at once; requests go to the worker.
 */
static void *
sess_thread(void *arg)
{
	struct sess *s = arg;
	pthread_attr_t at;
	struct qmsg q;
	pthread_t w;
	int r;

	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&at, SESS_STACK);
	r = pthread_create(&w, &at, sess_worker, s);
	pthread_attr_destroy(&at);
	if (r != 0) {
		sess_end(s);
		return NULL;
	}
	for (;;) {
		r = fm_ipc_recv(s->sock, &q.m, q.fds);
		if (r == -EBADMSG) {
			struct fm_ipc_msg bad = {0};

			reply(s, &bad, -EBADMSG, NULL, -1);
			continue;
		}
		if (r < 0)
			break; /* EOF: the client has gone */
		pthread_mutex_lock(&s->lock);
		s->stuck = 0; /* (it reads and answers again) */
		pthread_mutex_unlock(&s->lock);
		if (q.m.flags & FM_IPC_F_REPLY) {
			zap_replied(s, &q.m);
			closefds(q.fds);
			continue;
		}
		pthread_mutex_lock(&s->lock);
		if (s->qn == SESS_QUEUE) {
			pthread_mutex_unlock(&s->lock);
			reply(s, &q.m, -EBUSY, NULL, -1); /* (one at a time) */
			closefds(q.fds);
			continue;
		}
		s->q[(s->qhead + s->qn++) % SESS_QUEUE] = q;
		pthread_cond_broadcast(&s->cv);
		pthread_mutex_unlock(&s->lock);
	}
	pthread_mutex_lock(&s->lock);
	s->dead = 1;
	pthread_cond_broadcast(&s->cv);
	while (!s->worker_done)
		pthread_cond_wait(&s->cv, &s->lock);
	pthread_mutex_unlock(&s->lock);
	sess_end(s);
	return NULL;
}

/* A new client: its session and its thread. => 0, -errno */
static int
sess_new(int sock)
{
	struct timeval tv = {.tv_sec = SESS_WAIT_MS / 1000};
	struct ucred cred;
	socklen_t cl = sizeof cred;
	pthread_condattr_t ca;
	pthread_attr_t at;
	pthread_t t;
	struct sess *s;
	int r;

	if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &cl) < 0)
		return -errno;
	/* A client that reads nothing holds no thread of fomapd's for ever. */
	(void)setsockopt(sock, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return -ENOMEM;
	s->sock = sock;
	s->pid = cred.pid;
	pthread_mutex_init(&s->zlock, NULL);
	pthread_mutex_init(&s->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->cv, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_lock(&S.lock);
	if (S.n >= SESS_MAX) {
		pthread_mutex_unlock(&S.lock);
		free(s);
		return -EMFILE;
	}
	s->next = S.list;
	S.list = s;
	S.n++;
	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&at, SESS_STACK);
	r = pthread_create(&t, &at, sess_thread, s);
	pthread_attr_destroy(&at);
	if (r != 0) {
		S.list = s->next;
		S.n--;
	}
	pthread_mutex_unlock(&S.lock);
	if (r != 0) {
		free(s);
		return -r;
	}
	return 0;
}

#define SESS_REAP_MS 500

/*
 * Forks no session has claimed, whose child has gone (exited, or exec'd)
 * without one: their address spaces go.
 */
static void *
reaper(void *arg)
{
	(void)arg;
	for (;;) {
		struct pend *dead = NULL, **pp, *p;

		usleep(SESS_REAP_MS * 1000);
		pthread_mutex_lock(&S.lock);
		for (pp = &S.pending; (p = *pp) != NULL;) {
			if (fm_client_alive(p->vs)) {
				pp = &p->next;
				continue;
			}
			*pp = p->next;
			p->next = dead;
			dead = p;
		}
		pthread_mutex_unlock(&S.lock);
		while ((p = dead) != NULL) {
			dead = p->next;
			fm_client_destroy(p->vs);
			free(p);
		}
	}
	return NULL;
}

static void *
acceptor(void *arg)
{
	(void)arg;
	for (;;) {
		int c = accept4(S.lsock, NULL, NULL, SOCK_CLOEXEC);

		if (c < 0) {
			if (errno == EMFILE || errno == ENFILE ||
			    errno == ENOMEM || errno == ENOBUFS)
				usleep(10000); /* let some go first */
			continue;
		}
		if (sess_new(c) < 0)
			close(c); /* the client sees EOF */
	}
	return NULL;
}

int
fmd_session_start(dev_t dev)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	pthread_t t;
	size_t n;
	int fd, r;

	snprintf(S.name, sizeof S.name, "fomapd.%d.%lu", (int)getpid(),
	    (unsigned long)dev);
	n = strlen(S.name);
	memcpy(sa.sun_path + 1, S.name, n); /* abstract: a NUL first */
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&sa,
	        (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n)) <
	        0 ||
	    listen(fd, 128) < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	S.lsock = fd;
	S.dev = dev;
	if ((r = pthread_create(&t, NULL, reaper, NULL)) == 0) {
		pthread_detach(t);
		r = pthread_create(&t, NULL, acceptor, NULL);
	}
	if (r != 0) {
		close(fd);
		S.lsock = -1;
		return -r;
	}
	pthread_detach(t);
	return 0;
}

const char *
fmd_session_name(void)
{
	return S.lsock >= 0 ? S.name : NULL;
}

void
fmd_session_status(FILE *f)
{
	pthread_mutex_lock(&S.lock);
	for (struct sess *s = S.list; s; s = s->next) {
		pthread_mutex_lock(&s->lock);
		fprintf(f, "session pid %d maps %lu%s\n", (int)s->pid, s->maps,
		    s->vs ? "" : " unserved");
		pthread_mutex_unlock(&s->lock);
	}
	for (struct pend *p = S.pending; p; p = p->next)
		fprintf(f, "session pid %d without a session (%s %d)\n",
		    (int)fm_client_pid(p->vs), p->parent ? "fork of" : "parent",
		    (int)p->parent);
	pthread_mutex_unlock(&S.lock);
}
