/*
 * fuse.c: the FUSE protocol's transport for fomapd: mount, read requests,
 * write replies and notifications (fuse.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <unistd.h>

#include "fuse.h"

#define FMD_FSTYPE "fuse.fomap"

/*
 * Whether dir is a mount point of a fomap file system (mountinfo); *dev:
 * that mount's device, when it is.
 */
static int
fomap_mounted(const char *dir, dev_t *dev)
{
	char line[4096], mnt[PATH_MAX], type[64];
	FILE *f = fopen("/proc/self/mountinfo", "re");
	unsigned maj, min;
	int found = 0;

	if (f == NULL)
		return 0;
	while (!found && fgets(line, sizeof line, f)) {
		const char *sep = strstr(line, " - ");

		/* id parent major:minor root mountpoint ... - type ... */
		if (sep &&
		    sscanf(line, "%*s %*s %u:%u %*s %4095s", &maj, &min, mnt) ==
		        3 &&
		    sscanf(sep + 3, "%63s", type) == 1 &&
		    strcmp(mnt, dir) == 0 && strcmp(type, FMD_FSTYPE) == 0) {
			found = 1;
			*dev = makedev(maj, min);
		}
	}
	fclose(f);
	return found;
}

/* mkdir -p, for a mount point such as /dev/fomap. */
static int
make_dir(const char *dir)
{
	char p[PATH_MAX];
	size_t n = strlen(dir);

	if (n == 0 || n >= sizeof p)
		return -ENAMETOOLONG;
	memcpy(p, dir, n + 1);
	for (char *s = p + 1; *s; s++)
		if (*s == '/') {
			*s = 0;
			if (mkdir(p, 0755) < 0 && errno != EEXIST)
				return -errno;
			*s = '/';
		}
	if (mkdir(p, 0755) < 0 && errno != EEXIST && errno != ENOTCONN)
		return -errno;
	return 0;
}

int
fmd_fuse_mount(struct fmd_fuse *fs, const char *dir)
{
	char opts[256], real[PATH_MAX];
	struct stat st;
	int r;

	memset(fs, 0, sizeof(*fs));
	fs->fd = -1;
	if ((r = make_dir(dir)) < 0)
		return r;
	if (stat(dir, &st) < 0 && errno == ENOTCONN)
		(void)umount2(dir, MNT_DETACH); /* its fomapd died */
	if (realpath(dir, real) == NULL)
		return -errno;
	if (fomap_mounted(real, &fs->dev))
		return -EBUSY;
	if ((fs->fd = open("/dev/fuse", O_RDWR | O_CLOEXEC)) < 0)
		return -errno;
	snprintf(opts, sizeof opts,
	    "fd=%d,rootmode=40755,user_id=0,group_id=0,"
	    "default_permissions,allow_other",
	    fs->fd);
	if (mount("fomap", real, FMD_FSTYPE, MS_NOSUID, opts) < 0) {
		r = -errno;
		close(fs->fd);
		fs->fd = -1;
		return r;
	}
	if ((fs->dir = strdup(real)) == NULL) {
		fmd_fuse_unmount(fs);
		return -ENOMEM;
	}
	(void)fomap_mounted(real, &fs->dev); /* (not a request to itself) */
	return 0;
}

void
fmd_fuse_detach(const struct fmd_fuse *fs)
{
	if (fs->dir)
		(void)umount2(fs->dir, MNT_DETACH);
}

void
fmd_fuse_unmount(struct fmd_fuse *fs)
{
	if (fs->dir)
		(void)umount2(fs->dir, MNT_DETACH);
	if (fs->fd >= 0)
		close(fs->fd);
	fs->fd = -1;
	free(fs->dir);
	fs->dir = NULL;
}

ssize_t
fmd_fuse_read(struct fmd_fuse *fs, void *buf, size_t size)
{
	for (;;) {
		ssize_t n = read(fs->fd, buf, size);

		if (n >= (ssize_t)sizeof(struct fuse_in_header))
			return n;
		if (n >= 0)
			return -EIO; /* shorter than a header */
		if (errno == ENODEV)
			return 0; /* unmounted */
		/* ENOENT: a request interrupted before it was read */
		if (errno != EINTR && errno != ENOENT && errno != EAGAIN)
			return -errno;
	}
}

int
fmd_fuse_reply2(struct fmd_fuse *fs, uint64_t unique, const void *a,
    size_t alen, const void *b, size_t blen)
{
	struct fuse_out_header h = {.len = (uint32_t)(sizeof h + alen + blen),
	    .unique = unique};
	struct iovec v[3] = {{&h, sizeof h}, {(void *)a, alen},
	    {(void *)b, blen}};

	/* ENOENT: the request was interrupted and is gone: no matter. */
	if (writev(fs->fd, v, 3) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}

int
fmd_fuse_reply(struct fmd_fuse *fs, uint64_t unique, int err, const void *data,
    size_t len)
{
	struct fuse_out_header h = {.len = sizeof h,
	    .error = err,
	    .unique = unique};

	if (err == 0)
		return fmd_fuse_reply2(fs, unique, data, len, NULL, 0);
	if (write(fs->fd, &h, sizeof h) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}

int
fmd_fuse_notify_poll(struct fmd_fuse *fs, uint64_t kh)
{
	struct fuse_notify_poll_wakeup_out w = {.kh = kh};
	struct fuse_out_header h = {.len = sizeof h + sizeof w,
	    .error = FUSE_NOTIFY_POLL};
	struct iovec v[2] = {{&h, sizeof h}, {&w, sizeof w}};

	return writev(fs->fd, v, 2) < 0 ? -errno : 0;
}

int
fmd_fuse_backing_open(struct fmd_fuse *fs, int fd)
{
	struct fuse_backing_map m = {.fd = fd};
	int id;

	if (!fs->passthrough)
		return -EOPNOTSUPP;
	id = ioctl(fs->fd, FUSE_DEV_IOC_BACKING_OPEN, &m);
	return id < 0 ? -errno : id;
}

void
fmd_fuse_backing_close(struct fmd_fuse *fs, int id)
{
	uint32_t v = (uint32_t)id;

	if (id > 0)
		(void)ioctl(fs->fd, FUSE_DEV_IOC_BACKING_CLOSE, &v);
}

void
fmd_fuse_init(struct fmd_fuse *fs, const struct fuse_init_in *in,
    struct fuse_init_out *out)
{
	uint64_t offered = in->flags, want;

	if (in->flags & FUSE_INIT_EXT)
		offered |= (uint64_t)in->flags2 << 32;
	want = offered &
	    (FUSE_ASYNC_READ | FUSE_BIG_WRITES | FUSE_MAX_PAGES |
	        FUSE_PARALLEL_DIROPS | FUSE_INIT_EXT | FUSE_PASSTHROUGH);
	fs->passthrough = (want & FUSE_PASSTHROUGH) != 0;
	fs->minor = in->minor < 41 ? in->minor : 41;
	memset(out, 0, sizeof(*out));
	out->major = FUSE_KERNEL_VERSION;
	out->minor = fs->minor;
	out->max_readahead = in->max_readahead;
	out->flags = (uint32_t)want;
	out->flags2 = (uint32_t)(want >> 32);
	out->max_background = 64;
	out->congestion_threshold = 48;
	out->max_write = FMD_MAX_WRITE;
	out->time_gran = 1;
	out->max_pages = FMD_MAX_WRITE / 4096;
	/*
	 * max_stack_depth (7.40, the first word after flags2): a backing
	 * file (a memfd) is one level below this file system.
	 */
	out->unused[0] = fs->passthrough ? 1 : 0;
}
