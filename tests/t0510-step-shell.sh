#!/usr/bin/env bash
# The shell step kind against the real test box: scripts run, creates /
# unless / changed_exit_code make a second run report ok, env and cwd
# apply, the script is never on argv and never reads itself from stdin,
# plan changes nothing, exit codes fail or pass as configured, and a secret
# used by a script appears in no output.
# shellcheck disable=SC2016 # $ in single quotes is for the box's shell
. "$(dirname "$0")/lib.sh"
t_plan 44

box_up "$(box_name sh)" || { t_not "test box comes up"; t_done; exit 1; }


# ---- idempotent steps: changed on the first run, ok on the second
cat >"$T/idem.yml" <<'YML'
stagehand: 1
stage: shell-idempotent
steps:
  - name: creates guards the script
    shell:
      script: mkdir -p /srv/t510 && echo made > /srv/t510/created
      creates: /srv/t510/created
  - name: unless guards the script
    shell:
      script: echo once >> /srv/t510/unless-log
      unless: grep -q once /srv/t510/unless-log
  - name: changed_exit_code tells the change
    shell:
      script: |
        if [ -e /srv/t510/cec ]; then exit 0; fi
        touch /srv/t510/cec
        exit 2
      changed_exit_code: 2
  - name: env and cwd
    shell:
      script: printf '%s|%s' "$GREETING" "$(pwd)" > out.txt
      env:
        GREETING: it's "quoted" $HOME \ & done
      cwd: /srv/t510
      creates: out.txt
  - name: another interpreter
    shell:
      script: "[[ -n $BASH_VERSION ]] && echo bash > /srv/t510/bash"
      shell: /bin/bash
      creates: /srv/t510/bash
YML
run r1 "$T/idem.yml"
t_ok "the first run succeeds" rc_is 0
t_ok "every step reports changed on the first run" test "$(changed_count r1)" = 5
t_ok "creates: the script ran" box_exec test -f /srv/t510/created
t_ok "env values arrive verbatim and cwd is applied" \
	test "$(box_exec cat /srv/t510/out.txt)" = "it's \"quoted\" \$HOME \\ & done|/srv/t510"
t_ok "the shell key picks the interpreter" test "$(box_exec cat /srv/t510/bash)" = bash

run r2 "$T/idem.yml"
t_ok "the second run succeeds" rc_is 0
t_ok "the second run reports zero changed" test "$(changed_count r2)" = 0
t_ok "the unless-guarded script ran once" test "$(box_exec cat /srv/t510/unless-log)" = once
t_ok "a skipped step says what skipped it" \
	test "$(jr "$T/r2" '.steps[0].details.skipped_by')" = creates

# ---- plan changes nothing
cat >"$T/plan.yml" <<'YML'
stagehand: 1
stage: shell-plan
steps:
  - name: guarded, would run
    shell:
      script: touch /srv/t510-plan-ran
      creates: /srv/t510-plan-ran
  - name: guarded by unless, would run
    shell:
      script: touch /srv/t510-plan-ran2
      unless: test -e /srv/t510-plan-ran2
  - name: unguarded
    shell: |
      # a comment first
      touch /srv/t510-plan-ran3
YML
before=$(box_snapshot)
sh_run plan "$T/plan.yml" "${SSH_ARGS[@]}" --report "$T/p1"
after=$(box_snapshot)
t_ok "plan succeeds" rc_is 0
t_ok "plan reports would_change for each step" \
	test "$(jr "$T/p1" '[.steps[] | select(.status == "would_change")] | length')" = 3
t_ok "plan names the first command line" \
	test "$(jr "$T/p1" '.steps[2].changes[0]')" = "would run: touch /srv/t510-plan-ran3"
t_ok "plan changes nothing on the box" test "$before" = "$after"

# ---- what the script sees
cat >"$T/see.yml" <<'YML'
stagehand: 1
stage: shell-sees
steps:
  - name: stdin is empty, argv has no script
    shell: |
      marker=unique-marker-t0510-$((6 * 7))
      input=$(cat)
      printf '[%s]' "$input" > /srv/t510-stdin
      ps -eo args > /srv/t510-ps
      echo "to stdout $marker"
      echo "to stderr" >&2
YML
run r3 "$T/see.yml"
t_ok "the script runs" rc_is 0
t_ok "the script's stdin is empty (not the script itself)" \
	test "$(box_exec cat /srv/t510-stdin)" = "[]"
t_fail "the script text is on no command line" box_exec grep -q 'unique-marker-t0510' /srv/t510-ps
t_ok "stdout and stderr reach the step output" \
	sh -c "jq -r '.steps[0].output' '$T/r3/results.json' | grep -q 'to stdout unique-marker-t0510-42' &&
	       jq -r '.steps[0].output' '$T/r3/results.json' | grep -q 'to stderr'"
t_ok "the exit status is recorded" test "$(jr "$T/r3" '.steps[0].exit_status')" = 0

# ---- output streams: the tail is kept, also when the step times out
cat >"$T/stream.yml" <<'YML'
stagehand: 1
stage: shell-stream
steps:
  - name: a line that looks like the here-document delimiter
    shell: |
      cat <<'STAGEHAND_EOF' >/srv/t510-delim
      STAGEHAND_EOF_1
      STAGEHAND_EOF
      echo "delim lines: $(wc -l </srv/t510-delim)"
  - name: much output
    shell: seq 1 300000
  - name: killed
    shell: kill -KILL $$
  - name: times out
    timeout: 2
    shell: |
      echo before-the-timeout
      sleep 30
