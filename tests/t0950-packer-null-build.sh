#!/usr/bin/env bash
# The Packer integration, with Debian's Packer 1.6.6 and no network:
# every template and plugin file is formatted, the templates validate
# offline (the amazon ones without their plugin file, which 1.6.6
# rejects), the release workflow and its scripts lint (yamllint,
# shellcheck on the run: scripts), its matrix comes from
# packer/versions.json, and its cleanup removes a run's leftovers (against
# a fake aws). Then a real `packer build` of the null-builder template
# provisions the test box through the shell-local provisioner
# (stages/stage1.yml, then stages/testbox-stage2.yml against the signed
# test caches, then the post-processor gate and the manifest). A failing
# step fails the build, is named in Packer's output and adds no artifact;
# the key never shows up; a Session-Manager-shaped address (127.0.0.1 and
# a forwarded port) is used as Packer gives it.
. "$(dirname "$0")/lib.sh"
t_plan 75

export CHECKPOINT_DISABLE=1 PACKER_CONFIG_DIR=$T/packer.d TMPDIR=$T
PK=$TOP/packer
TPL=$PK/testbox.pkr.hcl
FIX=$TOP/tests/fixtures/packer

if ! command -v packer >/dev/null || ! command -v yamllint >/dev/null ||
	! command -v shellcheck >/dev/null; then
	t_not "packer, yamllint and shellcheck are installed (tests/deps.sh)"
	t_done
	exit 1
fi
t_ok "the packer is Debian's 1.6.6" sh -c 'packer version | grep -qx "Packer v1.6.6"'

