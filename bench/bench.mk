# bench.mk: fomap's benchmarks (bench/, docs/benchmarks.md), included by the
# Makefile. Never part of `make check`. Everything is built in $(B)/bench/.
#   make bench        the full suite (minutes): results in $(B)/bench/full/
#   make bench-quick  a short run (< 60 s): results in $(B)/bench/quick/
#   make bench-plot   docs/benchmarks.png from the latest results (gnuplot)

BENCH_PROGS  := fault wp store pager scale remove memory mapops daemon
BENCH_BIN    := $(BENCH_PROGS:%=$(B)/bench/bench-%)
BENCH_COMMON := $(B)/bench/bench.o $(B)/bench/raw.o
BENCH_OBJ    := $(BENCH_PROGS:%=$(B)/bench/%.o) $(BENCH_COMMON) \
                $(B)/bench/xclient.o

# Row 12's client process: a program that links no fomap library, run by
# bench-daemon with and without LD_PRELOAD=libfomap-preload.so.
$(B)/bench/xclient: $(B)/bench/xclient.o
	$(CC) $(ALLCFLAGS) -o $@ $<

$(B)/bench/bench-daemon: $(B)/bench/xclient $(B)/libfomap-preload.so $(B)/fomapd

$(B)/bench/bench-%: $(B)/bench/%.o $(BENCH_COMMON) $(B)/libfomap.a
	$(CC) $(ALLCFLAGS) -o $@ $< $(BENCH_COMMON) $(B)/libfomap.a $(LDLIBS) -lm

bench-bin: $(BENCH_BIN)

bench: $(BENCH_BIN)
	bench/run.sh full $(B)

bench-quick: $(BENCH_BIN)
	bench/run.sh quick $(B)

bench-plot:
	bench/run.sh plot $(B)

-include $(BENCH_OBJ:.o=.d)

.PHONY: bench bench-quick bench-plot bench-bin
