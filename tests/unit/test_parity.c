/*
 * test_parity.c: every answer the one libc gives. A table of argument
 * cases for each call is run against libc and against fomap, on a regular
 * file and on the zero device (libc: /dev/zero, whose shared mappings are
 * shmem, as a fomap object's store is), comparing return values and errno
 * exactly. Each case runs on both sides in a world of its own (struct
 * ctx: descriptors of each open mode, mappings of each kind, buffers with
 * holes), made fresh for it. A KNOWN case is a difference fomap cannot
 * remove where it stands; its reason is printed, and so is its going.
 * Then what the table cannot show: descriptors closed or replaced behind
 * fomap's back, O_CLOEXEC, descriptors fomap does not own, flags the
 * kernel honours, advice on the engine's mappings, msync and madvise
 * over a hole or past an object's end, and poll(2) beside fm_poll
 * (signals, bad arrays, O_PATH, wake-ups, cancellation).
 */
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <fomap/driver.h>
#include <fomap/fomap.h>

#include "../test.h"
#include "testdev.h"

#define RW (PROT_READ | PROT_WRITE)
#define NPG 16 /* pages of the file and of each mapping */

#ifndef MAP_SYNC
#define MAP_SYNC 0x80000
#endif
#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
#ifndef MAP_SHARED_VALIDATE
#define MAP_SHARED_VALIDATE 0x03
#endif
#define MAP_DROPPABLE_ 0x08
#define PROT_SEM_ 0x8

/* The calls under test: libc's or fomap's. */
struct api {
	const char *name;
	int (*open)(const char *, int, ...);
	int (*close)(int);
	ssize_t (*read)(int, void *, size_t);
	ssize_t (*write)(int, const void *, size_t);
	int (*fstat)(int, struct stat *);
	void *(*mmap)(void *, size_t, int, int, int, off_t);
	int (*munmap)(void *, size_t);
	int (*mprotect)(void *, size_t, int);
	int (*msync)(void *, size_t, int);
	int (*madvise)(void *, size_t, int);
};

static const struct api libc_api = {"libc", open, close, read, write, fstat,
    mmap, munmap, mprotect, msync, madvise};
static const struct api fomap_api = {"fomap", fm_open, fm_close, fm_read,
    fm_write, fm_fstat, fm_mmap, fm_munmap, fm_mprotect, fm_msync, fm_madvise};

/* What a case runs on: a regular file, or the zero device. */
enum target { REG, ZERO, NTARGETS };
static const char *const target_name[] = {"file", "zero"};
static char regpath[64];

static const char *
path_of(const struct api *a, enum target t)
{
	if (t == REG)
		return regpath;
	return a == &libc_api ? "/dev/zero" : FM_DEVPREFIX "zero";
}

/* One side's world for one case, made fresh for it. */
struct ctx {
	const struct api *A;
	enum target t;
	const char *path;
	int fd, ro, wo; /* opened O_RDWR, O_RDONLY, O_WRONLY */
	char *map; /* NPG pages: shared RW of fd */
	char *rmap; /* ... shared PROT_READ of ro */
	char *pmap; /* ... private RW of fd */
	char *hole; /* ... shared RW of fd, pages 4 to 7 unmapped */
	char *buf; /* 64 KiB of plain memory */
	char *rpage; /* a read-only page */
	char *guard; /* a page, then a PROT_NONE one */
	char *spare; /* NPG pages reserved PROT_NONE, for MAP_FIXED */
	char *free; /* NPG pages that are not mapped */
};

#define CLOSED_FD 4000 /* a descriptor number never open */

static void
ctx_maps(struct ctx *c)
{
	const struct api *a = c->A;

	c->map = a->mmap(NULL, NPG * PG, RW, MAP_SHARED, c->fd, 0);
	c->rmap = a->mmap(NULL, NPG * PG, PROT_READ, MAP_SHARED, c->ro, 0);
	c->pmap = a->mmap(NULL, NPG * PG, RW, MAP_PRIVATE, c->fd, 0);
	c->hole = a->mmap(NULL, NPG * PG, RW, MAP_SHARED, c->fd, 0);
	ASSERT(c->map != MAP_FAILED && c->rmap != MAP_FAILED);
	ASSERT(c->pmap != MAP_FAILED && c->hole != MAP_FAILED);
	ASSERT_OK(a->munmap(c->hole + 4 * PG, 4 * PG));
}

