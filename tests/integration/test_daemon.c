/*
 * test_daemon.c: fomapd serving fomap's devices as files to programs that
 * know nothing of fomap: coreutils, python3, a static binary; permissions,
 * shutdown, the daemon's death and its clients' (tests/integration/).
 */
#include <fcntl.h>
#include <grp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <fomap/gem.h>

#include "../test.h"
#include "daemon.h"
#include "plugin_hello.h"

TEST(daemon_serves_devices_as_regular_files)
{
	struct fmd m;
	struct stat st;

	fmd_start(&m, "--dev", "null:0640:root:4242", NULL);
	ASSERT_OK(stat(fmd_path(&m, "null", 0), &st));
	ASSERT(S_ISREG(st.st_mode));
	ASSERT_EQ(st.st_mode & 07777, 0640);
	ASSERT_EQ(st.st_gid, 4242);
	ASSERT_OK(stat(fmd_path(&m, "zero", 0), &st));
	ASSERT_EQ(st.st_mode & 07777, 0666); /* the default */
	ASSERT_ERRNO(stat(fmd_path(&m, "nosuch", 0), &st), ENOENT);
	ASSERT_EQ(fmd_sh("ls %s | grep -qx gem", m.dir), 0);
	ASSERT_EQ(fmd_sh("%s --mount %s devices | grep -q '^device null "
	                 "mode 0640 uid 0 gid 4242$'",
	              fmd_tool("fomapctl"), m.dir),
	    0);
	/* A device file is fomapd's: not made, removed or changed. */
	ASSERT_ERRNO(open(fmd_path(&m, "new", 0), O_CREAT | O_RDWR, 0600),
	    EPERM);
	ASSERT_ERRNO(unlink(fmd_path(&m, "null", 0)), EPERM);
	ASSERT_ERRNO(chmod(fmd_path(&m, "null", 0), 0666), EPERM);
	ASSERT_EQ(fmd_stop(&m), 0);
}

/* In a child as uid and gid 65534, in group grp (or none): open's errno. */
static int
open_as_nobody(const char *path, gid_t grp)
{
	pid_t pid = fork();
	int st;

	ASSERT(pid >= 0);
	if (pid == 0) {
		int fd;

		if (setgroups(grp ? 1 : 0, &grp) < 0 || setgid(65534) < 0 ||
		    setuid(65534) < 0)
			_exit(100);
		fd = open(path, O_RDONLY);
		_exit(fd >= 0 ? 0 : errno);
	}
	ASSERT_EQ(waitpid(pid, &st, 0), pid);
	ASSERT(WIFEXITED(st));
	return WEXITSTATUS(st);
}

/* A second fomapd on a directory a live one serves: refused, no harm. */
TEST(daemon_a_second_one_on_a_served_directory_is_refused)
{
	struct fmd m;

	fmd_start(&m, NULL);
	ASSERT_EQ(fmd_sh("%s --mount %s 2>&1 | grep -q 'another fomapd serves'",
	              fmd_tool("fomapd"), m.dir),
	    0);
	ASSERT_EQ(fmd_sh("cmp -n 4096 %s /dev/zero", fmd_path(&m, "zero", 0)),
	    0);
	ASSERT_EQ(fmd_stop(&m), 0);
}

/*
 * An ioctl on the mount's directory (lsattr -d does one) gets ENOTTY and
 * leaves fomapd serving; its status file is root's alone.
 */
TEST(daemon_directory_ioctl_and_status_file)
{
	struct fmd m;
	int fd, v;

	fmd_start(&m, NULL);
	ASSERT((fd = open(m.dir, O_RDONLY | O_DIRECTORY)) >= 0);
	ASSERT_ERRNO(ioctl(fd, TCGETS, &v), ENOTTY);
	ASSERT_ERRNO(ioctl(fd, _IOR('f', 1, long), &v), ENOTTY);
	ASSERT_OK(close(fd));
	ASSERT_EQ(fmd_sh("cmp -n 4096 %s /dev/zero", fmd_path(&m, "zero", 0)),
	    0);
	ASSERT_EQ(open_as_nobody(fmd_path(&m, ".status", 0), 0), EACCES);
	ASSERT_EQ(fmd_stop(&m), 0);
}

