/*
 * test_client.c: the engine serving another process's address space
 * (kern/client.h), as fomapd serves its clients. A forked child hands
 * this process its userfaultfd, maps the object's store where it is told
 * and touches it; its faults are real faults of its own, answered by this
 * process's engine: fills by the pager, dirty tracking, a refused write
 * (SIGBUS in the child), removal through the host's zap, and the child's
 * own munmap followed from its userfaultfd.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fomap/driver.h>
#include <fomap/fomap.h>

#include "../test.h"
#include "ipc/ipc.h"
#include "kern/client.h"
#include "kern/kern.h"
#include "testdev.h"

#define CL_PAGES 16
#define CL_LEN ((size_t)CL_PAGES * FM_PAGE_SIZE)

/* What the child is told to do next (a[0]), and what it says back. */
enum {
	CL_READ = 1,
	CL_WRITE,
	CL_WRITE_SIGBUS,
	CL_UNMAP,
	CL_FORK, /* a grandchild: reads page 7, writes 0x77 to page arg */
	CL_FORK_REFUSED, /* a grandchild whose write to page arg is refused */
	CL_REAP, /* the grandchild's exit status */
	CL_EXIT
};

static struct {
	atomic_int get, write, zap;
	_Atomic(struct fm_vmspace *) child; /* ops->forked's */
	atomic_int refuse_pg; /* pgo_write refuses this page (-1: none) */
} cl = {.refuse_pg = -1};

static int
cl_get(struct fm_object *obj, uint64_t pg, unsigned *npages)
{
	char page[FM_PAGE_SIZE];

	atomic_fetch_add(&cl.get, 1);
	for (unsigned i = 0; i < *npages; i++) {
		memset(page, (int)(pg + i + 1), sizeof page);
		if (fm_object_write(obj, (off_t)((pg + i) * FM_PAGE_SIZE), page,
		        sizeof page) < 0)
			return -EIO;
	}
	return 0;
}

static int
cl_put(struct fm_object *obj, uint64_t pg, unsigned n, int flags)
{
	return 0;
}

static int
cl_write(struct fm_object *obj, uint64_t pg)
{
	atomic_fetch_add(&cl.write, 1);
	return (int)pg == cl.refuse_pg ? -EACCES : 0;
}

static const struct fm_pagerops cl_pagerops = {
    .pgo_get = cl_get,
    .pgo_put = cl_put,
    .pgo_write = cl_write,
};

/* The child's zap, done by the child's own madvise: here, by the test. */
static int
cl_zap(void *arg, uintptr_t va, size_t len)
{
	atomic_fetch_add(&cl.zap, 1);
	return 0; /* (the test then checks what the engine asked) */
}

static void
cl_forked(void *arg, struct fm_vmspace *child)
{
	atomic_store(&cl.child, child);
}

static const struct fm_client_ops cl_ops = {.zap = cl_zap, .forked = cl_forked};

static int
cl_send(int s, uint64_t a0, uint64_t a1, int fd)
{
	struct fm_ipc_msg m = {.op = FM_IPC_MMAP, .a = {a0, a1}};

	return fm_ipc_send(s, &m, &fd, fd >= 0 ? 1 : 0);
}

static int
cl_recv(int s, uint64_t *a0, uint64_t *a1, int *fd)
{
	struct fm_ipc_msg m;
	int fds[FM_IPC_MAXFDS], r = fm_ipc_recv(s, &m, fds);

	if (r < 0)
		return r;
	*a0 = m.a[0];
	if (a1)
		*a1 = m.a[1];
	if (fd)
		*fd = fds[0];
	else if (fds[0] >= 0)
		close(fds[0]);
	return 0;
}

static sigjmp_buf child_jb;
static volatile uintptr_t child_bus;

static void
child_sigbus(int sig, siginfo_t *si, void *uc)
{
	child_bus = (uintptr_t)si->si_addr;
	siglongjmp(child_jb, 1);
}

/*
 * The child's child, which inherits its mapping: it reads page 7 (the
 * pager's 8 there) and writes 0x77 to page pg, its faults served once
 * the parent process claims it. => its pid, or 0
 */
static pid_t
grandchild(volatile char *p, uint64_t pg)
{
	pid_t pid = fork();

	if (pid == 0) {
		if (p[7 * FM_PAGE_SIZE] != 8)
			_exit(20);
		p[pg * FM_PAGE_SIZE] = 0x77;
		_exit(p[pg * FM_PAGE_SIZE] == 0x77 ? 0 : 21);
	}
	return pid < 0 ? 0 : pid;
}

