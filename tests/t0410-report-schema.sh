#!/usr/bin/env bash
# t0410-report-schema: the report files of synthetic runs (passed, failed
# with embedded tests, interrupted, unreachable target, plan, hostile
# values and secrets) are what their consumers expect: results.json
# validates against docs/results.schema.json, junit.xml parses and its
# counts add up, stagehand.env sources in sh and in bash to the same
# values results.json holds (hostile quoting runs nothing), and
# `stagehand report` gates on them.
#
# The runs come from the unit test binary test_report, which writes them
# into $TEST_REPORT_OUT (build/tests/test_report, or $UNIT_DIR/test_report).
. "$(dirname "$0")/lib.sh"
t_plan 41

unit=${UNIT_DIR:-$TOP/build/tests}/test_report
[ -x "$unit" ] || make -C "$TOP" -s "build/tests/test_report" >/dev/null 2>&1
out=$T/reports
scenarios="passed failed-tests interrupted unreachable plan hostile"

t_ok "test_report writes the synthetic report dirs" \
	env TEST_REPORT_OUT="$out" CMOCKA_MESSAGE_OUTPUT=TAP "$unit"

validate_json() { # dir
	python3 - "$TOP/docs/results.schema.json" "$1/results.json" <<'PY'
import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
jsonschema.Draft202012Validator.check_schema(schema)
doc = json.load(open(sys.argv[2], encoding="utf-8"))
v = jsonschema.Draft202012Validator(schema,
    format_checker=jsonschema.FormatChecker())
errors = list(v.iter_errors(doc))
for e in errors:
    print("%s: %s" % (list(e.absolute_path), e.message))
sys.exit(1 if errors else 0)
PY
}

# junit.xml parses; the suite counts match its testcases; one case per
# step, named "NN name" in step order.
validate_junit() { # dir
	python3 - "$1/junit.xml" "$1/results.json" <<'PY'
import json, re, sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
# XML 1.0 cannot hold these; the writer puts U+FFFD in their place.
xmlsafe = lambda s: re.sub("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]",
                           "\ufffd", s)
res = json.load(open(sys.argv[2], encoding="utf-8"))
assert root.tag == "testsuites" and root.get("name") == "stagehand", root.tag
suites = root.findall("testsuite")
assert len(suites) == 1, len(suites)
suite = suites[0]
stage = xmlsafe(res["stage"])
assert suite.get("name") == stage, (suite.get("name"), stage)
cases = suite.findall("testcase")
n = lambda tag: sum(1 for c in cases if c.find(tag) is not None)
for node in (root, suite):
    assert int(node.get("tests")) == len(cases), (node.get("tests"), len(cases))
    assert int(node.get("failures")) == n("failure")
    assert int(node.get("errors")) == n("error")
    assert int(node.get("skipped")) == n("skipped")
width = max(2, len(str(len(res["steps"]))))
step_cases = [c for c in cases if c.get("classname") == stage
              and c.get("name") not in ("connect", "run")]
want = ["%0*d %s" % (width, s["index"], xmlsafe(s["name"]))
        for s in res["steps"]]
assert [c.get("name") for c in step_cases] == want, ([c.get("name") for c in step_cases], want)
tests = sum(len(s["tests"]) for s in res["steps"])
assert len(cases) - len(step_cases) - (1 if res["error"] and not any(
    s["status"] in ("failed", "interrupted") for s in res["steps"]) else 0) == tests
PY
}

# Sources stagehand.env in the given shell (from an empty cwd, so an
# injected command would leave a file) and compares every value with
# results.json.
check_env() { # shell dir
	local sh=$1 dir=$2 cwd=$T/cwd-$RANDOM
	mkdir "$cwd"
	(cd "$cwd" && "$sh" -c '. "$1/stagehand.env" && for v in STATUS EXIT_CODE STAGE STEPS_TOTAL STEPS_CHANGED STEPS_FAILED FAILED_STEP REPORT_DIR TARGET_SYSTEM BOOT_ID CLOSURE_ROOT; do eval "printf %s=%s\\\\0 \"\$v\" \"\$STAGEHAND_$v\""; done' \
		"$sh" "$dir") >"$T/env.out" || return 1
	[ -z "$(ls -A "$cwd")" ] || { echo "sourcing created files:"; ls -A "$cwd"; return 1; }
	python3 - "$T/env.out" "$dir" <<'PY'
import json, os, sys
got = dict(x.split("=", 1) for x in
           open(sys.argv[1], "rb").read().decode("utf-8").split("\0") if x)
d = sys.argv[2]
r = json.load(open(os.path.join(d, "results.json"), encoding="utf-8"))
failed = [s["name"] for s in r["steps"] if s["status"] == "failed"]
t = r["target"] or {}
want = {
    "STATUS": r["status"], "EXIT_CODE": str(r["exit_code"]),
    "STAGE": r["stage"], "STEPS_TOTAL": str(r["counts"]["total"]),
    "STEPS_CHANGED": str(r["counts"]["changed"]),
    "STEPS_FAILED": str(r["counts"]["failed"]),
    "FAILED_STEP": failed[0] if failed else "",
    "REPORT_DIR": os.path.realpath(d),
    "TARGET_SYSTEM": t.get("system") or "", "BOOT_ID": t.get("boot_id") or "",
    "CLOSURE_ROOT": "",
}
bad = [(k, got.get(k), v) for k, v in want.items() if got.get(k) != v]
for b in bad:
    print("%s: got %r, want %r" % b)
sys.exit(1 if bad else 0)
PY
}