# ---------------------------------------------------------------- offline
ssh-keygen -q -t ed25519 -N '' -C validate -f "$T/validate_key"
# Every template and plugin file (t1200 validates and builds packer/local/).
for f in "$PK"/*.pkr.hcl "$PK"/stage1/*.pkr.hcl "$PK"/stage2/*.pkr.hcl "$PK"/local/*.pkr.hcl; do
	t_ok "packer fmt -check: ${f#"$PK"/}" packer fmt -check "$f"
done
# The plugin files: what Packer 1.7+ reads with `packer init`, and what
# 1.6.6 cannot read (so its builds and this test give the template alone).
plugins_ok() {
	local p=$PK/stage1/plugins.pkr.hcl
	cmp -s "$p" "$PK/stage2/plugins.pkr.hcl" &&
		grep -q '^  required_plugins {' "$p" &&
		grep -q '^      source *= "github.com/hashicorp/amazon"$' "$p" &&
		grep -Eq '^      version *= ">= ?[0-9]+\.[0-9]+\.[0-9]+, < ?[0-9]+\.[0-9]+\.[0-9]+"$' "$p" &&
		[ "$(find "$PK/stage1" "$PK/stage2" -name '*.pkr.hcl' | wc -l)" = 4 ]
}
t_ok "each stage dir has the same plugin file: github.com/hashicorp/amazon with a version constraint" plugins_ok
t_ok "Packer 1.6.6 rejects required_plugins: why the plugin file is a file of its own" \
	sh -c "! unshare -n packer validate -var postgres_version=1 '$PK/stage1' >'$T/dir.log' 2>&1 &&
		grep -q 'required_plugins' '$T/dir.log'"
# unshare -n: no network at all, so "validates" means "validates offline".
for f in "$PK"/stage1/stage1.pkr.hcl "$PK"/stage2/stage2.pkr.hcl; do
	t_ok "packer validate with no network: ${f#"$PK"/} (amazon-ebs, both arches)" \
		unshare -n packer validate -var postgres_version=15.8.1.004 "$f"
done
# The network, source and sharing variables set, as a release in an
# account without public addresses would set them.
t_ok "stage 1 validates with session_manager, a subnet filter, a security group, a source AMI ID, encryption and copies" \
	unshare -n packer validate -var postgres_version=15.8.1.004 \
	-var ssh_interface=session_manager -var iam_instance_profile=ssm-build \
	-var 'subnet_filter={"tag:Name" = "build-*"}' -var 'security_group_ids=["sg-0123"]' \
	-var associate_public_ip_address=false -var 'source_ami={arm64 = "ami-0123"}' \
	-var encrypt_boot=true -var kms_key_id=alias/build -var 'ami_regions=["eu-west-1"]' \
	-var 'ami_users=["123456789012"]' -var run_id=42-1 "$PK/stage1/stage1.pkr.hcl"
t_ok "stage 2 validates from another team's stage 1 (name filter, owners) with a root size" \
	unshare -n packer validate -var postgres_version=15.8.1.004 \
	-var 'source_ami_name={x86_64 = "team-*-x86_64-stage-1", arm64 = "team-*-arm64-stage-1"}' \
	-var 'source_ami_owners=["123456789012"]' -var root_volume_size=20 \
	-var root_device_name=/dev/xvda -var ssh_interface=private_ip "$PK/stage2/stage2.pkr.hcl"
t_ok "stage 2 validates through a bastion (bastion_host, its user, key file and port)" \
	unshare -n packer validate -var postgres_version=15.8.1.004 \
	-var ssh_interface=private_ip -var bastion_host=bastion.example.org \
	-var bastion_username=ec2-user -var "bastion_private_key_file=$T/validate_key" \
	-var bastion_port=2222 "$PK/stage2/stage2.pkr.hcl"
t_fail "an ssh_interface Packer does not know is refused" \
	packer validate -var postgres_version=1 -var ssh_interface=bogus "$PK/stage1/stage1.pkr.hcl"
t_ok "packer validate with no network: testbox.pkr.hcl" \
	unshare -n packer validate -var host=192.0.2.1 \
	-var "ssh_private_key_file=$T/validate_key" "$TPL"
t_fail "the null template refuses a mode other than run or plan" \
	packer validate -var host=192.0.2.1 -var "ssh_private_key_file=$T/validate_key" \
	-var mode=apply "$TPL"
AMI_TPLS=("$PK/stage1/stage1.pkr.hcl" "$PK/stage2/stage2.pkr.hcl")
# Both arches' builds derive from the template's amazon-ebs source blocks,
# so each of those must set it, and nothing may set another type.
ed25519_everywhere() {
	local f n_src n_ed n_any
	for f in "${AMI_TPLS[@]}"; do
		n_src=$(grep -c '^source "amazon-ebs"' "$f")
		n_ed=$(grep -c 'temporary_key_pair_type *= "ed25519"' "$f")
		n_any=$(grep -c 'temporary_key_pair_type' "$f")
		[ "$n_src" -ge 1 ] && [ "$n_src" = "$n_ed" ] && [ "$n_ed" = "$n_any" ] || return 1
		[ "$(grep -c 'source "source.amazon-ebs.' "$f")" = 2 ] || return 1
	done
}
t_ok "every amazon-ebs source asks for an ed25519 temporary key pair" ed25519_everywhere
t_ok "stage 2 boots from the stage 1 AMI of its arch by default, by name" \
	sh -c "grep -q 'name *= lookup(var.source_ami_name, \"x86_64\", \"\${local.run_name}-x86_64-stage-1\")' '$PK/stage2/stage2.pkr.hcl' &&
		grep -q 'name *= lookup(var.source_ami_name, \"arm64\", \"\${local.run_name}-arm64-stage-1\")' '$PK/stage2/stage2.pkr.hcl'"
# Each arch's source entry tags the AMI, its snapshots, the instance and
# its volumes with local.tags, which carries the version, sha, stage, run
# id and region (the cleanup finds a run's leftovers by stagehandRunId).
tags_everywhere() {
	local f k
	for f in "${AMI_TPLS[@]}"; do
		for k in tags snapshot_tags run_tags run_volume_tags; do
			[ "$(grep -cE "^    $k += merge\(local.tags, \{ arch = \"(x86_64|arm64)\"" "$f")" = 2 ] || return 1
		done
		for k in postgresVersion sourceSha stage stagehandRunId buildRegion; do
			grep -qE "^    $k += " "$f" || return 1
		done
	done
}
t_ok "the AMI, snapshots, instance and volumes carry version, sha, stage, arch, run id and region tags" tags_everywhere
imdsv2_everywhere() {
	local f
	for f in "${AMI_TPLS[@]}"; do
		grep -q 'modify-instance-metadata-options .*--http-tokens required' "$f" || return 1
	done
}
t_ok "IMDSv2 is required on the build instance before stagehand runs" imdsv2_everywhere
t_ok "no template puts the key in environment_vars (Packer 1.6.6 puts those on argv)" \
	sh -c '! grep -n "environment_vars *=" "$@"' sh "${AMI_TPLS[@]}" "$TPL"
t_ok "the scripts parse" sh -c 'for f in "$@"; do sh -n "$f" || exit 1; done' sh "$PK"/*.sh

WF=$TOP/.github/workflows/ami-release.yml
t_ok "yamllint --strict passes the release workflow" \
	yamllint --strict -c "$TOP/.yamllint" "$WF"
# The workflow's run: scripts as files, for shellcheck (GitHub runs them
# with bash here: defaults.run.shell). Expressions are kept out of them.
mkdir "$T/wf"
t_ok "the workflow's run: scripts use no \${{ }} expression (values come through env)" \
	python3 - "$WF" "$T/wf" <<'EOF'
import sys, yaml
wf = yaml.safe_load(open(sys.argv[1]))
assert wf["defaults"]["run"]["shell"] == "bash"
for jn, job in wf["jobs"].items():
    for i, st in enumerate(job.get("steps", [])):
        r = st.get("run")
        if r is None:
            continue
        assert "${{" not in r, (jn, i)
        with open("%s/%s-%02d.sh" % (sys.argv[2], jn, i), "w") as f:
            f.write("#!/bin/bash\n" + r)
EOF
t_ok "shellcheck passes packer/*.sh and the workflow's run: scripts" \
	sh -c 'ls "$1"/*.sh >/dev/null && shellcheck "$2"/*.sh && shellcheck -s bash "$1"/*.sh' sh "$T/wf" "$PK"
t_ok "the workflow: matrix from versions.json, arm64 runner, OIDC per environment, stage 1 then 2, cleanup, artifacts, release" \
	python3 - "$WF" <<'EOF'
import sys, yaml
wf = yaml.safe_load(open(sys.argv[1]))
on = wf.get("on", wf.get(True))  # YAML 1.1 reads a bare on: as true
assert not (on["workflow_dispatch"] or {}).get("inputs"), "versions come from packer/versions.json"
mx = wf["jobs"]["matrix"]
assert any("packer/release-matrix.sh" in s.get("run", "") and "packer/versions.json" in s.get("run", "")
           for s in mx["steps"])
job = wf["jobs"]["build"]
assert job["strategy"]["matrix"] == "${{ fromJSON(needs.matrix.outputs.matrix) }}"
assert job["runs-on"] == "${{ matrix.runner }}"
assert "environment" in job and job["permissions"]["id-token"] == "write"
steps = job["steps"]
runs = [s.get("run", "") for s in steps]
uses = [s.get("uses", "") for s in steps]
aws = [i for i, u in enumerate(uses) if u.startswith("aws-actions/configure-aws-credentials")]
assert len(aws) == 1 and steps[aws[0]]["with"]["role-to-assume"] == "${{ vars.AWS_ROLE_ARN }}"
assert any(u.startswith("hashicorp/setup-packer") for u in uses)
assert any("packer init" in r for r in runs)
s1 = [i for i, r in enumerate(runs) if "packer build" in r and "packer/stage1\n" in r]
s2 = [i for i, r in enumerate(runs) if "packer build" in r and "packer/stage2\n" in r]
assert len(s1) == 1 and len(s2) == 1 and aws[0] < s1[0] < s2[0], (s1, s2)
assert all('-var "run_id=$RUN_ID"' in runs[i] for i in s1 + s2)
cl = [i for i, r in enumerate(runs) if "packer/cleanup-run.sh" in r]
assert len(cl) == 1 and cl[0] > s2[0], cl
assert steps[cl[0]]["if"] == "(failure() || cancelled()) && steps.aws.outcome == 'success'", steps[cl[0]]["if"]
assert steps[aws[0]]["id"] == "aws"
assert "github.run_id" in job["env"]["RUN_ID"] and "matrix.arch" in job["env"]["RUN_ID"]
assert any(u.startswith("mikepenz/action-junit-report") for u in uses)
up = [s for s in steps if s.get("uses", "").startswith("actions/upload-artifact")]
assert len(up) == 1 and up[0]["if"] == "always()"
for want in ("results.json", "junit.xml", "MANIFEST_OUTPUT"):
    assert want in up[0]["with"]["path"], want
rel = wf["jobs"]["release"]
assert rel["if"] == "startsWith(github.ref, 'refs/heads/release/')" and rel["needs"] == "build"
assert rel["permissions"]["contents"] == "write"
assert any("gh release create" in s.get("run", "") for s in rel["steps"])
EOF

# The matrix comes from the versions file: arch x major, arm64 on arm64.
matrix_ok() {
	"$PK/release-matrix.sh" "$PK/versions.json" >"$T/matrix.out" || return 1
	sed -n 's/^matrix=//p' "$T/matrix.out" | jq -e --slurpfile v "$PK/versions.json" '
		(.include | length) == (($v[0].arches | length) * ($v[0].postgres | length)) and
		(.include | length) == 4 and
		([.include[] | select(.arch == "arm64") | .runner] | unique) == ["ubuntu-24.04-arm"] and
		([.include[] | select(.arch == "x86_64") | .runner] | unique) == ["ubuntu-24.04"] and
		([.include[] | select(.arch == "arm64") | .bundle_var] | unique) == ["bundle_aarch64_linux"] and
		all(.include[]; .postgres_version == $v[0].postgres[.postgres_major].version and
			.bundle == $v[0].postgres[.postgres_major].bundle[.arch])' >/dev/null
}
t_ok "release-matrix.sh: arch x Postgres major from versions.json, versions and bundles per arch, arm64 on an arm64 runner" matrix_ok
t_exit 1 "release-matrix.sh --release refuses the placeholder bundle paths" \
	"$PK/release-matrix.sh" --release "$PK/versions.json"

# The cleanup, against a fake aws that answers from canned data and logs
# each call: an instance of the run is left, and two AMIs of the run, one
# in the manifest (a stage 1 that passed) and one not (a failed gate).
mkdir "$T/fakeaws"
cat >"$T/fakeaws/aws" <<'EOF'
#!/bin/sh
echo "$*" >>"$FAKEAWS_LOG"
case "$*" in
*describe-instances*) echo i-0left ;;
*"describe-images --owners self"*) printf 'ami-0good\tami-0bad\n' ;;
*"describe-images --image-ids ami-0good"*) echo snap-0good ;;
*"describe-images --image-ids ami-0bad"*) echo snap-0bad ;;
*describe-snapshots*) printf 'snap-0good\tsnap-0bad\tsnap-0lone\n' ;;
esac
exit 0
EOF
chmod +x "$T/fakeaws/aws"
echo '{"builds":[{"artifact_id":"us-east-1:ami-0good,eu-west-1:ami-0copy"}]}' >"$T/cl.json"
: >"$T/aws.log"
t_ok "cleanup-run.sh runs against the fake aws" \
	env FAKEAWS_LOG="$T/aws.log" PATH="$T/fakeaws:$PATH" \
	"$PK/cleanup-run.sh" --region us-east-1 --run-id 7-1-pg15-x86_64 --manifest "$T/cl.json"
t_ok "... terminates the run's instances, found by the run id tag" \
	sh -c "grep -q 'describe-instances --filters Name=tag:stagehandRunId,Values=7-1-pg15-x86_64 ' '$T/aws.log' &&
		grep -q 'terminate-instances --instance-ids i-0left' '$T/aws.log'"
t_ok "... deregisters the AMI the manifest does not have, keeps the one it has" \
	sh -c "grep -q 'deregister-image --image-id ami-0bad' '$T/aws.log' &&
		! grep -q 'deregister-image --image-id ami-0good' '$T/aws.log'"
t_ok "... deletes the snapshots of the removed AMI and the lone one, not the kept AMI's" \
	sh -c "grep -q 'delete-snapshot --snapshot-id snap-0bad' '$T/aws.log' &&
		grep -q 'delete-snapshot --snapshot-id snap-0lone' '$T/aws.log' &&
		! grep -q 'delete-snapshot --snapshot-id snap-0good' '$T/aws.log'"
: >"$T/aws.log"
t_exit 2 "cleanup-run.sh refuses an empty run id (it would match untagged resources)" \
	env FAKEAWS_LOG="$T/aws.log" PATH="$T/fakeaws:$PATH" \
	"$PK/cleanup-run.sh" --region us-east-1 --run-id ""
t_ok "... without calling aws" test ! -s "$T/aws.log"

t_exit 2 "stagehand-provision refuses to run with no host key policy" \
	"$PK/stagehand-provision.sh" --manifest x.yml --report "$T/r" --host 192.0.2.1
t_exit 2 "stagehand-provision refuses a mode other than run or plan" \
	"$PK/stagehand-provision.sh" --mode apply --manifest x.yml --report "$T/r" \
	--host 192.0.2.1 --accept-new-host-key

# ---------------------------------------------------------------- the box
box_up "$(box_name pk)" || {
	t_not "test box comes up"
	t_done
	exit 1
}

# Stage 2 installs the PostgreSQL bundle from the signed test caches,
# served by nginx on the box's gateway; its vars file points at them.
if ! { caches_make "$T/paths.env" &&
	caches_serve "$T/www" "$TESTBOX_GATEWAY" &&
	"$TOP/stages/testbox-vars.sh" "$T/paths.env" "$CACHE_URL" >"$T/testbox.vars.yml"; }; then
	t_not "the test caches are built and served"
	t_done
	exit 1
fi
# shellcheck disable=SC1091
. "$T/paths.env"

R=$T/rep
# pk LOG VAR=VALUE...: packer build of the null template against the box,
# run from $T (so nothing depends on the working directory). Both stages
# get the test box's vars file (stage 1: no systemd, the host's Nix) unless
# VAR=VALUE sets stagehand_args itself.
pk() {
	local log=$1 a args=()
	shift
	for a in "$@"; do args+=(-var "$a"); done
	PK_RC=0
	(cd "$T" && packer build -color=false \
		-var "host=$TESTBOX_HOST" -var "port=$TESTBOX_PORT" \
		-var "user=$TESTBOX_USER" -var "ssh_private_key_file=$TESTBOX_KEY" \
		-var "stagehand_bin=$STAGEHAND" -var "report_root=$R" \
		-var "stage1_manifest=$TOP/stages/stage1.yml" \
		-var "stagehand_args=[\"--vars-file\", \"$T/testbox.vars.yml\"]" \
		"${args[@]}" "$TPL") >"$log" 2>&1 || PK_RC=$?
}
st() { jq -r .status "$1/results.json" 2>/dev/null; }
D1=$R/testbox-x86_64/stage1
D2=$R/testbox-x86_64/stage2

# 1. A good run: the key from the file, the host key checked.
pk "$T/good.log" "known_hosts_file=$TESTBOX_KNOWN_HOSTS" \
	"stage2_manifest=$TOP/stages/testbox-stage2.yml" "manifest_output=$T/good.json" \
	"stagehand_args=[\"--vars-file\", \"$T/testbox.vars.yml\"]"
t_ok "packer build of the null template passes" test "$PK_RC" = 0
t_ok "stagehand ran through shell-local with Packer's build.Host/Port/User" \
	grep -q "stagehand-provision: stagehand run $TOP/stages/stage1.yml -> ssh://$TESTBOX_USER@$TESTBOX_HOST:$TESTBOX_PORT (key file $TESTBOX_KEY; host key checked against $TESTBOX_KNOWN_HOSTS)" "$T/good.log"
t_ok "the stage 1 report dir (per build and arch) says passed" test "$(st "$D1")" = passed
t_ok "the stage 2 report dir says passed" test "$(st "$D2")" = passed
t_ok "stage 2 started after stage 1 finished, on the same box" \
	test "$(jq -rn --slurpfile a "$D1/results.json" --slurpfile b "$D2/results.json" \
		'$b[0].started_at >= $a[0].finished_at and $b[0].target.boot_id == $a[0].target.boot_id')" = true
BOOT_ID=$(jq -r .target.boot_id "$D1/results.json")
t_ok "each report dir has results.json, junit.xml, stagehand.env, run.log" \
	sh -c "for d in '$D1' '$D2'; do for f in results.json junit.xml stagehand.env run.log; do test -s \$d/\$f || exit 1; done; done"
t_ok "stage 2 installed Postgres on the box" box_exec /usr/bin/pg_config --version
t_ok "stage 2's pgTAP assertions are test cases in its junit.xml" \
	grep -q 'classname="stage2.pgTAP unit tests"' "$D2/junit.xml"
t_ok "the post-processor gate ran stagehand report on both dirs and passed" \
	sh -c "grep -q '(shell-local): stage1 on ' '$T/good.log' &&
		grep -q '(shell-local): stage2 on ' '$T/good.log' &&
		grep -q 'stagehand-gate: all 2 report(s) passed' '$T/good.log'"
t_ok "the manifest post-processor recorded both statuses as passed" \
	test "$(jq -r '.builds[-1].custom_data | .stage1_status + " " + .stage2_status' "$T/good.json")" = "passed passed"
t_ok "custom_data carries the report dirs, the closure roots and the system" \
	test "$(jq -r '.builds[-1].custom_data | [.stage2_report, .stage2_closure_root, .target_system, .mode] | join("|")' "$T/good.json")" = "$D2|$BUNDLE_ROOT|x86_64-linux|run"

# 2. A dry run: mode=plan, the key text through the environment.
box_snapshot >"$T/snap1"
KEY_TEXT=$(cat "$TESTBOX_KEY")
PKR_VAR_ssh_private_key=$KEY_TEXT PACKER_LOG=1 \
	pk "$T/plan.log" mode=plan "known_hosts_file=$TESTBOX_KNOWN_HOSTS" \
	"stage2_manifest=$FIX/stage2-check.yml" "manifest_output=$T/plan.json"
box_snapshot >"$T/snap2"
t_ok "a plan-mode build passes" test "$PK_RC" = 0
t_ok "stagehand got the key text through an environment variable" \
	grep -q 'key from \$STAGEHAND_SSH_KEY' "$T/plan.log"
t_ok "both reports are plans" \
	test "$(jq -r .command "$D1/results.json" "$D2/results.json" | sort -u)" = plan
t_ok "the plan changed nothing on the box" cmp -s "$T/snap1" "$T/snap2"
t_ok "the manifest records mode plan" test "$(jq -r '.builds[-1].custom_data.mode' "$T/plan.json")" = plan
leak=0 missing=""
# A file that is not there would be searched by no one: say so, and fail.
for f in "$T/plan.log" "$T/good.log" "$R" "$T/plan.json" "$T/good.json"; do
	[ -e "$f" ] || missing="$missing $f"
done
while IFS= read -r line; do
	case $line in -----*) continue ;; esac
	if grep -rqF -- "$line" "$T/plan.log" "$T/good.log" "$R" "$T/plan.json" "$T/good.json"; then
		leak=1
	fi
done <"$TESTBOX_KEY"
if [ "$leak" = 0 ] && [ -z "$missing" ]; then
	t_pass "no line of the key is in Packer's output (even PACKER_LOG=1), the reports or the manifest"
else
	[ -z "$missing" ] || echo "not searched, missing:$missing" >"$T/missing.log"
	t_not "no line of the key is in Packer's output (even PACKER_LOG=1), the reports or the manifest" "$T/missing.log"
fi
t_ok "Packer removed its shell-local scripts (they held the key)" \
	sh -c "! ls '$T'/packer-shell* 2>/dev/null | grep -q ."

# 3. A failing step fails the build, and Packer's output names it. The
# manifest file already holds the good build: the failed one adds none.
cp "$T/good.json" "$T/fail.json"
pk "$T/fail.log" "known_hosts_file=$TESTBOX_KNOWN_HOSTS" \
	"stage2_manifest=$FIX/failing.yml" "manifest_output=$T/fail.json"
t_ok "a failing step fails packer build (non-zero exit)" test "$PK_RC" != 0
t_ok "Packer's output names the failing step" \
	grep -q "stagehand-provision: stage packer-failing failed at step 'Deliberately failing step for Packer'" "$T/fail.log"
t_ok "the stage 2 report (overwritten, not stale) says failed" test "$(st "$D2")" = failed
t_ok "the failed report is complete (results.json, junit.xml, stagehand.env, run.log)" \
	sh -c "for f in results.json junit.xml stagehand.env run.log; do test -s '$D2'/\$f || exit 1; done"
t_ok "no artifact is added to packer-manifest.json for the failed build" cmp -s "$T/good.json" "$T/fail.json"
t_ok "no post-processor ran for the failed build (the good one's did)" \
	sh -c "grep -q 'Running post-processor: ' '$T/good.log' &&
		! grep -q 'Running post-processor: ' '$T/fail.log' && ! grep -q 'stagehand-gate' '$T/fail.log'"
t_exit 1 "the gate fails a failed report" "$PK/stagehand-gate.sh" --stagehand "$STAGEHAND" "$D1" "$D2"
t_exit 1 "the gate fails a missing report" "$PK/stagehand-gate.sh" --stagehand "$STAGEHAND" "$T/nothing"
mkdir "$T/malformed" "$T/forged"
echo '{"status": "passed",' >"$T/malformed/results.json"
echo '{"status": "passed"}' >"$T/forged/results.json"
t_exit 1 "the gate fails a malformed report" "$PK/stagehand-gate.sh" --stagehand "$STAGEHAND" "$T/malformed"
t_exit 1 "the gate fails a report that only says passed" "$PK/stagehand-gate.sh" --stagehand "$STAGEHAND" "$T/forged"
t_exit 0 "the gate passes a passed report" "$PK/stagehand-gate.sh" --stagehand "$STAGEHAND" "$D1"

# 4. Host key policy: amazon-ebs's --accept-new-host-key path, and none.
pk "$T/acc.log" accept_new_host_key=true \
	"stage2_manifest=$FIX/stage2-check.yml" "manifest_output=$T/acc.json"
t_ok "with accept_new_host_key the build passes" test "$PK_RC" = 0
t_ok "and the report records the host key as accepted new, with its fingerprint" \
	test "$(jq -r '.target.host_key | "\(.accepted_new) \(.fingerprint)"' "$D1/results.json")" = "true $TESTBOX_HOST_KEY_SHA256"
pk "$T/none.log" "stage2_manifest=$FIX/stage2-check.yml" "manifest_output=$T/none.json"
t_ok "with no known_hosts file and no accept_new_host_key the build fails" \
	sh -c "[ $PK_RC != 0 ] && grep -q 'give --known-hosts FILE, or --accept-new-host-key' '$T/none.log'"

# 5. A Session-Manager-shaped address. With ssh_interface =
# "session_manager", Packer's build.Host and build.Port are the local end
# of a tunnel to the instance's port 22, not the instance's address. Here
# the tunnel is an ssh local forward from 127.0.0.1 to the box's sshd;
# Packer and stagehand both go through it, and the host key is checked
# under the forwarded name ([127.0.0.1]:PORT).
FWD_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
echo "[127.0.0.1]:$FWD_PORT $(cut -d' ' -f2- "$TESTBOX_KNOWN_HOSTS")" >"$T/fwd_known_hosts"
grep -c "Accepted publickey for $TESTBOX_USER from $TESTBOX_HOST " "$TESTBOX_STATE/sshd.log" >"$T/fwd_before" || true
# -f returns once the forward listens (ExitOnForwardFailure), so nothing
# has to wait for it; the control socket stops it below.
t_ok "a local port forward 127.0.0.1:$FWD_PORT -> the box's sshd is up" \
	ssh -f -N -M -S "$T/fwd.ctl" -o ExitOnForwardFailure=yes -o BatchMode=yes \
	-o StrictHostKeyChecking=yes -o "UserKnownHostsFile=$TESTBOX_KNOWN_HOSTS" \
	-i "$TESTBOX_KEY" -p "$TESTBOX_PORT" \
	-L "127.0.0.1:$FWD_PORT:$TESTBOX_HOST:$TESTBOX_PORT" "$TESTBOX_USER@$TESTBOX_HOST"
pk "$T/fwd.log" host=127.0.0.1 "port=$FWD_PORT" "known_hosts_file=$T/fwd_known_hosts" \
	"stage2_manifest=$FIX/stage2-check.yml" "manifest_output=$T/fwd.json"
ssh -S "$T/fwd.ctl" -O exit "$TESTBOX_USER@$TESTBOX_HOST" 2>/dev/null
t_ok "packer build through the forwarded address passes" test "$PK_RC" = 0
t_ok "stagehand-provision.sh used build.Host and build.Port as given (127.0.0.1 and the forwarded port)" \
	grep -q "stagehand-provision: stagehand run $TOP/stages/stage1.yml -> ssh://$TESTBOX_USER@127.0.0.1:$FWD_PORT (key file $TESTBOX_KEY; host key checked against $T/fwd_known_hosts)" "$T/fwd.log"
t_ok "both reports record 127.0.0.1:$FWD_PORT as the target, and the box's boot id" \
	test "$(jq -r '.target | "\(.host):\(.port) \(.boot_id)"' "$D1/results.json" "$D2/results.json" | sort -u)" = "127.0.0.1:$FWD_PORT $BOOT_ID"
t_ok "the box's sshd saw those logins come through the forward (from its own address)" \
	test "$(grep -c "Accepted publickey for $TESTBOX_USER from $TESTBOX_HOST " "$TESTBOX_STATE/sshd.log")" -gt "$(cat "$T/fwd_before")"
t_ok "the manifest records both stages as passed" \
	test "$(jq -r '.builds[-1].custom_data | .stage1_status + " " + .stage2_status' "$T/fwd.json")" = "passed passed"

t_done