static volatile uintptr_t gc_expect;

static void
gc_sigbus(int sig, siginfo_t *si, void *uc)
{
	_exit((uintptr_t)si->si_addr == gc_expect ? 0 : 31);
}

/*
 * A grandchild whose write to page pg its parent's host refuses: its
 * SIGBUS (sent by the engine, which learns its process from the fault)
 * at that address. => its pid, or 0
 */
static pid_t
grandchild_refused(volatile char *p, uint64_t pg)
{
	struct sigaction sa = {.sa_sigaction = gc_sigbus,
	    .sa_flags = SA_SIGINFO};
	pid_t pid = fork();

	if (pid == 0) {
		sigaction(SIGBUS, &sa, NULL);
		gc_expect = (uintptr_t)(p + pg * FM_PAGE_SIZE);
		p[pg * FM_PAGE_SIZE] = 0x66;
		_exit(30);
	}
	return pid < 0 ? 0 : pid;
}

/*
 * The child: plain system calls only. Its userfaultfd to the parent,
 * then the store mapped where told, then commands until CL_EXIT.
 * => its exit status: 0, or the step that went wrong
 */
static int
child_main(int s)
{
	struct sigaction sa = {.sa_sigaction = child_sigbus,
	    .sa_flags = SA_SIGINFO};
	uint64_t cmd, arg, off;
	int uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	int fd;
	volatile char *p;

	sigaction(SIGBUS, &sa, NULL);
	if (uffd < 0 || cl_send(s, 0, 0, uffd) < 0)
		return 10;
	close(uffd); /* the parent's now; the mm keeps its registrations */
	if (cl_recv(s, &off, NULL, &fd) < 0 || fd < 0)
		return 11;
	p = mmap(NULL, CL_LEN, PROT_NONE, MAP_SHARED, fd, (off_t)off);
	close(fd);
	if (p == MAP_FAILED || cl_send(s, (uintptr_t)p, 0, -1) < 0)
		return 12;
	if (cl_recv(s, &cmd, NULL, NULL) < 0 || cmd != 0)
		return 13;
	if (mprotect((void *)p, CL_LEN, PROT_READ | PROT_WRITE) < 0)
		return 14;
	for (;;) {
		uint64_t got = 0;

		if (cl_recv(s, &cmd, &arg, NULL) < 0)
			return 15;
		if (cmd == CL_EXIT)
			return 0;
		child_bus = 0;
		if (sigsetjmp(child_jb, 1) == 0) {
			volatile char *at = p + arg * FM_PAGE_SIZE;

			if (cmd == CL_READ)
				got = (unsigned char)*at;
			else if (cmd == CL_WRITE || cmd == CL_WRITE_SIGBUS)
				*at = (char)0xee;
			else if (cmd == CL_UNMAP)
				got = munmap((void *)p, CL_LEN) == 0;
			else if (cmd == CL_FORK)
				got = (uint64_t)grandchild(p, arg);
			else if (cmd == CL_FORK_REFUSED)
				got = (uint64_t)grandchild_refused(p, arg);
			else if (cmd == CL_REAP) {
				int st = 0;

				got =
				    waitpid((pid_t)arg, &st, 0) == (pid_t)arg &&
				        WIFEXITED(st)
				    ? (uint64_t)WEXITSTATUS(st)
				    : 0xdead;
			}
		} else
			got = child_bus == (uintptr_t)(p + arg * FM_PAGE_SIZE)
			    ? 0xb5
			    : 0xbad;
		if (cl_send(s, got, 0, -1) < 0)
			return 16;
	}
}

struct cl_run {
	struct fm_object *obj;
	int fd, s;
	pid_t pid;
	struct fm_vmspace *vs;
};

