/*
 * fomapd.c: the daemon that makes fomap devices files. It hosts the
 * drivers (built in, and plug-ins) in its own process and serves them on
 * a FUSE file system of its own (fuse.c): every device a regular file;
 * open, read, write, ioctl, poll and close reach the driver's hooks; an
 * open whose driver backs its whole mmap space with one anonymous object
 * (fo_backing) is mapped by FUSE passthrough: the program maps the
 * object's own memory. docs/daemon.md has the design.
 *
 * Nodes: the root (1) and, for every LOOKUP, a new node (entry timeout 0),
 * so that every open has an inode, and a passthrough backing, of its own.
 * Opens: one fomap descriptor of the daemon's each, opened non-blocking;
 * a call that would block a client that opened blocking waits here, for
 * the driver's wake-up (fm_file_wakeup) or the client's interrupt.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <inttypes.h>
#include <stddef.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <fomap/fomap.h>

#include "fuse.h"
#include "kern/client.h"
#include "kern/kern.h"
#include "session.h"

#define FMD_STATUS ".status" /* fomapctl's view of the daemon */
#define FMD_MAXDEV 256
#define FMD_WORKERS_MAX 64

struct devconf {
	char name[32];
	mode_t mode;
	uid_t uid;
	gid_t gid;
	struct devconf *next;
};

struct node {
	uint64_t id, nlookup;
	char name[32];
	size_t size; /* the mmap space of its last passthrough open */
	int backed; /* its open with a passthrough backing, if any */
	struct node *next;
};

struct fopen {
	int fd; /* the daemon's fomap descriptor */
	struct fm_file *fp; /* its file, referenced; NULL once shut down */
	const struct fm_file *id; /* the same, for notify's comparisons */
	struct fm_dev *dev;
	char name[32];
	pid_t pid; /* the opener */
	int nonblock; /* the client's open was O_NONBLOCK */
	int mfd, backing; /* passthrough: the store's descriptor, its id */
	size_t size;
	struct node *node; /* its inode's (it lives while the open does) */
	uint64_t gen; /* the driver's wake-ups of this open */
	uint64_t kh; /* the kernel's poll handle, if it asked (has_kh) */
	int has_kh;
	char *text; /* the status file's snapshot */
	size_t textlen;
	unsigned refs; /* d.opens's, and each call's on it (d.lock) */
	struct fopen *next;
};

/*
 * A request that would wait on a driver, parked: a copy of it as it was
 * read, tried again by the parker thread after the driver's next wake-up
 * of its open, so that no worker ever waits on a driver.
 */
struct parked {
	struct fopen *fo;
	int ready; /* a wake-up came since it was parked */
	int deferred; /* interrupted by a signal its thread ignores */
	size_t len;
	struct parked *next;
	char req[]; /* the header and what follows it */
};

#define FMD_INTR 1024 /* interrupted requests not answered yet, at most */

static struct {
	struct fmd_fuse fs;
	pthread_mutex_t lock;
	struct node *nodes;
	uint64_t next_id;
	struct fopen *opens;
	struct parked *parked; /* oldest first */
	size_t parkedbytes;
	pthread_cond_t parkcv; /* a parked request is ready or deferred */
	uint64_t intr[FMD_INTR]; /* interrupted requests (interrupted_locked) */
	unsigned nintr;
	struct devconf *conf;
	mode_t mode; /* the default */
	time_t start;
	int workers, idle, stopping;
} d = {.lock = PTHREAD_MUTEX_INITIALIZER, .next_id = 2, .mode = 0666};

/* ------------------------------------------------------------------ */
/* Devices and nodes. */

static const struct devconf *
conf_of(const char *name)
{
	for (const struct devconf *c = d.conf; c; c = c->next)
		if (strcmp(c->name, name) == 0)
			return c;
	return NULL;
}

static int
dev_exists(const char *name)
{
	char names[FMD_MAXDEV][32];
	int n = fm__dev_names(names, FMD_MAXDEV);

	if (strcmp(name, FMD_STATUS) == 0)
		return 1;
	for (int i = 0; i < n && i < FMD_MAXDEV; i++)
		if (strcmp(names[i], name) == 0)
			return 1;
	return 0;
}

static void
attr_of(const char *name, uint64_t ino, size_t size, struct fuse_attr *a)
{
	const struct devconf *c = conf_of(name);

	memset(a, 0, sizeof(*a));
	a->ino = ino;
	a->atime = a->mtime = a->ctime = (uint64_t)d.start;
	a->nlink = 1;
	a->blksize = 4096;
	if (ino == FUSE_ROOT_ID) {
		a->mode = S_IFDIR | 0755;
		a->nlink = 2;
		return;
	}
	a->size = size;
	a->mode = S_IFREG |
	    (strcmp(name, FMD_STATUS) == 0 ? 0400
	            : c                    ? c->mode
	                                   : d.mode);
	a->uid = c ? c->uid : 0;
	a->gid = c ? c->gid : 0;
}

/* => d.lock held */
static struct node *
node_find_locked(uint64_t id)
{
	for (struct node *n = d.nodes; n; n = n->next)
		if (n->id == id)
			return n;
	return NULL;
}

static void
forget(uint64_t id, uint64_t nlookup)
{
	pthread_mutex_lock(&d.lock);
	for (struct node **pp = &d.nodes; *pp; pp = &(*pp)->next)
		if ((*pp)->id == id) {
			struct node *n = *pp;

			if (n->nlookup > nlookup) {
				n->nlookup -= nlookup;
			} else {
				*pp = n->next;
				free(n);
			}
			break;
		}
	pthread_mutex_unlock(&d.lock);
}

/* ------------------------------------------------------------------ */
/* Opens. */

/*
 * The open of fh, referenced, if it is one fomapd has open (a request
 * racing its RELEASE, or naming the directory (0), gets NULL).
 */
static struct fopen *
fopen_get(uint64_t fh)
{
	struct fopen *fo;

	pthread_mutex_lock(&d.lock);
	for (fo = d.opens; fo && (uint64_t)(uintptr_t)fo != fh; fo = fo->next)
		;
	if (fo)
		fo->refs++;
	pthread_mutex_unlock(&d.lock);
	return fo;
}

static void
fopen_put(struct fopen *fo)
{
	unsigned left;

	pthread_mutex_lock(&d.lock);
	left = --fo->refs;
	pthread_mutex_unlock(&d.lock);
	if (left == 0) {
		free(fo->text);
		free(fo);
	}
}

struct fm_file *
fmd_open_file(uint64_t id, int *backed)
{
	struct fopen *fo = fopen_get(id);
	struct fm_file *fp = NULL;

	if (fo == NULL)
		return NULL;
	pthread_mutex_lock(&d.lock);
	*backed = fo->backing > 0;
	if ((fp = fo->fp) != NULL)
		fm__file_hold(fp);
	pthread_mutex_unlock(&d.lock);
	fopen_put(fo);
	return fp;
}

/* ------------------------------------------------------------------ */
/* Waiting for a driver, interruptibly, with no thread held. */

struct req {
	const struct fuse_in_header *h;
	const void *in; /* what follows the header */
	size_t inlen;
};

/*
 * Interrupted requests: every FUSE_INTERRUPT's unique, kept until its
 * request is answered (FUSE sends one a request, and never reuses a
 * unique on a connection). => d.lock held
 */
