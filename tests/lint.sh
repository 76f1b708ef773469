#!/bin/sh
# tests/lint.sh: functions STYLE.md bans must not appear in the code, and
# no struct buf result is cast away. Comments are stripped first (cpp
# -fpreprocessed keeps everything else), so prose like "it gets (...)" is
# not a hit.
set -u
cd "$(dirname "$0")/.." || exit 1
echo "1..2"

# lint N DESCRIPTION-IF-CLEAN DESCRIPTION-IF-HIT REGEX: one TAP line.
lint() {
	hits=""
	for f in $(find provisioner -name '*.[ch]' | sort); do
		h=$(cpp -fpreprocessed -P -w "$f" 2>/dev/null | grep -nE "$4" || true)
		[ -z "$h" ] || hits="$hits$f: $h
"
	done
	if [ -n "$hits" ]; then
		echo "not ok $1 - $3"
		printf '%s' "$hits" | sed 's/^/#   /'
	else
		echo "ok $1 - $2"
	fi
}

lint 1 "sources use no banned function (STYLE.md rule 11)" \
	"sources use banned functions" \
	'\b(sprintf|vsprintf|strcpy|strcat|strncat|strncpy|strtok|gets|sscanf|atoi|atol|strtol|strtoul|strtoll|strtoull)[[:space:]]*\('
lint 2 "no (void)buf_ cast: buffer failures are sticky and checked" \
	"sources cast a struct buf result to (void)" \
	'\(void\)[[:space:]]*buf_'
