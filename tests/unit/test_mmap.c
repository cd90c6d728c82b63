/*
 * test_mmap.c: fm_mmap and friends: POSIX semantics and errors, shared
 * coherence, private copy-on-write, MAP_FIXED, host files and memory.
 */
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fomap/driver.h>

#include "../test.h"
#include "testdev.h"
#include "vm/vm.h"

#define RW (PROT_READ | PROT_WRITE)

static size_t
map_entries(void)
{
	struct fm_map_iter it;
	size_t n;

	pthread_rwlock_rdlock(&fm__map.lock);
	n = fm__map_iter(&it, &fm__vs_self, 0, UINTPTR_MAX);
	fm__map_assert(&fm__vs_self);
	pthread_rwlock_unlock(&fm__map.lock);
	return n;
}

static struct fm_object *
anon_object(size_t len)
{
	struct fm_object *obj;

	ASSERT_EQ(fm_object_create(NULL, len, NULL, &obj), 0);
	return obj;
}

/* The engine may start only where the kernel's pages are fomap's. */
TEST(page_size_check_agrees_with_the_kernel)
{
	int same = sysconf(_SC_PAGESIZE) == (long)PG;

	ASSERT_EQ(fm__page_size_check(), same ? 0 : -ENOSYS);
	ASSERT_EQ(fm__page_size_why() == NULL, same);
}

TEST(mmap_errors_einval)
{
	fm_test_need_uffd();
	int fd = fm_open("/dev/fomap/zero", O_RDWR);
	size_t before = map_entries();

	ASSERT_ERRNO(fm_mmap(NULL, 0, RW, MAP_SHARED, fd, 0), EINVAL);
	ASSERT_ERRNO(fm_mmap(NULL, PG, RW, MAP_SHARED, fd, 100), EINVAL);
	ASSERT_ERRNO(fm_mmap((void *)0x10000100, PG, RW, MAP_SHARED | MAP_FIXED,
	                 fd, 0),
	    EINVAL);
	ASSERT_ERRNO(fm_mmap(NULL, PG, RW, 0, fd, 0), EINVAL);
	ASSERT_ERRNO(fm_mmap(NULL, PG, RW, 0x04, fd, 0), EINVAL);
	ASSERT_ERRNO(fm_mprotect((void *)0x10000000, PG, 0x100), EINVAL);
	ASSERT_ERRNO(fm_mmap(NULL, PG, RW, MAP_SHARED_VALIDATE | 0x400000, fd,
	                 0),
	    EOPNOTSUPP);
	ASSERT_ERRNO(fm_munmap((void *)0x10000100, PG), EINVAL);
	ASSERT_ERRNO(fm_munmap((void *)0x10000000, 0), EINVAL);
	ASSERT_ERRNO(fm_mprotect((void *)0x10000100, PG, PROT_READ), EINVAL);
	ASSERT_ERRNO(fm_msync((void *)0x10000100, PG, MS_SYNC), EINVAL);
	ASSERT_ERRNO(fm_madvise((void *)0x10000100, PG, MADV_DONTNEED), EINVAL);
	ASSERT_EQ(map_entries(), before);
	ASSERT_OK(fm_close(fd));
}

TEST(mmap_errors_ebadf_enodev_eoverflow_enomem)
{
	fm_test_need_uffd();
	int fd = fm_open("/dev/fomap/zero", O_RDWR), p[2];
	size_t before = map_entries();

	ASSERT_ERRNO(fm_mmap(NULL, PG, RW, MAP_SHARED, -1, 0), EBADF);
	ASSERT_ERRNO(fm_mmap(NULL, PG, RW, MAP_SHARED, 12345, 0), EBADF);
	ASSERT_OK(fm_close(fd));
	ASSERT_ERRNO(fm_mmap(NULL, PG, RW, MAP_SHARED, fd, 0), EBADF);
	ASSERT_OK(pipe(p));
	ASSERT_ERRNO(fm_mmap(NULL, PG, PROT_READ, MAP_SHARED, p[0], 0), ENODEV);
	fd = fm_open("/dev/fomap/null", O_RDWR);
	ASSERT_GE(fd, 0);
	ASSERT_ERRNO(fm_mmap(NULL, PG, PROT_READ, MAP_SHARED, fd, 0), ENODEV);
	ASSERT_OK(fm_close(fd));
	fd = testdev_tmpfile(PG);
	ASSERT_ERRNO(fm_mmap(NULL, 2 * PG, PROT_READ, MAP_SHARED, fd,
	                 (off_t)0x7fffffffffffe000LL),
	    EOVERFLOW);
	ASSERT_ERRNO(fm_mmap(NULL, SIZE_MAX - 10, PROT_READ, MAP_SHARED, fd, 0),
	    ENOMEM);
	ASSERT_EQ(map_entries(), before);
	close(fd);
	close(p[0]);
	close(p[1]);
}

