/*
 * test_video.c: the video0 device as a V4L2 program uses it: capabilities
 * and formats, buffers mapped at their offsets, frames checked byte for
 * byte against the pattern of video.h, poll, non-blocking and woken
 * DQBUF, independent opens, bad input, and a close while streaming.
 * Streams run at 200 frames a second so that each test is short.
 */
#include <dirent.h>
#include <fcntl.h>
#include <linux/videodev2.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <fomap/fomap.h>
#include <fomap/video.h>

#include "../test.h"

#define CAP V4L2_BUF_TYPE_VIDEO_CAPTURE

struct stream {
	int fd;
	unsigned n; /* buffers */
	struct v4l2_pix_format pix;
	uint8_t *map[FM_VIDEO_MAX_BUFFERS];
	size_t len[FM_VIDEO_MAX_BUFFERS];
};

static int
video_dev(int flags)
{
	int fd = fm_open(FM_VIDEO_DEV, flags);

	ASSERT_GE(fd, 0);
	return fd;
}

static struct v4l2_pix_format
set_fmt(int fd, uint32_t fourcc, uint32_t w, uint32_t h)
{
	struct v4l2_format f = {.type = CAP};

	f.fmt.pix.pixelformat = fourcc;
	f.fmt.pix.width = w;
	f.fmt.pix.height = h;
	ASSERT_OK(fm_ioctl(fd, VIDIOC_S_FMT, &f));
	return f.fmt.pix;
}

static void
set_interval(int fd, uint32_t num, uint32_t den)
{
	struct v4l2_streamparm p = {.type = CAP};

	p.parm.capture.timeperframe = (struct v4l2_fract){num, den};
	ASSERT_OK(fm_ioctl(fd, VIDIOC_S_PARM, &p));
	ASSERT_EQ(p.parm.capture.timeperframe.numerator, num);
	ASSERT_EQ(p.parm.capture.timeperframe.denominator, den);
}

static unsigned
reqbufs(int fd, unsigned count)
{
	struct v4l2_requestbuffers rb = {.count = count,
	    .type = CAP,
	    .memory = V4L2_MEMORY_MMAP};

	ASSERT_OK(fm_ioctl(fd, VIDIOC_REQBUFS, &rb));
	return rb.count;
}

static void
qbuf(int fd, unsigned idx)
{
	struct v4l2_buffer b = {.index = idx,
	    .type = CAP,
	    .memory = V4L2_MEMORY_MMAP};

	ASSERT_OK(fm_ioctl(fd, VIDIOC_QBUF, &b));
	ASSERT(b.flags & V4L2_BUF_FLAG_QUEUED);
}

static int
dqbuf(int fd, struct v4l2_buffer *b)
{
	*b = (struct v4l2_buffer){.type = CAP, .memory = V4L2_MEMORY_MMAP};
	return fm_ioctl(fd, VIDIOC_DQBUF, b);
}

static void
streamon(int fd)
{
	int type = CAP;

	ASSERT_OK(fm_ioctl(fd, VIDIOC_STREAMON, &type));
}

static void
streamoff(int fd)
{
	int type = CAP;

	ASSERT_OK(fm_ioctl(fd, VIDIOC_STREAMOFF, &type));
}

/*
 * Open, set a format and 200 frames a second, allocate n buffers, check
 * their offsets and map each one.
 */
static void
stream_setup(struct stream *s, int flags, uint32_t fourcc, uint32_t w,
    uint32_t h, unsigned n)
{
	memset(s, 0, sizeof(*s));
	s->fd = video_dev(flags);
	s->pix = set_fmt(s->fd, fourcc, w, h);
	set_interval(s->fd, 1, 200);
	s->n = reqbufs(s->fd, n);
	ASSERT_EQ(s->n, n);
	for (unsigned i = 0; i < n; i++) {
		struct v4l2_buffer b = {.index = i,
		    .type = CAP,
		    .memory = V4L2_MEMORY_MMAP};

		ASSERT_OK(fm_ioctl(s->fd, VIDIOC_QUERYBUF, &b));
		ASSERT_EQ(b.index, i);
		ASSERT_EQ(b.memory, V4L2_MEMORY_MMAP);
		ASSERT_EQ(b.length, s->pix.sizeimage);
		ASSERT_EQ(b.m.offset, i * FM_VIDEO_BUFSIZE(s->pix.sizeimage));
		ASSERT_EQ(b.m.offset % PG, 0);
		ASSERT_EQ(b.flags & (V4L2_BUF_FLAG_QUEUED | V4L2_BUF_FLAG_DONE),
		    0);
		s->len[i] = b.length;
		s->map[i] = fm_mmap(NULL, b.length, PROT_READ | PROT_WRITE,
		    MAP_SHARED, s->fd, b.m.offset);
		ASSERT(s->map[i] != MAP_FAILED);
	}
}

