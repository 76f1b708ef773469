#!/usr/bin/env bash
# The permissions step kind against the real test box: after the demo
# stage the test-box permission table (playbooks/permissions-testbox.yml)
# holds, every row is a test case in results.json and junit.xml, and the
# audit changes nothing (plan and run give the same rows; the box is
# unchanged); broken accounts, modes and leftovers fail the step naming
# each broken row; `order: exact` catches a reordering the default
# ignores; `missing_users` fails or skips; bad tables are refused offline
# with file:line:col.
. "$(dirname "$0")/lib.sh"
t_plan 66

# rc_is N: the last sh_run exited N; shows its output when not.
# rows DIR: "status name" per test case of the report's first step.
rows() { jr "$1" '.steps[0].tests[] | "\(.status) \(.name)"'; }
# failed DIR: the names of the failed rows, one per line.
failed() { jr "$1" '.steps[0].tests[] | select(.status == "failed") | .name'; }
# msg DIR NAME: the message of the row named NAME.
msg() { jq -r --arg n "$2" '.steps[0].tests[] | select(.name == $n) | .message' \
	"$1/results.json"; }

box_up "$(box_name pm)" || { t_not "test box comes up"; t_done; exit 1; }

sh_run run "$TOP/stages/demo.yml" "${SSH_ARGS[@]}" --report "$T/demo"
t_ok "the demo stage runs on the box" rc_is 0

# A stage that only includes the test-box table, from outside the checkout.
cat >"$T/audit.yml" <<YML
stagehand: 1
stage: audit
include: [$TOP/playbooks/permissions-testbox.yml]
YML
AUDIT=("$T/audit.yml" --include-root /)
nrows=$(grep -cE '^        [a-z_-]+: \[|^        - ' \
	"$TOP/playbooks/permissions-testbox.yml")

# ---------------------------------------------------------------- all pass
before=$(box_snapshot)
sh_run run "${AUDIT[@]}" "${SSH_ARGS[@]}" --report "$T/r1"
t_ok "the audit passes after the demo stage" rc_is 0
t_ok "the audit step is ok, not changed" \
	test "$(jr "$T/r1" '.steps[0].status')" = ok
t_ok "every row of the table is a test case ($nrows)" \
	test "$(jr "$T/r1" '.steps[0].tests | length')" = "$nrows"
t_ok "every row passed" \
	test "$(jr "$T/r1" '[.steps[0].tests[].status] | unique | join(",")')" = passed
t_ok "the postgres row names its groups" \
	grep -qx 'passed user postgres: postgres,ssl-cert' <(rows "$T/r1")
t_ok "the nixbld pattern is a row" \
	grep -qx 'passed pattern nixbld\*: only nixbld' <(rows "$T/r1")
t_ok "a path row shows what it checks" \
	grep -qx 'passed path /etc/postgresql: directory postgres:postgres 0775' \
	<(rows "$T/r1")
t_ok "an absent row is there" \
	grep -qx 'passed absent /tmp/ansible-playbook' <(rows "$T/r1")
t_ok "the rows count is a detail" \
	test "$(jr "$T/r1" '.steps[0].details.rows')" = "$nrows"
t_ok "junit.xml has one testcase per row" \
	test "$(grep -c 'classname="audit.Permission audit"' "$T/r1/junit.xml")" = "$nrows"
t_ok "junit.xml names the rows" \
	grep -q 'name="user postgres: postgres,ssl-cert"' "$T/r1/junit.xml"
t_ok "the audit changed nothing on the box" test "$before" = "$(box_snapshot)"

sh_run plan "${AUDIT[@]}" "${SSH_ARGS[@]}" --report "$T/p1"
t_ok "plan of the audit succeeds" rc_is 0
t_ok "plan reports ok, not would_change" \
	test "$(jr "$T/p1" '.steps[0].status')" = ok
t_ok "plan gives the same rows as run" \
	test "$(rows "$T/p1")" = "$(rows "$T/r1")"
t_ok "plan changed nothing on the box" test "$before" = "$(box_snapshot)"

