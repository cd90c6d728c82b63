/*
 * oracle.h: the oracle stress test (test_oracle.c). A model of what every
 * word of a mapped object must hold, checked continuously while writer
 * threads race everything that changes what is mapped.
 *
 * Map of the files:
 *
 *   oracle.h          the model: domains, word states, the run's state
 *   oracle_model.c    values, domains, the first failure, the trace
 *   oracle_writer.c   the writers: accesses and their checks
 *   oracle_mutator.c  the mutators, and the write hook's bound
 *   oracle_run.c      one run: set-up, threads, the signal storm, the
 *                     watchdog, the end's checks, the counts
 *   oracle_kinds.c    the objects under test, one or_kind each, with the
 *                     pagers and the device written for the test
 *   test_oracle.c     the tests: every kind with several seeds, and the
 *                     oracle's own test (planted bugs must be caught)
 *
 * Words. Each page of the object has 512 words. Words [0, OR_SHW) are
 * written through shared mappings, words [OR_PRIV, OR_PRIV + OR_SHW)
 * through private ones (the object itself never holds a value written
 * there). Writer t owns the words w with w % nwriters == t: only t writes
 * them, so t knows what each must hold, and anybody may check that the
 * others' words never go back. A written value carries a tag bit, its
 * writer's sequence number and a checksum of (sequence, word), so a value
 * in the wrong word, a torn value and a stale value are all told apart.
 *
 * Domains. Every mutator operation is bracketed in the domains it may
 * affect (or_dom): counted begun before it acts, ended after. An access
 * reads a domain's counts before and after itself (or_win). An operation
 * overlapped the access when the counts moved or were apart; one came
 * wholly between access A and a later access R when R's ended count
 * before it exceeds A's begun count after it. So the oracle knows, for
 * every access, whether the state it saw was certain or in flux:
 *
 *   reset[pg]        operations that reset a page's shared words (discard
 *                    of a zero-fill object, revocation, hole punch)
 *   prot[pg]         protection changes; state DS_RO: writes are refused
 *   revoke[pg]       revocations: any access may get SIGBUS
 *   epoch[pg]        everything after which the write hook may be asked
 *                    again about the page (clean, protect, removal, ...)
 *   sdom[slot][i]    changes of a mapping's page i: fm_mprotect (DS_RO),
 *                    fm_munmap until mapped again (DS_UNMAPPED), MAP_FIXED
 *   preset[slot][i]  what resets a private mapping's page (MADV_DONTNEED,
 *                    a new mapping)
 */
#ifndef FOMAP_ORACLE_H
#define FOMAP_ORACLE_H

#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

#include <fomap/driver.h>

#define OR_PG ((int)FM_PAGE_SIZE) /* an int, as the oracle counts */
#define OR_WORDS (OR_PG / 8)
#define OR_SHW 64 /* words [0, OR_SHW) of a page: shared mappings */
#define OR_PRIV 256 /* words [OR_PRIV, OR_PRIV + OR_SHW): private ones */
#define OR_MAXPAGES 32
#define OR_MAXSLOTS 3 /* mappings of the object, each at a fixed place */
#define OR_MAXWRITERS 4
#define OR_MAXMUTATORS 2
#define OR_TAG ((uint64_t)1 << 63) /* a written value, not a base one */
#define OR_KWINDOW_NS 25000000L /* the engine's FM_EFAULT_WAIT_US, and 5 ms */

/* Domain states. */
#define DS_RO 0x1 /* prot: writes refused; sdom: mprotect PROT_READ */
#define DS_UNMAPPED 0x2 /* sdom: not mapped */

struct or_dom {
	atomic_ulong begun, ended;
	atomic_int state; /* what the operations left (DS_*) */
};

/* A domain as an access saw it: counts and state before, and after. */
struct or_win {
	unsigned long e0, b0, b1;
	int s0, s1;
};

