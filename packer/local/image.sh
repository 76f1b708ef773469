#!/usr/bin/env bash
# packer/local/image.sh: `make image`. The two-stage image pipeline on this
# machine (as root, Debian 12): builds stagehand, the signed test caches
# (served at this machine's address, tests/box.sh host_addr), the VM tier's
# Debian 12 base image (tests/vm/vm image) and a NoCloud seed per stage
# (tests/vm/vm seed), then runs stage 1 and stage 2 through Packer's qemu
# builder (packer/local/qemu.pkr.hcl), then the boot proof: a new VM boots
# the stage-2 image with no stagehand involved, postgresql.service must be
# active within BOOT_PG_BOUND seconds (default 180) of SSH answering, and
# stages/testbox-boot-check.yml (read-only) checks it. Tears down the VM
# and nginx, also on failure or Ctrl-C.
#
#   packer/local/image.sh       (ARCH=x86_64, the default, or aarch64, or
#                                "x86_64 aarch64": both side by side)
#
# ARCH=aarch64 builds an arm64 image on any host: the base image through
# qemu-user-static, the VMs with qemu-system-aarch64 -M virt (TCG unless
# the host is arm64 with KVM), and an aarch64-linux bundle in the caches
# (Debian's arm64 PostgreSQL 15, make-caches.sh --aarch64), which the
# closure step picks because the guest's uname -m says aarch64.
#
# With two arches each stage is one `packer build -parallel-builds` of
# both arches' builds (stage1-x86_64 and stage1-aarch64 run at the same
# time), the boot proofs follow one arch after the other, and the reports
# are aggregated: the gate is run on all of them at the end, and
# DIR/reports/index.json lists every run (stage, arch, system, status,
# counts, closure root, image).
#
# Environment:
#   IMAGE_OUT=DIR        where the images, reports and packer-manifest.json
#                        go (default ./output)
#   IMAGE_STAGES="1 2"   the stages to build; "2" alone reuses DIR's stage 1
#   STAGE2_MANIFEST=F    stage 2's manifest (default stages/testbox-stage2.yml)
#   IMAGE_BOOT_PROOF=0   skip the boot proof
#   IMAGE_PARALLEL=N     Packer's -parallel-builds (default 0: no limit)
#   STAGEHAND=PATH       that binary instead of ./stagehand (no make)
#
# A stage that fails leaves no image: its old image is removed before it
# starts, Packer removes its work dir, and its report (DIR/reports/) says
# which step failed; with two arches, the other arch's stage still
# completes, but the next stage is not started. Exit status: 0, or 1 when
# a stage or a proof failed.
set -euo pipefail
cd "$(dirname "$0")/../.."
TOP=$(pwd)
prog=image
arches=()
cache_args=()
for a in ${ARCH:-x86_64}; do
	case $a in
	x86_64 | amd64) a=x86_64 ;;
	aarch64 | arm64) a=aarch64 cache_args=(--aarch64) ;;
	*)
		echo "$prog: unknown ARCH '$a' (x86_64, aarch64, or both: \"x86_64 aarch64\")" >&2
		exit 2
		;;
	esac
	case " ${arches[*]} " in *" $a "*) ;; *) arches+=("$a") ;; esac
done
[ ${#arches[@]} -gt 0 ] || {
	echo "$prog: ARCH is empty" >&2
	exit 2
}
if [ "$(id -u)" != 0 ]; then
	echo "$prog: run as root (sudo make image): it installs packages and runs QEMU" >&2
	exit 2
fi

out=${IMAGE_OUT:-output}
mkdir -p "$out"
out=$(cd "$out" && pwd)
stages=${IMAGE_STAGES:-1 2}
stage2_manifest=${STAGE2_MANIFEST:-$TOP/stages/testbox-stage2.yml}
bound=${BOOT_PG_BOUND:-180}
id=$(printf '%04x' $(($$ % 65536)))
t0=$(date +%s)

# shellcheck source=tests/box.sh
. tests/box.sh
work=$(mktemp -d /var/lib/stagehand-image.XXXXXX)
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	box_teardown
	rm -rf "$work"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '\n== %s (%d s)\n' "$*" $(($(date +%s) - t0)); }
