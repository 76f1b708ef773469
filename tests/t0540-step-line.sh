#!/usr/bin/env bash
# The line step kind against the real test box: replacing the last match
# of a regexp, appending, removing, creating; lines with quotes,
# backslashes, &, / and $ arrive verbatim; the file keeps its mode and
# owner; a symlinked file is edited through the link; backups; a second
# run reports ok and plan changes nothing.
. "$(dirname "$0")/lib.sh"
t_plan 27

box_up "$(box_name li)" || { t_not "test box comes up"; t_done; exit 1; }

count() { jr "$T/$1" "[.steps[] | select(.status == \"$2\")] | length"; }

box_exec sh -c 'mkdir -p "/srv/t540/conf dir" && cd "/srv/t540/conf dir" &&
	printf "port = 5432\n# port = 1\nmax_connections = 100\nport = 5499\nshared_buffers = 1\n" > pg.conf &&
	chown nobody:nogroup pg.conf && chmod 0640 pg.conf && ln -s pg.conf link.conf &&
	printf "A=1\nB=2\nA=1\nlast line without newline" > app.env &&
	printf "keep\n1\n" > numbers'

cat >"$T/l.yml" <<'YML'
stagehand: 1
stage: line
steps:
  - name: replace the last matching line, through a symlink
    line:
      path: /srv/t540/conf dir/link.conf
      regexp: "^port *="
      line: port = 5433
      backup: true
  - name: special characters arrive verbatim
    line:
      path: /srv/t540/conf dir/pg.conf
      regexp: "^archive_command"
      line: >-
        archive_command = 'test ! -f /a/%f && cp "%p" /a/%f' \1 & $HOME \\ ${x}
  - name: append when nothing matches
    line: { path: "/srv/t540/conf dir/app.env", line: "C=3" }
  - name: remove every exact copy
    line: { path: "/srv/t540/conf dir/app.env", line: "A=1", state: absent }
  - name: remove by regexp
    line: { path: "/srv/t540/conf dir/pg.conf", regexp: "^shared_buffers", state: absent }
  - name: create a missing file
    line:
      path: /srv/t540/conf dir/new.conf
      line: created = yes
      create: true
      mode: "0600"
      owner: nobody
  - name: lines compare as strings, never as numbers
    line: { path: "/srv/t540/conf dir/numbers", line: "1.0" }
YML
sed -i 's/\${x}/$${x}/' "$T/l.yml"

before=$(box_snapshot)
sh_run plan "$T/l.yml" "${SSH_ARGS[@]}" --report "$T/p1"
after=$(box_snapshot)
t_ok "plan succeeds" rc_is 0
t_ok "plan reports every step as would_change" test "$(count p1 would_change)" = 7
t_ok "plan says which line it would replace" \
	test "$(jr "$T/p1" '.steps[0].changes[0]')" = "replace line 4 of /srv/t540/conf dir/pg.conf"
t_ok "plan changes nothing on the box" test "$before" = "$after"

run r1 "$T/l.yml"
t_ok "the first run succeeds" rc_is 0
t_ok "every step reports changed on the first run" test "$(count r1 changed)" = 7
t_ok "the last match was replaced, others kept" \
	test "$(box_exec grep port "/srv/t540/conf dir/pg.conf")" = "$(printf 'port = 5432\n# port = 1\nport = 5433')"
t_ok "a line with quotes, backslashes, &, / and \$ arrives verbatim" \
	box_exec grep -qxF "archive_command = 'test ! -f /a/%f && cp \"%p\" /a/%f' \\1 & \$HOME \\\\ \${x}" \
	"/srv/t540/conf dir/pg.conf"
t_ok "the edited file keeps its mode and owner" \
	test "$(box_exec stat -c '%a %U %G' "/srv/t540/conf dir/pg.conf")" = "640 nobody nogroup"
t_ok "the symlink is still a symlink" box_exec test -L "/srv/t540/conf dir/link.conf"
t_ok "a backup of the original was kept" \
	box_exec sh -c 'grep -qx "port = 5499" "/srv/t540/conf dir/"pg.conf.bak.*'
t_ok "appending fixes a missing final newline first" \
	test "$(box_exec cat "/srv/t540/conf dir/app.env")" = "$(printf 'B=2\nlast line without newline\nC=3')"
t_ok "removal by regexp removed the line" \
	box_exec sh -c 'test -s "$1" && ! grep -q shared_buffers "$1"' _ "/srv/t540/conf dir/pg.conf"
t_ok "the created file has its content and attributes" \
	test "$(box_exec sh -c 'cat "/srv/t540/conf dir/new.conf"; stat -c "%a %U" "/srv/t540/conf dir/new.conf"')" = \
	"$(printf 'created = yes\n600 nobody')"
t_ok "1.0 was appended although 1 is there" \
	test "$(box_exec cat "/srv/t540/conf dir/numbers")" = "$(printf 'keep\n1\n1.0')"
t_ok "no temp files are left behind" \
	test -z "$(box_exec find /srv/t540 -name '.stagehand*')"

run r2 "$T/l.yml"
t_ok "the second run succeeds" rc_is 0
t_ok "the second run reports zero changed" test "$(count r2 changed)" = 0
t_ok "the second run made no new backup" \
	test "$(box_exec sh -c 'ls "/srv/t540/conf dir/" | grep -c bak')" = 1

box_exec sh -c 'printf "x\n" > /srv/t540/nonl && printf "x" > /srv/t540/nonl2'
cat >"$T/nonl.yml" <<'YML'
stagehand: 1
stage: line-nonl
steps:
  - name: present already, no final newline
    line: { path: /srv/t540/nonl2, line: x }
YML
run r3 "$T/nonl.yml"
t_ok "a present line in a file without final newline is ok" test "$(count r3 ok)" = 1
t_ok "that file is not rewritten" test "$(box_exec od -c /srv/t540/nonl2 | head -1)" = "0000000   x"

cat >"$T/bad1.yml" <<'YML'
stagehand: 1
stage: line-bad
steps:
  - name: missing file
    line: { path: /srv/t540/missing.conf, line: x }
YML
run r4 "$T/bad1.yml"
t_ok "a missing file without create fails" rc_is 1
t_ok "the error says create: true makes it" \
	sh -c "jq -r '.steps[0].error' '$T/r4/results.json' | grep -q 'create: true'"

cat >"$T/bad2.yml" <<'YML'
stagehand: 1
stage: line-bad
steps:
  - name: broken regexp
    line: { path: /srv/x, line: x, regexp: "a(b" }
YML
sh_run check "$T/bad2.yml"
t_ok "an invalid regexp is an invalid manifest" rc_is 65
t_ok "the error points at the regexp" grep -q 'bad2.yml:5:[0-9]*: regexp' "$T/err"

secret='li"ne-$(id)-'"'q'"'-&-\-/'
export STAGEHAND_VAR_pw=$secret
cat >"$T/secret.yml" <<'YML'
stagehand: 1
stage: line-secret
secrets: [pw]
steps:
  - name: a secret line
    line: { path: /srv/t540/secret.env, line: "PASSWORD=${pw}", create: true, mode: "0600" }
YML
run r5 "$T/secret.yml"
t_ok "the secret line was written" test "$(box_exec cat /srv/t540/secret.env)" = "PASSWORD=$secret"
t_exit 1 "the secret is in no report file, stdout or stderr" \
	grep -rlF -- "$secret" "$T/r5" "$T/out" "$T/err"
unset STAGEHAND_VAR_pw

t_done
