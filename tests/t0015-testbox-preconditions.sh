#!/usr/bin/env bash
# Preconditions a user hits before any test runs stop at once with a
# message that names the fix: the test box, tests/run.sh (make check) and
# tests/demo.sh (make demo) as a non-root user; the test box where no
# network namespace can be made (no CAP_SYS_ADMIN, as in a container that
# is not privileged). Nothing of a box is left behind.
. "$(dirname "$0")/lib.sh"
t_plan 9

# A copy of the scripts that user nobody can read (the checkout may be
# under /root, mode 0700).
co=$T/co
mkdir -p "$co/tests/testbox"
cp "$TOP/tests/run.sh" "$TOP/tests/demo.sh" "$co/tests/"
cp "$TESTBOX" "$co/tests/testbox/"
chmod -R a+rX "$T"
as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
# outcome FILE CMD...: runs CMD, output in FILE, prints the exit code.
outcome() {
	local f=$1 rc=0
	shift
	"$@" >"$f" 2>&1 </dev/null || rc=$?
	echo "$rc"
}
name=$(box_name pc)

rc=$(outcome "$T/box-user" as_nobody "$co/tests/testbox/testbox" up "$name")
t_ok "testbox up as a non-root user exits 1" test "$rc" = 1
t_ok "and says to run it as root, with sudo" \
	grep -q 'testbox: must run as root (.*): sudo .*testbox up' "$T/box-user"

rc=$(outcome "$T/box-cap" setpriv --bounding-set=-sys_admin \
	--inh-caps=-sys_admin "$TESTBOX" up "$name")
t_ok "testbox up without CAP_SYS_ADMIN exits 1" test "$rc" = 1
t_ok "and names the missing namespaces and the fix" \
	grep -q 'cannot create network and mount namespaces.*CAP_SYS_ADMIN.*--privileged' "$T/box-cap"
t_ok "and leaves no state, no netns, no interface behind" \
	sh -c "! test -e /run/stagehand-testbox/$name &&
		! test -e /run/netns/sh-tb-$name && ! ip link show tb-$name" 2>/dev/null

rc=$(outcome "$T/run-user" as_nobody bash "$co/tests/run.sh" --stagehand /bin/true)
t_ok "tests/run.sh (make check) as a non-root user exits 2" test "$rc" = 2
t_ok "and says sudo make check, before any test ran" \
	sh -c 'grep -q "need root.*sudo make check" "$1" && ! grep -q passed "$1"' _ "$T/run-user"

rc=$(outcome "$T/demo-user" as_nobody bash "$co/tests/demo.sh")
t_ok "tests/demo.sh (make demo) as a non-root user exits 2" test "$rc" = 2
t_ok "and says sudo make demo" grep -q 'run as root (sudo make demo)' "$T/demo-user"

t_done
