#!/usr/bin/env bash
# The backup and restore_test step kinds against the real test box and a
# live PostgreSQL 15 cluster in it (box_pg_start) that holds two databases:
# app (tests/fixtures/migration/data.sql and tests/fixtures/backup/
# identity.sql: an enum, arrays, jsonb, identity columns, materialized
# views, sequences) and postgres (one small table).
# backup writes pg_dump --format=custom per database, globals.sql and a
# manifest with each file's sha256 and size and every object's
# fingerprint; download copies it to the controller, sha256 checked;
# restore_test restores it into a scratch cluster with pg_restore --jobs
# and finds every fingerprint equal, one test per object; the scratch
# cluster is gone afterwards. A dump altered after the fact is refused
# before anything is restored; a restore whose data differs from the
# manifest (a manifest that says one row more) fails naming the table and
# both fingerprints; too little free space is refused naming both
# numbers; an existing backup is kept (or replaced with replace: true); a
# directory that is not a backup is refused; bad fields are manifest
# errors with file:line:column.
# shellcheck disable=SC2016 # $ in single quotes is for the box's shell
. "$(dirname "$0")/lib.sh"
t_plan 51

box_up "$(box_name bk)" || { t_not "test box comes up"; t_done; exit 1; }
t_ok "a PostgreSQL 15 cluster starts in the box" box_pg_start
t_ok "database app is created" box_psql postgres "CREATE DATABASE app"
t_ok "the backups' parent dir belongs to postgres" \
	box_exec sh -c 'mkdir -p /var/backups/t0880 && chown postgres: /var/backups/t0880'

FIX=$TOP/tests/fixtures
B=/var/backups/t0880
# postmasters running in the box (the live cluster is one)
postmasters() { box_exec sh -c 'ps -e -o args= | grep -c "^/usr/lib/postgresql/15/bin/postgres -D"' || true; }
scratch_dirs() { box_exec sh -c 'ls -d /tmp/stagehand-rt.* 2>/dev/null | wc -l'; }
statuses() { jr "$T/$1" '[.steps[].status] | join(",")'; }

cat >"$T/data.yml" <<YML
stagehand: 1
stage: backup-data
steps:
  - name: the data set
    become: postgres
    sql: {host: /tmp/pg/sock, port: 5433, database: app, files: [$FIX/migration/data.sql, $FIX/backup/identity.sql]}
  - name: a table in postgres
    become: postgres
    sql: {host: /tmp/pg/sock, port: 5433, database: postgres, files: [small.sql]}
YML
printf 'CREATE TABLE small (k text PRIMARY KEY, v int);\nINSERT INTO small VALUES ($$a$$, 1), ($$b$$, NULL);\n' >"$T/small.sql"
run r0 "$T/data.yml"
t_ok "the data set is loaded into the live cluster" rc_is 0

backup_yml() { # file dir [extra lines...]
	local f=$1 d=$2
	shift 2
	{
		printf 'stagehand: 1\nstage: backup\nsteps:\n  - name: backup\n    backup:\n'
		printf '      %s\n' "dir: $d" "socket_dir: /tmp/pg/sock" "port: 5433" \
			"bin_dir: /usr/lib/postgresql/15/bin" "$@"
	} >"$f"
}
restore_yml() { # file dir [extra lines...]
	local f=$1 d=$2
	shift 2
	{
		printf 'stagehand: 1\nstage: restore\nsteps:\n  - name: restore test\n    restore_test:\n'
		printf '      %s\n' "dir: $d" "bin_dir: /usr/lib/postgresql/15/bin" "$@"
	} >"$f"
}

