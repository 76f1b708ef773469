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
# Box helpers (the real test box from tests/testbox/testbox):
#   box_up NAME      starts it, exports TESTBOX_* and SSH_ARGS (the
#                    stagehand connection options for the box); the box is
#                    torn down at exit
#   box_exec cmd...  runs cmd as root inside the box
#   box_snapshot     prints a listing of the box's overlay upper dir
#                    (paths, modes, owners, sizes, link targets, mtimes) so
#                    two snapshots differ iff the box changed
#   sh_run ARGS...   runs "$STAGEHAND" ARGS... with stdout/stderr captured
#                    in $T/out and $T/err and its exit code in $RC
#   rc_is N          the last sh_run exited N (else shows its output)
#   run REPORT M     sh_run run M against the box, report in $T/REPORT
#   jr DIR FILTER    jq -r FILTER over DIR/results.json

set -u

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STAGEHAND=${STAGEHAND:-$TOP/stagehand}
case $STAGEHAND in /*) ;; *) STAGEHAND=$TOP/$STAGEHAND ;; esac
TESTBOX=$TOP/tests/testbox/testbox
T=$(mktemp -d "${TMPDIR:-/tmp}/stagehand-test.XXXXXX")
export NO_COLOR=1
_t_n=0
_t_pass=0
_t_fail=0
_t_skip=0
_t_boxes=""

_t_cleanup() {
	local b
	for b in $_t_boxes; do
		"$TESTBOX" down "$b" >/dev/null 2>&1 || true
	done
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

box_up() {
	local name=$1 line
	"$TESTBOX" up "$name" >"$T/box-$name.env" 2>"$T/box-$name.err" || {
		cat "$T/box-$name.err" >&2
		return 1
	}
	_t_boxes="$_t_boxes $name"
	while IFS= read -r line; do
		case $line in TESTBOX_*=*) export "${line?}" ;; esac
	done <"$T/box-$name.env"
	SSH_ARGS=(--target "ssh://$TESTBOX_USER@$TESTBOX_HOST:$TESTBOX_PORT"
		--identity "$TESTBOX_KEY" --known-hosts "$TESTBOX_KNOWN_HOSTS")
	export TESTBOX_NAME=$name
}

box_down() {
	"$TESTBOX" down "${1:-$TESTBOX_NAME}" >/dev/null 2>&1
}

box_exec() {
	"$TESTBOX" exec "$TESTBOX_NAME" -- "$@"
}

box_snapshot() {
	(cd "$TESTBOX_UPPER" && find . -printf '%p %y %m %u:%g %s %l %T@\n' |
		LC_ALL=C sort)
}

sh_run() {
	RC=0
	"$STAGEHAND" "$@" >"$T/out" 2>"$T/err" || RC=$?
}

# jq over a report: jr DIR FILTER
jr() {
	jq -r "$2" "$1/results.json"
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