static int
interrupted_locked(uint64_t unique)
{
	for (unsigned i = 0; i < d.nintr; i++)
		if (d.intr[i] == unique)
			return 1;
	return 0;
}

/* Request unique is answered: it needs no interrupt any more. */
static void
answered(uint64_t unique)
{
	pthread_mutex_lock(&d.lock);
	for (unsigned i = 0; i < d.nintr; i++)
		if (d.intr[i] == unique) {
			d.intr[i] = d.intr[--d.nintr];
			break;
		}
	pthread_mutex_unlock(&d.lock);
}

static int
reply_err(const struct req *q, int err)
{
	answered(q->h->unique);
	return fmd_fuse_reply(&d.fs, q->h->unique, err, NULL, 0);
}

static int
reply(const struct req *q, const void *p, size_t len)
{
	answered(q->h->unique);
	return fmd_fuse_reply(&d.fs, q->h->unique, 0, p, len);
}

/* A mask line of /proc/TID/status ("SigPnd:\t0000000000000000"). */
static int
status_mask(const char *line, const char *key, uint64_t *v)
{
	size_t n = strlen(key);

	return strncmp(line, key, n) == 0 &&
	    sscanf(line + n, "%" SCNx64, v) == 1;
}

#define SIGBIT(s) ((uint64_t)1 << ((s)-1))
/* What a signal left at SIG_DFL does nothing to a waiting thread for. */
#define FMD_SIG_IDLE \
	(SIGBIT(SIGCHLD) | SIGBIT(SIGCONT) | SIGBIT(SIGURG) | SIGBIT(SIGWINCH))

/*
 * Whether thread tid will act on its interrupt when its call returns: a
 * signal pending that it catches, or whose default stops or kills it
 * (SIGKILL among them), or a tracer attached; not a signal it ignores or
 * blocks (a process-wide SIGCHLD its sibling blocks interrupts it all the
 * same). FUSE interrupts a call once, whatever woke it.
 * => 1 (also when tid is gone), 0
 */
static int
signal_acts(pid_t tid)
{
	uint64_t pnd = 0, shd = 0, blk = 0, ign = 0, cgt = 0, tracer = 0;
	char path[64], line[256];
	FILE *f;

	snprintf(path, sizeof path, "/proc/%d/status", (int)tid);
	if ((f = fopen(path, "re")) == NULL)
		return 1;
	while (fgets(line, sizeof line, f))
		if (strncmp(line, "TracerPid:", 10) == 0)
			tracer = strtoull(line + 10, NULL, 10);
		else
			(void)(status_mask(line, "SigPnd:", &pnd) ||
			    status_mask(line, "ShdPnd:", &shd) ||
			    status_mask(line, "SigBlk:", &blk) ||
			    status_mask(line, "SigIgn:", &ign) ||
			    status_mask(line, "SigCgt:", &cgt));
	fclose(f);
	ign |= FMD_SIG_IDLE & ~cgt;
	return tracer != 0 || ((pnd | shd) & ~blk & ~ign) != 0;
}

/*
 * Run op on fo's file once, with a reference of its own.
 * => its result, or -EINTR once fomapd stops
 */
static ssize_t
run_op(struct fopen *fo, ssize_t (*op)(struct fm_file *fp, void *arg),
    void *arg)
{
	struct fm_file *fp;
	ssize_t r;

	pthread_mutex_lock(&d.lock);
	if ((fp = fo->fp) != NULL)
		fm__file_hold(fp);
	pthread_mutex_unlock(&d.lock);
	if (fp == NULL)
		return -EINTR; /* shutdown_all took it */
	r = op(fp, arg);
	fm__file_rele(fp);
	return r;
}

#define FMD_PARKED_MAX ((size_t)64 << 20) /* bytes of parked requests */

/* Add p at the tail (the parker serves the oldest first). => d.lock */
static void
park_locked(struct parked *p)
{
	struct parked **pp = &d.parked;

	while (*pp)
		pp = &(*pp)->next;
	*pp = p;
	d.parkedbytes += p->len;
	if (p->ready || p->deferred)
		pthread_cond_signal(&d.parkcv);
}

/*
 * Run op on fo's file; if it would wait (EAGAIN) and the client's call is
 * blocking (!nonblock), park request q until the driver's next wake-up
 * of fo. An interrupted call is answered EINTR instead, unless its thread
 * ignores what interrupted it: then it is parked deferred (the parker
 * looks again). => 0 with *r the result to reply; 1: parked, reply later
 */
static int
run_or_park(const struct req *q, struct fopen *fo, int nonblock,
    ssize_t (*op)(struct fm_file *fp, void *arg), void *arg, ssize_t *r)
{
	size_t len = sizeof(*q->h) + q->inlen;
	struct parked *p;
	uint64_t gen;
	int intr, acts = 0;

	pthread_mutex_lock(&d.lock);
	gen = fo->gen;
	pthread_mutex_unlock(&d.lock);
	if ((*r = run_op(fo, op, arg)) != -EAGAIN || nonblock)
		return 0;
	if ((p = malloc(sizeof(*p) + len)) == NULL) {
		*r = -ENOMEM;
		return 0;
	}
	pthread_mutex_lock(&d.lock);
	intr = interrupted_locked(q->h->unique);
	pthread_mutex_unlock(&d.lock);
	if (intr && (acts = signal_acts((pid_t)q->h->pid)) != 0) {
		free(p);
		*r = -EINTR;
		return 0;
	}
	*p = (struct parked){.fo = fo, .len = len, .deferred = intr};
	memcpy(p->req, q->h, sizeof(*q->h));
	memcpy(p->req + sizeof(*q->h), q->in, q->inlen);
	pthread_mutex_lock(&d.lock);
	if (d.stopping || d.parkedbytes + len > FMD_PARKED_MAX) {
		*r = d.stopping ? -EINTR : -ENOMEM;
		pthread_mutex_unlock(&d.lock);
		free(p);
		return 0;
	}
	/* Woken meanwhile: tried again, by the parker, after the others. */
	p->ready = fo->gen != gen;
	fo->refs++; /* notify compares it: it stays this open */
	park_locked(p);
	pthread_mutex_unlock(&d.lock);
	return 1;
}

static void dispatch(const struct req *q);

/*
 * Answer EINTR the parked requests of fo (every one: fo NULL), or the one
 * of unique (non-zero). => how many
 */
static int
unpark(struct fopen *fo, uint64_t unique)
{
	struct parked *out = NULL, *p;
	int n = 0;

	pthread_mutex_lock(&d.lock);
	for (struct parked **pp = &d.parked; (p = *pp) != NULL;) {
		const struct fuse_in_header *h = (const void *)p->req;

		if (unique ? h->unique == unique : !fo || p->fo == fo) {
			*pp = p->next;
			d.parkedbytes -= p->len;
			p->next = out;
			out = p;
		} else {
			pp = &p->next;
		}
	}
	pthread_mutex_unlock(&d.lock);
	for (; (p = out) != NULL; n++) {
		struct req q = {.h = (const void *)p->req};

		out = p->next;
		reply_err(&q, -EINTR);
		fopen_put(p->fo);
		free(p);
	}
	return n;
}