TEST(daemon_permissions_are_the_kernels)
{
	struct fmd m;

	fmd_start(&m, "--dev", "null:0640:root:4242", NULL);
	ASSERT_EQ(open_as_nobody(fmd_path(&m, "null", 0), 0), EACCES);
	ASSERT_EQ(open_as_nobody(fmd_path(&m, "null", 0), 4242), 0);
	ASSERT_EQ(open_as_nobody(fmd_path(&m, "zero", 0), 0), 0);
	ASSERT_EQ(fmd_stop(&m), 0);
}

TEST(daemon_dd_cat_cmp_read_and_write_devices)
{
	struct fmd m;

	fmd_start(&m, NULL);
	ASSERT_EQ(fmd_sh("dd if=/dev/urandom of=%s bs=64k count=4 status=none",
	              fmd_path(&m, "null", 0)),
	    0);
	ASSERT_EQ(fmd_sh("test \"$(cat %s | wc -c)\" = 0",
	              fmd_path(&m, "null", 0)),
	    0);
	ASSERT_EQ(fmd_sh("cmp -n 1048576 %s /dev/zero",
	              fmd_path(&m, "zero", 0)),
	    0);
	ASSERT_EQ(fmd_sh("head -c 300000 /dev/urandom | dd of=%s bs=4096 "
	                 "status=none",
	              fmd_path(&m, "zero", 0)),
	    0);
	ASSERT_EQ(fmd_stop(&m), 0);
}

TEST(daemon_python_maps_zero_and_ioctls_gem)
{
	struct fmd m;

	fmd_need("python3");
	fmd_start(&m, NULL);
	ASSERT_EQ(
	    fmd_sh("python3 - %s %s %lu <<'EOF'\n"
	           "import errno, fcntl, mmap, os, struct, sys\n"
	           "zero, gem, create = sys.argv[1], sys.argv[2], "
	           "int(sys.argv[3])\n"
	           "fd = os.open(zero, os.O_RDWR)\n"
	           "a = mmap.mmap(fd, 1 << 20)\n"
	           "b = mmap.mmap(fd, 1 << 20)\n"
	           "a[4096:4101] = b'hello'\n"
	           "assert b[4096:4101] == b'hello', b[4096:4101]\n"
	           "assert b[0:8] == bytes(8)\n"
	           "assert not os.isatty(fd)\n"
	           "g = os.open(gem, os.O_RDWR)\n"
	           "arg = struct.pack('QII', 10000, 0, 0)\n"
	           "size, handle, pad = struct.unpack('QII', "
	           "fcntl.ioctl(g, create, arg))\n"
	           "assert size == 12288 and handle != 0, (size, handle)\n"
	           "print('ok')\n"
	           "EOF",
	        fmd_path(&m, "zero", 0), fmd_path(&m, "gem", 1),
	        (unsigned long)FM_GEM_CREATE),
	    0);
	ASSERT_EQ(fmd_stop(&m), 0);
}

TEST(daemon_static_binary_maps_zero)
{
	struct fmd m;

	fmd_start(&m, NULL);
	ASSERT_EQ(fmd_sh("%s %s | grep -qx ok", fmd_tool("fomap-static-map"),
	              fmd_path(&m, "zero", 0)),
	    0);
	ASSERT_EQ(fmd_stop(&m), 0);
}

/*
 * A device whose mappings need the fault engine (gem's pager) is never
 * mapped by a program fomapd cannot serve faults for: ENODEV, not silent
 * zeros, shared or private.
 */
