#!/usr/bin/env bash
# Spare channels (ssh.h, remote.c): the next steps' `sudo -n ... sh -c
# 'read ...'` is started while the current step runs, and a step takes one
# instead of opening a channel. Shown here: a step's sudo really started
# during the step before it; steps still run as their own user when users
# alternate (more distinct commands than spare slots); a step's timeout
# counts from its script, not from its spare; sudo refusing (a password is
# required) still names the cause, spare or not; a server that allows one
# channel at a time (MaxSessions 1) just gets no spares; and nothing stays
# running in the box after the run. Spares serve --one-channel-per-step
# (the privileged session needs none: t0327), so the runs here use it; the
# sudo refusal and MaxSessions 1 (with two users taking turns) are shown
# in the privileged session too.
. "$(dirname "$0")/lib.sh"
t_plan 33

box_up "$(box_name sp)" || { t_not "test box comes up"; t_done; exit 1; }

# --- the mechanism: step 2's sudo started while step 1 slept
# Step 2 writes: the name of the nearest process above it called sudo,
# seconds since boot, when that sudo started (/proc/PID/stat field 22, in
# clock ticks), the tick rate, and when step 1 ended (seconds since boot).
cat >"$T/overlap.yml" <<'YML'
stagehand: 1
stage: spares
steps:
  - name: Sleep, then note the time
    shell: |
      sleep 2
      cut -d' ' -f1 /proc/uptime > /tmp/step1-end
  - name: Note when this step's sudo started
    shell: |
      pid=$$
      while [ "$pid" -gt 1 ]; do
        [ "$(cat /proc/$pid/comm)" = sudo ] && break
        pid=$(awk '/^PPid:/ { print $2 }' /proc/$pid/status)
      done
      start=$(sed 's/.*) //' /proc/$pid/stat | cut -d' ' -f20)
      echo "$(cat /proc/$pid/comm) $start $(getconf CLK_TCK) $(cat /tmp/step1-end)" > /tmp/step2-sudo
YML
run r1 "$T/overlap.yml" --one-channel-per-step
t_ok "the two steps run" rc_is 0
read -r comm start hz end1 < <(box_exec cat /tmp/step2-sudo)
t_ok "step 2 runs under sudo (found: '$comm')" test "$comm" = sudo
# 2 s of sleep in step 1: a spare's sudo starts near step 1's start, a
# fresh channel's after step 1's end.
t_ok "step 2's sudo started while step 1 ran (sudo at $start/$hz s, step 1 ended at $end1 s)" \
	awk -v s="$start" -v hz="$hz" -v e="$end1" 'BEGIN { exit !(s / hz < e - 1) }'

# --- alternating users: root, login user, another user, in turn
{
	echo "stagehand: 1"
	echo "stage: users"
	echo "steps:"
	for i in $(seq 1 12); do
		case $((i % 3)) in
		0) b=true ;;
		1) b=false ;;
		2) b=nobody ;;
		esac
		echo "  - name: Who am I $i"
		echo "    become: $b"
		echo "    shell: id -un > /tmp/who-$i"
	done
} >"$T/users.yml"
run r2 "$T/users.yml" --one-channel-per-step
t_ok "12 steps as three users alternating run" rc_is 0
want=''
got=''
for i in $(seq 1 12); do
	case $((i % 3)) in
	0) want="$want root" ;;
	1) want="$want $TESTBOX_USER" ;;
	2) want="$want nobody" ;;
	esac
	got="$got $(box_exec cat /tmp/who-$i)"
done
t_ok "each step ran as its own user ($got)" test "$got" = "$want"

# --- a step's timeout starts with its script
cat >"$T/timeout.yml" <<'YML'
stagehand: 1
stage: timeouts
steps:
  - name: Long first step
    shell: sleep 3
  - name: Short timeout, shorter work
    timeout: 2
    shell: sleep 1; touch /tmp/second-done
  - name: Work longer than its timeout
    timeout: 1
    shell: sleep 4; touch /tmp/third-done
YML
run r3 "$T/timeout.yml" --one-channel-per-step
t_ok "the run fails on the third step only" rc_is 1
t_ok "a 2 s timeout is not used up by the step before it" \
	test "$(status_of r3 1)" = changed
t_ok "the step after a 3 s step did its work" box_exec test -e /tmp/second-done
t_ok "a step longer than its own timeout still times out" \
	grep -q 'timed out after 1 s' "$T/out"
t_ok "and did not finish" box_exec test ! -e /tmp/third-done

# --- sudo refuses: the same message with or without a spare, and in the
# privileged session (no flag)
box_exec sh -c "echo '$TESTBOX_USER ALL=(daemon) PASSWD: ALL' >/etc/sudoers.d/zz-spares &&
	chmod 0440 /etc/sudoers.d/zz-spares"
cat >"$T/sudo.yml" <<'YML'
stagehand: 1
stage: sudo
steps:
  - name: As daemon, first
    become: daemon
    shell: "true"
  - name: As daemon, again
    become: daemon
    shell: "true"
  - name: As daemon, third
    become: daemon
    shell: "true"
  - name: As root
    shell: "true"
YML
for mode in --one-channel-per-step session; do
	flag=()
	[ "$mode" = session ] || flag=("$mode")
	run r4 "$T/sudo.yml" "${flag[@]}" --keep-going
	t_ok "$mode: the run fails" rc_is 1
	for i in 0 1 2; do
		t_ok "$mode: daemon step $((i + 1)) fails" test "$(status_of r4 $i)" = failed
		t_ok "$mode: daemon step $((i + 1)) says sudo wants a password" \
			sh -c "jq -r '.steps[$i].error' '$T/r4/results.json' | grep -q 'a password is required'"
	done
	t_ok "$mode: the root step after them runs" test "$(status_of r4 3)" = changed
done
box_exec rm -f /etc/sudoers.d/zz-spares

# --- no process stays behind: spares end with the session
leftovers() {
	box_exec ps -eo user=,args= | grep -v -e 'sshd: /usr/sbin/sshd' -e ' ps -eo' || true
}
for _ in $(seq 50); do
	[ -z "$(leftovers)" ] && break
	sleep 0.1
done
left=$(leftovers)
t_ok "nothing is left running in the box${left:+: $left}" test -z "$left"

# --- MaxSessions 1: no spares, the run still works
box_exec sed -i 's/^MaxSessions .*/MaxSessions 1/' /etc/ssh/sshd_config
box_exec kill -HUP 1
for _ in $(seq 50); do
	box_exec sh -c 'ss -ltn | grep -q ":22 "' && break
	sleep 0.1
done
{
	echo "stagehand: 1"
	echo "stage: one-session"
	echo "steps:"
	for i in $(seq 1 8); do
		echo "  - name: Step $i"
		[ $((i % 2)) = 0 ] || echo "    become: false"
		echo "    shell: echo $i > /tmp/one-$i"
	done
} >"$T/one.yml"
for mode in --one-channel-per-step session; do
	flag=()
	[ "$mode" = session ] || flag=("$mode")
	box_exec rm -f /tmp/one-8
	run r5 "$T/one.yml" "${flag[@]}"
	t_ok "$mode: 8 steps through one channel at a time run" rc_is 0
	t_ok "$mode: all 8 changed" test "$(changed_count r5)" = 8
	t_ok "$mode: the last one did its work" box_exec grep -qx 8 /tmp/one-8
done

t_done