static void
stream_end(struct stream *s)
{
	streamoff(s->fd);
	for (unsigned i = 0; i < s->n; i++)
		ASSERT_OK(fm_munmap(s->map[i], s->len[i]));
	ASSERT_EQ(reqbufs(s->fd, 0), 0);
	ASSERT_OK(fm_close(s->fd));
}

/* The frame of buffer b holds frame b->sequence, byte for byte. */
static void
check_frame(const struct stream *s, const struct v4l2_buffer *b)
{
	const uint8_t *p = s->map[b->index];
	uint32_t seq = b->sequence;

	ASSERT_EQ(b->bytesused, s->pix.sizeimage);
	ASSERT_EQ(p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24, seq);
	for (uint32_t y = 0; y < s->pix.height; y++)
		for (uint32_t i = 0; i < s->pix.bytesperline; i++) {
			size_t at = (size_t)y * s->pix.bytesperline + i;
			uint8_t want = (uint8_t)(i + 2 * y + 5 * seq);

			if (at < 4)
				continue;
			ASSERT_EQ(want, fm_video_pattern(i, y, seq));
			if (p[at] != want)
				fm_test_fail(__FILE__, __LINE__,
				    "frame %u: byte %u of line %u is %u, "
				    "want %u",
				    seq, i, y, p[at], want);
		}
}

/* Dequeue (waiting) a done frame, check it, queue its buffer again. */
static uint32_t
capture_one(struct stream *s, int64_t prev)
{
	struct v4l2_buffer b;

	ASSERT_OK(dqbuf(s->fd, &b));
	ASSERT_LE(b.index, s->n - 1);
	ASSERT(b.flags & V4L2_BUF_FLAG_DONE);
	ASSERT(!(b.flags & V4L2_BUF_FLAG_QUEUED));
	ASSERT(b.flags & V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC);
	ASSERT_EQ(b.field, V4L2_FIELD_NONE);
	ASSERT_GE((int64_t)b.sequence, prev + 1);
	ASSERT(b.timestamp.tv_sec > 0 || b.timestamp.tv_usec > 0);
	check_frame(s, &b);
	qbuf(s->fd, b.index);
	return b.sequence;
}

static unsigned
nthreads(void)
{
	DIR *d = opendir("/proc/self/task");
	unsigned n = 0;

	ASSERT(d != NULL);
	while (readdir(d) != NULL)
		n++;
	closedir(d);
	return n - 2; /* . and .. */
}

