#!/usr/bin/env bash
# Secrets named in the manifest and key material never appear in any
# output: terminal, NDJSON, results.json, junit.xml, stagehand.env,
# run.log; and never on argv on the box. The second step lets the shell
# rewrite the secret (quotes dropped, $(id) run): what survives of it, its
# head and its tail, is masked as well.
. "$(dirname "$0")/lib.sh"
t_plan 32

box_up "$(box_name se)" || { t_not "test box comes up"; t_done; exit 1; }

secret='pa55-"quoted"-&<x>-$(id)-'"'single'"
export STAGEHAND_VAR_db_password=$secret
cat >"$T/s.yml" <<'YML'
stagehand: 1
stage: secrets
secrets: [db_password]
steps:
  - name: Use the secret
    shell: |
      pw=$(cat <<'SECRET_END'
      ${db_password}
      SECRET_END
      )
      echo "stdout has $pw"
      echo "stderr has $pw" >&2
      ps -eo args > /tmp/ps-during-step
      printf '%s' "$pw" > /tmp/secret-on-box
  - name: Fail with the secret in the message
    shell: echo "failing with ${db_password}" >&2; exit 4
YML
key_text=$(cat "$TESTBOX_KEY")
export BOXKEY=$key_text
sh_run run "$T/s.yml" -v --target "ssh://$TESTBOX_USER@$TESTBOX_HOST:$TESTBOX_PORT" \
	--identity-env BOXKEY --known-hosts "$TESTBOX_KNOWN_HOSTS" --report "$T/r"
t_ok "the run fails at the second step as written" test "$RC" = 1
cp "$T/out" "$T/run-out" && cp "$T/err" "$T/run-err"
t_ok "the secret reached the box intact" \
	sh -c "test \"\$('$TESTBOX' exec '$TESTBOX_NAME' -- cat /tmp/secret-on-box)\" = \"\$STAGEHAND_VAR_db_password\""
t_fail "the secret was never on argv on the box" \
	box_exec grep -qF -- "$secret" /tmp/ps-during-step

sh_run run "$T/s.yml" --json --target "ssh://$TESTBOX_USER@$TESTBOX_HOST:$TESTBOX_PORT" \
	--identity-env BOXKEY --known-hosts "$TESTBOX_KNOWN_HOSTS" --report "$T/rj"
cp "$T/out" "$T/json-out"

# Every form the secret could take in a file: raw, JSON-, XML- and
# sh-escaped, and its 4+-byte prefixes and suffixes (a grep for the raw
# value alone cannot see a leak into JSON or XML, where it is escaped).
{ printf '%s\0' "$secret"; sed -n 2p "$TESTBOX_KEY" | tr -d '\n'; printf '\0'; } |
	perl "$TOP/tests/secret-needles.pl" 4 >"$T/needles"
t_ok "the needles hold the secret's JSON form" \
	grep -qxF 'pa55-\"quoted\"-&<x>-$(id)-'"'single'" "$T/needles"
files=("$T/r/results.json" "$T/r/junit.xml" "$T/r/stagehand.env" "$T/r/run.log"
	"$T/rj/results.json" "$T/rj/junit.xml" "$T/rj/stagehand.env" "$T/rj/run.log"
	"$T/run-out" "$T/json-out" "$T/err")
for f in "${files[@]}"; do
	t_ok "${f#"$T"/} exists and is not empty" test -s "$f"
done
files+=("$T/run-err") # may be empty: searched all the same
t_ok "the report holds the redaction marker" grep -q '\*\*\*\*\*\*\*\*' "$T/r/results.json"
for f in "${files[@]}"; do
	t_fail "neither the secret nor the key is in ${f#"$T"/}" \
		env LC_ALL=C grep -F -o -m 5 -f "$T/needles" "$f"
done
t_ok "the NDJSON events parse" sh -c "test -s '$T/json-out' && jq -e . '$T/json-out' >/dev/null"

# An error line that starts with a secret's last byte (the secret ends in
# a quote) is not a cut tail when stderr was not cut: it is shown whole.
cat >"$T/q.yml" <<'YML'
stagehand: 1
stage: secrets
secrets: [db_password]
steps:
  - name: Fail with a quote first
    shell: echo "'x' is not a valid choice" >&2; exit 3
YML
run rq "$T/q.yml"
t_ok "an uncut error line is shown whole, though it starts like a secret ends" \
	has_text "exit 3: 'x' is not a valid choice" jr "$T/rq" '.steps[0].error.message'

unset STAGEHAND_VAR_db_password
sh_run check "$T/s.yml" --var db_password=visible
t_ok "a secret given with --var is refused" test "$RC" = 2
t_ok "the refusal says where secrets come from" grep -q 'STAGEHAND_VAR_db_password' "$T/err"

t_done
