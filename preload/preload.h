/*
 * preload.h: the parts of libfomap-preload.so. preload.c interposes the
 * mmap family and keeps the table of fomap ranges; session.c keeps the
 * process's sessions with fomapd and their watcher threads.
 *
 * Signals: every lock here is taken with all signals blocked, so that a
 * handler that interrupts its holder and calls an interposed function
 * cannot wait for it.
 */
#ifndef FMP_PRELOAD_H
#define FMP_PRELOAD_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ipc/proto.h"

/* What the kernel's, or the next library's, calls are (preload.c). */
void *fmp_real_mmap(void *addr, size_t len, int prot, int flags, int fd,
    off_t off);
int fmp_real_munmap(void *addr, size_t len);
int fmp_real_mprotect(void *addr, size_t len, int prot);
int fmp_real_madvise(void *addr, size_t len, int advice);

/* All signals blocked, the old mask into *old; and back. */
void fmp_block(sigset_t *old);
void fmp_unblock(const sigset_t *old);

struct fmp_session;

/*
 * The table of fomap ranges: [start, end) mapped through session s.
 * fmp_table_each calls fn on each of s's, with the table locked (fn may
 * make system calls only). fmp_table_covers: whether s's ranges cover
 * [start, end) whole.
 */
void fmp_table_each(const struct fmp_session *s,
    void (*fn)(uintptr_t start, uintptr_t end, void *arg), void *arg);
int fmp_table_covers(const struct fmp_session *s, uintptr_t start,
    uintptr_t end);
/* Whether a range of the table is s's. */
int fmp_table_has(const struct fmp_session *s);

/*
 * The live session with the fomapd whose socket is name, made at the
 * first call (connect, userfaultfd, HELLO; fd: the fomap file being
 * mapped, for FM_IPC_UFFD_DEV). => 0 with *sp; -ENOSYS: that fomapd has
 * no engine to serve this process; -ECONNREFUSED, -ENOENT: nobody
 * listens; -ENOTCONN: the session died (its fomapd, or a fork); -errno
 */
int fmp_session_get(const char *name, int fd, struct fmp_session **sp);
/*
 * Request m of s (with descriptor fd if >= 0) and wait for its reply,
 * which replaces m; *rfd: the reply's descriptor, or -1 (rfd NULL: none
 * is kept). One request of the process's at a time; signals blocked.
 * => the reply's err; -ENOTCONN: the session is not live
 */
int fmp_request(struct fmp_session *s, struct fm_ipc_msg *m, int fd, int *rfd);

/* fork: before, and after in the parent and in the child (atfork). */
void fmp_session_prefork(void);
void fmp_session_postfork(int child);
/*
 * After the library's fork: in the parent, each live session tells its
 * fomapd the child's pid (FORKED); in the child, each session the parent
 * had live is made again for the child (HELLO_CHILD), or stays unusable
 * (ENOTCONN; its inherited mappings are still served).
 */
void fmp_session_forked(pid_t child);
void fmp_session_child(void);

#endif
