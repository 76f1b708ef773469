#!/usr/bin/env bash
# Jump hosts: a box reachable only from another box (testbox up --behind)
# is provisioned through that box as --jump (or STAGEHAND_JUMP; also over
# IPv6, and through two hops). The hop's host key is checked as the
# target's is: unknown or changed in known_hosts, or not the
# --jump-host-key pin, is 77 naming the hop, and the target is never
# touched; a hop that does not answer is 69 naming it;
# the run survives the hop's sessions being killed (it reconnects through
# a new hop session) unless the hop's key changed meanwhile (77); SIGTERM
# ends it as interrupted (130) with no relay process left; the report
# lists the hops with their host keys and no key material.
. "$(dirname "$0")/lib.sh"
t_plan 39

FRONT=$(box_name jf)
BACK=$(box_name jb)
box_up "$FRONT" || { t_not "front box comes up"; t_done; exit 1; }
FH=$TESTBOX_HOST FKH=$TESTBOX_KNOWN_HOSTS
cp "$TESTBOX_KEY" "$T/front_key" # outlives the front box (last check)
FKEY=$T/front_key
FFP=$TESTBOX_HOST_KEY_SHA256 FUSER=$TESTBOX_USER FH6=$TESTBOX_HOST6
box_up "$BACK" --behind "$FRONT" || { t_not "back box comes up"; t_done; exit 1; }
t_pass "a box behind the front box comes up"
cat "$FKH" "$TESTBOX_KNOWN_HOSTS" >"$T/kh"
JUMP=ssh://$FUSER@$FH
ssh-keygen -q -t ed25519 -N '' -f "$T/other" >/dev/null
OTHER=$(cut -d' ' -f1,2 "$T/other.pub")

cat >"$T/m.yml" <<'YML'
stagehand: 1
stage: jump
steps:
  - name: Leave a mark
    shell:
      script: hostname >/etc/stagehand-was-here
      creates: /etc/stagehand-was-here
YML
# go KH [ARGS...]: m.yml on the back box with known_hosts KH; report $T/r.
go() {
	local kh=$1
	shift
	rm -rf "$T/r"
	sh_run run "$T/m.yml" --target "ssh://$TESTBOX_USER@$TESTBOX_HOST" \
		-i "$TESTBOX_KEY" --known-hosts "$kh" --report "$T/r" "$@"
}
said() {
	grep -qF -- "$1" "$T/out" "$T/err" && return 0
	echo "exit $RC; no '$1' in:"
	cat "$T/out" "$T/err"
	return 1
}
mark() { box_exec test -e /etc/stagehand-was-here; }

go "$T/kh" --connect-timeout 2
t_ok "without a jump host the back box is unreachable (69)" rc_is 69

go "$T/kh" --jump "$JUMP" --jump-identity "$FKEY"
t_ok "a stage runs on the back box through the front box" rc_is 0
t_ok "... and did its work there" \
	test "$(box_exec cat /etc/stagehand-was-here)" = "$BACK"
t_ok "the report lists the hop" \
	test "$(jr "$T/r" '.target.jumps | length')" = 1 -a \
	"$(jr "$T/r" '.target.jumps[0].host')" = "$FH" -a \
	"$(jr "$T/r" '.target.jumps[0].port')" = 22 -a \
	"$(jr "$T/r" '.target.jumps[0].user')" = "$FUSER"
t_ok "... with the host key it showed" \
	test "$(jr "$T/r" '.target.jumps[0].host_key.fingerprint')" = "$FFP"
t_fail "... and no key material" grep -rqF "$(sed -n 2p "$FKEY")" "$T/r"
t_ok "... and it validates against docs/results.schema.json" \
	python3 -c 'import json, sys, jsonschema
jsonschema.validate(json.load(open(sys.argv[2])), json.load(open(sys.argv[1])),
    cls=jsonschema.Draft202012Validator)' "$TOP/docs/results.schema.json" "$T/r/results.json"
box_exec rm -f /etc/stagehand-was-here

