/*
 * fbdev.c: the fb0 device, a Linux fbdev framebuffer (<linux/fb.h>) that
 * unmodified fbdev programs can use (include/fomap/fbdev.h).
 *
 * A plain device: one mode and one memory for every open, as a card has.
 * The memory is one anonymous object of FM_FBDEV_SMEM_LEN bytes, mapped
 * linearly from offset 0 by d_mmap_single, so that fomapd can hand the
 * object's store to its clients as it is. It is made resident whole when
 * it is made (a card's memory is all there), so the driver draws through
 * the object window, its direct map, into pages the engine already knows
 * to be resident: what it draws shows at once in every mapping, and a
 * fault never fills over it.
 *
 *   fbdev_open      d_open: make the memory on the first open
 *   fbdev_ioctl     d_ioctl: the fbdev requests, and FM_FBDEV_PATTERN
 *   fbdev_mmap      d_mmap_single: the memory, linear, read-write
 *
 * fbdev.lock guards the mode (var) and the making of the memory. The
 * memory's pager is fomap's anonymous one, with no hook of the driver's,
 * so an fm_object_* call made under the lock cannot come back to it.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fb.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <fomap/driver.h>
#include <fomap/fbdev.h>

#define BPP 32 /* the one depth: XRGB8888 */
#define MINDIM 8 /* the kernel's fb_set_var refuses less */

static struct {
	pthread_mutex_t lock;
	struct fm_object *obj; /* the memory, made once, kept for good */
	struct fb_var_screeninfo var; /* the mode, with the pan offset */
} fbdev = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* XRGB8888 in var's colour fields: the format is the driver's, not asked. */
static void
set_format(struct fb_var_screeninfo *v)
{
	v->bits_per_pixel = BPP;
	v->grayscale = 0;
	v->nonstd = 0;
	v->red = (struct fb_bitfield){.offset = 16, .length = 8};
	v->green = (struct fb_bitfield){.offset = 8, .length = 8};
	v->blue = (struct fb_bitfield){.offset = 0, .length = 8};
	v->transp = (struct fb_bitfield){0};
}

/* 640x480, double height, with VESA's 60 Hz timings for fbset to show. */
static void
default_var(struct fb_var_screeninfo *v)
{
	*v = (struct fb_var_screeninfo){
	    .xres = 640,
	    .yres = 480,
	    .xres_virtual = 640,
	    .yres_virtual = 2 * 480,
	    .activate = FB_ACTIVATE_NOW,
	    .height = (uint32_t)-1, /* mm: unknown */
	    .width = (uint32_t)-1,
	    .pixclock = 39721, /* ps: 25.175 MHz */
	    .left_margin = 48,
	    .right_margin = 16,
	    .upper_margin = 33,
	    .lower_margin = 10,
	    .hsync_len = 96,
	    .vsync_len = 2,
	    .vmode = FB_VMODE_NONINTERLACED,
	};
	set_format(v);
}

static uint32_t
line_length(const struct fb_var_screeninfo *v)
{
	return v->xres_virtual * (v->bits_per_pixel / 8);
}

/*
 * The memory, zero-filled and made resident whole, and the default mode,
 * on the first call; later calls find them.
 * => 0, or -ENOMEM, -EMFILE: no memory, nothing kept
 */
static int
fbdev_setup(void)
{
	static const char zero[64 * 1024];
	struct fm_object *obj;
	int r = 0;

	pthread_mutex_lock(&fbdev.lock);
	if (fbdev.obj != NULL)
		goto out;
	if ((r = fm_object_create_backing(FM_FBDEV_SMEM_LEN, NULL, &obj)) < 0)
		goto out;
	/* Resident from the start: the window's writes need no fill. */
	for (size_t off = 0; off < FM_FBDEV_SMEM_LEN && r == 0;
	     off += sizeof(zero))
		r = fm_object_write(obj, (off_t)off, zero,
		    FM_FBDEV_SMEM_LEN - off < sizeof(zero)
		        ? FM_FBDEV_SMEM_LEN - off
		        : sizeof(zero));
	if (r == 0 && fm_object_window(obj) == NULL)
		r = -errno;
	if (r < 0) {
		fm_object_rele(obj); /* no mapping has it yet: it goes */
		goto out;
	}
	fbdev.obj = obj;
	default_var(&fbdev.var);
out:
	pthread_mutex_unlock(&fbdev.lock);
	return r;
}

