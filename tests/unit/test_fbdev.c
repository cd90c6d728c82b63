/*
 * test_fbdev.c: the fb0 device, Linux's fbdev ABI: the screen info
 * requests and how a mode is checked, panning, the requests it refuses,
 * its legacy table against the structs, and its memory: linear, drawn by
 * the driver as fbdev.h documents, coherent between opens.
 */
#include <fcntl.h>
#include <linux/fb.h>
#include <sys/mman.h>
#include <termios.h>
#include <unistd.h>

#include <fomap/driver.h>
#include <fomap/fbdev.h>

#include "../test.h"

#define RW (PROT_READ | PROT_WRITE)
#define SMEM ((size_t)FM_FBDEV_SMEM_LEN)

extern const struct fm_cdevsw fm__fbdev_cdevsw; /* drivers/fbdev.c */

static int
fbdev_open(int flags)
{
	int fd = fm_open(FM_FBDEV_DEV, flags);

	ASSERT_GE(fd, 0);
	return fd;
}

static void
get_var(int fd, struct fb_var_screeninfo *v)
{
	memset(v, 0xa5, sizeof(*v));
	ASSERT_OK(fm_ioctl(fd, FBIOGET_VSCREENINFO, v));
}

/* The mode now is m, byte for byte. */
static void
assert_mode(int fd, const struct fb_var_screeninfo *m)
{
	struct fb_var_screeninfo v;

	get_var(fd, &v);
	ASSERT(memcmp(&v, m, sizeof(v)) == 0);
}

static void
assert_xrgb8888(const struct fb_var_screeninfo *v)
{
	ASSERT_EQ(v->bits_per_pixel, 32);
	ASSERT_EQ(v->grayscale, 0);
	ASSERT_EQ(v->red.offset, 16);
	ASSERT_EQ(v->red.length, 8);
	ASSERT_EQ(v->green.offset, 8);
	ASSERT_EQ(v->green.length, 8);
	ASSERT_EQ(v->blue.offset, 0);
	ASSERT_EQ(v->blue.length, 8);
	ASSERT_EQ(v->transp.offset, 0);
	ASSERT_EQ(v->transp.length, 0);
}

/* Every visible pixel of mapping m is the pattern of seed. */
static void
assert_pattern(const uint32_t *m, int fd, uint32_t seed)
{
	struct fb_var_screeninfo v;
	struct fb_fix_screeninfo fix;

	get_var(fd, &v);
	ASSERT_OK(fm_ioctl(fd, FBIOGET_FSCREENINFO, &fix));
	for (uint32_t y = 0; y < v.yres; y++)
		for (uint32_t x = 0; x < v.xres; x++) {
			size_t i = ((size_t)(v.yoffset + y) * fix.line_length +
			               (size_t)(v.xoffset + x) * 4) /
			    4;

			if (m[i] != fm_fbdev_pattern(x, y, seed))
				fm_test_fail(__FILE__, __LINE__,
				    "pixel (%u, %u): %#x, want %#x", x, y, m[i],
				    fm_fbdev_pattern(x, y, seed));
		}
}

TEST(fbdev_default_mode)
{
	fm_test_need_uffd();
	int fd = fbdev_open(O_RDWR);
	struct fb_var_screeninfo v;
	struct fb_fix_screeninfo fix;

	get_var(fd, &v);
	ASSERT_EQ(v.xres, 640);
	ASSERT_EQ(v.yres, 480);
	ASSERT_EQ(v.xres_virtual, 640);
	ASSERT_EQ(v.yres_virtual, 960);
	ASSERT_EQ(v.xoffset, 0);
	ASSERT_EQ(v.yoffset, 0);
	assert_xrgb8888(&v);
	memset(&fix, 0xa5, sizeof(fix));
	ASSERT_OK(fm_ioctl(fd, FBIOGET_FSCREENINFO, &fix));
	ASSERT(strcmp(fix.id, "fomap-fb0") == 0);
	ASSERT_EQ(fix.smem_start, 0);
	ASSERT_EQ(fix.smem_len, FM_FBDEV_SMEM_LEN);
	ASSERT_EQ(fix.smem_len % PG, 0);
	ASSERT_EQ(fix.type, FB_TYPE_PACKED_PIXELS);
	ASSERT_EQ(fix.visual, FB_VISUAL_TRUECOLOR);
	ASSERT_EQ(fix.line_length, 640 * 4);
	ASSERT_EQ(fix.ypanstep, 1);
	ASSERT_EQ(fix.ywrapstep, 0);
	ASSERT_EQ(fix.mmio_start, 0);
	ASSERT_EQ(fix.mmio_len, 0);
	ASSERT_OK(fm_close(fd));
}

