#!/usr/bin/env python3
"""fbcheck.py: the daemon tests' checks of fb0 from python3.

  fbcheck.py draw DEV SEED       the driver draws its pattern (FM_FBDEV_PATTERN)
  fbcheck.py ppm FILE SEED W H   FILE (fbcat's P6) is the pattern, every pixel
  fbcheck.py map DEV             map the framebuffer, read the mode with
                                 FBIOGET_VSCREENINFO (a legacy number), write
                                 through the mapping, see it in a second one
"""
import fcntl
import mmap
import os
import struct
import sys

FM_FBDEV_PATTERN = (1 << 30) | (4 << 16) | (ord('F') << 8) | 0x80
FBIOGET_VSCREENINFO = 0x4600
FBIOGET_FSCREENINFO = 0x4602
VAR_SIZE = 160
FIX_SIZE = 80


def pattern(x, y, seed):
    """include/fomap/fbdev.h: fm_fbdev_pattern."""
    m = 0xffffffff
    h = (seed ^ ((x * 0x9e3779b1) & m) ^ ((y * 0x85ebca77) & m)) & m
    h ^= h >> 15
    h = (h * 0x2c1b3c6d) & m
    h ^= h >> 12
    return h & 0x00ffffff


def draw(dev, seed):
    fd = os.open(dev, os.O_RDWR)
    fcntl.ioctl(fd, FM_FBDEV_PATTERN, struct.pack('I', seed))
    os.close(fd)


def ppm(path, seed, w, h):
    data = open(path, 'rb').read()
    head = b'P6 %d %d 255\n' % (w, h)
    assert data.startswith(head), data[:20]
    px = data[len(head):]
    assert len(px) == w * h * 3, len(px)
    for y in range(h):
        row = px[y * w * 3:(y + 1) * w * 3]
        for x in range(w):
            v = pattern(x, y, seed)
            want = bytes(((v >> 16) & 255, (v >> 8) & 255, v & 255))
            got = row[x * 3:x * 3 + 3]
            assert got == want, (x, y, got, want)


def map_check(dev):
    fd = os.open(dev, os.O_RDWR)
    var = fcntl.ioctl(fd, FBIOGET_VSCREENINFO, bytes(VAR_SIZE))
    xres, yres, xv, yv, xo, yo, bpp = struct.unpack('7I', var[:28])
    assert (xres, yres, bpp) == (640, 480, 32), (xres, yres, bpp)
    fix = fcntl.ioctl(fd, FBIOGET_FSCREENINFO, bytes(FIX_SIZE))
    assert fix[:9] == b'fomap-fb0', fix[:16]
    smem_len = struct.unpack('I', fix[24:28])[0]
    line = struct.unpack('I', fix[48:52])[0]
    assert line == xv * 4, (line, xv)
    a = mmap.mmap(fd, smem_len)
    fd2 = os.open(dev, os.O_RDONLY)
    b = mmap.mmap(fd2, smem_len, prot=mmap.PROT_READ)
    off = 100 * line + 50 * 4
    a[off:off + 4] = b'\x11\x22\x33\x00'
    assert b[off:off + 4] == b'\x11\x22\x33\x00', b[off:off + 4]


def main():
    what = sys.argv[1]
    if what == 'draw':
        draw(sys.argv[2], int(sys.argv[3]))
    elif what == 'ppm':
        ppm(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]),
            int(sys.argv[5]))
    elif what == 'map':
        map_check(sys.argv[2])
    else:
        sys.exit(__doc__)
    print('ok')


main()
