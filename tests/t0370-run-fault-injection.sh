#!/usr/bin/env bash
# Interrupted runs and faults. When the controller dies (SIGKILL) or the
# connection drops (`testbox kill-sessions`), what a step started on the
# target ends within 10 s (remote.c's watchdog), no temp file stays, every
# file a step wrote holds its old or its new content, never half, and a
# re-run finishes the stage; a signal that comes while a step's shell
# exits (made to come with every exit) does not keep its temp file. A run
# holds a lock on the target: a second run fails naming the holder (exit
# 75) or waits with --wait-lock, and a killed holder does not keep it.
# Reports are 0600 in a 0700 directory, and the process can neither dump
# core nor be read by other processes.
#
# The fault injection kills at seeded random moments of a long stage:
#   T0370_SEED (default 370), T0370_KILLS (SIGKILLs, default 6),
#   T0370_DROPS (kill-sessions, default 4).
# "Within 10 s" is a poll that gives up after 10 s, not a timing check.
. "$(dirname "$0")/lib.sh"
t_plan 45

box_up "$(box_name fi)" || { t_not "test box comes up"; t_done; exit 1; }

# Processes in the box other than sshd's listener (pid 1) and ps itself.
box_leftovers() {
	box_exec ps -eo pid=,args= | awk '$1 != 1 && $2 != "ps"'
}

# box_quiet: polls up to 10 s until nothing of a session is left running.
box_quiet() {
	local end=$((SECONDS + 10)) left
	while :; do
		left=$(box_leftovers)
		[ -z "$left" ] && return 0
		((SECONDS < end)) || break
		sleep 0.2
	done
	echo "still running after 10 s:"
	echo "$left"
	return 1
}

# poll10 CMD...: polls up to 10 s until CMD succeeds.
poll10() {
	local end=$((SECONDS + 10))
	until "$@"; do
		((SECONDS < end)) || return 1
		sleep 0.2
	done
}

# not_in_box PATTERN: no process in the box matches PATTERN (pgrep -f).
not_in_box() {
	! box_exec pgrep -f "$1" >/dev/null
}

# wait_box_file PATH: polls up to 30 s for PATH to exist in the box.
wait_box_file() {
	local i
	for ((i = 0; i < 300; i++)); do
		box_exec test -e "$1" && return 0
		sleep 0.1
	done
	return 1
}

# start_run MANIFEST [ARGS...]: stagehand run in the background; $BG_PID.
start_run() {
	local m=$1
	shift
	"$STAGEHAND" run "$m" "${SSH_ARGS[@]}" "$@" >"$T/bg.out" 2>&1 &
	BG_PID=$!
}

kill_run() {
	kill -KILL "$BG_PID" 2>/dev/null
	wait "$BG_PID" 2>/dev/null
	BG_PID=
}

# --- an orphan ends: SIGKILL of the controller during a long step
for who in true false; do
	cat >"$T/long-$who.yml" <<YML
stagehand: 1
stage: long
steps:
  - name: Sleep for an hour
    become: $who
    shell: "touch /tmp/long-started; sleep 3601"
YML
	box_exec rm -f /tmp/long-started
	start_run "$T/long-$who.yml" --report "$T/long-$who"
	wait_box_file /tmp/long-started
	t_ok "become $who: the long step runs in the box" \
		sh -c "'$TESTBOX' exec '$TESTBOX_NAME' -- pgrep -f 'sleep 3601' >/dev/null"
	kill_run
	t_ok "become $who: after SIGKILL of stagehand, nothing of it runs in the box within 10 s" \
		box_quiet
	box_exec pkill -KILL -f "sleep 360[0-9]" # what an old binary leaves
done

# --- the same after the connection drops (sshd's session killed)
box_exec rm -f /tmp/long-started
cat >"$T/long-drop.yml" <<'YML'
stagehand: 1
stage: long
steps:
  - name: Sleep for an hour
    become: true
    shell: "touch /tmp/long-started; sleep 3602"
YML
start_run "$T/long-drop.yml" --report "$T/long-drop"
wait_box_file /tmp/long-started
"$TESTBOX" kill-sessions "$TESTBOX_NAME" >/dev/null
t_ok "after kill-sessions, the old session's step is gone within 10 s" \
	poll10 not_in_box "sleep 3602"
kill_run
box_exec pkill -KILL -f "sleep 360[0-9]"
box_quiet >/dev/null

