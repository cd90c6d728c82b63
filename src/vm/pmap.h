/*
 * pmap.h: the MMU layer, one address space at a time. A struct fm_pmap
 * names the address space (its process) and its userfaultfd, and
 * everything the engine does to a mapping of it (register, enter,
 * zero-fill, protect, wake, poison, zap, SIGBUS, looking at a faulting
 * thread) is a call here on that struct. Most act through the userfaultfd,
 * which reaches the address space it belongs to from any process, or
 * through the object store; what cannot is an operation of the address
 * space (struct fm_pmap_ops), so that serving another process is adding
 * an instance, not changing the engine. fm__pmap_kernel is this process's
 * ("self"). No call here reaches only the caller's own address space but
 * through pm->ops.
 *
 * Other processes' address spaces (fm__pmap_client: fomapd's clients)
 * differ in two things outside this layer: a page refused inside a system
 * call is poisoned for the moment (fault.c: swap_page moves pages in the
 * caller's own address space only), and their mappings are made, moved,
 * protected and removed by the processes themselves (kern/client.c
 * follows).
 *
 * All return 0 or a negative errno.
 */
#ifndef FM_VM_PMAP_H
#define FM_VM_PMAP_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "vm/uffd_compat.h"

#define FM_PAGE_SIZE_PMAP 4096

struct fm_pmap;
struct fm_vmspace;

/*
 * The operations of an address space that depend on where it is: how
 * to reach its page tables or its threads other than through its
 * userfaultfd. The engine calls them only through the fm__pmap_*
 * wrappers (fm__pmap_zap, fm__pmap_thread, fm__pmap_sigbus), never
 * pm->ops->x(...) directly; every method is required.
 */
/* Remove the PTEs of [va, va+len); the object keeps its pages. */
typedef int fm_pmap_zap_t(struct fm_pmap *pm, uintptr_t va, size_t len);
/*
 * Read what (a file of /proc/<pid>/task/<tid>/) of thread tid into buf,
 * NUL-terminated. => its length, or -1 with errno
 */
typedef int fm_pmap_task_read_t(struct fm_pmap *pm, pid_t tid, const char *what,
    char *buf, size_t size);
/* As fm__pmap_sigbus. */
typedef int fm_pmap_sigbus_t(struct fm_pmap *pm, pid_t tid, uintptr_t addr,
    int err);

/*
 * A pid field of /proc/<pid>/status: key with its newline before it
 * ("\nTgid:", "\nPPid:"). => it, or 0 (no such process or field)
 */
pid_t fm__proc_status_pid(pid_t pid, const char *key);

/* pmo_task_read and pmo_sigbus of any process of ours: /proc, a signal. */
fm_pmap_task_read_t fm__pmap_proc_task_read;
fm_pmap_sigbus_t fm__pmap_proc_sigbus;

struct fm_pmap_ops {
	const char *pmo_name;
	fm_pmap_zap_t *pmo_zap;
	fm_pmap_task_read_t *pmo_task_read;
	fm_pmap_sigbus_t *pmo_sigbus;
};

