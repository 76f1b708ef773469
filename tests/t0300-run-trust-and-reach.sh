#!/usr/bin/env bash
# Bad connections get a clear error, the documented exit code, a report,
# and touch nothing on the box: wrong or unknown host keys (77), pins,
# unreachable targets (69), refused authentication (77); --wait-for-host
# tries a host that is not there yet again, and only such a host.
. "$(dirname "$0")/lib.sh"
t_plan 29

box_up "$(box_name tr)" || { t_not "test box comes up"; t_done; exit 1; }

cat >"$T/m.yml" <<'YML'
stagehand: 1
stage: trust
steps:
  - name: Leave a mark
    shell:
      script: touch /etc/stagehand-was-here
      creates: /etc/stagehand-was-here
YML
target="ssh://$TESTBOX_USER@$TESTBOX_HOST:$TESTBOX_PORT"
before=$(box_snapshot)

# A known_hosts entry for the box's address, but with another key.
ssh-keygen -q -t ed25519 -N '' -f "$T/other" >/dev/null
printf '%s %s\n' "$TESTBOX_HOST" "$(cut -d' ' -f1,2 "$T/other.pub")" >"$T/wrong_known_hosts"
sh_run run "$T/m.yml" --target "$target" -i "$TESTBOX_KEY" \
	--known-hosts "$T/wrong_known_hosts" --report "$T/r1"
t_ok "a changed host key exits 77" test "$RC" = 77
t_ok "a changed host key is named as such" grep -qi 'host key' "$T/err"
t_ok "a refused run still writes a failed report" \
	test "$(jr "$T/r1" .status)" = failed
t_ok "the refused run's steps are not_run" \
	test "$(jr "$T/r1" '.steps[0].status')" = not_run

: >"$T/empty_known_hosts"
sh_run run "$T/m.yml" --target "$target" -i "$TESTBOX_KEY" \
	--known-hosts "$T/empty_known_hosts" --report "$T/r2"
t_ok "an unknown host key exits 77" test "$RC" = 77
t_ok "an unknown host key error says how to accept it" \
	grep -q -- '--accept-new-host-key' "$T/err"

sh_run run "$T/m.yml" --target "$target" -i "$TESTBOX_KEY" \
	--host-key SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA --report "$T/r3"
t_ok "a wrong pinned host key exits 77" test "$RC" = 77

ssh-keygen -q -t ed25519 -N '' -f "$T/stranger" >/dev/null
sh_run run "$T/m.yml" --target "$target" -i "$T/stranger" \
	--known-hosts "$TESTBOX_KNOWN_HOSTS" --report "$T/r4"
t_ok "a key the box does not accept exits 77" test "$RC" = 77
t_ok "a refused login names the user" grep -q "$TESTBOX_USER" "$T/err"

ssh-keygen -q -t rsa -b 2048 -N '' -f "$T/rsa" >/dev/null
sh_run run "$T/m.yml" --target "$target" -i "$T/rsa" \
	--known-hosts "$TESTBOX_KNOWN_HOSTS" --report "$T/r5"
t_ok "an RSA key is refused with advice to use ed25519" grep -qi 'ed25519' "$T/err"

sh_run run "$T/m.yml" --target "ssh://$TESTBOX_USER@$TESTBOX_HOST:2" \
	-i "$TESTBOX_KEY" --known-hosts "$TESTBOX_KNOWN_HOSTS" --report "$T/r6"
t_ok "a closed port exits 69" test "$RC" = 69
t_ok "a closed port names the address" grep -q "$TESTBOX_HOST" "$T/err"
t_ok "an unreachable target is recorded in the report" \
	test "$(jr "$T/r6" .exit_code)" = 69

after=$(box_snapshot)
t_ok "nothing reached the box after any refusal" test "$before" = "$after"
t_fail "no step ran on the box" box_exec test -e /etc/stagehand-was-here

fp=$TESTBOX_HOST_KEY_SHA256
sh_run run "$T/m.yml" --target "$target" -i "$TESTBOX_KEY" --host-key "$fp" --report "$T/r7"
t_ok "the right pinned host key is accepted" test "$RC" = 0
t_ok "the report records the host key" test "$(jr "$T/r7" .target.host_key.fingerprint)" = "$fp"

sh_run run "$T/m.yml" --target "$target" -i "$TESTBOX_KEY" \
	--known-hosts "$T/empty_known_hosts" --accept-new-host-key --report "$T/r8"