# --- the lock
cat >"$T/hold.yml" <<'YML'
stagehand: 1
stage: holder
steps:
  - name: Hold the target a while
    shell: "touch /tmp/hold-started; while [ ! -e /tmp/hold-release ]; do sleep 0.1; done"
YML
cat >"$T/quick.yml" <<'YML'
stagehand: 1
stage: quick
steps:
  - name: Mark
    shell: "echo ran >> /tmp/quick-ran"
YML
box_exec rm -f /tmp/hold-started /tmp/hold-release /tmp/quick-ran
start_run "$T/hold.yml" --report "$T/hold"
holder=$BG_PID
wait_box_file /tmp/hold-started
run lock2 "$T/quick.yml"
t_ok "a second run against the same target fails with exit 75" rc_is 75
t_ok "its error names the holder (pid, stage)" \
	grep -q "locked by another run (stagehand pid $holder on .*, stage holder, since " "$T/err"
t_ok "it ran nothing" sh -c "! '$TESTBOX' exec '$TESTBOX_NAME' -- test -e /tmp/quick-ran"
t_ok "its report says failed, the step not run" \
	sh -c "[ \"\$(jq -r '.status + \" \" + .steps[0].status' '$T/lock2/results.json')\" = 'failed not_run' ]"
# --wait-lock: waits (a notice names the holder) and runs once released.
"$STAGEHAND" run "$T/quick.yml" "${SSH_ARGS[@]}" --report "$T/lockw" --wait-lock \
	>"$T/w.out" 2>&1 &
waiter=$!
t_ok "--wait-lock says it waits, and for whom" \
	sh -c 'for i in $(seq 300); do grep -q "waiting for the target lock, held by stagehand pid $2" "$1" && exit 0; sleep 0.1; done; exit 1' \
	_ "$T/w.out" "$holder"
t_ok "... and runs nothing while it waits" \
	sh -c "! '$TESTBOX' exec '$TESTBOX_NAME' -- test -e /tmp/quick-ran"
box_exec touch /tmp/hold-release
wrc=0
wait "$waiter" || wrc=$?
t_ok "... then runs once the holder is done (exit $wrc)" test "$wrc" = 0
t_ok "... its step ran" box_exec test -e /tmp/quick-ran
wait "$holder"
t_ok "the holder's own run passed" sh -c "[ \"\$(jq -r .status '$T/hold/results.json')\" = passed ]"
run lock3 "$T/quick.yml" --wait-lock=x
t_ok "--wait-lock=x is a usage error" rc_is 2
# A killed holder does not keep the lock: the next run, started at once and
# without --wait-lock, gets it.
box_exec rm -f /tmp/hold-started /tmp/hold-release
start_run "$T/hold.yml" --report "$T/hold2"
wait_box_file /tmp/hold-started
kill_run
run lock4 "$T/quick.yml"
t_ok "right after SIGKILL of the holder, a run takes the lock" rc_is 0
# --wait-lock=SECS gives up, naming the holder.
box_exec rm -f /tmp/hold-started /tmp/hold-release
start_run "$T/hold.yml" --report "$T/hold3"
wait_box_file /tmp/hold-started
run lock5 "$T/quick.yml" --wait-lock=2
t_ok "--wait-lock=2 gives up with exit 75 while the holder runs" rc_is 75
box_exec touch /tmp/hold-release
wait "$BG_PID"
BG_PID=

# --- reports are for the run's user alone; the process is not dumpable
t_ok "a new report directory is 0700" test "$(stat -c %a "$T/lock4")" = 700
t_ok "report files are 0600" sh -c "[ \"\$(stat -c %a '$T/lock4'/* | sort -u)\" = 600 ]"
box_exec rm -f /tmp/hold-started /tmp/hold-release
# Run with group nogroup: /proc/PID belongs to the process's uid:gid while
# it is dumpable and to root:root once it is not.
setpriv --regid=65534 --clear-groups "$STAGEHAND" run "$T/hold.yml" "${SSH_ARGS[@]}" \
	--report "$T/hold4" >"$T/bg.out" 2>&1 &
BG_PID=$!
wait_box_file /tmp/hold-started
t_ok "stagehand's /proc entries are root:root: it is not dumpable" \
	test "$(stat -c %g "/proc/$BG_PID/status")" = 0
t_ok "... and its core file limit is 0" \
	grep -Eq '^Max core file size +0 +0 ' "/proc/$BG_PID/limits"
box_exec touch /tmp/hold-release
wait "$BG_PID"
BG_PID=

