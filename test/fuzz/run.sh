#!/usr/bin/env bash
# run.sh - run libFuzzer harnesses one after the other (`make fuzz`).
#
# Usage: FUZZ_BUILD=build-fuzz FUZZ_SECONDS=60 test/fuzz/run.sh NAME...
#
# For each NAME, build-fuzz/fuzz_NAME runs for FUZZ_SECONDS on
# build-fuzz/corpus/NAME, a copy of test/fuzz/corpus/NAME (the repository
# corpus is only read; what a run finds stays in the copy for the next run),
# with test/fuzz/NAME.dict when there is one.  Each log goes to
# build-fuzz/logs/NAME.log and a one-line summary to stdout.  A crash, leak,
# timeout or out-of-memory stops nothing else: every harness runs, then the
# script fails, naming each failing input (build-fuzz/crashes/NAME/...).
set -uo pipefail

B=${FUZZ_BUILD:-build-fuzz}
S=${FUZZ_SECONDS:-60}
here=$(cd "$(dirname "$0")" && pwd)
failed=()

# Some harnesses write each input to a scratch file: keep those in memory
# when /dev/shm is there (ten times faster than a disk), and remove them.
mkdir -p "$B/tmp"
scratch=$(mktemp -d /dev/shm/sluice-fuzz.XXXXXX 2>/dev/null || mktemp -d "$B/tmp/run.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
# Leaks in libraries we do not own (see lsan.supp).
export LSAN_OPTIONS="suppressions=$here/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"

for name in "$@"; do
	bin="$B/fuzz_$name"
	corpus="$B/corpus/$name"
	crashes="$B/crashes/$name"
	log="$B/logs/$name.log"
	tmp="$scratch/$name"
	mkdir -p "$corpus" "$crashes" "$B/logs" "$tmp"
	if [ -d "$here/corpus/$name" ]; then
		cp -R "$here/corpus/$name/." "$corpus/"
	fi
	args=(-max_total_time="$S" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
	      -artifact_prefix="$crashes/")
	if [ -f "$here/$name.dict" ]; then
		args+=(-dict="$here/$name.dict")
	fi
	# The harnesses keep their scratch files under TMPDIR.
	TMPDIR="$tmp" "$bin" "${args[@]}" "$corpus" >"$log" 2>&1
	rc=$?
	cov=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -n 1 | grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9/]+[a-zA-Z]*')
	runs=$(grep -oE 'stat::number_of_executed_units: [0-9]+' "$log" | grep -oE '[0-9]+$')
	eps=$(grep -oE 'stat::average_exec_per_sec: +[0-9]+' "$log" | grep -oE '[0-9]+$')
	if [ "$rc" -ne 0 ]; then
		echo "fuzz_$name: FAILED (exit $rc), log $log"
		tail -n 40 "$log" | sed 's/^/    /'
		inputs=$(grep -oE 'Test unit written to .*' "$log" | sed 's/^Test unit written to //')
		for f in $inputs; do
			echo "    crash input: $f"
		done
		failed+=("$name")
	else
		echo "fuzz_$name: ok, ${runs:-?} runs, ${eps:-?} exec/s, ${cov:-no coverage line}"
	fi
done

if [ "${#failed[@]}" -gt 0 ]; then
	echo "fuzz: failed: ${failed[*]} (reproduce: $B/fuzz_NAME INPUT; see test/fuzz/README.md)"
	exit 1
fi
exit 0
