# fomap: plain GNU make. See README.md.
#   make            libraries, tests and tools in build/
#   make check      the whole test suite
#   make asan-check the suite under ASan+UBSan (build-asan/)
#   make tsan-check the threaded tests under TSan (build-tsan/)
#   make stress     the whole suite with the oracle for FOMAP_STRESS_SECONDS
#                   (default 600) in all, the slow tests included;
#                   asan-stress, tsan-stress: the
#                   same under the sanitizers
#   make demo       fomap's main job, shown step by step
#   make demo-daemon the same story across processes, through fomapd and
#                   the preload library (root)
#   make bench      benchmarks (never part of check); bench-quick: ~2 min
#   make install    libraries, headers, fomap.pc, fomapd, fomapctl, the
#                   preload library, man pages, fomapd.service and
#                   fomapd.conf under PREFIX (/usr/local) in DESTDIR;
#                   make uninstall removes them; make installables builds
#                   only what install installs (the Debian packages')
#   make man-lint   mandoc's warnings on man/*.[1-8] fail it

B       ?= build
CC      ?= cc
WARN    := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wformat=2 -Wno-unused-parameter
CFLAGS  ?= -O2 -g
ALLCFLAGS = -std=c11 -D_GNU_SOURCE $(WARN) $(if $(CI),-Werror) -Iinclude -Isrc \
           -fPIC -pthread $(CPPFLAGS) $(CFLAGS) $(SAN)
LDLIBS  := -pthread

