/*
 * test_preload.c: the preload library (libfomap-preload.so) in unmodified
 * programs, and fomapd's session socket it talks to: the xattr that names
 * it, and clients that send it garbage or descriptors that are not fomap
 * opens. A device whose opens have a passthrough backing (zero, fb0,
 * video0) is mapped plainly, as without the library; gem through fomapd's
 * engine.
 */
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <stddef.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "../test.h"
#include "daemon.h"

/*
 * The session protocol's wire format (src/ipc/proto.h, which tests may
 * not include): what a client that knows it could send.
 */
#define XATTR "user.fomap.session"
enum { HELLO = 1, UFFD_DEV, MMAP, ATTACH, MPROTECT, MSYNC, MADVISE, ZAP };
#define F_REPLY 0x1
#define F_DAEMON 0x2
struct msg {
	uint32_t op, flags;
	int32_t err;
	uint32_t nfds;
	uint64_t seq, a[6];
};
_Static_assert(sizeof(struct msg) == 72, "proto.h's struct fm_ipc_msg");
/* fomapd's own ioctl (daemon/session.h): ENOTTY to any other caller. */
#define FMD_IOC_OPEN _IOR(0xFD, 0x01, uint64_t)

/* The session sockets fomapd lists ("session pid ..."). */
static int
sessions(const struct fmd *m)
{
	char cmd[512];

	snprintf(cmd, sizeof cmd, "exit $(%s --mount %s sessions | wc -l)",
	    fmd_tool("fomapctl"), m->dir);
	return fmd_sh("%s", cmd);
}

TEST(preload_maps_zero_by_passthrough_without_the_engine)
{
	char file[] = "/tmp/fomap-preload-XXXXXX", helper[1100];
	struct fmd m;
	int fd;

	fmd_start(&m, NULL);
	snprintf(helper, sizeof helper, "%s", fmd_tool("fomap-preload-map"));
	ASSERT_EQ(fmd_sh("%s %s zero %s | grep -qx ok", fmd_preload_env(),
	              helper, fmd_path(&m, "zero", 0)),
	    0);
	/* An ordinary file: untouched, no socket, no thread. */
	ASSERT((fd = mkstemp(file)) >= 0);
	ASSERT_EQ(write(fd, "fomap", 5), 5);
	ASSERT_OK(ftruncate(fd, PG));
	close(fd);
	ASSERT_EQ(fmd_sh("%s %s file %s | grep -qx ok", fmd_preload_env(),
	              helper, file),
	    0);
	ASSERT_EQ(fmd_sh("cmp -n 5 %s - <<'EOF'\nfomap\nEOF", file), 0);
	unlink(file);
	/* python3, as test_daemon.c runs it, with the library in it. */
	if (fmd_sh("command -v python3 >/dev/null") == 0)
		ASSERT_EQ(fmd_sh("%s python3 -c 'import mmap, os\n"
		                 "fd = os.open(\"%s\", os.O_RDWR)\n"
		                 "a = mmap.mmap(fd, 1 << 20)\n"
		                 "b = mmap.mmap(fd, 1 << 20)\n"
		                 "a[0:2] = b\"hi\"\n"
		                 "assert b[0:2] == b\"hi\"\n'",
		              fmd_preload_env(), fmd_path(&m, "zero", 0)),
		    0);
	/* A session given up (no engine) is not kept by either side. */
	for (int i = 0; i < 200 && sessions(&m) != 0; i++)
		usleep(10000);
	if (sessions(&m) != 0)
		(void)fmd_sh("%s --mount %s sessions >&2", fmd_tool("fomapctl"),
		    m.dir);
	ASSERT_EQ(sessions(&m), 0);
	ASSERT_EQ(fmd_stop(&m), 0);
}

