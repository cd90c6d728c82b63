/*
 * ipc.h: sending and receiving one message of the session protocol
 * (proto.h) with its descriptors. Used by fomapd and by the preload
 * library alike; async-signal-safe (sendmsg, recvmsg, close).
 */
#ifndef FM_IPC_IPC_H
#define FM_IPC_IPC_H

#include "ipc/proto.h"

/*
 * Send m with nfds descriptors fds (m->nfds is set). => 0, or -errno
 * (EINTR is retried).
 */
int fm_ipc_send(int sock, struct fm_ipc_msg *m, const int *fds, unsigned nfds);
/*
 * Receive one message into m and its descriptors into fds (at most
 * FM_IPC_MAXFDS; the unused ones are -1). Descriptors arrive O_CLOEXEC.
 * => 0; -ECONNRESET: EOF (the peer has gone); -EBADMSG: a message of
 *    another size (its descriptors are closed); or -errno
 */
int fm_ipc_recv(int sock, struct fm_ipc_msg *m, int fds[FM_IPC_MAXFDS]);

#endif
