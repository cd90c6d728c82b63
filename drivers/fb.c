/*
 * fb.c: a framebuffer-like device with only legacy d_mmap, to prove the old
 * path through the device pager. Its device memory holds a register page
 * (device page 0) and, after a gap, the pixel pages (device pages from
 * FB_PIXEL_PAGE on); d_mmap maps offset 0 to the registers and the offsets
 * after it to the pixels, so the per-page cookie matters.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>

#include <fomap/driver.h>
#include <fomap/fb.h>

#define FB_STRIDE (FB_WIDTH * 4)
#define FB_PIXEL_LEN (FB_STRIDE * FB_HEIGHT)
#define FB_PIXEL_PAGES (FB_PIXEL_LEN / FM_PAGE_SIZE)
#define FB_PIXEL_PAGE 4 /* device page of the first pixel page */
#define FB_MEM_LEN ((FB_PIXEL_PAGE + FB_PIXEL_PAGES) * FM_PAGE_SIZE)

static pthread_mutex_t fb_lock = PTHREAD_MUTEX_INITIALIZER;
static char *fb_mem; /* the device memory, as the driver sees it */

static struct fb_regs *
fb_regs(void)
{
	return (struct fb_regs *)fb_mem;
}

/* The first open gives the device its memory and sets the registers up. */
static int
fb_open(struct fm_dev *dev, int flags, struct fm_file *fp)
{
	void *kva;
	int r;

	pthread_mutex_lock(&fb_lock);
	r = fm_dev_memory(dev, FB_MEM_LEN, &kva);
	if (r == 0 && fb_mem == NULL) {
		fb_mem = kva;
		*fb_regs() = (struct fb_regs){.magic = FB_MAGIC,
		    .width = FB_WIDTH,
		    .height = FB_HEIGHT,
		    .stride = FB_STRIDE};
	}
	pthread_mutex_unlock(&fb_lock);
	return r;
}

static int
fb_ioctl(struct fm_dev *dev, unsigned long cmd, void *data, int flags)
{
	if (data == NULL)
		return -EFAULT;
	switch (cmd) {
	case FB_IOC_INFO:
		*(struct fb_info *)data = (struct fb_info){.width = FB_WIDTH,
		    .height = FB_HEIGHT,
		    .stride = FB_STRIDE,
		    .bpp = 4,
		    .pixels_off = FB_PIXELS_OFF,
		    .pixels_len = FB_PIXEL_LEN};
		return 0;
	case FB_IOC_FILL: {
		uint32_t c = *(const uint32_t *)data;
		uint32_t *px =
		    (uint32_t *)(fb_mem + FB_PIXEL_PAGE * FM_PAGE_SIZE);

		pthread_mutex_lock(&fb_lock);
		for (size_t i = 0; i < FB_PIXEL_LEN / 4; i++)
			px[i] = c;
		fb_regs()->frames++;
		pthread_mutex_unlock(&fb_lock);
		return 0;
	}
	default:
		return -ENOTTY;
	}
}

/*
 * The cookie of each offset: registers read-only at 0, pixels after.
 * => FM_COOKIE_INVALID for anything else
 */
static fm_cookie_t
fb_mmap(struct fm_dev *dev, off_t off, int prot)
{
	uint64_t pg;

	if (off < 0 || (uint64_t)off % FM_PAGE_SIZE)
		return FM_COOKIE_INVALID;
	pg = (uint64_t)off / FM_PAGE_SIZE;
	if (pg == 0)
		return prot & PROT_WRITE ? FM_COOKIE_INVALID : 0;
	if (pg <= FB_PIXEL_PAGES)
		return (fm_cookie_t)(FB_PIXEL_PAGE + pg - 1);
	return FM_COOKIE_INVALID;
}

const struct fm_cdevsw fm__fb_cdevsw = {
    .d_open = fb_open,
    .d_close = fm_nullclose,
    .d_read = fm_noread,
    .d_write = fm_nowrite,
    .d_ioctl = fb_ioctl,
    .d_mmap = fb_mmap,
};