TEST(fbdev_put_mode_adjusts_and_sets)
{
	fm_test_need_uffd();
	int fd = fbdev_open(O_RDWR);
	struct fb_var_screeninfo v, got;
	struct fb_fix_screeninfo fix;

	get_var(fd, &v);
	v.xres = 800;
	v.yres = 600;
	v.xres_virtual = 0; /* raised to the visible size */
	v.yres_virtual = 0;
	v.bits_per_pixel = 16; /* rounded up to the one depth */
	v.red.offset = 11;
	v.red.length = 5;
	v.grayscale = 1;
	v.activate = FB_ACTIVATE_NOW;
	ASSERT_OK(fm_ioctl(fd, FBIOPUT_VSCREENINFO, &v));
	/* The kernel's answer is the mode as set. */
	ASSERT_EQ(v.xres, 800);
	ASSERT_EQ(v.yres, 600);
	ASSERT_EQ(v.xres_virtual, 800);
	ASSERT_EQ(v.yres_virtual, 600);
	assert_xrgb8888(&v);
	assert_mode(fd, &v);
	ASSERT_OK(fm_ioctl(fd, FBIOGET_FSCREENINFO, &fix));
	ASSERT_EQ(fix.line_length, 800 * 4);
	/* The largest virtual screen the memory holds. */
	v.xres = 1920;
	v.yres = 1080;
	v.xres_virtual = 1920;
	v.yres_virtual = 2160;
	ASSERT_OK(fm_ioctl(fd, FBIOPUT_VSCREENINFO, &v));
	get_var(fd, &got);
	ASSERT_EQ(got.yres_virtual, 2160);
	/* Offsets past the virtual screen raise it too. */
	v.xres = 640;
	v.yres = 480;
	v.xres_virtual = 640;
	v.yres_virtual = 480;
	v.yoffset = 480;
	ASSERT_OK(fm_ioctl(fd, FBIOPUT_VSCREENINFO, &v));
	ASSERT_EQ(v.yres_virtual, 960);
	get_var(fd, &got);
	ASSERT_EQ(got.yoffset, 480);
	ASSERT_OK(fm_close(fd));
}

TEST(fbdev_bad_mode_changes_nothing)
{
	fm_test_need_uffd();
	int fd = fbdev_open(O_RDWR);
	struct fb_var_screeninfo m, v, sent;

	get_var(fd, &m);
	struct {
		uint32_t xres, yres, xv, yv, bpp;
	} bad[] = {
	    {1920, 1080, 1920, 3 * 1080, 32}, /* larger than the memory */
	    {4096, 4096, 4096, 4096, 32},
	    {640, 480, 5000, 480, 32}, /* wider than FM_FBDEV_MAXDIM */
	    {640, 480, 640, 960, 64}, /* no such depth */
	    {4, 480, 640, 960, 32}, /* under 8x8 */
	    {640, 0, 640, 960, 32},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		v = m;
		v.xres = bad[i].xres;
		v.yres = bad[i].yres;
		v.xres_virtual = bad[i].xv;
		v.yres_virtual = bad[i].yv;
		v.bits_per_pixel = bad[i].bpp;
		sent = v;
		ASSERT_ERRNO(fm_ioctl(fd, FBIOPUT_VSCREENINFO, &v), EINVAL);
		ASSERT(memcmp(&v, &sent, sizeof(v)) == 0); /* not written */
		assert_mode(fd, &m);
	}
	/* Offsets so large that their sums overflow 32 bits. */
	v = m;
	v.xoffset = UINT32_MAX - 100;
	ASSERT_ERRNO(fm_ioctl(fd, FBIOPUT_VSCREENINFO, &v), EINVAL);
	v = m;
	v.yoffset = UINT32_MAX;
	ASSERT_ERRNO(fm_ioctl(fd, FBIOPUT_VSCREENINFO, &v), EINVAL);
	assert_mode(fd, &m);
	ASSERT_OK(fm_close(fd));
}

