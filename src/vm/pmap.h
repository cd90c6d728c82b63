/*
 * pmap.h: the MMU layer. Everything fomap does to a page table goes through
 * these calls on a userfaultfd (the address space it belongs to) or through
 * the object store; never through a call that only reaches the caller's own
 * address space, so that the embedded engine and a daemon share one path.
 * All return 0 or a negative errno.
 */
#ifndef FM_VM_PMAP_H
#define FM_VM_PMAP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "vm/uffd_compat.h"

#define FM_PAGE_SIZE_PMAP 4096

struct fm_pmap {
	int uffd; /* faults of this address space arrive here */
	uint64_t features; /* UFFD_FEATURE_* enabled on uffd */
};

/*
 * Modes an entry is registered with. userfaultfd refuses mappings that may
 * never be written (no VM_MAYWRITE), so a shared mapping of an object whose
 * maximum protection lacks PROT_WRITE is a private mapping of a read-only
 * descriptor: the kernel then guarantees that no write reaches the object.
 */
#define FM_PMAP_SHARED 0x1 /* MAP_SHARED, MISSING | MINOR | WP */
#define FM_PMAP_PRIVATE 0x2 /* MAP_PRIVATE, MISSING | MINOR */

/*
 * fm__pmap_kernel: the process's own address space, opened on first use.
 * => NULL with errno when userfaultfd is unavailable (fm__pmap_unavailable
 *    says why).
 */
struct fm_pmap *fm__pmap_kernel(void);
const char *fm__pmap_unavailable(void);
/* What UFFDIO_API offers on this kernel (probed once). */
uint64_t fm__pmap_probe(void);

int fm__pmap_register(struct fm_pmap *pm, uintptr_t va, size_t len, int mode);
/*
 * Map resident pages [va, va+len) (UFFDIO_CONTINUE), write-protected when
 * wp. *mapped gets the bytes mapped from va; the thread that faulted in
 * that prefix is woken. => -EEXIST: va itself was mapped already;
 * -ENOENT: va's page is not resident; -ESRCH: no registered mapping at
 * va now (it was replaced); -EAGAIN: try again.
 */
int fm__pmap_enter(struct fm_pmap *pm, uintptr_t va, size_t len, int wp,
    size_t *mapped);
/*
 * Fill [va, va+len) with zeros and map it (UFFDIO_ZEROPAGE), writable,
 * never write-protected. In a shared mapping of a memfd each page is
 * allocated in the memfd's page cache (one call where fallocate + CONTINUE
 * take two); in a private one the kernel maps its zero page and leaves the
 * memfd alone: use it for shared registrations only. *mapped and the wake
 * as for fm__pmap_enter. => -EEXIST: va is mapped or already in the page
 * cache; -EAGAIN: try again.
 */
int fm__pmap_zero(struct fm_pmap *pm, uintptr_t va, size_t len, size_t *mapped);
int fm__pmap_wake(struct fm_pmap *pm, uintptr_t va, size_t len);
/*
 * Write-protect (wp) or unprotect [va, va+len); wake: unprotecting also
 * wakes the threads waiting on a write there (only the engine's answer to
 * a fault should: any other wake lets a thread go on while its fault
 * message is still to be answered).
 */
int fm__pmap_protect(struct fm_pmap *pm, uintptr_t va, size_t len, int wp,
    int wake);
/*
 * Deliver SIGBUS at va to thread tid, the thread that faulted (its uffd
 * message says which); the signal wakes it.
 * The page is left as it was, so a later access is served afresh. If the
 * thread blocks or ignores SIGBUS, the page is poisoned instead, so the
 * kernel delivers SIGBUS itself (as it would); mapped: va has a PTE (a
 * refused write), to be removed first.
 */
int fm__pmap_sigbus(struct fm_pmap *pm, pid_t tid, uintptr_t va, int mapped);
/* Remove the PTEs of [va, va+len); the object keeps its pages. */
int fm__pmap_zap(struct fm_pmap *pm, uintptr_t va, size_t len);

#endif
