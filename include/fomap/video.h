/*
 * video.h: the video0 device (drivers/video.c), a virtual V4L2 capture
 * device with MMAP streaming, so that programs written for a camera
 * (yavta, python) capture frames from it unchanged. Its ioctls are V4L2's
 * own, from <linux/videodev2.h>; this header holds what is fomap's: the
 * limits, the memory layout and the frame pattern a test can recompute.
 *
 * Formats: YUYV (2 bytes a pixel), RGB24 (3) and XBGR32 (4); no padding:
 * bytesperline = width * bytes a pixel, sizeimage = bytesperline * height.
 * Sizes are clamped to FM_VIDEO_MIN_* .. FM_VIDEO_MAX_*, the width made
 * even. Default: 640x480 YUYV, 1/30 s a frame.
 *
 * Memory: one object per open covers the whole mmap space,
 * FM_VIDEO_MAX_BUFFERS times the largest sizeimage (rounded to pages).
 * Buffer i lives at offset i * FM_VIDEO_BUFSIZE(sizeimage) (QUERYBUF's
 * m.offset), its length is sizeimage; an mmap must start at a buffer's
 * offset and not run past its end (EINVAL, as V4L2).
 *
 * Frames: frame number seq (v4l2_buffer.sequence, rising by 1 a frame; a
 * frame that finds no queued buffer is dropped and its number skipped)
 * holds, at byte i (0 <= i < bytesperline) of line y:
 *
 *	fm_video_pattern(i, y, seq) = (uint8_t)(i + 2 * y + 5 * seq)
 *
 * but for the frame's first 4 bytes, which hold seq as a little-endian
 * uint32_t. The pattern is the same for every format (a byte's meaning
 * does not enter into it): moving diagonal stripes.
 */
#ifndef FOMAP_VIDEO_H
#define FOMAP_VIDEO_H

#include <stdint.h>

#include <fomap/driver.h>
#include <fomap/fomap.h>

#define FM_VIDEO_NAME "video0"
#define FM_VIDEO_DEV FM_DEVPREFIX FM_VIDEO_NAME

#define FM_VIDEO_MIN_WIDTH 16
#define FM_VIDEO_MIN_HEIGHT 16
#define FM_VIDEO_MAX_WIDTH 1920
#define FM_VIDEO_MAX_HEIGHT 1080
#define FM_VIDEO_MAX_BPP 4 /* XBGR32 */
#define FM_VIDEO_MAX_BUFFERS 32

/* A buffer's stride in the mmap space: its sizeimage rounded to pages. */
#define FM_VIDEO_BUFSIZE(sizeimage)                                  \
	(((uint64_t)(sizeimage) + FM_PAGE_SIZE - 1) / FM_PAGE_SIZE * \
	    FM_PAGE_SIZE)

/* Byte i of line y of frame seq (but the frame's first 4 bytes: seq). */
static inline uint8_t
fm_video_pattern(uint32_t i, uint32_t y, uint32_t seq)
{
	return (uint8_t)(i + 2 * y + 5 * seq);
}

#endif
