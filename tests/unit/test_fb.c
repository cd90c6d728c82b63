/*
 * test_fb.c: the fb device: legacy d_mmap through the device pager, its
 * validation at mmap time, a non-linear layout, one memory for all opens.
 */
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <fomap/driver.h>
#include <fomap/fb.h>

#include "../test.h"

#define RW (PROT_READ | PROT_WRITE)

static int
fb_open(void)
{
	int fd = fm_open("/dev/fomap/fb", O_RDWR);

	ASSERT_GE(fd, 0);
	return fd;
}

TEST(fb_info_and_nonlinear_layout)
{
	fm_test_need_uffd();
	int fd = fb_open();
	struct fb_info info;
	uint32_t red = 0xff0000ff;
	struct fm_stats s0, s1;

	ASSERT_OK(fm_ioctl(fd, FB_IOC_INFO, &info));
	ASSERT_EQ(info.width, FB_WIDTH);
	ASSERT_EQ(info.pixels_off, FB_PIXELS_OFF);
	ASSERT_OK(fm_ioctl(fd, FB_IOC_FILL, &red));
	/* Registers and pixels in one read-only mapping of the whole device. */
	size_t len = FB_PIXELS_OFF + info.pixels_len;
	char *m = fm_mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
	ASSERT(m != MAP_FAILED);
	fm_engine_stats(&s0);
	const struct fb_regs *regs = (const void *)m;
	ASSERT_EQ(regs->magic, FB_MAGIC);
	ASSERT_EQ(regs->stride, FB_WIDTH * 4);
	ASSERT_EQ(regs->frames, 1);
	/* Page 1 of the mapping is the first pixel page, not device page 1. */
	const uint32_t *px = (const void *)(m + FB_PIXELS_OFF);
	ASSERT_EQ(px[0], red);
	ASSERT_EQ(px[info.pixels_len / 4 - 1], red);
	fm_engine_stats(&s1);
	ASSERT_GE(s1.faults, s0.faults + 2); /* served by the engine */
	ASSERT_OK(fm_munmap(m, len));
	ASSERT_OK(fm_close(fd));
}

TEST(fb_opens_share_the_device_memory)
{
	fm_test_need_uffd();
	int a = fb_open(), b = fb_open();
	struct fb_info info;
	uint32_t blue = 0x0000ffff;

	ASSERT_OK(fm_ioctl(a, FB_IOC_INFO, &info));
	uint32_t *pa =
	    fm_mmap(NULL, info.pixels_len, RW, MAP_SHARED, a, FB_PIXELS_OFF);
	uint32_t *pb =
	    fm_mmap(NULL, info.pixels_len, RW, MAP_SHARED, b, FB_PIXELS_OFF);
	const struct fb_regs *regs =
	    fm_mmap(NULL, PG, PROT_READ, MAP_SHARED, b, 0);
	ASSERT(pa != MAP_FAILED && pb != MAP_FAILED && regs != MAP_FAILED);
	unsigned frames = regs->frames;
	pa[1000] = 0x12345678; /* the user draws ... */
	ASSERT_EQ(pb[1000], 0x12345678); /* ... another open sees it */
	ASSERT_OK(fm_ioctl(b, FB_IOC_FILL, &blue)); /* the driver draws */
	ASSERT_EQ(pa[1000], blue);
	ASSERT_EQ(pa[0], blue);
	ASSERT_EQ(regs->frames, frames + 1);
	ASSERT_OK(fm_munmap(pa, info.pixels_len));
	ASSERT_OK(fm_munmap(pb, info.pixels_len));
	ASSERT_OK(fm_munmap((void *)regs, PG));
	ASSERT_OK(fm_close(a));
	ASSERT_OK(fm_close(b));
}

TEST(fb_d_mmap_validates_every_page)
{
	fm_test_need_uffd();
	int fd = fb_open(), ro = fm_open("/dev/fomap/fb", O_RDONLY);
	struct fb_info info;
	uint32_t c = 0;

	ASSERT_OK(fm_ioctl(fd, FB_IOC_INFO, &info));
	size_t all = FB_PIXELS_OFF + info.pixels_len;
	/* The register page is read-only: d_mmap says no to PROT_WRITE. */
	ASSERT_ERRNO(fm_mmap(NULL, all, RW, MAP_SHARED, fd, 0), ENXIO);
	/* One page past the pixels. */
	ASSERT_ERRNO(fm_mmap(NULL, info.pixels_len + PG, RW, MAP_SHARED, fd,
	                 FB_PIXELS_OFF),
	    ENXIO);
	ASSERT_ERRNO(fm_mmap(NULL, PG, PROT_READ, MAP_SHARED, fd, 1 << 30),
	    ENXIO);
	ASSERT_ERRNO(fm_mmap(NULL, PG, PROT_READ, MAP_SHARED, fd, 100), EINVAL);
	ASSERT_ERRNO(fm_mmap(NULL, PG, RW, MAP_SHARED, ro, FB_PIXELS_OFF),
	    EACCES);
	ASSERT_ERRNO(fm_ioctl(fd, 0x4242, &c), ENOTTY);
	ASSERT_ERRNO(fm_ioctl(fd, FB_IOC_FILL, NULL), EFAULT);
	ASSERT_ERRNO(fm_read(fd, &c, 4), ENODEV);
	/* A mapping at a fixed place still gets the layout. */
	char *r = fm_mmap(NULL, 4 * PG, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS,
	    -1, 0);
	ASSERT(r != MAP_FAILED);
	char *m =
	    fm_mmap(r + PG, 2 * PG, PROT_READ, MAP_SHARED | MAP_FIXED, fd, 0);
	ASSERT_PTR_EQ(m, r + PG);
	ASSERT_EQ(((const struct fb_regs *)m)->magic, FB_MAGIC);
	ASSERT_OK(fm_munmap(r, 4 * PG));
	ASSERT_OK(fm_close(fd));
	ASSERT_OK(fm_close(ro));
}
