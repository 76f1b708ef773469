#!/bin/sh
# tests/lint.sh: functions STYLE.md bans must not appear in the sources.
set -u
cd "$(dirname "$0")/.."
banned='\b(sprintf|vsprintf|strcpy|strcat|strncat|strncpy|strtok|gets|sscanf|atoi|atol|strtol|strtoul|strtoll|strtoull)[[:space:]]*\('
hits=$(grep -nE "$banned" provisioner/*.[ch] provisioner/steps/*.[ch] || true)
if [ -n "$hits" ]; then
	echo "not ok 1 - sources use banned functions"
	echo "$hits" | sed 's/^/#   /'
else
	echo "ok 1 - sources use no banned function (STYLE.md rule 11)"
fi