TEST(preload_xattr_names_the_session_on_device_files_only)
{
	char name[128], small[4];
	struct fmd m;
	ssize_t n;

	fmd_start(&m, NULL);
	n = getxattr(fmd_path(&m, "zero", 0), XATTR, NULL, 0); /* its size */
	ASSERT_GE(n, 8);
	ASSERT_LE(n, 99);
	ASSERT_EQ(getxattr(fmd_path(&m, "zero", 0), XATTR, name, sizeof name),
	    n);
	name[n] = 0;
	ASSERT_EQ(strncmp(name, "fomapd.", 7), 0);
	ASSERT_EQ(getxattr(fmd_path(&m, "gem", 0), XATTR, name + 64,
	              sizeof name - 64),
	    n);
	ASSERT_EQ(memcmp(name, name + 64, (size_t)n), 0);
	ASSERT_ERRNO(getxattr(fmd_path(&m, "zero", 0), XATTR, small,
	                 sizeof small),
	    ERANGE);
	ASSERT_ERRNO(getxattr(fmd_path(&m, "zero", 0), "user.other", name,
	                 sizeof name),
	    ENODATA);
	ASSERT_ERRNO(getxattr(fmd_path(&m, ".status", 0), XATTR, name,
	                 sizeof name),
	    ENODATA);
	ASSERT_ERRNO(getxattr(m.dir, XATTR, name, sizeof name), ENODATA);
	ASSERT_EQ(listxattr(fmd_path(&m, "zero", 0), name, sizeof name),
	    (ssize_t)sizeof XATTR);
	ASSERT_EQ(strcmp(name, XATTR), 0);
	ASSERT_EQ(listxattr(fmd_path(&m, ".status", 0), name, sizeof name), 0);
	ASSERT_EQ(fmd_stop(&m), 0);
}

/* Connect to the session socket of m's fomapd, as the library does. */
static int
session_connect(const struct fmd *m)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	char name[100];
	ssize_t n;
	int s;

	n = getxattr(fmd_path(m, "zero", 0), XATTR, name, sizeof name - 1);
	ASSERT_GE(n, 1);
	memcpy(sa.sun_path + 1, name, (size_t)n);
	ASSERT((s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0)) >= 0);
	ASSERT_OK(connect(s, (struct sockaddr *)&sa,
	    (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n)));
	return s;
}

/* Send len bytes of m with descriptor fd (if >= 0). */
static void
send_raw(int s, const void *m, size_t len, int fd)
{
	char ctl[CMSG_SPACE(sizeof(int))] = {0};
	struct iovec v = {(void *)m, len};
	struct msghdr mh = {.msg_iov = &v, .msg_iovlen = 1};

	if (fd >= 0) {
		struct cmsghdr *c;

		mh.msg_control = ctl;
		mh.msg_controllen = sizeof ctl;
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof fd);
	}
	ASSERT_EQ(sendmsg(s, &mh, MSG_NOSIGNAL), (ssize_t)len);
}

/* The reply to the last request: its err; *rfd its descriptor. */
static int
recv_reply(int s, struct msg *r, int *rfd)
{
	char ctl[CMSG_SPACE(2 * sizeof(int))];
	struct iovec v = {r, sizeof(*r)};
	struct msghdr mh = {.msg_iov = &v,
	    .msg_iovlen = 1,
	    .msg_control = ctl,
	    .msg_controllen = sizeof ctl};
	struct cmsghdr *c;

	*rfd = -1;
	ASSERT_EQ(recvmsg(s, &mh, MSG_CMSG_CLOEXEC), (ssize_t)sizeof(*r));
	ASSERT(r->flags & F_REPLY);
	if ((c = CMSG_FIRSTHDR(&mh)) != NULL && c->cmsg_type == SCM_RIGHTS)
		memcpy(rfd, CMSG_DATA(c), sizeof(int));
	return r->err;
}

/* Request op (a[0..3], descriptor fd): => the reply's err. */
static int
ask(int s, uint32_t op, uint32_t flags, int fd, uint64_t a0, uint64_t a1,
    uint64_t a2, uint64_t a3)
{
	static uint64_t seq;
	struct msg m = {.op = op,
	    .flags = flags,
	    .nfds = fd >= 0,
	    .seq = ++seq,
	    .a = {a0, a1, a2, a3}};
	struct msg r;
	int rfd, err;

	send_raw(s, &m, sizeof m, fd);
	err = recv_reply(s, &r, &rfd);
	ASSERT_EQ(r.seq, m.seq);
	ASSERT_EQ(r.op, op);
	if (rfd >= 0)
		close(rfd);
	return err;
}

/*
 * A client naming opens it does not hold, or none, or sending garbage:
 * an error each, fomapd serving on; its own ioctl is nobody else's.
 */
