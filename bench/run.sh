#!/bin/sh
# run.sh: fomap's benchmark driver (make bench, bench-quick, bench-plot).
#
#   bench/run.sh quick [BUILD]  the short suite (about 2 minutes)
#   bench/run.sh full [BUILD]   the full suite (minutes)
#   bench/run.sh plot [BUILD]   docs/benchmarks.png from the latest results
#
# quick and full run every program in bench/ (built in BUILD/bench/), print
# their markdown tables, keep everything in BUILD/bench/MODE/ (log.md, the
# data files of the plot), and end with the headline targets and then one
# line "ratio <name> <value>" per headline, nothing after them.
# BENCH_ARGS adds options to every program (e.g. "-v", "-F", "-r 11");
# BENCH_REV names the fomap revision measured when this is no git work tree.
set -eu

mode=${1:-quick}
B=${2:-build}
bin=$B/bench

# Headline targets: name, comparison, bound.
targets='fault_vs_raw_uffd <= 1.15
seq_touch_vs_kernel <= 1.0
wp_fault_vs_raw_uffd_wp <= 1.15
wp_fault_vs_mprotect < 1.0
store_fill_vs_raw_uffd <= 1.15
host_touch_vs_kernel <= 1.05
two_thread_speedup >= 1.6
meta_bytes_per_page <= 16
store_write_vs_kernel_file <= 1.5
store_seq_vs_kernel_file <= 1.2
map_ops_60k_vs_kernel <= 2.0
protect_60k_vs_10 <= 2.0
unmap_60k_vs_10 <= 2.0
fault_vs_raw_uffd_unpinned <= 1.15
passthrough_touch_vs_memfd <= 1.05
daemon_ioctl_vs_socket <= 1.2
daemon_fault_vs_raw_xproc <= 1.15
daemon_seq_touch_vs_embedded <= 1.15
preload_overhead_open_read_close <= 1.05'

machine() {
	cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
	hv=$(lscpu 2>/dev/null | sed -n 's/^Hypervisor vendor:[[:space:]]*//p')
	virt="bare metal"
	[ -n "$hv" ] && virt="a $hv virtual machine"
	grep -q hypervisor /proc/cpuinfo && [ -z "$hv" ] && virt="a virtual machine"
	if [ -n "${BENCH_REV:-}" ]; then
		rev=$BENCH_REV
	elif rev=$(git rev-parse --short HEAD 2>/dev/null); then
		git diff --quiet HEAD -- src include drivers || rev="$rev + local changes"
	else
		rev="(no git)"
	fi
	# CPU busy over one second before the run: other work skews the figures.
	a=$(head -1 /proc/stat)
	sleep 1
	b=$(head -1 /proc/stat)
	busy=$(printf '%s\n%s\n' "$a" "$b" | awk '{ idle[NR] = $5 + $6; tot[NR] = 0
		for (i = 2; i <= NF; i++) tot[NR] += $i }
		END { d = tot[2] - tot[1]; printf "%.0f", d ? 100 * (1 - (idle[2] - idle[1]) / d) : 0 }')
	echo "Machine: $(nproc) CPUs ($cpu), $virt, Linux $(uname -r)," \
	    "$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo);" \
	    "fomap $rev;" \
	    "$(date -u '+%Y-%m-%d %H:%M UTC'); CPUs $busy% busy just before the run."
}

