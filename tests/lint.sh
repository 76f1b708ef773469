#!/bin/sh
# tests/lint.sh: functions STYLE.md bans must not appear in the code, no
# struct buf result is cast away, and the sources are as clang-format
# (.clang-format) writes them. Comments are stripped first for the first two
# (cpp -fpreprocessed keeps everything else), so prose like "it gets (...)"
# is not a hit.
set -u
cd "$(dirname "$0")/.." || exit 1
echo "1..3"

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

# clang-format --dry-run -Werror names each file and line it would change;
# `make format` rewrites them.
fmt=$(find provisioner tests/unit tests/fuzz tests/integration -name '*.[ch]' |
	sort | xargs clang-format --dry-run -Werror 2>&1)
if [ -n "$fmt" ]; then
	echo "not ok 3 - sources are not as clang-format writes them (make format)"
	printf '%s\n' "$fmt" | grep -E '^[^ ]+:[0-9]+:[0-9]+:' | head -20 | sed 's/^/#   /'
else
	echo "ok 3 - sources are as clang-format writes them"
fi
