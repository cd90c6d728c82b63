/*
 * client.c: other processes' address spaces (client.h), served by this
 * process's engine: a struct fm_vmspace with a pmap of the process's own
 * userfaultfd, whose operations reach the process through the host
 * (fomapd's session) where its userfaultfd cannot.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "kern/client.h"
#include "kern/kern.h"

struct client {
	struct fm_vmspace vs; /* first: a vmspace is its client */
	const struct fm_client_ops *ops;
	void *arg;
	atomic_int claimed; /* its host reaches it (ops and arg) */
	pthread_rwlock_t zlock; /* held shared by a zap through the host */
};

struct fm_client_map {
	struct fm_object *obj; /* referenced */
	off_t storeoff; /* where in obj->fd the mapping starts */
	uint64_t pgoff;
	size_t len;
	int prot, maxprot, flags;
};

static struct client *
client_of(struct fm_pmap *pm)
{
	return (struct client *)pm->vs;
}

static int
client_zap(struct fm_pmap *pm, uintptr_t va, size_t len)
{
	struct client *cl = client_of(pm);

	int r = 0;

	/*
	 * No host reaches it (a fork not claimed yet, or let go): its
	 * page-table entries stay, mapping the object's own pages; done.
	 */
	pthread_rwlock_rdlock(&cl->zlock);
	if (atomic_load(&cl->claimed))
		r = cl->ops->zap(cl->arg, va, len);
	pthread_rwlock_unlock(&cl->zlock);
	return r;
}

static const struct fm_pmap_ops client_pmap_ops = {
    .pmo_name = "client",
    .pmo_zap = client_zap,
    .pmo_task_read = fm__pmap_proc_task_read,
    .pmo_sigbus = fm__pmap_proc_sigbus,
};

/*
 * vs's process forked (fm__client_forked, from the engine): the child's
 * address space, with a copy of vs's entries, served at once; its host
 * is told (ops->forked). On failure ufd is kept open, unserved: the
 * child's faults wait, and never reach the object unserved.
 */
static void
client_forked(struct fm_vmspace *vs, int ufd, uint64_t gen)
{
	struct client *parent = (struct client *)vs, *cl;
	struct fm_pmap *pm;

	if (vs->pm->vs != vs || (cl = calloc(1, sizeof(*cl))) == NULL)
		return;
	if (fm__pmap_forked(vs->pm, ufd, &pm) < 0) {
		free(cl);
		return;
	}
	cl->ops = parent->ops;
	pthread_rwlock_init(&cl->zlock, NULL);
	fm__vmspace_init(&cl->vs, pm);
	fm__vmspace_copy(vs, &cl->vs, gen);
	/* (its process is learned from its first fault's thread) */
	(void)fm__engine_serve(pm);
	/* (the parent's host not let go meanwhile: fm_client_unclaim) */
	pthread_rwlock_rdlock(&parent->zlock);
	if (cl->ops->forked)
		cl->ops->forked(atomic_load(&parent->claimed) ? parent->arg
		                                              : NULL,
		    &cl->vs);
	pthread_rwlock_unlock(&parent->zlock);
}

void
fm_client_hosting(void)
{
	fm__client_forked = client_forked;
	atomic_store(&fm__object_ownfd, 1);
}

int
fm_client_claim(struct fm_vmspace *vs, pid_t pid, void *arg)
{
	struct client *cl = (struct client *)vs;
	int r = 0;

	pthread_rwlock_wrlock(&cl->zlock);
	if (atomic_load(&cl->claimed))
		r = -EBUSY;
	/* (0 too when its first fault named that process already) */
	else if ((r = fm__pmap_claim(vs->pm, pid)) == 0) {
		cl->arg = arg;
		atomic_store(&cl->claimed, 1);
	}
	pthread_rwlock_unlock(&cl->zlock);
	return r;
}

void
fm_client_unclaim(struct fm_vmspace *vs)
{
	struct client *cl = (struct client *)vs;

	pthread_rwlock_wrlock(&cl->zlock); /* (no zap through it now) */
	atomic_store(&cl->claimed, 0);
	cl->arg = NULL;
	pthread_rwlock_unlock(&cl->zlock);
}

/*
 * Whether process pid is in this process's pid namespace: the thread ids
 * in its faults' messages are its namespace's, which must be ours.
 */
static int
same_pid_ns(pid_t pid)
{
	char path[48];
	struct stat a, b;

	snprintf(path, sizeof path, "/proc/%d/ns/pid", (int)pid);
	return stat("/proc/self/ns/pid", &a) == 0 && stat(path, &b) == 0 &&
	    a.st_ino == b.st_ino && a.st_dev == b.st_dev;
}

