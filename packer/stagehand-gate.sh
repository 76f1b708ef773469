#!/bin/sh
# packer/stagehand-gate.sh: the templates' shell-local post-processor.
# Prints the summary of each report dir with `stagehand report DIR` and
# fails when any run did not pass, or when a report is missing, so that
# Packer fails the build (and, as the first post-processor of the only
# chain, leaves no artifact flagged to keep).
#
#   stagehand-gate.sh [--stagehand BIN] DIR...
#
# Exit status: 0 when every DIR holds a passed run, 1 otherwise, 2 for a
# usage error.
set -u

prog="stagehand-gate"
stagehand=stagehand
if [ "${1:-}" = --stagehand ]; then
	[ $# -ge 2 ] || {
		echo "$prog: --stagehand needs a value" >&2
		exit 2
	}
	stagehand=$2
	shift 2
fi
[ $# -gt 0 ] || {
	echo "usage: $prog [--stagehand BIN] DIR..." >&2
	exit 2
}

bad=0
for dir in "$@"; do
	if [ ! -f "$dir/results.json" ]; then
		echo "$prog: $dir: no report (results.json missing)" >&2
		bad=1
		continue
	fi
	if ! "$stagehand" report "$dir"; then
		echo "$prog: $dir: the run did not pass" >&2
		bad=1
	fi
done
[ "$bad" = 0 ] && echo "$prog: all $# report(s) passed"
exit "$bad"
