# tests/lib.sh: shared helpers for the integration tests (tNNNN-*.sh).
#
# Source it first thing:   . "$(dirname "$0")/lib.sh"
#
# It sets STAGEHAND (the binary under test, absolute), TOP (the checkout),
# T (a private temp dir, removed at exit) and prints TAP-style lines:
#   t_ok "description" cmd...     ok when cmd succeeds
#   t_fail "description" cmd...   ok when cmd fails
#   t_exit CODE "description" cmd...  ok when cmd exits with CODE
#   t_pass/t_not "description"    record a result computed by the test
#   t_skip "description" "reason" a test that cannot run here: prints
#                                 "ok N - description # SKIP reason" (TAP),
#                                 which tests/run.sh counts as skipped. Only
#                                 for what no Debian 12 machine can provide:
#                                 anything else the test creates (in the box)
#                                 or tests/deps.sh installs
#   t_plan N                      declares N checks (before the first)
#   t_done                        prints "N passed, N failed, N skipped";
#                                 exit status
# Output of failing commands is shown, indented, under the "not ok" line.
#
# Box helpers: tests/box.sh (sourced here; see it for the details):
#   box_up NAME      starts the box, exports TESTBOX_* and SSH_ARGS (the
#                    stagehand connection options for the box); every box
#                    and cache server is torn down at exit
#   box_exec cmd...  runs cmd as root inside the box
#   box_snapshot     a listing of the box's overlay upper dir; two
#                    snapshots differ iff the box changed
#   caches_make FILE, caches_serve WWW ADDR (sets CACHE_URL): the signed
#                    test caches, built and served
#   sh_run ARGS...   runs "$STAGEHAND" ARGS... with stdout/stderr captured
#                    in $T/out and $T/err and its exit code in $RC
#   rc_is N          the last sh_run exited N (else shows its output)
#   run REPORT M     sh_run run M against the box, report in $T/REPORT
#   jr DIR FILTER    jq -r FILTER over DIR/results.json

set -u

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STAGEHAND=${STAGEHAND:-$TOP/stagehand}
case $STAGEHAND in /*) ;; *) STAGEHAND=$TOP/$STAGEHAND ;; esac
# shellcheck source=tests/box.sh
. "$TOP/tests/box.sh"
T=$(mktemp -d "${TMPDIR:-/tmp}/stagehand-test.XXXXXX")
export NO_COLOR=1
_t_n=0
_t_pass=0
_t_fail=0
_t_skip=0

_t_cleanup() {
	box_teardown
	rm -rf "$T"
}
trap _t_cleanup EXIT

_t_report() { # status desc logfile
	_t_n=$((_t_n + 1))
	if [ "$1" = ok ]; then
		_t_pass=$((_t_pass + 1))
		echo "ok $_t_n - $2"
	else
		_t_fail=$((_t_fail + 1))
		echo "not ok $_t_n - $2"
		if [ -n "${3:-}" ] && [ -s "$3" ]; then
			tail -n 40 "$3" | sed 's/^/#   /'
		fi
	fi
}

t_pass() { _t_report ok "$1"; }
t_skip() {
	_t_n=$((_t_n + 1))
	_t_skip=$((_t_skip + 1))
	echo "ok $_t_n - $1 # SKIP ${2:-}"
}
t_not() { _t_report fail "$1" "${2:-}"; }

t_ok() {
	local d=$1
	shift
	if "$@" >"$T/.log" 2>&1; then _t_report ok "$d"; else _t_report fail "$d" "$T/.log"; fi
}

t_fail() {
	local d=$1
	shift
	if "$@" >"$T/.log" 2>&1; then _t_report fail "$d" "$T/.log"; else _t_report ok "$d"; fi
}

t_exit() {
	local want=$1 d=$2 rc=0
	shift 2
	"$@" >"$T/.log" 2>&1 || rc=$?
	if [ "$rc" = "$want" ]; then
		_t_report ok "$d"
	else
		echo "exit $rc, wanted $want" >>"$T/.log"
		_t_report fail "$d" "$T/.log"
	fi
}

# t_plan N: the script runs N checks (TAP "1..N"); declared before the
# first check, so that tests/run.sh and t_done count a script that stops
# early as failed.
_t_plan=""
t_plan() {
	_t_plan=$1
	echo "1..$1"
}

t_done() {
	if [ -n "$_t_plan" ] && [ "$_t_n" != "$_t_plan" ]; then
		_t_report fail "planned $_t_plan checks, ran $((_t_n))"
	fi
	echo "$_t_pass passed, $_t_fail failed, $_t_skip skipped"
	[ "$_t_fail" = 0 ]
}

# Unique per test process, short (box names are at most 12 characters).
box_name() {
	printf 't%s%04x' "${1:-b}" $(($$ % 65536))
}

sh_run() {
	RC=0
	"$STAGEHAND" "$@" >"$T/out" 2>"$T/err" || RC=$?
}

# jq over a report: jr DIR FILTER
jr() {
	jq -r "$2" "$1/results.json"
}

# has_text WANT CMD...: CMD's output contains the fixed string WANT;
# otherwise shows what it printed (a failed check then says what it got).
has_text() {
	local want=$1 got
	shift
	got=$("$@" 2>&1)
	case $got in *"$want"*) return 0 ;; esac
	printf 'wanted: %s\ngot: %s\n' "$want" "$got"
	return 1
}

# rc_is N: the last sh_run exited N; otherwise show its output.
rc_is() {
	[ "$RC" = "$1" ] && return 0
	echo "exit $RC, wanted $1"
	cat "$T/out" "$T/err"
	return 1
}

# run REPORT MANIFEST [ARGS...]: `stagehand run` against the box, with
# the report in $T/REPORT (then: changed_count REPORT, status_of REPORT I).
run() {
	local r=$1 m=$2
	shift 2
	sh_run run "$m" "${SSH_ARGS[@]}" --report "$T/$r" "$@"
}
changed_count() { jr "$T/$1" '[.steps[] | select(.status == "changed")] | length'; }
status_of() { jr "$T/$1" ".steps[$2].status"; }