# --- a signal while a step's script exits
# An interrupted step gets more than one signal: the watchdog's TERM goes
# to the whole group, timeout forwards it twice more, and output to the
# closed channel raises SIGPIPE. The shell runs the trap of a signal that
# comes while it exits before the EXIT trap's first command: a trap that
# only exits then ends the shell without the EXIT trap, and the temp file
# stays. That window is microseconds wide, so here a test-only `sh`, first
# in sudo's secure_path, gives the shell of a script with a payload (`sh
# -c 'read -r n ...'`, or the privileged session's `sh -s`, whose stdin is
# the script alone) an `exit` alias that sends it the signal first: every
# exit comes with one.
# The upload fails after making its temp file (no such owner); the temp
# file must go all the same, and the status says the signal's trap ran.
cat >"$T/exit-signal-sh" <<'SH'
#!/bin/dash
case $1:${2-} in
"-c:read -r n && "*)
	read -r sig </tmp/exit-signal || exit 1
	c=$2
	shift 2
	: >/tmp/exit-signal-used
	exec /bin/dash -c "alias exit='exit \$(kill -$sig \$\$)'
$c" "$@"
	;;
-s:)
	[ -e /tmp/exit-signal ] || exec /bin/dash -s
	read -r sig </tmp/exit-signal || exit 1
	c=$(cat)
	: >/tmp/exit-signal-used
	exec /bin/dash -c "alias exit='exit \$(kill -$sig \$\$)'
$c"
	;;
esac
exec /bin/dash "$@"
SH
cat >"$T/exit-signal.yml" <<'YML'
stagehand: 1
stage: exit-signal
steps:
  - name: Fails after making its temp file
    upload: { content: "x\n", dest: /srv/ex/u, owner: nosuchuser }
YML
# exit_signal_clean REPORT STATUS: the run failed at the chown with
# STATUS, through the alias, and left nothing in /srv/ex.
exit_signal_clean() {
	local msg left
	msg=$(jr "$T/$1" '.steps[0].error.message')
	left=$(box_exec ls -A /srv/ex)
	box_exec test -e /tmp/exit-signal-used || {
		echo "the exit alias was not used"
		return 1
	}
	case $msg in "exit $2: chown: "*nosuchuser*) ;; *)
		echo "rc $RC, step error: $msg"
		return 1
		;;
	esac
	[ -z "$left" ] || {
		echo "left in /srv/ex: $left"
		return 1
	}
}
box_exec sh -c 'cat >/usr/local/bin/sh && chmod 755 /usr/local/bin/sh' \
	<"$T/exit-signal-sh"
for sig in TERM:143 PIPE:141; do
	box_exec sh -c "rm -rf /srv/ex /tmp/exit-signal-used && mkdir /srv/ex &&
		echo ${sig%:*} >/tmp/exit-signal"
	run "exit-${sig%:*}" "$T/exit-signal.yml"
	t_ok "a ${sig%:*} while the upload's shell exits: its temp file is removed" \
		exit_signal_clean "exit-${sig%:*}" "${sig#*:}"
done
box_exec rm -f /usr/local/bin/sh /tmp/exit-signal /tmp/exit-signal-used

# --- fault injection
seed=${T0370_SEED:-370}
kills=${T0370_KILLS:-6}
drops=${T0370_DROPS:-4}
RANDOM=$seed
echo "# seed $seed: $kills SIGKILLs, $drops kill-sessions"
N=6
head -c $((4 << 20)) /dev/urandom >"$T/big.new"
{
	echo "stagehand: 1"
	echo "stage: faults"
	echo "steps:"
	echo "  - name: A big file"
	echo "    upload: { src: $T/big.new, dest: /srv/fi/big }"
	for i in $(seq $N); do
		echo "  - name: Upload $i"
		echo "    become: true"
		echo "    upload: { content: \"new $i $(printf 'x%.0s' $(seq 200))\\n\", dest: /srv/fi/u$i }"
		echo "  - name: Line $i"
		echo "    become: true"
		echo "    line: { path: /srv/fi/l$i, regexp: \"^key=\", line: \"key=new $i\" }"
		echo "  - name: Wait $i"
		echo "    shell: sleep 0.3"
	done
} >"$T/faults.yml"
# Old and new content of every file, as sha256 sums.
declare -A old new
old[big]=$(head -c $((4 << 20)) /dev/zero | sha256sum | cut -d' ' -f1)
new[big]=$(sha256sum <"$T/big.new" | cut -d' ' -f1)
for i in $(seq $N); do
	old[u$i]=$(printf 'old %s\n' "$i" | sha256sum | cut -d' ' -f1)
	new[u$i]=$(printf 'new %s %s\n' "$i" "$(printf 'x%.0s' $(seq 200))" | sha256sum | cut -d' ' -f1)
	old[l$i]=$(printf 'a=1\nkey=old\nz=2\n' | sha256sum | cut -d' ' -f1)
	new[l$i]=$(printf 'a=1\nkey=new %s\nz=2\n' "$i" | sha256sum | cut -d' ' -f1)
