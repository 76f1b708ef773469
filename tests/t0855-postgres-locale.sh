#!/usr/bin/env bash
# The postgres step's initdb on a target that lacks the locale it asks for
# (a minimal image has none but C, C.UTF-8 and POSIX) fails with a message
# that names the fix (locale: C.UTF-8, or generating the locale first)
# instead of initdb's bare "invalid locale name"; the data directory is
# left empty, so the next run can initdb.
. "$(dirname "$0")/lib.sh"
t_plan 6

box_up "$(box_name pl)" || { t_not "test box comes up"; t_done; exit 1; }

D=/var/lib/postgresql/t0855
cat >"$T/pg.yml" <<YML
stagehand: 1
stage: postgres-locale
steps:
  - name: initdb
    postgres:
      action: initdb
      data_dir: $D
      bin_dir: /usr/lib/postgresql/15/bin
      locale: xx_XX.UTF-8
YML
run r1 "$T/pg.yml"
t_ok "initdb with a locale the target lacks fails the step" rc_is 1
t_ok "the error keeps initdb's own reason" \
	grep -q 'invalid locale name' <(jr "$T/r1" '.steps[0].error.message')
t_ok "the error names the fix: locale: C.UTF-8 or locale-gen" \
	grep -q 'locale it needs is missing on the target (see locale -a): set locale: C.UTF-8.*locale-gen' \
	<(jr "$T/r1" '.steps[0].error.message')
t_ok "the terminal shows the fix too" grep -q 'set locale: C.UTF-8' "$T/out" "$T/err"
t_ok "no cluster was left in the data directory" \
	test -z "$(box_exec sh -c "ls -A $D 2>/dev/null")"

sed -i 's/xx_XX.UTF-8/C.UTF-8/' "$T/pg.yml"
run r2 "$T/pg.yml"
t_ok "with locale: C.UTF-8 the same step succeeds" rc_is 0

t_done
