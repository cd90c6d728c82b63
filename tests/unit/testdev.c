/*
 * testdev.c: the test device (see testdev.h).
 */
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

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