/* Start the child and serve its mapping of a CL_PAGES object. */
static void
cl_start(struct cl_run *r)
{
	struct fm_client_map *m;
	struct fm_file *fp;
	uint64_t v;
	off_t off;
	int sv[2], uffd, sfd, maxprot, err;

	fm_client_hosting();
	r->obj = testdev_object(&cl_pagerops, CL_LEN);
	r->fd = testdev_open("client0", r->obj, PROT_READ | PROT_WRITE, O_RDWR);
	ASSERT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	r->pid = fork();
	ASSERT(r->pid >= 0);
	if (r->pid == 0) {
		close(sv[0]);
		_exit(child_main(sv[1]));
	}
	close(sv[1]);
	r->s = sv[0];
	ASSERT_EQ(cl_recv(r->s, &v, NULL, &uffd), 0);
	ASSERT(uffd >= 0);
	ASSERT_EQ(fm_client_create(r->pid, uffd, &cl_ops, NULL, &r->vs), 0);
	fp = fm__file_get(r->fd, NULL, &err);
	ASSERT(fp != NULL);
	ASSERT_EQ(fm_client_prepare(r->vs, fp, CL_LEN, PROT_READ | PROT_WRITE,
	              MAP_SHARED, 0, &m, &sfd, &off, &maxprot),
	    0);
	fm__file_rele(fp);
	ASSERT(maxprot & PROT_WRITE);
	ASSERT_EQ(cl_send(r->s, (uint64_t)off, 0, sfd), 0);
	close(sfd);
	ASSERT_EQ(cl_recv(r->s, &v, NULL, NULL), 0);
	ASSERT_EQ(fm_client_attach(r->vs, m, (uintptr_t)v), 0);
	ASSERT_EQ(cl_send(r->s, 0, 0, -1), 0);
}

/* Tell the child to do cmd at page pg. => what it says */
static uint64_t
cl_do(struct cl_run *r, uint64_t cmd, uint64_t pg)
{
	uint64_t got = ~0ULL;

	ASSERT_EQ(cl_send(r->s, cmd, pg, -1), 0);
	ASSERT_EQ(cl_recv(r->s, &got, NULL, NULL), 0);
	return got;
}

static void
cl_end(struct cl_run *r)
{
	int st;

	ASSERT_EQ(cl_send(r->s, CL_EXIT, 0, -1), 0);
	ASSERT_EQ(waitpid(r->pid, &st, 0), r->pid);
	ASSERT(WIFEXITED(st));
	ASSERT_EQ(WEXITSTATUS(st), 0);
	fm_client_destroy(r->vs);
	close(r->s);
	ASSERT_EQ(fm_close(r->fd), 0);
	fm_object_rele(r->obj);
}

TEST_TAGGED(client_faults_are_served_by_this_engine, "thread")
{
	struct cl_run r;
	unsigned char vec[CL_PAGES], b;

	cl_start(&r);
	/* Read faults: the pager fills, the child sees its bytes. */
	for (unsigned pg = 0; pg < CL_PAGES; pg += 5)
		ASSERT_EQ(cl_do(&r, CL_READ, pg), pg + 1);
	ASSERT_GE(atomic_load(&cl.get), 1);
	/* A write: the hook allows it, the page is dirty, the object has it. */
	ASSERT_EQ(cl_do(&r, CL_WRITE, 5), 0);
	ASSERT_GE(atomic_load(&cl.write), 1);
	ASSERT_EQ(fm_object_mincore(r.obj, 0, CL_LEN, vec), 0);
	ASSERT(vec[5] & FM_PG_DIRTY);
	ASSERT(!(vec[10] & FM_PG_DIRTY));
	ASSERT_EQ(fm_object_read(r.obj, 5 * FM_PAGE_SIZE, &b, 1), 0);
	ASSERT_EQ(b, 0xee);
	/* A write the hook refuses: SIGBUS in the child, at that address. */
	cl.refuse_pg = 10;
	ASSERT_EQ(cl_do(&r, CL_WRITE_SIGBUS, 10), 0xb5);
	ASSERT_EQ(fm_object_read(r.obj, 10 * FM_PAGE_SIZE, &b, 1), 0);
	ASSERT_EQ(b, 11);
	cl.refuse_pg = -1;
	/* Written back, then protected again: the next write asks again. */
	ASSERT_EQ(fm_object_clean(r.obj, 0, CL_LEN), 0);
	int before = atomic_load(&cl.write);
	ASSERT_EQ(cl_do(&r, CL_WRITE, 5), 0);
	ASSERT_EQ(atomic_load(&cl.write), before + 1);
	cl_end(&r);
}