TEST(mmap_errors_eacces)
{
	fm_test_need_uffd();
	int ro = fm_open("/dev/fomap/zero", O_RDONLY);
	struct fm_object *obj = anon_object(4 * PG);
	int fd = testdev_open("eacces", obj, PROT_READ, O_RDWR), wo;
	char *p;

	ASSERT_ERRNO(fm_mmap(NULL, PG, RW, MAP_SHARED, ro, 0), EACCES);
	p = fm_mmap(NULL, PG, RW, MAP_PRIVATE, ro, 0); /* copy-on-write: fine */
	ASSERT(p != MAP_FAILED);
	ASSERT_OK(fm_munmap(p, PG));
	/* The object's maximum protection is read-only. */
	ASSERT_ERRNO(fm_mmap(NULL, PG, RW, MAP_SHARED, fd, 0), EACCES);
	p = fm_mmap(NULL, PG, PROT_READ, MAP_SHARED, fd, 0);
	ASSERT(p != MAP_FAILED);
	ASSERT_ERRNO(fm_mprotect(p, PG, RW), EACCES);
	ASSERT_EQ(fm_test_probe(p, 1), SIGSEGV);
	/* Even going around fomap, no write reaches the object. */
	ASSERT_OK(mprotect(p, PG, RW));
	p[0] = 'w';
	char c;
	ASSERT_EQ(fm_object_read(obj, 0, &c, 1), 0);
	ASSERT_EQ(c, 0);
	ASSERT_OK(fm_munmap(p, PG));
	/* A file open for writing only cannot be mapped. */
	wo = open("/dev/null", O_WRONLY);
	ASSERT_ERRNO(fm_mmap(NULL, PG, PROT_READ, MAP_SHARED, wo, 0), EACCES);
	close(wo);
	wo = testdev_tmpfile(PG);
	char path[64];
	snprintf(path, sizeof path, "/proc/self/fd/%d", wo);
	int wfd = open(path, O_WRONLY);
	ASSERT_ERRNO(fm_mmap(NULL, PG, PROT_READ, MAP_SHARED, wfd, 0), EACCES);
	int rfd = open(path, O_RDONLY);
	ASSERT_ERRNO(fm_mmap(NULL, PG, RW, MAP_SHARED, rfd, 0), EACCES);
	close(rfd);
	close(wfd);
	close(wo);
	fm_object_rele(obj);
}

TEST(zero_private_is_private)
{
	fm_test_need_uffd();
	int fd = fm_open("/dev/fomap/zero", O_RDWR);
	char *a = fm_mmap(NULL, 8 * PG, RW, MAP_PRIVATE, fd, 0);
	char *b = fm_mmap(NULL, 8 * PG, RW, MAP_PRIVATE, fd, 0);

	ASSERT(a != MAP_FAILED && b != MAP_FAILED);
	a[5 * PG] = 7;
	ASSERT_EQ(b[5 * PG], 0);
	ASSERT_EQ(a[5 * PG], 7);
	ASSERT_OK(fm_munmap(a, 8 * PG));
	ASSERT_OK(fm_munmap(b, 8 * PG));
	ASSERT_OK(fm_close(fd));
}

TEST(shared_mappings_are_coherent)
{
	fm_test_need_uffd();
	struct fm_object *obj = anon_object(64 * PG);
	int fd = testdev_open("coherent", obj, RW, O_RDWR);
	char *a = fm_mmap(NULL, 64 * PG, RW, MAP_SHARED, fd, 0);
	char *b = fm_mmap(NULL, 32 * PG, RW, MAP_SHARED, fd, 32 * PG);
	char c;

	ASSERT(a != MAP_FAILED && b != MAP_FAILED);
	for (int i = 0; i < 64; i++)
		a[i * PG + 1] = (char)(i + 1);
	for (int i = 0; i < 32; i++)
		ASSERT_EQ(b[i * PG + 1], i + 33);
	b[3 * PG] = 'x'; /* page 35 of the object */
	ASSERT_EQ(a[35 * PG], 'x');
	ASSERT_EQ(fm_object_read(obj, 35 * PG, &c, 1), 0);
	ASSERT_EQ(c, 'x');
	ASSERT_OK(fm_munmap(a, 64 * PG));
	ASSERT_EQ(b[3 * PG], 'x');
	ASSERT_OK(fm_munmap(b, 32 * PG));
	ASSERT_OK(fm_close(fd));
	fm_object_rele(obj);
}