plot() {
	dir=$bin/full
	[ -f "$dir/sweep.dat" ] || dir=$bin/quick
	if ! command -v gnuplot >/dev/null 2>&1; then
		echo "bench-plot: gnuplot is not installed (apt-get install gnuplot-nox): skipped"
		exit 0
	fi
	if [ ! -f "$dir/sweep.dat" ]; then
		echo "bench-plot: no results in $bin/full or $bin/quick: run make bench first"
		exit 0
	fi
	ref() { awk -v k="$1" '$1 == k {print $2}' "$dir/row2.dat"; }
	gnuplot <<EOF
set terminal pngcairo size 1200,480 font ",10" noenhanced
set output "docs/benchmarks.png"
set multiplot layout 1,2 title "fomap benchmarks: $(head -c 100 "$dir/machine.txt")"
set title "Row 1: one-page fault latency (pinned to one CPU)"
set xlabel "latency per fault (µs)"
set ylabel "fraction of faults"
set logscale x
set xrange [0.5:100]
set yrange [0:1]
set key bottom right
set grid
plot "$dir/lat-fomap.dat" using 2:1 with lines lw 2 title "fomap engine", \
     "$dir/lat-raw-copy.dat" using 2:1 with lines lw 2 title "raw uffd COPY", \
     "$dir/lat-raw-continue.dat" using 2:1 with lines lw 2 title "raw uffd CONTINUE", \
     "$dir/lat-kernel-memfd.dat" using 2:1 with lines lw 2 title "kernel memfd", \
     "$dir/lat-kernel-anon.dat" using 2:1 with lines lw 2 title "kernel anonymous"
set title "Row 2: sequential first touch vs fault-around window"
set xlabel "pages installed per fault"
set ylabel "µs per page"
set logscale x 2
unset logscale y
set xrange [0.8:320]
set yrange [0:*]
set key top right
plot "$dir/sweep.dat" using 1:2:3:4 with yerrorlines lw 2 title "fomap zero (FOMAP_FAULT_AROUND)", \
     "$dir/sweep.dat" using 1:5:6:7 with yerrorlines lw 2 title "raw uffd ZEROPAGE, same window", \
     "$dir/sweep.dat" using 1:8:9:10 with yerrorlines lw 2 dt 2 title "fomap pager (f->around)", \
     "$dir/sweep.dat" using 1:11:12:13 with yerrorlines lw 2 dt 2 title "raw uffd pwrite + CONTINUE", \
     $(ref kernel_memfd) with lines dt 2 lw 2 title "kernel memfd first touch", \
     $(ref populate_write) with lines dt 3 lw 2 title "floor: MADV_POPULATE_WRITE", \
     $(ref fomap_default) with lines dt 4 lw 2 title "fomap default (adaptive)"
unset multiplot
EOF
	echo "bench-plot: docs/benchmarks.png from $dir"
}

case $mode in
quick) flags="-q" ;;
full) flags="" ;;
plot) plot; exit 0 ;;
*) echo "usage: $0 quick|full|plot [BUILD]" >&2; exit 2 ;;
esac

out=$bin/$mode
rm -rf "$out"
mkdir -p "$out"
log=$out/log.md
machine >"$out/machine.txt"
start=$(date +%s)
{
	echo "## fomap benchmarks ($mode)"
	echo
	cat "$out/machine.txt"
} | tee "$log"
busy=$(sed -n 's/.*CPUs \([0-9]*\)% busy.*/\1/p' "$out/machine.txt")
if [ "${busy:-0}" -gt 15 ]; then
	echo "(warning: other work kept the CPUs ${busy}% busy: the figures are skewed)" | tee -a "$log"
fi
for p in fault wp store pager scale remove memory mapops daemon; do
	# shellcheck disable=SC2086 # flags are words
	"$bin/bench-$p" $flags ${BENCH_ARGS:-} -o "$out" | tee -a "$log"
done
grep '^ratio ' "$log" >"$out/ratios" || true
{
	echo
	echo "### Headline targets"
	echo
	echo "| headline | value | target | |"
	echo "|---|---:|---:|---|"
	echo "$targets" | while read -r name op bound; do
		v=$(awk -v k="$name" '$2 == k {print $3}' "$out/ratios")
		[ -n "$v" ] || v=nan
		ok=$(awk -v v="$v" -v op="$op" -v b="$bound" 'BEGIN {
			if (v == "nan") { print "not measured"; exit }
			m = (op == "<=") ? v <= b : (op == "<") ? v < b : v >= b
			print m ? "met" : "MISSED" }')
		echo "| $name | $v | $op $bound | $ok |"
	done
	echo
	echo "Ran in $(($(date +%s) - start)) s; results in $out/."
	echo
} | tee -a "$log"
cat "$out/ratios"
