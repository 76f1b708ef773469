#!/usr/bin/env bash
# plan probes read-only: the box's overlay upper dir is identical before
# and after, steps report would_change; --json gives NDJSON events;
# tags, skip-tags and start-at select steps.
. "$(dirname "$0")/lib.sh"
t_plan 12

box_up "$(box_name pl)" || { t_not "test box comes up"; t_done; exit 1; }

cat >"$T/p.yml" <<'YML'
stagehand: 1
stage: planned
steps:
  - name: Make a dir
    tags: [base]
    path: { path: /srv/planned, state: directory, mode: "0750" }
  - name: Add a user
    tags: [users]
    user: { name: planned }
  - name: Write a line
    tags: [config]
    line: { path: /etc/planned.conf, line: "a = 1", create: true }
  - name: Run something
    tags: [base]
    shell: { script: touch /tmp/planned-ran, creates: /tmp/planned-ran }
YML
before=$(box_snapshot)
sh_run plan "$T/p.yml" "${SSH_ARGS[@]}" --report "$T/r1"
t_ok "plan exits 0" test "$RC" = 0
t_ok "plan changes nothing on the box" test "$before" = "$(box_snapshot)"
t_ok "plan reports every step as would_change" \
	test "$(jr "$T/r1" '[.steps[].status] | unique | join(",")')" = would_change
t_ok "plan is recorded as a plan" test "$(jr "$T/r1" .command)" = plan

sh_run run "$T/p.yml" "${SSH_ARGS[@]}" --report "$T/r2" --json
t_ok "run exits 0" test "$RC" = 0
t_ok "every stdout line is a JSON event" \
	jq -s -e 'length > 0 and all(.[]; .event | type == "string")' "$T/out"
t_ok "events include run_start, step_end and run_end" \
	test "$(jq -r .event "$T/out" | sort -u | tr '\n' ' ')" = "run_end run_start step_end step_start "
t_ok "human lines go to stderr with --json" grep -q 'Make a dir' "$T/err"

sh_run plan "$T/p.yml" "${SSH_ARGS[@]}" --report "$T/r3"
t_ok "plan after run reports nothing to change" \
	test "$(jr "$T/r3" '[.steps[].status] | unique | join(",")')" = ok

box_exec rm -rf /srv/planned /tmp/planned-ran
sh_run run "$T/p.yml" "${SSH_ARGS[@]}" --report "$T/r4" --tags base --skip-tags users
t_ok "--tags runs only tagged steps" \
	test "$(jr "$T/r4" '[.steps[].status] | join(",")')" = "changed,skipped,skipped,changed"
t_ok "skipped steps say why" test "$(jr "$T/r4" '.steps[2].skip_reason | type')" = string

box_exec rm -rf /srv/planned /tmp/planned-ran
sh_run run "$T/p.yml" "${SSH_ARGS[@]}" --report "$T/r5" --start-at 'Write a line'
t_ok "--start-at skips the steps before it" \
	test "$(jr "$T/r5" '[.steps[].status] | join(",")')" = "skipped,skipped,ok,changed"

t_done
