#!/usr/bin/env bash
# stages/backup-verify.yml, the scheduled backup verification, against a
# live PostgreSQL 15 cluster in the test box (box_pg_start) that holds the
# major-upgrade data set (tests/fixtures/major-upgrade: enums, arrays,
# jsonb, identity columns, a materialized view, sequences; two
# databases). A run backs up every database, restores the backup into a
# scratch cluster and finds every fingerprint equal: junit.xml has one
# testcase per object, results.json one passed test each with both
# fingerprints; the server keeps running and the scratch cluster is gone.
# A second run makes a new backup and downloads it to the controller
# (sha256 as in the manifest). A dump altered after the backup fails the
# stage (--tags verify: the backup already there) naming the file, in
# results.json and in junit.xml, before anything is restored.
# shellcheck disable=SC2016 # $ in single quotes is for the box's shell
. "$(dirname "$0")/lib.sh"
t_plan 18

box_up "$(box_name bv)" || { t_not "test box comes up"; t_done; exit 1; }
t_ok "a PostgreSQL 15 cluster starts in the box" box_pg_start

FIX=$TOP/tests/fixtures/major-upgrade
B=/var/backups/t0887/verified
STEP="The backup restores with every fingerprint"
cat >"$T/data.yml" <<YML
stagehand: 1
stage: backup-verify-data
steps:
  - name: the data set
    become: postgres
    sql: {host: /tmp/pg/sock, port: 5433, database: postgres, files: [$FIX/data.sql], transaction: none}
  - name: the app database
    become: postgres
    sql: {host: /tmp/pg/sock, port: 5433, database: app, files: [$FIX/app.sql]}
YML
run r0 "$T/data.yml"
t_ok "the data set is loaded into the live cluster" rc_is 0

cat >"$T/v.yml" <<YML
backup_dir: $B
pg_socket_dir: /tmp/pg/sock
pg_port: "5433"
bin_dir: /usr/lib/postgresql/15/bin
restore_bin_dir: /usr/lib/postgresql/15/bin
YML
stage() { run "$1" "$TOP/stages/backup-verify.yml" --vars-file "$T/v.yml" "${@:2}"; }
statuses() { jr "$T/$1" '[.steps[].status] | join(",")'; }
postmasters() { box_exec sh -c 'ps -e -o args= | grep -c "^/usr/lib/postgresql/15/bin/postgres -D"' || true; }
# junit testcases of the restore_test step: "N passed F failed"
junit_objects() {
	local f=$T/$1/junit.xml
	echo "$(grep -c "<testcase classname=\"backup-verify\\.$STEP\"" "$f")" \
		"$(grep -A1 "<testcase classname=\"backup-verify\\.$STEP\"" "$f" | grep -c '<failure')"
}

# -- a run: backup, restore, every fingerprint equal ----------------------------
stage r1
t_ok "the stage passes" rc_is 0
t_ok "parent dir and backup changed, the restore test left nothing (ok)" \
	test "$(statuses r1)" = changed,changed,ok
box_exec cat "$B/manifest.json" >"$T/m1.json"
nobj=$(jq '[.databases[].objects[]] | length' "$T/m1.json")
# 2 tables + 1 matview + 3 sequences in postgres, 1 table + 1 sequence in app
t_ok "the manifest has both databases and 8 objects" \
	test "$(jq -r '.databases | map(.name) | join(",")' "$T/m1.json") $nobj" = "app,postgres 8"
t_ok "junit.xml has one testcase per object, none failed" \
	test "$(junit_objects r1)" = "$nobj 0"
t_ok "junit.xml names each testcase by database, kind and object" \
	grep -qE "<testcase classname=\"backup-verify\\.$STEP\" name=\"postgres: table public\\.events\"" "$T/r1/junit.xml"
t_ok "results.json: one passed test per object, backup and restored equal" \
	test "$(jr "$T/r1" "[.steps[] | select(.name == \"$STEP\") | .tests[] | select(.status == \"passed\") | .message | capture(\"^backup: (?<b>.*); restored: (?<a>.*)\$\") | .a == .b] | \"\\(length) \\(unique | join(\",\"))\"")" = "$nobj true"
t_ok "results.json: every file's sha256 was verified before restoring" \
	test "$(jr "$T/r1" ".steps[] | select(.name == \"$STEP\") | .details.sha256")" = "3 files verified"
t_ok "the live server kept running, the scratch cluster is gone" \
	test "$(postmasters) $(box_exec sh -c 'ls -d /tmp/stagehand-rt.* 2>/dev/null | wc -l')" = "1 0"

# -- the next run: a new backup, downloaded -----------------------------------------
box_psql postgres "insert into events (person) values (1)" >/dev/null
stage r2 --var "download_dir=$T/dl"
t_ok "the next run passes, with a new backup" \
	test "$RC $(statuses r2)" = "0 ok,changed,ok"
box_exec cat "$B/manifest.json" >"$T/m2.json"
t_ok "the new backup has the new row" \
	grep -qE '^2001 rows' <(jq -r '.databases[] | select(.name == "postgres") | .objects[] | select(.name == "public.events") | .fingerprint' "$T/m2.json")
dl_same() {
	local f
	cmp "$T/dl/manifest.json" "$T/m2.json" || return 1
	for f in $(jq -r '.globals.file, .databases[].file' "$T/m2.json"); do
		[ "$(sha256sum <"$T/dl/$f" | cut -d' ' -f1)" = \
			"$(jq -r --arg f "$f" '[.globals, .databases[]] | .[] | select(.file == $f) | .sha256' "$T/m2.json")" ] || return 1
	done
}
t_ok "download_dir holds the manifest and every file, sha256 as in the manifest" dl_same

# -- a dump altered after the backup --------------------------------------------------
box_exec sh -c "printf x >>$B/app.dump"
stage r3 --tags verify
t_ok "verifying a tampered backup fails the stage" rc_is 1
t_ok "only the restore test ran" test "$(statuses r3)" = skipped,skipped,failed
t_ok "the error names the file and both sums; nothing was restored" \
	grep -qE "^$B/app.dump: sha256 [0-9a-f]{64} \([0-9]+ bytes\), the manifest says [0-9a-f]{64} \([0-9]+ bytes\): the backup was altered or is damaged; nothing was restored\$" \
	<(jr "$T/r3" '.steps[] | select(.status == "failed") | .error.message')
t_ok "junit.xml carries the failure, naming the file" \
	grep -qF "<failure message=\"$B/app.dump: sha256 " "$T/r3/junit.xml"
t_ok "no scratch cluster was made" test "$(box_exec sh -c 'ls -d /tmp/stagehand-rt.* 2>/dev/null | wc -l')" = 0

t_done