TEST(fbdev_activate_test_only_checks)
{
	fm_test_need_uffd();
	int fd = fbdev_open(O_RDWR);
	struct fb_var_screeninfo m, v;

	get_var(fd, &m);
	v = m;
	v.xres = 800;
	v.yres = 600;
	v.bits_per_pixel = 24;
	v.activate = FB_ACTIVATE_TEST;
	ASSERT_OK(fm_ioctl(fd, FBIOPUT_VSCREENINFO, &v));
	ASSERT_EQ(v.xres_virtual, 800); /* adjusted as if set */
	ASSERT_EQ(v.bits_per_pixel, 32);
	assert_mode(fd, &m); /* but not set */
	v.xres = 2;
	ASSERT_ERRNO(fm_ioctl(fd, FBIOPUT_VSCREENINFO, &v), EINVAL);
	assert_mode(fd, &m);
	ASSERT_OK(fm_close(fd));
}

TEST(fbdev_pan)
{
	fm_test_need_uffd();
	int fd = fbdev_open(O_RDWR);
	struct fb_var_screeninfo v, sent;

	get_var(fd, &v);
	v.yoffset = 480; /* the second buffer */
	sent = v;
	ASSERT_OK(fm_ioctl(fd, FBIOPAN_DISPLAY, &v));
	ASSERT(memcmp(&v, &sent, sizeof(v)) == 0);
	get_var(fd, &v);
	ASSERT_EQ(v.yoffset, 480);
	v.yoffset = 481;
	ASSERT_ERRNO(fm_ioctl(fd, FBIOPAN_DISPLAY, &v), EINVAL);
	v.yoffset = 0;
	v.xoffset = 1; /* xres_virtual == xres */
	ASSERT_ERRNO(fm_ioctl(fd, FBIOPAN_DISPLAY, &v), EINVAL);
	v.xoffset = 0;
	v.yoffset = 2;
	v.vmode |= FB_VMODE_YWRAP; /* ywrapstep 0 */
	ASSERT_ERRNO(fm_ioctl(fd, FBIOPAN_DISPLAY, &v), EINVAL);
	get_var(fd, &v);
	ASSERT_EQ(v.yoffset, 480);
	ASSERT_EQ(v.xoffset, 0);
	v.yoffset = 0;
	ASSERT_OK(fm_ioctl(fd, FBIOPAN_DISPLAY, &v));
	get_var(fd, &v);
	ASSERT_EQ(v.yoffset, 0);
	ASSERT_OK(fm_close(fd));
}

TEST(fbdev_other_requests)
{
	fm_test_need_uffd();
	int fd = fbdev_open(O_RDWR), ro = fbdev_open(O_RDONLY);
	struct termios tio;
	uint16_t red[16], green[16], blue[16];
	struct fb_cmap cmap = {.start = 0,
	    .len = 16,
	    .red = red,
	    .green = green,
	    .blue = blue};
	uint32_t seed = 1, arg = 0;

	ASSERT_ERRNO(fm_ioctl(fd, 0x4242, &arg), ENOTTY);
	ASSERT_ERRNO(fm_ioctl(fd, TCGETS, &tio), ENOTTY);
	ASSERT_ERRNO(fm_ioctl(fd, FBIO_WAITFORVSYNC, &arg), ENOTTY);
	ASSERT_ERRNO(fm_ioctl(fd, FBIOGET_VSCREENINFO, NULL), EFAULT);
	ASSERT_ERRNO(fm_ioctl(fd, FM_FBDEV_PATTERN, NULL), EFAULT);
	/* Truecolor, no colour map: as a kernel driver without one. */
	ASSERT_ERRNO(fm_ioctl(fd, FBIOGETCMAP, &cmap), EINVAL);
	ASSERT_ERRNO(fm_ioctl(fd, FBIOPUTCMAP, &cmap), EINVAL);
	/* A level, not a pointer. */
	ASSERT_OK(
	    fm_ioctl(fd, FBIOBLANK, (void *)(uintptr_t)FB_BLANK_POWERDOWN));
	ASSERT_OK(fm_ioctl(fd, FBIOBLANK, (void *)(uintptr_t)FB_BLANK_UNBLANK));
	/* Reading the mode needs no write access, drawing does. */
	struct fb_var_screeninfo v;
	get_var(ro, &v);
	ASSERT_ERRNO(fm_ioctl(ro, FM_FBDEV_PATTERN, &seed), EBADF);
	ASSERT_ERRNO(fm_read(fd, &arg, sizeof(arg)), ENODEV);
	ASSERT_OK(fm_close(fd));
	ASSERT_OK(fm_close(ro));
}

