#!/usr/bin/env bash
# The sql step kind against a real PostgreSQL 15 cluster inside the test
# box, reached through the run's SSH session (no psql on the way, no port
# opened): over TCP with a password role whose password is a secret, over
# the unix socket dir with peer authentication as `become: postgres`, with
# `unless` for idempotence, per-file transactions and transaction: none;
# SQL errors report file, line and SQLSTATE; psql backslash commands are
# refused offline; remote files are read on the target; nothing is left
# behind on the controller.
# shellcheck disable=SC2016 # $ in single quotes is for SQL or the box
. "$(dirname "$0")/lib.sh"
t_plan 43

PGBIN=/usr/lib/postgresql/15/bin
FIX=$TOP/tests/fixtures/sql
[ -x "$PGBIN/initdb" ] || { t_not "PostgreSQL 15 is installed ($PGBIN)"; t_done; exit 1; }

box_up "$(box_name sql)" || { t_not "test box comes up"; t_done; exit 1; }

# ---- a cluster in the box: TCP on 127.0.0.1:5433, sockets in /tmp/pg/sock
pg_in_box() { # sql...: psql as postgres over the socket, one value per line
	box_exec su postgres -s /bin/sh -c \
		"$PGBIN/psql -X -h /tmp/pg/sock -p 5433 -d postgres -Atq -v ON_ERROR_STOP=1 -c \"\$0\"" "$1"
}
t_ok "a PostgreSQL 15 cluster starts in the box" box_exec sh -c "
	mkdir -p /tmp/pg/sock && chown -R postgres:postgres /tmp/pg &&
	su postgres -s /bin/sh -c '$PGBIN/initdb -D /tmp/pg/data -U postgres \
		-A peer --auth-host=scram-sha-256 >/tmp/pg/initdb.log 2>&1' &&
	su postgres -s /bin/sh -c \"$PGBIN/pg_ctl -D /tmp/pg/data -l /tmp/pg/log -w \
		-o '-c listen_addresses=127.0.0.1 -c port=5433 -c unix_socket_directories=/tmp/pg/sock' \
		start >/dev/null\""

