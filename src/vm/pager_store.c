/*
 * pager_store.c: the store pager. An object backed by a range of a file:
 * pages are read from the file when first faulted and written back to it
 * when dirty (found by write protection, so pages never written are not
 * written back, but for the end of a sequential writer's window: fault.c,
 * writes at once).
 * Drivers use it for backing storage and eviction.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "vm/vm.h"

/*
 * Pages a fill copies at most: the engine's largest fault-around window,
 * so that a sequential reader's window is one call. Each copy goes from
 * file to file in the kernel (fm__file_copy: one copy of the data); a
 * file that does not splice is copied through a buffer of BOUNCE pages.
 */
#define STORE_CHUNK 256
#define BOUNCE 64

struct store {
	int fd;
	off_t base; /* where the object starts in the file */
	size_t size; /* bytes of the file the object covers */
};

/*
 * A bounce buffer a thread, made on its first copy through one: a
 * __thread array this large would be set up in every thread the
 * application creates.
 */
static pthread_key_t bounce_key;
static pthread_once_t bounce_once = PTHREAD_ONCE_INIT;

static void
bounce_setup(void)
{
	FM_ASSERT(pthread_key_create(&bounce_key, free) == 0, "no thread key");
}

static char *
bounce_buf(void)
{
	char *b;

	pthread_once(&bounce_once, bounce_setup);
	b = pthread_getspecific(bounce_key);
	if (b == NULL && (b = malloc(BOUNCE * FM_PAGE_SIZE)) != NULL &&
	    pthread_setspecific(bounce_key, b) != 0) {
		free(b);
		b = NULL;
	}
	return b;
}

/*
 * Copy len bytes of from at off to to at tooff through the bounce buffer
 * (files that do not splice). => the count, less than len only at the
 * end of from; or -errno
 */
static ssize_t
bounce_copy(int from, off_t off, int to, off_t tooff, size_t len)
{
	char *bounce = bounce_buf();
	size_t done = 0;

	if (bounce == NULL)
		return -ENOMEM;
	while (done < len) {
		size_t n = len - done < BOUNCE * FM_PAGE_SIZE
		    ? len - done
		    : BOUNCE * FM_PAGE_SIZE;
		ssize_t k = fm__full_pread(from, bounce, n, off + (off_t)done);
		int r;

		if (k <= 0)
			return k < 0 ? k : (ssize_t)done;
		r = fm__full_pwrite(to, bounce, (size_t)k, tooff + (off_t)done);
		if (r < 0)
			return r;
		done += (size_t)k;
		if ((size_t)k < n)
			break; /* the end of from */
	}
	return (ssize_t)done;
}

/*
 * fm__file_copy, or through the bounce buffer where the files cannot
 * splice, or no pipe can be had (nothing was copied then).
 */
static ssize_t
store_copy(int from, off_t off, int to, off_t tooff, size_t len)
{
	ssize_t k = fm__file_copy(from, off, to, tooff, len);

	if (k == -EINVAL || k == -EMFILE || k == -ENFILE || k == -ENOMEM)
		k = bounce_copy(from, off, to, tooff, len);
	return k;
}

static int
store_get(struct fm_object *obj, uint64_t pgidx, unsigned *npages)
{
	struct store *s = fm_object_private(obj);
	unsigned n = *npages < STORE_CHUNK ? *npages : STORE_CHUNK;
	size_t len = (size_t)n << FM_PAGE_SHIFT;
	off_t off = (off_t)(pgidx << FM_PAGE_SHIFT);
	ssize_t k = 0;
	unsigned got, rest;

	if ((size_t)off < s->size)
		k = store_copy(s->fd, s->base + off, obj->fd, obj->base + off,
		    len < s->size - (size_t)off ? len : s->size - (size_t)off);
	if (k < 0)
		return (int)k;
	/* Past the end of the file (or of the store's part of it): zeros. */
	if ((size_t)k & FM_PAGE_MASK) {
		static const char zeros[FM_PAGE_SIZE];
		size_t tail = FM_PAGE_SIZE - ((size_t)k & FM_PAGE_MASK);
		int r = fm__full_pwrite(obj->fd, zeros, tail,
		    obj->base + off + (off_t)k);

		if (r < 0)
			return r;
	}
	got = (unsigned)FM_PAGES((size_t)k);
	rest = n - got;
	if (rest > 0) {
		int r = fm__anon_get(obj, pgidx + got, &rest);

		if (r < 0)
			return r;
	}
	*npages = n;
	return 0;
}

static int
store_put(struct fm_object *obj, uint64_t pgidx, unsigned npages, int flags)
{
	struct store *s = fm_object_private(obj);
	size_t off = (size_t)pgidx << FM_PAGE_SHIFT;
	size_t len = (size_t)npages << FM_PAGE_SHIFT;
	ssize_t k;

	if (off >= s->size)
		return 0;
	if (len > s->size - off)
		len = s->size - off; /* never grow the file */
	k = store_copy(obj->fd, obj->base + (off_t)off, s->fd,
	    s->base + (off_t)off, len);
	if (k < 0)
		return (int)k;
	return (size_t)k < len ? -EIO : 0; /* the store holds every page */
}

static void
store_detach(struct fm_object *obj)
{
	struct store *s = fm_object_private(obj);

	close(s->fd);
	free(s);
}

static const struct fm_pagerops store_pagerops = {
    .pgo_get = store_get,
    .pgo_put = store_put,
    .pgo_detach = store_detach,
};

int
fm_store_create(int fd, off_t off, size_t size, struct fm_object **objp)
{
	struct store *s;
	int r;

	if (off < 0 || ((size_t)off & FM_PAGE_MASK) || size == 0)
		return -EINVAL;
	if (fcntl(fd, F_GETFL) < 0)
		return -EBADF;
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return -ENOMEM;
	s->base = off;
	s->size = size;
	s->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (s->fd < 0) {
		r = -errno;
		free(s);
		return r;
	}
	r = fm_object_create(&store_pagerops, size, s, objp);
	if (r < 0) {
		close(s->fd);
		free(s);
	}
	return r;
}