TEST(video_querycap_formats_inputs)
{
	fm_test_need_uffd();
	int fd = video_dev(O_RDWR);
	struct v4l2_capability c;

	ASSERT_OK(fm_ioctl(fd, VIDIOC_QUERYCAP, &c));
	ASSERT_EQ(strcmp((char *)c.driver, "fomap-video"), 0);
	ASSERT_EQ(strcmp((char *)c.card, "fomap virtual camera"), 0);
	ASSERT_EQ(strcmp((char *)c.bus_info, "platform:fomap-video0"), 0);
	ASSERT_EQ(c.capabilities,
	    V4L2_CAP_VIDEO_CAPTURE | V4L2_CAP_STREAMING | V4L2_CAP_DEVICE_CAPS);
	ASSERT_EQ(c.device_caps, V4L2_CAP_VIDEO_CAPTURE | V4L2_CAP_STREAMING);

	static const uint32_t want[] = {V4L2_PIX_FMT_YUYV, V4L2_PIX_FMT_RGB24,
	    V4L2_PIX_FMT_XBGR32};
	for (uint32_t i = 0; i < 3; i++) {
		struct v4l2_fmtdesc d = {.index = i, .type = CAP};

		ASSERT_OK(fm_ioctl(fd, VIDIOC_ENUM_FMT, &d));
		ASSERT_EQ(d.index, i);
		ASSERT_EQ(d.pixelformat, want[i]);
		ASSERT(d.description[0] != 0);
	}
	struct v4l2_fmtdesc d = {.index = 3, .type = CAP};
	ASSERT_ERRNO(fm_ioctl(fd, VIDIOC_ENUM_FMT, &d), EINVAL);
	d = (struct v4l2_fmtdesc){.index = 0,
	    .type = V4L2_BUF_TYPE_VIDEO_OUTPUT};
	ASSERT_ERRNO(fm_ioctl(fd, VIDIOC_ENUM_FMT, &d), EINVAL);

	struct v4l2_input in = {.index = 0};
	ASSERT_OK(fm_ioctl(fd, VIDIOC_ENUMINPUT, &in));
	ASSERT_EQ(in.type, V4L2_INPUT_TYPE_CAMERA);
	in.index = 1;
	ASSERT_ERRNO(fm_ioctl(fd, VIDIOC_ENUMINPUT, &in), EINVAL);
	unsigned inp = 7;
	ASSERT_OK(fm_ioctl(fd, VIDIOC_G_INPUT, &inp));
	ASSERT_EQ(inp, 0);
	ASSERT_OK(fm_ioctl(fd, VIDIOC_S_INPUT, &inp));
	inp = 1;
	ASSERT_ERRNO(fm_ioctl(fd, VIDIOC_S_INPUT, &inp), EINVAL);

	struct v4l2_streamparm p = {.type = CAP};
	ASSERT_OK(fm_ioctl(fd, VIDIOC_G_PARM, &p));
	ASSERT(p.parm.capture.capability & V4L2_CAP_TIMEPERFRAME);
	ASSERT_EQ(p.parm.capture.timeperframe.numerator, 1);
	ASSERT_EQ(p.parm.capture.timeperframe.denominator, 30);

	v4l2_std_id std;
	ASSERT_ERRNO(fm_ioctl(fd, VIDIOC_G_STD, &std), ENOTTY);
	ASSERT_ERRNO(fm_ioctl(fd, VIDIOC_QUERYCAP, NULL), EFAULT);
	ASSERT_OK(fm_close(fd));
}

