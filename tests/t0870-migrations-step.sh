#!/usr/bin/env bash
# The migrations step kind against a real PostgreSQL 15 cluster inside the
# test box: a dbmate directory applied in version order over TCP as a
# password role and over the socket dir as postgres; versions in dbmate's
# schema_migrations, sha256 in stagehand's side table; a second run is ok;
# plan lists the pending ones and changes nothing; a failing migration
# names file, version, line and the server's detail/hint, stays
# unrecorded and stops the later ones; transaction:false runs outside a
# transaction; drift fails (or warns); bad directories are refused before
# anything reaches the box.
# shellcheck disable=SC2016 # $ in single quotes is for SQL or the box
. "$(dirname "$0")/lib.sh"
t_plan 48

FIX=$TOP/tests/fixtures/migrations
[ -x "$BOX_PGBIN/initdb" ] || { t_not "PostgreSQL 15 is installed ($BOX_PGBIN)"; t_done; exit 1; }

box_up "$(box_name mig)" || { t_not "test box comes up"; t_done; exit 1; }

# ---- a cluster in the box: TCP on 127.0.0.1:5433, sockets in /tmp/pg/sock
pq() { box_psql "$@"; }
t_ok "a PostgreSQL 15 cluster starts in the box" box_pg_start

secret='S3cr3t-"pw"-$(id)-'"'q'"
export STAGEHAND_VAR_app_password=$secret
sq=${secret//\'/\'\'}
mkdb() {
	pq postgres "CREATE ROLE app LOGIN PASSWORD '$sq'" &&
		pq postgres 'CREATE DATABASE appdb OWNER app'
}
t_ok "a password role owns the application database" mkdb

mkdir -p "$T/m/init" "$T/tmp"
cp -r "$FIX/app" "$T/m/app"
export TMPDIR=$T/tmp # the controller's private socket dirs go here
printf -- '-- migrate:up\nCREATE ROLE readonly NOLOGIN;\n-- migrate:down\nDROP ROLE readonly;\n' \
	>"$T/m/init/001_roles.sql"

cat >"$T/m/mig.yml" <<'YML'
stagehand: 1
stage: migrations
secrets: [app_password]
steps:
  - name: Init scripts over the socket dir as postgres
    become: postgres
    migrations:
      host: /tmp/pg/sock
      port: 5433
      database: appdb
      dir: init
  - name: Application migrations over TCP as a password role
    migrations:
      dir: ${dir}
      port: 5433
      user: app
      password: ${app_password}
      database: appdb
      table: tracking.schema_migrations
      on_drift: ${drift}
      statement_timeout: 45s
      lock_timeout: 3s
YML
V=202401010000
versions() { pq appdb "SELECT string_agg(right(version, 2), ',' ORDER BY version) FROM tracking.schema_migrations"; }
mrun() { run "$1" "$T/m/mig.yml" --var dir=app --var "drift=${2:-fail}"; }
errmsg() { jr "$T/$1" ".steps[1].error.message"; }

mrun r1
t_ok "the first run succeeds" rc_is 0
t_ok "the tracking table was created" \
	test "$(jr "$T/r1" '.steps[1].changes[0]')" = "created tracking.schema_migrations"
t_ok "the migrations ran in version order, quotes and comments intact" \
	has_text "ann; not a statement end,it's bob,carol's|3" \
	pq appdb "SELECT string_agg(name, ',' ORDER BY id), people_count() FROM people"
t_ok "transaction:false built the index CONCURRENTLY" \
	test "$(pq appdb "SELECT indisvalid FROM pg_index WHERE indexrelid = 'people_name'::regclass")" = t
t_ok "user, statement_timeout and lock_timeout were the step's" \
	test "$(pq appdb "SELECT who || ',' || statement_timeout || ',' || lock_timeout FROM settings_seen")" = "app,45s,3s"
t_ok "every version is recorded in the step's table" test "$(versions)" = "01,02,03,04"
t_ok "the table is dbmate's: version varchar(128) primary key" \
	test "$(pq appdb "SELECT format_type(a.atttypid, a.atttypmod) || ',' || i.indisprimary
		FROM pg_attribute a JOIN pg_index i ON i.indrelid = a.attrelid AND a.attnum = ALL (i.indkey)
		WHERE a.attrelid = 'tracking.schema_migrations'::regclass AND a.attname = 'version'")" = "character varying(128),true"
t_ok "the side table holds each file's sha256" \
	test "$(pq appdb "SELECT sha256 FROM tracking.stagehand_migrations WHERE version = '${V}01'")" = \
	"$(sha256sum "$T/m/app/${V}01_people.sql" | cut -c1-64)"
t_ok "the init directory went to public.schema_migrations as postgres" \
	test "$(pq appdb "SELECT (SELECT string_agg(version, ',') FROM public.schema_migrations) || ',' || count(*) FROM pg_roles WHERE rolname = 'readonly'")" = "001,1"
t_ok "each migration is a passed test" \
	test "$(jr "$T/r1" '[.steps[1].tests[] | .name + "=" + .status] | join(" ")')" = \
	"${V}01_people.sql=passed ${V}02_functions.sql=passed ${V}03_index.sql=passed ${V}04_settings.sql=passed"
t_ok "junit.xml has a test case per migration" \
	grep -q "<testcase classname=\"migrations.Application migrations over TCP as a password role\" name=\"${V}03_index.sql\"" "$T/r1/junit.xml"
# A migration's time is its test's: the report's duration_ms is the one
# in "applied in N ms", and junit.xml's time attribute is the same.
ms=$(jr "$T/r1" '.steps[1].tests[2].duration_ms')
t_ok "each migration's test carries its apply time, in results.json and junit.xml" \
	sh -c "test '$(jr "$T/r1" '.steps[1].tests[2].message')' = 'applied in $ms ms' &&
		grep -q 'name=\"${V}03_index.sql\" time=\"$((ms / 1000)).$(printf %03d $((ms % 1000)))\"' '$T/r1/junit.xml'"
t_ok "each applied file is a change with its time" \
	sh -c "jq -r '.steps[1].changes[-1]' '$T/r1/results.json' | grep -qx 'applied ${V}04_settings.sql ([0-9]* ms)'"
t_ok "the server's notice is in the step output" \
	sh -c "jq -r '.steps[1].output' '$T/r1/results.json' | grep -q 'NOTICE:  migration 4 says hello'"

mrun r2
t_ok "the second run succeeds" rc_is 0
t_ok "nothing is pending: both steps are ok" \
	test "$(jr "$T/r2" '[.steps[].status] | join(",")')" = "ok,ok"
t_ok "the tests say already applied" \
	test "$(jr "$T/r2" '.steps[1].tests[0].message')" = "already applied"

# ---- plan: the pending versions only, read-only
printf -- '-- migrate:up\nCREATE TABLE five (x int);\n' >"$T/m/app/${V}05_five.sql"
sh_run plan "$T/m/mig.yml" "${SSH_ARGS[@]}" --report "$T/p1" --var dir=app --var drift=fail
t_ok "plan succeeds" rc_is 0
t_ok "plan lists only the pending migration" \
	test "$(jr "$T/p1" '.steps[1].status + ": " + (.steps[1].changes | join(","))')" = \
	"would_change: would apply ${V}05_five.sql"
t_ok "plan changed nothing" \
	test "$(pq appdb "SELECT to_regclass('five') IS NULL")|$(versions)" = "t|01,02,03,04"
sed 's/tracking.schema_migrations/fresh.schema_migrations/' "$T/m/mig.yml" >"$T/m/fresh.yml"
sh_run plan "$T/m/fresh.yml" "${SSH_ARGS[@]}" --report "$T/p2" --var dir=app --var drift=fail
t_ok "plan without a tracking table: all would apply, no schema is made" \
	test "$(jr "$T/p2" '.steps[1].changes | length')|$(pq appdb "SELECT to_regnamespace('fresh') IS NULL")" = "5|t"

# ---- a failure: file, version, line, detail; unrecorded; later ones not run
cat >"$T/m/app/${V}06_fail.sql" <<'SQL'
-- migrate:up
CREATE TABLE will_vanish (x int);
-- the next statement fails: person 1 exists
INSERT INTO people (id, name)
VALUES (1, 'dup');
SQL
printf -- '-- migrate:up transaction:false\nCREATE TABLE seven (x int);\nSELECT people_count(1);\n' \
	>"$T/m/app/${V}07_notx.sql"
mrun f1
t_ok "a failing migration fails the run" rc_is 1
t_ok "the error names version, file, line, SQLSTATE and the detail" \
	test "$(errmsg f1)" = "version ${V}06: app/${V}06_fail.sql:4: 23505: duplicate key value violates unique constraint \"people_pkey\"; detail: Key (id)=(1) already exists."
t_ok "the one before it is recorded, it is not, its transaction rolled back" \
	test "$(versions)|$(pq appdb "SELECT to_regclass('will_vanish') IS NULL")" = "01,02,03,04,05|t"
t_ok "the later migration did not run" \
	test "$(jr "$T/f1" '[.steps[1].tests[4:][] | .status] | join(",")')|$(pq appdb "SELECT to_regclass('seven') IS NULL")" = "passed,failed,skipped|t"
sed -i 's/VALUES (1,/VALUES (6,/' "$T/m/app/${V}06_fail.sql"
mrun f2
t_ok "transaction:false: the error names the line and the server's hint" \
	test "$(errmsg f2)" = "version ${V}07: app/${V}07_notx.sql:3: 42883: function people_count(integer) does not exist; hint: No function matches the given name and argument types. You might need to add explicit type casts."
t_ok "transaction:false: the statement before stays, the version is not recorded" \
	test "$(pq appdb "SELECT to_regclass('seven') IS NOT NULL")|$(versions)" = "t|01,02,03,04,05,06"
sed -i 's/CREATE TABLE seven/CREATE TABLE IF NOT EXISTS seven/; s/people_count(1)/people_count()/' "$T/m/app/${V}07_notx.sql"
mrun f3
t_ok "once fixed, the rest applies" test "$RC|$(versions)" = "0|01,02,03,04,05,06,07"

# ---- drift: a changed file, a recorded version without a file
printf -- '-- migrate:up\nCREATE TABLE eight (x int);\n' >"$T/m/app/${V}08_eight.sql"
cp "$T/m/app/${V}01_people.sql" "$T/m/people.sql"
echo '-- edited after it was applied' >>"$T/m/app/${V}01_people.sql"
mrun d1
t_ok "a changed file fails the run before anything is applied" \
	test "$RC|$(versions)" = "1|01,02,03,04,05,06,07"
t_ok "the drift names the file" \
	sh -c "jq -r '.steps[1].error.message' '$T/d1/results.json' | grep -q '^drift: app/${V}01_people.sql changed after it was applied (sha256 then [0-9a-f]\{12\}, now [0-9a-f]\{12\})$'"
t_ok "the drifted file is a failed test" \
	test "$(jr "$T/d1" '.steps[1].tests[0].status')" = failed
mrun d2 warn
t_ok "on_drift: warn applies the pending one" test "$RC|$(versions)" = "0|01,02,03,04,05,06,07,08"
t_ok "and warns in the step output" \
	sh -c "jq -r '.steps[1].output' '$T/d2/results.json' | grep -q '^warning: drift: app/${V}01_people.sql changed'"
rm "$T/m/app/${V}08_eight.sql"
cp "$T/m/people.sql" "$T/m/app/${V}01_people.sql"
mrun d3
t_ok "a recorded version without a file is drift too" \
	test "$RC|$(errmsg d3)" = "1|drift: version ${V}08 is recorded in tracking.schema_migrations but has no file in app"

# ---- an error with a position, in a transaction: the file's own line
mkdir -p "$T/m/pos"
printf -- '-- header\n-- migrate:up\nCREATE TABLE pos_a (x int);\nSELECT x\n  FROM pos_a,\n    no_such_table;\n-- migrate:down\n' \
	>"$T/m/pos/1_pos.sql"
cat >"$T/m/pos.yml" <<'YML'
stagehand: 1
stage: migrations-pos
steps:
  - name: pos
    become: postgres
    migrations:
      host: /tmp/pg/sock
      port: 5433
      database: appdb
      dir: pos
      table: pos.schema_migrations
YML
run e1 "$T/m/pos.yml"
t_ok "a positioned error names the file's line; nothing of it stays" \
	test "$RC|$(jr "$T/e1" '.steps[0].error.message')|$(pq appdb "SELECT to_regclass('pos_a') IS NULL")" = \
	"1|version 1: pos/1_pos.sql:6: 42P01: relation \"no_such_table\" does not exist|t"

# ---- remote: true, a directory on the target read as the become user
box_exec sh -c 'mkdir -p /srv/mig &&
	printf -- "-- migrate:up\nCREATE TABLE remote_a (x int);\n" >/srv/mig/1_a.sql &&
	printf -- "-- migrate:up\nINSERT INTO remote_a VALUES (42);\n-- migrate:down\n" >/srv/mig/2_b.sql &&
	printf "not a migration" >/srv/mig/README &&
	chown -R postgres /srv/mig && chmod 700 /srv/mig'
cat >"$T/m/remote.yml" <<'YML'
stagehand: 1
stage: migrations-remote
steps:
  - name: remote
    become: postgres
    migrations:
      host: /tmp/pg/sock
      port: 5433
      database: appdb
      remote: true
      dir: ${rdir}
      table: remote.schema_migrations
YML
run m1 "$T/m/remote.yml" --var rdir=/srv/mig
t_ok "a remote dir is read as the become user and applied" \
	test "$RC|$(pq appdb "SELECT (SELECT x FROM remote_a) || ',' || (SELECT string_agg(version, ',' ORDER BY version) FROM remote.schema_migrations)")" = "0|42,1,2"
run m2 "$T/m/remote.yml" --var rdir=/srv/mig
t_ok "a second remote run is ok" test "$RC|$(jr "$T/m2" '.steps[0].status')" = "0|ok"
sh_run plan "$T/m/remote.yml" "${SSH_ARGS[@]}" --report "$T/m3" --var rdir=/srv/nope
plan_says() { echo "$RC|$(jr "$T/m3" '.steps[0].status + ": " + .steps[0].changes[0]')"; }
t_ok "plan: a remote dir not there yet would apply" \
	has_text "0|would_change: would apply /srv/nope (" plan_says
box_exec sh -c 'printf "CREATE TABLE remote_c (x int);\n" >/srv/mig/3_c.sql && chown postgres /srv/mig/3_c.sql'
run m4 "$T/m/remote.yml" --var rdir=/srv/mig
t_ok "a bad remote file fails the step (exit 1), naming file and line" \
	test "$RC|$(jr "$T/m4" '.steps[0].error.message')" = "1|/srv/mig/3_c.sql:1: no '-- migrate:up' line"

# ---- bad directories: refused offline, nothing reaches the box
cp -r "$T/m/app" "$T/m/bad"
printf 'CREATE TABLE nine (x int);\n' >"$T/m/bad/${V}09_noup.sql"
before=$(box_snapshot)
run b1 "$T/m/mig.yml" --var dir=bad --var drift=fail
t_ok "a file without -- migrate:up is an invalid manifest (exit 65)" rc_is 65
t_ok "the refusal names the manifest position, the file and the line" \
	grep -q "mig.yml:14:12: bad/${V}09_noup.sql:1: no '-- migrate:up' line" "$T/err"
t_ok "the refused run touched nothing on the box" test "$(box_snapshot)" = "$before"
rm "$T/m/bad/${V}09_noup.sql"
cp "$T/m/bad/${V}05_five.sql" "$T/m/bad/${V}05_again.sql"
run b2 "$T/m/mig.yml" --var dir=bad --var drift=fail
t_ok "a duplicate version is refused" \
	test "$RC|$(grep -c "bad/${V}05_five.sql:1: version ${V}05 is also bad/${V}05_again.sql" "$T/err")" = "65|1"
run b3 "$T/m/mig.yml" --var dir=missing --var drift=fail
t_ok "an unreadable directory is refused" \
	test "$RC|$(grep -c "mig.yml:14:12: dir: .*/missing: No such file or directory" "$T/err")" = "65|1"

# ---- the secret password appears nowhere; nothing left on the controller
leaks() { grep -rlF -- "$1" "$T"/r1 "$T"/r2 "$T"/p1 "$T"/f1 "$T"/d1 "$T/out" "$T/err"; }
t_exit 1 "the secret password is in no report, log or output" leaks "$secret"
t_ok "no private socket dir is left on the controller" test -z "$(ls -A "$T/tmp")"

t_done
