#!/usr/bin/env bash
# No piece of a secret reaches any output: terminal (plain and --json,
# stdout and stderr), run.log, results.json, junit.xml, stagehand.env,
# `plan` (online and --offline) and error messages. Secrets of many
# shapes (long, with a tab and quotes, multi-line, 3 bytes, UTF-8) are
# printed at every offset around each cut stagehand makes: a script's
# first line at 100 bytes, an output tail at 4096, an error line at 300.
# Every output is searched for each secret, its lines, its control-'?'
# form and each prefix and suffix of 4+ bytes, raw and JSON-, XML- and
# sh-escaped (tests/secret-needles.pl), after checking it exists and is
# not empty.
. "$(dirname "$0")/lib.sh"
t_plan 77

box_up "$(box_name sx)" || { t_not "test box comes up"; t_done; exit 1; }

export STAGEHAND_VAR_s1='Sup3rS3cretHunter2XYZ-k9Qw7Lm2Vx'
export STAGEHAND_VAR_s2=$'Tq\t"dq"-\'sq\'-<&>-$(id)-\\-Wv83'
export STAGEHAND_VAR_s3=$'Ml1-first-AAbbCC11\n#Ml2-second-DDgg22\n#Ml3-third-GGhh33'
export STAGEHAND_VAR_s4='Zq#'
export STAGEHAND_VAR_s5='Ünïcødé-Pässwört-€99'
names="s1 s2 s3 s4 s5"

pad() { head -c "$1" /dev/zero | tr '\0' "$2"; }
# a script's first lines that set $s to secret $1
set_s() {
	printf '      s=$(cat <<'"'"'SECRET_END'"'"'\n      ${%s}\n      SECRET_END\n      )\n' "$1"
}
steps_for() { # NAME: the steps that print secret NAME around every cut
	local v=$1 val len p n
	val=$(printenv "STAGEHAND_VAR_$v")
	len=$(printf '%s' "$val" | wc -c)
	printf '  - name: "named ${%s} step"\n    shell: "true"\n' "$v"
	# the first line is cut at 100 bytes: the secret starts at byte p
	for ((p = 100 - len - 2; p <= 101; p++)); do
		((p < 6)) && continue
		printf '  - name: head %s %d\n    shell: |\n      true #%s${%s} tail\n      true\n' \
			"$v" "$p" "$(pad $((p - 6)) h)" "$v"
	done
	# the output keeps its last 4096 bytes: n pad bytes follow the secret
	for ((n = 4096 - len - 8; n <= 4098; n++)); do
		printf '  - name: tail %s %d\n    shell: |\n' "$v" "$n"
		set_s "$v"
		printf '      { printf %%s "$s"; head -c %d /dev/zero | tr "\\0" t; } >&2\n' "$n"
	done
	# an error keeps the last 300 bytes of stderr's last line
	for ((n = 300 - len - 2; n <= 301; n++)); do
		((n < 0)) && continue
		printf '  - name: err %s %d\n    shell: |\n' "$v" "$n"
		set_s "$v"
		printf '      printf %%s "$s" >&2; head -c %d /dev/zero | tr "\\0" e >&2; exit 3\n' "$n"
	done
	printf '  - name: whole %s\n    shell: |\n' "$v"
	set_s "$v"
	printf '      printf "out %%s\\n" "$s" >&2; printf "%%s\\n" "$s" >&2; exit 4\n'
}
{
	printf 'stagehand: 1\nstage: leaks\nsecrets: [%s]\nsteps:\n' "${names// /, }"
	for v in $names; do steps_for "$v"; done
} >"$T/m.yml"
for v in $names; do printf '%s\0' "$(printenv "STAGEHAND_VAR_$v")"; done |
	perl "$TOP/tests/secret-needles.pl" 4 >"$T/needles"
t_ok "the needle list holds fragments of every secret" \
	sh -c "grep -qxF 'Sup3' '$T/needles' && grep -qxF 'Wv83' '$T/needles' &&
		grep -qxF 'Zq#' '$T/needles' && grep -qxF '#Ml2-second-DDgg22' '$T/needles'"

sh_run check "$T/m.yml"
t_ok "the manifest is valid" rc_is 0

# Runs: plain -v, --json -v, plan -v (online), plan --offline.
run r "$T/m.yml" -v --keep-going
t_ok "the run fails (the err and whole steps fail)" rc_is 1
mv "$T/out" "$T/run-out" && mv "$T/err" "$T/run-err"
run rj "$T/m.yml" -v --keep-going --json
t_ok "the --json run fails too" rc_is 1
mv "$T/out" "$T/json-out" && mv "$T/err" "$T/json-err"
sh_run plan "$T/m.yml" -v "${SSH_ARGS[@]}" --report "$T/rp"
t_ok "plan runs" rc_is 0
mv "$T/out" "$T/plan-out" && mv "$T/err" "$T/plan-err"
sh_run plan "$T/m.yml" --offline
t_ok "plan --offline runs" rc_is 0
mv "$T/out" "$T/offline-out" && mv "$T/err" "$T/offline-err"

outputs=()
for d in r rj rp; do
	for f in results.json junit.xml stagehand.env run.log; do
		outputs+=("$T/$d/$f")
	done
done
outputs+=("$T/run-out" "$T/json-out" "$T/json-err" "$T/plan-out" "$T/offline-out")
for f in "${outputs[@]}"; do
	t_ok "${f#"$T"/} exists and is not empty" test -s "$f"
