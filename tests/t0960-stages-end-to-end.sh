#!/usr/bin/env bash
# Both stages (stage 2 in its test-box form, stages/testbox-stage2.yml:
# the production stage 2's work plus the test box's nix.conf and user
# table) on a fresh box, against the signed test caches served by
# nginx on the box's gateway, checked from outside (the box's overlay upper
# dir and commands in the box): every alias link resolves through the
# profile, pg_config and psql from /usr/bin run, the cluster answers, every
# pgTAP assertion passed, the permission tables hold and nothing of
# stagehand is left anywhere in the box; a second run of both stages
# changes nothing; the in-place upgrade, in push mode from caches only the
# controller reaches (127.0.0.1), makes generation 2 live with Postgres
# answering; a broken bundle (its postgres exits 1) is rolled back
# by the rescue steps, the old generation live and Postgres answering, and
# the run still fails.
. "$(dirname "$0")/lib.sh"
t_plan 72

PROF=/var/lib/postgresql/.nix-profile

caches_make "$T/paths.env" 2>"$T/caches.err" || {
	cat "$T/caches.err" >&2
	t_not "the test caches are built"
	t_done
	exit 1
}
# shellcheck disable=SC1091
. "$T/paths.env"

box_up "$(box_name st)" || { t_not "test box comes up"; t_done; exit 1; }
caches_serve "$T/www" "$TESTBOX_GATEWAY" || {
	t_not "the caches are served"
	t_done
	exit 1
}
URL=$CACHE_URL
for b in BUNDLE_ROOT BUNDLE2_ROOT BROKEN_ROOT; do
	"$TOP/stages/testbox-vars.sh" "$T/paths.env" "$URL" "$b" >"$T/$b.vars.yml"
done

stage() { # REPORT MANIFEST [ARGS...]: run a stage against the box
	local r=$1 m=$2
	shift 2
	sh_run run "$TOP/stages/$m" "${SSH_ARGS[@]}" --report "$T/$r" "$@"
}
# The names of the report's steps with status S.
with_status() { jr "$1" "[.steps[] | select(.status == \"$2\") | .name] | join(\", \")"; }
# psql in the box as the postgres OS user (peer auth through the socket).
psql_box() { box_exec su postgres -c "/usr/bin/psql -X -At -c \"$1\""; }
pg_ctl_box() { box_exec su postgres -c "/usr/lib/postgresql/bin/pg_ctl -D /var/lib/postgresql/data -l /var/log/postgresql/postgresql.log -w $1"; }

# ------------------------------------------------------- production's stage 2
# The test box's switches live in stages/testbox-stage2.yml, not in the
# production stage: no nix.conf step, no test-box user table.
t_ok "the production stage 2 names no test-box switch or table" \
	sh -c "! grep -nE 'nix_config|audit_testbox|audit_production|permissions-testbox|/etc/nix' '$TOP/stages/stage2.yml' '$TOP/stages/production.vars.example.yml'"
t_ok "the production stage 2 checks with its example vars" \
	"$STAGEHAND" check --vars-file "$TOP/stages/production.vars.example.yml" "$TOP/stages/stage2.yml"

# ---------------------------------------------------------------- stage 1 + 2
stage s1 stage1.yml --vars-file "$T/BUNDLE_ROOT.vars.yml"
t_ok "stage 1 passes on a fresh box" rc_is 0
before=$(box_snapshot)
sh_run plan "$TOP/stages/testbox-stage2.yml" "${SSH_ARGS[@]}" --report "$T/p2" \
	--vars-file "$T/BUNDLE_ROOT.vars.yml"
t_ok "plan of stage 2 on the stage-1 image passes" rc_is 0
t_ok "the plan says the bundle would be copied" \
	test "$(jr "$T/p2" '.steps[] | select(.kind == "closure") | .status')" = would_change
t_ok "the plan says the init scripts would run (no server yet)" \
	test "$(jr "$T/p2" '.steps[] | select(.name == "Init scripts") | .status')" = would_change
t_ok "the plan changed nothing on the box" test "$before" = "$(box_snapshot)"
stage s2 testbox-stage2.yml --vars-file "$T/BUNDLE_ROOT.vars.yml"
t_ok "stage 2 passes after it" rc_is 0
t_ok "stage 2 changed the box" test "$(jr "$T/s2" .counts.changed)" -gt 20
t_ok "stage 2 installed the bundle as generation 1" \
	test "$(jr "$T/s2" '[.closure.root, .closure.generation_after] | join(" ")')" = "$BUNDLE_ROOT 1"
