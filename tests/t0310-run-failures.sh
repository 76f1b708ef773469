#!/usr/bin/env bash
# A failing step stops the run (exit 1), is named, and later steps do not
# run; --keep-going runs them; retries retry; an invalid manifest (65)
# executes nothing on the box.
. "$(dirname "$0")/lib.sh"
t_plan 18

box_up "$(box_name fl)" || { t_not "test box comes up"; t_done; exit 1; }

cat >"$T/fail.yml" <<'YML'
stagehand: 1
stage: failing
steps:
  - name: First works
    shell: "true"
  - name: Second fails
    shell: echo "about to fail" >&2; exit 3
  - name: Third never runs
    shell: touch /tmp/third-ran
YML
sh_run run "$T/fail.yml" "${SSH_ARGS[@]}" --report "$T/r1"
t_ok "a failing step exits 1" test "$RC" = 1
t_ok "the failing step is named on the terminal" grep -q 'Second fails' "$T/out"
t_ok "the failure shows the exit status" grep -q 'exit 3' "$T/out"
t_ok "the report marks the step failed" test "$(jr "$T/r1" '.steps[1].status')" = failed
t_ok "the report says the run failed" test "$(jr "$T/r1" .status)" = failed
t_ok "later steps are not run" test "$(jr "$T/r1" '.steps[2].status')" = not_run
t_ok "the later step left no trace" box_exec test ! -e /tmp/third-ran
t_ok "junit.xml records one failure" grep -q '<failure' "$T/r1/junit.xml"
t_ok "stagehand.env names the failed step" \
	sh -c ". '$T/r1/stagehand.env' && test \"\$STAGEHAND_FAILED_STEP\" = 'Second fails'"
t_exit 1 "stagehand report gates on the failed run" "$STAGEHAND" report "$T/r1"

sh_run run "$T/fail.yml" "${SSH_ARGS[@]}" --report "$T/r2" --keep-going
t_ok "--keep-going still exits 1" test "$RC" = 1
t_ok "--keep-going runs the later steps" test "$(jr "$T/r2" '.steps[2].status')" = changed

cat >"$T/retry.yml" <<'YML'
stagehand: 1
stage: retry
steps:
  - name: Flaky
    retries: 2
    retry_delay: 0
    shell: |
      n=$(cat /tmp/flaky 2>/dev/null || echo 0)
      echo $((n + 1)) > /tmp/flaky
      [ "$n" -ge 2 ]
YML
sh_run run "$T/retry.yml" "${SSH_ARGS[@]}" --report "$T/r3"
t_ok "a step that succeeds on its third attempt passes" test "$RC" = 0
t_ok "the report counts the attempts" test "$(jr "$T/r3" '.steps[0].attempts')" = 3

cat >"$T/bad.yml" <<'YML'
stagehand: 1
stage: bad
steps:
  - name: Would run first
    shell: touch /tmp/should-not-exist
  - name: Broken
    shell: "true"
    timout: 5
YML
before=$(box_snapshot)
sh_run run "$T/bad.yml" "${SSH_ARGS[@]}" --report "$T/r4"
t_ok "an invalid manifest exits 65" test "$RC" = 65
t_ok "the error gives file:line:col" grep -q "bad.yml:8:5:" "$T/err"
t_ok "nothing was executed on the box" test "$before" = "$(box_snapshot)"
t_ok "not even the steps before the bad one" box_exec test ! -e /tmp/should-not-exist

t_done
