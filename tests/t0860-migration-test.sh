#!/usr/bin/env bash
# The migration_test step kind against the real test box: Debian 12's
# PostgreSQL 15 as the new release and Debian 11's PostgreSQL 13 binaries
# (downloaded through apt by tests/pg13/fetch.sh, unpacked with dpkg-deb,
# run with their own library path) as the old one. The data
# (tests/fixtures/migration/data.sql) has pgcrypto, an enum, NULLs, arrays,
# jsonb, two sequences, a materialized view and 5,000 rows.
# 15 -> 15 with pg_upgrade and with pg_dumpall, 13 -> 15 with both: every
# fingerprint equal, each one in the report before and after; keep: true
# keeps the stopped clusters; a `between` file that deletes one row fails
# the step naming the table, for both methods; losses that keep every row
# count (a changed value, an unequal jsonb with its keys reordered, a row
# swapped between two tables of one shape, a sequence moved, a sequence's
# is_called reset) fail naming the object; transaction: none loads data
# and between files that only run outside a transaction block (ALTER
# SYSTEM, CREATE DATABASE, CREATE INDEX CONCURRENTLY, VACUUM), which the
# default refuses; a data file with an SQL error names file and line; plan only checks the binaries; nothing is
# left running and the temp dirs are gone.
. "$(dirname "$0")/lib.sh"
t_plan 67


