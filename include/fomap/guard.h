/*
 * guard.h: the ioctls of the guard device (FM_GUARD_DEV): a plain device
 * (it does not clone: every open shares one memory region) whose driver
 * manages the protection of its mappings, counts their faults by kind, and
 * removes mappings when it decides to.
 *
 * The region is mapped with fm_mmap(MAP_SHARED) at offsets [0, size);
 * MAP_PRIVATE gives EINVAL (a private copy escapes the driver's control),
 * a range past the end ENXIO. Its pages start zero-filled.
 *
 * - FM_GUARD_PROTECT makes a range read-only or read-write in every mapping.
 *   A write to a read-only page gets what the range's policy says:
 *   FM_GUARD_REFUSE: SIGBUS in the writing thread (the page stays
 *   readable, the write did not happen);
 *   FM_GUARD_RECORD: the write is allowed and recorded (once per page and
 *   mapping: the page is then writable in that mapping).
 * - FM_GUARD_REMOVE removes every mapping of a range now. Then, by policy:
 *   FM_GUARD_REFILL: the next access faults the pages back in, data intact
 *   (a minor fault: the driver sees it and counts it);
 *   FM_GUARD_REVOKE: every access gets SIGBUS, and the data is dropped,
 *   until FM_GUARD_RESTORE gives the range back (zero-filled).
 * - FM_GUARD_ARM sets a trip wire on a range: it lets `writes` writes to
 *   the range through; the next one trips it, which removes the range as
 *   FM_GUARD_REMOVE would with the wire's policy. Under REVOKE the
 *   tripping write itself gets SIGBUS; under REFILL it goes through and
 *   every other page of the range must fault again. While a wire is armed
 *   its pages are mapped write-protected, so the driver sees the first
 *   write to each page in each mapping; later writes to a page already
 *   made writable are not faults, and nobody sees them (the MMU does not
 *   tell).
 * - FM_GUARD_SETUP starts afresh: a new zero-filled region of a given size,
 *   counters at zero, no wire. Mappings made before keep the old region.
 *
 * Requests that change anything need a descriptor open for writing
 * (EBADF otherwise). Ranges are page-aligned byte ranges of the region.
 * => ENOTTY: not a guard request. EFAULT: NULL argument.
 * => EINVAL: unaligned or empty range, bad prot or policy, reserved field
 *    not zero. ENXIO: range past the end. ENOSPC: every wire is armed.
 */
#ifndef FOMAP_GUARD_H
#define FOMAP_GUARD_H

#include <stdint.h>
#include <sys/ioctl.h>

#include <fomap/fomap.h>

#define FM_GUARD_DEV FM_DEVPREFIX "guard"

#define FM_GUARD_DEFSIZE ((uint64_t)256 * 4096) /* until FM_GUARD_SETUP */
#define FM_GUARD_MAXSIZE ((uint64_t)1 << 32)
#define FM_GUARD_MAXWIRES 8
#define FM_GUARD_MAXPAGES 64 /* pages per FM_GUARD_PAGES request */

/* Policies. */
#define FM_GUARD_REFUSE 1 /* write to a read-only page: SIGBUS */
#define FM_GUARD_RECORD 2 /* write to a read-only page: allowed, recorded */
#define FM_GUARD_REFILL 3 /* after removal: access faults back in */
#define FM_GUARD_REVOKE 4 /* after removal: access gets SIGBUS */

struct fm_guard_setup {
	uint64_t size; /* in: bytes; out: rounded up to pages */
};

struct fm_guard_protect {
	uint64_t off, len;
	uint32_t prot; /* PROT_READ, or PROT_READ | PROT_WRITE */
	uint32_t policy; /* PROT_READ: FM_GUARD_REFUSE or _RECORD; else 0 */
};

struct fm_guard_remove {
	uint64_t off, len;
	uint32_t policy; /* FM_GUARD_REFILL or FM_GUARD_REVOKE */
	uint32_t pad;
};

struct fm_guard_restore {
	uint64_t off, len;
};

struct fm_guard_arm {
	uint64_t off, len;
	uint32_t writes; /* write faults let through before it trips */
	uint32_t policy; /* FM_GUARD_REFILL or FM_GUARD_REVOKE */
};

/* Fault counters, by kind, since the region was set up. */
struct fm_guard_stats {
	uint64_t size;
	uint64_t read_faults; /* read faults that filled pages */
	uint64_t write_faults; /* write faults that filled pages */
	uint64_t read_minor; /* read faults on pages still in memory */
	uint64_t write_minor; /* write faults on pages still in memory */
	uint64_t pages_filled; /* zero-filled pages */
	uint64_t recorded; /* writes to read-only pages, allowed */
	uint64_t refused; /* writes to read-only pages, SIGBUS */
	uint64_t revoked; /* refusals of revoked pages (SIGBUS): one an
	                   access, more if its retry came late */
	uint64_t removals; /* ranges removed (FM_GUARD_REMOVE or a wire) */
	uint64_t trips; /* wires tripped */
	uint64_t
	    last_recorded; /* offset of the page of the last recorded write */
};

/* Per-page state of [off, off + npages pages). */
#define FM_GUARD_PG_RESIDENT 0x01 /* in memory */
#define FM_GUARD_PG_RDONLY 0x02
#define FM_GUARD_PG_REVOKED 0x04
#define FM_GUARD_PG_RECORDED \
	0x08 /* a write to it while read-only was recorded */
#define FM_GUARD_PG_WIRED 0x10 /* an armed wire covers it */
struct fm_guard_pages {
	uint64_t off;
	uint32_t npages; /* at most FM_GUARD_MAXPAGES */
	uint32_t pad;
	uint8_t state[FM_GUARD_MAXPAGES];
};

#define FM_GUARD_IOC 'w'
#define FM_GUARD_SETUP _IOWR(FM_GUARD_IOC, 1, struct fm_guard_setup)
#define FM_GUARD_PROTECT _IOW(FM_GUARD_IOC, 2, struct fm_guard_protect)
#define FM_GUARD_REMOVE _IOW(FM_GUARD_IOC, 3, struct fm_guard_remove)
#define FM_GUARD_RESTORE _IOW(FM_GUARD_IOC, 4, struct fm_guard_restore)
#define FM_GUARD_ARM _IOW(FM_GUARD_IOC, 5, struct fm_guard_arm)
#define FM_GUARD_STATS _IOR(FM_GUARD_IOC, 6, struct fm_guard_stats)
#define FM_GUARD_PAGES _IOWR(FM_GUARD_IOC, 7, struct fm_guard_pages)

#endif /* FOMAP_GUARD_H */