# ---------------------------------------------------------------- breakage
# Nix's build group, made here: Debian's nix-bin creates none, and a box
# is an overlay of a host that may or may not have one (groupadd -f: keep it).
box_exec sh -c 'gpasswd -d postgres ssl-cert >/dev/null &&
	groupadd -f nixbld && useradd -M -g nixbld -G adm nixbld11 &&
	chmod 0755 /etc/postgresql && mkdir /tmp/ansible-playbook &&
	touch /tmp/tmp.leftover' ||
	t_not "the box is broken on purpose"

before=$(box_snapshot)
sh_run run "${AUDIT[@]}" "${SSH_ARGS[@]}" --report "$T/r2"
t_ok "the audit of the broken box exits 1" rc_is 1
t_ok "the audit step failed" test "$(jr "$T/r2" '.steps[0].status')" = failed
t_ok "exactly the five broken rows failed" test "$(failed "$T/r2")" = \
"user postgres: postgres,ssl-cert
pattern nixbld*: only nixbld
path /etc/postgresql: directory postgres:postgres 0775
absent /tmp/ansible-playbook
absent /tmp/tmp.*"
t_ok "the postgres row says expected vs actual" \
	test "$(msg "$T/r2" 'user postgres: postgres,ssl-cert')" = \
	"expected [postgres ssl-cert], got [postgres]; missing ssl-cert"
t_ok "the pattern row names the offending user and its groups" \
	test "$(msg "$T/r2" 'pattern nixbld*: only nixbld')" = \
	"nixbld11 in [nixbld adm]"
t_ok "the path row names the wrong mode" \
	test "$(msg "$T/r2" 'path /etc/postgresql: directory postgres:postgres 0775')" = \
	"expected directory postgres:postgres 0775, got directory postgres:postgres 0755"
t_ok "the absent row names what exists" \
	test "$(msg "$T/r2" 'absent /tmp/tmp.*')" = "exists: /tmp/tmp.leftover"
t_ok "the step error counts and names the failures" \
	grep -q "^5 of $nrows permission rows failed: user postgres: expected \[postgres ssl-cert\], got \[postgres\]; missing ssl-cert; pattern nixbld\*: nixbld11 in \[nixbld adm\]; " \
	<(jr "$T/r2" '.steps[0].error.message')
t_ok "the terminal shows the error" grep -q '5 of [0-9]* permission rows failed' "$T/out"
t_ok "the terminal lists each failed row" \
	test "$(grep -c '^ *not ok: ' "$T/out")" = 5
t_ok "junit.xml has a failure per broken row" \
	test "$(grep -c '<failure message="\(expected\|exists\|nixbld11\)' "$T/r2/junit.xml")" = 5
t_ok "the rows that still hold passed" \
	test "$(jr "$T/r2" '[.steps[0].tests[] | select(.status == "passed")] | length')" = \
	"$((nrows - 5))"
t_ok "the failing audit changed nothing on the box" \
	test "$before" = "$(box_snapshot)"
sh_run plan "${AUDIT[@]}" "${SSH_ARGS[@]}" --report "$T/p2"
# A plan runs before the stage's earlier steps: failing rows are what
# would change (or fail), listed, not a failed plan.
t_ok "plan of the broken box passes, reporting would_change" \
	sh -c "test $RC = 0 && test \"\$(jq -r '.steps[0].status' '$T/p2/results.json')\" = would_change"
t_ok "plan fails the same rows as run" test "$(rows "$T/p2")" = "$(rows "$T/r2")"
t_ok "plan names each failing row as a change" \
	test "$(jr "$T/p2" '[.steps[0].changes[] | select(startswith("fails now: "))] | length')" = 5

# ---------------------------------------------------------------- order
box_exec sh -c 'groupadd tga && groupadd tgb && useradd -M -G tga,tgb tord' ||
	t_not "an account in two groups is made"
cat >"$T/order.yml" <<'YML'
stagehand: 1
stage: order
steps:
  - name: exact
    permissions:
      order: exact
      users: { tord: [tord, tga, tgb] }
  - name: any
    permissions:
      users: { tord: [tgb, tord, tga] }
