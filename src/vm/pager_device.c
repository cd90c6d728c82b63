/*
 * pager_device.c: the device pager, for drivers that have only legacy
 * d_mmap (NetBSD's udv). As udv_attach does, d_mmap is asked for every page
 * at mmap time, and an invalid offset fails the mmap (ENXIO). A cookie
 * names a page of the device's memory (fm_dev_memory has it made here): one
 * object a device, shared by all its opens, mapped page by page as the
 * cookies say, so the layout may be non-linear. Faults are served by the
 * engine from that memory, always resident.
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "vm/vm.h"

int
fm__udv_memory(struct fm_object **memp, size_t size)
{
	struct fm_object *obj;
	unsigned n;
	int r;

	if (size == 0)
		return -EINVAL;
	if (*memp != NULL)
		return FM_PAGES(size) > (*memp)->npages ? -EINVAL : 0;
	r = fm_object_create(&fm__anon_pagerops, size, NULL, &obj);
	if (r < 0)
		return r;
	/* Always resident: the driver writes it through the window. */
	n = (unsigned)obj->npages;
	r = fm__anon_get(obj, 0, &n);
	if (r < 0) {
		fm_object_rele(obj);
		return r;
	}
	fm__object_set(obj, 0, (unsigned)obj->npages, FM_PG_RESIDENT, 0);
	*memp = obj;
	return 0;
}

int
fm__udv_attach(struct fm_dev *dev, fm_d_mmap_t *d_mmap, struct fm_object *mem,
    struct fm_mmap_req *req)
{
	uint64_t n = FM_PAGES(req->len), *pages;

	if (mem == NULL)
		return -ENXIO; /* the driver gave its device no memory */
	pages = malloc(n * sizeof(*pages));
	if (pages == NULL)
		return -ENOMEM;
	for (uint64_t i = 0; i < n; i++) {
		fm_cookie_t c = d_mmap(dev,
		    req->off + (off_t)(i << FM_PAGE_SHIFT), req->prot);

		if (c == FM_COOKIE_INVALID || c >= mem->npages) {
			free(pages);
			return -ENXIO;
		}
		pages[i] = c;
		/*
		 * Per-page protection, as udv_fault asks d_mmap at each fault:
		 * a page the driver will not map writable is read-only in
		 * the mapping's maximum protection.
		 */
		if (!(req->prot & PROT_WRITE) &&
		    d_mmap(dev, req->off + (off_t)(i << FM_PAGE_SHIFT),
		        req->prot | PROT_WRITE) == FM_COOKIE_INVALID)
			pages[i] |= FM_PAGE_RDONLY;
	}
	fm_object_ref(mem);
	req->obj = mem;
	req->pages = pages;
	req->off = 0;
	req->maxprot = PROT_READ | PROT_WRITE;
	return 0;
}
