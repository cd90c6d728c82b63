/*
 * gem.h: the ioctls of the gem device (FM_GEM_DEV), a DRM/GEM-style cloning
 * device: every open has its own table of buffer handles.
 *
 * A buffer object is created with a size and named by a handle that is
 * valid only in the open that holds it. To map it, ask for its mmap offset
 * (a fake offset that only names the buffer) and pass that offset to
 * fm_mmap() on the same descriptor. To share it with another open, give it
 * a global name (FM_GEM_FLINK); the other open turns the name into a
 * handle of its own (FM_GEM_OPEN) and maps the same pages: both see every
 * write at once. A buffer lives while a handle or a mapping holds it.
 *
 * FM_GEM_EVICT removes every mapping of a buffer and moves its data to
 * backing storage; the next access faults it back in, data intact.
 *
 * All calls go through fm_ioctl(fd, FM_GEM_*, &arg) and fail with -1 and:
 * => ENOTTY: not a gem request. EFAULT: a NULL argument.
 * => EINVAL: handle 0, a reserved field not zero, a bad size.
 * => ENOENT: no such handle in this open, or no such name.
 * fm_mmap() of a gem descriptor fails with EINVAL when the offset names no
 * buffer this open holds a handle to, and with ENXIO when offset + length
 * runs past the end of the buffer. MAP_SHARED and MAP_PRIVATE both work.
 */
#ifndef FOMAP_GEM_H
#define FOMAP_GEM_H

#include <stdint.h>
#include <sys/ioctl.h>

#include <fomap/fomap.h>

#define FM_GEM_DEV FM_DEVPREFIX "gem"

/* The largest buffer, in bytes. */
#define FM_GEM_MAXSIZE ((uint64_t)1 << 36)

/* FM_GEM_CREATE: a new zero-filled buffer; size is rounded up to pages. */
struct fm_gem_create {
	uint64_t size; /* in: bytes; out: bytes, rounded up */
	uint32_t handle; /* out */
	uint32_t pad; /* must be zero */
};

/* FM_GEM_CLOSE: drop a handle (mappings of the buffer stay valid). */
struct fm_gem_close {
	uint32_t handle;
	uint32_t pad;
};

/* FM_GEM_MMAP_OFFSET: the offset to pass to fm_mmap for this buffer. */
struct fm_gem_mmap_offset {
	uint32_t handle;
	uint32_t pad;
	uint64_t offset; /* out */
};

/* FM_GEM_FLINK: a global name for the buffer (the same name every time). */
struct fm_gem_flink {
	uint32_t handle;
	uint32_t name; /* out: never 0 */
};

/* FM_GEM_OPEN: a handle, in this open, to the buffer with a global name. */
struct fm_gem_open {
	uint32_t name;
	uint32_t handle; /* out */
	uint64_t size; /* out */
};

/* FM_GEM_EVICT: remove every mapping; move the data to backing storage. */
struct fm_gem_evict {
	uint32_t handle;
	uint32_t pad;
};

/* FM_GEM_INFO: what the buffer's pager has done (counters since created). */
struct fm_gem_info {
	uint32_t handle; /* in */
	uint32_t name; /* 0: not named */
	uint64_t size;
	uint64_t offset; /* the fake mmap offset */
	uint64_t resident; /* pages in memory now */
	uint64_t dirty; /* ... of which written since last saved */
	uint64_t faults; /* faults the pager handled */
	uint64_t minor; /* ... of which found the page in memory */
	uint64_t zerofill; /* pages filled with zeros (never saved) */
	uint64_t refill; /* pages read back from backing storage */
	uint64_t saved; /* pages written to backing storage */
	uint64_t evictions;
};

/* FM_GEM_STATS: the device as a whole. */
struct fm_gem_stats {
	uint64_t
	    buffers; /* buffer objects alive (held by a handle or a mapping) */
	uint64_t bytes; /* their total size */
	uint64_t named; /* ... of which have a global name */
};

#define FM_GEM_IOC 'g'
#define FM_GEM_CREATE _IOWR(FM_GEM_IOC, 1, struct fm_gem_create)
#define FM_GEM_CLOSE _IOW(FM_GEM_IOC, 2, struct fm_gem_close)
#define FM_GEM_MMAP_OFFSET _IOWR(FM_GEM_IOC, 3, struct fm_gem_mmap_offset)
#define FM_GEM_FLINK _IOWR(FM_GEM_IOC, 4, struct fm_gem_flink)
#define FM_GEM_OPEN _IOWR(FM_GEM_IOC, 5, struct fm_gem_open)
#define FM_GEM_EVICT _IOW(FM_GEM_IOC, 6, struct fm_gem_evict)
#define FM_GEM_INFO _IOWR(FM_GEM_IOC, 7, struct fm_gem_info)
#define FM_GEM_STATS _IOR(FM_GEM_IOC, 8, struct fm_gem_stats)

#endif /* FOMAP_GEM_H */
