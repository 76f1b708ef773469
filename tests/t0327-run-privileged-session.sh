#!/usr/bin/env bash
# The privileged session (remote.h): the steps of one become user run in
# one perl loop under one sudo, each a fresh child. Shown here: every step
# of a user has the same loop above it, and --one-channel-per-step gives
# each its own; environment, working directory and umask do not leak from
# a step to the next; output that looks like the session's frames is only
# output; a background child that keeps stdout open does not hold the
# step; a timeout whose child ignores SIGTERM ends the whole group and the
# session goes on; 1,000 steps in a row leave the memory of stagehand and
# of the loop where it was; and a connection dropped mid-step ends what
# the step started, and the run goes on in a new session.
. "$(dirname "$0")/lib.sh"
t_plan 24

box_up "$(box_name ps)" || { t_not "test box comes up"; t_done; exit 1; }

# poll10 CMD...: polls up to 10 s until CMD succeeds (not a timing check).
poll10() {
	local end=$((SECONDS + 10))
	until "$@"; do
		((SECONDS < end)) || return 1
		sleep 0.2
	done
}
not_in_box() { ! box_exec pgrep -f "$1" >/dev/null; }
# box_file PATH: the file's text, read from the box's overlay.
box_file() { cat "$TESTBOX_UPPER$1" 2>/dev/null; }

# --- one loop per user; env, cwd and umask stay with their step
# Each step notes the loop above its shell ($PPID), then what it sees.
# shellcheck disable=SC2016 # expanded by the step's shell
state='echo "$PPID $(pwd) $${LEAK-unset} $(umask) $(id -un)"'
cat >"$T/iso.yml" <<YML
stagehand: 1
stage: isolation
steps:
  - name: Before
    become: true
    shell: '$state > /tmp/iso-1'
  - name: Changes its shell state
    become: true
    shell: 'cd /usr; export LEAK=yes; umask 077; $state > /tmp/iso-2'
  - name: After
    become: true
    shell: '$state > /tmp/iso-3'
  - name: As the login user
    become: false
    shell: '$state > /tmp/iso-4'
  - name: As root again
    become: true
    shell: '$state > /tmp/iso-5'
  - name: Names the processes above it
    become: true
    shell: 'ps -o comm= -p \$PPID -p \$(ps -o ppid= -p \$PPID) | tr "\\n" " " > /tmp/iso-comm'
YML
run r1 "$T/iso.yml"
t_ok "the isolation steps run" rc_is 0
read -r p1 d1 l1 u1 w1 <<<"$(box_file /tmp/iso-1)"
read -r p2 d2 l2 u2 _ <<<"$(box_file /tmp/iso-2)"
read -r p3 d3 l3 u3 w3 <<<"$(box_file /tmp/iso-3)"
read -r p4 _ _ _ w4 <<<"$(box_file /tmp/iso-4)"
read -r p5 _ _ _ _ <<<"$(box_file /tmp/iso-5)"
t_ok "the step that changes its state sees its changes ($d2 $l2 $u2)" \
	test "$d2 $l2 $u2" = "/usr yes 0077"
t_ok "the next step sees the first one's state again ($d3 $l3 $u3 / $d1 $l1 $u1)" \
	test "$d3 $l3 $u3" = "$d1 $l1 $u1" -a "$l3" = unset
t_ok "the root steps share one loop ($p1 $p2 $p3 $p5)" \
	test "$p1" = "$p2" -a "$p2" = "$p3" -a "$p3" = "$p5"
t_ok "the login user's step has its own ($p4, as $w4; root: $w1 $w3)" \
	test "$p4" != "$p1" -a "$w4" = builder -a "$w1 $w3" = "root root"
t_ok "that loop is perl, under sudo ($(box_file /tmp/iso-comm))" \
	test "$(box_file /tmp/iso-comm)" = "sudo perl "
run r1b "$T/iso.yml" --one-channel-per-step
read -r q1 _ <<<"$(box_file /tmp/iso-1)"
read -r q3 _ <<<"$(box_file /tmp/iso-3)"
t_ok "--one-channel-per-step: each step its own process above it ($q1 $q3)" \
	test "$q1" != "$q3" -a "$(box_file /tmp/iso-3 | cut -d' ' -f2-4)" = "$d1 $l1 $u1"

# --- frames: a step's output cannot end it or pose as the other stream
cat >"$T/frames.yml" <<'YML'
stagehand: 1
stage: frames
steps:
  - name: Prints what the session sends
    become: true
    shell: |
      printf 'x0\nk9\no5\nhello\n'
      printf 'x0\n' >&2
      head -c 70000 /dev/zero | tr '\0' 'x0'
      echo
      printf '\nx0\n'
      echo done > /tmp/frames-done
      exit 5
  - name: Runs after it
    become: true
    shell: echo "$PPID" > /tmp/frames-next
YML
run r2 "$T/frames.yml" --keep-going
t_ok "the step that prints end frames still fails with its own status" \
	has_text "exit 5" jr "$T/r2" '.steps[0].error.message'
t_ok "it ran to its end" test "$(box_file /tmp/frames-done)" = "done"
t_ok "the step after it runs in the same session" \
	test -n "$(box_file /tmp/frames-next)"

# --- a background child that keeps stdout open
cat >"$T/bg.yml" <<'YML'
stagehand: 1
stage: background
steps:
  - name: Leaves a child writing to its stdout
    become: true
    shell: |
      (sleep 3031; echo late) &
      echo started
  - name: Sees that child still running
    become: true
    shell: pgrep -f "sleep 3031" > /tmp/bg-running
