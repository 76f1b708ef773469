#!/usr/bin/env bash
# The path step kind against the real test box: directories, file
# attributes, touch, symlinks, absence and recursive ownership; the first
# run changes, the second reports ok, plan changes nothing; a missing file
# for state file and a directory in the way of a link fail.
. "$(dirname "$0")/lib.sh"
t_plan 26

box_up "$(box_name pa)" || { t_not "test box comes up"; t_done; exit 1; }

count() { jr "$T/$1" "[.steps[] | select(.status == \"$2\")] | length"; }
bstat() { box_exec stat -c "$1" "$2"; }

box_exec sh -c 'mkdir -p /srv/t530/tree/a/b && touch /srv/t530/tree/a/b/f "/srv/t530/tree/a/with space" &&
	touch /srv/t530/existing && chmod 0600 /srv/t530/existing &&
	mkdir -p /srv/t530/gone/inner && touch /srv/t530/gone/inner/x && ln -s /etc/hostname /srv/t530/tolink'

cat >"$T/p.yml" <<'YML'
stagehand: 1
stage: path
steps:
  - name: a new directory with attributes
    path: { path: "/srv/t530/new dir/sub", mode: "0750", owner: nobody, group: nogroup }
  - name: the attributes of an existing file
    path: { path: /srv/t530/existing, state: file, mode: "0644", group: nogroup }
  - name: touch a file
    path: { path: "/srv/t530/touched it's", state: touch, mode: "0600" }
  - name: a link
    path: { path: /srv/t530/link, state: link, target: "/srv/t530/new dir", owner: nobody }
  - name: repoint a link
    path: { path: /srv/t530/tolink, state: link, target: /etc/os-release }
  - name: remove a tree
    path: { path: /srv/t530/gone, state: absent }
  - name: recursive ownership
    path: { path: /srv/t530/tree, owner: nobody, group: nogroup, recursive: true }
  - name: set-id bits survive a chown
    path: { path: /srv/t530/sgid, mode: "2775", group: nogroup }
YML

before=$(box_snapshot)
sh_run plan "$T/p.yml" "${SSH_ARGS[@]}" --report "$T/p1"
after=$(box_snapshot)
t_ok "plan succeeds" rc_is 0
t_ok "plan reports every step as would_change" test "$(count p1 would_change)" = 8
t_ok "plan lists the changes it would make" \
	sh -c "jq -r '.steps[0].changes[]' '$T/p1/results.json' | grep -qx 'create directory /srv/t530/new dir/sub'"
t_ok "plan changes nothing on the box" test "$before" = "$after"

run r1 "$T/p.yml"
t_ok "the first run succeeds" rc_is 0
t_ok "every step reports changed on the first run" test "$(count r1 changed)" = 8
t_ok "the directory exists with its attributes" \
	test "$(bstat '%F %a %U %G' "/srv/t530/new dir/sub")" = "directory 750 nobody nogroup"
t_ok "the existing file's attributes changed" test "$(bstat '%a %G' /srv/t530/existing)" = "644 nogroup"
t_ok "touch created an empty file" test "$(bstat '%F %s %a' "/srv/t530/touched it's")" = "regular empty file 0 600"
t_ok "the link points at its target" test "$(box_exec readlink /srv/t530/link)" = "/srv/t530/new dir"
t_ok "the link itself is owned as asked" test "$(bstat %U /srv/t530/link)" = nobody
t_ok "the link was repointed" test "$(box_exec readlink /srv/t530/tolink)" = /etc/os-release
t_ok "the tree is gone" box_exec test ! -e /srv/t530/gone
t_ok "ownership is recursive" \
	test "$(box_exec find /srv/t530/tree ! -user nobody -o ! -group nogroup | wc -l)" = 0
t_ok "a set-gid mode is kept after the group change" test "$(bstat %a /srv/t530/sgid)" = 2775

run r2 "$T/p.yml"
t_ok "the second run succeeds" rc_is 0
t_ok "the second run reports zero changed" test "$(count r2 changed)" = 0

box_exec touch /srv/t530/tree/a/new-root-file
run r3 "$T/p.yml"
t_ok "a new file in the tree is chowned again" \
	test "$(bstat %U /srv/t530/tree/a/new-root-file)" = nobody
t_ok "only that step reports changed" test "$(count r3 changed)" = 1

cat >"$T/bad1.yml" <<'YML'
stagehand: 1
stage: path-bad
steps:
  - name: state file needs the file
    path: { path: /srv/t530/missing, state: file }
YML
run r4 "$T/bad1.yml"
t_ok "state file on a missing file fails" rc_is 1
t_ok "the error says it does not exist" \
	sh -c "jq -r '.steps[0].error' '$T/r4/results.json' | grep -q 'does not exist'"

cat >"$T/bad2.yml" <<'YML'
stagehand: 1
stage: path-bad
steps:
  - name: a link over a directory
    path: { path: "/srv/t530/new dir", state: link, target: /tmp }
YML
run r5 "$T/bad2.yml"
t_ok "a link never replaces a directory" rc_is 1
t_ok "the directory is still there" box_exec test -d "/srv/t530/new dir/sub"

cat >"$T/bad3.yml" <<'YML'
stagehand: 1
stage: path-bad
steps:
  - name: remove root
    path: { path: //, state: absent }
YML
sh_run check "$T/bad3.yml"
t_ok "removing / is an invalid manifest" rc_is 65
cat >"$T/bad4.yml" <<'YML'
stagehand: 1
stage: path-bad
steps:
  - name: relative
    path: { path: srv/x }
  - name: link without target
    path: { path: /srv/x, state: link }
YML
sh_run check "$T/bad4.yml"
t_ok "a relative path is an invalid manifest" rc_is 65
t_ok "the error has the position" grep -q 'bad4.yml:5:[0-9]*: .*absolute' "$T/err"

t_done