TEST(video_fmt_is_clamped)
{
	fm_test_need_uffd();
	int fd = video_dev(O_RDWR);
	struct v4l2_format f = {.type = CAP};

	ASSERT_OK(fm_ioctl(fd, VIDIOC_G_FMT, &f));
	ASSERT_EQ(f.fmt.pix.width, 640);
	ASSERT_EQ(f.fmt.pix.height, 480);
	ASSERT_EQ(f.fmt.pix.pixelformat, V4L2_PIX_FMT_YUYV);
	ASSERT_EQ(f.fmt.pix.bytesperline, 640 * 2);
	ASSERT_EQ(f.fmt.pix.sizeimage, 640 * 2 * 480);
	ASSERT_EQ(f.fmt.pix.field, V4L2_FIELD_NONE);

	/* TRY: too small, too large, odd, unknown; G_FMT is unchanged. */
	f = (struct v4l2_format){.type = CAP};
	f.fmt.pix = (struct v4l2_pix_format){.width = 1,
	    .height = 1,
	    .pixelformat = V4L2_PIX_FMT_RGB24};
	ASSERT_OK(fm_ioctl(fd, VIDIOC_TRY_FMT, &f));
	ASSERT_EQ(f.fmt.pix.width, 16);
	ASSERT_EQ(f.fmt.pix.height, 16);
	ASSERT_EQ(f.fmt.pix.bytesperline, 16 * 3);
	ASSERT_EQ(f.fmt.pix.sizeimage, 16 * 3 * 16);
	f.fmt.pix = (struct v4l2_pix_format){.width = 5000,
	    .height = 9999,
	    .pixelformat = V4L2_PIX_FMT_XBGR32};
	ASSERT_OK(fm_ioctl(fd, VIDIOC_TRY_FMT, &f));
	ASSERT_EQ(f.fmt.pix.width, 1920);
	ASSERT_EQ(f.fmt.pix.height, 1080);
	ASSERT_EQ(f.fmt.pix.bytesperline, 1920 * 4);
	ASSERT_EQ(f.fmt.pix.sizeimage, 1920 * 4 * 1080);
	f.fmt.pix = (struct v4l2_pix_format){.width = 333,
	    .height = 77,
	    .pixelformat = V4L2_PIX_FMT_YUYV};
	ASSERT_OK(fm_ioctl(fd, VIDIOC_TRY_FMT, &f));
	ASSERT_EQ(f.fmt.pix.width, 332);
	ASSERT_EQ(f.fmt.pix.height, 77);
	ASSERT_EQ(f.fmt.pix.bytesperline, 332 * 2);
	f.fmt.pix = (struct v4l2_pix_format){.width = 64,
	    .height = 64,
	    .pixelformat = 0x12345678};
	ASSERT_OK(fm_ioctl(fd, VIDIOC_TRY_FMT, &f));
	ASSERT_EQ(f.fmt.pix.pixelformat, V4L2_PIX_FMT_YUYV);
	f = (struct v4l2_format){.type = CAP};
	ASSERT_OK(fm_ioctl(fd, VIDIOC_G_FMT, &f));
	ASSERT_EQ(f.fmt.pix.width, 640);

	/* S_FMT sets; refused while buffers exist; free them and it works. */
	struct v4l2_pix_format pix = set_fmt(fd, V4L2_PIX_FMT_RGB24, 101, 50);
	ASSERT_EQ(pix.width, 100);
	ASSERT_EQ(pix.sizeimage, 100 * 3 * 50);
	ASSERT_OK(fm_ioctl(fd, VIDIOC_G_FMT, &f));
	ASSERT_EQ(f.fmt.pix.pixelformat, V4L2_PIX_FMT_RGB24);
	ASSERT_EQ(f.fmt.pix.width, 100);
	ASSERT_EQ(reqbufs(fd, 2), 2);
	f.fmt.pix.width = 200;
	ASSERT_ERRNO(fm_ioctl(fd, VIDIOC_S_FMT, &f), EBUSY);
	ASSERT_EQ(reqbufs(fd, 0), 0);
	pix = set_fmt(fd, V4L2_PIX_FMT_YUYV, 200, 100);
	ASSERT_EQ(pix.width, 200);

	f.type = V4L2_BUF_TYPE_VIDEO_OUTPUT;
	ASSERT_ERRNO(fm_ioctl(fd, VIDIOC_G_FMT, &f), EINVAL);
	ASSERT_ERRNO(fm_ioctl(fd, VIDIOC_S_FMT, &f), EINVAL);
	ASSERT_ERRNO(fm_ioctl(fd, VIDIOC_TRY_FMT, &f), EINVAL);

	/* S_PARM: 0 is the default, faster than 1 ms and slower than 1 s
	 * are clamped. */
	struct v4l2_streamparm p = {.type = CAP};
	p.parm.capture.timeperframe = (struct v4l2_fract){0, 0};
	ASSERT_OK(fm_ioctl(fd, VIDIOC_S_PARM, &p));
	ASSERT_EQ(p.parm.capture.timeperframe.denominator, 30);
	p.parm.capture.timeperframe = (struct v4l2_fract){1, 100000};
	ASSERT_OK(fm_ioctl(fd, VIDIOC_S_PARM, &p));
	ASSERT_EQ(p.parm.capture.timeperframe.denominator, 1000);
	p.parm.capture.timeperframe = (struct v4l2_fract){5, 1};
	ASSERT_OK(fm_ioctl(fd, VIDIOC_S_PARM, &p));
	ASSERT_EQ(p.parm.capture.timeperframe.numerator, 1);
	ASSERT_EQ(p.parm.capture.timeperframe.denominator, 1);
	p.parm.capture.timeperframe = (struct v4l2_fract){2, 50};
	ASSERT_OK(fm_ioctl(fd, VIDIOC_S_PARM, &p));
	ASSERT_EQ(p.parm.capture.timeperframe.numerator, 1);
	ASSERT_EQ(p.parm.capture.timeperframe.denominator, 25);
	ASSERT_OK(fm_close(fd));
}