/*
 * Deferred requests: interrupted by what their thread ignored, maybe since
 * by what it acts on, for which FUSE sends no second INTERRUPT (a SIGKILL
 * then waits for the reply): answer those EINTR. => some stay deferred
 */
static int
deferred_check(void)
{
	uint64_t *unique = NULL;
	pid_t *tid = NULL;
	int n = 0, cap = 0, more = 0;

	pthread_mutex_lock(&d.lock);
	for (struct parked *p = d.parked; p; p = p->next)
		cap += p->deferred;
	if (cap > 0) {
		unique = malloc((size_t)cap * sizeof(*unique));
		tid = malloc((size_t)cap * sizeof(*tid));
	}
	for (struct parked *p = d.parked; p && unique && tid; p = p->next)
		if (p->deferred) {
			const struct fuse_in_header *h = (const void *)p->req;

			unique[n] = h->unique;
			tid[n++] = (pid_t)h->pid;
		}
	pthread_mutex_unlock(&d.lock);
	for (int i = 0; i < n; i++)
		if (signal_acts(tid[i]))
			(void)unpark(NULL, unique[i]);
		else
			more = 1;
	free(unique);
	free(tid);
	return more || (cap > 0 && n == 0); /* (no memory: look again) */
}

#define FMD_DEFERRED_MS 50 /* how often deferred requests are looked at */

/* Wait on parkcv for at most ms (< 0: for ever). => d.lock held */
static void
park_wait_locked(int64_t ms)
{
	struct timespec ts;

	if (ms < 0) {
		pthread_cond_wait(&d.parkcv, &d.lock);
		return;
	}
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_nsec += ms * 1000000;
	ts.tv_sec += ts.tv_nsec / 1000000000;
	ts.tv_nsec %= 1000000000;
	(void)pthread_cond_timedwait(&d.parkcv, &d.lock, &ts);
}

static int64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * The parker: tries parked requests again, the oldest ready first, once
 * their driver woke them; and looks at the deferred ones every
 * FMD_DEFERRED_MS.
 */
static void *
parker(void *arg)
{
	int64_t next_look = 0;
	int deferred = 0;

	(void)arg;
	for (;;) {
		struct parked **pp, *p;

		if (deferred && mono_ms() >= next_look) {
			deferred = deferred_check();
			next_look = mono_ms() + FMD_DEFERRED_MS;
		}
		pthread_mutex_lock(&d.lock);
		for (pp = &d.parked; *pp && !(*pp)->ready;)
			pp = &(*pp)->next;
		if ((p = *pp) == NULL) {
			for (struct parked *x = d.parked; x; x = x->next)
				deferred |= x->deferred;
			park_wait_locked(deferred ? FMD_DEFERRED_MS : -1);
			pthread_mutex_unlock(&d.lock);
			continue;
		}
		*pp = p->next;
		d.parkedbytes -= p->len;
		pthread_mutex_unlock(&d.lock);
		struct req q = {.h = (const struct fuse_in_header *)p->req,
		    .in = p->req + sizeof(*q.h),
		    .inlen = p->len - sizeof(*q.h)};
		dispatch(&q); /* replies, or parks a copy again */
		fopen_put(p->fo);
		free(p);
	}
	return NULL;
}

/*
 * fm__poll_notify: a driver's wake-up, in its thread (it must not wait).
 * The poll notifications are written under d.lock: a write to /dev/fuse
 * does not wait.
 */
static void
notify(struct fm_dev *dev, struct fm_file *fp)
{
	pthread_mutex_lock(&d.lock);
	for (struct fopen *fo = d.opens; fo; fo = fo->next)
		if (fp ? fo->id == fp : fo->dev == dev) {
			fo->gen++;
			if (fo->has_kh)
				(void)fmd_fuse_notify_poll(&d.fs, fo->kh);
			for (struct parked *p = d.parked; p; p = p->next)
				p->ready |= p->fo == fo;
		}
	pthread_cond_signal(&d.parkcv);
	pthread_mutex_unlock(&d.lock);
}

/* ------------------------------------------------------------------ */
/* The status file (fomapctl). */

/* The command name of process pid into buf (16 bytes), or "gone". */
static const char *
comm_of(pid_t pid, char *buf)
{
	char path[64];
	FILE *f;

	snprintf(path, sizeof path, "/proc/%d/comm", (int)pid);
	snprintf(buf, 16, "gone");
	if ((f = fopen(path, "re")) != NULL) {
		if (fgets(buf, 16, f))
			buf[strcspn(buf, "\n")] = 0;
		fclose(f);
	}
	return buf;
}

/*
 * The mappings of node ino (a passthrough mapping shows the file's own
 * inode, on the mount's device dev) in process pid, where it can be seen.
 */
static void
maps_of(FILE *out, pid_t pid, dev_t dev, uint64_t ino)
{
	char path[64], line[512], range[64], perms[8];
	unsigned long long off, seen;
	unsigned maj, min;
	FILE *f;

	snprintf(path, sizeof path, "/proc/%d/maps", (int)pid);
	if ((f = fopen(path, "re")) == NULL)
		return;
	while (fgets(line, sizeof line, f))
		if (sscanf(line, "%63s %7s %llx %x:%x %llu", range, perms, &off,
		        &maj, &min, &seen) == 6 &&
		    seen == ino && maj == major(dev) && min == minor(dev))
			fprintf(out, "map pid %d %s %s offset %llu\n", (int)pid,
			    range, perms, off);
	fclose(f);
}

/* An open as the status file shows it, copied under d.lock. */
struct open_view {
	const void *id;
	char name[32];
	pid_t pid;
	int nonblock, backed;
	size_t size;
	long long resident;
	uint64_t ino;
};

/* The opens' lines, the /proc reads done with no lock held. */
static void
opens_text(FILE *f)
{
	struct open_view *v;
	int n = 0, cap = 1;
	char comm[16];

	pthread_mutex_lock(&d.lock);
	for (struct fopen *o = d.opens; o; o = o->next)
		cap++;
	if ((v = calloc((size_t)cap, sizeof(*v))) == NULL) {
		pthread_mutex_unlock(&d.lock);
		return;
	}
	for (struct fopen *o = d.opens; o && n < cap; o = o->next) {
		struct stat ms;

		if (o->text)
			continue; /* the status file itself */
		v[n] = (struct open_view){.id = o,
		    .pid = o->pid,
		    .nonblock = o->nonblock,
		    .size = o->size,
		    .ino = o->node ? o->node->id : 0};
		memcpy(v[n].name, o->name, sizeof v[n].name);
		if (o->backing > 0 && fstat(o->mfd, &ms) == 0) {
			v[n].backed = 1;
			v[n].resident = (long long)ms.st_blocks * 512;
		}
		n++;
	}
	pthread_mutex_unlock(&d.lock);
	for (int i = 0; i < n; i++) {
		fprintf(f, "open %p device %s pid %d (%s)%s", v[i].id,
		    v[i].name, (int)v[i].pid, comm_of(v[i].pid, comm),
		    v[i].nonblock ? " nonblock" : "");
		if (!v[i].backed) {
			fprintf(f, " object none\n");
			continue;
		}
		fprintf(f, " object %zu bytes resident %lld\n", v[i].size,
		    v[i].resident);
		maps_of(f, v[i].pid, d.fs.dev, v[i].ino);
	}
	free(v);
}

