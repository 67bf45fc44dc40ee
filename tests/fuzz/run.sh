#!/bin/sh
# run.sh -- build the libFuzzer harnesses against src/fcgi.c and run each
# for a bounded time on a copy of its seed corpus.
#
#     tests/fuzz/run.sh              # FUZZ_SECONDS=30 per harness
#     FUZZ_SECONDS=300 tests/fuzz/run.sh
#     tests/fuzz/run.sh fuzz_params  # one harness only
#
# Environment: FUZZ_SECONDS (default 30), CLANG (default clang), FUZZ_ARGS
# (extra libFuzzer flags), FUZZ_KEEP=1 (keep the work directory).
# Needs clang with libFuzzer: on Debian, libclang-rt-14-dev (a Recommends of
# clang-14, so missing after --no-install-recommends).
#
# Exit status: 0 when every harness ran its time without a finding; 1 on a
# crash, leak, timeout, out-of-memory or any sanitizer report (the input is
# kept and printed in hex); 2 when the harnesses cannot be built.
# The committed corpus is never written: libFuzzer grows a copy.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
CLANG=${CLANG:-clang}
FUZZ_SECONDS=${FUZZ_SECONDS:-30}
FUZZ_ARGS=${FUZZ_ARGS:-}
harnesses=${*:-fuzz_record fuzz_params}

case $FUZZ_SECONDS in
''|*[!0-9]*) echo "run.sh: FUZZ_SECONDS must be a number of seconds" >&2
	exit 2 ;;
esac

work=$(mktemp -d "${TMPDIR:-/tmp}/fpmd-fuzz.XXXXXX")
keep=${FUZZ_KEEP:-0}
# shellcheck disable=SC2317 # called by the trap
cleanup() {
	if [ "$keep" = 1 ]; then
		echo "run.sh: work directory kept: $work"
	else
		rm -rf "$work"
	fi
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM

# fcgi.c includes the autotools config.h; the codec needs nothing from it.
mkdir "$work/inc" "$work/artifacts"
: >"$work/inc/config.h"

cflags="-g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined
    -fno-sanitize-recover=undefined -Wall -Wextra -I$work/inc -I$top/src"

printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n)
{ return d == 0 && n > 0; }\n' >"$work/probe.c"
if ! $CLANG -fsanitize=fuzzer "$work/probe.c" -o "$work/probe" \
    >"$work/probe.log" 2>&1; then
	cat "$work/probe.log" >&2
	echo "run.sh: $CLANG cannot link -fsanitize=fuzzer;" \
	    "install libclang-rt-14-dev (Debian)" >&2
	exit 2
fi

for h in $harnesses; do
	# shellcheck disable=SC2086 # cflags is a list of words
	if ! $CLANG $cflags "$here/$h.c" "$top/src/fcgi.c" -o "$work/$h"; then
		echo "run.sh: cannot build $h" >&2
		exit 2
	fi
done

export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=1"
ubsan=print_stacktrace=1:halt_on_error=1
export UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}$ubsan"
# Any of these in a log is a finding, whatever the exit status said.
findings='ERROR: (AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer'
findings="$findings|libFuzzer)|runtime error:|invariant failed|^SUMMARY:"

status=0
total=0
for h in $harnesses; do
	corpus=$here/corpus/${h#fuzz_}
	mkdir "$work/corpus-$h"
	cp "$corpus"/* "$work/corpus-$h/"
	seeds=$(find "$work/corpus-$h" -type f | wc -l)
	log=$work/$h.log
	echo "run.sh: $h for ${FUZZ_SECONDS}s on $seeds seeds"
	rc=0
	# shellcheck disable=SC2086 # FUZZ_ARGS is a list of flags
	"$work/$h" -max_total_time="$FUZZ_SECONDS" -print_final_stats=1 \
	    -timeout=10 -rss_limit_mb=2048 \
	    -artifact_prefix="$work/artifacts/$h-" $FUZZ_ARGS \
	    "$work/corpus-$h" >"$log" 2>&1 || rc=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" |
	    tail -n 1)
	grown=$(find "$work/corpus-$h" -type f | wc -l)
	if [ "$rc" -ne 0 ] || [ -z "$execs" ] ||
	    grep -Eq "$findings" "$log"; then
		status=1
		keep=1
		echo "run.sh: $h FAILED (exit $rc); its log:" >&2
		tail -n 60 "$log" >&2
		for a in "$work/artifacts/$h-"*; do
			[ -f "$a" ] || continue
			echo "run.sh: input $a:" >&2
			od -An -tx1 "$a" | head -n 32 >&2
		done
		continue
	fi
	total=$((total + execs))
	echo "run.sh: $h: $execs executions in ${FUZZ_SECONDS}s," \
	    "corpus $seeds -> $grown inputs, no findings"
done
echo "run.sh: $total executions in all"
exit "$status"
