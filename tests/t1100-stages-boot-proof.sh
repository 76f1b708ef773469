#!/usr/bin/env bash
# The image pipeline on the VM tier, and the boot proof. tests/demo-vm.sh
# (`make demo-vm`) runs stage 1 then stage 2 on a pristine Debian 12 VM,
# powers it off and boots its disk as a new machine, waits (within a bound)
# for postgresql.service, runs the read-only boot check and both stages
# again; this test runs it with DEMO_KEEP=1 and checks what its reports
# and the machines say: stage 1 made the users for real and installed Nix
# and the unit, stage 2 ran the server through postgresql.service, the boot
# started Postgres with no stagehand involved, libpq through SSH saw the
# migrations and the pgTAP-tested schema, the audits passed, nothing of
# stagehand is on the disk, and the second runs changed nothing. Then the
# unit installed but disabled (pg_service_enabled=false): a boot of that
# disk leaves Postgres stopped, and `systemctl start postgresql` brings it
# up with the same checks passing. Times are printed as comments only.
. "$(dirname "$0")/lib.sh"
t_plan 24

id=$(printf '%04x' $(($$ % 65536)))
dis=tbd$id
D=$T/demo
now() { date +%s; }
t0=$(now)

DEMO_KEEP=1 DEMO_REPORT=$D "$TOP/tests/demo-vm.sh" >"$T/demo.out" 2>&1
rc=$?
# What the demo left running is this test's to take down (box_teardown).
if [ -f "$D/keep.env" ]; then
	# shellcheck disable=SC1091
	. "$D/keep.env"
	_box_vms="$_box_vms $BUILD_VM $BOOTED_VM"
	_box_webroots="$_box_webroots $CACHE_WWW"
fi
echo "# tests/demo-vm.sh: exit $rc after $(($(now) - t0)) s"
sed -n 's/^\(postgresql.service active: .*\)/# \1/p; s/^\(SSH and cloud-init up after .*\)/# boot: \1/p' "$T/demo.out"
grep '^stage\|^boot-check' "$T/demo.out" | grep ' - ' | sed 's/^/# /'
if [ "$rc" != 0 ] || [ ! -f "$D/keep.env" ]; then
	t_not "tests/demo-vm.sh: stage 1, stage 2, the boot proof and the second runs pass" "$T/demo.out"
	t_done
	exit 1
fi
t_pass "tests/demo-vm.sh: stage 1, stage 2, the boot proof and the second runs pass"

step() { # REPORT NAME: the step's status
	jr "$D/$1" "[.steps[] | select(.name == \"$2\") | .status] | first // \"none\""
}
# ---- stage 1 on the pristine VM
t_ok "stage 1 passed" test "$(jr "$D/stage1" .status)" = passed
t_ok "... it created the postgres user and groups for real (the image had none)" \
	test "$(step stage1 'User postgres') $(step stage1 'Group postgres')" = "changed changed"
t_ok "... installed packages and Nix (nix-bin) with apt" \
	test "$(step stage1 'Base packages') $(step stage1 'Nix from Debian (nix-bin)')" = "changed changed"
t_ok "... installed postgresql.service" test "$(step stage1 postgresql.service)" = changed

# ---- stage 2: the server through the unit
t_ok "stage 2 passed" test "$(jr "$D/stage2" .status)" = passed
t_ok "... ran pgTAP against the server postgresql.service started" \
	test "$(step stage2 'Start postgresql.service with the full configuration') $(step stage2 'pgTAP unit tests')" = "ok ok"
t_ok "... and not the test box's pg_ctl restart" \
	test "$(step stage2 'Restart Postgres with the full configuration')" = skipped
t_ok "... every pgTAP and audit case passed" \
	test "$(jr "$D/stage2" '[.steps[].tests[]? | select(.status != "passed")] | length')" = 0

# ---- the boot proof
t_ok "the boot check (read-only) passed with nothing changed" \
	test "$(jr "$D/boot-check" '.status + " " + (.counts.changed | tostring)')" = "passed 0"