static void
status_text(struct fopen *fo)
{
	unsigned long hist[FM_LATENCY_BUCKETS];
	struct fm_stats st;
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	char names[FMD_MAXDEV][32];
	int n = fm__dev_names(names, FMD_MAXDEV);

	if (f == NULL)
		return;
	fprintf(f, "fomapd %d mount %s passthrough %s\n", (int)getpid(),
	    d.fs.dir, d.fs.passthrough ? "yes" : "no");
	for (int i = 0; i < n && i < FMD_MAXDEV; i++) {
		struct fuse_attr a;

		attr_of(names[i], 0, 0, &a);
		fprintf(f, "device %s mode %04o uid %u gid %u\n", names[i],
		    a.mode & 07777, a.uid, a.gid);
	}
	opens_text(f);
	pthread_mutex_lock(&d.lock);
	int waits = 0;
	for (struct parked *p = d.parked; p; p = p->next)
		waits++;
	pthread_mutex_unlock(&d.lock);
	fprintf(f, "waits %d\n", waits); /* calls parked on a driver */
	fmd_session_status(f);
	fm_engine_stats(&st);
	fprintf(f,
	    "engine faults %lu minor %lu wp %lu pages %lu sigbus %lu "
	    "retries %lu\n",
	    st.faults, st.minor, st.wp, st.pages, st.sigbus, st.retries);
	fprintf(f, "engine latency-us");
	for (int i = 0; i < fm_engine_latency(hist, FM_LATENCY_BUCKETS); i++)
		fprintf(f,
		    i < FM_LATENCY_BUCKETS - 1 ? " <%lu:%lu" : " >=%lu:%lu",
		    i < FM_LATENCY_BUCKETS - 1 ? 2UL << i : 1UL << i, hist[i]);
	fprintf(f, "\n");
	fclose(f);
	fo->text = buf;
	fo->textlen = len;
}

/* ------------------------------------------------------------------ */
/* Requests. */

static void
do_lookup(const struct req *q)
{
	const char *name = q->in;
	struct fuse_entry_out e = {0};
	struct node *n;

	if (q->h->nodeid != FUSE_ROOT_ID || q->inlen == 0 ||
	    memchr(name, 0, q->inlen) == NULL || strlen(name) >= 32 ||
	    !dev_exists(name)) {
		reply_err(q, -ENOENT);
		return;
	}
	if ((n = calloc(1, sizeof(*n))) == NULL) {
		reply_err(q, -ENOMEM);
		return;
	}
	snprintf(n->name, sizeof n->name, "%s", name);
	n->nlookup = 1;
	pthread_mutex_lock(&d.lock);
	n->id = d.next_id++;
	n->next = d.nodes;
	d.nodes = n;
	pthread_mutex_unlock(&d.lock);
	e.nodeid = n->id;
	e.generation = 1;
	attr_of(n->name, n->id, 0, &e.attr);
	reply(q, &e, sizeof e);
}

static void
do_getattr(const struct req *q)
{
	struct fuse_attr_out a = {.attr_valid = 0};
	struct node *n;

	pthread_mutex_lock(&d.lock);
	n = node_find_locked(q->h->nodeid);
	if (q->h->nodeid == FUSE_ROOT_ID)
		attr_of("", FUSE_ROOT_ID, 0, &a.attr);
	else if (n)
		attr_of(n->name, n->id, n->size, &a.attr);
	pthread_mutex_unlock(&d.lock);
	if (n == NULL && q->h->nodeid != FUSE_ROOT_ID)
		reply_err(q, -ENOENT);
	else
		reply(q, &a, sizeof a);
}

static void
do_setattr(const struct req *q)
{
	const struct fuse_setattr_in *s = q->in;

	/* A device's mode and owner are fomapd's configuration. */
	if (q->inlen < sizeof(*s) ||
	    (s->valid & (FATTR_MODE | FATTR_UID | FATTR_GID)))
		reply_err(q, -EPERM);
	else
		do_getattr(q); /* O_TRUNC, times: as a device, ignored */
}

/*
 * Close the daemon's descriptor of an open and drop the open's reference:
 * the driver's close hook runs with the last (after any call in flight).
 */
static void
close_open(int fd, struct fm_file *fp)
{
	if (fd >= 0)
		fm_close(fd);
	if (fp)
		fm__file_rele(fp);
}

/* The passthrough backing of a new open, if its driver has one. */
static void
open_backing(struct fopen *fo, struct fm_file *fp, int wr)
{
	struct fm_object *obj;
	int maxprot, fd;

	fo->mfd = fo->backing = -1;
	if (!d.fs.passthrough || fm__fo_backing(fp, &obj, &maxprot) < 0)
		return;
	/* A read-only object is never handed to a writable open. */
	if (!wr || (maxprot & PROT_WRITE)) {
		fd = fm__object_backing_fd(obj, wr, &fo->size);
		if (fd >= 0 &&
		    (fo->backing = fmd_fuse_backing_open(&d.fs, fd)) < 0)
			fo->backing = -1;
		if (fo->backing < 0 && fd >= 0)
			close(fd);
		else
			fo->mfd = fd;
	}
	fm_object_rele(obj);
}

static void
do_open(const struct req *q)
{
	const struct fuse_open_in *in = q->in;
	struct fuse_open_out out = {0};
	struct fopen *fo;
	struct node *n;
	char path[64];
	int acc, err;

	if (q->inlen < sizeof(*in) || (fo = calloc(1, sizeof(*fo))) == NULL) {
		reply_err(q, q->inlen < sizeof(*in) ? -EINVAL : -ENOMEM);
		return;
	}
	pthread_mutex_lock(&d.lock);
	n = node_find_locked(q->h->nodeid);
	if (n)
		memcpy(fo->name, n->name, sizeof fo->name);
	pthread_mutex_unlock(&d.lock);
	acc = (int)in->flags & O_ACCMODE;
	fo->pid = (pid_t)q->h->pid;
	fo->nonblock = (in->flags & O_NONBLOCK) != 0;
	fo->mfd = fo->backing = fo->fd = -1;
	if (n == NULL) {
		free(fo);
		reply_err(q, -ENOENT);
		return;
	}
	if (strcmp(fo->name, FMD_STATUS) == 0) {
		status_text(fo);
	} else {
		snprintf(path, sizeof path, FM_DEVPREFIX "%s", fo->name);
		fo->fd = fm_open(path,
		    acc | ((int)in->flags & O_APPEND) | O_NONBLOCK | O_CLOEXEC);
		err = fo->fd < 0 ? -errno : 0;
		if (fo->fd >= 0 &&
		    (fo->fp = fm__file_get(fo->fd, NULL, &err)) == NULL)
			err = err < 0 ? err : -EBADF;
		if (err < 0) {
			if (fo->fd >= 0)
				fm_close(fo->fd);
			free(fo);
			reply_err(q, err);
			return;
		}
		fo->dev = fo->fp->f_dev;
		fo->id = fo->fp; /* (the reference is the open's: release) */
		open_backing(fo, fo->fp, acc != O_RDONLY);
	}
	pthread_mutex_lock(&d.lock);
	/*
	 * The kernel takes one backing an inode, and two path walks at once
	 * may share one LOOKUP's node: the second open of it is told
	 * ESTALE, and the kernel walks the path again (LOOKUP_REVAL), to a
	 * node of its own. (An open with no backing of a node with one
	 * would get EIO from the kernel: the same.)
	 */
	if (n->backed) {
		pthread_mutex_unlock(&d.lock);
		fmd_fuse_backing_close(&d.fs, fo->backing);
		if (fo->mfd >= 0)
			close(fo->mfd);
		close_open(fo->fd, fo->fp);
		free(fo->text);
		free(fo);
		reply_err(q, -ESTALE);
		return;
	}
	if (fo->backing > 0) {
		n->size = fo->size;
		n->backed = 1;
	}
	fo->node = n;
	fo->refs = 1; /* d.opens's */
	fo->next = d.opens;
	d.opens = fo;
	pthread_mutex_unlock(&d.lock);
	out.fh = (uint64_t)(uintptr_t)fo;
	out.open_flags = FOPEN_DIRECT_IO;
	if (fo->backing > 0) {
		out.open_flags |= FOPEN_PASSTHROUGH;
		out.padding = (uint32_t)fo->backing; /* backing_id (7.40) */
	}
	reply(q, &out, sizeof out);
}