t_ok "both caches and keys were given to the closure step" \
	sh -c "jq -r '.steps[] | select(.kind == \"closure\") | .changes[]' '$T/s2/results.json' | grep -q '^copy 3 paths .* from $URL/cache1'"

# Every link the stages made, as the box's upper dir shows them.
(cd "$TESTBOX_UPPER" && find usr -type l | sed 's|^|/|' | sort) >"$T/links"
t_ok "the stages made the alias links (bin twice, share)" test "$(wc -l <"$T/links")" -gt 300
t_ok "every alias link resolves in the box" \
	box_exec sh -c "bad=0; while read -r l; do [ -e \"\$l\" ] || { echo \"dangling: \$l\"; bad=1; }; done <<'EOF'
$(cat "$T/links")
EOF
exit \$bad"
t_ok "every alias link points through the profile, not into /nix/store" \
	box_exec sh -c "while read -r l; do case \$(readlink \"\$l\") in $PROF/*) ;; *) echo \"\$l\"; exit 1 ;; esac; done <<'EOF'
$(cat "$T/links")
EOF"
t_ok "the links resolve into the bundle's store paths" \
	test "$(box_exec readlink -f /usr/bin/psql)" = "$BUNDLE_ROOT/lib/postgresql/15/bin/psql"
t_ok "/usr/bin/pg_config, a regular file before, is the profile's now" \
	test "$(box_exec readlink /usr/bin/pg_config)" = "$PROF/bin/pg_config"
t_ok "pg_config from /usr/bin runs" \
	sh -c "'$TESTBOX' exec '$TESTBOX_NAME' -- /usr/bin/pg_config --version | grep -q '^PostgreSQL 15'"
t_ok "psql from /usr/bin runs" \
	sh -c "'$TESTBOX' exec '$TESTBOX_NAME' -- /usr/bin/psql --version | grep -q 'PostgreSQL) 15'"
t_ok "share/postgresql's extension files are linked" \
	box_exec test -e /usr/lib/postgresql/share/postgresql/extension/pgtap.control
t_ok "/etc/ssl/private is root:postgres 0750" \
	test "$(box_exec stat -c '%U:%G %a' /etc/ssl/private)" = "root:postgres 750"
t_ok "the bundle's settings are in bundle.conf" \
	box_exec grep -qx "shared_preload_libraries = 'pg_stat_statements'" /etc/postgresql-custom/bundle.conf
t_ok "the cluster in /data/pgdata is a PostgreSQL 15 one" \
	sh -c "'$TESTBOX' exec '$TESTBOX_NAME' -- cat /data/pgdata/PG_VERSION | grep -qx 15"
t_ok "stage 2 leaves the server stopped" \
	sh -c "! '$TESTBOX' exec '$TESTBOX_NAME' -- su postgres -c '/usr/lib/postgresql/bin/pg_ctl -D /var/lib/postgresql/data status' >/dev/null"

# pgTAP: every assertion of every file is a passed test case.
planned=$(cat "$TOP"/playbooks/tests/0[0-9]-*.sql | sed -n 's/.*SELECT plan(\([0-9]*\)).*/\1/p' |
	awk '{s += $1} END {print s}')
t_ok "the pgTAP step ran every planned assertion ($planned)" \
	test "$(jr "$T/s2" '[.steps[] | select(.kind == "pgtap") | .tests[]] | length')" = "$planned"
t_ok "every pgTAP assertion passed" \
	test "$(jr "$T/s2" '[.steps[] | select(.kind == "pgtap") | .tests[].status] | unique | join(",")')" = passed
t_ok "the assertions name their file" \
	sh -c "jq -r '.steps[] | select(.kind == \"pgtap\") | .tests[].name' '$T/s2/results.json' | grep -q '^tests/01-image.sql: 1 - the installed extensions are exactly the expected ones\$'"
t_ok "junit.xml has a testcase per assertion" \
	test "$(grep -c 'classname="stage2.pgTAP unit tests"' "$T/s2/junit.xml")" = "$planned"

# The permission tables (the test box's users, stage 2's paths, no residue).
t_ok "every permission row passed" \
	test "$(jr "$T/s2" '[.steps[] | select(.kind == "permissions" and .status != "skipped") | .tests[].status] | unique | join(",")')" = passed