TEST(preload_session_refuses_garbage_and_foreign_descriptors)
{
	char file[] = "/tmp/fomap-preload-XXXXXX";
	struct msg r, m = {.op = MMAP};
	int s, zero, status, other, p[2], rfd;
	uint64_t id;
	struct fmd m_;

	fmd_start(&m_, NULL);
	s = session_connect(&m_);
	ASSERT((zero = open(fmd_path(&m_, "zero", 0), O_RDWR)) >= 0);
	ASSERT((status = open(fmd_path(&m_, ".status", 0), O_RDONLY)) >= 0);
	ASSERT((other = mkstemp(file)) >= 0);
	unlink(file);
	ASSERT_OK(pipe(p));

	/* fomapd's own number: not for clients. */
	ASSERT_ERRNO(ioctl(zero, FMD_IOC_OPEN, &id), ENOTTY);

	/* Descriptors that are no fomap open of this mount. */
	ASSERT_EQ(ask(s, MMAP, 0, -1, PG, PROT_READ, MAP_SHARED, 0), -EBADF);
	ASSERT_EQ(ask(s, MMAP, 0, other, PG, PROT_READ, MAP_SHARED, 0), -EBADF);
	ASSERT_EQ(ask(s, MMAP, 0, p[0], PG, PROT_READ, MAP_SHARED, 0), -EBADF);
	ASSERT_EQ(ask(s, MMAP, 0, status, PG, PROT_READ, MAP_SHARED, 0),
	    -EBADF);
	ASSERT_EQ(ask(s, UFFD_DEV, 0, -1, 0, 0, 0, 0), -EBADF);
	ASSERT_EQ(ask(s, UFFD_DEV, 0, other, 0, 0, 0, 0), -EBADF);
	/* A fomap open: named, but there is no session before HELLO. */
	ASSERT_EQ(ask(s, MMAP, 0, zero, PG, PROT_READ, MAP_SHARED, 0), -EPROTO);
	ASSERT_EQ(ask(s, MPROTECT, 0, -1, 4096, PG, PROT_READ, 0), -EPROTO);
	ASSERT_EQ(ask(s, ATTACH, 0, -1, 12345, 4096, 0, 0), -EINVAL);
	/* HELLO: another version, no userfaultfd, not a userfaultfd. */
	ASSERT_EQ(ask(s, HELLO, 0, -1, 99, 0, 0, 0), -EPROTO);
	ASSERT_EQ(ask(s, HELLO, 0, -1, 1, 0, 0, 0), -EBADF);
	ASSERT(ask(s, HELLO, 0, p[1], 1, 0, 0, 0) < 0);
	/* Unknown requests; a client posing as fomapd; a stray reply. */
	ASSERT_EQ(ask(s, 0, 0, -1, 0, 0, 0, 0), -ENOSYS);
	ASSERT_EQ(ask(s, 9999, 0, -1, 0, 0, 0, 0), -ENOSYS);
	ASSERT_EQ(ask(s, ZAP, F_DAEMON, -1, 0, 0, 0, 0), -EINVAL);
	m.flags = F_REPLY;
	send_raw(s, &m, sizeof m, -1); /* (no answer to a reply) */
	/* Messages of another size: EBADMSG, descriptors dropped. */
	send_raw(s, "x", 1, zero);
	ASSERT_EQ(recv_reply(s, &r, &rfd), -EBADMSG);
	ASSERT_EQ(rfd, -1);
	for (int i = 0; i < 1000; i++) {
		char junk[200];

		memset(junk, i, sizeof junk);
		send_raw(s, junk, (size_t)(i % 2 ? 72 : 1 + i % 199),
		    i % 3 ? -1 : zero);
		(void)recv_reply(s, &r, &rfd);
		if (rfd >= 0)
			close(rfd);
	}
	/* A client that has gone before its reply. */
	send_raw(s, &(struct msg){.op = MMAP, .nfds = 1}, sizeof(struct msg),
	    zero);
	close(s);

	/* fomapd serves on, and keeps no session of the gone. */
	ASSERT_EQ(fmd_sh("cmp -n 4096 %s /dev/zero", fmd_path(&m_, "zero", 1)),
	    0);
	for (int i = 0; i < 200 && sessions(&m_) != 0; i++)
		usleep(10000);
	ASSERT_EQ(sessions(&m_), 0);
	close(zero);
	close(status);
	close(other);
	close(p[0]);
	close(p[1]);
	ASSERT_EQ(fmd_stop(&m_), 0);
}

/* m's fomapd takes a HELLO of ours, with a userfaultfd of ours. */
static void
engine_serves(const struct fmd *m)
{
	int s = session_connect(m), u, err;

	u = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	ASSERT(u >= 0);
	err = ask(s, HELLO, 0, u, 1, 0, 0, 0);
	close(u);
	close(s);
	ASSERT_EQ(err, 0);
}