TEST_TAGGED(client_removal_reaches_its_mapping, "thread")
{
	struct cl_run r;

	cl_start(&r);
	ASSERT_EQ(cl_do(&r, CL_READ, 3), 4);
	/* KEEP: the host's zap is asked for the child's range. */
	ASSERT_EQ(fm_object_unmap(r.obj, 0, CL_LEN, FM_UNMAP_KEEP), 0);
	ASSERT_GE(atomic_load(&cl.zap), 1);
	/* DISCARD: the store's pages go, the child's next read refills. */
	int gets = atomic_load(&cl.get);
	ASSERT_EQ(fm_object_unmap(r.obj, 0, CL_LEN, FM_UNMAP_DISCARD), 0);
	ASSERT_EQ(cl_do(&r, CL_READ, 3), 4);
	ASSERT(atomic_load(&cl.get) > gets);
	/* The child's own munmap: the map follows, no zap reaches it. */
	ASSERT_EQ(cl_do(&r, CL_UNMAP, 0), 1);
	int zaps = atomic_load(&cl.zap);
	ASSERT_EQ(fm_object_unmap(r.obj, 0, CL_LEN, FM_UNMAP_KEEP), 0);
	ASSERT_EQ(atomic_load(&cl.zap), zaps);
	cl_end(&r);
}

TEST(client_refuses_what_it_cannot_serve)
{
	struct fm_vmspace *vs;
	int p[2];

	ASSERT_EQ(pipe(p), 0);
	/* Not a userfaultfd: refused, and the descriptor closed. */
	ASSERT_EQ(fm_client_create(getpid(), p[0], &cl_ops, NULL, &vs), -EBADF);
	ASSERT(fcntl(p[0], F_GETFD) < 0);
	close(p[1]);
	ASSERT_EQ(fm_client_create(getpid(), -1, &cl_ops, NULL, &vs), -EBADF);
}

TEST_TAGGED(client_fork_child_is_served_once_claimed, "thread")
{
	struct fm_vmspace *child;
	unsigned char vec[CL_PAGES], b;
	struct cl_run r;
	uint64_t gpid;

	cl_start(&r);
	ASSERT_EQ(cl_do(&r, CL_READ, 3), 4); /* the parent has a PTE there */
	gpid = cl_do(&r, CL_FORK, 12);
	ASSERT(gpid > 0);
	/* The FORK event was read before fork() returned: followed soon. */
	for (int i = 0; i < 2000 && atomic_load(&cl.child) == NULL; i++)
		usleep(1000);
	ASSERT((child = atomic_load(&cl.child)) != NULL);
	/* Served already: the grandchild may have ended (a zombie). */
	int claim = fm_client_claim(child, (pid_t)gpid, NULL);
	ASSERT(claim == 0 || claim == -ESRCH);
	if (claim == 0)
		ASSERT_EQ(fm_client_claim(child, (pid_t)gpid, NULL), -EBUSY);
	/* Its read of page 7 and its write of page 12 were served. */
	ASSERT_EQ(cl_do(&r, CL_REAP, gpid), 0);
	ASSERT_EQ(fm_object_read(r.obj, 12 * FM_PAGE_SIZE, &b, 1), 0);
	ASSERT_EQ(b, 0x77);
	ASSERT_EQ(fm_object_mincore(r.obj, 0, CL_LEN, vec), 0);
	ASSERT(vec[12] & FM_PG_DIRTY);
	/* Shared: the parent sees the child's write. */
	ASSERT_EQ(cl_do(&r, CL_READ, 12), 0x77);
	fm_client_destroy(child);
	/* A second child, never claimed: its refused write is its SIGBUS. */
	atomic_store(&cl.child, NULL);
	cl.refuse_pg = 9;
	gpid = cl_do(&r, CL_FORK_REFUSED, 9);
	ASSERT(gpid > 0);
	ASSERT_EQ(cl_do(&r, CL_REAP, gpid), 0);
	cl.refuse_pg = -1;
	for (int i = 0; i < 2000 && atomic_load(&cl.child) == NULL; i++)
		usleep(1000);
	ASSERT((child = atomic_load(&cl.child)) != NULL);
	fm_client_destroy(child);
	cl_end(&r);
}

/*
 * A hostile client: it clears O_NONBLOCK on the uffd it handed over (the
 * open file description is shared) and reads its own uffd in a thread of
 * its own, so that a message may be gone between the engine's wait and
 * its read. The engine's read must never wait: this process's own
 * faults are served all along.
 */
static int hostile_uffd;

static void *
hostile_steal(void *arg)
{
	struct uffd_msg m;

	for (;;)
		if (read(hostile_uffd, &m, sizeof m) == sizeof m &&
		    m.event == UFFD_EVENT_PAGEFAULT) {
			struct uffdio_range r = {.start =
			                             m.arg.pagefault.address &
			        ~4095ULL,
			    .len = 4096};

			(void)ioctl(hostile_uffd, UFFDIO_WAKE, &r);
		}
	return NULL;
}