t_ok "the test-box user table ran, the production one is not in the test-box stage" \
	test "$(jr "$T/s2" '[.steps[] | select(.kind == "permissions") | .name] | join(",")')" = "Permission audit,Stage 2 paths,No stagehand leftovers in the named places"
t_ok "the user table says postgres is in postgres and ssl-cert" \
	sh -c "jq -r '.steps[].tests[]?.name' '$T/s2/results.json' | grep -qx 'user postgres: postgres,ssl-cert'"
t_ok "the residue checks passed" \
	test "$(jr "$T/s2" '[.steps[-2:][] | .status] | join(",")')" = "ok,ok"
t_ok "nothing named stagehand anywhere in the box's changes" \
	sh -c "cd '$TESTBOX_UPPER' && ! find . -name '*stagehand*' | grep ."
t_ok "no temp files in the box's /tmp" \
	sh -c "! ls -A '$TESTBOX_UPPER/tmp' 2>/dev/null | grep ."

# The cluster answers, started with the image's configuration.
t_ok "the cluster starts with the image's configuration" \
	pg_ctl_box "-o '-c config_file=/etc/postgresql/postgresql.conf' start"
t_ok "and answers a query through /usr/bin/psql" \
	test "$(psql_box 'select count(*) from supabase_migrations.schema_migrations')" = 10
t_ok "the server's config file is the image's" \
	test "$(psql_box 'show config_file')" = /etc/postgresql/postgresql.conf
t_ok "the bootstrap superuser is supabase_admin, the locale C.UTF-8" \
	test "$(psql_box "select r.rolname || ' ' || d.datcollate from pg_roles r, pg_database d where r.oid = 10 and d.datname = 'postgres'")" = "supabase_admin C.UTF-8"
t_ok "and stops again" pg_ctl_box stop

# ---------------------------------------------------------------- second run
stage s1b stage1.yml --vars-file "$T/BUNDLE_ROOT.vars.yml"
t_ok "stage 1 again passes" rc_is 0
stage s2b testbox-stage2.yml --vars-file "$T/BUNDLE_ROOT.vars.yml"
t_ok "stage 2 again passes" rc_is 0
t_ok "the second run of stage 1 changes nothing" test "$(with_status "$T/s1b" changed)" = ""
t_ok "the second run of stage 2 changes nothing" test "$(with_status "$T/s2b" changed)" = ""
t_ok "and still runs every pgTAP assertion" \
	test "$(jr "$T/s2b" '[.steps[] | select(.kind == "pgtap") | .tests[] | select(.status == "passed")] | length')" = "$planned"
t_ok "stagehand report passes both runs" \
	sh -c "'$STAGEHAND' report '$T/s1b' >/dev/null && '$STAGEHAND' report '$T/s2b' >/dev/null"

# ---------------------------------------------------------------- upgrade
# Push mode through the shipped stage: the caches again, on the host's
# loopback, where the box cannot reach them; only stagehand can.
caches_serve "$T/www-lo" 127.0.0.1 || t_not "the caches are served on 127.0.0.1"
sed "s|$URL|$CACHE_URL|g" "$T/BUNDLE2_ROOT.vars.yml" >"$T/BUNDLE2_ROOT.lo.vars.yml"
t_ok "the push upgrade's caches are on 127.0.0.1" \
	grep -q "http://127.0.0.1:[0-9]*/cache1" "$T/BUNDLE2_ROOT.lo.vars.yml"
stage up upgrade.yml --vars-file "$T/BUNDLE2_ROOT.lo.vars.yml" --var closure_mode=push
t_ok "the upgrade to bundle 2 passes (push mode, caches the box cannot reach)" rc_is 0
t_ok "results.json: generation 1 -> 2, the new root" \
	test "$(jr "$T/up" '[.closure.generation_before, .closure.generation_after, .closure.root] | join(" ")')" = "1 2 $BUNDLE2_ROOT"
t_ok "the upgrade copied only the new root" test "$(jr "$T/up" .closure.paths_missing)" = 1
t_ok "the report names the live generation" \
	test "$(jr "$T/up" '.steps[] | select(.name == "Live generation") | .output')" = "live generation: 2 ($BUNDLE2_ROOT)"
t_ok "generation 2 is live in the box" \
	test "$(box_exec readlink $PROF) $(box_exec readlink -f $PROF)" = ".nix-profile-2-link $BUNDLE2_ROOT"
