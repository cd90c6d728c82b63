/*
 * testdev.h: a test device whose mmap returns one given object, so tests
 * can map objects made with the driver API through fm_open + fm_mmap.
 */
#ifndef FOMAP_TESTDEV_H
#define FOMAP_TESTDEV_H

#include <fomap/driver.h>

/*
 * Register FM_DEVPREFIX name mapping obj (a reference is taken per mmap)
 * with maximum protection maxprot, and open it with flags.
 * => the descriptor; the test fails on error
 */
int testdev_open(const char *name, struct fm_object *obj, int maxprot,
    int flags);

/* A temporary regular file of len bytes, each byte (offset % 251). */
int testdev_tmpfile(size_t len);

#endif