secret='S3cr3t-"pw"-$(id)-'"'q'"
export STAGEHAND_VAR_app_password=$secret
sq=${secret//\'/\'\'}
t_ok "a password role exists" pg_in_box "CREATE ROLE app LOGIN PASSWORD '$sq'"

mkdir -p "$T/m/sql" "$T/tmp"
cp "$FIX"/*.sql "$T/m/sql/"
export TMPDIR=$T/tmp # the controller's private socket dirs go here

errmsg() { jr "$T/$1" ".steps[$2].error.message"; }

# ---- unix socket dir (peer auth as become: postgres), then TCP as app
cat >"$T/m/load.yml" <<'YML'
stagehand: 1
stage: sql-load
secrets: [app_password]
steps:
  - name: Grants, over the socket dir as the postgres OS user
    become: postgres
    sql:
      host: /tmp/pg/sock
      port: 5433
      files: sql/grants.sql
  - name: Schema and data over TCP as a password role
    sql:
      host: 127.0.0.1
      port: 5433
      user: app
      password: ${app_password}
      database: postgres
      files: [sql/schema.sql, sql/data.sql]
      unless: SELECT to_regclass('people') IS NOT NULL
  - name: A file that manages its own transactions
    sql:
      port: 5433
      user: app
      password: ${app_password}
      database: postgres
      files: sql/own-transaction.sql
      unless: SELECT to_regclass('own_txn') IS NOT NULL
  - name: Notices go to the step's output
    become: postgres
    sql:
      host: /tmp/pg/sock
      port: 5433
      files: sql/notice.sql
YML
cat >"$T/m/sql/grants.sql" <<'SQL'
GRANT CREATE ON SCHEMA public TO app;
SQL
run r1 "$T/m/load.yml"
t_ok "the first load succeeds" rc_is 0
t_ok "peer authentication over the socket dir ran as postgres" \
	test "$(pg_in_box "SELECT has_schema_privilege('app', 'public', 'CREATE')")" = t
t_ok "schema and data arrived over TCP" \
	test "$(pg_in_box 'SELECT count(*), people_count() FROM people')" = "100|100"
t_ok "strings with semicolons and escapes survived the splitter" \
	test "$(pg_in_box "SELECT count(*) FROM people WHERE name IN ('bob; not a statement end', 'it''s ok')")" = 2
t_ok "the tables belong to the password role" \
	test "$(pg_in_box "SELECT tableowner FROM pg_tables WHERE tablename = 'people'")" = app
t_ok "a file with its own BEGIN/COMMIT ran unwrapped" \
	test "$(pg_in_box 'SELECT count(*) FROM own_txn')" = 2
t_ok "each file that ran is listed as a change" \
	test "$(jr "$T/r1" '.steps[1].changes | length')" = 2
t_ok "the server's notice is in the step output" \
	sh -c "jq -r '.steps[3].output' '$T/r1/results.json' | grep -q 'NOTICE:  hello from the server'"

run r2 "$T/m/load.yml"
t_ok "the second load succeeds" rc_is 0
t_ok "unless makes the loads ok the second time" \
	test "$(jr "$T/r2" '[.steps[1,2].status] | join(",")')" = "ok,ok"
t_ok "an unless skip is reported" test "$(jr "$T/r2" '.steps[1].details.skipped_by')" = unless
t_ok "unless kept the data from loading twice" \
	test "$(pg_in_box 'SELECT count(*) FROM people')" = 100

# ---- plan: unless runs read-only; without it, "would run"
sh_run plan "$T/m/load.yml" "${SSH_ARGS[@]}" --report "$T/p1"
t_ok "plan succeeds" rc_is 0
t_ok "plan: unless says the schema step has nothing to do" \
	test "$(jr "$T/p1" '.steps[1].status')" = ok
t_ok "plan: a step without unless would run its file" \
	test "$(jr "$T/p1" '.steps[0].changes[0]')" = "would run sql/grants.sql"

# ---- errors: file, line, SQLSTATE; the file's transaction rolls back
cat >"$T/m/err.yml" <<'YML'
stagehand: 1
stage: sql-errors
secrets: [app_password]
steps:
  - name: ${file}
    sql:
      port: 5433
      user: app
      password: ${app_password}
      database: postgres
      files: ["sql/${file}"]
      transaction: ${txn}
YML
run e1 "$T/m/err.yml" --var file=error.sql --var txn=per_file
t_ok "an SQL error fails the run" rc_is 1
t_ok "the error names file, line and SQLSTATE" \
	test "$(errmsg e1 0)" = 'sql/error.sql:4: 42P01: relation "no_such_table" does not exist'
t_ok "the failed file's earlier statements rolled back" \
	test "$(pg_in_box "SELECT to_regclass('will_vanish') IS NULL")" = t
run e2 "$T/m/err.yml" --var file=runtime-error.sql --var txn=per_file
t_ok "an error without a position points at its statement's line" \
	test "$(errmsg e2 0)" = "sql/runtime-error.sql:3: 22012: division by zero"
run e3 "$T/m/err.yml" --var file=runtime-error.sql --var txn=none
t_ok "the same, statement by statement" \
	test "$(errmsg e3 0)" = "sql/runtime-error.sql:3: 22012: division by zero"
run e4 "$T/m/err.yml" --var file=create-database.sql --var txn=per_file
t_ok "CREATE DATABASE cannot run inside the per-file transaction" \
	sh -c "jq -r '.steps[0].error.message' '$T/e4/results.json' | grep -q '^sql/create-database.sql:2: 25001: '"
pg_in_box "ALTER ROLE app CREATEDB" >/dev/null
run e5 "$T/m/err.yml" --var file=create-database.sql --var txn=none
t_ok "transaction: none runs it on its own" rc_is 0
t_ok "the database exists" \
	test "$(pg_in_box "SELECT count(*) FROM pg_database WHERE datname = 't0810_extra'")" = 1

# ---- psql backslash commands: refused offline, with file and line
before=$(box_snapshot)
run b1 "$T/m/err.yml" --var file=backslash.sql --var txn=per_file
t_ok "a backslash command is an invalid manifest (exit 65)" rc_is 65
t_ok "the refusal names the SQL file and line" \
	grep -q "sql/backslash.sql:2: psql backslash command '.set' is not supported" "$T/err"
t_ok "the refusal also names the manifest position" grep -q "err.yml:11:" "$T/err"
t_ok "the refused run touched nothing on the box" test "$(box_snapshot)" = "$before"

# ---- remote files, read on the target as the become user
box_exec sh -c 'mkdir -p /srv/sql && printf "CREATE TABLE from_remote (a int);\nINSERT INTO from_remote VALUES (42);\n" > /srv/sql/remote.sql && chown -R postgres /srv/sql && chmod 700 /srv/sql'
cat >"$T/m/remote.yml" <<'YML'
stagehand: 1
stage: sql-remote
steps:
  - name: A file already on the target
    become: postgres
    sql:
      host: /tmp/pg/sock
      port: 5433
      remote: true
      files: /srv/sql/remote.sql
  - name: A remote file that is not there
    become: postgres
    sql:
      host: /tmp/pg/sock
      port: 5433
      remote: true
      files: /srv/sql/missing.sql
YML
run m1 "$T/m/remote.yml"
t_ok "a remote file is read as the become user and run" \
	test "$(pg_in_box 'SELECT a FROM from_remote')" = 42
t_ok "a missing remote file fails with its name" \
	sh -c "jq -r '.steps[1].error.message' '$T/m1/results.json' | grep -q '^/srv/sql/missing.sql: .*No such file'"

# ---- connection failures say why, and never show the password
wrong='not-the-Password-123'
cat >"$T/m/conn.yml" <<'YML'
stagehand: 1
stage: sql-conn
steps:
  - name: Wrong password
    sql:
      port: 5433
      user: app
      password: ${wrong}
      database: postgres
      files: sql/notice.sql
YML
run c1 "$T/m/conn.yml" --var "wrong=$wrong"
t_ok "a wrong password fails the step" rc_is 1
t_ok "the server's reason is reported" \
	sh -c "jq -r '.steps[0].error.message' '$T/c1/results.json' | grep -q 'password authentication failed for user \"app\"'"
t_exit 1 "a password (even one that is not a secret) is not in the message" \
	grep -rlF -- "$wrong" "$T/c1" "$T/out" "$T/err"
sed -i 's/port: 5433/port: 5499/' "$T/m/conn.yml"
run c2 "$T/m/conn.yml" --var "wrong=$wrong"
t_ok "nothing listening: sshd's refusal is reported" \
	sh -c "jq -r '.steps[0].error.message' '$T/c2/results.json' | grep -q '127.0.0.1:5499.*connect failed'"
cat >"$T/m/sock.yml" <<'YML'
stagehand: 1
stage: sql-sock
steps:
  - name: A socket dir without a server
    become: postgres
    sql:
      host: /tmp/pg/nowhere
      files: sql/notice.sql
  - name: Peer authentication as the wrong OS user
    become: builder
    sql:
      host: /tmp/pg/sock
      port: 5433
      files: sql/notice.sql
YML
run s1 "$T/m/sock.yml" --keep-going
t_ok "a missing socket is reported by the relay" \
	sh -c "jq -r '.steps[0].error.message' '$T/s1/results.json' | grep -q 'connect to /tmp/pg/nowhere/.s.PGSQL.5432: No such file or directory'"
t_ok "peer authentication sees the become user" \
	sh -c "jq -r '.steps[1].error.message' '$T/s1/results.json' | grep -q 'Peer authentication failed for user \"postgres\"'"

# ---- the step timeout bounds a query; the server stops it afterwards
cat >"$T/m/slow.yml" <<'YML'
stagehand: 1
stage: sql-slow
secrets: [app_password]
steps:
  - name: Too slow
    timeout: 1
    sql:
      port: 5433
      user: app
      password: ${app_password}
      database: postgres
      files: sql/slow.sql
YML
echo 'SELECT pg_sleep(120);' >"$T/m/sql/slow.sql"
run t1 "$T/m/slow.yml"
t_ok "a query past the step timeout fails the step" rc_is 1
t_ok "the error says it timed out" \
	test "$(jr "$T/t1" '.steps[0].error.message')" = "sql/slow.sql: SQL timed out after 1 s"
sleeping() {
	pg_in_box "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(120)%' AND pid <> pg_backend_pid()"
}
for _ in $(seq 1 50); do [ "$(sleeping)" = 0 ] && break; sleep 0.1; done
t_ok "the server stopped the abandoned query" test "$(sleeping)" = 0

# ---- the secret password appears nowhere
leaks() { grep -rlF -- "$1" "$T"/r1 "$T"/r2 "$T"/p1 "$T"/e1 "$T"/e2 "$T"/e5 "$T/out" "$T/err"; }
t_exit 1 "the secret password is in no report, log or output" leaks "$secret"

# ---- no port on the box, nothing left on the controller
t_ok "the box listens only on sshd and postgres's own ports" \
	sh -c "'$TESTBOX' exec '$TESTBOX_NAME' -- ss -Hltn | awk '{print \$4}' | LC_ALL=C sort | tr '\n' ' ' | grep -qxE '10\.[0-9.]*:22 127\.0\.0\.1:5433 (\[fd00:[0-9a-f:]*\]:22 )?'"
t_ok "no private socket dir is left on the controller" \
	test -z "$(ls -A "$T/tmp")"

t_done
