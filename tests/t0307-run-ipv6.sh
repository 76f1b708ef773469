#!/usr/bin/env bash
# IPv6 targets: --target ssh://user@[addr]:port reaches the box on its IPv6
# address (fd00:213:N::2, testbox gives every box one), and host keys are
# looked up as OpenSSH writes them for an address: bare "addr" on port 22,
# "[addr]:port" on any other port. A wrong key there is refused (77) and
# touches nothing; an IPv6 address without brackets is a usage error.
. "$(dirname "$0")/lib.sh"
t_plan 14

box_up "$(box_name v6)" || { t_not "test box comes up"; t_done; exit 1; }

cat >"$T/m.yml" <<'YML'
stagehand: 1
stage: ipv6
steps:
  - name: Leave a mark
    shell:
      script: touch /etc/stagehand-was-here
      creates: /etc/stagehand-was-here
YML
H6=$TESTBOX_HOST6
BOXKEY=$(cut -d' ' -f2,3 "$TESTBOX_KNOWN_HOSTS") # "ssh-ed25519 AAAA..."
ssh-keygen -q -t ed25519 -N '' -f "$T/other" >/dev/null
OTHER=$(cut -d' ' -f1,2 "$T/other.pub")

# go KH PORT [ARGS...]: run m.yml against [H6]:PORT with known_hosts KH.
go() {
	local kh=$1 port=$2
	shift 2
	rm -rf "$T/r"
	sh_run run "$T/m.yml" --target "ssh://$TESTBOX_USER@[$H6]:$port" \
		-i "$TESTBOX_KEY" --known-hosts "$kh" --report "$T/r" "$@"
}
said() {
	grep -qF -- "$1" "$T/out" "$T/err" && return 0
	echo "exit $RC; no '$1' in:"
	cat "$T/out" "$T/err"
	return 1
}
mark() { box_exec test -e /etc/stagehand-was-here; }

t_ok "the box has an IPv6 address ($H6)" test -n "$H6"

printf '%s %s\n' "$H6" "$BOXKEY" >"$T/bare"
go "$T/bare" 22
t_ok "a stage runs over IPv6, key known as bare addr on port 22" rc_is 0
t_ok "... and did its work" mark
t_ok "... the report names the IPv6 host" \
	test "$(jr "$T/r" .target.host)" = "$H6"
box_exec rm -f /etc/stagehand-was-here

printf '[%s]:22 %s\n' "$H6" "$BOXKEY" >"$T/br22"
go "$T/br22" 22
t_ok "a hand-written [addr]:22 entry counts on port 22" rc_is 0
box_exec rm -f /etc/stagehand-was-here

snap=$(box_snapshot)
printf '%s %s\n' "$H6" "$OTHER" >"$T/wrong"
go "$T/wrong" 22
t_ok "a wrong key for the IPv6 address exits 77" rc_is 77
t_ok "... saying it changed, naming the entry" \
	said "host key for $H6 has changed"
t_ok "... and touched nothing" test "$snap" = "$(box_snapshot)"

# A second sshd in the box on [addr]:2222, same host key.
box_exec sh -c "sed -e '/^ListenAddress [0-9]/d' \
	-e 's/^ListenAddress .*/ListenAddress [$H6]:2222/' \
	/etc/ssh/sshd_config >/etc/ssh/sshd_config_2222 &&
	/usr/sbin/sshd -f /etc/ssh/sshd_config_2222"
for _ in $(seq 1 100); do
	(exec 3<>"/dev/tcp/$H6/2222") 2>/dev/null && break
	sleep 0.1
done
t_ok "a second sshd listens on [$H6]:2222" bash -c "exec 3<>/dev/tcp/$H6/2222"

printf '[%s]:2222 %s\n' "$H6" "$BOXKEY" >"$T/br2222"
go "$T/br2222" 2222
t_ok "on port 2222 the [addr]:2222 entry makes the key known" rc_is 0
box_exec rm -f /etc/stagehand-was-here

go "$T/bare" 2222
t_ok "on port 2222 a bare addr entry does not count (77)" rc_is 77
t_ok "... it is an unknown key for [addr]:2222" \
	said "unknown host key $TESTBOX_HOST_KEY_SHA256 (ssh-ed25519) for [$H6]:2222"

printf '%s %s\n[%s]:2222 %s\n' "$H6" "$BOXKEY" "$H6" "$OTHER" >"$T/br_wrong"
go "$T/br_wrong" 2222
t_ok "a wrong [addr]:2222 entry exits 77 though the bare entry has the key" \
	rc_is 77

sh_run run "$T/m.yml" --target "$TESTBOX_USER@$H6" -i "$TESTBOX_KEY" \
	--known-hosts "$T/bare"
t_ok "an IPv6 address without brackets is a usage error (2)" rc_is 2

t_done