summary() { # DIR
	jq -r '"\(.stage): \(.status) - \(.counts.total) steps, \(.counts.changed) changed, " +
		"\(.counts.failed) failed; system \(.target.system); \(.duration_ms / 1000)s"' "$1/results.json"
}

say "dependencies and build (tests/deps.sh, make stagehand)"
tests/deps.sh
sh=${STAGEHAND:-$TOP/stagehand}
[ -n "${STAGEHAND:-}" ] || make -s stagehand
sh=$(readlink -f "$sh")
"$sh" --version

# Packer takes the per-arch inputs as HCL maps: {x86_64="...", ...}.
# The paths come from tests/vm/vm and hold no quote or backslash.
hcl_image="" hcl_kernel="" hcl_initrd="" hcl_accel="" only=""
for arch in "${arches[@]}"; do
	say "the $arch base image (tests/vm/vm image --arch $arch)"
	eval "$("$BOX_VM" image --arch "$arch" | grep '^VM_[A-Z]*=/\?[A-Za-z0-9_./-]*$')"
	echo "base image $VM_IMAGE ($VM_ACCEL)"
	hcl_image+="$arch=\"$VM_IMAGE\","
	hcl_kernel+="$arch=\"$VM_KERNEL\","
	hcl_initrd+="$arch=\"$VM_INITRD\","
	hcl_accel+="$arch=\"$VM_ACCEL\","
done

say "signed binary caches, served at this machine's address"
caches_make "$work/paths.env" "${cache_args[@]}"
caches_serve "$work/www" "$(host_addr)"
echo "caches at $CACHE_URL/cache1 and $CACHE_URL/cache2 (nginx)"
mkdir -p "$out/reports"
stages/testbox-vars.sh --vm "$work/paths.env" "$CACHE_URL" >"$out/vm.vars.yml"

export CHECKPOINT_DISABLE=1 PACKER_CACHE_DIR=$work/packer_cache \
	PACKER_CONFIG_DIR=$work/packer.d
: >"$out/times.env"
# stage N: one packer build, one build per arch side by side; an arch's
# image is gone until its build passes.
stage() {
	local n=$1 s0 rc=0 seed only="" arch failed=0
	say "stage $n through Packer's qemu builder (${arches[*]})"
	for arch in "${arches[@]}"; do
		rm -rf "$out/stage$n-$arch.qcow2" "$out/.build-stage$n-$arch" \
			"$out/reports/stage$n-$arch" "$out/reports/stage$n-$arch.serial.log"
		only+="${only:+,}qemu.stage$n-$arch"
	done
	seed=$work/seed$n
	"$BOX_VM" seed "$seed" --name "stage$n" >/dev/null
	s0=$(date +%s)
	packer build -color=false -parallel-builds="${IMAGE_PARALLEL:-0}" -only="$only" \
		-var "output_root=$out" \
		-var "base_image={${hcl_image%,}}" -var "kernel={${hcl_kernel%,}}" \
		-var "initrd={${hcl_initrd%,}}" -var "accelerator={${hcl_accel%,}}" \
		-var "seed_image=$seed/seed.img" -var "ssh_private_key_file=$seed/id_ed25519" \
		-var "stagehand_bin=$sh" -var "stage1_manifest=$TOP/stages/stage1.yml" \
		-var "stage2_manifest=$stage2_manifest" \
		-var "stagehand_args=[\"--vars-file\", \"$out/vm.vars.yml\"]" \
		packer/local/qemu.pkr.hcl || rc=$?
	echo "stage${n}_s=$(($(date +%s) - s0))" >>"$out/times.env"
	for arch in "${arches[@]}"; do
		if [ "$rc" = 0 ] || [ -f "$out/stage$n-$arch.qcow2" ]; then
			continue
		fi
		failed=1
		echo "$prog: stage $n failed on $arch (packer exit $rc): no image; report $out/reports/stage$n-$arch" >&2
		[ ! -f "$out/reports/stage$n-$arch/results.json" ] ||
			summary "$out/reports/stage$n-$arch" >&2
	done
	if [ "$rc" != 0 ]; then
		[ "$failed" = 1 ] || echo "$prog: stage $n: packer exit $rc" >&2
		exit 1
	fi
}
for n in $stages; do stage "$n"; done