static void
do_release(const struct req *q)
{
	const struct fuse_release_in *in = q->in;
	struct fopen **pp, *fo;
	struct fm_file *fp;
	int fd;

	pthread_mutex_lock(&d.lock);
	for (pp = &d.opens; *pp && (uint64_t)(uintptr_t)*pp != in->fh;)
		pp = &(*pp)->next;
	if ((fo = *pp) == NULL) {
		pthread_mutex_unlock(&d.lock);
		reply_err(q, 0); /* not ours (the directory's, 0) */
		return;
	}
	*pp = fo->next;
	if (fo->backing > 0)
		fo->node->backed = 0;
	fd = fo->fd; /* (-1 once shutdown_all closed it) */
	fp = fo->fp;
	fo->fd = -1;
	fo->fp = NULL;
	pthread_mutex_unlock(&d.lock);
	fmd_fuse_backing_close(&d.fs, fo->backing);
	if (fo->mfd >= 0)
		close(fo->mfd);
	close_open(fd, fp); /* the driver's close hook, if the last */
	fopen_put(fo); /* d.opens's: freed after the calls still on it */
	reply_err(q, 0);
}

struct rw {
	void *buf;
	size_t len;
	off_t off;
};

static ssize_t
op_read(struct fm_file *fp, void *arg)
{
	struct rw *a = arg;

	return fm__fo_read(fp, a->buf, a->len, &a->off);
}

static ssize_t
op_write(struct fm_file *fp, void *arg)
{
	struct rw *a = arg;

	return fm__fo_write(fp, a->buf, a->len, &a->off);
}

static void
do_read(const struct req *q, struct fopen *fo)
{
	const struct fuse_read_in *in = q->in;
	struct rw a = {.len = in->size, .off = (off_t)in->offset};
	ssize_t r;

	if (fo == NULL) {
		reply_err(q, -EBADF);
		return;
	}
	if (fo->text) { /* the status file */
		size_t off =
		    in->offset < fo->textlen ? in->offset : fo->textlen;
		size_t k =
		    fo->textlen - off < a.len ? fo->textlen - off : a.len;

		reply(q, fo->text + off, k);
		return;
	}
	if ((a.buf = malloc(a.len ? a.len : 1)) == NULL) {
		reply_err(q, -ENOMEM);
		return;
	}
	/* The file's flags now (fcntl may have changed them since open). */
	if (run_or_park(q, fo, (int)in->flags & O_NONBLOCK, op_read, &a, &r) ==
	    0) {
		if (r < 0)
			reply_err(q, (int)r);
		else
			reply(q, a.buf, (size_t)r);
	}
	free(a.buf);
}

static void
do_write(const struct req *q, struct fopen *fo)
{
	const struct fuse_write_in *in = q->in;
	struct rw a = {.buf = (char *)(in + 1),
	    .len = in->size,
	    .off = (off_t)in->offset};
	struct fuse_write_out out = {0};
	ssize_t r;

	if (q->inlen < sizeof(*in) + in->size || fo == NULL || fo->text) {
		reply_err(q,
		    q->inlen < sizeof(*in) + in->size ? -EINVAL : -EBADF);
		return;
	}
	if (run_or_park(q, fo, (int)in->flags & O_NONBLOCK, op_write, &a, &r) ==
	    0) {
		out.size = (uint32_t)(r < 0 ? 0 : r);
		if (r < 0)
			reply_err(q, (int)r);
		else
			reply(q, &out, sizeof out);
	}
}

struct ioc {
	unsigned long cmd;
	void *data;
};

static ssize_t
op_ioctl(struct fm_file *fp, void *arg)
{
	struct ioc *a = arg;

	return fm__fo_ioctl(fp, a->cmd, a->data);
}

/* The legacy number's entry in the driver's table, or NULL. */
static const struct fm_ioctl_legacy *
legacy_of(const struct fopen *fo, unsigned long cmd)
{
	const struct fm_ioctl_legacy *t =
	    fo->dev ? fo->dev->cdev->d_legacy : NULL;

	for (; t && t->cmd != 0; t++)
		if (t->cmd == cmd)
			return t;
	return NULL;
}

/* Copy len bytes between buf and the caller's memory at addr. */
static int
caller_copy(pid_t pid, uint64_t addr, void *buf, size_t len, int out)
{
	struct iovec l = {buf, len}, r = {(void *)(uintptr_t)addr, len};
	ssize_t k = out ? process_vm_writev(pid, &l, 1, &r, 1, 0)
	                : process_vm_readv(pid, &l, 1, &r, 1, 0);

	return k == (ssize_t)len ? 0 : -EFAULT;
}

/* Whether thread tid is one of fomapd's own. */
static int
own_thread(pid_t tid)
{
	char path[64];

	snprintf(path, sizeof path, "/proc/self/task/%d", (int)tid);
	return tid > 0 && access(path, F_OK) == 0;
}

/*
 * FMD_IOC_OPEN: the open's id, to a session of fomapd's naming the open
 * by a descriptor its client sent (session.c); to any other caller the
 * number is unknown.
 */
static void
ioctl_open_id(const struct req *q, struct fopen *fo)
{
	const struct fuse_ioctl_in *in = q->in;
	struct fuse_ioctl_out out = {0};
	uint64_t id = (uint64_t)(uintptr_t)fo;

	if (!own_thread((pid_t)q->h->pid) || in->out_size != sizeof id) {
		reply_err(q, -ENOTTY);
		return;
	}
	answered(q->h->unique);
	fmd_fuse_reply2(&d.fs, q->h->unique, &out, sizeof out, &id, sizeof id);
}