/* REQBUFS 4, map, QBUF, STREAMON, 10 frames checked byte for byte. */
TEST_TAGGED(video_capture_frames_match_the_pattern, "thread")
{
	fm_test_need_uffd();
	struct stream s;
	int64_t seq = -1;

	stream_setup(&s, O_RDWR, V4L2_PIX_FMT_RGB24, 100, 50, 4);
	ASSERT_EQ(FM_VIDEO_BUFSIZE(s.pix.sizeimage), 4 * PG); /* 15000 */
	for (unsigned i = 0; i < s.n; i++)
		qbuf(s.fd, i);
	streamon(s.fd);
	for (int k = 0; k < 10; k++)
		seq = capture_one(&s, seq);

	/* STREAMOFF gives every buffer back. */
	streamoff(s.fd);
	for (unsigned i = 0; i < s.n; i++) {
		struct v4l2_buffer b = {.index = i,
		    .type = CAP,
		    .memory = V4L2_MEMORY_MMAP};

		ASSERT_OK(fm_ioctl(s.fd, VIDIOC_QUERYBUF, &b));
		ASSERT_EQ(b.flags & (V4L2_BUF_FLAG_QUEUED | V4L2_BUF_FLAG_DONE),
		    0);
	}
	/* A new stream counts from 0 again, in another format. */
	for (unsigned i = 0; i < s.n; i++)
		ASSERT_OK(fm_munmap(s.map[i], s.len[i]));
	ASSERT_EQ(reqbufs(s.fd, 0), 0);
	s.pix = set_fmt(s.fd, V4L2_PIX_FMT_YUYV, 64, 48);
	s.n = reqbufs(s.fd, 2);
	ASSERT_EQ(s.n, 2);
	for (unsigned i = 0; i < s.n; i++) {
		s.len[i] = s.pix.sizeimage;
		s.map[i] = fm_mmap(NULL, s.len[i], PROT_READ, MAP_SHARED, s.fd,
		    (off_t)(i * FM_VIDEO_BUFSIZE(s.pix.sizeimage)));
		ASSERT(s.map[i] != MAP_FAILED);
		qbuf(s.fd, i);
	}
	streamon(s.fd);
	struct v4l2_buffer b;
	ASSERT_OK(dqbuf(s.fd, &b));
	ASSERT_LE(b.sequence, 2); /* a frame or two may find no buffer */
	check_frame(&s, &b);
	qbuf(s.fd, b.index);
	capture_one(&s, b.sequence);
	stream_end(&s);
}

/* poll waits for a frame; O_NONBLOCK DQBUF gives EAGAIN with none done. */
TEST_TAGGED(video_poll_and_nonblocking_dqbuf, "thread")
{
	fm_test_need_uffd();
	struct stream s;
	struct v4l2_buffer b;
	struct pollfd pfd;

	stream_setup(&s, O_RDWR | O_NONBLOCK, V4L2_PIX_FMT_XBGR32, 32, 16, 2);
	pfd = (struct pollfd){.fd = s.fd, .events = POLLIN};
	ASSERT_EQ(fm_poll(&pfd, 1, 0), 1); /* not streaming: POLLERR */
	ASSERT_EQ(pfd.revents, POLLERR);
	ASSERT_ERRNO(dqbuf(s.fd, &b), EINVAL);

	streamon(s.fd);
	ASSERT_EQ(fm_poll(&pfd, 1, 0), 1); /* no QBUF yet: still POLLERR */
	ASSERT_EQ(pfd.revents, POLLERR);
	ASSERT_ERRNO(dqbuf(s.fd, &b), EAGAIN);
	qbuf(s.fd, 0);
	ASSERT_EQ(fm_poll(&pfd, 1, 5000), 1);
	ASSERT_EQ(pfd.revents, POLLIN);
	ASSERT_OK(dqbuf(s.fd, &b));
	ASSERT_EQ(b.index, 0);
	check_frame(&s, &b);

	/* Nothing queued, nothing done: poll times out, DQBUF EAGAIN. */
	ASSERT_EQ(fm_poll(&pfd, 1, 30), 0);
	ASSERT_EQ(pfd.revents, 0);
	ASSERT_ERRNO(dqbuf(s.fd, &b), EAGAIN);
	pfd.events = POLLOUT; /* a capture device is never writable */
	ASSERT_EQ(fm_poll(&pfd, 1, 0), 0);

	/* And a frame later with two buffers queued. */
	qbuf(s.fd, 0);
	qbuf(s.fd, 1);
	pfd.events = POLLIN | POLLRDNORM;
	ASSERT_EQ(fm_poll(&pfd, 1, 5000), 1);
	ASSERT_EQ(pfd.revents, POLLIN | POLLRDNORM);
	int64_t prev = b.sequence;
	ASSERT_OK(dqbuf(s.fd, &b));
	ASSERT_GE((int64_t)b.sequence, prev + 1);
	check_frame(&s, &b);
	stream_end(&s);
}

