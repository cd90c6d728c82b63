/*
 * null.c: the null device. Reads give end of file, writes are swallowed,
 * and it cannot be mapped (ENODEV): all through the stubs.
 */
#include <fomap/driver.h>

const struct fm_cdevsw fm__null_cdevsw = {
    .d_open = fm_nullopen,
    .d_close = fm_nullclose,
    .d_read = fm_nullread,
    .d_write = fm_nullwrite,
    .d_ioctl = fm_noioctl,
    .d_mmap = fm_nommap,
};
