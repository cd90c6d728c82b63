#!/usr/bin/env bash
#
# check-layers.sh: fail when a file includes a header of a layer above its
# own, or an internal header it should not see (make check-layers).
#
# Each layer sees the public headers (include/) and its own; kern, built
# on vm, sees vm's too. Drivers see the public API alone; tools, tests and
# bench that and their own headers. allowed() below is the rule; the
# exceptions name each file that must see more, and why.
# An #include is resolved as the compiler does (Makefile: -Iinclude -Isrc):
# "x" from the including file's directory first, then include/, then src/;
# <x> from include/, then src/. A header in none of them is the system's.
#
# Prints each violation as "file:line: what" and exits 1; also when an
# exception below is no longer needed, so that the list stays short.

cd "$(dirname "$0")/.." || exit 2

# Internal headers a file may include all the same: "file header # why".
exceptions="
src/vm/mmap.c src/kern/kern.h # fm_mmap gets the descriptor's file itself
tests/unit/test_mmap.c src/vm/vm.h # checks the map's invariants
tests/unit/test_tree.c src/vm/tree.h # tests the tree against a reference
tests/unit/test_client.c src/ipc/ipc.h # plays a client process's part
tests/unit/test_client.c src/kern/client.h # serves a second address space
tests/unit/test_client.c src/kern/kern.h # the file behind a descriptor
"

# The file's layer, and the directories it may include from.
allowed() {
	case $1 in
	include/*) layer=include/ dirs="include/" ;;
	src/vm/*) layer=src/vm/ dirs="include/ src/vm/" ;;
	src/kern/*) layer=src/kern/ dirs="include/ src/vm/ src/kern/" ;;
	drivers/*) layer=drivers/ dirs="include/" ;;
	src/ipc/*) layer=src/ipc/ dirs="src/ipc/" ;;
	daemon/*) layer=daemon/ dirs="include/ src/vm/ src/kern/ src/ipc/ daemon/" ;;
	preload/*) layer=preload/ dirs="src/ipc/ preload/" ;;
	tools/*) layer=tools/ dirs="include/ tools/" ;;
	tests/*) layer=tests/ dirs="include/ tests/" ;;
	bench/*) layer=bench/ dirs="include/ bench/" ;;
	esac
}

# hdr: the header an #include names, as a path from the top, or nothing.
resolve() {
	local file=$1 quote=$2 name=$3

	hdr=""
	if [ "$quote" = '"' ] && [ -f "${file%/*}/$name" ]; then
		hdr=${file%/*}/$name
	elif [ -f "include/$name" ]; then
		hdr=include/$name
	elif [ -f "src/$name" ]; then
		hdr=src/$name
	fi
	case $hdr in
	*./*) hdr=$(realpath -m --relative-to=. "$hdr") ;;
	esac
}

re='^([^:]+):([0-9]+):[[:space:]]*#[[:space:]]*include[[:space:]]*([<"])([^>"]+)'
bad=0
used=""
while IFS= read -r hit; do
	[[ $hit =~ $re ]] || continue
	file=${BASH_REMATCH[1]} line=${BASH_REMATCH[2]}
	resolve "$file" "${BASH_REMATCH[3]}" "${BASH_REMATCH[4]}"
	[ -n "$hdr" ] || continue
	allowed "$file"
	ok=0
	for dir in $dirs; do
		case $hdr in "$dir"*) ok=1 ;; esac
	done
	[ $ok = 1 ] && continue
	if grep -q "^$file $hdr #" <<<"$exceptions"; then
		used="$used$file $hdr
"
		continue
	fi
	echo "$file:$line: includes $hdr: $layer may include only $dirs"
	bad=1
done < <(find include src drivers tools tests bench daemon preload -name '*.[ch]' |
	sort | xargs grep -Hn '^[[:space:]]*#[[:space:]]*include')

while read -r file hdr _; do
	[ -n "$file" ] || continue
	if ! grep -qx "$file $hdr" <<<"$used"; then
		echo "tools/check-layers.sh: $file no longer includes $hdr:" \
			"remove its exception"
		bad=1
	fi
done <<<"$exceptions"
exit $bad
