/*
 * fb.h: the ioctls of the fb device (FM_DEVPREFIX "fb"), a framebuffer-like
 * device that implements only legacy d_mmap over its device memory, served
 * by the device pager.
 *
 * Its mmap layout is non-linear, as a real card's is: offset 0 is the
 * register page (read-only: mapping it writable fails with ENXIO); offsets
 * from FB_PIXELS_OFF on are the pixel pages, which live elsewhere in the
 * device's memory. Every open maps the same memory, coherently with what the
 * driver itself draws (FB_IOC_FILL). Past the pixels: ENXIO.
 */
#ifndef FOMAP_FB_H
#define FOMAP_FB_H

#include <stdint.h>
#include <sys/ioctl.h>

#define FB_WIDTH 128
#define FB_HEIGHT 128
#define FB_PIXELS_OFF 4096 /* mmap offset of the first pixel page */
#define FB_MAGIC 0x31304246u /* "FB01", the first register */

struct fb_regs { /* the register page, as mapped at offset 0 */
	uint32_t magic; /* FB_MAGIC */
	uint32_t width, height, stride; /* pixels, pixels, bytes a row */
	uint32_t frames; /* FB_IOC_FILL calls so far */
};

struct fb_info {
	uint32_t width, height, stride;
	uint32_t bpp; /* bytes a pixel */
	uint64_t pixels_off; /* mmap offset of the pixels */
	uint64_t pixels_len; /* their length in bytes */
};

#define FB_IOC_INFO _IOR('F', 1, struct fb_info)
/* The driver fills every pixel with a 32-bit colour and counts a frame. */
#define FB_IOC_FILL _IOW('F', 2, uint32_t)

#endif
