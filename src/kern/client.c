/*
 * client.c: other processes' address spaces (client.h).
 */
#include <errno.h>
#include <unistd.h>

#include "kern/client.h"
#include "kern/kern.h"

int
fm_client_create(pid_t pid, int uffd, const struct fm_client_ops *ops,
    void *arg, struct fm_vmspace **vsp)
{
	close(uffd);
	return -ENOSYS;
}

void
fm_client_destroy(struct fm_vmspace *vs)
{
}

int
fm_client_prepare(struct fm_vmspace *vs, struct fm_file *fp, size_t len,
    int prot, int flags, off_t off, struct fm_client_map **mp, int *storefd,
    off_t *storeoff, int *maxprot)
{
	return -ENOSYS;
}

int
fm_client_attach(struct fm_vmspace *vs, struct fm_client_map *m, uintptr_t va)
{
	return -ENOSYS;
}

void
fm_client_abandon(struct fm_client_map *m)
{
}

int
fm_client_mprotect(struct fm_vmspace *vs, uintptr_t va, size_t len, int prot)
{
	return -ENOSYS;
}

int
fm_client_msync(struct fm_vmspace *vs, uintptr_t va, size_t len, int flags)
{
	return -ENOSYS;
}

int
fm_client_madvise(struct fm_vmspace *vs, uintptr_t va, size_t len, int advice)
{
	return -ENOSYS;
}
