#!/usr/bin/env bash
# tests/demo.sh: `make demo`. Brings up the built-in test box, runs the demo
# stage against it twice (the second run must change nothing), prints the
# report summaries and what the box looks like from outside, tears down.
set -euo pipefail
cd "$(dirname "$0")/.."

# The stand-in profile links Debian's PostgreSQL 15 binaries.
if ! [ -x /usr/lib/postgresql/15/bin/postgres ]; then
	echo "demo: installing postgresql-15" >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		--no-install-recommends postgresql-15 >/dev/null
fi

name=demo$(printf '%04x' $(($$ % 65536)))
out=${DEMO_REPORT:-demo-report}
rm -rf "$out"
trap 'tests/testbox/testbox down "$name" >/dev/null 2>&1 || true' EXIT

echo "== bringing up test box $name"
env_lines=$(tests/testbox/testbox up "$name")
while IFS= read -r line; do export "${line?}"; done <<<"$env_lines"
conn=(--target "ssh://$TESTBOX_USER@$TESTBOX_HOST:$TESTBOX_PORT"
	--identity "$TESTBOX_KEY" --known-hosts "$TESTBOX_KNOWN_HOSTS")

echo
echo "== stagehand plan stages/demo.yml (read-only)"
./stagehand plan stages/demo.yml "${conn[@]}" --report "$out/plan" -q

echo
echo "== stagehand run stages/demo.yml"
./stagehand run stages/demo.yml "${conn[@]}" --report "$out/run1"

echo
echo "== stagehand run stages/demo.yml again: nothing left to change"
./stagehand run stages/demo.yml "${conn[@]}" --report "$out/run2" -q

echo
echo "== stagehand report $out/run2"
./stagehand report "$out/run2"

echo
echo "== the box, seen from outside"
tests/testbox/testbox exec "$name" -- sh -c '
	id postgres
	ls -l /usr/bin/psql /usr/bin/pg_config /var/lib/postgresql/data
	/usr/bin/pg_config --version
	echo "links in /usr/lib/postgresql/bin: $(ls /usr/lib/postgresql/bin | wc -l)"'
echo
echo "changed on the second run: $(jq '.counts.changed' "$out/run2/results.json")"
echo "reports: $out/{plan,run1,run2}/ (results.json, junit.xml, stagehand.env, run.log)"
