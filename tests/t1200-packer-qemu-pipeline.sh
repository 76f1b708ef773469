#!/usr/bin/env bash
# The local image pipeline (packer/local/, `make image`) end to end on
# x86_64 (t1300 sources this file with PIPELINE_ARCH="x86_64 aarch64":
# both arches side by side in one packer build per stage):
# packer/local/image.sh runs stage 1 on the VM tier's base image
# and stage 2 on stage 1's output through Packer's qemu builder (stagehand
# through shell-local against build.Host/build.Port, the gate and the
# manifest post-processors), then boots the stage-2 image as a new machine
# and runs the read-only boot check. Checked: both images are standalone
# qcow2 files in the output dir, the reports passed the results.json
# schema and carry the system x86_64-linux, stage 2 installed the
# bundle the caches hold for that system, packer-manifest.json records one
# qemu build per stage with its status, and the boot proof passed. Then
# (x86_64 only: nothing in it depends on the arch) a stage 2 whose step
# fails (tests/fixtures/packer/failing.yml) on the same stage 1: packer
# fails, no stage-2 image, no new build in the manifest, the report names
# the step. Times are printed as comments only.
. "$(dirname "$0")/lib.sh"
# One arch, or several built side by side ("x86_64 aarch64").
read -r -a arches <<<"${PIPELINE_ARCH:-x86_64}"
per_arch=17
case "${arches[*]}" in
x86_64) t_plan $((6 + per_arch + 2 + 7)) ;;
*) t_plan $((6 + per_arch * ${#arches[@]} + 2 + 4 * (${#arches[@]} > 1) + 1)) ;;
esac

FIX=$TOP/tests/fixtures/packer
O=$T/output
now() { date +%s; }
t0=$(now)

if ! command -v packer >/dev/null; then
	"$TOP/tests/deps.sh" >/dev/null 2>&1 || true
fi
export CHECKPOINT_DISABLE=1 PACKER_CONFIG_DIR=$T/packer.d
TPL=$TOP/packer/local/qemu.pkr.hcl
t_ok "packer fmt -check: local/qemu.pkr.hcl" packer fmt -check "$TPL"
ssh-keygen -q -t ed25519 -N '' -C validate -f "$T/validate_key"
pvalidate() { # BASE_IMAGE_MAP [more args]
	local m=$1
	shift
	packer validate -var "base_image=$m" -var 'kernel={x86_64="/k",aarch64="/k"}' \
		-var 'initrd={x86_64="/i",aarch64="/i"}' -var seed_image=/s \
		-var "ssh_private_key_file=$T/validate_key" "$@" "$TPL"
}
t_ok "packer validate with no network: local/qemu.pkr.hcl (one arch given)" \
	unshare -n bash -c "$(declare -f pvalidate); T='$T' TPL='$TPL'; pvalidate '{x86_64=\"/b.qcow2\"}'"
t_ok "... and both arches, side by side" \
	unshare -n bash -c "$(declare -f pvalidate); T='$T' TPL='$TPL'; pvalidate '{x86_64=\"/b\",aarch64=\"/b\"}' -var 'accelerator={x86_64=\"kvm\",aarch64=\"tcg\"}'"
t_fail "the local template refuses an arch it cannot build" \
	pvalidate '{riscv64="/b.qcow2"}'
t_fail "... and an accelerator it does not know" \
	pvalidate '{x86_64="/b.qcow2"}' -var 'accelerator={x86_64="hvf"}'

# ---- 1. both stages and the boot proof, every arch in one run
rc=0
ARCH="${arches[*]}" IMAGE_OUT=$O STAGEHAND=$STAGEHAND "$TOP/packer/local/image.sh" >"$T/good.log" 2>&1 || rc=$?
echo "# packer/local/image.sh (${arches[*]}): exit $rc after $(($(now) - t0)) s"
sed 's/^/# /' "$O/times.env" 2>/dev/null
if [ "$rc" != 0 ]; then
	t_not "packer/local/image.sh: both stages through Packer's qemu builder and the boot proof" "$T/good.log"
	t_done
	exit 1
fi
t_pass "packer/local/image.sh: both stages through Packer's qemu builder and the boot proof (${arches[*]})"

standalone() { # IMAGE: a qcow2 with no backing file
	qemu-img info --output=json "$1" >"$T/info.json" &&
		test "$(jq -r '.format + " " + (."backing-filename" // "none")' "$T/info.json")" = "qcow2 none"
}
validate_json() { # dir
	python3 - "$TOP/docs/results.schema.json" "$1/results.json" <<'PY'
import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
doc = json.load(open(sys.argv[2], encoding="utf-8"))
v = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
errors = list(v.iter_errors(doc))
for e in errors:
    print("%s: %s" % (list(e.absolute_path), e.message))
sys.exit(1 if errors else 0)
PY
}
M=$O/packer-manifest.json
check_arch() { # ARCH: the per-arch checks (per_arch of them)
	local arch=$1 sys=$1-linux bundle_key=BUNDLE_ROOT R1 R2 RB
	[ "$arch" = x86_64 ] || bundle_key=BUNDLE_ROOT_AARCH64
	R1=$O/reports/stage1-$arch
	R2=$O/reports/stage2-$arch
	RB=$O/reports/boot-check-$arch
	t_ok "$arch: output/stage1-$arch.qcow2 is a standalone qcow2" standalone "$O/stage1-$arch.qcow2"
	t_ok "$arch: output/stage2-$arch.qcow2 is a standalone qcow2" standalone "$O/stage2-$arch.qcow2"
	t_ok "$arch: stagehand ran through shell-local against Packer's build.Host/Port/User (the port forward)" \
		sh -c "grep -q 'stage1-$arch.*stagehand-provision: stagehand run $TOP/stages/stage1.yml -> ssh://admin@127.0.0.1:[0-9]' '$T/good.log' &&
			grep -q 'stage2-$arch.*stagehand-provision: stagehand run $TOP/stages/testbox-stage2.yml -> ssh://admin@127.0.0.1:[0-9]' '$T/good.log'"
	t_ok "$arch: stage 1 and stage 2 passed, on $sys" \
		test "$(jq -rs 'map(.status + " " + .target.system) | join(",")' "$R1/results.json" "$R2/results.json")" = \
		"passed $sys,passed $sys"
	t_ok "$arch: stage 2 installed the caches' bundle for $sys ($bundle_key)" \
		test "$(jr "$R2" .closure.root)" = "$(sed -n "s/^$bundle_key=//p" "$BOX_CACHES/paths.env")"
	t_ok "$arch: stage 2 ran on the machine stage 1's disk booted (another boot)" \
		test "$(jq -rn --slurpfile a "$R1/results.json" --slurpfile b "$R2/results.json" \
			'$b[0].started_at >= $a[0].finished_at and $b[0].target.boot_id != $a[0].target.boot_id')" = true
	t_ok "$arch: the stage reports pass the results.json schema" \
		sh -c "$(declare -f validate_json); TOP='$TOP'; validate_json '$R1' && validate_json '$R2'"
	t_ok "$arch: the gate post-processor passed each stage's report" \
		test "$(grep -c "stage[12]-$arch.*stagehand-gate: all 1 report(s) passed" "$T/good.log")" = 2
	t_ok "$arch: packer-manifest.json records one qemu build per stage, with its image" \
		test "$(jq -r --arg a "$arch" '[.builds[] | select(.custom_data.arch == $a) |
			"\(.custom_data.build) \(.custom_data.stage) \(.builder_type) \(.files[0].name)"] | join(",")' "$M")" = \
		"stage1-$arch stage1 qemu stage1-$arch.qcow2,stage2-$arch stage2 qemu stage2-$arch.qcow2"
	t_ok "$arch: ... with the status passed and the system $sys" \
		test "$(jq -r --arg a "$arch" '[.builds[].custom_data | select(.arch == $a) |
			"\(.status) \(.target_system)"] | join(",")' "$M")" = "passed $sys,passed $sys"
	t_ok "$arch: ... and stage 2's input is stage 1's image" \
		test "$(jq -r --arg n "stage2-$arch" '.builds[].custom_data | select(.build == $n) | .input' "$M")" = \
		"$O/stage1-$arch.qcow2"
	t_ok "$arch: the boot proof: the boot check passed with nothing changed" \
		test "$(jr "$RB" '.status + " " + (.counts.changed | tostring)')" = "passed 0"
	t_ok "$arch: ... postgresql.service was active on the booted stage-2 image" \
		test "$(jr "$RB" '[.steps[] | select(.name == "postgresql.service is active") | .status] | first')" = ok
	t_ok "$arch: ... and its report says $sys" test "$(jr "$RB" .target.system)" = "$sys"
	t_ok "$arch: the aggregate index lists its three runs, passed, on $sys" \
		test "$(jq -r --arg a "$arch" '[.runs[] | select(.arch == $a) | "\(.run) \(.status) \(.system)"] | join(",")' \
			"$O/reports/index.json")" = "stage1 passed $sys,stage2 passed $sys,boot-check passed $sys"
	t_ok "$arch: ... with its images" \
		test "$(jq -r --arg a "$arch" '[.runs[] | select(.arch == $a) | .image // "-"] | join(",")' \
			"$O/reports/index.json")" = "$O/stage1-$arch.qcow2,$O/stage2-$arch.qcow2,-"
	t_ok "$arch: image.sh printed where its images are" \
		sh -c "grep -qx 'image: $O/stage1-$arch.qcow2' '$T/good.log' && grep -qx 'image: $O/stage2-$arch.qcow2' '$T/good.log'"
}
for a in "${arches[@]}"; do check_arch "$a"; done
t_ok "no Packer work dir is left behind" sh -c "! ls -d '$O'/.build-* 2>/dev/null"
t_ok "image.sh printed where the reports are, and ran one gate over all of them" \
	sh -c "grep -qx 'reports: $O/reports/ (index.json)' '$T/good.log' &&
		grep -qx 'gate: all $((3 * ${#arches[@]})) report(s) passed (${arches[*]})' '$T/good.log'"

if [ ${#arches[@]} -gt 1 ]; then
	# Side by side: each stage is one `packer build` holding every arch's
	# build (one packer_run_uuid), and the builds overlapped in time.
	t_ok "each stage ran as one packer build for ${arches[*]} (one packer_run_uuid per stage)" \
		test "$(jq -r '[.builds | group_by(.custom_data.stage)[] | map(.packer_run_uuid) | unique | length] |
			join(",")' "$M")" = "1,1"
	overlap() { # STAGE: every arch's run started before every other arch's run ended
		local a files=()
		for a in "${arches[@]}"; do files+=("$O/reports/$1-$a/results.json"); done
		test "$(jq -rs '(map(.started_at) | max) < (map(.finished_at) | min)' "${files[@]}")" = true
	}
	t_ok "the stage-1 runs of ${arches[*]} overlapped (side by side, not one after the other)" overlap stage1
	t_ok "... and so did the stage-2 runs" overlap stage2
	t_ok "the manifest holds $((2 * ${#arches[@]})) builds, one per stage and arch, none lost to the other" \
		test "$(jq -r '[.builds[].custom_data.build] | sort | join(",")' "$M")" = \
		"$(for a in "${arches[@]}"; do echo "stage1-$a"; echo "stage2-$a"; done | sort | paste -sd,)"
fi

if [ "${arches[*]}" != x86_64 ]; then
	t_ok "no VM of this test is left running" sh -c "! '$BOX_VM' list | grep -q '^img'"
	echo "# whole test: $(($(now) - t0)) s"
	t_done
	exit
fi
arch=x86_64
R2=$O/reports/stage2-$arch

# ---- 2. a failing stage 2 never becomes an image
runs_before=$(jq -c '[.builds[].packer_run_uuid]' "$M")
t1=$(now)
rc=0
ARCH=$arch IMAGE_OUT=$O STAGEHAND=$STAGEHAND IMAGE_STAGES=2 IMAGE_BOOT_PROOF=0 \
	STAGE2_MANIFEST=$FIX/failing.yml "$TOP/packer/local/image.sh" >"$T/fail.log" 2>&1 || rc=$?
echo "# the failing stage 2: exit $rc after $(($(now) - t1)) s"
t_ok "a failing stage 2 fails image.sh" test "$rc" = 1
t_ok "... no stage-2 image in the output dir, no Packer work dir" \
	sh -c "test ! -e '$O/stage2-$arch.qcow2' && ! ls -d '$O'/.build-* 2>/dev/null"
t_ok "... stage 1's image is still there" test -f "$O/stage1-$arch.qcow2"
t_ok "... packer-manifest.json got no build from that run" \
	test "$(jq -c '[.builds[].packer_run_uuid]' "$M")" = "$runs_before"
t_ok "... the report says failed at the deliberately failing step" \
	test "$(jr "$R2" '.status + ": " + ([.steps[] | select(.status == "failed") | .name] | join(","))')" = \
	"failed: Deliberately failing step for Packer"
t_ok "... and Packer's output and image.sh name it" \
	sh -c "grep -q \"stagehand-provision: stage packer-failing failed at step 'Deliberately failing step for Packer'\" '$T/fail.log' &&
		grep -q 'image: stage 2 failed on x86_64 (packer exit 1): no image' '$T/fail.log'"
t_ok "no VM of this test is left running" sh -c "! '$BOX_VM' list | grep -q '^img'"
echo "# whole test: $(($(now) - t0)) s"
t_done