static void
do_ioctl(const struct req *q, struct fopen *fo)
{
	const struct fuse_ioctl_in *in = q->in;
	struct fuse_ioctl_out out = {0};
	const struct fm_ioctl_legacy *leg = NULL;
	struct ioc a = {.cmd = in->cmd};
	size_t in_size = in->in_size, out_size = in->out_size, size;
	ssize_t r = 0;
	char *buf = NULL;

	/* The mount's directory (fh 0) and the status file: no requests. */
	if ((in->flags & (FUSE_IOCTL_COMPAT | FUSE_IOCTL_DIR)) || fo == NULL ||
	    fo->text) {
		reply_err(q, -ENOTTY);
		return;
	}
	if (q->inlen < sizeof(*in) + in_size) {
		reply_err(q, -EINVAL);
		return;
	}
	if (in->cmd == FMD_IOC_OPEN) {
		ioctl_open_id(q, fo);
		return;
	}
	if (_IOC_SIZE(in->cmd) == 0 && (leg = legacy_of(fo, in->cmd)) == NULL) {
		reply_err(q, -ENOTTY); /* TCGETS among them: not a tty */
		return;
	}
	if (leg) {
		in_size = leg->in;
		size = leg->in > leg->out ? leg->in : leg->out;
	} else {
		size = in_size > out_size ? in_size : out_size;
	}
	if ((buf = calloc(1, size ? size : 1)) == NULL) {
		reply_err(q, -ENOMEM);
		return;
	}
	if (leg && leg->in > 0)
		r = caller_copy((pid_t)q->h->pid, in->arg, buf, leg->in, 0);
	else if (!leg)
		memcpy(buf, in + 1, in_size);
	/* A value, not a pointer: as it is (FBIOBLANK's blank level). */
	a.data = leg && size == 0 ? (void *)(uintptr_t)in->arg : buf;
	/* (The open's flags: FUSE gives an ioctl none of the file's own.) */
	if (r == 0 && run_or_park(q, fo, fo->nonblock, op_ioctl, &a, &r) == 1) {
		free(buf); /* parked: the parker tries it again */
		return;
	}
	if (r >= 0 && leg && leg->out > 0)
		r = caller_copy((pid_t)q->h->pid, in->arg, buf, leg->out, 1) < 0
		    ? -EFAULT
		    : r;
	if (r < 0) {
		reply_err(q, (int)r);
	} else {
		out.result = (int32_t)r;
		answered(q->h->unique);
		fmd_fuse_reply2(&d.fs, q->h->unique, &out, sizeof out, buf,
		    leg ? 0 : out_size);
	}
	free(buf);
}

static ssize_t
op_poll(struct fm_file *fp, void *arg)
{
	return fm__fo_poll(fp, *(int *)arg);
}

static void
do_poll(const struct req *q, struct fopen *fo)
{
	const struct fuse_poll_in *in = q->in;
	struct fuse_poll_out out = {0};
	int events = (int)in->events;
	ssize_t r;

	if (fo == NULL || fo->text) {
		out.revents = in->events & FM_POLL_DEFAULT;
		reply(q, &out, sizeof out);
		return;
	}
	if (in->flags & FUSE_POLL_SCHEDULE_NOTIFY) {
		pthread_mutex_lock(&d.lock);
		fo->kh = in->kh;
		fo->has_kh = 1;
		pthread_mutex_unlock(&d.lock);
	}
	r = run_op(fo, op_poll, &events);
	out.revents = r < 0 ? POLLERR : (uint32_t)r;
	reply(q, &out, sizeof out);
}

/* One directory entry into buf at *len, if it fits. => 1, or 0: full */
static int
dirent_add(char *buf, size_t size, size_t *len, const char *name, uint64_t ino,
    uint64_t off, unsigned type)
{
	size_t nl = strlen(name),
	       rec = FUSE_DIRENT_ALIGN(FUSE_NAME_OFFSET + nl);
	struct fuse_dirent *de = (struct fuse_dirent *)(buf + *len);

	if (*len + rec > size)
		return 0;
	memset(de, 0, rec);
	de->ino = ino;
	de->off = off;
	de->namelen = (uint32_t)nl;
	de->type = type;
	memcpy(de->name, name, nl);
	*len += rec;
	return 1;
}

static void
do_readdir(const struct req *q)
{
	const struct fuse_read_in *in = q->in;
	char names[FMD_MAXDEV][32], *buf;
	int n = fm__dev_names(names, FMD_MAXDEV);
	size_t len = 0;

	if (n > FMD_MAXDEV)
		n = FMD_MAXDEV;
	if ((buf = malloc(in->size)) == NULL) {
		reply_err(q, -ENOMEM);
		return;
	}
	/* Entries: ".", "..", the status file, then the devices. */
	for (uint64_t i = in->offset; i < (uint64_t)n + 3; i++) {
		const char *name = i == 0 ? "."
		    : i == 1              ? ".."
		    : i == 2              ? FMD_STATUS
		                          : names[i - 3];

		if (!dirent_add(buf, in->size, &len, name, i + 1, i + 1,
		        i < 2 ? S_IFDIR >> 12 : S_IFREG >> 12))
			break;
	}
	reply(q, buf, len);
	free(buf);
}

/*
 * A client's signal: its request is marked interrupted until answered. A
 * parked one is answered EINTR now, unless its thread ignores what
 * interrupted it (then it waits on, deferred: the parker looks again);
 * one not parked yet is answered so if it comes to park (one that
 * completes meanwhile is answered as it is). No reply of its own.
 */
static void
do_interrupt(const struct req *q)
{
	const struct fuse_interrupt_in *in = q->in;
	struct parked *p;
	pid_t tid = 0;

	pthread_mutex_lock(&d.lock);
	if (!interrupted_locked(in->unique) && d.nintr < FMD_INTR)
		d.intr[d.nintr++] = in->unique;
	for (p = d.parked; p; p = p->next)
		if (((const struct fuse_in_header *)p->req)->unique ==
		    in->unique) {
			tid =
			    (pid_t)((const struct fuse_in_header *)p->req)->pid;
			break;
		}
	pthread_mutex_unlock(&d.lock);
	if (p == NULL)
		return; /* run_or_park sees it, or it is answered anyway */
	if (signal_acts(tid)) {
		(void)unpark(NULL, in->unique);
		return;
	}
	pthread_mutex_lock(&d.lock); /* (the parker may have it now) */
	for (p = d.parked; p; p = p->next)
		if (((const struct fuse_in_header *)p->req)->unique ==
		    in->unique)
			p->deferred = 1;
	pthread_cond_signal(&d.parkcv);
	pthread_mutex_unlock(&d.lock);
}

/*
 * The value of extended attribute name on node id, into *val: a device
 * file has one, FM_IPC_XATTR (the preload library finds fomapd's session
 * by it). => its length, or -ENODATA
 */
static ssize_t
xattr_of(uint64_t id, const char *name, const char **val)
{
	struct node *n;
	int dev;

	pthread_mutex_lock(&d.lock);
	n = node_find_locked(id);
	dev = n && strcmp(n->name, FMD_STATUS) != 0;
	pthread_mutex_unlock(&d.lock);
	if (!dev || strcmp(name, FM_IPC_XATTR) != 0 ||
	    (*val = fmd_session_name()) == NULL)
		return -ENODATA;
	return (ssize_t)strlen(*val);
}

/*
 * An xattr's value (GETXATTR) or the list of names (LISTXATTR, NULs
 * after each): size 0 asks its length; a smaller buffer is ERANGE.
 */