int
fm_client_create(pid_t pid, int uffd, const struct fm_client_ops *ops,
    void *arg, struct fm_vmspace **vsp)
{
	struct client *cl = calloc(1, sizeof(*cl));
	struct fm_pmap *pm = NULL;
	int r = cl == NULL ? -ENOMEM : 0;

	if (r == 0 && (ops == NULL || ops->zap == NULL || pid <= 0))
		r = -EINVAL;
	if (r == 0 && !same_pid_ns(pid))
		r = -EPERM;
	if (r == 0)
		r = fm__pmap_client(pid, uffd, &client_pmap_ops, &pm);
	if (r < 0) {
		close(uffd);
		free(cl);
		return r;
	}
	cl->ops = ops;
	cl->arg = arg;
	atomic_init(&cl->claimed, 1);
	pthread_rwlock_init(&cl->zlock, NULL);
	fm__vmspace_init(&cl->vs, pm);
	if ((r = fm__engine_serve(pm)) < 0) {
		fm__pmap_client_free(pm);
		free(cl);
		return r;
	}
	*vsp = &cl->vs;
	return 0;
}

int
fm_client_name(struct fm_vmspace *vs, pid_t pid)
{
	return fm__pmap_claim(vs->pm, pid);
}

int
fm_client_mapped(struct fm_vmspace *vs)
{
	int r;

	pthread_rwlock_rdlock(&fm__map.lock);
	r = vs->n > 0;
	pthread_rwlock_unlock(&fm__map.lock);
	return r;
}

pid_t
fm_client_pid(struct fm_vmspace *vs)
{
	return __atomic_load_n(&vs->pm->pid, __ATOMIC_ACQUIRE);
}

int
fm_client_alive(struct fm_vmspace *vs)
{
	uintptr_t va = (uintptr_t)1 << 16; /* (mmap_min_addr's usual floor) */
	struct fm_entry *e;

	/* A page none of its entries covers: the probe must touch nothing. */
	pthread_rwlock_rdlock(&fm__map.lock);
	while ((e = fm__map_lookup(vs, va)) != NULL)
		va = e->end;
	pthread_rwlock_unlock(&fm__map.lock);
	return fm__pmap_alive(vs->pm, va);
}

void
fm_client_sync(void)
{
	fm__fault_events();
}

int
fm_client_uffd(struct fm_vmspace *vs)
{
	int fd = fcntl(vs->pm->uffd, F_DUPFD_CLOEXEC, 0);

	return fd < 0 ? -errno : fd;
}

void
fm_client_destroy(struct fm_vmspace *vs)
{
	struct fm_pmap *pm = vs->pm;

	fm__vmspace_clear(vs);
	fm__engine_unserve(pm);
	fm__pmap_client_free(pm);
	pthread_rwlock_destroy(&((struct client *)vs)->zlock);
	free(vs);
}

/* The descriptor a client maps m's object with: read-only unless it may
 * write the object itself. => a new descriptor, or -errno */
static int
store_fd(const struct fm_client_map *m)
{
	int wr = (m->flags & MAP_SHARED) && (m->maxprot & PROT_WRITE);
	int fd = wr ? m->obj->fd : fm__object_rofd(m->obj);

	if (fd < 0)
		return fd;
	/*
	 * No seal may be added by the client (F_SEAL_FUTURE_WRITE would make
	 * every writable mapping and fomap's own writes fail). (An object
	 * with no seals of its own, made before fm_client_hosting, has ENODEV
	 * earlier.)
	 */
	(void)fcntl(m->obj->fd, F_ADD_SEALS, F_SEAL_SEAL);
	fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	return fd < 0 ? -errno : fd;
}

int
fm_client_prepare(struct fm_vmspace *vs, struct fm_file *fp, size_t len,
    int prot, int flags, off_t off, struct fm_client_map **mp, int *storefd,
    off_t *storeoff, int *maxprot)
{
	struct fm_mmap_req req = {.off = off,
	    .len = FM_PAGES(len) << FM_PAGE_SHIFT,
	    .prot = prot,
	    .flags = flags,
	    .advice = MADV_NORMAL,
	    .maxprot = PROT_READ | PROT_WRITE | PROT_EXEC};
	struct fm_client_map *m;
	int r, type = flags & (MAP_SHARED | MAP_PRIVATE);

	if (len == 0 || (off & (off_t)FM_PAGE_MASK) || off < 0 ||
	    (type != MAP_SHARED && type != MAP_PRIVATE) ||
	    (prot & ~(PROT_READ | PROT_WRITE | PROT_EXEC)))
		return -EINVAL;
	if ((r = fm__mmap_object(fp, prot, type, &req)) < 0)
		return r;
	if (req.pages != NULL || (req.obj->flags & FM_OBJ_HOST) ||
	    !(req.obj->flags & FM_OBJ_OWNFD)) {
		/* Non-linear, the host's, or in the shared store. */
		free(req.pages);
		fm_object_rele(req.obj);
		return -ENODEV;
	}
	if ((m = malloc(sizeof(*m))) == NULL) {
		fm_object_rele(req.obj);
		return -ENOMEM;
	}
	*m = (struct fm_client_map){.obj = req.obj,
	    .pgoff = (uint64_t)req.off >> FM_PAGE_SHIFT,
	    .len = req.len,
	    .prot = prot,
	    .maxprot = req.maxprot,
	    .flags = type};
	if ((r = store_fd(m)) < 0) {
		fm_client_abandon(m);
		return r;
	}
	*storefd = r;
	*storeoff = m->storeoff = m->obj->base + req.off;
	*maxprot = m->maxprot;
	*mp = m;
	return 0;
}

