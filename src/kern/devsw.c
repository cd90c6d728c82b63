/*
 * devsw.c: the device switch: registration by name, the built-in drivers,
 * the no* and null* stubs, and the fileops of a device that does not clone
 * (every call goes to its cdevsw, like NetBSD's spec_vnops).
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "kern/kern.h"
#include "vm/vm.h"

static pthread_mutex_t devsw_lock = PTHREAD_MUTEX_INITIALIZER;
static struct fm_dev *devs;
static pthread_once_t builtin_once = PTHREAD_ONCE_INIT;

/*
 * The drivers built into the library (drivers/), available by name
 * (FM_DEVPREFIX "name") with no set-up call.
 */
extern const struct fm_cdevsw fm__zero_cdevsw, fm__null_cdevsw;
extern const struct fm_cdevsw fm__gem_cdevsw, fm__guard_cdevsw, fm__fb_cdevsw;
extern const struct fm_cdevsw fm__fbdev_cdevsw, fm__video_cdevsw;

static const struct {
	const char *name;
	const struct fm_cdevsw *cdev;
} builtins[] = {
    {"zero", &fm__zero_cdevsw},
    {"null", &fm__null_cdevsw},
    {"gem", &fm__gem_cdevsw},
    {"guard", &fm__guard_cdevsw},
    {"fb", &fm__fb_cdevsw},
    {"fb0", &fm__fbdev_cdevsw},
    {"video0", &fm__video_cdevsw},
};

static int
valid_name(const char *name)
{
	size_t n = name ? strlen(name) : 0;

	if (n == 0 || n >= sizeof(((struct fm_dev *)0)->name))
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!strchr(
		        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
		        "0123456789_.-",
		        name[i]))
			return 0;
	return strcmp(name, ".") != 0 && strcmp(name, "..") != 0;
}

/* => devsw_lock held */
static struct fm_dev **
find_locked(const char *name)
{
	struct fm_dev **pp;

	for (pp = &devs; *pp && strcmp((*pp)->name, name) != 0;
	     pp = &(*pp)->next)
		;
	return pp;
}

static int
dev_add(const char *name, const struct fm_cdevsw *cdev, void *priv)
{
	struct fm_dev *dev, **pp;

	if (!valid_name(name) || cdev == NULL)
		return -EINVAL;
	dev = calloc(1, sizeof(*dev));
	if (dev == NULL)
		return -ENOMEM;
	strcpy(dev->name, name);
	dev->cdev = cdev;
	dev->priv = priv;
	pthread_mutex_lock(&devsw_lock);
	pp = find_locked(name);
	if (*pp == NULL)
		*pp = dev;
	pthread_mutex_unlock(&devsw_lock);
	if (*pp != dev) {
		free(dev);
		return -EEXIST;
	}
	return 0;
}

static void
builtin_setup(void)
{
	for (size_t i = 0; i < sizeof(builtins) / sizeof(builtins[0]); i++)
		(void)dev_add(builtins[i].name, builtins[i].cdev, NULL);
}

int
fm_dev_register(const char *name, const struct fm_cdevsw *cdev, void *priv)
{
	pthread_once(&builtin_once, builtin_setup);
	return dev_add(name, cdev, priv);
}

int
fm_dev_unregister(const char *name)
{
	struct fm_dev *dev, **pp;
	struct fm_object *mem = NULL;
	int r = 0;

	pthread_mutex_lock(&devsw_lock);
	pp = find_locked(name ? name : "");
	dev = *pp;
	if (dev == NULL)
		r = -ENOENT;
	else if (atomic_load(&dev->opens) > 0)
		r = -EBUSY;
	else {
		*pp = dev->next;
		mem = dev->mem;
	}
	pthread_mutex_unlock(&devsw_lock);
	if (mem)
		fm_object_rele(mem);
	if (r == 0)
		free(dev);
	return r;
}

struct fm_dev *
fm__dev_lookup(const char *name)
{
	struct fm_dev *dev;

	pthread_once(&builtin_once, builtin_setup);
	pthread_mutex_lock(&devsw_lock);
	dev = *find_locked(name);
	if (dev != NULL)
		atomic_fetch_add(&dev->opens, 1);
	pthread_mutex_unlock(&devsw_lock);
	return dev;
}

void *
fm_dev_private(struct fm_dev *dev)
{
	return dev->priv;
}

const char *
fm_dev_name(struct fm_dev *dev)
{
	return dev->name;
}