/*
 * fm_poll over a fomap file and a pipe at once: either wakes it, and the
 * count is of the entries ready; nfds over the descriptor limit: EINVAL.
 */
TEST_TAGGED(fm_poll_mixes_fomap_and_other_descriptors, "thread")
{
	fm_test_need_uffd();
	struct stream s;
	struct pollfd p[2];
	int pp[2];
	char c = 'x';

	stream_setup(&s, O_RDWR | O_NONBLOCK, V4L2_PIX_FMT_XBGR32, 32, 16, 1);
	streamon(s.fd);
	ASSERT_OK(pipe(pp));
	p[0] = (struct pollfd){.fd = s.fd, .events = POLLIN};
	p[1] = (struct pollfd){.fd = pp[0], .events = POLLIN};
	ASSERT_EQ(fm_poll(p, 2, 0), 1); /* streaming, nothing queued */
	ASSERT_EQ(p[0].revents, POLLERR);
	qbuf(s.fd, 0);
	ASSERT_EQ(fm_poll(p, 2, 5000), 1); /* the frame */
	ASSERT_EQ(p[0].revents, POLLIN);
	ASSERT_EQ(p[1].revents, 0);
	ASSERT_EQ(write(pp[1], &c, 1), 1);
	ASSERT_EQ(fm_poll(p, 2, 0), 2);
	ASSERT_EQ(p[1].revents, POLLIN);
	p[0].fd = -1; /* left out, as poll(2) does */
	ASSERT_EQ(fm_poll(p, 2, 0), 1);
	ASSERT_EQ(p[0].revents, 0);
	ASSERT_ERRNO(fm_poll(p, 1UL << 40, 0), EINVAL);
	close(pp[0]);
	close(pp[1]);
	stream_end(&s);
}

struct waiter {
	int fd;
	int r, err;
	atomic_int started;
};

static void *
dqbuf_waiter(void *arg)
{
	struct waiter *w = arg;
	struct v4l2_buffer b;

	atomic_store(&w->started, 1);
	w->r = dqbuf(w->fd, &b);
	w->err = errno;
	return NULL;
}

/* A DQBUF blocked in another thread is woken by STREAMOFF, with EINVAL. */
TEST_TAGGED(video_streamoff_wakes_a_blocked_dqbuf, "thread")
{
	fm_test_need_uffd();
	struct stream s;
	struct waiter w = {.r = 0};
	pthread_t t;

	stream_setup(&s, O_RDWR, V4L2_PIX_FMT_YUYV, 32, 32, 2);
	streamon(s.fd); /* nothing queued: no frame will ever be done */
	w.fd = s.fd;
	ASSERT_EQ(pthread_create(&t, NULL, dqbuf_waiter, &w), 0);
	while (!atomic_load(&w.started))
		usleep(1000);
	usleep(50 * 1000); /* let it block */
	streamoff(s.fd);
	ASSERT_EQ(pthread_join(t, NULL), 0);
	ASSERT_EQ(w.r, -1);
	ASSERT_EQ(w.err, EINVAL);
	stream_end(&s);
}