static int
hostile_main(int s)
{
	volatile char *p;
	uint64_t off, cmd;
	pthread_t t;
	int fd;

	hostile_uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (hostile_uffd < 0 || cl_send(s, 0, 0, hostile_uffd) < 0)
		return 10;
	if (cl_recv(s, &off, NULL, &fd) < 0 || fd < 0)
		return 11;
	p = mmap(NULL, CL_LEN, PROT_NONE, MAP_SHARED, fd, (off_t)off);
	if (p == MAP_FAILED || cl_send(s, (uintptr_t)p, 0, -1) < 0)
		return 12;
	if (cl_recv(s, &cmd, NULL, NULL) < 0 ||
	    mprotect((void *)p, CL_LEN, PROT_READ | PROT_WRITE) < 0)
		return 13;
	(void)fcntl(hostile_uffd, F_SETFL, 0);
	pthread_create(&t, NULL, hostile_steal, NULL);
	for (;;) {
		for (int pg = 0; pg < CL_PAGES; pg++)
			(void)p[pg * FM_PAGE_SIZE];
		(void)madvise((void *)p, CL_LEN, MADV_DONTNEED);
	}
}

TEST_TAGGED(client_hostile_uffd_does_not_stall_the_engine, "thread")
{
	struct fm_client_map *m;
	struct fm_object *obj;
	struct fm_vmspace *vs;
	struct fm_file *fp;
	int sv[2], uffd, sfd, maxprot, err, fd, st;
	uint64_t v;
	off_t off;
	pid_t pid;

	fm_client_hosting();
	obj = testdev_object(&cl_pagerops, CL_LEN);
	fd = testdev_open("client0", obj, PROT_READ | PROT_WRITE, O_RDWR);
	ASSERT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	if ((pid = fork()) == 0) {
		close(sv[0]);
		_exit(hostile_main(sv[1]));
	}
	close(sv[1]);
	ASSERT_EQ(cl_recv(sv[0], &v, NULL, &uffd), 0);
	ASSERT_EQ(fm_client_create(pid, uffd, &cl_ops, NULL, &vs), 0);
	fp = fm__file_get(fd, NULL, &err);
	ASSERT_EQ(fm_client_prepare(vs, fp, CL_LEN, PROT_READ | PROT_WRITE,
	              MAP_SHARED, 0, &m, &sfd, &off, &maxprot),
	    0);
	fm__file_rele(fp);
	ASSERT_EQ(cl_send(sv[0], (uint64_t)off, 0, sfd), 0);
	close(sfd);
	ASSERT_EQ(cl_recv(sv[0], &v, NULL, NULL), 0);
	ASSERT_EQ(fm_client_attach(vs, m, (uintptr_t)v), 0);
	ASSERT_EQ(cl_send(sv[0], 0, 0, -1), 0);
	/* Meanwhile, this process's own faults: each served (else a hang). */
	for (int round = 0; round < 200; round++) {
		char *q = fm_mmap(NULL, CL_LEN, PROT_READ, MAP_SHARED, fd, 0);

		ASSERT(q != MAP_FAILED);
		for (int pg = 0; pg < CL_PAGES; pg++)
			ASSERT_EQ(q[pg * FM_PAGE_SIZE], pg + 1);
		ASSERT_EQ(fm_munmap(q, CL_LEN), 0);
	}
	kill(pid, SIGKILL);
	ASSERT_EQ(waitpid(pid, &st, 0), pid);
	fm_client_destroy(vs);
	close(sv[0]);
	ASSERT_EQ(fm_close(fd), 0);
	fm_object_rele(obj);
}

/*
 * A client that maps something else than the store where it says it
 * did (its own memfd): the attach is refused, and nothing of it is
 * served (were it, an install there would fail and the engine take the
 * object's page for gone, dirty data with it).
 */
static int
liar_main(int s)
{
	uint64_t off;
	int uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	int fd, own = memfd_create("liar", MFD_CLOEXEC);
	void *p;

	if (uffd < 0 || own < 0 || ftruncate(own, CL_LEN) < 0 ||
	    cl_send(s, 0, 0, uffd) < 0)
		return 10;
	if (cl_recv(s, &off, NULL, &fd) < 0 || fd < 0)
		return 11;
	p = mmap(NULL, CL_LEN, PROT_NONE, MAP_SHARED, own, 0);
	if (p == MAP_FAILED || cl_send(s, (uintptr_t)p, 0, -1) < 0)
		return 12;
	pause();
	return 0;
}