static void
reply_xattr(const struct req *q, const void *val, size_t len)
{
	const struct fuse_getxattr_in *in = q->in;
	struct fuse_getxattr_out out = {.size = (uint32_t)len};

	if (in->size == 0)
		reply(q, &out, sizeof out);
	else if (in->size < len)
		reply_err(q, -ERANGE);
	else
		reply(q, val, len);
}

static void
do_getxattr(const struct req *q)
{
	const char *name =
	    (const char *)q->in + sizeof(struct fuse_getxattr_in);
	size_t max = q->inlen - sizeof(struct fuse_getxattr_in);
	const char *val = NULL;
	ssize_t len;

	if (memchr(name, 0, max) == NULL) {
		reply_err(q, -EINVAL);
		return;
	}
	if ((len = xattr_of(q->h->nodeid, name, &val)) < 0)
		reply_err(q, (int)len);
	else
		reply_xattr(q, val, (size_t)len);
}

static void
do_listxattr(const struct req *q)
{
	const char *val;

	if (xattr_of(q->h->nodeid, FM_IPC_XATTR, &val) < 0)
		reply_xattr(q, "", 0);
	else
		reply_xattr(q, FM_IPC_XATTR, sizeof FM_IPC_XATTR);
}

/* The least each request carries after its header. */
static size_t
min_inlen(uint32_t opcode)
{
	switch (opcode) {
	case FUSE_INIT:
		return offsetof(struct fuse_init_in, flags2);
	case FUSE_LOOKUP:
		return 1;
	case FUSE_FORGET:
		return sizeof(struct fuse_forget_in);
	case FUSE_BATCH_FORGET:
		return sizeof(struct fuse_batch_forget_in);
	case FUSE_SETATTR:
		return sizeof(struct fuse_setattr_in);
	case FUSE_OPEN:
		return sizeof(struct fuse_open_in);
	case FUSE_RELEASE:
		return sizeof(struct fuse_release_in);
	case FUSE_READ:
	case FUSE_READDIR:
		return sizeof(struct fuse_read_in);
	case FUSE_WRITE:
		return sizeof(struct fuse_write_in);
	case FUSE_IOCTL:
		return sizeof(struct fuse_ioctl_in);
	case FUSE_POLL:
		return sizeof(struct fuse_poll_in);
	case FUSE_INTERRUPT:
		return sizeof(struct fuse_interrupt_in);
	case FUSE_GETXATTR:
		return sizeof(struct fuse_getxattr_in) + 1;
	case FUSE_LISTXATTR:
		return sizeof(struct fuse_getxattr_in);
	default:
		return 0;
	}
}

/* A request on an open: with a reference to it (NULL: not an open). */
static void
on_open(const struct req *q, uint64_t fh,
    void (*fn)(const struct req *q, struct fopen *fo))
{
	struct fopen *fo = fopen_get(fh);

	fn(q, fo);
	if (fo)
		fopen_put(fo);
}

static void
dispatch(const struct req *q)
{
	if (q->inlen < min_inlen(q->h->opcode)) {
		if (q->h->opcode != FUSE_FORGET &&
		    q->h->opcode != FUSE_BATCH_FORGET)
			reply_err(q, -EINVAL);
		return;
	}
	switch (q->h->opcode) {
	case FUSE_INIT: {
		struct fuse_init_out out;

		fmd_fuse_init(&d.fs, q->in, &out);
		/* Said before the reply: once it is in, the files are there. */
		fprintf(stderr, "fomapd: FUSE 7.%u on %s; passthrough %s\n",
		    d.fs.minor, d.fs.dir,
		    d.fs.passthrough ? "yes"
		                     : "no: no device can be mapped (ENODEV)");
		reply(q, &out, sizeof out);
		break;
	}
	case FUSE_LOOKUP:
		do_lookup(q);
		break;
	case FUSE_FORGET:
		forget(q->h->nodeid,
		    ((const struct fuse_forget_in *)q->in)->nlookup);
		break;
	case FUSE_BATCH_FORGET: {
		const struct fuse_batch_forget_in *b = q->in;
		const struct fuse_forget_one *f = (const void *)(b + 1);

		for (uint32_t i = 0; i < b->count &&
		     sizeof(*b) + (i + 1) * sizeof(*f) <= q->inlen;
		     i++)
			forget(f[i].nodeid, f[i].nlookup);
		break;
	}
	case FUSE_GETATTR:
		do_getattr(q);
		break;
	case FUSE_SETATTR:
		do_setattr(q);
		break;
	case FUSE_OPEN:
		do_open(q);
		break;
	case FUSE_RELEASE:
		do_release(q);
		break;
	case FUSE_READ:
		on_open(q, ((const struct fuse_read_in *)q->in)->fh, do_read);
		break;
	case FUSE_WRITE:
		on_open(q, ((const struct fuse_write_in *)q->in)->fh, do_write);
		break;
	case FUSE_IOCTL:
		on_open(q, ((const struct fuse_ioctl_in *)q->in)->fh, do_ioctl);
		break;
	case FUSE_POLL:
		on_open(q, ((const struct fuse_poll_in *)q->in)->fh, do_poll);
		break;
	case FUSE_FLUSH:
	case FUSE_FSYNC:
	case FUSE_RELEASEDIR:
		reply_err(q, 0);
		break;
	case FUSE_OPENDIR: {
		struct fuse_open_out out = {0};

		reply(q, &out, sizeof out);
		break;
	}
	case FUSE_READDIR:
		do_readdir(q);
		break;
	case FUSE_STATFS: {
		struct fuse_statfs_out out = {
		    .st = {.bsize = 4096, .frsize = 4096, .namelen = 31}};

		reply(q, &out, sizeof out);
		break;
	}
	case FUSE_INTERRUPT:
		do_interrupt(q);
		break;
	case FUSE_GETXATTR:
		do_getxattr(q);
		break;
	case FUSE_LISTXATTR:
		do_listxattr(q);
		break;
	case FUSE_DESTROY:
		reply_err(q, 0);
		break;
	case FUSE_MKNOD:
	case FUSE_MKDIR:
	case FUSE_UNLINK:
	case FUSE_RMDIR:
	case FUSE_RENAME:
	case FUSE_RENAME2:
	case FUSE_LINK:
	case FUSE_SYMLINK:
	case FUSE_CREATE:
		reply_err(q, -EPERM);
		break;
	default:
		reply_err(q, -ENOSYS);
	}
}

static void *worker(void *arg);

/* One more worker, so that a call waiting on a driver stalls no other. */
static void
spawn_worker_locked(void)
{
	pthread_t t;
	pthread_attr_t at;

	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&t, &at, worker, NULL) == 0)
		d.workers++;
	pthread_attr_destroy(&at);
}

static void *
worker(void *arg)
{
	char *buf = malloc(FMD_REQ_SIZE);

	(void)arg;
	if (buf == NULL)
		return NULL;
	for (;;) {
		ssize_t n;
		struct req q;

		pthread_mutex_lock(&d.lock);
		d.idle++;
		pthread_mutex_unlock(&d.lock);
		n = fmd_fuse_read(&d.fs, buf, FMD_REQ_SIZE);
		pthread_mutex_lock(&d.lock);
		d.idle--;
		if (n > 0 && d.idle == 0 && d.workers < FMD_WORKERS_MAX)
			spawn_worker_locked();
		pthread_mutex_unlock(&d.lock);
		if (n <= 0)
			break;
		q.h = (const struct fuse_in_header *)buf;
		q.in = buf + sizeof(*q.h);
		q.inlen = (size_t)n - sizeof(*q.h);
		dispatch(&q);
	}
	free(buf);
	/* The file system is gone: the daemon with it. */
	kill(getpid(), SIGTERM);
	return NULL;
}