/* An address space the engine serves. */
struct fm_pmap {
	const struct fm_pmap_ops *ops; /* how to reach it */
	pid_t pid; /* its process */
	int uffd; /* faults of this address space arrive here */
	/*
	 * A user-mode-only userfaultfd, or -1: a fault on memory registered
	 * with it from inside a system call fails the call with EFAULT at
	 * once; one from user mode waits until fm__pmap_user_wake. Its
	 * messages are read with uffd's and dropped: by every read that
	 * asks, and by one after a wait that saw some (user_ready).
	 */
	int uffd_user;
	atomic_int user_ready;
	int pagemap; /* its /proc/<pid>/pagemap, or -1 */
	uint64_t features; /* UFFD_FEATURE_* enabled on uffd */
	/* Reads the messages waiting on uffd (the engine's), or NULL. */
	int (*drain)(struct fm_pmap *pm);
	struct fm_vmspace *vs; /* its map (vm.h); NULL: this process's */
	atomic_uint inflight; /* its faults read, not yet answered (engine) */
	/*
	 * The engine reads its uffd (under its own lock: fm__engine_serve,
	 * fm__engine_unserve); a client's pmap not served may be reused.
	 */
	atomic_int served;
	struct fm_pmap *next_free; /* pmap.c's clients not in use */
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
 * fm__pmap_kernel: the process's own address space (ops "self"), opened
 * on first use
 * (non-blocking: fm__pmap_wait, then fm__pmap_read).
 * => NULL with errno when userfaultfd is unavailable (fm__pmap_unavailable
 *    says why).
 */
struct fm_pmap *fm__pmap_kernel(void);
/* The same address space, not opened: who its faults are (never NULL). */
const struct fm_pmap *fm__pmap_self(void);
const char *fm__pmap_unavailable(void);
/* What UFFDIO_API offers on this kernel (probed once). */
uint64_t fm__pmap_probe(void);

int fm__pmap_register(struct fm_pmap *pm, uintptr_t va, size_t len, int mode);
int fm__pmap_unregister(struct fm_pmap *pm, uintptr_t va, size_t len);
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
 * The same, without waking, tried once: => -EAGAIN, nothing done, while
 * an event waits to be read (the caller reads it, then tries again).
 */
int fm__pmap_protect_try(struct fm_pmap *pm, uintptr_t va, size_t len, int wp);
/*
 * Read at most n messages without blocking, and drop what uffd_user has
 * (user: always; else when a wait saw it readable). => the count (0:
 * none now), or -errno
 */
int fm__pmap_read(struct fm_pmap *pm, struct uffd_msg *msgs, size_t n,
    int user);
/*
 * A set of address spaces whose messages one wait can see, with a kick
 * (an eventfd) that ends a wait. => the set (an epoll descriptor), or
 * -errno
 */
int fm__pmap_set_create(int kick);
int fm__pmap_set_add(int set, struct fm_pmap *pm);
void fm__pmap_set_del(int set, struct fm_pmap *pm);
/*
 * Wait until a message may be read from an address space of set, or the
 * kick is written (and reset). => how many (at most max) are in ready[],
 * each once: those whose messages may be read (their uffd_user's too:
 * they are dropped by their next read). All of them, not the first: the
 * kernel reports ready descriptors in the same order while they stay
 * ready, so one that is always ready would starve those after it.
 */
#define FM_PMAP_SET_MAX 16
int fm__pmap_set_wait(int set, int kick, struct fm_pmap **ready, int max);
/*
 * Serve process pid's address space through uffd (UFFDIO_API not done
 * yet: done here, with the features the engine needs), with ops. => 0
 * with *pmp (uffd its own from now on), or -errno (uffd left open)
 */
int fm__pmap_client(pid_t pid, int uffd, const struct fm_pmap_ops *ops,
    struct fm_pmap **pmp);
/*
 * The child of parent's process, whose uffd (the FORK event's) is ufd:
 * => 0 with *pmp, its process unknown (pid 0) until fm__pmap_claim; or
 *    -errno
 */
int fm__pmap_forked(const struct fm_pmap *parent, int ufd,
    struct fm_pmap **pmp);
/* pm's process is pid. => 0, or -ESRCH: it has gone */
int fm__pmap_claim(struct fm_pmap *pm, pid_t pid);
/*
 * Whether pm's address space still exists (its uffd says ESRCH if not),
 * asked at page va, which none of its mappings may cover.
 */
int fm__pmap_alive(struct fm_pmap *pm, uintptr_t va);
/* Close a client's address space (fm__pmap_client) and free pm. */
void fm__pmap_client_free(struct fm_pmap *pm);

/* What a thread of the address space is doing (fm__pmap_thread). */
struct fm_pmap_thread {
	char syscall[160]; /* /proc's syscall line: what it is blocked in */
	int running; /* not blocked: nothing more is known */
	int in_fault; /* blocked in a userfaultfd fault */
	int in_syscall; /* blocked inside a system call */
	int signal_pending; /* a signal it does not block is pending */
	int sigbus_pending;
	int sigbus_taken; /* it neither blocks nor ignores SIGBUS */
	unsigned long long switches; /* times it has slept so far */
};
/* Thread tid of pm's process (pm->ops). => 0, or -ESRCH: it has gone */
int fm__pmap_thread(struct fm_pmap *pm, pid_t tid, struct fm_pmap_thread *t);
/* Whether the thread waits in a fault (1) or not (0); -ESRCH: gone. */
int fm__pmap_thread_in_fault(struct fm_pmap *pm, pid_t tid);
/* Whether pm's uffd has an UNMAP, REMAP or FORK event not read yet. */
int fm__pmap_event_unread(struct fm_pmap *pm);
/* The CPU time thread tid has run so far (ns), or -1: not known. */
long long fm__pmap_thread_ran(struct fm_pmap *pm, pid_t tid);
/*
 * Send SIGBUS for address addr to thread tid of pm's process (si_code
 * SI_QUEUE, si_errno err; pm->ops); the signal wakes it from its fault.
 */
int fm__pmap_sigbus(struct fm_pmap *pm, pid_t tid, uintptr_t addr, int err);
/*
 * Poison the page at va (mapped: it has a PTE, removed first) and wake its
 * faulters: an access from user mode gets the kernel's SIGBUS, one from a
 * system call fails it with EFAULT. fm__pmap_zap clears it.
 */
int fm__pmap_poison(struct fm_pmap *pm, uintptr_t va, int mapped);
/* Register [va, va+len) with pm->uffd_user (MISSING | MINOR). */
int fm__pmap_user_register(struct fm_pmap *pm, uintptr_t va, size_t len);
/* Wake the threads waiting in a fault of pm->uffd_user in [va, va+len). */
int fm__pmap_user_wake(struct fm_pmap *pm, uintptr_t va, size_t len);
/*
 * Whether the page at va is mapped write-protected by userfaultfd:
 * => 1 yes, 0 mapped and not, -ENOENT not mapped, or -errno
 */
int fm__pmap_wp_state(struct fm_pmap *pm, uintptr_t va);
/*
 * Remove the PTEs of [va, va+len); the object keeps its pages, and the
 * next access is a MINOR fault (pm->ops).
 */
int fm__pmap_zap(struct fm_pmap *pm, uintptr_t va, size_t len);

#endif