YML
sh_run run "$T/order.yml" "${SSH_ARGS[@]}" --keep-going --report "$T/o1"
t_ok "exact order holds in /etc/group order" rc_is 0
# Move tga's line below tgb's: the same groups, another order.
box_exec sh -c 'l=$(grep "^tga:" /etc/group) && sed -i "/^tga:/d" /etc/group &&
	printf "%s\n" "$l" >>/etc/group' || t_not "/etc/group is reordered"
t_ok "id -Gn now lists tgb before tga" \
	test "$(box_exec id -Gn tord)" = "tord tgb tga"
sh_run run "$T/order.yml" "${SSH_ARGS[@]}" --keep-going --report "$T/o2"
t_ok "order: exact fails after the reordering" rc_is 1
t_ok "the exact row says it is the order" \
	test "$(jr "$T/o2" '.steps[0].tests[0].message')" = \
	"expected [tord tga tgb] in this order, got [tord tgb tga] (same groups, other order)"
t_ok "the default order ignores it" \
	test "$(jr "$T/o2" '.steps[1].status')" = ok

# ---------------------------------------------------------------- missing
cat >"$T/missing.yml" <<'YML'
stagehand: 1
stage: missing
steps:
  - name: table
    permissions:
      users:
        postgres: [postgres]
        ubuntu: [ubuntu, adm]
YML
sh_run run "$T/missing.yml" "${SSH_ARGS[@]}" --report "$T/m1"
t_ok "a missing user fails by default" rc_is 1
t_ok "the error names the missing user" \
	grep -q 'user ubuntu: no such user' <(jr "$T/m1" '.steps[0].error.message')
sed 's/^      users:/      missing_users: skip\n      users:/' "$T/missing.yml" >"$T/skip.yml"
sh_run run "$T/skip.yml" "${SSH_ARGS[@]}" --report "$T/m2"
t_ok "missing_users: skip passes" rc_is 0
t_ok "missing_users: skip marks the row skipped" \
	test "$(jr "$T/m2" '.steps[0].tests[1].status')" = skipped
t_ok "the skipped row is skipped in junit.xml" \
	grep -q '<skipped message="no such user (missing_users: skip)"' "$T/m2/junit.xml"
t_ok "the user that exists is still checked" \
	test "$(jr "$T/m2" '.steps[0].tests[0].status')" = passed
t_ok "the skipped row is counted as a detail" \
	test "$(jr "$T/m2" '.steps[0].details.skipped')" = 1

# ---------------------------------------------------------------- bad tables
# bad NAME EXPECTED-MESSAGE-REGEX YAML-BODY: check exits 65 with file:line:col.
bad() {
	printf 'stagehand: 1\nstage: bad\nsteps:\n  - name: audit\n    permissions:\n%s\n' \
		"$3" >"$T/bad-$1.yml"
	sh_run run "$T/bad-$1.yml" "${SSH_ARGS[@]}" --report "$T/bad-$1"
	t_ok "bad table ($1) exits 65" rc_is 65
	t_ok "bad table ($1) is reported at file:line:col" \
		grep -qE "bad-$1\.yml:[0-9]+:[0-9]+: .*$2" "$T/err"
}
before=$(box_snapshot)
bad unknown-key "unknown key 'colour'" \
'      users: { postgres: [postgres] }
      colour: red'
bad unknown-path-key "unknown key 'recurse'" \
'      paths: [ { path: /etc, recurse: true } ]'
bad mode-not-octal "octal mode" \
'      paths: [ { path: /etc, mode: "0799" } ]'
bad empty-body "nothing to check" \
'      order: exact'
bad empty-users "the table is empty" \
'      users: {}'
bad no-groups "give at least one group" \
'      users: { postgres: [] }'
bad bad-type "type must be file, directory or link" \
'      paths: [ { path: /etc, type: socket } ]'
bad bad-order "order must be any or exact" \
'      order: sorted
      users: { postgres: [postgres] }'
bad relative-absent "absolute path" \
'      absent: [tmp/x]'
bad bad-glob "invalid user pattern" \
'      patterns: [ { users: "nix bld*", only_groups: [nixbld] } ]'
t_ok "bad tables touched nothing on the box" test "$before" = "$(box_snapshot)"

t_done
