#!/usr/bin/env bash
# The postgres step kind against the real test box, with Debian's
# PostgreSQL 15 (the box shares the host's /usr): plan changes nothing;
# initdb (locale, encoding, auth, --username, --allow-group-access) and
# start (socket dir, port, server options) make a cluster that accepts
# connections as the chosen superuser; a second run is all ok; restart
# applies new options; stop, and stop again, is ok; a start whose readiness
# ping goes over TCP works; a password-auth cluster (password a secret) is
# pinged with the password, which appears in no report; a cluster that
# cannot start fails with the server log's lines in the error; a start of
# a directory with no cluster fails clearly; keys that do not apply to an
# action are manifest errors.
# shellcheck disable=SC2016 # $ in single quotes is for the box's shell
. "$(dirname "$0")/lib.sh"
t_plan 43

statuses() { jr "$T/$1" '[.steps[].status] | join(",")'; }
# psql in the box as postgres, to check what the steps did
bpsql() { # port sql
	box_exec sudo -n -u postgres psql -X -At -h /run/stagehand-pg -p "$1" \
		-U supabase_admin -d postgres -c "$2"
}

box_up "$(box_name pg)" || { t_not "test box comes up"; t_done; exit 1; }

BIN=/usr/lib/postgresql/15/bin
D=/var/lib/postgresql/t0850
cat >"$T/pg.yml" <<YML
stagehand: 1
stage: postgres-step
steps:
  - name: socket dir
    path: {path: /run/stagehand-pg, state: directory, owner: postgres, group: postgres, mode: "0755"}
  - name: initdb
    postgres:
      action: initdb
      data_dir: $D
      bin_dir: $BIN
      locale: C.UTF-8
      encoding: UTF8
      auth: {local: trust, host: trust}
      username: supabase_admin
      allow_group_access: true
      options: [--data-checksums]
  - name: start
    postgres:
      action: start
      data_dir: $D
      bin_dir: $BIN
      socket_dir: /run/stagehand-pg
      port: 5433
      username: supabase_admin
      options: ["-c listen_addresses=''", "-c work_mem=3MB"]
YML

# -- plan first: everything would change, nothing does -----------------------
before=$(box_snapshot)
sh_run plan "$T/pg.yml" "${SSH_ARGS[@]}" --report "$T/p0"
t_ok "plan succeeds before the cluster exists" rc_is 0
t_ok "plan says initdb and start would change" \
	test "$(statuses p0)" = would_change,would_change,would_change
t_ok "plan names the initdb it would do" \
	grep -qx "initdb $D" <(jr "$T/p0" '.steps[1].changes[]')
t_ok "plan changed nothing on the box" test "$before" = "$(box_snapshot)"

# -- run: initdb + start -------------------------------------------------------
run r1 "$T/pg.yml"
t_ok "initdb and start succeed" rc_is 0
t_ok "all three steps changed" test "$(statuses r1)" = changed,changed,changed
t_ok "the start step reports a running cluster of major 15" \
	test "$(jr "$T/r1" '.steps[2].details | "\(.state) \(.pg_version)"')" = "running 15"
t_ok "start waited for a libpq connection through the SSH session" \
	test "$(jr "$T/r1" '.steps[2].details.ping_tries')" -ge 1
t_ok "the cluster belongs to postgres" \
	test "$(box_exec stat -c %U "$D/PG_VERSION")" = postgres
t_ok "allow_group_access made the data dir 0750" \
	test "$(box_exec stat -c %a "$D")" = 750
t_ok "the bootstrap superuser is supabase_admin" \
	test "$(bpsql 5433 'select rolname from pg_roles where oid = 10')" = supabase_admin
t_ok "initdb took locale, encoding and extra options (checksums)" \
	test "$(bpsql 5433 "select datcollate || ' ' || pg_encoding_to_char(encoding) from pg_database where datname = 'postgres'") $(bpsql 5433 'show data_checksums')" = "C.UTF-8 UTF8 on"
t_ok "the server options were applied (work_mem, socket dir, port)" \
	test "$(bpsql 5433 'show work_mem')" = 3MB
t_ok "the server log went to the default log file in the data dir" \
	box_exec grep -q "database system is ready" "$D/stagehand-postgres.log"

