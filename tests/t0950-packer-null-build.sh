#!/usr/bin/env bash
# The Packer integration, with Debian's Packer 1.6.6 and no network:
# every template is formatted and validates offline, the release workflow
# lints, and a real `packer build` of the null-builder template provisions
# the test box through the shell-local provisioner (stages/stage1.yml, then
# stages/testbox-stage2.yml against the signed test caches, then the post-processor
# gate and the manifest). A failing step fails the
# build and is named in Packer's output; the key never shows up.
. "$(dirname "$0")/lib.sh"
t_plan 44

export CHECKPOINT_DISABLE=1 PACKER_CONFIG_DIR=$T/packer.d TMPDIR=$T
PK=$TOP/packer
TPL=$PK/testbox.pkr.hcl
FIX=$TOP/tests/fixtures/packer

if ! command -v packer >/dev/null || ! command -v yamllint >/dev/null; then
	t_not "packer and yamllint are installed (tests/deps.sh)"
	t_done
	exit 1
fi
t_ok "the packer is Debian's 1.6.6" sh -c 'packer version | grep -qx "Packer v1.6.6"'

# ---------------------------------------------------------------- offline
ssh-keygen -q -t ed25519 -N '' -C validate -f "$T/validate_key"
for f in "$PK"/*.pkr.hcl; do
	t_ok "packer fmt -check: $(basename "$f")" packer fmt -check "$f"
done
# unshare -n: no network at all, so "validates" means "validates offline".
for f in "$PK"/stage1.pkr.hcl "$PK"/stage2.pkr.hcl; do
	t_ok "packer validate with no network: $(basename "$f") (amazon-ebs, both arches)" \
		unshare -n packer validate -var postgres_version=15.8.1.004 "$f"
done
t_ok "packer validate with no network: testbox.pkr.hcl" \
	unshare -n packer validate -var host=192.0.2.1 \
	-var "ssh_private_key_file=$T/validate_key" "$TPL"
t_fail "the null template refuses a mode other than run or plan" \
	packer validate -var host=192.0.2.1 -var "ssh_private_key_file=$T/validate_key" \
	-var mode=apply "$TPL"
# Both arches' builds derive from the template's amazon-ebs source blocks,
# so each of those must set it, and nothing may set another type.
ed25519_everywhere() {
	local f n_src n_ed n_any
	for f in "$PK/stage1.pkr.hcl" "$PK/stage2.pkr.hcl"; do
		n_src=$(grep -c '^source "amazon-ebs"' "$f")
		n_ed=$(grep -c 'temporary_key_pair_type *= "ed25519"' "$f")
		n_any=$(grep -c 'temporary_key_pair_type' "$f")
		[ "$n_src" -ge 1 ] && [ "$n_src" = "$n_ed" ] && [ "$n_ed" = "$n_any" ] || return 1
		[ "$(grep -c 'source "source.amazon-ebs.' "$f")" = 2 ] || return 1
	done
}
t_ok "every amazon-ebs source asks for an ed25519 temporary key pair" ed25519_everywhere
t_ok "stage 2 boots from the stage 1 AMI of its arch, by name" \
	sh -c "grep -q 'name *= \"\${local.run_name}-x86_64-stage-1\"' '$PK/stage2.pkr.hcl' &&
		grep -q 'name *= \"\${local.run_name}-arm64-stage-1\"' '$PK/stage2.pkr.hcl'"
t_ok "no template puts the key in environment_vars (Packer 1.6.6 puts those on argv)" \
	sh -c "ls '$PK'/*.pkr.hcl >/dev/null && ! grep -n 'environment_vars *=' '$PK'/*.pkr.hcl"
t_ok "the scripts parse" sh -c "sh -n '$PK/stagehand-provision.sh' && sh -n '$PK/stagehand-gate.sh'"

WF=$TOP/.github/workflows/ami-release.yml
t_ok "yamllint --strict passes the release workflow" \
	yamllint --strict -c "$TOP/.yamllint" "$WF"
t_ok "the workflow's matrix is arch x Postgres major and it builds stage 1 then stage 2" \
	python3 - "$WF" <<'EOF'
import sys, yaml
wf = yaml.safe_load(open(sys.argv[1]))
job = wf["jobs"]["build"]
m = job["strategy"]["matrix"]
assert sorted(m["arch"]) == ["arm64", "x86_64"], m
assert sorted(m["postgres_major"]) == ["15", "16"], m
runs = [s.get("run", "") for s in job["steps"]]
s1 = [i for i, r in enumerate(runs) if "packer build" in r and "stage1.pkr.hcl" in r]
s2 = [i for i, r in enumerate(runs) if "packer build" in r and "stage2.pkr.hcl" in r]
assert len(s1) == 1 and len(s2) == 1 and s1[0] < s2[0], (s1, s2)
uses = [s.get("uses", "") for s in job["steps"]]
assert any(u.startswith("mikepenz/action-junit-report") for u in uses)
assert any(u.startswith("actions/upload-artifact") for u in uses)
EOF

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

# 3. A failing step fails the build, and Packer's output names it.
pk "$T/fail.log" "known_hosts_file=$TESTBOX_KNOWN_HOSTS" \
	"stage2_manifest=$FIX/failing.yml" "manifest_output=$T/fail.json"
t_ok "a failing step fails packer build (non-zero exit)" test "$PK_RC" != 0
t_ok "Packer's output names the failing step" \
	grep -q "stagehand-provision: stage packer-failing failed at step 'Deliberately failing step for Packer'" "$T/fail.log"
t_ok "the stage 2 report (overwritten, not stale) says failed" test "$(st "$D2")" = failed
t_fail "no manifest is written for the failed build" test -e "$T/fail.json"
t_exit 1 "the gate fails a failed report" "$PK/stagehand-gate.sh" --stagehand "$STAGEHAND" "$D1" "$D2"
t_exit 1 "the gate fails a missing report" "$PK/stagehand-gate.sh" --stagehand "$STAGEHAND" "$T/nothing"
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

t_done
