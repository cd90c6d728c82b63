/*
 * video.c: the video0 device, a virtual V4L2 capture camera with MMAP
 * streaming (include/fomap/video.h), so that programs written for a
 * camera capture from it unchanged. Its behaviour follows videobuf2 (vb2)
 * and vivid where V4L2 leaves a choice.
 *
 * Map of the driver:
 *
 *   video_open      d_open: a clone with its own struct video_file and the
 *                   object that holds all its buffers
 *   video_ioctl     QUERYCAP, ENUM_FMT, G/S/TRY_FMT, ENUMINPUT, G/S_INPUT,
 *                   REQBUFS, QUERYBUF, QBUF, DQBUF, STREAMON/OFF, G/S_PARM
 *   video_mmap      fo_mmap: a buffer's offset is the same offset of the
 *                   object (a linear layout)
 *   video_poll      fo_poll: POLLIN when a done buffer waits, POLLERR when
 *                   there is nothing to wait for
 *   video_close     fo_close: stop the producer, drop the object, free
 *   producer        the thread that fills queued buffers at the frame rate
 *                   while the open streams
 *
 * Memory: one anonymous object per open, large enough for
 * FM_VIDEO_MAX_BUFFERS buffers of the largest format. It is a sparse
 * memfd: only pages written cost memory, and REQBUFS gives them back
 * (FM_UNMAP_DISCARD). Buffer i is at i * FM_VIDEO_BUFSIZE(sizeimage),
 * so a client (fomapd) may map the object's store as it is.
 *
 * Buffer states, vb2's: DEQUEUED (the program's) -QBUF-> QUEUED -producer
 * takes it-> ACTIVE -filled-> DONE -DQBUF-> DEQUEUED. STREAMOFF (and
 * close) stop and join the producer first, then return every buffer to
 * DEQUEUED, so no buffer is written once the program owns it again.
 *
 * Locks: vf->ioc serializes every request but DQBUF (the video device
 * lock of a V4L2 driver); vf->lock guards what the producer, DQBUF and
 * poll share: the buffers' states, the queues, streaming, the frame
 * interval. Order: ioc, then lock. Fields marked (ioc+lock) are written
 * under both and read under either. DQBUF waits on vf->done with lock
 * alone, so that a STREAMOFF can come and wake it. The producer writes
 * pixels with no lock held: the buffer is ACTIVE and only it touches it.
 * A DQBUF blocked in a thread keeps its file referenced, so a close in
 * another thread reaches fo_close only after it returns: as with
 * close(2) of a V4L2 descriptor, STREAMOFF is what wakes it.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/videodev2.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include <fomap/driver.h>
#include <fomap/video.h>

#define NFMTS (sizeof(video_fmts) / sizeof(video_fmts[0]))
#define DEFAULT_WIDTH 640
#define DEFAULT_HEIGHT 480
#define MAX_FPS 1000 /* the shortest frame interval: 1 ms */
#define OBJ_SIZE                                            \
	(FM_VIDEO_MAX_BUFFERS *                             \
	    FM_VIDEO_BUFSIZE((uint64_t)FM_VIDEO_MAX_WIDTH * \
	        FM_VIDEO_MAX_HEIGHT * FM_VIDEO_MAX_BPP))
#define NSEC 1000000000LL

static const struct video_fmt {
	uint32_t fourcc;
	uint32_t bpp; /* bytes a pixel */
	const char *desc;
} video_fmts[] = {
    {V4L2_PIX_FMT_YUYV, 2, "YUYV 4:2:2"},
    {V4L2_PIX_FMT_RGB24, 3, "24-bit RGB 8-8-8"},
    {V4L2_PIX_FMT_XBGR32, 4, "32-bit BGRX 8-8-8-8"},
};

enum vbuf_state { VB_DEQUEUED, VB_QUEUED, VB_ACTIVE, VB_DONE };

struct video_buf {
	enum vbuf_state state; /* lock */
	uint32_t sequence; /* of the frame it holds (lock) */
	uint32_t bytesused; /* of that frame, 0: none yet (lock) */
	struct timeval timestamp; /* CLOCK_MONOTONIC, when done (lock) */
};

/* A FIFO of buffer indexes. */
struct video_fifo {
	uint8_t v[FM_VIDEO_MAX_BUFFERS];
	unsigned head, len;
};