/* Two opens: their own formats, buffers, sequences and streams. */
TEST_TAGGED(video_two_opens_stream_independently, "thread")
{
	fm_test_need_uffd();
	struct stream a, b;
	int64_t sa = -1, sb = -1;

	stream_setup(&a, O_RDWR, V4L2_PIX_FMT_YUYV, 64, 32, 3);
	stream_setup(&b, O_RDWR, V4L2_PIX_FMT_RGB24, 48, 20, 2);
	for (unsigned i = 0; i < a.n; i++)
		qbuf(a.fd, i);
	for (unsigned i = 0; i < b.n; i++)
		qbuf(b.fd, i);
	streamon(a.fd);
	streamon(b.fd);
	for (int k = 0; k < 5; k++) {
		sa = capture_one(&a, sa);
		sb = capture_one(&b, sb);
	}
	/* a stops; b goes on; a's buffers are all its own again. */
	streamoff(a.fd);
	struct v4l2_buffer x;
	ASSERT_ERRNO(dqbuf(a.fd, &x), EINVAL);
	for (int k = 0; k < 3; k++)
		sb = capture_one(&b, sb);
	/* b's offsets are not a's: a's buffer 2 does not exist in b. */
	ASSERT_ERRNO(fm_mmap(NULL, a.len[2], PROT_READ, MAP_SHARED, b.fd,
	                 (off_t)(2 * FM_VIDEO_BUFSIZE(b.pix.sizeimage))),
	    EINVAL);
	stream_end(&a);
	stream_end(&b);
}