TEST(daemon_refuses_to_map_what_needs_the_engine)
{
	struct fm_gem_create c = {.size = PG};
	struct fmd m;
	int fd;

	fmd_start(&m, NULL);
	ASSERT((fd = open(fmd_path(&m, "gem", 0), O_RDWR)) >= 0);
	ASSERT_OK(ioctl(fd, FM_GEM_CREATE, &c));
	ASSERT_NE(c.handle, 0);
	ASSERT(mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) ==
	    MAP_FAILED);
	ASSERT_EQ(errno, ENODEV);
	/* Private: the file has no size, so no page can be read. */
	char *p = mmap(NULL, PG, PROT_READ, MAP_PRIVATE, fd, 0);
	if (p != MAP_FAILED) {
		ASSERT_EQ(fm_test_probe(p, 0), SIGBUS);
		ASSERT_OK(munmap(p, PG));
	}
	ASSERT_OK(close(fd));
	ASSERT_EQ(fmd_stop(&m), 0);
}

/*
 * A passthrough mapping is the open's own object and nothing else: its
 * memfd is no other object's, and past its end is SIGBUS.
 */
TEST(daemon_maps_an_open_only_its_own_object)
{
	struct fmd m;
	struct stat st;
	char *a, *b;
	int fa, fb;

	fmd_start(&m, NULL);
	ASSERT((fa = open(fmd_path(&m, "zero", 0), O_RDWR)) >= 0);
	ASSERT((fb = open(fmd_path(&m, "zero", 1), O_RDWR)) >= 0);
	ASSERT_OK(fstat(fa, &st));
	ASSERT_GE(st.st_size, PG);
	a = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, fa, 0);
	b = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, fb, 0);
	ASSERT(a != MAP_FAILED && b != MAP_FAILED);
	a[0] = 'a';
	ASSERT_EQ(b[0], 0); /* two opens, two objects */
	/* fomapctl sees the open, its object and where it is mapped */
	ASSERT_EQ(
	    fmd_sh("%s --mount %s opens | grep -q '^map pid %d %lx-%lx rw-s "
	           "offset 0$'",
	        fmd_tool("fomapctl"), m.dir, (int)getpid(), (unsigned long)a,
	        (unsigned long)a + PG),
	    0);
	munmap(b, PG);
	b = mmap(NULL, PG, PROT_READ, MAP_SHARED, fa, st.st_size);
	ASSERT(b != MAP_FAILED);
	ASSERT_EQ(fm_test_probe(b, 0), SIGBUS);
	munmap(a, PG);
	munmap(b, PG);
	close(fa);
	close(fb);
	ASSERT_EQ(fmd_stop(&m), 0);
}

TEST(daemon_ioctl_numbers_a_driver_lacks_get_enotty)
{
	struct fmd m;
	struct termios t;
	int fd;

	fmd_start(&m, NULL);
	ASSERT((fd = open(fmd_path(&m, "zero", 0), O_RDWR)) >= 0);
	ASSERT_ERRNO(ioctl(fd, TCGETS, &t), ENOTTY);
	ASSERT_ERRNO(ioctl(fd, 0x4600, &t), ENOTTY); /* legacy, not zero's */
	ASSERT_ERRNO(ioctl(fd, _IOR('z', 1, int), &fd), ENOTTY);
	ASSERT_OK(close(fd));
	ASSERT_EQ(fmd_stop(&m), 0);
}

TEST(daemon_sigterm_closes_every_open_and_unmounts)
{
	struct fmd m;
	char c;
	int fd;

	fmd_start(&m, NULL);
	ASSERT((fd = open(fmd_path(&m, "zero", 0), O_RDONLY)) >= 0);
	ASSERT_EQ(fmd_opens(&m), 1);
	kill(m.pid, SIGTERM);
	int st;
	ASSERT_EQ(waitpid(m.pid, &st, 0), m.pid);
	m.pid = 0;
	ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	ASSERT_NE(fmd_sh("grep -q ' %s ' /proc/mounts", m.dir), 0);
	ASSERT_ERRNO(read(fd, &c, 1), ENOTCONN);
	ASSERT_ERRNO(close(fd), ENOTCONN); /* its FLUSH; closed all the same */
	fmd_stop(&m);
}

