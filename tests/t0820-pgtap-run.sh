#!/usr/bin/env bash
# The pgtap step kind against real pgTAP (Debian's postgresql-15-pgtap) in
# a PostgreSQL 15 cluster inside the test box: every assertion becomes a
# test case in results.json and junit.xml; a failing assertion fails the
# step with its diagnostics; a wrong plan count, a file without assertions
# and an SQL error fail it too; skip and todo do not; tests leave nothing
# behind; a session killed mid-file is reconnected and the file rerun; the
# tunnel opens no port on the box.
# shellcheck disable=SC2016 # $ in single quotes is for SQL or the box
. "$(dirname "$0")/lib.sh"
t_plan 34

PGBIN=/usr/lib/postgresql/15/bin
FIX=$TOP/tests/fixtures/sql
[ -x "$PGBIN/initdb" ] || { t_not "PostgreSQL 15 is installed ($PGBIN)"; t_done; exit 1; }
[ -f /usr/share/postgresql/15/extension/pgtap.control ] ||
	{ t_not "pgTAP is installed (postgresql-15-pgtap)"; t_done; exit 1; }

box_up "$(box_name tap)" || { t_not "test box comes up"; t_done; exit 1; }

pg_in_box() { # sql: psql as postgres over the socket, one value per line
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

mkdir -p "$T/m/sql/pgtap" "$T/tmp"
cp "$FIX"/*.sql "$T/m/sql/"
cp "$FIX"/pgtap/*.sql "$T/m/sql/pgtap/"
export TMPDIR=$T/tmp

# test_field REPORT NAME FIELD: a field of the embedded test named NAME
test_field() {
	jq -r --arg n "$2" ".steps[0].tests[] | select(.name == \$n) | .$3" "$T/$1/results.json"
}
tap_manifest() { # file...: one pgtap step over the socket dir as postgres
	local f
	{
		printf 'stagehand: 1\nstage: pgtap\nsteps:\n'
		printf '  - name: pgTAP\n    become: postgres\n    pgtap:\n'
		printf '      host: /tmp/pg/sock\n      port: 5433\n      files:\n'
		for f in "$@"; do printf '        - sql/pgtap/%s\n' "$f"; done
	} >"$T/m/tap.yml"
}

cat >"$T/m/setup.yml" <<'YML'
stagehand: 1
stage: pgtap-setup
steps:
  - name: pgTAP and the schema under test
    become: postgres
    sql:
      host: /tmp/pg/sock
      port: 5433
      files: [sql/extension.sql, sql/schema.sql, sql/data.sql]
YML
printf 'CREATE EXTENSION pgtap;\nCREATE SEQUENCE attempts;\n' >"$T/m/sql/extension.sql"
run s "$T/m/setup.yml"
t_ok "pgTAP and the schema are installed by an sql step" rc_is 0

# ---- a passing file
tap_manifest pass.sql
run p "$T/m/tap.yml"
t_ok "a passing file passes" rc_is 0
t_ok "a passing test run reports ok, not changed" test "$(jr "$T/p" '.steps[0].status')" = ok
t_ok "each assertion is a test case" test "$(jr "$T/p" '.steps[0].tests | length')" = 4
t_ok "assertions are named by file, number and description" \
	test "$(test_field p 'sql/pgtap/pass.sql: 3 - one hundred people' status)" = passed
t_ok "the counts are in the details" \
	test "$(jr "$T/p" '.steps[0].details | "\(.assertions) \(.passed) \(.failed)"')" = "4 4 0"
t_ok "junit.xml has a testcase per assertion" \
	test "$(grep -c '<testcase [^>]*name="sql/pgtap/pass.sql: ' "$T/p/junit.xml")" = 4

# ---- a failing assertion
tap_manifest fail.sql
run f "$T/m/tap.yml"
t_ok "a failing assertion fails the step" rc_is 1
t_ok "the step error names the assertion and its diagnostics" \
	test "$(jr "$T/f" '.steps[0].error.message')" = 'sql/pgtap/fail.sql: assertion 2 failed: arithmetic is broken: Failed test 2: "arithmetic is broken"; have: 2; want: 3'
t_ok "the failing test case carries pgTAP's diagnostics" \
	sh -c "jq -r --arg n 'sql/pgtap/fail.sql: 2 - arithmetic is broken' '.steps[0].tests[] | select(.name == \$n) | .message' '$T/f/results.json' | grep -q 'want: 3'"
t_ok "the other assertions still pass" \
	test "$(jr "$T/f" '[.steps[0].tests[] | .status] | join(",")')" = "passed,failed,passed"
t_ok "junit.xml records the failure" \
	grep -q 'name="sql/pgtap/fail.sql: 2 - arithmetic is broken"' "$T/f/junit.xml"
t_ok "junit.xml counts it" \
	sh -c "grep -A3 'name=\"sql/pgtap/fail.sql: 2 - arithmetic is broken\"' '$T/f/junit.xml' | grep -q '<failure'"
t_ok "the terminal shows the diagnostics" grep -q 'have: 2' "$T/out"

# ---- wrong plan, no assertions, SQL error, skip and todo
tap_manifest wrong-plan.sql
run w "$T/m/tap.yml"
t_ok "a wrong plan count fails the step" rc_is 1
t_ok "and says so" test "$(jr "$T/w" '.steps[0].error.message')" = \
	"sql/pgtap/wrong-plan.sql: planned 3 assertions but ran 2"
t_ok "the file itself is a failed test case" \
	test "$(test_field w sql/pgtap/wrong-plan.sql status)" = failed

tap_manifest no-assertions.sql
run n "$T/m/tap.yml"
t_ok "a file with no assertions fails" rc_is 1
t_ok "and says it is a failure, not a pass" \
	sh -c "jq -r '.steps[0].error.message' '$T/n/results.json' | grep -q 'no assertions (a test file without assertions is a failure, not a pass)'"

printf 'SELECT plan(2);\nSELECT pass($$fine$$);\nSELECT nosuchfunction();\nSELECT pass($$never$$);\n' \
	>"$T/m/sql/pgtap/sql-error.sql"
tap_manifest sql-error.sql
run e "$T/m/tap.yml"
t_ok "an SQL error fails the step with file, line and SQLSTATE" \
	sh -c "jq -r '.steps[0].error.message' '$T/e/results.json' | grep -q '^sql/pgtap/sql-error.sql:3: 42883: function nosuchfunction() does not exist'"

tap_manifest skip-todo.sql
run k "$T/m/tap.yml"
t_ok "skipped and TODO assertions do not fail the step" rc_is 0
t_ok "a skip is a skipped test with its reason" \
	test "$(test_field k 'sql/pgtap/skip-todo.sql: 2' message)" = "SKIP: no replica in the test box"
t_ok "a failing TODO is a skipped test with its reason" \
	test "$(test_field k 'sql/pgtap/skip-todo.sql: 3 - known bug' status)" = skipped
t_ok "the counts tell skip and todo apart" \
	test "$(jr "$T/k" '.steps[0].details | "\(.passed) \(.skipped) \(.todo)"')" = "2 1 1"

# ---- several files: all run, the step fails on the first problem
tap_manifest pass.sql fail.sql skip-todo.sql rolls-back.sql
run a "$T/m/tap.yml"
t_ok "files after a failing one still run" \
	test "$(jr "$T/a" '.steps[0].tests | length')" = 12
t_ok "the error counts the failing files" \
	sh -c "jq -r '.steps[0].error.message' '$T/a/results.json' | grep -q '^sql/pgtap/fail.sql: assertion 2 failed'"
t_ok "a file without BEGIN is rolled back by the step" \
	test "$(pg_in_box "SELECT to_regclass('left_behind') IS NULL")" = t

# ---- the session dies mid-file: reconnect, rerun on a new tunnel
cat >"$T/m/sql/pgtap/slow-once.sql" <<'SQL'
SELECT plan(1);
SELECT pg_sleep(60) WHERE nextval('attempts') = 1;
SELECT pass('ran after the reconnect');
SQL
tap_manifest slow-once.sql
"$STAGEHAND" run "$T/m/tap.yml" "${SSH_ARGS[@]}" --report "$T/r" >"$T/out" 2>"$T/err" &
pid=$!
for _ in $(seq 1 100); do
	[ "$(pg_in_box "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(60)%' AND pid <> pg_backend_pid()")" = 1 ] && break
	sleep 0.1
done
t_ok "while a query runs the box listens only on sshd and postgres" \
	sh -c "'$TESTBOX' exec '$TESTBOX_NAME' -- ss -Hltn | awk '{print \$4}' | LC_ALL=C sort | tr '\n' ' ' | grep -qxE '10\.[0-9.]*:22 127\.0\.0\.1:5433 (\[fd00:[0-9a-f:]*\]:22 )?'"
"$TESTBOX" kill-sessions "$TESTBOX_NAME"
rc=0
wait "$pid" || rc=$?
t_ok "the run survives the killed session" test "$rc" = 0
t_ok "the step was rerun after a reconnect" test "$(jr "$T/r" '.steps[0].reconnects')" -ge 1
t_ok "the rerun passed" \
	test "$(test_field r 'sql/pgtap/slow-once.sql: 1 - ran after the reconnect' status)" = passed
for _ in $(seq 1 50); do
	[ "$(pg_in_box "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(60)%' AND pid <> pg_backend_pid()")" = 0 ] && break
	sleep 0.1
done
t_ok "the server stopped the abandoned query" \
	test "$(pg_in_box "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(60)%' AND pid <> pg_backend_pid()")" = 0
t_ok "no private socket dir is left on the controller" test -z "$(ls -A "$T/tmp")"

t_done
