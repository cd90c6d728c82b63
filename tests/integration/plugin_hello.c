/*
 * plugin_hello.c: a driver as a fomapd plug-in. The same source is built
 * two ways: as a shared object that `fomapd --plugin` loads and calls
 * (fomap_driver_init, its one entry point), and into the test program,
 * which calls fomap_driver_init itself and uses the device embedded.
 * The device "hello" reads as HELLO_TEXT, at any offset from the start.
 */
#include <string.h>

#include <fomap/driver.h>

#include "plugin_hello.h"

static ssize_t
hello_read(struct fm_dev *dev, void *buf, size_t len, off_t off)
{
	size_t n = sizeof(HELLO_TEXT) - 1;

	if (off < 0 || (size_t)off >= n)
		return 0;
	n -= (size_t)off;
	if (n > len)
		n = len;
	memcpy(buf, HELLO_TEXT + off, n);
	return (ssize_t)n;
}

static const struct fm_cdevsw hello_cdevsw = {
    .d_open = fm_nullopen,
    .d_close = fm_nullclose,
    .d_read = hello_read,
    .d_write = fm_nowrite,
    .d_ioctl = fm_noioctl,
};

int
fomap_driver_init(void)
{
	return fm_dev_register("hello", &hello_cdevsw, NULL);
}