TEST(video_bad_input_is_refused)
{
	fm_test_need_uffd();
	int fd = video_dev(O_RDWR), type = CAP;
	struct v4l2_buffer b = {.type = CAP, .memory = V4L2_MEMORY_MMAP};
	struct v4l2_requestbuffers rb = {.count = 2,
	    .type = CAP,
	    .memory = V4L2_MEMORY_USERPTR};

	/* No buffers yet: QBUF, QUERYBUF, STREAMON, mmap, DQBUF. */
	ASSERT_ERRNO(fm_ioctl(fd, VIDIOC_QBUF, &b), EINVAL);
	ASSERT_ERRNO(fm_ioctl(fd, VIDIOC_QUERYBUF, &b), EINVAL);
	ASSERT_ERRNO(fm_ioctl(fd, VIDIOC_STREAMON, &type), EINVAL);
	ASSERT_ERRNO(fm_mmap(NULL, PG, PROT_READ, MAP_SHARED, fd, 0), EINVAL);
	ASSERT_ERRNO(fm_ioctl(fd, VIDIOC_DQBUF, &b), EINVAL);

	/* REQBUFS: USERPTR, DMABUF, wrong type; count clamped to 32. */
	ASSERT_ERRNO(fm_ioctl(fd, VIDIOC_REQBUFS, &rb), EINVAL);
	rb.memory = V4L2_MEMORY_DMABUF;
	ASSERT_ERRNO(fm_ioctl(fd, VIDIOC_REQBUFS, &rb), EINVAL);
	rb = (struct v4l2_requestbuffers){.count = 2,
	    .type = V4L2_BUF_TYPE_VIDEO_OUTPUT,
	    .memory = V4L2_MEMORY_MMAP};
	ASSERT_ERRNO(fm_ioctl(fd, VIDIOC_REQBUFS, &rb), EINVAL);
	set_fmt(fd, V4L2_PIX_FMT_YUYV, 64, 48); /* 6144 bytes: 2 pages each */
	ASSERT_EQ(reqbufs(fd, 100), 32);
	ASSERT_EQ(reqbufs(fd, 3), 3);

	/* QBUF/QUERYBUF: wrong type, index out of range, USERPTR. */
	b = (struct v4l2_buffer){.index = 0,
	    .type = V4L2_BUF_TYPE_VIDEO_OUTPUT,
	    .memory = V4L2_MEMORY_MMAP};
	ASSERT_ERRNO(fm_ioctl(fd, VIDIOC_QBUF, &b), EINVAL);
	ASSERT_ERRNO(fm_ioctl(fd, VIDIOC_QUERYBUF, &b), EINVAL);
	ASSERT_ERRNO(fm_ioctl(fd, VIDIOC_DQBUF, &b), EINVAL);
	b.type = CAP;
	b.index = 3;
	ASSERT_ERRNO(fm_ioctl(fd, VIDIOC_QBUF, &b), EINVAL);
	ASSERT_ERRNO(fm_ioctl(fd, VIDIOC_QUERYBUF, &b), EINVAL);
	b.index = 0;
	b.memory = V4L2_MEMORY_USERPTR;
	ASSERT_ERRNO(fm_ioctl(fd, VIDIOC_QBUF, &b), EINVAL);
	qbuf(fd, 0);
	ASSERT_ERRNO(fm_ioctl(fd, VIDIOC_QBUF, &b), EINVAL); /* queued */
	b.memory = V4L2_MEMORY_MMAP;
	ASSERT_ERRNO(fm_ioctl(fd, VIDIOC_QBUF, &b), EINVAL);
	type = V4L2_BUF_TYPE_VIDEO_OUTPUT;
	ASSERT_ERRNO(fm_ioctl(fd, VIDIOC_STREAMON, &type), EINVAL);
	ASSERT_ERRNO(fm_ioctl(fd, VIDIOC_STREAMOFF, &type), EINVAL);

	/* mmap: not a buffer's start, past the end, private, write-only. */
	ASSERT_ERRNO(fm_mmap(NULL, PG, PROT_READ, MAP_SHARED, fd, PG), EINVAL);
	ASSERT_ERRNO(fm_mmap(NULL, 3 * PG, PROT_READ, MAP_SHARED, fd, 0),
	    EINVAL);
	ASSERT_ERRNO(fm_mmap(NULL, PG, PROT_READ, MAP_SHARED, fd, 6 * PG),
	    EINVAL);
	ASSERT_ERRNO(fm_mmap(NULL, PG, PROT_READ, MAP_PRIVATE, fd, 0), EINVAL);
	ASSERT_ERRNO(fm_mmap(NULL, PG, PROT_WRITE, MAP_SHARED, fd, 0), EINVAL);
	void *p = fm_mmap(NULL, 2 * PG, PROT_READ, MAP_SHARED, fd, 4 * PG);
	ASSERT(p != MAP_FAILED);
	ASSERT_OK(fm_munmap(p, 2 * PG));

	/* Streaming: REQBUFS is busy. */
	type = CAP;
	ASSERT_OK(fm_ioctl(fd, VIDIOC_STREAMON, &type));
	ASSERT_OK(fm_ioctl(fd, VIDIOC_STREAMON, &type)); /* again: fine */
	rb = (struct v4l2_requestbuffers){.count = 0,
	    .type = CAP,
	    .memory = V4L2_MEMORY_MMAP};
	ASSERT_ERRNO(fm_ioctl(fd, VIDIOC_REQBUFS, &rb), EBUSY);
	ASSERT_OK(fm_ioctl(fd, VIDIOC_STREAMOFF, &type));
	ASSERT_OK(fm_ioctl(fd, VIDIOC_STREAMOFF, &type)); /* again: fine */
	ASSERT_EQ(reqbufs(fd, 0), 0);
	ASSERT_ERRNO(fm_ioctl(fd, VIDIOC_QBUF, NULL), EFAULT);
	ASSERT_OK(fm_close(fd));
}

/*
 * Close while streaming, buffers queued and mapped: the producer is gone
 * (ASan checks the memory), the mappings still read the last frames.
 */
TEST_TAGGED(video_close_while_streaming_leaves_nothing, "thread")
{
	fm_test_need_uffd();
	struct stream s;
	struct v4l2_buffer b;
	unsigned before;

	stream_setup(&s, O_RDWR, V4L2_PIX_FMT_YUYV, 64, 16, 3);
	before = nthreads();
	for (unsigned i = 0; i < s.n; i++)
		qbuf(s.fd, i);
	streamon(s.fd);
	ASSERT_EQ(nthreads(), before + 1);
	ASSERT_OK(dqbuf(s.fd, &b));
	ASSERT_OK(fm_close(s.fd));
	ASSERT_EQ(nthreads(), before);
	check_frame(&s, &b); /* the mapping holds the object */
	for (unsigned i = 0; i < s.n; i++)
		ASSERT_OK(fm_munmap(s.map[i], s.len[i]));
}