struct video_file {
	pthread_mutex_t ioc; /* every request but DQBUF */
	pthread_mutex_t lock; /* shared with the producer, DQBUF, poll */
	pthread_cond_t done; /* lock: a buffer is done, or streaming ended */
	pthread_cond_t kick; /* lock: the producer is to stop (monotonic) */
	struct fm_file *fp; /* immutable: for fm_file_wakeup */
	struct fm_object *obj; /* immutable: the whole mmap space */
	uint8_t *win; /* immutable: its window */
	struct v4l2_pix_format fmt; /* ioc; frozen while buffers exist */
	struct v4l2_fract tpf; /* frame interval (ioc+lock) */
	unsigned nbufs; /* ioc+lock */
	uint64_t bufsize; /* stride of the buffers (ioc+lock) */
	struct video_buf buf[FM_VIDEO_MAX_BUFFERS];
	struct video_fifo queued, dq; /* QUEUED, DONE (lock) */
	int streaming; /* ioc+lock */
	int waiting_for_buffers; /* no QBUF since REQBUFS/STREAMOFF (lock) */
	int stop; /* the producer is to end (lock) */
	uint32_t seq; /* the next frame's number (lock) */
	pthread_t producer; /* ioc: valid while streaming */
	uint8_t *row; /* producer's: 0, 1, .. 255, 0, .. for any line */
};

/* ------------------------------------------------------------------------
 * Formats and frame intervals.
 */

static const struct video_fmt *
fmt_find(uint32_t fourcc)
{
	for (size_t i = 0; i < NFMTS; i++)
		if (video_fmts[i].fourcc == fourcc)
			return &video_fmts[i];
	return NULL;
}