# --jump-identity before any --jump is every hop's key.
go "$T/kh" --jump-identity "$FKEY" --jump "$JUMP,$JUMP"
t_ok "two hops in a row (the front box twice) reach the back box" rc_is 0
t_ok "... and the report lists both" \
	test "$(jr "$T/r" '.target.jumps | length')" = 2 -a \
	"$(jr "$T/r" '.target.jumps[1].host_key.fingerprint')" = "$FFP"
box_exec rm -f /etc/stagehand-was-here

# The hop over IPv6: its key known under the bare address (port 22).
printf '%s %s\n' "$FH6" "$(cut -d' ' -f2,3 "$FKH")" | cat - "$TESTBOX_KNOWN_HOSTS" >"$T/kh6"
go "$T/kh6" --jump "ssh://$FUSER@[$FH6]:22" --jump-identity "$FKEY"
t_ok "a hop reached over IPv6 ([addr]:22) works, its key known as the bare address" \
	rc_is 0
t_ok "... and the report names it by its IPv6 address" \
	test "$(jr "$T/r" '.target.jumps[0].host')" = "$FH6"
box_exec rm -f /etc/stagehand-was-here

STAGEHAND_JUMP=$JUMP go "$T/kh" --jump-identity "$FKEY"
t_ok "STAGEHAND_JUMP names the jump host as --jump does" rc_is 0
t_ok "... and the report lists it" \
	test "$(jr "$T/r" '.target.jumps[0].host')" = "$FH"
box_exec rm -f /etc/stagehand-was-here

# The hop's key from the environment, as the target's can come: a
# multi-line secret that must show nowhere, whole or in part.
HOPKEY=$(cat "$FKEY") go "$T/kh" --jump "$JUMP" --jump-identity-env HOPKEY
t_ok "--jump-identity-env: the hop's key from an environment variable works" rc_is 0
key_lines() { sed '1d;$d' "$FKEY"; }
leaked() {
	local l
	while read -r l; do
		grep -rqF -- "$l" "$T/out" "$T/err" "$T/r" && return 0
	done < <(key_lines)
	return 1
}
t_fail "... and no line of that key is in the output, run.log or the reports" leaked
box_exec rm -f /etc/stagehand-was-here

# ---------------------------------------------------------------- trust

snap=$(box_snapshot)
go "$TESTBOX_KNOWN_HOSTS" --jump "$JUMP" --jump-identity "$FKEY"
t_ok "a hop whose key known_hosts does not list exits 77" rc_is 77
t_ok "... naming the hop" said "jump host $FUSER@$FH: unknown host key $FFP"

printf '%s %s\n' "$FH" "$OTHER" | cat - "$TESTBOX_KNOWN_HOSTS" >"$T/wrong"
go "$T/wrong" --jump "$JUMP" --jump-identity "$FKEY"
t_ok "a hop whose key changed exits 77" rc_is 77
t_ok "... naming the hop" said "jump host $FUSER@$FH: host key for $FH has changed"

go "$TESTBOX_KNOWN_HOSTS" --jump "$JUMP" --jump-identity "$FKEY" \
	--jump-host-key SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
t_ok "a hop that is not the --jump-host-key pin exits 77" rc_is 77
t_ok "refused hops touched nothing on the back box" \
	test "$snap" = "$(box_snapshot)"

go "$TESTBOX_KNOWN_HOSTS" --jump "$JUMP" --jump-identity "$FKEY" \
	--jump-host-key "$FFP"
t_ok "the --jump-host-key pin makes the hop known" rc_is 0
box_exec rm -f /etc/stagehand-was-here

go "$T/kh" --jump "$JUMP" --jump-identity "$TESTBOX_KEY"
t_ok "a key the hop does not take exits 77" rc_is 77

go "$TESTBOX_KNOWN_HOSTS" --jump "$JUMP" --jump-identity "$FKEY" \
	--accept-new-host-key
t_ok "--accept-new-host-key takes an unknown hop key" rc_is 0
t_ok "... and the report records it as accepted for the hop only" \
	test "$(jr "$T/r" '.target.jumps[0].host_key.accepted_new')" = true -a \
	"$(jr "$T/r" '.target.host_key.accepted_new')" = false
box_exec rm -f /etc/stagehand-was-here

