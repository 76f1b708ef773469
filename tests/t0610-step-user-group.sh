#!/usr/bin/env bash
# The user and group step kinds against the real test box: groups with and
# without a gid, a system user with its home, exact and appended
# supplementary groups, absent users and groups; a second run changes
# nothing; plan reports what would change and changes nothing; a gid change
# and a groups change are reported line by line; a gid clash fails naming
# groupadd's reason; bad names are refused offline with file:line:col.
. "$(dirname "$0")/lib.sh"
t_plan 64

# rc_is N: the last sh_run exited N; shows its output when not.

box_up "$(box_name ug)" || { t_not "test box comes up"; t_done; exit 1; }

# Accounts the steps will find already there.
box_exec sh -c 'groupadd tgonegrp && useradd -M tgone &&
	useradd -m -G video tbob' ||
	t_not "box accounts are prepared"

cat >"$T/ug.yml" <<'YML'
stagehand: 1
stage: users
vars:
  home: /var/lib/tpostgres
steps:
  - name: ssl group
    group: { name: tsslcert, gid: 4101, system: true }
  - name: postgres group
    group: { name: tpostgres, system: true }
  - name: postgres user
    user:
      name: tpostgres
      system: true
      group: tpostgres
      groups: [tsslcert]
      home: ${home}
      create_home: true
      shell: /bin/bash
      comment: PostgreSQL administrator
  - name: alice, exact groups
    user: { name: talice, groups: [audio, video], shell: /bin/sh }
  - name: bob, appended groups
    user: { name: tbob, groups: audio, append: true }
  - name: gone user
    user: { name: tgone, state: absent }
  - name: gone group
    group: { name: tgonegrp, state: absent }
YML

sh_run run "$T/ug.yml" "${SSH_ARGS[@]}" --report "$T/r1"
t_ok "the first run succeeds" rc_is 0
t_ok "every step of the first run changed something" \
	test "$(jr "$T/r1" '[.steps[].status] | unique | join(",")')" = changed
t_ok "group creation is reported with its gid" \
	test "$(jr "$T/r1" '.steps[0].changes[0]')" = "created group tsslcert (gid 4101)"
t_ok "the group has the gid" \
	test "$(box_exec getent group tsslcert | cut -d: -f3)" = 4101
t_ok "a system group without gid gets a system gid" \
	test "$(box_exec getent group tpostgres | cut -d: -f3)" -lt 1000
t_ok "user creation is reported" \
	grep -q '^created user tpostgres (uid [0-9]*)$' \
	<(jr "$T/r1" '.steps[2].changes[]')
t_ok "the uid is a detail of the step" \
	test "$(jr "$T/r1" '.steps[2].details.uid')" = \
	"$(box_exec id -u tpostgres)"
t_ok "the system user has a system uid" \
	test "$(box_exec id -u tpostgres)" -lt 1000
t_ok "the system user has its primary and supplementary groups" \
	test "$(box_exec id -Gn tpostgres)" = "tpostgres tsslcert"
t_ok "the system user has home, shell and comment" \
	test "$(box_exec getent passwd tpostgres | cut -d: -f5-)" = \
	"PostgreSQL administrator:/var/lib/tpostgres:/bin/bash"
t_ok "the home directory exists and belongs to the user" \
	test "$(box_exec stat -c %U:%G /var/lib/tpostgres)" = tpostgres:tpostgres
t_ok "exact groups: alice is in exactly audio and video" \
	test "$(box_exec id -Gn talice)" = "talice audio video"
t_ok "a non-system user gets a home by default" box_exec test -d /home/talice
t_ok "append: bob keeps video and gains audio" \
	test "$(box_exec id -Gn tbob)" = "tbob audio video"
t_ok "append is reported as an addition only" \
	test "$(jr "$T/r1" '.steps[4].changes | join("|")')" = "groups tbob: +audio"
t_fail "the absent user is gone" box_exec getent passwd tgone
t_ok "removal is reported" \
	test "$(jr "$T/r1" '.steps[5].changes[0]')" = "removed user tgone"
t_fail "the absent group is gone" box_exec getent group tgonegrp

sh_run run "$T/ug.yml" "${SSH_ARGS[@]}" --report "$T/r2"
t_ok "the second run succeeds" rc_is 0
t_ok "the second run reports every step ok" \
	test "$(jr "$T/r2" '[.steps[].status] | unique | join(",")')" = ok
t_ok "the second run lists no changes" \
	test "$(jr "$T/r2" '[.steps[].changes[]] | length')" = 0

# The same accounts, changed: a new gid, one group fewer, another shell.
sed -e 's/gid: 4101/gid: 4190/' -e 's/groups: \[audio, video\]/groups: [audio]/' \
	-e 's|shell: /bin/bash|shell: /bin/sh|' "$T/ug.yml" >"$T/ug2.yml"

before=$(box_snapshot)
sh_run plan "$T/ug2.yml" "${SSH_ARGS[@]}" --report "$T/p"
t_ok "plan succeeds" rc_is 0
t_ok "plan marks the gid change" \
	test "$(jr "$T/p" '.steps[0].status')" = would_change
t_ok "plan names the gid change" \
	test "$(jr "$T/p" '.steps[0].changes[0]')" = "gid tsslcert: 4101 -> 4190"