static uint32_t
clamp_u32(uint32_t v, uint32_t lo, uint32_t hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

/*
 * The format the device would use for what pix asks (TRY_FMT): an unknown
 * pixel format becomes the first, sizes are clamped, the rest computed.
 */
static void
fmt_try(struct v4l2_pix_format *pix)
{
	const struct video_fmt *vf = fmt_find(pix->pixelformat);
	uint32_t w, h;

	if (vf == NULL)
		vf = &video_fmts[0];
	w = clamp_u32(pix->width, FM_VIDEO_MIN_WIDTH, FM_VIDEO_MAX_WIDTH);
	h = clamp_u32(pix->height, FM_VIDEO_MIN_HEIGHT, FM_VIDEO_MAX_HEIGHT);
	w &= ~1u; /* YUYV's pixel pairs; the limits are even */
	*pix = (struct v4l2_pix_format){
	    .width = w,
	    .height = h,
	    .pixelformat = vf->fourcc,
	    .field = V4L2_FIELD_NONE,
	    .bytesperline = w * vf->bpp,
	    .sizeimage = w * vf->bpp * h,
	    .colorspace = V4L2_COLORSPACE_SRGB,
	};
}

/* A frame interval in [1/MAX_FPS s, 1 s]; 0 in either term: the default. */
static struct v4l2_fract
tpf_clamp(struct v4l2_fract t)
{
	uint32_t a, b, r;

	if (t.numerator == 0 || t.denominator == 0)
		return (struct v4l2_fract){1, 30};
	if ((uint64_t)t.numerator * MAX_FPS < t.denominator)
		return (struct v4l2_fract){1, MAX_FPS};
	if (t.numerator > t.denominator)
		return (struct v4l2_fract){1, 1};
	for (a = t.numerator, b = t.denominator; b != 0; a = b, b = r)
		r = a % b;
	return (struct v4l2_fract){t.numerator / a, t.denominator / a};
}

/* ------------------------------------------------------------------------
 * Buffers and the producer.
 */

static void
fifo_push(struct video_fifo *q, unsigned idx)
{
	q->v[(q->head + q->len++) % FM_VIDEO_MAX_BUFFERS] = (uint8_t)idx;
}

static unsigned
fifo_pop(struct video_fifo *q)
{
	unsigned idx = q->v[q->head];

	q->head = (q->head + 1) % FM_VIDEO_MAX_BUFFERS;
	q->len--;
	return idx;
}

/* What QUERYBUF, QBUF and DQBUF tell of buffer idx. => lock held */
static void
buf_info_locked(struct video_file *vf, unsigned idx, struct v4l2_buffer *b)
{
	const struct video_buf *vb = &vf->buf[idx];
	uint32_t flags = V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC;

	if (vb->state == VB_QUEUED || vb->state == VB_ACTIVE)
		flags |= V4L2_BUF_FLAG_QUEUED;
	else if (vb->state == VB_DONE)
		flags |= V4L2_BUF_FLAG_DONE;
	*b = (struct v4l2_buffer){
	    .index = idx,
	    .type = V4L2_BUF_TYPE_VIDEO_CAPTURE,
	    .bytesused = vb->bytesused,
	    .flags = flags,
	    .field = V4L2_FIELD_NONE,
	    .timestamp = vb->timestamp,
	    .sequence = vb->sequence,
	    .memory = V4L2_MEMORY_MMAP,
	    .m.offset = (uint32_t)(idx * vf->bufsize),
	    .length = vf->fmt.sizeimage,
	};
}

/* Every buffer back to the program, none queued. => ioc and lock held */
static void
bufs_reset_locked(struct video_file *vf)
{
	for (unsigned i = 0; i < FM_VIDEO_MAX_BUFFERS; i++)
		vf->buf[i].state = VB_DEQUEUED;
	vf->queued.len = vf->dq.len = 0;
	vf->waiting_for_buffers = 1;
}

/*
 * Write frame seq into buffer idx through the window: the pattern of
 * video.h, then seq little-endian in the first 4 bytes.
 * => no lock held; the buffer is ACTIVE (ours); fmt is frozen
 */
static void
frame_fill(struct video_file *vf, unsigned idx, uint32_t seq)
{
	uint8_t *p = vf->win + idx * vf->bufsize;
	const uint8_t le[4] = {(uint8_t)seq, (uint8_t)(seq >> 8),
	    (uint8_t)(seq >> 16), (uint8_t)(seq >> 24)};
	uint32_t bpl = vf->fmt.bytesperline;

	/* Line y is the row from (2y + 5 seq) mod 256 on: see video.h. */
	for (uint32_t y = 0; y < vf->fmt.height; y++)
		memcpy(p + (size_t)y * bpl,
		    vf->row + fm_video_pattern(0, y, seq), bpl);
	memcpy(p, le, sizeof(le));
}

static void
ts_add_ns(struct timespec *ts, int64_t ns)
{
	int64_t t = ts->tv_nsec + ns;

	ts->tv_sec += (time_t)(t / NSEC);
	ts->tv_nsec = (long)(t % NSEC);
}

static int64_t
ts_diff_ns(const struct timespec *a, const struct timespec *b)
{
	return (int64_t)(a->tv_sec - b->tv_sec) * NSEC +
	    (a->tv_nsec - b->tv_nsec);
}

/*
 * The producer: one frame a frame interval. Each frame takes a number;
 * a frame that finds no queued buffer is dropped with its number (as a
 * sensor keeps running when the program is late).
 * => runs from STREAMON until vf->stop; STREAMOFF and close join it
 */
static void *
producer(void *arg)
{
	struct video_file *vf = arg;
	struct timespec next, now;

	clock_gettime(CLOCK_MONOTONIC, &next);
	pthread_mutex_lock(&vf->lock);
	for (;;) {
		int64_t period =
		    (int64_t)vf->tpf.numerator * NSEC / vf->tpf.denominator;
		unsigned idx;
		uint32_t seq;

		ts_add_ns(&next, period);
		while (!vf->stop &&
		    pthread_cond_timedwait(&vf->kick, &vf->lock, &next) !=
		        ETIMEDOUT)
			;
		if (vf->stop)
			break;
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (ts_diff_ns(&now, &next) > period)
			next =
			    now; /* far behind (a stop of the process): no burst */
		seq = vf->seq++;
		if (vf->queued.len == 0)
			continue;
		idx = fifo_pop(&vf->queued);
		vf->buf[idx].state = VB_ACTIVE;
		pthread_mutex_unlock(&vf->lock);

		frame_fill(vf, idx, seq);
		clock_gettime(CLOCK_MONOTONIC, &now);

		pthread_mutex_lock(&vf->lock);
		vf->buf[idx].state = VB_DONE;
		vf->buf[idx].sequence = seq;
		vf->buf[idx].bytesused = vf->fmt.sizeimage;
		vf->buf[idx].timestamp = (struct timeval){.tv_sec = now.tv_sec,
		    .tv_usec = now.tv_nsec / 1000};
		fifo_push(&vf->dq, idx);
		pthread_cond_broadcast(&vf->done);
		pthread_mutex_unlock(&vf->lock);
		fm_file_wakeup(vf->fp);
		pthread_mutex_lock(&vf->lock);
	}
	pthread_mutex_unlock(&vf->lock);
	return NULL;
}

/*
 * Stop streaming: end and join the producer, wake DQBUF, and return every
 * buffer to the program (V4L2's STREAMOFF). Not streaming: only the
 * return.
 * => ioc held
 */
static void
stream_stop(struct video_file *vf)
{
	int was;

	pthread_mutex_lock(&vf->lock);
	was = vf->streaming;
	vf->streaming = 0;
	vf->stop = 1;
	pthread_cond_signal(&vf->kick);
	pthread_cond_broadcast(&vf->done); /* DQBUF: -EINVAL now */
	pthread_mutex_unlock(&vf->lock);
	if (was)
		pthread_join(vf->producer, NULL);
	pthread_mutex_lock(&vf->lock);
	bufs_reset_locked(vf);
	pthread_mutex_unlock(&vf->lock);
}

/* ------------------------------------------------------------------------
 * The requests. Each runs with vf->ioc held but DQBUF.
 */

static int
ioc_querycap(struct v4l2_capability *c)
{
	*c = (struct v4l2_capability){
	    .version = 0x00010000, /* 1.0.0 */
	    .capabilities = V4L2_CAP_VIDEO_CAPTURE | V4L2_CAP_STREAMING |
	        V4L2_CAP_DEVICE_CAPS,
	    .device_caps = V4L2_CAP_VIDEO_CAPTURE | V4L2_CAP_STREAMING,
	};
	strcpy((char *)c->driver, "fomap-video");
	strcpy((char *)c->card, "fomap virtual camera");
	strcpy((char *)c->bus_info, "platform:fomap-" FM_VIDEO_NAME);
	return 0;
}

static int
ioc_enum_fmt(struct v4l2_fmtdesc *f)
{
	uint32_t index = f->index;

	if (f->type != V4L2_BUF_TYPE_VIDEO_CAPTURE || index >= NFMTS)
		return -EINVAL;
	*f = (struct v4l2_fmtdesc){
	    .index = index,
	    .type = V4L2_BUF_TYPE_VIDEO_CAPTURE,
	    .pixelformat = video_fmts[index].fourcc,
	};
	strcpy((char *)f->description, video_fmts[index].desc);
	return 0;
}

/* G_FMT, S_FMT (set), TRY_FMT. => EBUSY: S_FMT while buffers exist */
static int
ioc_fmt(struct video_file *vf, struct v4l2_format *f, int set, int try)
{
	struct v4l2_pix_format pix = f->fmt.pix;

	if (f->type != V4L2_BUF_TYPE_VIDEO_CAPTURE)
		return -EINVAL;
	if (set || try)
		fmt_try(&pix);
	else
		pix = vf->fmt;
	/* vivid answers with the format it would take, then refuses. */
	memset(&f->fmt, 0, sizeof(f->fmt));
	f->fmt.pix = pix;
	if (set && vf->nbufs > 0)
		return -EBUSY;
	if (set)
		vf->fmt = pix;
	return 0;
}

static int
ioc_enuminput(struct v4l2_input *in)
{
	if (in->index != 0)
		return -EINVAL;
	*in = (struct v4l2_input){.type = V4L2_INPUT_TYPE_CAMERA};
	strcpy((char *)in->name, "Camera 0");
	return 0;
}

static int
ioc_parm(struct video_file *vf, struct v4l2_streamparm *p, int set)
{
	struct v4l2_fract t;

	if (p->type != V4L2_BUF_TYPE_VIDEO_CAPTURE)
		return -EINVAL;
	pthread_mutex_lock(&vf->lock);
	if (set)
		vf->tpf = tpf_clamp(p->parm.capture.timeperframe);
	t = vf->tpf;
	pthread_mutex_unlock(&vf->lock);
	memset(&p->parm, 0, sizeof(p->parm));
	p->parm.capture.capability = V4L2_CAP_TIMEPERFRAME;
	p->parm.capture.timeperframe = t;
	return 0;
}

/*
 * REQBUFS: free every buffer (their pages go back: a mapping left over
 * reads zeros from then on), then allocate count of the current format.
 * => EINVAL: not MMAP capture; EBUSY: streaming
 */
static int
ioc_reqbufs(struct video_file *vf, struct v4l2_requestbuffers *rb)
{
	uint64_t extent;
	uint32_t count = rb->count;
	int r = 0;

	if (rb->type != V4L2_BUF_TYPE_VIDEO_CAPTURE ||
	    rb->memory != V4L2_MEMORY_MMAP)
		return -EINVAL;
	if (vf->streaming)
		return -EBUSY;
	rb->capabilities = V4L2_BUF_CAP_SUPPORTS_MMAP;
	rb->flags = 0;
	memset(rb->reserved, 0, sizeof(rb->reserved));
	extent = vf->nbufs * vf->bufsize;
	pthread_mutex_lock(&vf->lock);
	bufs_reset_locked(vf);
	vf->nbufs = 0;
	pthread_mutex_unlock(&vf->lock);
	if (extent > 0)
		r = fm_object_unmap(vf->obj, 0, extent, FM_UNMAP_DISCARD);
	if (r < 0 || count == 0) {
		rb->count = 0;
		return r;
	}
	count = clamp_u32(count, 1, FM_VIDEO_MAX_BUFFERS);
	pthread_mutex_lock(&vf->lock);
	for (unsigned i = 0; i < FM_VIDEO_MAX_BUFFERS; i++)
		vf->buf[i] = (struct video_buf){.state = VB_DEQUEUED};
	vf->bufsize = FM_VIDEO_BUFSIZE(vf->fmt.sizeimage);
	vf->nbufs = count;
	pthread_mutex_unlock(&vf->lock);
	rb->count = count;
	return 0;
}

static int
ioc_querybuf(struct video_file *vf, struct v4l2_buffer *b)
{
	if (b->type != V4L2_BUF_TYPE_VIDEO_CAPTURE || b->index >= vf->nbufs)
		return -EINVAL;
	pthread_mutex_lock(&vf->lock);
	buf_info_locked(vf, b->index, b);
	pthread_mutex_unlock(&vf->lock);
	return 0;
}

/* => EINVAL: bad type, index or memory, or the buffer is not the user's */
static int
ioc_qbuf(struct video_file *vf, struct v4l2_buffer *b)
{
	int r = 0;

	if (b->type != V4L2_BUF_TYPE_VIDEO_CAPTURE || b->index >= vf->nbufs ||
	    b->memory != V4L2_MEMORY_MMAP)
		return -EINVAL;
	pthread_mutex_lock(&vf->lock);
	if (vf->buf[b->index].state != VB_DEQUEUED)
		r = -EINVAL;
	else {
		vf->buf[b->index].state = VB_QUEUED;
		fifo_push(&vf->queued, b->index);
		vf->waiting_for_buffers = 0;
		buf_info_locked(vf, b->index, b);
	}
	pthread_mutex_unlock(&vf->lock);
	return r;
}

/*
 * DQBUF: the oldest done buffer; waits for one unless nonblock.
 * => ioc NOT held (a STREAMOFF must be able to come)
 * => EINVAL: bad type, or not streaming (also when a STREAMOFF ends the
 *    wait); EAGAIN: nonblock and none done
 */
static int
ioc_dqbuf(struct video_file *vf, struct v4l2_buffer *b, int nonblock)
{
	int r;

	if (b->type != V4L2_BUF_TYPE_VIDEO_CAPTURE)
		return -EINVAL;
	pthread_mutex_lock(&vf->lock);
	for (;;) {
		if (!vf->streaming) {
			r = -EINVAL;
			break;
		}
		if (vf->dq.len > 0) {
			unsigned idx = fifo_pop(&vf->dq);

			buf_info_locked(vf, idx, b); /* flags: DONE, as vb2 */
			vf->buf[idx].state = VB_DEQUEUED;
			r = 0;
			break;
		}
		if (nonblock) {
			r = -EAGAIN;
			break;
		}
		pthread_cond_wait(&vf->done, &vf->lock);
	}
	pthread_mutex_unlock(&vf->lock);
	return r;
}

/* => EINVAL: bad type, or no buffers; EAGAIN/ENOMEM: no thread */
static int
ioc_streamon(struct video_file *vf, const int *type)
{
	size_t rowlen = vf->fmt.bytesperline + 256;
	int r;

	if (*type != V4L2_BUF_TYPE_VIDEO_CAPTURE || vf->nbufs == 0)
		return -EINVAL;
	if (vf->streaming)
		return 0;
	free(vf->row);
	if ((vf->row = malloc(rowlen)) == NULL)
		return -ENOMEM;
	for (size_t i = 0; i < rowlen; i++)
		vf->row[i] = (uint8_t)i;
	pthread_mutex_lock(&vf->lock);
	vf->seq = 0; /* as vivid: every stream counts from 0 */
	vf->stop = 0;
	vf->streaming = 1;
	pthread_mutex_unlock(&vf->lock);
	if ((r = pthread_create(&vf->producer, NULL, producer, vf)) != 0) {
		pthread_mutex_lock(&vf->lock);
		vf->streaming = 0;
		pthread_mutex_unlock(&vf->lock);
		return -r;
	}
	return 0;
}

static int
ioc_streamoff(struct video_file *vf, const int *type)
{
	if (*type != V4L2_BUF_TYPE_VIDEO_CAPTURE)
		return -EINVAL;
	stream_stop(vf);
	fm_file_wakeup(vf->fp); /* poll: POLLERR now */
	return 0;
}

/*
 * fo_ioctl: V4L2's requests; data is the caller's struct.
 * => ENOTTY: any other request; EFAULT: NULL argument
 */
static int
video_ioctl(struct fm_file *fp, unsigned long cmd, void *data)
{
	struct video_file *vf = fm_file_data(fp);
	int r;

	switch (cmd) {
	case VIDIOC_QUERYCAP:
	case VIDIOC_ENUM_FMT:
	case VIDIOC_G_FMT:
	case VIDIOC_S_FMT:
	case VIDIOC_TRY_FMT:
	case VIDIOC_ENUMINPUT:
	case VIDIOC_G_INPUT:
	case VIDIOC_S_INPUT:
	case VIDIOC_REQBUFS:
	case VIDIOC_QUERYBUF:
	case VIDIOC_QBUF:
	case VIDIOC_DQBUF:
	case VIDIOC_STREAMON:
	case VIDIOC_STREAMOFF:
	case VIDIOC_G_PARM:
	case VIDIOC_S_PARM:
		if (data == NULL)
			return -EFAULT;
		break;
	default:
		return -ENOTTY;
	}
	if (cmd == VIDIOC_DQBUF)
		return ioc_dqbuf(vf, data, fm_file_flags(fp) & O_NONBLOCK);

	pthread_mutex_lock(&vf->ioc);
	switch (cmd) {
	case VIDIOC_QUERYCAP:
		r = ioc_querycap(data);
		break;
	case VIDIOC_ENUM_FMT:
		r = ioc_enum_fmt(data);
		break;
	case VIDIOC_G_FMT:
		r = ioc_fmt(vf, data, 0, 0);
		break;
	case VIDIOC_S_FMT:
		r = ioc_fmt(vf, data, 1, 0);
		break;
	case VIDIOC_TRY_FMT:
		r = ioc_fmt(vf, data, 0, 1);
		break;
	case VIDIOC_ENUMINPUT:
		r = ioc_enuminput(data);
		break;
	case VIDIOC_G_INPUT:
		*(unsigned *)data = 0;
		r = 0;
		break;
	case VIDIOC_S_INPUT:
		r = *(const unsigned *)data == 0 ? 0 : -EINVAL;
		break;
	case VIDIOC_REQBUFS:
		r = ioc_reqbufs(vf, data);
		break;
	case VIDIOC_QUERYBUF:
		r = ioc_querybuf(vf, data);
		break;
	case VIDIOC_QBUF:
		r = ioc_qbuf(vf, data);
		break;
	case VIDIOC_STREAMON:
		r = ioc_streamon(vf, data);
		break;
	case VIDIOC_STREAMOFF:
		r = ioc_streamoff(vf, data);
		break;
	case VIDIOC_G_PARM:
		r = ioc_parm(vf, data, 0);
		break;
	default:
		r = ioc_parm(vf, data, 1);
		break;
	}
	pthread_mutex_unlock(&vf->ioc);
	return r;
}

/*
 * fo_mmap: a buffer, mapped shared and readable from its start, maps the
 * same offset of the open's object (as vb2_mmap checks).
 * => EINVAL: no buffer starts at the offset, the length runs past it,
 *    not MAP_SHARED, or not PROT_READ
 */
static int
video_mmap(struct fm_file *fp, struct fm_mmap_req *req)
{
	struct video_file *vf = fm_file_data(fp);
	int type = req->flags & MAP_TYPE;
	uint64_t off = (uint64_t)req->off;
	int r = 0;

	if ((type != MAP_SHARED && type != MAP_SHARED_VALIDATE) ||
	    !(req->prot & PROT_READ) || req->off < 0)
		return -EINVAL;
	pthread_mutex_lock(&vf->lock);
	if (vf->nbufs == 0 || off % vf->bufsize != 0 ||
	    off / vf->bufsize >= vf->nbufs || req->len > vf->bufsize)
		r = -EINVAL;
	pthread_mutex_unlock(&vf->lock);
	if (r < 0)
		return r;
	fm_object_ref(vf->obj);
	req->obj = vf->obj;
	req->maxprot = PROT_READ | PROT_WRITE;
	return 0;
}

/*
 * fo_poll, as vb2's: POLLERR while there is nothing to wait for (not
 * streaming, or no QBUF since REQBUFS or STREAMOFF), POLLIN | POLLRDNORM
 * when a done buffer waits.
 */
static int
video_poll(struct fm_file *fp, int events)
{
	struct video_file *vf = fm_file_data(fp);
	int r = 0;

	if (!(events & (POLLIN | POLLRDNORM)))
		return 0;
	pthread_mutex_lock(&vf->lock);
	if (!vf->streaming || vf->waiting_for_buffers)
		r = POLLERR;
	else if (vf->dq.len > 0)
		r = POLLIN | POLLRDNORM;
	pthread_mutex_unlock(&vf->lock);
	return r;
}

/*
 * fo_close: stop streaming, drop the open's reference to its object
 * (mappings keep theirs) and free the rest.
 */
static int
video_close(struct fm_file *fp)
{
	struct video_file *vf = fm_file_data(fp);

	pthread_mutex_lock(&vf->ioc);
	stream_stop(vf);
	pthread_mutex_unlock(&vf->ioc);
	fm_object_rele(vf->obj);
	pthread_cond_destroy(&vf->kick);
	pthread_cond_destroy(&vf->done);
	pthread_mutex_destroy(&vf->lock);
	pthread_mutex_destroy(&vf->ioc);
	free(vf->row);
	free(vf);
	return 0;
}

/*
 * fo_backing: the whole pool, for a program fomapd serves (it may map any
 * part of its own pool there, not only a buffer at its offset).
 */
static int
video_backing(struct fm_file *fp, struct fm_object **objp, int *maxprot)
{
	struct video_file *vf = fm_file_data(fp);

	fm_object_ref(vf->obj);
	*objp = vf->obj;
	*maxprot = PROT_READ | PROT_WRITE;
	return 0;
}

static const struct fm_fileops video_fileops = {
    .fo_ioctl = video_ioctl,
    .fo_close = video_close,
    .fo_mmap = video_mmap,
    .fo_poll = video_poll,
    .fo_backing = video_backing,
};

/*
 * d_open: every open is a clone with its own format, buffers, stream and
 * object.
 * => ENOMEM, EMFILE: no object or no window for it
 */
static int
video_open(struct fm_dev *dev, int flags, struct fm_file *fp)
{
	struct video_file *vf = calloc(1, sizeof(*vf));
	pthread_condattr_t ca;
	int r;

	if (vf == NULL)
		return -ENOMEM;
	if ((r = fm_object_create_backing(OBJ_SIZE, NULL, &vf->obj)) < 0) {
		free(vf);
		return r;
	}
	if ((vf->win = fm_object_window(vf->obj)) == NULL) {
		r = -errno;
		fm_object_rele(vf->obj);
		free(vf);
		return r;
	}
	pthread_mutex_init(&vf->ioc, NULL);
	pthread_mutex_init(&vf->lock, NULL);
	pthread_cond_init(&vf->done, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* frame times */
	pthread_cond_init(&vf->kick, &ca);
	pthread_condattr_destroy(&ca);
	vf->fmt.width = DEFAULT_WIDTH;
	vf->fmt.height = DEFAULT_HEIGHT;
	vf->fmt.pixelformat = V4L2_PIX_FMT_YUYV;
	fmt_try(&vf->fmt);
	vf->tpf = tpf_clamp((struct v4l2_fract){0, 0});
	vf->waiting_for_buffers = 1;
	vf->fp = fp;
	fm_file_clone(fp, &video_fileops, vf);
	return 0;
}

const struct fm_cdevsw fm__video_cdevsw = {
    .d_open = video_open,
    .d_close = fm_nullclose,
    .d_read = fm_noread,
    .d_write = fm_nowrite,
    .d_ioctl = fm_noioctl,
    .d_mmap = fm_nommap,
};
