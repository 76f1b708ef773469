#!/usr/bin/env bash
# The demo stage (stages/demo.yml, with its include) on a fresh box: first
# run changes, second run changes nothing, the result is right when seen
# from outside, and the host is untouched.
. "$(dirname "$0")/lib.sh"
t_plan 15

box_up "$(box_name dm)" || { t_not "test box comes up"; t_done; exit 1; }
host_pg_config=$(stat -c %F /usr/bin/pg_config 2>/dev/null || echo missing)

sh_run run "$TOP/stages/demo.yml" "${SSH_ARGS[@]}" --report "$T/r1"
t_ok "the demo stage passes" test "$RC" = 0
t_ok "the first run changes the box" test "$(jr "$T/r1" .counts.changed)" -gt 0
sh_run run "$TOP/stages/demo.yml" "${SSH_ARGS[@]}" --report "$T/r2"
t_ok "the second run passes" test "$RC" = 0
t_ok "the second run changes nothing" test "$(jr "$T/r2" .counts.changed)" = 0
t_ok "steps from the included playbook ran first" \
	test "$(jr "$T/r2" '.steps[0].name')" = "Group ssl-cert"

t_ok "postgres is in ssl-cert" sh -c "'$TESTBOX' exec '$TESTBOX_NAME' -- id -nG postgres | grep -qw ssl-cert"
t_ok "every link in /usr/lib/postgresql/bin resolves" \
	box_exec sh -c 'n=0; for l in /usr/lib/postgresql/bin/*; do [ -e "$l" ] || exit 1; n=$((n+1)); done; [ $n -gt 10 ]'
t_ok "links go through the profile, not to the target" \
	sh -c "test \"\$('$TESTBOX' exec '$TESTBOX_NAME' -- readlink /usr/bin/psql)\" = /var/lib/postgresql/.nix-profile/bin/psql"
t_ok "pg_config from /usr/bin runs" box_exec /usr/bin/pg_config --version
t_ok "psql from /usr/bin runs" box_exec /usr/bin/psql --version
t_ok "the data dir link points at /data/pgdata" \
	sh -c "test \"\$('$TESTBOX' exec '$TESTBOX_NAME' -- readlink /var/lib/postgresql/data)\" = /data/pgdata"
t_ok "the config was uploaded with its owner and mode" \
	sh -c "test \"\$('$TESTBOX' exec '$TESTBOX_NAME' -- stat -c '%U %a' /etc/postgresql/postgresql.conf)\" = 'postgres 664'"
t_ok "the host's /usr/bin/pg_config is untouched" \
	test "$(stat -c %F /usr/bin/pg_config 2>/dev/null || echo missing)" = "$host_pg_config"
t_fail "the host has no /usr/lib/postgresql/bin" test -e /usr/lib/postgresql/bin
t_exit 0 "stagehand report passes the run" "$STAGEHAND" report "$T/r2"

t_done
