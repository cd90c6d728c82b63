/*
 * io.c: whole reads and writes of a file at an offset, for the object
 * store (fm_object_read/write) and the store pager's backing file: one
 * copy of the loop, so that a fix to it reaches every caller; and copies
 * from file to file in the kernel.
 */
#include <errno.h>
#include <fcntl.h>
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

/*
 * The pipe of this thread's file copies, made on its first: its two ends
 * in one allocation, so the key's destructor closes both.
 */
static pthread_key_t pipe_key;
static pthread_once_t pipe_once = PTHREAD_ONCE_INIT;

static void
pipe_free(void *p)
{
	int *fds = p;

	close(fds[0]);
	close(fds[1]);
	free(fds);
}

static void
pipe_setup(void)
{
	FM_ASSERT(pthread_key_create(&pipe_key, pipe_free) == 0,
	    "no thread key");
}

static int *
thread_pipe(void)
{
	int *fds;

	pthread_once(&pipe_once, pipe_setup);
	fds = pthread_getspecific(pipe_key);
	if (fds != NULL)
		return fds;
	if ((fds = malloc(2 * sizeof(*fds))) == NULL)
		return NULL;
	if (pipe2(fds, O_CLOEXEC) < 0) {
		free(fds);
		return NULL;
	}
	/* Room for a whole copy, if the limits allow: fewer calls. */
	(void)fcntl(fds[1], F_SETPIPE_SZ, (int)FM_FILE_COPY_MAX);
	if (pthread_setspecific(pipe_key, fds) != 0) {
		pipe_free(fds);
		return NULL;
	}
	return fds;
}

/* A copy failed with bytes in the pipe: the next copy gets a new one. */
static void
pipe_drop(int *fds)
{
	pthread_setspecific(pipe_key, NULL);
	pipe_free(fds);
}

/* splice(2) through EINTR. => the count moved, 0 at the end, or -errno */
static ssize_t
splice_some(int in, off_t *inoff, int out, off_t *outoff, size_t len)
{
	ssize_t k;

	do
		k = splice(in, inoff, out, outoff, len, SPLICE_F_MOVE);
	while (k < 0 && errno == EINTR);
	return k < 0 ? -errno : k;
}

/*
 * A pipe for one copy of this thread's: an engine thread's own, kept (it
 * copies on every fill); any other thread's made for the copy and closed
 * after it, so that no thread of the program keeps pipes (and the pipe
 * pages its user may have) of fomap's.
 */
static int *
copy_pipe(int *own)
{
	if (fm__engine_thread())
		return thread_pipe();
	if (pipe2(own, O_CLOEXEC) < 0)
		return NULL;
	(void)fcntl(own[1], F_SETPIPE_SZ, (int)FM_FILE_COPY_MAX);
	return own;
}

/*
 * The copy through the pipe fds. => as fm__file_copy; *left: it failed
 * with bytes left in the pipe, which is of no use any more
 */
static ssize_t
file_copy(const int *fds, int from, off_t off, int to, off_t tooff, size_t len,
    int *left)
{
	size_t done = 0;

	while (done < len) {
		ssize_t in = splice_some(from, &off, fds[1], NULL, len - done);

		if (in < 0)
			return in; /* the pipe is empty: each round drains it */
		if (in == 0)
			break; /* the end of from */
		for (ssize_t out = 0; out < in;) {
			ssize_t k = splice_some(fds[0], NULL, to, &tooff,
			    (size_t)(in - out));

			if (k <= 0) {
				*left = 1;
				return k < 0 ? k : -EIO;
			}
			out += k;
		}
		done += (size_t)in;
	}
	return (ssize_t)done;
}

ssize_t
fm__file_copy(int from, off_t off, int to, off_t tooff, size_t len)
{
	int own[2], *fds, left = 0;
	ssize_t r;

	errno = 0;
	if ((fds = copy_pipe(own)) == NULL)
		return errno ? -errno : -ENOMEM;
	r = file_copy(fds, from, off, to, tooff, len, &left);
	if (fds == own) {
		close(own[0]);
		close(own[1]);
	} else if (left)
		pipe_drop(fds);
	return r;
}
