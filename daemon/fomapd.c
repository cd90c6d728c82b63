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
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <fomap/fomap.h>

#include "fuse.h"
#include "kern/kern.h"

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
	struct fm_file *fp; /* its file (identity only: fm__file_get to use) */
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
	struct fopen *next;
};

struct waiter {
	uint64_t unique;
	int interrupted;
	struct waiter *next;
};

static struct {
	struct fmd_fuse fs;
	pthread_mutex_t lock;
	pthread_cond_t cv; /* a wake-up, an interrupt, or stopping */
	struct node *nodes;
	uint64_t next_id;
	struct fopen *opens;
	struct waiter *waiters;
	struct devconf *conf;
	mode_t mode; /* the default */
	time_t start;
	int workers, idle, stopping;
} d = {.lock = PTHREAD_MUTEX_INITIALIZER,
    .cv = PTHREAD_COND_INITIALIZER,
    .next_id = 2,
    .mode = 0666};

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
	    (strcmp(name, FMD_STATUS) == 0 ? 0444
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
/* Waiting for a driver, interruptibly. */

/*
 * Run op on fo's file until it does not say EAGAIN, or the client's open
 * is non-blocking; between tries, wait for the driver's wake-up. A client
 * interrupt (FUSE_INTERRUPT) ends the wait with EINTR.
 */
static ssize_t
blocking(struct fopen *fo, uint64_t unique,
    ssize_t (*op)(struct fm_file *fp, void *arg), void *arg)
{
	struct waiter w = {.unique = unique};
	ssize_t r;

	pthread_mutex_lock(&d.lock);
	w.next = d.waiters;
	d.waiters = &w;
	for (;;) {
		uint64_t gen = fo->gen;
		struct fm_file *fp;
		int err;

		pthread_mutex_unlock(&d.lock);
		if ((fp = fm__file_get(fo->fd, NULL, &err)) == NULL) {
			r = err;
		} else {
			r = op(fp, arg);
			fm__file_rele(fp);
		}
		pthread_mutex_lock(&d.lock);
		if (r != -EAGAIN || fo->nonblock)
			break;
		while (fo->gen == gen && !w.interrupted && !d.stopping)
			pthread_cond_wait(&d.cv, &d.lock);
		if (w.interrupted || d.stopping) {
			r = -EINTR;
			break;
		}
	}
	for (struct waiter **pp = &d.waiters; *pp; pp = &(*pp)->next)
		if (*pp == &w) {
			*pp = w.next;
			break;
		}
	pthread_mutex_unlock(&d.lock);
	return r;
}

/* fm__poll_notify: a driver's wake-up, in its thread. */
static void
notify(struct fm_dev *dev, struct fm_file *fp)
{
	uint64_t kh[64];
	int n = 0;

	pthread_mutex_lock(&d.lock);
	for (struct fopen *fo = d.opens; fo; fo = fo->next)
		if (fp ? fo->fp == fp : fo->dev == dev) {
			fo->gen++;
			if (fo->has_kh && n < 64)
				kh[n++] = fo->kh;
		}
	pthread_cond_broadcast(&d.cv);
	pthread_mutex_unlock(&d.lock);
	for (int i = 0; i < n; i++)
		(void)fmd_fuse_notify_poll(&d.fs, kh[i]);
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
	struct stat mnt;
	int have_mnt = stat(d.fs.dir, &mnt) == 0;

	pthread_mutex_lock(&d.lock);
	for (struct fopen *o = d.opens; o; o = o->next) {
		char comm[16];
		struct stat ms;

		if (strcmp(o->name, FMD_STATUS) == 0)
			continue;
		fprintf(f, "open %p device %s pid %d (%s)%s", (void *)o,
		    o->name, (int)o->pid, comm_of(o->pid, comm),
		    o->nonblock ? " nonblock" : "");
		if (o->backing > 0 && fstat(o->mfd, &ms) == 0) {
			fprintf(f, " object %zu bytes resident %lld\n", o->size,
			    (long long)ms.st_blocks * 512);
			if (have_mnt)
				maps_of(f, o->pid, mnt.st_dev, o->node->id);
		} else {
			fprintf(f, " object none\n");
		}
	}
	pthread_mutex_unlock(&d.lock);
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

struct req {
	const struct fuse_in_header *h;
	const void *in; /* what follows the header */
	size_t inlen;
};

static int
reply_err(const struct req *q, int err)
{
	return fmd_fuse_reply(&d.fs, q->h->unique, err, NULL, 0);
}

static int
reply(const struct req *q, const void *p, size_t len)
{
	return fmd_fuse_reply(&d.fs, q->h->unique, 0, p, len);
}

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
		if (fo->fd < 0 ||
		    (fo->fp = fm__file_get(fo->fd, NULL, &err)) == NULL) {
			err = -errno;
			if (fo->fd >= 0)
				fm_close(fo->fd);
			free(fo);
			reply_err(q, err);
			return;
		}
		fo->dev = fo->fp->f_dev;
		open_backing(fo, fo->fp, acc != O_RDONLY);
		fm__file_rele(fo->fp);
	}
	pthread_mutex_lock(&d.lock);
	/*
	 * The kernel takes one backing an inode, and two path walks at once
	 * may share one LOOKUP's node: the second open of it is told
	 * ESTALE, and the kernel walks the path again (LOOKUP_REVAL), to a
	 * node of its own.
	 */
	if (fo->backing > 0 && n->backed) {
		pthread_mutex_unlock(&d.lock);
		fmd_fuse_backing_close(&d.fs, fo->backing);
		close(fo->mfd);
		fm_close(fo->fd);
		free(fo);
		reply_err(q, -ESTALE);
		return;
	}
	if (fo->backing > 0) {
		n->size = fo->size;
		n->backed = 1;
	}
	fo->node = n;
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
	struct fopen *fo = (struct fopen *)(uintptr_t)in->fh;

	pthread_mutex_lock(&d.lock);
	for (struct fopen **pp = &d.opens; *pp; pp = &(*pp)->next)
		if (*pp == fo) {
			*pp = fo->next;
			break;
		}
	if (fo->backing > 0)
		fo->node->backed = 0;
	pthread_mutex_unlock(&d.lock);
	fmd_fuse_backing_close(&d.fs, fo->backing);
	if (fo->mfd >= 0)
		close(fo->mfd);
	if (fo->fd >= 0)
		fm_close(fo->fd); /* the driver's close hook, if the last */
	free(fo->text);
	free(fo);
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
do_read(const struct req *q)
{
	const struct fuse_read_in *in = q->in;
	struct fopen *fo = (struct fopen *)(uintptr_t)in->fh;
	struct rw a = {.len = in->size, .off = (off_t)in->offset};
	ssize_t r;

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
	r = blocking(fo, q->h->unique, op_read, &a);
	if (r < 0)
		reply_err(q, (int)r);
	else
		reply(q, a.buf, (size_t)r);
	free(a.buf);
}

static void
do_write(const struct req *q)
{
	const struct fuse_write_in *in = q->in;
	struct fopen *fo = (struct fopen *)(uintptr_t)in->fh;
	struct rw a = {.buf = (char *)(in + 1),
	    .len = in->size,
	    .off = (off_t)in->offset};
	struct fuse_write_out out = {0};
	ssize_t r;

	if (q->inlen < sizeof(*in) + in->size || fo->fd < 0) {
		reply_err(q, fo->fd < 0 ? -EBADF : -EINVAL);
		return;
	}
	r = blocking(fo, q->h->unique, op_write, &a);
	out.size = (uint32_t)(r < 0 ? 0 : r);
	if (r < 0)
		reply_err(q, (int)r);
	else
		reply(q, &out, sizeof out);
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

static void
do_ioctl(const struct req *q)
{
	const struct fuse_ioctl_in *in = q->in;
	struct fopen *fo = (struct fopen *)(uintptr_t)in->fh;
	struct fuse_ioctl_out out = {0};
	const struct fm_ioctl_legacy *leg = NULL;
	struct ioc a = {.cmd = in->cmd};
	size_t in_size = in->in_size, out_size = in->out_size, size;
	ssize_t r = 0;
	char *buf = NULL;

	if (q->inlen < sizeof(*in) + in_size || fo->fd < 0) {
		reply_err(q, fo->fd < 0 ? -ENOTTY : -EINVAL);
		return;
	}
	if (in->flags & (FUSE_IOCTL_COMPAT | FUSE_IOCTL_DIR)) {
		reply_err(q, -ENOTTY);
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
	if (r == 0)
		r = blocking(fo, q->h->unique, op_ioctl, &a);
	if (r >= 0 && leg && leg->out > 0)
		r = caller_copy((pid_t)q->h->pid, in->arg, buf, leg->out, 1) < 0
		    ? -EFAULT
		    : r;
	if (r < 0) {
		reply_err(q, (int)r);
	} else {
		out.result = (int32_t)r;
		fmd_fuse_reply2(&d.fs, q->h->unique, &out, sizeof out, buf,
		    leg ? 0 : out_size);
	}
	free(buf);
}

static void
do_poll(const struct req *q)
{
	const struct fuse_poll_in *in = q->in;
	struct fopen *fo = (struct fopen *)(uintptr_t)in->fh;
	struct fuse_poll_out out = {0};
	struct fm_file *fp;
	int err;

	if (in->flags & FUSE_POLL_SCHEDULE_NOTIFY) {
		pthread_mutex_lock(&d.lock);
		fo->kh = in->kh;
		fo->has_kh = 1;
		pthread_mutex_unlock(&d.lock);
	}
	if (fo->fd < 0) {
		out.revents = in->events & FM_POLL_DEFAULT;
	} else if ((fp = fm__file_get(fo->fd, NULL, &err)) != NULL) {
		out.revents = (uint32_t)fm__fo_poll(fp, (int)in->events);
		fm__file_rele(fp);
	} else {
		out.revents = POLLERR;
	}
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

static void
do_interrupt(const struct req *q)
{
	const struct fuse_interrupt_in *in = q->in;
	int found = 0;

	pthread_mutex_lock(&d.lock);
	for (struct waiter *w = d.waiters; w; w = w->next)
		if (w->unique == in->unique) {
			w->interrupted = found = 1;
			pthread_cond_broadcast(&d.cv);
		}
	pthread_mutex_unlock(&d.lock);
	/* Not (yet) waiting: EAGAIN has the kernel send it again. */
	if (!found)
		reply_err(q, -EAGAIN);
}

static void
dispatch(const struct req *q)
{
	switch (q->h->opcode) {
	case FUSE_INIT: {
		struct fuse_init_out out;

		fmd_fuse_init(&d.fs, q->in, &out);
		reply(q, &out, sizeof out);
		fprintf(stderr, "fomapd: FUSE 7.%u on %s; passthrough %s\n",
		    d.fs.minor, d.fs.dir,
		    d.fs.passthrough ? "yes"
		                     : "no: no device can be mapped (ENODEV)");
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
		do_read(q);
		break;
	case FUSE_WRITE:
		do_write(q);
		break;
	case FUSE_IOCTL:
		do_ioctl(q);
		break;
	case FUSE_POLL:
		do_poll(q);
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

/* "name:mode[:user[:group]]" or "name mode user group" (a config line). */
static int
add_conf(const char *spec)
{
	char name[32] = "", user[64] = "", group[64] = "";
	unsigned mode;
	struct devconf *c;
	int k = sscanf(spec, "%31[^: ]%*[: ]%o%*[: ]%63[^: ]%*[: ]%63s", name,
	    &mode, user, group);

	if (k < 2 || mode > 07777 || (c = calloc(1, sizeof(*c))) == NULL)
		return -EINVAL;
	memcpy(c->name, name, sizeof c->name);
	c->mode = mode;
	if (user[0]) {
		struct passwd *pw = getpwnam(user);

		c->uid = pw ? pw->pw_uid : (uid_t)strtoul(user, NULL, 10);
	}
	if (group[0]) {
		struct group *gr = getgrnam(group);

		c->gid = gr ? gr->gr_gid : (gid_t)strtoul(group, NULL, 10);
	}
	c->next = d.conf;
	d.conf = c;
	return 0;
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
	pthread_mutex_lock(&d.lock);
	d.stopping = 1;
	pthread_cond_broadcast(&d.cv);
	for (struct fopen *fo = d.opens; fo; fo = fo->next)
		if (fo->fd >= 0) {
			fm_close(fo->fd);
			fo->fd = -1;
		}
	pthread_mutex_unlock(&d.lock);
	fmd_fuse_unmount(&d.fs);
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
	int c, r, sig;

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
			d.mode = (mode_t)strtoul(optarg, NULL, 8) & 07777;
			r = 0;
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
	sigemptyset(&stop);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGINT);
	pthread_sigmask(SIG_BLOCK, &stop, NULL);
	if ((r = fmd_fuse_mount(&d.fs, dir)) < 0) {
		fprintf(stderr, "fomapd: mount on %s: %s\n", dir,
		    r == -EBUSY ? "another fomapd serves it" : strerror(-r));
		return 1;
	}
	pthread_mutex_lock(&d.lock);
	spawn_worker_locked();
	pthread_mutex_unlock(&d.lock);
	fprintf(stderr, "fomapd: serving %s\n", d.fs.dir);
	sigwait(&stop, &sig);
	shutdown_all();
	fflush(NULL);
	_exit(0);
}