TEST(daemon_killed_its_clients_get_enotconn_and_a_new_one_recovers)
{
	struct fmd m;
	char *p, c;
	int fd;

	fmd_start(&m, NULL);
	ASSERT((fd = open(fmd_path(&m, "zero", 0), O_RDWR)) >= 0);
	p = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT(p != MAP_FAILED);
	p[PG] = 'x';
	kill(m.pid, SIGKILL);
	ASSERT_EQ(waitpid(m.pid, NULL, 0), m.pid);
	m.pid = 0;
	ASSERT_ERRNO(read(fd, &c, 1), ENOTCONN);
	ASSERT_ERRNO(ioctl(fd, TCGETS, &c), ENOTCONN);
	ASSERT_ERRNO(open(fmd_path(&m, "zero", 0), O_RDONLY), ENOTCONN);
	/* A passthrough mapping is the object's memory: it stays. */
	ASSERT_EQ(p[PG], 'x');
	p[0] = 'y';
	ASSERT_EQ(p[0], 'y');
	ASSERT_OK(munmap(p, 2 * PG));
	ASSERT_ERRNO(close(fd), ENOTCONN); /* its FLUSH; closed all the same */

	/* A new fomapd on the stale mount takes it over. */
	struct fmd again = m;
	ASSERT((again.pid = fork()) >= 0);
	if (again.pid == 0) {
		execl(fmd_tool("fomapd"), "fomapd", "--mount", m.dir, NULL);
		_exit(127);
	}
	for (int i = 0; i < 500 && fmd_sh("test -e %s/.status", m.dir); i++)
		usleep(10000);
	ASSERT_EQ(fmd_sh("cmp -n 4096 %s /dev/zero", fmd_path(&m, "zero", 0)),
	    0);
	ASSERT_EQ(fmd_stop(&again), 0);
}

#define KILLED 1000

TEST_TAGGED(daemon_opens_of_killed_processes_leave_nothing, "thread")
{
	static pid_t pids[KILLED];
	struct fmd m;
	int ready[2], fds0 = 0, fds1 = 0;
	char c;

	fmd_start(&m, NULL);
	fds0 = fmd_sh("exit $(ls /proc/%d/fd | wc -l)", (int)m.pid);
	ASSERT_OK(pipe(ready));
	for (int i = 0; i < KILLED; i++) {
		ASSERT((pids[i] = fork()) >= 0);
		if (pids[i] == 0) {
			int fd = open(fmd_path(&m, i % 2 ? "zero" : "null", 0),
			    O_RDWR);
			char *p = i % 2 ? mmap(NULL, PG, PROT_READ | PROT_WRITE,
			                      MAP_SHARED, fd, 0)
			                : NULL;

			char e = fd < 0 || p == MAP_FAILED ? (char)errno : 0;

			if (e == 0 && p)
				*p = 1;
			(void)!write(ready[1], &e, 1);
			pause();
			_exit(0);
		}
	}
	for (int i = 0; i < KILLED; i++) {
		ASSERT_EQ(read(ready[0], &c, 1), 1);
		ASSERT_EQ(c, 0); /* the child's errno */
	}
	ASSERT_EQ(fmd_opens(&m), KILLED);
	for (int i = 0; i < KILLED; i++)
		kill(pids[i], SIGKILL);
	for (int i = 0; i < KILLED; i++)
		ASSERT_EQ(waitpid(pids[i], NULL, 0), pids[i]);
	for (int i = 0; i < 500 && fmd_opens(&m) != 0; i++)
		usleep(10000);
	ASSERT_EQ(fmd_opens(&m), 0);
	fds1 = fmd_sh("exit $(ls /proc/%d/fd | wc -l)", (int)m.pid);
	ASSERT_EQ(fds1, fds0);
	close(ready[0]);
	close(ready[1]);
	ASSERT_EQ(fmd_stop(&m), 0);
}