# ---------------------------------------------------------------- reach

go "$T/kh" --jump "$JUMP:2" --jump-identity "$FKEY"
t_ok "a hop where nothing listens exits 69" rc_is 69
t_ok "... naming the hop" said "jump host $FUSER@[$FH]:2: connect"

rm -rf "$T/r"
sh_run run "$T/m.yml" --target "ssh://$TESTBOX_USER@$TESTBOX_HOST:2" \
	-i "$TESTBOX_KEY" --known-hosts "$T/kh" --report "$T/r" \
	--jump "$JUMP" --jump-identity "$FKEY"
t_ok "a target the hop cannot reach exits 69" rc_is 69
t_ok "... naming the hop and the target" \
	said "jump host $FUSER@$FH: cannot reach [$TESTBOX_HOST]:2"

# ---------------------------------------------------------------- drop

cat >"$T/drop.yml" <<'YML'
stagehand: 1
stage: drop
steps:
  - name: Long step whose hop dies
    retries: 1
    shell:
      script: |
        if [ ! -e /tmp/drop-once ]; then touch /tmp/drop-once; sleep 20; fi
        touch /tmp/long-done
      creates: /tmp/long-done
  - name: After the drop
    shell: touch /tmp/after-drop
YML
# start_drop REPORT: drop.yml through the hop in the background ($pid),
# back once its long step runs on the box (it made /tmp/drop-once).
start_drop() {
	box_exec rm -f /tmp/drop-once /tmp/long-done /tmp/after-drop
	"$STAGEHAND" run "$T/drop.yml" "${SSH_ARGS[@]}" --known-hosts "$T/kh" \
		--jump "$JUMP" --jump-identity "$FKEY" --report "$1" \
		>"$T/out" 2>"$T/err" &
	pid=$!
	for _ in $(seq 1 100); do
		box_exec test -e /tmp/drop-once && break
		sleep 0.1
	done
}
start_drop "$T/rd"
"$TESTBOX" kill-sessions "$FRONT"
rc=0
wait "$pid" || rc=$?
cat "$T/out" "$T/err" >"$T/drop.log"
t_ok "the run survives the hop's sessions being killed" \
	sh -c '[ "$1" = 0 ] || { cat "$2"; exit 1; }' _ "$rc" "$T/drop.log"
t_ok "... reconnecting through the hop" \
	test "$(jr "$T/rd" .reconnects)" -ge 1
t_ok "... and the steps ran to the end" box_exec test -e /tmp/after-drop

# SIGTERM mid-step: the run ends as interrupted (130) and its relay goes
# with it.
start_drop "$T/ri"
relay=$(pgrep -P "$pid" | head -n 1)
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
t_ok "SIGTERM through a jump host exits 130" test "$rc" = 130
t_ok "... and leaves no relay process behind" \
	sh -c '[ -n "$1" ] && ! kill -0 "$1" 2>/dev/null' _ "$relay"

# The hop's host key changes, then its sessions drop: the reconnect
# through it must refuse the new key (77, naming the hop), as for a target.
start_drop "$T/rk"
"$TESTBOX" exec "$FRONT" sh -c "ssh-keygen -q -t ed25519 -N '' -f /tmp/newkey &&
	install -m 0600 /tmp/newkey /etc/ssh/ssh_host_ed25519_key &&
	install -m 0644 /tmp/newkey.pub /etc/ssh/ssh_host_ed25519_key.pub"
"$TESTBOX" kill-sessions "$FRONT"
rc=0
wait "$pid" || rc=$?
t_ok "a hop whose key changed before the reconnect stops the run (77)" \
	test "$rc" = 77
t_ok "... naming the hop: host key mismatch on reconnect" \
	grep -qF "jump host $FUSER@$FH: host key mismatch for $FH on reconnect" \
	"$T/out" "$T/err"
t_fail "... and the step after it never ran" box_exec test -e /tmp/after-drop

"$TESTBOX" down "$FRONT"
go "$T/kh" --jump "$JUMP" --jump-identity "$FKEY" --connect-timeout 2
t_ok "a dead hop exits 69" rc_is 69

t_done