t_ok "generation 1 is kept" test "$(box_exec readlink $PROF-1-link)" = "$BUNDLE_ROOT"
t_ok "the links were left alone (they go through the profile)" \
	test "$(with_status "$T/up" changed)" = "Postgres bundle from the binary caches, Restart Postgres on the new bundle"
t_ok "/usr/bin/psql now runs bundle 2" \
	test "$(box_exec readlink -f /usr/bin/psql)" = "$BUNDLE2_ROOT/lib/postgresql/15/bin/psql"
t_ok "the health check passed through libpq" \
	test "$(jr "$T/up" '[.steps[] | select(.name == "Health check") | .tests[] | select(.status == "passed")] | length')" = 6
t_ok "the rescue steps did not run" \
	test "$(jr "$T/up" '[.steps[] | select(.rescue) | .status] | unique | join(",")')" = skipped
t_ok "Postgres answers on bundle 2" test "$(psql_box 'select 1 + 1')" = 2
t_ok "the running postmaster is bundle 2's" \
	box_exec sh -c "test \"\$(readlink /proc/\$(head -n 1 /data/pgdata/postmaster.pid)/exe)\" = '$BUNDLE2_ROOT/lib/postgresql/15/bin/postgres'"

# ---------------------------------------------------------------- rollback
stage bad upgrade.yml --vars-file "$T/BROKEN_ROOT.vars.yml"
t_ok "the upgrade to a broken bundle fails (exit 1)" rc_is 1
t_ok "its report says failed" test "$(jr "$T/bad" .status)" = failed
t_ok "the failing step is the restart on the new bundle" \
	test "$(with_status "$T/bad" failed)" = "Restart Postgres on the new bundle"
t_ok "the error quotes the broken server" \
	sh -c "jq -r '.steps[] | select(.status == \"failed\") | .error' '$T/bad/results.json' | grep -q 'did not start'"
t_ok "the broken bundle had become generation 3" \
	test "$(jr "$T/bad" '[.closure.generation_before, .closure.generation_after] | join(" ")')" = "2 3"
t_ok "the rescue steps ran: roll back, restart, health check, live generation" \
	test "$(jr "$T/bad" '[.steps[] | select(.rescue) | .status] | join(",")')" = "changed,changed,ok,ok"
t_ok "the rollback says what it did" \
	sh -c "jq -r '.steps[] | select(.name == \"Roll back to the previous generation\") | .output' '$T/bad/results.json' | grep -qxF 'rolled back: generation 3 -> 2 ($BUNDLE2_ROOT)'"
t_ok "the report names generation 2 as live" \
	test "$(jr "$T/bad" '.steps[] | select(.name == "Live generation after the rollback") | .output')" = "live generation: 2 ($BUNDLE2_ROOT)"
t_ok "the health check after the rollback passed" \
	test "$(jr "$T/bad" '[.steps[] | select(.name == "Health check after the rollback") | .tests[] | select(.status == "passed")] | length')" = 6
t_ok "generation 2 is live in the box again" \
	test "$(box_exec readlink $PROF) $(box_exec readlink -f $PROF)" = ".nix-profile-2-link $BUNDLE2_ROOT"
t_ok "the profile link belongs to postgres" test "$(box_exec stat -c %U $PROF)" = postgres
# The rollback renamed the link itself (no nix-env): Nix must agree.
gens=$(box_exec sh -c "PATH=\$PATH:/nix/var/nix/profiles/default/bin; nix-env -p $PROF --list-generations" |
	awk '{ print $1 ($NF == "(current)" ? "*" : "") }' | tr '\n' ' ')
t_ok "nix-env --list-generations: 2 is current, 1 and 3 are kept ($gens)" \
	test "$gens" = "1 2* 3 "
t_ok "Postgres answers on the old generation" \
	test "$(psql_box 'select count(*) from supabase_migrations.schema_migrations')" = 10
t_ok "the running postmaster is bundle 2's" \
	box_exec sh -c "test \"\$(readlink /proc/\$(head -n 1 /data/pgdata/postmaster.pid)/exe)\" = '$BUNDLE2_ROOT/lib/postgresql/15/bin/postgres'"
t_ok "the upgrade's bookkeeping file is gone" box_exec test ! -e /run/stagehand-upgrade-previous

t_done
