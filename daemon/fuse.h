/*
 * fuse.h: fomapd's own side of the kernel's FUSE protocol on /dev/fuse:
 * mounting, requests and replies, poll notifications and passthrough
 * backing files. The kernel headers here are older than the kernel (6.1
 * against 6.18): what passthrough adds is defined below when missing, and
 * whether the kernel has it is learnt at INIT.
 */
#ifndef FMD_FUSE_H
#define FMD_FUSE_H

#include <linux/fuse.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/types.h>

/* Kernel 6.9, protocol 7.40: FUSE passthrough. */
#ifndef FUSE_PASSTHROUGH
#define FUSE_PASSTHROUGH (1ULL << 37) /* init flags2 bit 5 */
#endif
#ifndef FOPEN_PASSTHROUGH
#define FOPEN_PASSTHROUGH (1 << 7)
#endif
#ifndef FUSE_DEV_IOC_BACKING_OPEN
struct fuse_backing_map {
	int32_t fd;
	uint32_t flags;
	uint64_t padding;
};
#define FUSE_DEV_IOC_BACKING_OPEN \
	_IOW(FUSE_DEV_IOC_MAGIC, 1, struct fuse_backing_map)
#define FUSE_DEV_IOC_BACKING_CLOSE _IOW(FUSE_DEV_IOC_MAGIC, 2, uint32_t)
#endif

/* The largest request: a write of max_write bytes and its header. */
#define FMD_MAX_WRITE (128 * 1024)
#define FMD_REQ_SIZE (FMD_MAX_WRITE + 4096)

struct fmd_fuse {
	int fd; /* /dev/fuse, this mount's connection */
	char *dir; /* where it is mounted */
	int passthrough; /* the kernel took FUSE_PASSTHROUGH at INIT */
	uint32_t minor; /* the protocol's minor version agreed at INIT */
	dev_t dev; /* the mount's device, as /proc/PID/maps shows it */
};

/*
 * Mount a fomap file system on dir (made if missing): a stale mount there
 * (its daemon gone: ENOTCONN) is taken away first; a live one is not.
 * => 0, or -errno (-EBUSY: another fomapd serves dir)
 */
int fmd_fuse_mount(struct fmd_fuse *fs, const char *dir);
void fmd_fuse_unmount(struct fmd_fuse *fs);
/*
 * Take the mount away, leaving fs as it is: for a daemon whose threads
 * still read fs->fd (they see the end; the process's exit closes it).
 */
void fmd_fuse_detach(const struct fmd_fuse *fs);

/*
 * Read the next request into buf (FMD_REQ_SIZE bytes).
 * => its length; 0 when the file system is gone (unmounted); -errno
 */
ssize_t fmd_fuse_read(struct fmd_fuse *fs, void *buf, size_t size);

/* Reply to request unique: err (a negative errno) or 0 and len bytes. */
int fmd_fuse_reply(struct fmd_fuse *fs, uint64_t unique, int err,
    const void *data, size_t len);
/* ... two parts, as a header struct and the data after it. */
int fmd_fuse_reply2(struct fmd_fuse *fs, uint64_t unique, const void *a,
    size_t alen, const void *b, size_t blen);

/* Tell the kernel that poll handle kh may be ready now. */
int fmd_fuse_notify_poll(struct fmd_fuse *fs, uint64_t kh);

/* A passthrough backing for fd: => its id (> 0), or -errno */
int fmd_fuse_backing_open(struct fmd_fuse *fs, int fd);
void fmd_fuse_backing_close(struct fmd_fuse *fs, int id);

/* The INIT reply for the kernel's init_in, noting what it offers. */
void fmd_fuse_init(struct fmd_fuse *fs, const struct fuse_init_in *in,
    struct fuse_init_out *out);

#endif
