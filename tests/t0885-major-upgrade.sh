#!/usr/bin/env bash
# stages/major-upgrade.yml on the test box, 13 -> 15 through the real
# closure path: an instance provisioned with the Postgres 13 bundle (Debian
# 11's packages, BUNDLE13_ROOT of the signed test caches) in the postgres
# profile, the alias links, a cluster started with its own config file and
# a data set with enums, arrays, jsonb, identity columns, a materialized
# view and sequences in two databases (tests/fixtures/major-upgrade).
# The happy path: the server is 15 afterwards, every fingerprint equals
# the backup's, the old data dir is kept, the profile and the links are
# the 15 bundle's; a second run changes nothing. method: dump restores
# the backup into the new cluster instead. Failure injection: a
# setting the new major no longer knows (the new server does not start),
# a row deleted after the upgrade (the after_upgrade hook) and a column
# type pg_upgrade --check refuses: each ends with exit 1, the
# old major serving the backup's fingerprints, the profile and links back
# on the 13 bundle, the new dir kept as .failed, and a report that says
# what failed and that the rollback held. SIGTERM while pg_upgrade runs,
# then a re-run: it completes or rolls back, with one server answering.
. "$(dirname "$0")/lib.sh"
t_plan 49

PROF=/var/lib/postgresql/.nix-profile
DATA=/var/lib/postgresql/data
CONF=/var/lib/postgresql/instance.conf
FIX=$TOP/tests/fixtures/major-upgrade

caches_make "$T/paths.env" 2>"$T/caches.err" || {
	cat "$T/caches.err" >&2
	t_not "the test caches are built"
	t_done
	exit 1
}
# shellcheck disable=SC1091
. "$T/paths.env"
t_ok "the caches have the Postgres 13 bundle" test -n "${BUNDLE13_ROOT:-}"

# vars ROOT MAJOR: the vars file of both manifests for bundle ROOT.
vars() {
	local none=/nix/store/00000000000000000000000000000000-no-test-bundle-for-this-system
	cat <<YML
nix_cache1: $URL/cache1
nix_cache2: $URL/cache2
nix_key1: "$KEY1_PUB"
nix_key2: "$KEY2_PUB"
bundle_x86_64_linux: $1
bundle_aarch64_linux: $none
pg_share_subdir: share/postgresql/$2
old_pg_share_subdir: share/postgresql/13
new_major: "$2"
pg_config_file: $CONF
pg_log_file: /var/lib/postgresql/postgresql.log
YML
}
same() { [ "$1" = "$2" ] || { echo "got '$1', wanted '$2'"; return 1; }; }
psql_box() { box_exec su postgres -c "/usr/bin/psql -X -At -d ${2:-postgres} -c \"$1\""; }
with_status() { jr "$1" "[.steps[] | select(.status == \"$2\") | .name] | join(\", \")"; }
step_out() { jr "$1" ".steps[] | select(.name == \"$2\") | .output"; }
stage() { # REPORT VARS [ARGS...]
	local r=$1 v=$2
	shift 2
	sh_run run "$TOP/stages/major-upgrade.yml" "${SSH_ARGS[@]}" --report "$T/$r" \
		--vars-file "$v" "$@"
}
# instance NAME [CONFIG-LINE]: a new box with a provisioned 13 instance.
instance() {
	box_up "$(box_name "$1")" || return 1
	caches_serve "$T/www-$1" "$TESTBOX_GATEWAY" || return 1
	URL=$CACHE_URL
	vars "$BUNDLE13_ROOT" 13 >"$T/v13.yml"
	vars "$BUNDLE_ROOT" 15 >"$T/v15.yml"
	vars "$BROKEN_ROOT" 15 >"$T/vbroken.yml"
	# The socket dir Debian's postgresql-common makes at boot.
	box_exec sh -c "install -d -o postgres -g postgres -m 2775 /var/run/postgresql &&
		printf '%s\n' 'log_min_messages = warning' '${2:-}' >$CONF && chown postgres: $CONF"
	sh_run run "$FIX/instance.yml" "${SSH_ARGS[@]}" --report "$T/i-$1" \
		--vars-file "$T/v13.yml" --include-root "$TOP"
	[ "$RC" = 0 ] || { cat "$T/out" "$T/err"; return 1; }
}
# The live server's major, data dir major, profile root and psql's root.
world() {
	echo "$(psql_box 'show server_version_num' | cut -c1-2)" \
		"$(box_exec cat $DATA/PG_VERSION)" \
		"$(box_exec readlink -f $PROF)" \
		"$(box_exec readlink -f /usr/bin/psql | sed 's|/lib/postgresql/.*||')"
}
# Every fingerprint test of step NAME in REPORT passed, and there are N.
all_equal() {
	local n
	n=$(jr "$1" "[.steps[] | select(.name == \"$2\") | .tests[] | select(.status == \"passed\" and (.message | test(\"^backup: (.*); live: \\\\1\$\")))] | length")
	[ "$n" = "$3" ] || { echo "$n equal fingerprints, wanted $3"; return 1; }
}

