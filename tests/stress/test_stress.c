/*
 * test_stress.c: random sequences of every operation on a store object,
 * sequential sweeps among them (the engine's read-ahead runs beside the
 * next steps), checked against a model of its contents after each step,
 * and against the backing file at the end. FOMAP_STRESS_SEED picks another sequence.
 */
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <fomap/driver.h>

#include "../test.h"
#include "../unit/testdev.h"

#define NPAGES 64
#define STEPS 3000
#define RW (PROT_READ | PROT_WRITE)

static unsigned long rng = 88172645463325252UL;

static unsigned
rnd(unsigned n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (unsigned)(rng % n);
}

/* The model: what each page's first byte should be, and which are RO. */
static char model[NPAGES];
static int rdonly[NPAGES];

static void
check_all(const char *m, int step)
{
	for (int i = 0; i < NPAGES; i++)
		if (m[i * PG] != model[i])
			fm_test_fail(__FILE__, __LINE__,
			    "step %d: page %d holds %d, model %d", step, i,
			    m[i * PG], model[i]);
}

TEST(stress_store_against_a_model)
{
	fm_test_need_uffd();
	int file = testdev_tmpfile(NPAGES * PG);
	struct fm_object *obj;
	ASSERT_EQ(fm_store_create(file, 0, NPAGES * PG, &obj), 0);
	int fd = testdev_open("stress", obj, RW, O_RDWR);
	char *m1 = fm_mmap(NULL, NPAGES * PG, RW, MAP_SHARED, fd, 0);
	char *m2 = fm_mmap(NULL, NPAGES * PG, RW, MAP_SHARED, fd, 0);
	char c;

	ASSERT(m1 != MAP_FAILED && m2 != MAP_FAILED);
	if (getenv("FOMAP_STRESS_SEED")) /* another sequence */
		rng = strtoul(getenv("FOMAP_STRESS_SEED"), NULL, 0) | 1;
	for (int i = 0; i < NPAGES; i++)
		model[i] = (char)((i * PG) % 251);
	for (int step = 0; step < STEPS; step++) {
		unsigned pg = rnd(NPAGES), n = 1 + rnd(NPAGES - pg);
		char *m = rnd(2) ? m1 : m2;
		char v = (char)(1 + rnd(120));

		switch (rnd(12)) {
		case 0:
		case 1:
		case 2: /* write through a mapping */
			if (rdonly[pg]) {
				ASSERT_EQ(fm_test_probe(m + pg * PG, 1),
				    SIGBUS);
			} else {
				m[pg * PG] = v;
				model[pg] = v;
			}
			break;
		case 3: /* read through a mapping */
			ASSERT_EQ(m[pg * PG], model[pg]);
			break;
		case 4:
			ASSERT_EQ(fm_object_unmap(obj, (off_t)pg * PG, n * PG,
			              rnd(2) ? FM_UNMAP_KEEP
			                     : FM_UNMAP_DISCARD),
			    0);
			break;
		case 5:
			ASSERT_OK(fm_msync(m + pg * PG, n * PG,
			    rnd(2) ? MS_SYNC : MS_ASYNC));
			break;
		case 6: {
			int ro = rnd(3) == 0;
			ASSERT_EQ(fm_object_protect(obj, (off_t)pg * PG, n * PG,
			              ro ? PROT_READ : RW),
			    0);
			for (unsigned i = pg; i < pg + n; i++)
				rdonly[i] = ro;
			break;
		}
		case 7:
			ASSERT_OK(fm_madvise(m + pg * PG, n * PG,
			    rnd(2) ? MADV_DONTNEED : MADV_WILLNEED));
			break;
		case 8: /* map m2 again, somewhere */
			ASSERT_OK(fm_munmap(m2, NPAGES * PG));
			m2 = fm_mmap(NULL, NPAGES * PG, RW, MAP_SHARED, fd, 0);
			ASSERT(m2 != MAP_FAILED);
			break;
		case 10: /* a sequential reader: windows, read-ahead */
			for (unsigned i = pg; i < pg + n; i++)
				if (m[i * PG] != model[i])
					fm_test_fail(__FILE__, __LINE__,
					    "step %d: sweep: page %u holds "
					    "%d, model %d",
					    step, i, m[i * PG], model[i]);
			break;
		case 11: /* a sequential writer: a window dirty at once */
			for (unsigned i = pg; i < pg + n && !rdonly[i]; i++) {
				m[i * PG] = v;
				model[i] = v;
			}
			break;
		case 9: { /* the store itself, where the page is resident */
			unsigned char st;

			ASSERT_EQ(fm_object_mincore(obj, (off_t)pg * PG, PG,
			              &st),
			    0);
			ASSERT_EQ(fm_object_read(obj, (off_t)pg * PG, &c, 1),
			    0);
			if ((st & FM_PG_RESIDENT) && c != model[pg])
				fm_test_fail(__FILE__, __LINE__,
				    "step %d: object page %u holds %d, model "
				    "%d",
				    step, pg, c, model[pg]);
			break;
		}
		}
		if (step % 100 == 0)
			check_all(m1, step);
	}
	check_all(m1, STEPS);
	check_all(m2, STEPS);
	ASSERT_OK(fm_munmap(m1, NPAGES * PG));
	ASSERT_OK(fm_munmap(m2, NPAGES * PG)); /* the last: writes back */
	for (int i = 0; i < NPAGES; i++) {
		ASSERT_EQ(pread(file, &c, 1, (off_t)i * PG), 1);
		ASSERT_EQ(c, model[i]);
	}
	ASSERT_OK(fm_close(fd));
	fm_object_rele(obj);
	close(file);
}