# PostgreSQL 13 from Debian 11, cached under /var/cache (visible in the box).
OLD_BIN='' OLD_LIB=''
if "$TOP/tests/pg13/fetch.sh" >"$T/pg13.env" 2>"$T/pg13.err"; then
	while IFS= read -r line; do
		case $line in OLD_BIN=*) OLD_BIN=${line#OLD_BIN=} ;; OLD_LIB=*) OLD_LIB=${line#OLD_LIB=} ;; esac
	done <"$T/pg13.env"
	t_pass "PostgreSQL 13 binaries from Debian 11 are at hand"
else
	t_not "PostgreSQL 13 binaries from Debian 11 are at hand" "$T/pg13.err"
fi

box_up "$(box_name mt)" || { t_not "test box comes up"; t_done; exit 1; }

NEW=/usr/lib/postgresql/15/bin
FIX=$TOP/tests/fixtures/migration
cat >"$T/mt.yml" <<YML
stagehand: 1
stage: migration
steps:
  - name: 15 to 15 with pg_upgrade
    migration_test:
      old_bin: $NEW
      new_bin: $NEW
      method: pg_upgrade
      data: [$FIX/data.sql]
  - name: 15 to 15 with pg_dumpall, kept
    migration_test:
      old_bin: $NEW
      new_bin: $NEW
      method: pg_dumpall
      data: [$FIX/data.sql]
      dbname: app
      workdir: /var/tmp/t0860
      port: 55100
      keep: true
  - name: 13 to 15 with both
    migration_test:
      old_bin: $OLD_BIN
      old_lib: $OLD_LIB
      new_bin: $NEW
      method: both
      data: [$FIX/data.sql]
YML

# -- plan: the binaries are checked, nothing else ---------------------------------
before=$(box_snapshot)
sh_run plan "$T/mt.yml" "${SSH_ARGS[@]}" --report "$T/p"
t_ok "plan succeeds" rc_is 0
t_ok "plan reports the old release of the 13 -> 15 test" \
	grep -q 'PostgreSQL) 13\.' <(jr "$T/p" '.steps[2].details.old_version')
t_ok "plan changed nothing on the box" test "$before" = "$(box_snapshot)"

# -- the three real migrations ------------------------------------------------------
run r1 "$T/mt.yml"
t_ok "the three migration tests pass" rc_is 0
t_ok "they change nothing on the target (ok, not changed)" \
	test "$(jr "$T/r1" '[.steps[].status] | join(",")')" = ok,ok,ok
t_ok "the 13 -> 15 test really ran 13 and 15" \
	test "$(jr "$T/r1" '.steps[2].details | "\(.old_version | test("\\) 13\\.")) \(.new_version | test("\\) 15\\."))"')" = "true true"
t_ok "six objects are fingerprinted (3 tables, 1 matview, 2 sequences)" \
	test "$(jr "$T/r1" '[.steps[].details.objects] | join(",")')" = 6,6,6
t_ok "one test per object plus the schema, per method (7, 7, 14)" \
	test "$(jr "$T/r1" '[.steps[].tests | length] | join(",")')" = 7,7,14
t_ok "every fingerprint test passed" \
	test "$(jr "$T/r1" '[.steps[].tests[].status] | unique | join(",")')" = passed
t_ok "each test shows the fingerprint before and after, and they are equal" \
	test "$(jr "$T/r1" '[.steps[].tests[].message | capture("^before: (?<b>.*); after: (?<a>.*)$") | .b == .a] | unique | join(",")')" = true
t_ok "the big table: 5000 rows and an md5, before and after 13 -> 15" \
	grep -qE '^before: 5000 rows, md5 [0-9a-f]{32}; after: 5000 rows, md5 [0-9a-f]{32}$' \
	<(jr "$T/r1" '.steps[2].tests[] | select(.name == "pg_upgrade: table public.people") | .message')
t_ok "the 13 cluster's rows hash the same as the 15 cluster's" \
	test "$(jr "$T/r1" '[.steps[0,2].tests[] | select(.name == "pg_upgrade: table public.people") | .message] | unique | length')" = 1
t_ok "the sequence is fingerprinted by last_value and is_called" \
	grep -qx 'before: last_value 141, is_called true; after: last_value 141, is_called true' \
	<(jr "$T/r1" '.steps[2].tests[] | select(.name == "pg_dumpall: sequence public.ticket_seq") | .message')
t_ok "the materialized view is fingerprinted" \
	grep -qE '^before: [0-9]+ rows' <(jr "$T/r1" '.steps[0].tests[] | select(.name == "pg_upgrade: matview public.happy_people") | .message')
t_ok "the schema (pg_dump --schema-only, normalised) is equal after both methods" \
	test "$(jr "$T/r1" '[.steps[2].tests[] | select(.name | endswith("schema (pg_dump --schema-only)")) | .status] | join(",")')" = passed,passed
t_ok "pg_upgrade --check ran first" \
	test "$(jr "$T/r1" '.steps[2].details.pg_upgrade_check')" = passed
t_ok "junit.xml has a testcase per fingerprint" \
	test "$(grep -o '<testcase [^>]*name="pg_upgrade: ' "$T/r1/junit.xml" | wc -l)" = 14

# -- keep: the work dir stays, its clusters stopped; the others are gone -----------
kept=$(jr "$T/r1" '.steps[1].details.workdir')
t_ok "keep reports the work dir" grep -q '^/var/tmp/t0860/stagehand-mt\.' <<<"$kept"
t_ok "the kept work dir holds both clusters and the dump" \
	box_exec test -f "$kept/old/PG_VERSION" -a -f "$kept/dump/PG_VERSION" -a -s "$kept/dumpall.sql"
t_ok "the data went into the database named by dbname" \
	box_exec grep -q '^CREATE DATABASE app ' "$kept/dumpall.sql"
t_ok "the kept clusters are stopped" \
	box_exec sh -c "[ -d '$kept/old' ] && [ -d '$kept/dump' ] && ! ls $kept/old/postmaster.pid $kept/dump/postmaster.pid 2>/dev/null"
t_ok "the other work dirs were removed" \
	test "$(box_exec sh -c 'ls -A /tmp | grep -c stagehand-mt' || true)" = 0
t_ok "no PostgreSQL server is left running in the box" \
	test "$(box_exec sh -c 'ps -e -o comm= | grep -c "^postgres$"' || true)" = 0

# -- a lost row is caught and named ---------------------------------------------
cat >"$T/lossy.yml" <<YML
stagehand: 1
stage: migration-lossy
steps:
  - name: 15 to 15, one row lost
    migration_test:
      old_bin: $NEW
      new_bin: $NEW
      method: both
      data: [$FIX/data.sql]
      between: [$FIX/lose-row.sql]
YML
run r2 "$T/lossy.yml"
t_ok "a migration that loses a row fails the run" rc_is 1
t_ok "the error names the table and its counts, for both methods" \
	test "$(jr "$T/r2" '.steps[0].error.message' | grep -oE 'after (pg_dumpall|pg_upgrade): public\.events \(2000 rows, md5 [0-9a-f]+ -> 1999 rows' | wc -l)" = 2
t_ok "only the events table fails, in both methods" \
	test "$(jr "$T/r2" '[.steps[0].tests[] | select(.status == "failed") | .name] | join(",")')" = "pg_dumpall: table public.events,pg_upgrade: table public.events"
t_ok "its test shows before and after" \
	grep -qE '^before: 2000 rows, md5 [0-9a-f]{32}; after: 1999 rows, md5 [0-9a-f]{32}$' \
	<(jr "$T/r2" '.steps[0].tests[] | select(.name == "pg_upgrade: table public.events") | .message')
t_ok "the other objects still pass" \
	test "$(jr "$T/r2" '[.steps[0].tests[] | select(.status == "passed")] | length')" = 12
t_ok "the failed assertions are on the terminal" \
	grep -q 'not ok: pg_upgrade: table public.events: before: 2000 rows' "$T/out"

# -- losses that keep every row count are caught and named too ------------------
# One step per loss, all run (--keep-going): LOSS METHOD EXPECTED-FAILED-TESTS.
# A fingerprint that compared only row counts would pass every table here.
LOSSES=(
	"change-value pg_upgrade table public.people"
	"change-jsonb pg_dumpall table public.people"
	"swap-rows pg_upgrade table public.shelf_a,table public.shelf_b"
	"move-sequence pg_upgrade sequence public.ticket_seq"
	"reset-sequence pg_dumpall sequence public.events_id_seq"
)
{
	printf 'stagehand: 1\nstage: migration-same-counts\nsteps:\n'
	for l in "${LOSSES[@]}"; do
		read -r loss method _ <<<"$l"
		printf '  - name: %s\n    migration_test:\n' "$loss"
		printf '      %s\n' "old_bin: $NEW" "new_bin: $NEW" "method: $method" \
			"data: [$FIX/data.sql, $FIX/twins.sql]" "between: [$FIX/$loss.sql]"
	done
} >"$T/same.yml"
run r7 "$T/same.yml" --keep-going
t_ok "count-preserving losses fail the run" rc_is 1
t_ok "every one of the five steps ran and failed" \
	test "$(jr "$T/r7" '[.steps[].status] | join(",")')" = failed,failed,failed,failed,failed
# STEP ROWS TEST: the test failed, its row count is ROWS before and after
# (a number this script knows) and only the md5 of the rows differs.
same_count_other_md5() {
	local m
	m=$(jr "$T/r7" ".steps[$1].tests[] | select(.name == \"$3\") | .status + \" \" + .message")
	[[ $m =~ ^failed\ before:\ $2\ rows,\ md5\ ([0-9a-f]{32})\;\ after:\ $2\ rows,\ md5\ ([0-9a-f]{32})$ ]] &&
		[ "${BASH_REMATCH[1]}" != "${BASH_REMATCH[2]}" ] || {
		echo "test '$3': $m"
		return 1
	}
}
# STEP: only the expected tests failed, every other one (9 per method:
# 5 tables, 1 matview, 2 sequences, the schema) passed.
only_expected_failed() {
	local l=${LOSSES[$1]} method want got passed
	read -r _ method want <<<"$l"
	want=$(sed "s/\(^\|,\)/\1$method: /g" <<<"$want")
	got=$(jr "$T/r7" ".steps[$1].tests | map(select(.status == \"failed\") | .name) | join(\",\")")
	passed=$(jr "$T/r7" ".steps[$1].tests | map(select(.status == \"passed\")) | length")
	[ "$got" = "$want" ] && [ "$passed" = $((9 - $(tr -cd , <<<"$want" | wc -c) - 1)) ] ||
		{ echo "failed: '$got', wanted '$want'; $passed passed"; return 1; }
}
for i in 0 1 2 3 4; do
	t_ok "${LOSSES[$i]%% *}: only ${LOSSES[$i]#* * } failed" only_expected_failed "$i"
done
t_ok "change-value: public.people keeps 5000 rows, its md5 changes" \
	same_count_other_md5 0 5000 "pg_upgrade: table public.people"
t_ok "change-jsonb: public.people keeps 5000 rows, its md5 changes" \
	same_count_other_md5 1 5000 "pg_dumpall: table public.people"
t_ok "swap-rows: public.shelf_a keeps 10 rows, its md5 changes" \
	same_count_other_md5 2 10 "pg_upgrade: table public.shelf_a"
t_ok "swap-rows: public.shelf_b keeps 10 rows, its md5 changes" \
	same_count_other_md5 2 10 "pg_upgrade: table public.shelf_b"
t_ok "the people rows hashed before the loss are the ones the clean run hashed" \
	test "$(jr "$T/r7" '.steps[0].tests[] | select(.name == "pg_upgrade: table public.people") | .message | sub("; after: .*"; "")')" = \
	"$(jr "$T/r1" '.steps[0].tests[] | select(.name == "pg_upgrade: table public.people") | .message | sub("; after: .*"; "")')"
t_ok "move-sequence: ticket_seq's last_value 141 -> 142" \
	test "$(jr "$T/r7" '.steps[3].tests[] | select(.name == "pg_upgrade: sequence public.ticket_seq") | .message')" = \
	"before: last_value 141, is_called true; after: last_value 142, is_called true"
t_ok "reset-sequence: events_id_seq keeps 2000, is_called true -> false" \
	test "$(jr "$T/r7" '.steps[4].tests[] | select(.name == "pg_dumpall: sequence public.events_id_seq") | .message')" = \
	"before: last_value 2000, is_called true; after: last_value 2000, is_called false"
# STEP TEXT...: the step's error names each TEXT (object and its counts).
error_names() {
	local m
	m=$(jr "$T/r7" ".steps[$1].error.message")
	shift
	for t in "$@"; do
		grep -qF -- "$t" <<<"$m" || { echo "error lacks '$t': $m"; return 1; }
	done
}
errors_name_the_objects() {
	error_names 0 'after pg_upgrade: public.people (5000 rows, md5 ' '-> 5000 rows, md5 ' &&
		error_names 1 'after pg_dumpall: public.people (5000 rows, md5 ' &&
		error_names 2 'after pg_upgrade: public.shelf_a (10 rows, md5 ' ', public.shelf_b (10 rows, md5 ' &&
		error_names 3 'after pg_upgrade: public.ticket_seq (last_value 141, is_called true -> last_value 142, is_called true)' &&
		error_names 4 'after pg_dumpall: public.events_id_seq (last_value 2000, is_called true -> last_value 2000, is_called false)'
}
t_ok "each step's error names the object that changed" errors_name_the_objects

# -- transaction: none runs files as psql does ------------------------------------
cat >"$T/psqlish.sql" <<'SQL'
ALTER SYSTEM SET work_mem = '8MB';
CREATE DATABASE side;
CREATE INDEX CONCURRENTLY people_name ON people (name);
VACUUM ANALYZE people;
SQL
printf 'VACUUM (FREEZE) events;\nVACUUM ANALYZE people;\n' >"$T/vacuum.sql"
cat >"$T/psql.yml" <<YML
stagehand: 1
stage: migration-outside-transactions
steps:
  - name: statement by statement
    migration_test:
      old_bin: $NEW
      new_bin: $NEW
      transaction: none
      data: [$FIX/data.sql, psqlish.sql]
      between: [vacuum.sql]
  - name: the same, each file in a transaction
    migration_test:
      old_bin: $NEW
      new_bin: $NEW
      data: [$FIX/data.sql, psqlish.sql]
YML
run r8 "$T/psql.yml" --keep-going
t_ok "transaction: none loads the psql-only fixture, per_file does not" \
	test "$RC $(jr "$T/r8" '[.steps[].status] | join(",")')" = "1 ok,failed"
t_ok "statement by statement, every fingerprint is still equal (7 tests)" \
	test "$(jr "$T/r8" '[.steps[0].tests[].status] | "\(length) \(unique | join(","))"')" = "7 passed"
t_ok "the index made CONCURRENTLY changed the schema that was compared" \
	test "$(jr "$T/r8" '.steps[0].details.schema_before')" != "$(jr "$T/r1" '.steps[0].details.schema_before')"
t_ok "per_file names the file and why: cannot run inside a transaction block" \
	grep -qE "loading data: $T/psqlish.sql:[0-9]+: 25001: ALTER SYSTEM cannot run inside a transaction block" \
	<(jr "$T/r8" '.steps[1].error.message')

# -- an SQL error in a data file --------------------------------------------------
printf 'CREATE TABLE a (x int);\n\nSELECT *\n  FROM no_such_table;\n' >"$T/bad.sql"
cat >"$T/bad.yml" <<YML
stagehand: 1
stage: migration-bad-data
steps:
  - name: bad data
    migration_test:
      old_bin: $NEW
      new_bin: $NEW
      data: [bad.sql]
YML
run r3 "$T/bad.yml"
t_ok "a data file with an SQL error fails the step" rc_is 1
t_ok "the error names the file, the line and the SQLSTATE" \
	grep -qF "loading data: $T/bad.sql:4: 42P01: relation \"no_such_table\" does not exist" \
	<(jr "$T/r3" '.steps[0].error.message')
t_ok "the old cluster was stopped and removed after the failure" \
	test "$(box_exec sh -c 'ls -A /tmp | grep -c stagehand-mt; ps -e -o comm= | grep -c "^postgres$"' | tr '\n' ' ')" = "0 0 "

# -- an interrupted test leaves its cluster running; the next one sweeps it ------
printf 'CREATE TABLE slow (x int);\nSELECT pg_sleep(60);\n' >"$T/slow.sql"
cat >"$T/slow.yml" <<YML
stagehand: 1
stage: migration-interrupted
steps:
  - name: interrupted while loading
    migration_test:
      old_bin: $NEW
      new_bin: $NEW
      data: [slow.sql]
YML
"$STAGEHAND" run "$T/slow.yml" "${SSH_ARGS[@]}" --report "$T/r5" >"$T/out5" 2>&1 &
pid=$!
# Until a backend of the old cluster is busy (its title ends in SELECT).
for _ in $(seq 600); do
	box_exec sh -c 'ps -e -o args= | grep -q "^postgres: .*\[local\] SELECT"' && break
	sleep 0.1
done
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
t_ok "SIGTERM stops the run (exit $rc)" test "$rc" = 130
stale=$(box_exec sh -c 'ls -d /tmp/stagehand-mt.*' 2>/dev/null || true)
t_ok "the interrupted test left its work dir ($stale)" test -n "$stale"
t_ok "and its cluster running" \
	box_exec sh -c "[ -f $stale/old/postmaster.pid ] && ps -e -o comm= | grep -q '^postgres\$'"
# A kept dir in the same workdir stays as it is.
box_exec sh -c 'mkdir -p /tmp/stagehand-mt.keptone && : >/tmp/stagehand-mt.keptone/.kept &&
	chown -R postgres: /tmp/stagehand-mt.keptone'
sed 's|data: \[slow.sql\]|data: ['"$FIX"'/data.sql]|' "$T/slow.yml" >"$T/after.yml"
run r6 "$T/after.yml"
t_ok "the next migration test passes" rc_is 0
t_ok "it reports the work dir it swept" test "$(jr "$T/r6" '.steps[0].details.swept_workdirs')" = 1
t_ok "the stale work dir is gone" box_exec test ! -e "$stale"
t_ok "no PostgreSQL server is left running" \
	test "$(box_exec sh -c 'ps -e -o comm= | grep -c "^postgres$"' || true)" = 0
t_ok "a work dir marked .kept is left alone" box_exec test -e /tmp/stagehand-mt.keptone/.kept
t_ok "keep: true marks its work dir .kept" box_exec test -e "$kept/.kept"
box_exec rm -rf /tmp/stagehand-mt.keptone

# -- old binaries that are not there ------------------------------------------------
sed "s|old_bin: $NEW|old_bin: /opt/no-such-pg/bin|" "$T/bad.yml" | sed "s|bad.sql|$FIX/data.sql|" >"$T/nobin.yml"
run r4 "$T/nobin.yml"
t_ok "missing old binaries fail the step" rc_is 1
t_ok "the error names the missing binary" \
	grep -qF "/opt/no-such-pg/bin/initdb: not found or not executable by postgres" \
	<(jr "$T/r4" '.steps[0].error.message')

# -- manifest errors, before anything touches the target --------------------------
printf 'SELECT 1;\n\\set x 1\n' >"$T/psql.sql"
check_err() { # description expected-message yaml-body-lines...
	local d=$1 want=$2
	shift 2
	{
		printf 'stagehand: 1\nstage: bad\nsteps:\n  - name: m\n    migration_test:\n'
		printf '      %s\n' "$@"
	} >"$T/badm.yml"
	sh_run check "$T/badm.yml"
	# shellcheck disable=SC2016 # expanded by the inner sh
	t_ok "$d" sh -c '[ "$1" = 65 ] && grep -qF -- "$2" "$3"' _ "$RC" "$want" "$T/err"
}
check_err "an unknown method is a manifest error" \
	"method must be pg_upgrade, pg_dumpall or both, not 'rsync'" \
	"old_bin: $NEW" "new_bin: $NEW" "method: rsync" "data: [$FIX/data.sql]"
check_err "data is required" "missing required key 'data'" \
	"old_bin: $NEW" "new_bin: $NEW"
check_err "a data file with a psql backslash command is refused, naming its line" \
	"data: $T/psql.sql:2: psql backslash command" \
	"old_bin: $NEW" "new_bin: $NEW" "data: [psql.sql]"
check_err "a missing data file is refused" "data: $T/nope.sql: " \
	"old_bin: $NEW" "new_bin: $NEW" "data: [nope.sql]"

t_done
