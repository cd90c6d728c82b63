/*
 * builtin.c: the drivers built into the library, available by name
 * (FM_DEVPREFIX "name") with no set-up call.
 */
#include "kern/kern.h"

extern const struct fm_cdevsw fm__zero_cdevsw, fm__null_cdevsw;
extern const struct fm_cdevsw fm__gem_cdevsw, fm__guard_cdevsw, fm__fb_cdevsw;

const struct fm_builtin fm__builtins[] = {
    {"zero", &fm__zero_cdevsw},
    {"null", &fm__null_cdevsw},
    {"gem", &fm__gem_cdevsw},
    {"guard", &fm__guard_cdevsw},
    {"fb", &fm__fb_cdevsw},
    {NULL, NULL},
};
