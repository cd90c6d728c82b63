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
/* The byte at offset off of file fd (pread). */
char testdev_file_byte(int fd, off_t off);

/*
 * The set-up and tear-down tests repeat; each fails the test on error.
 * testdev_object: an object of len bytes with ops (NULL: anonymous).
 * testdev_store: a store object over size bytes of file from off.
 * testdev_map: fm_mmap(NULL, len, prot, flags, fd, 0), which must succeed.
 * testdev_done: the usual end: unmap p (len bytes), close fd and let go
 * of obj.
 */
struct fm_object *testdev_object(const struct fm_pagerops *ops, size_t len);
struct fm_object *testdev_store(int file, off_t off, size_t size);
void *testdev_map(int fd, size_t len, int prot, int flags);
void testdev_done(void *p, size_t len, int fd, struct fm_object *obj);

#endif