t_ok "--accept-new-host-key trusts an unknown host" test "$RC" = 0
t_ok "an accepted new host key is recorded in the report" \
	test "$(jr "$T/r8" .target.host_key.accepted_new)" = true
t_ok "--accept-new-host-key writes no known_hosts file" test ! -s "$T/empty_known_hosts"

key_text=$(cat "$TESTBOX_KEY")
BOXKEY=$key_text sh_run run "$T/m.yml" --target "$target" --identity-env BOXKEY \
	--known-hosts "$TESTBOX_KNOWN_HOSTS" --report "$T/r9"
t_ok "a key given in an environment variable logs in" test "$RC" = 0


# --wait-for-host: a host whose sshd is not there yet. The relay refuses
# connections for 2 s (port closed), then for 2 s accepts and cuts them
# at once (as QEMU's port forward does while the guest boots, or an sshd
# restarting), then relays to the box. It logs each cut connection.
cat >"$T/relay.py" <<'PY'
import socket, sys, threading, time
box = (sys.argv[1], int(sys.argv[2]))
probe = socket.socket()
probe.bind(("127.0.0.1", 0))
port = probe.getsockname()[1]
probe.close()
print(port, flush=True)
time.sleep(2)
lsn = socket.socket()
lsn.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
lsn.bind(("127.0.0.1", port))
lsn.listen(8)
cut_until = time.time() + 2
def pipe(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            b.sendall(d)
    except OSError:
        pass
    for s in (a, b):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
while True:
    c, _ = lsn.accept()
    if time.time() < cut_until:
        c.close()
        with open(sys.argv[3], "a") as f:
            f.write("cut\n")
        continue
    u = socket.create_connection(box)
    threading.Thread(target=pipe, args=(c, u), daemon=True).start()
    threading.Thread(target=pipe, args=(u, c), daemon=True).start()
PY
relay_start() {
	: >"$T/cuts"
	rm -f "$T/relay.port"
	python3 "$T/relay.py" "$TESTBOX_HOST" "$TESTBOX_PORT" "$T/cuts" >"$T/relay.port" &
	relay_pid=$!
	while [ ! -s "$T/relay.port" ]; do sleep 0.1; done
	relay_port=$(cat "$T/relay.port")
}
relay_start
sh_run run "$T/m.yml" --target "ssh://$TESTBOX_USER@127.0.0.1:$relay_port" \
	-i "$TESTBOX_KEY" --host-key "$TESTBOX_HOST_KEY_SHA256" --report "$T/r10"
t_ok "without --wait-for-host a host not there yet exits 69 at once" test "$RC" = 69
kill "$relay_pid" 2>/dev/null; wait "$relay_pid" 2>/dev/null || true

relay_start
sh_run run "$T/m.yml" --target "ssh://$TESTBOX_USER@127.0.0.1:$relay_port" \
	-i "$TESTBOX_KEY" --host-key "$TESTBOX_HOST_KEY_SHA256" --report "$T/r11" \
	--wait-for-host 60
t_ok "--wait-for-host waits for a host that comes up, then runs" test "$RC" = 0
t_ok "the host refused and then cut connections before it came up" test -s "$T/cuts"
t_ok "the waited-for run's report passed" test "$(jr "$T/r11" .status)" = passed
kill "$relay_pid" 2>/dev/null; wait "$relay_pid" 2>/dev/null || true

sh_run run "$T/m.yml" --target "ssh://$TESTBOX_USER@$TESTBOX_HOST:2" \
	-i "$TESTBOX_KEY" --known-hosts "$TESTBOX_KNOWN_HOSTS" --report "$T/r12" \
	--wait-for-host 2
t_ok "a host that never comes up within --wait-for-host exits 69" test "$RC" = 69
t_ok "its error says how many tries it made" grep -q 'no connection after [0-9]* tries' "$T/err"

sh_run run "$T/m.yml" --target "$target" -i "$TESTBOX_KEY" \
	--known-hosts "$T/wrong_known_hosts" --report "$T/r13" --wait-for-host 60
# shellcheck disable=SC2016 # sh -c's own $1 and $2
t_ok "--wait-for-host does not retry a changed host key: 77 after one try" \
	sh -c 'test "$1" = 77 && ! grep -q "tries" "$2"' _ "$RC" "$T/err"
sh_run run "$T/m.yml" --target "$target" --wait-for-host soon
t_ok "--wait-for-host needs seconds (usage, exit 2)" test "$RC" = 2

t_done