/*
 * Whether the client maps m's store at [va, va+len) as prepared: one
 * mapping of the store's file there, at m's offset (/proc/<pid>/maps).
 * Looked at once the range is registered and in the map: a mapping the
 * client makes there later comes with an UNMAP event of this one.
 */
static int
client_maps_store(pid_t pid, const struct fm_client_map *m,
    const struct fm_object *obj, uintptr_t va)
{
	unsigned long lo, hi, maj, mnr, ino;
	unsigned long long off;
	char path[48], line[512];
	struct stat st;
	FILE *f;
	int ok = 0;

	if (fstat(obj->fd, &st) < 0)
		return 0;
	snprintf(path, sizeof path, "/proc/%d/maps", (int)pid);
	if ((f = fopen(path, "re")) == NULL)
		return 0;
	while (!ok && fgets(line, sizeof line, f) != NULL) {
		if (sscanf(line, "%lx-%lx %*s %llx %lx:%lx %lu", &lo, &hi, &off,
		        &maj, &mnr, &ino) != 6 ||
		    lo > va || hi <= va)
			continue;
		ok = hi - va >= m->len && ino == st.st_ino &&
		    maj == major(st.st_dev) && mnr == minor(st.st_dev) &&
		    off + (va - lo) == (unsigned long long)m->storeoff;
		break;
	}
	fclose(f);
	return ok;
}

int
fm_client_attach(struct fm_vmspace *vs, struct fm_client_map *m, uintptr_t va)
{
	struct fm_object *obj = m->obj;
	int r = -EINVAL;

	if (va != 0 && !(va & FM_PAGE_MASK) && va <= UINTPTR_MAX - m->len)
		r = fm__vmspace_enter(vs, va, m->len, obj, m->pgoff, m->prot,
		    m->maxprot, m->flags);
	if (r == 0) {
		m->obj = NULL; /* the entry's now (it holds obj meanwhile) */
		if (!client_maps_store(vs->pm->pid, m, obj, va)) {
			fm__vmspace_remove(vs, va, va + m->len);
			r = -EINVAL;
		}
	}
	fm_client_abandon(m);
	return r;
}

void
fm_client_abandon(struct fm_client_map *m)
{
	if (m->obj)
		fm_object_rele(m->obj);
	free(m);
}

/* [va, va+len) in pages, as mprotect and msync take it. */
static int
client_range(uintptr_t va, size_t len, uintptr_t *end)
{
	if ((va & FM_PAGE_MASK) || len > UINTPTR_MAX - va - FM_PAGE_MASK)
		return -EINVAL;
	*end = va + (FM_PAGES(len) << FM_PAGE_SHIFT);
	return 0;
}

struct fm_client_prot {
	uintptr_t start, end;
	int prot, slot;
};

int
fm_client_mprotect_begin(struct fm_vmspace *vs, uintptr_t va, size_t len,
    int prot, struct fm_client_prot **pp)
{
	struct fm_client_prot *p;
	uintptr_t end;
	int r = client_range(va, len, &end);

	if (r == 0 && (prot & ~(PROT_READ | PROT_WRITE | PROT_EXEC)))
		r = -EINVAL;
	if (r < 0)
		return r;
	if ((p = malloc(sizeof(*p))) == NULL)
		return -ENOMEM;
	*p = (struct fm_client_prot){.start = va, .end = end, .prot = prot};
	if (va == end) {
		p->slot = -1; /* empty: nothing held */
		*pp = p;
		return 0;
	}
	if ((r = fm__vmspace_protect_begin(vs, va, end, prot, &p->slot)) < 0) {
		free(p);
		return r;
	}
	*pp = p;
	return 0;
}

void
fm_client_mprotect_end(struct fm_vmspace *vs, struct fm_client_prot *p,
    int done)
{
	if (p->slot >= 0)
		fm__vmspace_protect_end(vs, p->start, p->end, p->prot, p->slot,
		    done);
	free(p);
}

int
fm_client_msync(struct fm_vmspace *vs, uintptr_t va, size_t len, int flags)
{
	uintptr_t end;
	int r = client_range(va, len, &end);

	if (r == 0 &&
	    ((flags & ~(MS_ASYNC | MS_SYNC | MS_INVALIDATE)) ||
	        (flags & (MS_ASYNC | MS_SYNC)) == (MS_ASYNC | MS_SYNC)))
		r = -EINVAL;
	return r < 0 ? r : fm__vmspace_msync(vs, va, end);
}

int
fm_client_madvise(struct fm_vmspace *vs, uintptr_t va, size_t len, int advice)
{
	uintptr_t end;
	int r = client_range(va, len, &end);

	return r < 0 ? r : fm__vmspace_advise(vs, va, end, advice);
}
