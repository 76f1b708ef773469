#!/usr/bin/env bash
# tests/demo.sh: `make demo`. On a Debian 12 machine (as root): installs
# what it needs, builds stagehand, builds the signed test binary caches
# (a PostgreSQL 15 bundle made from Debian's binaries, two keys) and serves
# them with nginx on the test box's gateway, brings up the test box, runs
# stage 1 then stage 2 (its test-box form, stages/testbox-stage2.yml)
# against it, runs both again (nothing left to
# change), upgrades Postgres in place to a second bundle, tries a broken
# bundle (rolled back automatically), prints the report summaries and what
# the box looks like from outside; then, on a second box, provisions a
# small Postgres 13 instance with data (the caches' 13 bundle), upgrades it
# to 15 with stages/major-upgrade.yml (the time of each phase, the backup's
# fingerprints proved) and runs stages/backup-verify.yml on it; and tears
# the boxes and nginx down, also on failure or Ctrl-C.
#
#   tests/demo.sh            reports go to ./demo-report (DEMO_REPORT=DIR)
#
# The caches are kept in /tmp/stagehand-nixcache (STAGEHAND_NIXCACHE) and
# reused while the host's PostgreSQL files do not change.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
	echo "demo.sh: run as root (sudo make demo): it installs packages and the test box makes network namespaces and mounts" >&2
	exit 2
fi

# shellcheck source=tests/box.sh
. tests/box.sh
out=${DEMO_REPORT:-demo-report}
caches=$BOX_CACHES
name=demo$(printf '%04x' $(($$ % 65536)))
www=$(mktemp -d /tmp/stagehand-demo-www.XXXXXX)
t0=$(date +%s%N)

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	echo
	echo "== tearing down (boxes $name and ${name}u, nginx)"
	box_teardown
	rm -rf "$www"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '\n== %s\n' "$*"; }
elapsed() { echo "$((($(date +%s%N) - t0) / 1000000))"; }
# One line per report: status, steps, changes, tests, time.
summary() { # DIR
	jq -r '"\(.stage): \(.status) - \(.counts.total) steps, \(.counts.changed) changed, " +
		"\(.counts.failed) failed; tests \([.steps[].tests[]? | select(.status == "passed")] | length)" +
		"/\([.steps[].tests[]?] | length) passed; \(.duration_ms / 1000)s"' "$1/results.json"
}

say "dependencies and build (tests/deps.sh, make stagehand)"
tests/deps.sh
make -s stagehand
./stagehand --version

say "signed binary caches ($caches)"
caches_make "$www/paths.env"
# shellcheck disable=SC1091
. "$www/paths.env"
echo "bundle 1: $BUNDLE_ROOT"
echo "bundle 2: $BUNDLE2_ROOT"
echo "broken:   $BROKEN_ROOT"
echo "bundle 13: $BUNDLE13_ROOT"
echo "keys:     ${KEY1_PUB%%:*}, ${KEY2_PUB%%:*}"

say "test box $name"
box_up "$name"
conn=("${SSH_ARGS[@]}")

caches_serve "$www" "$TESTBOX_GATEWAY"
url=$CACHE_URL
echo "caches served at $url/cache1 and $url/cache2 (nginx)"

rm -rf "$out"
mkdir -p "$out"
stages/testbox-vars.sh "$www/paths.env" "$url" >"$out/testbox.vars.yml"
stages/testbox-vars.sh "$www/paths.env" "$url" BUNDLE2_ROOT >"$out/bundle2.vars.yml"
stages/testbox-vars.sh "$www/paths.env" "$url" BROKEN_ROOT >"$out/broken.vars.yml"
v1=(--vars-file "$out/testbox.vars.yml")

say "stagehand run stages/stage1.yml --vars-file $out/testbox.vars.yml"
./stagehand run stages/stage1.yml "${conn[@]}" "${v1[@]}" --report "$out/stage1" -q

