#!/usr/bin/env bash
# The command line: help, version, usage errors and their exit codes, and
# the offline commands (check, plan --offline, report) that never connect.
. "$(dirname "$0")/lib.sh"
t_plan 33

cat >"$T/m.yml" <<'YML'
stagehand: 1
stage: cli
vars:
  who: world
steps:
  - name: Say hello
    shell: echo hello ${who}
  - name: Skipped by when
    when: "no"
    shell: "true"
YML

t_exit 0 "--help exits 0" "$STAGEHAND" --help
t_ok "--help lists every command" sh -c "'$STAGEHAND' --help | grep -q 'stagehand report DIR'"
t_ok "--version prints the version" sh -c "'$STAGEHAND' --version | grep -Eq '^stagehand [0-9]+\.[0-9]+'"
t_exit 2 "no command is a usage error" "$STAGEHAND"
t_exit 2 "an unknown command is a usage error" "$STAGEHAND" frobnicate x.yml
t_exit 2 "an unknown option is a usage error" "$STAGEHAND" run "$T/m.yml" --frob
t_exit 2 "run without a manifest is a usage error" "$STAGEHAND" run
t_exit 2 "run with two manifests is a usage error" "$STAGEHAND" run "$T/m.yml" "$T/m.yml"
t_exit 2 "--var without '=' is a usage error" "$STAGEHAND" check "$T/m.yml" --var who
t_exit 2 "--host-key must be SHA256:" "$STAGEHAND" run "$T/m.yml" --target ssh://u@127.0.0.1 --host-key MD5:aa
t_exit 2 "--identity and --identity-env exclude each other" \
	"$STAGEHAND" run "$T/m.yml" --target ssh://u@127.0.0.1 -i /x --identity-env K
t_exit 2 "a --jump without a user is a usage error" \
	"$STAGEHAND" run "$T/m.yml" --target ssh://u@127.0.0.1 --jump 127.0.0.2
t_exit 2 "--jump-host-key must be SHA256:" "$STAGEHAND" run "$T/m.yml" \
	--target ssh://u@127.0.0.1 --jump u@127.0.0.2 --jump-host-key MD5:aa
t_exit 2 "a missing --jump-identity file is a usage error" "$STAGEHAND" run \
	"$T/m.yml" --target ssh://u@127.0.0.1 --jump u@127.0.0.2 --jump-identity /nonexistent
t_exit 2 "an empty item in STAGEHAND_JUMP is a usage error" env STAGEHAND_JUMP=u@a,,u@b \
	"$STAGEHAND" run "$T/m.yml" --target ssh://u@127.0.0.1

sh_run run "$T/m.yml"
t_ok "run without a target exits 2" test "$RC" = 2
t_ok "run without a target says how to give one" grep -q 'STAGEHAND_TARGET' "$T/err"

sh_run run "$T/m.yml" --target ssh://u@127.0.0.1 --identity "$T/no-such-key"
t_ok "a missing key file exits 2" test "$RC" = 2
t_ok "a missing key file is named in the error" grep -q "$T/no-such-key" "$T/err"

sh_run run "$T/m.yml" --target ssh://u@127.0.0.1 --identity-env STAGEHAND_NO_SUCH_VAR
t_ok "an unset --identity-env variable exits 2" test "$RC" = 2

sh_run run "$T/m.yml" --target 'ssh://@:99999'
t_ok "a malformed target exits 2" test "$RC" = 2

sh_run run "$T/m.yml" --target ssh://u@127.0.0.1 --start-at 'No such step'
t_ok "--start-at naming no step exits 2" test "$RC" = 2

t_exit 0 "check accepts a valid manifest" "$STAGEHAND" check "$T/m.yml"
sh_run check "$T/m.yml" "$T/missing.yml"
t_ok "check of a missing file exits 2 (docs/decisions.md)" test "$RC" = 2
t_ok "check still reports the good file" grep -q "m.yml: ok" "$T/out"

sh_run plan "$T/m.yml" --offline
t_ok "plan --offline needs no target and exits 0" test "$RC" = 0
t_ok "plan --offline renders interpolated steps" grep -q 'hello world' "$T/out"
t_ok "plan --offline marks steps whose when is false" grep -q 'when: false' "$T/out"

sh_run plan "$T/m.yml" --offline --var who=stagehand
t_ok "--var overrides a manifest variable" grep -q 'hello stagehand' "$T/out"

STAGEHAND_VAR_who=env sh_run plan "$T/m.yml" --offline
t_ok "STAGEHAND_VAR_name overrides a manifest variable" grep -q 'hello env' "$T/out"

printf 'who: file\n' >"$T/vars.yml"
sh_run plan "$T/m.yml" --offline --vars-file "$T/vars.yml"
t_ok "--vars-file overrides a manifest variable" grep -q 'hello file' "$T/out"
STAGEHAND_VAR_who=env sh_run plan "$T/m.yml" --offline --vars-file "$T/vars.yml" --var who=argv
t_ok "--var wins over the environment and vars files" grep -q 'hello argv' "$T/out"

sh_run report "$T/no-report"
t_ok "report of a dir without a report exits 2" test "$RC" = 2

t_done
