#!/usr/bin/env bash
# The reboot step kind on the VM tier (tests/vm/vm): plan shows the reboot
# and does not reboot; run reboots, proves the new boot (boot_id), keeps
# the lock and the stage going on a new session (a later step runs on the
# new boot and finds the file written before); a command that fails fails
# the step without a reboot, and one that does not reboot fails it after
# `wait` (the old boot does not count; rescue runs on it); SIGTERM while it
# waits ends the run at once with 130 and an interrupted report; a machine
# that never comes back (powered off) fails with 69 after `wait`, naming
# the step. One VM, three boots; the times are printed as comments only.
. "$(dirname "$0")/lib.sh"
t_plan 35

VM=$TOP/tests/vm/vm
vm_name=trb$(printf '%04x' $(($$ % 65536)))
now() { date +%s; }

# ---- offline: no VM needed
cat >"$T/rb.yml" <<'YML'
stagehand: 1
stage: reboot
steps:
  - name: a file before
    shell: echo before > /var/tmp/t1010-marker
  - name: reboot
    reboot: {}
  - name: the file after
    shell: test "$(cat /var/tmp/t1010-marker)" = before
  - name: the boot after
    shell: cat /proc/sys/kernel/random/boot_id > /var/tmp/t1010-boot
YML
sh_run plan --offline "$T/rb.yml"
t_ok "plan --offline describes the reboot with its defaults" \
	has_text "reboot: systemctl reboot (wait up to 600 s)" cat "$T/out"

t0=$(now)
if ! vm_up "$vm_name" 2>"$T/up.err"; then
	t_not "the VM comes up" "$T/up.err"
	t_done
	exit 1
fi
echo "# boot to SSH + cloud-init: $(($(now) - t0)) s"
t_pass "the VM comes up"

gssh() {
	ssh -F /dev/null -i "$TESTBOX_KEY" -o IdentitiesOnly=yes \
		-o UserKnownHostsFile="$TESTBOX_KNOWN_HOSTS" -o GlobalKnownHostsFile=/dev/null \
		-o StrictHostKeyChecking=yes -o BatchMode=yes -o ConnectTimeout=10 -o LogLevel=ERROR \
		-p "$TESTBOX_PORT" "$TESTBOX_USER@$TESTBOX_HOST" "$@"
}
boot_id() { gssh cat /proc/sys/kernel/random/boot_id; }
# wait_boot_other_than ID: until SSH answers on a boot other than ID.
wait_boot_other_than() {
	local id end=$(($(now) + 900))
	while [ "$(now)" -lt "$end" ]; do
		id=$(boot_id 2>/dev/null) && [ -n "$id" ] && [ "$id" != "$1" ] && return 0
		sleep 2
	done
	return 1
}
det() { jr "$T/$1" ".steps[$2].details.$3"; }

# ---- plan: the reboot is shown, nothing reboots
boot0=$(boot_id)
sh_run plan "$T/rb.yml" "${SSH_ARGS[@]}" --report "$T/p1"
t_ok "plan succeeds" rc_is 0
t_ok "plan shows the reboot as a change it would make" \
	test "$(jr "$T/p1" '.steps[1].status + " " + .steps[1].changes[0]')" = \
	"would_change reboot $TESTBOX_HOST"
t_ok "plan does not reboot (the boot id is unchanged)" test "$(boot_id)" = "$boot0"

# ---- run: a file, the reboot, then steps on the new boot
t0=$(now)
run r1 "$T/rb.yml"
echo "# run with a reboot: $(($(now) - t0)) s (the step: $(det r1 1 seconds) s)"
t_ok "the run passes" rc_is 0
t_ok "every step changed, the reboot too" test "$(changed_count r1)" = 4
t_ok "the report records the boot id before: the one the VM had" \
	test "$(det r1 1 boot_id_before)" = "$boot0"
boot1=$(boot_id)
t_ok "the report records the boot id after: the VM's new one" \
	sh -c 'test -n "$1" && test "$1" != "$2" && test "$1" = "$3"' _ \
	"$(det r1 1 boot_id_after)" "$boot0" "$boot1"
t_ok "the report records the seconds it took" \
	sh -c 'printf "%s\n" "$1" | grep -Eqx "[0-9]+\.[0-9]" && test "${1%.*}" -gt 0' _ "$(det r1 1 seconds)"
t_ok "the file written before the reboot is there after it (a later step checked)" \
	test "$(jr "$T/r1" '.steps[2].status')" = changed
t_ok "a later step ran on the new boot" \
	test "$(gssh cat /var/tmp/t1010-boot)" = "$boot1"
t_ok "the run's facts are the new boot's" \
	test "$(jr "$T/r1" '.target.boot_id')" = "$boot1"
t_ok "the reboot says it waited and came back" \
	has_text "is back after" cat "$T/err" "$T/out"
# /run/lock is a tmpfs: a lock file there was written on the new boot.
t_ok "the lock was taken again on the new boot" \
	has_text "stage reboot, since" gssh cat /run/lock/stagehand.lock