say "stagehand run stages/testbox-stage2.yml --vars-file $out/testbox.vars.yml"
./stagehand run stages/testbox-stage2.yml "${conn[@]}" "${v1[@]}" --report "$out/stage2"

say "stagehand report $out/stage1"
./stagehand report "$out/stage1"
say "stagehand report $out/stage2"
./stagehand report "$out/stage2"

say "both stages again: nothing left to change"
./stagehand run stages/stage1.yml "${conn[@]}" "${v1[@]}" --report "$out/stage1-again" -q
./stagehand run stages/testbox-stage2.yml "${conn[@]}" "${v1[@]}" --report "$out/stage2-again" -q

say "stagehand run stages/upgrade.yml: in place to bundle 2"
./stagehand run stages/upgrade.yml "${conn[@]}" --vars-file "$out/bundle2.vars.yml" \
	--report "$out/upgrade"
say "stagehand report $out/upgrade"
./stagehand report "$out/upgrade"

say "stagehand run stages/upgrade.yml: a broken bundle (its postgres exits 1) is rolled back"
rc=0
./stagehand run stages/upgrade.yml "${conn[@]}" --vars-file "$out/broken.vars.yml" \
	--report "$out/upgrade-broken" -q || rc=$?
echo "exit $rc (the run fails, even though the rollback worked)"
jq -r '.steps[] | select(.rescue and .output != null and .output != "") |
	"  \(.name): \(.output | rtrimstr("\n") | split("\n") | last)"' \
	"$out/upgrade-broken/results.json"
[ "$rc" = 1 ]

say "the box, seen from outside"
box_exec sh -c '
	echo "profile: $(readlink /var/lib/postgresql/.nix-profile) -> $(readlink -f /var/lib/postgresql/.nix-profile)"
	ls -l /usr/bin/psql /usr/bin/pg_config
	/usr/bin/pg_config --version
	echo "links in /usr/lib/postgresql/bin: $(ls /usr/lib/postgresql/bin | wc -l)"
	su postgres -c "/usr/bin/psql -X -At -c \"select version()\""
	echo "migrations recorded: $(su postgres -c "/usr/bin/psql -X -At -c \"select count(*) from supabase_migrations.schema_migrations\"")"'

# A second box: a small instance on Postgres 13 (Debian 11's, the
# caches' BUNDLE13_ROOT) that holds data, provisioned as
# tests/t0885-major-upgrade.sh does, then upgraded to 15 with a verified
# backup.
say "a Postgres 13 instance with data (box ${name}u, tests/fixtures/major-upgrade)"
box_up "${name}u"
conn=("${SSH_ARGS[@]}")
caches_serve "$www/u" "$TESTBOX_GATEWAY"
mu_vars() { # ROOT MAJOR: the vars of the instance and of the upgrade
	cat <<YML
nix_cache1: $CACHE_URL/cache1
nix_cache2: $CACHE_URL/cache2
nix_key1: "$KEY1_PUB"
nix_key2: "$KEY2_PUB"
bundle_x86_64_linux: $1
bundle_aarch64_linux: /nix/store/00000000000000000000000000000000-no-test-bundle-for-this-system
pg_share_subdir: share/postgresql/$2
old_pg_share_subdir: share/postgresql/13
new_major: "$2"
pg_config_file: /var/lib/postgresql/instance.conf
pg_log_file: /var/lib/postgresql/postgresql.log
YML
}
mu_vars "$BUNDLE13_ROOT" 13 >"$out/pg13.vars.yml"
mu_vars "$BUNDLE_ROOT" 15 >"$out/major-upgrade.vars.yml"
box_exec sh -c 'install -d -o postgres -g postgres -m 2775 /var/run/postgresql &&
	echo "log_min_messages = warning" >/var/lib/postgresql/instance.conf &&
	chown postgres: /var/lib/postgresql/instance.conf'
./stagehand run tests/fixtures/major-upgrade/instance.yml "${conn[@]}" --include-root . \
	--vars-file "$out/pg13.vars.yml" --report "$out/instance13" -q