/* The plug-in's source, built into this program: embedded, unchanged. */
TEST(plugin_driver_embedded)
{
	char buf[64] = {0};
	int fd;

	ASSERT_EQ(fomap_driver_init(), 0);
	ASSERT((fd = fm_open(FM_DEVPREFIX "hello", O_RDONLY)) >= 0);
	ASSERT_EQ(fm_read(fd, buf, sizeof buf), (ssize_t)strlen(HELLO_TEXT));
	ASSERT_EQ(strcmp(buf, HELLO_TEXT), 0);
	ASSERT_OK(fm_close(fd));
}

/* ... and loaded by fomapd, served to cat. */
TEST(daemon_serves_a_plugin_driver)
{
	char so[4200];
	struct fmd m;

	/* (fmd_tool's buffer is fmd_start's too) */
	snprintf(so, sizeof so, "%s", fmd_tool("fomap-plugin-hello.so"));
	fmd_start(&m, "--plugin", so, NULL);
	ASSERT_EQ(fmd_sh("test \"$(cat %s)\" = \"$(printf '%%s' '" HELLO_TEXT
	                 "')\"",
	              fmd_path(&m, "hello", 0)),
	    0);
	ASSERT_EQ(fmd_stop(&m), 0);
	/* A plug-in that is not one: fomapd says so and does not start. */
	ASSERT_NE(fmd_sh("%s --plugin /nonexistent.so --mount /nonexistent "
	                 "2>/dev/null",
	              fmd_tool("fomapd")),
	    0);
}

static void
send_fd(int s, int fd)
{
	char c = 0, ctl[CMSG_SPACE(sizeof(int))] = {0};
	struct iovec v = {&c, 1};
	struct msghdr mh = {.msg_iov = &v,
	    .msg_iovlen = 1,
	    .msg_control = ctl,
	    .msg_controllen = sizeof ctl};
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);

	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof fd);
	ASSERT_EQ(sendmsg(s, &mh, 0), 1);
}

static int
recv_fd(int s)
{
	char c, ctl[CMSG_SPACE(sizeof(int))];
	struct iovec v = {&c, 1};
	struct msghdr mh = {.msg_iov = &v,
	    .msg_iovlen = 1,
	    .msg_control = ctl,
	    .msg_controllen = sizeof ctl};
	struct cmsghdr *cm;
	int fd = -1;

	if (recvmsg(s, &mh, 0) == 1 && (cm = CMSG_FIRSTHDR(&mh)) != NULL &&
	    cm->cmsg_type == SCM_RIGHTS)
		memcpy(&fd, CMSG_DATA(cm), sizeof fd);
	return fd;
}

/*
 * The driver's close hook runs when the last reference to the open goes,
 * across dup, fork, exec and SCM_RIGHTS: fomapctl counts the open until
 * then.
 */
