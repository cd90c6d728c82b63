/*
 * fbdev.h: the fb0 device (FM_FBDEV_DEV), a Linux fbdev framebuffer: the
 * ABI of <linux/fb.h>, so that programs written for /dev/fb0 (fbset,
 * fbcat, a script that maps the pixels) work on it unchanged, here through
 * fm_ioctl and fm_mmap, or served to them by fomapd.
 *
 * Legacy requests (<linux/fb.h>, no size encoded in the number):
 * FBIOGET_VSCREENINFO, FBIOPUT_VSCREENINFO (validated and adjusted as a
 * kernel driver does; FB_ACTIVATE_TEST only checks), FBIOGET_FSCREENINFO,
 * FBIOPAN_DISPLAY, FBIOBLANK (accepted: there is no display to blank),
 * and FBIOGETCMAP / FBIOPUTCMAP, which fail with EINVAL as they do on a
 * truecolor kernel driver without a colour map. Any other: ENOTTY.
 *
 * The only pixel format is XRGB8888, 32 bits a pixel (a depth of 1 to 31
 * is rounded up to it, more is EINVAL), FB_VISUAL_TRUECOLOR. The default
 * mode is 640x480 with a virtual height of twice that, for double
 * buffering by panning. Modes are at least 8x8, at most FM_FBDEV_MAXDIM
 * pixels either way, and the virtual screen must fit FM_FBDEV_SMEM_LEN:
 * else EINVAL, and the mode stays as it was.
 *
 * Memory: FM_FBDEV_SMEM_LEN bytes, mapped linearly from offset 0 (pixel
 * (x, y) of the virtual screen at y * line_length + x * 4), shared by
 * every open and mapping; a mapping past its end fails with ENXIO. Its
 * size is fixed, whatever the mode, as a card's memory is.
 */
#ifndef FOMAP_FBDEV_H
#define FOMAP_FBDEV_H

#include <stdint.h>
#include <sys/ioctl.h>

#include <fomap/fomap.h>

#define FM_FBDEV_DEV FM_DEVPREFIX "fb0"

#define FM_FBDEV_MAXDIM 4096 /* pixels, xres_virtual and yres_virtual */
/* The memory: two 1920x1080 screens of 32 bits (a whole number of pages). */
#define FM_FBDEV_SMEM_LEN ((uint32_t)(1920 * 1080 * 4 * 2))

/*
 * FM_FBDEV_PATTERN: the driver draws a test pattern into the visible
 * screen at the current pan offset: pixel (x, y) of the visible screen
 * (0 <= x < xres, 0 <= y < yres), at byte offset
 * (yoffset + y) * line_length + (xoffset + x) * 4 of the memory, becomes
 * the 32-bit value fm_fbdev_pattern(x, y, seed), in the CPU's byte order
 * (XRGB8888: the X byte 0). The rest of the memory is left alone.
 * => EFAULT: NULL argument; EBADF: the descriptor is not open for writing
 */
#define FM_FBDEV_PATTERN _IOW('F', 0x80, uint32_t)

/* The pattern's pixel: a hash of (x, y, seed), so a shifted row shows. */
static inline uint32_t
fm_fbdev_pattern(uint32_t x, uint32_t y, uint32_t seed)
{
	uint32_t h = seed ^ (x * 0x9e3779b1u) ^ (y * 0x85ebca77u);

	h ^= h >> 15;
	h *= 0x2c1b3c6du;
	h ^= h >> 12;
	return h & 0x00ffffffu;
}

#endif
