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

#define STORE_CHUNK 64 /* pages copied per system call pair */

struct store {
	int fd;
	off_t base; /* where the object starts in the file */
	size_t size; /* bytes of the file the object covers */
};

/*
 * A bounce buffer a thread, made on its first fill: a __thread array this
 * large would be set up in every thread the application creates.
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
	if (b == NULL && (b = malloc(STORE_CHUNK * FM_PAGE_SIZE)) != NULL &&
	    pthread_setspecific(bounce_key, b) != 0) {
		free(b);
		b = NULL;
	}
	return b;
}

static int
store_get(struct fm_object *obj, uint64_t pgidx, unsigned *npages)
{
	struct store *s = fm_object_private(obj);
	unsigned n = *npages < STORE_CHUNK ? *npages : STORE_CHUNK;
	size_t len = (size_t)n << FM_PAGE_SHIFT;
	off_t off = (off_t)(pgidx << FM_PAGE_SHIFT);
	char *bounce = bounce_buf();
	ssize_t k;

	if (bounce == NULL)
		return -ENOMEM;
	k = fm__full_pread(s->fd, bounce, len, s->base + off);

	if (k < 0)
		return (int)k;
	memset(bounce + k, 0, len - (size_t)k); /* past the end of the file */
	*npages = n;
	return fm_object_write(obj, off, bounce, len);
}

static int
store_put(struct fm_object *obj, uint64_t pgidx, unsigned npages, int flags)
{
	struct store *s = fm_object_private(obj);
	char *bounce = bounce_buf();

	if (bounce == NULL)
		return -ENOMEM;
	for (unsigned i = 0; i < npages; i += STORE_CHUNK) {
		unsigned n =
		    npages - i < STORE_CHUNK ? npages - i : STORE_CHUNK;
		size_t off = (size_t)(pgidx + i) << FM_PAGE_SHIFT;
		size_t len = (size_t)n << FM_PAGE_SHIFT;
		int r;

		if (off >= s->size)
			break;
		if (len > s->size - off)
			len = s->size - off; /* never grow the file */
		r = fm_object_read(obj, (off_t)off, bounce, len);
		if (r < 0)
			return r;
		r = fm__full_pwrite(s->fd, bounce, len, s->base + (off_t)off);
		if (r < 0)
			return r;
	}
	return 0;
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