t_ok "and let go at the end" gssh flock -n /run/lock/stagehand.lock true

# ---- a reboot command that fails: no reboot, no wait
cat >"$T/bad.yml" <<'YML'
stagehand: 1
stage: reboot
steps:
  - name: refused
    reboot: {command: "echo 'not now' >&2; exit 3", wait: 30}
YML
run r2 "$T/bad.yml"
t_ok "a failing reboot command fails the step (exit 1)" rc_is 1
t_ok "the error says the command failed, with its exit and output" \
	has_text "reboot command failed: exit 3: not now" jr "$T/r2" '.steps[0].error.message'
t_ok "it did not reboot" test "$(boot_id)" = "$boot1"

# ---- a command that does not reboot: the old boot does not count
cat >"$T/noop.yml" <<'YML'
stagehand: 1
stage: reboot
steps:
  - name: not really
    reboot: {command: "true", wait: 10}
rescue:
  - name: rescue on the old boot
    shell: cat /proc/sys/kernel/random/boot_id > /var/tmp/t1010-rescue
YML
run r5 "$T/noop.yml"
t_ok "a machine that stays on its boot fails the step (exit 1)" rc_is 1
t_ok "the error says it did not go down" \
	has_text "$TESTBOX_HOST did not go down within 10 s: still on boot $boot1" \
	jr "$T/r5" '.steps[0].error.message'
t_ok "the rescue step runs on that session" \
	sh -c 'test "$1" = changed && test "$2" = "$3"' _ "$(jr "$T/r5" '.steps[1].status')" \
	"$(gssh cat /var/tmp/t1010-rescue)" "$boot1"

# ---- SIGTERM while waiting for the machine to come back
cat >"$T/term.yml" <<'YML'
stagehand: 1
stage: reboot
steps:
  - name: reboot and wait long
    reboot: {wait: 900}
  - name: never reached
    shell: "true"
YML
"$STAGEHAND" run "$T/term.yml" "${SSH_ARGS[@]}" --report "$T/r3" >"$T/term.out" 2>"$T/term.err" &
pid=$!
for ((i = 0; i < 240; i++)); do
	grep -q "waiting up to 900 s" "$T/term.err" "$T/term.out" 2>/dev/null && break
	sleep 0.5
done
sleep 3
kill -TERM "$pid"
t0=$(now)
for ((i = 0; i < 60; i++)); do
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.5
done
still=0
if kill -0 "$pid" 2>/dev/null; then
	kill -KILL "$pid"
	still=1
fi
rc=0
wait "$pid" || rc=$?
[ "$still" = 0 ] || rc="still running 30 s after SIGTERM"
echo "# stagehand ended $(($(now) - t0)) s after SIGTERM"
t_ok "SIGTERM while waiting ends the run with 130, within 30 s" test "$rc" = 130
t_ok "the report says interrupted" \
	test "$(jr "$T/r3" '.status + " " + .steps[0].status + " " + .steps[1].status')" = \
	"interrupted interrupted not_run"
t_ok "the error says what it was waiting for" \
	has_text "interrupted while waiting for $TESTBOX_HOST to come back" \
	jr "$T/r3" '.steps[0].error.message'
t_ok "the report has the boot id before" test "$(det r3 0 boot_id_before)" = "$boot1"
t0=$(now)
t_ok "the VM comes back by itself" wait_boot_other_than "$boot1"
echo "# reboot (after the interrupted wait) to SSH: about $(($(now) - t0)) s more"

# ---- a machine that never comes back: powered off, `wait` 60 s
cat >"$T/off.yml" <<'YML'
stagehand: 1
stage: reboot
steps:
  - name: power off
    reboot: {command: systemctl poweroff, wait: 60}
  - name: never reached
    shell: "true"
YML
t0=$(now)
run r4 "$T/off.yml"
echo "# powered off, gave up after $(($(now) - t0)) s"
t_ok "a machine that never comes back: exit 69" rc_is 69
t_ok "the report names the step that failed" \
	test "$(jr "$T/r4" '[.steps[] | select(.status == "failed") | .name] | join(",")')" = "power off"
t_ok "the error names the host and the seconds waited" \
	has_text "$TESTBOX_HOST did not come back within 60 s" jr "$T/r4" '.steps[0].error.message'
t_ok "the error is the unreachable one" \
	test "$(jr "$T/r4" '.steps[0].error.code + " " + (.exit_code | tostring)')" = "target unreachable 69"
t_ok "the later step did not run" test "$(jr "$T/r4" '.steps[1].status')" = not_run
t_ok "it waited for the whole wait" test $(($(now) - t0)) -ge 60
t_ok "stagehand.env names the failed step" \
	grep -qx "STAGEHAND_FAILED_STEP='power off'" "$T/r4/stagehand.env"

t_ok "down removes the VM" "$VM" down "$vm_name"

t_done
