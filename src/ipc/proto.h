/*
 * proto.h: the wire protocol between fomapd and the processes it serves
 * through the preload library (libfomap-preload.so). Both sides include
 * it; neither the core (src/kern, src/vm) nor the drivers know it exists.
 *
 * Finding fomapd: every file of a fomapd mount answers the extended
 * attribute FM_IPC_XATTR with the name of fomapd's session socket (an
 * abstract UNIX socket name, without its leading NUL byte): a client finds
 * the fomapd behind a descriptor from the descriptor itself, wherever it
 * is mounted. A file that is not fomapd's has no such attribute (ENODATA,
 * ENOTSUP): the preload leaves it alone.
 *
 * A session: one SOCK_SEQPACKET connection per address space (process),
 * opened at its first fomap mmap; every message is one struct fm_ipc_msg,
 * with descriptors (SCM_RIGHTS) where an op says so. The client sends
 * requests and waits for each reply (one at a time); fomapd may send
 * requests of its own (FM_IPC_F_DAEMON set), which the client answers.
 * Replies carry the request's op and seq with FM_IPC_F_REPLY, err 0 or a
 * negative errno, and results in a[].
 *
 * The session's first request is FM_IPC_HELLO with the process's
 * userfaultfd; fomapd then serves that address space through it. EOF on
 * the socket is a death: of the client (fomapd releases its mappings and
 * uffd) or of fomapd (the client's watcher wakes what was in flight and
 * answers every later fault of fomap's ranges with SIGBUS).
 */
#ifndef FM_IPC_PROTO_H
#define FM_IPC_PROTO_H

#include <stdint.h>

#define FM_IPC_XATTR "user.fomap.session"
#define FM_IPC_VERSION 1
#define FM_IPC_NAME_MAX 100 /* a session socket's name, NUL included */
#define FM_IPC_MAXFDS 2 /* descriptors one message carries at most */

enum fm_ipc_op {
	/*
	 * The session's first request. a[0] FM_IPC_VERSION; fd: the
	 * process's userfaultfd, created with O_CLOEXEC | O_NONBLOCK and no
	 * UFFDIO_API yet (fomapd chooses its features). Reply: err (-EPROTO:
	 * another version; -EPERM: not a userfaultfd of the sender's own).
	 */
	FM_IPC_HELLO = 1,
	/*
	 * Before HELLO, for a process that cannot create a userfaultfd
	 * itself (no CAP_SYS_PTRACE, vm.unprivileged_userfaultfd 0, no
	 * access to /dev/userfaultfd): fd: a descriptor of a fomap file the
	 * client holds (such a descriptor makes userfaultfds that take kernel
	 * faults too: not for any process that can connect); reply fd: a
	 * /dev/userfaultfd descriptor opened by fomapd (USERFAULTFD_IOC_NEW
	 * on it makes one), err -EBADF: no fomap open sent.
	 */
	FM_IPC_UFFD_DEV,
	/*
	 * mmap of a fomap file: fd: the file's descriptor (the open is
	 * identified by fomapd from the descriptor itself). a[0] length,
	 * a[1] prot, a[2] flags (MAP_SHARED or MAP_PRIVATE and no other),
	 * a[3] offset. fomapd runs the device's fo_mmap. Reply: a[0] a
	 * token, a[1] the offset to map the store at, a[2] the maximum
	 * protection; fd: the object's store (read-only unless the maximum
	 * protection has PROT_WRITE). The client maps it PROT_NONE with
	 * MAP_SHARED (MAP_PRIVATE when asked), then sends FM_IPC_ATTACH; the
	 * token is good for one ATTACH.
	 */
	FM_IPC_MMAP,
	/*
	 * a[0] the token, a[1] where the client mapped the store (a[0]
	 * length of MMAP's request), 0: the client gives the token up (its
	 * own mmap failed). fomapd registers the range with the uffd and
	 * serves it. Reply: err; on success the client mprotects the range
	 * to the protection asked; on failure it unmaps it.
	 */
	FM_IPC_ATTACH,
	/*
	 * The client's mprotect of fomap mappings, in two halves around its
	 * own mprotect(2) (refusals of faults there wait meanwhile). a[3] 0:
	 * a[0] address, a[1] length, a[2] prot; reply a[0] a handle, or
	 * -EACCES: above a mapping's maximum protection. Then a[3] 1: a[4]
	 * the handle, a[5] 1 if the client's mprotect worked (else 0).
	 * Every first half answered 0 must be followed by its second.
	 */
	FM_IPC_MPROTECT,
	/* a[0] address, a[1] length, a[2] msync's flags. Reply: err. */
	FM_IPC_MSYNC,
	/* a[0] address, a[1] length, a[2] madvise's advice. Reply: err. */
	FM_IPC_MADVISE,
	/*
	 * From fomapd (FM_IPC_F_DAEMON): remove the page-table entries of
	 * [a[0], a[0] + a[1]) (madvise MADV_DONTNEED: the object keeps its
	 * pages, the next access faults). Reply: err.
	 */
	FM_IPC_ZAP,
	/*
	 * From a process that has just forked (the library's fork: forks are
	 * one at a time in a process): a[0] the child's pid. fomapd serves
	 * the child's inherited mappings through the userfaultfd the kernel
	 * made for it (EVENT_FORK) from now on. Reply: err.
	 */
	FM_IPC_FORKED,
	/*
	 * A forked child's own session (instead of HELLO): a[0]
	 * FM_IPC_VERSION. fomapd finds the address space it serves for the
	 * child (its parent's FORKED, or the parent's one fork not claimed
	 * yet) and serves the child's later mappings through it. Reply fd: a
	 * copy of that userfaultfd (the child's watcher keeps it, for
	 * fomapd's death). -ESRCH: no fork of the parent's awaits.
	 */
	FM_IPC_HELLO_CHILD,
};

#define FM_IPC_F_REPLY 0x1
#define FM_IPC_F_DAEMON 0x2 /* a request from fomapd */

struct fm_ipc_msg {
	uint32_t op; /* enum fm_ipc_op */
	uint32_t flags; /* FM_IPC_F_* */
	int32_t err; /* replies: 0 or a negative errno */
	uint32_t nfds; /* descriptors attached */
	uint64_t seq; /* the requester's; a reply carries its request's */
	uint64_t a[6];
};

#endif
