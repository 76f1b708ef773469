#!/usr/bin/env bash
# bench/migrations.sh: a directory of dbmate migrations applied by the
# `migrations` step against the loop of `psql -f` that a shell script on
# the image runs, on a PostgreSQL 15 cluster in the test box.
#
#   bench/migrations.sh     (run as root: the test box needs it)
#
# Work measured (each on a freshly created empty database):
#   "first run"  BENCH_MIGRATIONS (default 200) generated migrations, each
#                a table, an index, ten rows and a function:
#                  stagehand  `stagehand run` of one `migrations` step
#                             (become: postgres, the socket dir): connect,
#                             lock, tracking and checksum tables, one
#                             transaction per file with its version and
#                             sha256 recorded; wall clock of the command
#                  psql loop  one ssh to the box running a shell loop over
#                             the up sections already on the box: per file
#                             `sudo -u postgres psql -X -1 -v ON_ERROR_STOP=1
#                             -f FILE -c "INSERT INTO schema_migrations .."`
#                             (the file and its version in one transaction,
#                             what a migrate.sh does; no checksums, no
#                             pending check)
#   "re-run"     stagehand again with nothing pending
# Every run is checked: the database must have all the tables and all the
# versions recorded; the re-run must report the step ok. It prints the
# median seconds, the ratio psql loop / stagehand and the targets (>= 5x
# faster on the first run; re-run under 0.2 s) as information: no timing
# decides the exit status. Exit 0 when the bench ran, 1 when a tool failed
# to do the work or the setup failed, 2 on usage.
#
# Environment:
#   STAGEHAND=PATH          binary to measure (default ./stagehand, built
#                           with `make` if missing)
#   BENCH_RUNS=N            runs per measurement (default 3)
#   BENCH_MIGRATIONS=N      migrations generated (default 200)
#   BENCH_KEEP=1            keep the temp dir
set -euo pipefail
export LC_ALL=C.UTF-8 NO_COLOR=1

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$TOP"
STAGEHAND=${STAGEHAND:-$TOP/stagehand}
case $STAGEHAND in /*) ;; *) STAGEHAND=$TOP/$STAGEHAND ;; esac
RUNS=${BENCH_RUNS:-3}
NMIG=${BENCH_MIGRATIONS:-200}
# shellcheck source=tests/box.sh
. "$TOP/tests/box.sh"

say() { echo "bench: $*" >&2; }
die() {
	echo "bench: $*" >&2
	exit 1
}
for v in RUNS NMIG; do
	[[ ${!v} =~ ^[1-9][0-9]{0,3}$ ]] || {
		echo "bench: $v must be a positive integer below 10000, got '${!v}'" >&2
		exit 2
	}
done
(($# == 0)) || {
	sed -n 's/^#   bench/bench/p' "$0" >&2
	exit 2
}
((EUID == 0)) || die "run as root (the test box needs it)"
[[ -x $BOX_PGBIN/initdb ]] || die "PostgreSQL 15 is not installed ($BOX_PGBIN): run tests/deps.sh"
command -v jq >/dev/null || die "jq is missing: run tests/deps.sh"
if [[ ! -x $STAGEHAND ]]; then
	say "building stagehand"
	make -C "$TOP" stagehand >&2
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/stagehand-bench.XXXXXX")
BOX=benchm$$
BOX=${BOX:0:12}
cleanup() {
	box_teardown
	if [[ ${BENCH_KEEP:-} == 1 ]]; then say "kept $TMP"; else rm -rf "$TMP"; fi
	return 0
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "starting test box $BOX and its PostgreSQL"
box_up "$BOX" || die "test box $BOX did not come up"
box_pg_start || die "PostgreSQL did not start in the box"

# ------------------------------------------------------------ the migrations

mkdir -p "$TMP/db" "$TMP/up" "$TMP/log"
for ((i = 1; i <= NMIG; i++)); do
	n=$(printf '%04d' "$i")
	cat >"$TMP/db/${n}_table_$n.sql" <<EOF
-- migrate:up
CREATE TABLE t_$n (id int PRIMARY KEY, name text NOT NULL);
CREATE INDEX t_${n}_name ON t_$n (name);
INSERT INTO t_$n SELECT g, 'row ' || g FROM generate_series(1, 10) g;
CREATE FUNCTION f_$n() RETURNS bigint LANGUAGE sql AS \$\$ SELECT count(*) FROM t_$n \$\$;
-- migrate:down
DROP FUNCTION f_$n();
DROP TABLE t_$n;
EOF
	sed '/^-- migrate:down/,$d' "$TMP/db/${n}_table_$n.sql" >"$TMP/up/${n}_table_$n.sql"
done
box_exec sh -c 'rm -rf /tmp/mig && mkdir -p /tmp/mig' &&
	tar -C "$TMP/up" -cf - . | box_exec tar -C /tmp/mig -xf - &&
	box_exec chmod -R a+rX /tmp/mig || die "could not copy the up sections to the box"

cat >"$TMP/mig.yml" <<'EOF'
stagehand: 1
stage: bench-migrations
steps:
  - name: migrations
    become: postgres
    migrations:
      host: /tmp/pg/sock
      port: 5433
      database: bench
      dir: db
EOF

# The loop a migrate.sh runs on the image, started over one ssh.
cat >"$TMP/loop.sh" <<EOF
set -e
cd /tmp/mig
$BOX_PGBIN/psql -X -q -h /tmp/pg/sock -p 5433 -d bench -v ON_ERROR_STOP=1 \
	-c 'CREATE TABLE IF NOT EXISTS schema_migrations (version varchar(128) PRIMARY KEY)'
for f in *.sql; do
	$BOX_PGBIN/psql -X -q -1 -h /tmp/pg/sock -p 5433 -d bench -v ON_ERROR_STOP=1 \
		-f "\$f" -c "INSERT INTO schema_migrations VALUES ('\${f%%_*}')"
done
EOF
SSH=(ssh -F /dev/null -i "$TESTBOX_KEY" -o IdentitiesOnly=yes
	-o UserKnownHostsFile="$TESTBOX_KNOWN_HOSTS" -o GlobalKnownHostsFile=/dev/null
	-o StrictHostKeyChecking=yes -o BatchMode=yes -o LogLevel=ERROR
	-p "$TESTBOX_PORT" "$TESTBOX_USER@$TESTBOX_HOST")

fresh_db() {
	box_psql postgres 'DROP DATABASE IF EXISTS bench' >/dev/null &&
		box_psql postgres 'CREATE DATABASE bench' >/dev/null
}
applied_ok() {
	local got
	got=$(box_psql bench "SELECT (SELECT count(*) FROM pg_tables WHERE tablename LIKE 't\_%') || ',' || (SELECT count(*) FROM schema_migrations)")
	[[ $got == "$NMIG,$NMIG" ]] || {
		say "expected $NMIG tables and versions, found $got"
		return 1
	}
}
run_stagehand() { "$STAGEHAND" run "$TMP/mig.yml" "${SSH_ARGS[@]}" --report "$TMP/report" -q; }
run_psql() { "${SSH[@]}" sudo -n -u postgres sh <"$TMP/loop.sh"; }
rerun_ok() { [[ $(jq -r '.steps[0].status' "$TMP/report/results.json") == ok ]]; }

elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
	if (NR % 2) printf "%.3f", v[(NR + 1) / 2]; else printf "%.3f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# timed PREP CHECK CMD: the median seconds of RUNS runs, or FAILED
timed() {
	local prep=$1 check=$2 cmd=$3 n t0 t1 times=()
	for ((n = 1; n <= RUNS; n++)); do
		$prep || return 1
		t0=$EPOCHREALTIME
		$cmd >"$TMP/log/$cmd.$n" 2>&1 || {
			tail -n 15 "$TMP/log/$cmd.$n" | sed 's/^/    /' >&2
			return 1
		}
		t1=$EPOCHREALTIME
		$check || return 1
		times+=("$(elapsed "$t0" "$t1")")
	done
	median "${times[@]}"
}

FAILED=0
say "first run: stagehand ($RUNS runs)"
sh_first=$(timed fresh_db applied_ok run_stagehand) || { sh_first=FAILED; FAILED=1; }
say "re-run: stagehand ($RUNS runs)"
sh_again=$(timed true rerun_ok run_stagehand) || { sh_again=FAILED; FAILED=1; }
say "first run: psql loop over ssh ($RUNS runs)"
psql_first=$(timed fresh_db applied_ok run_psql) || { psql_first=FAILED; FAILED=1; }

ratio() { [[ $1 != FAILED && $2 != FAILED ]] && awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1fx", a / b }' || echo -; }
echo
echo "$NMIG migrations, median of $RUNS runs (seconds)"
printf '  %-34s %9s\n' "stagehand, first run" "$sh_first"
printf '  %-34s %9s\n' "psql -f loop over ssh, first run" "$psql_first"
printf '  %-34s %9s   (target: >= 5x)\n' "ratio psql loop / stagehand" "$(ratio "$psql_first" "$sh_first")"
printf '  %-34s %9s   (target: < 0.2 s)\n' "stagehand, re-run, nothing pending" "$sh_again"
exit "$FAILED"