static int
fbdev_open(struct fm_dev *dev, int flags, struct fm_file *fp)
{
	return fbdev_setup();
}

/*
 * fb_check_var: adjust v to what the driver can do, as a kernel driver
 * does: round the depth up to 32 bits, force the format, raise the
 * virtual screen to hold the visible one at its offset.
 * => 0, v adjusted; -EINVAL: no such mode here (too small, too large, a
 *    depth over 32, a virtual screen larger than the memory)
 * => fbdev.lock held (cur is the mode now)
 */
static int
check_var_locked(struct fb_var_screeninfo *v,
    const struct fb_var_screeninfo *cur)
{
	if (v->xres < MINDIM || v->yres < MINDIM || v->bits_per_pixel > BPP)
		return -EINVAL;
	if (v->vmode & FB_VMODE_CONUPDATE) { /* keep the pan as it is */
		v->xoffset = cur->xoffset;
		v->yoffset = cur->yoffset;
	}
	v->vmode &= ~(uint32_t)FB_VMODE_YWRAP; /* ywrapstep 0: none */
	set_format(v);
	v->rotate = FB_ROTATE_UR;
	v->accel_flags = 0;
	v->colorspace = 0;
	memset(v->reserved, 0, sizeof(v->reserved));
	/* 64-bit sums: a user's offsets may be near UINT32_MAX. */
	if (v->xres_virtual < (uint64_t)v->xoffset + v->xres) {
		if ((uint64_t)v->xoffset + v->xres > FM_FBDEV_MAXDIM)
			return -EINVAL;
		v->xres_virtual = v->xoffset + v->xres;
	}
	if (v->yres_virtual < (uint64_t)v->yoffset + v->yres) {
		if ((uint64_t)v->yoffset + v->yres > FM_FBDEV_MAXDIM)
			return -EINVAL;
		v->yres_virtual = v->yoffset + v->yres;
	}
	if (v->xres_virtual > FM_FBDEV_MAXDIM ||
	    v->yres_virtual > FM_FBDEV_MAXDIM ||
	    (uint64_t)line_length(v) * v->yres_virtual > FM_FBDEV_SMEM_LEN)
		return -EINVAL;
	return 0;
}

/*
 * FBIOPUT_VSCREENINFO: check and adjust *data; set it as the mode unless
 * the activation asks only a test (or a later activation, which this
 * driver never makes). The adjusted var is written back, as the kernel's.
 * => on error, the mode and *data are as they were
 */
static int
ioc_put_var(struct fb_var_screeninfo *data)
{
	struct fb_var_screeninfo v = *data;
	int r;

	pthread_mutex_lock(&fbdev.lock);
	r = check_var_locked(&v, &fbdev.var);
	if (r == 0 && (v.activate & FB_ACTIVATE_MASK) == FB_ACTIVATE_NOW)
		fbdev.var = v;
	pthread_mutex_unlock(&fbdev.lock);
	if (r == 0)
		*data = v;
	return r;
}

/*
 * FBIOPAN_DISPLAY: show the virtual screen from (xoffset, yoffset), as
 * the kernel's fb_pan_display checks it (steps of 1, no y-wrap). *data
 * is left as it came, which is what the kernel's copy back gives.
 * => -EINVAL: the visible screen would leave the virtual one
 */