YML
run r7 "$T/stream.yml" --keep-going
t_ok "the stream stage fails (two steps fail)" rc_is 1
t_ok "a script line equal to the delimiter does not end the script" \
	test "$(jr "$T/r7" '.steps[0].output')" = "delim lines: 1"
t_ok "long output keeps its tail" \
	test "$(jr "$T/r7" '.steps[1].output | endswith("\n299999\n300000\n")')" = true
t_ok "a script killed by a signal fails the step" \
	sh -c "jq -r '.steps[2].error.message' '$T/r7/results.json' | grep -q 'killed by a signal'"
t_ok "a step stopped by its timeout fails as timed out" \
	sh -c "jq -r '.steps[3].error.message' '$T/r7/results.json' | grep -q 'timed out'"
t_ok "a timed-out step still reports the output it made" \
	sh -c "jq -r '.steps[3].output' '$T/r7/results.json' | grep -qx before-the-timeout"

# ---- exit codes
cat >"$T/exit3.yml" <<'YML'
stagehand: 1
stage: shell-exit
steps:
  - name: exits 3
    shell: echo "something broke" >&2; exit 3
YML
run r4 "$T/exit3.yml"
t_ok "exit 3 fails the run with exit code 1" rc_is 1
t_ok "the step is failed" test "$(status_of r4 0)" = failed
t_ok "the error says exit 3" sh -c "jq -r '.steps[0].error' '$T/r4/results.json' | grep -q 'exit 3'"
t_ok "the error carries the last output line" \
	sh -c "jq -r '.steps[0].error' '$T/r4/results.json' | grep -q 'something broke'"
t_ok "the terminal shows exit 3" grep -q 'exit 3' "$T/out"

cat >"$T/valid.yml" <<'YML'
stagehand: 1
stage: shell-valid
steps:
  - name: exit 3 is valid
    shell:
      script: exit 3
      valid_exit_codes: [0, 3]
  - name: exit 0 with a changed_exit_code is ok
    shell:
      script: exit 0
      changed_exit_code: 9
YML
run r5 "$T/valid.yml"
t_ok "valid_exit_codes [0,3] accepts exit 3" rc_is 0
t_ok "the step with exit 3 did not fail" test "$(status_of r5 0)" = changed
t_ok "exit 0 with changed_exit_code set is ok" test "$(status_of r5 1)" = ok

cat >"$T/bad.yml" <<'YML'
stagehand: 1
stage: shell-bad
steps:
  - name: bad env name
    shell:
      script: "true"
      env: { "1X": y }
YML
sh_run check "$T/bad.yml"
t_ok "a bad env name is an invalid manifest" rc_is 65
t_ok "the error names the position" grep -q 'bad.yml:[0-9]*:[0-9]*:.*env' "$T/err"

# ---- a secret used in a script and in env never shows
secret='s3cr3t-"x"-$(id)-'"'q'"'-&-\'
export STAGEHAND_VAR_pw=$secret
cat >"$T/secret.yml" <<'YML'
stagehand: 1
stage: shell-secret
secrets: [pw]
steps:
  - name: uses the secret
    shell:
      script: |
        printf '%s' "$PW" > /srv/t510-secret
        echo "the secret is $PW"
        exit 5
      env: { PW: "${pw}" }
YML
run r6 "$T/secret.yml"
t_ok "the secret step fails as written" rc_is 1
t_ok "the secret reached the box intact" test "$(box_exec cat /srv/t510-secret)" = "$secret"
t_fail "the secret is in no report file, stdout or stderr" \
	grep -rlF -- "$secret" "$T/r6" "$T/out" "$T/err"
unset STAGEHAND_VAR_pw

# ---- issue 11: a variable in a script is data, not code
# The shipped upgrade stage with a hostile --var: its scripts take the
# profile as ${profile:q}, so `id` must not run (the stage then fails: the
# profile is no link; its rescue steps fail too, no Postgres in this box).
box_exec rm -f /tmp/pwned
run r7 "$TOP/stages/upgrade.yml" --var 'profile=/x; id >/tmp/pwned'
t_ok "upgrade.yml with a hostile profile fails (no profile link)" rc_is 1
t_ok "its first script saw the whole value as the profile" \
	grep -qF '/x; id >/tmp/pwned is not a profile link' <(jr "$T/r7" '.steps[0].output')
t_fail "and the injected command did not run in the box" box_exec test -e /tmp/pwned

# ${v:q} hands any value to the script as one word, verbatim; also in
# unless and a secret.
hostile='a b;$(id)`id`"d"'"'e'"'\ & | > * ~'
export STAGEHAND_VAR_qpw="pw 'x' \$(id)"
cat >"$T/q.yml" <<'YML'
stagehand: 1
stage: shell-quote
secrets: [qpw]
vars: { v: placeholder }
steps:
  - name: quoted value
    shell:
      script: |
        printf '%s|%s' ${v:q} ${qpw:q} > /srv/t510-q
      unless: test "$(cat /srv/t510-q 2>/dev/null)" = ${v:q}'|'${qpw:q}
YML
run r8 "$T/q.yml" --var "v=$hostile"
t_ok "a script with \${v:q} runs" rc_is 0
t_ok "the value arrives as one word, verbatim" \
	test "$(box_exec cat /srv/t510-q)" = "$hostile|$STAGEHAND_VAR_qpw"
run r9 "$T/q.yml" --var "v=$hostile"
t_ok "\${v:q} in unless sees the same value (second run ok)" \
	test "$(changed_count r9)" = 0
t_fail "the quoted secret is in no report file, stdout or stderr" \
	grep -rlF -- "$STAGEHAND_VAR_qpw" "$T/r8" "$T/r9" "$T/out" "$T/err"
unset STAGEHAND_VAR_qpw

t_done
