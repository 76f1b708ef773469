#!/usr/bin/env bash
# Bad connections get a clear error, the documented exit code, a report,
# and touch nothing on the box: wrong or unknown host keys (77), pins,
# unreachable targets (69), refused authentication (77).
. "$(dirname "$0")/lib.sh"
t_plan 21

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

t_done