YML
run r3 "$T/bg.yml"
t_ok "a step whose child keeps stdout open ends with its shell" rc_is 0
t_ok "the next step ran while that child still held the old stdout" \
	test -n "$(box_file /tmp/bg-running)"
box_exec pkill -f "sleep 3031" || true

# --- a timeout whose child ignores TERM
cat >"$T/to.yml" <<'YML'
stagehand: 1
stage: timeout
steps:
  - name: Before
    become: true
    shell: echo "$PPID" > /tmp/to-1
  - name: Ignores TERM past its timeout
    become: true
    timeout: 1
    shell: "trap '' TERM; sleep 3032 & wait; sleep 3032"
  - name: After
    become: true
    shell: echo "$PPID" > /tmp/to-2
YML
run r4 "$T/to.yml" --keep-going
t_ok "the step times out" has_text "timed out after 1 s" \
	jr "$T/r4" '.steps[1].error.message'
t_ok "nothing of its group is left" poll10 not_in_box "sleep 3032"
t_ok "the next step ran, in the same session ($(box_file /tmp/to-1) $(box_file /tmp/to-2))" \
	test -n "$(box_file /tmp/to-2)" -a "$(box_file /tmp/to-1)" = "$(box_file /tmp/to-2)"

# --- 1,000 steps: no memory growth on either side
# Step 100 and step 1000 wait for the test to read stagehand's VmRSS;
# every step adds the loop's VmRSS (kB) to a file.
n=1000
{
	echo "stagehand: 1"
	echo "stage: many"
	echo "steps:"
	for i in $(seq $n); do
		echo "  - name: Step $i"
		echo "    become: true"
		case $i in
		100 | "$n") echo "    shell: 'awk \"/^VmRSS/ { print \\\$2 }\" /proc/\$PPID/status >> /tmp/rss; touch /tmp/at-$i; while [ ! -e /tmp/go-$i ]; do sleep 0.05; done'" ;;
		*) echo "    shell: 'awk \"/^VmRSS/ { print \\\$2 }\" /proc/\$PPID/status >> /tmp/rss'" ;;
		esac
	done
} >"$T/many.yml"
"$STAGEHAND" run "$T/many.yml" "${SSH_ARGS[@]}" --report "$T/r5" >"$T/many.out" 2>&1 &
pid=$!
rss() { awk '/^VmRSS/ { print $2 }' "/proc/$pid/status"; }
declare -A local_rss
for i in 100 $n; do
	for _ in $(seq 600); do
		[ -e "$TESTBOX_UPPER/tmp/at-$i" ] && break
		sleep 0.1
	done
	local_rss[$i]=$(rss)
	box_exec touch "/tmp/go-$i"
done
rc=0
wait "$pid" || rc=$?
t_ok "1,000 steps run" test "$rc" = 0
t_ok "every step reported the loop's memory" test "$(box_file /tmp/rss | wc -l)" = $n
first=$(box_file /tmp/rss | head -100 | sort -n | tail -1)
last=$(box_file /tmp/rss | tail -100 | sort -n | tail -1)
t_ok "the loop's RSS did not grow (max of the first 100: $first kB, of the last 100: $last kB)" \
	test "$last" -le $((first + 1024))
# An ASan build's allocator keeps what is freed in quarantine (tens of
# MB over 1,000 steps here), so its RSS says nothing about stagehand's;
# its leak check at exit still runs.
if ldd "$STAGEHAND" 2>/dev/null | grep -q libasan; then
	t_skip "stagehand's RSS did not grow" "an ASan build: freed memory stays in its quarantine"
else
	t_ok "stagehand's RSS did not grow (step 100: ${local_rss[100]} kB, step $n: ${local_rss[$n]} kB)" \
		test "${local_rss[$n]}" -le $((local_rss[100] + 4096))
fi
echo "# RSS: loop $first -> $last kB, stagehand ${local_rss[100]} -> ${local_rss[$n]} kB"

# --- a connection dropped mid-step
cat >"$T/drop.yml" <<'YML'
stagehand: 1
stage: drop
steps:
  - name: Before the drop
    become: true
    shell: echo "$PPID" > /tmp/drop-1
  - name: Dropped the first time
    become: true
    retries: 1
    shell: |
      if [ ! -e /tmp/drop-once ]; then touch /tmp/drop-once; sleep 3034; fi
      touch /tmp/drop-done
  - name: After the drop
    become: true
    shell: echo "$PPID" > /tmp/drop-2
YML
"$STAGEHAND" run "$T/drop.yml" "${SSH_ARGS[@]}" --report "$T/r6" >"$T/drop.out" 2>&1 &
pid=$!
for _ in $(seq 300); do
	[ -e "$TESTBOX_UPPER/tmp/drop-once" ] && break
	sleep 0.1
done
"$TESTBOX" kill-sessions "$TESTBOX_NAME" >/dev/null
t_ok "the dropped session's step is gone within 10 s" poll10 not_in_box "sleep 3034"
rc=0
wait "$pid" || rc=$?
t_ok "the run survives the drop" test "$rc" = 0
t_ok "the step was retried to completion" test -e "$TESTBOX_UPPER/tmp/drop-done"
t_ok "the step after the drop runs in a new session ($(box_file /tmp/drop-1) -> $(box_file /tmp/drop-2))" \
	test -n "$(box_file /tmp/drop-2)" -a "$(box_file /tmp/drop-1)" != "$(box_file /tmp/drop-2)"
t_ok "the old session's loop is gone ($(box_file /tmp/drop-1))" \
	poll10 box_exec test ! -d "/proc/$(box_file /tmp/drop-1)"

t_done