TEST(private_mapping_copy_on_write)
{
	fm_test_need_uffd();
	struct fm_object *obj = anon_object(16 * PG);
	int fd = testdev_open("cow", obj, RW, O_RDWR);
	char *s = fm_mmap(NULL, 16 * PG, RW, MAP_SHARED, fd, 0);
	char *p = fm_mmap(NULL, 16 * PG, RW, MAP_PRIVATE, fd, 0);
	char c;

	ASSERT(s != MAP_FAILED && p != MAP_FAILED);
	s[PG] = 'a';
	ASSERT_EQ(p[PG], 'a'); /* the private mapping reads the object */
	p[PG] = 'b'; /* ... and copies on write */
	ASSERT_EQ(s[PG], 'a');
	ASSERT_EQ(fm_object_read(obj, PG, &c, 1), 0);
	ASSERT_EQ(c, 'a');
	p[9 * PG] = 'p'; /* write first, never read: still private */
	ASSERT_EQ(s[9 * PG], 0);
	s[2 * PG] = 's'; /* untouched private pages follow the object */
	ASSERT_EQ(p[2 * PG], 's');
	/* MADV_DONTNEED drops the private copy: back to the object. */
	ASSERT_OK(fm_madvise(p, 16 * PG, MADV_DONTNEED));
	ASSERT_EQ(p[PG], 'a');
	ASSERT_EQ(p[9 * PG], 0);
	ASSERT_OK(fm_munmap(s, 16 * PG));
	ASSERT_OK(fm_munmap(p, 16 * PG));
	ASSERT_OK(fm_close(fd));
	fm_object_rele(obj);
}

TEST(map_fixed_replaces)
{
	fm_test_need_uffd();
	int fd = fm_open("/dev/fomap/zero", O_RDWR);
	struct fm_object *obj = anon_object(4 * PG);
	int ofd = testdev_open("fixed", obj, RW, O_RDWR);
	char *a = fm_mmap(NULL, 16 * PG, RW, MAP_SHARED, fd, 0), *b;
	size_t before = map_entries();

	ASSERT(a != MAP_FAILED);
	memset(a, 1, 16 * PG);
	ASSERT_OK(fm_object_write(obj, 0, "fixed", 6));
	b = fm_mmap(a + 4 * PG, 4 * PG, RW, MAP_SHARED | MAP_FIXED, ofd, 0);
	ASSERT_PTR_EQ(b, a + 4 * PG);
	ASSERT_EQ(map_entries(), before + 2); /* split around the new one */
	ASSERT(strcmp(b, "fixed") == 0);
	ASSERT_EQ(a[3 * PG], 1);
	ASSERT_EQ(a[8 * PG], 1);
	b[PG] = 9;
	char c;
	ASSERT_EQ(fm_object_read(obj, PG, &c, 1), 0);
	ASSERT_EQ(c, 9);
	ASSERT_ERRNO(fm_mmap(a, PG, RW, MAP_SHARED | MAP_FIXED_NOREPLACE, ofd,
	                 0),
	    EEXIST);
	ASSERT_OK(fm_munmap(a, 16 * PG));
	ASSERT_EQ(map_entries(), before - 1);
	ASSERT_OK(fm_close(fd));
	ASSERT_OK(fm_close(ofd));
	fm_object_rele(obj);
}

