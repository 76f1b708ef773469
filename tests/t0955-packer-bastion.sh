#!/usr/bin/env bash
# Packer's bastion settings reach stagehand too: a `packer build` of the
# null template (packer/testbox.pkr.hcl) with bastion_host and friends
# provisions a box reachable only through another box (testbox up
# --behind): Packer's communicator goes through the bastion
# (ssh_bastion_*), and stagehand-provision.sh hands the same bastion to
# stagehand as --jump. The script's own bastion options are checked too.
. "$(dirname "$0")/lib.sh"
t_plan 9

export CHECKPOINT_DISABLE=1 PACKER_CONFIG_DIR=$T/packer.d TMPDIR=$T
PK=$TOP/packer
if ! command -v packer >/dev/null; then
	t_not "packer is installed (tests/deps.sh)"
	t_done
	exit 1
fi

t_exit 2 "stagehand-provision.sh: --bastion-user without --bastion-host is a usage error" \
	"$PK/stagehand-provision.sh" --manifest x.yml --report "$T/x" --host 192.0.2.1 \
	--accept-new-host-key --bastion-user u
t_exit 2 "stagehand-provision.sh: a --bastion-port that is not a number is a usage error" \
	"$PK/stagehand-provision.sh" --manifest x.yml --report "$T/x" --host 192.0.2.1 \
	--accept-new-host-key --bastion-host 192.0.2.2 --bastion-port x

FRONT=$(box_name pbf)
BACK=$(box_name pbb)
box_up "$FRONT" || { t_not "bastion box comes up"; t_done; exit 1; }
FH=$TESTBOX_HOST FKEY=$TESTBOX_KEY FKH=$TESTBOX_KNOWN_HOSTS
box_up "$BACK" --behind "$FRONT" || { t_not "box behind it comes up"; t_done; exit 1; }
t_pass "a box reachable only through the bastion box comes up"
cat "$FKH" "$TESTBOX_KNOWN_HOSTS" >"$T/kh"

for s in 1 2; do
	cat >"$T/s$s.yml" <<YML
stagehand: 1
stage: bastion$s
steps:
  - name: Leave mark $s
    shell: hostname >/tmp/stage$s-was-here
YML
done
R=$T/rep
(cd "$T" && packer build -color=false \
	-var "host=$TESTBOX_HOST" -var "port=$TESTBOX_PORT" \
	-var "user=$TESTBOX_USER" -var "ssh_private_key_file=$TESTBOX_KEY" \
	-var "known_hosts_file=$T/kh" \
	-var "bastion_host=$FH" -var "bastion_private_key_file=$FKEY" \
	-var "stagehand_bin=$STAGEHAND" -var "report_root=$R" \
	-var "stage1_manifest=$T/s1.yml" -var "stage2_manifest=$T/s2.yml" \
	-var "manifest_output=$T/pk.json" \
	"$PK/testbox.pkr.hcl") >"$T/pk.log" 2>&1
PK_RC=$?
t_ok "packer build through the bastion passes" \
	sh -c '[ "$1" = 0 ] || { tail -n 30 "$2"; exit 1; }' _ "$PK_RC" "$T/pk.log"
t_ok "stagehand-provision handed stagehand the bastion as its jump host" \
	grep -qF -- "-> ssh://$TESTBOX_USER@$TESTBOX_HOST:$TESTBOX_PORT via ssh://$TESTBOX_USER@$FH:22 (key file $TESTBOX_KEY; host key checked against $T/kh)" "$T/pk.log"
t_ok "both stages ran on the box behind the bastion" \
	box_exec sh -c "[ \"\$(cat /tmp/stage1-was-here)\" = '$BACK' ] && [ \"\$(cat /tmp/stage2-was-here)\" = '$BACK' ]"
t_ok "both reports passed and list the bastion as their hop" \
	sh -c 'for s in stage1 stage2; do
		[ "$(jq -r .status "$1/testbox-x86_64/$s/results.json")" = passed ] &&
		[ "$(jq -r ".target.jumps[0].host" "$1/testbox-x86_64/$s/results.json")" = "$2" ] || exit 1
	done' _ "$R" "$FH"
t_fail "no private key text in Packer's log" grep -qF "$(sed -n 2p "$FKEY")" "$T/pk.log"
t_ok "the manifest post-processor wrote its artifact" test -s "$T/pk.json"

t_done
