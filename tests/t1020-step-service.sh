#!/usr/bin/env bash
# The service step kind on a real systemd (the VM tier, one VM): a small
# unit installed, enabled and started (changed), then ok; plan after the
# unit's text changed lists the change and changes nothing; restarted
# always changes; stopped stops; enabled: false disables; a unit that
# fails to start fails the step with its journal lines in the error (a
# secret in them masked); a ready command that never succeeds fails after
# wait. On the namespace test box, where systemd is not PID 1, a step that
# starts a unit fails up front and a unit file alone is installed.
. "$(dirname "$0")/lib.sh"
t_plan 39

VM=$TOP/tests/vm/vm
vm_name=tsvc$(printf '%04x' $(($$ % 65536)))
now() { date +%s; }

t0=$(now)
if ! vm_up "$vm_name" 2>"$T/up.err"; then
	t_not "the VM comes up" "$T/up.err"
	t_done
	exit 1
fi
echo "# boot to SSH + cloud-init: $(($(now) - t0)) s"
t_pass "the VM comes up"
# vm_up set SSH_ARGS (lib.sh's `run` takes them) to the VM's, until
# box_up (at the end) sets the box's.

# g CMD...: a command line on the guest as root (ssh joins the words, and
# the guest's shell splits them again: quote inside).
g() { "$VM" ssh "$vm_name" -- "sudo -n $*" 2>/dev/null; }
changes() { jr "$T/$1" '.steps[].changes[]'; }
errmsg() { jr "$T/$1" '[.steps[] | select(.error != null)][0].error.message'; }
mainpid() { g systemctl show -p MainPID --value t1020-loop.service; }

U=/etc/systemd/system/t1020-loop.service
unit() { # unit STATE [MORE YAML]: the loop unit's step
	cat <<YML
stagehand: 1
stage: service
vars: {word: one}
steps:
  - name: the loop unit
    service:
      name: t1020-loop
      content: |
        [Unit]
        Description=t1020 loop (\${word})
        [Service]
        Type=simple
        ExecStart=/bin/sh -c 'while :; do sleep 1; done'
        [Install]
        WantedBy=multi-user.target
      $1
YML
}
unit "enabled: true
      state: started
      wait: 30" >"$T/start.yml"

# ---- plan on a guest that has nothing
sh_run plan "$T/start.yml" "${SSH_ARGS[@]}" --report "$T/p0"
t_ok "plan passes" rc_is 0
t_ok "plan lists the file, daemon-reload, enable and start" \
	test "$(changes p0 | tr '\n' '|')" = \
	"create $U|daemon-reload|enable t1020-loop.service|start t1020-loop.service|"
t_ok "plan installed nothing" test "$(g "test -e $U && echo yes || echo no")" = no

# ---- install, enable, start; then again
t0=$(now)
run r1 "$T/start.yml"
echo "# first apply: $(($(now) - t0)) s"
t_ok "the first run passes" rc_is 0
t_ok "the step changed" test "$(status_of r1 0)" = changed
t_ok "the unit is active" test "$(g systemctl is-active t1020-loop.service)" = active
t_ok "the unit is enabled" test "$(g systemctl is-enabled t1020-loop.service)" = enabled
t_ok "the unit file is 0644 root:root" test "$(g "stat -c '%a %U:%G' $U")" = "644 root:root"
pid1=$(mainpid)
t0=$(now)
run r2 "$T/start.yml"
echo "# second apply: $(($(now) - t0)) s"
t_ok "the second run passes" rc_is 0
t_ok "the second run changes nothing" test "$(changed_count r2)" = 0
t_ok "the unit was not restarted" test "$(mainpid)" = "$pid1"

# ---- the unit's text changes: plan shows it, changes nothing
sh_run plan "$T/start.yml" "${SSH_ARGS[@]}" --report "$T/p1" --var word=two
t_ok "plan after a unit change passes" rc_is 0
t_ok "plan lists the new content and daemon-reload only" \
	test "$(changes p1 | tr '\n' '|')" = "content $U|daemon-reload|"
t_ok "plan left the file as it was" has_text "t1020 loop (one)" g cat $U
t_ok "plan left the unit running as it was" test "$(mainpid)" = "$pid1"
run r3 "$T/start.yml" --var word=two
t_ok "the changed unit is installed and reloaded" \
	test "$(changes r3 | tr '\n' '|')" = "content $U|daemon-reload|"