/*
 * d_legacy names each legacy number with the bytes it moves: they must be
 * the sizes of the structs <linux/fb.h> gives those numbers, or fomapd
 * copies too little or too much. Each request is then made with its
 * argument against an inaccessible page, so a driver that touched a byte
 * past what the table says would crash, and with guard bytes before it.
 */
TEST(fbdev_legacy_table_matches_the_structs)
{
	fm_test_need_uffd();
	static const struct {
		unsigned long cmd;
		uint32_t in, out;
		int err; /* of the request made below */
	} want[] = {
	    {FBIOGET_VSCREENINFO, 0, sizeof(struct fb_var_screeninfo), 0},
	    {FBIOPUT_VSCREENINFO, sizeof(struct fb_var_screeninfo),
	        sizeof(struct fb_var_screeninfo), 0},
	    {FBIOGET_FSCREENINFO, 0, sizeof(struct fb_fix_screeninfo), 0},
	    {FBIOGETCMAP, sizeof(struct fb_cmap), 0, EINVAL},
	    {FBIOPUTCMAP, sizeof(struct fb_cmap), 0, EINVAL},
	    {FBIOPAN_DISPLAY, sizeof(struct fb_var_screeninfo),
	        sizeof(struct fb_var_screeninfo), 0},
	    {FBIOBLANK, 0, 0, 0},
	};
	const size_t nwant = sizeof(want) / sizeof(want[0]);
	const struct fm_ioctl_legacy *l = fm__fbdev_cdevsw.d_legacy;
	int fd = fbdev_open(O_RDWR), seen[sizeof(want) / sizeof(want[0])] = {0};
	struct fb_var_screeninfo cur;
	size_t n = 0;

	ASSERT(l != NULL);
	get_var(fd, &cur);
	char *pg = mmap(NULL, 2 * PG, RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT(pg != MAP_FAILED);
	ASSERT_OK(mprotect(pg + PG, PG, PROT_NONE));
	for (; l->cmd != 0; l++, n++) {
		size_t i, len = l->in > l->out ? l->in : l->out;

		for (i = 0; i < nwant && want[i].cmd != l->cmd; i++)
			;
		if (i == nwant)
			fm_test_fail(__FILE__, __LINE__, "%#lx: not fbdev's",
			    l->cmd);
		ASSERT_EQ(seen[i]++, 0);
		ASSERT_EQ(l->in, want[i].in);
		ASSERT_EQ(l->out, want[i].out);
		if (len == 0) { /* a value */
			errno = 0;
			ASSERT_EQ(fm_ioctl(fd, l->cmd, (void *)0), 0);
			continue;
		}
		char *arg = pg + PG - len;
		memset(pg, 0x5a, PG);
		if (l->cmd == FBIOPUT_VSCREENINFO || l->cmd == FBIOPAN_DISPLAY)
			memcpy(arg, &cur, sizeof(cur));
		errno = 0;
		int r = fm_ioctl(fd, l->cmd, arg);
		ASSERT_EQ(r < 0 ? errno : 0, want[i].err);
		for (char *p = pg; p < arg; p++)
			ASSERT_EQ(*p, 0x5a);
		if (l->out == 0)
			for (char *p = arg; p < pg + PG; p++)
				ASSERT_EQ(*p, 0x5a);
	}
	ASSERT_EQ(n, nwant);
	ASSERT_OK(munmap(pg, 2 * PG));
	ASSERT_OK(fm_close(fd));
}

TEST(fbdev_pattern_in_the_mapping)
{
	fm_test_need_uffd();
	int fd = fbdev_open(O_RDWR);
	struct fb_var_screeninfo v;
	uint32_t seed = 0x1234567;

	uint32_t *m = fm_mmap(NULL, SMEM, RW, MAP_SHARED, fd, 0);
	ASSERT(m != MAP_FAILED);
	ASSERT_EQ(m[0], 0);
	ASSERT_EQ(m[SMEM / 4 - 1], 0);
	/* Mapped before the drawing: the mapping shows it at once. */
	ASSERT_OK(fm_ioctl(fd, FM_FBDEV_PATTERN, &seed));
	assert_pattern(m, fd, seed);
	ASSERT_EQ(m[640 * 480], 0); /* the second buffer is untouched */
	/* Pan to the second buffer: the driver draws there. */
	get_var(fd, &v);
	v.yoffset = 480;
	ASSERT_OK(fm_ioctl(fd, FBIOPAN_DISPLAY, &v));
	seed = 7;
	ASSERT_OK(fm_ioctl(fd, FM_FBDEV_PATTERN, &seed));
	assert_pattern(m, fd, 7);
	v.yoffset = 0;
	ASSERT_OK(fm_ioctl(fd, FBIOPAN_DISPLAY, &v));
	assert_pattern(m, fd, 0x1234567);
	/* A wider virtual screen, panned sideways: rows at line_length. */
	v.xres = 800;
	v.yres = 600;
	v.xres_virtual = 1000;
	v.yres_virtual = 1200;
	v.xoffset = 100;
	v.yoffset = 300;
	ASSERT_OK(fm_ioctl(fd, FBIOPUT_VSCREENINFO, &v));
	seed = 0xdeadbeef;
	ASSERT_OK(fm_ioctl(fd, FM_FBDEV_PATTERN, &seed));
	assert_pattern(m, fd, 0xdeadbeef);
	/* Left of the visible screen: the first drawing's, at 640 a row. */
	size_t w = 300 * 1000 + 99;
	ASSERT_EQ(m[w], fm_fbdev_pattern(w % 640, w / 640, 0x1234567));
	ASSERT_OK(fm_munmap(m, SMEM));
	/* Drawn with no mapping at all: a new one shows it. */
	seed = 3;
	ASSERT_OK(fm_ioctl(fd, FM_FBDEV_PATTERN, &seed));
	m = fm_mmap(NULL, SMEM, PROT_READ, MAP_SHARED, fd, 0);
	ASSERT(m != MAP_FAILED);
	assert_pattern(m, fd, 3);
	ASSERT_OK(fm_munmap(m, SMEM));
	ASSERT_OK(fm_close(fd));
}

TEST(fbdev_opens_share_the_memory)
{
	fm_test_need_uffd();
	int a = fbdev_open(O_RDWR), b = fbdev_open(O_RDWR);
	uint32_t seed = 42;

	volatile uint32_t *pa = fm_mmap(NULL, SMEM, RW, MAP_SHARED, a, 0);
	volatile uint32_t *pb = fm_mmap(NULL, SMEM, RW, MAP_SHARED, b, 0);
	/* Linear: offset PG of the memory is word PG / 4 of the whole. */
	volatile uint32_t *pc = fm_mmap(NULL, 2 * PG, RW, MAP_SHARED, b, PG);
	ASSERT(pa != MAP_FAILED && pb != MAP_FAILED && pc != MAP_FAILED);
	pa[12345] = 0x00abcdef; /* a program draws ... */
	ASSERT_EQ(pb[12345], 0x00abcdef); /* ... the other open sees it */
	pb[SMEM / 4 - 1] = 0x00123456;
	ASSERT_EQ(pa[SMEM / 4 - 1], 0x00123456);
	pc[1] = 0x00777777;
	ASSERT_EQ(pa[PG / 4 + 1], 0x00777777);
	/* The driver draws: both see it. */
	ASSERT_OK(fm_ioctl(b, FM_FBDEV_PATTERN, &seed));
	assert_pattern((const uint32_t *)pa, a, 42);
	assert_pattern((const uint32_t *)pb, a, 42);
	ASSERT_OK(fm_munmap((void *)pa, SMEM));
	ASSERT_OK(fm_munmap((void *)pb, SMEM));
	ASSERT_OK(fm_munmap((void *)pc, 2 * PG));
	ASSERT_OK(fm_close(a));
	ASSERT_OK(fm_close(b));
}

TEST(fbdev_mmap_past_the_memory)
{
	fm_test_need_uffd();
	int fd = fbdev_open(O_RDWR);

	ASSERT_ERRNO(fm_mmap(NULL, SMEM + PG, RW, MAP_SHARED, fd, 0), ENXIO);
	ASSERT_ERRNO(fm_mmap(NULL, PG, RW, MAP_SHARED, fd, (off_t)SMEM), ENXIO);
	ASSERT_ERRNO(fm_mmap(NULL, 2 * PG, RW, MAP_SHARED, fd,
	                 (off_t)(SMEM - PG)),
	    ENXIO);
	ASSERT_ERRNO(fm_mmap(NULL, PG, RW, MAP_SHARED, fd, (off_t)1 << 40),
	    ENXIO);
	void *m = fm_mmap(NULL, PG, RW, MAP_SHARED, fd, (off_t)(SMEM - PG));
	ASSERT(m != MAP_FAILED);
	ASSERT_OK(fm_munmap(m, PG));
	ASSERT_OK(fm_close(fd));
}