# -- plan: would back up, changes nothing ----------------------------------------
backup_yml "$T/b1.yml" "$B/b1" "download: $T/dl"
{
	cat "$T/b1.yml"
	printf '  - name: restore test\n    restore_test:\n      dir: %s\n      jobs: 4\n' "$B/b1"
	printf '      bin_dir: /usr/lib/postgresql/15/bin\n'
} >"$T/br.yml"
before=$(box_snapshot)
sh_run plan "$T/br.yml" "${SSH_ARGS[@]}" --report "$T/p1"
t_ok "plan succeeds" rc_is 0
t_ok "plan says the backup would be made" \
	grep -qx "would back up 2 databases into $B/b1" <(jr "$T/p1" '.steps[0].changes[]')
t_ok "plan of restore_test: the backup is not there yet" \
	test "$(jr "$T/p1" '.steps[1].details.not_there_yet')" = "$B/b1/manifest.json"
t_ok "plan changed nothing on the box" test "$before" = "$(box_snapshot)"

# -- backup, with download, then restore_test: all equal ----------------------
run r1 "$T/br.yml"
t_ok "backup then restore_test pass" rc_is 0
t_ok "the backup changed, the restore test left nothing (ok)" test "$(statuses r1)" = changed,ok
t_ok "the backup reports its estimate and the free space" \
	test "$(jr "$T/r1" '.steps[0].details | (.estimate_bytes | tonumber > 0) and (.free_bytes | tonumber > 0)')" = true
M=$T/manifest.json
box_exec cat "$B/b1/manifest.json" >"$M"
t_ok "the manifest lists both databases, globals and the server version" \
	test "$(jq -r '[.format, .globals.file, (.databases | map(.name) | join(" ")), (.server_version_num / 10000 | floor)] | join(",")' "$M")" = \
	"stagehand-backup 1,globals.sql,app postgres,15"
t_ok "the dumps are custom-format archives (PGDMP)" \
	test "$(box_exec sh -c "head -c 5 $B/b1/app.dump; echo; head -c 5 $B/b1/postgres.dump")" = "PGDMP
PGDMP"
check_sums() { # dir: every file's sha256 and size are the manifest's
	local f sum size
	for f in $(jq -r '.globals.file, .databases[].file' "$M"); do
		sum=$(box_exec sha256sum "$1/$f" | cut -d' ' -f1)
		size=$(box_exec stat -c %s "$1/$f")
		[ "$(jq -r --arg f "$f" '[.globals, .databases[]] | .[] | select(.file == $f) | "\(.sha256) \(.size)"' "$M")" = "$sum $size" ] ||
			{ echo "$f: $sum $size"; return 1; }
	done
}
t_ok "each file's sha256 and size in the manifest are the file's" check_sums "$B/b1"
t_ok "the app database's objects: 7 tables, 3 matviews, 6 sequences" \
	test "$(jq -r '.databases[] | select(.name == "app") | .objects | group_by(.kind) | map("\(.[0].kind) \(length)") | join(",")' "$M")" = \
	"matview 3,sequence 5,table 5"
t_ok "the identity column's sequence and the matviews are fingerprinted" \
	test "$(jq -r '.databases[] | select(.name == "app") | .objects[] | select(.name == "ledger.entries_id_seq" or .name == "ledger.later" or .name == "public.people") | .fingerprint' "$M" | sed 's/md5 [0-9a-f]*/md5 X/' | tr '\n' ';')" = \
	"last_value 300, is_called true;not populated;5000 rows, md5 X;"
t_ok "the backup directory is the cluster user's and private" \
	test "$(box_exec stat -c '%U %a' "$B/b1")" = "postgres 700"
t_ok "no partial directory is left next to it" \
	test "$(box_exec sh -c "ls -d $B/b1.* 2>/dev/null | wc -l")" = 0
nobj=$(jq '[.databases[].objects[]] | length' "$M")
t_ok "restore_test has one test per object ($nobj), all passed" \
	test "$(jr "$T/r1" '[.steps[1].tests[] | .status] | "\(length) \(unique | join(","))"')" = "$nobj passed"
t_ok "each test shows the backup's and the restored fingerprint, equal" \
	test "$(jr "$T/r1" '[.steps[1].tests[].message | capture("^backup: (?<b>.*); restored: (?<a>.*)$") | .b == .a] | unique | join(",")')" = true