static void
ctx_setup(struct ctx *c, const struct api *a, enum target t, int maps)
{
	memset(c, 0, sizeof(*c));
	c->A = a;
	c->t = t;
	c->path = path_of(a, t);
	c->fd = a->open(c->path, O_RDWR);
	c->ro = a->open(c->path, O_RDONLY);
	c->wo = a->open(c->path, O_WRONLY);
	ASSERT(c->fd >= 0 && c->ro >= 0 && c->wo >= 0);
	c->map = c->rmap = c->pmap = c->hole = MAP_FAILED;
	if (maps)
		ctx_maps(c);
	c->buf = mmap(NULL, 16 * PG, RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	c->rpage =
	    mmap(NULL, PG, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	c->guard = mmap(NULL, 2 * PG, RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	c->spare = mmap(NULL, NPG * PG, PROT_NONE,
	    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	c->free = mmap(NULL, NPG * PG, PROT_NONE,
	    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	ASSERT(c->buf != MAP_FAILED && c->rpage != MAP_FAILED);
	ASSERT(c->guard != MAP_FAILED && c->spare != MAP_FAILED);
	ASSERT(c->free != MAP_FAILED);
	ASSERT_OK(mprotect(c->guard + PG, PG, PROT_NONE));
	ASSERT_OK(munmap(c->free, NPG * PG));
	ASSERT(fcntl(CLOSED_FD, F_GETFD) < 0);
}

static void
ctx_teardown(struct ctx *c)
{
	if (c->map != MAP_FAILED) {
		(void)c->A->munmap(c->map, NPG * PG);
		(void)c->A->munmap(c->rmap, NPG * PG);
		(void)c->A->munmap(c->pmap, NPG * PG);
		(void)c->A->munmap(c->hole, NPG * PG);
	}
	munmap(c->buf, 16 * PG);
	munmap(c->rpage, PG);
	munmap(c->guard, 2 * PG);
	munmap(c->spare, NPG * PG);
	(void)c->A->close(c->fd);
	(void)c->A->close(c->ro);
	(void)c->A->close(c->wo);
}

/* What a case's expression returns, reduced to what must be equal. */
static long
map_result(struct ctx *c, void *p, size_t len)
{
	int e = errno;

	if (p == MAP_FAILED)
		return -1;
	(void)c->A->munmap(p, len);
	errno = e;
	return 0;
}

static long
open_result(struct ctx *c, int fd)
{
	int fl;

	if (fd < 0)
		return -1;
	fl = fcntl(fd, F_GETFD);
	(void)c->A->close(fd);
	return 1000 + (fl & FD_CLOEXEC); /* open, and whether close-on-exec */
}

static long
stat_result(int r, const struct stat *st)
{
	return r < 0 ? -1 : (long)(st->st_mode & S_IFMT);
}

/* Shorthands for the cases. */
#define A c->A
#define F c->fd
#define MM(addr, len, prot, flags, fd, off) \
	map_result(c, A->mmap(addr, len, prot, flags, fd, off), len)
#define SH MAP_SHARED
#define PR MAP_PRIVATE
#define AN MAP_ANONYMOUS
#define FIX MAP_FIXED
#define VAL MAP_SHARED_VALIDATE
#define BIG ((size_t)1 << 47)

struct row {
	const char *name;
	long (*fn)(struct ctx *c);
	int known; /* 1 << target: a difference fomap cannot remove (yet) */
	const char *why;
};

/* ------------------------------------------------------------------------
 * mmap
 */
#define MMAP_ROWS(X, K)                                                        \
	X(len0, MM(NULL, 0, RW, SH, F, 0))                                     \
	X(len0_badfd, MM(NULL, 0, RW, SH, -1, 0))                              \
	X(len0_anon, MM(NULL, 0, RW, SH | AN, -1, 0))                          \
	X(badfd, MM(NULL, PG, RW, SH, -1, 0))                                  \
	X(closedfd, MM(NULL, PG, RW, SH, CLOSED_FD, 0))                        \
	X(fixed_unaligned_badfd, MM(c->spare + 100, PG, RW, SH | FIX, -1, 0))  \
	X(fixed_unaligned, MM(c->spare + 100, PG, RW, SH | FIX, F, 0))         \
	X(fixed_unaligned_len0, MM(c->spare + 100, 0, RW, SH | FIX, F, 0))     \
	X(fixed_too_high,                                                      \
	    MM((void *)0xfffffffffff00000, PG, RW, SH | FIX, F, 0))            \
	X(fixed_past_top,                                                      \
	    MM((void *)0x7ffffffff000, 2 * PG, RW, SH | FIX, F, 0))            \
	K(fixed, MM(c->spare, PG, RW, SH | FIX, F, 0), 1 << ZERO,              \
	    "MAP_FIXED of an engine object over memory that is not fomap's: "  \
	    "replace() registers the target before mremap moves the mapping "  \
	    "there (main's regression, the map/insert path)")                  \
	X(noreplace_taken,                                                     \
	    MM(c->spare, PG, RW, SH | MAP_FIXED_NOREPLACE, F, 0))              \
	X(noreplace_free, MM(c->free, PG, RW, SH | MAP_FIXED_NOREPLACE, F, 0)) \
	X(off_unaligned, MM(NULL, PG, RW, SH, F, 100))                         \
	X(off_unaligned_badfd, MM(NULL, PG, RW, SH, -1, 100))                  \
	X(off_unaligned_anon, MM(NULL, PG, RW, PR | AN, -1, 100))              \
	X(off_anon, MM(NULL, PG, RW, SH | AN, -1, 4 * PG))                     \
	X(off_overflow, MM(NULL, 2 * PG, RW, SH, F, 0x7fffffffffffe000LL))     \
	X(off_negative, MM(NULL, PG, RW, SH, F, -(off_t)PG))                   \
	X(off_negative_len0, MM(NULL, 0, RW, SH, F, -(off_t)PG))               \
	X(type0, MM(NULL, PG, RW, 0, F, 0))                                    \
	X(type0_anon, MM(NULL, PG, RW, AN, -1, 0))                             \
	X(type4, MM(NULL, PG, RW, 0x04, F, 0))                                 \
	X(typef, MM(NULL, PG, RW, 0x0f, F, 0))                                 \
	X(type_droppable_file, MM(NULL, PG, RW, MAP_DROPPABLE_, F, 0))         \
	X(validate,                                                            \
	    MM(NULL, PG, RW, VAL | MAP_POPULATE | MAP_NORESERVE, F, 0))        \
	X(validate_unknown, MM(NULL, PG, RW, VAL | 0x400000, F, 0))            \
	X(validate_sync, MM(NULL, PG, RW, VAL | MAP_SYNC, F, 0))               \
	X(validate_noreplace,                                                  \
	    MM(c->free, PG, RW, VAL | MAP_FIXED_NOREPLACE, F, 0))              \
	X(validate_growsdown, MM(NULL, PG, RW, VAL | MAP_GROWSDOWN, F, 0))     \
	X(validate_hugetlb, MM(NULL, PG, RW, VAL | MAP_HUGETLB, F, 0))         \
	X(validate_anon, MM(NULL, PG, RW, VAL | AN, -1, 0))                    \
	X(validate_anon_unknown, MM(NULL, PG, RW, VAL | AN | 0x400000, -1, 0)) \
	X(shared_unknown, MM(NULL, PG, RW, SH | 0x400000, F, 0))               \
	X(shared_sync, MM(NULL, PG, RW, SH | MAP_SYNC, F, 0))                  \
	X(private_sync, MM(NULL, PG, RW, PR | MAP_SYNC, F, 0))                 \
	X(prot_unknown, MM(NULL, PG, RW | 0x100, SH, F, 0))                    \
	X(prot_sem, MM(NULL, PG, RW | PROT_SEM_, SH, F, 0))                    \
	X(prot_growsdown, MM(NULL, PG, RW | PROT_GROWSDOWN, SH, F, 0))         \
	X(prot_all_bits, MM(NULL, PG, 0x7fffffff, PR, F, 0))                   \
	X(prot_none, MM(NULL, PG, PROT_NONE, SH, F, 0))                        \
	X(len_max, MM(NULL, SIZE_MAX, RW, SH, F, 0))                           \
	X(len_max_page, MM(NULL, SIZE_MAX - 4095, RW, SH, F, 0))               \
	X(len_max_2pages, MM(NULL, SIZE_MAX - 8191, RW, SH, F, 0))             \
	X(len_half, MM(NULL, SIZE_MAX / 2, RW, SH, F, 0))                      \
	X(len_task_size, MM(NULL, BIG, RW, SH, F, 0))                          \
	X(len_max_anon, MM(NULL, SIZE_MAX, RW, PR | AN, -1, 0))                \
	X(len_task_size_anon, MM(NULL, BIG, RW, PR | AN, -1, 0))               \
	X(growsdown_shared, MM(NULL, PG, RW, SH | MAP_GROWSDOWN, F, 0))        \
	X(growsdown_private, MM(NULL, PG, RW, PR | MAP_GROWSDOWN, F, 0))       \
	X(growsdown_anon, MM(NULL, PG, RW, PR | AN | MAP_GROWSDOWN, -1, 0))    \
	X(growsdown_anon_shared,                                               \
	    MM(NULL, PG, RW, SH | AN | MAP_GROWSDOWN, -1, 0))                  \
	X(hugetlb, MM(NULL, PG, RW, SH | MAP_HUGETLB, F, 0))                   \
	X(hugetlb_badfd, MM(NULL, 0, RW, SH | MAP_HUGETLB, -1, 0))             \
	X(hugetlb_len0, MM(NULL, 0, RW, SH | MAP_HUGETLB, F, 0))               \
	X(hugetlb_anon, MM(NULL, PG, RW, PR | AN | MAP_HUGETLB, -1, 0))        \
	X(hugetlb_anon_badsize,                                                \
	    MM(NULL, PG, RW, PR | AN | MAP_HUGETLB | (3 << 26), -1, 0))        \
	X(locked_anon, MM(NULL, PG, RW, PR | AN | MAP_LOCKED, -1, 0))          \
	X(stack_32bit, MM(NULL, PG, RW, PR | MAP_STACK | MAP_32BIT, F, 0))     \
	X(anon_ignores_fd, MM(NULL, PG, RW, PR | AN, CLOSED_FD, 0))            \
	X(ro_shared_write, MM(NULL, PG, RW, SH, c->ro, 0))                     \
	X(ro_shared_read, MM(NULL, PG, PROT_READ, SH, c->ro, 0))               \
	X(ro_private_write, MM(NULL, PG, RW, PR, c->ro, 0))                    \
	X(wo_shared_read, MM(NULL, PG, PROT_READ, SH, c->wo, 0))               \
	X(wo_shared_write, MM(NULL, PG, PROT_WRITE, SH, c->wo, 0))             \
	X(wo_private, MM(NULL, PG, PROT_READ, PR, c->wo, 0))                   \
	X(shared, MM(NULL, NPG *PG, RW, SH, F, 0))                             \
	X(shared_beyond_end, MM(NULL, 4 * NPG * PG, RW, SH, F, 0))             \
	X(private, MM(NULL, NPG *PG, RW | PROT_EXEC, PR, F, 0))                \
	X(populate, MM(NULL, NPG *PG, RW, SH | MAP_POPULATE, F, 0))            \
	K(droppable_anon, MM(NULL, PG, RW, MAP_DROPPABLE_ | AN, -1, 0),        \
	    1 << REG | 1 << ZERO,                                              \
	    "MAP_DROPPABLE needs map_object to pass the mapping type")

/* ------------------------------------------------------------------------
 * munmap, mprotect, msync
 */
#define MUNMAP_ROWS(X, K)                                         \
	X(len0, A->munmap(c->map, 0))                             \
	X(unaligned, A->munmap(c->map + 1, PG))                   \
	X(len_max, A->munmap(c->map, SIZE_MAX))                   \
	X(len_max_2pages, A->munmap(c->map, SIZE_MAX - 8191))     \
	X(len_past_top, A->munmap(c->map, (size_t)1 << 50))       \
	X(kernel_half, A->munmap((void *)0xffff800000000000, PG)) \
	X(nothing_mapped, A->munmap(c->free, PG))                 \
	X(part, A->munmap(c->map + PG, PG))                       \
	X(unaligned_len, A->munmap(c->map, PG + 1))               \
	X(with_hole, A->munmap(c->hole, NPG *PG))                 \
	X(whole, A->munmap(c->map, NPG *PG))

#define MPROTECT_ROWS(X, K)                                                  \
	X(len0, A->mprotect(c->map, 0, RW))                                  \
	X(len0_badprot, A->mprotect(c->map, 0, 0x100))                       \
	X(len0_unmapped, A->mprotect(c->free, 0, RW))                        \
	X(unaligned, A->mprotect(c->map + 1, PG, RW))                        \
	X(unaligned_len0_badprot, A->mprotect(c->map + 1, 0, 0x100))         \
	X(grows_both, A->mprotect(c->map, 0, PROT_GROWSDOWN | PROT_GROWSUP)) \
	X(badprot, A->mprotect(c->map, PG, 0x100))                           \
	X(badprot_unmapped, A->mprotect(c->free, PG, 0x100))                 \
	X(sem, A->mprotect(c->map, PG, RW | PROT_SEM_))                      \
	X(len_max, A->mprotect(c->map, SIZE_MAX, RW))                        \
	X(len_max_badprot, A->mprotect(c->map, SIZE_MAX, 0x100))             \
	X(len_max_2pages, A->mprotect(c->map, SIZE_MAX - 8191, RW))          \
	X(growsdown, A->mprotect(c->map, PG, RW | PROT_GROWSDOWN))           \
	X(unmapped, A->mprotect(c->free, PG, RW))                            \
	X(with_hole, A->mprotect(c->hole, NPG *PG, PROT_READ))               \
	X(none, A->mprotect(c->map, NPG *PG, PROT_NONE))                     \
	X(read, A->mprotect(c->map + PG, 2 * PG + 1, PROT_READ))             \
	X(exec, A->mprotect(c->map, NPG *PG, RW | PROT_EXEC))                \
	X(private_write, A->mprotect(c->pmap, NPG *PG, RW))                  \
	X(ro_shared_write, A->mprotect(c->rmap, PG, RW))

#define MSYNC_ROWS(X, K)                                              \
	X(len0, A->msync(c->map, 0, MS_SYNC))                         \
	X(len0_badflags, A->msync(c->map, 0, 0xff))                   \
	X(len0_unmapped, A->msync(c->free, 0, MS_SYNC))               \
	X(unaligned, A->msync(c->map + 1, PG, MS_SYNC))               \
	X(unaligned_len0, A->msync(c->map + 1, 0, MS_SYNC))           \
	X(unaligned_badflags, A->msync(c->map + 1, PG, 0xff))         \
	X(sync_and_async, A->msync(c->map, 0, MS_SYNC | MS_ASYNC))    \
	X(len_max, A->msync(c->map, SIZE_MAX, MS_SYNC))               \
	X(len_max_2pages, A->msync(c->map, SIZE_MAX - 8191, MS_SYNC)) \
	X(flags0, A->msync(c->map, PG, 0))                            \
	X(unmapped, A->msync(c->free, PG, MS_SYNC))                   \
	X(with_hole, A->msync(c->hole, NPG *PG, MS_SYNC))             \
	X(with_hole_async, A->msync(c->hole, NPG *PG, MS_ASYNC))      \
	X(sync, A->msync(c->map, NPG *PG, MS_SYNC))                   \
	X(async, A->msync(c->map, NPG *PG, MS_ASYNC))                 \
	X(invalidate, A->msync(c->map, NPG *PG, MS_INVALIDATE))       \
	X(private, A->msync(c->pmap, NPG *PG, MS_SYNC))               \
	X(unaligned_len, A->msync(c->map, PG + 1, MS_SYNC))

/*
 * Linux's /dev/zero maps MAP_PRIVATE, and MAP_SHARED of a read-only open,
 * as anonymous memory that keeps the file (vma_set_anonymous); the zero
 * driver maps MAP_PRIVATE as plain anonymous memory (no file: MADV_REMOVE
 * gives EINVAL, not EACCES; WIPEONFORK is allowed) and MAP_SHARED as its
 * object, read-only or not (MADV_FREE: EINVAL, as on any shared file).
 */
#define ZERO_PRIVATE "the zero driver's private memory has no file"
#define ZERO_RO_SHARED "/dev/zero maps a read-only shared open privately"
#define ENGINE_GUARD                                                         \
	"MADV_GUARD_INSTALL is refused on the engine's mappings: its fills " \
	"would map over the guard markers"

/* Populate a mapping twice the file's size: past its end an access would
 * SIGBUS (a regular file), or not (the zero device's object fits it). */
static long
populate_past_end(struct ctx *c, int advice)
{
	char *p = A->mmap(NULL, 2 * NPG * PG, RW, MAP_SHARED, F, 0);
	long r;
	int e;

	if (p == MAP_FAILED)
		return -2;
	r = A->madvise(p, 2 * NPG * PG, advice);
	e = errno;
	(void)A->munmap(p, 2 * NPG * PG);
	errno = e;
	return r;
}

/* ------------------------------------------------------------------------
 * madvise: every advice on each kind of mapping, and the range checks
 */
#define MADV_ARGS(X, K, adv, n)                           \
	X(shared_##n, A->madvise(c->map, 4 * PG, adv))    \
	X(readonly_##n, A->madvise(c->rmap, 4 * PG, adv)) \
	X(private_##n, A->madvise(c->pmap, 4 * PG, adv))  \
	X(hole_##n, A->madvise(c->hole, NPG *PG, adv))    \
	X(len0_##n, A->madvise(c->map, 0, adv))           \
	X(unaligned_##n, A->madvise(c->map + 1, PG, adv))
#define MADVISE_ROWS(X, K)                                                     \
	MADV_ARGS(X, K, MADV_NORMAL, normal)                                   \
	MADV_ARGS(X, K, MADV_RANDOM, random)                                   \
	MADV_ARGS(X, K, MADV_SEQUENTIAL, sequential)                           \
	MADV_ARGS(X, K, MADV_WILLNEED, willneed)                               \
	MADV_ARGS(X, K, MADV_DONTNEED, dontneed)                               \
	MADV_ARGS(X, K, 5, five)                                               \
	X(shared_free, A->madvise(c->map, 4 * PG, MADV_FREE))                  \
	K(readonly_free, A->madvise(c->rmap, 4 * PG, MADV_FREE), 1 << ZERO,    \
	    ZERO_RO_SHARED)                                                    \
	X(private_free, A->madvise(c->pmap, 4 * PG, MADV_FREE))                \
	X(hole_free, A->madvise(c->hole, NPG *PG, MADV_FREE))                  \
	X(len0_free, A->madvise(c->map, 0, MADV_FREE))                         \
	X(shared_remove, A->madvise(c->map, 4 * PG, MADV_REMOVE))              \
	X(readonly_remove, A->madvise(c->rmap, 4 * PG, MADV_REMOVE))           \
	K(private_remove, A->madvise(c->pmap, 4 * PG, MADV_REMOVE), 1 << ZERO, \
	    ZERO_PRIVATE)                                                      \
	X(hole_remove, A->madvise(c->hole, NPG *PG, MADV_REMOVE))              \
	X(len0_remove, A->madvise(c->map, 0, MADV_REMOVE))                     \
	MADV_ARGS(X, K, MADV_DONTFORK, dontfork)                               \
	MADV_ARGS(X, K, MADV_DOFORK, dofork)                                   \
	MADV_ARGS(X, K, MADV_MERGEABLE, mergeable)                             \
	MADV_ARGS(X, K, MADV_UNMERGEABLE, unmergeable)                         \
	MADV_ARGS(X, K, MADV_HUGEPAGE, hugepage)                               \
	MADV_ARGS(X, K, MADV_NOHUGEPAGE, nohugepage)                           \
	MADV_ARGS(X, K, MADV_DONTDUMP, dontdump)                               \
	MADV_ARGS(X, K, MADV_DODUMP, dodump)                                   \
	X(shared_wipeonfork, A->madvise(c->map, 4 * PG, MADV_WIPEONFORK))      \
	X(readonly_wipeonfork, A->madvise(c->rmap, 4 * PG, MADV_WIPEONFORK))   \
	K(private_wipeonfork, A->madvise(c->pmap, 4 * PG, MADV_WIPEONFORK),    \
	    1 << ZERO, ZERO_PRIVATE)                                           \
	X(hole_wipeonfork, A->madvise(c->hole, NPG *PG, MADV_WIPEONFORK))      \
	MADV_ARGS(X, K, MADV_KEEPONFORK, keeponfork)                           \
	MADV_ARGS(X, K, MADV_COLD, cold)                                       \
	MADV_ARGS(X, K, MADV_PAGEOUT, pageout)                                 \
	MADV_ARGS(X, K, MADV_POPULATE_READ, populate_read)                     \
	MADV_ARGS(X, K, MADV_POPULATE_WRITE, populate_write)                   \
	X(populate_read_none,                                                  \
	    (A->mprotect(c->map, 4 * PG, PROT_NONE),                           \
	        A->madvise(c->map, 4 * PG, MADV_POPULATE_READ)))               \
	X(populate_write_none,                                                 \
	    (A->mprotect(c->map, 4 * PG, PROT_NONE),                           \
	        A->madvise(c->map, 4 * PG, MADV_POPULATE_WRITE)))              \
	X(populate_read_wronly,                                                \
	    (A->mprotect(c->map, 4 * PG, PROT_WRITE),                          \
	        A->madvise(c->map, 4 * PG, MADV_POPULATE_READ)))               \
	X(populate_write_wronly,                                               \
	    (A->mprotect(c->map, 4 * PG, PROT_WRITE),                          \
	        A->madvise(c->map, 4 * PG, MADV_POPULATE_WRITE)))              \
	X(populate_read_past_end, populate_past_end(c, MADV_POPULATE_READ))    \
	X(populate_write_past_end, populate_past_end(c, MADV_POPULATE_WRITE))  \
	X(beyond_end_populate,                                                 \
	    A->madvise(c->map + NPG * PG - PG, 4 * PG, MADV_POPULATE_READ))    \
	MADV_ARGS(X, K, 24, dontneed_locked)                                   \
	MADV_ARGS(X, K, 25, collapse)                                          \
	MADV_ARGS(X, K, 26, unknown26)                                         \
	MADV_ARGS(X, K, 99, unknown99)                                         \
	K(shared_guard_install, A->madvise(c->map, 4 * PG, 102), 1 << ZERO,    \
	    ENGINE_GUARD)                                                      \
	K(readonly_guard_install, A->madvise(c->rmap, 4 * PG, 102), 1 << ZERO, \
	    ENGINE_GUARD)                                                      \
	X(private_guard_install, A->madvise(c->pmap, 4 * PG, 102))             \
	K(hole_guard_install, A->madvise(c->hole, NPG *PG, 102), 1 << ZERO,    \
	    ENGINE_GUARD)                                                      \
	X(len0_guard_install, A->madvise(c->map, 0, 102))                      \
	X(unaligned_guard_install, A->madvise(c->map + 1, PG, 102))            \
	MADV_ARGS(X, K, 103, guard_remove)                                     \
	MADV_ARGS(X, K, -1, negative)                                          \
	X(len_max, A->madvise(c->map, SIZE_MAX, MADV_NORMAL))                  \
	X(len_max_2pages, A->madvise(c->map, SIZE_MAX - 8191, MADV_NORMAL))    \
	X(len_past_top,                                                        \
	    A->madvise(c->map + 15 * PG, (size_t)1 << 50, MADV_NORMAL))        \
	X(len_max_badadvice, A->madvise(c->map, SIZE_MAX, 99))                 \
	X(unaligned_len, A->madvise(c->map, PG + 1, MADV_WILLNEED))            \
	X(unmapped, A->madvise(c->free, PG, MADV_WILLNEED))

/* ------------------------------------------------------------------------
 * read, write, fstat, open, close
 */
#define RD(fd, p, n) A->read(fd, p, n)
#define WR(fd, p, n) A->write(fd, p, n)
#define RW_ROWS(X, K)                                        \
	X(read, RD(F, c->buf, 64))                           \
	X(read_null, RD(F, NULL, 10))                        \
	X(read_null_len0, RD(F, NULL, 0))                    \
	X(read_len0, RD(F, c->buf, 0))                       \
	X(read_kernel_len0, RD(F, (void *)-1, 0))            \
	X(read_kernel, RD(F, (void *)-4096, 1))              \
	X(read_top, RD(F, (void *)0x7ffffffff000, 16))       \
	X(read_readonly, RD(F, c->rpage, 16))                \
	X(read_guard, RD(F, c->guard + PG, 16))              \
	X(read_into_guard, RD(F, c->guard + PG - 1, 2 * PG)) \
	X(read_into_guard_page, RD(F, c->guard, 2 * PG))     \
	X(read_len_max, RD(F, c->buf, SIZE_MAX))             \
	X(read_len_ssize_max, RD(F, c->buf, SSIZE_MAX))      \
	X(read_len_task, RD(F, c->buf, BIG))                 \
	X(read_unmapped, RD(F, c->free, 16))                 \
	X(read_wronly, RD(c->wo, c->buf, 1))                 \
	X(read_wronly_null, RD(c->wo, NULL, 1))              \
	X(read_rdonly, RD(c->ro, c->buf, 1))                 \
	X(read_badfd, RD(-1, c->buf, 1))                     \
	X(read_closed, RD(CLOSED_FD, NULL, 0))               \
	X(write, WR(F, c->buf, 64))                          \
	X(write_null, WR(F, NULL, 10))                       \
	X(write_null_len0, WR(F, NULL, 0))                   \
	X(write_kernel, WR(F, (void *)-4096, 1))             \
	X(write_guard, WR(F, c->guard + PG, 16))             \
	X(write_from_guard, WR(F, c->guard + PG - 8, 16))    \
	X(write_readonly_page, WR(F, c->rpage, 16))          \
	X(write_len_max, WR(F, c->buf, SIZE_MAX))            \
	X(write_rdonly, WR(c->ro, c->buf, 1))                \
	X(write_wronly, WR(c->wo, c->buf, 1))                \
	X(write_badfd, WR(-1, c->buf, 1))

#define ST(fd, p) stat_result(A->fstat(fd, p), (struct stat *)(void *)c->buf)
#define FSTAT_ROWS(X, K)                                                  \
	X(fstat, ST(F, (struct stat *)(void *)c->buf))                    \
	X(fstat_ro, ST(c->ro, (struct stat *)(void *)c->buf))             \
	X(fstat_null, ST(F, NULL))                                        \
	X(fstat_readonly, ST(F, (struct stat *)(void *)c->rpage))         \
	X(fstat_guard, ST(F, (struct stat *)(void *)(c->guard + PG - 8))) \
	X(fstat_kernel, ST(F, (struct stat *)-4096))                      \
	X(fstat_badfd, ST(-1, NULL))                                      \
	X(fstat_closed, ST(CLOSED_FD, (struct stat *)(void *)c->buf))

#define OP(flags) open_result(c, A->open(c->path, flags, 0600))
#define OPEN_ROWS(X, K)                                                 \
	X(rdonly, OP(O_RDONLY))                                         \
	X(wronly, OP(O_WRONLY))                                         \
	X(rdwr, OP(O_RDWR))                                             \
	X(cloexec, OP(O_RDWR | O_CLOEXEC))                              \
	X(nonblock, OP(O_RDWR | O_NONBLOCK))                            \
	X(creat, OP(O_RDWR | O_CREAT))                                  \
	X(creat_excl, OP(O_RDWR | O_CREAT | O_EXCL))                    \
	X(excl, OP(O_RDWR | O_EXCL))                                    \
	X(directory, OP(O_RDONLY | O_DIRECTORY))                        \
	X(tmpfile, OP(O_RDWR | O_TMPFILE))                              \
	X(path, OP(O_PATH))                                             \
	X(path_cloexec, OP(O_PATH | O_CLOEXEC))                         \
	X(path_directory, OP(O_PATH | O_DIRECTORY))                     \
	X(direct, OP(O_RDONLY | O_DIRECT))                              \
	X(trunc, OP(O_RDONLY | O_NOCTTY | O_NOFOLLOW | O_SYNC))         \
	X(unknown_bit, OP(O_RDONLY | 0x40000000))                       \
	X(null_path, open_result(c, A->open(NULL, O_RDONLY)))           \
	K(accmode, OP(O_ACCMODE), 1 << ZERO,                            \
	    "an ioctl-only open would be mappable: check_access reads " \
	    "O_ACCMODE (3) as a readable open")

static long
close_twice(struct ctx *c)
{
	int fd = A->open(c->path, O_RDONLY);

	if (fd < 0 || A->close(fd) < 0)
		return -2;
	return A->close(fd);
}

static long
path_calls(struct ctx *c)
{
	int fd = A->open(c->path, O_PATH);
	long r = 0;
	struct stat st;

	if (fd < 0)
		return -2;
	if (A->fstat(fd, &st) < 0)
		r |= 1;
	if (A->read(fd, c->buf, 1) < 0 && errno == EBADF)
		r |= 2;
	if (A->write(fd, c->buf, 1) < 0 && errno == EBADF)
		r |= 4;
	if (A->mmap(NULL, PG, PROT_READ, PR, fd, 0) == MAP_FAILED &&
	    errno == EBADF)
		r |= 8;
	if (A->close(fd) == 0)
		r |= 16;
	return r;
}

#define CLOSE_ROWS(X, K)                     \
	X(close, A->close(c->ro))            \
	X(close_badfd, A->close(-1))         \
	X(close_closed, A->close(CLOSED_FD)) \
	X(close_twice, close_twice(c))       \
	X(path, path_calls(c))

/* ------------------------------------------------------------------------
 * The runner: each table's rows become functions row_<table>_<name>.
 */

struct result {
	long r;
	int err;
};

static int want_maps; /* the table's cases need the mappings of struct ctx */

static struct result
run_side(const struct row *row, const struct api *a, enum target t)
{
	struct ctx c;
	struct result res;

	ctx_setup(&c, a, t, want_maps);
	errno = 0;
	res.r = row->fn(&c);
	res.err = res.r == -1 ? errno : 0;
	ctx_teardown(&c);
	return res;
}

static void
run_table(const char *call, const struct row *rows, size_t n)
{
	int bad = 0;

	for (int t = 0; t < NTARGETS; t++) {
		for (size_t i = 0; i < n; i++) {
			const struct row *row = &rows[i];
			struct result l = run_side(row, &libc_api, t);
			struct result f = run_side(row, &fomap_api, t);
			int same = l.r == f.r && l.err == f.err;
			int known = row->known & (1 << t);

			if (same && known)
				printf("# %s %s: %s: known difference gone\n",
				    call, target_name[t], row->name);
			if (!same && known)
				printf("# %s %s: %s: known: %s\n", call,
				    target_name[t], row->name, row->why);
			if (same || known)
				continue;
			printf("# %s %s: %s: libc %ld (%s), fomap %ld (%s)\n",
			    call, target_name[t], row->name, l.r,
			    l.err ? strerror(l.err) : "-", f.r,
			    f.err ? strerror(f.err) : "-");
			bad++;
		}
	}
	if (bad)
		fm_test_fail(__FILE__, __LINE__, "%s: %d answers differ", call,
		    bad);
}

static void
make_regular_file(void)
{
	char buf[PG];
	int fd;

	snprintf(regpath, sizeof regpath, "/tmp/fomap-parity-%d",
	    (int)getpid());
	fd = open(regpath, O_RDWR | O_CREAT | O_TRUNC, 0600);
	ASSERT_GE(fd, 0);
	for (int i = 0; i < NPG; i++) {
		memset(buf, 'a' + i, sizeof buf);
		ASSERT_EQ(write(fd, buf, sizeof buf), PG);
	}
	close(fd);
}

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define FN(name) CAT(CAT(row_, P), name)
#define DEFROW(name, expr)                   \
	static long FN(name)(struct ctx * c) \
	{                                    \
		return (long)(expr);         \
	}
#define DEFKNOWN(name, expr, tgts, why) DEFROW(name, expr)
#define ROW(name, expr) {#name ": " #expr, FN(name), 0, NULL},
#define KNOWN(name, expr, tgts, why) {#name ": " #expr, FN(name), tgts, why},

/* A table's test; maps: its cases use mappings (the engine serves zero's). */
#define PARITY_TEST(call, ROWS, maps)                               \
	ROWS(DEFROW, DEFKNOWN)                                      \
	static const struct row call##_rows[] = {ROWS(ROW, KNOWN)}; \
	TEST(parity_##call)                                         \
	{                                                           \
		fm_test_need_uffd();                                \
		want_maps = maps;                                   \
		make_regular_file();                                \
		run_table(#call, call##_rows,                       \
		    sizeof call##_rows / sizeof call##_rows[0]);    \
		unlink(regpath);                                    \
	}

#define P mmap_
PARITY_TEST(mmap, MMAP_ROWS, 1)
#undef P
#define P munmap_
PARITY_TEST(munmap, MUNMAP_ROWS, 1)
#undef P
#define P mprotect_
PARITY_TEST(mprotect, MPROTECT_ROWS, 1)
#undef P
#define P msync_
PARITY_TEST(msync, MSYNC_ROWS, 1)
#undef P
#define P madvise_
PARITY_TEST(madvise, MADVISE_ROWS, 1)
#undef P
#define P rw_
PARITY_TEST(read_write, RW_ROWS, 1)
#undef P
#define P fstat_
PARITY_TEST(fstat, FSTAT_ROWS, 0)
#undef P
#define P open_
PARITY_TEST(open, OPEN_ROWS, 0)
#undef P
#define P close_
PARITY_TEST(close, CLOSE_ROWS, 1)
#undef P

/* ------------------------------------------------------------------------
 * Descriptors behind fomap's back
 */

static struct fm_object *
object(size_t len)
{
	struct fm_object *obj;

	ASSERT_EQ(fm_object_create(NULL, len, NULL, &obj), 0);
	return obj;
}

TEST(raw_close_gives_the_number_back)
{
	struct fm_object *obj = object(4 * PG);
	int fd = testdev_open("stale-close", obj, RW, O_RDWR), f;
	struct stat st;
	char c;

	ASSERT_ERRNO(fm_read(fd, &c, 1), ENODEV); /* the device's answer */
	ASSERT_OK(close(fd)); /* behind fomap's back */
	f = testdev_tmpfile(4 * PG); /* the lowest free number: fd's */
	ASSERT_EQ(f, fd);
	ASSERT_EQ(lseek(f, 3, SEEK_SET), 3);
	ASSERT_EQ(fm_read(fd, &c, 1), 1); /* the program's file now */
	ASSERT_EQ(c, 3);
	ASSERT_OK(fm_fstat(fd, &st));
	ASSERT(S_ISREG(st.st_mode));
	/* The device's open was released with the stale entry. */
	ASSERT_OK(fm_dev_unregister("stale-close"));
	ASSERT_OK(fm_close(fd)); /* closes the program's file */
	ASSERT(fcntl(fd, F_GETFD) < 0);
	ASSERT_ERRNO(fm_close(fd), EBADF);
	fm_object_rele(obj);
}

TEST(raw_close_then_fm_close_is_ebadf)
{
	int fd = fm_open(FM_DEVPREFIX "zero", O_RDWR);

	ASSERT_GE(fd, 0);
	ASSERT_OK(close(fd));
	ASSERT_ERRNO(fm_close(fd), EBADF);
	ASSERT_ERRNO(fm_read(fd, NULL, 0), EBADF);
}

TEST(dup2_over_a_fomap_descriptor)
{
	fm_test_need_uffd();
	struct fm_object *obj = object(4 * PG);
	int fd = testdev_open("stale-dup2", obj, RW, O_RDWR);
	int file = testdev_tmpfile(4 * PG);
	struct stat st;
	char *p;

	ASSERT_EQ(dup2(file, fd), fd);
	p = fm_mmap(NULL, 4 * PG, PROT_READ, MAP_SHARED, fd, 0);
	ASSERT(p != MAP_FAILED);
	ASSERT_EQ(p[PG + 3], (char)((PG + 3) % 251)); /* the file's bytes */
	ASSERT_OK(fm_munmap(p, 4 * PG));
	ASSERT_OK(fm_fstat(fd, &st));
	ASSERT(S_ISREG(st.st_mode));
	ASSERT_OK(fm_dev_unregister("stale-dup2"));
	ASSERT_OK(fm_close(fd));
	ASSERT_OK(fm_close(file));
	fm_object_rele(obj);
}

TEST(reopened_number_replaces_the_stale_entry)
{
	struct fm_object *obj = object(4 * PG);
	int a = testdev_open("stale-reopen", obj, RW, O_RDWR), b;

	ASSERT_OK(close(a));
	b = fm_open(FM_DEVPREFIX "stale-reopen", O_RDWR);
	ASSERT_EQ(b, a); /* the kernel gave the number out again */
	ASSERT_EQ(fm_dev_unregister("stale-reopen"), -EBUSY); /* b's open */
	ASSERT_OK(fm_close(b));
	ASSERT_OK(fm_dev_unregister("stale-reopen")); /* a's went too */
	fm_object_rele(obj);
}

TEST(fm_open_honours_cloexec)
{
	char path[] = "/tmp/fomap-cloexec-XXXXXX";
	int t = mkstemp(path);
	const char *paths[] = {path, FM_DEVPREFIX "zero"};

	ASSERT_GE(t, 0);
	close(t);
	for (int i = 0; i < 2; i++) {
		int a = fm_open(paths[i], O_RDWR);
		int b = fm_open(paths[i], O_RDWR | O_CLOEXEC);

		ASSERT(a >= 0 && b >= 0);
		ASSERT_EQ(fcntl(a, F_GETFD) & FD_CLOEXEC, 0);
		ASSERT_EQ(fcntl(b, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
		ASSERT_OK(fm_close(a));
		ASSERT_OK(fm_close(b));
	}
	unlink(path);
}

/* ------------------------------------------------------------------------
 * What the kernel maps, it maps as asked
 */

TEST(mmap_of_dev_zero_goes_to_the_kernel)
{
	int z = open("/dev/zero", O_RDWR), p[2];
	char *s, *q;

	ASSERT_GE(z, 0);
	s = fm_mmap(NULL, 4 * PG, RW, MAP_SHARED, z, 0);
	q = fm_mmap(NULL, 4 * PG, RW, MAP_PRIVATE, z, 0);
	ASSERT(s != MAP_FAILED && q != MAP_FAILED);
	s[PG] = 's';
	q[PG] = 'q';
	ASSERT_EQ(s[PG], 's');
	ASSERT_EQ(q[2 * PG], 0);
	ASSERT_OK(fm_mprotect(s, 4 * PG, PROT_READ));
	ASSERT_EQ(fm_test_probe(s, 1), SIGSEGV);
	ASSERT_OK(fm_munmap(s, 4 * PG));
	ASSERT_OK(fm_munmap(q, 4 * PG));
	close(z);
	ASSERT_OK(pipe(p)); /* the kernel's own answer for a pipe */
	ASSERT_ERRNO(fm_mmap(NULL, PG, PROT_READ, MAP_SHARED, p[0], 0), ENODEV);
	close(p[0]);
	close(p[1]);
}

/* Whether the VmFlags of the mapping at p in /proc/self/smaps hold flag. */
static int
vmflag(const void *p, const char *flag)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	char line[512];
	int in = 0, found = 0;

	ASSERT(f != NULL);
	while (fgets(line, sizeof line, f)) {
		unsigned long lo, hi;

		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 &&
		    strchr(line, '-') < strchr(line, ' ')) {
			in = (uintptr_t)p >= lo && (uintptr_t)p < hi;
			continue;
		}
		if (in && strncmp(line, "VmFlags:", 8) == 0) {
			char want[8];

			snprintf(want, sizeof want, " %s", flag);
			found = strstr(line, want) != NULL;
			break;
		}
	}
	fclose(f);
	return found;
}

TEST(growsdown_and_locked_reach_the_kernel)
{
	char *g = fm_mmap(NULL, 4 * PG, RW,
	    MAP_PRIVATE | MAP_ANONYMOUS | MAP_GROWSDOWN, -1, 0);
	char *l = fm_mmap(NULL, 4 * PG, RW,
	    MAP_PRIVATE | MAP_ANONYMOUS | MAP_LOCKED, -1, 0);
	int fd = testdev_tmpfile(4 * PG);
	char *f =
	    fm_mmap(NULL, 4 * PG, PROT_READ, MAP_SHARED | MAP_LOCKED, fd, 0);

	ASSERT(g != MAP_FAILED && l != MAP_FAILED && f != MAP_FAILED);
	ASSERT(vmflag(g, "gd"));
	ASSERT(vmflag(l, "lo"));
	ASSERT(vmflag(f, "lo"));
	ASSERT_OK(fm_munmap(g, 4 * PG));
	ASSERT_OK(fm_munmap(l, 4 * PG));
	ASSERT_OK(fm_munmap(f, 4 * PG));
	close(fd);
}

/* ------------------------------------------------------------------------
 * Advice on the engine's mappings
 */

static size_t
resident(struct fm_object *obj, size_t len)
{
	size_t n = len / PG, k = 0;
	unsigned char *vec = malloc(n);

	ASSERT(vec != NULL);
	ASSERT_EQ(fm_object_mincore(obj, 0, len, vec), 0);
	for (size_t i = 0; i < n; i++)
		k += vec[i] & FM_PG_RESIDENT;
	free(vec);
	return k;
}

TEST(willneed_is_bounded)
{
	fm_test_need_uffd();
	size_t len = (size_t)512 << 20, huge = (size_t)64 << 30;
	struct fm_object *obj = object(len);
	int fd = testdev_open("willneed", obj, RW, O_RDWR);
	int z = fm_open(FM_DEVPREFIX "zero", O_RDWR);
	char *p = fm_mmap(NULL, len, RW, MAP_SHARED, fd, 0), *h;
	struct timespec t0, t1;

	ASSERT(p != MAP_FAILED);
	ASSERT_OK(fm_madvise(p, len, MADV_WILLNEED));
	ASSERT_GE(resident(obj, len), 1);
	ASSERT_LE(resident(obj, len), (32 << 20) / PG);
	ASSERT_OK(fm_munmap(p, len));
	/* Larger than memory, sparse: advice, never exhaustion. */
	h = fm_mmap(NULL, huge, RW, MAP_SHARED | MAP_NORESERVE, z, 0);
	ASSERT(h != MAP_FAILED);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	ASSERT_OK(fm_madvise(h, huge, MADV_WILLNEED));
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ASSERT_LE(t1.tv_sec - t0.tv_sec, 10);
	ASSERT_EQ(h[huge - PG], 0);
	ASSERT_OK(fm_munmap(h, huge));
	ASSERT_OK(fm_close(z));
	ASSERT_OK(fm_close(fd));
	ASSERT_OK(fm_dev_unregister("willneed"));
	fm_object_rele(obj);
}

TEST(populate_faults_pages_in)
{
	fm_test_need_uffd();
	struct fm_object *obj = object(4 * PG);
	int fd = testdev_open("populate", obj, RW, O_RDWR);
	int z = fm_open(FM_DEVPREFIX "zero", O_RDWR);
	char *a = fm_mmap(NULL, 64 * PG, RW, MAP_SHARED, z, 0);
	char *p = fm_mmap(NULL, 64 * PG, RW, MAP_PRIVATE, fd, 0);
	char *b = fm_mmap(NULL, 8 * PG, RW, MAP_SHARED, fd, 0);
	struct fm_stats before, after;

	ASSERT(a != MAP_FAILED && p != MAP_FAILED && b != MAP_FAILED);
	ASSERT_OK(fm_madvise(a, 32 * PG, MADV_POPULATE_READ));
	ASSERT_OK(fm_madvise(a + 32 * PG, 32 * PG, MADV_POPULATE_WRITE));
	fm_engine_stats(&before);
	for (int i = 0; i < 64; i++)
		a[i * PG] = 1; /* mapped, writable: no fault */
	fm_engine_stats(&after);
	ASSERT_EQ(after.faults, before.faults);
	/* Past the object's end an access is SIGBUS: EFAULT, no hang. */
	ASSERT_ERRNO(fm_madvise(b, 8 * PG, MADV_POPULATE_READ), EFAULT);
	ASSERT_EQ(resident(obj, 4 * PG), 4);
	ASSERT_ERRNO(fm_madvise(p, 8 * PG, MADV_POPULATE_WRITE), EFAULT);
	ASSERT_OK(fm_madvise(p, 4 * PG, MADV_POPULATE_WRITE));
	fm_engine_stats(&before);
	p[PG] = 'p'; /* copied already: no fault */
	fm_engine_stats(&after);
	ASSERT_EQ(after.faults, before.faults);
	ASSERT_EQ(b[PG], 0); /* private */
	ASSERT_OK(fm_munmap(a, 64 * PG));
	ASSERT_OK(fm_munmap(p, 64 * PG));
	ASSERT_OK(fm_munmap(b, 8 * PG));
	ASSERT_OK(fm_close(z));
	ASSERT_OK(fm_close(fd));
	ASSERT_OK(fm_dev_unregister("populate"));
	fm_object_rele(obj);
}

TEST(remove_drops_the_pages_of_every_mapping)
{
	fm_test_need_uffd();
	struct fm_object *obj = object(8 * PG);
	int fd = testdev_open("remove", obj, RW, O_RDWR);
	char *a = fm_mmap(NULL, 8 * PG, RW, MAP_SHARED, fd, 0);
	char *b = fm_mmap(NULL, 8 * PG, RW, MAP_SHARED, fd, 0);
	char *p = fm_mmap(NULL, 8 * PG, RW, MAP_PRIVATE, fd, 0);

	ASSERT(a != MAP_FAILED && b != MAP_FAILED && p != MAP_FAILED);
	memset(a, 7, 8 * PG);
	ASSERT_EQ(b[3 * PG], 7);
	ASSERT_OK(fm_madvise(a + 2 * PG, 4 * PG, MADV_REMOVE));
	ASSERT_EQ(resident(obj, 8 * PG), 4);
	ASSERT_EQ(b[3 * PG], 0); /* gone from every mapping */
	ASSERT_EQ(a[5 * PG], 0);
	ASSERT_EQ(b[PG], 7);
	ASSERT_EQ(b[6 * PG], 7);
	ASSERT_ERRNO(fm_madvise(p, 8 * PG, MADV_REMOVE), EACCES);
	ASSERT_OK(fm_munmap(a, 8 * PG));
	ASSERT_OK(fm_munmap(b, 8 * PG));
	ASSERT_OK(fm_munmap(p, 8 * PG));
	ASSERT_OK(fm_close(fd));
	ASSERT_OK(fm_dev_unregister("remove"));
	fm_object_rele(obj);
}

TEST(every_advice_leaves_the_mapping_working)
{
	fm_test_need_uffd();
	static const int advice[] = {MADV_NORMAL, MADV_RANDOM, MADV_SEQUENTIAL,
	    MADV_WILLNEED, MADV_DONTNEED, MADV_REMOVE, MADV_DONTFORK,
	    MADV_DOFORK, MADV_MERGEABLE, MADV_UNMERGEABLE, MADV_HUGEPAGE,
	    MADV_NOHUGEPAGE, MADV_DONTDUMP, MADV_DODUMP, MADV_KEEPONFORK,
	    MADV_COLD, MADV_PAGEOUT, MADV_POPULATE_READ, MADV_POPULATE_WRITE,
	    24 /* DONTNEED_LOCKED */};
	int z = fm_open(FM_DEVPREFIX "zero", O_RDWR);

	for (size_t i = 0; i < sizeof advice / sizeof advice[0]; i++) {
		char *a = fm_mmap(NULL, 16 * PG, RW, MAP_SHARED, z, 0);

		ASSERT(a != MAP_FAILED);
		memset(a, 5, 16 * PG);
		ASSERT_OK(fm_madvise(a + 4 * PG, 8 * PG, advice[i]));
		for (int k = 0; k < 16; k++) {
			int removed =
			    advice[i] == MADV_REMOVE && k >= 4 && k < 12;

			if (a[k * PG] != (removed ? 0 : 5))
				fm_test_fail(__FILE__, __LINE__,
				    "advice %d: page %d holds %d", advice[i], k,
				    a[k * PG]);
			a[k * PG] = 5;
		}
		ASSERT_OK(fm_munmap(a, 16 * PG));
	}
	ASSERT_OK(fm_close(z));
}

TEST(guard_pages_are_the_kernels_only)
{
	fm_test_need_uffd();
	int z = fm_open(FM_DEVPREFIX "zero", O_RDWR);
	char *a = fm_mmap(NULL, 16 * PG, RW, MAP_SHARED, z, 0);
	char *h =
	    fm_mmap(NULL, 16 * PG, RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	ASSERT(a != MAP_FAILED && h != MAP_FAILED);
	if (fm_madvise(h + 4 * PG, PG, 102 /* MADV_GUARD_INSTALL */) < 0) {
		ASSERT_EQ(errno, EINVAL); /* a kernel before 6.13 */
		fm_test_skip("no MADV_GUARD_INSTALL");
	}
	ASSERT_EQ(fm_test_probe(h + 4 * PG, 0), SIGSEGV);
	ASSERT_OK(fm_madvise(h + 4 * PG, PG, 103 /* MADV_GUARD_REMOVE */));
	ASSERT_EQ(fm_test_probe(h + 4 * PG, 0), 0);
	/* The engine's fills would map over guard markers: refused. */
	memset(a, 5, 16 * PG);
	ASSERT_ERRNO(fm_madvise(a + 4 * PG, PG, 102), EINVAL);
	ASSERT_OK(fm_madvise(a, 16 * PG, MADV_DONTNEED));
	ASSERT_OK(fm_madvise(a, 16 * PG, MADV_WILLNEED));
	for (int k = 0; k < 16; k++)
		ASSERT_EQ(a[k * PG], 5);
	ASSERT_OK(fm_madvise(a, 16 * PG, 103));
	ASSERT_OK(fm_munmap(a, 16 * PG));
	ASSERT_OK(fm_munmap(h, 16 * PG));
	ASSERT_OK(fm_close(z));
}

/*
 * A hole in the range: msync(2) and madvise(2) act on every mapped part
 * and fail with ENOMEM at the end; so do fm_msync and fm_madvise on the
 * engine's mappings, after the hole as before it.
 */
static char *
map_with_hole(int fd)
{
	char *a = testdev_map(fd, 16 * PG, RW, MAP_SHARED);

	ASSERT_OK(fm_munmap(a + 4 * PG, 4 * PG));
	return a;
}

TEST(msync_writes_back_around_a_hole)
{
	fm_test_need_uffd();
	int file = testdev_tmpfile(16 * PG);
	struct fm_object *obj = testdev_store(file, 0, 16 * PG);
	int fd = testdev_open("msync-hole", obj, RW, O_RDWR);
	char *a = map_with_hole(fd);

	a[PG] = 'a';
	a[12 * PG] = 'b';
	ASSERT_ERRNO(fm_msync(a, 16 * PG, MS_SYNC), ENOMEM);
	ASSERT_EQ(testdev_file_byte(file, PG), 'a');
	ASSERT_EQ(testdev_file_byte(file, 12 * PG), 'b');
	a[13 * PG] = 'c'; /* the range starts in the hole */
	ASSERT_ERRNO(fm_msync(a + 4 * PG, 12 * PG, MS_ASYNC), ENOMEM);
	ASSERT_EQ(testdev_file_byte(file, 13 * PG), 'c');
	ASSERT_OK(fm_munmap(a + 8 * PG, 8 * PG));
	testdev_done(a, 4 * PG, fd, obj);
	close(file);
}

static unsigned long
faults_touching(char *a, int from, int to)
{
	struct fm_stats s0, s1;

	fm_engine_stats(&s0);
	for (int i = from; i < to; i++)
		a[i * PG] = 1;
	fm_engine_stats(&s1);
	return s1.faults - s0.faults;
}

TEST(madvise_advises_around_a_hole)
{
	fm_test_need_uffd();
	struct fm_object *obj = object(16 * PG);
	int fd = testdev_open("madvise-hole", obj, RW, O_RDWR);
	char *a = map_with_hole(fd), *b = map_with_hole(fd);

	if (getenv("FOMAP_FAULT_AROUND") != NULL)
		fm_test_skip("FOMAP_FAULT_AROUND overrides the advice");
	ASSERT_ERRNO(fm_madvise(a, 16 * PG, MADV_WILLNEED), ENOMEM);
	ASSERT_EQ(resident(obj, 16 * PG), 12); /* all but the hole's */
	ASSERT_OK(fm_object_unmap(obj, 0, 16 * PG, FM_UNMAP_DISCARD));
	ASSERT_ERRNO(fm_madvise(b, 16 * PG, MADV_SEQUENTIAL), ENOMEM);
	ASSERT_EQ(faults_touching(b, 0, 4), 1); /* one window each */
	ASSERT_EQ(faults_touching(b, 8, 16), 1);
	ASSERT_ERRNO(fm_madvise(b, 16 * PG, MADV_RANDOM), ENOMEM);
	ASSERT_OK(fm_object_unmap(obj, 0, 16 * PG, FM_UNMAP_DISCARD));
	ASSERT_EQ(faults_touching(b, 8, 16), 8); /* a page a fault */
	ASSERT_OK(fm_munmap(b, 16 * PG));
	ASSERT_OK(fm_munmap(a, 16 * PG));
	ASSERT_OK(fm_close(fd));
	ASSERT_OK(fm_dev_unregister("madvise-hole"));
	fm_object_rele(obj);
}

/*
 * A mapping that runs past its object's end (a driver's fo_mmap let it):
 * msync(2) of a file mapped past its end succeeds, and so does fm_msync;
 * what lies past the end has nothing to write back.
 */
TEST(msync_of_a_mapping_past_the_objects_end)
{
	fm_test_need_uffd();
	int file = testdev_tmpfile(4 * PG);
	struct fm_object *obj = testdev_store(file, 0, 4 * PG);
	struct fm_object *anon = object(4 * PG);
	int fd = testdev_open("msync-past", obj, RW, O_RDWR);
	int afd = testdev_open("msync-past-anon", anon, RW, O_RDWR);
	char *k = mmap(NULL, 8 * PG, RW, MAP_SHARED, file, 0);
	char *a = testdev_map(fd, 8 * PG, RW, MAP_SHARED);
	char *b = testdev_map(afd, 8 * PG, RW, MAP_SHARED);

	ASSERT(k != MAP_FAILED);
	ASSERT_OK(msync(k, 8 * PG, MS_SYNC)); /* the kernel's answer */
	a[3 * PG] = 's';
	ASSERT_OK(fm_msync(a, 8 * PG, MS_SYNC));
	ASSERT_EQ(testdev_file_byte(file, 3 * PG), 's');
	ASSERT_OK(fm_msync(a + 4 * PG, 4 * PG, MS_SYNC)); /* all past it */
	b[0] = 'n'; /* no pgo_put: nothing to write back */
	ASSERT_OK(fm_msync(b, 8 * PG, MS_SYNC));
	ASSERT_OK(munmap(k, 8 * PG));
	testdev_done(b, 8 * PG, afd, anon);
	testdev_done(a, 8 * PG, fd, obj);
	close(file);
}

/* ------------------------------------------------------------------------
 * poll, beside the kernel's
 */

typedef int poll_fn(struct pollfd *, nfds_t, int);

static poll_fn *const polls[] = {poll, fm_poll};
static const char *const poll_name[] = {"poll", "fm_poll"};

/*
 * A device whose readiness is the flag dev_ready, and that raises SIGUSR1
 * in the thread that looks at it once raise_at_look is set: a signal that
 * comes while fm_poll looks, before it waits.
 */
static atomic_int dev_ready, raise_at_look, wake_at_look;
static struct fm_dev *_Atomic flag_device;

static int
flag_poll(struct fm_dev *dev, int events)
{
	atomic_store(&flag_device, dev);
	if (atomic_exchange(&raise_at_look, 0))
		raise(SIGUSR1);
	if (atomic_load(&wake_at_look))
		fm_dev_wakeup(dev); /* every look is stale at once */
	return atomic_load(&dev_ready) ? events & POLLIN : 0;
}

static const struct fm_cdevsw flag_cdevsw = {.d_poll = flag_poll};

static int
flag_dev(void)
{
	int fd;

	ASSERT_OK(fm_dev_register("pollflag", &flag_cdevsw, NULL));
	fd = fm_open(FM_DEVPREFIX "pollflag", O_RDONLY);
	ASSERT_GE(fd, 0);
	return fd;
}

static volatile sig_atomic_t caught;

static void
on_signal(int sig)
{
	(void)sig;
	caught++;
}

/* A handler for sig, with SA_RESTART: poll(2) is never restarted. */
static void
catch_signal(int sig)
{
	struct sigaction sa = {.sa_handler = on_signal, .sa_flags = SA_RESTART};

	sigemptyset(&sa.sa_mask);
	ASSERT_OK(sigaction(sig, &sa, NULL));
}

/* fn(p, n, 2000) with SIGALRM caught 50 ms in: -1 EINTR, no entry ready. */
static void
check_eintr(int k, struct pollfd *p, nfds_t n)
{
	struct itimerval it = {.it_value = {0, 50 * 1000}};

	caught = 0;
	ASSERT_OK(setitimer(ITIMER_REAL, &it, NULL));
	errno = 0;
	int r = polls[k](p, n, 2000), e = errno;
	if (r != -1 || e != EINTR || caught != 1)
		fm_test_fail(__FILE__, __LINE__,
		    "%s of %lu entries: %d errno %d, %d signals caught",
		    poll_name[k], (unsigned long)n, r, e, (int)caught);
	for (nfds_t i = 0; i < n; i++)
		ASSERT_EQ(p[i].revents, 0);
}

TEST(poll_ends_with_eintr_when_a_signal_is_caught)
{
	int pp[2], dev = flag_dev();
	struct pollfd p[2] = {{.fd = -1}, {.fd = -1}};
	sigset_t usr1;

	ASSERT_OK(pipe(pp));
	catch_signal(SIGALRM);
	catch_signal(SIGUSR1);
	for (int k = 0; k < 2; k++) {
		check_eintr(k, NULL, 0);
		p[0] = (struct pollfd){.fd = pp[0], .events = POLLIN};
		check_eintr(k, p, 1);
	}
	p[1] = (struct pollfd){.fd = dev, .events = POLLIN};
	check_eintr(1, p, 2); /* fomap's and the kernel's */
	check_eintr(1, p + 1, 1); /* fomap's alone */
	/* A device that wakes itself at each look keeps no signal out. */
	atomic_store(&wake_at_look, 1);
	check_eintr(1, p + 1, 1);
	atomic_store(&wake_at_look, 0);
	/* A signal that comes while fm_poll looks, before it waits. */
	caught = 0;
	atomic_store(&raise_at_look, 1);
	ASSERT_ERRNO(fm_poll(p, 2, 2000), EINTR);
	ASSERT_EQ(caught, 1);
	/* Blocked, it ends nothing: the timeout does, as poll(2)'s. */
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	ASSERT_OK(sigprocmask(SIG_BLOCK, &usr1, NULL));
	caught = 0;
	atomic_store(&raise_at_look, 1);
	ASSERT_EQ(fm_poll(p, 2, 100), 0);
	ASSERT_EQ(poll(p, 1, 100), 0); /* (the kernel's, SIGUSR1 pending) */
	ASSERT_OK(sigprocmask(SIG_UNBLOCK, &usr1, NULL));
	ASSERT_EQ(caught, 1);
	/* Ready: the count, not EINTR, even with a signal on the way. */
	atomic_store(&dev_ready, 1);
	atomic_store(&raise_at_look, 1);
	ASSERT_EQ(fm_poll(p, 2, 2000), 1);
	ASSERT_EQ(p[1].revents, POLLIN);
	ASSERT_OK(fm_close(dev));
	ASSERT_OK(fm_dev_unregister("pollflag"));
	close(pp[0]);
	close(pp[1]);
}

/*
 * fds the call may not read, or write: EFAULT, as poll(2) says it (once
 * it has waited, for an array it can read; the revents it can write are
 * written).
 */
TEST(poll_bad_fds_is_efault)
{
	char *m = mmap(NULL, 3 * PG, RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct pollfd *ro = (struct pollfd *)(m + PG), *last = ro - 1;
	int pp[2];

	ASSERT(m != MAP_FAILED);
	ASSERT_OK(pipe(pp));
	ASSERT_EQ(write(pp[1], "x", 1), 1);
	ro[0] = (struct pollfd){.fd = pp[0], .events = POLLIN};
	*last = ro[0];
	ASSERT_OK(mprotect(m + PG, PG, PROT_READ));
	ASSERT_OK(munmap(m + 2 * PG, PG));
	for (int k = 0; k < 2; k++) {
		ASSERT_EQ(polls[k](NULL, 0, 0), 0);
		ASSERT_ERRNO(polls[k]((struct pollfd *)8, 1, 0), EFAULT);
		ASSERT_ERRNO(polls[k](ro + PG / sizeof(*ro) - 1, 2, 0), EFAULT);
		ASSERT_ERRNO(polls[k](ro, 1, 0), EFAULT);
		last->revents = 0;
		ASSERT_ERRNO(polls[k](last, 2, 0), EFAULT);
		ASSERT_EQ(last->revents, POLLIN); /* written before the fault */
	}
	close(pp[0]);
	close(pp[1]);
	ASSERT_OK(munmap(m, 2 * PG));
}

/* An O_PATH open is not open to poll(2): POLLNVAL. */
TEST(poll_of_a_path_open_is_pollnval)
{
	int fd[2] = {open("/dev/zero", O_PATH),
	    fm_open(FM_DEVPREFIX "zero", O_PATH)};

	for (int k = 0; k < 2; k++) {
		struct pollfd p = {.fd = fd[k], .events = POLLIN | POLLOUT};

		ASSERT_GE(fd[k], 0);
		ASSERT_EQ(polls[k](&p, 1, 0), 1);
		ASSERT_EQ(p.revents, POLLNVAL);
	}
	ASSERT_OK(close(fd[0]));
	ASSERT_OK(fm_close(fd[1]));
}

static void *
wake_later(void *arg)
{
	int *pp = arg;

	usleep(50 * 1000);
	if (pp != NULL) {
		ASSERT_EQ(write(pp[1], "x", 1), 1);
		return NULL;
	}
	atomic_store(&dev_ready, 1);
	fm_dev_wakeup(atomic_load(&flag_device));
	return NULL;
}

/*
 * A waiting fm_poll ends at a driver's wake-up, and at once when another
 * descriptor of its set is ready.
 */
TEST_TAGGED(poll_wakes_on_a_drivers_wakeup_and_on_others, "thread")
{
	int pp[2], dev = flag_dev();
	struct pollfd p[2] = {{.fd = dev, .events = POLLIN}};
	struct timespec t0, t1;
	pthread_t t;

	ASSERT_OK(pipe(pp));
	p[1] = (struct pollfd){.fd = pp[0], .events = POLLIN};
	atomic_store(&dev_ready, 0);
	ASSERT_EQ(pthread_create(&t, NULL, wake_later, pp), 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	ASSERT_EQ(fm_poll(p, 2, 5000), 1);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ASSERT_EQ(pthread_join(t, NULL), 0);
	ASSERT_EQ(p[0].revents, 0);
	ASSERT_EQ(p[1].revents, POLLIN);
	ASSERT_LE((t1.tv_sec - t0.tv_sec) * 1000 +
	        (t1.tv_nsec - t0.tv_nsec) / 1000000,
	    2000);
	ASSERT_EQ(pthread_create(&t, NULL, wake_later, NULL), 0);
	ASSERT_EQ(fm_poll(p, 1, 5000), 1); /* the device's, woken */
	ASSERT_EQ(p[0].revents, POLLIN);
	ASSERT_EQ(pthread_join(t, NULL), 0);
	ASSERT_OK(fm_close(dev));
	ASSERT_OK(fm_dev_unregister("pollflag"));
	close(pp[0]);
	close(pp[1]);
}

static void *
poll_for_ever(void *arg)
{
	struct pollfd p = {.fd = *(int *)arg, .events = POLLIN};

	(void)fm_poll(&p, 1, -1);
	return NULL;
}

/*
 * poll(2) is a cancellation point: a thread cancelled while fm_poll
 * sleeps leaves nothing behind that a later wake-up or poll could trip on.
 */
TEST_TAGGED(poll_cancelled_in_its_sleep_leaves_nothing, "thread")
{
	int dev = flag_dev();
	struct pollfd p = {.fd = dev, .events = POLLIN};
	pthread_t t;
	void *res;

	atomic_store(&dev_ready, 0);
	ASSERT_EQ(pthread_create(&t, NULL, poll_for_ever, &dev), 0);
	while (atomic_load(&flag_device) == NULL)
		usleep(1000);
	usleep(20 * 1000); /* let it sleep */
	ASSERT_EQ(pthread_cancel(t), 0);
	ASSERT_EQ(pthread_join(t, &res), 0);
	ASSERT_PTR_EQ(res, PTHREAD_CANCELED);
	fm_dev_wakeup(atomic_load(&flag_device));
	ASSERT_EQ(fm_poll(&p, 1, 20), 0);
	atomic_store(&dev_ready, 1);
	ASSERT_EQ(fm_poll(&p, 1, 0), 1);
	ASSERT_OK(fm_close(dev));
	ASSERT_OK(fm_dev_unregister("pollflag"));
}
