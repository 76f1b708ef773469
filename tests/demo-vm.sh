#!/usr/bin/env bash
# tests/demo-vm.sh: `make demo-vm`. The image pipeline on a real machine:
# on a Debian 12 host (as root), boots a pristine Debian 12 VM (tests/vm/vm:
# its own kernel, systemd, cloud-init; the build user's key arrives through
# a NoCloud seed as an EC2 instance's does), runs stage 1 (packages, Nix
# from Debian's nix-bin, users and groups for real, directories, configs,
# postgresql.service) and stage 2 (the bundle from the signed test caches,
# the links, initdb, migrations, pgTAP through postgresql.service, the
# audit) against it, powers it off, and boots the disk it left as a new
# machine: the boot proof. No stagehand is involved in that boot;
# postgresql.service must be active within BOOT_PG_BOUND seconds (default
# 120) of SSH answering, then stages/testbox-boot-check.yml (read-only)
# checks it through libpq and the audits, and both stages run again with
# nothing to change. Tears down the VMs and nginx, also on failure or
# Ctrl-C.
#
#   tests/demo-vm.sh     reports go to ./demo-vm-report (DEMO_REPORT=DIR)
#
# STAGEHAND=PATH runs that binary instead of ./stagehand (the tests pass
# theirs, e.g. the sanitizer build). DEMO_KEEP=1 leaves the booted VM and nginx running and writes
# DIR/keep.env (the VM names, the cache URL, the vars file) for a test to
# go on with (tests/t1100-stages-boot-proof.sh); its caller tears down.
# Needs a default route (the caches are served at host_addr, tests/box.sh).
# Under TCG (no usable KVM) it takes about 6 minutes; the first run also
# builds the base image (about 2 minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
	echo "demo-vm.sh: run as root (sudo make demo-vm): it installs packages and runs QEMU" >&2
	exit 2
fi

# shellcheck source=tests/box.sh
. tests/box.sh
out=${DEMO_REPORT:-demo-vm-report}
keep=${DEMO_KEEP:-0}
bound=${BOOT_PG_BOUND:-120}
id=$(printf '%04x' $(($$ % 65536)))
build=dvb$id
booted=dvo$id
www=$(mktemp -d /tmp/stagehand-demo-vm-www.XXXXXX)
t0=$(date +%s)

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [ "$keep" = 1 ] && [ "$rc" = 0 ]; then
		exit 0
	fi
	echo
	echo "== tearing down (VMs $build $booted, nginx)"
	box_teardown
	rm -rf "$www"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '\n== %s (%d s)\n' "$*" $(($(date +%s) - t0)); }
summary() { # DIR
	jq -r '"\(.stage): \(.status) - \(.counts.total) steps, \(.counts.changed) changed, " +
		"\(.counts.failed) failed; tests \([.steps[].tests[]? | select(.status == "passed")] | length)" +
		"/\([.steps[].tests[]?] | length) passed; \(.duration_ms / 1000)s"' "$1/results.json"
}
gssh() { "$BOX_VM" ssh "$1" -- "${@:2}"; }

say "dependencies and build (tests/deps.sh, make stagehand)"
tests/deps.sh
sh=${STAGEHAND:-./stagehand}
[ -n "${STAGEHAND:-}" ] || make -s stagehand
"$sh" --version

say "signed binary caches, served at this machine's address"
caches_make "$www/paths.env"
caches_serve "$www/root" "$(host_addr)"
echo "caches at $CACHE_URL/cache1 and $CACHE_URL/cache2 (nginx)"
rm -rf "$out"
mkdir -p "$out"
stages/testbox-vars.sh --vm "$www/paths.env" "$CACHE_URL" >"$out/vm.vars.yml"
vars=(--vars-file "$out/vm.vars.yml")

say "a pristine Debian 12 VM ($build): tests/vm/vm up"
vm_up "$build"
echo "VM $build: ssh://$TESTBOX_USER@$TESTBOX_HOST:$TESTBOX_PORT ($VM_ACCEL)"
# shellcheck disable=SC2016 # expanded in the VM
gssh "$build" 'echo "users with a home: $(getent passwd | awk -F: "\$3 >= 1000 && \$3 < 65534 {print \$1}" | tr "\n" " ")"
	echo "postgres user: $(getent passwd postgres || echo none)"; echo "nix: $(command -v nix-store || echo none)"'

say "stagehand run stages/stage1.yml"
"$sh" run stages/stage1.yml "${SSH_ARGS[@]}" "${vars[@]}" --report "$out/stage1"

say "stagehand run stages/testbox-stage2.yml"
"$sh" run stages/testbox-stage2.yml "${SSH_ARGS[@]}" "${vars[@]}" --report "$out/stage2" -q

say "power off $build: its disk is the image"
"$BOX_VM" stop "$build"
disk=$VM_DISK

say "the boot proof: a new machine ($booted) boots $disk"
b0=$(date +%s)
vm_up "$booted" --image "$disk"
up_s=$(($(date +%s) - b0))
echo "SSH and cloud-init up after $up_s s"
end=$(($(date +%s) + bound))
until state=$(gssh "$booted" systemctl is-active postgresql.service 2>/dev/null) &&
	[ "$state" = active ]; do
	if [ "$(date +%s)" -ge "$end" ]; then
		echo "demo-vm: postgresql.service is '${state:-unknown}', not active, $bound s after SSH answered" >&2
		gssh "$booted" journalctl -b -u postgresql.service --no-pager -n 30 >&2 || true
		exit 1
	fi
	sleep 2
done
pg_s=$(($(date +%s) - b0))
since_boot=$(gssh "$booted" systemctl show -P ActiveEnterTimestampMonotonic postgresql.service)
echo "postgresql.service active: $pg_s s after the VM started;" \
	"$((since_boot / 1000000)) s after its kernel started"
printf 'up_s=%s\npg_active_s=%s\npg_active_since_kernel_s=%s\n' \
	"$up_s" "$pg_s" "$((since_boot / 1000000))" >"$out/boot.env"

say "stagehand run stages/testbox-boot-check.yml (read-only)"
"$sh" run stages/testbox-boot-check.yml "${SSH_ARGS[@]}" --report "$out/boot-check"

say "both stages again on the booted machine: nothing left to change"
"$sh" run stages/stage1.yml "${SSH_ARGS[@]}" "${vars[@]}" --report "$out/stage1-again" -q
"$sh" run stages/testbox-stage2.yml "${SSH_ARGS[@]}" "${vars[@]}" --report "$out/stage2-again" -q

say "summary"
for d in stage1 stage2 boot-check stage1-again stage2-again; do
	printf '%-13s %s\n' "$d" "$(summary "$out/$d")"
done
echo "boot: SSH after ${up_s}s, postgresql.service active after ${pg_s}s"
echo "reports: $out/{stage1,stage2,boot-check,stage1-again,stage2-again}/"
again=$(jq -s '[.[].counts.changed] | add' "$out/boot-check/results.json" \
	"$out/stage1-again/results.json" "$out/stage2-again/results.json")
[ "$again" = 0 ] || { echo "demo-vm: the checks and second runs changed $again steps" >&2; exit 1; }
if [ "$keep" = 1 ]; then
	{
		echo "BUILD_VM=$build"
		echo "BOOTED_VM=$booted"
		echo "DEMO_WWW=$www"
		echo "CACHE_WWW=$www/root"
		echo "CACHE_URL=$CACHE_URL"
		echo "VARS_FILE=$out/vm.vars.yml"
	} >"$out/keep.env"
fi
echo "demo-vm finished in $(($(date +%s) - t0)) s"