TEST(partial_munmap_and_mprotect)
{
	fm_test_need_uffd();
	int fd = fm_open("/dev/fomap/zero", O_RDWR);
	char *a = fm_mmap(NULL, 16 * PG, RW, MAP_SHARED, fd, 0);
	size_t before = map_entries();

	ASSERT(a != MAP_FAILED);
	memset(a, 3, 16 * PG);
	ASSERT_OK(fm_munmap(a + 4 * PG, 4 * PG));
	ASSERT_EQ(map_entries(), before + 1);
	ASSERT_EQ(fm_test_probe(a + 5 * PG, 0), SIGSEGV);
	ASSERT_EQ(a[9 * PG], 3);
	ASSERT_OK(fm_mprotect(a + 8 * PG, 2 * PG, PROT_READ));
	ASSERT_EQ(fm_test_probe(a + 9 * PG, 1), SIGSEGV);
	ASSERT_EQ(fm_test_probe(a + 10 * PG, 1), 0);
	ASSERT_ERRNO(fm_mprotect(a, 16 * PG, PROT_READ), ENOMEM);
	ASSERT_OK(fm_mprotect(a + 8 * PG, 2 * PG, RW));
	ASSERT_EQ(fm_test_probe(a + 9 * PG, 1), 0);
	ASSERT_OK(fm_munmap(a, 16 * PG));
	ASSERT_EQ(map_entries(), before - 1);
	ASSERT_OK(fm_close(fd));
}

TEST(sigbus_beyond_end_of_object)
{
	fm_test_need_uffd();
	struct fm_object *obj = anon_object(PG);
	int fd = testdev_open("eof", obj, RW, O_RDWR);
	char *a = fm_mmap(NULL, 4 * PG, RW, MAP_SHARED, fd, 0);

	ASSERT(a != MAP_FAILED);
	ASSERT_EQ(fm_test_probe(a, 1), 0);
	ASSERT_EQ(fm_test_probe(a + PG, 0), SIGBUS);
	ASSERT_EQ(fm_test_probe(a + 3 * PG, 1), SIGBUS);
	ASSERT_EQ(fm_test_probe(a, 0), 0);
	ASSERT_OK(fm_munmap(a, 4 * PG));
	ASSERT_OK(fm_close(fd));
	fm_object_rele(obj);
}

TEST(host_file_coherent_with_read_write)
{
	int fd = testdev_tmpfile(8 * PG);
	char *a = fm_mmap(NULL, 8 * PG, RW, MAP_SHARED, fd, 0);
	char *p = fm_mmap(NULL, 8 * PG, RW, MAP_PRIVATE, fd, 0);
	char c;

	ASSERT(a != MAP_FAILED && p != MAP_FAILED);
	ASSERT_EQ(a[PG + 3], (char)((PG + 3) % 251));
	ASSERT_EQ(pwrite(fd, "W", 1, 2 * PG), 1);
	ASSERT_EQ(a[2 * PG], 'W');
	a[3 * PG] = 'M';
	ASSERT_EQ(pread(fd, &c, 1, 3 * PG), 1);
	ASSERT_EQ(c, 'M');
	p[4 * PG] = 'P'; /* a private write never reaches the file */
	ASSERT_EQ(pread(fd, &c, 1, 4 * PG), 1);
	ASSERT_EQ(c, (char)((4 * PG) % 251));
	ASSERT_OK(fm_msync(a, 8 * PG, MS_SYNC));
	ASSERT_OK(fm_munmap(a, 8 * PG));
	ASSERT_OK(fm_munmap(p, 8 * PG));
	/* Beyond the end of the file: SIGBUS, from the host kernel. */
	a = fm_mmap(NULL, 16 * PG, PROT_READ, MAP_SHARED, fd, 0);
	ASSERT(a != MAP_FAILED);
	ASSERT_EQ(fm_test_probe(a + 12 * PG, 0), SIGBUS);
	ASSERT_OK(fm_munmap(a, 16 * PG));
	close(fd);
}

TEST(host_file_msync_reaches_disk_file)
{
	char path[] = "/tmp/fomap-msync-XXXXXX";
	int fd = mkstemp(path), fd2;
	char *a, buf[4];

	ASSERT_GE(fd, 0);
	ASSERT_OK(ftruncate(fd, 4 * PG));
	close(fd);
	fd = fm_open(path, O_RDWR); /* an ordinary path: an ordinary fd */
	ASSERT_GE(fd, 0);
	a = fm_mmap(NULL, 4 * PG, RW, MAP_SHARED, fd, 0);
	ASSERT(a != MAP_FAILED);
	memcpy(a + PG, "abc", 4);
	ASSERT_OK(fm_msync(a, 4 * PG, MS_SYNC));
	ASSERT_OK(fm_munmap(a, 4 * PG));
	ASSERT_OK(fm_close(fd));
	fd2 = open(path, O_RDONLY);
	ASSERT_EQ(pread(fd2, buf, 4, PG), 4);
	ASSERT(strcmp(buf, "abc") == 0);
	close(fd2);
	unlink(path);
}