/* ------------------------------------------------------------------ */
/* Configuration and the main loop. */

/* An octal mode, 0 to 07777, and nothing after it. => 0, or -EINVAL */
static int
parse_mode(const char *s, mode_t *mode)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 8);
	if (errno != 0 || end == s || *end != '\0' || v > 07777 ||
	    strchr(s, '-') != NULL)
		return -EINVAL;
	*mode = (mode_t)v;
	return 0;
}

/*
 * "name:mode[:user[:group]]", or a config line's "name mode user group"
 * (fields separated by spaces or tabs).
 */
static int
add_conf(const char *spec)
{
	char name[32] = "", user[64] = "", group[64] = "";
	unsigned mode;
	struct devconf *c;
	char *end;
	int k =
	    sscanf(spec, "%31[^:\t ]%*[:\t ]%o%*[:\t ]%63[^:\t ]%*[:\t ]%63s",
	        name, &mode, user, group);

	if (k < 2 || mode > 07777 || (c = calloc(1, sizeof(*c))) == NULL)
		return -EINVAL;
	memcpy(c->name, name, sizeof c->name);
	c->mode = mode;
	/* A name, or a number; an unknown name is an error, never root. */
	if (user[0]) {
		struct passwd *pw = getpwnam(user);

		c->uid = pw ? pw->pw_uid : (uid_t)strtoul(user, &end, 10);
		if (pw == NULL && *end != 0)
			goto bad;
	}
	if (group[0]) {
		struct group *gr = getgrnam(group);

		c->gid = gr ? gr->gr_gid : (gid_t)strtoul(group, &end, 10);
		if (gr == NULL && *end != 0)
			goto bad;
	}
	c->next = d.conf;
	d.conf = c;
	return 0;
bad:
	free(c);
	return -EINVAL;
}

static int
read_conf(const char *path)
{
	char line[256];
	FILE *f = fopen(path, "re");
	int r = 0;

	if (f == NULL)
		return -errno;
	while (r == 0 && fgets(line, sizeof line, f)) {
		char *s = line + strspn(line, " \t");

		s[strcspn(s, "#\n")] = 0;
		if (*s)
			r = add_conf(s);
	}
	fclose(f);
	return r;
}

static int
load_plugin(const char *path)
{
	void *h = dlopen(path, RTLD_NOW | RTLD_GLOBAL);
	int (*init)(void);

	if (h == NULL) {
		fprintf(stderr, "fomapd: %s\n", dlerror());
		return -1;
	}
	*(void **)&init = dlsym(h, "fomap_driver_init");
	if (init == NULL || init() < 0) {
		fprintf(stderr, "fomapd: %s: no working fomap_driver_init\n",
		    path);
		return -1;
	}
	return 0;
}

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: fomapd [--mount DIR] [--dev NAME:MODE[:USER[:GROUP]]]...\n"
	    "              [--config FILE] [--plugin DRIVER.so]... [--mode "
	    "MODE]\n"
	    "Serves fomap's devices as files under DIR (default /dev/fomap)\n"
	    "until SIGTERM or SIGINT.\n");
}

/* Stop: the drivers' close hooks for every open, then the mount. */
static void
shutdown_all(void)
{
	struct fm_file **fps;
	int n = 0, *fds;

	pthread_mutex_lock(&d.lock);
	d.stopping = 1;
	for (struct fopen *fo = d.opens; fo; fo = fo->next)
		n++;
	fds = calloc((size_t)n + 1, sizeof(*fds));
	fps = calloc((size_t)n + 1, sizeof(*fps));
	n = 0;
	for (struct fopen *fo = d.opens; fo && fds && fps; fo = fo->next) {
		fds[n] = fo->fd;
		fps[n++] = fo->fp;
		fo->fd = -1;
		fo->fp = NULL; /* run_op sees it gone */
	}
	pthread_mutex_unlock(&d.lock);
	(void)unpark(NULL, 0); /* EINTR for every parked call */
	/* With no lock of ours held: a close hook may post a wake-up. */
	for (int i = 0; i < n; i++)
		close_open(fds[i], fps[i]);
	free(fds);
	free(fps);
	fmd_fuse_detach(&d.fs);
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {{"mount", 1, NULL, 'm'},
	    {"dev", 1, NULL, 'd'}, {"config", 1, NULL, 'c'},
	    {"plugin", 1, NULL, 'p'}, {"mode", 1, NULL, 'M'},
	    {"help", 0, NULL, 'h'}, {NULL, 0, NULL, 0}};
	const char *dir = "/dev/fomap";
	struct rlimit rl;
	sigset_t stop;
	pthread_t t;
	int c, r, sig;

	/* Before a plug-in may start a thread: SIGTERM is the main thread's. */
	sigemptyset(&stop);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGINT);
	pthread_sigmask(SIG_BLOCK, &stop, NULL);
	/* Before any object is made: clients are handed objects' stores. */
	fm_client_hosting();
	while ((c = getopt_long(argc, argv, "m:d:c:p:M:h", opts, NULL)) != -1) {
		switch (c) {
		case 'm':
			dir = optarg;
			break;
		case 'd':
			r = add_conf(optarg);
			break;
		case 'c':
			r = read_conf(optarg);
			break;
		case 'p':
			r = load_plugin(optarg);
			break;
		case 'M':
			r = parse_mode(optarg, &d.mode);
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
		if (c != 'm' && r < 0) {
			fprintf(stderr, "fomapd: bad --%s %s\n",
			    c == 'd'       ? "dev"
			        : c == 'c' ? "config"
			        : c == 'M' ? "mode"
			                   : "plugin",
			    optarg);
			return 2;
		}
	}
	/* Three descriptors an open (fomap's, the store, FUSE's backing). */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
	d.start = time(NULL);
	fm__poll_notify = notify;
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&d.parkcv, &ca);
	pthread_condattr_destroy(&ca);
	if ((r = fmd_fuse_mount(&d.fs, dir)) < 0) {
		fprintf(stderr, "fomapd: mount on %s: %s\n", dir,
		    r == -EBUSY ? "another fomapd serves it" : strerror(-r));
		return 1;
	}
	/* Before the first request: a device file's xattr names it. */
	if ((r = fmd_session_start(d.fs.dev)) < 0)
		fprintf(stderr,
		    "fomapd: no sessions (%s): no mapping through "
		    "the engine\n",
		    strerror(-r));
	pthread_mutex_lock(&d.lock);
	spawn_worker_locked();
	pthread_mutex_unlock(&d.lock);
	if (pthread_create(&t, NULL, parker, NULL) != 0) {
		fprintf(stderr, "fomapd: no thread for waits\n");
		fmd_fuse_unmount(&d.fs);
		return 1;
	}
	fprintf(stderr, "fomapd: serving %s\n", d.fs.dir);
	sigwait(&stop, &sig);
	shutdown_all();
	fflush(NULL);
	_exit(0);
}