/*
 * What a word holds as far as its owner (or a checker) knows: val, as
 * written or seen by an access whose reset domain window was [e0, b1].
 */
struct or_est {
	uint64_t val;
	unsigned long e0, b1;
};

/* Failures, by class (the oracle's own test checks the class). */
enum or_fail {
	F_NONE,
	F_VALUE, /* a lost, resurrected or wrong value */
	F_SIGBUS, /* a SIGBUS where none may be */
	F_MISSING, /* a write went through where it must be refused */
	F_STRAY, /* a signal outside the access it was meant for */
	F_HOOK, /* an extra write hook call */
	F_HANG, /* an operation that does not end */
	F_SEGV, /* a SIGSEGV or EFAULT where none may be */
	F_CALL /* a call of the test's that failed */
};

/* Bugs planted in the oracle's expectations or in the run (self-test). */
enum or_sabotage {
	SAB_NONE,
	SAB_RESET, /* resets not told to the model */
	SAB_PROT, /* protection changes not told */
	SAB_EPOCH, /* clean and msync not told to the hook's bound */
	SAB_PRIVATE, /* MADV_DONTNEED of a private mapping not told */
	SAB_HANG, /* a writer stops in an access */
	SAB_STRAY /* a SIGBUS sent to a writer from nowhere */
};

/* What a run may be told; 0 (or -1 for storm) lets the seed choose. */
struct or_params {
	double secs; /* how long the writers run */
	double hang_secs; /* an operation longer than this is a hang */
	int nwriters, nmutators;
	int storm; /* 1: signal storm, 0: none, -1: the seed says */
	int sabotage;
	int quiet; /* print nothing (the self-test) */
	const char *skip; /* operations not to do, as FOMAP_ORACLE_SKIP */
};

/* What a run did. */
struct or_counts {
	unsigned long accesses, mops, races, signals, sigbus, sigsegv, efault,
	    torn, pipeops, hook_calls, hook_refused;
	unsigned long faults, wp, minor, engine_sigbus, retries;
};

enum or_role { R_WRITER, R_MUTATOR, R_CHECKER };

#define ARM_JUMP 1 /* a fault leaves the access: siglongjmp */
#define ARM_CALL 2 /* in a system call: note the signal, let it return */

struct oracle;

struct or_worker {
	struct oracle *o;
	int id, role;
	pthread_t th;
	atomic_int tid; /* its thread id, for the engine's trace */
	uint64_t rng;
	/* The access in progress, for the signal handler. */
	sigjmp_buf jb;
	volatile int armed; /* ARM_*, 0 outside an access */
	volatile uintptr_t page; /* the page it touches */
	volatile int caught; /* the signal that ended it (ARM_JUMP) */
	volatile int callsig; /* a signal taken during the call (ARM_CALL) */
	long callns; /* how long the last system call took */
	volatile unsigned long nsig; /* storm signals taken */
	volatile unsigned long stray; /* signals for no access of ours */
	volatile int stray_sig, stray_code;
	void *volatile stray_addr;
	/* What it does now, for the watchdog. */
	atomic_long since; /* ns at the start of the operation; 0: none */
	_Atomic(const char *) what;
	atomic_int wslot;
	atomic_uint wpg;
	/* The model of a writer. */
	uint32_t seq;
	unsigned sweep_pg, sweep_slot; /* its next page, when it sweeps */
	int pipe[2];
	struct or_est own[OR_MAXPAGES][OR_SHW]; /* its shared words */
	struct or_est seen[OR_MAXPAGES][OR_SHW]; /* others' shared words */
	struct or_est priv[OR_MAXSLOTS][OR_MAXPAGES][OR_SHW];
	struct or_counts n;
};

/* Protection requests of or_kind.protect. */
#define P_RW 0
#define P_REFUSE 1 /* read-only, writes refused (SIGBUS) */
#define P_RECORD 2 /* read-only, writes allowed and recorded (guard) */

