#!/usr/bin/env bash
# `stagehand run` of every bad manifest in the corpus against a real box:
# each exits 65 with file:line:col, and the box is untouched: no login
# happened (sshd's log) and its overlay upper dir is byte-for-byte the
# same.
. "$(dirname "$0")/lib.sh"
t_plan 6

box_up "$(box_name bm)" || { t_not "test box comes up"; t_done; exit 1; }
before=$(box_snapshot)
logins_before=$(grep -c 'Accepted publickey' "$TESTBOX_STATE/sshd.log" || true)
t_ok "sshd logs logins (the check below can see one)" test "$logins_before" -ge 1

n=0
bad=0
for f in "$TOP"/tests/fixtures/manifests/bad/*.yml; do
	n=$((n + 1))
	rc=0
	"$STAGEHAND" run "$f" "${SSH_ARGS[@]}" --report "$T/r" >"$T/out" 2>"$T/err" || rc=$?
	if [ "$rc" != 65 ] || ! grep -qE '\.yml:[0-9]+:[0-9]+: ' "$T/err"; then
		bad=$((bad + 1))
		echo "# $f: exit $rc: $(head -c 300 "$T/err")"
	fi
done
t_ok "all $n bad manifests exit 65 with file:line:col under run" test "$bad" = 0
t_ok "the corpus has at least 30 manifests" test "$n" -ge 30
logins_after=$(grep -c 'Accepted publickey' "$TESTBOX_STATE/sshd.log" || true)
t_ok "no bad manifest logged in to the box" test "$logins_before" = "$logins_after"
t_ok "the box is byte-for-byte untouched" test "$before" = "$(box_snapshot)"
t_fail "no report dir is written for an invalid manifest" test -e "$T/r/results.json"

t_done
