#!/usr/bin/env bash
# The manifest's rescue list runs after a failure (a rollback), in order,
# and the run still fails; without a failure it is skipped; a failing
# rescue step stops the rest of the list.
. "$(dirname "$0")/lib.sh"
t_plan 16

box_up "$(box_name rs)" || { t_not "test box comes up"; t_done; exit 1; }

write() { # FAIL_MAIN FAIL_RESCUE
	cat >"$T/m.yml" <<YML
stagehand: 1
stage: rescue
steps:
  - name: Works
    shell: "true"
  - name: Maybe breaks
    shell: exit $1
  - name: After
    shell: touch /tmp/after
rescue:
  - name: Roll back
    shell: echo rolled-back > /tmp/rolled-back; exit $2
  - name: Say what is live
    shell: touch /tmp/rescue-2
YML
}

write 5 0
sh_run run "$T/m.yml" "${SSH_ARGS[@]}" --report "$T/r1"
t_ok "a failed run with a rescue list still exits 1" test "$RC" = 1
t_ok "the report still says failed" test "$(jr "$T/r1" .status)" = failed
t_ok "the rescue steps ran in order" \
	test "$(jr "$T/r1" '[.steps[] | select(.rescue) | .status] | join(",")')" = "changed,changed"
t_ok "the rescue step changed the box" box_exec test -e /tmp/rolled-back
t_ok "steps after the failure did not run" box_exec test ! -e /tmp/after
t_ok "the terminal says a rescue step ran" grep -q "running rescue step 'Roll back'" "$T/out"

box_exec rm -f /tmp/rolled-back /tmp/rescue-2
write 0 0
sh_run run "$T/m.yml" "${SSH_ARGS[@]}" --report "$T/r2"
t_ok "without a failure the run passes" test "$RC" = 0
t_ok "and the rescue steps are skipped, saying why" \
	test "$(jr "$T/r2" '[.steps[] | select(.rescue) | .skip_reason] | unique | join(",")')" = "rescue step: runs only after a failure"
t_ok "nothing was rolled back" box_exec test ! -e /tmp/rolled-back

box_exec rm -f /tmp/after
write 5 7
sh_run run "$T/m.yml" "${SSH_ARGS[@]}" --report "$T/r3"
t_ok "a failing rescue step keeps exit 1" test "$RC" = 1
t_ok "and stops the rest of the rescue list" \
	test "$(jr "$T/r3" '[.steps[] | select(.rescue) | .status] | join(",")')" = "failed,not_run"

cat >"$T/cw.yml" <<'YML'
stagehand: 1
stage: changed-when
steps:
  - name: Transient
    changed_when: false
    shell: touch /tmp/transient
  - name: Forced
    changed_when: true
    shell: { script: "true", creates: /tmp/transient }
YML
sh_run run "$T/cw.yml" "${SSH_ARGS[@]}" --report "$T/r4"
t_ok "changed_when: false reports a step that ran as ok" \
	test "$(jr "$T/r4" '.steps[0].status')" = ok
t_ok "changed_when: true reports a step with nothing to do as changed" \
	test "$(jr "$T/r4" '.steps[1].status')" = changed
printf 'stagehand: 1\nstage: x\nsteps:\n  - name: a\n    changed_when: maybe\n    shell: "true"\n' >"$T/cwbad.yml"
sh_run check "$T/cwbad.yml"
t_ok "changed_when must be a bool (65)" test "$RC" = 65

cat >"$T/inc.yml" <<'YML'
stagehand: 1
rescue:
  - name: Not here
    shell: "true"
YML
printf 'stagehand: 1\nstage: x\ninclude: [inc.yml]\n' >"$T/top.yml"
sh_run check "$T/top.yml" --include-root "$T"
t_ok "rescue in an included file is refused (65)" test "$RC" = 65
t_ok "with its position" grep -q 'inc.yml:2:1:' "$T/err"

t_done