TEST(anonymous_memory_is_host_memory)
{
	char *a = fm_mmap(NULL, 4 * PG, RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *s = fm_mmap(NULL, 4 * PG, RW, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	struct fm_stats before, after;

	ASSERT(a != MAP_FAILED && s != MAP_FAILED);
	fm_engine_stats(&before);
	memset(a, 5, 4 * PG);
	memset(s, 6, 4 * PG);
	fm_engine_stats(&after);
	ASSERT_EQ(after.faults, before.faults); /* the kernel served them */
	ASSERT_EQ(a[3 * PG], 5);
	ASSERT_OK(fm_madvise(a, 4 * PG, MADV_DONTNEED));
	ASSERT_EQ(a[3 * PG], 0);
	ASSERT_OK(fm_mprotect(s, 4 * PG, PROT_READ));
	ASSERT_EQ(fm_test_probe(s, 1), SIGSEGV);
	ASSERT_OK(fm_munmap(a, 4 * PG));
	ASSERT_OK(fm_munmap(s, 4 * PG));
}

TEST(madvise_dontneed_and_willneed)
{
	fm_test_need_uffd();
	struct fm_object *obj = anon_object(64 * PG);
	int fd = testdev_open("advise", obj, RW, O_RDWR);
	char *a = fm_mmap(NULL, 64 * PG, RW, MAP_SHARED, fd, 0);
	unsigned char vec[64];
	struct fm_stats before, after;

	ASSERT(a != MAP_FAILED);
	ASSERT_OK(fm_madvise(a, 64 * PG, MADV_WILLNEED));
	ASSERT_EQ(fm_object_mincore(obj, 0, 64 * PG, vec), 0);
	for (int i = 0; i < 64; i++)
		ASSERT(vec[i] & FM_PG_RESIDENT);
	fm_engine_stats(&before);
	memset(a, 4, 64 * PG); /* mapped already: no fault */
	fm_engine_stats(&after);
	ASSERT_EQ(after.faults, before.faults);
	ASSERT_OK(fm_madvise(a, 64 * PG, MADV_DONTNEED));
	ASSERT_EQ(a[10 * PG], 4); /* the object kept it: a minor fault */
	fm_engine_stats(&after);
	ASSERT_GE(after.minor, before.minor + 1);
	ASSERT_OK(fm_madvise(a, 64 * PG, MADV_RANDOM));
	ASSERT_OK(fm_madvise(a, 64 * PG, MADV_NORMAL));
	/* MADV_REMOVE: the object drops them; zero-fill again. */
	ASSERT_OK(fm_madvise(a, 64 * PG, MADV_REMOVE));
	ASSERT_EQ(fm_object_mincore(obj, 0, 64 * PG, vec), 0);
	ASSERT_EQ(vec[10] & FM_PG_RESIDENT, 0);
	ASSERT_EQ(a[10 * PG], 0);
	ASSERT_OK(fm_munmap(a, 64 * PG));
	ASSERT_OK(fm_close(fd));
	fm_object_rele(obj);
}

TEST(map_populate_prefaults)
{
	fm_test_need_uffd();
	int fd = fm_open("/dev/fomap/zero", O_RDWR);
	struct fm_stats before, after;
	char *a = fm_mmap(NULL, 32 * PG, RW, MAP_SHARED | MAP_POPULATE, fd, 0);

	ASSERT(a != MAP_FAILED);
	fm_engine_stats(&before);
	for (int i = 0; i < 32; i++)
		ASSERT_EQ(a[i * PG], 0);
	fm_engine_stats(&after);
	ASSERT_EQ(after.faults, before.faults);
	ASSERT_OK(fm_munmap(a, 32 * PG));
	ASSERT_OK(fm_close(fd));
}

TEST(descriptors_and_file_calls)
{
	int fd = fm_open("/dev/fomap/zero", O_RDWR), fd2, n;
	char buf[16];

	ASSERT_GE(fd, 0);
	/* A fomap descriptor is a real, reserved descriptor number. */
	fd2 = dup(0);
	ASSERT_NE(fd2, fd);
	close(fd2);
	memset(buf, 1, sizeof buf);
	ASSERT_EQ(fm_read(fd, buf, sizeof buf), 16);
	ASSERT_EQ(buf[15], 0);
	ASSERT_EQ(fm_write(fd, buf, 5), 5);
	ASSERT_ERRNO(fm_ioctl(fd, 0x1234, &n), ENOTTY);
	struct stat st;
	ASSERT_OK(fm_fstat(fd, &st));
	ASSERT(S_ISCHR(st.st_mode));
	int gem = fm_open("/dev/fomap/gem", O_RDWR); /* a clone */
	ASSERT_OK(fm_fstat(gem, &st));
	ASSERT(S_ISCHR(st.st_mode));
	ASSERT_OK(fm_close(gem));
	ASSERT_OK(fm_fstat(0, &st)); /* an ordinary descriptor */
	n = fm_open("/dev/fomap/null", O_RDONLY);
	ASSERT_EQ(fm_read(n, buf, 16), 0);
	ASSERT_OK(fm_close(n));
	ASSERT_ERRNO(fm_open("/dev/fomap/nosuch", O_RDWR), ENXIO);
	ASSERT_ERRNO(fm_open("/dev/fomap/zero", O_ACCMODE), EINVAL);
	ASSERT_ERRNO(fm_open("/nonexistent/file", O_RDONLY), ENOENT);
	ASSERT_OK(fm_close(fd));
	ASSERT_ERRNO(fm_read(fd, buf, 1), EBADF);
	ASSERT_ERRNO(fm_close(fd), EBADF);
}

TEST(device_registration)
{
	static const struct fm_cdevsw c = {.d_open = fm_noopen};

	ASSERT_EQ(fm_dev_register("zero", &c, NULL), -EEXIST);
	ASSERT_EQ(fm_dev_register("a/b", &c, NULL), -EINVAL);
	ASSERT_EQ(fm_dev_register("", &c, NULL), -EINVAL);
	ASSERT_EQ(fm_dev_register("ok", NULL, NULL), -EINVAL);
	ASSERT_EQ(fm_dev_register("noopen", &c, NULL), 0);
	ASSERT_ERRNO(fm_open("/dev/fomap/noopen", O_RDWR), ENODEV);
	ASSERT_EQ(fm_dev_unregister("noopen"), 0);
	ASSERT_EQ(fm_dev_unregister("noopen"), -ENOENT);
	int fd = fm_open("/dev/fomap/zero", O_RDWR);
	ASSERT_EQ(fm_dev_unregister("zero"), -EBUSY);
	ASSERT_OK(fm_close(fd));
}

TEST(fork_child_does_not_inherit_engine_mappings)
{
	fm_test_need_uffd();
	int fd = fm_open("/dev/fomap/zero", O_RDWR), status;
	char *a = fm_mmap(NULL, 4 * PG, RW, MAP_SHARED, fd, 0);
	pid_t pid;

	ASSERT(a != MAP_FAILED);
	a[0] = 'p';
	pid = fork();
	if (pid == 0)
		_exit(fm_test_probe(a, 0) == SIGSEGV ? 0 : 1);
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	ASSERT_EQ(a[0], 'p');
	ASSERT_OK(fm_munmap(a, 4 * PG));
	ASSERT_OK(fm_close(fd));
}

TEST(unprivileged_process_uses_user_mode_userfaultfd)
{
	/* As nobody, without CAP_SYS_PTRACE: the user-mode-only fallback. */
	int status;
	pid_t pid = fork();

	if (pid == 0) {
		if (setgid(65534) < 0 || setuid(65534) < 0)
			_exit(77);
		int fd = fm_open("/dev/fomap/zero", O_RDWR);
		char *a = fm_mmap(NULL, 4 * PG, RW, MAP_SHARED, fd, 0);
		if (a == MAP_FAILED)
			_exit(errno == EPERM ? 3 : 2);
		a[PG] = 1;
		_exit(a[PG] == 1 ? 0 : 1);
	}
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 77)
		fm_test_skip("cannot become nobody");
	if (WIFEXITED(status) && WEXITSTATUS(status) == 3)
		fm_test_skip("userfaultfd not allowed to nobody here (EPERM, "
		             "as README says)");
	ASSERT(WIFEXITED(status));
	ASSERT_EQ(WEXITSTATUS(status), 0);
}

#define MANY 20000 /* one-page mappings: well within vm.max_map_count */

/* The live entries of obj that map page pg (its tree's overlap query). */
static size_t
entries_at(struct fm_object *obj, uint64_t pg)
{
	size_t n = 0;

	pthread_mutex_lock(&obj->lock);
	for (struct fm_entry *e = fm__object_overlap_first(obj, pg, 1); e;
	     e = fm__object_overlap_next(obj, e, pg, 1)) {
		ASSERT(e->pgoff <= pg &&
		    pg < e->pgoff + ((e->end - e->start) >> 12));
		n++;
	}
	pthread_mutex_unlock(&obj->lock);
	return n;
}

static unsigned long
faults_now(void)
{
	struct fm_stats st;

	fm_engine_stats(&st);
	return st.faults;
}

/*
 * Many mappings of one object (issue #10): a protect or an unmap of one
 * page reaches the one mapping of it, and the oldest and the newest
 * mapping go as any other. The map and the object's tree stay balanced.
 */
TEST(many_mappings_one_page_each)
{
	fm_test_need_uffd();
	struct fm_object *obj = anon_object(MANY * PG);
	int fd = testdev_open("many", obj, RW, O_RDWR);
	static char *m[MANY];
	size_t before = map_entries();
	unsigned long f0;
	const int k = MANY / 2 + 7, u = MANY / 3;

	for (int i = 0; i < MANY; i++) {
		m[i] = fm_mmap(NULL, PG, RW, MAP_SHARED, fd, (off_t)i * PG);
		ASSERT(m[i] != MAP_FAILED);
	}
	ASSERT_EQ(map_entries(), before + MANY);
	pthread_mutex_lock(&obj->lock);
	fm__tree_check(&obj->entries);
	ASSERT_EQ(obj->entries.n, MANY);
	pthread_mutex_unlock(&obj->lock);
	for (int i = k - 2; i <= k + 2; i++)
		ASSERT_EQ(entries_at(obj, (uint64_t)i), 1);
	for (int i = k - 2; i <= k + 2; i++)
		m[i][0] = (char)i; /* mapped, writable */
	m[u][0] = 'u';
	/* A protect of page k: its mapping refuses writes, no other does. */
	ASSERT_EQ(fm_object_protect(obj, (off_t)k * PG, PG, PROT_READ), 0);
	ASSERT_EQ(fm_test_probe(m[k], 1), SIGBUS);
	ASSERT_EQ(m[k][0], (char)k);
	f0 = faults_now();
	for (int i = k - 2; i <= k + 2; i++)
		if (i != k)
			ASSERT_EQ(fm_test_probe(m[i], 1), 0);
	ASSERT_EQ(faults_now(), f0); /* untouched: still mapped writable */
	ASSERT_EQ(fm_object_protect(obj, (off_t)k * PG, PG, RW), 0);
	ASSERT_EQ(fm_test_probe(m[k], 1), 0);
	/* An unmap of page u: only its mapping faults again. */
	ASSERT_EQ(fm_object_unmap(obj, (off_t)u * PG, PG, FM_UNMAP_KEEP), 0);
	f0 = faults_now();
	ASSERT_EQ(m[k][0], (char)k);
	ASSERT_EQ(m[k + 1][0], (char)(k + 1));
	ASSERT_EQ(faults_now(), f0);
	ASSERT_EQ(m[u][0], 'u');
	ASSERT_EQ(faults_now(), f0 + 1);
	/* The oldest and the newest mappings go; the others stay. */
	m[0][0] = 'o';
	m[MANY - 1][0] = 'n';
	ASSERT_OK(fm_munmap(m[0], PG));
	ASSERT_OK(fm_munmap(m[MANY - 1], PG));
	ASSERT_EQ(entries_at(obj, 0), 0);
	ASSERT_EQ(entries_at(obj, MANY - 1), 0);
	ASSERT_EQ(entries_at(obj, 1), 1);
	ASSERT_EQ(map_entries(), before + MANY - 2);
	ASSERT_EQ(m[1][0], 0);
	m[MANY - 2][0] = 'x';
	ASSERT_OK(fm_object_read(obj, 0, &m[1][1], 1));
	ASSERT_EQ(m[1][1], 'o');
	for (int i = 1; i < MANY - 1; i++)
		ASSERT_OK(fm_munmap(m[i], PG));
	ASSERT_EQ(map_entries(), before);
	ASSERT_EQ(entries_at(obj, (uint64_t)k), 0);
	ASSERT_OK(fm_close(fd));
	fm_object_rele(obj);
}