TEST_TAGGED(daemon_an_open_lasts_until_its_last_reference, "thread")
{
	struct fmd m;
	int fd, dupfd, go[2];
	pid_t pid;

	fmd_start(&m, NULL);
	ASSERT((fd = open(fmd_path(&m, "video0", 0), O_RDWR)) >= 0);
	ASSERT((dupfd = dup(fd)) >= 0);
	ASSERT_OK(pipe(go));
	ASSERT((pid = fork()) >= 0);
	if (pid == 0) {
		char c;

		close(go[1]);
		(void)!read(go[0], &c, 1); /* holds fd until told */
		_exit(0);
	}
	close(go[0]);
	ASSERT_OK(close(fd));
	ASSERT_EQ(fmd_opens(&m), 1);
	ASSERT_OK(close(dupfd));
	ASSERT_EQ(fmd_opens(&m), 1); /* the child's copy */
	close(go[1]);
	ASSERT_EQ(waitpid(pid, NULL, 0), pid);
	fmd_wait_opens(&m, 0);

	/* Across exec: the program the child becomes holds it. */
	ASSERT((fd = open(fmd_path(&m, "video0", 0), O_RDWR)) >= 0);
	ASSERT_OK(pipe(go));
	ASSERT((pid = fork()) >= 0);
	if (pid == 0) {
		dup2(go[0], 0);
		close(go[1]);
		execlp("sh", "sh", "-c", "read x",
		    (char *)NULL); /* until EOF */
		_exit(127);
	}
	close(go[0]);
	ASSERT_OK(close(fd));
	ASSERT_EQ(fmd_opens(&m), 1);
	close(go[1]);
	ASSERT_EQ(waitpid(pid, NULL, 0), pid);
	fmd_wait_opens(&m, 0);

	/* Across SCM_RIGHTS: the receiver holds it. */
	int sv[2];
	ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
	ASSERT((fd = open(fmd_path(&m, "video0", 0), O_RDWR)) >= 0);
	ASSERT((pid = fork()) >= 0);
	if (pid == 0) {
		int got = recv_fd(sv[1]);

		(void)!read(sv[1], &got, 1); /* holds it until told */
		_exit(got >= 0 ? 0 : 1);
	}
	send_fd(sv[0], fd);
	ASSERT_OK(close(fd));
	usleep(100000);
	ASSERT_EQ(fmd_opens(&m), 1);
	ASSERT_EQ(write(sv[0], "x", 1), 1);
	int st;
	ASSERT_EQ(waitpid(pid, &st, 0), pid);
	ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	fmd_wait_opens(&m, 0);
	close(sv[0]);
	close(sv[1]);
	ASSERT_EQ(fmd_stop(&m), 0);
}

/* Modes, owners and groups from a configuration file (spaces or tabs). */
TEST(daemon_reads_device_permissions_from_a_config_file)
{
	char conf[] = "/tmp/fomap-conf-XXXXXX";
	struct fmd m;
	struct stat st;
	int fd = mkstemp(conf);

	ASSERT(fd >= 0);
	ASSERT(dprintf(fd,
	           "# device mode owner group\n"
	           "fb0 0660 root 44\n"
	           "video0\t0600\troot\troot\n") > 0);
	close(fd);
	/* A mode that is no octal mode is refused, not taken for 0. */
	ASSERT_EQ(fmd_sh("%s --mode 0999 --mount /nonexistent 2>&1 | grep -q "
	                 "'bad --mode'",
	              fmd_tool("fomapd")),
	    0);
	ASSERT_EQ(fmd_sh("%s --mode 06x --mount /nonexistent 2>&1 | grep -q "
	                 "'bad --mode'",
	              fmd_tool("fomapd")),
	    0);
	/* An unknown owner is refused, not taken for root. */
	ASSERT_NE(fmd_sh("%s --dev zero:0600:nosuchuser --mount /nonexistent "
	                 "2>/dev/null",
	              fmd_tool("fomapd")),
	    0);
	fmd_start(&m, "--config", conf, NULL);
	/* fomapctl: a word it does not know is a usage error. */
	ASSERT_EQ(fmd_sh("%s --mount %s bogus 2>/dev/null",
	              fmd_tool("fomapctl"), m.dir),
	    2);
	ASSERT_OK(stat(fmd_path(&m, "fb0", 0), &st));
	ASSERT_EQ(st.st_mode & 07777, 0660);
	ASSERT_EQ(st.st_gid, 44);
	ASSERT_OK(stat(fmd_path(&m, "video0", 0), &st));
	ASSERT_EQ(st.st_mode & 07777, 0600);
	ASSERT_EQ(fmd_stop(&m), 0);
	unlink(conf);
}