static int
ioc_pan(const struct fb_var_screeninfo *data)
{
	struct fb_var_screeninfo v = *data;
	int r = 0;

	pthread_mutex_lock(&fbdev.lock);
	if ((v.vmode & FB_VMODE_YWRAP) && v.yoffset > 0)
		r = -EINVAL;
	else if (v.xoffset > fbdev.var.xres_virtual - fbdev.var.xres ||
	    v.yoffset > fbdev.var.yres_virtual - fbdev.var.yres)
		r = -EINVAL;
	else {
		fbdev.var.xoffset = v.xoffset;
		fbdev.var.yoffset = v.yoffset;
	}
	pthread_mutex_unlock(&fbdev.lock);
	return r;
}

/*
 * FBIOGET_VSCREENINFO, FBIOGET_FSCREENINFO: copied out after the lock,
 * so that a caller's buffer that faults (in a slow mapping) never holds it.
 */
static void
get_var(struct fb_var_screeninfo *data)
{
	struct fb_var_screeninfo v;

	pthread_mutex_lock(&fbdev.lock);
	v = fbdev.var;
	pthread_mutex_unlock(&fbdev.lock);
	*data = v;
}

static void
get_fix(struct fb_fix_screeninfo *data)
{
	struct fb_fix_screeninfo fix;

	pthread_mutex_lock(&fbdev.lock);
	fix = (struct fb_fix_screeninfo){
	    .smem_start = 0, /* no bus address to give */
	    .smem_len = FM_FBDEV_SMEM_LEN,
	    .type = FB_TYPE_PACKED_PIXELS,
	    .visual = FB_VISUAL_TRUECOLOR,
	    .xpanstep = 1,
	    .ypanstep = 1,
	    .ywrapstep = 0,
	    .line_length = line_length(&fbdev.var),
	    .accel = FB_ACCEL_NONE,
	};
	pthread_mutex_unlock(&fbdev.lock);
	strncpy(fix.id, "fomap-fb0", sizeof(fix.id));
	*data = fix;
}

/*
 * FM_FBDEV_PATTERN: draw fm_fbdev_pattern into the visible screen of the
 * mode as it is when the request starts (a mode set meanwhile is drawn
 * over by the next request: the memory holds any mode).
 */
static int
ioc_pattern(uint32_t seed)
{
	struct fb_var_screeninfo v;
	struct fm_object *obj;
	char *w;

	pthread_mutex_lock(&fbdev.lock);
	v = fbdev.var;
	obj = fbdev.obj;
	pthread_mutex_unlock(&fbdev.lock);
	if ((w = fm_object_window(obj)) == NULL)
		return -errno;
	for (uint32_t y = 0; y < v.yres; y++) {
		uint32_t *row =
		    (uint32_t *)(w + (size_t)(v.yoffset + y) * line_length(&v) +
		        (size_t)v.xoffset * (BPP / 8));

		for (uint32_t x = 0; x < v.xres; x++)
			row[x] = fm_fbdev_pattern(x, y, seed);
	}
	return 0;
}

/*
 * d_ioctl: the fbdev requests listed in fbdev_legacy, and FM_FBDEV_PATTERN.
 * data is the caller's pointer (FBIOBLANK's value itself).
 * => ENOTTY: anything else; EFAULT: NULL argument; EINVAL: a bad mode or
 *    pan, or a colour map request; EBADF: drawing through a read-only
 *    descriptor
 */