# The boot proof: a new machine boots the stage-2 image with no stagehand
# involved; postgresql.service must come up on its own.
boot_proof() { # ARCH
	local arch=$1 img=$out/stage2-$1.qcow2 booted=img$id${1:0:1} b0 end st
	say "the boot proof: a new $arch machine ($booted) boots $img"
	b0=$(date +%s)
	vm_up "$booted" --arch "$arch" --image "$img"
	echo "SSH and cloud-init up after $(($(date +%s) - b0)) s"
	end=$(($(date +%s) + bound))
	until st=$("$BOX_VM" ssh "$booted" -- systemctl is-active postgresql.service 2>/dev/null) &&
		[ "$st" = active ]; do
		if [ "$(date +%s)" -ge "$end" ]; then
			echo "$prog: $arch: postgresql.service is '${st:-unknown}', not active, $bound s after SSH answered" >&2
			"$BOX_VM" ssh "$booted" -- journalctl -b -u postgresql.service --no-pager -n 30 >&2 || true
			exit 1
		fi
		sleep 2
	done
	echo "boot_pg_active_${arch}_s=$(($(date +%s) - b0))" >>"$out/times.env"
	echo "postgresql.service active $(($(date +%s) - b0)) s after the VM started"
	rm -rf "$out/reports/boot-check-$arch"
	"$sh" run stages/testbox-boot-check.yml "${SSH_ARGS[@]}" --report "$out/reports/boot-check-$arch"
	"$BOX_VM" down "$booted" >/dev/null
}
if [ "${IMAGE_BOOT_PROOF:-1}" != 0 ]; then
	for arch in "${arches[@]}"; do boot_proof "$arch"; done
fi
echo "total_s=$(($(date +%s) - t0))" >>"$out/times.env"

# The aggregate: every report this run left, one gate over all of them,
# and an index a CI job reads instead of walking the directories.
say "summary"
reports=()
: >"$work/runs.json"
for arch in "${arches[@]}"; do
	for r in stage1 stage2 boot-check; do
		d=$out/reports/$r-$arch
		[ -f "$d/results.json" ] || continue
		reports+=("$d")
		printf '%-22s %s\n' "$r-$arch" "$(summary "$d")"
		jq --arg run "$r" --arg arch "$arch" --arg dir "$d" \
			--arg image "$([ "$r" = boot-check ] || echo "$out/$r-$arch.qcow2")" '{
			run: $run, arch: $arch, report: $dir, stage: .stage,
			system: .target.system, status: .status, counts: .counts,
			closure_root: (.closure.root // null),
			image: (if $image == "" then null else $image end)}' "$d/results.json" >>"$work/runs.json"
	done
done
jq -s '{runs: .}' "$work/runs.json" >"$out/reports/index.json.tmp"
mv -f "$out/reports/index.json.tmp" "$out/reports/index.json"
packer/stagehand-gate.sh --stagehand "$sh" "${reports[@]}" >/dev/null
echo "gate: all ${#reports[@]} report(s) passed (${arches[*]})"
for arch in "${arches[@]}"; do
	for n in 1 2; do
		[ -f "$out/stage$n-$arch.qcow2" ] && echo "image: $out/stage$n-$arch.qcow2"
	done
done
echo "reports: $out/reports/ (index.json)"
echo "packer manifest: $out/packer-manifest.json"
echo "image.sh finished in $(($(date +%s) - t0)) s"
