#!/usr/bin/env bash
# t0210-ssh-transport: the libssh2 transport (provisioner/transport/,
# provisioner/target/)
# against the real test box, through the small driver
# tests/integration/sshdrive.c (built here from the module sources, so it
# does not depend on the CLI). Exit codes of the driver: 2 usage, 69
# unreachable, 77 trust, 3 for the codes that share exit 1 (the code name
# is on stderr as "sshdrive: error SH_ERR_...").
. "$(dirname "$0")/lib.sh"
t_plan 48

DRIVE=$T/sshdrive
build_driver() {
	local f
	f=(-std=c11 -Wall -Wextra -Werror -Wshadow -Wconversion -Wsign-conversion
		-Wstrict-prototypes -Wvla -Wformat=2 -Wimplicit-fallthrough
		-Wwrite-strings -O2 -g -D_GNU_SOURCE -iquote "$TOP/provisioner")
	# shellcheck disable=SC2046 # pkg-config prints several words
	${CC:-cc} "${f[@]}" $(pkg-config --cflags libssh2 libsodium libcrypto) -o "$DRIVE" \
		"$TOP/tests/integration/sshdrive.c" \
		"$TOP"/provisioner/target/remote.c "$TOP"/provisioner/transport/*.c \
		"$TOP"/provisioner/util/*.c \
		$(pkg-config --libs libssh2 libsodium libcrypto)
}
t_ok "the transport test driver builds with the project's warning flags" build_driver

box_up "$(box_name s)" || { t_not "the test box comes up"; t_done; exit 1; }
TGT=$TESTBOX_USER@$TESTBOX_HOST:$TESTBOX_PORT
KEYS=(-i "$TESTBOX_KEY" -k "$TESTBOX_KNOWN_HOSTS")
NET=${TESTBOX_HOST%.*}

# drive ARGS...: runs the driver, stdout in $T/o, stderr in $T/e, code in $RC
drive() {
	RC=0
	"$DRIVE" "$@" >"$T/o" 2>"$T/e" || RC=$?
}
# expect CODE STDERR-TEXT: the last drive exited CODE and said TEXT on stderr
expect() {
	if [ "$RC" = "$1" ] && grep -qF -- "$2" "$T/e"; then return 0; fi
	echo "exit $RC (wanted $1); stderr:"
	cat "$T/e"
	return 1
}
# out TEXT: stdout is exactly TEXT
out() {
	[ "$(cat "$T/o")" = "$1" ] || {
		echo "stdout: $(cat "$T/o")"
		cat "$T/e"
		return 1
	}
}

# ---------------------------------------------------------------- login

drive "${KEYS[@]}" "$TGT" 'id -un'
t_ok "logs in with an ed25519 key file and a known_hosts entry" \
	eval 'expect 0 "status=0" && out builder'
t_ok "reports the host key fingerprint and type of the box" \
	expect 0 "fp=$TESTBOX_HOST_KEY_SHA256 type=ssh-ed25519 accepted=0"

key_in_env() {
	STAGEHAND_TEST_KEY=$(cat "$TESTBOX_KEY") drive -e STAGEHAND_TEST_KEY \
		-k "$TESTBOX_KNOWN_HOSTS" "$TGT" 'id -un' &&
		expect 0 status=0 && out builder
}
t_ok "logs in with the key text in an environment variable" key_in_env

empty_env() {
	STAGEHAND_TEST_KEY='' drive -e STAGEHAND_TEST_KEY "$TGT" true
	expect 2 "environment variable STAGEHAND_TEST_KEY is empty"
}
t_ok "an empty key variable is a usage error" empty_env

with_agent() {
	local rc=0
	eval "$(ssh-agent -a "$T/agent.sock" -s)" >/dev/null || return 1
	ssh-add -q "$TESTBOX_KEY" 2>/dev/null &&
		drive -k "$TESTBOX_KNOWN_HOSTS" "$TGT" 'id -un' &&
		expect 0 status=0 && out builder || rc=1
	kill "$SSH_AGENT_PID"
	unset SSH_AUTH_SOCK SSH_AGENT_PID
	return $rc
}
t_ok "logs in through ssh-agent when no key is given" with_agent

no_agent() {
	(
		unset SSH_AUTH_SOCK
		drive -k "$TESTBOX_KNOWN_HOSTS" "$TGT" true
		expect 2 "no identity given and no ssh-agent"
	)
}
t_ok "without a key or an agent, says so" no_agent

wrong_key() {
	ssh-keygen -q -t ed25519 -N '' -f "$T/other_key" </dev/null
	drive -i "$T/other_key" -k "$TESTBOX_KNOWN_HOSTS" "$TGT" true
	expect 77 "authentication as $TESTBOX_USER refused (publickey)"
}
t_ok "a key the box does not know is refused as a trust failure" wrong_key

# ---------------------------------------------------------------- host keys

drive -i "$TESTBOX_KEY" -k "$T/none" -p "$TESTBOX_HOST_KEY_SHA256" "$TGT" 'echo pinned'
t_ok "a pinned SHA256 fingerprint that matches is enough (no known_hosts)" \
	eval 'expect 0 status=0 && out pinned'

drive -i "$TESTBOX_KEY" -p "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" "$TGT" true
t_ok "a pinned fingerprint that does not match is refused (exit 77)" \
	expect 77 "host key mismatch for $TESTBOX_HOST: expected SHA256:AAAA"
t_ok "the mismatch message names the key the box offered" \
	expect 77 "got $TESTBOX_HOST_KEY_SHA256"

drive -i "$TESTBOX_KEY" -p "SHA256:nope" "$TGT" true
t_ok "a malformed pin is a usage error" expect 2 "is not a SHA256 fingerprint"

: >"$T/empty_known_hosts"
drive -i "$TESTBOX_KEY" -k "$T/empty_known_hosts" "$TGT" true
t_ok "an unknown host key is refused (exit 77)" \
	expect 77 "unknown host key $TESTBOX_HOST_KEY_SHA256 (ssh-ed25519) for $TESTBOX_HOST"
t_ok "the refusal says how to accept it" expect 77 "--accept-new-host-key"

drive -i "$TESTBOX_KEY" -k "$T/does-not-exist" -a "$TGT" true
t_ok "a known_hosts file that does not exist is a usage error, even with accept-new" \
	expect 2 "known hosts file $T/does-not-exist: No such file or directory"

drive -i "$TESTBOX_KEY" -k "$T/empty_known_hosts" -a "$TGT" 'echo accepted'
t_ok "an unknown host key is taken with accept-new, and reported" \
	eval 'expect 0 "accepted=1" && out accepted'
t_ok "accepting a new key writes no known_hosts file" \
	test ! -s "$T/empty_known_hosts"

hashed() {
	cp "$TESTBOX_KNOWN_HOSTS" "$T/hashed"
	ssh-keygen -q -H -f "$T/hashed" >/dev/null 2>&1 && rm -f "$T/hashed.old" &&
		grep -q '^|1|' "$T/hashed" && ! grep -qF "$TESTBOX_HOST" "$T/hashed" &&
		drive -i "$TESTBOX_KEY" -k "$T/hashed" "$TGT" 'echo hashed' &&
		expect 0 status=0 && out hashed
}
t_ok "hashed known_hosts entries (|1|...) match" hashed

messy() {
	{
		echo "# a comment, a blank line, and lines libssh2 cannot parse"
		echo
		echo "@cert-authority *.example.org ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKnvtGo8hQ5Eux0ztKh1mvS5T9y8bEQxS1vVvzdXj2wK"
		echo "$TESTBOX_HOST sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29tAAAAIA=="
		echo "garbage"
		cat "$TESTBOX_KNOWN_HOSTS"
	} >"$T/messy"
	drive -i "$TESTBOX_KEY" -k "$T/messy" "$TGT" 'echo messy' &&
		expect 0 status=0 && out messy
}
t_ok "known_hosts lines that cannot be parsed are skipped, not fatal" messy

changed() {
	ssh-keygen -q -t ed25519 -N '' -f "$T/impostor" </dev/null
	{
		echo "# line 1"
		echo "$TESTBOX_HOST $(cut -d' ' -f1,2 "$T/impostor.pub")"
	} >"$T/changed"
	drive -i "$TESTBOX_KEY" -k "$T/changed" -a "$TGT" true
	expect 77 "host key for $TESTBOX_HOST has changed" &&
		expect 77 "offending entry in $T/changed:2"
}
t_ok "a changed host key is refused even with accept-new, naming the line" changed

other_type() {
	ssh-keygen -q -t ecdsa -N '' -f "$T/ecdsa_host" </dev/null
	echo "$TESTBOX_HOST $(cut -d' ' -f1,2 "$T/ecdsa_host.pub")" >"$T/ecdsa_only"
	drive -i "$TESTBOX_KEY" -k "$T/ecdsa_only" -a "$TGT" true
	expect 77 "lists only ecdsa-sha2-nistp256 for it"
}
t_ok "a key of a type known_hosts does not list for the host is refused" other_type

ed_after_ecdsa() {
	# libssh2 alone would negotiate ECDSA first; the preference follows
	# the file, whatever order its lines are in.
	{
		echo "10.255.255.1 $(cut -d' ' -f1,2 "$T/ecdsa_host.pub")"
		cat "$TESTBOX_KNOWN_HOSTS"
	} >"$T/mixed"
	drive -i "$TESTBOX_KEY" -k "$T/mixed" "$TGT" 'echo ok' &&
		expect 0 "type=ssh-ed25519" && out ok
}
t_ok "an ed25519-only entry for the host matches among other hosts' ECDSA keys" ed_after_ecdsa

# ---------------------------------------------------------------- reachability

drive "${KEYS[@]}" "$TESTBOX_USER@$TESTBOX_HOST:2222" true
t_ok "a closed port is unreachable (exit 69) with the cause" \
	expect 69 "connect $TESTBOX_HOST:2222: Connection refused"

drive "${KEYS[@]}" -c 2 "$TESTBOX_USER@$NET.77" true
t_ok "an address with no machine behind it is unreachable (exit 69)" \
	expect 69 "connect $NET.77:22: "

drive "${KEYS[@]}" "$TESTBOX_USER@no-such-host.invalid" true
t_ok "a name that does not resolve is unreachable (exit 69)" \
	expect 69 "resolve no-such-host.invalid: "

drive -i "$T/no-such-key" -k "$TESTBOX_KNOWN_HOSTS" "$TESTBOX_USER@no-such-host.invalid" true
t_ok "a missing key file is a usage error found before any connection" \
	expect 2 "identity file $T/no-such-key: No such file or directory"

rsa() {
	ssh-keygen -q -t rsa -b 2048 -N '' -f "$T/rsa_key" </dev/null
	drive -i "$T/rsa_key" -k "$TESTBOX_KNOWN_HOSTS" "$TESTBOX_USER@no-such-host.invalid" true
	expect 2 "RSA keys cannot be used" &&
		expect 2 "use an ed25519 key" &&
		expect 2 'temporary_key_pair_type = "ed25519"'
}
t_ok "an RSA key is refused before connecting, with the ed25519 hint" rsa

drive "${KEYS[@]}" "u@[$TESTBOX_HOST" true
t_ok "a malformed target is a usage error" expect 2 "unclosed '['"

# ---------------------------------------------------------------- commands

drive "${KEYS[@]}" "$TGT" 'echo to-stdout; echo to-stderr >&2; echo more-stdout'
t_ok "stdout and stderr come back separately" \
	eval 'out "to-stdout
more-stdout" && grep -qx to-stderr "$T/e" && ! grep -q stdout "$T/e"'

drive "${KEYS[@]}" "$TGT" 'exit 42'
t_ok "the exit status comes back" expect 0 "status=42 signal= "

drive "${KEYS[@]}" "$TGT" 'kill -TERM $$'
t_ok "death by a signal comes back as status -1 and the signal name" \
	expect 0 "status=-1 signal=TERM"

payload() {
	head -c 50000000 /dev/urandom >"$T/payload"
	drive "${KEYS[@]}" -I "$T/payload" "$TGT" 'sha256sum | cut -d" " -f1' &&
		out "$(sha256sum <"$T/payload" | cut -d' ' -f1)"
}
t_ok "a 50 MB stdin payload arrives intact (sha256 on the box)" payload

echo_back() {
	drive "${KEYS[@]}" -d "head " -I "$T/payload" -O "$T/back" "$TGT" 'cat' &&
		cmp -s <(printf 'head '; cat "$T/payload") "$T/back"
}
t_ok "stdin data, then a file, streamed back while sending (50 MB each way)" echo_back

drive "${KEYS[@]}" -m 1000 "$TGT" 'head -c 5000 /dev/zero; head -c 300 /dev/zero >&2'
t_ok "output beyond the buffer's max is counted as dropped, not an error" \
	eval 'expect 0 "dropped=4000" && [ "$(wc -c <"$T/o")" = 1000 ]'

drive "${KEYS[@]}" -m 1000 "$TGT" 'yes early | head -c 4998 >&2; echo last >&2'
t_ok "stderr beyond the buffer's max keeps its tail, not its head" \
	eval 'expect 0 "dropped=" && grep -qx last "$T/e" &&
	      [ "$(grep -cx early "$T/e")" -le 166 ]'

drive "${KEYS[@]}" -T 1000 -2 'echo after' "$TGT" 'sleep 30'
t_ok "a deadline ends the command with SH_ERR_TIMEOUT" \
	expect 0 "error SH_ERR_TIMEOUT"
t_ok "the session still works after a timeout, without reconnecting" \
	eval 'expect 0 "reconnects=0" && out after'

interrupt() {
	local pid rc=0
	"$DRIVE" "${KEYS[@]}" "$TGT" 'sleep 30' >"$T/o" 2>"$T/e" &
	pid=$!
	for _ in $(seq 100); do grep -q 'fp=' "$T/e" && break; sleep 0.1; done
	sleep 0.3
	kill -INT "$pid"
	wait "$pid" || rc=$?
	RC=$rc
	expect 3 "error SH_ERR_INTERRUPTED"
}
t_ok "an interruption ends the command with SH_ERR_INTERRUPTED" interrupt

dropped() {
	local pid rc=0 mark=/tmp/t0210-started-$$
	"$DRIVE" "${KEYS[@]}" -2 'echo again' "$TGT" "touch $mark; sleep 30" \
		>"$T/o" 2>"$T/e" &
	pid=$!
	for _ in $(seq 100); do box_exec test -e "$mark" && break; sleep 0.1; done
	"$TESTBOX" kill-sessions "$TESTBOX_NAME" 2>/dev/null
	wait "$pid" || rc=$?
	RC=$rc
	expect 0 "error SH_ERR_SSH: session lost:"
}
t_ok "a dropped session ends the command with SH_ERR_SSH" dropped
t_ok "ssh_reconnect then opens a new session that runs a command" \
	eval 'expect 0 "reconnects=1" && out again'

# ---------------------------------------------------------------- remote_run

drive "${KEYS[@]}" -r "$TGT" 'readlink /proc/$$/exe'
t_ok "scripts run under /bin/sh (dash) via the stdin bootstrap" \
	eval 'out /usr/bin/dash'

script=$(printf '%s\n' 'x="it'\''s  \"quoted\" $HOME"' 'printf "%s|" "$x"' \
	'cat <<EOF' 'heredoc line' 'EOF' 'exit 7')
drive "${KEYS[@]}" -r "$TGT" "$script"
t_ok "a script with quotes, variables and a heredoc runs verbatim" \
	eval 'out "it'\''s  \"quoted\" /home/builder|heredoc line" && expect 0 status=7'

remote_payload() {
	head -c 8000000 /dev/urandom >"$T/payload8"
	drive "${KEYS[@]}" -r -d "first-bytes" -I "$T/payload8" "$TGT" \
		'head -c 11; echo; sha256sum | cut -d" " -f1' &&
		out "first-bytes
$(sha256sum <"$T/payload8" | cut -d' ' -f1)"
}
t_ok "the payload after the script arrives intact (8 MB)" remote_payload

drive "${KEYS[@]}" -r -b root "$TGT" 'id -u; echo "$SUDO_USER"'
t_ok "become runs the script through sudo -n" eval 'out "0
builder"'

drive "${KEYS[@]}" -r -b nobody "$TGT" 'id -un'
t_ok "become another user" out nobody

drive "${KEYS[@]}" -r -s 1 "$TGT" 'sleep 20'
t_ok "the remote timeout stops a script and maps to SH_ERR_TIMEOUT" \
	expect 3 "error SH_ERR_TIMEOUT: timed out after 1 s"

drive "${KEYS[@]}" -r -s 20 "$TGT" 'exit 124'
t_ok "a script's own exit 124 is not mistaken for a timeout" \
	expect 0 "status=124"

# ---------------------------------------------------------------- measure

drive "${KEYS[@]}" -n 100 "$TGT" true
if [ "$RC" = 0 ]; then
	echo "# channel round trip, 100 x 'true' on one session: $(cat "$T/o")"
	t_pass "100 commands run over one session"
else
	t_not "100 commands run over one session" "$T/e"
fi

t_done