/*
 * gem through the preload: an unmodified program's mappings served by
 * fomapd's engine (gem's pager), as test_gem.c has them embedded.
 */
/*
 * Start a fomapd whose engine serves this process's peers, run the
 * preloaded helper program in each mode (under prefix, e.g. another
 * user), each exiting 0, then (settle) wait until fomapd holds no
 * session of theirs, and stop it.
 */
static void
run_modes(const char *prefix, const char *const *modes, size_t n, int settle)
{
	char helper[1100];
	struct fmd m;

	fmd_start(&m, NULL);
	engine_serves(&m);
	snprintf(helper, sizeof helper, "%s", fmd_tool("fomap-preload-map"));
	for (size_t i = 0; i < n; i++)
		if (fmd_sh("%s env %s %s %s %s", prefix, fmd_preload_env(),
		        helper, modes[i], fmd_path(&m, "gem", 0)) != 0)
			fm_test_fail(__FILE__, __LINE__, "%s failed", modes[i]);
	for (int i = 0; settle && i < 200 && sessions(&m) != 0; i++)
		usleep(10000);
	if (settle && sessions(&m) != 0)
		(void)fmd_sh("%s --mount %s sessions >&2", fmd_tool("fomapctl"),
		    m.dir);
	ASSERT(!settle || sessions(&m) == 0);
	ASSERT_EQ(fmd_stop(&m), 0);
}

#define RUN_MODES(settle, ...)                                                 \
	do {                                                                   \
		static const char *const modes_[] = {__VA_ARGS__};             \
		run_modes("", modes_, sizeof modes_ / sizeof *modes_, settle); \
	} while (0)

/*
 * fork through the preload: the child's inherited mappings are served
 * (shared coherent, private copy-on-write), its own later ones too, and
 * nothing of either process is left in fomapd after they exit.
 */
TEST(preload_fork_child_inherits_served_mappings)
{
	RUN_MODES(1, "fork");
}

/*
 * A program that closes the library's session itself (every descriptor
 * it did not open) keeps its mappings served: refilled after an
 * eviction, its writes kept; and it is let go when it exits.
 */
TEST(preload_program_closing_its_session_stays_served)
{
	RUN_MODES(1, "closefds");
}

/* A fomap mapping moved by mremap is served where it went. */
TEST(preload_mremap_moves_a_served_mapping)
{
	RUN_MODES(0, "mremap");
}

/*
 * Forks fomapd cannot tell apart by a process's word (review): a sibling
 * never takes another fork's address space; a fork the library did not
 * see leaves the library's next fork named at once; fomapd's look at a
 * fork no session claimed changes none of its pages' protection; a fork
 * with no fomap mapping left returns at once.
 */
TEST(preload_forks_are_named_never_guessed)
{
	RUN_MODES(0, "steal", "twofork", "wpkeep", "forkafter");
}

/*
 * A process that may make no userfaultfd of its own (not root,
 * vm.unprivileged_userfaultfd 0, /dev/userfaultfd root's only) gets one
 * through a /dev/userfaultfd descriptor from fomapd (FM_IPC_UFFD_DEV),
 * for an open it holds: gem served through the engine, fork included.
 */
TEST(preload_unprivileged_process_gets_a_full_userfaultfd)
{
	static const char *const modes[] = {"gem", "fork"};
	static const char nobody[] =
	    "setpriv --reuid=65534 --regid=65534 --clear-groups";

	if (access("/usr/bin/setpriv", X_OK) != 0)
		fm_test_skip("setpriv (util-linux) is not installed");
	if (fmd_sh("%s test -x %s", nobody, fmd_tool("fomap-preload-map")) != 0)
		fm_test_skip("the build is not readable by nobody");
	run_modes(nobody, modes, 2, 1);
}

/*
 * exec drops the mappings and keeps the opens: the new image maps the
 * buffer through the open it inherited; nothing of the old image's
 * address space is left in fomapd.
 */
TEST(preload_exec_keeps_the_opens_drops_the_mappings)
{
	RUN_MODES(1, "exec");
}

/*
 * gem through the preload: an unmodified program's mappings served by
 * fomapd's engine (gem's pager), as test_gem.c has them embedded.
 */
TEST(preload_maps_gem_through_the_engine)
{
	RUN_MODES(0, "gem");
}
