/*
 * session.h: fomapd's side of the session protocol (src/ipc/proto.h): the
 * socket the preload library finds through FM_IPC_XATTR, and the client
 * processes served through it (session.c).
 */
#ifndef FMD_SESSION_H
#define FMD_SESSION_H

#include <stdint.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/types.h>

#include "ipc/proto.h"

struct fm_file;

/*
 * fomapd's own ioctl on a descriptor a client sent: its FUSE server
 * answers it with the open's id (its fh) to fomapd's own threads alone,
 * and ENOTTY to everybody else, like any number it does not know. So a
 * client names an open only by holding it.
 */
#define FMD_IOC_OPEN _IOR(0xFD, 0x01, uint64_t)

/*
 * Listen on the session socket of the mount on device dev, and serve its
 * clients (a thread each) from now on.
 * => 0; -errno (fomapd serves on without sessions: nothing is mapped
 *    through the engine, the xattr is not there)
 */
int fmd_session_start(dev_t dev);
/* The socket's name (FM_IPC_XATTR's value), or NULL: no sessions. */
const char *fmd_session_name(void);
/* The sessions' lines of the status file ("session pid P (COMM) ..."). */
void fmd_session_status(FILE *f);

/*
 * Given by fomapd.c: the file of the open whose FUSE fh is id, referenced
 * (fm__file_rele), or NULL: no such open (or shut down). *backed: whether
 * its mmap is FUSE passthrough of its driver's backing object.
 */
struct fm_file *fmd_open_file(uint64_t id, int *backed);

#endif