# What each scenario holds, from its sc_* function in
# tests/unit/test_report.c: junit.xml's tests, failures, errors and
# skipped (steps, embedded tests, and a "connect" case for the unreachable
# target), then status, exit code, steps total, changed and failed. The
# checks above compare the files with each other; these compare each with
# numbers this script knows.
declare -A KNOWN=(
	[passed]="3 0 0 1 passed 0 3 1 0"
	[failed-tests]="18 2 0 2 failed 1 3 0 1"
	[interrupted]="3 0 1 1 interrupted 1 3 1 0"
	[unreachable]="3 0 1 2 failed 69 2 0 0"
	[plan]="2 0 0 0 passed 0 2 0 0"
	[hostile]="4 2 0 1 failed 1 3 1 1"
)
known_counts() { # scenario dir
	local want=${KNOWN[$1]} junit env json
	junit=$(python3 -c 'import sys, xml.etree.ElementTree as E
r = E.parse(sys.argv[1]).getroot()
print(*(r.get(k) for k in ("tests", "failures", "errors", "skipped")))' "$2/junit.xml") &&
		env=$(sh -c '. "$1/stagehand.env" && echo "$STAGEHAND_STATUS $STAGEHAND_EXIT_CODE $STAGEHAND_STEPS_TOTAL $STAGEHAND_STEPS_CHANGED $STAGEHAND_STEPS_FAILED"' sh "$2") &&
		json=$(jq -r '"\(.status) \(.exit_code) \(.counts.total) \(.counts.changed) \(.counts.failed)"' "$2/results.json") ||
		return 1
	[ -n "$want" ] && [ "$junit $env" = "$want" ] && [ "$junit $json" = "$want" ] ||
		{ echo "want:    $want"; echo "junit+env:  $junit $env"; echo "junit+json: $junit $json"; return 1; }
}

for s in $scenarios; do
	d=$out/$s
	t_ok "$s: junit.xml, stagehand.env and results.json hold the scenario's known counts" known_counts "$s" "$d"
	t_ok "$s: results.json validates against docs/results.schema.json" validate_json "$d"
	t_ok "$s: junit.xml parses, one testcase per step and embedded test" validate_junit "$d"
	t_ok "$s: stagehand.env sourced by sh matches results.json" check_env sh "$d"
	t_ok "$s: stagehand.env sourced by bash matches results.json" check_env bash "$d"
done

hostile_stage=$'st\'age "$(touch pwned)" `id` $HOME\nline2 \\ & < > \x01 \xef\xbf\xbd end'
stage_is_hostile() {
	local got
	got=$(sh -c '. "$1/stagehand.env" && printf "%sX" "$STAGEHAND_STAGE"' sh "$out/hostile")
	[ "${got%X}" = "$hostile_stage" ]
}
t_ok "hostile: STAGEHAND_STAGE keeps quotes, newline and \$(...) literally" stage_is_hostile

no_secret_anywhere() {
	local f
	for f in results.json junit.xml stagehand.env; do
		[ -s "$out/hostile/$f" ] || { echo "no $f to search"; return 1; }
	done
	# Exit 1: every file searched, nothing found (2 would be an error).
	local rc=0
	grep -rlaF -e 'tok-123' -e 'k3y-' -e 'ss'"'"'w' -e 'pa"ss' -e 'pa\"ss' \
		-e 'pa&quot;ss' "$out/hostile" || rc=$?
	[ "$rc" = 1 ]
}
t_ok "hostile: no secret in any report file" no_secret_anywhere

# The gate: main.c maps report_show's -1 to exit 2.
t_exit 0 "stagehand report passes a passed run" "$STAGEHAND" report "$out/passed"
t_exit 0 "stagehand report passes a plan" "$STAGEHAND" report "$out/plan"
t_exit 1 "stagehand report fails a failed run" "$STAGEHAND" report "$out/failed-tests"
t_exit 1 "stagehand report fails an interrupted run" "$STAGEHAND" report "$out/interrupted"
t_exit 1 "stagehand report fails an unreachable target" "$STAGEHAND" report "$out/unreachable"
t_exit 2 "stagehand report refuses a dir without results.json" "$STAGEHAND" report "$T/nothing-here"
t_exit 2 "stagehand report refuses a truncated results.json" "$STAGEHAND" report "$out/bad-truncated"

recap_names_failed_step() {
	"$STAGEHAND" report "$out/failed-tests" >"$T/recap" 2>&1
	grep -q '^  failed  *0\.9s  pgTAP suite$' "$T/recap" &&
		grep -q 'error: remote command failed: exit 3' "$T/recap" &&
		grep -q '^stage2: failed — 1 ok, 0 changed, 1 failed, 0 skipped, 1 not run (12\.3s)$' "$T/recap"
}
t_ok "stagehand report prints the recap with the failed step and its error" recap_names_failed_step

t_done
