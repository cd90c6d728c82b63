/*
 * fomapctl.c: what a running fomapd holds: its devices, the opens of
 * every program (which process, which device, the object behind a mapped
 * open and how much of it is resident) and the engine's counters. It reads
 * the daemon's status file, MOUNT/.status, a snapshot taken when it is
 * opened. Lines: "device NAME mode M uid U gid G"; "open ID device NAME
 * pid P (COMM) object BYTES bytes resident BYTES" (or "object none": not
 * mapped by passthrough), each followed by the "map pid P RANGE PERMS
 * offset OFF" lines of the mappings of it seen in the opener; "engine
 * ..." counters, and "engine latency-us" the engine's histogram;
 * "session pid P maps N": a process served through the preload library
 * (N: its mmaps attached so far; "unserved": the engine took no HELLO).
 */
#include <stdio.h>
#include <string.h>

static int
usage(FILE *f)
{
	fprintf(f,
	    "usage: fomapctl [--mount DIR] [devices|opens|sessions|stats|all]\n"
	    "Shows what the fomapd serving DIR (default /dev/fomap) "
	    "holds.\n");
	return f == stdout ? 0 : 2;
}

int
main(int argc, char **argv)
{
	const char *dir = "/dev/fomap", *what = "all";
	char path[4096], line[1024];
	int nopens = 0;
	FILE *f;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--mount") == 0 && i + 1 < argc)
			dir = argv[++i];
		else if (strcmp(argv[i], "--help") == 0 ||
		    strcmp(argv[i], "-h") == 0)
			return usage(stdout);
		else if (argv[i][0] != '-')
			what = argv[i];
		else
			return usage(stderr);
	}
	if (strcmp(what, "all") != 0 && strcmp(what, "devices") != 0 &&
	    strcmp(what, "opens") != 0 && strcmp(what, "sessions") != 0 &&
	    strcmp(what, "stats") != 0)
		return usage(stderr); /* a word it does not know */
	snprintf(path, sizeof path, "%s/.status", dir);
	if ((f = fopen(path, "re")) == NULL) {
		perror(path);
		return 1;
	}
	while (fgets(line, sizeof line, f)) {
		int dev = strncmp(line, "device ", 7) == 0;
		int open = strncmp(line, "open ", 5) == 0;
		int map = strncmp(line, "map ", 4) == 0;
		int sess = strncmp(line, "session ", 8) == 0;
		int eng = strncmp(line, "engine ", 7) == 0 ||
		    strncmp(line, "waits ", 6) == 0;

		nopens += open;
		if (strcmp(what, "all") == 0 ||
		    (strcmp(what, "devices") == 0 && dev) ||
		    (strcmp(what, "opens") == 0 && (open || map)) ||
		    (strcmp(what, "sessions") == 0 && sess) ||
		    (strcmp(what, "stats") == 0 && eng))
			fputs(line, stdout);
	}
	fclose(f);
	if (strcmp(what, "opens") == 0 || strcmp(what, "all") == 0)
		printf("opens %d\n", nopens);
	return 0;
}