t_ok "the big table's test names database, kind and object" \
	grep -qE '^backup: 5000 rows, md5 [0-9a-f]{32}; restored: 5000 rows, md5 [0-9a-f]{32}$' \
	<(jr "$T/r1" '.steps[1].tests[] | select(.name == "app: table public.people") | .message')
t_ok "junit.xml has a testcase per object" \
	test "$(grep -c '<testcase [^>]*name="\(app\|postgres\): ' "$T/r1/junit.xml")" = "$nobj"
t_ok "every sha256 was verified before restoring" \
	test "$(jr "$T/r1" '.steps[1].details.sha256')" = "3 files verified"
t_ok "the scratch cluster is gone: no work dir" test "$(scratch_dirs)" = 0
t_ok "and no server but the live one" test "$(postmasters)" = 1

# -- download ---------------------------------------------------------------------
dl_same() {
	local f
	cmp "$T/dl/manifest.json" "$M" || return 1
	for f in $(jq -r '.globals.file, .databases[].file' "$M"); do
		[ "$(sha256sum <"$T/dl/$f" | cut -d' ' -f1)" = \
			"$(jq -r --arg f "$f" '[.globals, .databases[]] | .[] | select(.file == $f) | .sha256' "$M")" ] || return 1
	done
	test "$(find "$T/dl" -name '.*' | wc -l)" = 0
}
t_ok "download copied the manifest and every file, sha256 as in the manifest" dl_same
t_ok "download says it verified the files" \
	grep -qx "downloaded 3 files to $T/dl, sha256 verified" <(jr "$T/r1" '.steps[0].changes[]')

# -- a second backup into the same dir keeps it; replace: true replaces it -----------
run r2 "$T/b1.yml"
t_ok "a backup already there is kept (ok, not changed)" test "$RC $(statuses r2)" = "0 ok"
t_ok "its manifest is the same file" cmp "$M" <(box_exec cat "$B/b1/manifest.json")
backup_yml "$T/b1r.yml" "$B/b1" "replace: true" "databases: [app]"
run r3 "$T/b1r.yml"
t_ok "replace: true makes a new backup" test "$RC $(statuses r3)" = "0 changed"
t_ok "the new backup holds only the database named" \
	test "$(box_exec cat "$B/b1/manifest.json" | jq -r '.databases | map(.name) | join(",")')" = app
t_ok "the old backup's dump is gone, nothing moved aside is left" \
	test "$(box_exec sh -c "ls $B/b1/postgres.dump $B/b1.* 2>/dev/null | wc -l")" = 0

# -- a dump altered after the fact is refused before anything is restored ----------
box_exec sh -c "cp -a $B/b1 $B/b2 && printf x >>$B/b2/app.dump"
restore_yml "$T/r2.yml" "$B/b2"
run r4 "$T/r2.yml"
t_ok "restore_test of an altered dump fails" rc_is 1
t_ok "the error names the file, both sums, and that nothing was restored" \
	grep -qE "^$B/b2/app.dump: sha256 [0-9a-f]{64} \([0-9]+ bytes\), the manifest says [0-9a-f]{64} \([0-9]+ bytes\): the backup was altered or is damaged; nothing was restored$" \
	<(jr "$T/r4" '.steps[0].error.message')
t_ok "no test ran and no scratch cluster was made" \
	test "$(jr "$T/r4" '.steps[0].tests | length') $(jr "$T/r4" '.steps[0].details.swept_workdirs // "none"') $(scratch_dirs)" = "0 none 0"