/* Kind flags. */
#define OK_RESETS 0x01 /* discard resets the shared words to base */
#define OK_REVERSED 0x02 /* mapping page i is object page npages-1-i */
#define OK_KVA 0x04 /* the driver's view of the memory is o->kva */
#define OK_REVOKES 0x08 /* discard revokes, then restores (guard) */
#define OK_WHOLE 0x10 /* discard takes the whole object */
#define OK_PATTERN 0x20 /* base words hold a pattern, not zeros */
#define OK_ENGINE 0x40 /* served by the fault engine */
#define OK_RECORD 0x80 /* protect may record instead of refuse */

/*
 * An object kind: how to make the object and its mappings, and the
 * mutator operations it has (NULL: none). Each returns 0 or -errno.
 */
struct or_kind {
	const char *name;
	int nshared, nprivate; /* mappings: shared first */
	unsigned flags; /* OK_* */
	/* => o->fd[], o->off[] for every mapping; o->obj if there is one */
	int (*setup)(struct oracle *o);
	void (*teardown)(struct oracle *o);
	int (*keep)(struct oracle *o, unsigned pg, unsigned n);
	int (*discard)(struct oracle *o, unsigned pg, unsigned n);
	int (*protect)(struct oracle *o, unsigned pg, unsigned n, int how);
	int (*clean)(struct oracle *o, unsigned pg, unsigned n);
	/* Every writer stopped, the mappings synced: check the backing. */
	void (*final)(struct oracle *o);
};

struct oracle {
	const struct or_kind *k;
	struct or_params p;
	unsigned long seed;
	uint64_t salt;
	unsigned npages, nwriters, nmutators, nslots;
	int storm, restart;
	int sweep; /* even writers sweep the pages in order (streams) */
	unsigned storm_us, pace_us, slow_us;
	unsigned wweight[16], mweight[16];
	/* The object and its mappings. */
	struct fm_object *obj; /* the kinds made with the driver API */
	void *kpriv; /* the kind's own state */
	char devname[32]; /* the test's device, registered for this run */
	int fd[OR_MAXSLOTS];
	off_t off[OR_MAXSLOTS]; /* mmap offset of the object's page 0 */
	int shared[OR_MAXSLOTS];
	char *arena, *slot[OR_MAXSLOTS];
	size_t arenalen;
	uint64_t *kva; /* OK_KVA */
	pthread_mutex_t slotlock[OR_MAXSLOTS], protlock;
	struct or_dom reset[OR_MAXPAGES], prot[OR_MAXPAGES],
	    revoke[OR_MAXPAGES], epoch[OR_MAXPAGES];
	struct or_dom sdom[OR_MAXSLOTS][OR_MAXPAGES];
	struct or_dom preset[OR_MAXSLOTS][OR_MAXPAGES];
	/* The write hook's bound (kinds with a hook of the test's). */
	atomic_ulong hook_calls, hook_refused;
	atomic_ulong hook_last[OR_MAXPAGES]; /* epoch ended at last allowed */
	atomic_ulong protops; /* protection changes begun, any page */
	/* Writes in flight through shared mappings: protops + 1 at their
	 * start, 0 when none (or_hook). */
	atomic_ulong inflight[OR_MAXPAGES][OR_MAXWRITERS];
	/*
	 * System calls on each mapping page: begun and ended (kseq), and
	 * under way (kin). While one is refused, the engine has its page
	 * away (docs/internals.md), and another system call on that page
	 * fails with EFAULT too: the one known effect of a refusal on
	 * other accesses. The page is back at most OR_KWINDOW_NS after the
	 * refused call has ended.
	 */
	atomic_ulong kseq[OR_MAXSLOTS][OR_MAXPAGES];
	atomic_int kin[OR_MAXSLOTS][OR_MAXPAGES];
	atomic_long krefused[OR_MAXSLOTS][OR_MAXPAGES]; /* last EFAULT, ns */
	/* The run. */
	atomic_int stop;
	atomic_ulong accesses, mops, races;
	struct or_worker *w[OR_MAXWRITERS + OR_MAXMUTATORS];
	unsigned nw;
	uint64_t final[OR_MAXPAGES][OR_SHW]; /* the shared words at the end */
	/* The first failure. */
	pthread_mutex_t faillock;
	atomic_int fail;
	char failmsg[1024];
};