t_ok "... postgresql.service was active after the boot" \
	test "$(step boot-check 'postgresql.service is active')" = ok
n=$(jr "$D/boot-check" '[.steps[] | select(.name == "pgTAP on the booted image") | .tests[] | select(.status == "passed")] | length')
t_ok "... libpq through SSH: the pgTAP cases on the booted server passed ($n)" test "$n" -gt 20
t_ok "... the migrations are recorded on the booted image" \
	test "$(jr "$D/boot-check" '[.steps[].tests[]? | select(.name | test("every migration is recorded once")) | .status] | join(" ")')" = passed
t_ok "... the permission audit and the no-residue checks passed" \
	test "$(step boot-check 'Permission audit') $(step boot-check 'No stagehand files anywhere the stages wrote')" = "ok ok"
t_ok "both stages again on the booted machine: nothing changed" \
	test "$(jq -s '[.[].counts.changed] | add' "$D/stage1-again/results.json" "$D/stage2-again/results.json")" = 0

# Straight from the booted machine, not through stagehand.
vm_target() { _box_target "$("$BOX_VM" env "$1")"; }
gssh() { "$BOX_VM" ssh "$1" -- "${@:2}" 2>/dev/null; }
# The whole root file system, not only where the stages wrote (what
# no-residue.yml searches).
gssh "$BOOTED_VM" "sudo find / -xdev \\( -iname '*stagehand*' \\) -print 2>/dev/null | head" >"$T/left"
t_ok "nothing named stagehand anywhere on the booted disk" sh -c "! grep . '$T/left'"
# python3 is there: cloud-init is written in it, on EC2 as here.
t_ok "the booted disk has no stagehand binary, ansible or osquery" \
	gssh "$BOOTED_VM" '! command -v stagehand && ! command -v ansible-playbook && ! command -v ansible && ! command -v osqueryi'

# ---- the unit installed but disabled
vm_target "$BOOTED_VM"
sh_run run "$TOP/stages/stage1.yml" "${SSH_ARGS[@]}" --vars-file "$VARS_FILE" \
	--var pg_service_enabled=false --report "$T/s1-disabled"
t_ok "stage 1 with pg_service_enabled=false: passed, one change (the unit disabled)" \
	test "$(jr "$T/s1-disabled" '.status + " " + (.counts.changed | tostring)')" = "passed 1"
t_ok "... and the change is the unit's" \
	test "$(jr "$T/s1-disabled" '[.steps[] | select(.status == "changed") | .name] | join(",")')" = postgresql.service
"$BOX_VM" stop "$BOOTED_VM" >/dev/null 2>&1
if ! vm_up "$dis" --image "$VM_DISK" 2>"$T/up.err"; then
	t_not "a boot of the disabled image comes up" "$T/up.err"
	t_done
	exit 1
fi
t_pass "a boot of the disabled image comes up"
state=$(gssh "$dis" 'systemctl is-system-running --wait >/dev/null; systemctl is-enabled postgresql.service; systemctl is-active postgresql.service' | tr '\n' ' ')
t_ok "once the boot is done, postgresql.service is disabled and not running" \
	test "$state" = "disabled inactive "
gssh "$dis" sudo systemctl start postgresql.service
t_ok "systemctl start postgresql brings it up" \
	test "$(gssh "$dis" systemctl is-active postgresql.service)" = active
t_ok "the server runs as postgres, through the Debian path into the Nix profile" \
	test "$(gssh "$dis" 'ps -o user=,args= -C postgres | head -n 1 | cut -c1-60')" = \
	"postgres /usr/lib/postgresql/bin/postgres -D /var/lib/postgr"
sh_run run "$TOP/stages/testbox-boot-check.yml" "${SSH_ARGS[@]}" --report "$T/bc-disabled"
t_ok "... and the boot check passes on it, nothing changed" \
	test "$(jr "$T/bc-disabled" '.status + " " + (.counts.changed | tostring)')" = "passed 0"
echo "# whole test: $(($(now) - t0)) s"
caches_stop "$CACHE_WWW"
rm -rf "${DEMO_WWW:?}"
t_done