# -- idempotence -------------------------------------------------------------
run r2 "$T/pg.yml"
t_ok "a second run succeeds" rc_is 0
t_ok "a second run changes nothing (initdb and start are ok)" \
	test "$(statuses r2)" = ok,ok,ok
t_ok "the running cluster is still pinged on the second run" \
	test "$(jr "$T/r2" '.steps[2].details.state')" = running

# -- restart, stop, stop again -------------------------------------------------
cat >"$T/restart.yml" <<YML
stagehand: 1
stage: postgres-restart
steps:
  - name: restart with new options
    postgres:
      action: restart
      data_dir: $D
      bin_dir: $BIN
      socket_dir: /run/stagehand-pg
      port: 5433
      username: supabase_admin
      mode: fast
      options: ["-c listen_addresses=''", "-c work_mem=7MB"]
  - name: status
    postgres: {action: status, data_dir: $D, bin_dir: $BIN}
  - name: stop
    postgres: {action: stop, data_dir: $D, bin_dir: $BIN}
  - name: stop again
    postgres: {action: stop, data_dir: $D, bin_dir: $BIN}
YML
old_pid=$(box_exec head -n 1 "$D/postmaster.pid")
run r3 "$T/restart.yml"
t_ok "restart, status, stop, stop succeed" rc_is 0
t_ok "restart changed, status ok, stop changed, the second stop ok" \
	test "$(statuses r3)" = changed,ok,changed,ok
t_ok "status saw the restarted server (a new pid)" \
	test "$(jr "$T/r3" '.steps[1].details | "\(.state) \(.pid != "'"$old_pid"'")"')" = "running true"
t_ok "the cluster is stopped (no postmaster.pid)" box_exec test ! -e "$D/postmaster.pid"
t_ok "the second stop reports the state it found" \
	test "$(jr "$T/r3" '.steps[3].details.state')" = stopped

# -- restart applied its options: start again to look -------------------------
cat >"$T/tcp.yml" <<YML
stagehand: 1
stage: postgres-tcp
steps:
  - name: start, ping over TCP
    postgres:
      action: start
      data_dir: $D
      bin_dir: $BIN
      port: 5434
      ping_user: supabase_admin
      options: ["-c listen_addresses=127.0.0.1", "-c unix_socket_directories=/run/stagehand-pg"]
YML
run r4 "$T/tcp.yml"
t_ok "a start pinged through a direct-tcpip tunnel to 127.0.0.1 succeeds" rc_is 0
t_ok "the server accepts TCP connections on 127.0.0.1:5434" \
	box_exec sudo -n -u postgres psql -X -At -h 127.0.0.1 -p 5434 -U supabase_admin -d postgres -c 'select 1'

# -- a cluster that cannot start ------------------------------------------------
cat >"$T/bad.yml" <<YML
stagehand: 1
stage: postgres-bad
steps:
  - name: stop
    postgres: {action: stop, data_dir: $D, bin_dir: $BIN}
  - name: start with a bogus setting
    postgres:
      action: start
      data_dir: $D
      bin_dir: $BIN
      socket_dir: /run/stagehand-pg
      options: ["-c shared_buffers=bogus"]
  - name: never runs
    postgres: {action: status, data_dir: $D, bin_dir: $BIN}
YML
run r5 "$T/bad.yml"
t_ok "a cluster that cannot start fails the run" rc_is 1
t_ok "the error says the server did not start and names the log" \
	grep -qF "start $D: the server did not start; $D/stagehand-postgres.log:" \
	<(jr "$T/r5" '.steps[1].error.message')
t_ok "the error carries the server log's FATAL line" \
	grep -qF 'FATAL:  invalid value for parameter "shared_buffers": "bogus"' \
	<(jr "$T/r5" '.steps[1].error.message')
t_ok "the error shows only this attempt's log lines" \
	test "$(jr "$T/r5" '.steps[1].error.message' | grep -c 'ready to accept')" = 0
t_ok "the terminal shows the log line too" grep -qF 'shared_buffers": "bogus"' "$T/out"
t_ok "the terminal shows it once, not again as output ($(grep -cF 'shared_buffers": "bogus"' "$T/out"))" \
	test "$(grep -cF 'shared_buffers": "bogus"' "$T/out")" = 1
