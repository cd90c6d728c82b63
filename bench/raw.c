/*
 * raw.c: the reference every fomap figure is held against: a minimal
 * hand-written userfaultfd handler. One thread (or more, to show what a
 * second thread costs) does blocking reads of one message at a time; a MISSING fault fills `around` pages and installs them
 * (UFFDIO_COPY, or fill the memfd + UFFDIO_CONTINUE); a WP fault marks the
 * page dirty and write-enables it. Nothing else: no map, no page states, no
 * locks. It serves its own mapping (raw_start), or another process's,
 * whose userfaultfd and memfd it was sent (raw_serve: row 12).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "bench.h"

/* Fill [off, off+len) of the mapping into buf (pread, or zeros). */
static void
fill_buf(struct raw *r, char *buf, size_t off, size_t len)
{
	ssize_t k = 0;

	if (r->srcfd >= 0 && (k = pread(r->srcfd, buf, len, (off_t)off)) < 0)
		bench_fail("raw: pread");
	if ((size_t)k < len && r->srcfd >= 0)
		memset(buf + k, 0, len - (size_t)k);
}

static void
wake(struct raw *r, uintptr_t va)
{
	struct uffdio_range w = {.start = va, .len = PG};

	if (ioctl(r->uffd, UFFDIO_WAKE, &w) < 0)
		bench_fail("raw: UFFDIO_WAKE");
}

static void
missing(struct raw *r, char *buf, uintptr_t va)
{
	size_t off = va - (uintptr_t)r->base;
	size_t len = (size_t)r->around * PG;

	if (len > r->len - off)
		len = r->len - off;
	for (;;) {
		int k;

		if (r->mode == RAW_ZERO) {
			struct uffdio_zeropage z = {.range = {va, len}};

			k = ioctl(r->uffd, UFFDIO_ZEROPAGE, &z) < 0 ? errno : 0;
			if (k == EAGAIN && z.zeropage > 0)
				k = 0;
		} else if (r->mode == RAW_COPY) {
			struct uffdio_copy c = {.dst = va,
			    .src = (uintptr_t)(r->src ? r->src + off : buf),
			    .len = len};

			if (r->src == NULL)
				fill_buf(r, buf, off, len);
			k = ioctl(r->uffd, UFFDIO_COPY, &c) < 0 ? errno : 0;
			if (k == EAGAIN && c.copy > 0)
				k = 0; /* a prefix, with the faulting page */
		} else {
			struct uffdio_continue c = {.range = {va, len}};

			if (r->srcfd >= 0 || r->fill_write) {
				fill_buf(r, buf, off, len);
				if (pwrite(r->memfd, buf, len, (off_t)off) !=
				    (ssize_t)len)
					bench_fail("raw: pwrite");
			} else if (fallocate(r->memfd, 0, (off_t)off,
			               (off_t)len) < 0) {
				bench_fail("raw: fallocate");
			}
			k = ioctl(r->uffd, UFFDIO_CONTINUE, &c) < 0 ? errno : 0;
			if (k == EAGAIN && c.mapped > 0)
				k = 0;
		}
		if (k == 0)
			return;
		if (k == EEXIST) { /* already mapped: just wake the faulter */
			wake(r, va);
			return;
		}
		if (k != EAGAIN)
			bench_fail("raw: install");
	}
}

static void
wp(struct raw *r, uintptr_t va)
{
	struct uffdio_writeprotect w = {.range = {va, PG}, .mode = 0};

	r->dirty[(va - (uintptr_t)r->base) / PG] = 1;
	if (ioctl(r->uffd, UFFDIO_WRITEPROTECT, &w) < 0)
		bench_fail("raw: UFFDIO_WRITEPROTECT");
}

static void *
raw_main(void *arg)
{
	struct raw *r = arg;
	struct uffd_msg m;
	struct epoll_event ev = {.events = EPOLLIN | EPOLLEXCLUSIVE};
	char *buf = aligned_alloc(PG, (size_t)r->around * PG); /* the fill */
	int ep = -1;

	if (buf == NULL)
		bench_fail("raw: malloc");
	memset(buf, 0, (size_t)r->around * PG);
	if (r->excl &&
	    ((ep = epoll_create1(EPOLL_CLOEXEC)) < 0 ||
	        epoll_ctl(ep, EPOLL_CTL_ADD, r->uffd, &ev) < 0))
		bench_fail("raw: epoll");
	for (;;) {
		ssize_t k;

		if (ep >= 0 && epoll_wait(ep, &ev, 1, -1) < 0 && errno != EINTR)
			bench_fail("raw: epoll_wait");
		k = read(r->uffd, &m, sizeof m);
		if (k < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (k != (ssize_t)sizeof m)
			bench_fail("raw: read");
		if (m.event != UFFD_EVENT_PAGEFAULT)
			continue;
		atomic_fetch_add_explicit(&r->faults, 1, memory_order_relaxed);
		uintptr_t va =
		    (uintptr_t)m.arg.pagefault.address & ~(uintptr_t)(PG - 1);
		if (m.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP)
			wp(r, va);
		else
			missing(r, buf, va);
	}
	return NULL;
}

int
raw_start(struct raw *r)
{
	struct uffdio_api api = {.api = UFFD_API};
	struct uffdio_register reg = {.range = {(uintptr_t)r->base, r->len}};

	r->uffd = (int)syscall(SYS_userfaultfd,
	    O_CLOEXEC | (r->excl ? O_NONBLOCK : 0));
	if (r->uffd < 0)
		bench_fail("raw: userfaultfd");
	switch (r->mode) {
	case RAW_COPY:
	case RAW_ZERO:
		reg.mode = UFFDIO_REGISTER_MODE_MISSING;
		break;
	case RAW_CONTINUE:
		api.features = UFFD_FEATURE_MINOR_SHMEM;
		reg.mode =
		    UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_MINOR;
		break;
	case RAW_WP:
		api.features = UFFD_FEATURE_WP_HUGETLBFS_SHMEM;
		reg.mode = UFFDIO_REGISTER_MODE_WP;
		break;
	}
	if (ioctl(r->uffd, UFFDIO_API, &api) < 0)
		bench_fail("raw: UFFDIO_API");
	if (ioctl(r->uffd, UFFDIO_REGISTER, &reg) < 0)
		bench_fail("raw: UFFDIO_REGISTER");
	if (r->around == 0)
		r->around = 1;
	if (r->mode == RAW_WP) {
		struct uffdio_writeprotect w = {.range = reg.range,
		    .mode = UFFDIO_WRITEPROTECT_MODE_WP};

		r->dirty = calloc(r->len / PG, 1);
		if (r->dirty == NULL ||
		    ioctl(r->uffd, UFFDIO_WRITEPROTECT, &w) < 0)
			bench_fail("raw: write-protect");
	}
	return raw_serve(r);
}

int
raw_serve(struct raw *r)
{
	pthread_t t;

	if (r->around == 0)
		r->around = 1;
	for (int i = 0; i < (r->nthreads > 0 ? r->nthreads : 1); i++) {
		if ((errno = pthread_create(&t, NULL, raw_main, r)) != 0)
			bench_fail("raw: pthread_create");
		pthread_detach(t);
	}
	return 0;
}