# ---------------------------------------------------------------- happy path
instance mu || { t_not "a Postgres 13 instance is provisioned"; t_done; exit 1; }
t_pass "a Postgres 13 instance is provisioned from the caches"
t_ok "13 serves the data, from the 13 bundle's profile" \
	test "$(world)" = "13 13 $BUNDLE13_ROOT $BUNDLE13_ROOT"
t_ok "the data set is there (3000 people, 500 orders in app)" \
	test "$(psql_box 'select count(*) from people') $(psql_box 'select count(*) from orders' app)" = "3000 500"

stage up "$T/v15.yml"
t_ok "the upgrade 13 -> 15 passes" rc_is 0
t_ok "15 serves the data dir, from the 15 bundle's profile and links" \
	test "$(world)" = "15 15 $BUNDLE_ROOT $BUNDLE_ROOT"
# Objects: 2 tables + 1 matview + 3 sequences (ticket_seq, 2 identities) in
# postgres, 1 table + 1 identity sequence in app.
t_ok "every fingerprint equals the backup's (8 objects)" \
	all_equal "$T/up" "Fingerprints equal the backup's" 8
t_ok "the backup's manifest says 13" \
	box_exec sh -c 'grep -q "\"server_version_num\": 130" /var/backups/postgresql/major-upgrade/manifest.json'
t_ok "the old data dir is kept, a 13 cluster" test "$(box_exec cat $DATA.pg13/PG_VERSION)" = 13
t_ok "pg_upgrade ran in copy mode (no hard links into the old dir)" \
	box_exec sh -c "[ \$(find $DATA.pg13/base -type f -links +1 | wc -l) = 0 ]"
t_ok "the report says what happened" \
	grep -qx "upgraded: Postgres 13 -> 15 in $DATA; the old data directory is kept at $DATA.pg13" \
	<(step_out "$T/up" "Upgrade report")
t_ok "the share links follow the 15 bundle" \
	test "$(box_exec readlink -f /usr/lib/postgresql/share/postgresql/extension/plpgsql.control | cut -d/ -f1-4)" = "$BUNDLE_SHARE"
t_ok "the profile keeps the 13 generation" test "$(box_exec readlink -f $PROF-1-link)" = "$BUNDLE13_ROOT"
t_ok "the rescue steps did not run" \
	test "$(jr "$T/up" '[.steps[] | select(.rescue) | .status] | unique | join(",")')" = skipped
t_ok "the state file is gone" box_exec test ! -e /run/stagehand-major-upgrade
{
	echo "phase durations (ms), 13 -> 15 on the test data:"
	jr "$T/up" '.steps[] | select(.rescue | not) | select(.duration_ms >= 50) | "  \(.duration_ms)\t\(.name)"'
	step_out "$T/up" "Upgrade the data" | sed 's/^/  /'
} >"$T/timings"
cat "$T/timings" >&2

stage up2 "$T/v15.yml"
t_ok "a second run passes" rc_is 0
t_ok "and changes nothing" test "$(with_status "$T/up2" changed)" = ""
t_ok "it says there was nothing to upgrade" \
	grep -qx "Postgres 15 is live in $DATA: nothing was upgraded" <(step_out "$T/up2" "Upgrade report")