/* oracle_model.c: values, domains, the first failure, the trace. */
extern __thread struct or_worker *or_cur; /* for the signal handlers */
uint64_t or_mix(uint64_t x);
unsigned or_rnd(uint64_t *s, unsigned n);
unsigned or_pick(uint64_t *rng, const unsigned *weight, unsigned n);
long or_now_ns(void);
uint64_t or_val(const struct oracle *o, uint32_t seq, unsigned pg, unsigned w);
uint32_t or_val_seq(uint64_t v);
int or_val_ok(const struct oracle *o, uint64_t v, unsigned pg, unsigned w);
const char *or_val_str(const struct oracle *o, uint64_t v, unsigned pg,
    unsigned w, char *buf, size_t len);
uint64_t or_base(const struct oracle *o, unsigned pg, unsigned w);
void or_fill_base(const struct oracle *o, unsigned pg, uint64_t *page);
void or_fail(struct oracle *o, int cls, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void or_dom_begin(struct or_dom *d);
void or_dom_end(struct or_dom *d);
void or_dom_snap(struct or_dom *d, struct or_win *s);
void or_dom_after(struct or_dom *d, struct or_win *s);
int or_win_quiet(const struct or_win *s);
int or_win_may(const struct or_win *s, int flag);
int or_win_must(const struct or_win *s, int flag);
void or_doms_begin(struct or_dom *d, unsigned pg, unsigned n);
void or_doms_end(struct or_dom *d, unsigned pg, unsigned n);
void or_doms_state(struct or_dom *d, unsigned pg, unsigned n, int state);
unsigned or_spage(const struct oracle *o, unsigned i);
int or_listed(const char *s, const char *key);
int or_skipped(const struct oracle *o, const char *key);
void or_doing(struct or_worker *w, const char *what, int slot, unsigned pg);
void or_done(struct or_worker *w);
void or_trace(const char *what, int who, unsigned pg, unsigned n,
    unsigned long x, unsigned long y);
void or_trace_start(void);
void or_trace_focus(int pg);
void or_trace_oracle(const struct oracle *o);
int or_trace_on(void);
void or_trace_dump(unsigned last);

/* oracle_writer.c: accesses, their checks, the writers. */
void *or_writer_main(void *arg);
void *or_writer0_main(void *arg);
pid_t or_writer0_tid(void);
void or_writer_weights(struct oracle *o, uint64_t *r);
void or_handlers_install(struct oracle *o);
unsigned long or_unowned_signals(void **addr);
void or_final_word(struct oracle *o, struct or_worker *c, int slot, unsigned pg,
    unsigned w);

/* oracle_mutator.c: the mutations and the write hook's bound. */
void *or_mutator_main(void *arg);
void or_mutator_weights(struct oracle *o, uint64_t *r);
void *or_map_slot(struct oracle *o, int s, unsigned i, unsigned n, int fixed);
int or_hook(struct oracle *o, unsigned pg, int refuse);
void or_settle(struct oracle *o, struct or_worker *c);

/* oracle_run.c: one run. */
int or_run(const struct or_kind *k, unsigned long seed,
    const struct or_params *p, struct or_counts *c, char *msg, size_t len);
void or_check_page(struct oracle *o, unsigned pg, const uint64_t *page,
    const char *where);

/* oracle_kinds.c */
extern const struct or_kind or_zero, or_store, or_slow, or_put, or_gem,
    or_guard, or_device, or_file;

#endif
