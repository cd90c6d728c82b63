/*
 * io.c: whole reads and writes of a file at an offset, for the object
 * store (fm_object_read/write) and the store pager's backing file: one
 * copy of the loop, so that a fix to it reaches every caller.
 */
#include <errno.h>
#include <unistd.h>

#include "vm/vm.h"

ssize_t
fm__full_pread(int fd, void *buf, size_t len, off_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t k = pread(fd, (char *)buf + done, len - done,
		    off + (off_t)done);

		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		if (k == 0)
			break; /* the end of the file */
		done += (size_t)k;
	}
	return (ssize_t)done;
}

int
fm__full_pwrite(int fd, const void *buf, size_t len, off_t off)
{
	for (size_t done = 0; done < len;) {
		ssize_t k = pwrite(fd, (const char *)buf + done, len - done,
		    off + (off_t)done);

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return k < 0 ? -errno : -EIO;
		done += (size_t)k;
	}
	return 0;
}
