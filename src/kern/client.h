/*
 * client.h: the address spaces of other processes, served by this
 * process's engine (fomapd's clients, through the preload library). A
 * client's mappings are made by the client itself (its own mmap of the
 * object's store); fomap runs the file's fo_mmap, and then registers and
 * serves the range through the client's userfaultfd with the same fault
 * path, page states and invariants as its own mappings: a driver cannot
 * tell them apart.
 *
 * All return 0 or a negative errno. No call here blocks on the client but
 * ops->zap (which the host bounds).
 */
#ifndef FM_KERN_CLIENT_H
#define FM_KERN_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct fm_file;
struct fm_vmspace;
struct fm_client_map;

/* How the host reaches a client beyond its userfaultfd. */
struct fm_client_ops {
	/*
	 * Remove the page-table entries of [va, va+len) in the client (its
	 * madvise MADV_DONTNEED: the object keeps its pages). => 0 or -errno
	 * (-ESRCH: the client has gone).
	 */
	int (*zap)(void *arg, uintptr_t va, size_t len);
	/*
	 * The client forked (optional): child is its child's address space,
	 * with every mapping the client had (MAP_SHARED ones coherent, the
	 * MAP_PRIVATE ones copy-on-write, as the kernel copied them), served
	 * from now on (its process is learned from its first fault, or
	 * named by fm_client_claim); its zaps reach it once the host claims
	 * it. Called from the engine: it must not block.
	 */
	void (*forked)(void *arg, struct fm_vmspace *child);
};

/*
 * Call before the first object is made: every object gets a store (memfd)
 * of its own, so that the store a client is given to map one object holds
 * no other object's pages. Objects in the shared store cannot be mapped by
 * clients (ENODEV).
 */
void fm_client_hosting(void);

/*
 * Serve process pid's address space through uffd, a userfaultfd the
 * process made (no UFFDIO_API done yet); fomap owns uffd from the call
 * on (closed with the address space, or on failure).
 * => 0 with *vsp; -EPERM: uffd is not a userfaultfd of pid's; -EINVAL,
 *    -ENOMEM, -ENOTSUP (features missing)
 */
int fm_client_create(pid_t pid, int uffd, const struct fm_client_ops *ops,
    void *arg, struct fm_vmspace **vsp);
/*
 * A forked client's child (ops->forked) is process pid, and arg is what
 * its ops are given from now on. => 0; -ESRCH: pid has gone; -EBUSY:
 * claimed already, or another process's
 */
int fm_client_claim(struct fm_vmspace *vs, pid_t pid, void *arg);

/*
 * The host no longer reaches vs's process (its session ended while it
 * lives): its zaps are done without it (its page-table entries stay,
 * mapping the objects' own pages) until it is claimed again. Returns once
 * no zap uses the host's ops with the old arg.
 */
void fm_client_unclaim(struct fm_vmspace *vs);
/*
 * Name a forked client's child (ops->forked) process pid without
 * claiming it (its parent's word). => 0; -EBUSY: another process's
 */
int fm_client_name(struct fm_vmspace *vs, pid_t pid);
/* Whether vs has mappings (entries in its map). */
int fm_client_mapped(struct fm_vmspace *vs);
/* vs's process as known so far (a forked child's: 0 until learned). */
pid_t fm_client_pid(struct fm_vmspace *vs);
/*
 * Whether vs's address space still exists (a forked child's that exited
 * or exec'd, never having said so: its uffd answers ESRCH). => 1 or 0
 */
int fm_client_alive(struct fm_vmspace *vs);
/* The events read from every client's uffd so far are followed (forks). */
void fm_client_sync(void);
/*
 * A copy of the userfaultfd vs is served through (O_CLOEXEC), for the
 * process itself: a forked child holds none of its own. => it, or -errno
 */
int fm_client_uffd(struct fm_vmspace *vs);

/*
 * The client has gone (or its host drops it): its mappings leave the map
 * (dirty pages written back as at munmap), its uffd is closed and vs
 * freed. No call may use vs after, nor run during.
 */
void fm_client_destroy(struct fm_vmspace *vs);

/*
 * The first half of a client's mmap of fp: runs fo_mmap. => 0 with *mp,
 * *storefd (the descriptor to map; read-only unless *maxprot has
 * PROT_WRITE; the caller closes it), *storeoff (where to map it from) and
 * *maxprot; -ENODEV: fp cannot be mapped (or not this way: a non-linear
 * layout, or no object); else mmap(2)'s errors (EACCES, EINVAL, ENXIO).
 */
int fm_client_prepare(struct fm_vmspace *vs, struct fm_file *fp, size_t len,
    int prot, int flags, off_t off, struct fm_client_map **mp, int *storefd,
    off_t *storeoff, int *maxprot);
/*
 * The second half: the client mapped the store at va (PROT_NONE); the
 * range is registered and served from now on. m is consumed either way.
 * => 0; -EINVAL: va is not a page of the client's where the store is
 *    mapped as prepared; -ENOMEM
 */
int fm_client_attach(struct fm_vmspace *vs, struct fm_client_map *m,
    uintptr_t va);
/* A prepared mmap the client will not attach. */
void fm_client_abandon(struct fm_client_map *m);

/*
 * The client's mprotect of its fomap mappings in [va, va+len), in two
 * halves around the client's own mprotect(2): begin checks it against
 * every mapping's maximum protection (-EACCES; -EINVAL: a bad range or
 * prot), and holds the refusals being decided there (so that none is told
 * to an access the protection change may have ended) until end; end, with
 * done when the client's mprotect worked, records the protection. Every
 * begin that succeeded must be ended (the host ends them when the client
 * goes). The holds are of the client's address space only.
 */
struct fm_client_prot;
int fm_client_mprotect_begin(struct fm_vmspace *vs, uintptr_t va, size_t len,
    int prot, struct fm_client_prot **pp);
void fm_client_mprotect_end(struct fm_vmspace *vs, struct fm_client_prot *p,
    int done);
/*
 * The client's msync and madvise of its fomap mappings in [va, va+len),
 * with fm_msync's and fm_madvise's semantics and errors (the engine's
 * part: the client makes its own system call for the kernel's).
 */
int fm_client_msync(struct fm_vmspace *vs, uintptr_t va, size_t len, int flags);
int fm_client_madvise(struct fm_vmspace *vs, uintptr_t va, size_t len,
    int advice);

#endif