t_ok "plan names the shell change" \
	test "$(jr "$T/p" '.steps[2].changes | join("|")')" = \
	"shell tpostgres: /bin/bash -> /bin/sh"
t_ok "plan names the removed supplementary group" \
	test "$(jr "$T/p" '.steps[3].changes | join("|")')" = "groups talice: -video"
t_ok "plan leaves the rest ok" \
	test "$(jr "$T/p" '[.steps[4,5,6].status] | unique | join(",")')" = ok
t_ok "plan changed nothing on the box" test "$before" = "$(box_snapshot)"

sh_run run "$T/ug2.yml" "${SSH_ARGS[@]}" --report "$T/r3"
t_ok "the changed manifest applies" rc_is 0
t_ok "groupmod moved the gid" \
	test "$(box_exec getent group tsslcert | cut -d: -f3)" = 4190
t_ok "the user's supplementary group follows the gid change" \
	test "$(box_exec id -Gn tpostgres)" = "tpostgres tsslcert"
t_ok "usermod changed the shell" \
	test "$(box_exec getent passwd tpostgres | cut -d: -f7)" = /bin/sh
t_ok "exact groups removed video from alice" \
	test "$(box_exec id -Gn talice)" = "talice audio"
t_ok "only the three changed steps changed" \
	test "$(jr "$T/r3" '[.steps[] | select(.status == "changed") | .index] | join(",")')" = 1,3,4
sh_run run "$T/ug2.yml" "${SSH_ARGS[@]}" --report "$T/r4"
t_ok "and the run after that changes nothing" \
	test "$(jr "$T/r4" '[.steps[].status] | unique | join(",")')" = ok

cat >"$T/clash.yml" <<'YML'
stagehand: 1
stage: clash
steps:
  - name: gid taken
    group: { name: tclash, gid: 4190 }
YML
sh_run run "$T/clash.yml" "${SSH_ARGS[@]}" --report "$T/r5"
t_ok "a gid clash fails the step" rc_is 1
t_ok "the failure carries groupadd's reason" \
	grep -q "GID '4190' already exists" <(jr "$T/r5" '.steps[0].error.message')
t_fail "and creates no group" box_exec getent group tclash

# ---- issue 11: every combination of `group` given or not, `system` or
# not, and a group of the user's own name existing (made by a group step
# just before, the natural manifest) or not. Names: tm + g(group given) or
# n(not) + s(system) or r(regular) + e(own group exists) or x(not).
box_exec groupadd tmgiven || t_not "the given group is prepared"
{
	printf 'stagehand: 1\nstage: user-group-matrix\nsteps:\n'
	for g in g n; do for sy in s r; do for e in e x; do
		u=tm$g$sy$e
		[ $e = e ] && printf '  - name: group %s\n    group: { name: %s }\n' "$u" "$u"
		printf '  - name: user %s\n    user: { name: %s' "$u" "$u"
		[ $g = g ] && printf ', group: tmgiven'
		[ $sy = s ] && printf ', system: true'
		printf ' }\n'
	done; done; done
} >"$T/matrix.yml"
sh_run run "$T/matrix.yml" "${SSH_ARGS[@]}" --report "$T/rm1"
t_ok "the matrix: every combination is created" rc_is 0
# primary group name of user $1
pgroup() { box_exec sh -c "getent group \$(id -g $1) | cut -d: -f1"; }
for g in g n; do for sy in s r; do for e in e x; do
	u=tm$g$sy$e
	if [ $g = g ]; then want=tmgiven; else want=$u; fi
	t_ok "$u: the primary group is $want" test "$(pgroup $u)" = "$want"
	if [ $sy = s ]; then
		t_ok "$u: a system uid" test "$(box_exec id -u $u)" -lt 1000
	else
		t_ok "$u: a regular uid" test "$(box_exec id -u $u)" -ge 1000
	fi
done; done; done
t_ok "without group:, the existing own group is the primary group (same gid)" \
	test "$(box_exec id -g tmnre)" = "$(box_exec getent group tmnre | cut -d: -f3)"
t_fail "with group: given, no group of the user's name is made" \
	box_exec getent group tmgrx
t_fail "nor for a system user" box_exec getent group tmgsx
t_ok "an own group that existed is left alone when group: is given" \
	box_exec getent group tmgre
sh_run run "$T/matrix.yml" "${SSH_ARGS[@]}" --report "$T/rm2"
t_ok "the matrix: the second run succeeds" rc_is 0
t_ok "the matrix: the second run changes nothing" \
	test "$(changed_count rm2)" = 0

cat >"$T/bad.yml" <<'YML'
stagehand: 1
stage: bad
steps:
  - name: bad user
    user: { name: Root, groups: [audio] }
YML
sh_run check "$T/bad.yml"
t_ok "an invalid user name is refused offline (65)" rc_is 65
t_ok "with file:line:col" grep -q "bad.yml:5:" "$T/err"

cat >"$T/bad2.yml" <<'YML'
stagehand: 1
stage: bad
steps:
  - name: absent with fields
    user: { name: tx, state: absent, shell: /bin/sh }
YML
sh_run check "$T/bad2.yml"
t_ok "fields that mean nothing for an absent user are refused" \
	rc_is 65

t_done