LIB_SRC := $(wildcard src/kern/*.c src/vm/*.c drivers/*.c)
LIB_OBJ := $(LIB_SRC:%.c=$(B)/%.o)
TEST_SRC := $(wildcard tests/unit/*.c tests/integration/test_*.c \
            tests/integration/daemon.c tests/integration/plugin_hello.c \
            tests/stress/*.c)
TEST_OBJ := $(TEST_SRC:%.c=$(B)/%.o)
TOOLS   := $(B)/fomap-demo $(B)/fomap-probe $(B)/fomapctl
# make demo-daemon: its conductor, and the program it runs under LD_PRELOAD
DEMO_DAEMON := $(B)/fomap-demo-daemon $(B)/fomap-demo-client
IPC_OBJ := $(patsubst %.c,$(B)/%.o,$(wildcard src/ipc/*.c))
DAEMON_SRC := $(wildcard daemon/*.c)
DAEMON_OBJ := $(DAEMON_SRC:%.c=$(B)/%.o) $(IPC_OBJ)
PRELOAD_OBJ := $(patsubst %.c,$(B)/%.o,$(wildcard preload/*.c)) $(IPC_OBJ)
# The release (fomap.pc's Version, the Debian packages'), and the shared
# library's ABI: its soname, and the symbols the map exports.
VERSION := 0.1.0
SONAME  := libfomap.so.0
SOFILE  := libfomap.so.$(VERSION)
SOMAP   := src/libfomap.map

all: $(B)/libfomap.a $(B)/libfomap.so $(B)/fomap-test $(TOOLS) $(B)/fomapd \
     $(B)/fomap-static-map $(B)/fomap-plugin-hello.so $(B)/libfomap-preload.so \
     $(B)/fomap-preload-map $(B)/fomap-preload-stress $(DEMO_DAEMON)

$(B)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALLCFLAGS) -fvisibility=hidden -MMD -MP -c $< -o $@

$(B)/libfomap.a: $(LIB_OBJ)
	rm -f $@ && ar rcs $@ $^

$(B)/$(SOFILE): $(LIB_OBJ) $(SOMAP)
	$(CC) $(ALLCFLAGS) $(LDFLAGS) -shared -Wl,-soname,$(SONAME) \
	    -Wl,--version-script=$(SOMAP) -Wl,--no-undefined-version \
	    -o $@ $(LIB_OBJ) $(LDLIBS)

$(B)/$(SONAME): $(B)/$(SOFILE)
	ln -sf $(SOFILE) $@

$(B)/libfomap.so: $(B)/$(SONAME)
	ln -sf $(SONAME) $@

$(B)/fomap-test: $(TEST_OBJ) $(B)/tests/runner.o $(B)/libfomap.a $(IPC_OBJ)
	$(CC) $(ALLCFLAGS) $(LDFLAGS) -o $@ $(TEST_OBJ) $(B)/tests/runner.o $(B)/libfomap.a $(IPC_OBJ) $(LDLIBS)

# fomapd exports fomap's API to the driver plug-ins it loads (dlopen).
$(B)/fomapd: $(DAEMON_OBJ) $(B)/libfomap.a
	$(CC) $(ALLCFLAGS) $(LDFLAGS) -rdynamic -o $@ $(DAEMON_OBJ) $(B)/libfomap.a $(LDLIBS) -ldl

# The preload library: the session protocol alone, never the core.
$(B)/libfomap-preload.so: $(PRELOAD_OBJ)
	$(CC) $(ALLCFLAGS) $(LDFLAGS) -shared -o $@ $(PRELOAD_OBJ) $(LDLIBS)

# A program nothing can be preloaded into (the daemon's tests).
$(B)/fomap-static-map: tests/integration/static_map.c
	$(CC) -std=c11 -D_GNU_SOURCE -O2 -static -o $@ $<

# A dynamically linked program the preload tests run under LD_PRELOAD
# (fomap's headers only; not sanitized: the library is what is tested).
$(B)/fomap-preload-map: tests/integration/preload_map.c
	$(CC) -std=c11 -D_GNU_SOURCE -Iinclude -O2 -g -o $@ $<

# The preloaded stress's worker (test_preload_stress.c), built alike.
$(B)/fomap-preload-stress: tests/integration/preload_stress.c
	$(CC) -std=c11 -D_GNU_SOURCE -Iinclude $(WARN) -O2 -g -o $@ $<

# The tests' plug-in driver, as fomapd loads it (its fm_* calls bind to
# the daemon's own).
$(B)/fomap-plugin-hello.so: tests/integration/plugin_hello.c
	$(CC) $(ALLCFLAGS) $(LDFLAGS) -shared -o $@ $<

# make demo-daemon's programs: fomap's headers only, nothing of it linked in.
DEMO_CFLAGS = -std=c11 -D_GNU_SOURCE $(WARN) $(if $(CI),-Werror) -Iinclude -O2 -g

$(B)/fomap-demo-daemon: tools/demo_daemon.c
	$(CC) $(DEMO_CFLAGS) -o $@ $<

$(B)/fomap-demo-client: tools/demo_client.c include/fomap/gem.h include/fomap/guard.h
	$(CC) $(DEMO_CFLAGS) -o $@ $<

$(B)/fomapctl: $(B)/tools/fomapctl.o
	$(CC) $(ALLCFLAGS) $(LDFLAGS) -o $@ $^

$(B)/fomap-%: $(B)/tools/%.o $(B)/libfomap.a
	$(CC) $(ALLCFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

check: check-layers all
	$(B)/fomap-test

demo: $(B)/fomap-demo
	$(B)/fomap-demo

# The same story across processes: fomapd on a mount of its own, two
# programs under LD_PRELOAD=libfomap-preload.so (root, /dev/fuse).
demo-daemon: $(DEMO_DAEMON) $(B)/fomapd $(B)/fomapctl $(B)/libfomap-preload.so
	$(B)/fomap-demo-daemon

ASAN := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
TSAN_RUN = TSAN_OPTIONS="halt_on_error=1 $$TSAN_OPTIONS" setarch -R

asan-check:
	$(MAKE) B=build-asan SAN="$(ASAN)" check

# TSan maps its shadow at fixed addresses: run with ASLR off (setarch -R).
tsan-check:
	$(MAKE) B=build-tsan SAN="-fsanitize=thread" all
	$(TSAN_RUN) build-tsan/fomap-test thread

# The oracle (tests/stress/test_oracle.c): FOMAP_STRESS_SECONDS in all,
# shared by its 8 object kinds, in seeds of at most 20 s; each kind's test
# may take its share and 5 minutes more.
FOMAP_STRESS_SECONDS ?= 600
STRESS_ENV = FOMAP_STRESS_SECONDS=$(FOMAP_STRESS_SECONDS) \
	FOMAP_TEST_KNOWN=1 \
	FOMAP_TEST_TIMEOUT=$$(( $(FOMAP_STRESS_SECONDS) / 8 + 300 ))

# all, as check: the daemon's and the preload's tests run fomapd and the
# helper programs of the same build.
stress: all
	$(STRESS_ENV) $(B)/fomap-test

asan-stress:
	$(MAKE) B=build-asan SAN="$(ASAN)" stress

tsan-stress:
	$(MAKE) B=build-tsan SAN="-fsanitize=thread" all
	$(STRESS_ENV) $(TSAN_RUN) build-tsan/fomap-test thread

FORMAT_SRC = $(wildcard include/fomap/*.h src/*/*.[ch] drivers/*.c tools/*.c \
             tests/*.[ch] tests/unit/*.[ch] tests/stress/*.[ch] tests/integration/*.[ch] \
             daemon/*.[ch] preload/*.[ch] bench/*.[ch])

format-check:
	clang-format --dry-run --Werror $(FORMAT_SRC)

format:
	clang-format -i $(FORMAT_SRC)

# make install: under PREFIX, in DESTDIR (a staging root, as packages use);
# each directory may be given on its own. The daemon and its control tool
# are root's (fomapctl reads a file only root may: docs/daemon.md): sbin.
PREFIX     ?= /usr/local
SBINDIR    ?= $(PREFIX)/sbin
LIBDIR     ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
MANDIR     ?= $(PREFIX)/share/man
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
# The preload library is named by path in LD_PRELOAD, never linked (it has
# no soname): a directory of its own, as LD_PRELOAD libraries have.
PRELOADDIR ?= $(LIBDIR)/fomap
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
# /usr's configuration is in /etc; /usr/local's in /usr/local/etc.
SYSCONFDIR ?= $(if $(filter /usr,$(PREFIX)),/etc,$(PREFIX)/etc)
# Every man page the tree has, by the section its suffix names; and the
# names documented on another name's page (NAME:PAGE), as links to it.
MANPAGES   := $(wildcard man/*.[1-8])
MANLINKS   := fm_close.3:fm_open.3 fm_write.3:fm_read.3 \
	fm_engine_latency.3:fm_engine_stats.3 fm_probe_feature.3:fm_probe.3

INSTALLABLES := $(B)/libfomap.a $(B)/$(SOFILE) $(B)/libfomap-preload.so \
	$(B)/fomapd $(B)/fomapctl
installables: $(INSTALLABLES)

# fomap.pc and fomapd.service name the directories given to this make.
SUBST = sed -e 's|@PREFIX@|$(PREFIX)|g' \
	-e 's|@LIBDIR@|$(patsubst $(PREFIX)/%,$${prefix}/%,$(LIBDIR))|g' \
	-e 's|@INCLUDEDIR@|$(patsubst $(PREFIX)/%,$${prefix}/%,$(INCLUDEDIR))|g' \
	-e 's|@SBINDIR@|$(SBINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' \
	-e 's|@VERSION@|$(VERSION)|g'

# fomapd.conf is a configuration: one that is there already is kept.
# ldconfig when installing into the running system (not into a DESTDIR).
install: $(INSTALLABLES)
	$(SUBST) src/fomap.pc.in >$(B)/fomap.pc
	$(SUBST) daemon/fomapd.service.in >$(B)/fomapd.service
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(PRELOADDIR) \
	    $(DESTDIR)$(PKGCONFIGDIR) $(DESTDIR)$(INCLUDEDIR)/fomap \
	    $(DESTDIR)$(SBINDIR) $(DESTDIR)$(SYSTEMDUNITDIR) \
	    $(DESTDIR)$(SYSCONFDIR)
	install -m 644 $(B)/$(SOFILE) $(B)/libfomap.a $(DESTDIR)$(LIBDIR)
	ln -sf $(SOFILE) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libfomap.so
	install -m 644 $(B)/libfomap-preload.so $(DESTDIR)$(PRELOADDIR)
	install -m 644 $(B)/fomap.pc $(DESTDIR)$(PKGCONFIGDIR)
	install -m 644 include/fomap/*.h $(DESTDIR)$(INCLUDEDIR)/fomap
	install -m 755 $(B)/fomapd $(B)/fomapctl $(DESTDIR)$(SBINDIR)
	install -m 644 $(B)/fomapd.service $(DESTDIR)$(SYSTEMDUNITDIR)
	test -e $(DESTDIR)$(SYSCONFDIR)/fomapd.conf || \
	    install -m 644 daemon/fomapd.conf $(DESTDIR)$(SYSCONFDIR)
	for f in $(MANPAGES); do \
	    install -d $(DESTDIR)$(MANDIR)/man$${f##*.} && \
	    install -m 644 $$f $(DESTDIR)$(MANDIR)/man$${f##*.} || exit 1; \
	done
	for l in $(MANLINKS); do \
	    page=$${l#*:}; [ -f man/$$page ] || continue; \
	    ln -sf $$page $(DESTDIR)$(MANDIR)/man$${page##*.}/$${l%%:*} || exit 1; \
	done
	if [ -z "$(DESTDIR)" ] && command -v ldconfig >/dev/null; then \
	    ldconfig; fi

# What install put, and its own directories if empty; a fomapd.conf that
# was changed is kept.
uninstall:
	rm -f $(DESTDIR)$(LIBDIR)/$(SOFILE) $(DESTDIR)$(LIBDIR)/$(SONAME) \
	    $(DESTDIR)$(LIBDIR)/libfomap.so $(DESTDIR)$(LIBDIR)/libfomap.a \
	    $(DESTDIR)$(PRELOADDIR)/libfomap-preload.so \
	    $(DESTDIR)$(PKGCONFIGDIR)/fomap.pc \
	    $(patsubst include/%,$(DESTDIR)$(INCLUDEDIR)/%,$(wildcard include/fomap/*.h)) \
	    $(DESTDIR)$(SBINDIR)/fomapd $(DESTDIR)$(SBINDIR)/fomapctl \
	    $(DESTDIR)$(SYSTEMDUNITDIR)/fomapd.service \
	    $(foreach f,$(MANPAGES),$(DESTDIR)$(MANDIR)/man$(subst .,,$(suffix $(f)))/$(notdir $(f))) \
	    $(foreach l,$(MANLINKS),$(DESTDIR)$(MANDIR)/man$(subst .,,$(suffix $(firstword $(subst :, ,$(l)))))/$(firstword $(subst :, ,$(l))))
	! cmp -s daemon/fomapd.conf $(DESTDIR)$(SYSCONFDIR)/fomapd.conf || \
	    rm -f $(DESTDIR)$(SYSCONFDIR)/fomapd.conf
	rmdir $(DESTDIR)$(PRELOADDIR) $(DESTDIR)$(INCLUDEDIR)/fomap 2>/dev/null || true
	if [ -z "$(DESTDIR)" ] && command -v ldconfig >/dev/null; then \
	    ldconfig; fi

# Warnings and errors fail it (mandoc's style notes do not); nothing to
# check until man/ has pages.
man-lint:
	$(if $(MANPAGES),mandoc -T lint -W warning $(MANPAGES),@echo "man-lint: no man pages in man/")

clean:
	rm -rf build build-asan build-tsan

# No file includes a header of a layer above its own (part of check).
check-layers:
	tools/check-layers.sh
.PHONY: check-layers

-include bench/bench.mk
-include $(LIB_OBJ:.o=.d) $(TEST_OBJ:.o=.d) $(DAEMON_OBJ:.o=.d) \
	$(PRELOAD_OBJ:.o=.d)

.PHONY: all check demo demo-daemon asan-check tsan-check stress asan-stress \
	tsan-stress format-check format clean installables install uninstall \
	man-lint
# Keep the objects that pattern rules make (tools, benchmarks).
.SECONDARY:
