#!/usr/bin/env bash
# Host key rules (OpenSSH's): a @revoked key is refused whatever else
# known_hosts says, even with --accept-new-host-key; on a port other than
# 22 only [host]:port entries count; @cert-authority lines are skipped and
# -v says so; a --known-hosts file that does not exist is a usage error;
# and a host key that changes between the first connection and a
# reconnect stops the run (77, "on reconnect"). Refusals touch nothing.
. "$(dirname "$0")/lib.sh"
t_plan 28

box_up "$(box_name hk)" || { t_not "test box comes up"; t_done; exit 1; }

cat >"$T/m.yml" <<'YML'
stagehand: 1
stage: hostkeys
steps:
  - name: Leave a mark
    shell:
      script: touch /etc/stagehand-was-here
      creates: /etc/stagehand-was-here
YML
H=$TESTBOX_HOST
BOXKEY=$(cut -d' ' -f2,3 "$TESTBOX_KNOWN_HOSTS") # "ssh-ed25519 AAAA..."
ssh-keygen -q -t ed25519 -N '' -f "$T/other" >/dev/null
OTHER=$(cut -d' ' -f1,2 "$T/other.pub")

# go KH PORT [ARGS...]: stagehand run of m.yml against the box on PORT,
# checking host keys against known_hosts file KH; report in $T/r.
go() {
	local kh=$1 port=$2
	shift 2
	rm -rf "$T/r"
	sh_run run "$T/m.yml" --target "ssh://$TESTBOX_USER@$H:$port" \
		-i "$TESTBOX_KEY" --known-hosts "$kh" --report "$T/r" "$@"
}
# said TEXT: stdout or stderr of the last run has TEXT
said() {
	grep -qF -- "$1" "$T/out" "$T/err" && return 0
	echo "exit $RC; no '$1' in:"
	cat "$T/out" "$T/err"
	return 1
}

# ---------------------------------------------------------------- @revoked

printf '%s %s\n@revoked * %s\n' "$H" "$BOXKEY" "$BOXKEY" >"$T/revoked_too"
go "$T/revoked_too" 22
t_ok "a revoked key listed on another line exits 77" rc_is 77
t_ok "the refusal says revoked and names the @revoked line" \
	said "is revoked: @revoked in $T/revoked_too:2"

printf '@revoked %s %s\n' "$H" "$BOXKEY" >"$T/revoked_only"
go "$T/revoked_only" 22 --accept-new-host-key
t_ok "a revoked key is refused even with --accept-new-host-key (77)" rc_is 77
t_ok "... and the report does not record it as accepted" \
	test "$(jr "$T/r" .target.host_key.accepted_new)" != true
t_fail "the refused runs left no mark on the box" \
	box_exec test -e /etc/stagehand-was-here

printf '@revoked * %s\n%s %s\n' "$OTHER" "$H" "$BOXKEY" >"$T/revoked_other"
go "$T/revoked_other" 22
t_ok "revoking another key changes nothing" rc_is 0

# ---------------------------------------------------------------- @cert-authority

printf '@cert-authority *.example.org %s\n@cert-authority %s %s\n%s %s\n' \
	"$OTHER" "$H" "$BOXKEY" "$H" "$BOXKEY" >"$T/ca"
go "$T/ca" 22 -v
t_ok "a @cert-authority line for the host does not stop a listed key" rc_is 0
t_ok "-v says the @cert-authority line was skipped, naming file and line" \
	said "$T/ca:2: @cert-authority line for $H skipped"
box_exec rm -f /etc/stagehand-was-here
go "$T/ca" 22
t_fail "without -v nothing is said about it" said "@cert-authority"

printf '@cert-authority %s %s\n' "$H" "$BOXKEY" >"$T/ca_only"
go "$T/ca_only" 22
t_ok "a @cert-authority line never makes a key known (77)" rc_is 77
box_exec rm -f /etc/stagehand-was-here

# ---------------------------------------------------------------- ports

# A second sshd in the box, same host key, on port 2222.
box_exec sh -c "sed -e '/^ListenAddress \[/d' -e 's/^ListenAddress .*/ListenAddress $H:2222/' \
	/etc/ssh/sshd_config >/etc/ssh/sshd_config_2222 &&
	/usr/sbin/sshd -f /etc/ssh/sshd_config_2222"
for _ in $(seq 1 100); do
	(exec 3<>"/dev/tcp/$H/2222") 2>/dev/null && break
	sleep 0.1
done
t_ok "a second sshd listens on port 2222 in the box" \
	bash -c "exec 3<>/dev/tcp/$H/2222"

printf '%s %s\n[%s]:2222 %s\n' "$H" "$BOXKEY" "$H" "$OTHER" >"$T/port_other"
go "$T/port_other" 2222
t_ok "[host]:2222 with another key exits 77 though a plain host line lists the key" \
	rc_is 77
t_ok "... naming the [host]:2222 line as the offending entry" \
	said "offending entry in $T/port_other:2"
go "$T/port_other" 2222 --accept-new-host-key
t_ok "... even with --accept-new-host-key" rc_is 77

printf '%s %s\n' "$H" "$BOXKEY" >"$T/plain_only"
go "$T/plain_only" 2222
t_ok "a plain host line does not make the key known on port 2222 (77)" rc_is 77
t_ok "... it is an unknown key for [host]:2222" \
	said "unknown host key $TESTBOX_HOST_KEY_SHA256 (ssh-ed25519) for [$H]:2222"
go "$T/plain_only" 2222 --accept-new-host-key
t_ok "... which --accept-new-host-key takes" rc_is 0
t_ok "... and records as accepted" \
	test "$(jr "$T/r" .target.host_key.accepted_new)" = true
box_exec rm -f /etc/stagehand-was-here

printf '%s %s\n[%s]:2222 %s\n' "$H" "$OTHER" "$H" "$BOXKEY" >"$T/port_right"
go "$T/port_right" 2222
t_ok "[host]:2222 with the key is enough on port 2222" rc_is 0
box_exec rm -f /etc/stagehand-was-here

# ---------------------------------------------------------------- missing file

snap=$(box_snapshot)
go "$T/no-such-file" 22
t_ok "a --known-hosts file that does not exist exits 2" rc_is 2
t_ok "... naming the file" said "known hosts file $T/no-such-file: No such file or directory"
go "$T/no-such-file" 22 --accept-new-host-key
t_ok "... also with --accept-new-host-key" rc_is 2
t_ok "refused runs changed nothing on the box" \
	test "$snap" = "$(box_snapshot)"

# ---------------------------------------------------------------- reconnect

# Step 1 gives the box a new host key, then kills the sshd processes that
# serve this connection (the sshd ancestors of the step's shell, below the
# listener, pid 1); sshd reads its host key per connection, so the
# reconnect meets the new key. No timing is involved.
cat >"$T/swap.yml" <<'YML'
stagehand: 1
stage: swap
steps:
  - name: New host key, then drop the session
    shell:
      script: |
        rm -f /tmp/newkey /tmp/newkey.pub
        ssh-keygen -q -t ed25519 -N '' -f /tmp/newkey
        install -m 0600 /tmp/newkey /etc/ssh/ssh_host_ed25519_key
        install -m 0644 /tmp/newkey.pub /etc/ssh/ssh_host_ed25519_key.pub
        p=$$ mine=
        while [ "$p" -gt 1 ]; do
          [ "$(cat /proc/$p/comm)" = sshd ] && mine="$mine $p"
          p=$(awk '/^PPid:/ {print $2}' /proc/$p/status)
        done
        kill -KILL $mine
        sleep 30
  - name: Never
    shell: touch /tmp/never
YML
sh_run run "$T/swap.yml" "${SSH_ARGS[@]}" --report "$T/rs"
t_ok "a host key swapped before the reconnect exits 77" rc_is 77
t_ok "... saying so: host key mismatch on reconnect" \
	said "host key mismatch for $H on reconnect: expected $TESTBOX_HOST_KEY_SHA256"
t_ok "... failing the step whose session died" \
	test "$(jr "$T/rs" '.steps[0].status')" = failed
t_ok "... and the step after it never ran" \
	test "$(jr "$T/rs" '.steps[1].status')" = not_run
t_fail "... nothing ran over the new session" box_exec test -e /tmp/never

t_done