t_ok "later steps did not run" test "$(jr "$T/r5" '.steps[2].status')" = not_run

# -- no cluster there -------------------------------------------------------------
cat >"$T/absent.yml" <<YML
stagehand: 1
stage: postgres-absent
steps:
  - name: start nothing
    postgres: {action: start, data_dir: /var/lib/postgresql/none, bin_dir: $BIN}
YML
run r6 "$T/absent.yml"
t_ok "starting a directory with no cluster fails" rc_is 1
t_ok "the error says there is no cluster and what to do" \
	grep -qF "/var/lib/postgresql/none holds no cluster (no PG_VERSION): initdb it first" \
	<(jr "$T/r6" '.steps[0].error.message')
sh_run plan "$T/absent.yml" "${SSH_ARGS[@]}" --report "$T/p6"
t_ok "plan of the same start (a cluster an earlier step would make) succeeds" rc_is 0

# -- password auth: initdb with a secret password, ping with it -----------------
secret="pw-$RANDOM-t0850-$$"
export STAGEHAND_VAR_pg_password=$secret
cat >"$T/pw.yml" <<YML
stagehand: 1
stage: postgres-password
secrets: [pg_password]
steps:
  - name: initdb with scram
    postgres:
      action: initdb
      data_dir: /var/lib/postgresql/t0850pw
      bin_dir: $BIN
      auth: scram-sha-256
      username: supabase_admin
      password: \${pg_password}
  - name: start
    postgres:
      action: start
      data_dir: /var/lib/postgresql/t0850pw
      bin_dir: $BIN
      socket_dir: /run/stagehand-pg
      port: 5435
      username: supabase_admin
      password: \${pg_password}
  - name: ping as a role that does not exist
    postgres:
      action: start
      data_dir: /var/lib/postgresql/t0850pw
      bin_dir: $BIN
      socket_dir: /run/stagehand-pg
      port: 5435
      ping_user: nobody_here
      password: \${pg_password}
      timeout: 2
YML
run r7 "$T/pw.yml"
t_ok "the password cluster is made and started, the ping then fails" rc_is 1
t_ok "initdb and start with the password succeeded" \
	test "$(jr "$T/r7" '[.steps[0,1].status] | join(",")')" = changed,changed
t_ok "the server really asks for the password" \
	box_exec sh -c "sudo -n -u postgres psql -X -w -h /run/stagehand-pg -p 5435 -U supabase_admin -d postgres -c 'select 1' 2>&1 | grep -q 'password'"
t_ok "a ping that cannot log in fails after the timeout, with the server's reason" \
	grep -qE "did not accept connections as 'nobody_here' .* within 2 s: .*password authentication failed for user \"nobody_here\"" \
	<(jr "$T/r7" '.steps[2].error.message')
t_exit 1 "the password appears nowhere in the report" grep -rlF -- "$secret" "$T/r7"
t_exit 1 "nor on the terminal" grep -lF -- "$secret" "$T/out" "$T/err"
unset STAGEHAND_VAR_pg_password
box_exec sudo -n -u postgres $BIN/pg_ctl -D /var/lib/postgresql/t0850pw -m immediate stop >/dev/null 2>&1

# -- manifest validation ---------------------------------------------------------
cat >"$T/badkeys.yml" <<YML
stagehand: 1
stage: postgres-badkeys
steps:
  - name: locale on start
    postgres: {action: start, data_dir: $D, locale: C}
YML
sh_run check "$T/badkeys.yml"
t_ok "a key that does not apply to the action is a manifest error" rc_is 65
t_ok "the error names the key, the action and the position" \
	grep -qE 'badkeys.yml:5:[0-9]+: locale does not apply to action start' "$T/err"
sed -i 's/action: start, data_dir: [^,]*, locale: C/action: begin, data_dir: \/d/' "$T/badkeys.yml"
sh_run check "$T/badkeys.yml"
t_ok "an unknown action is a manifest error listing the actions" \
	grep -q "action must be initdb, start, stop, restart or status, not 'begin'" "$T/err"

box_exec sudo -n -u postgres $BIN/pg_ctl -D "$D" -m immediate stop >/dev/null 2>&1
t_done