t_ok "15 still serves the same data" test "$(world) $(psql_box 'select count(*) from people')" = "15 15 $BUNDLE_ROOT $BUNDLE_ROOT 3000"
psql_box 'insert into people (name) values (null)' >/dev/null
stage up3 "$T/v15.yml" --skip-tags verify
t_ok "after writes, a run with --skip-tags verify changes nothing either" \
	test "$RC $(with_status "$T/up3" changed)" = "0 "

# ---------------------------------------------------------- method: dump
instance md || { t_not "a third 13 instance is provisioned"; t_done; exit 1; }
stage dump "$T/v15.yml" --var method=dump
t_ok "the upgrade 13 -> 15 by restoring the backup passes" rc_is 0
t_ok "15 serves, from the 15 bundle's profile and links" \
	test "$(world)" = "15 15 $BUNDLE_ROOT $BUNDLE_ROOT"
t_ok "every fingerprint equals the backup's (8 objects)" \
	all_equal "$T/dump" "Fingerprints equal the backup's" 8
t_ok "both databases were restored (app, postgres)" \
	test "$(step_out "$T/dump" "Upgrade the data" | sed -n 's/^restored database //p' | sort | tr '\n' ' ')" = "app postgres "

# ------------------------------------------- the new server does not start
# A setting Postgres 14 removed: 13 runs with it, 15 refuses to start.
instance mf 'operator_precedence_warning = off' || { t_not "a second 13 instance is provisioned"; t_done; exit 1; }
before=$(psql_box 'select count(*) from events')
stage nostart "$T/v15.yml"
t_ok "an upgrade whose new server does not start fails (exit 1)" rc_is 1
t_ok "the failing step is the new server's start" \
	test "$(with_status "$T/nostart" failed)" = "Start the new server"
t_ok "its error quotes the new server's log" \
	sh -c "jq -r '.steps[] | select(.status == \"failed\") | .error.message' '$T/nostart/results.json' | grep -q 'unrecognized configuration parameter \"operator_precedence_warning\"'"
t_ok "the rescue ran: stop, move back, profile, links, start, proof, report" \
	same "$(jr "$T/nostart" '[.steps[] | select(.rescue) | .status] | join(",")')" \
	"ok,changed,changed,changed,changed,changed,changed,changed,ok,changed,ok,ok"
t_ok "the old server's fingerprints equal the backup's (8 objects)" \
	all_equal "$T/nostart" "The old server's fingerprints equal the backup's" 8
t_ok "13 serves again, from the 13 bundle's profile and links" \
	test "$(world)" = "13 13 $BUNDLE13_ROOT $BUNDLE13_ROOT"
t_ok "with the same rows" test "$(psql_box 'select count(*) from events')" = "$before"
t_ok "the new data dir is kept as .failed, a 15 cluster" \
	box_exec sh -c "cat $DATA.failed.*/PG_VERSION | grep -qx 15"
t_ok "the report says the rollback held" \
	grep -q "^rollback held: Postgres 13 serves $DATA with the backup's fingerprints\$" <(step_out "$T/nostart" "Rollback report")
t_ok "the terminal names the failure" grep -q 'Start the new server' "$T/out"
t_ok "the backup was moved aside for the next attempt" \
	box_exec sh -c 'ls -d /var/backups/postgresql/major-upgrade.rolled-back.* && ! test -e /var/backups/postgresql/major-upgrade'
t_ok "the state file is gone" box_exec test ! -e /run/stagehand-major-upgrade

# ------------------------------------------- a row lost after the upgrade
box_exec sh -c "sed -i '/operator_precedence_warning/d' $CONF"
stage loss "$T/v15.yml" \
	--var "after_upgrade=/usr/lib/postgresql/bin/psql -X -q -d postgres -c 'delete from events where id = 1'"
