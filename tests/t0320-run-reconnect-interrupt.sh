#!/usr/bin/env bash
# The run survives its SSH session being killed from the host (reconnect,
# retry, say so in the report), and SIGTERM/SIGINT stop the current step
# and leave an "interrupted" report.
. "$(dirname "$0")/lib.sh"
t_plan 17

box_up "$(box_name rc)" || { t_not "test box comes up"; t_done; exit 1; }

cat >"$T/drop.yml" <<'YML'
stagehand: 1
stage: drop
steps:
  - name: Before the drop
    shell: "true"
  - name: Long step whose session dies
    retries: 1
    shell:
      script: |
        if [ ! -e /tmp/drop-once ]; then touch /tmp/drop-once; sleep 20; fi
        touch /tmp/long-done
      creates: /tmp/long-done
  - name: After the drop
    shell: touch /tmp/after-drop
YML
"$STAGEHAND" run "$T/drop.yml" "${SSH_ARGS[@]}" --report "$T/r1" >"$T/out" 2>"$T/err" &
pid=$!
# Wait until the long step is running on the box, then kill the sessions.
for _ in $(seq 1 100); do
	box_exec test -e /tmp/drop-once && break
	sleep 0.1
done
"$TESTBOX" kill-sessions "$TESTBOX_NAME"
rc=0
wait "$pid" || rc=$?
t_ok "the run survives a killed session" test "$rc" = 0
t_ok "the terminal says it reconnected" grep -q 'reconnect' "$T/out"
t_ok "the report counts the reconnect" test "$(jr "$T/r1" .reconnects)" -ge 1
t_ok "the interrupted step records the reconnect" \
	test "$(jr "$T/r1" '.steps[1].reconnects')" -ge 1
t_ok "the interrupted step was retried to completion" box_exec test -e /tmp/long-done
t_ok "steps after the drop ran" box_exec test -e /tmp/after-drop

cat >"$T/slow.yml" <<'YML'
stagehand: 1
stage: slow
steps:
  - name: Slow
    shell: touch /tmp/slow-started; sleep 30
  - name: Never
    shell: touch /tmp/never
YML
for sig in TERM INT; do
	rm -rf "$T/r-$sig"
	box_exec rm -f /tmp/slow-started
	"$STAGEHAND" run "$T/slow.yml" "${SSH_ARGS[@]}" --report "$T/r-$sig" >"$T/out" 2>"$T/err" &
	pid=$!
	for _ in $(seq 1 100); do
		box_exec test -e /tmp/slow-started && break
		sleep 0.1
	done
	kill -"$sig" "$pid"
	rc=0
	wait "$pid" || rc=$?
	t_ok "SIG$sig exits 130" test "$rc" = 130
	t_ok "SIG$sig leaves an interrupted report" test "$(jr "$T/r-$sig" .status)" = interrupted
	t_ok "SIG$sig marks the running step interrupted" \
		test "$(jr "$T/r-$sig" '.steps[0].status')" = interrupted
	t_ok "SIG$sig leaves later steps not_run" \
		test "$(jr "$T/r-$sig" '.steps[1].status')" = not_run
	t_ok "SIG$sig leaves a complete run.log and no temp files" \
		sh -c "test -s '$T/r-$sig/run.log' && ! ls '$T/r-$sig' | grep -q tmp"
done
t_ok "the step after the interrupted one never ran" box_exec test ! -e /tmp/never

t_done