static int
fbdev_ioctl(struct fm_dev *dev, unsigned long cmd, void *data, int flags)
{
	int r;

	/* The open made the memory; this only finds it. */
	if ((r = fbdev_setup()) < 0)
		return r;
	if (cmd == FBIOBLANK) {
		/*
		 * A level, not a pointer; over FB_BLANK_POWERDOWN the kernel
		 * takes it as that. There is no display to blank.
		 */
		return 0;
	}
	switch (cmd) {
	case FBIOGET_VSCREENINFO:
	case FBIOPUT_VSCREENINFO:
	case FBIOGET_FSCREENINFO:
	case FBIOPAN_DISPLAY:
	case FBIOGETCMAP:
	case FBIOPUTCMAP:
		break;
	case FM_FBDEV_PATTERN:
		if ((flags & O_ACCMODE) == O_RDONLY)
			return -EBADF;
		break;
	default:
		return -ENOTTY;
	}
	if (data == NULL)
		return -EFAULT;
	switch (cmd) {
	case FBIOGET_VSCREENINFO:
		get_var(data);
		return 0;
	case FBIOPUT_VSCREENINFO:
		return ioc_put_var(data);
	case FBIOGET_FSCREENINFO:
		get_fix(data);
		return 0;
	case FBIOPAN_DISPLAY:
		return ioc_pan(data);
	case FM_FBDEV_PATTERN:
		return ioc_pattern(*(const uint32_t *)data);
	default:
		/*
		 * FBIOGETCMAP, FBIOPUTCMAP: a truecolor visual has no colour
		 * map, and a kernel driver without one answers EINVAL (the
		 * fb_cmap's pointers, which fomapd could not follow, are
		 * never read).
		 */
		return -EINVAL;
	}
}

/*
 * d_mmap_single: the memory, linear from offset 0, read-write, shared or
 * private.
 * => ENXIO: past FM_FBDEV_SMEM_LEN
 */
static int
fbdev_mmap(struct fm_dev *dev, struct fm_mmap_req *req)
{
	int r;

	if ((r = fbdev_setup()) < 0)
		return r;
	if (req->off < 0)
		return -EINVAL;
	if ((uint64_t)req->off >= FM_FBDEV_SMEM_LEN ||
	    req->len > FM_FBDEV_SMEM_LEN - (uint64_t)req->off)
		return -ENXIO;
	pthread_mutex_lock(&fbdev.lock);
	req->obj = fbdev.obj;
	pthread_mutex_unlock(&fbdev.lock);
	fm_object_ref(req->obj); /* the mapping's */
	req->maxprot = PROT_READ | PROT_WRITE;
	return 0;
}

/* d_backing: the same memory whole, for a program fomapd serves. */
static int
fbdev_backing(struct fm_dev *dev, struct fm_object **objp, int *maxprot)
{
	int r;

	if ((r = fbdev_setup()) < 0)
		return r;
	pthread_mutex_lock(&fbdev.lock);
	*objp = fbdev.obj;
	pthread_mutex_unlock(&fbdev.lock);
	fm_object_ref(*objp);
	*maxprot = PROT_READ | PROT_WRITE;
	return 0;
}

/*
 * The legacy numbers and the bytes of the caller's memory each moves, for
 * fomapd. The colour map requests read their struct fb_cmap but write
 * only through its pointers (and here fail before either).
 */
static const struct fm_ioctl_legacy fbdev_legacy[] = {
    {FBIOGET_VSCREENINFO, 0, sizeof(struct fb_var_screeninfo)},
    {FBIOPUT_VSCREENINFO, sizeof(struct fb_var_screeninfo),
        sizeof(struct fb_var_screeninfo)},
    {FBIOGET_FSCREENINFO, 0, sizeof(struct fb_fix_screeninfo)},
    {FBIOGETCMAP, sizeof(struct fb_cmap), 0},
    {FBIOPUTCMAP, sizeof(struct fb_cmap), 0},
    {FBIOPAN_DISPLAY, sizeof(struct fb_var_screeninfo),
        sizeof(struct fb_var_screeninfo)},
    {FBIOBLANK, 0, 0},
    {0, 0, 0},
};

const struct fm_cdevsw fm__fbdev_cdevsw = {
    .d_open = fbdev_open,
    .d_close = fm_nullclose,
    .d_read = fm_noread,
    .d_write = fm_nowrite,
    .d_ioctl = fbdev_ioctl,
    .d_mmap = fm_nommap,
    .d_mmap_single = fbdev_mmap,
    .d_legacy = fbdev_legacy,
    .d_backing = fbdev_backing,
};