int
fm_dev_memory(struct fm_dev *dev, size_t size, void **kva)
{
	struct fm_object *mem;
	int r;

	pthread_mutex_lock(&devsw_lock);
	r = fm__udv_memory(&dev->mem, size);
	mem = dev->mem;
	pthread_mutex_unlock(&devsw_lock);
	if (r == 0 && (*kva = fm_object_window(mem)) == NULL)
		r = -ENOMEM;
	return r;
}

/* The stubs. */
int
fm_noopen(struct fm_dev *d, int f, struct fm_file *fp)
{
	return -ENODEV;
}

int
fm_nullopen(struct fm_dev *d, int f, struct fm_file *fp)
{
	return 0;
}

int
fm_noclose(struct fm_dev *d, int f)
{
	return -ENODEV;
}

int
fm_nullclose(struct fm_dev *d, int f)
{
	return 0;
}

ssize_t
fm_noread(struct fm_dev *d, void *b, size_t n, off_t o)
{
	return -ENODEV;
}

ssize_t
fm_nullread(struct fm_dev *d, void *b, size_t n, off_t o)
{
	return 0;
}

ssize_t
fm_nowrite(struct fm_dev *d, const void *b, size_t n, off_t o)
{
	return -ENODEV;
}

ssize_t
fm_nullwrite(struct fm_dev *d, const void *b, size_t n, off_t o)
{
	return (ssize_t)n;
}

int
fm_noioctl(struct fm_dev *d, unsigned long c, void *a, int f)
{
	return -ENOTTY;
}

fm_cookie_t
fm_nommap(struct fm_dev *d, off_t o, int p)
{
	return FM_COOKIE_INVALID;
}

/* Fileops of a device file that did not clone. */
static ssize_t
spec_read(struct fm_file *fp, void *buf, size_t len, off_t *offp)
{
	ssize_t r = fm__d_read(fp->f_dev, buf, len, *offp);

	if (r > 0)
		*offp += r;
	return r;
}

static ssize_t
spec_write(struct fm_file *fp, const void *buf, size_t len, off_t *offp)
{
	ssize_t r = fm__d_write(fp->f_dev, buf, len, *offp);

	if (r > 0)
		*offp += r;
	return r;
}

static int
spec_ioctl(struct fm_file *fp, unsigned long cmd, void *data)
{
	return fm__d_ioctl(fp->f_dev, cmd, data, fp->f_flag);
}

static int
spec_close(struct fm_file *fp)
{
	return fm__d_close(fp->f_dev, fp->f_flag);
}

static int
spec_mmap(struct fm_file *fp, struct fm_mmap_req *req)
{
	const struct fm_cdevsw *c = fp->f_dev->cdev;
	struct fm_object *mem;

	if (c->d_mmap_single)
		return fm__d_mmap_single(fp->f_dev, req);
	if (c->d_mmap == NULL || c->d_mmap == fm_nommap)
		return -ENODEV;
	/* Set once, mem stays until the device goes, which our open bars. */
	pthread_mutex_lock(&devsw_lock);
	mem = fp->f_dev->mem;
	pthread_mutex_unlock(&devsw_lock);
	return fm__udv_attach(fp->f_dev, c->d_mmap, mem, req);
}

static int
spec_poll(struct fm_file *fp, int events)
{
	return fm__d_poll(fp->f_dev, events);
}

static int
spec_backing(struct fm_file *fp, struct fm_object **objp, int *maxprot)
{
	return fm__d_backing(fp->f_dev, objp, maxprot);
}

static int
spec_stat(struct fm_file *fp, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_mode = S_IFCHR | 0666;
	st->st_nlink = 1;
	st->st_blksize = FM_PAGE_SIZE;
	return 0;
}

const struct fm_fileops fm__devfileops = {
    .fo_read = spec_read,
    .fo_write = spec_write,
    .fo_ioctl = spec_ioctl,
    .fo_close = spec_close,
    .fo_stat = spec_stat,
    .fo_mmap = spec_mmap,
    .fo_poll = spec_poll,
    .fo_backing = spec_backing,
};

int
fm__dev_names(char (*names)[32], int max)
{
	int n = 0;

	pthread_once(&builtin_once, builtin_setup);
	pthread_mutex_lock(&devsw_lock);
	for (struct fm_dev *d = devs; d; d = d->next, n++)
		if (n < max)
			memcpy(names[n], d->name, sizeof(d->name));
	pthread_mutex_unlock(&devsw_lock);
	return n;
}
