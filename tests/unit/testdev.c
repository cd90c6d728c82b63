/*
 * testdev.c: the test device (see testdev.h).
 */
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include <fomap/fomap.h>

#include "../test.h"
#include "testdev.h"

struct testdev {
	struct fm_object *obj;
	int maxprot;
};

static int
testdev_mmap(struct fm_dev *dev, struct fm_mmap_req *req)
{
	struct testdev *td = fm_dev_private(dev);

	if ((size_t)req->off > fm_object_size(td->obj))
		return -ENXIO;
	fm_object_ref(td->obj);
	req->obj = td->obj;
	req->maxprot = td->maxprot;
	return 0;
}

static const struct fm_cdevsw testdev_cdevsw = {
    .d_open = fm_nullopen,
    .d_close = fm_nullclose,
    .d_mmap_single = testdev_mmap,
};

int
testdev_open(const char *name, struct fm_object *obj, int maxprot, int flags)
{
	struct testdev *td = malloc(sizeof(*td));
	char path[64];
	int fd;

	ASSERT(td != NULL);
	td->obj = obj;
	td->maxprot = maxprot;
	ASSERT_EQ(fm_dev_register(name, &testdev_cdevsw, td), 0);
	snprintf(path, sizeof path, FM_DEVPREFIX "%s", name);
	fd = fm_open(path, flags);
	ASSERT_GE(fd, 0);
	return fd;
}

int
testdev_tmpfile(size_t len)
{
	char path[] = "/tmp/fomap-test-XXXXXX";
	int fd = mkstemp(path);
	char *buf = malloc(len ? len : 1);

	ASSERT_GE(fd, 0);
	ASSERT(buf != NULL);
	unlink(path);
	for (size_t i = 0; i < len; i++)
		buf[i] = (char)(i % 251);
	ASSERT_EQ(write(fd, buf, len), (ssize_t)len);
	free(buf);
	return fd;
}

char
testdev_file_byte(int fd, off_t off)
{
	char c = 0;

	ASSERT_EQ(pread(fd, &c, 1, off), 1);
	return c;
}

struct fm_object *
testdev_object(const struct fm_pagerops *ops, size_t len)
{
	struct fm_object *obj;

	ASSERT_EQ(fm_object_create(ops, len, NULL, &obj), 0);
	return obj;
}

struct fm_object *
testdev_store(int file, off_t off, size_t size)
{
	struct fm_object *obj;

	ASSERT_EQ(fm_store_create(file, off, size, &obj), 0);
	return obj;
}

void *
testdev_map(int fd, size_t len, int prot, int flags)
{
	void *p = fm_mmap(NULL, len, prot, flags, fd, 0);

	ASSERT(p != MAP_FAILED);
	return p;
}

void
testdev_done(void *p, size_t len, int fd, struct fm_object *obj)
{
	ASSERT_OK(fm_munmap(p, len));
	ASSERT_OK(fm_close(fd));
	fm_object_rele(obj);
}