# -- a restore whose data differs from the manifest fails naming the table --------
box_exec sh -c "cp -a $B/b1 $B/b3 && sed -i 's/\"2000 rows, md5 /\"2001 rows, md5 /' $B/b3/manifest.json"
restore_yml "$T/r3.yml" "$B/b3"
run r5 "$T/r3.yml"
t_ok "a restore that lacks a row fails" rc_is 1
t_ok "the error names the table and both fingerprints" \
	grep -qE '^fingerprints differ after the restore: app: public\.events \(2001 rows, md5 [0-9a-f]{32} -> 2000 rows, md5 [0-9a-f]{32}\)$' \
	<(jr "$T/r5" '.steps[0].error.message')
t_ok "only that table's test failed" \
	test "$(jr "$T/r5" '[.steps[0].tests[] | select(.status == "failed") | .name] | join(",")')" = "app: table public.events"
t_ok "the scratch cluster is gone after the failure" test "$(scratch_dirs) $(postmasters)" = "0 1"

# -- a manifest that is not one -------------------------------------------------------
box_exec sh -c "cp -a $B/b1 $B/b4 && sed -i 's/\"kind\": \"table\"/\"kind\": \"index\"/' $B/b4/manifest.json"
restore_yml "$T/r4.yml" "$B/b4"
run r6 "$T/r4.yml"
t_ok "a manifest with an unknown object kind is refused with its position" \
	grep -qE "^backup manifest $B/b4/manifest.json:[0-9]+:[0-9]+: kind must be table, matview or sequence, not 'index'$" \
	<(jr "$T/r6" '.steps[0].error.message')

# -- free space, and what dir may be ----------------------------------------------------
backup_yml "$T/full.yml" "$B/b5" "margin_mb: 1000000000"
run r7 "$T/full.yml"
t_ok "a backup that would not fit fails" rc_is 1
t_ok "the error names the free bytes and the bytes needed" \
	grep -qE "^not enough free space in /[^ ]*: [0-9]+ bytes free, [0-9]+ needed \(estimated dump size [0-9]+ \+ margin 1048576000000000\)$" \
	<(jr "$T/r7" '.steps[0].error.message')
t_ok "and nothing was written" box_exec sh -c "! ls -d $B/b5*"
box_exec sh -c "mkdir -p $B/other && echo x >$B/other/file"
backup_yml "$T/other.yml" "$B/other" "replace: true"
run r8 "$T/other.yml"
t_ok "a directory that holds something else is refused, replace or not" \
	grep -qx "$B/other exists and is not a backup (no manifest.json): refusing to write into it" \
	<(jr "$T/r8" '.steps[0].error.message')
t_ok "and left as it was" test "$(box_exec cat $B/other/file)" = x

# -- manifest errors, before anything touches the target --------------------------------
check_err() { # description kind expected-message yaml-body-lines...
	local d=$1 kind=$2 want=$3
	shift 3
	{
		printf 'stagehand: 1\nstage: bad\nsteps:\n  - name: m\n    %s:\n' "$kind"
		printf '      %s\n' "$@"
	} >"$T/badm.yml"
	sh_run check "$T/badm.yml"
	# shellcheck disable=SC2016 # expanded by the inner sh
	t_ok "$d" sh -c '[ "$1" = 65 ] && grep -qF -- "$2" "$3"' _ "$RC" "$want" "$T/err"
}
check_err "backup: dir is required" backup "$T/badm.yml:6:7: missing required key 'dir'" "port: 5433"
check_err "backup: a relative dir is refused at its position" backup \
	"$T/badm.yml:6:12:" "dir: backups/x"
check_err "backup: margin_mb must be a number" backup "$T/badm.yml:7:18:" "dir: /b" "margin_mb: lots"
check_err "backup: an unknown key is named" backup "$T/badm.yml:7:7: unknown key 'jobs'" "dir: /b" "jobs: 2"
check_err "restore_test: jobs 0 is refused at its position" restore_test \
	"$T/badm.yml:7:13: jobs must be 1-64" "dir: /b" "jobs: 0"
check_err "restore_test: a bad locale is refused" restore_test \
	"$T/badm.yml:7:15: locale: letters, digits and _ . - @ only: 'C; rm'" "dir: /b" "locale: C; rm"

t_done
