#!/bin/sh
# packer/cleanup-run.sh: removes what a failed or cancelled release job
# left in EC2, found by the stagehandRunId tag the templates put on the
# instance, its volumes, the AMI and its snapshots (variable run_id).
# The release workflow runs it when a job fails or is cancelled.
#
#   cleanup-run.sh --region REGION --run-id ID [--manifest FILE]
#
# 1. Terminates every instance tagged with ID that is not terminated yet
#    (Packer's build instance, when Packer was killed before its own
#    cleanup), and waits until they are gone, so their volumes are too.
# 2. Deregisters every AMI this account owns that is tagged with ID and
#    is not an artifact in FILE (packer-manifest.json: the builds that
#    passed their gate), and deletes its snapshots. Then deletes the
#    snapshots tagged with ID that no kept AMI uses.
#
# AMIs in FILE are kept: a stage 1 that passed stays when stage 2 fails.
# Copies in other regions (ami_regions) are not looked at. Needs the aws
# CLI and jq.
#
# Exit status: 0 when everything found was removed, 1 when an aws call
# failed, 2 for a usage error.
set -u

prog="cleanup-run"
die() {
	echo "$prog: $*" >&2
	exit 2
}

region=""
run_id=""
manifest=""
while [ $# -gt 0 ]; do
	case $1 in
	--region | --run-id | --manifest)
		[ $# -ge 2 ] || die "$1 needs a value"
		case $1 in
		--region) region=$2 ;;
		--run-id) run_id=$2 ;;
		--manifest) manifest=$2 ;;
		esac
		shift 2
		;;
	*) die "unknown option '$1'" ;;
	esac
done
[ -n "$region" ] || die "--region is required"
# An empty value would match every resource whose tag is empty.
[ -n "$run_id" ] || die "--run-id is required and must not be empty"

bad=0
# in_list WORD LIST: is WORD one of the whitespace-separated words of LIST?
in_list() {
	for w in $2; do
		[ "$w" = "$1" ] && return 0
	done
	return 1
}
ec2() {
	aws ec2 --region "$region" --output text "$@"
}
tag="Name=tag:stagehandRunId,Values=$run_id"

# 1. Instances.
ids=$(ec2 describe-instances --filters "$tag" \
	Name=instance-state-name,Values=pending,running,stopping,stopped \
	--query 'Reservations[].Instances[].InstanceId') || bad=1
if [ -n "$ids" ]; then
	echo "$prog: terminating instance(s) of run $run_id: $ids"
	# shellcheck disable=SC2086 # one word per ID
	if ec2 terminate-instances --instance-ids $ids >/dev/null; then
		# shellcheck disable=SC2086
		ec2 wait instance-terminated --instance-ids $ids || bad=1
	else
		bad=1
	fi
fi

# 2. AMIs and snapshots.
keep=""
if [ -n "$manifest" ] && [ -f "$manifest" ]; then
	# artifact_id is "region:ami-id[,region:ami-id...]".
	keep=$(jq -r '.builds[].artifact_id | split(",")[] | split(":")[1]' \
		"$manifest") || bad=1
fi
kept_snaps=""
images=$(ec2 describe-images --owners self --filters "$tag" \
	--query 'Images[].ImageId') || bad=1
for ami in $images; do
	snaps=$(ec2 describe-images --image-ids "$ami" \
		--query 'Images[].BlockDeviceMappings[].Ebs.SnapshotId') || {
		bad=1
		continue
	}
	if in_list "$ami" "$keep"; then
		echo "$prog: keeping $ami (in $manifest)"
		kept_snaps="$kept_snaps $snaps"
		continue
	fi
	echo "$prog: deregistering $ami (run $run_id, not in the manifest) and its snapshot(s) $snaps"
	ec2 deregister-image --image-id "$ami" >/dev/null || {
		bad=1
		continue
	}
	for s in $snaps; do
		ec2 delete-snapshot --snapshot-id "$s" >/dev/null || bad=1
	done
done
snaps=$(ec2 describe-snapshots --owner-ids self --filters "$tag" \
	--query 'Snapshots[].SnapshotId') || bad=1
for s in $snaps; do
	in_list "$s" "$kept_snaps" && continue
	echo "$prog: deleting snapshot $s (run $run_id, no kept AMI)"
	ec2 delete-snapshot --snapshot-id "$s" >/dev/null || bad=1
done
[ "$bad" = 0 ] || echo "$prog: some of run $run_id could not be removed" >&2
exit "$bad"
