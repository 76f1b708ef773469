#!/bin/sh
# tests/lint.sh: functions STYLE.md bans must not appear in the code, and
# no struct buf append has its result cast away: `(void)buf_...` would
# hide a failure that the sticky flag (util.h) reports at the point of use,
# so drop the cast and let the consumer check buf_failed().
# Comments are stripped first (cpp -fpreprocessed keeps everything else),
# so prose like "it gets (...)" is not a hit.
set -u
cd "$(dirname "$0")/.."
echo "1..2"
banned='\b(sprintf|vsprintf|strcpy|strcat|strncat|strncpy|strtok|gets|sscanf|atoi|atol|strtol|strtoul|strtoll|strtoull)[[:space:]]*\('
hits=""
for f in provisioner/*.[ch] provisioner/steps/*.[ch]; do
	h=$(cpp -fpreprocessed -P -w "$f" 2>/dev/null | grep -nE "$banned" || true)
	[ -z "$h" ] || hits="$hits$f: $h
"
done
if [ -n "$hits" ]; then
	echo "not ok 1 - sources use banned functions"
	printf '%s' "$hits" | sed 's/^/#   /'
else
	echo "ok 1 - sources use no banned function (STYLE.md rule 11)"
fi

hits=""
for f in $(find provisioner -name '*.[ch]' | sort); do
	h=$(cpp -fpreprocessed -P -w "$f" 2>/dev/null |
		grep -nE '\(void\)[[:space:]]*buf_' || true)
	[ -z "$h" ] || hits="$hits$f: $h
"
done
if [ -n "$hits" ]; then
	echo "not ok 2 - sources cast a struct buf result to (void)"
	printf '%s' "$hits" | sed 's/^/#   /'
else
	echo "ok 2 - no (void)buf_ cast: buffer failures are sticky and checked"
fi