done
reset_files() {
	box_exec sh -c 'rm -rf /srv/fi && mkdir -p /srv/fi && chown builder /srv/fi &&
		head -c 4194304 /dev/zero > /srv/fi/big && chown builder /srv/fi/big &&
		for i in $(seq '"$N"'); do
			printf "old %s\n" "$i" > /srv/fi/u$i
			printf "a=1\nkey=old\nz=2\n" > /srv/fi/l$i
		done'
}
# Prints the files that hold neither their old nor their new content.
torn_files() {
	local f sum
	box_exec sh -c 'cd /srv/fi && sha256sum big u* l*' | while read -r sum f; do
		[ "$sum" = "${old[$f]}" ] || [ "$sum" = "${new[$f]}" ] || echo "$f"
	done
}
reset_files
run fi0 "$T/faults.yml"
t_ok "the fault stage passes when nothing goes wrong" rc_is 0
box_exec sh -c 'cd /srv/fi && sha256sum big u* l*' >"$T/sums"
bad=0
for f in big $(for i in $(seq $N); do echo u$i l$i; done); do
	grep -q "^${new[$f]}  $f\$" "$T/sums" || bad=1
done
t_ok "... the new content is what the test expects" test "$bad" = 0
full_ms=$(jr "$T/fi0" .duration_ms)

stats_orphans=0 stats_temps=0 stats_torn=0 stats_rerun=0
inject() { # kind index
	local kind=$1 n=$2 delay left temps torn
	reset_files
	delay=$((RANDOM % (full_ms > 200 ? full_ms : 200)))
	start_run "$T/faults.yml" --report "$T/fi-$kind-$n"
	sleep "$((delay / 1000)).$(printf '%03d' $((delay % 1000)))"
	if [ "$kind" = kill ]; then
		kill_run
	else
		"$TESTBOX" kill-sessions "$TESTBOX_NAME" >/dev/null
		wait "$BG_PID" 2>/dev/null
		BG_PID=
	fi
	left=
	box_quiet >"$T/quiet" 2>&1 || left=1
	temps=$(box_exec find /srv/fi -name '.stagehand*')
	torn=$(torn_files | tr '\n' ' ')
	[ -z "$left" ] || stats_orphans=$((stats_orphans + 1))
	[ -z "$temps" ] || stats_temps=$((stats_temps + 1))
	[ -z "$torn" ] || stats_torn=$((stats_torn + 1))
	if [ -z "$left" ] && [ -z "$temps" ] && [ -z "$torn" ]; then
		t_pass "$kind $n at ${delay} ms: nothing left running, no temp file, no torn file"
	else
		{
			cat "$T/quiet"
			echo "temp files: $temps"
			echo "torn: $torn"
			box_exec ls -la /srv/fi
		} >"$T/detail"
		t_not "$kind $n at ${delay} ms: nothing left running, no temp file, no torn file" \
			"$T/detail"
	fi
	run "fi-$kind-$n-rerun" "$T/faults.yml"
	if [ "$RC" = 0 ] && [ "$(jr "$T/fi-$kind-$n-rerun" .status)" = passed ]; then
		t_pass "$kind $n: a re-run finishes the stage with no failure"
	else
		stats_rerun=$((stats_rerun + 1))
		cat "$T/out" "$T/err" >"$T/detail"
		t_not "$kind $n: a re-run finishes the stage with no failure" "$T/detail"
	fi
}
for ((k = 1; k <= kills; k++)); do inject kill "$k"; done
for ((k = 1; k <= drops; k++)); do inject drop "$k"; done
echo "# fault injection: $kills SIGKILLs + $drops kill-sessions; with processes left: $stats_orphans," \
	"with temp files left: $stats_temps, with torn files: $stats_torn, failed re-runs: $stats_rerun"

t_done
