#!/bin/bash
# gotest-failures.sh LOG CMD...: runs a `go test` command, its output both
# on the terminal and in LOG, and when it fails prints, last, each failed
# test's first lines.
#
# Why: a failed test's own messages come before what its cleanups log (a
# server's log tail, a daemon's stderr), and CI shows only the end of the
# output, so the reason a test failed was pushed out of view by its own
# diagnostics. The summary repeats the first lines of each failure where
# the end of the output is.
set -u
log=$1
shift
mkdir -p "$(dirname "$log")"
set -o pipefail
"$@" 2>&1 | tee "$log"
status=$?
if [ "$status" -ne 0 ]; then
	echo
	echo "== $* failed (exit $status): each failed test's first lines (whole output: $log) =="
	# "--- FAIL: Name (1.23s)" then its indented messages; a panic or a
	# timeout names the test in the lines after "panic:". Kept short: what
	# CI shows of the output is its last few kilobytes.
	grep -E -A 5 -- '^\s*--- FAIL:|^panic: ' "$log" | cut -c1-200 | tail -n 60
fi
exit "$status"