/* Start a child running fn, and take its uffd. */
static pid_t
start_child(int (*fn)(int), int *s, struct fm_vmspace **vs)
{
	int sv[2], uffd;
	uint64_t v;
	pid_t pid;

	ASSERT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	if ((pid = fork()) == 0) {
		close(sv[0]);
		_exit(fn(sv[1]));
	}
	close(sv[1]);
	*s = sv[0];
	ASSERT_EQ(cl_recv(*s, &v, NULL, &uffd), 0);
	ASSERT_EQ(fm_client_create(pid, uffd, &cl_ops, NULL, vs), 0);
	return pid;
}

TEST(client_attach_of_another_mapping_is_refused)
{
	struct fm_client_map *m;
	struct fm_object *obj;
	struct fm_vmspace *vs;
	struct fm_file *fp;
	int s, sfd, maxprot, err, fd, st;
	uint64_t v;
	off_t off;
	pid_t pid;

	fm_client_hosting();
	obj = testdev_object(&cl_pagerops, CL_LEN);
	fd = testdev_open("client0", obj, PROT_READ | PROT_WRITE, O_RDWR);
	pid = start_child(liar_main, &s, &vs);
	fp = fm__file_get(fd, NULL, &err);
	ASSERT_EQ(fm_client_prepare(vs, fp, CL_LEN, PROT_READ | PROT_WRITE,
	              MAP_SHARED, 0, &m, &sfd, &off, &maxprot),
	    0);
	fm__file_rele(fp);
	ASSERT_EQ(cl_send(s, (uint64_t)off, 0, sfd), 0);
	close(sfd);
	ASSERT_EQ(cl_recv(s, &v, NULL, NULL), 0);
	ASSERT_EQ(fm_client_attach(vs, m, (uintptr_t)v), -EINVAL);
	kill(pid, SIGKILL);
	ASSERT_EQ(waitpid(pid, &st, 0), pid);
	fm_client_destroy(vs);
	close(s);
	ASSERT_EQ(fm_close(fd), 0);
	fm_object_rele(obj);
}

/*
 * Clients dropped while their faults stream in (hostile_main's loop):
 * nothing of theirs is used after (ASan), nothing hangs, and this
 * process's own faults go on.
 */
TEST_TAGGED(client_destroyed_while_faulting, "thread")
{
	struct fm_object *obj;
	int fd;

	fm_client_hosting();
	obj = testdev_object(&cl_pagerops, CL_LEN);
	fd = testdev_open("client0", obj, PROT_READ | PROT_WRITE, O_RDWR);
	for (int round = 0; round < 20; round++) {
		struct fm_client_map *m;
		struct fm_vmspace *vs;
		struct fm_file *fp;
		int s, sfd, maxprot, err, st;
		uint64_t v;
		off_t off;
		pid_t pid = start_child(hostile_main, &s, &vs);

		fp = fm__file_get(fd, NULL, &err);
		ASSERT_EQ(fm_client_prepare(vs, fp, CL_LEN,
		              PROT_READ | PROT_WRITE, MAP_SHARED, 0, &m, &sfd,
		              &off, &maxprot),
		    0);
		fm__file_rele(fp);
		ASSERT_EQ(cl_send(s, (uint64_t)off, 0, sfd), 0);
		close(sfd);
		ASSERT_EQ(cl_recv(s, &v, NULL, NULL), 0);
		ASSERT_EQ(fm_client_attach(vs, m, (uintptr_t)v), 0);
		ASSERT_EQ(cl_send(s, 0, 0, -1), 0);
		usleep(1000 * (round % 5));
		if (round % 2)
			kill(pid, SIGKILL); /* gone first, or dropped first */
		fm_client_destroy(vs);
		kill(pid, SIGKILL);
		ASSERT_EQ(waitpid(pid, &st, 0), pid);
		close(s);
	}
	char *q = fm_mmap(NULL, CL_LEN, PROT_READ, MAP_SHARED, fd, 0);
	ASSERT(q != MAP_FAILED);
	ASSERT_EQ(q[3 * FM_PAGE_SIZE], 4);
	ASSERT_EQ(fm_munmap(q, CL_LEN), 0);
	ASSERT_EQ(fm_close(fd), 0);
	fm_object_rele(obj);
}