box_exec su postgres -c '/usr/bin/psql -X -At -c "select version()";
	echo "rows: $(/usr/bin/psql -X -At -c "select count(*) from people") people, $(/usr/bin/psql -X -At -c "select count(*) from events") events, $(/usr/bin/psql -X -At -d app -c "select count(*) from orders") orders in app"'

say "stagehand run stages/major-upgrade.yml: 13 -> 15 with a verified backup"
./stagehand run stages/major-upgrade.yml "${conn[@]}" --vars-file "$out/major-upgrade.vars.yml" \
	--report "$out/major-upgrade" -q
echo "phases (results.json, per step):"
# The steps of playbooks/postgres-aliases.yml as one phase.
{
	jq -r '[.steps[] | select((.rescue | not) and .status != "skipped")] |
		(map(select(.source | startswith("playbooks/postgres-aliases.yml"))) | .[0].index) as $links |
		group_by(if (.source | startswith("playbooks/postgres-aliases.yml")) then $links else .index end) |
		sort_by(.[0].index)[] |
		if length > 1 then "\(map(.duration_ms) | add)\tThe alias links to the new bundle (\(length) steps)"
		else "\(.[0].duration_ms)\t\(.[0].name)" end' \
		"$out/major-upgrade/results.json"
	jq -r '"\(.duration_ms)\ttotal"' "$out/major-upgrade/results.json"
} | awk -F '\t' '{ printf "  %7.2f s  %s\n", $1 / 1000, $2 }'
jq -r '.steps[] | select(.name == "Upgrade the data") | .output | rtrimstr("\n") | split("\n") | last |
	"  within \"Upgrade the data\": \(.)"' "$out/major-upgrade/results.json"
jq -r '.steps[] | select(.name == "Upgrade report") | .output | rtrimstr("\n")' "$out/major-upgrade/results.json"
jq -r '.steps[] | select(.name == "Fingerprints equal the backup'"'"'s") |
	"backup verified: \([.tests[] | select(.status == "passed")] | length)/\(.tests | length) objects " +
	"(tables, materialized view, sequences) served by 15 with the fingerprints of the 13 backup (\(.status))"' \
	"$out/major-upgrade/results.json"
box_exec su postgres -c '/usr/bin/psql -X -At -c "select version()"'

say "stagehand run stages/backup-verify.yml: the scheduled backup verification, on the 15 instance"
./stagehand run stages/backup-verify.yml "${conn[@]}" --var "download_dir=$out/backup" \
	--report "$out/backup-verify" -q
echo "junit.xml: $(grep -c '<testcase classname="backup-verify\.The backup restores' "$out/backup-verify/junit.xml") object testcases, $(grep -c '<failure' "$out/backup-verify/junit.xml") failures; the backup downloaded to $out/backup"
jq -r '.steps[] | select(.name == "The backup restores with every fingerprint") |
	"restore test: \(.details.sha256), \([.tests[] | select(.status == "passed")] | length)/\(.tests | length) fingerprints equal after the restore (\(.details.server_version))"' \
	"$out/backup-verify/results.json"

say "summary"
for d in stage1 stage2 stage1-again stage2-again upgrade upgrade-broken instance13 major-upgrade backup-verify; do
	printf '%-15s %s\n' "$d" "$(summary "$out/$d")"
done
echo "live generation: $(jq -r '.steps[] | select(.name == "Live generation after the rollback") | .output' \
	"$out/upgrade-broken/results.json" | sed -n 's/^live generation: //p')"
echo "reports: $out/{stage1,stage2,stage1-again,stage2-again,upgrade,upgrade-broken,instance13,major-upgrade,backup-verify}/"
echo "demo finished in $(($(elapsed) / 1000)).$(($(elapsed) % 1000 / 100))s"
again=$(jq -s '[.[].counts.changed] | add' "$out/stage1-again/results.json" "$out/stage2-again/results.json")
[ "$again" = 0 ] || { echo "demo: the second run changed $again steps" >&2; exit 1; }
