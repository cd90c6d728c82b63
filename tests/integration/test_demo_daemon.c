/*
 * test_demo_daemon.c: make demo-daemon's program (tools/demo_daemon.c)
 * tells its whole story: it exits 0, no step says FAIL, and what it
 * started is gone after it (its mount, its directory, fomapd).
 */
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../test.h"
#include "daemon.h"

/* Is dir mounted? */
static int
mounted(const char *dir)
{
	char line[1024];
	FILE *f = fopen("/proc/self/mountinfo", "r");
	int n = 0;

	ASSERT(f != NULL);
	while (fgets(line, sizeof line, f))
		n += strstr(line, dir) != NULL;
	fclose(f);
	return n;
}

TEST(demo_daemon_tells_the_story_across_processes)
{
	char out[] = "/tmp/fomap-demo-out-XXXXXX", line[1024], dir[128] = "";
	char demo[PATH_MAX + 64], *p;
	int fd, st, fails = 0, done = 0;
	FILE *f;

	if (geteuid() != 0)
		fm_test_skip("the demo needs root (fomapd mounts)");
	if (access("/dev/fuse", R_OK | W_OK) < 0)
		fm_test_skip("no /dev/fuse");
	snprintf(demo, sizeof demo, "%s", fmd_tool("fomap-demo-daemon"));
	ASSERT((fd = mkstemp(out)) >= 0);
	close(fd);
	st = fmd_sh("%s >%s 2>&1", demo, out);
	ASSERT((f = fopen(out, "r")) != NULL);
	while (fgets(line, sizeof line, f)) {
		fputs(line, stdout); /* (shown if the test fails) */
		fails += strstr(line, "FAIL") != NULL;
		done += strncmp(line, "Done: ", 6) == 0;
		if (!dir[0] && (p = strstr(line, "--mount /tmp/")) != NULL)
			sscanf(p + 8, "%127s", dir);
	}
	fclose(f);
	unlink(out);
	ASSERT_EQ(st, 0);
	ASSERT_EQ(fails, 0);
	ASSERT_EQ(done, 1);
	ASSERT(dir[0] != 0);
	ASSERT_EQ(mounted(dir), 0);
	ASSERT(access(dir, F_OK) < 0);
}