t_ok "systemd has the new text" \
	test "$(g systemctl show -p Description --value t1020-loop.service)" = "t1020 loop (two)"

# ---- restarted always changes
unit "state: restarted" >"$T/restart.yml"
run r4 "$T/restart.yml" --var word=two
t_ok "restarted changes" test "$RC $(status_of r4 0)" = "0 changed"
pid2=$(mainpid)
t_ok "the unit has a new main process" test "$pid2" != "$pid1"
run r5 "$T/restart.yml" --var word=two
t_ok "restarted changes again" test "$RC $(status_of r5 0) $(changes r5)" = \
	"0 changed restart t1020-loop.service"
t_ok "and restarts again" test "$(mainpid)" != "$pid2"

# ---- stopped, then enabled: false
unit "state: stopped" >"$T/stop.yml"
run r6 "$T/stop.yml" --var word=two
t_ok "stopped changes" test "$RC $(changes r6)" = "0 stop t1020-loop.service"
t_ok "the unit is inactive" test "$(g systemctl is-active t1020-loop.service)" = inactive
run r7 "$T/stop.yml" --var word=two
t_ok "stopped again changes nothing" test "$RC $(changed_count r7)" = "0 0"
unit "enabled: false" >"$T/disable.yml"
run r8 "$T/disable.yml" --var word=two
t_ok "enabled: false changes" test "$RC $(changes r8)" = "0 disable t1020-loop.service"
t_ok "the unit is disabled" test "$(g systemctl is-enabled t1020-loop.service)" = disabled

# ---- a unit that fails to start: its journal lines in the error
export STAGEHAND_VAR_tok=Zq9-s3cret-value-77
cat >"$T/bad.yml" <<'YML'
stagehand: 1
stage: service-bad
secrets: [tok]
steps:
  - name: a unit that fails
    service:
      name: t1020-bad
      content: |
        [Service]
        ExecStart=/bin/sh -c 'echo "t1020-boom token=${tok}" >&2; exit 3'
      state: started
      wait: 20
YML
run r9 "$T/bad.yml"
t_ok "a unit that fails to start fails the run" rc_is 1
t_ok "the error says what failed and the unit's state" \
	has_text "start t1020-bad.service: the unit failed; state failed/failed, result exit-code, exit status 3; journalctl -u t1020-bad.service:" errmsg r9
t_ok "the error shows the unit's journal lines" has_text "t1020-boom token=" errmsg r9
t_ok "the secret in them is masked" has_text "token=********" errmsg r9
t_fail "the secret is in no output" grep -rqF "$STAGEHAND_VAR_tok" "$T/out" "$T/err" "$T/r9"

# ---- a ready command that never succeeds
cat >"$T/ready.yml" <<'YML'
stagehand: 1
stage: service-ready
steps:
  - name: never ready
    service:
      name: t1020-loop
      state: started
      wait: 3
      ready: echo t1020-not-yet; exit 1
YML
t0=$(now)
run r10 "$T/ready.yml"
echo "# ready that never succeeds, wait 3: $(($(now) - t0)) s"
t_ok "a ready command that never succeeds fails the run" rc_is 1
t_ok "the error names the ready command's last output" \
	has_text "t1020-loop.service: the ready command did not succeed within 3 s (exit 1: t1020-not-yet)" errmsg r10
sed -i 's/exit 1$/test -e \/run\/t1020-ready/' "$T/ready.yml"
g touch /run/t1020-ready
run r11 "$T/ready.yml"
t_ok "a ready command that succeeds: ok, nothing changed" \
	test "$RC $(status_of r11 0)" = "0 ok"

# ---- the namespace box: systemd is not PID 1
box_up "$(box_name sv)" || { t_not "test box comes up"; t_done; exit 1; }
run b1 "$T/start.yml"
t_ok "on the box a step that starts a unit fails" rc_is 1
t_ok "saying that systemd is not running" \
	has_text "t1020-loop.service: systemd is not running on the target (PID 1 is sshd)" errmsg b1
t_ok "and installs nothing" box_exec test ! -e $U
cat >"$T/fileonly.yml" <<'YML'
stagehand: 1
stage: service-file
steps:
  - name: the unit file alone
    service:
      name: t1020-file
      content: "[Service]\nExecStart=/bin/true\n"
YML
run b2 "$T/fileonly.yml"
t_ok "a unit file alone is installed, without daemon-reload" \
	test "$RC $(changes b2)" = "0 create /etc/systemd/system/t1020-file.service"

t_done