t_ok "an upgrade that loses a row fails (exit 1)" rc_is 1
t_ok "the fingerprint check fails, naming the table and both counts" \
	sh -c "jq -r '.steps[] | select(.status == \"failed\") | .name + \": \" + .error.message' '$T/loss/results.json' |
		grep -q \"^Fingerprints equal the backup's: fingerprints of the live server differ from the backup: postgres: public.events (2000 rows, md5 [0-9a-f]* -> 1999 rows\""
t_ok "the old server's fingerprints equal the backup's (8 objects)" \
	all_equal "$T/loss" "The old server's fingerprints equal the backup's" 8
t_ok "13 serves again with the row, and the rollback held" \
	test "$(world) $(psql_box 'select count(*) from events') $(step_out "$T/loss" "Rollback report" | grep -c '^rollback held')" = \
	"13 13 $BUNDLE13_ROOT $BUNDLE13_ROOT 2000 1"

# ------------------------------------------- pg_upgrade --check refuses
# pg_upgrade cannot carry reg* columns over (their OIDs change).
psql_box 'create table regs (r regproc); insert into regs select oid::regproc from pg_proc order by oid limit 1' >/dev/null
stage check "$T/v15.yml"
t_ok "an upgrade that pg_upgrade --check refuses fails (exit 1)" rc_is 1
t_ok "the failing step is the data upgrade, saying --check failed" \
	sh -c "test \"\$(jq -r '.steps[] | select(.status == \"failed\") | .name' '$T/check/results.json')\" = 'Upgrade the data' &&
		jq -r '.steps[] | select(.status == \"failed\") | .error.message, .output' '$T/check/results.json' | grep -q 'pg_upgrade --check failed'"
t_ok "the old server's fingerprints equal the new backup's (9 objects)" \
	all_equal "$T/check" "The old server's fingerprints equal the backup's" 9
t_ok "13 serves again, from the 13 bundle's profile and links" \
	test "$(world)" = "13 13 $BUNDLE13_ROOT $BUNDLE13_ROOT"
t_ok "the report says the rollback held" \
	grep -q "^rollback held: Postgres 13 serves" <(step_out "$T/check" "Rollback report")

# ------------------------------------------- SIGTERM in the middle, a re-run
instance mt || { t_not "a fourth 13 instance is provisioned"; t_done; exit 1; }
"$STAGEHAND" run "$TOP/stages/major-upgrade.yml" "${SSH_ARGS[@]}" --report "$T/term" \
	--vars-file "$T/v15.yml" >"$T/term.out" 2>&1 &
pid=$!
# Until pg_upgrade runs in the box (or the run is over).
for _ in $(seq 600); do
	box_exec sh -c 'ps -e -o comm= | grep -q "^pg_upgrade$"' && break
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.05
done
kill -TERM "$pid" 2>/dev/null || true
rc=0
wait "$pid" || rc=$?
t_ok "SIGTERM while pg_upgrade runs stops the run (exit $rc)" test "$rc" = 130
stage again "$T/v15.yml"
jr "$T/again" '.steps[] | select(.status == "failed") | "re-run: \(.name) failed: \(.error.message)"' >&2
# It completes (15, exit 0) or rolls back (13, exit 1, rollback held).
t_ok "the re-run completes or rolls back (exit $RC)" \
	sh -c "case '$RC' in
		0) test \"\$(jq -r '.steps[] | select(.name == \"Fingerprints equal the backup'\"'\"'s\") | .status' '$T/again/results.json')\" = ok ;;
		1) jq -r '.steps[] | select(.name == \"Rollback report\") | .output' '$T/again/results.json' | grep -q '^rollback held' ;;
		*) false ;; esac"
one_server() {
	local n
	n=$(box_exec sh -c 'ps -e -o args= | grep -c "/postgre[s] -D "')
	[ "$n" = 1 ] || { echo "$n postmasters"; box_exec sh -c 'ps -e -o args='; return 1; }
	same "$(psql_box 'select count(*) from people')" 3000
}
t_ok "exactly one server runs, and it serves the data" one_server
t_ok "the state file is gone" box_exec test ! -e /run/stagehand-major-upgrade

t_done