done
# stderr of the plain runs may be empty; searched all the same
outputs+=("$T/run-err" "$T/plan-err" "$T/offline-err")

t_ok "the outputs hold the redaction marker" \
	grep -q '\*\*\*\*\*\*\*\*' "$T/r/results.json" "$T/r/run.log" "$T/run-out"
t_ok "the cut first line is shown (redacted) in run.log" \
	grep -q 'ran: true #hhhh.*\*\*\*\*\*\*\*\* \.\.\.' "$T/r/run.log"
t_ok "an error line cut inside a secret keeps its padding" \
	grep -q '\*\*\*\*\*\*\*\*eeee' "$T/r/results.json"
# Below the 4-byte minimum: an output tail that starts with 1..3 bytes of
# a secret (its front was cut there) starts with the marker instead.
for k in 1 2 3; do
	t_ok "an output tail cut $k bytes before a secret's end starts masked" \
		jq -e --arg n "tail s1 $((4096 - k))" \
		'.steps[] | select(.name == $n) | .output | startswith("********tttt")' \
		"$T/r/results.json"
	t_ok "... and so does its <system-out> in junit.xml" sh -c \
		"xmllint --xpath 'string(//testcase[substring-after(@name, \" \")=\"tail s1 $((4096 - k))\"]/system-out)' \
		'$T/r/junit.xml' | grep -q '^\*\*\*\*\*\*\*\*tttt'"
done
# The first-line and error-line cuts keep one end of a text: the text is
# redacted whole first, so a cut 1..3 bytes into a secret shows part of the
# marker, never the secret's first or last bytes.
for k in 1 2 3; do
	p=$((100 - k)) n=$((300 - k))
	t_ok "a first line cut $k bytes into a secret shows $k marker bytes" \
		jq -e --arg n "head s1 $p" --arg want "ran: true #$(pad $((p - 6)) h)$(pad $k '*') ..." \
		'[.steps[] | select(.name == $n) | .changes[0]] == [$want]' \
		"$T/r/results.json"
	t_ok "an error line cut $k bytes before a secret's end shows $k marker bytes" \
		jq -e --arg n "err s1 $n" --arg want "exit 3: $(pad $k '*')$(pad $n e)" \
		'[.steps[] | select(.name == $n) | .error.message] == [$want]' \
		"$T/r/results.json"
done
t_ok "... and on the terminal, each time" \
	test "$(grep -c '^        \*\*\*\*\*\*\*\*tttt' "$T/run-out")" -ge 30
for f in "${outputs[@]}"; do
	t_fail "no piece of any secret in ${f#"$T"/}" \
		env LC_ALL=C grep -F -o -m 5 -f "$T/needles" "$f"
done
for d in r rj rp; do
	t_ok "$d/results.json parses" jq -e ".steps | length > 100" "$T/$d/results.json"
	t_ok "$d/junit.xml parses" xmllint --noout "$T/$d/junit.xml"
	t_ok "$d/stagehand.env sources" sh -n "$T/$d/stagehand.env"
done
t_ok "every --json line parses" \
	sh -c "test -s '$T/json-out' && jq -e -c . '$T/json-out' >/dev/null"

# A manifest that fails to load quotes the bad value: a secret is masked
# there too, whether it came from the environment or a vars file.
cat >"$T/bad.yml" <<'YML'
stagehand: 1
stage: bad
secrets: [s1]
steps:
  - name: a secret where a mode goes
    path: { path: /tmp/x, state: file, mode: "${s1}" }
YML
export STAGEHAND_VAR_s1='Sup3rS3cretHunter2XYZ-k9Qw7Lm2Vx'
sh_run check "$T/bad.yml"
t_ok "a bad manifest is refused" rc_is 65
t_ok "the refusal names the field" grep -q "'mode' must be an octal mode.*\*\*\*\*\*\*\*\*" "$T/err"
t_fail "the refusal does not show the secret" env LC_ALL=C grep -F -f "$T/needles" "$T/err" "$T/out"
unset STAGEHAND_VAR_s1
printf 's1: "%s"\n' 'Sup3rS3cretHunter2XYZ-k9Qw7Lm2Vx' >"$T/vars.yml"
sh_run plan "$T/bad.yml" --offline --vars-file "$T/vars.yml"
t_ok "plan refuses it too" rc_is 65
t_fail "nor does plan's refusal, with the secret from a vars file" \
	env LC_ALL=C grep -F -f "$T/needles" "$T/err" "$T/out"

# A line whose redacted form is many times longer (a 1-byte secret between
# other bytes) is written, not dropped.
unset STAGEHAND_VAR_s1 STAGEHAND_VAR_s2 STAGEHAND_VAR_s3 STAGEHAND_VAR_s4 STAGEHAND_VAR_s5
export STAGEHAND_VAR_q=Q
cat >"$T/q.yml" <<'YML'
stagehand: 1
stage: growth
secrets: [q]
steps:
  - name: many short secrets on one line
    shell: |
      i=0; while [ $i -lt 2000 ]; do printf '${q}a'; i=$((i+1)); done >&2; echo >&2
YML
run rq "$T/q.yml" -v
t_ok "the growth run passes" rc_is 0
t_ok "run.log keeps the line, every secret masked" \
	grep -q '^        \(\*\*\*\*\*\*\*\*a\)\{2000\}$' "$T/rq/run.log"
t_ok "the terminal shows it too" \
	grep -q '^        \(\*\*\*\*\*\*\*\*a\)\{2000\}$' "$T/out"

t_done
